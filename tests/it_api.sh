#!/usr/bin/env bash
# The HTTP contract (SPEC section 2) through two real front ends (lighttpd, or
# nginx with FRONTEND=nginx) and a real redis-server: every route, every status,
# problem+json, X-Request-ID, HEAD.
set -u
. "$(dirname "$0")/lib.sh"
suite_init api
OBSERVE=$TMP/observed.txt   # every status this suite sees, checked against docs/openapi.yaml

USER1=user-key-1-$RANDOM
USER2=user-key-2-$RANDOM
ADMIN=admin-key-$RANDOM
start_stack main ABACUS_API_KEYS="$USER1,$USER2" ABACUS_ADMIN_API_KEYS="$ADMIN" \
  ABACUS_RATE_LIMIT_REQUESTS=100000 || exit 1
A=http://127.0.0.1:$P1
B=http://127.0.0.1:$P2
J=(-H 'Content-Type: application/json')

problem_slug() { printf '%s' "$BODY" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["type"].rsplit(":",1)[1] if d["type"].startswith("urn:abacus:problem:") and d["status"]==int(sys.argv[1]) and isinstance(d["title"],str) and isinstance(d["detail"],str) else "bad-shape")' "$1" 2>/dev/null; }

# expect_problem NAME STATUS SLUG: checks the last response is that problem.
expect_problem() {
  check "$1: status" "$2" "$STATUS"
  check "$1: content type" "application/problem+json" "$(header content-type)"
  check "$1: slug" "$3" "$(problem_slug "$2")"
  check_match "$1: X-Request-ID" '^[A-Za-z0-9._:-]{1,128}$' "$(header x-request-id)"
}

# ---- GET /abacus/sum ----
req GET "$A/abacus/sum" -H "X-API-Key: $USER1"
check "GET sum: 200" 200 "$STATUS"
check "GET sum: missing key reads 0" '{"current_sum":0}' "$BODY"
check "GET sum: content type" application/json "$(header content-type)"
check_match "GET sum: generated X-Request-ID" '^[0-9a-f]{32}$' "$(header x-request-id)"
check "GET sum: RateLimit-Policy" '"default";q=100000;w=60' "$(header ratelimit-policy)"
check_match "GET sum: RateLimit" '^"default";r=[0-9]+;t=[0-9]+$' "$(header ratelimit)"
check "GET sum: nothing written" 0 "$(redis-cli -p "$RPORT" exists '{abacus}:sum')"

req GET "$A/abacus/sum" -H "X-API-Key: $USER1" -H 'X-Request-ID: client.id_1:2-3'
check "X-Request-ID: a sane one is echoed" "client.id_1:2-3" "$(header x-request-id)"
req GET "$A/abacus/sum" -H "X-API-Key: $USER1" -H 'X-Request-ID: has spaces;and<junk>'
check_match "X-Request-ID: an insane one is replaced" '^[0-9a-f]{32}$' "$(header x-request-id)"
req GET "$A/abacus/sum" -H "X-API-Key: $USER1" -H "X-Request-ID: $(printf 'a%.0s' $(seq 1 129))"
check_match "X-Request-ID: 129 characters is replaced" '^[0-9a-f]{32}$' "$(header x-request-id)"

# ---- POST /abacus/number ----
req POST "$A/abacus/number" -H "X-API-Key: $USER1" -H 'Idempotency-Key: add-1' "${J[@]}" -d '{"number": 40}'
check "POST: 200" 200 "$STATUS"
check "POST: body" '{"message":"Number added successfully.","current_sum":40}' "$BODY"
check "POST: not a replay" "" "$(header idempotent-replayed)"
req POST "$B/abacus/number" -H "X-API-Key: $USER1" -H 'Idempotency-Key: add-2' -H 'Content-Type: application/json; charset=utf-8' -d '{"number": 2, "comment": "other members are ignored"}'
check "POST via B with charset: 200" 200 "$STATUS"
check "POST via B: sum" 42 "$(json current_sum)"
req POST "$B/abacus/number" -H "X-API-Key: $USER1" -H 'Idempotency-Key: add-1' "${J[@]}" -d '{"number": 40}'
check "replay: 200" 200 "$STATUS"
check "replay: original sum" 40 "$(json current_sum)"
check "replay: header" true "$(header idempotent-replayed)"
req POST "$A/abacus/number" -H "X-API-Key: $USER1" -H 'Idempotency-Key: "add-3"' "${J[@]}" -d '{"number": 1}'
check "quoted key: 200" 200 "$STATUS"
req POST "$A/abacus/number" -H "X-API-Key: $USER1" -H 'Idempotency-Key: add-3' "${J[@]}" -d '{"number": 1}'
check "quoted key: the quotes were stripped (replay)" true "$(header idempotent-replayed)"
req POST "$A/abacus/number" -H "X-API-Key: $USER1" -H 'Idempotency-Key: add-1' "${J[@]}" -d '{"number": 41}'
expect_problem "reused key with another number" 422 idempotency-key-conflict
check "sum after the 422" 43 "$(sum_at "$P1" "$USER1")"

