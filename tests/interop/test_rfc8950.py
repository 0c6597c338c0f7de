"""RFC 8950 (IPv4 NLRI with IPv6 next hops) between the fastbgp daemon and
FRR over an IPv6-only session, with BIRD on an IPv4 session beside it:

* FRR (``capability extended-nexthop``, no IPv4 address at all) installs
  the IPv4 route BIRD sent through fastbgp with fastbgp's IPv6 address as
  next hop (fastbgp has no IPv4 address on that session: RFC 8950 §4);
* the IPv4 route FRR originates arrives at fastbgp with FRR's IPv6 next hop
  and reaches BIRD with fastbgp's IPv4 address (next-hop-self);
* withdrawals travel both ways.

Needs root, FRR and BIRD (fastbgp/testing/lab.py); marked ``interop`` and
``slow``.
"""

import os
import subprocess
import sys
import textwrap

import pytest

from fastbgp.testing import lab as L

pytestmark = [pytest.mark.interop, pytest.mark.slow, pytest.mark.timeout(120)]

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUNNER = textwrap.dedent("""
    import sys
    import uvloop
    from fastbgp.daemon.process import run_daemon
    uvloop.run(run_daemon(sys.argv[1], api=False, metrics=False, log_level="debug"))
""")


def _require(*classes):
    if not L.is_root():
        pytest.skip("interop lab needs root (network namespaces)")
    missing = L.missing_binaries("ip", *[b for c in classes for b in c.binaries])
    if missing:
        pytest.skip("not installed: %s" % ", ".join(missing))


def _start_fastbgp(host, text):
    path = os.path.join(host.workdir, "fastbgp.toml")
    with open(path, "w") as f:
        f.write(text)
    logpath = os.path.join(host.workdir, "fastbgp.log")
    log = open(logpath, "ab")
    proc = host.popen([sys.executable, "-c", RUNNER, path], stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    return proc, logpath


def _log_tail(path, n=80):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


def test_ipv4_over_ipv6_session_with_frr():
    _require(L.Bird, L.FRR)
    with L.Lab() as lab:
        f = lab.add_host("fb")
        r = lab.add_host("frr", ipv4=None)  # IPv6 only: IPv4 routes can only use IPv6 next hops
        b = lab.add_host("bird", ipv6=None)
        text = "\n".join([
            "[global]", "asn = 65000", 'router-id = "%s"' % f.ipv4,
            'listen = ["%s", "%s"]' % (f.ipv4, f.ipv6),
            "[[neighbors]]", 'address = "%s"' % r.ipv6, "peer-as = 65003",
            'families = ["ipv4-unicast", "ipv6-unicast"]', "extended-next-hop = true",
            'default-import = "accept"', 'default-export = "accept"', "timers = { connect-retry = 2, idle-hold = 1 }",
            "[[neighbors]]", 'address = "%s"' % b.ipv4, "peer-as = 65001",
            'default-import = "accept"', 'default-export = "accept"', "timers = { connect-retry = 2, idle-hold = 1 }",
        ]) + "\n"
        proc, logpath = _start_fastbgp(f, text)
        try:
            bird = L.Bird(b, 65001, neighbors=[L.Neighbor(f.ipv4, 65000)],
                          routes=[L.Route("198.51.100.0/24", as_path=(65100,))]).start()
            frr = L.FRR(r, 65003, router_id="192.0.2.203",
                        neighbors=[L.Neighbor(f.ipv6, 65000, families=("ipv4", "ipv6"),
                                              options={"extra": "neighbor %s capability extended-nexthop" % f.ipv6})],
                        routes=[L.Route("203.0.113.0/24", as_path=(65300,))]).start()
            bird.wait_established(f.ipv4)
            frr.wait_established(f.ipv6)
            # BIRD -> fastbgp -> FRR: the IPv4 route with fastbgp's IPv6 address.
            got = frr.wait_route("198.51.100.0/24")
            assert (got["next_hop"], got["as_path"]) == (f.ipv6, [65000, 65001, 65100]), got
            # FRR -> fastbgp -> BIRD: next-hop-self with fastbgp's IPv4 address.
            got = bird.wait_route("203.0.113.0/24")
            assert (got["next_hop"], got["as_path"]) == (f.ipv4, [65000, 65003, 65300]), got
            # Withdrawals, both ways.
            bird.withdraw("198.51.100.0/24")
            frr.wait_route("198.51.100.0/24", present=False)
            frr.withdraw("203.0.113.0/24")
            bird.wait_route("203.0.113.0/24", present=False)
            assert proc.poll() is None, _log_tail(logpath)
        except Exception:
            print(_log_tail(logpath))
            raise
