#!/usr/bin/env bash
# Named sums over a Redis Cluster: three masters, each with a replica, on
# loopback.  1,200 names, each under its own hash tag {abacus/<name>}, spread
# over the masters: the EVALSHA calls of a load over them land within ±25 %
# of the mean on every master (INFO commandstats), and every sum is exact
# (abacus-load --verify: each sum moved by exactly its acknowledged deltas)
# through a slot migration and a master's failover (SIGKILL; its replica
# takes over; ABACUS_REDIS_MIN_REPLICAS=1, so no acknowledged addition is
# lost with it).  With one rate-limit budget per caller
# (ABACUS_RATE_LIMIT_SCOPE=caller) a named sum's request costs a second
# round trip, to the caller's limiter on the {abacus} slot: measured against
# scope=sum, and the limit still holds exactly.
set -u
. "$(dirname "$0")/lib.sh"
suite_init cluster_sums
use_load_tool
KEY=cluster-sums-key-$RANDOM
PW=cluster-sums-pw-$RANDOM
NAMES=1200

PORTS=()
for n in 1 2 3 4 5 6; do
  port=$(start_cluster_node "$n") || exit 1
  PORTS+=("$port")
done
redis-cli --no-auth-warning -a "$PW" --cluster create $(for p in "${PORTS[@]}"; do printf '127.0.0.1:%s ' "$p"; done) \
  --cluster-replicas 1 --cluster-yes >"$TMP/create.out" 2>&1
check "redis-cli --cluster create (3 masters, 3 replicas)" 0 "$?"
cluster_ok() { for p in "${PORTS[@]}"; do ccli "$p" cluster info | grep -q 'cluster_state:ok' || return 1; done; }
check_true "the cluster is up" wait_until 30 cluster_ok
masters() { # the ports of the masters, as the node on port $1 sees them
  ccli "$1" cluster nodes | awk '$3 ~ /master/ && $3 !~ /fail/ { split($2, a, "[:@]"); print a[2] }' | sort -n
}
replicas_synced() {
  local p
  for p in $(masters "${PORTS[0]}"); do
    ccli "$p" info replication | tr -d '\r' | grep -q '^slave0:.*state=online' || return 1
  done
}
check_true "every master has its replica" wait_until 30 replicas_synced
MASTERS=($(masters "${PORTS[0]}"))
check "three masters" 3 "${#MASTERS[@]}"
# evalsha_on PORT: EVALSHA calls the node on PORT counted (the cluster has a password).
evalsha_on() {
  ccli "$1" info commandstats | tr -d '\r' | sed -n 's/^cmdstat_evalsha:calls=\([0-9]*\),.*/\1/p' | grep . || echo 0
}
named_sums_on() { ccli "$1" --scan --pattern '{abacus/*}:sum' | wc -l; }
owner_of_slot() { # SLOT: the port of the master serving it, as node 1 sees it
  ccli "${PORTS[0]}" cluster nodes | awk -v slot="$1" '$3 ~ /master/ && $3 !~ /fail/ {
    split($2, a, "[:@]")
    for (i = 9; i <= NF; i++) { n = split($i, r, "-"); lo = r[1]; hi = (n == 2 ? r[2] : r[1])
      if ($i !~ /^\[/ && slot + 0 >= lo + 0 && slot + 0 <= hi + 0) print a[2] } }'
}
# within_quarter A B C: each within ±25 % of their mean.
within_quarter() {
  python3 -c 'import sys; v=[int(x) for x in sys.argv[1:]]; m=sum(v)/len(v); sys.exit(0 if m > 0 and all(abs(x-m) <= 0.25*m for x in v) else 1)' "$@"
}
resetstat() { local p; for p in "${PORTS[@]}"; do ccli "$p" config resetstat >/dev/null; done; }

