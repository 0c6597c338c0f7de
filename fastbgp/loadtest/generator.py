"""Synthetic tables, pre-encoded once and shared.

A :class:`Stream` is a run of finished BGP messages in one buffer with the
offset where each message ends and the running prefix count: sessions send
it in chunks that always end on a message boundary (so a KEEPALIVE or a
canary written between two chunks lands between whole messages).  Sessions
that send the same table share one Stream; when their ASN or next hop
differs from the one it was encoded with, :meth:`Stream.chunk` hands out a
copy with those two fields rewritten (a memcpy plus two stores per
message) instead of a second encoding.

:class:`TablePlan` decides which table each emulated peer sends (identical,
overlapping or disjoint ranges) and builds the Streams for the encoding a
session negotiated (RFC 6793 4- or 2-octet AS, RFC 7911 ADD-PATH, RFC 8654
extended messages).
"""

from __future__ import annotations

import ipaddress
import math
import struct
from typing import Optional

from fastbgp.wire import as4 as _as4
from fastbgp.wire import codec
from fastbgp.wire.types import Context
from fastbgp.wire.constants import AFI_IPV4, AFI_IPV6, AS_TRANS, SAFI_UNICAST
from fastbgp.loadtest import gen
from fastbgp.loadtest.scenario import Table, length_weights, parse_community
from fastbgp.wire.communities import parse_large_community

__all__ = ["Encoding", "Stream", "TablePlan", "Attrs", "build_attrs", "lut_for", "CANARY_V4", "CANARY_V6",
           "canary_prefix", "DiscardSink"]

DEFAULT_BASE = {"ipv4": "16.0.0.0", "ipv6": "2a00::"}
# First address a table may not reach: class D for IPv4 (RFC 5771), the end
# of 2000::/3 global unicast for IPv6 (RFC 4291 §2.4).
LIMIT = {"ipv4": "224.0.0.0", "ipv6": "4000::"}
# Canaries live in the benchmarking ranges (RFC 2544 / RFC 5180), never in
# a synthetic table.
CANARY_V4 = ipaddress.ip_network("198.18.0.0/15")
CANARY_V6 = ipaddress.ip_network("2001:2::/48")
# Origin ASNs per group come from the private ranges (RFC 6996).
ORIGIN_BASE_4 = 4_200_000_000
ORIGIN_BASE_2 = 64512
SYNTH_PATH = (64496, 64497, 64498, 64499, 64500, 64501, 64502, 64503)  # RFC 5398 documentation ASNs

CHUNK = 64 * 1024
_I64 = struct.Struct("=q")


class Encoding(tuple):
    """(as4, addpath, maxlen, cap): what a session negotiated, as the key
    of the encoded table it can share."""

    __slots__ = ()

    def __new__(cls, as4=True, addpath=False, maxlen=4096, cap=0):
        return tuple.__new__(cls, (bool(as4), bool(addpath), int(maxlen), int(cap)))

    as4 = property(lambda self: self[0])
    addpath = property(lambda self: self[1])
    maxlen = property(lambda self: self[2])
    cap = property(lambda self: self[3])

    def context(self, family="ipv4") -> Context:
        fam = (AFI_IPV4 if family == "ipv4" else AFI_IPV6, SAFI_UNICAST)
        ap = frozenset([fam]) if self.addpath else frozenset()
        return Context(as4=self.as4, addpath_tx=ap, addpath_rx=ap, extended_message=self.maxlen > 4096)


