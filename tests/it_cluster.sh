#!/usr/bin/env bash
# Redis Cluster: three masters on loopback (redis-cli --cluster create), with
# a password.  The front ends get one seed node that does not hold the
# {abacus} slot and must find the one that does; an exactness load runs; then
# the slot is migrated to another master key batch by key batch
# (CLUSTER SETSLOT IMPORTING/MIGRATING, MIGRATE, SETSLOT NODE) while a
# retrying load runs: ASK, TRYAGAIN and MOVED are followed, and the final sum
# is exactly the acknowledged deltas; the ledger (same hash tag, so the same
# slot and master as the sum) moves with it, and its audit finds every
# acknowledged addition exactly once.
set -u
. "$(dirname "$0")/lib.sh"
suite_init cluster
use_load_tool
KEY=cluster-key-$RANDOM
PW=cluster-pw-$RANDOM

PORTS=()
for n in 1 2 3; do
  port=$(start_cluster_node "$n") || exit 1
  PORTS+=("$port")
done
redis-cli --no-auth-warning -a "$PW" --cluster create $(for p in "${PORTS[@]}"; do printf '127.0.0.1:%s ' "$p"; done) \
  --cluster-yes >"$TMP/create.out" 2>&1
check "redis-cli --cluster create" 0 "$?"
cluster_ok() { for p in "${PORTS[@]}"; do ccli "$p" cluster info | grep -q 'cluster_state:ok' || return 1; done; }
check_true "the cluster is up" wait_until 20 cluster_ok

SLOT=$(ccli "${PORTS[0]}" cluster keyslot '{abacus}:sum')
node_of_slot() { # prints the port of the master serving $SLOT, as node 1 sees it
  ccli "${PORTS[0]}" cluster slots | python3 -c '
import sys
lines = [l.strip() for l in sys.stdin]
slot = int(sys.argv[1])
# redis-cli prints CLUSTER SLOTS flattened: start, end, host, port, id, [replicas...]
i = 0
while i + 4 < len(lines):
    if lines[i].isdigit() and lines[i + 1].isdigit() and int(lines[i]) <= slot <= int(lines[i + 1]):
        print(lines[i + 3]); break
    i += 1
' "$SLOT"
}
OWNER=$(node_of_slot)
check_match "some master serves the slot of {abacus}" '^[0-9]+$' "$OWNER"
SEED=""
for p in "${PORTS[@]}"; do [ "$p" != "$OWNER" ] && SEED=$p && break; done
# sums_agree NAME PORT NODE: the sum read through the front end on PORT and the
# one stored on NODE are both integers, and equal (two empty answers are not).
sums_agree() {
  local api node
  api=$(sum_at "$2" "$KEY")
  node=$(ccli "$3" get '{abacus}:sum')
  check_match "$1: both are integers (API [$api], node [$node])" '^-?[0-9]+ -?[0-9]+$' "$api $node"
  check "$1" "$api" "$node"
}

start_stack main ABACUS_API_KEYS="$KEY" REDIS_URL="redis+cluster://:$PW@127.0.0.1:$SEED" \
  ABACUS_RATE_LIMIT_REQUESTS=1000000 ABACUS_REDIS_TIMEOUT_MS=1000 || exit 1
A=http://127.0.0.1:$P1
B=http://127.0.0.1:$P2
req GET "$A/readyz"
check "cluster mode: /readyz 200" 200 "$STATUS"
post "$P1" "$KEY" c-1 40
check "cluster mode: POST 200" 200 "$STATUS"
check "the sum is on the master of the slot" 40 "$(ccli "$OWNER" get '{abacus}:sum')"
check_match "the seed node does not hold it" '^MOVED' "$(ccli "$SEED" get '{abacus}:sum')"

# ---- exactness against the cluster ----
"$LOAD" --target1 "$A" --target2 "$B" --requests 3000 --concurrency 16 --idempotency --api-key "$KEY" \
  --delta-range=-1000000:1000000 --verify --out-csv "$TMP/exact.csv" >"$TMP/exact.out" 2>&1
check "exactness load: exit 0" 0 "$?"
check_match "exactness load: the sum is exact" 'verify: ok' "$(cat "$TMP/exact.out")"
sums_agree "the API and the slot's master agree" "$P1" "$OWNER"

# ---- the slot migrates to another master during load ----
TARGET=""
for p in "${PORTS[@]}"; do [ "$p" != "$OWNER" ] && [ "$p" != "$SEED" ] && TARGET=$p; done
SRC_ID=$(ccli "$OWNER" cluster myid)
DST_ID=$(ccli "$TARGET" cluster myid)
keys_before=$(ccli "$OWNER" cluster countkeysinslot "$SLOT")
"$LOAD" --target1 "$A" --target2 "$B" --requests 6000 --rate 600 --concurrency 12 --idempotency \
  --api-key "$KEY" --delta-range=-1000:1000 --verify --timeout 5 --max-retries 100 \
  --out-csv "$TMP/reshard.csv" >"$TMP/reshard.out" 2>&1 &
