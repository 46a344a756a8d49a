# Checks on a memcaslap run, shared by the memcaslap groups over TCP and UDP (sourced after
# harness.sh). memcaslap's report is in $out; the server's `stats` reply in $stats.

# field NAME: the number memcaslap reported for NAME.
field() { sed -n "s/^$1: *\([0-9]*\).*/\1/p" <<<"$out" | head -1; }

# server NAME: the number the server's stats give for NAME.
server() { sed -n "s/^STAT $1 \([0-9]*\).*/\1/p" <<<"$stats" | head -1; }

# check_report: no failed verification, no miss, no error reply; gets and sets both made.
check_report() {
  echo "# $(grep '^Run time' <<<"$out")"
  is "no failed verifications" "$(field verify_failed)" 0
  is "no verify misses" "$(field verify_misses)" 0
  is "no get misses" "$(field get_misses)" 0
  # memcaslap exits 0 and counts nothing when the server answers with an error: it prints the
  # reply instead (`<FD SERVER_ERROR ...`). Anything but its own report lines is such an error.
  local report='^(servers|threads count|concurrency|run time|windows size|set proportion|get proportion|cmd_get|cmd_set|get_misses|verify_misses|verify_failed|expired_get|unexpired_unget|written_bytes|read_bytes|object_bytes|packet_disorder|packet_drop|udp_timeout|Run time): |^$'
  local unexpected
  unexpected="$(grep -cvE "$report" <<<"$out")"
  [ "$unexpected" = 0 ] || unexpected="$unexpected lines such as $(grep -vE "$report" <<<"$out" | head -1)"
  is "no error replies" "$unexpected" 0
  local gets sets
  gets="$(field cmd_get)"; sets="$(field cmd_set)"
  is "gets and sets were both made" "$([ "${gets:-0}" -gt 0 ] && [ "${sets:-0}" -gt 0 ] && echo yes || echo "cmd_get ${gets:-none}, cmd_set ${sets:-none}")" yes
}

# check_server_counts EXTRA: the server counted what memcaslap says it sent, less the few in
# flight when it stopped, plus EXTRA requests other clients made.
check_server_counts() {
  local c mine theirs
  for c in cmd_get cmd_set; do
    mine="$(field "$c")"; theirs="$(server "$c")"
    is "server $c within 1% of memcaslap's ($mine)" \
      "$([ "${theirs:-0}" -le $((${mine:-0} + $1)) ] && [ "$((${theirs:-0} * 100))" -ge "$((${mine:-0} * 99))" ] && echo yes || echo "server ${theirs:-none}")" yes
  done
}
