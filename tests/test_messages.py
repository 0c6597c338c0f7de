"""The decoded message views (fastbgp.wire.messages) on both codecs."""

import msgspec
import pytest

from fastbgp.wire import as4
from fastbgp.wire import capabilities as caps
from fastbgp.wire import communities
from fastbgp.wire import messages as m
from fastbgp.wire.types import Context
from fastbgp.wire.constants import AS_TRANS
from fastbgp.wire.errors import BGPError


def attr(flags, t, value):
    return as4.encode_attr(flags, t, value)


def update_body(attrs=b"", nlri=b"", withdrawn=b""):
    return len(withdrawn).to_bytes(2, "big") + withdrawn + len(attrs).to_bytes(2, "big") + attrs + nlri


def u32(v):
    return v.to_bytes(4, "big")


ORIGIN = attr(0x40, 1, b"\x00")
AS_PATH = attr(0x40, 2, b"\x02\x02" + u32(65001) + u32(4200000000))
NEXT_HOP = attr(0x40, 3, bytes([192, 0, 2, 1]))
BASE = ORIGIN + AS_PATH + NEXT_HOP
NLRI = bytes([24, 198, 51, 100, 32, 203, 0, 113, 7])  # 198.51.100.0/24, 203.0.113.7/32


def mp_reach(afi, safi, nh, nlri, flags=0x80):
    return attr(flags, 14, afi.to_bytes(2, "big") + bytes([safi, len(nh)]) + nh + b"\x00" + nlri)


def mp_unreach(afi, safi, nlri, flags=0x80):
    return attr(flags, 15, afi.to_bytes(2, "big") + bytes([safi]) + nlri)


V6_NH = bytes.fromhex("20010db8000000000000000000000001")
V6_LL = bytes.fromhex("fe800000000000000000000000000001")
V6_NLRI = bytes([32, 0x20, 0x01, 0x0D, 0xB8, 128]) + bytes.fromhex("20010db8000000000000000000000099")


# ---------------------------------------------------------------- UPDATE


def test_every_attribute(codec):
    attrs = (
        ORIGIN
        + attr(0x40, 2, b"\x01\x02" + u32(1) + u32(2) + b"\x02\x01" + u32(3))  # AS_SET then AS_SEQUENCE
        + NEXT_HOP
        + attr(0x80, 4, u32(50))
        + attr(0x40, 5, u32(200))
        + attr(0x40, 6, b"")
        + attr(0xC0, 7, u32(4200000000) + bytes([10, 0, 0, 1]))
        + attr(0xC0, 8, u32(0xFDE90001) + u32(0xFFFFFF01))
        + attr(0x80, 9, bytes([10, 0, 0, 2]))
        + attr(0x80, 10, bytes([10, 0, 0, 3, 10, 0, 0, 4]))
        + attr(0xC0, 16, bytes.fromhex("0002fde900000064"))
        + attr(0xC0, 32, u32(65001) + u32(1) + u32(2))
        + attr(0xC0, 35, u32(65001))
        + attr(0xE0, 99, b"opaque")  # unknown optional transitive, Partial bit set
    )
    body = update_body(attrs, NLRI, withdrawn=bytes([8, 10]))
    u = m.decode_update(body, impl=codec)
    kinds = [type(a) for a in u.attributes]
    assert kinds == [
        m.Origin,
        m.AsPath,
        m.NextHop,
        m.Med,
        m.LocalPref,
        m.AtomicAggregate,
        m.Aggregator,
        m.Communities,
        m.OriginatorId,
        m.ClusterList,
        m.ExtCommunities,
        m.LargeCommunities,
        m.Otc,
        m.Unknown,
    ]
    assert u.withdrawn == [m.Prefix("10.0.0.0/8")]
    assert u.nlri == [m.Prefix("198.51.100.0/24"), m.Prefix("203.0.113.7/32")]
    assert u.origin == 0
    assert u.as_path == [m.Segment(1, [1, 2]), m.Segment(2, [3])]
    assert u.as_path_asns() == [1, 2, 3]
    assert u.next_hop == "192.0.2.1"
    assert (u.med, u.local_pref) == (50, 200)
    assert u.get(7) == m.Aggregator(4200000000, "10.0.0.1")
    assert u.communities == [0xFDE90001, 0xFFFFFF01]
    assert u.get(8).strings() == ["65001:1", "no-export"]
    assert u.get(9) == m.OriginatorId("10.0.0.2")
    assert u.get(10).ids == ["10.0.0.3", "10.0.0.4"]
    assert u.ext_communities == [0x0002FDE900000064]
    assert u.get(16).strings() == ["target:65001:100"]
    assert u.large_communities == [(65001, 1, 2)]
    assert u.get(35) == m.Otc(65001)
    assert u.get(99) == m.Unknown(99, b"opaque", 0xE0)
    assert u.get(200) is None and u.mp_reach is None
    assert u.announced() == [((1, 1), p) for p in u.nlri]
    assert u.withdrawals() == [((1, 1), m.Prefix("10.0.0.0/8"))]
    assert u.action == 0 and u.errors == [] and not u.is_eor
    assert m.encode_update(u, impl=codec) == body


