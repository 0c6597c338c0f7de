"""ExaBGP's process API encoders: what an ExaBGP ``process`` reads on stdin.

Programs written for ExaBGP (route collectors, health checkers, loggers)
parse one event per line, in ExaBGP's JSON or text encoder.  This module
writes those lines for fastbgp's events so such a program runs unchanged
under ``[[processes]]`` (``fastbgp.daemon.processes``).

UPDATEs are decoded by the project's one parser
(:func:`fastbgp.wire.messages.decode_update`); this module only spells the
result the way ExaBGP does:

* JSON envelope (ExaBGP's API "version 4"): ``exabgp``, ``time``,
  ``host``, ``pid``, ``ppid``, ``counter`` (per neighbour), ``type``, then
  ``neighbor`` with ``address`` {local, peer}, ``asn`` {local, peer},
  ``direction`` and the message: ``message.update`` with ``attribute``
  (ExaBGP's attribute names, in type-code order), ``announce``
  {family: {next hop: [{"nlri": p}, ...]}} and ``withdraw`` {family:
  [...]}; ``state`` events (up / down / connected), ``notification``,
  ``open``, ``keepalive`` and ``eor``.
* ``api_version`` 4 (ExaBGP 4.x, the default: what Debian's ExaBGP 4.2
  writes; ``"exabgp": "4.0.1"``, AS_PATH as ``as-path`` /
  ``confederation-path`` / ``as-set`` lists), 5 or 6 (ExaBGP 5/6: AS_PATH
  as numbered segments and the peer's ``router-id``; the spelling of
  ExaBGP's QA corpus, which tests/test_exabgp_json.py compares against).
* the text encoder: ``neighbor A up``, ``neighbor A receive update
  announced P next-hop N origin igp ...`` as ExaBGP's ``text`` encoder.

Nothing here blocks or raises on hostile input: a body the codec refuses
gives an ``{"type": "error"}`` line naming the error (a session receiving
it resets anyway; RFC 4271 §6).
"""

from __future__ import annotations

import ipaddress
import operator
import os
import socket
import struct
import time

import msgspec

from fastbgp.wire import codec
from fastbgp.wire import messages as m
from fastbgp.wire.communities import format_community
from fastbgp.wire.constants import AFI_IPV4, AS_CONFED_SEQUENCE, AS_CONFED_SET, AS_SEQUENCE, AS_SET, ORIGIN_NAMES
from fastbgp.wire.as4 import encode_attr, split_attrs
from fastbgp.wire.errors import BGPError

__all__ = ["nh_text", "route_attributes", "PeerInfo", "JsonEncoder", "TextEncoder", "exa_family", "exa_ext_community", "make_encoder"]

_json_encode = msgspec.json.Encoder().encode

# ExaBGP names families "<afi> <safi>" (exabgp.protocol.family).
_AFI = {1: "ipv4", 2: "ipv6", 25: "l2vpn", 16388: "bgp-ls"}
_SAFI = {1: "unicast", 2: "multicast", 4: "nlri-mpls", 128: "mpls-vpn", 133: "flow", 134: "flow-vpn", 70: "evpn"}


# Families update_fast writes itself (the prefix families of RFC 4760 §5
# the codec unpacks); any other goes through the full message view.
_FAST = frozenset({(1, 1), (1, 2), (2, 1), (2, 2)})
_PLEN = ["/%d" % i for i in range(129)]
_ADDR, _LEN = operator.itemgetter(1), operator.itemgetter(2)  # of unpack_prefixes' (path id, address, length)
# Attribute blocks (and single attributes) remembered per encoder, at most,
# and only short ones: a hostile peer's unique 64 KB attributes must not
# pin memory (worst case about 16384 x (512 + its JSON) octets per cache).
ATTR_CACHE = 16384
ATTR_CACHE_MAX_OCTETS = 512
_MISSING = object()
_TYPE = operator.itemgetter(1)


def nh_text(nh) -> str:
    """The first (global) next hop of an MP_REACH_NLRI, as ExaBGP keys it
    (RFC 2545 §3: 16 or 32 octets; RFC 8950: an IPv4 one for IPv4 NLRI)."""
    if len(nh) == 4:
        return socket.inet_ntoa(nh)
    if len(nh) in (16, 32):
        return ipaddress.IPv6Address(bytes(nh[:16])).compressed
    return "null"


