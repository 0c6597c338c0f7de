#!/usr/bin/env python
"""Per-UPDATE import cost of the daemon with DFZ-shaped small UPDATEs.

bench/rpki_vs_bird.py --plain measures the whole daemon against BIRD 2 with
~1.6 prefixes per UPDATE; this is the in-process, repeatable part of it: one
Daemon (no RPKI, empty import policy, default-import accept, nothing
exported) with one library Speaker peer on loopback, established over real
TCP, then ``--updates`` UPDATE bodies handed to the daemon's session the way
its connection hands them (``Session.on_message``: counters, the session's
UPDATE observers, ``codec.parse_update``, the FSM, the speaker's
``session_update``, the importer, the RIB).

The UPDATEs are those of bench/rpki_bench.py ``routes_of`` (the load
generator's DFZ-shaped tables, one origin per IPv4 /16 or IPv6 /32, one
UPDATE per run of up to 8 prefixes of one origin): ~83% IPv4 (classic
NLRI), ~17% IPv6 (MP_REACH_NLRI), a few thousand distinct attribute sets.

Each round starts from an empty RIB (the previous round's routes are
withdrawn, untimed, in large UPDATEs) and times the announcements: the
median over ``--rounds`` of µs per UPDATE, for the compiled codec/RIB and
(``--impl both``, in a child process with FASTBGP_NO_EXTENSIONS=1) the
pure-Python twins.  ``--profile FILE`` writes a cProfile of one more round.

    python bench/import_small_updates.py                 # 200k UPDATEs, compiled + pure Python
    python bench/import_small_updates.py --impl cython --profile /tmp/imp.prof
    python bench/import_small_updates.py --impl cython --rpki --distinct   # a new attribute set per UPDATE
    python bench/import_small_updates.py --impl cython --rpki --cold --updates 736000  # rpki_vs_bird's table, cold

``--cold`` makes every round a session's first table (rounds after the
first otherwise find the import cache and the lane memo warm).

The garbage collector runs with the daemon's thresholds
(fastbgp.daemon.process.GC_THRESHOLDS) unless ``--python-gc``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import resource
import statistics
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

DUT_AS, FEEDER_AS = 64500, 64501
DUT_ADDR, FEEDER_ADDR = "127.0.9.1", "127.0.9.2"


def build(updates, seed=7, distinct=None):
    """(announce bodies, withdraw bodies): about ``updates`` UPDATEs.
    ``distinct``: a number; every UPDATE then carries its own LARGE_COMMUNITY
    (FEEDER_AS:distinct:n), so each brings an attribute set never seen
    before (a new number for each round keeps every round cold)."""
    from rpki_bench import routes_of

    from fastbgp.wire import codec
    from fastbgp.wire.as4 import encode_attr, encode_segments

    # routes_of groups ~1.6 prefixes per UPDATE on average; 5:1 IPv4:IPv6.
    n_prefixes = int(updates * 1.6)
    fams = [routes_of("ipv4", n_prefixes * 5 // 6, seed), routes_of("ipv6", n_prefixes // 6, seed + 1)]
    nh4 = bytes([192, 0, 2, 1])
    nh6 = bytes.fromhex("20010db8000000000000000000000001")
    ann, wd = [], []
    n = 0
    for afi, _width, _routes, groups in fams:
        for packed, origin in groups:
            attrs = encode_attr(0x40, 1, b"\x00") + encode_attr(0x40, 2, encode_segments([(2, [FEEDER_AS, origin])], 4))
            if afi == 1:
                attrs += encode_attr(0x40, 3, nh4)
            if distinct is not None:
                n += 1  # sorted by type code, as routers send them
                attrs += encode_attr(0xC0, 32, struct.pack("!III", FEEDER_AS, distinct, n))
            if afi == 1:
                ann += codec.pack_updates(attrs, packed, codec.DEFAULT_CONTEXT)
            else:
                ann += codec.pack_updates(attrs, packed, codec.DEFAULT_CONTEXT, afi=2, safi=1, next_hop=nh6)
        wd += codec.pack_withdraws(b"".join(p for p, _o in groups), codec.DEFAULT_CONTEXT, afi=afi, safi=1)
    # Interleave the families the way a DFZ feed does not matter here; the
    # bodies are what Session.on_message receives (no 19-octet header).
    return [bytes(m[19:]) for m in ann], [bytes(m[19:]) for m in wd], len({a for a in ann})


def write_vrps(updates, path, seed=7):
    """The VRPs bench/rpki_vs_bird.py derives for the same routes, as an
    rpki-client / stayrtr JSON file (``[rpki] file``)."""
    from rpki_bench import derive_vrps, routes_of
    from rpki_vs_bird import write_stayrtr_json

    n_prefixes = int(updates * 1.6)
    fams = [routes_of("ipv4", n_prefixes * 5 // 6, seed), routes_of("ipv6", n_prefixes // 6, seed + 1)]
    vrps = derive_vrps(fams, seed)
    write_stayrtr_json(path, vrps)
    return len(vrps)


def config_text(port, vrp_file=None):
    lines = ["[global]", "asn = %d" % DUT_AS, 'router-id = "10.9.0.1"', 'listen = ["%s:%d"]' % (DUT_ADDR, port),
             "[global.log]", 'level = "warning"']
    policy = ""
    if vrp_file:
        # bench/rpki_vs_bird.py's import policy: the state as a large community.
        from rpki_vs_bird import STATES, TAG, TAG_OF

        lines += ["[rpki]", 'file = "%s"' % vrp_file, "[[policies]]", 'name = "rov"']
        for state in STATES:
            lines += ["[[policies.statements]]", 'conditions = { rpki = "%s" }' % state,
                      'actions = { result = "accept", large-communities = { add = ["%d:%d:%d"] } }'
                      % (DUT_AS, TAG, TAG_OF[state])]
        policy = '"rov"'
    lines += ["[[neighbors]]", 'address = "%s"' % FEEDER_ADDR, "peer-as = %d" % FEEDER_AS, "passive = true",
              'families = ["ipv4-unicast", "ipv6-unicast"]', "import-policy = [%s]" % policy,
              'default-import = "accept"', 'default-export = "reject"', "timers = { hold-time = 240 }"]
    return "\n".join(lines) + "\n"


async def run(args):
    from fastbgp.config.checks import load_config
    from fastbgp.daemon.core import Daemon
    from fastbgp.rib import IMPLEMENTATION as RIB_IMPL
    from fastbgp.session.speaker import NeighborConfig, Speaker
    from fastbgp.testing.net import free_port
    from fastbgp.wire import codec
    from fastbgp.wire.constants import MSG_UPDATE

    port = free_port(DUT_ADDR)
    vrp_file = None
    if getattr(args, "rpki", False):
        import tempfile

        vrp_file = os.path.join(tempfile.mkdtemp(prefix="fastbgp-bench-"), "vrps.json")
        write_vrps(args.updates, vrp_file)
    daemon = Daemon(load_config(config_text(port, vrp_file)), None)
    await daemon.start()
    if vrp_file:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while not len(daemon.rpki.vrps):
            if loop.time() > deadline:
                raise SystemExit("the VRP file was not loaded")
            await asyncio.sleep(0.05)
    sp = Speaker(FEEDER_AS, "11.9.0.2")
    await sp.start()
    sp.add_neighbor(NeighborConfig(address=DUT_ADDR, peer_as=DUT_AS, port=port, local_address=FEEDER_ADDR,
                                   families=["ipv4-unicast", "ipv6-unicast"], hold_time=240))
    nb = daemon.speaker.neighbors[FEEDER_ADDR]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while nb.session is None or nb.session.fsm.state.name != "ESTABLISHED":
        if loop.time() > deadline:
            raise SystemExit("the session did not come up")
        await asyncio.sleep(0.05)
    session = nb.session
    ann, wd, _ = build(args.updates)
    ribs = daemon.ribs

    def total():
        return sum(len(r) for r in ribs.values())

    async def feed(bodies, batch=args.batch):
        # Connection.process hands UPDATEs framed in a row to
        # Session.on_updates (at most READ_BUDGET_MESSAGES per read turn);
        # --batch 1: one Session.on_message per UPDATE.
        on_message, on_updates, conn = session.on_message, session.on_updates, session.conn
        t0 = time.process_time()
        if batch <= 1:
            for body in bodies:
                on_message(conn, MSG_UPDATE, body)
        else:
            for i in range(0, len(bodies), batch):
                on_updates(conn, bodies[i:i + batch])
        dt = time.process_time() - t0
        await asyncio.sleep(0)
        return dt

    async def feed_importer(parsed):
        # The importer alone: UPDATEs parsed beforehand, handed over the
        # way the daemon's route sink does (DaemonRoutes.update_received).
        update_in = daemon.importer.update_in
        t0 = time.process_time()
        for p in parsed:
            update_in(nb, session, p)
        dt = time.process_time() - t0
        await asyncio.sleep(0)
        return dt

    async def clear():
        await feed(wd)
        if args.cold:
            # The next round as a session's first table: the import cache
            # and the fast lane's memo (fastbgp.daemon.fastlane) forgotten.
            daemon.importer.forget_imports(nb)
        for _ in range(100):
            await asyncio.sleep(0.01)
            if total() == 0:
                break

    times = []
    for r in range(args.rounds + (1 if args.profile else 0)):
        if args.distinct:
            ann, wd, _ = build(args.updates, distinct=r + 1)  # untimed: new attribute sets each round
        if args.profile and r == args.rounds:
            import cProfile

            prof = cProfile.Profile()
            prof.enable()
            await feed(ann)
            prof.disable()
            prof.dump_stats(args.profile)
        else:
            times.append(await feed(ann))
        if r == 0:
            routes = total()
        await clear()
    imp_times = []
    for r in range(args.rounds):
        if args.distinct or r == 0:
            if args.distinct:
                ann, wd, _ = build(args.updates, distinct=1000 + r)
            parsed = [codec.parse_update(b, session.ctx) for b in ann]  # untimed
        imp_times.append(await feed_importer(parsed))
        await clear()
    await sp.stop()
    await daemon.stop()
    per = [t / len(ann) * 1e6 for t in times]
    imp = [t / len(ann) * 1e6 for t in imp_times]
    return {"impl": {"codec": codec.IMPLEMENTATION, "rib": RIB_IMPL}, "updates": len(ann), "routes": routes,
            "us_per_update": [round(x, 2) for x in per], "median_us": round(statistics.median(per), 2),
            "importer_us_per_update": [round(x, 2) for x in imp], "importer_median_us": round(statistics.median(imp), 2),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "gc_thresholds": list(gc.get_threshold())}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--updates", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--impl", choices=["cython", "python", "both"], default="both")
    ap.add_argument("--profile", help="write a cProfile of one extra round here")
    ap.add_argument("--rpki", action="store_true",
                    help="VRPs from a file and bench/rpki_vs_bird.py's import policy (rpki conditions)")
    ap.add_argument("--batch", type=int, default=256,
                    help="UPDATEs per Session.on_updates call (1: on_message per UPDATE)")
    ap.add_argument("--distinct", action="store_true",
                    help="every UPDATE its own attribute set (a LARGE_COMMUNITY numbering it), new in every "
                         "round: a real table, where a router packs the prefixes sharing a set into one UPDATE")
    ap.add_argument("--python-gc", action="store_true",
                    help="keep Python's collector thresholds (default: the daemon's, "
                         "fastbgp.daemon.process.GC_THRESHOLDS, as `fastbgp daemon` runs)")
    ap.add_argument("--cold", action="store_true",
                    help="forget the import cache and the lane memo between rounds (each round a first table)")
    ap.add_argument("--json", action="store_true", help="one JSON line (used for the child process)")
    args = ap.parse_args()
    if args.impl == "both":
        out = []
        for impl in ("cython", "python"):
            env = dict(os.environ)
            if impl == "python":
                env["FASTBGP_NO_EXTENSIONS"] = "1"
            else:
                env.pop("FASTBGP_NO_EXTENSIONS", None)
            cmd = [sys.executable, __file__, "--updates", str(args.updates), "--rounds", str(args.rounds),
                   "--impl", impl, "--batch", str(args.batch), "--json"] + (["--rpki"] if args.rpki else []) \
                + (["--distinct"] if args.distinct else []) + (["--python-gc"] if args.python_gc else []) \
                + (["--cold"] if args.cold else [])
            res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
            if res.returncode != 0:
                raise SystemExit(res.stderr)
            out.append(json.loads(res.stdout.strip().splitlines()[-1]))
        for o in out:
            print("%-26s %d UPDATEs (%d routes): session+import median %.2f µs/UPDATE %s; "
                  "importer alone median %.2f %s" % (
                      "codec %s, rib %s:" % (o["impl"]["codec"], o["impl"]["rib"]), o["updates"], o["routes"],
                      o["median_us"], o["us_per_update"], o["importer_median_us"], o["importer_us_per_update"]))
        return
    if args.impl == "python" and not os.environ.get("FASTBGP_NO_EXTENSIONS"):
        raise SystemExit("--impl python: set FASTBGP_NO_EXTENSIONS=1 (or use --impl both)")
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    if not args.python_gc:
        from fastbgp.daemon.process import GC_THRESHOLDS

        gc.set_threshold(*GC_THRESHOLDS)
    res = asyncio.run(run(args))
    print(json.dumps(res) if args.json else res)


if __name__ == "__main__":
    main()
