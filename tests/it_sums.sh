#!/usr/bin/env bash
# Named sums (issue 19; docs/API.md "Named sums") through two real front ends
# (lighttpd, or nginx with FRONTEND=nginx) and a real redis-server: every
# route, status, header and body; idempotency per API key and sum; the
# listing's paging; ABACUS_MAX_SUMS; bad names refused before Redis; the
# default sum on its original key; ?int64=string on the old and new routes;
# metrics labels are route templates, logs carry the name.
set -u
. "$(dirname "$0")/lib.sh"
suite_init sums
OBSERVE=$TMP/observed.txt   # every status this suite sees, checked against docs/openapi.yaml

USER1=user-key-1-$RANDOM
USER2=user-key-2-$RANDOM
ADMIN=admin-key-$RANDOM
start_stack main ABACUS_API_KEYS="$USER1,$USER2" ABACUS_ADMIN_API_KEYS="$ADMIN" \
  ABACUS_RATE_LIMIT_REQUESTS=100000 ABACUS_MAX_SUMS=200 || exit 1
A=http://127.0.0.1:$P1
B=http://127.0.0.1:$P2
MAIN_RPORT=$RPORT
J=(-H 'Content-Type: application/json')
U1=(-H "X-API-Key: $USER1")
AD=(-H "X-API-Key: $ADMIN")

problem_slug() { printf '%s' "$BODY" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["type"].rsplit(":",1)[1] if d["type"].startswith("urn:abacus:problem:") and d["status"]==int(sys.argv[1]) and isinstance(d["title"],str) and isinstance(d["detail"],str) else "bad-shape")' "$1" 2>/dev/null; }

expect_problem() { # NAME STATUS SLUG
  check "$1: status" "$2" "$STATUS"
  check "$1: content type" "application/problem+json" "$(header content-type)"
  check "$1: slug" "$3" "$(problem_slug "$2")"
  check_match "$1: X-Request-ID" '^[A-Za-z0-9._:-]{1,128}$' "$(header x-request-id)"
}

# g METHOD PATH [curl args...]: a request to front end A, path as it is (no
# dot-segment removal, no globbing of braces).
g() { local m=$1 p=$2; shift 2; req "$m" "$A$p" --path-as-is -g "$@"; }
add() { # NAME IDEM NUMBER [KEY]: POST /abacus/sums/NAME/number
  g POST "/abacus/sums/$1/number" -H "X-API-Key: ${4:-$USER1}" -H "Idempotency-Key: $2" "${J[@]}" --data-binary "{\"number\": $3}"
}
named_sum() { # NAME: its current_sum through B (or the status when not 200)
  req GET "$B/abacus/sums/$1" "${U1[@]}"
  if [ "$STATUS" = 200 ]; then json current_sum; else echo "$STATUS"; fi
}
keys_now() { redis-cli -p "$MAIN_RPORT" --scan | sort | tr '\n' ' '; echo "dbsize=$(redis-cli -p "$MAIN_RPORT" dbsize)"; }

# ---- the default sum: the original routes' sum, on its original key ----
g GET /abacus/sums/default "${U1[@]}"
check "GET default, never written: 200" 200 "$STATUS"
check "GET default: body" '{"name":"default","current_sum":0}' "$BODY"
check "GET default: content type" application/json "$(header content-type)"
check "GET default: RateLimit-Policy" '"default";q=100000;w=60' "$(header ratelimit-policy)"
check "GET default: nothing written" 0 "$(redis-cli -p "$RPORT" exists '{abacus}:sum')"
post "$P1" "$USER1" d-1 5
add default d-2 2
check "POST default/number: 200" 200 "$STATUS"
check "POST default/number: body" '{"message":"Number added successfully.","name":"default","current_sum":7}' "$BODY"
check "the default sum is /abacus/sum's" 7 "$(sum_at "$P2" "$USER2")"
check "... on its original key {abacus}:sum" 7 "$(redis-cli -p "$RPORT" get '{abacus}:sum')"
add default d-1 5
check "an Idempotency-Key of /abacus/number replays on /abacus/sums/default (the same sum)" "200 true 5" "$STATUS $(header idempotent-replayed) $(json current_sum)"
g PUT /abacus/sums/default "${AD[@]}" "${J[@]}" -d '{"number": 40}'
check "PUT default: body" '{"message":"Sum set successfully.","name":"default","new_sum":40}' "$BODY"
check "PUT default: /abacus/sum sees it" 40 "$(sum_at "$P1" "$USER1")"
g DELETE /abacus/sums/default "${AD[@]}"
check "DELETE default resets: 200" 200 "$STATUS"
check "DELETE default resets: body" '{"message":"Sum reset successfully.","name":"default","new_sum":0}' "$BODY"
g GET /abacus/sums/default "${U1[@]}"
check "default still exists after DELETE (reads 0)" '200 {"name":"default","current_sum":0}' "$STATUS $BODY"

