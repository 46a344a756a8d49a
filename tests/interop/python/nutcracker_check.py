"""nutcracker (twemproxy) in front of three servers, with auto_eject_hosts.

argv = proxy host:port, node1, node2, node3 (host:port each), pid of node3, nutcracker's stats port.
Sets and gets through the proxy, checks where the keys landed, then kills node3 (SIGKILL) and
checks that the proxy ejects it: the keys held by the two live nodes keep their values without a
rewrite, and every key can be written and read again.
"""
import json
import os
import re
import signal
import socket
import sys
import time

from pymemcache.client.base import Client

import harness as t


def client(addr):
    return Client(t.host_port(addr), connect_timeout=2, timeout=2, default_noreply=False)


proxy_addr, nodes, dead_pid, stats_port = sys.argv[1], sys.argv[2:5], int(sys.argv[5]), int(sys.argv[6])
version = re.search(r"nutcracker-(\S+)", os.popen("nutcracker --version 2>&1").read())
t.client_version("nutcracker", version.group(1) if version else "?", "/usr/sbin/nutcracker")


def nutcracker_stats():
    with socket.create_connection(("127.0.0.1", stats_port), timeout=5) as s:
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    return json.loads(data)


def ejected_at(node):
    """nutcracker's server_ejected_at for `node` (0 while it is in the pool)."""
    pools = [v for v in nutcracker_stats().values() if isinstance(v, dict)]
    return next(s["server_ejected_at"] for pool in pools for k, s in pool.items() if k == node)


def wait_for_proxy():
    deadline = time.time() + 10
    while True:
        try:
            return client(proxy_addr).get("probe") is None
        except Exception:  # noqa: BLE001 - nutcracker may still be starting
            if time.time() > deadline:
                raise
            time.sleep(0.05)


t.true("proxy answers", wait_for_proxy)
proxy = client(proxy_addr)
keys = ["nc-%d" % i for i in range(300)]
t.true("300 sets through the proxy", lambda: all(proxy.set(k, k.encode()) for k in keys))
t.eq("get_many through the proxy", lambda: proxy.get_many(keys), {k: k.encode() for k in keys})
held = [set(client(n).get_many(keys)) for n in nodes]
t.true("each key on exactly one node, all three used",
       lambda: all(held) and sum(map(len, held)) == 300 and set().union(*held) == set(keys),
       lambda: "keys per node: %s" % [len(h) for h in held])
t.eq("incr through the proxy", lambda: proxy.set("ctr", b"1") and proxy.incr("ctr", 9), 10)
t.eq("add existing through the proxy", lambda: proxy.add("ctr", b"0"), False)
t.eq("append through the proxy", lambda: proxy.append("nc-0", b"+") and proxy.get("nc-0"), b"nc-0+")
t.eq("gets/cas through the proxy", lambda: proxy.cas("nc-1", b"swapped", proxy.gets("nc-1")[1]), True)
t.eq("stale cas through the proxy", lambda: proxy.cas("nc-1", b"again", b"1"), False)
t.eq("delete through the proxy", lambda: proxy.delete("nc-2") and proxy.get("nc-2"), None)
t.true("nodes in the pool before the kill", lambda: all(ejected_at(n) == 0 for n in nodes))

os.kill(dead_pid, signal.SIGKILL)
on_live = sorted((held[0] | held[1]) - {"nc-0", "nc-1", "nc-2"})
failures = 0


def all_keys_work_again():
    """Rewrites every key until a full round succeeds; counts the failed requests on the way
    (the proxy forwards to the dead node until server_failure_limit trips)."""
    global failures
    deadline = time.time() + 20
    while time.time() < deadline:
        ok = 0
        p = client(proxy_addr)
        for k in keys:
            try:
                if p.set(k, b"after") and p.get(k) == b"after":
                    ok += 1
            except Exception:  # noqa: BLE001 - errors until the node is ejected
                failures += 1
                p = client(proxy_addr)
        if ok == len(keys):
            return True
        time.sleep(0.2)
    return False


def live_keys_unchanged():
    """Before any rewrite: the keys the live nodes hold still read through the proxy (the ring
    is rebuilt over the live nodes without moving their keys). Retries while requests for the
    dead node are still failing."""
    deadline = time.time() + 20
    want = {k: k.encode() for k in on_live}
    got = {}
    while time.time() < deadline:
        try:
            got = client(proxy_addr).get_many(on_live)
            if got == want:
                return True
        except Exception:  # noqa: BLE001
            pass
        time.sleep(0.1)
    raise AssertionError("%d of %d keys of the live nodes read back" % (len(got), len(want)))


def dead_node_ejected():
    # nutcracker aggregates its stats every -i ms (100 here).
    deadline = time.time() + 10
    while time.time() < deadline:
        if ejected_at(nodes[2]) != 0:
            return True
        # A request for a key of the dead node makes the proxy notice it.
        try:
            client(proxy_addr).get(sorted(held[2])[0])
        except Exception:  # noqa: BLE001
            pass
        time.sleep(0.1)
    return False


t.true("the killed node is ejected (server_ejected_at set)", dead_node_ejected,
       lambda: json.dumps(nutcracker_stats()))
t.true("the live nodes stay in the pool", lambda: ejected_at(nodes[0]) == 0 and ejected_at(nodes[1]) == 0)
t.true("keys on the live nodes keep their values through the proxy", live_keys_unchanged)
t.true("every key can be written and read again", all_keys_work_again)
t.true("the dead node's keys now live on the two others",
       lambda: sum(len(client(n).get_many(sorted(held[2]))) for n in nodes[:2]) == len(held[2]))
print("# %d requests failed before the ejection" % failures)
t.finish()
