"""A peer's output queue is bounded (issue 10): a peer that does not read,
or reads too slowly to keep up, is dropped with Cease / Out of Resources
(RFC 4486 §3, subcode 8) once its queued octets pass ``max_queued_bytes``
or nothing drains within the write window; a slow but steady reader under
the cap keeps its session."""

import asyncio
import logging
import struct

from fastbgp.session.adj_rib_out import JOIN_OCTETS
from fastbgp.session.fsm import State
from fastbgp.wire.errors import CEASE_OUT_OF_RESOURCES, ERR_CEASE

from test_session import make_pair


def withdraw_update(n: int = 1000) -> bytes:
    """One UPDATE withdrawing 10.0.0.0/24 ``n`` times (4 * n + 23 octets)."""
    wd = b"\x18\x0a\x00\x00" * n
    body = struct.pack("!H", len(wd)) + wd + b"\x00\x00"
    return b"\xff" * 16 + struct.pack("!HB", 19 + len(body), 2) + body


async def pair(cap: int):
    """Sender A (its neighbour ``na`` for B capped at ``cap``) and receiver B;
    a long idle hold so a dropped session stays down."""
    p = await make_pair(a_kw=dict(idle_hold_time=30.0, max_idle_hold_time=30.0, max_queued_bytes=cap),
                        b_kw=dict(idle_hold_time=30.0, max_idle_hold_time=30.0))
    await p.established()
    return p.a, p.b, p.na, p.nb


def assert_out_of_resources(na, caplog, what):
    n = na.last_notification_sent
    assert n is not None and (n.code, n.subcode) == (ERR_CEASE, CEASE_OUT_OF_RESOURCES)
    assert na.counters.out_of_resources == 1
    assert not na.adj_rib_out.queue and na.adj_rib_out.queued_bytes == 0
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and what in r.getMessage()]
    assert len(warnings) == 1, [r.getMessage() for r in caplog.records]


def test_peer_not_reading_is_dropped_at_the_cap(run, caplog):
    caplog.set_level(logging.INFO)

    async def main():
        cap = 200 * 1024
        a, b, na, nb = await pair(cap)
        try:
            nb.connection.transport.pause_reading()  # B stops reading
            msgs = [withdraw_update()] * 16  # 64 KB, shared like an update group's list
            for _ in range(2000):  # far beyond what the kernel buffers absorb
                if not na.established:
                    break
                na.send_messages(msgs)
                await asyncio.sleep(0.001)
            await na.wait_for(lambda: not na.established, 5)
            assert na.state is not State.ESTABLISHED
            assert_out_of_resources(na, caplog, "over its cap")
            assert "%d" % cap in [r.getMessage() for r in caplog.records if "over its cap" in r.getMessage()][0]
        finally:
            await a.stop()
            await b.stop()

    run(main(), timeout=60)


def test_stalled_writes_end_the_session_at_the_progress_deadline(run, caplog):
    caplog.set_level(logging.INFO)

    async def main():
        a, b, na, nb = await pair(1 << 30)
        try:
            nb.connection.transport.pause_reading()
            conn = na.connection
            msgs = [withdraw_update()] * 16
            for _ in range(2000):
                na.send_messages(msgs)
                await asyncio.sleep(0.001)
                if conn.write_paused and conn.write_buffer_size() > 0 and len(na.adj_rib_out.queue) > 2:
                    break
            assert conn.write_paused
            # Whatever the kernel still took settles; then nothing drains.
            await asyncio.sleep(0.2)
            session = na.session
            session._cancel_write_timer()
            loop = asyncio.get_running_loop()
            session._write_check(conn, conn.octets_drained(), loop.time() - 2.0, 1.0)
            await na.wait_for(lambda: not na.established, 5)
            assert_out_of_resources(na, caplog, "output stalled")
        finally:
            await a.stop()
            await b.stop()

    run(main(), timeout=60)


def test_slow_steady_reader_under_the_cap_keeps_its_session(run, caplog):
    caplog.set_level(logging.INFO)

    async def main():
        cap = 4 * 1024 * 1024
        a, b, na, nb = await pair(cap)
        stop = asyncio.Event()

        async def slow_reader():
            t = nb.connection.transport
            while not stop.is_set():
                t.pause_reading()
                await asyncio.sleep(0.02)
                t.resume_reading()
                await asyncio.sleep(0.002)

        reader = asyncio.ensure_future(slow_reader())
        try:
            msgs = [withdraw_update()] * 4  # 16 KB
            for _ in range(300):  # ~5 MB in all, never more than the cap at once
                na.send_messages(msgs)
                await asyncio.sleep(0.005)
                if not na.established:
                    break
            await na.flush(30)
            assert na.established and nb.established
            assert na.counters.out_of_resources == 0
            assert na.last_notification_sent is None
        finally:
            stop.set()
            await reader
            await a.stop()
            await b.stop()

    run(main(), timeout=90)


def test_lists_queued_together_go_out_in_one_write(run, monkeypatch):
    """An update group queues one shared list per member and change: the
    lists a member has waiting go to the socket in one write (one system
    call, not one per list), in order, counted, and the shared lists are
    left as they were."""

    async def main():
        a, b, na, nb = await pair(64 << 20)
        try:
            conn = na.connection
            writes = []
            real = conn.writelines
            monkeypatch.setattr(conn, "writelines", lambda chunks: writes.append(list(chunks)) or real(chunks))
            lists = [[withdraw_update(1 + i)] for i in range(10)] + [[withdraw_update(20)] * 70]
            before = na.counters.sent.update
            got = nb.counters.received.withdraw_update  # (End-of-RIBs may still be on their way)
            for msgs in lists:
                na.send_messages(msgs)  # one loop turn: the sender finds them all queued
            await na.adj_rib_out.flush(5)
            sent = [m for w in writes for m in w]
            assert sent == [m for msgs in lists for m in msgs]
            assert len(writes[0]) == 64 and len(writes) == 2  # 10 lists and part of the 11th in one write
            assert [len(msgs) for msgs in lists] == [1] * 10 + [70]
            assert na.counters.sent.update - before == 80 and na.adj_rib_out.queued_bytes == 0
            # Big messages: joined up to JOIN_OCTETS (what the kernel does not
            # take the transport copies, for each member).
            writes.clear()
            big = [[withdraw_update(1000)] for _ in range(12)]  # 4,023 octets each
            for msgs in big:
                na.send_messages(msgs)
            await na.adj_rib_out.flush(5)
            per = -(-JOIN_OCTETS // 4023)
            assert [len(w) for w in writes] == [per, per, 12 - 2 * per]
            for _ in range(500):  # B reads them all
                if nb.counters.received.withdraw_update - got == 92:
                    break
                await asyncio.sleep(0.01)
            assert nb.counters.received.withdraw_update - got == 92
        finally:
            await a.stop()
            await b.stop()

    run(main(), timeout=30)
