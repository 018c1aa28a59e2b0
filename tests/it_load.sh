#!/usr/bin/env bash
# tools/abacus-load against the local stack: --verify holds under a mixed,
# random-delta load and across a Redis outage (retries with the same key), it
# catches a sum that moved for other reasons, and its CSV and /metrics
# snapshots are what they claim.  The ledger's audit proves both runs
# addition by addition (tools/abacus-audit --load-csv).  With --sums the same
# over named sums (issue 19): each sum verified on its own, a moved one named,
# the CSV's sum column, bad --sums and --sum-prefix values refused.
set -u
. "$(dirname "$0")/lib.sh"
suite_init load
use_load_tool
KEY=load-key-$RANDOM

WORKERS=3 start_stack main ABACUS_API_KEYS="$KEY" ABACUS_RATE_LIMIT_REQUESTS=1000000 || exit 1
A=http://127.0.0.1:$P1
B=http://127.0.0.1:$P2
cd "$TMP" || exit 1

# ---- a mixed load with random signed deltas, verified ----
"$LOAD" --target1 "$A" --target2 "$B" --requests 2000 --concurrency 16 --idempotency \
  --api-key "$KEY" --delta-range=-1000000:1000000 --get-ratio 0.25 --verify \
  --out-csv "$TMP/run.csv" --metrics-url "$A/metrics" >"$TMP/run.out" 2>"$TMP/run.err"
check "mixed load: exit 0" 0 "$?"
out=$(cat "$TMP/run.out")
check_match "mixed load: verify ok" 'verify: ok, the sum moved by exactly the acknowledged deltas' "$out"
check_match "mixed load: summary has req/s" 'requests: 2000 in [0-9.]+ s = [0-9]+ req/s' "$out"
check_match "mixed load: summary has percentiles" 'latency ms: p50 [0-9.]+  p90 [0-9.]+  p99 [0-9.]+  max [0-9.]+' "$out"
check_match "mixed load: summary counts statuses" 'statuses \(every attempt\): 200:2000' "$out"
check "not a terminal: no progress line" "" "$(cat "$TMP/run.err")"
check "CSV: header (the old tool's six columns first, the sum last)" "timestamp,worker_id,target,status,latency_ms,error,method,idempotency_key,delta,sum" "$(head -n 1 "$TMP/run.csv")"
check "CSV: one line per attempt" 2000 "$(tail -n +2 "$TMP/run.csv" | wc -l)"
check "CSV: every line well formed (the sum: default)" 0 "$(tail -n +2 "$TMP/run.csv" | grep -cvE '^[0-9]+\.[0-9]+,[0-9]+,http://127\.0\.0\.1:[0-9]+,200,[0-9.]+,"",(GET,,|POST,load-[0-9a-f]+-[0-9a-f]+-[0-9]+,-?[0-9]+),default$')"
check "CSV: both targets used" 2 "$(tail -n +2 "$TMP/run.csv" | cut -d, -f3 | sort -u | wc -l)"
check "CSV: worker ids within the concurrency" 1 "$(tail -n +2 "$TMP/run.csv" | cut -d, -f2 | sort -n | awk 'NR == 1 {lo = $1} {hi = $1} END {print (lo >= 0 && hi <= 15) ? 1 : 0}')"
check_true "metrics snapshots were taken" test "$(grep -c '^# snapshot .* ok' metrics_snapshots.txt)" -ge 2
check "the last snapshot is the final one" 1 "$(grep '^# snapshot' metrics_snapshots.txt | tail -n 1 | grep -c '(final)$')"
check_match "metrics snapshots hold /metrics" 'abacus_request_total\{endpoint="/abacus/number",method="POST",status="200"\} [0-9]+' "$(cat metrics_snapshots.txt)"

# ---- a Redis outage in the middle: retried with the same key, still exact ----
"$LOAD" --target "$A" --target "$B" --requests 2400 --concurrency 8 --rate 600 --idempotency \
  --api-key "$KEY" --delta-range=-5:20 --verify --out-csv "$TMP/outage.csv" >"$TMP/outage.out" 2>&1 &
