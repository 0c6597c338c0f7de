"""The RTR client against a scripted RTR cache in the test process: reset
and serial queries, Serial Notify, Cache Reset, version negotiation
downwards, the Error Report answering each malformed PDU, failover between
caches of different preference, expiry, and the observer interface.

The scripted cache speaks RFC 8210 with fastbgp.rpki.pdu and can be told to
send malformed PDUs, which a real cache never does; the same client against
the real stayrtr is tests/interop/test_rtr_stayrtr.py.
"""

import asyncio
import logging
import struct
import time

import pytest

from fastbgp.rpki import client as C
from fastbgp.rpki import pdu as P
from fastbgp.rpki.vrp import INVALID, NOT_FOUND, VALID

V1 = (1, bytes((192, 0, 2, 0)), 24, 24, 64496)
V2 = (1, bytes((198, 51, 100, 0)), 22, 24, 64497)
V3 = (2, bytes.fromhex("20010db8") + bytes(12), 32, 48, 64498)
V4 = (1, bytes((203, 0, 113, 0)), 24, 24, 64499)


class ScriptedCache:
    """A small RTR cache: full and incremental answers from a history of
    serials, a maximum version, and raw PDUs to inject."""

    def __init__(self, vrps=(), aspas=None, version=2, session_id=7):
        self.vrps = set(vrps)
        self.aspas = dict(aspas or {})
        self.max_version = version
        self.session_id = session_id
        self.serial = 1
        self.history = {}  # serial -> (added, removed, aspa changes) to serial + 1
        self.received = []
        self.writers = []
        self.inject = []  # raw octets sent (once each) right after the next Cache Response
        self.preface = []  # raw octets sent (once each) before the next Cache Response
        self.answer_session = None  # the session id Cache Responses carry (default: ours)
        self.no_data = 0  # answer this many queries with Error Report "No Data Available"
        self.server = None
        self.timers = (1, 1, 600)

    async def start(self, port=0):
        self.server = await asyncio.start_server(self.serve, "127.0.0.1", port)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def stop(self):
        self.server.close()
        for w in self.writers:
            w.close()
        await self.server.wait_closed()

    def update(self, add=(), remove=(), aspas=None):
        self.history[self.serial] = (set(add), set(remove), dict(aspas or {}))
        self.vrps |= set(add)
        self.vrps -= set(remove)
        for c, p in (aspas or {}).items():
            if p is None:
                self.aspas.pop(c, None)
            else:
                self.aspas[c] = p
        self.serial += 1

    async def notify(self):
        for w in self.writers:
            w.write(P.encode(P.SerialNotify(self.version, self.session_id, self.serial)))
            await w.drain()

    def records(self, v, add, remove, aspas):
        out = []
        for vrp in sorted(add):
            out.append(P.encode(P.Prefix(v, True, *vrp)))
        for vrp in sorted(remove):
            out.append(P.encode(P.Prefix(v, False, *vrp)))
        if v >= 2:
            for c, p in sorted(aspas.items()):
                out.append(P.encode(P.Aspa(v, p is not None, c, tuple(p or ()))))
        return out

    async def serve(self, reader, writer):
        self.writers.append(writer)
        try:
            while True:
                head = await reader.readexactly(8)
                body = await reader.readexactly(struct.unpack("!I", head[4:])[0] - 8)
                q = P.parse_pdu(head + body)
                self.received.append(q)
                if isinstance(q, P.ErrorReport):
                    break
                if q.version > self.max_version:
                    err = P.PduError(P.UNSUPPORTED_VERSION, head + body, "only version %d" % self.max_version)
                    writer.write(P.error_report(self.max_version, err))
                    break
                self.version = v = q.version
                if self.no_data:
                    self.no_data -= 1
                    err = P.PduError(P.NO_DATA_AVAILABLE, head + body, "not ready")
                    writer.write(P.error_report(v, err))
                    break
                for raw in self.preface:
                    writer.write(raw)
                self.preface = []
                if isinstance(q, P.SerialQuery) and self.answer_session is None:
                    if q.session_id != self.session_id or q.serial not in self.history:
                        writer.write(P.encode(P.CacheReset(v)))
                        continue
                    add, remove, aspas = set(), set(), {}
                    for s in range(q.serial, self.serial):
                        a, r, asp = self.history[s]
                        add, remove = (add - r) | a, (remove - a) | r
                        aspas.update(asp)
                    out = self.records(v, add, remove, aspas)
                else:
                    out = self.records(v, self.vrps, (), self.aspas)
                session = self.session_id if self.answer_session is None else self.answer_session
                writer.write(P.encode(P.CacheResponse(v, session)))
                for raw in self.inject:
                    writer.write(raw)
                self.inject = []
                writer.write(b"".join(out))
                eod = P.EndOfData(v, session, self.serial, *self.timers) if v else \
                    P.EndOfData(0, session, self.serial)
                writer.write(P.encode(eod))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def errors(self):
        return [q for q in self.received if isinstance(q, P.ErrorReport)]


