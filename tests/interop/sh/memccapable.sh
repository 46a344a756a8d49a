#!/usr/bin/env bash
# memccapable (libmemcached's protocol conformance test) on one protocol.
# usage: memccapable.sh HOST:PORT ascii|binary
# Every test memccapable runs becomes one check. MEMCCAPABLE_SKIP lists tests not run (by name,
# comma-separated, e.g. "ascii stat"); it is empty because memcached 1.6.18 passes them all, and
# only a test memcached itself fails may go there (see docs/interop.md).
set -u
. "$(dirname "$0")/harness.sh"
addr="$1"; proto="$2"
echo "client memccapable $(dpkg-query -W -f '${Version}' libmemcached-tools 2>/dev/null) ($(command -v memccapable))"
out="$(memccapable -h "${addr%:*}" -p "${addr##*:}" -t 10 "-${proto:0:1}" 2>&1)"
status=$?
tests=0
while IFS= read -r line; do
  # "ascii set noreply                       [pass]"
  [[ "$line" =~ ^((ascii|binary)\ .*[^ ])\ +\[([a-z]+)\]$ ]] || continue
  name="${BASH_REMATCH[1]}"; result="${BASH_REMATCH[3]}"
  tests=$((tests + 1))
  case ",${MEMCCAPABLE_SKIP:-}," in *",$name,"*) echo "# skipped $name: $result"; continue ;; esac
  is "$name" "$result" pass
done <<<"$out"
# memccapable stops at the first failure unless told to go on; the count makes a stop visible.
want=27  # as many binary tests as ascii ones in libmemcached 1.1.4
is "memccapable ran all $want $proto tests" "$tests" "$want"
is "memccapable exit status" "$status" 0
finish