LOAD_PID=$!
sleep 2
ccli "$TARGET" cluster setslot "$SLOT" importing "$SRC_ID" >/dev/null
ccli "$OWNER" cluster setslot "$SLOT" migrating "$DST_ID" >/dev/null
# A slow migration: requests meet ASK and TRYAGAIN on the way.
batches=$(migrate_keys "$SLOT" "$OWNER" "$TARGET" 50 0.02)
# The new owner first, then the old one, then the rest (the order Redis documents).
for p in "$TARGET" "$OWNER" "$SEED"; do ccli "$p" cluster setslot "$SLOT" node "$DST_ID" >/dev/null; done
echo "measured: migrated slot $SLOT ($keys_before keys before the load) in $batches batches"
wait "$LOAD_PID"
check "slot migrated during load: the load finished" 0 "$?"
check_match "slot migrated during load: every request succeeded" 'succeeded: 6000  failed: 0' "$(cat "$TMP/reshard.out")"
check_match "slot migrated during load: the sum is exact" 'verify: ok' "$(cat "$TMP/reshard.out")"
check "the slot is served by the new master" "$TARGET" "$(node_of_slot)"
check "the old master has no key of the slot left" 0 "$(ccli "$OWNER" cluster countkeysinslot "$SLOT")"
sums_agree "the API and the new master agree" "$P2" "$TARGET"
redirects=$(( $(curl -s "$A/metrics" | awk '$1 == "abacus_redis_redirects_total" {print $2}') +
              $(curl -s "$B/metrics" | awk '$1 == "abacus_redis_redirects_total" {print $2}') ))
check_true "the workers were redirected (abacus_redis_redirects_total > 0)" test "$redirects" -gt 0
check_match "the workers logged the move" '"event":"redis_moved"' "$(cat "$STACK"/frontend-*/error.log)"
post "$P1" "$KEY" after-move 1
check "after the move: POST 200" 200 "$STATUS"
audit_ok "slot migrated during load" "$A" "$KEY" "$TMP/exact.csv" "$TMP/reshard.csv"
gap=$(longest_gap "$TMP/reshard.csv")
echo "measured: redirects followed: $redirects; retries during the migration: $(sed -n 's/.*retries: \([0-9]*\).*/\1/p' "$TMP/reshard.out");" \
  "longest time without a successful write: $gap s"

# ---- ASK on its own: reads follow keys that have already moved ----
# The slot starts back from the new master to the old one, and only the sum and
# the limiter records move at first.  A GET (its script reads just those two)
# meets ASK where it is sent and is answered by the importing node (ASKING +
# EVALSHA); a POST with a new key would find its keys split (TRYAGAIN) and
# waits for the end of the migration, which is tested above.
sum_before=$(sum_at "$P1" "$KEY")
redirects_of() { curl -s "$1/metrics" | awk '$1 == "abacus_redis_redirects_total" {print $2}'; }
redirects_before=$(redirects_of "$A")
ccli "$OWNER" cluster setslot "$SLOT" importing "$DST_ID" >/dev/null
ccli "$TARGET" cluster setslot "$SLOT" migrating "$SRC_ID" >/dev/null
moving=$(ccli "$TARGET" --scan --pattern '{abacus}:rl:*' | head -n 20 | tr '\n' ' ')
# shellcheck disable=SC2086
ccli "$TARGET" migrate 127.0.0.1 "$OWNER" "" 0 5000 AUTH "$PW" KEYS '{abacus}:sum' $moving >/dev/null
check_match "ASK: the migrating node sends readers of the sum on" '^ASK [0-9]+ 127\.0\.0\.1:'"$OWNER" \
  "$(ccli "$TARGET" get '{abacus}:sum')"
req GET "$A/abacus/sum" -H "X-API-Key: $KEY"
check "ASK: GET /abacus/sum 200 while the slot migrates" 200 "$STATUS"
check "ASK: the sum read from the importing node" "$sum_before" "$(json current_sum)"
check_true "ASK: abacus_redis_redirects_total counted it" test "$(redirects_of "$A")" -gt "$redirects_before"
migrate_keys "$SLOT" "$TARGET" "$OWNER" 500 0 >/dev/null
for p in "$OWNER" "$TARGET" "$SEED"; do ccli "$p" cluster setslot "$SLOT" node "$SRC_ID" >/dev/null; done
check "the slot is back on the first master" "$OWNER" "$(node_of_slot)"
post "$P2" "$KEY" after-move-back 2
check "after the move back: POST 200" 200 "$STATUS"
check "after the move back: the sum" "$((sum_before + 2))" "$(sum_at "$P1" "$KEY")"
audit_ok "slot moved back" "$B" "$KEY" "$TMP/exact.csv" "$TMP/reshard.csv"

suite_end
