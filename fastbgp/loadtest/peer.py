"""Lean BGP sessions for load testing: many emulated peers on one event loop.

The full :mod:`fastbgp.session.protocol` keeps an Adj-RIB-In, runs policy and an
RFC 4271 FSM object per connection; a load peer needs none of that.  Here a
session is one :class:`asyncio.Protocol` with a four-state life (RFC 4271
§8.2.2 reduced to the active side: Connect -> OpenSent -> OpenConfirm ->
Established), and everything per-prefix stays in C:

* sending: pre-encoded chunks of a shared :class:`~.generator.Stream`,
  written while the transport is below its high-water mark and resumed from
  ``resume_writing`` (back-pressure, never an unbounded buffer);
* receiving: :class:`~.gen.Skipper` counts what the target sends without
  copying UPDATE bodies;
* timers: one ticker per loop walks all sessions every ``TICK`` seconds,
  sends due KEEPALIVEs straight to the transport (not behind a send queue)
  and enforces our hold timer.  Pump callbacks write at most
  ``PUMP_BUDGET`` octets each, so the ticker is never held up by a blast.

:class:`MonitorSession` is the same protocol with the compiled decoder on
the receive side: it counts announcements and withdrawals with
``codec.parse_update`` and can track the exact prefix set.
"""

from __future__ import annotations

import asyncio
import collections
import fcntl
import logging
import socket
import struct
import termios
import time
from typing import Callable, Optional

from fastbgp.wire import capabilities as caps
from fastbgp.wire import codec
from fastbgp.session import transport as _transport
from fastbgp.wire.types import Context
from fastbgp.wire.constants import AFI_IPV4, AFI_IPV6, SAFI_UNICAST
from fastbgp.wire.errors import BGPError
from fastbgp.session.fsm import keepalive_interval, negotiate_hold_time
from fastbgp.loadtest import gen
from fastbgp.loadtest.generator import Encoding

log = logging.getLogger("fastbgp.loadtest")

IDLE, CONNECT, OPENSENT, OPENCONFIRM, ESTABLISHED = range(5)
STATE_NAMES = ("idle", "connect", "opensent", "openconfirm", "established")

TICK = 0.25
PUMP_BUDGET = 1 << 20
# Small application-level buffer: the kernel socket buffer does the
# queueing, and a KEEPALIVE written by the ticker waits behind at most this.
WRITE_HIGH = 64 * 1024
WRITE_LOW = 16 * 1024
# RFC 4271 §4.2: a hold time proposed while the OPEN exchange runs
# (§8.2.2 suggests 4 minutes for the OpenSent wait).
OPEN_WAIT = 240.0


class SessionConfig:
    """Per-session settings (plain attributes: cheap for 1,000 sessions)."""

    __slots__ = ("index", "address", "asn", "router_id", "target", "port", "target_asn", "hold_time", "keepalive",
                 "four_octet_as", "addpath", "extended_message", "md5_password", "ttl", "ebgp", "family", "cap")

    def __init__(self, index, address, asn, router_id, target, port=179, target_asn=0, hold_time=90,
                 keepalive=None, four_octet_as=True, addpath=False, extended_message=False, md5_password=None,
                 ttl=None, ebgp=True, family="ipv4", cap=0):
        self.index = index
        self.address = address
        self.asn = asn
        self.router_id = router_id
        self.target = target
        self.port = port
        self.target_asn = target_asn
        self.hold_time = hold_time
        self.keepalive = keepalive
        self.four_octet_as = four_octet_as
        self.addpath = addpath
        self.extended_message = extended_message
        self.md5_password = md5_password
        self.ttl = ttl
        self.ebgp = ebgp
        self.family = family
        self.cap = cap

    def capabilities(self, receive_addpath=False) -> list:
        """Our OPEN capabilities (RFC 5492): multiprotocol for the table's
        family (RFC 4760 §8), 4-octet AS (RFC 6793 §3), ADD-PATH send
        (RFC 7911 §4), extended messages (RFC 8654 §3)."""
        afi = AFI_IPV4 if self.family == "ipv4" else AFI_IPV6
        out = [caps.Multiprotocol(afi, SAFI_UNICAST)]
        if self.four_octet_as:
            out.append(caps.FourOctetAS(self.asn))
        if self.addpath or receive_addpath:
            out.append(caps.AddPath([(afi, SAFI_UNICAST, (2 if self.addpath else 0) | (1 if receive_addpath else 0))]))
        if self.extended_message:
            out.append(caps.ExtendedMessage())
        return out


