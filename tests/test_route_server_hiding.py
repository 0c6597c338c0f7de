"""Route-server path hiding mitigation (RFC 7947 §2.3, §2.3.2.1): when a
client's export decision rejects the best path of a prefix, the client gets
the best path that passes (fastbgp.rib.route_server.PathHiding), and only
such prefixes are remembered per update group.

Through the RIB and update groups on both RIB implementations, then the
daemon end to end with library speakers on loopback."""

import ipaddress

from fastbgp.config.checks import load_config
from fastbgp.rib import AttrTable
from fastbgp.rib.export import RS, Delta, PathRanker, Source, UpdateGroup, tag_source
from fastbgp.rib.policy import PolicyContext, PolicyEngine
from fastbgp.rib.route_server import PathHiding, RouteServerPolicy
from fastbgp.wire import codec
from fastbgp.wire.constants import AFI_IPV4, IPV4_UNICAST

from test_daemon import DUT, addr, neighbor_toml, peer, until
from test_route_server_policy import RS_AS, announce, block, fields, received, std

P = "10.7.0.0/24"
CLIENTS = {1: (65001, "192.0.2.1"), 2: (65002, "192.0.2.2"), 3: (65003, "192.0.2.3"), 4: (65004, "192.0.2.4")}


def world(rib_impl, hiding=True):
    """Four clients, one update group each (Euro-IX on: groups per AS)."""
    table = AttrTable()
    rib = rib_impl.Rib(AFI_IPV4, table)
    engine = PolicyEngine({})
    engine.route_server = RouteServerPolicy(euro_ix=True)
    chain = engine.chain([], "export", "accept")
    ranker = PathRanker(rib)

    def ranker_of(_fam):
        ranker.begin()
        return ranker

    sources, groups = {}, {}
    ctx = codec.Context(as4=True)
    for pid, (asn, address) in CLIENTS.items():
        rib.add_peer(pid, asn, RS_AS, pid, address, ibgp=False)
        sources[pid] = Source(pid, RS, peer_as=asn, address=address)
        pctx = PolicyContext(address, asn, RS_AS, local_address="192.0.2.254")
        g = UpdateGroup(("g", pid), IPV4_UNICAST, ctx, engine, chain, pctx, RS, False, RS_AS,
                        bytes([192, 0, 2, 254]), None)
        g.members[pid] = object()  # the member's pid: split horizon and path hiding look at it
        if hiding:
            g.hiding = PathHiding(ranker_of, lambda aid: tag_source(table, aid))
        groups[pid] = g
    return table, rib, sources, groups


def entry(text):
    net = ipaddress.ip_network(text)
    return bytes((net.prefixlen,)) + net.network_address.packed[: (net.prefixlen + 7) >> 3]


def withdraw(rib, pid, prefixes):
    packed = codec.pack_prefixes([(0, ipaddress.ip_network(p).network_address.packed,
                                   ipaddress.ip_network(p).prefixlen) for p in prefixes])
    return rib.withdraw(pid, packed, False)


def out_of(g, cs, table, sources):
    return received(g.process(Delta.from_changeset(IPV4_UNICAST, cs, table), sources).common)


def dump(table, rib, sources, g, pid):
    """A member's full table as the exporter builds it for a hiding group
    (the member's own best prefixes included, see Exporter.table_delta)."""
    items = []
    for aid, packed in rib.dump_best(exclude_peer=None if g.hiding is not None else pid):
        spid, attrs, nh = tag_source(table, aid)
        items.append((spid, attrs, nh, packed))
    return received(g.process(Delta(IPV4_UNICAST, items, b"", dump=True), sources, single=True,
                              exclude=pid).common)[0]


