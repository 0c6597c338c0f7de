"""Text output for MRT files: bgpdump's ``-m`` one-line format, reproduced
exactly (quirks included), and ``-j`` JSON lines.

``-m`` is the de-facto interchange format of route-collector tooling, so it
follows the output of RIPE NCC's bgpdump line for line, including what it
does that no RFC asks for, all of them checked against bgpdump itself:

* a missing ORIGIN prints INCOMPLETE (so does an out-of-range one), a
  missing NEXT_HOP 255.255.255.255, missing LOCAL_PREF / MED 0;
* AS_SET ``{a,b}``, AS_CONFED_SEQUENCE ``(a b)``, AS_CONFED_SET ``[a,b]``;
  an AS_PATH that does not parse prints ``! Error !``;
* only RFC 1997 communities are shown, the three classic well-known ones
  by name (no-export, no-advertise, local-AS);
* in UPDATEs the classic NLRI take NEXT_HOP and MP_REACH_NLRI prefixes the
  MP next hop (global address when a link-local follows); in RIB entries
  the MP_REACH_NLRI next hop wins over NEXT_HOP;
* withdrawals come before announcements, classic fields before MP ones;
* TABLE_DUMP_V2 multicast and RIB_GENERIC records, the deprecated
  BGP4MP_ENTRY, PEER_INDEX_TABLE and non-UPDATE messages print nothing;
* MESSAGE_LOCAL prints BGP4MP_LOCAL, the *_ADDPATH subtypes BGP4MP_AP with
  the path id after the prefix -- and the LOCAL_ADDPATH ones the local
  address and AS in place of the peer's;
* an NLRI field that ends inside a prefix keeps the whole prefixes before
  it, and host bits past a prefix length are cleared (bgpdump >= 1.6.3);
* IPv6 addresses are written the way bgpdump's inet_ntop does (a lone zero
  group becomes "::", ::a.b.c.d for IPv4-compatible addresses).

Where bgpdump reads past the end of a malformed attribute (a 6-octet
AGGREGATOR in an AS4 session, an AS4_PATH holding confederation segments,
a prefix longer than 32 bits) its output is undefined and ours follows the
RFCs instead; and UPDATEs that carry path ids under a plain MESSAGE subtype
(BIRD 1.6 did this) get the BGP4MP_AP label their path ids need.

The attribute part of a line is shared by every prefix of an UPDATE or RIB
entry: it is formatted once per distinct attribute block (and cached by
those bytes), then glued to each prefix string.
"""

import gc
import struct
import sys

from fastbgp.wire import as4 as _as4
from fastbgp.wire.as4 import attr_spans
from fastbgp.mrt import reader as M
from fastbgp.wire.communities import format_large_community
from fastbgp.wire.constants import (
    COMMUNITY_NO_ADVERTISE,
    COMMUNITY_NO_EXPORT,
    COMMUNITY_NO_EXPORT_SUBCONFED,
    MESSAGE_TYPE_NAMES,
)

# Address text from the reader's helpers, which import socket only for the
# first IPv6 address (start-up of an IPv4 dump).
_ntop4 = M.ntop4
_ntop6 = M.ntop6
_pton = M.ip_bytes
_SLASH = ["/%d" % i for i in range(256)]
# Dotted-quad pieces: indexing these beats inet_ntop (which goes through
# sprintf) for the IPv4 prefixes and next hops of every line.
_DOT = ["%d." % i for i in range(256)]
_DEC = [str(i) for i in range(256)]
_D3 = ["%03d" % i for i in range(1000)]
_ORIGINS = ("IGP", "EGP", "INCOMPLETE")
_NO_NH = "255.255.255.255"
# The RFC 1997 well-known communities bgpdump names, in its spelling (not
# fastbgp.wire.communities': this output must match bgpdump's).
_WELL_KNOWN = {COMMUNITY_NO_EXPORT: "no-export", COMMUNITY_NO_ADVERTISE: "no-advertise",
               COMMUNITY_NO_EXPORT_SUBCONFED: "local-AS"}

_CACHE_LIMIT = 1 << 16


_Z14 = bytes(14)


def _v6(b):
    """An IPv6 address as bgpdump writes it, which is not quite RFC 5952:
    a lone zero group is shortened to "::" when there is no longer run, and
    ::a.b.c.d (IPv4-compatible) form is used for 7 leading zero groups
    unless the address is ::1 (the classic BIND inet_ntop)."""
    s = _ntop6(b)
    if "::" in s:
        if s[0] == ":" and b[:14] == _Z14 and b[14] | (b[15] > 1) and "." not in s:
            return "::%d.%d.%d.%d" % (b[12], b[13], b[14], b[15])
        return s
    if s.startswith("0:") or ":0:" in s or s.endswith(":0"):
        g = s.split(":")
        k = g.index("0")
        return ":".join(g[:k]) + "::" + ":".join(g[k + 1 :])
    return s


def _ip_text(s):
    """bgpdump's form of an address string from the reader."""
    if ":" not in s:
        return s
    return _v6(_pton(s))


_NH_CACHE = {}


def _nh_text(nh):
    """A next hop as bgpdump prints it: 4 octets as IPv4, 16 or 32 (global +
    link-local, RFC 2545 §3) as the first IPv6 address.  Cached: a feed has
    few distinct next hops."""
    s = _NH_CACHE.get(nh)
    if s is None:
        n = len(nh)
        if n == 4:
            s = _ntop4(nh)
        elif n >= 16:
            s = _v6(nh[:16])
        else:
            s = _NO_NH
        if len(_NH_CACHE) >= 4096:
            _NH_CACHE.clear()
        _NH_CACHE[nh] = s
    return s


# ---------------------------------------------------------------- attributes


class _BadPath(Exception):
    pass


def _segments(v, width):
    """[(type, (asn, ...))] of an AS_PATH value; _BadPath when it overruns."""
    out = []
    i, n = 0, len(v)
    fmt = ">%dI" if width == 4 else ">%dH"
    while i < n:
        if n - i < 2:
            raise _BadPath
        st, cnt = v[i], v[i + 1]
        i += 2
        if i + cnt * width > n:
            raise _BadPath
        out.append((st, struct.unpack_from(fmt % cnt, v, i)))
        i += cnt * width
    return out


def _path_text(segs):
    parts = []
    for st, asns in segs:
        if st == 1:  # AS_SET
            parts.append("{" + ",".join(map(str, asns)) + "}")
        elif st == 3:  # AS_CONFED_SEQUENCE (RFC 5065 §3)
            parts.append("(" + " ".join(map(str, asns)) + ")")
        elif st == 4:  # AS_CONFED_SET
            parts.append("[" + ",".join(map(str, asns)) + "]")
        else:
            parts.append(" ".join(map(str, asns)))
    return " ".join(parts)


