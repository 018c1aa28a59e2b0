#!/usr/bin/env bash
# Redis Sentinel: a master, one replica and three sentinels (redis-server
# --sentinel, what Debian's redis-sentinel runs) on loopback, every one of
# them with a password.  Two front ends find the master through the
# sentinels; the master is SIGKILLed under a retrying load; no restart of
# anything of ours follows.
#   - ABACUS_REDIS_MIN_REPLICAS=1: the final sum equals exactly the
#     acknowledged deltas, and every request succeeds in the end; the
#     ledger's audit finds every acknowledged addition exactly once.
#   - ABACUS_REDIS_MIN_REPLICAS=0: how many acknowledged additions a failover
#     loses is measured and printed (docs/OPERATIONS.md quotes it); none is
#     ever applied twice.  The audit names the lost ones (a loss is allowed
#     here, not promised against) and must agree with the sum's count.
# Both print the time without a successful write, measured from the load's CSV.
set -u
. "$(dirname "$0")/lib.sh"
suite_init sentinel
use_load_tool
KEY=sentinel-key-$RANDOM
MPW=master-pw-$RANDOM     # the data servers' password
SPW=sentinel-pw-$RANDOM   # the sentinels' password
CPW=client-pw-$RANDOM     # an ACL user on the sentinels with just what a worker needs
N=${LOAD_REQUESTS:-6000}   # LOAD_REQUESTS, LOAD_RATE, LOAD_CONCURRENCY: for measuring

# ---- the Redis side ----
# Sentinels send CONFIG REWRITE: each server gets its own copy of conf/redis.conf.
# repl-diskless-sync-delay 0: a replica that comes back is synced at once,
# not after Redis's default 5 s wait for more replicas (docs/OPERATIONS.md).
# appendonly no: what is tested here is replication, not the disk; with
# appendfsync always a slow disk (a busy CI machine) can stall a master's
# replies past down-after-milliseconds and make the sentinels fail over on
# their own, in the middle of the test.
auth=(--requirepass "$MPW" --masterauth "$MPW" --repl-diskless-sync-delay 0 --appendonly no)
start_data_server() { # NAME PORT [args...]
  local dir=$TMP/redis-$1 port=$2; shift 2
  mkdir -p "$dir"
  [ -f "$dir/redis.conf" ] || cp "$ROOT/conf/redis.conf" "$dir/redis.conf"
  # A SIGKILLed server leaves its pid file: the restarted one's pid must be read, not that.
  rm -f "$dir/redis.pid"
  redis-server "$dir/redis.conf" --port "$port" --dir "$dir" --daemonize yes \
    --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" "${auth[@]}" "$@" >/dev/null || return 1
  # The pid first: a server that never answers is still stopped by cleanup.
  wait_until 5 test -s "$dir/redis.pid" && cat "$dir/redis.pid" >>"$TMP/pids"
  wait_until 5 redis_ping "$port" || return 1
}
PORT_A=$(free_port); PORT_B=$(free_port)
start_data_server a "$PORT_A" || exit 1
start_data_server b "$PORT_B" --replicaof 127.0.0.1 "$PORT_A" || exit 1
rcli() { local p=$1; shift; redis-cli --no-auth-warning -a "$MPW" -p "$p" "$@" 2>/dev/null; }
synced() { rcli "$PORT_B" info replication | grep -q 'master_link_status:up'; }
check_true "the replica syncs with the master" wait_until 10 synced

SENTINEL_PORTS=()
start_sentinel() { # [MASTER_PORT]: the one the sentinel is told to monitor (default A)
  local port dir monitored=${1:-$PORT_A}
  port=$(free_port)
  dir=$TMP/sentinel-$port
  mkdir -p "$dir"
  cat >"$dir/sentinel.conf" <<CONF
port $port
bind 127.0.0.1
daemonize yes
pidfile $dir/sentinel.pid
logfile $dir/sentinel.log
dir $dir
requirepass $SPW
user abacus-client on >$CPW +sentinel|get-master-addr-by-name
sentinel sentinel-pass $SPW
sentinel monitor abacus 127.0.0.1 $monitored 2
sentinel auth-pass abacus $MPW
sentinel down-after-milliseconds abacus 1000
sentinel failover-timeout abacus 5000
sentinel parallel-syncs abacus 1
CONF
  redis-server "$dir/sentinel.conf" --sentinel >/dev/null || return 1
  wait_until 5 test -s "$dir/sentinel.pid" || return 1
  cat "$dir/sentinel.pid" >>"$TMP/pids"
  SENTINEL_PORT=$port
}
for i in 1 2 3; do
  start_sentinel || { echo "sentinel did not start"; exit 1; }
  SENTINEL_PORTS+=("$SENTINEL_PORT")
