"""The daemon's TOML configuration, decoded into msgspec Structs.

:func:`load_config` is the only entry point: it parses the TOML, decodes it
into :class:`Config` (``forbid_unknown_fields`` so a typo is an error, not a
silently ignored key; kebab-case keys as in the file), resolves peer groups
and computed defaults, and runs the semantic checks.  It is pure -- no file
is written, no socket bound -- so a reload can be validated before anything
is torn down, and nothing starts on a bad configuration.  Every problem is
reported as ``<field path>: <problem>``, e.g.::

    neighbors[2].peer-as: expected int >= 1 and <= 4294967295, got "x"
    global.router-id: not an IPv4 address: "1.2.3"

Peer groups
    A neighbour with ``peer-group = "name"`` inherits every setting the
    group sets and the neighbour does not.  The merge is explicit and
    field-wise: scalars and arrays (``families``, ``import-policy``...) are
    taken whole from the neighbour when it sets them; the nested tables
    ``timers``, ``add-path`` and ``graceful-restart`` merge key by key (a
    neighbour setting only ``timers.hold-time`` keeps the group's
    ``connect-retry``); ``prefix-limit`` merges family by family.  Whatever
    neither sets gets the built-in default (see :func:`resolve_neighbor`).
    To tell "not set" from "set to the default", the settings fields default
    to :data:`msgspec.UNSET`; after :func:`load_config` no field of a
    neighbour in ``Config.neighbors`` is UNSET.  Peer groups keep their
    UNSET fields (they are templates).

Dynamic neighbours
    ``[[dynamic-neighbors]]`` accept incoming sessions from any address in a
    prefix range, configured from a peer group; :meth:`Config.neighbor_for`
    resolves an address (static neighbours first, then the most specific
    range).

Reload
    :func:`diff` compares two loaded configurations and says which
    neighbours to start, stop, reset, or only re-run policies for (soft
    reconfiguration: RFC 2918 / RFC 7313 route refresh inbound, re-export
    outbound).
"""

import difflib
import ipaddress
import json
import os
import re
import time
import tomllib
from typing import Annotated, Literal, Optional

import msgspec
from msgspec import UNSET, Meta, UnsetType

from fastbgp.wire.constants import (
    AFI_IPV4,
    AFI_IPV6,
    AS_TRANS,
    COMMUNITY_BLACKHOLE,
    COMMUNITY_GRACEFUL_SHUTDOWN,
    COMMUNITY_NO_ADVERTISE,
    COMMUNITY_NO_EXPORT,
    COMMUNITY_NO_EXPORT_SUBCONFED,
    SAFI_UNICAST,
)

__all__ = [
    "ConfigError",
    "load_config",
    "diff",
    "Config",
    "GlobalConfig",
    "ApiConfig",
    "MetricsConfig",
    "LogConfig",
    "MrtConfig",
    "MrtUpdates",
    "MrtRib",
    "Neighbor",
    "PeerGroup",
    "DynamicNeighbor",
    "Timers",
    "AddPath",
    "GracefulRestart",
    "PrefixLimit",
    "DefinedSets",
    "PrefixSet",
    "PrefixEntry",
    "AsPathSet",
    "CommunitySet",
    "LargeCommunitySet",
    "Policy",
    "Statement",
    "Conditions",
    "SetRef",
    "Actions",
    "CommunityAction",
    "Prepend",
    "Route",
    "ConfigDiff",
    "NeighborChange",
    "FAMILIES",
    "WELL_KNOWN_COMMUNITIES",
    "resolve_neighbor",
    "parse_endpoint",
    "parse_prefix_entry",
    "parse_community",
    "parse_community_pattern",
    "parse_large_community",
    "parse_large_community_pattern",
    "DEFAULT_PORT",
    "DEFAULT_API_SOCKET",
]

DEFAULT_PORT = 179  # RFC 4271 §2 (IANA well-known port)
DEFAULT_API_SOCKET = "/run/fastbgp/fastbgp.sock"

# Family names used in the file -> (AFI, SAFI).
FAMILIES = {
    "ipv4-unicast": (AFI_IPV4, SAFI_UNICAST),
    "ipv6-unicast": (AFI_IPV6, SAFI_UNICAST),
}

# Names accepted wherever a community is written (RFC 1997, RFC 3765,
# RFC 7611, RFC 7999, RFC 8326, RFC 9494).
WELL_KNOWN_COMMUNITIES = {
    "no-export": COMMUNITY_NO_EXPORT,
    "no-advertise": COMMUNITY_NO_ADVERTISE,
    "no-export-subconfed": COMMUNITY_NO_EXPORT_SUBCONFED,
    "no-peer": 0xFFFFFF04,
    "graceful-shutdown": COMMUNITY_GRACEFUL_SHUTDOWN,
    "accept-own": 0xFFFF0001,
    "llgr-stale": 0xFFFF0006,
    "no-llgr": 0xFFFF0007,
    "blackhole": COMMUNITY_BLACKHOLE,
}

# ------------------------------------------------------------------ types

Family = Literal["ipv4-unicast", "ipv6-unicast"]
# RFC 6793: AS numbers are 32 bits; 0 is reserved (RFC 7607).
ASN = Annotated[int, Meta(ge=1, le=0xFFFFFFFF)]
U32 = Annotated[int, Meta(ge=0, le=0xFFFFFFFF)]
Port = Annotated[int, Meta(ge=1, le=65535)]
U16 = Annotated[int, Meta(ge=0, le=65535)]
Positive = Annotated[int, Meta(ge=1)]
NonNegative = Annotated[int, Meta(ge=0)]
Name = Annotated[str, Meta(min_length=1)]
Ttl = Annotated[int, Meta(ge=1, le=255)]
Accept = Literal["accept", "reject"]
Origin = Literal["igp", "egp", "incomplete"]
Role = Literal["provider", "rs", "rs-client", "customer", "peer"]
# RFC 2385 keys are at most 80 octets (TCP_MD5SIG_MAXKEYLEN on Linux).
Md5 = Annotated[str, Meta(min_length=1, max_length=80)]


class ConfigError(ValueError):
    """A configuration the daemon will not run with.

    ``errors`` is [(path, problem)], every problem found (decoding stops at
    the first type error; the semantic checks report all of theirs).
    ``str()`` is one ``path: problem`` line per error.  ``source`` is the
    file name, or ``"<string>"``.
    """

    def __init__(self, errors, source="<string>"):
        self.errors = list(errors)
        self.source = source
        super().__init__("\n".join(("%s: %s" % (p, m)) if p else m for p, m in self.errors))

    @property
    def path(self):
        """Field path of the first error."""
        return self.errors[0][0] if self.errors else ""


