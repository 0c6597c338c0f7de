"""MRT routing information export format (RFC 6396): a streaming reader and
a writer.

Reading::

    for rec in MrtReader("updates.20160811.1600.gz"):
        if isinstance(rec, Bgp4mpMessage) and rec.update is not None:
            ...                     # rec.update is the codec's ParsedUpdate

The reader streams: it holds one decompressed chunk (plus the record being
assembled) at a time, whatever the file size; gzip, bzip2 and xz are
recognised by their magic bytes, anything else is read as plain MRT.

Every record becomes a small frozen msgspec Struct.  BGP UPDATEs, and the
attributes of TABLE_DUMP / TABLE_DUMP_V2 RIB entries, go through
``fastbgp.wire.codec.parse_update`` (or the implementation passed as ``codec=``)
with the session context the record type implies, so consumers see the same
``ParsedUpdate`` (canonical 4-octet attribute block, packed prefixes) a live
session produces.  A record that cannot be decoded does not stop the
stream: it is yielded as :class:`CorruptRecord` (or the message keeps
``update=None`` and names the problem in ``error``), and a file cut short
ends with a :class:`TruncatedRecord`, also left in ``reader.truncated``.

Writing: :class:`MrtWriter` appends BGP4MP_ET MESSAGE_AS4 records (UPDATEs
as received) and TABLE_DUMP_V2 snapshots (PEER_INDEX_TABLE followed by
RIB_IPV4_UNICAST / RIB_IPV6_UNICAST records); :class:`RotatingMrtWriter`
starts a new file every ``interval_s`` seconds, named by strftime, the way
BIRD's and GoBGP's MRT dumpers do.  :func:`encode_record` turns any decoded
record back into its exact bytes.
"""

import os
import socket
import struct
import time
import zlib

import msgspec

from fastbgp.wire import codec as _default_codec
from fastbgp.wire.types import Context
from fastbgp.wire.constants import AFI_IPV4, AFI_IPV6, SAFI_MULTICAST, SAFI_UNICAST
from fastbgp.wire.errors import BGPError

# ---------------------------------------------------------------- numbers

# RFC 6396 §4: MRT types this module decodes.
TABLE_DUMP = 12
TABLE_DUMP_V2 = 13
BGP4MP = 16
BGP4MP_ET = 17
# RFC 6396 §3: the _ET types carry an extra microsecond field, counted in
# the record length (ISIS_ET and OSPFv3_ET are skipped over as unknown).
ET_TYPES = frozenset((BGP4MP_ET, 33, 49))

# RFC 6396 §4.2: the TABLE_DUMP subtype is the AFI of the prefix.
TABLE_DUMP_AFI_IPV4 = 1
TABLE_DUMP_AFI_IPV6 = 2

# RFC 6396 §4.3 and RFC 8050 §4: TABLE_DUMP_V2 subtypes.
PEER_INDEX_TABLE = 1
RIB_IPV4_UNICAST = 2
RIB_IPV4_MULTICAST = 3
RIB_IPV6_UNICAST = 4
RIB_IPV6_MULTICAST = 5
RIB_GENERIC = 6
RIB_IPV4_UNICAST_ADDPATH = 8
RIB_IPV4_MULTICAST_ADDPATH = 9
RIB_IPV6_UNICAST_ADDPATH = 10
RIB_IPV6_MULTICAST_ADDPATH = 11
RIB_GENERIC_ADDPATH = 12

# (afi, safi, addpath) of each AFI/SAFI-specific RIB subtype.
RIB_FAMILIES = {
    RIB_IPV4_UNICAST: (AFI_IPV4, SAFI_UNICAST, False),
    RIB_IPV4_MULTICAST: (AFI_IPV4, SAFI_MULTICAST, False),
    RIB_IPV6_UNICAST: (AFI_IPV6, SAFI_UNICAST, False),
    RIB_IPV6_MULTICAST: (AFI_IPV6, SAFI_MULTICAST, False),
    RIB_IPV4_UNICAST_ADDPATH: (AFI_IPV4, SAFI_UNICAST, True),
    RIB_IPV4_MULTICAST_ADDPATH: (AFI_IPV4, SAFI_MULTICAST, True),
    RIB_IPV6_UNICAST_ADDPATH: (AFI_IPV6, SAFI_UNICAST, True),
    RIB_IPV6_MULTICAST_ADDPATH: (AFI_IPV6, SAFI_MULTICAST, True),
}

# RFC 6396 §4.4 and RFC 8050 §3: BGP4MP / BGP4MP_ET subtypes.
BGP4MP_STATE_CHANGE = 0
BGP4MP_MESSAGE = 1
BGP4MP_ENTRY = 2  # deprecated (RFC 6396 §4.4 lists it as unused); OpenBGPD still writes it
BGP4MP_SNAPSHOT = 3  # deprecated
BGP4MP_MESSAGE_AS4 = 4
BGP4MP_STATE_CHANGE_AS4 = 5
BGP4MP_MESSAGE_LOCAL = 6
BGP4MP_MESSAGE_AS4_LOCAL = 7
BGP4MP_MESSAGE_ADDPATH = 8
BGP4MP_MESSAGE_AS4_ADDPATH = 9
BGP4MP_MESSAGE_LOCAL_ADDPATH = 10
BGP4MP_MESSAGE_AS4_LOCAL_ADDPATH = 11

# subtype -> (as4, local, addpath) for the message subtypes.
MESSAGE_SUBTYPES = {
    BGP4MP_MESSAGE: (False, False, False),
    BGP4MP_MESSAGE_AS4: (True, False, False),
    BGP4MP_MESSAGE_LOCAL: (False, True, False),
    BGP4MP_MESSAGE_AS4_LOCAL: (True, True, False),
    BGP4MP_MESSAGE_ADDPATH: (False, False, True),
    BGP4MP_MESSAGE_AS4_ADDPATH: (True, False, True),
    BGP4MP_MESSAGE_LOCAL_ADDPATH: (False, True, True),
    BGP4MP_MESSAGE_AS4_LOCAL_ADDPATH: (True, True, True),
}

TYPE_NAMES = {TABLE_DUMP: "TABLE_DUMP", TABLE_DUMP_V2: "TABLE_DUMP_V2", BGP4MP: "BGP4MP", BGP4MP_ET: "BGP4MP_ET"}
SUBTYPE_NAMES = {
    TABLE_DUMP: {1: "AFI_IPv4", 2: "AFI_IPv6"},
    TABLE_DUMP_V2: {
        1: "PEER_INDEX_TABLE",
        2: "RIB_IPV4_UNICAST",
        3: "RIB_IPV4_MULTICAST",
        4: "RIB_IPV6_UNICAST",
        5: "RIB_IPV6_MULTICAST",
        6: "RIB_GENERIC",
        8: "RIB_IPV4_UNICAST_ADDPATH",
        9: "RIB_IPV4_MULTICAST_ADDPATH",
        10: "RIB_IPV6_UNICAST_ADDPATH",
        11: "RIB_IPV6_MULTICAST_ADDPATH",
        12: "RIB_GENERIC_ADDPATH",
    },
}
SUBTYPE_NAMES[BGP4MP] = SUBTYPE_NAMES[BGP4MP_ET] = {
    0: "STATE_CHANGE",
    1: "MESSAGE",
    2: "ENTRY",
    3: "SNAPSHOT",
    4: "MESSAGE_AS4",
    5: "STATE_CHANGE_AS4",
    6: "MESSAGE_LOCAL",
    7: "MESSAGE_AS4_LOCAL",
    8: "MESSAGE_ADDPATH",
    9: "MESSAGE_AS4_ADDPATH",
    10: "MESSAGE_LOCAL_ADDPATH",
    11: "MESSAGE_AS4_LOCAL_ADDPATH",
}

