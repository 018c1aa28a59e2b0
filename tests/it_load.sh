#!/usr/bin/env bash
# tools/abacus-load against the local stack: --verify holds under a mixed,
# random-delta load and across a Redis outage (retries with the same key), it
# catches a sum that moved for other reasons, and its CSV and /metrics
# snapshots are what they claim.  The ledger's audit proves both runs
# addition by addition (tools/abacus-audit --load-csv).
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
check "CSV: header (the old tool's six columns first)" "timestamp,worker_id,target,status,latency_ms,error,method,idempotency_key,delta" "$(head -n 1 "$TMP/run.csv")"
check "CSV: one line per attempt" 2000 "$(tail -n +2 "$TMP/run.csv" | wc -l)"
check "CSV: every line well formed" 0 "$(tail -n +2 "$TMP/run.csv" | grep -cvE '^[0-9]+\.[0-9]+,[0-9]+,http://127\.0\.0\.1:[0-9]+,200,[0-9.]+,"",(GET,,|POST,load-[0-9a-f]+-[0-9a-f]+-[0-9]+,-?[0-9]+)$')"
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

# ---- bad arguments ----
"$LOAD" --requests 10 >/dev/null 2>&1
check "no target: exit 2" 2 "$?"
"$LOAD" --target "$A" --delta-range 5:1 >/dev/null 2>&1
check "an empty delta range: exit 2" 2 "$?"
cd "$ROOT" || exit 1
suite_end
