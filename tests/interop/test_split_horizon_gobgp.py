"""Split horizon against GoBGP peers (fastbgp.rib.export, the echo): GoBGP A
changes the attributes of routes whose best path is already its own, three
times; GoBGP B is sent each change, A is sent nothing -- no withdrawal of a
route split horizon never gave it (before: one per prefix and change).
Then B announces a shorter path: the best moves to B, which held A's route
from the daemon and is sent its withdrawal; A is sent B's route.

Needs root and GoBGP; marked ``interop`` and ``slow``.
"""

import pytest

from fastbgp.testing import lab as L
from fastbgp.testing.daemonlab import LabDaemon, global_toml, ipv4_unicast_toml, neighbor_toml, require

pytestmark = [pytest.mark.interop, pytest.mark.slow, pytest.mark.timeout(120)]

PREFIXES = ["198.51.100.%d/28" % (16 * i) for i in range(8)]


def adj_in(gobgp, peer_ip):
    """{prefix: AS path} of what GoBGP holds from ``peer_ip``."""
    return {p: paths[0] for p, paths in gobgp.adj_in_paths(peer_ip).items()}


def originate(gobgp, host, prefixes, as_path):
    """Add (or replace, in place: no withdrawal in between) GoBGP's own
    routes for ``prefixes``."""
    for p in prefixes:
        args = ["global", "rib", "-a", "ipv4", "add", p, "nexthop", host.ipv4, "origin", "igp"]
        if as_path:
            args += ["aspath", ",".join(str(x) for x in as_path)]
        gobgp.cli(*args, check=True)


@pytest.mark.parametrize("transport", ["ipv4", "ipv6"])
def test_source_changing_its_own_best_routes_is_sent_no_withdrawal(transport):
    require(L.GoBGP)
    with L.Lab() as lab:
        f, ha, hb = lab.add_host("fb"), lab.add_host("a"), lab.add_host("b")
        v6 = transport == "ipv6"
        addr = (lambda h: h.ipv6) if v6 else (lambda h: h.ipv4)
        me = addr(f)
        text = global_toml(65000, f, listen=["[%s]:179" % me if v6 else "%s:179" % me])
        for h, asn in ((ha, 65001), (hb, 65002)):
            text += neighbor_toml(addr(h), asn, *ipv4_unicast_toml(addr(h)))
        with LabDaemon(f, text) as fb:
            peers = []
            for h, asn in ((ha, 65001), (hb, 65002)):
                nb = L.session_neighbor(me, 65000, ("ipv4",))
                peers.append(L.GoBGP(h, asn, neighbors=[nb]).start())
            a, b = peers
            for g in peers:
                g.wait_established(me, timeout=40)
            originate(a, ha, PREFIXES, [65100])
            L.wait_for(lambda: adj_in(b, me).get(PREFIXES[-1]) == [65000, 65001, 65100], timeout=30,
                       what="A's routes at B", on_timeout=fb.log_tail)
            for n in range(3):
                path = [65100] + [65200 + n] * (n + 1)
                originate(a, ha, PREFIXES, path)
                L.wait_for(lambda: all(adj_in(b, me).get(p) == [65000, 65001] + path for p in PREFIXES), timeout=30,
                           what="change %d at B" % n, on_timeout=fb.log_tail)
            assert a.messages_received(me).get("withdraw_prefix", 0) == 0 and not adj_in(a, me)
            # B's path is shorter: the best moves to B, which held A's route.
            originate(b, hb, PREFIXES[:1], [])
            L.wait_for(lambda: adj_in(a, me).get(PREFIXES[0]) == [65000, 65002], timeout=30,
                       what="B's route at A", on_timeout=fb.log_tail)
            L.wait_for(lambda: b.messages_received(me).get("withdraw_prefix", 0) == 1, timeout=30,
                       what="B's echo withdrawal", on_timeout=lambda: "%s\n%s" % (b.messages_received(me), fb.log_tail()))
            fb.assert_alive()
            assert PREFIXES[0] not in adj_in(b, me) and a.messages_received(me).get("withdraw_prefix", 0) == 0
