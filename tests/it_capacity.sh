#!/usr/bin/env bash
# What abacus keeps in Redis, measured on a real redis-server filled through
# the real service (docs/OPERATIONS.md, "Capacity"):
#   - an idempotency record ({abacus}:idem:<key id>:<Idempotency-Key>, one per
#     keyed addition, living ABACUS_IDEMPOTENCY_TTL_SECONDS): 10,000 additions
#     with short deltas, then 2,000 with 17-digit ones (a longer record);
#   - an attempt token of a keyless change ({abacus}:op:<token>, living about
#     62 s): 2,000 additions without an Idempotency-Key;
#   - a caller's limiter log ({abacus}:rl:k:<key id>, a sorted set of the
#     admissions of the last window): 10,000 entries, and callers at 100 and
#     600 (the default limit) entries.
# Memory is INFO's used_memory less client and AOF buffers (they come and go
# with the traffic), before and after.  Prints "measured: " lines and fails
# when a record grows past a bound, so a change that bloats them is seen.
set -u
. "$(dirname "$0")/lib.sh"
suite_init capacity
use_load_tool
K=cap-key-$RANDOM$RANDOM         # the additions
KB=cap-keyless-$RANDOM$RANDOM    # the keyless additions
K100=cap-100-$RANDOM$RANDOM      # a caller with 100 entries in its limiter log
K600=cap-600-$RANDOM$RANDOM      # ... and one with 600 (the default limit per window)
N=10000

# The memory figures do not depend on the AOF's fsync policy: everysec saves time.
# The ledger is off here: its entries are measured by tests/it_ledger.sh.
WORKERS=2 start_stack main ABACUS_API_KEYS="$K,$KB,$K100,$K600" ABACUS_RATE_LIMIT_REQUESTS=1000000 \
  ABACUS_IDEMPOTENCY_REQUIRED=false ABACUS_REDIS_APPENDFSYNC=everysec ABACUS_LEDGER_RETENTION_SECONDS=0 || exit 1
A=http://127.0.0.1:$P1
B=http://127.0.0.1:$P2
rcli() { redis-cli -p "$RPORT" "$@"; }
key_id() { printf '%s' "$1" | sha256sum | cut -c1-8; }
rl_key() { echo "{abacus}:rl:k:$(key_id "$1")"; }

# mem: bytes Redis holds for data (used_memory less client and AOF buffers).
mem() {
  rcli info memory | tr -d '\r' | awk -F: '
    $1 == "used_memory" { u = $2 } $1 == "mem_clients_normal" { c = $2 } $1 == "mem_aof_buffer" { a = $2 }
    END { print u - c - a }'
}
# tables: bytes of the main and expires hash tables (entries and buckets), MEMORY STATS.
tables() {
  rcli memory stats | tr -d '\r' | awk 'p { s += $1; p = 0 } /^overhead.hashtable.(main|expires)$/ { p = 1 } END { print s }'
}
# usage KEY: MEMORY USAGE of one key, every element counted.
usage() { rcli memory usage "$1" samples 0; }
# count PATTERN: keys matching PATTERN.
count() { rcli --scan --pattern "$1" | wc -l; }
# avg_usage PATTERN: the mean MEMORY USAGE of 200 keys matching PATTERN.
avg_usage() {
  rcli --scan --pattern "$1" | head -n 200 | while read -r k; do usage "$k"; done |
    awk '{ s += $1; n++ } END { printf "%.0f", n ? s / n : 0 }'
}
# load KEY REQUESTS [abacus-load options...]: through both front ends; fails the
# suite unless every request got a 200.  Sets LOADED (acknowledged deltas).
load() {
  local key=$1 n=$2 out; shift 2
  out=$("$LOAD" --target "$A" --target "$B" --requests "$n" --concurrency 8 --api-key "$key" "$@" 2>&1)
  check_match "load of $n ($*): every request 200" "succeeded: $n  failed: 0 " "$out"
  LOADED=$(printf '%s\n' "$out" | sed -n 's/^acknowledged: \(-\{0,1\}[0-9]*\).*/\1/p')
}
# per A B N: (B - A) / N, rounded.
per() { awk -v a="$1" -v b="$2" -v n="$3" 'BEGIN { printf "%.0f", (b - a) / n }'; }
# below NAME LIMIT VALUE: VALUE is a number under LIMIT.
below() { check_true "$1 ($3 < $2)" awk -v v="$3" -v l="$2" 'BEGIN { exit !(v ~ /^[0-9]+$/ && v + 0 < l + 0) }'; }