@pytest.mark.parametrize("where", [0, 1, 3])
@pytest.mark.parametrize("ext", [False, True])
def test_mp_reach_keeps_its_place_and_flags(codec, where, ext):
    reach = mp_reach(2, 1, V6_NH, V6_NLRI, flags=0x90 if ext else 0x80)
    parts = [ORIGIN, AS_PATH, attr(0x40, 5, u32(100))]
    parts.insert(where, reach)
    body = update_body(b"".join(parts))
    u = m.decode_update(body, impl=codec)
    assert isinstance(u.attributes[where], m.MpReach)
    mp = u.mp_reach
    assert mp.flags == (0x90 if ext else 0x80)
    assert mp.next_hops == ["2001:db8::1"]
    assert mp.nlri == [m.Prefix("2001:db8::/32"), m.Prefix("2001:db8::99/128")]
    assert u.next_hop == "2001:db8::1"
    assert m.encode_update(u, impl=codec) == body


def test_mp_reach_and_unreach_together(codec):
    unreach = mp_unreach(2, 1, bytes([48, 0x20, 0x01, 0x0D, 0xB8, 0, 1]))
    body = update_body(unreach + ORIGIN + AS_PATH + mp_reach(2, 1, V6_NH + V6_LL, V6_NLRI))
    u = m.decode_update(body, impl=codec)
    assert isinstance(u.attributes[0], m.MpUnreach) and isinstance(u.attributes[-1], m.MpReach)
    assert u.mp_reach.next_hops == ["2001:db8::1", "fe80::1"]  # RFC 2545 §3 global + link-local
    assert u.withdrawals() == [((2, 1), m.Prefix("2001:db8:1::/48"))]
    assert len(u.announced()) == 2
    assert m.encode_update(u, impl=codec) == body


def test_ipv4_nlri_with_ipv6_next_hop(codec):
    # RFC 8950: IPv4 unicast NLRI in MP_REACH_NLRI with a 16-octet next hop.
    body = update_body(ORIGIN + AS_PATH + mp_reach(1, 1, V6_NH, NLRI))
    u = m.decode_update(body, impl=codec)
    assert u.mp_reach.next_hops == ["2001:db8::1"]
    assert [p for _f, p in u.announced()] == [m.Prefix("198.51.100.0/24"), m.Prefix("203.0.113.7/32")]
    assert m.encode_update(u, impl=codec) == body


