"""The prefix-sharded RIB: ``Rib(afi, ..., shards=N, shard=k)`` keeps only
the prefixes ``prefix_shard`` gives to shard k (one worker process of N
each fed every UPDATE), skipping the others of every packed input.

Every test taking ``rib_impl`` runs on both implementations (ids ``cython``
/ ``python``); the parity check of ``prefix_shard`` needs the compiled one
and is skipped when FASTBGP_NO_EXTENSIONS is set.
"""

import ipaddress
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastbgp import rib as rib_pkg
from fastbgp.rib import AttrTable, prefix_shard
from test_rib import PEERS, mkattrs, pk, unpk

BITS = {1: 32, 2: 128}

# ---------------------------------------------------------------- helpers


def _text(afi, addr, plen):
    """"addr/plen" with the address as drawn: host bits stay set (the RIB
    and prefix_shard must clear them)."""
    a = ipaddress.IPv4Address(addr) if afi == 1 else ipaddress.IPv6Address(addr)
    return "%s/%d" % (a, plen)


def _prefixes(afi):
    """A strategy for prefix strings of ``afi``, a realistic length mix
    and any length, host bits random."""
    bits = BITS[afi]
    lengths = st.integers(8, 24) if afi == 1 else st.one_of(st.integers(32, 48), st.integers(16, 64))
    return st.builds(lambda a, n: _text(afi, a, n), st.integers(0, (1 << bits) - 1),
                     st.one_of(lengths, st.integers(0, bits)))


def _shard_of(impl, text, afi, n):
    return impl.prefix_shard(pk(text), afi, n)


def _own(impl, packed, afi, n, k):
    """``packed`` (no path ids) keeping only the prefixes of shard ``k`` of ``n``."""
    return pk(*[x for x in unpk(packed, afi) if _shard_of(impl, x, afi, n) == k])


def _norm(cs, afi):
    """A ChangeSet's fields with each packed field as its sorted prefixes:
    the order of a drop or sweep is the slot table's, whose size differs
    between a shard and the whole; ``replaced``'s pairs come in order of
    their first prefix, which may be another shard's."""
    if isinstance(cs, int):  # mark_stale
        return None
    srt = lambda p: sorted(unpk(p, afi))  # noqa: E731
    by = lambda d: {g: srt(p) for g, p in d.items()}  # noqa: E731
    return (by(cs["announced"]), srt(cs["withdrawn"]), cs["n_announced"], cs["n_withdrawn"], by(cs["by_source"]),
            srt(cs["same_source"]), {aid: sorted((a, nh, tuple(srt(p))) for a, nh, p in lst)
                                     for aid, lst in cs["replaced"].items()})


def _split(impl, cs, afi, n, k):
    """What the ChangeSet ``cs`` of an unsharded RIB says about shard ``k``
    of ``n``: each packed field filtered, empty groups dropped."""
    if isinstance(cs, int):  # mark_stale
        return None
    own = lambda p: _own(impl, p, afi, n, k)  # noqa: E731
    keep = lambda d: {g: v for g, v in ((g, own(p)) for g, p in d.items()) if v}  # noqa: E731
    replaced = {}
    for aid, lst in cs.replaced.items():
        kept = [(a, nh, own(p)) for a, nh, p in lst]
        kept = [e for e in kept if e[2]]
        if kept:
            replaced[aid] = kept
    ann = keep(cs.announced)
    wd = own(cs.withdrawn)
    return _norm({"announced": ann, "withdrawn": wd, "n_announced": sum(len(unpk(v, afi)) for v in ann.values()),
                  "n_withdrawn": len(unpk(wd, afi)), "by_source": keep(cs.by_source),
                  "same_source": own(cs.same_source), "replaced": replaced}, afi)


def _fields(cs, afi):
    if isinstance(cs, int):
        return None
    return _norm({"announced": dict(cs.announced), "withdrawn": cs.withdrawn, "n_announced": cs.n_announced,
                  "n_withdrawn": cs.n_withdrawn, "by_source": dict(cs.by_source), "same_source": cs.same_source,
                  "replaced": cs.replaced}, afi)


def _table(r):
    """prefix -> (paths, best path) of everything ``r`` holds."""
    return {p: (r.paths(p, received=True), r.best_path(p)) for p in r.prefixes()}


def _rib(impl, table, afi, **kw):
    r = impl.Rib(afi, table, **kw)
    for pid, (pas, rid, addr) in PEERS.items():
        r.add_peer(pid, pas, 65000, rid, addr)
    return r


# ---------------------------------------------------------------- a sharded RIB is its shard of the whole

ATTRS = [dict(path=(65001,)), dict(path=(65001, 7), med=3), dict(path=(65002,), med=1), dict(path=(65001,), lp=200),
         dict(path=(7,), originator="0.0.0.1")]


