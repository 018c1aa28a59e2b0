#!/usr/bin/env bash
# The harness itself (tests/lib.sh, tests/run-integration.sh) cannot pass
# vacuously: ports are unique across subshells and across suites and lie below
# the ephemeral range; what a process prints when it is stopped is read; a
# hung suite is stopped at its time limit and counted as failed; everything a
# suite started is gone after it.
set -u
. "$(dirname "$0")/lib.sh"
suite_init harness

# ---- ports ----
read -r lo hi </proc/sys/net/ipv4/ip_local_port_range
p=$(free_port)
check_true "a port lies below the ephemeral range ($p < $lo)" test "$p" -lt "$lo"
# A range of ten that holds none of the ports the suites must never take,
# below the suites' own (10000 and up: no suite running beside this one claims
# there) and with no port in use now (up to 50 random tries).
for try in $(seq 1 50); do
  range_lo=$(( (RANDOM % 700) * 10 + 2000 ))
  case $range_lo in 6370|8000) continue ;; esac    # 6379, 8001, 8002: never taken
  ss -Htan "( sport >= :$range_lo and sport <= :$((range_lo + 9)) )" 2>/dev/null | grep -q . || break
done
range="$range_lo $((range_lo + 9))"
# Ten suites at once, each claiming a port of that range and holding it: ten
# different ports.
for i in $(seq 1 10); do
  ABACUS_TEST_PORT_RANGE=$range bash -c '. tests/lib.sh; free_port; sleep 3' >"$TMP/claim.$i" 2>/dev/null &
done
wait_until 10 sh -c "cat $TMP/claim.* | grep -c . | grep -qx 10"
check "ten suites at once in a ten-port range: ten different ports" 10 "$(cat "$TMP"/claim.* | sort -u | grep -c .)"
wait
# Those suites have ended: their claims are stale and free again.  Ten
# $(free_port) calls of this suite (each in a subshell) get ten different ports.
mine=(); for i in $(seq 1 10); do mine+=("$(ABACUS_TEST_PORT_RANGE=$range free_port 2>/dev/null)"); done
check "ten \$(free_port) calls of one suite in a ten-port range: ten different ports" 10 "$(printf '%s\n' "${mine[@]}" | sort -u | grep -c .)"
check "an eleventh finds none (they are held until the suite ends)" "" "$(ABACUS_TEST_PORT_RANGE=$range free_port 2>/dev/null)"
other=$(ABACUS_TEST_PORT_RANGE=$range bash -c '. tests/lib.sh; free_port' 2>/dev/null)
check "another suite running now gets none of them either" "" "$other"

# ---- a report printed at exit is read ----
# A fake worker that prints a LeakSanitizer report when it is stopped, as an
# ASan worker does at SIGTERM; suite_end must stop it first, then scan.
cat >"$TMP/fake-worker.sh" <<'FAKE'
#!/usr/bin/env bash
# (the report's words are assembled, so this file itself matches nothing)
trap 'printf "==1==ERROR: Leak%s: detected memory leaks\n" Sanitizer >>"$1"; exit 0' TERM
: >"$1.ready"
while :; do sleep 0.1; done
FAKE
chmod +x "$TMP/fake-worker.sh"
inner=$TMP/inner-suite.sh
cat >"$inner" <<INNER
#!/usr/bin/env bash
. "$ROOT/tests/lib.sh"
suite_init harness-inner
"$TMP/fake-worker.sh" "\$TMP/worker.log" &
FAKE_PID=\$!
wait_until 5 test -e "\$TMP/worker.log.ready"
stop_fake() { kill -TERM "\$FAKE_PID" 2>/dev/null; wait "\$FAKE_PID" 2>/dev/null; }
CLEANUP_HOOKS+=(stop_fake)
check "a check that passes" 1 1
suite_end
INNER
chmod +x "$inner"
out=$("$inner" 2>&1)
check "a suite whose worker reports a leak when stopped fails" 1 "$?"
check_match "... and says so" 'FAIL no sanitizer report in logs' "$out"
check_match "... in its summary line" '^[0-9]+ passed, 1 failed$' "$(printf '%s\n' "$out" | tail -n 1)"
rm -rf /tmp/abacus-harness-inner.*

# ---- a hung suite is stopped at its limit, counted as failed, leaves nothing ----
cat >"$TMP/it_hang.sh" <<HANG
#!/usr/bin/env bash
. "$ROOT/tests/lib.sh"
suite_init harness-hang
read -r port pid < <(start_redis hang)
echo "\$pid" >"$TMP/hang.pid"
sleep 120
suite_end
HANG
chmod +x "$TMP/it_hang.sh"
start=$SECONDS
out=$(SUITE_TIMEOUT=5 ABACUS_SUITES="$TMP/it_hang.sh" "$ROOT/tests/run-integration.sh" 2>&1)
check "run-integration: a hung suite fails the run" 1 "$?"
check_true "run-integration: ... within its limit plus the kill grace ($((SECONDS - start)) s)" test $((SECONDS - start)) -le 30
check_match "run-integration: ... and says it timed out" 'TIMEOUT: the suite did not finish within 5 s' "$out"
check_match "run-integration: the total counts it" '0 passed, 1 failed$' "$(printf '%s\n' "$out" | tail -n 1)"
hung_redis=$(cat "$TMP/hang.pid" 2>/dev/null)
gone() { ! kill -0 "$hung_redis" 2>/dev/null || grep -q '^State:.*Z' "/proc/$hung_redis/status" 2>/dev/null; }
check_true "the hung suite's Redis was stopped by its cleanup" wait_until 5 gone
rm -rf /tmp/abacus-harness-hang.*
suite_end