def test_opaque_family_round_trip(codec):
    # A VPNv4 (SAFI 128) route: next hop = 8-octet RD + IPv4, NLRI = label + RD + prefix.
    nh = bytes(8) + bytes([192, 0, 2, 1])
    nlri = bytes.fromhex("70" "0003e9" "0000fde900000001" "0a0000")
    body = update_body(ORIGIN + AS_PATH + mp_reach(1, 128, nh, nlri) + attr(0xC0, 16, bytes.fromhex("0002fde900000001")))
    u = m.decode_update(body, impl=codec)
    mp = u.mp_reach
    assert (mp.afi, mp.safi, mp.raw_next_hop, mp.raw, mp.nlri, mp.next_hops) == (1, 128, nh, nlri, [], [])
    assert m.encode_update(u, impl=codec) == body
    eor = update_body(mp_unreach(1, 128, b""))
    assert m.encode_update(m.decode_update(eor, impl=codec), impl=codec) == eor


def test_extended_length_and_partial_flags_survive(codec):
    attrs = attr(0x50, 1, b"\x02") + attr(0x50, 2, b"") + attr(0x50, 3, bytes([192, 0, 2, 9])) + attr(0xD0, 8, u32(1)) + attr(0xF0, 200, b"x")
    body = update_body(attrs, NLRI)
    u = m.decode_update(body, impl=codec)
    assert [a.flags for a in u.attributes] == [0x50, 0x50, 0x50, 0xD0, 0xF0]
    assert m.encode_update(u, impl=codec) == body


def test_addpath(codec):
    nlri = u32(7) + bytes([24, 198, 51, 100]) + u32(8) + bytes([24, 198, 51, 100])
    v6 = u32(1) + V6_NLRI[:5] + u32(2) + V6_NLRI[5:]
    body = update_body(BASE + mp_reach(2, 1, V6_NH, v6), nlri, withdrawn=u32(9) + bytes([8, 10]))
    fams = frozenset({(1, 1), (2, 1)})
    u = m.decode_update(body, Context(addpath_rx=fams), impl=codec)
    assert u.nlri == [m.Prefix("198.51.100.0/24", 7), m.Prefix("198.51.100.0/24", 8)]
    assert u.withdrawn == [m.Prefix("10.0.0.0/8", 9)]
    assert [p.path_id for p in u.mp_reach.nlri] == [1, 2]
    assert str(u.nlri[0]) == "198.51.100.0/24 path-id 7"
    assert m.encode_update(u, Context(addpath_tx=fams), impl=codec) == body
    # Without ADD-PATH on the sending side the path ids cannot be written...
    with pytest.raises(ValueError):
        m.encode_update(u, impl=codec)
    # ...and with it every prefix needs one.
    u.nlri.append(m.Prefix("192.0.2.0/24"))
    with pytest.raises(ValueError):
        m.encode_update(u, Context(addpath_tx=fams), impl=codec)


def test_built_by_hand(codec):
    u = m.Update(
        withdrawn=[m.Prefix("10.1.0.0/16")],
        attributes=[
            m.Origin(2),
            m.AsPath([m.Segment(2, [65001, 65002])]),
            m.NextHop("192.0.2.1"),
            m.Communities([communities.parse_community("65001:7"), communities.parse_community("blackhole")]),
            m.MpReach(2, 1, ["2001:db8::1"], [m.Prefix("2001:db8:5::/48")]),
        ],
        nlri=[m.Prefix("198.51.100.0/24")],
    )
    body = m.encode_update(u, impl=codec)
    assert m.decode_update(body, impl=codec) == u
    # The default flags are the RFC ones: ORIGIN opens the attributes.
    assert body[2 + 3 + 2 :][:3] == b"\x40\x01\x01"
    # The same, as one framed message.
    msg = m.encode_message(u, impl=codec)
    assert msg[18] == 2 and msg[19:] == body
    assert m.decode_framed(msg, impl=codec) == u


@pytest.mark.parametrize("prefix", ["10.0.0.1/8", "2001:db8::/32", "nonsense"])
def test_bad_prefixes_refused(codec, prefix):
    u = m.Update(attributes=[m.Origin(0), m.AsPath(), m.NextHop("192.0.2.1")], nlri=[m.Prefix(prefix)])
    with pytest.raises(ValueError):
        m.encode_update(u, impl=codec)


