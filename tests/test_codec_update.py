"""Well-formed UPDATE decoding and UPDATE encoding (RFC 4271 §4.3, RFC 4760,
RFC 6793, RFC 7911, RFC 8654, RFC 4724)."""

import math

import pytest

from bgpgen import (
    AGGREGATOR,
    AS4_AGGREGATOR,
    AS4_PATH,
    AS_CONFED_SEQUENCE,
    AS_PATH,
    AS_SEQUENCE,
    AS_SET,
    AS_TRANS,
    BASE_ATTRS,
    BASE_NLRI,
    COMMUNITIES,
    IBGP,
    NEXT_HOP,
    OLD,
    ORIGIN,
    aggregator,
    as4_aggregator,
    as4_path,
    as_path,
    atomic_aggregate,
    attr,
    attr_types,
    attr_value,
    body_of,
    communities,
    decode_segments,
    ip4,
    ip6,
    large_communities,
    local_pref,
    med,
    mp_reach,
    mp_unreach,
    next_hop,
    normal_path,
    origin,
    pack,
    prefix,
    prefixes,
    slash24s,
    split_attrs,
    update,
    update_body,
)
from fastbgp.wire.types import Context, ParsedUpdate

GUA = ip6("2001:db8::1")
LL = ip6("fe80::1")
V6_NLRI = prefixes("2001:db8:1::/48", "2001:db8:2::/64", "::/0", "2001:db8::1/128")
V4_WD = prefixes("192.0.2.0/24", "198.51.100.128/25", "0.0.0.0/0")


def parse(codec, body, ctx=IBGP):
    return codec.parse_update(body, ctx)


# ---------------------------------------------------------------- decode


def test_ipv4_nlri_and_withdrawn(codec):
    pu = parse(codec, update_body(V4_WD, BASE_ATTRS, BASE_NLRI))
    assert pu == ParsedUpdate(V4_WD, BASE_ATTRS, BASE_NLRI, ip4("192.0.2.1"), None, None, 2, 3, 0, ())
    assert not pu.treat_as_withdraw and not pu.is_eor


def test_withdraw_only(codec):
    pu = parse(codec, update_body(V4_WD))
    assert (pu.withdrawn, pu.attrs, pu.nlri, pu.n_withdrawn, pu.n_announced) == (V4_WD, b"", b"", 3, 0)
    assert not pu.is_eor


def test_mp_reach_ipv6_with_link_local(codec):
    # RFC 2545 §3: next hop of 32 octets = global + link-local address.
    attrs = mp_reach(2, 1, GUA + LL, V6_NLRI) + origin(2) + as_path()
    pu = parse(codec, update_body(b"", attrs))
    assert pu.mp_reach == (2, 1, GUA + LL, V6_NLRI)
    assert len(pu.mp_reach[2]) == 32
    # The canonical block leaves the NLRI-carrying MP attribute out.
    assert pu.attrs == origin(2) + as_path()
    assert (pu.n_announced, pu.n_withdrawn, pu.next_hop, pu.nlri, pu.mp_unreach) == (4, 0, b"", b"", None)
    assert pu.action == 0 and pu.errors == ()


def test_mp_reach_ipv6_global_only(codec):
    pu = parse(codec, update_body(b"", origin() + as_path() + mp_reach(2, 1, GUA, V6_NLRI)))
    assert pu.mp_reach == (2, 1, GUA, V6_NLRI) and pu.n_announced == 4


def test_mp_reach_ipv4_with_ipv6_next_hop(codec):
    # RFC 8950 §3: IPv4 NLRI with a 16- or 32-octet IPv6 next hop.
    for nh in (GUA, GUA + LL, ip4("192.0.2.1")):
        pu = parse(codec, update_body(b"", origin() + as_path() + mp_reach(1, 1, nh, BASE_NLRI)))
        assert pu.mp_reach == (1, 1, nh, BASE_NLRI) and pu.n_announced == 2


def test_mp_unreach(codec):
    pu = parse(codec, update_body(b"", mp_unreach(2, 1, V6_NLRI)))
    assert pu.mp_unreach == (2, 1, V6_NLRI)
    assert (pu.n_withdrawn, pu.n_announced, pu.attrs, pu.mp_reach) == (4, 0, b"", None)
    assert not pu.is_eor