def unacked_octets(transport) -> Optional[int]:
    """Octets written to ``transport`` that the other side's TCP has not
    acknowledged yet: asyncio's own buffer plus the kernel send queue
    (SIOCOUTQ = TIOCOUTQ on Linux: unsent + sent-but-unacknowledged,
    tcp(7)).  None when the socket is gone or the ioctl is refused."""
    if transport is None or transport.is_closing():
        return None
    sock = transport.get_extra_info("socket")
    if sock is None:
        return None
    try:
        buf = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
    except (OSError, ValueError):
        return None
    return transport.get_write_buffer_size() + struct.unpack("i", buf)[0]


class Job:
    """Messages i..bounds[-1] of a Stream to send: ``bounds`` are chunk
    ends, ``release`` (optional) the loop-time offset before which chunk j
    may not start (paced sending, replay timing)."""

    __slots__ = ("stream", "bounds", "release", "j", "prev", "t0", "done", "asn", "nh", "sent", "kind",
                 "first_write", "last_write")

    def __init__(self, stream, bounds, release=None, asn=None, nh=None, kind="announce"):
        self.stream = stream
        self.bounds = bounds
        self.release = release
        self.j = 0
        self.prev = 0
        self.t0 = 0.0
        self.done: Optional[asyncio.Future] = None
        self.asn = asn
        self.nh = nh
        self.sent = 0
        self.kind = kind
        self.first_write = None
        self.last_write = None


