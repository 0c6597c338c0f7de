"""RIB throughput and memory on a full IPv4 table, compiled RIB against its
pure-Python twin (ids ``cython`` / ``python``), measured in this one run.

Cases (1,000,000 IPv4 /24s in 1,000 attribute groups, one update() per
group, with the intern/release a session does around it):

* insert-peer1   -- the table from a first peer: every prefix new;
* insert-peer2   -- the same prefixes from a second peer with a shorter
                    AS_PATH: every best path changes;
* dump-best      -- the Loc-RIB grouped by attributes for a new peer;
* withdraw-all   -- both peers withdraw everything (2M paths removed).

Each round's result is checked (prefix counts of the change sets), so a fast
wrong RIB cannot pass.  ``test_rib_memory`` builds the table in a fresh
interpreter and reports RSS bytes per path (1 peer = 1M paths, 3 peers =
3M paths); its timing is not the point.

Run:  python -m pytest bench/test_rib_bench.py --benchmark-only

The summary is printed by a small plugin this module registers, so
bench/conftest.py needs no change.
"""

import json
import subprocess
import sys

import pytest

from fastbgp.wire import as4
from fastbgp.wire import bench as workloads_mod
from fastbgp import rib as selector
from fastbgp.testing.benchmarks import benchmark_median
from fastbgp.testing.plugin import IMPLEMENTATIONS

GROUPS = 1000
PER_GROUP = 1000
TABLE = GROUPS * PER_GROUP

_rates = {}  # case -> {impl: prefixes/s}
_memory = {}  # impl -> {"one": B/path, "three": B/path}


def attrs_peer2(group):
    """Like bench.attrs_for but one AS shorter: the second peer wins
    (RFC 4271 §9.1.2.2 a) for every prefix."""
    path = [64501, 1299 + (group % 50), 200000 + group]
    out = as4.encode_attr(0x40, 1, b"\x00")
    out += as4.encode_attr(0x40, 2, as4.encode_segments([(2, path)], 4))
    out += as4.encode_attr(0x40, 3, bytes((192, 0, 2, 2)))
    return out


@pytest.fixture(scope="session")
def table_workload():
    nlri = [workloads_mod.v4_prefixes(0x01000000 + g * PER_GROUP * 256, PER_GROUP) for g in range(GROUPS)]
    return {
        "nlri": nlri,
        1: [workloads_mod.attrs_for(g) for g in range(GROUPS)],
        2: [attrs_peer2(g) for g in range(GROUPS)],
    }


def new_rib(impl):
    table = selector.AttrTable()
    r = impl.Rib(1, table)
    r.add_peer(1, 64500, 65000, "10.0.0.1", "192.0.2.1")
    r.add_peer(2, 64501, 65000, "10.0.0.2", "192.0.2.2")
    return table, r


def load_peer(table, r, peer, wl):
    """What a session does per UPDATE: intern, update, release."""
    announced = 0
    nlri = wl["nlri"]
    blocks = wl[peer]
    for g in range(GROUPS):
        aid = table.intern(blocks[g])
        announced += r.update(peer, nlri[g], False, aid).n_announced
        table.release(aid)
    return announced


def rounds_for(impl):
    # The twin takes seconds per round: one round is enough for a ratio.
    return 5 if impl.IMPLEMENTATION == "cython" else 1


def record(case, impl, prefixes, benchmark):
    median = benchmark_median(benchmark)
    if median is not None:
        _rates.setdefault(case, {})[impl.IMPLEMENTATION] = prefixes / median


def test_insert_first_peer(benchmark, rib_impl, table_workload):
    def setup():
        return new_rib(rib_impl), {}

    def run(table, r):
        n = load_peer(table, r, 1, table_workload)
        assert len(r) == TABLE and r.path_count() == TABLE
        return n

    got = benchmark.pedantic(run, setup=setup, rounds=rounds_for(rib_impl), iterations=1)
    assert got == TABLE
    record("insert-peer1", rib_impl, TABLE, benchmark)


def test_insert_second_peer(benchmark, rib_impl, table_workload):
    def setup():
        table, r = new_rib(rib_impl)
        load_peer(table, r, 1, table_workload)
        return (table, r), {}

    def run(table, r):
        n = load_peer(table, r, 2, table_workload)
        assert r.path_count() == 2 * TABLE
        return n

    got = benchmark.pedantic(run, setup=setup, rounds=rounds_for(rib_impl), iterations=1)
    assert got == TABLE  # every best path moved to peer 2
    record("insert-peer2", rib_impl, TABLE, benchmark)


