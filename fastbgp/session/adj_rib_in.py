"""The library's route sink: a dict Adj-RIB-In (RFC 4271 §3.2) per neighbour.

Owns: the routes received from one peer, compactly (family -> {key:
interned (attribute block, MP next hop)}; objects are only built by
:meth:`AdjRibIn.received_paths`), the stale routes graceful restart and
enhanced route refresh keep (RFC 4724 §4.2, RFC 7313 §4), the prefix
limit check, and, as a :class:`fastbgp.session.sink.RouteSink`, what a
Speaker sends: the speaker's announced routes (through the neighbour's
:class:`fastbgp.session.adj_rib_out.AdjRibOut`) at establishment and on
route refresh.

Called by :class:`fastbgp.session.speaker.Neighbor` (the RouteSink
methods); calls back ``Neighbor.eor_received`` (End-of-RIB),
``Neighbor.prefix_limit_exceeded``, ``Neighbor.adj_rib_out`` and reads its
``config``, ``counters`` and ``address``.
"""

from __future__ import annotations

import logging

import msgspec

from fastbgp.session.routes import RouteAttributes, decode_path, family_known, family_text, key_prefix, split_nlri
from fastbgp.session.sink import RouteSink
from fastbgp.wire.constants import IPV4_UNICAST, RR_BORR, RR_EORR, RR_NORMAL

__all__ = ["AdjRibIn"]

log = logging.getLogger("fastbgp.speaker")


