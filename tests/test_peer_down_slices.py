"""A session holding a big table goes down: its routes leave the RIB in
slices (``Rib.mark_stale`` then ``Rib.sweep_stale_slice``, driven by
``PeerRegistry.sweep_slices``), so the event loop -- every other session's
KEEPALIVEs and hold timer, the API -- is never held for the whole table
(fastbgp issue 12).

RIB level (both implementations): a sliced sweep
(``Rib.sweep_stale_slice`` until ``Rib.peer_stale_count`` is 0) ends with
the table, reference counts and changes of ``drop_peer``, also while the
table changes between slices; fresh paths survive it.
Daemon level (real sessions on loopback, both event loops): a periodic
callback runs while 200,000 routes go (and sees part of them gone), the
exact withdrawals a third peer receives, ADD-PATH members and one joining
during the sweep, the pre-policy copy of a peer without ROUTE-REFRESH, and
the peer coming back after its routes were marked and before the slices ran
(held behind other export work; the RIB-level tests come back between
slices)."""

import asyncio
import random

import pytest

from fastbgp.rib import EMPTY
from fastbgp.rib.attrs import AttrTable
from fastbgp.session.speaker import NeighborConfig, Speaker
from test_daemon import DUT, addr, neighbor_toml, peer, until
from test_rib import mkattrs, pk, unpk

# ---------------------------------------------------------------- RIB level

PEERS = {1: (65001, "1.1.1.1", "10.0.0.1"), 2: (65002, "2.2.2.2", "10.0.0.2"), 3: (65000, "3.3.3.3", "10.0.0.3")}


