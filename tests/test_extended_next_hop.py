"""RFC 8950: IPv4 unicast NLRI with an IPv6 next hop (Extended Next Hop).

* the capability is advertised only when ``extended-next-hop = true`` and
  used only when the peer advertised it too (RFC 8950 §4);
* an update group whose members negotiated it sends IPv4 routes in
  MP_REACH_NLRI with our IPv6 address when the session has no IPv4 one
  (eBGP), or with the IPv6 next hop a route came with (iBGP, route-server
  clients); other groups keep the classic NEXT_HOP, next-hop-self for a
  route that arrived with an IPv6 next hop;
* end to end: a daemon with an IPv6 session (::1) to a library speaker that
  negotiated the capability and an IPv4 session to another one.

The export rules run on both RIB implementations."""

import ipaddress

import pytest

from fastbgp.config.checks import load_config
from fastbgp.rib import AttrTable
from fastbgp.rib.export import EBGP, IBGP, RS, Delta, Source, UpdateGroup, source_tag
from fastbgp.rib.policy import PolicyContext, PolicyEngine
from fastbgp.session.opening import local_capabilities
from fastbgp.session.speaker import NeighborConfig
from fastbgp.wire import capabilities as caps
from fastbgp.wire import codec
from fastbgp.wire.as4 import encode_attr, encode_segments, split_attrs
from fastbgp.wire.constants import AFI_IPV4, AS_SEQUENCE, ATTR_NEXT_HOP, IPV4_UNICAST

from fastbgp.daemon.core import Daemon
from fastbgp.session.speaker import Speaker
from fastbgp.testing.net import free_port

from test_daemon import DUT, addr, neighbor_toml, peer, until

V6_SELF = ipaddress.IPv6Address("2001:db8::1").packed
V6_PEER = ipaddress.IPv6Address("2001:db8::77").packed
V4_SELF = ipaddress.IPv4Address("192.0.2.1").packed


def block(nh4=None, path=(64999,)):
    out = encode_attr(0x40, 1, b"\x00") + encode_attr(0x40, 2, encode_segments([(AS_SEQUENCE, list(path))], 4))
    if nh4:
        out += encode_attr(0x40, 3, ipaddress.IPv4Address(nh4).packed)
    return out


def test_capability_only_when_configured():
    base = dict(address="2001:db8::2", peer_as=65001, families=["ipv4-unicast", "ipv6-unicast"])
    plain = local_capabilities(NeighborConfig(**base), 65000, False)
    assert not [c for c in plain if isinstance(c, caps.ExtendedNextHop)]
    on = local_capabilities(NeighborConfig(extended_next_hop=True, **base), 65000, False)
    assert [c.entries for c in on if isinstance(c, caps.ExtendedNextHop)] == [[(1, 1, 2)]]
    # Not without IPv4 unicast to carry.
    v6 = local_capabilities(NeighborConfig(**dict(base, families=["ipv6-unicast"]), extended_next_hop=True),
                            65000, False)
    assert not [c for c in v6 if isinstance(c, caps.ExtendedNextHop)]


def test_config_knob():
    text = ('[global]\nasn = 65000\nrouter-id = "192.0.2.1"\n[[neighbors]]\naddress = "2001:db8::2"\n'
            'peer-as = 65001\nfamilies = ["ipv4-unicast", "ipv6-unicast"]\nextended-next-hop = true\n'
            '[[neighbors]]\naddress = "2001:db8::3"\npeer-as = 65002\n')
    cfg = load_config(text)
    assert [n.extended_next_hop for n in cfg.neighbors] == [True, False]


