#!/usr/bin/env python3
"""A request in flight across a stop signal (tests/containers/run.sh, tests/it_ops.sh).

    tests/inflight.py PORT API_KEY IDEMPOTENCY_KEY (--go FILE | --until-refused)

Sends the head and half the body of POST /abacus/number {"number": 1000} to
127.0.0.1:PORT and prints "sent-half"; then waits, 20 s at most, until FILE
exists (--go: the caller says when), or until new connections to PORT are
refused (--until-refused: the front end closed its listener, so the stop
signal has arrived; prints "listener closed" or "listener never closed");
then sends the rest and prints the answer's status line, or "no answer (...)".
A graceful stop answers it; one that drops requests in flight does not.
"""
import argparse
import os
import socket
import time


def read_to_close(sock):
    """Everything the server sends until it closes the connection."""
    out = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return out
        out += chunk


def refused(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return False
    except OSError:
        return True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("port", type=int)
    ap.add_argument("key")
    ap.add_argument("idem")
    how = ap.add_mutually_exclusive_group(required=True)
    how.add_argument("--go", help="send the rest once this file exists")
    how.add_argument("--until-refused", action="store_true", help="send the rest once new connections are refused")
    a = ap.parse_args()
    body = b'{"number": 1000}'
    try:
        s = socket.create_connection(("127.0.0.1", a.port), timeout=30)
        s.sendall(b"POST /abacus/number HTTP/1.1\r\nHost: abacus\r\nX-API-Key: " + a.key.encode() +
                  b"\r\nIdempotency-Key: " + a.idem.encode() + b"\r\nContent-Type: application/json\r\n" +
                  b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body[:8])
        print("sent-half", flush=True)
        deadline = time.time() + 20
        while time.time() < deadline:
            if a.go and os.path.exists(a.go):
                break
            if a.until_refused and refused(a.port):
                break
            time.sleep(0.05 if a.go else 0.1)
        if a.until_refused:
            print("listener closed" if time.time() < deadline else "listener never closed", flush=True)
        s.sendall(body[8:])
        reply = read_to_close(s)
        print(reply.split(b"\r\n", 1)[0].decode(errors="replace") or "no answer (connection closed)")
    except OSError as e:
        print("no answer (%s)" % e)


if __name__ == "__main__":
    main()
