"""The VRP table and RFC 6811 route origin validation: rule by rule,
against a brute-force oracle on random tables, the packed bulk call, the
covered range used for incremental re-validation, and parity between the
compiled table and its pure-Python twin.

Every test taking ``vrp_impl`` runs on both implementations (ids ``cython``
/ ``python``); ``both_vrps`` gives the pair.
"""

import ipaddress
import os
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastbgp.rpki import vrp as vrp_sel
from fastbgp.rpki.vrp import INVALID, NOT_FOUND, ORIGIN_NONE, VALID, covered_range, is_covered
from fastbgp.wire import codec

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def v4(text):
    net = ipaddress.ip_network(text)
    return net.network_address.packed, net.prefixlen


def v6(text):
    net = ipaddress.ip_network(text)
    return net.network_address.packed, net.prefixlen


def test_both_export_the_api(both_vrps):
    for impl in both_vrps:
        for name in vrp_sel.API:
            assert hasattr(impl, name), name
    assert both_vrps[0].IMPLEMENTATION == "cython" and both_vrps[1].IMPLEMENTATION == "python"


def test_rfc6811_rules(vrp_impl):
    t = vrp_impl.VrpTable()
    assert t.add(1, *v4("192.0.2.0/24"), 24, 64496)
    assert t.add(1, *v4("198.51.100.0/22"), 24, 64497)
    assert t.add(1, *v4("203.0.113.0/24"), 24, 0)  # AS 0: "never route" (RFC 6483 §4)
    assert not t.add(1, *v4("192.0.2.0/24"), 24, 64496)  # duplicate
    # covered, matching ASN, within maxLength: Valid
    assert t.validate(1, *v4("192.0.2.0/24"), 64496) == VALID
    assert t.validate(1, *v4("198.51.101.0/24"), 64497) == VALID
    # longer than maxLength: Invalid
    assert t.validate(1, *v4("198.51.101.0/25"), 64497) == INVALID
    # wrong origin: Invalid
    assert t.validate(1, *v4("192.0.2.0/24"), 64499) == INVALID
    # covering VRP less specific than the route only: a shorter route is not covered
    assert t.validate(1, *v4("198.51.96.0/21"), 64497) == NOT_FOUND
    assert t.validate(1, *v4("10.0.0.0/8"), 64496) == NOT_FOUND
    # AS 0 VRP never matches, even an origin of 0
    assert t.validate(1, *v4("203.0.113.0/24"), 0) == INVALID
    # origin NONE (AS_SET last): Invalid when covered, NotFound otherwise
    assert t.validate(1, *v4("192.0.2.0/24"), ORIGIN_NONE) == INVALID
    assert t.validate(1, *v4("10.0.0.0/8"), ORIGIN_NONE) == NOT_FOUND
    # host bits are ignored; address octets may be shortened as in NLRI
    assert t.validate(1, bytes([192, 0, 2, 77]), 24, 64496) == VALID
    assert t.validate(1, bytes([192, 0, 2]), 24, 64496) == VALID
    # a second VRP on the same prefix with another ASN makes both Valid
    t.add(1, *v4("192.0.2.0/24"), 24, 64500)
    assert t.validate(1, *v4("192.0.2.0/24"), 64500) == VALID
    assert t.validate(1, *v4("192.0.2.0/24"), 64496) == VALID
    assert t.count(1) == 4 and t.count(2) == 0 and len(t) == 4
    assert t.remove(1, *v4("192.0.2.0/24"), 24, 64496)
    assert not t.remove(1, *v4("192.0.2.0/24"), 24, 64496)
    assert t.validate(1, *v4("192.0.2.0/24"), 64496) == INVALID
    t.clear()
    assert len(t) == 0 and t.validate(1, *v4("192.0.2.0/24"), 64496) == NOT_FOUND


@pytest.mark.parametrize("afi, net", [(1, "192.0.2.0/24"), (2, "2001:db8::/48"),
                                       (2, "2001:db8::1:0:0/96"), (2, "2001:db8::/96")])
