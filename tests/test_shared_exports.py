"""Update groups without export policy share their exports
(fastbgp.rib.export.SharedExports): a route server's clients work a new
attribute set through the export rules once, not once per client; each
client's own step (the Euro-IX communities, RFC 7999 blackhole) stays its
own; and what a group gets from the memo is what it would have made alone,
whatever its settings.  The daemon's route-server tests (test_daemon's
library clients, tests/interop against BIRD and FRR) run with the memo on."""

import ipaddress
import struct

from hypothesis import given, settings, strategies as st

from fastbgp.config.checks import load_config
from fastbgp.rib.export import EBGP, IBGP, RS, SharedExports, Source, UpdateGroup
from fastbgp.rib.policy import PolicyContext, PolicyEngine, compile_policies
from fastbgp.rib.route_server import RouteServerPolicy
from fastbgp.wire import codec
from fastbgp.wire.as4 import encode_attr, encode_segments
from fastbgp.wire.constants import (
    AS_CONFED_SEQUENCE,
    AS_SEQUENCE,
    COMMUNITY_BLACKHOLE,
    COMMUNITY_NO_EXPORT,
    IPV4_UNICAST,
)

from test_route_server_policy import RS_AS, CountingPolicy, block, fields, std

CTX = codec.Context(as4=True)
NH4 = ipaddress.IPv4Address("192.0.2.254").packed
NH6 = ipaddress.IPv6Address("2001:db8::fe").packed


def engine_with(policy=None):
    engine = PolicyEngine({})
    engine.route_server = policy
    return engine


def make_group(engine, chain, peer_as, kind=RS, *, rr=False, local_as=RS_AS, nh4=NH4, nh6=None,
               cluster=b"\x01\x02\x03\x04", otc=False, enh=False, confed_peer=False, confed=None, rpki_signal=False,
               shared=None):
    pctx = PolicyContext("192.0.2.%d" % (peer_as % 200 + 1), peer_as, local_as, local_address="192.0.2.254")
    g = UpdateGroup(("g", peer_as), IPV4_UNICAST, CTX, engine, chain, pctx, kind, rr, local_as, nh4, nh6, cluster,
                    otc, enh=enh)
    g.confed_peer = confed_peer
    g.confed = confed
    g.rpki_signal = rpki_signal
    g.shared = shared
    return g


def three_clients():
    """A Euro-IX route server's clients AS65002-65004 sharing exports, and
    a client AS65001 as the source: (policy, shared, groups by AS, source)."""
    policy = CountingPolicy(euro_ix=True)
    engine = engine_with(policy)
    chain = engine.chain([], "export", "accept")
    shared = SharedExports()
    groups = {asn: make_group(engine, chain, asn, shared=shared) for asn in (65002, 65003, 65004)}
    src = Source(1, RS, peer_as=65001, address="192.0.2.1")
    return policy, shared, groups, src


def test_route_server_clients_share_an_attribute_set_and_keep_their_own_euro_ix_step():
    policy, shared, groups, src = three_clients()

    # 0:65002 -- not to AS 65002; the control community is stripped for the others.
    tagged = block(communities=(std(0, 65002), std(65001, 7)))
    outs = {asn: g.export(src, tagged, b"") for asn, g in groups.items()}
    assert outs[65002] is None
    for asn in (65003, 65004):
        path, comms, _large, nh = fields(outs[asn][0])
        assert path == [65001] and comms == {std(65001, 7)} and nh == "192.0.2.1"
    assert shared.computed == 1  # the export rules ran once for the three clients
    assert policy.calls == 3  # the Euro-IX step once per client

    plain = block(path=(65001, 65010))
    assert len({g.export(src, plain, b"") for g in groups.values()}) == 1
    assert shared.computed == 2
    # A source of another class (an eBGP peer, not a client) is another entry.
    groups[65002].export(Source(2, EBGP, peer_as=65005, address="192.0.2.5"), plain, b"")
    assert shared.computed == 3


