"""The RTR client (RFC 8210, RFC 6810, draft-ietf-sidrops-8210bis) on
asyncio.

:class:`RtrClient` keeps one published data set, ``client.vrps`` (a
``fastbgp.rpki.vrp.VrpTable``) and ``client.aspas`` (an
``fastbgp.rpki.aspa.AspaTable``), fed by the most preferred cache it can
reach (RFC 8210 §10: lower ``preference`` first, then configuration order).
Every change is applied to those tables first and then reported to the
:class:`RtrObserver` given to the client, in order, on the event loop:

* ``vrps_changed(added, removed)``: lists of VRP tuples ``(afi, address
  bytes, length, max length, asn)``; re-validate the routes in
  ``fastbgp.rpki.vrp.covered_range`` of each;
* ``aspas_changed(changed)``: ``{customer: providers tuple, or None when
  withdrawn}``;
* ``cache_changed(status)``: a :class:`CacheStatus` whenever a cache
  connects, updates, fails or expires.

Protocol behaviour:

* the first query of a connection is a Reset Query, or a Serial Query when
  the cache is the source of the published data and gave a session id;
* version: the configured one (default 2) is offered; an Error Report
  "Unsupported Protocol Version", or a first answer in a lower version,
  lowers it and the client reconnects at once (RFC 8210 §7);
* records between Cache Response and End of Data are buffered and applied
  atomically at End of Data (RFC 8210 §5.8), at most MAX_PENDING of them;
* refresh / retry / expire come from End of Data (version 1+, clamped to
  RFC 8210 §6 ranges), defaults 3600 / 600 / 7200 s, each overridable per
  cache; a Serial Notify starts a Serial Query when idle; a Cache Reset
  starts a Reset Query;
* the published data outlives a lost cache until the expire interval after
  the last End of Data, unless another cache's full answer replaces it
  (while the source session is up the data never expires);
* while a less preferred cache is in use, the more preferred ones are
  probed every retry interval and the client switches back when one answers;
* any malformed PDU is answered with the Error Report code of RFC 8210 §12
  and the session is closed (never an Error Report to an Error Report);
  losing a session is logged at WARNING with the reason.

Bounds: a PDU is at most ``pdu.MAX_PDU_LEN`` octets (1 MiB; longer is
Corrupt Data), the socket buffer is asyncio's (reading pauses past 128 KiB
unread) or, over SSH, the channel's receive window (``transport.SSH_WINDOW``,
2 MiB); the stream is read READ_CHUNK octets at a time and every complete
PDU of the buffer parsed in one pass, so the buffer holds at most one chunk
plus one incomplete PDU (under MAX_PDU_LEN + READ_CHUNK).  At most
MAX_PENDING records wait for End of Data: a full answer's VRPs in a VrpTable
of their own (no Python object per VRP), an incremental one's in a dict.  A
full answer is compared with the published set in memory (both sets at
once, once per Reset Query); after a change of at least
``sync.RELEASE_AFTER`` VRPs the freed memory is handed back
(``sync.release_memory``: gc, then malloc_trim on Linux/glibc).
"""

import asyncio
import logging
import time
from typing import Optional

import msgspec

from fastbgp.rpki import pdu as P
from fastbgp.rpki import sync
from fastbgp.rpki import transport as T
from fastbgp.rpki.aspa import AspaTable
from fastbgp.rpki.vrp import VrpTable

log = logging.getLogger("fastbgp.rpki")

# RFC 8210 §6 defaults (seconds).
DEFAULT_REFRESH = 3600
DEFAULT_RETRY = 600
DEFAULT_EXPIRE = 7200
# Records (VRPs, ASPAs, Router Keys) buffered between Cache Response and
# End of Data: a full global RPKI set is under 1M VRPs.  Past it the session
# ends with Internal Error and is retried later.
MAX_PENDING = 4_000_000
CONNECT_TIMEOUT = 10.0
# A cache that stays silent this long in the middle of a response, or does
# not take a PDU we write, has lost the session.
RESPONSE_TIMEOUT = 60.0
# Octets asked of the socket per read: a 500k-VRP answer (11 MB) is ~170
# reads instead of 1M (two per PDU), with one timeout per read, not per PDU.
READ_CHUNK = 1 << 16


class RtrObserver:
    """Receives the client's changes; subclass and override what you need.
    Exceptions raised here are logged, never propagated into the client."""

    def vrps_changed(self, added, removed):
        pass

    def aspas_changed(self, changed):
        pass

    def cache_changed(self, status):
        pass


