"""pylibmc (libmemcached) over the binary protocol against one server: argv[1] is host:port."""
import sys

import pylibmc

mc = pylibmc.Client([sys.argv[1]], binary=True, behaviors={"cas": True})
failures = []


def check(name, ok):
    if not ok:
        failures.append(name)


check("set", mc.set("k", "v", time=100))
check("get", mc.get("k") == "v")
check("get_multi", mc.get_multi(["k", "x"]) == {"k": "v"})
check("incr/decr", mc.set("n", 5) and mc.incr("n", 3) == 8 and mc.decr("n", 10) == 0)
check("add existing", not mc.add("k", "w"))
check("append", mc.append("k", "x") and mc.get("k") == "vx")
value, cas = mc.gets("k")
check("gets/cas", value == "vx" and mc.cas("k", "new", cas) and not mc.cas("k", "old", cas))
check("delete", mc.delete("k") and mc.get("k") is None)
check("touch", mc.touch("n", 100))
check("stats", int(mc.get_stats()[0][1]["curr_items"]) >= 1)
check("flush", mc.flush_all() and mc.get("n") is None)
if failures:
    print("pylibmc binary failed:", ", ".join(failures))
    sys.exit(1)
print("pylibmc binary ok")
