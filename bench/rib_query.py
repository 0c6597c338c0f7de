#!/usr/bin/env python
"""Cost of the daemon-side RIB queries (``GET /v1/rib/{family}?...``,
``fastbgp global rib ... longer-prefixes / community / aspath ...``) on a
large Loc-RIB: loop time of ``Daemon.query_rib`` per kind of filter, and of
the sorted full-table stream (``Daemon.iter_rib``, every chunk), for a table
of N IPv4 /24s injected into a real Daemon (no sessions) in 2,000
attribute sets (every tenth with a community).

    python bench/rib_query.py                 # 1,000,000 prefixes, median of 3
    python bench/rib_query.py 100000 5
"""

import asyncio
import statistics
import sys
import time

from fastbgp.config.checks import load_config
from fastbgp.control import api, contract as ctl
from fastbgp.daemon.core import Daemon
from fastbgp.wire import messages

GROUPS = 2000


def attrs(i):
    a = [messages.Origin(value=0),
         messages.AsPath(segments=[messages.Segment(type=2, asns=[65000 + i % 50, 64512 + i])]),
         messages.NextHop(address="192.0.2.1")]
    if i % 10 == 0:
        a.append(messages.Communities(values=[(65000 << 16) | 1]))
    return messages.encode_attributes(a)


def groups(n):
    per, k, out = n // GROUPS, 0, []
    for g in range(GROUPS):
        nlri = bytearray()
        for _ in range(per):
            nlri += bytes([24]) + ((1 << 24) + k * 256).to_bytes(4, "big")[:3]  # /24s from 1.0.0.0 up
            k += 1
        out.append(api.InjectGroup(afi=1, attrs=attrs(g), nlri=bytes(nlri)))
    return out


CASES = {
    "full table, sorted (iter_rib, every chunk)": None,
    "longer-prefixes of a /16": ctl.RibQuery(prefix="10.0.0.0/16", match="longer"),
    "longer-prefixes of a /8, limit 100": ctl.RibQuery(prefix="10.0.0.0/8", match="longer", limit=100),
    "community 65000:1, limit 100": ctl.RibQuery(community="65000:1", limit=100),
    "origin-as 64612": ctl.RibQuery(origin_as=64612),
    "aspath '^65001 ', limit 100": ctl.RibQuery(as_path="^65001 ", limit=100),
    "shorter-prefixes of a /24": ctl.RibQuery(prefix="10.1.2.0/24", match="shorter"),
}


async def main(n, repeat):
    d = Daemon(load_config('[global]\nasn = 65001\nrouter-id = "10.0.0.1"\nlisten = []\n'))
    await d.start()
    try:
        print("%d prefixes injected" % await d.inject(groups(n)))
        for name, q in CASES.items():
            times, rows = [], 0
            for _ in range(repeat):
                t = time.perf_counter()
                if q is None:
                    rows = 0
                    async for chunk in d.iter_rib("ipv4-unicast"):
                        rows += len(chunk)
                else:
                    rows = len(d.query_rib("ipv4-unicast", q))
                times.append(time.perf_counter() - t)
            print("%-45s rows %9d  median %.3f s of %d" % (name, rows, statistics.median(times), repeat))
    finally:
        await d.stop()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000,
                     int(sys.argv[2]) if len(sys.argv) > 2 else 3))
