"""Communities as text: the one parser and formatter of every spelling.

Standard communities (RFC 1997) are written ``"asn:value"`` (two 16-bit
numbers) or by a well-known name; large communities (RFC 8092) are
``"global:local1:local2"`` (three 32-bit numbers); extended communities
(RFC 4360) are shown as route target / route origin or as hex.  Match
patterns (policy ``remove`` lists) write ``*`` for "any" in place of a
number.

The configuration, the routing policy, the API, the CLI and the decoded
message view all go through these functions, so a name the API accepts is
a name every other entry point accepts, and the text a route is shown with
parses back to the same value.
"""

import ipaddress

from fastbgp.wire.constants import (
    COMMUNITY_ACCEPT_OWN,
    COMMUNITY_BLACKHOLE,
    COMMUNITY_GRACEFUL_SHUTDOWN,
    COMMUNITY_LLGR_STALE,
    COMMUNITY_NO_ADVERTISE,
    COMMUNITY_NO_EXPORT,
    COMMUNITY_NO_EXPORT_SUBCONFED,
    COMMUNITY_NO_LLGR,
    COMMUNITY_NO_PEER,
)

__all__ = [
    "WELL_KNOWN",
    "parse_community",
    "parse_community_pattern",
    "format_community",
    "parse_large_community",
    "parse_large_community_pattern",
    "format_large_community",
    "format_ext_community",
    "parse_ext_community",
]

# Names of the well-known communities (IANA registry; RFC 8642 describes
# how a speaker treats them).  Written and shown in lower case.
WELL_KNOWN = {
    "no-export": COMMUNITY_NO_EXPORT,
    "no-advertise": COMMUNITY_NO_ADVERTISE,
    "no-export-subconfed": COMMUNITY_NO_EXPORT_SUBCONFED,
    "no-peer": COMMUNITY_NO_PEER,
    "graceful-shutdown": COMMUNITY_GRACEFUL_SHUTDOWN,
    "accept-own": COMMUNITY_ACCEPT_OWN,
    "llgr-stale": COMMUNITY_LLGR_STALE,
    "no-llgr": COMMUNITY_NO_LLGR,
    "blackhole": COMMUNITY_BLACKHOLE,
}
_NAME_OF = {v: k for k, v in WELL_KNOWN.items()}


def _number(part: str, maximum: int) -> int:
    # Digits only: int() would also take "+1", " 1" or "1_0".
    if not part.isdigit() or int(part) > maximum:
        raise ValueError("%r is not 0..%d" % (part, maximum))
    return int(part)


# ------------------------------------------------------------ RFC 1997


def parse_community(text, numeric: bool = False) -> int:
    """``"asn:value"`` or a well-known name (any case) -> the 32-bit
    community.  ``numeric``: also take the plain 32-bit number ("4259840001",
    "0xfde80001").  ValueError saying what is wrong."""
    s = str(text).strip().lower()
    value = WELL_KNOWN.get(s)
    if value is not None:
        return value
    parts = s.split(":")
    if len(parts) == 2:
        return (_number(parts[0], 0xFFFF) << 16) | _number(parts[1], 0xFFFF)
    if numeric and len(parts) == 1:
        try:
            value = int(s, 0)
        except ValueError:
            value = -1
        if not 0 <= value <= 0xFFFFFFFF:
            raise ValueError("%r is not a 32-bit community" % str(text))
        return value
    raise ValueError("expected 'asn:value' or a well-known name")


def parse_community_pattern(text) -> tuple:
    """Like :func:`parse_community`, but either half may be ``*``:
    (high or None, low or None); an exact value has both halves set."""
    s = str(text).strip().lower()
    if "*" not in s:
        c = parse_community(s)
        return (c >> 16, c & 0xFFFF)
    parts = s.split(":")
    if len(parts) != 2:
        raise ValueError("expected 'asn:value' with '*' for any")
    return tuple(None if p == "*" else _number(p, 0xFFFF) for p in parts)


def format_community(value: int) -> str:
    """The well-known name, else ``"asn:value"``."""
    name = _NAME_OF.get(value)
    if name is not None:
        return name
    return "%d:%d" % (value >> 16, value & 0xFFFF)