# RFC 4271 §8.2.2 FSM states as numbered in STATE_CHANGE (RFC 6396 §4.4.1).
STATE_NAMES = {1: "Idle", 2: "Connect", 3: "Active", 4: "OpenSent", 5: "OpenConfirm", 6: "Established"}

_ALL_FAMILIES = frozenset(((AFI_IPV4, SAFI_UNICAST), (AFI_IPV4, SAFI_MULTICAST), (AFI_IPV6, SAFI_UNICAST), (AFI_IPV6, SAFI_MULTICAST)))
# Session contexts implied by the record subtypes.  RFC 8654 messages may sit
# in any MRT record, so extended_message is always on; ebgp stays off so no
# LOCAL_PREF is dropped from what the collector saw.
CTX_AS2 = Context(as4=False, extended_message=True)
CTX_AS4 = Context(as4=True, extended_message=True)
CTX_AS2_ADDPATH = Context(as4=False, addpath_rx=_ALL_FAMILIES, extended_message=True)
CTX_AS4_ADDPATH = Context(as4=True, addpath_rx=_ALL_FAMILIES, extended_message=True)


_MARKER = b"\xff" * 16
_H4 = struct.Struct(">IIHH").unpack_from
_H2 = struct.Struct(">HHHH").unpack_from
# subtype -> (header unpacker, header size, as4, addpath, kind) where kind is
# 0 state change, 1 message, 2 BGP4MP_ENTRY.
_BGP4MP_LAYOUT = {sub: ((_H4, 12) if a4 else (_H2, 8)) + (a4, ap, 1) for sub, (a4, _loc, ap) in MESSAGE_SUBTYPES.items()}
_BGP4MP_LAYOUT[BGP4MP_STATE_CHANGE] = (_H2, 8, False, False, 0)
_BGP4MP_LAYOUT[BGP4MP_STATE_CHANGE_AS4] = (_H4, 12, True, False, 0)
_BGP4MP_LAYOUT[BGP4MP_ENTRY] = (_H2, 8, False, False, 2)


def message_context(as4, addpath):
    if addpath:
        return CTX_AS4_ADDPATH if as4 else CTX_AS2_ADDPATH
    return CTX_AS4 if as4 else CTX_AS2


# ---------------------------------------------------------------- records


class MrtRecord(msgspec.Struct, frozen=True, gc=False):
    """Common header (RFC 6396 §2): seconds, microseconds (non-zero only in
    _ET records), type and subtype."""

    timestamp: int
    microsecond: int
    type: int
    subtype: int

    @property
    def time(self):
        return self.timestamp + self.microsecond / 1e6

    @property
    def type_name(self):
        return TYPE_NAMES.get(self.type, str(self.type))

    @property
    def subtype_name(self):
        return SUBTYPE_NAMES.get(self.type, {}).get(self.subtype, str(self.subtype))


class TableDump(MrtRecord, frozen=True, gc=False):
    """TABLE_DUMP (RFC 6396 §4.2): one prefix as seen from one peer.
    AS numbers are 2 octets wide in this type."""

    view: int
    sequence: int
    prefix: str  # "address/length", address as stored (host bits kept)
    status: int
    originated: int
    peer_ip: str
    peer_as: int
    attrs: bytes  # the path attributes as stored
    update: object = None  # ParsedUpdate of the attributes, or None
    error: object = None  # why update is None (str)


class Peer(msgspec.Struct, frozen=True, gc=False):
    """One PEER_INDEX_TABLE entry (RFC 6396 §4.3.1)."""

    bgp_id: str
    ip: str
    asn: int
    as4: bool = True  # peer type bit 1: the AS field is 4 octets wide


class PeerIndexTable(MrtRecord, frozen=True, gc=False):
    collector_id: str
    view_name: str
    peers: tuple


class RibEntry(msgspec.Struct, frozen=True, gc=False):
    """One RIB entry (RFC 6396 §4.3.4; path_id per RFC 8050 §4)."""

    peer_index: int
    originated: int
    attrs: bytes  # as stored (4-octet AS, abbreviated MP_REACH_NLRI)
    path_id: int = 0
    update: object = None  # ParsedUpdate of the attributes (no NLRI), or None
    error: object = None

    @property
    def next_hop(self):
        """The route's next hop bytes: NEXT_HOP, else the MP_REACH next hop."""
        u = self.update
        if u is None:
            return b""
        if u.mp_reach is not None:
            return u.mp_reach[2]
        return u.next_hop


class RibRecord(MrtRecord, frozen=True, gc=False):
    """RIB_IPV4/IPV6_UNICAST/MULTICAST, RIB_GENERIC and their RFC 8050
    *_ADDPATH variants: one prefix and every peer's route to it."""

    sequence: int
    afi: int
    safi: int
    prefix: str  # "address/length" (host bits cleared); "" when the family is unknown
    entries: tuple
    nlri: bytes = b""  # RIB_GENERIC: the NLRI as stored

    @property
    def addpath(self):
        return self.subtype >= RIB_IPV4_UNICAST_ADDPATH


class Bgp4mpStateChange(MrtRecord, frozen=True, gc=False):
    """STATE_CHANGE / STATE_CHANGE_AS4 (RFC 6396 §4.4.1, §4.4.4)."""

    peer_as: int
    local_as: int
    ifindex: int
    afi: int
    peer_ip: str
    local_ip: str
    old_state: int
    new_state: int


class Bgp4mpMessage(MrtRecord, frozen=True, gc=False):
    """MESSAGE and its AS4 / LOCAL / ADDPATH variants (RFC 6396 §4.4.2,
    §4.4.3, §4.4.6, §4.4.7; RFC 8050 §3).  ``message`` is the whole BGP
    message, 19-octet header included."""

    peer_as: int
    local_as: int
    ifindex: int
    afi: int
    peer_ip: str
    local_ip: str
    message: bytes
    update: object = None  # ParsedUpdate for a well-formed UPDATE
    error: object = None  # str: why an UPDATE (or the header) did not decode
    # The UPDATE carries RFC 7911 path identifiers: set by the *_ADDPATH
    # subtypes, and also when an UPDATE only parses with path ids (BIRD 1.6
    # wrote ADD-PATH sessions under the plain subtypes).
    addpath: bool = False

    @property
    def msg_type(self):
        m = self.message
        return m[18] if len(m) > 18 else 0

    @property
    def body(self):
        return self.message[19:]

    @property
    def as4(self):
        return MESSAGE_SUBTYPES.get(self.subtype, (True, False, False))[0]

    @property
    def local(self):
        return MESSAGE_SUBTYPES.get(self.subtype, (True, False, False))[1]


