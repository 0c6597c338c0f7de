"""Flat route elements of an MRT file, for analysts: one ``Element`` per
prefix announced, withdrawn or held in a RIB, the shape pybgpkit's BgpElem
and pybgpstream's elements have.

    from fastbgp.mrt.elements import elements
    for e in elements("rib.20240101.0000.bz2"):
        if e.type == "R" and e.as_path and "64496" in e.as_path.split():
            print(e.time, e.peer_ip, e.prefix, e.next_hop, e.communities)

``elements(source)`` is a generator: records are read and turned into
elements as the loop asks for them (the file is never held in memory);
each distinct attribute block is decoded once (bounded cache) and its
fields shared by the elements that carry it.

Types: "A" announcement and "W" withdrawal (BGP4MP UPDATEs, RFC 6396
§4.4), "R" a RIB entry (TABLE_DUMP_V2 unicast, §4.3, and TABLE_DUMP,
§4.2).  Which records give elements, and which next hop an element gets,
follow bgpdump -m (tests/test_mrt_elements.py checks it on the corpus):
an UPDATE the codec rejects is read leniently as bgpdump reads it, an
MP_REACH_NLRI next hop applies to the MP prefixes (and, in a RIB entry,
wins over NEXT_HOP).  Attributes missing from a route are None (not
bgpdump's defaults), communities are tuples of text ("64496:1",
"no-export"; large ones "64496:1:2", RFC 8092).
"""

import socket

import msgspec

from fastbgp.mrt import dump as mrt_dump
from fastbgp.mrt import reader as M

__all__ = ["Element", "elements"]

_ntop = socket.inet_ntop
_FAM = {1: socket.AF_INET, 2: socket.AF_INET6}
_CACHE_LIMIT = 1 << 16


class Element(msgspec.Struct, frozen=True, gc=False):
    """One prefix of one record."""

    time: float  # seconds since the epoch (microseconds of the _ET types included)
    type: str  # "A", "W" or "R"
    peer_ip: str
    peer_asn: int
    prefix: str
    next_hop: str | None = None
    as_path: str | None = None  # "64496 64497 {64498,64499}" (bgpdump's notation)
    origin: str | None = None  # "IGP", "EGP" or "INCOMPLETE"
    communities: tuple = ()
    large_communities: tuple = ()
    med: int | None = None
    local_pref: int | None = None
    path_id: int = 0  # RFC 7911 / RFC 8050 path identifier, 0 without ADD-PATH


class _Attrs:
    """Decoded attribute fields per block, bounded."""

    def __init__(self):
        self.data = {}

    def get(self, block, width):
        key = (width, block)
        hit = self.data.get(key)
        if hit is None:
            d = mrt_dump.attributes(block, width)
            path = d.get("as_path")
            if width == 2 and path is not None:
                # RFC 6793 §4.2.3: AS4_PATH merged into a 2-octet AS_PATH.
                path = mrt_dump.as_path_text(block, 2)
            hit = (path, d.get("origin"), d.get("next_hop"), tuple(d.get("communities", ())),
                   tuple(d.get("large_communities", ())), d.get("med"), d.get("local_pref"))
            if len(self.data) >= _CACHE_LIMIT:
                self.data.clear()
            self.data[key] = hit
        return hit


def _prefixes(codec, packed, afi, addpath):
    """[(path id, 'address/length')] of a packed NLRI field."""
    fam = _FAM[afi]
    return [(pid, "%s/%d" % (_ntop(fam, a), ln)) for pid, a, ln in codec.unpack_prefixes(packed, afi, addpath)]


