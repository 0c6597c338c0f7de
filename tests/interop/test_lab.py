"""Self-test of the interop lab: real daemons peer with *each other*.

If these fail, interop tests against fastbgp cannot be trusted either, so
each pair checks sessions in both address families, attribute round-trips,
runtime announce/withdraw, an admin shutdown seen by the other side, and
that nothing is left behind (the ``lab`` fixture in conftest.py asserts no
namespace, process or temp dir survives).
"""

import os
import subprocess

import pytest

from fastbgp.testing import lab as L
from .conftest import lab_namespaces, require

pytestmark = pytest.mark.interop


def _both_up(x, x_host, y, y_host, families=("ipv4", "ipv6")):
    for fam in families:
        x.wait_established(y_host.addr(fam))
        y.wait_established(x_host.addr(fam))


def test_bird_gobgp(lab):
    require(L.Bird, L.GoBGP)
    a = lab.add_host("bird")
    b = lab.add_host("gobgp")
    bird = L.Bird(a, 65001, neighbors=[L.Neighbor(b.ipv4, 65002, password="lab-md5"), L.Neighbor(b.ipv6, 65002)],
                  routes=[L.Route("198.51.100.0/24", as_path=(65100,), med=10, communities=("65001:100",),
                                  large_communities=("65001:1:2",), origin="incomplete"),
                          L.Route("2001:db8:1::/48")]).start()
    gobgp = L.GoBGP(b, 65002, neighbors=[L.Neighbor(a.ipv4, 65001, password="lab-md5"),
                                         L.Neighbor(a.ipv6, 65001, passive=True)],
                    routes=[L.Route("203.0.113.0/24", communities=("65002:7",)),
                            L.Route("2001:db8:2::/48", med=5)]).start()
    _both_up(bird, a, gobgp, b)

    assert gobgp.wait_route("198.51.100.0/24") == L.route(a.ipv4, [65001, 65100], "incomplete", 10, None,
                                                          ["65001:100"], ["65001:1:2"])
    assert gobgp.wait_route("2001:db8:1::/48")["next_hop"] == a.ipv6
    r = bird.wait_route("203.0.113.0/24")
    assert (r["next_hop"], r["as_path"], r["communities"]) == (b.ipv4, [65002], ["65002:7"])
    r = bird.wait_route("2001:db8:2::/48")
    assert (r["next_hop"], r["as_path"], r["med"]) == (b.ipv6, [65002], 5)

    # runtime changes on both sides
    gobgp.announce("203.0.113.128/25", as_path=[65300], large_communities=["65002:3:4"])
    r = bird.wait_route("203.0.113.128/25")
    assert (r["as_path"], r["large_communities"]) == ([65002, 65300], ["65002:3:4"])
    gobgp.withdraw("203.0.113.128/25")
    bird.wait_route("203.0.113.128/25", present=False)
    bird.announce("2001:db8:1:8000::/49", communities=["65001:5"])
    assert gobgp.wait_route("2001:db8:1:8000::/49")["communities"] == ["65001:5"]
    bird.withdraw("2001:db8:1::/48")
    gobgp.wait_route("2001:db8:1::/48", present=False)

    # RFC 8203 shutdown communication travels GoBGP -> BIRD
    gobgp.disable(a.ipv4, "lab maintenance 1")
    L.wait_for(lambda: "lab maintenance 1" in bird.log_text(), 10, what="shutdown message in BIRD log")
    assert bird.neighbor_state(b.ipv4) != "established"
    bird.wait_route("203.0.113.0/24", present=False)


def test_gobgp_frr(lab):
    require(L.GoBGP, L.FRR)
    a = lab.add_host("gobgp")
    b = lab.add_host("frr")
    gobgp = L.GoBGP(a, 65001, neighbors=[(b.ipv4, 65002), (b.ipv6, 65002)],
                    routes=[L.Route("198.51.100.0/24", med=20, communities=("65001:1", "65001:2")),
                            L.Route("2001:db8:10::/48", large_communities=("65001:0:1",))]).start()
    frr = L.FRR(b, 65002, neighbors=[L.Neighbor(a.ipv4, 65001, passive=True), L.Neighbor(a.ipv6, 65001)],
                routes=[L.Route("203.0.113.0/24", as_path=(65200, 65201), med=7, origin="egp")]).start()
    _both_up(gobgp, a, frr, b)

    assert frr.wait_route("198.51.100.0/24") == L.route(a.ipv4, [65001], "igp", 20, None,
                                                        ["65001:1", "65001:2"], [])
    r = frr.wait_route("2001:db8:10::/48")
    assert (r["next_hop"], r["large_communities"]) == (a.ipv6, ["65001:0:1"])
    r = gobgp.wait_route("203.0.113.0/24")
    assert (r["next_hop"], r["as_path"], r["med"], r["origin"]) == (b.ipv4, [65002, 65200, 65201], 7, "egp")

    frr.announce("2001:db8:20::/48", communities=["65002:99"])
    r = gobgp.wait_route("2001:db8:20::/48")
    assert (r["next_hop"], r["communities"]) == (b.ipv6, ["65002:99"])
    frr.withdraw("2001:db8:20::/48")
    gobgp.wait_route("2001:db8:20::/48", present=False)

    frr.disable(a.ipv6, "frr going down")
    L.wait_for(lambda: "frr going down" in gobgp.log_text(), 10, what="shutdown message in GoBGP log")
    gobgp.wait_route("2001:db8:20::/48", present=False)


