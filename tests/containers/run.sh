#!/usr/bin/env bash
# make test-containers: docker/Dockerfile and docker-compose.yml built and run
# for real, the way the users of the old service ran it, then checked from
# the host (published ports on 127.0.0.1) and from inside the containers.
#
#   tests/containers/run.sh                 podman + podman-compose (this machine)
#   CONTAINER_ENGINE=docker tests/containers/run.sh     Docker + `docker compose`
#
# Images the files name and no registry can give (none is reachable here) are
# made first: debian:bookworm-slim with mmdebstrap from the Debian mirror, and
# stand-ins for redis:7-bookworm and nginx:1.30 built from Debian's packages
# on it (tests/containers/*.Dockerfile) — only when no image of that name
# exists, so a machine that can pull the published ones tests those.
#
# The compose project gets its own name and free host ports (ABACUS_APP1_PORT,
# ABACUS_APP2_PORT, ABACUS_LB_PORT), so a user's own `abacus` project and
# 8001/8002 are never touched.  Last line: "N passed, N failed".
set -u
cd "$(dirname "$0")/../.."
# Every check is printed, passing or not: the output is the report.
export VERBOSE=${VERBOSE:-1}
. tests/lib.sh
suite_init containers

ENGINE=${CONTAINER_ENGINE:-podman}
if [ "$ENGINE" = podman ]; then
  # runc and explicit limits, for this run only (../shared/NOTES.md, Containers).
  export CONTAINERS_CONF=$ROOT/tests/containers/containers.conf
  read -r -a COMPOSE <<<"${COMPOSE:-podman-compose}"
  # apt-get inside a build reaches the mirror through the host's network;
  # the docker format keeps the image's HEALTHCHECK.
  BUILD_ARGS=(--network host --format docker)
else
  read -r -a COMPOSE <<<"${COMPOSE:-docker compose}"
  BUILD_ARGS=()
fi
# Docker Compose leaves a profile's services alone unless the profile is
# given (up: started by naming them; down: only with --profile); podman-compose
# 1.0 knows no profiles (it starts every service) and no --profile option.
PROFILE=()
[ "${COMPOSE[0]}" = podman-compose ] || PROFILE=(--profile scale)
PROJECT=abacusct$$
KEY=local-dev-key
APP1=$(free_port) APP2=$(free_port) LB=$(free_port)
export ABACUS_APP1_PORT=$APP1 ABACUS_APP2_PORT=$APP2 ABACUS_LB_PORT=$LB
# The load phases send thousands of additions with one key: above the
# compose file's 600 a minute (that limit is the old service's default).
export ABACUS_RATE_LIMIT_REQUESTS=1000000
export ABACUS_SCALE=3

say() { echo "-- $*"; }
compose() { "${COMPOSE[@]}" -p "$PROJECT" -f "$ROOT/docker-compose.yml" "$@"; }
# compose_quiet ARGS...: the tool's chatter goes to a log; exit status kept.
compose_quiet() { compose "$@" >>"$TMP/compose.log" 2>&1; }
# in_app SERVICE COMMAND...: `compose exec` and its output (without
# podman-compose's own lines); "exit=N" last, since podman-compose 1.0
# returns 0 whatever the command did.
in_app() {
  local svc=$1; shift
  compose exec -T "$svc" sh -c "$* ; printf '\\nexit=%s\\n' \$?" 2>&1 |
    grep -vE '^(using podman version|podman exec |exit code: |\[|$)'
}
image_exists() { "$ENGINE" image inspect "$1" >/dev/null 2>&1; }
project_containers() { "$ENGINE" ps -a --filter "label=com.docker.compose.project=$PROJECT" --format '{{.Names}}'; }
service_containers() {
  "$ENGINE" ps --filter "label=com.docker.compose.project=$PROJECT" \
    --filter "label=com.docker.compose.service=$1" --format '{{.Names}}' | sort
}
ready() { [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$1/readyz")" = 200 ]; }
sum_on() { curl -s --max-time 5 -H "X-API-Key: $KEY" "http://127.0.0.1:$1/abacus/sum" | sed -n 's/.*"current_sum":\(-\{0,1\}[0-9]*\).*/\1/p'; }
add_on() { # add_on PORT NUMBER IDEMPOTENCY_KEY: prints the status
  curl -s -o /dev/null -w '%{http_code}' --max-time 5 -H "X-API-Key: $KEY" -H "Idempotency-Key: $3" \
    -H 'Content-Type: application/json' -d "{\"number\": $2}" "http://127.0.0.1:$1/abacus/number"
}
down_everything() {
  compose_quiet "${PROFILE[@]}" down -v -t 10 || true
  # podman-compose 1.0 has no step that removes the project's network.
  "$ENGINE" network rm -f "${PROJECT}_default" >/dev/null 2>&1 || true
}
CLEANUP_HOOKS+=(down_everything)
started=$(date +%s)