class Bgp4mpEntry(MrtRecord, frozen=True, gc=False):
    """The deprecated BGP4MP_ENTRY (subtype 2) that OpenBGPD writes for
    table dumps: BGP4MP header, then view, status, originated time, AFI,
    SAFI, next hop, one prefix and its attributes (2-octet AS_PATH)."""

    peer_as: int
    local_as: int
    ifindex: int
    afi: int
    peer_ip: str
    local_ip: str
    view: int
    status: int
    originated: int
    entry_afi: int
    safi: int
    next_hop: bytes
    prefix: str
    attrs: bytes
    update: object = None
    error: object = None


class UnknownRecord(MrtRecord, frozen=True, gc=False):
    """A type/subtype this reader does not decode (kept verbatim)."""

    data: bytes


class CorruptRecord(MrtRecord, frozen=True, gc=False):
    """A record whose body does not match its declared type; the stream
    goes on with the next record (the length field is still trusted)."""

    offset: int  # of the record header in the decompressed stream
    reason: str
    data: bytes


class TruncatedRecord(MrtRecord, frozen=True, gc=False):
    """The stream ended inside a record (a dump cut short).  Header fields
    are 0 when even the 12-octet header was incomplete."""

    offset: int
    length: int  # declared body length (0 if unknown)
    data: bytes  # what was there


class MrtFormatError(ValueError):
    pass


# Every record class MrtReader yields.
RECORD_TYPES = (
    TableDump,
    PeerIndexTable,
    RibRecord,
    Bgp4mpStateChange,
    Bgp4mpMessage,
    Bgp4mpEntry,
    UnknownRecord,
    CorruptRecord,
    TruncatedRecord,
)


# ---------------------------------------------------------------- decompression

CHUNK = 1 << 18
# A sanity bound on one record: the largest real ones (TABLE_DUMP_V2 RIB
# records of prefixes seen by thousands of peers) are a few MiB.
MAX_RECORD = 1 << 26


def _open_source(source):
    """(binary file, whether we opened it)."""
    if isinstance(source, (str, bytes, os.PathLike)):
        return open(source, "rb"), True
    return source, False


def _decompressed_chunks(f, chunk=CHUNK, errors=None):
    """Decompressed chunks of ``f`` of at most ``chunk`` octets each (plus
    whatever one input chunk holds for plain files): gzip, bzip2 and xz by
    magic bytes (multi-member files included), else the bytes as they are.
    A compressed stream that is cut short or corrupt ends the chunks; the
    reason is appended to ``errors``."""
    raw = f.read(max(chunk, 64))
    while 0 < len(raw) < 6:  # a pipe may deliver the magic bytes piecemeal
        more = f.read(chunk)
        if not more:
            break
        raw += more
    failures = (zlib.error, OSError, EOFError)
    if raw[:2] == b"\x1f\x8b":
        new = lambda: zlib.decompressobj(47)  # noqa: E731 -- 32+15: gzip header
    elif raw[:3] == b"BZh":
        import bz2

        new = bz2.BZ2Decompressor
    elif raw[:6] == b"\xfd7zXZ\x00":
        import lzma

        new = lzma.LZMADecompressor
        failures += (lzma.LZMAError,)
    else:
        while raw:
            yield raw
            raw = f.read(chunk)
        return
    d = new()
    zlib_like = hasattr(d, "unconsumed_tail")
    try:
        while True:
            if zlib_like:
                out = d.decompress(raw, chunk)
                if out:
                    yield out
                raw = d.unconsumed_tail
                if d.eof:
                    # At the end of a member the leftover input is in
                    # unused_data (unconsumed_tail may repeat it).
                    rest = d.unused_data
                    if not rest:
                        rest = f.read(chunk)
                        if not rest:
                            return
                    if not rest.strip(b"\x00"):
                        return  # zero padding after the last member
                    # RFC 1952 §2.2: a gzip file may hold several members.
                    d = new()
                    raw = rest
                    continue
                if not raw:
                    raw = f.read(chunk)
                    if not raw:
                        # A compressed stream cut short: flush what there is.
                        out = d.flush()
                        if out:
                            yield out
                        if errors is not None:
                            errors.append("compressed stream ends early")
                        return
            else:
                out = d.decompress(raw, chunk)
                raw = b""
                if out:
                    yield out
                if d.eof:
                    rest = d.unused_data
                    if not rest:
                        rest = f.read(chunk)
                        if not rest:
                            return
                    if not rest.strip(b"\x00"):
                        return
                    d = new()
                    raw = rest
                    continue
                if d.needs_input:
                    raw = f.read(chunk)
                    if not raw:
                        if errors is not None:
                            errors.append("compressed stream ends early")
                        return
    except failures as exc:
        if errors is not None:
            errors.append("corrupt compressed stream: %s" % exc)


# ---------------------------------------------------------------- helpers

_HEADER = struct.Struct(">IHHI")
_TD1_V4 = struct.Struct(">HH4sBBI4sHH").unpack_from
_ENTRY = struct.Struct(">HIH").unpack_from
_ENTRY_AP = struct.Struct(">HIIH").unpack_from
_TD1_V6 = struct.Struct(">HH16sBBI16sHH").unpack_from
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_ntop = socket.inet_ntop
_AF_INET = socket.AF_INET
_AF_INET6 = socket.AF_INET6
_IP_CACHE = {}


def ip_str(b):
    """Text form of a 4- or 16-octet address (cached: peers repeat)."""
    s = _IP_CACHE.get(b)
    if s is None:
        if len(_IP_CACHE) > 4096:
            _IP_CACHE.clear()
        s = _IP_CACHE[b] = _ntop(_AF_INET if len(b) == 4 else _AF_INET6, b)
    return s


_DOT = ["%d." % i for i in range(256)]
_DEC = [str(i) for i in range(256)]
_SLASH = ["/%d" % i for i in range(256)]


def prefix_text(addr, plen):
    """'address/length' (uncached: prefixes rarely repeat within a file)."""
    if len(addr) == 4:
        return f"{_DOT[addr[0]]}{_DOT[addr[1]]}{_DOT[addr[2]]}{_DEC[addr[3]]}{_SLASH[plen]}"
    return _ntop(_AF_INET6, addr) + _SLASH[plen]


def ip_bytes(s):
    """Inverse of ip_str."""
    return socket.inet_pton(_AF_INET6 if ":" in s else _AF_INET, s)


def prefix_bytes(prefix):
    """'addr/len' -> (afi, address bytes (4 or 16), length)."""
    addr, _, plen = prefix.partition("/")
    b = ip_bytes(addr)
    return (AFI_IPV6 if len(b) == 16 else AFI_IPV4), b, int(plen)


