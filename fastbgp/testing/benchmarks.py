"""Helpers for the benchmarks in bench/ (pytest-benchmark suites and scripts)."""

import os
import shutil
import sys


def benchmark_median(benchmark):
    """The median seconds of a pytest-benchmark run, or None when timing is
    off (--benchmark-disable runs each benchmark once, as a plain test):
    speed figures and bars apply to timed runs only."""
    stats = benchmark.stats
    return None if stats is None else stats.stats.median


def mrt_dump_command(path) -> list:
    """argv of ``fastbgp mrt dump -m PATH`` as a user runs it: the installed
    ``fastbgp`` entry point (its start-up is part of what is measured), else
    ``python -m fastbgp``."""
    exe = shutil.which("fastbgp", path=os.path.dirname(sys.executable)) or shutil.which("fastbgp")
    return ([exe] if exe else [sys.executable, "-m", "fastbgp"]) + ["mrt", "dump", "-m", str(path)]
