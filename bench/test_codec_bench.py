"""Codec throughput: decode and encode of the three cases of the codec issue,
on both implementations.  Correctness of each round is asserted too (the
count of prefixes seen), so a fast wrong codec cannot pass."""

import pytest

from fastbgp.wire import bench as w
from conftest import record

CASES = ("ipv4-4k", "ipv4-mixed", "ipv6-mp", "table-1m")


@pytest.mark.parametrize("case", CASES)
def test_decode(benchmark, codec, workloads, case):
    wl = workloads[case]
    if case == "table-1m":
        fn = lambda: w.decode_stream(codec, wl.stream)  # noqa: E731
    else:
        fn = lambda: w.decode_bodies(codec, wl.bodies)  # noqa: E731
    rounds = 3 if codec.IMPLEMENTATION == "python" and case == "table-1m" else None
    if rounds:
        got = benchmark.pedantic(fn, rounds=rounds, iterations=1)
    else:
        got = benchmark(fn)
    assert got == wl.prefixes
    record(case, "decode", codec, wl.prefixes, benchmark)


@pytest.mark.parametrize("case", CASES)
def test_encode(benchmark, codec, workloads, case):
    wl = workloads[case]
    fn = lambda: w.encode_groups(codec, wl.groups)  # noqa: E731
    if codec.IMPLEMENTATION == "python" and case == "table-1m":
        got = benchmark.pedantic(fn, rounds=3, iterations=1)
    else:
        got = benchmark(fn)
    assert got == wl.messages
    record(case, "encode", codec, wl.prefixes, benchmark)