# ---- PUT and DELETE /abacus/sum ----
req PUT "$A/abacus/sum" -H "X-API-Key: $ADMIN" "${J[@]}" -d '{"number": -17}'
check "PUT: 200" 200 "$STATUS"
check "PUT: body" '{"message":"Sum set successfully.","new_sum":-17}' "$BODY"
check "PUT: visible through B" -17 "$(sum_at "$P2" "$USER2")"
req PUT "$A/abacus/sum" -H "X-API-Key: $USER1" "${J[@]}" -d '{"number": 1}'
expect_problem "PUT with a non-admin key" 403 admin-required
req DELETE "$B/abacus/sum" -H "X-API-Key: $USER2"
expect_problem "DELETE with a non-admin key" 403 admin-required
check "sum after refused admin calls" -17 "$(sum_at "$P1" "$USER1")"
req DELETE "$B/abacus/sum" -H "X-API-Key: $ADMIN"
check "DELETE: 200" 200 "$STATUS"
check "DELETE: body" '{"message":"Sum reset successfully.","new_sum":0}' "$BODY"
req PUT "$A/abacus/sum" -H "X-API-Key: $ADMIN" "${J[@]}" -d '{"number": "5"}'
expect_problem "PUT with a string" 400 invalid-number

# ---- health ----
req GET "$A/healthz"
check "healthz: 200 without a key" 200 "$STATUS"
check "healthz: body" '{"status":"ok"}' "$BODY"
req GET "$B/readyz"
check "readyz: 200 without a key" 200 "$STATUS"
check "readyz: body" '{"status":"ready"}' "$BODY"

# ---- HEAD ----
req GET "$A/abacus/sum" -H "X-API-Key: $USER1"
get_len=$(header content-length)
req HEAD "$A/abacus/sum" -H "X-API-Key: $USER1"
check "HEAD sum: 200" 200 "$STATUS"
check "HEAD sum: GET's Content-Length" "$get_len" "$(header content-length)"
req HEAD "$A/healthz"
check "HEAD healthz: 200" 200 "$STATUS"
# curl --head never reads a body, so look at the bytes on the wire.
printf 'HEAD /abacus/sum HTTP/1.0\r\nHost: x\r\nX-API-Key: %s\r\n\r\n' "$USER1" | raw_http "$P1" >"$TMP/head.raw"
check_match "HEAD on the wire: 200 with GET's length" $'^HTTP/1.[01] 200 OK\r\n.*Content-Length: '"$get_len" "$(cat "$TMP/head.raw")"
check "HEAD on the wire: nothing after the head" "0" "$(python3 -c 'import sys; print(len(open(sys.argv[1],"rb").read().split(b"\r\n\r\n", 1)[1]))' "$TMP/head.raw")"
req HEAD "$A/abacus/sum"
check "HEAD without a key: 401" 401 "$STATUS"

# ---- 404 and 405 ----
for path in /nope /abacus /abacus/ /abacus/sum/ /abacus/SUM /abacus/%73um /abacus/sum/../number /metricsx; do
  req GET "$A$path" -H "X-API-Key: $USER1" --path-as-is
  expect_problem "GET $path" 404 not-found
done
req POST "$A/abacus/sum" -H "X-API-Key: $USER1" "${J[@]}" -d '{"number": 1}'
expect_problem "POST /abacus/sum" 405 method-not-allowed
check "POST /abacus/sum: Allow" "get, head, put, delete" "$(header allow)"
req GET "$A/abacus/number" -H "X-API-Key: $USER1"
expect_problem "GET /abacus/number" 405 method-not-allowed
check "GET /abacus/number: Allow" "post" "$(header allow)"
req PATCH "$A/abacus/sum" -H "X-API-Key: $USER1"
expect_problem "PATCH /abacus/sum" 405 method-not-allowed
req DELETE "$A/healthz"
expect_problem "DELETE /healthz" 405 method-not-allowed
check "DELETE /healthz: Allow" "get, head" "$(header allow)"

# ---- 401 and 403 ----
req GET "$A/abacus/sum"
expect_problem "no X-API-Key" 401 unauthorized
req GET "$A/abacus/sum" -H "X-API-Key: wrong-$USER1"
expect_problem "unknown X-API-Key" 403 forbidden
req POST "$A/abacus/number" -H 'Idempotency-Key: x' "${J[@]}" -d '{"number": 1}'
expect_problem "POST without a key" 401 unauthorized
check "401 comes before the rate limiter" "" "$(header ratelimit)"