def test_every_field_in_one_update_in_any_order(codec):
    # RFC 7606 §5.1: a receiver must accept MP_* anywhere and in any
    # combination with the classic fields.
    attrs = origin() + mp_unreach(2, 1, V6_NLRI[:7]) + as_path() + mp_reach(2, 1, GUA, V6_NLRI[7:]) + next_hop()
    pu = parse(codec, update_body(V4_WD, attrs, BASE_NLRI))
    assert pu.withdrawn == V4_WD and pu.nlri == BASE_NLRI
    assert pu.mp_unreach == (2, 1, V6_NLRI[:7]) and pu.mp_reach == (2, 1, GUA, V6_NLRI[7:])
    assert pu.attrs == origin() + as_path() + next_hop()
    assert (pu.n_announced, pu.n_withdrawn) == (2 + 3, 3 + 1)


def test_ipv4_multicast_is_a_known_family(codec):
    pu = parse(codec, update_body(b"", origin() + as_path() + mp_reach(1, 2, ip4("192.0.2.1"), BASE_NLRI)))
    assert pu.mp_reach == (1, 2, ip4("192.0.2.1"), BASE_NLRI) and pu.n_announced == 2


def test_addpath_ipv4(codec):
    # RFC 7911 §3: a 4-octet Path Identifier before each prefix.
    ctx = Context(addpath_rx=frozenset({(1, 1)}))
    nlri = prefix("10.0.0.0/24", 1) + prefix("10.0.0.0/24", 2) + prefix("0.0.0.0/0", 0xFFFFFFFF)
    wd = prefix("192.0.2.0/24", 7)
    pu = parse(codec, update_body(wd, BASE_ATTRS, nlri), ctx)
    assert (pu.nlri, pu.withdrawn, pu.n_announced, pu.n_withdrawn) == (nlri, wd, 3, 1)
    assert codec.unpack_prefixes(pu.nlri, 1, True) == [
        (1, ip4("10.0.0.0"), 24),
        (2, ip4("10.0.0.0"), 24),
        (0xFFFFFFFF, bytes(4), 0),
    ]


def test_addpath_ipv6(codec):
    ctx = Context(addpath_rx=frozenset({(2, 1)}))
    nlri = prefix("2001:db8:1::/48", 10) + prefix("2001:db8:1::/48", 11)
    pu = parse(codec, update_body(b"", origin() + as_path() + mp_reach(2, 1, GUA, nlri) + mp_unreach(2, 1, prefix("2001:db8:9::/48", 3))), ctx)
    assert pu.mp_reach == (2, 1, GUA, nlri) and pu.n_announced == 2 and pu.n_withdrawn == 1
    assert [p[0] for p in codec.unpack_prefixes(nlri, 2, True)] == [10, 11]


def test_addpath_is_per_family(codec):
    # ADD-PATH negotiated for IPv6 only: IPv4 prefixes carry no path id.
    ctx = Context(addpath_rx=frozenset({(2, 1)}))
    pu = parse(codec, update_body(b"", BASE_ATTRS, BASE_NLRI), ctx)
    assert pu.n_announced == 2


def test_unknown_optional_transitive_kept(codec):
    # RFC 4271 §5: an unrecognized optional transitive attribute is retained
    # for propagation.
    unknown = attr(0xC0, 99, b"opaque value") + attr(0xE0, 250, bytes(300))
    pu = parse(codec, update_body(b"", BASE_ATTRS + unknown, BASE_NLRI))
    # (Whether the Partial bit is set on receipt or on propagation is left
    # open: compare flags without it.)
    kept = [(f & 0xC0, t, v) for f, t, v in split_attrs(pu.attrs)]
    assert kept == [(0x40, 1, b"\x00"), (0x40, 2, b"\x02\x01\x00\x00\xfd\xe9"), (0x40, 3, ip4("192.0.2.1")), (0xC0, 99, b"opaque value"), (0xC0, 250, bytes(300))]
    assert pu.errors == () and pu.nlri == BASE_NLRI


def test_unknown_optional_non_transitive_ignored(codec):
    """RFC 4271 §5: "If an optional non-transitive attribute is unrecognized,
    it is quietly ignored" -- it must not reach the canonical block, which
    is what gets re-advertised (RFC 4271 §9.1.3 / §5: non-transitive
    attributes are not passed along)."""
    unknown = attr(0x80, 99, b"do not propagate")
    pu = parse(codec, update_body(b"", BASE_ATTRS + unknown, BASE_NLRI))
    assert 99 not in attr_types(pu.attrs)
    assert pu.attrs == BASE_ATTRS and pu.nlri == BASE_NLRI and pu.action == 0


