#!/usr/bin/env bash
# The ledger (issue 20): one entry per applied change, none per replay or
# refusal, paged reading for admins, retention, bytes per entry, and
# tools/abacus-audit passing on real histories and failing, with a clear
# message, on doctored ones.
set -u
. "$(dirname "$0")/lib.sh"
suite_init ledger
use_load_tool
export WORKERS=2
K=ledger-key-$RANDOM$RANDOM
ADMIN=ledger-admin-$RANDOM$RANDOM
AUDIT=$ROOT/tools/abacus-audit
kid() { printf '%s' "$1" | sha256sum | cut -c1-8; }
rcli() { redis-cli -p "$RPORT" "$@"; }
# ledger QUERY [KEY]: GET /abacus/sum/ledger?QUERY on front end 2.
ledger() { req GET "http://127.0.0.1:$P2/abacus/sum/ledger${1:+?$1}" -H "X-API-Key: ${2:-$ADMIN}"; }
# fields: the entries of BODY as "op number sum key_id idempotency_key request_id" lines.
fields() {
  printf '%s' "$BODY" | python3 -c '
import json, sys
for e in json.load(sys.stdin)["entries"]:
    print(e["op"], e["number"], e["sum"], *(["was", e["was"]] if "was" in e else []), e["key_id"], e["idempotency_key"], e["request_id"])'
}

start_stack main ABACUS_API_KEYS="$K" ABACUS_ADMIN_API_KEYS="$ADMIN" ABACUS_RATE_LIMIT_REQUESTS=1000000 || exit 1

# ---- one entry per applied change, none per replay or refused request ----
for i in 1 2 3; do
  req POST "http://127.0.0.1:$P1/abacus/number" -H "X-API-Key: $K" -H "Idempotency-Key: led-$i" \
    -H "X-Request-ID: req-add-$i" -H 'Content-Type: application/json' -d "{\"number\": $((i * 10))}"
done
check "three additions" "200 60" "$STATUS $(json current_sum)"
post "$P2" "$K" led-1 10
check "a replay" "200 true" "$STATUS $(header idempotent-replayed)"
post "$P2" "$K" led-1 11
check "a conflict" 422 "$STATUS"
post "$P1" "$K" led-9 1.5
check "a bad number" 400 "$STATUS"
req POST "http://127.0.0.1:$P1/abacus/number" -H "X-API-Key: wrong" -H "Idempotency-Key: led-8" \
  -H 'Content-Type: application/json' -d '{"number": 1}'
check "a wrong key" 403 "$STATUS"
req PUT "http://127.0.0.1:$P1/abacus/sum" -H "X-API-Key: $ADMIN" -H "X-Request-ID: req-set" \
  -H 'Content-Type: application/json' -d '{"number": -5}'
check "a set" 200 "$STATUS"
req DELETE "http://127.0.0.1:$P2/abacus/sum" -H "X-API-Key: $ADMIN" -H "X-Request-ID: req-reset"
check "a reset" 200 "$STATUS"
req POST "http://127.0.0.1:$P2/abacus/number" -H "X-API-Key: $K" -H 'Idempotency-Key: q"uo\te' \
  -H "X-Request-ID: req-quote" -H 'Content-Type: application/json' -d '{"number": 9223372036854775807}'
check "an addition up to int64's maximum" 200 "$STATUS"
ledger ""
check "the ledger: 200 JSON for an admin" "200 application/json" "$STATUS $(header content-type)"
check "the ledger: exactly the applied changes, in order, with their fields" \
"add 10 10 $(kid "$K") led-1 req-add-1
add 20 30 $(kid "$K") led-2 req-add-2
add 30 60 $(kid "$K") led-3 req-add-3
set -5 -5 was 60 $(kid "$ADMIN") None req-set
reset 0 0 was -5 $(kid "$ADMIN") None req-reset
add 9223372036854775807 9223372036854775807 $(kid "$K") q\"uo\\te req-quote" "$(fields)"
check "... and the stream holds nothing else" 6 "$(rcli xlen '{abacus}:ledger')"
check_match "entry ids are Redis's clock in ms" '"id":"1[0-9]{12}-[0-9]+"' "$BODY"
check_match "the ledger read goes through the limiter" '^"default";r=' "$(header ratelimit)"
newest=$(rcli --raw xrevrange '{abacus}:ledger' + - COUNT 1 | head -n 1)
check "each page carries the sum and the newest entry's id, read with it" \
  "9223372036854775807 $newest" "$(printf '%s' "$BODY" | python3 -c 'import json,sys; p=json.load(sys.stdin); print(p["sum"], p["last"])')"