_PATH_CACHE = {}
_SEQ = [struct.Struct(">%dI" % k).unpack_from for k in range(256)]


def _as_path4(v):
    """Text of a 4-octet AS_PATH value (cached: paths repeat across blocks)."""
    s = _PATH_CACHE.get(v)
    if s is None:
        n = len(v)
        if n >= 2 and v[0] == 2 and 2 + 4 * v[1] == n:
            # The common case: one AS_SEQUENCE.
            s = " ".join(map(str, _SEQ[v[1]](v, 2)))
        else:
            try:
                s = _path_text(_segments(v, 4))
            except _BadPath:
                s = "! Error !"
        if len(_PATH_CACHE) >= _CACHE_LIMIT:
            _PATH_CACHE.clear()
        _PATH_CACHE[v] = s
    return s


_COMM_CACHE = {}


def _communities(v):
    s = _COMM_CACHE.get(v)
    if s is None:
        n = len(v) >> 2
        vals = struct.unpack_from(">%dI" % n, v)
        wk = _WELL_KNOWN
        s = " ".join([wk[c] if c in wk else "%d:%d" % (c >> 16, c & 0xFFFF) for c in vals])
        if len(_COMM_CACHE) >= _CACHE_LIMIT:
            _COMM_CACHE.clear()
        _COMM_CACHE[v] = s
    return s


def whole_spans(block):
    """fastbgp.wire.as4.attr_spans of the attributes of an unvalidated
    block up to the first one cut short or running past its end: bgpdump
    ignores the rest, and so does every lenient reading here."""
    n = len(block)
    for end in (n, n - 1, n - 2, n - 3):
        # A header cut by the end of the block (1-3 octets of it) makes
        # attr_spans read past ``end``; the attributes before it are whole.
        try:
            spans = attr_spans(block, 0, max(end, 0))
            break
        except IndexError:
            continue
    else:
        return []
    for k, sp in enumerate(spans):
        if sp[3] > n:
            return spans[:k]
    return spans


def _attr_parts(block, width=4):
    """(pre, next_hop, post, mp_reach value, mp_unreach value) of an
    attribute block: the line is ``pre + next hop + post`` where ``pre`` is
    'aspath|origin|' and ``post`` '|lp|med|communities|AG|aggregator|\\n'.

    ``width`` is the AS number size of AS_PATH / AGGREGATOR (2 for the old
    record types, whose AS4_PATH / AS4_AGGREGATOR are merged as bgpdump
    does, i.e. as RFC 6793 §4.2.3 says)."""
    path = ""
    origin = "INCOMPLETE"
    nh = _NO_NH
    lp = med = "0"
    comm = ""
    ag = "NAG"
    agg = ""
    mp_reach = mp_unreach = None
    as_path_v = as4_path_v = agg_v = as4_agg_v = None
    # Values are only sliced out for the attributes the line shows.
    for _flags, t, vs, ve, _start in whole_spans(block):
        if t == 1:
            if ve > vs and block[vs] < 3:
                origin = _ORIGINS[block[vs]]
        elif t == 2:
            as_path_v = block[vs:ve]
        elif t == 3:
            if ve - vs == 4:
                nh = _ntop4(block[vs:ve])
        elif t == 4:
            if ve - vs == 4:
                med = str(_U32(block, vs)[0])
        elif t == 5:
            if ve - vs == 4:
                lp = str(_U32(block, vs)[0])
        elif t == 8:
            comm = _communities(block[vs : ve - ((ve - vs) & 3)])
        elif t == 6:
            ag = "AG"
        elif t == 7:
            agg_v = block[vs:ve]
        elif t == 14:
            mp_reach = block[vs:ve]
        elif t == 15:
            mp_unreach = block[vs:ve]
        elif t == 17:
            as4_path_v = block[vs:ve]
        elif t == 18:
            as4_agg_v = block[vs:ve]
    if width == 4:
        if as_path_v is not None:
            path = _as_path4(as_path_v)
        agg = _agg_text(agg_v, 4)
    else:
        path, agg = _merge_2octet(as_path_v, as4_path_v, agg_v, as4_agg_v)
    return path + "|" + origin + "|", nh, "|" + lp + "|" + med + "|" + comm + "|" + ag + "|" + agg + "|\n", mp_reach, mp_unreach


_U32 = struct.Struct(">I").unpack_from


def _canonical_parts(block):
    """(pre, next hop, post) as _attr_parts, for a block the codec produced:
    well formed and with 4-octet AS numbers, so no bounds checks.

    This is the per-UPDATE hot path, and in feeds where every UPDATE has its
    own AS_PATH the whole block never repeats -- but what follows ORIGIN,
    AS_PATH and NEXT_HOP (MED, LOCAL_PREF, communities, ... usually in that
    order, RFC 4271 §5 numbering) mostly does: that tail is formatted once
    per distinct value."""
    path = ""
    origin = "INCOMPLETE"
    nh = _NO_NH
    spans = attr_spans(block)
    k = 0
    for _flags, t, i, j, _start in spans:
        if t > 3:
            break
        if t == 2:
            v = block[i:j]
            path = _PATH_CACHE.get(v)
            if path is None:
                path = _as_path4(v)
        elif t == 1:
            if block[i] < 3:
                origin = _ORIGINS[block[i]]
        elif t == 3:
            nh = f"{_DOT[block[i]]}{_DOT[block[i + 1]]}{_DOT[block[i + 2]]}{_DEC[block[i + 3]]}"
        k += 1
    if k < len(spans):
        tail = block[spans[k][4] :]
        post = _TAIL_CACHE.get(tail)
        if post is None:
            post = _tail_text(tail)
            if post is None:
                # ORIGIN, AS_PATH or NEXT_HOP after the others: no shortcut.
                pre, nh, post, _r, _u = _attr_parts(block, 4)
                return pre, nh, post
    else:
        post = "|0|0||NAG||\n"
    return f"{path}|{origin}|", nh, post


_TAIL_CACHE = {}


def _tail_text(tail):
    """'|lp|med|communities|AG|aggregator|\\n' of the attributes after
    NEXT_HOP, or None when ORIGIN / AS_PATH / NEXT_HOP come among them."""
    lp = med = "0"
    comm = ""
    ag = "NAG"
    agg = ""
    for _flags, t, i, j, _start in attr_spans(tail):
        if t <= 3:
            return None
        if t == 5:
            lp = str(_U32(tail, i)[0])
        elif t == 4:
            med = str(_U32(tail, i)[0])
        elif t == 8:
            comm = _communities(tail[i : j - ((j - i) & 3)])
        elif t == 6:
            ag = "AG"
        elif t == 7:
            agg = "%d %s" % (_U32(tail, i)[0], _ntop4(tail[i + 4 : j]))
    s = f"|{lp}|{med}|{comm}|{ag}|{agg}|\n"
    if len(_TAIL_CACHE) >= _CACHE_LIMIT:
        _TAIL_CACHE.clear()
    _TAIL_CACHE[tail] = s
    return s


