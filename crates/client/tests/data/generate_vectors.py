"""Generates ketama placement vectors from real clients and proxies on loopback.

For each scenario it starts N memcached servers, stores keys through a placement authority
(pylibmc with ketama_weighted, or nutcracker with hash md5 / ketama), then asks every server
directly which keys it holds. The addresses are recorded: they are part of the server names the
ring hashes (the servers need not run to check placement later):

    # scenario <name>
    server <index> <host:port:weight> [<twemproxy name>]
    key <hex of key bytes> <index of the owning server>

The whole run happens in a private network namespace (unshare -n), so the scenarios that need
memcached's default port 11211 (whose ketama name drops the port) can bind 127.0.0.x:11211
without touching the machine's real port 11211.

Run from the repository root, as root, with Debian's python:
    /usr/bin/python3 crates/client/tests/data/generate_vectors.py
Needs memcached, nutcracker, python3-pylibmc (apt), unshare and ip.
"""
import os
import socket
import subprocess
import sys
import tempfile
import time

import hashlib
import itertools

if os.environ.get("VECTORS_IN_NETNS") != "1":
    os.environ["VECTORS_IN_NETNS"] = "1"
    script = "ip link set lo up && exec %s %s" % (sys.executable, os.path.abspath(__file__))
    os.execvp("unshare", ["unshare", "-n", "sh", "-c", script])

import pylibmc  # noqa: E402

work = tempfile.mkdtemp()
procs = []
serial = itertools.count()


def start_memcached(host="127.0.0.1", port=-1):
    """Starts memcached on host:port (-1: ephemeral) and returns the port it listens on."""
    pf = os.path.join(work, "port%d" % next(serial))
    p = subprocess.Popen(
        ["memcached", "-p", str(port), "-U", "0", "-l", host, "-u", "root", "-m", "8"],
        env=dict(os.environ, MEMCACHED_PORT_FILENAME=pf),
    )
    procs.append(p)
    for _ in range(400):
        try:
            text = open(pf).read()
            if "TCP INET:" in text:
                return int(text.split(":")[-1])
        except OSError:
            pass
        time.sleep(0.01)
    raise RuntimeError("memcached did not start")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def request(addr, data, end):
    s = socket.create_connection(addr)
    s.sendall(data)
    out = b""
    while not out.endswith(end):
        chunk = s.recv(1 << 20)
        if not chunk:
            break
        out += chunk
    s.close()
    return out


def owners(addrs, keys):
    """Which server holds each key (each key must be on exactly one)."""
    owner = {}
    for i, addr in enumerate(addrs):
        for k in keys:
            if request(addr, b"get " + k + b"\r\n", b"END\r\n").startswith(b"VALUE"):
                assert k not in owner, "key on two servers"
                owner[k] = i
    assert len(owner) == len(keys), "some keys are nowhere"
    return owner


def key_hash(key):
    """libmemcached's ketama key hash: the first four bytes of MD5, little-endian."""
    return int.from_bytes(hashlib.md5(key).digest()[:4], "little")


def edge_keys():
    """Keys hashing into the top and bottom 1/65536 of the hash space: past the last point of
    any ring here (they wrap to the first point) or before its first point."""
    high, low, i = [], [], 0
    while len(high) < 4 or len(low) < 4:
        k = b"edge-%d" % i
        h = key_hash(k)
        if h >= 0xFFFF0000 and len(high) < 4:
            high.append(k)
        elif h < 0x10000 and len(low) < 4:
            low.append(k)
        i += 1
    return high + low


EDGE_KEYS = edge_keys()


def test_keys():
    keys = [b"key-%d" % i for i in range(200)]
    keys += [b"user:%d:profile" % (i * 7919) for i in range(50)]
    keys += [bytes([0x80 + (i % 0x7F), 0xC3, 0xA9]) + b"-%d" % i for i in range(50)]
    keys += [b"x" * 250, b"a", b"zzzzzzzzzzzzzzzzzzzzzzzz"]
    return keys + EDGE_KEYS


def flush(addrs):
    for addr in addrs:
        request(addr, b"flush_all\r\n", b"OK\r\n")


def emit(out, name, servers, owner, keys):
    """servers: (host, port, weight, twemproxy name or None)."""
    out.write("# scenario %s\n" % name)
    for i, (host, port, weight, label) in enumerate(servers):
        out.write("server %d %s:%d:%d%s\n" % (i, host, port, weight, " " + label if label else ""))
    for k in keys:
        out.write("key %s %d\n" % (k.hex(), owner[k]))


def start_all(layout):
    """layout: (host, port or -1, weight, name); returns the same with the real ports."""
    return [(h, start_memcached(h, p), w, n) for (h, p, w, n) in layout]


def pylibmc_scenario(out, name, layout):
    servers = start_all(layout)
    addrs = [(h, p) for (h, p, _, _) in servers]
    keys = test_keys()
    mc = pylibmc.Client(["%s:%d:%d" % (h, p, w) for (h, p, w, _) in servers], binary=False,
                        behaviors={"ketama_weighted": True})
    for k in keys:
        assert mc.set(k, b"1"), k
    emit(out, "pylibmc-ketama_weighted-" + name, servers, owners(addrs, keys), keys)
    flush(addrs)


