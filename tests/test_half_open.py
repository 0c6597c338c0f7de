"""Half-open connections (no OPEN received) from a configured peer's address
cannot lock the real peer out (RFC 4271 §6.8: a connection that never sent an
OPEN is no collision contender); at most 2 are kept per neighbour address."""

from __future__ import annotations

import asyncio

from fastbgp.session.fsm import State
from fastbgp.session.speaker import NeighborConfig, Speaker
from test_session import A_ADDR, C_ADDR, C_ID, RawPeer, quick, speaker_with_raw_neighbor


async def closed_by_speaker(peer, timeout):
    """Whether the speaker closed ``peer``'s connection within ``timeout``."""
    try:
        while True:
            if await peer.recv(timeout) is None:
                return True
    except (asyncio.TimeoutError, ConnectionError):
        return False


def test_silent_connections_do_not_lock_out_the_real_peer(run):
    async def main():
        a, n = await speaker_with_raw_neighbor()
        silent = [await RawPeer.connect(a.port) for _ in range(2)]
        c = None
        try:
            await asyncio.sleep(0.2)
            assert len(n.sessions.connections()) == 2
            c = Speaker(65003, C_ID, listen=[(C_ADDR, 0)])
            await c.start()
            nc = c.add_neighbor(NeighborConfig(**quick(address=A_ADDR, peer_as=65001, port=a.port,
                                                       local_address=C_ADDR)))
            await nc.wait_established(5)
            await n.wait_established(5)
            assert n.state is State.ESTABLISHED
            await asyncio.sleep(0.2)
            assert n.established and nc.established
        finally:
            for p in silent:
                p.close()
            if c is not None:
                await c.stop()
            await a.stop()

    run(main())


def test_at_most_two_silent_connections_per_address(run):
    async def main():
        a, n = await speaker_with_raw_neighbor()
        peers = []
        try:
            for _ in range(5):
                peers.append(await RawPeer.connect(a.port))
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.2)
            assert len(n.sessions.connections()) <= 2
            closed = [await closed_by_speaker(p, 1.0) for p in peers]
            # The oldest ones went, the newest two are kept.
            assert closed == [True, True, True, False, False]
            assert n.state is not State.IDLE
        finally:
            for p in peers:
                p.close()
            await a.stop()

    run(main())
