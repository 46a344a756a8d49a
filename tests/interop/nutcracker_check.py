"""Through nutcracker: argv = proxy, node1, node2, node3, pid of node3, nutcracker stats port.
Sets and gets through the proxy, checks every node got keys, kills node3 and checks that the
proxy ejects it: after a few failures every key can be set and read again on the other two."""
import json
import os
import signal
import socket
import sys
import time

from pymemcache.client.base import Client


def client(addr):
    host, port = addr.rsplit(":", 1)
    return Client((host, int(port)), connect_timeout=2, timeout=2)


proxy_addr, nodes, dead_pid = sys.argv[1], sys.argv[2:5], int(sys.argv[5])
stats_port = int(sys.argv[6])


def raw_stats():
    with socket.create_connection(("127.0.0.1", stats_port), timeout=5) as s:
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    return data


def ejected_at(node):
    """nutcracker's server_ejected_at for `node` (0 while it is in the pool)."""
    pool = json.loads(raw_stats())["pool"]
    return next(v["server_ejected_at"] for k, v in pool.items() if k.endswith(node.split(":")[1]) or k == node)
deadline = time.time() + 10
while True:
    try:
        proxy = client(proxy_addr)
        proxy.version() if False else proxy.get("probe")
        break
    except Exception:
        if time.time() > deadline:
            raise
        time.sleep(0.1)

keys = ["k%d" % i for i in range(200)]
for k in keys:
    assert proxy.set(k, k.encode(), noreply=False), k
got = proxy.get_many(keys)
assert len(got) == 200 and all(got[k] == k.encode() for k in keys), "get_many through proxy"
held = [client(n).stats()[b"curr_items"] for n in nodes]
assert all(h > 0 for h in held), "every node holds keys: %s" % held
print("distributed over the nodes:", held)

os.kill(dead_pid, signal.SIGKILL)
failures = 0
deadline = time.time() + 15
while True:
    ok = 0
    proxy = client(proxy_addr)
    for k in keys:
        try:
            if proxy.set(k, b"after", noreply=False) and proxy.get(k) == b"after":
                ok += 1
        except Exception:
            failures += 1
            proxy = client(proxy_addr)
    if ok == len(keys):
        break
    assert time.time() < deadline, "node never ejected: %d/%d keys work" % (ok, len(keys))
    time.sleep(0.2)
# nutcracker aggregates its stats every 100 ms (-i 100).
deadline = time.time() + 5
while ejected_at(nodes[2]) == 0:
    assert time.time() < deadline, "nutcracker does not report the node as ejected: %s" % raw_stats()
    time.sleep(0.1)
assert ejected_at(nodes[0]) == 0 and ejected_at(nodes[1]) == 0
print("node ejected (%d failed requests on the way); all %d keys served by the two others"
      % (failures, len(keys)))