# ---- a named sum: never written, created, read, set, deleted ----
g GET /abacus/sums/alpha "${U1[@]}"
expect_problem "GET never-written name" 404 sum-not-found
g GET /abacus/sums/alpha/ledger "${AD[@]}"
expect_problem "ledger of a never-written name" 404 sum-not-found
g DELETE /abacus/sums/alpha "${AD[@]}"
expect_problem "DELETE a never-written name" 404 sum-not-found
check "nothing of alpha in Redis" "" "$(redis-cli -p "$RPORT" --scan --pattern '*alpha*')"
add alpha a-1 10
check "POST alpha/number creates it: 200" 200 "$STATUS"
check "POST alpha/number: body" '{"message":"Number added successfully.","name":"alpha","current_sum":10}' "$BODY"
check "POST alpha/number: not a replay" "" "$(header idempotent-replayed)"
check_match "POST alpha/number: RateLimit" '^"default";r=[0-9]+;t=[0-9]+$' "$(header ratelimit)"
g GET /abacus/sums/alpha "${U1[@]}"
check "GET alpha: body" '{"name":"alpha","current_sum":10}' "$BODY"
check "alpha is not the default sum" 0 "$(sum_at "$P1" "$USER1")"
check "alpha lives under its own hash tag" "{abacus/alpha}:sum" "$(redis-cli -p "$RPORT" --scan --pattern '{abacus/alpha}:sum')"

# ---- idempotency per API key and sum ----
add alpha a-1 10
check "replay on the same sum: 200 + header" "200 true" "$STATUS $(header idempotent-replayed)"
check "replay: the original sum" 10 "$(json current_sum)"
add beta a-1 10
check "the same key on another sum is another request: applied" "200  10" "$STATUS $(header idempotent-replayed) $(json current_sum)"
check "... both sums added once" "10 10" "$(named_sum alpha) $(named_sum beta)"
add alpha a-1 10 "$USER2"
check "the same key by another API key: applied" "200 20" "$STATUS $(json current_sum)"
add alpha a-1 11
expect_problem "the same key, same sum, another number" 422 idempotency-key-conflict
add beta a-1 11
expect_problem "... and on the other sum too (its own record)" 422 idempotency-key-conflict
check "sums unchanged by the 422s" "20 10" "$(named_sum alpha) $(named_sum beta)"
g POST /abacus/sums/alpha/number "${U1[@]}" "${J[@]}" -d '{"number": 1}'
expect_problem "POST a named sum without Idempotency-Key" 400 idempotency-key-missing
add alpha bad-1 '"1"'
expect_problem "a string number without the opt-in" 400 invalid-number
add alpha bad-2 '1.5'
expect_problem "a fraction" 400 invalid-number
g POST /abacus/sums/alpha/number "${U1[@]}" -H 'Idempotency-Key: t-1' -H 'Content-Type: text/plain' -d '{"number": 1}'
expect_problem "text/plain on a named sum" 415 unsupported-media-type
add alpha bad-1 1
check "a key refused for validation stays unused" "200 21" "$STATUS $(json current_sum)"

