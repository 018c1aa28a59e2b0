#!/usr/bin/env bash
# abacus-connlimit.sh — a cap on the TCP connections one client address may
# hold open to a front end's port, in the host firewall (iptables connlimit).
#
#   abacus-connlimit.sh add PORT...      cap these ports (replaces an earlier rule)
#   abacus-connlimit.sh remove PORT...   remove the cap of these ports
#   abacus-connlimit.sh status [PORT...] list the rules; exit 1 if a PORT has none
#
# Why: lighttpd 1.4.69 has no per-address connection cap (Debian's build has
# no mod_evasive) and no limit on the total time a request may take to arrive,
# and nginx's limit_conn counts only requests in flight, not half-sent or idle
# connections.  Without a cap here one client with a few thousand sockets can
# hold every connection a front end has (docs/OPERATIONS.md, "Hostile clients
# / connection floods").  With it, a client's connection beyond the cap is
# refused at once (its SYN answered with a reset); everyone else is served.
#
# Environment:
#   ABACUS_CONNLIMIT        connections at once per client address      128
#   ABACUS_CONNLIMIT_MASK   IPv4 prefix that counts as one client       32
#   ABACUS_CONNLIMIT_MASK6  IPv6 prefix that counts as one client       64
#                           (one host usually holds a whole /64)
#   ABACUS_CONNLIMIT_IPV6   1: ip6tables too (when installed); 0: IPv4 only  1
#   ABACUS_CONNLIMIT_CHAIN  the chain                                   INPUT
#       INPUT: front ends on this host (the local stack, lighttpd or nginx
#       as a service).  Ports Docker publishes are forwarded, not input: use
#       DOCKER-USER there, with the container's port (8000): that chain sees
#       the packet after Docker's DNAT.
#
# Needs root and iptables.  Rules carry the comment "abacus-connlimit:PORT",
# which is how remove and status find them; nothing else is touched.  Rules
# do not survive a reboot: run `add` from the unit that starts the front end
# (or save them with iptables-save / netfilter-persistent).
#
# Size the cap above what one legitimate address needs at once (a NAT
# gateway, a load generator, a proxy that is not the balancer of compose:
# never cap the balancer's own address in front of the app containers) and
# well below the front end's connection limit (4096): it takes that many
# addresses divided by the cap (32 at 128) to fill a front end.
set -euo pipefail

limit=${ABACUS_CONNLIMIT:-128}
mask=${ABACUS_CONNLIMIT_MASK:-32}
mask6=${ABACUS_CONNLIMIT_MASK6:-64}
ipv6=${ABACUS_CONNLIMIT_IPV6:-1}
chain=${ABACUS_CONNLIMIT_CHAIN:-INPUT}

say() { printf 'abacus-connlimit: %s\n' "$*"; }
die() { say "$*" >&2; exit 1; }

usage() { echo "usage: $0 add|remove|status PORT..." >&2; exit 2; }

[[ $limit =~ ^[0-9]+$ ]] && [ "$limit" -ge 1 ] || die "ABACUS_CONNLIMIT must be a positive number, not '$limit'"
[[ $mask =~ ^[0-9]+$ ]] && [ "$mask" -le 32 ] || die "ABACUS_CONNLIMIT_MASK must be 0..32, not '$mask'"
[[ $mask6 =~ ^[0-9]+$ ]] && [ "$mask6" -le 128 ] || die "ABACUS_CONNLIMIT_MASK6 must be 0..128, not '$mask6'"

# The tools this run uses: iptables always, ip6tables when asked and present.
tools=(iptables)
if [ "$ipv6" = 1 ]; then
  if command -v ip6tables >/dev/null; then tools+=(ip6tables); else say "ip6tables not installed: IPv4 only"; fi
fi
command -v iptables >/dev/null || die "iptables is not installed (apt-get install iptables)"
[ "$(id -u)" -eq 0 ] || die "needs root (it changes the firewall)"

check_port() {
  [[ $1 =~ ^[0-9]{1,5}$ ]] && [ "$1" -ge 1 ] && [ "$1" -le 65535 ] || die "'$1' is not a TCP port"
}

# rules TOOL PORT: the rule specs (iptables -S lines) of PORT, one a line.
rules() {
  "$1" -w -S "$chain" 2>/dev/null | grep -F -- "--comment \"abacus-connlimit:$2\"" || true
}

# remove_port TOOL PORT: deletes every rule of PORT (bounded: 100 at most).
remove_port() {
  local tool=$1 port=$2 line spec i
  for i in $(seq 1 100); do
    line=$(rules "$tool" "$port" | head -n 1)
    [ -n "$line" ] || return 0
    # "-A CHAIN ..." -> "-D CHAIN ..."; the comment has no spaces, drop its quotes.
    read -ra spec <<<"${line//\"/}"
    spec[0]=-D
    "$tool" -w "${spec[@]}"
  done
  die "more than 100 rules for port $port in $chain ($tool)"
}

add_port() {
  local tool=$1 port=$2 m=$mask
  [ "$tool" = ip6tables ] && m=$mask6
  remove_port "$tool" "$port"
  "$tool" -w -I "$chain" -p tcp --syn --dport "$port" \
    -m connlimit --connlimit-above "$limit" --connlimit-mask "$m" \
    -m comment --comment "abacus-connlimit:$port" \
    -j REJECT --reject-with tcp-reset
}

cmd=${1:-}; shift || true
case $cmd in
  add|remove) [ $# -gt 0 ] || usage ;;
  status) ;;
  *) usage ;;
esac
for port in "$@"; do check_port "$port"; done

rc=0
case $cmd in
  add)
    for port in "$@"; do
      for tool in "${tools[@]}"; do add_port "$tool" "$port"; done
      say "port $port: at most $limit connections per client address ($chain; /$mask$( [ ${#tools[@]} -gt 1 ] && echo ", IPv6 /$mask6"))"
    done
    ;;
  remove)
    for port in "$@"; do
      for tool in "${tools[@]}"; do remove_port "$tool" "$port"; done
      say "port $port: no cap"
    done
    ;;
  status)
    if [ $# -eq 0 ]; then
      for tool in "${tools[@]}"; do "$tool" -w -S "$chain" | grep -F -- '--comment "abacus-connlimit:' || true; done
    else
      for port in "$@"; do
        found=$(for tool in "${tools[@]}"; do rules "$tool" "$port"; done)
        if [ -n "$found" ]; then printf '%s\n' "$found"; else say "port $port: no cap"; rc=1; fi
      done
    fi
    ;;
esac
exit $rc