# ---- images ----
# Each image the files name: the published one when it can be pulled (or is
# here already, pulled before); otherwise a stand-in made here from Debian's
# packages, labelled with the hash of what made it, so a changed recipe is
# made again and a stand-in is never taken for the published image.
say "images"
STANDIN_LABEL=org.abacus.standin
standin_of() { "$ENGINE" image inspect "$1" --format "{{ index .Config.Labels \"$STANDIN_LABEL\" }}" 2>/dev/null; }
# have_image IMAGE RECIPE: 0 when IMAGE is the published one or the stand-in of RECIPE (a hash).
have_image() {
  local label
  image_exists "$1" || return 1
  label=$(standin_of "$1")
  case $label in
    ""|"<no value>") echo "note: $1: the published image (here already)"; return 0 ;;
    "$2") echo "note: $1: the stand-in made here before ($2)"; return 0 ;;
  esac
  echo "note: $1: a stand-in of another recipe ($label): made again"
  return 1
}
pull() { timeout 120 "$ENGINE" pull -q "docker.io/library/$1" >"$TMP/pull.log" 2>&1 && echo "note: $1: pulled from the registry"; }

# The base's recipe is the mmdebstrap command below: change this name with it.
recipe=$(printf 'mmdebstrap-minbase-merged-usr-v1' | sha256sum | cut -c1-12)
if ! have_image debian:bookworm-slim "$recipe" && ! pull debian:bookworm-slim; then
  [ "$ENGINE" = podman ] || { echo "FAIL no debian:bookworm-slim image and no registry"; exit 1; }
  t=$(date +%s)
  # The published image's trim: no documentation, no apt lists, and /usr
  # merged by mmdebstrap's hook rather than the usrmerge package (which pulls
  # in perl: 80 MB instead of 130).
  mmdebstrap --variant=minbase --quiet --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin' \
    bookworm "$TMP/base.tar" >"$TMP/mmdebstrap.log" 2>&1
  check "base image: mmdebstrap bookworm (minbase) from the Debian mirror" 0 "$?"
  podman import -q --change "LABEL $STANDIN_LABEL=$recipe" "$TMP/base.tar" docker.io/library/debian:bookworm-slim >/dev/null
  check "base image: imported as debian:bookworm-slim (stand-in $recipe)" 0 "$?"
  rm -f "$TMP/base.tar"
  echo "measured: base image made in $(( $(date +%s) - t )) s"
fi
# Every other image the files name, as they name it.
for image in $(sed -n 's/^ *image: *//p' docker-compose.yml | sort -u); do
  case $image in
    abacus:*) continue ;;
    redis:*) standin=redis ;;
    nginx:*) standin=nginx ;;
    *) check "an image docker-compose.yml names has a stand-in" "" "$image"; continue ;;
  esac
  recipe=$(cat "tests/containers/$standin.Dockerfile" tests/containers/"$standin"-*.sh 2>/dev/null | sha256sum | cut -c1-12)
  have_image "$image" "$recipe" && continue
  pull "$image" && continue
  "$ENGINE" build -q "${BUILD_ARGS[@]}" --label "$STANDIN_LABEL=$recipe" -t "docker.io/library/$image" \
    -f "tests/containers/$standin.Dockerfile" tests/containers >"$TMP/build-$standin.log" 2>&1
  check "no registry: stand-in for $image built from Debian packages ($recipe)" 0 "$?"
done

# The build context: what .dockerignore keeps out (var/ may hold GBs of AOF).
mkdir -p var build && touch var/.context-probe build/.context-probe
printf 'FROM debian:bookworm-slim\nCOPY . /context\n' >"$TMP/Context.Dockerfile"
"$ENGINE" build -q "${BUILD_ARGS[@]}" -t "abacus-context-probe:$PROJECT" -f "$TMP/Context.Dockerfile" . >"$TMP/context.log" 2>&1
context=$("$ENGINE" run --rm "abacus-context-probe:$PROJECT" sh -c 'cd /context && ls -A' 2>&1 | tr '\n' ' ')
"$ENGINE" rmi -f "abacus-context-probe:$PROJECT" >/dev/null 2>&1
rm -f var/.context-probe build/.context-probe
check_match "build context: the sources are sent" ' Makefile .* lib ' " $(printf '%s\n' $context | sort | tr '\n' ' ')"
check "build context: no var/, build/ or .git (.dockerignore)" "" "$(printf '%s\n' $context | grep -xE 'var|build|\.git')"

