#!/usr/bin/env bash
# UDP (-U) with libmemcached's clients: memccp stores a file over UDP (fire and forget), and
# memcaslap runs a bounded load entirely over UDP (3 s, 2 threads, 16 connections, 90% gets, a
# tenth of the gets verified), which must see no miss, no wrong value and no error reply, and
# which the server's own counters (read over TCP) must account for.
# usage: udp.sh SERVER_BIN [SERVER_ARGS...]
set -u
. "$(dirname "$0")/harness.sh"
. "$(dirname "$0")/memcaslap_report.sh"
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
check_report
gets="$(field cmd_get)"
is "more than 10,000 gets over UDP" "$([ "${gets:-0}" -gt 10000 ] && echo yes || echo "cmd_get ${gets:-none}")" yes
stats="$(tcp_send $'stats\r\n')"
# memccp's set is one more than memcaslap counts.
check_server_counts 1
finish
