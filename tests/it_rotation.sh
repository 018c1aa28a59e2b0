#!/usr/bin/env bash
# Rotating an API key under load, end to end (docs/OPERATIONS.md, "Rotating
# API keys"), twice, the two ways a front end can take a new key list:
#
#   1. K1 -> K2, keys in ABACUS_API_KEYS_FILE: each front end in turn is
#      reloaded gracefully (lighttpd: SIGUSR1, a graceful restart that keeps
#      its port and starts new workers, which read the file again; nginx: each
#      worker of the pool in turn is sent SIGTERM, finishes its request, and
#      multiwatch starts a new one);
#   2. K2 -> K3, keys in ABACUS_API_KEYS (the environment): each front end in
#      turn is stopped and started again (tools/abacus-stack stop PORT, start);
#      while it is down, clients retry on the other one.
#
# Each rotation: two front ends share one Redis; a client with the old key
# adds through both the whole time; the new key is added beside the old on
# every front end, one at a time; a client with the new key starts and the
# old-key client drains (starts nothing new, finishes and retries what it had
# in flight, with the key it sent it with); the old key is removed, one front
# end at a time; the new-key client goes on through that, then drains.
#
# "No request fails" means: every addition a client started ends with a 200
# (straight away, or after retries on the other front end with the same API
# key, the same Idempotency-Key and the same body: tools/abacus-load retries
# a transport error, 429 or 5xx so), and no attempt of any client is ever
# answered 401 or 403.  The sum must end at exactly the acknowledged deltas,
# and the ledger's audit must find every acknowledged addition of every client
# exactly once.  With a graceful reload (1) not even an attempt may fail.
#
# It also pins down what a client switching keys must know: idempotency
# records and rate budgets are per API key, so the same Idempotency-Key sent
# with the other key is a NEW request (it is added again), and the new key
# starts with a full budget.
set -u
. "$(dirname "$0")/lib.sh"
suite_init rotation
use_load_tool
K1=rot-one-$RANDOM$RANDOM
K2=rot-two-$RANDOM$RANDOM
K3=rot-three-$RANDOM$RANDOM
LIMIT=1000000          # the clients' load never meets the limiter
KEYS_FILE=$TMP/api-keys  # readable by the workers' user: read by them, never staged
printf '%s\n' "$K1" >"$KEYS_FILE"

export WORKERS=2
start_stack main ABACUS_API_KEYS_FILE="$KEYS_FILE" ABACUS_RATE_LIMIT_REQUESTS=$LIMIT || exit 1
remember_keys ABACUS_API_KEYS="$K1,$K2,$K3"     # suite_end: none of them in any log
A=http://127.0.0.1:$P1
B=http://127.0.0.1:$P2
key_id() { printf '%s' "$1" | sha256sum | cut -c1-8; }
rcli() { redis-cli -p "$RPORT" "$@"; }
status_of() { req GET "$1/abacus/sum" -H "X-API-Key: $2"; echo "$STATUS"; }

# ---- the two ways of giving a front end its new key list ----

# keys_file KEY...: the keys file now holds these, replaced atomically.  The
# front ends read it when their workers start: they do not see it yet.
keys_file() {
  printf '%s\n' "$@" >"$KEYS_FILE.new"
  mv -f "$KEYS_FILE.new" "$KEYS_FILE"
}

# keys_env KEYS: the ABACUS_API_KEYS the next start of a front end gets (the
# stack's saved environment); front ends running keep theirs.
keys_env() {
  grep -v -e '^ABACUS_API_KEYS=' -e '^ABACUS_API_KEYS_FILE=' "$STACK/stack.env" >"$STACK/stack.env.new"
  printf 'ABACUS_API_KEYS=%s\n' "$1" >>"$STACK/stack.env.new"
  mv "$STACK/stack.env.new" "$STACK/stack.env"
}

# since T0: seconds since T0 (date +%s.%N).
since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }'; }

