"""pylibmc (libmemcached) on the binary protocol against one server: argv[1] is host:port."""
import sys

import pylibmc

import harness as t

addr = sys.argv[1]
t.client_version("pylibmc", "%s, libmemcached %s" % (pylibmc.__version__, pylibmc.libmemcached_version),
                 pylibmc.__file__)
mc = pylibmc.Client([addr], binary=True, behaviors={"cas": True})
t.eq("set", lambda: mc.set("k", "v", time=100), True)
t.eq("get", lambda: mc.get("k"), "v")
t.eq("get miss", lambda: mc.get("nope"), None)
t.eq("int keeps its type (flags)", lambda: mc.set("i", 7) and mc.get("i"), 7)
t.eq("pickled dict", lambda: mc.set("d", {"a": 1}) and mc.get("d"), {"a": 1})
t.eq("get_multi", lambda: mc.get_multi(["k", "i", "x"]), {"k": "v", "i": 7})
t.eq("set_multi", lambda: mc.set_multi({"m1": "1", "m2": "2"}), [])
t.eq("incr", lambda: mc.set("n", 5) and mc.incr("n", 3), 8)
t.eq("decr floors at 0", lambda: mc.decr("n", 10), 0)
t.eq("add existing", lambda: mc.add("k", "w"), False)
t.raises("replace miss raises NotFound", lambda: mc.replace("missing", "w"), pylibmc.NotFound)
t.eq("append", lambda: mc.append("k", "x") and mc.get("k"), "vx")
t.eq("prepend", lambda: mc.prepend("k", "_") and mc.get("k"), "_vx")
value, cas = t.true("gets", lambda: mc.gets("k")) or (None, None)
t.eq("cas with a fresh id", lambda: mc.cas("k", "new", cas), True)
t.eq("cas with a stale id is refused", lambda: mc.cas("k", "old", cas), False)
t.eq("value after the refused cas", lambda: mc.get("k"), "new")
t.eq("delete", lambda: mc.delete("k"), True)
t.eq("delete miss", lambda: mc.delete("k"), False)
t.eq("touch", lambda: mc.touch("n", 100), True)
t.eq("touch miss", lambda: mc.touch("missing", 100), False)
t.true("stats", lambda: int(mc.get_stats()[0][1]["curr_items"]) >= 1)
t.true("flush_all", lambda: mc.flush_all())
t.eq("flushed", lambda: mc.get_multi(["n", "i", "m1"]), {})
t.finish()
