# Helpers for the integration suites (sourced).  Each suite:
#   . tests/lib.sh; suite_init "name"; ...checks...; suite_end
# gets a private mktemp -d folder, free loopback ports, and a cleanup trap
# that stops everything it started, by PID.
#
# Never 6379, 8001 or 8002: a user's own stack may be there.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${ABACUS_TEST_BIN:-$ROOT/build/test/abacus.fcgi}
FRONTEND=${FRONTEND:-lighttpd}   # the front-end kind the stacks of a suite use
PASSED=0
FAILED=0
PIDS=()
STACKS=()
CLEANUP_HOOKS=()   # functions a suite adds to stop what it started itself
USED_PORTS=" 6379 8001 8002 "

suite_init() {
  SUITE=$1
  [ "$FRONTEND" = lighttpd ] || SUITE=$SUITE-$FRONTEND
  TMP=$(mktemp -d "/tmp/abacus-$SUITE.XXXXXX")
  # Started as root, the stacks run their workers as nobody: the tests' own
  # Redis sockets and key files in here must be reachable by them (the
  # checkout itself need not be: abacus-stack stages what the workers need).
  chmod 755 "$TMP"
  trap cleanup EXIT
  # Stopped from outside (run-integration's time limit, Ctrl-C): a failure, logs kept.
  trap 'FAILED=$((FAILED + 1)); echo "FAIL the suite was interrupted"; exit 130' INT TERM
}

# stop_everything: stops every stack and process the suite started, by PID
# (workers included: abacus-stack stop waits for them).  Idempotent; suite_end
# calls it before reading the logs, so what a process prints when it exits
# (LeakSanitizer's report at SIGTERM, worker_stopped) is read too.
stop_everything() {
  local s pid h
  for h in "${CLEANUP_HOOKS[@]}"; do "$h" || true; done
  for s in "${STACKS[@]}"; do stack_env "$s" "$ROOT/tools/abacus-stack" stop >/dev/null 2>&1 || true; done
  # Helpers that run in subshells ($(...), < <(...)) record their pids in a file.
  [ -f "$TMP/pids" ] && while read -r pid; do PIDS+=("$pid"); done <"$TMP/pids"
  : >"$TMP/pids" 2>/dev/null
  for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  return 0
}

cleanup() {
  # Only the suite's own shell: a subshell inherits the trap (and can be
  # killed before it execs what it was started for).
  [ "$BASHPID" = "$$" ] || return 0
  stop_everything
  release_ports
  if [ "$FAILED" -eq 0 ] && [ -z "${KEEP_TMP:-}" ]; then rm -rf "$TMP"; fi
}

# VERBOSE=1: passing checks are printed too ("ok   NAME").
passed() { PASSED=$((PASSED + 1)); [ -z "${VERBOSE:-}" ] || echo "ok   $1"; }

check() { # check NAME EXPECTED ACTUAL
  if [ "$2" == "$3" ]; then
    passed "$1"
  else
    FAILED=$((FAILED + 1))
    printf 'FAIL %s: expected [%s], got [%s]\n' "$1" "$2" "${3:0:400}"
  fi
}

check_match() { # check_match NAME REGEX ACTUAL
  if [[ $3 =~ $2 ]]; then
    passed "$1"
  else
    FAILED=$((FAILED + 1))
    printf 'FAIL %s: [%s] does not match /%s/\n' "$1" "${3:0:400}" "$2"
  fi
}

check_true() { # check_true NAME COMMAND...
  local name=$1; shift
  if "$@"; then passed "$name"; else FAILED=$((FAILED + 1)); echo "FAIL $name: [$*] was false"; fi
}