def test_unused_flag_bits_ignored(codec):
    # RFC 4271 §4.3: the low four flag bits "MUST be ignored when received".
    attrs = attr(0x4F, ORIGIN, b"\x00") + as_path() + next_hop()
    pu = parse(codec, update_body(b"", attrs, BASE_NLRI))
    assert pu.action == 0 and pu.nlri == BASE_NLRI and ORIGIN in attr_types(pu.attrs)


def test_extended_length_on_short_value_accepted(codec):
    attrs = attr(0x40, ORIGIN, b"\x01", extended=True) + as_path() + next_hop() + communities(1, 2)
    pu = parse(codec, update_body(b"", attrs, BASE_NLRI))
    assert pu.attrs == attrs and pu.action == 0


def test_other_family_mp_reach_kept_opaque(codec):
    # VPNv4 (AFI 1, SAFI 128, RFC 4364): not parsed, carried as it came.
    nh = bytes(8) + ip4("192.0.2.1")  # RD 0 + IPv4 next hop
    nlri = bytes((88,)) + b"\x00\x01\x01" + bytes((0, 0, 0xFD, 0xE9, 0, 0, 0, 1)) + b"\x0a\x00\x00"
    attrs = origin() + as_path() + mp_reach(1, 128, nh, nlri) + mp_unreach(25, 70, b"\x02\x21" + bytes(33))
    pu = parse(codec, update_body(b"", attrs))
    assert pu.mp_reach == (1, 128, nh, nlri)
    assert pu.mp_unreach == (25, 70, b"\x02\x21" + bytes(33))
    assert pu.attrs == origin() + as_path() and pu.action == 0
    assert (pu.n_announced, pu.n_withdrawn) == (0, 0)  # only known families are counted


def test_local_pref_kept_from_internal_peer(codec):
    pu = parse(codec, update_body(b"", BASE_ATTRS + local_pref(200), BASE_NLRI))
    assert attr_value(pu.attrs, 5) == (200).to_bytes(4, "big")


# ---------------------------------------------------------------- RFC 6793: 2-octet sessions


def as4_merge(codec, attrs, nlri=BASE_NLRI):
    pu = parse(codec, update_body(b"", attrs, nlri), OLD)
    assert pu.action == 0 and pu.nlri == nlri
    types = attr_types(pu.attrs)
    # The canonical block never holds AS4_* (their content is merged in).
    assert AS4_PATH not in types and AS4_AGGREGATOR not in types
    return pu


def test_old_peer_widened_without_as4_attributes(codec):
    attrs = origin() + as_path([(AS_SEQUENCE, (65001, 65002))], width=2) + next_hop() + aggregator(65003, width=2)
    pu = as4_merge(codec, attrs)
    assert pu.attrs == origin() + as_path([(AS_SEQUENCE, (65001, 65002))]) + next_hop() + aggregator(65003)


def test_old_peer_as4_path_merged(codec):
    # RFC 6793 §4.2.3: AS_PATH (3 ASNs) >= AS4_PATH (2): keep the leading
    # 3 - 2 ASNs of AS_PATH, then AS4_PATH.
    attrs = (
        origin()
        + as_path([(AS_SEQUENCE, (100, AS_TRANS, AS_TRANS))], width=2)
        + next_hop()
        + as4_path([(AS_SEQUENCE, (4200000001, 4200000002))])
    )
    pu = as4_merge(codec, attrs)
    assert normal_path(decode_segments(attr_value(pu.attrs, AS_PATH))) == [(AS_SEQUENCE, (100, 4200000001, 4200000002))]
    assert [t for t in attr_types(pu.attrs)] == [ORIGIN, AS_PATH, NEXT_HOP]


def test_old_peer_as_set_counts_one(codec):
    # RFC 6793 §4.2.3 counts per RFC 4271 §9.1.2.2: an AS_SET counts as 1.
    attrs = (
        origin()
        + as_path([(AS_SEQUENCE, (100, 200, AS_TRANS)), (AS_SET, (AS_TRANS, 300))], width=2)
        + next_hop()
        + as4_path([(AS_SEQUENCE, (4200000001,)), (AS_SET, (4200000002, 300))])
    )
    pu = as4_merge(codec, attrs)
    assert normal_path(decode_segments(attr_value(pu.attrs, AS_PATH))) == [
        (AS_SEQUENCE, (100, 200, 4200000001)),
        (AS_SET, (4200000002, 300)),
    ]


