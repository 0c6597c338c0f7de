"""Capability Structs (wire and JSON round trips, malformed values) and
session negotiation."""

import itertools
import random

import msgspec
import pytest

from fastbgp.wire import capabilities as caps
from fastbgp.wire.types import Context
from fastbgp.wire.constants import AS_TRANS, IPV4_UNICAST, IPV6_UNICAST
from fastbgp.wire.errors import BGPError

# (Struct, code, value octets) -- values written out by hand from the RFCs.
ROUND_TRIPS = [
    # RFC 4760 §8: AFI, reserved, SAFI.
    (caps.Multiprotocol(2, 1), 1, bytes.fromhex("00020001")),
    (caps.Multiprotocol(1, 128), 1, bytes.fromhex("00010080")),
    (caps.RouteRefresh(), 2, b""),
    (caps.RouteRefresh(legacy=True), 128, b""),
    (caps.EnhancedRouteRefresh(), 70, b""),
    (caps.ExtendedMessage(), 6, b""),
    (caps.FourOctetAS(4200000000), 65, (4200000000).to_bytes(4, "big")),
    (caps.FourOctetAS(65001), 65, bytes.fromhex("0000fde9")),
    # RFC 4724 §3: R and N bits (0xC), time 120, then (afi, safi, F bit).
    (
        caps.GracefulRestart(0xC, 120, [(1, 1, 0x80), (2, 1, 0)]),
        64,
        bytes.fromhex("c078" "00010180" "00020100"),
    ),
    (caps.GracefulRestart(0, 0, []), 64, b"\x00\x00"),
    (caps.GracefulRestart(0, 4095, []), 64, b"\x0f\xff"),
    # RFC 7911 §4.
    (caps.AddPath([(1, 1, 3), (2, 1, 1)]), 69, bytes.fromhex("00010103" "00020101")),
    # RFC 8950 §3: 2-octet NLRI SAFI.
    (caps.ExtendedNextHop([(1, 1, 2), (1, 128, 2)]), 5, bytes.fromhex("000100010002" "000100800002")),
    (caps.BGPRole(3), 9, b"\x03"),
    # The hostname capability ExaBGP's conf-hostname.ci sends.
    (
        caps.FQDN("my-host-name", "my-domain-name.com"),
        73,
        bytes.fromhex("0c6d792d686f73742d6e616d65126d792d646f6d61696e2d6e616d652e636f6d"),
    ),
    (caps.FQDN("r1", ""), 73, b"\x02r1\x00"),
    (caps.UnknownCapability(75, b"\x05hello"), 75, b"\x05hello"),
    (caps.UnknownCapability(77, b""), 77, b""),
]


@pytest.mark.parametrize("cap,code,value", ROUND_TRIPS, ids=lambda x: type(x).__name__ if isinstance(x, caps.Capability) else None)
def test_wire_round_trip(cap, code, value):
    assert cap.code == code
    assert cap.encode() == (code, value)
    assert caps.decode(code, value) == cap


@pytest.mark.parametrize("cap,code,value", ROUND_TRIPS, ids=lambda x: type(x).__name__ if isinstance(x, caps.Capability) else None)
def test_json_round_trip(cap, code, value):
    data = msgspec.json.encode(cap)
    assert msgspec.json.decode(data)["kind"]
    assert msgspec.json.decode(data, type=caps.AnyCapability) == cap


def test_json_rejects_unknown_fields():
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(b'{"kind":"role","role":1,"extra":2}', type=caps.AnyCapability)
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(b'{"kind":"no-such-capability"}', type=caps.AnyCapability)


def test_graceful_restart_bits():
    gr = caps.GracefulRestart(0x8, 90)
    assert gr.restart_state and not gr.notification
    assert caps.GracefulRestart(0x4, 90).notification


def test_addpath_unknown_send_receive_is_ignored():
    # RFC 7911 §4: a Send/Receive value other than 1..3 makes the whole
    # capability "not understood", which is not an error.
    value = bytes.fromhex("00010104")
    assert caps.decode(69, value) == caps.UnknownCapability(69, value)
    assert caps.decode(69, bytes.fromhex("00010100")) == caps.UnknownCapability(69, bytes.fromhex("00010100"))


