"""The library entry point: a BGP speaker with configured neighbours.

::

    speaker = Speaker(65001, "192.0.2.1", listen=[("192.0.2.1", 179)])
    peer = speaker.add_neighbor(NeighborConfig(address="192.0.2.2", peer_as=65002))
    await speaker.start()
    await peer.wait_established(timeout=30)
    speaker.announce(["198.51.100.0/24"], next_hop="192.0.2.1", as_path=[65010])
    print(peer.received())
    await speaker.stop()

One :class:`Neighbor` per configured peer composes what it needs: its
sessions and their collisions (:mod:`fastbgp.session.collision`), the OPEN
exchange (:mod:`fastbgp.session.opening`), its Adj-RIB-Out and the sender
that feeds the session honouring transport back-pressure
(:mod:`fastbgp.session.adj_rib_out`), graceful-restart timers
(:mod:`fastbgp.session.graceful_restart`), waiters and subscribers
(:mod:`fastbgp.session.waiters`), and a route sink
(:class:`fastbgp.session.sink.RouteSink`) that receives the routes: by
default the dict Adj-RIB-In of :mod:`fastbgp.session.adj_rib_in` (per
prefix: the interned attribute block; objects are only built by
:meth:`Neighbor.received`).  ``Speaker(sink_factory=...)`` gives every
neighbour another sink (the daemon's keeps routes in its RIBs).

Routes announced on the :class:`Speaker` go to every neighbour; routes
announced on a :class:`Neighbor` only to that one.  For eBGP neighbours the
local AS is prepended to the AS_PATH given (RFC 4271 §5.1.2) and LOCAL_PREF
is not sent (§5.1.5); for iBGP neighbours the path goes out as given and
LOCAL_PREF defaults to 100.  Without ``next_hop`` the session's local
address is used (next-hop-self).

Nothing here chooses the event loop (entry points do, e.g. with
``asyncio.Runner(loop_factory=uvloop.new_event_loop)``); everything works on
either loop.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections import deque
from typing import Callable, Optional, Union

import msgspec

from fastbgp.wire.families import parse_family
from fastbgp.wire import codec, messages
from fastbgp.session import transport as _transport
from fastbgp.session.adj_rib_in import AdjRibIn
from fastbgp.session.adj_rib_out import AdjRibOut, Batch, RibOut
from fastbgp.session.cease import PrefixLimit, log_session_end, notification_text, shutdown_data
from fastbgp.session.collision import CollisionRecord, Sessions
from fastbgp.session.counters import Counters, LogLimit, RefusedConnections
from fastbgp.session.fsm import Event, Reason, State
from fastbgp.session.graceful_restart import GracefulRestart
from fastbgp.session.listeners import ListenerManager
from fastbgp.session.opening import local_capabilities, negotiate_open
from fastbgp.session.protocol import Connection, Session, TurnScheduler
from fastbgp.session.routes import (
    PathSpec,
    RouteAttributes,
    announcement,
    by_prefix,
    group_prefixes,
    pack_prefix,
)
from fastbgp.session.sink import RouteSink, parse_updates
from fastbgp.session.waiters import StateChange, Subscribers, Waiters
from fastbgp.wire.constants import (
    DEFAULT_MAX_QUEUED_BYTES,
    MSG_ROUTE_REFRESH,
    ROLE_NAMES,
    RR_BORR,
    RR_EORR,
    RR_NORMAL,
)
from fastbgp.wire.errors import (
    ACTION_TREAT_AS_WITHDRAW,
    CEASE_ADMIN_RESET,
    CEASE_ADMIN_SHUTDOWN,
    CEASE_HARD_RESET,
    CEASE_PEER_DECONFIGURED,
    ERR_CEASE,
)

__all__ = [
    "Speaker",
    "Neighbor",
    "NeighborConfig",
    "GracefulRestartConfig",
    "PathSpec",
    "RouteAttributes",
    "RouteSink",
    "StateChange",
    "CollisionRecord",
    "RibOut",
    "pack_prefix",
]

log = logging.getLogger("fastbgp.speaker")

_ROLE_BY_NAME = {v: k for k, v in ROLE_NAMES.items()}


# ---------------------------------------------------------------- configuration


class GracefulRestartConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """RFC 4724 graceful restart (both roles).

    ``restart_time``: what we advertise (seconds the peer keeps our routes).
    ``notification``: RFC 8538 N bit (graceful behaviour also after a
    NOTIFICATION other than Hard Reset).  ``forwarding_state``: the F bit
    on our families.  ``stale_time``: after the peer came back, how long its
    stale routes wait for its End-of-RIB before being dropped anyway.
    """

    restart_time: int = 120
    notification: bool = True
    forwarding_state: bool = True
    stale_time: float = 360.0

    def __post_init__(self):
        if not 0 <= self.restart_time <= 0xFFF:
            raise ValueError("graceful restart time must be 0..4095 seconds (RFC 4724 §3)")


class NeighborConfig(msgspec.Struct, forbid_unknown_fields=True):
    """Everything configurable about one neighbour.

    Families are names ("ipv4-unicast", "ipv6-unicast", "ipv4-multicast",
    "ipv6-multicast"; "ipv4"/"ipv6" for unicast).  ``addpath_send`` /
    ``addpath_receive``: True for every configured family or a list of
    families.  ``ttl`` sets the TTL we send with (eBGP multihop); ``gtsm``
    (True = directly connected, or a hop count) enables RFC 5082.  ``role``
    is an RFC 9234 role name ("provider", "customer", "peer", "rs",
    "rs-client").  ``prefix_limit`` caps the prefixes accepted (Cease 6/1
    when exceeded); the neighbour then stays Idle until :meth:`Neighbor.enable`
    or, if set, ``prefix_limit_restart`` seconds.  ``four_octet_as=False``
    behaves like an RFC 4271-only speaker (no 4-octet AS capability).

    TTL: eBGP sessions send with TTL 1 unless ``ttl`` (multihop) or ``gtsm``
    is set; iBGP sessions keep the system default.  MD5 keys are installed
    on the listening sockets (per neighbour address) and on the connecting
    socket.  ``idle_hold_time`` is the first wait before an automatic
    restart after a drop; with ``damp_peer_oscillations`` it doubles on each
    consecutive drop up to ``max_idle_hold_time`` (RFC 4271 §8.1.1).
    """

    address: str
    peer_as: int
    local_as: Optional[int] = None
    passive: bool = False
    port: int = 179
    local_address: Optional[str] = None
    description: str = ""
    hold_time: int = 90
    keepalive: Optional[int] = None
    connect_retry: float = 120.0
    idle_hold_time: float = 5.0
    max_idle_hold_time: float = 120.0
    damp_peer_oscillations: bool = True
    delay_open: float = 0.0
    md5_password: Optional[str] = None
    ttl: Optional[int] = None
    gtsm: Union[bool, int] = False
    families: list[str] = msgspec.field(default_factory=lambda: ["ipv4-unicast", "ipv6-unicast"])
    addpath_send: Union[bool, list[str]] = False
    addpath_receive: Union[bool, list[str]] = False
    graceful_restart: Union[GracefulRestartConfig, bool, None] = None
    prefix_limit: Optional[int] = None
    prefix_limit_restart: Optional[float] = None
    role: Optional[str] = None
    role_strict: bool = False
    admin_down: bool = False
    four_octet_as: bool = True
    extended_message: bool = False
    extended_next_hop: bool = False  # RFC 8950: IPv4 unicast with IPv6 next hops
    route_refresh: bool = True
    enhanced_route_refresh: bool = True
    hostname: Optional[str] = None
    send_notification_without_open: bool = True
    collision_detect_established: bool = False
    # Cap on the octets waiting for this peer (Adj-RIB-Out queue plus the
    # transport's write buffer): a peer that reads too slowly to keep up is
    # dropped with Cease / Out of Resources (RFC 4486 §3, subcode 8) rather
    # than let its queue grow without bound.
    max_queued_bytes: int = DEFAULT_MAX_QUEUED_BYTES
    # RFC 5065 §4: the peer is in another member AS of our confederation:
    # an eBGP session whose UPDATEs keep the internal attributes (LOCAL_PREF
    # is not discarded on receipt as it is from other external peers).
    confederation_member: bool = False

    def __post_init__(self):
        self.address = _transport.normalize_address(self.address)
        if self.local_address is not None:
            self.local_address = _transport.normalize_address(self.local_address)
            if _transport.address_family(self.local_address) != _transport.address_family(self.address):
                raise ValueError("local_address %s is not of the family of %s" % (self.local_address, self.address))
        if not 1 <= self.peer_as <= 0xFFFFFFFF:
            raise ValueError("peer_as must be 1..4294967295")
        if self.local_as is not None and not 1 <= self.local_as <= 0xFFFFFFFF:
            raise ValueError("local_as must be 1..4294967295")
        if self.hold_time in (1, 2) or not 0 <= self.hold_time <= 0xFFFF:
            # RFC 4271 §4.2: zero or at least three seconds.
            raise ValueError("hold_time must be 0 or 3..65535")
        if self.max_queued_bytes < 1:
            raise ValueError("max_queued_bytes must be >= 1")
        if self.keepalive is not None and self.keepalive < 1:
            raise ValueError("keepalive must be >= 1 second")
        if not 0 < self.port <= 0xFFFF:
            raise ValueError("port must be 1..65535")
        if self.connect_retry <= 0 or self.idle_hold_time <= 0:
            raise ValueError("connect_retry and idle_hold_time must be positive")
        if self.delay_open < 0:
            raise ValueError("delay_open must be >= 0")
        for f in self.families:
            parse_family(f)
        for v in (self.addpath_send, self.addpath_receive):
            if isinstance(v, list):
                for f in v:
                    parse_family(f)
        if self.graceful_restart is True:
            self.graceful_restart = GracefulRestartConfig()
        elif self.graceful_restart is False:
            self.graceful_restart = None
        if self.role is not None and self.role.lower() not in _ROLE_BY_NAME:
            raise ValueError("unknown BGP role %r (use one of %s)" % (self.role, ", ".join(_ROLE_BY_NAME)))
        if self.prefix_limit is not None and self.prefix_limit < 0:
            raise ValueError("prefix_limit must be >= 0")
        if self.ttl is not None and not 1 <= self.ttl <= 255:
            raise ValueError("ttl must be 1..255")
        if self.md5_password is not None and len(self.md5_password.encode()) > _transport.TCP_MD5SIG_MAXKEYLEN:
            raise ValueError("md5_password longer than %d octets" % _transport.TCP_MD5SIG_MAXKEYLEN)

    @property
    def family_tuples(self) -> list:
        out = []
        for f in self.families:
            t = parse_family(f)
            if t not in out:
                out.append(t)
        return out

    def _addpath_set(self, value) -> frozenset:
        if value is True:
            return frozenset(self.family_tuples)
        if not value:
            return frozenset()
        return frozenset(parse_family(f) for f in value)

    @property
    def addpath_send_families(self) -> frozenset:
        """Families we offer to send several paths for (RFC 7911)."""
        return self._addpath_set(self.addpath_send)

    @property
    def addpath_receive_families(self) -> frozenset:
        """Families we offer to receive several paths for (RFC 7911)."""
        return self._addpath_set(self.addpath_receive)

    @property
    def role_code(self) -> Optional[int]:
        return None if self.role is None else _ROLE_BY_NAME[self.role.lower()]


# ---------------------------------------------------------------- the neighbour


class Neighbor:
    """One configured peer: its sessions, Adj-RIB-In and Adj-RIB-Out.

    Composes ``sessions`` (:class:`fastbgp.session.collision.Sessions`: the
    main session, a colliding second one), ``adj_rib_out``
    (:class:`fastbgp.session.adj_rib_out.AdjRibOut`; ``rib_out`` is its own
    routes), ``sink`` (the :class:`RouteSink` that receives routes),
    ``graceful_restart`` (its timers) and ``waiters``.  Its sessions call it
    back through the ``session_*`` methods (the
    :class:`fastbgp.session.protocol.SessionOwner` contract).
    """

    def __init__(self, speaker: "Speaker", config: NeighborConfig, *, sink: Optional[RouteSink] = None):
        self.speaker = speaker
        self.config = config
        self.loop: Optional[asyncio.AbstractEventLoop] = None
        self.local_as = config.local_as or speaker.asn
        if not config.four_octet_as and self.local_as > 0xFFFF:
            raise ValueError("local AS %d needs the 4-octet AS capability (four_octet_as=True)" % self.local_as)
        self.ebgp = config.peer_as != self.local_as
        self.router_id = speaker.router_id_int
        self.counters = Counters()
        # WARNINGs about what the peer sends that may come with every UPDATE
        # (warn_repeated): one line per kind per minute; at most 16 kinds.
        self.repeated = LogLimit(LogLimit.INTERVAL, max_keys=16)
        self.history: deque = deque(maxlen=64)
        self.end_of_rib_received: set = set()
        self.end_of_rib_sent: set = set()
        self.last_notification_sent: Optional[messages.Notification] = None
        self.last_notification_received: Optional[messages.Notification] = None
        self.removed = False
        # RFC 4724 §3: the R bit goes in OPENs until a session is back.
        self.restarting = speaker.restarting
        self.sessions = Sessions(self, self._promoted)
        self.adj_rib_out = AdjRibOut(self, speaker.rib_out)
        self.rib_out = self.adj_rib_out.routes
        self.graceful_restart = GracefulRestart(self)
        self.waiters = Waiters()
        self._state_subscribers = Subscribers("state")
        self._update_subscribers = Subscribers("update")
        self.prefix_limit = PrefixLimit(self)
        self._last_rx_notification = None  # (code, subcode) on the current session
        self.sink: RouteSink = sink if sink is not None else speaker.sink_factory(self)

    def __repr__(self):
        return "<Neighbor %s AS%d %s>" % (self.config.address, self.config.peer_as, self.state.name)

    # -- read-only views ------------------------------------------------------------

    @property
    def address(self) -> str:
        return self.config.address

    @property
    def session(self) -> Optional[Session]:
        return self.sessions.main

    @property
    def state(self) -> State:
        s = self.sessions.main
        return State.IDLE if s is None else s.fsm.state

    @property
    def established(self) -> bool:
        return self.state is State.ESTABLISHED

    @property
    def negotiated(self):
        """capabilities.Negotiated of the current (or last) session."""
        s = self.sessions.main
        return None if s is None else s.negotiated

    @property
    def fsm(self):
        s = self.sessions.main
        return None if s is None else s.fsm

    @property
    def last_reason(self) -> Optional[Reason]:
        s = self.sessions.main
        return None if s is None else s.fsm.last_reason

    @property
    def last_error(self) -> Optional[str]:
        s = self.sessions.main
        return None if s is None else s.last_error

    @property
    def connection(self) -> Optional[Connection]:
        s = self.sessions.main
        return None if s is None else s.conn

    @property
    def transport(self):
        conn = self.connection
        return None if conn is None else conn.transport

    @property
    def remote_id(self) -> Optional[str]:
        s = self.sessions.main
        if s is None or s.remote_id is None:
            return None
        return str(ipaddress.IPv4Address(s.remote_id))

    @property
    def admin_down(self) -> bool:
        s = self.sessions.main
        return self.config.admin_down if s is None else s.fsm.admin_down

    @property
    def uptime(self) -> Optional[float]:
        """Seconds in Established, or None."""
        if not self.established or self.counters.uptime is None:
            return None
        return time.time() - self.counters.uptime

    @property
    def collision_log(self) -> deque:
        """The last :class:`CollisionRecord` decisions."""
        return self.sessions.log

    @property
    def received_count(self) -> int:
        """Prefixes (paths, with ADD-PATH) held from this peer, stale ones
        included."""
        return self.sink.received_count

    @property
    def stale_count(self) -> int:
        return self.sink.stale_count

    def received_paths(self, family=None) -> dict:
        """{(prefix, path id or None): RouteAttributes} of every path held
        (stale ones flagged)."""
        return self.sink.received_paths(None if family is None else parse_family(family))

    def received(self, family=None) -> dict:
        """{prefix: RouteAttributes} of the Adj-RIB-In.  With ADD-PATH the
        path with the lowest path id stands for its prefix (all paths:
        :meth:`received_paths`)."""
        return by_prefix(self.received_paths(family))

    # -- lifecycle (called by Speaker) ------------------------------------------------

    def _start(self):
        self.loop = self.speaker.loop
        session = self.sessions.start()
        if self.config.admin_down:
            session.handle(Event.MANUAL_STOP)  # Idle, no automatic start
        else:
            self._manual_start()

    def _manual_start(self):
        ev = Event.MANUAL_START_PASSIVE if self.config.passive else Event.MANUAL_START
        self.sessions.main.handle(ev)

    def _shutdown(self, notify: bool, message: str):
        """Speaker stop: Cease to the peer (or, without ``notify``, just drop
        the TCP connections as a crash would) and release everything."""
        self._cancel_timers()
        if self.sessions.main is None:
            return
        if notify:
            self.cease(Reason.DYING, CEASE_ADMIN_SHUTDOWN, message)
        else:
            self.sessions.abort()
        self.sessions.dispose()
        self.adj_rib_out.stop()

    def _cancel_timers(self):
        self.graceful_restart.cancel()
        self.prefix_limit.cancel()

    def deconfigure(self, message: str = "") -> None:
        """Peer de-configured: Cease 6/3 (RFC 4486) and release everything,
        routes included (:meth:`Speaker.remove_neighbor` calls this)."""
        if self.sessions.main is not None:
            self.cease(Reason.DECONFIGURED, CEASE_PEER_DECONFIGURED, message)
        self._shutdown(False, "")
        self.removed = True
        self.sink.routes_cleared(None, frozenset())

    # -- operator actions ---------------------------------------------------------------

    def _require_started(self):
        if self.sessions.main is None or not self.speaker.started or self.removed:
            raise RuntimeError("neighbour %s: the speaker is not running" % self.address)

    def cease(self, reason: Reason, subcode: int, message: str = "", data: Optional[bytes] = None) -> None:
        """ManualStop on every session with a Cease of ``subcode`` (RFC
        4486) carrying the RFC 9003 shutdown communication ``message`` (or
        ``data`` as given); RFC 8538 may wrap it in Hard Reset."""
        self.sessions.stop(reason, subcode, shutdown_data(message) if data is None else data)

    def enable(self):
        """Administrative up (RFC 4271 ManualStart); also lifts a prefix-limit
        shutdown."""
        self._require_started()
        self.prefix_limit.clear()
        self._manual_start()

    def disable(self, message: str = ""):
        """Administrative down: Cease / Administrative Shutdown (6/2) with the
        RFC 8203/9003 shutdown communication ``message``; stays Idle until
        :meth:`enable`."""
        self._require_started()
        self.cease(Reason.ADMIN_DOWN, CEASE_ADMIN_SHUTDOWN, message)

    shutdown = disable

    def reset(self, message: str = "", hard: bool = False):
        """Cease / Administrative Reset (6/4; Hard Reset 6/9 with ``hard``,
        RFC 8538) and start again."""
        self._require_started()
        if hard:
            data = bytes((ERR_CEASE, CEASE_ADMIN_RESET)) + shutdown_data(message)
            self.cease(Reason.HARD_RESET, CEASE_HARD_RESET, data=data)
        else:
            self.cease(Reason.ADMIN_RESET, CEASE_ADMIN_RESET, message)
        self._manual_start()

    def request_refresh(self, family=None, subtype: int = RR_NORMAL) -> int:
        """Send ROUTE-REFRESH (RFC 2918) for ``family`` or every negotiated
        family; returns how many were sent."""
        s = self.sessions.main
        if s is None or s.fsm.state is not State.ESTABLISHED:
            raise RuntimeError("neighbour %s is not established" % self.address)
        neg = s.negotiated
        if not neg.route_refresh:
            raise RuntimeError("route refresh was not negotiated with %s" % self.address)
        fams = [parse_family(family)] if family is not None else sorted(neg.families)
        n = 0
        for afi, safi in fams:
            if (afi, safi) in neg.families and s.send_raw(codec.build_route_refresh(afi, safi, subtype), MSG_ROUTE_REFRESH):
                n += 1
        return n

    def prefix_limit_exceeded(self, session, family, limit: int) -> None:
        """The peer sent more than ``limit`` prefixes of ``family``: Cease /
        Maximum Number of Prefixes Reached (6/1) and stay Idle until
        :meth:`enable` or the configured restart time."""
        self.prefix_limit.exceeded(session, family, limit)

    @property
    def prefix_limit_hit(self) -> bool:
        return self.prefix_limit.hit

    # -- subscriptions and waiting ---------------------------------------------------------

    def subscribe(self, callback: Callable) -> Callable[[], None]:
        """``callback(neighbor, old_state, new_state, reason)`` after every
        state change.  Returns an unsubscribe function."""
        return self._state_subscribers.add(callback)

    def subscribe_updates(self, callback: Callable) -> Callable[[], None]:
        """``callback(neighbor, parsed)`` for every UPDATE accepted
        (``parsed`` is the codec's ParsedUpdate; decode with
        :func:`fastbgp.wire.messages.decode_update` only if needed)."""
        return self._update_subscribers.add(callback)

    async def wait_for(self, predicate: Callable[[], bool], timeout: Optional[float] = None, what: str = "condition"):
        """Wait until ``predicate()`` is true; it is re-checked after every
        state change and every UPDATE."""
        await self.waiters.wait(
            self.speaker.loop, predicate, timeout,
            lambda: "%s: timed out after %ss waiting for %s (state %s, last error: %s)"
            % (self.address, timeout, what, self.state.name, self.last_error),
        )

    async def wait_state(self, state: State, timeout: Optional[float] = None):
        await self.wait_for(lambda: self.state is state, timeout, "state %s" % State(state).name)

    async def wait_established(self, timeout: Optional[float] = None):
        await self.wait_state(State.ESTABLISHED, timeout)

    async def wait_end_of_rib(self, family=None, timeout: Optional[float] = None):
        """Wait for End-of-RIB (RFC 4724 §2) for ``family`` or every
        negotiated family."""

        def done():
            if family is not None:
                return parse_family(family) in self.end_of_rib_received
            neg = self.negotiated
            return neg is not None and self.established and neg.families <= self.end_of_rib_received

        await self.wait_for(done, timeout, "End-of-RIB")

    async def wait_received(self, count: int, timeout: Optional[float] = None):
        """Wait until exactly ``count`` prefixes are held from this peer."""
        await self.wait_for(lambda: self.received_count == count, timeout, "%d prefixes" % count)

    def check_waiters(self) -> None:
        """Re-check the pending :meth:`wait_for` predicates (a route sink
        calls this after changing routes on its own)."""
        if self.waiters.entries:
            self.waiters.check()

    def _publish(self, old, new, reason):
        self.history.append(StateChange(time.time(), old, new, reason))
        log.info("%s: %s -> %s (%s)", self.address, old.name, new.name, reason.value if reason else "-")
        self._state_subscribers.notify(self, old, new, reason)
        self.speaker._subscribers.notify(self, old, new, reason)
        self.check_waiters()
        self.sink.state_published(old, new, reason)

    # -- routes out -----------------------------------------------------------------------

    def announce(self, prefixes, next_hop=None, *, as_path=(), origin="igp", med=None, local_pref=None,
                 communities=(), large_communities=(), ext_communities=(), atomic_aggregate=False,
                 aggregator=None, link_local=None, path_id: int = 0) -> int:
        """Announce ``prefixes`` to this neighbour only (see
        :meth:`Speaker.announce`).  Returns the number of prefixes."""
        groups, spec = announcement(prefixes, path_id, next_hop, as_path, origin, med, local_pref, communities,
                                    large_communities, ext_communities, atomic_aggregate, aggregator, link_local)
        return self.adj_rib_out.announce(groups, self.speaker.intern_spec(spec))

    def withdraw(self, prefixes, path_id: int = 0) -> int:
        """Withdraw prefixes announced with :meth:`announce` (on this
        neighbour).  Returns the number of prefixes withdrawn."""
        return self.adj_rib_out.withdraw(group_prefixes(prefixes, path_id))

    def send_messages(self, msgs: list) -> None:
        """Queue encoded messages behind what is queued (see
        :meth:`AdjRibOut.send_messages`); dropped when not Established."""
        self.adj_rib_out.send_messages(msgs)

    async def flush(self, timeout: Optional[float] = None):
        """Wait until every queued announcement/withdrawal was handed to the
        transport (returns at once when not Established)."""
        await self.adj_rib_out.flush(timeout)

    # -- session callbacks (SessionOwner) -------------------------------------------------------

    def session_capabilities(self, session) -> list:
        return local_capabilities(self.config, self.local_as, self.restarting)

    def session_open(self, session, op, remote_caps) -> bool:
        """Check and negotiate a received OPEN (RFC 4271 §6.2) and resolve a
        collision with the other connection (RFC 4271 §6.8).  Returns False
        when ``session`` lost the collision (it was dumped)."""
        session.negotiated = negotiate_open(session, op, remote_caps, cfg=self.config, local_as=self.local_as,
                                            router_id=self.router_id, ebgp=self.ebgp)
        return self.sessions.open_received(session, op, session.negotiated)

    def session_changed(self, session, t):
        # Every session, the secondary of a collision too: its loss is
        # logged once, at WARNING unless we ended it (RFC 4271 §8.2.2).
        log_session_end(self.address, session, t)
        if not self.sessions.transition(session, t):
            return
        if t.state is State.ESTABLISHED:
            self._established(session)
        elif t.old_state is State.ESTABLISHED:
            self._left_established(session)
        if t.state is State.IDLE or t.old_state is State.ESTABLISHED:
            self._last_rx_notification = None
        if not session.silent:
            self._publish(t.old_state, t.state, t.reason)

    def session_clear_routes(self, session, t):
        if session is self.sessions.main:
            self.graceful_restart.session_ended(session, t, self._last_rx_notification)

    def session_update(self, session, parsed):
        self.counters.last_update_received = time.time()
        if parsed.errors:
            self._handled_errors(parsed)
        self.sink.update_received(session, parsed)
        if session.fsm.state is not State.ESTABLISHED:
            return  # the sink ended the session (prefix limit)
        if self._update_subscribers.callbacks:
            self._update_subscribers.notify(self, parsed)
        if self.waiters.entries:
            self.waiters.check()

    def session_updates(self, session, parsed_list):
        """UPDATEs received in a row: as session_update for each, the sink
        taking the whole list (Sink.updates_received)."""
        self.counters.last_update_received = time.time()
        for parsed in parsed_list:
            if parsed.errors:
                self._handled_errors(parsed)
        done = self.sink.updates_received(session, parsed_list)
        if session.fsm.state is not State.ESTABLISHED:
            done -= 1  # the last one processed ended the session (prefix limit): not published
        if self._update_subscribers.callbacks:
            for parsed in parsed_list[:done]:
                self._update_subscribers.notify(self, parsed)
        if self.waiters.entries and session.fsm.state is State.ESTABLISHED:
            self.waiters.check()

    def session_bodies(self, session, bodies):
        """UPDATE bodies framed in a row, nobody watching the messages
        (Session.on_updates): parsed and processed in order by the sink
        (RouteSink.bodies_received) -- or here, when update subscribers
        want every ParsedUpdate -- as session_updates would.  Returns the
        codec's error for the first body it refused (those before it
        processed), else None."""
        if self._update_subscribers.callbacks:
            parsed, error = parse_updates(bodies, session.ctx)
            if parsed:
                self.session_updates(session, parsed)
            return error
        self.counters.last_update_received = time.time()
        error = self.sink.bodies_received(session, bodies, self._handled_errors)
        if self.waiters.entries and session.fsm.state is State.ESTABLISHED:
            self.waiters.check()
        return error

    def _handled_errors(self, parsed):
        """RFC 7606: errors the codec handled without a reset (treat-as-
        withdraw, attribute discard) are counted and logged here, for every
        sink alike."""
        c = self.counters
        handled = "treat-as-withdraw" if parsed.action == ACTION_TREAT_AS_WITHDRAW else "attribute-discard"
        if parsed.action == ACTION_TREAT_AS_WITHDRAW:
            c.treat_as_withdraw += 1
        else:
            c.attribute_discard += 1
        self.warn_repeated(log, handled, "%s: UPDATE error handled as %s: %s", self.address, handled,
                           "; ".join(str(e) for e in parsed.errors))

    def warn_repeated(self, logger, kind: str, msg: str, *args) -> None:
        """Log WARNING ``msg % args`` about something the peer sends that may
        come with every UPDATE of a table (RFC 7606 errors, unusable next
        hops): the first of ``kind`` in a session, then at most one line per
        kind per minute, ending with how many were not logged (the counters
        count every one).  A peer must not be able to flood the log."""
        suppressed = self.repeated.note(kind, time.monotonic())
        if suppressed is None:
            return
        if suppressed:
            msg += " (%d more like it not logged since the last line)"
            args += (suppressed,)
        logger.warning(msg, *args)

    def session_route_refresh(self, session, afi, safi, subtype):
        fam = (afi, safi)
        neg = session.negotiated
        if fam not in neg.families:
            # RFC 2918 §4: a family not advertised is ignored.
            self.counters.received.discarded += 1
            return
        if subtype != RR_NORMAL and (subtype not in (RR_BORR, RR_EORR) or not neg.enhanced_route_refresh):
            # RFC 7313 §5: unknown subtypes are ignored.
            self.counters.received.discarded += 1
            return
        self.sink.route_refresh(session, fam, subtype)
        if subtype == RR_EORR:
            self.check_waiters()

    def session_notification(self, session, sent, code, subcode, data):
        n = messages.Notification(code, subcode, bytes(data))
        if sent:
            self.last_notification_sent = n
            # DEBUG: the session's end logs it (cease.log_session_end).
            log.debug("%s: NOTIFICATION sent %d/%d %s", self.address, code, subcode, notification_text(n))
        else:
            self.last_notification_received = n
            if session is self.sessions.main:
                self._last_rx_notification = (code, subcode)
            log.debug("%s: NOTIFICATION received %d/%d %s", self.address, code, subcode, notification_text(n))

    def session_connected(self, session, conn):
        self.sessions.connected(session, conn)

    def session_connect_failed(self, session, exc):
        self.sessions.connect_failed(session, exc)

    def accept(self, conn) -> None:
        """An inbound connection from this neighbour's address."""
        self.sessions.accept(conn)

    def eor_received(self, family) -> None:
        """The peer sent End-of-RIB for ``family`` (RFC 4724 §2); a route
        sink reports it from an UPDATE."""
        self.end_of_rib_received.add(family)
        self.sink.end_of_rib(family)
        self.graceful_restart.end_of_rib()

    def _established(self, session):
        c = self.counters
        c.established_count += 1
        c.uptime = time.time()
        self.repeated.clear()  # a new session's first fault of each kind is logged
        self.end_of_rib_received = set()
        self.end_of_rib_sent = set()
        self.sink.session_up(session)
        self.graceful_restart.reestablished(session)
        # We are past our own restart once a session is back (RFC 4724 §3:
        # the R bit is only for the OPEN after a restart).
        self.restarting = False
        self.adj_rib_out.start(session)
        self.sink.send_table(session)

    def _left_established(self, session):
        self.sink.session_down(session)
        c = self.counters
        c.flaps += 1
        c.downtime = time.time()
        self.adj_rib_out.stop()

    def _promoted(self, old, old_state, session, reason):
        """``session`` took the main place from ``old`` (in ``old_state``)."""
        if old_state is State.ESTABLISHED:
            self._left_established(old)
        if session.state is not old_state:
            self._publish(old_state, session.state, reason)


