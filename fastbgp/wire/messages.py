"""The full decoded view of BGP messages: one msgspec Struct per message,
path attribute and prefix.

The hot path never builds these: ``codec.parse_update`` keeps prefixes
packed and attributes as one canonical block.  This module turns that
result into per-prefix Python objects for the API, the CLI and tests, and
turns such objects back into wire bytes.  It works with either codec
implementation (``impl`` defaults to :mod:`fastbgp.wire.codec`).

Every Struct is JSON-encodable with ``msgspec.json``; attribute and message
unions are tagged (``"kind"`` for attributes and capabilities, ``"type"``
for messages) so the JSON says what each object is, and unknown fields are
rejected when decoding user JSON.  ``bytes`` fields travel as base64.

Attributes keep their flags octet so that re-encoding a decoded UPDATE gives
back the same bytes; AS numbers are always the 4-octet values (the codec
merges AS4_PATH/AS4_AGGREGATOR for 2-octet sessions, RFC 6793 §4.2.3, and
``encode_update`` splits them again when ``ctx.as4`` is false, §4.2.2).
"""

from __future__ import annotations

import enum
import ipaddress
from typing import ClassVar, Union

import msgspec

from fastbgp.wire import as4 as _as4
from fastbgp.wire import capabilities as _caps
from fastbgp.wire import communities as _communities
from fastbgp.wire.types import DEFAULT_CONTEXT
from fastbgp.wire.constants import (
    AFI_IPV4,
    ATTR_NAMES,
    CAP_ADD_PATH,
    CAP_BGP_ROLE,
    CAP_ENHANCED_ROUTE_REFRESH,
    CAP_EXTENDED_MESSAGE,
    CAP_EXTENDED_NEXT_HOP,
    CAP_FOUR_OCTET_AS,
    CAP_FQDN,
    CAP_GRACEFUL_RESTART,
    CAP_MULTIPROTOCOL,
    CAP_ROUTE_REFRESH,
    CAP_ROUTE_REFRESH_CISCO,
    ROLE_NAMES,
    AFI_IPV6,
    ATTR_AGGREGATOR,
    ATTR_AS4_AGGREGATOR,
    ATTR_AS4_PATH,
    ATTR_AS_PATH,
    ATTR_ATOMIC_AGGREGATE,
    ATTR_CLUSTER_LIST,
    ATTR_COMMUNITIES,
    ATTR_EXT_COMMUNITIES,
    ATTR_LARGE_COMMUNITY,
    ATTR_LOCAL_PREF,
    ATTR_MED,
    ATTR_MP_REACH_NLRI,
    ATTR_MP_UNREACH_NLRI,
    ATTR_NEXT_HOP,
    ATTR_ORIGIN,
    ATTR_ORIGINATOR_ID,
    ATTR_OTC,
    BGP_VERSION,
    FLAG_EXTENDED_LENGTH,
    HEADER_LEN,
    MAX_MESSAGE_LEN,
    MSG_KEEPALIVE,
    MSG_NOTIFICATION,
    MSG_OPEN,
    MSG_ROUTE_REFRESH,
    MSG_UPDATE,
    SAFI_MULTICAST,
    SAFI_UNICAST,
    WELL_KNOWN_FLAGS,
)
from fastbgp.wire.errors import (
    ACTION_NAMES,
    CEASE_ADMIN_RESET,
    CEASE_ADMIN_SHUTDOWN,
    ERR_CEASE,
    ERR_HEADER,
    ERROR_NAMES,
    HDR_BAD_LENGTH,
    HDR_BAD_TYPE,
    BGPError,
)

__all__ = [
    # prefixes and attributes
    "Prefix",
    "Segment",
    "Attribute",
    "AnyAttribute",
    "Origin",
    "AsPath",
    "NextHop",
    "Med",
    "LocalPref",
    "AtomicAggregate",
    "Aggregator",
    "Communities",
    "OriginatorId",
    "ClusterList",
    "MpReach",
    "MpUnreach",
    "ExtCommunities",
    "AS4Path",
    "AS4Aggregator",
    "LargeCommunities",
    "Otc",
    "Unknown",
    "decode_attributes",
    "encode_attributes",
    # messages
    "Message",
    "AnyMessage",
    "Open",
    "Update",
    "Notification",
    "Keepalive",
    "RouteRefresh",
    "decode_update",
    "encode_update",
    "decode_open",
    "encode_open",
    "decode_notification",
    "encode_notification",
    "decode_route_refresh",
    "encode_route_refresh",
    "decode_message",
    "encode_message",
    "decode_framed",
    "build_shutdown_data",
    "parse_shutdown_data",
    # display enums
    "AttrType",
    "CapabilityCode",
    "Role",
    "Action",
    "enum_name",
]


# ---------------------------------------------------------------- display enums
#
# constants.py keeps plain ints for the codec; these IntEnums name them for
# people (CLI, logs), built from its tables so each number is written once.
# The Structs below keep plain ints so their JSON stays numbers.


def _enum(name, names):
    return enum.IntEnum(name, {text.upper().replace("-", "_"): code for code, text in names.items()})


AttrType = _enum("AttrType", ATTR_NAMES)
CapabilityCode = enum.IntEnum(
    "CapabilityCode",
    {
        "MULTIPROTOCOL": CAP_MULTIPROTOCOL,
        "ROUTE_REFRESH": CAP_ROUTE_REFRESH,
        "EXTENDED_NEXT_HOP": CAP_EXTENDED_NEXT_HOP,
        "EXTENDED_MESSAGE": CAP_EXTENDED_MESSAGE,
        "BGP_ROLE": CAP_BGP_ROLE,
        "GRACEFUL_RESTART": CAP_GRACEFUL_RESTART,
        "FOUR_OCTET_AS": CAP_FOUR_OCTET_AS,
        "ADD_PATH": CAP_ADD_PATH,
        "ENHANCED_ROUTE_REFRESH": CAP_ENHANCED_ROUTE_REFRESH,
        "FQDN": CAP_FQDN,
        "ROUTE_REFRESH_CISCO": CAP_ROUTE_REFRESH_CISCO,
    },
)
Role = _enum("Role", ROLE_NAMES)
Action = _enum("Action", ACTION_NAMES)


