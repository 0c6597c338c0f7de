"""The BMP encoder: every message this client sends (RFC 7854, RFC 8671 Adj-RIB-Out,
RFC 9069 Loc-RIB), as bytes ready for the station's socket.

One function per message type; the per-peer header (RFC 7854 §4.2) is built
once per peer and state (:func:`peer_header`), and the route-monitoring
encoder only prepends it and the common header to BGP messages, so a
pre-policy UPDATE goes out exactly as it was received.

Bad arguments (an address that is not one, a counter out of range) raise
ValueError; nothing here reads the network.
"""

from __future__ import annotations

import ipaddress
import struct

from fastbgp.wire import codec

__all__ = [
    "VERSION",
    "ROUTE_MONITORING",
    "STATISTICS_REPORT",
    "PEER_DOWN",
    "PEER_UP",
    "INITIATION",
    "TERMINATION",
    "PEER_GLOBAL",
    "PEER_LOC_RIB",
    "FLAG_V",
    "FLAG_L",
    "FLAG_A",
    "FLAG_O",
    "FLAG_F",
    "DOWN_LOCAL_NOTIFICATION",
    "DOWN_LOCAL_NO_NOTIFICATION",
    "DOWN_REMOTE_NOTIFICATION",
    "DOWN_REMOTE_NO_NOTIFICATION",
    "DOWN_DECONFIGURED",
    "DOWN_LOCAL_TLV",
    "STAT_REJECTED",
    "STAT_DUPLICATE_PREFIX",
    "STAT_ADJ_RIB_IN",
    "STAT_LOC_RIB",
    "TERM_ADMIN_CLOSE",
    "TERM_UNSPECIFIED",
    "TERM_OUT_OF_RESOURCES",
    "peer_header",
    "loc_rib_header",
    "route_monitoring",
    "statistics_report",
    "peer_up",
    "peer_down",
    "initiation",
    "termination",
    "bgp_message",
    "stamp",
    "message",
    "MAX_MESSAGE",
]

VERSION = 3  # RFC 7854 §4.1

# RFC 7854 §4.1 message types.
ROUTE_MONITORING = 0
STATISTICS_REPORT = 1
PEER_DOWN = 2
PEER_UP = 3
INITIATION = 4
TERMINATION = 5

# RFC 7854 §4.2 peer types; RFC 9069 §4.1 adds the Loc-RIB instance.
PEER_GLOBAL = 0
PEER_LOC_RIB = 3

# RFC 7854 §4.2 peer flags: V (IPv6 peer address), L (post-policy),
# A (2-octet AS_PATH); RFC 8671 §4: O (Adj-RIB-Out).
FLAG_V = 0x80
FLAG_L = 0x40
FLAG_A = 0x20
FLAG_O = 0x10
# RFC 9069 §4.2: Loc-RIB peer flag F (the Loc-RIB is filtered).
FLAG_F = 0x80

# RFC 7854 §4.9 Peer Down reasons; RFC 9069 §5.4 adds 6.
DOWN_LOCAL_NOTIFICATION = 1
DOWN_LOCAL_NO_NOTIFICATION = 2
DOWN_REMOTE_NOTIFICATION = 3
DOWN_REMOTE_NO_NOTIFICATION = 4
DOWN_DECONFIGURED = 5
DOWN_LOCAL_TLV = 6

# RFC 7854 §4.8 statistics types.
STAT_REJECTED = 0  # 32-bit counter: prefixes rejected by inbound policy
STAT_DUPLICATE_PREFIX = 1  # 32-bit counter: duplicate prefix advertisements
STAT_ADJ_RIB_IN = 7  # 64-bit gauge: routes in the Adj-RIBs-In
STAT_LOC_RIB = 8  # 64-bit gauge: routes in the Loc-RIB
_GAUGES = frozenset((STAT_ADJ_RIB_IN, STAT_LOC_RIB))

# RFC 7854 §4.4 Information TLV types, §4.5 Termination TLV types/reasons.
_INFO_STRING = 0
_INFO_SYS_DESCR = 1
_INFO_SYS_NAME = 2
_TERM_STRING = 0
_TERM_REASON = 1
TERM_ADMIN_CLOSE = 0
TERM_UNSPECIFIED = 1
TERM_OUT_OF_RESOURCES = 2
# RFC 9069 §5.3: the VRF/Table Name TLV of a Loc-RIB Peer Up.
_PEERUP_TABLE_NAME = 3

_COMMON = struct.Struct(">BIB")  # RFC 7854 §4.1: version, length, type
_PEER = struct.Struct(">BB8s16sI4sII")  # RFC 7854 §4.2: 42 octets
_TLV = struct.Struct(">HH")
MAX_MESSAGE = 0xFFFFFFFF


def _common(mtype: int, body_len: int) -> bytes:
    n = _COMMON.size + body_len
    if n > MAX_MESSAGE:
        raise ValueError("BMP message too long")
    return _COMMON.pack(VERSION, n, mtype)


def _address16(addr) -> tuple:
    """(16-octet field, is IPv6) of an address: IPv4 right-aligned in
    zeros (RFC 7854 §4.2)."""
    ip = ipaddress.ip_address(addr)
    if ip.version == 4:
        return bytes(12) + ip.packed, False
    return ip.packed, True


def _tlv(t: int, value: bytes) -> bytes:
    if len(value) > 0xFFFF:
        raise ValueError("TLV value too long")
    return _TLV.pack(t, len(value)) + value