class CacheStatus(msgspec.Struct):
    """What ``fastbgp rpki`` shows for one cache."""

    address: str
    port: int
    preference: int
    state: str = "idle"  # idle | connecting | up | down
    version: Optional[int] = None
    session_id: Optional[int] = None
    serial: Optional[int] = None
    source: bool = False  # its data is the published one
    last_update: Optional[float] = None  # wall clock of the last End of Data
    last_error: Optional[str] = None
    refresh: int = DEFAULT_REFRESH
    retry: int = DEFAULT_RETRY
    expire: int = DEFAULT_EXPIRE
    transport: str = "tcp"  # tcp | ssh (fastbgp.rpki.transport)


class SshSpec(msgspec.Struct, frozen=True):
    """How to reach a cache over SSH; ``fastbgp.config.schema.RpkiSsh`` has
    the same fields.  The host key is verified against ``host_key`` (an
    OpenSSH public key line) or the ``known_hosts`` file, unless
    ``insecure_accept_any_host_key``."""

    user: str
    password: Optional[str] = None
    private_key: Optional[str] = None  # an unencrypted OpenSSH / PEM private key file
    known_hosts: Optional[str] = None
    host_key: Optional[str] = None
    insecure_accept_any_host_key: bool = False


class CacheSpec(msgspec.Struct, frozen=True):
    """One cache to use; ``fastbgp.config.schema.RpkiCache`` has the same
    fields and is accepted as it is."""

    address: str
    port: int = 323
    preference: int = 0
    refresh: Optional[int] = None
    retry: Optional[int] = None
    expire: Optional[int] = None
    transport: str = "tcp"  # "tcp" | "ssh": see fastbgp.rpki.transport
    ssh: Optional[SshSpec] = None  # with transport "ssh"


class SessionEnd(Exception):
    """Ends one connection: ``reason`` is logged, ``again`` asks to
    reconnect at once (version downgrade) instead of after retry."""

    def __init__(self, reason, again=False, warn=True):
        super().__init__(reason)
        self.reason = reason
        self.again = again
        self.warn = warn


def _clamp(value, bounds):
    lo, hi = bounds
    return min(max(value, lo), hi)


class _Cache:
    """Per-cache state kept across connections."""

    def __init__(self, spec, rank, max_version):
        self.spec = spec
        self.rank = rank  # (preference, configuration order)
        self.version = max_version
        self.retry_at = 0.0
        self.status = CacheStatus(spec.address, spec.port, spec.preference, transport=T.transport_of(spec))
        self.set_timers(None, None, None)

    def set_timers(self, refresh, retry, expire):
        """Timers from End of Data (None: not sent), clamped to RFC 8210 §6,
        then the configured overrides."""
        s, st = self.spec, self.status
        st.refresh = s.refresh or (_clamp(refresh, P.REFRESH_RANGE) if refresh else DEFAULT_REFRESH)
        st.retry = s.retry or (_clamp(retry, P.RETRY_RANGE) if retry else DEFAULT_RETRY)
        st.expire = s.expire or (_clamp(expire, P.EXPIRE_RANGE) if expire else DEFAULT_EXPIRE)

    def name(self):
        return T.describe(self.spec)


class _Pending:
    """Records of one response, checked as they arrive (RFC 8210 §12 codes 6
    and 7) against the published table for a Serial Query answer."""

    def __init__(self, full, vrps, aspas):
        self.full = full
        self.vrps = vrps
        self.aspas = aspas
        # Full answer: a VrpTable (add/remove say whether the VRP was there,
        # which are RFC 8210 §12 codes 7 and 6); incremental: {vrp: announce}.
        self.vrp_ops = VrpTable() if full else {}
        self.aspa_ops = {}
        self.count = 0

    def prefix(self, p):
        if self.full:
            # parse_pdu checked the lengths, so the table takes every Prefix.
            if p.announce:
                if not self.vrp_ops.add(p.afi, p.addr, p.plen, p.maxlen, p.asn):
                    return P.DUPLICATE_ANNOUNCEMENT
            elif not self.vrp_ops.remove(p.afi, p.addr, p.plen, p.maxlen, p.asn):
                return P.WITHDRAWAL_OF_UNKNOWN
            return None
        vrp = (p.afi, p.addr, p.plen, p.maxlen, p.asn)
        ops = self.vrp_ops
        if vrp in ops:
            if ops[vrp] == p.announce:
                return P.DUPLICATE_ANNOUNCEMENT if p.announce else P.WITHDRAWAL_OF_UNKNOWN
            del ops[vrp]  # announced then withdrawn (or the reverse): no change
            return None
        present = self.vrps.contains(*vrp)
        if p.announce and present:
            return P.DUPLICATE_ANNOUNCEMENT
        if not p.announce and not present:
            return P.WITHDRAWAL_OF_UNKNOWN
        ops[vrp] = p.announce
        return None

    def aspa(self, a):
        known = a.customer in self.aspa_ops and self.aspa_ops[a.customer] is not None
        if not self.full and a.customer not in self.aspa_ops:
            known = self.aspas.get(a.customer) is not None
        if not a.announce and not known:
            return P.WITHDRAWAL_OF_UNKNOWN
        if a.announce:
            self.aspa_ops[a.customer] = tuple(sorted(set(a.providers)))
        elif self.full:
            del self.aspa_ops[a.customer]  # a full answer lists what exists
        else:
            self.aspa_ops[a.customer] = None
        return None


