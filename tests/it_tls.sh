#!/usr/bin/env bash
# HTTPS on the front ends: a private CA and server certificates made here with
# openssl, stacks started with ABACUS_TLS_CERT / ABACUS_TLS_KEY (lighttpd with
# conf/lighttpd-tls.conf, nginx with conf/nginx.conf's #tls# lines), the key
# root's alone when run as root (the front ends read it before they drop to
# nobody).  Through each: POST, replay and GET with curl --cacert, the API key
# required as usual, a plain-HTTP request to the TLS port not served, a client
# without the CA (or asking for another name) refused, TLS 1.0/1.1 and a
# non-forward-secret TLS 1.2 suite refused by the server, a renewed
# certificate loaded the documented way (lighttpd: restart the front end;
# nginx: SIGHUP).  Then the documented lighttpd HTTP -> HTTPS redirect
# (docs/OPERATIONS.md, "TLS"), a certificate and key in one file, and the
# start-up refusals.
set -u
. "$(dirname "$0")/lib.sh"
suite_init tls
KEY=tls-key-$RANDOM
JSON='Content-Type: application/json'

# ---- the PKI: a CA, and server certificates for localhost and 127.0.0.1 ----
PKI=$TMP/pki
mkdir -p "$PKI"
chmod 700 "$PKI"   # root's alone (when run as root): nobody cannot even look in
CA=$TMP/ca.pem     # what clients get: outside the private folder
ossl() { openssl "$@" >>"$TMP/openssl.log" 2>&1; }
ossl req -x509 -newkey rsa:2048 -nodes -days 2 \
  -subj "/CN=abacus test CA $RANDOM" -keyout "$PKI/ca.key" -out "$CA" ||
  { echo "openssl could not make a CA: $(tail -n 3 "$TMP/openssl.log")"; exit 1; }
printf '%s\n' 'subjectAltName=DNS:localhost,IP:127.0.0.1' 'basicConstraints=CA:FALSE' \
  'keyUsage=digitalSignature' 'extendedKeyUsage=serverAuth' >"$PKI/ext.cnf"
# make_cert NAME: NAME.pem (the certificate) and NAME.key (0600) in $PKI,
# signed by the CA.  RSA: then the suites refused below (RSA key exchange,
# CBC) are ones the server could use with this key (nginx's defaults accept
# AES128-GCM-SHA256; lighttpd 1.4.69's own defaults happen to refuse both):
# the configured policy refuses them.
make_cert() {
  ossl req -newkey rsa:2048 -nodes -subj /CN=localhost \
    -keyout "$PKI/$1.key" -out "$PKI/$1.csr" &&
  ossl x509 -req -in "$PKI/$1.csr" -CA "$CA" -CAkey "$PKI/ca.key" -set_serial "0x$(openssl rand -hex 8)" \
    -days 2 -extfile "$PKI/ext.cnf" -out "$PKI/$1.pem" &&
  chmod 600 "$PKI/$1.key"
}
make_cert server && make_cert renewed && make_cert other ||
  { echo "openssl could not make certificates: $(tail -n 3 "$TMP/openssl.log")"; exit 1; }
serial_of() { openssl x509 -noout -serial -in "$1" | cut -d= -f2; }

# tls METHOD PORT PATH [curl args...]: req over HTTPS, trusting the test CA.
tls() { local m=$1 port=$2 path=$3; shift 3; req "$m" "https://localhost:$port$path" --cacert "$CA" "$@"; }
tls_sum() { tls GET "$1" /abacus/sum -H "X-API-Key: $KEY"; json current_sum; }
# hello PORT OPENSSL-ARGS...: what a TLS handshake with those client settings
# ends in: "<protocol> <cipher>", or the server's alert.
hello() {
  local port=$1 out; shift
  out=$(timeout 10 openssl s_client -connect "127.0.0.1:$port" -servername localhost -CAfile "$CA" "$@" </dev/null 2>&1)
  if [[ $out =~ alert\ ([a-z\ ]+): ]]; then echo "alert ${BASH_REMATCH[1]}"; return; fi
  # "New, TLSv1.3, Cipher is TLS_AES_256_GCM_SHA384" (printed before the
  # session block, which s_client may skip when its input ends at once).
  printf '%s\n' "$out" | sed -n 's/^New, \([^,]*\), Cipher is \(.*\)$/\1 \2/p' | head -n 1
}
# served_serial PORT: the serial number of the certificate the front end presents.
served_serial() {
  timeout 10 openssl s_client -connect "127.0.0.1:$1" -servername localhost </dev/null 2>/dev/null |
    openssl x509 -noout -serial 2>/dev/null | cut -d= -f2
}

