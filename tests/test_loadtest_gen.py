"""The load generator's two implementations: the compiled
``fastbgp.loadtest._gen`` and its pure-Python twin ``_gen_py``.

* each implementation on its own (fixture ``gen`` of fastbgp.testing.plugin,
  ids cython / python):
  tables decode to what was drawn, framing, keys, patching, errors;
* parity (fixture ``both_gens``): the same output octet for octet, or the
  same exception, for deterministic DFZ-like tables and for random
  parameters (hypothesis): table sizes, prefix lengths incl. the DFZ mix,
  IPv4/IPv6, attribute groups and patch points, ADD-PATH, caps, message
  sizes, per-session patching, discard framing of the encoded stream and
  of damaged input.
"""

import struct

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from fastbgp.loadtest import gen as gen_selector
from fastbgp.loadtest import generator as G
from fastbgp.loadtest import scenario as S
from fastbgp.wire import codec
from fastbgp.wire.types import Context

def outcome(f, *args, **kw):
    """What a call did: its result, or the exception type and text."""
    try:
        return ("ok", f(*args, **kw))
    except Exception as e:  # parity covers the exceptions too
        return ("error", type(e).__name__, str(e))


PEER = G.PeerInfo(0, 64512, "192.0.2.10", True)


def table_args(table, *, addpath=False, maxlen=4096, cap=0, first_as=64512, as4=True, start=None):
    """gen_table's arguments for ``table`` as TablePlan builds them."""
    plan = G.TablePlan(table)
    nh = b"\xc0\x00\x02\x0a" if table.family == "ipv4" else bytes.fromhex("20010db8" + "00" * 11 + "0a")
    a = G.build_attrs(table, first_as=first_as, next_hop=nh, as4=as4, family=table.family)
    return [plan.width, plan.base, table.prefixes, plan.lut, table.seed, start or bytes(129 * 8), table.per_group, 0,
            a.head, a.med_off, table.med, a.origin_off, a.origin_width, a.origin_base, a.origin_span, a.mp_head,
            a.tail, maxlen, cap, addpath, table.path_id, plan.limit]


# ---------------------------------------------------------------- each implementation


def test_selector_exports_the_api(gen):
    assert gen.IMPLEMENTATION in ("cython", "python")
    assert all(hasattr(gen, n) for n in gen_selector.API)
    assert gen_selector.IMPLEMENTATION == ("python" if gen_selector.NO_EXTENSIONS else "cython")
    with pytest.raises(ValueError):
        gen_selector.load("rust")