class Stream:
    """Pre-encoded messages: ``buf`` holds them back to back, ``ends`` the
    end offset of each (int64), ``cum`` the prefixes in messages 0..i.

    ``as_rel``/``nh_rel``: where in every message the first AS of the
    AS_PATH and the next hop sit (-1: not patchable), ``asn``/``nh`` the
    values encoded there."""

    __slots__ = ("buf", "ends", "cum", "_ends", "_cum", "n_messages", "n_prefixes", "as_rel", "asn", "nh_rel",
                 "nh", "_bounds", "kind", "view", "timing")

    def __init__(self, buf, ends, cum, *, as_rel=-1, asn=b"", nh_rel=-1, nh=b"", kind="announce"):
        self.buf = buf
        self.ends = ends
        self.cum = cum
        self._ends = memoryview(ends).cast("q")
        self._cum = memoryview(cum).cast("q")
        self.n_messages = len(self._ends)
        self.n_prefixes = self._cum[-1] if self.n_messages else 0
        self.as_rel = as_rel
        self.asn = asn
        self.nh_rel = nh_rel
        self.nh = nh
        self._bounds = {}
        self.kind = kind
        self.view = memoryview(buf)
        self.timing = None  # replayed updates: original time of each message

    @classmethod
    def from_messages(cls, msgs, counts, kind="announce"):
        """A Stream of ``msgs`` (bytes each) announcing/withdrawing
        ``counts[i]`` prefixes each."""
        ends = bytearray()
        cum = bytearray()
        off = 0
        total = 0
        for m, c in zip(msgs, counts):
            off += len(m)
            total += c
            ends += _I64.pack(off)
            cum += _I64.pack(total)
        return cls(b"".join(msgs), bytes(ends), bytes(cum), kind=kind)

    @property
    def octets(self) -> int:
        return self._ends[-1] if self.n_messages else 0

    def bounds(self, target=CHUNK, upto=None) -> list:
        """Message indexes ending each chunk of about ``target`` octets."""
        key = (target, upto)
        b = self._bounds.get(key)
        if b is None:
            if upto is None or upto >= self.n_messages:
                b = gen.chunk_bounds(self.ends, target) if self.n_messages else []
            else:
                b = gen.chunk_bounds(self.ends[: upto * 8], target) if upto else []
            self._bounds[key] = b
        return b

    def start(self, i) -> int:
        return self._ends[i - 1] if i else 0

    def prefixes(self, i0, i1) -> int:
        """Prefixes in messages i0..i1-1."""
        if i1 <= i0:
            return 0
        return self._cum[i1 - 1] - (self._cum[i0 - 1] if i0 else 0)

    def messages_for(self, prefixes) -> int:
        """The fewest leading messages holding at least ``prefixes`` prefixes."""
        lo, hi = 0, self.n_messages
        while lo < hi:
            mid = (lo + hi) // 2
            if self._cum[mid] >= prefixes:
                hi = mid
            else:
                lo = mid + 1
        return min(lo + 1, self.n_messages)

    def needs_patch(self, asn: bytes, nh: bytes) -> bool:
        return (self.as_rel >= 0 and asn != self.asn) or (self.nh_rel >= 0 and nh != self.nh)

    def chunk(self, i0, i1, asn=None, nh=None):
        """Messages i0..i1-1: a view of the shared buffer, or a patched copy
        when this session's first AS / next hop differ."""
        if asn is not None and self.needs_patch(asn, nh):
            return gen.patch_chunk(self.buf, self.ends, i0, i1,
                                   self.as_rel if asn != self.asn else -1, asn,
                                   self.nh_rel if nh != self.nh else -1, nh)
        return self.view[self.start(i0) : self._ends[i1 - 1]]

    def messages(self) -> list:
        """Every message as bytes (tests, small streams)."""
        out = []
        s = 0
        for e in self._ends:
            out.append(bytes(self.buf[s:e]))
            s = e
        return out


class DiscardSink:
    """A transport stand-in that drops what it is given: for measuring the
    generator alone."""

    def __init__(self):
        self.octets = 0
        self.writes = 0

    def write(self, data):
        self.octets += len(data)
        self.writes += 1

    def writelines(self, items):
        for d in items:
            self.octets += len(d)
        self.writes += 1


# ------------------------------------------------------------------ attributes


class Attrs:
    """The attribute block of one table for one encoding and its patch
    points (offsets inside ``head``)."""

    __slots__ = ("head", "mp_head", "tail", "med_off", "origin_off", "origin_width", "origin_base", "origin_span",
                 "as_off", "as_width", "nh_off", "nh_in_mp", "nh")

    def message_offsets(self):
        """(as_rel, nh_rel): offsets from the start of a message."""
        as_rel = 23 + self.as_off if self.as_off >= 0 else -1
        if self.nh_off < 0:
            nh_rel = -1
        elif self.nh_in_mp:
            nh_rel = 23 + len(self.head) + self.nh_off
        else:
            nh_rel = 23 + self.nh_off
        return as_rel, nh_rel


def _attr(flags, code, value):
    return _as4.encode_attr(flags, code, value)


