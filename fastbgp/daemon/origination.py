"""Routes originated here: from the configuration, from the API (announce /
withdraw) and injected in bulk (``fastbgp mrt inject``).

Owns: the originated routes (``local_routes``, family -> {packed prefix:
"config" | "api"}) and the count of injected prefixes (not listed one by
one); checking an API request or an injected group before anything changes.
Our routes are paths of the pseudo-peer ``LOCAL_PID``.

Calls: the daemon's ``ribs``, ``attrs`` and ``loop``, the importer's
``update_rib`` (store and export) and the exporter's ADD-PATH hooks.
Called by: the daemon (start, the Control ``announce``/``withdraw``,
``inject``) and reload (the configured routes' difference).
"""

from __future__ import annotations

import asyncio
import ipaddress

import msgspec


from fastbgp.config import schema as cfgmod
from fastbgp.config.diff import route_name
from fastbgp.control import contract as ctl
from fastbgp.rib.export import source_tag
from fastbgp.rib.policy import NEXT_HOP_SELF, encode_route
from fastbgp.wire import codec
from fastbgp.wire.as4 import split_attrs
from fastbgp.wire.nexthop import check_next_hop
from fastbgp.wire.constants import (
    AFI_IPV4,
    ATTR_AS_PATH,
    ATTR_NEXT_HOP,
    ATTR_ORIGIN,
    IPV4_UNICAST,
    IPV6_UNICAST,
    WELL_KNOWN_FLAGS,
)
from fastbgp.daemon.common import LOCAL_PID, SLICE_SECONDS, add_attr, prefix_text

_INJECT_CTX = codec.Context(as4=True, extended_message=True)


def route_key(route: cfgmod.Route) -> tuple:
    """(family, key in ``local_routes``) of a configured or requested route:
    the packed prefix, preceded by the 4-octet path id when the route has
    one (RFC 7911 §3 layout; ids are below 2**16, so such a key is never
    also a packed prefix)."""
    (afi, addr, plen), _block, _nh = encode_route(route)
    packed = bytes((plen,)) + addr[: (plen + 7) >> 3]
    if route.path_id is not None:
        packed = route.path_id.to_bytes(4, "big") + packed
    return (afi, 1), packed


def _prefix_of(key):
    """The packed prefix of a ``local_routes`` key (see route_key)."""
    return key if len(key) == 1 + ((key[0] + 7) >> 3) else key[4:]


