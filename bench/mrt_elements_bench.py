"""Time fastbgp.mrt.elements against mrtparse (t2mune/mrtparse, pure Python)
turning the same MRT file into flat route elements, in one run.

    pip install mrtparse        # a reference for this bench only, not a dependency
    python bench/mrt_elements_bench.py [FILE] [--repeat 3]

Default file: updates.et-header.2015.gz of the bgpdump corpus (89,686
BGP4MP_ET records, 577,740 elements).  Both sides build one flat element
per prefix with time, type, peer address and AS, prefix, next hop, AS path,
origin, communities and large communities (mrtparse's records are walked
into dicts of those fields; ours are fastbgp.mrt.elements.Element), and
both counts are checked equal.  Without mrtparse the bench times ours only
and says so.  Median of ``--repeat`` runs each, in-process.
"""

import argparse
import pathlib
import statistics
import sys
import time

from fastbgp.mrt.elements import elements
from fastbgp.testing import CORPORA
from fastbgp.wire.bench import machine

DEFAULT = CORPORA / "bgpdump" / "test_data" / "updates.et-header.2015.gz"


def ours(path):
    return sum(1 for _e in elements(path))


def _mrtparse_attrs(attrs):
    """The element fields of mrtparse's path attribute list."""
    d = {}
    for a in attrs:
        t = next(iter(a["type"]))
        v = a["value"]
        if t == 1:
            d["origin"] = next(iter(v.values()))
        elif t == 2:
            d["as_path"] = " ".join(" ".join(s["value"]) for s in v)
        elif t == 3:
            d["next_hop"] = v
        elif t == 8:
            d["communities"] = tuple(v)
        elif t == 32:
            d["large_communities"] = tuple(v)
        elif t == 14:
            d["next_hop"] = v["next_hop"][0] if isinstance(v.get("next_hop"), list) else v.get("next_hop")
            d["mp_nlri"] = v.get("nlri", [])
        elif t == 15:
            d["mp_withdrawn"] = v.get("withdrawn_routes", [])
    return d


def theirs(path):
    """Flat elements from mrtparse's records (BGP4MP UPDATEs, TABLE_DUMP_V2
    and TABLE_DUMP entries)."""
    import mrtparse

    n = 0
    peers = []
    for m in mrtparse.Reader(str(path)):
        d = m.data
        typ = next(iter(d["type"]))
        sub = next(iter(d["subtype"]))
        ts = next(iter(d["timestamp"])) + d.get("microsecond_timestamp", 0) / 1e6
        if typ in (16, 17) and sub in (1, 4) and next(iter(d["bgp_message"]["type"])) == 2:
            msg = d["bgp_message"]
            a = _mrtparse_attrs(msg["path_attributes"])
            for p in msg["withdrawn_routes"] + a.get("mp_withdrawn", []):
                e = {"time": ts, "type": "W", "peer_ip": d["peer_ip"], "peer_asn": d["peer_as"],
                     "prefix": "%s/%d" % (p["prefix"], p["length"])}
                n += e is not None
            for p in msg["nlri"] + a.get("mp_nlri", []):
                e = {"time": ts, "type": "A", "peer_ip": d["peer_ip"], "peer_asn": d["peer_as"],
                     "prefix": "%s/%d" % (p["prefix"], p["length"]), **a}
                n += e is not None
        elif typ == 13 and sub == 1:
            peers = d["peer_entries"]
        elif typ == 13 and sub in (2, 4):
            pfx = "%s/%d" % (d["prefix"], d["length"])
            for r in d["rib_entries"]:
                p = peers[r["peer_index"]]
                e = {"time": ts, "type": "R", "peer_ip": p["peer_ip"], "peer_asn": p["peer_as"], "prefix": pfx,
                     **_mrtparse_attrs(r["path_attributes"])}
                n += e is not None
        elif typ == 12:
            e = {"time": ts, "type": "R", "peer_ip": d["peer_ip"], "peer_asn": d["peer_as"],
                 "prefix": "%s/%d" % (d["prefix"], d["length"]), **_mrtparse_attrs(d["path_attributes"])}
            n += e is not None
    return n


def timed(fn, path, repeat):
    times = []
    count = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        count = fn(path)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), count


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("file", nargs="?", default=str(DEFAULT), help="MRT file (default: %s)" % DEFAULT.name)
    ap.add_argument("--repeat", type=int, default=3, help="runs of each; the median is shown (default 3)")
    args = ap.parse_args(argv)
    path = pathlib.Path(args.file)
    print("flat route elements of %s, median of %d runs, in-process" % (path.name, args.repeat))
    print(machine())
    t1, n1 = timed(ours, path, args.repeat)
    print("| reader | elements | median | elements/s |\n|---|---:|---:|---:|")
    print("| fastbgp.mrt.elements | {:,} | {:.2f} s | {:,.0f} |".format(n1, t1, n1 / t1))
    try:
        import mrtparse  # noqa: F401
    except ImportError:
        print("mrtparse is not installed (pip install mrtparse): fastbgp timed alone")
        return 0
    t2, n2 = timed(theirs, path, args.repeat)
    print("| mrtparse | {:,} | {:.2f} s | {:,.0f} |".format(n2, t2, n2 / t2))
    print("ratio: fastbgp.mrt.elements is %.1fx as fast as mrtparse%s" % (
        t2 / t1, "" if n1 == n2 else " (element counts differ: %d vs %d)" % (n1, n2)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
