#!/usr/bin/env bash
# examples/cluster.sh as a user runs it: three nodes and nutcracker on free loopback ports
# (BASE_PORT, PROXY_PORT), keys set through the nodes with memcachedc (ketama in the client) and
# read through the proxy, then the script is stopped as Ctrl-C would and every process it
# started must be gone.
#   cluster_script.sh MEMCACHEDC SERVER_BIN      SERVER_BIN: ferrocached, or a memcached (the
#                                                script's SERVER=memcached)
set -u
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
. "$here/harness.sh"
memcachedc="$1"; server_bin="$2"
work="$(mktemp -d)"
script_pid=""; started=()
# Whatever is left if a check fails: the script, and the processes it said it started.
trap 'for p in $script_pid "${started[@]}"; do kill "$p" 2>/dev/null; done; rm -rf "$work"' EXIT
trap 'exit 143' TERM INT

# N consecutive ports free on 127.0.0.1 (the script takes BASE_PORT..+2 and PROXY_PORT..+1).
free_ports() {
  /usr/bin/python3 - "$1" <<'PY'
import socket, sys, random
n = int(sys.argv[1])
for _ in range(200):
    base = random.randrange(20000, 60000 - n)
    socks = []
    try:
        for p in range(base, base + n):
            s = socket.socket(); s.bind(("127.0.0.1", p)); socks.append(s)
        print(base); break
    except OSError:
        pass
    finally:
        for s in socks: s.close()
PY
}
base="$(free_ports 3)"; proxy="$(free_ports 2)"
while [ "$proxy" -ge $((base - 1)) ] && [ "$proxy" -le $((base + 2)) ]; do proxy="$(free_ports 2)"; done
nodes="127.0.0.1:$base,127.0.0.1:$((base + 1)),127.0.0.1:$((base + 2))"

env=(BASE_PORT="$base" PROXY_PORT="$proxy")
case "${server_bin##*/}" in
  memcached) env+=(SERVER=memcached) ;;
  *) env+=(FERROCACHED_BIN="$server_bin") ;;
esac
echo "client examples/cluster.sh with memcachedc and nutcracker $(nutcracker --version 2>&1 | sed -n 's/.*nutcracker-//p')"
env "${env[@]}" "$root/examples/cluster.sh" >"$work/cluster.log" 2>&1 &
script_pid=$!

up=""
for _ in $(seq 200); do
  kill -0 "$script_pid" 2>/dev/null || break
  up=yes
  for p in $base $((base + 1)) $((base + 2)) $proxy; do
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { up=""; break; }
  done
  [ -n "$up" ] && break
  sleep 0.05
done
is "the three nodes and the proxy accept connections" "${up:-no}" yes
[ -n "$up" ] || { sed 's/^/    /' "$work/cluster.log"; exit 1; }
mapfile -t started < <(sed -n 's/.*(pid \([0-9]*\)).*/\1/p' "$work/cluster.log")
is "processes the script says it started" "${#started[@]}" 4
children="$(pgrep -P "$script_pid" | sort -n | paste -sd ' ')"
is "they are the script's children" "$children" "$(printf '%s\n' "${started[@]}" | sort -n | paste -sd ' ')"

succeeds "100 sets through the nodes with memcachedc" \
  bash -c 'seq 1 100 | sed "s/.*/cluster-& v&/" | "$1" -s "$2" set' _ "$memcachedc" "$nodes"
missing=0
for i in $(seq 1 100); do
  [ "$("$memcachedc" -s "127.0.0.1:$proxy" get "cluster-$i" 2>/dev/null)" = "v$i" ] || missing=$((missing + 1))
done
is "keys the proxy does not find (of 100)" "$missing" 0
# Every node got some of them: the keys were spread, not all on one node.
for p in $base $((base + 1)) $((base + 2)); do
  items="$("$memcachedc" -s "127.0.0.1:$p" stats | sed -n 's/^\tcurr_items: //p')"
  succeeds "node :$p holds some of the keys ($items)" test "${items:-0}" -gt 0
done

# Stop it as Ctrl-C does (the script traps INT and TERM alike; a background job ignores INT).
kill -TERM "$script_pid"
stopped=no
for _ in $(seq 200); do kill -0 "$script_pid" 2>/dev/null || { stopped=yes; break; }; sleep 0.05; done
is "the script exits on SIGTERM" "$stopped" yes
wait "$script_pid" 2>/dev/null
left=()
for p in "${started[@]}"; do kill -0 "$p" 2>/dev/null && left+=("$p"); done
is "processes still running after the script stopped" "${left[*]}" ""
grep -q "cluster stopped" "$work/cluster.log"
is "the script says it stopped the cluster" "$?" 0
refused=yes
for p in $base $((base + 1)) $((base + 2)) $proxy; do
  (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && refused=no
done
is "nothing listens on its ports any more" "$refused" yes
script_pid=""
finish