def _merge_2octet(as_path_v, as4_path_v, agg_v, as4_agg_v):
    """(path text, aggregator text) of a 2-octet-AS attribute set, with the
    RFC 6793 §4.2.3 reconstruction from AS4_PATH / AS4_AGGREGATOR (the
    project's own as4.merge_from_2octet, as the codec does it)."""
    try:
        segs = _segments(as_path_v, 2) if as_path_v is not None else []
    except _BadPath:
        return "! Error !", _agg_text(agg_v, 2)
    attrs = [(0x40, 2, as_path_v if as_path_v is not None else b"")]
    if agg_v is not None and len(agg_v) == 6:
        attrs.append((0xC0, 7, agg_v))
    if as4_path_v is not None:
        try:
            _segments(as4_path_v, 4)
            attrs.append((0xC0, 17, as4_path_v))
        except _BadPath:
            pass  # RFC 6793 §6: a malformed AS4_PATH is ignored
    if as4_agg_v is not None and len(as4_agg_v) == 8:
        attrs.append((0xC0, 18, as4_agg_v))
    if len(attrs) == 1:
        return _path_text(segs), _agg_text(agg_v, 2)
    merged = {t: v for _f, t, v in _as4.merge_from_2octet(attrs)[0]}
    return _as_path4(merged[2]), _agg_text(merged.get(7), 4)


def _agg_text(v, width):
    if v is None or len(v) < width + 4:
        return ""
    return "%d %s" % (int.from_bytes(v[:width], "big"), _ntop4(v[width : width + 4]))


def _lenient_prefixes(packed, afi, addpath):
    """[(path id, address bytes, length)] of the whole prefixes of an NLRI
    field, stopping where one would overrun it; host bits cleared."""
    out = []
    width = 4 if afi == 1 else 16
    pos, n = 0, len(packed)
    while pos < n:
        pid = 0
        if addpath:
            if pos + 4 > n:
                break
            pid = int.from_bytes(packed[pos : pos + 4], "big")
            pos += 4
            if pos >= n:
                break
        plen = packed[pos]
        nb = (plen + 7) >> 3
        if nb > width or pos + 1 + nb > n:
            break
        a = bytearray(packed[pos + 1 : pos + 1 + nb])
        if plen & 7:
            a[-1] &= (0xFF << (8 - (plen & 7))) & 0xFF
        out.append((pid, bytes(a) + bytes(width - nb), plen))
        pos += 1 + nb
    return out


def _lenient_update(body, as4, addpath):
    """(withdrawn, announced, attribute block) of an UPDATE body, decoded
    leniently (whole prefixes only, the last attribute of a kind wins); None
    when even the length fields do not fit.  withdrawn is [(afi, (path id,
    address, length))], announced [(afi, (path id, address, length), MP
    next hop bytes or None for the classic NLRI)]."""
    n = len(body)
    if n < 4:
        return None
    wlen = (body[0] << 8) | body[1]
    if 2 + wlen + 2 > n:
        return None
    alen = (body[2 + wlen] << 8) | body[3 + wlen]
    a0 = 4 + wlen
    block = body[a0 : a0 + alen]
    _p, _n, _q, mp_reach, mp_unreach = _attr_parts(block, 4 if as4 else 2)
    withdrawn = [(1, x) for x in _lenient_prefixes(body[2 : 2 + wlen], 1, addpath)]
    if mp_unreach is not None and len(mp_unreach) >= 3:
        afi = (mp_unreach[0] << 8) | mp_unreach[1]
        if afi in (1, 2):
            withdrawn += [(afi, x) for x in _lenient_prefixes(mp_unreach[3:], afi, addpath)]
    announced = [(1, x, None) for x in _lenient_prefixes(body[a0 + alen :], 1, addpath)]
    if mp_reach is not None and len(mp_reach) >= 5:
        afi = (mp_reach[0] << 8) | mp_reach[1]
        nhlen = mp_reach[3]
        mnh = mp_reach[4 : 4 + nhlen]
        # bgpdump drops MP prefixes whose next hop it cannot read.
        if afi in (1, 2) and len(mnh) == nhlen and nhlen in (4, 16, 32):
            announced += [(afi, x, mnh) for x in _lenient_prefixes(mp_reach[5 + nhlen :], afi, addpath)]
    return withdrawn, announced, block


def lenient_update(body, as4, addpath):
    """What bgpdump makes of an UPDATE body the codec rejected (see
    _lenient_update): (withdrawn, announced, attribute block) or None."""
    return _lenient_update(body, as4, addpath)


def attributes(block, width=4):
    """The attributes of a block as a dict (the ``attrs`` of ``-j``):
    origin, as_path (text, bgpdump's notation), next_hop, med, local_pref,
    communities, large_communities, ...; ``width`` 2 for TABLE_DUMP and
    2-octet BGP4MP blocks."""
    return _attrs_json(block, width)


def as_path_text(block, width=4):
    """The AS_PATH text of a block as -m prints it (with the RFC 6793
    §4.2.3 AS4_PATH merge when ``width`` is 2)."""
    pre = _attr_parts(block, width)[0]
    return pre[: pre.rindex("|", 0, len(pre) - 1)]


def next_hop_text(nh):
    """A next hop's text: 4 octets IPv4, 16 or 32 the (global) IPv6 one."""
    return _nh_text(nh)


# ---------------------------------------------------------------- -m formatter

# RFC 8050 §3: the ADD-PATH twin of each message subtype.
_ADDPATH_OF = {
    M.BGP4MP_MESSAGE: M.BGP4MP_MESSAGE_ADDPATH,
    M.BGP4MP_MESSAGE_AS4: M.BGP4MP_MESSAGE_AS4_ADDPATH,
    M.BGP4MP_MESSAGE_LOCAL: M.BGP4MP_MESSAGE_LOCAL_ADDPATH,
    M.BGP4MP_MESSAGE_AS4_LOCAL: M.BGP4MP_MESSAGE_AS4_LOCAL_ADDPATH,
}


