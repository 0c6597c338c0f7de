"""Routes as the library's API sees them, and their wire forms.

Owns: the packed prefix keys (``pack_prefix``, ``split_nlri``,
``key_prefix``: a key is an optional 4-octet path id + the NLRI entry, host
bits cleared), :class:`PathSpec` (what ``announce`` was asked to send) with
its argument parsing (``announcement``) and its per-session attribute
encoding (``wire_attributes``), and :class:`RouteAttributes` with
``decode_path`` (a received attribute block, decoded on demand).

Pure functions and value types: no state, no session.  Called by the
Adj-RIB-Out (:mod:`fastbgp.session.adj_rib_out`), the dict Adj-RIB-In
(:mod:`fastbgp.session.adj_rib_in`), :class:`fastbgp.session.speaker.Speaker`
and the daemon (``decode_path`` for its route views).
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Iterable, Optional

import msgspec

from fastbgp.wire.communities import parse_community, parse_large_community
from fastbgp.wire.families import FAMILIES, family_name, parse_family
from fastbgp.wire import messages
from fastbgp.wire.constants import (
    AFI_IPV4,
    AFI_IPV6,
    ATTR_AGGREGATOR,
    ATTR_AS_PATH,
    ATTR_ATOMIC_AGGREGATE,
    ATTR_CLUSTER_LIST,
    ATTR_COMMUNITIES,
    ATTR_EXT_COMMUNITIES,
    ATTR_LARGE_COMMUNITY,
    ATTR_LOCAL_PREF,
    ATTR_MED,
    ATTR_NEXT_HOP,
    ATTR_ORIGIN,
    ATTR_ORIGINATOR_ID,
    ATTR_OTC,
    IPV4_UNICAST,
    IPV6_UNICAST,
    ROLE_PEER,
    ROLE_PROVIDER,
    ROLE_RS,
)

__all__ = [
    "PathSpec",
    "RouteAttributes",
    "announcement",
    "build_spec",
    "by_prefix",
    "check_next_hop",
    "decode_path",
    "family_known",
    "family_of",
    "family_text",
    "group_prefixes",
    "ip_text",
    "key_prefix",
    "pack_prefix",
    "split_nlri",
    "wire_attributes",
]

PID0 = b"\x00\x00\x00\x00"
_ORIGINS = {"igp": 0, "egp": 1, "incomplete": 2, "?": 2, "i": 0, "e": 1}


# ---------------------------------------------------------------- families


def family_of(value) -> tuple:
    """(afi, safi) of a family name ("ipv4-unicast", "ipv6") or pair."""
    return parse_family(value)


def family_text(family) -> str:
    """The name of an (afi, safi) pair, for messages."""
    return family_name(family)


def family_known(family) -> bool:
    """Whether the session layer keeps routes of this (afi, safi): the named
    families of ``fastbgp.wire.families`` (IPv4/IPv6 unicast and multicast)."""
    return tuple(family) in FAMILIES.values()


# ---------------------------------------------------------------- prefixes


def pack_prefix(text: str):
    """(afi, packed NLRI entry) of "10.0.0.0/8" / "2001:db8::/32"; host bits
    past the length are cleared (RFC 4271 §4.3 makes them irrelevant)."""
    addr, sep, plen = text.partition("/")
    if ":" in addr:
        raw = socket.inet_pton(socket.AF_INET6, addr)
        afi, maxlen = AFI_IPV6, 128
    else:
        try:
            raw = socket.inet_pton(socket.AF_INET, addr)
        except OSError:
            raise ValueError("not an IP prefix: %r" % (text,)) from None
        afi, maxlen = AFI_IPV4, 32
    n = int(plen) if sep else maxlen
    if not 0 <= n <= maxlen:
        raise ValueError("prefix length out of range: %r" % (text,))
    nb = (n + 7) >> 3
    body = raw[:nb]
    if n & 7:
        body = body[:-1] + bytes((body[-1] & (0xFF << (8 - (n & 7))) & 0xFF,))
    return afi, bytes((n,)) + body


def split_nlri(packed: bytes, addpath: bool) -> list:
    """Packed NLRI (already validated by the codec) -> one bytes key per
    entry (path id included with ADD-PATH), trailing host bits cleared so
    equal prefixes give equal keys."""
    out = []
    append = out.append
    pos = 0
    n = len(packed)
    off = 4 if addpath else 0
    while pos < n:
        plen = packed[pos + off]
        end = pos + off + 1 + ((plen + 7) >> 3)
        key = packed[pos:end]
        if plen & 7:
            last = key[-1]
            masked = last & (0xFF << (8 - (plen & 7))) & 0xFF
            if masked != last:
                key = key[:-1] + bytes((masked,))
        append(key)
        pos = end
    return out


def key_prefix(key: bytes, afi: int, addpath: bool):
    """(prefix text, path id or None) of a RIB key."""
    if addpath:
        pid = int.from_bytes(key[:4], "big")
        key = key[4:]
    else:
        pid = None
    plen = key[0]
    if afi == AFI_IPV6:
        text = socket.inet_ntop(socket.AF_INET6, key[1:].ljust(16, b"\x00"))
    else:
        text = socket.inet_ntop(socket.AF_INET, key[1:].ljust(4, b"\x00"))
    return "%s/%d" % (text, plen), pid


def ip_text(raw: bytes) -> str:
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw)
    return socket.inet_ntop(socket.AF_INET6, raw)


def group_prefixes(prefixes: Iterable[str], path_id: int = 0) -> dict:
    """{(afi, safi): [key]} of prefix strings (unicast)."""
    if isinstance(prefixes, str):
        prefixes = [prefixes]
    pid = PID0 if not path_id else int(path_id).to_bytes(4, "big")
    v4 = []
    v6 = []
    for p in prefixes:
        afi, packed = pack_prefix(p)
        (v6 if afi == AFI_IPV6 else v4).append(pid + packed)
    out = {}
    if v4:
        out[IPV4_UNICAST] = v4
    if v6:
        out[IPV6_UNICAST] = v6
    return out


# ---------------------------------------------------------------- routes out


class PathSpec(msgspec.Struct, frozen=True):
    """What :meth:`Speaker.announce` was asked to send, independent of the
    session: encoded per session (AS prepending, next-hop-self) and cached."""

    origin: int = 0
    as_path: tuple = ()
    next_hop: Optional[str] = None
    link_local: Optional[str] = None
    med: Optional[int] = None
    local_pref: Optional[int] = None
    communities: tuple = ()
    large_communities: tuple = ()
    ext_communities: tuple = ()
    atomic_aggregate: bool = False
    aggregator: Optional[tuple] = None


def _parse_origin(origin) -> int:
    if isinstance(origin, str):
        try:
            return _ORIGINS[origin.lower()]
        except KeyError:
            raise ValueError("origin must be igp, egp or incomplete, got %r" % origin) from None
    if origin not in (0, 1, 2):
        raise ValueError("origin must be 0, 1 or 2")
    return int(origin)


def _large(c) -> tuple:
    """A large community as text ("g:l1:l2") or a 3-tuple, checked."""
    if isinstance(c, str):
        return parse_large_community(c)
    a, b, d = c
    for v in (a, b, d):
        if not 0 <= v <= 0xFFFFFFFF:
            raise ValueError("large community part out of range: %r" % (c,))
    return (int(a), int(b), int(d))


def build_spec(next_hop, as_path, origin, med, local_pref, communities, large_communities, ext_communities,
               atomic_aggregate, aggregator, link_local) -> PathSpec:
    """A checked :class:`PathSpec` of ``announce``'s arguments."""
    path = tuple(int(a) for a in (as_path or ()))
    for a in path:
        if not 0 <= a <= 0xFFFFFFFF:
            raise ValueError("AS %r out of range" % a)
    if next_hop is not None:
        next_hop = str(ipaddress.ip_address(next_hop))
    if link_local is not None:
        link_local = str(ipaddress.IPv6Address(link_local))
    comms = tuple(parse_community(c, numeric=True) if isinstance(c, str) else int(c) for c in (communities or ()))
    large = tuple(_large(c) for c in (large_communities or ()))
    ext = tuple(int.from_bytes(c, "big") if isinstance(c, (bytes, bytearray)) else int(c) for c in (ext_communities or ()))
    for v, lim in ((med, 0xFFFFFFFF), (local_pref, 0xFFFFFFFF)):
        if v is not None and not 0 <= v <= lim:
            raise ValueError("MED / LOCAL_PREF out of range")
    agg = None
    if aggregator is not None:
        asn, addr = aggregator
        agg = (int(asn), str(ipaddress.IPv4Address(addr)))
    return PathSpec(
        origin=_parse_origin(origin),
        as_path=path,
        next_hop=next_hop,
        link_local=link_local,
        med=med,
        local_pref=local_pref,
        communities=comms,
        large_communities=large,
        ext_communities=ext,
        atomic_aggregate=bool(atomic_aggregate),
        aggregator=agg,
    )


