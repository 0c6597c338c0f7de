#!/usr/bin/env python
"""ADD-PATH peers and a table announced again with attributes that export
alike (issue 12, "an announcement only when what it holds changes").

One in-process Daemon (compiled RIB and codec), two eBGP library Speakers
sending the same ``--prefixes`` IPv4 /24s in 1,000 attribute sets (two
paths per prefix), and two receivers over real TCP on loopback: one with
ADD-PATH send of every path, one with ``send-max = 1``.  After both hold
every path, each sender announces its whole table again with another MED
(which an eBGP peer is not sent, RFC 4271 §5.1.3); the figures:

* CPU seconds of the process (the daemon and the four library speakers
  share it) from the first re-announced UPDATE until the daemon's export
  queue is idle and the marker prefix (announced last, after the table)
  has reached both receivers;
* the UPDATEs and prefixes each receiver got meanwhile (the marker's one
  UPDATE included).

Median over ``--rounds`` (a round: a new MED for both tables).  Run it on
two checkouts to compare (``PYTHONPATH``).

    python bench/addpath_reannounce.py                  # 40,000 prefixes, 3 rounds
    python bench/addpath_reannounce.py --prefixes 20000 --rounds 5
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import os
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

DUT_AS = 64500
DUT_ADDR = "127.0.9.1"
PEERS = [("127.0.9.2", 64501), ("127.0.9.3", 64502), ("127.0.9.4", 64503), ("127.0.9.5", 64504)]
SETS = 1000
MARKER = "10.255.255.0/24"


def config_text(port):
    lines = ["[global]", "asn = %d" % DUT_AS, 'router-id = "10.9.0.1"', 'listen = ["%s:%d"]' % (DUT_ADDR, port),
             "[global.log]", 'level = "warning"']
    for i, (addr, asn) in enumerate(PEERS):
        lines += ["[[neighbors]]", 'address = "%s"' % addr, "peer-as = %d" % asn, "passive = true",
                  'families = ["ipv4-unicast"]', 'default-import = "accept"', 'default-export = "%s"'
                  % ("reject" if i < 2 else "accept"), "timers = { hold-time = 240 }"]
        if i == 2:
            lines.append('add-path = { send = ["ipv4-unicast"] }')
        elif i == 3:
            lines.append('add-path = { send = ["ipv4-unicast"], send-max = 1 }')
    return "\n".join(lines) + "\n"


def table(n):
    """{set index: [prefix]}: ``n`` /24s under 10.0.0.0/8 in SETS sets."""
    out = {}
    for i in range(n):
        out.setdefault(i % SETS, []).append("10.%d.%d.0/24" % (i >> 8 & 255, i & 255))
    return out


async def run(args):
    from fastbgp.config.checks import load_config
    from fastbgp.daemon.core import Daemon
    from fastbgp.rib import IMPLEMENTATION as RIB_IMPL
    from fastbgp.session.speaker import NeighborConfig, Speaker
    from fastbgp.testing.net import free_port
    from fastbgp.wire import codec

    port = free_port(DUT_ADDR)
    daemon = Daemon(load_config(config_text(port)), None)
    await daemon.start()
    speakers, nbs = [], []
    for i, (addr, asn) in enumerate(PEERS):
        sp = Speaker(asn, "11.9.0.%d" % (i + 2))
        await sp.start()
        speakers.append(sp)
        nbs.append(sp.add_neighbor(NeighborConfig(
            address=DUT_ADDR, peer_as=DUT_AS, port=port, local_address=addr, families=["ipv4-unicast"],
            hold_time=240, addpath_receive=["ipv4-unicast"] if i >= 2 else False)))
    loop = asyncio.get_running_loop()
    rx_all, rx_one = nbs[2], nbs[3]

    async def until(pred, what, timeout=600):
        deadline = loop.time() + timeout
        while not pred():
            if loop.time() > deadline:
                raise SystemExit("timed out waiting for %s (receivers hold %d and %d paths)" % (
                    what, len(rx_all.received_paths()), len(rx_one.received_paths())))
            await asyncio.sleep(0.01)

    await until(lambda: all(n.established for n in nbs), "the sessions")
    groups = table(args.prefixes)

    def announce(med):
        for k, (sp, nb) in enumerate(zip(speakers[:2], nbs[:2])):
            for s, prefixes in groups.items():
                nb.announce(prefixes, as_path=[65100 + s], med=med + k)

    def marker_at_both(as_path):
        want = [DUT_AS, PEERS[0][1]] + as_path
        return all(any(str(p[0]) == MARKER and r.as_path == want for p, r in nb.received_paths().items())
                   for nb in (rx_all, rx_one))

    announced = {id(nb): [0] for nb in (rx_all, rx_one)}
    for nb in (rx_all, rx_one):
        box = announced[id(nb)]
        nb.subscribe_updates(lambda _nb, parsed, box=box: box.__setitem__(0, box[0] + parsed.n_announced))

    def counts():
        return [(nb.counters.received.update, announced[id(nb)][0]) for nb in (rx_all, rx_one)]

    t_load = time.monotonic()
    announce(10)
    await until(lambda: len(rx_all.received_paths()) == 2 * args.prefixes
                and len(rx_one.received_paths()) == args.prefixes and daemon.exporter.queue.idle, "the tables")
    print("tables loaded in %.1f s" % (time.monotonic() - t_load), flush=True)
    cpu, sent = [], []
    for r in range(args.rounds):
        before = counts()
        t0 = time.process_time()
        announce(100 * (r + 1))
        nbs[0].announce([MARKER], as_path=[65000 + r])
        await until(lambda: marker_at_both([65000 + r]) and daemon.exporter.queue.idle, "the marker")
        cpu.append(time.process_time() - t0)
        after = counts()
        sent.append([(a[0] - b[0], a[1] - b[1]) for a, b in zip(after, before)])
    for sp in speakers:
        await sp.stop()
    await daemon.stop()
    return {"impl": {"codec": codec.IMPLEMENTATION, "rib": RIB_IMPL}, "prefixes": args.prefixes,
            "cpu_s": [round(x, 3) for x in cpu], "median_cpu_s": round(statistics.median(cpu), 3),
            "sent_every_path": sent[-1][0], "sent_send_max_1": sent[-1][1]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prefixes", type=int, default=40_000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    from fastbgp.daemon.process import GC_THRESHOLDS

    gc.set_threshold(*GC_THRESHOLDS)
    res = asyncio.run(run(args))
    print(res)
    print("re-announced table, CPU %.3f s (median of %s); UPDATEs, prefixes sent to the every-path receiver %s, "
          "to the send-max 1 receiver %s" % (res["median_cpu_s"], res["cpu_s"], res["sent_every_path"],
                                            res["sent_send_max_1"]))


if __name__ == "__main__":
    main()
