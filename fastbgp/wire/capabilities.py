"""BGP capabilities (RFC 5492) as msgspec Structs, and session negotiation.

Each capability Struct knows its capability ``code`` and converts to and
from the wire value: ``decode(code, value) -> Capability`` and
``cap.encode() -> (code, value bytes)``.  The (code, value) pairs are what
``codec.parse_open`` returns and ``codec.build_open`` takes.

Malformed capability values raise ``BGPError(2, 0)`` (OPEN Message Error,
unspecific subcode): RFC 5492 defines no dedicated subcode for a capability
whose value cannot be parsed, and a receiver must not guess at it.

``negotiate()`` combines what we sent with what the peer sent into a
:class:`Negotiated` summary whose ``context()`` is the codec Context the
session runs with.
"""

from __future__ import annotations

from typing import ClassVar, Union

import msgspec

from fastbgp.wire.types import Context
from fastbgp.wire.constants import (
    ADDPATH_RECEIVE,
    ADDPATH_SEND,
    AS_TRANS,
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
    IPV4_UNICAST,
    ROLE_CUSTOMER,
    ROLE_PEER,
    ROLE_PROVIDER,
    ROLE_RS,
    ROLE_RS_CLIENT,
)
from fastbgp.wire.errors import ERR_OPEN, OPEN_BAD_PEER_AS, OPEN_ROLE_MISMATCH, BGPError

__all__ = [
    "Capability",
    "AnyCapability",
    "Multiprotocol",
    "RouteRefresh",
    "EnhancedRouteRefresh",
    "FourOctetAS",
    "GracefulRestart",
    "AddPath",
    "ExtendedMessage",
    "ExtendedNextHop",
    "BGPRole",
    "FQDN",
    "UnknownCapability",
    "decode",
    "decode_all",
    "encode_all",
    "Negotiated",
    "negotiate",
    "ROLE_PAIRS",
]


def _malformed(code, reason):
    # RFC 5492 §3 gives no subcode for an unparseable capability value:
    # OPEN Message Error with the unspecific subcode 0.
    return BGPError(ERR_OPEN, 0, b"", "capability %d: %s" % (code, reason))


def _u(value, width, what):
    """``value`` as ``width`` big-endian octets; ValueError when it does not fit."""
    try:
        return int(value).to_bytes(width, "big")
    except OverflowError:
        raise ValueError("%s %r does not fit in %d octet(s)" % (what, value, width)) from None


class Capability(msgspec.Struct, tag_field="kind", forbid_unknown_fields=True):
    """Base of every capability; ``kind`` tags the JSON form."""

    code: ClassVar[int] = -1

    def pack(self) -> bytes:
        """The capability value octets."""
        return b""

    def encode(self) -> tuple:
        """(capability code, value bytes) as carried in the OPEN."""
        v = self.pack()
        if len(v) > 255:
            # RFC 5492 §4: the capability length is one octet.
            raise ValueError("capability %d value is %d octets, more than 255" % (self.code, len(v)))
        return (self.code, v)


class Multiprotocol(Capability, tag="multiprotocol"):
    """RFC 4760 §8: one (AFI, SAFI) the sender can exchange."""

    code: ClassVar[int] = CAP_MULTIPROTOCOL
    afi: int
    safi: int

    def pack(self):
        # AFI (2 octets), Reserved (1 octet, sent as 0), SAFI (1 octet).
        return _u(self.afi, 2, "AFI") + b"\x00" + _u(self.safi, 1, "SAFI")

    @classmethod
    def _decode(cls, v):
        if len(v) != 4:
            raise _malformed(CAP_MULTIPROTOCOL, "length %d, expected 4" % len(v))
        # RFC 4760 §8: the reserved octet is ignored on receipt.
        return cls((v[0] << 8) | v[1], v[3])


class RouteRefresh(Capability, tag="route-refresh"):
    """RFC 2918 §2 route refresh; ``legacy`` marks the pre-standard code 128
    that some implementations still send alongside (or instead of) code 2."""

    legacy: bool = False

    @property
    def code(self):  # type: ignore[override]
        return CAP_ROUTE_REFRESH_CISCO if self.legacy else CAP_ROUTE_REFRESH