MALFORMED = [
    (1, b""),
    (1, b"\x00\x01\x01"),
    (1, b"\x00\x01\x00\x01\x00"),
    (2, b"\x00"),
    (128, b"\x00"),
    (70, b"\x01"),
    (6, b"\x00\x00"),
    (65, b"\x00\x01"),
    (65, b"\x00\x00\x00\x01\x00"),
    (64, b""),
    (64, b"\x00"),
    (64, b"\x00\x00\x00\x01\x01"),
    (69, b""),
    (69, b"\x00\x01\x01"),
    (69, b"\x00\x01\x01\x01\x00"),
    (5, b""),
    (5, b"\x00\x01\x00\x01"),
    (9, b""),
    (9, b"\x01\x02"),
    (73, b""),
    (73, b"\x05ab"),  # host name overruns
    (73, b"\x01a"),  # no domain length
    (73, b"\x01a\x03bc"),  # domain overruns
    (73, b"\x01a\x00z"),  # trailing octet
    (73, b"\x01\xff\x00"),  # not UTF-8
]


@pytest.mark.parametrize("code,value", MALFORMED)
def test_malformed_is_open_message_error(code, value):
    with pytest.raises(BGPError) as info:
        caps.decode(code, value)
    assert (info.value.code, info.value.subcode) == (2, 0)


def test_random_values_only_ever_raise_bgp_error():
    rng = random.Random(4271)
    for code in (1, 2, 5, 6, 9, 64, 65, 69, 70, 73, 128, 200):
        for n in range(0, 24):
            for _ in range(8):
                value = bytes(rng.randrange(256) for _ in range(n))
                try:
                    cap = caps.decode(code, value)
                except BGPError as exc:
                    assert (exc.code, exc.subcode) == (2, 0)
                    continue
                # Whatever decodes re-encodes to the same octets except the
                # Multiprotocol reserved octet, which is sent as zero.
                back = cap.encode()
                if code == 1:
                    assert back == (1, value[:2] + b"\x00" + value[3:])
                else:
                    assert back == (code, value)


@pytest.mark.parametrize(
    "cap",
    [
        caps.Multiprotocol(70000, 1),
        caps.Multiprotocol(1, 256),
        caps.FourOctetAS(-1),
        caps.FourOctetAS(1 << 32),
        caps.GracefulRestart(16, 0),
        caps.GracefulRestart(0, 4096),
        caps.AddPath([(1, 1, 256)]),
        caps.BGPRole(256),
        caps.FQDN("x" * 256),
        caps.UnknownCapability(256, b""),
        caps.UnknownCapability(80, b"x" * 256),
    ],
)
def test_encode_out_of_range_is_value_error(cap):
    with pytest.raises(ValueError):
        cap.encode()


def test_through_the_codec_open(codec):
    sent = [c for c, _code, _value in ROUND_TRIPS]
    msg = codec.build_open(65001, 90, 0x01020304, caps.encode_all(sent))
    parsed = codec.parse_open(msg[19:])
    assert caps.decode_all(parsed.capabilities) == sent


# ---------------------------------------------------------------- negotiation


def base(*extra, asn=65001, families=(IPV4_UNICAST, IPV6_UNICAST)):
    return [caps.Multiprotocol(a, s) for a, s in families] + [caps.FourOctetAS(asn), caps.RouteRefresh()] + list(extra)


def test_negotiate_basics():
    n = caps.negotiate(base(), base(asn=65002, families=(IPV4_UNICAST,)), 65001, 65002, ebgp=True)
    assert n.families == frozenset({IPV4_UNICAST})
    assert n.as4 and n.peer_asn == 65002 and n.local_asn == 65001
    assert n.route_refresh and not n.enhanced_route_refresh and not n.extended_message
    assert n.addpath_rx == n.addpath_tx == frozenset()
    assert n.graceful_restart is None and n.peer_role is None
    assert n.context() == Context(as4=True, ebgp=True)


