#!/usr/bin/env bash
# memcaslap: a short bounded load (3 s, 2 threads, 16 connections, 90% gets, a tenth of the gets
# verified against what was set) that must see no error reply, no miss and no wrong value, and whose
# request counts the server's own stats must account for.
# usage: memcaslap.sh HOST:PORT
set -u
. "$(dirname "$0")/harness.sh"
. "$(dirname "$0")/memcaslap_report.sh"
addr="$1"
echo "client memcaslap $(dpkg-query -W -f '${Version}' libmemcached-tools 2>/dev/null) ($(command -v memcaslap))"
out="$(memcaslap -s "$addr" -t 3s -T 2 -c 16 -v 0.1 2>&1)"
is "memcaslap exit status" "$?" 0
check_report
ops="$(sed -n 's/.*Ops: \([0-9]*\).*/\1/p' <<<"$out")"
is "requests were made (Ops > 10000)" "$([ "${ops:-0}" -gt 10000 ] && echo yes || echo "Ops: ${ops:-none}")" yes
stats="$(printf 'stats\r\nquit\r\n' | timeout 5 bash -c "exec 3<>/dev/tcp/${addr%:*}/${addr##*:}; cat >&3; cat <&3")"
check_server_counts 0
is "server get_misses" "$(server get_misses)" 0
finish
