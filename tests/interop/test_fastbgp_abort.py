"""Unit test (no lab, no root) for Connection.abort(): the peer must see a
reset, with nothing of what was still queued delivered -- the loopback
twin of test_fastbgp_session.py::test_frozen_peer_during_table_transfer,
where a stalled BIRD used to get megabytes of stale UPDATEs and a FIN
after our hold timer had expired.  Over IPv4 and IPv6 loopback (the
IPv6 case is skipped where the host has no ::1)."""

from __future__ import annotations

import asyncio
import socket

import pytest

from fastbgp.session.protocol import Connection

LOOPS = ["asyncio"]
try:
    import uvloop
except ImportError:  # pragma: no cover
    uvloop = None
else:
    LOOPS.append("uvloop")


LOOPBACK = {"ipv4": (socket.AF_INET, "127.0.0.1"), "ipv6": (socket.AF_INET6, "::1")}


def _listener(transport):
    family, addr = LOOPBACK[transport]
    try:
        srv = socket.socket(family, socket.SOCK_STREAM)
    except OSError as exc:
        pytest.skip("no %s sockets here: %s" % (transport, exc))
    try:
        srv.bind((addr, 0))
    except OSError as exc:
        srv.close()
        pytest.skip("no %s loopback here: %s" % (addr, exc))
    return srv


async def _scenario(srv):
    loop = asyncio.get_running_loop()
    srv.listen(1)
    srv.setblocking(False)
    conn = Connection(loop, outbound=True)
    try:
        host, port = srv.getsockname()[:2]
        connect = loop.create_connection(lambda: conn, host, port)
        (_t, _p), (peer, _addr) = await asyncio.gather(connect, loop.sock_accept(srv))
        # The peer does not read: fill its receive queue and our send queue.
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        chunk = b"\x00" * 65536
        for _ in range(64):
            conn.write(chunk)
        await asyncio.sleep(0.05)
        conn.abort()
        await asyncio.sleep(0.05)
        got = 0
        peer.setblocking(False)
        try:
            while True:
                data = await asyncio.wait_for(loop.sock_recv(peer, 1 << 20), 2)
                if not data:
                    return "eof", got
                got += len(data)
        except ConnectionResetError:
            return "reset", got
        finally:
            peer.close()
    finally:
        srv.close()


@pytest.mark.parametrize("transport", ["ipv4", "ipv6"])
@pytest.mark.parametrize("loop_name", LOOPS)
def test_abort_resets(loop_name, transport):
    run = uvloop.run if loop_name == "uvloop" else asyncio.run
    how, got = run(_scenario(_listener(transport)))
    assert how == "reset", (how, got)
    # far less than the 4 MB written: the kernel send queue was dropped
    assert got < 2 * 1024 * 1024, got
