"""Session loss is a WARNING with its reason (once per loss), an ordered end
is INFO, and connections from unknown addresses are counted and their log
lines rate-limited.  Real loopback sessions, as in test_session.py."""

import asyncio
import logging
import socket

from fastbgp.session.cease import LOG_DATA_OCTETS, hex_data, subcode_name
from fastbgp.session.counters import RefusedConnections
from fastbgp.session.fsm import State
from fastbgp.session.speaker import Speaker
from fastbgp.wire import codec
from fastbgp.wire.constants import MSG_UPDATE

from test_session import A_ADDR, A_ID, C_ADDR, GOOD_ATTRS, RawPeer, attr, speaker_with_raw_neighbor, update_body


def warnings_for(caplog, address):
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and address in r.getMessage()]


def test_malformed_update_loss_is_one_warning_with_code_subcode_and_data(caplog, run):
    caplog.set_level(logging.INFO, logger="fastbgp")

    async def main():
        a, n = await speaker_with_raw_neighbor()
        peer = await RawPeer.connect(a.port)
        try:
            await peer.handshake()
            await n.wait_established(2)
            # An unrecognized well-known attribute: RFC 4271 §6.3, 3/2, the
            # data is the attribute.
            bad = attr(0x40, 99, b"x")
            peer.send(codec.frame(MSG_UPDATE, update_body(attrs=GOOD_ATTRS + bad, nlri=b"\x18\x0a\x00\x00")))
            code, sub, data = await peer.expect_notification()
            assert (code, sub) == (3, 2)
            await n.wait_for(lambda: n.state is not State.ESTABLISHED, 2)
            return data
        finally:
            peer.close()
            await a.stop()

    data = run(main())
    lines = warnings_for(caplog, C_ADDR)
    assert len(lines) == 1, lines
    line = lines[0]
    assert "session lost in ESTABLISHED" in line
    assert "NOTIFICATION sent 3/2 (UPDATE Message Error / unrecognized-well-known)" in line
    assert data and ("data " + bytes(data).hex()) in line


def test_hold_timer_expiry_is_a_warning(caplog, run):
    caplog.set_level(logging.INFO, logger="fastbgp")

    async def main():
        a, n = await speaker_with_raw_neighbor(hold_time=3)
        peer = await RawPeer.connect(a.port)
        try:
            await peer.handshake(hold=3)
            await n.wait_established(2)
            code, sub, _ = await peer.expect_notification(timeout=6)
            assert (code, sub) == (4, 0)
            await n.wait_for(lambda: not n.established, 2)
        finally:
            peer.close()
            await a.stop()

    run(main())
    lines = warnings_for(caplog, C_ADDR)
    assert len(lines) == 1, lines
    assert "hold-timer-expired" in lines[0] and "hold timer expired" in lines[0]
    assert "NOTIFICATION sent 4/0 (Hold Timer Expired / unspecific)" in lines[0]


def test_disable_is_not_a_warning(caplog, run):
    caplog.set_level(logging.INFO, logger="fastbgp")

    async def main():
        a, n = await speaker_with_raw_neighbor()
        peer = await RawPeer.connect(a.port)
        try:
            await peer.handshake()
            await n.wait_established(2)
            n.disable("maintenance")
            code, sub, _ = await peer.expect_notification()
            assert (code, sub) == (6, 2)
            await n.wait_state(State.IDLE, 2)
        finally:
            peer.close()
            await a.stop()

    run(main())
    assert warnings_for(caplog, C_ADDR) == []
    closed = [r.getMessage() for r in caplog.records if "session closed in ESTABLISHED" in r.getMessage()]
    assert len(closed) == 1 and "admin-down" in closed[0] and "6/2" in closed[0]


def test_connection_lost_in_opensent_is_a_warning(caplog, run):
    caplog.set_level(logging.INFO, logger="fastbgp")

    async def main():
        a, n = await speaker_with_raw_neighbor()
        peer = await RawPeer.connect(a.port)
        try:
            await n.wait_state(State.OPENSENT, 2)
            peer.close()
            await n.wait_for(lambda: n.state is not State.OPENSENT, 2)
        finally:
            await a.stop()

    run(main())
    lines = warnings_for(caplog, C_ADDR)
    assert len(lines) == 1 and "session lost in OPENSENT" in lines[0], lines


def test_refused_connections_counted_and_logged_once(caplog, run):
    caplog.set_level(logging.INFO, logger="fastbgp")

    async def main():
        a = Speaker(65001, A_ID, listen=[(A_ADDR, 0)])
        await a.start()
        try:
            for _ in range(10):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.bind((C_ADDR, 0))
                sock.setblocking(False)
                await asyncio.get_running_loop().sock_connect(sock, (A_ADDR, a.port))
                sock.close()
            deadline = asyncio.get_running_loop().time() + 5
            while a.refused_connections < 10 and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.01)
            return a.refused_connections, a.refused.count(C_ADDR)
        finally:
            await a.stop()

    assert run(main()) == (10, 10)
    lines = [r.getMessage() for r in caplog.records if "unknown peer" in r.getMessage()]
    assert len(lines) == 1 and C_ADDR in lines[0], lines


def test_refused_rate_limit_reports_suppressed_and_bounds_addresses():
    r = RefusedConnections(interval=60.0, max_addresses=3)
    assert r.refuse("192.0.2.1", 0.0) == 0
    assert [r.refuse("192.0.2.1", t) for t in (1.0, 2.0, 59.0)] == [None, None, None]
    assert r.refuse("192.0.2.1", 61.0) == 3  # the next line says 3 were not logged
    assert r.refuse("192.0.2.1", 62.0) is None
    for i in range(2, 6):
        r.refuse("192.0.2.%d" % i, 70.0)
    assert len(r.by_address) == 3 and "192.0.2.1" not in r.by_address
    assert r.total == 10


def test_notification_data_hex_is_truncated():
    assert hex_data(b"\x01\x02") == "0102"
    long = bytes(range(100))
    assert hex_data(long) == long[:LOG_DATA_OCTETS].hex() + "…(100 octets)"
    assert subcode_name(3, 1) == "malformed-attr-list"
    assert subcode_name(6, 2) == "admin-shutdown"
    assert subcode_name(4, 0) == "unspecific"


def test_received_notification_is_named_once_in_the_warning(caplog, run):
    # The loss line describes the NOTIFICATION the peer sent; the reason
    # must not repeat it ("NOTIFICATION received: 6/4; NOTIFICATION received 6/4 ...").
    caplog.set_level(logging.INFO, logger="fastbgp")

    async def main():
        a, n = await speaker_with_raw_neighbor()
        peer = await RawPeer.connect(a.port)
        try:
            await peer.handshake()
            await n.wait_established(2)
            peer.send(codec.frame(3, bytes([6, 4])))  # Cease / Administrative Reset
            await n.wait_for(lambda: not n.established, 2)
        finally:
            peer.close()
            await a.stop()

    run(main())
    lines = warnings_for(caplog, C_ADDR)
    assert len(lines) == 1, lines
    assert lines[0].count("NOTIFICATION received") == 1, lines[0]
    assert "NOTIFICATION received 6/4 (Cease / admin-reset)" in lines[0]