class EnhancedRouteRefresh(Capability, tag="enhanced-route-refresh"):
    """RFC 7313 §3.1."""

    code: ClassVar[int] = CAP_ENHANCED_ROUTE_REFRESH


class ExtendedMessage(Capability, tag="extended-message"):
    """RFC 8654 §3."""

    code: ClassVar[int] = CAP_EXTENDED_MESSAGE


class FourOctetAS(Capability, tag="four-octet-as"):
    """RFC 6793 §3: the sender's real (possibly 4-octet) AS number."""

    code: ClassVar[int] = CAP_FOUR_OCTET_AS
    asn: int

    def pack(self):
        return _u(self.asn, 4, "ASN")

    @classmethod
    def _decode(cls, v):
        if len(v) != 4:
            raise _malformed(CAP_FOUR_OCTET_AS, "length %d, expected 4" % len(v))
        return cls(int.from_bytes(v, "big"))


class GracefulRestart(Capability, tag="graceful-restart"):
    """RFC 4724 §3 graceful restart.

    ``restart_flags`` is the 4-bit flags field: 0x8 = Restart State (R),
    0x4 = Graceful Notification (N, RFC 8538 §2).  ``families`` holds
    (afi, safi, forwarding flags) with 0x80 = Forwarding State (F).
    """

    code: ClassVar[int] = CAP_GRACEFUL_RESTART
    restart_flags: int = 0
    restart_time: int = 0
    families: list[tuple[int, int, int]] = []

    RESTART_STATE: ClassVar[int] = 0x8
    NOTIFICATION: ClassVar[int] = 0x4
    FORWARDING_STATE: ClassVar[int] = 0x80

    @property
    def restart_state(self) -> bool:
        return bool(self.restart_flags & self.RESTART_STATE)

    @property
    def notification(self) -> bool:
        return bool(self.restart_flags & self.NOTIFICATION)

    def pack(self):
        if not 0 <= self.restart_flags <= 0xF:
            raise ValueError("restart flags %r do not fit in 4 bits" % self.restart_flags)
        if not 0 <= self.restart_time <= 0xFFF:
            raise ValueError("restart time %r does not fit in 12 bits" % self.restart_time)
        out = bytearray(_u((self.restart_flags << 12) | self.restart_time, 2, "restart flags/time"))
        for afi, safi, fflags in self.families:
            out += _u(afi, 2, "AFI") + _u(safi, 1, "SAFI") + _u(fflags, 1, "forwarding flags")
        return bytes(out)

    @classmethod
    def _decode(cls, v):
        # RFC 4724 §3: 2 octets of flags/time, then 4 octets per family.
        if len(v) < 2 or (len(v) - 2) % 4:
            raise _malformed(CAP_GRACEFUL_RESTART, "length %d is not 2 + 4n" % len(v))
        head = (v[0] << 8) | v[1]
        fams = [((v[i] << 8) | v[i + 1], v[i + 2], v[i + 3]) for i in range(2, len(v), 4)]
        return cls(head >> 12, head & 0xFFF, fams)


class AddPath(Capability, tag="add-path"):
    """RFC 7911 §4: (afi, safi, send/receive) with 1 = receive, 2 = send,
    3 = both."""

    code: ClassVar[int] = CAP_ADD_PATH
    families: list[tuple[int, int, int]] = []

    def pack(self):
        out = bytearray()
        for afi, safi, sr in self.families:
            out += _u(afi, 2, "AFI") + _u(safi, 1, "SAFI") + _u(sr, 1, "send/receive")
        return bytes(out)

    @classmethod
    def _decode(cls, v):
        if not v or len(v) % 4:
            raise _malformed(CAP_ADD_PATH, "length %d is not a positive multiple of 4" % len(v))
        fams = [((v[i] << 8) | v[i + 1], v[i + 2], v[i + 3]) for i in range(0, len(v), 4)]
        if any(sr not in (1, 2, 3) for _a, _s, sr in fams):
            # RFC 7911 §4: any other Send/Receive value means the capability
            # SHOULD be treated as not understood and ignored -- not an error.
            return UnknownCapability(CAP_ADD_PATH, bytes(v))
        return cls(fams)