def world(rib_impl):
    table = AttrTable()
    rib = rib_impl.Rib(AFI_IPV4, table)
    engine = PolicyEngine({})
    chain = engine.chain([], "export", "accept")
    ctx = codec.Context(as4=True)
    rib.add_peer(1, 64999, 65000, 1, "192.0.2.50")  # eBGP, IPv4 next hops
    rib.add_peer(2, 64998, 65000, 2, "2001:db8::77")  # eBGP over IPv6, RFC 8950 next hops
    sources = {1: Source(1, EBGP, peer_as=64999), 2: Source(2, EBGP, peer_as=64998)}

    def group(kind, enh, nh4, nh6=V6_SELF):
        return UpdateGroup(("g", kind, enh, nh4), IPV4_UNICAST, ctx, engine, chain,
                           PolicyContext("2001:db8::9", 65009, 65000), kind, False, 65000, nh4, nh6,
                           cluster_id=bytes(4), enh=enh)

    return table, rib, sources, group


def put(table, rib, pid, prefix, attrs, nh=b""):
    net = ipaddress.ip_network(prefix)
    packed = codec.pack_prefixes([(0, net.network_address.packed, net.prefixlen)])
    aid = table.intern(attrs, source_tag(pid, nh))
    try:
        return rib.update(pid, packed, False, aid)
    finally:
        table.release(aid)


def sent(g, table, cs, sources):
    """[(next hop attribute or None, MP next hop or None, prefixes)] of
    the announcements."""
    out = []
    for m in g.process(Delta.from_changeset(IPV4_UNICAST, cs, table), sources).common:
        u = codec.parse_update(m[19:], codec.Context(as4=True))
        attrs = {t: v for _f, t, v in split_attrs(u.attrs)}
        if u.mp_reach is not None:
            afi, safi, nh, nlri = u.mp_reach
            assert (afi, safi) == IPV4_UNICAST
            out.append((attrs.get(ATTR_NEXT_HOP), bytes(nh), codec.unpack_prefixes(nlri, AFI_IPV4)))
        elif u.nlri:  # (withdrawals of what is not exported are not listed)
            out.append((attrs.get(ATTR_NEXT_HOP), None, codec.unpack_prefixes(u.nlri, AFI_IPV4)))
    return out


def test_ebgp_over_ipv6_gets_our_ipv6_next_hop(rib_impl):
    table, rib, sources, group = world(rib_impl)
    cs = put(table, rib, 1, "10.1.0.0/24", block("192.0.2.50"))
    # RFC 8950 §4: no IPv4 address on the session, the peer takes IPv6 next
    # hops: MP_REACH_NLRI with ours, no NEXT_HOP attribute.
    assert sent(group(EBGP, True, None), table, cs, sources) == [
        (None, V6_SELF, [(0, bytes((10, 1, 0, 0)), 24)])]
    # Without the capability there is no next hop to send: not exported.
    assert sent(group(EBGP, False, None), table, cs, sources) == []
    # With an IPv4 address on the session the classic form stays.
    assert sent(group(EBGP, True, V4_SELF), table, cs, sources) == [
        (V4_SELF, None, [(0, bytes((10, 1, 0, 0)), 24)])]


def test_ipv6_next_hop_passed_on_or_replaced(rib_impl):
    table, rib, sources, group = world(rib_impl)
    cs = put(table, rib, 2, "10.2.0.0/24", block(None, path=(64998,)), nh=V6_PEER)
    # A route-server client or iBGP peer with the capability: the next hop
    # it came with, unchanged (RFC 7947 §2.2.1, RFC 4271 §5.1.3).
    assert sent(group(RS, True, V4_SELF), table, cs, sources) == [(None, V6_PEER, [(0, bytes((10, 2, 0, 0)), 24)])]
    assert sent(group(IBGP, True, None), table, cs, sources) == [(None, V6_PEER, [(0, bytes((10, 2, 0, 0)), 24)])]
    # Without it: next-hop-self with our IPv4 address, classic NEXT_HOP.
    assert sent(group(IBGP, False, V4_SELF), table, cs, sources) == [(V4_SELF, None, [(0, bytes((10, 2, 0, 0)), 24)])]
    assert sent(group(EBGP, False, V4_SELF), table, cs, sources) == [(V4_SELF, None, [(0, bytes((10, 2, 0, 0)), 24)])]
    # Neither an IPv4 address nor the capability: nothing usable, not sent.
    assert sent(group(RS, False, None), table, cs, sources) == []


