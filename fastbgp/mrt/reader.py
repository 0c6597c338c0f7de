"""MRT routing information export format (RFC 6396): a streaming reader.

Reading::

    for rec in MrtReader("updates.20160811.1600.gz"):
        if isinstance(rec, Bgp4mpMessage) and rec.update is not None:
            ...                     # rec.update is the codec's ParsedUpdate

The reader streams: it holds one decompressed chunk (plus the record being
assembled) at a time, whatever the file size; gzip, bzip2 and xz are
recognised by their magic bytes, anything else is read as plain MRT.

Every record becomes a small frozen msgspec Struct (the types are defined in
:mod:`fastbgp.mrt.records`; this module re-exports them with the type and
subtype numbers, so ``reader.Bgp4mpMessage`` names what it yields).  BGP
UPDATEs, and the attributes of TABLE_DUMP / TABLE_DUMP_V2 RIB entries, go
through ``fastbgp.wire.codec.parse_update`` (or the implementation passed as
``codec=``) with the session context the record type implies, so consumers
see the same ``ParsedUpdate`` (canonical 4-octet attribute block, packed
prefixes) a live session produces.  A record that cannot be decoded does
not stop the stream: it is yielded as :class:`CorruptRecord` (or the
message keeps ``update=None`` and names the problem in ``error``), and a
file cut short ends with a :class:`TruncatedRecord`, also left in
``reader.truncated``.

Writing is :mod:`fastbgp.mrt.writer`.
"""

import os
import struct
import zlib

from fastbgp.wire.as4 import attr_spans, encode_attr
from fastbgp.wire.constants import AFI_IPV4, AFI_IPV6, ATTR_MP_REACH_NLRI, FLAG_EXTENDED_LENGTH, SAFI_MULTICAST, SAFI_UNICAST
from fastbgp.wire.errors import BGPError

# The record vocabulary is part of the reader's API: ``reader.RibRecord`` is
# what MrtReader yields.  It is defined once, in records.py; the record
# classes (msgspec Structs), the codec and the session contexts are loaded
# on first use (module __getattr__ below), so that ``fastbgp mrt dump``,
# whose compiled fast path prints RIB runs from their bytes, starts without
# msgspec (about 14 ms).
from fastbgp.mrt import records
from fastbgp.mrt.records import (  # noqa: F401 (re-exported)
    BGP4MP,
    BGP4MP_ENTRY,
    BGP4MP_ET,
    BGP4MP_MESSAGE,
    BGP4MP_MESSAGE_ADDPATH,
    BGP4MP_MESSAGE_AS4,
    BGP4MP_MESSAGE_AS4_ADDPATH,
    BGP4MP_MESSAGE_AS4_LOCAL,
    BGP4MP_MESSAGE_AS4_LOCAL_ADDPATH,
    BGP4MP_MESSAGE_LOCAL,
    BGP4MP_MESSAGE_LOCAL_ADDPATH,
    BGP4MP_SNAPSHOT,
    BGP4MP_STATE_CHANGE,
    BGP4MP_STATE_CHANGE_AS4,
    ET_TYPES,
    HEADER,
    MESSAGE_SUBTYPES,
    PEER_INDEX_TABLE,
    RIB_FAMILIES,
    RIB_GENERIC,
    RIB_GENERIC_ADDPATH,
    RIB_IPV4_MULTICAST,
    RIB_IPV4_MULTICAST_ADDPATH,
    RIB_IPV4_UNICAST,
    RIB_IPV4_UNICAST_ADDPATH,
    RIB_IPV6_MULTICAST,
    RIB_IPV6_MULTICAST_ADDPATH,
    RIB_IPV6_UNICAST,
    RIB_IPV6_UNICAST_ADDPATH,
    STATE_NAMES,
    SUBTYPE_NAMES,
    TABLE_DUMP,
    TABLE_DUMP_AFI_IPV4,
    TABLE_DUMP_AFI_IPV6,
    TABLE_DUMP_V2,
    TYPE_NAMES,
    MrtFormatError,
    ip_bytes,
    prefix_bytes,
)

