"""RPKI route origin validation (RFC 6811) at DFZ scale: the compiled VRP
table against its pure-Python twin, in one run on one machine.

    python bench/rpki_bench.py                 # 1M IPv4 + 200k IPv6 routes, 500k VRPs, 3 runs
    python bench/rpki_bench.py --runs 5 --no-twin

Routes come from the load generator's DFZ-shaped tables
(``fastbgp.loadtest.generator.TablePlan``, lengths "dfz"), with origins
one per IPv4 /16 or IPv6 /32 (60,000 private ASNs): more-specifics share
their aggregate's origin, and one UPDATE carries up to 8 prefixes of one
origin.  VRPs are derived from the routes no shorter than those blocks: 35% get an exact
VRP (Valid; 90% of them with maxLength /24 or /48), 2%
a covering VRP two bits shorter with maxLength up to the route (Valid, and
whatever it covers), 3.5% a VRP naming another AS (Invalid) and 2.5% a VRP on
a shorter prefix whose maxLength stops short of the route (Invalid by
max-length) -- about 500k VRPs and 5% invalid routes.

Figures (median of ``--runs``, CPU seconds of this process):

* build: adding every VRP to an empty table;
* initial validation of every route, one ``validate_packed`` call per group
  (how the RIB calls it: the prefixes of one UPDATE share one origin);
* re-validation after 1,000 VRP changes (500 removed, 500 added): apply
  them, find the routes inside each change's ``covered_range`` (bisect on
  the routes sorted by address) and re-validate only those; checked
  against a full re-validation;
* RSS of the VRP set: a fresh process reads the VRPs from a file one by one
  and reports its RSS growth while filling the table.
"""

import argparse
import bisect
import functools
import os
import random
import statistics
import struct
import subprocess
import sys
import tempfile
import time

from fastbgp.loadtest.generator import TablePlan
from fastbgp.loadtest.scenario import Table
from fastbgp.rpki import vrp as vrp_sel
from fastbgp.rpki.vrp import INVALID, NOT_FOUND, VALID, covered_range

GROUP = 8
ORIGINS = 60_000
ORIGIN_BASE = 4_200_000_000  # RFC 6996 private 4-octet ASNs
RECORD = struct.Struct("!B16sBBI")  # afi, address, length, max length, asn
BLOCK = (16, 32)  # IPv4 /16, IPv6 /32: the address block one origin holds


def _origin(value, width, block):
    """The origin AS of every route inside one /block: one holder per
    address block, as in the real DFZ where more-specifics mostly share
    their aggregate's origin."""
    return ORIGIN_BASE + (((value >> (width - block)) * 2654435761) >> 7) % ORIGINS