load=$!
sleep 1.2
rpid=$(cat "$STACK/redis/redis.pid")
kill -STOP "$rpid"; sleep 1.5; kill -CONT "$rpid"
wait "$load"
check "outage: exit 0" 0 "$?"
out=$(cat "$TMP/outage.out")
check_match "outage: verify ok" 'verify: ok' "$out"
check_match "outage: there were retries" 'retries: [1-9][0-9]*' "$out"
check_match "outage: failed attempts were 503" '503:[1-9]' "$out"
check_match "outage: every request succeeded in the end" 'succeeded: 2400  failed: 0' "$out"
check_true "outage: the CSV shows the 503s" test "$(cut -d, -f4 "$TMP/outage.csv" | grep -c '^503$')" -ge 1
# The two runs above, addition by addition, before the next one's PUT.
audit_ok "mixed load, then a Redis outage" "$A" "$KEY" "$TMP/run.csv" "$TMP/outage.csv"

# ---- --verify catches a sum moved behind its back ----
"$LOAD" --target "$A" --requests 1500 --concurrency 4 --rate 500 --idempotency --api-key "$KEY" --verify \
  >"$TMP/moved.out" 2>&1 &
load=$!
sleep 1
req PUT "$A/abacus/sum" -H "X-API-Key: $KEY" -H 'Content-Type: application/json' -d '{"number": 123456789}'
wait "$load"
check "a sum moved by someone else: exit 1" 1 "$?"
check_match "a sum moved by someone else: says so" 'verify: FAILED' "$(cat "$TMP/moved.out")"

# ---- named sums: a mixed load over 8, each verified; the CSV says which sum ----
"$LOAD" --target "$A" --target "$B" --sums 8 --sum-prefix mixed --requests 1600 --concurrency 16 --idempotency \
  --api-key "$KEY" --delta-range=-1000:1000 --get-ratio 0.25 --verify --out-csv "$TMP/sums.csv" \
  >"$TMP/sums.out" 2>&1
check "named sums: exit 0" 0 "$?"
out=$(cat "$TMP/sums.out")
check_match "named sums: verify ok, with the count of sums" 'verify: ok, each sum moved by exactly its acknowledged deltas \(8 sums checked, together -?[0-9]+ -> -?[0-9]+\)' "$out"
check_match "named sums: the summary names them" 'requests: 1600 in [0-9.]+ s = [0-9]+ req/s  \(concurrency 16, 2 targets, 8 named sums\)' "$out"
# A GET of a sum not written yet is 404 sum-not-found: a right answer, not a failure.
check_match "named sums: every request succeeded" 'succeeded: 1600  failed: 0' "$out"
check "named sums CSV: every line well formed" 0 "$(tail -n +2 "$TMP/sums.csv" | grep -cvE '^[0-9]+\.[0-9]+,[0-9]+,http://127\.0\.0\.1:[0-9]+,(200,[0-9.]+,"",(GET,,|POST,load-[0-9a-f]+-[0-9a-f]+-[0-9]+,-?[0-9]+)|404,[0-9.]+,"",GET,,),mixed-[0-7]$')"
check "named sums CSV: the requests spread evenly (200 a sum)" "mixed-0:200 mixed-1:200 mixed-2:200 mixed-3:200 mixed-4:200 mixed-5:200 mixed-6:200 mixed-7:200 " \
  "$(tail -n +2 "$TMP/sums.csv" | awk -F, '{print $NF}' | sort | uniq -c | awk '{printf "%s:%s ", $2, $1}')"
check "named sums CSV: each sum through both front ends" 16 "$(tail -n +2 "$TMP/sums.csv" | awk -F, '{print $NF, $3}' | sort -u | wc -l)"
AUDIT_SUM=mixed-5 audit_ok "named sum mixed-5" "$A" "$KEY" "$TMP/sums.csv"
# The default sum's audit takes only the default sum's rows of the same CSV.
audit_run "the default sum, with the named sums' CSV" "$A" "$KEY" "$TMP/sums.csv"
check_match "the default sum's audit finds no addition of its own in a named sums' CSV" \
  'could not audit: no addition with an Idempotency-Key in' "$AUDIT_LINE"