def test_old_peer_leading_confed_segment_kept(codec):
    # RFC 6793 §4.2.3: a leading AS_CONFED_* segment of AS_PATH is prepended.
    attrs = (
        origin()
        + as_path([(AS_CONFED_SEQUENCE, (65010,)), (AS_SEQUENCE, (100, AS_TRANS))], width=2)
        + next_hop()
        + as4_path([(AS_SEQUENCE, (100, 4200000001))])
    )
    pu = as4_merge(codec, attrs)
    assert normal_path(decode_segments(attr_value(pu.attrs, AS_PATH))) == [
        (AS_CONFED_SEQUENCE, (65010,)),
        (AS_SEQUENCE, (100, 4200000001)),
    ]


def test_old_peer_longer_as4_path_ignored(codec):
    # RFC 6793 §4.2.3: AS_PATH shorter than AS4_PATH -> AS4_PATH ignored.
    attrs = origin() + as_path([(AS_SEQUENCE, (100, AS_TRANS))], width=2) + next_hop() + as4_path([(AS_SEQUENCE, (1, 2, 3))])
    pu = as4_merge(codec, attrs)
    assert decode_segments(attr_value(pu.attrs, AS_PATH)) == [(AS_SEQUENCE, (100, AS_TRANS))]


def test_old_peer_aggregator_not_as_trans_ignores_as4(codec):
    # RFC 6793 §4.2.3: AGGREGATOR not AS_TRANS -> AS4_AGGREGATOR *and*
    # AS4_PATH ignored; AGGREGATOR and AS_PATH are the information.
    attrs = (
        origin()
        + as_path([(AS_SEQUENCE, (100, AS_TRANS))], width=2)
        + next_hop()
        + aggregator(65000, "192.0.2.9", width=2)
        + as4_path([(AS_SEQUENCE, (100, 4200000001))])
        + as4_aggregator(4200000005, "192.0.2.10")
    )
    pu = as4_merge(codec, attrs)
    assert decode_segments(attr_value(pu.attrs, AS_PATH)) == [(AS_SEQUENCE, (100, AS_TRANS))]
    assert attr_value(pu.attrs, AGGREGATOR) == (65000).to_bytes(4, "big") + ip4("192.0.2.9")


def test_old_peer_aggregator_as_trans_takes_as4_aggregator(codec):
    attrs = (
        origin()
        + as_path([(AS_SEQUENCE, (100, AS_TRANS))], width=2)
        + next_hop()
        + aggregator(AS_TRANS, "192.0.2.9", width=2)
        + as4_path([(AS_SEQUENCE, (100, 4200000001))])
        + as4_aggregator(4200000005, "192.0.2.10")
    )
    pu = as4_merge(codec, attrs)
    assert normal_path(decode_segments(attr_value(pu.attrs, AS_PATH))) == [(AS_SEQUENCE, (100, 4200000001))]
    assert attr_value(pu.attrs, AGGREGATOR) == (4200000005).to_bytes(4, "big") + ip4("192.0.2.10")
    assert attr_types(pu.attrs) == [ORIGIN, AS_PATH, NEXT_HOP, AGGREGATOR]


def test_old_peer_confed_segments_dropped_from_as4_path(codec):
    """RFC 6793 §6: AS_CONFED_* segments in an AS4_PATH from an OLD speaker
    are discarded -- those segments, not the whole attribute -- "and the
    relevant attribute fields adjusted"; the rest of AS4_PATH is merged as
    usual.  AS_PATH 3 ASNs, AS4_PATH 2 after the discard -> [100] + AS4_PATH."""
    attrs = (
        origin()
        + as_path([(AS_SEQUENCE, (100, AS_TRANS, AS_TRANS))], width=2)
        + next_hop()
        + as4_path([(AS_CONFED_SEQUENCE, (65010,)), (AS_SEQUENCE, (4200000001, 4200000002))])
    )
    pu = as4_merge(codec, attrs)
    assert normal_path(decode_segments(attr_value(pu.attrs, AS_PATH))) == [(AS_SEQUENCE, (100, 4200000001, 4200000002))]


