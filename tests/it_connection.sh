#!/usr/bin/env bash
# The connection to Redis under trouble (docs/OPERATIONS.md, "Reconnecting"):
# a slow resolver never holds a request past connect + command timeout (the
# last good address is used), the backoff grows while Redis accepts
# connections but answers nothing and is reset only by an answered command,
# and after a Redis restart the workers' attempts are spread (jitter).
set -u
. "$(dirname "$0")/lib.sh"
suite_init connection
KEY=conn-key-$RANDOM

ctl() {
  python3 -c '
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
s.sendall((" ".join(sys.argv[2:]) + "\n").encode())
print(s.makefile().readline().strip())' "$PC" "$@"
}
# timed PORT PATH: sets STATUS and SECS (curl's time_total).
timed() {
  local out
  out=$(curl -s -o /dev/null -w '%{http_code} %{time_total}' --max-time 20 "http://127.0.0.1:$1$2" -H "X-API-Key: $KEY")
  STATUS=${out% *}; SECS=${out#* }
}
below() { python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) < float(sys.argv[2]) else 1)' "$1" "$2"; }
# backoffs LOG PID: the backoff_ms of that worker's redis_backoff events, in order.
backoffs() { grep '"event":"redis_backoff"' "$1" | grep "\"pid\":$2," | sed -n 's/.*"backoff_ms":\([0-9]*\).*/\1/p' | tr '\n' ' '; }

# ---- a slow resolver: REDIS_URL names a host, lookups take 5 s ----
# (the shim and its flag live in $TMP: workers running as nobody reach them)
cp "$ROOT/build/test/slow_dns.so" "$TMP/slow_dns.so"
read -r RP _ < <(start_redis dns) || exit 1
WORKERS=1 start_stack dns REDIS_URL="redis://localhost:$RP/0" ABACUS_API_KEYS="$KEY" \
  LD_PRELOAD="$TMP/slow_dns.so" ABACUS_TEST_SLOW_DNS_FILE="$TMP/slow-dns" \
  ASAN_OPTIONS=verify_asan_link_order=0 || exit 1
timed "$P1" /abacus/sum
check "a host name in REDIS_URL: GET 200" 200 "$STATUS"
touch "$TMP/slow-dns"
redis-cli -p "$RP" client kill type normal >/dev/null   # every worker must reconnect (and resolve)
timed "$P1" /abacus/sum
check "slow resolver: GET still 200 (the last good address)" 200 "$STATUS"
# connect 500 + command 1000 ms; a lookup waited for would take 5 s.
check_true "slow resolver: GET answered within connect + command timeout ($SECS s)" below "$SECS" 1.5
check_match "slow resolver: the stale address is logged" '"event":"dns_stale","request_id":null,"pid":[0-9]+,"host":"localhost"' \
  "$(cat "$STACK/frontend-$P1/error.log")"
# A new worker has no address yet: it answers 503 in time instead of hanging.
victim=$(worker_pids "$P2")
kill -KILL "$victim"
respawned() { [ -n "$(worker_pids "$P2")" ] && [ "$(worker_pids "$P2")" != "$victim" ]; }
wait_until 10 respawned
timed "$P2" /readyz
check "slow resolver, no address known: /readyz 503" 503 "$STATUS"
check_true "slow resolver, no address known: /readyz within connect + command timeout ($SECS s)" below "$SECS" 1.5
timed "$P2" /abacus/sum
check "slow resolver, no address known: GET 503" 503 "$STATUS"
check_true "slow resolver, no address known: GET within connect + command timeout ($SECS s)" below "$SECS" 1.5
rm -f "$TMP/slow-dns"
ready() { timed "$P2" /readyz; [ "$STATUS" = 200 ]; }
check_true "resolver fast again: /readyz 200" wait_until 5 ready
stop_stack

# ---- Redis accepts connections but answers nothing: the backoff grows ----
read -r RP2 _ < <(start_redis quiet) || exit 1
PX=$(free_port); PC=$(free_port)
python3 "$ROOT/tests/faultproxy.py" "$PX" "$RP2" "$PC" >"$TMP/proxy.log" 2>&1 &
PIDS+=("$!")
wait_until 5 ctl STATUS || { echo "the fault proxy did not start"; exit 1; }
WORKERS=1 start_stack quiet REDIS_URL="redis://127.0.0.1:$PX/0" ABACUS_API_KEYS="$KEY" || exit 1
LOG=$STACK/frontend-$P1/error.log
W=$(worker_pids "$P1")
timed "$P1" /abacus/sum
check "through the proxy: GET 200" 200 "$STATUS"
for i in 1 2 3 4; do ctl ARM hold script:get 1 2000 >/dev/null; done
# Each GET: the connection opens, the script's answer never comes in time.
# (A GET in the backoff pause is refused without connecting: wait it out.)
held=0
for i in $(seq 1 30); do
  timed "$P1" /abacus/sum
  held=$(ctl STATUS | sed -n 's/.*armed=\([0-9]*\).*/\1/p')
  [ "$held" = 0 ] && break
  sleep 0.3
done
check "four scripts left unanswered" 0 "$held"
check "connected but unanswered: the backoff doubles (50 100 200 ms), not reset by the connects" \
  "50 100 200 " "$(backoffs "$LOG" "$W")"