SEED=${MASTERS[0]}
common=(ABACUS_API_KEYS="$KEY" REDIS_URL="redis+cluster://:$PW@127.0.0.1:$SEED" ABACUS_MAX_SUMS=5000
        ABACUS_RATE_LIMIT_REQUESTS=1000000 ABACUS_REDIS_TIMEOUT_MS=1000 ABACUS_REDIS_MIN_REPLICAS=1
        ABACUS_REDIS_WAIT_TIMEOUT_MS=500)
start_stack persum "${common[@]}" ABACUS_RATE_LIMIT_SCOPE=sum || exit 1
A=http://127.0.0.1:$P1
B=http://127.0.0.1:$P2
load() { # OUT [abacus-load options...]: a retrying, verifying load over the $NAMES sums through A and B
  local out=$1; shift
  "$LOAD" --target "$A" --target "$B" --sums "$NAMES" --idempotency --api-key "$KEY" --delta-range=-1000:1000 \
    --verify --timeout 5 --max-retries 100 --out-csv "$out.csv" "$@" >"$out" 2>&1
}

# ---- every name created, then spread ----
load "$TMP/create.out" --requests "$NAMES" --concurrency 16
check "creating $NAMES sums: exit 0" 0 "$?"
check_match "creating $NAMES sums: every sum exact" 'verify: ok' "$(cat "$TMP/create.out")"
per_master=()
for p in "${MASTERS[@]}"; do per_master+=("$(named_sums_on "$p")"); done
check "every sum stored once, on some master" "$NAMES" "$(( per_master[0] + per_master[1] + per_master[2] ))"
check_true "the names spread over the masters (${per_master[*]})" within_quarter "${per_master[@]}"
echo "measured: $NAMES named sums per master: ${per_master[*]}"

# ---- the EVALSHA calls of a load spread over the masters ----
redirects() { echo $(( $(curl -s "$A/metrics" | awk '$1 == "abacus_redis_redirects_total" {print $2}') +
                       $(curl -s "$B/metrics" | awk '$1 == "abacus_redis_redirects_total" {print $2}') )); }
# counted_load NAME: 6,000 additions over the sums from fresh INFO statistics, exact; sets
# calls (EVALSHA per master) and total.
counted_load() {
  local p
  resetstat
  load "$TMP/$1.out" --requests 6000 --concurrency 16
  check "$1 load: exit 0" 0 "$?"
  check_match "$1 load: every sum exact" 'verify: ok' "$(cat "$TMP/$1.out")"
  calls=()
  for p in "${MASTERS[@]}"; do calls+=("$(evalsha_on "$p")"); done
  total=$(( calls[0] + calls[1] + calls[2] ))
}
redirects_before=$(redirects)
counted_load spread
# 6,000 requests plus the verification's 2 x 1,200 reads, one EVALSHA each (scope=sum: no second round trip).
check_true "spread load: one EVALSHA per request ($total for 6000 + 2400 reads)" test "$total" -ge 8400 -a "$total" -le 8700
check_true "spread load: every master within ±25 % of the mean (${calls[*]})" within_quarter "${calls[@]}"
echo "measured: EVALSHA per master over $NAMES sums (scope=sum): ${calls[*]}; $(grep -o '[0-9]* req/s' "$TMP/spread.out" | head -n 1)"
replica_calls=0
for p in "${PORTS[@]}"; do
  case " ${MASTERS[*]} " in *" $p "*) ;; *) replica_calls=$(( replica_calls + $(evalsha_on "$p") ));; esac
done
check "no EVALSHA reached a replica" 0 "$replica_calls"
# Each script went straight to its slot's master (a connection per master), not through a MOVED:
# Redis counts a redirected command in rejected_calls, not calls, so the spread alone cannot tell.
check "spread load: no MOVED or ASK followed (abacus_redis_redirects_total)" "$redirects_before" "$(redirects)"
rejected=0
for p in "${MASTERS[@]}"; do
  r=$(ccli "$p" info commandstats | tr -d '\r' | sed -n 's/^cmdstat_evalsha:.*rejected_calls=\([0-9]*\).*/\1/p')
  rejected=$(( rejected + ${r:-0} ))
