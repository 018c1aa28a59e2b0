#!/usr/bin/env bash
# smoke.sh BASE_URL [API_KEY] — a quick check of any abacus deployment (local
# stack, docker compose, a server), with curl only.  Adds 1 to the sum once.
#
#   tests/smoke.sh http://127.0.0.1:8001 local-dev-key
#
# Prints one line per check, then "N passed, N failed"; exit status 1 on failure.
set -u
BASE=${1:?usage: smoke.sh BASE_URL [API_KEY]}
BASE=${BASE%/}
KEY=${2:-}
PASSED=0
FAILED=0
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

ok() { PASSED=$((PASSED + 1)); echo "ok   $1"; }
bad() { FAILED=$((FAILED + 1)); echo "FAIL $1: $2"; }
expect() { if [ "$2" = "$3" ]; then ok "$1"; else bad "$1" "expected [$2], got [$3]"; fi; }

# call METHOD PATH [curl args]: sets CODE, BODY, HEAD.
call() {
  local method=$1 path=$2; shift 2
  CODE=$(curl -s -o "$TMP/body" -D "$TMP/head" -w '%{http_code}' --max-time 10 -X "$method" "$BASE$path" "$@")
  BODY=$(cat "$TMP/body")
  HEAD=$(tr -d '\r' <"$TMP/head")
}
auth=()
[ -n "$KEY" ] && auth=(-H "X-API-Key: $KEY")
sum_of() { printf '%s' "$BODY" | sed -n 's/.*"current_sum":\(-\{0,1\}[0-9]\{1,\}\).*/\1/p'; }

call GET /healthz
expect "GET /healthz" '200 {"status":"ok"}' "$CODE $BODY"
call GET /readyz
expect "GET /readyz (Redis reachable)" '200 {"status":"ready"}' "$CODE $BODY"
if [ -n "$KEY" ]; then
  call GET /abacus/sum
  expect "GET /abacus/sum without a key is refused" 401 "$CODE"
  call GET /abacus/sum -H "X-API-Key: smoke-test-not-a-key-$RANDOM"
  expect "GET /abacus/sum with a wrong key is refused" 403 "$CODE"
fi
call GET /abacus/sum "${auth[@]}"
expect "GET /abacus/sum" 200 "$CODE"
before=$(sum_of)
[ -n "$before" ] && ok "the sum is an integer ($before)" || bad "the sum is an integer" "$BODY"

idem="smoke-$(date +%s)-$RANDOM$RANDOM"
call POST /abacus/number "${auth[@]}" -H "Idempotency-Key: $idem" -H 'Content-Type: application/json' -d '{"number": 1}'
expect "POST /abacus/number" 200 "$CODE"
first=$(sum_of)
call POST /abacus/number "${auth[@]}" -H "Idempotency-Key: $idem" -H 'Content-Type: application/json' -d '{"number": 1}'
expect "the same POST again is a replay" "200 true" "$CODE $(printf '%s\n' "$HEAD" | sed -n 's/^[Ii]dempotent-[Rr]eplayed: //p')"
expect "the replay answers the original sum" "$first" "$(sum_of)"
call POST /abacus/number "${auth[@]}" -H "Idempotency-Key: $idem" -H 'Content-Type: application/json' -d '{"number": 2}'
expect "the same key with another number is refused" 422 "$CODE"
call GET /abacus/sum "${auth[@]}"
after=$(sum_of)
if [ -n "$before" ] && [ -n "$after" ] && [ -n "$first" ]; then
  # Other clients may be adding too: our addition is in, and a later read
  # shows at least the sum the POST answered (the replay and the 422 took
  # nothing away; a read that does not see the addition fails here).
  [ "$first" -ge $((before + 1)) ] 2>/dev/null && ok "the addition is in the sum" || bad "the addition is in the sum" "$before -> $first"
  [ "$after" -ge "$first" ] 2>/dev/null && ok "the sum reads back ($after)" || bad "the sum reads back" "the POST answered $first, a GET after it read $after"
else
  bad "the sum reads back" "before=[$before] first=[$first] after=[$after]"
fi
call POST /abacus/number "${auth[@]}" -H "Idempotency-Key: smoke-bad-$RANDOM" -H 'Content-Type: application/json' -d '{"number": 1.5}'
expect "a bad body is a 400 problem" "400 application/problem+json" "$CODE $(printf '%s\n' "$HEAD" | sed -n 's/^[Cc]ontent-[Tt]ype: //p')"

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
