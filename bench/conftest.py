"""pytest-benchmark fixtures: every benchmark runs on the compiled codec and
on its pure-Python twin (ids ``cython`` / ``python``); the summary at the end
prints prefixes/s for both and their ratio, measured in this one run.

Run:  python -m pytest bench/ --benchmark-only
"""

import pytest

from fastbgp.wire import bench as workloads_mod
from fastbgp.wire import codec as selector

IMPLS = ("cython", "python")
_rates = {}  # (case, op) -> {impl: prefixes/s}


@pytest.fixture(params=IMPLS)
def impl(request):
    if request.param == "cython" and selector.NO_EXTENSIONS:
        pytest.skip("FASTBGP_NO_EXTENSIONS is set")
    return selector.load(request.param)


@pytest.fixture(scope="session")
def workloads():
    table_size = 1_000_000
    return {w.name: w for w in workloads_mod.workloads(selector.load("python"), table_size)}


def record(case, op, impl, prefixes, benchmark):
    stats = benchmark.stats.stats
    _rates.setdefault((case, op), {})[impl.IMPLEMENTATION] = prefixes / stats.median


def pytest_terminal_summary(terminalreporter):
    if not _rates:
        return
    tr = terminalreporter
    tr.section("fastbgp codec: prefixes/s (median), compiled vs pure-Python twin")
    tr.write_line(workloads_mod.machine())
    tr.write_line("%-12s %-7s %16s %14s %7s" % ("case", "op", "cython", "python", "ratio"))
    for (case, op), r in sorted(_rates.items()):
        c, p = r.get("cython"), r.get("python")
        ratio = "%.0fx" % (c / p) if c and p else "-"
        tr.write_line("%-12s %-7s %16s %14s %7s" % (case, op, "{:,.0f}".format(c) if c else "-", "{:,.0f}".format(p) if p else "-", ratio))
