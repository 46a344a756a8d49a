#!/usr/bin/env bash
# nutcracker (twemproxy, md5 + ketama) over three running servers, then one of two checks:
#   nutcracker.sh eject PYTHON DEAD_PID S1 S2 S3    auto_eject_hosts: python/nutcracker_check.py
#                                                   kills DEAD_PID (the server S3) and watches
#   nutcracker.sh placement MEMCACHEDC S1 S2 S3     keys set through nutcracker are found by
#                                                   memcachedc, which asks only the server its own
#                                                   ketama ring names (the project's client and
#                                                   twemproxy agree on placement)
# nutcracker listens on ephemeral loopback ports and is killed at exit.
set -u
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/harness.sh"
mode="$1"; shift
work="$(mktemp -d)"
nc_pid=""
trap '[ -n "$nc_pid" ] && kill "$nc_pid" 2>/dev/null; rm -rf "$work"' EXIT
trap 'exit 143' TERM INT
free_port() {
  /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

start_nutcracker() { # SERVERS...: sets $proxy and $stats_port
  local s
  proxy="127.0.0.1:$(free_port)"; stats_port="$(free_port)"
  {
    echo "interop:"
    echo "  listen: $proxy"
    echo "  hash: md5"
    echo "  distribution: ketama"
    echo "  timeout: 500"
    echo "  auto_eject_hosts: true"
    echo "  server_retry_timeout: 30000"   # longer than the check: the dead node stays out
    echo "  server_failure_limit: 1"
    echo "  servers:"
    for s in "$@"; do echo "   - $s:1"; done
  } >"$work/nutcracker.yml"
  nutcracker -c "$work/nutcracker.yml" -s "$stats_port" -a 127.0.0.1 -i 100 -o "$work/nutcracker.log" &
  nc_pid=$!
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/${proxy%:*}/${proxy##*:}") 2>/dev/null && return 0
    kill -0 "$nc_pid" 2>/dev/null || break
    sleep 0.05
  done
  echo "not ok nutcracker starts: $(tail -3 "$work/nutcracker.log" | tr '\n' ' ')"
  exit 1
}

case "$mode" in
  eject)
    py="$1"; dead_pid="$2"; shift 2
    start_nutcracker "$@"
    "$py" "$here/../python/nutcracker_check.py" "$proxy" "$@" "$dead_pid" "$stats_port"
    ;;
  placement)
    memcachedc="$1"; shift
    start_nutcracker "$@"
    echo "client memcachedc with nutcracker $(nutcracker --version 2>&1 | sed -n 's/.*nutcracker-//p') ($memcachedc)"
    succeeds "200 sets through nutcracker with memcachedc" \
      bash -c 'seq 1 200 | sed "s/.*/placement-& v&/" | "$1" -s "$2" set' _ "$memcachedc" "$proxy"
    list="$(IFS=,; echo "$*")"
    missing=0
    for i in $(seq 1 200); do
      [ "$("$memcachedc" -s "$list" get "placement-$i" 2>/dev/null)" = "v$i" ] || missing=$((missing + 1))
    done
    is "keys memcachedc does not find where nutcracker put them (of 200)" "$missing" 0
    finish
    ;;
  *) echo "usage: nutcracker.sh eject|placement ..."; exit 2 ;;
esac
