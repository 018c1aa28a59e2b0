#!/usr/bin/env bash
# The operator's kit: the Prometheus alerting rules and the systemd units.
#   - conf/prometheus/abacus-rules.yml: promtool check rules and test rules;
#     each alert's unit tests catch a rule that never fires and one that fires
#     everywhere; every alert has for:, a severity, a summary, a description and
#     a runbook_url naming a section of docs/OPERATIONS.md;
#   - a real stack and a real Prometheus evaluating the rules (for: 0s): the
#     alerts fire on what they are about (writes without a replica, 5xx, 429s,
#     Redis refusing writes, Redis gone) and the rules evaluate without error;
#     every metric, label and value the rules select is in the real /metrics,
#     so a rename in C fails here;
#   - conf/abacus@.service: systemd-analyze verify (a typo in a directive fails
#     it); two instances run side by side from the unit's own command lines and
#     environment files (tests/unit_exec.py; no systemd runs here);
#   - conf/abacus.sysusers: systemd-sysusers creates the unit's user in a
#     private root.
set -u
. "$(dirname "$0")/lib.sh"
suite_init ops
RULES=$ROOT/conf/prometheus/abacus-rules.yml
RULES_TEST=$ROOT/conf/prometheus/abacus-rules.test.yml
UNIT=$ROOT/conf/abacus@.service

# ---- the rules: promtool, their unit tests, their shape ----
out=$(promtool check rules "$RULES" 2>&1)
check "promtool check rules" 0 "$?"
check_match "... finds the rules" 'SUCCESS: [0-9]+ rules found' "$out"
out=$(promtool test rules "$RULES_TEST" 2>&1)
check "promtool test rules (conf/prometheus/abacus-rules.test.yml)" 0 "$?"
check_match "... SUCCESS" 'SUCCESS' "$out"
out=$(cd "$ROOT/conf" && promtool check config prometheus.yml 2>&1)
check "conf/prometheus.yml is valid and loads the rules" 0 "$?"
check_match "... the rules file is one of its rule_files" 'Checking prometheus/abacus-rules.yml' "$out"