def test_a_chain_head_removed_or_replaced(vrp_impl, afi, net):
    """Several VRPs on one prefix: the newest is the chain's head (the
    compiled slot keeps its ASN and max length when the key's low 64 bits
    are zero: IPv4, IPv6 up to /64, the /96 whose bits 64-95 are zero,
    not the other /96); removing the head, a middle VRP or the tail leaves
    the others deciding alone."""
    t = vrp_impl.VrpTable()
    addr, plen = v6(net)
    addr = addr[:4] if afi == 1 else addr
    for asn, extra in ((64496, 0), (64497, 1), (64498, 0)):
        assert t.add(afi, addr, plen, plen + extra, asn)
    longer = plen + 1
    assert [t.validate(afi, addr, plen, a) for a in (64496, 64497, 64498, 64499)] == [VALID] * 3 + [INVALID]
    assert [t.validate(afi, addr, longer, a) for a in (64496, 64497, 64498)] == [INVALID, VALID, INVALID]
    assert t.remove(afi, addr, plen, plen, 64498)  # the head
    assert [t.validate(afi, addr, plen, a) for a in (64496, 64497, 64498)] == [VALID, VALID, INVALID]
    assert t.remove(afi, addr, plen, plen + 1, 64497)  # the new head
    assert [t.validate(afi, addr, longer, a) for a in (64496, 64497)] == [INVALID, INVALID]
    assert t.add(afi, addr, plen, plen + 1, 64499)  # a new head again
    assert t.remove(afi, addr, plen, plen, 64496)  # the tail
    assert [t.validate(afi, addr, longer, a) for a in (64496, 64499)] == [INVALID, VALID]
    assert t.entries(afi) == [(addr, plen, plen + 1, 64499)]
    assert t.remove(afi, addr, plen, plen + 1, 64499)
    assert t.validate(afi, addr, plen, 64499) == NOT_FOUND and len(t) == 0


def test_ipv6_and_families_are_separate(vrp_impl):
    t = vrp_impl.VrpTable()
    t.add(2, *v6("2001:db8::/32"), 48, 64496)
    t.add(2, *v6("2001:db8:0:0:8000::/65"), 128, 64497)
    assert t.validate(2, *v6("2001:db8:1::/48"), 64496) == VALID
    assert t.validate(2, *v6("2001:db8:1::/49"), 64496) == INVALID
    assert t.validate(2, *v6("2001:db8:0:0:8000::/80"), 64497) == VALID
    assert t.validate(2, *v6("2001:db8:0:0:8000::/80"), 64496) == INVALID
    assert t.validate(2, *v6("2001:db9::/32"), 64496) == NOT_FOUND
    # 0.0.0.0/0 in IPv4 does not cover IPv6 and the reverse
    t.add(1, b"", 0, 32, 64498)
    assert t.validate(2, *v6("2001:db9::/32"), 64498) == NOT_FOUND
    assert t.validate(1, *v4("10.0.0.0/8"), 64498) == VALID
    assert t.entries(2) == sorted(t.entries(2))
    assert [e[1:] for e in t.entries(2)] == [(32, 48, 64496), (65, 128, 64497)]
    assert t.contains(2, *v6("2001:db8::/32"), 48, 64496)
    assert not t.contains(2, *v6("2001:db8::/32"), 47, 64496)


@pytest.mark.parametrize("args", [
    (3, b"", 0, 0, 1),  # unknown AFI
    (1, bytes(4), 33, 33, 1),  # length beyond the family
    (1, bytes(4), 24, 23, 1),  # maxLength below the length
    (1, bytes(4), 24, 33, 1),  # maxLength beyond the family
    (1, bytes(5), 24, 24, 1),  # address too long
    (1, bytes(4), 24, 24, 1 << 32),  # ASN too large
    (2, bytes(16), 129, 129, 1),
])
def test_bad_arguments_raise_the_same(both_vrps, args):
    messages = []
    for impl in both_vrps:
        t = impl.VrpTable()
        with pytest.raises(ValueError) as exc:
            t.add(*args)
        messages.append(str(exc.value))
        with pytest.raises(ValueError):
            t.remove(*args)
    assert messages[0] == messages[1]


@pytest.mark.parametrize("packed", [b"\x21\x0a\x00\x00\x00\x00", b"\x18\x0a\x00", b"\x00\x00\x00"])
def test_malformed_packed_nlri(vrp_impl, packed):
    t = vrp_impl.VrpTable()
    with pytest.raises(ValueError):
        t.validate_packed(1, packed, 64496, addpath=packed == b"\x00\x00\x00")


