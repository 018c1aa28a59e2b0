#!/usr/bin/env bash
# Runs the Check unit tests; check_store gets a private redis-server on a free port.
set -u
. "$(dirname "$0")/lib.sh"
suite_init unit
read -r port _ < <(start_redis unit --appendonly no) || exit 1
export ABACUS_TEST_REDIS_PORT=$port
for t in "$@"; do
  out=$("$t" 2>"$TMP/$(basename "$t").stderr")
  rc=$?
  printf '%s\n' "$out" | tail -n 1 | sed "s|^|$(basename "$t"): |"
  check "$(basename "$t") exit status" 0 "$rc"
  [ "$rc" -eq 0 ] || printf '%s\n' "$out"
done
suite_end
