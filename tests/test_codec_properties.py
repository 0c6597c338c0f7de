"""Property tests (hypothesis) for both codecs.

(a) round trip: pack_updates -> parse_update gives back exactly the input
    prefixes, in order, and the canonical attribute block byte for byte;
(b) parity: the compiled codec and its pure-Python twin agree on every
    input, including random and damaged ones (same results, or BGPErrors
    with the same code, subcode, data, action, attr_type);
(c) robustness: nothing but BGPError ever escapes the parsers.
"""

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import bgpgen as g
from fastbgp.wire.errors import BGPError

# Fixtures here are stateless modules, so reusing one across examples is fine.
# Budget: the whole file (both implementations) runs in well under 20 s.
# CHEAP inputs are plain binaries; HEAVY ones build whole UPDATEs.
SETTINGS = settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
CHEAP = settings(SETTINGS, max_examples=500)
HEAVY = settings(SETTINGS, max_examples=80)

flags = st.booleans()


def outcome(f, *args, **kw):
    """What a call did: its result, or the BGPError fields it raised."""
    try:
        return ("ok", f(*args, **kw))
    except BGPError as e:
        return ("error", e.code, e.subcode, e.data, e.action, e.attr_type)


def raises_only_bgp_error(f, *args, **kw):
    try:
        f(*args, **kw)
    except BGPError as e:
        assert isinstance(e.code, int) and isinstance(e.data, bytes)


def entry_size(packed, addpath):
    off = 4 if addpath else 0
    return off + 1 + (packed[off] + 7) // 8


# ---------------------------------------------------------------- (a) round trip


def pack_case(codec, case, attrs=None, packed=None):
    attrs = case["attrs"] if attrs is None else attrs
    if packed is None:
        packed = g.pack(case["entries"], case["addpath"])
    if case["nh"] is None:
        return codec.pack_updates(attrs, packed, case["tx"])
    return codec.pack_updates(attrs, packed, case["tx"], case["afi"], case["safi"], case["nh"])


@HEAVY
@given(case=g.update_cases())
def test_pack_parse_round_trip(codec, case):
    packed = g.pack(case["entries"], case["addpath"])
    limit = 65535 if case["extended"] else 4096
    msgs = pack_case(codec, case, packed=packed)
    assert msgs
    got = []
    parsed = []
    for m in msgs:
        assert len(m) <= limit
        pu = codec.parse_update(g.body_of(m), case["rx"])
        assert pu.action == 0 and pu.errors == ()
        # Canonical block: decode(encode(attrs)) == attrs, byte for byte.
        assert pu.attrs == case["attrs"]
        if case["nh"] is None:
            assert pu.mp_reach is None
            got.append(pu.nlri)
        else:
            assert pu.nlri == b"" and pu.mp_reach[:3] == (case["afi"], case["safi"], case["nh"])
            got.append(pu.mp_reach[3])
        parsed.append(pu)
    assert b"".join(got) == packed
    assert sum(p.n_announced for p in parsed) == len(case["entries"])
    assert codec.unpack_prefixes(packed, case["afi"], case["addpath"]) == case["entries"]
    # Fewest messages: the first prefix of each next message did not fit
    # (1 octet of slack for the MP_REACH header growing from 3 to 4 octets).
    slack = 0 if case["nh"] is None else 1
    for k in range(len(msgs) - 1):
        assert len(msgs[k]) + entry_size(got[k + 1], case["addpath"]) > limit - slack
    # encode -> decode -> encode is byte-identical.
    assert pack_case(codec, case, attrs=parsed[0].attrs, packed=b"".join(got)) == msgs


