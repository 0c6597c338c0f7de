"""The library entry point: a BGP speaker with configured neighbours.

::

    speaker = Speaker(65001, "192.0.2.1", listen=[("192.0.2.1", 179)])
    peer = speaker.add_neighbor(NeighborConfig(address="192.0.2.2", peer_as=65002))
    await speaker.start()
    await peer.wait_established(timeout=30)
    speaker.announce(["198.51.100.0/24"], next_hop="192.0.2.1", as_path=[65010])
    print(peer.received())
    await speaker.stop()

One :class:`Neighbor` per configured peer owns the session(s) to it
(:mod:`fastbgp.session.protocol`), resolves connection collisions (RFC 4271 §6.8),
keeps the Adj-RIB-In compactly (per prefix: the interned attribute block;
objects are only built by :meth:`Neighbor.received`) and feeds the Adj-RIB-Out
to the session through a send queue that honours transport back-pressure.

Routes announced on the :class:`Speaker` go to every neighbour; routes
announced on a :class:`Neighbor` only to that one.  For eBGP neighbours the
local AS is prepended to the AS_PATH given (RFC 4271 §5.1.2) and LOCAL_PREF
is not sent (§5.1.5); for iBGP neighbours the path goes out as given and
LOCAL_PREF defaults to 100.  Without ``next_hop`` the session's local
address is used (next-hop-self).

Nothing here installs uvloop (only entry points should call
``uvloop.install()``); everything works on either event loop.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import time
from collections import deque
from typing import Callable, Iterable, Optional, Union

import msgspec

from fastbgp.wire import capabilities as caps_mod
from fastbgp.wire import codec, messages
from fastbgp.session import transport as _transport
from fastbgp.wire.constants import (
    AFI_IPV4,
    AFI_IPV6,
    ATTR_AGGREGATOR,
    ATTR_AS_PATH,
    ATTR_ATOMIC_AGGREGATE,
    ATTR_CLUSTER_LIST,
    ATTR_COMMUNITIES,
    ATTR_EXT_COMMUNITIES,
    ATTR_LARGE_COMMUNITY,
    ATTR_LOCAL_PREF,
    ATTR_MED,
    ATTR_NEXT_HOP,
    ATTR_ORIGIN,
    ATTR_ORIGINATOR_ID,
    ATTR_OTC,
    IPV4_UNICAST,
    IPV6_UNICAST,
    MSG_ROUTE_REFRESH,
    MSG_UPDATE,
    ROLE_NAMES,
    ROLE_PEER,
    ROLE_PROVIDER,
    ROLE_RS,
    RR_BORR,
    RR_EORR,
    RR_NORMAL,
    SAFI_MULTICAST,
    SAFI_UNICAST,
)
from fastbgp.session.counters import Counters
from fastbgp.wire.errors import (
    ACTION_TREAT_AS_WITHDRAW,
    CEASE_ADMIN_RESET,
    CEASE_ADMIN_SHUTDOWN,
    CEASE_HARD_RESET,
    CEASE_MAX_PREFIXES,
    CEASE_PEER_DECONFIGURED,
    ERR_CEASE,
    ERR_OPEN,
    OPEN_BAD_BGP_ID,
    OPEN_BAD_PEER_AS,
    BGPError,
)
from fastbgp.session.fsm import Collision, Event, Reason, State, resolve_collision
from fastbgp.session.listeners import ListenerManager
from fastbgp.session.protocol import Connection, Session

__all__ = [
    "Speaker",
    "Neighbor",
    "NeighborConfig",
    "GracefulRestartConfig",
    "RouteAttributes",
    "StateChange",
    "CollisionRecord",
    "RibOut",
    "FAMILIES",
    "family_name",
    "parse_family",
    "pack_prefix",
]

log = logging.getLogger("fastbgp.speaker")

# ---------------------------------------------------------------- families

FAMILIES = {
    "ipv4-unicast": IPV4_UNICAST,
    "ipv6-unicast": IPV6_UNICAST,
    "ipv4-multicast": (AFI_IPV4, SAFI_MULTICAST),
    "ipv6-multicast": (AFI_IPV6, SAFI_MULTICAST),
    "ipv4": IPV4_UNICAST,
    "ipv6": IPV6_UNICAST,
}
_FAMILY_NAMES = {
    IPV4_UNICAST: "ipv4-unicast",
    IPV6_UNICAST: "ipv6-unicast",
    (AFI_IPV4, SAFI_MULTICAST): "ipv4-multicast",
    (AFI_IPV6, SAFI_MULTICAST): "ipv6-multicast",
}
_ROLE_BY_NAME = {v: k for k, v in ROLE_NAMES.items()}
_ORIGINS = {"igp": 0, "egp": 1, "incomplete": 2, "?": 2, "i": 0, "e": 1}


def parse_family(value) -> tuple:
    """(afi, safi) of "ipv4-unicast" / "ipv6" / (afi, safi)."""
    if isinstance(value, str):
        try:
            return FAMILIES[value.strip().lower()]
        except KeyError:
            raise ValueError("unknown address family %r (use one of %s)" % (value, ", ".join(FAMILIES))) from None
    afi, safi = value
    return (int(afi), int(safi))


def family_name(family) -> str:
    return _FAMILY_NAMES.get(tuple(family), "afi%d-safi%d" % tuple(family))


def _known_family(fam) -> bool:
    return fam[0] in (AFI_IPV4, AFI_IPV6) and fam[1] in (SAFI_UNICAST, SAFI_MULTICAST)


# ---------------------------------------------------------------- prefixes

_PID0 = b"\x00\x00\x00\x00"


def pack_prefix(text: str):
    """(afi, packed NLRI entry) of "10.0.0.0/8" / "2001:db8::/32"; host bits
    past the length are cleared (RFC 4271 §4.3 makes them irrelevant)."""
    addr, sep, plen = text.partition("/")
    if ":" in addr:
        raw = socket.inet_pton(socket.AF_INET6, addr)
        afi, maxlen = AFI_IPV6, 128
    else:
        try:
            raw = socket.inet_pton(socket.AF_INET, addr)
        except OSError:
            raise ValueError("not an IP prefix: %r" % (text,)) from None
        afi, maxlen = AFI_IPV4, 32
    n = int(plen) if sep else maxlen
    if not 0 <= n <= maxlen:
        raise ValueError("prefix length out of range: %r" % (text,))
    nb = (n + 7) >> 3
    body = raw[:nb]
    if n & 7:
        body = body[:-1] + bytes((body[-1] & (0xFF << (8 - (n & 7))) & 0xFF,))
    return afi, bytes((n,)) + body


def _split_nlri(packed: bytes, addpath: bool) -> list:
    """Packed NLRI (already validated by the codec) -> one bytes key per
    entry (path id included with ADD-PATH), trailing host bits cleared so
    equal prefixes give equal keys."""
    out = []
    append = out.append
    pos = 0
    n = len(packed)
    off = 4 if addpath else 0
    while pos < n:
        plen = packed[pos + off]
        end = pos + off + 1 + ((plen + 7) >> 3)
        key = packed[pos:end]
        if plen & 7:
            last = key[-1]
            masked = last & (0xFF << (8 - (plen & 7))) & 0xFF
            if masked != last:
                key = key[:-1] + bytes((masked,))
        append(key)
        pos = end
    return out


def _key_prefix(key: bytes, afi: int, addpath: bool):
    """(prefix text, path id or None) of a RIB key."""
    if addpath:
        pid = int.from_bytes(key[:4], "big")
        key = key[4:]
    else:
        pid = None
    plen = key[0]
    if afi == AFI_IPV6:
        text = socket.inet_ntop(socket.AF_INET6, key[1:].ljust(16, b"\x00"))
    else:
        text = socket.inet_ntop(socket.AF_INET, key[1:].ljust(4, b"\x00"))
    return "%s/%d" % (text, plen), pid


def _ip_text(raw: bytes) -> str:
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw)
    return socket.inet_ntop(socket.AF_INET6, raw)


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
    route_refresh: bool = True
    enhanced_route_refresh: bool = True
    hostname: Optional[str] = None
    send_notification_without_open: bool = True
    collision_detect_established: bool = False

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
    def role_code(self) -> Optional[int]:
        return None if self.role is None else _ROLE_BY_NAME[self.role.lower()]


# ---------------------------------------------------------------- routes out


class PathSpec(msgspec.Struct, frozen=True):
    """What :meth:`Speaker.announce` was asked to send, independent of the
    session: encoded per session (AS prepending, next-hop-self) and cached."""

    origin: int = 0
    as_path: tuple = ()
    next_hop: Optional[str] = None
    link_local: Optional[str] = None
    med: Optional[int] = None
    local_pref: Optional[int] = None
    communities: tuple = ()
    large_communities: tuple = ()
    ext_communities: tuple = ()
    atomic_aggregate: bool = False
    aggregator: Optional[tuple] = None


class _Batch:
    """Prefixes of one family sharing one PathSpec (None = withdrawal); the
    packed forms are built once and shared by every neighbour."""

    __slots__ = ("family", "keys", "spec", "_packed")

    def __init__(self, family, keys, spec):
        self.family = family
        self.keys = keys
        self.spec = spec
        self._packed = {}

    def packed(self, addpath: bool) -> bytes:
        p = self._packed.get(addpath)
        if p is None:
            if addpath:
                p = b"".join(self.keys)
            else:
                p = b"".join([k[4:] for k in self.keys])
            self._packed[addpath] = p
        return p


class RibOut:
    """Adj-RIB-Out of locally originated routes: family -> {key: PathSpec},
    key = 4-octet path id + packed prefix."""

    def __init__(self):
        self.tables: dict = {}
        self._groups = None

    def set(self, family, keys, spec):
        table = self.tables.get(family)
        if table is None:
            table = self.tables[family] = {}
        table.update(dict.fromkeys(keys, spec))
        self._groups = None

    def remove(self, family, keys) -> list:
        table = self.tables.get(family)
        if not table:
            return []
        gone = [k for k in keys if table.pop(k, None) is not None]
        if gone:
            self._groups = None
        return gone

    def has(self, family, key) -> bool:
        t = self.tables.get(family)
        return bool(t) and key in t

    def groups(self) -> dict:
        """{family: [_Batch]} grouping every route by PathSpec; cached until
        the next change, so N neighbours coming up share one grouping."""
        if self._groups is None:
            out = {}
            for fam, table in self.tables.items():
                by_spec = {}
                for key, spec in table.items():
                    lst = by_spec.get(spec)
                    if lst is None:
                        by_spec[spec] = [key]
                    else:
                        lst.append(key)
                out[fam] = [_Batch(fam, keys, spec) for spec, keys in by_spec.items()]
            self._groups = out
        return self._groups

    def count(self, family=None) -> int:
        if family is not None:
            return len(self.tables.get(parse_family(family), ()))
        return sum(len(t) for t in self.tables.values())

    def prefixes(self, family=None) -> list:
        out = []
        for fam, table in self.tables.items():
            if family is not None and fam != parse_family(family):
                continue
            out += [_key_prefix(k, fam[0], True)[0] for k in table]
        return out


def _parse_origin(origin) -> int:
    if isinstance(origin, str):
        try:
            return _ORIGINS[origin.lower()]
        except KeyError:
            raise ValueError("origin must be igp, egp or incomplete, got %r" % origin) from None
    if origin not in (0, 1, 2):
        raise ValueError("origin must be 0, 1 or 2")
    return int(origin)


def _parse_large(c) -> tuple:
    if isinstance(c, str):
        parts = c.split(":")
        if len(parts) != 3:
            raise ValueError("large community must be a:b:c, got %r" % c)
        c = tuple(int(p) for p in parts)
    a, b, d = c
    for v in (a, b, d):
        if not 0 <= v <= 0xFFFFFFFF:
            raise ValueError("large community part out of range: %r" % (c,))
    return (int(a), int(b), int(d))


def _make_spec(next_hop, as_path, origin, med, local_pref, communities, large_communities, ext_communities,
               atomic_aggregate, aggregator, link_local) -> PathSpec:
    path = tuple(int(a) for a in (as_path or ()))
    for a in path:
        if not 0 <= a <= 0xFFFFFFFF:
            raise ValueError("AS %r out of range" % a)
    if next_hop is not None:
        next_hop = str(ipaddress.ip_address(next_hop))
    if link_local is not None:
        link_local = str(ipaddress.IPv6Address(link_local))
    comms = tuple(messages.parse_community(c) if isinstance(c, str) else int(c) for c in (communities or ()))
    large = tuple(_parse_large(c) for c in (large_communities or ()))
    ext = tuple(int.from_bytes(c, "big") if isinstance(c, (bytes, bytearray)) else int(c) for c in (ext_communities or ()))
    for v, lim in ((med, 0xFFFFFFFF), (local_pref, 0xFFFFFFFF)):
        if v is not None and not 0 <= v <= lim:
            raise ValueError("MED / LOCAL_PREF out of range")
    agg = None
    if aggregator is not None:
        asn, addr = aggregator
        agg = (int(asn), str(ipaddress.IPv4Address(addr)))
    return PathSpec(
        origin=_parse_origin(origin),
        as_path=path,
        next_hop=next_hop,
        link_local=link_local,
        med=med,
        local_pref=local_pref,
        communities=comms,
        large_communities=large,
        ext_communities=ext,
        atomic_aggregate=bool(atomic_aggregate),
        aggregator=agg,
    )


def _group_prefixes(prefixes: Iterable[str], path_id: int = 0) -> dict:
    """{(afi, safi): [key]} of prefix strings (unicast)."""
    if isinstance(prefixes, str):
        prefixes = [prefixes]
    pid = _PID0 if not path_id else int(path_id).to_bytes(4, "big")
    v4 = []
    v6 = []
    for p in prefixes:
        afi, packed = pack_prefix(p)
        (v6 if afi == AFI_IPV6 else v4).append(pid + packed)
    out = {}
    if v4:
        out[IPV4_UNICAST] = v4
    if v6:
        out[IPV6_UNICAST] = v6
    return out


def _check_next_hop(groups, spec):
    if spec.next_hop is None:
        return
    v6 = ":" in spec.next_hop
    if v6 and IPV4_UNICAST in groups:
        raise ValueError("IPv6 next hop %s for IPv4 prefixes is not supported (RFC 8950)" % spec.next_hop)
    if not v6 and IPV6_UNICAST in groups:
        raise ValueError("IPv4 next hop %s for IPv6 prefixes: give an IPv6 next hop" % spec.next_hop)


# ---------------------------------------------------------------- routes in


class RouteAttributes(msgspec.Struct, frozen=True):
    """Decoded path attributes of one received route.  AS numbers are the
    real 4-octet values (AS4_PATH merged for 2-octet peers).  ``attributes``
    holds every attribute as a :mod:`fastbgp.wire.messages` Struct."""

    origin: Optional[int] = None
    as_path: list[int] = []
    as_path_segments: list = []
    next_hop: Optional[str] = None
    link_local: Optional[str] = None
    med: Optional[int] = None
    local_pref: Optional[int] = None
    communities: list[str] = []
    large_communities: list[str] = []
    ext_communities: list[str] = []
    atomic_aggregate: bool = False
    aggregator: Optional[tuple] = None
    originator_id: Optional[str] = None
    cluster_list: list[str] = []
    otc: Optional[int] = None
    attributes: list = []
    stale: bool = False
    path_id: Optional[int] = None

    @property
    def origin_name(self) -> str:
        return {0: "igp", 1: "egp", 2: "incomplete"}.get(self.origin, "?")


def _decode_path(path) -> RouteAttributes:
    attrs, nh = path
    decoded = messages.decode_attributes(attrs)
    kw = {"attributes": decoded}
    for a in decoded:
        t = a.type_code
        if t == ATTR_ORIGIN:
            kw["origin"] = a.value
        elif t == ATTR_AS_PATH:
            kw["as_path"] = a.asns()
            kw["as_path_segments"] = [(s.type, list(s.asns)) for s in a.segments]
        elif t == ATTR_NEXT_HOP:
            kw["next_hop"] = a.address
        elif t == ATTR_MED:
            kw["med"] = a.value
        elif t == ATTR_LOCAL_PREF:
            kw["local_pref"] = a.value
        elif t == ATTR_COMMUNITIES:
            kw["communities"] = a.strings()
        elif t == ATTR_LARGE_COMMUNITY:
            kw["large_communities"] = a.strings()
        elif t == ATTR_EXT_COMMUNITIES:
            kw["ext_communities"] = a.strings()
        elif t == ATTR_ATOMIC_AGGREGATE:
            kw["atomic_aggregate"] = True
        elif t == ATTR_AGGREGATOR:
            kw["aggregator"] = (a.asn, a.address)
        elif t == ATTR_ORIGINATOR_ID:
            kw["originator_id"] = a.address
        elif t == ATTR_CLUSTER_LIST:
            kw["cluster_list"] = list(a.ids)
        elif t == ATTR_OTC:
            kw["otc"] = a.asn
    if nh:
        if len(nh) == 32:
            kw["next_hop"] = _ip_text(nh[:16])
            kw["link_local"] = _ip_text(nh[16:])
        elif len(nh) in (4, 16):
            kw["next_hop"] = _ip_text(nh)
    return RouteAttributes(**kw)


class StateChange(msgspec.Struct, frozen=True):
    """One published state change of a neighbour."""

    time: float
    old: State
    new: State
    reason: Optional[Reason]


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


# Out-queue item kinds.
_ANNOUNCE = 1
_WITHDRAW = 2
_EOR = 3
_RAW = 4
# A list of messages encoded elsewhere (the daemon's update groups encode
# once for every member and hand each member the same list object).
_MSGS = 5

# Cease subcodes RFC 8538 §5 marks "Hard": with the N bit negotiated they
# go out wrapped in Hard Reset so the peer does not keep our routes.
_HARD_CEASE = frozenset({CEASE_MAX_PREFIXES, CEASE_ADMIN_SHUTDOWN, CEASE_PEER_DECONFIGURED, CEASE_HARD_RESET})


def _shutdown_data(message: str) -> bytes:
    return messages.build_shutdown_data(message) if message else b""


# ---------------------------------------------------------------- the neighbour


class Neighbor:
    """One configured peer: its sessions, Adj-RIB-In and Adj-RIB-Out."""

    def __init__(self, speaker: "Speaker", config: NeighborConfig):
        self.speaker = speaker
        self.config = config
        self.loop: Optional[asyncio.AbstractEventLoop] = None
        self.local_as = config.local_as or speaker.asn
        if not config.four_octet_as and self.local_as > 0xFFFF:
            raise ValueError("local AS %d needs the 4-octet AS capability (four_octet_as=True)" % self.local_as)
        self.ebgp = config.peer_as != self.local_as
        self.router_id = speaker.router_id_int
        self.counters = Counters()
        self.rib_out = RibOut()
        self.history: deque = deque(maxlen=64)
        self.collision_log: deque = deque(maxlen=16)
        self.end_of_rib_received: set = set()
        self.end_of_rib_sent: set = set()
        self.last_notification_sent: Optional[messages.Notification] = None
        self.last_notification_received: Optional[messages.Notification] = None
        self.prefix_limit_hit = False
        self.removed = False
        self._session: Optional[Session] = None
        self._secondary: Optional[Session] = None
        self._rib_in: dict = {}
        self._stale: dict = {}
        self._rib_in_addpath: dict = {}
        self._paths: dict = {}
        self._decoded: dict = {}
        self._out_queue: deque = deque()
        self._sending = False
        self._paths_floor = 65536  # compaction never runs below this many blocks
        self._paths_limit = self._paths_floor
        self._out_event: Optional[asyncio.Event] = None
        self._sender_task: Optional[asyncio.Task] = None
        self._flush_waiters: list = []
        self._waiters: list = []
        self._subscribers: list = []
        self._update_subscribers: list = []
        self._gr_timer = None
        self._stale_timer = None
        self._prefix_restart = None
        self._restarting = speaker.restarting
        self._last_rx_notification = None  # (code, subcode) on the current session

    def __repr__(self):
        return "<Neighbor %s AS%d %s>" % (self.config.address, self.config.peer_as, self.state.name)

    # -- read-only views ------------------------------------------------------------

    @property
    def address(self) -> str:
        return self.config.address

    @property
    def state(self) -> State:
        s = self._session
        return State.IDLE if s is None else s.fsm.state

    @property
    def established(self) -> bool:
        return self.state is State.ESTABLISHED

    @property
    def session(self) -> Optional[Session]:
        return self._session

    @property
    def negotiated(self):
        """capabilities.Negotiated of the current (or last) session."""
        s = self._session
        return None if s is None else s.negotiated

    @property
    def fsm(self):
        s = self._session
        return None if s is None else s.fsm

    @property
    def last_reason(self) -> Optional[Reason]:
        s = self._session
        return None if s is None else s.fsm.last_reason

    @property
    def last_error(self) -> Optional[str]:
        s = self._session
        return None if s is None else s.last_error

    @property
    def transport(self):
        s = self._session
        return None if s is None or s.conn is None else s.conn.transport

    @property
    def connection(self) -> Optional[Connection]:
        s = self._session
        return None if s is None else s.conn

    @property
    def remote_id(self) -> Optional[str]:
        s = self._session
        if s is None or s.remote_id is None:
            return None
        return str(ipaddress.IPv4Address(s.remote_id))

    @property
    def admin_down(self) -> bool:
        s = self._session
        return self.config.admin_down if s is None else s.fsm.admin_down

    @property
    def uptime(self) -> Optional[float]:
        """Seconds in Established, or None."""
        if not self.established or self.counters.uptime is None:
            return None
        return time.time() - self.counters.uptime

    # -- lifecycle (called by Speaker) ------------------------------------------------

    def _start(self):
        self.loop = self.speaker.loop
        self._out_event = asyncio.Event()
        self._session = Session(self, primary=True)
        if self.config.admin_down:
            self._session.handle(Event.MANUAL_STOP)  # Idle, no automatic start
        else:
            self._manual_start()

    def _manual_start(self):
        ev = Event.MANUAL_START_PASSIVE if self.config.passive else Event.MANUAL_START
        self._session.handle(ev)

    def _stop_sessions(self, reason: Reason, subcode: int, message: str = "", data: Optional[bytes] = None):
        """ManualStop on every session with a Cease (RFC 4486) carrying the
        RFC 9003 shutdown communication."""
        if data is None:
            data = _shutdown_data(message)
        for s in (self._secondary, self._session):
            if s is None or s.disposed:
                continue
            sub, dat = self._cease(s, subcode, data)
            s.handle(Event.MANUAL_STOP, reason=reason, subcode=sub, data=dat)
        if self._secondary is not None:
            self._secondary.dispose()
            self._secondary = None

    def _cease(self, session, subcode, data):
        """RFC 8538 §5: with the N bit on both sides, a "Hard" Cease goes out
        as Hard Reset whose data is the original code, subcode and data."""
        neg = session.negotiated
        gr = self.config.graceful_restart
        if (
            subcode in _HARD_CEASE
            and subcode != CEASE_HARD_RESET
            and gr is not None
            and gr.notification
            and neg is not None
            and neg.graceful_restart is not None
            and neg.graceful_restart.notification
            and session.state in (State.OPENCONFIRM, State.ESTABLISHED)
        ):
            return CEASE_HARD_RESET, bytes((ERR_CEASE, subcode)) + data
        return subcode, data

    def _shutdown(self, notify: bool, message: str):
        """Speaker stop: Cease to the peer (or, without ``notify``, just drop
        the TCP connections as a crash would) and release everything."""
        self._cancel_timers()
        if self._session is None:
            return
        if notify:
            self._stop_sessions(Reason.DYING, CEASE_ADMIN_SHUTDOWN, message)
        else:
            for s in (self._secondary, self._session):
                if s is None or s.disposed:
                    continue
                if s.conn is not None:
                    # As a crash would: RST, no NOTIFICATION.
                    s._abort_next_drop = True
                    s.handle(Event.TCP_CONNECTION_FAILS, reason=Reason.DYING)
                if s.state is not State.IDLE:
                    s.handle(Event.MANUAL_STOP, reason=Reason.DYING)
        for s in (self._secondary, self._session):
            if s is not None:
                s.silent = True
                s.dispose()
        self._secondary = None
        self._stop_sender()

    def _cancel_timers(self):
        for name in ("_gr_timer", "_stale_timer", "_prefix_restart"):
            h = getattr(self, name)
            if h is not None:
                h.cancel()
                setattr(self, name, None)

    # -- operator actions ---------------------------------------------------------------

    def _require_started(self):
        if self._session is None or not self.speaker.started or self.removed:
            raise RuntimeError("neighbour %s: the speaker is not running" % self.address)

    def enable(self):
        """Administrative up (RFC 4271 ManualStart); also lifts a prefix-limit
        shutdown."""
        self._require_started()
        self.prefix_limit_hit = False
        if self._prefix_restart is not None:
            self._prefix_restart.cancel()
            self._prefix_restart = None
        self._manual_start()

    def disable(self, message: str = ""):
        """Administrative down: Cease / Administrative Shutdown (6/2) with the
        RFC 8203/9003 shutdown communication ``message``; stays Idle until
        :meth:`enable`."""
        self._require_started()
        self._stop_sessions(Reason.ADMIN_DOWN, CEASE_ADMIN_SHUTDOWN, message)

    shutdown = disable

    def reset(self, message: str = "", hard: bool = False):
        """Cease / Administrative Reset (6/4; Hard Reset 6/9 with ``hard``,
        RFC 8538) and start again."""
        self._require_started()
        if hard:
            data = bytes((ERR_CEASE, CEASE_ADMIN_RESET)) + _shutdown_data(message)
            self._stop_sessions(Reason.HARD_RESET, CEASE_HARD_RESET, data=data)
        else:
            self._stop_sessions(Reason.ADMIN_RESET, CEASE_ADMIN_RESET, message)
        self._manual_start()

    def request_refresh(self, family=None, subtype: int = RR_NORMAL) -> int:
        """Send ROUTE-REFRESH (RFC 2918) for ``family`` or every negotiated
        family; returns how many were sent."""
        s = self._session
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

    # -- subscriptions and waiting ---------------------------------------------------------

    def subscribe(self, callback: Callable) -> Callable[[], None]:
        """``callback(neighbor, old_state, new_state, reason)`` after every
        state change.  Returns an unsubscribe function."""
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback) if callback in self._subscribers else None

    def subscribe_updates(self, callback: Callable) -> Callable[[], None]:
        """``callback(neighbor, parsed)`` for every UPDATE accepted
        (``parsed`` is the codec's ParsedUpdate; decode with
        :func:`fastbgp.wire.messages.decode_update` only if needed)."""
        self._update_subscribers.append(callback)
        return lambda: self._update_subscribers.remove(callback) if callback in self._update_subscribers else None

    async def wait_for(self, predicate: Callable[[], bool], timeout: Optional[float] = None, what: str = "condition"):
        """Wait until ``predicate()`` is true; it is re-checked after every
        state change and every UPDATE."""
        if predicate():
            return
        fut = self.speaker.loop.create_future()
        entry = (predicate, fut)
        self._waiters.append(entry)
        try:
            await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            raise asyncio.TimeoutError(
                "%s: timed out after %ss waiting for %s (state %s, last error: %s)"
                % (self.address, timeout, what, self.state.name, self.last_error)
            ) from None
        finally:
            if entry in self._waiters:
                self._waiters.remove(entry)

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

    async def flush(self, timeout: Optional[float] = None):
        """Wait until every queued announcement/withdrawal was handed to the
        transport (returns at once when not Established)."""
        if (not self._out_queue and not self._sending) or self._sender_task is None:
            return
        fut = self.speaker.loop.create_future()
        self._flush_waiters.append(fut)
        await asyncio.wait_for(fut, timeout)

    def _check_waiters(self):
        for pred, fut in list(self._waiters):
            if fut.done():
                continue
            try:
                ok = pred()
            except Exception as exc:
                fut.set_exception(exc)
                continue
            if ok:
                fut.set_result(None)

    def _publish(self, old, new, reason):
        self.history.append(StateChange(time.time(), old, new, reason))
        log.info("%s: %s -> %s (%s)", self.address, old.name, new.name, reason.value if reason else "-")
        for cb in list(self._subscribers) + list(self.speaker._subscribers):
            try:
                cb(self, old, new, reason)
            except Exception:
                log.exception("state subscriber %r failed", cb)
        if self._waiters:
            self._check_waiters()

    # -- routes out -----------------------------------------------------------------------

    def announce(self, prefixes, next_hop=None, *, as_path=(), origin="igp", med=None, local_pref=None,
                 communities=(), large_communities=(), ext_communities=(), atomic_aggregate=False,
                 aggregator=None, link_local=None, path_id: int = 0) -> int:
        """Announce ``prefixes`` to this neighbour only (see
        :meth:`Speaker.announce`).  Returns the number of prefixes."""
        groups = _group_prefixes(prefixes, path_id)
        spec = self.speaker._intern_spec(
            _make_spec(next_hop, as_path, origin, med, local_pref, communities, large_communities,
                       ext_communities, atomic_aggregate, aggregator, link_local)
        )
        _check_next_hop(groups, spec)
        n = 0
        for fam, keys in groups.items():
            self.rib_out.set(fam, keys, spec)
            self._enqueue(_ANNOUNCE, _Batch(fam, keys, spec))
            n += len(keys)
        return n

    def withdraw(self, prefixes, path_id: int = 0) -> int:
        """Withdraw prefixes announced with :meth:`announce` (on this
        neighbour).  Returns the number of prefixes withdrawn."""
        n = 0
        for fam, keys in _group_prefixes(prefixes, path_id).items():
            gone = self.rib_out.remove(fam, keys)
            # Still announced speaker-wide: the global route takes over.
            back = [k for k in gone if self.speaker.rib_out.has(fam, k)]
            wd = [k for k in gone if not self.speaker.rib_out.has(fam, k)]
            if wd:
                self._enqueue(_WITHDRAW, _Batch(fam, wd, None))
            if back:
                table = self.speaker.rib_out.tables[fam]
                by_spec = {}
                for k in back:
                    by_spec.setdefault(table[k], []).append(k)
                for spec, ks in by_spec.items():
                    self._enqueue(_ANNOUNCE, _Batch(fam, ks, spec))
            n += len(gone)
        return n

    def _enqueue(self, kind, item):
        if self._sender_task is None:
            return  # not Established: the full table goes out on establishment
        self._out_queue.append((kind, item))
        self._out_event.set()

    def _dump(self, family) -> list:
        items = [(_ANNOUNCE, b) for b in self.speaker.rib_out.groups().get(family, ())]
        items += [(_ANNOUNCE, b) for b in self.rib_out.groups().get(family, ())]
        return items

    def _start_sender(self, session):
        neg = session.negotiated
        q = self._out_queue
        q.clear()
        # When the session establishes, send everything announced so far,
        # then End-of-RIB per family (RFC 4724 §2).
        for fam in sorted(neg.families):
            q.extend(self._dump(fam))
            q.append((_EOR, fam))
        self._out_event.set()
        self._sender_task = self.loop.create_task(self._sender(session, session.conn))

    def _stop_sender(self):
        task = self._sender_task
        self._sender_task = None
        if task is not None and not task.done():
            task.cancel()
        self._out_queue.clear()
        self._wake_flush()

    def _wake_flush(self):
        waiters, self._flush_waiters = self._flush_waiters, []
        for f in waiters:
            if not f.done():
                f.set_result(None)

    async def _sender(self, session, conn):
        """Drain the out queue into the connection: pre-encoded UPDATEs via
        writelines, pausing while the transport is above its high-water
        mark (Connection.drain)."""
        q = self._out_queue
        event = self._out_event
        sent = self.counters.sent
        since_yield = 0
        try:
            while True:
                if not q:
                    self._sending = False
                    self._wake_flush()
                    event.clear()
                    await event.wait()
                    since_yield = 0
                    continue
                if session.conn is not conn or conn.detached:
                    return
                self._sending = True
                kind, item = q.popleft()
                try:
                    msgs = self._encode_out(session, kind, item)
                except Exception as exc:
                    log.error("%s: cannot encode routes for this session, skipped: %s", self.address, exc)
                    continue
                if not msgs:
                    continue
                for i in range(0, len(msgs), 64):
                    chunk = msgs[i : i + 64]
                    if not conn.writelines(chunk):
                        return
                    if kind == _RAW or kind == _MSGS:
                        # Pre-encoded lists may hold ROUTE-REFRESH (RFC 7313
                        # BoRR/EoRR) too: count by the header's type octet.
                        for m in chunk:
                            sent.count(m[18])
                    else:
                        sent.count(MSG_UPDATE, len(chunk))
                    since_yield += len(chunk)
                    if conn.write_paused:
                        await conn.drain()
                        since_yield = 0
                    elif since_yield >= 256:
                        # The kernel keeps absorbing: still give timers and
                        # other sessions a turn now and then.
                        await asyncio.sleep(0)
                        since_yield = 0
                if kind == _WITHDRAW:
                    sent.withdraw_update += len(msgs)
                    sent.withdraw_prefix += len(item.keys)
                self.counters.last_update_sent = time.time()
        except ConnectionError:
            return
        finally:
            if self._sender_task is asyncio.current_task() or self._sender_task is None:
                self._sending = False
                self._wake_flush()

    def _encode_out(self, session, kind, item) -> list:
        neg = session.negotiated
        ctx = session.ctx
        if kind == _EOR:
            self.end_of_rib_sent.add(item)
            return [codec.build_eor(item[0], item[1])]
        if kind == _RAW:
            return [item]
        if kind == _MSGS:
            return item
        fam = item.family
        if fam not in neg.families:
            return []
        afi, safi = fam
        packed = item.packed(fam in ctx.addpath_tx)
        if not packed:
            return []
        if kind == _WITHDRAW:
            return codec.pack_withdraws(packed, ctx, afi, safi)
        attrs, nh = self._wire_attrs(session, item.spec, fam)
        if fam == IPV4_UNICAST:
            return codec.pack_updates(attrs, packed, ctx)
        return codec.pack_updates(attrs, packed, ctx, afi, safi, nh)

    def _wire_attrs(self, session, spec: PathSpec, fam) -> tuple:
        """(canonical attribute block, MP next hop) of ``spec`` for this
        session; built once per (spec, family) and session."""
        key = (spec, fam)
        hit = session.attr_cache.get(key)
        if hit is not None:
            return hit
        M = messages
        attrs = [M.Origin(spec.origin)]
        path = list(spec.as_path)
        if self.ebgp:
            # RFC 4271 §5.1.2: prepend our AS when sending to an external peer.
            path = [self.local_as] + path
        attrs.append(M.AsPath([M.Segment(2, path)] if path else []))
        conn = session.conn
        local = conn.local_address if conn is not None else self.config.local_address
        mp_nh = None
        if fam[0] == AFI_IPV4:
            nh = spec.next_hop or local
            if nh is None or ":" in nh:
                raise ValueError("no IPv4 next hop for %s (session runs over IPv6: give next_hop)" % family_name(fam))
            if fam == IPV4_UNICAST:
                attrs.append(M.NextHop(nh))
            else:
                mp_nh = socket.inet_pton(socket.AF_INET, nh)
        else:
            nh = spec.next_hop
            if nh is None:
                # Next-hop-self over an IPv4 session: the IPv4-mapped address.
                nh = local if ":" in (local or "") else "::ffff:%s" % local
            mp_nh = socket.inet_pton(socket.AF_INET6, nh)
            if spec.link_local:
                # RFC 2545 §3: global + link-local, 32 octets.
                mp_nh += socket.inet_pton(socket.AF_INET6, spec.link_local)
        if spec.med is not None:
            attrs.append(M.Med(spec.med))
        if not self.ebgp:
            # RFC 4271 §5.1.5: LOCAL_PREF in every UPDATE to internal peers,
            # never to external ones.
            attrs.append(M.LocalPref(100 if spec.local_pref is None else spec.local_pref))
        if spec.atomic_aggregate:
            attrs.append(M.AtomicAggregate())
        if spec.aggregator is not None:
            attrs.append(M.Aggregator(spec.aggregator[0], spec.aggregator[1]))
        if spec.communities:
            attrs.append(M.Communities(list(spec.communities)))
        if spec.ext_communities:
            attrs.append(M.ExtCommunities(list(spec.ext_communities)))
        if spec.large_communities:
            attrs.append(M.LargeCommunities(list(spec.large_communities)))
        role = session.negotiated.local_role if session.negotiated is not None else None
        if self.ebgp and role in (ROLE_PROVIDER, ROLE_PEER, ROLE_RS):
            # RFC 9234 §5: routes to a customer, peer or RS client carry OTC
            # (added with our AS when not present).
            attrs.append(M.Otc(self.local_as))
        attrs.sort(key=lambda a: a.type_code)
        block = M.encode_attributes(attrs)
        out = (block, mp_nh)
        session.attr_cache[key] = out
        return out

    # -- routes in --------------------------------------------------------------------------

    def _rib(self, fam) -> dict:
        rib = self._rib_in.get(fam)
        if rib is None:
            rib = self._rib_in[fam] = {}
        return rib

    def _intern(self, attrs, nh):
        key = (attrs, nh)
        p = self._paths.get(key)
        if p is None:
            if len(self._paths) >= self._paths_limit:
                self._compact_paths()
            self._paths[key] = p = key
        return p

    def _compact_paths(self):
        """Forget interned attribute blocks no route uses any more (amortised:
        runs when the table doubled since the last compaction)."""
        live = {}
        for src in (self._rib_in, self._stale):
            for rib in src.values():
                for p in rib.values():
                    live[p] = p
        self._paths = live
        self._decoded = {}
        self._paths_limit = max(self._paths_floor, 2 * len(live))

    def _add_in(self, fam, nlri, path, addpath):
        keys = _split_nlri(nlri, addpath)
        st = self._stale.get(fam) if self._stale else None
        if st:
            for k in keys:
                st.pop(k, None)
        self._rib(fam).update(dict.fromkeys(keys, path))

    def _del_in(self, fam, nlri, addpath):
        rib = self._rib_in.get(fam)
        st = self._stale.get(fam) if self._stale else None
        if not rib and not st:
            return
        for k in _split_nlri(nlri, addpath):
            if rib:
                rib.pop(k, None)
            if st:
                st.pop(k, None)

    @property
    def received_count(self) -> int:
        """Prefixes (paths, with ADD-PATH) held from this peer, stale ones
        included."""
        n = 0
        for d in self._rib_in.values():
            n += len(d)
        for d in self._stale.values():
            n += len(d)
        return n

    @property
    def stale_count(self) -> int:
        return sum(len(d) for d in self._stale.values())

    def _route(self, path, stale, pid) -> RouteAttributes:
        ck = (path, stale, pid)
        r = self._decoded.get(ck)
        if r is None:
            base = self._decoded.get((path, False, None))
            if base is None:
                base = self._decoded[(path, False, None)] = _decode_path(path)
            r = base if not stale and pid is None else msgspec.structs.replace(base, stale=stale, path_id=pid)
            self._decoded[ck] = r
        return r

    def received_paths(self, family=None) -> dict:
        """{(prefix, path id or None): RouteAttributes} of every path held
        (stale ones flagged)."""
        want = None if family is None else parse_family(family)
        out = {}
        for src, stale in ((self._stale, True), (self._rib_in, False)):
            for fam, rib in src.items():
                if want is not None and fam != want:
                    continue
                ap = self._rib_in_addpath.get(fam, False)
                for key, path in rib.items():
                    prefix, pid = _key_prefix(key, fam[0], ap)
                    out[(prefix, pid)] = self._route(path, stale, pid)
        return out

    def received(self, family=None) -> dict:
        """{prefix: RouteAttributes} of the Adj-RIB-In.  With ADD-PATH the
        path with the lowest path id stands for its prefix (all paths:
        :meth:`received_paths`)."""
        out = {}
        for (prefix, pid), route in self.received_paths(family).items():
            cur = out.get(prefix)
            if cur is None or (pid or 0) < (cur.path_id or 0):
                out[prefix] = route
        return out

    def _session_update(self, session, parsed):
        c = self.counters
        c.last_update_received = time.time()
        if parsed.errors:
            # RFC 7606: handled without a reset; count and log.
            if parsed.action == ACTION_TREAT_AS_WITHDRAW:
                c.treat_as_withdraw += 1
            else:
                c.attribute_discard += 1
            log.warning("%s: UPDATE error handled as %s: %s", self.address,
                        "treat-as-withdraw" if parsed.action == ACTION_TREAT_AS_WITHDRAW else "attribute-discard",
                        "; ".join(str(e) for e in parsed.errors))
        ctx = session.ctx
        fams = session.negotiated.families
        rx = ctx.addpath_rx
        if parsed.n_withdrawn:
            c.received.withdraw_update += 1
            c.received.withdraw_prefix += parsed.n_withdrawn
        if parsed.withdrawn:
            self._del_in(IPV4_UNICAST, parsed.withdrawn, IPV4_UNICAST in rx)
        mpu = parsed.mp_unreach
        if mpu is not None and mpu[2]:
            fam = (mpu[0], mpu[1])
            if fam in fams and _known_family(fam):
                self._del_in(fam, mpu[2], fam in rx)
            else:
                c.received.discarded += 1
        if parsed.nlri:
            self._add_in(IPV4_UNICAST, parsed.nlri, self._intern(parsed.attrs, parsed.next_hop), IPV4_UNICAST in rx)
        mpr = parsed.mp_reach
        if mpr is not None and mpr[3]:
            fam = (mpr[0], mpr[1])
            if fam in fams and _known_family(fam):
                self._add_in(fam, mpr[3], self._intern(parsed.attrs, mpr[2]), fam in rx)
            else:
                # RFC 4760 §6: a family that was not negotiated is ignored.
                c.received.discarded += 1
        if parsed.is_eor:
            fam = IPV4_UNICAST if mpu is None else (mpu[0], mpu[1])
            self._eor_received(fam)
        limit = self.config.prefix_limit
        if limit is not None and self.received_count > limit:
            fam = IPV4_UNICAST
            if mpr is not None:
                fam = (mpr[0], mpr[1])
            self._prefix_limit_exceeded(session, fam, limit)
            return
        for cb in self._update_subscribers:
            try:
                cb(self, parsed)
            except Exception:
                log.exception("update subscriber %r failed", cb)
        if self._waiters:
            self._check_waiters()

    def _eor_received(self, fam):
        self.end_of_rib_received.add(fam)
        st = self._stale.pop(fam, None)
        if st:
            # RFC 4724 §4.2: End-of-RIB ends the wait; what is still stale goes.
            log.info("%s: End-of-RIB for %s, %d stale routes dropped", self.address, family_name(fam), len(st))
        if not self._stale and self._stale_timer is not None:
            self._stale_timer.cancel()
            self._stale_timer = None

    def _prefix_limit_exceeded(self, session, fam, limit):
        log.warning("%s: prefix limit %d exceeded", self.address, limit)
        self.prefix_limit_hit = True
        # RFC 4486 §4: data = AFI (2), SAFI (1), the upper bound (4).
        data = fam[0].to_bytes(2, "big") + bytes((fam[1],)) + int(limit).to_bytes(4, "big")
        sub, dat = self._cease(session, CEASE_MAX_PREFIXES, data)
        # A manual stop: no automatic restart; the neighbour stays Idle until
        # enable() or the configured restart timer.
        session.handle(Event.MANUAL_STOP, reason=Reason.PREFIX_LIMIT, subcode=sub, data=dat)
        if self._secondary is not None:
            self._secondary.dispose()
            self._secondary = None
        restart = self.config.prefix_limit_restart
        if restart:
            self._prefix_restart = self.loop.call_later(restart, self._prefix_limit_restart)

    def _prefix_limit_restart(self):
        self._prefix_restart = None
        if not self.removed and self._session is not None and self.speaker.started:
            self.enable()

    def _clear_rib_in(self):
        self._rib_in = {}
        self._stale = {}
        self._paths = {}
        self._decoded = {}
        for name in ("_gr_timer", "_stale_timer"):
            h = getattr(self, name)
            if h is not None:
                h.cancel()
                setattr(self, name, None)

    # -- graceful restart (RFC 4724 receiving speaker) ------------------------------------

    def _gr_applies(self, session, t) -> bool:
        gr = self.config.graceful_restart
        neg = session.negotiated
        if gr is None or neg is None or neg.graceful_restart is None:
            return False
        if t.reason in (Reason.ADMIN_DOWN, Reason.ADMIN_RESET, Reason.HARD_RESET, Reason.DECONFIGURED,
                        Reason.PREFIX_LIMIT, Reason.DYING):
            return False  # we chose to end it
        sent = t.notification
        received = self._last_rx_notification if t.event in (Event.NOTIF_MSG, Event.NOTIF_MSG_VER_ERR) else None
        if sent is None and received is None:
            # RFC 4724 §4.2: the TCP session ended without a NOTIFICATION.
            return True
        # RFC 8538 §4: with the N bit on both sides, any NOTIFICATION but
        # Hard Reset keeps the routes.
        if gr.notification and neg.graceful_restart.notification:
            code_sub = tuple(sent[:2]) if sent is not None else received
            return code_sub != (ERR_CEASE, CEASE_HARD_RESET)
        return False

    def _session_clear_routes(self, session, t):
        if session is not self._session:
            return
        if self._gr_applies(session, t):
            neg = session.negotiated
            cap = neg.graceful_restart
            keep = {(a, s) for a, s, _f in cap.families} & set(neg.families)
            for fam in list(self._rib_in):
                rib = self._rib_in.pop(fam)
                if fam in keep and rib:
                    st = self._stale.get(fam)
                    if st is None:
                        self._stale[fam] = rib
                    else:
                        st.update(rib)
            for fam in list(self._stale):
                if fam not in keep:
                    del self._stale[fam]
            if self._stale_timer is not None:
                self._stale_timer.cancel()
                self._stale_timer = None
            if self._gr_timer is not None:
                self._gr_timer.cancel()
            self._gr_timer = None
            if self._stale:
                log.info("%s: graceful restart: keeping %d routes stale for %ds", self.address, self.stale_count, cap.restart_time)
                self._gr_timer = self.loop.call_later(cap.restart_time, self._gr_expired, "restart time")
            return
        self._clear_rib_in()

    def _gr_expired(self, what):
        self._gr_timer = None
        self._stale_timer = None
        if self._stale:
            log.info("%s: graceful restart %s expired, %d stale routes dropped", self.address, what, self.stale_count)
        self._stale = {}
        if self._waiters:
            self._check_waiters()

    def _gr_reestablished(self, session):
        if self._gr_timer is not None:
            self._gr_timer.cancel()
            self._gr_timer = None
        if not self._stale:
            return
        cap = session.negotiated.graceful_restart
        for fam in list(self._stale):
            ok = cap is not None and any((a, s) == fam and f & caps_mod.GracefulRestart.FORWARDING_STATE for a, s, f in cap.families)
            if not ok or self._rib_in_addpath.get(fam, False) != (fam in session.ctx.addpath_rx):
                # RFC 4724 §4.2: no capability, family missing or F bit clear:
                # the peer did not keep forwarding state, drop the stale routes.
                del self._stale[fam]
        if self._stale:
            self._stale_timer = self.loop.call_later(self.config.graceful_restart.stale_time, self._gr_expired, "stale time")

    # -- route refresh (RFC 2918, RFC 7313) --------------------------------------------------------

    def _session_route_refresh(self, session, afi, safi, subtype):
        fam = (afi, safi)
        neg = session.negotiated
        if fam not in neg.families:
            # RFC 2918 §4: a family not advertised is ignored.
            self.counters.received.discarded += 1
            return
        if subtype == RR_NORMAL:
            items = self._dump(fam)
            if neg.enhanced_route_refresh:
                # RFC 7313 §4: bracket the re-advertisement with BoRR / EoRR.
                items = [(_RAW, codec.build_route_refresh(afi, safi, RR_BORR))] + items + [(_RAW, codec.build_route_refresh(afi, safi, RR_EORR))]
            for it in items:
                self._enqueue(*it)
        elif subtype == RR_BORR and neg.enhanced_route_refresh:
            # RFC 7313 §4: routes not re-advertised before EoRR are removed.
            rib = self._rib_in.pop(fam, None)
            if rib:
                st = self._stale.get(fam)
                if st is None:
                    self._stale[fam] = rib
                else:
                    st.update(rib)
        elif subtype == RR_EORR and neg.enhanced_route_refresh:
            self._stale.pop(fam, None)
            if self._waiters:
                self._check_waiters()
        else:
            # RFC 7313 §5: unknown subtypes are ignored.
            self.counters.received.discarded += 1

    # -- session callbacks ---------------------------------------------------------------

    def _local_capabilities(self, session) -> list:
        cfg = self.config
        C = caps_mod
        fams = cfg.family_tuples
        out = [C.Multiprotocol(afi, safi) for afi, safi in fams]
        if cfg.route_refresh:
            out.append(C.RouteRefresh())
            if cfg.enhanced_route_refresh:
                out.append(C.EnhancedRouteRefresh())
        if cfg.extended_message:
            out.append(C.ExtendedMessage())
        gr = cfg.graceful_restart
        if gr is not None:
            flags = C.GracefulRestart.NOTIFICATION if gr.notification else 0
            if self._restarting:
                # RFC 4724 §3: Restart State, we came back from a restart.
                flags |= C.GracefulRestart.RESTART_STATE
            ff = C.GracefulRestart.FORWARDING_STATE if gr.forwarding_state else 0
            out.append(C.GracefulRestart(flags, gr.restart_time, [(a, s, ff) for a, s in fams]))
        if cfg.four_octet_as:
            out.append(C.FourOctetAS(self.local_as))
        tx = cfg._addpath_set(cfg.addpath_send)
        rx = cfg._addpath_set(cfg.addpath_receive)
        ap = []
        for fam in fams:
            mode = (1 if fam in rx else 0) | (2 if fam in tx else 0)
            if mode:
                ap.append((fam[0], fam[1], mode))
        if ap:
            out.append(C.AddPath(ap))
        if cfg.role is not None:
            out.append(C.BGPRole(cfg.role_code))
        if cfg.hostname:
            host, _, domain = cfg.hostname.partition(".")
            out.append(C.FQDN(host, domain))
        return out

    def _session_open(self, session, op, remote_caps) -> bool:
        """Check and negotiate a received OPEN (RFC 4271 §6.2) and resolve a
        collision with the other connection (RFC 4271 §6.8).  Returns False
        when ``session`` lost the collision (it was dumped)."""
        cfg = self.config
        neg = caps_mod.negotiate(session.local_capabilities, remote_caps, self.local_as, op.asn, self.ebgp,
                                 strict_role=cfg.role_strict)
        if neg.peer_asn != cfg.peer_as:
            # RFC 4271 §6.2: Bad Peer AS.
            raise BGPError(ERR_OPEN, OPEN_BAD_PEER_AS, b"", "peer AS %d, configured %d" % (neg.peer_asn, cfg.peer_as))
        if op.bgp_id == self.router_id and not self.ebgp:
            # RFC 6286 §2.2: same identifier as ours from an internal peer.
            raise BGPError(ERR_OPEN, OPEN_BAD_BGP_ID, b"", "peer uses our BGP identifier")
        session.negotiated = neg
        other = self._secondary if session is self._session else self._session
        if (
            other is not None
            and other is not session
            and not other.disposed
            and other.conn is not None
            and other.state in (State.OPENSENT, State.OPENCONFIRM, State.ESTABLISHED)
        ):
            keep_new, graceful = self._resolve(session, other, op, neg)
            self.counters.collisions += 1
            self.collision_log.append(
                CollisionRecord(time.time(), other.state, other.outbound, session.outbound, keep_new, graceful)
            )
            if not keep_new:
                log.info("%s: connection collision: keeping the existing %s connection", self.address,
                         "outbound" if other.outbound else "inbound")
                if session is self._secondary:
                    session.handle(Event.OPEN_COLLISION_DUMP)
                    if self._secondary is session:
                        self._secondary = None
                    session.dispose()
                else:
                    session.silent = True
                    session.handle(Event.OPEN_COLLISION_DUMP)
                    self._promote(other, Reason.COLLISION)
                return False
            log.info("%s: connection collision: keeping the new %s connection%s", self.address,
                     "outbound" if session.outbound else "inbound", " (peer restarted)" if graceful else "")
            if other is self._session:
                other.silent = True
            if graceful:
                # RFC 4724 §4.2: an OPEN on a new connection while the old
                # session is Established means the peer restarted: close
                # the old one without NOTIFICATION, keep its routes stale.
                other._abort_next_drop = True
                other.handle(Event.TCP_CONNECTION_FAILS, reason=Reason.GRACEFUL_RESTART)
            else:
                other.handle(Event.OPEN_COLLISION_DUMP)
            if other is self._secondary:
                self._secondary = None
                other.dispose()
        if session is self._secondary:
            self._promote(session, Reason.COLLISION)
        return True

    def _resolve(self, session, other, op, neg):
        """(keep the new connection?, because the peer restarted?)"""
        cfg = self.config
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
            self.router_id,
            op.bgp_id,
            other.state,
            other.outbound,
            local_as=self.local_as,
            remote_as=neg.peer_asn,
            detect_established=cfg.collision_detect_established,
        )
        return res is Collision.KEEP_NEW, False

    def _promote(self, session, reason):
        """Make ``session`` the neighbour's main session (it won a collision,
        or the main one had no connection left)."""
        old = self._session
        if old is session:
            return
        old_state = old.state if old is not None else State.IDLE
        if old is not None:
            old.silent = True
            old.dispose()
        if self._secondary is session:
            self._secondary = None
        session.primary = True
        session.fsm.passive = self.config.passive
        session.fsm.allow_automatic_start = True
        self._session = session
        if old_state is State.ESTABLISHED:
            self._left_established(old)
        if session.state is not old_state:
            self._publish(old_state, session.state, reason)

    def _session_changed(self, session, t):
        if session is self._secondary:
            if t.state is State.IDLE:
                self._secondary = None
                session.dispose()
            return
        if session is not self._session:
            return
        if t.state is State.ESTABLISHED:
            self._established(session)
        elif t.old_state is State.ESTABLISHED:
            self._left_established(session)
        if t.state is State.IDLE or t.old_state is State.ESTABLISHED:
            self._last_rx_notification = None
        if not session.silent:
            self._publish(t.old_state, t.state, t.reason)

    def _established(self, session):
        c = self.counters
        c.established_count += 1
        c.uptime = time.time()
        neg = session.negotiated
        self.end_of_rib_received = set()
        self.end_of_rib_sent = set()
        self._gr_reestablished(session)
        for fam in neg.families:
            self._rib_in_addpath[fam] = fam in session.ctx.addpath_rx
        # We are past our own restart once a session is back (RFC 4724 §3:
        # the R bit is only for the OPEN after a restart).
        self._restarting = False
        self._start_sender(session)

    def _left_established(self, session):
        c = self.counters
        c.flaps += 1
        c.downtime = time.time()
        self._stop_sender()

    def _session_notification(self, session, sent, code, subcode, data):
        n = messages.Notification(code, subcode, bytes(data))
        if sent:
            self.last_notification_sent = n
            log.info("%s: NOTIFICATION sent %d/%d %s", self.address, code, subcode, _notification_text(n))
        else:
            self.last_notification_received = n
            if session is self._session:
                self._last_rx_notification = (code, subcode)
            log.info("%s: NOTIFICATION received %d/%d %s", self.address, code, subcode, _notification_text(n))

    def _session_connected(self, session, conn):
        if session.disposed or self.removed:
            conn.abort()
            return
        if session is self._session:
            if session.conn is None and session.state in (State.CONNECT, State.ACTIVE):
                session.attach(conn, outbound=True)
                return
            if session.state is not State.IDLE:
                self._second_connection(conn, outbound=True)
                return
        self.counters.refused += 1
        conn.abort()

    def _second_connection(self, conn, outbound):
        """RFC 4271 §6.8: a connection while another is open gets its own FSM
        until an OPEN decides which survives."""
        sec = self._secondary
        if sec is not None and not sec.disposed and sec.conn is not None:
            self.counters.refused += 1
            conn.abort()  # at most two connections per peer
            return
        if sec is not None:
            sec.dispose()
        sec = Session(self, primary=False)
        self._secondary = sec
        sec.handle(Event.MANUAL_START_PASSIVE)
        sec.attach(conn, outbound=outbound)

    def _session_connect_failed(self, session, exc):
        if session is self._session and session.conn is None and session.state is State.CONNECT:
            session.handle(Event.TCP_CONNECTION_FAILS, reason=Reason.CONNECT_FAILED)

    def _accept(self, conn):
        """An inbound connection from this neighbour's address."""
        main = self._session
        if main is None or self.removed or main.state is State.IDLE:
            # RFC 4271 §8.2.2: Idle refuses incoming connections.
            self.counters.refused += 1
            conn.abort()
            return
        cfg = self.config
        sock = conn.socket
        if sock is not None:
            try:
                _transport.apply_ttl(sock, ttl=cfg.ttl, gtsm=cfg.gtsm, ebgp=self.ebgp,
                                     peer_family=_transport.address_family(self.address))
            except OSError as exc:
                log.error("%s: cannot apply TTL settings to the accepted connection: %s", self.address, exc)
                self.counters.refused += 1
                conn.abort()
                return
        self.counters.accepted += 1
        if main.conn is None and main.state in (State.CONNECT, State.ACTIVE):
            main.attach(conn, outbound=False)
        else:
            self._second_connection(conn, outbound=False)

    def _remove(self, message: str = ""):
        """Peer de-configured: Cease 6/3 (RFC 4486) and release everything."""
        if self._session is not None:
            self._stop_sessions(Reason.DECONFIGURED, CEASE_PEER_DECONFIGURED, message)
        self._shutdown(False, "")
        self.removed = True
        self._clear_rib_in()