def test_new_peer_as4_attributes_discarded(codec):
    # RFC 6793 §6: AS4_PATH / AS4_AGGREGATOR between two NEW speakers are discarded.
    attrs = BASE_ATTRS + as4_path([(AS_SEQUENCE, (1, 2))]) + as4_aggregator(7) + aggregator(4200000001)
    pu = parse(codec, update_body(b"", attrs, BASE_NLRI))
    assert pu.attrs == BASE_ATTRS + aggregator(4200000001)
    assert pu.nlri == BASE_NLRI and pu.action != 2


# ---------------------------------------------------------------- End-of-RIB


def test_eor_ipv4(codec):
    # RFC 4724 §2: IPv4 unicast EoR = an UPDATE of minimum length.
    msg = codec.build_eor()
    assert msg == update() and len(msg) == 23
    assert parse(codec, body_of(msg)).is_eor


@pytest.mark.parametrize("afi,safi", [(2, 1), (1, 2), (2, 2)])
def test_eor_mp(codec, afi, safi):
    # RFC 4724 §2: other families: only an empty MP_UNREACH_NLRI for the family.
    msg = codec.build_eor(afi, safi)
    assert msg == update(attrs=mp_unreach(afi, safi))
    pu = parse(codec, body_of(msg))
    assert pu.is_eor and pu.mp_unreach == (afi, safi, b"")


@pytest.mark.parametrize(
    "body",
    [
        update_body(prefixes("10.0.0.0/8")),
        update_body(b"", BASE_ATTRS, BASE_NLRI),
        update_body(b"", mp_unreach(2, 1, V6_NLRI)),
        update_body(b"", mp_unreach(2, 1) + origin() + as_path()),
        update_body(b"", origin() + as_path() + mp_reach(2, 1, GUA, b"")),
    ],
    ids=["withdrawn", "announce", "mp-withdraw", "mp-unreach-plus-attrs", "empty-mp-reach"],
)
def test_not_eor(codec, body):
    assert not parse(codec, body).is_eor


# ---------------------------------------------------------------- prefix helpers


def test_count_prefixes(codec):
    assert codec.count_prefixes(b"") == 0
    assert codec.count_prefixes(BASE_NLRI) == 2
    assert codec.count_prefixes(V6_NLRI, 2) == 4
    assert codec.count_prefixes(prefix("10.0.0.0/8", 5) * 3, 1, True) == 3
    assert codec.count_prefixes(slash24s(1000)) == 1000


@pytest.mark.parametrize(
    "packed,afi,addpath",
    [
        (b"\x21\x0a\x00\x00\x00\x00", 1, False),  # /33
        (b"\x18\x0a\x00", 1, False),  # truncated
        (b"\x81" + bytes(17), 2, False),  # /129
        (b"\x00\x00\x00\x01", 1, True),  # path id, no length octet
        (b"\x18\x0a\x00\x00\x18", 1, False),  # second prefix cut
    ],
    ids=["v4-33", "v4-truncated", "v6-129", "addpath-no-length", "second-cut"],
)
def test_count_prefixes_malformed(codec, packed, afi, addpath):
    with pytest.raises(ValueError):
        codec.count_prefixes(packed, afi, addpath)
    with pytest.raises(ValueError):
        codec.unpack_prefixes(packed, afi, addpath)


def test_unpack_masks_trailing_host_bits(codec):
    # RFC 4271 §4.3: bits past the prefix length are irrelevant.
    packed = bytes((23, 10, 0, 1)) + bytes((25, 10, 0, 0, 0xFF)) + bytes((1, 0xFF)) + bytes((0,)) + bytes((32, 1, 2, 3, 4))
    assert codec.unpack_prefixes(packed) == [
        (0, ip4("10.0.0.0"), 23),
        (0, ip4("10.0.0.128"), 25),
        (0, ip4("128.0.0.0"), 1),
        (0, ip4("0.0.0.0"), 0),
        (0, ip4("1.2.3.4"), 32),
    ]
    v6 = bytes((127,)) + b"\x20\x01\x0d\xb8" + b"\xff" * 12 + bytes((12,)) + b"\x20\x1f"
    assert codec.unpack_prefixes(v6, 2) == [
        (0, ip6("2001:db8:ffff:ffff:ffff:ffff:ffff:fffe"), 127),
        (0, ip6("2010::"), 12),
    ]


def test_pack_prefixes_inverse(codec):
    for packed, afi, ap in (
        (BASE_NLRI + V4_WD, 1, False),
        (V6_NLRI, 2, False),
        (prefix("10.0.0.0/24", 9) + prefix("0.0.0.0/0", 0), 1, True),
    ):
        entries = codec.unpack_prefixes(packed, afi, ap)
        assert codec.pack_prefixes(entries, ap) == packed
        assert pack(entries, ap) == packed


