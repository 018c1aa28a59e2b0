#!/usr/bin/env bash
# make bench: abacus against its ceilings, measured in one run, interleaved.
#
#   abacus      POST /abacus/number (fresh Idempotency-Key each) and GET /abacus/sum
#   named sums  the same on 64 named sums, the names in turn (issue 19):
#               POST /abacus/sums/{name}/number and GET /abacus/sums/{name},
#               judged against the same ceilings as the two rows above
#   hello       a trivial FastCGI worker behind the same lighttpd: the web tier's ceiling
#   hello+redis the same worker doing one EVALSHA of a trivial script per request:
#               the ceiling for anything needing one Redis round trip; measured
#               with GET requests and with the very POST requests abacus gets
#   hello+write the same with a script doing one INCR (POST requests): the
#               ceiling for anything needing one durable write
#   redis-bench redis-benchmark running that EVALSHA: Redis's own ceiling
#   noledger    abacus with ABACUS_LEDGER_RETENTION_SECONDS=0: what the ledger costs a POST
#   flood       abacus with a real limit (20,000 an hour per key): POSTs spread
#               over 64 keys, alone and while one more caller, long over its
#               limit, floods 429s at full speed (issue 18: what the flood costs
#               the others, and Redis calls per refused request)
#
# Two front ends with 4 workers each, release build; wrk: one process per front
# end, 16 connections each (32 in all).  Medians of ROUNDS (5) rounds.  Results go
# to stdout and build/bench/results-<appendfsync>.txt.
#
# Settings: ROUNDS (5), DURATION (10s), CONNS (16 per front end), WORKERS (4),
# ROWS (the rows to measure, by key, e.g. ROWS="sums_post hwrite_post sums_get
# hredis" for the named sums and their ceilings; default: all of them).
set -u
. "$(dirname "$0")/../lib.sh"
suite_init bench
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-16}
BENCH_WORKERS=${WORKERS:-4}
OUT=$ROOT/build/bench
mkdir -p "$OUT"
REL=$ROOT/build/release
KEY=bench-key

# Redis as deployed (conf/redis.conf: appendfsync always); BENCH_APPENDFSYNC=everysec to compare.
# No automatic AOF rewrite: the AOF grows by ~20 MB a round, and a rewrite (a
# fork writing the whole data set) would land in whichever row runs then.
FSYNC=${BENCH_APPENDFSYNC:-always}
read -r RP RPID < <(start_redis bench --appendonly yes --appendfsync "$FSYNC" --auto-aof-rewrite-percentage 0)

# start NAME BIN [VAR=value...]: a two-front-end stack on the shared Redis.
declare -A PORTS
start() {
  local name=$1 bin=$2; shift 2
  BIN=$bin WORKERS=$BENCH_WORKERS start_stack "$name" REDIS_URL="redis://127.0.0.1:$RP/0" \
    ABACUS_API_KEYS=$KEY ${BENCH_LIMIT_SETTINGS:-ABACUS_RATE_LIMIT_REQUESTS=1000000000} "$@" >/dev/null || exit 1
  PORTS[$name]="$P1 $P2"
  eval "STACK_$name=\$STACK"
}
start abacus "$REL/abacus.fcgi"
start noledger "$REL/abacus.fcgi" ABACUS_LEDGER_RETENTION_SECONDS=0
start hello "$REL/bench-hello"
start hredis "$REL/bench-hello" BENCH_EVALSHA=1
start hwrite "$REL/bench-hello" BENCH_EVALSHA=write
FLOOD_KEYS=$(for i in $(seq 1 64); do printf 'bench-many-%02d,' "$i"; done)
FLOOD_KEYS=${FLOOD_KEYS%,}
BENCH_LIMIT_SETTINGS="ABACUS_RATE_LIMIT_REQUESTS=20000 ABACUS_RATE_LIMIT_WINDOW_SECONDS=3600" \
  start flood "$REL/abacus.fcgi" ABACUS_API_KEYS="$FLOOD_KEYS,bench-flooder"

# want ROW: the row is measured (ROWS empty, or ROW among them).
want() { [ -z "${ROWS:-}" ] || [[ " $ROWS " == *" $1 "* ]]; }