class BgpdumpFormatter:
    """Turns MRT records into bgpdump ``-m`` lines.  ``lines(rec)`` returns
    a list of newline-terminated strings.  ``codec`` supplies the compiled
    (or twin) ``unpack_prefixes``."""

    def __init__(self, codec=None):
        self._codec = codec  # None: fastbgp.wire.codec's selection, on first use
        self._attrs4 = {}  # canonical attrs -> (pre, nh, post)
        self._rib = {}  # raw RIB entry attrs -> (pre, nh, post)
        self._td1 = {}  # raw TABLE_DUMP attrs -> (pre, nh, post)
        self._peers = ()  # "ip|as|" text per PEER_INDEX_TABLE index
        self._peer_bytes = None
        self._ts = None
        self._ts_text = ""
        self._who_cache = {}
        self._heads = {}
        self._misses = self._lookups = 0
        self._dispatch = None  # made on first use: the record classes load msgspec

    def __getattr__(self, name):
        # codec and _unpack are loaded on first use: the records the -m fast
        # path prints need neither (nor msgspec, which wire.codec imports).
        if name not in ("codec", "_unpack"):
            raise AttributeError("%r object has no attribute %r" % (self.__class__.__name__, name))
        if self._codec is None:
            from fastbgp.wire import codec as codec_selector

            self._codec = codec_selector
        self.codec = self._codec
        self._unpack = self._codec.unpack_prefixes
        return getattr(self, name)

    # -- helpers

    def _time(self, rec):
        if rec.type == M.BGP4MP_ET:
            return "%d.%06d" % (rec.timestamp, rec.microsecond)
        return str(rec.timestamp)

    def _prefixes(self, packed, afi, addpath):
        """The prefix strings of a packed NLRI field ('p/len' or, with path
        ids, 'p/len|id' -- the order bgpdump prints them in)."""
        try:
            items = self._unpack(packed, afi, addpath)
        except ValueError:
            items = _lenient_prefixes(packed, afi, addpath)
        sl = _SLASH
        if afi == 1:
            d = _DOT
            z = _DEC
            if addpath:
                return [f"{d[a[0]]}{d[a[1]]}{d[a[2]]}{z[a[3]]}{sl[ln]}|{pid}" for pid, a, ln in items]
            return [f"{d[a[0]]}{d[a[1]]}{d[a[2]]}{z[a[3]]}{sl[ln]}" for _pid, a, ln in items]
        if addpath:
            return [f"{_v6(a)}{sl[ln]}|{pid}" for pid, a, ln in items]
        return [f"{_v6(a)}{sl[ln]}" for _pid, a, ln in items]

    def _who(self, ip, asn):
        """'ip|as|' in bgpdump's spelling (cached per peer)."""
        key = (ip, asn)
        s = self._who_cache.get(key)
        if s is None:
            if len(self._who_cache) > 4096:
                self._who_cache.clear()
            s = self._who_cache[key] = _ip_text(ip) + "|" + str(asn) + "|"
        return s

    def _canonical(self, attrs):
        """Cache miss path for UPDATE attribute blocks.  Dumps of many
        peers' full tables repeat blocks; route-server feeds often have a
        distinct block per UPDATE, and then the cache only costs: it is
        dropped when nine lookups in ten miss."""
        hit = _canonical_parts(attrs)
        cache = self._attrs4
        self._misses += 1
        if self._misses >= 8192:
            if self._misses * 10 > self._lookups * 9:
                self._attrs4 = None
                return hit
            self._misses = self._lookups = 0
        if len(cache) >= _CACHE_LIMIT:
            cache.clear()
        cache[attrs] = hit
        return hit

    # -- the compiled fast path (fastbgp.mrt.dumpimpl)

    def fast_state(self, reader):
        """The state ``format_run`` of fastbgp.mrt.dumpimpl works with: byte
        caches filled on a miss by this formatter's own code, so a line is
        the same whichever path printed it."""
        return FastState(self, reader)

    # -- records

    def dispatch(self):
        """{record class: method(rec, out)} -- what lines() does, for loops."""
        if self._dispatch is None:
            self._dispatch = {
                M.Bgp4mpMessage: self._message,
                M.RibRecord: self._rib_record,
                M.TableDump: self._table_dump,
                M.Bgp4mpStateChange: self._state,
                M.PeerIndexTable: self._peer_index,
            }
        return self._dispatch

    def lines(self, rec, out=None):
        """Append the lines of ``rec`` to ``out`` (a new list by default)."""
        if out is None:
            out = []
        meth = self.dispatch().get(rec.__class__)
        if meth is not None:
            meth(rec, out)
        return out

    def _state(self, rec, out):
        label = "BGP4MP_ET|" if rec.type == M.BGP4MP_ET else "BGP4MP|"
        out.append("%s%s|STATE|%s%d|%d\n" % (label, self._time(rec), self._who(rec.peer_ip, rec.peer_as), rec.old_state, rec.new_state))

    def _peer_index(self, rec, out):
        self.peer_table([(p.ip, p.asn) for p in rec.peers])

    def peer_table(self, peers):
        """A PEER_INDEX_TABLE's (ip text, asn) pairs: the peers RIB entries
        index from here on (RFC 6396 §4.3.1)."""
        self._peers = tuple(self._who(ip, asn) for ip, asn in peers)
        self._peer_bytes = None

    def peer_bytes(self):
        """The PEER_INDEX_TABLE's "ip|as|" texts as bytes (for FastState)."""
        if self._peer_bytes is None:
            self._peer_bytes = [w.encode() for w in self._peers]
        return self._peer_bytes

    def _label(self, typ, sub):
        """(label, use local side) for a message record's type/subtype."""
        et = "_ET" if typ == M.BGP4MP_ET else ""
        if sub == M.BGP4MP_MESSAGE_LOCAL or sub == M.BGP4MP_MESSAGE_AS4_LOCAL:
            return "BGP4MP%s_LOCAL|" % et, False
        if sub == M.BGP4MP_MESSAGE_ADDPATH or sub == M.BGP4MP_MESSAGE_AS4_ADDPATH:
            return "BGP4MP%s_AP|" % et, False
        if sub == M.BGP4MP_MESSAGE_LOCAL_ADDPATH or sub == M.BGP4MP_MESSAGE_AS4_LOCAL_ADDPATH:
            # bgpdump prints the LOCAL_ADDPATH subtypes as plain ADDPATH
            # ones seen from the local side.
            return "BGP4MP%s_AP|" % et, True
        return "BGP4MP%s|" % et, False

    def _message(self, rec, out):
        pu = rec.update
        if pu is None:
            msg = rec.message
            if len(msg) < 19 or msg[18] != 2:
                return  # bgpdump -m shows UPDATEs only
        typ = rec.type
        addpath = rec.addpath
        key = (typ, rec.subtype, addpath, rec.peer_ip, rec.peer_as)
        lw = self._heads.get(key)
        if lw is None:
            sub = rec.subtype
            if addpath and sub in _ADDPATH_OF:
                # Path ids found under a plain subtype (the BIRD 1.6 case):
                # label the lines as the _ADDPATH subtype would be.
                sub = _ADDPATH_OF[sub]
            label, local = self._label(typ, sub)
            if len(self._heads) > 4096:
                self._heads.clear()
            lw = self._heads[key] = (label, None if local else self._who(rec.peer_ip, rec.peer_as))
        label, who = lw
        if who is None:
            who = self._who(rec.local_ip, rec.local_as)
        ts = rec.timestamp
        if ts != self._ts:
            self._ts = ts
            self._ts_text = str(ts)
        if typ == M.BGP4MP_ET:
            us = rec.microsecond
            head = f"{label}{self._ts_text}.{_D3[us // 1000]}{_D3[us % 1000]}"
        else:
            head = label + self._ts_text
        if pu is None or pu.action:
            self._message_lenient(rec, head, who, addpath, out)
            return
        # Each run of lines shares its head and tail: one join builds them.
        if pu.n_withdrawn:
            hw = f"{head}|W|{who}"
            sep = "\n" + hw
            if pu.withdrawn:
                ps = self._prefixes(pu.withdrawn, 1, addpath)
                if ps:
                    out.append(hw + sep.join(ps) + "\n")
            mu = pu.mp_unreach
            if mu is not None and mu[2] and (mu[0] == 1 or mu[0] == 2):
                ps = self._prefixes(mu[2], mu[0], addpath)
                if ps:
                    out.append(hw + sep.join(ps) + "\n")
        if pu.n_announced:
            attrs = pu.attrs
            cache = self._attrs4
            if cache is None:
                pre, nh, post = _canonical_parts(attrs)
            else:
                self._lookups += 1
                hit = cache.get(attrs)
                if hit is None:
                    hit = self._canonical(attrs)
                pre, nh, post = hit
            ha = f"{head}|A|{who}"
            nlri = pu.nlri
            if nlri:
                # The IPv4 classic NLRI case, inlined: it is most lines.
                try:
                    items = self._unpack(nlri, 1, addpath)
                except ValueError:
                    items = _lenient_prefixes(nlri, 1, addpath)
                if items:
                    tail = f"|{pre}{nh}{post}"
                    d = _DOT
                    sl = _SLASH
                    if addpath:
                        ps = [f"{d[a[0]]}{d[a[1]]}{d[a[2]]}{_DEC[a[3]]}{sl[ln]}|{pid}" for pid, a, ln in items]
                    else:
                        z = _DEC
                        # f-strings build each text in one allocation.
                        ps = [f"{d[a[0]]}{d[a[1]]}{d[a[2]]}{z[a[3]]}{sl[ln]}" for _pid, a, ln in items]
                    out += (ha, (tail + ha).join(ps), tail)
            mr = pu.mp_reach
            if mr is not None and mr[3] and (mr[0] == 1 or mr[0] == 2):
                ps = self._prefixes(mr[3], mr[0], addpath)
                if ps:
                    tail = f"|{pre}{_nh_text(mr[2])}{post}"
                    out += (ha, (tail + ha).join(ps), tail)

    def _message_lenient(self, rec, head, who, addpath, out):
        """An UPDATE the codec rejected (or would partly discard): print it
        the forgiving way bgpdump does."""
        lu = _lenient_update(rec.message[19:], rec.as4, addpath)
        if lu is None:
            return
        withdrawn, announced, block = lu
        pre, nh, post, _r, _u = _attr_parts(block, 4 if rec.as4 else 2)
        hw = head + "|W|" + who
        for afi, (pid, a, ln) in withdrawn:
            p = (_ntop4(a) if afi == 1 else _v6(a)) + _SLASH[ln]
            out.append(hw + p + ("|" + str(pid) if addpath else "") + "\n")
        ha = head + "|A|" + who
        for afi, (pid, a, ln), mnh in announced:
            p = (_ntop4(a) if afi == 1 else _v6(a)) + _SLASH[ln]
            out.append(ha + p + ("|" + str(pid) if addpath else "") + "|" + pre + (nh if mnh is None else _nh_text(mnh)) + post)

    def _rib_parts(self, attrs, update):
        """(pre, next hop, post) of a RIB entry: RFC 6396 §4.3.4 attributes
        (4-octet AS); the MP_REACH_NLRI next hop wins over NEXT_HOP."""
        hit = self._rib.get(attrs)
        if hit is None:
            if update is not None and not update.action:
                pre, nh, post = _canonical_parts(update.attrs)
                if update.mp_reach is not None:
                    nh = _nh_text(update.mp_reach[2])
            else:
                pre, nh, post, mp_reach, _u = _attr_parts(attrs, 4)
                if mp_reach is not None:
                    nh = _nh_text(_rib_next_hop(mp_reach))
            hit = (pre, nh, post)
            if len(self._rib) >= _CACHE_LIMIT:
                self._rib.clear()
            self._rib[attrs] = hit
        return hit

    def _rib_record(self, rec, out):
        sub = rec.subtype
        if sub == M.RIB_IPV4_UNICAST or sub == M.RIB_IPV6_UNICAST:
            addpath = False
            head = "TABLE_DUMP2|%d|B|" % rec.timestamp
        elif sub == M.RIB_IPV4_UNICAST_ADDPATH or sub == M.RIB_IPV6_UNICAST_ADDPATH:
            addpath = True
            head = "TABLE_DUMP2_AP|%d|B|" % rec.timestamp
        else:
            return  # bgpdump -m prints no multicast or RIB_GENERIC records
        peers = self._peers
        npeers = len(peers)
        pfx = rec.prefix
        if ":" in pfx:
            pfx = _prefix_text(pfx)
        cache = self._rib
        for e in rec.entries:
            i = e.peer_index
            if i >= npeers:
                continue  # no such peer in the PEER_INDEX_TABLE
            hit = cache.get(e.attrs)
            if hit is None:
                hit = self._rib_parts(e.attrs, e.update)
            pre, nh, post = hit
            if addpath:
                out.append(f"{head}{peers[i]}{pfx}|{e.path_id}|{pre}{nh}{post}")
            else:
                out.append(f"{head}{peers[i]}{pfx}|{pre}{nh}{post}")

    def _td1_parts(self, attrs, u):
        """(pre, next hop, post) of TABLE_DUMP attributes (2-octet AS)."""
        hit = self._td1.get(attrs)
        if hit is None:
            if u is not None and not u.action:
                pre, nh, post = _canonical_parts(u.attrs)
                if u.mp_reach is not None:
                    nh = _nh_text(u.mp_reach[2])
            else:
                pre, nh, post, mp_reach, _u = _attr_parts(attrs, 2)
                if mp_reach is not None and len(mp_reach) >= 4:
                    nh = _nh_text(_rib_next_hop(mp_reach))
            hit = (pre, nh, post)
            if len(self._td1) >= _CACHE_LIMIT:
                self._td1.clear()
            self._td1[attrs] = hit
        return hit

    def _table_dump(self, rec, out):
        pre, nh, post = self._td1_parts(rec.attrs, rec.update)
        p = rec.prefix
        if ":" in p:
            p = _prefix_text(p)
        ts = rec.timestamp
        if ts != self._ts:
            self._ts = ts
            self._ts_text = str(ts)
        out.append(f"TABLE_DUMP|{self._ts_text}|B|{self._who(rec.peer_ip, rec.peer_as)}{p}|{pre}{nh}{post}")


