"""fastbgp loadtest generator: prefixes per second generated, encoded into
finished UPDATEs and handed to a discarding sink, from one process.

The bar (issue 4): >= 5,000,000 prefixes/s, so the tester is never the
bottleneck of a load test.  Every round builds the table from nothing
(drawing lengths, allocating addresses, writing messages) and pushes all of
it through ``Stream.chunk`` into the sink the way a session writes it; the
prefix count is checked each round so a fast wrong generator cannot pass.

Cases:

* ipv4-24        1M IPv4 /24, 100 prefixes per attribute set
* ipv4-dfz-g1    1M IPv4, DFZ-like length mix, every prefix its own
                 attribute set (one UPDATE per prefix: the worst case)
* ipv4-dfz-g10   the same with 10 prefixes per attribute set
* ipv6-dfz       1M IPv6, DFZ-like mix, 100 per set (MP_REACH_NLRI)
* shared-10x100k one 100k table sent by 10 sessions with their own ASN and
                 next hop: one encoding, a patched copy per chunk

Run:  python -m pytest bench/test_loadtest_bench.py --benchmark-only
"""

import pytest

from fastbgp.wire import bench as workloads_mod

_gen = pytest.importorskip("fastbgp.loadtest._gen", reason="the compiled load generator is not built")

from fastbgp.loadtest import generator as G, scenario as S  # noqa: E402
from fastbgp.testing.benchmarks import benchmark_median  # noqa: E402

BAR = 5_000_000
_rates = {}

CASES = {
    "ipv4-24": dict(prefixes=1_000_000, lengths="24", per_group=100),
    "ipv4-dfz-g1": dict(prefixes=1_000_000, lengths="dfz", per_group=1),
    "ipv4-dfz-g10": dict(prefixes=1_000_000, lengths="dfz", per_group=10),
    "ipv6-dfz": dict(prefixes=1_000_000, lengths="dfz", per_group=100, family="ipv6", next_hop="2001:db8::1"),
}


def _send_all(stream, sink, asn=None, nh=None):
    prev = 0
    for b in stream.bounds():
        sink.writelines([stream.chunk(prev, b, asn, nh)])
        prev = b
    return stream.n_prefixes


def _one(table):
    plan = G.TablePlan(table)
    st = plan.stream(G.PeerInfo(0, 64512, "192.0.2.10", True), G.Encoding())
    sink = G.DiscardSink()
    n = _send_all(st, sink)
    assert sink.octets == st.octets
    return n


@pytest.mark.parametrize("case", list(CASES))
def test_generate_encode_discard(benchmark, case):
    table = S.Table(**CASES[case])
    got = benchmark.pedantic(_one, args=(table,), rounds=5, iterations=1, warmup_rounds=1)
    assert got == table.prefixes
    median = benchmark_median(benchmark)
    if median is None:
        return  # timing disabled: the correctness check above is the test
    rate = table.prefixes / median
    _rates[case] = rate
    assert rate >= BAR, "%s: %.0f prefixes/s is below the %d bar" % (case, rate, BAR)


def _shared(table, peers):
    plan = G.TablePlan(table)
    sink = G.DiscardSink()
    total = 0
    for i in range(peers):
        info = G.PeerInfo(i, 64512 + i, "192.0.2.%d" % (10 + i), True)
        st = plan.stream(info, G.Encoding())
        asn, nh = plan.patch_values(info, G.Encoding())
        total += _send_all(st, sink, asn, nh)
    return total


def test_shared_table_patched_per_session(benchmark):
    table = S.Table(prefixes=100_000, per_group=100)
    got = benchmark.pedantic(_shared, args=(table, 10), rounds=5, iterations=1, warmup_rounds=1)
    assert got == 1_000_000
    median = benchmark_median(benchmark)
    if median is None:
        return  # timing disabled: the correctness check above is the test
    rate = got / median
    _rates["shared-10x100k"] = rate
    assert rate >= BAR


class _Summary:
    def pytest_terminal_summary(self, terminalreporter):
        if not _rates:
            return
        tr = terminalreporter
        tr.section("fastbgp loadtest generator: prefixes/s into a discarding sink (median, one process)")
        tr.write_line(workloads_mod.machine())
        for case, r in _rates.items():
            tr.write_line("%-16s %16s   %5.1fx the 5M/s bar" % (case, "{:,.0f}".format(r), r / BAR))


_summary = _Summary()


@pytest.fixture(scope="module", autouse=True)
def _register_summary(request):
    pm = request.config.pluginmanager
    if not pm.is_registered(_summary):
        pm.register(_summary, "fastbgp-loadtest-bench-summary")
    yield
