"""pymemcache: Client against one server, HashClient over three; argv = host:port x3.

Both clients are built with default_noreply=False: pymemcache otherwise sends every write with
`noreply` and reports success without a reply to check.
"""
import sys

import pymemcache
from pymemcache import serde
from pymemcache.client.base import Client
from pymemcache.client.hash import HashClient

import harness as t

addrs = sys.argv[1:4]
t.client_version("pymemcache", pymemcache.__version__, pymemcache.__file__)


class FlagsSeen:
    """A serde that passes bytes through and remembers the flags each reply carried."""

    def __init__(self):
        self.flags = {}

    def serialize(self, key, value):
        return value, 0

    def deserialize(self, key, value, flags):
        self.flags[key] = flags
        return value


def server_ttl(key):
    """The seconds left before `key` expires on the first server (meta `mg KEY t`), read outside
    the client under test."""
    return int(t.raw(addrs[0], b"mg " + key.encode() + b" t\r\n").split()[1][1:])


seen = FlagsSeen()
c = Client(t.host_port(addrs[0]), connect_timeout=5, timeout=5, default_noreply=False, serde=seen)
t.eq("set", lambda: c.set("k", b"v", expire=300), True)
t.true("expire=300: the server holds about 300 s", lambda: 295 <= server_ttl("k") <= 300,
       lambda: "mg k t: %r" % t.raw(addrs[0], b"mg k t\r\n"))
t.eq("get", lambda: c.get("k"), b"v")
t.eq("get miss", lambda: c.get("nope"), None)
t.eq("get default", lambda: c.get("nope", default=b"d"), b"d")
t.eq("flags 0", lambda: (c.get("k"), seen.flags["k"])[1], 0)
t.eq("flags 2^32-1 round-trip", lambda: c.set("f", b"x", flags=2**32 - 1) and (c.get("f"), seen.flags["f"])[1],
     2**32 - 1)
t.eq("binary-safe value", lambda: c.set("bin", bytes(range(256)) * 4) and c.get("bin"), bytes(range(256)) * 4)
t.eq("empty value", lambda: c.set("empty", b"") and c.get("empty"), b"")
t.eq("set expire=-1 is an immediate miss", lambda: c.set("gone", b"x", expire=-1) and c.get("gone"), None)
t.eq("set_many", lambda: c.set_many({"a": b"1", "b": b"2", "c": b"3"}, expire=300), [])
t.eq("get_many (one miss)", lambda: c.get_many(["a", "b", "c", "nope"]), {"a": b"1", "b": b"2", "c": b"3"})
t.eq("delete_many", lambda: c.delete_many(["a", "c"]), True)
t.eq("get_many after delete_many", lambda: c.get_many(["a", "b", "c"]), {"b": b"2"})

value, cas = t.true("gets", lambda: c.gets("k")) or (None, None)
t.eq("gets value", lambda: value, b"v")
t.true("gets cas is a number", lambda: cas is not None and cas.isdigit(), lambda: repr(cas))
t.eq("cas with a fresh token", lambda: c.cas("k", b"w", cas), True)
t.eq("cas with a stale token is refused", lambda: c.cas("k", b"x", cas), False)
t.eq("value after the refused cas", lambda: c.get("k"), b"w")
t.eq("cas on a missing key", lambda: c.cas("missing", b"x", b"1"), None)
t.true("gets_many", lambda: set(c.gets_many(["k", "b", "nope"])) == {"k", "b"})

t.eq("touch", lambda: c.touch("k", 100), True)
t.true("touch: the server holds about 100 s", lambda: 95 <= server_ttl("k") <= 100,
       lambda: "mg k t: %r" % t.raw(addrs[0], b"mg k t\r\n"))
t.eq("touch miss", lambda: c.touch("missing", 100), False)
t.eq("touch -1 expires", lambda: c.touch("b", -1) and c.get("b"), None)
t.eq("incr", lambda: c.set("n", b"10") and c.incr("n", 5), 15)
t.eq("decr floors at 0", lambda: c.decr("n", 20), 0)
t.eq("incr miss", lambda: c.incr("missing", 1), None)
t.eq("delete", lambda: c.delete("k"), True)
t.eq("delete miss", lambda: c.delete("k"), False)
t.eq("add new", lambda: c.add("k", b"1"), True)
t.eq("add existing", lambda: c.add("k", b"2"), False)
t.eq("replace", lambda: c.replace("k", b"3") and c.get("k"), b"3")
t.eq("replace miss", lambda: c.replace("missing", b"3"), False)
t.eq("append", lambda: c.append("k", b"4") and c.get("k"), b"34")
t.eq("prepend", lambda: c.prepend("k", b"2") and c.get("k"), b"234")
stats = t.true("stats", lambda: c.stats())
t.true("stats types and counters",
       lambda: stats[b"cmd_get"] >= 10 and isinstance(stats[b"curr_items"], int) and stats[b"version"].startswith(b"1."),
       lambda: repr(stats))
t.true("stats settings", lambda: c.stats("settings")[b"item_size_max"] == 1024 * 1024)
t.true("version", lambda: c.version().startswith(b"1."))
t.eq("flush_all", lambda: c.flush_all(), True)
t.eq("flushed", lambda: c.get_many(["k", "f", "n", "bin"]), {})
t.eq("quit", lambda: c.quit(), None)

hc = HashClient([t.host_port(a) for a in addrs], connect_timeout=5, timeout=5, default_noreply=False)
keys = ["hashclient-%d" % i for i in range(300)]
t.true("HashClient set_many over three servers",
       lambda: hc.set_many({k: k.encode() for k in keys}, expire=300) == [])
t.eq("HashClient get_many", lambda: hc.get_many(keys), {k: k.encode() for k in keys})
held = [set(Client(t.host_port(a)).get_many(keys)) for a in addrs]
t.true("HashClient puts each key on exactly one server, all three used",
       lambda: all(held) and sum(map(len, held)) == 300 and set().union(*held) == set(keys),
       lambda: "keys per server: %s" % [len(h) for h in held])
t.eq("HashClient gets/cas", lambda: hc.cas("hashclient-1", b"new", hc.gets("hashclient-1")[1]) and hc.get("hashclient-1"), b"new")
t.eq("HashClient incr", lambda: hc.set("ctr", b"1") and hc.incr("ctr", 41), 42)
t.eq("HashClient delete_many", lambda: hc.delete_many(keys[:100]) and hc.get_many(keys[:100]), {})
t.eq("HashClient touch", lambda: hc.touch("hashclient-200", 100), True)

# serde: pymemcache's pickle serde marks types by flags; another process reads them back.
pc = Client(t.host_port(addrs[1]), default_noreply=False, serde=serde.pickle_serde)
t.eq("pickle_serde int", lambda: pc.set("i", 7) and pc.get("i"), 7)
t.eq("pickle_serde str", lambda: pc.set("s", "text") and pc.get("s"), "text")
t.eq("pickle_serde dict", lambda: pc.set("d", {"a": [1]}) and pc.get("d"), {"a": [1]})
t.eq("pickle_serde int flag on the server", lambda: t.raw_flags(addrs[1], "i"), serde.FLAG_INTEGER)
t.finish()
