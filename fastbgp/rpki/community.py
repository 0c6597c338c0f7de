"""The RFC 8097 BGP Prefix Origin Validation State Extended Community,
which signals a route's RFC 6811 state to iBGP peers: type 0x43
(non-transitive opaque, RFC 7153), sub-type 0x00, five reserved zero
octets, then the state (0 Valid, 1 NotFound, 2 Invalid).

Values are the 64-bit integers ``fastbgp.wire.communities`` uses for
extended communities.  RFC 8097 numbers the states differently from
``fastbgp.rpki.vrp``; the mapping lives here only.
"""

from fastbgp.rpki.vrp import INVALID, NOT_FOUND, VALID

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
