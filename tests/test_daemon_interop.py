"""The fastbgp daemon between real BGP daemons (BIRD, GoBGP, FRR) in
network namespaces: routes of each peer reach the others through it, over
IPv4 and IPv6 sessions, with the eBGP export rules applied (our AS first,
next hop self, MED of another AS not passed on) and withdrawals propagated.

Needs root and the daemons (fastbgp/testing/lab.py); marked ``interop``.
"""

import pytest

from fastbgp.testing import lab as L
from fastbgp.testing.daemonlab import LabDaemon, global_toml, neighbor_toml, require

pytestmark = [pytest.mark.interop, pytest.mark.slow]


def _config(host, neighbors):
    """fastbgp in AS 65000; ``neighbors``: [(address, peer_as, extra toml)]."""
    return global_toml(65000, host, listen=[host.ipv4, host.ipv6]) + "".join(
        neighbor_toml(address, asn, *([more] if more else [])) for address, asn, more in neighbors)


def test_daemon_between_bird_and_gobgp():
    require(L.Bird, L.GoBGP)
    with L.Lab() as lab:
        f = lab.add_host("fb")
        b = lab.add_host("bird")
        g = lab.add_host("gobgp")
        with LabDaemon(f, _config(f, [(b.ipv4, 65001, ""), (b.ipv6, 65001, ""),
                                      (g.ipv4, 65002, ""), (g.ipv6, 65002, "")]), log_level="debug") as fb:
            bird = L.Bird(b, 65001, neighbors=[L.Neighbor(f.ipv4, 65000), L.Neighbor(f.ipv6, 65000)],
                          routes=[L.Route("198.51.100.0/24", as_path=(65100,), med=10, communities=("65001:100",),
                                          large_communities=("65001:1:2",)),
                                  L.Route("2001:db8:1::/48")]).start()
            gobgp = L.GoBGP(g, 65002, neighbors=[L.Neighbor(f.ipv4, 65000), L.Neighbor(f.ipv6, 65000)],
                            routes=[L.Route("203.0.113.0/24", communities=("65002:7",)),
                                    L.Route("2001:db8:2::/48", med=5)]).start()
            for fam in ("ipv4", "ipv6"):
                bird.wait_established(f.addr(fam))
                gobgp.wait_established(f.addr(fam))
            # BIRD -> fastbgp -> GoBGP: our AS first, next hop self, the MED
            # of AS 65001 not passed to AS 65002 (RFC 4271 §5.1.4).
            r = gobgp.wait_route("198.51.100.0/24")
            assert r == L.route(f.ipv4, [65000, 65001, 65100], "igp", None, None, ["65001:100"], ["65001:1:2"])
            r = gobgp.wait_route("2001:db8:1::/48")
            assert (r["next_hop"], r["as_path"]) == (f.ipv6, [65000, 65001])
            # GoBGP -> fastbgp -> BIRD.
            r = bird.wait_route("203.0.113.0/24")
            assert (r["next_hop"], r["as_path"], r["communities"]) == (f.ipv4, [65000, 65002], ["65002:7"])
            r = bird.wait_route("2001:db8:2::/48")
            assert (r["next_hop"], r["as_path"], r["med"]) == (f.ipv6, [65000, 65002], None)
            # Withdrawals travel through.
            bird.withdraw("198.51.100.0/24")
            gobgp.wait_route("198.51.100.0/24", present=False)
            gobgp.withdraw("2001:db8:2::/48")
            bird.wait_route("2001:db8:2::/48", present=False)
            # BIRD goes away: its routes are withdrawn from GoBGP.
            bird.stop()
            gobgp.wait_route("2001:db8:1::/48", present=False)
            fb.assert_alive()


def test_daemon_route_server_with_frr_and_bird():
    require(L.Bird, L.FRR)
    with L.Lab() as lab:
        f = lab.add_host("fb")
        b = lab.add_host("bird")
        r = lab.add_host("frr")
        rs = "route-server-client = true"
        with LabDaemon(f, _config(f, [(b.ipv4, 65001, rs), (r.ipv4, 65003, rs)]), log_level="debug") as fb:
            bird = L.Bird(b, 65001, neighbors=[L.Neighbor(f.ipv4, 65000)],
                          routes=[L.Route("198.51.100.0/24", as_path=(65100,), med=10)]).start()
            # FRR must accept a first AS that is not the route server's.
            frr = L.FRR(r, 65003, neighbors=[L.Neighbor(f.ipv4, 65000, options={"extra": "no bgp enforce-first-as"})]
                        ).start()
            bird.wait_established(f.ipv4)
            frr.wait_established(f.ipv4)
            # RFC 7947 §2.2: no route-server AS, next hop and MED untouched.
            got = frr.wait_route("198.51.100.0/24")
            assert (got["next_hop"], got["as_path"], got["med"]) == (b.ipv4, [65001, 65100], 10)
            fb.assert_alive()