class _Connection:
    """One session with one cache: the RFC 8210 §8 conversation, over the
    reader / writer of ``fastbgp.rpki.transport.open_transport`` (TCP or
    SSH: the same reads, the same parser)."""

    def __init__(self, client, cache, reader, writer):
        self.client = client
        self.cache = cache
        self.reader = reader
        self.writer = writer
        self.version = cache.version
        self.answered = False  # a first PDU came back in this connection
        self.pending = None  # _Pending while a query is open
        self.querying = False
        self.session_id = None  # of the Cache Response being received
        self.refresh_at = 0.0
        self.buf = bytearray()  # octets read and not yet parsed (an incomplete PDU)
        self.chunk = b""  # the octets of the PDUs parsed from the last read
        self.span = (0, 0)  # where the PDU being handled is in ``chunk``
        self.ready = []  # PDUs parsed from the buffer, not yet handled: (pdu, start, stop)
        self.serial_tried = False  # a Serial Query was sent
        self.updated = False  # an End of Data was applied

    @property
    def raw(self):
        """The octets of the PDU being handled, encapsulated as received in
        an Error Report (RFC 8210 §5.11); sliced only when one is sent."""
        return self.chunk[self.span[0] : self.span[1]]

    async def send(self, data):
        try:
            self.writer.write(data)  # an SSH channel already closed raises here (transport.SshWriter)
            await asyncio.wait_for(self.writer.drain(), RESPONSE_TIMEOUT)
        except (OSError, asyncio.TimeoutError) as exc:
            raise SessionEnd("cannot write: %s" % (exc or type(exc).__name__)) from None

    async def fail(self, error):
        """Answer PduError ``error`` with an Error Report (RFC 8210 §12) and end."""
        if error.pdu[1:2] != bytes((P.ERROR_REPORT,)):  # never report an Error Report
            try:
                await self.send(P.error_report(self.version, error))
            except SessionEnd:
                pass
        raise SessionEnd("sent Error Report: %s" % error.describe())

    async def query(self):
        c = self.cache
        if self.client.source is c and c.status.session_id is not None:
            self.pending = _Pending(False, self.client.vrps, self.client.aspas)
            self.serial_tried = True
            await self.send(P.encode(P.SerialQuery(self.version, c.status.session_id, c.status.serial)))
        else:
            await self.reset_query()
        self.querying = True

    async def reset_query(self):
        self.pending = _Pending(True, self.client.vrps, self.client.aspas)
        self.session_id = None
        await self.send(P.encode(P.ResetQuery(self.version)))

    async def fill(self, timeout):
        """Read one chunk into the buffer and parse every complete PDU in it
        (``pdu.parse_buffer``) onto ``ready``; False when ``timeout`` passed
        with nothing read between PDUs.  Inside a PDU the wait is
        RESPONSE_TIMEOUT whatever ``timeout`` is."""
        partial = bool(self.buf)
        try:
            chunk = await asyncio.wait_for(self.reader.read(READ_CHUNK), RESPONSE_TIMEOUT if partial else timeout)
        except asyncio.TimeoutError:
            if partial:
                raise SessionEnd("stalled inside a PDU") from None
            return False
        except OSError as exc:
            raise SessionEnd(str(exc) or type(exc).__name__) from None
        if not chunk:
            if not partial:
                raise SessionEnd("closed by the cache")
            raise SessionEnd("closed inside a PDU header" if len(self.buf) < P.HEADER_LEN else "closed inside a PDU")
        buf = self.buf
        buf += chunk
        items, end = P.parse_buffer(buf)
        self.chunk = bytes(buf[: max(end, items[-1][2] if items else 0)])
        self.ready = items
        del buf[:end]
        return True

    async def run(self):
        await self.query()
        while True:
            if self.querying:
                timeout = RESPONSE_TIMEOUT
            else:
                timeout = max(0.0, self.refresh_at - time.monotonic())
            if not await self.fill(timeout):
                if self.querying:
                    raise SessionEnd("no answer for %d s" % RESPONSE_TIMEOUT)
                await self.query()  # refresh timer (RFC 8210 §6)
                continue
            ready, self.ready = self.ready, []
            for pdu, start, stop in ready:
                self.span = (start, stop)
                if isinstance(pdu, P.PduError):
                    await self.fail(pdu)
                if type(pdu) is P.Prefix and pdu.version == self.version and self.answered:
                    await self.record(pdu)  # the bulk of a response: straight to the pending set
                else:
                    await self.handle(pdu)

    async def check_version(self, pdu):
        if pdu.version == self.version:
            self.answered = True
            return
        if not self.answered and pdu.version < self.version:
            # RFC 8210 §7: the cache speaks a lower version; use it.
            self.cache.version = pdu.version
            raise SessionEnd("cache answered in version %d, retrying with it" % pdu.version, again=True,
                             warn=False)
        if isinstance(pdu, P.ErrorReport):
            return  # reported below whatever its version
        await self.fail(P.PduError(P.UNEXPECTED_VERSION, self.raw,
                                   "version %d in a version %d session" % (pdu.version, self.version)))

    async def handle(self, pdu):
        if log.isEnabledFor(logging.DEBUG):
            log.debug("RTR %s: received %s", self.cache.name(), type(pdu).__name__)
        await self.check_version(pdu)
        if isinstance(pdu, P.ErrorReport):
            self.error_report(pdu)
        elif isinstance(pdu, P.SerialNotify):
            if not self.querying:  # RFC 8210 §5.2: a hint to query now
                await self.query()
        elif isinstance(pdu, P.CacheResponse):
            await self.cache_response(pdu)
        elif isinstance(pdu, (P.Prefix, P.Aspa, P.RouterKey)):
            await self.record(pdu)
        elif isinstance(pdu, P.EndOfData):
            await self.end_of_data(pdu)
        elif isinstance(pdu, P.CacheReset):
            if not self.querying:
                await self.fail(P.PduError(P.CORRUPT_DATA, self.raw, "Cache Reset without a query"))
            await self.reset_query()  # RFC 8210 §8.3: the serial is no longer available
        else:  # Serial Query / Reset Query travel from routers only
            await self.fail(P.PduError(P.INVALID_REQUEST, self.raw, "%s sent to a router"
                                       % type(pdu).__name__))

    def error_report(self, pdu):
        name = P.ERROR_NAMES.get(pdu.code, "error %d" % pdu.code)
        if pdu.code == P.UNSUPPORTED_VERSION and self.version > 0:
            # RFC 8210 §7: try the next lower version.
            self.cache.version = min(self.version - 1, pdu.version)
            raise SessionEnd("cache does not speak version %d, retrying with %d" % (self.version,
                             self.cache.version), again=True, warn=False)
        if pdu.code == P.NO_DATA_AVAILABLE:
            raise SessionEnd("cache has no data yet (No Data Available)")
        raise SessionEnd("cache sent Error Report %s: %s" % (name, pdu.text))

    async def cache_response(self, pdu):
        if not self.querying or self.pending is None or self.pending.count:
            await self.fail(P.PduError(P.CORRUPT_DATA, self.raw, "unexpected Cache Response"))
        st = self.cache.status
        if not self.pending.full and pdu.session_id != st.session_id:
            # RFC 8210 §5.1: a session id mismatch is Corrupt Data; the next
            # connection starts over with a Reset Query (the published data
            # stays until that full answer replaces it, so routes do not flap).
            expected, st.session_id = st.session_id, None
            await self.fail(P.PduError(P.CORRUPT_DATA, self.raw, "session id %d, expected %s"
                                       % (pdu.session_id, expected)))
        self.session_id = pdu.session_id

    async def record(self, pdu):
        pending = self.pending
        if not self.querying or pending is None or self.session_id is None:
            await self.fail(P.PduError(P.CORRUPT_DATA, self.raw, "%s outside a response" % type(pdu).__name__))
        pending.count += 1
        if pending.count > MAX_PENDING:
            await self.fail(P.PduError(P.INTERNAL_ERROR, self.raw, "more than %d records in one response"
                                       % MAX_PENDING))
        if isinstance(pdu, P.RouterKey):
            return  # BGPsec router keys: not used, skipped (RFC 8210 §5.10)
        code = pending.prefix(pdu) if isinstance(pdu, P.Prefix) else pending.aspa(pdu)
        if code is not None:
            await self.fail(P.PduError(code, self.raw, "%s" % P.ERROR_NAMES[code]))

    async def end_of_data(self, pdu):
        if not self.querying or self.session_id is None:
            await self.fail(P.PduError(P.CORRUPT_DATA, self.raw, "End of Data outside a response"))
        if pdu.session_id != self.session_id:
            await self.fail(P.PduError(P.CORRUPT_DATA, self.raw, "End of Data session id %d, expected %d"
                                       % (pdu.session_id, self.session_id)))
        c, st = self.cache, self.cache.status
        c.set_timers(pdu.refresh, pdu.retry, pdu.expire)
        st.session_id, st.serial, st.version = self.session_id, pdu.serial, self.version
        st.last_update, st.last_error, st.state = time.time(), None, "up"
        changed = self.client.publish(c, self.pending)
        self.pending, self.querying, self.session_id = None, False, None
        if changed >= sync.RELEASE_AFTER:
            sync.release_memory()  # the sync's tuples, lists and pending table are gone now
        self.updated = True
        self.refresh_at = time.monotonic() + st.refresh


