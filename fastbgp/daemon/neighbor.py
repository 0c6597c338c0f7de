"""The daemon's neighbours: speaker ``Neighbor`` objects whose routes live in
the daemon's compiled RIBs and whose Adj-RIB-Out is their update groups'.

Three pieces, plugged into the session layer through its explicit
extension points (nothing here overrides a Neighbor method):

:class:`DaemonRoutes`
    the neighbour's :class:`fastbgp.session.sink.RouteSink`: received
    UPDATEs, End-of-RIB, route refresh and graceful-restart events go to
    the Daemon (``_update_in``, ``_sweep``, ``_mark_stale``,
    ``_submit_redump``, ``_submit_join``, ``_peer_up`` / ``_peer_down``...).
:class:`DaemonNeighbor`
    a Neighbor with the daemon's per-neighbour state (peer id, policy,
    update groups, stale families) that the Daemon reads and writes.
:class:`DaemonSpeaker`
    the Speaker building them (``neighbor_factory``, ``sink_factory``) and
    starting dynamic neighbours for connections from configured ranges
    (``on_unknown_peer``).
"""

from __future__ import annotations

import functools
import logging
from typing import Optional

from fastbgp.config import schema as cfgmod
from fastbgp.rib.policy import PolicyContext
from fastbgp.session.fsm import State
from fastbgp.daemon.fastlane import FastLane
from fastbgp.session.sink import RouteSink
from fastbgp.session.speaker import Neighbor, Speaker
from fastbgp.wire import codec
from fastbgp.wire.constants import RR_BORR, RR_EORR, RR_NORMAL

log = logging.getLogger("fastbgp.daemon")

__all__ = ["DaemonNeighbor", "DaemonRoutes", "DaemonSpeaker"]


class DaemonRoutes(RouteSink):
    """The route sink of one daemon neighbour: its routes are in the
    Daemon's RIBs (``daemon.ribs``, keyed by the neighbour's peer id) and
    what it is sent comes from its update groups."""

    def __init__(self, daemon, nb: "DaemonNeighbor"):
        self.daemon = daemon
        self.nb = nb

    # -- the table we send ------------------------------------------------------------------

    def session_up(self, session) -> None:
        self.nb.was_up = True
        self.daemon.peers.peer_up(self.nb, session)

    def send_table(self, session) -> None:
        nb = self.nb
        for fam in sorted(session.negotiated.families):
            if fam in self.daemon.ribs:
                self.daemon.exporter.submit_join(nb, fam, eor=True)
            else:
                # A family we negotiated but do not route: still End-of-RIB.
                nb.send_messages([codec.build_eor(*fam)])

    def session_down(self, session) -> None:
        self.nb.epoch += 1
        self.daemon.exporter.leave_groups(self.nb)

    def state_published(self, old, new, reason) -> None:
        nb = self.nb
        self.daemon.state_changed(nb, old, new, reason)
        if nb.dynamic and new is State.IDLE and not nb.stale_fams:
            # A dynamic neighbour exists for its session only (or, after a
            # graceful-restart drop, until its stale routes are gone).
            nb.loop.call_soon(self.daemon.peers.remove_dynamic, nb)

    # -- routes received ----------------------------------------------------------------------

    def update_received(self, session, parsed) -> None:
        self.daemon.importer.update_in(self.nb, session, parsed)

    def updates_received(self, session, parsed_list) -> int:
        return self.daemon.importer.updates_in(self.nb, session, parsed_list)

    def bodies_received(self, session, bodies, handled):
        importer = self.daemon.importer
        lane = FastLane.of(importer, self.nb, session)
        if lane is None:
            # Every UPDATE through the general path: parsed, then updates_received.
            return super().bodies_received(session, bodies, handled)
        return importer.bodies_in(self.nb, session, lane, bodies, handled)

    def route_refresh(self, session, family, subtype) -> None:
        nb = self.nb
        if family not in self.daemon.ribs:
            # RFC 2918 §4: a family not advertised is ignored.
            nb.counters.received.discarded += 1
        elif subtype == RR_NORMAL:
            # RFC 2918 §4 / RFC 7313 §4: re-advertise the Adj-RIB-Out,
            # bracketed by BoRR/EoRR when enhanced route refresh was negotiated.
            self.daemon.exporter.submit_redump(nb, family, brackets=session.negotiated.enhanced_route_refresh)
        elif subtype == RR_BORR:
            # RFC 7313 §4: routes not re-advertised before EoRR are removed.
            self.daemon.peers.mark_stale(nb, family)
        elif subtype == RR_EORR and family in nb.stale_fams:
            self.daemon.peers.sweep(nb, family)

    def routes_cleared(self, session, keep) -> None:
        self.daemon.peers.peer_down(self.nb, set(keep), session)

    def stale_families(self):
        return self.nb.stale_fams

    def end_of_rib(self, family) -> None:
        # RFC 4724 §2: the peer's initial table of ``family`` is in.  The
        # import lane's memo paid while it came (a table's attribute sets
        # recur through it); what follows is churn, so the memo and the
        # ids it holds go now rather than with the session.
        self.daemon.importer.forget_lane(self.nb)
        if family in self.nb.stale_fams:
            # RFC 4724 §4.2: End-of-RIB ends the wait; what is still stale goes.
            self.daemon.peers.sweep(self.nb, family)

    def restart_reestablished(self, session, forwarding) -> None:
        for fam in list(self.nb.stale_fams):
            if fam not in forwarding:
                # RFC 4724 §4.2: the peer did not keep forwarding state for
                # this family (or no longer does GR): its stale routes go now.
                self.daemon.peers.sweep(self.nb, fam)

    def stale_expired(self, why: str) -> None:
        nb = self.nb
        if nb.stale_fams:
            log.info("%s: graceful restart %s expired, dropping stale routes", nb.address, why)
        for fam in list(nb.stale_fams):
            self.daemon.peers.sweep(nb, fam)
        if nb.dynamic and not nb.established:
            nb.loop.call_soon(self.daemon.peers.remove_dynamic, nb)

    @property
    def received_count(self) -> int:
        return self.daemon.peers.path_count(self.nb)


