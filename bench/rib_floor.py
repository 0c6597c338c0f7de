#!/usr/bin/env python
"""The RIB's share of the scale scenarios, alone: how many CPU seconds the
Loc-RIB needs to take the paths of P1, P4 and P8 (bench/scale.py), with no
socket, no framing, no UPDATE parsing, no policy and no export.

Whatever the rest of the daemon does, and however the prefix space is split
between worker processes, the RIB work has to be done: with W workers on W
free cores it takes at least (RIB CPU seconds) / W.  Set beside a bar given
as a fraction of BIRD's time in the same lab, this says whether the bar is
within reach of this RIB at all.

The tables are those of bench/scale.py, pre-packed in 1,000-prefix NLRI
runs (one 4,096-octet UPDATE each), with interned attribute sets:

* p1: 1 peer x 1,000,000 IPv4 /24 in 1,000 attribute groups;
* p4: 10 peers x 100,000 disjoint /24s;
* p8: 20 peers x the same 1,000,000 /24s, each peer its own AS path.

    python bench/rib_floor.py                 # p1, p4, p8, median of 3, compiled RIB
    python bench/rib_floor.py --scenarios p8 --runs 5
    FASTBGP_NO_EXTENSIONS=1 python bench/rib_floor.py --scenarios p1 --runs 1   # the twin
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time

from fastbgp.rib import IMPLEMENTATION, AttrTable, Rib
from fastbgp.rib.export import source_tag
from fastbgp.wire import messages

RUN = 1000  # prefixes per NLRI run (one full UPDATE of /24s)

SCENARIOS = {
    # name: (peers, prefixes per peer, do peers share the prefixes)
    "p1": (1, 1_000_000, True),
    "p4": (10, 100_000, False),
    "p8": (20, 1_000_000, True),
}


def attrs(peer, group):
    return messages.encode_attributes([
        messages.Origin(value=0),
        messages.AsPath(segments=[messages.Segment(type=2, asns=[65100 + peer, 64512 + group])]),
        messages.NextHop(address="192.0.2.%d" % (peer + 1))])


def runs_of(first, count):
    """``count`` consecutive /24s from index ``first``, as packed NLRI runs."""
    out = []
    for start in range(first, first + count, RUN):
        nlri = bytearray()
        for k in range(start, min(start + RUN, first + count)):
            nlri += bytes((24,)) + ((1 << 24) + (k << 8)).to_bytes(4, "big")[:3]
        out.append(bytes(nlri))
    return out


def one(name):
    """CPU seconds of Rib.update for the whole scenario (fresh RIB)."""
    peers, per, shared = SCENARIOS[name]
    table = AttrTable()
    rib = Rib(1, table)
    feeds = []
    for p in range(peers):
        rib.add_peer(p + 1, 65100 + p, 65000, "192.0.2.%d" % (p + 1), "192.0.2.%d" % (p + 1))
        nlri = runs_of(0 if shared else p * per, per)
        feeds.append([(chunk, table.intern(attrs(p, i % 1000), source_tag(p + 1))) for i, chunk in
                      enumerate(nlri)])
    gc.collect()
    t0 = time.process_time()
    for p, feed in enumerate(feeds):
        pid = p + 1
        for chunk, aid in feed:
            rib.update(pid, chunk, attr_id=aid)
    spent = time.process_time() - t0
    paths = peers * per
    assert len(rib) == (per if shared else peers * per), len(rib)
    return spent, paths


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenarios", default="p1,p4,p8")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    print("RIB:", IMPLEMENTATION)
    for name in args.scenarios.split(","):
        spent = []
        for _ in range(args.runs):
            s, paths = one(name)
            spent.append(s)
        med = statistics.median(spent)
        print("%-3s %10d paths  RIB CPU %6.3f s median (runs: %s)  %4.0f ns/path  with 2 ideal workers >= %.3f s"
              % (name, paths, med, ", ".join("%.3f" % x for x in spent), med / paths * 1e9, med / 2), flush=True)


if __name__ == "__main__":
    main()