# remember_keys VAR=value...: notes the API keys a stack was given (inline or
# in a file, default local-dev-key), so suite_end can look for them in the logs.
remember_keys() {
  local kv keys="" k
  for kv in "$@"; do
    case $kv in
      ABACUS_API_KEYS=*|ABACUS_ADMIN_API_KEYS=*) keys="$keys,${kv#*=}" ;;
      ABACUS_API_KEYS_FILE=*|ABACUS_ADMIN_API_KEYS_FILE=*) keys="$keys,$(grep -v '^#' "${kv#*=}" 2>/dev/null | tr '\n' ',')" ;;
    esac
  done
  [ -z "$keys" ] && keys=local-dev-key
  for k in ${keys//,/ }; do printf '%s\n' "$k"; done >>"$TMP/configured-keys"
}

suite_end() {
  # First stop everything, then read what it all wrote.
  stop_everything
  # Sanitizer reports in any log of this suite are failures.
  local reports leaks=""
  reports=$(grep -rlE 'ERROR: AddressSanitizer|runtime error:|LeakSanitizer' "$TMP" 2>/dev/null || true)
  check "no sanitizer report in logs" "" "$reports"
  # lighttpd ignores a setting it does not know, with only a warning (in what
  # it printed, not in a copy of conf/lighttpd.conf, whose comment quotes it).
  check "no configuration setting ignored by lighttpd" "" "$(grep -rl --exclude='*.conf' 'unknown config-key' "$TMP" 2>/dev/null)"
  # No configured API key in any log this suite produced (SPEC 4).
  if [ -s "$TMP/configured-keys" ]; then
    leaks=$(grep -rlF -f <(sort -u "$TMP/configured-keys" | grep -v '^$') --include='*.log' "$TMP" 2>/dev/null || true)
  fi
  check "no configured API key in any log" "" "$leaks"
  { [ "$FAILED" -gt 0 ] || [ -n "${KEEP_TMP:-}" ]; } && echo "(logs kept in $TMP)"
  echo "$PASSED passed, $FAILED failed"
  [ "$FAILED" -eq 0 ]
  exit $?
}

# Ports.  Listening ports come from below the kernel's ephemeral range (an
# outgoing connection can never hold one), and each is claimed in a folder
# shared by every suite on the machine (mkdir is atomic) until the suite ends:
# two suites side by side, or two stacks of one suite, never pick the same
# port, even when free_port runs in a subshell ($(free_port)).
PORT_CLAIMS=${ABACUS_PORT_CLAIMS:-/tmp/abacus-test-ports}

port_range() {
  local lo hi
  [ -n "${ABACUS_TEST_PORT_RANGE:-}" ] && { echo "$ABACUS_TEST_PORT_RANGE"; return; }   # "LO HI", for it_harness
  read -r lo hi </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || { lo=32768; hi=60999; }
  if [ "$lo" -gt 12000 ]; then echo "10000 $((lo - 1))"; else echo "$((hi + 1)) 65000"; fi
}

# claim_port PORT: 0 if this suite now owns PORT's claim.
claim_port() {
  local p=$1 owner
  mkdir -p "$PORT_CLAIMS" 2>/dev/null && chmod 1777 "$PORT_CLAIMS" 2>/dev/null
  if ! mkdir "$PORT_CLAIMS/$p" 2>/dev/null; then
    owner=$(cat "$PORT_CLAIMS/$p/owner" 2>/dev/null)
    # A claim whose suite is gone is stale: move it aside (atomic), then retry
    # once.  One without an owner yet is being made right now, unless old.
    [ -n "$owner" ] && kill -0 "$owner" 2>/dev/null && return 1
    [ -z "$owner" ] && [ $(( $(date +%s) - $(stat -c %Y "$PORT_CLAIMS/$p" 2>/dev/null || echo 0) )) -lt 10 ] && return 1
    mv "$PORT_CLAIMS/$p" "$PORT_CLAIMS/.stale.$$.$p" 2>/dev/null || return 1
    rm -rf "$PORT_CLAIMS/.stale.$$.$p"
    mkdir "$PORT_CLAIMS/$p" 2>/dev/null || return 1
  fi
  echo "$$" >"$PORT_CLAIMS/$p/owner"
}

release_ports() {
  local d
  for d in "$PORT_CLAIMS"/[0-9]*; do
    [ "$(cat "$d/owner" 2>/dev/null)" = "$$" ] && rm -rf "$d"
  done
  return 0
}

free_port() {
  local p i lo hi
  read -r lo hi < <(port_range)
  for i in $(seq 1 500); do
    p=$(( (RANDOM * 32768 + RANDOM) % (hi - lo + 1) + lo ))
    case "$USED_PORTS" in *" $p "*) continue ;; esac
    claim_port "$p" || continue
    if ss -Htan "( sport = :$p or dport = :$p )" 2>/dev/null | grep -q .; then
      continue      # in use by someone else: keep the claim so nobody retries it
    fi
    USED_PORTS="$USED_PORTS$p "
    echo "$p"
    return 0
  done
  echo "no free port" >&2
  return 1
}

# wait_until SECONDS COMMAND...: polls every 0.1 s, bounded.
wait_until() {
  local limit=$1 i; shift
  for i in $(seq 1 $((limit * 10))); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  return 1
}

