"""Helpers for the pytest-benchmark suites in bench/."""


def benchmark_median(benchmark):
    """The median seconds of a pytest-benchmark run, or None when timing is
    off (--benchmark-disable runs each benchmark once, as a plain test):
    speed figures and bars apply to timed runs only."""
    stats = benchmark.stats
    return None if stats is None else stats.stats.median