def check_next_hop(groups, spec):
    """An IPv6 route needs an IPv6 next hop.  An IPv4 route may have an IPv6
    one (RFC 8950): whether a session may carry it is known only when it is
    encoded for that session (``wire_attributes``)."""
    if spec.next_hop is None:
        return
    v6 = ":" in spec.next_hop
    if not v6 and IPV6_UNICAST in groups:
        raise ValueError("IPv4 next hop %s for IPv6 prefixes: give an IPv6 next hop" % spec.next_hop)


def announcement(prefixes, path_id, next_hop, as_path, origin, med, local_pref, communities, large_communities,
                 ext_communities, atomic_aggregate, aggregator, link_local) -> tuple:
    """({family: [key]}, PathSpec) of ``announce``'s arguments, checked."""
    groups = group_prefixes(prefixes, path_id)
    spec = build_spec(next_hop, as_path, origin, med, local_pref, communities, large_communities,
                      ext_communities, atomic_aggregate, aggregator, link_local)
    check_next_hop(groups, spec)
    return groups, spec


def wire_attributes(spec: PathSpec, fam, *, ebgp: bool, local_as: int, local_address: Optional[str],
                    local_role: Optional[int], ipv6_next_hop: bool = False) -> tuple:
    """(canonical attribute block, MP_REACH next hop or None) of ``spec``
    for one session: ``local_address`` is its own address (next-hop-self),
    ``local_role`` our negotiated RFC 9234 role, ``ipv6_next_hop`` whether
    the peer takes IPv6 next hops for this IPv4 family (RFC 8950 §4: it
    advertised the Extended Next Hop capability for it)."""
    M = messages
    attrs = [M.Origin(spec.origin)]
    path = list(spec.as_path)
    if ebgp:
        # RFC 4271 §5.1.2: prepend our AS when sending to an external peer.
        path = [local_as] + path
    attrs.append(M.AsPath([M.Segment(2, path)] if path else []))
    mp_nh = None
    if fam[0] == AFI_IPV4:
        nh = spec.next_hop or local_address
        if nh is not None and ":" in nh:
            if not ipv6_next_hop:
                raise ValueError("IPv6 next hop %s for %s: the peer did not advertise the extended next hop "
                                 "capability for it (RFC 8950 §4)" % (nh, family_text(fam)))
            # RFC 8950 §3: the IPv4 NLRI travel in MP_REACH_NLRI with a
            # 16-octet next hop, or 32 with a link-local address.
            mp_nh = socket.inet_pton(socket.AF_INET6, nh)
            if spec.link_local:
                mp_nh += socket.inet_pton(socket.AF_INET6, spec.link_local)
        elif nh is None:
            raise ValueError("no IPv4 next hop for %s (session runs over IPv6: give next_hop)" % family_text(fam))
        elif fam == IPV4_UNICAST:
            attrs.append(M.NextHop(nh))
        else:
            mp_nh = socket.inet_pton(socket.AF_INET, nh)
    else:
        nh = spec.next_hop
        if nh is None:
            # Next-hop-self over an IPv4 session: the IPv4-mapped address.
            nh = local_address if ":" in (local_address or "") else "::ffff:%s" % local_address
        mp_nh = socket.inet_pton(socket.AF_INET6, nh)
        if spec.link_local:
            # RFC 2545 §3: global + link-local, 32 octets.
            mp_nh += socket.inet_pton(socket.AF_INET6, spec.link_local)
    if spec.med is not None:
        attrs.append(M.Med(spec.med))
    if not ebgp:
        # RFC 4271 §5.1.5: LOCAL_PREF in every UPDATE to internal peers,
        # never to external ones.
        attrs.append(M.LocalPref(100 if spec.local_pref is None else spec.local_pref))
    if spec.atomic_aggregate:
        attrs.append(M.AtomicAggregate())
    if spec.aggregator is not None:
        attrs.append(M.Aggregator(spec.aggregator[0], spec.aggregator[1]))
    if spec.communities:
        attrs.append(M.Communities(list(spec.communities)))
    if spec.ext_communities:
        attrs.append(M.ExtCommunities(list(spec.ext_communities)))
    if spec.large_communities:
        attrs.append(M.LargeCommunities(list(spec.large_communities)))
    if ebgp and local_role in (ROLE_PROVIDER, ROLE_PEER, ROLE_RS):
        # RFC 9234 §5: routes to a customer, peer or RS client carry OTC
        # (added with our AS when not present).
        attrs.append(M.Otc(local_as))
    attrs.sort(key=lambda a: a.type_code)
    return M.encode_attributes(attrs), mp_nh