done
scli() { redis-cli --no-auth-warning -a "$SPW" -p "${SENTINEL_PORTS[0]}" "$@" 2>/dev/null; }
# The master's port as a majority of the sentinels name it (one of them may be
# behind the others for a moment); empty while they disagree.
master_port() {
  local p
  for p in "${SENTINEL_PORTS[@]}"; do
    redis-cli --no-auth-warning -a "$SPW" -p "$p" sentinel get-master-addr-by-name abacus 2>/dev/null | sed -n 2p
  done | sort | uniq -c | awk '$1 >= 2 { print $2 }'
}
other_of() { if [ "$1" = "$PORT_A" ]; then echo "$PORT_B"; else echo "$PORT_A"; fi; }
name_of() { if [ "$1" = "$PORT_A" ]; then echo a; else echo b; fi; }
role_of() { rcli "$1" role | head -n 1; }
# Settled: the sentinels' master says it is one, and the other server is its
# replica with the link up.
settled() {
  local m r
  m=$(master_port)
  [ -n "$m" ] && [ "$(role_of "$m")" = master ] || return 1
  r=$(rcli "$(other_of "$m")" info replication | tr -d '\r')
  grep -qx "master_port:$m" <<<"$r" && grep -qx 'master_link_status:up' <<<"$r"
}
# Master switches the first sentinel has made or seen so far.
switches() { grep -c '+switch-master' "$TMP/sentinel-${SENTINEL_PORTS[0]}/sentinel.log"; }
# What the sentinels did, for the output of a failed run (kept short: the
# runner shows the last lines of a failed suite): the first sentinel's view of
# the failovers, and from each one its master switches and TILT periods.
sentinel_events() {
  local p
  echo "  sentinel ${SENTINEL_PORTS[0]}:"
  grep -E '[+-](sdown master|odown|elected-leader|failover-end|failover-abort|switch-master|tilt)' \
    "$TMP/sentinel-${SENTINEL_PORTS[0]}/sentinel.log" | head -n 16 | sed 's/^/    /'
  for p in "${SENTINEL_PORTS[@]:1}"; do
    echo "  sentinel $p:"
    grep -E '[+-](switch-master|tilt)' "$TMP/sentinel-$p/sentinel.log" | head -n 4 | sed 's/^/    /'
  done
}
sentinels_agree() { [ "$(scli sentinel master abacus | sed -n '/^num-other-sentinels$/{n;p}')" = 2 ] &&
                    [ "$(scli sentinel master abacus | sed -n '/^num-slaves$/{n;p}')" = 1 ]; }
check_true "the sentinels see each other and the replica" wait_until 20 sentinels_agree
check "the sentinels name A as the master" "$PORT_A" "$(master_port)"
SENTINELS=$(IFS=,; for p in "${SENTINEL_PORTS[@]}"; do printf '127.0.0.1:%s,' "$p"; done)
SENTINELS=${SENTINELS%,}

# ---- the wrong sentinel password: not ready, and the log says why ----
WORKERS=1 start_stack badauth ABACUS_API_KEYS="$KEY" REDIS_URL="redis://:$MPW@master/0" \
  REDIS_SENTINELS="$SENTINELS" ABACUS_REDIS_SENTINEL_PASSWORD=wrong-$RANDOM || exit 1
req GET "http://127.0.0.1:$P1/readyz"
check "wrong sentinel password: /readyz 503" 503 "$STATUS"
check_match "wrong sentinel password: the log names the sentinel auth failure" \
  '"operation":"auth".*(WRONGPASS|invalid)' "$(cat "$STACK"/frontend-*/error.log)"
stop_stack

# ---- an ACL user on the sentinels; a sentinel that is behind is passed over ----
# The user may run SENTINEL get-master-addr-by-name and nothing else.  The
# stale sentinel watches a port where nothing listens, with a quorum it cannot
# reach alone, and is listed first: the worker must not keep trusting it.
start_sentinel "$(free_port)" || { echo "sentinel did not start"; exit 1; }
WORKERS=1 start_stack acl ABACUS_API_KEYS="$KEY" REDIS_URL="redis://:$MPW@master/0" \
  REDIS_SENTINELS="127.0.0.1:$SENTINEL_PORT,$SENTINELS" \
  ABACUS_REDIS_SENTINEL_USERNAME=abacus-client ABACUS_REDIS_SENTINEL_PASSWORD="$CPW" || exit 1
ready() { [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$P1/readyz")" = 200 ]; }
check_true "sentinel ACL user, a stale sentinel listed first: the worker asks the next one and is ready" wait_until 5 ready
post "$P1" "$KEY" stale-sentinel 0
check "sentinel ACL user, a stale sentinel listed first: POST 200" 200 "$STATUS"
check_match "the stale sentinel was asked and its master refused" '"operation":"connect"' \
  "$(cat "$STACK"/frontend-*/error.log)"
