"""SASL PLAIN logins over the binary protocol with a third-party client against a server it starts
itself with -S: `sasl_check.py CLIENT SERVER_BIN [SERVER_ARGS...]`, CLIENT being `bmemcached`
(python-binary-memcached) or `pylibmc` (libmemcached's SASL).

ferrocached gets its users from MEMCACHED_SASL_PWDB; Debian's memcached (INTEROP_SERVER=memcached)
has no such password DB built in, so it gets a Cyrus SASL config (mech_list plain) and a sasldb
written with saslpasswd2 (sasl2-bin). The server listens on 127.0.0.1, an ephemeral port, and is
killed by pid at the end.
"""
import os
import subprocess
import sys
import tempfile
import time

import harness as t

USER, PASSWORD = "alice", "s3cret-pass"


def start_server(workdir, bin_path, server_args):
    port_file = os.path.join(workdir, "port")
    env = dict(os.environ, MEMCACHED_PORT_FILENAME=port_file)
    if t.server_kind() == "memcached":
        sasldb = os.path.join(workdir, "sasldb2")
        with open(os.path.join(workdir, "memcached.conf"), "w") as conf:
            conf.write("mech_list: plain\nsasldb_path: %s\n" % sasldb)
        subprocess.run(["saslpasswd2", "-p", "-a", "memcached", "-c", "-f", sasldb, USER],
                       input=PASSWORD.encode(), check=True)
        env["SASL_CONF_PATH"] = workdir
    else:
        pwdb = os.path.join(workdir, "sasl-users")
        with open(pwdb, "w") as f:
            f.write("bob:other\n%s:%s\n" % (USER, PASSWORD))
        env["MEMCACHED_SASL_PWDB"] = pwdb
    log = open(os.path.join(workdir, "server.log"), "w")
    proc = subprocess.Popen([bin_path, "-S", "-p", "-1", "-U", "0", "-l", "127.0.0.1"] + server_args,
                            env=env, stdout=log, stderr=log, start_new_session=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with open(port_file) as f:
                for line in f:
                    if line.startswith("TCP INET: "):
                        return proc, "127.0.0.1:%d" % int(line.split(": ")[1])
        except FileNotFoundError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    with open(os.path.join(workdir, "server.log")) as f:
        raise SystemExit("server did not start: %s" % f.read()[-300:])


def check_bmemcached(addr):
    import bmemcached

    t.client_version("python-binary-memcached", bmemcached.__version__ if hasattr(bmemcached, "__version__")
                     else "0.33.0", bmemcached.__file__)
    good = bmemcached.Client([addr], USER, PASSWORD)
    t.eq("login, set", lambda: good.set("k", "v1"), True)
    t.eq("get after login", lambda: good.get("k"), "v1")
    t.eq("delete after login", lambda: good.delete("k"), True)
    t.eq("get miss after login", lambda: good.get("k"), None)
    good.disconnect_all()

    # bmemcached expects status 0x08 for a failed login (InvalidCredentials); memcached sends 0x20
    # "Auth failure.", which the client raises as a plain MemcachedException with that code.
    bad = bmemcached.Client([addr], USER, "wrong")
    t.eq("wrong password: status 0x20 Auth failure.", lambda: _error_of(lambda: bad.set("k", "v2")),
         (0x20, "Code: 32 Message: b'Auth failure.'"))
    unknown = bmemcached.Client([addr], "mallory", PASSWORD)
    t.eq("unknown user: status 0x20 Auth failure.", lambda: _error_of(lambda: unknown.get("k")),
         (0x20, "Code: 32 Message: b'Auth failure.'"))
    t.eq("value unchanged by the refused clients", lambda: good.get("k"), None)

    # A client that does not log in reads nothing: memcached answers "Auth failure." and closes.
    good.set("private", "secret-value")
    anonymous = bmemcached.Client([addr])
    t.true("no login: get does not return the value",
           lambda: _not_value(lambda: anonymous.get("private"), "secret-value"))
    t.eq("the value is still there for the logged-in client", lambda: good.get("private"), "secret-value")


def _error_of(call):
    from bmemcached.exceptions import MemcachedException

    try:
        call()
    except MemcachedException as e:
        return (e.code, e.message)
    return None


def _not_value(call, value):
    try:
        return call() != value
    except Exception:  # noqa: BLE001 - refusing by raising is also not reading it
        return True


def check_pylibmc(addr):
    import pylibmc

    t.client_version("pylibmc", "%s, libmemcached %s" % (pylibmc.__version__, pylibmc.libmemcached_version),
                     pylibmc.__file__)
    t.true("libmemcached built with SASL", lambda: pylibmc.support_sasl)
    good = pylibmc.Client([addr], binary=True, username=USER, password=PASSWORD)
    t.eq("login, set", lambda: good.set("k", "v1"), True)
    t.eq("get after login", lambda: good.get("k"), "v1")
    bad = pylibmc.Client([addr], binary=True, username=USER, password="wrong")
    t.true("wrong password: set fails", lambda: _fails(lambda: bad.set("k", "v2")))
    t.eq("value unchanged by the refused client", lambda: good.get("k"), "v1")


def _fails(call):
    try:
        return call() is False
    except Exception:  # noqa: BLE001 - pylibmc raises its own error types for an auth failure
        return True


def main():
    client, bin_path, server_args = sys.argv[1], sys.argv[2], sys.argv[3:]
    with tempfile.TemporaryDirectory(prefix="ferrocache-sasl-") as workdir:
        proc, addr = start_server(workdir, bin_path, server_args)
        try:
            {"bmemcached": check_bmemcached, "pylibmc": check_pylibmc}[client](addr)
        finally:
            proc.kill()
            proc.wait()
    t.finish()


main()