# ---- PUT and DELETE (admin) ----
g PUT /abacus/sums/gamma "${AD[@]}" "${J[@]}" -d '{"number": -17}'
check "PUT creates gamma: 200" 200 "$STATUS"
check "PUT gamma: body" '{"message":"Sum set successfully.","name":"gamma","new_sum":-17}' "$BODY"
check "PUT gamma: visible through B" -17 "$(named_sum gamma)"
g PUT /abacus/sums/gamma "${U1[@]}" "${J[@]}" -d '{"number": 1}'
expect_problem "PUT a named sum with a non-admin key" 403 admin-required
g DELETE /abacus/sums/gamma "${U1[@]}"
expect_problem "DELETE a named sum with a non-admin key" 403 admin-required
g GET /abacus/sums/gamma/ledger "${U1[@]}"
expect_problem "a named ledger with a non-admin key" 403 admin-required
g GET /abacus/sums/gamma
expect_problem "GET a named sum without a key" 401 unauthorized
g GET /abacus/sums "-H" "X-API-Key: nope-$RANDOM"
expect_problem "the listing with an unknown key" 403 forbidden
check "gamma unchanged by refused calls" -17 "$(named_sum gamma)"
g PUT /abacus/sums/gamma "${AD[@]}" "${J[@]}" -d '{"number": 9223372036854775807}'
add gamma over-1 1
expect_problem "past INT64_MAX on a named sum" 409 sum-out-of-range
check "gamma unchanged after 409" 9223372036854775807 "$(named_sum gamma)"
g DELETE /abacus/sums/gamma "${AD[@]}"
check "DELETE gamma: 200" 200 "$STATUS"
check "DELETE gamma: body" '{"message":"Sum deleted successfully.","name":"gamma"}' "$BODY"
g GET /abacus/sums/gamma "${U1[@]}"
expect_problem "GET after DELETE" 404 sum-not-found
g DELETE /abacus/sums/gamma "${AD[@]}"
expect_problem "DELETE after DELETE" 404 sum-not-found
check "gamma's sum is gone from Redis" 0 "$(redis-cli -p "$RPORT" exists '{abacus/gamma}:sum')"
check "gamma is gone from the registry" "" "$(redis-cli -p "$RPORT" zscore '{abacus}:sums' gamma)"
add gamma g-after 3
check "a deleted name can be created again, from nothing" "200 3" "$STATUS $(json current_sum)"

# ---- the named ledger ----
g GET /abacus/sums/alpha/ledger "${AD[@]}"
check "alpha's ledger: 200" 200 "$STATUS"
check "alpha's ledger: its own entries (add 10, 10, 1) and sum" "add:10:10 add:10:20 add:1:21 sum=21" "$(printf '%s' "$BODY" | python3 -c '
import json, sys
d = json.load(sys.stdin)
print(" ".join("%s:%s:%s" % (e["op"], e["number"], e["sum"]) for e in d["entries"]), "sum=%s" % d["sum"])')"
g GET '/abacus/sums/alpha/ledger?limit=1' "${AD[@]}"
check "alpha's ledger pages" 1 "$(printf '%s' "$BODY" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["entries"]))')"
g GET '/abacus/sums/alpha/ledger?limit=0' "${AD[@]}"
expect_problem "named ledger limit=0" 400 invalid-query
g GET '/abacus/sums/alpha/ledger?cursor=x' "${AD[@]}"
expect_problem "named ledger with an unknown parameter" 400 invalid-query
g GET /abacus/sum/ledger "${AD[@]}"
check "the default ledger holds nothing of alpha" 0 "$(printf '%s' "$BODY" | grep -c '"idempotency_key":"a-1"')"

# ---- HEAD ----
g GET /abacus/sums/alpha "${U1[@]}"; len=$(header content-length)
g HEAD /abacus/sums/alpha "${U1[@]}"
check "HEAD a named sum: GET's status and length" "200 $len" "$STATUS $(header content-length)"
g GET /abacus/sums "${U1[@]}"; len=$(header content-length)
g HEAD /abacus/sums "${U1[@]}"
check "HEAD the listing: GET's status and length" "200 $len" "$STATUS $(header content-length)"
g HEAD /abacus/sums/nope "${U1[@]}"
check "HEAD a never-written name: 404" 404 "$STATUS"

# ---- 405 with Allow ----
g PATCH /abacus/sums/alpha "${U1[@]}"
expect_problem "PATCH a named sum" 405 method-not-allowed
check "PATCH a named sum: Allow" "get, head, put, delete" "$(header allow)"
g POST /abacus/sums/alpha "${U1[@]}" "${J[@]}" -d '{"number": 1}'
check "POST on the sum itself: 405, Allow" "405 get, head, put, delete" "$STATUS $(header allow)"
g GET /abacus/sums/alpha/number "${U1[@]}"
check "GET a named number: 405, Allow" "405 post" "$STATUS $(header allow)"
g DELETE /abacus/sums/alpha/ledger "${AD[@]}"
check "DELETE a named ledger: 405, Allow" "405 get, head" "$STATUS $(header allow)"
g POST /abacus/sums "${U1[@]}" "${J[@]}" -d '{"number": 1}'
check "POST the listing: 405, Allow" "405 get, head" "$STATUS $(header allow)"
g PATCH '/abacus/sums/a%2Fb' "${U1[@]}"
check "405 comes before the name's 400" 405 "$STATUS"

