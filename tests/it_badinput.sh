#!/usr/bin/env bash
# Bad input through lighttpd (tests/bad_input.py holds the table, one case a
# line): every answer the case's own status (a problem+json one when a worker
# answers), none left hanging; afterwards the sum is unchanged, no worker
# crashed (same pids), Redis holds the same keys (no bad name of a sum created
# one), and every worker still serves (each one adds).
set -u
. "$(dirname "$0")/lib.sh"
suite_init badinput
KEY=bad-input-key-$RANDOM
WORKERS=3 start_stack main ABACUS_API_KEYS="$KEY" ABACUS_RATE_LIMIT_REQUESTS=1000000 || exit 1
A=http://127.0.0.1:$P1
req PUT "$A/abacus/sum" -H "X-API-Key: $KEY" -H 'Content-Type: application/json' -d '{"number": 777}'
pids_before=$(worker_pids "$P1" | tr '\n' ' ')
check_match "3 workers found" '^[0-9]+ [0-9]+ [0-9]+ $' "$pids_before"

keys_before=$(redis-cli -p "$RPORT" --scan | sort | tr '\n' ' ')
python3 "$ROOT/tests/bad_input.py" "$P1" "$KEY" >"$TMP/cases.out" 2>&1
check "every malformed request got the expected refusal" 0 "$?"
# None of them reaches Redis (bad names of sums included): the same keys, none of a named sum.
check "Redis has the same keys after every case" "$keys_before" "$(redis-cli -p "$RPORT" --scan | sort | tr '\n' ' ')"
grep '^FAIL' "$TMP/cases.out"
cases=$(sed -n 's/^\([0-9]*\) cases$/\1/p' "$TMP/cases.out")
check_true "at least 60 cases ($cases)" test "${cases:-0}" -ge 60

check "the sum is unchanged" 777 "$(sum_at "$P1" "$KEY")"
check "no worker crashed (same pids)" "$pids_before" "$(worker_pids "$P1" | tr '\n' ' ')"
# Sequential requests would all reach one idle worker: every_worker_adds
# proves each worker answered (by the pid in its sum_added log line).
check_true "every worker still serves (each one added)" every_worker_adds "$P1" "$KEY"
check "... and the sum moved by exactly what they added" "$((777 + ADDED))" "$(sum_at "$P1" "$KEY")"
check "no key in the logs" "" "$(grep -l "$KEY" "$STACK"/frontend-*/error.log)"
suite_end