class RtrClient:
    """RTR client over several caches; see the module docstring."""

    def __init__(self, caches, observer=None, version=P.MAX_VERSION, vrps=None, aspas=None):
        if not 0 <= version <= P.MAX_VERSION:
            raise ValueError("RTR version %r (0, 1 or 2)" % (version,))
        self.observer = observer or RtrObserver()
        self.vrps = VrpTable() if vrps is None else vrps
        self.aspas = AspaTable() if aspas is None else aspas
        ordered = sorted(enumerate(caches), key=lambda ic: (ic[1].preference, ic[0]))
        self.caches = [_Cache(spec, (spec.preference, i), version) for i, spec in ordered]
        self.source = None  # the _Cache whose data is published
        self.expires_at = None  # monotonic time the published data expires
        self._task = None

    # ---------------------------------------------------------- interface

    def start(self):
        """Run the client in a task of the running loop; returns the task."""
        self._task = asyncio.get_running_loop().create_task(self.run(), name="rtr-client")
        return self._task

    async def stop(self):
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    def status(self):
        """[CacheStatus] in preference order."""
        for c in self.caches:
            c.status.source = c is self.source
        return [c.status for c in self.caches]

    # ------------------------------------------------------------- running

    async def run(self):
        watchdog = asyncio.get_running_loop().create_task(self._expiry())
        try:
            conn = None
            while True:
                if conn is None:
                    conn = await self._connect(self.caches)
                if conn is None:
                    due = min(c.retry_at for c in self.caches)
                    await asyncio.sleep(max(0.05, due - time.monotonic()))
                    continue
                conn = await self._serve(*conn)
        finally:
            watchdog.cancel()

    async def _connect(self, caches):
        """(cache, reader, writer) of the first cache in ``caches`` that is
        due and answers (a TCP connection, or an SSH connection with the
        "rpki-rtr" subsystem: ``transport.open_transport``), else None.  A
        refused connection, an SSH authentication or host key failure is a
        WARNING naming the cache and the reason; retried after its retry
        interval."""
        now = time.monotonic()
        for c in caches:
            if c.retry_at > now:
                continue
            self._set_state(c, "connecting")
            try:
                reader, writer = await T.open_transport(c.spec, CONNECT_TIMEOUT)
            except (OSError, asyncio.TimeoutError) as exc:
                c.retry_at = time.monotonic() + c.status.retry
                c.status.last_error = "connect: %s" % (exc or type(exc).__name__)
                self._set_state(c, "down")
                log.warning("RTR cache %s unreachable: %s", c.name(), c.status.last_error)
                continue
            return c, reader, writer
        return None

    async def _serve(self, cache, reader, writer):
        """Run one connection until it ends or a more preferred cache
        answers; returns that cache's connection or None."""
        conv = _Connection(self, cache, reader, writer)
        better = [c for c in self.caches if c.rank < cache.rank]
        tasks = {asyncio.ensure_future(conv.run())}
        probe = asyncio.ensure_future(self._probe(better)) if better else None
        if probe:
            tasks.add(probe)
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in tasks:
                t.cancel()
            writer.close()
        if probe in done and not probe.cancelled() and probe.exception() is None:
            log.info("RTR: switching from %s to the more preferred cache %s", cache.name(),
                     probe.result()[0].name())
            self._set_state(cache, "idle")
            return probe.result()
        run = next(t for t in done if t is not probe)
        exc = run.exception() if not run.cancelled() else None
        reason = exc.reason if isinstance(exc, SessionEnd) else repr(exc)
        again = isinstance(exc, SessionEnd) and exc.again
        if isinstance(exc, SessionEnd) and not exc.warn:
            log.info("RTR session to %s: %s", cache.name(), reason)
        else:
            log.warning("RTR session to %s lost: %s", cache.name(), reason)
        cache.status.last_error = reason
        if conv.serial_tried and not conv.updated:
            # The cache may have restarted with a new session (stayrtr closes
            # such a connection): start over with a Reset Query; the
            # published data stays until its answer replaces it.
            cache.status.session_id = None
        if not again:
            cache.retry_at = time.monotonic() + cache.status.retry
        self._set_state(cache, "down")
        return None

    async def _probe(self, caches):
        try:
            while True:
                due = min(c.retry_at for c in caches)
                await asyncio.sleep(max(0.05, due - time.monotonic()))
                conn = await self._connect(caches)
                if conn is not None:
                    return conn
        except Exception:  # a bug here must not end the session in use
            log.exception("RTR: probing the more preferred caches failed")
            await asyncio.Event().wait()

    async def _expiry(self):
        """Drops the published data when it expires (RFC 8210 §6)."""
        while True:
            now = time.monotonic()
            # RFC 8210 §6: expire bounds how long data is used "while unable
            # to perform a successful subsequent query": not while the source
            # session is up (a stalled one is ended by RESPONSE_TIMEOUT).
            live = self.source is not None and self.source.status.state == "up"
            if self.expires_at is not None and now >= self.expires_at and not live:
                log.warning("RPKI data from %s expired: no successful update for %d s",
                            self.source.name() if self.source else "cache", self.source.status.expire
                            if self.source else 0)
                self._flush()
                continue
            wait = 1.0 if self.expires_at is None else min(1.0, self.expires_at - now)
            await asyncio.sleep(max(0.01, wait))

    # ---------------------------------------------------------- publishing

    def publish(self, cache, pending):
        """Apply a complete response (End of Data) from ``cache``."""
        if pending.full:
            added, removed, aspa_changes = sync.full_diff(self.vrps, self.aspas, pending.vrp_ops, pending.aspa_ops)
            pending.vrp_ops = None  # the response's own table goes before the published one grows
        else:
            added = sorted(v for v, a in pending.vrp_ops.items() if a)
            removed = sorted(v for v, a in pending.vrp_ops.items() if not a)
            aspa_changes = pending.aspa_ops
        self._apply(added, removed, aspa_changes)
        changed = len(added) + len(removed)
        if self.source is not cache and self.source is not None:
            self.source.status.session_id = None  # its serial no longer describes our data
        self.source = cache
        self.expires_at = time.monotonic() + cache.status.expire
        self._notify("cache_changed", cache.status)
        return changed

    def _apply(self, added, removed, aspa_changes):
        sync.apply(self.vrps, self.aspas, added, removed, aspa_changes)
        if added or removed:
            self._notify("vrps_changed", added, removed)
        if aspa_changes:
            self._notify("aspas_changed", dict(aspa_changes))

    def _flush(self):
        removed = sorted(sync.all_vrps(self.vrps))
        self._apply([], removed, {c: None for c, _p in self.aspas.items()})
        if self.source is not None:
            self.source.status.session_id = None
            self._notify("cache_changed", self.source.status)
        self.source = None
        self.expires_at = None

    def _set_state(self, cache, state):
        cache.status.state = state
        self._notify("cache_changed", cache.status)

    def _notify(self, what, *args):
        try:
            getattr(self.observer, what)(*args)
        except Exception:  # an observer's bug must not stop RPKI updates
            log.exception("RTR observer %s failed", what)
