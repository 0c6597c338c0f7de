"""Time ``fastbgp mrt dump`` against Debian's ``bgpdump -m`` on the same MRT
files, in one run on one machine, output to /dev/null.

    python bench/mrt_vs_bgpdump.py                 # corpus files above 1 MB + full-table TDv2 RIBs
    python bench/mrt_vs_bgpdump.py --all           # every bgpdump test file, and the RIBs
    python bench/mrt_vs_bgpdump.py FILE... [--repeat 5]

The default set is what issue 14 asks about: every file of
../shared/corpora above 1 MB, and two full-table TABLE_DUMP_V2 RIBs
(1,000,000 IPv4 and 200,000 IPv6 prefixes, 8 peers each) written to
/tmp by :func:`make_rib` with the project's own MRT writer the first time
(never committed).  Each command runs ``--repeat`` times (default 5)
alternately after one warm-up; the table shows the median wall time of
each, the CPU time (user+sys, less sensitive to a busy machine) and the
ratios bgpdump / fastbgp (above 1: fastbgp is faster).  Both include
process start-up, as a user sees it (fastbgp's with byte-code already
compiled, as for an installed package).  The output of both is checked
identical once per file (``--no-check`` skips it).
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


# Byte-code caches as an installed package has them, even where the
# environment sets PYTHONDONTWRITEBYTECODE: kept in a private folder, filled
# by the warm-up run, so no run pays for compiling fastbgp.
ENV = dict(os.environ, PYTHONPYCACHEPREFIX=tempfile.mkdtemp(prefix="fastbgp-pyc-"))
ENV.pop("PYTHONDONTWRITEBYTECODE", None)


def make_rib(path, afi, prefixes=None, peers=8):
    """Write a full-table TABLE_DUMP_V2 RIB to ``path`` with the project's
    own writer (fastbgp.mrt.writer): ``prefixes`` DFZ-shaped prefixes
    (default 1,000,000 IPv4, or 200,000 IPv6 /32../48), each seen by
    ``peers`` peers.  The attributes are the real ones of the 2002 bview in
    the corpus (AS1853's 112,986 routes, in file order, so neighbouring
    prefixes share blocks as in a real table), made per peer as a
    collector sees them: the peer's AS prepended, its own next hop."""
    import ipaddress
    import random

    from fastbgp.mrt import reader as mrt_reader
    from fastbgp.mrt.writer import MrtWriter
    from fastbgp.wire.as4 import attr_spans, encode_attr

    blocks = []
    for rec in mrt_reader.MrtReader(CORPUS / "bview.20020722.2337.gz"):
        if rec.__class__ is mrt_reader.TableDump and rec.peer_as == 1853 and rec.update is not None:
            blocks.append(rec.update.attrs)
    peer_list = [("10.0.0.%d" % (k + 1), ("192.0.2.%d" % (k + 1)) if afi == 1 else ("2001:db8::%x" % (k + 1)), 64600 + k)
                 for k in range(peers)]
    per_peer = {}

    def attrs_of(k, b):
        key = (k, b)
        hit = per_peer.get(key)
        if hit is None:
            out = []
            for flags, t, vs, ve, _s in attr_spans(b):
                v = b[vs:ve]
                if t == 2:  # RFC 4271 §9.1.2.2: the peer prepends its AS
                    segs = v if v and v[0] == 2 and v[1] < 255 else None
                    v = (bytes((2, segs[1] + 1)) + (64600 + k).to_bytes(4, "big") + segs[2:]) if segs else (
                        bytes((2, 1)) + (64600 + k).to_bytes(4, "big") + v)
                elif t == 3:
                    if afi != 1:
                        continue
                    v = bytes((192, 0, 2, k + 1))
                out.append(encode_attr(flags, t, v))
            hit = per_peer[key] = b"".join(out)
        return hit

    # DFZ-shaped: the prefix lengths of today's tables (most /24), random
    # distinct networks, in address order as a RIB dump has them.
    rnd = random.Random(6396 + afi)
    if afi == 1:
        count = prefixes or 1_000_000
        lengths = [24] * 60 + [23] * 8 + [22] * 10 + [21] * 5 + [20] * 6 + [19] * 4 + [18] * 2 + [17] * 2 + [16] * 3
        top, width = 223 << 24, 32
    else:
        count = prefixes or 200_000
        lengths = [48] * 50 + [32] * 10 + [44] * 10 + [40] * 10 + [36] * 5 + [29] * 5 + [46] * 10
        top, width = 0x3FFF << 112, 128
    seen = set()
    while len(seen) < count:
        plen = rnd.choice(lengths)
        net = (rnd.randrange(1 << width >> 3, top) >> (width - plen)) << (width - plen)
        seen.add((net, plen))
    text = ipaddress.IPv4Address if afi == 1 else ipaddress.IPv6Address
    plist = ["%s/%d" % (text(n), ln) for n, ln in sorted(seen)]
    nb_ = len(blocks)

    def routes():
        for i, p in enumerate(plist):
            paths = []
            for k in range(peers):
                b = attrs_of(k, blocks[(i + 977 * k) % nb_])
                paths.append((k, b, None if afi == 1 else bytes.fromhex("20010db8%024x" % (k + 1))))
            yield p, paths

    with MrtWriter(str(path)) as w:
        w.write_rib(peer_list, routes(), timestamp=1700000000, collector_id="192.0.2.254", view_name="")
    return path


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


