"""RIB bytes per path and update() CPU time as peers are added: the layout
of bench/test_rib_bench.py's memory case (1,000 attribute groups of IPv4
/24s, one update() per group with the intern/release a session does) with
up to 20 peers sending the same prefixes with different paths, the shape of
issue 12's P8 (20 full tables).

Each run is a fresh interpreter; RSS is read after each peer's table is in,
over a baseline taken once the inputs exist.  ``--so`` loads a given build
of ``fastbgp.rib._rib`` (e.g. a copy of the extension built from an older
commit) so two layouts are compared in one run of this script, alternating.

Run:  python bench/rib_memory_peers.py [--prefixes 1000000] [--peers 20]
          [--repeat 3] [--so before=/tmp/_rib_old.so --so after=fastbgp/rib/_rib...so]
"""

import argparse
import json
import statistics
import subprocess
import sys

_SCRIPT = r"""
import gc, importlib.util, json, sys, time
from fastbgp import rib
from fastbgp.wire import bench

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096

so, G, PER, NP = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
if so:
    spec = importlib.util.spec_from_file_location("fastbgp.rib._rib", so)
    impl = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(impl)
else:
    impl = rib.load("cython")
nlri = [bench.v4_prefixes(0x01000000 + g * PER * 256, PER) for g in range(G)]
blocks = {p: [bench.attrs_for(g + 1000 * p) for g in range(G)] for p in range(1, NP + 1)}
gc.collect()
base = rss()
table = rib.AttrTable()
r = impl.Rib(1, table)
out = {"rss_b_per_path": {}}
cpu = 0.0
for p in range(1, NP + 1):
    r.add_peer(p, 64500 + p, 65000, "10.0.%d.%d" % (p >> 8, p & 255), "192.0.%d.%d" % (p >> 8, p & 255))
    t = time.process_time()
    for g in range(G):
        aid = table.intern(blocks[p][g])
        r.update(p, nlri[g], False, aid)
        table.release(aid)
    cpu += time.process_time() - t
    gc.collect()
    if p in (1, 3, NP):
        out["rss_b_per_path"][p] = (rss() - base) / r.path_count()
out["paths"] = r.path_count()
out["struct_b_per_path"] = r.memory_usage() / r.path_count()
out["update_cpu_s"] = cpu
print(json.dumps(out))
"""


def run_once(so, groups, per_group, peers):
    proc = subprocess.run([sys.executable, "-c", _SCRIPT, so, str(groups), str(per_group), str(peers)],
                          check=True, capture_output=True, text=True)
    return json.loads(proc.stdout)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prefixes", type=int, default=1_000_000)
    ap.add_argument("--peers", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--so", action="append", default=[], metavar="NAME=PATH",
                    help="a build of fastbgp.rib._rib to measure (default: the installed one)")
    args = ap.parse_args(argv)
    builds = [tuple(s.split("=", 1)) for s in args.so] or [("current", "")]
    groups = 1000
    per_group = max(1, args.prefixes // groups)
    runs = {name: [] for name, _ in builds}
    for _ in range(args.repeat):
        for name, so in builds:  # alternating, so load drifts hit every build alike
            runs[name].append(run_once(so, groups, per_group, args.peers))
    print("%d IPv4 /24 x %d peers (%d paths), %d attribute groups per peer, median of %d runs"
          % (groups * per_group, args.peers, groups * per_group * args.peers, groups, args.repeat))
    print("| build | RSS B/path 1 peer | 3 peers | %d peers | struct B/path | update() CPU s |" % args.peers)
    print("|---|---:|---:|---:|---:|---:|")
    first = None
    for name, _ in builds:
        rs = runs[name]

        def med(f):
            return statistics.median(f(r) for r in rs)

        row = (med(lambda r: r["rss_b_per_path"]["1"]), med(lambda r: r["rss_b_per_path"]["3"]),
               med(lambda r: r["rss_b_per_path"][str(args.peers)]), med(lambda r: r["struct_b_per_path"]),
               med(lambda r: r["update_cpu_s"]))
        first = first or row
        print("| %s | %.2f | %.2f | %.2f | %.2f | %.3f (%.2fx) |" % ((name,) + row + (row[4] / first[4],)))


if __name__ == "__main__":
    main()