done
check "spread load: no EVALSHA rejected by a master (rejected_calls)" 0 "$rejected"

# ---- one budget per caller: the limiter's second round trip, measured ----
stop_stack
start_stack percaller "${common[@]}" ABACUS_RATE_LIMIT_SCOPE=caller || exit 1
A=http://127.0.0.1:$P1
B=http://127.0.0.1:$P2
counted_load caller
check_true "scope=caller: two EVALSHA per request ($total for 2 x 8400)" test "$total" -ge 16800 -a "$total" -le 17400
limiter_master=$(owner_of_slot "$(ccli "$SEED" cluster keyslot '{abacus}:rl:x')")
echo "measured: EVALSHA per master (scope=caller; the limiter's slot on $limiter_master): ${calls[*]};" \
  "scope=sum $(grep -o '[0-9]* req/s' "$TMP/spread.out" | head -n 1), scope=caller $(grep -o '[0-9]* req/s' "$TMP/caller.out" | head -n 1)"
admits=$(curl -s "$A/metrics" | awk '$1 == "abacus_redis_operations_total{operation=\"admit\",result=\"ok\"}" {print $2}')
check_match "scope=caller: the limiter's calls counted as operation=\"admit\"" '^[1-9][0-9]*$' "$admits"
# The limit holds over every sum together: 5 per window, whichever sums a caller writes.
stop_stack
KEY2=cluster-sums-limited-$RANDOM     # a caller with no admission in its window yet
start_stack limited "${common[@]}" ABACUS_API_KEYS="$KEY2" ABACUS_RATE_LIMIT_SCOPE=caller \
  ABACUS_RATE_LIMIT_REQUESTS=5 ABACUS_RATE_LIMIT_WINDOW_SECONDS=60 || exit 1
# New sums: each creation (its first call, the registration, the call again) spends one unit, not two.
codes=""
for i in 1 2 3 4 5 6 7; do
  req POST "http://127.0.0.1:$P1/abacus/sums/limited-$i/number" -H "X-API-Key: $KEY2" -H "Idempotency-Key: lim-$i" \
    -H 'Content-Type: application/json' -d '{"number":1}'
  codes="$codes $STATUS"
done
check "scope=caller: 5 new sums admitted out of 7, then 429" " 200 200 200 200 200 429 429" "$codes"
created() { ccli "$(owner_of_slot "$(ccli "$SEED" cluster keyslot "{abacus/$1}:sum")")" exists "{abacus/$1}:sum"; }
check "scope=caller: limited-5 created, the refused limited-6 and -7 not" "1 0 0" \
  "$(created limited-5) $(created limited-6) $(created limited-7)"

# ---- a slot of named sums migrates during a load (behind nginx: the other front-end kind) ----
stop_stack
FRONTEND=nginx start_stack migrate "${common[@]}" ABACUS_RATE_LIMIT_SCOPE=sum || exit 1
A=http://127.0.0.1:$P1
B=http://127.0.0.1:$P2
SLOT=$(ccli "$SEED" cluster keyslot '{abacus/load-7}:sum')
OWNER=$(owner_of_slot "$SLOT")
TARGET=""
for p in "${MASTERS[@]}"; do [ "$p" != "$OWNER" ] && TARGET=$p && break; done
SRC_ID=$(ccli "$OWNER" cluster myid)
DST_ID=$(ccli "$TARGET" cluster myid)
load "$TMP/migrate.out" --requests 6000 --rate 600 --concurrency 12 &
LOAD_PID=$!
sleep 2
ccli "$TARGET" cluster setslot "$SLOT" importing "$SRC_ID" >/dev/null
ccli "$OWNER" cluster setslot "$SLOT" migrating "$DST_ID" >/dev/null
batches=$(migrate_keys "$SLOT" "$OWNER" "$TARGET" 2 0.3)   # slowly: the load meets ASK and TRYAGAIN on the way
for p in "$TARGET" "$OWNER" $(masters "$SEED"); do ccli "$p" cluster setslot "$SLOT" node "$DST_ID" >/dev/null; done
wait "$LOAD_PID"
check "slot migration: the load finished" 0 "$?"
check_match "slot migration: every request succeeded" 'succeeded: 6000  failed: 0' "$(cat "$TMP/migrate.out")"
check_match "slot migration: every sum exact" 'verify: ok' "$(cat "$TMP/migrate.out")"
check "slot migration: load-7 is on the new master" "$TARGET" "$(owner_of_slot "$SLOT")"
check "slot migration: nothing of the slot left behind" 0 "$(ccli "$OWNER" cluster countkeysinslot "$SLOT")"
req GET "$A/abacus/sums/load-7" -H "X-API-Key: $KEY"
check "slot migration: GET load-7 200" 200 "$STATUS"
check "slot migration: the API reads what the new master holds" "$(ccli "$TARGET" get '{abacus/load-7}:sum')" "$(json current_sum)"
keys_moved=$(ccli "$TARGET" cluster countkeysinslot "$SLOT")
check_true "slot migration: the slot's keys moved in several batches ($batches)" test "$batches" -ge 3
echo "measured: migrated slot $SLOT ($keys_moved keys now) in $batches batches during the load"

