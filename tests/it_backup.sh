#!/usr/bin/env bash
# Backup and restore of the AOF (docs/OPERATIONS.md, "Backup and restore"),
# with real servers: a redis-server with conf/redis.conf (Redis 7's multi-part
# AOF in appendonlydir/) behind two front ends; additions with recorded
# Idempotency-Keys; the backup taken with the documented commands while a
# load keeps adding; then a FRESH redis-server (another port, another dir)
# started on the copy, a new front end pointed at it: the sum is the sum of
# exactly the additions whose records the copy holds (a consistent point),
# every recorded key repeated with its body is a replay answering its
# original sum and adds nothing, the records keep their expiry; an addition
# made after the backup is gone, and its key is new again.
set -u
. "$(dirname "$0")/lib.sh"
suite_init backup
KEY=backup-key-$RANDOM

# ---- the service: a Redis of its own, two front ends ----
read -r SRC _ < <(start_redis source) || exit 1
SRC_DIR=$TMP/redis-source
WORKERS=2 start_stack live REDIS_URL="redis://127.0.0.1:$SRC/0" ABACUS_API_KEYS="$KEY" \
  ABACUS_RATE_LIMIT_ENABLED=false || exit 1
LIVE1=$P1 LIVE2=$P2

# Recorded additions: key -> number and the sum each answered.
declare -A NUMBER ANSWER
expected=0
for i in $(seq 1 20); do
  k="before-$i-$RANDOM"
  n=$((RANDOM % 2000 - 1000))
  port=$LIVE1; [ $((i % 2)) -eq 0 ] && port=$LIVE2
  post "$port" "$KEY" "$k" "$n"
  [ "$STATUS" = 200 ] || { check "recorded addition $i" 200 "$STATUS $BODY"; continue; }
  NUMBER[$k]=$n
  ANSWER[$k]=$(json current_sum)
  expected=$((expected + n))
done
check "20 recorded additions applied" "20 $expected" "${#NUMBER[@]} $(sum_at "$LIVE1" "$KEY")"

rc() { redis-cli -p "$SRC" "$@"; }
check "the source Redis keeps a multi-part AOF in appendonlydir/" "yes appendonlydir" \
  "$(rc config get appendonly | tail -n 1) $(rc config get appenddirname | tail -n 1)"

# ---- the backup, while a load keeps adding through both front ends ----
use_load_tool
"$LOAD" --target "http://127.0.0.1:$LIVE1" --target "http://127.0.0.1:$LIVE2" --requests 2000 \
  --concurrency 4 --rate 250 --idempotency --delta-range 1:9 --api-key "$KEY" >"$TMP/load.out" 2>&1 &
load=$!
echo "$load" >>"$TMP/pids"
sleep 2   # the load is adding now

# The commands of docs/OPERATIONS.md, "Backup and restore", step by step.
DIR=$(rc config get dir | tail -n 1)
ADIR=$(rc config get appenddirname | tail -n 1)
rc bgrewriteaof >/dev/null                                    # 1. compact (optional)
rewriting() { rc info persistence | tr -d '\r' | grep -qE '^aof_rewrite_(in_progress|scheduled):1'; }
for i in $(seq 1 60); do rewriting || break; sleep 1; done
pct=$(rc config get auto-aof-rewrite-percentage | tail -n 1)  # 2. no rewrite during the copy
rc config set auto-aof-rewrite-percentage 0 >/dev/null
for i in $(seq 1 60); do rewriting || break; sleep 1; done
check "no AOF rewrite runs while the files are copied" 1 "$(rewriting; echo $?)"
BACKUP=$TMP/backup/abacus-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$TMP/backup"
cp -a "$DIR/$ADIR" "$BACKUP"                                  # 3. copy
rc config set auto-aof-rewrite-percentage "$pct" >/dev/null   # 4. rewrites back on
check "rewrites are back on" "$pct" "$(rc config get auto-aof-rewrite-percentage | tail -n 1)"