def build(impl, seed, n=400):
    """A RIB where peer 1 (ADD-PATH: path ids 1..3) shares many prefixes
    with peers 2 and 3, several attribute sets each; the same for a seed."""
    rnd = random.Random(seed)
    table = AttrTable()
    r = impl.Rib(1, table)
    for pid, (pas, rid, address) in PEERS.items():
        r.add_peer(pid, pas, 65000, rid, address)
    space = ["10.%d.%d.0/24" % (i >> 8, i & 255) for i in range(n)] + ["10.0.0.0/%d" % m for m in (8, 16, 20)]
    for peer_id in (1, 2, 3):
        for k in range(4):
            aid = table.intern(mkattrs(path=(PEERS[peer_id][0],) * (1 + rnd.randrange(3)), med=rnd.randrange(3),
                                       lp=100 + k))
            chosen = rnd.sample(space, len(space) // (3 if peer_id == 1 else 5))
            if peer_id == 1:
                r.update(1, pk(*[(1 + rnd.randrange(3), p) for p in chosen], addpath=True), True, aid)
            else:
                r.update(peer_id, pk(*chosen), False, aid)
            table.release(aid)
    return table, r, space


def state(r, space):
    return {p: r.paths(p) for p in space if p in r}


def refs(table):
    return [table.refcount(a) if table.is_live(a) else None for a in range(64)]


def changes(cs_list):
    """(withdrawn prefixes, [(prefix, (peer, attr id))]), sorted; every
    prefix at most once."""
    wd, ann = [], []
    for cs in cs_list:
        wd += unpk(cs.withdrawn)
        for g, packed in cs.by_source.items():
            ann += [(p, g) for p in unpk(packed)]
    assert len(set(wd)) == len(wd) and len({p for p, _g in ann}) == len(ann)
    return sorted(wd), sorted(ann)


PASSES = []  # passes over the table the last sweep_in_slices took


def sweep_in_slices(r, peer_id, max_slots, between=None):
    """Slices until nothing of ``peer_id`` is stale; ``between(i)`` runs
    after slice ``i``.  Returns the ChangeSets."""
    out, start, i = [], 0, 0
    PASSES[:] = [1]
    while r.peer_stale_count(peer_id):
        cs, start = r.sweep_stale_slice(peer_id, start, max_slots)
        if start is None:
            start = 0
            PASSES[0] += 1
        out.append(cs)
        if between is not None:
            between(i)
        i += 1
        assert i < 100000, "the sweep does not end"
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("max_slots", [1, 7, 100000])
def test_sliced_sweep_equals_drop_peer(rib_impl, seed, max_slots):
    t1, whole, space = build(rib_impl, seed)
    t2, sliced, _ = build(rib_impl, seed)
    cs = whole.drop_peer(1)
    assert sliced.mark_stale(1) == sliced.peer_path_count(1) == sliced.peer_stale_count(1) > 100
    parts = sweep_in_slices(sliced, 1, max_slots)
    assert len(parts) > 1 or max_slots == 100000
    # Nothing else changes the table: one pass, or two for the few prefixes
    # a deletion moved back into slots already passed.
    assert PASSES[0] <= 2, PASSES
    assert changes(parts) == changes([cs]) and changes([cs])[0] and changes([cs])[1]
    assert state(sliced, space) == state(whole, space)
    assert sliced.peer_path_count(1) == 0 and sliced.path_count() == whole.path_count()
    assert len(sliced) == len(whole) and sliced.peer_marks(1) == (0, 0, 0, 0)
    assert refs(t2) == refs(t1) and len(t2) == len(t1)
    assert sliced.sweep_stale_slice(1, 0, max_slots)[0] == EMPTY


def test_twins_sweep_alike(both_ribs):
    compiled, twin = both_ribs
    _, a, space = build(compiled, 7)
    _, b, _ = build(twin, 7)
    a.mark_stale(1)
    b.mark_stale(1)
    assert changes(sweep_in_slices(a, 1, 50)) == changes(sweep_in_slices(b, 1, 50))
    assert state(a, space) == state(b, space)


@pytest.mark.parametrize("seed", [4, 5])
def test_sweep_while_the_table_changes(rib_impl, seed):
    """Between slices other peers add and withdraw prefixes (the table grows,
    shrinks, prefixes move between slots) and the peer refreshes some of
    its paths: the sweep still ends with what one sweep at the end gives."""
    rnd = random.Random(seed)
    ops = []
    for i in range(120):
        kind = rnd.choice(("add", "add", "withdraw", "refresh"))
        pfx = ["11.%d.%d.0/24" % (rnd.randrange(40), rnd.randrange(256)) for _ in range(rnd.randrange(1, 300))]
        if kind == "refresh":
            pfx = rnd.sample(["10.%d.%d.0/24" % (j >> 8, j & 255) for j in range(400)], 5)
        ops.append((kind, pfx, rnd.choice((2, 3))))
    results = []
    for sliced in (True, False):
        table, r, space = build(rib_impl, seed)
        aids = [table.intern(mkattrs(path=(65002, k))) for k in range(3)]
        r.mark_stale(1)

        def apply(i, r=r, table=table, aids=aids):
            if i >= len(ops):
                return
            kind, pfx, peer_id = ops[i]
            if kind == "add":
                r.update(peer_id, pk(*pfx), False, aids[i % 3])
            elif kind == "withdraw":
                r.withdraw(peer_id, pk(*pfx))
            else:
                r.update(1, pk(*[(1, p) for p in pfx], addpath=True), True, aids[0])

        if sliced:
            sweep_in_slices(r, 1, 13, apply)
            for i in range(len(ops)):
                apply(i)  # what is left after the sweep ended: applied again, idempotent
        else:
            for i in range(len(ops)):
                apply(i)
            r.sweep_stale(1)
        assert r.peer_stale_count(1) == 0
        for aid in aids:
            table.release(aid)
        keys = sorted(set(space) | {p for _k, pfx, _p in ops for p in pfx})
        results.append((state(r, keys), r.path_count(), r.peer_path_count(1), refs(table)))
    assert results[0] == results[1]


def test_sweep_keeps_fresh_paths(rib_impl):
    table = AttrTable()
    r = rib_impl.Rib(1, table)
    for pid, (pas, rid, address) in PEERS.items():
        r.add_peer(pid, pas, 65000, rid, address)
    old = table.intern(mkattrs(path=(65001,)))
    new = table.intern(mkattrs(path=(65001, 9)))
    other = table.intern(mkattrs(path=(65002, 1, 2)))
    r.update(1, pk((1, "10.0.0.0/24"), (2, "10.0.0.0/24"), (1, "10.0.1.0/24"), (1, "10.0.2.0/24"), addpath=True),
             True, old)
    r.update(2, pk("10.0.2.0/24"), False, other)
    assert r.mark_stale(1) == 4 and r.peer_stale_count(1) == 4
    # The peer is back: path id 2 of 10.0.0.0/24 comes again (fresh).
    r.update(1, pk((2, "10.0.0.0/24"), addpath=True), True, new)
    assert r.peer_stale_count(1) == 3
    seen = []

    def refresh_later(i):
        # After the first slice: 10.0.2.0/24 comes again, 10.0.3.0/24 is new.
        if i == 0:
            seen.append(r.peer_stale_count(1))
            r.update(1, pk((1, "10.0.2.0/24"), (1, "10.0.3.0/24"), addpath=True), True, new)

    parts = sweep_in_slices(r, 1, 1, refresh_later)
    wd, ann = changes(parts)
    assert r.paths("10.0.0.0/24") == [(1, 2, new, 0)]
    assert "10.0.1.0/24" in wd and "10.0.1.0/24" not in r
    assert ("10.0.0.0/24", (1, new)) in ann  # path id 1 (stale) was the best
    assert r.paths("10.0.2.0/24") == [(1, 1, new, 0), (2, 0, other, 0)]
    assert r.paths("10.0.3.0/24") == [(1, 1, new, 0)] and r.peer_path_count(1) == 3
    assert r.peer_stale_count(1) == 0 and seen[0] > 0  # the peer came back mid-sweep
    for a in (old, new, other):
        table.release(a)
    assert old not in table


def test_stale_count(rib_impl):
    table = AttrTable()
    r = rib_impl.Rib(1, table)
    r.add_peer(1, 65001, 65000, "1.1.1.1", "10.0.0.1")
    a = table.intern(mkattrs(path=(65001,)))
    b = table.intern(mkattrs(path=(65001, 2)))
    r.update(1, pk("10.0.0.0/24", "10.0.1.0/24", "10.0.2.0/24", "10.0.3.0/24"), False, a)
    assert r.peer_stale_count(1) == 0
    assert r.mark_stale(1) == 4 and r.peer_stale_count(1) == 4
    assert r.mark_stale(1) == 4 and r.peer_stale_count(1) == 4  # marked again: counted once
    r.update(1, pk("10.0.0.0/24"), False, a)  # the same route again
    r.update(1, pk("10.0.1.0/24"), False, b)  # a new route for the prefix
    r.update(1, pk("10.0.4.0/24"), False, b)  # a new prefix
    assert r.peer_stale_count(1) == 2
    r.withdraw(1, pk("10.0.2.0/24"))
    assert r.peer_stale_count(1) == 1
    r.drop_peer(1)
    assert r.peer_stale_count(1) == 0
    r.update(1, pk("10.0.0.0/24"), False, a)
    r.mark_stale(1)
    r.remove_peer(1)
    r.add_peer(1, 65001, 65000, "1.1.1.1", "10.0.0.1")
    assert r.peer_stale_count(1) == 0
    with pytest.raises(KeyError):
        r.peer_stale_count(2)


@pytest.mark.parametrize("seed", range(4))
def test_stale_count_follows_random_operations(rib_impl, seed):
    """peer_stale_count equals the stale paths held, counted one by one,
    after every operation of a random sequence."""
    rnd = random.Random(seed)
    table, r, space = build(rib_impl, seed, n=60)
    aids = [table.intern(mkattrs(path=(65001, k))) for k in range(3)]
    start = {1: 0, 2: 0}
    for _ in range(150):
        peer_id = rnd.choice((1, 2))
        op = rnd.randrange(7)
        pfx = rnd.sample(space, 5)
        if op == 0:
            r.mark_stale(peer_id)
        elif op == 1:
            r.update(peer_id, pk(*[(rnd.randrange(3), p) for p in pfx], addpath=True), True, rnd.choice(aids))
        elif op == 2:
            r.withdraw(peer_id, pk(*[(rnd.randrange(3), p) for p in pfx], addpath=True), True)
        elif op == 3:
            _cs, nxt = r.sweep_stale_slice(peer_id, start[peer_id], rnd.randrange(1, 40))
            start[peer_id] = nxt or 0
        elif op == 4:
            r.sweep_stale(peer_id)
        elif op == 5 and rnd.random() < 0.2:
            r.drop_peer(peer_id)
        for q in (1, 2):
            held = sum(1 for p in space if p in r for x in r.paths(p) if x[0] == q and x[3])
            assert r.peer_stale_count(q) == held
    for aid in aids:
        table.release(aid)


def test_slice_arguments(rib_impl):
    table, r, _ = build(rib_impl, 4, n=20)
    with pytest.raises(KeyError):
        r.sweep_stale_slice(9, 0, 10)
    for start, slots in ((-1, 10), (0, 0), (0, -1), (1.5, 10), (0, None)):
        with pytest.raises(ValueError):
            r.sweep_stale_slice(1, start, slots)
    n = r.path_count()
    # Nothing marked: nothing goes; past the end: one pass done.
    assert not r.sweep_stale_slice(1, 0, 1000)[0] and r.path_count() == n
    r.mark_stale(1)
    assert r.sweep_stale_slice(1, 10 ** 9, 10) == (EMPTY, None)
    assert r.path_count() == n


# ---------------------------------------------------------------- daemon level


def prefixes(n, first=16):
    return ["%d.%d.%d.0/24" % (first + (i >> 16), (i >> 8) & 255, i & 255) for i in range(n)]


class Ticks:
    """A callback asking to run every ``period`` seconds: the largest gap
    between two runs (how long the loop was held), and what ``probe()``
    returned at each run."""

    def __init__(self, loop, probe, period=0.001):
        self.loop, self.probe, self.period = loop, probe, period
        self.last = loop.time()
        self.worst = 0.0
        self.seen = []
        self.handle = loop.call_later(period, self.tick)

    def tick(self):
        now = self.loop.time()
        self.worst = max(self.worst, now - self.last)
        self.last = now
        self.seen.append(self.probe())
        self.handle = self.loop.call_later(self.period, self.tick)

    def stop(self):
        self.handle.cancel()
        return self.worst


# B and C are sent a few of A's routes only (policy), so what the loop does
# while A's routes go is the daemon's work, not the library peers'.
FEW = """
[[defined-sets.prefix-sets]]
name = "few"
prefixes = ["16.0.0.0/12 le 24"]

[[policies]]
name = "few"
[[policies.statements]]
name = "few"
conditions = { prefix-set = "few" }
actions = { result = "accept" }
"""
FEW_COUNT = 4096  # prefixes(n) inside 16.0.0.0/12 when n >= 4096


async def drop_full_table(n, overlap):
    """A (n routes) and B (the first ``overlap`` of them, a longer AS path)
    peer with the daemon, C receives; A goes away.  Returns a dict: the
    largest loop gap while its routes went, seconds until C had every
    change, A's path counts seen by a periodic callback meanwhile, C's
    routes after and the withdrawals C received."""
    a_addr, b_addr, c_addr = addr(), addr(), addr()
    few = {"export-policy": ["few"], "default-export": "reject"}
    dut = DUT(extra=FEW, neighbors=[neighbor_toml(a_addr, 65001), neighbor_toml(b_addr, 65002, **few),
                                    neighbor_toml(c_addr, 65003, **few)])
    d = await dut.start()
    a, na = await peer(dut, 65001, a_addr)
    b, nb = await peer(dut, 65002, b_addr)
    c, nc = await peer(dut, 65003, c_addr)
    try:
        for x in (na, nb, nc):
            await x.wait_established(5)
        table = prefixes(n)
        b.announce(table[:overlap], as_path=[65200, 65201])
        a.announce(table, as_path=[65100])
        rib = d.ribs[(1, 1)]
        pid = d.peers.get(a_addr).pid
        await until(lambda: rib.peer_path_count(pid) == n and nc.received_count == FEW_COUNT, timeout=60,
                    what="A's table in")
        await until(lambda: d.exporter.queue.idle, what="export idle")
        before = nc.counters.received.withdraw_prefix
        loop = asyncio.get_running_loop()
        ticks = Ticks(loop, lambda: rib.peer_path_count(pid))
        t0 = loop.time()
        await a.stop()
        # C holds FEW_COUNT of A's routes (its export policy), B's path
        # replaces the first ``overlap``: the rest is all C is withdrawn.
        await until(lambda: nc.counters.received.withdraw_prefix - before >= FEW_COUNT - overlap
                    and rib.peer_path_count(pid) == 0 and d.exporter.queue.idle, timeout=60,
                    what="A's routes withdrawn at C")
        took = loop.time() - t0
        await asyncio.sleep(0.2)  # nothing more comes
        worst = ticks.stop()
        return {"worst": worst, "took": took, "seen": ticks.seen, "got": nc.received(),
                "withdrawn": nc.counters.received.withdraw_prefix - before, "table": table,
                "up": nb.established and nc.established}
    finally:
        for s in (a, b, c):
            await s.stop()
        await dut.stop()


def test_full_table_down_keeps_the_loop_and_withdraws_exactly(run):
    n, overlap = 200_000, 1000

    async def main():
        r = await drop_full_table(n, overlap)
        # The loop ran while A's routes went: a periodic callback saw part
        # of them gone (removed in one callback before, fastbgp issue 12).
        assert any(0 < k < n for k in r["seen"]), "A's routes went in one callback"
        # A generous bound (wall clock on a shared machine): measured
        # ~0.03 s here; the slices are ~1-4 ms each (README "Operating limits").
        assert r["worst"] < 0.25, "the loop was held %.3f s while %d routes went" % (r["worst"], n)
        # C: one withdrawal for each prefix only A had among those C was
        # sent (withdrawals are filtered by what C's update group holds,
        # fastbgp.rib.export: not the 199,000 others), B's path for the
        # rest, nothing else.
        assert r["withdrawn"] == FEW_COUNT - overlap
        assert set(r["got"]) == set(r["table"][:overlap])
        assert all(x.as_path == [65000, 65002, 65200, 65201] for x in r["got"].values())
        assert r["up"]

    run(main(), timeout=120)


def hold(gate):
    """Export work that keeps the exporter's queue until ``gate`` is set, as
    a big dump to another peer would: the work queued behind it waits."""
    while not gate.is_set():
        yield


def test_peer_back_mid_sweep_keeps_its_fresh_routes(run):
    n = 20_000

    async def main():
        a_addr, c_addr = addr(), addr()
        dut = DUT(neighbors=[neighbor_toml(a_addr, 65001), neighbor_toml(c_addr, 65003)])
        d = await dut.start()
        d.peers.sweep_slice = 512
        a, na = await peer(dut, 65001, a_addr)
        c, nc = await peer(dut, 65003, c_addr)
        a2 = None
        try:
            await na.wait_established(5)
            await nc.wait_established(5)
            table = prefixes(n)
            a.announce(table, as_path=[65100])
            await until(lambda: nc.received_count == n, timeout=30, what="C has A's table")
            await until(lambda: d.exporter.queue.idle, what="export idle")
            pid = d.peers.get(a_addr).pid
            rib = d.ribs[(1, 1)]
            # The sweep's work list is taken when A goes; its slices wait
            # behind other export work.
            gate = asyncio.Event()
            d.exporter.queue.submit(hold(gate), heavy=True)
            await a.stop()
            await until(lambda: d.peers.sweeping(pid), what="sweep queued")
            # A is back (same router id) and sends the last 1000 prefixes
            # again with a new path, plus a new prefix.
            a2 = Speaker(65001, a_addr.replace("127.", "11.", 1))
            again = table[-1000:]
            a2.announce(again + ["24.0.0.0/24"], as_path=[65100, 65101])
            await a2.start()
            na2 = a2.add_neighbor(NeighborConfig(address=dut.addr, peer_as=65000, port=dut.port,
                                                 local_address=a_addr, families=["ipv4-unicast"],
                                                 idle_hold_time=0.1, connect_retry=1.0))
            await na2.wait_established(5)
            await until(lambda: rib.peer_path_count(pid) == n + 1 and rib.paths("24.0.0.0/24"), timeout=10,
                        what="A's fresh routes in")
            assert d.peers.sweeping(pid) and rib.paths(again[0])[0][3] == 0 and rib.paths(table[0])[0][3] == 1
            gate.set()
            await until(lambda: not d.peers.sweeping(pid) and d.exporter.queue.idle, timeout=30, what="sweep end")
            want = set(again) | {"24.0.0.0/24"}
            assert rib.peer_path_count(pid) == len(want) and len(rib) == len(want)
            assert all(rib.paths(p) == [(pid, 0, rib.paths(p)[0][2], 0)] for p in want)  # fresh, not stale
            await until(lambda: nc.received_count == len(want), timeout=30, what="C has A's fresh routes only")
            await asyncio.sleep(0.2)
            got = nc.received()
            assert set(got) == want and all(r.as_path == [65000, 65001, 65100, 65101] for r in got.values())
        finally:
            for s in (a, c) + ((a2,) if a2 else ()):
                await s.stop()
            await dut.stop()

    run(main(), timeout=120)


def test_addpath_members_and_a_joiner_mid_sweep(run):
    """ADD-PATH members (every path; best 1) get exactly A's paths withdrawn;
    one joining while A's routes go gets none of them."""
    n, overlap = 3000, 1000

    async def main():
        a_addr, b_addr, d_addr, e_addr, f_addr = addr(), addr(), addr(), addr(), addr()
        every = {"add-path": {"send": ["ipv4-unicast"], "send-max": 0}}
        dut = DUT(neighbors=[neighbor_toml(a_addr, 65001), neighbor_toml(b_addr, 65002),
                             neighbor_toml(d_addr, 65004, **every), neighbor_toml(e_addr, 65005, **every),
                             neighbor_toml(f_addr, 65006, **{"add-path": {"send": ["ipv4-unicast"], "send-max": 1}})])
        d = await dut.start()
        d.peers.sweep_slice = 64
        a, na = await peer(dut, 65001, a_addr)
        b, nb = await peer(dut, 65002, b_addr)
        dd, nd = await peer(dut, 65004, d_addr, addpath_receive=["ipv4-unicast"])
        ff, nf = await peer(dut, 65006, f_addr, addpath_receive=["ipv4-unicast"])
        ee = None
        try:
            for x in (na, nb, nd, nf):
                await x.wait_established(5)
            table = prefixes(n)
            b.announce(table[:overlap], as_path=[65200, 65201])
            a.announce(table, as_path=[65100])
            await until(lambda: len(nd.received_paths()) == n + overlap and len(nf.received_paths()) == n,
                        timeout=20, what="every path at D, the best at F")
            await until(lambda: d.exporter.queue.idle, what="export idle")
            pid = d.peers.get(a_addr).pid
            gate = asyncio.Event()
            d.exporter.queue.submit(hold(gate), heavy=True)
            await a.stop()
            await until(lambda: d.peers.sweeping(pid), what="sweep queued")
            ee, ne = await peer(dut, 65005, e_addr, addpath_receive=["ipv4-unicast"])
            await ne.wait_established(5)
            gate.set()
            want = {p: [65000, 65002, 65200, 65201] for p in table[:overlap]}
            for x in (nd, ne, nf):
                await until(lambda x=x: {str(p): r.as_path for (p, _i), r in x.received_paths().items()} == want,
                            timeout=20, what="B's paths only")
            await asyncio.sleep(0.2)
            for x in (nd, ne, nf):
                assert len(x.received_paths()) == overlap
        finally:
            for s in (a, b, dd, ff) + ((ee,) if ee else ()):
                await s.stop()
            await dut.stop()

    run(main(), timeout=60)


def test_pre_policy_copy_goes_in_slices(run):
    """A peer without ROUTE-REFRESH: the copy of what it sent (kept to
    re-run import policy) goes in slices too, and holds only what the
    next session sends.  Its import policy rejects everything, so the copy
    is all in ``pre_ribs`` (fastbgp.daemon.prepolicy keeps there what the
    post-policy RIB cannot give back)."""
    n = 20000

    async def main():
        a_addr = addr()
        dut = DUT(neighbors=[neighbor_toml(a_addr, 65001, **{"default-import": "reject"})])
        d = await dut.start()
        d.peers.sweep_slice = 2  # with nothing to export, slices are quick: many of them
        a, na = await peer(dut, 65001, a_addr, route_refresh=False)
        a2 = None
        try:
            await na.wait_established(5)
            table = prefixes(n)
            a.announce(table, as_path=[65100])
            rib = d.ribs[(1, 1)]
            pid = d.peers.get(a_addr).pid
            view = d.importer.prepolicy
            await until(lambda: (1, 1) in d.importer.pre_ribs and view.count(pid, (1, 1)) == n, what="A's table in")
            pre = d.importer.pre_ribs[(1, 1)]
            assert pre.peer_path_count(pid) == n and rib.peer_path_count(pid) == 0
            loop = asyncio.get_running_loop()
            ticks = Ticks(loop, lambda: pre.peer_path_count(pid))
            await a.stop()
            await until(lambda: not d.peers.sweeping(pid) and d.exporter.queue.idle, what="sweep end")
            ticks.stop()
            assert pre.peer_path_count(pid) == 0 and view.count(pid, (1, 1)) == 0 and len(rib) == 0
            assert any(0 < k < n for k in ticks.seen), "the pre-policy copy went in one callback: %r" % sorted(set(ticks.seen))[:20]
            a2, na2 = await peer(dut, 65001, a_addr, route_refresh=False)
            a2.announce(table[:10], as_path=[65100])
            await na2.wait_established(5)
            await until(lambda: pre.has_peer(pid) and pre.peer_path_count(pid) == 10, what="A's routes again")
            assert view.count(pid, (1, 1)) == 10 and pre.peer_stale_count(pid) == 0
        finally:
            for s in (a,) + ((a2,) if a2 else ()):
                await s.stop()
            await dut.stop()

    run(main(), timeout=60)


def test_dynamic_neighbor_stays_until_its_routes_went(run):
    """A dynamic neighbour is removed (its peer id freed) only once the
    sweep of its routes ended: the id cannot go to another neighbour while
    its stale paths are still in the RIB."""

    async def main():
        dyn = addr()
        extra = """
[[peer-groups]]
name = "edge"
peer-as = 65020
default-import = "accept"
default-export = "accept"

[[dynamic-neighbors]]
prefix = "%s/32"
peer-group = "edge"
""" % dyn
        dut = DUT(extra=extra)
        d = await dut.start()
        s, n = await peer(dut, 65020, dyn)
        try:
            await n.wait_established(5)
            s.announce(prefixes(3000))
            rib = d.ribs[(1, 1)]
            await until(lambda: len(rib) == 3000, what="routes in")
            await until(lambda: d.exporter.queue.idle, what="export idle")
            pid = d.peers.get(dyn).pid
            gate = asyncio.Event()
            d.exporter.queue.submit(hold(gate), heavy=True)
            await s.stop()
            await until(lambda: d.neighbor(dyn).state != "established", what="session down")
            await asyncio.sleep(0.2)
            assert [x.address for x in d.neighbors()] == [dyn] and d.peers.sweeping(pid)
            assert rib.peer_stale_count(pid) == 3000
            gate.set()
            await until(lambda: d.neighbors() == [], what="dynamic neighbour removed")
            assert len(rib) == 0 and not d.peers.sweeping(pid)
        finally:
            await s.stop()
            await dut.stop()

    run(main(), timeout=60)
