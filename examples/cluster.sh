#!/usr/bin/env bash
# Runs a three-node ferrocache cluster on loopback, with nutcracker (twemproxy) in front, until
# Ctrl-C. Clients can use the nodes directly (ketama in the client) or the proxy:
#
#   examples/cluster.sh                      # ports 21211 21212 21213, proxy 22121
#   memcachedc -s 127.0.0.1:21211,127.0.0.1:21212,127.0.0.1:21213 set k v
#   memcachedc -s 127.0.0.1:22121 get k      # through nutcracker: the same server, same key
#
# BASE_PORT changes the node ports; PROXY_PORT the proxy's; NO_PROXY=1 skips nutcracker.
set -euo pipefail
cd "$(dirname "$0")/.."
base=${BASE_PORT:-21211}
proxy=${PROXY_PORT:-22121}
bin=${FERROCACHED_BIN:-target/release/ferrocached}
[ -x "$bin" ] || cargo build --release --bin ferrocached
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null; echo "cluster stopped"' EXIT INT TERM
for i in 0 1 2; do
  "$bin" -l 127.0.0.1 -p $((base + i)) -m 64 -t 2 &
  pids+=($!)
  echo "ferrocached on 127.0.0.1:$((base + i)) (pid $!)"
done
if [ -z "${NO_PROXY:-}" ] && command -v nutcracker >/dev/null; then
  conf=$(mktemp /tmp/ferrocache-nutcracker.XXXXXX.yml)
  sed -e "s/21211/$base/; s/21212/$((base + 1))/; s/21213/$((base + 2))/; s/22121/$proxy/" \
    examples/nutcracker.yml >"$conf"
  nutcracker -c "$conf" -s $((proxy + 1)) &
  pids+=($!)
  echo "nutcracker on 127.0.0.1:$proxy (pid $!), config $conf"
fi
echo "Ctrl-C stops the cluster."
wait