def oracle(vrps, afi, addr, plen, origin):
    """RFC 6811 §2 by brute force over every VRP."""
    width = 32 if afi == 1 else 128
    route = int.from_bytes(addr.ljust(width // 8, b"\0"), "big") >> (width - plen) if plen else 0
    covered = False
    for vafi, vaddr, vplen, vmax, vasn in vrps:
        if vafi != afi or vplen > plen:
            continue
        value = int.from_bytes(vaddr.ljust(width // 8, b"\0"), "big")
        if vplen and ((route << (width - plen)) >> (width - vplen)) != value >> (width - vplen):
            continue
        covered = True
        if vasn == origin and plen <= vmax and vasn != 0:
            return VALID
    return INVALID if covered else NOT_FOUND


def _prefix(afi, draw_addr, plen):
    width = 32 if afi == 1 else 128
    value = draw_addr & (((1 << plen) - 1) << (width - plen))
    return value.to_bytes(width // 8, "big")


# Few distinct high bits so random prefixes nest and collide often.
addr_bits = st.integers(0, 7).map(lambda k: k << 124 | (k * 0x1234567 & 0xFFFFFF) << 100)
vrp_strategy = st.tuples(st.sampled_from([1, 2]), addr_bits, st.integers(0, 24), st.integers(0, 8),
                         st.sampled_from([0, 64496, 64497, 64498]))


def _mk_vrp(afi, bits, plen, extra, asn):
    width = 32 if afi == 1 else 128
    bits = bits >> 96 if afi == 1 else bits
    plen = min(plen, width)
    return afi, _prefix(afi, bits, plen), plen, min(plen + extra, width), asn


@SETTINGS
@given(vrps=st.lists(vrp_strategy, max_size=30), routes=st.lists(vrp_strategy, min_size=1, max_size=30),
       removals=st.lists(st.integers(0, 29), max_size=10))
def test_random_tables_match_the_oracle_on_both(both_vrps, vrps, routes, removals):
    tables = [impl.VrpTable() for impl in both_vrps]
    ref = []
    for raw in vrps:
        v = _mk_vrp(*raw)
        results = [t.add(*v) for t in tables]
        assert results[0] == results[1] == (v not in ref)
        if v not in ref:
            ref.append(v)
    for k in removals:
        if k < len(ref):
            v = ref.pop(k)
            assert [t.remove(*v) for t in tables] == [True, True]
    for raw in routes:
        afi, addr, plen, _m, asn = _mk_vrp(*raw)
        plen = min(plen + raw[3], 32 if afi == 1 else 128)
        addr = _prefix(afi, int.from_bytes(addr, "big") | raw[3] << 3, plen)
        want = oracle(ref, afi, addr, plen, asn)
        assert [t.validate(afi, addr, plen, asn) for t in tables] == [want, want]
    for afi in (1, 2):
        assert tables[0].entries(afi) == tables[1].entries(afi) == sorted(v[1:] for v in ref if v[0] == afi)
        assert tables[0].count(afi) == tables[1].count(afi)


def test_validate_packed_matches_validate(both_vrps):
    rnd = random.Random(7)
    prefixes = []
    for _ in range(300):
        plen = rnd.randint(8, 28)
        value = rnd.getrandbits(32) & (((1 << plen) - 1) << (32 - plen))
        prefixes.append((0, value.to_bytes(4, "big"), plen))
    packed = codec.pack_prefixes(prefixes)
    packed_ap = codec.pack_prefixes([(9, a, p) for _, a, p in prefixes], addpath=True)
    outs = []
    for impl in both_vrps:
        t = impl.VrpTable()
        rnd = random.Random(8)  # the same table for both
        for _, addr, plen in prefixes[::3]:
            t.add(1, addr, min(plen, 20), min(plen, 20) + rnd.choice((0, 4)), rnd.choice((64496, 64497)))
        states = t.validate_packed(1, packed, 64496)
        assert list(states) == [t.validate(1, a, p, 64496) for _, a, p in prefixes]
        assert t.validate_packed(1, packed_ap, 64496, addpath=True) == states
        outs.append(states)
    assert outs[0] == outs[1]
    assert set(outs[0]) == {VALID, INVALID, NOT_FOUND}


@SETTINGS
@given(vrp=vrp_strategy, routes=st.lists(vrp_strategy, min_size=1, max_size=20))
def test_a_vrp_changes_only_the_routes_it_covers(vrp_impl, vrp, routes):
    """Incremental re-validation may re-check only covered_range: every
    route whose state the VRP changes lies inside it."""
    v = _mk_vrp(*vrp)
    t = vrp_impl.VrpTable()
    t.add(v[0], *v[1:3], v[3], 64499)  # some other VRP on the same prefix
    for raw in routes:
        afi, addr, plen, _m, asn = _mk_vrp(*raw)
        before = t.validate(afi, addr, plen, asn)
        t.add(*v)
        after = t.validate(afi, addr, plen, asn)
        t.remove(*v)
        if before != after:
            assert afi == v[0] and is_covered(afi, v[1], v[2], addr, plen)
            first, last = covered_range(afi, v[1], v[2])
            assert first <= int.from_bytes(addr, "big") <= last and plen >= v[2]


def test_covered_range():
    assert covered_range(1, *v4("192.0.2.0/24")) == (0xC0000200, 0xC00002FF)
    assert covered_range(1, b"", 0) == (0, 0xFFFFFFFF)
    first, last = covered_range(2, *v6("2001:db8::/32"))
    assert last - first == (1 << 96) - 1
    assert is_covered(1, *v4("192.0.2.0/24"), *v4("192.0.2.128/25"))
    assert not is_covered(1, *v4("192.0.2.0/24"), *v4("192.0.0.0/16"))


def _rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.slow
def test_500k_vrps_fit_in_60_mb(both_vrps):
    """The issue's bar: 500k VRPs under 60 MB RSS (compiled table)."""
    impl = both_vrps[0]
    rnd = random.Random(1)
    before = _rss()
    t = impl.VrpTable()
    for i in range(450_000):
        plen = rnd.choice((16, 19, 20, 22, 23, 24, 24, 24))
        value = rnd.getrandbits(32) & (((1 << plen) - 1) << (32 - plen))
        t.add(1, value.to_bytes(4, "big"), plen, min(24, plen + rnd.choice((0, 0, 2))), 64496 + i % 50000)
    for i in range(50_000):
        value = (0x2A00 << 112) | rnd.getrandbits(112) & ~((1 << 80) - 1)
        t.add(2, value.to_bytes(16, "big"), 48, 48, 64496 + i)
    grown = _rss() - before
    assert len(t) > 495_000
    assert grown < 60 << 20, "VRP table took %.1f MB" % (grown / 1e6)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=40), afi=st.sampled_from([1, 2]), addpath=st.booleans())
def test_arbitrary_nlri_same_result_or_same_error(both_vrps, data, afi, addpath):
    outs = []
    for impl in both_vrps:
        t = impl.VrpTable()
        t.add(afi, b"\x0a", 8, 32 if afi == 1 else 64, 64496)
        try:
            outs.append(t.validate_packed(afi, data, 64496, addpath=addpath))
        except ValueError as exc:
            outs.append(("ValueError", str(exc)))
    assert outs[0] == outs[1]


def test_many_adds_and_removes_stay_equal_to_the_twin(both_vrps):
    """Enough prefixes to grow the compiled hash table several times and
    to delete from inside long probe runs (backward-shift deletion); then
    routes covered by live and by removed VRPs validate alike on both
    (every state seen)."""
    rnd = random.Random(11)
    tables = [impl.VrpTable() for impl in both_vrps]
    live, gone = [], []
    for step in range(30_000):
        if live and rnd.random() < 0.4:
            v = live.pop(rnd.randrange(len(live)))
            gone.append(v)
            assert [t.remove(*v) for t in tables] == [True, True]
        else:
            afi = rnd.choice((1, 2))
            width = 32 if afi == 1 else 128
            # IPv6 past /64 now and then: keys whose low 64 bits count
            plen = rnd.randint(8, 24) if afi == 1 else rnd.choice((rnd.randint(8, 48), rnd.randint(60, 126)))
            value = rnd.getrandbits(width) & (((1 << plen) - 1) << (width - plen))
            v = (afi, value.to_bytes(width // 8, "big"), plen, plen + rnd.randint(0, 2), rnd.randint(1, 5))
            added = [t.add(*v) for t in tables]
            assert added[0] == added[1]
            if added[0]:
                live.append(v)
    for afi in (1, 2):
        assert tables[0].entries(afi) == tables[1].entries(afi)
    assert all(t.contains(*v) for v in live[:2000] for t in tables)
    states = set()
    for afi, addr, plen, _maxlen, asn in live[:3000] + gone[:3000]:
        packed = bytes((plen,)) + addr[: (plen + 7) // 8]
        packed += bytes((plen + 1,)) + addr[: (plen + 8) // 8]  # a more specific one too
        for origin in (asn, asn + 1):
            got = [t.validate_packed(afi, packed, origin) for t in tables]
            assert got[0] == got[1], (afi, addr, plen, origin)
            states.update(got[0])
    assert states == {0, 1, 2}
    for v in live[:3000]:
        afi, addr, plen, maxlen, asn = v
        assert tables[0].validate(afi, addr, maxlen, asn) == tables[1].validate(afi, addr, maxlen, asn) == VALID
    tables[0].clear()
    assert len(tables[0]) == 0 and tables[0].entries(1) == []
