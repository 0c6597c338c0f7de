"""Message framing: MessageReader, parse_header, frame (RFC 4271 §4.1, §6.1;
RFC 8654 §4 for extended messages)."""

import random

import pytest

from bgpgen import (
    BASE_ATTRS,
    BASE_NLRI,
    KEEPALIVE,
    MARKER,
    header,
    message,
    update,
)
from fastbgp.wire.errors import ACTION_SESSION_RESET, BGPError

OPEN = message(1, bytes((4, 0xFD, 0xE9, 0, 90, 10, 0, 0, 1, 0)))
UPDATE = update(attrs=BASE_ATTRS, nlri=BASE_NLRI)
NOTIFICATION = message(3, b"\x06\x02")
REFRESH = message(5, b"\x00\x01\x00\x01")
STREAM = [OPEN, KEEPALIVE, UPDATE, NOTIFICATION, REFRESH, KEEPALIVE, update()]
EXPECTED = [(m[18], m[19:]) for m in STREAM]


def feed_all(reader, chunks):
    out = []
    for c in chunks:
        out.extend(reader.feed(c))
    return out


def assert_error(exc_info, code, subcode, data):
    err = exc_info.value
    assert (err.code, err.subcode, err.data) == (code, subcode, data)
    # Header errors always end the session (RFC 4271 §6.1).
    assert err.action == ACTION_SESSION_RESET


# ---------------------------------------------------------------- happy paths


def test_one_message(codec):
    r = codec.MessageReader()
    assert r.feed(KEEPALIVE) == [(4, b"")]
    assert r.buffered == 0


def test_byte_by_byte(codec):
    r = codec.MessageReader()
    out = []
    data = b"".join(STREAM)
    for i in range(len(data)):
        got = r.feed(data[i : i + 1])
        out.extend(got)
    assert out == EXPECTED
    assert r.buffered == 0


def test_nothing_before_a_whole_message(codec):
    r = codec.MessageReader()
    for i in range(len(UPDATE) - 1):
        assert r.feed(UPDATE[i : i + 1]) == []
        assert r.buffered == i + 1
    assert r.feed(UPDATE[-1:]) == [(2, UPDATE[19:])]


@pytest.mark.parametrize("seed", range(25))
def test_random_chunkings(codec, seed):
    rnd = random.Random(seed)
    data = b"".join(STREAM) * 3
    cuts = sorted(rnd.sample(range(1, len(data)), rnd.randint(1, 40)))
    chunks = [data[a:b] for a, b in zip([0] + cuts, cuts + [len(data)])]
    assert feed_all(codec.MessageReader(), chunks) == EXPECTED * 3


def test_many_messages_in_one_chunk(codec):
    data = b"".join(STREAM) * 50
    assert codec.MessageReader().feed(data) == EXPECTED * 50


def test_empty_feed(codec):
    r = codec.MessageReader()
    assert r.feed(b"") == []
    r.feed(KEEPALIVE[:5])
    assert r.feed(b"") == []
    assert r.feed(KEEPALIVE[5:]) == [(4, b"")]


def test_tail_of_next_message_stays_buffered(codec):
    r = codec.MessageReader()
    assert r.feed(KEEPALIVE + UPDATE[:30]) == [(4, b"")]
    assert r.buffered == 30
    assert r.feed(UPDATE[30:] + KEEPALIVE) == [(2, UPDATE[19:]), (4, b"")]


def test_minimum_lengths_accepted(codec):
    # RFC 4271 §4.1-§4.5: OPEN 29, UPDATE 23, NOTIFICATION 21, KEEPALIVE 19.
    msgs = [OPEN, update(), message(3, b"\x06\x00"), KEEPALIVE]
    assert [len(m) for m in msgs] == [29, 23, 21, 19]
    assert codec.MessageReader().feed(b"".join(msgs)) == [(m[18], m[19:]) for m in msgs]


def test_bytearray_input(codec):
    assert codec.MessageReader().feed(bytearray(KEEPALIVE + UPDATE)) == [(4, b""), (2, UPDATE[19:])]


# ---------------------------------------------------------------- lengths


@pytest.mark.parametrize("length", [0, 1, 18])
def test_length_below_header(codec, length):
    # RFC 4271 §6.1: Bad Message Length, data = the erroneous Length field.
    with pytest.raises(BGPError) as exc:
        codec.MessageReader().feed(header(length, 2) + b"\x00" * 10)
    assert_error(exc, 1, 2, length.to_bytes(2, "big"))


@pytest.mark.parametrize(
    "mtype,length",
    [(1, 28), (2, 22), (3, 20), (4, 18), (4, 20), (4, 4096), (2, 4097), (3, 4097), (5, 4097), (2, 0xFFFF)],
)
def test_bad_length_per_type(codec, mtype, length):
    with pytest.raises(BGPError) as exc:
        codec.MessageReader().feed(header(length, mtype))
    assert_error(exc, 1, 2, length.to_bytes(2, "big"))