class _Base(
    msgspec.Struct,
    forbid_unknown_fields=True,
    rename="kebab",
    kw_only=True,
    frozen=True,
    omit_defaults=True,
):
    """Common settings: unknown keys are errors (a misspelt key must not be
    silently ignored), keys are kebab-case as written in the file, structs
    are immutable (a loaded Config is shared by every task), and encoding
    omits defaults so the API shows what was configured."""


# ----------------------------------------------------------------- global


class ApiConfig(_Base):
    socket: Name = DEFAULT_API_SOCKET
    # Optional TCP listener ("addr:port"); it requires a bearer token since,
    # unlike the unix socket, it is not protected by file permissions.
    tcp: Optional[str] = None
    token: Optional[str] = None


class MetricsConfig(_Base):
    listen: Optional[str] = None  # "addr:port" of the Prometheus endpoint


class LogConfig(_Base):
    level: Literal["debug", "info", "warning", "error", "critical"] = "info"
    json: bool = False


class MrtUpdates(_Base):
    # strftime template; a new file is started every ``interval`` seconds
    # (RFC 6396 BGP4MP records).
    path: Name
    interval: Positive = 300


class MrtRib(_Base):
    # strftime template; a TABLE_DUMP_V2 snapshot (RFC 6396 §4.3) every
    # ``interval`` seconds.
    path: Name
    interval: Positive = 7200


class MrtConfig(_Base):
    updates: Optional[MrtUpdates] = None
    rib: Optional[MrtRib] = None


class GlobalConfig(_Base):
    asn: ASN
    router_id: str  # RFC 6286: a non-zero 32-bit value, written as IPv4
    # "addr", "addr:port" or "[v6addr]:port"; entries without a port use
    # ``port``.  An empty list means no passive listening at all.
    listen: list[str] = msgspec.field(default_factory=lambda: ["0.0.0.0", "::"])
    port: Port = DEFAULT_PORT
    # RFC 4456 §7: CLUSTER_ID, the router id when unset.
    cluster_id: Optional[str] = None
    api: ApiConfig = msgspec.field(default_factory=ApiConfig)
    metrics: MetricsConfig = msgspec.field(default_factory=MetricsConfig)
    log: LogConfig = msgspec.field(default_factory=LogConfig)
    mrt: MrtConfig = msgspec.field(default_factory=MrtConfig)

    def listen_endpoints(self):
        """[(address, port)] to listen on."""
        return [parse_endpoint(s, self.port) for s in self.listen]

    @property
    def effective_cluster_id(self):
        return self.cluster_id or self.router_id


# ------------------------------------------------------------ neighbours


class Timers(_Base):
    # RFC 4271 §4.2 / §10; 0 disables hold and keepalive timers.
    hold_time: U16 | UnsetType = UNSET  # default 90
    keepalive: U16 | UnsetType = UNSET  # default hold-time / 3
    connect_retry: Annotated[int, Meta(ge=1, le=65535)] | UnsetType = UNSET  # default 120
    idle_hold: U16 | UnsetType = UNSET  # default 5 (RFC 4271 §8.1.1 IdleHoldTime)
    delay_open: U16 | UnsetType = UNSET  # default 0 = DelayOpen off (RFC 4271 §8.1.1)


class AddPath(_Base):
    # RFC 7911: families in which we send / receive several paths per prefix.
    send: list[Family] | UnsetType = UNSET
    receive: list[Family] | UnsetType = UNSET
    send_max: Annotated[int, Meta(ge=0, le=255)] | UnsetType = UNSET  # 0 = every path


class GracefulRestart(_Base):
    enabled: bool | UnsetType = UNSET
    # RFC 4724 §3: Restart Time is a 12-bit field.
    restart_time: Annotated[int, Meta(ge=0, le=4095)] | UnsetType = UNSET
    # Receiving-speaker procedures only: we never claim to preserve state.
    helper_only: bool | UnsetType = UNSET


class PrefixLimit(_Base):
    max: Positive
    # RFC 4486 Cease/Maximum Number of Prefixes Reached, then reconnect after
    # this many seconds; 0 = stay down until an operator resets the peer.
    restart_after: NonNegative = 0


class _PeerSettings(_Base):
    """What a neighbour and a peer group can both set.  UNSET = not written
    in the file (so a peer group's value can show through)."""

    peer_as: ASN | UnsetType = UNSET
    local_as: ASN | UnsetType = UNSET  # default global.asn
    description: str | UnsetType = UNSET
    passive: bool | UnsetType = UNSET
    port: Port | UnsetType = UNSET
    local_address: Optional[str] | UnsetType = UNSET
    # eBGP multihop: the TTL of our packets (None: 1 for eBGP, 255 for iBGP).
    multihop: Optional[Ttl] | UnsetType = UNSET
    # RFC 5082 GTSM: send TTL 255 and accept only TTL >= 255 - (multihop - 1).
    ttl_security: bool | UnsetType = UNSET
    md5_password: Optional[Md5] | UnsetType = UNSET
    timers: Timers | UnsetType = UNSET
    families: list[Family] | UnsetType = UNSET
    add_path: AddPath | UnsetType = UNSET
    graceful_restart: GracefulRestart | UnsetType = UNSET
    prefix_limit: dict[Family, PrefixLimit] | UnsetType = UNSET
    route_server_client: bool | UnsetType = UNSET  # RFC 7947
    route_reflector_client: bool | UnsetType = UNSET  # RFC 4456
    import_policy: list[Name] | UnsetType = UNSET
    export_policy: list[Name] | UnsetType = UNSET
    # RFC 8212: without policy nothing is accepted from or sent to an eBGP
    # peer; iBGP defaults to accept.
    default_import: Accept | UnsetType = UNSET
    default_export: Accept | UnsetType = UNSET
    admin_down: bool | UnsetType = UNSET
    role: Optional[Role] | UnsetType = UNSET  # RFC 9234 local role
    role_strict: bool | UnsetType = UNSET  # RFC 9234 §4.2 strict mode

    @property
    def ebgp(self):
        return self.peer_as != self.local_as


class Neighbor(_PeerSettings, kw_only=True):
    address: str
    peer_group: Optional[Name] = None

    @property
    def ip(self):
        return ipaddress.ip_address(self.address)

    @property
    def afi_safis(self):
        """[(afi, safi)] of ``families``."""
        return [FAMILIES[f] for f in self.families]


class PeerGroup(_PeerSettings, kw_only=True):
    name: Name


class DynamicNeighbor(_Base):
    prefix: str  # incoming sessions from this range are accepted
    peer_group: Name  # ... and configured from this group


# ------------------------------------------------------------ defined sets


class PrefixEntry(_Base):
    prefix: str
    ge: Optional[Annotated[int, Meta(ge=0, le=128)]] = None
    le: Optional[Annotated[int, Meta(ge=0, le=128)]] = None


class PrefixSet(_Base):
    name: Name
    # "prefix", "prefix le N", "prefix ge M le N" or {prefix, ge, le}
    prefixes: list[str | PrefixEntry] = []


