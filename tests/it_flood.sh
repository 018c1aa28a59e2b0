#!/usr/bin/env bash
# Connection floods and slow clients (docs/OPERATIONS.md, "Hostile clients /
# connection floods"), on one front end of the kind FRONTEND names:
#
# an attacker bound to 127.0.0.2 (tests/flood.py attack) keeps 3,000 slow
# connections going for 20 s — half-sent request heads, bodies trickled a byte
# a second, idle keep-alives — trying again 2-3 s after any of them is refused,
# answered or closed (at most 40,000 attempts), while a legitimate client on
# 127.0.0.1 makes 300 sequential GETs.  With the caps in place (the host
# firewall's per-address cap, conf/firewall/abacus-connlimit.sh; the front
# end's timeouts; nginx's limit_conn) the client sees no error and its p99
# stays within max(5x, +100 ms) of the same run without the attack (+100 ms:
# other suites share the 2 cores); the attacker holds at most the cap, is
# refused beyond it, and its half heads and idle keep-alives are closed by the
# timeouts; afterwards the front end holds no connection of the attacker and
# no more file descriptors than before.  On nginx (and the compose balancer,
# below) the request beyond limit_conn is answered with the API's
# problem+json 429 (Retry-After: 1), not nginx's HTML page.
#
# The front end runs with a connection cap of 512 here (ABACUS_MAX_CONNECTIONS
# of tools/abacus-stack; the configs ship 4,096), so that the attack outnumbers
# it as a flood of ~24,000 sockets would the shipped one: what is tested is
# that the per-address cap, not the size of the front end, keeps the client
# served.  Against 4,096 the same attack left the client served without the
# firewall rule too (lighttpd, by hand: no error, p99 3.6 ms).  Checked by hand
# with the rule left out (`"$FW" add` skipped, every other line as here; two
# runs each), the client-side checks fail, and the attacker-side ones with them:
#   lighttpd: "under attack: every GET answered 200": 3 and 2 GETs timed out
#     at 5 s (a sequential client gets few tries in 20 s of such waits); p99
#     5,002 and 3,940 ms.
#     lighttpd held its 512 connections (trickled bodies, never freed) and its
#     accept queue was full: the attacker had ~1,540 open.
#   nginx: "under attack: every GET answered 200": 8 and 11 of 300 GETs reset
#     or closed unanswered ("512 worker_connections are not enough"); the p99
#     stayed low (those fail at once).  nginx frees what it can — it closes
#     idle keep-alives to accept, limit_conn refuses the trickled bodies — but
#     the half heads hold their connections until the 5 s header timeout.
#
# Needs root and iptables: the per-address cap is the firewall's.  Without
# them the suite fails (it does not skip).  The rule is scoped to the suite's
# own port and removed by the cleanup, also when a check fails.
set -u
. "$(dirname "$0")/lib.sh"
suite_init flood
KEY=flood-key-$RANDOM
FW=$ROOT/conf/firewall/abacus-connlimit.sh
FLOOD=$ROOT/tests/flood.py
ATTACKER_ADDR=127.0.0.2
CAP=128          # per-address connections (the firewall rule, ABACUS_CONNLIMIT)
MAXCONN=512      # the front end's connections at once, for this suite (below)
PERIP=32         # nginx: requests in flight per address (conf/nginx.conf limit_conn)
READ_IDLE=5      # lighttpd server.max-read-idle; nginx client_header_timeout
KEEPALIVE_IDLE=10  # lighttpd server.max-keep-alive-idle; nginx keepalive_timeout
FDS=8192         # lighttpd server.max-fds; nginx worker_rlimit_nofile
SLACK=3          # seconds: lighttpd checks its timeouts once a second

# jget FILE PATH: a member of the JSON object in FILE ("a.b" for nested).
jget() {
  python3 -c '
import json, sys
v = json.load(open(sys.argv[1]))
for k in sys.argv[2].split("."):
    v = v.get(k, 0) if isinstance(v, dict) else 0
print(json.dumps(v) if isinstance(v, (dict, list)) else v)' "$1" "$2" 2>/dev/null || echo "?"
}
# holds EXPR: a Python expression over numbers is true.
holds() { python3 -c "import sys; sys.exit(0 if ($1) else 1)"; }

# ---- preconditions: root and a working iptables, or the suite fails ----
if [ "$(id -u)" -ne 0 ] || ! command -v iptables >/dev/null || ! iptables -w -S INPUT >/dev/null 2>&1; then
  echo "FAIL this suite needs root and a working iptables (the per-address cap is a firewall rule);"
  echo "     install iptables (tools/deps.sh test) and run it as root: it does not skip"
  FAILED=$((FAILED + 1))
  suite_end
fi

