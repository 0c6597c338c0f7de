"""RFC 6811 §2 origin AS from codec-parsed AS_PATHs, and ASPA verification
(draft-ietf-sidrops-aspa-verification upstream and downstream procedures)
on hand-checked topologies."""

import pytest

from fastbgp.rpki import aspa as A
from fastbgp.rpki.origin import as_path_segments, origin_of_attrs
from fastbgp.rpki.vrp import ORIGIN_NONE
from fastbgp.wire import codec
from fastbgp.wire.as4 import encode_attr, encode_segments
from fastbgp.wire.constants import AS_CONFED_SEQUENCE, AS_CONFED_SET, AS_SEQUENCE, AS_SET
from fastbgp.wire.types import DEFAULT_CONTEXT

LOCAL = 64511


def parsed_attrs(segments):
    """The canonical attribute block the codec gives for an UPDATE with
    this AS_PATH (ORIGIN IGP, NEXT_HOP 192.0.2.1)."""
    block = (encode_attr(0x40, 1, b"\x00") + encode_attr(0x40, 2, encode_segments(segments, 4))
             + encode_attr(0x40, 3, bytes((192, 0, 2, 1))))
    msgs = codec.pack_updates(block, b"\x18\xc6\x33\x64", DEFAULT_CONTEXT)
    u = codec.parse_update(msgs[0][19:], DEFAULT_CONTEXT)
    return u.attrs


@pytest.mark.parametrize("segments, want", [
    ([(AS_SEQUENCE, [64500, 64501, 64502])], 64502),
    ([(AS_SEQUENCE, [64500]), (AS_SEQUENCE, [64502, 64502])], 64502),  # prepended origin
    ([(AS_SEQUENCE, [64500]), (AS_SET, [64501, 64502])], ORIGIN_NONE),  # aggregate: NONE
    ([(AS_SET, [64501]), (AS_SEQUENCE, [64503])], 64503),
    ([], LOCAL),  # locally originated / iBGP: the speaker's own AS
    ([(AS_CONFED_SEQUENCE, [65001, 65002])], LOCAL),  # from inside our confederation
    ([(AS_CONFED_SET, [65001])], LOCAL),
    ([(AS_SEQUENCE, [4200000000])], 4200000000),  # 4-octet ASN
])
def test_origin_as(segments, want):
    # the codec's canonical block, and a block built by hand
    attrs = parsed_attrs(segments)
    assert origin_of_attrs(attrs, LOCAL) == want
    assert origin_of_attrs(encode_attr(0x40, 2, encode_segments(segments, 4)), LOCAL) == want
    assert [(st, list(a)) for st, a in as_path_segments(attrs)] == \
        [(st, list(a)) for st, a in segments]


def test_origin_skips_empty_final_segments():
    """RFC 6811 §2 reads the last AS of the final segment that has one."""
    path = bytes((AS_SEQUENCE, 1)) + (64500).to_bytes(4, "big") + bytes((AS_SET, 0))
    assert origin_of_attrs(encode_attr(0x40, 2, path), LOCAL) == 64500


def test_origin_without_as_path_attribute():
    assert origin_of_attrs(encode_attr(0x40, 1, b"\x00"), LOCAL) == LOCAL


def table(records):
    t = A.AspaTable()
    for customer, providers in records.items():
        t.set(customer, providers)
    return t


# A small topology: 10 and 20 are tier-1 peers; 100 is a customer of 10,
# 200 of 20, 1000 of 100, 2000 of 200.  Every AS has an ASPA except 2000.
RECORDS = {10: [], 20: [], 100: [10], 200: [20], 1000: [100]}


def path(*asns):
    """An AS_PATH as on the wire: the neighbour first, the origin last."""
    return [(AS_SEQUENCE, list(asns))]


def test_hop():
    t = table(RECORDS)
    assert t.hop(1000, 100) == A.PROVIDER
    assert t.hop(1000, 10) == A.NOT_PROVIDER
    assert t.hop(2000, 200) == A.NO_ATTESTATION


