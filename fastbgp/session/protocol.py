"""The asyncio side of one BGP session: an RFC 4271 FSM (:mod:`fastbgp.session.fsm`)
wired to timers and to a TCP connection.

Two classes:

:class:`Connection`
    the :class:`asyncio.Protocol` of one TCP connection.  It frames the byte
    stream with ``codec.MessageReader``, hands complete messages to its
    session in bounded slices (a burst of UPDATEs never starves the loop:
    reading is paused and the rest is processed on later loop turns), and
    implements write back-pressure (``pause_writing``/``resume_writing``,
    :meth:`Connection.drain`).  Works the same on uvloop.

:class:`Session`
    one FSM, its timers (one ``loop.call_later`` handle per timer, armed
    and cancelled exactly as the FSM's actions say), the connection it
    currently drives, and the OPEN exchange / capability negotiation result.
    A session never decides policy: routes, collisions and configuration
    belong to its owner, the neighbour object of :mod:`fastbgp.session.speaker`,
    which it calls back through the ``session_*`` methods of
    :class:`SessionOwner`.

Per RFC 4271 §6.8 there is one FSM per connection: when a second connection
to the same peer appears, the owner creates a second Session for it and
resolves the collision when an OPEN arrives.

Nothing a peer sends may escape as an exception: every message is handled
under a guard that turns an unexpected error into a NOTIFICATION and a
closed connection for this session only.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import struct
import time
import weakref
from collections import deque
from typing import Callable, Optional, Protocol

from fastbgp.wire import capabilities as caps_mod
from fastbgp.wire import codec
from fastbgp.session import transport as _transport
from fastbgp.wire.types import DEFAULT_CONTEXT
from fastbgp.wire.constants import (
    MAX_MESSAGE_LEN,
    MSG_KEEPALIVE,
    MSG_NOTIFICATION,
    MSG_OPEN,
    MSG_ROUTE_REFRESH,
    MSG_UPDATE,
)
from fastbgp.wire.errors import (
    ACTION_AFISAFI_DISABLE,
    ACTION_SESSION_RESET,
    CEASE_OUT_OF_RESOURCES,
    BGPError,
)
from fastbgp.session.fsm import (
    FSM,
    LARGE_HOLD_TIME,
    Action,
    Event,
    Reason,
    State,
    error_event,
    notification_event,
)

__all__ = ["Connection", "Session", "SessionOwner", "TurnScheduler", "READ_BUDGET_BYTES", "READ_BUDGET_MESSAGES",
           "TURN_BUDGET_BYTES", "TURN_BUDGET_MESSAGES"]

log = logging.getLogger("fastbgp.session")

# How much of a received burst one connection processes per loop turn before
# yielding: keeps timers (KEEPALIVE sending, other sessions' hold timers)
# running while a full table streams in.
READ_BUDGET_BYTES = 64 * 1024
READ_BUDGET_MESSAGES = 256
# The same, summed over every connection of the event loop (TurnScheduler):
# with many sessions ready in one turn the per-connection budget alone let
# their sum hold the loop for seconds (150 sessions x 64 KiB is 2.4M
# prefixes imported before any timer ran), so KEEPALIVEs were late
# (RFC 4271 §4.4, §10).  Eight connections' worth: 512 KiB of full UPDATEs
# takes ~15 ms here, 2,048 small ones ~20 ms, so timers still run many times
# a second.  Each connection's slice is an equal share of it, and every
# slice costs one pass through import and export: with two connections'
# worth, ten senders got 13 KiB slices and a P4 worker spent 12 % more CPU
# (bench/scale.py P4, 2 workers: 0.134-0.145 s against 0.118-0.126 s).
TURN_BUDGET_BYTES = 8 * READ_BUDGET_BYTES
TURN_BUDGET_MESSAGES = 8 * READ_BUDGET_MESSAGES
# With many connections waiting, each gets an equal share of a turn's
# budget, but at least this much (one full message): a connection's turn
# then comes round every few loop turns, not once per N x 64 KiB.
MIN_SLICE_BYTES = 4096
MIN_SLICE_MESSAGES = 4
# Framed messages waiting for their turn, per connection: reading goes on
# below this (each message framed restarts the HoldTimer, RFC 4271 §4.4, so
# a peer's KEEPALIVE behind its table is seen while the table waits) and
# pauses above it (the socket buffer and TCP flow control hold the rest).
# At most this plus one read (256 KiB) per connection.  64 KiB, one
# connection's share of a turn: with many senders at once each waits with
# about that much framed (was 256 KiB: ten P4 senders left 3-4 MB of framed
# UPDATEs per worker, gone at the same time, bench/RESULTS.md).
PENDING_HIGH_BYTES = 64 * 1024
# Transport write buffer limits: UPDATE producers wait (Connection.drain)
# above the high mark, so a KEEPALIVE queued behind them waits at most
# this much data.
WRITE_HIGH_WATER = 256 * 1024
WRITE_LOW_WATER = 64 * 1024
# Shortest progress window of a paused write (Session._write_check): the
# smallest non-zero hold time (RFC 4271 §4.2), so the window is the hold time.
MIN_WRITE_WINDOW = 3.0
# How long close() may take flushing a final NOTIFICATION before abort().
CLOSE_GRACE = 2.0
# struct linger {l_onoff = 1, l_linger = 0}: close() then resets the
# connection and discards the kernel send queue (see Connection.abort).
_LINGER_RESET = struct.pack("ii", 1, 0)

_A = Action


class SessionOwner(Protocol):
    """What a Session needs from its owner (implemented by
    :class:`fastbgp.session.speaker.Neighbor`).

    Attributes: ``loop``, ``config`` (a NeighborConfig), ``counters``,
    ``local_as``, ``router_id`` (int), ``ebgp``.  The session calls:
    ``session_capabilities`` when a connection is attached (what our OPEN
    carries), ``session_open`` with the peer's OPEN (negotiate, check,
    resolve collisions; False: this session lost and was dumped),
    ``session_changed`` after every state change, ``session_clear_routes``
    for the FSM's clear-routes action, ``session_update`` (one UPDATE) /
    ``session_updates`` (UPDATEs framed in a row, in order, parsed for
    the session's observers) / ``session_bodies`` (the same not parsed,
    nobody observing: the owner parses them and returns the codec's error
    for the first it refuses, or None) /
    ``session_route_refresh`` for messages to process in Established,
    ``session_notification`` for every NOTIFICATION sent or received, and
    ``session_connected`` / ``session_connect_failed`` when an outbound
    connection attempt ends.
    """

    def session_capabilities(self, session) -> list: ...
    def session_open(self, session, parsed_open, remote_caps) -> bool: ...
    def session_changed(self, session, transition) -> None: ...
    def session_clear_routes(self, session, transition) -> None: ...
    def session_update(self, session, parsed) -> None: ...
    def session_updates(self, session, parsed_list) -> None: ...
    def session_bodies(self, session, bodies) -> Optional[BGPError]: ...
    def session_route_refresh(self, session, afi, safi, subtype) -> None: ...
    def session_notification(self, session, sent, code, subcode, data) -> None: ...
    def session_connected(self, session, conn) -> None: ...
    def session_connect_failed(self, session, exc) -> None: ...


# --------------------------------------------------------------------------
# TurnScheduler: the loop-wide receive budget


class TurnScheduler:
    """Shares one receive budget per event-loop turn among every
    :class:`Connection` of a loop.

    A connection with framed messages ``offer``s itself: it is processed at
    once if this turn's budget is not spent and nobody is waiting, else it
    is queued and served on a later turn, round robin, one pass per turn,
    each an equal share of the budget (at least MIN_SLICE_*): with N
    connections waiting each is served every few turns.  Queued
    connections keep reading (framing restarts their hold timers) up to
    PENDING_HIGH_BYTES of framed messages.  The budget is reset by a
    callback queued with ``call_soon`` in every turn that used some, so
    between two resets at
    most ``budget_messages`` messages and ``budget_bytes`` octets (plus the
    one message that crossed the mark) are processed, and the loop's timers
    (KEEPALIVE sending, hold timers: RFC 4271 §4.4) run in between.

    One instance per loop (:meth:`for_loop`): the loop is the shared
    resource, so every Speaker on it (each owns a reference, ``
    Speaker.scheduler``) and every outbound connection draws on the same
    budget.  The accounting (``max_turn_*``, ``turns``, ``deferred``) is
    the scheduler's own and is what the tests check.
    """

    _by_loop: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()

    @classmethod
    def for_loop(cls, loop: asyncio.AbstractEventLoop) -> "TurnScheduler":
        sched = cls._by_loop.get(loop)
        if sched is None:
            sched = cls._by_loop[loop] = cls(loop)
        return sched

    def __init__(self, loop, *, budget_bytes: int = TURN_BUDGET_BYTES, budget_messages: int = TURN_BUDGET_MESSAGES):
        self.loop = loop
        self.budget_bytes = budget_bytes
        self.budget_messages = budget_messages
        self.bytes_left = budget_bytes
        self.messages_left = budget_messages
        # Connections waiting for a turn; each at most once (Connection.queued),
        # so the queue is bounded by the number of connections.
        self.ready: deque = deque()
        self.armed = False
        self.turns = 0  # budget windows in which something was processed
        self.deferred = 0  # connections put off to a later turn
        self.max_turn_bytes = 0
        self.max_turn_messages = 0
        self.turn_bytes = 0
        self.turn_messages = 0
        self.turn_no = 0  # _turn calls, ever
        self.max_wait_turns = 0  # most turns a connection waited in the queue

    def offer(self, conn: "Connection") -> None:
        """``conn`` has messages to process and is not queued."""
        if self.ready or self.bytes_left <= 0 or self.messages_left <= 0:
            self.defer(conn)
        else:
            self._serve(conn)

    def defer(self, conn: "Connection") -> None:
        """Queue ``conn`` for a later turn."""
        conn.queued = True
        conn.queued_turn = self.turn_no
        self.ready.append(conn)
        self.deferred += 1
        self._arm()

    def _serve(self, conn: "Connection", share_bytes: int = READ_BUDGET_BYTES,
               share_messages: int = READ_BUDGET_MESSAGES) -> None:
        try:
            nbytes, nmsgs, more = conn.process(min(share_bytes, self.bytes_left),
                                               min(share_messages, self.messages_left))
        except Exception:  # a bug must not leave the others queued forever
            log.exception("processing failed on %r; aborting it", conn)
            conn.abort()
            return
        if nbytes or nmsgs:
            self.bytes_left -= nbytes
            self.messages_left -= nmsgs
            self.turn_bytes += nbytes
            self.turn_messages += nmsgs
            self._arm()
        if more:
            self.defer(conn)

    def _arm(self) -> None:
        if not self.armed:
            self.armed = True
            self.loop.call_soon(self._turn)

    def _turn(self) -> None:
        """A new turn: close the last window's accounting, reset the budget,
        serve the waiting connections once each while it lasts."""
        self.armed = False
        self.turn_no += 1
        if self.turn_messages or self.turn_bytes:
            self.turns += 1
            if self.turn_bytes > self.max_turn_bytes:
                self.max_turn_bytes = self.turn_bytes
            if self.turn_messages > self.max_turn_messages:
                self.max_turn_messages = self.turn_messages
            self.turn_bytes = self.turn_messages = 0
        self.bytes_left = self.budget_bytes
        self.messages_left = self.budget_messages
        ready = self.ready
        waiting = len(ready)
        share_bytes = min(READ_BUDGET_BYTES, max(MIN_SLICE_BYTES, self.budget_bytes // max(waiting, 1)))
        share_messages = min(READ_BUDGET_MESSAGES, max(MIN_SLICE_MESSAGES, self.budget_messages // max(waiting, 1)))
        for _ in range(waiting):
            if self.bytes_left <= 0 or self.messages_left <= 0:
                break
            conn = ready.popleft()
            conn.queued = False
            if self.turn_no - conn.queued_turn > self.max_wait_turns:
                self.max_wait_turns = self.turn_no - conn.queued_turn
            self._serve(conn, share_bytes, share_messages)
        if ready:
            self._arm()


# --------------------------------------------------------------------------
# Connection: the asyncio Protocol


class Connection(asyncio.Protocol):
    """One TCP connection.  Created unattached; an owner attaches it to a
    :class:`Session` (``session.attach``).  Data that arrives before that is
    framed and kept, not processed."""

    def __init__(self, loop: asyncio.AbstractEventLoop, *, outbound: bool, on_made=None,
                 scheduler: Optional[TurnScheduler] = None, addresses: Optional[tuple] = None):
        self.loop = loop
        # (peer address, peer port, local address, local port) of a TCP
        # connection another process holds and relays over a local socket
        # (``Speaker.adopt``); None: read them from the socket itself.
        self.addresses = addresses
        self.scheduler = scheduler if scheduler is not None else TurnScheduler.for_loop(loop)
        self.outbound = outbound
        self.on_made = on_made
        self.session: Optional[Session] = None
        self.transport: Optional[asyncio.Transport] = None
        self.reader = codec.MessageReader()
        self.peer_address: Optional[str] = None
        self.peer_port = 0
        self.local_address: Optional[str] = None
        self.local_port = 0
        self.closed = False  # connection_lost was called
        self.detached = False  # the owner let go of it: ignore everything
        self.made_error: Optional[Exception] = None  # outbound, reset as it was made
        self.write_paused = False
        self.octets_written = 0  # handed to the transport, ever
        # Loop time the last complete message was framed (RFC 4271 §4.4:
        # a message received restarts the HoldTimer; one still waiting in
        # our queue was received all the same).
        self.last_rx = 0.0
        self._pending: deque = deque()
        self.queued = False  # waiting in the scheduler's ready queue
        self.queued_turn = 0  # the scheduler's turn_no when it was queued
        self.pending_bytes = 0  # message octets framed, not yet processed
        self._read_paused = False
        self._reader_failed = False
        self._drain_waiters: list = []
        self._close_handle = None

    def __repr__(self):
        return "<Connection %s %s:%s%s>" % (
            "out" if self.outbound else "in",
            self.peer_address,
            self.peer_port,
            " closed" if self.closed else "",
        )

    # -- asyncio.Protocol ---------------------------------------------------

    def connection_made(self, transport):
        self.transport = transport
        try:
            transport.set_write_buffer_limits(high=WRITE_HIGH_WATER, low=WRITE_LOW_WATER)
        except Exception:  # pragma: no cover - every transport we use has it
            pass
        try:
            if self.addresses is not None:
                peer, local = self.addresses[:2], self.addresses[2:]
            else:
                peer = transport.get_extra_info("peername")
                local = transport.get_extra_info("sockname")
            self.peer_address = _transport.normalize_address(peer[0])
            self.peer_port = peer[1]
            self.local_address = _transport.normalize_address(local[0])
            self.local_port = local[1]
        except Exception as exc:
            log.exception("cannot read socket addresses of a new connection")
            if self.outbound:
                # Reset by the peer as it was made.  Not aborted here: uvloop
                # takes ownership of the socket object only after
                # connection_made, and a transport closed before that leaves
                # the object to close the (by then reused) fd a second time.
                # Session._connect aborts it once create_connection returns.
                self.made_error = exc
                return
            self.abort()
            return
        if self.on_made is not None:
            try:
                self.on_made(self)
            except Exception:
                log.exception("accepting connection from %s failed", self.peer_address)
                self.abort()

    def data_received(self, data):
        if self.closed or self.detached or self._reader_failed:
            return
        try:
            msgs = self.reader.feed(data)
        except BGPError as exc:
            # RFC 4271 §6.1 header error: report it after what came before.
            self._reader_failed = True
            self._pending.append(exc)
            msgs = None
        except Exception as exc:  # a codec bug must not kill the loop
            log.exception("framing failed on %r", self)
            self._reader_failed = True
            self._pending.append(exc)
            msgs = None
        if msgs:
            self.last_rx = self.loop.time()
            self._pending.extend(msgs)
            self.pending_bytes += self.reader.framed
            if self.pending_bytes >= PENDING_HIGH_BYTES:
                self.pause_input()
        if self.session is not None and not self.queued and self._pending:
            self.scheduler.offer(self)

    def eof_received(self):
        return False  # close the transport; connection_lost follows

    def connection_lost(self, exc):
        self.closed = True
        self.write_paused = False
        if self._close_handle is not None:
            self._close_handle.cancel()
            self._close_handle = None
        self._wake_drainers()
        self._pending.clear()
        session = self.session
        self.session = None
        if session is not None and not self.detached:
            try:
                session.on_connection_lost(self, exc)
            except Exception:
                log.exception("connection_lost handling failed for %r", self)

    def pause_writing(self):
        self.write_paused = True
        session = self.session
        if session is not None:
            session.on_write_paused(self)

    def resume_writing(self):
        self.write_paused = False
        self._wake_drainers()
        session = self.session
        if session is not None:
            session.on_write_resumed(self)

    # -- receive processing ---------------------------------------------------

    def process(self, max_bytes: int, max_messages: int):
        """Process queued messages until either budget is spent (called by
        the scheduler).  Returns (octets, messages, more): what was used
        and whether messages remain, reading paused until they are done."""
        pending = self._pending
        budget = max_bytes
        count = max_messages
        while pending:
            session = self.session
            if session is None or self.closed or self.detached:
                pending.clear()
                break
            item = pending.popleft()
            try:
                if type(item) is tuple:
                    mtype, body = item
                    budget -= len(body)
                    self.pending_bytes -= len(body)
                    count -= 1
                    if mtype == MSG_UPDATE and pending and budget > 0 and count > 0:
                        # UPDATEs in a row go up as one batch (Session.on_updates);
                        # the octets are accounted once for the batch.
                        bodies, used = codec.take_run(pending, body, budget, count)
                        count -= len(bodies) - 1
                        budget -= used
                        self.pending_bytes -= used
                        if len(bodies) > 1:
                            session.on_updates(self, bodies)
                        else:
                            session.on_message(self, mtype, body)
                    else:
                        session.on_message(self, mtype, body)
                elif isinstance(item, BGPError):
                    session.on_stream_error(self, item)
                else:
                    session.on_internal_error(self, item)
            except Exception as exc:
                log.exception("error handling a message from %s", self.peer_address)
                try:
                    session.on_internal_error(self, exc)
                except Exception:
                    log.exception("internal error handling failed; aborting %r", self)
                    self.abort()
                    pending.clear()
                    break
            if budget <= 0 or count <= 0:
                break
        more = bool(pending) and not self.closed and not self.detached and self.session is not None
        if not pending:
            self.pending_bytes = 0
        if more and self.pending_bytes >= PENDING_HIGH_BYTES:
            self.pause_input()
        elif self._read_paused and not self.closed and not self.detached:
            self._read_paused = False
            try:
                self.transport.resume_reading()
            except Exception:  # closing transport
                pass
        return max_bytes - budget, max_messages - count, more

    def pause_input(self):
        """Stop reading while PENDING_HIGH_BYTES of framed messages wait."""
        if not self._read_paused and not self.closed and self.transport is not None:
            self._read_paused = True
            try:
                self.transport.pause_reading()
            except Exception:  # closing transport
                pass

    def start_processing(self):
        """Called by the session when it attaches: process whatever arrived
        before (on a later loop turn, after the attach transition)."""
        if self._pending and not self.queued:
            self.scheduler.defer(self)

    # -- sending ----------------------------------------------------------------

    def write(self, data) -> bool:
        t = self.transport
        if t is None or self.closed or t.is_closing():
            return False
        t.write(data)
        self.octets_written += len(data)
        return True

    def writelines(self, chunks) -> bool:
        t = self.transport
        if t is None or self.closed or t.is_closing():
            return False
        t.writelines(chunks)
        self.octets_written += sum(map(len, chunks))
        return True

    def write_buffer_size(self) -> int:
        """Octets the transport holds, not yet written to the socket."""
        t = self.transport
        if t is None or self.closed:
            return 0
        try:
            return t.get_write_buffer_size()
        except Exception:  # closing transport
            return 0

    def octets_drained(self) -> int:
        """Octets that left the transport for the socket, ever."""
        return self.octets_written - self.write_buffer_size()

    async def drain(self):
        """Wait while the transport is above its high-water mark.  Raises
        ConnectionResetError when the connection goes away meanwhile."""
        while self.write_paused and not self.closed and not self.detached:
            fut = self.loop.create_future()
            self._drain_waiters.append(fut)
            await fut
        if self.closed or self.detached:
            raise ConnectionResetError("connection closed")

    def _wake_drainers(self):
        waiters, self._drain_waiters = self._drain_waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    # -- closing -----------------------------------------------------------------

    def close(self, abort: bool = False):
        """Detach and close.  A plain close flushes what is queued (the final
        NOTIFICATION) but is turned into an abort if that takes more than
        CLOSE_GRACE seconds or the buffer is stuck anyway."""
        self.detached = True
        self.session = None
        self._pending.clear()
        self._wake_drainers()
        t = self.transport
        if t is None or self.closed:
            return
        if abort or self.write_paused or t.get_write_buffer_size() > WRITE_HIGH_WATER:
            self._reset(t)
            return
        if not t.is_closing():
            t.close()
        if self._close_handle is None:
            self._close_handle = self.loop.call_later(CLOSE_GRACE, self.abort)

    def abort(self):
        """Drop the connection at once: RST, nothing more is sent."""
        self.detached = True
        self.session = None
        self._close_handle = None
        t = self.transport
        if t is not None and not self.closed:
            self._reset(t)

    @staticmethod
    def _reset(t):
        # transport.abort() only drops asyncio's/uvloop's own buffer and
        # close()s the fd: the kernel would still deliver its send queue
        # (up to megabytes of UPDATEs, to a peer we gave up on, e.g. after
        # the hold timer expired on a stalled one) and then a FIN, keeping
        # an orphan socket in FIN-WAIT-1 meanwhile.  Zero linger makes the
        # close a real abort: RST, send queue discarded.
        try:
            sock = t.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        except (OSError, ValueError, AttributeError):
            pass  # already closed, or not a TCP socket (tests)
        t.abort()

    @property
    def socket(self):
        t = self.transport
        return None if t is None else t.get_extra_info("socket")


# --------------------------------------------------------------------------
# MessageReceiver: what a Session does with each received message


class MessageReceiver:
    """The receive side of :class:`Session` (its base class): messages
    from the attached Connection dispatched by type, the observers of
    received OPENs, UPDATEs and KEEPALIVEs, and each message's handling
    before the FSM sees its event.  Uses the Session's ``owner``, ``fsm``,
    ``ctx``, ``conn``, ``handle`` and error bookkeeping."""

    def on_message(self, conn, mtype, body):
        if conn is not self.conn:
            return
        self.owner.counters.received.count(mtype)
        if mtype == MSG_UPDATE:
            self._on_update(body)
        elif mtype == MSG_KEEPALIVE:
            for observer in self._keepalive_observers:
                observer()
            self.handle(Event.KEEPALIVE_MSG)
        elif mtype == MSG_OPEN:
            for observer in self._open_observers:
                observer(body)
            self._on_open(body)
        elif mtype == MSG_NOTIFICATION:
            self._on_notification(body)
        elif mtype == MSG_ROUTE_REFRESH:
            self._on_route_refresh(body)

    def observe_updates(self, observer: Callable[[bytes], None]) -> Callable[[], None]:
        """Call ``observer(body)`` with every UPDATE body this session
        receives in Established, as received and before it is parsed (the
        MRT dumper and BMP subscribe here).  Returns the unsubscribe call.
        An observer must not raise: it runs on the session's hot path."""
        self._update_observers = self._update_observers + (observer,)

        def unsubscribe():
            self._update_observers = tuple(o for o in self._update_observers if o is not observer)

        return unsubscribe

    def observe_parsed_updates(self, observer: Callable[[bytes, object], None]) -> Callable[[], None]:
        """Call ``observer(body, parsed)`` with every UPDATE this session
        receives in Established that the codec accepted (``parsed``: its
        ParsedUpdate, RFC 7606 action included), before it is processed:
        for consumers that need it decoded (the ExaBGP process API), so
        nothing is parsed twice.  Returns the unsubscribe call; an observer
        must not raise."""
        self._parsed_observers = self._parsed_observers + (observer,)

        def unsubscribe():
            self._parsed_observers = tuple(o for o in self._parsed_observers if o is not observer)

        return unsubscribe

    def observe_opens(self, observer: Callable[[bytes], None]) -> Callable[[], None]:
        """Call ``observer(body)`` with the body of every OPEN this session
        receives, as received and before it is checked (it may be
        malformed: RFC 4271 §6.2 errors are handled after).  Returns the
        unsubscribe call; an observer must not raise."""
        self._open_observers = self._open_observers + (observer,)

        def unsubscribe():
            self._open_observers = tuple(o for o in self._open_observers if o is not observer)

        return unsubscribe

    def observe_keepalives(self, observer: Callable[[], None]) -> Callable[[], None]:
        """Call ``observer()`` for every KEEPALIVE this session receives
        (RFC 4271 §4.4), before the FSM handles it.  Returns the unsubscribe
        call; an observer must not raise."""
        self._keepalive_observers = self._keepalive_observers + (observer,)

        def unsubscribe():
            self._keepalive_observers = tuple(o for o in self._keepalive_observers if o is not observer)

        return unsubscribe

    def _on_update(self, body):
        if self.fsm.state is not State.ESTABLISHED:
            # RFC 4271 §8.2.2: UPDATE before Established is an FSM error.
            self.handle(Event.UPDATE_MSG)
            return
        for observer in self._update_observers:
            observer(body)
        try:
            parsed = codec.parse_update(body, self.ctx)
        except BGPError as exc:
            self._update_error(exc)
            return
        for observer in self._parsed_observers:
            observer(body, parsed)
        if self.disposed or self.fsm.state is not State.ESTABLISHED:
            t = self.handle(Event.UPDATE_MSG)
            if t is not None and _A.PROCESS_UPDATE in t.kinds:
                self.owner.session_update(self, parsed)
            return
        self._restart_hold()
        self.owner.session_update(self, parsed)

    def on_updates(self, conn, bodies):
        """UPDATEs framed one after the other (Connection.process): the
        same as on_message for each, in order, with what is the same for
        all of them done once -- the HoldTimer restart, and the owner takes
        the whole list (one call through the layers above instead of one
        per UPDATE: a router sends a table as hundreds of thousands of
        small UPDATEs): the bodies (``session_bodies``) when nobody
        observes the messages, else their parses (``session_updates``).
        An UPDATE the codec refuses ends the batch: those before it are
        processed, then the error is handled (RFC 4271 §6.3, RFC 7606)."""
        if conn is not self.conn:
            return
        self.owner.counters.received.count(MSG_UPDATE, len(bodies))
        if self.disposed or self.fsm.state is not State.ESTABLISHED:
            for body in bodies:  # FSM errors, one at a time
                if conn is not self.conn:
                    return
                self._on_update(body)
            return
        observers = self._update_observers
        parsed_observers = self._parsed_observers
        if not observers and not parsed_observers:
            # Nobody watches the messages: the owner parses and processes
            # the bodies (SessionOwner.session_bodies; the daemon's import
            # lane skips the parse of what it knows).  RFC 4271 §8.2.2
            # event 27 in Established: restart the HoldTimer.
            self._restart_hold()
            error = self.owner.session_bodies(self, bodies)
            if error is not None and conn is self.conn and not self.disposed \
                    and self.fsm.state is State.ESTABLISHED:
                self._update_error(error)
            return
        parse = codec.parse_update
        ctx = self.ctx
        parsed = []
        error = None
        for body in bodies:
            for observer in observers:
                observer(body)
            try:
                p = parse(body, ctx)
            except BGPError as exc:
                error = exc
                break
            parsed.append(p)
            for observer in parsed_observers:
                observer(body, p)
        if parsed:
            # RFC 4271 §8.2.2 event 27 in Established: restart the
            # HoldTimer, process the UPDATEs.
            self._restart_hold()
            self.owner.session_updates(self, parsed)
        if error is not None and conn is self.conn and not self.disposed \
                and self.fsm.state is State.ESTABLISHED:
            self._update_error(error)

    def _restart_hold(self):
        """The hot path of handle(Event.UPDATE_MSG) in Established (RFC
        4271 §8.2.2 event 27: restart the HoldTimer) without a Transition
        and an action tuple per UPDATE."""
        hold = self.fsm.update_hold_time()
        if hold:
            self._hold_deadline = self.loop.time() + hold
            if "hold" not in self._timers:
                self._arm_hold(hold)

    def _update_error(self, exc):
        if exc.action == ACTION_AFISAFI_DISABLE:
            # RFC 7606 §5.3 allows disabling just the AFI/SAFI; like
            # GoBGP we reset the session instead (the NOTIFICATION is
            # the codec's).
            exc = BGPError(exc.code, exc.subcode, exc.data, exc.reason, ACTION_SESSION_RESET, exc.attr_type)
        self._error(str(exc))
        log.info("%s: %s", self.owner.config.address, exc)
        self.handle(Event.UPDATE_MSG_ERR, error=exc)

    def _on_open(self, body):
        state = self.fsm.state
        if state not in (State.OPENSENT, State.CONNECT, State.ACTIVE):
            # RFC 6608 §4: an OPEN in OpenConfirm/Established is an FSM error.
            self.handle(Event.BGP_OPEN, hold_time=self.fsm.hold_time)
            return
        try:
            parsed = codec.parse_open(body)
            remote_caps = caps_mod.decode_all(parsed.capabilities)
            self.remote_open = parsed
            self.remote_capabilities = remote_caps
            self.remote_id = parsed.bgp_id
            # Negotiation, peer AS / BGP identifier checks and collision
            # resolution (RFC 4271 §6.2, §6.8) are the owner's.
            keep = self.owner.session_open(self, parsed, remote_caps)
        except BGPError as exc:
            self._error(str(exc))
            log.info("%s: OPEN rejected: %s", self.owner.config.address, exc)
            self.handle(Event.BGP_OPEN_MSG_ERR, error=exc)
            return
        if not keep or self.conn is None or self.disposed:
            return  # lost a collision: already dumped
        neg = self.negotiated
        if neg is not None:
            self.ctx = neg.context()
            # RFC 8654 §4: after negotiation, messages may be 65535 octets.
            self.conn.reader.max_len = self.ctx.max_message_len
        self.handle(Event.BGP_OPEN, hold_time=parsed.hold_time)

    def _on_notification(self, body):
        try:
            code, subcode, data = codec.parse_notification(body)
        except BGPError:
            code, subcode, data = 0, 0, bytes(body)
        text = "NOTIFICATION received: %d/%d" % (code, subcode)
        if self.loss_notification is None:
            # The loss line describes this NOTIFICATION itself (names, data):
            # only ``last_error`` keeps the short form, so it is not said twice.
            self.last_error = text
            self.loss_notification = (False, code, subcode, bytes(data))
        else:
            self._error(text)
        try:
            self.owner.session_notification(self, False, code, subcode, data)
        except Exception:
            log.exception("notification bookkeeping failed")
        self.handle(notification_event(code, subcode))

    def _on_route_refresh(self, body):
        if self.fsm.state is not State.ESTABLISHED:
            self.handle(Event.ROUTE_REFRESH_MSG)  # FSM error before Established
            return
        try:
            afi, subtype, safi = codec.parse_route_refresh(body)
        except BGPError as exc:
            # RFC 7313 §5: ROUTE-REFRESH Message Error, session reset.
            self._error(str(exc))
            self.handle(Event.UPDATE_MSG_ERR, error=exc)
            return
        t = self.handle(Event.ROUTE_REFRESH_MSG)
        if t is not None and _A.PROCESS_ROUTE_REFRESH in t.kinds:
            self.owner.session_route_refresh(self, afi, safi, subtype)


