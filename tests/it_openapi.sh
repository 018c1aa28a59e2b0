#!/usr/bin/env bash
# The OpenAPI document against what the service answers, judged by a
# validator written in JavaScript, as the clients' tools are: Stoplight Prism
# in proxy mode in front of a front end (installed into build/tools by
# `make test-deps`).  Prism checks every request and answer against
# docs/openapi.yaml and says what breaks it in an sl-violations header.
# - Every route's answers, successes and problems, old routes and named sums:
#   no violation.
# - A sum above 2^53 (9007199254740996): as a JSON number, Prism reads it as
#   a double and flags it ("must be <= 9007199254740991": issue #19's finding,
#   reproduced); with the opt-in ?int64=string every int64 is a string and
#   nothing is flagged, on every route that carries one.
set -u
. "$(dirname "$0")/lib.sh"
suite_init openapi
KEY=openapi-key-$RANDOM
ADMIN=openapi-admin-$RANDOM
PRISM=${PRISM:-$ROOT/build/tools/node_modules/.bin/prism}
check_true "Prism is installed (make test-deps)" test -x "$PRISM"
[ -x "$PRISM" ] || { suite_end; exit 1; }
start_stack main ABACUS_API_KEYS="$KEY" ABACUS_ADMIN_API_KEYS="$ADMIN" ABACUS_MAX_SUMS=3 || exit 1
PP=$(free_port)
"$PRISM" proxy "$ROOT/docs/openapi.yaml" "http://127.0.0.1:$P1" --host 127.0.0.1 --port "$PP" >"$TMP/prism.log" 2>&1 &
PIDS+=("$!")
check_true "Prism proxies the front end" wait_until 60 curl -sf -o /dev/null "http://127.0.0.1:$PP/healthz"
V=http://127.0.0.1:$PP
U=(-H "X-API-Key: $KEY")
AD=(-H "X-API-Key: $ADMIN")
J=(-H 'Content-Type: application/json')

# valid NAME METHOD PATH [curl args...]: through Prism, no violation of the document.
valid() {
  local name=$1; shift
  req "$@"
  check "$name: answered" 1 "$([ "$STATUS" -ge 200 ] && [ "$STATUS" -lt 600 ] && echo 1)"
  check "$name: no OpenAPI violation (status $STATUS)" "" "$(header sl-violations)"
}

# ---- every route, as the document describes it ----
valid "GET /abacus/sum" GET "$V/abacus/sum" "${U[@]}"
valid "POST /abacus/number" POST "$V/abacus/number" "${U[@]}" "${J[@]}" -H 'Idempotency-Key: o-1' -d '{"number": 5}'
valid "POST /abacus/number replayed" POST "$V/abacus/number" "${U[@]}" "${J[@]}" -H 'Idempotency-Key: o-1' -d '{"number": 5}'
valid "POST /abacus/number 422" POST "$V/abacus/number" "${U[@]}" "${J[@]}" -H 'Idempotency-Key: o-1' -d '{"number": 6}'
valid "PUT /abacus/sum" PUT "$V/abacus/sum" "${AD[@]}" "${J[@]}" -d '{"number": 7}'
valid "PUT /abacus/sum 403" PUT "$V/abacus/sum" "${U[@]}" "${J[@]}" -d '{"number": 7}'
valid "GET /abacus/sum/ledger" GET "$V/abacus/sum/ledger?limit=5" "${AD[@]}"
valid "POST /abacus/sums/apples/number" POST "$V/abacus/sums/apples/number" "${U[@]}" "${J[@]}" -H 'Idempotency-Key: o-2' -d '{"number": 3}'
valid "GET /abacus/sums/apples" GET "$V/abacus/sums/apples" "${U[@]}"
valid "PUT /abacus/sums/pears" PUT "$V/abacus/sums/pears" "${AD[@]}" "${J[@]}" -d '{"number": -4}'
valid "GET /abacus/sums" GET "$V/abacus/sums?limit=2" "${U[@]}"
valid "GET /abacus/sums/apples/ledger" GET "$V/abacus/sums/apples/ledger" "${AD[@]}"
valid "GET /abacus/sums/never 404" GET "$V/abacus/sums/never" "${U[@]}"
valid "PUT /abacus/sums/plums" PUT "$V/abacus/sums/plums" "${AD[@]}" "${J[@]}" -d '{"number": 1}'
valid "POST a fourth sum: 409 too-many-sums" POST "$V/abacus/sums/figs/number" "${U[@]}" "${J[@]}" -H 'Idempotency-Key: o-3' -d '{"number": 1}'
check "a fourth sum: 409" 409 "$STATUS"
valid "DELETE /abacus/sums/pears" DELETE "$V/abacus/sums/pears" "${AD[@]}"
valid "DELETE /abacus/sum" DELETE "$V/abacus/sum" "${AD[@]}"
# A request without a key breaks the document's security requirement (Prism says so about
# the request); the 401 problem answering it must not break the document.
req GET "$V/abacus/sum"
check "GET /abacus/sum without a key: 401" 401 "$STATUS"
check_match "without a key: Prism flags the request" '"location":\["request"\]' "$(header sl-violations)"
check "without a key: nothing about the answer" "" "$(header sl-violations | grep -o '"response' | head -n 1)"
valid "/healthz" GET "$V/healthz"
valid "/readyz" GET "$V/readyz"

