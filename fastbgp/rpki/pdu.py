"""RTR PDUs: RFC 6810 (version 0), RFC 8210 (version 1) and
draft-ietf-sidrops-8210bis (version 2, adds ASPA).

One parser, :func:`parse_pdu`, turns the octets of one whole PDU into a PDU
struct or a :class:`PduError` carrying the Error Report code to answer with
(RFC 8210 §12); it never raises.  :func:`encode` is the one builder (the
client sends queries and Error Reports with it, tests and the test cache
build every other PDU with it).  :func:`pdu_length` reads the length field
of a header so a reader can frame the stream before parsing;
:func:`parse_buffer` frames and parses every complete PDU of a stream
buffer in one pass (the client reads large chunks, not one PDU at a time).

Every PDU starts with the 8-octet header (RFC 8210 §5.1): version, type, a
16-bit field (session id, error code, flags or zero) and the 32-bit length
of the whole PDU.
"""

import struct
from typing import Optional, Union

import msgspec

# PDU types (RFC 8210 §5, 8210bis §5.12 for ASPA).
SERIAL_NOTIFY = 0
SERIAL_QUERY = 1
RESET_QUERY = 2
CACHE_RESPONSE = 3
IPV4_PREFIX = 4
IPV6_PREFIX = 6
END_OF_DATA = 7
CACHE_RESET = 8
ROUTER_KEY = 9
ERROR_REPORT = 10
ASPA = 11

# Error Report codes (RFC 8210 §12).
CORRUPT_DATA = 0
INTERNAL_ERROR = 1
NO_DATA_AVAILABLE = 2
INVALID_REQUEST = 3
UNSUPPORTED_VERSION = 4
UNSUPPORTED_PDU_TYPE = 5
WITHDRAWAL_OF_UNKNOWN = 6
DUPLICATE_ANNOUNCEMENT = 7
UNEXPECTED_VERSION = 8

ERROR_NAMES = {
    CORRUPT_DATA: "Corrupt Data",
    INTERNAL_ERROR: "Internal Error",
    NO_DATA_AVAILABLE: "No Data Available",
    INVALID_REQUEST: "Invalid Request",
    UNSUPPORTED_VERSION: "Unsupported Protocol Version",
    UNSUPPORTED_PDU_TYPE: "Unsupported PDU Type",
    WITHDRAWAL_OF_UNKNOWN: "Withdrawal of Unknown Record",
    DUPLICATE_ANNOUNCEMENT: "Duplicate Announcement Received",
    UNEXPECTED_VERSION: "Unexpected Protocol Version",
}

MAX_VERSION = 2
HEADER_LEN = 8
# The largest PDU accepted: an ASPA PDU of 2^16 providers is 256 KiB; an
# Error Report encapsulates at most one such PDU plus text.  Anything longer
# is Corrupt Data, so a hostile length cannot make the reader buffer more.
MAX_PDU_LEN = 1 << 20

# RFC 8210 §6 ranges for the End of Data timers (seconds).
REFRESH_RANGE = (1, 86400)
RETRY_RANGE = (1, 7200)
EXPIRE_RANGE = (600, 172800)

FLAG_ANNOUNCE = 1  # RFC 8210 §5.6: flags bit 0, 1 = announcement, 0 = withdrawal

_HEAD = struct.Struct("!BBHI")


class _Pdu(msgspec.Struct, frozen=True):
    version: int


class SerialNotify(_Pdu, frozen=True):
    session_id: int
    serial: int


class SerialQuery(_Pdu, frozen=True):
    session_id: int
    serial: int


class ResetQuery(_Pdu, frozen=True):
    pass


class CacheResponse(_Pdu, frozen=True):
    session_id: int


class Prefix(_Pdu, frozen=True):
    """IPv4 Prefix (afi 1) or IPv6 Prefix (afi 2), RFC 8210 §5.6 / §5.7."""

    announce: bool
    afi: int
    addr: bytes  # 4 or 16 octets
    plen: int
    maxlen: int
    asn: int