def test_rejected_best_replaced_by_best_passing_path(rib_impl):
    table, rib, sources, groups = world(rib_impl)
    g3 = groups[3]
    # Client 2's path first (then best), then client 1's shorter one, which
    # asks not to be announced to 65003.
    cs = announce(table, rib, 2, [P], block(path=(65002, 65100), nh="192.0.2.2"))
    got, _gone = out_of(g3, cs, table, sources)
    assert fields(got[P])[3] == "192.0.2.2"
    cs = announce(table, rib, 1, [P], block(path=(65001,), nh="192.0.2.1", communities=(std(0, 65003),)))
    assert rib.best_path(ipaddress.ip_network(P))[0] == 1
    got, gone = out_of(g3, cs, table, sources)
    # 65003 keeps client 2's path (re-sent, not withdrawn); 65004 gets the best.
    assert fields(got[P])[3] == "192.0.2.2" and gone == []
    assert g3.hiding.chosen == {entry(P): 2 << 32}
    got4, _ = out_of(groups[4], cs, table, sources)
    assert fields(got4[P])[3] == "192.0.2.1" and not fields(got4[P])[1]
    assert groups[4].hiding.chosen == {}
    # The hidden path is withdrawn: the Loc-RIB best does not change, the
    # exporter's hiding_touch chooses again -> a withdrawal for 65003.
    cs = withdraw(rib, 2, [P])
    assert not cs
    got, gone = received(g3.rehide([entry(P)], sources).common)
    assert got == {} and gone == [P] and g3.hiding.chosen == {}
    # Back again: chosen again.
    announce(table, rib, 2, [P], block(path=(65002, 65100), nh="192.0.2.2"))
    got, gone = received(g3.rehide([entry(P)], sources).common)
    assert fields(got[P])[3] == "192.0.2.2" and g3.hiding.chosen == {entry(P): 2 << 32}
    # Client 1 drops the tag: its path (the best) passes, the choice is forgotten.
    cs = announce(table, rib, 1, [P], block(path=(65001,), nh="192.0.2.1"))
    got, gone = out_of(g3, cs, table, sources)
    assert fields(got[P])[3] == "192.0.2.1" and g3.hiding.chosen == {}


def test_no_passing_path_withdraws_and_without_hiding_nothing_is_chosen(rib_impl):
    for hiding in (True, False):
        table, rib, sources, groups = world(rib_impl, hiding)
        g3 = groups[3]
        cs = announce(table, rib, 2, [P], block(path=(65002, 65100), nh="192.0.2.2"))
        out_of(g3, cs, table, sources)
        cs = announce(table, rib, 1, [P], block(path=(65001,), nh="192.0.2.1", communities=(std(0, 65003),)))
        got, gone = out_of(g3, cs, table, sources)
        if hiding:
            assert set(got) == {P} and gone == []
        else:
            assert got == {} and gone == [P]  # RFC 7947 §2.3: the path is hidden
        # Client 2's path is tagged too: no path passes -> withdrawn.
        cs = announce(table, rib, 2, [P], block(path=(65002, 65100), nh="192.0.2.2",
                                                 communities=(std(0, 65003),)))
        assert not cs  # not the best: no Loc-RIB change
        if hiding:
            got, gone = received(g3.rehide([entry(P)], sources).common)
            assert got == {} and gone == [P] and g3.hiding.chosen == {}


def test_dump_chooses_per_prefix_and_own_path_is_replaced(rib_impl):
    table, rib, sources, groups = world(rib_impl)
    many = ["10.8.%d.0/24" % i for i in range(200)]
    announce(table, rib, 1, many[:20], block(path=(65001,), nh="192.0.2.1", communities=(std(0, 65003),)))
    announce(table, rib, 1, many[20:], block(path=(65001,), nh="192.0.2.1"))
    announce(table, rib, 2, many[:10], block(path=(65002, 65100), nh="192.0.2.2"))
    announce(table, rib, 2, [P], block(path=(65002,), nh="192.0.2.2"))
    got3 = dump(table, rib, sources, groups[3], 3)
    # 10 tagged prefixes have client 2's path, 10 have none; P is 2's.
    assert set(got3) == set(many[:10]) | set(many[20:]) | {P}
    assert {fields(got3[p])[3] for p in many[:10]} == {"192.0.2.2"}
    assert len(groups[3].hiding.chosen) == 10  # only the prefixes with a non-best path
    # Client 1's own best paths: it gets client 2's where there is one
    # (BIRD's `secondary` does the same), and nothing else of its own.
    got1 = dump(table, rib, sources, groups[1], 1)
    assert set(got1) == set(many[:10]) | {P}
    assert {fields(got1[p])[3] for p in got1} == {"192.0.2.2"}
    # Client 2 gets every prefix of client 1 but the tagged ones it also has...
    got2 = dump(table, rib, sources, groups[2], 2)
    assert set(got2) == set(many)  # its own P is its only path: not sent
    assert {fields(got2[p])[3] for p in many} == {"192.0.2.1"}


