"""The peer registry: who is behind each peer id, and the RIB side of
peers coming and going.

Owns: peer ids (16 bits, the smallest free one reused first), ``sources``
(pid -> :class:`fastbgp.rib.export.Source`, read by import, export, views
and MRT), adding and removing configured and dynamic neighbours, looking a
neighbour up by address, and what a session going up or down does to the
RIBs: a new speaker's peer entry, graceful-restart stale marking and
sweeping (RFC 4724 §4.2, RFC 7313 §4), withdrawing a peer's routes.

Calls: the daemon's ``speaker`` (``add_daemon_neighbor``,
``remove_neighbor``), ``ribs``, ``config``, ``loop`` and ``mrt``; the
:class:`~fastbgp.daemon.exporter.Exporter` (withdrawals go out through it,
members leave their groups); the importer's ``bind_policy`` and
``pre_ribs``.
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
        for fam, rib in self.daemon.ribs.items():
            if rib.has_peer(nb.pid):
                self.exporter.export_cs(fam, rib.remove_peer(nb.pid), heavy=True)
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
                self.exporter.export_cs(fam, rib.remove_peer(nb.pid), heavy=True)
                nb.stale_fams.discard(fam)
            # RFC 5065 §5.3: a confederation peer's routes rank as internal.
            rib.add_peer(nb.pid, neg.peer_asn, nb.local_as, rid, addr, ibgp=kind == IBGP or confed_peer(nb),
                         rr_client=rr)
        self.sources[nb.pid] = Source(nb.pid, kind, rr, rid, neg.peer_asn, addr, frozenset(session.ctx.addpath_rx))
        # Without ROUTE-REFRESH (RFC 2918) the only way to re-run import
        # policy later is a copy of what the peer sent.
        nb.pre_policy = not neg.route_refresh
        for fam, pre in self.importer.pre_ribs.items():
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
        for fam, pre in self.importer.pre_ribs.items():
            if pre.has_peer(nb.pid):
                pre.drop_peer(nb.pid)
        stale = False
        for fam, rib in self.daemon.ribs.items():
            if not rib.has_peer(nb.pid) or not rib.peer_path_count(nb.pid):
                nb.stale_fams.discard(fam)
                continue
            if fam in keep:
                rib.mark_stale(nb.pid)
                nb.stale_fams.add(fam)
                stale = True
                continue
            exporter.addpath_withdraw_all(nb.pid, fam)
            exporter.export_cs(fam, rib.drop_peer(nb.pid), heavy=True)
            nb.stale_fams.discard(fam)
        if stale and session is not None:
            cap = session.negotiated.graceful_restart
            # The neighbour's graceful-restart helper arms the restart timer
            # itself once its sink has cleared (here: marked) the routes.
            log.info("%s: graceful restart: keeping routes stale for %ds", nb.address, cap.restart_time)

    def mark_stale(self, nb, fam):
        rib = self.daemon.ribs[fam]
        if rib.has_peer(nb.pid) and rib.mark_stale(nb.pid):
            nb.stale_fams.add(fam)

    def sweep(self, nb, fam):
        nb.stale_fams.discard(fam)
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
