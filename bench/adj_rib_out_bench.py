#!/usr/bin/env python
"""Cost of the compact Adj-RIB-Out (``Rib.held``, fastbgp.rib.export):
in-process, on the compiled RIB, one eBGP update group (export accept).

* dump: a full table of N IPv4 /24s (2,000 attribute sets from one peer)
  exported to the group as a join dump (``Rib.dump_best``, attribute ids
  resolved, ``UpdateGroup.process`` on the slices the exporter cuts) --
  untracked, then tracked (one ``mark`` per attribute group and slice);
* down: the peer's table leaves the Loc-RIB (``Rib.drop_peer``'s
  ChangeSet) and is encoded for the group -- untracked (N withdrawals),
  tracked while the group holds everything (N withdrawals, filtered), and
  tracked while it holds 100 prefixes (100 withdrawals);
* memory: octets of the HeldSet per prefix held (none while the prefix is
  in the Loc-RIB: its bits are in the RIB's slot);
* left: the peer's table leaves the Loc-RIB while the group holds it
  (``Rib.drop_peer`` on a tracked RIB: every prefix's bits move from its
  slot to the HeldSet's own table), seconds against untracked and octets
  per prefix of that table;
* ids: what remembering the exported attribute set sent (to tell an
  unchanged announcement, fastbgp.rib.export "What remains superfluous")
  would cost -- as an id of B bits per prefix kept in the same HeldSet (2B
  bit planes, a plane and its complement per id bit: exact, public API
  only): writing the ids of a full dump, checking a full table of
  re-announcements against them, octets per prefix; and as a Python dict
  (prefix -> id), octets per prefix (tracemalloc).

Each round rebuilds nothing but the group; the figures are medians over
the rounds, the ratios taken within this run.

    python bench/adj_rib_out_bench.py             # 1,000,000 prefixes, 5 rounds
    python bench/adj_rib_out_bench.py 200000 3
"""

import statistics
import sys
import time
import tracemalloc

from fastbgp.daemon.exporter import slices
from fastbgp.rib import IMPLEMENTATION, AttrTable, Rib
from fastbgp.rib.export import EBGP, Delta, Source, UpdateGroup, source_tag, tag_source
from fastbgp.rib.policy import PolicyContext, PolicyEngine
from fastbgp.wire import codec, messages
from fastbgp.wire.constants import IPV4_UNICAST

SETS = 2000
SRC, MEMBER = 1, 2


def attrs(i):
    return messages.encode_attributes([
        messages.Origin(value=0),
        messages.AsPath(segments=[messages.Segment(type=2, asns=[65001, 64512 + i])]),
        messages.NextHop(address="192.0.2.1")])