# ---------------------------------------------------------------- routes in


class RouteAttributes(msgspec.Struct, frozen=True):
    """Decoded path attributes of one received route.  AS numbers are the
    real 4-octet values (AS4_PATH merged for 2-octet peers).  ``attributes``
    holds every attribute as a :mod:`fastbgp.wire.messages` Struct."""

    origin: Optional[int] = None
    as_path: list[int] = []
    as_path_segments: list = []
    next_hop: Optional[str] = None
    link_local: Optional[str] = None
    med: Optional[int] = None
    local_pref: Optional[int] = None
    communities: list[str] = []
    large_communities: list[str] = []
    ext_communities: list[str] = []
    atomic_aggregate: bool = False
    aggregator: Optional[tuple] = None
    originator_id: Optional[str] = None
    cluster_list: list[str] = []
    otc: Optional[int] = None
    attributes: list = []
    stale: bool = False
    path_id: Optional[int] = None

    @property
    def origin_name(self) -> str:
        return {0: "igp", 1: "egp", 2: "incomplete"}.get(self.origin, "?")


def by_prefix(paths: dict) -> dict:
    """{prefix: RouteAttributes} of {(prefix, path id): RouteAttributes}:
    with ADD-PATH the path with the lowest path id stands for its prefix."""
    out = {}
    for (prefix, pid), route in paths.items():
        cur = out.get(prefix)
        if cur is None or (pid or 0) < (cur.path_id or 0):
            out[prefix] = route
    return out


