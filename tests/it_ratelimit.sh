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
# A loaded machine delays every request by an unknown amount, so nothing here
# sleeps to a deadline or times a client: what must hold is decided by
# Redis's clock.  MONITOR sees every admission the limiter records (its ZADD:
# score and member are the admission's microsecond of Redis's TIME), and each
# request is bracketed by Redis's TIME read just before it was sent and just
# after its answer came back (lines "status before after retry-after").
start_stack short ABACUS_API_KEYS="$K1,$K2" ABACUS_RATE_LIMIT_REQUESTS=5 ABACUS_RATE_LIMIT_WINDOW_SECONDS=2 || exit 1
redis-cli -p "$RPORT" monitor >"$TMP/short-monitor.txt" 2>/dev/null &
PIDS+=("$!")
wait_until 10 grep -q OK "$TMP/short-monitor.txt"

# redis_us: Redis's clock (TIME), in microseconds.
redis_us() { redis-cli -p "$RPORT" time | awk 'NR == 1 { s = $1 } NR == 2 { printf "%d%06d\n", s, $1 }'; }

# clocked_post PORT KEY IDEM FILE: POSTs +1; appends "status before after retry-after" to FILE.
clocked_post() {
  local before after
  before=$(redis_us)
  post "$1" "$2" "$3" 1
  after=$(redis_us)
  echo "$STATUS $before $after $(header retry-after | grep . || echo -)" >>"$4"
}

# limiter_audit KEY FILE: what the limiter (5 per 2 s) did to the requests in
# FILE, sent one after another with API key KEY, judged by the admissions
# Redis recorded (MONITOR).  Prints "worst early late badra recorded ok first":
#   worst     the most admissions in any 2-second interval (at most 5);
#   early     answers other than 200 although (before - 2 s, after] held fewer
#             than 5 admissions: refused while the budget was not spent,
#             whatever the delays;
#   late      answers other than 200 to requests sent after an earlier 429's
#             Retry-After had passed with no admission since: the budget was
#             not back at the advertised time;
#   badra     429s whose Retry-After is not 1 or 2 (seconds);
#   recorded  admissions Redis recorded; ok: 200s (the two must match);
#   first     the first admission's time.
limiter_audit() {
  local mark=sync-$RANDOM-$RANDOM
  redis-cli -p "$RPORT" echo "$mark" >/dev/null   # MONITOR has caught up once it shows this
  wait_until 10 grep -qF "$mark" "$TMP/short-monitor.txt"
  python3 - "$TMP/short-monitor.txt" '{abacus}:rl:k:'"$(printf '%s' "$1" | sha256sum | cut -c1-8)" "$2" <<'PY'
import re, sys
monitor, key, requests = sys.argv[1:]
LIMIT, WINDOW = 5, 2000000
zadd = re.compile(r'"ZADD" "%s" "(\d+)" "([^"]+)"' % re.escape(key))
member_at = {}                    # a ZADD that added nothing repeats a member
for line in open(monitor, errors="replace"):
    m = zadd.search(line)
    if m:
        member_at[m.group(2)] = int(m.group(1))
adm = sorted(member_at.values())
def admitted(lo, hi):             # admissions in (lo, hi]
    return sum(1 for t in adm if lo < t <= hi)
worst = max((admitted(t - WINDOW, t) for t in adm), default=0)
early = late = badra = ok = 0
back_by = None                    # the earliest advertised time since the last 200
for line in open(requests):
    status, before, after, ra = line.split()
    before, after = int(before), int(after)
    if status == "200":
        ok += 1
        back_by = None
        continue
    early += admitted(before - WINDOW, after) < LIMIT
    late += back_by is not None and before >= back_by
    if status == "429":
        badra += ra not in ("1", "2")
        if ra.isdigit():
            at = after + int(ra) * 1000000
            back_by = at if back_by is None else min(back_by, at)
print(worst, early, late, badra, len(adm), ok, adm[0] if adm else 0)
PY
}