def test_config_path_hiding_switch():
    base = '[global]\nasn = 64500\nrouter-id = "192.0.2.254"\n'
    assert load_config(base).global_.route_server.path_hiding is True
    assert load_config(base + "[global.route-server]\npath-hiding = false\n").global_.route_server.path_hiding is False


# ----------------------------------------------------------------------------- a daemon with clients


def test_daemon_path_hiding(run):
    async def main():
        a_addr, b_addr, c_addr = addr(), addr(), addr()
        rs = {"route-server-client": True}
        dut = DUT(asn=RS_AS, glob="[global.route-server]\neuro-ix-communities = true\n", neighbors=[
            neighbor_toml(a_addr, 65001, **rs), neighbor_toml(b_addr, 65002, **rs),
            neighbor_toml(c_addr, 65003, **rs)])
        d = await dut.start()
        a, na = await peer(dut, 65001, a_addr)
        b, nb = await peer(dut, 65002, b_addr)
        c, nc = await peer(dut, 65003, c_addr)
        for n in (na, nb, nc):
            await n.wait_established(5)
        q = "10.90.1.0/24"
        b.announce([P, q], as_path=(65100,))
        await until(lambda: set(nc.received()) == {P, q}, what="C has B's paths")
        a.announce([P, q], communities=["0:65003"])  # shorter path: best, not to 65003
        await until(lambda: len(d.rib("ipv4-unicast")) == 2 and set(nb.received()) == {P, q},
                    what="B has A's paths")
        assert nb.received()[P].next_hop == a_addr
        await until(lambda: all(r.next_hop == b_addr for r in nc.received().values()), what="C keeps B's")
        assert set(nc.received()) == {P, q}
        # A's own best paths: A gets B's (split horizon hides them otherwise).
        await until(lambda: set(na.received()) == {P, q} and all(r.next_hop == b_addr
                                                               for r in na.received().values()), what="A gets B's")
        # The hidden path is withdrawn: C gets a withdrawal (the best is unchanged).
        b.withdraw([P])
        await until(lambda: set(nc.received()) == {q}, what="C's P withdrawn")
        # A's best drops the tag for q: C gets A's path.
        a.announce([q])
        await until(lambda: nc.received().get(q) is not None and nc.received()[q].next_hop == a_addr,
                    what="C gets A's q")
        # B announces P again (not the best): C gets it.
        b.announce([P], as_path=(65100,))
        await until(lambda: nc.received().get(P) is not None and nc.received()[P].next_hop == b_addr,
                    what="C gets B's P again")
        # B goes down: its hidden path goes with it.
        await b.stop()
        await until(lambda: set(nc.received()) == {q}, what="C's P withdrawn with B")
        for s in (a, c):
            await s.stop()
        await dut.stop()

    run(main())


def test_daemon_path_hiding_off(run):
    async def main():
        a_addr, b_addr, c_addr = addr(), addr(), addr()
        rs = {"route-server-client": True}
        dut = DUT(asn=RS_AS, glob="[global.route-server]\neuro-ix-communities = true\npath-hiding = false\n",
                  neighbors=[neighbor_toml(a_addr, 65001, **rs), neighbor_toml(b_addr, 65002, **rs),
                             neighbor_toml(c_addr, 65003, **rs)])
        d = await dut.start()
        a, na = await peer(dut, 65001, a_addr)
        b, nb = await peer(dut, 65002, b_addr)
        c, nc = await peer(dut, 65003, c_addr)
        for n in (na, nb, nc):
            await n.wait_established(5)
        b.announce([P], as_path=(65100,))
        await until(lambda: set(nc.received()) == {P}, what="C has B's path")
        a.announce([P], communities=["0:65003"])
        await until(lambda: set(nb.received()) == {P} and nc.received() == {}, what="P hidden from C")
        assert len(d.rib("ipv4-unicast")) == 1
        for s in (a, b, c):
            await s.stop()
        await dut.stop()

    run(main())