# ---- query parameters of the named routes ----
g GET '/abacus/sums/alpha?x=1' "${U1[@]}"
expect_problem "a named sum with an unknown parameter" 400 invalid-query
g GET '/abacus/sum?x=1' "${U1[@]}"
check "the original route still ignores unknown parameters" 200 "$STATUS"

# ---- the listing: 130 names, paged ----
names=()
for i in $(seq 100 229); do names+=("n$i"); done
for n in "${names[@]}"; do
  curl -s -o /dev/null --max-time 10 -X PUT "$A/abacus/sums/$n" "${AD[@]}" "${J[@]}" -d "{\"number\": ${n#n}}"
done
g GET /abacus/sums "${U1[@]}"
check "listing: 200" 200 "$STATUS"
check "listing: default page is 50 long, next is its last name" "50 True" "$(printf '%s' "$BODY" | python3 -c '
import json, sys
d = json.load(sys.stdin)
print(len(d["sums"]), d["next"] == d["sums"][-1]["name"])')"
printf '%s' "$BODY" | python3 -c '
import json, sys
d = json.load(sys.stdin)
print(json.dumps(d["sums"][:2]))' >"$TMP/first-two"
check "listing: entries are name and current_sum (alpha first)" '[{"name": "alpha", "current_sum": 21}, {"name": "beta", "current_sum": 10}]' "$(cat "$TMP/first-two")"
cursor=""; pages=0; : >"$TMP/listed"
while [ $pages -lt 20 ]; do
  g GET "/abacus/sums?limit=37${cursor:+&cursor=$cursor}" "${U1[@]}"
  [ "$STATUS" = 200 ] || break
  pages=$((pages + 1))
  printf '%s' "$BODY" | python3 -c '
import json, sys
d = json.load(sys.stdin)
assert len(d["sums"]) <= 37
for e in d["sums"]:
    print("%s %s" % (e["name"], e["current_sum"]))' >>"$TMP/listed"
  cursor=$(json next)
  [ "$cursor" = null ] && break
done
check "listing: the last page says next null" null "$cursor"
check "listing: pages of 37 over 134 sums" 4 "$pages"
want=$( { printf '%s\n' alpha beta default gamma "${names[@]}"; } | LC_ALL=C sort | tr '\n' ' ')
check "listing: every name exactly once, sorted byte by byte, default among them" "$want" "$(cut -d' ' -f1 "$TMP/listed" | tr '\n' ' ')"
check "listing: the values" "default 0|n100 100|n229 229" "$(grep -E '^(n100|n229|default) ' "$TMP/listed" | tr '\n' '|' | sed 's/|$//')"
g GET '/abacus/sums?limit=100' "${U1[@]}"
check "listing: limit=100 gives 100" 100 "$(printf '%s' "$BODY" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["sums"]))')"
g GET '/abacus/sums?limit=1&cursor=n228' "${U1[@]}"
check "listing: limit=1 after n228" '{"sums":[{"name":"n229","current_sum":229}],"next":null}' "$BODY"
g GET '/abacus/sums?cursor=zzz' "${U1[@]}"
check "listing: a cursor past every name" '200 {"sums":[],"next":null}' "$STATUS $BODY"
g DELETE /abacus/sums/n150 "${AD[@]}"
g GET '/abacus/sums?limit=2&cursor=n149' "${U1[@]}"
check "listing: a deleted name is gone from it" '{"sums":[{"name":"n151","current_sum":151},{"name":"n152","current_sum":152}],"next":"n152"}' "$BODY"
for q in 'limit=0' 'limit=101' 'limit=-1' 'limit=abc' 'limit=' 'limit=01' 'limit=5&limit=6' 'cursor=' 'cursor=a%2Fb' 'cursor=..' "cursor=$(printf 'x%.0s' $(seq 1 65))" 'cursor=a&cursor=b' 'after=n1' 'x=1' 'limit' 'int64=number'; do
  g GET "/abacus/sums?$q" "${U1[@]}"
  expect_problem "listing ?$q" 400 invalid-query