def test_no_multiprotocol_means_ipv4_unicast_only():
    # RFC 4760 §8.
    n = caps.negotiate(base(), [caps.FourOctetAS(65002)], 65001, 65002, ebgp=True)
    assert n.families == frozenset({IPV4_UNICAST})
    n = caps.negotiate(base(families=(IPV6_UNICAST,)), [], 65001, 65002, ebgp=True)
    assert n.families == frozenset()


def test_as4_needs_both_sides():
    n = caps.negotiate(base(), [caps.Multiprotocol(1, 1)], 65001, 65002, ebgp=True)
    assert not n.as4 and n.peer_asn == 65002
    assert not n.context().as4
    local = [c for c in base() if not isinstance(c, caps.FourOctetAS)]
    n = caps.negotiate(local, base(asn=65002), 65001, 65002, ebgp=True)
    assert not n.as4 and n.peer_asn == 65002


def test_four_octet_peer_asn_comes_from_the_capability():
    n = caps.negotiate(base(), base(asn=4200000000), 65001, AS_TRANS, ebgp=True)
    assert n.peer_asn == 4200000000


@pytest.mark.parametrize(
    "open_asn,cap_asn",
    [
        (65002, 65003),  # both 2-octet, different
        (65002, 4200000000),  # wide AS but My AS is not AS_TRANS
    ],
)
def test_bad_peer_as(open_asn, cap_asn):
    # RFC 6793 §4.1: My Autonomous System must be the AS itself or AS_TRANS.
    with pytest.raises(BGPError) as info:
        caps.negotiate(base(), base(asn=cap_asn), 65001, open_asn, ebgp=True)
    assert (info.value.code, info.value.subcode) == (2, 2)


def test_as_trans_with_small_capability_is_accepted():
    assert caps.negotiate(base(), base(asn=65002), 65001, AS_TRANS, ebgp=True).peer_asn == 65002


def test_peer_as_zero():
    # RFC 7607 §2.
    with pytest.raises(BGPError) as info:
        caps.negotiate(base(), [], 65001, 0, ebgp=True)
    assert (info.value.code, info.value.subcode) == (2, 2)


@pytest.mark.parametrize(
    "local,remote,rx,tx",
    [
        (3, 3, True, True),
        (3, 2, True, False),
        (3, 1, False, True),
        (1, 2, True, False),
        (1, 1, False, False),
        (2, 1, False, True),
        (2, 2, False, False),
        (3, None, False, False),
        (None, 3, False, False),
    ],
)
def test_addpath_directions(local, remote, rx, tx):
    # RFC 7911 §4: receive where we can receive and the peer can send.
    lc = base(caps.AddPath([(1, 1, local)])) if local else base()
    rc = base(caps.AddPath([(1, 1, remote)]), asn=65002) if remote else base(asn=65002)
    n = caps.negotiate(lc, rc, 65001, 65002, ebgp=False)
    assert (IPV4_UNICAST in n.addpath_rx) == rx
    assert (IPV4_UNICAST in n.addpath_tx) == tx
    ctx = n.context()
    assert ctx.addpath_rx == n.addpath_rx and ctx.addpath_tx == n.addpath_tx and not ctx.ebgp


def test_addpath_only_in_negotiated_families():
    lc = base(caps.AddPath([(2, 1, 3), (1, 1, 3)]))
    rc = base(caps.AddPath([(2, 1, 3), (1, 1, 3)]), asn=65002, families=(IPV4_UNICAST,))
    n = caps.negotiate(lc, rc, 65001, 65002, ebgp=True)
    assert n.addpath_rx == n.addpath_tx == frozenset({IPV4_UNICAST})


def test_both_sided_flags():
    n = caps.negotiate(
        base(caps.ExtendedMessage(), caps.EnhancedRouteRefresh()),
        base(caps.ExtendedMessage(), asn=65002),
        65001,
        65002,
        ebgp=True,
    )
    assert n.extended_message and not n.enhanced_route_refresh
    assert n.context().max_message_len == 65535
    n = caps.negotiate(base(caps.EnhancedRouteRefresh()), base(caps.EnhancedRouteRefresh(), asn=65002), 1, 65002, ebgp=True)
    assert n.enhanced_route_refresh and not n.extended_message