def decode_path(path) -> RouteAttributes:
    """:class:`RouteAttributes` of ``(attribute block, MP next hop)`` as a
    session received them."""
    attrs, nh = path
    decoded = messages.decode_attributes(attrs)
    kw = {"attributes": decoded}
    for a in decoded:
        t = a.type_code
        if t == ATTR_ORIGIN:
            kw["origin"] = a.value
        elif t == ATTR_AS_PATH:
            kw["as_path"] = a.asns()
            kw["as_path_segments"] = [(s.type, list(s.asns)) for s in a.segments]
        elif t == ATTR_NEXT_HOP:
            kw["next_hop"] = a.address
        elif t == ATTR_MED:
            kw["med"] = a.value
        elif t == ATTR_LOCAL_PREF:
            kw["local_pref"] = a.value
        elif t == ATTR_COMMUNITIES:
            kw["communities"] = a.strings()
        elif t == ATTR_LARGE_COMMUNITY:
            kw["large_communities"] = a.strings()
        elif t == ATTR_EXT_COMMUNITIES:
            kw["ext_communities"] = a.strings()
        elif t == ATTR_ATOMIC_AGGREGATE:
            kw["atomic_aggregate"] = True
        elif t == ATTR_AGGREGATOR:
            kw["aggregator"] = (a.asn, a.address)
        elif t == ATTR_ORIGINATOR_ID:
            kw["originator_id"] = a.address
        elif t == ATTR_CLUSTER_LIST:
            kw["cluster_list"] = list(a.ids)
        elif t == ATTR_OTC:
            kw["otc"] = a.asn
    if nh:
        if len(nh) == 32:
            kw["next_hop"] = ip_text(nh[:16])
            kw["link_local"] = ip_text(nh[16:])
        elif len(nh) in (4, 16):
            kw["next_hop"] = ip_text(nh)
    return RouteAttributes(**kw)