def test_frr_exabgp_two_octet(lab):
    require(L.FRR, L.ExaBGP)
    a = lab.add_host("frr")
    b = lab.add_host("exa")
    frr = L.FRR(a, 65003, neighbors=[(b.ipv4, 65004), (b.ipv6, 65004)],
                routes=[L.Route("198.51.100.0/24", communities=("65003:1",), large_communities=("65003:2:3",)),
                        L.Route("2001:db8:30::/48", med=1)]).start()
    # ExaBGP speaks 2-octet AS only on the IPv4 session: no AS4 capability
    exa = L.ExaBGP(b, 65004, neighbors=[L.Neighbor(a.ipv4, 65003, options={"asn4": False}),
                                        L.Neighbor(a.ipv6, 65003, passive=True)],
                   routes=[L.Route("203.0.113.0/24", med=9, communities=("65004:4",))]).start()
    _both_up(frr, a, exa, b)

    caps = frr.neighbors_json()[b.ipv4]["neighborCapabilities"]
    assert caps["4byteAs"] == "advertised"  # we offered it, ExaBGP did not
    caps6 = frr.neighbors_json()[b.ipv6]["neighborCapabilities"]
    assert caps6["4byteAs"] == "advertisedAndReceived"

    assert exa.wait_route("198.51.100.0/24") == L.route(a.ipv4, [65003], "igp", 0, None, ["65003:1"],
                                                        ["65003:2:3"])
    assert exa.wait_route("2001:db8:30::/48")["next_hop"] == a.ipv6
    r = frr.wait_route("203.0.113.0/24")
    assert (r["next_hop"], r["as_path"], r["med"], r["communities"]) == (b.ipv4, [65004], 9, ["65004:4"])

    exa.announce("2001:db8:40::/48", as_path=[65010], large_communities=["65004:1:1"])
    r = frr.wait_route("2001:db8:40::/48")
    assert (r["next_hop"], r["as_path"], r["large_communities"]) == (b.ipv6, [65004, 65010], ["65004:1:1"])
    exa.withdraw("2001:db8:40::/48")
    frr.wait_route("2001:db8:40::/48", present=False)
    frr.withdraw("198.51.100.0/24")
    exa.wait_route("198.51.100.0/24", present=False)

    # No shutdown *message* here: ExaBGP 4.2.21 crashes decoding one
    # (see lab.ExaBGP); a plain Cease/Administrative Shutdown is recorded.
    frr.disable(b.ipv4)
    L.wait_for(lambda: any(n["code"] == 6 and n["subcode"] == 2 and n["peer"] == a.ipv4
                           for n in exa.notifications()), 10, what="Cease/2 recorded by ExaBGP")
    L.wait_for(lambda: exa.neighbor_state(a.ipv4) != "established", 10, what="ExaBGP session down")


def test_openbgpd_bird(lab):
    require(L.OpenBGPD, L.Bird)
    a = lab.add_host("obgp")
    b = lab.add_host("bird")
    obgp = L.OpenBGPD(a, 65005, neighbors=[(b.ipv4, 65006), (b.ipv6, 65006)],
                      routes=[L.Route("198.51.100.0/24", med=3, communities=("65005:1",)),
                              L.Route("2001:db8:50::/48", large_communities=("65005:5:5",))]).start()
    bird = L.Bird(b, 65006, neighbors=[(a.ipv4, 65005), (a.ipv6, 65005)],
                  routes=[L.Route("203.0.113.0/24", origin="egp"), L.Route("2001:db8:60::/48")]).start()
    _both_up(obgp, a, bird, b)

    r = bird.wait_route("198.51.100.0/24")
    assert (r["next_hop"], r["as_path"], r["med"], r["communities"]) == (a.ipv4, [65005], 3, ["65005:1"])
    assert bird.wait_route("2001:db8:50::/48")["large_communities"] == ["65005:5:5"]
    r = obgp.wait_route("203.0.113.0/24")
    assert (r["next_hop"], r["as_path"], r["origin"]) == (b.ipv4, [65006], "egp")
    assert obgp.wait_route("2001:db8:60::/48")["next_hop"] == b.ipv6

    obgp.announce("203.0.113.64/26", communities=["65005:64"])
    assert bird.wait_route("203.0.113.64/26")["communities"] == ["65005:64"]
    obgp.withdraw("203.0.113.64/26")
    bird.wait_route("203.0.113.64/26", present=False)

    bird.disable(a.ipv4, "bird says goodbye")
    L.wait_for(lambda: "bird says goodbye" in obgp.log_text(), 10, what="shutdown message in OpenBGPD log")


def test_cleanup_after_exception():
    """Even when the test body blows up, daemons die and namespaces go."""
    require(L.GoBGP)
    pids = []
    with pytest.raises(RuntimeError, match="boom"):
        with L.Lab() as lab:
            prefix = lab.prefix
            h = lab.add_host("x")
            g = L.GoBGP(h, 65001).start()
            pids = [g.proc.pid, h.popen(["sleep", "300"]).pid]
            tmp = lab.tmpdir
            raise RuntimeError("boom")
    assert lab_namespaces(prefix) == []
    for pid in pids:
        assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"
    assert not os.path.exists(tmp)


def test_only_documentation_addresses():
    require()
    with L.Lab() as lab:
        with pytest.raises(L.LabError, match="documentation"):
            lab.add_host("bad", ipv4="10.1.2.3/24")
        with pytest.raises(L.LabError, match="documentation"):
            lab.add_host("bad6", ipv4=None, ipv6="2001:db9::1/64")
        h = lab.add_host("ok", ipv4="203.0.113.9", ipv6=None)
        assert (h.ipv4, h.ipv4_cidr, h.ipv6) == ("203.0.113.9", "203.0.113.9/24", None)
        out = h.run(["ip", "-o", "addr", "show", "dev", "eth0"]).stdout
        assert "203.0.113.9/24" in out
        prefix = lab.prefix
    assert lab_namespaces(prefix) == []
    assert subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).returncode == 0
