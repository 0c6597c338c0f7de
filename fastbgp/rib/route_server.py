"""IXP route-server policy as operators configure it (``[global.route-server]``).

Applies to route-server clients (RFC 7947) only:

* Euro-IX BGP communities, the scheme IXP route servers commonly offer
  (standard form for 16-bit ASes, large-community form, RFC 8092, for any):

  =====================  =====================  ==========================
  standard               large                  meaning
  =====================  =====================  ==========================
  ``0:peer-as``          ``rs-as:0:peer-as``    do not announce to peer-as
  ``rs-as:peer-as``      ``rs-as:1:peer-as``    announce to peer-as (once
                                                any is present, only to the
                                                listed peers)
  ``0:rs-as``            ``rs-as:0:0``          announce to no peer
  ``65501:peer-as``      ``rs-as:101:peer-as``  prepend once to peer-as
  ``65502:peer-as``      ``rs-as:102:peer-as``  prepend twice
  ``65503:peer-as``      ``rs-as:103:peer-as``  prepend three times
  =====================  =====================  ==========================

  A prepend with peer-as 0 applies to every client.  "Do not announce to
  peer-as" wins over "announce to peer-as".  Prepending repeats the first
  AS of the path (the announcing client's).  Every control community above
  (all of ``0:*``, ``rs-as:*``, ``65501..65503:*``, ``rs-as:{0,1,101,102,103}:*``)
  is stripped before the route leaves the route server.
* RFC 7999 BLACKHOLE (65535:666): a blackhole route of any length (up to
  /32 or /128) goes to clients with NO_EXPORT added (RFC 7999 §3.2) unless
  ``blackhole-no-export = false``, and with the configured blackhole next hop.
* Next-hop check (:meth:`RouteServerPolicy.import_check`): a client's routes
  must name the client's own address as next hop (RFC 7947 §2.2.1 keeps it
  unchanged towards the other clients, so a wrong one would divert traffic),
  or one of its ``route-server-next-hops``.

Cost: all of it runs once per (update group, attribute block) -- the
update group's export cache -- or once per (client, attribute block) on
import -- the importer's cache --, never per prefix.  Update groups of
route-server clients are per client AS while Euro-IX communities are on
(:func:`fastbgp.rib.export.group_key`), since the decision depends on it.
"""

from __future__ import annotations

import ipaddress
import logging
import struct

from fastbgp.wire.as4 import encode_attr, encode_segments
from fastbgp.wire.codec import decode_segments, split_attrs  # compiled when built (as4's otherwise)
from fastbgp.wire import codec
from fastbgp.wire.constants import (
    AS_SEQUENCE,
    ATTR_AS_PATH,
    ATTR_COMMUNITIES,
    ATTR_LARGE_COMMUNITY,
    ATTR_NEXT_HOP,
    COMMUNITY_BLACKHOLE,
    COMMUNITY_NO_EXPORT,
    FLAG_EXTENDED_LENGTH,
    WELL_KNOWN_FLAGS,
)

__all__ = ["RouteServerPolicy", "PathHiding", "from_config", "settings", "allowed_next_hops", "PREPEND_STD",
           "PREPEND_LARGE"]

log = logging.getLogger("fastbgp.route_server")

# Standard-community high halves of the prepend actions -> count.
PREPEND_STD = {65501: 1, 65502: 2, 65503: 3}
# Large-community local data part 1 of the prepend actions -> count.
PREPEND_LARGE = {101: 1, 102: 2, 103: 3}
_LARGE_CONTROL = frozenset((0, 1)) | frozenset(PREPEND_LARGE)
# Bound of the memo of blocks that carry no community and of the results
# kept by value (each cleared when full).
MEMO_LIMIT = 1 << 16


def _packed_or_none(text):
    return None if text is None else ipaddress.ip_address(text).packed


