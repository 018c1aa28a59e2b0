#!/usr/bin/env bash
# smoke.sh [--write] BASE_URL [API_KEY] — a quick check of any abacus deployment
# (local stack, docker compose, a server), with curl only.
#
#   tests/smoke.sh http://127.0.0.1:8001 local-dev-key            read-only
#   tests/smoke.sh --write http://127.0.0.1:8001 local-dev-key    also adds 1, once
#
# By default it changes nothing: health, readiness, the key refusals, the sum,
# /metrics, /openapi.yaml and requests refused before anything is stored (a
# bad body, an unknown path, a wrong method).  With --write (or SMOKE_WRITE=1)
# it also adds 1 to the sum with a fresh Idempotency-Key, repeats it (a
# replay: nothing more is added) and tries the key with another number (422).
# Extra curl options (e.g. --cacert ca.pem for HTTPS) go in SMOKE_CURL_OPTS.
#
# Prints one line per check, then "N passed, N failed"; exit status 1 on failure.
set -u
WRITE=${SMOKE_WRITE:-0}
args=()
for a in "$@"; do
  case $a in
    --write) WRITE=1 ;;
    -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "smoke.sh: unknown option $a" >&2; exit 2 ;;
    *) args+=("$a") ;;
  esac
done
[ "$WRITE" = 1 ] || WRITE=0
BASE=${args[0]:-}
[ -n "$BASE" ] || { echo "usage: smoke.sh [--write] BASE_URL [API_KEY]" >&2; exit 2; }
BASE=${BASE%/}
KEY=${args[1]:-}
read -r -a CURL_OPTS <<<"${SMOKE_CURL_OPTS:-}"
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
  CODE=$(curl -s "${CURL_OPTS[@]}" -o "$TMP/body" -D "$TMP/head" -w '%{http_code}' --max-time 10 -X "$method" "$BASE$path" "$@")
  BODY=$(cat "$TMP/body")
  HEAD=$(tr -d '\r' <"$TMP/head")
}
header() { printf '%s\n' "$HEAD" | sed -n "s/^$1: //Ip" | tail -n 1; }
auth=()
[ -n "$KEY" ] && auth=(-H "X-API-Key: $KEY")
sum_of() { printf '%s' "$BODY" | sed -n 's/.*"current_sum":\(-\{0,1\}[0-9]\{1,\}\).*/\1/p'; }

# ---- read-only ----
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
[ -n "$(header X-Request-ID)" ] && ok "answers carry X-Request-ID" || bad "answers carry X-Request-ID" "$HEAD"
call GET /metrics
expect "GET /metrics" 200 "$CODE"
printf '%s\n' "$BODY" | grep -q '^abacus_request_total{' && ok "/metrics has abacus_request_total" ||
  bad "/metrics has abacus_request_total" "$(printf '%s' "$BODY" | head -c 200)"
call GET /openapi.yaml
expect "GET /openapi.yaml" "200 openapi:" "$CODE $(printf '%s\n' "$BODY" | grep -m 1 -o '^openapi:')"
# Refused before anything is stored: never an addition, whatever the settings.
call POST /abacus/number "${auth[@]}" -H "Idempotency-Key: smoke-bad-$RANDOM" -H 'Content-Type: application/json' -d '{"number": 1.5}'
expect "a bad body is a 400 problem" "400 application/problem+json" "$CODE $(header Content-Type)"
call GET /abacus/no-such-route "${auth[@]}"
expect "an unknown path is a 404 problem" "404 application/problem+json" "$CODE $(header Content-Type)"
call GET /abacus/number "${auth[@]}"
expect "a wrong method is 405 with Allow" "405 POST" "$CODE $(header Allow)"

# ---- with --write: one addition, its replay, a conflict ----
first=""
if [ "$WRITE" = 1 ]; then
  idem="smoke-$(date +%s)-$RANDOM$RANDOM"
  call POST /abacus/number "${auth[@]}" -H "Idempotency-Key: $idem" -H 'Content-Type: application/json' -d '{"number": 1}'
  expect "POST /abacus/number" 200 "$CODE"
  first=$(sum_of)
  call POST /abacus/number "${auth[@]}" -H "Idempotency-Key: $idem" -H 'Content-Type: application/json' -d '{"number": 1}'
  expect "the same POST again is a replay" "200 true" "$CODE $(header Idempotent-Replayed)"
  expect "the replay answers the original sum" "$first" "$(sum_of)"
  call POST /abacus/number "${auth[@]}" -H "Idempotency-Key: $idem" -H 'Content-Type: application/json' -d '{"number": 2}'
  expect "the same key with another number is refused" 422 "$CODE"
fi

call GET /abacus/sum "${auth[@]}"
after=$(sum_of)
if [ -z "$before" ] || [ -z "$after" ]; then
  bad "the sum reads back" "before=[$before] after=[$after]"
elif [ "$WRITE" = 1 ]; then
  # Other clients may be adding too: our addition is in, and a later read
  # shows at least the sum the POST answered (the replay and the 422 took
  # nothing away; a read that does not see the addition fails here).
  [ -n "$first" ] && [ "$first" -ge $((before + 1)) ] 2>/dev/null && ok "the addition is in the sum" ||
    bad "the addition is in the sum" "$before -> $first"
  [ -n "$first" ] && [ "$after" -ge "$first" ] 2>/dev/null && ok "the sum reads back ($after)" ||
    bad "the sum reads back" "the POST answered [$first], a GET after it read $after"
else
  ok "read-only: nothing was added (run with --write to test an addition)"
fi

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