class BgpLink(asyncio.Protocol):
    """The OPEN exchange and timers shared by load peers and the monitor."""

    role = "peer"

    def __init__(self, cfg: SessionConfig, loop: asyncio.AbstractEventLoop):
        self.cfg = cfg
        self.loop = loop
        self.state = IDLE
        self.transport = None
        self.paused = False
        self.hold = 0
        self.keepalive = 0
        self.next_ka = 0.0
        self.last_rx = 0.0
        self.encoding: Optional[Encoding] = None
        self.ctx: Optional[Context] = None
        self.remote_caps: list = []
        self.remote_id = 0
        self.established_at: Optional[float] = None  # time.monotonic()
        self.established_count = 0
        self.drops = 0
        self.hold_expired = 0
        self.notifications_rx: list = []
        self.notifications_tx: list = []
        self.last_error: Optional[str] = None
        self.keepalives_tx = 0
        self._waiters: list = []
        self._closing = False
        self.on_state: Optional[Callable] = None
        # Delivery bookkeeping: every octet written on this connection is
        # counted, and (octet offset where a write ends, announced,
        # withdrawn prefixes in it) kept for UPDATE writes the target's TCP
        # has not acknowledged yet -- at most one entry per chunk in flight.
        self._conn_octets = 0
        self._inflight: collections.deque = collections.deque()

    def _wrote(self, n_octets, announced=0, withdrawn=0):
        self._conn_octets += n_octets
        if announced or withdrawn:
            self._inflight.append((self._conn_octets, announced, withdrawn))

    # -- connecting ---------------------------------------------------------

    async def connect(self, timeout=10.0):
        """One connection attempt; raises OSError on failure."""
        cfg = self.cfg
        self.state = CONNECT
        self._closing = False
        sock = _transport.create_connect_socket(cfg.target, local_address=cfg.address, md5_password=cfg.md5_password,
                                                ttl=cfg.ttl, ebgp=False)
        try:
            addr = (cfg.target, cfg.port, 0, 0) if sock.family == socket.AF_INET6 else (cfg.target, cfg.port)
            await asyncio.wait_for(self.loop.sock_connect(sock, addr), timeout)
            await self.loop.create_connection(lambda: self, sock=sock)
        except BaseException:
            sock.close()
            if self.state == CONNECT:
                self.state = IDLE
            raise

    def connection_made(self, transport):
        self.transport = transport
        transport.set_write_buffer_limits(high=WRITE_HIGH, low=WRITE_LOW)
        self.paused = False
        self.last_rx = self.loop.time()
        self._conn_octets = 0
        self._inflight.clear()
        cfg = self.cfg
        op = codec.build_open(cfg.asn, cfg.hold_time, cfg.router_id, caps.encode_all(self.local_capabilities()))
        transport.write(op)
        self._wrote(len(op))
        self.state = OPENSENT

    def local_capabilities(self):
        return self.cfg.capabilities()

    def connection_lost(self, exc):
        was = self.state
        self.state = IDLE
        self.transport = None
        self.paused = False
        if was == ESTABLISHED:
            self.drops += 1
        if exc is not None and not self._closing and self.last_error is None:
            self.last_error = str(exc)
        self._lost(was)
        self._wake()

    def _lost(self, was):
        pass

    def pause_writing(self):
        self.paused = True

    def resume_writing(self):
        self.paused = False
        self._resume()

    def _resume(self):
        pass

    # -- messages -------------------------------------------------------------

    def _handle(self, mtype, body):
        """Non-UPDATE messages (both subclasses)."""
        if mtype == 1:
            self._on_open(body)
        elif mtype == 3:
            try:
                code, sub, data = codec.parse_notification(body)
            except BGPError:
                code, sub, data = 0, 0, b""
            self.notifications_rx.append((code, sub))
            self.last_error = "NOTIFICATION %d/%d received%s" % (code, sub, _cease_text(code, sub, data))
            self._close()
        elif mtype == 4:
            self._on_keepalive()
        elif mtype == 5:
            pass  # ROUTE-REFRESH: never offered (RFC 2918 §3), ignored
        else:
            self._fail(BGPError(1, 3, bytes((mtype,)), "unexpected message type %d" % mtype))

    def _on_keepalive(self):
        if self.state == OPENCONFIRM:
            self._established()

    def _on_open(self, body):
        if self.state != OPENSENT:
            # RFC 6608 §4: an OPEN in OpenConfirm/Established is an FSM error.
            self._fail(BGPError(5, 2 if self.state == OPENCONFIRM else 3, b"", "unexpected OPEN"))
            return
        try:
            op = codec.parse_open(body)
            remote = caps.decode_all(op.capabilities)
            hold = negotiate_hold_time(self.cfg.hold_time, op.hold_time)
        except BGPError as exc:
            self._fail(exc)
            return
        as4cap = next((c for c in remote if isinstance(c, caps.FourOctetAS)), None)
        peer_as = as4cap.asn if as4cap is not None else op.asn
        want = self.cfg.target_asn
        if want and peer_as != want:
            # RFC 4271 §6.2: Bad Peer AS, data = the AS field of the OPEN.
            self._fail(BGPError(2, 2, op.asn.to_bytes(2, "big"), "target sent AS %d, expected %d" % (peer_as, want)))
            return
        self.remote_caps = remote
        self.remote_id = op.bgp_id
        self.hold = hold
        self.keepalive = keepalive_interval(hold, self.cfg.keepalive)
        afi = AFI_IPV4 if self.cfg.family == "ipv4" else AFI_IPV6
        as4 = self.cfg.four_octet_as and as4cap is not None
        addpath_tx = False
        addpath_rx = False
        for c in remote:
            if isinstance(c, caps.AddPath):
                for a, s, sr in c.families:
                    if (a, s) == (afi, SAFI_UNICAST):
                        # RFC 7911 §4: we may send path ids when we said
                        # send and the peer said receive.
                        addpath_tx = self.cfg.addpath and bool(sr & 1)
                        addpath_rx = self._wants_addpath_rx() and bool(sr & 2)
        ext = self.cfg.extended_message and any(isinstance(c, caps.ExtendedMessage) for c in remote)
        self.encoding = Encoding(as4, addpath_tx, 65535 if ext else 4096, self.cfg.cap)
        fam = (afi, SAFI_UNICAST)
        self.ctx = Context(as4=as4, addpath_tx=frozenset([fam]) if addpath_tx else frozenset(),
                           addpath_rx=frozenset([fam]) if addpath_rx else frozenset(), extended_message=ext,
                           ebgp=self.cfg.ebgp)
        self.state = OPENCONFIRM
        self._write_keepalive()

    def _wants_addpath_rx(self):
        return False

    def _established(self):
        self.state = ESTABLISHED
        self.established_at = time.monotonic()
        self.established_count += 1
        self.last_error = None
        self._on_established()
        self._wake()

    def _on_established(self):
        pass

    def _write_keepalive(self):
        t = self.transport
        if t is not None and not t.is_closing():
            # Straight to the transport, never behind queued UPDATE chunks:
            # at most WRITE_HIGH octets can be ahead of it in user space.
            t.write(codec.KEEPALIVE)
            self._wrote(len(codec.KEEPALIVE))
            self.keepalives_tx += 1
            self.next_ka = self.loop.time() + self.keepalive if self.keepalive else float("inf")

    def tick(self, now):
        """Called by the ticker: due KEEPALIVE, hold timer (RFC 4271 §4.4, §6.5)."""
        st = self.state
        if st < OPENSENT:
            return
        if st == OPENSENT:
            if now - self.last_rx > OPEN_WAIT:
                self._fail(BGPError(4, 0, b"", "no OPEN from the target"))
            return
        if self.hold and now - self.last_rx > self.hold:
            self.hold_expired += 1
            self._fail(BGPError(4, 0, b"", "hold timer expired (%ds without a message)" % self.hold))
            return
        if self.keepalive and now >= self.next_ka:
            self._write_keepalive()

    def _fail(self, exc: BGPError):
        self.last_error = str(exc.reason if hasattr(exc, "reason") and exc.reason else exc)
        self.send_notification(exc.code, exc.subcode, exc.data or b"")
        self._close()

    def send_notification(self, code, subcode, data=b""):
        t = self.transport
        if t is not None and not t.is_closing():
            msg = codec.build_notification(code, subcode, data)
            t.write(msg)
            self._wrote(len(msg))
            self.notifications_tx.append((code, subcode))

    def _close(self):
        self._closing = True
        t = self.transport
        if t is not None:
            # close() flushes what is buffered (the NOTIFICATION) first.
            t.close()

    def abort(self):
        self._closing = True
        if self.transport is not None:
            self.transport.abort()

    def stop(self, subcode=2, message=b""):
        """Cease (RFC 4486): 2 Administrative Shutdown, 4 Administrative Reset."""
        if self.state >= OPENSENT:
            self.send_notification(6, subcode, message)
        self._close()

    # -- waiting --------------------------------------------------------------

    def _wake(self):
        ws, self._waiters = self._waiters, []
        for f in ws:
            if not f.done():
                f.set_result(None)

    async def wait_change(self, timeout):
        f = self.loop.create_future()
        self._waiters.append(f)
        try:
            await asyncio.wait_for(f, timeout)
        except asyncio.TimeoutError:
            pass

    @property
    def established(self):
        return self.state == ESTABLISHED


