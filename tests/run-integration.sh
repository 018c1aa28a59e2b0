#!/usr/bin/env bash
# Runs every integration suite (tests/it_*.sh) against the sanitizer build,
# JOBS at a time (default 3: every suite uses its own ports and folders, and
# most of a suite's time is waiting, not CPU: 3 fit 2 cores), and
# prints each suite's summary line in order, with the lines it marked
# "measured: ".  Exit 1 if any suite failed or
# did not finish with its summary line.
# Each suite has SUITE_TIMEOUT seconds (300).
# Run one suite alone with: tests/it_api.sh  (FRONTEND=nginx tests/it_api.sh)
set -u
cd "$(dirname "$0")/.."
# The API suites and the flood suite run against both front-end kinds:
# "suite@nginx" sets FRONTEND.
# The longest first (seconds on the CI machine), so that no long suite starts
# last and runs alone; the rest in name order.
slow="tests/it_cluster_sums.sh tests/it_ratelimit.sh tests/it_sentinel.sh tests/it_memory.sh tests/it_redis.sh tests/it_stack.sh
      tests/it_connection.sh tests/it_flood.sh tests/it_flood.sh@nginx tests/it_ledger.sh tests/it_tls.sh"
all="$(ls tests/it_*.sh) tests/it_api.sh@nginx tests/it_sums.sh@nginx tests/it_exactness.sh@nginx tests/it_flood.sh@nginx"
ordered() {
  local x
  for x in $slow; do echo "$x"; done
  for x in $all; do case " $(echo $slow) " in *" $x "*) ;; *) echo "$x" ;; esac; done
}
suites=${ABACUS_SUITES:-$(ordered)}
jobs=${JOBS:-3}
limit=${SUITE_TIMEOUT:-300}   # seconds per suite
out=$(mktemp -d /tmp/abacus-integration.XXXXXX)
trap 'rm -rf "$out"' EXIT

run_suite() { # index suite
  local i=$1 suite=$2 kind=lighttpd start rc
  case $suite in *@*) kind=${suite#*@}; suite=${suite%@*} ;; esac
  start=$(date +%s)
  # A hung suite must not hang `make test`: TERM after the limit (the suite's
  # trap then stops what it started), KILL 60 s later.
  FRONTEND=$kind timeout -k 60 "$limit" "$suite" >"$out/$i.log" 2>&1
  rc=$?
  [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ] && echo "TIMEOUT: the suite did not finish within $limit s" >>"$out/$i.log"
  echo "$rc $(( $(date +%s) - start )) $kind" >"$out/$i.rc"
}

i=0
for suite in $suites; do
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do sleep 0.2; done
  run_suite "$i" "$suite" &
  i=$((i + 1))
done
wait

total_pass=0
total_fail=0
bad=0
i=0
for suite in $suites; do
  read -r rc secs kind <"$out/$i.rc"
  name=$(basename "${suite%@*}" .sh)
  [ "$kind" = lighttpd ] || name="$name[$kind]"
  line=$(tail -n 1 "$out/$i.log")
  printf '%-20s %s  (%ds)\n' "$name:" "$line" "$secs"
  # What a suite measured on the way (failover windows, memory, ...).
  grep '^measured: ' "$out/$i.log" | sed 's/^measured: /    /'
  if [[ $line =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
    total_pass=$((total_pass + BASH_REMATCH[1]))
    total_fail=$((total_fail + BASH_REMATCH[2]))
  else
    rc=1    # a suite that did not end with its summary line did not finish
    total_fail=$((total_fail + 1))
  fi
  if [ "$rc" -ne 0 ]; then
    grep -v "^$line\$" "$out/$i.log" | tail -n 60 | sed 's/^/    /'
    bad=1
  fi
  i=$((i + 1))
done
echo "$total_pass passed, $total_fail failed"
exit $bad