def test_length_error_raised_from_header_alone(codec):
    # The header is checked as soon as its 19 octets are in: no need to wait
    # for (or buffer) a body that can never be valid.
    r = codec.MessageReader()
    assert r.feed(header(5000, 2)[:18]) == []
    with pytest.raises(BGPError) as exc:
        r.feed(header(5000, 2)[18:])
    assert_error(exc, 1, 2, (5000).to_bytes(2, "big"))


def test_4096_is_the_default_maximum(codec):
    body = b"\x00\x00\x00\x00" + b"\x00" * (4096 - 23)
    msg = message(2, body)
    assert len(msg) == 4096
    assert codec.MessageReader().feed(msg) == [(2, body)]


def test_extended_update_accepted(codec):
    # RFC 8654 §4: with the Extended Message capability an UPDATE may reach 65535.
    body = b"\x00\x00\x00\x00" + bytes(5000 - 23)
    r = codec.MessageReader(max_len=65535)
    assert r.feed(message(2, body)) == [(2, body)]
    biggest = b"\x00\x00\x00\x00" + bytes(65535 - 23)
    assert r.feed(message(2, biggest)) == [(2, biggest)]


def test_extended_notification_and_refresh_accepted(codec):
    # RFC 8654 §4: the capability applies to all messages but OPEN and KEEPALIVE.
    r = codec.MessageReader(max_len=65535)
    note = bytes((6, 2)) + bytes(6000)
    assert r.feed(message(3, note)) == [(3, note)]


def test_extended_update_rejected_without_capability(codec):
    # RFC 8654 §5: an extended message that was not negotiated is a Bad Message Length.
    with pytest.raises(BGPError) as exc:
        codec.MessageReader().feed(header(5000, 2))
    assert_error(exc, 1, 2, (5000).to_bytes(2, "big"))


@pytest.mark.parametrize("length", [4097, 5000, 65535])
def test_open_never_exceeds_4096(codec, length):
    # RFC 8654 §4: OPEN stays within 4096 octets even once extended messages are on.
    with pytest.raises(BGPError) as exc:
        codec.MessageReader(max_len=65535).feed(header(length, 1))
    assert_error(exc, 1, 2, length.to_bytes(2, "big"))


def test_keepalive_is_exactly_19_even_extended(codec):
    # RFC 4271 §6.1: KEEPALIVE length other than 19 is a Bad Message Length.
    with pytest.raises(BGPError) as exc:
        codec.MessageReader(max_len=65535).feed(header(23, 4) + b"\x00" * 4)
    assert_error(exc, 1, 2, b"\x00\x17")


def test_max_len_raised_after_negotiation(codec):
    # The session raises the limit once both OPENs carried the RFC 8654 capability.
    r = codec.MessageReader()
    assert r.max_len == 4096
    assert r.feed(KEEPALIVE) == [(4, b"")]
    r.max_len = 65535
    body = b"\x00\x00\x00\x00" + bytes(6000)
    assert r.feed(message(2, body)) == [(2, body)]


def test_length_field_cannot_exceed_65535(codec):
    # The header length field has 2 octets (RFC 4271 §4.1): 65535 is the most
    # a header can announce, and frame() must refuse a body that would need more.
    assert codec.parse_header(header(0xFFFF, 2)) == (0xFFFF, 2)
    assert len(codec.frame(2, bytes(65535 - 19))) == 65535
    with pytest.raises((ValueError, OverflowError)):
        codec.frame(2, bytes(65535 - 19 + 1))


# ---------------------------------------------------------------- marker and type


def test_bad_marker(codec):
    # RFC 4271 §6.1: marker not all ones -> Connection Not Synchronized, no data.
    bad = b"\xff" * 15 + b"\xfe" + KEEPALIVE[16:]
    with pytest.raises(BGPError) as exc:
        codec.MessageReader().feed(bad)
    assert_error(exc, 1, 1, b"")


def test_bad_marker_after_good_messages(codec):
    r = codec.MessageReader()
    assert r.feed(KEEPALIVE) == [(4, b"")]
    with pytest.raises(BGPError) as exc:
        r.feed(b"\x00" * 19)
    assert_error(exc, 1, 1, b"")


@pytest.mark.parametrize("mtype", [0, 6, 7, 128, 255])
def test_bad_type(codec, mtype):
    # RFC 4271 §6.1: Bad Message Type, data = the erroneous Type field.
    with pytest.raises(BGPError) as exc:
        codec.MessageReader().feed(header(19, mtype))
    assert_error(exc, 1, 3, bytes((mtype,)))


def test_reader_stays_failed(codec):
    r = codec.MessageReader()
    with pytest.raises(BGPError) as first:
        r.feed(header(19, 9))
    for data in (KEEPALIVE, b"", UPDATE):
        with pytest.raises(BGPError) as again:
            r.feed(data)
        assert again.value == first.value
        assert (again.value.code, again.value.subcode, again.value.data) == (1, 3, b"\x09")


