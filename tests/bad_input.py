#!/usr/bin/env python3
"""Malformed requests against one front end (issue 7: bad input).

Each row of CASES is one request, sent as raw bytes on a fresh connection:
    (name, who, status, request bytes)
who is "worker" (the worker answers: exactly that status, SPEC section 2's for
the case, with a problem+json body) or "server" (lighttpd refuses it itself,
before any worker sees it: exactly that status, e.g. 501 for an unknown method,
505 for an HTTP version it does not speak).  The status is exact: a 401, 403
or 429 where the case is about the body or a header would hide the case.
Every answer must be complete (the server closes the connection) within
ANSWER_WITHIN seconds: the property is "never hangs", not a speed, so the
bound is generous for a loaded machine.
Adding a case is one line.

Usage: bad_input.py PORT API_KEY  -> one line per case, then "N passed, N failed".
"""
import json
import socket
import sys
import time

PORT, KEY = int(sys.argv[1]), sys.argv[2].encode()
ANSWER_WITHIN = 10.0


def post(body, ctype=b"application/json", extra=b"", path=b"/abacus/number", method=b"POST", length=None,
         headers=None):
    """headers: {name: value} replaces the default header of that name (None drops
    it), so a case about one header sends exactly that header, not a second one;
    extra is added as is (for the cases that want a duplicate)."""
    if isinstance(body, str):
        body = body.encode()
    n = str(len(body) if length is None else length).encode()
    fields = [(b"Host", b"x"), (b"Connection", b"close"), (b"X-API-Key", KEY),
              (b"Idempotency-Key", b"bad-" + str(time.time_ns()).encode()), (b"Content-Type", ctype),
              (b"Content-Length", n)]
    head = method + b" " + path + b" HTTP/1.1\r\n"
    for name, value in fields:
        value = (headers or {}).get(name, value)
        if value is not None:
            head += name + b": " + value + b"\r\n"
    return head + extra + b"\r\n" + body


def get(path, extra=b"", method=b"GET", version=b"HTTP/1.1"):
    return (method + b" " + path + b" " + version + b"\r\nHost: x\r\nConnection: close\r\nX-API-Key: " + KEY +
            b"\r\n" + extra + b"\r\n")