t=$(date +%s)
if [ "$ENGINE" = podman ]; then
  podman build "${BUILD_ARGS[@]}" -t abacus:local -f docker/Dockerfile . >"$TMP/build-abacus.log" 2>&1
else
  compose build >"$TMP/build-abacus.log" 2>&1
fi
check "docker/Dockerfile builds (abacus:local)" 0 "$?"
echo "measured: image built in $(( $(date +%s) - t )) s"
size=$("$ENGINE" image inspect abacus:local --format '{{.Size}}' 2>/dev/null)
echo "measured: image abacus:local $(( ${size:-0} / 1000000 )) MB (base debian:bookworm-slim $(( $("$ENGINE" image inspect debian:bookworm-slim --format '{{.Size}}') / 1000000 )) MB)"
check "image: stops with SIGINT (lighttpd's graceful stop)" SIGINT "$("$ENGINE" image inspect abacus:local --format '{{.Config.StopSignal}}')"
check_match "image: exposes 8000" '8000/tcp' "$("$ENGINE" image inspect abacus:local --format '{{json .Config.ExposedPorts}}')"

# ---- the seed's commands: redis + app1 + app2 ----
say "compose up -d (host ports $APP1, $APP2)"
compose_quiet up -d
check "compose up -d (the seed's command)" 0 "$?"
[ "${COMPOSE[0]}" = podman-compose ] && echo "note: podman-compose 1.0 starts the scale profile's app and lb too (it ignores profiles)"
check_true "app1 ready on 127.0.0.1:$APP1" wait_until 60 ready "$APP1"
check_true "app2 ready on 127.0.0.1:$APP2" wait_until 60 ready "$APP2"
app1_container=$(service_containers app1 | head -n 1)
healthy() { "$ENGINE" exec "$1" /usr/local/bin/abacus-entrypoint healthcheck >/dev/null 2>&1; }
check_true "the image's HEALTHCHECK passes in app1" healthy "$app1_container"
before=$(sum_on "$APP1")
check "POST on app1" 200 "$(add_on "$APP1" 7 "ct-$PROJECT-1")"
check "GET on app2 sees app1's addition (one sum)" "$((before + 7))" "$(sum_on "$APP2")"
check "POST on app2" 200 "$(add_on "$APP2" -3 "ct-$PROJECT-2")"
check "GET on app1 sees app2's addition" "$((before + 4))" "$(sum_on "$APP1")"
check "a retried Idempotency-Key on the other container adds nothing" 200 "$(add_on "$APP2" 7 "ct-$PROJECT-1")"
check "... the sum unchanged" "$((before + 4))" "$(sum_on "$APP1")"
out=$(in_app app1 'curl -sS -H "X-API-Key: local-dev-key" http://localhost:8000/abacus/sum')
check "compose exec app1 curl ... http://localhost:8000/abacus/sum (verbatim)" "{\"current_sum\":$((before + 4))}
exit=0" "$out"
check "the workers run as the image's user abacus" "abacus
exit=0" "$(in_app app1 'for p in /proc/[0-9]*; do [ "$(cat $p/comm)" = abacus.fcgi ] && stat -c %U $p; done | sort -u')"

for port in "$APP1" "$APP2"; do
  out=$(tests/smoke.sh "http://127.0.0.1:$port" "$KEY" 2>&1)
  check "tests/smoke.sh against 127.0.0.1:$port" 0 "$?"
  echo "$out" | tail -n 1 | sed 's/^/   smoke: /'
done
check "smoke.sh left the sum as it was" "$((before + 4))" "$(sum_on "$APP1")"

# The load tool from the image, through both front ends, by service name.
out=$(in_app app1 abacus-load --target http://app1:8000 --target http://app2:8000 --requests 2000 \
  --concurrency 16 --idempotency --delta-range -5:9 --api-key "$KEY" --verify)
check "compose exec app1 abacus-load --verify through app1 and app2: exit 0" "exit=0" "$(echo "$out" | tail -n 1)"
check_match "... the sum moved by exactly the acknowledged deltas" 'verify: ok' "$out"
echo "$out" | grep -E '^(requests|throughput|verify)' | sed 's/^/   load: /'
# Named sums, in the same deployment: 8 of them, each exact.
out=$(in_app app1 abacus-load --target http://app1:8000 --target http://app2:8000 --requests 800 --sums 8 \
  --sum-prefix "ct-$PROJECT" --concurrency 16 --idempotency --delta-range -5:9 --api-key "$KEY" --verify)