# ---------------------------------------------------------------- the speaker


class Speaker:
    """A BGP speaker: local AS, router id, listening sockets, neighbours.

    ``listen``: [(address, port)] to accept connections on (port 0 picks a
    free port: see :attr:`listen_addresses`), or None for outbound only.
    ``restarting``: we come back from a restart (RFC 4724: the R bit is set
    in OPENs to neighbours with graceful restart, until each establishes).

    Extension points: ``neighbor_factory(speaker, config, **options)``
    builds what :meth:`add_neighbor` adds (default :attr:`neighbor_class`,
    :class:`Neighbor`; ``options`` are add_neighbor's keyword arguments);
    ``sink_factory(neighbor)`` gives a neighbour added without a ``sink``
    its :class:`RouteSink` (default: the dict Adj-RIB-In
    :class:`fastbgp.session.adj_rib_in.AdjRibIn`); ``on_unknown_peer(conn)``
    is asked about a connection from an address no neighbour is configured
    for and returns the neighbour to hand it to (e.g. one it just added) or
    None to refuse it (the default: RFC 4271 §8 accepts connections from
    configured neighbours only).
    """

    neighbor_class = Neighbor

    def __init__(self, asn: int, router_id: str, listen=None, *, neighbors=(), restarting: bool = False,
                 dual_stack: bool = False, neighbor_factory: Optional[Callable] = None,
                 sink_factory: Optional[Callable] = None, on_unknown_peer: Optional[Callable] = None):
        if not 1 <= int(asn) <= 0xFFFFFFFF:
            raise ValueError("AS number must be 1..4294967295")
        rid = ipaddress.IPv4Address(router_id)
        if int(rid) == 0:
            raise ValueError("router id must not be 0.0.0.0 (RFC 6286 §2.1)")
        self.asn = int(asn)
        self.router_id = str(rid)
        self.router_id_int = int(rid)
        self.listen = [] if listen is None else [(str(h), int(p)) for h, p in listen]
        self.restarting = restarting
        self.dual_stack = dual_stack
        self.neighbor_factory = neighbor_factory or self.neighbor_class
        self.sink_factory = sink_factory or AdjRibIn
        self.on_unknown_peer = on_unknown_peer
        self.neighbors: dict = {}
        self.rib_out = RibOut()
        self.loop: Optional[asyncio.AbstractEventLoop] = None
        self.scheduler: Optional[TurnScheduler] = None  # set by start(), with the loop
        self.started = False
        self.listeners = ListenerManager(lambda: self.neighbors.values(), self._new_connection, dual_stack=dual_stack)
        self._subscribers = Subscribers("state")
        self._specs: dict = {}
        # Connections refused from addresses with no neighbour (see _accept).
        self.refused = RefusedConnections()
        for cfg in neighbors:
            self.add_neighbor(cfg)

    @property
    def refused_connections(self) -> int:
        """Connections refused from addresses with no neighbour; per source
        address in ``refused.by_address`` (the latest 1,024 sources)."""
        return self.refused.total

    def __repr__(self):
        return "<Speaker AS%d %s %d neighbours>" % (self.asn, self.router_id, len(self.neighbors))

    async def __aenter__(self):
        await self.start()
        return self

    async def __aexit__(self, *exc):
        await self.stop()

    # -- neighbours ----------------------------------------------------------------

    def add_neighbor(self, config: NeighborConfig, **options) -> Neighbor:
        """Add and (if the speaker runs) start a neighbour; ``options`` go to
        the neighbour factory (for :class:`Neighbor`: ``sink=``)."""
        if not isinstance(config, NeighborConfig):
            raise TypeError("add_neighbor takes a NeighborConfig")
        if config.address in self.neighbors:
            raise ValueError("neighbour %s already configured" % config.address)
        nb = self.neighbor_factory(self, config, **options)
        self.neighbors[config.address] = nb
        self.listeners.neighbor_added(config.address, config.md5_password)
        if self.started:
            nb._start()
        return nb

    def neighbor(self, address) -> Neighbor:
        return self.neighbors[_transport.normalize_address(address)]

    def remove_neighbor(self, address, message: str = "") -> None:
        """De-configure: Cease / Peer De-configured (6/3) and forget it."""
        nb = self.neighbors.pop(_transport.normalize_address(address))
        nb.deconfigure(message)
        self.listeners.neighbor_removed(nb.address, nb.config.md5_password)

    def subscribe(self, callback: Callable) -> Callable[[], None]:
        """``callback(neighbor, old_state, new_state, reason)`` for every
        neighbour's state changes."""
        return self._subscribers.add(callback)

    # -- start / stop -----------------------------------------------------------------

    async def start(self):
        if self.started:
            return
        self.loop = asyncio.get_running_loop()
        # The loop-wide receive budget per turn (shared with every other
        # Speaker on this loop): many sessions' bursts cannot hold the loop
        # past their KEEPALIVE timers.
        self.scheduler = TurnScheduler.for_loop(self.loop)
        await self.listeners.start(self.listen)
        self.started = True
        for nb in self.neighbors.values():
            nb._start()

    async def rebind(self, listen) -> None:
        """Listen on ``listen`` ([(address, port)]) instead: all bound before
        the old sockets close; on failure nothing changes and OSError is
        raised (a reload then refuses with the reason)."""
        await self.listeners.rebind(listen)
        self.listen = list(self.listeners.endpoints)

    def _new_connection(self):
        return Connection(self.loop, outbound=False, on_made=self._accept, scheduler=self.scheduler)

    async def adopt(self, sock, addresses: tuple) -> None:
        """Take ``sock`` (a connected stream socket) as a connection accepted
        from a peer, when another process holds the TCP connection and
        relays its bytes (``workers = N``: fastbgp.daemon.front).
        ``addresses``: (peer address, peer port, local address, local port)
        of that TCP connection.  Checked like any accepted connection: from
        an unknown peer it is closed."""
        conn = Connection(self.loop, outbound=False, on_made=self._accept, scheduler=self.scheduler,
                          addresses=addresses)
        try:
            await self.loop.connect_accepted_socket(lambda: conn, sock)
        except BaseException:
            if conn.transport is None:
                sock.close()
            raise

    @property
    def listen_addresses(self) -> list:
        """[(address, port)] actually bound."""
        return self.listeners.addresses

    @property
    def port(self) -> Optional[int]:
        addrs = self.listen_addresses
        return addrs[0][1] if addrs else None

    def _accept(self, conn):
        nb = self.neighbors.get(conn.peer_address)
        if nb is None and self.on_unknown_peer is not None:
            try:
                nb = self.on_unknown_peer(conn)
            except Exception:
                log.exception("unknown peer handler failed for %s", conn.peer_address)
                nb = None
        if nb is None:
            # RFC 4271 §8: connections are only accepted from configured
            # neighbours.  Counted per source, logged at most once a minute
            # per source: a scanner must not flood the log.
            self.refused.refuse_logged(conn.peer_address, time.monotonic(), log)
            conn.abort()
            return
        nb.accept(conn)

    async def stop(self, notify: bool = True, message: str = "", timeout: float = 2.0):
        """Stop every neighbour (Cease / Administrative Shutdown with
        ``message``; ``notify=False`` drops the connections without a
        NOTIFICATION, as a crash would) and close the listening sockets."""
        if not self.started:
            return
        self.started = False
        self.listeners.close()
        conns = []
        for nb in self.neighbors.values():
            conns += nb.sessions.connections()
            nb._shutdown(notify, message)
        deadline = self.loop.time() + timeout
        while any(not c.closed for c in conns) and self.loop.time() < deadline:
            await asyncio.sleep(0.01)
        for c in conns:
            if not c.closed:
                c.abort()
        await asyncio.sleep(0)

    # -- routes ---------------------------------------------------------------------------

    def intern_spec(self, spec: PathSpec) -> PathSpec:
        """The one PathSpec object equal to ``spec`` (equal routes share
        their groups and encodings)."""
        s = self._specs.get(spec)
        if s is None:
            self._specs[spec] = s = spec
        return s

    def _targets(self, neighbors):
        if neighbors is None:
            return list(self.neighbors.values())
        return [n if isinstance(n, Neighbor) else self.neighbor(n) for n in neighbors]

    def announce(self, prefixes, next_hop=None, *, as_path=(), origin="igp", med=None, local_pref=None,
                 communities=(), large_communities=(), ext_communities=(), atomic_aggregate=False,
                 aggregator=None, link_local=None, path_id: int = 0, neighbors=None) -> int:
        """Announce ``prefixes`` ("10.0.0.0/24", "2001:db8::/48", ...) with
        the given attributes to every neighbour (or only ``neighbors``).

        ``next_hop`` None means the session's own address.  IPv6 prefixes go
        in MP_REACH_NLRI with ``next_hop`` (+ ``link_local``, RFC 2545).
        ``as_path`` is the path behind us: our AS is prepended for eBGP.
        ``communities``: "65000:1", well-known names or ints;
        ``large_communities``: "a:b:c" or (a, b, c); ``ext_communities``:
        64-bit ints.  Established neighbours get UPDATEs right away, others
        when they establish.  Returns the number of prefixes.
        """
        if neighbors is not None:
            n = 0
            for nb in self._targets(neighbors):
                n = nb.announce(prefixes, next_hop, as_path=as_path, origin=origin, med=med, local_pref=local_pref,
                                communities=communities, large_communities=large_communities,
                                ext_communities=ext_communities, atomic_aggregate=atomic_aggregate,
                                aggregator=aggregator, link_local=link_local, path_id=path_id)
            return n
        groups, spec = announcement(prefixes, path_id, next_hop, as_path, origin, med, local_pref, communities,
                                    large_communities, ext_communities, atomic_aggregate, aggregator, link_local)
        spec = self.intern_spec(spec)
        n = 0
        for fam, keys in groups.items():
            self.rib_out.set(fam, keys, spec)
            batch = Batch(fam, keys, spec)
            for nb in self.neighbors.values():
                nb.adj_rib_out.speaker_announced(batch)
            n += len(keys)
        return n

    def withdraw(self, prefixes, *, path_id: int = 0, neighbors=None) -> int:
        """Withdraw prefixes announced with :meth:`announce`."""
        if neighbors is not None:
            n = 0
            for nb in self._targets(neighbors):
                n = nb.withdraw(prefixes, path_id)
            return n
        n = 0
        for fam, keys in group_prefixes(prefixes, path_id).items():
            gone = self.rib_out.remove(fam, keys)
            if not gone:
                continue
            batch = Batch(fam, gone, None)
            for nb in self.neighbors.values():
                nb.adj_rib_out.speaker_withdrew(batch)
            n += len(gone)
        return n

    def announced(self, family=None) -> list:
        """Prefixes announced speaker-wide."""
        return self.rib_out.prefixes(family)