def test_unknown_family_needs_raw(codec):
    u = m.Update(attributes=[m.MpUnreach(1, 128, [m.Prefix("10.0.0.0/8")])])
    with pytest.raises(ValueError):
        m.encode_update(u, impl=codec)


def test_message_size_limit(codec):
    many = [m.Prefix("10.%d.%d.0/24" % (i >> 8, i & 255)) for i in range(1200)]  # 4800 octets
    u = m.Update(attributes=[m.Origin(0), m.AsPath(), m.NextHop("192.0.2.1")], nlri=many)
    with pytest.raises(ValueError):
        m.encode_update(u, impl=codec)
    big = Context(extended_message=True)
    body = m.encode_update(u, big, impl=codec)
    assert m.decode_update(body, big, impl=codec) == u
    # An extended-length attribute is still written correctly.
    u2 = m.Update(attributes=[m.Origin(0), m.AsPath(), m.NextHop("192.0.2.1"), m.Communities(list(range(100)))])
    body = m.encode_update(u2, impl=codec)
    back = m.decode_update(body, impl=codec)
    assert back.communities == list(range(100)) and back.get(8).flags == 0xD0


def test_treat_as_withdraw(codec):
    # RFC 7606 §7.1: an ORIGIN value of 3 turns the announcement into a withdrawal.
    body = update_body(attr(0x40, 1, b"\x03") + AS_PATH + NEXT_HOP, NLRI)
    u = m.decode_update(body, impl=codec)
    assert u.treat_as_withdraw and u.action == 2
    assert u.attributes == [] and u.nlri == []
    assert u.withdrawn == [m.Prefix("198.51.100.0/24"), m.Prefix("203.0.113.7/32")]
    assert len(u.errors) == 1 and "ORIGIN" in u.errors[0]
    with pytest.raises(BGPError) as info:
        m.decode_update(body, impl=codec, strict=True)
    assert (info.value.code, info.value.subcode) == (3, 6)


def test_treat_as_withdraw_moves_mp_reach(codec):
    body = update_body(attr(0x40, 1, b"\x07") + AS_PATH + mp_reach(2, 1, V6_NH, V6_NLRI))
    u = m.decode_update(body, impl=codec)
    assert u.attributes == [m.MpUnreach(2, 1, [m.Prefix("2001:db8::/32"), m.Prefix("2001:db8::99/128")])]


def test_session_reset_errors_propagate(codec):
    with pytest.raises(BGPError) as info:
        m.decode_update(b"\x00\x05\x00", impl=codec)
    assert info.value.code == 3


@pytest.mark.parametrize(
    "body,family",
    [
        (b"\x00\x00\x00\x00", (1, 1)),
        (update_body(mp_unreach(2, 1, b"")), (2, 1)),
        (update_body(mp_unreach(1, 133, b"")), (1, 133)),
    ],
)
def test_end_of_rib(codec, body, family):
    u = m.decode_update(body, impl=codec)
    assert u.is_eor and u.eor_family == family
    assert m.encode_update(u, impl=codec) == body


def test_not_end_of_rib(codec):
    assert not m.decode_update(update_body(BASE, NLRI), impl=codec).is_eor
    assert not m.decode_update(update_body(b"", b"", bytes([8, 10])), impl=codec).is_eor


# ---------------------------------------------------------------- 2-octet AS sessions (RFC 6793)


