#!/usr/bin/env python3
"""A TCP proxy between abacus workers and Redis that breaks things on command.

    tests/faultproxy.py LISTEN_PORT UPSTREAM_PORT CONTROL_PORT

Every worker connection gets its own connection to Redis (127.0.0.1:UPSTREAM).
The proxy reads the RESP commands going up and the replies coming down, so it
knows which reply answers which command, and learns the SHA of every script
the workers load (SCRIPT LOAD) from the marker line each script starts with
("-- abacus:add"): a test names a script, not its SHA.

Control: one command a line on 127.0.0.1:CONTROL_PORT, one line answered.
  ARM <action> <match> <nth> [<ms>]   the nth command matching from now on:
      drop    Redis runs it; its reply is dropped and the worker's connection
              reset (RST) — ms later, or, with ms "wait", on RELEASE
      hold    its reply is delivered ms late (later replies wait behind it)
      reset   the connection is reset before the command reaches Redis
    match: script:<get|add|set> (EVALSHA of that script), cmd:<NAME>, any
  RELEASE             ends every "wait" drop now (the reset happens)
  LATENCY <ms>        every command is forwarded ms late (0: off)
  REFUSE on|off       stop accepting new connections (connect is refused)
  KILL                reset every open connection
  STATUS              "OK conns=N held=N fired=F armed=A commands=C"
  SCRIPTS             "OK get=<sha> add=<sha> ..."
  CLEAR               disarm everything, latency 0, accept again
Every wait is bounded: a "wait" drop is released after 30 s regardless.
"""
import asyncio
import re
import socket
import struct
import sys

MARKER = re.compile(rb"^-- abacus:(\w+)", re.M)


def parse(buf, pos=0):
    """One RESP value from buf at pos: (value, end) or None when incomplete."""
    if pos >= len(buf):
        return None
    eol = buf.find(b"\r\n", pos)
    if eol < 0:
        return None
    kind, line = buf[pos:pos + 1], buf[pos + 1:eol]
    after = eol + 2
    if kind in (b"+", b"-", b":"):
        return (kind + line, after)
    if kind == b"$":
        n = int(line)
        if n < 0:
            return (None, after)
        if len(buf) < after + n + 2:
            return None
        return (bytes(buf[after:after + n]), after + n + 2)
    if kind == b"*":
        n = int(line)
        items = []
        for _ in range(max(n, 0)):
            got = parse(buf, after)
            if got is None:
                return None
            items.append(got[0])
            after = got[1]
        return (items, after)
    # An inline command (redis-cli without RESP, telnet): words on one line.
    return (bytes(buf[pos:eol]).split(), after)


class Rule:
    def __init__(self, action, match, nth, ms):
        self.action, self.match, self.nth, self.ms = action, match, nth, ms
        self.seen = 0
        self.fired = False