def _packed_prefix(data, pos, end, maxbits):
    """(address bytes with host bits cleared, length, position after) of one
    NLRI-style prefix at data[pos]; MrtFormatError when it overruns."""
    if pos >= end:
        raise MrtFormatError("missing prefix")
    plen = data[pos]
    if plen > maxbits:
        raise MrtFormatError("prefix length %d" % plen)
    nb = (plen + 7) >> 3
    if pos + 1 + nb > end:
        raise MrtFormatError("prefix overruns the record")
    a = data[pos + 1 : pos + 1 + nb]
    if plen & 7:
        # RFC 4271 §4.3: trailing bits past the length are irrelevant.
        a = a[:-1] + bytes((a[-1] & (0xFF << (8 - (plen & 7))) & 0xFF,))
    return a + bytes((maxbits >> 3) - nb), plen, pos + 1 + nb


def _expand_mp_reach(attrs, afi, safi):
    """RFC 6396 §4.3.4: in RIB entries MP_REACH_NLRI is abbreviated to the
    next hop length and next hop.  Rebuild the full RFC 4760 form (with no
    NLRI) so the attributes parse as an UPDATE; a full-form attribute (some
    dumpers write one) is kept.  Returns attrs unchanged when there is no
    abbreviated MP_REACH_NLRI."""
    i, n = 0, len(attrs)
    while i + 3 <= n:
        flags = attrs[i]
        if flags & 0x10:
            if i + 4 > n:
                break
            ln = (attrs[i + 2] << 8) | attrs[i + 3]
            vs = i + 4
        else:
            ln = attrs[i + 2]
            vs = i + 3
        if attrs[i + 1] == 14 and ln and attrs[vs] + 1 == ln:
            nh = attrs[vs + 1 : vs + ln]
            value = bytes((afi >> 8, afi & 0xFF, safi, len(nh))) + nh + b"\x00"
            head = bytes((flags | 0x10, 14, len(value) >> 8, len(value) & 0xFF))
            return attrs[:i] + head + value + attrs[vs + ln :]
        i = vs + ln
    return attrs


_H_N = [struct.Struct(">%dH" % k).unpack_from for k in range(256)]
_I_N = [struct.Struct(">%dI" % k).pack for k in range(256)]


class _AttrCache:
    """Bounded cache of (ParsedUpdate, error) of attribute-only UPDATEs
    keyed by the raw attribute bytes: RIB dumps repeat the same attributes
    for many prefixes, so each distinct block is validated once.

    ``family`` (afi, safi) marks RIB entry attributes (RFC 6396 §4.3.4:
    4-octet AS, abbreviated MP_REACH_NLRI); without it the attributes are
    TABLE_DUMP ones (2-octet AS)."""

    __slots__ = ("data", "family", "limit", "parse")

    def __init__(self, parse, family=None, limit=1 << 16):
        self.parse = parse
        self.family = family
        self.data = {}
        self.limit = limit

    def get(self, attrs):
        hit = self.data.get(attrs)
        if hit is not None:
            return hit
        block = attrs
        if self.family is None:
            ctx = CTX_AS2
        else:
            ctx = CTX_AS4
            if b"\x0e" in block:
                block = _expand_mp_reach(block, *self.family)
        if len(block) > 0xFFFF:
            res = (None, "attributes longer than 65535 octets")
        else:
            try:
                res = (self.parse(b"\x00\x00" + _U16.pack(len(block)) + block, ctx), None)
            except BGPError as exc:
                res = (None, str(exc))
        if len(self.data) >= self.limit:
            self.data.clear()
        self.data[attrs] = res
        return res


# ---------------------------------------------------------------- reader