done

# ---- bad names: 400 invalid-sum-name, nothing reaches Redis ----
before=$(keys_now)
scripts_before=$(evalsha_calls "$MAIN_RPORT")
long=$(printf 'x%.0s' $(seq 1 65))
for p in /abacus/sums/ "/abacus/sums/$long" /abacus/sums/a/b /abacus/sums/a/b/number /abacus/sums/a/number/ \
         /abacus/sums/a%2Fb /abacus/sums/%61 /abacus/sums/. /abacus/sums/.. \
         /abacus/sums/./alpha /abacus/sums/../sum /abacus/sums/alpha/../beta /abacus/sums/%2e%2e \
         /abacus/sums/caf%C3%A9 $'/abacus/sums/caf\xc3\xa9' /abacus/sums/a:b '/abacus/sums/{a}' '/abacus/sums/a%7Bb%7D' \
         /abacus/sums/-a /abacus/sums/_a /abacus/sums/a+b '/abacus/sums/a%20b' /abacus/sums/number /abacus/sums/ledger \
         /abacus/sums/sums /abacus/sums/sum /abacus/sums/ledger/ledger //abacus/sums/x/y; do
  g GET "$p" "${U1[@]}"
  case $p in
    //*) check "GET $p: 404 (not under /abacus/sums/)" 404 "$STATUS" ;;
    *) expect_problem "GET $p" 400 invalid-sum-name ;;
  esac
done
for p in /abacus/sums/a:b/number '/abacus/sums/{x}/number' /abacus/sums/../number /abacus/sums/number/number /abacus/sums/a%2Fb/number; do
  g POST "$p" "${U1[@]}" -H "Idempotency-Key: bad-$RANDOM" "${J[@]}" -d '{"number": 1}'
  expect_problem "POST $p" 400 invalid-sum-name
done
for p in '/abacus/sums/{abacus}' /abacus/sums/.. /abacus/sums/ledger; do
  g PUT "$p" "${AD[@]}" "${J[@]}" -d '{"number": 1}'
  expect_problem "PUT $p" 400 invalid-sum-name
  g DELETE "$p" "${AD[@]}"
  expect_problem "DELETE $p" 400 invalid-sum-name
done
g GET /abacus/sums/a:b
expect_problem "a bad name is refused before auth (like a 404)" 400 invalid-sum-name
# Above the root: nginx refuses the request itself (its own 400), lighttpd
# passes it on and the worker answers invalid-sum-name: a 400 either way.
g GET /abacus/sums/../../../etc "${U1[@]}"
check "dot segments above the root: 400 on either front end" 400 "$STATUS"
check "Redis unchanged by every bad name (keys and DBSIZE)" "$before" "$(keys_now)"
# Not one script ran: no bad name was served as another sum (the default one's keys exist, and would not change).
check "no script ran for a bad name (EVALSHA calls)" "$scripts_before" "$(evalsha_calls "$MAIN_RPORT")"

# ---- ABACUS_MAX_SUMS ----
start_stack small ABACUS_API_KEYS="$USER1" ABACUS_ADMIN_API_KEYS="$ADMIN" ABACUS_MAX_SUMS=3 \
  ABACUS_RATE_LIMIT_REQUESTS=100000 || exit 1
S=http://127.0.0.1:$P1
sadd() { req POST "$S/abacus/sums/$1/number" "${U1[@]}" -H "Idempotency-Key: $2" "${J[@]}" -d "{\"number\": $3}"; }
sadd s1 k1 1; sadd s2 k2 2; sadd s3 k3 3
check "three names fit ABACUS_MAX_SUMS=3" "200 3" "$STATUS $(json current_sum)"
sadd s4 k4 4
expect_problem "the fourth name" 409 too-many-sums
req GET "$S/abacus/sums/s4" "${U1[@]}"
check "... and nothing was created" 404 "$STATUS"
check "... not even a key" "" "$(redis-cli -p "$RPORT" --scan --pattern '{abacus/s4}*')"
req PUT "$S/abacus/sums/s5" "${AD[@]}" "${J[@]}" -d '{"number": 5}'
expect_problem "a PUT creating a fourth" 409 too-many-sums
sadd s1 k1b 10
check "existing names are still writable" "200 11" "$STATUS $(json current_sum)"
post "$P1" "$USER1" kd 7
check "the default sum does not count" "200 7" "$STATUS $(json current_sum)"
sadd s4 k4 4
check "a refused key stays unused (still 409, not a replay)" 409 "$STATUS"
req DELETE "$S/abacus/sums/s2" "${AD[@]}"
check "DELETE frees a place" 200 "$STATUS"
sadd s4 k4 4
check "... and the fourth fits now" "200 4" "$STATUS $(json current_sum)"
req GET "$S/abacus/sums" "${U1[@]}"
check "the listing of the small stack" '{"sums":[{"name":"default","current_sum":7},{"name":"s1","current_sum":11},{"name":"s3","current_sum":3},{"name":"s4","current_sum":4}],"next":null}' "$BODY"

