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
import re
from typing import Annotated, AsyncIterator, Optional, Protocol

import msgspec
from msgspec import Meta

from fastbgp.config.errors import FieldError, render
from fastbgp.config.schema import ASN, U32, Origin
from fastbgp.wire.communities import parse_community, parse_ext_community, parse_large_community
from fastbgp.wire.nexthop import check_next_hop

# More than a request body (api.MAX_BODY) can hold: a bound on the work one
# request asks for, well above a full table.
MAX_ANNOUNCE_PREFIXES = 4_000_000
MAX_ANNOUNCE_NEIGHBORS = 65_536  # neighbours named by one request (more than a daemon has)

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
    # Connections from this neighbour's address refused (while Idle, or a
    # second connection in a collision, RFC 4271 §6.8) and connections
    # closed before their OPEN to make room for a newer one.
    refused: int = 0
    half_open_closed: int = 0
    # UPDATEs whose errors were handled without a reset (RFC 7606), and
    # prefixes ignored because their next hop is one of our addresses (RFC
    # 4271 §6.3): logged at most once a minute each, counted here.
    treat_as_withdraw: int = 0
    attribute_discard: int = 0
    own_next_hop: int = 0
    # Attribute sets of a route-server client rejected by the route
    # server's next-hop check (the client's own address, or one of its
    # route-server-next-hops, only): logged once per client, counted here
    # once per set (the import cache keeps the verdict); since the
    # [global.route-server] settings were last loaded.
    rs_next_hop_rejected: int = 0


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
    # What is configured for it (the resolved neighbour: peer group and
    # built-in defaults applied).
    import_policy: list = []  # policy names, in order
    export_policy: list = []
    default_import: str = ""  # "accept" | "reject" (RFC 8212 for eBGP)
    default_export: str = ""
    prefix_limits: list["PrefixLimitInfo"] = []
    # [rpki]: its post-policy paths per RFC 6811 state ("valid", "invalid",
    # "not-found"); None without [rpki].
    rpki: Optional[dict] = None


class PrefixLimitInfo(msgspec.Struct):
    """``prefix-limit`` of one family: at most ``max`` prefixes, then Cease
    (RFC 4486 subcode 1) and a restart after ``restart_after`` s (0: never)."""

    family: str
    max: int
    restart_after: int = 0


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
    age: Optional[float] = None  # seconds since received; None when the daemon does not keep it
    received: Optional[int] = None  # Unix time the path was received (its last change)
    rpki: Optional[str] = None  # RFC 6811 state (valid | invalid | not-found) when [rpki] is configured


class RpkiCacheInfo(msgspec.Struct):
    """One RTR cache of ``[rpki]`` (RFC 8210): state and the serial of the
    data it gave; ``source`` when its data is the one in use."""

    address: str
    port: int
    preference: int = 0
    state: str = "idle"  # idle | connecting | up | down
    version: Optional[int] = None
    session_id: Optional[int] = None
    serial: Optional[int] = None
    source: bool = False
    last_update: Optional[float] = None  # Unix time of its last End of Data
    last_error: Optional[str] = None
    refresh: int = 0
    retry: int = 0
    expire: int = 0
    transport: str = "tcp"  # tcp | ssh (RFC 8210 §9 / §9.1)


class RpkiInfo(msgspec.Struct):
    """``GET /v1/rpki``: the RPKI data the daemon validates with."""

    enabled: bool = False  # an [rpki] section is configured
    caches: list[RpkiCacheInfo] = []
    file: Optional[str] = None
    file_loaded: Optional[float] = None  # Unix time of the last good read
    file_error: Optional[str] = None
    vrps: dict = {}  # "ipv4" / "ipv6" -> VRPs
    aspas: int = 0  # ASPA customer records
    last_update: Optional[float] = None  # Unix time the data last changed
    revalidated: int = 0  # paths re-imported after changes
    # "valid" / "invalid" / "not-found" -> paths in every neighbour's
    # post-policy Adj-RIB-In (every path, not only the best ones)
    routes: dict = {}
    neighbors: list["RpkiNeighborRoutes"] = []  # the same per neighbour and family


class RpkiNeighborRoutes(msgspec.Struct):
    """Paths of one neighbour in one family per RFC 6811 state (kept by the
    RIB per path, counted as paths come and go)."""

    address: str
    family: str
    valid: int = 0
    invalid: int = 0
    not_found: int = 0


class RpkiValidation(msgspec.Struct):
    """``GET /v1/rpki/validate``: the RFC 6811 state of a prefix and origin."""

    prefix: str
    origin_as: int
    state: str  # valid | invalid | not-found


class RibSummary(msgspec.Struct):
    family: str
    prefixes: int
    paths: int
    attribute_sets: int