def build_attrs(table: Table, *, first_as: Optional[int], next_hop: bytes, as4: bool, family: str) -> Attrs:
    """Attributes for ``table`` as a session with ``first_as`` prepended
    (eBGP, RFC 4271 §5.1.2; None for iBGP) sends them, encoded for a 4- or
    2-octet AS session (RFC 6793), ``next_hop`` 4 or 16 octets."""
    a = Attrs()
    if table.as_path:
        middle = list(table.as_path)
    else:
        n = table.as_path_length
        middle = [SYNTH_PATH[i % len(SYNTH_PATH)] for i in range(max(n - 1, 0))] + ([0] if n else [])
    has_origin = bool(middle) and not table.as_path
    if not table.as_path and middle:
        # Placeholder: the origin AS is written per group.
        middle[-1] = ORIGIN_BASE_4 if as4 else ORIGIN_BASE_2
    path = ([first_as] if first_as is not None else []) + middle
    need4 = any(x > 0xFFFF for x in path)
    width = 4 if as4 else 2
    if as4:
        seg = _as4.encode_segments([(2, path)], 4) if path else b""
        as4_path = b""
    else:
        # RFC 6793 §4.2.2: a 2-octet session carries AS_TRANS for 4-octet
        # ASNs and the real path in AS4_PATH.
        seg = _as4.encode_segments([(2, [x if x <= 0xFFFF else AS_TRANS for x in path])], 2) if path else b""
        as4_path = _as4.encode_segments([(2, path)], 4) if need4 else b""
    origin_code = {"igp": 0, "egp": 1, "incomplete": 2}[table.origin]
    head = bytearray()
    head += _attr(0x40, 1, bytes((origin_code,)))
    aspath = _attr(0x40, 2, seg)
    hdr = len(aspath) - len(seg)
    a.as_off = len(head) + hdr + 2 if first_as is not None and path else -1
    a.as_width = width
    a.origin_width = width
    if has_origin and not need4:
        a.origin_off = len(head) + hdr + 2 + (len(path) - 1) * width
    else:
        a.origin_off = -1
    a.origin_base = ORIGIN_BASE_4 if as4 else ORIGIN_BASE_2
    a.origin_span = min(table.origin_asns, 0xFFFFFFFE - ORIGIN_BASE_4) if as4 else min(table.origin_asns, 65534 - ORIGIN_BASE_2)
    head += aspath
    a.nh = next_hop
    if family == "ipv4":
        a.nh_off = len(head) + 3
        a.nh_in_mp = False
        head += _attr(0x40, 3, next_hop)
    # MED: optional non-transitive (RFC 4271 §5.1.4); group g gets med + g.
    a.med_off = len(head) + 3
    head += _attr(0x80, 4, table.med.to_bytes(4, "big"))
    if table.local_pref is not None and first_as is None:
        head += _attr(0x40, 5, table.local_pref.to_bytes(4, "big"))
    comms = [parse_community(c) for c in table.communities]
    comms += [(64496 << 16) | (i + 1) for i in range(table.community_count)]
    if comms:
        head += _attr(0xC0, 8, b"".join(c.to_bytes(4, "big") for c in comms))
    tail = bytearray()
    if as4_path:
        tail += _attr(0xC0, 17, as4_path)
    if table.large_communities:
        lc = b"".join(b"".join(x.to_bytes(4, "big") for x in parse_large_community(c)) for c in table.large_communities)
        tail += _attr(0xC0, 32, lc)
    if family == "ipv4":
        # NLRI sits in the UPDATE's own field: everything is "head".
        a.head = bytes(head + tail)
        a.tail = b""
        a.mp_head = b""
    else:
        # RFC 4760 §3: MP_REACH_NLRI, extended length so one header shape
        # fits any NLRI size; the next hop is a global IPv6 address (RFC 2545 §3).
        a.head = bytes(head)
        a.tail = bytes(tail)
        a.mp_head = bytes((0x90, 14, 0, 0, 0, 2, 1, len(next_hop))) + next_hop + b"\x00"
        a.nh_off = 8
        a.nh_in_mp = True
    return a


# ------------------------------------------------------------------ lengths


