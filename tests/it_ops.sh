#!/usr/bin/env bash
# The operator's kit: the Prometheus alerting rules and the systemd units.
#   - conf/prometheus/abacus-rules.yml: promtool check rules and test rules;
#     each alert's unit tests catch a rule that never fires and one that fires
#     everywhere; every alert has for:, a severity, a summary, a description and
#     a runbook_url naming a section of docs/OPERATIONS.md;
#   - a real stack and a real Prometheus evaluating the rules (for: 0s): the
#     alerts fire on what they are about (writes without a replica, 5xx, 429s,
#     Redis refusing writes, Redis gone, a worker dead and not respawnable) and
#     stay quiet on what is healthy (2 workers of 2 configured); the rules
#     evaluate without error; every metric, label and value the rules select
#     is in the real /metrics, so a rename in C fails here; nginx's workers
#     see ABACUS_WORKERS too;
#   - conf/abacus@.service: systemd-analyze verify (a typo in a directive fails
#     it); instances run side by side from the unit's own command lines and
#     environment files (tests/unit_exec.py; no systemd runs here) and are
#     stopped as the unit says (KillSignal, KillMode, TimeoutStopSec) with a
#     request in flight, which must be answered; HTTPS from the unit as an
#     unprivileged user: a group-readable key served, a root-only one refused;
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
[ -n "${rpid:-}" ] || { check "the alerts' Redis starts" "started" "not started"; suite_end; }
# A copy of the worker binary: the workers-shortfall check below deletes the
# binary the workers run (the stack's staged copy when it runs as root).
cp "$BIN" "$TMP/abacus.fcgi"
BIN=$TMP/abacus.fcgi WORKERS=2 start_stack alerts REDIS_URL="redis://127.0.0.1:$rport/0" ABACUS_API_KEYS="$KEY,$KEY2,$KEY3" \
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
# ABACUS_WORKERS=2, not the default 4: each front end exports its own count.
configured_2() {
  test "$(api 'query?query=count(abacus_workers_configured%3D%3D2%20and%20abacus_workers%3D%3D2)' | python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else 0)' 2>/dev/null)" = 2
}
check_true "Prometheus has abacus_workers_configured 2 and abacus_workers 2 from both front ends" configured_2
check "... so AbacusWorkersBelowConfigured does not fire (each runs the 2 it is configured with)" "" \
  "$(firing | grep AbacusWorkersBelowConfigured)"
