"""The RIB: attribute interning, best-path selection rule by rule, bulk
operations and their change sets, lookups, and parity between the compiled
RIB and its pure-Python twin.

Every test taking ``rib_impl`` runs on both implementations (ids ``cython`` /
``python``); the compiled one is skipped only when FASTBGP_NO_EXTENSIONS is
set, otherwise a missing extension fails.
"""

import ipaddress
import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastbgp.wire import _codec_py as codec_py
from fastbgp import rib as rib_pkg
from fastbgp.wire.as4 import encode_attr, encode_segments
from fastbgp.wire.types import DEFAULT_CONTEXT
from fastbgp.wire.constants import (
    AS_CONFED_SEQUENCE,
    AS_CONFED_SET,
    AS_SEQUENCE,
    AS_SET,
    COMMUNITY_NO_EXPORT,
    ORIGIN_EGP,
    ORIGIN_IGP,
    ORIGIN_INCOMPLETE,
)
from fastbgp.rib import attrs as attrs_mod
from fastbgp.rib.attrs import AttrTable, propagate_attrs
from fastbgp.testing.plugin import implementation

# ---------------------------------------------------------------- helpers


def mkattrs(
    origin=ORIGIN_IGP,
    path=(65001,),
    segs=None,
    nh="192.0.2.1",
    med=None,
    lp=None,
    originator=None,
    cluster=(),
    communities=(),
    extra=b"",
):
    """A canonical (4-octet AS) attribute block."""
    out = encode_attr(0x40, 1, bytes((origin,)))
    segments = segs if segs is not None else ([(AS_SEQUENCE, list(path))] if path else [])
    out += encode_attr(0x40, 2, encode_segments(segments, 4))
    if nh:
        out += encode_attr(0x40, 3, ipaddress.IPv4Address(nh).packed)
    if med is not None:
        out += encode_attr(0x80, 4, med.to_bytes(4, "big"))
    if lp is not None:
        out += encode_attr(0x40, 5, lp.to_bytes(4, "big"))
    if communities:
        out += encode_attr(0xC0, 8, b"".join(c.to_bytes(4, "big") for c in communities))
    if originator is not None:
        out += encode_attr(0x80, 9, ipaddress.IPv4Address(originator).packed)
    if cluster:
        out += encode_attr(0x80, 10, b"".join(ipaddress.IPv4Address(c).packed for c in cluster))
    return out + extra


def pk(*prefixes, addpath=False):
    """Packed NLRI of prefix strings, or of (path_id, prefix) with addpath.
    Host bits written as given (not masked): the RIB must clear them."""
    out = bytearray()
    for item in prefixes:
        pid, text = item if addpath else (0, item)
        addr, plen = text.split("/")
        plen = int(plen)
        raw = ipaddress.ip_address(addr).packed
        if addpath:
            out += pid.to_bytes(4, "big")
        out.append(plen)
        out += raw[: (plen + 7) >> 3]
    return bytes(out)


def unpk(packed, afi=1, addpath=False):
    """Packed NLRI -> [prefix string] (or [(path_id, prefix)])."""
    out = []
    for pid, addr, plen in codec_py.unpack_prefixes(packed, afi, addpath):
        text = "%s/%d" % (ipaddress.ip_address(addr), plen)
        out.append((pid, text) if addpath else text)
    return out


# Peers: (peer_id, peer_as, router_id, address); local AS 65000.
PEERS = {
    1: (65001, "1.1.1.1", "10.0.0.1"),  # eBGP
    2: (65002, "2.2.2.2", "10.0.0.2"),  # eBGP
    3: (65000, "3.3.3.3", "10.0.0.3"),  # iBGP
    4: (65000, "0.0.0.4", "10.0.0.4"),  # iBGP, lowest router id
    5: (65005, "5.5.5.5", "10.0.0.5"),  # eBGP, same AS as 6
    6: (65005, "6.6.6.6", "10.0.0.6"),
    9: (65000, "9.9.9.9", "9.0.0.1"),  # iBGP, lowest address
}


def make(impl, afi=1, med_worst=False, always_compare_med=False, peers=PEERS):
    table = AttrTable(med_missing_as_worst=med_worst)
    r = impl.Rib(afi, table, always_compare_med=always_compare_med)
    for pid, (pas, rid, addr) in peers.items():
        r.add_peer(pid, pas, 65000, rid, addr)
    return table, r


def announce(r, table, peer, prefixes, addpath=False, next_hop=b"", **kw):
    aid = table.intern(mkattrs(**kw), next_hop)
    try:
        cs = r.update(peer, pk(*prefixes, addpath=addpath), addpath, aid)
    finally:
        table.release(aid)
    return cs, aid


def winner(impl, routes, **opts):
    """Peer of the best path for 10.0.0.0/24 when ``routes`` [(peer, attrs
    kwargs)] are announced; asserted the same for every arrival order."""
    results = set()
    for order in itertools.permutations(routes):
        table, r = make(impl, **opts)
        for peer, kw in order:
            announce(r, table, peer, ["10.0.0.0/24"], **kw)
        results.add(r.best("10.0.0.0/24")[0])
    assert len(results) == 1, "best path depends on arrival order: %r" % results
    return results.pop()


# ---------------------------------------------------------------- selection


def test_module_api(rib_impl):
    for name in rib_pkg.API:
        assert hasattr(rib_impl, name)
    assert rib_impl.IMPLEMENTATION in ("cython", "python")


def test_both_have_the_same_methods(both_ribs):
    c, p = both_ribs
    public = lambda cls: {n for n in dir(cls) if not n.startswith("_")}  # noqa: E731
    assert public(c.Rib(1)) == public(p.Rib(1))


def test_selected_implementation():
    expected = "python" if rib_pkg.NO_EXTENSIONS else "cython"
    assert rib_pkg.IMPLEMENTATION == expected


def test_local_pref_first(rib_impl):
    # §9.1.1: the higher LOCAL_PREF wins although it has the longer AS_PATH
    # and the higher router id.
    assert winner(rib_impl, [(3, dict(lp=200, path=(1, 2, 3))), (4, dict(lp=100, path=(1,)))]) == 3


def test_local_pref_default_is_100(rib_impl):
    assert winner(rib_impl, [(3, dict()), (4, dict(lp=99))]) == 3
    assert winner(rib_impl, [(3, dict()), (4, dict(lp=101))]) == 4


def test_shorter_as_path(rib_impl):
    assert winner(rib_impl, [(1, dict(path=(65001, 7, 8))), (2, dict(path=(65002, 7)))]) == 2


def test_as_set_counts_one(rib_impl):
    # RFC 4271 §9.1.2.2 (a): the 4-AS set counts as one -> length 2 vs 3.
    seg_set = [(AS_SEQUENCE, [65002]), (AS_SET, [1, 2, 3, 4])]
    assert winner(rib_impl, [(1, dict(path=(65001, 7, 8))), (2, dict(segs=seg_set))]) == 2


def test_confed_segments_count_zero(rib_impl):
    # RFC 5065 §5.3: confederation segments do not count.
    confed = [(AS_CONFED_SEQUENCE, [65100, 65101, 65102]), (AS_CONFED_SET, [65103]), (AS_SEQUENCE, [7])]
    assert winner(rib_impl, [(3, dict(segs=confed)), (4, dict(path=(7, 8)))]) == 3


def test_lowest_origin(rib_impl):
    assert winner(rib_impl, [(1, dict(origin=ORIGIN_INCOMPLETE)), (2, dict(origin=ORIGIN_IGP))]) == 2
    assert winner(rib_impl, [(1, dict(origin=ORIGIN_INCOMPLETE)), (2, dict(origin=ORIGIN_EGP))]) == 2
    assert winner(rib_impl, [(1, dict(origin=ORIGIN_EGP)), (2, dict(origin=ORIGIN_IGP))]) == 2


def test_med_same_neighbour_as(rib_impl):
    assert winner(rib_impl, [(5, dict(path=(65005,), med=20)), (6, dict(path=(65005,), med=10))]) == 6


def test_med_not_compared_across_neighbour_as(rib_impl):
    # Different neighbour AS: MED ignored, router id decides (peer 1).
    assert winner(rib_impl, [(1, dict(path=(65001,), med=100)), (2, dict(path=(65002,), med=0))]) == 1


def test_always_compare_med(rib_impl):
    routes = [(1, dict(path=(65001,), med=100)), (2, dict(path=(65002,), med=0))]
    assert winner(rib_impl, routes, always_compare_med=True) == 2


def test_missing_med_is_best_or_worst(rib_impl):
    routes = [(5, dict(path=(65005,), med=5)), (6, dict(path=(65005,)))]
    assert winner(rib_impl, routes) == 6  # absent = 0
    assert winner(rib_impl, routes, med_worst=True) == 5  # absent = worst