def test_pack_prefixes_drops_extra_address_octets(codec):
    assert codec.pack_prefixes([(0, ip4("10.1.2.3"), 16)]) == b"\x10\x0a\x01"
    assert codec.pack_prefixes([(5, ip4("10.1.2.3"), 8)], True) == b"\x00\x00\x00\x05\x08\x0a"


# ---------------------------------------------------------------- pack_updates


def reparse(codec, msgs, ctx, limit=4096):
    """Parse every message; check size, type and the RFC 7606 §5.1 rule that
    one UPDATE carries only one of withdrawn / NLRI / MP_REACH / MP_UNREACH."""
    out = []
    for m in msgs:
        assert len(m) <= limit
        assert m[18] == 2
        pu = codec.parse_update(body_of(m), ctx)
        assert pu.action == 0 and pu.errors == ()
        carriers = [bool(pu.withdrawn), bool(pu.nlri), pu.mp_reach is not None, pu.mp_unreach is not None]
        assert sum(carriers) == 1, carriers
        out.append(pu)
    return out


# Unknown attribute of 2 octets makes the block 25 octets: room for NLRI is
# then 4096 - 19 - 4 - 25 = 4048, a whole number of /24s (4 octets each).
ATTRS_25 = BASE_ATTRS + attr(0xC0, 99, b"xy")


