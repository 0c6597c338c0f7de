"""The daemon's TOML configuration as msgspec Structs.

This module is the data model: the Structs a file decodes into
(``forbid_unknown_fields`` so a typo is an error, not a silently ignored
key; kebab-case keys as in the file), the value types with their ranges,
the parsers of the few values written as text (endpoints, prefix-set
entries), and the peer-group merge.  Loading and the semantic checks are in
:mod:`fastbgp.config.checks` (:func:`~fastbgp.config.checks.load_config`),
the reload difference in :mod:`fastbgp.config.diff`, error reporting in
:mod:`fastbgp.config.errors`.  Address families and communities are written
as :mod:`fastbgp.wire.families` and :mod:`fastbgp.wire.communities` parse
them.

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
    to :data:`msgspec.UNSET`; after ``load_config`` no field of a neighbour
    in ``Config.neighbors`` is UNSET.  Peer groups keep their UNSET fields
    (they are templates).

Dynamic neighbours
    ``[[dynamic-neighbors]]`` accept incoming sessions from any address in a
    prefix range, configured from a peer group; :meth:`Config.neighbor_for`
    resolves an address (static neighbours first, then the most specific
    range).
"""

import ipaddress
from typing import Annotated, Literal, Optional

import msgspec
from msgspec import UNSET, Meta, UnsetType

from fastbgp.wire.constants import (
    DEFAULT_CONNECT_RETRY_TIME, DEFAULT_HOLD_TIME, DEFAULT_MAX_QUEUED_BYTES, ORIGIN_NAMES, ROLE_NAMES,
)
from fastbgp.wire.families import UNICAST_NAMES, family_name, parse_family, unicast_family

__all__ = [
    "ConfigStruct",
    "Config",
    "GlobalConfig",
    "Confederation",
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
    "BmpStation",
    "ProcessConfig",
    "SET_KINDS",
    "LOG_LEVELS",
    "ASN",
    "U32",
    "Origin",
    "resolve_neighbor",
    "normalize_address",
    "parse_endpoint",
    "parse_prefix_entry",
    "DEFAULT_PORT",
    "DEFAULT_API_SOCKET",
]

DEFAULT_PORT = 179  # RFC 4271 §2 (IANA well-known port)
DEFAULT_API_SOCKET = "/run/fastbgp/fastbgp.sock"
# Log level names, lowest first (fastbgp.control.logs maps them to logging's).
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")

# ------------------------------------------------------------------ types

# The families the daemon runs, by canonical name.
Family = Literal[UNICAST_NAMES]
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
Origin = Literal[tuple(ORIGIN_NAMES.values())]  # RFC 4271 §5.1.1
Role = Literal[tuple(ROLE_NAMES.values())]  # RFC 9234 §4.1
# RFC 2385 keys are at most 80 octets (TCP_MD5SIG_MAXKEYLEN on Linux).
Md5 = Annotated[str, Meta(min_length=1, max_length=80)]