ok=0
for i in $(seq 1 5); do clocked_post "$((i % 2 ? P1 : P2))" "$K1" "burst-$i" "$TMP/burst.txt"; [ "$STATUS" = 200 ] && ok=$((ok + 1)); done
check "a burst of 5 passes" 5 "$ok"
# Then a request every 0.1 s until one is admitted (at most 150 tries): the
# 6th and those after it, across wherever a fixed window's edge could be.
for i in $(seq 6 150); do
  clocked_post "$((i % 2 ? P1 : P2))" "$K1" "burst-$i" "$TMP/burst.txt"
  [ "$STATUS" = 200 ] && break
  sleep 0.1
done
check "the budget comes back (a request admitted within 150 tries)" 200 "$STATUS"
read -r worst early late badra recorded ok first < <(limiter_audit "$K1" "$TMP/burst.txt")
read -r status6 _ after6 _ < <(sed -n 6p "$TMP/burst.txt")
# Answered within 2 s of the first admission, the 6th must be refused; only a
# machine slow enough to answer it later may see it admitted (worst decides).
want6=429; [ "$after6" -ge $((first + 2000000)) ] && want6=$status6
check "the 6th, answered inside the burst's window (Redis's clock), is refused" "$want6" "$status6"
check_true "refused until a window after the burst's first admission: at most 5 admissions in any 2 s of Redis's clock ($worst)" test "$worst" -le 5
check "no refusal while the budget was not spent (Redis's clock)" 0 "$early"
check "every 429 has Retry-After 1 or 2 (the window is 2 s)" 0 "$badra"
check "the budget is back at the advertised time: no refusal once a Retry-After had passed" 0 "$late"
check "Redis recorded one admission per 200" "$ok" "$recorded"

# A steady hammering (another key) for 6 s of Redis's clock, or until 10 have
# been admitted if that takes longer (at most 30 s).
python3 - "$P1" "$P2" "$K2" "$RPORT" >"$TMP/hammer.txt" <<'PY'
import http.client, socket, sys, time
p1, p2, key, rport = sys.argv[1:]
redis = socket.create_connection(("127.0.0.1", int(rport)), timeout=10)
replies = redis.makefile("rb")
def redis_us():                   # TIME: *2, $n, seconds, $n, microseconds
    redis.sendall(b"TIME\r\n")
    lines = [replies.readline() for _ in range(5)]
    return int(lines[2]) * 1000000 + int(lines[4])
conns = [http.client.HTTPConnection("127.0.0.1", int(p), timeout=5) for p in (p1, p2)]
start = redis_us()
i = ok = 0
while i < 5000:
    before = redis_us()
    if before - start >= (6000000 if ok >= 10 else 30000000):
        break
    c = conns[i % 2]
    c.request("POST", "/abacus/number", body='{"number": 1}', headers={
        "X-API-Key": key, "Idempotency-Key": "h-%d" % i, "Content-Type": "application/json"})
    r = c.getresponse(); r.read()
    print(r.status, before, redis_us(), r.getheader("Retry-After") or "-")
    ok += r.status == 200
    i += 1
    time.sleep(0.01)
PY
read -r worst early late badra recorded ok _ < <(limiter_audit "$K2" "$TMP/hammer.txt")
check_true "no 2 s of Redis's clock hold more than 5 admissions of the hammering ($worst)" test "$worst" -le 5
check "the hammering: no refusal while the budget was not spent" 0 "$early"
check "the hammering: no refusal once a Retry-After had passed with nothing admitted since" 0 "$late"
check "the hammering: Redis recorded one admission per 200" "$ok" "$recorded"
check_true "the budget keeps coming back (at least 10 admitted: $ok)" test "$ok" -ge 10
stop_stack