@pytest.mark.parametrize("segments, want", [
    (path(100, 1000), A.VALID),  # 1000 -> 100: customer to provider
    (path(1000), A.VALID),  # a direct customer
    (path(100, 100, 1000, 1000), A.VALID),  # prepends collapse
    (path(10, 1000), A.INVALID),  # 10 is not 1000's provider: a leak
    (path(200, 2000), A.UNKNOWN),  # 2000 has no ASPA
    (path(100, 2000), A.UNKNOWN),
    ([(AS_SEQUENCE, [100]), (AS_SET, [1000])], A.INVALID),  # AS_SET
    ([], A.INVALID),  # empty from an eBGP peer
])
def test_upstream(segments, want):
    assert table(RECORDS).verify(segments, downstream=False) == want


@pytest.mark.parametrize("segments, want", [
    # received by 1000 from its provider 100: origin 2000 up to 200, 20,
    # across to 10, down to 100
    (path(100, 10, 20, 200, 2000), A.UNKNOWN),  # 2000's hop is unattested
    (path(100, 10, 20, 200), A.VALID),  # up 200->20, peer 20-10, down 10->100
    (path(100, 10), A.VALID),
    (path(100, 10, 20), A.VALID),
    # 200 leaks 20's route to 100's provider 10?  path 10 <- 200 <- 20: 200
    # is not a provider of 20 nor the reverse for 10
    (path(100, 10, 200, 20), A.INVALID),
    (path(100, 1000, 100, 10), A.INVALID),  # a valley: down 100->1000 then up again
])
def test_downstream(segments, want):
    assert table(RECORDS).verify(segments, downstream=True) == want


def test_neighbor_must_be_first():
    t = table(RECORDS)
    assert t.verify(path(100, 1000), downstream=False, neighbor_as=100) == A.VALID
    assert t.verify(path(100, 1000), downstream=False, neighbor_as=200) == A.INVALID


def test_confederation_segments_are_skipped():
    t = table(RECORDS)
    segs = [(AS_CONFED_SEQUENCE, [65001]), (AS_SEQUENCE, [100, 1000])]
    assert t.verify(segs, downstream=False) == A.VALID


def test_table_operations():
    t = A.AspaTable()
    assert t.set(64496, [64497, 64498])
    assert not t.set(64496, (64498, 64497))  # same set: no change
    assert t.get(64496) == frozenset({64497, 64498})
    assert len(t) == 1 and t.items() == [(64496, frozenset({64497, 64498}))]
    assert t.remove(64496) and not t.remove(64496)
    with pytest.raises(ValueError):
        t.set(1, range(A.MAX_PROVIDERS + 1))


def test_rfc8097_community():
    from fastbgp.rpki.community import ovs_community, ovs_state
    from fastbgp.rpki.vrp import INVALID, NOT_FOUND, VALID
    assert ovs_community(VALID) == 0x4300000000000000
    assert ovs_community(NOT_FOUND) == 0x4300000000000001
    assert ovs_community(INVALID) == 0x4300000000000002
    for s in (VALID, NOT_FOUND, INVALID):
        assert ovs_state(ovs_community(s)) == s
    assert ovs_state(0x4300000000000003) is None  # undefined state
    assert ovs_state(0x4300000000000100) is None  # reserved octets not zero
    assert ovs_state(0x0002FDE800000001) is None  # a route target


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

small_as = st.integers(1, 6)


@settings(max_examples=400, deadline=None)
@given(records=st.dictionaries(small_as, st.lists(small_as, max_size=3), max_size=6),
       asns=st.lists(small_as, min_size=1, max_size=7))
def test_aspa_properties(records, asns):
    """Upstream is the stricter procedure: a path Valid upstream is Valid
    downstream, and Invalid downstream is Invalid upstream; with no ASPA
    at all nothing is Invalid; a single AS (after collapsing prepends) is
    Valid either way."""
    t = table(records)
    segs = path(*asns)
    up, down = t.verify(segs, downstream=False), t.verify(segs, downstream=True)
    if up == A.VALID:
        assert down == A.VALID
    if down == A.INVALID:
        assert up == A.INVALID
    assert table({}).verify(segs, downstream=False) in (A.VALID, A.UNKNOWN)
    assert table({}).verify(segs, downstream=True) in (A.VALID, A.UNKNOWN)
    collapsed = [a for i, a in enumerate(asns) if i == 0 or asns[i - 1] != a]
    if len(collapsed) == 1:
        assert up == down == A.VALID