def _ipv6_loopback():
    import socket
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s.bind(("::1", 0))
        s.close()
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback")
@pytest.mark.timeout(60)
def test_daemon_ipv6_session_carries_ipv4_routes(run):
    """The daemon between an ENH speaker on ::1 and an IPv4 speaker: IPv4
    routes to the IPv6 session carry the daemon's IPv6 address; IPv4 routes
    arriving with an IPv6 next hop are installed and re-exported to the IPv4
    peer with next-hop-self."""
    async def main():
        v4_addr = addr()
        fams = ["ipv4-unicast", "ipv6-unicast"]
        dut = DUT(neighbors=[neighbor_toml("::1", 65006, families=fams, **{"extended-next-hop": True}),
                             neighbor_toml(v4_addr, 65004)])
        port6 = free_port("::1")
        text = dut.text().replace('listen = ["%s:%d"]' % (dut.addr, dut.port),
                                  'listen = ["%s:%d", "[::1]:%d"]' % (dut.addr, dut.port, port6))
        d = dut.daemon = Daemon(load_config(text), None)
        await d.start()
        b, nb4 = await peer(dut, 65004, v4_addr)
        await nb4.wait_established(5)
        b.announce(["10.44.0.0/24"], as_path=[65400])
        a = Speaker(65006, "11.6.6.6")
        await a.start()
        na = a.add_neighbor(NeighborConfig(address="::1", peer_as=dut.asn, port=port6, local_address="::1",
                                           families=fams, extended_next_hop=True, idle_hold_time=0.1,
                                           connect_retry=1.0))
        await na.wait_established(5)
        assert (1, 1, 2) in na.session.negotiated.extended_nexthop_tx
        await until(lambda: "10.44.0.0/24" in {str(p) for p in na.received("ipv4-unicast")},
                    what="the IPv4 route at the IPv6 peer")
        got = [v for p, v in na.received("ipv4-unicast").items() if str(p) == "10.44.0.0/24"][0]
        assert ipaddress.ip_address(str(got.next_hop)) == ipaddress.ip_address("::1")  # ours, RFC 8950 §4
        # IPv4 routes with an IPv6 next hop from the ENH peer: installed, and
        # re-exported to the IPv4 peer with next-hop-self.
        na.send_messages(codec.pack_updates(block(None, path=(65600,)),
                                            codec.pack_prefixes([(0, bytes((10, 66, 0, 0)), 24)]),
                                            na.session.ctx, 1, 1, V6_PEER))
        await until(lambda: d.rib("ipv4-unicast", "10.66.0.0/24"), what="the RFC 8950 route in the RIB")
        await until(lambda: "10.66.0.0/24" in {str(p) for p in nb4.received("ipv4-unicast")},
                    what="the RFC 8950 route at the IPv4 peer")
        got = [v for p, v in nb4.received("ipv4-unicast").items() if str(p) == "10.66.0.0/24"][0]
        assert str(got.next_hop) == dut.addr
        for s in (a, b):
            await s.stop()
        await dut.stop()

    run(main())


def test_config_check_needs_ipv4_unicast():
    from fastbgp.config.errors import ConfigError
    text = ('[global]\nasn = 65000\nrouter-id = "192.0.2.1"\n[[neighbors]]\naddress = "2001:db8::2"\n'
            'peer-as = 65001\nextended-next-hop = true\n')
    with pytest.raises(ConfigError) as ei:
        load_config(text)
    assert "extended-next-hop" in str(ei.value)


