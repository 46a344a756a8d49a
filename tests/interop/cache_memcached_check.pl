# Perl Cache::Memcached (Debian's libcache-memcached-perl) against one server, then over three:
# @ARGV = host:port x3. Prints `ok NAME` / `not ok NAME: WHY` per check, like python/harness.py.
use strict;
use warnings;
use Cache::Memcached;
use IO::Socket::INET;

my ($failed, $ran) = (0, 0);
sub check {
    my ($name, $ok, $why) = @_;
    $ran++;
    if ($ok) { print "ok $name\n"; return; }
    $failed++;
    print "not ok $name: ", ($why // "false"), "\n";
}
sub is {
    my ($name, $got, $want) = @_;
    my $show = sub { defined $_[0] ? "'$_[0]'" : 'undef' };
    check($name, (defined $got && defined $want && $got eq $want) || (!defined $got && !defined $want),
          "got " . $show->($got) . ", want " . $show->($want));
}
# The flags the server holds for a key, read with a plain `get` outside the client.
sub raw_flags {
    my ($addr, $key) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => $addr, Timeout => 5) or return undef;
    print $s "get $key\r\n";
    my $line = <$s> // '';
    return $line =~ /^VALUE \S+ (\d+) / ? $1 : undef;
}

my @addrs = @ARGV[0 .. 2];
print "client Cache::Memcached $Cache::Memcached::VERSION ($INC{'Cache/Memcached.pm'})\n";
my $mc = Cache::Memcached->new({ servers => [$addrs[0]], compress_threshold => 10_000 });

check("set", $mc->set("k", "v"));
is("get", $mc->get("k"), "v");
is("get miss", $mc->get("never-set"), undef);
is("plain value has flags 0", raw_flags($addrs[0], "k"), 0);
check("set exptime 300", $mc->set("t", "x", 300));
is("get after exptime 300", $mc->get("t"), "x");
check("set exptime -1", $mc->set("gone", "x", -1));
is("negative exptime is an immediate miss", $mc->get("gone"), undef);
check("add existing is refused", !$mc->add("k", "w"));
check("add new", $mc->add("new", "w"));
check("replace", $mc->replace("k", "w"));
is("value after replace", $mc->get("k"), "w");
check("replace miss is refused", !$mc->replace("never-set", "w"));
check("append", $mc->append("k", "x"));
check("prepend", $mc->prepend("k", "_"));
is("value after append and prepend", $mc->get("k"), "_wx");
check("set counter", $mc->set("n", 5));
is("incr", $mc->incr("n", 3), 8);
is("decr floors at 0", $mc->decr("n", 100), 0);
is("incr miss", $mc->incr("never-set"), undef);
my $multi = $mc->get_multi("k", "t", "nope");
check("get_multi (one miss)", scalar(keys %$multi) == 2 && $multi->{t} eq "x" && $multi->{k} eq "_wx",
      join(",", map { "$_=$multi->{$_}" } sort keys %$multi));
check("set hash ref", $mc->set("h", { a => [1, 2] }));
my $h = $mc->get("h");
check("hash ref round-trips (Storable, flag 1)", ref $h eq "HASH" && $h->{a}[1] == 2);
is("hash ref stored with F_STORABLE", raw_flags($addrs[0], "h"), 1);
my $big = "compressible " x 5000;
check("set 65 kB value over compress_threshold", $mc->set("big", $big));
is("compressed value round-trips", $mc->get("big"), $big);
is("compressed value stored with F_COMPRESS", raw_flags($addrs[0], "big"), 2);
check("delete", $mc->delete("k"));
is("deleted key is a miss", $mc->get("k"), undef);
check("delete miss is false", !$mc->delete("k"));
my $stats = $mc->stats(["misc"]);
check("stats misc", defined $stats->{total}{get_hits} && $stats->{total}{get_hits} >= 5,
      "get_hits " . ($stats->{total}{get_hits} // 'undef'));
check("stats per host", defined $stats->{hosts}{$addrs[0]}{misc}{curr_items});
check("flush_all", $mc->flush_all);
is("flushed", $mc->get("t"), undef);

my $pool = Cache::Memcached->new({ servers => \@addrs });
my @keys = map { "perl-$_" } 1 .. 300;
my $stored = grep { $pool->set($_, "v-$_") } @keys;
is("set 300 keys over three servers", $stored, 300);
my $got = $pool->get_multi(@keys);
check("get_multi over three servers", scalar(grep { ($got->{$_} // '') eq "v-$_" } @keys) == 300,
      scalar(keys %$got) . " keys back");
my @held = map { my $one = Cache::Memcached->new({ servers => [$_] }); scalar keys %{ $one->get_multi(@keys) } } @addrs;
check("each key on exactly one server, all three used", (grep { $_ > 0 } @held) == 3 && $held[0] + $held[1] + $held[2] == 300,
      "keys per server: @held");

print STDOUT "";
exit(($failed || !$ran) ? 1 : 0);
