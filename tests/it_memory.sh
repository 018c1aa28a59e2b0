#!/usr/bin/env bash
# Memory: one worker under valgrind --leak-check=full through a mixed load and
# a graceful stop, and a worker's RSS after 100,000 requests against after 1,000.
set -u
. "$(dirname "$0")/lib.sh"
suite_init memory
use_load_tool
KEY=memory-key-$RANDOM
REL=$ROOT/build/release/abacus.fcgi
[ -x "$REL" ] || make -s -C "$ROOT" all >/dev/null
command -v valgrind >/dev/null || { echo "valgrind missing"; exit 1; }

# ---- valgrind ----
mkdir -p "$TMP/vg" && chmod 777 "$TMP/vg"   # the worker may run as nobody
# ... and may not reach the checkout (a private clone): valgrind runs a copy.
cp "$REL" "$TMP/vg/abacus.fcgi"
cat >"$TMP/vg-worker" <<VG
#!/bin/sh
exec valgrind -q --leak-check=full --show-leak-kinds=definite,indirect --errors-for-leak-kinds=definite,indirect \\
  --error-exitcode=99 --log-file=$TMP/vg/valgrind.%p.log $TMP/vg/abacus.fcgi "\$@"
VG
chmod +x "$TMP/vg-worker"
BIN=$TMP/vg-worker WORKERS=1 start_stack vg ABACUS_API_KEYS="$KEY" ABACUS_RATE_LIMIT_REQUESTS=1000000 || exit 1
"$LOAD" --target "http://127.0.0.1:$P1" --requests 2000 --concurrency 4 --idempotency --api-key "$KEY" \
  --get-ratio 0.3 --delta-range=-9:9 --verify >"$TMP/vg-load.out" 2>&1
check "valgrind worker: the load verified" 0 "$?"
for i in $(seq 1 20); do curl -s -o /dev/null "http://127.0.0.1:$P1/nope-$i"; curl -s -o /dev/null "http://127.0.0.1:$P1/metrics"; done
stop_stack
logs=$(ls "$TMP"/vg/valgrind.*.log 2>/dev/null | wc -l)
check_true "valgrind logs were written" test "$logs" -ge 1
check "valgrind: no error and no leak reported" "" "$(cat "$TMP"/vg/valgrind.*.log 2>/dev/null | grep -E 'definitely lost|indirectly lost|Invalid|uninitialised' | head -n 5)"
check_match "the worker under valgrind stopped gracefully" '"event":"worker_stopped"' "$(cat "$STACK"/frontend-*/error.log)"

# ---- RSS after 1,000 and after 100,000 requests ----
BIN=$REL WORKERS=1 start_stack rss ABACUS_API_KEYS="$KEY" ABACUS_RATE_LIMIT_REQUESTS=1000000000 || exit 1
worker=$(worker_pids "$P1")
check_match "exactly one worker found ($(echo $worker))" '^[0-9]+$' "$worker"
rss() { awk '/^VmRSS/ {print $2}' "/proc/$worker/status" 2>/dev/null; }
"$LOAD" --target "http://127.0.0.1:$P1" --requests 1000 --concurrency 4 --idempotency --api-key "$KEY" --get-ratio 0.3 >/dev/null 2>&1
rss_1k=$(rss)
check_match "RSS read after 1,000 requests (KiB)" '^[0-9]+$' "$rss_1k"
"$LOAD" --target "http://127.0.0.1:$P1" --requests 100000 --concurrency 8 --idempotency --api-key "$KEY" --get-ratio 0.3 >"$TMP/rss-load.out" 2>&1
check "100,000 requests: all answered" 0 "$?"
rss_100k=$(rss)
check_match "RSS read after 101,000 requests (KiB)" '^[0-9]+$' "$rss_100k"
check "the same worker served them all" "$worker" "$(worker_pids "$P1")"
echo "measured: worker RSS: $rss_1k KiB after 1,000 requests, $rss_100k KiB after 101,000"
check_true "RSS after 100,000 requests within 1 MiB of after 1,000 ($rss_1k -> $rss_100k KiB)" test $((rss_100k - rss_1k)) -le 1024
stop_stack
suite_end
