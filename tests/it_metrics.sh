#!/usr/bin/env bash
# Metrics (SPEC section 7): one shared-memory segment per front end, exact
# counts over every worker, fixed label sets, abacus_workers after a kill,
# promtool, a real Prometheus server scraping both front ends, the Grafana
# dashboard's queries.
set -u
. "$(dirname "$0")/lib.sh"
suite_init metrics
KEY=metrics-key-$RANDOM

# scrape PORT FILE: saves /metrics of a front end.
scrape() { curl -s --max-time 5 "http://127.0.0.1:$1/metrics" -H "X-API-Key: $KEY" >"$2"; }

# total FILE FAMILY [LABEL-REGEX]: sum of a family's samples whose labels match.
total() {
  python3 - "$@" <<'PY'
import re, sys
path, family = sys.argv[1], sys.argv[2]
want = re.compile(sys.argv[3]) if len(sys.argv) > 3 else None
s = 0
for line in open(path):
    m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$', line.strip())
    if m and m.group(1) == family and (want is None or want.search(m.group(2) or "")):
        s += float(m.group(3))
print(int(s))
PY
}
delta() { echo $(( $(total "$2" "${@:3}") - $(total "$1" "${@:3}") )); }

WORKERS=3 start_stack main ABACUS_API_KEYS="$KEY" ABACUS_RATE_LIMIT_REQUESTS=1000000 || exit 1
A=$P1

# ---- 5,000 requests over 3 workers, 16 at a time, five kinds of answer ----
scrape "$A" "$TMP/before.txt"
ev_before=$(evalsha_calls "$RPORT")
python3 - "$A" "$KEY" >"$TMP/load.cfg" <<'PY'
import sys
port, key = sys.argv[1:]
def t(url, *lines):
    print("next"); print('url = "http://127.0.0.1:%s%s"' % (port, url))
    for l in lines: print(l)
    print('output = "/dev/null"'); print('write-out = "%{http_code}\\n"')
for i in range(5000):
    k = i % 10
    if k < 5:
        t("/abacus/sum", 'header = "X-API-Key: %s"' % key)
    elif k < 7:
        t("/abacus/number", 'header = "X-API-Key: %s"' % key, 'header = "Idempotency-Key: m-%d"' % i,
          'header = "Content-Type: application/json"', 'data = "{\\"number\\": 1}"')
    elif k == 7:
        t("/random-path-%d?q=%d" % (i, i))
    elif k == 8:
        t("/abacus/sum")
    else:
        t("/abacus/number", 'header = "X-API-Key: %s"' % key, 'header = "Idempotency-Key: bad-%d"' % i,
          'header = "Content-Type: application/json"', 'data = "{\\"number\\": 1.5}"')
PY
codes=$(curl -s --parallel --parallel-immediate --parallel-max 16 -K "$TMP/load.cfg" 2>/dev/null | sort | uniq -c | awk '{print $2":"$1}' | tr '\n' ' ')
check "the load's answers" "200:3500 400:500 401:500 404:500 " "$codes"
scrape "$A" "$TMP/after.txt"

# The first scrape is counted after it answered, so it shows in the second.
check "abacus_request_total grew by exactly 5000 (+1 scrape)" 5001 "$(delta "$TMP/before.txt" "$TMP/after.txt" abacus_request_total)"
check "... 200s" 3501 "$(delta "$TMP/before.txt" "$TMP/after.txt" abacus_request_total 'status="200"')"
check "... 400s" 500 "$(delta "$TMP/before.txt" "$TMP/after.txt" abacus_request_total 'status="400"')"
check "... 401s" 500 "$(delta "$TMP/before.txt" "$TMP/after.txt" abacus_request_total 'status="401"')"
check "... 404s, all under endpoint=\"other\"" 500 "$(delta "$TMP/before.txt" "$TMP/after.txt" abacus_request_total 'endpoint="other",method="GET",status="404"')"
check "... POST /abacus/number 200s" 1000 "$(delta "$TMP/before.txt" "$TMP/after.txt" abacus_request_total 'endpoint="/abacus/number",method="POST",status="200"')"
check "the histogram's _count matches" 5001 "$(delta "$TMP/before.txt" "$TMP/after.txt" abacus_request_duration_seconds_count)"
check "the histogram's +Inf bucket matches" 5001 "$(delta "$TMP/before.txt" "$TMP/after.txt" abacus_request_duration_seconds_bucket 'le="\+Inf"')"
ev_after=$(evalsha_calls "$RPORT")
check "Redis operations match the EVALSHAs Redis counted" "$((ev_after - ev_before))" \
  "$(delta "$TMP/before.txt" "$TMP/after.txt" abacus_redis_operations_total 'operation="(get|add|set)"')"