stop_stack
WORKERS=1 start_stack acl-wrong ABACUS_API_KEYS="$KEY" REDIS_URL="redis://:$MPW@master/0" \
  REDIS_SENTINELS="$SENTINELS" ABACUS_REDIS_SENTINEL_USERNAME=abacus-client \
  ABACUS_REDIS_SENTINEL_PASSWORD="$SPW" || exit 1
req GET "http://127.0.0.1:$P1/readyz"
check "sentinel ACL user with the wrong password: /readyz 503" 503 "$STATUS"
check_match "sentinel ACL user with the wrong password: the log says so" '"operation":"auth".*WRONGPASS' \
  "$(cat "$STACK"/frontend-*/error.log)"
stop_stack

# ---- the right settings: the front ends write to the master ----
stack_for() { # NAME MIN_REPLICAS
  start_stack "$1" ABACUS_API_KEYS="$KEY" REDIS_URL="redis://:$MPW@master/0" \
    REDIS_SENTINELS="$SENTINELS" ABACUS_REDIS_SENTINEL_PASSWORD="$SPW" \
    ABACUS_REDIS_MIN_REPLICAS="$2" ABACUS_RATE_LIMIT_REQUESTS=1000000 \
    ABACUS_REDIS_TIMEOUT_MS=500 ABACUS_REDIS_CONNECT_TIMEOUT_MS=300
}
stack_for wait1 1 || exit 1
A=http://127.0.0.1:$P1
B=http://127.0.0.1:$P2
req GET "$A/readyz"
check "sentinel mode: /readyz 200" 200 "$STATUS"
post "$P1" "$KEY" first 5
check "sentinel mode: POST 200" 200 "$STATUS"
post "$P2" "$KEY" first 5
check "sentinel mode: the replay through the other front end" "200 true" "$STATUS $(header idempotent-replayed)"
# Which server is the master is read from the sentinels, not assumed: on a busy
# machine they may have failed over on their own by now.
M=$(master_port)
check "the addition is on the master" 5 "$(rcli "$M" get '{abacus}:sum')"
check "and on the replica (WAIT confirmed it)" 5 "$(rcli "$(other_of "$M")" get '{abacus}:sum')"
check_match "/metrics has the replication shortfall counter" \
  'abacus_redis_replication_shortfalls_total 0' "$(curl -s "$A/metrics")"

# failover STACK_LABEL REQUESTS: kills the master under load, restarts it once
# the sentinels have promoted the replica (it comes back as a replica, as an
# operator's restart would), waits for the load.  Sets OLD, NEW, OUT, CSV,
# LOAD_RC and SWITCHED (master switches the sentinels made meanwhile).
failover() {
  local label=$1 n=$2 old_dir pid switches_before
  OUT=$TMP/$label.out CSV=$TMP/$label.csv
  wait_until 30 settled || echo "  (the servers had not settled before the failover)"
  OLD=$(master_port)
  switches_before=$(switches)
  "$LOAD" --target1 "$A" --target2 "$B" --requests "$n" --rate "${LOAD_RATE:-400}" --concurrency "${LOAD_CONCURRENCY:-8}" --idempotency \
    --api-key "$KEY" --verify --timeout 3 --max-retries 200 --out-csv "$CSV" >"$OUT" 2>&1 &
  local load_pid=$!
  sleep 2
  old_dir=$TMP/redis-$(name_of "$OLD")
  pid=$(cat "$old_dir/redis.pid")
  kill -KILL "$pid"
  echo "  $label: master $OLD killed at $(date +%T.%3N)"   # to read against the sentinels' events
  promoted() {
    local m; m=$(master_port)
    [ -n "$m" ] && [ "$m" != "$OLD" ] && [ "$(role_of "$m")" = master ]
  }
  wait_until 30 promoted
  NEW=$(master_port)
  # The operator restarts the old master as a replica of the other server (the
  # sentinels would convert it too, but only some seconds after it is back).
  start_data_server "$(name_of "$OLD")" "$OLD" --replicaof 127.0.0.1 "$(other_of "$OLD")" ||
    { echo "  the old master did not restart:"; tail -n 20 "$old_dir/redis.log" | sed 's/^/    /'; }
  wait "$load_pid"
  LOAD_RC=$?
  SWITCHED=$(( $(switches) - switches_before ))
}