WORKERS=3 start_stack flood ABACUS_API_KEYS="$KEY" ABACUS_RATE_LIMIT_ENABLED=false \
  ABACUS_MAX_CONNECTIONS="$MAXCONN" || exit 1
PORT=$P1
FRONT_PID=$(cat "$STACK/frontend-$PORT/frontend.pid")
# The process that holds the client connections: lighttpd, or nginx's worker.
if [ "$FRONTEND" = nginx ]; then
  CONN_PID=$(pgrep -P "$FRONT_PID" | head -n 1)
else
  CONN_PID=$FRONT_PID
fi
fds() { ls "/proc/$CONN_PID/fd" 2>/dev/null | wc -l; }
# attacker_conns [STATE...]: connections from the attacker's address the front
# end holds (established ones; with "left": in any state but TIME-WAIT, which
# is the kernel's, not the front end's).
attacker_conns() {
  local states=(state established)
  [ "${1:-}" = left ] && states=(state connected exclude time-wait)
  ss -Htn "${states[@]}" "( sport = :$PORT and dst $ATTACKER_ADDR )" 2>/dev/null | wc -l
}
no_attacker_conns() { [ "$(attacker_conns left)" -eq 0 ]; }

check "$FRONTEND: its process may open $FDS files (max-fds / worker_rlimit_nofile)" "$FDS" \
  "$(awk '/^Max open files/ { print $4 }' "/proc/$CONN_PID/limits" 2>/dev/null)"
# The cap it runs with: lighttpd's as it parsed it (-p, with the running
# process's environment), nginx's in the configuration it was started with.
if [ "$FRONTEND" = nginx ]; then
  maxconn_now=$(sed -n 's/^[[:space:]]*worker_connections \([0-9]*\);.*/\1/p' "$STACK/frontend-$PORT/nginx.conf")
else
  # The file it was started with (-f): where the stack put it (staged when it runs as another user).
  conf_file=$(tr '\0' '\n' <"/proc/$FRONT_PID/cmdline" | sed -n '/^-f$/{n;p}')
  maxconn_now=$(xargs -0 -a "/proc/$FRONT_PID/environ" sh -c 'env -i "$@" lighttpd -p -f "$0" 2>&1' \
    "$conf_file" | sed -n 's/^[[:space:]]*server.max-connections[[:space:]]*=[[:space:]]*\([0-9]*\).*/\1/p')
fi
check "$FRONTEND: runs with a cap of $MAXCONN connections (ABACUS_MAX_CONNECTIONS)" "$MAXCONN" "$maxconn_now"

# ---- the per-address cap, on this suite's port only ----
fw_remove() { "$FW" remove "$PORT" >/dev/null 2>&1; }
CLEANUP_HOOKS+=(fw_remove)
ABACUS_CONNLIMIT=$CAP "$FW" add "$PORT" >"$TMP/fw.out" 2>&1
check "firewall: the per-address cap is in place on port $PORT" 0 "$("$FW" status "$PORT" >/dev/null 2>&1; echo $?)"

# client OUT [COUNT]: the legitimate client's sequential GETs, as JSON in OUT.
client() { python3 "$FLOOD" client --port "$PORT" --key "$KEY" --count "${2:-300}" >"$1" 2>&1; }

# ---- without an attack ----
client "$TMP/base.json"
check "no attack: every GET answered 200" 0 "$(jget "$TMP/base.json" errors)"
base_p99=$(jget "$TMP/base.json" p99)
bound=$(python3 -c "print(round(max(5 * $base_p99, $base_p99 + 100), 1))")
base_fds=$(fds)

# ---- under attack ----
python3 "$FLOOD" attack --port "$PORT" --source "$ATTACKER_ADDR" --connections 3000 \
  --duration 20 --budget 40000 >"$TMP/attack.json" 2>"$TMP/attack.err" &
attacker=$!
PIDS+=("$attacker")
sleep 2                          # the 3,000 connects go out at once
client "$TMP/attack-client.json"
held_now=$(attacker_conns)
wait "$attacker"                 # bounded: --duration 20
A=$TMP/attack.json
[ -s "$A" ] || echo "attacker: $(tail -n 3 "$TMP/attack.err")"

check "under attack: every GET answered 200 ($(jget "$TMP/attack-client.json" error_kinds))" 0 "$(jget "$TMP/attack-client.json" errors)"
p99=$(jget "$TMP/attack-client.json" p99)
check_true "under attack: GET p99 $p99 ms within max(5x, +100 ms) of $base_p99 ms ($bound ms)" holds "$p99 <= $bound"
check_true "the attack was made: >= 3000 connection attempts ($(jget "$A" attempts))" holds "$(jget "$A" attempts) >= 3000"
check_true "attacker: connections beyond the cap refused ($(jget "$A" refused) refusals)" holds "$(jget "$A" refused) > 0"
check_true "attacker: at most $CAP connections open at once, as it saw them ($(jget "$A" peak_open), +8 for its own lag)" \
  holds "$(jget "$A" peak_open) <= $CAP + 8"