__all__ = (
    "MrtReader", "read", "ip_str", "prefix_text", "message_context",
    "CTX_AS2", "CTX_AS4", "CTX_AS2_ADDPATH", "CTX_AS4_ADDPATH", "CHUNK", "MAX_RECORD", "MRT_TYPES", "not_mrt_reason",
) + records.__all__  # fmt: skip

_ALL_FAMILIES = frozenset(((AFI_IPV4, SAFI_UNICAST), (AFI_IPV4, SAFI_MULTICAST), (AFI_IPV6, SAFI_UNICAST), (AFI_IPV6, SAFI_MULTICAST)))
# Session contexts implied by the record subtypes.  RFC 8654 messages may sit
# in any MRT record, so extended_message is always on; ebgp stays off so no
# LOCAL_PREF is dropped from what the collector saw.
_CODEC = None


def _wire():
    """The default codec (fastbgp.wire.codec's selection), imported with the
    session contexts CTX_* (wire.types' msgspec Structs) on first need."""
    global _CODEC, CTX_AS2, CTX_AS4, CTX_AS2_ADDPATH, CTX_AS4_ADDPATH
    if _CODEC is None:
        from fastbgp.wire import codec
        from fastbgp.wire.types import Context

        CTX_AS2 = Context(as4=False, extended_message=True)
        CTX_AS4 = Context(as4=True, extended_message=True)
        CTX_AS2_ADDPATH = Context(as4=False, addpath_rx=_ALL_FAMILIES, extended_message=True)
        CTX_AS4_ADDPATH = Context(as4=True, addpath_rx=_ALL_FAMILIES, extended_message=True)
        _CODEC = codec
    return _CODEC


def __getattr__(name):
    # PEP 562: ``reader.RibRecord`` and ``reader.CTX_AS4`` load on first use.
    if name in records.STRUCT_NAMES:
        return getattr(records, name)
    if name.startswith("CTX_"):
        _wire()
        return globals()[name]
    raise AttributeError("module %r has no attribute %r" % (__name__, name))


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
    _wire()
    if addpath:
        return CTX_AS4_ADDPATH if as4 else CTX_AS2_ADDPATH
    return CTX_AS4 if as4 else CTX_AS2


# ---------------------------------------------------------------- decompression

CHUNK = 1 << 18
# RFC 6396 §4 and the IANA MRT type registry: 0-10 are the deprecated
# types of §5, then OSPFv2, TABLE_DUMP(_V2), BGP4MP(_ET), ISIS(_ET),
# OSPFv3(_ET).  A file whose first header names another type is not MRT.
MRT_TYPES = frozenset(range(11)) | {11, 12, 13, 16, 17, 32, 33, 48, 49}
# A sanity bound on one record: the largest real ones (TABLE_DUMP_V2 RIB
# records of prefixes seen by thousands of peers) are a few MiB.
MAX_RECORD = 1 << 26


def not_mrt_reason(head, max_record=MAX_RECORD):
    """Why a stream starting with ``head`` is not MRT, or None: its first
    12 octets must be an RFC 6396 §2 header of a known type and a sane
    length."""
    if len(head) < 12:
        return "%d octets, shorter than one MRT record header (12 octets)" % len(head)
    _ts, typ, _sub, ln = HEADER.unpack_from(head)
    if typ not in MRT_TYPES:
        return "the first record header has type %d, which no MRT record has (RFC 6396 §4)" % typ
    if ln > max_record:
        return "the first record header declares %d octets" % ln
    return None


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

_TD1_V4 = struct.Struct(">HH4sBBI4sHH").unpack_from
_ENTRY = struct.Struct(">HIH").unpack_from
_ENTRY_AP = struct.Struct(">HIIH").unpack_from
_TD1_V6 = struct.Struct(">HH16sBBI16sHH").unpack_from
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_IP_CACHE = {}
_DOT = ["%d." % i for i in range(256)]
_DEC = [str(i) for i in range(256)]
_SLASH = ["/%d" % i for i in range(256)]
_NTOP6 = None