# ---- a master fails over during a load ----
# A sum whose master is not the seed the front ends were given (that one's loss is another test's).
VICTIM="" VNAME=""
for i in $(seq 11 60); do
  v=$(owner_of_slot "$(ccli "$SEED" cluster keyslot "{abacus/load-$i}:sum")")
  [ -n "$v" ] && [ "$v" != "$SEED" ] && VICTIM=$v && VNAME=load-$i && break
done
check_match "failover: a master to kill" '^[0-9]+$' "$VICTIM"
VICTIM_PID=$(ccli "$VICTIM" info server | tr -d '\r' | sed -n 's/^process_id://p')
check_match "failover: the victim's pid" '^[0-9]+$' "$VICTIM_PID"
load "$TMP/failover.out" --requests 6000 --rate 600 --concurrency 12 &
LOAD_PID=$!
sleep 2
kill -9 "$VICTIM_PID"
promoted() { [ "$(masters "$SEED" | grep -vc "^$VICTIM\$")" -eq 3 ]; }
check_true "failover: a replica took over the killed master's slots" wait_until 30 promoted
# The new master has no replica: with MIN_REPLICAS=1 its writes answer 503
# not-replicated (applied, retried by the load: they replay) until the old
# master is back, as a replica of the new one.
for n in 1 2 3 4 5 6; do [ "$(cat "$TMP/redis-$n/port")" = "$VICTIM" ] && VICTIM_N=$n; done
check_true "failover: the killed master started again" restart_cluster_node "$VICTIM_N"
rejoined() { ccli "$VICTIM" info replication | tr -d '\r' | grep -q '^master_link_status:up'; }
check_true "failover: it rejoined as a replica" wait_until 30 rejoined
wait "$LOAD_PID"
check "failover: the load finished" 0 "$?"
check_match "failover: every request succeeded" 'succeeded: 6000  failed: 0' "$(cat "$TMP/failover.out")"
check_match "failover: every sum exact" 'verify: ok' "$(cat "$TMP/failover.out")"
gap=$(longest_gap "$TMP/failover.out.csv")
echo "measured: failover (master on $VICTIM killed): $(sed -n 's/.*retries: \([0-9]*\).*/\1/p' "$TMP/failover.out") retries," \
  "longest time without a successful write: $gap s"
req GET "$A/abacus/sums?limit=100" -H "X-API-Key: $KEY"
check "after the failover: the listing 200" 200 "$STATUS"
check_match "after the failover: the listing names the sums" '"name":"load-0"' "$BODY"
# Every load's attempts (the CSVs name each attempt's sum) against two sums' ledgers, the second failed over.
for name in load-0 "$VNAME"; do
  AUDIT_SUM=$name audit_ok "the ledger of $name" "$A" "$KEY" "$TMP"/{create,spread,caller,migrate,failover}.out.csv
done

suite_end