# ---- reading: pages, cursors, who may read ----
ledger "limit=2"
check "limit=2: the two oldest" "add 10
add 20" "$(fields | cut -d' ' -f1,2)"
next=$(json next)
ledger "after=$next&limit=3"
check "after=<next>: the three after them" "add 30
set -5
reset 0" "$(fields | cut -d' ' -f1,2)"
ledger "after=$(json next)"
check "... then the rest" "add 9223372036854775807" "$(fields | cut -d' ' -f1,2)"
ledger "after=$(json next)"
check "after the newest: no entry, next null" '[] None' "$(printf '%s' "$BODY" | python3 -c 'import json,sys; p=json.load(sys.stdin); print(p["entries"], p["next"])')"
ledger "after=18446744073709551615-18446744073709551615"
check "after the greatest id there can be: 200, no entry" '200 []' "$STATUS $(printf '%s' "$BODY" | python3 -c 'import json,sys; print(json.load(sys.stdin)["entries"])')"
req HEAD "http://127.0.0.1:$P1/abacus/sum/ledger" -H "X-API-Key: $ADMIN"
check "HEAD" "200 " "$STATUS $BODY"
for q in "after=abc" "after=1-" "after=-1" "after=123" "after=1-2-3" "after=99999999999999999999999-0" \
         "after=18446744073709551616-0" "after=0-18446744073709551616" "after=+1-0" "after=1-0x" \
         "limit=0" "limit=1001" "limit=-1" "limit=1.5" "limit=x" "limit=" "limit=1&limit=2" "after=1-0&after=2-0" \
         "cursor=1" "after" "limit=10&x=1"; do
  ledger "$q"
  check "?$q: 400 invalid-query" "400 urn:abacus:problem:invalid-query" "$STATUS $(json type)"
done
ledger "" "$K"
check "a key that is not an admin's: 403 admin-required" "403 urn:abacus:problem:admin-required" "$STATUS $(json type)"
req GET "http://127.0.0.1:$P1/abacus/sum/ledger"
check "no key: 401" 401 "$STATUS"
req POST "http://127.0.0.1:$P1/abacus/sum/ledger" -H "X-API-Key: $ADMIN" -H 'Content-Type: application/json' -d '{}'
check "POST: 405 with Allow" "405 get, head" "$STATUS $(header allow)"

# ---- the audit on a real history ----
req DELETE "http://127.0.0.1:$P2/abacus/sum" -H "X-API-Key: $ADMIN"     # room below int64's maximum
out=$("$LOAD" --target "http://127.0.0.1:$P1" --target "http://127.0.0.1:$P2" --requests 1500 --concurrency 8 \
  --idempotency --api-key "$K" --delta-range=-1000:1000 --out-csv "$TMP/load.csv" 2>&1)
check_match "a load of 1500 additions" 'succeeded: 1500  failed: 0 ' "$out"
out=$("$AUDIT" --url "http://127.0.0.1:$P1" --api-key "$ADMIN" --load-csv "$TMP/load.csv" 2>&1)
check "abacus-audit on the real history: exit 0" 0 "$?"
echo "$out" | tail -n 1 | sed 's/^/   /'
check_match "... one summary line: every acknowledged addition once" \
  '^abacus-audit: OK 1507 entries, 1506 chained, sum -?[0-9]+; load: 1500 acknowledged, 0 lost, 0 doubled, 0 unacknowledged but applied, 0 unexplained$' "$out"
out=$("$AUDIT" --url "http://127.0.0.1:$P1" --api-key "$K" 2>&1)
check "abacus-audit with a key that may not read the ledger: exit 2, says why" "2" "$?"
check_match "... could not audit, 403" 'could not audit: .*403' "$out"

