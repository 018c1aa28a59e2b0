#!/usr/bin/env bash
# Exactly once, forced at every fault point between a worker and Redis
# (docs/API.md, "When Redis does not answer").  A fault proxy
# (tests/faultproxy.py) sits between front end A's worker and Redis and, on
# command, for the nth EVALSHA of a script: drops its reply after Redis ran it
# and resets the connection (at once, or held until the test releases it),
# delivers the reply after the deadline, resets before the command is sent,
# adds latency, or refuses connections.  Front end B talks to Redis directly.
# For each operation x fault: what the client was told, the sum afterwards,
# Idempotent-Replayed only on a real replay, the log events, the metrics.
# Every keyed addition sent is recorded (AUDIT_CSV), and tools/abacus-audit
# then proves from the ledger that each acknowledged one was applied exactly
# once across all those faults, and nothing unexplained was.
set -u
. "$(dirname "$0")/lib.sh"
suite_init exactly-once
KEY=eo-key-$RANDOM

read -r RP _ < <(start_redis main) || exit 1
PX=$(free_port); PC=$(free_port)
python3 "$ROOT/tests/faultproxy.py" "$PX" "$RP" "$PC" >"$TMP/proxy.log" 2>&1 &
PIDS+=("$!")
ctl() {
  python3 -c '
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
s.sendall((" ".join(sys.argv[2:]) + "\n").encode())
print(s.makefile().readline().strip())' "$PC" "$@"
}
wait_until 5 ctl STATUS || { echo "the fault proxy did not start: $(cat "$TMP/proxy.log")"; exit 1; }

# A: through the proxy (keyless additions allowed, to test those too); B: direct.
WORKERS=1 start_stack a REDIS_URL="redis://127.0.0.1:$PX/0" ABACUS_API_KEYS="$KEY" \
  ABACUS_IDEMPOTENCY_REQUIRED=false ABACUS_RATE_LIMIT_REQUESTS=1000000 \
  ABACUS_REDIS_TIMEOUT_MS=2500 ABACUS_REDIS_CONNECT_TIMEOUT_MS=500 || exit 1
A=$P1; ALOG=$STACK/frontend-$P1/error.log; ASTACK=$STACK
WORKERS=1 start_stack b REDIS_URL="redis://127.0.0.1:$RP/0" ABACUS_API_KEYS="$KEY" \
  ABACUS_RATE_LIMIT_REQUESTS=1000000 || exit 1
B=$P1

direct_sum() { redis-cli -p "$RP" get '{abacus}:sum'; }
sum_is() { [ "$(direct_sum)" = "$1" ]; }
# set_sum N: a PUT through B (no fault there), not a SET in Redis: the ledger
# has it, so the audit's chain of sums holds.
set_sum() {
  req PUT "http://127.0.0.1:$B/abacus/sum" -H "X-API-Key: $KEY" -H 'Content-Type: application/json' \
    --data-binary "{\"number\": $1}"
  check "the sum set to $1 through B" 200 "$STATUS"
}
AUDIT_CSV=$TMP/sent.csv   # the keyed additions sent to A and B (post_a, b_post, lost_while_b_adds)
# events REQUEST_ID EVENT: how many log lines of that request have that event.
events() { cat "$ALOG" "$STACK/frontend-$B/error.log" | grep -F "\"request_id\":\"$1\"" | grep -c "\"event\":\"$2\""; }
replays_counted() { curl -s "http://127.0.0.1:$A/metrics" | awk '$1 == "abacus_idempotent_replays_total" {print $2}'; }
# warm: A's worker has an open connection (the faults below hit a connection
# that was open, as after a Redis restart), and its scripts are known to the proxy.
warm() { req GET "http://127.0.0.1:$A/abacus/sum" -H "X-API-Key: $KEY"; }
held_is() { ctl STATUS | grep -q "held=$1 "; }
post_a() { # post_a REQUEST_ID IDEM NUMBER (IDEM "" = no key)
  local idem=()
  [ -n "$2" ] && idem=(-H "Idempotency-Key: $2")
  req POST "http://127.0.0.1:$A/abacus/number" -H "X-API-Key: $KEY" -H "X-Request-ID: $1" "${idem[@]}" \
    -H 'Content-Type: application/json' --data-binary "{\"number\": $3}"
  record_addition "http://127.0.0.1:$A" "$2" "$3" "$STATUS"
}
put_a() { req PUT "http://127.0.0.1:$A/abacus/sum" -H "X-API-Key: $KEY" -H "X-Request-ID: $1" \
  -H 'Content-Type: application/json' --data-binary "{\"number\": $2}"; }