check "... which is one per API request that reached Redis" 3500 "$((ev_after - ev_before))"
check "the Redis histogram's _count matches" 3500 "$(delta "$TMP/before.txt" "$TMP/after.txt" abacus_redis_operation_duration_seconds_count 'operation="(get|add|set)"')"
check "auth failures counted by reason" 500 "$(delta "$TMP/before.txt" "$TMP/after.txt" abacus_auth_failures_total 'reason="missing"')"
check "no label value comes from the request" "" "$(grep -o 'random-path[^"]*' "$TMP/after.txt" | head -n 1)"
check_match "latency buckets start at 100 µs" 'le="0.0001"' "$(cat "$TMP/after.txt")"
check_match "latency buckets end at 5 s" 'le="5"' "$(cat "$TMP/after.txt")"
check "front end 2 has its own segment (it served none of this)" 0 "$(scrape "$P2" "$TMP/other.txt"; total "$TMP/other.txt" abacus_request_total 'endpoint="/abacus/sum"')"

# ---- replays, conflicts, rate limits, reconnects are counted ----
post "$A" "$KEY" m-5 1
post "$A" "$KEY" m-5 2
scrape "$A" "$TMP/after2.txt"
check "a replay is counted" 1 "$(delta "$TMP/after.txt" "$TMP/after2.txt" abacus_idempotent_replays_total)"
check "a conflict is counted" 1 "$(delta "$TMP/after.txt" "$TMP/after2.txt" abacus_idempotency_conflicts_total)"
check "scrape and render are promtool-clean" "" "$(promtool check metrics <"$TMP/after2.txt" 2>&1)"
check "Content-Type of /metrics" "text/plain; version=0.0.4; charset=utf-8" "$(curl -s -o /dev/null -w '%{content_type}' "http://127.0.0.1:$A/metrics")"
check "/metrics needs no key by default" 200 "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$A/metrics")"

# ---- abacus_workers: right after a worker is killed and respawned ----
check "abacus_workers counts the live workers" 3 "$(scrape "$A" "$TMP/w.txt"; total "$TMP/w.txt" abacus_workers)"
before_kill=$(worker_pids "$A")
check_match "3 workers found" '^[0-9]+ [0-9]+ [0-9]+$' "$(echo $before_kill)"
victim=$(printf '%s\n' "$before_kill" | head -n 1)
kill -KILL "$victim"
wait_until 5 sh -c "! kill -0 $victim 2>/dev/null"
workers_now() { scrape "$A" "$TMP/w.txt"; total "$TMP/w.txt" abacus_workers; }
# lighttpd may respawn the victim at any moment, so "at most 3" proves nothing:
# the count must be the workers alive at that moment (2 before the respawn, 3
# after; counting the dead one too makes it 3, or 4).  Two scrapes bracket the
# look at /proc: a respawn in between costs a retry, not a false result.
counted_are_alive() {
  local a live b
  a=$(workers_now); live=$(worker_pids "$A" | grep -c .); b=$(workers_now)
  SEEN="scraped $a, alive $live, scraped $b"
  [ "$a" = "$live" ] && [ "$b" = "$live" ]
}
SEEN=""
ok=0; wait_until 5 counted_are_alive && ok=1
check "right after a SIGKILL the dead worker is not counted: abacus_workers = workers alive ($SEEN)" 1 "$ok"
workers_are() { test "$(workers_now)" -eq "$1"; }
check_true "after lighttpd respawns it, abacus_workers is 3 again" wait_until 10 workers_are 3
ok=1
for i in $(seq 1 10); do [ "$(workers_now)" -le 3 ] || ok=0; done
check "abacus_workers never counts more than are alive" 1 "$ok"
# The respawned worker writes into the same segment: every POST that every
# worker answered (each one proved by its pid in the log, the new one's
# included) shows in /metrics.  Scrapes count themselves, so only POST 200s
# of /abacus/number are compared.
respawned=$(comm -13 <(printf '%s\n' "$before_kill" | sort) <(worker_pids "$A" | sort))
check_match "lighttpd respawned the victim (one new pid)" '^[0-9]+$' "$respawned"
scrape "$A" "$TMP/r1.txt"
AUDIT_CSV=$TMP/sent.csv
check_true "every worker adds, the respawned one ($respawned) included" every_worker_adds "$A" "$KEY"
AUDIT_CSV=
scrape "$A" "$TMP/r2.txt"
check "the respawned worker shares the segment: all $ADDED POSTs counted" "$ADDED" \
  "$(delta "$TMP/r1.txt" "$TMP/r2.txt" abacus_request_total 'endpoint="/abacus/number",method="POST",status="200"')"