# ---- 400, 411, 413, 415: bad input changes nothing ----
req PUT "$A/abacus/sum" -H "X-API-Key: $ADMIN" "${J[@]}" -d '{"number": 1000}'
bad_body() { # NAME SLUG BODY
  req POST "$A/abacus/number" -H "X-API-Key: $USER1" -H "Idempotency-Key: bad-$RANDOM$RANDOM" "${J[@]}" --data-binary "$3"
  expect_problem "$1" 400 "$2"
}
bad_body "malformed JSON" malformed-json '{"number": 1'
bad_body "trailing bytes" malformed-json '{"number": 1} x'
bad_body "single quotes" malformed-json "{'number': 1}"
bad_body "NaN" malformed-json '{"number": NaN}'
bad_body "leading zero" malformed-json '{"number": 01}'
bad_body "plus sign" malformed-json '{"number": +1}'
bad_body "body is an array" body-not-object '[1]'
bad_body "body is a number" body-not-object '5'
bad_body "number missing" invalid-number '{"num": 1}'
bad_body "number as string" invalid-number '{"number": "1"}'
bad_body "number with fraction" invalid-number '{"number": 1.0}'
bad_body "number with exponent" invalid-number '{"number": 1e3}'
bad_body "number true" invalid-number '{"number": true}'
bad_body "number null" invalid-number '{"number": null}'
bad_body "2^63" invalid-number '{"number": 9223372036854775808}'
bad_body "-2^63-1" invalid-number '{"number": -9223372036854775809}'
bad_body "30 digits" invalid-number '{"number": 123456789012345678901234567890}'
bad_body "duplicate member" invalid-number '{"number": 1, "number": 2}'
check "validation error lists the field" number "$(printf '%s' "$BODY" | python3 -c 'import json,sys; print(json.load(sys.stdin)["errors"][0]["field"])')"
req POST "$A/abacus/number" -H "X-API-Key: $USER1" "${J[@]}" -d '{"number": 1}'
expect_problem "no Idempotency-Key" 400 idempotency-key-missing
req POST "$A/abacus/number" -H "X-API-Key: $USER1" -H "Idempotency-Key: $(printf 'k%.0s' $(seq 1 256))" "${J[@]}" -d '{"number": 1}'
expect_problem "Idempotency-Key of 256 characters" 400 idempotency-key-invalid
req POST "$A/abacus/number" -H "X-API-Key: $USER1" -H "Idempotency-Key: caf$(printf '\xc3\xa9')" "${J[@]}" -d '{"number": 1}'
expect_problem "Idempotency-Key with non-ASCII" 400 idempotency-key-invalid
req POST "$A/abacus/number" -H "X-API-Key: $USER1" -H 'Idempotency-Key: e1' -H 'Content-Length: 0' "${J[@]}"
expect_problem "empty body" 411 length-required
req POST "$A/abacus/number" -H "X-API-Key: $USER1" -H 'Idempotency-Key: e2'
check "POST without Content-Length: the web server's own 411" 411 "$STATUS"
head -c 5000 /dev/zero | tr '\0' ' ' >"$TMP/big.json"
req POST "$A/abacus/number" -H "X-API-Key: $USER1" -H 'Idempotency-Key: e3' "${J[@]}" --data-binary @"$TMP/big.json"
expect_problem "body over ABACUS_MAX_BODY_BYTES" 413 body-too-large
head -c 1048576 /dev/zero | tr '\0' '1' >"$TMP/huge.json"
req POST "$A/abacus/number" -H "X-API-Key: $USER1" -H 'Idempotency-Key: e4' "${J[@]}" --data-binary @"$TMP/huge.json"
expect_problem "1 MiB body" 413 body-too-large
req POST "$A/abacus/number" -H "X-API-Key: $USER1" -H 'Idempotency-Key: e5' -H 'Content-Type: text/plain' -d '{"number": 1}'
expect_problem "text/plain" 415 unsupported-media-type
req POST "$A/abacus/number" -H "X-API-Key: $USER1" -H 'Idempotency-Key: e6' -d '{"number": 1}'
expect_problem "curl's default form type" 415 unsupported-media-type
check "sum unchanged by every bad request" 1000 "$(sum_at "$P2" "$USER2")"
req POST "$A/abacus/number" -H "X-API-Key: $USER1" -H 'Idempotency-Key: e5' "${J[@]}" -d '{"number": 1}'
check "a key refused for validation stays unused" "200 " "$STATUS $(header idempotent-replayed)"