# ------------------------------------------------------------ RFC 8092


def parse_large_community(text) -> tuple:
    """``"global:local1:local2"`` -> (global, local1, local2) (RFC 8092 §3)."""
    parts = str(text).strip().split(":")
    if len(parts) != 3:
        raise ValueError("expected 'global:local1:local2'")
    return tuple(_number(p, 0xFFFFFFFF) for p in parts)


def parse_large_community_pattern(text) -> tuple:
    """Like :func:`parse_large_community`, any part may be ``*`` (None)."""
    parts = str(text).strip().split(":")
    if len(parts) != 3:
        raise ValueError("expected 'global:local1:local2' with '*' for any")
    return tuple(None if p == "*" else _number(p, 0xFFFFFFFF) for p in parts)


def format_large_community(value) -> str:
    return "%d:%d:%d" % tuple(value)


# ------------------------------------------------------------ RFC 4360


def format_ext_community(value: int) -> str:
    """Route target and route origin in the usual text form
    (``"target:65000:1"``, ``"origin:192.0.2.1:7"``); anything else as 16
    hex digits."""
    t = (value >> 56) & 0xFF
    sub = (value >> 48) & 0xFF
    name = {2: "target", 3: "origin"}.get(sub)
    if name is not None:
        if t == 0x00:  # two-octet AS specific (RFC 4360 §3.1)
            return "%s:%d:%d" % (name, (value >> 32) & 0xFFFF, value & 0xFFFFFFFF)
        if t == 0x01:  # IPv4 address specific (RFC 4360 §3.2)
            return "%s:%s:%d" % (name, ipaddress.IPv4Address((value >> 16) & 0xFFFFFFFF), value & 0xFFFF)
        if t == 0x02:  # four-octet AS specific (RFC 5668 §2)
            return "%s:%d:%d" % (name, (value >> 16) & 0xFFFFFFFF, value & 0xFFFF)
    return "0x%016x" % value


_EXT_SUBTYPES = {"target": 2, "origin": 3}


def parse_ext_community(text) -> int:
    """An extended community as the 64-bit value of its eight octets, from
    the spellings :func:`format_ext_community` writes: ``"target:A:N"`` /
    ``"origin:A:N"`` (route target / route origin, RFC 4360 §4) with ``A``
    a two-octet AS (type 0x00, ``N`` 32 bits, RFC 4360 §3.1), an IPv4
    address (type 0x01, ``N`` 16 bits, §3.2) or a four-octet AS above 65535
    (type 0x02, ``N`` 16 bits, RFC 5668 §2); or 16 hex digits after
    ``0x`` (any type, as sent).  ValueError otherwise.  (A four-octet AS
    specific value whose AS is below 65536 is shown like a two-octet one;
    only its ``0x`` form parses back to the same type.)"""
    s = str(text).strip().lower()
    if s.startswith("0x"):
        digits = s[2:]
        if len(digits) != 16 or any(c not in "0123456789abcdef" for c in digits):
            raise ValueError("%r is not 0x and 16 hex digits" % str(text))
        return int(digits, 16)
    parts = s.split(":")
    if len(parts) != 3 or parts[0] not in _EXT_SUBTYPES:
        raise ValueError("%r is not target:A:N, origin:A:N or 0x and 16 hex digits" % str(text))
    sub = _EXT_SUBTYPES[parts[0]]
    admin, local = parts[1], parts[2]
    if "." in admin:
        try:
            ip = int(ipaddress.IPv4Address(admin))
        except ValueError:
            raise ValueError("%r: %r is not an IPv4 address" % (str(text), admin)) from None
        return (0x01 << 56) | (sub << 48) | (ip << 16) | _number(local, 0xFFFF)
    asn = _number(admin, 0xFFFFFFFF)
    if asn <= 0xFFFF:
        return (0x00 << 56) | (sub << 48) | (asn << 32) | _number(local, 0xFFFFFFFF)
    return (0x02 << 56) | (sub << 48) | (asn << 16) | _number(local, 0xFFFF)