def _notification_text(n) -> str:
    msg = n.shutdown_message
    if msg is None and n.code == ERR_CEASE and n.subcode == CEASE_HARD_RESET and len(n.data) >= 2:
        inner = messages.Notification(n.data[0], n.data[1], n.data[2:])
        msg = inner.shutdown_message
    return "(%s)" % (n.error_name if msg is None else "%s: %r" % (n.error_name, msg))


# ---------------------------------------------------------------- the speaker


class Speaker:
    """A BGP speaker: local AS, router id, listening sockets, neighbours.

    Subclasses may set :attr:`neighbor_class` (what :meth:`add_neighbor`
    builds) and override :meth:`_unknown_peer` (a connection from an address
    no neighbour is configured for; refused by default).

    ``listen``: [(address, port)] to accept connections on (port 0 picks a
    free port: see :attr:`listen_addresses`), or None for outbound only.
    ``restarting``: we come back from a restart (RFC 4724: the R bit is set
    in OPENs to neighbours with graceful restart, until each establishes).
    """

    neighbor_class = Neighbor

    def __init__(self, asn: int, router_id: str, listen=None, *, neighbors=(), restarting: bool = False,
                 dual_stack: bool = False):
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
        self.neighbors: dict = {}
        self.rib_out = RibOut()
        self.loop: Optional[asyncio.AbstractEventLoop] = None
        self.started = False
        self.listeners = ListenerManager(lambda: self.neighbors.values(), self._new_connection, dual_stack=dual_stack)
        self._subscribers: list = []
        self._specs: dict = {}
        for cfg in neighbors:
            self.add_neighbor(cfg)

    def __repr__(self):
        return "<Speaker AS%d %s %d neighbours>" % (self.asn, self.router_id, len(self.neighbors))

    async def __aenter__(self):
        await self.start()
        return self

    async def __aexit__(self, *exc):
        await self.stop()

    # -- neighbours ----------------------------------------------------------------

    def add_neighbor(self, config: NeighborConfig) -> Neighbor:
        if not isinstance(config, NeighborConfig):
            raise TypeError("add_neighbor takes a NeighborConfig")
        if config.address in self.neighbors:
            raise ValueError("neighbour %s already configured" % config.address)
        nb = self.neighbor_class(self, config)
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
        nb._remove(message)
        self.listeners.neighbor_removed(nb.address, nb.config.md5_password)

    def subscribe(self, callback: Callable) -> Callable[[], None]:
        """``callback(neighbor, old_state, new_state, reason)`` for every
        neighbour's state changes."""
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback) if callback in self._subscribers else None

    # -- start / stop -----------------------------------------------------------------

    async def start(self):
        if self.started:
            return
        self.loop = asyncio.get_running_loop()
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
        return Connection(self.loop, outbound=False, on_made=self._accept)

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
        if nb is None:
            self._unknown_peer(conn)
            return
        nb._accept(conn)

    def _unknown_peer(self, conn):
        """A connection from an address with no neighbour: refused (RFC 4271
        §8: connections are only accepted from configured neighbours)."""
        log.info("connection from unknown peer %s refused", conn.peer_address)
        conn.abort()

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
            for s in (nb._session, nb._secondary):
                if s is not None and s.conn is not None:
                    conns.append(s.conn)
            nb._shutdown(notify, message)
        deadline = self.loop.time() + timeout
        while any(not c.closed for c in conns) and self.loop.time() < deadline:
            await asyncio.sleep(0.01)
        for c in conns:
            if not c.closed:
                c.abort()
        await asyncio.sleep(0)

    # -- routes ---------------------------------------------------------------------------

    def _intern_spec(self, spec):
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
        groups = _group_prefixes(prefixes, path_id)
        spec = self._intern_spec(
            _make_spec(next_hop, as_path, origin, med, local_pref, communities, large_communities,
                       ext_communities, atomic_aggregate, aggregator, link_local)
        )
        _check_next_hop(groups, spec)
        n = 0
        for fam, keys in groups.items():
            self.rib_out.set(fam, keys, spec)
            batch = _Batch(fam, keys, spec)
            for nb in self.neighbors.values():
                if nb.rib_out.tables.get(fam):
                    own = nb.rib_out.tables[fam]
                    ks = [k for k in keys if k not in own]
                    if ks:
                        nb._enqueue(_ANNOUNCE, _Batch(fam, ks, spec))
                else:
                    nb._enqueue(_ANNOUNCE, batch)
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
        for fam, keys in _group_prefixes(prefixes, path_id).items():
            gone = self.rib_out.remove(fam, keys)
            if not gone:
                continue
            batch = _Batch(fam, gone, None)
            for nb in self.neighbors.values():
                own = nb.rib_out.tables.get(fam)
                if own:
                    ks = [k for k in gone if k not in own]
                    if ks:
                        nb._enqueue(_WITHDRAW, _Batch(fam, ks, None))
                else:
                    nb._enqueue(_WITHDRAW, batch)
            n += len(gone)
        return n

    def announced(self, family=None) -> list:
        """Prefixes announced speaker-wide."""
        return self.rib_out.prefixes(family)