ok=0
for i in $(seq 1 20); do timed "$P1" /abacus/sum; [ "$STATUS" = 200 ] && { ok=1; break; }; sleep 0.2; done
check "answered again: GET 200" 1 "$ok"
ctl ARM hold script:get 1 2000 >/dev/null; ctl ARM hold script:get 1 2000 >/dev/null
for i in $(seq 1 30); do
  timed "$P1" /abacus/sum
  [ "$(ctl STATUS | sed -n 's/.*armed=\([0-9]*\).*/\1/p')" = 0 ] && break
  sleep 0.3
done
check "after an answered command the backoff starts again at 50 ms" \
  "50 100 200 50 " "$(backoffs "$LOG" "$W")"
stop_stack

# ---- one deadline per request, across the connection's setup ----
# The setup pipeline (SELECT, three SCRIPT LOADs) answers slowly: 0.9 s per
# SCRIPT LOAD.  Each read alone is within the 1 s command timeout; together
# they are not.  A GET must give up at connect + command timeout (1.5 s), not
# after 2.7 s of setup.
WORKERS=1 start_stack setup REDIS_URL="redis://127.0.0.1:$PX/0" ABACUS_API_KEYS="$KEY" || exit 1
timed "$P1" /abacus/sum
check "setup deadline: GET 200 first" 200 "$STATUS"
ctl KILL >/dev/null                 # the next request reconnects (and sets up)
for i in 1 2 3; do ctl ARM hold cmd:SCRIPT 1 900 >/dev/null; done
timed "$P1" /abacus/sum
check "setup deadline: a slow setup answers 503" 503 "$STATUS"
check_true "setup deadline: ... within the request's deadline, not after the whole setup ($SECS s)" below "$SECS" 2.3
stop_stack

# ---- a Redis restart under 8 workers x 2 front ends: attempts spread ----
# Redis first hangs (every worker's request times out, so the load reaches
# all 16 workers, and each schedules its next attempt), then is killed and
# started again.
read -r RP3 rpid3 < <(start_redis restart) || exit 1
WORKERS=8 start_stack restart REDIS_URL="redis://127.0.0.1:$RP3/0" ABACUS_API_KEYS="$KEY" \
  ABACUS_REDIS_TIMEOUT_MS=300 ABACUS_REDIS_CONNECT_TIMEOUT_MS=200 \
  ABACUS_RATE_LIMIT_REQUESTS=100000000 || exit 1
use_load_tool
"$LOAD" --target1 "http://127.0.0.1:$P1" --target2 "http://127.0.0.1:$P2" --requests 400 --concurrency 16 \
  --get-ratio 1 --api-key "$KEY" >/dev/null 2>&1
all=$( (worker_pids "$P1"; worker_pids "$P2") | sort -u)
kill -STOP "$rpid3"
"$LOAD" --target1 "http://127.0.0.1:$P1" --target2 "http://127.0.0.1:$P2" --requests 100000 --rate 200 \
  --concurrency 32 --get-ratio 1 --api-key "$KEY" --timeout 5 >/dev/null 2>&1 &
lp=$!
sleep 4
kill -KILL "$rpid3"; kill -CONT "$rpid3" 2>/dev/null
wait_until 5 sh -c "! redis-cli -p $RP3 ping >/dev/null 2>&1"
redis-server "$ROOT/conf/redis.conf" --port "$RP3" --dir "$TMP/redis-restart" --daemonize yes \
  --pidfile "$TMP/redis-restart/redis.pid" --logfile "$TMP/redis-restart/redis.log" >/dev/null
wait_until 5 redis_ping "$RP3" && cat "$TMP/redis-restart/redis.pid" >>"$TMP/pids"
sleep 2
kill "$lp" 2>/dev/null; wait "$lp" 2>/dev/null
events=$(cat "$STACK"/frontend-*/error.log | grep '"event":"redis_backoff"')
scheduled=$(for w in $all; do printf '%s\n' "$events" | grep -q "\"pid\":$w," && echo "$w"; done | wc -l)
first_step=$(printf '%s\n' "$events" | grep -c '"backoff_ms":50}')
distinct=$(printf '%s\n' "$events" | grep '"backoff_ms":50}' | sed -n 's/.*"retry_in_ms":\([0-9]*\).*/\1/p' | sort -u | wc -l)
echo "measured: Redis hung then restarted under 16 workers: $scheduled workers scheduled retries; their $first_step first retries (50 ms step) waited $distinct different times (25-50 ms)"
check "every one of the 16 workers scheduled its retries" 16 "$scheduled"
check_true "first retries are spread, not in step ($distinct distinct of $first_step)" test "$distinct" -ge 8
workers_ok=0
AUDIT_CSV=$TMP/sent.csv
for p in $P1 $P2; do every_worker_adds "$p" "$KEY" && workers_ok=$((workers_ok + 1)); done
check "after the restart every worker serves" 2 "$workers_ok"
audit_ok "Redis hung, killed and restarted under 16 workers" "http://127.0.0.1:$P1" "$KEY" "$AUDIT_CSV"
suite_end