def _ops(pool_size):
    idx = st.lists(st.tuples(st.integers(0, 2), st.integers(0, pool_size - 1)), max_size=8)
    peer = st.sampled_from(sorted(PEERS))
    return st.lists(st.one_of(
        st.tuples(st.just("update"), peer, st.booleans(), idx, st.integers(0, len(ATTRS) - 1)),
        st.tuples(st.just("withdraw"), peer, st.booleans(), idx),
        st.tuples(st.just("many"), peer, st.booleans(), st.lists(st.tuples(idx, st.integers(-1, len(ATTRS) - 1)),
                                                                 max_size=3)),
        st.tuples(st.just("stale"), peer),
        st.tuples(st.just("sweep"), peer),
        st.tuples(st.just("drop"), peer),
    ), max_size=14)


def _apply(r, table, op, pool, aids):
    kind, peer = op[0], op[1]
    if kind in ("update", "withdraw", "many"):
        addpath = op[2]
        packed = lambda items: pk(*[(i, pool[j]) if addpath else pool[j] for i, j in items],  # noqa: E731
                                  addpath=addpath)
        if kind == "update":
            return r.update(peer, packed(op[3]), addpath, aids[op[4]], now=1_700_000_000)
        if kind == "withdraw":
            return r.withdraw(peer, packed(op[3]), addpath)
        return r.update_many(peer, [(packed(items), None if a < 0 else aids[a], 0) for items, a in op[3]], addpath,
                             now=1_700_000_100)
    if kind == "stale":
        return r.mark_stale(peer)
    if kind == "sweep":
        return r.sweep_stale(peer)
    return r.drop_peer(peer)


@pytest.mark.parametrize("afi", [1, 2])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(data=st.data(), n=st.sampled_from([2, 3, 4]))
def test_the_shards_together_are_the_unsharded_rib(rib_impl, afi, data, n):
    pool = data.draw(st.lists(_prefixes(afi), min_size=1, max_size=14), label="pool")
    ops = data.draw(_ops(len(pool)), label="ops")
    # One AttrTable for all: attribute ids in the ChangeSets compare.
    table = AttrTable()
    whole = _rib(rib_impl, table, afi)
    shards = [_rib(rib_impl, table, afi, shards=n, shard=k) for k in range(n)]
    assert [(r.shards, r.shard) for r in shards] == [(n, k) for k in range(n)]
    assert (whole.shards, whole.shard) == (1, 0)
    for op in ops:
        aids = [table.intern(mkattrs(**a)) for a in ATTRS]
        try:
            expected = _apply(whole, table, op, pool, aids)
            got = [_apply(r, table, op, pool, aids) for r in shards]
        finally:
            for aid in aids:
                table.release(aid)
        if isinstance(expected, int):  # mark_stale: paths marked
            assert sum(got) == expected
        for k, cs in enumerate(got):
            assert _fields(cs, afi) == _split(rib_impl, expected, afi, n, k), (op, k)
        union = {}
        for k, r in enumerate(shards):
            held = _table(r)
            assert all(_shard_of(rib_impl, p, afi, n) == k for p in held), "a prefix of another shard is kept"
            assert not union.keys() & held.keys()
            union.update(held)
            assert [r.peer_path_count(p) for p in PEERS] == [
                sum(1 for q in held.values() for path in q[0] if path[0] == p) for p in PEERS]
        assert union == _table(whole)
        assert sum(len(r) for r in shards) == len(whole)
        assert sum(r.path_count() for r in shards) == whole.path_count()
        # Queries of a foreign prefix: simply not there.
        for p in pool:
            net = str(ipaddress.ip_network(p, strict=False))
            home = _shard_of(rib_impl, net, afi, n)
            for k, r in enumerate(shards):
                assert r.best_path(net) == (whole.best_path(net) if k == home else None)


@pytest.mark.parametrize("afi", [1, 2])
def test_a_big_update_reserves_for_the_shard_only(rib_impl, afi):
    # One 60,000-prefix update: the table grows for the prefixes it keeps,
    # not for the whole input (else each of N shards is as big as one RIB).
    table = AttrTable()
    if afi == 1:
        packed = b"".join(bytes((24,)) + ((10 << 24) + (k << 8)).to_bytes(4, "big")[:3] for k in range(60_000))
    else:
        packed = b"".join(bytes((48,)) + ((0x2001 << 112) + (k << 80)).to_bytes(16, "big")[:6] for k in range(60_000))
    sizes = []
    for kw in ({}, dict(shards=2, shard=0), dict(shards=2, shard=1)):
        r = _rib(rib_impl, table, afi, **kw)
        aid = table.intern(mkattrs())
        r.update(1, packed, False, aid)
        table.release(aid)
        sizes.append((len(r), r.memory_usage()))
    (n0, m0), (n1, m1), (n2, m2) = sizes
    assert n1 + n2 == n0 == 60_000
    assert max(m1, m2) <= 0.6 * m0


