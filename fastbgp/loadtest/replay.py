"""Replaying MRT files (RFC 6396) through emulated peers, with
:mod:`fastbgp.mrt.reader` as the reader.

* TABLE_DUMP_V2 RIB: ``rib-per-peer`` gives each original peer of the
  PEER_INDEX_TABLE its own feed (emulated peer i sends feed i mod the number
  of feeds); ``rib-one`` sends one original peer's table from every
  session.  Routes are grouped by attribute set and encoded once per
  (feed, session encoding, sending AS, next hop) with the compiled codec.
* BGP4MP updates: each original peer's messages in order, re-encoded for
  the emulated session, sent with their original spacing divided by
  ``speed`` (0: as fast as possible).

What a session sends is rewritten the way a real eBGP speaker would send
it: its own AS prepended (RFC 4271 §5.1.2), LOCAL_PREF and the route
reflection attributes dropped (§5.1.5, RFC 4456 §8), and the next hop set
to the session's address unless ``next-hop = "keep"``.
"""

from __future__ import annotations

import ipaddress
import struct

from fastbgp.wire import as4 as _as4
from fastbgp.wire import codec
from fastbgp.wire.types import Context
from fastbgp.wire.constants import AFI_IPV4, AFI_IPV6, SAFI_UNICAST
from fastbgp.loadtest import gen
from fastbgp.loadtest.generator import CHUNK, Encoding, Stream, canary_prefix
from fastbgp.loadtest.scenario import Scenario

_I64 = struct.Struct("=q")


class Feed:
    """One original peer's routes: ``groups`` {(attrs, next hop): bytearray
    of packed NLRI} (RIB) or ``updates`` [(time, ParsedUpdate)]."""

    def __init__(self, name, asn):
        self.name = name
        self.asn = asn
        self.groups: dict = {}
        self.updates: list = []
        self.size = 0
        self._keys = None

    def keys(self, width):
        if self._keys is None:
            if self.updates:
                present = set()
                for _t, u in self.updates:
                    ann, wd = _nlri_of(u, width)
                    if wd:
                        present.difference_update(gen.split_keys(wd, width))
                    if ann:
                        present.update(gen.split_keys(ann, width))
                self._keys = list(present)
            else:
                ks = []
                for packed in self.groups.values():
                    ks.extend(gen.split_keys(bytes(packed), width))
                self._keys = ks
        return self._keys


def _nlri_of(u, width):
    afi = AFI_IPV4 if width == 32 else AFI_IPV6
    ann = wd = b""
    if afi == AFI_IPV4:
        ann, wd = u.nlri, u.withdrawn
    if u.mp_reach is not None and u.mp_reach[0] == afi and u.mp_reach[1] == SAFI_UNICAST:
        ann += u.mp_reach[3]
    if u.mp_unreach is not None and u.mp_unreach[0] == afi and u.mp_unreach[1] == SAFI_UNICAST:
        wd += u.mp_unreach[2]
    return ann, wd


def _rewrite_attrs(attrs: bytes, first_as, next_hop, family, keep_nh) -> tuple:
    """(attribute block, MP next hop) as the emulated session sends them."""
    out = []
    nh_v4 = None
    for flags, t, v in _as4.split_attrs(attrs):
        if t == 2 and first_as is not None:
            segs = _as4.decode_segments(v, 4)
            if not segs or segs[0][0] != 2:
                segs.insert(0, (2, []))
            if not segs[0][1] or segs[0][1][0] != first_as:
                segs[0] = (2, [first_as] + list(segs[0][1]))
            v = _as4.encode_segments(segs, 4)
        elif t == 3:
            nh_v4 = v
            if family == "ipv4" and not keep_nh:
                v = next_hop
            if family != "ipv4":
                continue
        elif first_as is not None and t in (5, 9, 10):
            continue  # LOCAL_PREF, ORIGINATOR_ID, CLUSTER_LIST stay inside the AS
        out.append((flags, t, v))
    if family == "ipv4" and nh_v4 is None:
        out.append((0x40, 3, next_hop))
    out.sort(key=lambda a: a[1])
    return b"".join(_as4.encode_attr(f, t, v) for f, t, v in out)