class Recorder(C.RtrObserver):
    def __init__(self):
        self.vrp_events = []
        self.aspa_events = []
        self.statuses = []

    def vrps_changed(self, added, removed):
        self.vrp_events.append((list(added), list(removed)))

    def aspas_changed(self, changed):
        self.aspa_events.append(dict(changed))

    def cache_changed(self, status):
        self.statuses.append((status.address, status.port, status.state))


async def until(pred, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in %.1f s" % timeout)
        await asyncio.sleep(0.02)


def spec(cache, **kw):
    kw.setdefault("retry", 1)
    return C.CacheSpec("127.0.0.1", cache.port, **kw)


def published(client):
    return {(afi,) + e for afi in (1, 2) for e in client.vrps.entries(afi)}


def test_reset_serial_notify_and_cache_reset(run):
    async def main():
        cache = await ScriptedCache([V1, V2, V3], aspas={64496: (64510,)}).start()
        rec = Recorder()
        client = C.RtrClient([spec(cache, refresh=3600)], rec)
        client.start()
        try:
            await until(lambda: published(client) == {V1, V2, V3})
            assert rec.vrp_events[0] == (sorted([V1, V2, V3]), [])
            assert rec.aspa_events == [{64496: (64510,)}]
            assert client.vrps.validate(1, V1[1], 24, 64496) == VALID
            st = client.status()[0]
            assert (st.state, st.version, st.session_id, st.serial, st.source) == ("up", 2, 7, 1, True)
            # a change and a Serial Notify: a Serial Query brings only the delta
            cache.update(add=[V4], remove=[V1], aspas={64496: None, 64497: (64511, 64512)})
            await cache.notify()
            await until(lambda: len(rec.vrp_events) == 2)
            assert rec.vrp_events[1] == ([V4], [V1])
            assert rec.aspa_events[1] == {64496: None, 64497: (64511, 64512)}
            assert client.aspas.get(64497) == frozenset({64511, 64512}) and client.aspas.get(64496) is None
            assert isinstance(cache.received[-1], P.SerialQuery) and cache.received[-1].serial == 1
            assert client.vrps.validate(1, V1[1], 24, 64496) == NOT_FOUND
            # the cache loses its history: Cache Reset, then a Reset Query
            cache.update(add=[V1])
            cache.history.clear()
            await cache.notify()
            await until(lambda: len(rec.vrp_events) == 3)
            assert rec.vrp_events[2] == ([V1], [])
            assert isinstance(cache.received[-1], P.ResetQuery)
            assert published(client) == cache.vrps
            assert cache.errors() == []
        finally:
            await client.stop()
            await cache.stop()

    run(main(), timeout=20)


def test_refresh_timer_polls(run):
    async def main():
        cache = await ScriptedCache([V1]).start()
        rec = Recorder()
        client = C.RtrClient([spec(cache, refresh=1)], rec)
        client.start()
        try:
            await until(lambda: published(client) == {V1})
            cache.update(add=[V2])  # no notify: the refresh timer finds it
            await until(lambda: published(client) == {V1, V2}, timeout=4)
        finally:
            await client.stop()
            await cache.stop()

    run(main(), timeout=20)


@pytest.mark.parametrize("cache_version", [0, 1])
def test_version_negotiated_downwards(run, cache_version):
    async def main():
        cache = await ScriptedCache([V1, V3], version=cache_version).start()
        client = C.RtrClient([spec(cache)], Recorder())
        client.start()
        try:
            await until(lambda: published(client) == {V1, V3})
            assert client.status()[0].version == cache_version
            queries = [q for q in cache.received if isinstance(q, P.ResetQuery)]
            # the Error Report carries the cache's version: the client goes straight to it
            assert [q.version for q in queries] == [2, cache_version]
            if cache_version == 0:  # no timers in version 0 End of Data: the RFC 8210 §6 defaults
                assert client.status()[0].refresh == C.DEFAULT_REFRESH
        finally:
            await client.stop()
            await cache.stop()

    run(main(), timeout=20)


def _raw(ptype, field, body, version=2):
    return struct.pack("!BBHI", version, ptype, field, 8 + len(body)) + body


@pytest.mark.parametrize("inject, code", [
    (_raw(P.IPV4_PREFIX, 0, bytes((1, 33, 33, 0)) + bytes(8)), P.CORRUPT_DATA),
    (_raw(5, 0, b""), P.UNSUPPORTED_PDU_TYPE),
    (_raw(P.RESET_QUERY, 0, b""), P.INVALID_REQUEST),
    (P.encode(P.Prefix(2, True, *V1)), P.DUPLICATE_ANNOUNCEMENT),  # then again in the answer
    (P.encode(P.Prefix(2, False, *V4)), P.WITHDRAWAL_OF_UNKNOWN),
    (P.encode(P.Prefix(1, True, *V4)), P.UNEXPECTED_VERSION),
    (struct.pack("!BBHI", 2, 4, 0, 1 << 30), P.CORRUPT_DATA),  # impossible length
])
def test_malformed_pdu_answered_with_error_report(run, caplog, inject, code):
    async def main():
        cache = await ScriptedCache([V1]).start()
        cache.inject = [inject]
        client = C.RtrClient([spec(cache)], Recorder())
        caplog.set_level(logging.INFO, "fastbgp.rpki")
        client.start()
        try:
            await until(lambda: cache.errors())
            err = cache.errors()[0]
            assert err.code == code, err
            assert err.pdu == inject[: len(err.pdu)] and err.pdu
            # the session ends, with a WARNING, and the client retries: the
            # next answer is clean and the data arrives
            await until(lambda: published(client) == {V1}, timeout=5)
            assert any(r.levelno == logging.WARNING and "lost" in r.getMessage() for r in caplog.records)
        finally:
            await client.stop()
            await cache.stop()

    run(main(), timeout=20)


def test_record_before_cache_response_is_corrupt_data(run):
    async def main():
        cache = await ScriptedCache([V1]).start()
        stray = P.encode(P.Prefix(2, True, *V4))
        cache.preface = [stray]
        client = C.RtrClient([spec(cache)], Recorder())
        client.start()
        try:
            await until(lambda: cache.errors())
            assert (cache.errors()[0].code, cache.errors()[0].pdu) == (P.CORRUPT_DATA, stray)
            await until(lambda: published(client) == {V1}, timeout=5)
        finally:
            await client.stop()
            await cache.stop()

    run(main(), timeout=20)


def test_session_id_change_is_corrupt_data_then_reset_without_flap(run):
    """RFC 8210 §5.1: a different session id in answer to a Serial Query is
    Corrupt Data; the next connection reloads with a Reset Query and the
    published data is replaced by difference, never flushed in between."""
    async def main():
        cache = await ScriptedCache([V1, V2]).start()
        rec = Recorder()
        client = C.RtrClient([spec(cache)], rec)
        client.start()
        try:
            await until(lambda: published(client) == {V1, V2})
            cache.update(add=[V4])
            cache.answer_session = 99  # the cache "restarted" under our feet
            await cache.notify()
            await until(lambda: cache.errors())
            assert cache.errors()[0].code == P.CORRUPT_DATA
            cache.answer_session = None
            cache.session_id = 99
            await until(lambda: published(client) == {V1, V2, V4}, timeout=5)
            assert rec.vrp_events[1:] == [([V4], [])]  # no removal in between
            assert isinstance(cache.received[-1], P.ResetQuery)
            assert client.status()[0].session_id == 99
        finally:
            await client.stop()
            await cache.stop()

    run(main(), timeout=20)


def test_no_data_available_is_retried(run, caplog):
    async def main():
        cache = await ScriptedCache([V1]).start()
        cache.no_data = 1
        client = C.RtrClient([spec(cache)], Recorder())
        caplog.set_level(logging.INFO, "fastbgp.rpki")
        client.start()
        try:
            await until(lambda: published(client) == {V1}, timeout=5)
            assert cache.errors() == []  # an Error Report is never answered with one
            assert any("No Data Available" in r.getMessage() for r in caplog.records)
        finally:
            await client.stop()
            await cache.stop()

    run(main(), timeout=20)


def test_error_report_from_cache_is_never_answered(run):
    async def main():
        cache = await ScriptedCache([V1]).start()
        cache.inject = [P.encode(P.ErrorReport(2, P.INTERNAL_ERROR, b"", "oops"))]
        client = C.RtrClient([spec(cache)], Recorder())
        client.start()
        try:
            await until(lambda: published(client) == {V1}, timeout=5)
            assert cache.errors() == []
            assert "oops" in (client.status()[0].last_error or "") or client.status()[0].state == "up"
        finally:
            await client.stop()
            await cache.stop()

    run(main(), timeout=20)


def test_failover_to_less_preferred_and_back(run, free_port):
    async def main():
        port_a = free_port()
        primary = ScriptedCache([V1, V2])
        backup = await ScriptedCache([V1, V4], session_id=9).start()
        rec = Recorder()
        client = C.RtrClient([C.CacheSpec("127.0.0.1", backup.port, preference=5, retry=1),
                              C.CacheSpec("127.0.0.1", port_a, preference=1, retry=1)], rec)
        assert [c.spec.port for c in client.caches] == [port_a, backup.port]  # preference order
        client.start()
        try:
            await until(lambda: published(client) == {V1, V4})
            assert client.source.spec.port == backup.port
            await primary.start(port_a)
            await until(lambda: published(client) == {V1, V2}, timeout=5)
            assert client.source.spec.port == port_a
            assert rec.vrp_events[-1] == ([V2], [V4])  # only the difference
            # the primary goes away: its data stays (not expired), the backup takes over
            await primary.stop()
            await until(lambda: client.source.spec.port == backup.port, timeout=5)
            assert published(client) == {V1, V4}
        finally:
            await client.stop()
            await backup.stop()

    run(main(), timeout=30)


def test_data_kept_until_expire_then_flushed(run, caplog):
    async def main():
        cache = await ScriptedCache([V1, V3]).start()
        rec = Recorder()
        client = C.RtrClient([spec(cache, expire=2, retry=1)], rec)
        caplog.set_level(logging.INFO, "fastbgp.rpki")
        client.start()
        try:
            await until(lambda: published(client) == {V1, V3})
            await cache.stop()
            lost = time.monotonic()
            await asyncio.sleep(1.0)
            assert published(client) == {V1, V3}  # kept while the cache is down
            await until(lambda: not published(client), timeout=4)
            assert time.monotonic() - lost >= 1.0
            assert rec.vrp_events[-1] == ([], sorted([V1, V3]))
            assert client.vrps.validate(1, V1[1], 24, 1) == NOT_FOUND
            assert any(r.levelno == logging.WARNING and "expired" in r.getMessage() for r in caplog.records)
            assert any(r.levelno == logging.WARNING and "unreachable" in r.getMessage() for r in caplog.records)
        finally:
            await client.stop()

    run(main(), timeout=20)


def test_observer_failure_does_not_stop_the_client(run, caplog):
    class Broken(C.RtrObserver):
        def vrps_changed(self, added, removed):
            raise RuntimeError("observer bug")

    async def main():
        cache = await ScriptedCache([V1]).start()
        client = C.RtrClient([spec(cache)], Broken())
        client.start()
        try:
            await until(lambda: published(client) == {V1})
            cache.update(add=[V2])
            await cache.notify()
            await until(lambda: published(client) == {V1, V2})
            assert client.vrps.validate(1, V2[1], 24, 1) == INVALID
        finally:
            await client.stop()
            await cache.stop()
        assert any("observer bug" in (r.exc_text or "") or r.exc_info for r in caplog.records)

    run(main(), timeout=20)


def test_bad_version_argument():
    with pytest.raises(ValueError):
        C.RtrClient([], version=3)


# ------------------------------------------ the chunked reader (bulk parse path)

def many_vrps(n):
    """n distinct VRPs of both families (an answer much larger than one read)."""
    out = []
    for i in range(n):
        if i % 4:
            out.append((1, bytes((10, i >> 8 & 0xFF, i & 0xFF, 0)), 24, 24, 64496 + i % 7))
        else:
            out.append((2, bytes.fromhex("20010db8") + i.to_bytes(2, "big") + bytes(10), 48, 48, 64496))
    return out


class ChunkCache:
    """Answers the k-th Reset Query with ``answers[k]``: a list of octet
    strings, each written on its own with a pause between, so the client
    reads them in separate chunks.  Records what the client sends."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.received = []
        self.writers = []

    async def start(self):
        self.server = await asyncio.start_server(self.serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def stop(self):
        self.server.close()
        for w in self.writers:
            w.close()
        await self.server.wait_closed()

    async def serve(self, reader, writer):
        self.writers.append(writer)
        try:
            while True:
                head = await reader.readexactly(8)
                body = await reader.readexactly(struct.unpack("!I", head[4:])[0] - 8)
                self.received.append(P.parse_pdu(head + body))
                if not isinstance(self.received[-1], P.ResetQuery) or not self.answers:
                    break
                pieces = self.answers.pop(0)
                for piece in pieces:
                    if isinstance(piece, asyncio.Event):  # hold the rest until the test sets it
                        await piece.wait()
                        continue
                    writer.write(piece)
                    await writer.drain()
                    await asyncio.sleep(0.01)
                if pieces and pieces[-1] is CLOSE:
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass  # the client ended the connection, or the test stopped the server
        finally:
            writer.close()

    def errors(self):
        return [q for q in self.received if isinstance(q, P.ErrorReport)]


CLOSE = b""  # as the last piece of an answer: the cache closes the connection there


def answer(vrps, session=7, serial=1):
    return [P.encode(P.CacheResponse(2, session))] + [P.encode(P.Prefix(2, True, *v)) for v in vrps] + \
        [P.encode(P.EndOfData(2, session, serial, 1, 1, 600))]


def test_large_answer_in_one_write_and_pdus_split_across_reads(run):
    """Thousands of PDUs in one write (many in each read), then an answer cut
    at odd offsets so headers and bodies straddle reads: both give exactly
    the cache's set, applied once at End of Data."""
    async def main():
        vrps = many_vrps(6000)
        whole = b"".join(answer(vrps))
        assert len(whole) > 2 * C.READ_CHUNK
        small = b"".join(answer([V1, V2, V3]))
        cuts = [0, 3, 8 + 5, 8 + 20 + 11, 8 + 20 + 20 + 8, len(small) - 1, len(small)]
        split = [small[a:b] for a, b in zip(cuts, cuts[1:])]
        cache = await ChunkCache([[whole]]).start()
        rec = Recorder()
        client = C.RtrClient([spec(cache)], rec)
        client.start()
        try:
            await until(lambda: len(rec.vrp_events) == 1)
            assert rec.vrp_events[0] == (sorted(vrps), []) and published(client) == set(vrps)
        finally:
            await client.stop()
            await cache.stop()
        cache = await ChunkCache([split]).start()
        rec = Recorder()
        client = C.RtrClient([spec(cache)], rec)
        client.start()
        try:
            await until(lambda: len(rec.vrp_events) == 1)
            assert rec.vrp_events[0] == (sorted([V1, V2, V3]), []) and cache.errors() == []
        finally:
            await client.stop()
            await cache.stop()

    run(main(), timeout=30)


@pytest.mark.parametrize("where", ["middle", "split"])
def test_bad_pdu_in_the_middle_of_a_chunk(run, caplog, where):
    """A malformed PDU among thousands in one read (or cut across two reads)
    is answered with an Error Report encapsulating exactly it; nothing of
    that answer is published, the next connection's clean answer is."""
    async def main():
        vrps = many_vrps(3000)
        pieces = answer(vrps)
        bad = _raw(P.IPV4_PREFIX, 0, bytes((1, 24, 20, 0)) + bytes(8))  # maxLength < length
        stream = b"".join(pieces[:1500]) + bad + b"".join(pieces[1500:])
        at = len(b"".join(pieces[:1500])) + 9
        first = [stream] if where == "middle" else [stream[:at], stream[at:]]
        cache = await ChunkCache([first, answer([V1, V4])]).start()
        rec = Recorder()
        client = C.RtrClient([spec(cache)], rec)
        caplog.set_level(logging.INFO, "fastbgp.rpki")
        client.start()
        try:
            await until(lambda: rec.vrp_events)
            assert [(e.code, e.pdu) for e in cache.errors()] == [(P.CORRUPT_DATA, bad)]
            assert rec.vrp_events == [(sorted([V1, V4]), [])] and published(client) == {V1, V4}
            assert any(r.levelno == logging.WARNING and "lost" in r.getMessage() for r in caplog.records)
        finally:
            await client.stop()
            await cache.stop()

    run(main(), timeout=30)


@pytest.mark.parametrize("cut, reason", [(4, "closed inside a PDU header"), (12, "closed inside a PDU")])
def test_cache_closing_inside_a_pdu(run, caplog, cut, reason):
    async def main():
        # the Cache Response, then ``cut`` octets of a Prefix PDU, then EOF
        pieces = [P.encode(P.CacheResponse(2, 7)) + P.encode(P.Prefix(2, True, *V1))[:cut], CLOSE]
        cache = await ChunkCache([pieces, answer([V2])]).start()
        rec = Recorder()
        client = C.RtrClient([spec(cache)], rec)
        caplog.set_level(logging.INFO, "fastbgp.rpki")
        client.start()
        try:
            await until(lambda: rec.vrp_events, timeout=5)
            assert rec.vrp_events == [([V2], [])]
            assert any(r.levelno == logging.WARNING and reason in r.getMessage() for r in caplog.records)
        finally:
            await client.stop()
            await cache.stop()

    run(main(), timeout=20)


def test_large_full_answer_releases_memory_after_sync():
    """sync.full_diff gives the same change set from a VrpTable as from a
    set; release_memory runs malloc_trim on Linux/glibc only."""
    import platform
    import sys

    from fastbgp.rpki import sync
    from fastbgp.rpki.aspa import AspaTable
    from fastbgp.rpki.vrp import VrpTable

    old, new = VrpTable(), VrpTable()
    before, after = set(many_vrps(500)[:300]), set(many_vrps(500)[200:])
    for v in before:
        old.add(*v)
    for v in after:
        new.add(*v)
    assert sync.full_diff(old, AspaTable(), new, {}) == sync.full_diff(old, AspaTable(), after, {})
    expect = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
    assert sync.release_memory() is expect


def test_pending_full_answer_holds_no_python_object_per_vrp(run):
    """While a full answer is being received its VRPs wait in a VrpTable
    (compiled: outside the Python heap), not as one tuple each: the Python
    heap grows by far less than the ~150 octets a VRP tuple takes."""
    import tracemalloc

    from fastbgp.rpki import vrp

    if vrp.IMPLEMENTATION == "python":
        pytest.skip("the compiled VRP table is not built")

    async def main():
        vrps = many_vrps(20000)
        pieces = answer(vrps)
        gate = asyncio.Event()
        cache = await ChunkCache([[b"".join(pieces[:-1]), gate, pieces[-1]]]).start()
        rec = Recorder()
        client = C.RtrClient([spec(cache)], rec)
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            client.start()
            samples = []
            for _ in range(150):  # until the client has read all but End of Data: the heap stays put
                await asyncio.sleep(0.2)
                samples.append(tracemalloc.get_traced_memory()[0])
                if len(samples) > 4 and max(samples[-4:]) - min(samples[-4:]) < 100_000 and \
                        cache.writers and all(w.transport.get_write_buffer_size() == 0 for w in cache.writers):
                    break
            grown = samples[-1] - base
            assert grown < 20 * len(vrps), grown
            gate.set()
            await until(lambda: rec.vrp_events)
            assert rec.vrp_events[0] == (sorted(vrps), [])
        finally:
            tracemalloc.stop()
            await client.stop()
            await cache.stop()

    run(main(), timeout=60)