def test_med_is_order_independent(rib_impl):
    # The classic non-transitive case: X1 beats X2 on MED (same AS), Y beats
    # X1 on router id, X2 would beat Y on router id.  Elimination (not
    # pairwise comparison) gives Y whatever the arrival order.
    peers = {
        11: (65001, "10.0.0.30", "10.1.0.11"),  # X1
        12: (65001, "10.0.0.10", "10.1.0.12"),  # X2
        13: (65003, "10.0.0.20", "10.1.0.13"),  # Y
    }
    routes = [(11, dict(path=(65001,), med=10)), (12, dict(path=(65001,), med=20)), (13, dict(path=(65003,)))]
    results = set()
    for order in itertools.permutations(routes):
        table, r = make(rib_impl, peers=peers)
        for peer, kw in order:
            announce(r, table, peer, ["10.0.0.0/24"], **kw)
        results.add(r.best("10.0.0.0/24")[0])
    assert results == {13}
    # Withdrawing X1 (not the best) changes the best: X2 now beats Y.
    cs = r.withdraw(11, pk("10.0.0.0/24"))
    assert r.best("10.0.0.0/24")[0] == 12
    assert cs.n_announced == 1


def test_med_many_candidates(rib_impl):
    # More candidates than the small-set loop handles: 40 peers in 4 ASes.
    peers = {100 + i: (64600 + i % 4, "10.9.%d.%d" % (i // 200, 200 - i), "10.2.0.%d" % (i + 1)) for i in range(40)}
    table, r = make(rib_impl, peers=peers)
    for i in range(40):
        announce(r, table, 100 + i, ["10.0.0.0/24"], path=(64600 + i % 4,), med=(i * 7) % 13)
    # Per AS, lowest MED survives; among survivors the lowest router id,
    # i.e. the highest i.
    survivors = []
    for asn in range(4):
        members = [i for i in range(40) if i % 4 == asn]
        low = min((i * 7) % 13 for i in members)
        survivors += [i for i in members if (i * 7) % 13 == low]
    assert r.best("10.0.0.0/24")[0] == 100 + max(survivors)


def test_ebgp_over_ibgp(rib_impl):
    assert winner(rib_impl, [(1, dict()), (4, dict(path=(65001,)))]) == 1


def test_lowest_router_id(rib_impl):
    assert winner(rib_impl, [(1, dict(path=(65001,))), (2, dict(path=(65002,)))]) == 1
    assert winner(rib_impl, [(3, dict(path=(7,))), (4, dict(path=(7,)))]) == 4


def test_originator_id_replaces_router_id(rib_impl):
    # RFC 4456 §9: peer 3 (router id 3.3.3.3) reflects a route originated by
    # 0.0.0.1, lower than peer 4's own id 0.0.0.4.
    assert winner(rib_impl, [(3, dict(path=(7,), originator="0.0.0.1")), (4, dict(path=(7,)))]) == 3


def test_shorter_cluster_list(rib_impl):
    routes = [
        (3, dict(path=(7,), originator="8.8.8.8", cluster=("1.0.0.1", "1.0.0.2"))),
        (4, dict(path=(7,), originator="8.8.8.8", cluster=("1.0.0.1",))),
    ]
    assert winner(rib_impl, routes) == 4


def test_lowest_peer_address(rib_impl):
    same = dict(path=(7,), originator="8.8.8.8")
    assert winner(rib_impl, [(3, same), (4, same)]) == 3  # 10.0.0.3 < 10.0.0.4
    assert winner(rib_impl, [(3, same), (9, same)]) == 9  # 9.0.0.1 < 10.0.0.3


def test_ipv4_and_ipv6_peer_addresses_compare(rib_impl):
    peers = {1: (65000, "1.1.1.1", "2001:db8::1"), 2: (65000, "1.1.1.1", "192.0.2.1")}
    table, r = make(rib_impl, peers=peers)
    same = dict(path=(7,))
    announce(r, table, 1, ["10.0.0.0/24"], **same)
    announce(r, table, 2, ["10.0.0.0/24"], **same)
    # ::ffff:192.0.2.1 sorts before 2001:db8::1.
    assert r.best("10.0.0.0/24")[0] == 2


def test_addpath_lowest_path_id_breaks_final_tie(rib_impl):
    table, r = make(rib_impl)
    cs, aid = announce(r, table, 1, [(7, "10.0.0.0/24"), (3, "10.0.0.0/24"), (5, "10.0.0.0/24")], addpath=True)
    assert [p[1] for p in r.paths("10.0.0.0/24")] == [3, 5, 7]
    assert r.best_path("10.0.0.0/24")[:3] == (1, 3, aid)
    # Reported once, though three paths arrived in one call.
    assert cs.n_announced == 1 and unpk(cs.announced[aid]) == ["10.0.0.0/24"]


def test_retain_is_one_more_reference():
    """AttrTable.retain (PrePolicy's hold on a post-policy set) counts as
    an intern of the same set: the entry lives until every reference is
    released; a freed or unknown id is refused."""
    table = AttrTable()
    block = encode_attr(0x40, 1, b"\x00")
    a = table.intern(block)
    assert table.retain(a) == a and table.refcount(a) == 2
    table.release(a)
    assert table.is_live(a) and table.refcount(a) == 1
    table.release(a)
    assert not table.is_live(a)
    for bad in (a, 99, -1, "0", None):
        with pytest.raises(KeyError):
            table.retain(bad)
    assert table.intern(block) == a and table.refcount(a) == 1


# ---------------------------------------------------------------- operations


def test_update_replace_withdraw(rib_impl):
    table, r = make(rib_impl)
    cs, a1 = announce(r, table, 1, ["10.0.0.0/24", "10.0.1.0/24"], med=5)
    assert cs.n_announced == 2 and cs.n_withdrawn == 0
    assert list(cs.announced) == [a1] and unpk(cs.announced[a1]) == ["10.0.0.0/24", "10.0.1.0/24"]
    assert cs.by_source == {(1, a1): cs.announced[a1]}
    assert len(r) == 2 and r.path_count() == 2 and table.refcount(a1) == 2

    # Same attributes again: nothing changes, nothing to report.
    cs, _ = announce(r, table, 1, ["10.0.0.0/24"], med=5)
    assert not cs and cs.n_announced == 0

    # Replace one path's attributes: reported under the new id; old
    # reference dropped.
    cs, a2 = announce(r, table, 1, ["10.0.1.0/24"], med=6)
    assert unpk(cs.announced[a2]) == ["10.0.1.0/24"]
    assert table.refcount(a1) == 1 and table.refcount(a2) == 1
    assert r.path_count() == 2

    # Withdraw: no path left -> withdrawn; unknown prefixes ignored.
    cs = r.withdraw(1, pk("10.0.1.0/24", "10.9.9.0/24"))
    assert unpk(cs.withdrawn) == ["10.0.1.0/24"] and cs.n_withdrawn == 1 and not cs.announced
    assert a2 not in table and len(r) == 1
    assert r.withdraw(1, pk("10.9.9.0/24")) == rib_pkg.EMPTY
    assert r.withdraw(2, pk("10.0.0.0/24")) == rib_pkg.EMPTY  # peer 2 has no path there


def test_fallback_to_second_best(rib_impl):
    table, r = make(rib_impl)
    _, a1 = announce(r, table, 1, ["10.0.0.0/24"], path=(65001, 9))
    cs, a2 = announce(r, table, 2, ["10.0.0.0/24"], path=(65002,))
    assert cs.by_source == {(2, a2): pk("10.0.0.0/24")}
    cs = r.withdraw(2, pk("10.0.0.0/24"))
    assert cs.announced == {a1: pk("10.0.0.0/24")} and cs.withdrawn == b""
    # A worse update from the best peer moves the best to another peer.
    announce(r, table, 2, ["10.0.0.0/24"], path=(65002,))
    cs, _ = announce(r, table, 2, ["10.0.0.0/24"], path=(65002, 1, 2, 3))
    assert cs.by_source == {(1, a1): pk("10.0.0.0/24")}


def test_host_bits_are_cleared(rib_impl):
    table, r = make(rib_impl)
    cs, aid = announce(r, table, 1, ["10.1.2.3/8", "192.168.1.255/23"])
    assert unpk(cs.announced[aid]) == ["10.0.0.0/8", "192.168.0.0/23"]
    assert cs.announced[aid] == pk("10.0.0.0/8", "192.168.0.0/23")
    assert r.lookup("10.0.0.0/8") == ("10.0.0.0/8", 1, aid)
    assert r.lookup("10.200.0.0/8") == ("10.0.0.0/8", 1, aid)
    # The same prefix written with other host bits is the same prefix.
    cs = r.withdraw(1, pk("10.255.255.255/8"))
    assert unpk(cs.withdrawn) == ["10.0.0.0/8"]


def test_drop_peer(rib_impl):
    table, r = make(rib_impl)
    _, a1 = announce(r, table, 1, ["10.0.3.0/24", "10.0.1.0/24", "10.0.2.0/24"], path=(65001, 9))
    _, a2 = announce(r, table, 2, ["10.0.2.0/24", "10.0.0.0/24", "10.0.1.0/24"], path=(65002,))
    cs = r.drop_peer(2)
    # Ascending prefix order for whole-table operations.
    assert unpk(cs.withdrawn) == ["10.0.0.0/24"]
    assert unpk(cs.announced[a1]) == ["10.0.1.0/24", "10.0.2.0/24"]
    assert cs.n_announced == 2 and cs.n_withdrawn == 1
    assert a2 not in table and r.peer_path_count(2) == 0 and r.path_count() == 3
    assert r.drop_peer(2) == rib_pkg.EMPTY
    cs = r.remove_peer(1)
    assert unpk(cs.withdrawn) == ["10.0.1.0/24", "10.0.2.0/24", "10.0.3.0/24"]
    assert len(r) == 0 and len(table) == 0 and not r.has_peer(1)
    with pytest.raises(KeyError):
        r.update(1, pk("10.0.0.0/24"), False, table.intern(mkattrs()))


def test_addpath_paths_per_peer(rib_impl):
    table, r = make(rib_impl)
    _, a1 = announce(r, table, 1, [(1, "10.0.0.0/24"), (2, "10.0.0.0/24")], addpath=True, path=(65001, 5))
    _, a2 = announce(r, table, 1, [(2, "10.0.0.0/24")], addpath=True, path=(65001,))
    assert r.paths("10.0.0.0/24") == [(1, 1, a1, 0), (1, 2, a2, 0)]
    assert r.best_path("10.0.0.0/24") == (1, 2, a2, 0)
    assert r.path_count() == 2 and len(r) == 1
    dump = list(r.dump_peer(1, addpath=True))
    assert dump == [(a1, pk((1, "10.0.0.0/24"), addpath=True)), (a2, pk((2, "10.0.0.0/24"), addpath=True))]
    assert list(r.dump_peer(1)) == [(a1, pk("10.0.0.0/24")), (a2, pk("10.0.0.0/24"))]
    cs = r.withdraw(1, pk((2, "10.0.0.0/24"), addpath=True), True)
    assert cs.announced == {a1: pk("10.0.0.0/24")}
    cs = r.withdraw(1, pk((1, "10.0.0.0/24"), addpath=True), True)
    assert unpk(cs.withdrawn) == ["10.0.0.0/24"]


def test_addpath_repeated_prefix_reported_against_state_before_call(rib_impl):
    table, r = make(rib_impl)
    _, a0 = announce(r, table, 2, ["10.0.0.0/24"], path=(65002, 1, 2))
    aid = table.intern(mkattrs(path=(65001,)))
    # Three path ids of one prefix: best moves from peer 2 to peer 1 path 1
    # (not path 9 seen first), reported once.
    cs = r.update(1, pk((9, "10.0.0.0/24"), (1, "10.0.0.0/24"), (4, "10.0.0.0/24"), addpath=True), True, aid)
    assert cs.by_source == {(1, aid): pk("10.0.0.0/24")} and cs.n_announced == 1
    assert r.best_path("10.0.0.0/24")[:2] == (1, 1)
    # Withdraw all three in one call: back to peer 2, reported once.
    cs = r.withdraw(1, pk((4, "10.0.0.0/24"), (1, "10.0.0.0/24"), (9, "10.0.0.0/24"), addpath=True), True)
    assert cs.announced == {a0: pk("10.0.0.0/24")} and cs.n_announced == 1
    table.release(aid)
    assert aid not in table


def test_graceful_restart_stale(rib_impl):
    table, r = make(rib_impl)
    _, a1 = announce(r, table, 1, ["10.0.0.0/24", "10.0.1.0/24", "10.0.2.0/24"])
    _, a2 = announce(r, table, 2, ["10.0.2.0/24"], path=(65002, 7))
    assert r.mark_stale(1) == 3
    # Peer 2's stale path is not the best one: sweeping it changes no best.
    assert r.mark_stale(2) == 1 and r.sweep_stale(2) == rib_pkg.EMPTY and r.peer_path_count(2) == 0
    assert r.paths("10.0.0.0/24") == [(1, 0, a1, rib_pkg.PATH_STALE)]
    # Stale paths still take part in best-path selection (RFC 4724 §4.2).
    assert r.best("10.0.2.0/24") == (1, a1)
    announce(r, table, 2, ["10.0.2.0/24"], path=(65002, 7))
    # The restarted peer re-announces one prefix unchanged: not stale any
    # more, and no change to report.
    cs, _ = announce(r, table, 1, ["10.0.1.0/24"])
    assert not cs and r.paths("10.0.1.0/24") == [(1, 0, a1, 0)]
    # End-of-RIB: the rest goes.
    cs = r.sweep_stale(1)
    assert unpk(cs.withdrawn) == ["10.0.0.0/24"]
    a2 = r.best("10.0.2.0/24")[1]
    assert cs.announced == {a2: pk("10.0.2.0/24")}
    assert r.paths("10.0.1.0/24") == [(1, 0, a1, 0)]
    assert r.sweep_stale(1) == rib_pkg.EMPTY and r.mark_stale(9) == 0


def test_paths_by_attr_groups_a_peers_paths_before_a_change(rib_impl):
    # What an ADD-PATH export was sent before a path is replaced: the
    # peer's paths of the given prefixes by attribute id, in input order,
    # path ids kept; prefixes it has no path for (or another peer's) left out.
    table, r = make(rib_impl)
    a1 = table.intern(mkattrs(path=(65001,)))
    a2 = table.intern(mkattrs(path=(65001, 7)))
    r.update(1, pk("10.0.0.0/24", "10.0.2.0/24"), False, a1)
    r.update(1, pk("10.0.1.0/24"), False, a2)
    r.update(2, pk("10.0.3.0/24"), False, a1)
    # Host bits as given come back as given (the entries are the input's).
    got = r.paths_by_attr(1, pk("10.0.1.0/24", "10.0.0.0/24", "10.0.3.0/24", "10.9.0.0/16", "10.0.2.1/24"))
    assert got == [(a2, pk("10.0.1.0/24")), (a1, pk("10.0.0.0/24", "10.0.2.1/24"))]
    assert r.paths_by_attr(2, pk("10.0.0.0/24")) == []
    assert r.paths_by_attr(1, b"") == []
    r.update(3, pk((5, "10.0.0.0/24"), (6, "10.0.0.0/24"), addpath=True), True, a2)
    assert r.paths_by_attr(3, pk((6, "10.0.0.0/24"), (7, "10.0.0.0/24"), (5, "10.0.0.0/24"), addpath=True), True) \
        == [(a2, pk((6, "10.0.0.0/24"), (5, "10.0.0.0/24"), addpath=True))]
    with pytest.raises(KeyError):
        r.paths_by_attr(77, b"")
    with pytest.raises(ValueError):
        r.paths_by_attr(1, b"\x21\x0a")


def test_receive_time_per_path(rib_impl):
    # Age since the last change (as BIRD keeps it): set when a path
    # is added or its attributes change, kept on an identical announcement
    # and across RFC 4724 stale marking, gone with the path.
    T = 1_700_000_000
    table, r = make(rib_impl)
    a1 = table.intern(mkattrs(path=(65001,)))
    a2 = table.intern(mkattrs(path=(65001, 7)))
    r.update(1, pk("10.0.0.0/24", "10.0.1.0/24"), False, a1, now=T + 1000)
    r.update(2, pk("10.0.0.0/24"), False, a1, now=T + 1001)
    assert r.paths("10.0.0.0/24", received=True) == [(1, 0, a1, 0, T + 1000), (2, 0, a1, 0, T + 1001)]
    assert r.paths("10.0.0.0/24") == [(1, 0, a1, 0), (2, 0, a1, 0)]
    assert r.best_path("10.0.0.0/24", received=True) == (1, 0, a1, 0, T + 1000)
    # The same attributes again: nothing changed, the time stays.
    assert not r.update(1, pk("10.0.0.0/24"), False, a1, now=T + 2000)
    assert r.paths("10.0.0.0/24", received=True)[0][4] == T + 1000
    # New attributes: the time restarts, only for the path that changed.
    r.update(1, pk("10.0.1.0/24"), False, a2, now=T + 3000)
    assert r.paths("10.0.1.0/24", received=True) == [(1, 0, a2, 0, T + 3000)]
    assert r.paths("10.0.0.0/24", received=True)[0][4] == T + 1000
    # Stale marking and the refresh that clears it keep the time.
    r.mark_stale(1)
    assert r.paths("10.0.0.0/24", received=True)[0] == (1, 0, a1, rib_pkg.PATH_STALE, T + 1000)
    r.update(1, pk("10.0.0.0/24"), False, a1, now=T + 4000)
    assert r.paths("10.0.0.0/24", received=True)[0] == (1, 0, a1, 0, T + 1000)
    # Withdrawn and announced again: a new path, a new time.
    r.withdraw(1, pk("10.0.0.0/24"))
    assert r.paths("10.0.0.0/24", received=True) == [(2, 0, a1, 0, T + 1001)]
    r.update(1, pk("10.0.0.0/24"), False, a1, now=T + 5000)
    assert r.paths("10.0.0.0/24", received=True)[0] == (1, 0, a1, 0, T + 5000)
    # The best paths' times of packed NLRI in one call (None: not held).
    assert r.best_received(pk("10.0.1.0/24", "10.9.0.0/16", "10.0.0.0/24")) == [(1, T + 3000), None, (1, T + 5000)]
    assert r.best_received(b"") == []
    assert r.path_received(2, pk("10.0.0.0/24", "10.0.1.0/24")) == [T + 1001, None]
    assert r.path_received(1, pk((0, "10.0.0.0/24"), (7, "10.0.0.0/24"), addpath=True), True) == [T + 5000, None]
    with pytest.raises(KeyError):
        r.path_received(77, b"")
    with pytest.raises(ValueError):
        r.best_received(b"\x21\x0a")
    # No time given: the wall clock, read once for the call.
    import time

    t0 = int(time.time())
    r.update(3, pk("10.0.0.0/24", "10.0.1.0/24"), False, a1)
    got = [q[4] for p in ("10.0.0.0/24", "10.0.1.0/24") for q in r.paths(p, received=True) if q[0] == 3]
    assert len(got) == 2 and got[0] == got[1] and t0 <= got[0] <= int(time.time())
    # A bad time is refused before anything changes.
    for bad in (-1, 1 << 32, 1.5, "1", True):
        with pytest.raises(ValueError):
            r.update(4, pk("10.0.2.0/24"), False, a1, now=bad)
    assert "10.0.2.0/24" not in r
    # Kept as 31 bits of seconds since 2020-01-01 (the compiled path record
    # is 14 octets): earlier clocks read as 2020-01-01, never an error.
    r.update(4, pk("10.0.2.0/24"), False, a1, now=1000)
    r.update(4, pk("10.0.3.0/24"), False, a1, now=0xFFFFFFFF)
    assert r.best_received(pk("10.0.2.0/24", "10.0.3.0/24")) == [(4, rib_pkg.RECEIVED_MIN), (4, rib_pkg.RECEIVED_MAX)]
    assert rib_pkg.RECEIVED_MIN == 1577836800 and rib_pkg.RECEIVED_MAX - rib_pkg.RECEIVED_MIN == 0x7FFFFFFF
    table.release(a1)
    table.release(a2)


def test_lookups_and_longest_match(rib_impl):
    table, r = make(rib_impl)
    _, a0 = announce(r, table, 1, ["0.0.0.0/0"], med=0)
    _, a8 = announce(r, table, 1, ["10.0.0.0/8"], med=8)
    _, a24 = announce(r, table, 2, ["10.1.2.0/24"], path=(65002,), med=24)
    _, a32 = announce(r, table, 2, ["10.1.2.3/32"], path=(65002,), med=32)
    assert r.longest_match("10.1.2.3") == ("10.1.2.3/32", 2, a32)
    assert r.longest_match("10.1.2.4") == ("10.1.2.0/24", 2, a24)
    assert r.longest_match("10.200.0.1") == ("10.0.0.0/8", 1, a8)
    assert r.longest_match("11.0.0.1") == ("0.0.0.0/0", 1, a0)
    assert r.longest_match("10.1.2.0/23") == ("10.0.0.0/8", 1, a8)  # at most /23
    assert r.lookup("10.1.2.0/24") == ("10.1.2.0/24", 2, a24)
    assert r.lookup("10.1.0.0/16") is None
    assert r.lookup("10.1.2.3") == ("10.1.2.3/32", 2, a32)
    assert "10.1.2.0/24" in r and "10.1.3.0/24" not in r
    assert r.best(ipaddress.ip_network("10.0.0.0/8")) == (1, a8)
    assert r.best("10.9.0.0/16") is None and r.paths("10.9.0.0/16") == [] and r.best_path("1.0.0.0/8") is None
    assert r.prefixes() == ["0.0.0.0/0", "10.0.0.0/8", "10.1.2.0/24", "10.1.2.3/32"]
    r.withdraw(1, pk("0.0.0.0/0"))
    assert r.longest_match("11.0.0.1") is None
    with pytest.raises(ValueError):
        r.lookup("2001:db8::/32")


def test_ipv6(rib_impl):
    table, r = make(rib_impl, afi=2)
    nh = ipaddress.IPv6Address("2001:db8::1").packed
    prefixes = ["::/0", "2001:db8::/32", "2001:db8:1::/48", "2001:db8:1:2::/64", "2001:db8:1:2:8000::/65",
                "2001:db8:1:2:3:4:5:6/127", "2001:db8:1:2:3:4:5:7/128"]
    aid = table.intern(mkattrs(nh=None), nh)
    cs = r.update(1, pk(*prefixes), False, aid)
    table.release(aid)
    want = ["::/0", "2001:db8::/32", "2001:db8:1::/48", "2001:db8:1:2::/64", "2001:db8:1:2:8000::/65",
            "2001:db8:1:2:3:4:5:6/127", "2001:db8:1:2:3:4:5:7/128"]
    assert unpk(cs.announced[aid], afi=2) == want
    assert table.mp_next_hop(aid) == nh and table.next_hop(aid) == nh
    assert r.prefixes() == sorted(want, key=lambda t: (ipaddress.ip_network(t).network_address, ipaddress.ip_network(t).prefixlen))
    assert r.longest_match("2001:db8:1:2:3:4:5:7")[0] == "2001:db8:1:2:3:4:5:7/128"
    assert r.longest_match("2001:db8:1:2:3:4:5:6")[0] == "2001:db8:1:2:3:4:5:6/127"
    assert r.longest_match("2001:db8:1:2:ffff::1")[0] == "2001:db8:1:2:8000::/65"
    assert r.longest_match("2001:db8:1:2:7fff::1")[0] == "2001:db8:1:2::/64"
    assert r.longest_match("2001:db8:2::1")[0] == "2001:db8::/32"
    assert r.longest_match("3000::1")[0] == "::/0"
    # Host bits past the length are cleared, /65 included.
    cs = r.withdraw(1, pk("2001:db8:1:2:ffff:ffff::/65", "2001:db8:1:ffff::/48"))
    assert unpk(cs.withdrawn, afi=2) == ["2001:db8:1:2:8000::/65", "2001:db8:1::/48"]  # input order
    assert list(r.dump_best())[0][0] == aid
    with pytest.raises(ValueError):
        r.lookup("10.0.0.0/8")
    with pytest.raises(ValueError):
        r.withdraw(1, bytes((129,)) + b"\x00" * 17)  # longer than 128 bits


def test_dump_best_and_split_horizon(rib_impl):
    table, r = make(rib_impl)
    _, a1 = announce(r, table, 1, ["10.0.2.0/24", "10.0.0.0/24"], path=(65001,))
    _, a2 = announce(r, table, 2, ["10.0.1.0/24", "10.0.3.0/24"], path=(65002,))
    _, a3 = announce(r, table, 2, ["10.0.4.0/24"], path=(65002, 1))
    assert list(r.dump_best()) == [(a1, pk("10.0.0.0/24", "10.0.2.0/24")), (a2, pk("10.0.1.0/24", "10.0.3.0/24")), (a3, pk("10.0.4.0/24"))]
    assert list(r.dump_best(exclude_peer=2)) == [(a1, pk("10.0.0.0/24", "10.0.2.0/24"))]
    assert list(r.dump_peer(2)) == [(a2, pk("10.0.1.0/24", "10.0.3.0/24")), (a3, pk("10.0.4.0/24"))]
    assert list(r.dump_peer(3)) == []


def test_changeset_feeds_the_codec(rib_impl):
    # announced groups and withdrawn go straight into pack_updates /
    # pack_withdraws; the messages decode back to the same prefixes.
    table, r = make(rib_impl)
    prefixes = ["10.%d.%d.0/24" % (i // 256, i % 256) for i in range(3000)]
    cs, aid = announce(r, table, 1, prefixes)
    msgs = []
    for attr_id, nlri in cs.announced.items():
        msgs += codec_py.pack_updates(table.attrs(attr_id), nlri, DEFAULT_CONTEXT)
    seen = []
    for m in msgs:
        u = codec_py.parse_update(m[19:])
        assert u.attrs == table.attrs(aid)
        seen += unpk(u.nlri)
    assert seen == prefixes
    cs = r.drop_peer(1)
    seen = []
    for m in codec_py.pack_withdraws(cs.withdrawn, DEFAULT_CONTEXT):
        seen += unpk(codec_py.parse_update(m[19:]).withdrawn)
    assert seen == sorted(prefixes, key=lambda t: ipaddress.ip_network(t).network_address)


def test_bad_input_changes_nothing(rib_impl):
    table, r = make(rib_impl)
    _, aid = announce(r, table, 1, ["10.0.0.0/24"])
    keep = table.intern(mkattrs(med=1))
    for bad in (b"\x21\x0a", b"\x18\x0a\x00", bytes((33, 1, 2, 3, 4, 5))):
        with pytest.raises(ValueError):
            r.update(1, pk("10.1.0.0/24") + bad, False, keep)
        with pytest.raises(ValueError):
            r.withdraw(1, pk("10.0.0.0/24") + bad)
    with pytest.raises(ValueError):
        r.update(1, b"\x00\x00\x00", True, keep)  # ADD-PATH id without a prefix
    assert r.prefixes() == ["10.0.0.0/24"] and table.refcount(keep) == 1
    with pytest.raises(KeyError):
        r.update(7, pk("10.1.0.0/24"), False, keep)  # unknown peer
    with pytest.raises(KeyError):
        r.update(1, pk("10.1.0.0/24"), False, 12345)  # unknown attribute id
    table.release(keep)
    with pytest.raises(KeyError):
        r.update(1, pk("10.1.0.0/24"), False, keep)  # released id
    with pytest.raises(ValueError):
        r.add_peer(1, 65001, 65000, "1.1.1.1", "10.0.0.1")  # peer has paths
    with pytest.raises(ValueError):
        r.add_peer(70000, 65001, 65000, "1.1.1.1", "10.0.0.1")
    with pytest.raises(ValueError):
        rib_impl.Rib(3)
    assert r.update(1, b"", False, aid) == rib_pkg.EMPTY and r.withdraw(1, b"") == rib_pkg.EMPTY
    assert r.paths("10.0.0.0/24") == [(1, 0, aid, 0)]


class _IntId(int):
    """An int subclass: the compiled RIB's fast liveness check takes exact
    ints only and must leave the rest to AttrTable.is_live."""


def test_attr_id_checked_as_is_live(rib_impl):
    """update() accepts exactly the ids AttrTable.is_live accepts (the
    compiled RIB reads the records in C) and raises the same KeyError for
    the others, changing nothing."""
    table, r = make(rib_impl)
    filler = [table.intern(mkattrs(med=m)) for m in range(3)]  # ids 0..2
    table.release(filler[1])  # a freed id inside the records
    live = filler[2]
    bad = [-1, -(2 ** 63), 2 ** 31, 2 ** 32 + live, 2 ** 63, 2 ** 64 + live, 3, filler[1], None, 2.0, "2", b"\x02",
           _IntId(7), False]  # False is id 0 as an int: live only while id 0 is
    table.release(filler[0])
    for attr_id in bad:
        assert not table.is_live(attr_id)
        with pytest.raises(KeyError) as err:
            r.update(1, pk("10.1.0.0/24"), False, attr_id)
        assert err.value.args == ("attribute id %r is not allocated" % (attr_id,),)
    assert len(r) == 0 and r.path_count() == 0 and table.refcount(live) == 1
    # An int subclass and a bool naming a live id are accepted, as by is_live.
    cs = r.update(1, pk("10.1.0.0/24"), False, _IntId(live))
    assert cs.n_announced == 1 and cs.by_source == {(1, live): pk("10.1.0.0/24")}
    one = table.intern(mkattrs(med=99))
    assert one == 0 and table.is_live(False)
    cs = r.update(2, pk("10.1.0.0/24"), False, False)
    assert r.paths("10.1.0.0/24")[1][:3] == (2, 0, 0) and table.refcount(0) == 2
    assert table.refcount(live) == 2


def test_changeset_dicts_are_fresh_and_joined(rib_impl):
    """Every operation returns its own ChangeSet dicts (a consumer editing
    one cannot affect another, empty ones included); ``announced`` joins the
    groups of one attr_id best from several peers in first-appearance order
    and shares the bytes object when there is one group."""
    table, r = make(rib_impl)
    e1, e2 = r.withdraw(1, pk("10.9.0.0/24")), r.withdraw(1, pk("10.9.0.0/24"))
    assert e1 == e2 == rib_pkg.EMPTY and not e1
    assert e1.announced is not e2.announced and e1.by_source is not e2.by_source
    aid = table.intern(mkattrs(path=(65001, 65002)))
    r.update(1, pk("10.0.0.0/24", "10.0.2.0/24"), False, aid)
    r.update(2, pk("10.0.1.0/24"), False, aid)
    _, short = announce(r, table, 3, ["10.0.0.0/24", "10.0.1.0/24", "10.0.2.0/24"], path=(65003,))
    cs = r.drop_peer(3)  # ascending prefix order: peer 1, peer 2, peer 1
    assert cs.by_source == {(1, aid): pk("10.0.0.0/24", "10.0.2.0/24"), (2, aid): pk("10.0.1.0/24")}
    assert list(cs.announced) == [aid] and cs.announced[aid] == pk("10.0.0.0/24", "10.0.2.0/24", "10.0.1.0/24")
    assert cs.n_announced == 3 and cs.withdrawn == b"" and cs.n_withdrawn == 0
    cs = r.withdraw(2, pk("10.0.1.0/24"))
    assert cs.announced == {} and unpk(cs.withdrawn) == ["10.0.1.0/24"] and cs.by_source == {}
    cs = r.update(2, pk("10.0.1.0/24"), False, aid)
    assert cs.announced[aid] is cs.by_source[(2, aid)]
    table.release(aid)


def test_peer_registration(rib_impl):
    table, r = make(rib_impl, peers={})
    r.add_peer(3, 65000, 65000, "3.3.3.3", b"\x0a\x00\x00\x03", rr_client=True)
    r.add_peer(4, 65004, 65000, 0x04040404, "2001:db8::4", ibgp=True)
    i3, i4 = r.peer_info(3), r.peer_info(4)
    assert i3["ibgp"] and i3["rr_client"] and i3["router_id"] == 0x03030303
    assert i3["address"] == b"\x00" * 10 + b"\xff\xff\x0a\x00\x00\x03"
    assert i4["ibgp"] and i4["peer_as"] == 65004 and i4["address"] == ipaddress.IPv6Address("2001:db8::4").packed
    # Re-registering a peer without paths updates it.
    r.add_peer(4, 65004, 65000, "4.4.4.4", "10.0.0.4")
    assert not r.peer_info(4)["ibgp"]
    with pytest.raises(KeyError):
        r.peer_info(5)


def test_refcounts_follow_paths(rib_impl):
    table, r = make(rib_impl)
    aid = table.intern(mkattrs())
    assert table.refcount(aid) == 1
    r.update(1, pk("10.0.0.0/24", "10.0.1.0/24"), False, aid)
    r.update(2, pk("10.0.0.0/24"), False, aid)
    assert table.refcount(aid) == 4
    table.release(aid)  # our reference: paths keep it alive
    assert table.refcount(aid) == 3 and table.attrs(aid) == mkattrs()
    r.withdraw(1, pk("10.0.0.0/24"))
    r.drop_peer(1)
    assert table.refcount(aid) == 1
    r.drop_peer(2)
    assert aid not in table and len(table) == 0


@pytest.mark.parametrize("impl_name", ["cython"])
def test_max_paths_per_prefix(impl_name):
    impl = implementation(rib_pkg, impl_name)
    table, r = make(impl)
    aid = table.intern(mkattrs())
    items = [(i, "10.0.0.0/24") for i in range(rib_pkg.MAX_PATHS + 5)]
    r.update(1, pk(*items, addpath=True), True, aid)
    assert r.path_count() == rib_pkg.MAX_PATHS and r.refused == 5
    assert r.best_path("10.0.0.0/24")[1] == 0


# ---------------------------------------------------------------- attributes


def test_attr_table_interning_and_ids():
    t = AttrTable()
    a = t.intern(mkattrs(med=1))
    b = t.intern(mkattrs(med=2))
    assert (a, b) == (0, 1) and t.intern(mkattrs(med=1)) == a and t.refcount(a) == 2
    nh1 = ipaddress.IPv6Address("2001:db8::1").packed
    nh2 = ipaddress.IPv6Address("2001:db8::2").packed
    c = t.intern(mkattrs(med=1, nh=None), nh1)
    d = t.intern(mkattrs(med=1, nh=None), nh2)
    assert len({a, b, c, d}) == 4 and t.key(c) == (mkattrs(med=1, nh=None), nh1)
    assert t.intern(mkattrs(med=1, nh=None), nh1) == c
    assert len(t) == 4
    t.release(b)
    assert b not in t and len(t) == 3
    t.release(a)
    t.release(a)
    # Freed ids are reused smallest first, whatever order they were freed in.
    assert t.intern(mkattrs(med=9)) == 0 and t.intern(mkattrs(med=8)) == 1 and t.intern(mkattrs(med=7)) == 4
    with pytest.raises(KeyError):
        t.release(99)
    with pytest.raises(KeyError):
        t.attrs(-1)


def test_attr_fields():
    t = AttrTable()
    segs = [(AS_CONFED_SEQUENCE, [65100]), (AS_SEQUENCE, [64501, 64502]), (AS_SET, [1, 2, 3])]
    aid = t.intern(mkattrs(origin=ORIGIN_EGP, segs=segs, med=50, lp=300, originator="1.2.3.4",
                           cluster=("9.9.9.9", "8.8.8.8"), communities=(COMMUNITY_NO_EXPORT, 65000 << 16 | 7)))
    info = t.info(aid)
    assert info.local_pref == 300 and t.local_pref(aid) == 300 and info.has_local_pref
    assert info.as_path_len == 3 and t.as_path_len(aid) == 3  # confed 0, set 1
    assert t.origin(aid) == ORIGIN_EGP and t.med(aid) == 50 and info.has_med
    assert t.neighbor_as(aid) == 64501  # confederation segment skipped
    assert t.originator_id(aid) == 0x01020304 and t.cluster_list_len(aid) == 2
    assert t.next_hop(aid) == bytes((192, 0, 2, 1)) and t.mp_next_hop(aid) == b""
    assert t.communities(aid) == (COMMUNITY_NO_EXPORT, 65000 << 16 | 7)
    assert t.has_community(aid, COMMUNITY_NO_EXPORT) and t.has_flag(aid, attrs_mod.F_NO_EXPORT)
    assert t.has_community(aid, 65000 << 16 | 7) and not t.has_community(aid, 65000 << 16 | 8)
    assert not t.has_flag(aid, attrs_mod.F_NO_ADVERTISE)

    plain = t.intern(mkattrs(path=()))
    assert t.local_pref(plain) == 100 and not t.info(plain).has_local_pref
    assert t.med(plain) == 0 and t.neighbor_as(plain) == 0 and t.as_path_len(plain) == 0
    assert t.originator_id(plain) is None and t.cluster_list_len(plain) == 0 and t.communities(plain) == ()
    worst = AttrTable(med_missing_as_worst=True)
    assert worst.med(worst.intern(mkattrs())) == 0xFFFFFFFF
    set_first = t.intern(mkattrs(segs=[(AS_SET, [5, 6]), (AS_SEQUENCE, [7])]))
    assert t.neighbor_as(set_first) == 0 and t.as_path_len(set_first) == 2


def test_propagate_attrs():
    known = mkattrs(med=5)
    assert propagate_attrs(known) is known
    unknown_t = encode_attr(0xC0, 99, b"abc")  # optional transitive
    unknown_t_partial = encode_attr(0xE0, 98, b"x")
    unknown_nt = encode_attr(0x80, 97, b"zz")  # optional non-transitive
    long_t = encode_attr(0xC0, 96, b"q" * 300)  # extended length
    block = known + unknown_t + unknown_nt + unknown_t_partial + long_t
    out = propagate_attrs(block)
    assert out == known + encode_attr(0xE0, 99, b"abc") + unknown_t_partial + encode_attr(0xF0, 96, b"q" * 300)
    t = AttrTable()
    aid = t.intern(block)
    assert t.has_flag(aid, attrs_mod.F_UNKNOWN_TRANSITIVE) and t.has_flag(aid, attrs_mod.F_UNKNOWN_NON_TRANSITIVE)
    assert t.propagated(aid) == out
    k = t.intern(known)
    assert t.propagated(k) is t.attrs(k)
    with pytest.raises(ValueError):
        propagate_attrs(known[:-1])


# ---------------------------------------------------------------- parity

PARITY_PEERS = {
    1: (65001, "1.1.1.1", "10.0.0.1"),
    2: (65002, "2.2.2.2", "10.0.0.2"),
    3: (65000, "3.3.3.3", "10.0.0.3"),
    4: (65000, "0.0.0.4", "2001:db8::4"),
}
PARITY_PREFIXES = ["10.0.0.0/8", "10.0.0.0/24", "10.0.1.0/24", "10.0.1.128/25", "10.0.1.7/32", "0.0.0.0/0",
                   "192.168.0.0/16", "10.0.0.255/8"]
PARITY_ATTRS = [
    dict(path=(65001,)),
    dict(path=(65001, 7), med=3),
    dict(path=(65002,), med=1),
    dict(path=(65001,), med=0, lp=200),
    dict(path=(7,), originator="0.0.0.1", cluster=("1.1.1.1",)),
    dict(path=(7,), originator="0.0.0.1"),
    dict(path=(65001,), origin=ORIGIN_INCOMPLETE),
]

_op = st.one_of(
    st.tuples(st.just("update"), st.sampled_from(sorted(PARITY_PEERS)), st.booleans(),
              st.lists(st.tuples(st.integers(0, 2), st.sampled_from(PARITY_PREFIXES)), max_size=6),
              st.integers(0, len(PARITY_ATTRS) - 1)),
    st.tuples(st.just("withdraw"), st.sampled_from(sorted(PARITY_PEERS)), st.booleans(),
              st.lists(st.tuples(st.integers(0, 2), st.sampled_from(PARITY_PREFIXES)), max_size=6)),
    st.tuples(st.just("drop"), st.sampled_from(sorted(PARITY_PEERS))),
    st.tuples(st.just("stale"), st.sampled_from(sorted(PARITY_PEERS))),
    st.tuples(st.just("sweep"), st.sampled_from(sorted(PARITY_PEERS))),
)


def _state(r, table):
    return (
        r.prefixes(),
        [r.paths(p) for p in r.prefixes()],
        [r.best_path(p) for p in r.prefixes()],
        [r.paths(p, received=True) for p in r.prefixes()],
        [r.best_path(p, received=True) for p in r.prefixes()],
        r.best_received(pk(*PARITY_PREFIXES)),
        [r.path_received(p, pk(*[(i, x) for i in range(3) for x in PARITY_PREFIXES], addpath=True), True)
         for p in sorted(PARITY_PEERS)],
        [r.paths_by_attr(p, pk(*[(i, x) for i in range(3) for x in PARITY_PREFIXES], addpath=True), True)
         for p in sorted(PARITY_PEERS)],
        list(r.dump_best()),
        list(r.dump_best(exclude_peer=1)),
        [list(r.dump_peer(p, addpath=True)) for p in sorted(PARITY_PEERS)],
        [r.longest_match(a) for a in ("10.0.1.7", "10.0.1.200", "10.0.0.1", "11.0.0.1")],
        r.path_count(),
        len(r),
        [r.peer_path_count(p) for p in sorted(PARITY_PEERS)],
        sorted((aid, table.refcount(aid)) for aid in range(len(table._blocks)) if aid in table),
    )


def _snapshot(r):
    return {p: r.best_path(p) for p in r.prefixes()}


def _keys(table, snap):
    """AttrTable.key of each prefix's best path in ``snap``, read before an
    operation may free the ids."""
    return {p: table.key(b[2]) for p, b in snap.items()}


def _check_changeset(cs, before, after, same=True, keys=None):
    """A ChangeSet is exactly the diff of best paths across the operation;
    with ``same`` (update / withdraw / update_many) its same_source is
    exactly the changed prefixes whose best was the same peer's before;
    its ``replaced`` names, for each changed prefix that had a best path,
    that path's attributes (``keys``: _keys before) and the new attr_id."""
    changed = {p: b for p, b in after.items() if before.get(p) is None or before[p][:3] != b[:3]}
    if keys is not None:
        got = [(new, a, nh, p) for new, lst in cs.replaced.items() for a, nh, packed in lst for p in unpk(packed)]
        assert sorted(got) == sorted((b[2],) + keys[p] + (p,) for p, b in changed.items() if p in before)
    if same:
        assert sorted(unpk(cs.same_source)) == sorted(
            p for p, b in changed.items() if before.get(p) is not None and before[p][0] == b[0])
    else:
        assert cs.same_source == b""
    got = {}
    for (peer, aid), packed in cs.by_source.items():
        for p in unpk(packed):
            assert p not in got, "prefix reported twice"
            got[p] = (peer, aid)
    assert got == {p: (b[0], b[2]) for p, b in changed.items()}
    assert sorted(unpk(cs.withdrawn)) == sorted(p for p in before if p not in after)
    assert sum(len(unpk(v)) for v in cs.announced.values()) == cs.n_announced == len(changed)
    assert cs.n_withdrawn == len(unpk(cs.withdrawn))


def _oracle_best(r, table, paths, always):
    """RFC 4271 §9.1.2.2 / RFC 4456 §9 written the obvious way, from the
    AttrTable accessors and peer_info: an independent check of both RIBs."""
    info = {p[0]: r.peer_info(p[0]) for p in paths}
    cands = list(paths)

    def keep_min(key):
        nonlocal cands
        low = min(key(p) for p in cands)
        cands = [p for p in cands if key(p) == low]

    keep_min(lambda p: (-table.local_pref(p[2]), table.as_path_len(p[2]), table.origin(p[2])))
    if always:
        keep_min(lambda p: table.med(p[2]))
    else:
        cands = [p for p in cands if not any(table.neighbor_as(q[2]) == table.neighbor_as(p[2])
                                             and table.med(q[2]) < table.med(p[2]) for q in cands)]
    if any(not info[p[0]]["ibgp"] for p in cands):
        cands = [p for p in cands if not info[p[0]]["ibgp"]]
    keep_min(lambda p: table.originator_id(p[2]) if table.originator_id(p[2]) is not None else info[p[0]]["router_id"])
    keep_min(lambda p: table.cluster_list_len(p[2]))
    keep_min(lambda p: info[p[0]]["address"])
    return min(cands, key=lambda p: (p[0], p[1]))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(_op, max_size=25), always=st.booleans())
def test_parity_random_operations(ops, always):
    both = [implementation(rib_pkg, "cython"), implementation(rib_pkg, "python")]
    worlds = [make(impl, always_compare_med=always, peers=PARITY_PEERS) for impl in both]
    for step, op in enumerate(ops):
        before = _snapshot(worlds[0][1])
        keys = _keys(worlds[0][0], before)
        results = []
        for table, r in worlds:
            kind = op[0]
            if kind == "update":
                _, peer, addpath, items, ai = op
                packed = pk(*(items if addpath else [p for _i, p in items]), addpath=addpath)
                aid = table.intern(mkattrs(**PARITY_ATTRS[ai]))
                # A distinct receive time per step: the twins must keep or
                # restart each path's time identically.
                res = r.update(peer, packed, addpath, aid, now=1_700_000_000 + step)
                table.release(aid)
            elif kind == "withdraw":
                _, peer, addpath, items = op
                packed = pk(*(items if addpath else [p for _i, p in items]), addpath=addpath)
                res = r.withdraw(peer, packed, addpath)
            elif kind == "drop":
                res = r.drop_peer(op[1])
            elif kind == "stale":
                res = r.mark_stale(op[1])
            else:
                res = r.sweep_stale(op[1])
            results.append(res)
        assert results[0] == results[1], op
        assert _state(*worlds[0][::-1]) == _state(*worlds[1][::-1])
        table, r = worlds[0]
        after = _snapshot(r)
        if op[0] != "stale":
            _check_changeset(results[0], before, after, same=op[0] in ("update", "withdraw"), keys=keys)
        else:
            assert after == {p: b[:3] + (b[3] | rib_pkg.PATH_STALE if b[0] == op[1] else b[3],) for p, b in before.items()}
        for p in r.prefixes():
            assert r.best_path(p) == _oracle_best(r, table, r.paths(p), always)
    for table, r in worlds:
        for p in sorted(PARITY_PEERS):
            r.drop_peer(p)
        assert len(r) == 0 and r.path_count() == 0 and len(table) == 0


_run = st.tuples(st.lists(st.tuples(st.integers(0, 2), st.sampled_from(PARITY_PREFIXES)), max_size=5),
                st.one_of(st.none(), st.integers(0, len(PARITY_ATTRS) - 1)), st.integers(0, 3))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(setup=st.lists(st.tuples(st.sampled_from(sorted(PARITY_PEERS)), st.sampled_from(PARITY_PREFIXES),
                                st.integers(0, len(PARITY_ATTRS) - 1)), max_size=12),
       runs=st.lists(_run, max_size=8), peer=st.sampled_from(sorted(PARITY_PEERS)), addpath=st.booleans())
def test_update_many_equals_the_calls_one_by_one(setup, runs, peer, addpath):
    """Rib.update_many (the import fast lane's batch): the table ends as
    after the same update/withdraw calls one by one, on both twins, and its
    one ChangeSet is the diff of best paths across the whole batch."""
    worlds = [make(implementation(rib_pkg, name), peers=PARITY_PEERS) for name in ("cython", "python", "cython")]
    for table, r in worlds:
        for other, prefix, ai in setup:
            aid = table.intern(mkattrs(**PARITY_ATTRS[ai]))
            r.update(other, pk(prefix), False, aid, now=1_700_000_000)
            table.release(aid)
    before = _snapshot(worlds[0][1])
    keys = _keys(worlds[0][0], before)
    results = []
    for n, (table, r) in enumerate(worlds):
        aids = [table.intern(mkattrs(**a)) for a in PARITY_ATTRS]
        batch = []
        for items, ai, mark in runs:
            packed = pk(*(items if addpath else [p for _i, p in items]), addpath=addpath)
            batch.append((packed, None if ai is None else aids[ai], mark))
        if n < 2:
            results.append(r.update_many(peer, batch, addpath, now=1_700_000_100))
        else:  # the reference: the same calls one by one
            for packed, aid, mark in batch:
                if aid is None:
                    r.withdraw(peer, packed, addpath)
                else:
                    r.update(peer, packed, addpath, aid, now=1_700_000_100, mark=mark)
        for aid in aids:
            table.release(aid)
    assert results[0] == results[1]
    states = [_state(r, table) + ([r.peer_marks(p) for p in sorted(PARITY_PEERS)],) for table, r in worlds]
    assert states[0] == states[1] == states[2]
    _check_changeset(results[0], before, _snapshot(worlds[0][1]), keys=keys)


def test_update_many_checks_every_run_first(rib_impl):
    table, r = make(rib_impl)
    aid = table.intern(mkattrs())
    r.update(1, pk("10.0.0.0/24"), False, aid)
    state = _snapshot(r)
    bad = [[(pk("10.0.1.0/24"), aid, 0), (b"\x21\x0a", aid, 0)],  # malformed NLRI
           [(pk("10.0.1.0/24"), aid, 0), (pk("10.0.0.0/24"), None, 0), (pk("10.0.2.0/24"), aid, 4)],
           [(pk("10.0.0.0/24"), None, 0), (pk("10.0.1.0/24"), 999, 0)]]
    for runs in bad:
        with pytest.raises((ValueError, KeyError)):
            r.update_many(1, runs)
        assert _snapshot(r) == state and r.path_count() == 1
    assert not r.update_many(1, [])
    # A prefix announced and withdrawn within one batch: no change at all.
    cs = r.update_many(1, [(pk("10.0.3.0/24"), aid, 0), (pk("10.0.3.0/24"), None, 0)])
    assert not cs and len(r) == 1 and "10.0.3.0/24" not in r
    table.release(aid)


def test_parity_bulk_table(both_ribs):
    # A few thousand prefixes over several attribute sets and peers: same
    # change sets and dumps from both implementations.
    from fastbgp.wire import bench

    outs = []
    for impl in both_ribs:
        table, r = make(impl)
        log = []
        for peer in (1, 2, 3):
            for g in range(8):
                aid = table.intern(bench.attrs_for(g * peer))
                log.append(r.update(peer, bench.v4_prefixes(0x0A000000 + g * 300 * 256, 300 + peer * 10), False, aid))
                table.release(aid)
        log.append(list(r.dump_best()))
        log.append(r.drop_peer(2))
        log.append(r.withdraw(1, bench.v4_prefixes(0x0A000000, 1000)))
        log.append(list(r.dump_best(exclude_peer=3)))
        log.append((len(r), r.path_count(), len(table)))
        outs.append(log)
    assert outs[0] == outs[1]


# -------------------------------------------------------------------- MED step, many candidates
#
# RFC 4271 §9.1.2.2 (c) for one prefix with up to 40 paths.  The compiled
# RIB has two ways through the MED step: a double loop up to SMALL_MED
# candidates and a sorted copy of (neighbour AS, MED) keys beyond, with a
# shortcut when every candidate has its own neighbour AS (a route server's or
# a full-table collector's usual case).  Both must pick what the oracle
# above picks, and the twin must agree, whatever the arrivals and withdrawals.

MANY_PEERS = {100 + i: (64600 + i, "10.9.0.%d" % (200 - i), "10.2.0.%d" % (i + 1)) for i in range(40)}
# (neighbour AS index, MED or None) per peer; then churn: (peer index, AS
# index, MED or None), a 1-tuple withdraws.
_many_route = st.tuples(st.integers(0, 5), st.one_of(st.none(), st.integers(0, 3)))
_many_op = st.one_of(st.tuples(st.integers(0, 39), st.integers(0, 5), st.one_of(st.none(), st.integers(0, 3))),
                     st.tuples(st.integers(0, 39)))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(order=st.permutations(range(40)), routes=st.lists(_many_route, min_size=40, max_size=40),
       churn=st.lists(_many_op, max_size=40), always=st.booleans(), distinct=st.booleans())
def test_med_step_many_candidates(order, routes, churn, always, distinct):
    both = [make(implementation(rib_pkg, name), always_compare_med=always, peers=MANY_PEERS)
            for name in ("cython", "python")]
    ops = [(i,) + routes[i] for i in order] + list(churn)
    for op in ops:
        peer = 100 + op[0]
        for table, r in both:
            if len(op) == 1:
                r.withdraw(peer, pk("10.0.0.0/24"))
                continue
            # ``distinct``: every peer its own neighbour AS (the shortcut);
            # else six shared ASes, so MEDs are compared.
            kw = {"path": (64600 + op[0] if distinct else 64000 + op[1],)}
            if op[2] is not None:
                kw["med"] = op[2]
            announce(r, table, peer, ["10.0.0.0/24"], **kw)
        (t0, r0), (t1, r1) = both
        assert len(r0) == len(r1)
        if len(r0):
            assert r0.best_path("10.0.0.0/24") == _oracle_best(r0, t0, r0.paths("10.0.0.0/24"), always)
            assert r1.best_path("10.0.0.0/24") == _oracle_best(r1, t1, r1.paths("10.0.0.0/24"), always)


def test_the_clock_read_is_never_behind_the_wall_clock(rib_impl):
    """``update`` without ``now`` reads the wall clock as time.time() does:
    a path is never stamped with a second before the one time.time() said
    just before the call (the coarse clock of C's time() lags it by up to a
    few milliseconds after each second boundary).  Updates for 1.2 s, so
    through at least one boundary."""
    import time

    table, r = make(rib_impl)
    aids = [table.intern(mkattrs(path=(65001,))), table.intern(mkattrs(path=(65001, 7)))]
    packed = pk("10.0.0.0/24")
    end = time.monotonic() + 1.2
    n = 0
    while time.monotonic() < end:
        t0 = int(time.time())
        r.update(1, packed, False, aids[n % 2])  # attributes alternate: the time restarts each call
        got = r.paths("10.0.0.0/24", received=True)[0][4]
        assert t0 <= got <= int(time.time()), (t0, got)
        n += 1


def _slash24s(ks, first=16):
    """Packed NLRI of the /24s numbered ``ks`` counting from ``first``.0.0.0/24."""
    return b"".join(bytes((24,)) + ((first << 24) + (k << 8)).to_bytes(4, "big")[:3] for k in ks)


def _slash24(k):
    """The text of /24 number ``k`` of _slash24s (from 16.0.0.0/24)."""
    return "%d.%d.%d.0/24" % (16 + (k >> 16), (k >> 8) & 255, k & 255)


def test_a_busy_slot_array_keeps_every_prefix_and_path():
    """Compiled RIB only (the twin has no slot array): one full feed of
    200,000 prefixes (262,144 slots, over 4 MiB: a mapping of its own), then
    the same prefixes from three more peers, 1,000 per UPDATE: every prefix
    and path is still found, with the same best paths."""
    impl = implementation(rib_pkg, "cython")
    peers = {i: (64600 + i, "10.9.0.%d" % i, "10.2.0.%d" % i) for i in range(1, 5)}
    table, r = make(impl, peers=peers)
    n = 200_000
    packed = _slash24s(range(n))
    text = _slash24
    for peer in peers:
        aid = table.intern(mkattrs(path=(64600 + peer, 7)))
        for at in range(0, len(packed), 4000):  # 1,000 prefixes per UPDATE
            r.update(peer, packed[at : at + 4000], False, aid)
        table.release(aid)
        if peer == 1:
            best_before = [r.best_path(text(k)) for k in (0, 1, n // 2, n - 1)]
    assert len(r) == n and r.path_count() == 4 * n
    # Lowest router id wins: peer 1 throughout.
    assert [r.best_path(text(k)) for k in (0, 1, n // 2, n - 1)] == best_before
    assert all(len(r.paths(text(k))) == 4 for k in range(0, n, 997))


def test_a_big_slot_array_grows_by_half_and_keeps_every_prefix():
    """Compiled RIB only: past 2^20 IPv4 slots (28 MiB) the array grows by
    half, not double, so 900,000 prefixes sit in 1.57M slots, not 2.1M;
    at that size (not a power of two) every prefix is still found, and
    withdrawing every other one in a scattered order (backward-shift
    deletion across the array's end) leaves exactly the others."""
    impl = implementation(rib_pkg, "cython")
    table, r = make(impl, peers={1: PEERS[1]})
    n = 900_000
    aid = table.intern(mkattrs(path=(65001, 7)))
    for at in range(0, n, 1000):
        r.update(1, _slash24s(range(at, at + 1000)), False, aid)
    table.release(aid)
    assert len(r) == n
    assert r.memory_usage() < (1 << 21) * 28  # doubling would have taken 2^21 slots
    gone = [(k * 7919) % n for k in range(n)][::2]  # a permutation's every other element
    for at in range(0, len(gone), 1000):
        r.withdraw(1, _slash24s(gone[at : at + 1000]))
    left = set(range(n)) - set(gone)
    assert len(r) == len(left)
    assert r.prefixes() == [_slash24(k) for k in sorted(left)]  # the slots, in address order
    for k in range(0, n, 97):  # and found by probing, or not
        assert (_slash24(k) in r) == (k in left)


# -------------------------------------------------------------------- one new path at a time
#
# A prefix gaining one path, and nothing else changing in the operation, is
# decided by the compiled RIB from the old best and the new path alone
# (_Selection._select_added); everything else selects among all paths.  Paths
# here differ in every step of RFC 4271 §9.1.2.2 and RFC 4456 §9 -- LOCAL_PREF,
# AS_PATH length, ORIGIN, MED within and across neighbour ASes, eBGP/iBGP,
# router ids (some equal), ORIGINATOR_ID, CLUSTER_LIST, peer addresses (two
# peers share one) -- and arrive one per operation, so the shortcut decides
# most of them; ADD-PATH runs add two paths of a prefix in one operation.

ARRIVAL_PEERS = {
    21: (65001, "10.0.0.5", "10.1.0.21"),
    22: (65001, "10.0.0.3", "10.1.0.22"),
    23: (65002, "10.0.0.5", "10.1.0.23"),
    24: (65000, "10.0.0.1", "10.1.0.24"),  # iBGP
    25: (65000, "10.0.0.9", "10.1.0.25"),  # iBGP
    26: (65003, "10.0.0.3", "10.1.0.21"),  # same address as 21
    27: (65002, "10.0.0.2", "10.1.0.20"),
    28: (65004, "10.0.0.3", "10.1.0.19"),
}
# Mostly equal ranks and shared neighbour ASes: the cases where MED decides.
_arrival_attrs = st.fixed_dictionaries({
    "lp": st.sampled_from([None] * 6 + [100, 200]),
    "path_len": st.sampled_from([1] * 7 + [2]),
    "origin": st.sampled_from([ORIGIN_IGP] * 7 + [ORIGIN_EGP]),
    "med": st.one_of(st.none(), st.integers(0, 2)),
    "originator": st.sampled_from([None, None, "10.0.0.2", "10.0.0.4"]),
    "cluster": st.sampled_from([0, 0, 1, 2]),
    "nbr": st.sampled_from([None, 64700, 64700, 64701]),
})
_arrival_op = st.one_of(
    st.tuples(st.just("add"), st.sampled_from(sorted(ARRIVAL_PEERS)), _arrival_attrs),
    st.tuples(st.just("add"), st.sampled_from(sorted(ARRIVAL_PEERS)), _arrival_attrs),
    st.tuples(st.just("addpath"), st.sampled_from(sorted(ARRIVAL_PEERS)), _arrival_attrs, _arrival_attrs),
    st.tuples(st.just("withdraw"), st.sampled_from(sorted(ARRIVAL_PEERS))),
)


def _arrival_kw(peer, a):
    """mkattrs arguments: the AS path starts with the peer's AS for eBGP (or
    a shared one, ``nbr``, so neighbour ASes repeat across peers)."""
    pas = ARRIVAL_PEERS[peer][0]
    first = pas if pas != 65000 else 64999
    if a["nbr"] is not None:
        first = a["nbr"]
    return dict(lp=a["lp"], path=(first,) + (64800,) * (a["path_len"] - 1), origin=a["origin"], med=a["med"],
                originator=a["originator"] if pas == 65000 else None,
                cluster=("10.9.9.1",) * a["cluster"] if pas == 65000 else ())


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(_arrival_op, min_size=3, max_size=30), always=st.booleans())
def test_one_new_path_at_a_time_picks_what_a_full_selection_picks(ops, always):
    worlds = [make(implementation(rib_pkg, name), always_compare_med=always, peers=ARRIVAL_PEERS)
              for name in ("cython", "python")]
    prefix = "10.0.0.0/24"
    for op in ops:
        for table, r in worlds:
            if op[0] == "withdraw":
                r.withdraw(op[1], pk((1, prefix), (2, prefix), addpath=True), True)
            elif op[0] == "add":
                announce(r, table, op[1], [(1, prefix)], addpath=True, **_arrival_kw(op[1], op[2]))
            else:
                ids = [table.intern(mkattrs(**_arrival_kw(op[1], a)), b"") for a in op[2:]]
                try:
                    r.update_many(op[1], [(pk((1, prefix), addpath=True), ids[0], 0),
                                          (pk((2, prefix), addpath=True), ids[1], 0)], True)
                finally:
                    for i in ids:
                        table.release(i)
        (t0, r0), (t1, r1) = worlds
        assert r0.paths(prefix) == r1.paths(prefix)
        if r0.paths(prefix):
            assert r0.best_path(prefix) == _oracle_best(r0, t0, r0.paths(prefix), always)
            assert r1.best_path(prefix) == _oracle_best(r1, t1, r1.paths(prefix), always)


# -------------------------------------------------------------------- path arrays (pathslab.h)


def test_path_arrays_through_every_block_size_and_back():
    """Compiled RIB only (the twin keeps lists): 30,000 prefixes gain paths
    from 70 peers in turns -- through every block size of the slab and past
    its largest (64 paths: a chunk of its own) -- in an order that
    interleaves prefixes and peers, then lose them in another order.  Every
    prefix keeps exactly its paths in (peer, path id) order and the lowest
    router id is best throughout; memory_usage grows with the paths and
    falls back once they are gone (emptied chunks are unmapped, past 16 MiB
    of spare ones)."""
    impl = implementation(rib_pkg, "cython")
    peers = {i: (64000 + i, "10.%d.%d.1" % (i // 200, i % 200 + 1), "10.200.%d.1" % i) for i in range(1, 71)}
    table, r = make(impl, peers=peers)
    n = 30_000
    text = _slash24
    empty = r.memory_usage()
    aids = {p: table.intern(mkattrs(path=(64000 + p,))) for p in peers}
    order = sorted(peers, key=lambda p: (p * 37) % 71)  # not in router-id order
    halves = [_slash24s(range(0, n, 2)), _slash24s(range(1, n, 2))]
    every = _slash24s(range(n))
    for k, peer in enumerate(order):
        # Half the prefixes in one UPDATE, the other half in another, the
        # halves taken in turn so arrays of two sizes are cut together.
        for half in ((k % 2), 1 - (k % 2)):
            r.update(peer, halves[half], False, aids[peer])
        if k in (1, 6, 7, 8, 63, 64, 65, 69):
            held = sorted(order[: k + 1])
            for i in range(0, n, 2711):
                assert [p[0] for p in r.paths(text(i))] == held
                assert r.best_path(text(i))[0] == held[0]
    full = r.memory_usage()
    assert r.path_count() == 70 * n and full > empty + 70 * n * 15
    for k, peer in enumerate(sorted(peers, key=lambda p: (p * 11) % 71)):
        r.withdraw(peer, every)
        if k in (4, 5, 6, 62, 63, 64, 68):
            left = sorted(set(peers) - set(sorted(peers, key=lambda p: (p * 11) % 71)[: k + 1]))
            for i in range(0, n, 2711):
                assert [p[0] for p in r.paths(text(i))] == left
                assert r.best_path(text(i))[0] == left[0]
    assert len(r) == 0 and r.path_count() == 0
    # What is left: the (shrunk) slot array and at most 16 spare chunks.
    assert r.memory_usage() <= empty + 16 * 2**20 < full
    for aid in aids.values():
        table.release(aid)