failover wait1 "$N"
check "MIN_REPLICAS=1: the sentinels promoted the replica" "$(other_of "$OLD")" "$NEW"
check "MIN_REPLICAS=1: the load finished (exit 0)" 0 "$LOAD_RC"
check_match "MIN_REPLICAS=1: every request succeeded in the end" "succeeded: $N  failed: 0" "$(cat "$OUT")"
check_match "MIN_REPLICAS=1: the final sum is exactly the acknowledged deltas" 'verify: ok' "$(cat "$OUT")"
check_match "MIN_REPLICAS=1: failures were retried with the same key" 'retries: [1-9]' "$(cat "$OUT")"
gap1=$(longest_gap "$CSV")
echo "measured: MIN_REPLICAS=1: longest time without a successful write: ${gap1} s"
echo "measured: MIN_REPLICAS=1: master switches by the sentinels during the run: $SWITCHED"
check_true "the old master came back as a replica of the new one and is in sync" wait_until 30 settled
check_match "the workers logged the new master" '"event":"redis_server_changed"' \
  "$(cat "$STACK"/frontend-*/error.log)"
shortfalls=$(curl -s "$A/metrics" | awk '$1 == "abacus_redis_replication_shortfalls_total" {print $2}')
echo "measured: MIN_REPLICAS=1: replication shortfalls answered 503 on front end 1: $shortfalls"
# The old master is back and in sync: a write through the other front end.
post "$P2" "$KEY" after-failover 7
check "after the failover: POST 200 without restarting anything" 200 "$STATUS"
audit_ok "MIN_REPLICAS=1 failover" "$A" "$KEY" "$CSV"
stop_stack

# ---- MIN_REPLICAS=0: measure what a failover loses ----
stack_for wait0 0 || exit 1
A=http://127.0.0.1:$P1
B=http://127.0.0.1:$P2
failover wait0 "$N"
check "MIN_REPLICAS=0: the sentinels promoted the other server" "$(other_of "$OLD")" "$NEW"
check_match "MIN_REPLICAS=0: every request succeeded in the end" "succeeded: $N  failed: 0" "$(cat "$OUT")"
gap0=$(longest_gap "$CSV")
# Every delta is 1: the sum moved by the additions that survived.  Without the
# load's verify line (the sum before and after) nothing is measured: that fails.
moved=$(sed -n 's/^verify: .*(\(-\{0,1\}[0-9]*\) -> \(-\{0,1\}[0-9]*\)).*/\2 - \1/p' "$OUT" | head -n 1)
if [ -z "$moved" ]; then
  moved=$(sed -n 's/^verify: FAILED: the sum went \(-\{0,1\}[0-9]*\) -> \(-\{0,1\}[0-9]*\),.*/\2 - \1/p' "$OUT" | head -n 1)
fi
check_match "MIN_REPLICAS=0: the load printed its verify line (the sum before and after)" '^-?[0-9]+ - -?[0-9]+$' "$moved"
if [ -n "$moved" ]; then
  moved=$((moved))
  lost=$((N - moved))
  echo "measured: MIN_REPLICAS=0: longest time without a successful write: ${gap0} s; acknowledged additions lost: $lost of $N; master switches: $SWITCHED"
fi
at_most_acknowledged() { [ -n "$moved" ] && [ "$moved" -le "$N" ]; }
check_true "MIN_REPLICAS=0: nothing applied twice (the sum moved by at most the acknowledged deltas)" \
  at_most_acknowledged
# The audit: the documented outcome, not a clean bill.  Asynchronous
# replication may lose acknowledged additions (docs/OPERATIONS.md), so "lost"
# may be above 0 (then it exits 1, and its only findings are the lost
# additions); it must count what the sum says was lost; nothing is doubled or
# unexplained, and the chain of sums holds on the promoted master.
audit_run "MIN_REPLICAS=0 failover" "$A" "$KEY" "$CSV"
audit_lost=$(sed -n 's/.* \([0-9]*\) lost, .*/\1/p' <<<"$AUDIT_LINE")
check_match "MIN_REPLICAS=0: the audit finds 0 doubled, 0 unexplained" \
  '^abacus-audit: (OK|FAILED) .*; load: [0-9]+ acknowledged, [0-9]+ lost, 0 doubled, [0-9]+ unacknowledged but applied, 0 unexplained' "$AUDIT_LINE"
check "MIN_REPLICAS=0: the audit's lost additions are the sum's (${lost:-?})" "${lost:-?}" "$audit_lost"
check "MIN_REPLICAS=0: the audit exits 0 if none was lost, else 1, finding nothing but lost additions" \
  "$([ "${audit_lost:-1}" = 0 ] && echo 0 || echo 1) " "$AUDIT_RC $(sed '$d' <<<"$AUDIT_OUT" | grep -v "^  lost: '")"
stop_stack

[ "$FAILED" -eq 0 ] || { echo "what the sentinels did:"; sentinel_events; }
suite_end