def test_dump_best(benchmark, rib_impl, table_workload):
    table, r = new_rib(rib_impl)
    load_peer(table, r, 1, table_workload)
    load_peer(table, r, 2, table_workload)

    def run():
        return sum(len(packed) // 4 for _aid, packed in r.dump_best())

    got = benchmark.pedantic(run, rounds=rounds_for(rib_impl), iterations=1)
    assert got == TABLE
    record("dump-best", rib_impl, TABLE, benchmark)


def test_withdraw_all(benchmark, rib_impl, table_workload):
    def setup():
        table, r = new_rib(rib_impl)
        load_peer(table, r, 1, table_workload)
        load_peer(table, r, 2, table_workload)
        return (table, r), {}

    def run(table, r):
        withdrawn = 0
        for peer in (1, 2):
            for packed in table_workload["nlri"]:
                withdrawn += r.withdraw(peer, packed).n_withdrawn
        assert len(r) == 0 and r.path_count() == 0 and len(table) == 0
        return withdrawn

    got = benchmark.pedantic(run, setup=setup, rounds=rounds_for(rib_impl), iterations=1)
    assert got == TABLE
    record("withdraw-all", rib_impl, 2 * TABLE, benchmark)  # paths removed


# Built in a fresh interpreter so RSS is not blurred by earlier rounds'
# freed-but-kept memory.  The inputs are created before the baseline.
_MEMORY_SCRIPT = r"""
import gc, json, sys
from fastbgp import rib
from fastbgp.wire import bench, as4

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096

impl = rib.load(sys.argv[1])
G, PER = int(sys.argv[2]), int(sys.argv[3])
nlri = [bench.v4_prefixes(0x01000000 + g * PER * 256, PER) for g in range(G)]
blocks = {p: [bench.attrs_for(g + 1000 * p) for g in range(G)] for p in (1, 2, 3)}
gc.collect()
base = rss()
table = rib.AttrTable()
r = impl.Rib(1, table)
out = {}
for p in (1, 2, 3):
    r.add_peer(p, 64500 + p, 65000, "10.0.0.%d" % p, "192.0.2.%d" % p)
    for g in range(G):
        aid = table.intern(blocks[p][g])
        r.update(p, nlri[g], False, aid)
        table.release(aid)
    gc.collect()
    if p in (1, 3):
        out["one" if p == 1 else "three"] = (rss() - base) / r.path_count()
out["paths"] = r.path_count()
print(json.dumps(out))
"""


def measure_memory(impl_name, groups=GROUPS, per_group=PER_GROUP):
    """{"one": RSS bytes/path with 1 peer, "three": with 3 peers}."""
    proc = subprocess.run(
        [sys.executable, "-c", _MEMORY_SCRIPT, impl_name, str(groups), str(per_group)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(proc.stdout)


def test_rib_memory(benchmark, rib_impl):
    if not sys.platform.startswith("linux"):
        pytest.skip("RSS is read from /proc/self/statm")
    got = benchmark.pedantic(measure_memory, args=(rib_impl.IMPLEMENTATION,), rounds=1, iterations=1)
    assert got["paths"] == 3 * TABLE
    _memory[rib_impl.IMPLEMENTATION] = got
    if rib_impl.IMPLEMENTATION == "cython":
        # The design target: <= 150 bytes of RSS per (prefix, peer) path.
        assert got["one"] <= 150 and got["three"] <= 150


class _Summary:
    """Prints the RIB section after the run (a plugin registered by the
    fixture below, so no conftest change is needed)."""

    def pytest_terminal_summary(self, terminalreporter):
        if not _rates and not _memory:
            return
        tr = terminalreporter
        tr.section("fastbgp RIB: prefixes/s (median), compiled vs pure-Python twin")
        tr.write_line(workloads_mod.machine())
        tr.write_line("%s-prefix IPv4 table, %d attribute groups" % (format(TABLE, ","), GROUPS))
        tr.write_line("%-14s %14s %14s %7s %10s" % ("case", "cython", "python", "ratio", "s per 1M"))
        for case, r in sorted(_rates.items()):
            c, p = r.get("cython"), r.get("python")
            ratio = "%.0fx" % (c / p) if c and p else "-"
            per_m = "%.3f s" % (1e6 / c) if c else "-"
            tr.write_line("%-14s %14s %14s %7s %10s" % (case, "{:,.0f}".format(c) if c else "-", "{:,.0f}".format(p) if p else "-", ratio, per_m))
        for name in IMPLEMENTATIONS:
            m = _memory.get(name)
            if m:
                tr.write_line("memory %-7s RSS %.1f B/path (1 peer, %s paths), %.1f B/path (3 peers)" % (name, m["one"], format(TABLE, ","), m["three"]))


_summary = _Summary()


@pytest.fixture(scope="module", autouse=True)
def _register_summary(request):
    pm = request.config.pluginmanager
    if not pm.is_registered(_summary):
        pm.register(_summary, "fastbgp-rib-bench-summary")
    yield