check "the load was running during the copy" 0 "$(kill -0 "$load" 2>/dev/null; echo $?)"
wait "$load"
check "the load finished with no failed request" 1 "$(grep -c '^succeeded: 2000 ' "$TMP/load.out")"
# check_aof MANIFEST: redis-check-aof accepts the copy, or finds nothing wrong
# but the end of the last incr file: a copy taken while Redis appends may end
# inside a command, which Redis then loads without (aof-load-truncated yes,
# its default; that command had not been answered when the copy read it).
check_aof() {
  local last bad
  redis-check-aof "$1" >"$TMP/check-aof.out" 2>&1 && return 0
  last=$(sed -n 's/^file \([^ ]*\) .* type i$/\1/p' "$1" | tail -n 1)
  bad=$(sed -n 's/^AOF \(.*\) is not valid.*/\1/p' "$TMP/check-aof.out")
  [ -n "$last" ] && [ "$bad" = "$last" ] || return 1
  echo "measured: the copy ended inside a command of $last (loaded without it)"
}
manifest=("$BACKUP"/*.manifest)
check_true "redis-check-aof accepts the copy" check_aof "${manifest[0]}"
check_match "the copy holds a base file (after the rewrite) and an incr file" 'base\.rdb.*incr\.aof|incr\.aof.*base\.rdb' "$(ls "$BACKUP" | tr '\n' ' ')"

# Made after the backup: lost on restore.
post "$LIVE1" "$KEY" after-backup-1 5000
check "an addition after the backup" 200 "$STATUS"
live_sum=$(sum_at "$LIVE1" "$KEY")

# ---- restore into a fresh Redis: stop (here: not started yet), place, start ----
mkdir -p "$TMP/redis-restored"
cp -a "$BACKUP" "$TMP/redis-restored/appendonlydir"
read -r DST _ < <(start_redis restored) || exit 1
check_true "the restored Redis is another one (port and dir)" test "$DST" != "$SRC" -a "$(redis-cli -p "$DST" config get dir | tail -n 1)" != "$SRC_DIR"
check "the restored Redis loaded the AOF" 0 "$(redis-cli -p "$DST" info persistence | tr -d '\r' | grep -c '^loading:1')"
WORKERS=2 start_stack restored REDIS_URL="redis://127.0.0.1:$DST/0" ABACUS_API_KEYS="$KEY" \
  ABACUS_RATE_LIMIT_ENABLED=false || exit 1
NEW=$P1

# The copy is one consistent point: its sum is the sum of the deltas of the
# records it holds (each addition wrote both in one script).
records=$(redis-cli -p "$DST" --scan --pattern '{abacus}:idem:*' | sort)
in_records=0
n_records=0
while read -r k; do
  [ -n "$k" ] || continue
  in_records=$((in_records + $(redis-cli -p "$DST" get "$k" | cut -d' ' -f1)))
  n_records=$((n_records + 1))
done <<<"$records"
restored=$(sum_at "$NEW" "$KEY")
check "restored: the sum is the sum of the additions it holds records of" "$in_records" "$restored"
measured=$((n_records - 20))
echo "measured: the copy holds the 20 recorded additions and $measured of the load's 2000 (taken while it ran)"
check_true "restored: it holds load additions made before the copy" test "$measured" -gt 0
check_true "restored: ... and not the ones made after it" test "$measured" -lt 2000
check_true "restored: the sum is behind the live one" test "$restored" -lt "$live_sum"

# Every recorded key, repeated with the same body: a replay with its original answer.
replays=0 answers=0
for k in "${!NUMBER[@]}"; do
  post "$NEW" "$KEY" "$k" "${NUMBER[$k]}"
  [ "$STATUS $(header idempotent-replayed)" = "200 true" ] && replays=$((replays + 1))
  [ "$(json current_sum)" = "${ANSWER[$k]}" ] && answers=$((answers + 1))
done
check "restored: every recorded key repeated is a replay (Idempotent-Replayed: true)" 20 "$replays"
check "restored: ... answering the sum of its first addition" 20 "$answers"
check "restored: the replays added nothing" "$restored" "$(sum_at "$NEW" "$KEY")"
k=${!NUMBER[*]}; k=${k%% *}
post "$NEW" "$KEY" "$k" $((NUMBER[$k] + 1))
check "restored: a recorded key with another number is a conflict" 422 "$STATUS"
ttl=$(redis-cli -p "$DST" pttl "$(printf '%s\n' "$records" | head -n 1)")
check_true "restored: records keep their expiry (0 < PTTL <= 24 h)" test "$ttl" -gt 0 -a "$ttl" -le 86400000
check "restored: the limiter's state is not in the AOF" "" "$(redis-cli -p "$DST" --scan --pattern '{abacus}:rl:*')"

# The addition made after the backup is gone: its key is new again.
check "restored: the addition after the backup is not there" "" "$(printf '%s\n' "$records" | grep after-backup-1)"
post "$NEW" "$KEY" after-backup-1 5000
check "restored: repeating it applies it anew (no replay header)" "200 " "$STATUS $(header idempotent-replayed)"
check "restored: ... once" $((restored + 5000)) "$(sum_at "$NEW" "$KEY")"

check "the live service still has everything" "$live_sum" "$(sum_at "$LIVE2" "$KEY")"
suite_end