def two_octet_wire(prepended=False):
    """An UPDATE for a 2-octet session as a 4-octet speaker sends it (RFC
    6793 §4.2.2): AS_TRANS in AS_PATH and AGGREGATOR, the real numbers in
    AS4_PATH / AS4_AGGREGATOR at the end (where to_2octet puts them).
    ``prepended``: an old 2-octet speaker then added AS 65010 to AS_PATH
    only, so AS4_PATH is shorter (RFC 6793 §4.2.3)."""
    path = [AS_TRANS, 65001]
    if prepended:
        path = [65010] + path
    as_path = bytes([2, len(path)]) + b"".join(a.to_bytes(2, "big") for a in path)
    as4_path = b"\x02\x02" + u32(4200000001) + u32(65001)
    attrs = (
        ORIGIN
        + attr(0x40, 2, as_path)
        + NEXT_HOP
        + attr(0xC0, 7, AS_TRANS.to_bytes(2, "big") + bytes([10, 0, 0, 1]))
        + attr(0xC0, 17, as4_path)
        + attr(0xC0, 18, u32(4200000001) + bytes([10, 0, 0, 1]))
    )
    return update_body(attrs, NLRI), attrs


def test_two_octet_session_merges_and_splits(codec):
    body, _attrs = two_octet_wire()
    old = Context(as4=False)
    u = m.decode_update(body, old, impl=codec)
    # RFC 6793 §4.2.3: AS4_PATH / AS4_AGGREGATOR merged into the 4-octet view.
    assert u.as_path_asns() == [4200000001, 65001]
    assert u.get(7) == m.Aggregator(4200000001, "10.0.0.1")
    assert u.get(17) is None and u.get(18) is None
    # RFC 6793 §4.2.2: sending to a 2-octet peer recreates the same octets.
    assert m.encode_update(u, old, impl=codec) == body
    # To a 4-octet peer it goes out as plain 4-octet attributes.
    new_body = m.encode_update(u, impl=codec)
    assert b"\xc0\x11" not in new_body and b"\xc0\x12" not in new_body
    assert m.decode_update(new_body, impl=codec) == u


def test_two_octet_session_with_old_speaker_prepend(codec):
    body, _attrs = two_octet_wire(prepended=True)
    old = Context(as4=False)
    u = m.decode_update(body, old, impl=codec)
    # RFC 6793 §4.2.3: the AS the old speaker added stays in front.
    assert u.as_path_asns() == [65010, 4200000001, 65001]
    # Re-sent to a 2-octet peer, AS4_PATH now carries the whole path.
    again = m.encode_update(u, old, impl=codec)
    raw = m.decode_attributes(again[4 : len(again) - len(NLRI)], as4=False, impl=codec)
    assert [a.asns() for a in raw if isinstance(a, m.AS4Path)] == [[65010, 4200000001, 65001]]
    assert m.decode_update(again, old, impl=codec).as_path_asns() == u.as_path_asns()


def test_raw_two_octet_block(codec):
    _body, attrs = two_octet_wire()
    raw = m.decode_attributes(attrs, as4=False, impl=codec)
    assert [type(a) for a in raw] == [m.Origin, m.AsPath, m.NextHop, m.Aggregator, m.AS4Path, m.AS4Aggregator]
    assert raw[1].asns() == [AS_TRANS, 65001]
    assert raw[3].asn == AS_TRANS
    assert raw[4].asns() == [4200000001, 65001]
    assert raw[5] == m.AS4Aggregator(4200000001, "10.0.0.1")
    assert m.encode_attributes(raw, as4=False, impl=codec) == attrs


@pytest.mark.parametrize("block", [b"\x40\x01", b"\x40\x01\x02\x00", b"\x50\x01\x00", b"\x40\x03\x03\x01\x02\x03", b"\x40\x02\x04\x02\x02\x00\x01"])
def test_decode_attributes_rejects_garbage(block):
    with pytest.raises(ValueError):
        m.decode_attributes(block)


# ---------------------------------------------------------------- JSON


def sample_update(codec):
    body = update_body(BASE + attr(0xC0, 32, u32(1) + u32(2) + u32(3)) + attr(0xC0, 99, b"\x00\xff") + mp_reach(2, 1, V6_NH, V6_NLRI), NLRI)
    return m.decode_update(body, impl=codec)


