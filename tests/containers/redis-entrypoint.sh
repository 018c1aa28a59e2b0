#!/bin/sh
# As the published image: redis-server without a configuration file listens
# on every interface with protected mode off.
if [ "$1" = redis-server ]; then
  shift
  exec redis-server --protected-mode no "$@"
fi
exec "$@"