# start_redis NAME [redis-server args...]: sets REDIS_PORT_<NAME> semantics via echo.
# Prints "port pid"; data in $TMP/redis-NAME.
start_redis() {
  local name=$1; shift
  local port dir i
  port=$(free_port)
  dir=$TMP/redis-$name
  mkdir -p "$dir"
  rm -f "$dir/redis.pid"     # never a pid file of an earlier server taken for this one's
  redis-server "$ROOT/conf/redis.conf" --port "$port" --dir "$dir" --daemonize yes \
    --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" --unixsocket "$dir/redis.sock" \
    --unixsocketperm 777 "$@" >/dev/null
  # Record the pid as soon as it exists, so cleanup stops a Redis that never answers.
  for i in $(seq 1 50); do [ -s "$dir/redis.pid" ] && break; sleep 0.1; done
  [ -s "$dir/redis.pid" ] && cat "$dir/redis.pid" >>"$TMP/pids"
  wait_until 5 redis_ping "$port" || { echo "redis $name did not start: $(tail -n 3 "$dir/redis.log" 2>/dev/null)" >&2; return 1; }
  echo "$port $(cat "$dir/redis.pid")"
}

# ---- Redis Cluster nodes (it_cluster, it_cluster_sums) ----
# A cluster node also listens on its port + 10000 (the cluster bus): both
# must be free, so a node that could not bind is started again on new ports.
start_cluster_node() { # N: a cluster node (password $PW); prints the port it listens on
  local n=$1 dir=$TMP/redis-$1 port attempt
  mkdir -p "$dir"
  cp "$ROOT/conf/redis.conf" "$dir/redis.conf"
  for attempt in 1 2 3 4 5; do
    # The cluster bus gets a claimed port of its own (not port + 10000, which
    # nobody claimed and may lie in the ephemeral range).
    port=$(free_port); bus=$(free_port)
    rm -f "$dir/redis.pid"     # never a pid file of an earlier server taken for this one's
    # The command is kept: restart_cluster_node N starts it again, on the same ports.
    printf '%q ' redis-server "$dir/redis.conf" --port "$port" --cluster-port "$bus" --dir "$dir" --daemonize yes \
      --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" --cluster-enabled yes \
      --cluster-config-file "$dir/nodes.conf" --cluster-node-timeout 2000 \
      --requirepass "$PW" --masterauth "$PW" >"$dir/start.cmd"
    echo "$port" >"$dir/port"
    bash "$dir/start.cmd" >/dev/null || continue
    # The pid first: a server that never answers is still stopped by cleanup.
    wait_until 5 test -s "$dir/redis.pid" && cat "$dir/redis.pid" >>"$TMP/pids"
    if wait_until 5 redis_ping "$port"; then
      echo "$port"
      return 0
    fi
  done
  echo "redis $n did not start; $(tail -n 2 "$dir/redis.log" 2>/dev/null)" >&2
  return 1
}
# restart_cluster_node N: node N again, as it was started (after it was killed).
restart_cluster_node() {
  local dir=$TMP/redis-$1
  rm -f "$dir/redis.pid"
  bash "$dir/start.cmd" >/dev/null || return 1
  wait_until 5 test -s "$dir/redis.pid" && cat "$dir/redis.pid" >>"$TMP/pids"
  wait_until 5 redis_ping "$(cat "$dir/port")"
}
# migrate_keys SLOT FROM TO BATCH PAUSE: moves the keys of SLOT from the master on port
# FROM to the one on TO (the slot set IMPORTING/MIGRATING before, and SETSLOT NODE
# after, by the caller), BATCH keys at a time, PAUSE seconds between batches.
# Prints how many batches it took.
migrate_keys() {
  local slot=$1 from=$2 to=$3 batch=$4 pause=$5 n=0 keys i
  for i in $(seq 1 2000); do
    keys=$(ccli "$from" cluster getkeysinslot "$slot" "$batch")
    [ -z "$keys" ] && break
    # shellcheck disable=SC2086
    ccli "$from" migrate 127.0.0.1 "$to" "" 0 5000 AUTH "$PW" KEYS $keys >/dev/null
    n=$((n + 1))
    sleep "$pause"
  done
  echo "$n"
}
ccli() { local p=$1; shift; redis-cli --no-auth-warning -a "$PW" -p "$p" "$@" 2>/dev/null; }

redis_ping() { redis-cli -p "$1" ping 2>/dev/null | grep -qE 'PONG|NOAUTH'; }