def exa_family(fam) -> str:
    afi, safi = fam
    return "%s %s" % (_AFI.get(afi, str(afi)), _SAFI.get(safi, str(safi)))


class PeerInfo(msgspec.Struct):
    """The neighbour an event is about, as ExaBGP names it."""

    peer_address: str
    local_address: str = ""
    peer_as: int = 0
    local_as: int = 0
    router_id: str = ""  # the peer's BGP identifier (api_version 6 shows it)


def exa_ext_community(value: int) -> str:
    """RFC 4360 / RFC 5668 / RFC 5575 extended community in ExaBGP's
    spelling (``target:65000:1``, ``origin:2345:6.7.8.9`` ...)."""
    t, st = value >> 56, (value >> 48) & 0xFF
    body = value & ((1 << 48) - 1)
    if t in (0x00, 0x40) and st in (0x02, 0x03):
        # RFC 4360 §3.1 two-octet AS specific: 2-octet AS, 4-octet number;
        # ExaBGP shows a route origin's number as a dotted quad.
        asn, local = body >> 32, body & 0xFFFFFFFF
        if st == 0x02:
            return "target:%d:%d" % (asn, local)
        return "origin:%d:%s" % (asn, ipaddress.IPv4Address(local))
    if t in (0x01, 0x41) and st in (0x02, 0x03):
        # RFC 4360 §3.2 IPv4 address specific.
        return "%s:%s:%d" % ("target" if st == 0x02 else "origin", ipaddress.IPv4Address(body >> 16), body & 0xFFFF)
    if t in (0x02, 0x42) and st in (0x02, 0x03):
        # RFC 5668 §2 four-octet AS specific: ExaBGP writes the AS as "N".
        return "%s:%d:%d" % ("target" if st == 0x02 else "origin", body >> 16, body & 0xFFFF)
    if t == 0x80 and st == 0x06:
        # RFC 5575 §7 traffic-rate: a float of bytes per second.
        return "rate-limit:%d" % struct.unpack(">f", (body & 0xFFFFFFFF).to_bytes(4, "big"))[0]
    if t == 0x80 and st == 0x0C:
        # RFC 8955 §7 traffic-rate-packets: a float of packets per second.
        return "rate-limit:%d:packets" % struct.unpack(">f", (body & 0xFFFFFFFF).to_bytes(4, "big"))[0]
    if t == 0x80 and st == 0x07:
        # RFC 8955 §7.3 traffic-action: S (sample) and T (terminal) bits.
        names = [n for bit, n in ((2, "sample"), (1, "terminal")) if body & bit]
        return "action %s" % ("-".join(names) or "none")
    if t == 0x80 and st == 0x09:
        # RFC 8955 §7.5 traffic-marking: the DSCP value.
        return "mark %d" % (body & 0x3F)
    if t == 0x08 and st == 0x00:
        # draft-simpson-idr-flowspec-redirect: the low bit asks for a copy.
        return "copy-to-nexthop" if body & 1 else "redirect-to-nexthop"
    if t == 0x01 and st == 0x0C:
        # draft-ietf-idr-flowspec-redirect-ip: the redirect target address.
        return "redirect-to-nexthop-ietf %s" % ipaddress.IPv4Address(body >> 16)
    if t == 0x0C and st == 0x00:
        # draft-mpmz-bess-mup-safi: the MUP direct-segment identifier.
        return "mup:%d:%d" % (body >> 32, body & 0xFFFFFFFF)
    if t == 0x80 and st == 0x0A:
        # RFC 4761 §3.2.4 Layer2 Info: encapsulation, control flags, MTU, reserved.
        return "l2info:%d:%d:%d:%d" % (body >> 40, (body >> 32) & 0xFF, (body >> 16) & 0xFFFF, body & 0xFFFF)
    if t == 0x80 and st == 0x08:
        return "redirect:%d:%d" % (body >> 32, body & 0xFFFFFFFF)
    return "0x%016x" % value


def _segments_v6(segments):
    names = {AS_SET: "as-set", AS_SEQUENCE: "as-sequence", AS_CONFED_SEQUENCE: "as-confed-sequence",
             AS_CONFED_SET: "as-confed-set"}
    return {str(i): {"element": names.get(s.type, str(s.type)), "value": list(s.asns)} for i, s in enumerate(segments)}


