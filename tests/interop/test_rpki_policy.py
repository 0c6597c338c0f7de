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
65002.  Over IPv4 and over IPv6 transport (the RTR connection to stayrtr
and both BGP sessions; the IPv4 routes then carry RFC 8950 IPv6 next
hops).  Needs root, bird and stayrtr; marked ``interop`` and ``slow``.
"""

import json
import os
import subprocess

import pytest

from fastbgp.testing import lab as L
from fastbgp.testing.daemonlab import LabDaemon, global_toml, ipv4_unicast_toml, neighbor_toml, require

pytestmark = [pytest.mark.interop, pytest.mark.slow, pytest.mark.timeout(120)]

PORT = 8282
DUT_AS = 64500
VALID, INVALID, NOT_FOUND = "198.51.100.0/25", "198.51.100.128/25", "203.0.113.0/24"


def _write_vrps(path, invalid_owner):
    doc = {"metadata": {"buildtime": "2024-01-01T00:00:00Z"}, "roas": [
        {"prefix": VALID, "maxLength": 25, "asn": "AS65001"},
        {"prefix": INVALID, "maxLength": 25, "asn": "AS%d" % invalid_owner},
    ]}
    with open(path + ".tmp", "w") as f:
        json.dump(doc, f)
    os.rename(path + ".tmp", path)  # stayrtr never reads half a file


def _config(host, cache, b1, b2, transport):
    enh = ipv4_unicast_toml(host.addr(transport))
    return (global_toml(DUT_AS, host,
                        "[rpki]", 'caches = [{ address = "%s", port = %d }]' % (cache.addr(transport), PORT),
                        "[[policies]]", 'name = "rov"', "[[policies.statements]]",
                        'conditions = { rpki = "invalid" }', 'actions = { result = "reject" }',
                        listen=[host.addr(transport)])
            + neighbor_toml(b1.addr(transport), 65001, *enh, 'import-policy = ["rov"]')
            + neighbor_toml(b2.addr(transport), 65002, *enh))


@pytest.mark.parametrize("transport", L.TRANSPORTS)
def test_rpki_invalid_dropped_then_revalidated(transport):
    require("stayrtr", L.Bird)
    with L.Lab() as lab:
        cache_host, dut, h1, h2 = (lab.add_host(n) for n in ("rtr", "dut", "b1", "b2"))
        me, cache = dut.addr(transport), cache_host.addr(transport)
        bind = "[%s]" % cache if transport == "ipv6" else cache
        vrps = os.path.join(cache_host.workdir, "vrps.json")
        _write_vrps(vrps, invalid_owner=64999)
        # stayrtr keeps its own descriptor of the log; the Lab stops it by pid.
        with open(os.path.join(cache_host.workdir, "stayrtr.log"), "ab") as stay_log:
            cache_host.popen(["stayrtr", "-cache", vrps, "-checktime=false", "-refresh", "1",
                              "-bind", "%s:%d" % (bind, PORT),
                              "-metrics.addr", "%s:9847" % bind],
                             stdout=stay_log, stderr=subprocess.STDOUT)
        L.wait_for(lambda: cache_host.run(["ss", "-ltn"]).stdout.count(":%d " % PORT), 10,
                   what="stayrtr listening")
        with LabDaemon(dut, _config(dut, cache_host, h1, h2, transport), loop="asyncio") as fb:
            # The VRPs before any route: the first UPDATE is validated.
            fb.wait_log("RPKI change", 20, what="the first VRPs from stayrtr")
            b1 = L.Bird(h1, 65001, neighbors=[L.ipv4_neighbor(me, DUT_AS)],
                        routes=[L.Route(VALID), L.Route(INVALID), L.Route(NOT_FOUND)]).start()
            b2 = L.Bird(h2, 65002, neighbors=[L.ipv4_neighbor(me, DUT_AS)]).start()
            b1.wait_established(me, timeout=40)
            b2.wait_established(me, timeout=40)
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
            fb.wait_log("RPKI change: 1 paths re-validated", 10, what="the re-validation log line")
            fb.assert_clean()
