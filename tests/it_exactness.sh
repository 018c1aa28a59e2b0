#!/usr/bin/env bash
# Exactly-once and exact arithmetic under concurrency (SPEC section 3), across
# two front ends sharing one Redis; one Redis round trip per request.  The same
# for named sums (issue 19): a retrying load over 16 of them through both front
# ends at once, each sum exact, two of them proved from their own ledgers.
set -u
. "$(dirname "$0")/lib.sh"
suite_init exactness
use_load_tool

KEY1=exact-key-1-$RANDOM
KEY2=exact-key-2-$RANDOM
start_stack main ABACUS_API_KEYS="$KEY1,$KEY2" ABACUS_RATE_LIMIT_REQUESTS=1000000 || exit 1

# parallel_posts FILE: runs the POSTs listed in FILE (lines "port key idem number")
# through one curl with 32 transfers in flight; prints one status per request.
parallel_posts() {
  local cfg=$TMP/curl.cfg port key idem number
  : >"$cfg"
  while read -r port key idem number; do
    cat >>"$cfg" <<CFG
next
url = "http://127.0.0.1:$port/abacus/number"
header = "X-API-Key: $key"
header = "Idempotency-Key: $idem"
header = "Content-Type: application/json"
data = "{\"number\": $number}"
output = "/dev/null"
write-out = "%{http_code}\n"
max-time = 20
CFG
  done <"$1"
  curl -s --parallel --parallel-immediate --parallel-max 32 -K "$cfg" 2>/dev/null
}

# ---- scoping: the same key string under two API keys is two additions ----
post "$P1" "$KEY1" shared-key 10
check "key under API key 1" "200 10" "$STATUS $(json current_sum)"
post "$P2" "$KEY2" shared-key 10
check "same key under API key 2 is a new addition" "200 20 " "$STATUS $(json current_sum) $(header idempotent-replayed)"
post "$P2" "$KEY1" shared-key 10
check "API key 1 replays its own" "200 10 true" "$STATUS $(json current_sum) $(header idempotent-replayed)"
post "$P1" "$KEY2" shared-key 11
check "API key 2 conflicts on its own" 422 "$STATUS"
check "the idempotency records are scoped by key id" 2 "$(redis-cli -p "$RPORT" --scan --pattern '{abacus}:idem:*:shared-key' | wc -l)"
ttl=$(redis-cli -p "$RPORT" ttl "$(redis-cli -p "$RPORT" --scan --pattern '{abacus}:idem:*:shared-key' | head -n 1)")
check_true "records expire after ABACUS_IDEMPOTENCY_TTL_SECONDS (86400)" test "$ttl" -gt 86000 -a "$ttl" -le 86400

# ---- 50 identical requests in parallel, split over both front ends: applied once ----
req DELETE "http://127.0.0.1:$P1/abacus/sum" -H "X-API-Key: $KEY1"
for i in $(seq 1 50); do
  if [ $((i % 2)) -eq 0 ]; then echo "$P1 $KEY1 same-50 7"; else echo "$P2 $KEY1 same-50 7"; fi
done >"$TMP/same.txt"
statuses=$(parallel_posts "$TMP/same.txt" | sort | uniq -c | awk '{print $2":"$1}' | tr '\n' ' ')
check "50 parallel identical POSTs all answer 200" "200:50 " "$statuses"
check "... and were applied once" 7 "$(sum_at "$P1" "$KEY1")"

# ---- 2,000 concurrent random additions, negative ones too: exact sum ----
req DELETE "http://127.0.0.1:$P1/abacus/sum" -H "X-API-Key: $KEY1"
before=$(evalsha_calls "$RPORT")
python3 - "$P1" "$P2" "$KEY1" "$KEY2" >"$TMP/random.txt" <<'PY'
import random, sys
p1, p2, k1, k2 = sys.argv[1:]
rng = random.Random()
for i in range(2000):
    port = p1 if i % 2 == 0 else p2
    key = k1 if rng.random() < 0.5 else k2
    n = rng.choice([rng.randint(-10**6, 10**6), rng.randint(-2**40, 2**40), -1, 0, 1])
    print(port, key, "rand-%d-%d" % (i, rng.randint(0, 10**9)), n)
PY
expected=$(python3 -c 'import sys; print(sum(int(l.split()[3]) for l in open(sys.argv[1])))' "$TMP/random.txt")
statuses=$(parallel_posts "$TMP/random.txt" | sort | uniq -c | awk '{print $2":"$1}' | tr '\n' ' ')
check "2000 concurrent POSTs all answer 200" "200:2000 " "$statuses"
check "the sum is exact" "$expected" "$(sum_at "$P2" "$KEY2")"
after=$(evalsha_calls "$RPORT")
# 2000 POSTs + the one GET of sum_at: one EVALSHA each, nothing else.
check "one Redis round trip (EVALSHA) per request" 2001 "$((after - before))"