def ntop6(b):
    """inet_ntop of a 16-octet IPv6 address.  socket is imported on the
    first IPv6 address, not at start-up (an IPv4 dump never needs it)."""
    global _NTOP6
    if _NTOP6 is None:
        import functools
        import socket

        _NTOP6 = functools.partial(socket.inet_ntop, socket.AF_INET6)
    return _NTOP6(b)


def ntop4(b):
    """Dotted quad of a 4-octet IPv4 address (table lookups, no sprintf);
    ValueError for any other length, as inet_ntop."""
    if len(b) != 4:
        raise ValueError("illegal IP address length %d" % len(b))
    return f"{_DOT[b[0]]}{_DOT[b[1]]}{_DOT[b[2]]}{_DEC[b[3]]}"


def ip_str(b):
    """Text form of a 4- or 16-octet address (cached: peers repeat)."""
    s = _IP_CACHE.get(b)
    if s is None:
        if len(_IP_CACHE) > 4096:
            _IP_CACHE.clear()
        s = _IP_CACHE[b] = ntop4(b) if len(b) == 4 else ntop6(b)
    return s


def prefix_text(addr, plen):
    """'address/length' (uncached: prefixes rarely repeat within a file)."""
    if len(addr) == 4:
        return f"{_DOT[addr[0]]}{_DOT[addr[1]]}{_DOT[addr[2]]}{_DEC[addr[3]]}{_SLASH[plen]}"
    return ntop6(addr) + _SLASH[plen]


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
    # The block comes straight from the file (parse_update validates it
    # after this): walk only as far as a whole header fits -- 3 octets, 4
    # with Extended Length -- and leave what follows to parse_update.
    try:
        spans = attr_spans(attrs, 0, len(attrs) - 2)
    except IndexError:  # the last 3 octets start an Extended Length header
        spans = attr_spans(attrs, 0, len(attrs) - 3)
    for flags, t, vs, ve, start in spans:
        if t == ATTR_MP_REACH_NLRI and ve > vs and attrs[vs] + 1 == ve - vs:
            nh = attrs[vs + 1 : ve]
            value = bytes((afi >> 8, afi & 0xFF, safi, len(nh))) + nh + b"\x00"
            return attrs[:start] + encode_attr(flags | FLAG_EXTENDED_LENGTH, ATTR_MP_REACH_NLRI, value) + attrs[ve:]
    return attrs


def peer_index_fields(b):
    """(collector id, view name, [(bgp_id, ip, asn, as4)]) of a
    PEER_INDEX_TABLE body; MrtFormatError, IndexError or struct.error if it
    is malformed.  The one parser of the table: MrtReader builds Peer
    records from it, the -m fast path of fastbgp.mrt.dump reads it direct."""
    # RFC 6396 §4.3.1.
    if len(b) < 8:
        raise MrtFormatError("PEER_INDEX_TABLE header overruns the record")
    collector = ip_str(b[0:4])
    (vlen,) = _U16.unpack_from(b, 4)
    view = b[6 : 6 + vlen].decode("utf-8", "replace")
    p = 6 + vlen
    (count,) = _U16.unpack_from(b, p)
    p += 2
    peers = []
    for _ in range(count):
        ptype = b[p]
        w = 16 if ptype & 1 else 4
        if p + 5 + w > len(b):
            raise MrtFormatError("PEER_INDEX_TABLE overruns the record")
        bgp_id = ip_str(b[p + 1 : p + 5])
        ip = b[p + 5 : p + 5 + w]
        p += 5 + w
        if ptype & 2:
            (asn,) = _U32.unpack_from(b, p)
            p += 4
        else:
            (asn,) = _U16.unpack_from(b, p)
            p += 2
        peers.append((bgp_id, ip_str(ip), asn, bool(ptype & 2)))
    return collector, view, peers