check_match "abacus-load --sums 8 through app1 and app2: each named sum exact" 'verify: ok, each sum moved' "$out"
check_match "... a named sum read on app2 (GET /abacus/sums/{name})" "\"name\":\"ct-$PROJECT-0\"" \
  "$(curl -s --max-time 5 -H "X-API-Key: $KEY" "http://127.0.0.1:$APP2/abacus/sums/ct-$PROJECT-0")"

# ---- Redis restarted: the AOF on the volume keeps the sum ----
say "Redis restarted"
before=$(sum_on "$APP1")
check_match "Redis writes its AOF to the volume" 'appendonlydir' "$(in_app redis 'ls /data')"
compose_quiet stop redis
check "compose stop redis" 0 "$?"
check_true "without Redis the image's HEALTHCHECK fails (not ready)" wait_until 10 eval '! healthy "$app1_container"'
compose_quiet start redis
check "compose start redis" 0 "$?"
check_true "app1 ready again" wait_until 60 ready "$APP1"
check_true "... and healthy again" wait_until 30 healthy "$app1_container"
check_true "app2 ready again" wait_until 60 ready "$APP2"
check "the sum after the restart is the sum before it (the AOF on the volume)" "$before" "$(sum_on "$APP2")"
check "an addition after the restart" 200 "$(add_on "$APP1" 1 "ct-$PROJECT-3")"
check "... counted once" "$((before + 1))" "$(sum_on "$APP2")"

# ---- app1 stopped during load: in-flight requests finish ----
say "app1 stopped during load"
# A request in flight when the stop signal arrives: head and half the body
# now; the rest only once new connections to app1 are refused (the stop
# signal has arrived: lighttpd closed its listener), so it is truly in
# flight across the signal.  lighttpd's graceful stop must answer it.
app1_container=$(service_containers app1 | head -n 1)
before=$(sum_on "$APP1")
tests/inflight.py "$APP1" "$KEY" "ct-$PROJECT-inflight" --until-refused >"$TMP/inflight.out" 2>&1 &
inflight=$!
PIDS+=("$inflight")
tools/abacus-load --target "http://127.0.0.1:$APP1" --target "http://127.0.0.1:$APP2" --requests 4000 \
  --concurrency 16 --rate 800 --idempotency --api-key "$KEY" --out-csv "$TMP/stop-load.csv" \
  >"$TMP/stop-load.out" 2>&1 &
load=$!
PIDS+=("$load")
sleep 1
t0=$(date +%s%N)
compose_quiet stop -t 10 app1
stop_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
wait "$inflight"
check "a request in flight when app1's listener closed (the stop signal) is answered" "listener closed
HTTP/1.1 200 OK" "$(tail -n 2 "$TMP/inflight.out")"
wait "$load"
check "load through both while app1 stops: exit 0" 0 "$?"
check_match "... every addition acknowledged in the end (retried on app2)" 'failed: 0 ' "$(cat "$TMP/stop-load.out") "
grep -E '^(requests|statuses|succeeded)' "$TMP/stop-load.out" | sed 's/^/   load: /'
# What app1's clients saw: refused connections once it stopped listening, and
# at most one reset per client connection: a keep-alive connection idle when
# lighttpd stopped is closed, and a request sent on it at that moment meets
# the close (the race HTTP/1.1 leaves to clients, RFC 9112 9.3.1: the load
# retries it, with its Idempotency-Key).  Never a request cut off half-way
# (an empty reply: read, then closed without an answer), nor anything else.
cut=$(awk -F, -v t="127.0.0.1:$APP1" '$3 ~ t && $4 == 0 && $0 !~ /Failed to connect|Couldn.t connect|Connection reset by peer/' \
  "$TMP/stop-load.csv" | head -n 3)
check "no request to app1 was cut off (only refused connections, or a reset idle connection)" "" "$cut"
resets=$(awk -F, -v t="127.0.0.1:$APP1" '$3 ~ t && $4 == 0 && /Connection reset by peer/' "$TMP/stop-load.csv" | wc -l)
check_true "at most one reset per client connection (16): $resets" test "$resets" -le 16
echo "measured: requests that met an idle keep-alive connection closed by the stop: $resets"
check "app1 exited by itself (exit 0, not killed)" 0 "$("$ENGINE" inspect "$app1_container" --format '{{.State.ExitCode}}')"
echo "measured: app1 stopped in $stop_ms ms"
check_true "app1 stopped within its 10 s grace period" test "$stop_ms" -lt 10000
compose_quiet start app1
check_true "app1 started again" wait_until 60 ready "$APP1"
# Every addition of the load is 1: the acknowledged deltas are the successes.
expected=$((before + 1000 + $(sed -n 's/^succeeded: \([0-9]*\).*/\1/p' "$TMP/stop-load.out")))
check "the sum is before + the in-flight 1000 + every acknowledged addition, exactly" "$expected" "$(sum_on "$APP1")"
# The ledger proves it entry by entry: every acknowledged addition of the load once.
out=$(tools/abacus-audit --url "http://127.0.0.1:$APP2" --api-key "$KEY" --load-csv "$TMP/stop-load.csv" 2>&1)
check "abacus-audit of the ledger after the stop: exit 0" 0 "$?"
check_match "... 0 lost, 0 doubled, 0 unexplained" '0 lost, 0 doubled, .* 0 unexplained$' "$out"
echo "$out" | tail -n 1 | sed 's/^/   /'

