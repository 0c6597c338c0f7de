#!/usr/bin/env python
"""The export step of one new attribute set, in process: what an update
group does once per attribute set it is sent (``UpdateGroup.export`` with
its cache emptied), with no export policy.

A route server takes a table from many clients, each with its own AS paths:
every new set is exported once per group that receives it (bench/scale.py
P4: 1,000 sets, each seen by both workers).  The sets here are those of
bench/passthrough.py's tables (ORIGIN, a two-AS AS_PATH, NEXT_HOP, one
community), exported to a route-server client group (RFC 7947: next hop and
AS_PATH kept) and to an eBGP group (our AS prepended, our next hop).

    python bench/export_per_set.py             # median of 7 rounds of 1,000 sets
    python bench/export_per_set.py --rounds 15 --sets 5000
"""

from __future__ import annotations

import argparse
import statistics
import struct
import time

from fastbgp.rib.export import EBGP, RS, Source, UpdateGroup
from fastbgp.rib.policy import PolicyContext, PolicyEngine
from fastbgp.wire import codec
from fastbgp.wire.as4 import encode_attr, encode_segments
from fastbgp.wire.constants import AS_SEQUENCE, IPV4_UNICAST


def attribute_sets(n):
    """``n`` distinct attribute blocks shaped as passthrough.build_table's."""
    out = []
    for i in range(n):
        out.append(encode_attr(0x40, 1, b"\x00")
                   + encode_attr(0x40, 2, encode_segments([(AS_SEQUENCE, [65001, 64512 + i % 1000])], 4))
                   + encode_attr(0x40, 3, bytes([192, 0, 2, 1]))
                   + encode_attr(0xC0, 8, struct.pack(">I", (65001 << 16 | i) & 0xFFFFFFFF)))
    return out


def group(kind):
    engine = PolicyEngine({})
    chain = engine.chain([], "export", "accept")
    pctx = PolicyContext("192.0.2.9", 65009, 65000, local_address="192.0.2.254")
    return UpdateGroup(("bench", kind), IPV4_UNICAST, codec.Context(as4=True), engine, chain, pctx, kind, False,
                       65000, bytes([192, 0, 2, 254]), None)


def per_set_us(kind, blocks, rounds):
    """Median µs per set over ``rounds`` exports of every block, and the
    number exported (all of them, or the round is wrong)."""
    src = Source(1, RS if kind == RS else EBGP, peer_as=65001, address="192.0.2.1")
    times = []
    for _ in range(rounds):
        g = group(kind)  # a fresh group: its export cache is empty
        t = time.perf_counter()
        outs = [g.export(src, b, b"") for b in blocks]
        times.append((time.perf_counter() - t) / len(blocks) * 1e6)
        if sum(o is not None for o in outs) != len(blocks):
            raise SystemExit("%s: %d of %d sets exported" % (kind, sum(o is not None for o in outs), len(blocks)))
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    blocks = attribute_sets(args.sets)
    for name, kind in (("route-server client", RS), ("eBGP", EBGP)):
        print("%-20s %6.2f us per new attribute set (median of %d rounds of %d)"
              % (name, per_set_us(kind, blocks, args.rounds), args.rounds, args.sets))


if __name__ == "__main__":
    main()