problem_type() { json type; }

warm
check "the proxy learned the scripts' SHAs" 3 "$(ctl SCRIPTS | grep -oE '(get|add|set)=[0-9a-f]{40}' | wc -l)"

# ---- the issue's sequence: a change whose reply is lost while B adds 5 ----
# lost_while_b_adds LABEL CMD...: CMD runs against A in the background; while
# the proxy holds its reply (Redis ran it), B adds 5; then the reply is dropped
# and A resends.  Between the hold and the release only B's curl runs: A's
# deadline (3 s) is far away.
lost_while_b_adds() {
  local label=$1; shift
  ( "$@"; echo "$STATUS $(json new_sum)" >"$TMP/$label.out" ) &
  local bg=$!
  check_true "$label: Redis ran it, the proxy holds the reply" wait_until 5 held_is 1
  B_OUT=$(curl -s --max-time 5 -w '\n%{http_code}' -X POST "http://127.0.0.1:$B/abacus/number" -H "X-API-Key: $KEY" \
    -H "Idempotency-Key: eo-b-$label" -H 'Content-Type: application/json' --data-binary '{"number": 5}')
  record_addition "http://127.0.0.1:$B" "eo-b-$label" 5 "${B_OUT##*$'\n'}"
  B_OUT=${B_OUT%$'\n'*}
  ctl RELEASE >/dev/null
  wait "$bg"
}
set_sum 100; warm
ctl ARM drop script:set 1 wait >/dev/null
lost_while_b_adds put-lost put_a put-lost 1000
check "PUT reply lost: B's +5 in between was acknowledged" '{"message":"Number added successfully.","current_sum":1005}' "$B_OUT"
check "PUT reply lost: A's client is told the PUT succeeded" "200 1000" "$(cat "$TMP/put-lost.out")"
check "PUT reply lost: the resend did not erase B's acknowledged +5" 1005 "$(direct_sum)"
check "PUT reply lost: one sum_set event" 1 "$(events put-lost sum_set)"
warm
ctl ARM drop script:set 1 wait >/dev/null
lost_while_b_adds del-lost req DELETE "http://127.0.0.1:$A/abacus/sum" -H "X-API-Key: $KEY" -H "X-Request-ID: del-lost"
check "DELETE reply lost: B's +5 in between was acknowledged" '{"message":"Number added successfully.","current_sum":5}' "$B_OUT"
check "DELETE reply lost: A's client is told the reset succeeded" "200 0" "$(cat "$TMP/del-lost.out")"
check "DELETE reply lost: the resend did not erase B's +5" 5 "$(direct_sum)"
check "DELETE reply lost: one sum_set event" 1 "$(events del-lost sum_set)"

# ---- the resend's reply is lost too: the outcome is unknown ----
set_sum 0; warm
ctl ARM drop script:add 1 0 >/dev/null; ctl ARM drop script:add 1 0 >/dev/null
post_a kk-twice kk-1 8
check "reply lost twice: 503 outcome-unknown" "503 urn:abacus:problem:outcome-unknown" "$STATUS $(problem_type)"
check "reply lost twice: it was applied (the resend found its token)" 8 "$(direct_sum)"
check_match "reply lost twice: the detail says a keyed retry is safe" 'retry with the same Idempotency-Key' "$(json detail)"
wait_until 5 sh -c "curl -fs -o /dev/null -H 'X-API-Key: $KEY' http://127.0.0.1:$A/abacus/sum"
post_a kk-retry kk-1 8
check "reply lost twice: the retry replays" "200 8 true" "$STATUS $(json current_sum) $(header idempotent-replayed)"
warm
ctl ARM drop script:set 1 0 >/dev/null; ctl ARM drop script:set 1 0 >/dev/null
put_a put-twice 30
check "PUT reply lost twice: 503 outcome-unknown" "503 urn:abacus:problem:outcome-unknown" "$STATUS $(problem_type)"
check_match "PUT reply lost twice: the detail says read the sum first" 'read the sum' "$(json detail)"
check "PUT reply lost twice: applied" 30 "$(direct_sum)"
wait_until 5 sh -c "curl -fs -o /dev/null -H 'X-API-Key: $KEY' http://127.0.0.1:$A/abacus/sum"

