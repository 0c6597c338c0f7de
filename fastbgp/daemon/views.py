"""Read views for the control plane: neighbours and RIBs as the Structs of
:mod:`fastbgp.control.contract`.

Owns: the neighbour summaries and details, the Loc-RIB, Adj-RIB-In and
Adj-RIB-Out listings (plus the streamed full table), the RIB summary, and
the per-peer statistics (best paths, advertised prefixes) with their cache.
Nothing here changes routing state.

Calls: the daemon's ``speaker``, ``ribs``, ``attrs`` and ``sources``, the
:class:`~fastbgp.daemon.peers.PeerRegistry` (``get``, ``path_count``) and
the :class:`~fastbgp.daemon.exporter.Exporter` (its groups, to say what a
member is sent, and its change count, the cache key).  Called by: the
daemon's Control methods; the event stream uses ``route_base`` and
``source_name``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import time
from typing import AsyncIterator, Optional

import msgspec

from fastbgp.control import contract as ctl
from fastbgp.rib.export import scope_of, tag_source
from fastbgp.rib.policy import render_as_path
from fastbgp.wire.communities import parse_community, parse_large_community
from fastbgp.wire import codec, messages
from fastbgp.wire.constants import (
    AFI_IPV4,
    AS_SET,
    ATTR_AS_PATH,
    ATTR_COMMUNITIES,
    ATTR_EXT_COMMUNITIES,
    ATTR_LARGE_COMMUNITY,
    ATTR_LOCAL_PREF,
    ATTR_MED,
    ATTR_NEXT_HOP,
    ATTR_ORIGIN,
    ORIGIN_NAMES,
)
from fastbgp.wire.families import family_name
from fastbgp.daemon.common import LOCAL_PID, family, prefix_text

STATS_TTL = 5.0
_COMMUNITY_FIELDS = {ATTR_COMMUNITIES: "communities", ATTR_LARGE_COMMUNITY: "large_communities",
                     ATTR_EXT_COMMUNITIES: "ext_communities"}


def route_fields(attrs, nh) -> dict:
    """Route fields (fastbgp.control.contract.Route) of one attribute set,
    decoded by :func:`fastbgp.wire.messages.decode_attributes`, with each
    AS_SET kept as a nested list; the MP next hop ``nh`` (16 octets, or 32
    with a link-local address) wins over NEXT_HOP."""
    kw = {}
    for a in messages.decode_attributes(attrs):
        t = a.type_code
        if t == ATTR_ORIGIN:
            kw["origin"] = ORIGIN_NAMES.get(a.value, str(a.value))
        elif t == ATTR_AS_PATH:
            path = []
            for s in a.segments:
                if s.type == AS_SET:
                    path.append(list(s.asns))
                else:
                    path.extend(s.asns)
            kw.pop("as_path", None)
            if a.segments:
                kw["as_path"] = path
        elif t == ATTR_NEXT_HOP:
            kw["next_hop"] = a.address
        elif t == ATTR_MED:
            kw["med"] = a.value
        elif t == ATTR_LOCAL_PREF:
            kw["local_pref"] = a.value
        elif t in _COMMUNITY_FIELDS:
            name = _COMMUNITY_FIELDS[t]
            kw.pop(name, None)
            strings = a.strings()
            if strings:
                kw[name] = list(strings)
    if nh:
        if len(nh) == 32:
            kw["next_hop"] = socket.inet_ntop(socket.AF_INET6, nh[:16])
        elif len(nh) in (4, 16):
            kw["next_hop"] = socket.inet_ntop(socket.AF_INET if len(nh) == 4 else socket.AF_INET6, nh)
    return kw


def route_base(memo, attrs, nh) -> dict:
    """:func:`route_fields`, memoised in ``memo`` for one listing."""
    key = (attrs, nh)
    base = memo.get(key)
    if base is None:
        base = memo[key] = route_fields(attrs, nh)
    return base


def wire_prefix(pk: int, width: int) -> bytes:
    """The NLRI form (RFC 4271 §4.3: length, then the significant octets)
    of a listing's prefix key ``address << 8 | length``."""
    plen = pk & 0xFF
    nb = (plen + 7) >> 3
    return bytes((plen,)) + ((pk >> 8) >> (8 * (width - nb))).to_bytes(nb, "big")