# +4: the kernel's count behind connlimit (nf_conncount) is not exact under a
# SYN flood on 2 cores: 129 was seen once (nginx; the cause not pinned down).
# What matters here is the bound it holds, well below MAXCONN.
check_true "front end: at most $CAP connections from $ATTACKER_ADDR mid-attack ($held_now, +4 for the kernel's count)" \
  holds "$held_now <= $CAP + 4"
check_true "half heads closed within $READ_IDLE s (+$SLACK): longest open $(jget "$A" half_max_age) s" \
  holds "0 < $(jget "$A" closed_by_server.half) and $(jget "$A" half_max_age) <= $READ_IDLE + $SLACK"
check_true "idle keep-alives closed within $KEEPALIVE_IDLE s (+$SLACK): longest open $(jget "$A" idle_max_age) s" \
  holds "0 < $(jget "$A" closed_by_server.idle) and $(jget "$A" idle_max_age) <= $KEEPALIVE_IDLE + $SLACK"
if [ "$FRONTEND" = nginx ]; then
  # lighttpd has no such cap: trickled bodies are bounded by the firewall's alone.
  check_true "nginx: at most $PERIP trickled bodies held per address ($(jget "$A" peak_held_trickles), +4 for the attacker's own lag)" \
    holds "$(jget "$A" peak_held_trickles) <= $PERIP + 4"
  check_true "nginx: trickled bodies beyond it refused with 429 ($(jget "$A" 'answered.trickle 429'))" \
    holds "$(jget "$A" 'answered.trickle 429') > 0"
fi

# ---- after the attack ----
# (lighttpd lingers up to 5 s on a connection it closes)
wait_until 15 no_attacker_conns
check "after: connections from $ATTACKER_ADDR the front end still holds" 0 "$(attacker_conns left)"
fds_back() { [ "$(fds)" -le $((base_fds + 2)) ]; }
wait_until 10 fds_back
check_true "after: open fds $(fds) back to the baseline $base_fds (+2)" fds_back
client "$TMP/after.json" 100
check "after: every GET answered 200" 0 "$(jget "$TMP/after.json" errors)"
after_p99=$(jget "$TMP/after.json" p99)
check_true "after: GET p99 $after_p99 ms within $bound ms" holds "$after_p99 <= $bound"

# overcap_checks NAME FILE: the answer flood.py overcap got for the request
# beyond limit_conn is the API's problem+json (docs/API.md, "Errors"), not
# nginx's HTML page.
overcap_checks() {
  local name=$1 f=$2
  check "$name: $PERIP trickled bodies from 127.0.0.3 held while the next request is refused" "$PERIP" "$(jget "$f" held)"
  check "$name: request $((PERIP + 1)) in flight from one address: status" 429 "$(jget "$f" status)"
  check "$name: ... Content-Type" application/problem+json "$(jget "$f" headers.content-type)"
  check "$name: ... Retry-After" 1 "$(jget "$f" headers.retry-after)"
  check "$name: ... Cache-Control" no-store "$(jget "$f" headers.cache-control)"
  check "$name: ... problem type" urn:abacus:problem:too-many-connections "$(jget "$f" problem.type)"
  check "$name: ... problem title and status" "Too many connections/429" "$(jget "$f" problem.title)/$(jget "$f" problem.status)"
  check "$name: ... problem members (the workers' shape)" "detail status title type" \
    "$(python3 -c 'import json, sys; print(" ".join(sorted(json.load(open(sys.argv[1]))["problem"] or {})))' "$f" 2>/dev/null)"
}
if [ "$FRONTEND" = nginx ]; then
  python3 "$FLOOD" overcap --port "$PORT" --source 127.0.0.3 --hold "$PERIP" >"$TMP/overcap.json" 2>&1
  overcap_checks "nginx" "$TMP/overcap.json"
fi

echo "measured: $FRONTEND: legitimate GET p99 $base_p99 ms without attack, $p99 ms under attack" \
  "(p50 $(jget "$TMP/base.json" p50) / $(jget "$TMP/attack-client.json" p50) ms, max $(jget "$TMP/attack-client.json" max) ms)"
echo "measured: $FRONTEND: attacker on $ATTACKER_ADDR: $(jget "$A" attempts) attempts, $(jget "$A" refused) refused," \
  "at most $(jget "$A" peak_open) open, half heads closed after <= $(jget "$A" half_max_age) s," \
  "idle keep-alives after <= $(jget "$A" idle_max_age) s, answers $(jget "$A" answered)"

fw_remove
check "firewall: the rule is removed" 1 "$("$FW" status "$PORT" >/dev/null 2>&1; echo $?)"