for kind in lighttpd nginx; do
  FRONTEND=$kind WORKERS=1 start_stack "tls-$kind" ABACUS_API_KEYS="$KEY" \
    ABACUS_TLS_CERT="$PKI/server.pem" ABACUS_TLS_KEY="$PKI/server.key" || exit 1
  check_match "$kind: start prints https URLs" "abacus is up: https://127.0.0.1:$P1 https://127.0.0.1:$P2" "$(cat "$STACK/start.out")"
  if [ "$(id -u)" -eq 0 ]; then
    check "$kind: the key stays unreadable to the front ends' user" 1 \
      "$(setpriv --reuid nobody --regid nogroup --clear-groups test -r "$PKI/server.key"; echo $?)"
  fi

  # The API over HTTPS, exactly once, through both front ends.
  tls POST "$P1" /abacus/number -H "X-API-Key: $KEY" -H "Idempotency-Key: tls-$kind-1" -H "$JSON" --data-binary '{"number": 5}'
  check "$kind: POST over HTTPS" "200 5" "$STATUS $(json current_sum)"
  tls POST "$P2" /abacus/number -H "X-API-Key: $KEY" -H "Idempotency-Key: tls-$kind-1" -H "$JSON" --data-binary '{"number": 5}'
  check "$kind: the same POST through the other front end is a replay" "200 5 true" "$STATUS $(json current_sum) $(header idempotent-replayed)"
  tls POST "$P2" /abacus/number -H "X-API-Key: $KEY" -H "Idempotency-Key: tls-$kind-2" -H "$JSON" --data-binary '{"number": 7}'
  check "$kind: a second POST" "200 12" "$STATUS $(json current_sum)"
  check "$kind: GET over HTTPS" 12 "$(tls_sum "$P1")"
  tls GET "$P1" /abacus/sum
  check "$kind: no API key: 401" "401 application/problem+json" "$STATUS $(header content-type)"
  tls GET "$P1" /abacus/sum -H "X-API-Key: not-$KEY"
  check "$kind: a wrong API key: 403" 403 "$STATUS"
  tls GET "$P1" /metrics
  check_match "$kind: /metrics over HTTPS" 'abacus_request_total' "$BODY"
  tls GET "$P1" /openapi.yaml
  check "$kind: /openapi.yaml over HTTPS" 200 "$STATUS"
  out=$(SMOKE_CURL_OPTS="--cacert $CA" "$ROOT/tests/smoke.sh" "https://localhost:$P2" "$KEY" 2>&1)
  check "$kind: smoke.sh over HTTPS (SMOKE_CURL_OPTS=--cacert ...) passes" "0 12" "$? $(tls_sum "$P1")"
  check "$kind: abacus-stack status sees the HTTPS front ends" 0 "$(stack_env "$STACK" "$ROOT/tools/abacus-stack" status >/dev/null 2>&1; echo $?)"

  # Plain HTTP to the TLS port: not served (lighttpd closes, nginx answers
  # its own 400 page), and nothing is added.
  req POST "http://127.0.0.1:$P1/abacus/number" -H "X-API-Key: $KEY" -H "Idempotency-Key: tls-$kind-plain" -H "$JSON" --data-binary '{"number": 100}'
  check_match "$kind: plain HTTP to the TLS port is not served" '^(000|400)$' "$STATUS"
  check "$kind: ... and gets no API answer" "" "$(printf '%s' "$BODY" | grep -o current_sum)"
  check "$kind: ... and adds nothing" 12 "$(tls_sum "$P2")"

  # Verification: without the CA, or for a name the certificate does not carry.
  curl -s -o /dev/null --max-time 10 "https://localhost:$P1/healthz"
  check "$kind: without --cacert curl refuses the certificate (exit 60)" 60 "$?"
  curl -s -o /dev/null --max-time 10 --cacert "$CA" --resolve "abacus.invalid:$P1:127.0.0.1" "https://abacus.invalid:$P1/healthz"
  check "$kind: a name the certificate does not carry is refused (exit 60)" 60 "$?"

  # Protocols and suites.  The client offers TLS 1.0/1.1 (SECLEVEL=0 lets
  # OpenSSL 3 do so); the server's protocol_version alert proves it refused.
  check "$kind: TLS 1.0 refused by the server" "alert protocol version" "$(hello "$P1" -tls1 -cipher 'DEFAULT:@SECLEVEL=0')"
  check "$kind: TLS 1.1 refused by the server" "alert protocol version" "$(hello "$P1" -tls1_1 -cipher 'DEFAULT:@SECLEVEL=0')"
  check_match "$kind: TLS 1.2 with a forward-secret AEAD suite" '^TLSv1\.2 ECDHE-RSA-(AES128-GCM-SHA256|AES256-GCM-SHA384|CHACHA20-POLY1305)$' "$(hello "$P1" -tls1_2)"
  check "$kind: TLS 1.2 prefers the server's first suite" "TLSv1.2 ECDHE-RSA-AES128-GCM-SHA256" "$(hello "$P1" -tls1_2 -cipher 'ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-GCM-SHA256')"
  check "$kind: TLS 1.2 without forward secrecy (AES128-GCM-SHA256) refused" "alert handshake failure" "$(hello "$P1" -tls1_2 -cipher 'AES128-GCM-SHA256')"
  check "$kind: TLS 1.2 CBC suite (ECDHE-RSA-AES128-SHA) refused" "alert handshake failure" "$(hello "$P1" -tls1_2 -cipher 'ECDHE-RSA-AES128-SHA')"
  check_match "$kind: TLS 1.3" '^TLSv1\.3 TLS_' "$(hello "$P1" -tls1_3)"

  # A renewed certificate, replaced in place, loaded the documented way.
  old=$(serial_of "$PKI/server.pem")
  check "$kind: the front end presents the certificate" "$old" "$(served_serial "$P1")"
  cp "$PKI/renewed.pem" "$PKI/server.pem"
  cp "$PKI/renewed.key" "$PKI/server.key"
  new=$(serial_of "$PKI/renewed.pem")
  if [ "$kind" = lighttpd ]; then
    # lighttpd reads it at start only: restart one front end, the other serves.
    stack_env "$STACK" "$ROOT/tools/abacus-stack" stop "$P1" >/dev/null 2>&1
    check "lighttpd: the other front end serves while one restarts" 12 "$(tls_sum "$P2")"
    stack_env "$STACK" "$ROOT/tools/abacus-stack" start >"$STACK/restart.out" 2>&1
    check "lighttpd: start brings the stopped front end back" 0 "$?"
  else
    # nginx's master (root) reads it again on SIGHUP; no restart.  Its old
    # worker accepts until it has seen the master's QUIT: wait for it to go.
    master=$(cat "$STACK/frontend-$P1/frontend.pid")
    old_workers=$(pgrep -P "$master" | tr '\n' ' ')
    kill -HUP "$master"
    reloaded() {
      local w
      for w in $old_workers; do kill -0 "$w" 2>/dev/null && return 1; done
      [ "$(served_serial "$P1")" = "$new" ]
    }
    check_true "nginx: SIGHUP: the old workers are replaced" wait_until 10 reloaded
    check_true "nginx: SIGHUP kept the master running" kill -0 "$master"
  fi
  check "$kind: the renewed certificate is served" "$new" "$(served_serial "$P1")"
  check "$kind: the front end that was not reloaded still has the old one" "$old" "$(served_serial "$P2")"
  check "$kind: the sum is intact" 12 "$(tls_sum "$P1")"
  make_cert server   # a fresh one for the next kind

  dir1=$STACK/frontend-$P1
  stop_stack
  check "$kind: stop frees the TLS ports" "" "$(ss -Hltn "( sport = :$P1 or sport = :$P2 )")"
  check "$kind: stop leaves no process" "" "$(for p in /proc/[0-9]*; do { tr '\0' '\n' <"$p/environ"; } 2>/dev/null | grep -qxF "ABACUS_STACK_DIR=$dir1" && echo "${p#/proc/}"; done)"
done

# ---- the documented HTTP -> HTTPS redirect (lighttpd) ----
# docs/OPERATIONS.md's block, in a top-level file beside copies of the two
# shipped configs (a relative include resolves against that file's folder).
read -r rport _ < <(start_redis redirect) ||
  { check "redirect: its Redis starts" "started" "not started"; suite_end; }
HP=$(free_port)   # the plain-HTTP port that only redirects
SP=$(free_port)   # HTTPS
mkdir -p "$TMP/conf" "$TMP/redir/htdocs"
cp "$ROOT/conf/lighttpd.conf" "$ROOT/conf/lighttpd-tls.conf" "$TMP/conf/"
cat >"$TMP/conf/lighttpd-https.conf" <<EOF
include "lighttpd-tls.conf"
server.modules += ( "mod_redirect" )
\$SERVER["socket"] == "127.0.0.1:$HP" {
  ssl.engine        = "disable"
  url.redirect      = ( "" => "https://\${url.authority}\${url.path}\${qsa}" )
  url.redirect-code = 308
}
EOF
redir_env=(ABACUS_PORT="$SP" ABACUS_BIND=127.0.0.1 ABACUS_FRONTEND_DIR="$TMP/redir" ABACUS_BIN="$BIN"
  ABACUS_WORKERS=1 ABACUS_OPENAPI="$ROOT/docs/openapi.yaml" ABACUS_RUN_AS= ABACUS_RUN_AS_GROUP=
  ABACUS_TLS_CERT="$PKI/server.pem" ABACUS_TLS_KEY="$PKI/server.key" ABACUS_METRICS_SHM="/abacus-it-tls-$SP"
  REDIS_URL="redis://127.0.0.1:$rport/0" ABACUS_API_KEYS="$KEY")
env "${redir_env[@]}" setsid lighttpd -D -f "$TMP/conf/lighttpd-https.conf" >"$TMP/redirect.log" 2>&1 </dev/null &
redir=$!
redir_procs() { frontend_procs "$TMP/redir"; }
stop_redir() {
  stop_frontend_procs "$redir" "$TMP/redir"
  redir=""
  rm -f "/dev/shm/abacus-it-tls-$SP"
}
CLEANUP_HOOKS+=(stop_redir)
check_true "redirect: the HTTPS front end answers" wait_until 10 curl -fs --cacert "$CA" "https://localhost:$SP/healthz"
req GET "http://127.0.0.1:$HP/abacus/sum?x=1" -H 'Host: abacus.example'
check "redirect: plain HTTP gets 308 to https, same path and query" "308 https://abacus.example/abacus/sum?x=1" "$STATUS $(header location)"
req POST "http://127.0.0.1:$HP/abacus/number" -H "Host: localhost:$SP" -H "X-API-Key: $KEY" \
  -H 'Idempotency-Key: redir-1' -H "$JSON" --data-binary '{"number": 3}'
check "redirect: a POST too (308 keeps the method), and no worker answers it" "308 https://localhost:$SP/abacus/number " \
  "$STATUS $(header location) $BODY"
check "redirect: following it with curl -L reaches the API over HTTPS" "200 3" \
  "$(curl -s -L --max-time 10 --cacert "$CA" -o "$TMP/follow.json" -w '%{http_code}' -X POST "http://127.0.0.1:$HP/abacus/number" \
      -H "Host: localhost:$SP" -H "X-API-Key: $KEY" -H 'Idempotency-Key: redir-1' -H "$JSON" --data-binary '{"number": 3}') $(sed -n 's/.*"current_sum":\([0-9]*\).*/\1/p' "$TMP/follow.json")"