# ---- above 2^53 ----
BIG=9007199254740996
req PUT "$V/abacus/sum" "${AD[@]}" "${J[@]}" -d "{\"number\": $BIG}"
check "PUT $BIG: 200" 200 "$STATUS"
req GET "$V/abacus/sum" "${U[@]}"
check "as a JSON number: the exact value" "{\"current_sum\":$BIG}" "$BODY"
check_match "as a JSON number: Prism flags it (read as a double)" '9007199254740991' "$(header sl-violations)"
check_match "Prism's log names the violation" 'current_sum must be <= 9007199254740991' "$(cat "$TMP/prism.log")"
valid "GET /abacus/sum?int64=string" GET "$V/abacus/sum?int64=string" "${U[@]}"
check "?int64=string: the exact value, as a string" "{\"current_sum\":\"$BIG\"}" "$BODY"
valid "GET /abacus/sums/default?int64=string" GET "$V/abacus/sums/default?int64=string" "${U[@]}"
check "?int64=string: named route" "{\"name\":\"default\",\"current_sum\":\"$BIG\"}" "$BODY"
valid "POST a string number above 2^53" POST "$V/abacus/sums/apples/number?int64=string" "${U[@]}" "${J[@]}" \
  -H 'Idempotency-Key: o-4' -d "{\"number\": \"$BIG\"}"
check "the string number added exactly" "{\"message\":\"Number added successfully.\",\"name\":\"apples\",\"current_sum\":\"$((BIG + 3))\"}" "$BODY"
valid "PUT /abacus/sums/plums?int64=string" PUT "$V/abacus/sums/plums?int64=string" "${AD[@]}" "${J[@]}" -d "{\"number\": \"-$BIG\"}"
check "?int64=string: new_sum" "{\"message\":\"Sum set successfully.\",\"name\":\"plums\",\"new_sum\":\"-$BIG\"}" "$BODY"
valid "GET /abacus/sums?int64=string" GET "$V/abacus/sums?int64=string" "${U[@]}"
check_match "?int64=string: the listing's values are strings" "\"current_sum\":\"$((BIG + 3))\"" "$BODY"
valid "GET the ledger ?int64=string" GET "$V/abacus/sums/apples/ledger?int64=string" "${AD[@]}"
check_match "?int64=string: the ledger's numbers are strings" "\"number\":\"$BIG\",\"sum\":\"$((BIG + 3))\"" "$BODY"
req GET "$V/abacus/sum/ledger" "${AD[@]}"
check_match "the ledger as JSON numbers: Prism flags its big sum" '9007199254740991' "$(header sl-violations)"

suite_end