def _segments_v4(out, segments):
    seq, aset, cseq, cset = [], [], [], []
    for s in segments:
        {AS_SEQUENCE: seq, AS_SET: aset, AS_CONFED_SEQUENCE: cseq, AS_CONFED_SET: cset}.get(s.type, seq).extend(s.asns)
    out["as-path"] = seq
    if aset:
        out["as-set"] = aset
    out["confederation-path"] = cseq
    if cset:
        out["confederation-set"] = cset


def exa_attributes(u: m.Update, api_version: int = 4) -> dict:
    """The ``attribute`` object of one decoded UPDATE (type-code order,
    ExaBGP's names; next hops and MP_* belong to announce/withdraw)."""
    out = {}
    for a in sorted(u.attributes, key=lambda a: a.type_code):
        if isinstance(a, m.Origin):
            out["origin"] = ORIGIN_NAMES.get(a.value, str(a.value))
        elif isinstance(a, m.AsPath):
            if api_version >= 5:
                if a.segments:  # ExaBGP leaves an empty AS_PATH out
                    out["as-path"] = _segments_v6(a.segments)
            else:
                _segments_v4(out, a.segments)
        elif isinstance(a, m.Med):
            out["med"] = a.value
        elif isinstance(a, m.LocalPref):
            out["local-preference"] = a.value
        elif isinstance(a, m.AtomicAggregate):
            out["atomic-aggregate"] = True
        elif isinstance(a, m.Aggregator):
            out["aggregator"] = "%d:%s" % (a.asn, a.address)
        elif isinstance(a, m.Communities):
            out["community"] = [[c >> 16, c & 0xFFFF] for c in a.values]
        elif isinstance(a, m.LargeCommunities):
            out["large-community"] = [list(v) for v in a.values]
        elif isinstance(a, m.OriginatorId):
            out["originator-id"] = a.address
        elif isinstance(a, m.ClusterList):
            out["cluster-list"] = list(a.ids)
        elif isinstance(a, m.ExtCommunities):
            out["extended-community"] = [{"value": v, "string": exa_ext_community(v)} for v in a.values]
        elif isinstance(a, (m.NextHop, m.MpReach, m.MpUnreach)):
            continue
        elif isinstance(a, m.Unknown):
            out["attribute-0x%02X-0x%02X" % (a.type, a.flags)] = "0x" + bytes(a.value).hex().upper()
        elif isinstance(a, m.Otc):
            out["attribute-0x%02X-0x%02X" % (a.type_code, a.flags)] = "0x%08X" % a.asn
    return out


def _dump_family(name: str) -> str:
    # fastbgp's family names ("ipv4-unicast") in ExaBGP's ("ipv4 unicast").
    return name.replace("-", " ", 1)


def route_attributes(attrs: dict, api_version: int = 4) -> dict:
    """The ``attribute`` object of a RIB entry: ``attrs`` holds origin
    (name), as_path (ASNs, a nested list for an AS_SET), med, local_pref,
    communities (ints), large_communities (triples) and ext_communities
    (64-bit ints)."""
    out = {"origin": attrs.get("origin") or "igp"}
    path = attrs.get("as_path") or []
    if api_version >= 5:
        segs, cur = [], None
        for x in path:
            if isinstance(x, list):
                segs.append((AS_SET, list(x)))
                cur = None
            else:
                if cur is None:
                    cur = []
                    segs.append((AS_SEQUENCE, cur))
                cur.append(x)
        if segs:
            out["as-path"] = _segments_v6([m.Segment(t, a) for t, a in segs])
    else:
        out["as-path"] = [x for x in path if not isinstance(x, list)]
        aset = [y for x in path if isinstance(x, list) for y in x]
        if aset:
            out["as-set"] = aset
        out["confederation-path"] = []
    if attrs.get("med") is not None:
        out["med"] = attrs["med"]
    if attrs.get("local_pref") is not None:
        out["local-preference"] = attrs["local_pref"]
    if attrs.get("communities"):
        out["community"] = [[c >> 16, c & 0xFFFF] for c in attrs["communities"]]
    if attrs.get("large_communities"):
        out["large-community"] = [list(c) for c in attrs["large_communities"]]
    if attrs.get("ext_communities"):
        # The same spelling as a received UPDATE's (exa_attributes).
        out["extended-community"] = [{"value": v, "string": exa_ext_community(v)} for v in attrs["ext_communities"]]
    return out