class AsPathSet(_Base):
    name: Name
    # Python regular expressions searched in the AS path rendered as
    # "65000 65001 {65002 65003}" (see fastbgp.rib.policy.render_as_path).
    as_paths: list[str] = []


class CommunitySet(_Base):
    name: Name
    communities: list[str] = []  # "asn:value" or a well-known name


class LargeCommunitySet(_Base):
    name: Name
    large_communities: list[str] = []  # "global:local1:local2" (RFC 8092)


class DefinedSets(_Base):
    prefix_sets: list[PrefixSet] = []
    as_path_sets: list[AsPathSet] = []
    community_sets: list[CommunitySet] = []
    large_community_sets: list[LargeCommunitySet] = []


# ---------------------------------------------------------------- policies


class SetRef(_Base):
    """A defined set named in a condition with how to match it:
    any = some member matches, all = every member matches,
    invert = no member matches."""

    name: Name
    match: Literal["any", "all", "invert"] = "any"


class Conditions(_Base):
    prefix_set: Name | SetRef | None = None
    as_path_set: Name | SetRef | None = None
    community_set: Name | SetRef | None = None
    large_community_set: Name | SetRef | None = None
    neighbor: Optional[list[str]] = None  # addresses or prefixes
    family: Optional[list[Family]] = None
    origin: Optional[Origin] = None

    def present(self):
        """Names of the conditions that are set."""
        return [f for f in self.__struct_fields__ if getattr(self, f) is not None]


class CommunityAction(_Base):
    add: list[str] = []
    # exact values, or patterns with "*" for any half ("65000:*")
    remove: list[str] = []
    replace: Optional[list[str]] = None  # the exact new list ([] = none)


class Prepend(_Base):
    asn: Optional[ASN] = None  # default: the session's local AS
    count: Annotated[int, Meta(ge=1, le=32)] = 1


class Actions(_Base):
    # accept / reject end the chain; next goes on to the next statement
    # (then the next policy, then the default action).
    result: Literal["accept", "reject", "next"] = "next"
    set_local_pref: Optional[U32] = None
    set_med: Optional[U32] = None
    communities: Optional[CommunityAction] = None
    large_communities: Optional[CommunityAction] = None
    as_path_prepend: Optional[Prepend] = None
    next_hop_self: bool = False
    set_next_hop: Optional[str] = None


class Statement(_Base):
    name: str = ""
    # all = every condition holds, any = at least one, invert = none holds.
    match: Literal["all", "any", "invert"] = "all"
    conditions: Conditions = msgspec.field(default_factory=Conditions)
    actions: Actions = msgspec.field(default_factory=Actions)


class Policy(_Base):
    name: Name
    statements: list[Statement] = []


# ------------------------------------------------------------------ routes


class Route(_Base):
    """A locally originated route."""

    prefix: str
    next_hop: Optional[str] = None  # None: the session's own address
    as_path: list[ASN] = []
    communities: list[str] = []
    large_communities: list[str] = []
    med: Optional[U32] = None
    local_pref: Optional[U32] = None
    origin: Origin = "igp"


# ------------------------------------------------------------------ config


class Config(_Base):
    global_: GlobalConfig = msgspec.field(name="global")
    neighbors: list[Neighbor] = []
    peer_groups: list[PeerGroup] = []
    dynamic_neighbors: list[DynamicNeighbor] = []
    defined_sets: DefinedSets = msgspec.field(default_factory=DefinedSets)
    policies: list[Policy] = []
    routes: list[Route] = []

    def neighbor(self, address):
        """The static neighbour at ``address`` (any spelling), or None."""
        key = _norm_addr(address)
        for n in self.neighbors:
            if n.address == key:
                return n
        return None

    def peer_group(self, name):
        for g in self.peer_groups:
            if g.name == name:
                return g
        return None

    def policy(self, name):
        for p in self.policies:
            if p.name == name:
                return p
        return None

    def neighbor_for(self, address):
        """The configuration for a session from ``address``: the static
        neighbour, else one built from the most specific dynamic range that
        holds it, else None (refuse the connection)."""
        n = self.neighbor(address)
        if n is not None:
            return n
        try:
            ip = ipaddress.ip_address(str(address).split("%")[0])
        except ValueError:
            return None
        best = None
        for d in self.dynamic_neighbors:
            net = ipaddress.ip_network(d.prefix)
            if ip.version == net.version and ip in net and (best is None or net.prefixlen > best[0].prefixlen):
                best = (net, d)
        if best is None:
            return None
        group = self.peer_group(best[1].peer_group)
        n = resolve_neighbor(Neighbor(address=str(ip), peer_group=best[1].peer_group), group, self.global_)
        # We cannot dial a range: dynamic sessions are always passive.
        return msgspec.structs.replace(n, passive=True)


# ---------------------------------------------------------------- helpers


def _norm_addr(address):
    """Canonical spelling of an IP address (scope id kept); input returned
    unchanged when it is not an address."""
    try:
        return str(ipaddress.ip_address(str(address)))
    except ValueError:
        return str(address)


