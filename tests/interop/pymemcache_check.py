"""pymemcache Client against one server and HashClient over three: argv = host:port x3."""
import sys

from pymemcache.client.base import Client
from pymemcache.client.hash import HashClient

addrs = sys.argv[1:4]
failures = []


def check(name, ok):
    if not ok:
        failures.append(name)


host, port = addrs[0].rsplit(":", 1)
c = Client((host, int(port)), connect_timeout=5, timeout=5)
check("set", c.set("k", b"v", expire=300))
check("get", c.get("k") == b"v")
check("get_many", c.get_many(["k", "nope"]) == {"k": b"v"})
value, cas = c.gets("k")
check("gets", value == b"v" and cas is not None)
check("cas ok", c.cas("k", b"w", cas) is True)
check("cas stale", c.cas("k", b"x", cas) is False)
check("cas missing", c.cas("missing", b"x", b"1") is None)
check("touch", c.touch("k", 100, noreply=False) is True)
check("touch miss", c.touch("missing", 100, noreply=False) is False)
check("incr", c.set("n", b"10") and c.incr("n", 5) == 15)
check("decr", c.decr("n", 20) == 0)
check("delete", c.delete("k", noreply=False) is True)
check("add", c.add("k", b"1", noreply=False) is True and c.add("k", b"2", noreply=False) is False)
stats = c.stats()
check("stats", stats[b"cmd_get"] >= 3 and b"curr_items" in stats)
check("version", c.version().startswith(b"1.6"))

servers = []
for a in addrs:
    h, p = a.rsplit(":", 1)
    servers.append((h, int(p)))
hc = HashClient(servers, connect_timeout=5, timeout=5)
keys = ["key-%d" % i for i in range(300)]
for k in keys:
    hc.set(k, k.encode(), expire=300)
got = hc.get_many(keys)
check("hash get_many", len(got) == 300 and all(got[k] == k.encode() for k in keys))
per_server = []
for h, p in servers:
    per_server.append(Client((h, p)).stats()[b"curr_items"])
check("hash spread over three servers", all(n > 0 for n in per_server))
if failures:
    print("pymemcache failed:", ", ".join(failures))
    sys.exit(1)
print("pymemcache ok", per_server)