class EndOfData(_Pdu, frozen=True):
    session_id: int
    serial: int
    # Version 1+ only (RFC 8210 §5.8); None from a version 0 cache.
    refresh: Optional[int] = None
    retry: Optional[int] = None
    expire: Optional[int] = None


class CacheReset(_Pdu, frozen=True):
    pass


class RouterKey(_Pdu, frozen=True):
    """BGPsec Router Key (RFC 8210 §5.10): parsed so it can be skipped."""

    announce: bool
    ski: bytes
    asn: int
    spki: bytes


class ErrorReport(_Pdu, frozen=True):
    code: int
    pdu: bytes = b""  # the erroneous PDU, encapsulated
    text: str = ""


class Aspa(_Pdu, frozen=True):
    """ASPA (8210bis §5.12): announce replaces the customer's provider set,
    withdraw removes it."""

    announce: bool
    customer: int
    providers: tuple = ()


class PduError(msgspec.Struct, frozen=True):
    """A PDU that must be answered by an Error Report with ``code``
    encapsulating ``pdu`` (RFC 8210 §12)."""

    code: int
    pdu: bytes
    text: str

    def describe(self):
        return "%s: %s" % (ERROR_NAMES.get(self.code, "error %d" % self.code), self.text)


Pdu = Union[SerialNotify, SerialQuery, ResetQuery, CacheResponse, Prefix, EndOfData, CacheReset, RouterKey,
            ErrorReport, Aspa]


def pdu_length(header):
    """(version, type, length) from the first 8 octets, or a PduError when
    the length is impossible (shorter than a header or over MAX_PDU_LEN)."""
    version, ptype, _field, length = _HEAD.unpack_from(header, 0)
    if length < HEADER_LEN or length > MAX_PDU_LEN:
        return PduError(CORRUPT_DATA, bytes(header[:HEADER_LEN]), "PDU length %d out of range" % length)
    return version, ptype, length


def _fixed(data, want, name):
    if len(data) != want:
        return PduError(CORRUPT_DATA, data, "%s PDU of %d octets, expected %d" % (name, len(data), want))
    return None


def _u32(data, at):
    return int.from_bytes(data[at : at + 4], "big")


