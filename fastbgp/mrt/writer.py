"""MRT (RFC 6396) writing: record encoders and the writers a daemon keeps.

:class:`MrtWriter` appends BGP4MP_ET MESSAGE_AS4 records (UPDATEs as
received) and TABLE_DUMP_V2 snapshots (PEER_INDEX_TABLE followed by
RIB_IPV4_UNICAST / RIB_IPV6_UNICAST records); :class:`RotatingMrtWriter`
starts a new file every ``interval_s`` seconds, named by strftime, the way
BIRD's and GoBGP's MRT dumpers do.  :func:`encode_record` turns any record
:class:`fastbgp.mrt.reader.MrtReader` decoded back into its exact bytes.
"""

import os
import struct
import time

from fastbgp.wire.as4 import attr_spans, encode_attr
from fastbgp.wire.constants import AFI_IPV4, AFI_IPV6, AS_TRANS, ATTR_MP_REACH_NLRI, ATTR_NEXT_HOP
from fastbgp.mrt.records import (
    BGP4MP,
    BGP4MP_ET,
    BGP4MP_MESSAGE,
    BGP4MP_MESSAGE_ADDPATH,
    BGP4MP_MESSAGE_AS4,
    BGP4MP_MESSAGE_AS4_ADDPATH,
    BGP4MP_STATE_CHANGE,
    BGP4MP_STATE_CHANGE_AS4,
    ET_TYPES,
    HEADER,
    MESSAGE_SUBTYPES,
    PEER_INDEX_TABLE,
    RIB_FAMILIES,
    RIB_GENERIC_ADDPATH,
    RIB_IPV4_UNICAST,
    RIB_IPV4_UNICAST_ADDPATH,
    RIB_IPV6_UNICAST,
    TABLE_DUMP_V2,
    Bgp4mpEntry,
    Bgp4mpMessage,
    Bgp4mpStateChange,
    CorruptRecord,
    Peer,
    PeerIndexTable,
    RibEntry,
    RibRecord,
    TableDump,
    TruncatedRecord,
    UnknownRecord,
    ip_bytes,
    prefix_bytes,
)

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")


# ---------------------------------------------------------------- encoding


def encode_header(timestamp, mtype, subtype, body, microsecond=None):
    """One MRT record (RFC 6396 §2-3): for _ET types ``microsecond`` is
    prepended to ``body`` and counted in the length."""
    if mtype in ET_TYPES:
        body = _U32.pack(microsecond or 0) + body
    return HEADER.pack(timestamp, mtype, subtype, len(body)) + body


def _bgp4mp_head(as4, peer_as, local_as, ifindex, peer_ip, local_ip):
    pb, lb = ip_bytes(peer_ip), ip_bytes(local_ip)
    if len(pb) != len(lb):
        raise ValueError("peer and local addresses of different families")
    afi = AFI_IPV6 if len(pb) == 16 else AFI_IPV4
    fmt = ">IIHH" if as4 else ">HHHH"
    return struct.pack(fmt, peer_as, local_as, ifindex, afi) + pb + lb


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


def _next_hop_value(attrs):
    """The NEXT_HOP value of a canonical attribute block, or None."""
    for _flags, t, vs, ve, _start in attr_spans(attrs):
        if t == ATTR_NEXT_HOP:
            return attrs[vs:ve]
    return None


def rib_attrs(attrs, next_hop=None):
    """RIB entry attributes (RFC 6396 §4.3.4) from a canonical block and a
    next hop: the next hop of a non-IPv4-unicast route goes in an
    abbreviated MP_REACH_NLRI (next hop length + next hop only)."""
    if next_hop is None:
        return attrs
    return encode_attr(0x80, ATTR_MP_REACH_NLRI, bytes((len(next_hop),)) + next_hop) + attrs


_RIB_ENTRY = struct.Struct(">HIH")  # RFC 6396 §4.3.4: peer index, originated time, attribute length
_RIB_ENTRY_ADDPATH = struct.Struct(">HIIH")  # RFC 8050 §4: with a path identifier


def encode_rib_packed(timestamp, sequence, afi, packed_prefix, entries, *, subtype=None):
    """A RIB_IPV4/IPV6_UNICAST record (the _ADDPATH form, RFC 8050, when any
    entry has a path id) of a prefix in NLRI form (length octet, then the
    significant address octets).  ``entries``: (peer_index, originated,
    attrs, path_id) tuples, attrs in RIB form (see rib_attrs).  The one
    place a RIB entry is laid out: :func:`encode_rib` and the daemon's RIB
    snapshots call it."""
    if subtype is None:
        addpath = any(e[3] for e in entries)
        subtype = (RIB_IPV6_UNICAST if afi == AFI_IPV6 else RIB_IPV4_UNICAST) + (6 if addpath else 0)
    addpath = subtype >= RIB_IPV4_UNICAST_ADDPATH
    out = [_U32.pack(sequence & 0xFFFFFFFF), packed_prefix, _U16.pack(len(entries))]
    for idx, originated, attrs, path_id in entries:
        out.append(_RIB_ENTRY_ADDPATH.pack(idx, originated, path_id, len(attrs)) if addpath
                   else _RIB_ENTRY.pack(idx, originated, len(attrs)))
        out.append(attrs)
    return encode_header(timestamp, TABLE_DUMP_V2, subtype, b"".join(out))


def encode_rib(timestamp, sequence, prefix, entries, *, subtype=None):
    """RIB_IPV4/IPV6_UNICAST (or their _ADDPATH forms when any entry has a
    path id) for ``prefix`` ('addr/len'); ``entries`` are RibEntry structs
    or (peer_index, originated, attrs[, path_id]) tuples, attrs in RIB form
    (see rib_attrs)."""
    afi, addr, plen = prefix_bytes(prefix)
    ents = [e if isinstance(e, RibEntry) else RibEntry(*e) for e in entries]
    return encode_rib_packed(timestamp, sequence, afi, _pack_prefix(addr, plen),
                             [(e.peer_index, e.originated, e.attrs, e.path_id) for e in ents], subtype=subtype)


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
                if nh is not None and (afi == AFI_IPV6 or _next_hop_value(attrs) != nh):
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

