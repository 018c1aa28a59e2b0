#!/usr/bin/env bash
# tools/abacus-stack (what `make run` uses): overrides, settings passed through
# to the workers, AOF Redis, respawned workers, and nothing left after stop.
set -u
. "$(dirname "$0")/lib.sh"
suite_init stack

# processes_of DIR: pids carrying ABACUS_STACK_DIR=DIR (lighttpd and workers).
processes_of() {
  local p
  for p in /proc/[0-9]*; do
    { tr '\0' '\n' <"$p/environ"; } 2>/dev/null | grep -qxF "ABACUS_STACK_DIR=$1" && echo "${p#/proc/}"
  done
  return 0
}
workers_of() { pgrep -P "$(cat "$STACK/frontend-$1/frontend.pid")" | wc -l; }

WORKERS=2 start_stack main ABACUS_REDIS_PREFIX=custom ABACUS_MAX_BODY_BYTES=100 || exit 1
out=$(cat "$STACK/start.out")
check_match "start prints the URLs" "http://127.0.0.1:$P1 http://127.0.0.1:$P2" "$out"
check_match "start prints the default API key" 'API key:  local-dev-key' "$out"
check_match "start prints a curl example" "curl -s -X POST http://127.0.0.1:$P1/abacus/number" "$out"
stack_env "$STACK" "$ROOT/tools/abacus-stack" status >"$TMP/status.out" 2>&1
check "status: exit 0 when up" 0 "$?"
check_match "status lists both front ends" "port $P1  up.*port $P2  up" "$(tr '\n' ' ' <"$TMP/status.out")"
check "ABACUS_WORKERS=2: front end 1 has 2 workers" 2 "$(workers_of "$P1")"
check "ABACUS_WORKERS=2: front end 2 has 2 workers" 2 "$(workers_of "$P2")"
if [ "$(id -u)" -eq 0 ]; then
  users=$(for p in $(cat "$STACK/frontend-$P1/frontend.pid") $(pgrep -P "$(cat "$STACK/frontend-$P1/frontend.pid")"); do
    ps -o user= -p "$p"; done | sort -u | tr '\n' ' ')
  check "started as root: lighttpd and its workers run as nobody" "nobody " "$users"
fi
check "private Redis on ABACUS_REDIS_PORT with AOF" "appendonly yes" "$(redis-cli -p "$RPORT" config get appendonly | tr '\n' ' ' | sed 's/ $//')"
check "private Redis with noeviction" "maxmemory-policy noeviction" "$(redis-cli -p "$RPORT" config get maxmemory-policy | tr '\n' ' ' | sed 's/ $//')"
check "private Redis data under ABACUS_VAR_DIR" "$STACK/redis" "$(redis-cli -p "$RPORT" config get dir | tail -n 1)"
check "conf/lighttpd.conf reads its port from the environment" 1 "$(grep -c '^server.port *= env.ABACUS_PORT' "$ROOT/conf/lighttpd.conf")"

post "$P1" local-dev-key s-1 9
check "the stack serves with the default key" "200 9" "$STATUS $(json current_sum)"
check "ABACUS_REDIS_PREFIX reached the workers" 9 "$(redis-cli -p "$RPORT" get '{custom}:sum')"
req POST "http://127.0.0.1:$P2/abacus/number" -H 'X-API-Key: local-dev-key' -H 'Idempotency-Key: s-2' \
  -H 'Content-Type: application/json' --data-binary "{\"number\": 1, \"pad\": \"$(printf 'x%.0s' $(seq 1 120))\"}"
check "ABACUS_MAX_BODY_BYTES reached the workers" 413 "$STATUS"
check "each front end has its own metrics segment name" 2 "$(for p in "$P1" "$P2"; do tr '\0' '\n' <"/proc/$(cat "$STACK/frontend-$p/frontend.pid")/environ" | grep '^ABACUS_METRICS_SHM='; done | sort -u | wc -l)"

# ---- a killed worker is respawned by lighttpd; requests keep succeeding ----
AUDIT_CSV=$TMP/sent.csv   # the additions from here on, for the audit below
victim=$(pgrep -P "$(cat "$STACK/frontend-$P1/frontend.pid")" | head -n 1)
kill -KILL "$victim"
ok=0
for i in $(seq 1 20); do post "$P1" local-dev-key "k-$i" 1; [ "$STATUS" = 200 ] && ok=$((ok + 1)); done
check "requests after a worker was killed" 20 "$ok"
workers_are() { test "$(workers_of "$1")" -eq "$2"; }
check_true "lighttpd respawned the worker" wait_until 5 workers_are "$P1" 2

