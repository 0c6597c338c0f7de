"""RFC 8950 (IPv4 NLRI with IPv6 next hops) between the fastbgp daemon and
FRR over an IPv6-only session, with BIRD beside it on an IPv4 session, or
(``transport`` "ipv6") on an IPv6 session of its own with extended next hop:

* FRR (``capability extended-nexthop``, no IPv4 address at all) installs
  the IPv4 route BIRD sent through fastbgp with fastbgp's IPv6 address as
  next hop (fastbgp has no IPv4 address on that session: RFC 8950 §4);
* the IPv4 route FRR originates arrives at fastbgp with FRR's IPv6 next hop
  and reaches BIRD with fastbgp's address of BIRD's session (next-hop-self:
  the IPv4 one, or over IPv6 the IPv6 one, RFC 8950 again);
* withdrawals travel both ways.

Needs root, FRR and BIRD (fastbgp/testing/lab.py); marked ``interop`` and
``slow``.
"""

import pytest

from fastbgp.testing import lab as L
from fastbgp.testing.daemonlab import LabDaemon, global_toml, ipv4_unicast_toml, neighbor_toml, require

pytestmark = [pytest.mark.interop, pytest.mark.slow, pytest.mark.timeout(120)]


@pytest.mark.parametrize("workers", [0, 2], ids=["one-process", "2-workers"])
@pytest.mark.parametrize("transport", L.TRANSPORTS)
def test_ipv4_over_ipv6_session_with_frr(transport, workers):
    require(L.Bird, L.FRR)
    with L.Lab() as lab:
        f = lab.add_host("fb")
        r = lab.add_host("frr", ipv4=None)  # IPv6 only: IPv4 routes can only use IPv6 next hops
        # BIRD has only the address family of its session.
        b = lab.add_host("bird", **{"ipv6" if transport == "ipv4" else "ipv4": None})
        me = f.addr(transport)  # our address on BIRD's session
        text = (global_toml(65000, f, listen=[f.ipv4, f.ipv6])
                + neighbor_toml(r.ipv6, 65003, 'families = ["ipv4-unicast", "ipv6-unicast"]', "extended-next-hop = true")
                + neighbor_toml(b.addr(transport), 65001, *ipv4_unicast_toml(me)))
        with LabDaemon(f, text, log_level="debug", workers=workers) as fb:
            bird = L.Bird(b, 65001, router_id="192.0.2.201", neighbors=[L.ipv4_neighbor(me, 65000)],
                          routes=[L.Route("198.51.100.0/24", as_path=(65100,))]).start()
            frr = L.FRR(r, 65003, router_id="192.0.2.203",
                        neighbors=[L.Neighbor(f.ipv6, 65000, families=("ipv4", "ipv6"),
                                              options={"extra": "neighbor %s capability extended-nexthop" % f.ipv6})],
                        routes=[L.Route("203.0.113.0/24", as_path=(65300,))]).start()
            bird.wait_established(me)
            frr.wait_established(f.ipv6)
            # BIRD -> fastbgp -> FRR: the IPv4 route with fastbgp's IPv6 address.
            got = frr.wait_route("198.51.100.0/24")
            assert (got["next_hop"], got["as_path"]) == (f.ipv6, [65000, 65001, 65100]), got
            # FRR -> fastbgp -> BIRD: next-hop-self with fastbgp's address
            # of BIRD's session.
            got = bird.wait_route("203.0.113.0/24")
            assert (got["next_hop"], got["as_path"]) == (me, [65000, 65003, 65300]), got
            # Withdrawals, both ways.
            bird.withdraw("198.51.100.0/24")
            frr.wait_route("198.51.100.0/24", present=False)
            frr.withdraw("203.0.113.0/24")
            bird.wait_route("203.0.113.0/24", present=False)
            fb.assert_alive()