# ---- ?int64=string, old and new routes ----
big=9007199254740996
req PUT "$A/abacus/sum" "${AD[@]}" "${J[@]}" -d "{\"number\": $big}"
req GET "$A/abacus/sum?int64=string" "${U1[@]}"
check "GET /abacus/sum?int64=string" "{\"current_sum\":\"$big\"}" "$BODY"
req GET "$A/abacus/sum" "${U1[@]}"
check "GET /abacus/sum without it: a number, as always" "{\"current_sum\":$big}" "$BODY"
req POST "$A/abacus/number?int64=string" "${U1[@]}" -H 'Idempotency-Key: s-1' "${J[@]}" -d '{"number": "1"}'
check "POST /abacus/number?int64=string with a string number" "{\"message\":\"Number added successfully.\",\"current_sum\":\"9007199254740997\"}" "$BODY"
req POST "$A/abacus/number?int64=string" "${U1[@]}" -H 'Idempotency-Key: s-2' "${J[@]}" -d '{"number": -1}'
check "... and with a JSON integer" "{\"message\":\"Number added successfully.\",\"current_sum\":\"$big\"}" "$BODY"
req POST "$A/abacus/number?int64=string" "${U1[@]}" -H 'Idempotency-Key: s-1' "${J[@]}" -d '{"number": 1}'
check "a replay: the string \"1\" and the integer 1 are the same number" "200 true" "$STATUS $(header idempotent-replayed)"
for bad in '"01"' '"-0"' '" 1"' '"1.0"' '"+1"' '""' '"9223372036854775808"' '"\u0031"'; do
  req POST "$A/abacus/number?int64=string" "${U1[@]}" -H "Idempotency-Key: sb-$RANDOM" "${J[@]}" -d "{\"number\": $bad}"
  expect_problem "int64=string, number $bad" 400 invalid-number
done
req PUT "$A/abacus/sum?int64=string" "${AD[@]}" "${J[@]}" -d "{\"number\": \"$big\"}"
check "PUT /abacus/sum?int64=string" "{\"message\":\"Sum set successfully.\",\"new_sum\":\"$big\"}" "$BODY"
req PUT "$A/abacus/sums/big?int64=string" "${AD[@]}" "${J[@]}" -d "{\"number\": \"$big\"}"
check "PUT a named sum ?int64=string" "{\"message\":\"Sum set successfully.\",\"name\":\"big\",\"new_sum\":\"$big\"}" "$BODY"
req GET "$A/abacus/sums/big?int64=string" "${U1[@]}"
check "GET a named sum ?int64=string" "{\"name\":\"big\",\"current_sum\":\"$big\"}" "$BODY"
req POST "$A/abacus/sums/big/number?int64=string" "${U1[@]}" -H 'Idempotency-Key: s-3' "${J[@]}" -d '{"number": "-9007199254740996"}'
check "POST a named sum ?int64=string" '{"message":"Number added successfully.","name":"big","current_sum":"0"}' "$BODY"
req GET "$A/abacus/sums?int64=string&cursor=beta&limit=1" "${U1[@]}"
check "the listing ?int64=string" '{"sums":[{"name":"big","current_sum":"0"}],"next":"big"}' "$BODY"
req GET "$A/abacus/sum/ledger?int64=string" "${AD[@]}"
check "the default ledger ?int64=string: every number, sum and was a string, exact" "ok" "$(printf '%s' "$BODY" | python3 -c '
import json, sys
d = json.load(sys.stdin)
assert isinstance(d["sum"], str) and d["sum"] == "9007199254740996", d["sum"]
for e in d["entries"]:
    for k in ("number", "sum", "was"):
        if k in e and e[k] is not None:
            assert isinstance(e[k], str) and str(int(e[k])) == e[k], (k, e)
