#!/usr/bin/env bash
# Runs each libFuzzer target for SECONDS, starting from its seed corpus in
# tests/fuzz/corpus/<target> (copied: new inputs stay in build/fuzz/).  A crash
# leaves its input in build/fuzz/crash-* and fails the run; turn it into a
# unit-test case (tests/check_<module>.c) before fixing it.
set -u
seconds=$1; shift
cd "$(dirname "$0")/../.."
fails=0
for t in "$@"; do
  work=build/fuzz/corpus-$t
  mkdir -p "$work"
  cp -n tests/fuzz/corpus/"$t"/* "$work"/ 2>/dev/null
  if build/fuzz/fuzz_"$t" -max_total_time="$seconds" -timeout=5 -rss_limit_mb=2048 \
       -artifact_prefix=build/fuzz/ "$work" >build/fuzz/"$t".log 2>&1; then
    # libFuzzer's last line: "Done N runs in S second(s)" (a "#N" elsewhere may be a dictionary entry).
    echo "fuzz_$t: ok, $(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' build/fuzz/"$t".log | tail -n 1) runs in ${seconds}s, corpus $(ls "$work" | wc -l)"
  else
    echo "fuzz_$t: FAILED"; tail -n 30 build/fuzz/"$t".log; fails=$((fails + 1))
  fi
done
echo "$(( $# - fails )) passed, $fails failed"
[ "$fails" -eq 0 ]