class AdjRibIn(RouteSink):
    """Routes received from one neighbour, in dicts keyed by packed prefix.

    ``paths`` interns the (attribute block, next hop) pairs routes share;
    it is compacted when it grew past ``paths_limit`` (never below
    ``paths_floor`` blocks)."""

    def __init__(self, neighbor):
        self.neighbor = neighbor
        self.routes: dict = {}  # family -> {key: path}
        self.stale: dict = {}  # family -> {key: path}, kept by graceful restart / BoRR
        self.addpath: dict = {}  # family -> ADD-PATH receive mode the keys were made with
        self.paths: dict = {}
        self.paths_floor = 65536
        self.paths_limit = self.paths_floor
        self._decoded: dict = {}
        self._accepted = (None, frozenset())  # (Negotiated, families we keep routes of)

    # -- the RouteSink side ---------------------------------------------------------------

    def session_up(self, session) -> None:
        rx = session.ctx.addpath_rx
        for fam in list(self.stale):
            if self.addpath.get(fam, False) != (fam in rx):
                # RFC 4724 §4.2: stale keys made in another ADD-PATH mode
                # could never be replaced: drop them.
                del self.stale[fam]
        for fam in session.negotiated.families:
            self.addpath[fam] = fam in rx

    def send_table(self, session) -> None:
        self.neighbor.adj_rib_out.send_table(session.negotiated.families)

    def update_received(self, session, parsed) -> None:
        nb = self.neighbor
        c = nb.counters
        neg = session.negotiated
        seen, fams = self._accepted
        if seen is not neg:
            fams = self._families(neg)
        rx = session.ctx.addpath_rx
        if parsed.n_withdrawn:
            c.received.withdraw_update += 1
            c.received.withdraw_prefix += parsed.n_withdrawn
        if parsed.withdrawn:
            self._remove(IPV4_UNICAST, parsed.withdrawn, IPV4_UNICAST in rx)
        mpu = parsed.mp_unreach
        if mpu is not None and mpu[2]:
            fam = (mpu[0], mpu[1])
            if fam in fams:
                self._remove(fam, mpu[2], fam in rx)
            else:
                c.received.discarded += 1
        if parsed.nlri:
            self._add(IPV4_UNICAST, parsed.nlri, self._intern(parsed.attrs, parsed.next_hop), IPV4_UNICAST in rx)
        mpr = parsed.mp_reach
        if mpr is not None and mpr[3]:
            fam = (mpr[0], mpr[1])
            if fam in fams:
                self._add(fam, mpr[3], self._intern(parsed.attrs, mpr[2]), fam in rx)
            else:
                # RFC 4760 §6: a family that was not negotiated is ignored.
                c.received.discarded += 1
        if parsed.is_eor:
            nb.eor_received(IPV4_UNICAST if mpu is None else (mpu[0], mpu[1]))
        limit = nb.config.prefix_limit
        if limit is not None and self.received_count > limit:
            fam = IPV4_UNICAST if mpr is None else (mpr[0], mpr[1])
            nb.prefix_limit_exceeded(session, fam, limit)

    def route_refresh(self, session, family, subtype) -> None:
        if subtype == RR_NORMAL:
            self.neighbor.adj_rib_out.resend(family, session.negotiated.enhanced_route_refresh)
        elif subtype == RR_BORR:
            # RFC 7313 §4: routes not re-advertised before EoRR are removed.
            self._to_stale(family, self.routes.pop(family, None))
        elif subtype == RR_EORR:
            self.stale.pop(family, None)

    def routes_cleared(self, session, keep) -> None:
        if not keep:
            self.routes = {}
            self.stale = {}
            self.paths = {}
            self._decoded = {}
            return
        for fam in list(self.routes):
            rib = self.routes.pop(fam)
            if fam in keep:
                self._to_stale(fam, rib)
        for fam in list(self.stale):
            if fam not in keep:
                del self.stale[fam]
        if self.stale:
            log.info("%s: graceful restart: keeping %d routes stale for %ds", self.neighbor.address,
                     self.stale_count, session.negotiated.graceful_restart.restart_time)

    def stale_families(self):
        return self.stale.keys()

    def end_of_rib(self, family) -> None:
        st = self.stale.pop(family, None)
        if st:
            # RFC 4724 §4.2: End-of-RIB ends the wait; what is still stale goes.
            log.info("%s: End-of-RIB for %s, %d stale routes dropped", self.neighbor.address, family_text(family),
                     len(st))

    def restart_reestablished(self, session, forwarding) -> None:
        for fam in list(self.stale):
            if fam not in forwarding:
                # RFC 4724 §4.2: no capability, family missing or F bit
                # clear: the peer did not keep forwarding state.
                del self.stale[fam]

    def stale_expired(self, why: str) -> None:
        if self.stale:
            log.info("%s: graceful restart %s expired, %d stale routes dropped", self.neighbor.address, why,
                     self.stale_count)
        self.stale = {}

    @property
    def received_count(self) -> int:
        n = 0
        for d in self.routes.values():
            n += len(d)
        for d in self.stale.values():
            n += len(d)
        return n

    @property
    def stale_count(self) -> int:
        return sum(len(d) for d in self.stale.values())

    def received_paths(self, family) -> dict:
        out = {}
        for src, stale in ((self.stale, True), (self.routes, False)):
            for fam, rib in src.items():
                if family is not None and fam != family:
                    continue
                ap = self.addpath.get(fam, False)
                for key, path in rib.items():
                    prefix, pid = key_prefix(key, fam[0], ap)
                    out[(prefix, pid)] = self._route(path, stale, pid)
        return out

    # -- the dicts --------------------------------------------------------------------------

    def _families(self, neg) -> frozenset:
        """Negotiated families we keep routes of (computed once a session)."""
        fams = frozenset(f for f in neg.families if family_known(f))
        self._accepted = (neg, fams)
        return fams

    def _to_stale(self, fam, rib) -> None:
        if not rib:
            return
        st = self.stale.get(fam)
        if st is None:
            self.stale[fam] = rib
        else:
            st.update(rib)

    def _intern(self, attrs, nh):
        key = (attrs, nh)
        p = self.paths.get(key)
        if p is None:
            if len(self.paths) >= self.paths_limit:
                self._compact()
            self.paths[key] = p = key
        return p

    def _compact(self):
        """Forget interned attribute blocks no route uses any more (amortised:
        runs when the table doubled since the last compaction)."""
        live = {}
        for src in (self.routes, self.stale):
            for rib in src.values():
                for p in rib.values():
                    live[p] = p
        self.paths = live
        self._decoded = {}
        self.paths_limit = max(self.paths_floor, 2 * len(live))

    def _add(self, fam, nlri, path, addpath):
        keys = split_nlri(nlri, addpath)
        st = self.stale.get(fam) if self.stale else None
        if st:
            for k in keys:
                st.pop(k, None)
        rib = self.routes.get(fam)
        if rib is None:
            rib = self.routes[fam] = {}
        rib.update(dict.fromkeys(keys, path))

    def _remove(self, fam, nlri, addpath):
        rib = self.routes.get(fam)
        st = self.stale.get(fam) if self.stale else None
        if not rib and not st:
            return
        for k in split_nlri(nlri, addpath):
            if rib:
                rib.pop(k, None)
            if st:
                st.pop(k, None)

    def _route(self, path, stale, pid) -> RouteAttributes:
        ck = (path, stale, pid)
        r = self._decoded.get(ck)
        if r is None:
            base = self._decoded.get((path, False, None))
            if base is None:
                base = self._decoded[(path, False, None)] = decode_path(path)
            r = base if not stale and pid is None else msgspec.structs.replace(base, stale=stale, path_id=pid)
            self._decoded[ck] = r
        return r
