"""The RFC 4271 §8 BGP finite state machine, as pure decisions.

Nothing here touches a socket, a task or a clock.  The I/O layer feeds an
:class:`Event` (plus the current time) into :meth:`FSM.handle` and gets back a
:class:`Transition`: the new :class:`State`, why (:class:`Reason`), and the
ordered side effects (:class:`Act`) it must carry out -- send this message,
arm that timer, drop the connection.  Keeping the decisions pure lets every
RFC rule be unit-tested transition by transition.

The shape follows GoBGP's ``pkg/server/fsm.go`` (one handler per state that
returns the next state and a reason) but the rules are RFC 4271 §8.2.2's,
with the RFC 6608 FSM-error subcodes and the deviations noted inline.

One FSM per *connection* is assumed: a second connection to the same peer
gets its own FSM, the session layer calls :func:`resolve_collision` when an
OPEN arrives on it and feeds ``OPEN_COLLISION_DUMP`` to the loser.  So an OPEN
arriving on an FSM that is already in OpenConfirm/Established is a second OPEN
on the same connection, i.e. an FSM error (RFC 6608 §4).

Timer contract for the I/O layer: each timer is a single slot; ``START_*``
(re)arms it with ``Act.seconds``, ``STOP_*`` cancels it, and its expiry is fed
back as the matching ``*_EXPIRES`` event.  ``RELEASE_RESOURCES`` cancels the
hold, keepalive and delay-open timers.  Timers must be cancelled as told: a
stale expiry is an unexpected event and RFC 4271 turns it into an FSM error.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from dataclasses import dataclass
from enum import Enum, IntEnum
from typing import Callable, Optional

from fastbgp.wire.errors import (
    ACTION_SESSION_RESET,
    CEASE_ADMIN_RESET,
    CEASE_ADMIN_SHUTDOWN,
    CEASE_COLLISION,
    CEASE_HARD_RESET,
    CEASE_MAX_PREFIXES,
    CEASE_OTHER_CONFIG_CHANGE,
    CEASE_PEER_DECONFIGURED,
    ERR_CEASE,
    ERR_FSM,
    ERR_HEADER,
    ERR_HOLD_TIMER,
    ERR_OPEN,
    ERR_ROUTE_REFRESH,
    ERR_UPDATE,
    FSM_ESTABLISHED,
    FSM_OPENCONFIRM,
    FSM_OPENSENT,
    OPEN_BAD_BGP_ID,
    OPEN_UNACCEPTABLE_HOLD_TIME,
    OPEN_UNSUPPORTED_VERSION,
    BGPError,
)

__all__ = [
    "State",
    "Event",
    "Reason",
    "Action",
    "Act",
    "Transition",
    "FSM",
    "Collision",
    "resolve_collision",
    "negotiate_hold_time",
    "keepalive_interval",
    "jitter",
    "notification_event",
    "error_event",
    "DEFAULT_HOLD_TIME",
    "DEFAULT_CONNECT_RETRY_TIME",
    "LARGE_HOLD_TIME",
]

log = logging.getLogger(__name__)

# RFC 4271 §10 suggested timer values.
DEFAULT_HOLD_TIME = 90
DEFAULT_CONNECT_RETRY_TIME = 120
# RFC 4271 §8.2.2: in OpenSent the HoldTimer is set to "a large value"; the
# suggested value is 4 minutes.
LARGE_HOLD_TIME = 240


class State(IntEnum):
    """BGP session states; values are RFC 4273 bgpPeerState."""

    IDLE = 1
    CONNECT = 2
    ACTIVE = 3
    OPENSENT = 4
    OPENCONFIRM = 5
    ESTABLISHED = 6


class Event(IntEnum):
    """RFC 4271 §8.1 events; the value is the RFC event number.

    Events 14/15 (TcpConnection_Valid / Tcp_CR_Invalid) are not used: the
    I/O layer filters unknown peers before an FSM exists.  ROUTE_REFRESH_MSG
    is a local addition for RFC 2918 messages.
    """

    MANUAL_START = 1
    MANUAL_STOP = 2
    AUTOMATIC_START = 3
    MANUAL_START_PASSIVE = 4  # ManualStart_with_PassiveTcpEstablishment
    AUTOMATIC_START_PASSIVE = 5  # AutomaticStart_with_PassiveTcpEstablishment
    AUTOMATIC_START_DAMP = 6  # AutomaticStart_with_DampPeerOscillations
    AUTOMATIC_START_DAMP_PASSIVE = 7  # ..._and_PassiveTcpEstablishment
    AUTOMATIC_STOP = 8
    CONNECT_RETRY_TIMER_EXPIRES = 9
    HOLD_TIMER_EXPIRES = 10
    KEEPALIVE_TIMER_EXPIRES = 11
    DELAY_OPEN_TIMER_EXPIRES = 12
    IDLE_HOLD_TIMER_EXPIRES = 13
    TCP_CR_ACKED = 16  # our outbound connection completed
    TCP_CONNECTION_CONFIRMED = 17  # an inbound connection was accepted
    TCP_CONNECTION_FAILS = 18
    BGP_OPEN = 19
    BGP_OPEN_WITH_DELAY_OPEN_TIMER_RUNNING = 20
    BGP_HEADER_ERR = 21
    BGP_OPEN_MSG_ERR = 22
    OPEN_COLLISION_DUMP = 23
    NOTIF_MSG_VER_ERR = 24
    NOTIF_MSG = 25
    KEEPALIVE_MSG = 26
    UPDATE_MSG = 27
    UPDATE_MSG_ERR = 28
    ROUTE_REFRESH_MSG = 29  # RFC 2918; not an RFC 4271 event


class Reason(Enum):
    """Why a transition happened.  The first block mirrors GoBGP's
    fsmStateReasonType (same strings), the rest are local additions."""

    DYING = "dying"
    ADMIN_DOWN = "admin-down"
    READ_FAILED = "read-failed"
    WRITE_FAILED = "write-failed"
    NOTIFICATION_SENT = "notification-sent"
    NOTIFICATION_RECEIVED = "notification-received"
    HOLD_TIMER_EXPIRED = "hold-timer-expired"
    IDLE_HOLD_TIMER_EXPIRED = "idle-hold-timer-expired"
    RESTART_TIMER_EXPIRED = "restart-timer-expired"
    GRACEFUL_RESTART = "graceful-restart"
    INVALID_MSG = "invalid-msg"
    NEW_CONNECTION = "new-connection"
    OPEN_MSG_RECEIVED = "open-msg-received"
    OPEN_MSG_NEGOTIATED = "open-msg-negotiated"
    HARD_RESET = "hard-reset"
    # local additions
    ADMIN_UP = "admin-up"
    ADMIN_RESET = "admin-reset"
    AUTOMATIC_START = "automatic-start"
    CONNECT_RETRY_EXPIRED = "connect-retry-expired"
    CONNECT_FAILED = "connect-failed"
    TCP_ESTABLISHED = "tcp-established"
    DELAY_OPEN_EXPIRED = "delay-open-expired"
    PREFIX_LIMIT = "prefix-limit"
    DECONFIGURED = "deconfigured"
    CONFIG_CHANGE = "config-change"
    COLLISION = "collision"
    FSM_ERROR = "fsm-error"


# Cease subcode sent for a stop with a given reason (RFC 4486 §4, RFC 8538).
_CEASE_SUBCODE = {
    Reason.ADMIN_DOWN: CEASE_ADMIN_SHUTDOWN,
    Reason.DYING: CEASE_ADMIN_SHUTDOWN,
    Reason.DECONFIGURED: CEASE_PEER_DECONFIGURED,
    Reason.ADMIN_RESET: CEASE_ADMIN_RESET,
    Reason.CONFIG_CHANGE: CEASE_OTHER_CONFIG_CHANGE,
    Reason.PREFIX_LIMIT: CEASE_MAX_PREFIXES,
    Reason.COLLISION: CEASE_COLLISION,
    Reason.HARD_RESET: CEASE_HARD_RESET,
}


class Action(IntEnum):
    """Side effects the I/O layer performs, in the order given."""

    START_CONNECT_RETRY_TIMER = 1  # seconds
    STOP_CONNECT_RETRY_TIMER = 2
    INITIATE_TCP = 3
    DROP_TCP = 4
    SEND_OPEN = 5
    SEND_KEEPALIVE = 6
    SEND_NOTIFICATION = 7  # code, subcode, data
    START_HOLD_TIMER = 8  # seconds (large value in OpenSent, else negotiated)
    RESTART_HOLD_TIMER = 9  # seconds (= negotiated hold time)
    STOP_HOLD_TIMER = 10
    START_KEEPALIVE_TIMER = 11  # seconds
    STOP_KEEPALIVE_TIMER = 12
    START_IDLE_HOLD_TIMER = 13  # seconds (damped back-off)
    STOP_IDLE_HOLD_TIMER = 14
    START_DELAY_OPEN_TIMER = 15  # seconds
    STOP_DELAY_OPEN_TIMER = 16
    RELEASE_RESOURCES = 17  # stop hold/keepalive/delay-open timers, free state
    CLEAR_ROUTES = 18  # withdraw everything learnt from the peer
    PROCESS_UPDATE = 19
    PROCESS_ROUTE_REFRESH = 20
    # Informational: FSM.connect_retry_counter was already incremented.
    INCREMENT_CONNECT_RETRY_COUNTER = 21


@dataclass(frozen=True, slots=True)
class Act:
    """One side effect.  ``seconds`` is set for timer starts; ``code``,
    ``subcode`` and ``data`` for SEND_NOTIFICATION."""

    kind: Action
    seconds: float = 0.0
    code: int = 0
    subcode: int = 0
    data: bytes = b""

    def __repr__(self):
        if self.kind is Action.SEND_NOTIFICATION:
            return "Act(SEND_NOTIFICATION %d/%d%s)" % (
                self.code,
                self.subcode,
                " %r" % self.data if self.data else "",
            )
        if self.seconds:
            return "Act(%s %gs)" % (self.kind.name, self.seconds)
        return "Act(%s)" % self.kind.name


@dataclass(frozen=True, slots=True)
class Transition:
    """The result of one :meth:`FSM.handle` call."""

    old_state: State
    state: State
    event: Event
    reason: Optional[Reason]
    actions: tuple = ()

    @property
    def changed(self) -> bool:
        return self.old_state is not self.state

    @property
    def kinds(self) -> tuple:
        """The Action of every Act, in order."""
        return tuple(a.kind for a in self.actions)

    def has(self, kind: Action) -> bool:
        return any(a.kind is kind for a in self.actions)

    def get(self, kind: Action) -> Optional[Act]:
        """The first Act of that kind, or None."""
        for a in self.actions:
            if a.kind is kind:
                return a
        return None

    @property
    def notification(self) -> Optional[tuple]:
        """(code, subcode, data) of the NOTIFICATION to send, or None."""
        a = self.get(Action.SEND_NOTIFICATION)
        return None if a is None else (a.code, a.subcode, a.data)


# Shared argument-less acts.
_STOP_CRT = Act(Action.STOP_CONNECT_RETRY_TIMER)
_INITIATE_TCP = Act(Action.INITIATE_TCP)
_DROP_TCP = Act(Action.DROP_TCP)
_SEND_OPEN = Act(Action.SEND_OPEN)
_SEND_KEEPALIVE = Act(Action.SEND_KEEPALIVE)
_STOP_HOLD = Act(Action.STOP_HOLD_TIMER)
_STOP_KEEPALIVE = Act(Action.STOP_KEEPALIVE_TIMER)
_STOP_IDLE_HOLD = Act(Action.STOP_IDLE_HOLD_TIMER)
_STOP_DELAY_OPEN = Act(Action.STOP_DELAY_OPEN_TIMER)
_RELEASE = Act(Action.RELEASE_RESOURCES)
_CLEAR_ROUTES = Act(Action.CLEAR_ROUTES)
_PROCESS_UPDATE = Act(Action.PROCESS_UPDATE)
_PROCESS_ROUTE_REFRESH = Act(Action.PROCESS_ROUTE_REFRESH)
_INCREMENT_CRC = Act(Action.INCREMENT_CONNECT_RETRY_COUNTER)

_E = Event
_START_EVENTS = frozenset(
    {
        _E.MANUAL_START,
        _E.MANUAL_START_PASSIVE,
        _E.AUTOMATIC_START,
        _E.AUTOMATIC_START_PASSIVE,
        _E.AUTOMATIC_START_DAMP,
        _E.AUTOMATIC_START_DAMP_PASSIVE,
    }
)
_PASSIVE_STARTS = frozenset({_E.MANUAL_START_PASSIVE, _E.AUTOMATIC_START_PASSIVE, _E.AUTOMATIC_START_DAMP_PASSIVE})
_MANUAL_STARTS = frozenset({_E.MANUAL_START, _E.MANUAL_START_PASSIVE})
_DAMP_STARTS = frozenset({_E.AUTOMATIC_START_DAMP, _E.AUTOMATIC_START_DAMP_PASSIVE})
_TCP_UP = frozenset({_E.TCP_CR_ACKED, _E.TCP_CONNECTION_CONFIRMED})

# Reason used when an event drives the FSM to Idle without a dedicated rule.
_EVENT_REASON = {
    _E.HOLD_TIMER_EXPIRES: Reason.HOLD_TIMER_EXPIRED,
    _E.TCP_CONNECTION_FAILS: Reason.READ_FAILED,
    _E.NOTIF_MSG: Reason.NOTIFICATION_RECEIVED,
    _E.NOTIF_MSG_VER_ERR: Reason.NOTIFICATION_RECEIVED,
    _E.BGP_HEADER_ERR: Reason.INVALID_MSG,
    _E.BGP_OPEN_MSG_ERR: Reason.INVALID_MSG,
    _E.UPDATE_MSG_ERR: Reason.INVALID_MSG,
    _E.OPEN_COLLISION_DUMP: Reason.COLLISION,
    _E.AUTOMATIC_STOP: Reason.PREFIX_LIMIT,
}

# Default NOTIFICATION for a message-error event that carries no BGPError.
# RFC 4271 §4.5: subcode 0 (Unspecific) when no better subcode applies.
_DEFAULT_ERROR = {
    _E.BGP_HEADER_ERR: (ERR_HEADER, 0),
    _E.BGP_OPEN_MSG_ERR: (ERR_OPEN, 0),
    _E.UPDATE_MSG_ERR: (ERR_UPDATE, 0),
}

_EVENT_ARGS = frozenset({"hold_time", "error", "reason", "subcode", "data"})


# --------------------------------------------------------------------------
# Pure helpers


def negotiate_hold_time(local: int, remote: int) -> int:
    """The session hold time: the smaller of ours and the peer's.

    RFC 4271 §4.2: the Hold Time is 0 or at least 3 seconds and the session
    uses the smaller of the two.  §6.2: a received 1 or 2 MUST be rejected
    with Unacceptable Hold Time (2/6).
    """
    if not 0 <= local <= 0xFFFF or local in (1, 2):
        raise ValueError("local hold time must be 0 or 3..65535, got %r" % (local,))
    if not 0 <= remote <= 0xFFFF:
        raise ValueError("remote hold time out of range: %r" % (remote,))
    if remote in (1, 2):
        raise BGPError(
            ERR_OPEN,
            OPEN_UNACCEPTABLE_HOLD_TIME,
            reason="peer hold time %d is neither 0 nor >= 3" % remote,
        )
    return min(local, remote)


def keepalive_interval(hold: int, configured: Optional[int] = None) -> int:
    """Seconds between KEEPALIVEs for a negotiated hold time.

    RFC 4271 §4.4: no KEEPALIVEs when the hold time is 0.  §10: a third of
    the hold time is the suggested value.  A configured interval is used but
    clamped to hold//3 so a smaller negotiated hold time cannot make the peer
    expire us.
    """
    if hold == 0:
        return 0
    default = max(hold // 3, 1)
    if configured is None:
        return default
    if configured < 1:
        raise ValueError("keepalive interval must be >= 1, got %r" % (configured,))
    return min(configured, default)


def jitter(value: float, rnd) -> float:
    """RFC 4271 §10: multiply a timer's base value by a random factor
    uniformly distributed in 0.75..1.0 so peers do not synchronise.

    ``rnd`` is the random source (anything with ``.random()``, e.g. a
    ``random.Random``), passed explicitly so callers and tests control it.
    """
    return value * (0.75 + 0.25 * rnd.random())


def notification_event(code: int, subcode: int) -> Event:
    """The event for a received NOTIFICATION: RFC 4271 §8.1.5 event 24 is a
    NOTIFICATION carrying the OPEN 'Unsupported Version Number' error."""
    if code == ERR_OPEN and subcode == OPEN_UNSUPPORTED_VERSION:
        return Event.NOTIF_MSG_VER_ERR
    return Event.NOTIF_MSG


def error_event(error: BGPError) -> Event:
    """The event for a received message that failed to decode with ``error``."""
    if error.code == ERR_HEADER:
        return Event.BGP_HEADER_ERR
    if error.code == ERR_OPEN:
        return Event.BGP_OPEN_MSG_ERR
    # RFC 7313 §5: a bad ROUTE-REFRESH resets the session like a fatal
    # UPDATE error does, so it shares the UPDATE_MSG_ERR path.
    if error.code in (ERR_UPDATE, ERR_ROUTE_REFRESH):
        return Event.UPDATE_MSG_ERR
    raise ValueError("no receive event for error code %d" % error.code)


class Collision(Enum):
    """Outcome of :func:`resolve_collision`."""

    NONE = "none"  # the existing connection is not a collision candidate
    KEEP_EXISTING = "keep-existing"  # close the new one (Cease 6/7)
    KEEP_NEW = "keep-new"  # feed OPEN_COLLISION_DUMP to the existing FSM


def _bgp_id(value) -> int:
    if isinstance(value, int):
        if not 0 <= value <= 0xFFFFFFFF:
            raise ValueError("BGP identifier out of range: %r" % (value,))
        return value
    if isinstance(value, (bytes, bytearray)):
        if len(value) != 4:
            raise ValueError("BGP identifier must be 4 octets")
        return int.from_bytes(value, "big")
    return int(ipaddress.IPv4Address(value))


def resolve_collision(
    local_id,
    remote_id,
    existing_state: State,
    existing_is_outbound: bool,
    *,
    local_as: Optional[int] = None,
    remote_as: Optional[int] = None,
    detect_established: bool = False,
) -> Collision:
    """Decide which of two connections to the same peer survives.

    Called when an OPEN arrives on a new connection while another connection
    to the same peer is in ``existing_state``; the new connection runs in
    the opposite direction to the existing one.

    RFC 4271 §6.8: only OpenConfirm connections (and OpenSent ones, since
    the peer is identified by configuration) collide.  The BGP identifiers
    are compared as unsigned 32-bit integers and the connection initiated by
    the speaker with the higher identifier is kept.  An Established
    connection always wins unless CollisionDetectEstablishedState
    (``detect_established``, RFC 4271 §8.1.1) asks for the normal rule.

    RFC 6286 §2.3: with equal identifiers the connection initiated by the
    speaker with the larger AS number is kept; equal identifiers within one
    AS are a Bad BGP Identifier (RFC 6286 §2.2) and raise BGPError(2, 3).
    Identifiers may be ints, 4-octet bytes or dotted-quad strings.
    """
    local_id = _bgp_id(local_id)
    remote_id = _bgp_id(remote_id)
    existing_state = State(existing_state)
    if existing_state is State.ESTABLISHED and not detect_established:
        return Collision.KEEP_EXISTING
    if existing_state not in (State.OPENSENT, State.OPENCONFIRM, State.ESTABLISHED):
        return Collision.NONE
    if local_id != remote_id:
        local_wins = local_id > remote_id
    elif local_as is not None and remote_as is not None and local_as != remote_as:
        local_wins = local_as > remote_as
    else:
        raise BGPError(ERR_OPEN, OPEN_BAD_BGP_ID, reason="peer uses our BGP identifier")
    # The winner's connection is the one it initiated: outbound for us.
    if existing_is_outbound == local_wins:
        return Collision.KEEP_EXISTING
    return Collision.KEEP_NEW


# --------------------------------------------------------------------------
# The state machine


class FSM:
    """The pure per-connection state of one BGP session (RFC 4271 §8).

    Configuration (keyword-only):
      hold_time: our Hold Time (0 or >= 3).
      keepalive_time: configured keepalive interval, None for hold/3.
      connect_retry_time, large_hold_time, delay_open_time (0 = DelayOpen off).
      passive: never initiate TCP; only wait in Active.
      allow_automatic_start: after a non-manual drop, arm the IdleHoldTimer
        and restart when it expires.
      damp_peer_oscillations: double the idle hold time on each automatic
        drop (up to max_idle_hold_time), back to idle_hold_time after the
        session stayed Established for stable_time seconds.
      send_notification_without_open: RFC 4271 §8.1.1 SendNOTIFICATIONwithoutOPEN.
      rnd: random source for RFC 4271 §10 jitter (None: no jitter).

    Every method that can observe time takes ``now`` explicitly.
    """

    def __init__(
        self,
        *,
        hold_time: int = DEFAULT_HOLD_TIME,
        keepalive_time: Optional[int] = None,
        connect_retry_time: float = DEFAULT_CONNECT_RETRY_TIME,
        large_hold_time: float = LARGE_HOLD_TIME,
        delay_open_time: float = 0,
        passive: bool = False,
        allow_automatic_start: bool = True,
        damp_peer_oscillations: bool = True,
        idle_hold_time: float = 5.0,
        max_idle_hold_time: float = 120.0,
        stable_time: float = 300.0,
        send_notification_without_open: bool = True,
        rnd=None,
    ):
        if hold_time in (1, 2) or not 0 <= hold_time <= 0xFFFF:
            # RFC 4271 §4.2: Hold Time MUST be either zero or at least three.
            raise ValueError("hold_time must be 0 or 3..65535, got %r" % (hold_time,))
        if keepalive_time is not None and keepalive_time < 1:
            raise ValueError("keepalive_time must be >= 1")
        if idle_hold_time <= 0 or max_idle_hold_time < idle_hold_time:
            raise ValueError("need 0 < idle_hold_time <= max_idle_hold_time")
        self.hold_time = hold_time
        self.keepalive_time = keepalive_time
        self.connect_retry_time = connect_retry_time
        self.large_hold_time = large_hold_time
        self.delay_open_time = delay_open_time
        self.passive = passive
        self.allow_automatic_start = allow_automatic_start
        self.damp_peer_oscillations = damp_peer_oscillations
        self.idle_hold_time = idle_hold_time
        self.max_idle_hold_time = max_idle_hold_time
        self.stable_time = stable_time
        self.send_notification_without_open = send_notification_without_open
        self.rnd = rnd

        self.state = State.IDLE
        # Set by ManualStop, cleared by ManualStart: no automatic restart.
        self.admin_down = False
        self.connect_retry_counter = 0
        self.established_count = 0
        self.uptime: Optional[float] = None  # `now` when Established was entered
        self.downtime: Optional[float] = None  # `now` when Established was left
        self.last_change: Optional[float] = None
        self.negotiated_hold_time: Optional[int] = None
        self.negotiated_keepalive_time: Optional[int] = None
        self.last_reason: Optional[Reason] = None
        self._idle_hold_next = idle_hold_time
        self._delay_open_running = False
        self._idle_hold_running = False
        self._subscribers: list = []
        self._handlers = {
            State.IDLE: self._idle,
            State.CONNECT: self._connect,
            State.ACTIVE: self._active,
            State.OPENSENT: self._opensent,
            State.OPENCONFIRM: self._openconfirm,
            State.ESTABLISHED: self._established,
        }

    def __repr__(self):
        return "<FSM %s retries=%d established=%d>" % (
            self.state.name,
            self.connect_retry_counter,
            self.established_count,
        )

    # -- configuration views -------------------------------------------------

    @property
    def delay_open(self) -> bool:
        """RFC 4271 §8.1.1 DelayOpen."""
        return self.delay_open_time > 0

    @property
    def delay_open_running(self) -> bool:
        return self._delay_open_running

    @property
    def idle_hold_running(self) -> bool:
        return self._idle_hold_running

    # -- subscription ---------------------------------------------------------

    def subscribe(self, callback: Callable[[State, State, Optional[Reason]], None]) -> Callable[[], None]:
        """Call ``callback(old_state, new_state, reason)`` after every state
        change.  Returns a function that unsubscribes.  A raising callback is
        logged and does not stop the others or the transition."""
        self._subscribers.append(callback)

        def unsubscribe():
            try:
                self._subscribers.remove(callback)
            except ValueError:
                pass

        return unsubscribe

    # -- DampPeerOscillations ---------------------------------------------------

    def _stable(self, now: float) -> bool:
        return (
            self.state is State.ESTABLISHED
            and self.uptime is not None
            and now - self.uptime >= self.stable_time
        )

    def current_idle_hold_time(self, now: float) -> float:
        """The idle hold time a drop at ``now`` would use (no side effects)."""
        if not self.damp_peer_oscillations or self._stable(now):
            return self.idle_hold_time
        return self._idle_hold_next

    def record_flap(self, now: float) -> float:
        """Record an automatic drop at ``now``; return the seconds to wait in
        Idle before restarting.

        RFC 4271 §8.1.1 DampPeerOscillations (method left to implementations):
        each consecutive drop doubles the wait up to max_idle_hold_time; a
        session that stayed Established for stable_time resets it.
        """
        wait = self.current_idle_hold_time(now)
        if self.damp_peer_oscillations:
            self._idle_hold_next = min(wait * 2, self.max_idle_hold_time)
        return wait

    def reset_idle_hold(self) -> None:
        """Forget past flaps (operator start/stop)."""
        self._idle_hold_next = self.idle_hold_time

    # -- dispatch -------------------------------------------------------------

    def handle(self, event, now: Optional[float] = None, **args) -> Transition:
        """Apply ``event`` at time ``now`` and return the Transition.

        Event arguments:
          hold_time=int: the peer's Hold Time, with BGP_OPEN (default: ours).
          error=BGPError: with BGP_HEADER_ERR / BGP_OPEN_MSG_ERR / UPDATE_MSG_ERR,
            the NOTIFICATION to send.
          reason=Reason: overrides the reason (e.g. WRITE_FAILED with
            TCP_CONNECTION_FAILS, DECONFIGURED/HARD_RESET with MANUAL_STOP).
          subcode=int, data=bytes: Cease subcode / data (RFC 8203 shutdown
            communication) for MANUAL_STOP and AUTOMATIC_STOP.

        ``now`` should always be passed (e.g. ``loop.time()``); it falls back
        to time.monotonic() only for convenience.
        """
        event = Event(event)
        unknown = set(args) - _EVENT_ARGS
        if unknown:
            raise TypeError("unknown event arguments: %s" % ", ".join(sorted(unknown)))
        if now is None:
            now = time.monotonic()
        old = self.state
        # A timer that fired is no longer running.
        if event is Event.DELAY_OPEN_TIMER_EXPIRES:
            self._delay_open_running = False
        elif event is Event.IDLE_HOLD_TIMER_EXPIRES:
            self._idle_hold_running = False
        elif (
            event is Event.BGP_OPEN
            and self._delay_open_running
            and old in (State.CONNECT, State.ACTIVE)
        ):
            # RFC 4271 §8.1.5: an OPEN while DelayOpenTimer runs is event 20.
            event = Event.BGP_OPEN_WITH_DELAY_OPEN_TIMER_RUNNING
        new, reason, actions = self._handlers[old](event, now, args)
        override = args.get("reason")
        if override is not None and reason is not None:
            reason = Reason(override)
        actions = tuple(actions)
        self._commit(old, new, event, reason, actions, now)
        transition = Transition(old, new, event, reason, actions)
        if new is not old:
            for callback in list(self._subscribers):
                try:
                    callback(old, new, reason)
                except Exception:
                    log.exception("FSM subscriber %r failed", callback)
        return transition

    def _commit(self, old, new, event, reason, actions, now):
        # Track the two timers whose state changes the rules.
        for a in actions:
            k = a.kind
            if k is Action.START_DELAY_OPEN_TIMER:
                self._delay_open_running = True
            elif k is Action.STOP_DELAY_OPEN_TIMER or k is Action.RELEASE_RESOURCES:
                self._delay_open_running = False
            elif k is Action.START_IDLE_HOLD_TIMER:
                self._idle_hold_running = True
            elif k is Action.STOP_IDLE_HOLD_TIMER:
                self._idle_hold_running = False
        if new is old:
            return
        self.state = new
        self.last_change = now
        self.last_reason = reason
        if new is State.ESTABLISHED:
            self.established_count += 1
            self.uptime = now
        if old is State.ESTABLISHED:
            self.downtime = now
        if new is State.IDLE:
            self.negotiated_hold_time = None
            self.negotiated_keepalive_time = None

    # -- building blocks --------------------------------------------------------

    def _jit(self, value: float) -> float:
        return value if self.rnd is None or not value else jitter(value, self.rnd)

    def _start_crt(self) -> list:
        # A configured-passive peer never initiates, so never needs the timer.
        if self.passive:
            return []
        return [Act(Action.START_CONNECT_RETRY_TIMER, seconds=self._jit(self.connect_retry_time))]

    def _start(self, passive: bool, reason: Reason):
        """RFC 4271 §8.2.2 Idle, events 1/3 (-> Connect) and 4/5 (-> Active)."""
        acts = [_STOP_IDLE_HOLD] if self._idle_hold_running else []
        if passive or self.passive:
            # Passive start still arms the ConnectRetryTimer (RFC: Active
            # then initiates on expiry) unless configured never to initiate.
            return State.ACTIVE, reason, acts + self._start_crt()
        acts.append(Act(Action.START_CONNECT_RETRY_TIMER, seconds=self._jit(self.connect_retry_time)))
        acts.append(_INITIATE_TCP)
        return State.CONNECT, reason, acts

    def _send_open(self) -> list:
        # RFC 4271 §8.2.2: after sending OPEN, HoldTimer = large value (4 min).
        return [_SEND_OPEN, Act(Action.START_HOLD_TIMER, seconds=self.large_hold_time)]

    def _to_idle(self, now, reason, notify=None, count=True) -> tuple:
        """The common "release and go to Idle" sequence of RFC 4271 §8.2.2:
        send the NOTIFICATION (if any), stop the ConnectRetryTimer, delete
        routes (from Established), release resources, drop TCP, increment
        ConnectRetryCounter, damp, change to Idle."""
        acts = []
        if notify is not None:
            code, subcode, data = notify
            acts.append(Act(Action.SEND_NOTIFICATION, code=code, subcode=subcode, data=bytes(data)))
        acts.append(_STOP_CRT)
        if self._delay_open_running:
            acts.append(_STOP_DELAY_OPEN)
        if self.state is State.ESTABLISHED:
            acts.append(_CLEAR_ROUTES)
        acts.append(_RELEASE)
        acts.append(_DROP_TCP)
        if count:
            self.connect_retry_counter += 1
            acts.append(_INCREMENT_CRC)
        if self.allow_automatic_start and not self.admin_down:
            # Automatic restart after a damped wait.  Back-off grows on every
            # automatic drop, also those where the RFC does not count a retry
            # (e.g. a refused connect), so an unreachable peer is not hammered.
            acts.append(Act(Action.START_IDLE_HOLD_TIMER, seconds=self.record_flap(now)))
        return State.IDLE, reason, acts

    def _stop(self, event, now, args, notify: bool):
        """ManualStop (RFC 4271 §8.2.2, all states but Idle) and AutomaticStop
        (OpenSent and later).  Manual: no restart and ConnectRetryCounter = 0;
        automatic: counter + 1 and damped restart."""
        manual = event is Event.MANUAL_STOP
        reason = Reason(args.get("reason") or (Reason.ADMIN_DOWN if manual else Reason.PREFIX_LIMIT))
        cease = None
        if notify:
            subcode = args.get("subcode")
            if subcode is None:
                subcode = _CEASE_SUBCODE.get(reason, CEASE_ADMIN_SHUTDOWN)
            cease = (ERR_CEASE, subcode, args.get("data", b""))
        if manual:
            self.admin_down = True
            self.reset_idle_hold()
            result = self._to_idle(now, reason, cease, count=False)
            self.connect_retry_counter = 0
            return result
        return self._to_idle(now, reason, cease, count=True)

    def _error_notification(self, event, args) -> tuple:
        error = args.get("error")
        if error is not None:
            return error.notification
        code, subcode = _DEFAULT_ERROR[event]
        return (code, subcode, b"")

    def _fsm_error(self, now, event, subcode):
        # RFC 4271 §8.2.2 "any other event" + RFC 6608 §4 subcodes.
        return self._to_idle(
            now, _EVENT_REASON.get(event, Reason.FSM_ERROR), (ERR_FSM, subcode, b""), count=True
        )

    def _to_openconfirm(self, now, args, acts, reason):
        """Accept the peer's OPEN: negotiate hold time, send KEEPALIVE, arm
        timers (RFC 4271 §8.2.2 OpenSent event 19, Connect/Active event 20)."""
        try:
            hold = negotiate_hold_time(self.hold_time, args.get("hold_time", self.hold_time))
        except BGPError as e:
            # RFC 4271 §6.2: an unacceptable hold time is an OPEN message error.
            return self._handlers[self.state](Event.BGP_OPEN_MSG_ERR, now, {"error": e})
        keepalive = keepalive_interval(hold, self.keepalive_time)
        self.negotiated_hold_time = hold
        self.negotiated_keepalive_time = keepalive
        acts.append(_SEND_KEEPALIVE)
        if hold:
            acts.append(Act(Action.START_KEEPALIVE_TIMER, seconds=self._jit(keepalive)))
            acts.append(Act(Action.START_HOLD_TIMER, seconds=hold))
        else:
            # RFC 4271 §4.4: hold time 0 means no KEEPALIVEs and no HoldTimer.
            acts += [_STOP_KEEPALIVE, _STOP_HOLD]
        return State.OPENCONFIRM, reason, acts

    def update_hold_time(self) -> int:
        """Hot path of Established + event 27 (UpdateMsg), RFC 4271 §8.2.2:
        ``handle(Event.UPDATE_MSG)`` in Established stays in Established,
        restarts the HoldTimer and processes the UPDATE.  The session calls
        this instead (only in Established) to skip building a Transition
        per UPDATE; returns the HoldTimer's seconds (0: no HoldTimer)."""
        return self.negotiated_hold_time

    def _restart_hold(self) -> list:
        # RFC 4271 §8.2.2: restart the HoldTimer "if the negotiated HoldTime
        # value is non-zero".
        hold = self.negotiated_hold_time
        return [Act(Action.RESTART_HOLD_TIMER, seconds=hold)] if hold else []

    def _keepalive_tick(self):
        # RFC 4271 §8.2.2 event 11: send KEEPALIVE, restart KeepaliveTimer.
        ka = self.negotiated_keepalive_time
        if not ka:
            return self.state, None, []  # stale expiry with hold time 0
        return self.state, None, [_SEND_KEEPALIVE, Act(Action.START_KEEPALIVE_TIMER, seconds=self._jit(ka))]

    # -- per-state handlers (RFC 4271 §8.2.2) --------------------------------

    def _idle(self, event, now, args):
        if event in _START_EVENTS:
            manual = event in _MANUAL_STARTS
            if manual:
                self.admin_down = False
                self.reset_idle_hold()
            elif self.admin_down:
                # An operator stop outranks automatic starts.
                return State.IDLE, None, []
            elif event in _DAMP_STARTS and self._idle_hold_running:
                # RFC 4271 §8.1.2 events 6/7: damped start; the running
                # IdleHoldTimer will do the start when it expires.
                return State.IDLE, None, []
            # RFC 4271 §8.2.2 Idle: start sets ConnectRetryCounter to zero.
            self.connect_retry_counter = 0
            return self._start(
                event in _PASSIVE_STARTS, Reason.ADMIN_UP if manual else Reason.AUTOMATIC_START
            )
        if event is Event.IDLE_HOLD_TIMER_EXPIRES:
            if self.admin_down or not self.allow_automatic_start:
                return State.IDLE, None, []
            # Automatic restart after damping; keeps the retry count.
            return self._start(False, Reason.IDLE_HOLD_TIMER_EXPIRED)
        if event is Event.MANUAL_STOP:
            # RFC 4271 ignores ManualStop in Idle, but a pending automatic
            # restart must be cancelled or the stop would not stick.
            self.admin_down = True
            self.reset_idle_hold()
            self.connect_retry_counter = 0
            if self._idle_hold_running:
                return State.IDLE, None, [_STOP_IDLE_HOLD]
            return State.IDLE, None, []
        # RFC 4271 §8.2.2 Idle: any other event is ignored.
        return State.IDLE, None, []

    def _connect(self, event, now, args):
        if event in _START_EVENTS:
            return State.CONNECT, None, []  # RFC 4271 §8.2.2: ignored
        if event is Event.MANUAL_STOP:
            # RFC 4271 §8.2.2 Connect: no NOTIFICATION (no OPEN sent yet).
            return self._stop(event, now, args, notify=False)
        if event is Event.CONNECT_RETRY_TIMER_EXPIRES:
            # Drop the attempt, restart the timer, try again; stay in Connect.
            acts = [_DROP_TCP, Act(Action.START_CONNECT_RETRY_TIMER, seconds=self._jit(self.connect_retry_time))]
            if self._delay_open_running:
                acts.append(_STOP_DELAY_OPEN)
            acts.append(_INITIATE_TCP)
            return State.CONNECT, Reason.CONNECT_RETRY_EXPIRED, acts
        if event is Event.DELAY_OPEN_TIMER_EXPIRES:
            return State.OPENSENT, Reason.DELAY_OPEN_EXPIRED, self._send_open()
        if event in _TCP_UP:
            reason = Reason.TCP_ESTABLISHED if event is Event.TCP_CR_ACKED else Reason.NEW_CONNECTION
            if self.delay_open:
                # RFC 4271 §8.2.2 events 16/17 with DelayOpen: wait for the
                # peer's OPEN (or the DelayOpenTimer) before sending ours.
                return State.CONNECT, reason, [
                    _STOP_CRT,
                    Act(Action.START_DELAY_OPEN_TIMER, seconds=self.delay_open_time),
                ]
            return State.OPENSENT, reason, [_STOP_CRT] + self._send_open()
        if event is Event.TCP_CONNECTION_FAILS:
            if self._delay_open_running:
                # Connection was up and waiting for OPEN: listen in Active.
                acts = [_STOP_DELAY_OPEN, _DROP_TCP] + self._start_crt()
                return State.ACTIVE, Reason.READ_FAILED, acts
            # RFC 4271 §8.2.2 Connect event 18: to Idle, counter unchanged.
            return self._to_idle(now, Reason.CONNECT_FAILED, count=False)
        if event is Event.BGP_OPEN_WITH_DELAY_OPEN_TIMER_RUNNING:
            acts = [_STOP_CRT, _STOP_DELAY_OPEN, _SEND_OPEN]
            return self._to_openconfirm(now, args, acts, Reason.OPEN_MSG_RECEIVED)
        return self._pre_open_error(event, now, args)

    def _active(self, event, now, args):
        if event in _START_EVENTS:
            return State.ACTIVE, None, []  # RFC 4271 §8.2.2: ignored
        if event is Event.MANUAL_STOP:
            # RFC 4271 §8.2.2 Active: Cease only if a connection is up
            # (DelayOpenTimer running) and SendNOTIFICATIONwithoutOPEN.
            notify = self._delay_open_running and self.send_notification_without_open
            return self._stop(event, now, args, notify=notify)
        if event is Event.CONNECT_RETRY_TIMER_EXPIRES:
            if self.passive:
                return State.ACTIVE, None, []  # configured never to initiate
            acts = [Act(Action.START_CONNECT_RETRY_TIMER, seconds=self._jit(self.connect_retry_time)), _INITIATE_TCP]
            return State.CONNECT, Reason.CONNECT_RETRY_EXPIRED, acts
        if event is Event.DELAY_OPEN_TIMER_EXPIRES:
            return State.OPENSENT, Reason.DELAY_OPEN_EXPIRED, [_STOP_CRT] + self._send_open()
        if event in _TCP_UP:
            reason = Reason.TCP_ESTABLISHED if event is Event.TCP_CR_ACKED else Reason.NEW_CONNECTION
            if self.delay_open:
                return State.ACTIVE, reason, [
                    _STOP_CRT,
                    Act(Action.START_DELAY_OPEN_TIMER, seconds=self.delay_open_time),
                ]
            return State.OPENSENT, reason, [_STOP_CRT] + self._send_open()
        if event is Event.TCP_CONNECTION_FAILS:
            # RFC 4271 §8.2.2 Active event 18 "restarts" the ConnectRetryTimer
            # on the way to Idle, where its expiry is ignored anyway; we stop
            # it instead so no stale timer outlives the attempt.
            return self._to_idle(now, Reason.READ_FAILED, count=True)
        if event is Event.BGP_OPEN_WITH_DELAY_OPEN_TIMER_RUNNING:
            acts = [_STOP_CRT, _STOP_DELAY_OPEN, _SEND_OPEN]
            return self._to_openconfirm(now, args, acts, Reason.OPEN_MSG_RECEIVED)
        return self._pre_open_error(event, now, args)

    def _pre_open_error(self, event, now, args):
        """Connect/Active events 21, 22, 24 and "any other event"."""
        if event in (Event.BGP_HEADER_ERR, Event.BGP_OPEN_MSG_ERR):
            # RFC 4271 §8.2.2: NOTIFICATION only if SendNOTIFICATIONwithoutOPEN
            # since we have not sent our OPEN yet.
            notify = self._error_notification(event, args) if self.send_notification_without_open else None
            return self._to_idle(now, Reason.INVALID_MSG, notify, count=True)
        if event is Event.NOTIF_MSG_VER_ERR:
            # RFC 4271 §8.2.2: with DelayOpenTimer running the peer merely
            # rejected our version; no retry is counted.
            return self._to_idle(now, Reason.NOTIFICATION_RECEIVED, count=not self._delay_open_running)
        # Any other event: to Idle, counted, no NOTIFICATION (RFC 6608 only
        # defines FSM-error subcodes from OpenSent on).
        return self._to_idle(now, _EVENT_REASON.get(event, Reason.FSM_ERROR), count=True)

    def _opensent(self, event, now, args):
        if event in _START_EVENTS:
            return State.OPENSENT, None, []  # RFC 4271 §8.2.2: ignored
        if event in (Event.MANUAL_STOP, Event.AUTOMATIC_STOP):
            return self._stop(event, now, args, notify=True)
        if event is Event.HOLD_TIMER_EXPIRES:
            # RFC 4271 §6.5: Hold Timer Expired NOTIFICATION (4/0).
            return self._to_idle(now, Reason.HOLD_TIMER_EXPIRED, (ERR_HOLD_TIMER, 0, b""))
        if event in _TCP_UP:
            # RFC 4271 §8.2.2 OpenSent 16/17: a second connection is tracked
            # (by the session layer, for collision detection); no change.
            return State.OPENSENT, None, []
        if event is Event.TCP_CONNECTION_FAILS:
            # RFC 4271 §8.2.2 OpenSent 18: close, restart the
            # ConnectRetryTimer, listen in Active.  Stop the large HoldTimer
            # so its stale expiry does not hit Active.
            acts = [_DROP_TCP, _STOP_HOLD] + self._start_crt()
            return State.ACTIVE, Reason.READ_FAILED, acts
        if event is Event.BGP_OPEN:
            return self._to_openconfirm(now, args, [_STOP_CRT], Reason.OPEN_MSG_RECEIVED)
        if event in (Event.BGP_HEADER_ERR, Event.BGP_OPEN_MSG_ERR):
            return self._to_idle(now, Reason.INVALID_MSG, self._error_notification(event, args))
        if event is Event.OPEN_COLLISION_DUMP:
            # RFC 4271 §6.8: Cease, Connection Collision Resolution (RFC 4486).
            return self._to_idle(now, Reason.COLLISION, (ERR_CEASE, CEASE_COLLISION, b""))
        if event is Event.NOTIF_MSG_VER_ERR:
            return self._to_idle(now, Reason.NOTIFICATION_RECEIVED, count=False)
        if event is Event.NOTIF_MSG:
            # RFC 4271 lists event 25 under OpenSent's "any other event",
            # which would answer a NOTIFICATION with one; the peer is already
            # closing, so we treat it like OpenConfirm does (no reply).
            return self._to_idle(now, Reason.NOTIFICATION_RECEIVED, count=True)
        return self._fsm_error(now, event, FSM_OPENSENT)

    def _openconfirm(self, event, now, args):
        if event in _START_EVENTS:
            return State.OPENCONFIRM, None, []  # RFC 4271 §8.2.2: ignored
        if event in (Event.MANUAL_STOP, Event.AUTOMATIC_STOP):
            return self._stop(event, now, args, notify=True)
        if event is Event.HOLD_TIMER_EXPIRES:
            return self._to_idle(now, Reason.HOLD_TIMER_EXPIRED, (ERR_HOLD_TIMER, 0, b""))
        if event is Event.KEEPALIVE_TIMER_EXPIRES:
            return self._keepalive_tick()
        if event in _TCP_UP:
            return State.OPENCONFIRM, None, []  # second connection tracked
        if event in (Event.TCP_CONNECTION_FAILS, Event.NOTIF_MSG, Event.NOTIF_MSG_VER_ERR):
            # RFC 4271 §8.2.2 OpenConfirm 18/24/25: counted, no NOTIFICATION.
            return self._to_idle(now, _EVENT_REASON[event], count=True)
        if event in (Event.BGP_HEADER_ERR, Event.BGP_OPEN_MSG_ERR):
            return self._to_idle(now, Reason.INVALID_MSG, self._error_notification(event, args))
        if event is Event.OPEN_COLLISION_DUMP:
            return self._to_idle(now, Reason.COLLISION, (ERR_CEASE, CEASE_COLLISION, b""))
        if event is Event.KEEPALIVE_MSG:
            # RFC 4271 §8.2.2 OpenConfirm 26: restart HoldTimer, Established.
            return State.ESTABLISHED, Reason.OPEN_MSG_NEGOTIATED, self._restart_hold()
        # Includes a second OPEN on this connection: RFC 6608 §4 subcode 2.
        return self._fsm_error(now, event, FSM_OPENCONFIRM)

    def _established(self, event, now, args):
        if event in _START_EVENTS:
            return State.ESTABLISHED, None, []  # RFC 4271 §8.2.2: ignored
        if event in (Event.MANUAL_STOP, Event.AUTOMATIC_STOP):
            return self._stop(event, now, args, notify=True)
        if event is Event.HOLD_TIMER_EXPIRES:
            return self._to_idle(now, Reason.HOLD_TIMER_EXPIRED, (ERR_HOLD_TIMER, 0, b""))
        if event is Event.KEEPALIVE_TIMER_EXPIRES:
            return self._keepalive_tick()
        if event in _TCP_UP:
            # RFC 4271 §8.2.2 Established 16/17: track until it sends OPEN.
            return State.ESTABLISHED, None, []
        if event is Event.OPEN_COLLISION_DUMP:
            # Only reachable with CollisionDetectEstablishedState.
            return self._to_idle(now, Reason.COLLISION, (ERR_CEASE, CEASE_COLLISION, b""))
        if event in (Event.TCP_CONNECTION_FAILS, Event.NOTIF_MSG, Event.NOTIF_MSG_VER_ERR):
            return self._to_idle(now, _EVENT_REASON[event], count=True)
        if event is Event.KEEPALIVE_MSG:
            return State.ESTABLISHED, None, self._restart_hold()
        if event is Event.UPDATE_MSG:
            return State.ESTABLISHED, None, self._restart_hold() + [_PROCESS_UPDATE]
        if event is Event.ROUTE_REFRESH_MSG:
            # RFC 2918; any message from the peer proves liveness, so the
            # HoldTimer is restarted too.
            return State.ESTABLISHED, None, self._restart_hold() + [_PROCESS_ROUTE_REFRESH]
        if event is Event.UPDATE_MSG_ERR:
            error = args.get("error")
            if error is not None and error.action < ACTION_SESSION_RESET:
                # RFC 7606 §2: attribute-discard / treat-as-withdraw / AFI-SAFI
                # disable keep the session; the UPDATE is still processed.
                return State.ESTABLISHED, None, self._restart_hold() + [_PROCESS_UPDATE]
            return self._to_idle(now, Reason.INVALID_MSG, self._error_notification(event, args))
        if event is Event.BGP_HEADER_ERR:
            # RFC 4271 §8.2.2 lists event 21 under Established's "any other
            # event" (FSM error), but §6.1 requires the header error itself
            # to be reported; the message-specific NOTIFICATION wins.
            return self._to_idle(now, Reason.INVALID_MSG, self._error_notification(event, args))
        # Includes an OPEN on an Established connection: RFC 6608 §4 subcode 3.
        return self._fsm_error(now, event, FSM_ESTABLISHED)