class ExtendedNextHop(Capability, tag="extended-next-hop"):
    """RFC 8950 §3: (NLRI AFI, NLRI SAFI, next hop AFI) triples the sender
    can receive."""

    code: ClassVar[int] = CAP_EXTENDED_NEXT_HOP
    entries: list[tuple[int, int, int]] = []

    def pack(self):
        out = bytearray()
        for afi, safi, nh_afi in self.entries:
            # RFC 8950 §3: the NLRI SAFI is 2 octets here, unlike elsewhere.
            out += _u(afi, 2, "AFI") + _u(safi, 2, "SAFI") + _u(nh_afi, 2, "next hop AFI")
        return bytes(out)

    @classmethod
    def _decode(cls, v):
        if not v or len(v) % 6:
            raise _malformed(CAP_EXTENDED_NEXT_HOP, "length %d is not a positive multiple of 6" % len(v))
        return cls(
            [
                ((v[i] << 8) | v[i + 1], (v[i + 2] << 8) | v[i + 3], (v[i + 4] << 8) | v[i + 5])
                for i in range(0, len(v), 6)
            ]
        )


class BGPRole(Capability, tag="role"):
    """RFC 9234 §4.1: 0 provider, 1 rs, 2 rs-client, 3 customer, 4 peer."""

    code: ClassVar[int] = CAP_BGP_ROLE
    role: int

    def pack(self):
        return _u(self.role, 1, "role")

    @classmethod
    def _decode(cls, v):
        if len(v) != 1:
            raise _malformed(CAP_BGP_ROLE, "length %d, expected 1" % len(v))
        return cls(v[0])


class FQDN(Capability, tag="fqdn"):
    """draft-walton-bgp-hostname-capability: host name and domain name,
    each one octet of length then the text."""

    code: ClassVar[int] = CAP_FQDN
    hostname: str
    domain: str = ""

    def pack(self):
        h = self.hostname.encode("utf-8")
        d = self.domain.encode("utf-8")
        if len(h) > 255 or len(d) > 255:
            raise ValueError("host or domain name longer than 255 octets")
        return bytes((len(h),)) + h + bytes((len(d),)) + d

    @classmethod
    def _decode(cls, v):
        n = len(v)
        if n < 2:
            raise _malformed(CAP_FQDN, "length %d" % n)
        hl = v[0]
        if 1 + hl + 1 > n:
            raise _malformed(CAP_FQDN, "host name overruns the capability")
        dl = v[1 + hl]
        if 2 + hl + dl != n:
            raise _malformed(CAP_FQDN, "domain name length does not match the capability")
        try:
            return cls(bytes(v[1 : 1 + hl]).decode("utf-8"), bytes(v[2 + hl :]).decode("utf-8"))
        except UnicodeDecodeError:
            raise _malformed(CAP_FQDN, "name is not UTF-8") from None


class UnknownCapability(Capability, tag="unknown"):
    """Any capability we do not interpret, kept verbatim (RFC 5492 §3: an
    unrecognised capability is ignored, not an error)."""

    code: int  # type: ignore[misc]
    value: bytes = b""

    def pack(self):
        return bytes(self.value)

    def encode(self):
        if not 0 <= self.code <= 255:
            raise ValueError("capability code %r out of range" % self.code)
        return Capability.encode(self)


# The union used wherever capabilities are decoded from JSON.
AnyCapability = Union[
    Multiprotocol,
    RouteRefresh,
    EnhancedRouteRefresh,
    FourOctetAS,
    GracefulRestart,
    AddPath,
    ExtendedMessage,
    ExtendedNextHop,
    BGPRole,
    FQDN,
    UnknownCapability,
]


def _empty(cls, code):
    def dec(v):
        if len(v):
            # RFC 2918 §2, RFC 7313 §3.1, RFC 8654 §3: length is zero.
            raise _malformed(code, "length %d, expected 0" % len(v))
        return cls()

    return dec


