"""OPEN (RFC 4271 §4.2, §6.2; RFC 5492; RFC 6793; RFC 9072), NOTIFICATION
(RFC 4271 §4.5) and ROUTE-REFRESH (RFC 2918, RFC 7313)."""

import pytest

from bgpgen import caps_param, extended_open_body, message, open_body
from fastbgp.wire.types import ParsedOpen
from fastbgp.wire.errors import ACTION_SESSION_RESET, BGPError

CAPS = (
    (1, b"\x00\x01\x00\x01"),  # multiprotocol IPv4 unicast (RFC 4760)
    (1, b"\x00\x02\x00\x01"),  # multiprotocol IPv6 unicast
    (2, b""),  # route refresh (RFC 2918)
    (65, (4200000000).to_bytes(4, "big")),  # 4-octet AS (RFC 6793)
    (69, b"\x00\x01\x01\x03"),  # ADD-PATH (RFC 7911)
)


def error(exc_info):
    e = exc_info.value
    return (e.code, e.subcode, e.data)


def parse_built(codec, *args, **kw):
    msg = codec.build_open(*args, **kw)
    assert msg[:16] == b"\xff" * 16 and msg[18] == 1
    assert int.from_bytes(msg[16:18], "big") == len(msg)
    return msg, codec.parse_open(msg[19:])


# ---------------------------------------------------------------- build / parse


def test_round_trip(codec):
    msg, got = parse_built(codec, 65001, 90, 0x0A000001, CAPS)
    assert got == ParsedOpen(4, 65001, 90, 0x0A000001, CAPS, (), False)
    # RFC 4271 §4.2 layout, written out.
    body = msg[19:]
    assert body[:10] == bytes((4, 0xFD, 0xE9, 0, 90, 10, 0, 0, 1, len(body) - 10))
    assert body[10] == 2  # one Capabilities parameter (RFC 5492 §4)


def test_no_capabilities(codec):
    msg, got = parse_built(codec, 65001, 180, 1)
    assert len(msg) == 29  # RFC 4271 §4.2 minimum
    assert got.capabilities == () and got.extended_params is False and got.hold_time == 180


def test_as_trans_for_four_octet_asn(codec):
    # RFC 6793 §3: an ASN that does not fit in 2 octets goes out as AS_TRANS;
    # the real one travels in capability 65.
    _msg, got = parse_built(codec, 4200000000, 90, 1, ((65, (4200000000).to_bytes(4, "big")),))
    assert got.asn == 23456
    assert got.capabilities == ((65, (4200000000).to_bytes(4, "big")),)
    assert parse_built(codec, 65535, 90, 1)[1].asn == 65535
    assert parse_built(codec, 65536, 90, 1)[1].asn == 23456


def test_bgp_id_and_hold_time_extremes(codec):
    got = parse_built(codec, 1, 65535, 0xFFFFFFFF)[1]
    assert (got.bgp_id, got.hold_time) == (0xFFFFFFFF, 65535)
    # Hold time 0 (no keepalives) and 3 are both acceptable (RFC 4271 §4.2).
    assert parse_built(codec, 1, 0, 1)[1].hold_time == 0
    assert parse_built(codec, 1, 3, 1)[1].hold_time == 3


def test_capability_longer_than_255_rejected(codec):
    with pytest.raises(ValueError):
        codec.build_open(65001, 90, 1, ((73, bytes(256)),))


# ---------------------------------------------------------------- RFC 9072


def many_caps(total_value_octets):
    """Capabilities whose encoding (code + length + value) totals exactly
    ``total_value_octets`` octets."""
    caps = []
    left = total_value_octets
    code = 128
    while left:
        size = min(left, 200)
        if left - size == 1:
            size -= 1  # never leave a lone octet: a capability needs two
        caps.append((code, bytes(size - 2)))
        left -= size
        code += 1
    return tuple(caps)


