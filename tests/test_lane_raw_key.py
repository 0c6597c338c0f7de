"""The import lane's raw key (fastbgp.daemon.lanestep ``raw_key``): two
UPDATE bodies with the same key must parse alike (the lane takes a body
with a known key without a parse), and both implementations of the step
give the same key for any octets."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from fastbgp.wire import codec, messages as m
from fastbgp.wire.errors import BGPError
from fastbgp.wire.types import Context

AS4 = Context(as4=True)


def attrs_of(variant, v6, nlri6):
    base = [m.Origin(variant % 3), m.AsPath([m.Segment(2, [65001, 65100 + variant])])]
    if variant % 2:
        base.append(m.Med(variant))
    if v6:
        base.append(m.MpReach(afi=2, safi=1, next_hops=["2001:db8::%d" % (1 + variant % 2)], nlri=nlri6))
    else:
        base.append(m.NextHop("192.0.2.%d" % (1 + variant % 2)))
    return base


def body(variant, v6, prefixes):
    if v6:
        nlri6 = [m.Prefix("2001:db8:%x::/48" % p) for p in prefixes]
        return m.encode_update(m.Update(attributes=attrs_of(variant, True, nlri6)), AS4)
    return m.encode_update(m.Update(attributes=attrs_of(variant, False, None),
                                    nlri=[m.Prefix("10.%d.%d.0/24" % (p >> 8, p & 255)) for p in prefixes]), AS4)


def outcome(b):
    """What the lane would take from the parse: errors, or the parse's
    attributes, next hop, family and MP next hop."""
    try:
        p = codec.parse_update(b, AS4)
    except BGPError as exc:
        return ("error", exc.code, exc.subcode)
    mpr = p.mp_reach
    return (p.attrs, p.next_hop, p.action, len(p.errors), bool(p.withdrawn), p.mp_unreach is not None,
            None if mpr is None else (mpr[0], mpr[1], bytes(mpr[2])))


def mutate(b, where, value, cut):
    b = bytearray(b)
    if b and where is not None:
        b[where % len(b)] = value
    if cut:
        del b[len(b) - cut % max(1, len(b)):]
    return bytes(b)


prefix_lists = st.lists(st.integers(0, 4000), min_size=1, max_size=6)
mutations = st.tuples(st.one_of(st.none(), st.integers(0, 200)), st.integers(0, 255), st.integers(0, 3))


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(variant=st.integers(0, 5), v6=st.booleans(), a=prefix_lists, b=prefix_lists, mut_a=mutations,
       mut_b=mutations)
def test_bodies_with_one_key_parse_alike(both_lanes, variant, v6, a, b, mut_a, mut_b):
    x = mutate(body(variant, v6, a), *mut_a)
    y = mutate(body(variant, v6, b), *mut_b)
    keys = []
    for impl in both_lanes:
        kx, ky = impl.raw_key(x), impl.raw_key(y)
        keys.append((kx, ky))
    assert keys[0] == keys[1], "the compiled step and its twin give the same keys"
    kx, ky = keys[0]
    if mut_a[0] is None and not mut_a[2]:
        assert kx is not None, "a plain announcement has a key"
    if kx is not None and kx == ky:
        # The lane learns a key only from a parse without errors or action;
        # whatever the parse, the other body with the key parses alike.
        assert outcome(y) == outcome(x), "one key, one parse"


@pytest.mark.parametrize("v6", [False, True])
def test_the_key_leaves_out_the_prefixes_only(both_lanes, v6):
    x, y = body(1, v6, [1, 2]), body(1, v6, [3, 4, 5])
    z = body(2, v6, [1, 2])
    for impl in both_lanes:
        assert impl.raw_key(x) == impl.raw_key(y) != impl.raw_key(z)
        assert impl.raw_key(x)[0] == (6 if v6 else 4)
    wd = m.encode_update(m.Update(withdrawn=[m.Prefix("10.0.0.0/24")]), AS4)
    unreach = m.encode_update(m.Update(attributes=[m.MpUnreach(afi=2, safi=1, nlri=[m.Prefix("2001:db8::/48")])]),
                              AS4)
    for impl in both_lanes:
        assert impl.raw_key(wd) is None and impl.raw_key(unreach) is None
        assert impl.raw_key(b"") is None and impl.raw_key(b"\x00\x00\x00") is None
