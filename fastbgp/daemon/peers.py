"""The peer registry: who is behind each peer id, and the RIB side of
peers coming and going.

Owns: peer ids (16 bits, the smallest free one reused first), ``sources``
(pid -> :class:`fastbgp.rib.export.Source`, read by import, export, views
and MRT), adding and removing configured and dynamic neighbours, looking a
neighbour up by address, and what a session going up or down does to the
RIBs: a new speaker's peer entry, graceful-restart stale marking and
sweeping (RFC 4724 §4.2, RFC 7313 §4), withdrawing a peer's routes --
in slices of :data:`SWEEP_SLICE` table slots, so that a full table going down
never holds the event loop (the other sessions' KEEPALIVEs and hold timers,
the API) for the whole table.

Calls: the daemon's ``speaker`` (``add_daemon_neighbor``,
``remove_neighbor``), ``ribs``, ``config``, ``loop`` and ``mrt``; the
:class:`~fastbgp.daemon.exporter.Exporter` (withdrawals go out through it,
members leave their groups); the importer's ``bind_policy``,
``pre_ribs``, ``prepolicy.reset`` (fastbgp.daemon.prepolicy) and
``forget_lane`` (the fast lane's sets of a session that ended).
Called by: the daemon's neighbours and their route sink (``alloc_pid``,
``peer_up``/``peer_down``, ``mark_stale``/``sweep``, ``path_count``,
``add_neighbor``/``remove_dynamic``), the views (``get``, ``path_count``) and reload.
"""

from __future__ import annotations

import heapq
import ipaddress
import logging

from fastbgp.config import schema as cfgmod
from fastbgp.rib.export import IBGP, LOCAL, Source
from fastbgp.session.fsm import Reason, State
from fastbgp.session.speaker import GracefulRestartConfig, NeighborConfig
from fastbgp.wire.errors import CEASE_OTHER_CONFIG_CHANGE
from fastbgp.daemon.common import LOCAL_PID
from fastbgp.daemon.exporter import confed_peer, peer_kind

log = logging.getLogger("fastbgp.daemon")

MAX_PID = 0xFFFF

# RFC 4271 §8.2.2 / §9: a session that ends takes its routes with it.  Removing
# a full table in one callback held the event loop 0.3-0.8 s for a million
# routes, growing with the table (fastbgp issue 12): every other session's
# KEEPALIVEs and hold timer, and the API, waited.
# So the routes are marked stale in one C pass (Rib.mark_stale: ~20 ms for a
# million paths on the compiled RIB), then removed by export work
# (PeerRegistry.sweep_slices) SWEEP_SLICE table slots at a time
# (Rib.sweep_stale_slice; up to 80 % of the slots hold a prefix), the export
# queue giving the loop back between slices.  Bound: README "Operating limits".
SWEEP_SLICE = 16384
# Passes over the table before the rest goes in one call: a pass misses the
# prefixes that moved to slots already passed (the table grew or lost prefixes
# between two slices), rarely more than a few; the next pass takes them.
SWEEP_PASSES = 16


def neighbor_config(n: cfgmod.Neighbor, glob=None) -> NeighborConfig:
    """The session settings of a resolved configuration neighbour
    (``glob``: the global configuration, for its confederation)."""
    t = n.timers
    gr = None
    if n.graceful_restart.enabled:
        # helper-only: we never claim to have kept forwarding state across a
        # restart of our own (RFC 4724 §3, the F bit).
        gr = GracefulRestartConfig(restart_time=n.graceful_restart.restart_time,
                                   forwarding_state=not n.graceful_restart.helper_only)
    gtsm = False
    if n.ttl_security:
        gtsm = n.multihop if n.multihop else True
    return NeighborConfig(
        address=n.address,
        peer_as=n.peer_as,
        local_as=n.local_as,
        passive=n.passive,
        port=n.port,
        local_address=n.local_address,
        description=n.description,
        hold_time=t.hold_time,
        keepalive=t.keepalive or None,
        connect_retry=float(t.connect_retry),
        idle_hold_time=max(float(t.idle_hold), 0.1),
        max_idle_hold_time=float(max(t.max_idle_hold, t.idle_hold)),
        damp_peer_oscillations=n.damp_peer_oscillations,
        delay_open=float(t.delay_open),
        md5_password=n.md5_password,
        ttl=None if n.ttl_security else n.multihop,
        gtsm=gtsm,
        families=list(n.families),
        addpath_send=list(n.add_path.send),
        addpath_receive=list(n.add_path.receive),
        extended_next_hop=n.extended_next_hop,
        graceful_restart=gr,
        role=n.role,
        role_strict=n.role_strict,
        admin_down=n.admin_down,
        max_queued_bytes=n.max_queued_bytes,
        confederation_member=glob is not None and glob.confederation_peer(n.peer_as),
    )