def nutcracker_scenario(out, name, layout):
    servers = start_all(layout)
    addrs = [(h, p) for (h, p, _, _) in servers]
    proxy = free_port()
    conf = os.path.join(work, "nc%d.yml" % len(procs))
    with open(conf, "w") as f:
        f.write("pool:\n  listen: 127.0.0.1:%d\n  hash: md5\n  distribution: ketama\n"
                "  auto_eject_hosts: false\n  servers:\n" % proxy)
        for h, p, w, label in servers:
            f.write("   - %s:%d:%d%s\n" % (h, p, w, " " + label if label else ""))
    nc = subprocess.Popen(["nutcracker", "-c", conf, "-s", str(free_port()),
                           "-o", os.path.join(work, "nc.log")])
    procs.append(nc)
    for _ in range(400):
        try:
            socket.create_connection(("127.0.0.1", proxy)).close()
            break
        except OSError:
            time.sleep(0.01)
    keys = test_keys()
    for k in keys:
        reply = request(("127.0.0.1", proxy), b"set " + k + b" 0 0 1\r\n1\r\n", b"\r\n")
        assert reply == b"STORED\r\n", (k, reply)
    emit(out, "nutcracker-md5-ketama-" + name, servers, owners(addrs, keys), keys)
    nc.kill()
    flush(addrs)


def nutcracker_eject_scenario(out, name, layout, dead):
    """nutcracker with auto_eject_hosts: server `dead` is killed, one failed request ejects it,
    then every key is stored through the proxy over the remaining servers. Records whether the
    ring is rebuilt over the live servers (points re-weighted) or merely skips the dead one."""
    servers = start_all(layout)
    victim = procs[len(procs) - len(layout) + dead]
    addrs = [(h, p) for (h, p, _, _) in servers]
    proxy = free_port()
    conf = os.path.join(work, "nc%d.yml" % len(procs))
    with open(conf, "w") as f:
        f.write("pool:\n  listen: 127.0.0.1:%d\n  hash: md5\n  distribution: ketama\n"
                "  auto_eject_hosts: true\n  server_failure_limit: 1\n"
                "  server_retry_timeout: 600000\n  timeout: 1000\n  servers:\n" % proxy)
        for h, p, w, label in servers:
            f.write("   - %s:%d:%d%s\n" % (h, p, w, " " + label if label else ""))
    nc = subprocess.Popen(["nutcracker", "-c", conf, "-s", str(free_port()),
                           "-o", os.path.join(work, "nc.log")])
    procs.append(nc)
    for _ in range(400):
        try:
            socket.create_connection(("127.0.0.1", proxy)).close()
            break
        except OSError:
            time.sleep(0.01)
    victim.kill()
    victim.wait()
    keys = test_keys()
    for k in keys:
        reply = request(("127.0.0.1", proxy), b"set " + k + b" 0 0 1\r\n1\r\n", b"\r\n")
        if reply != b"STORED\r\n":
            break
    else:
        raise RuntimeError("no key went to the dead server")
    for k in keys:
        reply = request(("127.0.0.1", proxy), b"set " + k + b" 0 0 1\r\n1\r\n", b"\r\n")
        assert reply == b"STORED\r\n", (k, reply)
    live = [i for i in range(len(servers)) if i != dead]
    owner = owners([addrs[i] for i in live], keys)
    emit(out, "nutcracker-md5-ketama-eject-" + name, servers,
         {k: live[i] for k, i in owner.items()}, keys)
    out.write("ejected %d\n" % dead)
    nc.kill()


def ephemeral(weights):
    return [("127.0.0.1", -1, w, None) for w in weights]


try:
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ketama_vectors.txt")
    with open(path, "w") as out:
        out.write("# Generated by generate_vectors.py from pylibmc and nutcracker; do not edit.\n")
        for n in (1, 2, 3, 5, 25):
            pylibmc_scenario(out, "%d" % n, ephemeral([1] * n))
        pylibmc_scenario(out, "weights-1-2-3-5", ephemeral([1, 2, 3, 5]))
        # Port 11211: the ketama name is the host alone (a private namespace, see above).
        pylibmc_scenario(out, "default-port", [
            ("127.0.0.2", 11211, 1, None), ("127.0.0.3", 11211, 2, None),
            ("127.0.0.4", 11211, 1, None), ("127.0.0.5", 11300, 1, None)])
        nutcracker_scenario(out, "1-1-1", ephemeral([1, 1, 1]))
        nutcracker_scenario(out, "1-2-3-5", ephemeral([1, 2, 3, 5]))
        nutcracker_scenario(out, "25", ephemeral([1] * 25))
        nutcracker_eject_scenario(out, "1-2-3-5-without-1", ephemeral([1, 2, 3, 5]), 1)
        for p in procs:
            p.kill()
            p.wait()
        del procs[:]
        nutcracker_scenario(out, "default-port-and-names", [
            ("127.0.0.2", 11211, 1, None), ("127.0.0.3", 11211, 2, None),
            ("127.0.0.4", 11300, 1, None), ("127.0.0.5", 11211, 1, "gamma"),
            ("127.0.0.6", 11400, 3, "delta")])
    print("wrote", path)
finally:
    for p in procs:
        p.kill()