# ---- replaying all 2,000 changes nothing ----
statuses=$(parallel_posts "$TMP/random.txt" | sort | uniq -c | awk '{print $2":"$1}' | tr '\n' ' ')
check "2000 replays all answer 200" "200:2000 " "$statuses"
check "the sum is still exact after the replays" "$expected" "$(sum_at "$P1" "$KEY1")"

# ---- nothing but one EVALSHA reached Redis per request (MONITOR; calls made
# inside scripts are tagged "lua" and do not count) ----
redis-cli -p "$RPORT" monitor >"$TMP/monitor.txt" 2>/dev/null &
mon=$!
PIDS+=("$mon")
wait_until 10 grep -q OK "$TMP/monitor.txt"
head -n 100 "$TMP/random.txt" | sed 's/rand-/mon-/' >"$TMP/mon.txt"
parallel_posts "$TMP/mon.txt" >/dev/null
# MONITOR's output lags on a loaded machine: rather than sleeping and hoping,
# send a marker after the last answer and wait (bounded) until MONITOR shows
# it; everything Redis ran before it is in the file then.  The marker is not
# counted.
mark=monitor-end-$RANDOM-$RANDOM
redis-cli -p "$RPORT" echo "$mark" >/dev/null
wait_until 10 grep -qF "\"$mark\"" "$TMP/monitor.txt"
kill "$mon" 2>/dev/null; wait "$mon" 2>/dev/null
top=$(grep -v ' lua\]' "$TMP/monitor.txt" | grep -v '^OK' | grep -vF "\"$mark\"" | awk '{print $4}' | sort | uniq -c | awk '{print $2":"$1}' | tr '\n' ' ')
check "100 POSTs sent exactly 100 top-level commands, all EVALSHA" '"EVALSHA":100 ' "$top"

# ---- named sums: 16 of them, loaded through both front ends at once, each exact ----
# Retries keep their sum and Idempotency-Key (keys are scoped per API key and
# sum); --verify reads every sum before (a never-written one: 0) and after.
default_sum=$(sum_at "$P1" "$KEY1")
before=$(evalsha_calls "$RPORT")
"$LOAD" --target "http://127.0.0.1:$P1" --target "http://127.0.0.1:$P2" --sums 16 --sum-prefix exact \
  --requests 3000 --concurrency 32 --idempotency --api-key "$KEY1" --delta-range=-1000000:1000000 \
  --verify --out-csv "$TMP/sums.csv" >"$TMP/sums.out" 2>&1
check "16 named sums: abacus-load exit 0" 0 "$?"
out=$(cat "$TMP/sums.out")
check_match "16 named sums: every sum moved by exactly its acknowledged deltas" \
  'verify: ok, each sum moved by exactly its acknowledged deltas \(16 sums checked' "$out"
check_match "16 named sums: every request succeeded" 'succeeded: 3000  failed: 0' "$out"
printf '%s\n' "$out" | grep -E '^verify: (sum|FAILED)' | head -n 5 | sed 's/^/     /'
check "16 named sums: each sum got its share through both front ends" 32 \
  "$(tail -n +2 "$TMP/sums.csv" | awk -F, '$4 == 200 {print $NF, $3}' | sort -u | wc -l)"
after=$(evalsha_calls "$RPORT")
attempts=$(tail -n +2 "$TMP/sums.csv" | wc -l)
# Creating a sum registers it ({prefix}:sums, another hash tag): round trips
# beyond one per request (and per sum read before and after: 16 + 16).
echo "measured: named sums: $(( (after - before - attempts - 32) / 16 )) EVALSHA more for each of 16 sums created (first additions), $((after - before)) for $attempts requests and 32 reads"
# Once they exist: one EVALSHA per request, nothing else.
before=$(evalsha_calls "$RPORT")
"$LOAD" --target "http://127.0.0.1:$P1" --target "http://127.0.0.1:$P2" --sums 16 --sum-prefix exact \
  --requests 500 --concurrency 16 --idempotency --api-key "$KEY1" --get-ratio 0.3 --verify \
  --out-csv "$TMP/sums2.csv" >"$TMP/sums2.out" 2>&1
check "16 named sums again: exit 0, every sum exact" "0 1" "$? $(grep -c '^verify: ok, each sum moved by exactly its acknowledged deltas (16 sums checked' "$TMP/sums2.out")"
after=$(evalsha_calls "$RPORT")
attempts=$(tail -n +2 "$TMP/sums2.csv" | wc -l)
check "named sums that exist: one Redis round trip (EVALSHA) per request" $((attempts + 32)) "$((after - before))"
# Two of the sums, addition by addition, from their own ledgers.
for name in exact-0 exact-15; do
  AUDIT_SUM=$name audit_ok "ledger of $name" "http://127.0.0.1:$P2" "$KEY1" "$TMP/sums.csv" "$TMP/sums2.csv"
done
check "the default sum is untouched by the named sums' load" "$default_sum" "$(sum_at "$P1" "$KEY1")"

suite_end
