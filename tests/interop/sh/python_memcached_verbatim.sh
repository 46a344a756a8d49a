#!/usr/bin/env bash
# The issue's python-memcached program, verbatim, must print `value`. It talks to
# 127.0.0.1:11211, so it runs in a private network namespace (its own loopback): the server it
# reaches is the one started here, and no real port 11211 on this machine is touched.
# usage: python_memcached_verbatim.sh SERVER_BIN PYTHON [SERVER_ARGS...]
set -u
. "$(dirname "$0")/harness.sh"
bin="$1"; py="$2"; shift 2
program="$(dirname "$0")/../python/python_memcached_verbatim.py"
echo "client python-memcached $("$py" -c 'import memcache; print(memcache.__version__, "(%s)" % memcache.__file__)')"
out="$(unshare --net bash -c '
  set -u
  ip link set lo up || { echo "cannot bring up lo in the namespace"; exit 3; }
  bin="$1"; py="$2"; program="$3"; shift 3
  "$bin" -p 11211 -U 0 -l 127.0.0.1 "$@" >/dev/null 2>&1 & pid=$!
  for _ in $(seq 100); do
    "$py" -c "import socket; socket.create_connection((\"127.0.0.1\", 11211))" 2>/dev/null && break
    sleep 0.05
  done
  "$py" "$program"; status=$?
  kill "$pid"
  exit $status' _ "$bin" "$py" "$program" "$@" 2>&1)"
is "the verbatim program prints value" "$out" value
finish
