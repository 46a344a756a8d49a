"""pylibmc (libmemcached), text protocol, ketama_weighted over three servers: argv = host:port x3."""
import sys

import pylibmc

addrs = sys.argv[1:4]
failures = []


def check(name, ok):
    if not ok:
        failures.append(name)


mc = pylibmc.Client(addrs, binary=False, behaviors={"ketama_weighted": True, "tcp_nodelay": True})
keys = ["key-%d" % i for i in range(300)]
for k in keys:
    mc.set(k, k, time=300)
got = mc.get_multi(keys)
check("get_multi", len(got) == 300 and all(got[k] == k for k in keys))
check("incr", mc.set("n", 1) and mc.incr("n", 4) == 5)
check("decr", mc.decr("n", 10) == 0)
check("add existing", not mc.add("n", 9))
check("append", mc.set("s", "ab") and mc.append("s", "cd") and mc.get("s") == "abcd")
check("delete", mc.delete("s") and mc.get("s") is None)
check("delete_multi", mc.delete_multi(["key-1", "key-2"]))
check("touch", mc.touch("key-3", 100))
stats = mc.get_stats()
check("stats from three servers", len(stats) == 3)
per_server = [int(s[1]["curr_items"]) for s in stats]
check("ketama spread", all(n > 0 for n in per_server))
# The same placement a second, independent client computes (ketama is deterministic).
mc2 = pylibmc.Client(addrs, binary=False, behaviors={"ketama_weighted": True})
check("second client agrees", all(mc2.get(k) == k for k in keys[10:50]))
if failures:
    print("pylibmc failed:", ", ".join(failures))
    sys.exit(1)
print("pylibmc ok", per_server)