# started_since PORT MARK: workers of PORT that logged worker_started after byte MARK.
started_since() { tail -c +"$(($2 + 1))" "$STACK/frontend-$1/error.log" | grep -c '"event":"worker_started"'; }

# The configuration check an operator runs before a reload (a worker that
# refuses its configuration would leave the front end answering 503).
config_ok() { stack_env "$STACK" env ABACUS_API_KEYS_FILE="$KEYS_FILE" "$BIN" --check-config >/dev/null 2>&1; }

# reload PORT: graceful: the front end keeps its port; its workers are
# replaced by new ones, which read the keys file again.
reload() {
  local port=$1 dir=$STACK/frontend-$1 mark t0 w
  check_true "front end $port: the new keys file passes --check-config" config_ok
  mark=$(wc -c <"$dir/error.log")
  t0=$(date +%s.%N)
  if [ "$FRONTEND" = lighttpd ]; then
    kill -USR1 "$(cat "$dir/frontend.pid")"
  else
    # One at a time, each replaced before the next: the pool never runs short.
    replaced() { ! kill -0 "$w" 2>/dev/null && [ "$(worker_pids "$port" | wc -l)" -ge "$WORKERS" ]; }
    for w in $(worker_pids "$port"); do
      kill -TERM "$w"
      wait_until 10 replaced
    done
  fi
  enough() { [ "$(started_since "$port" "$mark")" -ge "$WORKERS" ]; }
  check_true "front end $port: reloaded (new workers started)" wait_until 10 enough
  echo "reload $port $(since "$t0")" >>"$TMP/steps"
}

# restart PORT: that front end alone is stopped (lighttpd or nginx and its
# workers) and started again with the saved environment.
restart() {
  local port=$1 t0 rc
  t0=$(date +%s.%N)
  stack_env "$STACK" "$ROOT/tools/abacus-stack" stop "$port" >>"$STACK/restarts.out" 2>&1
  ( set -a; . "$STACK/stack.env"; set +a; ABACUS_PORTS=$port "$ROOT/tools/abacus-stack" start ) \
    >>"$STACK/restarts.out" 2>&1
  rc=$?
  check "front end $port: restarted" 0 "$rc"
  echo "restart $port $(since "$t0")" >>"$TMP/steps"
}

# ---- the clients ----

# client KEY NAME: adds through both front ends with KEY until it is told to
# drain (SIGINT; bounded anyway: 60,000 requests at 200/s).  Every addition
# has its own Idempotency-Key; a failed attempt is retried on the other front
# end with the same API key, Idempotency-Key and body.  Sets CLIENT_PID.
client() {
  "$LOAD" --target "$A" --target "$B" --requests 60000 --rate 200 --concurrency 8 --idempotency \
    --api-key "$1" --delta-range=1:1000 --timeout 5 --max-retries 100 \
    --out-csv "$TMP/$2.csv" >"$TMP/$2.out" 2>&1 &
  CLIENT_PID=$!
  echo "$CLIENT_PID" >>"$TMP/pids"
}

# drain PID NAME: SIGINT, then wait until the client has finished what it had
# in flight; check what it reports.  Adds its acknowledged deltas to ACKED.
ACKED=0
drain() {
  local pid=$1 name=$2 out statuses ack
  kill -INT "$pid"
  wait "$pid"
  check "$name client: exit 0" 0 "$?"
  out=$(cat "$TMP/$name.out")
  statuses=$(printf '%s\n' "$out" | sed -n 's/^statuses (every attempt)://p')
  check_match "$name client: every addition ended 200 (failed: 0)" 'succeeded: [1-9][0-9]*  failed: 0 ' "$out"
  check "$name client: no attempt answered 401 or 403" "" "$(printf '%s\n' "$statuses" | grep -oE ' 40[13]:[0-9]+')"
  ack=$(printf '%s\n' "$out" | sed -n 's/^acknowledged: \(-\{0,1\}[0-9]*\)  (drained.*/\1/p')
  check_match "$name client: drained on the signal, acknowledged deltas reported" '^[0-9]+$' "$ack"
  ACKED=$((ACKED + ${ack:-0}))
}