def test_legacy_route_refresh_counts():
    remote = [caps.Multiprotocol(1, 1), caps.RouteRefresh(legacy=True)]
    assert caps.negotiate(base(), remote, 65001, 65002, ebgp=True).route_refresh
    assert not caps.negotiate(base(), [caps.Multiprotocol(1, 1)], 65001, 65002, ebgp=True).route_refresh


def test_graceful_restart_is_the_peers():
    gr = caps.GracefulRestart(0x8, 120, [(1, 1, 0x80)])
    n = caps.negotiate(base(caps.GracefulRestart(0, 60)), base(gr, asn=65002), 65001, 65002, ebgp=True)
    assert n.graceful_restart == gr


def test_extended_next_hop_directions():
    mine = caps.ExtendedNextHop([(1, 1, 2)])
    theirs = caps.ExtendedNextHop([(1, 128, 2)])
    n = caps.negotiate(base(mine), base(theirs, asn=65002), 65001, 65002, ebgp=True)
    assert n.extended_nexthop_rx == frozenset({(1, 1, 2)})
    assert n.extended_nexthop_tx == frozenset({(1, 128, 2)})


ROLES = range(5)
ALLOWED = {(0, 3), (3, 0), (1, 2), (2, 1), (4, 4)}  # RFC 9234 §4.2


@pytest.mark.parametrize("local,remote", list(itertools.product(ROLES, ROLES)) + [(4, 7), (7, 4)])
def test_role_pairs(local, remote):
    lc = base(caps.BGPRole(local))
    rc = base(caps.BGPRole(remote), asn=65002)
    if (local, remote) in ALLOWED:
        n = caps.negotiate(lc, rc, 65001, 65002, ebgp=True)
        assert (n.local_role, n.peer_role) == (local, remote)
    else:
        with pytest.raises(BGPError) as info:
            caps.negotiate(lc, rc, 65001, 65002, ebgp=True)
        assert (info.value.code, info.value.subcode) == (2, 11)


def test_role_missing_on_peer():
    lc = base(caps.BGPRole(3))
    assert caps.negotiate(lc, base(asn=65002), 65001, 65002, ebgp=True).peer_role is None
    # RFC 9234 §4.2 strict mode.
    with pytest.raises(BGPError) as info:
        caps.negotiate(lc, base(asn=65002), 65001, 65002, ebgp=True, strict_role=True)
    assert (info.value.code, info.value.subcode) == (2, 11)


def test_role_only_on_peer_side_is_fine():
    n = caps.negotiate(base(), base(caps.BGPRole(0), asn=65002), 65001, 65002, ebgp=True)
    assert n.local_role is None and n.peer_role == 0


def test_conflicting_peer_roles():
    # RFC 9234 §4.2: several role capabilities must agree.
    rc = base(caps.BGPRole(0), caps.BGPRole(4), asn=65002)
    with pytest.raises(BGPError) as info:
        caps.negotiate(base(caps.BGPRole(3)), rc, 65001, 65002, ebgp=True)
    assert (info.value.code, info.value.subcode) == (2, 11)
    # The same role twice is fine.
    rc = base(caps.BGPRole(0), caps.BGPRole(0), asn=65002)
    assert caps.negotiate(base(caps.BGPRole(3)), rc, 65001, 65002, ebgp=True).peer_role == 0


def test_negotiated_json_and_fqdn():
    n = caps.negotiate(
        base(caps.AddPath([(1, 1, 3)])),
        base(caps.AddPath([(1, 1, 3)]), caps.FQDN("peer", "example.net"), caps.GracefulRestart(0, 5), asn=65002),
        65001,
        65002,
        ebgp=False,
    )
    assert n.peer_fqdn == caps.FQDN("peer", "example.net")
    back = msgspec.json.decode(msgspec.json.encode(n), type=caps.Negotiated)
    assert back == n
    assert back.context() == n.context()