# ---- lighttpd killed hard leaves its workers; stop still removes them ----
lt=$(cat "$STACK/frontend-$P2/frontend.pid")
kill -KILL "$lt"
wait_until 5 sh -c "! kill -0 $lt 2>/dev/null"
check_true "after SIGKILL of lighttpd its workers still run" test "$(processes_of "$STACK/frontend-$P2" | wc -l)" -ge 1
stack_env "$STACK" "$ROOT/tools/abacus-stack" status >/dev/null 2>&1
check "status: exit 1 when a front end is down" 1 "$?"
stack_env "$STACK" "$ROOT/tools/abacus-stack" start >/dev/null 2>&1
check "start again brings the front end back" 200 "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$P2/readyz")"
check "... with fresh workers only" 2 "$(workers_of "$P2")"
check "the sum survived" 29 "$(sum_at "$P2" local-dev-key)"
audit_ok "a worker and a lighttpd SIGKILLed" "http://127.0.0.1:$P2" local-dev-key "$AUDIT_CSV"
AUDIT_CSV=

# Started as root, the workers drop to nobody and run from a runtime directory
# of their own (the checkout may be private); the user's var/ links to it.
rt1=$(readlink "$STACK/frontend-$P1/run" 2>/dev/null || echo "$STACK/frontend-$P1")
check_true "the workers' sockets are where the stack says ($rt1)" test -S "$rt1/abacus.sock-0"
if [ "$(id -u)" -eq 0 ]; then
  check_match "started as root: the workers run the staged binary" "^/run/abacus-stack/[0-9]+/abacus.fcgi$" \
    "$(readlink "/proc/$(worker_pids "$P1" | head -n 1)/exe")"
  check_match "start says where the staged files are" "Workers:  run as nobody; sockets and staged files in /run/abacus-stack/" "$out"
fi

rpid=$(cat "$STACK/redis/redis.pid")
stop_stack
check "stop: no process of front end 1 left" "" "$(processes_of "$STACK/frontend-$P1")"
check "stop: no process of front end 2 left" "" "$(processes_of "$STACK/frontend-$P2")"
check "stop: Redis stopped" "" "$(kill -0 "$rpid" 2>/dev/null && echo running)"
check "stop: no worker socket left" "" "$(ls "$rt1"/abacus.sock-* "$STACK"/frontend-*/abacus.sock-* 2>/dev/null)"
check "stop: the runtime directory is gone" "" "$(ls -d "$rt1" "$(dirname "$rt1")" 2>/dev/null | grep -v "^$STACK")"

# ---- `run` (what `make run` does): foreground, Ctrl-C stops everything ----
RUNDIR=$TMP/run; mkdir -p "$RUNDIR"
rp1=$(free_port); rrp=$(free_port)
# Known to cleanup too, should the runner outlive this suite's checks.
printf 'ABACUS_VAR_DIR=%s\nABACUS_PORTS=%s\nABACUS_REDIS_PORT=%s\n' "$RUNDIR" "$rp1" "$rrp" >"$RUNDIR/stack.env"
STACKS+=("$RUNDIR")
ABACUS_VAR_DIR=$RUNDIR ABACUS_PORTS=$rp1 ABACUS_REDIS_PORT=$rrp ABACUS_BIN=$BIN ABACUS_WORKERS=1 \
  python3 -c '
import os, signal, sys
# A background job inherits SIGINT ignored; a terminal user does not.
signal.signal(signal.SIGINT, signal.SIG_DFL)
os.setsid()
os.execvp(sys.argv[1], sys.argv[1:])' "$ROOT/tools/abacus-stack" run >"$RUNDIR/run.out" 2>&1 &
runner=$!
PIDS+=("$runner")
check_true "run: comes up" wait_until 15 curl -fs "http://127.0.0.1:$rp1/readyz"
# The hint is printed after the front ends answer: give it a moment to land.
wait_until 5 grep -q 'Ctrl-C' "$RUNDIR/run.out" || true
check_match "run: tells how to stop" 'Ctrl-C' "$(cat "$RUNDIR/run.out")"
kill -INT -- "-$runner"
check_true "run: Ctrl-C ends it" wait_until 10 sh -c "! kill -0 $runner 2>/dev/null"
check "run: nothing left behind" "" "$(processes_of "$RUNDIR/frontend-$rp1")"
check "run: Redis stopped" "" "$(redis-cli -p "$rrp" ping 2>/dev/null)"
runtime_of() { echo "/run/abacus-stack/$(printf '%s' "$(cd "$1" && pwd -P)" | cksum | cut -d' ' -f1)"; }
[ "$(id -u)" -eq 0 ] && check "run: its runtime directory is gone" "" "$(ls -d "$(runtime_of "$RUNDIR")" 2>/dev/null)"