def test_route_server_clients_told_alike_hold_one_result_object():
    # Each group caches its member's result per attribute set; with 200
    # clients those results are most of a route server's memory (P9), so
    # clients told alike must share one object, not hold equal copies.
    _policy, _shared, groups, src = three_clients()

    plain = block(path=(65001, 65010))  # nothing for the Euro-IX step: the shared result itself
    outs = [g.export(src, plain, b"") for g in groups.values()]
    assert outs[0] is outs[1] is outs[2]

    # The control community stripped alike for 65003 and 65004: one result.
    tagged = block(communities=(std(0, 65002), std(65001, 7)))
    outs = {asn: g.export(src, tagged, b"") for asn, g in groups.items()}
    assert outs[65002] is None and outs[65003] == outs[65004]
    assert outs[65003] is outs[65004]
    # Prepended for one client only: its own result, the other's unchanged.
    once = block(communities=(std(65501, 65003),))
    a, b = groups[65003].export(src, once, b""), groups[65004].export(src, once, b"")
    assert fields(a[0])[0] == [65001, 65001] and fields(b[0])[0] == [65001]


def test_groups_with_an_export_policy_or_other_settings_are_not_shared_into():
    engine = engine_with(RouteServerPolicy(euro_ix=True))
    accept = engine.chain([], "export", "accept")
    shared = SharedExports()
    src = Source(1, EBGP, peer_as=65001, address="192.0.2.1")
    attrs = block()
    # Two eBGP groups with their own next hops: each its own entry, each its own address.
    a = make_group(engine, accept, 65002, EBGP, nh4=ipaddress.IPv4Address("192.0.2.254").packed, shared=shared)
    b = make_group(engine, accept, 65003, EBGP, nh4=ipaddress.IPv4Address("198.51.100.254").packed, shared=shared)
    assert fields(a.export(src, attrs, b"")[0])[3] == "192.0.2.254"
    assert fields(b.export(src, attrs, b"")[0])[3] == "198.51.100.254"
    assert shared.computed == 2
    # A group whose chain has a policy never reads or fills the memo.
    engine2 = compile_policies(load_config(
        '[global]\nasn = %d\nrouter-id = "192.0.2.254"\n[[policies]]\nname = "p"\n[[policies.statements]]\n'
        'actions = { result = "accept", as-path-prepend = { asn = 64999 } }\n' % RS_AS))
    chained = make_group(engine2, engine2.chain(["p"], "export", "accept"), 65004, EBGP, shared=shared)
    assert fields(chained.export(src, attrs, b"")[0])[0][:2] == [RS_AS, 64999]
    assert shared.computed == 2 and len(shared) == 2


def test_a_full_memo_starts_again():
    shared = SharedExports(limit=4)
    engine = engine_with(None)
    chain = engine.chain([], "export", "accept")
    g1 = make_group(engine, chain, 65002, EBGP, shared=shared)
    g2 = make_group(engine, chain, 65003, EBGP, shared=shared)
    src = Source(1, EBGP, peer_as=65001, address="192.0.2.1")
    for i in range(10):
        attrs = block(path=(65001, 64512 + i))
        assert g1.export(src, attrs, b"") == g2.export(src, attrs, b"")
        assert len(shared) <= 4
    assert shared.computed == 10


# ----------------------------------------------------------------------------- property

COMMUNITIES = [std(0, 65002), std(RS_AS, 65003), std(0, RS_AS), std(65001, 1), COMMUNITY_NO_EXPORT,
               COMMUNITY_BLACKHOLE, 0xFFFFFF01]  # the last: NO_ADVERTISE

SETTINGS = {
    "kind": [EBGP, IBGP, RS],
    "rr": [False, True],
    "local_as": [RS_AS, 64501],
    "nh4": [NH4, ipaddress.IPv4Address("198.51.100.254").packed, None],
    "nh6": [None, NH6],
    "cluster": [b"\x01\x02\x03\x04", b"\x0a\x0b\x0c\x0d"],
    "otc": [False, True],
    "enh": [False, True],
    "confed_peer": [False, True],
    "confed": [None, "confederation"],
    "rpki_signal": [False, True],
}
# One group's settings; the others differ from it in one setting at most,
# so that two groups a missing profile field would wrongly join are drawn
# often (groups differing everywhere never share an entry anyway).
base_st = st.fixed_dictionaries({k: st.sampled_from(v) for k, v in SETTINGS.items()})
tweak_st = st.one_of(st.none(), st.sampled_from(sorted(SETTINGS)).flatmap(
    lambda k: st.tuples(st.just(k), st.sampled_from(SETTINGS[k]))))