class FastState:
    """What ``format_run`` (fastbgp.mrt.dumpimpl) reads and fills while it
    prints runs of TABLE_DUMP / TABLE_DUMP_V2 unicast records straight from
    their bytes: bounded byte caches keyed by raw bytes, and the miss
    functions that fill them from BgpdumpFormatter's code (one formatter,
    two drivers).  ``peers`` follows the last PEER_INDEX_TABLE the
    formatter saw."""

    __slots__ = ("fmt", "reader", "rib4", "rib6", "td1", "who", "limit")

    def __init__(self, fmt, reader):
        self.fmt = fmt
        self.reader = reader
        self.rib4 = {}  # raw IPv4 RIB entry attrs -> b"|pre nh post\n"
        self.rib6 = {}  # the same for IPv6 RIB entries
        self.td1 = {}  # raw TABLE_DUMP attrs -> b"|pre nh post\n"
        self.who = {}  # TABLE_DUMP peer address + AS octets -> b"ip|as|"
        self.limit = _CACHE_LIMIT

    @property
    def peers(self):
        """b"ip|as|" per PEER_INDEX_TABLE index."""
        return self.fmt.peer_bytes()

    def rib_miss(self, afi, attrs):
        update, _error = self.reader.rib_attrs(afi, 1, attrs)
        pre, nh, post = self.fmt._rib_parts(attrs, update)
        cache = self.rib4 if afi == 1 else self.rib6
        if len(cache) >= self.limit:
            cache.clear()
        b = cache[attrs] = ("|" + pre + nh + post).encode()
        return b

    def td1_miss(self, attrs):
        update, _error = self.reader.table_dump_attrs(attrs)
        pre, nh, post = self.fmt._td1_parts(attrs, update)
        if len(self.td1) >= self.limit:
            self.td1.clear()
        b = self.td1[attrs] = ("|" + pre + nh + post).encode()
        return b

    def who_miss(self, key):
        """key: peer address (4 or 16 octets) then its 2-octet AS."""
        ip = M.ip_str(key[:-2])
        if len(self.who) >= 4096:
            self.who.clear()
        b = self.who[key] = self.fmt._who(ip, (key[-2] << 8) | key[-1]).encode()
        return b

    @staticmethod
    def rib_text(attrs):
        """b"|pre nh post" of RIB entry attributes the fast path checked
        (4-octet AS; the abbreviated MP_REACH_NLRI next hop wins)."""
        pre, nh, post, mp_reach, _u = _attr_parts(attrs, 4)
        if mp_reach is not None:
            nh = _nh_text(_rib_next_hop(mp_reach))
        return ("|" + pre + nh + post).encode()

    @staticmethod
    def update_text(attrs):
        """(b"|pre", b"next hop", b"post") of UPDATE attributes the fast
        path checked (4-octet AS)."""
        pre, nh, post, _r, _u = _attr_parts(attrs, 4)
        return ("|" + pre).encode(), nh.encode(), post.encode()

    @staticmethod
    def next_hop(nh):
        return _nh_text(nh).encode()

    @staticmethod
    def v6(addr):
        """bgpdump's text of a 16-octet address, as bytes."""
        return _v6(addr).encode()