class MrtReader:
    """Iterate over the records of an MRT file (path or binary file object).

    ``codec`` is the codec implementation module (``fastbgp.wire._codec`` or
    ``fastbgp.wire._codec_py``; default: what ``fastbgp.wire.codec`` selected).
    ``parse=False`` skips UPDATE/attribute decoding (``update`` stays None).
    A record declaring more than ``max_record`` octets ends the stream with
    a CorruptRecord (memory stays bounded on garbage input).
    After iteration ``truncated`` is the TruncatedRecord that ended a cut
    file (else None), ``stream_errors`` lists decompression problems (a
    cut or corrupt .gz/.bz2/.xz) and ``records``/``corrupt`` count what
    was seen.
    """

    def __init__(self, source, codec=None, parse=True, chunk=CHUNK, max_record=MAX_RECORD):
        self.source = source
        self.max_record = max_record
        self.codec = codec if codec is not None else _default_codec
        self.parse = parse
        self.chunk = chunk
        self.truncated = None
        self.records = 0
        self.corrupt = 0
        self.stream_errors = []  # decompression problems (the stream ended there)
        self._parse = self.codec.parse_update
        self._rib_caches = {}  # (afi, safi) -> _AttrCache of RIB entry attributes
        self._td1_cache = _AttrCache(self.codec.parse_update)  # TABLE_DUMP / BGP4MP_ENTRY

    def __iter__(self):
        f, own = _open_source(self.source)
        try:
            # Framing and dispatch share one generator frame: this loop runs
            # once per record, so every layer saved shows in dump speed.
            chunks = _decompressed_chunks(f, self.chunk, self.stream_errors)
            buf = b""
            pos = 0
            base = 0  # stream offset of buf[0]
            unpack = _HEADER.unpack_from
            bgp4mp = self._bgp4mp
            other = self._other
            while True:
                n = len(buf)
                if n - pos >= 12:
                    ts, typ, sub, ln = unpack(buf, pos)
                    end = pos + 12 + ln
                    if end <= n:
                        body = buf[pos + 12 : end]
                        offset = base + pos
                        pos = end
                        self.records += 1
                        try:
                            if typ == BGP4MP_ET:
                                # RFC 6396 §3: microseconds lead the body.
                                if ln < 4:
                                    raise MrtFormatError("no microsecond field")
                                rec = bgp4mp(ts, _U32.unpack_from(body)[0], typ, sub, body, 4)
                            elif typ == BGP4MP:
                                rec = bgp4mp(ts, 0, typ, sub, body, 0)
                            else:
                                rec = other(ts, typ, sub, body)
                        except (MrtFormatError, IndexError, struct.error) as exc:
                            self.corrupt += 1
                            usec = 0
                            if typ in ET_TYPES and ln >= 4:
                                usec = _U32.unpack_from(body)[0]
                                body = body[4:]
                            rec = CorruptRecord(ts, usec, typ, sub, offset, str(exc) or exc.__class__.__name__, body)
                        yield rec
                        continue
                    if ln > self.max_record:
                        # No MRT record is that long: the stream is not MRT
                        # (or lost its framing), and RFC 6396 has no marker
                        # to resynchronise on.  Stop rather than buffer it.
                        self.corrupt += 1
                        reason = "record length %d exceeds %d: not an MRT stream from here on" % (ln, self.max_record)
                        self.stream_errors.append(reason)
                        yield CorruptRecord(ts, 0, typ, sub, base + pos, reason, b"")
                        return
                    need = end - pos
                else:
                    need = 12
                # Refill: keep the unfinished record, append chunks until it fits.
                parts = [buf[pos:]]
                have = n - pos
                base += pos
                for c in chunks:
                    parts.append(c)
                    have += len(c)
                    if have >= need:
                        break
                buf = b"".join(parts)
                pos = 0
                if len(buf) < need:
                    if buf:
                        # RFC 6396 gives no way to resynchronise; a cut
                        # file just ends here.
                        if len(buf) >= 12:
                            ts, typ, sub, ln = unpack(buf, 0)
                            rec = TruncatedRecord(ts, 0, typ, sub, base, ln, buf[12:])
                        else:
                            rec = TruncatedRecord(0, 0, 0, 0, base, 0, buf)
                        self.truncated = rec
                        yield rec
                    return
        finally:
            if own:
                f.close()

    # -- decoding

    def _other(self, ts, typ, sub, body):
        """Every record type but BGP4MP / BGP4MP_ET."""
        usec = 0
        if typ in ET_TYPES:
            if len(body) < 4:
                raise MrtFormatError("no microsecond field")
            usec = _U32.unpack_from(body)[0]
            body = body[4:]
        if typ == TABLE_DUMP_V2:
            if sub == PEER_INDEX_TABLE:
                return self._peer_index(ts, usec, typ, sub, body)
            if sub in RIB_FAMILIES or sub == RIB_GENERIC or sub == RIB_GENERIC_ADDPATH:
                return self._rib(ts, usec, typ, sub, body)
        elif typ == TABLE_DUMP and (sub == 1 or sub == 2):
            return self._table_dump(ts, usec, typ, sub, body)
        return UnknownRecord(ts, usec, typ, sub, body)

    def _bgp4mp(self, ts, usec, typ, sub, b, p):
        """BGP4MP / BGP4MP_ET record whose body starts at b[p]."""
        info = _BGP4MP_LAYOUT.get(sub)
        if info is None:
            return UnknownRecord(ts, usec, typ, sub, b[p:])
        hdr, hl, as4, addpath, kind = info
        # RFC 6396 §4.4.1: peer AS, local AS, interface index, AFI, peer IP,
        # local IP; the AS fields are 4 octets in the *_AS4 subtypes.
        peer_as, local_as, ifindex, afi = hdr(b, p)
        p += hl
        ips = _IP_CACHE
        if afi == AFI_IPV4:
            q = p + 8
            a = b[p : p + 4]
            peer_ip = ips.get(a) or ip_str(a)
            a = b[p + 4 : q]
            local_ip = ips.get(a) or ip_str(a)
        elif afi == AFI_IPV6:
            q = p + 32
            a = b[p : p + 16]
            peer_ip = ips.get(a) or ip_str(a)
            a = b[p + 16 : q]
            local_ip = ips.get(a) or ip_str(a)
        else:
            raise MrtFormatError("BGP4MP address family %d" % afi)
        if len(b) < q:
            raise MrtFormatError("BGP4MP header overruns the record")
        if kind == 1:
            msg = b[q:]
            update = error = None
            n = len(msg)
            if n < 19:
                error = "BGP message shorter than its 19-octet header"
            elif msg[:16] != _MARKER:
                error = "BGP marker is not all ones"
            elif ((msg[16] << 8) | msg[17]) != n:
                error = "BGP message length %d in a %d-octet record field" % ((msg[16] << 8) | msg[17], n)
            elif msg[18] == 2 and self.parse:
                if as4:
                    try:
                        update = self._parse(msg[19:], CTX_AS4_ADDPATH if addpath else CTX_AS4)
                    except BGPError:
                        update, error, addpath = self._parse_update(msg[19:], as4, addpath)
                else:
                    update, error, addpath = self._parse_update(msg[19:], as4, addpath)
            return Bgp4mpMessage(ts, usec, typ, sub, peer_as, local_as, ifindex, afi, peer_ip, local_ip, msg, update, error, addpath)
        if kind == 0:
            old, new = struct.unpack_from(">HH", b, q)
            return Bgp4mpStateChange(ts, usec, typ, sub, peer_as, local_as, ifindex, afi, peer_ip, local_ip, old, new)
        return self._bgp4mp_entry(ts, usec, typ, sub, b, q, peer_as, local_as, ifindex, afi, peer_ip, local_ip)

    def _parse_update(self, body, as4, addpath):
        """(ParsedUpdate or None, error, addpath) of an UPDATE body."""
        parse = self._parse
        try:
            return parse(body, message_context(as4, addpath)), None, addpath
        except BGPError as exc:
            if not addpath:
                # BIRD 1.6 wrote ADD-PATH sessions under the plain subtypes:
                # accept what only parses with path identifiers.
                try:
                    return parse(body, message_context(as4, True)), None, True
                except BGPError:
                    pass
            return None, str(exc), addpath

    def _bgp4mp_entry(self, ts, usec, typ, sub, b, p, peer_as, local_as, ifindex, afi, peer_ip, local_ip):
        view, status, originated, eafi, safi, nhlen = struct.unpack_from(">HHIHBB", b, p)
        p += 12
        if p + nhlen > len(b):
            raise MrtFormatError("BGP4MP_ENTRY next hop overruns the record")
        nh = b[p : p + nhlen]
        p += nhlen
        maxbits = 32 if eafi == AFI_IPV4 else 128
        addr, plen, p = _packed_prefix(b, p, len(b), maxbits)
        (alen,) = _U16.unpack_from(b, p)
        p += 2
        if p + alen > len(b):
            raise MrtFormatError("BGP4MP_ENTRY attributes overrun the record")
        attrs = b[p : p + alen]
        update = error = None
        if self.parse:
            update, error = self._td1_cache.get(attrs)
        return Bgp4mpEntry(
            ts, usec, typ, sub, peer_as, local_as, ifindex, afi, peer_ip, local_ip,
            view, status, originated, eafi, safi, nh, prefix_text(addr, plen), attrs, update, error,
        )  # fmt: skip

    def _table_dump(self, ts, usec, typ, sub, b):
        # RFC 6396 §4.2: view, sequence, prefix (4 or 16 octets), length,
        # status, originated time, peer IP, peer AS (2 octets), attributes.
        if sub == TABLE_DUMP_AFI_IPV4:
            if len(b) < 22:
                raise MrtFormatError("TABLE_DUMP entry overruns the record")
            view, seq, addr, plen, status, originated, peer, peer_as, alen = _TD1_V4(b)
            p = 22
        else:
            if len(b) < 46:
                raise MrtFormatError("TABLE_DUMP entry overruns the record")
            view, seq, addr, plen, status, originated, peer, peer_as, alen = _TD1_V6(b)
            p = 46
        if p + alen > len(b):
            raise MrtFormatError("TABLE_DUMP attributes overrun the record")
        attrs = b[p : p + alen]
        update = error = None
        if self.parse:
            update, error = self._td1_cache.get(attrs)
        peer_ip = _IP_CACHE.get(peer) or ip_str(peer)
        return TableDump(ts, usec, typ, sub, view, seq, prefix_text(addr, plen), status, originated, peer_ip, peer_as, attrs, update, error)

    def _peer_index(self, ts, usec, typ, sub, b):
        # RFC 6396 §4.3.1.
        collector = ip_str(b[0:4])
        (vlen,) = _U16.unpack_from(b, 4)
        view = b[6 : 6 + vlen].decode("utf-8", "replace")
        p = 6 + vlen
        (count,) = _U16.unpack_from(b, p)
        p += 2
        peers = []
        for _ in range(count):
            ptype = b[p]
            bgp_id = ip_str(b[p + 1 : p + 5])
            w = 16 if ptype & 1 else 4
            ip = b[p + 5 : p + 5 + w]
            p += 5 + w
            if ptype & 2:
                (asn,) = _U32.unpack_from(b, p)
                p += 4
            else:
                (asn,) = _U16.unpack_from(b, p)
                p += 2
            if len(ip) != w:
                raise MrtFormatError("PEER_INDEX_TABLE overruns the record")
            peers.append(Peer(bgp_id, ip_str(ip), asn, bool(ptype & 2)))
        return PeerIndexTable(ts, usec, typ, sub, collector, view, tuple(peers))

    def _rib(self, ts, usec, typ, sub, b):
        (seq,) = _U32.unpack_from(b)
        n = len(b)
        nlri = b""
        if sub == RIB_GENERIC or sub == RIB_GENERIC_ADDPATH:
            # RFC 6396 §4.3.3: AFI, SAFI, then one NLRI entry.
            afi, safi = struct.unpack_from(">HB", b, 4)
            addpath = sub == RIB_GENERIC_ADDPATH
            p = 7
            if p >= n:
                raise MrtFormatError("RIB_GENERIC without NLRI")
            if afi in (AFI_IPV4, AFI_IPV6) and safi in (SAFI_UNICAST, SAFI_MULTICAST):
                addr, plen, q = _packed_prefix(b, p, n, 32 if afi == AFI_IPV4 else 128)
                prefix = prefix_text(addr, plen)
            else:
                # Other families: assume the usual length-in-bits prefix.
                q = p + 1 + ((b[p] + 7) >> 3)
                prefix = ""
            nlri = b[p:q]
            p = q
        else:
            afi, safi, addpath = RIB_FAMILIES[sub]
            addr, plen, p = _packed_prefix(b, 4, n, 32 if afi == AFI_IPV4 else 128)
            prefix = prefix_text(addr, plen)
        (count,) = _U16.unpack_from(b, p)
        p += 2
        entries = []
        parse = self.parse
        cache = self._rib_caches.get((afi, safi))
        if cache is None:
            cache = self._rib_caches[(afi, safi)] = _AttrCache(self.codec.parse_update, (afi, safi))
        get = cache.get
        unpack_entry = _ENTRY_AP if addpath else _ENTRY
        head = 12 if addpath else 8
        for _ in range(count):
            # RFC 6396 §4.3.4 (+ RFC 8050 §4 path identifier).
            if addpath:
                pidx, orig, pid, alen = unpack_entry(b, p)
            else:
                pidx, orig, alen = unpack_entry(b, p)
                pid = 0
            p += head
            if p + alen > n:
                raise MrtFormatError("RIB entry attributes overrun the record")
            attrs = b[p : p + alen]
            p += alen
            if parse:
                update, error = get(attrs)
                entries.append(RibEntry(pidx, orig, attrs, pid, update, error))
            else:
                entries.append(RibEntry(pidx, orig, attrs, pid))
        return RibRecord(ts, usec, typ, sub, seq, afi, safi, prefix, tuple(entries), nlri)


