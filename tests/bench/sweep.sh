#!/usr/bin/env bash
# The sweep behind the default ABACUS_WORKERS and the plot: requests/s and p99
# per workers per front end x total connections, two front ends, release build,
# Redis as deployed, for abacus POST and GET and the one-round-trip ceilings
# (tests/bench/hello.c + one EVALSHA of `return 1`, GET requests; the same with a
# script doing one INCR, POST requests: a POST's ceiling).  One DURATION (5s) wrk run per cell;
# output to stdout and build/bench/sweep.txt, lines "what workers conns req/s p99_ms".
set -u
. "$(dirname "$0")/../lib.sh"
suite_init sweep
DURATION=${DURATION:-5s}
OUT=$ROOT/build/bench
mkdir -p "$OUT"
read -r RP _ < <(start_redis sweep --appendonly yes)
: >"$OUT/sweep.txt"
# measure WHAT SCRIPT WORKERS CONNS: one cell, both front ends of the current stack.
measure() {
  local half=$(($4 / 2))
  wrk -t1 -c"$half" -d"$DURATION" --latency -s "$ROOT/tests/bench/$2" "http://127.0.0.1:$P1" -- bench-key >"$TMP/a" 2>&1 &
  wrk -t1 -c"$half" -d"$DURATION" --latency -s "$ROOT/tests/bench/$2" "http://127.0.0.1:$P2" -- bench-key >"$TMP/b" 2>&1
  wait
  python3 - "$1" "$3" "$4" "$TMP/a" "$TMP/b" <<'PY' | tee -a "$OUT/sweep.txt"
import re, sys
what, w, c = sys.argv[1], sys.argv[2], sys.argv[3]
def parse(p):
    t = open(p).read()
    m = re.search(r'^\s+99%\s+([0-9.]+)(us|ms|s)\s*$', t, re.M)
    return float(re.search(r'Requests/sec:\s+([0-9.]+)', t).group(1)), float(m.group(1)) * {'us': .001, 'ms': 1, 's': 1000}[m.group(2)]
a, b = parse(sys.argv[4]), parse(sys.argv[5])
print("%s %s %s %.0f %.2f" % (what, w, c, a[0] + b[0], max(a[1], b[1])))
PY
}

for w in ${SWEEP_WORKERS:-1 2 4 8 16}; do
  BIN=$ROOT/build/release/abacus.fcgi WORKERS=$w start_stack "w$w" REDIS_URL="redis://127.0.0.1:$RP/0" \
    ABACUS_API_KEYS=bench-key ABACUS_RATE_LIMIT_REQUESTS=1000000000 >/dev/null || exit 1
  for c in ${SWEEP_CONNS:-8 32 128}; do
    measure post post.lua "$w" "$c"
    measure get get.lua "$w" "$c"
  done
  stop_stack
  BIN=$ROOT/build/release/bench-hello WORKERS=$w start_stack "c$w" REDIS_URL="redis://127.0.0.1:$RP/0" \
    BENCH_EVALSHA=1 >/dev/null || exit 1
  for c in ${SWEEP_CONNS:-8 32 128}; do measure ceiling get.lua "$w" "$c"; done
  stop_stack
  BIN=$ROOT/build/release/bench-hello WORKERS=$w start_stack "d$w" REDIS_URL="redis://127.0.0.1:$RP/0" \
    BENCH_EVALSHA=write >/dev/null || exit 1
  for c in ${SWEEP_CONNS:-8 32 128}; do measure ceiling_write post.lua "$w" "$c"; done
  stop_stack
done