class ConfigStruct(
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


class ApiConfig(ConfigStruct):
    socket: Name = DEFAULT_API_SOCKET
    # Optional TCP listener ("addr:port"); it requires a bearer token since,
    # unlike the unix socket, it is not protected by file permissions.
    tcp: Optional[str] = None
    token: Optional[str] = None


class MetricsConfig(ConfigStruct):
    listen: Optional[str] = None  # "addr:port" of the Prometheus endpoint


class LogConfig(ConfigStruct):
    level: Literal[LOG_LEVELS] = "info"
    json: bool = False


class MrtUpdates(ConfigStruct):
    # strftime template; a new file is started every ``interval`` seconds
    # (RFC 6396 BGP4MP records).
    path: Name
    interval: Positive = 300


class MrtRib(ConfigStruct):
    # strftime template; a TABLE_DUMP_V2 snapshot (RFC 6396 §4.3) every
    # ``interval`` seconds.
    path: Name
    interval: Positive = 7200


class MrtConfig(ConfigStruct):
    updates: Optional[MrtUpdates] = None
    rib: Optional[MrtRib] = None


class RouteServerPolicy(ConfigStruct):
    """IXP route-server policy (``[global.route-server]``), applied to
    route-server clients (RFC 7947) only.  See fastbgp.rib.route_server."""

    # Euro-IX BGP communities (0:peer-as, rs-as:peer-as, 0:rs-as, the large
    # community equivalents, 65501..65503:peer-as prepends), stripped on export.
    euro_ix_communities: bool = False
    # RFC 7999 BLACKHOLE (65535:666) from clients: any length up to /32 or
    # /128 accepted; NO_EXPORT added on export (§3.2) unless switched off;
    # next hop rewritten to these addresses when set.
    blackhole: bool = False
    blackhole_no_export: bool = True
    blackhole_next_hop_ipv4: Optional[str] = None
    blackhole_next_hop_ipv6: Optional[str] = None
    # A client may only announce its own address as next hop (or one of its
    # ``route-server-next-hops``); other routes are rejected.
    next_hop_check: bool = False
    # RFC 7947 §2.3.2.1: when a client's export decision rejects the best
    # path of a prefix, send it the best path that passes instead (path
    # hiding mitigation, as BIRD's `secondary`).  See fastbgp.rib.route_server.
    path_hiding: Annotated[bool, Meta(description="send a client the best path its export accepts")] = True


class Confederation(ConfigStruct):
    """RFC 5065: ``global.asn`` is our member AS of the confederation
    ``identifier`` (the AS outsiders see); ``members``: every member AS,
    ours included (see :mod:`fastbgp.rib.confed`)."""

    identifier: ASN
    members: Annotated[list[ASN], Meta(min_length=1, max_length=1024)]


class GlobalConfig(ConfigStruct):
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
    route_server: RouteServerPolicy = msgspec.field(default_factory=RouteServerPolicy)
    confederation: Optional[Confederation] = None  # RFC 5065
    # Processes sharing the work (fastbgp.daemon.front): N > 1 runs N
    # workers, each holding one shard of the prefix space, behind one front
    # process that holds the TCP sessions; 0 = one per CPU core the daemon
    # may run on.  A configuration using what workers cannot share yet runs
    # in one process and the log says why (front.single_reasons).
    workers: Annotated[int, Meta(ge=0, le=64)] = 0

    def session_as(self, peer_as):
        """Our AS towards ``peer_as`` when the neighbour sets no local-as:
        ``asn``, or the confederation identifier for a neighbour outside
        the confederation (RFC 5065 §4)."""
        c = self.confederation
        if c is None or peer_as == self.asn or peer_as in c.members:
            return self.asn
        return c.identifier

    def confederation_peer(self, peer_as):
        """RFC 5065 §4: ``peer_as`` is another member AS of our confederation."""
        c = self.confederation
        return c is not None and peer_as != self.asn and peer_as in c.members

    def listen_endpoints(self):
        """[(address, port)] to listen on."""
        return [parse_endpoint(s, self.port) for s in self.listen]

    @property
    def effective_cluster_id(self):
        return self.cluster_id or self.router_id


# ------------------------------------------------------------ neighbours


class Timers(ConfigStruct):
    # RFC 4271 §4.2 / §10; 0 disables hold and keepalive timers.
    hold_time: U16 | UnsetType = UNSET  # default 90
    keepalive: U16 | UnsetType = UNSET  # default hold-time / 3
    connect_retry: Annotated[int, Meta(ge=1, le=65535)] | UnsetType = UNSET  # default 120
    idle_hold: U16 | UnsetType = UNSET  # default 5 (RFC 4271 §8.1.1 IdleHoldTime)
    # RFC 4271 §8.1.1 DampPeerOscillations: the IdleHoldTime doubles on each
    # consecutive drop up to this many seconds (used as at least idle-hold).
    max_idle_hold: Annotated[int, Meta(ge=1, le=65535)] | UnsetType = UNSET  # default 120
    delay_open: U16 | UnsetType = UNSET  # default 0 = DelayOpen off (RFC 4271 §8.1.1)


class AddPath(ConfigStruct):
    # RFC 7911: families in which we send / receive several paths per prefix.
    send: list[Family] | UnsetType = UNSET
    receive: list[Family] | UnsetType = UNSET
    send_max: Annotated[int, Meta(ge=0, le=255)] | UnsetType = UNSET  # 0 = every path


class GracefulRestart(ConfigStruct):
    enabled: bool | UnsetType = UNSET
    # RFC 4724 §3: Restart Time is a 12-bit field.
    restart_time: Annotated[int, Meta(ge=0, le=4095)] | UnsetType = UNSET
    # Receiving-speaker procedures only: we never claim to preserve state.
    helper_only: bool | UnsetType = UNSET


class PrefixLimit(ConfigStruct):
    max: Positive
    # RFC 4486 Cease/Maximum Number of Prefixes Reached, then reconnect after
    # this many seconds; 0 = stay down until an operator resets the peer.
    restart_after: NonNegative = 0


class _PeerSettings(ConfigStruct):
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
    # RFC 8950: advertise the Extended Next Hop capability for IPv4 unicast
    # with IPv6 next hops, and use it when the peer does too (default false).
    extended_next_hop: bool | UnsetType = UNSET
    # RFC 8097: send the origin validation state extended community on our
    # routes to this (iBGP) neighbour; trust the one it sends (default false).
    rpki_signal: bool | UnsetType = UNSET
    rpki_accept_signal: bool | UnsetType = UNSET
    graceful_restart: GracefulRestart | UnsetType = UNSET
    prefix_limit: dict[Family, PrefixLimit] | UnsetType = UNSET
    route_server_client: bool | UnsetType = UNSET  # RFC 7947
    # Next hops a route-server client may use besides its own address
    # (global.route-server.next-hop-check), e.g. a second router of the member.
    route_server_next_hops: list[str] | UnsetType = UNSET
    route_reflector_client: bool | UnsetType = UNSET  # RFC 4456
    import_policy: list[Name] | UnsetType = UNSET
    export_policy: list[Name] | UnsetType = UNSET
    # RFC 8212: without policy nothing is accepted from or sent to an eBGP
    # peer; iBGP defaults to accept.
    default_import: Accept | UnsetType = UNSET
    default_export: Accept | UnsetType = UNSET
    admin_down: bool | UnsetType = UNSET
    # RFC 4271 §8.1.1 DampPeerOscillations (default true): a session that
    # keeps dropping waits longer each time before it restarts (see
    # timers.idle-hold and timers.max-idle-hold).
    damp_peer_oscillations: bool | UnsetType = UNSET
    role: Optional[Role] | UnsetType = UNSET  # RFC 9234 local role
    role_strict: bool | UnsetType = UNSET  # RFC 9234 §4.2 strict mode
    # Octets that may wait for a slow peer (queued UPDATEs plus the socket
    # buffer) before it is dropped with Cease / Out of Resources (RFC 4486
    # subcode 8); default 64 MiB.
    max_queued_bytes: Annotated[int, Meta(ge=65536, le=1 << 40)] | UnsetType = UNSET

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
        return [parse_family(f) for f in self.families]


class PeerGroup(_PeerSettings, kw_only=True):
    name: Name


class DynamicNeighbor(ConfigStruct):
    prefix: str  # incoming sessions from this range are accepted
    peer_group: Name  # ... and configured from this group


# ------------------------------------------------------------ defined sets


class PrefixEntry(ConfigStruct):
    prefix: str
    ge: Optional[Annotated[int, Meta(ge=0, le=128)]] = None
    le: Optional[Annotated[int, Meta(ge=0, le=128)]] = None


class PrefixSet(ConfigStruct):
    name: Name
    # "prefix", "prefix le N", "prefix ge M le N" or {prefix, ge, le}
    prefixes: list[str | PrefixEntry] = []


class AsPathSet(ConfigStruct):
    name: Name
    # Python regular expressions searched in the AS path rendered as
    # "65000 65001 {65002 65003}" (see fastbgp.rib.policy.render_as_path).
    as_paths: list[str] = []


class CommunitySet(ConfigStruct):
    name: Name
    communities: list[str] = []  # "asn:value" or a well-known name


class LargeCommunitySet(ConfigStruct):
    name: Name
    large_communities: list[str] = []  # "global:local1:local2" (RFC 8092)


class DefinedSets(ConfigStruct):
    prefix_sets: list[PrefixSet] = []
    as_path_sets: list[AsPathSet] = []
    community_sets: list[CommunitySet] = []
    large_community_sets: list[LargeCommunitySet] = []


# The kinds of defined set: (key under [defined-sets], DefinedSets field,
# field of its members, the Conditions field that names a set of it).
SET_KINDS = (
    ("prefix-sets", "prefix_sets", "prefixes", "prefix_set"),
    ("as-path-sets", "as_path_sets", "as_paths", "as_path_set"),
    ("community-sets", "community_sets", "communities", "community_set"),
    ("large-community-sets", "large_community_sets", "large_communities", "large_community_set"),
)


# ---------------------------------------------------------------- policies


class SetRef(ConfigStruct):
    """A defined set named in a condition with how to match it:
    any = some member matches, all = every member matches,
    invert = no member matches."""

    name: Name
    match: Literal["any", "all", "invert"] = "any"


class Conditions(ConfigStruct):
    prefix_set: Name | SetRef | None = None
    as_path_set: Name | SetRef | None = None
    community_set: Name | SetRef | None = None
    large_community_set: Name | SetRef | None = None
    neighbor: Optional[list[str]] = None  # addresses or prefixes
    family: Optional[list[Family]] = None
    origin: Optional[Origin] = None
    # RFC 6811 origin validation state / ASPA path verification result of
    # the route, computed at import from ``[rpki]`` (fastbgp.rpki); import
    # policies only (config.checks).  Nothing is dropped unless a statement
    # says so (RFC 8893 leaves the policy to the operator).
    rpki: Optional[Literal["valid", "invalid", "not-found"]] = None
    aspa: Optional[Literal["valid", "invalid", "unknown"]] = None

class CommunityAction(ConfigStruct):
    add: list[str] = []
    # exact values, or patterns with "*" for any half ("65000:*")
    remove: list[str] = []
    replace: Optional[list[str]] = None  # the exact new list ([] = none)


class Prepend(ConfigStruct):
    asn: Optional[ASN] = None  # default: the session's local AS
    count: Annotated[int, Meta(ge=1, le=32)] = 1


class Actions(ConfigStruct):
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


class Statement(ConfigStruct):
    name: str = ""
    # all = every condition holds, any = at least one, invert = none holds.
    match: Literal["all", "any", "invert"] = "all"
    conditions: Conditions = msgspec.field(default_factory=Conditions)
    actions: Actions = msgspec.field(default_factory=Actions)


class Policy(ConfigStruct):
    name: Name
    statements: list[Statement] = []


# ------------------------------------------------------------------ routes


class Route(ConfigStruct):
    """A locally originated route."""

    prefix: str
    next_hop: Optional[str] = None  # None: the session's own address
    as_path: list[ASN] = []
    communities: list[str] = []
    large_communities: list[str] = []
    med: Optional[U32] = None
    local_pref: Optional[U32] = None
    origin: Origin = "igp"
    # "target:A:N" | "origin:A:N" | "0x" and 16 hex digits (RFC 4360;
    # fastbgp.wire.communities.parse_ext_community).
    ext_communities: list[str] = []
    # RFC 7911 path identifier: several routes of one prefix, each sent with
    # its own id to ADD-PATH peers.  16 bits: ids we send are (source, id)
    # packed in 32 bits (fastbgp.rib.export.addpath_id), ours is source 0.
    path_id: Optional[Annotated[int, Meta(ge=0, le=0xFFFF)]] = None
    # Offered only to these neighbours (addresses); empty: to every one
    # the export policy allows.
    neighbors: list[str] = []


# ----------------------------------------------------------------- rpki


class RpkiCache(ConfigStruct):
    """An RTR cache (RFC 8210): the client uses the most preferred one it
    can reach (RFC 8210 §10; lower ``preference`` is more preferred) and
    keeps its data until the expire interval after losing it."""

    address: Name  # the cache's IP address
    port: Port = 323  # IANA rpki-rtr (RFC 8210 §9)
    preference: Annotated[int, Meta(ge=0, le=255)] = 0
    # Overrides of the timers the cache sends in End of Data (RFC 8210 §6
    # ranges; expire may go below the RFC's 600 s for labs and tests).
    refresh: Optional[Annotated[int, Meta(ge=1, le=86400)]] = None
    retry: Optional[Annotated[int, Meta(ge=1, le=7200)]] = None
    expire: Optional[Annotated[int, Meta(ge=1, le=172800)]] = None
    # "ssh": SSH with the "rpki-rtr" subsystem (RFC 8210 §9.1), settings in
    # ``ssh``; needs the asyncssh package (checked by load_config).
    transport: Literal["tcp", "ssh"] = "tcp"
    ssh: Optional["RpkiSsh"] = None


# An OpenSSH public key line ("ssh-ed25519 AAAA... [comment]"), as in
# known_hosts without the host names or in a host's *.pub file.
SshPublicKey = Annotated[str, Meta(pattern=r"^(ssh-|ecdsa-|sk-)[A-Za-z0-9@._-]+ [A-Za-z0-9+/]+=*( .*)?$",
                                   description='an OpenSSH public key line "TYPE BASE64 [comment]"')]


class RpkiSsh(ConfigStruct):
    """``ssh = {...}`` of a cache with ``transport = "ssh"``: the user, a
    password and/or a private key file, and how the cache's host key is
    verified (RFC 8210 §9.1: routers SHOULD verify it): a ``known-hosts``
    file or a pinned ``host-key``; an unknown key is refused unless
    ``insecure-accept-any-host-key = true``.  Never read: ~/.ssh, an agent."""

    user: Annotated[str, Meta(min_length=1, max_length=255)]
    password: Optional[Annotated[str, Meta(min_length=1, max_length=1024)]] = None
    private_key: Optional[Name] = None  # an unencrypted OpenSSH / PEM private key file
    known_hosts: Optional[Name] = None  # an OpenSSH known_hosts file ("[address]:port" when not 22)
    host_key: Optional[SshPublicKey] = None  # the cache's public host key, pinned
    insecure_accept_any_host_key: bool = False  # skip host key verification (labs only)


class RpkiConfig(ConfigStruct):
    """``[rpki]``: RTR caches and/or a static rpki-client / stayrtr JSON file."""

    caches: list[RpkiCache] = []
    file: Optional[Name] = None  # {"roas": [...], "aspas": [...]} (rpki-client JSON)
    rtr_version: Literal[0, 1, 2] = 2  # highest RTR version offered; negotiated down (RFC 8210 §7)


# ------------------------------------------------------------------ bmp


class BmpStation(ConfigStruct):
    """A BMP monitoring station (RFC 7854) the daemon connects to."""

    address: Name  # the station's IP address
    port: Port = 11019  # no IANA port (RFC 7854 §3.2); 11019 is what collectors use
    # Adj-RIB-In as received (RFC 7854 §4.2 L=0), after import policy (L=1), or both.
    policy: Literal["pre", "post", "both"] = "pre"
    loc_rib: bool = False  # RFC 9069 Loc-RIB monitoring (peer type 3)
    adj_rib_out: bool = False  # RFC 8671 Adj-RIB-Out (O flag), post-policy
    stats_interval: Annotated[int, Meta(ge=0, le=86400)] = 60  # seconds; 0 = no Statistics Reports
    # Past this many bytes queued towards the station it is dropped and
    # re-synced by a fresh dump on reconnect (bounded memory).
    max_queued_bytes: Annotated[int, Meta(ge=65536, le=1 << 34)] = 64 << 20
    sys_name: Optional[str] = None  # RFC 7854 §4.4 sysName (default: "fastbgp <router id>")

    def __post_init__(self):
        try:
            ipaddress.ip_address(self.address)
        except ValueError:
            raise ValueError("bmp address %r is not an IP address" % self.address) from None


# ------------------------------------------------------------------ config


# ------------------------------------------------------------ processes


ProcessEvent = Literal["updates", "neighbor-changes", "notifications", "opens", "keepalives"]


class ProcessConfig(ConfigStruct):
    """``[[processes]]``: a program run like an ExaBGP ``process``
    (fastbgp.daemon.processes): events on its stdin in ExaBGP's JSON or
    text encoder, ExaBGP text commands read from its stdout."""

    name: Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
    run: Annotated[list[Annotated[str, Meta(min_length=1)]], Meta(min_length=1)]  # argv, no shell
    encoder: Literal["json", "text"] = "json"
    api_version: Literal[4, 5, 6] = 4  # ExaBGP JSON spelling (4: ExaBGP 4.x)
    receive: list[ProcessEvent] = []
    # Events queued for the program, at most; past it (a slow reader) it
    # is told it lost events and re-synced, or restarted.
    queue_limit: Annotated[int, Meta(ge=16, le=10_000_000)] = 100_000
    on_overflow: Literal["resync", "restart"] = "resync"
    ack: bool = True  # "done" / "error ..." after every command, as ExaBGP 4 (api.ack)
    # JSON encoder: received UPDATEs of one neighbour are folded into one
    # update line per attribute set for up to this many milliseconds
    # (fastbgp.control.exabgp_coalesce); 0: one line per UPDATE, as ExaBGP.
    coalesce_ms: Annotated[int, Meta(ge=0, le=10_000)] = 100
    env: dict[str, str] = {}


class Config(ConfigStruct):
    global_: GlobalConfig = msgspec.field(name="global")
    neighbors: list[Neighbor] = []
    peer_groups: list[PeerGroup] = []
    dynamic_neighbors: list[DynamicNeighbor] = []
    defined_sets: DefinedSets = msgspec.field(default_factory=DefinedSets)
    policies: list[Policy] = []
    routes: list[Route] = []
    bmp: list[BmpStation] = []
    rpki: Optional[RpkiConfig] = None
    processes: list[ProcessConfig] = []

    def neighbor(self, address):
        """The static neighbour at ``address`` (any spelling), or None."""
        key = normalize_address(address)
        for n in self.neighbors:
            if n.address == key:
                return n
        return None

    def peer_group(self, name):
        for g in self.peer_groups:
            if g.name == name:
                return g
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


def normalize_address(address):
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


def _unset(v, default):
    return default if v is UNSET else v


def _overlay(own, base):
    """``own`` with ``base`` showing through where ``own`` is UNSET; nested
    tables merge key by key, prefix-limit family by family."""
    if own is UNSET:
        return base
    if base is UNSET or base is None:
        return own
    if isinstance(own, ConfigStruct) and type(own) is type(base):
        return type(own)(**{f: _overlay(getattr(own, f), getattr(base, f)) for f in own.__struct_fields__})
    if isinstance(own, dict) and isinstance(base, dict):
        return {**base, **own}
    return own


DEFAULT_IDLE_HOLD = 5
DEFAULT_MAX_IDLE_HOLD = 120
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
    local_as = _unset(n.local_as, glob.session_as(peer_as))
    ebgp = peer_as != local_as
    try:
        ip = ipaddress.ip_address(n.address)
        address, version = str(ip), ip.version
    except ValueError:
        address, version = n.address, 4
    # By default a session carries the unicast family of its own addresses.
    own_family = family_name(unicast_family(version))
    t = _unset(n.timers, Timers())
    hold = _unset(t.hold_time, DEFAULT_HOLD_TIME)
    timers = Timers(
        hold_time=hold,
        # RFC 4271 §10: KeepaliveTime suggested at one third of HoldTime.
        keepalive=_unset(t.keepalive, hold // 3),
        connect_retry=_unset(t.connect_retry, DEFAULT_CONNECT_RETRY_TIME),
        idle_hold=_unset(t.idle_hold, DEFAULT_IDLE_HOLD),
        max_idle_hold=_unset(t.max_idle_hold, DEFAULT_MAX_IDLE_HOLD),
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
    # RFC 8212 §3; a confederation peer is inside our AS (RFC 5065 §4).
    default_policy = "reject" if ebgp and not glob.confederation_peer(peer_as) else "accept"
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
        extended_next_hop=_unset(n.extended_next_hop, False),
        rpki_signal=_unset(n.rpki_signal, False),
        rpki_accept_signal=_unset(n.rpki_accept_signal, False),
        graceful_restart=graceful_restart,
        prefix_limit={f: v for f, v in _unset(n.prefix_limit, {}).items() if f in families},
        route_server_client=_unset(n.route_server_client, False),
        route_server_next_hops=_unset(n.route_server_next_hops, []),
        route_reflector_client=_unset(n.route_reflector_client, False),
        import_policy=_unset(n.import_policy, []),
        export_policy=_unset(n.export_policy, []),
        default_import=_unset(n.default_import, default_policy),
        default_export=_unset(n.default_export, default_policy),
        admin_down=_unset(n.admin_down, False),
        damp_peer_oscillations=_unset(n.damp_peer_oscillations, True),
        role=_unset(n.role, None),
        role_strict=_unset(n.role_strict, False),
        max_queued_bytes=_unset(n.max_queued_bytes, DEFAULT_MAX_QUEUED_BYTES),
    )