def build(n):
    table = AttrTable()
    rib = Rib(1, table)
    rib.add_peer(SRC, 65001, 65000, "192.0.2.1", "192.0.2.1")
    per = max(n // SETS, 1)
    k = 0
    for s in range(SETS):
        nlri = bytearray()
        for _ in range(per):
            if k >= n:
                break
            nlri += bytes([24]) + ((1 << 24) + k * 256).to_bytes(4, "big")[:3]
            k += 1
        if nlri:
            rib.update(SRC, bytes(nlri), attr_id=table.intern(attrs(s), source_tag(SRC)))
    return table, rib


def group():
    engine = PolicyEngine({})
    chain = engine.chain([], "export", "accept")
    g = UpdateGroup(("bench",), IPV4_UNICAST, codec.Context(as4=True), engine, chain,
                    PolicyContext("192.0.2.9", 65009, 65000), EBGP, False, 65000, bytes((192, 0, 2, 254)), None)
    g.members[MEMBER] = None
    return g


def dump_delta(table, rib):
    items = []
    for aid, packed in rib.dump_best():
        pid, a, nh = tag_source(table, aid)
        items.append((pid, a, nh, packed))
    return Delta(IPV4_UNICAST, items, b"", dump=True)


def export_dump(g, table, rib, sources):
    """The exporter's join dump of the whole table to ``g``: the RIB's
    dump, attribute ids resolved, encoded slice by slice."""
    t0 = time.perf_counter()
    msgs = 0
    for part in slices(dump_delta(table, rib)):
        out = g.process(part, sources, members={MEMBER})
        msgs += len(out.common)
    return time.perf_counter() - t0, msgs


def export_down(g, delta, sources):
    t0 = time.perf_counter()
    out = g.process(delta, sources)
    return time.perf_counter() - t0, out.common


def ids_cost(table, rib, sources, bits, groups=1):
    """(write s, check s, octets per prefix) of B-bit exported-attribute ids
    in bit planes of ``rib.held`` for ``groups`` tracked groups holding the
    table (times for the first group)."""
    held = rib.held
    mem0 = held.memory_usage()
    gs = []
    for _ in range(groups):
        g = group()
        g.attach_held(held)
        export_dump(g, table, rib, sources)
        gs.append((g, [(held.new_group(), held.new_group()) for _ in range(bits)]))
    items = dump_delta(table, rib).announced
    ids = {}
    times = []
    for g, planes in gs:
        t0 = time.perf_counter()
        for _pid, a, _nh, packed in items:
            k = ids.setdefault(a, len(ids))
            for j, (one, zero) in enumerate(planes):
                on, off = (one, zero) if k >> j & 1 else (zero, one)
                held.mark(on, packed)
                held.filter(off, packed, True)
        times.append(time.perf_counter() - t0)
    mem = held.memory_usage() - mem0
    g, planes = gs[0]
    t0 = time.perf_counter()
    for _pid, a, _nh, packed in items:
        k = ids[a]
        same = held.filter(g.held_index, packed)
        for j, (one, zero) in enumerate(planes):
            same = held.filter(one if k >> j & 1 else zero, same)
        assert same == packed
    t_check = time.perf_counter() - t0
    n = len(rib)
    for g, planes in gs:
        for one, zero in planes:
            held.free_group(one)
            held.free_group(zero)
        g.release_held()
    return times[0], t_check, mem / n


def dict_cost(n):
    """Octets per prefix of a Python dict packed prefix -> small id."""
    tracemalloc.start()
    d = {bytes([24]) + ((1 << 24) + k * 256).to_bytes(4, "big")[:3]: k % SETS for k in range(n)}
    size = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return size / len(d)


def left_cost(n, sources):
    """(drop_peer seconds untracked, tracked, octets per prefix of the
    HeldSet's own table) when a group that holds the whole table loses it:
    the bits of a prefix in the Loc-RIB live in its RIB slot and move to the
    HeldSet's own table when it leaves, until its withdrawal is sent."""
    _t, rib = build(n)
    t0 = time.perf_counter()
    rib.drop_peer(SRC)
    off = time.perf_counter() - t0
    table, rib = build(n)
    g = group()
    g.attach_held(rib.held)
    export_dump(g, table, rib, sources)
    assert rib.held.count(g.held_index) == n
    t0 = time.perf_counter()
    rib.drop_peer(SRC)
    on = time.perf_counter() - t0
    assert len(rib) == 0 and len(rib.held) == n
    return off, on, rib.held.memory_usage() / n


def main(n=1_000_000, rounds=5):
    table, rib = build(n)
    sources = {SRC: Source(SRC, EBGP, peer_as=65001, router_id=1)}
    # The peer's table gone, as a peer down would export it: the ChangeSet
    # of drop_peer on a copy of the RIB (the held set stays in ``rib``).
    _t2, copy = build(n)
    down = Delta.from_changeset(IPV4_UNICAST, copy.drop_peer(SRC), _t2)
    few = b"".join(bytes([24]) + ((1 << 24) + k * 256).to_bytes(4, "big")[:3] for k in range(100))
    res = {k: [] for k in ("dump_off", "dump_on", "down_off", "down_on", "down_few")}
    mem = None
    for _ in range(rounds):
        g = group()
        export_dump(g, table, rib, sources)  # the export cache warm, as in a running daemon
        t, m_off = export_dump(g, table, rib, sources)
        res["dump_off"].append(t)
        t, _c = export_down(g, down, sources)
        res["down_off"].append(t)
        g.attach_held(rib.held)
        t, m_on = export_dump(g, table, rib, sources)
        res["dump_on"].append(t)
        assert m_on == m_off and rib.held.count(g.held_index) == n
        mem = rib.held.memory_usage() / len(rib.held)
        t, common = export_down(g, down, sources)
        res["down_on"].append(t)
        assert len(rib.held) == 0 and sum(len(x) for x in common) > 4 * n
        rib.held.mark(g.held_index, few)
        t, common = export_down(g, down, sources)
        res["down_few"].append(t)
        assert len(common) == 1 and len(rib.held) == 0
        g.release_held()
    med = {k: statistics.median(v) for k, v in res.items()}
    print("implementation %s, %d prefixes, %d attribute sets, median of %d rounds" % (IMPLEMENTATION, n, SETS,
                                                                                     rounds))
    print("dump to one group:    untracked %.3f s  tracked %.3f s  ratio %.3f" % (
        med["dump_off"], med["dump_on"], med["dump_on"] / med["dump_off"]))
    print("peer down, %d wd:  untracked %.4f s  tracked %.4f s  (+%.0f ns per prefix)" % (
        n, med["down_off"], med["down_on"], (med["down_on"] - med["down_off"]) * 1e9 / n))
    print("peer down, group held 100: %.4f s (+%.0f ns per prefix looked up; 100 withdrawals encoded)" % (
        med["down_few"], (med["down_few"] - med["down_off"]) * 1e9 / n))
    print("held set: %.1f octets per prefix held in the Loc-RIB (its bits in the RIB's slots; %d held)" % (mem, n))
    bits = max(SETS - 1, 1).bit_length()
    runs = [ids_cost(table, rib, sources, bits) for _ in range(max(rounds // 2, 1))]
    t_write = statistics.median(r[0] for r in runs)
    t_check = statistics.median(r[1] for r in runs)
    print("ids of the attributes sent, %d bits as %d planes: write %.3f s (%.2fx the tracked dump), check %.3f s, "
          "+%.1f octets per prefix (bits and ids)" % (bits, 2 * bits, t_write, t_write / med["dump_on"], t_check, runs[-1][2]))
    print("  the same for two groups (%d indexes): +%.1f octets per prefix" % (
        2 + 4 * bits, ids_cost(table, rib, sources, bits, groups=2)[2]))
    print("ids in a Python dict: %.1f octets per prefix" % dict_cost(n))
    left = [left_cost(n, sources) for _ in range(min(rounds, 3))]
    off, on = statistics.median(r[0] for r in left), statistics.median(r[1] for r in left)
    print("table left the Loc-RIB while held: drop_peer untracked %.3f s  tracked %.3f s  ratio %.2f; "
          "the held set's own table then %.1f octets per prefix held" % (off, on, on / off, left[-1][2]))
    return med


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:]]
    main(*args)
