"""pytest-benchmark fixtures: every benchmark taking ``codec`` (or
``rib_impl``, ``gen``: the fan-out fixtures of fastbgp.testing.plugin) runs
on the compiled module and on its pure-Python twin (ids ``cython`` /
``python``); the summary at the end prints prefixes/s for both and their
ratio, measured in this one run.

Run:  python -m pytest bench/ --benchmark-only
"""

import pytest

from fastbgp.wire import bench as workloads_mod
from fastbgp.wire import codec as selector
from fastbgp.testing.benchmarks import benchmark_median

pytest_plugins = ["fastbgp.testing.plugin"]

_rates = {}  # (case, op) -> {impl: prefixes/s}


@pytest.fixture(scope="session")
def workloads():
    table_size = 1_000_000
    return {w.name: w for w in workloads_mod.workloads(selector.load("python"), table_size)}


def record(case, op, impl, prefixes, benchmark):
    median = benchmark_median(benchmark)
    if median is not None:
        _rates.setdefault((case, op), {})[impl.IMPLEMENTATION] = prefixes / median


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