@pytest.mark.parametrize("afi", [1, 2])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), n=st.sampled_from([1, 2, 3]))
def test_update_many_counts_the_shard_s_prefixes_of_its_runs(rib_impl, afi, data, n):
    # last_count: what path hiding compares the ChangeSet with (Exporter.
    # hiding_touch_many), repeats and withdrawals counted, foreign prefixes not.
    pool = data.draw(st.lists(_prefixes(afi), min_size=1, max_size=10), label="pool")
    picks = data.draw(st.lists(st.tuples(st.lists(st.integers(0, len(pool) - 1), min_size=1, max_size=6),
                                         st.booleans()), min_size=1, max_size=4), label="runs")
    table = AttrTable()
    aid = table.intern(mkattrs())
    for k in range(n):
        r = _rib(rib_impl, table, afi, shards=n, shard=k)
        runs = [(pk(*[pool[i] for i in idx]), aid if announce else None, 0) for idx, announce in picks]
        r.update_many(1, runs)
        want = sum(1 for idx, _a in picks for i in idx if _shard_of(rib_impl, _net(pool[i]), afi, n) == k)
        assert r.last_count == want
    table.release(aid)


def _net(p):
    return str(ipaddress.ip_network(p, strict=False))


# ---------------------------------------------------------------- the shard function


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(afi=st.sampled_from([1, 2]), data=st.data(), n=st.integers(1, 64))
def test_compiled_and_twin_prefix_shard_agree(both_ribs, afi, data, n):
    c, p = both_ribs
    text = data.draw(_prefixes(afi))
    packed = pk(text)
    assert c.prefix_shard(packed, afi, n) == p.prefix_shard(packed, afi, n)
    assert 0 <= p.prefix_shard(packed, afi, n) < n
    # Host bits are no part of the prefix.
    net = str(ipaddress.ip_network(text, strict=False))
    assert c.prefix_shard(pk(net), afi, n) == c.prefix_shard(packed, afi, n)
    assert c.prefix_shard(bytearray(packed), afi, n) == c.prefix_shard(packed, afi, n)


def test_prefix_shard_is_exported():
    assert rib_pkg.prefix_shard is prefix_shard
    assert "prefix_shard" in rib_pkg.API


def test_prefix_shard_known_values(rib_impl):
    # Pinned: a change of the definition would move every worker's prefixes.
    assert [rib_impl.prefix_shard(pk(p), 1, 64) for p in ("0.0.0.0/0", "10.0.0.0/24", "10.0.1.0/24", "8.8.8.0/24")] \
        == [0, 37, 40, 51]
    assert [rib_impl.prefix_shard(pk(p), 2, 64) for p in ("::/0", "2001:db8::/32", "2a00:1450::/32")] == [0, 15, 45]
    assert rib_impl.prefix_shard(pk("10.0.0.0/24"), 1, 1) == 0


def _slash24s(count):
    first = 10 << 16
    return [bytes((24,)) + (first + k).to_bytes(3, "big") for k in range(count)]


def _within(counts, total, tol):
    mean = total / len(counts)
    return all(abs(c - mean) <= tol * mean for c in counts)


def test_consecutive_slash24s_split_evenly(rib_impl):
    count = 1_000_000 if rib_impl.IMPLEMENTATION == "cython" else 100_000
    fn = rib_impl.prefix_shard
    zero = sum(1 for p in _slash24s(count) if fn(p, 1, 2) == 0)
    assert _within([zero, count - zero], count, 0.01), zero


