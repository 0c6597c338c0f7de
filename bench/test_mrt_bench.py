"""``fastbgp mrt dump -m`` against Debian's ``bgpdump -m`` on one corpus file
(updates.et-header.2015.gz: 89,686 BGP4MP_ET records, 577,744 lines), timed
in this one run on this machine, both as whole commands with output to
/dev/null (start-up included, what a user sees).  Also the in-process dump
with each codec implementation, its output checked against bgpdump's
expected output so a fast wrong dump cannot pass.

Run:  python -m pytest bench/test_mrt_bench.py --benchmark-only

The summary (median seconds and the ratio) is printed by a small plugin
this module registers, so bench/conftest.py needs no change.  For a table
over several files see bench/mrt_vs_bgpdump.py.
"""

import gzip
import os
import shutil
import subprocess
import tempfile

import pytest

from fastbgp.wire import bench as workloads_mod
from fastbgp.mrt import dump as mrt_dump
from fastbgp.testing import CORPORA
from fastbgp.testing.benchmarks import mrt_dump_command
from fastbgp.testing.benchmarks import benchmark_median

FILE = "updates.et-header.2015.gz"
CORPUS = CORPORA / "bgpdump"
_times = {}


def _path():
    p = CORPUS / "test_data" / FILE
    if not p.exists():
        pytest.skip("shared corpora folder %s is absent (it sits beside the clone in CI)" % CORPUS)
    return p


# Byte-code caches as an installed package has them (the warm-up round
# fills them), even where the environment sets PYTHONDONTWRITEBYTECODE.
_ENV = dict(os.environ, PYTHONPYCACHEPREFIX=tempfile.mkdtemp(prefix="fastbgp-pyc-"))
_ENV.pop("PYTHONDONTWRITEBYTECODE", None)


def _run(cmd):
    with open(os.devnull, "wb") as null:
        subprocess.run(cmd, stdout=null, stderr=subprocess.DEVNULL, check=True, env=_ENV)


def _record(name, benchmark):
    median = benchmark_median(benchmark)
    if median is not None:
        _times[name] = median


def test_bgpdump(benchmark):
    path = _path()
    if shutil.which("bgpdump") is None:
        pytest.skip("bgpdump binary not installed (apt-get install -y bgpdump, see .ci/install-peers.sh)")
    benchmark.pedantic(_run, args=(["bgpdump", "-m", str(path)],), rounds=3, iterations=1, warmup_rounds=1)
    _record("bgpdump -m", benchmark)


def test_fastbgp_command(benchmark):
    path = _path()
    if shutil.which("bgpdump") is None:
        pytest.skip("bgpdump binary not installed: nothing to compare with")
    benchmark.pedantic(_run, args=(mrt_dump_command(path),), rounds=3, iterations=1, warmup_rounds=1)
    _record("fastbgp mrt dump -m", benchmark)


def test_dump_in_process(benchmark, codec):
    path = _path()
    with gzip.open(CORPUS / "test_expect" / (FILE + ".bgp.gz"), "rt") as f:
        expected = f.read()

    def dump():
        return "".join(mrt_dump.iter_text(str(path), "m", codec))

    rounds = 3 if codec.IMPLEMENTATION == "cython" else 1
    got = benchmark.pedantic(dump, rounds=rounds, iterations=1)
    assert got == expected
    _record("in-process, %s codec" % codec.IMPLEMENTATION, benchmark)


class _Summary:
    def pytest_terminal_summary(self, terminalreporter):
        if not _times:
            return
        tr = terminalreporter
        tr.section("fastbgp mrt dump vs bgpdump: %s, median seconds" % FILE)
        tr.write_line(workloads_mod.machine())
        base = _times.get("bgpdump -m")
        for name, t in _times.items():
            ratio = " (%.2fx bgpdump's speed)" % (base / t) if base and name != "bgpdump -m" else ""
            tr.write_line("%-28s %8.3f s%s" % (name, t, ratio))


_summary = _Summary()


@pytest.fixture(scope="module", autouse=True)
def _register_summary(request):
    pm = request.config.pluginmanager
    if not pm.is_registered(_summary):
        pm.register(_summary, "fastbgp-mrt-bench-summary")
    yield