def _cease_text(code, sub, data):
    if code == 6 and sub in (2, 4) and data:
        # RFC 9003 §2: shutdown communication, a length octet then UTF-8.
        n = data[0]
        try:
            return ": %r" % data[1 : 1 + n].decode("utf-8")
        except UnicodeDecodeError:
            return ""
    return ""


class LoadPeer(BgpLink):
    """An emulated peer: sends pre-encoded chunks, discards what it receives."""

    def __init__(self, cfg, loop):
        super().__init__(cfg, loop)
        self.skipper = None
        self.job: Optional[Job] = None
        self.urgent: list = []
        self._pump_handle = None
        self.sent_prefixes = 0
        self.sent_withdrawn = 0
        self.sent_updates = 0
        self.sent_octets = 0
        self.rx_updates = 0
        self.rx_octets = 0
        self.delivered_prefixes = 0
        self.delivered_withdrawn = 0

    def connection_made(self, transport):
        self.skipper = gen.Skipper()
        super().connection_made(transport)

    def poll_delivered(self):
        """Move the prefixes of every write the target's TCP acknowledged
        completely to ``delivered_prefixes`` / ``delivered_withdrawn``; one
        ioctl, and only while something is in flight."""
        q = self._inflight
        if not q:
            return
        n = unacked_octets(self.transport)
        if n is None:
            return
        acked = self._conn_octets - n
        while q and q[0][0] <= acked:
            _end, a, w = q.popleft()
            self.delivered_prefixes += a
            self.delivered_withdrawn += w

    def data_received(self, data):
        self.last_rx = self.loop.time()
        sk = self.skipper
        ka = sk.keepalives
        try:
            others = sk.feed(data)
        except ValueError as exc:
            self._fail(BGPError(1, 1, b"", str(exc)))
            return
        for mtype, body in others:
            self._handle(mtype, body)
            if self.transport is None or self._closing:
                return
        # The Skipper counts KEEPALIVEs without their position; the OPEN
        # and the first KEEPALIVE often share one read, so the count is
        # looked at after the OPEN was handled (RFC 4271 §8.2.2: KEEPALIVE
        # in OpenConfirm -> Established).
        if sk.keepalives != ka and self.state == OPENCONFIRM:
            self._established()

    def _lost(self, was):
        sk = self.skipper
        if sk is not None:
            self.rx_updates += sk.updates
            self.rx_octets += sk.octets
            self.skipper = None
        if self._pump_handle is not None:
            self._pump_handle.cancel()
            self._pump_handle = None
        job, self.job = self.job, None
        if job is not None and job.done is not None and not job.done.done():
            job.done.set_result(False)
        self.urgent.clear()
        # What was not acknowledged when the connection went is lost.
        self._inflight.clear()

    def received_updates(self):
        return self.rx_updates + (self.skipper.updates if self.skipper is not None else 0)

    # -- sending --------------------------------------------------------------

    def start_job(self, job: Job) -> asyncio.Future:
        """Send ``job``; the future resolves True when its last chunk was
        handed to the transport, False if the session went down first."""
        job.done = self.loop.create_future()
        if self.state != ESTABLISHED:
            job.done.set_result(False)
            return job.done
        old = self.job
        if old is not None and old.done is not None and not old.done.done():
            old.done.set_result(False)
        job.t0 = self.loop.time()
        self.job = job
        self._schedule(0)
        return job.done

    def send_now(self, msg: bytes) -> float:
        """Write one small message (a canary) at the next chunk boundary --
        which is now: chunks are written whole inside one callback.  Returns
        the time.monotonic() it was handed to the transport."""
        t = self.transport
        if t is None or self.state != ESTABLISHED:
            return 0.0
        t.write(msg)
        self._wrote(len(msg))
        self.sent_updates += 1
        self.sent_octets += len(msg)
        return time.monotonic()

    def _schedule(self, delay):
        if self._pump_handle is not None:
            return
        if delay <= 0:
            self._pump_handle = self.loop.call_soon(self._pump)
        else:
            self._pump_handle = self.loop.call_later(delay, self._pump)

    def _resume(self):
        if self.job is not None:
            self._schedule(0)

    def _pump(self):
        self._pump_handle = None
        job = self.job
        t = self.transport
        if job is None or t is None or self.state != ESTABLISHED:
            return
        budget = PUMP_BUDGET
        stream = job.stream
        bounds = job.bounds
        release = job.release
        nb = len(bounds)
        while not self.paused:
            j = job.j
            if j >= nb:
                self.job = None
                if job.done is not None and not job.done.done():
                    job.done.set_result(True)
                return
            if release is not None:
                wait = job.t0 + release[j] - self.loop.time()
                if wait > 0:
                    self._schedule(wait)
                    return
            b = bounds[j]
            data = stream.chunk(job.prev, b, job.asn, job.nh)
            if job.first_write is None:
                job.first_write = time.monotonic()
            t.write(data)
            n = stream.prefixes(job.prev, b)
            if job.kind == "withdraw":
                self.sent_withdrawn += n
                self._wrote(len(data), 0, n)
            else:
                self.sent_prefixes += n
                self._wrote(len(data), n, 0)
            job.sent += n
            self.sent_updates += b - job.prev
            self.sent_octets += len(data)
            job.prev = b
            job.j = j + 1
            job.last_write = time.monotonic()
            budget -= len(data)
            if budget <= 0:
                # Let timers and the other sessions run.
                self._schedule(0)
                return
        # Paused: resume_writing() reschedules.