def peer_header(peer_address, peer_as: int, peer_bgp_id: int, *, post_policy: bool = False,
                as2: bool = False, adj_rib_out: bool = False, timestamp: float = 0.0) -> bytearray:
    """The 42-octet per-peer header of a global-instance peer (RFC 7854
    §4.2).  Returned as a bytearray so a caller can restamp the time
    (:func:`stamp`); the flags follow the arguments."""
    addr, v6 = _address16(peer_address)
    flags = (FLAG_V if v6 else 0) | (FLAG_L if post_policy else 0) | (FLAG_A if as2 else 0) \
        | (FLAG_O if adj_rib_out else 0)
    sec = int(timestamp)
    return bytearray(_PEER.pack(PEER_GLOBAL, flags, bytes(8), addr, peer_as, peer_bgp_id.to_bytes(4, "big"),
                                sec, int((timestamp - sec) * 1e6)))


def loc_rib_header(local_as: int, router_id: int, *, filtered: bool = False, timestamp: float = 0.0) -> bytearray:
    """The per-peer header of the Loc-RIB instance (RFC 9069 §4.1): peer
    type 3, distinguisher 0 (the default table), address zero, our AS and
    BGP identifier."""
    sec = int(timestamp)
    return bytearray(_PEER.pack(PEER_LOC_RIB, FLAG_F if filtered else 0, bytes(8), bytes(16), local_as,
                                router_id.to_bytes(4, "big"), sec, int((timestamp - sec) * 1e6)))


def stamp(header: bytearray, timestamp: float) -> bytearray:
    """Set the timestamp of a per-peer header (RFC 7854 §4.2, the last 8
    octets) in place; returns it."""
    sec = int(timestamp)
    struct.pack_into(">II", header, 34, sec, int((timestamp - sec) * 1e6))
    return header


def bgp_message(mtype: int, body: bytes) -> bytes:
    """A BGP message (marker, length, type) around ``body``, as the
    route-monitoring and peer-up PDUs carry it (RFC 7854 §4.6, §4.10)."""
    return codec.frame(mtype, body)


def message(mtype: int, header, body: bytes) -> bytes:
    """A message of type ``mtype``: common header, per-peer header, body."""
    return _common(mtype, len(header) + len(body)) + bytes(header) + body


def route_monitoring(header, update: bytes) -> bytes:
    """Route Monitoring (RFC 7854 §4.6): per-peer header + one whole BGP
    UPDATE message (marker included)."""
    return _common(ROUTE_MONITORING, len(header) + len(update)) + bytes(header) + update


def statistics_report(header, stats) -> bytes:
    """Statistics Report (RFC 7854 §4.8) of ``stats``: (type, value) pairs;
    the Adj-RIB-In and Loc-RIB route counts are 64-bit gauges, the other
    types 32-bit counters."""
    tlvs = []
    for t, v in stats:
        if t in _GAUGES:
            if not 0 <= v <= 0xFFFFFFFFFFFFFFFF:
                raise ValueError("statistic %d out of range" % t)
            tlvs.append(_tlv(t, v.to_bytes(8, "big")))
        else:
            tlvs.append(_tlv(t, (v & 0xFFFFFFFF).to_bytes(4, "big")))  # counters wrap (§4.8)
    body = len(tlvs).to_bytes(4, "big") + b"".join(tlvs)
    return _common(STATISTICS_REPORT, len(header) + len(body)) + bytes(header) + body


def peer_up(header, local_address, local_port: int, remote_port: int, sent_open: bytes, received_open: bytes,
            table_name: str = "") -> bytes:
    """Peer Up Notification (RFC 7854 §4.10): local address and ports, then
    the OPEN messages as sent and as received (whole BGP messages); a
    Loc-RIB Peer Up carries the VRF/Table Name TLV (RFC 9069 §5.3)."""
    addr = _address16(local_address)[0] if local_address else bytes(16)
    body = addr + struct.pack(">HH", local_port, remote_port) + sent_open + received_open
    if table_name:
        body += _tlv(_PEERUP_TABLE_NAME, table_name.encode()[:255])
    return _common(PEER_UP, len(header) + len(body)) + bytes(header) + body


def peer_down(header, reason: int, data: bytes = b"") -> bytes:
    """Peer Down Notification (RFC 7854 §4.9): the reason, then for 1 and 3
    the NOTIFICATION message, for 2 the 2-octet FSM event code, for 6 TLVs."""
    if not 1 <= reason <= 6:
        raise ValueError("Peer Down reason %d" % reason)
    body = bytes((reason,)) + data
    return _common(PEER_DOWN, len(header) + len(body)) + bytes(header) + body


def initiation(sys_name: str, sys_descr: str, text: str = "") -> bytes:
    """Initiation (RFC 7854 §4.3): sysDescr and sysName are both required
    (§4.4), a free-form string optional."""
    body = _tlv(_INFO_SYS_DESCR, sys_descr.encode()) + _tlv(_INFO_SYS_NAME, sys_name.encode())
    if text:
        body += _tlv(_INFO_STRING, text.encode())
    return _common(INITIATION, len(body)) + body


def termination(reason: int = TERM_ADMIN_CLOSE, text: str = "") -> bytes:
    """Termination (RFC 7854 §4.5): the reason TLV, a string if given."""
    body = (_tlv(_TERM_STRING, text.encode()) if text else b"") + _tlv(_TERM_REASON, reason.to_bytes(2, "big"))
    return _common(TERMINATION, len(body)) + body