def read(source, codec=None, parse=True):
    """Shorthand: iterate over the records of ``source``."""
    return iter(MrtReader(source, codec=codec, parse=parse))


# ---------------------------------------------------------------- encoding


def encode_header(timestamp, mtype, subtype, body, microsecond=None):
    """One MRT record (RFC 6396 §2-3): for _ET types ``microsecond`` is
    prepended to ``body`` and counted in the length."""
    if mtype in ET_TYPES:
        body = _U32.pack(microsecond or 0) + body
    return _HEADER.pack(timestamp, mtype, subtype, len(body)) + body


def _bgp4mp_head(as4, peer_as, local_as, ifindex, peer_ip, local_ip):
    pb, lb = ip_bytes(peer_ip), ip_bytes(local_ip)
    if len(pb) != len(lb):
        raise ValueError("peer and local addresses of different families")
    afi = AFI_IPV6 if len(pb) == 16 else AFI_IPV4
    fmt = ">IIHH" if as4 else ">HHHH"
    return struct.pack(fmt, peer_as, local_as, ifindex, afi) + pb + lb


# RFC 6793 §9: the 2-octet stand-in for a 4-octet AS number.
AS_TRANS = 23456


def bgp4mp_head(as4, peer_as, local_as, peer_ip, local_ip, ifindex=0):
    """The BGP4MP part that follows the MRT header (RFC 6396 §4.4.1-§4.4.3):
    peer AS, local AS, interface index, AFI, peer IP, local IP.  Constant
    for a session, so a dumper builds it once.  In the 2-octet subtypes an
    AS number above 65535 is written as AS_TRANS (RFC 6793 §9)."""
    if not as4:
        peer_as = peer_as if peer_as <= 0xFFFF else AS_TRANS
        local_as = local_as if local_as <= 0xFFFF else AS_TRANS
    return _bgp4mp_head(as4, peer_as, local_as, ifindex, peer_ip, local_ip)


def encode_bgp4mp_message(timestamp, message, peer_ip, peer_as, local_ip, local_as, *, microsecond=None, subtype=BGP4MP_MESSAGE_AS4, ifindex=0, et=True):
    """A BGP4MP(_ET) MESSAGE* record around ``message`` (with its header)."""
    as4 = MESSAGE_SUBTYPES[subtype][0]
    body = _bgp4mp_head(as4, peer_as, local_as, ifindex, peer_ip, local_ip) + message
    return encode_header(timestamp, BGP4MP_ET if et else BGP4MP, subtype, body, microsecond)


def encode_state_change(timestamp, old_state, new_state, peer_ip, peer_as, local_ip, local_as, *, microsecond=None, as4=True, ifindex=0, et=True):
    sub = BGP4MP_STATE_CHANGE_AS4 if as4 else BGP4MP_STATE_CHANGE
    body = _bgp4mp_head(as4, peer_as, local_as, ifindex, peer_ip, local_ip) + struct.pack(">HH", old_state, new_state)
    return encode_header(timestamp, BGP4MP_ET if et else BGP4MP, sub, body, microsecond)


