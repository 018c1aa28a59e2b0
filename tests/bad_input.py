#!/usr/bin/env python3
"""Malformed requests against one front end (issue 7: bad input).

Each row of CASES is one request, sent as raw bytes on a fresh connection:
    (name, who, request bytes)
who is "worker" (the worker answers: a 4xx with a problem+json body),
"server" (the web server refuses it itself: any 4xx), or "server:NNN" (the web
server answers exactly NNN: lighttpd answers an unknown method with 501 and an
HTTP version it does not speak with 505, before any worker sees the request).
Adding a case is one line.

Usage: bad_input.py PORT API_KEY  -> one line per case, then "N passed, N failed".
"""
import json
import socket
import sys
import time

PORT, KEY = int(sys.argv[1]), sys.argv[2].encode()


def post(body, ctype=b"application/json", extra=b"", path=b"/abacus/number", method=b"POST", length=None):
    if isinstance(body, str):
        body = body.encode()
    n = str(len(body) if length is None else length).encode()
    head = (method + b" " + path + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-API-Key: " + KEY +
            b"\r\nIdempotency-Key: bad-" + str(time.time_ns()).encode() + b"\r\nContent-Type: " + ctype +
            b"\r\nContent-Length: " + n + b"\r\n" + extra + b"\r\n")
    return head + body


def get(path, extra=b"", method=b"GET", version=b"HTTP/1.1"):
    return (method + b" " + path + b" " + version + b"\r\nHost: x\r\nConnection: close\r\nX-API-Key: " + KEY +
            b"\r\n" + extra + b"\r\n")