class GlobalInfo(msgspec.Struct):
    """``GET /v1/global``: the daemon as a whole (GoBGP's ``global``)."""

    asn: int
    router_id: str
    listen: list = []  # "addr:port" actually listened on
    started: Optional[float] = None  # Unix time the daemon started
    uptime: float = 0.0
    neighbors: int = 0
    established: int = 0
    ribs: list[RibSummary] = []
    # Connections refused from addresses with no neighbour (RFC 4271 §8),
    # and the per-neighbour refused / half-open-closed counters summed.
    refused_unknown: int = 0
    refused_neighbors: int = 0
    half_open_closed: int = 0
    # Processes sharing the prefix space (``[global] workers``,
    # fastbgp.daemon.front); 1: one process.
    workers: int = 1


class NeighborPolicy(msgspec.Struct):
    address: str
    import_policy: list = []
    export_policy: list = []
    default_import: str = ""
    default_export: str = ""


class PolicyInfo(msgspec.Struct):
    """``GET /v1/policy``: the configured policies and defined sets (as the
    configuration file spells them) and which neighbour uses which."""

    policies: list = []  # [[policies]] tables, keys as in the file
    defined_sets: dict = {}  # [defined-sets]: kind -> [sets]
    neighbors: list[NeighborPolicy] = []


# Bounds of a RIB query: at most this many rows per answer (page on with
# offset), and an AS-path regex at most this long (it runs on the loop).
MAX_RIB_LIMIT = 100_000
MAX_REGEX = 256


# Unbounded repetitions (*, +, {n,}) one AS-path regex may hold: each can
# multiply the backtracking work by the path's length.
MAX_REGEX_REPEATS = 3


def regex_cost_problem(pattern: str) -> Optional[str]:
    """Why ``pattern`` could take exponential time (a repeated group that
    itself repeats or alternates: ``(1+)+``, ``(1|12)*``), or holds more than
    MAX_REGEX_REPEATS unbounded repetitions; None when it is cheap enough.
    Python's ``re`` cannot be interrupted, and the query runs on the
    daemon's event loop."""
    stack = []  # per open group: [holds a repetition, holds an alternation]
    repeats = 0
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "\\":
            i += 2
            continue
        if c == "[":  # a character class: nothing inside repeats
            j = pattern.find("]", i + 2)
            i = n if j < 0 else j + 1
            continue
        rep = c in "*+" or (c == "{" and re.match(r"\{\d*,\}", pattern[i:]) is not None)
        if rep:
            repeats += 1
            for g in stack:
                g[0] = True
        if c == "(":
            stack.append([False, False])
        elif c == "|" and stack:
            stack[-1][1] = True
        elif c == ")" and stack:
            inner_rep, inner_alt = stack.pop()
            nxt = pattern[i + 1 : i + 2]
            if nxt in ("*", "+", "{") and (inner_rep or inner_alt):
                return "a repeated group that %s inside can take exponential time" % (
                    "repeats" if inner_rep else "alternates")
            if inner_rep and stack:
                stack[-1][0] = True
        i += 1
    if repeats > MAX_REGEX_REPEATS:
        return "at most %d unbounded repetitions (*, +, {n,}), got %d" % (MAX_REGEX_REPEATS, repeats)
    return None


class RibQuery(msgspec.Struct, forbid_unknown_fields=True):
    """The filters of ``GET /v1/rib/{family}`` (query parameters), applied
    by the daemon.  ``prefix`` with ``match``: exact (every path of it),
    longest (the route covering an address), longer (it and the prefixes
    inside it), shorter (it and the prefixes covering it).  Rows come
    sorted by prefix; ``offset``/``limit`` page through them."""

    prefix: Optional[str] = None
    match: str = "exact"
    community: Optional[str] = None
    large_community: Optional[str] = None
    as_path: Optional[Annotated[str, Meta(max_length=MAX_REGEX)]] = None  # Python regex, searched
    origin_as: Optional[ASN] = None
    source: Optional[str] = None  # a neighbour's address, or "local" (our own routes)
    offset: Annotated[int, Meta(ge=0)] = 0
    limit: Optional[Annotated[int, Meta(ge=1, le=MAX_RIB_LIMIT)]] = None

    def __post_init__(self):
        if self.match not in ("exact", "longest", "longer", "shorter"):
            raise FieldError(("match",), "expected exact, longest, longer or shorter, got %s" % render(self.match))
        if self.match != "exact" and self.prefix is None:
            raise FieldError(("match",), "%s needs a prefix" % self.match)
        for field, parse in (("community", parse_community), ("large_community", parse_large_community)):
            v = getattr(self, field)
            if v is not None:
                try:
                    parse(v)
                except ValueError as exc:
                    raise FieldError((field,), "%s: %s" % (render(v), exc)) from None
        if self.source is not None and self.source != "local":
            try:
                self.source = str(ipaddress.ip_address(self.source.strip()))
            except ValueError:
                raise FieldError(("source",), "expected a neighbour address or local, got %s"
                                 % render(self.source)) from None
        if self.as_path is not None:
            try:
                re.compile(self.as_path)
            except re.error as exc:
                raise FieldError(("as_path",), "not a regular expression: %s" % exc) from None
            problem = regex_cost_problem(self.as_path)
            if problem is not None:
                raise FieldError(("as_path",), "refused: %s" % problem)

    @property
    def filtered(self) -> bool:
        return (self.prefix is not None or self.community is not None or self.large_community is not None
                or self.as_path is not None or self.origin_as is not None or self.source is not None
                or self.offset > 0
                or self.limit is not None)


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
    ext_communities: list[str] = []  # "target:A:N", "origin:A:N" or "0x" + 16 hex digits (RFC 4360)
    # RFC 7911: this route's path identifier (several per prefix, each sent
    # to ADD-PATH peers); 16 bits, see config.schema.Route.path_id.
    path_id: Optional[Annotated[int, Meta(ge=0, le=0xFFFF, description="int 0..65535")]] = None
    # Offered only to these neighbours (their addresses); empty: every one.
    neighbors: Annotated[list[str], Meta(max_length=MAX_ANNOUNCE_NEIGHBORS)] = []

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
        for field, parse in (("communities", parse_community), ("large_communities", parse_large_community),
                             ("ext_communities", parse_ext_community)):
            for i, c in enumerate(getattr(self, field)):
                try:
                    parse(c)
                except ValueError as exc:
                    raise FieldError((field, i), "%s: %s" % (render(c), exc)) from None
        names = []
        for i, a in enumerate(self.neighbors):
            try:
                names.append(str(ipaddress.ip_address(a.strip())))
            except ValueError:
                raise FieldError(("neighbors", i), "not an IP address: %s" % render(a)) from None
        self.neighbors = sorted(set(names))