@pytest.mark.parametrize("family, lengths, addpath, cap", [
    ("ipv4", "dfz", False, 0), ("ipv4", "24", True, 7), ("ipv6", "dfz", False, 0), ("ipv6", "48:3,64:1", True, 0),
])
def test_table_decodes_to_the_packed_prefixes(gen, family, lengths, addpath, cap):
    t = S.Table(prefixes=3000, family=family, lengths=lengths, per_group=9, communities=["65000:1"],
                large_communities=["65000:1:2"], next_hop="2001:db8::1" if family == "ipv6" else "self")
    msgs, ends, cum, packed, counts = gen.gen_table(*table_args(t, addpath=addpath, cap=cap))
    assert sum(struct.unpack("=129q", counts)) == 3000
    fam = (1 if family == "ipv4" else 2, 1)
    ctx = Context(addpath_rx=frozenset([fam]) if addpath else frozenset())
    nlri = b""
    n = 0
    for mtype, body in codec.MessageReader().feed(msgs):
        u = codec.parse_update(body, ctx, strict=True)
        nl = u.nlri if family == "ipv4" else u.mp_reach[3]
        assert not cap or u.n_announced <= cap
        nlri += nl
        n += 1
    assert nlri == packed
    e = struct.unpack("=%dq" % (len(ends) // 8), ends)
    c = struct.unpack("=%dq" % (len(cum) // 8), cum)
    assert len(e) == len(c) == n and e[-1] == len(msgs) and c[-1] == 3000
    keys = gen.split_keys(packed, 128 if family == "ipv6" else 32, addpath)
    assert len(keys) == len(set(keys)) == 3000
    assert gen.packed_offset(packed, 3000, 128 if family == "ipv6" else 32, addpath) == len(packed)


def test_argument_errors(gen):
    args = table_args(S.Table(prefixes=10))

    def with_(i, v):
        a = list(args)
        a[i] = v
        return a

    for i, v, words in [(0, 64, "width"), (1, b"\x00" * 4, "16 octets"), (3, b"\x18" * 10, "4096"),
                        (3, b"\x21" * 4096, "out of range"), (6, 0, "per_group"), (9, 1000, "med_off"),
                        (17, 40, "no room")]:
        with pytest.raises(ValueError, match=words):
            gen.gen_table(*with_(i, v))
    with pytest.raises(TypeError, match="expected bytes, got bytearray"):
        gen.gen_table(*with_(3, bytearray(4096)))
    with pytest.raises(OverflowError):
        gen.gen_table(*with_(4, -1))
    with pytest.raises(ValueError, match=r"address space after 208 prefixes \(/8 counter 208\)"):
        gen.gen_table(*table_args(S.Table(prefixes=300, lengths="8")))


def test_skipper_and_keys(gen):
    st_ = gen.gen_table(*table_args(S.Table(prefixes=500, per_group=3)))[0]
    data = codec.build_open(65000, 90, 1) + codec.KEEPALIVE + st_ + codec.build_notification(6, 2, b"\x03bye")
    for step in (1, 19, 4096, len(data)):
        sk = gen.Skipper()
        others = []
        for i in range(0, len(data), step):
            others += list(sk.feed(data[i : i + step]))
        assert [t for t, _b in others] == [1, 3] and others[1][1] == b"\x06\x02\x03bye"
        assert sk.updates == 500 // 3 + 1 and sk.keepalives == 1 and sk.octets == len(data)
    with pytest.raises(ValueError, match="marker"):
        gen.Skipper().feed(b"\x00" * 19)
    packed = bytes([24, 198, 18, 1, 32, 198, 19, 0, 9, 24, 10, 0, 0, 15, 198, 19])
    assert gen.find_range(packed, 32, False, bytes([198, 18, 0, 0]), 15) == [
        bytes([24, 198, 18, 1]), bytes([32, 198, 19, 0, 9]), bytes([15, 198, 18])]
    assert gen.find_range(bytes([24, 10, 0, 0]), 32, False, bytes([198, 18]), 15) is None
    assert gen.split_keys(bytes([23, 10, 0, 1])) == [bytes([23, 10, 0, 0])]  # RFC 4271 §4.3 host bits
    assert gen.packed_offset(packed, 2) == 9
    with pytest.raises(ValueError, match="truncated"):
        gen.split_keys(bytes([24, 10, 0]))


def test_patch_and_bounds(gen):
    t = S.Table(prefixes=2000, per_group=10)
    a = G.build_attrs(t, first_as=64512, next_hop=b"\xc0\x00\x02\x0a", as4=True, family="ipv4")
    msgs, ends, _c, _p, _n = gen.gen_table(*table_args(t))
    as_rel, nh_rel = a.message_offsets()
    bounds = gen.chunk_bounds(ends, 4096)
    assert bounds[-1] == len(ends) // 8 and bounds == sorted(set(bounds))
    patched = gen.patch_chunk(msgs, ends, 0, len(ends) // 8, as_rel, (65001).to_bytes(4, "big"), nh_rel,
                              b"\xc0\x00\x02\x63")
    ref = gen.gen_table(*table_args(t, first_as=65001))[0]
    assert patched != msgs and patched.replace(b"\xc0\x00\x02\x63", b"\xc0\x00\x02\x0a") == ref
    with pytest.raises(ValueError, match="range"):
        gen.patch_chunk(msgs, ends, 3, 3, -1, b"", -1, b"")


# ---------------------------------------------------------------- parity


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_dfz_tables_are_identical(both_gens, family):
    cy, py = both_gens
    t = S.Table(prefixes=20_000, family=family, lengths="dfz", per_group=7, community_count=3,
                next_hop="2001:db8::1" if family == "ipv6" else "self")
    for kw in (dict(), dict(addpath=True, cap=13), dict(as4=False, first_as=None, maxlen=65535)):
        args = table_args(t, **kw)
        assert cy.gen_table(*args) == py.gen_table(*args)
        assert cy.gen_table(*args, encode=False) == py.gen_table(*args, encode=False)


SETTINGS = settings(max_examples=400, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

u32 = st.integers(0, 2**32 - 1)


@st.composite
def weights(draw, width):
    """Prefix-length weights: the DFZ mix, one length or a few."""
    kind = draw(st.sampled_from(["dfz", "one", "few"]))
    if kind == "dfz":
        return S.length_weights("dfz", "ipv4" if width == 32 else "ipv6")
    lo = 1 if draw(st.booleans()) else width // 2
    lens = draw(st.lists(st.integers(lo, width), min_size=1, max_size=1 if kind == "one" else 5, unique=True))
    return {ln: float(draw(st.integers(1, 100))) for ln in lens}


@st.composite
def tables(draw):
    """gen_table arguments: mostly realistic (attributes from build_attrs),
    sometimes pushed out of range."""
    family = draw(st.sampled_from(["ipv4", "ipv6"]))
    width = 32 if family == "ipv4" else 128
    t = S.Table(prefixes=draw(st.integers(0, 400)), family=family, seed=draw(st.integers(0, 2**64 - 1)),
                per_group=draw(st.sampled_from([1, 2, 3, 10, 100, 10**6])), med=draw(u32),
                as_path_length=draw(st.integers(0, 4)), origin_asns=draw(st.integers(1, 100_000)),
                communities=["65000:%d" % i for i in range(draw(st.integers(0, 2)))],
                large_communities=["65000:1:%d" % i for i in range(draw(st.integers(0, 2)))],
                community_count=draw(st.sampled_from([0, 1, 40, 600])), path_id=draw(u32),
                next_hop="192.0.2.1" if family == "ipv4" else "2001:db8::1")
    start = None
    if draw(st.integers(0, 3)) == 0:
        start = struct.pack("=129q", *draw(st.lists(
            st.one_of(st.integers(0, 5000), st.sampled_from([-1, 2**23, 2**40, 2**63 - 1])), min_size=129,
            max_size=129)))
    args = table_args(t, addpath=draw(st.booleans()), cap=draw(st.sampled_from([0, 0, 1, 2, 5, 50])),
                      maxlen=draw(st.one_of(st.sampled_from([4096, 65535]), st.integers(40, 70_000))),
                      first_as=draw(st.sampled_from([None, 64512, 4_200_000_000])), as4=draw(st.booleans()),
                      start=start)
    args[3] = G.lut_for(draw(weights(width)))
    args[7] = draw(st.sampled_from([0, 0, 1, 5, -1, -7]))  # group_base
    if draw(st.integers(0, 3)) == 0:
        args[1] = draw(st.binary(min_size=16, max_size=16))  # base anywhere, up to the limit
    if draw(st.integers(0, 9)) == 0:
        args[14] = draw(st.sampled_from([0, 1, 2, 3]))  # origin_span
    if draw(st.integers(0, 19)) == 0:
        i = draw(st.integers(0, len(args) - 1))
        junk = [None, -1, 0, 3, 2**32, 2**64, 1.5, "x", b"", bytearray(16), True]
        if i == 2:
            # Not 2**32 prefixes: the compiled one sizes its buffers first and
            # fails with MemoryError where the twin would draw until the
            # address space runs out.
            junk.remove(2**32)
        args[i] = draw(st.sampled_from(junk))
    kw = dict(encode=draw(st.booleans()), want_packed=draw(st.booleans()))
    return width, args, kw


@SETTINGS
@given(case=tables(), data=st.data())
def test_random_tables_are_identical(both_gens, case, data):
    cy, py = both_gens
    width, args, kw = case
    got = outcome(cy.gen_table, *args, **kw)
    assert got == outcome(py.gen_table, *args, **kw)
    event("gen_table: %s" % (got[0] if got[0] == "ok" else got[1]))
    if got[0] != "ok":
        return
    msgs, ends, _cum, packed, _counts = got[1]
    addpath = args[19] is True
    if ends:
        n = len(ends) // 8
        i0 = data.draw(st.integers(0, n))
        i1 = data.draw(st.integers(0, n + 1))
        patch = (i0, i1, data.draw(st.sampled_from([-1, 23, 30, 4000])), data.draw(st.binary(max_size=4)),
                 data.draw(st.sampled_from([-1, 26, 60])), data.draw(st.binary(max_size=16)))
        assert outcome(cy.patch_chunk, msgs, ends, *patch) == outcome(py.patch_chunk, msgs, ends, *patch)
        target = data.draw(st.sampled_from([-1, 0, 1, 100, 4096, 10**9]))
        assert cy.chunk_bounds(ends, target) == py.chunk_bounds(ends, target)
        # Discard framing of the stream, cut anywhere.
        stream = msgs + codec.KEEPALIVE + codec.build_notification(6, 2, b"x")
        step = data.draw(st.integers(1, 5000))
        a, b = cy.Skipper(), py.Skipper()
        for i in range(0, len(stream), step):
            assert a.feed(stream[i : i + step]) == b.feed(stream[i : i + step])
        assert (a.updates, a.keepalives, a.octets) == (b.updates, b.keepalives, b.octets)
    if packed:
        cut = packed[: data.draw(st.integers(0, len(packed)))]
        for f, fargs in ((lambda *x: x[0].split_keys(*x[1:]), (cut, width, addpath)),
                         (lambda *x: x[0].packed_offset(*x[1:]), (cut, data.draw(st.integers(0, 500)), width, addpath))):
            assert outcome(f, cy, *fargs) == outcome(f, py, *fargs)
        netlen = data.draw(st.integers(0, width))
        net = data.draw(st.binary(min_size=(netlen + 7) // 8, max_size=16))
        assert outcome(cy.find_range, cut, width, addpath, net, netlen) == \
            outcome(py.find_range, cut, width, addpath, net, netlen)


@settings(SETTINGS, max_examples=300)
@given(raw=st.binary(max_size=300), width=st.sampled_from([32, 128]), addpath=st.booleans(),
       netlen=st.integers(0, 32), step=st.integers(1, 40))
def test_damaged_input_is_handled_the_same(both_gens, raw, width, addpath, netlen, step):
    cy, py = both_gens
    for name, args in (("split_keys", (raw, width, addpath)), ("packed_offset", (raw, 50, width, addpath)),
                       ("find_range", (raw, width, addpath, raw[:4].ljust(4, b"\x00"), netlen))):
        assert outcome(getattr(cy, name), *args) == outcome(getattr(py, name), *args)
    # Skipper: a damaged stream, part of it with valid markers.
    a, b = cy.Skipper(), py.Skipper()
    data = raw if not raw[:1] or raw[0] & 1 else b"\xff" * 16 + raw[:3] + raw
    for i in range(0, len(data), step):
        got = outcome(a.feed, data[i : i + step])
        assert got == outcome(b.feed, data[i : i + step])
        if got[0] != "ok":
            break
    assert (a.updates, a.keepalives, a.octets) == (b.updates, b.keepalives, b.octets)


@pytest.mark.parametrize("value", [None, "x", bytearray(b"\x08\x0a"), memoryview(b"\x08\x0a\x08\x0b")[::2],
                                   memoryview(b"\x08\x0a").cast("c"), 1.5])
def test_odd_arguments_fail_the_same(both_gens, value):
    cy, py = both_gens
    for name, args in (("split_keys", (value,)), ("split_keys", (b"\x08\x0a", value)),
                       ("packed_offset", (value, 1)), ("packed_offset", (b"\x08\x0a", value)),
                       ("find_range", (b"\x08\x0a", 32, False, value, 8)), ("chunk_bounds", (value, 1)),
                       ("chunk_bounds", (b"\x01" + bytes(7), value))):
        assert outcome(getattr(cy, name), *args) == outcome(getattr(py, name), *args), (name, args)
    assert outcome(cy.Skipper().feed, value) == outcome(py.Skipper().feed, value)