class Ticker:
    """One timer for all sessions of a loop (KEEPALIVE and hold timers)."""

    def __init__(self, loop, sessions):
        self.loop = loop
        self.sessions = sessions
        self.handle = None
        self.max_lag = 0.0
        self._due = 0.0

    def start(self):
        self._due = self.loop.time() + TICK
        self.handle = self.loop.call_at(self._due, self._tick)

    def _tick(self):
        now = self.loop.time()
        # How late this tick ran: the bound on how late a KEEPALIVE can go out.
        lag = now - self._due
        if lag > self.max_lag:
            self.max_lag = lag
        for s in self.sessions:
            if s.state >= OPENSENT:
                s.tick(now)
        self._due = now + TICK
        self.handle = self.loop.call_at(self._due, self._tick)

    def stop(self):
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None


# ---------------------------------------------------------------------- monitor


class MonitorSession(BgpLink):
    """Receives from the target: counts with the compiled decoder, tracks
    the exact prefix set when asked, spots canaries."""

    role = "monitor"

    def __init__(self, cfg, loop, *, exact=False, canary_net=None):
        super().__init__(cfg, loop)
        self.reader = None
        self.exact = exact
        self.present: set = set()
        self.announced = 0  # prefixes announced to us, cumulative
        self.withdrawn = 0
        self.updates = 0
        self.eor = False
        self.errors = 0
        self.last_change = 0.0  # time.monotonic() of the last prefix seen
        self.first_change = None
        self.canary_net = canary_net  # (address octets, length, width)
        self.canaries: dict = {}  # key -> time.monotonic() first seen
        self.width = 32 if cfg.family == "ipv4" else 128
        self.on_update: Optional[Callable] = None

    def connection_made(self, transport):
        self.reader = codec.MessageReader()
        super().connection_made(transport)

    def data_received(self, data):
        self.last_rx = self.loop.time()
        try:
            msgs = self.reader.feed(data)
        except BGPError as exc:
            self._fail(exc)
            return
        if not msgs:
            return
        now = time.monotonic()
        parse = codec.parse_update
        ctx = self.ctx
        for mtype, body in msgs:
            if mtype == 2:
                if self.state != ESTABLISHED:
                    self._fail(BGPError(5, 2, b"", "UPDATE before Established"))
                    return
                try:
                    u = parse(body, ctx)
                except BGPError as exc:
                    self.errors += 1
                    self.last_error = str(exc)
                    continue
                self.updates += 1
                if u.n_announced or u.n_withdrawn:
                    self._count(u, now)
                elif u.is_eor:
                    self.eor = True
            else:
                self._handle(mtype, body)
                if self.transport is None or self._closing:
                    return

    def _count(self, u, now):
        ann = u.nlri
        wd = u.withdrawn
        if u.mp_reach is not None:
            ann = u.mp_reach[3] if not ann else ann + u.mp_reach[3]
        if u.mp_unreach is not None:
            wd = u.mp_unreach[2] if not wd else wd + u.mp_unreach[2]
        n_ann = u.n_announced
        n_wd = u.n_withdrawn
        cn = self.canary_net
        if cn is not None and ann:
            hits = gen.find_range(ann, self.width, False, cn[0], cn[1])
            if hits:
                for k in hits:
                    self.canaries.setdefault(k, now)
                n_ann -= len(hits)
                if self.exact:
                    hs = set(hits)
                    ks = [k for k in gen.split_keys(ann, self.width) if k not in hs]
                    self.present.update(ks)
                    ann = None
        if cn is not None and wd:
            hits = gen.find_range(wd, self.width, False, cn[0], cn[1])
            if hits:
                n_wd -= len(hits)
        if self.exact:
            if ann:
                self.present.update(gen.split_keys(ann, self.width))
            if wd:
                self.present.difference_update(gen.split_keys(wd, self.width))
        self.announced += n_ann
        self.withdrawn += n_wd
        if n_ann or n_wd:
            self.last_change = now
            if self.first_change is None:
                self.first_change = now
        if self.on_update is not None:
            self.on_update(self)
