#!/usr/bin/env bash
# Runs the Check unit tests; check_store gets a private redis-server on a free port.
set -u
. "$(dirname "$0")/lib.sh"
suite_init unit
read -r port _ < <(start_redis unit --appendonly no) || exit 1
export ABACUS_TEST_REDIS_PORT=$port
# Check's default of 4 s per test is a speed limit on a loaded machine; the
# tests bound their own waits.
export CK_DEFAULT_TIMEOUT=${CK_DEFAULT_TIMEOUT:-60}
# The fault proxy in front of it (check_store_faults).
ABACUS_TEST_PROXY_PORT=$(free_port); ABACUS_TEST_PROXY_CONTROL=$(free_port)
export ABACUS_TEST_PROXY_PORT ABACUS_TEST_PROXY_CONTROL
python3 "$(dirname "$0")/faultproxy.py" "$ABACUS_TEST_PROXY_PORT" "$port" "$ABACUS_TEST_PROXY_CONTROL" \
  >"$TMP/faultproxy.log" 2>&1 &
PIDS+=("$!")
wait_until 5 grep -q listening "$TMP/faultproxy.log" || { echo "the fault proxy did not start"; exit 1; }
for t in "$@"; do
  out=$("$t" 2>"$TMP/$(basename "$t").stderr")
  rc=$?
  printf '%s\n' "$out" | tail -n 1 | sed "s|^|$(basename "$t"): |"
  check "$(basename "$t") exit status" 0 "$rc"
  [ "$rc" -eq 0 ] || printf '%s\n' "$out"
done
suite_end