class Proxy:
    def __init__(self, listen, upstream):
        self.listen, self.upstream = listen, upstream
        self.rules = []
        self.scripts = {}          # name -> sha
        self.latency_ms = 0
        self.conns = set()         # client writers
        self.held = 0
        self.fired = 0
        self.commands = 0
        self.release = asyncio.Event()
        self.server = None

    def matches(self, match, cmd):
        if not cmd:
            return False
        name = cmd[0].upper() if isinstance(cmd[0], bytes) else b""
        if match == "any":
            return True
        if match.startswith("cmd:"):
            return name == match[4:].upper().encode()
        if match.startswith("script:"):
            sha = self.scripts.get(match[7:])
            return name == b"EVALSHA" and sha is not None and len(cmd) > 1 and cmd[1].lower() == sha
        return False

    def action_for(self, cmd):
        self.commands += 1
        for rule in self.rules:
            if not rule.fired and self.matches(rule.match, cmd):
                rule.seen += 1
                if rule.seen == rule.nth:
                    rule.fired = True
                    self.fired += 1
                    return rule
        return None

    @staticmethod
    def reset(writer):
        try:
            sock = writer.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
        except (OSError, RuntimeError):
            pass

    async def start(self):
        self.server = await asyncio.start_server(self.client, "127.0.0.1", self.listen,
                                                 reuse_address=True)

    async def client(self, creader, cwriter):
        try:
            ureader, uwriter = await asyncio.open_connection("127.0.0.1", self.upstream)
        except OSError:
            self.reset(cwriter)
            return
        self.conns.add(cwriter)
        pending = asyncio.Queue()
        down = asyncio.ensure_future(self.downstream(ureader, cwriter, uwriter, pending))
        try:
            await self.upstream_loop(creader, cwriter, uwriter, pending)
        except (OSError, RuntimeError):
            pass
        finally:
            self.conns.discard(cwriter)
            await pending.put(("eof", None))
            try:
                await asyncio.wait_for(down, 35)
            except (asyncio.TimeoutError, Exception):
                down.cancel()
            self.reset(uwriter)
            self.reset(cwriter)

    async def upstream_loop(self, creader, cwriter, uwriter, pending):
        buf = bytearray()
        while True:
            chunk = await creader.read(65536)
            if not chunk:
                return
            buf += chunk
            while True:
                got = parse(buf)
                if got is None:
                    break
                cmd, end = got
                raw = bytes(buf[:end])
                del buf[:end]
                rule = self.action_for(cmd if isinstance(cmd, list) else [])
                if rule is not None and rule.action == "reset":
                    self.reset(cwriter)
                    return
                if self.latency_ms:
                    await asyncio.sleep(self.latency_ms / 1000)
                load = None
                if isinstance(cmd, list) and len(cmd) >= 3 and cmd[0].upper() == b"SCRIPT" \
                        and cmd[1].upper() == b"LOAD":
                    m = MARKER.search(cmd[2])
                    load = m.group(1).decode() if m else None
                await pending.put(("cmd", (load, rule)))
                uwriter.write(raw)
                await uwriter.drain()

    async def downstream(self, ureader, cwriter, uwriter, pending):
        buf = bytearray()
        while True:
            while True:
                got = parse(buf)
                if got is None:
                    break
                reply, end = got
                raw = bytes(buf[:end])
                del buf[:end]
                kind, what = await pending.get()
                if kind == "eof":
                    return
                load, what = what
                if load and isinstance(reply, bytes):
                    self.scripts[load] = reply.lower()
                if what is not None and what.action == "hold":
                    await asyncio.sleep(what.ms / 1000)
                elif what is not None and what.action == "drop":
                    self.held += 1
                    try:
                        if what.ms == "wait":
                            await asyncio.wait_for(self.release.wait(), 30)
                        else:
                            await asyncio.sleep(what.ms / 1000)
                    except asyncio.TimeoutError:
                        pass
                    self.held -= 1
                    self.reset(cwriter)
                    self.reset(uwriter)
                    return
                try:
                    cwriter.write(raw)
                    await cwriter.drain()
                except (OSError, RuntimeError):
                    pass            # the worker gave up on this connection: a late reply
            if pending.qsize() > 0 and pending._queue[0][0] == "eof":
                return          # the worker hung up; nothing more is owed to it
            try:
                chunk = await asyncio.wait_for(ureader.read(65536), 1.0)
            except asyncio.TimeoutError:
                continue        # look again whether the worker hung up
            except (OSError, RuntimeError):
                chunk = b""
            if not chunk:
                self.reset(cwriter)
                return
            buf += chunk

    async def control(self, reader, writer):
        while True:
            line = await reader.readline()
            if not line:
                break
            writer.write((self.command(line.decode().split()) + "\n").encode())
            await writer.drain()
            if line.split()[:1] == [b"REFUSE"] or line.split()[:1] == [b"CLEAR"]:
                await self.apply_refuse()
        writer.close()

    refuse_wanted = False

    async def apply_refuse(self):
        if self.refuse_wanted and self.server is not None:
            # Stop listening at once; open connections (a held reply) go on.
            # (No wait_closed: from Python 3.12 it waits for those too.)
            server, self.server = self.server, None
            server.close()
        elif not self.refuse_wanted and self.server is None:
            await self.start()

    def command(self, words):
        if not words:
            return "ERR empty"
        op = words[0].upper()
        try:
            if op == "ARM":
                action, match, nth = words[1], words[2], int(words[3])
                ms = words[4] if len(words) > 4 else "0"
                ms = ms if ms == "wait" else int(ms)
                if action not in ("drop", "hold", "reset"):
                    return "ERR action"
                self.rules.append(Rule(action, match, nth, ms))
                return "OK %d" % len(self.rules)
            if op == "RELEASE":
                n = self.held
                self.release.set()
                self.release = asyncio.Event()
                return "OK %d" % n
            if op == "LATENCY":
                self.latency_ms = int(words[1])
                return "OK"
            if op == "REFUSE":
                self.refuse_wanted = words[1] == "on"
                return "OK"
            if op == "KILL":
                n = len(self.conns)
                for w in list(self.conns):
                    self.reset(w)
                return "OK %d" % n
            if op == "STATUS":
                armed = sum(1 for r in self.rules if not r.fired)
                return "OK conns=%d held=%d fired=%d armed=%d commands=%d" % (
                    len(self.conns), self.held, self.fired, armed, self.commands)
            if op == "SCRIPTS":
                return "OK " + " ".join("%s=%s" % (k, v.decode()) for k, v in sorted(self.scripts.items()))
            if op == "CLEAR":
                self.rules = []
                self.latency_ms = 0
                self.refuse_wanted = False
                self.release.set()
                self.release = asyncio.Event()
                return "OK"
        except (IndexError, ValueError):
            return "ERR arguments"
        return "ERR unknown command"


async def main():
    listen, upstream, control = (int(a) for a in sys.argv[1:4])
    proxy = Proxy(listen, upstream)
    await proxy.start()
    ctl = await asyncio.start_server(proxy.control, "127.0.0.1", control, reuse_address=True)
    print("faultproxy: listening on %d, Redis on %d, control on %d" % (listen, upstream, control), flush=True)
    async with ctl:
        await ctl.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
