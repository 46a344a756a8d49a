# Perl Cache::Memcached against one server: $ARGV[0] is host:port.
use strict;
use warnings;
use Cache::Memcached;

my $mc = Cache::Memcached->new({ servers => [$ARGV[0]] });
my @failures;
sub check { my ($name, $ok) = @_; push @failures, $name unless $ok; }

check("set", $mc->set("k", "v"));
check("get", ($mc->get("k") // "") eq "v");
check("set exptime", $mc->set("t", "x", 300));
check("add existing", !$mc->add("k", "w"));
check("replace", $mc->replace("k", "w") && $mc->get("k") eq "w");
check("incr", $mc->set("n", 5) && $mc->incr("n", 3) == 8);
check("decr", $mc->decr("n", 100) == 0);
my $multi = $mc->get_multi("k", "t", "nope");
check("get_multi", scalar(keys %$multi) == 2 && $multi->{t} eq "x");
check("hash ref", $mc->set("h", { a => 1 }) && $mc->get("h")->{a} == 1);
check("delete", $mc->delete("k") && !defined $mc->get("k"));
my $stats = $mc->stats(["misc"]);
check("stats", defined $stats->{total}{get_hits});
if (@failures) { print "Cache::Memcached failed: @failures\n"; exit 1; }
print "Cache::Memcached ok\n";
