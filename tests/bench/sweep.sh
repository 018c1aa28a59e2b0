#!/usr/bin/env bash
# The sweep behind the default ABACUS_WORKERS: abacus POST throughput and p99
# for workers per front end x total connections, two front ends, release
# build, Redis as deployed.  One DURATION (5s) wrk run per cell; output to
# stdout and build/bench/sweep.txt ("workers conns req/s p99_ms" lines).
set -u
. "$(dirname "$0")/../lib.sh"
suite_init sweep
DURATION=${DURATION:-5s}
OUT=$ROOT/build/bench
mkdir -p "$OUT"
read -r RP _ < <(start_redis sweep --appendonly yes)
: >"$OUT/sweep.txt"
for w in ${SWEEP_WORKERS:-1 2 4 8 16}; do
  BIN=$ROOT/build/release/abacus.fcgi WORKERS=$w start_stack "w$w" REDIS_URL="redis://127.0.0.1:$RP/0" \
    ABACUS_API_KEYS=bench-key ABACUS_RATE_LIMIT_REQUESTS=1000000000 >/dev/null || exit 1
  for c in ${SWEEP_CONNS:-8 32 128}; do
    half=$((c / 2))
    wrk -t1 -c"$half" -d"$DURATION" --latency -s "$ROOT/tests/bench/post.lua" "http://127.0.0.1:$P1" -- bench-key >"$TMP/a" 2>&1 &
    wrk -t1 -c"$half" -d"$DURATION" --latency -s "$ROOT/tests/bench/post.lua" "http://127.0.0.1:$P2" -- bench-key >"$TMP/b" 2>&1
    wait
    python3 - "$w" "$c" "$TMP/a" "$TMP/b" <<'PY' | tee -a "$OUT/sweep.txt"
import re, sys
w, c = sys.argv[1], sys.argv[2]
def parse(p):
    t = open(p).read()
    m = re.search(r'^\s+99%\s+([0-9.]+)(us|ms|s)\s*$', t, re.M)
    return float(re.search(r'Requests/sec:\s+([0-9.]+)', t).group(1)), float(m.group(1)) * {'us': .001, 'ms': 1, 's': 1000}[m.group(2)]
a, b = parse(sys.argv[3]), parse(sys.argv[4])
print("%s %s %.0f %.2f" % (w, c, a[0] + b[0], max(a[1], b[1])))
PY
  done
  stop_stack
done
