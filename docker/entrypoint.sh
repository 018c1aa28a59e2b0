#!/usr/bin/env bash
# abacus container entrypoint: one front end (lighttpd + ABACUS_WORKERS workers),
# configured from the environment.
#
#   abacus-entrypoint              check the configuration, then run lighttpd in the foreground
#   abacus-entrypoint check        check the configuration and print it, then exit
#   abacus-entrypoint healthcheck  exit 0 if GET /readyz answers 200 (the image's HEALTHCHECK)
#
# Environment (besides every worker setting of docs/CONFIGURATION.md):
#   ABACUS_PORT      listen port                         8000
#   ABACUS_BIND      listen address                      0.0.0.0
#   ABACUS_WORKERS   workers                             4
#   ABACUS_RUN_DIR   sockets and pid file                /run/abacus
#   ABACUS_CONF      lighttpd configuration              /etc/abacus/lighttpd.conf
#   ABACUS_BIN       worker binary                       /usr/local/bin/abacus.fcgi
#   ABACUS_OPENAPI   served at /openapi.yaml             /usr/share/abacus/openapi.yaml
# The tests run this script outside a container with those paths pointing
# into the checkout.
set -euo pipefail

export ABACUS_PORT=${ABACUS_PORT:-8000}
export ABACUS_BIND=${ABACUS_BIND:-0.0.0.0}
export ABACUS_WORKERS=${ABACUS_WORKERS:-4}
export ABACUS_FRONTEND_DIR=${ABACUS_RUN_DIR:-/run/abacus}
export ABACUS_BIN=${ABACUS_BIN:-/usr/local/bin/abacus.fcgi}
export ABACUS_OPENAPI=${ABACUS_OPENAPI:-/usr/share/abacus/openapi.yaml}
export ABACUS_METRICS_SHM=${ABACUS_METRICS_SHM:-/abacus-metrics-$ABACUS_PORT}
# The image already runs as the unprivileged user abacus; as root (outside a
# container) lighttpd would drop to this user.
export ABACUS_RUN_AS=${ABACUS_RUN_AS-} ABACUS_RUN_AS_GROUP=${ABACUS_RUN_AS_GROUP-}
conf=${ABACUS_CONF:-/etc/abacus/lighttpd.conf}

die() { echo "abacus-entrypoint: $*" >&2; exit 1; }

check_settings() {
  [[ $ABACUS_PORT =~ ^[0-9]+$ ]] && [ "$ABACUS_PORT" -ge 1 ] && [ "$ABACUS_PORT" -le 65535 ] ||
    die "ABACUS_PORT must be a port number, not '$ABACUS_PORT'"
  [[ $ABACUS_WORKERS =~ ^[0-9]+$ ]] && [ "$ABACUS_WORKERS" -ge 1 ] && [ "$ABACUS_WORKERS" -le 256 ] ||
    die "ABACUS_WORKERS must be 1..256, not '$ABACUS_WORKERS'"
  [ -x "$ABACUS_BIN" ] || die "no worker binary at $ABACUS_BIN"
  [ -r "$ABACUS_OPENAPI" ] || die "no OpenAPI document at $ABACUS_OPENAPI"
  mkdir -p "$ABACUS_FRONTEND_DIR/htdocs" || die "cannot create $ABACUS_FRONTEND_DIR"
  # The worker's own check: every ABACUS_* setting, REDIS_URL, the key files.
  "$ABACUS_BIN" --check-config || die "configuration refused (see the config_error line above)"
  lighttpd -tt -f "$conf" || die "lighttpd refuses $conf"
  # server.max-fds is 8192: lighttpd not started as root (the image) can
  # raise its soft limit only up to the hard one.  Below it, it would run out
  # of files before it reaches its connection cap (docs/OPERATIONS.md,
  # "Hostile clients / connection floods").
  local hard
  hard=$(ulimit -Hn)
  if [ "$(id -u)" -ne 0 ] && [ "$hard" != unlimited ] && [ "$hard" -lt 8192 ]; then
    echo "abacus-entrypoint: warning: the open-file limit is $hard, below lighttpd's server.max-fds 8192;" \
         "give the container more (docker run --ulimit nofile=8192, compose ulimits:)" >&2
  fi
}

case "${1:-run}" in
  run)
    check_settings 2>&1
    # A metrics segment left by a previous run of this container is stale.
    rm -f "/dev/shm/${ABACUS_METRICS_SHM#/}"
    rm -f "$ABACUS_FRONTEND_DIR"/abacus.sock-*
    # Workers inherit lighttpd's stderr: their JSON lines go to the container log.
    exec lighttpd -D -f "$conf" 2>&1
    ;;
  check)
    check_settings
    echo "abacus-entrypoint: configuration ok (port $ABACUS_PORT, $ABACUS_WORKERS workers)"
    ;;
  healthcheck)
    # bash's /dev/tcp: one GET without starting curl every 10 s.
    exec 3<>"/dev/tcp/127.0.0.1/$ABACUS_PORT" || exit 1
    printf 'GET /readyz HTTP/1.0\r\nHost: localhost\r\n\r\n' >&3
    IFS= read -r -t 3 status <&3 || exit 1
    [[ $status == HTTP/1.?\ 200* ]]
    ;;
  *)
    die "usage: abacus-entrypoint [run|check|healthcheck]"
    ;;
esac