def test_long_capabilities_use_extended_encoding(codec):
    caps = many_caps(600)
    msg, got = parse_built(codec, 65001, 90, 1, caps)
    body = msg[19:]
    # RFC 9072 §2: Non-Ext OP Len = 255, Non-Ext OP Type = 255, 2-octet
    # Extended Opt. Parm. Length, then parameters with 2-octet lengths.
    assert body[9] == 255 and body[10] == 255
    assert int.from_bytes(body[11:13], "big") == len(body) - 13 == 3 + 600
    assert body[13] == 2 and int.from_bytes(body[14:16], "big") == 600
    assert got.capabilities == caps
    assert got.extended_params is True


def test_boundary_between_encodings(codec):
    # 253 octets of capabilities + 2 of parameter header = 255: still fits
    # the 1-octet Optional Parameters Length (RFC 9072 §2 only when > 255).
    caps = many_caps(253)
    msg, got = parse_built(codec, 65001, 90, 1, caps)
    assert msg[19 + 9] == 255 and msg[19 + 10] == 2
    assert got.extended_params is False and got.capabilities == caps
    caps = many_caps(254)
    msg, got = parse_built(codec, 65001, 90, 1, caps)
    assert msg[19 + 10] == 255
    assert got.extended_params is True and got.capabilities == caps


def test_parse_hand_made_rfc9072(codec):
    caps = ((1, b"\x00\x01\x00\x01"), (65, b"\x00\x00\xfd\xe9"))
    body = extended_open_body(caps)
    assert body[9:11] == b"\xff\xff"
    got = codec.parse_open(body)
    assert got == ParsedOpen(4, 65001, 90, 0x0A000001, caps, (), True)


def test_parse_rfc9072_truncated_length(codec):
    body = open_body()[:9] + b"\xff\xff\x00"
    with pytest.raises(BGPError) as exc:
        codec.parse_open(body)
    assert error(exc) == (2, 0, b"")


def test_parse_rfc9072_parameter_overrun(codec):
    body = bytearray(extended_open_body(((1, b"\x00\x01\x00\x01"),)))
    body[14:16] = (50).to_bytes(2, "big")  # parameter length past the end
    with pytest.raises(BGPError) as exc:
        codec.parse_open(bytes(body))
    assert error(exc) == (2, 0, b"")


def test_capabilities_in_several_parameters_keep_order(codec):
    # RFC 5492 §4: capabilities may be spread over several parameters.
    opt = caps_param(CAPS[:2]) + caps_param(()) + caps_param(CAPS[2:])
    assert codec.parse_open(open_body(opt=opt)).capabilities == CAPS


# ---------------------------------------------------------------- OPEN errors (RFC 4271 §6.2)


@pytest.mark.parametrize("version", [0, 1, 2, 3, 5, 255])
def test_unsupported_version(codec, version):
    # Data: the largest supported version below the bid, else the smallest
    # supported one -- 4 either way for a version-4-only speaker.
    with pytest.raises(BGPError) as exc:
        codec.parse_open(open_body(version=version))
    assert error(exc) == (2, 1, b"\x00\x04")
    assert exc.value.action == ACTION_SESSION_RESET


@pytest.mark.parametrize("hold", [1, 2])
def test_unacceptable_hold_time(codec, hold):
    with pytest.raises(BGPError) as exc:
        codec.parse_open(open_body(hold=hold))
    assert error(exc) == (2, 6, b"")


def test_zero_bgp_identifier(codec):
    # RFC 6286 §2.2: any non-zero 32-bit value is valid; zero is not.
    with pytest.raises(BGPError) as exc:
        codec.parse_open(open_body(bgp_id=0))
    assert error(exc) == (2, 3, b"")


def test_any_nonzero_bgp_identifier(codec):
    # RFC 6286 §2.2 drops the "valid unicast host address" rule of RFC 4271.
    for bgp_id in (1, 0xE0000001, 0xFFFFFFFF, 0x7F000001):
        assert codec.parse_open(open_body(bgp_id=bgp_id)).bgp_id == bgp_id


@pytest.mark.parametrize("ptype", [1, 3, 254])
def test_unsupported_optional_parameter(codec, ptype):
    with pytest.raises(BGPError) as exc:
        codec.parse_open(open_body(opt=bytes((ptype, 2, 0, 0))))
    assert error(exc) == (2, 4, b"")


