"""The daemon's neighbours: a speaker ``Neighbor`` whose routes live in the
daemon's compiled RIBs and whose Adj-RIB-Out is its update groups', and the
``Speaker`` that creates them (dynamic neighbours included)."""

from __future__ import annotations

import logging
from typing import Optional

from fastbgp.config import schema as cfgmod
from fastbgp.rib.policy import PolicyContext
from fastbgp.session.fsm import State
from fastbgp.session.speaker import _MSGS, Neighbor, Speaker
from fastbgp.wire import capabilities as caps_mod
from fastbgp.wire import codec
from fastbgp.wire.constants import RR_BORR, RR_EORR, RR_NORMAL

log = logging.getLogger("fastbgp.daemon")


class DaemonNeighbor(Neighbor):
    """A speaker Neighbor whose routes live in the daemon's compiled RIBs
    and whose Adj-RIB-Out is its update groups' (one per family)."""

    def __init__(self, speaker, config):
        super().__init__(speaker, config)
        self.daemon = speaker.daemon
        self.cfg: cfgmod.Neighbor = speaker._pending[0]
        self.dynamic: bool = speaker._pending[1]
        self.pid: int = self.daemon._alloc_pid()
        self.import_chain = None
        self.pctx: Optional[PolicyContext] = None
        self.import_cache: dict = {}
        self.groups: dict = {}  # family -> UpdateGroup
        self.stale_fams: set = set()
        self.pre_policy = False  # keep the Adj-RIB-In before policy (no route refresh)
        self.epoch = 0  # bumped whenever the session leaves Established
        self.was_up = False
        self.daemon._bind_policy(self)

    # -- sending --------------------------------------------------------------------------

    def send_messages(self, msgs):
        """Queue a list of encoded messages (shared with other members)."""
        if msgs:
            self._enqueue(_MSGS, msgs)

    def _start_sender(self, session):
        self._out_queue.clear()
        self._out_event.set()
        self._sender_task = self.loop.create_task(self._sender(session, session.conn))
        for fam in sorted(session.negotiated.families):
            if fam in self.daemon.ribs:
                self.daemon._submit_join(self, fam, eor=True)
            else:
                # A family we negotiated but do not route: still End-of-RIB.
                self.send_messages([codec.build_eor(*fam)])

    # -- session callbacks ------------------------------------------------------------------

    @property
    def received_count(self) -> int:
        return self.daemon._path_count(self)

    def _established(self, session):
        self.was_up = True
        self.daemon._peer_up(self, session)
        super()._established(session)

    def _left_established(self, session):
        self.epoch += 1
        self.daemon._leave_groups(self)
        super()._left_established(session)

    def _session_clear_routes(self, session, t):
        if session is not self._session:
            return
        keep = set()
        if self._gr_applies(session, t):
            neg = session.negotiated
            cap = neg.graceful_restart
            keep = {(a, s) for a, s, _f in cap.families} & set(neg.families)
        self.daemon._peer_down(self, keep, session)

    def _clear_rib_in(self):
        self._cancel_timers()
        self.daemon._peer_down(self, set(), None)

    def _gr_expired(self, what):
        self._gr_timer = None
        self._stale_timer = None
        if self.stale_fams:
            log.info("%s: graceful restart %s expired, dropping stale routes", self.address, what)
        for fam in list(self.stale_fams):
            self.daemon._sweep(self, fam)
        if self.dynamic and not self.established:
            self.loop.call_soon(self.daemon._remove_dynamic, self)
        if self._waiters:
            self._check_waiters()

    def _gr_reestablished(self, session):
        if self._gr_timer is not None:
            self._gr_timer.cancel()
            self._gr_timer = None
        if not self.stale_fams:
            return
        cap = session.negotiated.graceful_restart
        for fam in list(self.stale_fams):
            ok = cap is not None and any(
                (a, s) == fam and f & caps_mod.GracefulRestart.FORWARDING_STATE for a, s, f in cap.families
            )
            if not ok:
                # RFC 4724 §4.2: the peer did not keep forwarding state for
                # this family (or no longer does GR): its stale routes go now.
                self.daemon._sweep(self, fam)
        if self.stale_fams and self.config.graceful_restart is not None:
            self._stale_timer = self.loop.call_later(self.config.graceful_restart.stale_time, self._gr_expired,
                                                     "stale time")

    def _eor_received(self, fam):
        self.end_of_rib_received.add(fam)
        if fam in self.stale_fams:
            # RFC 4724 §4.2: End-of-RIB ends the wait; what is still stale goes.
            self.daemon._sweep(self, fam)
        if not self.stale_fams and self._stale_timer is not None:
            self._stale_timer.cancel()
            self._stale_timer = None

    def _session_update(self, session, parsed):
        self.daemon._update_in(self, session, parsed)

    def _session_route_refresh(self, session, afi, safi, subtype):
        fam = (afi, safi)
        neg = session.negotiated
        if fam not in neg.families or fam not in self.daemon.ribs:
            # RFC 2918 §4: a family not advertised is ignored.
            self.counters.received.discarded += 1
            return
        if subtype == RR_NORMAL:
            # RFC 2918 §4 / RFC 7313 §4: re-advertise the Adj-RIB-Out,
            # bracketed by BoRR/EoRR when enhanced route refresh was negotiated.
            self.daemon._submit_redump(self, fam, brackets=neg.enhanced_route_refresh)
        elif subtype == RR_BORR and neg.enhanced_route_refresh:
            # RFC 7313 §4: routes not re-advertised before EoRR are removed.
            self.daemon._mark_stale(self, fam)
        elif subtype == RR_EORR and neg.enhanced_route_refresh:
            if fam in self.stale_fams:
                self.daemon._sweep(self, fam)
            if self._waiters:
                self._check_waiters()
        else:
            # RFC 7313 §5: unknown subtypes are ignored.
            self.counters.received.discarded += 1

    def _publish(self, old, new, reason):
        super()._publish(old, new, reason)
        self.daemon._state_event(self, old, new, reason)
        if self.dynamic and new is State.IDLE and not self.stale_fams:
            # A dynamic neighbour exists for its session only (or, after a
            # graceful-restart drop, until its stale routes are gone).
            self.loop.call_soon(self.daemon._remove_dynamic, self)


class DaemonSpeaker(Speaker):
    neighbor_class = DaemonNeighbor

    def __init__(self, daemon, *args, **kw):
        self.daemon = daemon
        self._pending = (None, False)
        super().__init__(*args, **kw)

    def add_daemon_neighbor(self, nbc, cfgn, dynamic=False):
        self._pending = (cfgn, dynamic)
        try:
            return self.add_neighbor(nbc)
        finally:
            self._pending = (None, False)

    def _unknown_peer(self, conn):
        # Dynamic neighbours: any address of a configured range, with its
        # peer group's settings (always passive: a range cannot be dialled).
        cfgn = None
        try:
            cfgn = self.daemon.config.neighbor_for(conn.peer_address)
        except Exception:
            log.exception("dynamic neighbour lookup failed for %s", conn.peer_address)
        if cfgn is None or self.daemon.stopping:
            super()._unknown_peer(conn)
            return
        try:
            nb = self.daemon._add_neighbor(cfgn, dynamic=True)
        except Exception as exc:
            log.error("cannot start dynamic neighbour %s: %s", conn.peer_address, exc)
            conn.abort()
            return
        log.info("dynamic neighbour %s accepted (peer group %s)", nb.address, cfgn.peer_group)
        nb._accept(conn)