_DECODERS = {
    CAP_MULTIPROTOCOL: Multiprotocol._decode,
    CAP_ROUTE_REFRESH: _empty(RouteRefresh, CAP_ROUTE_REFRESH),
    CAP_ROUTE_REFRESH_CISCO: _empty(lambda: RouteRefresh(legacy=True), CAP_ROUTE_REFRESH_CISCO),
    CAP_ENHANCED_ROUTE_REFRESH: _empty(EnhancedRouteRefresh, CAP_ENHANCED_ROUTE_REFRESH),
    CAP_EXTENDED_MESSAGE: _empty(ExtendedMessage, CAP_EXTENDED_MESSAGE),
    CAP_FOUR_OCTET_AS: FourOctetAS._decode,
    CAP_GRACEFUL_RESTART: GracefulRestart._decode,
    CAP_ADD_PATH: AddPath._decode,
    CAP_EXTENDED_NEXT_HOP: ExtendedNextHop._decode,
    CAP_BGP_ROLE: BGPRole._decode,
    CAP_FQDN: FQDN._decode,
}


def decode(code: int, value: bytes) -> Capability:
    """The Struct for one (code, value) pair; BGPError(2, 0) if malformed."""
    dec = _DECODERS.get(code)
    if dec is None:
        return UnknownCapability(code, bytes(value))
    return dec(bytes(value))


def decode_all(pairs) -> list:
    """[Capability] of ((code, value), ...) as returned by codec.parse_open."""
    return [decode(c, v) for c, v in pairs]


def encode_all(caps) -> list:
    """[(code, value)] ready for codec.build_open."""
    return [c.encode() for c in caps]


# ---------------------------------------------------------------- negotiation

# RFC 9234 §4.2: the (local, remote) role pairs that may form a session.
ROLE_PAIRS = frozenset(
    {
        (ROLE_PROVIDER, ROLE_CUSTOMER),
        (ROLE_CUSTOMER, ROLE_PROVIDER),
        (ROLE_RS, ROLE_RS_CLIENT),
        (ROLE_RS_CLIENT, ROLE_RS),
        (ROLE_PEER, ROLE_PEER),
    }
)


class Negotiated(msgspec.Struct, forbid_unknown_fields=True):
    """What both sides agreed on for one session (see ``negotiate``)."""

    families: frozenset[tuple[int, int]]
    as4: bool
    local_asn: int
    peer_asn: int
    ebgp: bool
    addpath_rx: frozenset[tuple[int, int]] = frozenset()
    addpath_tx: frozenset[tuple[int, int]] = frozenset()
    extended_message: bool = False
    route_refresh: bool = False
    enhanced_route_refresh: bool = False
    graceful_restart: GracefulRestart | None = None  # the peer's, if it sent one
    # RFC 8950: families where we may send IPv6 next hops (the peer said it
    # can receive them) and where we accept them (we said so).
    extended_nexthop_tx: frozenset[tuple[int, int, int]] = frozenset()
    extended_nexthop_rx: frozenset[tuple[int, int, int]] = frozenset()
    local_role: int | None = None
    peer_role: int | None = None
    peer_fqdn: FQDN | None = None

    def context(self) -> Context:
        """The codec Context for UPDATEs on this session."""
        return Context(
            as4=self.as4,
            addpath_rx=frozenset(self.addpath_rx),
            addpath_tx=frozenset(self.addpath_tx),
            extended_message=self.extended_message,
            ebgp=self.ebgp,
        )


def _first(caps, cls):
    for c in caps:
        if isinstance(c, cls):
            return c
    return None


def _mp_families(caps):
    fams = {(c.afi, c.safi) for c in caps if isinstance(c, Multiprotocol)}
    # RFC 4760 §8: a speaker that sends no Multiprotocol capability is
    # taken to support IPv4 unicast only.
    return fams or {IPV4_UNICAST}


def _addpath_modes(caps):
    modes = {}
    for c in caps:
        if isinstance(c, AddPath):
            for afi, safi, sr in c.families:
                modes[(afi, safi)] = sr
    return modes