def test_json_round_trip(codec):
    u = sample_update(codec)
    data = msgspec.json.encode(u)
    obj = msgspec.json.decode(data)
    assert obj["type"] == "update"
    assert [a["kind"] for a in obj["attributes"]] == ["origin", "as-path", "next-hop", "large-communities", "unknown", "mp-reach"]
    assert obj["attributes"][4]["value"] == "AP8="  # bytes as base64
    assert msgspec.json.decode(data, type=m.Update) == u
    assert msgspec.json.decode(data, type=m.AnyMessage) == u


def test_json_of_every_message_kind():
    msgs = [
        m.Keepalive(),
        m.RouteRefresh(1, 1, 1),
        m.Notification(6, 2, m.build_shutdown_data("bye")),
        m.Open(4, 65001, 90, "192.0.2.1", [caps.Multiprotocol(1, 1), caps.FourOctetAS(65001)]),
        m.Update(attributes=[m.MpUnreach(1, 128, raw=b"\x01")]),
    ]
    for msg in msgs:
        assert msgspec.json.decode(msgspec.json.encode(msg), type=m.AnyMessage) == msg


@pytest.mark.parametrize(
    "data",
    [
        b'{"type":"update","surprise":1}',
        b'{"type":"update","attributes":[{"kind":"origin","value":0,"flags":64,"extra":true}]}',
        b'{"type":"update","attributes":[{"kind":"no-such-attribute"}]}',
        b'{"type":"update","nlri":[{"prefix":"10.0.0.0/8","path":1}]}',
        b'{"type":"open","version":4,"asn":1,"hold_time":90,"bgp_id":"1.1.1.1","capabilities":[{"kind":"role","role":1,"x":0}]}',
        b'{"type":"nonsense"}',
    ],
)
def test_json_rejects_what_it_does_not_know(data):
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(data, type=m.AnyMessage)


def test_json_built_update_encodes(codec):
    data = (
        b'{"type":"update","attributes":[{"kind":"origin","value":0},'
        b'{"kind":"as-path","segments":[{"type":2,"asns":[65001]}]},'
        b'{"kind":"next-hop","address":"192.0.2.1"}],"nlri":[{"prefix":"198.51.100.0/24"}]}'
    )
    u = msgspec.json.decode(data, type=m.Update)
    assert m.decode_update(m.encode_update(u, impl=codec), impl=codec) == u


# ---------------------------------------------------------------- OPEN


def test_open_round_trip(codec):
    o = m.Open(
        4,
        AS_TRANS,
        180,
        "10.0.0.2",
        [
            caps.Multiprotocol(1, 1),
            caps.Multiprotocol(2, 1),
            caps.FourOctetAS(4200000000),
            caps.RouteRefresh(),
            caps.AddPath([(1, 1, 3)]),
            caps.GracefulRestart(0x8, 120, [(1, 1, 0x80)]),
            caps.FQDN("r1", "example.net"),
            caps.UnknownCapability(75, b"\x03abc"),
        ],
    )
    body = m.encode_open(o, impl=codec)
    assert m.decode_open(body, impl=codec) == o
    assert o.effective_asn == 4200000000
    assert o.get(caps.Multiprotocol) == [caps.Multiprotocol(1, 1), caps.Multiprotocol(2, 1)]
    assert m.decode_message(1, body, impl=codec) == o
    assert m.decode_framed(m.encode_message(o, impl=codec), impl=codec) == o
    assert m.Open(4, 65001, 90, "1.2.3.4").effective_asn == 65001


def test_open_wide_asn_goes_out_as_as_trans(codec):
    body = m.encode_open(m.Open(4, 4200000000, 90, "1.2.3.4", [caps.FourOctetAS(4200000000)]), impl=codec)
    assert m.decode_open(body, impl=codec).asn == AS_TRANS