@pytest.mark.parametrize(
    "desc,body",
    [
        ("optional parameters length past the end", open_body()[:9] + b"\x0a" + caps_param(((2, b""),))),
        ("optional parameters length short of the end", open_body()[:9] + b"\x01" + caps_param(((2, b""),))),
        ("lone parameter type octet", open_body(opt=b"\x02")),
        ("parameter length past the parameters", open_body(opt=b"\x02\x05\x02\x00")),
        ("lone capability code octet", open_body(opt=b"\x02\x01\x41")),
        ("capability length past its parameter", open_body(opt=b"\x02\x04\x41\x04\x00\x00")),
        ("capability length past the message", open_body(opt=b"\x02\x02\x41\x04")),
        ("second capability truncated", open_body(opt=b"\x02\x05\x02\x00\x41\x04\x00")),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_malformed_parameters(codec, desc, body):
    # RFC 4271 §6.2: a recognized but malformed optional parameter -> subcode 0 (unspecific).
    with pytest.raises(BGPError) as exc:
        codec.parse_open(body)
    assert error(exc) == (2, 0, b""), desc


@pytest.mark.parametrize("size", [0, 1, 9])
def test_open_shorter_than_minimum(codec, size):
    # RFC 4271 §6.1: OPEN shorter than 29 octets -> Bad Message Length with the length.
    with pytest.raises(BGPError) as exc:
        codec.parse_open(open_body()[:size])
    assert error(exc) == (1, 2, (19 + size).to_bytes(2, "big"))


# ---------------------------------------------------------------- NOTIFICATION


@pytest.mark.parametrize("code,subcode,data", [(6, 2, b""), (3, 1, b""), (2, 1, b"\x00\x04"), (6, 4, b"x" * 300)])
def test_notification_round_trip(codec, code, subcode, data):
    msg = codec.build_notification(code, subcode, data)
    assert msg == message(3, bytes((code, subcode)) + data)
    assert codec.parse_notification(msg[19:]) == (code, subcode, data)


@pytest.mark.parametrize("size", [0, 1])
def test_notification_too_short(codec, size):
    with pytest.raises(BGPError) as exc:
        codec.parse_notification(b"\x06"[:size])
    assert error(exc) == (1, 2, (19 + size).to_bytes(2, "big"))


# ---------------------------------------------------------------- ROUTE-REFRESH


@pytest.mark.parametrize("afi,safi,subtype", [(1, 1, 0), (2, 1, 0), (1, 2, 1), (2, 1, 2), (0xFFFF, 255, 0)])
def test_route_refresh_round_trip(codec, afi, safi, subtype):
    # RFC 2918 §3 / RFC 7313 §3.2: AFI(2) Subtype(1) SAFI(1).
    msg = codec.build_route_refresh(afi, safi, subtype)
    assert msg == message(5, afi.to_bytes(2, "big") + bytes((subtype, safi)))
    assert codec.parse_route_refresh(msg[19:]) == (afi, subtype, safi)


def test_route_refresh_default_subtype(codec):
    assert codec.build_route_refresh(1, 1) == message(5, b"\x00\x01\x00\x01")


def test_route_refresh_unknown_subtype_is_returned(codec):
    # RFC 7313 §5: unknown subtypes are ignored by the caller, not an error.
    assert codec.parse_route_refresh(b"\x00\x01\x07\x01") == (1, 7, 1)


@pytest.mark.parametrize("body", [b"", b"\x00\x01\x01", b"\x00\x01\x01\x01\x00", b"\x00\x02\x02\x01\xff\xff"], ids=["empty", "3", "5", "6"])
def test_route_refresh_bad_length(codec, body):
    # RFC 7313 §5: Invalid Message Length (7/1), data = the complete message.
    with pytest.raises(BGPError) as exc:
        codec.parse_route_refresh(body)
    assert error(exc) == (7, 1, message(5, body))
    assert exc.value.action == ACTION_SESSION_RESET