class ReplaySource:
    """The table source interface of TablePlan, fed from an MRT file."""

    def __init__(self, sc: Scenario):
        from fastbgp.mrt import reader as mrt

        self.sc = sc
        r = sc.replay
        self.family = sc.table.family
        self.width = 32 if self.family == "ipv4" else 128
        self.afi = AFI_IPV4 if self.family == "ipv4" else AFI_IPV6
        self.keep_nh = r.next_hop == "keep"
        self.overlap = None
        self._streams: dict = {}
        self._withdraws: dict = {}
        feeds: dict = {}
        peers = ()
        mode = r.mode
        limit = r.limit
        n = 0
        for rec in mrt.MrtReader(r.file):
            if isinstance(rec, mrt.PeerIndexTable):
                peers = rec.peers
                if mode == "auto":
                    mode = "rib-per-peer"
            elif isinstance(rec, mrt.RibRecord):
                if rec.afi != self.afi or rec.safi != SAFI_UNICAST or not rec.prefix:
                    continue
                _afi, addr, plen = mrt.prefix_bytes(rec.prefix)
                packed = bytes((plen,)) + addr[: (plen + 7) >> 3]
                for e in rec.entries:
                    if e.update is None:
                        continue
                    f = feeds.get(e.peer_index)
                    if f is None:
                        p = peers[e.peer_index] if e.peer_index < len(peers) else None
                        f = feeds[e.peer_index] = Feed(p.ip if p else str(e.peer_index), p.asn if p else 0)
                    key = (e.update.attrs, e.next_hop)
                    g = f.groups.get(key)
                    if g is None:
                        g = f.groups[key] = bytearray()
                    g += packed
                    f.size += 1
                n += 1
                if limit and n >= limit:
                    break
            elif isinstance(rec, mrt.Bgp4mpMessage):
                if mode == "auto":
                    mode = "updates"
                if rec.update is None or rec.msg_type != 2:
                    continue
                f = feeds.get(rec.peer_ip)
                if f is None:
                    f = feeds[rec.peer_ip] = Feed(rec.peer_ip, rec.peer_as)
                ann, wd = _nlri_of(rec.update, self.width)
                if ann or wd:
                    f.updates.append((rec.time, rec.update))
                    f.size += _count(ann, self.width) + _count(wd, self.width)
                n += 1
                if limit and n >= limit:
                    break
        if mode == "auto":
            raise ValueError("replay.file %s holds no TABLE_DUMP_V2 RIB and no BGP4MP messages" % r.file)
        self.mode = mode
        ordered = [f for _k, f in sorted(feeds.items(), key=lambda kv: str(kv[0])) if f.size]
        if not ordered:
            raise ValueError("replay.file %s has no %s unicast routes" % (r.file, self.family))
        if mode == "rib-one":
            pick = None
            if r.peer is not None:
                for k, f in feeds.items():
                    if str(k) == r.peer or f.name == r.peer:
                        pick = f
                if pick is None:
                    raise ValueError("replay.peer %r is not in %s" % (r.peer, r.file))
            else:
                pick = max(ordered, key=lambda f: f.size)
            ordered = [pick]
        self.feeds = ordered

    # -- the TablePlan interface ---------------------------------------------------

    def table_id(self, index):
        return index % len(self.feeds)

    def table_size(self, tid):
        f = self.feeds[tid]
        return len(f.keys(self.width)) if f.updates else f.size

    def keys(self, tid):
        return self.feeds[tid].keys(self.width)

    def _nh(self, peer):
        if peer.address is None:
            raise ValueError("replay needs peers.address for next-hop self")
        ip = ipaddress.ip_address(peer.address)
        if (ip.version == 4) != (self.family == "ipv4"):
            raise ValueError("replay of %s routes needs %s transport" % (self.family, self.family))
        return ip.packed

    def _ctx(self, enc: Encoding):
        return enc.context(self.family)

    def stream(self, peer, enc: Encoding) -> Stream:
        tid = self.table_id(peer.index)
        nh = self._nh(peer)
        key = (tid, enc, peer.asn if peer.ebgp else None, nh)
        s = self._streams.get(key)
        if s is not None:
            return s
        f = self.feeds[tid]
        ctx = self._ctx(enc)
        first = peer.asn if peer.ebgp else None
        msgs, counts, times = [], [], []
        attr_cache = {}

        def attrs_for(a, onh):
            k = (a, onh)
            v = attr_cache.get(k)
            if v is None:
                v = attr_cache[k] = _rewrite_attrs(a, first, nh, self.family, self.keep_nh)
            return v

        pid = self.sc.table.path_id.to_bytes(4, "big")

        def with_ids(packed):
            if not enc.addpath or not packed:
                return packed
            return b"".join(pid + k for k in gen.split_keys(packed, self.width))

        def mp_nh(onh):
            if self.keep_nh and onh:
                return onh
            return nh

        if f.updates:
            for t, u in f.updates:
                ann, wd = _nlri_of(u, self.width)
                out = []
                if wd:
                    out += codec.pack_withdraws(with_ids(wd), ctx, self.afi, SAFI_UNICAST)
                if ann and not u.treat_as_withdraw:
                    onh = u.mp_reach[2][:16] if u.mp_reach is not None else u.next_hop
                    a = attrs_for(u.attrs, onh)
                    if self.afi == AFI_IPV4:
                        out += codec.pack_updates(a, with_ids(ann), ctx)
                    else:
                        out += codec.pack_updates(a, with_ids(ann), ctx, self.afi, SAFI_UNICAST, mp_nh(onh))
                for m in out:
                    msgs.append(m)
                    pu = codec.parse_update(m[19:], ctx)
                    counts.append(pu.n_announced + pu.n_withdrawn)
                    times.append(t)
        else:
            for (a, onh), packed in f.groups.items():
                wire = attrs_for(a, onh)
                if self.afi == AFI_IPV4:
                    out = codec.pack_updates(wire, with_ids(bytes(packed)), ctx)
                else:
                    out = codec.pack_updates(wire, with_ids(bytes(packed)), ctx, self.afi, SAFI_UNICAST,
                                             mp_nh(onh[:16] if onh else b""))
                for m in out:
                    msgs.append(m)
                    counts.append(codec.parse_update(m[19:], ctx).n_announced)
        s = Stream.from_messages(msgs, counts)
        if f.updates:
            s.timing = times
        self._streams[key] = s
        return s

    def timed_bounds(self, stream, upto):
        """Chunk ends at every change of original timestamp (or CHUNK
        octets) and their release offsets: (t - t0) / speed."""
        speed = self.sc.replay.speed
        times = stream.timing
        bounds, release = [], []
        t0 = times[0] if times else 0.0
        start = 0
        last_end = 0
        for i in range(upto):
            end = stream.start(i + 1)
            nxt = times[i + 1] if i + 1 < upto else None
            if nxt != times[i] or end - last_end >= CHUNK:
                bounds.append(i + 1)
                release.append((times[start] - t0) / speed if speed > 0 else 0.0)
                start = i + 1
                last_end = end
        return bounds, (release if speed > 0 else None)

    def patch_values(self, peer, enc):
        return None, None  # encoded per session: nothing to patch

    def withdraw_stream(self, peer, enc: Encoding, prefixes=0) -> Stream:
        tid = self.table_id(peer.index)
        key = (tid, enc.addpath, enc.maxlen, prefixes)
        s = self._withdraws.get(key)
        if s is None:
            ks = self.keys(tid)
            if prefixes:
                ks = ks[:prefixes]
            if enc.addpath:
                pid = self.sc.table.path_id.to_bytes(4, "big")
                packed = b"".join(pid + k for k in ks)
            else:
                packed = b"".join(ks)
            ctx = self._ctx(enc)
            msgs = codec.pack_withdraws(packed, ctx, self.afi, SAFI_UNICAST) if packed else []
            s = Stream.from_messages(msgs, [codec.parse_update(m[19:], ctx).n_withdrawn for m in msgs], kind="withdraw")
            self._withdraws[key] = s
        return s

    def canary_update(self, peer, enc, seq):
        packed, key, _text = canary_prefix(seq, self.family)
        nh = self._nh(peer)
        path = [peer.asn] if peer.ebgp else []
        attrs = _as4.encode_attr(0x40, 1, b"\x00") + _as4.encode_attr(0x40, 2, _as4.encode_segments([(2, path)], 4) if path else b"")
        if self.family == "ipv4":
            attrs += _as4.encode_attr(0x40, 3, nh)
        ctx = Context(as4=enc.as4, addpath_tx=self._ctx(enc).addpath_tx)
        if enc.addpath:
            packed = self.sc.table.path_id.to_bytes(4, "big") + packed
        if self.family == "ipv4":
            return codec.pack_updates(attrs, packed, ctx)[0], key
        return codec.pack_updates(attrs, packed, ctx, self.afi, SAFI_UNICAST, nh)[0], key


def _count(packed, width):
    return len(gen.split_keys(packed, width)) if packed else 0