# ---- scale mode: ABACUS_SCALE replicas behind nginx ----
say "scale mode: $ABACUS_SCALE replicas of app behind lb (host port $LB)"
compose_quiet "${PROFILE[@]}" up -d
check "compose ${PROFILE[*]:+${PROFILE[*]} }up -d (ABACUS_SCALE=$ABACUS_SCALE)" 0 "$?"
# nginx resolves `app` when it starts: after the replicas changed (podman-compose
# started lb with them, without waiting for their health), restart it, as
# docs/DEPLOY.md says.
compose_quiet "${PROFILE[@]}" restart lb
check "compose restart lb" 0 "$?"
check "$ABACUS_SCALE replicas of app run" "$ABACUS_SCALE" "$(service_containers app | wc -l)"
check_true "lb ready on 127.0.0.1:$LB" wait_until 60 ready "$LB"
# The replicas start with nginx: give each time to answer before counting.
for c in $(service_containers app); do wait_until 30 "$ENGINE" exec "$c" /usr/local/bin/abacus-entrypoint healthcheck; done
before=$(sum_on "$LB")
for i in $(seq 1 30); do add_on "$LB" 1 "ct-$PROJECT-lb-$i" >>"$TMP/lb-codes"; echo >>"$TMP/lb-codes"; done
check "30 POSTs through lb: all 200" 30 "$(grep -c '^200$' "$TMP/lb-codes")"
check "... the sum moved by 30" "$((before + 30))" "$(sum_on "$LB")"
served=0
for c in $(service_containers app); do
  n=$("$ENGINE" logs "$c" 2>&1 | grep -c '"event":"sum_added"')
  echo "   $c: $n additions"
  [ "$n" -gt 0 ] && served=$((served + 1))
done
check "every replica served additions" "$ABACUS_SCALE" "$served"
[ "$served" = "$ABACUS_SCALE" ] || { "$ENGINE" exec "$(service_containers lb | head -n 1)" getent ahostsv4 app; "$ENGINE" logs "$(service_containers lb | head -n 1)" 2>&1 | tail -n 20; }
out=$(tests/smoke.sh "http://127.0.0.1:$LB" "$KEY" 2>&1)
check "tests/smoke.sh against the load balancer (127.0.0.1:$LB)" 0 "$?"
echo "$out" | tail -n 1 | sed 's/^/   smoke: /'
out=$(tools/abacus-load --target "http://127.0.0.1:$LB" --requests 2000 --concurrency 16 --idempotency \
  --api-key "$KEY" --verify 2>&1)
check "abacus-load --verify through lb" 0 "$?"
echo "$out" | grep -E '^(requests|throughput|verify)' | sed 's/^/   load: /'

# ---- down -v ----
say "compose ${PROFILE[*]:+${PROFILE[*]} }down -v"
compose_quiet "${PROFILE[@]}" down -v -t 10
check "compose ${PROFILE[*]:+${PROFILE[*]} }down -v" 0 "$?"
if [ "${COMPOSE[0]}" = podman-compose ] && "$ENGINE" network exists "${PROJECT}_default" 2>/dev/null; then
  echo "note: podman-compose 1.0 leaves the project's network (its down has no network step): removed with podman network rm"
  "$ENGINE" network rm -f "${PROJECT}_default" >/dev/null
fi
check "no container of the project is left" "" "$(project_containers)"
check "no volume of the project is left" "" "$("$ENGINE" volume ls --format '{{.Name}}' | grep "^${PROJECT}_")"
check "no network of the project is left" "" "$("$ENGINE" network ls --format '{{.Name}}' | grep "^${PROJECT}_")"
echo "measured: test-containers took $(( $(date +%s) - started )) s; image abacus:local $(( ${size:-0} / 1000000 )) MB"
suite_end