def _prefix_text(p):
    """bgpdump's spelling of a reader prefix string."""
    if ":" not in p:
        return p
    a, _, ln = p.partition("/")
    return _v6(_pton(a)) + "/" + ln


def _rib_next_hop(v):
    """Next hop of an MP_REACH_NLRI in a RIB entry: abbreviated (RFC 6396
    §4.3.4) or, as some dumpers write it, the full RFC 4760 form."""
    if v and v[0] + 1 == len(v):
        return v[1:]
    if len(v) >= 4:
        return v[4 : 4 + v[3]]
    return b""


# ---------------------------------------------------------------- -j formatter


def _attrs_json(block, width=4):
    """A dict of the attributes of a (canonical or raw) block."""
    d = {}
    other = []
    for flags, t, vs, ve, _start in whole_spans(block):
        v = block[vs:ve]
        if t == 1:
            d["origin"] = _ORIGINS[v[0]] if len(v) == 1 and v[0] < 3 else "INCOMPLETE"
        elif t == 2:
            if width == 4:
                d["as_path"] = _as_path4(v)
            else:
                try:
                    d["as_path"] = _path_text(_segments(v, 2))
                except _BadPath:
                    d["as_path"] = "! Error !"
        elif t == 3 and len(v) == 4:
            d["next_hop"] = _ntop4(v)
        elif t == 4 and len(v) == 4:
            d["med"] = int.from_bytes(v, "big")
        elif t == 5 and len(v) == 4:
            d["local_pref"] = int.from_bytes(v, "big")
        elif t == 6:
            d["atomic_aggregate"] = True
        elif t == 7 and len(v) == width + 4:
            d["aggregator"] = "%d %s" % (int.from_bytes(v[:width], "big"), _ntop4(v[width:]))
        elif t == 8:
            d["communities"] = _communities(v[: len(v) & ~3]).split()
        elif t == 9 and len(v) == 4:
            d["originator_id"] = _ntop4(v)
        elif t == 10:
            d["cluster_list"] = [_ntop4(v[k : k + 4]) for k in range(0, len(v) - 3, 4)]
        elif t == 16:
            d["ext_communities"] = [v[k : k + 8].hex() for k in range(0, len(v) - 7, 8)]
        elif t == 32:
            d["large_communities"] = [format_large_community(struct.unpack_from(">III", v, k))
                                      for k in range(0, len(v) - 11, 12)]
        elif t == 35 and len(v) == 4:
            d["otc"] = int.from_bytes(v, "big")
        elif t == 14 or t == 15:
            continue
        elif t == 17 and width == 2:
            try:
                d["as4_path"] = _path_text(_segments(v, 4))
            except _BadPath:
                d["as4_path"] = "! Error !"
        elif t == 18 and width == 2 and len(v) == 8:
            d["as4_aggregator"] = "%d %s" % (int.from_bytes(v[:4], "big"), _ntop4(v[4:]))
        else:
            other.append({"type": t, "flags": flags, "value": v.hex()})
    if other:
        d["other"] = other
    return d


def _prefix_str(afi, item):
    return (_ntop4(item[1]) if afi == 1 else _ntop6(item[1])) + _SLASH[item[2]]


def _prefix_list(codec, packed, afi, addpath):
    try:
        items = codec.unpack_prefixes(packed, afi, addpath)
    except ValueError:
        items = _lenient_prefixes(packed, afi, addpath)
    fam = _ntop4 if afi == 1 else _ntop6
    if addpath:
        return [[fam(a) + _SLASH[ln], pid] for pid, a, ln in items]
    return [fam(a) + _SLASH[ln] for _pid, a, ln in items]