def lut_for(weights: dict) -> bytes:
    """4096 lengths in proportion to ``weights`` (largest remainder), so a
    uniform 12-bit draw follows the distribution."""
    total = sum(weights.values())
    items = sorted(weights.items())
    raw = [(ln, 4096 * w / total) for ln, w in items]
    counts = {ln: int(math.floor(x)) for ln, x in raw}
    # A length with any weight keeps at least one slot.
    for ln, x in raw:
        if counts[ln] == 0:
            counts[ln] = 1
    short = 4096 - sum(counts.values())
    order = sorted(raw, key=lambda t: -(t[1] - math.floor(t[1])))
    i = 0
    while short > 0:
        counts[order[i % len(order)][0]] += 1
        short -= 1
        i += 1
    while short < 0:
        ln = max(counts, key=counts.get)
        counts[ln] -= 1
        short += 1
    out = bytearray()
    for ln, c in sorted(counts.items()):
        out += bytes((ln,)) * c
    return bytes(out)


def _addr16(text: str) -> bytes:
    ip = ipaddress.ip_address(text)
    return ip.packed.ljust(16, b"\x00")


def canary_prefix(seq: int, family: str) -> tuple:
    """(packed prefix, key, text) of canary number ``seq``."""
    if family == "ipv4":
        addr = int(CANARY_V4.network_address) + (seq % (1 << 17))
        raw = addr.to_bytes(4, "big")
        packed = b"\x20" + raw
        return packed, packed, "%s/32" % ipaddress.IPv4Address(addr)
    addr = int(CANARY_V6.network_address) + ((seq % (1 << 16)) << 64)
    raw = addr.to_bytes(16, "big")[:8]
    packed = b"\x40" + raw
    return packed, packed, "%s/64" % ipaddress.IPv6Address(addr)


# ------------------------------------------------------------------ plan


class PeerInfo:
    """What the table plan needs to know about one emulated peer."""

    __slots__ = ("index", "asn", "address", "ebgp")

    def __init__(self, index, asn, address, ebgp):
        self.index = index
        self.asn = asn
        self.address = address
        self.ebgp = ebgp