# rotate LABEL OLD NEW HOW: the whole procedure under load.  HOW is "file"
# (keys file + reload) or "env" (ABACUS_API_KEYS + restart).
rotate() {
  local label=$1 old=$2 new=$3 how=$4 old_pid p
  step() { if [ "$how" = file ]; then reload "$1"; else restart "$1"; fi; }

  check "$label: before, the new key is refused" 403 "$(status_of "$A" "$new")"
  client "$old" "$label-old"
  old_pid=$CLIENT_PID
  sleep 1

  # Steps 1-2: the new key beside the old, one front end at a time.
  if [ "$how" = file ]; then keys_file "$old" "$new"; else keys_env "$old,$new"; fi
  step "$P1"
  check "$label, step 2 half way: the front end done takes the new key" 200 "$(status_of "$A" "$new")"
  # Why clients must not move before step 2 is done on EVERY front end:
  check "$label, step 2 half way: the other one still refuses it (403)" 403 "$(status_of "$B" "$new")"
  step "$P2"
  for p in "$A" "$B"; do
    check "$label, step 2 done: $p takes the old key" 200 "$(status_of "$p" "$old")"
    check "$label, step 2 done: $p takes the new key" 200 "$(status_of "$p" "$new")"
  done
  check_match "$label, step 2 done: the workers' config line lists both key ids" \
    "\"api_key_ids\":\\[\"($(key_id "$old")\",\"$(key_id "$new")|$(key_id "$new")\",\"$(key_id "$old"))\"\\]" \
    "$(grep '"event":"config"' "$STACK/frontend-$P2/error.log" | tail -n 1)"

  [ "$label" = file ] && cross_key "$old" "$new"

  # Step 3: clients move to the new key; the old-key client drains.
  client "$new" "$label-new"
  NEW_PID=$CLIENT_PID
  sleep 1
  drain "$old_pid" "$label-old"

  # Steps 4-5: the old key removed, one front end at a time.
  if [ "$how" = file ]; then keys_file "$new"; else keys_env "$new"; fi
  step "$P1"
  check "$label, step 5 half way: the front end done refuses the old key" 403 "$(status_of "$A" "$old")"
  step "$P2"
  sleep 1
  drain "$NEW_PID" "$label-new"

  for p in "$A" "$B"; do
    check "$label, after: $p refuses the old key (403)" 403 "$(status_of "$p" "$old")"
    check "$label, after: $p takes the new key" 200 "$(status_of "$p" "$new")"
  done
  check "$label, after: the sum is exactly the acknowledged deltas (nothing lost, nothing doubled)" \
    "$((ACKED + EXTRA))" "$(sum_at "$P1" "$new")"
  check "$label, after: both front ends read the same sum" "$((ACKED + EXTRA))" "$(sum_at "$P2" "$new")"
}