def parse_endpoint(text, default_port=None):
    """"addr", "addr:port", "[v6]:port" or "v6" -> (addr, port).  ValueError
    when malformed, or when no port is written and no default given."""
    s = str(text).strip()
    port = None
    if s.startswith("["):
        end = s.find("]")
        if end < 0:
            raise ValueError("missing ']'")
        host, rest = s[1:end], s[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise ValueError("expected ':port' after ']'")
            port = rest[1:]
        ipaddress.IPv6Address(host.split("%")[0])
    elif s.count(":") == 1:
        host, port = s.split(":")
        ipaddress.IPv4Address(host)
    else:
        host = s
        ipaddress.ip_address(host.split("%")[0])
    if port is None:
        if default_port is None:
            raise ValueError("no port given")
        return host, default_port
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError("port must be 1..65535")
    return host, int(port)


def parse_prefix_entry(entry):
    """A prefix-set entry -> (ip_network, ge, le): the set matches routes
    inside the network whose length is in ge..le.  Plain "prefix" matches
    exactly that length; "le N" alone means len..N, "ge M" alone M..maximum
    (the usual Cisco / GoBGP masklength-range meaning).  ValueError when
    malformed."""
    if isinstance(entry, PrefixEntry):
        text, ge, le = entry.prefix, entry.ge, entry.le
    else:
        parts = str(entry).split()
        if not parts:
            raise ValueError("empty prefix entry")
        text, ge, le = parts[0], None, None
        rest = parts[1:]
        if len(rest) % 2:
            raise ValueError("expected 'prefix [ge N] [le N]'")
        for kw, num in zip(rest[::2], rest[1::2]):
            if kw not in ("ge", "le") or not num.isdigit():
                raise ValueError("expected 'prefix [ge N] [le N]', got %r" % " ".join((kw, num)))
            if (ge if kw == "ge" else le) is not None:
                raise ValueError("%s given twice" % kw)
            if kw == "ge":
                ge = int(num)
            else:
                le = int(num)
    net = ipaddress.ip_network(text, strict=True)
    maxlen = net.max_prefixlen
    lo = net.prefixlen if ge is None else ge
    hi = (maxlen if ge is not None else net.prefixlen) if le is None else le
    if not net.prefixlen <= lo <= hi <= maxlen:
        raise ValueError("need %d <= ge <= le <= %d, got ge %d le %d" % (net.prefixlen, maxlen, lo, hi))
    return net, lo, hi


def _u16(s):
    if not s.isdigit() or int(s) > 0xFFFF:
        raise ValueError("%r is not 0..65535" % s)
    return int(s)


def _u32(s):
    if not s.isdigit() or int(s) > 0xFFFFFFFF:
        raise ValueError("%r is not 0..4294967295" % s)
    return int(s)


def parse_community(text):
    """"asn:value" or a well-known name -> the 32-bit community (RFC 1997)."""
    s = str(text).strip().lower()
    if s in WELL_KNOWN_COMMUNITIES:
        return WELL_KNOWN_COMMUNITIES[s]
    parts = s.split(":")
    if len(parts) != 2:
        raise ValueError("expected 'asn:value' or a well-known name")
    return (_u16(parts[0]) << 16) | _u16(parts[1])


def parse_community_pattern(text):
    """Like parse_community, but either half may be "*": returns
    (high or None, low or None); exact values have both halves set."""
    s = str(text).strip().lower()
    if "*" not in s:
        c = parse_community(s)
        return (c >> 16, c & 0xFFFF)
    parts = s.split(":")
    if len(parts) != 2:
        raise ValueError("expected 'asn:value' with '*' for any")
    return tuple(None if p == "*" else _u16(p) for p in parts)


def parse_large_community(text):
    """"global:local1:local2" -> (g, l1, l2) (RFC 8092 §3)."""
    parts = str(text).strip().split(":")
    if len(parts) != 3:
        raise ValueError("expected 'global:local1:local2'")
    return tuple(_u32(p) for p in parts)


def parse_large_community_pattern(text):
    parts = str(text).strip().split(":")
    if len(parts) != 3:
        raise ValueError("expected 'global:local1:local2' with '*' for any")
    return tuple(None if p == "*" else _u32(p) for p in parts)


def _unset(v, default):
    return default if v is UNSET else v


def _overlay(own, base):
    """``own`` with ``base`` showing through where ``own`` is UNSET; nested
    tables merge key by key, prefix-limit family by family."""
    if own is UNSET:
        return base
    if base is UNSET or base is None:
        return own
    if isinstance(own, _Base) and type(own) is type(base):
        return type(own)(**{f: _overlay(getattr(own, f), getattr(base, f)) for f in own.__struct_fields__})
    if isinstance(own, dict) and isinstance(base, dict):
        return {**base, **own}
    return own


DEFAULT_HOLD_TIME = 90  # RFC 4271 §10
DEFAULT_CONNECT_RETRY = 120  # RFC 4271 §10
DEFAULT_IDLE_HOLD = 5
DEFAULT_RESTART_TIME = 120  # RFC 4724 §4 suggests <= hold time; GoBGP/FRR use 120


def resolve_neighbor(n, group, glob):
    """The neighbour as the daemon uses it: ``group`` (a PeerGroup or None)
    merged under it (see the module docstring), then built-in defaults.  The
    address is normalised.  A neighbour without a peer-as anywhere gets 0
    (load_config reports it)."""
    if group is not None:
        n = msgspec.structs.replace(
            n, **{f: _overlay(getattr(n, f), getattr(group, f)) for f in _PeerSettings.__struct_fields__}
        )
    peer_as = _unset(n.peer_as, 0)
    local_as = _unset(n.local_as, glob.asn)
    ebgp = peer_as != local_as
    try:
        ip = ipaddress.ip_address(n.address)
        address = str(ip)
        own_family = "ipv4-unicast" if ip.version == 4 else "ipv6-unicast"
    except ValueError:
        address, own_family = n.address, "ipv4-unicast"
    t = _unset(n.timers, Timers())
    hold = _unset(t.hold_time, DEFAULT_HOLD_TIME)
    timers = Timers(
        hold_time=hold,
        # RFC 4271 §10: KeepaliveTime suggested at one third of HoldTime.
        keepalive=_unset(t.keepalive, hold // 3),
        connect_retry=_unset(t.connect_retry, DEFAULT_CONNECT_RETRY),
        idle_hold=_unset(t.idle_hold, DEFAULT_IDLE_HOLD),
        delay_open=_unset(t.delay_open, 0),
    )
    families = _unset(n.families, [own_family])
    ap = _unset(n.add_path, AddPath())
    add_path = AddPath(
        send=[f for f in _unset(ap.send, []) if f in families],
        receive=[f for f in _unset(ap.receive, []) if f in families],
        send_max=_unset(ap.send_max, 0),
    )
    gr = _unset(n.graceful_restart, GracefulRestart())
    graceful_restart = GracefulRestart(
        enabled=_unset(gr.enabled, False),
        restart_time=_unset(gr.restart_time, DEFAULT_RESTART_TIME),
        helper_only=_unset(gr.helper_only, False),
    )
    default_policy = "reject" if ebgp else "accept"  # RFC 8212 §3
    return msgspec.structs.replace(
        n,
        address=address,
        peer_as=peer_as,
        local_as=local_as,
        description=_unset(n.description, ""),
        passive=_unset(n.passive, False),
        port=_unset(n.port, DEFAULT_PORT),
        local_address=_unset(n.local_address, None),
        multihop=_unset(n.multihop, None),
        ttl_security=_unset(n.ttl_security, False),
        md5_password=_unset(n.md5_password, None),
        timers=timers,
        families=families,
        add_path=add_path,
        graceful_restart=graceful_restart,
        prefix_limit={f: v for f, v in _unset(n.prefix_limit, {}).items() if f in families},
        route_server_client=_unset(n.route_server_client, False),
        route_reflector_client=_unset(n.route_reflector_client, False),
        import_policy=_unset(n.import_policy, []),
        export_policy=_unset(n.export_policy, []),
        default_import=_unset(n.default_import, default_policy),
        default_export=_unset(n.default_export, default_policy),
        admin_down=_unset(n.admin_down, False),
        role=_unset(n.role, None),
        role_strict=_unset(n.role_strict, False),
    )


# -------------------------------------------------- msgspec error rewriting

_MSGSPEC_AT = re.compile(r"^(?P<msg>.*?)(?: - at `(?:(?P<key>key)` in `)?\$(?P<path>[^`]*)`)?$", re.S)
_PATH_PART = re.compile(r"\.([^.\[\]]+)|\[(\d+|\.\.\.)\]")
_CONFIG_INFO = None


def _type_info():
    global _CONFIG_INFO
    if _CONFIG_INFO is None:
        _CONFIG_INFO = msgspec.inspect.type_info(Config)
    return _CONFIG_INFO


def _split_path(path):
    return [(int(i) if i.isdigit() else i) if i else k for k, i in _PATH_PART.findall(path)]


def _fill_dict_keys(parts, raw):
    """msgspec writes a dict value's key as "[...]"; find the key whose value
    is the invalid one by re-validating each value of the raw table."""
    out = []
    t = _type_info()
    for i, p in enumerate(parts):
        if p == "...":
            table = _lookup(raw, out)
            vt = t.value_type if isinstance(t, msgspec.inspect.DictType) else None
            key = None
            if isinstance(table, dict):
                for k, v in table.items():
                    if isinstance(vt, msgspec.inspect.StructType):
                        try:
                            msgspec.convert(v, vt.cls)
                            continue
                        except msgspec.ValidationError:
                            pass
                    key = k
                    break
            p = key if key is not None else "*"
        out.append(p)
        t = _walk(t, [p]) if t is not None else None
    return out


def _join_path(parts):
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += "[%d]" % p
        else:
            out += ("." if out else "") + p
    return out


def _walk(t, parts):
    """The msgspec.inspect type at ``parts`` below ``t`` (None if lost)."""
    mi = msgspec.inspect
    for p in parts:
        if isinstance(t, mi.UnionType):
            cands = [_walk(m, [p]) for m in t.types]
            cands = [c for c in cands if c is not None]
            if not cands:
                return None
            t = cands[0]
            continue
        if isinstance(t, mi.StructType) and isinstance(p, str):
            t = next((f.type for f in t.fields if f.encode_name == p), None)
        elif isinstance(t, mi.ListType) and isinstance(p, int):
            t = t.item_type
        elif isinstance(t, mi.DictType) and isinstance(p, str):
            t = t.value_type
        else:
            return None
        if t is None:
            return None
    return t


def _describe(t):
    mi = msgspec.inspect
    if isinstance(t, mi.UnionType):
        parts = [_describe(m) for m in t.types if not isinstance(m, mi.NoneType)]
        return " or ".join(parts)
    if isinstance(t, mi.IntType):
        c = []
        if t.ge is not None:
            c.append(">= %d" % t.ge)
        if t.gt is not None:
            c.append("> %d" % t.gt)
        if t.le is not None:
            c.append("<= %d" % t.le)
        if t.lt is not None:
            c.append("< %d" % t.lt)
        return "int" + (" " + " and ".join(c) if c else "")
    if isinstance(t, mi.StrType):
        if t.max_length is not None and t.min_length:
            return "string of %d to %d characters" % (t.min_length, t.max_length)
        if t.max_length is not None:
            return "string of at most %d characters" % t.max_length
        if t.min_length:
            return "non-empty string"
        return "string"
    if isinstance(t, mi.LiteralType):
        return "one of " + ", ".join(json.dumps(v) for v in t.values)
    if isinstance(t, mi.BoolType):
        return "bool (true/false)"
    if isinstance(t, mi.FloatType):
        return "float"
    if isinstance(t, mi.ListType):
        return "array"
    if isinstance(t, (mi.DictType, mi.StructType)):
        return "table"
    return type(t).__name__


def _render(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, list):
        return "an array"
    if isinstance(v, dict):
        return "a table"
    return "a %s" % type(v).__name__


def _lookup(raw, parts):
    for p in parts:
        try:
            raw = raw[p]
        except (KeyError, IndexError, TypeError):
            return _MISSING
    return raw


_MISSING = object()


def _rewrite(exc, raw):
    """msgspec.ValidationError -> (path, problem) in the file's terms."""
    m = _MSGSPEC_AT.match(str(exc))
    msg, path = m.group("msg"), m.group("path") or ""
    parts = _split_path(path)
    if "..." in parts:
        parts = _fill_dict_keys(parts, raw)
    t = _walk(_type_info(), parts)
    if m.group("key"):
        kt = t.key_type if isinstance(t, msgspec.inspect.DictType) else None
        bad = re.search(r"'(.*)'", msg)
        expected = _describe(kt) if kt is not None else "a valid key"
        return _join_path(parts), "invalid key %s: expected %s" % (json.dumps(bad.group(1)) if bad else "", expected)
    unk = re.match(r"Object contains unknown field `(.*)`", msg)
    if unk:
        known = [f.encode_name for f in t.fields] if isinstance(t, msgspec.inspect.StructType) else []
        hint = difflib.get_close_matches(unk.group(1), known, n=1)
        problem = "unknown field" + (" (did you mean %s?)" % json.dumps(hint[0]) if hint else "")
        return _join_path(parts + [unk.group(1)]), problem
    req = re.match(r"Object missing required field `(.*)`", msg)
    if req:
        return _join_path(parts + [req.group(1)]), "required field missing"
    if msg.startswith("Expected") or msg.startswith("Invalid enum value"):
        got = _lookup(raw, parts)
        expected = _describe(t) if t is not None else msg
        return _join_path(parts), "expected %s, got %s" % (expected, _render(got) if got is not _MISSING else "?")
    return _join_path(parts), msg[:1].lower() + msg[1:]


# ----------------------------------------------------------- semantic checks


class _Checker:
    def __init__(self):
        self.errors = []

    def err(self, path, problem):
        self.errors.append((path, problem))


def _ip(text):
    try:
        return ipaddress.ip_address(text)
    except (ValueError, TypeError):
        return None


def _check_unicast(chk, path, text):
    ip = _ip(text)
    if ip is None:
        chk.err(path, "not an IPv4 or IPv6 address: %s" % json.dumps(text))
    elif ip.is_unspecified or ip.is_multicast:
        chk.err(path, "not a unicast address: %s" % json.dumps(text))
    return ip


def _check_router_id(chk, path, text):
    try:
        rid = ipaddress.IPv4Address(text)
    except ValueError:
        chk.err(path, "not an IPv4 address: %s" % json.dumps(text))
        return
    if int(rid) == 0:
        # RFC 6286 §2.1: the BGP Identifier is a non-zero 32-bit value.
        chk.err(path, "must not be 0.0.0.0 (RFC 6286)")


def _check_asn(chk, path, asn):
    if asn is not UNSET and asn is not None and asn == AS_TRANS:
        chk.err(path, "23456 is AS_TRANS (RFC 6793), not a usable AS number")


def _check_endpoint(chk, path, text, default_port=None):
    try:
        return parse_endpoint(text, default_port)
    except ValueError as exc:
        chk.err(path, "not an address[:port]: %s (%s)" % (json.dumps(text), exc))
        return None


def _check_global(chk, g):
    _check_router_id(chk, "global.router-id", g.router_id)
    _check_asn(chk, "global.asn", g.asn)
    if g.cluster_id is not None:
        _check_router_id(chk, "global.cluster-id", g.cluster_id)
    seen = {}
    for i, s in enumerate(g.listen):
        ep = _check_endpoint(chk, "global.listen[%d]" % i, s, g.port)
        if ep is not None:
            key = (_norm_addr(ep[0]), ep[1])
            if key in seen:
                chk.err("global.listen[%d]" % i, "duplicate of global.listen[%d]" % seen[key])
            seen.setdefault(key, i)
    if g.api.tcp is not None:
        _check_endpoint(chk, "global.api.tcp", g.api.tcp)
        if not g.api.token:
            chk.err("global.api.token", "required when global.api.tcp is set (the TCP API has no other protection)")
        elif len(g.api.token) < 16:
            chk.err("global.api.token", "too short: use at least 16 characters")
    if g.metrics.listen is not None:
        _check_endpoint(chk, "global.metrics.listen", g.metrics.listen)
    for kind in ("updates", "rib"):
        dump = getattr(g.mrt, kind)
        if dump is None:
            continue
        path = "global.mrt.%s.path" % kind
        try:
            time.strftime(dump.path, time.gmtime(0))
        except ValueError as exc:
            chk.err(path, "invalid strftime template: %s" % exc)
        if kind == "updates" and "%" not in dump.path:
            chk.err(path, "needs a strftime field (%Y, %H, ...): every dump would overwrite the last")
    if g.mrt.updates and g.mrt.rib and g.mrt.updates.path == g.mrt.rib.path:
        chk.err("global.mrt.rib.path", "same template as global.mrt.updates.path")


def _check_settings(chk, path, s, policies):
    """Field checks on what a neighbour or group wrote (values inherited from
    a group are checked once, at the group)."""
    _check_asn(chk, path + ".peer-as", s.peer_as)
    _check_asn(chk, path + ".local-as", s.local_as)
    if s.local_address not in (UNSET, None):
        _check_unicast(chk, path + ".local-address", s.local_address)
    if s.timers is not UNSET:
        h = s.timers.hold_time
        if h is not UNSET and h in (1, 2):
            # RFC 4271 §4.2: Hold Time MUST be either zero or at least three seconds.
            chk.err(path + ".timers.hold-time", "must be 0 or 3..65535 (RFC 4271 §4.2), got %d" % h)
    if s.families is not UNSET:
        if not s.families:
            chk.err(path + ".families", "must name at least one family")
        elif len(set(s.families)) != len(s.families):
            chk.err(path + ".families", "lists a family twice")
    for direction in ("import", "export"):
        names = getattr(s, direction + "_policy")
        if names is UNSET:
            continue
        for i, name in enumerate(names):
            if name not in policies:
                chk.err("%s.%s-policy[%d]" % (path, direction, i), "unknown policy %s" % json.dumps(name))
    if s.role_strict is True and s.role in (UNSET, None):
        chk.err(path + ".role-strict", "needs a role (RFC 9234 §4.2)")


def _check_own_families(chk, path, own, families):
    """add-path / prefix-limit entries written in this table (neighbour or
    group) must be for negotiated families.  Entries inherited from a group
    for families a member does not use are dropped by resolve_neighbor."""
    fams = set(families)
    if own.add_path is not UNSET:
        for kind in ("send", "receive"):
            for i, f in enumerate(_unset(getattr(own.add_path, kind), [])):
                if f not in fams:
                    chk.err("%s.add-path.%s[%d]" % (path, kind, i), "family %s is not in families" % json.dumps(f))
    for f in _unset(own.prefix_limit, {}):
        if f not in fams:
            chk.err("%s.prefix-limit.%s" % (path, f), "family is not in families")


def _check_resolved(chk, path, n):
    """Cross-field checks on a neighbour after its group is merged in."""
    if not n.peer_as:
        chk.err(path + ".peer-as", "required (set it on the neighbour or its peer group)")
    t = n.timers
    if t.hold_time == 0 and t.keepalive:
        chk.err(path + ".timers.keepalive", "must be 0 when hold-time is 0 (RFC 4271 §4.4)")
    elif t.hold_time and t.keepalive >= t.hold_time:
        chk.err(path + ".timers.keepalive", "must be less than hold-time (%d), got %d" % (t.hold_time, t.keepalive))
    ip = _ip(n.address)
    if ip is not None and n.local_address is not None:
        lip = _ip(n.local_address)
        if lip is not None and lip.version != ip.version:
            chk.err(path + ".local-address", "IPv%d address for an IPv%d neighbour" % (lip.version, ip.version))
    if n.route_server_client and n.route_reflector_client:
        chk.err(path, "route-server-client and route-reflector-client are exclusive")
    elif n.route_reflector_client and n.ebgp:
        # RFC 4456 §1: route reflection happens between IBGP peers.
        chk.err(path + ".route-reflector-client", "needs an iBGP session (peer-as == local-as)")
    elif n.route_server_client and not n.ebgp and n.peer_as:
        # RFC 7947 §2: a route server's clients are EBGP peers.
        chk.err(path + ".route-server-client", "needs an eBGP session (peer-as != local-as)")
    if n.role is not None:
        if not n.ebgp and n.peer_as:
            # RFC 9234 §4: roles are configured on eBGP sessions only.
            chk.err(path + ".role", "BGP roles apply to eBGP sessions only (RFC 9234)")
        elif n.route_server_client and n.role != "rs":
            chk.err(path + ".role", "a route-server-client's local role is \"rs\", got %s" % json.dumps(n.role))


def _check_defined_sets(chk, ds):
    names = {}
    for kind, attr, member in (
        ("prefix-sets", "prefix_sets", "prefixes"),
        ("as-path-sets", "as_path_sets", "as-paths"),
        ("community-sets", "community_sets", "communities"),
        ("large-community-sets", "large_community_sets", "large-communities"),
    ):
        seen = {}
        for i, s in enumerate(getattr(ds, attr)):
            path = "defined-sets.%s[%d]" % (kind, i)
            if s.name in seen:
                chk.err(path + ".name", "duplicate of defined-sets.%s[%d]" % (kind, seen[s.name]))
            seen.setdefault(s.name, i)
            values = getattr(s, member.replace("-", "_"))
            for j, v in enumerate(values):
                vpath = "%s.%s[%d]" % (path, member, j)
                try:
                    if kind == "prefix-sets":
                        parse_prefix_entry(v)
                    elif kind == "as-path-sets":
                        re.compile(v)
                    elif kind == "community-sets":
                        parse_community(v)
                    else:
                        parse_large_community(v)
                except re.error as exc:
                    chk.err(vpath, "invalid regular expression: %s" % exc)
                except ValueError as exc:
                    chk.err(vpath, "%s: %s" % (_render(v if isinstance(v, str) else v.prefix), exc))
        names[kind] = seen
    return names


_SET_KINDS = {
    "prefix-set": "prefix-sets",
    "as-path-set": "as-path-sets",
    "community-set": "community-sets",
    "large-community-set": "large-community-sets",
}


def _check_community_action(chk, path, act, large):
    if act is None:
        return
    parse = parse_large_community if large else parse_community
    pattern = parse_large_community_pattern if large else parse_community_pattern
    if act.replace is not None and (act.add or act.remove):
        chk.err(path, "replace cannot be combined with add or remove")
    for key, fn in (("add", parse), ("remove", pattern), ("replace", parse)):
        for j, v in enumerate(getattr(act, key) or ()):
            try:
                fn(v)
            except ValueError as exc:
                chk.err("%s.%s[%d]" % (path, key, j), "%s: %s" % (_render(v), exc))


def _check_policies(chk, policies, set_names):
    seen = {}
    for i, p in enumerate(policies):
        path = "policies[%d]" % i
        if p.name in seen:
            chk.err(path + ".name", "duplicate of policies[%d]" % seen[p.name])
        seen.setdefault(p.name, i)
        snames = {}
        for k, st in enumerate(p.statements):
            spath = "%s.statements[%d]" % (path, k)
            if st.name:
                if st.name in snames:
                    chk.err(spath + ".name", "duplicate of %s.statements[%d]" % (path, snames[st.name]))
                snames.setdefault(st.name, k)
            c = st.conditions
            for cond, kind in _SET_KINDS.items():
                ref = getattr(c, cond.replace("-", "_"))
                if ref is None:
                    continue
                name = ref if isinstance(ref, str) else ref.name
                cpath = "%s.conditions.%s" % (spath, cond)
                if name not in set_names[kind]:
                    chk.err(cpath, "unknown %s %s" % (cond, json.dumps(name)))
                if cond == "prefix-set" and isinstance(ref, SetRef) and ref.match == "all":
                    # A route has one prefix: "all" members can never match.
                    chk.err(cpath + ".match", "a prefix-set matches \"any\" or \"invert\"")
            for j, nb in enumerate(c.neighbor or ()):
                try:
                    ipaddress.ip_network(nb, strict=True)
                except ValueError:
                    chk.err("%s.conditions.neighbor[%d]" % (spath, j), "not an address or prefix: %s" % _render(nb))
            if c.family is not None and not c.family:
                chk.err(spath + ".conditions.family", "must name at least one family")
            a = st.actions
            _check_community_action(chk, spath + ".actions.communities", a.communities, False)
            _check_community_action(chk, spath + ".actions.large-communities", a.large_communities, True)
            if a.as_path_prepend is not None:
                _check_asn(chk, spath + ".actions.as-path-prepend.asn", a.as_path_prepend.asn)
            if a.set_next_hop is not None:
                _check_unicast(chk, spath + ".actions.set-next-hop", a.set_next_hop)
                if a.next_hop_self:
                    chk.err(spath + ".actions", "next-hop-self and set-next-hop are exclusive")
    return set(seen)


def _check_routes(chk, routes):
    seen = {}
    for i, r in enumerate(routes):
        path = "routes[%d]" % i
        try:
            net = ipaddress.ip_network(r.prefix, strict=True)
        except ValueError as exc:
            chk.err(path + ".prefix", "not a prefix: %s (%s)" % (_render(r.prefix), exc))
            net = None
        if net is not None:
            if net in seen:
                chk.err(path + ".prefix", "duplicate of routes[%d]" % seen[net])
            seen.setdefault(net, i)
        if r.next_hop is not None:
            nh = _check_unicast(chk, path + ".next-hop", r.next_hop)
            if nh is not None and net is not None and nh.version != net.version:
                chk.err(path + ".next-hop", "IPv%d next hop for an IPv%d prefix" % (nh.version, net.version))
        for j, a in enumerate(r.as_path):
            _check_asn(chk, "%s.as-path[%d]" % (path, j), a)
        for key, fn in (("communities", parse_community), ("large-communities", parse_large_community)):
            for j, v in enumerate(getattr(r, key.replace("-", "_"))):
                try:
                    fn(v)
                except ValueError as exc:
                    chk.err("%s.%s[%d]" % (path, key, j), "%s: %s" % (_render(v), exc))


def _semantic(cfg):
    """(checked config with neighbours resolved, errors)."""
    chk = _Checker()
    g = cfg.global_
    _check_global(chk, g)
    set_names = _check_defined_sets(chk, cfg.defined_sets)
    policies = _check_policies(chk, cfg.policies, set_names)
    _check_routes(chk, cfg.routes)

    groups = {}
    for i, pg in enumerate(cfg.peer_groups):
        path = "peer-groups[%d]" % i
        if pg.name in groups:
            chk.err(path + ".name", "duplicate of peer-groups[%d]" % groups[pg.name][0])
            continue
        groups[pg.name] = (i, pg)
        _check_settings(chk, path, pg, policies)
        if pg.families is not UNSET:
            _check_own_families(chk, path, pg, pg.families)

    resolved = []
    seen = {}
    for i, n in enumerate(cfg.neighbors):
        path = "neighbors[%d]" % i
        ip = _check_unicast(chk, path + ".address", n.address)
        _check_settings(chk, path, n, policies)
        group = None
        if n.peer_group is not None:
            if n.peer_group not in groups:
                chk.err(path + ".peer-group", "unknown peer group %s" % json.dumps(n.peer_group))
            else:
                group = groups[n.peer_group][1]
        r = resolve_neighbor(n, group, g)
        if ip is not None:
            if r.address in seen:
                chk.err(path + ".address", "duplicate of neighbors[%d] (%s)" % (seen[r.address], r.address))
            seen.setdefault(r.address, i)
            _check_resolved(chk, path, r)
            _check_own_families(chk, path, n, r.families)
        resolved.append(r)

    ranges = {}
    for i, d in enumerate(cfg.dynamic_neighbors):
        path = "dynamic-neighbors[%d]" % i
        try:
            net = ipaddress.ip_network(d.prefix, strict=True)
        except ValueError as exc:
            chk.err(path + ".prefix", "not a prefix range: %s (%s)" % (_render(d.prefix), exc))
            net = None
        if net is not None:
            if net in ranges:
                chk.err(path + ".prefix", "duplicate of dynamic-neighbors[%d]" % ranges[net])
            ranges.setdefault(net, i)
        if d.peer_group not in groups:
            chk.err(path + ".peer-group", "unknown peer group %s" % json.dumps(d.peer_group))
        elif net is not None:
            # Check the template once, as any address of the range would get it.
            tpl = resolve_neighbor(Neighbor(address=str(net.network_address), peer_group=d.peer_group), groups[d.peer_group][1], g)
            sub = _Checker()
            _check_resolved(sub, path, tpl)
            for p, m in sub.errors:
                field = p[len(path) :].lstrip(".")
                chk.err(path, "%s%s (with peer group %s)" % (field + ": " if field else "", m, json.dumps(d.peer_group)))

    return msgspec.structs.replace(cfg, neighbors=resolved), chk.errors


# ------------------------------------------------------------------ loading


def _read(path_or_text):
    """(text, source name).  A Path, or a str without newline or '=', is a
    file name; any other str is the TOML itself."""
    if isinstance(path_or_text, bytes):
        return path_or_text.decode("utf-8"), "<bytes>"
    if isinstance(path_or_text, os.PathLike) or ("\n" not in path_or_text and "=" not in path_or_text):
        name = os.fspath(path_or_text)
        try:
            with open(name, "rb") as f:
                return f.read().decode("utf-8"), name
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError([("", "cannot read %s: %s" % (name, exc))], name) from None
    return path_or_text, "<string>"


def load_config(path_or_text):
    """Parse, decode, resolve and check a configuration; ConfigError on any
    problem.  Pure: reads the file and nothing else."""
    text, source = _read(path_or_text)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([("", "TOML syntax error: %s" % exc)], source) from None
    try:
        cfg = msgspec.convert(raw, Config)
    except msgspec.ValidationError as exc:
        raise ConfigError([_rewrite(exc, raw)], source) from None
    cfg, errors = _semantic(cfg)
    if errors:
        raise ConfigError(errors, source)
    return cfg


# --------------------------------------------------------------------- diff


class NeighborChange(_Base):
    address: str
    fields: list[str]  # kebab names of what changed
    # reset: tear the session down and start it with the new settings;
    # soft: keep the session, re-run policies (soft_import: ask for a
    # ROUTE-REFRESH, RFC 2918 / RFC 7313, or re-run Adj-RIB-In;
    # soft_export: re-evaluate and re-advertise); none: nothing to do
    # beyond using the new values (description, prefix limits).
    action: Literal["reset", "soft", "none"]
    soft_import: bool = False
    soft_export: bool = False


class ConfigDiff(_Base):
    added: list[str] = []  # neighbour addresses to start
    removed: list[str] = []  # ... to stop (Cease/Peer De-configured, RFC 4486)
    changed: list[NeighborChange] = []
    global_changed: list[str] = []  # changed keys of [global]
    policies_changed: list[str] = []  # policies whose outcome may differ
    routes_added: list[str] = []  # originated prefixes
    routes_removed: list[str] = []
    routes_changed: list[str] = []
    dynamic_changed: bool = False  # dynamic ranges or their groups changed

    @property
    def empty(self):
        return not (
            self.added
            or self.removed
            or self.changed
            or self.global_changed
            or self.policies_changed
            or self.routes_added
            or self.routes_removed
            or self.routes_changed
            or self.dynamic_changed
        )


_SOFT_IMPORT_FIELDS = {"import_policy", "default_import"}
_SOFT_EXPORT_FIELDS = {"export_policy", "default_export"}
# Used as they are, without touching the session.
_NO_ACTION_FIELDS = {"description", "prefix_limit", "peer_group"}
# Global keys that change what every session sends in its OPEN.
_GLOBAL_RESET = {"asn", "router_id"}


def _kebab(name):
    return name.replace("_", "-")


def _changed_policies(old, new):
    """Names of policies (in either config) whose result may differ: the
    policy itself changed, appeared/disappeared, or a set it uses changed."""
    sets_old = _sets_by_key(old.defined_sets)
    sets_new = _sets_by_key(new.defined_sets)
    changed_sets = {k for k in set(sets_old) | set(sets_new) if sets_old.get(k) != sets_new.get(k)}
    po = {p.name: p for p in old.policies}
    pn = {p.name: p for p in new.policies}
    out = set()
    for name in set(po) | set(pn):
        if po.get(name) != pn.get(name):
            out.add(name)
            continue
        for st in pn[name].statements:
            for cond, kind in _SET_KINDS.items():
                ref = getattr(st.conditions, cond.replace("-", "_"))
                if ref is not None and (kind, ref if isinstance(ref, str) else ref.name) in changed_sets:
                    out.add(name)
    return out


def _sets_by_key(ds):
    out = {}
    for kind, attr in (
        ("prefix-sets", "prefix_sets"),
        ("as-path-sets", "as_path_sets"),
        ("community-sets", "community_sets"),
        ("large-community-sets", "large_community_sets"),
    ):
        for s in getattr(ds, attr):
            out[(kind, s.name)] = s
    return out


def diff(old, new):
    """What a reload from ``old`` to ``new`` (both from load_config) means
    for the running daemon; see ConfigDiff and NeighborChange."""
    global_changed = [
        _kebab(f) for f in GlobalConfig.__struct_fields__ if getattr(old.global_, f) != getattr(new.global_, f)
    ]
    reset_all = [f for f in _GLOBAL_RESET if getattr(old.global_, f) != getattr(new.global_, f)]
    pol = _changed_policies(old, new)
    on = {n.address: n for n in old.neighbors}
    nn = {n.address: n for n in new.neighbors}
    changed = []
    for addr in nn:
        if addr not in on:
            continue
        a, b = on[addr], nn[addr]
        fields = [f for f in Neighbor.__struct_fields__ if getattr(a, f) != getattr(b, f)]
        soft_in = bool(set(fields) & _SOFT_IMPORT_FIELDS) or bool(pol & set(b.import_policy))
        soft_out = bool(set(fields) & _SOFT_EXPORT_FIELDS) or bool(pol & set(b.export_policy))
        hard = set(fields) - _SOFT_IMPORT_FIELDS - _SOFT_EXPORT_FIELDS - _NO_ACTION_FIELDS
        names = [_kebab(f) for f in fields] + ["global." + _kebab(f) for f in reset_all]
        if hard or reset_all:
            changed.append(NeighborChange(address=addr, fields=names, action="reset"))
        elif soft_in or soft_out:
            changed.append(NeighborChange(address=addr, fields=names, action="soft", soft_import=soft_in, soft_export=soft_out))
        elif fields:
            changed.append(NeighborChange(address=addr, fields=names, action="none"))
    ro = {ipaddress.ip_network(r.prefix): r for r in old.routes}
    rn = {ipaddress.ip_network(r.prefix): r for r in new.routes}
    groups_used = {d.peer_group for d in old.dynamic_neighbors} | {d.peer_group for d in new.dynamic_neighbors}
    dyn = old.dynamic_neighbors != new.dynamic_neighbors or any(
        old.peer_group(g) != new.peer_group(g) for g in groups_used
    )
    return ConfigDiff(
        added=[a for a in nn if a not in on],
        removed=[a for a in on if a not in nn],
        changed=changed,
        global_changed=global_changed,
        policies_changed=sorted(pol),
        routes_added=[str(p) for p in rn if p not in ro],
        routes_removed=[str(p) for p in ro if p not in rn],
        routes_changed=[str(p) for p in rn if p in ro and ro[p] != rn[p]],
        dynamic_changed=dyn,
    )
