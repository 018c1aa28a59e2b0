#!/usr/bin/env bash
# The ways users deploy abacus, each run for real here: the smoke test against
# both front-end kinds, nginx + spawn-fcgi + multiwatch, the container
# entrypoint (outside a container: no Docker engine here), /openapi.yaml
# served without a worker, the compose file against the Compose schema, the
# Dockerfile's shape, and the OpenAPI document through a real linter.
set -u
. "$(dirname "$0")/lib.sh"
suite_init deploy
KEY=deploy-key-$RANDOM

metrics_total() { curl -s "http://127.0.0.1:$1/metrics" | awk '/^abacus_request_total/ {s += $2} END {print s + 0}'; }

# ---- the smoke test and /openapi.yaml against the local stack, both kinds ----
for kind in lighttpd nginx; do
  FRONTEND=$kind WORKERS=2 start_stack "smoke-$kind" ABACUS_API_KEYS="$KEY" || exit 1
  # By default smoke.sh changes nothing; --write (or SMOKE_WRITE=1) adds 1, once.
  post "$P1" "$KEY" "deploy-$kind-seed" 41
  records() { redis-cli -p "$RPORT" --scan --pattern '{abacus}:idem:*' | wc -l; }
  out=$("$ROOT/tests/smoke.sh" "http://127.0.0.1:$P1" "$KEY" 2>&1)
  check "$kind: smoke.sh passes" 0 "$?"
  check_match "$kind: smoke.sh ends with its summary" '[0-9]+ passed, 0 failed$' "$out"
  check_match "$kind: smoke.sh says it was read-only" 'read-only: nothing was added' "$out"
  check "$kind: smoke.sh (default) leaves the sum unchanged" 41 "$(sum_at "$P2" "$KEY")"
  check "$kind: smoke.sh (default) records no Idempotency-Key" 1 "$(records)"
  out=$("$ROOT/tests/smoke.sh" --write "http://127.0.0.1:$P1" "$KEY" 2>&1)
  check "$kind: smoke.sh --write passes" 0 "$?"
  check_match "$kind: smoke.sh --write checks the replay" 'ok   the same POST again is a replay' "$out"
  check "$kind: smoke.sh --write adds exactly 1" 42 "$(sum_at "$P2" "$KEY")"
  check "$kind: smoke.sh --write records one key" 2 "$(records)"
  out=$(SMOKE_WRITE=1 "$ROOT/tests/smoke.sh" "http://127.0.0.1:$P2" "$KEY" 2>&1)
  check "$kind: SMOKE_WRITE=1 smoke.sh passes and adds exactly 1" "0 43" "$? $(sum_at "$P1" "$KEY")"
  out=$("$ROOT/tests/smoke.sh" "http://127.0.0.1:$P2" "wrong-key" 2>&1)
  check "$kind: smoke.sh fails with a wrong key" 1 "$?"
  before=$(metrics_total "$P2")
  req GET "http://127.0.0.1:$P2/openapi.yaml"
  check "$kind: /openapi.yaml is served" 200 "$STATUS"
  check "$kind: /openapi.yaml is docs/openapi.yaml" "$(cat "$ROOT/docs/openapi.yaml")" "$BODY"
  check_match "$kind: /openapi.yaml is YAML" '^application/yaml' "$(header content-type)"
  after=$(metrics_total "$P2")
  # The two /metrics reads count themselves (one shows in the second); nothing else may.
  check "$kind: /openapi.yaml did not wake a worker" 1 "$((after - before))"
  if [ "$kind" = nginx ]; then
    pool=$(cat "$STACK/frontend-$P1/pool.pid")
    if [ "$(id -u)" -eq 0 ]; then
      check "nginx, started as root: the workers run as nobody" "nobody " "$(for p in $(pgrep -P "$pool"); do ps -o user= -p "$p"; done | sort -u | tr '\n' ' ')"
    fi
    check "nginx: multiwatch keeps 2 workers" 2 "$(pgrep -P "$pool" | wc -l)"
    victim=$(pgrep -P "$pool" | head -n 1)
    kill -KILL "$victim"
    ok=0
    AUDIT_CSV=$TMP/sent.csv
    for i in $(seq 1 10); do post "$P1" "$KEY" "mw-$i" 1; [ "$STATUS" = 200 ] && ok=$((ok + 1)); done
    AUDIT_CSV=
    check "nginx: requests after a worker was killed" 10 "$ok"
    audit_ok "nginx, a worker SIGKILLed" "http://127.0.0.1:$P2" "$KEY" "$TMP/sent.csv"
    pool_is() { test "$(pgrep -P "$pool" | wc -l)" -eq 2 && ! pgrep -P "$pool" | grep -qx "$victim"; }
    check_true "nginx: multiwatch respawned the worker" wait_until 5 pool_is
    check_match "nginx: worker logs reach the front end's error.log" '"event":"worker_started"' "$(cat "$STACK/frontend-$P1/error.log")"
    dir1=$STACK/frontend-$P1
    stop_stack
    check "nginx: stop leaves no process" "" "$(for p in /proc/[0-9]*; do { tr '\0' '\n' <"$p/environ"; } 2>/dev/null | grep -qxF "ABACUS_STACK_DIR=$dir1" && echo "${p#/proc/}"; done)"
    check "nginx: stop removes the socket" "" "$(ls "$dir1"/abacus.sock 2>/dev/null)"
    check "nginx: stop frees the ports (the master is stopped too)" "" "$(ss -Hltn "( sport = :$P1 or sport = :$P2 )")"
  else
    stop_stack
  fi
done

# ---- the container entrypoint, outside a container ----
read -r rport _ < <(start_redis entry)
EPORT=$(free_port)
entry_env=(ABACUS_PORT="$EPORT" ABACUS_BIND=127.0.0.1 ABACUS_WORKERS=2 ABACUS_RUN_DIR="$TMP/run"
  ABACUS_CONF="$ROOT/conf/lighttpd.conf" ABACUS_BIN="$BIN" ABACUS_OPENAPI="$ROOT/docs/openapi.yaml"
  ABACUS_METRICS_SHM="/abacus-it-deploy-$EPORT" REDIS_URL="redis://127.0.0.1:$rport/0"
  ABACUS_AUTH_ENABLED=true ABACUS_API_KEYS="$KEY")
out=$(env "${entry_env[@]}" "$ROOT/docker/entrypoint.sh" check 2>&1)
check "entrypoint check: ok" 0 "$?"
check_match "entrypoint check: says so" 'configuration ok \(port '"$EPORT"', 2 workers\)' "$out"
out=$(env "${entry_env[@]}" ABACUS_WORKERS=0 "$ROOT/docker/entrypoint.sh" check 2>&1)
check "entrypoint: ABACUS_WORKERS=0 refused" 1 "$?"
check_match "entrypoint: ... with a clear message" 'ABACUS_WORKERS must be 1..256' "$out"
out=$(env "${entry_env[@]}" ABACUS_API_KEYS= "$ROOT/docker/entrypoint.sh" check 2>&1)
check "entrypoint: auth on without keys refused" 1 "$?"
check_match "entrypoint: ... naming the setting" 'ABACUS_AUTH_ENABLED=true but no key' "$out"
env "${entry_env[@]}" setsid "$ROOT/docker/entrypoint.sh" >"$TMP/entry.log" 2>&1 </dev/null &
entry=$!
# entry_procs: what of this run is alive: lighttpd and every worker.
entry_procs() { frontend_procs "$TMP/run"; }
# stop_entry: lighttpd and its workers stopped (lib.sh).  Also run at exit,
# for a suite that ends before the SIGTERM below.
stop_entry() {
  stop_frontend_procs "$entry" "$TMP/run"
  entry=""   # reaped: its pid may be reused
  rm -f "/dev/shm/abacus-it-deploy-$EPORT"
}
CLEANUP_HOOKS+=(stop_entry)
check_true "entrypoint run: the front end answers" wait_until 10 curl -fs "http://127.0.0.1:$EPORT/healthz"
check "entrypoint run: lighttpd replaced the script (exec)" lighttpd "$(cat "/proc/$entry/comm" 2>/dev/null)"
check "entrypoint run: smoke.sh passes" 0 "$("$ROOT/tests/smoke.sh" "http://127.0.0.1:$EPORT" "$KEY" >/dev/null 2>&1; echo $?)"
check "entrypoint healthcheck: healthy" 0 "$(env "${entry_env[@]}" "$ROOT/docker/entrypoint.sh" healthcheck; echo $?)"
kill -STOP "$(cat "$TMP/redis-entry/redis.pid")"
check "entrypoint healthcheck: unhealthy when Redis is not answering" 1 "$(env "${entry_env[@]}" "$ROOT/docker/entrypoint.sh" healthcheck; echo $?)"
kill -CONT "$(cat "$TMP/redis-entry/redis.pid")"
check_match "entrypoint run: worker logs on its stdout/stderr" '"event":"config".*"metrics_shm":"/abacus-it-deploy-' "$(cat "$TMP/entry.log")"
kill -TERM "$entry"
entry_gone() { [ -z "$(entry_procs)" ]; }
check_true "entrypoint run: SIGTERM stops lighttpd and its workers" wait_until 10 entry_gone
stop_entry
check "entrypoint run: no process of it is left" "" "$(entry_procs)"

# ---- docker-compose.yml: the Compose schema, and the structure users rely on ----
# The schema is what every developer and CI run has beside the checkout
# (../shared); a user's own clone has no ../shared: then the structure alone.
schema=$ROOT/../shared/schemas/compose-spec.json
[ -f "$schema" ] || { echo "note: no $schema beside this checkout: the compose file's structure is checked, not its schema"; schema=""; }
out=$(python3 - "$ROOT/docker-compose.yml" "$schema" <<'PY'
import json, sys, yaml, jsonschema
doc = yaml.safe_load(open(sys.argv[1]))
if sys.argv[2]:
    jsonschema.validate(doc, json.load(open(sys.argv[2])))
s = doc["services"]
def env(name):
    e = s[name].get("environment", {})
    return e if isinstance(e, dict) else dict(x.split("=", 1) for x in e)
checks = {
    "services": sorted(s) == ["app", "app1", "app2", "lb", "redis"],
    "app1 port": s["app1"]["ports"] == ["${ABACUS_APP1_PORT:-8001}:8000"],
    "app2 port": s["app2"]["ports"] == ["${ABACUS_APP2_PORT:-8002}:8000"],
    "lb port": s["lb"]["ports"] == ["${ABACUS_LB_PORT:-8000}:8000"],
    "scale profile": s["app"].get("profiles") == ["scale"] and s["lb"].get("profiles") == ["scale"],
    "app has no host port (it scales)": "ports" not in s["app"],
    "redis AOF and noeviction": "--appendonly" in s["redis"]["command"] and "noeviction" in s["redis"]["command"],
    "redis keeps its data": any(v.endswith(":/data") for v in s["redis"]["volumes"]),
}
for name in ("redis", "app1", "app2", "app"):
    checks[name + " healthcheck"] = "test" in s[name].get("healthcheck", {})
for name in ("app1", "app2", "app"):
    e = env(name)
    checks[name + " env"] = (e.get("REDIS_URL") == "redis://redis:6379/0" and e.get("ABACUS_AUTH_ENABLED") == "true"
        and e.get("ABACUS_API_KEYS") == "local-dev-key" and str(e.get("ABACUS_RATE_LIMIT_REQUESTS")) == "${ABACUS_RATE_LIMIT_REQUESTS:-600}")
    checks[name + " waits for a healthy redis"] = s[name]["depends_on"]["redis"]["condition"] == "service_healthy"
    checks[name + " builds docker/Dockerfile"] = s[name]["build"]["dockerfile"] == "docker/Dockerfile"
    checks[name + " healthcheck uses the entrypoint"] = "healthcheck" in s[name]["healthcheck"]["test"]
checks["lb waits for healthy apps"] = s["lb"]["depends_on"]["app"]["condition"] == "service_healthy"
print(" ".join(k.replace(" ", "_") for k, v in checks.items() if not v) or "ok")
PY
)
check "docker-compose.yml: valid against the Compose schema, structure as documented" ok "$out"

# ---- the Dockerfile's shape ----
df=$ROOT/docker/Dockerfile
check "Dockerfile: two stages on bookworm-slim" 2 "$(grep -c '^FROM debian:bookworm-slim' "$df")"
check "Dockerfile: runs as a non-root user" "USER abacus" "$(grep '^USER' "$df")"
check_match "Dockerfile: HEALTHCHECK on /readyz through the entrypoint" 'HEALTHCHECK.*abacus-entrypoint", "healthcheck"' "$(tr -d '\\\n' <"$df")"
check "Dockerfile: the runtime stage installs no compiler" "" "$(sed -n '/^FROM debian:bookworm-slim$/,$p' "$df" | grep -E 'build-essential|-dev\b')"
check_match "Dockerfile: one entrypoint" 'ENTRYPOINT \["/usr/local/bin/abacus-entrypoint"\]' "$(cat "$df")"
check "nginx-lb.conf parses" 0 "$(sed 's/server app:8000/server 127.0.0.1:1/' "$ROOT/docker/nginx-lb.conf" >"$TMP/lb.conf"; nginx -t -q -c "$TMP/lb.conf" -p "$TMP" -e "$TMP/lb-error.log" 2>/dev/null; echo $?)"

# ---- docs/openapi.yaml through a real validator ----
# Installed by the dependency step (tools/deps.sh test), never here: no suite
# reaches outside the machine.  No usage data either.
redocly=$ROOT/build/tools/node_modules/.bin/redocly
check_true "the OpenAPI linter is installed (make test-deps)" test -x "$redocly"
out=$(cd "$ROOT" && REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true "$redocly" lint docs/openapi.yaml 2>&1)
check "redocly lint docs/openapi.yaml: valid" 0 "$?"
check_match "redocly lint: no warning" 'Your API description is valid' "$out"
check "redocly lint: no unexpected warning" "" "$(printf '%s' "$out" | grep -E 'You have [0-9]+ warning')"

suite_end