# cross_key OLD NEW: while both keys are valid, what a client switching keys
# must know.  Adds what these requests acknowledged to EXTRA.
EXTRA=0
cross_key() {
  local old=$1 new=$2 idem=cross-$RANDOM$RANDOM old_left new_left
  post "$P1" "$old" "$idem" 7
  check "cross-key: sent with the old key: 200" "200 " "$STATUS $(header idempotent-replayed)"
  [ "$STATUS" = 200 ] && EXTRA=$((EXTRA + 7))
  old_left=$(header ratelimit | sed -n 's/.*;r=\([0-9]*\);.*/\1/p')
  post "$P2" "$old" "$idem" 7
  check "cross-key: retried with the old key: a replay" "200 true" "$STATUS $(header idempotent-replayed)"
  post "$P2" "$new" "$idem" 7
  # Records are scoped to the API key (SPEC 3): the same Idempotency-Key under
  # the new key is another request, and it is ADDED AGAIN.
  check "cross-key: retried with the NEW key: applied again, not a replay" "200 " "$STATUS $(header idempotent-replayed)"
  [ "$STATUS" = 200 ] && EXTRA=$((EXTRA + 7))
  new_left=$(header ratelimit | sed -n 's/.*;r=\([0-9]*\);.*/\1/p')
  check "cross-key: one record per API key" 2 \
    "$(rcli exists "{abacus}:idem:$(key_id "$old"):$idem" "{abacus}:idem:$(key_id "$new"):$idem")"
  post "$P1" "$new" "$idem" 8
  check "cross-key: under the new key the record is its own (another number: 422)" 422 "$STATUS"
  # Budgets are per API key too: the new key's is full but for what this test
  # sent with it: 3 GETs (steps 1-2; a 403 spends nothing) and this POST.
  check "cross-key: the new key has a budget of its own (full, less its 4 requests)" $((LIMIT - 4)) "$new_left"
  check_true "cross-key: the old key has spent its own ($old_left left)" test "${old_left:-$LIMIT}" -lt $((LIMIT - 100))
  check "cross-key: one limiter log per API key" 2 \
    "$(rcli exists "{abacus}:rl:k:$(key_id "$old")" "{abacus}:rl:k:$(key_id "$new")")"
  CROSS_IDEM=$idem
}

check "start: the sum is 0" 0 "$(sum_at "$P1" "$K1")"
rotate file "$K1" "$K2" file
bad=$(cat "$TMP"/file-*.csv | awk -F, '$4 != 200 && $4 != "status"' | wc -l)
check "file: a graceful reload fails not even one attempt" 0 "$bad"

rotate env "$K2" "$K3" env
post "$P1" "$K1" "$CROSS_IDEM" 7
check "after both: a retry with a removed key is refused (403), nothing added" 403 "$STATUS"
# (No admin keys here: the key in use may read the ledger.)
audit_ok "two rotations, front ends reloaded and restarted under load" "$A" "$K3" "$TMP"/{file,env}-{old,new}.csv

# Continuity, per rotation: the longest time without a successful addition.
for label in file env; do
  cat "$TMP/$label-old.csv" "$TMP/$label-new.csv" >"$TMP/$label-all.csv"
  gap=$(longest_gap "$TMP/$label-all.csv")
  check_true "$label: the additions never paused 2 s or more (longest gap ${gap} s)" \
    awk -v g="$gap" 'BEGIN { exit !(g < 2) }'
  attempts=$(awk -F, '$4 != "status"' "$TMP/$label-all.csv" | wc -l)
  failed=$(awk -F, '$4 != 200 && $4 != "status" {print ($4 == 0 ? "transport" : $4)}' "$TMP/$label-all.csv" |
    sort | uniq -c | awk '{printf "%s%s %s", (NR > 1 ? ", " : ""), $1, $2}')
  how=$([ "$label" = file ] && echo "keys file + graceful reload" || echo "environment + stop/start")
  steps=$(awk -v k="$([ "$label" = file ] && echo reload || echo restart)" '$1 == k {printf "%s%.1f", (n++ ? "/" : ""), $3}' "$TMP/steps")
  slowest=$(awk -F, '$4 != "status" && $5 > m { m = $5 } END { printf "%.0f", m }' "$TMP/$label-all.csv")
  echo "measured: rotation ($how): $(grep -h '^succeeded' "$TMP/$label-old.out" | cut -d' ' -f2) old-key + $(grep -h '^succeeded' "$TMP/$label-new.out" | cut -d' ' -f2) new-key additions at 200/s, all 200; attempts retried: $(awk -F, '$4 != 200 && $4 != "status"' "$TMP/$label-all.csv" | wc -l) of $attempts${failed:+ ($failed)}; slowest attempt $slowest ms; 4 front-end steps of $steps s; longest gap ${gap} s"
done

suite_end