# ---- keyed POST, reply lost after Redis ran it ----
set_sum 0; warm
replays0=$(replays_counted)
ctl ARM drop script:add 1 0 >/dev/null
post_a kp-lost kp-1 7
check "keyed POST reply lost: 200 with the sum" "200 7" "$STATUS $(json current_sum)"
check "keyed POST reply lost: not reported as a replay" "" "$(header idempotent-replayed)"
check "keyed POST reply lost: applied once" 7 "$(direct_sum)"
check "keyed POST reply lost: one sum_added event" 1 "$(events kp-lost sum_added)"
check "keyed POST reply lost: no idempotent_replay event" 0 "$(events kp-lost idempotent_replay)"
check "keyed POST reply lost: no replay counted" "$replays0" "$(replays_counted)"
post_a kp-again kp-1 7
check "keyed POST: the client's own repeat is a real replay" "200 7 true" "$STATUS $(json current_sum) $(header idempotent-replayed)"
check "keyed POST: ... counted once as a replay" "$((replays0 + 1))" "$(replays_counted)"
check "keyed POST: ... and still applied once" 7 "$(direct_sum)"

# ---- keyless POST, reply lost ----
warm
ctl ARM drop script:add 1 0 >/dev/null
post_a kl-lost "" 3
check "keyless POST reply lost: 200" "200 10" "$STATUS $(json current_sum)"
check "keyless POST reply lost: applied once" 10 "$(direct_sum)"
check "keyless POST reply lost: one sum_added event" 1 "$(events kl-lost sum_added)"

# ---- GET, reply lost: resent, answered ----
set_sum 42; warm
ctl ARM drop script:get 1 0 >/dev/null
req GET "http://127.0.0.1:$A/abacus/sum" -H "X-API-Key: $KEY"
check "GET reply lost: resent and answered" "200 42" "$STATUS $(json current_sum)"

# ---- the command reset before it reached Redis: resent, applied once ----
set_sum 0; warm
ctl ARM reset script:add 1 >/dev/null
post_a kr-reset kr-1 4
check "keyed POST reset before Redis: 200, applied once" "200 4 4" "$STATUS $(json current_sum) $(direct_sum)"
check "keyed POST reset before Redis: not a replay" "" "$(header idempotent-replayed)"
warm
ctl ARM reset script:add 1 >/dev/null
post_a kl-reset "" 2
check "keyless POST reset before Redis: applied once" "200 6 6" "$STATUS $(json current_sum) $(direct_sum)"
warm
ctl ARM reset script:set 1 >/dev/null
put_a put-reset 50
check "PUT reset before Redis: applied" "200 50 50" "$STATUS $(json new_sum) $(direct_sum)"
check "PUT reset before Redis: one sum_set event" 1 "$(events put-reset sum_set)"