# A deleted sum's ledger holds a "delete" entry (was: the sum before, 0 after), and
# the chain goes on through it when the name is written again.
req DELETE "$A/abacus/sums/mixed-3" -H "X-API-Key: $KEY"
check "DELETE of a named sum" 200 "$STATUS"
req POST "$B/abacus/sums/mixed-3/number" -H "X-API-Key: $KEY" -H "Idempotency-Key: after-delete-$RANDOM" \
  -H 'Content-Type: application/json' -d '{"number": 42}'
check "the name written again starts from 0" "200 42" "$STATUS $(json current_sum)"
AUDIT_SUM=mixed-3 audit_ok "named sum mixed-3, deleted and written again" "$A" "$KEY" "$TMP/sums.csv"

# ---- --verify names the named sum moved behind its back ----
"$LOAD" --target "$A" --sums 4 --sum-prefix moved --requests 1200 --concurrency 4 --rate 400 --idempotency \
  --api-key "$KEY" --verify >"$TMP/sums-moved.out" 2>&1 &
load=$!
sleep 1
req POST "$B/abacus/sums/moved-2/number" -H "X-API-Key: $KEY" -H "Idempotency-Key: behind-its-back-$RANDOM" -H 'Content-Type: application/json' -d '{"number": 1000}'
check "a named sum moved by someone else: the POST was applied" 200 "$STATUS"
wait "$load"
check "a named sum moved by someone else: exit 1" 1 "$?"
out=$(cat "$TMP/sums-moved.out")
check_match "... names that sum and by how much" 'verify: sum moved-2 went -?[0-9]+ -> -?[0-9]+, its acknowledged deltas say -?[0-9]+ \(\+1000\)' "$out"
check "... and only that sum" 1 "$(printf '%s\n' "$out" | grep -c '^verify: sum ')"
check_match "... then the verdict, with the count of sums" 'verify: FAILED: 1 of 4 sums did not move by exactly their acknowledged deltas \(4 sums checked' "$out"

# ---- bad arguments ----
"$LOAD" --requests 10 >/dev/null 2>&1
check "no target: exit 2" 2 "$?"
"$LOAD" --target "$A" --delta-range 5:1 >/dev/null 2>&1
check "an empty delta range: exit 2" 2 "$?"
for bad in -1 +4 007 x '' 1.5 1e3 100001 ' 4' 4x 99999999999999999999; do
  err=$("$LOAD" --target "$A" --sums "$bad" 2>&1 >/dev/null)
  check "--sums '$bad': exit 2" 2 "$?"
  check "--sums '$bad': says why" "abacus-load: --sums wants a whole number from 0 to 100000, not '$bad'" "$(printf '%s\n' "$err" | head -n 1)"
done
err=$("$LOAD" --target "$A" --sums 2 --sum-prefix -x 2>&1 >/dev/null)
check "--sum-prefix starting with '-': exit 2" 2 "$?"
check "... says why" "abacus-load: --sum-prefix '-x' must start with a letter or a digit" "$(printf '%s\n' "$err" | head -n 1)"
err=$("$LOAD" --target "$A" --sums 2 --sum-prefix a/b 2>&1 >/dev/null)
check "--sum-prefix with '/': exit 2, says why" "2 abacus-load: --sum-prefix 'a/b' may hold only A-Z a-z 0-9 _ . -" "$? $(printf '%s\n' "$err" | head -n 1)"
long=$(printf 'p%.0s' $(seq 1 60))
err=$("$LOAD" --target "$A" --sums 100000 --sum-prefix "$long" 2>&1 >/dev/null)
check "--sum-prefix making names past 64 characters: exit 2, says why" "2 abacus-load: --sum-prefix '$long' makes names longer than 64 characters" "$? $(printf '%s\n' "$err" | head -n 1)"
"$LOAD" --target "$A" --sums 10 --sum-prefix "$(printf 'p%.0s' $(seq 1 62))" --requests 1 --api-key "$KEY" >/dev/null 2>&1
check "--sum-prefix making names of exactly 64 characters: accepted" 0 "$?"
cd "$ROOT" || exit 1
suite_end
