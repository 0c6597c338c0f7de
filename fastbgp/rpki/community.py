"""The RFC 8097 BGP Prefix Origin Validation State Extended Community,
which signals a route's RFC 6811 state to iBGP peers: type 0x43
(non-transitive opaque, RFC 7153), sub-type 0x00, five reserved zero
octets, then the state (0 Valid, 1 NotFound, 2 Invalid).

Values are the 64-bit integers ``fastbgp.wire.communities`` uses for
extended communities.  RFC 8097 numbers the states differently from
``fastbgp.rpki.vrp``; the mapping lives here only.
"""

import struct

from fastbgp.rpki.vrp import INVALID, NOT_FOUND, VALID
from fastbgp.wire.as4 import encode_attr
from fastbgp.wire.codec import split_attrs  # compiled when built (as4's otherwise)
from fastbgp.wire.constants import ATTR_EXT_COMMUNITIES

OVS_TYPE = 0x43
OVS_SUBTYPE = 0x00
_TO_WIRE = {VALID: 0, NOT_FOUND: 1, INVALID: 2}  # RFC 8097 §2
_FROM_WIRE = {v: k for k, v in _TO_WIRE.items()}


def ovs_community(state):
    """The extended community (64-bit int) carrying ``state``."""
    return (OVS_TYPE << 56) | (OVS_SUBTYPE << 48) | _TO_WIRE[state]


def ovs_state(value):
    """The state an extended community carries, or None when it is not an
    origin validation state community or holds an undefined value (RFC 8097
    §2: such a community is ignored)."""
    if (value >> 48) & 0xFFFF != (OVS_TYPE << 8) | OVS_SUBTYPE or (value >> 8) & 0xFFFFFFFFFF:
        return None
    return _FROM_WIRE.get(value & 0xFF)


# -- the community in an attribute block -----------------------------------------------------------

_ATTR_EXT = ATTR_EXT_COMMUNITIES  # RFC 4360 §2
_FLAGS_EXT = 0xC0  # optional transitive (the attribute; each community says if it is transitive)
_NON_TRANSITIVE = 0x40  # RFC 4360 §2: the T bit of the type's high octet


def _ext_values(value):
    n = len(value) // 8
    return struct.unpack(">%dQ" % n, value[: n * 8])


def _is_ovs(c):
    return (c >> 48) == (OVS_TYPE << 8) | OVS_SUBTYPE


def received_state(attrs):
    """The state an RFC 8097 community in the attribute block ``attrs``
    carries, or None (none, or an undefined value, RFC 8097 §2).  Several
    such communities disagreeing count as none."""
    for _f, t, v in split_attrs(attrs):
        if t == _ATTR_EXT:
            states = {ovs_state(c) for c in _ext_values(v) if _is_ovs(c)}
            return states.pop() if len(states) == 1 else None
    return None


def with_state(attrs, state):
    """``attrs`` with every RFC 8097 community replaced by one carrying
    ``state`` (the attribute block is otherwise unchanged, type order
    kept)."""
    items = {t: (f, v) for f, t, v in split_attrs(attrs)}
    f, v = items.get(_ATTR_EXT, (_FLAGS_EXT, b""))
    kept = [c for c in _ext_values(v) if not _is_ovs(c)] + [ovs_community(state)]
    items[_ATTR_EXT] = (f, struct.pack(">%dQ" % len(kept), *sorted(kept)))
    return b"".join(encode_attr(items[k][0], k, items[k][1]) for k in sorted(items))


def export_ext(value, external, signal):
    """The EXTENDED_COMMUNITIES value to send, or None for no attribute:
    to an ``external`` (eBGP) peer no non-transitive community (RFC 4360
    §2), hence never the state (RFC 8097 §2); to an internal one the state
    only when it asked for it (``signal``)."""
    vals = _ext_values(value)
    kept = [c for c in vals if not (external and (c >> 56) & _NON_TRANSITIVE) and (signal or not _is_ovs(c))]
    if len(kept) == len(vals) and len(value) % 8 == 0:
        return value
    return struct.pack(">%dQ" % len(kept), *kept) if kept else None
