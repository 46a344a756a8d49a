#!/usr/bin/env bash
# memcaslap: a short bounded load (3 s, 2 threads, 16 connections, 90% gets, a tenth of the gets
# verified against what was set) that must see no error reply, no miss and no wrong value, and whose
# request counts the server's own stats must account for.
# usage: memcaslap.sh HOST:PORT
set -u
. "$(dirname "$0")/harness.sh"
addr="$1"
echo "client memcaslap $(dpkg-query -W -f '${Version}' libmemcached-tools 2>/dev/null) ($(command -v memcaslap))"
out="$(memcaslap -s "$addr" -t 3s -T 2 -c 16 -v 0.1 2>&1)"
is "memcaslap exit status" "$?" 0
field() { sed -n "s/^$1: *\([0-9]*\).*/\1/p" <<<"$out" | head -1; }
echo "# $(grep '^Run time' <<<"$out")"
is "no failed verifications" "$(field verify_failed)" 0
is "no verify misses" "$(field verify_misses)" 0
is "no get misses" "$(field get_misses)" 0
# memcaslap exits 0 and counts nothing when the server answers with an error: it prints the reply
# instead (`<FD SERVER_ERROR ...`). Anything but its own report lines is such an error.
report='^(servers|threads count|concurrency|run time|windows size|set proportion|get proportion|cmd_get|cmd_set|get_misses|verify_misses|verify_failed|expired_get|unexpired_unget|written_bytes|read_bytes|object_bytes|packet_disorder|packet_drop|udp_timeout|Run time): |^$'
unexpected="$(grep -cvE "$report" <<<"$out")"
[ "$unexpected" = 0 ] || unexpected="$unexpected lines such as $(grep -vE "$report" <<<"$out" | head -1)"
is "no error replies" "$unexpected" 0
gets="$(field cmd_get)"; sets="$(field cmd_set)"
is "gets and sets were both made" "$([ "${gets:-0}" -gt 0 ] && [ "${sets:-0}" -gt 0 ] && echo yes || echo "cmd_get ${gets:-none}, cmd_set ${sets:-none}")" yes
ops="$(sed -n 's/.*Ops: \([0-9]*\).*/\1/p' <<<"$out")"
is "requests were made (Ops > 10000)" "$([ "${ops:-0}" -gt 10000 ] && echo yes || echo "Ops: ${ops:-none}")" yes
# The server counted what memcaslap says it sent (less the few in flight when it stopped).
stats="$(printf 'stats\r\nquit\r\n' | timeout 5 bash -c "exec 3<>/dev/tcp/${addr%:*}/${addr##*:}; cat >&3; cat <&3")"
server() { sed -n "s/^STAT $1 \([0-9]*\).*/\1/p" <<<"$stats" | head -1; }
for c in cmd_get cmd_set; do
  mine="$(field "$c")"; theirs="$(server "$c")"
  is "server $c within 1% of memcaslap's ($mine)" \
    "$([ "${theirs:-0}" -le "${mine:-0}" ] && [ "$((${theirs:-0} * 100))" -ge "$((${mine:-0} * 99))" ] && echo yes || echo "server ${theirs:-none}")" yes
done
is "server get_misses" "$(server get_misses)" 0
finish
