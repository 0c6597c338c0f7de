"""RTR PDUs (RFC 6810, RFC 8210, 8210bis): every PDU round-trips through
encode/parse_pdu, arbitrary octets never raise, and each malformation maps
to its RFC 8210 §12 Error Report code."""

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastbgp.rpki import pdu as P

u32 = st.integers(0, 0xFFFFFFFF)
u16 = st.integers(0, 0xFFFF)
version = st.integers(0, 2)


@st.composite
def prefixes(draw):
    afi = draw(st.sampled_from([1, 2]))
    width = 32 if afi == 1 else 128
    plen = draw(st.integers(0, width))
    maxlen = draw(st.integers(plen, width))
    return P.Prefix(draw(version), draw(st.booleans()), afi, draw(st.binary(min_size=width // 8,
                    max_size=width // 8)), plen, maxlen, draw(u32))


@st.composite
def end_of_data(draw):
    v = draw(version)
    if v == 0:
        return P.EndOfData(0, draw(u16), draw(u32))
    return P.EndOfData(v, draw(u16), draw(u32), draw(u32), draw(u32), draw(u32))


@st.composite
def aspas(draw):
    announce = draw(st.booleans())
    providers = tuple(draw(st.lists(u32, max_size=20))) if announce else ()
    return P.Aspa(2, announce, draw(u32), providers)


any_pdu = st.one_of(
    st.builds(P.SerialNotify, version, u16, u32),
    st.builds(P.SerialQuery, version, u16, u32),
    st.builds(P.ResetQuery, version),
    st.builds(P.CacheResponse, version, u16),
    prefixes(),
    end_of_data(),
    st.builds(P.CacheReset, version),
    st.builds(P.RouterKey, st.integers(1, 2), st.booleans(), st.binary(min_size=20, max_size=20), u32,
              st.binary(max_size=100)),
    st.builds(P.ErrorReport, version, u16, st.binary(max_size=64), st.text(max_size=40)),
    aspas(),
)


@settings(max_examples=400, deadline=None)
@given(any_pdu)
def test_every_pdu_round_trips(pdu):
    data = P.encode(pdu)
    assert struct.unpack_from("!I", data, 4)[0] == len(data)
    assert P.parse_pdu(data) == pdu


@settings(max_examples=1500, deadline=None)
@given(st.binary(max_size=80))
def test_arbitrary_octets_never_raise(data):
    out = P.parse_pdu(data)
    assert isinstance(out, (P.PduError,) + P.Pdu.__args__)
    if isinstance(out, P.PduError):
        assert out.code in P.ERROR_NAMES and out.describe()


@settings(max_examples=600, deadline=None)
@given(any_pdu, st.integers(0, 200), st.integers(0, 255))
def test_mutated_pdus_never_raise(pdu, at, value):
    data = bytearray(P.encode(pdu))
    data[at % len(data)] = value
    out = P.parse_pdu(bytes(data))
    assert isinstance(out, (P.PduError,) + P.Pdu.__args__)


def _hdr(version, ptype, field, body):
    return struct.pack("!BBHI", version, ptype, field, 8 + len(body)) + body


@pytest.mark.parametrize("data, code", [
    (_hdr(3, P.RESET_QUERY, 0, b""), P.UNSUPPORTED_VERSION),
    (_hdr(1, 5, 0, b""), P.UNSUPPORTED_PDU_TYPE),  # type 5 is unassigned
    (_hdr(1, 200, 0, b""), P.UNSUPPORTED_PDU_TYPE),
    (_hdr(0, P.ROUTER_KEY, 0, bytes(24)), P.UNSUPPORTED_PDU_TYPE),  # Router Key is version 1+
    (_hdr(1, P.ASPA, 0, bytes(8)), P.UNSUPPORTED_PDU_TYPE),  # ASPA is version 2
    (_hdr(1, P.RESET_QUERY, 0, b"x"), P.CORRUPT_DATA),  # wrong fixed length
    (_hdr(1, P.SERIAL_NOTIFY, 0, b"abc"), P.CORRUPT_DATA),
    (_hdr(1, P.END_OF_DATA, 0, bytes(4)), P.CORRUPT_DATA),  # version 1 needs the timers
    (_hdr(0, P.END_OF_DATA, 0, bytes(16)), P.CORRUPT_DATA),  # version 0 has none
    (_hdr(1, P.IPV4_PREFIX, 0, bytes((1, 33, 33, 0)) + bytes(8)), P.CORRUPT_DATA),  # length > 32
    (_hdr(1, P.IPV4_PREFIX, 0, bytes((1, 24, 16, 0)) + bytes(8)), P.CORRUPT_DATA),  # maxLength < length
    (_hdr(1, P.IPV6_PREFIX, 0, bytes((1, 48, 129, 0)) + bytes(20)), P.CORRUPT_DATA),
    (_hdr(1, P.IPV6_PREFIX, 0, bytes((1, 48, 48, 0)) + bytes(8)), P.CORRUPT_DATA),
    (_hdr(1, P.ERROR_REPORT, 0, struct.pack("!I", 100) + bytes(4)), P.CORRUPT_DATA),  # PDU length overruns
    (_hdr(1, P.ERROR_REPORT, 0, struct.pack("!II", 0, 9) + b"abc"), P.CORRUPT_DATA),  # text length wrong
    (_hdr(2, P.ASPA, 1 << 8, bytes(6)), P.CORRUPT_DATA),  # not whole ASNs
    (_hdr(2, P.ASPA, 0, bytes(12)), P.CORRUPT_DATA),  # a withdrawal with providers
    (_hdr(1, P.ROUTER_KEY, 0, bytes(10)), P.CORRUPT_DATA),
    (b"\x01\x02\x00\x00\x00\x00\x00\x09", P.CORRUPT_DATA),  # length field says 9, 8 octets
    (b"\x01\x02", P.CORRUPT_DATA),
])
def test_malformed_pdu_codes(data, code):
    out = P.parse_pdu(data)
    assert isinstance(out, P.PduError), out
    assert out.code == code
    assert out.pdu == data  # encapsulated as received (RFC 8210 §5.11)


def test_framing_refuses_impossible_lengths():
    assert P.pdu_length(_hdr(1, P.RESET_QUERY, 0, b"")) == (1, P.RESET_QUERY, 8)
    for length in (0, 7, P.MAX_PDU_LEN + 1):
        out = P.pdu_length(struct.pack("!BBHI", 1, 2, 0, length))
        assert isinstance(out, P.PduError) and out.code == P.CORRUPT_DATA


def test_error_report_encapsulates_and_is_parseable():
    bad = _hdr(1, 5, 0, b"")
    err = P.parse_pdu(bad)
    report = P.parse_pdu(P.error_report(1, err))
    assert report == P.ErrorReport(1, P.UNSUPPORTED_PDU_TYPE, bad, err.describe())
    assert "Unsupported PDU Type" in report.text


def test_router_key_and_aspa_fields():
    rk = P.parse_pdu(_hdr(1, P.ROUTER_KEY, 1 << 8, bytes(range(20)) + struct.pack("!I", 64496) + b"spki"))
    assert rk == P.RouterKey(1, True, bytes(range(20)), 64496, b"spki")
    aspa = P.parse_pdu(_hdr(2, P.ASPA, 1 << 8, struct.pack("!III", 64496, 64497, 64498)))
    assert aspa == P.Aspa(2, True, 64496, (64497, 64498))
    assert P.parse_pdu(_hdr(2, P.ASPA, 0, struct.pack("!I", 64496))) == P.Aspa(2, False, 64496, ())


def test_aspa_in_draft_10_layout_as_stayrtr_sends_it():
    """Octets captured from stayrtr (8210bis-10): flags, AFI flags and the
    provider count follow the length."""
    data = bytes.fromhex("020b000000000018010000020000fbf00000fbfe0000fbff")
    assert P.parse_pdu(data) == P.Aspa(2, True, 64496, (64510, 64511))
    withdraw = bytes.fromhex("020b00000000001000000000" + "0000fbf0")
    assert P.parse_pdu(withdraw) == P.Aspa(2, False, 64496, ())
    bad_count = bytes.fromhex("020b000000000018010000030000fbf00000fbfe0000fbff")
    assert P.parse_pdu(bad_count).code == P.CORRUPT_DATA  # count disagrees with the length


# ------------------------------------------------- parse_buffer: the bulk path

def _stream(pdus):
    return b"".join(P.encode(p) for p in pdus)


@given(st.lists(st.one_of(prefixes(), end_of_data(), aspas()), min_size=1, max_size=30), st.data())
@settings(max_examples=200, deadline=None)
def test_parse_buffer_frames_like_parse_pdu_wherever_the_stream_is_cut(pdus, data):
    raw = [P.encode(p) for p in pdus]
    stream = b"".join(raw)
    cut = data.draw(st.integers(0, len(stream)))
    items, end = P.parse_buffer(bytearray(stream[:cut]))
    # every PDU wholly before the cut, parsed by parse_pdu; end at the first incomplete one
    whole, pos = [], 0
    for r in raw:
        if pos + len(r) > cut:
            break
        whole.append((P.parse_pdu(r), pos, pos + len(r)))
        pos += len(r)
    assert items == whole and end == pos
    # the rest, appended later, parses from there: the two halves give every PDU
    rest, end2 = P.parse_buffer(stream, end)
    assert [i[0] for i in items + rest] == [P.parse_pdu(r) for r in raw] and end2 == len(stream)


def test_parse_buffer_bad_pdu_in_the_middle():
    good = [P.Prefix(2, True, 1, bytes((192, 0, 2, 0)), 24, 24, 64496)] * 3
    bad = struct.pack("!BBHI", 2, P.IPV4_PREFIX, 0, 20) + bytes((1, 33, 33, 0)) + bytes(8)
    stream = _stream(good[:2]) + bad + _stream(good[2:])
    items, end = P.parse_buffer(stream)
    assert end == len(stream) and len(items) == 4
    err, start, stop = items[2]
    # the malformed PDU is an item of its own, its octets the ones encapsulated
    assert isinstance(err, P.PduError) and err.code == P.CORRUPT_DATA and err.pdu == bad
    assert stream[start:stop] == bad and items[3][0] == good[2]


@pytest.mark.parametrize("length", [0, 7, P.MAX_PDU_LEN + 1, 1 << 31])
def test_parse_buffer_stops_at_an_impossible_length_at_once(length):
    good = _stream([P.CacheResponse(2, 7)])
    bad = struct.pack("!BBHI", 2, P.IPV4_PREFIX, 0, length)
    # only the bad header is there: no waiting for the octets it announces
    items, end = P.parse_buffer(good + bad + b"\xff" * 100)
    assert [i[0] for i in items[:1]] == [P.CacheResponse(2, 7)]
    err, start, stop = items[1]
    assert len(items) == 2 and (err.code, err.pdu) == (P.CORRUPT_DATA, bad) and end == start == len(good)


@given(st.binary(max_size=200), st.integers(0, 210))
@settings(max_examples=300, deadline=None)
def test_parse_buffer_never_raises(data, pos):
    items, end = P.parse_buffer(bytearray(data), min(pos, len(data)))
    assert min(pos, len(data)) <= end <= len(data)
    assert all(isinstance(i[0], P.PduError) or i[2] <= end for i in items)