# ---- the limiter's own records: at most the limit per caller, the set expires when idle ----
start_stack trim ABACUS_API_KEYS="$K1" ABACUS_RATE_LIMIT_REQUESTS=50 ABACUS_RATE_LIMIT_WINDOW_SECONDS=1 || exit 1
RL='{abacus}:rl:k:'"$(printf '%s' "$K1" | sha256sum | cut -c1-8)"
# 400 GETs over 2.5 s or more (160 a second against a limit of 50 a second);
# after each, the set and its PTTL are read in one MULTI.  An admission into
# a full set removes the entries older than the window
# (lib/lua/limiter_admit.lua), so the set never holds more than the limit,
# however many admissions the caller makes.  Prints "maxcard admitted badttl":
# the most entries seen, the 200s, snapshots with a PTTL not in (0, 1000].
python3 - "$P1" "$K1" "$RPORT" "$RL" >"$TMP/trim.txt" <<'PY'
import http.client, socket, sys, time
port, key, rport, rl = sys.argv[1:]
WINDOW = 1000000
redis = socket.create_connection(("127.0.0.1", int(rport)), timeout=10)
replies = redis.makefile("rb")
def reply():
    line = replies.readline()[:-2]
    kind, rest = line[:1], line[1:]
    if kind == b"*":
        return [reply() for _ in range(int(rest))]
    if kind == b"$":
        return None if int(rest) < 0 else replies.read(int(rest) + 2)[:-2].decode()
    if kind == b"-":
        raise RuntimeError(rest.decode())
    return int(rest) if kind == b":" else rest.decode()
def call(*args):
    redis.sendall(b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in (x.encode() for x in args)))
    return reply()
c = http.client.HTTPConnection("127.0.0.1", int(port), timeout=5)
start = time.monotonic()
maxcard = admitted = badttl = 0
for i in range(400):                      # ~2.5 s: 2.5 windows
    c.request("GET", "/abacus/sum", headers={"X-API-Key": key})
    r = c.getresponse(); r.read()
    admitted += r.status == 200
    call("MULTI"); call("ZCARD", rl); call("PTTL", rl)
    card, pttl = call("EXEC")
    maxcard = max(maxcard, card)
    if card:
        badttl += not 0 < pttl <= WINDOW // 1000
    time.sleep(max(0.0, start + (i + 1) * 0.00625 - time.monotonic()))
print(maxcard, admitted, badttl)
PY
read -r maxcard admitted badttl <"$TMP/trim.txt"
check_true "the limiter's set never holds more entries than the limit (most seen: $maxcard)" test "${maxcard:-99}" -le 50
check_true "... while more than the limit were admitted over the windows ($admitted): old entries were removed" test "${admitted:-0}" -gt 60
check "while the limiter's set exists it expires within a window (PTTL read with it)" 0 "$badttl"
sleep 1.2
check "an idle caller's set is gone after the window" 0 "$(redis-cli -p "$RPORT" exists "$RL")"
stop_stack

# ---- refusals that cost Redis nothing (the local refusal) ----
# Once a worker has seen a caller refused, it answers that caller's requests
# with the same 429 itself until the budget can free: Redis is asked about a
# refused caller at most once per worker.  4 workers (2 front ends x 2).
start_stack memo ABACUS_API_KEYS="$K1,$K2" ABACUS_RATE_LIMIT_REQUESTS=5 ABACUS_RATE_LIMIT_WINDOW_SECONDS=60 || exit 1
for i in $(seq 1 5); do post "$((i % 2 ? P1 : P2))" "$K1" "memo-$i" 1; done
check "the memo stack: 5 admitted" 200 "$STATUS"
workers=$(( $(worker_pids "$P1" | wc -l) + $(worker_pids "$P2" | wc -l) ))
check "4 workers" 4 "$workers"
calls=$(evalsha_calls "$RPORT")
bad=0; statuses=""; flood_start=$(date +%s%N)
for i in $(seq 1 200); do
  if [ $((i % 4)) -eq 0 ]; then req GET "http://127.0.0.1:$((i % 8 ? P1 : P2))/abacus/sum" -H "X-API-Key: $K1"
  else post "$((i % 2 ? P1 : P2))" "$K1" "memo-flood-$i" 1; fi
  ra=$(header retry-after)
  t=$(header ratelimit | sed -n 's/.*;t=\([0-9]*\)$/\1/p')
  [ -z "${first_ra:-}" ] && { first_ra=$ra; first_t=$t; }
  # The same budget whoever answers: never a later Retry-After or reset than the first refusal's.
  { [ "$STATUS" = 429 ] && [ "${ra:-0}" -ge 1 ] && [ "$ra" -le "$first_ra" ] && [[ $BODY == *urn:abacus:problem:rate-limited* ]] &&
    [[ $(header ratelimit) == '"default";r=0;t='* ]] && [ "${t:-99}" -le "$first_t" ] &&
    [ "$(header ratelimit-policy)" = '"default";q=5;w=60' ]; } ||
    { bad=$((bad + 1)); statuses="$statuses $STATUS/$ra/$t"; }