def encode_peer_index(timestamp, collector_id, peers, view_name=""):
    """PEER_INDEX_TABLE (RFC 6396 §4.3.1); ``peers`` are Peer structs or
    (bgp_id, ip, asn) tuples."""
    name = view_name.encode()
    out = [ip_bytes(collector_id), _U16.pack(len(name)), name, _U16.pack(len(peers))]
    for peer in peers:
        if not isinstance(peer, Peer):
            peer = Peer(*peer)
        ip = ip_bytes(peer.ip)
        wide = peer.as4 or peer.asn > 0xFFFF
        out.append(bytes(((1 if len(ip) == 16 else 0) | (2 if wide else 0),)))
        out.append(ip_bytes(peer.bgp_id))
        out.append(ip)
        out.append(_U32.pack(peer.asn) if wide else _U16.pack(peer.asn))
    return encode_header(timestamp, TABLE_DUMP_V2, PEER_INDEX_TABLE, b"".join(out))


def _pack_prefix(addr, plen):
    return bytes((plen,)) + addr[: (plen + 7) >> 3]


def _attr_value(attrs, code):
    """The value of the first attribute ``code`` in a block, or None."""
    i, n = 0, len(attrs)
    while i + 3 <= n:
        if attrs[i] & 0x10:
            vs = i + 4
            ve = vs + ((attrs[i + 2] << 8) | attrs[i + 3])
        else:
            vs = i + 3
            ve = vs + attrs[i + 2]
        if attrs[i + 1] == code:
            return attrs[vs:ve]
        i = ve
    return None


def rib_attrs(attrs, next_hop=None):
    """RIB entry attributes (RFC 6396 §4.3.4) from a canonical block and a
    next hop: the next hop of a non-IPv4-unicast route goes in an
    abbreviated MP_REACH_NLRI (next hop length + next hop only)."""
    if next_hop is None:
        return attrs
    v = bytes((len(next_hop),)) + next_hop
    return bytes((0x80, 14, len(v))) + v + attrs


def encode_rib(timestamp, sequence, prefix, entries, *, subtype=None):
    """RIB_IPV4/IPV6_UNICAST (or their _ADDPATH forms when any entry has a
    path id) for ``prefix`` ('addr/len'); ``entries`` are RibEntry structs
    or (peer_index, originated, attrs[, path_id]) tuples, attrs in RIB form
    (see rib_attrs)."""
    afi, addr, plen = prefix_bytes(prefix)
    ents = [e if isinstance(e, RibEntry) else RibEntry(*e) for e in entries]
    if subtype is None:
        addpath = any(e.path_id for e in ents)
        subtype = (RIB_IPV6_UNICAST if afi == AFI_IPV6 else RIB_IPV4_UNICAST) + (6 if addpath else 0)
    addpath = subtype >= RIB_IPV4_UNICAST_ADDPATH
    out = [_U32.pack(sequence), _pack_prefix(addr, plen), _U16.pack(len(ents))]
    for e in ents:
        out.append(struct.pack(">HI", e.peer_index, e.originated))
        if addpath:
            out.append(_U32.pack(e.path_id))
        out.append(_U16.pack(len(e.attrs)))
        out.append(e.attrs)
    return encode_header(timestamp, TABLE_DUMP_V2, subtype, b"".join(out))


def encode_record(rec):
    """The bytes of a decoded record (byte-identical to what was read,
    except that host bits past a TABLE_DUMP_V2 prefix length are cleared)."""
    ts, us, typ, sub = rec.timestamp, rec.microsecond, rec.type, rec.subtype
    if isinstance(rec, (UnknownRecord, CorruptRecord)):
        return encode_header(ts, typ, sub, rec.data, us)
    if isinstance(rec, TruncatedRecord):
        raise ValueError("a truncated record cannot be re-encoded")
    if isinstance(rec, Bgp4mpMessage):
        body = _bgp4mp_head(MESSAGE_SUBTYPES[sub][0], rec.peer_as, rec.local_as, rec.ifindex, rec.peer_ip, rec.local_ip)
        return encode_header(ts, typ, sub, body + rec.message, us)
    if isinstance(rec, Bgp4mpStateChange):
        as4 = sub == BGP4MP_STATE_CHANGE_AS4
        body = _bgp4mp_head(as4, rec.peer_as, rec.local_as, rec.ifindex, rec.peer_ip, rec.local_ip)
        return encode_header(ts, typ, sub, body + struct.pack(">HH", rec.old_state, rec.new_state), us)
    if isinstance(rec, Bgp4mpEntry):
        body = _bgp4mp_head(False, rec.peer_as, rec.local_as, rec.ifindex, rec.peer_ip, rec.local_ip)
        nh = rec.next_hop
        _afi, addr, plen = prefix_bytes(rec.prefix)
        body += struct.pack(">HHIHBB", rec.view, rec.status, rec.originated, rec.entry_afi, rec.safi, len(nh)) + nh
        body += _pack_prefix(addr, plen) + _U16.pack(len(rec.attrs)) + rec.attrs
        return encode_header(ts, typ, sub, body, us)
    if isinstance(rec, PeerIndexTable):
        return encode_peer_index(ts, rec.collector_id, rec.peers, rec.view_name)
    if isinstance(rec, RibRecord):
        if sub in RIB_FAMILIES:
            return encode_rib(ts, rec.sequence, rec.prefix, rec.entries, subtype=sub)
        addpath = sub == RIB_GENERIC_ADDPATH
        out = [_U32.pack(rec.sequence), struct.pack(">HB", rec.afi, rec.safi), rec.nlri, _U16.pack(len(rec.entries))]
        for e in rec.entries:
            out.append(struct.pack(">HI", e.peer_index, e.originated))
            if addpath:
                out.append(_U32.pack(e.path_id))
            out.append(_U16.pack(len(e.attrs)))
            out.append(e.attrs)
        return encode_header(ts, typ, sub, b"".join(out), us)
    if isinstance(rec, TableDump):
        _afi, addr, plen = prefix_bytes(rec.prefix)
        body = struct.pack(">HH", rec.view, rec.sequence) + addr + struct.pack(">BBI", plen, rec.status, rec.originated)
        body += ip_bytes(rec.peer_ip) + struct.pack(">HH", rec.peer_as, len(rec.attrs)) + rec.attrs
        return encode_header(ts, typ, sub, body, us)
    raise TypeError("not an MRT record: %r" % (rec,))


# ---------------------------------------------------------------- writer


def _open_output(path, compress, append=False):
    """A binary file for writing: gzip/bzip2 by ``compress`` ("gz", "bz2",
    "" for none) or, when None, by the file name's suffix.  In append mode
    a compressed file gets one more member: RFC 1952 §2.2 (and bzip2) allow
    several in one file, and MrtReader reads them as one stream."""
    if compress is None:
        s = os.fsdecode(path)
        compress = "gz" if s.endswith(".gz") else "bz2" if s.endswith(".bz2") else ""
    mode = "ab" if append else "wb"
    if compress == "gz":
        import gzip

        return gzip.open(path, mode, compresslevel=6)
    if compress == "bz2":
        import bz2

        return bz2.open(path, mode)
    return open(path, mode)