def _nlri(p: m.Prefix) -> dict:
    if p.path_id is None:
        return {"nlri": p.prefix}
    # ExaBGP shows an RFC 7911 path identifier as a dotted quad.
    return {"nlri": p.prefix, "path-information": str(ipaddress.IPv4Address(p.path_id))}


def exa_routes(u: m.Update):
    """(announce, withdraw) objects of one decoded UPDATE."""
    announce, withdraw = {}, {}
    if u.nlri:
        nh = u.get(3)
        announce["ipv4 unicast"] = {nh.address if nh is not None else "null": [_nlri(p) for p in u.nlri]}
    mp = u.mp_reach
    if mp is not None and mp.nlri:
        # ExaBGP keys MP announcements by the first (global) next hop.
        fam = announce.setdefault(exa_family(mp.family), {})
        fam.setdefault(mp.next_hops[0] if mp.next_hops else "null", []).extend(_nlri(p) for p in mp.nlri)
    if u.withdrawn:
        withdraw["ipv4 unicast"] = [_nlri(p) for p in u.withdrawn]
    mp = u.mp_unreach
    if mp is not None and mp.nlri:
        withdraw.setdefault(exa_family(mp.family), []).extend(_nlri(p) for p in mp.nlri)
    return announce, withdraw


class JsonEncoder:
    """ExaBGP's JSON encoder: one method per event, each returning one line
    (str, no newline).  ``counter`` counts lines per neighbour like ExaBGP."""

    def __init__(self, api_version: int = 4, host: str = None, impl=None):
        self.api_version = api_version
        self.impl = impl  # the codec implementation (None: fastbgp.wire.codec)
        self.version = {4: "4.0.1", 5: "5.0.0"}.get(api_version, "6.0.0")
        self.host = host or socket.gethostname()
        self.pid = os.getpid()
        self.ppid = os.getppid()
        self._count: dict = {}
        self._attr_cache: dict = {}  # attribute block -> msgspec.Raw of its "attribute" object
        self._frag_cache: dict = {}  # (type, flags, value) -> its '"name":value' JSON text

    def _line(self, mtype, peer, body):
        out = {"exabgp": self.version, "time": time.time(), "host": self.host, "pid": self.pid, "ppid": self.ppid}
        if peer is not None:
            n = self._count.get(peer.peer_address, 0) + 1
            self._count[peer.peer_address] = n
            out["counter"] = n
        out["type"] = mtype
        out.update(body)
        return _json_encode(out).decode()

    def _neighbor(self, peer, direction=None, **content):
        nb = {"address": {"local": peer.local_address, "peer": peer.peer_address},
              "asn": {"local": peer.local_as, "peer": peer.peer_as}}
        if self.api_version >= 5 and peer.router_id:
            nb["router-id"] = peer.router_id
        if direction:
            nb["direction"] = direction
        nb.update(content)
        return {"neighbor": nb}

    def update_message(self, u: m.Update) -> dict:
        """The ``message`` object of a decoded UPDATE (an End-of-RIB marker
        gives ExaBGP's ``{"eor": {...}}``)."""
        eor = u.eor_family
        if eor is not None:
            afi, safi = exa_family(eor).split(" ", 1)
            return {"eor": {"afi": afi, "safi": safi}}
        upd = {}
        attrs = exa_attributes(u, self.api_version)
        if attrs:
            upd["attribute"] = attrs
        announce, withdraw = exa_routes(u)
        if announce:
            upd["announce"] = announce
        if withdraw:
            upd["withdraw"] = withdraw
        return {"update": upd}

    def update(self, peer: PeerInfo, body: bytes, ctx, direction: str = "in") -> str:
        """One UPDATE body as ExaBGP's update line.  The common case (IPv4 /
        IPv6 unicast or multicast, nothing RFC 7606 had to repair, not an
        End-of-RIB) takes :meth:`update_fast`; everything else the full
        message view -- tests check both give the same JSON."""
        impl = self.impl or codec
        try:
            p = impl.parse_update(bytes(body), ctx)
        except (BGPError, ValueError, IndexError) as exc:
            return self.error(peer, "undecodable UPDATE: %s" % exc)
        if not self.plain(p):
            return self.update_slow(peer, body, ctx, direction)
        return self.update_fast(peer, p, ctx, direction)

    @staticmethod
    def plain(p) -> bool:
        """Whether :meth:`update_fast` writes this ParsedUpdate: prefix
        families only, nothing RFC 7606 repaired, not an End-of-RIB."""
        return not (p.action or p.errors or p.is_eor or (p.mp_reach is not None and p.mp_reach[:2] not in _FAST)
                    or (p.mp_unreach is not None and p.mp_unreach[:2] not in _FAST))

    def update_slow(self, peer: PeerInfo, body: bytes, ctx, direction: str = "in") -> str:
        try:
            u = m.decode_update(bytes(body), ctx, impl=self.impl)
        except (BGPError, ValueError, IndexError) as exc:
            return self.error(peer, "undecodable UPDATE: %s" % exc)
        return self._line("update", peer, self._neighbor(peer, direction, message=self.update_message(u)))

    def update_fast(self, peer: PeerInfo, p, ctx, direction: str = "in") -> str:
        """A ParsedUpdate (codec.parse_update) as an update line: the
        attribute object is built once per attribute block (cached) and the
        prefixes are written as JSON text directly (msgspec.Raw)."""
        upd = {}
        attrs = self._attributes_raw(p.attrs) if p.attrs else None
        if attrs is not None:
            upd["attribute"] = attrs
        rx = ctx.addpath_rx
        announce = {}
        if p.nlri:
            nh = socket.inet_ntoa(p.next_hop) if len(p.next_hop) == 4 else "null"
            announce["ipv4 unicast"] = {nh: self._nlri_raw(AFI_IPV4, p.nlri, (AFI_IPV4, 1) in rx)}
        if p.mp_reach is not None and p.mp_reach[3]:
            afi, safi, nh, packed = p.mp_reach
            announce.setdefault(exa_family((afi, safi)), {})[nh_text(nh)] = self._nlri_raw(afi, packed,
                                                                                          (afi, safi) in rx)
        if announce:
            upd["announce"] = announce
        withdraw = {}
        if p.withdrawn:
            withdraw["ipv4 unicast"] = self._nlri_raw(AFI_IPV4, p.withdrawn, (AFI_IPV4, 1) in rx)
        if p.mp_unreach is not None and p.mp_unreach[2]:
            afi, safi, packed = p.mp_unreach
            withdraw[exa_family((afi, safi))] = self._nlri_raw(afi, packed, (afi, safi) in rx)
        if withdraw:
            upd["withdraw"] = withdraw
        return self._line("update", peer, self._neighbor(peer, direction, message={"update": upd}))

    def _attributes_raw(self, block):
        """The "attribute" object of a canonical block as msgspec.Raw (None
        when it has nothing ExaBGP shows there).  Cached per block, and
        each attribute's JSON per attribute: a table's blocks are mostly
        new, their attributes (ORIGIN, NEXT_HOP, common AS_PATHs,
        communities) mostly seen before."""
        raw = self._attr_cache.get(block, _MISSING)
        if raw is not _MISSING:
            return raw
        frags = self._frag_cache
        parts = []
        for f, t, v in sorted(split_attrs(block), key=_TYPE):  # ExaBGP: type-code order
            frag = frags.get((t, f, v))
            if frag is None:
                one = exa_attributes(m.Update(attributes=m.decode_attributes(encode_attr(f, t, v))), self.api_version)
                frag = _json_encode(one)[1:-1].decode()  # '"name":value,...' or ''
                if len(v) <= ATTR_CACHE_MAX_OCTETS:
                    if len(frags) >= ATTR_CACHE:
                        frags.clear()
                    frags[(t, f, v)] = frag
            if frag:
                parts.append(frag)
        raw = msgspec.Raw(("{" + ",".join(parts) + "}").encode()) if parts else None
        if len(block) <= ATTR_CACHE_MAX_OCTETS:
            if len(self._attr_cache) >= ATTR_CACHE:
                self._attr_cache.clear()  # bounded; a table's blocks come back in runs
            self._attr_cache[block] = raw
        return raw

    def _nlri_raw(self, afi, packed, addpath):
        return self.nlri_join(self.nlri_texts(afi, packed, addpath), addpath)

    def nlri_texts(self, afi, packed, addpath) -> list:
        """The prefixes of packed NLRI as texts, one per prefix and unique
        per (prefix, path id): the bare prefix ("192.0.2.0/24") without
        ADD-PATH (``codec.prefix_texts``), the whole JSON object with it
        (:meth:`nlri_join` makes the list)."""
        impl = self.impl or codec
        if not addpath:
            return impl.prefix_texts(packed, afi)
        items = impl.unpack_prefixes(packed, afi, addpath)
        if afi == AFI_IPV4:
            ntoa = socket.inet_ntoa
            return ['{"nlri":"%s%s","path-information":"%s"}' % (ntoa(a[:4]), _PLEN[n], ntoa(i.to_bytes(4, "big")))
                    for i, a, n in items]
        v6 = ipaddress.IPv6Address
        return ['{"nlri":"%s%s","path-information":"%s"}' % (v6(a[:16]).compressed, _PLEN[n],
                                                             ipaddress.IPv4Address(i)) for i, a, n in items]

    @staticmethod
    def nlri_join(texts, addpath) -> msgspec.Raw:
        """ExaBGP's list of NLRI objects for :meth:`nlri_texts`' texts (one
        join around them)."""
        if not texts:
            return msgspec.Raw(b"[]")
        if addpath:
            return msgspec.Raw(("[" + ",".join(texts) + "]").encode())
        return msgspec.Raw(('[{"nlri":"' + '"},{"nlri":"'.join(texts) + '"}]').encode())

    def attribute_raw(self, block):
        """The "attribute" object of a canonical attribute block (None when
        ExaBGP shows nothing there); cached, see _attributes_raw."""
        return self._attributes_raw(block)

    def update_line(self, peer: PeerInfo, direction: str, update: dict) -> str:
        """An update line around a ready ``message.update`` object (for
        fastbgp.control.exabgp_coalesce, which folds several UPDATEs into
        one)."""
        return self._line("update", peer, self._neighbor(peer, direction, message={"update": update}))

    def route(self, peer: PeerInfo, family: str, prefix: str, next_hop, attrs: dict) -> str:
        """One route of a table dump (a RIB entry, not a received message)
        as an update line; ``attrs`` as :func:`route_attributes` takes."""
        msg = {"update": {"attribute": route_attributes(attrs, self.api_version),
                          "announce": {_dump_family(family): {next_hop or "null": [{"nlri": prefix}]}}}}
        return self._line("update", peer, self._neighbor(peer, "in", message=msg))

    def state(self, peer: PeerInfo, state: str, reason: str = None) -> str:
        content = {"state": state}
        if state == "down":
            content["reason"] = reason or ""
        return self._line("state", peer, self._neighbor(peer, **content))

    def notification(self, peer: PeerInfo, direction: str, code: int, subcode: int, data: bytes = b"") -> str:
        return self._line("notification", peer, self._neighbor(
            peer, direction, notification={"code": code, "subcode": subcode, "data": bytes(data).hex().upper()}))

    def open(self, peer: PeerInfo, direction: str, o: m.Open) -> str:
        caps = {str(c.code): {"name": type(c).__name__.lower()} for c in o.capabilities}
        return self._line("open", peer, self._neighbor(peer, direction, open={
            "version": o.version, "asn": o.asn, "hold_time": o.hold_time, "router_id": o.bgp_id,
            "capabilities": caps}))

    def keepalive(self, peer: PeerInfo, direction: str) -> str:
        return self._line("keepalive", peer, self._neighbor(peer, direction))

    def notice(self, text: str) -> str:
        """A line about the stream itself (lost events, a table dump
        starting or ending): ``type`` "notice"."""
        return self._line("notice", None, {"notice": text})

    def error(self, peer, text: str) -> str:
        return self._line("error", peer, {"error": text})

    def shutdown(self) -> str:
        return self._line("notification", None, {"notification": "shutdown"})


