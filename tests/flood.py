#!/usr/bin/env python3
"""A hostile client and a legitimate one, for tests/it_flood.sh.

    tests/flood.py attack --port P [--source 127.0.0.2] [--connections 3000]
                          [--duration 20] [--budget 30000]
    tests/flood.py client --port P --key KEY [--count 300] [--pause 0.02]

attack: from one source address (every socket is bound to --source), keeps up
to --connections slow connections open to 127.0.0.1:P for --duration seconds,
three kinds in turn (slot i: i % 5 in {0, 2} a half head, in {1, 3} a trickled
body, 4 an idle keep-alive):

  half     "GET /abacus/sum HTTP/1.1\\r\\nHost: x\\r\\n" and then nothing (what
           holds nginx's connections: a request begun is not reused; only
           its header timeout frees it)
  trickle  a whole POST head with Content-Length 4000, then one body byte
           a second (below every idle timeout: only a cap stops it; what
           holds lighttpd's connections for good)
  idle     one GET /healthz, its answer read, then silence (keep-alive)

Every connection that ends is tried again 2-3 s later: one refused (RST: a
firewall cap), one the server answered (a refusal, 429) or closed (a timeout,
or nginx reusing it when out of connections): an attacker reopens, and with
thousands of slots a cap of a hundred stays full; a faster retry would only
spend the attempt budget before the end.  At
most --budget connection attempts in all, and never more than --connections
at a time.  At the end every socket is closed and one JSON object is printed:
attempts, refusals, the peak of connections open at once (total and per
kind), the peak of trickled bodies the server held without answering, the
statuses it answered with, how long the longest-lived half head and idle
keep-alive stayed open, and how many were still open at the end.  A trickled
body counts as held once it has been open a second without an answer.

client: COUNT sequential GET /abacus/sum, each on a new connection from
127.0.0.1 (Connection: close, 5 s timeout), PAUSE seconds apart; prints one
JSON object: n, errors (anything but a 200, a timeout, a reset), p50, p99,
max (milliseconds).

    tests/flood.py overcap --port P [--source 127.0.0.3] [--hold 32]

overcap: one request beyond a cap on requests in flight per address (nginx's
limit_conn): from --source, HOLD trickled bodies are started (whole POST
heads, Content-Length 4000, then a body byte each after 0.5 and 1 s), then
one GET /abacus/sum (Connection: close) is sent from the same address and its
whole answer read; then everything is closed.  Prints one JSON object: held (how
many of the HOLD connections were still open, unanswered, when the GET was
answered), status, headers (names lower-cased), body, and problem (the body
parsed as JSON, or null).
"""
import argparse
import errno
import heapq
import json
import random
import resource
import selectors
import socket
import sys
import time

from inflight import read_to_close

IP_BIND_ADDRESS_NO_PORT = 24   # Linux: pick the source port at connect, per 4-tuple

HALF = b"GET /abacus/sum HTTP/1.1\r\nHost: x\r\n"
TRICKLE = (b"POST /abacus/number HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
           b"Idempotency-Key: flood\r\nContent-Length: 4000\r\n\r\n")
IDLE = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
KINDS = ("half", "trickle", "half", "trickle", "idle")


def raise_nofile(want):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))


class Conn:
    __slots__ = ("slot", "kind", "sock", "state", "t_start", "t_mark", "buf", "answered", "next_byte")

    def __init__(self, slot, kind, sock, now):
        self.slot, self.kind, self.sock = slot, kind, sock
        self.state = "connecting"   # connecting, open
        self.t_start = now          # connect started
        self.t_mark = now           # half: head sent; idle: answer read; trickle: last byte
        self.buf = b""
        self.answered = False
        self.next_byte = 0.0