def test_open_with_other_version_is_refused_by_the_receiver(codec):
    body = m.encode_open(m.Open(3, 65001, 90, "1.2.3.4"), impl=codec)
    assert body[0] == 3
    with pytest.raises(BGPError) as info:
        m.decode_open(body, impl=codec)
    assert (info.value.code, info.value.subcode) == (2, 1)


def test_open_with_malformed_capability(codec):
    msg = codec.build_open(65001, 90, 1, [(65, b"\x00\x01")])
    with pytest.raises(BGPError) as info:
        m.decode_open(msg[19:], impl=codec)
    assert (info.value.code, info.value.subcode) == (2, 0)


# ---------------------------------------------------------------- NOTIFICATION and shutdown communication


# RFC 8203 §5 illustrates the feature with a ticket reference and a reason.
RFC8203_TEXT = "[TICKET-1-1438367390] software upgrade; back in 2 hours"


@pytest.mark.parametrize("subcode", [2, 4])
def test_shutdown_communication(codec, subcode):
    data = m.build_shutdown_data(RFC8203_TEXT)
    assert data[0] == len(RFC8203_TEXT) and data[1:] == RFC8203_TEXT.encode()
    n = m.Notification(6, subcode, data)
    assert n.shutdown_message == RFC8203_TEXT
    msg = m.encode_message(n, impl=codec)
    assert msg == codec.build_notification(6, subcode, data)
    back = m.decode_framed(msg, impl=codec)
    assert back == n and back.shutdown_message == RFC8203_TEXT
    assert back.error_name == "Cease"


def test_shutdown_only_on_admin_shutdown_and_reset():
    data = m.build_shutdown_data("hello")
    assert m.Notification(6, 3, data).shutdown_message is None
    assert m.Notification(3, 2, data).shutdown_message is None
    assert m.Notification.shutdown("hello", 4) == m.Notification(6, 4, data)
    with pytest.raises(ValueError):
        m.Notification.shutdown("hello", 3)


def test_rfc9003_long_multibyte_message():
    # RFC 9003 §2: up to 255 octets, which multibyte scripts need (the reason
    # RFC 8203's 128 was raised).
    text = "Плановые работы: " * 7  # 217 octets of UTF-8
    assert 128 < len(text.encode()) <= 255
    assert m.Notification(6, 2, m.build_shutdown_data(text)).shutdown_message == text


def test_overlong_message_cannot_be_built():
    with pytest.raises(ValueError):
        m.build_shutdown_data("x" * 256)
    with pytest.raises(ValueError):
        m.build_shutdown_data("é" * 128)  # 256 octets
    assert len(m.build_shutdown_data("x" * 255)) == 256


@pytest.mark.parametrize(
    "data",
    [
        b"",  # no communication at all
        b"\x00",  # length zero: none follows (RFC 9003 §2)
        b"\x05abc",  # length past the end
        b"\x02\xc3\x28",  # invalid UTF-8
        b"\x03\xed\xa0\x80",  # UTF-8-encoded surrogate: not valid UTF-8
    ],
)
def test_invalid_shutdown_communication_is_none(data):
    assert m.Notification(6, 2, data).shutdown_message is None
    assert m.parse_shutdown_data(data) is None


def test_octets_after_the_communication_are_ignored():
    assert m.parse_shutdown_data(b"\x02hi, and more") == "hi"


# ---------------------------------------------------------------- other messages and dispatch


def test_route_refresh(codec):
    rr = m.RouteRefresh(2, 1, 1)  # RFC 7313 BoRR for IPv6 unicast
    msg = m.encode_message(rr, impl=codec)
    assert msg == codec.build_route_refresh(2, 1, 1)
    assert m.decode_framed(msg, impl=codec) == rr
    with pytest.raises(BGPError) as info:
        m.decode_message(5, b"\x00\x01\x00", impl=codec)
    assert (info.value.code, info.value.subcode) == (7, 1)