# ---- the compose balancer (docker/nginx-lb.conf) in front of lighttpd ----
# Its per-address cap on requests in flight, on the host: the same file,
# pointed at this front end, on a port of its own.
if [ "$FRONTEND" = lighttpd ]; then
  LB=$TMP/lb
  LBPORT=$(free_port)
  mkdir -p "$LB/tmp"
  chmod 1777 "$LB/tmp"
  sed -e "s|server app:8000|server 127.0.0.1:$PORT|" -e "s|listen 8000;|listen 127.0.0.1:$LBPORT;|" \
      -e "s|^http {|http {\n    client_body_temp_path $LB/tmp/body; proxy_temp_path $LB/tmp/proxy;\n    fastcgi_temp_path $LB/tmp/fcgi; uwsgi_temp_path $LB/tmp/uwsgi; scgi_temp_path $LB/tmp/scgi;|" \
      "$ROOT/docker/nginx-lb.conf" >"$LB/nginx.conf"
  nginx -c "$LB/nginx.conf" -p "$LB" -e "$LB/error.log" -g "daemon off; pid $LB/nginx.pid;" >>"$LB/error.log" 2>&1 &
  lb_master=$!
  # A killed nginx master leaves its worker running: stop it gracefully, by pid.
  lb_stop() {
    local kids i
    kids=$(pgrep -P "$lb_master")
    kill -TERM "$lb_master" 2>/dev/null
    for i in $(seq 1 50); do kill -0 "$lb_master" 2>/dev/null || break; sleep 0.1; done
    # shellcheck disable=SC2086
    kill -KILL "$lb_master" $kids 2>/dev/null
    return 0
  }
  CLEANUP_HOOKS+=(lb_stop)
  lb_up() { curl -fs -o /dev/null --max-time 1 "http://127.0.0.1:$LBPORT/healthz"; }
  check_true "balancer: answers through lighttpd" wait_until 5 lb_up
  python3 "$FLOOD" overcap --port "$LBPORT" --source 127.0.0.3 --hold "$PERIP" >"$TMP/lb-overcap.json" 2>&1
  overcap_checks "balancer" "$TMP/lb-overcap.json"
  # 15 s: longer than its keep-alive timeout (10 s) + the slack, so an idle
  # keep-alive it did not close would show as open longer than that.
  python3 "$FLOOD" attack --port "$LBPORT" --source "$ATTACKER_ADDR" --connections 200 \
    --duration 15 --budget 4000 >"$TMP/lb-attack.json" 2>"$TMP/lb-attack.err" &
  attacker=$!
  PIDS+=("$attacker")
  sleep 2
  req GET "http://127.0.0.1:$LBPORT/abacus/sum" -H "X-API-Key: $KEY"
  check "balancer: a client on 127.0.0.1 is served during the attack" 200 "$STATUS"
  wait "$attacker"
  B=$TMP/lb-attack.json
  [ -s "$B" ] || echo "balancer attacker: $(tail -n 3 "$TMP/lb-attack.err")"
  check_true "balancer: at most $PERIP trickled bodies held per address ($(jget "$B" peak_held_trickles), +4 for the attacker's own lag)" \
    holds "$(jget "$B" peak_held_trickles) <= $PERIP + 4"
  check_true "balancer: trickled bodies beyond it refused with 429 ($(jget "$B" 'answered.trickle 429'))" \
    holds "$(jget "$B" 'answered.trickle 429') > 0"
  check_true "balancer: half heads closed within $READ_IDLE s (+$SLACK): longest open $(jget "$B" half_max_age) s" \
    holds "0 < $(jget "$B" closed_by_server.half) and $(jget "$B" half_max_age) <= $READ_IDLE + $SLACK"
  check_true "balancer: idle keep-alives closed within $KEEPALIVE_IDLE s (+$SLACK): longest open $(jget "$B" idle_max_age) s" \
    holds "0 < $(jget "$B" closed_by_server.idle) and $(jget "$B" idle_max_age) <= $KEEPALIVE_IDLE + $SLACK"
  echo "measured: balancer: attacker on $ATTACKER_ADDR: $(jget "$B" attempts) attempts," \
    "half heads closed after <= $(jget "$B" half_max_age) s, idle keep-alives after <= $(jget "$B" idle_max_age) s, answers $(jget "$B" answered)"
  lb_stop
fi
stop_stack
# Every process of the front end, nginx's too (its title hides its environment).
leftovers() {
  local p dir=$STACK/frontend-$PORT
  for p in /proc/[0-9]*; do
    { { tr '\0' '\n' <"$p/environ"; } 2>/dev/null | grep -qxF "ABACUS_STACK_DIR=$dir" ||
      { tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null | grep -qF -- "-c $dir/nginx.conf "; } && echo "${p#/proc/}"
  done
  return 0
}
check "stop leaves no process of the front end" "" "$(leftovers)"
suite_end