def _parse_prefix(data, version, ptype):
    afi, width, size = (1, 32, 20) if ptype == IPV4_PREFIX else (2, 128, 32)
    err = _fixed(data, size, "IPv%d Prefix" % (4 if afi == 1 else 6))
    if err:
        return err
    flags, plen, maxlen = data[8], data[9], data[10]
    # RFC 8210 §5.6: lengths beyond the family or maxLength below the prefix
    # length are Corrupt Data.
    if plen > width or maxlen > width or maxlen < plen:
        return PduError(CORRUPT_DATA, data, "prefix length %d / max length %d invalid" % (plen, maxlen))
    addr = bytes(data[12 : 12 + width // 8])
    return Prefix(version, bool(flags & FLAG_ANNOUNCE), afi, addr, plen, maxlen, _u32(data, 12 + width // 8))


def _parse_end_of_data(data, version, field):
    if version == 0:
        err = _fixed(data, 12, "End of Data")
        if err:
            return err
        return EndOfData(version, field, _u32(data, 8))
    err = _fixed(data, 24, "End of Data")
    if err:
        return err
    return EndOfData(version, field, _u32(data, 8), _u32(data, 12), _u32(data, 16), _u32(data, 20))


def _parse_error_report(data, version, field):
    # RFC 8210 §5.11: header, length of the encapsulated PDU, the PDU, length
    # of the text, the text (UTF-8).
    n = len(data)
    if n < 16:
        return PduError(CORRUPT_DATA, data, "Error Report of %d octets" % n)
    plen = _u32(data, 8)
    if 12 + plen + 4 > n:
        return PduError(CORRUPT_DATA, data, "Error Report encapsulated PDU length %d overruns" % plen)
    tlen = _u32(data, 12 + plen)
    if 16 + plen + tlen != n:
        return PduError(CORRUPT_DATA, data, "Error Report text length %d does not match" % tlen)
    text = bytes(data[16 + plen :]).decode("utf-8", "replace")
    return ErrorReport(version, field, bytes(data[12 : 12 + plen]), text)


def _parse_router_key(data, version):
    # RFC 8210 §5.10: flags in the high octet of the 16-bit field, SKI (20),
    # ASN (4), Subject Public Key Info.
    if len(data) < 32:
        return PduError(CORRUPT_DATA, data, "Router Key of %d octets" % len(data))
    return RouterKey(version, bool(data[2] & FLAG_ANNOUNCE), bytes(data[8:28]), _u32(data, 28), bytes(data[32:]))


def _parse_aspa(data, version):
    n = len(data)
    if data[2] == 0 and data[3] == 0 and n >= 16 and (n - 16) % 4 == 0 and \
            int.from_bytes(data[10:12], "big") == (n - 16) // 4:
        # draft-ietf-sidrops-8210bis-10 §5.12 (what stayrtr sends): a zero
        # header field, then flags, AFI flags, provider count, customer ASN.
        announce, customer, start = bool(data[8] & FLAG_ANNOUNCE), _u32(data, 12), 16
    elif n >= 12 and (n - 12) % 4 == 0:
        # later 8210bis: flags in octet 2 of the header, customer ASN, then
        # 4-octet provider ASNs up to the PDU length.
        announce, customer, start = bool(data[2] & FLAG_ANNOUNCE), _u32(data, 8), 12
    else:
        return PduError(CORRUPT_DATA, data, "ASPA PDU of %d octets" % n)
    providers = tuple(_u32(data, i) for i in range(start, n, 4))
    if not announce and providers:
        return PduError(CORRUPT_DATA, data, "ASPA withdrawal with a provider list")
    return Aspa(version, announce, customer, providers)


def parse_pdu(data):
    """The PDU in ``data`` (exactly one whole PDU), or a PduError.  Never
    raises on any input."""
    data = bytes(data)
    if len(data) < HEADER_LEN:
        return PduError(CORRUPT_DATA, data, "PDU of %d octets is shorter than a header" % len(data))
    version, ptype, field, length = _HEAD.unpack_from(data, 0)
    if length != len(data):
        return PduError(CORRUPT_DATA, data, "PDU length field %d but %d octets" % (length, len(data)))
    if version > MAX_VERSION:
        return PduError(UNSUPPORTED_VERSION, data, "protocol version %d" % version)
    if ptype in (SERIAL_NOTIFY, SERIAL_QUERY):
        err = _fixed(data, 12, "Serial Notify" if ptype == SERIAL_NOTIFY else "Serial Query")
        if err:
            return err
        cls = SerialNotify if ptype == SERIAL_NOTIFY else SerialQuery
        return cls(version, field, _u32(data, 8))
    if ptype in (RESET_QUERY, CACHE_RESET):
        err = _fixed(data, 8, "Reset Query" if ptype == RESET_QUERY else "Cache Reset")
        if err:
            return err
        return ResetQuery(version) if ptype == RESET_QUERY else CacheReset(version)
    if ptype == CACHE_RESPONSE:
        return _fixed(data, 8, "Cache Response") or CacheResponse(version, field)
    if ptype in (IPV4_PREFIX, IPV6_PREFIX):
        return _parse_prefix(data, version, ptype)
    if ptype == END_OF_DATA:
        return _parse_end_of_data(data, version, field)
    if ptype == ERROR_REPORT:
        return _parse_error_report(data, version, field)
    if ptype == ROUTER_KEY and version >= 1:  # RFC 8210 §5.10: not in version 0
        return _parse_router_key(data, version)
    if ptype == ASPA and version >= 2:  # 8210bis: version 2 only
        return _parse_aspa(data, version)
    return PduError(UNSUPPORTED_PDU_TYPE, data, "PDU type %d in version %d" % (ptype, version))


def parse_buffer(buf, pos=0):
    """Every complete PDU of the stream buffer ``buf`` from offset ``pos``:
    ``(items, end)`` where ``items`` lists ``(parse_pdu result, start, stop)``
    in order and ``end`` is the offset of the first octet not consumed (the
    start of an incomplete PDU).  The bulk entry point of a reader that takes
    the stream in large chunks; each PDU still goes through
    :func:`parse_pdu`.  A header whose length is impossible (see
    :func:`pdu_length`) ends the list with its PduError, checked as soon as
    its 8 octets are there so a hostile length never makes the reader wait
    for or buffer more.  Never raises."""
    items = []
    n = len(buf)
    view = memoryview(buf)
    try:
        while n - pos >= HEADER_LEN:
            framing = pdu_length(view[pos : pos + HEADER_LEN])
            if isinstance(framing, PduError):
                items.append((framing, pos, pos + HEADER_LEN))
                return items, pos
            stop = pos + framing[2]
            if stop > n:
                break
            items.append((parse_pdu(view[pos:stop]), pos, stop))
            pos = stop
    finally:
        view.release()
    return items, pos


def _header(version, ptype, field, body):
    return _HEAD.pack(version, ptype, field, HEADER_LEN + len(body)) + body


def _be32(*values):
    return b"".join(v.to_bytes(4, "big") for v in values)


def encode(pdu):
    """The octets of one PDU struct."""
    v = pdu.version
    if isinstance(pdu, SerialNotify):
        return _header(v, SERIAL_NOTIFY, pdu.session_id, _be32(pdu.serial))
    if isinstance(pdu, SerialQuery):
        return _header(v, SERIAL_QUERY, pdu.session_id, _be32(pdu.serial))
    if isinstance(pdu, ResetQuery):
        return _header(v, RESET_QUERY, 0, b"")
    if isinstance(pdu, CacheResponse):
        return _header(v, CACHE_RESPONSE, pdu.session_id, b"")
    if isinstance(pdu, Prefix):
        width = 4 if pdu.afi == 1 else 16
        body = bytes((int(pdu.announce), pdu.plen, pdu.maxlen, 0)) + bytes(pdu.addr).ljust(width, b"\0")[:width]
        return _header(v, IPV4_PREFIX if pdu.afi == 1 else IPV6_PREFIX, 0, body + _be32(pdu.asn))
    if isinstance(pdu, EndOfData):
        if v == 0:
            return _header(v, END_OF_DATA, pdu.session_id, _be32(pdu.serial))
        return _header(v, END_OF_DATA, pdu.session_id, _be32(pdu.serial, pdu.refresh, pdu.retry, pdu.expire))
    if isinstance(pdu, CacheReset):
        return _header(v, CACHE_RESET, 0, b"")
    if isinstance(pdu, RouterKey):
        return _header(v, ROUTER_KEY, int(pdu.announce) << 8, pdu.ski + _be32(pdu.asn) + pdu.spki)
    if isinstance(pdu, ErrorReport):
        text = pdu.text.encode()
        body = _be32(len(pdu.pdu)) + pdu.pdu + _be32(len(text)) + text
        return _header(v, ERROR_REPORT, pdu.code, body)
    if isinstance(pdu, Aspa):
        return _header(v, ASPA, int(pdu.announce) << 8, _be32(pdu.customer, *pdu.providers))
    raise TypeError("not an RTR PDU: %r" % (pdu,))


def error_report(version, error, text=None):
    """The Error Report answering PduError ``error`` (RFC 8210 §5.11)."""
    return encode(ErrorReport(version, error.code, error.pdu, error.describe() if text is None else text))