class Originator:
    """Our own routes; see the module docstring for its contract."""

    def __init__(self, daemon, importer, exporter):
        self.daemon = daemon
        self.importer = importer
        self.exporter = exporter
        self.local_routes: dict = {IPV4_UNICAST: {}, IPV6_UNICAST: {}}  # family -> {packed prefix: origin}
        self.injected = {IPV4_UNICAST: 0, IPV6_UNICAST: 0}  # prefixes injected (mrt inject), not tracked one by one
        # Routes offered to some neighbours only: (family, key) -> the
        # config Route (to re-scope it when a withdrawal names some of its
        # neighbours).  Their sets live in the local Source's ``scopes``,
        # where the update groups look (only when there are any).
        self.scoped: dict = {}
        self._observers: tuple = ()  # observe(): told of every API announce / withdraw

    def observe(self, observer):
        """Call ``observer(family, [packed prefix, ...])`` after each API
        announcement or withdrawal changed our routes (the BMP feed reports
        the Loc-RIB / Adj-RIB-Out state of those prefixes).  Returns the
        unsubscribe call.  An observer must not raise."""
        self._observers = self._observers + (observer,)

        def unsubscribe():
            self._observers = tuple(o for o in self._observers if o is not observer)

        return unsubscribe

    def _tell(self, routes):
        if not self._observers or not routes:
            return
        by_fam = {}
        for r in routes:
            fam, key = route_key(r)
            by_fam.setdefault(fam, {})[_prefix_of(key)] = None
        for fam, entries in by_fam.items():
            for observer in self._observers:
                observer(fam, list(entries))

    def _source(self):
        return self.daemon.sources[LOCAL_PID]

    def originate_route(self, route, origin):
        (afi, addr, plen), block, nh = encode_route(route)
        fam = (afi, 1)
        packed = bytes((plen,)) + addr[: (plen + 7) >> 3]
        nhb = b"" if (nh == NEXT_HOP_SELF or fam == IPV4_UNICAST) else nh
        key = packed
        addpath = route.path_id is not None
        src = self._source()
        if addpath:
            # RFC 7911 §3: our path id in front of the prefix.  Dumps of our
            # paths keep the ids from now on (ADD-PATH groups).
            key = route.path_id.to_bytes(4, "big") + packed
            if fam not in src.addpath_rx:
                src.addpath_rx = frozenset(src.addpath_rx) | {fam}
        scope = frozenset(route.neighbors) if route.neighbors else None
        per = (src.scopes or {}).get(fam) or {}
        if per.get(packed) != scope and key in self.local_routes[fam]:
            # The neighbour set changed: withdrawn from the old set first, so
            # that nobody keeps a route it is no longer offered.
            self.unoriginate(fam, key)
        if scope is not None:
            if src.scopes is None:
                src.scopes = {}
            src.scopes.setdefault(fam, {})[packed] = scope
            self.scoped[(fam, key)] = route
        elif per.pop(packed, None) is not None:
            self.scoped = {k: r for k, r in self.scoped.items() if k[0] != fam or _prefix_of(k[1]) != packed}
        self.local_routes[fam][key] = origin
        self._install(fam, block, nhb, key, addpath)

    def _install(self, fam, block, nh, packed, addpath=False):
        """Our own paths (pseudo-peer LOCAL_PID) for the packed prefixes, with
        one interned attribute set, into the RIB and the ADD-PATH groups."""
        table = self.daemon.attrs
        aid = table.intern(block, source_tag(LOCAL_PID, nh))
        try:
            if self.exporter.addpath_groups(fam):
                self.exporter.addpath_delta(fam, LOCAL_PID, block, nh, packed, addpath)
            self.importer.update_rib(fam, LOCAL_PID, packed, addpath, aid)
        finally:
            table.release(aid)

    def unoriginate(self, fam, packed):
        """Withdraw our path of ``packed`` (a ``local_routes`` key)."""
        if self.local_routes[fam].pop(packed, None) is None:
            # Injected routes (mrt inject) are not listed one by one: look in
            # the RIB itself for a path of ours.
            if not self.injected.get(fam) or _prefix_of(packed) is not packed or not self.has_local_path(fam, packed):
                return False
        addpath = _prefix_of(packed) is not packed
        if self.exporter.addpath_groups(fam):
            self.exporter.addpath_delta(fam, LOCAL_PID, None, None, packed, addpath)
        self.exporter.export_cs(fam, self.daemon.ribs[fam].withdraw(LOCAL_PID, packed, addpath))
        if self.scoped.pop((fam, packed), None) is not None:
            prefix = _prefix_of(packed)
            if not any(fam == f and _prefix_of(k) == prefix for f, k in self.scoped):
                self._source().scopes[fam].pop(prefix, None)
        return True

    def has_local_path(self, fam, packed):
        addr = packed[1:] + bytes((4 if fam[0] == AFI_IPV4 else 16) - (len(packed) - 1))
        prefix = prefix_text(fam[0], addr, packed[0])
        return any(peer == LOCAL_PID for peer, _i, _a, _f in self.daemon.ribs[fam].paths(prefix))

    def apply_routes(self, old, new, d) -> list:
        """After a reload: the configured routes' difference ``d``
        (config.diff), then every configured route that is not originated
        any more (withdrawn through the API, ``global rib del``) originated
        again -- the file is what a reload makes true.  Returns the
        prefixes so restored, sorted."""
        old_routes = {route_name(r): r for r in old.routes}
        new_routes = {route_name(r): r for r in new.routes}
        for p in d.routes_removed:
            self.unoriginate(*route_key(old_routes[p]))
        done = set(d.routes_added) | set(d.routes_changed)
        for p in done:
            self.originate_route(new_routes[p], "config")
        restored = []
        for p, r in new_routes.items():
            if p in done:
                continue
            fam, packed = route_key(r)
            # An API announce of the same prefix ("api") replaced the
            # configured one on purpose: it stays.
            if packed not in self.local_routes[fam]:
                self.originate_route(r, "config")
                restored.append(p)
        return sorted(restored, key=lambda p: (ipaddress.ip_network(p.split()[0]).version,
                                               ipaddress.ip_network(p.split()[0]), p))

    # -- the API ---------------------------------------------------------------------------------

    def routes_from_request(self, req: ctl.Announce, withdraw=False):
        """The config Routes of an API request.  ``ctl.Announce`` validated
        every field when it was built (prefixes and next hop canonical, AS
        numbers, u32 ranges, origin, communities); what it cannot know is
        which next-hop family goes with which prefix."""
        out = []
        for p in req.prefixes:
            if withdraw:
                out.append(cfgmod.Route(prefix=p, path_id=req.path_id, neighbors=list(req.neighbors)))
                continue
            if req.next_hop is not None:
                nh_v6, net_v6 = ":" in req.next_hop, ":" in p
                if nh_v6 != net_v6:
                    raise ValueError("next_hop: IPv%d next hop for the IPv%d prefix %s"
                                     % (6 if nh_v6 else 4, 6 if net_v6 else 4, p))
            out.append(cfgmod.Route(prefix=p, next_hop=req.next_hop, as_path=list(req.as_path), origin=req.origin,
                                    communities=list(req.communities), large_communities=list(req.large_communities),
                                    med=req.med, local_pref=req.local_pref,
                                    ext_communities=list(req.ext_communities), path_id=req.path_id,
                                    neighbors=list(req.neighbors)))
        return out

    def announce(self, request: ctl.Announce) -> int:
        if request.neighbors:
            sp = self.daemon.speaker
            known = {nb.address for nb in sp.neighbors.values()} if sp is not None else set()
            unknown = [a for a in request.neighbors if a not in known]
            if unknown:
                raise ValueError("neighbors: %s not configured" % ", ".join(unknown[:10]))
        routes = self.routes_from_request(request)
        for r in routes:
            self.originate_route(r, "api")
        self._tell(routes)
        return len(routes)

    def withdraw(self, request: ctl.Announce) -> int:
        n = 0
        changed = []
        for r in self.routes_from_request(request, withdraw=True):
            if (r.neighbors and self.withdraw_from(r)) or self.unoriginate(*route_key(r)):
                n += 1
                changed.append(r)
        self._tell(changed)
        return n

    def withdraw_from(self, r) -> bool:
        """A withdrawal naming neighbours (ExaBGP's ``neighbor A withdraw
        route ...``): the route stays offered to the neighbours it does not
        name.  False when it names all of them (withdraw it altogether)."""
        fam, key = route_key(r)
        if key not in self.local_routes[fam]:
            return False
        kept = self.scoped.get((fam, key))
        sp = self.daemon.speaker
        everyone = {nb.address for nb in sp.neighbors.values()} if sp is not None else set()
        offered = set(kept.neighbors) if kept is not None else everyone
        left = offered - set(r.neighbors)
        if not left:
            return False
        if kept is None:
            raise ValueError("%s is offered to every neighbour; a withdrawal naming some of them needs the "
                             "route's attributes: announce it again naming the neighbours that keep it" % r.prefix)
        self.originate_route(cfgmod.Route(**dict(msgspec.structs.asdict(kept), neighbors=sorted(left))),
                             self.local_routes[fam][key])
        return True

    # -- routes injected in bulk (fastbgp mrt inject) --------------------------------------------

    def inject_check(self, i, g):
        """(family, attrs to intern, MP next hop, prefix count) of one
        injected group; ValueError naming the group when it is unusable."""
        afi = g.afi
        fam = (afi, 1)
        if fam not in self.daemon.ribs:
            raise ValueError("[%d].afi: %r is not a family this daemon routes (1 or 2)" % (i, afi))
        try:
            n = codec.count_prefixes(g.nlri, afi)
        except ValueError:
            raise ValueError("[%d].nlri: malformed packed prefixes" % i) from None
        attrs, nh = g.attrs, bytes(g.next_hop or b"")
        # The block goes through the session parser (4-octet AS), strict:
        # whatever a received UPDATE could not carry (bad flags, lengths,
        # duplicates, a malformed AS_PATH) is refused here rather than sent
        # on to peers that would reset the session over it, and what is kept
        # is the canonical form received paths are interned in.
        if len(attrs) > 0xFFFF - 4:
            raise ValueError("[%d].attrs: longer than an UPDATE can carry" % i)
        try:
            parsed = codec.parse_update(b"\x00\x00" + len(attrs).to_bytes(2, "big") + attrs, _INJECT_CTX, strict=True)
        except Exception as exc:
            raise ValueError("[%d].attrs: %s" % (i, exc)) from None
        if parsed.mp_reach is not None or parsed.mp_unreach is not None:
            raise ValueError("[%d].attrs: MP_REACH_NLRI/MP_UNREACH_NLRI do not belong in the block "
                             "(the next hop goes in next_hop, prefixes in nlri)" % i)
        block = parsed.attrs
        types = {t for _f, t, _v in split_attrs(block)}
        if ATTR_ORIGIN not in types or ATTR_AS_PATH not in types:
            # RFC 4271 §5.1.1, §5.1.2: mandatory in every UPDATE we would send.
            raise ValueError("[%d].attrs: ORIGIN and AS_PATH are required" % i)
        if afi == AFI_IPV4:
            if nh:
                if len(nh) != 4:
                    raise ValueError("[%d].next_hop: an IPv4 route needs a 4-octet next hop" % i)
                block = add_attr(block, ATTR_NEXT_HOP, WELL_KNOWN_FLAGS[ATTR_NEXT_HOP], nh)
                self.inject_next_hop(i, "next_hop", nh)
            elif parsed.next_hop:
                self.inject_next_hop(i, "attrs", parsed.next_hop)
            nh = b""  # IPv4 unicast: NEXT_HOP lives in the block (none: ours)
        elif len(nh) not in (0, 16, 32):
            # RFC 2545 §3: a global address, optionally followed by a link-local one.
            raise ValueError("[%d].next_hop: an IPv6 next hop is 16 or 32 octets" % i)
        else:
            for k in range(0, len(nh), 16):
                self.inject_next_hop(i, "next_hop", nh[k : k + 16])
        return fam, block, nh, n

    @staticmethod
    def inject_next_hop(i, field, packed):
        """RFC 4271 §6.3: the host-address rule every source of routes
        follows (fastbgp.wire.nexthop); ValueError naming the group."""
        try:
            check_next_hop(packed)
        except ValueError as exc:
            raise ValueError("[%d].%s: %s" % (i, field, exc)) from None

    async def inject(self, groups) -> int:
        """Originate routes in bulk: ``groups`` of (afi, attrs, next_hop,
        nlri), each an attribute block in canonical form (4-octet AS) and the
        packed prefixes that carry it.  Each group is interned once and goes
        to the RIB with one Rib.update -- no Python object per prefix -- as
        a locally originated path (replacing an earlier one of ours).  The
        whole batch is checked first: a bad group changes nothing.  Large
        batches yield to the loop between groups.  Returns the prefix count."""
        loop = self.daemon.loop
        t0 = loop.time()
        checked = []
        for i, g in enumerate(groups):
            checked.append(self.inject_check(i, g) + (g.nlri,))
            if not i & 63 and loop.time() - t0 > SLICE_SECONDS:
                await asyncio.sleep(0)
                t0 = loop.time()
        total = 0
        for fam, block, nh, n, nlri in checked:
            if not n:
                continue
            nlri = bytes(nlri)
            self._install(fam, block, nh, nlri)
            self.injected[fam] += n
            total += n
            if loop.time() - t0 > SLICE_SECONDS:
                await asyncio.sleep(0)
                t0 = loop.time()
        return total
