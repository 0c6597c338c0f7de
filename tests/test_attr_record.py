"""The record AttrTable.intern stores for each new attribute set: the
compiled RIB's ``record_words`` (one C walk over the block) against its
twin, fastbgp.rib.attrs.parse_fields (``_rib_py.record_words``), on
well-formed blocks of every attribute the record reads, on bad lengths, and
on any bytes (the same words, or IndexError at the same inputs)."""

from __future__ import annotations

import struct

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from fastbgp.rib import attrs as A
from fastbgp.testing.plugin import implementation
from fastbgp.wire.constants import (
    COMMUNITY_BLACKHOLE,
    COMMUNITY_GRACEFUL_SHUTDOWN,
    COMMUNITY_NO_ADVERTISE,
    COMMUNITY_NO_EXPORT,
    COMMUNITY_NO_EXPORT_SUBCONFED,
)

CHEAP = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
WELL_KNOWN = [COMMUNITY_NO_EXPORT, COMMUNITY_NO_ADVERTISE, COMMUNITY_NO_EXPORT_SUBCONFED,
              COMMUNITY_GRACEFUL_SHUTDOWN, COMMUNITY_BLACKHOLE]


def _twins():
    import fastbgp.rib as selector
    return implementation(selector, "cython"), implementation(selector, "python")


def _outcome(f, *args):
    try:
        return ("ok", f(*args))
    except IndexError:
        return ("past the end",)


def _attr(flags, t, value):
    if flags & 0x10 or len(value) > 255:
        return bytes((flags | 0x10, t, len(value) >> 8, len(value) & 0xFF)) + value
    return bytes((flags, t, len(value))) + value


def _path():
    seg = st.tuples(st.sampled_from([1, 2, 3, 4, 2, 2, 7]),
                    st.lists(st.integers(0, 2**32 - 1), max_size=6))
    return st.lists(seg, max_size=4).map(
        lambda segs: b"".join(bytes((t, len(a))) + b"".join(x.to_bytes(4, "big") for x in a) for t, a in segs))


def _u32s(values):
    return st.lists(values, max_size=6).map(lambda xs: b"".join(struct.pack("!I", x) for x in xs))


def _blocks():
    any_len = st.binary(max_size=9)
    value = {
        1: st.one_of(st.binary(min_size=1, max_size=1), any_len),
        2: st.one_of(_path(), _path().map(lambda v: v[:-1]), any_len),
        3: st.one_of(st.binary(min_size=4, max_size=4), any_len),
        4: st.one_of(st.binary(min_size=4, max_size=4), any_len),
        5: st.one_of(st.binary(min_size=4, max_size=4), any_len),
        6: st.just(b""),
        8: st.one_of(_u32s(st.one_of(st.sampled_from(WELL_KNOWN), st.integers(0, 2**32 - 1))),
                     any_len),
        9: st.one_of(st.binary(min_size=4, max_size=4), any_len),
        10: st.one_of(st.binary(max_size=16), any_len),
        16: st.binary(max_size=16),
        32: st.binary(max_size=24),
    }
    known = st.sampled_from(sorted(value)).flatmap(lambda t: st.tuples(st.just(t), value[t]))
    other = st.tuples(st.integers(0, 255), st.binary(max_size=12))
    attr = st.tuples(st.sampled_from([0x40, 0x80, 0xC0, 0x50, 0x00, 0xE0]), st.one_of(known, known, other)).map(
        lambda x: _attr(x[0], x[1][0], x[1][1]))
    block = st.lists(attr, max_size=8).map(b"".join)
    return st.one_of(block, block, st.tuples(block, st.integers(0, 60)).map(lambda x: x[0][:x[1]]),
                     st.binary(max_size=40))


@CHEAP
@given(block=_blocks(), next_hop=st.sampled_from([b"", b"\xc0\x00\x02\x01", bytes(16)]), worst=st.booleans())
@example(block=_attr(0x40, 2, bytes.fromhex("0301" "0000fde8" "0202" "0000000100000002")), next_hop=b"", worst=False)
@example(block=_attr(0xC0, 8, struct.pack("!3I", 5, COMMUNITY_BLACKHOLE, COMMUNITY_NO_EXPORT)), next_hop=b"",
         worst=True)
@example(block=_attr(0x80, 4, b"\0\0\0\7") + _attr(0x80, 4, b"\0\0"), next_hop=b"", worst=True)
@example(block=_attr(0x40, 3, b"") + _attr(0x40, 3, b"\1\2\3\4"), next_hop=b"", worst=False)
def test_compiled_record_words_equal_parse_fields(block, next_hop, worst):
    compiled, twin = _twins()
    want = _outcome(twin.record_words, block, next_hop, worst)
    assert _outcome(compiled.record_words, block, next_hop, worst) == want
    assert _outcome(compiled.record_words, bytearray(block), next_hop, worst) == want
    if want[0] == "ok":
        assert want[1] == A.parse_fields(block, next_hop, worst)[0]


def test_intern_stores_the_record_parse_fields_gives():
    """AttrTable.intern (the selected RIB's record_words unless given one)
    stores parse_fields' words, then the reference count."""
    table = A.AttrTable()
    block = _attr(0x40, 1, b"\0") + _attr(0x40, 2, bytes.fromhex("02010000fde9")) + _attr(0x40, 3, b"\xc0\0\2\1")
    aid = table.intern(block)
    rec = list(table.records[aid * A.WORDS : (aid + 1) * A.WORDS])
    assert rec == A.parse_fields(block)[0] + [1]
    info = table.info(aid)
    assert (info.neighbor_as, info.as_path_len, info.origin) == (65001, 1, 0)