class _AttrCache:
    """Bounded cache of (ParsedUpdate, error) of attribute-only UPDATEs
    keyed by the raw attribute bytes: RIB dumps repeat the same attributes
    for many prefixes, so each distinct block is validated once.

    ``family`` (afi, safi) marks RIB entry attributes (RFC 6396 §4.3.4:
    4-octet AS, abbreviated MP_REACH_NLRI); without it the attributes are
    TABLE_DUMP ones (2-octet AS)."""

    __slots__ = ("data", "family", "limit", "parse")

    def __init__(self, parse, family=None, limit=1 << 16):
        _wire()  # CTX_AS2 / CTX_AS4
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

    def __init__(self, source, codec=None, parse=True, chunk=CHUNK, max_record=MAX_RECORD, fast=None):
        self.source = source
        # fast(buf, pos) -> (records consumed, new pos): a consumer that
        # handles runs of whole records itself (the compiled -m dump); the
        # records it declines are decoded and yielded as usual.
        self.fast = fast
        self.max_record = max_record
        self._codec = codec  # None: fastbgp.wire.codec's selection, loaded on first use
        self.parse = parse
        self.chunk = chunk
        self.truncated = None
        self.records = 0
        self.corrupt = 0
        self.stream_errors = []  # decompression problems (the stream ended there)
        self.not_mrt = None  # why the stream is not MRT at all (then nothing is yielded)
        self.offset = 0  # of the last record yielded, in the decompressed stream
        self._rib_caches = {}  # (afi, safi) -> _AttrCache of RIB entry attributes

    @property
    def codec_choice(self):
        """The codec given to the constructor (None: the default, which
        ``codec`` loads on first use)."""
        return self._codec

    def __getattr__(self, name):
        # codec, _parse and _td1_cache (TABLE_DUMP / BGP4MP_ENTRY attributes)
        # are made on first use: a dump the fast path prints needs none.
        if name not in ("codec", "_parse", "_td1_cache"):
            raise AttributeError("%r object has no attribute %r" % (self.__class__.__name__, name))
        codec = _wire() if self._codec is None else self._codec
        _wire()
        self.codec = codec
        self._parse = codec.parse_update
        self._td1_cache = _AttrCache(codec.parse_update)
        return getattr(self, name)

    def __iter__(self):
        f, own = _open_source(self.source)
        try:
            # Framing and dispatch share one generator frame: this loop runs
            # once per record, so every layer saved shows in dump speed.
            chunks = _decompressed_chunks(f, self.chunk, self.stream_errors)
            buf = b""
            pos = 0
            base = 0  # stream offset of buf[0]
            unpack = HEADER.unpack_from
            bgp4mp = self._bgp4mp
            other = self._other
            fast = self.fast
            while True:
                if fast is not None:
                    k, pos = fast(buf, pos)
                    self.records += k
                n = len(buf)
                if n - pos >= 12:
                    ts, typ, sub, ln = unpack(buf, pos)
                    end = pos + 12 + ln
                    if end <= n:
                        body = buf[pos + 12 : end]
                        offset = self.offset = base + pos
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
                            rec = records.CorruptRecord(ts, usec, typ, sub, offset, str(exc) or exc.__class__.__name__, body)
                        yield rec
                        continue
                    if ln > self.max_record:
                        # No MRT record is that long: the stream is not MRT
                        # (or lost its framing), and RFC 6396 has no marker
                        # to resynchronise on.  Stop rather than buffer it.
                        self.corrupt += 1
                        reason = "record length %d exceeds %d: not an MRT stream from here on" % (ln, self.max_record)
                        self.stream_errors.append(reason)
                        yield records.CorruptRecord(ts, 0, typ, sub, base + pos, reason, b"")
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
                if base == 0 and buf:
                    self.not_mrt = not_mrt_reason(buf, self.max_record)
                    if self.not_mrt is not None:
                        return
                if len(buf) < need:
                    if buf:
                        # RFC 6396 gives no way to resynchronise; a cut
                        # file just ends here.
                        if len(buf) >= 12:
                            ts, typ, sub, ln = unpack(buf, 0)
                            rec = records.TruncatedRecord(ts, 0, typ, sub, base, ln, buf[12:])
                        else:
                            rec = records.TruncatedRecord(0, 0, 0, 0, base, 0, buf)
                        self.truncated = rec
                        yield rec
                    return
        finally:
            if own:
                f.close()

    # -- decoding

    def rib_attrs(self, afi, safi, attrs):
        """(ParsedUpdate or None, error) of a TABLE_DUMP_V2 RIB entry's
        attributes, as the RibEntry yielded for them would carry."""
        cache = self._rib_caches.get((afi, safi))
        if cache is None:
            cache = self._rib_caches[(afi, safi)] = _AttrCache(self.codec.parse_update, (afi, safi))
        return cache.get(attrs)

    def table_dump_attrs(self, attrs):
        """(ParsedUpdate or None, error) of TABLE_DUMP (2-octet AS)
        attributes, as the TableDump yielded for them would carry."""
        return self._td1_cache.get(attrs)

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
        return records.UnknownRecord(ts, usec, typ, sub, body)

    def _bgp4mp(self, ts, usec, typ, sub, b, p):
        """BGP4MP / BGP4MP_ET record whose body starts at b[p]."""
        info = _BGP4MP_LAYOUT.get(sub)
        if info is None:
            return records.UnknownRecord(ts, usec, typ, sub, b[p:])
        hdr, hl, as4, addpath, kind = info
        # RFC 6396 §4.4.1: peer AS, local AS, interface index, AFI, peer IP,
        # local IP; the AS fields are 4 octets in the *_AS4 subtypes.
        peer_as, local_as, ifindex, afi = hdr(b, p)
        p += hl
        if afi == AFI_IPV4:
            w = 4
        elif afi == AFI_IPV6:
            w = 16
        else:
            raise MrtFormatError("BGP4MP address family %d" % afi)
        q = p + 2 * w
        # Checked before the addresses are read: a cut one is not an address.
        if len(b) < q:
            raise MrtFormatError("BGP4MP header overruns the record")
        ips = _IP_CACHE
        a = b[p : p + w]
        peer_ip = ips.get(a) or ip_str(a)
        a = b[p + w : q]
        local_ip = ips.get(a) or ip_str(a)
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
            return records.Bgp4mpMessage(ts, usec, typ, sub, peer_as, local_as, ifindex, afi, peer_ip, local_ip, msg, update, error, addpath)
        if kind == 0:
            old, new = struct.unpack_from(">HH", b, q)
            return records.Bgp4mpStateChange(ts, usec, typ, sub, peer_as, local_as, ifindex, afi, peer_ip, local_ip, old, new)
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
        return records.Bgp4mpEntry(
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
        return records.TableDump(ts, usec, typ, sub, view, seq, prefix_text(addr, plen), status, originated, peer_ip, peer_as, attrs, update, error)

    def _peer_index(self, ts, usec, typ, sub, b):
        collector, view, peers = peer_index_fields(b)
        peer = records.Peer
        return records.PeerIndexTable(ts, usec, typ, sub, collector, view, tuple(peer(*p) for p in peers))

    def _rib(self, ts, usec, typ, sub, b):
        entry = records.RibEntry
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
                entries.append(entry(pidx, orig, attrs, pid, update, error))
            else:
                entries.append(entry(pidx, orig, attrs, pid))
        return records.RibRecord(ts, usec, typ, sub, seq, afi, safi, prefix, tuple(entries), nlri)


def read(source, codec=None, parse=True):
    """Shorthand: iterate over the records of ``source``."""
    return iter(MrtReader(source, codec=codec, parse=parse))