class JsonFormatter:
    """One JSON object per MRT record (``-j``).

    Every object has ``type`` and ``subtype`` (names), ``timestamp`` (int
    seconds) and, for _ET records, ``microsecond``.  BGP4MP messages add
    peer/local address and AS, ``message`` (OPEN, UPDATE, ...), and for
    UPDATEs ``withdrawn`` / ``announced`` (prefix strings, or [prefix,
    path id] pairs under ADD-PATH), ``attrs`` (decoded attributes) and
    ``next_hop``.  RIB records have ``prefix`` and ``entries`` (peer,
    originated time, path id, next hop, attrs); PEER_INDEX_TABLE its peers;
    STATE_CHANGE old/new state names.  Problems show as ``error``."""

    def __init__(self, codec=None):
        import msgspec  # here, not at import: -m output never needs it

        from fastbgp.wire import codec as codec_selector

        self.codec = codec if codec is not None else codec_selector
        self._raw = msgspec.Raw
        self._enc = msgspec.json.Encoder()
        self._peers = ()
        self._cache = {}

    def dispatch(self):
        """{record class: method(rec, out)}: every record makes one line."""
        return dict.fromkeys(M.RECORD_TYPES, self.lines)

    def _attrs(self, block, width=4):
        hit = self._cache.get((width, block))
        if hit is None:
            hit = self._raw(self._enc.encode(_attrs_json(block, width)))
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[(width, block)] = hit
        return hit

    def lines(self, rec, out=None):
        if out is None:
            out = []
        d = {"type": rec.type_name, "subtype": rec.subtype_name, "timestamp": rec.timestamp}
        if rec.type in M.ET_TYPES:
            d["microsecond"] = rec.microsecond
        cls = rec.__class__
        if cls is M.Bgp4mpMessage:
            self._message(rec, d)
        elif cls is M.Bgp4mpStateChange:
            d.update(peer_ip=rec.peer_ip, peer_as=rec.peer_as, local_ip=rec.local_ip, local_as=rec.local_as)
            d["old_state"] = M.STATE_NAMES.get(rec.old_state, str(rec.old_state))
            d["new_state"] = M.STATE_NAMES.get(rec.new_state, str(rec.new_state))
        elif cls is M.PeerIndexTable:
            self._peers = rec.peers
            d["collector_id"] = rec.collector_id
            d["view_name"] = rec.view_name
            d["peers"] = [{"bgp_id": p.bgp_id, "ip": p.ip, "asn": p.asn} for p in rec.peers]
        elif cls is M.RibRecord:
            self._rib(rec, d)
        elif cls is M.TableDump:
            d.update(view=rec.view, sequence=rec.sequence, prefix=rec.prefix, status=rec.status, originated=rec.originated)
            d.update(peer_ip=rec.peer_ip, peer_as=rec.peer_as)
            u = rec.update
            if u is not None and not u.action:
                d["attrs"] = self._attrs(u.attrs)
                if u.mp_reach is not None:
                    d["next_hop"] = _nh_text(u.mp_reach[2])
            else:
                d["attrs"] = self._attrs(rec.attrs, 2)
                if rec.error:
                    d["error"] = rec.error
        elif cls is M.Bgp4mpEntry:
            d.update(peer_ip=rec.peer_ip, peer_as=rec.peer_as, local_ip=rec.local_ip, local_as=rec.local_as)
            d.update(view=rec.view, status=rec.status, originated=rec.originated, afi=rec.entry_afi, safi=rec.safi)
            d.update(prefix=rec.prefix, next_hop=_nh_text(rec.next_hop))
            u = rec.update
            d["attrs"] = self._attrs(u.attrs) if u is not None and not u.action else self._attrs(rec.attrs, 2)
        elif cls is M.CorruptRecord or cls is M.TruncatedRecord:
            d["error"] = rec.reason if cls is M.CorruptRecord else "truncated record (%d of %d octets)" % (len(rec.data), rec.length)
            d["offset"] = rec.offset
            d["data"] = rec.data.hex()
        else:
            d["data"] = rec.data.hex()
        out.append(self._enc.encode(d).decode() + "\n")
        return out

    def _message(self, rec, d):
        d.update(peer_ip=rec.peer_ip, peer_as=rec.peer_as, local_ip=rec.local_ip, local_as=rec.local_as)
        if rec.ifindex:
            d["ifindex"] = rec.ifindex
        mt = rec.msg_type
        d["message"] = MESSAGE_TYPE_NAMES.get(mt, str(mt))
        if rec.error:
            d["error"] = rec.error
        pu = rec.update
        codec = self.codec
        ap = rec.addpath
        if mt == 2 and pu is not None:
            wd = _prefix_list(codec, pu.withdrawn, 1, ap) if pu.withdrawn else []
            if pu.mp_unreach is not None and pu.mp_unreach[0] in (1, 2):
                wd += _prefix_list(codec, pu.mp_unreach[2], pu.mp_unreach[0], ap)
            if wd:
                d["withdrawn"] = wd
            ann = _prefix_list(codec, pu.nlri, 1, ap) if pu.nlri else []
            if pu.mp_reach is not None and pu.mp_reach[0] in (1, 2):
                ann += _prefix_list(codec, pu.mp_reach[3], pu.mp_reach[0], ap)
                d["mp_next_hop"] = _nh_text(pu.mp_reach[2])
            if ann:
                d["announced"] = ann
            if pu.attrs:
                d["attrs"] = self._attrs(pu.attrs)
            if pu.errors:
                d["errors"] = [str(e) for e in pu.errors]
            if pu.is_eor:
                d["end_of_rib"] = True
        elif mt == 2:
            # Undecodable by the codec: show what a lenient reading finds.
            lu = _lenient_update(rec.message[19:], rec.as4, ap)
            if lu is not None:
                withdrawn, announced, block = lu
                fmt = lambda afi, x: [_prefix_str(afi, x), x[0]] if ap else _prefix_str(afi, x)  # noqa: E731
                if withdrawn:
                    d["withdrawn"] = [fmt(afi, x) for afi, x in withdrawn]
                if announced:
                    d["announced"] = [fmt(afi, x) for afi, x, _nh in announced]
                    mp = [nh for _a, _x, nh in announced if nh is not None]
                    if mp:
                        d["mp_next_hop"] = _nh_text(mp[0])
                if block:
                    d["attrs"] = self._attrs(block, 4 if rec.as4 else 2)
        elif mt == 1:
            try:
                o = codec.parse_open(rec.message[19:])
                d["open"] = {"version": o.version, "asn": o.asn, "hold_time": o.hold_time, "bgp_id": _ntop4(o.bgp_id.to_bytes(4, "big")),
                             "capabilities": [[c, v.hex()] for c, v in o.capabilities]}  # fmt: skip
            except Exception as exc:  # noqa: BLE001 -- any decode problem is reported, not raised
                d["error"] = str(exc)
        elif mt == 3 and len(rec.message) >= 21:
            d["notification"] = {"code": rec.message[19], "subcode": rec.message[20], "data": rec.message[21:].hex()}
        elif mt != 4:
            d["data"] = rec.message[19:].hex()

    def _rib(self, rec, d):
        d["sequence"] = rec.sequence
        d["afi"] = rec.afi
        d["safi"] = rec.safi
        d["prefix"] = rec.prefix if rec.prefix else rec.nlri.hex()
        peers = self._peers
        ents = []
        for e in rec.entries:
            x = {"peer_index": e.peer_index}
            if e.peer_index < len(peers):
                p = peers[e.peer_index]
                x["peer_ip"] = p.ip
                x["peer_as"] = p.asn
            x["originated"] = e.originated
            if rec.addpath:
                x["path_id"] = e.path_id
            u = e.update
            if u is not None and not u.action:
                nh = u.mp_reach[2] if u.mp_reach is not None else u.next_hop
                if nh:
                    x["next_hop"] = _nh_text(nh)
                x["attrs"] = self._attrs(u.attrs)
            else:
                x["attrs"] = self._attrs(e.attrs)
                if e.error:
                    x["error"] = e.error
            ents.append(x)
        d["entries"] = ents