# ---- the audit on doctored histories ----
# entry_ids [COUNT]: the ledger's entry ids, oldest first.
entry_ids() { rcli --raw xrange '{abacus}:ledger' - + ${1:+COUNT $1} | grep -E '^[0-9]{13}-[0-9]+$'; }
# entry_fields ID: the field/value pairs of one entry, one a line.
entry_fields() { rcli --raw xrange '{abacus}:ledger' "$1" "$1" | tail -n +2; }
# fresh_history CSV: an empty ledger and sum, then 300 additions recorded in CSV.
fresh_history() {
  rcli del '{abacus}:ledger' >/dev/null
  rcli set '{abacus}:sum' 0 >/dev/null
  "$LOAD" --target "http://127.0.0.1:$P1" --target "http://127.0.0.1:$P2" --requests 300 --concurrency 8 \
    --idempotency --api-key "$K" --delta-range=-1000:1000 --out-csv "$1" >/dev/null 2>&1
}
# audit_doctored NAME CSV REGEX: the audit must fail (exit 1), say REGEX, and end with one FAILED line.
audit_doctored() {
  local rc
  out=$("$AUDIT" --url "http://127.0.0.1:$P1" --api-key "$ADMIN" ${2:+--load-csv "$2"} 2>&1); rc=$?
  check "doctored ($1): the audit fails (exit 1)" 1 "$rc"
  check_match "doctored ($1): it says what is wrong" "$3" "$out"
  check_match "doctored ($1): its last line is the FAILED summary" '^abacus-audit: FAILED .*problems\)$' "$(echo "$out" | tail -n 1)"
}
victim=$(entry_ids 700 | tail -n 1)
rcli xdel '{abacus}:ledger' "$victim" >/dev/null
audit_doctored "an entry removed" "$TMP/load.csv" "lost: 'load-[0-9a-f-]+' was acknowledged and is not in the ledger"
check_match "... and the chain breaks right after it" 'entry [0-9]+-[0-9]+: the sum before it was' "$out"

fresh_history "$TMP/load2.csv"
out=$("$AUDIT" --url "http://127.0.0.1:$P1" --api-key "$ADMIN" --load-csv "$TMP/load2.csv" 2>&1)
check "a fresh history audits clean (its first entry starts the chain)" 0 "$?"
mapfile -t copy < <(entry_fields "$(entry_ids 100 | tail -n 1)")
rcli xadd '{abacus}:ledger' '*' "${copy[@]}" >/dev/null
audit_doctored "an entry duplicated" "$TMP/load2.csv" "doubled: 'load-[0-9a-f-]+' is in the ledger 2 times"
check_match "... and its Idempotency-Key applied twice" "applied twice" "$out"

fresh_history "$TMP/load5.csv"
req PUT "http://127.0.0.1:$P1/abacus/sum" -H "X-API-Key: $ADMIN" -H 'Content-Type: application/json' -d '{"number": 1}'
rcli xdel '{abacus}:ledger' "$(entry_ids | tail -n 2 | head -n 1)" >/dev/null
audit_doctored "the entry before a set removed, no CSV" "" 'entry [0-9]+-[0-9]+: the set found the sum at -?[0-9]+, but the entry before says -?[0-9]+'

fresh_history "$TMP/load3.csv"
rcli incrby '{abacus}:sum' 100 >/dev/null
audit_doctored "the sum changed behind the service's back" "" 'the newest entry \([0-9-]+\) says -?[0-9]+, the sum is -?[0-9]+'

fresh_history "$TMP/load4.csv"
last=$(entry_ids | tail -n 1)
mapfile -t forged < <(entry_fields "$last")
for i in "${!forged[@]}"; do
  [ "${forged[$i]}" = sum ] && forged[$((i + 1))]=$(( forged[$((i + 1))] + 1 ))