# ---- 409: int64 edges through HTTP ----
req PUT "$A/abacus/sum" -H "X-API-Key: $ADMIN" "${J[@]}" -d '{"number": 9223372036854775806}'
post "$P1" "$USER1" edge-1 1
check "to INT64_MAX: 200" 200 "$STATUS"
check "to INT64_MAX: exact" 9223372036854775807 "$(json current_sum)"
post "$P2" "$USER1" edge-2 1
expect_problem "past INT64_MAX" 409 sum-out-of-range
check "sum unchanged after 409" 9223372036854775807 "$(sum_at "$P1" "$USER1")"
req PUT "$A/abacus/sum" -H "X-API-Key: $ADMIN" "${J[@]}" -d '{"number": -9223372036854775808}'
check "PUT INT64_MIN" -9223372036854775808 "$(json new_sum)"
post "$P1" "$USER1" edge-3 -1
expect_problem "past INT64_MIN" 409 sum-out-of-range
post "$P1" "$USER1" edge-2 9223372036854775807
check "a key refused with 409 stays unused" "200 -1" "$STATUS $(json current_sum)"
req PUT "$A/abacus/sum" -H "X-API-Key: $ADMIN" "${J[@]}" -d '{"number": 9007199254740992}'
post "$P2" "$USER1" big-1 1
check "2^53 + 1 is exact" 9007199254740993 "$(json current_sum)"
post "$P2" "$USER1" big-2 2
check "2^53 + 3 is exact" 9007199254740995 "$(json current_sum)"
post "$P1" "$USER1" big-1 1
check "replay near 2^53 is exact" 9007199254740993 "$(json current_sum)"

# ---- 500: a corrupt sum is reported, never reset ----
redis-cli -p "$RPORT" set '{abacus}:sum' 'garbage' >/dev/null
req GET "$A/abacus/sum" -H "X-API-Key: $USER1"
expect_problem "corrupt sum on GET" 500 sum-not-integer
post "$P2" "$USER1" corrupt-1 1
expect_problem "corrupt sum on POST" 500 sum-not-integer
check "corrupt sum left as it was" garbage "$(redis-cli -p "$RPORT" get '{abacus}:sum')"
req DELETE "$A/abacus/sum" -H "X-API-Key: $ADMIN"
check "an admin can repair it" 200 "$STATUS"

# ---- logs ----
logs=$(cat "$STACK"/frontend-*/error.log)
check "no API key in any log" "" "$(printf '%s' "$logs" | grep -oE "$USER1|$USER2|$ADMIN" | head -n 1)"
check "worker log lines are JSON" "" "$(printf '%s\n' "$logs" | grep '^{' | python3 -c '
import json, sys
for line in sys.stdin:
    d = json.loads(line)
    assert {"ts", "level", "event", "request_id"} <= set(d), line
' 2>&1 | tail -n 1)"
check_match "start-up logs the configuration with key ids" '"event":"config".*"api_key_ids":\["[0-9a-f]{8}","[0-9a-f]{8}"\]' "$logs"
check_match "sum changes are logged" '"event":"sum_added".*"delta":40' "$logs"
check_match "replays are logged" '"event":"idempotent_replay"' "$logs"
check_match "auth failures are logged with the key id" '"event":"auth_failure".*"reason":"unknown","key_id":"[0-9a-f]{8}"' "$logs"

# ---- every status observed here is one docs/openapi.yaml declares ----
undeclared=$(python3 - "$ROOT/docs/openapi.yaml" "$OBSERVE" <<'PY'
import sys, yaml
doc = yaml.safe_load(open(sys.argv[1]))
paths = doc["paths"]
def declared(path, method):
    op = paths.get(path, {}).get(method.lower())
    return set(op["responses"]) if op else None
anywhere_405 = any("405" in op.get("responses", {}) for p in paths.values() for op in p.values() if isinstance(op, dict))
bad = set()
for line in open(sys.argv[2]):
    method, path, status = line.split()
    if path not in paths:
        ok = status == "404" and "404" in (declared("/{path}", "GET") or ())
    else:
        statuses = declared(path, method)
        ok = (statuses is not None and status in statuses) or (status == "405" and anywhere_405)
    if not ok:
        bad.add("%s %s %s" % (method, path, status))
print(" | ".join(sorted(bad)))
PY
)
check "every observed status is declared in docs/openapi.yaml" "" "$undeclared"
# 429 and 503 are observed by it_ratelimit and it_redis, not here.
check "the check saw every status of this suite" "200 400 401 403 404 405 409 411 413 415 422 500 " "$(awk '{print $3}' "$OBSERVE" | sort -u | tr '\n' ' ')"

suite_end