def test_rfc7999_blackhole_next_hop_wins_over_rfc8950(rib_impl):
    """A route-server client with the capability gets an IPv6-next-hop route
    as it came -- unless the RS rewrites the next hop to the IPv4 blackhole
    address (RFC 7999): then the classic NEXT_HOP, not the IPv6 one."""
    from fastbgp.rib.route_server import RouteServerPolicy
    from fastbgp.wire.constants import COMMUNITY_BLACKHOLE

    table, rib, sources, group = world(rib_impl)
    g = group(RS, True, V4_SELF)
    g.engine.route_server = RouteServerPolicy(blackhole=True, blackhole_nh4="192.0.2.66")
    plain = put(table, rib, 2, "10.3.0.0/24", block(None, path=(64998,)), nh=V6_PEER)
    assert sent(g, table, plain, sources) == [(None, V6_PEER, [(0, bytes((10, 3, 0, 0)), 24)])]
    bh = block(None, path=(64998,)) + encode_attr(0xC0, 8, COMMUNITY_BLACKHOLE.to_bytes(4, "big"))
    cs = put(table, rib, 2, "10.3.1.0/24", bh, nh=V6_PEER)
    assert sent(g, table, cs, sources) == [(ipaddress.IPv4Address("192.0.2.66").packed, None,
                                            [(0, bytes((10, 3, 1, 0)), 24)])]


def test_library_speaker_encoding_needs_the_peer_capability():
    """RFC 8950 §4: an IPv6 next hop for IPv4 unicast only to a peer that
    advertised Extended Next Hop for it; then the NLRI go in MP_REACH_NLRI
    with 16 octets (32 with a link-local address)."""
    from fastbgp.session.routes import build_spec, wire_attributes

    spec = build_spec("2001:db8::9", [65600], "igp", None, None, (), (), (), False, None, None)
    with pytest.raises(ValueError, match="extended next hop"):
        wire_attributes(spec, IPV4_UNICAST, ebgp=True, local_as=65001, local_address="2001:db8::1", local_role=None)
    attrs, nh = wire_attributes(spec, IPV4_UNICAST, ebgp=True, local_as=65001, local_address="2001:db8::1",
                                local_role=None, ipv6_next_hop=True)
    assert nh == ipaddress.IPv6Address("2001:db8::9").packed
    assert ATTR_NEXT_HOP not in {t for _f, t, _v in split_attrs(attrs)}
    ll = build_spec("2001:db8::9", [], "igp", None, None, (), (), (), False, None, "fe80::9")
    _attrs, nh = wire_attributes(ll, IPV4_UNICAST, ebgp=True, local_as=65001, local_address="2001:db8::1",
                                 local_role=None, ipv6_next_hop=True)
    assert nh == ipaddress.IPv6Address("2001:db8::9").packed + ipaddress.IPv6Address("fe80::9").packed
    # Next-hop-self over an IPv6 session: our IPv6 address.
    own = build_spec(None, [], "igp", None, None, (), (), (), False, None, None)
    _attrs, nh = wire_attributes(own, IPV4_UNICAST, ebgp=True, local_as=65001, local_address="2001:db8::1",
                                 local_role=None, ipv6_next_hop=True)
    assert nh == V6_SELF


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback")
@pytest.mark.timeout(60)
def test_library_speakers_send_ipv4_routes_with_ipv6_next_hops(run):
    """Two library speakers over ::1 that both advertise Extended Next Hop:
    IPv4 routes go with the IPv6 next hop given, or with the sender's own
    IPv6 address when none is; a peer without the capability gets none of
    them (the encoding error is logged, the session stays up)."""
    fams = ["ipv4-unicast", "ipv6-unicast"]

    async def main():
        port = free_port("::1")
        b = Speaker(65002, "10.0.0.2", listen=[("::1", port)])
        c = Speaker(65003, "10.0.0.3", listen=[("::1", free_port("::1"))])
        a = Speaker(65001, "10.0.0.1")
        a2 = Speaker(65004, "10.0.0.4")
        async with a, a2, b, c:
            nb = b.add_neighbor(NeighborConfig(address="::1", peer_as=65001, passive=True, families=fams,
                                               extended_next_hop=True))
            to_b = a.add_neighbor(NeighborConfig(address="::1", peer_as=65002, port=port, local_address="::1",
                                                 families=fams, extended_next_hop=True, idle_hold_time=0.1))
            await to_b.wait_established(5)
            await nb.wait_established(5)
            assert (1, 1, 2) in to_b.session.negotiated.extended_nexthop_tx
            a.announce(["10.77.0.0/24"], "2001:db8::9", as_path=[65700])
            a.announce(["10.78.0.0/24"], as_path=[65700])
            await until(lambda: len(nb.received("ipv4-unicast")) == 2, what="both IPv4 routes at b")
            got = {str(p): str(v.next_hop) for p, v in nb.received("ipv4-unicast").items()}
            assert got == {"10.77.0.0/24": "2001:db8::9", "10.78.0.0/24": "::1"}
            # A peer that did not advertise the capability: no IPv4 route
            # with an IPv6 next hop reaches it, the session stays up.
            nc = c.add_neighbor(NeighborConfig(address="::1", peer_as=65004, passive=True, families=fams))
            to_c = a2.add_neighbor(NeighborConfig(address="::1", peer_as=65003, port=c.port, local_address="::1",
                                                  families=fams, extended_next_hop=True, idle_hold_time=0.1))
            await to_c.wait_established(5)
            await nc.wait_established(5)
            assert (1, 1, 2) not in to_c.session.negotiated.extended_nexthop_tx
            a2.announce(["10.77.0.0/24"], "2001:db8::9", as_path=[65700])
            a2.announce(["2001:db8:77::/48"], "2001:db8::9", as_path=[65700])
            await until(lambda: len(nc.received("ipv6-unicast")) == 1, what="the IPv6 route at c")
            assert nc.received("ipv4-unicast") == {}
            assert to_c.established and nc.established

    run(main())


