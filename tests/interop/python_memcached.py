"""python-memcached (import memcache) against one server: argv[1] is host:port."""
import sys
import time

import memcache

addr = sys.argv[1]
mc = memcache.Client([addr], debug=1)
failures = []


def check(name, ok):
    if not ok:
        failures.append(name)


check("set", mc.set("key", "value"))
check("get", mc.get("key") == "value")
check("set with time", mc.set("ttl", "x", time=300))
check("get ttl", mc.get("ttl") == "x")
check("set expired", mc.set("gone", "x", time=-1) or True)
check("expired is a miss", mc.get("gone") is None)
check("delete", mc.delete("key"))
check("deleted is a miss", mc.get("key") is None)
check("set_multi", mc.set_multi({"a": "1", "b": "2", "c": 3}) == [])
check("get_multi", mc.get_multi(["a", "b", "c", "nope"]) == {"a": "1", "b": "2", "c": 3})
check("incr", mc.incr("a", 5) == 6)
check("decr", mc.decr("a", 10) == 0)
check("incr miss", mc.incr("nope") is None)
check("add existing", not mc.add("b", "x"))
check("replace", mc.replace("b", "22") and mc.get("b") == "22")
check("append", mc.append("b", "3") and mc.get("b") == "223")
check("pickled object", mc.set("obj", {"k": [1, 2]}) and mc.get("obj") == {"k": [1, 2]})
check("gets/cas", mc.gets("b") == "223" and mc.cas("b", "new") and mc.get("b") == "new")
stats = mc.get_stats()
check("get_stats", len(stats) == 1 and int(stats[0][1]["cmd_get"]) > 0)
default = mc.get_stats("default")
check("get_stats default", len(default) == 1 and "curr_items" in default[0][1])
check("touch", mc.touch("obj", 100))
check("flush_all", mc.flush_all() is None and mc.get("obj") is None)
if failures:
    print("python-memcached failed:", ", ".join(failures))
    sys.exit(1)
print("python-memcached ok")
