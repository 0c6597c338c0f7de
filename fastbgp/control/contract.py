"""The control-plane contract between the daemon and its front ends (HTTP API,
CLI, metrics, the watch stream).

The daemon implements :class:`Control`; ``api.py`` serves it over HTTP/JSON
and the CLI prints what the API returns.  Every value crossing it is a
msgspec Struct defined here, so the JSON the API speaks is exactly these
Structs encoded by msgspec (and decoded back by the CLI with the same types).

Requests are validated by their Struct: types and ranges by msgspec, the
rest (prefixes, addresses, communities) by ``__post_init__``, which runs
both when the API decodes a body and when the CLI builds one.  A refused
value raises :class:`fastbgp.config.errors.FieldError` naming the field.
"""

import ipaddress
from typing import Annotated, AsyncIterator, Optional, Protocol

import msgspec
from msgspec import Meta

from fastbgp.config.errors import FieldError, render
from fastbgp.config.schema import ASN, U32, Origin
from fastbgp.wire.communities import parse_community, parse_large_community
from fastbgp.wire.nexthop import check_next_hop

# More than a request body (api.MAX_BODY) can hold: a bound on the work one
# request asks for, well above a full table.
MAX_ANNOUNCE_PREFIXES = 4_000_000

class Counters(msgspec.Struct):
    """GoBGP's per-session message counters, both directions."""

    sent_open: int = 0
    sent_update: int = 0
    sent_notification: int = 0
    sent_keepalive: int = 0
    sent_refresh: int = 0
    sent_total: int = 0
    received_open: int = 0
    received_update: int = 0
    received_notification: int = 0
    received_keepalive: int = 0
    received_refresh: int = 0
    received_discarded: int = 0
    received_total: int = 0
    # Sessions ended for a full or stalled output queue (Cease / Out of
    # Resources, RFC 4486 subcode 8).
    out_of_resources: int = 0


class NeighborSummary(msgspec.Struct):
    address: str
    peer_as: int
    local_as: int
    description: str = ""
    state: str = "idle"  # idle|connect|active|opensent|openconfirm|established
    admin_down: bool = False
    uptime: Optional[float] = None  # seconds Established, None when down
    downtime: Optional[float] = None
    established_count: int = 0
    last_reason: Optional[str] = None
    last_error: Optional[str] = None
    prefixes_received: int = 0  # Adj-RIB-In paths, post-policy
    prefixes_accepted: int = 0  # of those, selected best in the Loc-RIB
    prefixes_advertised: int = 0  # Adj-RIB-Out
    counters: Counters = msgspec.field(default_factory=Counters)


class NeighborDetail(NeighborSummary):
    remote_id: Optional[str] = None
    local_address: Optional[str] = None
    remote_port: Optional[int] = None
    hold_time: Optional[int] = None
    keepalive: Optional[int] = None
    families: list = []  # negotiated family names
    capabilities_sent: list = []  # messages.* capability Structs as dicts
    capabilities_received: list = []
    four_octet_as: bool = True
    addpath_rx: list = []
    addpath_tx: list = []
    extended_message: bool = False
    graceful_restart: bool = False
    last_notification_sent: Optional[str] = None
    last_notification_received: Optional[str] = None


class Route(msgspec.Struct):
    """One path as shown by the API: the prefix, where it came from and its
    decoded attributes (the shapes of fastbgp.wire.messages)."""

    prefix: str
    next_hop: Optional[str] = None
    as_path: list = []  # flattened ASNs; sets shown as lists inside
    origin: str = "igp"
    med: Optional[int] = None
    local_pref: Optional[int] = None
    communities: list = []  # "65000:1" / well-known names
    large_communities: list = []  # "a:b:c"
    ext_communities: list = []
    path_id: Optional[int] = None
    source: Optional[str] = None  # neighbour address, or "local" when originated
    best: bool = False
    stale: bool = False
    age: Optional[float] = None  # seconds since received


class RibSummary(msgspec.Struct):
    family: str
    prefixes: int
    paths: int
    attribute_sets: int