class MrtWriter:
    """Write MRT records to a path (``.gz``/``.bz2`` compress) or a binary
    file object.

    ``write_update`` records a received BGP message as BGP4MP_ET
    MESSAGE_AS4 (MESSAGE_AS4_ADDPATH when the session receives path ids);
    ``write_rib`` writes a TABLE_DUMP_V2 snapshot.  Timestamps default to
    now.  Use as a context manager or call ``close``.
    """

    def __init__(self, target, compress=None, append=False):
        if isinstance(target, (str, bytes, os.PathLike)):
            self._f = _open_output(target, compress, append)
            self._own = True
        else:
            self._f = target
            self._own = False
        self.records = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if self._f is not None:
            if self._own:
                self._f.close()
            else:
                self._f.flush()
            self._f = None

    def write_raw(self, data):
        """One already-encoded record."""
        self._f.write(data)
        self.records += 1

    def flush(self):
        self._f.flush()

    def write_record(self, rec):
        """Re-encode a decoded record (see encode_record)."""
        self.write_raw(encode_record(rec))

    def write_update(self, message, peer_ip, peer_as, local_ip, local_as, timestamp=None, addpath=False, ifindex=0, as4=True):
        """One received BGP message (header included; a bare UPDATE body
        gets a header) as BGP4MP_ET MESSAGE_AS4 (RFC 6396 §4.4.3, §4.4; RFC
        8050 §3 for the _ADDPATH subtype).  The message must use 4-octet AS
        numbers (the canonical form a fastbgp session produces) unless
        ``as4`` is False: a message as received on a session without the
        4-octet AS capability goes in BGP4MP_MESSAGE (RFC 6396 §4.4.2),
        whose subtype tells readers the AS_PATH is 2 octets wide."""
        if message[:16] != b"\xff" * 16:
            n = len(message) + 19
            message = b"\xff" * 16 + bytes((n >> 8, n & 0xFF, 2)) + message
        if timestamp is None:
            timestamp = time.time()
        sec = int(timestamp)
        usec = int(round((timestamp - sec) * 1e6))
        if usec >= 1000000:
            sec, usec = sec + 1, usec - 1000000
        if as4:
            sub = BGP4MP_MESSAGE_AS4_ADDPATH if addpath else BGP4MP_MESSAGE_AS4
        else:
            sub = BGP4MP_MESSAGE_ADDPATH if addpath else BGP4MP_MESSAGE
        body = bgp4mp_head(as4, peer_as, local_as, peer_ip, local_ip, ifindex) + message
        self.write_raw(encode_header(sec, BGP4MP_ET, sub, body, usec))

    def write_state_change(self, old_state, new_state, peer_ip, peer_as, local_ip, local_as, timestamp=None):
        if timestamp is None:
            timestamp = time.time()
        sec = int(timestamp)
        usec = min(999999, int(round((timestamp - sec) * 1e6)))
        self.write_raw(encode_state_change(sec, old_state, new_state, peer_ip, peer_as, local_ip, local_as, microsecond=usec))

    def write_rib(self, peers, routes, timestamp=None, collector_id="0.0.0.0", view_name=""):
        """A TABLE_DUMP_V2 snapshot: PEER_INDEX_TABLE of ``peers`` (Peer or
        (bgp_id, ip, asn)), then one RIB record per prefix.  ``routes``
        yields (prefix 'addr/len', [(peer_index, attrs, next_hop[, path_id,
        originated])]) with ``attrs`` a canonical (4-octet AS) block without
        MP_REACH_NLRI; ``next_hop`` (bytes, or None to leave the
        attributes alone) goes in an abbreviated MP_REACH_NLRI (RFC 6396
        §4.3.4) unless the route is IPv4 and ``attrs`` has that NEXT_HOP
        already.  IPv4 and IPv6 prefixes may be mixed."""
        ts = int(time.time() if timestamp is None else timestamp)
        self.write_raw(encode_peer_index(ts, collector_id, list(peers), view_name))
        seq = 0
        for prefix, paths in routes:
            afi = AFI_IPV6 if ":" in prefix else AFI_IPV4
            entries = []
            for path in paths:
                pidx, attrs, nh = path[0], path[1], path[2]
                pid = path[3] if len(path) > 3 else 0
                orig = path[4] if len(path) > 4 else ts
                # IPv4 routes keep their NEXT_HOP; any other next hop goes
                # in an abbreviated MP_REACH_NLRI, which readers prefer.
                if nh is not None and (afi == AFI_IPV6 or _attr_value(attrs, 3) != nh):
                    attrs = rib_attrs(attrs, nh)
                entries.append(RibEntry(pidx, orig, attrs, pid))
            self.write_raw(encode_rib(ts, seq & 0xFFFFFFFF, prefix, entries))
            seq += 1


class RotatingMrtWriter:
    """An MrtWriter that moves to a new file every ``interval_s`` seconds,
    the file name being ``path_template`` through time.strftime at the start
    of the interval (e.g. ``"updates.%Y%m%d.%H%M.gz"``), like the MRT dump
    rotation of BIRD and GoBGP.  Intervals are aligned to multiples of
    ``interval_s`` since the epoch so files start on round times.

    ``clock`` (default time.time) is what decides the current interval.
    """

    def __init__(self, path_template, interval_s, compress=None, clock=time.time, utc=True):
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        self.template = path_template
        self.interval = interval_s
        self.compress = compress
        self.clock = clock
        self.utc = utc
        self._writer = None
        self._start = None
        self.paths = []  # every file opened, in order

    def _path(self, start):
        t = time.gmtime(start) if self.utc else time.localtime(start)
        return time.strftime(self.template, t)

    def current(self, now=None):
        """The MrtWriter for ``now`` (rotating if its interval ended)."""
        if now is None:
            now = self.clock()
        start = int(now // self.interval * self.interval)
        if self._writer is None or start != self._start:
            self.rotate(start)
        return self._writer

    def rotate(self, start=None):
        if self._writer is not None:
            self._writer.close()
        if start is None:
            start = int(self.clock() // self.interval * self.interval)
        self._start = start
        path = self._path(start)
        d = os.path.dirname(path)
        if d:
            os.makedirs(d, exist_ok=True)
        # Appending keeps what an earlier run wrote in the same interval.
        self._writer = MrtWriter(path, self.compress, append=True)
        self.paths.append(path)

    def write_update(self, message, peer_ip, peer_as, local_ip, local_as, timestamp=None, addpath=False, as4=True):
        if timestamp is None:
            timestamp = self.clock()
        self.current(timestamp).write_update(message, peer_ip, peer_as, local_ip, local_as, timestamp, addpath, as4=as4)

    def path_for(self, start):
        """The file name of the interval starting at ``start`` (epoch s)."""
        return self._path(start)

    def write_state_change(self, old_state, new_state, peer_ip, peer_as, local_ip, local_as, timestamp=None):
        if timestamp is None:
            timestamp = self.clock()
        self.current(timestamp).write_state_change(old_state, new_state, peer_ip, peer_as, local_ip, local_as, timestamp)

    def write_rib(self, peers, routes, timestamp=None, collector_id="0.0.0.0", view_name=""):
        if timestamp is None:
            timestamp = self.clock()
        self.current(timestamp).write_rib(peers, routes, timestamp, collector_id, view_name)

    def close(self):
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