def enum_name(kind, value) -> str:
    """``kind(value).name``, or the number when the value has no name."""
    try:
        return kind(value).name
    except ValueError:
        return str(value)


def _impl(impl):
    if impl is None:
        from fastbgp.wire import codec as impl
    return impl


# ---------------------------------------------------------------- addresses and prefixes

# The families whose NLRI are plain prefixes (the same rule the codec uses);
# every other family is carried as opaque bytes.
_PREFIX_AFIS = {AFI_IPV4: (4, ipaddress.IPv4Address), AFI_IPV6: (16, ipaddress.IPv6Address)}


def _prefix_family(afi, safi):
    return afi in _PREFIX_AFIS and (safi == SAFI_UNICAST or safi == SAFI_MULTICAST)


def _ip(octets):
    if len(octets) == 4:
        return str(ipaddress.IPv4Address(bytes(octets)))
    if len(octets) == 16:
        return ipaddress.IPv6Address(bytes(octets)).compressed
    raise ValueError("address of %d octets" % len(octets))


def _ip_bytes(text, width=None):
    addr = ipaddress.ip_address(text)
    if width is not None and len(addr.packed) != width:
        raise ValueError("%r is not a %d-octet address" % (text, width))
    return addr.packed


class Prefix(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One NLRI entry: ``"10.0.0.0/8"`` / ``"2001:db8::/32"`` and the
    RFC 7911 path identifier when ADD-PATH is in use for its family."""

    prefix: str
    path_id: int | None = None

    def __str__(self):
        if self.path_id is None:
            return self.prefix
        return "%s path-id %d" % (self.prefix, self.path_id)


def _unpack(packed, afi, addpath, impl):
    width, cls = _PREFIX_AFIS[afi]
    out = []
    for pid, addr, plen in impl.unpack_prefixes(packed, afi, addpath):
        text = "%s/%d" % (cls(addr[:width]).compressed, plen)
        out.append(Prefix(text, pid if addpath else None))
    return out


def _pack(prefixes, afi, addpath, impl):
    width = _PREFIX_AFIS[afi][0]
    entries = []
    for p in prefixes:
        # strict: host bits past the length would not survive the wire
        # (RFC 4271 §4.3 makes them irrelevant), so refuse them up front.
        net = ipaddress.ip_network(p.prefix, strict=True)
        if len(net.network_address.packed) != width:
            raise ValueError("%s is not an AFI %d prefix" % (p.prefix, afi))
        if addpath:
            if p.path_id is None:
                raise ValueError("%s has no path id but ADD-PATH is in use for AFI %d" % (p.prefix, afi))
            if not 0 <= p.path_id <= 0xFFFFFFFF:
                raise ValueError("path id %r out of range" % p.path_id)
        elif p.path_id is not None:
            raise ValueError("%s has a path id but ADD-PATH is not in use for AFI %d" % (p.prefix, afi))
        entries.append((p.path_id or 0, net.network_address.packed, net.prefixlen))
    return impl.pack_prefixes(entries, addpath)


# ---------------------------------------------------------------- path attributes


def _ints(v, width, name):
    """A list attribute of fixed-width unsigned values (RFC 1997 communities,
    RFC 4360 extended communities) as ints."""
    if len(v) % width:
        raise ValueError("%s of %d octets" % (name, len(v)))
    return [int.from_bytes(v[i : i + width], "big") for i in range(0, len(v), width)]


def _u(value, width, what):
    try:
        return int(value).to_bytes(width, "big")
    except OverflowError:
        raise ValueError("%s %r does not fit in %d octet(s)" % (what, value, width)) from None


def _need(v, n, what):
    if len(v) != n:
        raise ValueError("%s of %d octets, expected %d" % (what, len(v), n))


class Segment(msgspec.Struct, forbid_unknown_fields=True):
    """An AS_PATH segment (RFC 4271 §4.3, RFC 5065 §3): type 1 AS_SET,
    2 AS_SEQUENCE, 3 AS_CONFED_SEQUENCE, 4 AS_CONFED_SET."""

    type: int
    asns: list[int]


class Attribute(msgspec.Struct, tag_field="kind", forbid_unknown_fields=True):
    """Base of every path attribute.  ``flags`` is the wire flags octet;
    the default is the one RFC 4271 §5 / each attribute's RFC prescribes."""

    code: ClassVar[int] = -1

    @property
    def type_code(self) -> int:
        return self.code

    def pack(self) -> bytes:
        """The attribute value octets (4-octet AS form)."""
        raise NotImplementedError


class Origin(Attribute, tag="origin"):
    """RFC 4271 §5.1.1: 0 IGP, 1 EGP, 2 INCOMPLETE."""

    code: ClassVar[int] = ATTR_ORIGIN
    value: int
    flags: int = WELL_KNOWN_FLAGS[ATTR_ORIGIN]

    def pack(self):
        return _u(self.value, 1, "ORIGIN")

    @classmethod
    def _decode(cls, f, v, as4):
        _need(v, 1, "ORIGIN")
        return cls(v[0], f)


def _segments(v, width):
    # Same walk as the codec's validator; repeated here because this path
    # also serves raw blocks the codec has not seen.
    i, n = 0, len(v)
    while i < n:
        if n - i < 2 or i + 2 + v[i + 1] * width > n:
            raise ValueError("malformed AS path")
        i += 2 + v[i + 1] * width
    return [Segment(st, asns) for st, asns in _as4.decode_segments(v, width)]


class AsPath(Attribute, tag="as-path"):
    """RFC 4271 §5.1.2 (4-octet AS numbers, RFC 6793)."""

    code: ClassVar[int] = ATTR_AS_PATH
    segments: list[Segment] = []
    flags: int = WELL_KNOWN_FLAGS[ATTR_AS_PATH]

    def pack(self, width=4):
        return _as4.encode_segments([(s.type, s.asns) for s in self.segments], width)

    def asns(self) -> list:
        return [a for s in self.segments for a in s.asns]

    @classmethod
    def _decode(cls, f, v, as4):
        return cls(_segments(v, 4 if as4 else 2), f)


class AS4Path(Attribute, tag="as4-path"):
    """RFC 6793 §3.  Only seen when decoding a raw 2-octet block with
    ``decode_attributes(..., as4=False)``: the codec merges it into AS_PATH."""

    code: ClassVar[int] = ATTR_AS4_PATH
    segments: list[Segment] = []
    flags: int = WELL_KNOWN_FLAGS[ATTR_AS4_PATH]

    def pack(self, width=4):
        return _as4.encode_segments([(s.type, s.asns) for s in self.segments], 4)

    def asns(self) -> list:
        return [a for s in self.segments for a in s.asns]

    @classmethod
    def _decode(cls, f, v, as4):
        return cls(_segments(v, 4), f)


class NextHop(Attribute, tag="next-hop"):
    """RFC 4271 §5.1.3."""

    code: ClassVar[int] = ATTR_NEXT_HOP
    address: str
    flags: int = WELL_KNOWN_FLAGS[ATTR_NEXT_HOP]

    def pack(self):
        return _ip_bytes(self.address, 4)

    @classmethod
    def _decode(cls, f, v, as4):
        _need(v, 4, "NEXT_HOP")
        return cls(_ip(v), f)


class Med(Attribute, tag="med"):
    """RFC 4271 §5.1.4 MULTI_EXIT_DISC."""

    code: ClassVar[int] = ATTR_MED
    value: int
    flags: int = WELL_KNOWN_FLAGS[ATTR_MED]

    def pack(self):
        return _u(self.value, 4, "MED")

    @classmethod
    def _decode(cls, f, v, as4):
        _need(v, 4, "MULTI_EXIT_DISC")
        return cls(int.from_bytes(v, "big"), f)


class LocalPref(Attribute, tag="local-pref"):
    """RFC 4271 §5.1.5."""

    code: ClassVar[int] = ATTR_LOCAL_PREF
    value: int
    flags: int = WELL_KNOWN_FLAGS[ATTR_LOCAL_PREF]

    def pack(self):
        return _u(self.value, 4, "LOCAL_PREF")

    @classmethod
    def _decode(cls, f, v, as4):
        _need(v, 4, "LOCAL_PREF")
        return cls(int.from_bytes(v, "big"), f)


class AtomicAggregate(Attribute, tag="atomic-aggregate"):
    """RFC 4271 §5.1.6."""

    code: ClassVar[int] = ATTR_ATOMIC_AGGREGATE
    flags: int = WELL_KNOWN_FLAGS[ATTR_ATOMIC_AGGREGATE]

    def pack(self):
        return b""

    @classmethod
    def _decode(cls, f, v, as4):
        _need(v, 0, "ATOMIC_AGGREGATE")
        return cls(f)


class Aggregator(Attribute, tag="aggregator"):
    """RFC 4271 §5.1.7 (4-octet AS, RFC 6793 §3)."""

    code: ClassVar[int] = ATTR_AGGREGATOR
    asn: int
    address: str
    flags: int = WELL_KNOWN_FLAGS[ATTR_AGGREGATOR]

    def pack(self, width=4):
        return _u(self.asn, width, "aggregator AS") + _ip_bytes(self.address, 4)

    @classmethod
    def _decode(cls, f, v, as4):
        w = 4 if as4 else 2
        _need(v, w + 4, "AGGREGATOR")
        return cls(int.from_bytes(v[:w], "big"), _ip(v[w:]), f)


class AS4Aggregator(Attribute, tag="as4-aggregator"):
    """RFC 6793 §3; see AS4Path."""

    code: ClassVar[int] = ATTR_AS4_AGGREGATOR
    asn: int
    address: str
    flags: int = WELL_KNOWN_FLAGS[ATTR_AS4_AGGREGATOR]

    def pack(self, width=4):
        return _u(self.asn, 4, "aggregator AS") + _ip_bytes(self.address, 4)

    @classmethod
    def _decode(cls, f, v, as4):
        _need(v, 8, "AS4_AGGREGATOR")
        return cls(int.from_bytes(v[:4], "big"), _ip(v[4:]), f)


class Communities(Attribute, tag="communities"):
    """RFC 1997: 32-bit values (high 16 bits = AS)."""

    code: ClassVar[int] = ATTR_COMMUNITIES
    values: list[int] = []
    flags: int = WELL_KNOWN_FLAGS[ATTR_COMMUNITIES]

    def pack(self):
        return b"".join(_u(c, 4, "community") for c in self.values)

    def strings(self) -> list:
        return [_communities.format_community(c) for c in self.values]

    @classmethod
    def _decode(cls, f, v, as4):
        return cls(_ints(v, 4, "COMMUNITIES"), f)


class OriginatorId(Attribute, tag="originator-id"):
    """RFC 4456 §8."""

    code: ClassVar[int] = ATTR_ORIGINATOR_ID
    address: str
    flags: int = WELL_KNOWN_FLAGS[ATTR_ORIGINATOR_ID]

    def pack(self):
        return _ip_bytes(self.address, 4)

    @classmethod
    def _decode(cls, f, v, as4):
        _need(v, 4, "ORIGINATOR_ID")
        return cls(_ip(v), f)


class ClusterList(Attribute, tag="cluster-list"):
    """RFC 4456 §8: cluster ids as dotted quads."""

    code: ClassVar[int] = ATTR_CLUSTER_LIST
    ids: list[str] = []
    flags: int = WELL_KNOWN_FLAGS[ATTR_CLUSTER_LIST]

    def pack(self):
        return b"".join(_ip_bytes(i, 4) for i in self.ids)

    @classmethod
    def _decode(cls, f, v, as4):
        if len(v) % 4:
            raise ValueError("CLUSTER_LIST of %d octets" % len(v))
        return cls([_ip(v[i : i + 4]) for i in range(0, len(v), 4)], f)


class MpReach(Attribute, tag="mp-reach"):
    """RFC 4760 §3 MP_REACH_NLRI.

    For IPv4/IPv6 unicast and multicast, ``next_hops`` holds the global
    next hop and, when 32 octets were sent, the link-local one (RFC 2545 §3;
    RFC 8950 allows IPv6 next hops for IPv4 NLRI), and ``nlri`` the
    prefixes.  Other families stay opaque: ``raw_next_hop`` and ``raw``
    are the next hop and NLRI octets as sent.  The reserved octet (RFC 4760
    §3) is always sent as 0.
    """

    code: ClassVar[int] = ATTR_MP_REACH_NLRI
    afi: int
    safi: int
    next_hops: list[str] = []
    nlri: list[Prefix] = []
    raw_next_hop: bytes | None = None
    raw: bytes | None = None
    flags: int = WELL_KNOWN_FLAGS[ATTR_MP_REACH_NLRI]

    @property
    def family(self) -> tuple:
        return (self.afi, self.safi)

    def pack(self, addpath=frozenset(), impl=None):
        if self.raw_next_hop is not None:
            nh = bytes(self.raw_next_hop)
        else:
            nh = b"".join(_ip_bytes(a) for a in self.next_hops)
        if len(nh) > 255:
            raise ValueError("next hop of %d octets" % len(nh))
        if self.raw is not None:
            nlri = bytes(self.raw)
        elif _prefix_family(self.afi, self.safi):
            nlri = _pack(self.nlri, self.afi, self.family in addpath, _impl(impl))
        elif self.nlri:
            raise ValueError("AFI %d SAFI %d NLRI must be given as raw octets" % self.family)
        else:
            nlri = b""
        return _u(self.afi, 2, "AFI") + _u(self.safi, 1, "SAFI") + bytes((len(nh),)) + nh + b"\x00" + nlri

    @classmethod
    def _build(cls, afi, safi, nh, packed, flags, addpath, impl):
        if _prefix_family(afi, safi):
            if len(nh) not in (4, 16, 32):
                raise ValueError("next hop of %d octets" % len(nh))
            hops = [_ip(nh)] if len(nh) != 32 else [_ip(nh[:16]), _ip(nh[16:])]
            return cls(afi, safi, hops, _unpack(packed, afi, (afi, safi) in addpath, impl), flags=flags)
        return cls(afi, safi, raw_next_hop=bytes(nh), raw=bytes(packed), flags=flags)

    @classmethod
    def _decode(cls, f, v, as4, addpath=frozenset(), impl=None):
        if len(v) < 5 or 5 + v[3] > len(v):
            raise ValueError("MP_REACH_NLRI of %d octets" % len(v))
        nhl = v[3]
        return cls._build((v[0] << 8) | v[1], v[2], v[4 : 4 + nhl], v[5 + nhl :], f, addpath, _impl(impl))


class MpUnreach(Attribute, tag="mp-unreach"):
    """RFC 4760 §4 MP_UNREACH_NLRI; ``raw`` for families we do not parse."""

    code: ClassVar[int] = ATTR_MP_UNREACH_NLRI
    afi: int
    safi: int
    nlri: list[Prefix] = []
    raw: bytes | None = None
    flags: int = WELL_KNOWN_FLAGS[ATTR_MP_UNREACH_NLRI]

    @property
    def family(self) -> tuple:
        return (self.afi, self.safi)

    def pack(self, addpath=frozenset(), impl=None):
        if self.raw is not None:
            nlri = bytes(self.raw)
        elif _prefix_family(self.afi, self.safi):
            nlri = _pack(self.nlri, self.afi, self.family in addpath, _impl(impl))
        elif self.nlri:
            raise ValueError("AFI %d SAFI %d NLRI must be given as raw octets" % self.family)
        else:
            nlri = b""
        return _u(self.afi, 2, "AFI") + _u(self.safi, 1, "SAFI") + nlri

    @classmethod
    def _build(cls, afi, safi, packed, flags, addpath, impl):
        if _prefix_family(afi, safi):
            return cls(afi, safi, _unpack(packed, afi, (afi, safi) in addpath, impl), flags=flags)
        return cls(afi, safi, raw=bytes(packed), flags=flags)

    @classmethod
    def _decode(cls, f, v, as4, addpath=frozenset(), impl=None):
        if len(v) < 3:
            raise ValueError("MP_UNREACH_NLRI of %d octets" % len(v))
        return cls._build((v[0] << 8) | v[1], v[2], v[3:], f, addpath, _impl(impl))


class ExtCommunities(Attribute, tag="ext-communities"):
    """RFC 4360: each value is the 8-octet community as one integer."""

    code: ClassVar[int] = ATTR_EXT_COMMUNITIES
    values: list[int] = []
    flags: int = WELL_KNOWN_FLAGS[ATTR_EXT_COMMUNITIES]

    def pack(self):
        return b"".join(_u(c, 8, "extended community") for c in self.values)

    def strings(self) -> list:
        return [_communities.format_ext_community(c) for c in self.values]

    @classmethod
    def _decode(cls, f, v, as4):
        return cls(_ints(v, 8, "EXTENDED_COMMUNITIES"), f)


class LargeCommunities(Attribute, tag="large-communities"):
    """RFC 8092: (global administrator, local data 1, local data 2)."""

    code: ClassVar[int] = ATTR_LARGE_COMMUNITY
    values: list[tuple[int, int, int]] = []
    flags: int = WELL_KNOWN_FLAGS[ATTR_LARGE_COMMUNITY]

    def pack(self):
        out = bytearray()
        for v in self.values:
            if len(v) != 3:
                raise ValueError("large community %r is not three numbers" % (v,))
            for x in v:
                out += _u(x, 4, "large community")
        return bytes(out)

    def strings(self) -> list:
        return [_communities.format_large_community(v) for v in self.values]

    @classmethod
    def _decode(cls, f, v, as4):
        if len(v) % 12:
            raise ValueError("LARGE_COMMUNITY of %d octets" % len(v))
        vals = []
        for i in range(0, len(v), 12):
            vals.append(
                (
                    int.from_bytes(v[i : i + 4], "big"),
                    int.from_bytes(v[i + 4 : i + 8], "big"),
                    int.from_bytes(v[i + 8 : i + 12], "big"),
                )
            )
        return cls(vals, f)


class Otc(Attribute, tag="otc"):
    """RFC 9234 §5 Only to Customer."""

    code: ClassVar[int] = ATTR_OTC
    asn: int
    flags: int = WELL_KNOWN_FLAGS[ATTR_OTC]

    def pack(self):
        return _u(self.asn, 4, "OTC")

    @classmethod
    def _decode(cls, f, v, as4):
        _need(v, 4, "ONLY_TO_CUSTOMER")
        return cls(int.from_bytes(v, "big"), f)


class Unknown(Attribute, tag="unknown"):
    """Any attribute not modelled above, kept verbatim (RFC 4271 §5:
    unrecognised optional transitive attributes are passed on)."""

    type: int
    value: bytes = b""
    flags: int = 0xC0

    @property
    def type_code(self) -> int:
        return self.type

    def pack(self):
        return bytes(self.value)


AnyAttribute = Union[
    Origin,
    AsPath,
    NextHop,
    Med,
    LocalPref,
    AtomicAggregate,
    Aggregator,
    Communities,
    OriginatorId,
    ClusterList,
    MpReach,
    MpUnreach,
    ExtCommunities,
    AS4Path,
    AS4Aggregator,
    LargeCommunities,
    Otc,
    Unknown,
]

_ATTR_CLASSES = {
    cls.code: cls
    for cls in (
        Origin,
        AsPath,
        NextHop,
        Med,
        LocalPref,
        AtomicAggregate,
        Aggregator,
        Communities,
        OriginatorId,
        ClusterList,
        MpReach,
        MpUnreach,
        ExtCommunities,
        AS4Path,
        AS4Aggregator,
        LargeCommunities,
        Otc,
    )
}


def _decode_attr(flags, t, value, as4=True, addpath=frozenset(), impl=None):
    cls = _ATTR_CLASSES.get(t)
    if cls is None:
        return Unknown(t, bytes(value), flags)
    if cls is MpReach or cls is MpUnreach:
        return cls._decode(flags, value, as4, addpath, impl)
    return cls._decode(flags, value, as4)


def _attr_value(attr, as4=True, addpath=frozenset(), impl=None):
    if isinstance(attr, (MpReach, MpUnreach)):
        return attr.pack(addpath, impl)
    if isinstance(attr, (AsPath, Aggregator)):
        return attr.pack(4 if as4 else 2)
    return attr.pack()


def _encode_attr(attr, as4=True, addpath=frozenset(), impl=None):
    flags = attr.flags
    if not 0 <= flags <= 0xFF:
        raise ValueError("attribute flags %r" % flags)
    t = attr.type_code
    if not 0 <= t <= 0xFF:
        raise ValueError("attribute type %r" % t)
    value = _attr_value(attr, as4, addpath, impl)
    if len(value) > 0xFFFF:
        raise ValueError("attribute %d value of %d octets" % (t, len(value)))
    return _as4.encode_attr(flags, t, value)


def decode_attributes(block: bytes, *, as4: bool = True, addpath=frozenset(), impl=None) -> list:
    """Attribute Structs of a raw path attribute block, in wire order.

    Unlike ``decode_update`` this does no RFC 7606 handling: a block that
    cannot be split or a known attribute of the wrong size raises
    ValueError.  With ``as4=False`` AS_PATH/AGGREGATOR are read with 2-octet
    AS numbers and AS4_PATH/AS4_AGGREGATOR come out as their own Structs.
    ``addpath`` is the set of (afi, safi) whose MP_* NLRI carry path ids.
    """
    out = []
    i, n = 0, len(block)
    while i < n:
        if n - i < 3 or (block[i] & FLAG_EXTENDED_LENGTH and n - i < 4):
            raise ValueError("truncated attribute header at offset %d" % i)
        flags, t = block[i], block[i + 1]
        if flags & FLAG_EXTENDED_LENGTH:
            ln, vs = (block[i + 2] << 8) | block[i + 3], i + 4
        else:
            ln, vs = block[i + 2], i + 3
        if vs + ln > n:
            raise ValueError("attribute %d overruns the block" % t)
        out.append(_decode_attr(flags, t, bytes(block[vs : vs + ln]), as4, addpath, impl))
        i = vs + ln
    return out


def encode_attributes(attrs, *, as4: bool = True, addpath=frozenset(), impl=None) -> bytes:
    """Inverse of decode_attributes: the Structs as one attribute block,
    verbatim (``as4=False`` writes 2-octet AS numbers, no AS4_* synthesis;
    ``encode_update`` is the one that converts for a 2-octet peer)."""
    return b"".join(_encode_attr(a, as4, addpath, impl) for a in attrs)


# ---------------------------------------------------------------- messages


class Message(msgspec.Struct, tag_field="type", forbid_unknown_fields=True):
    """Base of the five message views; ``type`` tags the JSON form."""

    mtype: ClassVar[int] = 0


class Keepalive(Message, tag="keepalive"):
    """RFC 4271 §4.4: header only."""

    mtype: ClassVar[int] = MSG_KEEPALIVE


class Open(Message, tag="open"):
    """RFC 4271 §4.2.  ``asn`` is the 2-octet My Autonomous System field
    (AS_TRANS for a 4-octet AS, whose number is in the FourOctetAS
    capability: see ``effective_asn``)."""

    mtype: ClassVar[int] = MSG_OPEN
    version: int
    asn: int
    hold_time: int
    bgp_id: str
    capabilities: list[_caps.AnyCapability] = []

    @property
    def effective_asn(self) -> int:
        """The sender's AS: the 4-octet AS capability if any (RFC 6793 §3)."""
        for c in self.capabilities:
            if isinstance(c, _caps.FourOctetAS):
                return c.asn
        return self.asn

    def get(self, cls):
        """Every capability of class ``cls``."""
        return [c for c in self.capabilities if isinstance(c, cls)]


class Update(Message, tag="update"):
    """RFC 4271 §4.3.  ``withdrawn``/``nlri`` are the IPv4 unicast fields;
    other families travel in MpReach/MpUnreach among ``attributes``.
    ``action``/``errors`` report RFC 7606 handling done while decoding
    (``errors.ACTION_*``; treat-as-withdraw has already moved every
    announced prefix to the withdrawals)."""

    mtype: ClassVar[int] = MSG_UPDATE
    withdrawn: list[Prefix] = []
    attributes: list[AnyAttribute] = []
    nlri: list[Prefix] = []
    action: int = 0
    errors: list[str] = []

    def get(self, type_code: int):
        """The first attribute with that type code, or None."""
        for a in self.attributes:
            if a.type_code == type_code:
                return a
        return None

    def _value(self, type_code, field):
        a = self.get(type_code)
        return None if a is None else getattr(a, field)

    @property
    def origin(self):
        return self._value(ATTR_ORIGIN, "value")

    @property
    def as_path(self):
        """The AS_PATH segments, or None."""
        return self._value(ATTR_AS_PATH, "segments")

    def as_path_asns(self) -> list:
        """Every AS of AS_PATH in order, segments flattened."""
        a = self.get(ATTR_AS_PATH)
        return [] if a is None else a.asns()

    @property
    def next_hop(self):
        """NEXT_HOP, else the first MP_REACH_NLRI next hop, else None."""
        nh = self._value(ATTR_NEXT_HOP, "address")
        if nh is None:
            mp = self.mp_reach
            if mp is not None and mp.next_hops:
                nh = mp.next_hops[0]
        return nh

    @property
    def med(self):
        return self._value(ATTR_MED, "value")

    @property
    def local_pref(self):
        return self._value(ATTR_LOCAL_PREF, "value")

    @property
    def communities(self) -> list:
        return self._value(ATTR_COMMUNITIES, "values") or []

    @property
    def ext_communities(self) -> list:
        return self._value(ATTR_EXT_COMMUNITIES, "values") or []

    @property
    def large_communities(self) -> list:
        return self._value(ATTR_LARGE_COMMUNITY, "values") or []

    @property
    def mp_reach(self):
        return self.get(ATTR_MP_REACH_NLRI)

    @property
    def mp_unreach(self):
        return self.get(ATTR_MP_UNREACH_NLRI)

    @property
    def treat_as_withdraw(self) -> bool:
        return self.action == 2

    def announced(self) -> list:
        """[((afi, safi), Prefix)] of every parsed announcement."""
        out = [((AFI_IPV4, SAFI_UNICAST), p) for p in self.nlri]
        mp = self.mp_reach
        if mp is not None:
            out += [(mp.family, p) for p in mp.nlri]
        return out

    def withdrawals(self) -> list:
        """[((afi, safi), Prefix)] of every parsed withdrawal."""
        out = [((AFI_IPV4, SAFI_UNICAST), p) for p in self.withdrawn]
        mp = self.mp_unreach
        if mp is not None:
            out += [(mp.family, p) for p in mp.nlri]
        return out

    @property
    def eor_family(self):
        """(afi, safi) when this is an End-of-RIB marker (RFC 4724 §2),
        else None."""
        if self.withdrawn or self.nlri:
            return None
        if not self.attributes:
            return (AFI_IPV4, SAFI_UNICAST)
        if len(self.attributes) == 1:
            a = self.attributes[0]
            if isinstance(a, MpUnreach) and not a.nlri and not a.raw:
                return a.family
        return None

    @property
    def is_eor(self) -> bool:
        return self.eor_family is not None


class Notification(Message, tag="notification"):
    """RFC 4271 §4.5."""

    mtype: ClassVar[int] = MSG_NOTIFICATION
    code: int
    subcode: int = 0
    data: bytes = b""

    @property
    def error_name(self) -> str:
        return ERROR_NAMES.get(self.code, "error code %d" % self.code)

    @property
    def shutdown_message(self):
        """The Shutdown Communication of a Cease / Administrative Shutdown
        or Administrative Reset (RFC 9003 §2), or None when there is none or
        it is malformed."""
        if self.code != ERR_CEASE or self.subcode not in (CEASE_ADMIN_SHUTDOWN, CEASE_ADMIN_RESET):
            return None
        return parse_shutdown_data(self.data)

    @classmethod
    def shutdown(cls, text: str, subcode: int = CEASE_ADMIN_SHUTDOWN) -> "Notification":
        """A Cease NOTIFICATION carrying ``text`` (RFC 9003 §2)."""
        if subcode not in (CEASE_ADMIN_SHUTDOWN, CEASE_ADMIN_RESET):
            raise ValueError("a Shutdown Communication rides on Cease subcode 2 or 4 only")
        return cls(ERR_CEASE, subcode, build_shutdown_data(text))


class RouteRefresh(Message, tag="route-refresh"):
    """RFC 2918 §3; ``subtype`` per RFC 7313 §3.2 (0 normal, 1 BoRR, 2 EoRR)."""

    mtype: ClassVar[int] = MSG_ROUTE_REFRESH
    afi: int
    safi: int
    subtype: int = 0


AnyMessage = Union[Open, Update, Notification, Keepalive, RouteRefresh]


# ---------------------------------------------------------------- shutdown communication

# RFC 9003 §2 raised the limit from RFC 8203's 128 octets to 255.
MAX_SHUTDOWN_LEN = 255


def build_shutdown_data(text: str) -> bytes:
    """NOTIFICATION data for a Shutdown Communication: one octet of length,
    then the UTF-8 text (RFC 9003 §2).  Empty text gives a zero length."""
    raw = text.encode("utf-8")
    if len(raw) > MAX_SHUTDOWN_LEN:
        raise ValueError("shutdown communication of %d octets; RFC 9003 allows %d" % (len(raw), MAX_SHUTDOWN_LEN))
    return bytes((len(raw),)) + raw


def parse_shutdown_data(data: bytes):
    """The text of a Shutdown Communication, or None when absent (no data,
    or length zero) or invalid: a length past the end of the data or bytes
    that are not UTF-8 (RFC 9003 §4: such a message is logged, never fatal).
    Octets after the communication are ignored."""
    if not data:
        return None
    n = data[0]
    if n == 0 or 1 + n > len(data):
        return None
    try:
        return bytes(data[1 : 1 + n]).decode("utf-8")
    except UnicodeDecodeError:
        return None


# ---------------------------------------------------------------- UPDATE


def _mp_positions(body):
    """{type: (index, flags)} of the first occurrence of each attribute in
    the original UPDATE body, to put MP_* back where they were.  Tolerates
    bodies the codec cut short (it stops at the first overrun)."""
    n = len(body)
    out = {}
    if n < 4:
        return out
    wlen = (body[0] << 8) | body[1]
    a0 = 4 + wlen
    if a0 > n:
        return out
    a1 = min(a0 + ((body[2 + wlen] << 8) | body[3 + wlen]), n)
    pos = a0
    idx = 0
    while pos + 3 <= a1:
        flags, t = body[pos], body[pos + 1]
        if flags & FLAG_EXTENDED_LENGTH:
            if pos + 4 > a1:
                break
            pos += 4 + ((body[pos + 2] << 8) | body[pos + 3])
        else:
            pos += 3 + body[pos + 2]
        if t not in out:
            out[t] = (idx, flags)
        idx += 1
    return out


def decode_update(body: bytes, ctx=DEFAULT_CONTEXT, *, impl=None, strict: bool = False, lenient: bool = False) -> Update:
    """The full view of one UPDATE body.

    ``impl.parse_update`` (default: fastbgp.wire.codec) validates and applies
    RFC 7606; its BGPError propagates.  Attribute order, flags and MP_*
    placement follow the wire, so for canonical input (4-octet session, no
    attribute the codec had to drop) ``encode_update`` gives the same bytes.
    """
    impl = _impl(impl)
    # ``lenient`` (inspection of captures, never a session): see parse_update.
    parsed = impl.parse_update(body, ctx, strict, lenient)
    rx = ctx.addpath_rx
    v4_ap = (AFI_IPV4, SAFI_UNICAST) in rx
    attrs = [_decode_attr(f, t, v) for f, t, v in _as4.split_attrs(parsed.attrs)]

    mp = []
    if parsed.mp_reach is not None or parsed.mp_unreach is not None:
        where = _mp_positions(body)
        last = 1 << 30  # after everything on the wire
        if parsed.mp_reach is not None:
            afi, safi, nh, packed = parsed.mp_reach
            pos, flags = where.get(ATTR_MP_REACH_NLRI, (last, WELL_KNOWN_FLAGS[ATTR_MP_REACH_NLRI]))
            mp.append((pos, MpReach._build(afi, safi, nh, packed, flags, rx, impl)))
        if parsed.mp_unreach is not None:
            afi, safi, packed = parsed.mp_unreach
            pos, flags = where.get(ATTR_MP_UNREACH_NLRI, (last, WELL_KNOWN_FLAGS[ATTR_MP_UNREACH_NLRI]))
            mp.append((pos, MpUnreach._build(afi, safi, packed, flags, rx, impl)))
        mp.sort(key=lambda x: x[0])
        # The canonical block keeps the wire order of what it keeps, so
        # each MP_* goes in front of the first kept attribute that followed
        # it on the wire.
        merged = []
        for a in attrs:
            apos = where.get(a.type_code, (last,))[0]
            while mp and mp[0][0] < apos:
                merged.append(mp.pop(0)[1])
            merged.append(a)
        merged.extend(x[1] for x in mp)
        attrs = merged

    return Update(
        withdrawn=_unpack(parsed.withdrawn, AFI_IPV4, v4_ap, impl),
        attributes=attrs,
        nlri=_unpack(parsed.nlri, AFI_IPV4, v4_ap, impl),
        action=parsed.action,
        errors=[str(e) for e in parsed.errors],
    )


def encode_update(update: Update, ctx=DEFAULT_CONTEXT, *, impl=None) -> bytes:
    """One UPDATE body (no header) for a session with context ``ctx``.

    Prefix path ids are written where ``ctx.addpath_tx`` has the family.
    With ``ctx.as4`` false the 4-octet AS numbers are turned into AS_TRANS
    plus AS4_PATH/AS4_AGGREGATOR (RFC 6793 §4.2.2).  ValueError if the
    message would exceed ``ctx.max_message_len``.
    """
    impl = _impl(impl)
    tx = ctx.addpath_tx
    v4_ap = (AFI_IPV4, SAFI_UNICAST) in tx
    withdrawn = _pack(update.withdrawn, AFI_IPV4, v4_ap, impl)
    attrs = b"".join(_encode_attr(a, True, tx, impl) for a in update.attributes)
    if not ctx.as4:
        attrs = _as4.to_2octet(attrs)
    nlri = _pack(update.nlri, AFI_IPV4, v4_ap, impl)
    if len(withdrawn) > 0xFFFF or len(attrs) > 0xFFFF:
        raise ValueError("UPDATE fields exceed 65535 octets")
    body = len(withdrawn).to_bytes(2, "big") + withdrawn + len(attrs).to_bytes(2, "big") + attrs + nlri
    if HEADER_LEN + len(body) > ctx.max_message_len:
        # RFC 4271 §4.3 / RFC 8654 §4: never send more than the peer accepts.
        raise ValueError("UPDATE of %d octets exceeds %d" % (HEADER_LEN + len(body), ctx.max_message_len))
    return body


# ---------------------------------------------------------------- OPEN, NOTIFICATION, ROUTE-REFRESH


def decode_open(body: bytes, impl=None) -> Open:
    """The OPEN view; BGPError from the codec or from a malformed capability."""
    p = _impl(impl).parse_open(body)
    return Open(
        version=p.version,
        asn=p.asn,
        hold_time=p.hold_time,
        bgp_id=_ip(p.bgp_id.to_bytes(4, "big")),
        capabilities=_caps.decode_all(p.capabilities),
    )


def encode_open(msg: Open, *, impl=None) -> bytes:
    """OPEN body (no header); all capabilities in one optional parameter,
    RFC 9072 extended lengths only when they do not fit in one octet."""
    bgp_id = int.from_bytes(_ip_bytes(msg.bgp_id, 4), "big")
    if not 0 <= msg.asn <= 0xFFFFFFFF or not 0 <= msg.hold_time <= 0xFFFF:
        raise ValueError("AS or hold time out of range")
    body = _impl(impl).build_open(msg.asn, msg.hold_time, bgp_id, _caps.encode_all(msg.capabilities))[HEADER_LEN:]
    if msg.version != BGP_VERSION:
        body = _u(msg.version, 1, "version") + body[1:]
    return body


def decode_notification(body: bytes, *, impl=None) -> Notification:
    code, subcode, data = _impl(impl).parse_notification(body)
    return Notification(code, subcode, bytes(data))


def encode_notification(msg: Notification) -> bytes:
    return _u(msg.code, 1, "error code") + _u(msg.subcode, 1, "error subcode") + bytes(msg.data)


def decode_route_refresh(body: bytes, *, impl=None) -> RouteRefresh:
    afi, subtype, safi = _impl(impl).parse_route_refresh(body)
    return RouteRefresh(afi, safi, subtype)


def encode_route_refresh(msg: RouteRefresh) -> bytes:
    # RFC 7313 §3.2: AFI, message subtype (was Reserved in RFC 2918), SAFI.
    return _u(msg.afi, 2, "AFI") + _u(msg.subtype, 1, "subtype") + _u(msg.safi, 1, "SAFI")


def decode_message(mtype: int, body: bytes, ctx=DEFAULT_CONTEXT, *, impl=None):
    """The view Struct of one message body of type ``mtype``."""
    if mtype == MSG_UPDATE:
        return decode_update(body, ctx, impl=impl)
    if mtype == MSG_OPEN:
        return decode_open(body, impl=impl)
    if mtype == MSG_NOTIFICATION:
        return decode_notification(body, impl=impl)
    if mtype == MSG_KEEPALIVE:
        if body:
            # RFC 4271 §4.4 / §6.1: a KEEPALIVE is the 19-octet header only.
            raise BGPError(ERR_HEADER, HDR_BAD_LENGTH, (HEADER_LEN + len(body)).to_bytes(2, "big"), "KEEPALIVE with a body")
        return Keepalive()
    if mtype == MSG_ROUTE_REFRESH:
        return decode_route_refresh(body, impl=impl)
    raise BGPError(ERR_HEADER, HDR_BAD_TYPE, bytes((mtype & 0xFF,)), "unknown message type %d" % mtype)


def decode_framed(data: bytes, ctx=DEFAULT_CONTEXT, *, impl=None):
    """The view of one whole message (header included)."""
    impl = _impl(impl)
    length, mtype = impl.parse_header(data)
    if length != len(data):
        raise BGPError(
            ERR_HEADER,
            HDR_BAD_LENGTH,
            (length & 0xFFFF).to_bytes(2, "big"),
            "header says %d octets, got %d" % (length, len(data)),
        )
    return decode_message(mtype, bytes(data[HEADER_LEN:]), ctx, impl=impl)


def encode_message(msg, ctx=DEFAULT_CONTEXT, *, impl=None) -> bytes:
    """One whole message (header included) for any view Struct."""
    impl = _impl(impl)
    if isinstance(msg, Update):
        body = encode_update(msg, ctx, impl=impl)
    elif isinstance(msg, Open):
        body = encode_open(msg, impl=impl)
    elif isinstance(msg, Notification):
        body = encode_notification(msg)
    elif isinstance(msg, Keepalive):
        body = b""
    elif isinstance(msg, RouteRefresh):
        body = encode_route_refresh(msg)
    else:
        raise TypeError("not a message view: %r" % (msg,))
    # RFC 8654 §4: OPEN and KEEPALIVE stay within 4096 octets regardless.
    limit = MAX_MESSAGE_LEN if msg.mtype in (MSG_OPEN, MSG_KEEPALIVE) else ctx.max_message_len
    if HEADER_LEN + len(body) > limit:
        raise ValueError("message of %d octets exceeds %d" % (HEADER_LEN + len(body), limit))
    return impl.frame(msg.mtype, body)
