#!/usr/bin/env bash
# Runs every integration suite (tests/it_*.sh) against the sanitizer build,
# printing each suite's summary line; stops at the first failing suite.
# Run one suite alone with: tests/it_api.sh
set -u
cd "$(dirname "$0")/.."
# The API suites run against both front-end kinds: "suite@nginx" sets FRONTEND.
suites=${ABACUS_SUITES:-$(ls tests/it_*.sh) tests/it_api.sh@nginx tests/it_exactness.sh@nginx}
total_pass=0
total_fail=0
for suite in $suites; do
  kind=lighttpd
  case $suite in *@*) kind=${suite#*@}; suite=${suite%@*} ;; esac
  name=$(basename "$suite" .sh)
  [ "$kind" = lighttpd ] || name="$name[$kind]"
  start=$(date +%s)
  out=$(FRONTEND=$kind "$suite" 2>&1)
  rc=$?
  line=$(printf '%s\n' "$out" | tail -n 1)
  printf '%-16s %s  (%ds)\n' "$name:" "$line" "$(( $(date +%s) - start ))"
  if [[ $line =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
    total_pass=$((total_pass + BASH_REMATCH[1]))
    total_fail=$((total_fail + BASH_REMATCH[2]))
  else
    rc=1    # a suite that did not end with its summary line did not finish
  fi
  if [ "$rc" -ne 0 ]; then
    printf '%s\n' "$out" | grep -v "^$line\$" | tail -n 40
    echo "integration: $name failed; stopping"
    echo "$total_pass passed, $((total_fail > 0 ? total_fail : 1)) failed"
    exit 1
  fi
done
echo "$total_pass passed, $total_fail failed"
