#!/usr/bin/env bash
# Installs what abacus builds, runs and tests with, if missing.
#   tools/deps.sh        Debian packages (`make deps`, and so `make run`)
#   tools/deps.sh test   the same, plus the test-only tools: valgrind, the
#                        fuzzers' clang runtime, git, systemd's offline tools,
#                        and the OpenAPI linter (@redocly/cli, from the npm
#                        registry, into build/tools)
#   tools/deps.sh containers   the container engine `make test-containers`
#                        uses: podman (with runc), podman-compose, mmdebstrap
# `make test` uses the second form: no suite downloads anything.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  build-essential pkg-config
  libfcgi-dev libhiredis-dev check        # build
  nettle-dev                              # build: SHA-256 of the API keys (lib/sha256)
  libcurl4-openssl-dev                    # tools/abacus-load
  lighttpd redis-server redis-tools       # local stack, tests
  lighttpd-mod-openssl openssl            # HTTPS front ends (ABACUS_TLS_CERT), it_tls's certificates
  nginx spawn-fcgi multiwatch             # nginx deployment
  curl procps iproute2 util-linux python3 # the stack script (ss, setpriv), tests
  python3-yaml python3-jsonschema         # compose file and OpenAPI checks
  cppcheck clang-tidy                     # lint
  prometheus wrk gnuplot-nox              # metrics tests and promtool (it_ops), benchmarks, the plot
)
if [ "${1:-}" = test ]; then
  packages+=(
    valgrind                              # it_memory
    lua-check                             # make lint: the Redis scripts
    clang libclang-rt-14-dev              # make fuzz
    git ca-certificates                   # .ci/run clones the checkout
    systemd                               # it_ops: systemd-analyze verify, systemd-sysusers (not run as init)
    iptables                              # it_flood: the per-address cap (conf/firewall)
    nodejs npm                            # the OpenAPI linter
  )
fi
if [ "${1:-}" = containers ]; then
  packages=(
    podman runc podman-compose            # the engine and compose (tests/containers)
    golang-github-containernetworking-plugin-dnsname   # service names on compose networks
    mmdebstrap                            # the Debian base image, from the mirror
    curl python3 iproute2
  )
  # A machine with Docker (engine and compose plugin) needs none of them.
  [ "${CONTAINER_ENGINE:-podman}" = docker ] && packages=(curl python3 iproute2)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
# The machine image may have Node.js and npm from elsewhere: that will do.
if command -v npm >/dev/null; then
  m=(); for p in "${missing[@]}"; do case $p in nodejs|npm) ;; *) m+=("$p") ;; esac; done
  missing=("${m[@]}")
fi

if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The OpenAPI linter, pinned, with its telemetry and update check off (the
# suite that runs it sets the same variables).  @redocly/cli 2.x needs Node.js
# 20.19 or later; Debian 12's own Node.js is 18.19, which 1.34 supports (it
# lints docs/openapi.yaml the same: valid, no warning).
redocly_version() {
  local v major minor
  v=$(node --version 2>/dev/null | tr -d v) || true
  major=${v%%.*}; minor=${v#*.}; minor=${minor%%.*}
  if [ -z "$v" ]; then echo "none"
  elif [ "$major" -gt 20 ] || { [ "$major" -eq 20 ] && [ "$minor" -ge 19 ]; }; then echo 2.77.0
  elif [ "$major" -gt 18 ] || { [ "$major" -eq 18 ] && [ "$minor" -ge 17 ]; }; then echo 1.34.6
  else echo "none"
  fi
}
if [ "${1:-}" = test ] && [ ! -x build/tools/node_modules/.bin/redocly ]; then
  version=$(redocly_version)
  [ "$version" != none ] ||
    { echo "deps: the OpenAPI linter needs Node.js 18.17 or later (found: $(node --version 2>/dev/null || echo none))" >&2; exit 1; }
  echo "deps: installing @redocly/cli@$version into build/tools (Node.js $(node --version))"
  mkdir -p build/tools
  (cd build/tools && REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true \
     timeout 600 npm install --silent --no-audit --no-fund --prefix . "@redocly/cli@$version" >npm.log 2>&1) ||
    { echo "deps: npm install @redocly/cli@$version failed:" >&2; tail -n 20 build/tools/npm.log >&2; exit 1; }
fi
# Stoplight Prism (an OpenAPI validator written in JavaScript, as clients' tools are):
# tests/it_openapi.sh puts it in proxy mode in front of a stack.
prism_version() {
  local v major minor patch
  v=$(node --version 2>/dev/null | tr -d v)
  IFS=. read -r major minor patch <<<"${v:-0.0.0}"
  if [ -z "$v" ] || [ "$major" -lt 16 ]; then echo "none"
  elif [ "$major" -gt 18 ] || { [ "$major" -eq 18 ] && { [ "$minor" -gt 20 ] ||
       { [ "$minor" -eq 20 ] && [ "${patch:-0}" -ge 1 ]; }; }; }; then echo 5.16.0
  else echo 5.7.0      # the last release for Node.js 16-18.20.0 (Debian 12's 18.19)
  fi
}
if [ "${1:-}" = test ] && [ ! -x build/tools/node_modules/.bin/prism ]; then
  version=$(prism_version)
  [ "$version" != none ] ||
    { echo "deps: Prism needs Node.js 16 or later (found: $(node --version 2>/dev/null || echo none))" >&2; exit 1; }
  echo "deps: installing @stoplight/prism-cli@$version into build/tools (Node.js $(node --version))"
  mkdir -p build/tools
  (cd build/tools && timeout 600 npm install --silent --no-audit --no-fund --prefix . \
     "@stoplight/prism-cli@$version" >npm-prism.log 2>&1) ||
    { echo "deps: npm install @stoplight/prism-cli@$version failed:" >&2; tail -n 20 build/tools/npm-prism.log >&2; exit 1; }
fi
exit 0
