"""A neighbour's sessions and connection collisions (RFC 4271 §6.8).

Owns: the neighbour's main :class:`fastbgp.session.protocol.Session` and, while
two connections to the peer exist, the second one (each connection gets its
own FSM until an OPEN decides which survives); accepting inbound and
outbound connections into them; the collision decision (with the graceful
restart case of RFC 4724 §4.2) and its log (:class:`CollisionRecord`);
stopping or dropping every session at once.

Called by :class:`fastbgp.session.speaker.Neighbor` (which forwards its
sessions' callbacks and the Speaker's inbound connections).  Calls back the
``on_promoted(old session, old state, new session, reason)`` function it is
given when a session takes the main place, and reads the neighbour's
``config``, ``counters``, ``router_id``, ``local_as``, ``ebgp``, ``address``
and ``removed``.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import Callable, Optional

import msgspec

from fastbgp.session import transport as _transport
from fastbgp.session.cease import cease_for
from fastbgp.session.counters import LogLimit
from fastbgp.session.fsm import Collision, Event, Reason, State, resolve_collision
from fastbgp.session.protocol import Session

__all__ = ["CollisionRecord", "Sessions"]

log = logging.getLogger("fastbgp.speaker")


class CollisionRecord(msgspec.Struct, frozen=True):
    """One RFC 4271 §6.8 decision: the connection that already existed (its
    state and direction), the direction of the one whose OPEN arrived, and
    which was kept (``graceful``: the old one was Established and the peer
    had restarted, RFC 4724 §4.2)."""

    time: float
    existing_state: State
    existing_outbound: bool
    new_outbound: bool
    kept_new: bool
    graceful: bool = False

    @property
    def kept_outbound(self) -> bool:
        return self.new_outbound if self.kept_new else self.existing_outbound


class Sessions:
    """The main session of a neighbour and, during a collision, a second.

    Half-open connections (no OPEN received on them yet) are bounded: at most
    :attr:`HALF_OPEN_MAX` (2) per neighbour address at a time, and a newer
    connection from the peer replaces the oldest half-open one instead of
    being refused, so idle sockets from the peer's address cannot hold its
    connection slots until the OpenSent HoldTimer (240 s) expires."""

    # RFC 4271 §6.8 collision detection pits connections that both received
    # an OPEN; a connection that never sent one is no contender.  Until its
    # OPEN arrives a connection is half-open; at most 2 (the main and the
    # second slot) are kept per neighbour address, the oldest goes first.
    HALF_OPEN_MAX = 2
    # Half-open connections closed for newer ones are counted
    # (counters.half_open_closed) and logged at most once per this many
    # seconds per neighbour, with the number closed since: whoever holds the
    # peer's address could otherwise write two log lines per connection.
    EVICT_LOG_INTERVAL = 60.0

    def __init__(self, neighbor, on_promoted: Callable):
        self.neighbor = neighbor
        self.main: Optional[Session] = None
        self.secondary: Optional[Session] = None
        self.log: deque = deque(maxlen=16)  # CollisionRecords
        self._on_promoted = on_promoted
        # Connection -> attach order, to find the oldest half-open one.
        self._attached: dict = {}
        self._seq = 0
        # The same one-line-per-interval limiter as unknown-peer refusals,
        # keyed by this neighbour's address only.
        self.evictions = LogLimit(self.EVICT_LOG_INTERVAL, max_keys=1)

    def start(self) -> Session:
        self.main = Session(self.neighbor, primary=True)
        return self.main

    def live(self) -> list:
        """Secondary first, then main: the sessions not disposed of."""
        return [s for s in (self.secondary, self.main) if s is not None and not s.disposed]

    def connections(self) -> list:
        return [s.conn for s in (self.main, self.secondary) if s is not None and s.conn is not None]

    def drop_secondary(self) -> None:
        sec = self.secondary
        self.secondary = None
        if sec is not None:
            sec.dispose()

    # -- stopping -------------------------------------------------------------------------

    def stop(self, reason: Reason, subcode: int, data: bytes) -> None:
        """ManualStop on every session with a Cease (RFC 4486) of
        ``subcode`` and ``data``."""
        gr = self.neighbor.config.graceful_restart
        for s in self.live():
            sub, dat = cease_for(s, gr, subcode, data)
            s.handle(Event.MANUAL_STOP, reason=reason, subcode=sub, data=dat)
        self.drop_secondary()

    def abort(self) -> None:
        """Drop every connection as a crash would (RST, no NOTIFICATION)."""
        for s in self.live():
            if s.conn is not None:
                s.fail_connection(Reason.DYING)
            if s.state is not State.IDLE:
                s.handle(Event.MANUAL_STOP, reason=Reason.DYING)

    def dispose(self) -> None:
        """Release every session silently (the main one stays readable)."""
        for s in (self.secondary, self.main):
            if s is not None:
                s.silent = True
                s.dispose()
        self.secondary = None

    # -- connections ------------------------------------------------------------------------

    def accept(self, conn) -> None:
        """An inbound connection from the neighbour's address."""
        nb = self.neighbor
        main = self.main
        if main is None or nb.removed or main.state is State.IDLE:
            # RFC 4271 §8.2.2: Idle refuses incoming connections.
            nb.counters.refused += 1
            conn.abort()
            return
        cfg = nb.config
        sock = conn.socket
        # A relayed connection (Speaker.adopt) is a local socket: the
        # process holding the TCP connection applied the TTL policy there.
        if sock is not None and conn.addresses is None:
            try:
                _transport.apply_ttl(sock, ttl=cfg.ttl, gtsm=cfg.gtsm, ebgp=nb.ebgp,
                                     peer_family=_transport.address_family(nb.address))
            except OSError as exc:
                log.error("%s: cannot apply TTL settings to the accepted connection: %s", nb.address, exc)
                nb.counters.refused += 1
                conn.abort()
                return
        nb.counters.accepted += 1
        if main.conn is None and main.state in (State.CONNECT, State.ACTIVE):
            self._stamp(conn)
            main.attach(conn, outbound=False)
        else:
            self._second_connection(conn, outbound=False)

    def connected(self, session, conn) -> None:
        """``session``'s outbound connection is up."""
        nb = self.neighbor
        if session.disposed or nb.removed:
            conn.abort()
            return
        if session is self.main:
            if session.conn is None and session.state in (State.CONNECT, State.ACTIVE):
                self._stamp(conn)
                session.attach(conn, outbound=True)
                return
            if session.state is not State.IDLE:
                self._second_connection(conn, outbound=True)
                return
        nb.counters.refused += 1
        conn.abort()

    def connect_failed(self, session, exc) -> None:
        """``session``'s outbound connection attempt failed."""
        if session is self.main and session.conn is None and session.state is State.CONNECT:
            session.handle(Event.TCP_CONNECTION_FAILS, reason=Reason.CONNECT_FAILED)

    def _second_connection(self, conn, outbound):
        """RFC 4271 §6.8: a connection while another is open gets its own FSM
        until an OPEN decides which survives."""
        sec = self.secondary
        if sec is not None and not sec.disposed and sec.conn is not None:
            # At most two connections per peer: a newer one replaces the
            # oldest that has not received an OPEN (no RFC 4271 §6.8
            # contender); with both OPENs received it is refused.
            victim = self._oldest_half_open()
            if victim is None:
                self.neighbor.counters.refused += 1
                conn.abort()
                return
            self._evict(victim)
        sec = self.secondary
        if sec is not None:
            sec.dispose()
        sec = Session(self.neighbor, primary=False)
        self.secondary = sec
        sec.handle(Event.MANUAL_START_PASSIVE)
        self._stamp(conn)
        sec.attach(conn, outbound=outbound)

    def _stamp(self, conn) -> None:
        """Remember when ``conn`` was attached (only live ones are kept)."""
        live = {c for c in self.connections()}
        self._attached = {c: n for c, n in self._attached.items() if c in live}
        self._seq += 1
        self._attached[conn] = self._seq

    def _oldest_half_open(self) -> Optional[Session]:
        """The session whose connection has received no OPEN yet, oldest
        first; None when every connection has (RFC 4271 §6.8 contenders)."""
        half = [s for s in (self.main, self.secondary)
                if s is not None and not s.disposed and s.conn is not None and s.remote_open is None]
        if not half:
            return None
        return min(half, key=lambda s: self._attached.get(s.conn, 0))

    def _evict(self, victim) -> None:
        """Close the half-open ``victim`` to make room for a newer connection:
        Cease 6/7 (RFC 4486) if we sent our OPEN on it, else just close."""
        nb = self.neighbor
        nb.counters.half_open_closed += 1
        suppressed = self.evictions.note(nb.address, time.monotonic())
        if suppressed is not None:
            log.info("%s: closing the %s connection that sent no OPEN for a newer one%s", nb.address,
                     "outbound" if victim.outbound else "inbound",
                     " (%d more since the last line)" % suppressed if suppressed else "")
        victim.quiet_end = True
        if victim is self.secondary:
            if victim.state is State.OPENSENT:
                victim.handle(Event.OPEN_COLLISION_DUMP)
            self.drop_secondary()
            return
        # The main one: the second connection takes its place.
        old_state = victim.state
        victim.silent = True
        if old_state is State.OPENSENT:
            victim.handle(Event.OPEN_COLLISION_DUMP)
        self.promote(self.secondary, Reason.COLLISION, old_state=old_state)

    def transition(self, session, t) -> bool:
        """Whether a transition of ``session`` is the neighbour's (its main
        session's); a secondary back in Idle is released."""
        if session is self.secondary:
            if t.state is State.IDLE:
                self.drop_secondary()
            return False
        return session is self.main

    # -- collisions --------------------------------------------------------------------------

    def open_received(self, session, op, neg) -> bool:
        """``session`` negotiated the OPEN ``op``: resolve a collision with
        the other connection (RFC 4271 §6.8).  Returns False when ``session``
        lost (it was dumped)."""
        other = self.secondary if session is self.main else self.main
        if (
            other is not None
            and other is not session
            and not other.disposed
            and other.conn is not None
            and other.state in (State.OPENSENT, State.OPENCONFIRM, State.ESTABLISHED)
        ):
            keep_new, graceful = self._resolve(session, other, op, neg)
            nb = self.neighbor
            nb.counters.collisions += 1
            self.log.append(CollisionRecord(time.time(), other.state, other.outbound, session.outbound, keep_new,
                                            graceful))
            if not keep_new:
                log.info("%s: connection collision: keeping the existing %s connection", nb.address,
                         "outbound" if other.outbound else "inbound")
                self._dump(session, other)
                return False
            log.info("%s: connection collision: keeping the new %s connection%s", nb.address,
                     "outbound" if session.outbound else "inbound", " (peer restarted)" if graceful else "")
            if other is self.main:
                other.silent = True
            if graceful:
                # RFC 4724 §4.2: an OPEN on a new connection while the old
                # session is Established means the peer restarted: close
                # the old one without NOTIFICATION, keep its routes stale.
                other.fail_connection(Reason.GRACEFUL_RESTART)
            else:
                other.handle(Event.OPEN_COLLISION_DUMP)
            if other is self.secondary:
                self.drop_secondary()
        if session is self.secondary:
            self.promote(session, Reason.COLLISION)
        return True

    def _dump(self, session, other):
        """``session`` lost against ``other``."""
        if session is self.secondary:
            session.handle(Event.OPEN_COLLISION_DUMP)
            if self.secondary is session:
                self.secondary = None
            session.dispose()
        else:
            session.silent = True
            session.handle(Event.OPEN_COLLISION_DUMP)
            self.promote(other, Reason.COLLISION)

    def _resolve(self, session, other, op, neg):
        """(keep the new connection?, because the peer restarted?)"""
        nb = self.neighbor
        cfg = nb.config
        if other.state is State.ESTABLISHED:
            if cfg.graceful_restart is not None and other.negotiated is not None and other.negotiated.graceful_restart is not None:
                return True, True
            if not cfg.collision_detect_established:
                return False, False
        if other.outbound == session.outbound:
            # Two connections in the same direction: the peer gave up on the
            # older one without us noticing; the newer one is live.
            return True, False
        res = resolve_collision(
            nb.router_id,
            op.bgp_id,
            other.state,
            other.outbound,
            local_as=nb.local_as,
            remote_as=neg.peer_asn,
            detect_established=cfg.collision_detect_established,
        )
        return res is Collision.KEEP_NEW, False

    def promote(self, session, reason, old_state: Optional[State] = None) -> None:
        """Make ``session`` the main session (it won a collision, or the main
        one had no connection left); ``old_state``: the main one's state
        before it was dumped, if it was."""
        old = self.main
        if old is session:
            return
        if old_state is None:
            old_state = old.state if old is not None else State.IDLE
        if old is not None:
            old.silent = True
            old.dispose()
        if self.secondary is session:
            self.secondary = None
        session.primary = True
        session.fsm.passive = self.neighbor.config.passive
        session.fsm.allow_automatic_start = True
        self.main = session
        self._on_promoted(old, old_state, session, reason)
