"""RPKI policy end to end in the namespace lab: the fastbgp daemon takes
its VRPs over RTR from the real stayrtr (Debian) and rejects RFC 6811
Invalid routes in its import policy (``rpki = "invalid"`` -> reject).

BIRD 2 in AS 65001 announces three routes -- one Valid, one Invalid (a
VRP for another AS covers it), one NotFound -- and BIRD 2 in AS 65002 must
receive exactly the Valid and the NotFound ones.  Then stayrtr's file
changes so that the Invalid route becomes Valid: the client gets the
serial update, the daemon re-validates only the covered route from its
pre-policy Adj-RIB-In (BIRD 2 speaks ROUTE-REFRESH, so this copy is kept
because the chain uses ``rpki``) and the normal export announces it to AS
65002.  Needs root, bird and stayrtr; marked ``interop`` and ``slow``.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from fastbgp.testing import lab as L

pytestmark = [pytest.mark.interop, pytest.mark.slow, pytest.mark.timeout(120)]

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUNNER = textwrap.dedent("""
    import sys
    from fastbgp.daemon.process import run_daemon
    import asyncio
    asyncio.run(run_daemon(sys.argv[1], api=False, metrics=False, log_level="info"))
""")
PORT = 8282
DUT_AS = 64500
VALID, INVALID, NOT_FOUND = "198.51.100.0/25", "198.51.100.128/25", "203.0.113.0/24"


def _require():
    if not L.is_root():
        pytest.skip("interop lab needs root (network namespaces)")
    missing = L.missing_binaries("ip", "stayrtr", *L.Bird.binaries)
    if missing:
        pytest.skip("not installed: %s (run .ci/install-peers.sh)" % ", ".join(missing))


def _write_vrps(path, invalid_owner):
    doc = {"metadata": {"buildtime": "2024-01-01T00:00:00Z"}, "roas": [
        {"prefix": VALID, "maxLength": 25, "asn": "AS65001"},
        {"prefix": INVALID, "maxLength": 25, "asn": "AS%d" % invalid_owner},
    ]}
    with open(path + ".tmp", "w") as f:
        json.dump(doc, f)
    os.rename(path + ".tmp", path)  # stayrtr never reads half a file


def _config(host, cache, b1, b2):
    return textwrap.dedent("""
        [global]
        asn = %d
        router-id = "%s"
        listen = ["%s"]

        [rpki]
        caches = [{ address = "%s", port = %d }]

        [[policies]]
        name = "rov"
        [[policies.statements]]
        conditions = { rpki = "invalid" }
        actions = { result = "reject" }

        [[neighbors]]
        address = "%s"
        peer-as = 65001
        import-policy = ["rov"]
        default-import = "accept"
        default-export = "accept"
        timers = { connect-retry = 2, idle-hold = 1 }

        [[neighbors]]
        address = "%s"
        peer-as = 65002
        default-import = "accept"
        default-export = "accept"
        timers = { connect-retry = 2, idle-hold = 1 }
    """) % (DUT_AS, host.ipv4, host.ipv4, cache.ipv4, PORT, b1.ipv4, b2.ipv4)


def _tail(path, n=60):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


def test_rpki_invalid_dropped_then_revalidated():
    _require()
    with L.Lab() as lab:
        cache_host, dut, h1, h2 = (lab.add_host(n) for n in ("rtr", "dut", "b1", "b2"))
        vrps = os.path.join(cache_host.workdir, "vrps.json")
        _write_vrps(vrps, invalid_owner=64999)
        stay_log = open(os.path.join(cache_host.workdir, "stayrtr.log"), "ab")
        stay = cache_host.popen(["stayrtr", "-cache", vrps, "-checktime=false", "-refresh", "1",
                                 "-bind", "%s:%d" % (cache_host.ipv4, PORT),
                                 "-metrics.addr", "%s:9847" % cache_host.ipv4],
                                stdout=stay_log, stderr=subprocess.STDOUT)
        path = os.path.join(dut.workdir, "fastbgp.toml")
        with open(path, "w") as f:
            f.write(_config(dut, cache_host, h1, h2))
        logpath = os.path.join(dut.workdir, "fastbgp.log")
        log = open(logpath, "ab")
        proc = None
        try:
            L.wait_for(lambda: cache_host.run(["ss", "-ltn"]).stdout.count(":%d " % PORT), 10,
                       what="stayrtr listening")
            proc = dut.popen([sys.executable, "-c", RUNNER, path], stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
            # The VRPs before any route: the first UPDATE is validated.
            L.wait_for(lambda: "RPKI change" in _tail(logpath) or proc.poll() is not None, 20,
                       what="the first VRPs from stayrtr", on_timeout=lambda: _tail(logpath))
            assert proc.poll() is None, _tail(logpath)
            b1 = L.Bird(h1, 65001, neighbors=[L.Neighbor(dut.ipv4, DUT_AS)],
                        routes=[L.Route(VALID), L.Route(INVALID), L.Route(NOT_FOUND)]).start()
            b2 = L.Bird(h2, 65002, neighbors=[L.Neighbor(dut.ipv4, DUT_AS)]).start()
            b1.wait_established(dut.ipv4, timeout=40)
            b2.wait_established(dut.ipv4, timeout=40)
            b2.wait_route(VALID, timeout=30)
            b2.wait_route(NOT_FOUND, timeout=30)
            rib = b2.rib("ipv4")
            assert INVALID not in rib, rib
            assert set(rib) >= {VALID, NOT_FOUND}

            # The invalid route's VRP now names its origin: stayrtr re-reads
            # the file (-refresh 1), notifies, the client fetches the delta,
            # the daemon re-validates the one covered route and exports it.
            _write_vrps(vrps, invalid_owner=65001)
            b2.wait_route(INVALID, timeout=30)
            assert set(b2.rib("ipv4")) >= {VALID, INVALID, NOT_FOUND}
            L.wait_for(lambda: "RPKI change: 1 paths re-validated" in _tail(logpath, 400), 10,
                       what="the re-validation log line", on_timeout=lambda: _tail(logpath))
            assert proc.poll() is None, _tail(logpath)
            assert "Traceback" not in _tail(logpath, 2000), _tail(logpath, 2000)
        except Exception:
            print(_tail(logpath, 200))
            raise
        finally:
            for p in (proc, stay):
                if p is None:
                    continue
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except (ProcessLookupError, PermissionError):
                    p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
            log.close()
            stay_log.close()
