"""Time ``fastbgp mrt dump`` against Debian's ``bgpdump -m`` on the same MRT
files, in one run on one machine, output to /dev/null.

    python bench/mrt_vs_bgpdump.py                      # the two big corpus files
    python bench/mrt_vs_bgpdump.py --all                # every bgpdump test file
    python bench/mrt_vs_bgpdump.py FILE... [--repeat 5]

Each command runs ``--repeat`` times (default 3) alternately; the table shows
the median wall time of each, the CPU time (user+sys, less sensitive to a
busy machine) and the ratio bgpdump / fastbgp (above 1: fastbgp is faster).
Both include process start-up, as a user sees it (fastbgp's with byte-code
already compiled, as for an installed package).
"""

import argparse
import os
import pathlib
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from fastbgp.testing import CORPORA
from fastbgp.testing.benchmarks import mrt_dump_command
from fastbgp.wire.bench import machine

CORPUS = CORPORA / "bgpdump" / "test_data"
DEFAULT_FILES = ("bview.20020722.2337.gz", "updates.et-header.2015.gz")


# Byte-code caches as an installed package has them, even where the
# environment sets PYTHONDONTWRITEBYTECODE: kept in a private folder, filled
# by the warm-up run, so no run pays for compiling fastbgp.
ENV = dict(os.environ, PYTHONPYCACHEPREFIX=tempfile.mkdtemp(prefix="fastbgp-pyc-"))
ENV.pop("PYTHONDONTWRITEBYTECODE", None)


def run(cmd):
    """(wall seconds, cpu seconds) of one run of ``cmd``, stdout discarded."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    with open(os.devnull, "wb") as null:
        subprocess.run(cmd, stdout=null, stderr=subprocess.DEVNULL, check=True, env=ENV)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def measure(path, repeat):
    ours = mrt_dump_command(path)
    theirs = ["bgpdump", "-m", str(path)]
    run(ours)  # warm the page cache and the .pyc files
    run(theirs)
    a, b = [], []
    for _ in range(repeat):
        a.append(run(ours))
        b.append(run(theirs))
    med = lambda xs, k: statistics.median(x[k] for x in xs)  # noqa: E731
    return med(a, 0), med(a, 1), med(b, 0), med(b, 1)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="*", help="MRT files (default: %s from the corpus)" % ", ".join(DEFAULT_FILES))
    ap.add_argument("--all", action="store_true", help="every file of the bgpdump test corpus")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each command; the median is shown (default 3)")
    args = ap.parse_args(argv)
    if not shutil.which("bgpdump"):
        sys.exit("bgpdump is not installed (apt-get install -y bgpdump)")
    if args.files:
        files = [pathlib.Path(f) for f in args.files]
    elif args.all:
        files = sorted(CORPUS.iterdir())
    else:
        files = [CORPUS / f for f in DEFAULT_FILES]
    print("fastbgp mrt dump -m vs bgpdump -m, median of %d runs, output to /dev/null" % args.repeat)
    print(machine())
    print("%-36s %9s %9s %9s %9s %7s" % ("file", "fastbgp", "(cpu)", "bgpdump", "(cpu)", "ratio"))
    for f in files:
        if not f.exists():
            print("%-36s missing" % f.name)
            continue
        w1, c1, w2, c2 = measure(f, args.repeat)
        print("%-36s %8.3fs %8.3fs %8.3fs %8.3fs %6.2fx" % (f.name, w1, c1, w2, c2, w2 / w1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
