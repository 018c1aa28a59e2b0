#!/usr/bin/env bash
# Rate limiting (SPEC section 5) shared by two front ends through Redis: exact
# budgets, headers, no effect when refused, never more than the limit in any
# window-long interval, and X-Forwarded-For believed only from trusted proxies.
set -u
. "$(dirname "$0")/lib.sh"
suite_init ratelimit
export WORKERS=2
K1=rl-key-1-$RANDOM
K2=rl-key-2-$RANDOM

# ---- 20 per 60 s: 30 requests with one key over both front ends ----
start_stack twenty ABACUS_API_KEYS="$K1,$K2" ABACUS_RATE_LIMIT_REQUESTS=20 ABACUS_RATE_LIMIT_WINDOW_SECONDS=60 || exit 1
ok=0; limited=0; remaining=""; bad_t=0; bad_429=0
for i in $(seq 1 30); do
  post "$((i % 2 ? P1 : P2))" "$K1" "rl-$i" 1
  case $STATUS in
    200) ok=$((ok + 1))
         remaining="$remaining$(header ratelimit | sed -n 's/.*r=\([0-9]*\);.*/\1/p') "
         t=$(header ratelimit | sed -n 's/.*;t=\([0-9]*\)$/\1/p')
         { [ "${t:-0}" -ge 1 ] && [ "$t" -le 60 ]; } || bad_t=$((bad_t + 1)) ;;
    429) limited=$((limited + 1))
         ra=$(header retry-after)
         { [ "${ra:-0}" -ge 1 ] && [ "$ra" -le 60 ] && [[ $BODY == *urn:abacus:problem:rate-limited* ]] &&
           [[ $(header ratelimit) == '"default";r=0;'* ]] && [ "$(header content-type)" = application/problem+json ]; } ||
           bad_429=$((bad_429 + 1)) ;;
  esac
done
check "exactly 20 of 30 succeed" 20 "$ok"
check "the other 10 get 429" 10 "$limited"
check "RateLimit r counts down" "19 18 17 16 15 14 13 12 11 10 9 8 7 6 5 4 3 2 1 0 " "$remaining"
check "RateLimit t is within the window" 0 "$bad_t"
check "every 429 has Retry-After, r=0 and a problem body" 0 "$bad_429"
check "RateLimit-Policy" '"default";q=20;w=60' "$(header ratelimit-policy)"
check "refused POSTs left the sum unchanged" 20 "$(sum_at "$P1" "$K2")"
check "refused POSTs recorded no idempotency key" 20 "$(redis-cli -p "$RPORT" --scan --pattern '{abacus}:idem:*:rl-*' | wc -l)"
req GET "http://127.0.0.1:$P2/abacus/sum" -H "X-API-Key: $K2"
check "another key is unaffected" "200 r=18" "$STATUS $(header ratelimit | grep -o 'r=[0-9]*')"
req GET "http://127.0.0.1:$P1/abacus/sum" -H "X-API-Key: $K1"
check "GET is limited too" 429 "$STATUS"
ok=0
for i in $(seq 1 25); do req GET "http://127.0.0.1:$P1/healthz"; [ "$STATUS" = 200 ] && [ -z "$(header ratelimit)" ] && ok=$((ok + 1)); done
check "health routes are never limited" 25 "$ok"
req GET "http://127.0.0.1:$P1/abacus/sum" -H "X-API-Key: wrong"
check "a request refused by auth never reaches the limiter" "403 " "$STATUS $(header ratelimit)"
post "$P1" "$K1" rl-x 1.5
check "a request refused by validation never reaches the limiter" "400 " "$STATUS $(header ratelimit)"
check_match "rate limits are logged" '"event":"rate_limited"' "$(cat "$STACK"/frontend-*/error.log)"
stop_stack

# ---- 5 per 2 s: never more than 5 in any 2-second interval ----
start_stack short ABACUS_API_KEYS="$K1" ABACUS_RATE_LIMIT_REQUESTS=5 ABACUS_RATE_LIMIT_WINDOW_SECONDS=2 || exit 1
ok=0
for i in $(seq 1 5); do post "$((i % 2 ? P1 : P2))" "$K1" "burst-$i" 1; [ "$STATUS" = 200 ] && ok=$((ok + 1)); done
check "a burst of 5 passes" 5 "$ok"
post "$P1" "$K1" burst-6 1
check "the 6th is refused" 429 "$STATUS"
retry=$(header retry-after)
check_match "Retry-After is about the window" '^[12]$' "$retry"
sleep 1.2
post "$P2" "$K1" burst-7 1
check "1.2 s later, across where a fixed window's edge could be, still refused" 429 "$STATUS"
sleep "$(python3 -c "print(max(0.0, $retry - 1.2) + 0.1)")"
post "$P2" "$K1" burst-8 1
check "the budget is back at the advertised time" 200 "$STATUS"