def test_error_after_good_messages_in_same_chunk(codec):
    r = codec.MessageReader()
    with pytest.raises(BGPError) as exc:
        r.feed(KEEPALIVE + UPDATE + header(3, 2))
    assert_error(exc, 1, 2, b"\x00\x03")


# ---------------------------------------------------------------- parse_header, frame


def test_parse_header(codec):
    assert codec.parse_header(UPDATE) == (len(UPDATE), 2)
    assert codec.parse_header(KEEPALIVE) == (19, 4)
    # Only the header is looked at: lengths are checked by MessageReader.
    assert codec.parse_header(header(5, 77)) == (5, 77)


def test_parse_header_bad_marker(codec):
    with pytest.raises(BGPError) as exc:
        codec.parse_header(b"\x00" * 19)
    assert_error(exc, 1, 1, b"")


def test_parse_header_short(codec):
    with pytest.raises(BGPError) as exc:
        codec.parse_header(MARKER + b"\x00")
    assert_error(exc, 1, 2, b"\x00\x11")


def test_frame(codec):
    assert codec.frame(4, b"") == KEEPALIVE
    assert codec.frame(2, UPDATE[19:]) == UPDATE
    body = bytes(range(256)) * 20
    framed = codec.frame(3, body)
    assert framed[:16] == MARKER and int.from_bytes(framed[16:18], "big") == 19 + len(body)
    assert framed[18] == 3 and framed[19:] == body


def test_frame_then_read(codec):
    bodies = [b"\x00\x00\x00\x00", bytes((6, 4)) + b"bye", b"\x00\x02\x00\x01"]
    msgs = [codec.frame(t, b) for t, b in zip((2, 3, 5), bodies)]
    assert codec.MessageReader().feed(b"".join(msgs)) == list(zip((2, 3, 5), bodies))


# ---------------------------------------------------------------- ROUTE-REFRESH length


@pytest.mark.parametrize("body", [b"\x00\x01\x01", b"\x00\x01\x02"], ids=["borr-3-octets", "eorr-3-octets"])
def test_short_borr_eorr_reaches_route_refresh_error(codec, body):
    """RFC 7313 §5: a BoRR/EoRR (subtype 1, 2) whose body is not 4 octets is
    a ROUTE-REFRESH Message Error (7/1) with the complete message as data.
    RFC 4271 §6.1 sets no minimum length for ROUTE-REFRESH (it predates it),
    so a 22-octet one must get through framing to parse_route_refresh
    rather than be rejected as a header Bad Message Length (1/2)."""
    msg = message(5, body)
    got = codec.MessageReader().feed(msg)
    assert got == [(5, body)]
    with pytest.raises(BGPError) as exc:
        codec.parse_route_refresh(got[0][1])
    assert (exc.value.code, exc.value.subcode, exc.value.data) == (7, 1, msg)


@pytest.mark.parametrize("seed", range(10))
def test_framed_counts_the_bodies_of_the_last_feed(codec, seed):
    rnd = random.Random(seed)
    data = b"".join(STREAM) * 3
    cuts = sorted(rnd.sample(range(1, len(data)), rnd.randint(1, 30)))
    r = codec.MessageReader()
    for a, b in zip([0] + cuts, cuts + [len(data)]):
        got = r.feed(data[a:b])
        assert r.framed == sum(len(body) for _t, body in got)


def test_take_run_pops_the_leading_updates_within_the_budgets(codec):
    from collections import deque

    u = [bytes([i]) * (10 + i) for i in range(6)]
    err = BGPError(1, 1, b"", "marker")
    q = deque([(2, u[1]), (2, u[2]), (4, b""), (2, u[3])])
    assert codec.take_run(q, u[0], 1000, 100) == ([u[0], u[1], u[2]], len(u[1]) + len(u[2]))
    assert list(q) == [(4, b""), (2, u[3])], "a KEEPALIVE ends the run"
    q = deque([(2, u[1]), (2, u[2]), (2, u[3])])
    assert codec.take_run(q, u[0], 1000, 2) == ([u[0], u[1], u[2]], len(u[1]) + len(u[2]))
    assert len(q) == 1, "at most max_count after the first"
    q = deque([(2, u[1]), (2, u[2]), (2, u[3])])
    # Octets: fewer than max_octets taken before each pop; the last may pass.
    assert codec.take_run(q, u[0], len(u[1]) + 1, 100) == ([u[0], u[1], u[2]], len(u[1]) + len(u[2]))
    q = deque([(2, u[1]), err, (2, u[2])])
    assert codec.take_run(q, u[0], 1000, 100)[0] == [u[0], u[1]]
    assert q[0] is err, "a framing error waits its turn"
    q = deque()
    assert codec.take_run(q, u[0], 0, 0) == ([u[0]], 0)
