"""A flood of half-open connections (no OPEN) from a configured peer's
address is bounded in the log too: each newer connection closes the oldest
half-open one (session/collision.py), and those closures are counted
(``counters.half_open_closed``) and logged at most once per
``Sessions.EVICT_LOG_INTERVAL`` per neighbour, not two lines each (found by
tests/interop/test_faults_wire.py's half-open flood)."""

from __future__ import annotations

import asyncio
import logging

from fastbgp.session.collision import Sessions
from fastbgp.session.fsm import State
from test_session import RawPeer, speaker_with_raw_neighbor

FLOOD = 20


def test_half_open_flood_logs_one_line_and_counts(run, caplog):
    async def main():
        a, n = await speaker_with_raw_neighbor()
        peers = []
        try:
            with caplog.at_level(logging.INFO, logger="fastbgp"):
                for _ in range(FLOOD):
                    peers.append(await RawPeer.connect(a.port))
                    await asyncio.sleep(0.02)
                await asyncio.sleep(0.3)
            # At most HALF_OPEN_MAX kept: every other one was closed.
            assert n.counters.half_open_closed == FLOOD - Sessions.HALF_OPEN_MAX
            mine = [r for r in caplog.records if "127.0.0.3" in r.getMessage()]
            evicted = [r for r in mine if "sent no OPEN" in r.getMessage()]
            ends = [r for r in mine if "session closed" in r.getMessage() or "session lost" in r.getMessage()]
            assert len(evicted) == 1, [r.getMessage() for r in evicted]
            assert not ends, [r.getMessage() for r in ends]
            assert n.state is not State.IDLE
        finally:
            for p in peers:
                p.close()
            await a.stop()

    run(main())


def test_evictions_after_the_interval_log_what_was_suppressed(run, caplog):
    async def main():
        a, n = await speaker_with_raw_neighbor()
        n.sessions.evictions.interval = 0.2
        peers = []
        try:
            with caplog.at_level(logging.INFO, logger="fastbgp"):
                for _ in range(6):
                    peers.append(await RawPeer.connect(a.port))
                    await asyncio.sleep(0.02)
                await asyncio.sleep(0.3)
                peers.append(await RawPeer.connect(a.port))
                await asyncio.sleep(0.2)
            lines = [r.getMessage() for r in caplog.records if "sent no OPEN" in r.getMessage()]
            assert len(lines) == 2, lines
            assert "(3 more since the last line)" in lines[1], lines
        finally:
            for p in peers:
                p.close()
            await a.stop()

    run(main())