# A steady hammering for 6 s: log the client-side time of every success.
redis-cli -p "$RPORT" del '{abacus}:rl:k:'"$(printf '%s' "$K1" | sha256sum | cut -c1-8)" >/dev/null
python3 - "$P1" "$P2" "$K1" >"$TMP/hammer.txt" <<'PY'
import http.client, sys, time
p1, p2, key = sys.argv[1:]
conns = [http.client.HTTPConnection("127.0.0.1", int(p), timeout=5) for p in (p1, p2)]
start = time.monotonic()
i = 0
while time.monotonic() - start < 6.0 and i < 5000:
    c = conns[i % 2]
    sent = time.monotonic()
    c.request("POST", "/abacus/number", body='{"number": 1}', headers={
        "X-API-Key": key, "Idempotency-Key": "h-%d" % i, "Content-Type": "application/json"})
    r = c.getresponse(); r.read()
    if r.status == 200:
        print("%.4f" % (sent - start))
    i += 1
    time.sleep(0.01)
PY
worst=$(python3 - "$TMP/hammer.txt" <<'PY'
import sys
t = [float(x) for x in open(sys.argv[1])]
# Client clocks see each admission up to a few ms late: use intervals of
# 2 s minus 50 ms, which a correct limiter can never fill with 6.
print(max((sum(1 for u in t if s <= u < s + 1.95) for s in t), default=0))
PY
)
check "no 1.95-second interval of a 6-second hammering has more than 5 successes" 5 "$worst"
check_true "the budget keeps coming back (at least 10 successes in 6 s)" test "$(wc -l <"$TMP/hammer.txt")" -ge 10
stop_stack

# ---- the limiter's own records: old entries trimmed, the set expires when idle ----
start_stack trim ABACUS_API_KEYS="$K1" ABACUS_RATE_LIMIT_REQUESTS=100000 ABACUS_RATE_LIMIT_WINDOW_SECONDS=1 || exit 1
RL='{abacus}:rl:k:'"$(printf '%s' "$K1" | sha256sum | cut -c1-8)"
python3 - "$P1" "$K1" <<'PY'
import http.client, sys, time
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=5)
start = time.monotonic()
for i in range(400):                      # ~2.5 s: 2.5 windows of admissions
    c.request("GET", "/abacus/sum", headers={"X-API-Key": sys.argv[2]})
    c.getresponse().read()
    time.sleep(max(0.0, start + (i + 1) * 0.00625 - time.monotonic()))
PY
size=$(redis-cli -p "$RPORT" zcard "$RL")
# About 160 admissions lie in the last second; entries older than that are
# removed by every sixteenth admission or so (P(more than 150 stale) < 1e-4).
check_true "the limiter's set keeps about one window of entries ($size of 400)" test "$size" -le 310
ttl=$(redis-cli -p "$RPORT" pttl "$RL")
check_true "the limiter's set expires a window after the last admission (pttl $ttl ms)" test "$ttl" -gt 0 -a "$ttl" -le 1000
sleep 1.2
check "an idle caller's set is gone after the window" 0 "$(redis-cli -p "$RPORT" exists "$RL")"
stop_stack

# ---- ABACUS_RATE_LIMIT_ENABLED=false: no limit, no headers, no records ----
start_stack off ABACUS_API_KEYS="$K1" ABACUS_RATE_LIMIT_ENABLED=false ABACUS_RATE_LIMIT_REQUESTS=2 || exit 1
ok=0
for i in $(seq 1 5); do
  post "$((i % 2 ? P1 : P2))" "$K1" "off-$i" 1
  [ "$STATUS" = 200 ] && [ -z "$(header ratelimit)$(header ratelimit-policy)" ] && ok=$((ok + 1))
done
check "with the limiter off, 5 POSTs over a limit of 2 pass without RateLimit headers" 5 "$ok"
check "with the limiter off, nothing is recorded for it" 0 "$(redis-cli -p "$RPORT" --scan --pattern '{abacus}:rl:*' | wc -l)"
stop_stack

# ---- auth off: per client address; X-Forwarded-For only from trusted proxies ----
start_stack open ABACUS_AUTH_ENABLED=false ABACUS_RATE_LIMIT_REQUESTS=3 || exit 1
ok=0
for i in $(seq 1 5); do
  req GET "http://127.0.0.1:$P1/abacus/sum" -H "X-Forwarded-For: 203.0.113.$i"
  [ "$STATUS" = 200 ] && ok=$((ok + 1))
done
check "a client forging X-Forwarded-For gets no fresh budget" 3 "$ok"
stop_stack

start_stack proxied ABACUS_AUTH_ENABLED=false ABACUS_RATE_LIMIT_REQUESTS=3 ABACUS_TRUSTED_PROXIES=127.0.0.1 || exit 1
ok=0
for i in $(seq 1 5); do
  req GET "http://127.0.0.1:$P2/abacus/sum" -H "X-Forwarded-For: 203.0.113.$i"
  [ "$STATUS" = 200 ] && ok=$((ok + 1))
done
check "behind a trusted proxy each forwarded client has its own budget" 5 "$ok"
ok=0
for i in $(seq 1 4); do
  req GET "http://127.0.0.1:$P1/abacus/sum" -H "X-Forwarded-For: 198.51.100.7"
  [ "$STATUS" = 200 ] && ok=$((ok + 1))
done
check "... and that budget is shared by both front ends and enforced" 3 "$ok"
check "the identity is the forwarded address" 1 "$(redis-cli -p "$RPORT" exists '{abacus}:rl:ip:198.51.100.7')"
stop_stack

suite_end