def routes_of(family, count, seed):
    """(afi, width, [(addr int, plen, origin)], [(packed group, origin)]):
    groups are runs of up to GROUP prefixes with one origin (an UPDATE)."""
    afi, width, block = (1, 32, BLOCK[0]) if family == "ipv4" else (2, 128, BLOCK[1])
    packed = TablePlan(Table(prefixes=count, family=family, lengths="dfz", seed=seed)).packed(0)
    routes, groups = [], []
    pos, n = 0, len(packed)
    start, run_origin, run = 0, None, 0
    while pos < n:
        plen = packed[pos]
        nb = (plen + 7) >> 3
        value = int.from_bytes(packed[pos + 1 : pos + 1 + nb].ljust(width // 8, b"\0"), "big")
        origin = _origin(value, width, block)
        if run and (origin != run_origin or run == GROUP):
            groups.append((packed[start:pos], run_origin))
            start, run = pos, 0
        run_origin = origin
        run += 1
        routes.append((value, plen, origin))
        pos += 1 + nb
    if run:
        groups.append((packed[start:pos], run_origin))
    return afi, width, routes, groups


def derive_vrps(families, seed):
    """The VRP list (afi, addr bytes, plen, maxlen, asn), duplicates removed."""
    rnd = random.Random(seed)
    out = {}
    for afi, width, routes, _groups in families:
        nbytes = width // 8
        block = BLOCK[afi - 1]
        top = 24 if afi == 1 else 48  # the usual most specific accepted length
        for value, plen, origin in routes:
            if plen < block:
                continue  # aggregates spanning several holders' blocks: no ROA
            r = rnd.random()
            if r < 0.35:
                v = (value, plen, max(plen, top) if rnd.random() < 0.9 else plen, origin)
            elif r < 0.37 and plen >= block + 2:
                short = plen - 2
                v = (value >> (width - short) << (width - short), short, plen, origin)
            elif r < 0.405:
                v = (value, plen, plen, ORIGIN_BASE + (origin - ORIGIN_BASE + 1 + rnd.randrange(ORIGINS - 1)) % ORIGINS)
            elif r < 0.43 and plen >= block + 3:
                short = plen - 1 - rnd.randrange(3)
                v = (value >> (width - short) << (width - short), short, short, origin)
            else:
                continue
            out[(afi, v[0].to_bytes(nbytes, "big"), v[1], v[2], v[3])] = None
    return list(out)


def validate_all(table, families):
    """One state bytes object per family."""
    return [b"".join(table.validate_packed(afi, packed, origin) for packed, origin in groups)
            for afi, _w, _r, groups in families]


def build(impl, vrps):
    t = impl.VrpTable()
    add = t.add
    for v in vrps:
        add(*v)
    return t


def changes_for(vrps, families, seed):
    """500 VRPs to remove and 500 new ones (half on routes not yet covered)."""
    rnd = random.Random(seed + 1)
    removed = rnd.sample(vrps, 500)
    present = set(vrps)
    added = []
    while len(added) < 500:
        afi, width, routes, _g = families[rnd.randrange(len(families))]
        value, plen, origin = routes[rnd.randrange(len(routes))]
        asn = origin if rnd.random() < 0.5 else origin + 1
        v = (afi, value.to_bytes(width // 8, "big"), plen, plen, asn)
        if v not in present:
            present.add(v)
            added.append(v)
    return removed, added


class RouteIndex:
    """Routes of one family sorted by address, for covered_range lookups."""

    def __init__(self, routes):
        order = sorted(range(len(routes)), key=lambda i: routes[i][0])
        self.keys = [routes[i][0] for i in order]
        self.order = order

    def inside(self, first, last):
        lo = bisect.bisect_left(self.keys, first)
        hi = bisect.bisect_right(self.keys, last)
        return self.order[lo:hi]


def revalidate(table, families, indexes, states, removed, added):
    """Apply the changes, re-validate only the covered routes; returns
    (routes re-checked, states changed)."""
    for v in removed:
        table.remove(*v)
    for v in added:
        table.add(*v)
    touched = {}
    for afi, addr, plen, _maxlen, _asn in removed + added:
        first, last = covered_range(afi, addr, plen)
        fam = afi - 1
        bucket = touched.setdefault(fam, set())
        for i in indexes[fam].inside(first, last):
            if families[fam][2][i][1] >= plen:
                bucket.add(i)
    checked = changed = 0
    for fam, idxs in touched.items():
        afi, width, routes, _g = families[fam]
        nbytes = width // 8
        st = states[fam]
        for i in idxs:
            value, plen, origin = routes[i]
            s = table.validate(afi, value.to_bytes(nbytes, "big"), plen, origin)
            checked += 1
            if s != st[i]:
                st[i] = s
                changed += 1
    return checked, changed


RSS_CHILD = r"""
import struct, sys
from fastbgp.rpki import vrp
rec = struct.Struct("!B16sBBI")
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096
data = open(sys.argv[2], "rb").read()
impl = vrp.load(sys.argv[1])
before = rss()
t = impl.VrpTable()
for afi, addr, plen, maxlen, asn in rec.iter_unpack(data):
    t.add(afi, addr[: 4 if afi == 1 else 16], plen, maxlen, asn)
print(rss() - before, len(t))
"""


def rss_of(name, vrps):
    with tempfile.NamedTemporaryFile(suffix=".bin") as f:
        for afi, addr, plen, maxlen, asn in vrps:
            f.write(RECORD.pack(afi, addr, plen, maxlen, asn))
        f.flush()
        out = subprocess.run([sys.executable, "-c", RSS_CHILD, name, f.name], capture_output=True, text=True,
                             check=True, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    grown, count = out.stdout.split()
    return int(grown), int(count)


def timed(fn):
    """(CPU seconds, result): CPU time, not wall time, so a busy shared
    machine disturbs the figures less."""
    t0 = time.process_time()
    out = fn()
    return time.process_time() - t0, out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--v4", type=int, default=1_000_000)
    ap.add_argument("--v6", type=int, default=200_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--no-twin", action="store_true")
    args = ap.parse_args()

    t0 = time.perf_counter()
    families = [routes_of("ipv4", args.v4, 1), routes_of("ipv6", args.v6, 2)]
    vrps = derive_vrps(families, 3)
    removed, added = changes_for(vrps, families, 3)
    indexes = [RouteIndex(f[2]) for f in families]
    print("setup: %d IPv4 + %d IPv6 routes, %d VRPs (%d IPv4, %d IPv6), %.1f s" % (
        len(families[0][2]), len(families[1][2]), len(vrps), sum(v[0] == 1 for v in vrps),
        sum(v[0] == 2 for v in vrps), time.perf_counter() - t0))

    impls = [("cython", vrp_sel.load("cython"))]
    if not args.no_twin:
        impls.append(("python", vrp_sel.load("python")))
    results = {}
    reference = None
    for name, impl in impls:
        rows = {"build": [], "validate": [], "revalidate": [], "full_after": []}
        for _run in range(args.runs):
            dt, table = timed(functools.partial(build, impl, vrps))
            rows["build"].append(dt)
            dt, states = timed(functools.partial(validate_all, table, families))
            rows["validate"].append(dt)
            if reference is None:
                reference = states
            assert states == reference, "%s disagrees with the compiled table" % name
            mutable = [bytearray(s) for s in states]
            dt, (checked, changed) = timed(functools.partial(revalidate, table, families, indexes, mutable, removed,
                                                             added))
            rows["revalidate"].append(dt)
            dt, full = timed(functools.partial(validate_all, table, families))
            rows["full_after"].append(dt)
            assert [bytes(m) for m in mutable] == full, "incremental re-validation missed a route"
            table = None  # freed before the next build
        results[name] = {k: statistics.median(v) for k, v in rows.items()}
        results[name]["checked"], results[name]["changed"] = checked, changed

    total = len(families[0][2]) + len(families[1][2])
    counts = {s: sum(st.count(s) for st in reference) for s in (VALID, INVALID, NOT_FOUND)}
    print("states: valid %d (%.1f%%), invalid %d (%.1f%%), not-found %d (%.1f%%)" % tuple(
        x for s in (VALID, INVALID, NOT_FOUND) for x in (counts[s], 100.0 * counts[s] / total)))
    print("\nmedian of %d runs (CPU seconds)  %12s %12s %8s" % (args.runs, "compiled", "twin", "ratio"))
    labels = [("build", "build %d VRPs" % len(vrps)), ("validate", "validate %d routes" % total),
              ("revalidate", "re-validate after 1,000 changes"), ("full_after", "(full re-validation instead)")]
    for key, label in labels:
        c = results["cython"][key]
        if "python" in results:
            p = results["python"][key]
            print("%-32s %12.3f %12.3f %7.1fx" % (label, c, p, p / c))
        else:
            print("%-32s %12.3f" % (label, c))
    r = results["cython"]
    print("re-validation touched %d routes, %d changed state; %.0fx faster than a full pass" % (
        r["checked"], r["changed"], r["full_after"] / r["revalidate"]))
    print("routes validated per second (compiled): %.2f M" % (total / r["validate"] / 1e6))
    for name, _impl in impls:
        grown, count = rss_of(name, vrps)
        print("RSS of the VRP set (%s, %d VRPs): %.1f MB" % (name, count, grown / 1e6))


if __name__ == "__main__":
    main()