class RouteServerPolicy:
    """A compiled ``[global.route-server]``.  ``rs_as``: the route server's
    AS (the global AS; a client with another local-as uses that one).
    Stateless but for the next-hop-check counters; a reload compiles a new
    one (which resets them)."""

    def __init__(self, euro_ix=False, blackhole=False, blackhole_no_export=True, blackhole_nh4=None,
                 blackhole_nh6=None, next_hop_check=False):
        self.euro_ix = euro_ix
        self.blackhole = blackhole
        self.blackhole_no_export = blackhole_no_export
        self.blackhole_nh4 = _packed_or_none(blackhole_nh4)
        self.blackhole_nh6 = _packed_or_none(blackhole_nh6)
        self.next_hop_check = next_hop_check
        self.active = euro_ix or blackhole
        # address -> attribute blocks rejected by the next-hop check.
        self.next_hop_rejected: dict = {}
        # Blocks without any community: sent unchanged to every client.
        self._untouched: set = set()
        # What finish made, by value: clients told alike (every client but
        # the one a community names) share one result, not one copy each in
        # their groups' caches (P9: 4 MB).  Bounded as the memo above.
        self._made: dict = {}

    # ------------------------------------------------------------- export

    def decide(self, communities, large, peer_as, rs_as):
        """Euro-IX decision for one client: None (not announced) or the
        number of prepends.  ``communities``: set of 32-bit values;
        ``large``: set of (global, data1, data2)."""
        deny_all = False
        only = None
        prepend = 0
        zero = _low(communities, 0)
        if peer_as in zero:
            return None
        if rs_as <= 0xFFFF:
            deny_all = rs_as in zero
            targets = _low(communities, rs_as)
            targets.discard(rs_as)
            if targets:
                only = targets
        if (rs_as, 0, peer_as) in large:
            return None
        if (rs_as, 0, 0) in large:
            deny_all = True
        lt = {c[2] for c in large if c[0] == rs_as and c[1] == 1 and c[2] != rs_as}
        if lt:
            only = lt if only is None else (only | lt)
        if only is not None:
            # Announce-to (alone or overriding announce-to-none).
            if peer_as not in only:
                return None
        elif deny_all:
            return None
        for c in communities:
            n = PREPEND_STD.get(c >> 16)
            if n is not None and (c & 0xFFFF) in (peer_as, 0) and n > prepend:
                prepend = n
        for g, d1, d2 in large:
            if g == rs_as:
                n = PREPEND_LARGE.get(d1)
                if n is not None and d2 in (peer_as, 0) and n > prepend:
                    prepend = n
        return prepend

    def is_control(self, c, rs_as):
        hi = c >> 16
        return hi == 0 or hi in PREPEND_STD or (rs_as <= 0xFFFF and hi == rs_as)

    def finish(self, block, nh, peer_as, rs_as, v4):
        """(block, MP next hop) as sent to client ``peer_as``, or None when
        the Euro-IX communities keep the route from it.  ``block`` is the
        attribute block after the export rules."""
        memo = self._untouched
        if block in memo:
            return block, nh
        items = {t: (f, v) for f, t, v in split_attrs(block)}
        comm = items.get(ATTR_COMMUNITIES)
        lc = items.get(ATTR_LARGE_COMMUNITY)
        cs = _communities(comm[1]) if comm else []
        ls = _large(lc[1]) if lc else []
        changed = False
        if self.euro_ix and (cs or ls):
            prepend = self.decide(set(cs), set(ls), peer_as, rs_as)
            if prepend is None:
                return None
            keep = [c for c in cs if not self.is_control(c, rs_as)]
            if len(keep) != len(cs):
                cs = keep
                changed = True
            keep_l = [c for c in ls if not (c[0] == rs_as and c[1] in _LARGE_CONTROL)]
            if len(keep_l) != len(ls):
                ls = keep_l
                changed = True
            if prepend:
                f, v = items.get(ATTR_AS_PATH, (WELL_KNOWN_FLAGS[ATTR_AS_PATH], b""))
                items[ATTR_AS_PATH] = (f, _prepend_first(v, prepend))
                changed = True
        if self.blackhole and COMMUNITY_BLACKHOLE in cs:
            if self.blackhole_no_export and COMMUNITY_NO_EXPORT not in cs:
                # RFC 7999 §3.2: keep a blackhole route within the AS that asked for it.
                cs = cs + [COMMUNITY_NO_EXPORT]
                changed = True
            if v4 and self.blackhole_nh4 is not None:
                items[ATTR_NEXT_HOP] = (WELL_KNOWN_FLAGS[ATTR_NEXT_HOP], self.blackhole_nh4)
                changed = True
            elif not v4 and self.blackhole_nh6 is not None:
                nh = self.blackhole_nh6
        if not changed:
            if comm is None and lc is None:
                # Nothing here for any client: the next groups skip parsing.
                if len(memo) >= MEMO_LIMIT:
                    memo.clear()
                memo.add(block)
            return block, nh
        _store(items, ATTR_COMMUNITIES, comm, struct.pack(">%dI" % len(cs), *cs) if cs else None)
        _store(items, ATTR_LARGE_COMMUNITY, lc, b"".join(struct.pack(">III", *c) for c in ls) if ls else None)
        out = b"".join(encode_attr(items[t][0] & ~FLAG_EXTENDED_LENGTH, t, items[t][1]) for t in sorted(items)), nh
        made = self._made
        if len(made) >= MEMO_LIMIT:
            made.clear()
        return made.setdefault(out, out)

    # ------------------------------------------------------------- import

    def import_check(self, address, allowed, attrs, nh):
        """True when a client's attribute block and MP_REACH next hop
        (``nh``, b"" for NLRI in the UPDATE's own field) pass the next-hop
        check; ``allowed``: packed addresses the client may use (its own and
        its ``route-server-next-hops``).  A rejection is counted per client
        and logged once per client at WARNING."""
        if not self.next_hop_check:
            return True
        hop = None
        if nh:
            hop = nh[:16]  # RFC 2545 §3: the global address of global + link-local
        else:
            for _f, t, v in split_attrs(attrs):
                if t == ATTR_NEXT_HOP:
                    hop = v
                    break
        if hop in allowed:
            return True
        if self.blackhole and hop is not None and hop in (self.blackhole_nh4, self.blackhole_nh6):
            # A client may name the IXP's blackhole next hop itself for a
            # blackhole route (RFC 7999).
            for _f, t, v in split_attrs(attrs):
                if t == ATTR_COMMUNITIES and COMMUNITY_BLACKHOLE in _communities(v):
                    return True
        n = self.next_hop_rejected.get(address, 0) + 1
        self.next_hop_rejected[address] = n
        if n == 1:
            log.warning("%s: route-server client announced next hop %s, not its own address: rejected "
                        "(next-hop-check; further rejections only counted)", address, _text(hop))
        return False