def change_lines(summary: dict) -> list[str]:
    """What a reload did (the daemon's answer to ``POST /v1/reload``, a
    config.ConfigDiff as builtins plus ``routes_restored``) as readable
    lines, one per non-empty part, whatever its name -- for the CLI and the
    daemon's log alike, so neither shows a Python repr."""
    lines = []
    for key, value in (summary or {}).items():
        if value in (None, [], {}, False, ""):
            continue
        name = str(key).replace("_", " ").replace("-", " ")
        if isinstance(value, list):
            items = []
            for v in value:
                if isinstance(v, dict):
                    what = [str(v["action"])] if v.get("action") else []
                    what += [str(f) for f in v.get("fields") or []]
                    addr = str(v.get("address", "?"))
                    items.append("%s (%s)" % (addr, ", ".join(what)) if what else addr)
                else:
                    items.append(str(v))
            lines.append("%s: %s" % (name, "; ".join(items)))
        elif value is True:
            lines.append(name)
        elif isinstance(value, dict):
            lines.append("%s: %s" % (name, "; ".join("%s %s" % (k, v) for k, v in value.items())))
        else:
            lines.append("%s: %s" % (name, value))
    return lines


class ProcessInfo(msgspec.Struct):
    """One ``[[processes]]`` program and its counters (since the daemon
    started; they survive the program's restarts)."""

    name: str
    pid: Optional[int] = None  # None while not running
    queued: int = 0  # events waiting to be written to it
    events: int = 0  # events queued for it
    dropped: int = 0  # of those, dropped because it read too slowly
    overflows: int = 0  # times its queue was full
    dumps: int = 0  # table dumps written to it
    restarts: int = 0
    commands: int = 0  # command lines read from it
    errors: int = 0  # of those, answered with an error
    updates_folded: int = 0  # received UPDATEs written in coalesced lines (coalesce-ms)
    update_lines: int = 0  # update lines written for them
    runs_unfolded: int = 0  # runs written one line per UPDATE (a prefix repeated within the window)


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
    withdrawn_prefixes: list = []  # first withdrawn prefixes only (same bound)


AnyEvent = StateChange | BestChange | UpdateReceived


class Control(Protocol):
    """What the daemon offers its front ends.  Neighbour addresses are strings
    as configured; ``family`` is "ipv4-unicast" or "ipv6-unicast".

    An implementation may make any method a coroutine (or return an
    awaitable): ``api.py`` awaits what a call returns when it is awaitable,
    so a Control that asks other servers (``fanout.FanoutControl``) fits.
    The iterators may be awaitable too (awaited before the answer starts)."""

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

    def query_rib(self, family: str, query: RibQuery) -> list[Route]: ...  # filtered, sorted, paged

    def iter_query(self, family: str, query: RibQuery, chunk: int = 10000) -> AsyncIterator[list[Route]]: ...

    def global_info(self) -> GlobalInfo: ...

    def policy_info(self) -> PolicyInfo: ...

    async def announce(self, request: Announce) -> int: ...  # prefixes originated

    async def withdraw(self, request: Announce) -> int: ...

    async def reload(self) -> dict: ...  # re-read the config file; ConfigError propagates, nothing changes

    def watch(self) -> AsyncIterator[AnyEvent]: ...

    def set_log_level(self, level: str) -> None: ...