# The named sums the sums_* rows use (tests/bench/*-sums.lua: bench-sum-0 ..
# bench-sum-63): written once here, so that every GET finds its sum (a sum
# never written is 404 sum-not-found).
SUM_NAMES=64
if want sums_get || want sums_post; then
  for i in $(seq 0 $((SUM_NAMES - 1))); do
    code=$(curl -s -o "$TMP/sum-create" -w '%{http_code}' -X POST "http://127.0.0.1:${PORTS[abacus]%% *}/abacus/sums/bench-sum-$i/number" \
      -H "X-API-Key: $KEY" -H 'Content-Type: application/json' -H "Idempotency-Key: bench-create-$$-$i" --data-binary '{"number": 1}')
    [ "$code" = 200 ] || { echo "cannot create the named sum bench-sum-$i: $code $(cat "$TMP/sum-create")" >&2; exit 1; }
  done
fi

# CPU ticks (utime+stime) of a set of pids, and of their children.
ticks_of() {
  local total=0 p
  for p in "$@"; do
    [ -r "/proc/$p/stat" ] || continue
    total=$((total + $(awk '{print $14 + $15}' "/proc/$p/stat")))
  done
  echo "$total"
}
frontend_pids() { # stack-dir: lighttpd and workers of both front ends
  local d
  for d in "$1"/frontend-*; do
    local lp; lp=$(cat "$d/frontend.pid")
    echo "$lp"; pgrep -P "$lp"
  done
}
rss_kib() { # pids -> summed VmRSS
  local total=0 p
  for p in "$@"; do total=$((total + $(awk '/^VmRSS/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0))); done
  echo "$total"
}
to_ms() { # wrk latency "1.23ms" / "850.00us" / "1.2s" -> ms
  python3 -c "
import sys, re
v = sys.argv[1]; m = re.match(r'([0-9.]+)(us|ms|s)$', v)
print('%.3f' % (float(m.group(1)) * {'us': 0.001, 'ms': 1, 's': 1000}[m.group(2)]))" "$1"
}

# wrk_run NAME SCRIPT: both front ends at once; prints "rps p50_ms p99_ms cpu_us_fe cpu_us_redis".
wrk_run() { # NAME SCRIPT [script args after the key...]
  local name=$1 script=$2 ports=${PORTS[$1]} dir pids t0 r0 i=0 p
  shift 2
  eval "dir=\$STACK_$name"
  pids=$(frontend_pids "$dir")
  # shellcheck disable=SC2086
  t0=$(ticks_of $pids); r0=$(ticks_of "$RPID")
  for p in $ports; do
    wrk -t1 -c"$CONNS" -d"$DURATION" --latency -s "$ROOT/tests/bench/$script" "http://127.0.0.1:$p" -- "$KEY" "$@" \
      >"$TMP/wrk.$i" 2>&1 &
    i=$((i + 1))
  done
  wait
  # shellcheck disable=SC2086
  local t1 r1; t1=$(ticks_of $pids); r1=$(ticks_of "$RPID")
  python3 - "$TMP/wrk.0" "$TMP/wrk.1" "$((t1 - t0))" "$((r1 - r0))" "$(getconf CLK_TCK)" <<'PY'
import re, sys
def parse(path):
    t = open(path).read()
    rps = float(re.search(r'Requests/sec:\s+([0-9.]+)', t).group(1))
    reqs = int(re.search(r'(\d+) requests in', t).group(1))
    def lat(p):
        m = re.search(r'^\s+%s%%\s+([0-9.]+)(us|ms|s)\s*$' % p, t, re.M)
        return float(m.group(1)) * {'us': 0.001, 'ms': 1, 's': 1000}[m.group(2)]
    non2xx = re.search(r'Non-2xx or 3xx responses: (\d+)', t)
    return rps, reqs, lat(50), lat(99), int(non2xx.group(1)) if non2xx else 0
a, b = parse(sys.argv[1]), parse(sys.argv[2])
fe, rd, hz = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
reqs = a[1] + b[1]
p50 = (a[2] * a[1] + b[2] * b[1]) / reqs          # weighted by requests
p99 = max(a[3], b[3])                              # the worse front end
print("%.0f %.3f %.3f %.1f %.1f %d %d" % (a[0] + b[0], p50, p99, fe * 1e6 / hz / reqs, rd * 1e6 / hz / reqs, a[4] + b[4], reqs))
PY
}

redis_bench() {
  local sha
  sha=$(redis-cli -p "$RP" script load 'return 1')
  redis-benchmark -p "$RP" -c $((CONNS * 2)) -n 300000 -q EVALSHA "$sha" 0 2>/dev/null |
    tr '\r' '\n' | awk '/requests per second/ {for (i = 1; i <= NF; i++) if ($i ~ /^[0-9.]+$/) {print int($i); exit}}'
}

# flood_run: the 64-key POSTs (wrk_run) while one wrk per front end (4
# connections) floods with the over-limit key; prints wrk_run's fields, then
# the flood's requests, its non-2xx, and Redis EVALSHA calls per refused request.
flood_run() {
  local calls p i=0 out fl=0 fl_bad=0
  calls=$(evalsha_calls "$RP")
  for p in ${PORTS[flood]}; do
    wrk -t1 -c4 -d"$DURATION" -s "$ROOT/tests/bench/post.lua" "http://127.0.0.1:$p" -- bench-flooder >"$TMP/flood.$i" 2>&1 &
    i=$((i + 1))
  done
  out=$(KEY=$FLOOD_KEYS wrk_run flood post.lua)
  wait
  calls=$(( $(evalsha_calls "$RP") - calls ))
  for i in 0 1; do
    fl=$((fl + $(sed -n 's/^ *\([0-9]*\) requests in.*/\1/p' "$TMP/flood.$i")))
    fl_bad=$((fl_bad + $(sed -n 's/^ *Non-2xx or 3xx responses: \([0-9]*\)/\1/p' "$TMP/flood.$i" | grep . || echo 0)))
  done
  # Redis calls beyond one per legitimate request, per refused request.
  echo "$out $fl $fl_bad $(python3 -c "import sys; a=sys.argv[1:]; print('%.4f' % ((int(a[0]) - int(a[1])) / max(1, int(a[2]))))" "$calls" "$(echo "$out" | awk '{print $7}')" "$fl_bad")"
}
# The flooder spends its budget first (20,000 in an hour: nothing frees during the run).
if want flood_post; then
  wrk -t1 -c8 -d5s -s "$ROOT/tests/bench/post.lua" "http://127.0.0.1:${PORTS[flood]%% *}" -- bench-flooder >"$TMP/flood-warm" 2>&1
  grep -q 'Non-2xx' "$TMP/flood-warm" || { echo "the flooder did not reach its limit in 5 s" >&2; exit 1; }
fi

declare -A R
# The rows in the order they run, with their labels in the per-round line.
ORDER=(abacus_post hwrite_post sums_post noledger_post abacus_get hredis sums_get hello hredis_post redis
       many_post flood_post)
declare -A LABEL=([abacus_post]=post [hwrite_post]="hello+write POST" [sums_post]="64 sums POST"
  [noledger_post]="ledger off POST" [abacus_get]=get [hredis]=hello+redis [sums_get]="64 sums GET" [hello]=hello
  [hredis_post]="hello+redis POST" [redis]=redis-benchmark [many_post]="64 keys POST" [flood_post]="+ flood")
# Each abacus row runs right before the ceiling it is judged against, so that a
# ratio of one round compares two measurements made seconds apart; the named
# sums' rows run right after that same ceiling.
for round in $(seq 1 "$ROUNDS"); do
  want abacus_post && R[abacus_post_$round]=$(wrk_run abacus post.lua)
  want hwrite_post && R[hwrite_post_$round]=$(wrk_run hwrite post.lua)
  want sums_post && R[sums_post_$round]=$(wrk_run abacus post.lua 64)
  want noledger_post && R[noledger_post_$round]=$(wrk_run noledger post.lua)
  want abacus_get && R[abacus_get_$round]=$(wrk_run abacus get.lua)
  want hredis && R[hredis_$round]=$(wrk_run hredis get.lua)
  want sums_get && R[sums_get_$round]=$(wrk_run abacus get-sums.lua)
  want hello && R[hello_$round]=$(wrk_run hello get.lua)
  want hredis_post && R[hredis_post_$round]=$(wrk_run hredis post.lua)
  want redis && R[redis_$round]=$(redis_bench)
  want many_post && R[many_post_$round]=$(KEY=$FLOOD_KEYS wrk_run flood post.lua)
  want flood_post && R[flood_post_$round]=$(flood_run)
  line=""
  for k in "${ORDER[@]}"; do
    want "$k" && line+="${line:+ | }${LABEL[$k]} ${R[${k}_$round]}"
  done
  echo "round $round: $line" >&2
done
rss=$(rss_kib $(cat "$STACK_abacus/frontend-${PORTS[abacus]%% *}/frontend.pid") $(pgrep -P "$(cat "$STACK_abacus/frontend-${PORTS[abacus]%% *}/frontend.pid")"))

# Every bench POST must be a fresh addition: a replay writes nothing and is cheaper.
replays=0
for p in ${PORTS[abacus]}; do
  n=$(curl -s "http://127.0.0.1:$p/metrics" | awk '$1 == "abacus_idempotent_replays_total" {print int($2)}')
  replays=$((replays + ${n:-0}))
done

{
  for k in "${!R[@]}"; do echo "$k ${R[$k]}"; done | sort
  echo "rss_kib_one_frontend $rss"
  echo "abacus_post_replays $replays"
} >"$OUT/raw.txt"

# A run of some ROWS only does not overwrite the full run's results.
python3 - "$OUT/raw.txt" "$ROUNDS" "$CONNS" "$BENCH_WORKERS" "$FSYNC" "$DURATION" <<'PY' | tee "$OUT/results-$FSYNC${ROWS:+-some-rows}.txt"
import statistics, sys
raw = {}
for line in open(sys.argv[1]):
    k, *v = line.split()
    raw[k] = v
rounds, conns, workers = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
def have(*names):  # every round of these rows was measured (ROWS)
    return all("%s_%d" % (n, r) in raw for n in names for r in range(1, rounds + 1))
def med(name, i):
    return statistics.median(float(raw["%s_%d" % (name, r)][i]) for r in range(1, rounds + 1))
rows = [("abacus POST /abacus/number", "abacus_post"), ("abacus GET /abacus/sum", "abacus_get"),
        ("abacus POST /abacus/sums/{name}/number", "sums_post"), ("abacus GET /abacus/sums/{name}", "sums_get"),
        ("ceiling: trivial worker", "hello"), ("ceiling: trivial worker + 1 EVALSHA", "hredis"),
        ("ceiling: the same, POST requests", "hredis_post"),
        ("ceiling: + 1 EVALSHA doing INCR, POST", "hwrite_post"),
        ("abacus POST, ledger off", "noledger_post"),
        ("abacus POST, 64 keys (limit 20000/h)", "many_post"),
        ("the same while 1 caller floods 429s", "flood_post")]
print("make bench: 2 front ends x %d workers, %d connections, medians of %d rounds, Redis appendfsync %s" % (workers, 2 * conns, rounds, sys.argv[5]))
print("%-38s %10s %9s %9s %13s %13s %8s" % ("", "req/s", "p50 ms", "p99 ms", "cpu us/req FE", "cpu us/req R", "non-2xx"))
for label, key in rows:
    if have(key):
        print("%-38s %10.0f %9.3f %9.3f %13.1f %13.1f %8.0f" % (label, med(key, 0), med(key, 1), med(key, 2), med(key, 3), med(key, 4), med(key, 5)))
if have("redis"):
    rb = statistics.median(float(raw["redis_%d" % r][0]) for r in range(1, rounds + 1))
    print("%-38s %10.0f" % ("ceiling: redis-benchmark EVALSHA", rb))
if have("sums_post") or have("sums_get"):
    print("(named sums: 64 names, bench-sum-0 .. bench-sum-63, in turn, on the abacus rows' stack)")
print()
# The one-round-trip ceiling of a request is the trivial worker serving the same
# requests with one EVALSHA of a trivial script that does what the request must
# do in Redis at the least: nothing for a GET, one write for a POST.  With
# appendfsync always a write is answered only after an fsync, so a POST's
# ceiling is the one-INCR row; with everysec it equals the no-write one.
# A named sum's request is judged against the same ceiling as the default sum's:
# it too is one EVALSHA (one write for a POST).
def paired(a, b):  # median of the per-round ratios, and their range
    r = sorted(float(raw["%s_%d" % (a, i)][0]) / float(raw["%s_%d" % (b, i)][0]) for i in range(1, rounds + 1))
    return "median of the rounds' ratios %5.1f %% (%.0f-%.0f %%)" % (100 * statistics.median(r), 100 * r[0], 100 * r[-1])
def ratio(label, row, ceiling, target):
    if have(row, ceiling):
        x = med(row, 0) / med(ceiling, 0)
        print("%-52s %5.2f %%  (target >= %d %%)  %s   %s" % (label, 100 * x, target, "ok" if x >= target / 100 else "MISSED", paired(row, ceiling)))
def p99(label, row, ceiling):
    if have(row, ceiling):
        x = med(row, 2) / med(ceiling, 2)
        print("%-52s %5.2f x  (target <= 1.5 x)  %s" % (label, x, "ok" if x <= 1.5 else "MISSED"))
ratio("POST / one-round-trip ceiling (1 EVALSHA, 1 write):", "abacus_post", "hwrite_post", 80)
ratio("GET  / one-round-trip ceiling (1 EVALSHA):", "abacus_get", "hredis", 85)
ratio("POST 64 sums / one-round-trip ceiling (1 write):", "sums_post", "hwrite_post", 80)
ratio("GET  64 sums / one-round-trip ceiling:", "sums_get", "hredis", 85)
p99("p99 POST / its ceiling's p99:", "abacus_post", "hwrite_post")
p99("p99 GET  / its ceiling's p99:", "abacus_get", "hredis")
p99("p99 POST 64 sums / its ceiling's p99:", "sums_post", "hwrite_post")
p99("p99 GET  64 sums / its ceiling's p99:", "sums_get", "hredis")
if have("sums_post", "abacus_post"):
    print("%-52s %5.1f %%  (Redis CPU per POST %.1f vs %.1f us)" % ("POST 64 sums / POST default sum:",
        100 * med("sums_post", 0) / med("abacus_post", 0), med("sums_post", 4), med("abacus_post", 4)))
if have("sums_get", "abacus_get"):
    print("%-52s %5.1f %%  (Redis CPU per GET %.1f vs %.1f us)" % ("GET  64 sums / GET default sum:",
        100 * med("sums_get", 0) / med("abacus_get", 0), med("sums_get", 4), med("abacus_get", 4)))
if have("abacus_post", "hredis_post"):
    print("POST / the ceiling writing nothing, POST requests:   %5.1f %%  (the price of appendfsync %s included)" % (100 * med("abacus_post", 0) / med("hredis_post", 0), sys.argv[5]))
if have("hwrite_post", "hredis_post"):
    print("one-write ceiling / no-write ceiling, POST requests: %5.1f %%  (what one durable write costs before abacus does anything)" % (100 * med("hwrite_post", 0) / med("hredis_post", 0)))
if have("abacus_get", "hello"):
    print("GET / web-tier ceiling (no Redis):                  %5.1f %%" % (100 * med("abacus_get", 0) / med("hello", 0)))
if have("flood_post", "many_post"):
    print("POST while one caller floods 429s / without:        %5.1f %% throughput, p99 %.2f x  (the flood: %.0f req/s of 429s, %d of them admitted; Redis calls per refused request %.4f)" % (
        100 * med("flood_post", 0) / med("many_post", 0), med("flood_post", 2) / med("many_post", 2),
        med("flood_post", 7) / float(sys.argv[6].rstrip("s")), med("flood_post", 7) - med("flood_post", 8), med("flood_post", 9)))
if have("abacus_post", "noledger_post"):
    print("POST ledger on / ledger off:                        %5.1f %% throughput; Redis CPU per POST %.1f vs %.1f us" % (
        100 * med("abacus_post", 0) / med("noledger_post", 0), med("abacus_post", 4), med("noledger_post", 4)))
print("abacus POSTs answered as replays:                   %d  (must be 0: each POST a fresh addition)" % int(raw["abacus_post_replays"][0]))
rss = int(raw["rss_kib_one_frontend"][0])
print("RSS of one front end (lighttpd + %d workers):       %.1f MiB  (target < 12 MiB)  %s" % (workers, rss / 1024, "ok" if rss < 12 * 1024 else "MISSED"))
PY
