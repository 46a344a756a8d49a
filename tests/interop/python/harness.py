"""The checks' common output, read by tests/interop/run.

Every check prints one line, `ok NAME` or `not ok NAME: WHY`; the runner counts them. A check is a
callable, so an exception fails that check alone (with the exception as its reason) and the
script goes on with the next one: a client that crashes on one reply still reports the rest.
"""
import os
import socket
import sys

_failed = 0
_ran = 0


def _report(name, why):
    global _failed, _ran
    _ran += 1
    if why is None:
        print("ok %s" % name, flush=True)
    else:
        _failed += 1
        print("not ok %s: %s" % (name, why), flush=True)


def eq(name, call, want):
    """Passes when call() returns exactly `want` (same value, and same type where it matters)."""
    try:
        got = call()
    except Exception as e:  # noqa: BLE001 - any client exception is this check's failure
        _report(name, "raised %s: %s" % (type(e).__name__, e))
        return None
    if got == want and type(got) is type(want):
        _report(name, None)
    else:
        _report(name, "got %r, want %r" % (got, want))
    return got


def true(name, call, why="false"):
    """Passes when call() returns something truthy; `why` (a string or a callable giving one)
    explains a failure."""
    try:
        got = call()
    except Exception as e:  # noqa: BLE001
        _report(name, "raised %s: %s" % (type(e).__name__, e))
        return None
    _report(name, None if got else (why() if callable(why) else why))
    return got


def raises(name, call, exc_type):
    """Passes when call() raises `exc_type` (for behaviour that memcached itself answers with an
    error the client cannot parse)."""
    try:
        got = call()
    except exc_type:
        _report(name, None)
        return
    except Exception as e:  # noqa: BLE001
        _report(name, "raised %s (%s), want %s" % (type(e).__name__, e, exc_type.__name__))
        return
    _report(name, "returned %r, want %s raised" % (got, exc_type.__name__))


def client_version(name, version, path):
    """Names the client under test; the runner shows it in the summary line."""
    print("client %s %s (%s)" % (name, version, path), flush=True)


def server_kind():
    """`memcached` or `ferrocached`: the few checks where the two differ on purpose."""
    return os.environ.get("INTEROP_SERVER", "ferrocached")


def host_port(addr):
    host, port = addr.rsplit(":", 1)
    return host, int(port)


def _complete(data):
    """A whole reply to one command: lists (VALUE..., STAT...) end with END, the rest is a line."""
    if data.startswith((b"VALUE ", b"STAT ")):
        return data.endswith(b"END\r\n")
    return data.endswith(b"\r\n")


def raw(addr, command):
    """Sends one text command and returns its raw reply: a view of what the server holds that does
    not go through the client under test (flags, exptime)."""
    with socket.create_connection(host_port(addr), timeout=5) as s:
        s.sendall(command)
        data = b""
        while not _complete(data):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        return data


def raw_flags(addr, key):
    """The flags the server holds for `key`, read with a plain `get`, or None on a miss."""
    reply = raw(addr, b"get " + key.encode() + b"\r\n")
    if not reply.startswith(b"VALUE "):
        return None
    return int(reply.split(b"\r\n", 1)[0].split()[2])


def finish():
    """Exit status 1 when any check failed or none ran."""
    sys.stdout.flush()
    sys.exit(1 if _failed or not _ran else 0)
