"""An announcement only when what a peer holds changes (issue 12; the RIB's
``ChangeSet.replaced``, ``HeldOut.unchanged_best`` in fastbgp.rib.export),
against GoBGP peers.

GoBGP A and B are iBGP peers of the daemon originating the same prefixes
with the same AS path and different MEDs; GoBGP C is an eBGP peer.  C is
sent neither MED nor the iBGP next hops (an eBGP peer gets our address), so
A's and B's routes reach it alike.  A withdrawing some, announcing them
again, and its session going down move the best path from A to B and back:
C is sent no UPDATE for any of it (before: one per prefix group and move).
B's routes that change AS path, and B's withdrawals, still reach C.  Then
the same with A and B eBGP routers of one AS sharing C's update group: C is
sent nothing when the best moves (before: 4 UPDATEs), A the route and B the
withdrawal that split horizon asks for.

Needs root and GoBGP; marked ``interop`` and ``slow``.
"""

import contextlib

import pytest

from fastbgp.testing import lab as L
from fastbgp.testing.daemonlab import LabDaemon, global_toml, ipv4_unicast_toml, neighbor_toml, require

pytestmark = [pytest.mark.interop, pytest.mark.slow, pytest.mark.timeout(150)]

PREFIXES = ["198.51.100.%d/28" % (16 * i) for i in range(8)]
MARKER = "198.51.100.128/28"


def adj_in(gobgp, peer_ip):
    """{prefix: AS path} of what GoBGP holds from ``peer_ip``."""
    return {p: paths[0] for p, paths in gobgp.adj_in_paths(peer_ip).items()}


def rib_add(gobgp, host, prefixes, as_path, med):
    """GoBGP's own routes for ``prefixes`` (replaced in place when present)."""
    for p in prefixes:
        gobgp.cli("global", "rib", "-a", "ipv4", "add", p, "nexthop", host.ipv4, "origin", "igp",
                  "aspath", ",".join(str(x) for x in as_path), "med", str(med), check=True)


def rib_del(gobgp, prefixes):
    for p in prefixes:
        gobgp.cli("global", "rib", "-a", "ipv4", "del", p, check=True)


def best_sources(fb):
    """{prefix: source neighbour address} of the daemon's best paths."""
    return {r["prefix"]: r["source"] for r in fb.api("GET", "/v1/rib/ipv4-unicast") if r.get("best")}


@contextlib.contextmanager
def three_gobgps(transport, asns):
    """The daemon (AS 65000, API on) and GoBGP A, B and C of ``asns`` in
    a lab, sessions up over ``transport``: yields (daemon, its address,
    address-of(host), [(gobgp, host)] * 3)."""
    require(L.GoBGP)
    with L.Lab() as lab:
        f = lab.add_host("fb")
        hosts = [lab.add_host(n) for n in ("a", "b", "c")]
        addr = (lambda h: h.ipv6) if transport == "ipv6" else (lambda h: h.ipv4)
        me = addr(f)
        fb = LabDaemon(f, "", cli=True)
        text = global_toml(65000, f, fb.api_toml().rstrip("\n"),
                           listen=["[%s]:179" % me if transport == "ipv6" else "%s:179" % me])
        for h, asn in zip(hosts, asns):
            text += neighbor_toml(addr(h), asn, *ipv4_unicast_toml(addr(h)))
        with fb.start(text):
            fb.wait_api(30)
            gobgps = [L.GoBGP(h, asn, neighbors=[L.session_neighbor(me, 65000, ("ipv4",))]).start()
                      for h, asn in zip(hosts, asns)]
            for g in gobgps:
                g.wait_established(me, timeout=40)
            yield fb, me, addr, list(zip(gobgps, hosts))