def attack(a):
    raise_nofile(a.connections + 256)
    sel = selectors.DefaultSelector()
    conns = {}                      # fd -> Conn
    due = []                        # heap of (time, slot): slots waiting to (re)open
    stats = {
        "attempts": 0, "refused": 0, "connect_timeouts": 0, "other_connect_errors": 0,
        "established": {k: 0 for k in ("half", "trickle", "idle")},
        "closed_by_server": {k: 0 for k in ("half", "trickle", "idle")},
        "answered": {},             # "kind status" -> count
        "peak_open": 0, "peak_open_kind": {k: 0 for k in ("half", "trickle", "idle")},
        "peak_held_trickles": 0,    # trickled bodies open over 1 s, not answered
        "half_max_age": 0.0,        # longest a half head stayed open after its head
        "idle_max_age": 0.0,        # longest an idle keep-alive stayed open after its answer
        "open_at_end": 0,
    }
    start = time.monotonic()
    end = start + a.duration
    for slot in range(a.connections):
        heapq.heappush(due, (start, slot))

    def close(c, reopen_in):
        sel.unregister(c.sock)
        del conns[c.sock.fileno()]
        c.sock.close()
        if reopen_in is not None:
            heapq.heappush(due, (time.monotonic() + reopen_in, c.slot))

    def server_closed(c, now):
        age = now - c.t_mark
        if c.kind == "half":
            stats["half_max_age"] = max(stats["half_max_age"], age)
        elif c.kind == "idle" and c.answered:
            stats["idle_max_age"] = max(stats["idle_max_age"], age)
        stats["closed_by_server"][c.kind] += 1
        close(c, 2 + random.random())

    def opened(c, now):
        c.state = "open"
        stats["established"][c.kind] += 1
        c.t_mark = now
        try:
            c.sock.send({"half": HALF, "trickle": TRICKLE, "idle": IDLE}[c.kind])
        except OSError:
            server_closed(c, now)
            return
        c.next_byte = now + 1.0 + random.random() * 0.2
        sel.modify(c.sock, selectors.EVENT_READ, c)

    def readable(c, now):
        try:
            data = c.sock.recv(65536)
        except OSError:
            data = b""
        if not data:
            server_closed(c, now)
            return
        c.buf += data
        if c.answered or b"\r\n\r\n" not in c.buf:
            return
        status = c.buf.split(b" ", 2)[1].decode("ascii", "replace") if c.buf.startswith(b"HTTP/") else "?"
        key = f"{c.kind} {status}"
        stats["answered"][key] = stats["answered"].get(key, 0) + 1
        c.answered = True
        if c.kind == "idle":
            c.t_mark = now          # idle from now on
        else:
            close(c, 2 + random.random())   # answered (a refusal): reopen

    while True:
        now = time.monotonic()
        if now >= end:
            break
        # (Re)open the slots that are due, within the attempt budget.
        while due and due[0][0] <= now and stats["attempts"] < a.budget:
            _, slot = heapq.heappop(due)
            stats["attempts"] += 1
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            try:
                s.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
                s.bind((a.source, 0))
                rc = s.connect_ex(("127.0.0.1", a.port))
            except OSError as e:
                rc = e.errno
            if rc not in (0, errno.EINPROGRESS):
                s.close()
                stats["refused" if rc == errno.ECONNREFUSED else "other_connect_errors"] += 1
                heapq.heappush(due, (now + 2 + random.random(), slot))
                continue
            c = Conn(slot, KINDS[slot % len(KINDS)], s, now)
            conns[s.fileno()] = c
            sel.register(s, selectors.EVENT_WRITE, c)
            if rc == 0:
                opened(c, now)
        for key, ev in sel.select(timeout=0.05):
            c = key.data
            now = time.monotonic()
            if c.sock.fileno() not in conns:
                continue
            if c.state == "connecting":
                err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err == 0:
                    opened(c, now)
                else:
                    stats["refused" if err == errno.ECONNREFUSED else "other_connect_errors"] += 1
                    close(c, 2 + random.random())
            else:
                readable(c, now)
        # Timers: connects that hang (a full backlog), trickle bytes, peaks.
        now = time.monotonic()
        held = 0
        kinds = {"half": 0, "trickle": 0, "idle": 0}
        for c in list(conns.values()):
            if c.state == "connecting":
                if now - c.t_start > 3:
                    stats["connect_timeouts"] += 1
                    close(c, 2 + random.random())
                continue
            kinds[c.kind] += 1
            if c.kind == "trickle" and not c.answered:
                # Held: the server had a second to refuse it and did not.
                if now - c.t_start > 1:
                    held += 1
                if now >= c.next_byte:
                    try:
                        c.sock.send(b" ")
                        c.t_mark = now
                    except OSError:
                        server_closed(c, now)
                        continue
                    c.next_byte = now + 1.0 + random.random() * 0.2
            elif c.kind == "half":
                stats["half_max_age"] = max(stats["half_max_age"], now - c.t_mark)
            elif c.kind == "idle" and c.answered:
                stats["idle_max_age"] = max(stats["idle_max_age"], now - c.t_mark)
        stats["peak_open"] = max(stats["peak_open"], sum(kinds.values()))
        for k, n in kinds.items():
            stats["peak_open_kind"][k] = max(stats["peak_open_kind"][k], n)
        stats["peak_held_trickles"] = max(stats["peak_held_trickles"], held)

    stats["open_at_end"] = sum(1 for c in conns.values() if c.state == "open")
    for c in list(conns.values()):
        c.sock.close()
    for k in ("half_max_age", "idle_max_age"):
        stats[k] = round(stats[k], 2)
    stats["seconds"] = round(time.monotonic() - start, 2)
    print(json.dumps(stats, sort_keys=True))