def same_output(path):
    """Whether both print the same bytes (compared by digest, streamed)."""
    import hashlib

    digests = []
    for cmd in (mrt_dump_command(path), ["bgpdump", "-m", str(path)]):
        h = hashlib.sha256()
        with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=ENV) as p:
            for block in iter(lambda: p.stdout.read(1 << 20), b""):
                h.update(block)
        digests.append(h.digest())
    return digests[0] == digests[1]


RIBS = (("rib.tdv2-ipv4-full.mrt", 1), ("rib.tdv2-ipv6-full.mrt", 2))


def default_files(all_files=False):
    """Corpus files above 1 MB (or all of bgpdump's with ``all_files``),
    then the full-table RIBs, written to /tmp when missing."""
    files = [f for f in sorted(CORPORA.rglob("*")) if f.is_file() and "test_expect" not in f.parts
             and f.suffix != ".md" and (f.stat().st_size > 1_000_000 or (all_files and f.parent == CORPUS))]
    tmp = pathlib.Path(tempfile.gettempdir())
    for name, afi in RIBS:
        path = tmp / name
        if not path.exists():
            print("writing %s (full-table TABLE_DUMP_V2, fastbgp.mrt.writer) ..." % path, flush=True)
            make_rib(path.with_suffix(".part"), afi).rename(path)
        files.append(path)
    return files


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="*", help="MRT files (default: corpus files above 1 MB and the full-table RIBs)")
    ap.add_argument("--all", action="store_true", help="every file of the bgpdump test corpus, and the RIBs")
    ap.add_argument("--repeat", type=int, default=5, help="runs of each command; the median is shown (default 5)")
    ap.add_argument("--no-check", action="store_true", help="do not compare the two outputs")
    args = ap.parse_args(argv)
    if not shutil.which("bgpdump"):
        sys.exit("bgpdump is not installed (apt-get install -y bgpdump)")
    files = [pathlib.Path(f) for f in args.files] if args.files else default_files(args.all)
    print("fastbgp mrt dump -m vs bgpdump -m, median of %d runs each, output to /dev/null" % args.repeat)
    print(machine())
    print("| file | size | fastbgp wall | (cpu) | bgpdump wall | (cpu) | ratio wall | ratio cpu | same output |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|:---:|")
    for f in files:
        if not f.exists():
            print("| %s | missing |" % f.name)
            continue
        same = "-" if args.no_check else ("yes" if same_output(f) else "NO")
        w1, c1, w2, c2 = measure(f, args.repeat)
        print("| %s | %.1f MB | %.3f s | %.3f s | %.3f s | %.3f s | %.2fx | %.2fx | %s |"
              % (f.name, f.stat().st_size / 1e6, w1, c1, w2, c2, w2 / w1, c2 / c1, same), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