def age_fields(received, now) -> dict:
    """A Route's ``received`` and ``age`` from a path's RIB receive time
    (Unix seconds of its last change: BIRD's notion of a route's age); the
    age is never negative when the wall clock stepped back."""
    if received is None:
        return {}
    return {"received": received, "age": float(max(0, int(now) - received))}


def source_name(sources, pid) -> Optional[str]:
    """What a Route's ``source`` says of peer id ``pid``."""
    if pid == LOCAL_PID:
        return "local"
    src = sources.get(pid)
    return src.address if src is not None else None


def notification_text(n) -> str:
    msg = n.shutdown_message
    text = "%d/%d %s" % (n.code, n.subcode, n.error_name)
    return text + (": %s" % msg if msg else "")


class RouteFilter:
    """The attribute filters of a :class:`~fastbgp.control.contract.RibQuery`
    (community, large community, AS-path regex, origin AS) as a predicate on
    an attribute block, memoised per block: a listing decodes each
    attribute set once, however many prefixes share it."""

    def __init__(self, q: ctl.RibQuery):
        self.community = parse_community(q.community) if q.community is not None else None
        self.large = tuple(parse_large_community(q.large_community)) if q.large_community is not None else None
        self.regex = re.compile(q.as_path) if q.as_path is not None else None
        self.origin_as = q.origin_as
        self.active = any(x is not None for x in (self.community, self.large, self.regex, self.origin_as))
        self.memo: dict = {}

    def __call__(self, attrs) -> bool:
        if not self.active:
            return True
        ok = self.memo.get(attrs)
        if ok is None:
            ok = self.memo[attrs] = self.check(attrs)
        return ok

    def check(self, attrs) -> bool:
        comms, large, segments = (), (), []
        for a in messages.decode_attributes(attrs):
            t = a.type_code
            if t == ATTR_COMMUNITIES:
                comms = a.values
            elif t == ATTR_LARGE_COMMUNITY:
                large = [tuple(v) for v in a.values]
            elif t == ATTR_AS_PATH:
                segments = [(seg.type, list(seg.asns)) for seg in a.segments]
        if self.community is not None and self.community not in comms:
            return False
        if self.large is not None and self.large not in large:
            return False
        if self.regex is not None and self.regex.search(render_as_path(segments)) is None:
            return False
        if self.origin_as is not None:
            # RFC 6811 §2: the origin is the last AS of a path ending in an
            # AS_SEQUENCE; a path ending in an AS_SET has none.
            last = segments[-1] if segments else None
            if last is None or last[0] == AS_SET or not last[1] or last[1][-1] != self.origin_as:
                return False
        return True


def endpoints_text(addresses) -> list:
    """[(address, port)] as "addr:port" / "[v6addr]:port" strings."""
    return ["[%s]:%d" % (a, p) if ":" in str(a) else "%s:%d" % (a, p) for a, p, *_ in addresses]


# Low bits of a listing's sort key that hold the row's index into its groups.
_INDEX_BITS = 32