class PathHiding:
    """RFC 7947 §2.3 path hiding mitigation for one update group of
    route-server clients (``[global.route-server] path-hiding``, the
    §2.3.2.1 recommendation; BIRD's ``secondary`` with per-client tables).

    Without a table per client: the group exports the Loc-RIB's best paths
    as usual (decisions cached per attribute set); only a prefix whose best
    it rejects -- export policy, Euro-IX "do not announce to", the next-hop
    and AS rules, or a lone member's own path (split horizon) -- is ranked
    (:meth:`fastbgp.rib.export.PathRanker.first`, the RIB's own decision
    process) until a path passes, and that path is sent instead.

    ``chosen``: packed prefix -> (peer id << 32 | received path id) of the
    non-best path the group was sent; only those prefixes, so that a later
    change of one of their paths (the importer's ``hiding_touch``) or of a
    peer (a whole-peer change) chooses again.  A prefix whose best passes
    costs nothing here; the common case stores nothing.

    Limits: while the export queue lags behind the RIB, the ranking sees the
    RIB as it is now (later changes choose again); a prefix new to the
    Loc-RIB (``Delta.fresh``) has one path unless its source sends ADD-PATH,
    so it is ranked only then."""

    def __init__(self, ranker_of, source_of):
        # family -> fastbgp.rib.export.PathRanker of the RIB as it is now.
        self.ranker_of = ranker_of
        # attr id -> (source peer id, attrs, MP next hop): export.tag_source
        # on the daemon's attribute table.
        self.source_of = source_of
        self.chosen = {}

    @staticmethod
    def own_pids(group_members, exclude):
        """Peers whose paths the group may not be sent: the member a dump is
        for, or the group's only member.  A group of several keeps the
        by-source split horizon of UpdateGroup.process (a member gets no
        other path for a prefix whose best is its own: what the others get
        is encoded once for all of them)."""
        if exclude is not None:
            return (exclude,)
        if len(group_members) == 1:
            return tuple(group_members)
        return ()

    def forget(self, packed, afi):
        """The best path of these prefixes passes again.  True when the
        group held another path (a chosen one) for some of them."""
        chosen = self.chosen
        was = False
        for e in _entries(packed, afi):
            if chosen.pop(e, None) is not None:
                was = True
        return was

    def resolve(self, g, hide, sources, members, own, res, withdraw, withdraw_rejected, fresh):
        """Choose for the prefixes of ``hide`` ([(source pid, packed)]) and
        encode into ``res`` (an export._Out of group ``g``); prefixes where
        no path passes go to ``withdraw`` when the members may hold one."""
        afi = g.afi
        width = 4 if afi == 1 else 16
        source_of = self.source_of
        chosen = self.chosen
        ranker = self.ranker_of(g.family)
        rib = ranker.rib
        if rib.path_count() == len(rib):
            # One path per prefix in the whole RIB (disjoint announcements,
            # an IXP's usual case): nothing to choose from, no per-prefix work.
            for _spid, packed in hide:
                if withdraw_rejected:
                    withdraw.append(packed)
                elif chosen:
                    withdraw.extend(e for e in _entries(packed, afi) if e in chosen)
                if chosen:
                    self.forget(packed, afi)
            return
        by_out = {}
        memo = {}  # (peer id, attr id) -> export result, for chains that do not look at the prefix
        for spid, packed in hide:
            if fresh:
                src = sources.get(spid)
                if src is None or g.family not in src.addpath_rx:
                    continue  # new to the Loc-RIB: one path, already rejected
            for entry in _entries(packed, afi):
                prefix = (afi, entry[1:].ljust(width, b"\0"), entry[0])

                def accept(path, prefix=prefix):
                    pid = path[0]
                    key = (pid, path[2])
                    out = memo.get(key, memo)
                    if out is memo:
                        src = sources.get(pid)
                        if src is None or pid in own:
                            out = None
                        else:
                            _spid, attrs, nh = source_of(path[2])
                            out = g.export(src, attrs, nh)
                        memo[key] = out
                    if out is not None and len(out) == 3:
                        out = g.export_prefix(sources[pid], out[0], out[1], prefix)
                    return out

                hit = ranker.first(entry, accept)
                if hit is None:
                    if withdraw_rejected or entry in chosen:
                        withdraw.append(entry)
                    chosen.pop(entry, None)
                    continue
                rank, path, out = hit
                if rank:
                    chosen[entry] = (path[0] << 32) | path[1]
                else:
                    chosen.pop(entry, None)
                lst = by_out.get((out, path[0]))
                if lst is None:
                    by_out[(out, path[0])] = [entry]
                else:
                    lst.append(entry)
        for (out, pid), entries in by_out.items():
            g.emit(res, pid, members, out, b"".join(entries))

    def pids(self):
        """Peers whose paths some chosen prefix uses."""
        return {v >> 32 for v in self.chosen.values()}


