"""Fuzzing in the default test command: the kept crashers replayed against
both codec implementations, a hand-made case for each defect the fuzzer
found, and a short coverage-guided run of each harness (atheris, in a
subprocess, bounded in runs and time).  The long run is a documented
command: ``python -m tests.fuzz.run codec -max_total_time=3600``."""

import struct
import subprocess
import sys

import pytest

from fastbgp.mrt.reader import CorruptRecord, MrtReader
from fastbgp.mrt.records import PEER_INDEX_TABLE, TABLE_DUMP_V2
from tests.fuzz import harnesses, seeds

ROOT = seeds.CRASHERS.parent.parent.parent

CRASHERS = [(name, path) for name in harnesses.HARNESSES for path in seeds.crashers(name)]


@pytest.mark.parametrize(("harness", "path"), CRASHERS, ids=["%s/%s" % (n, p.name[:20]) for n, p in CRASHERS])
def test_crasher_replays_clean(harness, path):
    # The harness runs the compiled codec and the twin and demands the same
    # outcome from both; a crasher that fails again is a regression.
    harnesses.HARNESSES[harness](path.read_bytes())


def test_crashers_are_kept():
    assert CRASHERS, "tests/fuzz/crashers/ lost its regression inputs"


def _mrt(typ, sub, body):
    return struct.pack(">IHHI", 0, typ, sub, len(body)) + body


@pytest.mark.parametrize(
    "body",
    [
        b"\xc0\x00\x02",  # collector address cut short
        # one IPv6 peer whose BGP identifier and address are cut short
        b"\xc0\x00\x02\x01\x00\x00\x00\x01\x01\x0a\x00",
    ],
    ids=["collector", "peer-entry"],
)
def test_cut_peer_index_table_is_a_corrupt_record(codec, body):
    # Found by the mrt harness: a cut PEER_INDEX_TABLE escaped the reader
    # as ValueError from inet_ntop instead of becoming a CorruptRecord.
    import io

    records = list(MrtReader(io.BytesIO(_mrt(TABLE_DUMP_V2, PEER_INDEX_TABLE, body)), codec=codec))
    assert len(records) == 1 and isinstance(records[0], CorruptRecord), records
    assert "PEER_INDEX_TABLE" in records[0].reason


def test_cut_bgp4mp_addresses_are_a_corrupt_record(codec):
    import io

    # BGP4MP_MESSAGE_AS4, IPv6, record ends inside the peer address (RFC 6396 §4.4.3).
    body = struct.pack(">IIHH", 65001, 65002, 0, 2) + b"\x20\x01\x0d"
    records = list(MrtReader(io.BytesIO(_mrt(16, 4, body)), codec=codec))
    assert isinstance(records[0], CorruptRecord) and "overruns" in records[0].reason


@pytest.fixture
def seed_dir(request, tmp_path):
    """A corpus folder per harness: small real inputs when the shared
    corpora are present, else empty (libFuzzer starts from nothing)."""
    try:
        corpora = request.getfixturevalue("corpora")
    except pytest.skip.Exception:
        corpora = None

    def make(name):
        folder = tmp_path / ("corpus-" + name)
        folder.mkdir()
        found = seeds.seeds(name, corpora) if corpora is not None else [p.read_bytes() for p in seeds.crashers(name)]
        for i, data in enumerate(found):
            (folder / ("seed-%d" % i)).write_bytes(data)
        return folder

    return make


@pytest.mark.timeout(90)
@pytest.mark.parametrize("name", sorted(harnesses.HARNESSES))
def test_short_fuzz_run(name, seed_dir, tmp_path):
    pytest.importorskip("atheris")
    corpus = seed_dir(name)
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    cmd = [
        sys.executable, "-m", "tests.fuzz.run", name,
        "-runs=40000", "-max_total_time=6", "-seed=1", "-print_final_stats=1",
        "-artifact_prefix=%s/" % artifacts, str(corpus),
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=80)
    found = sorted(artifacts.iterdir())
    assert proc.returncode == 0 and not found, "fuzz run of %s failed (keep the input under tests/fuzz/crashers/%s/):\n%s\n%s" % (
        name, name, found, proc.stderr[-4000:],
    )  # fmt: skip
    assert "stat::number_of_executed_units" in proc.stderr