route_st = st.tuples(
    st.sampled_from([EBGP, IBGP, IBGP, RS]),  # source kind (iBGP: what reflection rules see)
    st.booleans(),  # source is a reflector client
    st.sampled_from([0x0A000001, 0x0A000002]),  # source router id
    st.lists(st.sampled_from([65001, 65010, 65020]), min_size=0, max_size=3),  # AS path
    st.booleans(),  # an AS_CONFED_SEQUENCE in front (RFC 5065)
    st.sampled_from(["192.0.2.1", None]),  # NEXT_HOP attribute
    st.lists(st.sampled_from(COMMUNITIES), max_size=3, unique=True),
    st.booleans(),  # LOCAL_PREF and MED
    st.sampled_from([b"", NH6]),  # MP next hop it came with
)


def route_of(r):
    kind, rr, rid, path, confed, nh, comms, extra, mp_nh = r
    segments = ([(AS_CONFED_SEQUENCE, [64700])] if confed else []) + ([(AS_SEQUENCE, list(path))] if path else [])
    attrs = encode_attr(0x40, 1, b"\x00") + encode_attr(0x40, 2, encode_segments(segments, 4))
    if nh:
        attrs += encode_attr(0x40, 3, ipaddress.IPv4Address(nh).packed)
    if extra:
        attrs += encode_attr(0x80, 4, struct.pack(">I", 10)) + encode_attr(0x40, 5, struct.pack(">I", 200))
    if comms:
        attrs += encode_attr(0xC0, 8, struct.pack(">%dI" % len(comms), *comms))
    if extra:
        # RFC 8097: the origin validation state (Invalid), non-transitive;
        # RFC 4360: a route target, transitive.
        attrs += encode_attr(0xC0, 16, bytes((0x43, 0, 0, 0, 0, 0, 0, 2)) + bytes((0, 2, 0xFD, 0xE9, 0, 0, 0, 1)))
    return Source(1, kind, rr_client=rr, router_id=rid, peer_as=65001, address="192.0.2.1"), attrs, mp_nh


@settings(max_examples=500, deadline=None)
@given(base_st, st.lists(st.tuples(tweak_st, st.sampled_from([65002, 65003, 65004])), min_size=1, max_size=5),
       st.lists(route_st, min_size=4, max_size=10))
def test_a_shared_export_is_what_the_group_makes_alone(base, tweaks, routes):
    policy = RouteServerPolicy(euro_ix=True, blackhole=True, blackhole_nh4="192.0.2.66")
    engine = engine_with(policy)
    chain = engine.chain([], "export", "accept")
    shared = SharedExports()
    pairs = []
    for tweak, asn in tweaks:
        s = dict(base, **dict([tweak] if tweak else []))
        pairs.append((make_group(engine, chain, asn, shared=shared, **s), make_group(engine, chain, asn, **s)))
    for r in routes:
        src, attrs, mp_nh = route_of(r)
        for together, alone in pairs:
            assert together.export(src, attrs, mp_nh) == alone.export(src, attrs, mp_nh)


ROUTES = [route_of((kind, rr, 0x0A000001, [65001, 65010], confed, nh, comms, extra, mp_nh))
          for kind in (EBGP, IBGP, RS) for rr in (False, True) for confed in (False, True)
          for nh, mp_nh in (("192.0.2.1", b""), (None, NH6)) for comms, extra in (((), True), ((std(0, RS_AS),), False))]
BASES = [dict(zip(SETTINGS, (kind, rr, RS_AS, nh4, NH6, b"\x01\x02\x03\x04", False, enh, confed_peer, "c", False)))
         for kind in (EBGP, IBGP, RS) for rr in (False, True) for confed_peer in (False, True)
         for nh4, enh in ((NH4, False), (None, True))]  # RFC 8950: our IPv6 address as the IPv4 next hop