def _text_path_id(entry):
    pi = entry.get("path-information")
    return "" if pi is None else " path-information %s" % pi


class TextEncoder:
    """ExaBGP's ``text`` encoder (one or more lines per event, joined by
    newlines, no final newline)."""

    def __init__(self, impl=None):
        self.impl = impl

    @staticmethod
    def _attrs_text(u):
        parts = []
        if u.origin is not None:
            parts.append("origin %s" % ORIGIN_NAMES.get(u.origin, u.origin))
        segs = u.as_path
        if segs:
            parts.append("as-path [ %s ]" % " ".join(str(a) for a in u.as_path_asns()))
        if u.med is not None:
            parts.append("med %d" % u.med)
        if u.local_pref is not None:
            parts.append("local-preference %d" % u.local_pref)
        if u.communities:
            parts.append("community [ %s ]" % " ".join(format_community(c) for c in u.communities))
        if u.ext_communities:
            parts.append("extended-community [ %s ]" % " ".join(exa_ext_community(c) for c in u.ext_communities))
        if u.large_communities:
            parts.append("large-community [ %s ]" % " ".join("%d:%d:%d" % tuple(v) for v in u.large_communities))
        return (" " + " ".join(parts)) if parts else ""

    def update(self, peer: PeerInfo, body: bytes, ctx, direction: str = "in") -> str:
        try:
            u = m.decode_update(bytes(body), ctx, impl=self.impl)
        except (BGPError, ValueError, IndexError) as exc:
            return self.error(peer, "undecodable UPDATE: %s" % exc)
        head = "neighbor %s %s update" % (peer.peer_address, direction)
        eor = u.eor_family
        if eor is not None:
            return "%s start\n%s eor %s\n%s end" % (head, head, exa_family(eor), head)
        lines = ["%s start" % head]
        attrs = self._attrs_text(u)
        announce, withdraw = exa_routes(u)
        for entries in withdraw.values():
            for e in entries:
                lines.append("%s withdrawn %s%s" % (head, e["nlri"], _text_path_id(e)))
        for by_nh in announce.values():
            for nh, entries in by_nh.items():
                for e in entries:
                    lines.append("%s announced %s%s next-hop %s%s" % (head, e["nlri"], _text_path_id(e), nh, attrs))
        lines.append("%s end" % head)
        return "\n".join(lines)

    def route(self, peer: PeerInfo, family: str, prefix: str, next_hop, attrs: dict) -> str:
        a = route_attributes(attrs, 4)
        parts = ["origin %s" % a["origin"]]
        if a.get("as-path"):
            parts.append("as-path [ %s ]" % " ".join(str(x) for x in a["as-path"]))
        for key, name in (("med", "med"), ("local-preference", "local-preference")):
            if key in a:
                parts.append("%s %d" % (name, a[key]))
        if a.get("community"):
            parts.append("community [ %s ]" % " ".join("%d:%d" % tuple(c) for c in a["community"]))
        if a.get("large-community"):
            parts.append("large-community [ %s ]" % " ".join("%d:%d:%d" % tuple(c) for c in a["large-community"]))
        return "neighbor %s in update announced %s next-hop %s %s" % (
            peer.peer_address, prefix, next_hop or "null", " ".join(parts))

    def state(self, peer: PeerInfo, state: str, reason: str = None) -> str:
        if state == "down":
            return "neighbor %s down - %s" % (peer.peer_address, reason or "")
        return "neighbor %s %s" % (peer.peer_address, state)

    def notification(self, peer: PeerInfo, direction: str, code: int, subcode: int, data: bytes = b"") -> str:
        return "neighbor %s %s notification code %d subcode %d data %s" % (
            peer.peer_address, direction, code, subcode, bytes(data).hex().upper())

    def open(self, peer: PeerInfo, direction: str, o: m.Open) -> str:
        return "neighbor %s %s open version %d asn %d hold_time %d router_id %s" % (
            peer.peer_address, direction, o.version, o.asn, o.hold_time, o.bgp_id)

    def keepalive(self, peer: PeerInfo, direction: str) -> str:
        return "neighbor %s %s keepalive" % (peer.peer_address, direction)

    def notice(self, text: str) -> str:
        return "notice %s" % text

    def error(self, peer, text: str) -> str:
        return "error %s" % text

    def shutdown(self) -> str:
        return "shutdown %d %d" % (os.getpid(), os.getppid())


def make_encoder(kind: str, api_version: int = 4):
    """The encoder a ``[[processes]]`` entry names ("json" or "text")."""
    if kind == "json":
        return JsonEncoder(api_version)
    if kind == "text":
        return TextEncoder()
    raise ValueError("encoder must be json or text, not %r" % (kind,))