# ---- a port already taken: refused before anything starts, naming the port ----
taken=$(free_port); other=$(free_port); trp=$(free_port)
python3 -c '
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(1); time.sleep(60)' "$taken" &
PIDS+=("$!")
wait_until 5 sh -c "ss -Hltn '( sport = :$taken )' | grep -q ."
TAKEN=$TMP/taken; mkdir -p "$TAKEN"
# Known to cleanup: should start wrongly succeed, nothing outlives the suite.
printf 'ABACUS_VAR_DIR=%s\nABACUS_PORTS=%q\nABACUS_REDIS_PORT=%s\n' "$TAKEN" "$other $taken" "$trp" >"$TAKEN/stack.env"
STACKS+=("$TAKEN")
out=$(ABACUS_VAR_DIR=$TAKEN ABACUS_PORTS="$other $taken" ABACUS_REDIS_PORT=$trp ABACUS_BIN=$BIN ABACUS_WORKERS=1 \
  "$ROOT/tools/abacus-stack" start 2>&1)
check "port taken: start exits 1" 1 "$?"
check_match "port taken: says which port" "port $taken \(ABACUS_PORTS\) is already in use \(\"python3\"" "$out"
check "port taken: no Redis left" "" "$(redis-cli -p "$trp" ping 2>/dev/null)"
check "port taken: no front end left" "" "$(processes_of "$TAKEN/frontend-$other")"

# ---- a front end that fails after Redis and another front end started:
# everything is undone, and the message quotes the log line that says why.
# Its port is bound but not listening (a client's socket): the check before
# the start cannot see it, lighttpd's bind fails. ----
FAILDIR=$TMP/fail; mkdir -p "$FAILDIR"
fp1=$(free_port); fp2=$(free_port); frp=$(free_port)
printf 'ABACUS_VAR_DIR=%s\nABACUS_PORTS=%q\nABACUS_REDIS_PORT=%s\n' "$FAILDIR" "$fp1 $fp2" "$frp" >"$FAILDIR/stack.env"
STACKS+=("$FAILDIR")
python3 -c '
import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", int(sys.argv[1])))
open(sys.argv[2], "w").close()
time.sleep(60)' "$fp2" "$FAILDIR/bound" &
PIDS+=("$!")
wait_until 5 test -e "$FAILDIR/bound"
out=$(ABACUS_VAR_DIR=$FAILDIR ABACUS_PORTS="$fp1 $fp2" ABACUS_REDIS_PORT=$frp ABACUS_BIN=$BIN ABACUS_WORKERS=1 \
  "$ROOT/tools/abacus-stack" start 2>&1)
check "failed start: exit 1" 1 "$?"
check_match "failed start: names the front end" "front end on port $fp2 did not answer" "$out"
check_match "failed start: quotes lighttpd's reason" "> .*can't bind to socket: 127.0.0.1:$fp2: Address already in use" "$out"
check_match "failed start: says nothing is left" "nothing was left running" "$out"
check "failed start: Redis stopped" "" "$(redis-cli -p "$frp" ping 2>/dev/null)"
check "failed start: the first front end stopped" "" "$(processes_of "$FAILDIR/frontend-$fp1")"
check "failed start: the second front end left nothing" "" "$(processes_of "$FAILDIR/frontend-$fp2")"
[ "$(id -u)" -eq 0 ] && check "failed start: no runtime directory left" "" "$(ls -d "$(runtime_of "$FAILDIR")" 2>/dev/null)"
out=$(ABACUS_VAR_DIR=$FAILDIR ABACUS_PORTS="$fp1 70000" ABACUS_REDIS_PORT=$frp ABACUS_BIN=$BIN "$ROOT/tools/abacus-stack" start 2>&1)
check_match "a port out of range is refused up front" "^abacus-stack: port 70000 \(ABACUS_PORTS\) is not a TCP port" "$out"