def test_daemon_own_best_first_then_alternative(run):
    """The member's own path arrives first (new to the Loc-RIB), the
    alternative later as a non-best path: the member gets the alternative."""
    async def main():
        a_addr, b_addr = addr(), addr()
        rs = {"route-server-client": True}
        dut = DUT(asn=RS_AS, glob="[global.route-server]\neuro-ix-communities = true\n", neighbors=[
            neighbor_toml(a_addr, 65001, **rs), neighbor_toml(b_addr, 65002, **rs)])
        await dut.start()
        a, na = await peer(dut, 65001, a_addr)
        b, nb = await peer(dut, 65002, b_addr)
        for n in (na, nb):
            await n.wait_established(5)
        a.announce([P])
        await until(lambda: set(nb.received()) == {P}, what="B has A's path")
        b.announce([P], as_path=(65100,))
        await until(lambda: set(na.received()) == {P} and na.received()[P].next_hop == b_addr, what="A gets B's")
        b.withdraw([P])
        await until(lambda: na.received() == {}, what="A's alternative withdrawn")
        for s in (a, b):
            await s.stop()
        await dut.stop()

    run(main())


def test_third_path_when_two_are_rejected(rib_impl):
    """Ranking beyond the second path (the scratch RIB of PathRanker)."""
    table, rib, sources, groups = world(rib_impl)
    g3 = groups[3]
    tag = (std(0, 65003),)
    announce(table, rib, 4, [P], block(path=(65004, 65100, 65100), nh="192.0.2.4"))
    announce(table, rib, 2, [P], block(path=(65002, 65100), nh="192.0.2.2", communities=tag))
    cs = announce(table, rib, 1, [P], block(path=(65001,), nh="192.0.2.1", communities=tag))
    got, gone = out_of(g3, cs, table, sources)
    assert fields(got[P])[3] == "192.0.2.4" and gone == [] and g3.hiding.chosen == {entry(P): 4 << 32}
    # Client 2 drops the tag: the second path now passes and is chosen.
    announce(table, rib, 2, [P], block(path=(65002, 65100), nh="192.0.2.2"))
    got, _gone = received(g3.rehide([entry(P)], sources).common)
    assert fields(got[P])[3] == "192.0.2.2" and g3.hiding.chosen == {entry(P): 2 << 32}
    # The scratch RIB is left empty and the attribute table consistent.
    assert g3.hiding.ranker_of(IPV4_UNICAST).scratch.path_count() == 0
    assert rib.path_count() == 3


def test_reload_switches_path_hiding(tmp_path, run):
    """``path-hiding`` changed by a reload: the clients' tables are re-sent
    (off: C loses the path it had instead of the hidden best; on again: C
    gets it back)."""
    async def main():
        a_addr, b_addr, c_addr = addr(), addr(), addr()
        rs = {"route-server-client": True}
        glob = "[global.route-server]\neuro-ix-communities = true\n"
        dut = DUT(asn=RS_AS, path=tmp_path / "fastbgp.toml", glob=glob, neighbors=[
            neighbor_toml(a_addr, 65001, **rs), neighbor_toml(b_addr, 65002, **rs),
            neighbor_toml(c_addr, 65003, **rs)])
        d = await dut.start()
        a, na = await peer(dut, 65001, a_addr)
        b, nb = await peer(dut, 65002, b_addr)
        c, nc = await peer(dut, 65003, c_addr)
        for n in (na, nb, nc):
            await n.wait_established(5)
        b.announce([P], as_path=(65100,))
        a.announce([P], communities=["0:65003"])
        await until(lambda: set(nb.received()) == {P} and nb.received()[P].next_hop == a_addr, what="B has A's")
        await until(lambda: set(nc.received()) == {P} and nc.received()[P].next_hop == b_addr, what="C has B's")
        dut.glob = glob + "path-hiding = false\n"
        dut.path.write_text(dut.text())
        await d.reload()
        await until(lambda: nc.received() == {}, what="C's P withdrawn with path hiding off")
        dut.glob = glob
        dut.path.write_text(dut.text())
        await d.reload()
        await until(lambda: set(nc.received()) == {P} and nc.received()[P].next_hop == b_addr, what="C has B's again")
        assert nc.counters.established_count == 1
        for s in (a, b, c):
            await s.stop()
        await dut.stop()

    run(main())