def elements(source, codec=None):
    """Elements of the MRT file ``source`` (path or binary file object;
    gzip, bzip2, xz or plain), lazily, in file order."""
    reader = M.MrtReader(source, codec=codec)
    codec = reader.codec if codec is None else codec
    attrs = _Attrs()
    peers = ()
    for rec in reader:
        cls = rec.__class__
        if cls is M.RibRecord:
            if rec.subtype not in (M.RIB_IPV4_UNICAST, M.RIB_IPV6_UNICAST, M.RIB_IPV4_UNICAST_ADDPATH,
                                   M.RIB_IPV6_UNICAST_ADDPATH):
                continue
            prefix = rec.prefix
            for e in rec.entries:
                if e.peer_index >= len(peers):
                    continue
                p = peers[e.peer_index]
                yield _rib_element(rec.timestamp, p.ip, p.asn, prefix, e.attrs, e.update, e.path_id, 4, attrs)
        elif cls is M.Bgp4mpMessage:
            yield from _update_elements(rec, codec, attrs)
        elif cls is M.PeerIndexTable:
            peers = rec.peers
        elif cls is M.TableDump:
            yield _rib_element(rec.timestamp, rec.peer_ip, rec.peer_as, rec.prefix, rec.attrs, rec.update, 0, 2, attrs)


def _rib_element(ts, peer_ip, peer_asn, prefix, raw, u, path_id, width, attrs):
    if u is not None and not u.action:
        path, origin, nh, comms, large, med, lp = attrs.get(u.attrs, 4)
        if u.mp_reach is not None:
            nh = mrt_dump.next_hop_text(u.mp_reach[2])
    else:
        path, origin, nh, comms, large, med, lp = attrs.get(raw, width)
    return Element(float(ts), "R", peer_ip, peer_asn, prefix, nh, path, origin, comms, large, med, lp, path_id)


def _update_elements(rec, codec, attrs):
    msg = rec.message
    if len(msg) < 19 or msg[18] != 2:
        return
    t = rec.timestamp + rec.microsecond / 1e6
    ap = rec.addpath
    local = rec.subtype in (M.BGP4MP_MESSAGE_LOCAL_ADDPATH, M.BGP4MP_MESSAGE_AS4_LOCAL_ADDPATH)
    # bgpdump shows the LOCAL_ADDPATH subtypes from the local side.
    ip, asn = (rec.local_ip, rec.local_as) if local else (rec.peer_ip, rec.peer_as)
    pu = rec.update
    wd = ann = None
    if pu is not None and not pu.action:
        try:
            wd = _prefixes(codec, pu.withdrawn, 1, ap) if pu.withdrawn else []
            mu = pu.mp_unreach
            if mu is not None and mu[2] and mu[0] in (1, 2):
                wd += _prefixes(codec, mu[2], mu[0], ap)
            fields = attrs.get(pu.attrs, 4)
            ann = [(p, fields[2]) for p in _prefixes(codec, pu.nlri, 1, ap)] if pu.nlri else []
            mr = pu.mp_reach
            if mr is not None and mr[3] and mr[0] in (1, 2):
                mnh = mrt_dump.next_hop_text(mr[2])
                ann += [(p, mnh) for p in _prefixes(codec, mr[3], mr[0], ap)]
        except ValueError:
            wd = None
    if wd is None:
        # What the codec would not take, read the forgiving way bgpdump does.
        lu = mrt_dump.lenient_update(msg[19:], rec.as4, ap)
        if lu is None:
            return
        withdrawn, announced, block = lu
        fields = attrs.get(block, 4 if rec.as4 else 2)
        wd = [(pid, "%s/%d" % (_ntop(_FAM[afi], a), ln)) for afi, (pid, a, ln) in withdrawn]
        ann = [((pid, "%s/%d" % (_ntop(_FAM[afi], a), ln)), fields[2] if mnh is None else mrt_dump.next_hop_text(mnh))
               for afi, (pid, a, ln), mnh in announced]
    for pid, p in wd:
        yield Element(t, "W", ip, asn, p, path_id=pid)
    if ann:
        path, origin, _nh, comms, large, med, lp = fields
        for (pid, p), nh in ann:
            yield Element(t, "A", ip, asn, p, nh, path, origin, comms, large, med, lp, pid)