# ---- from a private (0700) checkout: as root (workers drop to nobody), and
# as an unprivileged user ----
# mini_checkout DIR OWNER: what abacus-stack needs of a checkout, in DIR (0700).
mini_checkout() {
  mkdir -p "$1/tools" "$1/docs" "$1/build"
  cp -r "$ROOT/conf" "$1/"
  cp "$ROOT/tools/abacus-stack" "$1/tools/"
  cp "$ROOT/docs/openapi.yaml" "$1/docs/"
  cp "$BIN" "$1/build/abacus.fcgi"
  chown -R "$2" "$1"
  chmod 700 "$1"
}
# private_case LABEL DIR AS...: starts a one-front-end stack from DIR with AS
# (a command prefix), checks it serves, stops it, checks nothing is left.
private_case() {
  local label=$1 dir=$2; shift 2
  local pp prp out
  pp=$(free_port); prp=$(free_port)
  printf 'ABACUS_VAR_DIR=%s\nABACUS_PORTS=%s\nABACUS_REDIS_PORT=%s\n' "$dir/var" "$pp" "$prp" >"$TMP/$label.env"
  out=$(cd "$dir" && "$@" env ABACUS_PORTS="$pp" ABACUS_REDIS_PORT="$prp" ABACUS_WORKERS=2 \
          ABACUS_BIN="$dir/build/abacus.fcgi" tools/abacus-stack start 2>&1)
  check "$label: start exit 0" 0 "$?"
  [ -d "$dir/var" ] && STACKS+=("$dir/var") && cp "$TMP/$label.env" "$dir/var/stack.env"
  post "$pp" local-dev-key "private-$pp" 6
  check "$label: POST" "200 6" "$STATUS $(json current_sum)"
  req GET "http://127.0.0.1:$pp/abacus/sum" -H 'X-API-Key: local-dev-key'
  check "$label: GET" "200 6" "$STATUS $(json current_sum)"
  req GET "http://127.0.0.1:$pp/openapi.yaml"
  check "$label: /openapi.yaml served" 200 "$STATUS"
  check "$label: the workers run as $PRIVATE_USER" "$PRIVATE_USER" \
    "$(for p in $(STACK=$dir/var worker_pids "$pp"); do ps -o user= -p "$p"; done | sort -u | tr -d ' \n')"
  (cd "$dir" && "$@" env ABACUS_PORTS="$pp" ABACUS_REDIS_PORT="$prp" tools/abacus-stack stop >/dev/null 2>&1)
  check "$label: stop leaves no process" "" "$(processes_of "$dir/var/frontend-$pp")"
  check "$label: stop leaves no Redis" "" "$(redis-cli -p "$prp" ping 2>/dev/null)"
  [ -n "$out" ] || true
}
if [ "$(id -u)" -eq 0 ]; then
  mini_checkout "$TMP/private-root" root
  PRIVATE_USER=nobody private_case "private checkout as root" "$TMP/private-root"
  check "private checkout as root: the runtime directory is gone" "" \
    "$(ls -d /run/abacus-stack/"$(printf '%s' "$TMP/private-root/var" | cksum | cut -d' ' -f1)" 2>/dev/null)"
  mini_checkout "$TMP/private-nobody" nobody
  PRIVATE_USER=nobody private_case "private checkout as nobody" "$TMP/private-nobody" \
    setpriv --reuid nobody --regid nogroup --clear-groups
else
  mkdir -p "$TMP/private-user"
  mini_checkout "$TMP/private-user" "$(id -un)"
  PRIVATE_USER=$(id -un) private_case "private checkout as $(id -un)" "$TMP/private-user"
fi

# ---- ABACUS_RUN_AS= (empty) keeps the workers as the starting user ----
WORKERS=1 start_stack asis ABACUS_RUN_AS= || exit 1
check "ABACUS_RUN_AS=: the workers run as $(id -un)" "$(id -un)" "$(ps -o user= -p "$(pgrep -P "$(cat "$STACK/frontend-$P1/frontend.pid")" | head -n 1)")"
stop_stack

# ---- REDIS_URL: use that Redis, start none ----
read -r ext_port _ < <(start_redis ext)
WORKERS=1 start_stack ext REDIS_URL="redis://127.0.0.1:$ext_port/0" || exit 1
check "REDIS_URL set: no private Redis" "" "$(ls "$STACK/redis/redis.pid" 2>/dev/null)"
post "$P1" local-dev-key e-1 4
check "REDIS_URL set: the given Redis is used" 4 "$(redis-cli -p "$ext_port" get '{abacus}:sum')"
stop_stack
check "REDIS_URL set: stop leaves that Redis alone" PONG "$(redis-cli -p "$ext_port" ping)"

suite_end
