#!/usr/bin/env bash
# UDP (-U) with libmemcached's clients: memccp stores a file over UDP (fire and forget), and
# memcaslap runs a bounded load entirely over UDP (3 s, 2 threads, 16 connections, 90% gets, a
# tenth of the gets verified), which must see no miss, no wrong value and no error reply, and
# which the server's own counters (read over TCP) must account for.
# usage: udp.sh SERVER_BIN [SERVER_ARGS...]
set -u
. "$(dirname "$0")/harness.sh"
bin="$1"; shift
dir="$(mktemp -d)"; pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$dir"' EXIT
echo "client memcaslap and memccp $(dpkg-query -W -f '${Version}' libmemcached-tools 2>/dev/null) (UDP)"

MEMCACHED_PORT_FILENAME="$dir/ports" "$bin" -p -1 -U -1 -l 127.0.0.1 "$@" >"$dir/server.log" 2>&1 &
pid=$!
for _ in $(seq 100); do grep -q '^UDP INET: ' "$dir/ports" 2>/dev/null && break; sleep 0.05; done
tcp="$(sed -n 's/^TCP INET: //p' "$dir/ports" 2>/dev/null | head -1)"
udp="$(sed -n 's/^UDP INET: //p' "$dir/ports" 2>/dev/null | head -1)"
is "the server listens on TCP and UDP" "$([ -n "$tcp" ] && [ -n "$udp" ] && echo yes)" yes

# tcp_send REQUEST: the server's reply over TCP, up to its END.
tcp_send() {
  printf '%s' "$1" | timeout 5 bash -c "exec 3<>/dev/tcp/127.0.0.1/$tcp; cat >&3; sed '/^END/q' <&3"
}

printf 'over udp' >"$dir/udpfile"
memccp --udp --servers="127.0.0.1:$udp" "$dir/udpfile"
is "memccp --udp exit status" "$?" 0
got=""
for _ in $(seq 50); do
  got="$(tcp_send $'get udpfile\r\n' | tr -d '\r' | paste -sd ' ')"
  [ "$got" != END ] && break
  sleep 0.05
done
is "the file memccp sent over UDP reads back over TCP" "$got" "VALUE udpfile 0 8 over udp END"

out="$(memcaslap -s "127.0.0.1:$udp" -U -t 3s -T 2 -c 16 -v 0.1 2>&1)"
is "memcaslap -U exit status" "$?" 0
field() { sed -n "s/^$1: *\([0-9]*\).*/\1/p" <<<"$out" | head -1; }
echo "# $(grep '^Run time' <<<"$out")"
is "no failed verifications" "$(field verify_failed)" 0
is "no get misses" "$(field get_misses)" 0
report='^(servers|threads count|concurrency|run time|windows size|set proportion|get proportion|cmd_get|cmd_set|get_misses|verify_misses|verify_failed|expired_get|unexpired_unget|written_bytes|read_bytes|object_bytes|packet_disorder|packet_drop|udp_timeout|Run time): |^$'
unexpected="$(grep -cvE "$report" <<<"$out")"
[ "$unexpected" = 0 ] || unexpected="$unexpected lines such as $(grep -vE "$report" <<<"$out" | head -1)"
is "no error replies" "$unexpected" 0
gets="$(field cmd_get)"; sets="$(field cmd_set)"
is "gets and sets over UDP (more than 10,000)" \
  "$([ "${gets:-0}" -gt 10000 ] && [ "${sets:-0}" -gt 0 ] && echo yes || echo "cmd_get ${gets:-none}, cmd_set ${sets:-none}")" yes
stats="$(tcp_send $'stats\r\n')"
server() { sed -n "s/^STAT $1 \([0-9]*\).*/\1/p" <<<"$stats" | head -1; }
# memccp's set is one more than memcaslap's; a request lost on the way is one less.
for c in cmd_get cmd_set; do
  mine="$(field "$c")"; theirs="$(server "$c")"
  is "server $c within 1% of memcaslap's ($mine)" \
    "$([ "${theirs:-0}" -le $((${mine:-0} + 2)) ] && [ "$((${theirs:-0} * 100))" -ge "$((${mine:-0} * 99))" ] && echo yes || echo "server ${theirs:-none}")" yes
done
finish
