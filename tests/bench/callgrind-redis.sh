#!/usr/bin/env bash
# Redis instructions per request, deterministic (valgrind --tool=callgrind over
# redis-server's whole event loop): (run of 1,200 requests - run of 200) / 1,000,
# so start-up and shutdown cancel out.  One front end with one worker (release
# build), `appendonly no`, limiter on, abacus-load --concurrency 1.
#
#   tests/bench/callgrind-redis.sh [VAR=value...]    e.g. ABACUS_LEDGER_RETENTION_SECONDS=0
# Prints "POST <n> GET <n>" instructions per request.
set -u
. "$(dirname "$0")/../lib.sh"
suite_init callgrind
use_load_tool
KEY=cg-key
# run MODE N: Redis's total instructions for N requests of MODE (post|get).
run() {
  local mode=$1 n=$2 port pid out args=()
  port=$(free_port)
  valgrind --tool=callgrind --callgrind-out-file="$TMP/cg.$mode.$n" \
    redis-server --port "$port" --save '' --appendonly no --daemonize no >"$TMP/vg.$mode.$n.log" 2>&1 &
  pid=$!
  wait_until 60 redis-cli -p "$port" ping || { echo "redis under valgrind did not start" >&2; return 1; }
  WORKERS=1 BIN=$ROOT/build/release/abacus.fcgi start_stack "cg$mode$n" REDIS_URL="redis://127.0.0.1:$port/0" \
    ABACUS_API_KEYS=$KEY ABACUS_RATE_LIMIT_REQUESTS=1000000000 ABACUS_REDIS_TIMEOUT_MS=5000 "${EXTRA[@]}" >/dev/null || return 1
  [ "$mode" = get ] && args=(--get-ratio 1)
  "$LOAD" --target "http://127.0.0.1:$P1" --requests "$n" --concurrency 1 --idempotency --api-key "$KEY" \
    --timeout 30 "${args[@]}" >/dev/null 2>&1
  stop_stack
  redis-cli -p "$port" shutdown nosave >/dev/null 2>&1
  wait "$pid"
  callgrind_annotate "$TMP/cg.$mode.$n" 2>/dev/null | sed -n 's/^\([0-9,]*\) .*PROGRAM TOTALS.*/\1/p' | tr -d ,
}
EXTRA=("$@")
for mode in post get; do
  small=$(run "$mode" 200) big=$(run "$mode" 1200)
  printf '%s %s ' "$(echo "$mode" | tr a-z A-Z)" $(( (big - small) / 1000 ))
done
echo
stop_everything
