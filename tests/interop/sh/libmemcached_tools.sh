#!/usr/bin/env bash
# libmemcached-tools against two servers: memccp memccat memctouch memcstat memcrm memcflush.
# usage: libmemcached_tools.sh HOST:PORT HOST:PORT [--binary]
# Every check looks at what the server then holds, through another tool or a second server.
set -u
. "$(dirname "$0")/harness.sh"
s1="$1"; s2="$2"; proto=("${@:3}")
dir="$(mktemp -d)"; trap 'rm -rf "$dir"' EXIT
echo "client libmemcached-tools $(memccp --version 2>&1 | tr -d '\000' | head -1) ($(command -v memccp))"

printf 'hello from memccp\n' >"$dir/greeting.txt"
head -c 300000 /dev/urandom >"$dir/random.bin"
succeeds "memccp --flags --expire" memccp "${proto[@]}" --servers="$s1" --flags=1234 --expire=300 "$dir/greeting.txt"
is "memccat prints the file" "$(memccat "${proto[@]}" --servers="$s1" greeting.txt)" "hello from memccp"
is "memccat --flags" "$(memccat "${proto[@]}" --servers="$s1" --flags greeting.txt | head -1)" "1234"
succeeds "memccp 300 kB binary file" memccp "${proto[@]}" --servers="$s1" "$dir/random.bin"
succeeds "memccat --file" memccat "${proto[@]}" --servers="$s1" --file="$dir/copy.bin" random.bin
succeeds "binary file round-trips byte for byte" cmp "$dir/random.bin" "$dir/copy.bin"
fails "memccat miss fails" memccat "${proto[@]}" --servers="$s1" never-set
fails "memccp --add on an existing key is refused" memccp "${proto[@]}" --servers="$s1" --add "$dir/greeting.txt"
succeeds "memccp --replace" memccp "${proto[@]}" --servers="$s1" --replace "$dir/greeting.txt"
fails "memccp --replace on a missing key is refused" memccp "${proto[@]}" --servers="$s2" --replace "$dir/greeting.txt"
succeeds "memctouch" memctouch "${proto[@]}" --servers="$s1" --expire=100 greeting.txt
is "memccat after memctouch" "$(memccat "${proto[@]}" --servers="$s1" greeting.txt)" "hello from memccp"
fails "memctouch miss fails" memctouch "${proto[@]}" --servers="$s1" --expire=100 never-set
succeeds "memctouch --expire=-1" memctouch "${proto[@]}" --servers="$s1" --expire=-1 greeting.txt
if [ "${proto[*]:-}" = --binary ]; then
  # The binary protocol carries exptime unsigned: -1 arrives as 4294967295, an absolute time in
  # 2106, so the key stays (as memcached keeps it).
  succeeds "binary touch to 2^32-1 keeps the key" memccat "${proto[@]}" --servers="$s1" greeting.txt
  succeeds "memcrm the touched key" memcrm "${proto[@]}" --servers="$s1" greeting.txt
else
  fails "expired by memctouch" memccat "${proto[@]}" --servers="$s1" greeting.txt
fi

stat="$(memcstat "${proto[@]}" --servers="$s1,$s2")"
is "memcstat reports both servers" "$(grep -c '^Server: 127.0.0.1' <<<"$stat")" 2
is "memcstat curr_items of the first" "$(grep -m1 'curr_items:' <<<"$stat" | tr -d ' \t')" "curr_items:1"
is "memcstat --args=settings" "$(memcstat "${proto[@]}" --servers="$s1" --args=settings | grep -c 'item_size_max: 1048576')" 1
is "memcstat --server-version" "$(memcstat "${proto[@]}" --servers="$s1" --server-version 2>&1 | cut -d' ' -f2 | cut -c1-2)" "1."

succeeds "memcrm" memcrm "${proto[@]}" --servers="$s1" random.bin
fails "removed by memcrm" memccat "${proto[@]}" --servers="$s1" random.bin
fails "memcrm miss fails" memcrm "${proto[@]}" --servers="$s1" random.bin
succeeds "memccp to two servers" memccp "${proto[@]}" --servers="$s1,$s2" "$dir/greeting.txt" "$dir/random.bin"
is "both keys readable over two servers" "$(memccat "${proto[@]}" --servers="$s1,$s2" greeting.txt random.bin | wc -c)" $((18 + 1 + 300000 + 1))
succeeds "memcflush" memcflush "${proto[@]}" --servers="$s1,$s2"
fails "flushed (first key)" memccat "${proto[@]}" --servers="$s1,$s2" greeting.txt
fails "flushed (second key)" memccat "${proto[@]}" --servers="$s1,$s2" random.bin
finish