@SETTINGS
@given(afi=st.sampled_from((1, 2)), addpath=flags, extended=flags, data=st.data())
def test_pack_withdraws_round_trip(codec, afi, addpath, extended, data):
    safi = data.draw(st.sampled_from((1, 2)))
    entries = data.draw(g.prefix_lists(afi, addpath, min_size=1, max_size=200))
    packed = g.pack(entries, addpath)
    fam = frozenset({(afi, safi)}) if addpath else frozenset()
    tx = g.Context(addpath_tx=fam, extended_message=extended)
    rx = g.Context(addpath_rx=fam, extended_message=extended)
    msgs = codec.pack_withdraws(packed, tx, afi, safi)
    got = []
    for m in msgs:
        assert len(m) <= (65535 if extended else 4096)
        pu = codec.parse_update(g.body_of(m), rx)
        assert pu.attrs == b"" and pu.nlri == b"" and pu.mp_reach is None and pu.errors == ()
        if (afi, safi) == (1, 1):
            got.append(pu.withdrawn)
        else:
            assert pu.withdrawn == b"" and pu.mp_unreach[:2] == (afi, safi)
            got.append(pu.mp_unreach[2])
    assert b"".join(got) == packed


@CHEAP
@given(afi=st.sampled_from((1, 2)), addpath=flags, data=st.data())
def test_prefix_helpers_round_trip(codec, afi, addpath, data):
    entries = data.draw(g.prefix_lists(afi, addpath))
    packed = codec.pack_prefixes(entries, addpath)
    assert packed == g.pack(entries, addpath)
    assert codec.count_prefixes(packed, afi, addpath) == len(entries)
    assert codec.unpack_prefixes(packed, afi, addpath) == entries


@HEAVY
@given(data=g.valid_update_bodies())
def test_valid_updates_parse_clean(codec, data):
    body, ctx = data
    # From an internal peer: nothing in these bodies is subject to the
    # eBGP discard rules of RFC 7606 §7.5, §7.9, §7.10.
    ctx = g.Context(as4=ctx.as4, addpath_rx=ctx.addpath_rx)
    pu = codec.parse_update(body, ctx)
    assert pu.action == 0 and pu.errors == ()
    # Re-packing the canonical attributes and parsing again is stable.
    if pu.nlri:
        msgs = codec.pack_updates(pu.attrs, pu.nlri, g.Context(as4=ctx.as4, addpath_tx=ctx.addpath_rx))
        again = [codec.parse_update(g.body_of(m), ctx) for m in msgs]
        assert all(p.attrs == pu.attrs for p in again)
        assert b"".join(p.nlri for p in again) == pu.nlri


# ---------------------------------------------------------------- (b) parity


@CHEAP
@given(body=st.binary(max_size=300), ctx=g.contexts, strict=flags, lenient=flags)
def test_parity_parse_update_random(both_codecs, body, ctx, strict, lenient):
    c, p = both_codecs
    assert outcome(c.parse_update, body, ctx, strict, lenient) == outcome(p.parse_update, body, ctx, strict, lenient)


@HEAVY
@given(data=g.mutated_updates(), strict=flags, lenient=flags)
def test_parity_parse_update_mutated(both_codecs, data, strict, lenient):
    c, p = both_codecs
    body, ctx = data
    assert outcome(c.parse_update, body, ctx, strict, lenient) == outcome(p.parse_update, body, ctx, strict, lenient)


@HEAVY
@given(data=g.valid_update_bodies())
def test_parity_parse_update_valid(both_codecs, data):
    c, p = both_codecs
    body, ctx = data
    assert outcome(c.parse_update, body, ctx) == outcome(p.parse_update, body, ctx)


@SETTINGS
@given(body=st.one_of(st.binary(max_size=80), g.open_bodies(), g.open_bodies().flatmap(g.mutated)))
def test_parity_parse_open(both_codecs, body):
    c, p = both_codecs
    assert outcome(c.parse_open, body) == outcome(p.parse_open, body)


@CHEAP
@given(body=st.binary(max_size=12))
def test_parity_notification_and_refresh(both_codecs, body):
    c, p = both_codecs
    assert outcome(c.parse_notification, body) == outcome(p.parse_notification, body)
    assert outcome(c.parse_route_refresh, body) == outcome(p.parse_route_refresh, body)
    assert outcome(c.parse_header, body + bytes(8)) == outcome(p.parse_header, body + bytes(8))