class TablePlan:
    """Which prefixes each peer announces and the encoded Streams.

    Peer i's counters start at floor(i * (1 - overlap) * n_L) for each
    length L (n_L: prefixes of that length in one table), so overlap 1
    gives every peer the same table (encoded once, shared), overlap 0
    disjoint tables, and values between shift each peer's range by that
    fraction."""

    def __init__(self, table: Table, *, default_next_hop: Optional[str] = None):
        self.table = table
        self.family = table.family
        self.width = 32 if self.family == "ipv4" else 128
        self.afi = AFI_IPV4 if self.family == "ipv4" else AFI_IPV6
        self.lut = lut_for(length_weights(table.lengths, self.family))
        self.base = _addr16(table.base or DEFAULT_BASE[self.family])
        self.limit = _addr16(LIMIT[self.family])
        self.default_next_hop = default_next_hop
        self._counts = None
        self._streams = {}
        self._withdraws = {}
        self._packed = {}

    @property
    def shared(self) -> bool:
        return self.table.overlap >= 1.0

    def table_id(self, index: int) -> int:
        return 0 if self.shared else index

    def counts(self) -> list:
        """Prefixes per length in one table (the same for every peer: one seed)."""
        if self._counts is None:
            _m, _e, _c, _p, counts = self._gen(0, encode=False, want_packed=False)
            self._counts = list(memoryview(counts).cast("q"))
        return self._counts

    def _start(self, table_id: int) -> bytes:
        if table_id == 0:
            return bytes(129 * 8)
        counts = self.counts()
        shift = table_id * (1.0 - self.table.overlap)
        return b"".join(_I64.pack(int(math.floor(shift * c))) for c in counts)

    def _gen(self, table_id, attrs: Optional[Attrs] = None, enc: Encoding = Encoding(), encode=True, want_packed=True):
        t = self.table
        if attrs is None:
            # Only counting / packing: attributes do not matter.
            attrs = build_attrs(t, first_as=None, next_hop=b"\x00" * (4 if self.family == "ipv4" else 16), as4=True,
                                family=self.family)
        start = self._start(table_id) if table_id else bytes(129 * 8)
        return gen.gen_table(
            self.width, self.base, t.prefixes, self.lut, t.seed, start, t.per_group, 0, attrs.head,
            attrs.med_off, t.med, attrs.origin_off, attrs.origin_width, attrs.origin_base, attrs.origin_span,
            attrs.mp_head, attrs.tail, enc.maxlen, enc.cap, enc.addpath, t.path_id, self.limit, encode, want_packed,
        )

    def next_hop_for(self, peer: PeerInfo) -> bytes:
        nh = self.table.next_hop
        if nh == "self":
            nh = peer.address or self.default_next_hop
            if nh is None:
                raise ValueError("table.next-hop \"self\" needs the peer's source address")
        ip = ipaddress.ip_address(nh)
        if (ip.version == 4) != (self.family == "ipv4"):
            raise ValueError("next hop %s is not an %s address" % (nh, self.family))
        return ip.packed

    def attrs_for(self, peer: PeerInfo, enc: Encoding) -> Attrs:
        return build_attrs(self.table, first_as=peer.asn if peer.ebgp else None, next_hop=self.next_hop_for(peer),
                           as4=enc.as4, family=self.family)

    def stream(self, peer: PeerInfo, enc: Encoding) -> Stream:
        """The announcement Stream ``peer`` sends on a session of ``enc``
        (shared between peers of the same table and encoding)."""
        tid = self.table_id(peer.index)
        key = (tid, enc, peer.ebgp)
        s = self._streams.get(key)
        if s is None:
            a = self.attrs_for(peer, enc)
            msgs, ends, cum, packed, _counts = self._gen(tid, a, enc, True, True)
            as_rel, nh_rel = a.message_offsets()
            asn = peer.asn.to_bytes(a.as_width, "big") if a.as_off >= 0 else b""
            s = Stream(msgs, ends, cum, as_rel=as_rel, asn=asn, nh_rel=nh_rel, nh=a.nh)
            self._streams[key] = s
            self._packed[(tid, enc.addpath)] = packed
        return s

    def patch_values(self, peer: PeerInfo, enc: Encoding) -> tuple:
        """(asn bytes, next hop bytes) to hand to Stream.chunk for ``peer``."""
        width = 4 if enc.as4 else 2
        asn = peer.asn.to_bytes(width, "big") if peer.ebgp else b""
        return asn, self.next_hop_for(peer)

    def packed(self, table_id: int, addpath: bool = False) -> bytes:
        """Packed NLRI of a table (path ids included when ``addpath``)."""
        p = self._packed.get((table_id, addpath))
        if p is None:
            _m, _e, _c, p, _n = self._gen(table_id, None, Encoding(addpath=addpath), encode=False, want_packed=True)
            self._packed[(table_id, addpath)] = p
        return p

    def withdraw_stream(self, peer: PeerInfo, enc: Encoding, prefixes: int = 0) -> Stream:
        """UPDATEs withdrawing the first ``prefixes`` prefixes (0: all) of
        the peer's table (RFC 4271 §4.3 withdrawn routes; RFC 4760 §4
        MP_UNREACH_NLRI for IPv6)."""
        tid = self.table_id(peer.index)
        n = self.table.prefixes if not prefixes else min(prefixes, self.table.prefixes)
        key = (tid, enc.addpath, enc.maxlen, n)
        s = self._withdraws.get(key)
        if s is None:
            packed = self.packed(tid, enc.addpath)
            if n < self.table.prefixes:
                packed = packed[: gen.packed_offset(packed, n, self.width, enc.addpath)]
            ctx = enc.context(self.family)
            msgs = codec.pack_withdraws(packed, ctx, self.afi, SAFI_UNICAST) if packed else []
            counts = [codec.parse_update(m[19:], ctx).n_withdrawn for m in msgs]
            s = Stream.from_messages(msgs, counts, kind="withdraw")
            self._withdraws[key] = s
        return s

    def keys(self, table_id: int) -> list:
        """Monitor keys (see gen.split_keys) of a table's prefixes."""
        return gen.split_keys(self.packed(table_id, False), self.width, False)

    def canary_update(self, peer: PeerInfo, enc: Encoding, seq: int) -> tuple:
        """(UPDATE bytes, key) announcing canary ``seq`` from ``peer``."""
        packed, key, _text = canary_prefix(seq, self.family)
        a = self.attrs_for(peer, enc)
        attrs = a.head + a.tail
        ctx = Context(as4=True, addpath_tx=enc.context(self.family).addpath_tx, extended_message=False)
        if enc.addpath:
            packed = self.table.path_id.to_bytes(4, "big") + packed
        # Attributes are already in the session's encoding: ctx.as4 keeps
        # pack_updates from converting them a second time.
        if self.family == "ipv4":
            msgs = codec.pack_updates(attrs, packed, ctx)
        else:
            msgs = codec.pack_updates(attrs, packed, ctx, AFI_IPV6, SAFI_UNICAST, a.nh)
        return msgs[0], key