class DaemonNeighbor(Neighbor):
    """A speaker Neighbor with the daemon's per-neighbour state; its route
    sink (a :class:`DaemonRoutes`) comes from the DaemonSpeaker."""

    def __init__(self, speaker, config, *, daemon, cfg: cfgmod.Neighbor, dynamic: bool = False):
        super().__init__(speaker, config)
        self.daemon = daemon
        self.cfg: cfgmod.Neighbor = cfg
        self.dynamic: bool = dynamic
        self.pid: int = daemon.peers.alloc_pid()
        self.import_chain = None
        self.pctx: Optional[PolicyContext] = None
        self.import_cache: dict = {}
        self.lane_memo = None  # the import fast lane's sets of this session (fastbgp.daemon.fastlane.LaneMemo)
        self.groups: dict = {}  # family -> UpdateGroup
        self.stale_fams: set = set()
        self.pre_policy = False  # keep the Adj-RIB-In before policy (no route refresh)
        self.epoch = 0  # bumped whenever the session leaves Established
        self.was_up = False
        daemon.importer.bind_policy(self)


class DaemonSpeaker(Speaker):
    """The daemon's Speaker: DaemonNeighbors with DaemonRoutes sinks, and
    dynamic neighbours for connections from configured address ranges."""

    def __init__(self, daemon, *args, **kw):
        self.daemon = daemon
        super().__init__(*args, neighbor_factory=functools.partial(DaemonNeighbor, daemon=daemon),
                         sink_factory=functools.partial(DaemonRoutes, daemon),
                         on_unknown_peer=self.accept_dynamic, **kw)

    def add_daemon_neighbor(self, nbc, cfgn, dynamic=False) -> DaemonNeighbor:
        """Add the neighbour ``nbc`` (NeighborConfig) configured by ``cfgn``."""
        return self.add_neighbor(nbc, cfg=cfgn, dynamic=dynamic)

    def accept_dynamic(self, conn) -> Optional[DaemonNeighbor]:
        """A connection from an address with no neighbour: a dynamic
        neighbour if the address is in a configured range, with its peer
        group's settings (always passive: a range cannot be dialled);
        None (refused) otherwise."""
        daemon = self.daemon
        try:
            cfgn = daemon.config.neighbor_for(conn.peer_address)
        except Exception:
            log.exception("dynamic neighbour lookup failed for %s", conn.peer_address)
            return None
        if cfgn is None or daemon.stopping:
            return None
        try:
            nb = daemon.peers.add_neighbor(cfgn, dynamic=True)
        except Exception as exc:
            log.error("cannot start dynamic neighbour %s: %s", conn.peer_address, exc)
            return None
        log.info("dynamic neighbour %s accepted (peer group %s)", nb.address, cfgn.peer_group)
        return nb
