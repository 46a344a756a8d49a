#!/usr/bin/env bash
# Runs a three-node ferrocache cluster on loopback, with nutcracker (twemproxy) in front, until
# Ctrl-C (or until one of the processes dies). Clients can use the nodes directly (ketama in the
# client) or the proxy; both put every key on the same node:
#
#   examples/cluster.sh                      # nodes 127.0.0.1:21211-21213, proxy 127.0.0.1:22121
#   memcachedc -s 127.0.0.1:21211,127.0.0.1:21212,127.0.0.1:21213 set k v
#   memcachedc -s 127.0.0.1:22121 get k      # through nutcracker: same node, same value
#
# Environment:
#   BASE_PORT=21211        first node port (the others follow)
#   PROXY_PORT=22121       nutcracker's port (its stats port is PROXY_PORT+1)
#   NO_PROXY=1             no nutcracker
#   FERROCACHED_BIN=...    the node binary (default target/release/ferrocached, built if missing)
#   SERVER=memcached       run Debian's memcached as the nodes instead, to compare
set -euo pipefail
cd "$(dirname "$0")/.."
base=${BASE_PORT:-21211}
proxy=${PROXY_PORT:-22121}
pids=()
conf=""

cleanup() {
  [ ${#pids[@]} -eq 0 ] || kill "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  [ -z "$conf" ] || rm -f "$conf"
  echo "cluster stopped"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ "${SERVER:-ferrocached}" = memcached ]; then
  node=(memcached -U 0)
  [ "$(id -u)" != 0 ] || node+=(-u root)
else
  bin=${FERROCACHED_BIN:-target/release/ferrocached}
  [ -x "$bin" ] || cargo build --release --bin ferrocached
  node=("$bin")
fi
for i in 0 1 2; do
  "${node[@]}" -l 127.0.0.1 -p $((base + i)) -m 64 -t 2 &
  pids+=($!)
  echo "${node[0]##*/} on 127.0.0.1:$((base + i)) (pid $!)"
done
if [ -z "${NO_PROXY:-}" ]; then
  command -v nutcracker >/dev/null || { echo "nutcracker not found (apt install nutcracker), or NO_PROXY=1"; exit 1; }
  conf=$(mktemp /tmp/ferrocache-nutcracker.XXXXXX.yml)
  sed -e "s/127.0.0.1:21211/127.0.0.1:$base/; s/127.0.0.1:21212/127.0.0.1:$((base + 1))/" \
      -e "s/127.0.0.1:21213/127.0.0.1:$((base + 2))/; s/127.0.0.1:22121/127.0.0.1:$proxy/" \
      examples/nutcracker.yml >"$conf"
  nutcracker -c "$conf" -s $((proxy + 1)) -a 127.0.0.1 &
  pids+=($!)
  echo "nutcracker on 127.0.0.1:$proxy (pid $!), stats on 127.0.0.1:$((proxy + 1)), config $conf"
fi
echo "Ctrl-C stops the cluster."
# Stop everything as soon as any one process ends.
wait -n
echo "a process of the cluster exited"