# Every worker has connected and loaded its scripts; the limiter logs exist.
for k in "$K" "$KB" "$K100" "$K600"; do req GET "$A/abacus/sum" -H "X-API-Key: $k"; req GET "$B/abacus/sum" -H "X-API-Key: $k"; done
sleep 0.5
EXPECTED=0

# ---- idempotency records: N keyed additions, short deltas ----
m0=$(mem)
t0=$(tables)
load "$K" "$N" --idempotency --delta-range 1:1000
EXPECTED=$((EXPECTED + LOADED))
sleep 0.5
m1=$(mem)
entries=$(rcli zcard "$(rl_key "$K")")
rl_big=$(usage "$(rl_key "$K")")
rcli del "$(rl_key "$K")" >/dev/null
m2=$(mem)
t2=$(tables)
records=$(count '{abacus}:idem:*')
check "every keyed addition left one record" "$N" "$records"
rec=$(per "$m0" "$m2" "$N")
rec_usage=$(avg_usage '{abacus}:idem:*')
sample=$(rcli --scan --pattern '{abacus}:idem:*' | head -n 1)
sample_len=${#sample}
sample_value=$(rcli get "$sample")
rl_entry=$(per "$m2" "$m1" "$entries")
echo "measured: idempotency record: $rec bytes of used_memory each ($N records; of which $(per "$t0" "$t2" "$N") in the hash tables, grown to hold them; MEMORY USAGE $rec_usage; key name $sample_len bytes, value ${#sample_value})"
echo "measured: limiter log of $entries entries: $(per 0 "$rl_big" 1) bytes (MEMORY USAGE), $rl_entry bytes/entry of used_memory"
below "an idempotency record stays small" 260 "$rec"
# A UUID as Idempotency-Key (36 characters against the load's 25): the key
# name's allocation is the same size class.
uuid=$(cat /proc/sys/kernel/random/uuid)
post "$P1" "$K" "$uuid" 5
[ "$STATUS" = 200 ] && EXPECTED=$((EXPECTED + 5))
uuid_usage=$(usage "{abacus}:idem:$(key_id "$K"):$uuid")
echo "measured: a record keyed by a UUID: MEMORY USAGE $uuid_usage (the load's 25-character keys: $rec_usage)"
below "a UUID-keyed record costs no more than 16 bytes extra" $((rec_usage + 17)) "$uuid_usage"
below "a limiter entry stays small" 160 "$rl_entry"

# ---- the same with 17-digit deltas: the record's value no longer fits an embedded string ----
m3=$(mem)
t3=$(tables)
load "$K" 2000 --idempotency --delta-range=-9999999999999999:9999999999999999
EXPECTED=$((EXPECTED + LOADED))
sleep 0.5
rcli del "$(rl_key "$K")" >/dev/null
m4=$(mem)
t4=$(tables)
wide=$(per "$m3" "$m4" 2000)
echo "measured: idempotency record with 17-digit deltas and sums: $wide bytes of used_memory each (2000 records; of which $(per "$t3" "$t4" 2000) in the hash tables, which did not grow; value $(rcli get "$(rcli --scan --pattern '{abacus}:idem:*' | while read -r k; do v=$(rcli get "$k"); [ ${#v} -gt 40 ] && { echo "$k"; break; }; done)" | wc -c | awk '{print $1 - 1}') bytes)"
below "a record with wide numbers stays small" 280 "$wide"

# ---- attempt tokens of keyless changes ----
m5=$(mem)
load "$KB" 2000
EXPECTED=$((EXPECTED + LOADED))
sleep 0.5
rcli del "$(rl_key "$KB")" >/dev/null
m6=$(mem)
ops=$(count '{abacus}:op:*')
check "every keyless addition left one attempt token" 2000 "$ops"
op=$(per "$m5" "$m6" 2000)
op_ttl=$(rcli ttl "$(rcli --scan --pattern '{abacus}:op:*' | head -n 1)")
echo "measured: attempt token of a keyless change: $op bytes of used_memory each (MEMORY USAGE $(avg_usage '{abacus}:op:*')), TTL ${op_ttl} s"
below "an attempt token stays small" 200 "$op"

# ---- a caller's limiter log at 100 (listpack) and 600 entries (skiplist) ----
load "$K100" 98 --get-ratio 1
load "$K600" 598 --get-ratio 1
for k in "$K100" "$K600"; do
  n=$(rcli zcard "$(rl_key "$k")")
  echo "measured: a caller's limiter log of $n entries ($(rcli object encoding "$(rl_key "$k")")): $(usage "$(rl_key "$k")") bytes (MEMORY USAGE)"
done
below "a caller at 100 requests per window" 3000 "$(usage "$(rl_key "$K100")")"
below "a caller at 600 requests per window" 100000 "$(usage "$(rl_key "$K600")")"

echo "measured: hash tables for $(rcli dbsize) keys: $(tables) bytes (main + expires)"
echo "measured: the sum ({abacus}:sum): $(usage '{abacus}:sum') bytes (MEMORY USAGE)"

# ---- the figures predict when Redis is full ----
# maxmemory 1 MiB above what Redis holds now; keyed additions without retries
# until Redis refuses them.  Each one costs a record and a limiter entry.
HEADROOM=1048576
used=$(rcli info memory | tr -d '\r' | sed -n 's/^used_memory:\([0-9]*\)/\1/p')
rcli config set maxmemory $((used + HEADROOM)) >/dev/null
out=$("$LOAD" --target "$A" --target "$B" --requests 8000 --concurrency 8 --api-key "$K" --idempotency \
  --max-retries 0 --delta-range 1:1000 2>&1)
fit=$(printf '%s\n' "$out" | sed -n 's/^succeeded: \([0-9]*\) .*/\1/p')
LOADED=$(printf '%s\n' "$out" | sed -n 's/^acknowledged: \(-\{0,1\}[0-9]*\).*/\1/p')
EXPECTED=$((EXPECTED + LOADED))
predicted=$(per 0 "$HEADROOM" $((wide + rl_entry)))
echo "measured: 1 MiB of maxmemory headroom took $fit keyed additions (the figures above predict $predicted)"
check_true "the figures predict the additions that fit within 20 % ($fit vs $predicted)" \
  awk -v f="${fit:-0}" -v p="$predicted" 'BEGIN { exit !(f > 0.8 * p && f < 1.2 * p) }'
check "Redis full: every refused attempt was a 503" "" \
  "$(printf '%s\n' "$out" | sed -n 's/^statuses (every attempt)://p' | tr ' ' '\n' | grep -vE '^(|200:[0-9]+|503:[0-9]+)$')"
# The load's connections closed meanwhile and their buffers with them: Redis
# may have room for a few more.  Add until it refuses (bounded), counting what
# was applied.
for i in $(seq 1 500); do
  post "$P1" "$K" "full-probe-$i" 1
  [ "$STATUS" = 200 ] || break
  EXPECTED=$((EXPECTED + 1))
done
check "Redis full: POST 503 redis-full" "503 urn:abacus:problem:redis-full" "$STATUS $(json type)"
probe=full-probe-$i
req GET "$A/readyz"
check "Redis full: /readyz 200, writes refused" "200 refused" "$STATUS $(json writes)"
req GET "$A/abacus/sum" -H "X-API-Key: $K"
check "Redis full: reads are served" "200 $EXPECTED" "$STATUS $(json current_sum)"
rcli config set maxmemory 0 >/dev/null
post "$P1" "$K" "$probe" 1
check "room again: the refused addition applies" 200 "$STATUS"
EXPECTED=$((EXPECTED + 1))

check "the sum is the acknowledged deltas" "$EXPECTED" "$(sum_at "$P1" "$K")"
suite_end