# Each alert twice through its unit tests, in a private copy: once never firing
# (expr emptied), once also firing for every front end of the test's series
# (`or` every job/instance), where the unit tests must fail both times.  So
# every alert has a test where it fires and one where it must stay quiet.
survivors=$(python3 - "$RULES" "$RULES_TEST" "$TMP/mutants" <<'PY'
import copy, os, shutil, subprocess, sys, yaml
rules_path, test_path, out = sys.argv[1:]
rules = yaml.safe_load(open(rules_path))
alerts = [(g, i) for g, group in enumerate(rules["groups"]) for i, r in enumerate(group["rules"]) if "alert" in r]
everyone = 'group by (job, instance) ({__name__=~".+"})'
left = []
for g, i in alerts:
    name = rules["groups"][g]["rules"][i]["alert"]
    for kind, mutate in (("never fires", lambda e: "(%s) unless on () vector(1)" % e),
                         ("fires everywhere", lambda e: "(%s) or on (job, instance) %s" % (e, everyone))):
        m = copy.deepcopy(rules)
        m["groups"][g]["rules"][i]["expr"] = mutate(m["groups"][g]["rules"][i]["expr"].strip())
        d = os.path.join(out, "%s-%s" % (name, kind.replace(" ", "-")))
        os.makedirs(d)
        yaml.safe_dump(m, open(os.path.join(d, os.path.basename(rules_path)), "w"))
        shutil.copy(test_path, d)
        r = subprocess.run(["promtool", "test", "rules", os.path.basename(test_path)], cwd=d,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if r.returncode == 0:
            left.append("%s (%s)" % (name, kind))
print(", ".join(left) if alerts else "no alert found")
PY
)
check "every alert's unit tests catch it never firing and firing everywhere" "" "$survivors"

shape=$(python3 - "$RULES" "$ROOT/docs/OPERATIONS.md" <<'PY'
import re, sys, yaml
rules = [r for g in yaml.safe_load(open(sys.argv[1]))["groups"] for r in g["rules"] if "alert" in r]
# GitHub's heading anchors: lower case, punctuation dropped, spaces to '-'.
anchors = {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
           for h in re.findall(r"^#+ (.*)$", open(sys.argv[2]).read(), re.M)}
bad = []
for r in rules:
    a, ann = r["alert"], r.get("annotations", {})
    if "for" not in r: bad.append(a + ": no for:")
    if r.get("labels", {}).get("severity") not in ("critical", "warning"): bad.append(a + ": severity")
    for k in ("summary", "description"):
        if not ann.get(k): bad.append(a + ": no " + k)
    url = ann.get("runbook_url", "")
    if not url.startswith("docs/OPERATIONS.md#") or url.split("#", 1)[1] not in anchors:
        bad.append(a + ": runbook_url " + repr(url) + " is no section of docs/OPERATIONS.md")
print("; ".join(bad))
PY
)
check "every alert: for:, severity, summary, description, a runbook section that exists" "" "$shape"

# ---- a real stack, a real Prometheus evaluating the rules ----
# Front end 1: writes without a replica (MIN_REPLICAS=1, none there), Redis
# refusing writes (maxmemory), a caller over its rate limit; front end 2:
# Redis gone.  Three keys, each with its own budget of 20 requests a minute:
# KEY writes, KEY2 reads until refused, KEY3 writes while Redis is full.
KEY=ops-key-$RANDOM KEY2=ops-key2-$RANDOM KEY3=ops-key3-$RANDOM
read -r rport rpid < <(start_redis alerts)
[ -n "${rpid:-}" ] || { echo "Redis did not start"; suite_end; }
WORKERS=2 start_stack alerts REDIS_URL="redis://127.0.0.1:$rport/0" ABACUS_API_KEYS="$KEY,$KEY2,$KEY3" \
  ABACUS_REDIS_MIN_REPLICAS=1 ABACUS_REDIS_WAIT_TIMEOUT_MS=20 \
  ABACUS_RATE_LIMIT_REQUESTS=20 ABACUS_RATE_LIMIT_WINDOW_SECONDS=60 || exit 1

PP=$(free_port)
mkdir -p "$TMP/prom"
# The rules as shipped, with every for: 0s (the suite cannot wait minutes).
sed -E 's/^( +)for: .*/\1for: 0s/' "$RULES" >"$TMP/prom/abacus-rules.yml"
check "the live copy of the rules differs in for: only" "" \
  "$(diff <(grep -v '^ *for:' "$RULES") <(grep -v '^ *for:' "$TMP/prom/abacus-rules.yml"))"
sed -e "s/127.0.0.1:8001/127.0.0.1:$P1/; s/127.0.0.1:8002/127.0.0.1:$P2/" \
    -e 's/scrape_interval: 5s/scrape_interval: 1s/; s/scrape_timeout: 2s/scrape_timeout: 1s/' \
    -e 's/evaluation_interval: .*/evaluation_interval: 1s/' \
    -e "s|^  - prometheus/abacus-rules.yml|  - $TMP/prom/abacus-rules.yml|" \
    "$ROOT/conf/prometheus.yml" >"$TMP/prom/prometheus.yml"
check_match "the live Prometheus loads the copy" "$TMP/prom/abacus-rules.yml" "$(cat "$TMP/prom/prometheus.yml")"
prometheus --config.file="$TMP/prom/prometheus.yml" --storage.tsdb.path="$TMP/prom/data" \
  --web.listen-address="127.0.0.1:$PP" >"$TMP/prom/prometheus.log" 2>&1 &
PIDS+=("$!")

api() { curl -s --max-time 5 "http://127.0.0.1:$PP/api/v1/$1"; }
# firing: "alertname instance" of every firing alert.
firing() {
  api alerts | python3 -c 'import json,sys
for a in json.load(sys.stdin)["data"]["alerts"]:
    if a["state"] == "firing": print(a["labels"]["alertname"], a["labels"].get("instance", ""))' 2>/dev/null
}
fires() { # fires PORT ALERT...: each ALERT fires for the front end on PORT
  local f a port=$1; shift
  f=$(firing)
  for a in "$@"; do grep -qxF "$a 127.0.0.1:$port" <<<"$f" || return 1; done
}
both_up() {
  test "$(api 'query?query=count(up%7Bjob%3D%22abacus%22%7D%3D%3D1)' | python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else 0)' 2>/dev/null)" = 2
}
check_true "Prometheus scrapes both front ends (up{job=\"abacus\"}, the rules' job)" wait_until 30 both_up

# Redis full: writes are refused (503 redis-full, result="error").
redis-cli -p "$rport" config set maxmemory 1 >/dev/null
oom=0
oom_step() { post "$P1" "$KEY3" "oom-$RANDOM$RANDOM" 1; [ "$STATUS" = 503 ] && oom=$((oom + 1)); fires "$P1" AbacusRedisErrors; }
check_true "Redis refusing writes (OOM): AbacusRedisErrors fires for front end 1" wait_until 20 oom_step
check_true "... the writes got 503 meanwhile" test "$oom" -gt 0
redis-cli -p "$rport" config set maxmemory 0 >/dev/null

post "$P1" "$KEY" first-write 1
check "a write without the replica it needs: 503" 503 "$STATUS"
check_match "... not-replicated" 'not-replicated' "$BODY"
n=0
load_step() {
  n=$((n + 1))
  post "$P1" "$KEY" "write-$n" 1
  req GET "http://127.0.0.1:$P1/abacus/sum" -H "X-API-Key: $KEY2"
  req GET "http://127.0.0.1:$P1/abacus/sum" -H "X-API-Key: $KEY2"
  fires "$P1" AbacusReplicationShortfalls AbacusHighErrorRatio AbacusRateLimitedHigh
}
check_true "writes not replicated, 5xx, 429s: AbacusReplicationShortfalls, AbacusHighErrorRatio, AbacusRateLimitedHigh fire for front end 1" \
  wait_until 30 load_step
check "... and AbacusRedisUnavailable does not (Redis answers)" "" "$(firing | grep AbacusRedisUnavailable)"
req GET "http://127.0.0.1:$P1/abacus/sum" -H "X-API-Key: $KEY2"
check "... the reads over the budget got 429" 429 "$STATUS"

# Redis gone: front end 2 (which sent Redis nothing since Prometheus started) is asked.
kill -KILL "$rpid"
gone_step() { req GET "http://127.0.0.1:$P2/abacus/sum" -H "X-API-Key: $KEY"; fires "$P2" AbacusRedisUnavailable; }
check_true "Redis killed: AbacusRedisUnavailable fires for front end 2" wait_until 20 gone_step
check "... the reads got 503" 503 "$STATUS"
check "... and not for front end 1, which asked Redis nothing since" "" "$(firing | grep -F "AbacusRedisUnavailable 127.0.0.1:$P1")"
check "AbacusWorkersBelowConfigured fires for both (2 workers, 4 configured)" \
  "$(printf 'AbacusWorkersBelowConfigured 127.0.0.1:%s\n' "$P1" "$P2" | sort)" \
  "$(firing | grep AbacusWorkersBelowConfigured | sort)"
check_match "... saying how many run" 'runs 2 workers, fewer than configured' "$(api alerts)"
check "AbacusFrontEndDown does not fire (both front ends answer)" "" "$(firing | grep AbacusFrontEndDown)"
bad_rules=$(api rules | python3 -c 'import json,sys
rules = [r for g in json.load(sys.stdin)["data"]["groups"] for r in g["rules"]]
print(len(rules), "rules;", " ".join("%s: %s" % (r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"))' 2>&1)
check "Prometheus evaluates every rule without error" "$(grep -cE '^ +- (alert|record):' "$RULES") rules; " "$bad_rules"

# ---- every metric, label and value the rules select is in the real /metrics ----
curl -s --max-time 5 "http://127.0.0.1:$P1/metrics" >"$TMP/metrics-1.txt"
curl -s --max-time 5 "http://127.0.0.1:$P2/metrics" >"$TMP/metrics-2.txt"
check_match "the scrapes are /metrics" 'abacus_workers 2' "$(cat "$TMP/metrics-1.txt")"
check "every metric, label and value the rules select exists in /metrics" "" \
  "$(python3 "$ROOT/tests/promql_refs.py" check "$RULES" "$TMP/metrics-1.txt" "$TMP/metrics-2.txt" 2>&1)"
# ... and the check would see a renamed metric or label value.
sed -e 's/(abacus_workers)/(abacus_workerz)/; s/result="unavailable"/result="unreachable"/' "$RULES" >"$TMP/renamed-rules.yml"
out=$(python3 "$ROOT/tests/promql_refs.py" check "$TMP/renamed-rules.yml" "$TMP/metrics-1.txt" "$TMP/metrics-2.txt" 2>&1)
check_match "... it reports a metric the rules name that /metrics lacks" 'no metric abacus_workerz' "$out"
check_match "... and a label value no series has" 'result="unreachable"' "$out"
stop_stack

# ---- conf/abacus@.service: systemd-analyze verify ----
# The binaries a unit runs must exist for verify: the entrypoint from the
# checkout stands in for its installed copy, as /etc/abacus is a folder here.
check_match "the unit runs the entrypoint where its install steps put it" \
  'install -D -m 0755 docker/entrypoint.sh /usr/local/bin/abacus-entrypoint' "$(cat "$UNIT")"
check_match "... ExecStart runs it" 'ExecStart=.* /usr/local/bin/abacus-entrypoint run' "$(cat "$UNIT")"
mkdir -p "$TMP/units" "$TMP/etc/abacus" "$TMP/run"
stage_unit() { # stage_unit DEST [sed expression]: the unit with the test's paths
  sed -e "s|/usr/local/bin/abacus-entrypoint|$ROOT/docker/entrypoint.sh|g" \
      -e "s|/etc/abacus/|$TMP/etc/abacus/|g" ${2:+-e "$2"} "$UNIT" >"$1"
}
stage_unit "$TMP/units/abacus@.service"
IA=$(free_port) IB=$(free_port)
out=$(systemd-analyze verify --man=no --recursive-errors=no "$TMP/units/abacus@$IA.service" 2>&1)
check "systemd-analyze verify abacus@$IA.service" 0 "$?"
check "... says nothing (no unknown directive, no bad value)" "" "$out"
mkdir -p "$TMP/units-typo"
stage_unit "$TMP/units-typo/abacus@.service" 's/^RestartSec=/RestartSek=/'
out=$(systemd-analyze verify --man=no --recursive-errors=no "$TMP/units-typo/abacus@$IA.service" 2>&1)
check_match "... and it would see a typo in a directive" "Unknown key 'RestartSek'" "$out"

# ---- conf/abacus.sysusers: the unit's user and group, in a private root ----
mkdir -p "$TMP/sysroot/etc"
out=$(systemd-sysusers --root="$TMP/sysroot" "$ROOT/conf/abacus.sysusers" 2>&1)
check "systemd-sysusers --root accepts conf/abacus.sysusers" 0 "$?"
user=$(sed -n 's/^User=//p' "$UNIT") group=$(sed -n 's/^Group=//p' "$UNIT")
check "the unit runs as abacus:abacus" "abacus:abacus" "$user:$group"
pw=$(grep "^$user:" "$TMP/sysroot/etc/passwd")
check_match "it creates the unit's User= in /etc/passwd, without a login shell" "^$user:x:[0-9]+:[0-9]+:[^:]*:[^:]*:/usr/sbin/nologin$" "$pw"
uid=$(echo "$pw" | cut -d: -f3) gid=$(echo "$pw" | cut -d: -f4)
check_true "... a system user (uid $uid below 1000)" test "${uid:-1000}" -lt 1000
check "... whose group is the unit's Group=" "$group" "$(awk -F: -v g="$gid" '$3 == g { print $1 }' "$TMP/sysroot/etc/group")"

# ---- two instances of the template side by side ----
# What systemd would run for abacus@IA and abacus@IB (tests/unit_exec.py),
# as the current user.  The shared file also sets what only the instance may
# (port, run directory, metrics segment): the instance must win.  It sets
# ABACUS_WORKERS=1 over the unit's default; IB's own file sets 2.
read -r sport _ < <(start_redis units)
cat >"$TMP/etc/abacus/abacus.env" <<EOF
# shared by every instance
REDIS_URL=redis://127.0.0.1:$sport/0
ABACUS_API_KEYS=$KEY
ABACUS_CONF=$ROOT/conf/lighttpd.conf
ABACUS_BIN=$BIN
ABACUS_OPENAPI=$ROOT/docs/openapi.yaml
ABACUS_WORKERS=1
ABACUS_PORT=$IA
ABACUS_RUN_DIR=$TMP/shared-run
ABACUS_METRICS_SHM=/abacus-it-ops-shared-$IA
EOF
echo "ABACUS_WORKERS=2" >"$TMP/etc/abacus/abacus-$IB.env"
remember_keys ABACUS_API_KEYS="$KEY"

INST=()
stop_instances() { # SIGTERM (lighttpd stops its workers), bounded wait, SIGKILL what is left
  local pid left p
  for pid in "${INST[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  for _ in $(seq 1 100); do [ -z "$(instance_procs)" ] && break; sleep 0.1; done
  left=$(instance_procs)
  # shellcheck disable=SC2086
  [ -n "$left" ] && kill -KILL $left 2>/dev/null
  for pid in "${INST[@]}"; do wait "$pid" 2>/dev/null; done
  INST=()
  for p in "$IA" "$IB"; do rm -f "/dev/shm/abacus-metrics-$p"; done
  return 0
}
# instance_procs [RUNDIR]: live processes (lighttpd, workers) of the instance
# with that run directory, or of both.
instance_procs() {
  local p want=(-qF "ABACUS_FRONTEND_DIR=$TMP/run/abacus/")
  [ -n "${1:-}" ] && want=(-qxF "ABACUS_FRONTEND_DIR=$1")
  for p in /proc/[0-9]*; do
    { tr '\0' '\n' <"$p/environ"; } 2>/dev/null | grep "${want[@]}" || continue
    grep -qs '^State:[[:space:]]*[ZX]' "$p/status" || echo "${p#/proc/}"
  done
}
CLEANUP_HOOKS+=(stop_instances)
for inst in "$IA" "$IB"; do
  python3 "$ROOT/tests/unit_exec.py" "$TMP/units/abacus@.service" "$inst" "$TMP/run" >"$TMP/unit-$inst.txt" 2>&1
  check "unit_exec reads abacus@$inst" 0 "$?"
  rdir=$(sed -n 's/^runtime_dir\t//p' "$TMP/unit-$inst.txt")
  pre=$(sed -n 's/^pre\t//p' "$TMP/unit-$inst.txt")
  start=$(sed -n 's/^start\t//p' "$TMP/unit-$inst.txt")
  check "abacus@$inst: RuntimeDirectory is /run/abacus/$inst" "$TMP/run/abacus/$inst" "$rdir"
  check_match "abacus@$inst: ABACUS_RUN_DIR is that directory" "ABACUS_RUN_DIR=$rdir " "$start"
  mkdir -p "$rdir"    # systemd creates it, owned by User=
  eval "set -- $pre"
  out=$("$@" 2>&1)
  check "abacus@$inst: ExecStartPre (entrypoint check) passes" 0 "$?"
  nw=1; [ "$inst" = "$IB" ] && nw=2
  check_match "abacus@$inst: ... port $inst (the instance's), $nw workers (the env files')" \
    "configuration ok \\(port $inst, $nw workers\\)" "$out"
  eval "set -- $start"
  setsid "$@" >"$TMP/instance-$inst.log" 2>&1 </dev/null &
  INST+=("$!")
done
workers_at() { test "$(curl -s --max-time 2 "http://127.0.0.1:$1/metrics" | awk '$1 == "abacus_workers" { print $2 }')" = "$2"; }
check_true "abacus@$IA answers, with 1 worker" wait_until 15 workers_at "$IA" 1
check_true "abacus@$IB answers, with 2 workers (its own file)" wait_until 15 workers_at "$IB" 2
post "$IA" "$KEY" unit-1 5
check "a POST through abacus@$IA (REDIS_URL of the shared file)" 200 "$STATUS"
check "... the sum through abacus@$IB is the same Redis's" 5 "$(sum_at "$IB" "$KEY")"
check_true "each has its sockets in its own run directory" \
  test -S "$TMP/run/abacus/$IA/abacus.sock-0" -a -S "$TMP/run/abacus/$IB/abacus.sock-0"
check "... none in the shared file's" "" "$(ls "$TMP/shared-run" 2>/dev/null)"
check_true "each has its own metrics segment (/abacus-metrics-<port>)" \
  test -e "/dev/shm/abacus-metrics-$IA" -a -e "/dev/shm/abacus-metrics-$IB"
check "... not the shared file's" "" "$(ls "/dev/shm/abacus-it-ops-shared-$IA" 2>/dev/null)"
kill -TERM "${INST[0]}"
a_gone() { [ -z "$(instance_procs "$TMP/run/abacus/$IA")" ]; }
check_true "stopping abacus@$IA stops its lighttpd and workers" wait_until 10 a_gone
wait "${INST[0]}" 2>/dev/null
INST=("${INST[@]:1}")   # reaped: its pid may be reused
check_true "... and abacus@$IB goes on" workers_at "$IB" 2
stop_instances
check "no process of either instance is left" "" "$(instance_procs)"

suite_end