done
rcli xdel '{abacus}:ledger' "$last" >/dev/null
rcli xadd '{abacus}:ledger' '*' "${forged[@]}" >/dev/null
rcli incrby '{abacus}:sum' 1 >/dev/null      # the sum agrees with the forged entry: only the chain can tell
audit_doctored "an entry's sum changed" "$TMP/load4.csv" 'entry [0-9]+-[0-9]+: the sum before it was -?[0-9]+, plus -?[0-9]+ is -?[0-9]+, but it says -?[0-9]+'
stop_stack

# ---- a refused request appends nothing ----
start_stack limited ABACUS_API_KEYS="$K" ABACUS_RATE_LIMIT_REQUESTS=2 || exit 1
for i in 1 2 3 4; do post "$P1" "$K" lim-$i 1; done
check "over the limit: 429" 429 "$STATUS"
check "only the two admitted additions are in the ledger" 2 "$(rcli xlen '{abacus}:ledger')"
stop_stack

# ---- retention: entries older than it are trimmed by the appends themselves ----
# 4 s of retention: 600 old entries, 4.5 s of quiet, then 100 new ones (well
# within the retention even on a loaded machine): the appends trim the old
# ones (whole stream nodes: MINID ~), never one younger than the retention.
start_stack retention ABACUS_API_KEYS="$K" ABACUS_RATE_LIMIT_REQUESTS=1000000 ABACUS_LEDGER_RETENTION_SECONDS=4 \
  ABACUS_IDEMPOTENCY_TTL_SECONDS=1 || exit 1
"$LOAD" --target "http://127.0.0.1:$P1" --requests 600 --concurrency 4 --idempotency --api-key "$K" >/dev/null 2>&1
old_len=$(rcli xlen '{abacus}:ledger')
sleep 4.5
t0=$(date +%s%N)
"$LOAD" --target "http://127.0.0.1:$P1" --requests 100 --concurrency 2 --idempotency --api-key "$K" \
  --out-csv "$TMP/young.csv" >/dev/null 2>&1
took=$(( ($(date +%s%N) - t0) / 1000000 ))
len=$(rcli xlen '{abacus}:ledger')
young=$(rcli --raw xrange '{abacus}:ledger' - + | grep -cF "$(sed -n '2s/.*,POST,\(load-[0-9a-f]*-[0-9a-f]*-\).*/\1/p' "$TMP/young.csv")")
echo "measured: 4.5 s after $old_len entries, 100 appends (in $took ms) left $len entries (retention 4 s; MINID ~ trims whole nodes)"
check "600 old entries were there" 600 "$old_len"
check_true "the entries older than the retention were trimmed by the new appends ($len left)" test "$len" -lt 300
check "every entry younger than the retention is kept (the 100 appended within $took ms)" 100 "$young"
stop_stack

# ---- ABACUS_LEDGER_RETENTION_SECONDS=0: no ledger ----
start_stack off ABACUS_API_KEYS="$K" ABACUS_LEDGER_RETENTION_SECONDS=0 || exit 1
post "$P1" "$K" off-1 1
check "with the ledger off an addition writes no stream" "200 0" "$STATUS $(rcli exists '{abacus}:ledger')"
req GET "http://127.0.0.1:$P1/abacus/sum/ledger" -H "X-API-Key: $K"
check "... and reading it is 404 ledger-off" "404 urn:abacus:problem:ledger-off" "$STATUS $(json type)"
stop_stack

# ---- bytes per entry ----
start_stack bytes ABACUS_API_KEYS="$K" ABACUS_RATE_LIMIT_REQUESTS=1000000 ABACUS_REDIS_APPENDFSYNC=everysec || exit 1
"$LOAD" --target "http://127.0.0.1:$P1" --target "http://127.0.0.1:$P2" --requests 5000 --concurrency 8 \
  --idempotency --api-key "$K" --delta-range=-100000:100000 >/dev/null 2>&1
usage=$(rcli memory usage '{abacus}:ledger' samples 0)
n=$(rcli xlen '{abacus}:ledger')
per=$(( usage / (n > 0 ? n : 1) ))
echo "measured: ledger of $n entries (abacus-load keys, 6-digit numbers, 32-hex request ids): $usage bytes, $per bytes per entry"
check "5000 entries" 5000 "$n"
check_true "an entry costs under 200 bytes ($per)" test "$per" -lt 200
stop_stack

suite_end