assert any(e["number"] == "9007199254740996" for e in d["entries"])
print("ok")' 2>&1 | tail -n 1)"
req GET "$A/abacus/sums/big/ledger?int64=string&limit=5" "${AD[@]}"
check "a named ledger ?int64=string" '"9007199254740996" "9007199254740996" | "-9007199254740996" "0" | sum "0"' "$(printf '%s' "$BODY" | python3 -c '
import json, sys
d = json.load(sys.stdin)
print(" | ".join("%s %s" % (json.dumps(e["number"]), json.dumps(e["sum"])) for e in d["entries"]), "| sum", json.dumps(d["sum"]))')"
req DELETE "$A/abacus/sum?int64=string" "${AD[@]}"
check "DELETE /abacus/sum?int64=string" '{"message":"Sum reset successfully.","new_sum":"0"}' "$BODY"
for q in int64=number int64=String int64= int64 'int64=string&int64=string'; do
  req GET "$A/abacus/sum?$q" "${U1[@]}"
  expect_problem "GET /abacus/sum?$q" 400 invalid-query
  req GET "$A/abacus/sums/big?$q" "${U1[@]}"
  expect_problem "GET /abacus/sums/big?$q" 400 invalid-query
done
req GET "$A/healthz?int64=string"
check "health routes ignore int64 as every parameter" '200 {"status":"ok"}' "$STATUS $BODY"

# ---- metrics: route templates, never a name ----
req GET "$A/metrics"
m=$BODY
for ep in '/abacus/sums' '/abacus/sums/{name}' '/abacus/sums/{name}/number' '/abacus/sums/{name}/ledger'; do
  check_match "metrics: endpoint $ep" "abacus_request_total\\{endpoint=\"${ep//[\{\}]/.}\"" "$m"
done
check "metrics: no name of a sum in any label" "" "$(printf '%s\n' "$m" | grep -E 'alpha|beta|gamma|"n[12][0-9][0-9]|big' | grep -v '^#' | head -n 2)"
check "metrics: the 400s of bad names count under the {name} template" 1 "$(printf '%s\n' "$m" | grep -c 'abacus_request_total{endpoint="/abacus/sums/{name}",method="GET",status="400"}')"

# ---- logs: events carry the name, never a Redis key ----
logs=$(cat "$STACK"/../stack-main/frontend-*/error.log)
check_match "sum_added carries the name" '"event":"sum_added".*"delta":10.*"name":"alpha"' "$logs"
check_match "sum_deleted carries the name" '"event":"sum_deleted".*"name":"gamma"' "$logs"
check_match "the original routes' events say default" '"event":"sum_added".*"delta":5.*"name":"default"' "$logs"
check_match "too_many_sums is logged with the name" '"event":"too_many_sums".*"name":"s4"' "$(cat "$STACK"/frontend-*/error.log)"
check "no Redis key in any log line" "" "$(cat "$TMP"/stack-*/frontend-*/error.log | grep -F '{abacus' | head -n 1)"

# ---- every status observed here is one docs/openapi.yaml declares ----
undeclared=$(python3 - "$ROOT/docs/openapi.yaml" "$OBSERVE" <<'PY'
import re, sys, yaml
doc = yaml.safe_load(open(sys.argv[1]))
paths = doc["paths"]
def template(path):
    if path.startswith("/abacus/sums/"):
        m = re.match(r"^/abacus/sums/[^/]*(/number|/ledger)?$", path)
        return "/abacus/sums/{name}" + (m.group(1) or "") if m else "/abacus/sums/{name}"
    return path
bad = set()
for line in open(sys.argv[2]):
    method, path, status = line.split()[:3]
    path = template(path)
    op = paths.get(path, {}).get(method.lower())
    anywhere_405 = any("405" in o.get("responses", {}) for p in paths.values() for o in p.values() if isinstance(o, dict))
    if path not in paths:
        ok = status in ("400", "404")
    else:
        ok = (op is not None and status in op["responses"]) or (status == "405" and anywhere_405)
    if not ok:
        bad.add("%s %s %s" % (method, path, status))
print(" | ".join(sorted(bad)))
PY
)
check "every observed status is declared in docs/openapi.yaml" "" "$undeclared"

suite_end