# stack_env DIR CMD...: runs CMD with the environment saved for the stack in DIR.
stack_env() {
  local dir=$1; shift
  ( set -a; . "$dir/stack.env"; set +a; "$@" )
}

# start_stack NAME [VAR=value...]: two front ends (and a private Redis unless
# REDIS_URL is among the settings).  Sets P1, P2, STACK (its var dir), RPORT.
start_stack() {
  local name=$1; shift
  STACK=$TMP/stack-$name
  mkdir -p "$STACK"
  P1=$(free_port); P2=$(free_port); RPORT=$(free_port)
  {
    echo "ABACUS_VAR_DIR=$STACK"
    echo "ABACUS_PORTS='$P1 $P2'"
    echo "ABACUS_REDIS_PORT=$RPORT"
    echo "ABACUS_BIN=$BIN"
    echo "ABACUS_WORKERS=${WORKERS:-3}"
    echo "ABACUS_FRONTEND=${FRONTEND:-lighttpd}"
    local kv
    for kv in "$@"; do printf '%s=%q\n' "${kv%%=*}" "${kv#*=}"; done
  } >"$STACK/stack.env"
  remember_keys "$@"
  STACKS+=("$STACK")
  stack_env "$STACK" "$ROOT/tools/abacus-stack" start >"$STACK/start.out" 2>&1 || {
    echo "stack $name did not start:"; cat "$STACK/start.out"; return 1; }
}

stop_stack() { stack_env "$STACK" "$ROOT/tools/abacus-stack" stop >/dev/null 2>&1; }

# req METHOD URL [curl args...]: sets STATUS, BODY, HEADERS (lower-cased names).
req() {
  local method=$1 url=$2; shift 2
  local out=$TMP/req.$BASHPID how=(-X "$method")   # BASHPID: a background req has its own files
  [ "$method" = HEAD ] && how=(--head)   # -X HEAD would wait for a body
  rm -f "$out.body" "$out.head"
  touch "$out.body" "$out.head"
  local body=$out.body
  [ "$method" = HEAD ] && body=/dev/null
  STATUS=$(curl -s -o "$body" -D "$out.head" -w '%{http_code}' --max-time 10 "${how[@]}" "$url" "$@")
  BODY=$(cat "$out.body")
  HEADERS=$(tr -d '\r' <"$out.head" | tr 'A-Z' 'a-z')
  # OBSERVE=FILE records "METHOD /path STATUS" of every request (see it_api).
  if [ -n "${OBSERVE:-}" ]; then
    local path=${url#http://*/}
    echo "$method /${path%%\?*} $STATUS" >>"$OBSERVE"
  fi
}

# header NAME: the value of a response header of the last req (name lower-case).
header() { printf '%s\n' "$HEADERS" | sed -n "s/^$1: //p" | tail -n 1; }

# json FIELD: a top-level integer or string member of BODY.
json() { printf '%s' "$BODY" | python3 -c 'import json,sys; v=json.load(sys.stdin).get(sys.argv[1]); print("null" if v is None else v)' "$1" 2>/dev/null; }

# sum_at PORT KEY: the current sum through one front end.
sum_at() {
  curl -s --max-time 5 "http://127.0.0.1:$1/abacus/sum" -H "X-API-Key: $2" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["current_sum"])' 2>/dev/null
}

# post PORT KEY IDEM NUMBER: POST /abacus/number, sets STATUS/BODY/HEADERS
# (and, with AUDIT_CSV set, records it: record_addition).
post() {
  req POST "http://127.0.0.1:$1/abacus/number" -H "X-API-Key: $2" -H "Idempotency-Key: $3" \
    -H 'Content-Type: application/json' --data-binary "{\"number\": $4}"
  record_addition "http://127.0.0.1:$1" "$3" "$4" "$STATUS"
}

# ---- the ledger's audit (tools/abacus-audit) after a fault ----
# A suite proves a fault scenario lost and doubled nothing: the additions it
# sent go through abacus-load --idempotency --out-csv FILE, or, one request at
# a time, are recorded in the same format in AUDIT_CSV; then audit_ok.

