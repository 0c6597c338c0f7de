"""WARNINGs about what a peer sends that may come with every UPDATE of a
table (RFC 7606 errors handled without a reset, unusable next hops) are
rate limited per neighbour and kind (``Neighbor.warn_repeated``): the first
of a session is logged, then at most one line per minute saying how many
were not; the counters count every one.  Without it a peer sending a full
table with one bad attribute writes a million log lines."""

from __future__ import annotations

import asyncio
import logging

from fastbgp.session.counters import LogLimit
from fastbgp.session.fsm import State
from fastbgp.wire import as4, codec
from test_session import RawPeer, attr, speaker_with_raw_neighbor, update_body

N = 30


def bad_origin_update(i):
    """An UPDATE for 10.90.i.0/24 whose ORIGIN value is out of range: RFC
    7606 §7.1 treat-as-withdraw."""
    attrs = (attr(0x40, 1, b"\x07") + attr(0x40, 2, as4.encode_segments([(2, [65003])], 4))
             + attr(0x40, 3, bytes((192, 0, 2, 9))))
    return codec.frame(2, update_body(attrs=attrs, nlri=bytes((24, 10, 90, i))))


def handled(caplog):
    return [r.getMessage() for r in caplog.records
            if "UPDATE error handled as" in r.getMessage() and r.levelno == logging.WARNING]


def test_log_limit_counts_every_one_and_says_how_many_were_not_logged():
    lim = LogLimit(interval=60.0, max_keys=2)
    assert lim.note("a", 0.0) == 0
    assert [lim.note("a", t) for t in (1.0, 2.0)] == [None, None]
    assert lim.note("b", 3.0) == 0
    assert lim.note("a", 61.0) == 2 and lim.count("a") == 4 and lim.total == 5
    lim.note("c", 62.0)  # a third key: the oldest ("b") is forgotten
    assert lim.count("b") == 0 and list(lim.by_key) == ["a", "c"]
    lim.clear()
    assert lim.note("a", 63.0) == 0  # after clear() the next one is logged at once


def test_a_table_of_bad_updates_logs_one_line_per_minute(run, caplog):
    async def main():
        a, n = await speaker_with_raw_neighbor()
        p = await RawPeer.connect(a.port)
        try:
            await p.handshake()
            await n.wait_state(State.ESTABLISHED, 5)
            with caplog.at_level(logging.INFO, logger="fastbgp"):
                p.send(b"".join(bad_origin_update(i) for i in range(N)))
                for _ in range(100):
                    if n.counters.treat_as_withdraw == N:
                        break
                    await asyncio.sleep(0.02)
                assert n.counters.treat_as_withdraw == N
                lines = handled(caplog)
                assert len(lines) == 1, lines
                assert lines[0].startswith("127.0.0.3: UPDATE error handled as treat-as-withdraw: ")
                assert "ORIGIN" in lines[0] and "not logged" not in lines[0]
                # After the interval the next one is logged with what was not.
                n.repeated.interval = 0.0
                p.send(bad_origin_update(200))
                for _ in range(100):
                    if n.counters.treat_as_withdraw == N + 1:
                        break
                    await asyncio.sleep(0.02)
                lines = handled(caplog)
                assert len(lines) == 2, lines
                assert lines[1].endswith("(%d more like it not logged since the last line)" % (N - 1)), lines[1]
            assert n.state is State.ESTABLISHED  # handled, not reset
        finally:
            p.writer.close()
            await a.stop()

    run(main())


def test_a_new_session_logs_its_first_fault_again(run, caplog):
    async def main():
        a, n = await speaker_with_raw_neighbor()
        try:
            with caplog.at_level(logging.INFO, logger="fastbgp"):
                for session in range(2):
                    p = await RawPeer.connect(a.port)
                    await p.handshake()
                    await n.wait_state(State.ESTABLISHED, 5)
                    before = n.counters.treat_as_withdraw
                    p.send(bad_origin_update(1) + bad_origin_update(2))
                    for _ in range(100):
                        if n.counters.treat_as_withdraw == before + 2:
                            break
                        await asyncio.sleep(0.02)
                    assert len(handled(caplog)) == session + 1, handled(caplog)
                    p.writer.close()
                    for _ in range(100):
                        if n.state is not State.ESTABLISHED:
                            break
                        await asyncio.sleep(0.02)
                    await n.wait_state(State.ACTIVE, 5)
        finally:
            await a.stop()

    run(main())