class Views:
    """The control plane's read views; see the module docstring."""

    def __init__(self, daemon, peers, exporter):
        self.daemon = daemon
        self.peers = peers
        self.exporter = exporter
        self._stats = None
        self._stats_at = (-1, 0.0)

    # -- neighbours ------------------------------------------------------------------------------

    def neighbors(self) -> list:
        speaker = self.daemon.speaker
        if speaker is None:
            return []
        stats = self.peer_stats()
        return [self.summary(nb, ctl.NeighborSummary, stats) for nb in speaker.neighbors.values()]

    def neighbor(self, address: str) -> ctl.NeighborDetail:
        nb = self.peers.get(address)
        d = self.summary(nb, ctl.NeighborDetail, self.peer_stats())
        s = nb.session
        neg = nb.negotiated
        conn = nb.connection
        if conn is not None:
            d.local_address = conn.local_address
            d.remote_port = conn.peer_port
        d.remote_id = nb.remote_id
        if s is not None:
            d.hold_time = s.fsm.negotiated_hold_time
            d.keepalive = s.fsm.negotiated_keepalive_time
            d.capabilities_sent = msgspec.to_builtins(list(s.local_capabilities))
            d.capabilities_received = msgspec.to_builtins(list(s.remote_capabilities))
        if neg is not None:
            d.families = sorted(family_name(f) for f in neg.families)
            d.four_octet_as = neg.as4
            d.addpath_rx = sorted(family_name(f) for f in neg.addpath_rx)
            d.addpath_tx = sorted(family_name(f) for f in neg.addpath_tx)
            d.extended_message = neg.extended_message
            d.graceful_restart = neg.graceful_restart is not None
        if nb.last_notification_sent is not None:
            d.last_notification_sent = notification_text(nb.last_notification_sent)
        if nb.last_notification_received is not None:
            d.last_notification_received = notification_text(nb.last_notification_received)
        cfg = nb.cfg
        d.import_policy = list(cfg.import_policy or [])
        d.export_policy = list(cfg.export_policy or [])
        d.default_import = str(cfg.default_import or "")
        d.default_export = str(cfg.default_export or "")
        d.prefix_limits = [ctl.PrefixLimitInfo(family=str(f), max=lim.max, restart_after=lim.restart_after)
                           for f, lim in sorted((cfg.prefix_limit or {}).items())]
        rpki = self.daemon.rpki
        if rpki is not None:
            d.rpki = rpki.neighbor_counts(nb)  # kept per path by the RIB: no recount
        return d

    def summary(self, nb, cls, stats):
        c = nb.counters
        s, r = c.sent, c.received
        counters = ctl.Counters(
            sent_open=s.open, sent_update=s.update, sent_notification=s.notification, sent_keepalive=s.keepalive,
            sent_refresh=s.refresh, sent_total=s.total, received_open=r.open, received_update=r.update,
            received_notification=r.notification, received_keepalive=r.keepalive, received_refresh=r.refresh,
            received_discarded=r.discarded, received_total=r.total,
            out_of_resources=c.out_of_resources, refused=c.refused, half_open_closed=c.half_open_closed,
            treat_as_withdraw=c.treat_as_withdraw, attribute_discard=c.attribute_discard,
            own_next_hop=c.own_next_hop,
        )
        rsp = self.daemon.engine.route_server
        if rsp is not None:
            counters.rs_next_hop_rejected = rsp.next_hop_rejected.get(nb.address, 0)
        st = stats.get(nb.pid, (0, 0))
        received = self.peers.path_count(nb)
        reason = nb.last_reason
        downtime = None
        if not nb.established and c.downtime is not None:
            downtime = max(time.time() - c.downtime, 0.0)
        return cls(
            address=nb.address,
            peer_as=nb.config.peer_as,
            local_as=nb.local_as,
            description=nb.cfg.description or "",
            state=nb.state.name.lower(),
            admin_down=bool(nb.admin_down),
            uptime=nb.uptime,
            downtime=downtime,
            established_count=c.established_count,
            last_reason=None if reason is None else reason.value,
            last_error=nb.last_error,
            prefixes_received=received,
            # The statistics may be a few seconds old (STATS_TTL): what is
            # known now wins -- a neighbour whose paths are gone has none
            # selected, and nothing is advertised to a session that is down.
            prefixes_accepted=min(st[0], received),
            prefixes_advertised=st[1] if nb.established else 0,
            counters=counters,
        )

    def peer_stats(self, force=False):
        """{pid: (best paths from it, prefixes in its Adj-RIB-Out)} from one
        walk of each Loc-RIB (every attribute group names its source), then
        the members' groups' cached export decisions.  Cached for STATS_TTL
        seconds while the RIB changes."""
        now = time.monotonic()
        changes = self.exporter.changes
        if not force and self._stats is not None and (
            self._stats_at[0] == changes or now - self._stats_at[1] < STATS_TTL
        ):
            return self._stats
        d = self.daemon
        best = {}
        adv = {}
        for fam, rib in d.ribs.items():
            groups = [g for g in self.exporter.groups.values() if g.family == fam and g.members]
            for aid, packed in rib.dump_best():
                pid, attrs, nh = tag_source(d.attrs, aid)
                n = codec.count_prefixes(packed, fam[0])
                best[pid] = best.get(pid, 0) + n
                src = d.sources.get(pid)
                if src is None:
                    continue
                for g in groups:
                    res = g.export(src, attrs, nh)
                    if res is None:
                        continue
                    k = n
                    if len(res) == 3:
                        # Prefix-dependent export policy: ask per prefix.
                        k = sum(1 for _i, ad, pl in codec.unpack_prefixes(packed, fam[0], False)
                                if g.export_prefix(src, res[0], res[1], (fam[0], ad, pl)) is not None)
                    for mpid in g.members:
                        if mpid != pid:
                            adv[mpid] = adv.get(mpid, 0) + k
        self._stats = {pid: (best.get(pid, 0), adv.get(pid, 0)) for pid in set(best) | set(adv)}
        self._stats_at = (changes, now)
        return self._stats

    # -- RIBs ------------------------------------------------------------------------------------

    def resolved(self, items):
        """[(pid, attrs, nh, packed, aid)] of RIB (attr id, packed) items,
        resolved now (ids may be reused once the RIB moves on)."""
        out = []
        table = self.daemon.attrs
        for aid, packed in items:
            pid, attrs, nh = tag_source(table, aid)
            out.append((pid, attrs, nh, packed, aid))
        return out

    def routes_of(self, fam, items, best, memo, addpath=False, stale_check=None):
        out = []
        afi = fam[0]
        sources = self.daemon.sources
        rib = self.daemon.ribs[fam]
        now = time.time()
        for pid, attrs, nh, packed, aid in items:
            base = route_base(memo, attrs, nh)
            source = source_name(sources, pid)
            # The group's receive times in one RIB call (no prefix text per row).
            recvs = iter(rib.path_received(pid, packed, addpath) if rib.has_peer(pid) else ())
            for path_id, addr, plen in codec.unpack_prefixes(packed, afi, addpath):
                p = prefix_text(afi, addr, plen)
                is_best = best if best is not None else (rib.best(p) == (pid, aid))
                stale = bool(stale_check and stale_check(p, pid))
                recv = next(recvs, None)
                out.append(ctl.Route(prefix=p, source=source, best=is_best, stale=stale,
                                     path_id=path_id if addpath else None, **base, **age_fields(recv, now),
                                     rpki=self.rpki_state(afi, p, attrs)))
        return out

    def rpki_state(self, afi, prefix, attrs):
        """RFC 6811 state of a path (the V/I/N column), derived from the
        VRPs now (fastbgp.daemon.rpki_feed); None without [rpki]."""
        feed = self.daemon.rpki
        return None if feed is None else feed.path_state(afi, prefix, attrs)

    def stale_checker(self, fam):
        rib = self.daemon.ribs[fam]
        stale_pids = {nb.pid for nb in self.daemon.speaker.neighbors.values() if fam in nb.stale_fams}
        if not stale_pids:
            return None

        def check(prefix, pid):
            if pid not in stale_pids:
                return False
            bp = rib.best_path(prefix)
            return bool(bp and bp[0] == pid and bp[3] & 1)

        return check

    def rib(self, family_name: str, prefix: Optional[str] = None, longest_match: bool = False) -> list:
        fam = family(family_name)
        memo = {}
        if prefix is None:
            items, keys = self.sorted_best(fam)
            return self.rows(fam, items, keys, memo, self.stale_checker(fam))
        return [r for r, _attrs in self.paths_of(family_name, prefix, longest_match)]

    def paths_of(self, family_name: str, prefix: str, longest_match: bool = False) -> list:
        """[(Route, attrs)] of every path of ``prefix`` (of the one covering
        the address ``prefix`` with ``longest_match``)."""
        fam = family(family_name)
        rib = self.daemon.ribs[fam]
        memo = {}
        if longest_match:
            hit = rib.longest_match(prefix)
            if hit is None:
                return []
            prefix = hit[0]
        out = []
        best = rib.best_path(prefix)
        hit = rib.lookup(prefix)
        p = hit[0] if hit else str(prefix)
        sources = self.daemon.sources
        now = time.time()
        for peer, path_id, aid, flags, received in rib.paths(prefix, received=True):
            _pid, attrs, nh = tag_source(self.daemon.attrs, aid)
            base = route_base(memo, attrs, nh)
            out.append((ctl.Route(prefix=p, source=source_name(sources, peer),
                                  best=best is not None and best[:3] == (peer, path_id, aid),
                                  stale=bool(flags & 1), path_id=path_id or None, **base,
                                  **age_fields(received, now), rpki=self.rpki_state(fam[0], p, attrs)), attrs))
        return out

    def sorted_best(self, fam, want=None, within=None, source=None):
        """(items, keys) of the Loc-RIB's best paths: ``items`` resolved now
        (see :meth:`resolved`), ``keys`` one int per prefix, sorted by
        prefix (address, then length), each carrying its item's index in
        its low bits.  ``want(attrs)`` drops whole attribute sets;
        ``within`` = (network, prefix length) keeps only that prefix and
        the ones inside it (longer prefixes); ``source``, a peer id, only
        its paths.  One int per prefix is what a
        sorted full table costs (about 40 octets for IPv4)."""
        items = self.resolved(self.daemon.ribs[fam].dump_best())
        afi = fam[0]
        lo = hi = minlen = None
        if within is not None:
            net, minlen = within
            lo = int(net.network_address)
            hi = int(net.broadcast_address)
        keys = []
        add = keys.append
        for i, (pid, attrs, _nh, packed, _aid) in enumerate(items):
            if (source is not None and pid != source) or (want is not None and not want(attrs)):
                continue
            for _p, addr, plen in codec.unpack_prefixes(packed, afi, False):
                a = int.from_bytes(addr, "big")
                if lo is None or (lo <= a <= hi and plen >= minlen):
                    add((a << 8 | plen) << _INDEX_BITS | i)
        keys.sort()
        return items, keys

    def covering(self, fam, net, want=None, source=None):
        """(items, keys) as :meth:`sorted_best` gives them, of the best
        paths of ``net`` and of every prefix covering it (shorter
        prefixes): one exact lookup per length, not a walk of the table."""
        rib = self.daemon.ribs[fam]
        table = self.daemon.attrs
        items, keys = [], []
        for plen in range(net.prefixlen + 1):
            sup = net.supernet(new_prefix=plen)
            bp = rib.best_path(str(sup))
            if bp is None:
                continue
            pid, attrs, nh = tag_source(table, bp[2])
            if (source is not None and pid != source) or (want is not None and not want(attrs)):
                continue
            keys.append((int(sup.network_address) << 8 | plen) << _INDEX_BITS | len(items))
            items.append((pid, attrs, nh, b"", bp[2]))
        return items, keys

    def rows(self, fam, items, keys, memo, check=None):
        """Routes of sorted ``keys`` (see :meth:`sorted_best`)."""
        afi = fam[0]
        width = 4 if afi == AFI_IPV4 else 16
        sources = self.daemon.sources
        mask = (1 << _INDEX_BITS) - 1
        rib = self.daemon.ribs[fam]
        now = time.time()
        # The best paths' receive times in one RIB call for the rows (no
        # prefix text parsed per row); the RIB may have moved on since
        # ``items``, so a time only where the best path's source is the same.
        recvs = iter(rib.best_received(b"".join(wire_prefix(k >> _INDEX_BITS, width) for k in keys)))
        out = []
        for k in keys:
            pid, attrs, nh, _packed, _aid = items[k & mask]
            pk = k >> _INDEX_BITS
            plen = pk & 0xFF
            if width == 4:
                # inet_ntop: the same text as ipaddress for IPv4, 5x faster
                # (a full table is a million of these).
                p = "%s/%d" % (socket.inet_ntop(socket.AF_INET, (pk >> 8).to_bytes(4, "big")), plen)
            else:
                p = prefix_text(afi, (pk >> 8).to_bytes(16, "big"), plen)
            bp = next(recvs)
            recv = bp[1] if bp is not None and bp[0] == pid else None
            out.append(ctl.Route(prefix=p, source=source_name(sources, pid), best=True,
                                 stale=bool(check and check(p, pid)), **route_base(memo, attrs, nh),
                                 **age_fields(recv, now), rpki=self.rpki_state(afi, p, attrs)))
        return out

    async def iter_rib(self, family_name: str, chunk: int = 10000) -> AsyncIterator[list]:
        fam = family(family_name)
        items, keys = self.sorted_best(fam)  # a snapshot: the RIB may change while streaming
        memo = {}
        check = self.stale_checker(fam)
        for start in range(0, len(keys), chunk):
            yield self.rows(fam, items, keys[start : start + chunk], memo, check)
            await asyncio.sleep(0)

    def query_rib(self, family_name: str, q: ctl.RibQuery) -> list:
        """The Loc-RIB filtered by ``q`` (see RibQuery), sorted by prefix,
        ``q.offset`` rows skipped and at most ``q.limit`` returned.  Only
        the rows returned are built as Routes."""
        fam, items, page, routes = self.query_page(family_name, q)
        if routes is not None:
            return routes
        return self.rows(fam, items, page, {}, self.stale_checker(fam))

    async def iter_query(self, family_name: str, q: ctl.RibQuery, chunk: int = 10000) -> AsyncIterator[list]:
        """:meth:`query_rib` in chunks of ``chunk`` rows, the loop free
        between them: a query matching much of a full table is never one
        list of Routes."""
        fam, items, page, routes = self.query_page(family_name, q)
        if routes is not None:
            yield routes
            return
        memo = {}
        check = self.stale_checker(fam)
        for start in range(0, len(page), chunk):
            yield self.rows(fam, items, page[start : start + chunk], memo, check)
            await asyncio.sleep(0)

    def query_page(self, family_name: str, q: ctl.RibQuery) -> tuple:
        """(family, items, keys of the page, None) as :meth:`sorted_best`
        gives them, or (family, None, None, [Route]) for an exact or
        longest-match lookup (every path of one prefix)."""
        fam = family(family_name)
        flt = RouteFilter(q)
        source = None
        if q.source == "local":
            source = LOCAL_PID
        elif q.source is not None:
            try:
                source = self.peers.get(q.source).pid
            except KeyError:
                return fam, None, None, []
            if source is None or source < 0:
                return fam, None, None, []  # never up: no paths
        if q.prefix is not None and q.match in ("exact", "longest"):
            out = []
            for r, attrs in self.paths_of(family_name, q.prefix, q.match == "longest"):
                if flt(attrs) and (q.source is None or r.source == q.source):
                    out.append(r)
            return fam, None, None, out[q.offset : None if q.limit is None else q.offset + q.limit]
        want = flt if flt.active else None
        if q.prefix is None:
            items, keys = self.sorted_best(fam, want, source=source)
        else:
            net = ipaddress.ip_network(q.prefix, strict=False)
            if (net.version == 4) != (fam[0] == AFI_IPV4):
                return fam, None, None, []
            if q.match == "longer":
                items, keys = self.sorted_best(fam, want, (net, net.prefixlen), source)
            else:
                items, keys = self.covering(fam, net, want, source)
        return fam, items, keys[q.offset : None if q.limit is None else q.offset + q.limit], None

    def adj_rib_in(self, address: str, family_name: str) -> list:
        nb = self.peers.get(address)
        fam = family(family_name)
        rib = self.daemon.ribs[fam]
        if nb.pid < 0 or not rib.has_peer(nb.pid):
            return []
        src = self.daemon.sources.get(nb.pid)
        addpath = src is not None and fam in src.addpath_rx
        return self.routes_of(fam, self.resolved(rib.dump_peer(nb.pid, addpath)), None, {}, addpath=addpath,
                              stale_check=self.stale_checker(fam))

    def adj_rib_out(self, address: str, family_name: str) -> list:
        nb = self.peers.get(address)
        fam = family(family_name)
        g = nb.groups.get(fam)
        if g is None:
            return []
        d = self.daemon
        rib = d.ribs[fam]
        memo = {}
        out = []
        afi = fam[0]
        for aid, packed in rib.dump_best(exclude_peer=nb.pid):
            pid, attrs, nh = tag_source(d.attrs, aid)
            src = d.sources.get(pid)
            if src is None:
                continue
            res = g.export(src, attrs, nh)
            if res is None:
                continue
            for _p, addr, plen in codec.unpack_prefixes(packed, afi, False):
                o = res
                if len(res) == 3:
                    o = g.export_prefix(src, res[0], res[1], (afi, addr, plen))
                    if o is None:
                        continue
                if src.scopes:
                    # Our route offered to some neighbours only (Source.scopes).
                    scope = scope_of(src, fam, bytes((plen,)) + addr[: (plen + 7) >> 3])
                    if scope is not None and nb.address not in scope:
                        continue
                base = route_base(memo, o[0], o[1])
                out.append(ctl.Route(prefix=prefix_text(afi, addr, plen), source=source_name(d.sources, pid),
                                     best=True, **base))
        return out

    def rib_summary(self) -> list:
        d = self.daemon
        return [
            ctl.RibSummary(family=family_name(fam), prefixes=len(rib), paths=rib.path_count(),
                           attribute_sets=len(d.attrs))
            for fam, rib in d.ribs.items()
        ]

    # -- the daemon as a whole, policies ---------------------------------------------------------

    def global_info(self) -> ctl.GlobalInfo:
        d = self.daemon
        g = d.config.global_
        sp = d.speaker
        nbs = list(sp.neighbors.values()) if sp is not None else []
        listen = endpoints_text(sp.listen_addresses) if sp is not None else []
        return ctl.GlobalInfo(
            asn=g.asn, router_id=g.router_id, listen=listen,
            started=d.started_at if d.started else None,
            uptime=max(time.time() - d.started_at, 0.0) if d.started else 0.0,
            neighbors=len(nbs), established=sum(1 for nb in nbs if nb.established),
            ribs=self.rib_summary(),
            refused_unknown=sp.refused_connections if sp is not None else 0,
            refused_neighbors=sum(nb.counters.refused for nb in nbs),
            half_open_closed=sum(nb.counters.half_open_closed for nb in nbs),
        )

    def policy_info(self) -> ctl.PolicyInfo:
        """The policies and defined sets as the file spells them (kebab-case
        keys), and every configured neighbour's chains."""
        cfg = self.daemon.config
        sp = self.daemon.speaker
        nbs = []
        for nb in (sp.neighbors.values() if sp is not None else ()):
            c = nb.cfg
            nbs.append(ctl.NeighborPolicy(address=nb.address, import_policy=list(c.import_policy or []),
                                          export_policy=list(c.export_policy or []),
                                          default_import=str(c.default_import or ""),
                                          default_export=str(c.default_export or "")))
        return ctl.PolicyInfo(policies=msgspec.to_builtins(cfg.policies),
                              defined_sets=msgspec.to_builtins(cfg.defined_sets), neighbors=nbs)