# record_addition URL IDEM NUMBER STATUS: with AUDIT_CSV set, appends one line
# for a keyed POST of NUMBER answered STATUS (000: no answer) to that file, in
# abacus-load's --out-csv format (the header first).  A POST without an
# Idempotency-Key, or with a NUMBER that is not an integer, cannot be matched
# with the ledger and is not recorded.
record_addition() {
  [ -n "${AUDIT_CSV:-}" ] || return 0
  [ -s "$AUDIT_CSV" ] || echo "timestamp,worker_id,target,status,latency_ms,error,method,idempotency_key,delta" >"$AUDIT_CSV"
  [ -n "$2" ] && [[ $3 =~ ^-?[0-9]+$ ]] || return 0
  printf '%s,0,%s,%s,0,"",POST,"%s",%s\n' "$(date +%s.%N)" "$1" "${4:-000}" "${2//\"/\"\"}" "$3" >>"$AUDIT_CSV"
}

# audit_run NAME URL KEY CSV...: runs tools/abacus-audit against the front
# end at URL with KEY (an admin key where the stack has admin keys) and the
# CSVs; prints its summary line, indented, after NAME.  Sets AUDIT_RC (0 OK,
# 1 FAILED, 2 could not audit), AUDIT_OUT (all it printed) and AUDIT_LINE
# (its summary line).  AUDIT_SUM=NAME audits that named sum's ledger (--sum).
audit_run() {
  local name=$1 url=$2 key=$3 c args=(); shift 3
  [ -z "${AUDIT_SUM:-}" ] || args+=(--sum "$AUDIT_SUM")
  for c in "$@"; do args+=(--load-csv "$c"); done
  AUDIT_OUT=$("$ROOT/tools/abacus-audit" --url "$url" --api-key "$key" "${args[@]}" 2>&1)
  AUDIT_RC=$?
  AUDIT_LINE=$(printf '%s\n' "$AUDIT_OUT" | tail -n 1)
  printf '   %s: %s\n' "$name" "$AUDIT_LINE"
}

# audit_ok NAME URL KEY CSV...: the audit passes (exit 0): the ledger's chain
# holds and ends at the sum, no Idempotency-Key applied twice, and every
# addition acknowledged in the CSVs is in the ledger exactly once, nothing
# unexplained ("0 lost, 0 doubled", "0 unexplained").  On failure its first
# findings are printed too.
audit_ok() {
  local name=$1
  audit_run "$@"
  check "$name: abacus-audit exit 0" 0 "$AUDIT_RC"
  check_match "$name: the audit finds 0 lost, 0 doubled, 0 unexplained" \
    '^abacus-audit: OK .*; load: [0-9]+ acknowledged, 0 lost, 0 doubled, [0-9]+ unacknowledged but applied, 0 unexplained$' "$AUDIT_LINE"
  [ "$AUDIT_RC" -eq 0 ] || printf '%s\n' "$AUDIT_OUT" | head -n 20 | sed 's/^/     /'
}

# use_load_tool: sets LOAD to tools/abacus-load, building it if needed.
use_load_tool() {
  LOAD=$ROOT/tools/abacus-load
  make -s -C "$ROOT" tools/abacus-load >/dev/null     # up to date, or rebuilt: never a stale one
}

# longest_gap CSV: the longest time, in seconds, between two successful (200)
# attempts in an abacus-load --out-csv file.
longest_gap() {
  awk -F, '$4 == 200 { print $1 }' "$1" | sort -n |
    awk 'NR > 1 && $1 - last > gap { gap = $1 - last } { last = $1 } END { printf "%.2f\n", gap }'
}

# evalsha_calls PORT: top-level EVALSHA calls Redis has counted.
evalsha_calls() {
  redis-cli -p "$1" info commandstats | tr -d '\r' | sed -n 's/^cmdstat_evalsha:calls=\([0-9]*\),.*/\1/p' | grep . || echo 0
}

# raw_http PORT: sends stdin verbatim to 127.0.0.1:PORT, prints the whole
# answer (read until the server closes; 5 s cap).  For framing tests.
raw_http() {
  python3 -c '
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
s.sendall(sys.stdin.buffer.read())
out = b""
try:
    while True:
        b = s.recv(65536)
        if not b:
            break
        out += b
except socket.timeout:
    pass
sys.stdout.buffer.write(out)
' "$1"
}

# frontend_procs DIR: the live processes (zombies aside) of a lighttpd a suite
# started itself, without abacus-stack, and of its workers: all carry
# ABACUS_FRONTEND_DIR=DIR.
frontend_procs() {
  local p
  for p in /proc/[0-9]*; do
    { tr '\0' '\n' <"$p/environ"; } 2>/dev/null | grep -qxF "ABACUS_FRONTEND_DIR=$1" || continue
    grep -qs '^State:[[:space:]]*[ZX]' "$p/status" || echo "${p#/proc/}"
  done
}