def negotiate(local_caps, remote_caps, local_asn, remote_open_asn, ebgp, *, strict_role=False) -> Negotiated:
    """Combine our capabilities with the peer's.

    ``local_caps``/``remote_caps`` are Capability Structs (what we sent, what
    the peer's OPEN carried); ``remote_open_asn`` is the peer's 2-octet My
    Autonomous System field.  Raises BGPError for Bad Peer AS (2/2) and Role
    Mismatch (2/11).  ``strict_role`` is RFC 9234 §4.2 strict mode: a peer
    that sends no role when we have one is a mismatch too.
    """
    local_caps = list(local_caps)
    remote_caps = list(remote_caps)

    # RFC 6793 §4.1: a 4-octet speaker puts its real AS in the capability
    # and its 2-octet mapping (itself or AS_TRANS) in My Autonomous System.
    remote_as4 = _first(remote_caps, FourOctetAS)
    if remote_as4 is not None:
        peer_asn = remote_as4.asn
        if remote_open_asn != AS_TRANS and remote_open_asn != peer_asn:
            # The two fields name different ASes: the OPEN contradicts itself.
            raise BGPError(
                ERR_OPEN,
                OPEN_BAD_PEER_AS,
                remote_open_asn.to_bytes(2, "big"),
                "My Autonomous System %d differs from the 4-octet AS capability %d" % (remote_open_asn, peer_asn),
            )
    else:
        peer_asn = remote_open_asn
    if peer_asn == 0:
        # RFC 7607 §2: AS 0 as the peer AS is Bad Peer AS.
        raise BGPError(ERR_OPEN, OPEN_BAD_PEER_AS, b"\x00\x00", "peer AS is 0")
    as4 = remote_as4 is not None and _first(local_caps, FourOctetAS) is not None

    # RFC 9234 §4.2: role checks.
    remote_roles = {c.role for c in remote_caps if isinstance(c, BGPRole)}
    if len(remote_roles) > 1:
        raise BGPError(ERR_OPEN, OPEN_ROLE_MISMATCH, b"", "peer sent conflicting BGP roles %s" % sorted(remote_roles))
    peer_role = next(iter(remote_roles)) if remote_roles else None
    local_role_cap = _first(local_caps, BGPRole)
    local_role = local_role_cap.role if local_role_cap is not None else None
    if local_role is not None:
        if peer_role is None:
            if strict_role:
                raise BGPError(ERR_OPEN, OPEN_ROLE_MISMATCH, b"", "peer sent no BGP role (strict mode)")
        elif (local_role, peer_role) not in ROLE_PAIRS:
            raise BGPError(
                ERR_OPEN,
                OPEN_ROLE_MISMATCH,
                b"",
                "local role %d is incompatible with peer role %d" % (local_role, peer_role),
            )

    families = frozenset(_mp_families(local_caps) & _mp_families(remote_caps))

    # RFC 7911 §4: we receive path ids where we offered to receive and the
    # peer offered to send, and send them where the reverse holds.
    lmodes = _addpath_modes(local_caps)
    rmodes = _addpath_modes(remote_caps)
    rx = frozenset(f for f in families if lmodes.get(f, 0) & ADDPATH_RECEIVE and rmodes.get(f, 0) & ADDPATH_SEND)
    tx = frozenset(f for f in families if lmodes.get(f, 0) & ADDPATH_SEND and rmodes.get(f, 0) & ADDPATH_RECEIVE)

    def both(cls):
        return _first(local_caps, cls) is not None and _first(remote_caps, cls) is not None

    def entries(caps):
        return frozenset(e for c in caps if isinstance(c, ExtendedNextHop) for e in c.entries)

    return Negotiated(
        families=families,
        as4=as4,
        local_asn=local_asn,
        peer_asn=peer_asn,
        ebgp=bool(ebgp),
        addpath_rx=rx,
        addpath_tx=tx,
        # RFC 8654 §3: larger messages only when both sides advertised it.
        extended_message=both(ExtendedMessage),
        route_refresh=both(RouteRefresh),
        enhanced_route_refresh=both(EnhancedRouteRefresh),
        graceful_restart=_first(remote_caps, GracefulRestart),
        extended_nexthop_tx=entries(remote_caps),
        extended_nexthop_rx=entries(local_caps),
        local_role=local_role,
        peer_role=peer_role,
        peer_fqdn=_first(remote_caps, FQDN),
    )