W, S = "worker", "server"
CASES = [
    # --- broken JSON ---
    ("truncated object", W, 400, post('{"number": 1')),
    ("truncated string", W, 400, post('{"number": "1')),
    ("only a brace", W, 400, post('{')),
    ("closing brace only", W, 400, post('}')),
    ("trailing garbage", W, 400, post('{"number": 1} trailing')),
    ("two objects", W, 400, post('{"number": 1}{"number": 2}')),
    ("trailing comma", W, 400, post('{"number": 1,}')),
    ("missing colon", W, 400, post('{"number" 1}')),
    ("single quotes", W, 400, post("{'number': 1}")),
    ("unquoted key", W, 400, post('{number: 1}')),
    ("comment", W, 400, post('{"number": 1 /* c */}')),
    ("NaN", W, 400, post('{"number": NaN}')),
    ("Infinity", W, 400, post('{"number": Infinity}')),
    ("-Infinity", W, 400, post('{"number": -Infinity}')),
    ("hex number", W, 400, post('{"number": 0x10}')),
    ("leading zero", W, 400, post('{"number": 007}')),
    ("plus sign", W, 400, post('{"number": +1}')),
    ("bare minus", W, 400, post('{"number": -}')),
    ("dot only", W, 400, post('{"number": .5}')),
    ("BOM", W, 400, post(b'\xef\xbb\xbf{"number": 1}')),
    ("bad escape", W, 400, post('{"number": 1, "s": "\\q"}')),
    ("short unicode escape", W, 400, post('{"number": 1, "s": "\\u12"}')),
    ("raw control char", W, 400, post(b'{"number": 1, "s": "a\x01b"}')),
    # --- wrong types and ranges ---
    ("number as string", W, 400, post('{"number": "5"}')),
    ("float", W, 400, post('{"number": 1.5}')),
    ("float with zero fraction", W, 400, post('{"number": 1.0}')),
    ("exponent", W, 400, post('{"number": 1e3}')),
    ("negative exponent", W, 400, post('{"number": 10E-1}')),
    ("true", W, 400, post('{"number": true}')),
    ("false", W, 400, post('{"number": false}')),
    ("null", W, 400, post('{"number": null}')),
    ("array value", W, 400, post('{"number": [1]}')),
    ("object value", W, 400, post('{"number": {"v": 1}}')),
    ("2^63", W, 400, post('{"number": 9223372036854775808}')),
    ("-2^63-1", W, 400, post('{"number": -9223372036854775809}')),
    ("30 digits", W, 400, post('{"number": 123456789012345678901234567890}')),
    ("-30 digits", W, 400, post('{"number": -123456789012345678901234567890}')),
    ("2^64", W, 400, post('{"number": 18446744073709551616}')),
    ("missing number", W, 400, post('{"numbr": 1}')),
    ("empty object", W, 400, post('{}')),
    ("duplicate members", W, 400, post('{"number": 1, "number": 2}')),
    ("duplicate via escape", W, 400, post('{"number": 1, "n\\u0075mber": 1}')),
    ("body is an array", W, 400, post('[{"number": 1}]')),
    ("body is a string", W, 400, post('"{\\"number\\": 1}"')),
    ("body is a number", W, 400, post('1')),
    ("body is null", W, 400, post('null')),
    # Within the 4096-byte limit, so the nesting itself is what is refused (past 32 levels).
    ("nesting 1,000 deep", W, 400, post('{"number": 1, "x": ' + '[' * 1000 + ']' * 1000 + '}')),
    ("nesting 33 deep", W, 400, post('{"number": 1, "x": ' + '[' * 32 + ']' * 32 + '}')),
    ("nesting 10,000 deep (over the size limit too)", W, 413, post('{"number": 1, "x": ' + '[' * 10000 + ']' * 10000 + '}')),
    ("invalid UTF-8", W, 400, post(b'{"number": 1, "s": "\xff\xfe"}')),
    ("overlong UTF-8", W, 400, post(b'{"number": 1, "s": "\xc0\xaf"}')),
    ("UTF-16 surrogate in UTF-8", W, 400, post(b'{"number": 1, "s": "\xed\xa0\x80"}')),
    ("NUL byte after the object", W, 400, post(b'{"number": 1}\x00')),
    ("NUL byte inside", W, 400, post(b'{"number": 1\x00}')),
    # --- sizes and framing the worker sees ---
    ("empty body", W, 411, post(b'')),
    ("body over the limit", W, 413, post('{"number": 1, "pad": "' + 'x' * 5000 + '"}')),
    ("1 MB body", W, 413, post(b'{"number": 1, "pad": "' + b'x' * 1000000 + b'"}')),
    ("text/plain", W, 415, post('{"number": 1}', ctype=b"text/plain")),
    ("form encoded", W, 415, post('number=1', ctype=b"application/x-www-form-urlencoded")),
    ("json lookalike type", W, 415, post('{"number": 1}', ctype=b"application/jsonx")),
    ("Idempotency-Key too long", W, 400, post('{"number": 1}', headers={b"Idempotency-Key": b"k" * 300})),
    ("Idempotency-Key with spaces", W, 400, post('{"number": 1}', headers={b"Idempotency-Key": b"a b"})),
    ("Idempotency-Key non-ASCII", W, 400, post('{"number": 1}', headers={b"Idempotency-Key": b"\xc3\xa9"})),
    ("wrong X-API-Key", W, 403, post('{"number": 1}', headers={b"X-API-Key": b"nope"})),
    # --- methods and paths ---
    ("PATCH", W, 405, post('{"number": 1}', method=b"PATCH")),
    ("POST on /abacus/sum", W, 405, post('{"number": 1}', path=b"/abacus/sum")),
    ("unknown method FOO", S, 501, get(b"/abacus/sum", method=b"FOO")),
    ("lowercase get", S, 501, get(b"/abacus/sum", method=b"get")),
    ("percent-encoded route", W, 404, get(b"/abacus/%73um")),
    ("encoded slash", W, 404, get(b"/abacus%2Fsum")),
    ("double slash", W, 404, get(b"//abacus/sum")),
    ("dot segments", W, 404, get(b"/abacus/../abacus/sum")),
    ("encoded NUL in path", S, 400, get(b"/abacus/sum%00")),
    ("very long path", W, 404, get(b"/" + b"a" * 4000)),
    ("trailing slash", W, 404, get(b"/abacus/sum/")),
    # --- names of sums (docs/API.md, "Named sums"): 400 invalid-sum-name, nothing reaches Redis ---
    ("empty sum name", W, 400, get(b"/abacus/sums/")),
    ("sum name of 65 characters", W, 400, get(b"/abacus/sums/" + b"n" * 65)),
    ("sum name of 4000 characters", W, 400, get(b"/abacus/sums/" + b"n" * 4000)),
    ("slash in a sum name", W, 400, get(b"/abacus/sums/a/b")),
    ("encoded slash in a sum name", W, 400, get(b"/abacus/sums/a%2Fb")),
    ("encoded letter in a sum name", W, 400, get(b"/abacus/sums/%61")),
    ("dot sum name", W, 400, get(b"/abacus/sums/.")),
    ("dot-dot sum name", W, 400, get(b"/abacus/sums/..")),
    ("dot segments through a sum name", W, 400, get(b"/abacus/sums/../sum")),
    ("encoded dot-dot sum name", W, 400, get(b"/abacus/sums/%2e%2e")),
    ("non-ASCII sum name", W, 400, get(b"/abacus/sums/caf\xc3\xa9")),
    # lighttpd 1.4.69 refuses a path that is not UTF-8 itself (its own 400, before any worker).
    ("invalid UTF-8 sum name", S, 400, get(b"/abacus/sums/\xff\xfe")),
    ("colon in a sum name", W, 400, get(b"/abacus/sums/a:b")),
    ("braces in a sum name", W, 400, get(b"/abacus/sums/{abacus}")),
    ("route word as a sum name", W, 400, get(b"/abacus/sums/ledger")),
    ("sum name first character", W, 400, get(b"/abacus/sums/-x")),
    ("extra segment after number", W, 400, post('{"number": 1}', path=b"/abacus/sums/x/number/extra")),
    ("bad sum name on POST", W, 400, post('{"number": 1}', path=b"/abacus/sums/a%2Fb/number")),
    ("bad sum name on PUT", W, 400, post('{"number": 1}', path=b"/abacus/sums/a:b", method=b"PUT")),
    ("bad sum name on DELETE", W, 400, get(b"/abacus/sums/..", method=b"DELETE")),
    ("control character in a sum name", S, 400, get(b"/abacus/sums/a\x01b")),
    ("encoded NUL in a sum name", S, 400, get(b"/abacus/sums/a%00b")),
    ("bad listing limit", W, 400, get(b"/abacus/sums?limit=1000")),
    ("bad listing cursor", W, 400, get(b"/abacus/sums?cursor=a%2Fb")),
    ("unknown int64 form", W, 400, get(b"/abacus/sum?int64=bigint")),
    ("string number without the opt-in", W, 400, post('{"number": "1"}', path=b"/abacus/sums/x/number")),
    ("non-canonical string number", W, 400, post('{"number": "01"}', path=b"/abacus/sums/x/number?int64=string")),
    # --- headers the web server refuses ---
    ("POST without Content-Length", S, 411, b"POST /abacus/number HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-API-Key: " + KEY + b"\r\nContent-Type: application/json\r\n\r\n{}"),
    ("Content-Length and Transfer-Encoding", S, 400, post('{"number": 1}', extra=b"Transfer-Encoding: chunked\r\n")),
    ("negative Content-Length", S, 400, post('{"number": 1}', length=-1)),
    ("two Content-Lengths", S, 400, post('{"number": 1}', extra=b"Content-Length: 5\r\n")),
    ("huge header", S, 431, get(b"/abacus/sum", extra=b"X-Big: " + b"h" * 70000 + b"\r\n")),
    ("control character in a header", S, 400, get(b"/abacus/sum", extra=b"X-Ctl: a\x01b\r\n")),
    ("NUL in a header", S, 400, get(b"/abacus/sum", extra=b"X-Nul: a\x00b\r\n")),
    ("header without colon", S, 400, get(b"/abacus/sum", extra=b"NoColonHere\r\n")),
    ("many repeated headers", S, 431, get(b"/abacus/sum", extra=b"".join(b"X-R%d: v\r\n" % i for i in range(2000)))),
    ("HTTP/2.0 request line", S, 505, get(b"/abacus/sum", version=b"HTTP/2.0")),
    ("garbage request line", S, 400, b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n"),
]


def send(raw):
    """(answer, seconds, complete): complete is False when the server had not
    closed the connection ANSWER_WITHIN seconds after the request was sent."""
    t0 = time.monotonic()
    deadline = t0 + ANSWER_WITHIN
    s = socket.create_connection(("127.0.0.1", PORT), timeout=ANSWER_WITHIN)
    complete = True
    try:
        s.sendall(raw)
    except socket.timeout:
        complete = False
    except OSError:
        pass  # the server may refuse before reading everything
    out = b""
    try:
        while complete:
            left = deadline - time.monotonic()
            if left <= 0:
                complete = False
                break
            s.settimeout(left)
            b = s.recv(65536)
            if not b:
                break
            out += b
    except socket.timeout:
        complete = False
    except ConnectionResetError:
        pass
    s.close()
    return out, time.monotonic() - t0, complete


passed = failed = 0
for name, who, expected, raw in CASES:
    resp, took, complete = send(raw)
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
    if status != expected:
        problems.append("status %d, expected %d" % (status, expected))
    if not complete:
        problems.append("no complete answer within %.0f s (hangs)" % ANSWER_WITHIN)
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
