"""pylibmc (libmemcached) on the text protocol, ketama_weighted over three servers.

argv = host:port x3. Every key must live on exactly one server, and a second client built the same
way must find it there (ketama is deterministic); the usual operations must round-trip.
"""
import sys

import pylibmc

import harness as t

addrs = sys.argv[1:4]
t.client_version("pylibmc", "%s, libmemcached %s" % (pylibmc.__version__, pylibmc.libmemcached_version),
                 pylibmc.__file__)
behaviors = {"ketama_weighted": True, "tcp_nodelay": True, "cas": True}
mc = pylibmc.Client(addrs, binary=False, behaviors=behaviors)
t.true("ketama_weighted is on", lambda: mc.behaviors["ketama_weighted"])

keys = ["pylibmc-%d" % i for i in range(300)]
t.eq("set_multi over three servers", lambda: mc.set_multi({k: k for k in keys}, time=300), [])
t.eq("get_multi", lambda: mc.get_multi(keys + ["nope"]), {k: k for k in keys})
held = [set(pylibmc.Client([a], binary=False).get_multi(keys)) for a in addrs]
t.true("each key on exactly one server, all three used",
       lambda: all(held) and sum(map(len, held)) == 300 and set().union(*held) == set(keys),
       lambda: "keys per server: %s" % [len(h) for h in held])
mc2 = pylibmc.Client(addrs, binary=False, behaviors={"ketama_weighted": True})
t.true("a second client finds every key", lambda: mc2.get_multi(keys) == {k: k for k in keys})

t.eq("set/get str", lambda: mc.set("s", "text") and mc.get("s"), "text")
t.eq("set/get bytes", lambda: mc.set("b", b"\x00\xff\r\n") and mc.get("b"), b"\x00\xff\r\n")
t.eq("int keeps its type (flags)", lambda: mc.set("i", 42) and mc.get("i"), 42)
t.eq("pickled dict", lambda: mc.set("d", {"a": [1, 2]}) and mc.get("d"), {"a": [1, 2]})
big = "z" * 200000
t.eq("compressed 200 kB value", lambda: mc.set("big", big, min_compress_len=1000) and mc.get("big"), big)
t.eq("time=-1 is an immediate miss", lambda: mc.set("gone", "x", time=-1) and mc.get("gone"), None)
t.eq("incr", lambda: mc.set("n", 1) and mc.incr("n", 4), 5)
t.eq("decr floors at 0", lambda: mc.decr("n", 10), 0)
t.eq("incr_multi", lambda: (mc.incr_multi(["n"], delta=3), mc.get("n"))[1], 3)
t.eq("add existing", lambda: mc.add("n", 9), False)
t.eq("add new", lambda: mc.add("fresh", 9), True)
t.eq("replace miss", lambda: mc.replace("missing", 9), False)
t.eq("append", lambda: mc.set("a", "ab") and mc.append("a", "cd") and mc.get("a"), "abcd")
t.eq("prepend", lambda: mc.prepend("a", "__") and mc.get("a"), "__abcd")
value, cas = t.true("gets", lambda: mc.gets("a")) or (None, None)
t.eq("gets value", lambda: value, "__abcd")
t.eq("cas with a fresh id", lambda: mc.cas("a", "new", cas), True)
t.eq("cas with a stale id is refused", lambda: mc.cas("a", "old", cas), False)
t.eq("value after the refused cas", lambda: mc.get("a"), "new")
t.eq("delete", lambda: mc.delete("a"), True)
t.eq("delete miss", lambda: mc.delete("a"), False)
t.eq("delete_multi", lambda: mc.delete_multi(["pylibmc-1", "pylibmc-2"]) and mc.get_multi(["pylibmc-1", "pylibmc-2"]), {})
t.eq("touch", lambda: mc.touch("pylibmc-3", 100), True)
t.eq("touch miss", lambda: mc.touch("missing", 100), False)
stats = t.true("get_stats", lambda: mc.get_stats())
t.true("stats from the three servers", lambda: len(stats) == 3 and all("curr_items" in s for _, s in stats),
       lambda: repr(stats))
t.true("flush_all", lambda: mc.flush_all())
t.eq("flushed", lambda: mc.get_multi(keys[:50] + ["s", "i"]), {})
t.finish()