@CHEAP
@given(packed=st.one_of(st.binary(max_size=40),
                        st.lists(st.integers(0, 32).flatmap(lambda n: st.binary(min_size=(n + 7) // 8, max_size=(n + 7) // 8)
                                                             .map(lambda a, n=n: bytes([n]) + a)), max_size=8)
                        .map(b"".join)),
       afi=st.sampled_from([1, 2]))
def test_parity_prefix_texts(both_codecs, packed, afi):
    """prefix_texts: the same texts (or the same ValueError) from both
    twins, and the texts of unpack_prefixes' prefixes."""
    c, p = both_codecs

    def texts(impl):
        try:
            return ("ok", impl.prefix_texts(packed, afi))
        except ValueError:
            return ("malformed",)

    got = texts(c)
    assert got == texts(p)
    if got[0] == "ok":
        import ipaddress

        want = [str(ipaddress.ip_network((int.from_bytes(a, "big"), n) if afi == 1 else (a, n)))
                for _i, a, n in p.unpack_prefixes(packed, afi)]
        assert got[1] == want


def feed_trace(codec, chunks, max_len):
    r = codec.MessageReader(max_len)
    trace = []
    for ch in chunks:
        res = outcome(r.feed, ch)
        trace.append((res, r.buffered if res[0] == "ok" else None))
    return trace


@HEAVY
@given(data=g.message_streams(), extended=flags)
def test_parity_message_reader(both_codecs, data, extended):
    c, p = both_codecs
    stream, cuts = data
    chunks = g.chunks(stream, cuts) + [g.KEEPALIVE]
    max_len = 65535 if extended else 4096
    assert feed_trace(c, chunks, max_len) == feed_trace(p, chunks, max_len)


@CHEAP
@given(stream=st.binary(max_size=200), cuts=st.lists(st.integers(0, 200), max_size=5))
def test_parity_message_reader_random_bytes(both_codecs, stream, cuts):
    c, p = both_codecs
    chunks = g.chunks(stream, sorted(x for x in cuts if x <= len(stream)))
    assert feed_trace(c, chunks, 4096) == feed_trace(p, chunks, 4096)


@HEAVY
@given(case=g.update_cases())
def test_parity_pack_updates(both_codecs, case):
    c, p = both_codecs
    assert pack_case(c, case) == pack_case(p, case)


@SETTINGS
@given(afi=st.sampled_from((1, 2)), safi=st.sampled_from((1, 2)), addpath=flags, extended=flags, data=st.data())
def test_parity_pack_withdraws(both_codecs, afi, safi, addpath, extended, data):
    c, p = both_codecs
    packed = g.pack(data.draw(g.prefix_lists(afi, addpath, max_size=300)), addpath)
    ctx = g.Context(addpath_tx=frozenset({(afi, safi)}) if addpath else frozenset(), extended_message=extended)
    assert c.pack_withdraws(packed, ctx, afi, safi) == p.pack_withdraws(packed, ctx, afi, safi)


def value_outcome(f, *args):
    try:
        return ("ok", f(*args))
    except ValueError:
        return ("ValueError",)


@CHEAP
@given(packed=st.binary(max_size=60), afi=st.sampled_from((1, 2, 25)), addpath=flags)
def test_parity_prefix_helpers_random(both_codecs, packed, afi, addpath):
    c, p = both_codecs
    assert value_outcome(c.count_prefixes, packed, afi, addpath) == value_outcome(p.count_prefixes, packed, afi, addpath)
    assert value_outcome(c.unpack_prefixes, packed, afi, addpath) == value_outcome(p.unpack_prefixes, packed, afi, addpath)


@CHEAP
@given(attrs=st.binary(max_size=40), packed=st.binary(max_size=40), ctx=g.contexts)
def test_parity_pack_updates_garbage(both_codecs, attrs, packed, ctx):
    # Malformed packed prefixes: both refuse (ValueError) or both produce the same bytes.
    c, p = both_codecs
    ctx = g.Context(as4=True, addpath_tx=ctx.addpath_tx, extended_message=ctx.extended_message)
    assert value_outcome(c.pack_updates, attrs, packed, ctx) == value_outcome(p.pack_updates, attrs, packed, ctx)
    assert value_outcome(c.pack_withdraws, packed, ctx) == value_outcome(p.pack_withdraws, packed, ctx)


# ---------------------------------------------------------------- (c) only BGPError escapes


@HEAVY
@given(body=st.one_of(st.binary(max_size=400), g.mutated_updates().map(lambda d: d[0])), ctx=g.contexts, strict=flags, lenient=flags)
def test_parse_update_raises_only_bgp_error(codec, body, ctx, strict, lenient):
    raises_only_bgp_error(codec.parse_update, body, ctx, strict, lenient)


@SETTINGS
@given(body=st.one_of(st.binary(max_size=100), g.open_bodies().flatmap(g.mutated)))
def test_parse_open_raises_only_bgp_error(codec, body):
    raises_only_bgp_error(codec.parse_open, body)


@CHEAP
@given(body=st.binary(max_size=30))
def test_small_parsers_raise_only_bgp_error(codec, body):
    raises_only_bgp_error(codec.parse_notification, body)
    raises_only_bgp_error(codec.parse_route_refresh, body)
    raises_only_bgp_error(codec.parse_header, body)


@HEAVY
@given(data=st.one_of(g.message_streams(), st.tuples(st.binary(max_size=300), st.lists(st.integers(0, 300), max_size=6))), max_len=st.sampled_from((4096, 65535)))
def test_message_reader_raises_only_bgp_error(codec, data, max_len):
    stream, cuts = data
    r = codec.MessageReader(max_len)
    for ch in g.chunks(stream, sorted(x for x in cuts if x <= len(stream))):
        try:
            for mtype, body in r.feed(ch):
                assert mtype in (1, 2, 3, 4, 5) and isinstance(body, bytes)
        except BGPError:
            return


@HEAVY
@given(data=g.valid_update_bodies())
def test_mutated_updates_never_crash_and_keep_invariants(codec, data):
    body, ctx = data
    for cut in range(0, len(body), max(1, len(body) // 8)):
        try:
            pu = codec.parse_update(body[:cut], ctx)
        except BGPError:
            continue
        # Whatever is accepted is internally consistent.
        if pu.treat_as_withdraw:
            assert pu.attrs == b"" and pu.nlri == b"" and pu.mp_reach is None and pu.n_announced == 0
        assert pu.n_announced >= 0 and pu.n_withdrawn >= 0


# ---------------------------------------------------------------- attribute blocks

def _twins():
    """(compiled, pure-Python) codec modules; the compiled one skipped only
    under FASTBGP_NO_EXTENSIONS (fastbgp.testing.plugin.implementation)."""
    from fastbgp.testing.plugin import implementation
    from fastbgp.wire import codec as selector
    return implementation(selector, "cython"), implementation(selector, "python")


def _reads(f, *args):
    """What an attribute-block reader did: its result, or that it read past
    the end (IndexError, which its callers catch)."""
    try:
        return ("ok", f(*args))
    except IndexError:
        return ("past the end",)


def _attr_blocks():
    # Well-formed blocks of random attributes (some Extended Length), then
    # possibly cut short or with junk appended.
    attr = st.tuples(st.integers(0, 255), st.integers(0, 255), st.binary(max_size=300))
    def block(attrs):
        out = b""
        for fl, t, v in attrs:
            if fl & 0x10 or len(v) > 255:
                out += bytes((fl | 0x10, t, len(v) >> 8, len(v) & 0xFF)) + v
            else:
                out += bytes((fl, t, len(v))) + v
        return out
    good = st.lists(attr, max_size=6).map(block)
    return st.one_of(st.binary(max_size=64), good,
                     st.tuples(good, st.integers(0, 400)).map(lambda x: x[0][:x[1]]),
                     st.tuples(good, st.binary(max_size=5)).map(lambda x: x[0] + x[1]))


@CHEAP
@given(block=_attr_blocks(), start=st.integers(0, 20), end=st.one_of(st.none(), st.integers(0, 500)))
def test_attribute_block_readers_agree(block, start, end):
    """attr_spans / split_attrs of the compiled codec equal fastbgp.wire.as4's
    (the twin's) on any bytes: same spans and values, IndexError at the same
    inputs, the same clipping where a length points past the end."""
    _codec, _codec_py = _twins()
    assert _reads(_codec.split_attrs, block) == _reads(_codec_py.split_attrs, block)
    assert _reads(_codec.split_attrs, bytearray(block)) == _reads(_codec_py.split_attrs, bytearray(block))
    assert _reads(_codec.attr_spans, block) == _reads(_codec_py.attr_spans, block)
    assert _reads(_codec.attr_spans, block, start, end) == _reads(_codec_py.attr_spans, block, start, end)


@CHEAP
@given(block=_attr_blocks(), types=st.lists(st.integers(0, 40), max_size=6).map(tuple) | st.just((2, 9, 10, 35)))
@example(block=bytes.fromhex("400206020100000001" "400206020100000002"), types=(2,))  # two AS_PATHs: the first
@example(block=bytes.fromhex("400206020100000001"), types=(2, 2))  # a type asked twice: its first place
def test_attr_values_readers_agree(block, types):
    """attr_values of the compiled codec equals as4's on any bytes: the
    value of each type's first attribute (clipped as a slice clips), None
    when absent, IndexError where attr_spans raises it."""
    _codec, _codec_py = _twins()
    got = _reads(_codec.attr_values, block, types)
    assert got == _reads(_codec_py.attr_values, block, types)
    assert _reads(_codec.attr_values, bytearray(block), types) == got
    spans = _reads(_codec_py.attr_spans, block)
    if spans[0] == "ok":
        want = [None] * len(types)
        for _f, t, vs, ve, _s in spans[1]:
            if t in types and want[types.index(t)] is None:
                want[types.index(t)] = block[vs:ve]
        assert got == ("ok", tuple(want))
    else:
        assert got == spans


def _paths():
    seg = st.tuples(st.integers(0, 255), st.lists(st.integers(0, 2**32 - 1), max_size=8))
    def encode(segs, width):
        return b"".join(bytes((t, len(a))) + b"".join(x.to_bytes(4, "big")[4 - width:] for x in a) for t, a in segs)
    return st.one_of(
        st.binary(max_size=40),
        st.tuples(st.lists(seg, max_size=4), st.sampled_from([2, 4]), st.integers(0, 80)).map(
            lambda x: encode(x[0], x[1])[:x[2]] if x[2] < 80 else encode(x[0], x[1])))


@CHEAP
@given(value=_paths(), width=st.sampled_from([2, 4, 1, 3, 9]))
def test_as_path_decoders_agree(value, width):
    """decode_segments of the compiled codec equals as4's on any bytes and
    width, truncated ASNs and counts included."""
    _codec, _codec_py = _twins()
    assert _reads(_codec.decode_segments, value, width) == _reads(_codec_py.decode_segments, value, width)
    assert _reads(_codec.decode_segments, memoryview(value), width) == _reads(_codec_py.decode_segments, value, width)


@CHEAP
@given(block=st.one_of(_attr_blocks(), _paths().map(lambda v: bytes((0x40, 2, len(v))) + v if len(v) < 256 else v)))
@example(block=bytes.fromhex("400206020100000001" "400206020100000002"))  # two AS_PATHs: the first counts
@example(block=bytes.fromhex("40020e" "0201000000fd" "0102000000010000000200"))  # AS_SET last, its last ASN cut short
@example(block=bytes.fromhex("40020a" "020100000007" "0200" "0300"))  # empty segments after
@example(block=bytes.fromhex("40020b" "0202000000010000000c"))  # AS_SEQUENCE of two
def test_final_segment_readers_agree(block):
    """final_segment (the RFC 6811 origin's segment) of the compiled codec
    equals as4's on any bytes, and is what decode_segments of the first
    AS_PATH gives for its last non-empty segment."""
    _codec, _codec_py = _twins()
    got = _reads(_codec.final_segment, block)
    assert got == _reads(_codec_py.final_segment, block)
    assert _reads(_codec.final_segment, bytearray(block)) == got
    spans = _reads(_codec_py.attr_spans, block)
    if spans[0] == "ok":
        path = next((block[s[2]:s[3]] for s in spans[1] if s[1] == 2), b"")
        segs = _reads(_codec_py.decode_segments, path, 4)
        if segs[0] == "ok":
            full = [(t, a[-1]) for t, a in segs[1] if a]
            assert got == ("ok", full[-1] if full else None)
        else:
            assert got == segs
    else:
        assert got == spans


_FEW_ASNS = [0, 1, 7, 64512, 4200000000, 2**32 - 1]


def _looping_paths():
    # AS_PATHs over a few ASNs (so that the ASNs asked about are often in
    # them), every segment type, sometimes cut short.
    seg = st.tuples(st.sampled_from([1, 2, 3, 4, 0, 9]), st.lists(st.sampled_from(_FEW_ASNS), max_size=6))
    def encode(x):
        segs, cut = x
        v = b"".join(bytes((t, len(a))) + b"".join(n.to_bytes(4, "big") for n in a) for t, a in segs)
        return v[:cut] if cut < len(v) else v
    return st.tuples(st.lists(seg, max_size=4), st.integers(0, 120)).map(encode)


@CHEAP
@given(block=st.one_of(_attr_blocks(), _looping_paths().map(lambda v: bytes((0x40, 2, len(v))) + v if len(v) < 256 else v),
                       st.tuples(_looping_paths(), _looping_paths()).map(
                           lambda x: b"".join(bytes((0x40, 2, len(v))) + v for v in x if len(v) < 256))),
       asns=st.lists(st.sampled_from(_FEW_ASNS) | st.integers(-2, 2**64), max_size=10).map(tuple))
@example(block=bytes.fromhex("40020a" "0201000000070301" "00000008"), asns=(8,))  # a loop inside a confederation segment
@example(block=bytes.fromhex("400206" "030100000007" "400206" "020100000008"), asns=(8,))  # the second AS_PATH does not count
@example(block=bytes.fromhex("400207" "020100000008" "02"), asns=(8,))  # a loop, then a segment cut short
def test_path_has_readers_agree(block, asns):
    """path_has (the import's loop and confederation check) of the compiled
    codec equals as4's on any bytes and ASNs, and is what decode_segments
    of the first AS_PATH says."""
    from fastbgp.wire import as4

    _codec, _codec_py = _twins()
    got = _reads(_codec.path_has, block, asns)
    assert got == _reads(_codec_py.path_has, block, asns)
    assert _reads(_codec.path_has, bytearray(block), asns) == got
    values = _reads(_codec_py.attr_values, block, (2,))
    if values[0] != "ok":
        assert got == values
        return
    segs = _reads(_codec_py.decode_segments, values[1][0] or b"", 4)
    if segs[0] != "ok":
        assert got == segs
    elif any(a in m for _t, m in segs[1] for a in asns):
        assert got == ("ok", as4.PATH_LOOP)
    else:
        assert got == ("ok", as4.PATH_CONFED if any(t in (3, 4) for t, _m in segs[1]) else as4.PATH_PLAIN)


def _member_lists(width):
    # Lists with repeats (a few distinct members drawn again and again),
    # possibly with an incomplete member at the end.
    member = st.sampled_from([bytes([k]) * width for k in range(4)]) | st.binary(min_size=width, max_size=width)
    return st.tuples(st.lists(member, max_size=80), st.binary(max_size=width - 1)).map(lambda x: b"".join(x[0]) + x[1])


@CHEAP
@given(data=st.data(), width=st.sampled_from([4, 12, 8, 1, 16, 0, 17]))
@example(data=None, width=12)
def test_add_members_readers_agree(data, width):
    """add_members (a policy's community "add") of the compiled codec equals
    as4's: every member once, the value's first, in order; also past the
    compiled one's pairwise limit and for widths it hands to the twin."""
    _codec, _codec_py = _twins()
    if data is None:  # a long list: the dict's dedupe, not the pairwise one
        value, add = bytes(range(12)) * 50 + bytes(12) * 30, bytes(12) + bytes(range(1, 13))
    elif width < 1:
        value, add = b"abc", b"d"
    else:
        value, add = data.draw(_member_lists(width)), data.draw(_member_lists(width))
    if width < 1:  # a caller's error: the same exception from both
        with pytest.raises(ZeroDivisionError):
            _codec_py.add_members(value, add, width)
        with pytest.raises(ZeroDivisionError):
            _codec.add_members(value, add, width)
        return
    got = _codec.add_members(value, add, width)
    assert got == _codec_py.add_members(value, add, width)
    assert _codec.add_members(bytearray(value), memoryview(add), width) == got
    members = [got[k:k + width] for k in range(0, len(got), width)]
    assert len(members) == len(set(members))
    whole = [m for m in (value[:len(value) - len(value) % width] + add[:len(add) - len(add) % width])]
    assert set(members) == {bytes(whole[k:k + width]) for k in range(0, len(whole), width)}


@CHEAP
@given(block=_attr_blocks(), t=st.integers(0, 255), encoded=st.binary(max_size=20))
@example(block=bytes.fromhex("400101004003040a000001"), t=2, encoded=b"\x40\x02\x00")  # inserted between
@example(block=bytes.fromhex("400101004002004003040a000001"), t=2, encoded=b"")  # removed
@example(block=bytes.fromhex("4003040a000001400101"), t=32, encoded=b"x")  # not sorted: None
@example(block=bytes.fromhex("400101004001010140"), t=32, encoded=b"x")  # a duplicate: None
@example(block=bytes.fromhex("400101004002ff"), t=2, encoded=b"y")  # the length runs past the end
def test_splice_attr_readers_agree(block, t, encoded):
    """splice_attr (an import policy's one change, spliced into a sorted
    block) of the compiled codec equals as4's on any bytes; in a sorted,
    well-formed block it is the block rebuilt in type order."""
    _codec, _codec_py = _twins()
    got = _reads(_codec.splice_attr, block, t, encoded)
    assert got == _reads(_codec_py.splice_attr, block, t, encoded)
    spans = _reads(_codec_py.attr_spans, block)
    if got[0] == "ok" and got[1] is not None and spans[1] and spans[1][-1][3] == len(block):
        parts = {s[1]: block[s[4]:s[3]] for s in spans[1]}
        parts[t] = encoded
        assert got[1] == b"".join(parts[k] for k in sorted(parts))


def _edits():
    # An import policy's edits as data (fastbgp.rib.policy._compile_actions):
    # set (type, value), or add (type, members, width, fresh); types with
    # well-known flags, and one without (a KeyError when the block lacks it).
    t = st.sampled_from([1, 2, 4, 5, 8, 32, 99])
    set_ = st.tuples(t, st.binary(max_size=300))
    width = st.sampled_from([4, 12])
    add = st.tuples(t, st.binary(max_size=40), width, st.binary(max_size=24))
    return st.lists(set_ | add, max_size=3).map(tuple)


def _replays(f, block, edits):
    try:
        return ("ok", f(block, edits))
    except (IndexError, KeyError) as e:
        return (type(e).__name__,)


@CHEAP
@given(block=_attr_blocks(), edits=_edits())
@example(block=bytes.fromhex("400101004002060201000000014003040a000001"),
         edits=((32, bytes(range(12)), 12, bytes(range(12))),))  # the RPKI tag added
@example(block=bytes.fromhex("400101004003040a000001c0200c") + bytes(12),
         edits=((32, bytes(12), 12, bytes(12)),))  # already there: the block itself
@example(block=bytes.fromhex("400101"), edits=((5, bytes(300)),))  # a value past 255 octets
@example(block=bytes.fromhex("400101"), edits=((5, bytes(255)),))  # the longest without Extended Length
@example(block=bytes.fromhex("400101"), edits=((5, bytes(256)),))  # the shortest with it
def test_replay_edits_readers_agree(block, edits):
    """replay_edits (a planned import policy applied to a block) of the
    compiled codec equals as4's on any bytes and edits: the same block,
    None, or the same exception."""
    _codec, _codec_py = _twins()
    got = _replays(_codec.replay_edits, block, edits)
    assert got == _replays(_codec_py.replay_edits, block, edits)
    if got[0] == "ok" and got[1] is not None and not edits:
        assert got[1] is block
