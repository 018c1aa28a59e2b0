#!/usr/bin/env bash
# What the metrics cost: POST throughput of the release build with metrics and
# with the segment updates compiled out (-DABACUS_NO_METRICS), interleaved,
# medians of ROUNDS runs.  One front end, 4 workers, wrk -t2 -c32.
set -u
. "$(dirname "$0")/../lib.sh"
suite_init metrics-cost
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
make -s -C "$ROOT" build/release/abacus.fcgi build/nometrics/abacus.fcgi >/dev/null

run() { # BIN -> requests/s
  BIN=$1 WORKERS=4 start_stack "$2" ABACUS_RATE_LIMIT_REQUESTS=1000000000 >/dev/null || exit 1
  wrk -t2 -c32 -d"$DURATION" -s "$ROOT/tests/bench/post.lua" "http://127.0.0.1:$P1" -- local-dev-key |
    awk '/^Requests\/sec/ {print int($2)}'
  stop_stack
}
on=(); off=()
for r in $(seq 1 "$ROUNDS"); do
  on+=("$(run "$ROOT/build/release/abacus.fcgi" "on$r")")
  off+=("$(run "$ROOT/build/nometrics/abacus.fcgi" "off$r")")
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
m_on=$(median "${on[@]}"); m_off=$(median "${off[@]}")
echo "POST req/s with metrics:    ${on[*]}  (median $m_on)"
echo "POST req/s without metrics: ${off[*]}  (median $m_off)"
python3 -c "print('metrics cost: %.1f%% of POST throughput' % (100.0 * (1 - $m_on / $m_off)))"