def allowed_next_hops(address, extra=()):
    """Packed addresses a client at ``address`` may name as next hop."""
    out = set()
    for text in (address, *extra):
        try:
            out.add(ipaddress.ip_address(str(text).split("%")[0]).packed)
        except ValueError:
            continue
    return frozenset(out)


def from_config(cfg):
    """RouteServerPolicy of a config.Config, or None when nothing is on."""
    rs = getattr(cfg.global_, "route_server", None)
    if rs is None or not (rs.euro_ix_communities or rs.blackhole or rs.next_hop_check):
        return None
    return RouteServerPolicy(rs.euro_ix_communities, rs.blackhole, rs.blackhole_no_export,
                             rs.blackhole_next_hop_ipv4, rs.blackhole_next_hop_ipv6, rs.next_hop_check)


def settings(engine):
    """What a PolicyEngine's route-server policy does (None when off), for
    telling whether a reload changed it."""
    rsp = getattr(engine, "route_server", None)
    if rsp is None:
        return None
    return (rsp.euro_ix, rsp.blackhole, rsp.blackhole_no_export, rsp.blackhole_nh4, rsp.blackhole_nh6,
            rsp.next_hop_check)


def _entries(packed, afi):
    """Packed prefixes (length octet + significant octets) of packed NLRI."""
    return [bytes((plen,)) + addr[: (plen + 7) >> 3] for _pid, addr, plen in codec.unpack_prefixes(packed, afi, False)]


def _text(hop):
    if hop is None:
        return "(none)"
    try:
        return str(ipaddress.ip_address(hop))
    except ValueError:
        return hop.hex()


def _low(communities, high):
    """Low halves of the standard communities whose high half is ``high``."""
    return {c & 0xFFFF for c in communities if c >> 16 == high}


def _communities(value):
    return list(struct.unpack(">%dI" % (len(value) // 4), value[: len(value) & ~3]))


def _large(value):
    n = len(value) // 12
    flat = struct.unpack(">%dI" % (3 * n), value[: 12 * n])
    return [flat[i : i + 3] for i in range(0, 3 * n, 3)]


def _store(items, t, old, value):
    if value is None:
        items.pop(t, None)
    else:
        items[t] = (old[0] if old else WELL_KNOWN_FLAGS[t], value)


def _prepend_first(value, count):
    """AS_PATH value (4-octet) with its first AS repeated ``count`` more
    times (an empty path stays empty: nothing to prepend)."""
    segs = decode_segments(value, 4) if value else []
    if not segs or segs[0][0] != AS_SEQUENCE or not segs[0][1]:
        return value
    first = segs[0][1][0]
    seq = [first] * count + segs[0][1]
    segs = [(AS_SEQUENCE, seq[i : i + 255]) for i in range(0, len(seq), 255)] + segs[1:]
    return encode_segments(segs, 4)