class Announce(msgspec.Struct, forbid_unknown_fields=True):
    """Body of an announce/withdraw request (API and `fastbgp global rib
    add`).  Prefixes and the next hop come out in canonical spelling."""

    prefixes: Annotated[
        list[str],
        Meta(min_length=1, max_length=MAX_ANNOUNCE_PREFIXES,
             description="at least one prefix (at most %d)" % MAX_ANNOUNCE_PREFIXES),
    ]  # ["192.0.2.0/24", "2001:db8::/32"]
    next_hop: Optional[str] = None
    as_path: list[Annotated[ASN, Meta(description="an AS number 1..4294967295")]] = []
    origin: Origin = "igp"
    med: Optional[Annotated[U32, Meta(description="int 0..4294967295")]] = None
    local_pref: Optional[Annotated[U32, Meta(description="int 0..4294967295")]] = None
    communities: list[str] = []  # "asn:value" or a well-known name (RFC 1997)
    large_communities: list[str] = []  # "global:local1:local2" (RFC 8092)

    def __post_init__(self):
        # What msgspec's types cannot say.  A next hop of the other address
        # family is the daemon's to refuse (it knows which it can use).
        canon = []
        for i, p in enumerate(self.prefixes):
            try:
                canon.append(str(ipaddress.ip_network(p.strip(), strict=True)))
            except ValueError as exc:
                raise FieldError(("prefixes", i), "not an IP prefix: %s (%s)" % (render(p), exc)) from None
        self.prefixes = canon
        if self.next_hop is not None:
            try:
                self.next_hop = str(ipaddress.ip_address(self.next_hop.strip()))
            except ValueError:
                raise FieldError(("next_hop",), "not an IP address: %s" % render(self.next_hop)) from None
            try:
                # RFC 4271 §6.3: the same host-address rule as every other source.
                check_next_hop(self.next_hop)
            except ValueError as exc:
                raise FieldError(("next_hop",), str(exc)) from None
        for field, parse in (("communities", parse_community), ("large_communities", parse_large_community)):
            for i, c in enumerate(getattr(self, field)):
                try:
                    parse(c)
                except ValueError as exc:
                    raise FieldError((field, i), "%s: %s" % (render(c), exc)) from None


class Event(msgspec.Struct, tag_field="event", tag=str.lower):
    """Base of the watch stream; one NDJSON line per event."""

    time: float


class StateChange(Event):
    neighbor: str
    old: str
    new: str
    reason: Optional[str] = None


class BestChange(Event):
    family: str
    prefix: str
    route: Optional[Route] = None  # None: no best path any more


class UpdateReceived(Event):
    neighbor: str
    announced: int
    withdrawn: int
    prefixes: list = []  # first prefixes only (bounded), for a live view


AnyEvent = StateChange | BestChange | UpdateReceived


class Control(Protocol):
    """What the daemon offers its front ends.  Neighbour addresses are strings
    as configured; ``family`` is "ipv4-unicast" or "ipv6-unicast"."""

    def neighbors(self) -> list[NeighborSummary]: ...

    def neighbor(self, address: str) -> NeighborDetail: ...  # KeyError if unknown

    async def enable(self, address: str) -> None: ...

    async def disable(self, address: str, message: str = "") -> None: ...  # Cease 6/2 (RFC 9003)

    async def reset(self, address: str, message: str = "") -> None: ...  # Cease 6/4

    async def soft_reset(self, address: str, direction: str = "both") -> None: ...  # "in" | "out" | "both"

    def rib(self, family: str, prefix: Optional[str] = None, longest_match: bool = False) -> list[Route]: ...

    def iter_rib(self, family: str, chunk: int = 10000) -> AsyncIterator[list[Route]]: ...  # streamed full tables

    def adj_rib_in(self, address: str, family: str) -> list[Route]: ...

    def adj_rib_out(self, address: str, family: str) -> list[Route]: ...

    def rib_summary(self) -> list[RibSummary]: ...

    async def announce(self, request: Announce) -> int: ...  # prefixes originated

    async def withdraw(self, request: Announce) -> int: ...

    async def reload(self) -> dict: ...  # re-read the config file; ConfigError propagates, nothing changes

    def watch(self) -> AsyncIterator[AnyEvent]: ...

    def set_log_level(self, level: str) -> None: ...
