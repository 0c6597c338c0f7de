"""IXP route-server policy (fastbgp.rib.route_server): Euro-IX BGP
communities, RFC 7999 blackhole, the next-hop check and per-client prefix
limits -- the decision table, the export path through the RIB (both RIB
implementations) and update groups, and a daemon with library clients."""

import ipaddress
import logging
import struct

import pytest
from prometheus_client import generate_latest

from fastbgp.config.checks import load_config
from fastbgp.control import metrics
from fastbgp.config.errors import ConfigError
from fastbgp.rib import AttrTable
from fastbgp.rib.export import RS, Delta, Source, UpdateGroup, source_tag, tag_source
from fastbgp.rib.policy import PolicyContext, PolicyEngine, compile_policies
from fastbgp.rib.route_server import RouteServerPolicy, allowed_next_hops
from fastbgp.wire import codec
from fastbgp.wire.as4 import decode_segments, encode_attr, encode_segments, split_attrs
from fastbgp.wire.constants import (
    AFI_IPV4,
    AS_SEQUENCE,
    ATTR_AS_PATH,
    ATTR_COMMUNITIES,
    ATTR_LARGE_COMMUNITY,
    ATTR_NEXT_HOP,
    COMMUNITY_BLACKHOLE,
    COMMUNITY_NO_EXPORT,
    IPV4_UNICAST,
)

from test_daemon import DUT, addr, neighbor_toml, peer, until

RS_AS = 64500


def std(a, b):
    return (a << 16) | b


def block(path=(65001,), nh="192.0.2.1", communities=(), large=()):
    """A canonical attribute block (ORIGIN, AS_PATH, NEXT_HOP, communities)."""
    out = encode_attr(0x40, 1, b"\x00")
    out += encode_attr(0x40, 2, encode_segments([(AS_SEQUENCE, list(path))], 4) if path else b"")
    if nh:
        out += encode_attr(0x40, 3, ipaddress.IPv4Address(nh).packed)
    if communities:
        out += encode_attr(0xC0, 8, struct.pack(">%dI" % len(communities), *communities))
    if large:
        out += encode_attr(0xC0, 32, b"".join(struct.pack(">III", *c) for c in large))
    return out