def test_group_of_several_members(rib_impl):
    """A group of two members (two sessions of one AS): a rejected best is
    replaced for both; a best that is one member's own keeps the by-source
    split horizon (the other member gets it, the source a withdrawal)."""
    table, rib, sources, groups = world(rib_impl)
    g = groups[3]
    g.members[4] = object()  # client 4's session shares client 3's group
    q = "10.7.1.0/24"
    announce(table, rib, 2, [P, q], block(path=(65002, 65100), nh="192.0.2.2"))
    cs = announce(table, rib, 1, [P], block(path=(65001,), nh="192.0.2.1", communities=(std(0, 65003),)))
    out = g.process(Delta.from_changeset(IPV4_UNICAST, cs, table), sources)
    got, gone = received(out.common)
    assert fields(got[P])[3] == "192.0.2.2" and gone == [] and not out.by_src
    cs = announce(table, rib, 3, [q], block(path=(65003,), nh="192.0.2.3"))
    out = g.process(Delta.from_changeset(IPV4_UNICAST, cs, table), sources)
    assert received(out.common) == ({}, [])
    assert set(received(out.by_src[3])[0]) == {q} and received(out.echo[3])[1] == [q]
    # A dump for member 3 alone: its own best is not sent back, the rest is.
    got3 = received(g.process(Delta(IPV4_UNICAST, [(sp, a, n, pk) for sp, a, n, pk in
                                                    ((*tag_source(table, aid), packed) for aid, packed in
                                                     rib.dump_best(exclude_peer=3))], b"", dump=True),
                              sources, single=True, exclude=3).common)[0]
    assert set(got3) == {P} and fields(got3[P])[3] == "192.0.2.2"


def test_daemon_prefix_dependent_export_policy(run):
    """C's export policy rejects A's routes for one prefix only (a chain
    that looks at the prefix): C gets B's path for that prefix, A's for the
    other -- with A's paths first in the RIB and B's arriving as non-best."""
    policy = """
[[defined-sets.prefix-sets]]
name = "p91"
prefixes = ["10.91.0.0/24"]
[[defined-sets.as-path-sets]]
name = "via-a"
as-paths = ["^65001$"]

[[policies]]
name = "to-c"
[[policies.statements]]
conditions = { prefix-set = "p91", as-path-set = "via-a" }
actions = { result = "reject" }
[[policies.statements]]
actions = { result = "accept" }
"""

    async def main():
        a_addr, b_addr, c_addr = addr(), addr(), addr()
        rs = {"route-server-client": True}
        dut = DUT(asn=RS_AS, extra=policy, neighbors=[
            neighbor_toml(a_addr, 65001, **rs), neighbor_toml(b_addr, 65002, **rs),
            neighbor_toml(c_addr, 65003, **rs, **{"export-policy": ["to-c"]})])
        await dut.start()
        a, na = await peer(dut, 65001, a_addr)
        b, nb = await peer(dut, 65002, b_addr)
        c, nc = await peer(dut, 65003, c_addr)
        for n in (na, nb, nc):
            await n.wait_established(5)
        both = ["10.91.0.0/24", "10.91.1.0/24"]
        a.announce(both)
        await until(lambda: set(nc.received()) == {"10.91.1.0/24"}, what="C has A's 10.91.1.0/24 only")
        b.announce(both, as_path=(65100,))
        await until(lambda: set(nc.received()) == set(both) and nc.received()["10.91.0.0/24"].next_hop == b_addr,
                    what="C gets B's 10.91.0.0/24")
        assert nc.received()["10.91.1.0/24"].next_hop == a_addr
        b.withdraw(both)
        await until(lambda: set(nc.received()) == {"10.91.1.0/24"}, what="B's withdrawn from C")
        for s in (a, b, c):
            await s.stop()
        await dut.stop()

    run(main())