def one_get(port, key, timeout):
    req = (f"GET /abacus/sum HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-API-Key: {key}\r\n"
           "Connection: close\r\n\r\n").encode()
    t0 = time.monotonic()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(req)
            status, _, _ = read_answer(s)
    except OSError as e:
        return time.monotonic() - t0, type(e).__name__
    return time.monotonic() - t0, status


def client(a):
    times, errors = [], {}
    for _ in range(a.count):
        t, status = one_get(a.port, a.key, a.timeout)
        times.append(t * 1000)
        if status != "200":
            errors[status] = errors.get(status, 0) + 1
        time.sleep(a.pause)
    times.sort()

    def pct(p):
        return round(times[min(len(times) - 1, int(len(times) * p))], 2)
    print(json.dumps({"n": len(times), "errors": sum(errors.values()), "error_kinds": errors,
                      "p50": pct(0.50), "p99": pct(0.99), "max": round(times[-1], 2)}))


def read_answer(sock):
    """The whole answer on a Connection: close socket: (status, headers, body)."""
    head, _, body = read_to_close(sock).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = lines[0].split(" ", 2)[1] if lines[0].startswith("HTTP/") else "no-answer"
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body


def overcap(a):
    held = []
    try:
        for _ in range(a.hold):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.settimeout(5)
            s.bind((a.source, 0))
            s.connect(("127.0.0.1", a.port))
            s.sendall(TRICKLE)
            held.append(s)
        # Keep the bodies coming (below every idle timeout) while the server
        # reads the heads, then send the one request too many.
        for _ in range(2):
            time.sleep(0.5)
            for s in held:
                s.sendall(b" ")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.bind((a.source, 0))
            s.connect(("127.0.0.1", a.port))
            s.sendall(f"GET /abacus/sum HTTP/1.1\r\nHost: 127.0.0.1:{a.port}\r\n"
                      "Connection: close\r\n\r\n".encode())
            status, headers, body = read_answer(s)
        # The held ones must still be held: unanswered and open.
        still = 0
        for s in held:
            s.setblocking(False)
            try:
                s.recv(1)        # an answer, or b"" (closed): not held
            except BlockingIOError:
                still += 1
            except OSError:
                pass
    finally:
        for s in held:
            s.close()
    try:
        problem = json.loads(body)
    except ValueError:
        problem = None
    print(json.dumps({"held": still, "status": status, "headers": headers,
                      "body": body.decode("utf-8", "replace"), "problem": problem}, sort_keys=True))


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    at = sub.add_parser("attack")
    at.add_argument("--port", type=int, required=True)
    at.add_argument("--source", default="127.0.0.2")
    at.add_argument("--connections", type=int, default=3000)
    at.add_argument("--duration", type=float, default=20)
    at.add_argument("--budget", type=int, default=30000)
    cl = sub.add_parser("client")
    cl.add_argument("--port", type=int, required=True)
    cl.add_argument("--key", required=True)
    cl.add_argument("--count", type=int, default=300)
    cl.add_argument("--pause", type=float, default=0.02)
    cl.add_argument("--timeout", type=float, default=5)
    oc = sub.add_parser("overcap")
    oc.add_argument("--port", type=int, required=True)
    oc.add_argument("--source", default="127.0.0.3")
    oc.add_argument("--hold", type=int, default=32)
    a = p.parse_args()
    # Hard bounds, whatever the caller asks: loopback only, a few thousand sockets.
    if a.cmd == "attack":
        if not a.source.startswith("127.") or a.connections > 5000 or a.duration > 60 or a.budget > 60000:
            sys.exit("flood.py: attack bounded to 127.0.0.0/8, 5000 connections, 60 s, 60000 attempts")
        attack(a)
    elif a.cmd == "overcap":
        if not a.source.startswith("127.") or not 0 <= a.hold <= 256:
            sys.exit("flood.py: overcap bounded to 127.0.0.0/8 and 256 connections")
        overcap(a)
    else:
        client(a)


if __name__ == "__main__":
    main()