@pytest.mark.parametrize("transport", ["ipv4", "ipv6"])
def test_best_moving_between_paths_exported_alike_sends_nothing(transport):
    with three_gobgps(transport, (65000, 65000, 65003)) as (fb, me, addr, peers):
        (a, ha), (b, hb), (c, hc) = peers

        def best_is(host, prefixes, what):
            L.wait_for(lambda: all(best_sources(fb).get(p) == addr(host) for p in prefixes), timeout=30,
                       what=what, on_timeout=fb.log_tail)

        rib_add(b, hb, PREFIXES, [65100], 20)
        L.wait_for(lambda: all(adj_in(c, me).get(p) == [65000, 65100] for p in PREFIXES), timeout=30,
                   what="B's routes at C", on_timeout=fb.log_tail)
        rib_add(a, ha, PREFIXES, [65100], 10)  # lower MED from the same neighbour AS: best
        best_is(ha, PREFIXES, "A's paths best")
        start = dict(c.messages_received(me))
        rib_del(a, PREFIXES[:4])
        best_is(hb, PREFIXES[:4], "B's paths best after A's withdrawal")
        rib_add(a, ha, PREFIXES[:4], [65100], 10)
        best_is(ha, PREFIXES, "A's paths best again")
        a.stop()
        best_is(hb, PREFIXES, "B's paths best with A down")
        # A marker after the moves: once C has it, C has everything the
        # daemon sent it before (one TCP stream, in order).
        rib_add(b, hb, [MARKER], [65100, 65102], 20)
        L.wait_for(lambda: MARKER in adj_in(c, me), timeout=30, what="the marker at C", on_timeout=fb.log_tail)
        # What C was sent meanwhile: the marker only (the same route each time).
        got = c.messages_received(me)
        print("C received during the moves: %d UPDATEs, %d prefixes withdrawn (%s)" % (
            got.get("update", 0) - start.get("update", 0) - 1,
            got.get("withdraw_prefix", 0) - start.get("withdraw_prefix", 0), transport))
        assert got.get("update", 0) == start.get("update", 0) + 1, (start, got)
        assert got.get("withdraw_prefix", 0) == start.get("withdraw_prefix", 0)
        assert adj_in(c, me) == dict({p: [65000, 65100] for p in PREFIXES}, **{MARKER: [65000, 65100, 65102]})
        # Exported otherwise (a longer AS path): sent; withdrawn: sent.
        rib_add(b, hb, PREFIXES[2:4], [65100, 65101], 20)
        L.wait_for(lambda: adj_in(c, me).get(PREFIXES[3]) == [65000, 65100, 65101], timeout=30,
                   what="B's changed routes at C", on_timeout=fb.log_tail)
        rib_del(b, PREFIXES[:2])
        L.wait_for(lambda: set(adj_in(c, me)) == set(PREFIXES[2:] + [MARKER]), timeout=30,
                   what="B's withdrawal at C", on_timeout=fb.log_tail)
        assert c.messages_received(me).get("withdraw_prefix", 0) - start.get("withdraw_prefix", 0) == 2
        fb.assert_alive()


@pytest.mark.parametrize("transport", ["ipv4", "ipv6"])
def test_best_moving_between_members_of_one_group(transport):
    """GoBGP A and B are two routers of AS 65001 sending the same routes
    (MED 10 from A, 20 from B), C is AS 65003; the three share one update
    group.  A withdraws half of them: C is sent nothing, A is sent B's
    route (split horizon had kept A's own from it; GoBGP drops it, its AS is
    in the path, but counts the UPDATE) and B the withdrawal of A's route,
    which it held from us."""
    with three_gobgps(transport, (65001, 65001, 65003)) as (fb, me, addr, peers):
        (a, ha), (b, hb), (c, hc) = peers
        rib_add(b, hb, PREFIXES, [], 20)
        L.wait_for(lambda: all(adj_in(c, me).get(p) == [65000, 65001] for p in PREFIXES), timeout=30,
                   what="B's routes at C", on_timeout=fb.log_tail)
        rib_add(a, ha, PREFIXES, [], 10)  # lower MED from the same neighbour AS: best
        L.wait_for(lambda: all(best_sources(fb).get(p) == addr(ha) for p in PREFIXES), timeout=30,
                   what="A's paths best", on_timeout=fb.log_tail)
        # Once B was sent the marker, it was sent everything before it.
        marker = ["198.51.100.144/28"]
        rib_add(c, hc, marker, [], 0)
        L.wait_for(lambda: marker[0] in adj_in(b, me) and marker[0] in adj_in(a, me), timeout=30,
                   what="the first marker at A and B", on_timeout=fb.log_tail)
        start = [dict(g.messages_received(me)) for g in (a, b, c)]
        rib_del(a, PREFIXES[:4])
        L.wait_for(lambda: all(best_sources(fb).get(p) == addr(hb) for p in PREFIXES[:4]), timeout=30,
                   what="B's paths best", on_timeout=fb.log_tail)
        marker = ["198.51.100.160/28"]
        rib_add(c, hc, marker, [], 0)
        L.wait_for(lambda: marker[0] in adj_in(b, me) and marker[0] in adj_in(a, me), timeout=30,
                   what="the second marker at A and B", on_timeout=fb.log_tail)
        got = [g.messages_received(me) for g in (a, b, c)]

        def delta(i, key):
            return got[i].get(key, 0) - start[i].get(key, 0)
        print("after the move (%s): A %d UPDATEs, B %d UPDATEs / %d prefixes withdrawn, C %d UPDATEs" % (
            transport, delta(0, "update"), delta(1, "update"), delta(1, "withdraw_prefix"), delta(2, "update")))
        assert delta(2, "update") == 0 and delta(2, "withdraw_prefix") == 0  # C: nothing
        assert delta(1, "withdraw_prefix") == 4 and delta(1, "update") >= 2  # B: the withdrawals, the marker
        assert delta(0, "withdraw_prefix") == 0 and delta(0, "update") >= 2  # A: B's route, the marker
        assert adj_in(c, me) == {p: [65000, 65001] for p in PREFIXES}
        fb.assert_alive()
