#!/usr/bin/env bash
# Installs the Debian packages abacus builds, runs and tests with, if missing.
# Used by `make deps` (and so by `make run` and `make test`).
set -euo pipefail

packages=(
  build-essential pkg-config
  libfcgi-dev libhiredis-dev check        # build
  libcurl4-openssl-dev                    # tools/abacus-load
  lighttpd redis-server redis-tools       # local stack, tests
  nginx spawn-fcgi multiwatch             # nginx deployment
  curl procps iproute2 python3            # tests
  python3-yaml python3-jsonschema         # compose file and OpenAPI checks
  cppcheck clang-tidy                     # lint
  prometheus wrk gnuplot-nox               # metrics tests, benchmarks, the plot
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "deps: installing ${missing[*]}"
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