def test_keepalive(codec):
    assert m.encode_message(m.Keepalive(), impl=codec) == codec.KEEPALIVE
    assert m.decode_framed(codec.KEEPALIVE, impl=codec) == m.Keepalive()
    with pytest.raises(BGPError) as info:
        m.decode_message(4, b"\x00", impl=codec)
    assert (info.value.code, info.value.subcode) == (1, 2)


def test_unknown_type_and_bad_framing(codec):
    with pytest.raises(BGPError) as info:
        m.decode_message(9, b"", impl=codec)
    assert (info.value.code, info.value.subcode, info.value.data) == (1, 3, b"\x09")
    with pytest.raises(BGPError) as info:
        m.decode_framed(codec.KEEPALIVE + b"\x00", impl=codec)
    assert (info.value.code, info.value.subcode) == (1, 2)
    with pytest.raises(TypeError):
        m.encode_message(object(), impl=codec)


def test_notification_round_trip(codec):
    n = m.Notification(3, 11, b"")
    assert m.decode_message(3, m.encode_notification(n), impl=codec) == n
    assert n.shutdown_message is None and n.error_name == "UPDATE Message Error"


def test_default_implementation_matches_the_fixture(codec):
    u = sample_update(codec)
    assert m.decode_update(m.encode_update(u)) == u


# ---------------------------------------------------------------- helpers


@pytest.mark.parametrize(
    "value,text",
    [
        (0xFFFFFF01, "no-export"),
        (0xFFFFFF02, "no-advertise"),
        (0xFFFFFF03, "no-export-subconfed"),
        (0xFFFF0000, "graceful-shutdown"),
        (0xFFFF029A, "blackhole"),
        ((65000 << 16) | 1, "65000:1"),
        (0, "0:0"),
    ],
)
def test_communities(value, text):
    assert communities.format_community(value) == text
    assert communities.parse_community(text) == value
    assert m.Communities([value]).strings() == [text]


def test_parse_community_errors_and_numbers():
    assert communities.parse_community("4259840001", numeric=True) == 4259840001
    for bad in ("65536:1", "1:65536", "x", str(1 << 32)):
        with pytest.raises(ValueError):
            communities.parse_community(bad, numeric=True)


@pytest.mark.parametrize(
    "value,text",
    [
        (0x0002004800000001, "target:72:1"),
        (0x000300640000000A, "origin:100:10"),
        (0x0102C0000201000A, "target:192.0.2.1:10"),
        (0x0202FA56EA00000A, "target:4200000000:10"),
        (0x8006000000000000, "0x8006000000000000"),
    ],
)
def test_ext_community_text(value, text):
    assert communities.format_ext_community(value) == text
    assert m.ExtCommunities([value]).strings() == [text]


def test_large_community_needs_three_numbers(codec):
    u = m.Update(attributes=[m.LargeCommunities([(1, 2)])])
    with pytest.raises(ValueError):
        m.encode_update(u, impl=codec)


def test_display_enums():
    assert m.enum_name(m.AttrType, 2) == "AS_PATH"
    assert m.enum_name(m.AttrType, 99) == "99"
    assert m.enum_name(m.CapabilityCode, 65) == "FOUR_OCTET_AS"
    assert m.Role(3).name == "CUSTOMER" and m.Action(2).name == "TREAT_AS_WITHDRAW"


def test_mp_placement_with_a_discarded_repeat(codec):
    # RFC 7606 §3 g: the repeated ORIGIN is dropped; MP_REACH keeps its place.
    body = update_body(ORIGIN + mp_reach(2, 1, V6_NH, V6_NLRI) + ORIGIN + ORIGIN + AS_PATH)
    u = m.decode_update(body, impl=codec)
    assert [type(a) for a in u.attributes] == [m.Origin, m.MpReach, m.AsPath]
    assert u.action == 1 and u.errors
    assert m.encode_update(u, impl=codec) == update_body(ORIGIN + mp_reach(2, 1, V6_NH, V6_NLRI) + AS_PATH)