# ---- the late reply: Redis ran it, the answer comes after the deadline ----
set_sum 0; warm
ctl ARM hold script:add 1 4000 >/dev/null
post_a kh-late kh-1 9
check "keyed POST, late reply: 503" 503 "$STATUS"
check "keyed POST, late reply: says the outcome is unknown" "urn:abacus:problem:outcome-unknown" "$(problem_type)"
check "keyed POST, late reply: Retry-After" 1 "$(header retry-after)"
check "keyed POST, late reply: no sum_added (the worker cannot know)" 0 "$(events kh-late sum_added)"
check "keyed POST, late reply: an outcome_unknown event" 1 "$(events kh-late outcome_unknown)"
check_true "keyed POST, late reply: Redis did run it" wait_until 6 sum_is 9
check_true "the worker recovers after the late reply" wait_until 5 sh -c "curl -fs -o /dev/null -H 'X-API-Key: $KEY' http://127.0.0.1:$A/abacus/sum"
post_a kh-retry kh-1 9
check "keyed POST, late reply: the client's retry replays (it was applied)" "200 9 true" "$STATUS $(json current_sum) $(header idempotent-replayed)"
check "keyed POST, late reply: applied once" 9 "$(direct_sum)"
warm
ctl ARM hold script:set 1 4000 >/dev/null
put_a put-late 70
check "PUT, late reply: 503 outcome-unknown" "503 urn:abacus:problem:outcome-unknown" "$STATUS $(problem_type)"
check_true "PUT, late reply: it was applied" wait_until 6 sum_is 70
wait_until 5 sh -c "curl -fs -o /dev/null -H 'X-API-Key: $KEY' http://127.0.0.1:$A/abacus/sum"
ctl ARM hold script:get 1 4000 >/dev/null
req GET "http://127.0.0.1:$A/abacus/sum" -H "X-API-Key: $KEY"
check "GET, late reply: 503 redis-unavailable (a read changed nothing)" "503 urn:abacus:problem:redis-unavailable" "$STATUS $(problem_type)"

# ---- latency below the deadline: nothing to see ----
wait_until 5 sh -c "curl -fs -o /dev/null -H 'X-API-Key: $KEY' http://127.0.0.1:$A/abacus/sum"
set_sum 0
ctl LATENCY 300 >/dev/null
post_a kl-slow ks-1 11
check "keyed POST with 300 ms latency: 200, applied once" "200 11 11" "$STATUS $(json current_sum) $(direct_sum)"
ctl LATENCY 0 >/dev/null

# ---- Redis refusing connections: 503 redis-unavailable, nothing changed ----
ctl REFUSE on >/dev/null
ctl KILL >/dev/null
warm    # meets the reset connection: the worker is disconnected now
post_a kf-refused kf-1 13
check "connections refused: 503 redis-unavailable" "503 urn:abacus:problem:redis-unavailable" "$STATUS $(problem_type)"
check "connections refused: nothing changed" 11 "$(direct_sum)"
put_a put-refused 99
check "connections refused: PUT 503 redis-unavailable" "503 urn:abacus:problem:redis-unavailable" "$STATUS $(problem_type)"
ctl REFUSE off >/dev/null
applied() { post_a kf-retry kf-1 13; [ "$STATUS" = 200 ]; }
check_true "connections accepted again: the refused key applies" wait_until 5 applied
check "... once, not as a replay" "24 " "$(direct_sum) $(header idempotent-replayed)"

check "the proxy fired every armed fault" "armed=0" "$(ctl STATUS | grep -o 'armed=[0-9]*')"

# ---- Redis full (noeviction): changes refused with their own type, reads served ----
b_post() { req POST "http://127.0.0.1:$B/abacus/number" -H "X-API-Key: $KEY" -H "Idempotency-Key: $1" \
  -H 'Content-Type: application/json' --data-binary "{\"number\": $2}"
  record_addition "http://127.0.0.1:$B" "$1" "$2" "$STATUS"; }