def test_ipv6_next_hop_for_ipv4_routes_refused_unless_we_offered_it(run, caplog):
    """RFC 8950 §4: IPv4 routes with an IPv6 next hop from a peer we did not
    send the Extended Next Hop capability are handled as withdrawn (BIRD
    does the same), with a WARNING that names the knob; the session stays
    up and an IPv4 next hop in MP_REACH_NLRI is still taken."""
    async def main():
        a_addr = addr()
        dut = DUT(neighbors=[neighbor_toml(a_addr, 65004)])
        d = await dut.start()
        a, na = await peer(dut, 65004, a_addr)
        try:
            await na.wait_established(5)
            assert not d.speaker.neighbors[a_addr].session.negotiated.extended_nexthop_tx
            prefix = codec.pack_prefixes([(0, bytes((10, 67, 0, 0)), 24)])
            na.send_messages(codec.pack_updates(block(None, path=(65004,)), prefix, na.session.ctx, 1, 1, V6_PEER))
            # An IPv4 next hop in MP_REACH_NLRI (RFC 4760): taken.  Sent after
            # the refused one, so once it is in the RIB the first was handled.
            na.send_messages(codec.pack_updates(block(None, path=(65004,)),
                                                codec.pack_prefixes([(0, bytes((10, 68, 0, 0)), 24)]),
                                                na.session.ctx, 1, 1, bytes((192, 0, 2, 44))))
            await until(lambda: d.rib("ipv4-unicast", "10.68.0.0/24"), what="the IPv4 next hop route")
            assert not d.rib("ipv4-unicast", "10.67.0.0/24")
            assert na.established
            # A path we held from the peer goes when it comes with an IPv6 next hop.
            na.send_messages(codec.pack_updates(block(None, path=(65004,)),
                                                codec.pack_prefixes([(0, bytes((10, 68, 0, 0)), 24)]),
                                                na.session.ctx, 1, 1, V6_PEER))
            await until(lambda: not d.rib("ipv4-unicast", "10.68.0.0/24"), what="the path withdrawn")
            assert na.established
            assert d.speaker.neighbors[a_addr].counters.treat_as_withdraw == 2
            # One WARNING for both (Neighbor.warn_repeated), naming the knob.
            warned = [r.getMessage() for r in caplog.records if "RFC 8950 §4" in r.getMessage()]
            assert len(warned) == 1 and "extended-next-hop = true" in warned[0], warned
        finally:
            await a.stop()
            await dut.stop()

    run(main())