@pytest.mark.parametrize("n", [1, 1011, 1012, 1013, 2024, 5000, 10000])
def test_pack_updates_fewest_messages(codec, n):
    nlri = slash24s(n)
    msgs = codec.pack_updates(ATTRS_25, nlri)
    room = 4096 - 19 - 4 - len(ATTRS_25)
    assert room % 4 == 0
    assert len(msgs) == math.ceil(len(nlri) / room) == math.ceil(n / (room // 4))
    pus = reparse(codec, msgs, IBGP)
    assert b"".join(p.nlri for p in pus) == nlri
    assert all(p.attrs == ATTRS_25 for p in pus)
    assert sum(p.n_announced for p in pus) == n
    # Every message but the last is filled to the brim.
    assert all(len(m) == 4096 for m in msgs[:-1])


def test_pack_updates_mixed_lengths_in_order(codec):
    entries = [(0, (k * 7919 % 2**32).to_bytes(4, "big"), k % 33) for k in range(3000)]
    entries = [(p, bytes(a[: (l + 7) // 8]) + bytes(4 - (l + 7) // 8), l) for p, a, l in entries]
    nlri = pack(entries)
    msgs = codec.pack_updates(BASE_ATTRS, nlri)
    pus = reparse(codec, msgs, IBGP)
    assert b"".join(p.nlri for p in pus) == nlri
    # Greedy fill: nothing of the next message would have fitted in this one.
    room = 4096 - 23 - len(BASE_ATTRS)
    for m, nxt in zip(pus, pus[1:]):
        first = 1 + (nxt.nlri[0] + 7) // 8
        assert len(m.nlri) + first > room


def test_pack_updates_empty(codec):
    assert codec.pack_updates(BASE_ATTRS, b"") == []
    assert codec.pack_withdraws(b"") == []


def test_pack_updates_attributes_too_big(codec):
    with pytest.raises(ValueError):
        codec.pack_updates(BASE_ATTRS + attr(0xC0, 99, bytes(4060)), slash24s(1))


def test_pack_updates_extended_message(codec):
    # RFC 8654: with the capability, UPDATEs may reach 65535 octets.
    ctx = Context(extended_message=True)
    nlri = slash24s(20000)
    msgs = codec.pack_updates(ATTRS_25, nlri, ctx)
    room = 65535 - 19 - 4 - len(ATTRS_25)
    assert len(msgs) == math.ceil(20000 / (room // 4)) == 2
    assert len(msgs[0]) > 4096
    pus = reparse(codec, msgs, ctx, limit=65535)
    assert b"".join(p.nlri for p in pus) == nlri


def test_pack_updates_ipv6(codec):
    attrs = origin() + as_path([(AS_SEQUENCE, (65001, 4200000001))])
    nh = GUA + LL
    entries = [(0, (0x20010DB8 << 96 | k << 80).to_bytes(16, "big"), 48) for k in range(3000)]
    nlri = pack(entries)
    msgs = codec.pack_updates(attrs, nlri, IBGP, 2, 1, nh)
    fixed = 4 + len(nh) + 1
    room = 4096 - 19 - 4 - len(attrs) - 4 - fixed
    assert len(msgs) == math.ceil(3000 / (room // 7))
    pus = reparse(codec, msgs, IBGP)
    assert b"".join(p.mp_reach[3] for p in pus) == nlri
    assert all(p.mp_reach[:3] == (2, 1, nh) for p in pus)
    assert all(p.attrs == attrs for p in pus)
    # RFC 7606 §5.1: MP_REACH_NLRI is encoded as the very first attribute.
    for m in msgs:
        assert split_attrs(body_of(m)[4:])[0][1] == 14


def test_pack_updates_small_mp_reach(codec):
    msgs = codec.pack_updates(origin() + as_path(), V6_NLRI, IBGP, 2, 1, GUA)
    assert len(msgs) == 1
    assert body_of(msgs[0]) == update_body(b"", mp_reach(2, 1, GUA, V6_NLRI) + origin() + as_path())


def test_pack_updates_ipv4_via_mp_reach(codec):
    # With an explicit next hop IPv4 unicast goes in MP_REACH_NLRI (RFC 8950 style).
    msgs = codec.pack_updates(origin() + as_path(), BASE_NLRI, IBGP, 1, 1, GUA)
    (pu,) = reparse(codec, msgs, IBGP)
    assert pu.mp_reach == (1, 1, GUA, BASE_NLRI) and pu.nlri == b""


@pytest.mark.parametrize("afi", [1, 2])
def test_pack_updates_addpath_tx(codec, afi):
    tx = Context(addpath_tx=frozenset({(afi, 1)}))
    rx = Context(addpath_rx=frozenset({(afi, 1)}))
    width = 4 if afi == 1 else 16
    entries = [(k % 4 + 1, (k << 8).to_bytes(width, "big"), 24 if afi == 1 else 120) for k in range(2500)]
    nlri = pack(entries, True)
    if afi == 1:
        msgs = codec.pack_updates(BASE_ATTRS, nlri, tx)
        pus = reparse(codec, msgs, rx)
        got = b"".join(p.nlri for p in pus)
        room = 4096 - 23 - len(BASE_ATTRS)
        assert len(msgs) == math.ceil(2500 / (room // 8))
    else:
        msgs = codec.pack_updates(origin() + as_path(), nlri, tx, 2, 1, GUA)
        pus = reparse(codec, msgs, rx)
        got = b"".join(p.mp_reach[3] for p in pus)
    assert got == nlri
    assert codec.unpack_prefixes(got, afi, True) == entries


def test_pack_updates_old_peer(codec):
    # RFC 6793 §4.2.2: to an OLD speaker wide ASNs become AS_TRANS and the
    # real ones travel in AS4_PATH / AS4_AGGREGATOR.
    canonical = (
        origin()
        + as_path([(AS_CONFED_SEQUENCE, (65010,)), (AS_SEQUENCE, (65001, 4200000001)), (AS_SET, (4200000002, 7))])
        + next_hop()
        + aggregator(4200000003, "192.0.2.5")
        + communities(0xFFFFFF01)
    )
    msgs = codec.pack_updates(canonical, BASE_NLRI, OLD)
    assert len(msgs) == 1
    raw = body_of(msgs[0])
    block = raw[4 : 4 + int.from_bytes(raw[2:4], "big")]
    assert decode_segments(attr_value(block, AS_PATH), 2) == [
        (AS_CONFED_SEQUENCE, (65010,)),
        (AS_SEQUENCE, (65001, AS_TRANS)),
        (AS_SET, (AS_TRANS, 7)),
    ]
    # RFC 6793 §4.2.2: no confederation segments in AS4_PATH.
    assert decode_segments(attr_value(block, AS4_PATH)) == [(AS_SEQUENCE, (65001, 4200000001)), (AS_SET, (4200000002, 7))]
    assert attr_value(block, AGGREGATOR) == AS_TRANS.to_bytes(2, "big") + ip4("192.0.2.5")
    assert attr_value(block, AS4_AGGREGATOR) == (4200000003).to_bytes(4, "big") + ip4("192.0.2.5")
    assert attr_value(block, COMMUNITIES) == (0xFFFFFF01).to_bytes(4, "big")
    (pu,) = reparse(codec, msgs, OLD)
    assert pu.attrs == canonical


def test_pack_updates_old_peer_wide_asn_only_in_confed_segment(codec):
    """RFC 6793 §4.2.2 keeps confederation segments out of AS4_PATH; when
    every wide ASN sits in one, nothing is left for AS4_PATH and none may be
    sent: an AS4_PATH shorter than 6 octets is malformed (RFC 6793 §6) and
    the OLD peer's NEW downstream would discard it with an error."""
    canonical = origin() + as_path([(AS_CONFED_SEQUENCE, (4200000001, 65010))]) + next_hop()
    (msg,) = codec.pack_updates(canonical, BASE_NLRI, OLD)
    raw = body_of(msg)
    block = raw[4 : 4 + int.from_bytes(raw[2:4], "big")]
    as4 = attr_value(block, AS4_PATH)
    assert as4 is None or len(as4) >= 6, "empty AS4_PATH sent"
    assert decode_segments(attr_value(block, AS_PATH), 2) == [(AS_CONFED_SEQUENCE, (AS_TRANS, 65010))]
    pu = codec.parse_update(raw, OLD)
    assert pu.action == 0 and pu.errors == ()


def test_pack_updates_old_peer_narrow_asns(codec):
    canonical = origin() + as_path([(AS_SEQUENCE, (65001, 65002))]) + next_hop() + aggregator(65003)
    msgs = codec.pack_updates(canonical, BASE_NLRI, OLD)
    block = body_of(msgs[0])[4:-len(BASE_NLRI)]
    assert block == origin() + as_path([(AS_SEQUENCE, (65001, 65002))], width=2) + next_hop() + aggregator(65003, width=2)
    (pu,) = reparse(codec, msgs, OLD)
    assert pu.attrs == canonical


# ---------------------------------------------------------------- pack_withdraws


@pytest.mark.parametrize("n", [1, 1018, 1019, 4073, 9000])
def test_pack_withdraws_ipv4(codec, n):
    nlri = slash24s(n)
    msgs = codec.pack_withdraws(nlri)
    room = 4096 - 19 - 4
    # Prefixes are never split, so the greedy fill of whole /24s is optimal.
    assert len(msgs) == math.ceil(n / (room // 4)) >= math.ceil(len(nlri) / room)
    pus = reparse(codec, msgs, IBGP)
    assert b"".join(p.withdrawn for p in pus) == nlri
    assert all(p.attrs == b"" and p.nlri == b"" for p in pus)


def test_pack_withdraws_ipv6(codec):
    entries = [(0, (0x20010DB8 << 96 | k << 64).to_bytes(16, "big"), 64) for k in range(1500)]
    nlri = pack(entries)
    msgs = codec.pack_withdraws(nlri, IBGP, 2, 1)
    room = 4096 - 19 - 4 - 4 - 3
    assert len(msgs) == math.ceil(1500 / (room // 9))
    pus = reparse(codec, msgs, IBGP)
    assert b"".join(p.mp_unreach[2] for p in pus) == nlri
    assert all(p.mp_unreach[:2] == (2, 1) and p.attrs == b"" for p in pus)


def test_pack_withdraws_small_ipv6(codec):
    (msg,) = codec.pack_withdraws(V6_NLRI, IBGP, 2, 1)
    assert body_of(msg) == update_body(b"", mp_unreach(2, 1, V6_NLRI))


def test_pack_withdraws_extended_and_addpath(codec):
    tx = Context(extended_message=True, addpath_tx=frozenset({(1, 1)}))
    rx = Context(extended_message=True, addpath_rx=frozenset({(1, 1)}))
    nlri = pack([(k, (k << 8).to_bytes(4, "big"), 24) for k in range(10000)], True)
    msgs = codec.pack_withdraws(nlri, tx)
    assert len(msgs) == math.ceil(10000 / ((65535 - 23) // 8)) == 2
    pus = reparse(codec, msgs, rx, limit=65535)
    assert b"".join(p.withdrawn for p in pus) == nlri


def test_pack_then_parse_keeps_other_attributes_verbatim(codec):
    attrs = BASE_ATTRS + med(5) + local_pref(7) + atomic_aggregate() + large_communities((1, 2, 3)) + attr(0xE0, 200, b"\x01")
    (msg,) = codec.pack_updates(attrs, BASE_NLRI)
    assert msg == update(b"", attrs, BASE_NLRI)
    assert parse(codec, body_of(msg)).attrs == attrs