before=$(direct_sum)
redis-cli -p "$RP" config set maxmemory 1 >/dev/null
b_post full-1 5
check "Redis full: POST 503 redis-full" "503 urn:abacus:problem:redis-full" "$STATUS $(problem_type)"
check "Redis full: Retry-After" 1 "$(header retry-after)"
req PUT "http://127.0.0.1:$B/abacus/sum" -H "X-API-Key: $KEY" -H 'Content-Type: application/json' --data-binary '{"number": 1}'
check "Redis full: PUT 503 redis-full" "503 urn:abacus:problem:redis-full" "$STATUS $(problem_type)"
req GET "http://127.0.0.1:$B/abacus/sum" -H "X-API-Key: $KEY"
check "Redis full: GET still answers" "200 $before" "$STATUS $(json current_sum)"
req GET "http://127.0.0.1:$B/readyz"
check "Redis full: /readyz stays 200 (reads are served)" 200 "$STATUS"
check "Redis full: /readyz says writes are refused" refused "$(json writes)"
check "Redis full: nothing changed" "$before" "$(direct_sum)"
redis-cli -p "$RP" config set maxmemory 0 >/dev/null
req GET "http://127.0.0.1:$B/readyz"
check "room again: /readyz without the remark" '200 {"status":"ready"}' "$STATUS $BODY"
b_post full-1 5
check "room again: the refused key applies, once" "200 $((before + 5)) " "$STATUS $(json current_sum) $(header idempotent-replayed)"
audit_ok "every fault between a worker and Redis" "http://127.0.0.1:$B" "$KEY" "$AUDIT_CSV"

# ---- too few replicas: applied, answered 503 not-replicated, retried safely ----
read -r RN _ < <(start_redis lonely) || exit 1
WORKERS=1 start_stack repl REDIS_URL="redis://127.0.0.1:$RN/0" ABACUS_API_KEYS="$KEY" \
  ABACUS_REDIS_MIN_REPLICAS=1 ABACUS_REDIS_WAIT_TIMEOUT_MS=100 || exit 1
C=$P1
AUDIT_CSV=$TMP/sent-repl.csv   # another Redis: another ledger
c_post() { req POST "http://127.0.0.1:$C/abacus/number" -H "X-API-Key: $KEY" -H "Idempotency-Key: $1" \
  -H "X-Request-ID: $3" -H 'Content-Type: application/json' --data-binary "{\"number\": $2}"
  record_addition "http://127.0.0.1:$C" "$1" "$2" "$STATUS"; }
c_post nr-1 5 nr-first
check "no replica: 503 not-replicated" "503 urn:abacus:problem:not-replicated" "$STATUS $(problem_type)"
check "no replica: ... but applied on the master" 5 "$(redis-cli -p "$RN" get '{abacus}:sum')"
check "no replica: its one sum_added event says not replicated" 1 \
  "$(grep -F '"request_id":"nr-first"' "$STACK/frontend-$C/error.log" | grep '"event":"sum_added"' | grep -c '"replicated":false')"
c_post nr-1 5 nr-retry
check "no replica: the retry with the same key is not applied again" "503 5" "$STATUS $(redis-cli -p "$RN" get '{abacus}:sum')"
check "no replica: the retry logs no sum_added" 0 "$(grep -F '"request_id":"nr-retry"' "$STACK/frontend-$C/error.log" | grep -c '"event":"sum_added"')"
read -r RR _ < <(start_redis replica --replicaof 127.0.0.1 "$RN") || exit 1
synced() { redis-cli -p "$RN" info replication | tr -d '\r' | grep -q '^connected_slaves:1'; }
wait_until 10 synced
replicated() { c_post nr-1 5 nr-last; [ "$STATUS" = 200 ]; }
check_true "a replica attached: the retry is confirmed" wait_until 10 replicated
check "... as a replay of the applied addition" "5 true" "$(json current_sum) $(header idempotent-replayed)"
check "... applied once in all" 5 "$(redis-cli -p "$RN" get '{abacus}:sum')"
check "the replica has it" 5 "$(redis-cli -p "$RR" get '{abacus}:sum')"
audit_ok "not replicated, retried until it was" "http://127.0.0.1:$C" "$KEY" "$AUDIT_CSV"
out=$(ABACUS_VAR_DIR=$TMP/refused ABACUS_PORTS="$(free_port)" REDIS_URL="redis://127.0.0.1:$RN/0" ABACUS_BIN=$BIN \
  ABACUS_REDIS_MIN_REPLICAS=1 ABACUS_IDEMPOTENCY_REQUIRED=false "$ROOT/tools/abacus-stack" start 2>&1)
check "replicas without Idempotency-Keys: refused at start" 1 "$?"
check_match "... saying why" 'ABACUS_REDIS_MIN_REPLICAS>0 needs ABACUS_IDEMPOTENCY_REQUIRED=true' "$out"
suite_end