check "redirect: the sum holds the one addition" 3 "$(redis-cli -p "$rport" get '{abacus}:sum')"
stop_redir
check "redirect: lighttpd and its worker stopped" "" "$(redir_procs)"

# ---- start-up refusals: nothing is left running ----
out=$(ABACUS_VAR_DIR=$TMP/refused ABACUS_PORTS=$(free_port) ABACUS_REDIS_PORT=$(free_port) ABACUS_BIN=$BIN \
      ABACUS_TLS_KEY="$PKI/server.key" "$ROOT/tools/abacus-stack" start 2>&1)
check "a key without a certificate: refused" 1 "$?"
check_match "... naming the settings" 'ABACUS_TLS_KEY is set but ABACUS_TLS_CERT is not; nothing was started' "$out"
out=$(ABACUS_VAR_DIR=$TMP/refused ABACUS_PORTS=$(free_port) ABACUS_REDIS_PORT=$(free_port) ABACUS_BIN=$BIN \
      ABACUS_TLS_CERT="$PKI/missing.pem" "$ROOT/tools/abacus-stack" start 2>&1)
check "a missing certificate file: refused" 1 "$?"
check_match "... naming it" 'missing.pem \(ABACUS_TLS_CERT / ABACUS_TLS_KEY\) is not a readable file' "$out"
# A certificate and its key in one file, ABACUS_TLS_KEY unset.
cat "$PKI/server.pem" "$PKI/server.key" >"$PKI/combined.pem"
chmod 600 "$PKI/combined.pem"
if FRONTEND=lighttpd WORKERS=1 start_stack combined ABACUS_API_KEYS="$KEY" ABACUS_TLS_CERT="$PKI/combined.pem"; then
  check "certificate and key in one file (ABACUS_TLS_KEY unset): served" 200 "$(curl -s -o /dev/null -w '%{http_code}' --cacert "$CA" "https://localhost:$P1/healthz")"
  stop_stack
else
  check "certificate and key in one file (ABACUS_TLS_KEY unset): the stack starts" "started" "refused"
fi
if FRONTEND=lighttpd WORKERS=1 start_stack mismatch ABACUS_API_KEYS="$KEY" \
     ABACUS_TLS_CERT="$PKI/server.pem" ABACUS_TLS_KEY="$PKI/other.key" >"$TMP/mismatch.out" 2>&1; then
  check "a key of another certificate: refused" "refused" "started"
else
  check_match "a key of another certificate: refused with lighttpd's reason" 'did not answer:.*(does not match|mismatch)' "$(tr '\n' ' ' <"$TMP/mismatch.out")"
  check_match "... and nothing was left running" 'nothing was left running' "$(cat "$TMP/mismatch.out")"
  check "... no port left open" "" "$(ss -Hltn "( sport = :$P1 or sport = :$P2 or sport = :$RPORT )")"
fi

suite_end