def fields(attrs):
    """(AS path list, communities set, large set, next hop text) of a block."""
    items = {t: v for _f, t, v in split_attrs(attrs)}
    path = [a for _st, asns in decode_segments(items.get(ATTR_AS_PATH, b""), 4) for a in asns]
    cv = items.get(ATTR_COMMUNITIES, b"")
    lv = items.get(ATTR_LARGE_COMMUNITY, b"")
    comms = set(struct.unpack(">%dI" % (len(cv) // 4), cv))
    large = {struct.unpack_from(">III", lv, i) for i in range(0, len(lv), 12)}
    nh = items.get(ATTR_NEXT_HOP)
    return path, comms, large, (str(ipaddress.IPv4Address(nh)) if nh else None)


# ----------------------------------------------------------------------------- decision table

EURO_IX_CASES = [
    # (communities, large, peer-as -> prepends or None)
    ((), (), 65002, 0),
    ((std(0, 65002),), (), 65002, None),  # 0:peer-as: not to 65002
    ((std(0, 65002),), (), 65003, 0),
    ((std(RS_AS, 65002),), (), 65002, 0),  # rs-as:peer-as: only to 65002
    ((std(RS_AS, 65002),), (), 65003, None),
    ((std(0, RS_AS),), (), 65002, None),  # 0:rs-as: to nobody
    ((std(0, RS_AS), std(RS_AS, 65003)), (), 65003, 0),  # ... except the listed
    ((std(0, RS_AS), std(RS_AS, 65003)), (), 65002, None),
    ((std(0, 65002), std(RS_AS, 65002)), (), 65002, None),  # do-not wins
    ((), ((RS_AS, 0, 65002),), 65002, None),  # large equivalents
    ((), ((RS_AS, 0, 65002),), 65003, 0),
    ((), ((RS_AS, 1, 4200000001),), 4200000001, 0),  # 32-bit client AS: large only
    ((), ((RS_AS, 1, 4200000001),), 65002, None),
    ((), ((RS_AS, 0, 0),), 65002, None),
    ((), ((RS_AS, 0, 0), (RS_AS, 1, 65002)), 65002, 0),
    ((), ((64999, 0, 65002),), 65002, 0),  # another RS's large community: not ours
    ((std(65501, 65002),), (), 65002, 1),  # prepends
    ((std(65502, 65002),), (), 65002, 2),
    ((std(65503, 65002), std(65501, 65002)), (), 65002, 3),
    ((std(65502, 65002),), (), 65003, 0),
    ((std(65501, 0),), (), 65003, 1),  # peer-as 0: every client
    ((), ((RS_AS, 102, 65002),), 65002, 2),
    ((), ((RS_AS, 103, 0),), 65009, 3),
]


@pytest.mark.parametrize("comms,large,peer_as,want", EURO_IX_CASES)
def test_euro_ix_decision(comms, large, peer_as, want):
    p = RouteServerPolicy(euro_ix=True)
    assert p.decide(set(comms), set(large), peer_as, RS_AS) == want


def test_finish_strips_control_communities_and_prepends_first_as():
    p = RouteServerPolicy(euro_ix=True)
    keep = std(65001, 100)
    attrs = block(path=(65001, 65100), communities=(std(0, 65009), std(65502, 65002), keep, std(RS_AS, 65002)),
                  large=((RS_AS, 0, 65009), (RS_AS, 102, 65002), (65001, 7, 7)))
    out, nh = p.finish(attrs, b"", 65002, RS_AS, True)
    path, comms, large, _nh = fields(out)
    assert path == [65001, 65001, 65001, 65100]
    assert comms == {keep} and large == {(65001, 7, 7)}
    # Nothing to do: the very same object comes back.
    plain = block(communities=(keep,))
    assert p.finish(plain, b"", 65002, RS_AS, True)[0] is plain
    # Only control communities: the attributes go entirely.
    only = block(communities=(std(0, 65009),), large=((RS_AS, 0, 65009),))
    out, _ = p.finish(only, b"", 65002, RS_AS, True)
    assert {t for _f, t, _v in split_attrs(out)} == {1, 2, 3}


def test_blackhole_no_export_and_next_hop():
    p = RouteServerPolicy(blackhole=True, blackhole_nh4="192.0.2.66", blackhole_nh6="2001:db8::66")
    attrs = block(communities=(COMMUNITY_BLACKHOLE,))
    out, nh = p.finish(attrs, b"", 65002, RS_AS, True)
    _path, comms, _l, hop = fields(out)
    assert comms == {COMMUNITY_BLACKHOLE, COMMUNITY_NO_EXPORT} and hop == "192.0.2.66"  # RFC 7999 §3.2
    out6, nh6 = p.finish(block(nh=None, communities=(COMMUNITY_BLACKHOLE,)), b"\x20" + b"\x01" * 15, 65002, RS_AS,
                         False)
    assert nh6 == ipaddress.IPv6Address("2001:db8::66").packed
    q = RouteServerPolicy(blackhole=True, blackhole_no_export=False)
    out, _ = q.finish(attrs, b"", 65002, RS_AS, True)
    assert fields(out)[1] == {COMMUNITY_BLACKHOLE} and fields(out)[3] == "192.0.2.1"
    # Blackhole handling off: the route is just a route.
    assert RouteServerPolicy(euro_ix=True).finish(attrs, b"", 65002, RS_AS, True)[0] == attrs


def test_next_hop_check_logs_once_and_counts(caplog):
    p = RouteServerPolicy(next_hop_check=True, blackhole=True, blackhole_nh4="192.0.2.66")
    own = allowed_next_hops("192.0.2.1", ["192.0.2.11"])
    with caplog.at_level(logging.WARNING, logger="fastbgp.route_server"):
        assert p.import_check("192.0.2.1", own, block(nh="192.0.2.1"), b"")
        assert p.import_check("192.0.2.1", own, block(nh="192.0.2.11"), b"")
        assert not p.import_check("192.0.2.1", own, block(nh="192.0.2.9"), b"")
        assert not p.import_check("192.0.2.1", own, block(nh="192.0.2.8"), b"")
        # The IXP's blackhole next hop, on a blackhole route only.
        assert p.import_check("192.0.2.1", own, block(nh="192.0.2.66", communities=(COMMUNITY_BLACKHOLE,)), b"")
        assert not p.import_check("192.0.2.1", own, block(nh="192.0.2.66"), b"")
        v6own = allowed_next_hops("2001:db8::1")
        mp = ipaddress.IPv6Address("2001:db8::1").packed + ipaddress.IPv6Address("fe80::1").packed
        assert p.import_check("2001:db8::1", v6own, block(nh=None), mp)
        assert not p.import_check("2001:db8::1", v6own, block(nh=None), ipaddress.IPv6Address("2001:db8::9").packed)
        # IPv4 NLRI in MP_REACH_NLRI: its next hop is the one checked.
        assert p.import_check("192.0.2.1", own, block(nh=None), bytes([192, 0, 2, 1]))
    warnings = [r for r in caplog.records if "next-hop-check" in r.getMessage()]
    # Once per client.
    assert [w.getMessage().split(":")[0] for w in warnings] == ["192.0.2.1", "2001"]
    assert "192.0.2.9" in warnings[0].getMessage()
    assert p.next_hop_rejected == {"192.0.2.1": 3, "2001:db8::1": 1}
    assert RouteServerPolicy().import_check("x", frozenset(), block(nh="192.0.2.9"), b"")


# ----------------------------------------------------------------------------- configuration

GLOBAL = '[global]\nasn = %d\nrouter-id = "192.0.2.254"\n' % RS_AS


def test_config_route_server_section():
    cfg = load_config(GLOBAL + """
[global.route-server]
euro-ix-communities = true
blackhole = true
blackhole-next-hop-ipv4 = "192.0.2.66"
next-hop-check = true

[[neighbors]]
address = "192.0.2.1"
peer-as = 65001
route-server-client = true
route-server-next-hops = ["192.0.2.11"]
""")
    rs = cfg.global_.route_server
    assert rs.euro_ix_communities and rs.blackhole and rs.next_hop_check and rs.blackhole_no_export
    assert cfg.neighbors[0].route_server_next_hops == ["192.0.2.11"]
    engine = compile_policies(cfg)
    assert engine.route_server.euro_ix and engine.route_server.blackhole_nh4 == bytes([192, 0, 2, 66])
    assert compile_policies(load_config(GLOBAL)).route_server is None
    for bad in ('blackhole-next-hop-ipv4 = "2001:db8::1"', 'blackhole-next-hop-ipv6 = "nonsense"',
                "euro-ix = true", 'blackhole = "yes"'):
        with pytest.raises(ConfigError):
            load_config(GLOBAL + "[global.route-server]\n" + bad + "\n")
    with pytest.raises(ConfigError):
        load_config(GLOBAL + '[[neighbors]]\naddress = "192.0.2.1"\npeer-as = 65001\n'
                    'route-server-next-hops = ["not-an-address"]\n')


# ----------------------------------------------------------------------------- through the RIB

CLIENTS = {1: (65001, "192.0.2.1"), 2: (65002, "192.0.2.2"), 3: (65003, "192.0.2.3")}


class CountingPolicy(RouteServerPolicy):
    """The real policy, counting its per-attribute-set evaluations."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.calls = 0

    def finish(self, *args):
        self.calls += 1
        return super().finish(*args)


def rs_world(rib_impl, policy):
    table = AttrTable()
    rib = rib_impl.Rib(AFI_IPV4, table)
    engine = PolicyEngine({})
    engine.route_server = policy
    chain = engine.chain([], "export", "accept")
    sources, groups = {}, {}
    ctx = codec.Context(as4=True)
    for pid, (asn, address) in CLIENTS.items():
        rib.add_peer(pid, asn, RS_AS, pid, address, ibgp=False)
        sources[pid] = Source(pid, RS, peer_as=asn, address=address)
        pctx = PolicyContext(address, asn, RS_AS, local_address="192.0.2.254")
        groups[pid] = UpdateGroup(("g", pid), IPV4_UNICAST, ctx, engine, chain, pctx, RS, False, RS_AS,
                                  bytes([192, 0, 2, 254]), None)
    return table, rib, sources, groups


def announce(table, rib, pid, prefixes, attrs):
    packed = codec.pack_prefixes([(0, ipaddress.ip_network(p).network_address.packed, ipaddress.ip_network(p).prefixlen)
                                  for p in prefixes])
    aid = table.intern(attrs, source_tag(pid))
    try:
        return rib.update(pid, packed, False, aid)
    finally:
        table.release(aid)


def received(msgs):
    """{prefix: attrs} announced and [prefixes] withdrawn in UPDATE messages."""
    got, gone = {}, []
    for m in msgs:
        u = codec.parse_update(m[19:], codec.Context(as4=True))
        for _pid, a, plen in codec.unpack_prefixes(u.nlri, AFI_IPV4):
            got["%s/%d" % (ipaddress.IPv4Address(a.ljust(4, b"\0")), plen)] = u.attrs
        for _pid, a, plen in codec.unpack_prefixes(u.withdrawn, AFI_IPV4):
            gone.append("%s/%d" % (ipaddress.IPv4Address(a.ljust(4, b"\0")), plen))
    return got, gone


def dump_for(table, rib, sources, group, pid):
    items = []
    for aid, packed in rib.dump_best(exclude_peer=pid):
        spid, attrs, nh = tag_source(table, aid)
        items.append((spid, attrs, nh, packed))
    return received(group.process(Delta(IPV4_UNICAST, items, b"", dump=True), sources, single=True).common)[0]


def test_euro_ix_through_rib_and_update_groups(rib_impl):
    policy = CountingPolicy(euro_ix=True)
    table, rib, sources, groups = rs_world(rib_impl, policy)
    everyone = ["10.1.%d.%d/32" % (i // 100, i % 100) for i in range(300)]
    announce(table, rib, 1, everyone, block(path=(65001,), nh="192.0.2.1"))
    announce(table, rib, 1, ["10.2.0.0/24", "10.2.1.0/24"],
             block(path=(65001,), nh="192.0.2.1", communities=(std(0, 65002), std(65501, 65003))))
    announce(table, rib, 1, ["10.3.0.0/24"], block(path=(65001,), communities=(std(RS_AS, 65002),)))
    announce(table, rib, 1, ["10.4.0.0/24"], block(path=(65001,), large=((RS_AS, 0, 0),)))
    announce(table, rib, 1, ["10.5.0.0/24"], block(path=(65001,), large=((RS_AS, 103, 65002),)))
    to2 = dump_for(table, rib, sources, groups[2], 2)
    to3 = dump_for(table, rib, sources, groups[3], 3)
    assert set(to2) == set(everyone) | {"10.3.0.0/24", "10.5.0.0/24"}
    assert set(to3) == set(everyone) | {"10.2.0.0/24", "10.2.1.0/24", "10.5.0.0/24"}
    assert fields(to2["10.5.0.0/24"])[0] == [65001] * 4 and fields(to3["10.5.0.0/24"])[0] == [65001]
    assert fields(to3["10.2.0.0/24"])[0] == [65001, 65001]
    for got in (to2, to3):
        for attrs in got.values():
            _path, comms, large, hop = fields(attrs)
            assert not comms and not large and hop == "192.0.2.1"  # stripped; next hop kept (RFC 7947)
    # Once per attribute set and group, never per prefix (305 prefixes).
    assert policy.calls == 2 * 5
    dump_for(table, rib, sources, groups[2], 2)
    assert policy.calls == 10  # cached


def test_euro_ix_change_withdraws_from_excluded_client(rib_impl):
    table, rib, sources, groups = rs_world(rib_impl, RouteServerPolicy(euro_ix=True))
    cs = announce(table, rib, 1, ["10.9.0.0/24"], block())
    d = Delta.from_changeset(IPV4_UNICAST, cs, table)
    assert "10.9.0.0/24" in received(groups[2].process(d, sources).common)[0]
    # The client now asks the RS not to announce it to 65002: 65002 gets a
    # withdrawal, 65003 the (stripped) route.
    cs = announce(table, rib, 1, ["10.9.0.0/24"], block(communities=(std(0, 65002),)))
    d = Delta.from_changeset(IPV4_UNICAST, cs, table)
    got2, gone2 = received(groups[2].process(d, sources).common)
    got3, gone3 = received(groups[3].process(d, sources).common)
    assert gone2 == ["10.9.0.0/24"] and not got2
    assert "10.9.0.0/24" in got3 and not fields(got3["10.9.0.0/24"])[1]


def test_blackhole_through_rib(rib_impl):
    table, rib, sources, groups = rs_world(rib_impl, RouteServerPolicy(blackhole=True, blackhole_nh4="192.0.2.66"))
    announce(table, rib, 1, ["203.0.113.7/32"], block(communities=(COMMUNITY_BLACKHOLE,)))
    announce(table, rib, 1, ["203.0.113.0/24"], block())
    got = dump_for(table, rib, sources, groups[2], 2)
    assert set(got) == {"203.0.113.7/32", "203.0.113.0/24"}
    _p, comms, _l, hop = fields(got["203.0.113.7/32"])
    assert comms == {COMMUNITY_BLACKHOLE, COMMUNITY_NO_EXPORT} and hop == "192.0.2.66"
    assert fields(got["203.0.113.0/24"])[3] == "192.0.2.1"


# ----------------------------------------------------------------------------- a daemon with clients

RS_GLOBAL = """
[global.route-server]
euro-ix-communities = true
blackhole = true
blackhole-next-hop-ipv4 = "192.0.2.66"
next-hop-check = true
"""


def test_daemon_route_server_policy(run, caplog):
    async def main():
        a_addr, b_addr, c_addr = addr(), addr(), addr()
        rs = {"route-server-client": True}
        lim = {"prefix-limit": {"ipv4-unicast": {"max": 20}}}
        dut = DUT(asn=RS_AS, glob=RS_GLOBAL, neighbors=[
            neighbor_toml(a_addr, 65001, **rs, **lim), neighbor_toml(b_addr, 65002, **rs),
            neighbor_toml(c_addr, 65003, **rs)])
        d = await dut.start()
        a, na = await peer(dut, 65001, a_addr, idle_hold_time=5.0)
        b, nb = await peer(dut, 65002, b_addr)
        c, nc = await peer(dut, 65003, c_addr)
        for n in (na, nb, nc):
            await n.wait_established(5)
        a.announce(["10.80.0.0/24"])
        a.announce(["10.80.1.0/24"], communities=["0:65002", "65502:65003", "65001:9"])
        a.announce(["10.80.2.0/24"], large_communities=["%d:1:65002" % RS_AS])
        a.announce(["10.80.3.0/24"], communities=["0:%d" % RS_AS])
        a.announce(["198.51.100.9/32"], communities=["blackhole"])
        with caplog.at_level(logging.WARNING, logger="fastbgp.route_server"):
            a.announce(["10.80.4.0/24", "10.80.5.0/24"], next_hop=c_addr)  # not A's address
            a.announce(["10.80.6.0/24"], next_hop=b_addr)
            await until(lambda: len(d.rib("ipv4-unicast")) == 5, what="5 routes in the RS")
            await until(lambda: set(nc.received()) == {"10.80.0.0/24", "10.80.1.0/24", "198.51.100.9/32"},
                        what="C's set")
            await until(lambda: set(nb.received()) == {"10.80.0.0/24", "10.80.2.0/24", "198.51.100.9/32"},
                        what="B's set")
        r = nc.received()["10.80.1.0/24"]
        assert r.as_path == [65001, 65001, 65001] and r.communities == ["65001:9"] and r.next_hop == a_addr
        assert nb.received()["10.80.2.0/24"].large_communities == []
        bh = nb.received()["198.51.100.9/32"]
        assert set(bh.communities) == {"blackhole", "no-export"} and bh.next_hop == "192.0.2.66"
        assert d.engine.route_server.next_hop_rejected == {a_addr: 2}
        assert len([r for r in caplog.records if "next-hop-check" in r.getMessage()]) == 1
        # Visible: the API's neighbour counters (`fastbgp neighbor`) and /metrics.
        assert [d.neighbor(x).counters.rs_next_hop_rejected for x in (a_addr, b_addr)] == [2, 0]
        text = generate_latest(metrics.make_registry(d, process=False)).decode()
        assert 'fastbgp_route_server_next_hop_rejected_total{neighbor="%s"} 2.0' % a_addr in text
        assert 'fastbgp_route_server_next_hop_rejected_total{neighbor="%s"} 0.0' % b_addr in text
        # Per-client max-prefix holds for a route-server client too (RFC 4486 Cease 6/1).
        a.announce(["10.81.%d.0/24" % i for i in range(20)])
        await until(lambda: na.last_notification_received is not None, what="Cease 6/1")
        n = na.last_notification_received
        assert (n.code, n.subcode) == (6, 1)
        await until(lambda: nb.received() == {} and nc.received() == {}, what="A's routes withdrawn from B and C")
        for s in (a, b, c):
            await s.stop()
        await dut.stop()

    run(main())


def test_reload_switches_euro_ix_on_for_established_clients(tmp_path, run):
    """A reload that changes [global.route-server] regroups the clients
    (per client AS under Euro-IX) and re-sends their tables: B loses what
    it may no longer have, C gets it with the control community stripped."""

    async def main():
        a_addr, b_addr, c_addr = addr(), addr(), addr()
        rs = {"route-server-client": True}
        dut = DUT(asn=RS_AS, path=tmp_path / "fastbgp.toml", neighbors=[
            neighbor_toml(a_addr, 65001, **rs), neighbor_toml(b_addr, 65002, **rs),
            neighbor_toml(c_addr, 65003, **rs)])
        d = await dut.start()
        a, na = await peer(dut, 65001, a_addr)
        b, nb = await peer(dut, 65002, b_addr)
        c, nc = await peer(dut, 65003, c_addr)
        for n in (na, nb, nc):
            await n.wait_established(5)
        a.announce(["10.82.0.0/24"], communities=["0:65002"])
        await until(lambda: "10.82.0.0/24" in nb.received() and "10.82.0.0/24" in nc.received())
        assert nc.received()["10.82.0.0/24"].communities == ["0:65002"]  # feature off: just a community
        dut.glob = "[global.route-server]\neuro-ix-communities = true\n"
        dut.path.write_text(dut.text())
        await d.reload()
        await until(lambda: "10.82.0.0/24" not in nb.received(), what="withdrawn from 65002")
        await until(lambda: nc.received().get("10.82.0.0/24") is not None
                    and nc.received()["10.82.0.0/24"].communities == [], what="stripped at 65003")
        assert nb.state.name == "ESTABLISHED" and nb.counters.established_count == 1
        # A route with a next hop that is not A's, then the next-hop check
        # switched on: it is taken back from the other clients.
        a.announce(["10.82.1.0/24"], next_hop=b_addr)
        await until(lambda: "10.82.1.0/24" in nc.received(), what="third-party next hop passed on")
        dut.glob += "next-hop-check = true\n"
        dut.path.write_text(dut.text())
        await d.reload()
        await until(lambda: "10.82.1.0/24" not in nc.received(), what="withdrawn after the next-hop check")
        assert "10.82.0.0/24" in nc.received() and na.counters.established_count == 1
        for s in (a, b, c):
            await s.stop()
        await dut.stop()

    run(main())


def test_ipv6_blackhole_and_euro_ix_through_rib(rib_impl):
    """MP_REACH_NLRI: the next hop travels beside the attributes (RFC 4760)
    and the blackhole one replaces it."""
    from fastbgp.wire.constants import AFI_IPV6, IPV6_UNICAST

    policy = RouteServerPolicy(euro_ix=True, blackhole=True, blackhole_nh6="2001:db8::66")
    table = AttrTable()
    rib = rib_impl.Rib(AFI_IPV6, table)
    engine = PolicyEngine({})
    engine.route_server = policy
    chain = engine.chain([], "export", "accept")
    nh1 = ipaddress.IPv6Address("2001:db8::1").packed
    rib.add_peer(1, 65001, RS_AS, 1, "2001:db8::1", ibgp=False)
    sources = {1: Source(1, RS, peer_as=65001, address="2001:db8::1")}
    group = UpdateGroup(("g6", 2), IPV6_UNICAST, codec.Context(as4=True), engine, chain,
                        PolicyContext("2001:db8::2", 65002, RS_AS), RS, False, RS_AS, None, nh1)
    for prefix, comms in (("2001:db8:1::/48", ()), ("2001:db8:2::/48", (std(0, 65002),)),
                          ("2001:db8:3::1/128", (COMMUNITY_BLACKHOLE,))):
        net = ipaddress.ip_network(prefix)
        aid = table.intern(block(nh=None, communities=comms), source_tag(1, nh1))
        rib.update(1, codec.pack_prefixes([(0, net.network_address.packed, net.prefixlen)]), False, aid)
        table.release(aid)
    items = [tag_source(table, aid) + (packed,) for aid, packed in rib.dump_best(exclude_peer=2)]
    got = {}
    for m in group.process(Delta(IPV6_UNICAST, items, b"", dump=True), sources, single=True).common:
        u = codec.parse_update(m[19:], codec.Context(as4=True))
        afi, _safi, nh, packed = u.mp_reach
        for _pid, a, plen in codec.unpack_prefixes(packed, AFI_IPV6):
            got["%s/%d" % (ipaddress.IPv6Address(a.ljust(16, b"\0")), plen)] = (fields(u.attrs)[1], bytes(nh))
    assert set(got) == {"2001:db8:1::/48", "2001:db8:3::1/128"}
    assert got["2001:db8:1::/48"] == (set(), nh1)
    assert got["2001:db8:3::1/128"] == ({COMMUNITY_BLACKHOLE, COMMUNITY_NO_EXPORT},
                                        ipaddress.IPv6Address("2001:db8::66").packed)