def test_groups_one_setting_apart_never_share_an_entry_they_would_export_apart():
    """Every setting of the profile, each pair of its values, beside bases
    of every kind: two groups that differ in that setting alone, sharing one
    memo, each export what they would alone (the deterministic side of the
    property above)."""
    engine = engine_with(RouteServerPolicy(euro_ix=True, blackhole=True, blackhole_nh4="192.0.2.66"))
    chain = engine.chain([], "export", "accept")
    compared = differed = 0
    for field, values in SETTINGS.items():
        for base in BASES:
            for a in values:
                for b in values:
                    if a == b or a == base[field] and b == base[field]:
                        continue
                    shared = SharedExports()
                    first = make_group(engine, chain, 65002, shared=shared, **dict(base, **{field: a}))
                    second = make_group(engine, chain, 65002, shared=shared, **dict(base, **{field: b}))
                    alone = make_group(engine, chain, 65002, **dict(base, **{field: b}))
                    for src, attrs, mp_nh in ROUTES:
                        first.export(src, attrs, mp_nh)  # fills the memo first
                        got, want = second.export(src, attrs, mp_nh), alone.export(src, attrs, mp_nh)
                        assert got == want, (field, a, b, base, src, attrs.hex(), mp_nh)
                        compared += 1
                        differed += first.export(src, attrs, mp_nh) != want
    assert differed > compared // 10  # the settings do change the exports this test reads


# ----------------------------------------------------------------------------- one change, many groups


def test_a_change_exported_in_one_batch_is_what_each_group_makes_alone(rib_impl):
    """ExportBatch (export_part): groups' marks made once per announcement
    and the UPDATEs of what they export alike encoded once.  Each group's
    messages and held bits are those it makes on its own: route-server
    clients with and without 4-octet AS numbers (RFC 6793: another
    encoding), an eBGP group, one a control community keeps out."""
    from fastbgp.rib import AttrTable
    from fastbgp.rib.export import Delta, ExportBatch
    from test_route_server_policy import announce

    def world():
        table = AttrTable()
        rib = rib_impl.Rib(1, table)
        engine = engine_with(RouteServerPolicy(euro_ix=True))
        chain = engine.chain([], "export", "accept")
        groups = []
        for i, (kind, asn, as4) in enumerate([(RS, 65002, True), (RS, 65003, True), (RS, 65004, False),
                                             (EBGP, 65005, True), (RS, 65006, True)]):
            g = make_group(engine, chain, asn, kind, shared=SharedExports())
            g.ctx = codec.Context(as4=as4)
            g.members[10 + i] = object()
            g.attach_held(rib.held)
            groups.append(g)
        rib.add_peer(1, 65001, RS_AS, "192.0.2.1", "192.0.2.1")
        return table, rib, groups

    src = {1: Source(1, RS, peer_as=65001, address="192.0.2.1")}
    prefixes = ["10.%d.%d.0/24" % (i // 256, i % 256) for i in range(300)]
    outs = []
    for batched in (True, False):
        table, rib, groups = world()
        sent = [[] for _ in groups]
        for step, attrs in enumerate([block(path=(65001, 7)), block(path=(65001, 8), communities=(std(0, 65006),)),
                                      block(path=(65001, 4200000001))]):
            cs = announce(table, rib, 1, prefixes[step * 100:(step + 2) * 100], attrs)
            delta = Delta.from_changeset(IPV4_UNICAST, cs, table)
            batch = ExportBatch() if batched else None
            for g, out in zip(groups, sent):
                out.extend(g.process(delta, src, marks=batch).common)
            if batch is not None:
                batch.flush()
        everything = codec.pack_prefixes([(0, ipaddress.ip_network(p).network_address.packed, 24) for p in prefixes])
        outs.append((sent, [rib.held.filter(g.held_index, everything) for g in groups]))
    assert outs[0] == outs[1]
    sent, held = outs[0]
    assert sent[0] == sent[1] and sent[2] != sent[0] and sent[3] != sent[0]  # AS2 encoding, our AS prepended
    assert held[4] != held[0] and len(held[0]) == 300 * 4  # 0:65006 kept one set from 65006