class PeerRegistry:
    """Peer ids, sources and neighbours; see the module docstring."""

    def __init__(self, daemon, importer, exporter):
        self.daemon = daemon
        self.importer = importer
        self.exporter = exporter
        self.sources: dict = {}
        self._free_pids: list = []
        self._next_pid = 1
        # (pid, family, post-policy?) -> token of the sliced sweep in progress;
        # a sweep whose token is no longer here stops at its next slice.
        self.sweeps: dict = {}
        self.sweep_slice = SWEEP_SLICE
        for rib in daemon.ribs.values():
            self.register_local(rib)

    def register_local(self, rib):
        g = self.daemon.config.global_
        # Our own routes: a pseudo-peer that counts as external for the
        # decision process, so it wins ties against routes of internal peers.
        rib.add_peer(LOCAL_PID, g.asn, g.asn, g.router_id, "0.0.0.0", ibgp=False)
        self.sources[LOCAL_PID] = Source(LOCAL_PID, LOCAL, router_id=int(ipaddress.IPv4Address(g.router_id)))

    # -- ids and neighbours ----------------------------------------------------------------------

    def alloc_pid(self):
        if self._free_pids:
            return heapq.heappop(self._free_pids)
        if self._next_pid > MAX_PID:
            raise RuntimeError("too many neighbours (peer ids are 16 bits)")
        pid = self._next_pid
        self._next_pid += 1
        return pid

    def release_pid(self, nb):
        """The neighbour is gone: its routes leave the RIBs, its id is free."""
        self.cancel_sweeps(nb.pid)
        for fam, rib in self.daemon.ribs.items():
            if rib.has_peer(nb.pid):
                self.exporter.export_cs(fam, rib.remove_peer(nb.pid), heavy=True)
        self.importer.prepolicy.reset(nb.pid)
        self.importer.forget_lane(nb)
        for pre in self.importer.pre_ribs.values():
            if pre.has_peer(nb.pid):
                pre.remove_peer(nb.pid)
        self.sources.pop(nb.pid, None)
        heapq.heappush(self._free_pids, nb.pid)
        nb.pid = -1

    def add_neighbor(self, cfgn, dynamic=False):
        return self.daemon.speaker.add_daemon_neighbor(neighbor_config(cfgn, self.daemon.config.global_), cfgn, dynamic)

    def remove_neighbor(self, address, message="", config_change=False):
        speaker = self.daemon.speaker
        nb = speaker.neighbors.get(address)
        if nb is None:
            return
        if config_change and nb.session is not None:
            # RFC 4486: Cease / Other Configuration Change (6/6) when the
            # session restarts with new settings (6/3 when it goes for good).
            nb.cease(Reason.CONFIG_CHANGE, CEASE_OTHER_CONFIG_CHANGE, message)
        speaker.remove_neighbor(address, message)
        self.release_pid(nb)

    def remove_dynamic(self, nb):
        speaker = self.daemon.speaker
        if speaker is None or speaker.neighbors.get(nb.address) is not nb or nb.removed:
            return
        if nb.state not in (State.IDLE, State.ACTIVE) or nb.connection is not None or nb.stale_fams:
            return  # a session is coming up again, or stale routes wait for it
        if self.sweeping(nb.pid):
            return  # its routes are still going (sweep_slices calls again at the end)
        log.info("dynamic neighbour %s removed", nb.address)
        speaker.neighbors.pop(nb.address, None)
        nb.deconfigure("")
        self.release_pid(nb)

    def get(self, address):
        """The neighbour at ``address`` (scope id ignored); KeyError if none."""
        try:
            key = str(ipaddress.ip_address(str(address).split("%")[0]))
        except ValueError:
            raise KeyError(address) from None
        speaker = self.daemon.speaker
        nb = speaker.neighbors.get(key) if speaker is not None else None
        if nb is None:
            raise KeyError(address)
        return nb

    def path_count(self, nb):
        """Paths of ``nb`` in the Adj-RIBs-In (after import policy)."""
        n = 0
        for rib in self.daemon.ribs.values():
            if nb.pid >= 0 and rib.has_peer(nb.pid):
                n += rib.peer_path_count(nb.pid)
        return n

    # -- sessions coming and going ---------------------------------------------------------------

    def peer_up(self, nb, session):
        d = self.daemon
        neg = session.negotiated
        kind, rr = peer_kind(nb)
        rid = session.remote_id or 0
        addr = nb.address
        for fam, rib in d.ribs.items():
            if rib.has_peer(nb.pid):
                info = rib.peer_info(nb.pid)
                if info["router_id"] == rid:
                    continue
                # A different speaker behind the address: nothing stale of the
                # old one may survive.
                self.sweeps.pop((nb.pid, fam, True), None)
                self.exporter.export_cs(fam, rib.remove_peer(nb.pid), heavy=True)
                nb.stale_fams.discard(fam)
            # RFC 5065 §5.3: a confederation peer's routes rank as internal.
            rib.add_peer(nb.pid, neg.peer_asn, nb.local_as, rid, addr, ibgp=kind == IBGP or confed_peer(nb),
                         rr_client=rr)
        self.sources[nb.pid] = Source(nb.pid, kind, rr, rid, neg.peer_asn, addr, frozenset(session.ctx.addpath_rx))
        # Without ROUTE-REFRESH (RFC 2918) the only way to re-run import
        # policy later is a copy of what the peer sent.
        nb.pre_policy = not neg.route_refresh
        self.importer.prepolicy.reset(nb.pid)  # fastbgp.daemon.prepolicy: a new view
        for fam, pre in self.importer.pre_ribs.items():
            self.sweeps.pop((nb.pid, fam, False), None)
            if pre.has_peer(nb.pid):
                pre.remove_peer(nb.pid)
        self.importer.bind_policy(nb)
        if d.mrt is not None:
            d.mrt.hook(nb, session)

    def peer_down(self, nb, keep, session):
        """The session ended: graceful restart keeps the families in
        ``keep`` (stale, RFC 4724 §4.2), everything else is withdrawn."""
        exporter = self.exporter
        exporter.leave_groups(nb)
        # The pre-policy view is its part ``pre_ribs`` alone now (swept like
        # the rest), not the post-policy paths (fastbgp.daemon.prepolicy).
        self.importer.prepolicy.reset(nb.pid)
        self.importer.forget_lane(nb)  # the lane's sets of the session: released
        for fam, pre in self.importer.pre_ribs.items():
            if pre.has_peer(nb.pid) and pre.peer_path_count(nb.pid):
                self.start_sweep(nb, fam, pre, False)
        stale = False
        for fam, rib in self.daemon.ribs.items():
            if not rib.has_peer(nb.pid) or not rib.peer_path_count(nb.pid):
                nb.stale_fams.discard(fam)
                continue
            if fam in keep:
                # A sweep still going (an earlier session) stops: every path
                # is stale now and waits for the restart (RFC 4724 §4.2).
                self.sweeps.pop((nb.pid, fam, True), None)
                rib.mark_stale(nb.pid)
                nb.stale_fams.add(fam)
                stale = True
                continue
            # Withdrawn from ADD-PATH members now, by path id (the RIB still
            # holds them); later joiners queue behind the sweep.
            exporter.addpath_withdraw_all(nb.pid, fam)
            self.start_sweep(nb, fam, rib, True)
            nb.stale_fams.discard(fam)
        counts = self.daemon.counts
        if counts is not None and nb.cfg.prefix_limit:
            # Workers: what this one still counts for the neighbour's limit
            # (the paths graceful restart keeps; the rest are going).
            for fam, rib in self.daemon.ribs.items():
                if rib.has_peer(nb.pid):
                    counts.publish(nb.address, fam, rib.peer_path_count(nb.pid) if fam in keep else 0)
        if stale and session is not None:
            cap = session.negotiated.graceful_restart
            # The neighbour's graceful-restart helper arms the restart timer
            # itself once its sink has cleared (here: marked) the routes.
            log.info("%s: graceful restart: keeping routes stale for %ds", nb.address, cap.restart_time)

    # -- withdrawing a peer's routes in slices -----------------------------------------------------

    def sweeping(self, pid):
        return any(key[0] == pid for key in self.sweeps)

    def cancel_sweeps(self, pid):
        for key in [k for k in self.sweeps if k[0] == pid]:
            del self.sweeps[key]

    def start_sweep(self, nb, fam, rib, post):
        """Withdraw every path ``nb`` holds in ``rib`` (the Loc-RIB side when
        ``post``, else its pre-policy copy) in slices: marked stale now, then
        removed by export work queued behind what is queued already."""
        key = (nb.pid, fam, post)
        token = self.sweeps[key] = object()  # replaces (stops) a sweep of an earlier session
        rib.mark_stale(nb.pid)
        best_n = b""
        if post and self.exporter.best_n_groups(fam):
            # RFC 7911 best-N ranks from the RIB: every prefix of the peer
            # again once its paths are gone (a non-best one counts too).  One
            # dump (~0.15 s for a million paths), only with best-N members.
            best_n = b"".join(packed for _aid, packed in rib.dump_peer(nb.pid, False))
        self.exporter.queue.submit(self.sweep_slices(nb, fam, rib, key, token, best_n), heavy=True)

    def sweep_slices(self, nb, fam, rib, key, token, best_n):
        """Export work: remove the stale paths of ``nb`` in ``rib``, one
        ``sweep_slice`` table slots per step (:data:`SWEEP_SLICE`) until no
        path of it is stale.

        A session of the same peer that comes up meanwhile keeps what it
        sends: its paths replace the stale ones (Rib.update clears the mark,
        RFC 4724 §4.2) and only paths still stale are removed.  Its table
        dump is queued behind this work, so it never gets a stale route.
        Another stale marking of the family (graceful restart, RFC 7313
        BoRR), a full sweep, a different speaker or the neighbour's removal
        takes over: the token goes and this stops at its next step."""
        pid, _fam, post = key
        exporter = self.exporter
        start = passes = 0
        while self.sweeps.get(key) is token and rib.has_peer(pid):
            if not rib.peer_stale_count(pid):
                break
            if passes >= SWEEP_PASSES:
                cs = rib.sweep_stale(pid)  # the table kept moving under the sweep: the rest at once
            else:
                cs, start = rib.sweep_stale_slice(pid, start, self.sweep_slice)
                if start is None:  # a pass over the table done: what it missed is in the next
                    passes += 1
                    start = 0
            if post:
                # Not heavy: path hiding chooses again once, at the end.
                exporter.export_cs(fam, cs)
            yield
        if self.sweeps.get(key) is not token:
            return
        del self.sweeps[key]
        if post:
            exporter.submit_rehide(fam)
            if best_n:
                exporter.submit_best_n(fam, best_n, False)
        if nb.dynamic and nb.pid == pid and not self.sweeping(pid):
            nb.loop.call_soon(self.remove_dynamic, nb)

    # -- refresh and graceful restart -------------------------------------------------------------

    def mark_stale(self, nb, fam):
        self.sweeps.pop((nb.pid, fam, True), None)  # RFC 7313 §4: EoRR sweeps whatever is stale
        rib = self.daemon.ribs[fam]
        if rib.has_peer(nb.pid) and rib.mark_stale(nb.pid):
            nb.stale_fams.add(fam)

    def sweep(self, nb, fam):
        nb.stale_fams.discard(fam)
        self.sweeps.pop((nb.pid, fam, True), None)  # everything stale goes now
        rib = self.daemon.ribs[fam]
        if not rib.has_peer(nb.pid):
            return
        exporter = self.exporter
        if exporter.addpath_groups(fam):
            # ADD-PATH members hold paths by id: withdraw what the peer had,
            # re-announce what survives the sweep.
            exporter.addpath_withdraw_all(nb.pid, fam)
            cs = rib.sweep_stale(nb.pid)
            exporter.addpath_announce_all(nb.pid, fam)
        else:
            cs = rib.sweep_stale(nb.pid)
        exporter.export_cs(fam, cs, heavy=True)