def test_a_mix_of_lengths_splits_evenly(rib_impl):
    rnd = random.Random(4271)
    fn = rib_impl.prefix_shard
    v4 = [(1, (rnd.randint(8, 24), rnd.getrandbits(32))) for _ in range(60_000)]
    v6 = [(2, (rnd.choice((32, 32, 40, 44, 48, 48, 48, rnd.randint(16, 64))), rnd.getrandbits(128)))
          for _ in range(60_000)]
    for afi, sample in ((1, v4), (2, v6)):
        bits = BITS[afi]
        keys = {(a >> (bits - n) << (bits - n), n) for _afi, (n, a) in sample}  # distinct prefixes
        packed = [bytes((n,)) + a.to_bytes(bits // 8, "big")[: (n + 7) >> 3] for a, n in keys]
        for n in (2, 3, 4, 8):
            counts = [0] * n
            for p in packed:
                counts[fn(p, afi, n)] += 1
            assert _within(counts, len(packed), 0.04), (afi, n, counts)


# ---------------------------------------------------------------- arguments and malformed input


@pytest.mark.parametrize("kw", [dict(shards=0), dict(shards=65), dict(shards=-1), dict(shards=2, shard=2),
                                dict(shards=2, shard=-1), dict(shard=1), dict(shards=2.0), dict(shards=True),
                                dict(shards="2"), dict(shards=3, shard=None)])
def test_bad_shard_arguments(rib_impl, kw):
    with pytest.raises(ValueError, match="shard"):
        rib_impl.Rib(1, **kw)


def test_good_shard_arguments(rib_impl):
    for n, k in ((1, 0), (64, 63), (64, 0), (3, 2)):
        r = rib_impl.Rib(2, shards=n, shard=k)
        assert (r.shards, r.shard) == (n, k)


@pytest.mark.parametrize("args", [(b"\x18\x0a\x00", 1, 2), (b"\x21" + b"\x00" * 5, 1, 2), (b"", 1, 2),
                                  (b"\x18\x0a\x00\x00\x00", 1, 2), (pk("10.0.0.0/24") * 2, 1, 2),
                                  (pk("10.0.0.0/24"), 3, 2), (pk("10.0.0.0/24"), 1, 0),
                                  (pk("10.0.0.0/24"), 1, 65), (b"\x81" + b"\x00" * 17, 2, 2)])
def test_prefix_shard_bad_arguments(rib_impl, args):
    with pytest.raises(ValueError):
        rib_impl.prefix_shard(*args)


BAD = [
    (pk("10.0.0.0/24", "10.0.1.0/24", "10.0.2.0/24") + b"\x21\x0a\x00\x00\x00\x00", False),  # /33
    (pk("10.0.0.0/24", "10.0.1.0/24", "10.0.2.0/24") + b"\x18\x0a", False),  # truncated
    (pk((1, "10.0.0.0/24"), (2, "10.0.1.0/24"), addpath=True) + b"\x00\x00", True),  # truncated path id
]


@pytest.mark.parametrize("bad,addpath", BAD)
def test_malformed_input_raises_as_unsharded(rib_impl, bad, addpath):
    table = AttrTable()
    aid = table.intern(mkattrs())
    good = pk(*["10.0.%d.0/24" % i for i in range(64)])
    ribs = [_rib(rib_impl, table, 1)] + [_rib(rib_impl, table, 1, shards=4, shard=k) for k in range(4)]
    for r in ribs:
        r.update(2, good, False, aid)
    before = [_table(r) for r in ribs]
    calls = [
        lambda r: r.update(1, bad, addpath, aid),
        lambda r: r.withdraw(2, bad, addpath),
        lambda r: r.update_many(1, [(good, aid, 0), (bad, aid, 0)], addpath),
        lambda r: r.update_many(2, [(good, None, 0), (bad, None, 0)], addpath),
        lambda r: r.set_mark(2, bad, addpath, 1),
    ]
    for call in calls:
        errors = []
        for r in ribs:
            with pytest.raises(ValueError) as exc:
                call(r)
            errors.append(str(exc.value))
        assert len(set(errors)) == 1, errors
    assert [_table(r) for r in ribs] == before
    table.release(aid)


@pytest.mark.parametrize("afi", [1, 2])
@pytest.mark.parametrize("addpath", [False, True])
def test_own_keeps_the_shards_prefixes_as_given(rib_impl, afi, addpath):
    """Rib.own: the prefixes of the shard, in order, with their path ids;
    the shards' parts together are the input; unsharded, the input itself
    (not even looked at); sharded, malformed input raises."""
    rnd = random.Random(afi * 2 + addpath)
    if afi == 1:
        texts = ["%d.%d.%d.0/%d" % (rnd.randrange(1, 224), rnd.randrange(256), rnd.randrange(256), rnd.randrange(8, 25))
                 for _ in range(400)]
    else:
        texts = ["2001:db8:%x::/%d" % (rnd.randrange(65536), rnd.randrange(32, 49)) for _ in range(400)]
    texts = [str(ipaddress.ip_network(t, strict=False)) for t in texts]
    items = [(i, t) for i, t in enumerate(texts)] if addpath else texts
    packed = pk(*items, addpath=addpath)
    table = AttrTable()
    parts = []
    for k in range(3):
        got = rib_impl.Rib(afi, table, shards=3, shard=k).own(packed, addpath)
        want = [x for x in items if _shard_of(rib_impl, x[1] if addpath else x, afi, 3) == k]
        assert unpk(got, afi, addpath) == want
        parts.append(want)
    assert sorted(sum(parts, []), key=str) == sorted(items, key=str)
    whole = rib_impl.Rib(afi, table)
    assert whole.own(packed, addpath) is packed
    assert whole.own(b"\x21", addpath) == b"\x21"  # not looked at: the RIB operation checks it
    with pytest.raises(ValueError):
        rib_impl.Rib(afi, table, shards=3, shard=0).own(packed + b"\x81", addpath)