# stop_frontend_procs PID DIR: SIGTERM to that lighttpd (it stops its
# workers), a bounded wait, then SIGKILL by pid for whatever of DIR is left,
# and PID reaped.  Not PIDS: lighttpd SIGKILLed by the suite's cleanup would
# leave its workers running, still listening.
stop_frontend_procs() {
  local pid=$1 dir=$2 left
  [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null
  for _ in $(seq 1 100); do [ -z "$(frontend_procs "$dir")" ] && break; sleep 0.1; done
  left=$(frontend_procs "$dir")
  # shellcheck disable=SC2086
  [ -n "$left" ] && kill -KILL $left 2>/dev/null
  for _ in $(seq 1 50); do [ -z "$(frontend_procs "$dir")" ] && break; sleep 0.1; done
  [ -n "$pid" ] && wait "$pid" 2>/dev/null
  return 0
}

# worker_pids PORT: pids of the abacus.fcgi workers of the front end on PORT
# of the current STACK (they carry ABACUS_STACK_DIR; lighttpd and nginx do not
# run as abacus.fcgi).
worker_pids() {
  local dir=$STACK/frontend-$1 p
  for p in /proc/[0-9]*; do
    [ "$(cat "$p/comm" 2>/dev/null)" = abacus.fcgi ] || continue
    { tr '\0' '\n' <"$p/environ"; } 2>/dev/null | grep -qxF "ABACUS_STACK_DIR=$dir" && echo "${p#/proc/}"
  done | sort -n
  return 0
}

# every_worker_adds PORT KEY: concurrent keyed POSTs of +1 through the front
# end on PORT, in rounds (at most 6), until every one of its workers has
# logged a sum_added (each log line names its pid).  Sequential requests would
# all reach the same idle worker; concurrent ones spread.  Fails (and says
# why) if any attempt got anything but a 200 or some worker never answered.
# Adds ADDED to the sum.  With AUDIT_CSV set, its attempts are recorded there.
every_worker_adds() {
  local port=$1 key=$2 log=$STACK/frontend-$1/error.log
  local workers mark round seen missing n out got csv=()
  use_load_tool
  [ -n "${AUDIT_CSV:-}" ] && csv=(--out-csv "$AUDIT_CSV.round")
  workers=$(worker_pids "$port")
  n=$(printf '%s\n' "$workers" | grep -c .)
  ADDED=0
  [ "$n" -gt 0 ] || { echo "every_worker_adds: no worker found on port $port"; return 1; }
  mark=$(wc -c <"$log")
  for round in 1 2 3 4 5 6; do
    [ -n "${AUDIT_CSV:-}" ] && rm -f "$AUDIT_CSV.round"
    out=$("$LOAD" --target "http://127.0.0.1:$port" --requests $((n * 12)) --concurrency $((n * 3)) \
            --idempotency --max-retries 0 --api-key "$key" "${csv[@]}" 2>&1)
    if [ -n "${AUDIT_CSV:-}" ] && [ -s "$AUDIT_CSV.round" ]; then
      [ -s "$AUDIT_CSV" ] || head -n 1 "$AUDIT_CSV.round" >"$AUDIT_CSV"
      tail -n +2 "$AUDIT_CSV.round" >>"$AUDIT_CSV"
    fi
    got=$(printf '%s\n' "$out" | sed -n 's/^succeeded: \([0-9]*\) .*/\1/p')
    [ -n "$got" ] || { echo "every_worker_adds: the load tool did not report: $(printf '%s\n' "$out" | tail -n 3 | tr '\n' ' ')"; return 1; }
    ADDED=$((ADDED + got))
    printf '%s\n' "$out" | grep -q "failed: 0" || { echo "every_worker_adds: not every attempt succeeded: $(printf '%s\n' "$out" | grep -E '^(statuses|succeeded)' | tr '\n' ' ')"; return 1; }
    seen=$(tail -c +$((mark + 1)) "$log" | grep '"event":"sum_added"' | sed -n 's/.*"pid":\([0-9]*\).*/\1/p' | sort -u)
    missing=$(comm -23 <(printf '%s\n' "$workers" | sort) <(printf '%s\n' "$seen" | sort))
    [ -z "$missing" ] && return 0
  done
  echo "every_worker_adds: workers $(echo $missing) of port $port never answered"
  return 1
}
