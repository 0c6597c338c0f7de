"""Load: 50 sessions each receiving 100k prefixes at once, hold time 9 s
(keepalive 3 s), one process, one event loop.

The sender is one fastbgp Speaker with 50 neighbours sharing its
Adj-RIB-Out (the grouping and the packed NLRI are built once); each
receiver is its own Speaker on its own loopback address.  Everything
arrives in one burst, so each receiver's processing competes with the 49
others and with the sender; bounded processing slices and the
per-message hold-timer restart must keep every session up.
"""

import asyncio
import time

import pytest

from fastbgp.session.fsm import State
from fastbgp.session.speaker import NeighborConfig, Speaker

SESSIONS = 50
PREFIXES = 100_000
HOLD = 9


def prefixes(n):
    return ["%d.%d.%d.0/24" % (11 + (i >> 16), (i >> 8) & 255, i & 255) for i in range(n)]


async def scenario():
    sender = Speaker(64512, "10.255.0.1")
    sender.announce(prefixes(PREFIXES), "127.0.0.1", as_path=[64600, 64601], communities=["64512:1"])
    receivers = []
    try:
        for i in range(SESSIONS):
            addr = "127.0.1.%d" % (i + 1)
            r = Speaker(65000 + i, "10.0.1.%d" % (i + 1), listen=[(addr, 0)])
            await r.start()
            n = r.add_neighbor(NeighborConfig(address="127.0.0.1", peer_as=64512, passive=True, hold_time=HOLD))
            receivers.append((r, n))
            sender.add_neighbor(NeighborConfig(address=addr, peer_as=65000 + i, port=r.port, local_address="127.0.0.1",
                                               hold_time=HOLD, idle_hold_time=0.5))
        t0 = time.monotonic()
        await sender.start()
        nbs = [n for _r, n in receivers]
        await asyncio.gather(*(n.wait_established(15) for n in nbs))
        t_up = time.monotonic() - t0
        await asyncio.gather(*(n.wait_end_of_rib(timeout=45) for n in nbs))
        t_all = time.monotonic() - t0
        # Keep running past a full hold time to catch late expiries.
        await asyncio.sleep(1.0)
        for n in nbs:
            assert n.state is State.ESTABLISHED
            assert n.received_count == PREFIXES
            assert n.counters.flaps == 0 and n.counters.established_count == 1
            assert n.fsm.negotiated_hold_time == HOLD and n.fsm.negotiated_keepalive_time == 3
        for s in sender.neighbors.values():
            assert s.state is State.ESTABLISHED and s.counters.flaps == 0
            assert s.last_notification_sent is None and s.last_notification_received is None
        sample = nbs[7].received()["11.0.5.0/24"]
        assert sample.as_path == [64512, 64600, 64601] and sample.communities == ["64512:1"]
        return t_up, t_all
    finally:
        await sender.stop()
        for r, _n in receivers:
            await r.stop(timeout=0.2)


@pytest.mark.slow
def test_50_sessions_100k_prefixes_each(loop_name, run):
    t0 = time.monotonic()
    t_up, t_all = run(scenario(), timeout=90)
    total = time.monotonic() - t0
    print("\n%s: %d sessions up in %.1fs, %d prefixes delivered in %.1fs (%.0f prefixes/s), total %.1fs"
          % (loop_name, SESSIONS, t_up, SESSIONS * PREFIXES, t_all, SESSIONS * PREFIXES / t_all, total))
    assert total < 60
