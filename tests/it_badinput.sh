#!/usr/bin/env bash
# Bad input through lighttpd (tests/bad_input.py holds the table, one case a
# line): every answer a 4xx (a problem+json one when a worker answers), none
# slower than a second; afterwards the sum is unchanged, no worker crashed
# (same pids), and every worker still serves.
set -u
. "$(dirname "$0")/lib.sh"
suite_init badinput
KEY=bad-input-key-$RANDOM
WORKERS=3 start_stack main ABACUS_API_KEYS="$KEY" ABACUS_RATE_LIMIT_REQUESTS=1000000 || exit 1
A=http://127.0.0.1:$P1
req PUT "$A/abacus/sum" -H "X-API-Key: $KEY" -H 'Content-Type: application/json' -d '{"number": 777}'
pids_before=$(pgrep -P "$(cat "$STACK/frontend-$P1/frontend.pid")" | sort | tr '\n' ' ')

python3 "$ROOT/tests/bad_input.py" "$P1" "$KEY" >"$TMP/cases.out" 2>&1
check "every malformed request got the expected refusal" 0 "$?"
grep '^FAIL' "$TMP/cases.out"
cases=$(sed -n 's/^\([0-9]*\) cases$/\1/p' "$TMP/cases.out")
check_true "at least 60 cases ($cases)" test "${cases:-0}" -ge 60

check "the sum is unchanged" 777 "$(sum_at "$P1" "$KEY")"
check "no worker crashed (same pids)" "$pids_before" "$(pgrep -P "$(cat "$STACK/frontend-$P1/frontend.pid")" | sort | tr '\n' ' ')"
ok=0
for i in $(seq 1 12); do req GET "$A/abacus/sum" -H "X-API-Key: $KEY"; [ "$STATUS" = 200 ] && ok=$((ok + 1)); done
check "every worker still serves" 12 "$ok"
check "no key in the logs" "" "$(grep -l "$KEY" "$STACK"/frontend-*/error.log)"
suite_end