# --------------------------------------------------------------------------
# Session: one FSM and its timers


class Session(MessageReceiver):
    """Drives one :class:`fastbgp.session.fsm.FSM`: executes its actions, feeds it
    timer expiries and messages from the attached :class:`Connection`.

    ``primary`` sessions are the neighbour's main FSM (they connect, retry
    and restart themselves).  Secondary sessions exist only for a second
    connection during collision detection (RFC 4271 §6.8): passive, no
    automatic restart.
    """

    def __init__(self, owner, *, primary: bool = True):
        self.owner = owner
        self.loop: asyncio.AbstractEventLoop = owner.loop
        self.primary = primary
        cfg = owner.config
        self.fsm = FSM(
            hold_time=cfg.hold_time,
            keepalive_time=cfg.keepalive,
            connect_retry_time=cfg.connect_retry,
            delay_open_time=cfg.delay_open,
            passive=cfg.passive if primary else True,
            allow_automatic_start=primary,
            damp_peer_oscillations=cfg.damp_peer_oscillations,
            idle_hold_time=cfg.idle_hold_time,
            max_idle_hold_time=max(cfg.max_idle_hold_time, cfg.idle_hold_time),
            send_notification_without_open=cfg.send_notification_without_open,
            # RFC 4271 §10: jitter ConnectRetry and KEEPALIVE timers.  The
            # random module's own generator (re-seeded in each forked worker,
            # fastbgp.daemon.spawn): a Random of its own cost every session
            # 2.5 KB (1 MB for a route server's 400 sessions).
            rnd=random,
        )
        self.conn: Optional[Connection] = None
        self.outbound = False
        self.ctx = DEFAULT_CONTEXT
        self.negotiated = None  # capabilities.Negotiated of the current/last OPEN exchange
        self.local_capabilities: list = []
        self.remote_open = None  # codec ParsedOpen
        self.remote_capabilities: list = []
        self.remote_id: Optional[int] = None
        self.disposed = False
        # Set by the owner while it swaps sessions: transitions of this one
        # are then not published as the neighbour's.
        self.silent = False
        self.last_error: Optional[str] = None
        # What ended the current connection, for the one session-loss log
        # line (cease.log_session_end); both reset on attach.  loss_error is
        # last_error set since then, loss_notification the first
        # (sent, code, subcode, data) NOTIFICATION sent or received on it.
        self.loss_error: Optional[str] = None
        self.loss_notification: Optional[tuple] = None
        # Set when the owner already accounted for the end of this
        # connection (a half-open one closed for a newer one, counted and
        # logged rate-limited by collision.Sessions): no session-loss line.
        self.quiet_end = False
        self.established_at: Optional[float] = None
        self.attr_cache: dict = {}  # owner's per-session cache of encoded attributes
        self._timers: dict = {}
        self._hold_deadline: Optional[float] = None
        self._connect_task: Optional[asyncio.Task] = None
        self._write_timer = None
        self._abort_next_drop = False
        self._update_observers: tuple = ()  # observe_updates()
        self._open_observers: tuple = ()  # observe_opens()
        self._keepalive_observers: tuple = ()  # observe_keepalives()
        self._parsed_observers: tuple = ()  # observe_parsed_updates()

    def __repr__(self):
        return "<Session %s %s %s>" % (
            getattr(self.owner.config, "address", "?"),
            "primary" if self.primary else "secondary",
            self.fsm.state.name,
        )

    @property
    def state(self) -> State:
        return self.fsm.state

    # -- event dispatch ---------------------------------------------------------

    def handle(self, event: Event, **args):
        """Feed one event to the FSM and carry out its actions.  Returns the
        Transition (None if the session was disposed)."""
        if self.disposed:
            return None
        t = self.fsm.handle(event, now=self.loop.time(), **args)
        if t.actions:
            self._execute(t)
        if t.changed:
            if t.state is State.ESTABLISHED:
                self.established_at = time.time()
            try:
                self.owner.session_changed(self, t)
            except Exception:
                log.exception("state change handler failed for %r", self)
        return t

    def _execute(self, t):
        for act in t.actions:
            k = act.kind
            if k is _A.RESTART_HOLD_TIMER:
                # Hot path (every UPDATE): move the deadline, keep the handle.
                self._hold_deadline = self.loop.time() + act.seconds
                if "hold" not in self._timers:
                    self._arm_hold(act.seconds)
            elif k is _A.SEND_KEEPALIVE:
                self._send(codec.KEEPALIVE, MSG_KEEPALIVE)
            elif k is _A.START_KEEPALIVE_TIMER:
                self._arm("keepalive", act.seconds, Event.KEEPALIVE_TIMER_EXPIRES)
            elif k is _A.SEND_NOTIFICATION:
                self._send_notification(act.code, act.subcode, act.data)
            elif k is _A.SEND_OPEN:
                self._send_open()
            elif k is _A.START_HOLD_TIMER:
                self._hold_deadline = self.loop.time() + act.seconds
                self._arm_hold(act.seconds)
            elif k is _A.STOP_HOLD_TIMER:
                self._hold_deadline = None
                self._cancel("hold")
            elif k is _A.STOP_KEEPALIVE_TIMER:
                self._cancel("keepalive")
            elif k is _A.START_CONNECT_RETRY_TIMER:
                self._arm("connect_retry", act.seconds, Event.CONNECT_RETRY_TIMER_EXPIRES)
            elif k is _A.STOP_CONNECT_RETRY_TIMER:
                self._cancel("connect_retry")
            elif k is _A.START_IDLE_HOLD_TIMER:
                self._arm("idle_hold", act.seconds, Event.IDLE_HOLD_TIMER_EXPIRES)
            elif k is _A.STOP_IDLE_HOLD_TIMER:
                self._cancel("idle_hold")
            elif k is _A.START_DELAY_OPEN_TIMER:
                self._arm("delay_open", act.seconds, Event.DELAY_OPEN_TIMER_EXPIRES)
            elif k is _A.STOP_DELAY_OPEN_TIMER:
                self._cancel("delay_open")
            elif k is _A.INITIATE_TCP:
                self._initiate_tcp()
            elif k is _A.DROP_TCP:
                self._drop_tcp()
            elif k is _A.RELEASE_RESOURCES:
                for name in ("hold", "keepalive", "delay_open"):
                    self._cancel(name)
                self._hold_deadline = None
                self._cancel_write_timer()
            elif k is _A.CLEAR_ROUTES:
                try:
                    self.owner.session_clear_routes(self, t)
                except Exception:
                    log.exception("clearing routes failed for %r", self)
            # PROCESS_UPDATE / PROCESS_ROUTE_REFRESH are carried out by the
            # caller that fed the message; INCREMENT_CONNECT_RETRY_COUNTER
            # is informational.

    # -- timers -------------------------------------------------------------------

    def _arm(self, name, seconds, event):
        h = self._timers.pop(name, None)
        if h is not None:
            h.cancel()
        self._timers[name] = self.loop.call_later(seconds, self._fire, name, event)

    def _cancel(self, name):
        h = self._timers.pop(name, None)
        if h is not None:
            h.cancel()

    def _fire(self, name, event):
        self._timers.pop(name, None)
        try:
            self.handle(event)
        except Exception:
            log.exception("%s timer handling failed for %r", name, self)

    def _arm_hold(self, delay):
        h = self._timers.get("hold")
        if h is not None:
            h.cancel()
        self._timers["hold"] = self.loop.call_later(max(delay, 0.0), self._hold_check)

    def _hold_check(self):
        self._timers.pop("hold", None)
        deadline = self._hold_deadline
        if deadline is None or self.disposed:
            return
        now = self.loop.time()
        hold = self.fsm.negotiated_hold_time
        conn = self.conn
        if hold and conn is not None and conn.last_rx and self.fsm.state in (State.OPENCONFIRM, State.ESTABLISHED):
            # RFC 4271 §4.4: receiving any message restarts the HoldTimer.
            # Messages framed but still queued behind a large burst count
            # from when they arrived, so a busy loop never expires a live peer.
            deadline = max(deadline, conn.last_rx + hold)
        if now < deadline:
            self._arm_hold(deadline - now)
            return
        self._hold_deadline = None
        self._error("hold timer expired")
        try:
            self.handle(Event.HOLD_TIMER_EXPIRES)
        except Exception:
            log.exception("hold timer handling failed for %r", self)

    @property
    def timers(self) -> dict:
        """{timer name: seconds until it fires} of the running timers."""
        now = self.loop.time()
        out = {name: max(h.when() - now, 0.0) for name, h in self._timers.items()}
        if self._write_timer is not None:
            out["write"] = max(self._write_timer.when() - now, 0.0)
        return out

    # -- connections ----------------------------------------------------------------

    def attach(self, conn: Connection, *, outbound: bool):
        """Bind a TCP connection to this session and tell the FSM it is up
        (RFC 4271 events 16/17)."""
        self.conn = conn
        conn.session = self
        self.outbound = outbound
        self.ctx = DEFAULT_CONTEXT
        conn.reader.max_len = MAX_MESSAGE_LEN
        self.negotiated = None
        self.remote_open = None
        self.remote_id = None
        self.loss_error = None
        self.loss_notification = None
        self.quiet_end = False
        self.attr_cache = {}
        self._abort_next_drop = False
        # Capabilities are fixed per connection: with DelayOpen the peer's
        # OPEN is negotiated against them before ours is sent.
        self.local_capabilities = list(self.owner.session_capabilities(self))
        if conn.write_paused:
            self.on_write_paused(conn)
        self.handle(Event.TCP_CR_ACKED if outbound else Event.TCP_CONNECTION_CONFIRMED)
        if self.conn is conn:
            conn.start_processing()

    def _initiate_tcp(self):
        self._cancel_connect()
        self._connect_task = self.loop.create_task(self._connect())

    async def _connect(self):
        owner = self.owner
        cfg = owner.config
        me = asyncio.current_task()
        owner.counters.connect_attempts += 1
        conn = None
        try:
            sock = await _transport.open_connection(
                cfg.address,
                cfg.port,
                local_address=cfg.local_address,
                md5_password=cfg.md5_password,
                ttl=cfg.ttl,
                gtsm=cfg.gtsm,
                ebgp=owner.ebgp,
            )
            conn = Connection(self.loop, outbound=True)
            try:
                await self.loop.create_connection(lambda: conn, sock=sock)
                if conn.made_error is not None:
                    conn.abort()
                    raise ConnectionResetError("connection to %s reset as it was made" % cfg.address)
            except BaseException:
                if conn.transport is None:
                    sock.close()
                raise
        except asyncio.CancelledError:
            if conn is not None and conn.transport is not None:
                conn.abort()
            raise
        except Exception as exc:
            if self._connect_task is me:
                self._connect_task = None
            owner.counters.connect_failures += 1
            self._error(str(exc))
            log.debug("connect to %s failed: %s", cfg.address, exc)
            try:
                owner.session_connect_failed(self, exc)
            except Exception:
                log.exception("connect failure handling failed")
            return
        if self._connect_task is me:
            self._connect_task = None
        try:
            owner.session_connected(self, conn)
        except Exception:
            log.exception("outbound connection handling failed")
            conn.abort()

    def _cancel_connect(self):
        task = self._connect_task
        self._connect_task = None
        if task is not None and not task.done():
            task.cancel()

    def _drop_tcp(self):
        self._cancel_connect()
        self._cancel_write_timer()
        conn = self.conn
        if conn is not None:
            self.conn = None
            conn.close(abort=self._abort_next_drop)
        self._abort_next_drop = False

    def _error(self, text: str) -> None:
        """What went wrong on this connection: shown as ``last_error`` (kept
        across connections) and, as ``loss_error``, in the loss log line."""
        self.last_error = text
        self.loss_error = text

    def fail_connection(self, reason: Reason) -> None:
        """Drop the connection as a crash would: RST, no NOTIFICATION (the
        FSM sees TcpConnectionFails with ``reason``)."""
        self._abort_next_drop = True
        self.handle(Event.TCP_CONNECTION_FAILS, reason=reason)

    def dispose(self):
        """Stop everything silently (the owner replaced or removed us)."""
        self.disposed = True
        for h in self._timers.values():
            h.cancel()
        self._timers.clear()
        self._hold_deadline = None
        self._cancel_connect()
        self._cancel_write_timer()
        conn = self.conn
        self.conn = None
        if conn is not None:
            conn.close()

    # -- sending ----------------------------------------------------------------------

    def _send(self, data, mtype) -> bool:
        conn = self.conn
        if conn is not None and conn.write(data):
            self.owner.counters.sent.count(mtype)
            return True
        return False

    def send_raw(self, data, mtype) -> bool:
        """Write one pre-encoded message (e.g. ROUTE-REFRESH)."""
        return self._send(data, mtype)

    def _send_open(self):
        owner = self.owner
        cfg = owner.config
        pairs = caps_mod.encode_all(self.local_capabilities)
        data = codec.build_open(owner.local_as, cfg.hold_time, owner.router_id, pairs)
        self._send(data, MSG_OPEN)

    def _send_notification(self, code, subcode, data):
        data = bytes(data)
        # RFC 4271 §4.5 / RFC 8654 §5: the data is cut so the message fits.
        room = self.ctx.max_message_len - 21
        if len(data) > room:
            data = data[:room]
        if self.loss_notification is None:
            self.loss_notification = (True, code, subcode, data)
        try:
            self.owner.session_notification(self, True, code, subcode, data)
        except Exception:
            log.exception("notification bookkeeping failed")
        self._send(codec.build_notification(code, subcode, data), MSG_NOTIFICATION)

    # -- write back-pressure ----------------------------------------------------------

    def on_write_paused(self, conn):
        if conn is not self.conn or self._write_timer is not None:
            return
        self._arm_write_check(conn)

    def on_write_resumed(self, conn):
        # One low-water crossing proves little (a peer reading ~12 KB/s
        # crosses it now and then): _write_check measures what drained.
        pass

    def _arm_write_check(self, conn, mark=None, since=None):
        # A write must make progress within the hold time (GoBGP's write
        # deadline), else the peer is not reading.  Checked every quarter
        # window, so a stall is caught a window after the last progress.
        hold = self.fsm.negotiated_hold_time or self.owner.config.hold_time or LARGE_HOLD_TIME
        window = max(float(hold), MIN_WRITE_WINDOW)
        if mark is None:
            mark, since = conn.octets_drained(), self.loop.time()
        self._write_timer = self.loop.call_later(window / 4, self._write_check, conn, mark, since, window)

    def _cancel_write_timer(self):
        h = self._write_timer
        self._write_timer = None
        if h is not None:
            h.cancel()

    def _write_check(self, conn, mark, since, window):
        """Progress deadline: while octets wait in the transport, some must
        drain (octets actually written out) at least once per window."""
        self._write_timer = None
        if conn is not self.conn or self.disposed or conn.closed:
            return
        drained = conn.octets_drained()
        waiting = conn.write_buffer_size()
        if waiting == 0 and not conn.write_paused:
            return  # all out: no deadline until the next pause
        now = self.loop.time()
        if drained > mark:
            self._arm_write_check(conn, drained, now)
        elif now - since < window:
            self._arm_write_check(conn, mark, since)
        else:
            self.out_of_resources("output stalled: %d octets waiting, none drained in %.3gs (window %gs)"
                                  % (waiting, now - since, window))

    def out_of_resources(self, detail: str) -> None:
        """End the session with Cease / Out of Resources (RFC 4486 §3,
        subcode 8): the peer cannot take what we have to send.  ``detail``
        (the figures) goes into the loss WARNING."""
        conn = self.conn
        if conn is None or self.disposed:
            return
        self.owner.counters.out_of_resources += 1
        self._error(detail)
        self.handle(Event.AUTOMATIC_STOP, reason=Reason.WRITE_FAILED, subcode=CEASE_OUT_OF_RESOURCES)
        if self.conn is conn:  # states where AUTOMATIC_STOP does not drop
            self._drop_tcp()

    # -- receiving ----------------------------------------------------------------------

    def on_connection_lost(self, conn, exc):
        if conn is not self.conn or self.disposed:
            return
        self.conn = None
        self._cancel_write_timer()
        self._error("connection lost: %s" % exc if exc else "connection closed by the peer")
        self.handle(Event.TCP_CONNECTION_FAILS)

    def on_stream_error(self, conn, exc: BGPError):
        if conn is not self.conn:
            return
        self._error(str(exc))
        log.info("%s: %s", self.owner.config.address, exc)
        self.handle(error_event(exc), error=exc)

    def on_internal_error(self, conn, exc):
        """A bug (or resource failure) while handling the peer's input: close
        this session with Cease / Out of Resources rather than let the
        exception reach the loop."""
        if conn is not self.conn:
            return
        self._error("internal error: %r" % (exc,))
        self.handle(Event.AUTOMATIC_STOP, reason=Reason.FSM_ERROR, subcode=CEASE_OUT_OF_RESOURCES)
        if self.conn is conn:  # states where AUTOMATIC_STOP does not drop
            self._drop_tcp()