audit_ok "a worker SIGKILLed and respawned" "http://127.0.0.1:$A" "$KEY" "$TMP/sent.csv"
stop_stack

# ---- a real Prometheus scraping both front ends ----
WORKERS=2 start_stack prom ABACUS_API_KEYS="$KEY" ABACUS_METRICS_AUTH=true || exit 1
check "ABACUS_METRICS_AUTH=true: /metrics without a key is 401" 401 "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$P1/metrics")"
check "ABACUS_METRICS_AUTH=true: with the key 200" 200 "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$P1/metrics" -H "X-API-Key: $KEY")"
check "ABACUS_METRICS_AUTH=true: a bearer token works too" 200 "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$P1/metrics" -H "Authorization: Bearer $KEY")"
made=0
for i in $(seq 1 60); do
  post "$((i % 2 ? P1 : P2))" "$KEY" "p-$i" 1; made=$((made + 1))
  req GET "http://127.0.0.1:$((i % 2 ? P2 : P1))/abacus/sum" -H "X-API-Key: $KEY"; made=$((made + 1))
done
for i in $(seq 1 10); do req GET "http://127.0.0.1:$P2/nowhere-$i"; made=$((made + 1)); done

PP=$(free_port)
printf '%s\n' "$KEY" >"$TMP/metrics-key"
sed -e "s/127.0.0.1:8001/127.0.0.1:$P1/; s/127.0.0.1:8002/127.0.0.1:$P2/" \
    -e 's/scrape_interval: 5s/scrape_interval: 1s/; s/scrape_timeout: 2s/scrape_timeout: 1s/' \
    -e 's|    # authorization:|    authorization:|; s|    #   type: Bearer|      type: Bearer|' \
    -e "s|    #   credentials_file: .*|      credentials_file: $TMP/metrics-key|" \
    -e "s|^  - prometheus/abacus-rules.yml|  - $ROOT/conf/prometheus/abacus-rules.yml|" \
    "$ROOT/conf/prometheus.yml" >"$TMP/prometheus.yml"
check "conf/prometheus.yml is valid" 0 "$(promtool check config "$TMP/prometheus.yml" >/dev/null 2>&1; echo $?)"
prometheus --config.file="$TMP/prometheus.yml" --storage.tsdb.path="$TMP/prom-data" \
  --web.listen-address="127.0.0.1:$PP" >"$TMP/prometheus.log" 2>&1 &
PIDS+=("$!")
query() {
  curl -s --max-time 5 "http://127.0.0.1:$PP/api/v1/query" --data-urlencode "query=$1" |
    python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(int(float(r[0]["value"][1])) if r else "none")' 2>/dev/null
}
query_is() { test "$(query "$1")" = "$2"; }
check_true "Prometheus scrapes both front ends" wait_until 30 query_is 'sum(up{job="abacus"})' 2
# Scrapes themselves and the stack's health polls are excluded: they are not "requests made" here.
expr='sum(abacus_request_total{endpoint!~"/metrics|/healthz"})'
check_true "Prometheus sees sum(abacus_request_total) = the $made requests made" wait_until 15 query_is "$expr" "$made"
check "... and it equals what was made" "$made" "$(query "$expr")"
check "Prometheus sees both front ends' workers" 4 "$(query 'sum(abacus_workers)')"

# ---- every Grafana query names a family that exists ----
scrape "$P1" "$TMP/families.txt"
bad=$(python3 - "$ROOT/conf/grafana/abacus-dashboard.json" "$TMP/families.txt" <<'PY'
import json, re, sys
dash = json.load(open(sys.argv[1]))
families = set()
for line in open(sys.argv[2]):
    if line.startswith("# TYPE "):
        families.add(line.split()[2])
bad = []
exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
for e in exprs:
    names = set(re.findall(r'\b(abacus_[a-z_]+)', e))
    if not names:
        bad.append("no family in: " + e)
    for n in names:
        base = re.sub(r'_(bucket|sum|count)$', '', n)
        if n not in families and base not in families:
            bad.append(n)
print(" ".join(bad) if bad else "")
PY
)
check "every dashboard query names an existing family" "" "$bad"
dash_ok=0
while IFS= read -r e; do
  r=$(curl -s --max-time 5 "http://127.0.0.1:$PP/api/v1/query" --data-urlencode "query=$e" | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])' 2>/dev/null)
  [ "$r" = success ] || { echo "query failed: $e"; dash_ok=1; }
done < <(python3 -c 'import json,sys; [print(t["expr"]) for p in json.load(open(sys.argv[1]))["panels"] for t in p["targets"]]' "$ROOT/conf/grafana/abacus-dashboard.json")
check "every dashboard query runs on Prometheus" 0 "$dash_ok"
stop_stack

suite_end