# ---------------------------------------------------------------- driver


def formatter(fmt="m", codec=None):
    if fmt == "m":
        return BgpdumpFormatter(codec)
    if fmt == "j":
        return JsonFormatter(codec)
    raise ValueError("unknown output format %r" % fmt)


FLUSH = 1 << 20  # octets of -m text held before they are handed on


def iter_bytes(source, codec=None, reader=None, impl=None, fast=True):
    """Chunks of bgpdump ``-m`` output (bytes, about FLUSH octets each) for
    one MRT file.  Runs of RIB and UPDATE records go through
    ``impl.format_run`` (fastbgp.mrt.dumpimpl, compiled or twin; default:
    the selected one); every other record, or all of them with
    ``fast=False``, through BgpdumpFormatter, in file order."""
    use_fast = fast
    if impl is None:
        from fastbgp.mrt import dumpimpl as impl
    if reader is None:
        reader = M.MrtReader(source, codec=codec)
    f = BgpdumpFormatter(reader.codec_choice)
    st = f.fast_state(reader)
    run = impl.format_run
    out = bytearray()
    ready = []  # full chunks the fast path made inside the reader
    header = M.HEADER.unpack_from
    TDV2, PIT = M.TABLE_DUMP_V2, M.PEER_INDEX_TABLE

    def fast(buf, pos):
        k, pos = run(buf, pos, st, out)
        n = len(buf)
        while n - pos >= 12:
            _ts, typ, sub, ln = header(buf, pos)
            end = pos + 12 + ln
            if typ != TDV2 or sub != PIT or end > n:
                break
            # RFC 6396 §4.3.1: the peers the RIB records after it index.  Read
            # here by the reader's own parser, without a record object, so a
            # TABLE_DUMP_V2 dump the fast path prints never loads msgspec.
            try:
                _collector, _view, peers = M.peer_index_fields(buf[pos + 12 : end])
            except (M.MrtFormatError, IndexError, struct.error):
                break  # the reader yields it as a CorruptRecord
            f.peer_table([(p[1], p[2]) for p in peers])
            k2, pos = run(buf, end, st, out)
            k += 1 + k2
        if len(out) >= FLUSH:
            ready.append(bytes(out))
            del out[:]
        return k, pos

    reader.fast = fast if use_fast else None
    dispatch = None  # made on the first record the fast path declines
    lines = []
    for rec in reader:
        if dispatch is None:
            dispatch = f.dispatch()
        meth = dispatch.get(rec.__class__)
        if meth is not None:
            meth(rec, lines)
            if lines:
                out += "".join(lines).encode()
                lines.clear()
        if ready:
            yield from ready
            ready.clear()
        if len(out) >= FLUSH:
            yield bytes(out)
            del out[:]
    yield from ready
    if out:
        yield bytes(out)


def iter_text(source, fmt="m", codec=None, batch=2048, reader=None):
    """Chunks of output text for one MRT file, each covering ``batch``
    records, so a caller can stream them.  ``reader`` (an MrtReader of
    ``source``) may be given to inspect it afterwards."""
    if fmt == "m":
        for chunk in iter_bytes(source, codec, reader):
            yield chunk.decode()
        return
    if reader is None:
        reader = M.MrtReader(source, codec=codec)
    f = formatter(fmt, reader.codec)
    dispatch = f.dispatch()
    buf = []
    k = 0
    for rec in reader:
        meth = dispatch.get(rec.__class__)
        if meth is not None:
            meth(rec, buf)
        k += 1
        if k >= batch:
            yield "".join(buf)
            buf = []
            k = 0
    if buf:
        yield "".join(buf)


def dump(sources, fmt="m", out=None, codec=None, err=None):
    """Write every record of every source to ``out`` (default stdout);
    problems (corrupt or truncated records) are reported on ``err``
    (default stderr).  Returns the number of problems."""
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    write = out.write
    binary = getattr(out, "buffer", None)
    if fmt == "m" and binary is not None:
        # -m text is made as bytes: hand it to the binary layer directly.
        out.flush()
        write = binary.write
    problems = 0
    # Records and lines never form reference cycles; the cyclic collector
    # would only walk the millions of short-lived tuples for nothing.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        problems = _dump(sources, fmt, write, codec, err, binary is not None and fmt == "m")
    finally:
        if was_enabled:
            gc.enable()
    return problems


def _dump(sources, fmt, write, codec, err, binary=False):
    problems = 0
    for src in sources:
        reader = M.MrtReader(src, codec=codec)
        if fmt == "m":
            for chunk in iter_bytes(src, codec, reader=reader):
                write(chunk if binary else chunk.decode())
        else:
            for chunk in iter_text(src, fmt, codec, reader=reader):
                write(chunk)
        if reader.not_mrt is not None:
            problems += 1
            err.write("%s: not an MRT file: %s\n" % (src, reader.not_mrt))
            continue
        if reader.corrupt:
            problems += reader.corrupt
            err.write("%s: %d corrupt record(s) skipped\n" % (src, reader.corrupt))
        for e in reader.stream_errors:
            problems += 1
            err.write("%s: %s\n" % (src, e))
        if reader.truncated is not None:
            problems += 1
            t = reader.truncated
            if t.type == 0 and t.length == 0 and len(t.data) < 12:
                err.write("%s: truncated record header at offset %d (%d of 12 octets)\n" % (src, t.offset, len(t.data)))
            else:
                err.write("%s: truncated record at offset %d (%d of %d octets)\n" % (src, t.offset, len(t.data), t.length))
    return problems