check "AbacusFrontEndDown does not fire (both front ends answer)" "" "$(firing | grep AbacusFrontEndDown)"
bad_rules=$(api rules | python3 -c 'import json,sys
rules = [r for g in json.load(sys.stdin)["data"]["groups"] for r in g["rules"]]
print(len(rules), "rules;", " ".join("%s: %s" % (r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"))' 2>&1)
check "Prometheus evaluates every rule without error" "$(grep -cE '^ +- (alert|record):' "$RULES") rules; " "$bad_rules"

# ---- every metric, label and value the rules select is in the real /metrics ----
curl -s --max-time 5 "http://127.0.0.1:$P1/metrics" >"$TMP/metrics-1.txt"
curl -s --max-time 5 "http://127.0.0.1:$P2/metrics" >"$TMP/metrics-2.txt"
check_match "the scrapes are /metrics" 'abacus_workers 2' "$(cat "$TMP/metrics-1.txt")"
check_match "... with the front end's ABACUS_WORKERS (WORKERS=2)" $'\nabacus_workers_configured 2\n' "$(cat "$TMP/metrics-1.txt")"
check "every metric, label and value the rules select exists in /metrics" "" \
  "$(python3 "$ROOT/tests/promql_refs.py" check "$RULES" "$TMP/metrics-1.txt" "$TMP/metrics-2.txt" 2>&1)"
# ... and the check would see a renamed metric or label value.
sed -e 's/ abacus_workers_configured$/ abacus_workers_configurd/; s/result="unavailable"/result="unreachable"/' "$RULES" >"$TMP/renamed-rules.yml"
out=$(python3 "$ROOT/tests/promql_refs.py" check "$TMP/renamed-rules.yml" "$TMP/metrics-1.txt" "$TMP/metrics-2.txt" 2>&1)
check_match "... it reports a metric the rules name that /metrics lacks" 'no metric abacus_workers_configurd' "$out"
check_match "... and a label value no series has" 'result="unreachable"' "$out"

# A real shortfall on front end 1: the binary its workers run is gone (so
# lighttpd's respawns fail: "gw-backend failed to start"), then one of its 2
# workers is SIGKILLed.  1 of 2 alive: the alert fires for it, not for front
# end 2, which still runs its 2.
victim=$(worker_pids "$P1" | head -n 1)
exe=$(readlink "/proc/$victim/exe" 2>/dev/null)
check_true "the workers run a copy of the binary, not the checkout's ($exe)" \
  test -n "$exe" -a "${exe#"$ROOT"/}" = "$exe"
[ -n "$exe" ] && [ "${exe#"$ROOT"/}" = "$exe" ] && rm -f "$exe"
kill -KILL "$victim"
short_1() { fires "$P1" AbacusWorkersBelowConfigured; }
check_true "a worker of front end 1 killed, its respawns failing: AbacusWorkersBelowConfigured fires for it" \
  wait_until 20 short_1
check_match "... saying how many run" 'runs 1 workers, fewer than configured' "$(api alerts)"
check "... and not for front end 2 (2 of 2)" "" "$(firing | grep -F "AbacusWorkersBelowConfigured 127.0.0.1:$P2")"
check_match "... front end 1's /metrics: 1 worker alive, 2 configured" \
  $'\nabacus_workers 1\n.*\nabacus_workers_configured 2\n' "$(curl -s --max-time 5 "http://127.0.0.1:$P1/metrics")"
stop_stack

# nginx: spawn-fcgi and multiwatch pass the environment on, ABACUS_WORKERS
# included, so its workers export abacus_workers_configured as well.
FRONTEND=nginx WORKERS=2 start_stack nginx ABACUS_API_KEYS="$KEY" || exit 1
check_match "nginx (spawn-fcgi + multiwatch): the workers export the front end's ABACUS_WORKERS" \
  $'\nabacus_workers 2\n.*\nabacus_workers_configured 2\n' "$(curl -s --max-time 5 "http://127.0.0.1:$P1/metrics")"
stop_stack

# ---- conf/abacus@.service: systemd-analyze verify ----
# The binaries a unit runs must exist for verify: the entrypoint from the
# checkout stands in for its installed copy, as /etc/abacus is a folder here.
check_match "the unit runs the entrypoint where its install steps put it" \
  'install -D -m 0755 docker/entrypoint.sh /usr/local/bin/abacus-entrypoint' "$(cat "$UNIT")"
check_match "... ExecStart runs it" 'ExecStart=.* /usr/local/bin/abacus-entrypoint run' "$(cat "$UNIT")"
check_match "... and put lighttpd-tls.conf beside lighttpd.conf (its include is relative)" \
  'install -D -m 0644 conf/lighttpd-tls.conf /etc/abacus/lighttpd-tls.conf' "$(cat "$UNIT")"
mkdir -p "$TMP/units" "$TMP/etc/abacus" "$TMP/run"
# The entrypoint where the install steps put it: a copy out of the checkout,
# which may be private (0700) where the unit's user could not reach it.
install -D -m 0755 "$ROOT/docker/entrypoint.sh" "$TMP/bin/abacus-entrypoint"
stage_unit() { # stage_unit DEST [sed expression]: the unit with the test's paths
  sed -e "s|/usr/local/bin/abacus-entrypoint|$TMP/bin/abacus-entrypoint|g" \
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
read -r sport _ < <(start_redis units) ||
  { check "the instances' Redis starts" "started" "not started"; suite_end; }
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

# How systemd stops an instance, as the unit says (tests/unit_exec.py, with
# systemd's defaults where it says nothing): KillSignal to the main process
# (KillMode=mixed or process) or to every process of the unit (control-group),
# TimeoutStopSec for all of them to exit, then SIGKILL to what is left.
KILL_SIGNAL=SIGTERM KILL_MODE=control-group STOP_TIMEOUT=10   # until the unit is read
INST=()       # main pids (lighttpd: env and the entrypoint exec it)
INST_DIR=()   # their run directories
# signal_instance PID RUNDIR: the unit's stop signal, to whom its KillMode sends it.
signal_instance() {
  local targets=$1
  [ "$KILL_MODE" = control-group ] && targets=$(instance_procs "$2")
  # shellcheck disable=SC2086
  [ -n "$targets" ] && kill -s "$KILL_SIGNAL" $targets 2>/dev/null
  return 0
}
stop_instances() { # as systemd would stop every instance still running
  local i left p
  for i in "${!INST[@]}"; do signal_instance "${INST[$i]}" "${INST_DIR[$i]}"; done
  for _ in $(seq 1 $((STOP_TIMEOUT * 10))); do [ -z "$(instance_procs)" ] && break; sleep 0.1; done
  left=$(instance_procs)
  # shellcheck disable=SC2086
  [ -n "$left" ] && kill -KILL $left 2>/dev/null
  for i in "${!INST[@]}"; do wait "${INST[$i]}" 2>/dev/null; done
  INST=() INST_DIR=()
  for p in "$IA" "$IB" ${IC:-}; do rm -f "/dev/shm/abacus-metrics-$p"; done
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
  INST+=("$!") INST_DIR+=("$rdir")
done
KILL_SIGNAL=$(sed -n 's/^kill_signal\t//p' "$TMP/unit-$IA.txt")
KILL_MODE=$(sed -n 's/^kill_mode\t//p' "$TMP/unit-$IA.txt")
STOP_TIMEOUT=$(sed -n 's/^stop_timeout\t//p' "$TMP/unit-$IA.txt")
echo "   abacus@.service stops with $KILL_SIGNAL (KillMode=$KILL_MODE), SIGKILL after ${STOP_TIMEOUT:-?} s"
grace=$(sed -n 's/.*"server.graceful-shutdown-timeout" *=> *\([0-9]*\).*/\1/p' "$ROOT/conf/lighttpd.conf")
check_true "TimeoutStopSec ($STOP_TIMEOUT s) leaves lighttpd its graceful-shutdown-timeout (${grace:-?} s) and a margin" \
  test "${STOP_TIMEOUT:-0}" -ge $((${grace:-99} + 2))
workers_at() { test "$(curl -s --max-time 2 "http://127.0.0.1:$1/metrics" | awk '$1 == "abacus_workers" { print $2 }')" = "$2"; }
check_true "abacus@$IA answers, with 1 worker" wait_until 15 workers_at "$IA" 1
check_true "abacus@$IB answers, with 2 workers (its own file)" wait_until 15 workers_at "$IB" 2
check "abacus@$IA's main process, which systemd signals, is lighttpd" lighttpd "$(cat "/proc/${INST[0]}/comm" 2>/dev/null)"
post "$IA" "$KEY" unit-1 5
check "a POST through abacus@$IA (REDIS_URL of the shared file)" 200 "$STATUS"
check "... the sum through abacus@$IB is the same Redis's" 5 "$(sum_at "$IB" "$KEY")"
check_true "each has its sockets in its own run directory" \
  test -S "$TMP/run/abacus/$IA/abacus.sock-0" -a -S "$TMP/run/abacus/$IB/abacus.sock-0"
check "... none in the shared file's" "" "$(ls "$TMP/shared-run" 2>/dev/null)"
check_true "each has its own metrics segment (/abacus-metrics-<port>)" \
  test -e "/dev/shm/abacus-metrics-$IA" -a -e "/dev/shm/abacus-metrics-$IB"
check "... not the shared file's" "" "$(ls "/dev/shm/abacus-it-ops-shared-$IA" 2>/dev/null)"

# Stopping abacus@IA with a request in flight: the head and half the body of a
# keyed POST of 1000 are sent, lighttpd holds the connection, then the stop
# signal; once new connections are refused (the listener closed: the signal
# arrived), the rest of the body.  A graceful stop answers it and adds it.
"$ROOT/tests/inflight.py" "$IA" "$KEY" "inflight-$RANDOM$RANDOM" --go "$TMP/inflight.go" >"$TMP/inflight.out" 2>&1 &
inflight=$!
PIDS+=("$inflight")
# held: lighttpd has accepted the connection (an established socket of it on
# the port), so the request is in flight, not waiting in the listen queue.
held() { ss -Htnp state established "( sport = :$IA )" 2>/dev/null | grep -q '"lighttpd"'; }
refused() { curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$IA/healthz"; [ $? -eq 7 ]; }
check_true "a request in flight: head and half its body sent" wait_until 10 grep -q sent-half "$TMP/inflight.out"
check_true "... lighttpd holds its connection" wait_until 10 held
mark=$(wc -c <"$TMP/instance-$IA.log")
signal_instance "${INST[0]}" "${INST_DIR[0]}"
check_true "$KILL_SIGNAL to abacus@$IA: new connections are refused (the listener closed)" wait_until 10 refused
touch "$TMP/inflight.go"
wait "$inflight"
check "... the request in flight at the stop is answered" "HTTP/1.1 200 OK" "$(tail -n 1 "$TMP/inflight.out")"
check "... and its addition applied (5 + 1000, read through abacus@$IB)" 1005 "$(sum_at "$IB" "$KEY")"
# By a worker that was there: KillMode=control-group would stop them all at
# the signal, and lighttpd would start another for this request.
check "... by a worker that ran before the stop (none started during it)" 0 \
  "$(tail -c +$((mark + 1)) "$TMP/instance-$IA.log" | grep -c '"event":"worker_started"')"
a_gone() { [ -z "$(instance_procs "$TMP/run/abacus/$IA")" ]; }
check_true "abacus@$IA's lighttpd and workers exit by themselves within TimeoutStopSec" wait_until "$STOP_TIMEOUT" a_gone
wait "${INST[0]}" 2>/dev/null
INST=("${INST[@]:1}") INST_DIR=("${INST_DIR[@]:1}")   # reaped: its pid may be reused
check_true "... and abacus@$IB goes on" workers_at "$IB" 2

# ---- HTTPS from the unit: lighttpd reads the key as the unit's User= ----
# The unit never runs as root, so the TLS key must be readable by its user:
# group-readable (root:abacus 0640, docs/OPERATIONS.md, TLS) is served, a key
# root's alone is refused by ExecStartPre (lighttpd -tt loads it).  nobody and
# its group stand in for abacus (systemd-sysusers made that user in a private
# root only); like systemd, the test creates the RuntimeDirectory owned by
# User=.  The files are where the install steps put them (under $TMP/etc).
if [ "$(id -u)" -eq 0 ]; then
  IC=$(free_port) tgroup=$(id -gn nobody)
  E=$TMP/etc/abacus
  install -m 0755 "$BIN" "$E/abacus.fcgi"
  install -m 0644 "$ROOT/conf/lighttpd.conf" "$ROOT/conf/lighttpd-tls.conf" "$ROOT/docs/openapi.yaml" "$E/"
  install -d -m 0750 -g "$tgroup" "$E/tls"
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost \
    -addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout "$E/tls/privkey.pem" -out "$E/tls/fullchain.pem" \
    >"$TMP/openssl.log" 2>&1
  check "a certificate for the TLS instance" 0 "$?"
  chgrp "$tgroup" "$E/tls/privkey.pem" && chmod 0640 "$E/tls/privkey.pem" && chmod 0644 "$E/tls/fullchain.pem"
  printf '%s\n' "ABACUS_CONF=$E/lighttpd-tls.conf" "ABACUS_TLS_CERT=$E/tls/fullchain.pem" \
    "ABACUS_TLS_KEY=$E/tls/privkey.pem" "ABACUS_BIN=$E/abacus.fcgi" "ABACUS_OPENAPI=$E/openapi.yaml" >"$E/abacus-$IC.env"
  as_user() { setpriv --reuid nobody --regid "$tgroup" --clear-groups "$@"; }
  python3 "$ROOT/tests/unit_exec.py" "$TMP/units/abacus@.service" "$IC" "$TMP/run" >"$TMP/unit-$IC.txt" 2>&1
  check "unit_exec reads abacus@$IC" 0 "$?"
  rdir=$(sed -n 's/^runtime_dir\t//p' "$TMP/unit-$IC.txt")
  pre=$(sed -n 's/^pre\t//p' "$TMP/unit-$IC.txt")
  start=$(sed -n 's/^start\t//p' "$TMP/unit-$IC.txt")
  install -d -o nobody -g "$tgroup" "$rdir"
  eval "set -- $pre"
  out=$(as_user "$@" 2>&1)
  check "abacus@$IC (lighttpd-tls.conf, as nobody:$tgroup, key root:$tgroup 0640): ExecStartPre passes" 0 "$?"
  eval "set -- $start"
  setsid setpriv --reuid nobody --regid "$tgroup" --clear-groups "$@" >"$TMP/instance-$IC.log" 2>&1 </dev/null &
  INST+=("$!") INST_DIR+=("$rdir")
  https_sum() { curl -s --max-time 2 --cacert "$E/tls/fullchain.pem" "https://127.0.0.1:$IC/abacus/sum" -H "X-API-Key: $KEY"; }
  check_true "... serves HTTPS (curl --cacert)" wait_until 15 https_sum
  check "... the same sum as abacus@$IB's" "$(sum_at "$IB" "$KEY")" \
    "$(https_sum | python3 -c 'import json,sys; print(json.load(sys.stdin)["current_sum"])' 2>/dev/null)"
  check "... its lighttpd runs as the unit's user" nobody "$(ps -o user= -p "${INST[-1]}" | tr -d ' ')"
  signal_instance "${INST[-1]}" "$rdir"
  c_gone() { [ -z "$(instance_procs "$rdir")" ]; }
  check_true "... and stops" wait_until "$STOP_TIMEOUT" c_gone
  wait "${INST[-1]}" 2>/dev/null
  unset 'INST[-1]' 'INST_DIR[-1]'
  # The key root's alone: refused before anything starts.
  chgrp root "$E/tls/privkey.pem" && chmod 0600 "$E/tls/privkey.pem"
  eval "set -- $pre"
  out=$(as_user "$@" 2>&1)
  check "a key root's alone (0600): ExecStartPre fails as the unit's user" 1 "$?"
  check_match "... lighttpd cannot read it" 'privkey.pem: Permission denied' "$out"
else
  echo "   (not root: the TLS instance as the unit's user is not run)"
fi

stop_instances
check "no process of any instance is left" "" "$(instance_procs)"

suite_end