W, S = "worker", "server"
CASES = [
    # --- broken JSON ---
    ("truncated object", W, post('{"number": 1')),
    ("truncated string", W, post('{"number": "1')),
    ("only a brace", W, post('{')),
    ("closing brace only", W, post('}')),
    ("trailing garbage", W, post('{"number": 1} trailing')),
    ("two objects", W, post('{"number": 1}{"number": 2}')),
    ("trailing comma", W, post('{"number": 1,}')),
    ("missing colon", W, post('{"number" 1}')),
    ("single quotes", W, post("{'number': 1}")),
    ("unquoted key", W, post('{number: 1}')),
    ("comment", W, post('{"number": 1 /* c */}')),
    ("NaN", W, post('{"number": NaN}')),
    ("Infinity", W, post('{"number": Infinity}')),
    ("-Infinity", W, post('{"number": -Infinity}')),
    ("hex number", W, post('{"number": 0x10}')),
    ("leading zero", W, post('{"number": 007}')),
    ("plus sign", W, post('{"number": +1}')),
    ("bare minus", W, post('{"number": -}')),
    ("dot only", W, post('{"number": .5}')),
    ("BOM", W, post(b'\xef\xbb\xbf{"number": 1}')),
    ("bad escape", W, post('{"number": 1, "s": "\\q"}')),
    ("short unicode escape", W, post('{"number": 1, "s": "\\u12"}')),
    ("raw control char", W, post(b'{"number": 1, "s": "a\x01b"}')),
    # --- wrong types and ranges ---
    ("number as string", W, post('{"number": "5"}')),
    ("float", W, post('{"number": 1.5}')),
    ("float with zero fraction", W, post('{"number": 1.0}')),
    ("exponent", W, post('{"number": 1e3}')),
    ("negative exponent", W, post('{"number": 10E-1}')),
    ("true", W, post('{"number": true}')),
    ("false", W, post('{"number": false}')),
    ("null", W, post('{"number": null}')),
    ("array value", W, post('{"number": [1]}')),
    ("object value", W, post('{"number": {"v": 1}}')),
    ("2^63", W, post('{"number": 9223372036854775808}')),
    ("-2^63-1", W, post('{"number": -9223372036854775809}')),
    ("30 digits", W, post('{"number": 123456789012345678901234567890}')),
    ("-30 digits", W, post('{"number": -123456789012345678901234567890}')),
    ("2^64", W, post('{"number": 18446744073709551616}')),
    ("missing number", W, post('{"numbr": 1}')),
    ("empty object", W, post('{}')),
    ("duplicate members", W, post('{"number": 1, "number": 2}')),
    ("duplicate via escape", W, post('{"number": 1, "n\\u0075mber": 1}')),
    ("body is an array", W, post('[{"number": 1}]')),
    ("body is a string", W, post('"{\\"number\\": 1}"')),
    ("body is a number", W, post('1')),
    ("body is null", W, post('null')),
    ("nesting 10,000 deep", W, post('{"number": 1, "x": ' + '[' * 10000 + ']' * 10000 + '}')),
    ("invalid UTF-8", W, post(b'{"number": 1, "s": "\xff\xfe"}')),
    ("overlong UTF-8", W, post(b'{"number": 1, "s": "\xc0\xaf"}')),
    ("UTF-16 surrogate in UTF-8", W, post(b'{"number": 1, "s": "\xed\xa0\x80"}')),
    ("NUL byte after the object", W, post(b'{"number": 1}\x00')),
    ("NUL byte inside", W, post(b'{"number": 1\x00}')),
    # --- sizes and framing the worker sees ---
    ("empty body", W, post(b'')),
    ("body over the limit", W, post('{"number": 1, "pad": "' + 'x' * 5000 + '"}')),
    ("1 MB body", W, post(b'{"number": 1, "pad": "' + b'x' * 1000000 + b'"}')),
    ("text/plain", W, post('{"number": 1}', ctype=b"text/plain")),
    ("form encoded", W, post('number=1', ctype=b"application/x-www-form-urlencoded")),
    ("json lookalike type", W, post('{"number": 1}', ctype=b"application/jsonx")),
    ("Idempotency-Key too long", W, post('{"number": 1}', extra=b"Idempotency-Key: " + b"k" * 300 + b"\r\n")),
    ("Idempotency-Key with spaces", W, post('{"number": 1}', extra=b"Idempotency-Key: a b\r\n")),
    ("Idempotency-Key non-ASCII", W, post('{"number": 1}', extra=b"Idempotency-Key: \xc3\xa9\r\n")),
    ("wrong X-API-Key", W, post('{"number": 1}', extra=b"X-API-Key: nope\r\n")),
    # --- methods and paths ---
    ("PATCH", W, post('{"number": 1}', method=b"PATCH")),
    ("POST on /abacus/sum", W, post('{"number": 1}', path=b"/abacus/sum")),
    ("unknown method FOO", "server:501", get(b"/abacus/sum", method=b"FOO")),
    ("lowercase get", "server:501", get(b"/abacus/sum", method=b"get")),
    ("percent-encoded route", W, get(b"/abacus/%73um")),
    ("encoded slash", W, get(b"/abacus%2Fsum")),
    ("double slash", W, get(b"//abacus/sum")),
    ("dot segments", S, get(b"/abacus/../abacus/sum")),
    ("encoded NUL in path", S, get(b"/abacus/sum%00")),
    ("very long path", W, get(b"/" + b"a" * 4000)),
    ("trailing slash", W, get(b"/abacus/sum/")),
    # --- headers the web server refuses ---
    ("POST without Content-Length", S, b"POST /abacus/number HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-API-Key: " + KEY + b"\r\nContent-Type: application/json\r\n\r\n{}"),
    ("Content-Length and Transfer-Encoding", S, post('{"number": 1}', extra=b"Transfer-Encoding: chunked\r\n")),
    ("negative Content-Length", S, post('{"number": 1}', length=-1)),
    ("two Content-Lengths", S, post('{"number": 1}', extra=b"Content-Length: 5\r\n")),
    ("huge header", S, get(b"/abacus/sum", extra=b"X-Big: " + b"h" * 70000 + b"\r\n")),
    ("control character in a header", S, get(b"/abacus/sum", extra=b"X-Ctl: a\x01b\r\n")),
    ("NUL in a header", S, get(b"/abacus/sum", extra=b"X-Nul: a\x00b\r\n")),
    ("header without colon", S, get(b"/abacus/sum", extra=b"NoColonHere\r\n")),
    ("many repeated headers", S, get(b"/abacus/sum", extra=b"".join(b"X-R%d: v\r\n" % i for i in range(2000)))),
    ("HTTP/2.0 request line", "server:505", get(b"/abacus/sum", version=b"HTTP/2.0")),
    ("garbage request line", S, b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n"),
]


def send(raw):
    s = socket.create_connection(("127.0.0.1", PORT), timeout=5)
    t0 = time.monotonic()
    try:
        s.sendall(raw)
    except OSError:
        pass  # the server may refuse before reading everything
    out = b""
    try:
        while True:
            b = s.recv(65536)
            if not b:
                break
            out += b
    except (socket.timeout, ConnectionResetError):
        pass
    s.close()
    return out, time.monotonic() - t0


passed = failed = 0
for name, who, raw in CASES:
    resp, took = send(raw)
    head, _, body = resp.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    try:
        status = int(lines[0].split()[1])
    except (IndexError, ValueError):
        status = 0
    headers = {}
    for l in lines[1:]:
        k, _, v = l.partition(b":")
        headers[k.strip().lower()] = v.strip()
    problems = []
    if who.startswith("server:"):
        if status != int(who[7:]):
            problems.append("status %d" % status)
    elif not 400 <= status <= 499:
        problems.append("status %d" % status)
    if took > 1.0:
        problems.append("took %.2f s" % took)
    if who == W and status != 0:
        if headers.get(b"content-type") != b"application/problem+json":
            problems.append("content-type %r" % headers.get(b"content-type"))
        else:
            try:
                d = json.loads(body)
                if not (d["type"].startswith("urn:abacus:problem:") and d["status"] == status):
                    problems.append("bad problem body")
            except (ValueError, KeyError):
                problems.append("problem body is not JSON")
        if not headers.get(b"x-request-id"):
            problems.append("no X-Request-ID")
    if problems:
        failed += 1
        print("FAIL %-40s %s" % (name, "; ".join(problems)))
    else:
        passed += 1
        print("ok   %-40s %d (%s, %.0f ms)" % (name, status, who, took * 1000))
print("%d cases" % len(CASES))
print("%d passed, %d failed" % (passed, failed))
sys.exit(1 if failed else 0)