done
flood_calls=$(( $(evalsha_calls "$RPORT") - calls ))
flood_s=$(( ($(date +%s%N) - flood_start + 999999999) / 1000000000 ))
check "200 requests of a refused caller: each a 429 with Retry-After and t= no later than the first refusal's, r=0, the policy" "0" "$bad$statuses"
echo "measured: Redis EVALSHA calls for 200 refused requests in ${flood_s} s: $flood_calls (4 workers; without the local refusal: 200)"
# A worker trusts a refusal for a second at most (lib/ratelimit.h): once per worker and second.
check_true "... Redis asked at most once per worker and second ($flood_calls calls, $flood_s s)" \
  test "$flood_calls" -le $(( workers * flood_s ))
check "the sum is unchanged by them" 5 "$(sum_at "$P1" "$K2")"
limited_total=0
for p in "$P1" "$P2"; do
  n=$(curl -s "http://127.0.0.1:$p/metrics" | sed -n 's/^abacus_rate_limited_total \([0-9]*\)$/\1/p')
  limited_total=$((limited_total + ${n:-0}))
done
check "abacus_rate_limited_total still counts every refusal" 200 "$limited_total"
calls=$(evalsha_calls "$RPORT")
post "$P1" "$K2" memo-other 1
check "another caller is asked about (and admitted) as before" "200 1" "$STATUS $(( $(evalsha_calls "$RPORT") - calls ))"
post "$P1" "$K1" memo-bad 1.5
check "a refused caller's bad body is still a 400 (validated first, as with Redis)" 400 "$STATUS"
check_match "refusals are still logged" '"event":"rate_limited"' "$(cat "$STACK"/frontend-*/error.log)"

# Unauthenticated floods never reach Redis: auth is checked first, in the worker.
total_commands() { redis-cli -p "$RPORT" info stats | tr -d '\r' | sed -n 's/^total_commands_processed://p'; }
before=$(total_commands)
bad=0
for i in $(seq 1 100); do
  req GET "http://127.0.0.1:$((i % 2 ? P1 : P2))/abacus/sum"
  [ "$STATUS" = 401 ] || bad=$((bad + 1))
  req POST "http://127.0.0.1:$((i % 2 ? P2 : P1))/abacus/number" -H "X-API-Key: wrong-$i" -H "Idempotency-Key: u-$i" \
    -H 'Content-Type: application/json' -d '{"number": 1}'
  [ "$STATUS" = 403 ] || bad=$((bad + 1))
done
after=$(total_commands)
check "100 requests without a key (401) and 100 with a wrong key (403)" 0 "$bad"
# The two INFO calls count themselves; a worker's reconnect or readiness PING would show.
echo "measured: Redis commands for 200 unauthenticated requests: $((after - before - 1))"
check_true "... cost Redis no command ($((after - before - 1)))" test $((after - before - 1)) -le 0
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
