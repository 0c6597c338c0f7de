"""libFuzzer driver (atheris) for the targets of tests/fuzz/harnesses.py.

    python -m tests.fuzz.run HARNESS [libFuzzer options] [corpus folders]

HARNESS is ``codec`` or ``mrt``.  Without a corpus folder a working one is
made under $TMPDIR (fastbgp-fuzz-HARNESS/) and seeded from small real files
of the shared corpora plus the kept crashers; without -artifact_prefix a
crashing input is written to tests/fuzz/crashers/HARNESS/ so that
tests/test_fuzz.py replays it from then on.  Examples:

    python -m tests.fuzz.run codec -max_total_time=3600
    python -m tests.fuzz.run mrt -runs=20000 -seed=1

Coverage comes from the instrumented pure-Python code (the codec twin, the
MRT reader); the compiled codec runs on every input beside it and must agree.
"""

import hashlib
import pathlib
import sys
import tempfile

import atheris

with atheris.instrument_imports(include=["fastbgp"]):
    from tests.fuzz import harnesses

from tests.fuzz import seeds

# Longest input libFuzzer generates, per target (a UPDATE may be 65535
# octets with RFC 8654, but the interesting structure fits in far less).
MAX_LEN = {"codec": 4200, "mrt": 20000}


def _usage():
    sys.exit("usage: python -m tests.fuzz.run {%s} [libFuzzer options] [corpus folders]" % ",".join(harnesses.HARNESSES))


def prepare(harness, args):
    """The libFuzzer argument list: defaults added where ``args`` has none."""
    options = [a for a in args if a.startswith("-")]
    folders = [a for a in args if not a.startswith("-")]
    if not any(a.startswith("-artifact_prefix=") for a in options):
        out = seeds.CRASHERS / harness
        out.mkdir(parents=True, exist_ok=True)
        options.append("-artifact_prefix=%s/" % out)
    if not any(a.startswith("-max_len=") for a in options):
        options.append("-max_len=%d" % MAX_LEN[harness])
    if not folders:
        work = pathlib.Path(tempfile.gettempdir()) / ("fastbgp-fuzz-" + harness)
        work.mkdir(exist_ok=True)
        for data in seeds.seeds(harness):
            (work / hashlib.sha1(data).hexdigest()).write_bytes(data)
        folders.append(str(work))
    return options + folders


def main(argv):
    if len(argv) < 2 or argv[1] not in harnesses.HARNESSES:
        _usage()
    harness = argv[1]
    atheris.Setup([argv[0]] + prepare(harness, argv[2:]), harnesses.HARNESSES[harness])
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
