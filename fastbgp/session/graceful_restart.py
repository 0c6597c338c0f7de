"""Graceful restart, receiving speaker side (RFC 4724 §4.2, RFC 8538).

Owns: the decision whether a session that ended keeps the peer's routes
(stale) and for which families, the restart timer (how long stale routes
wait for the peer to come back) and the stale timer (how long they wait,
once it is back, for its End-of-RIB).

Called by :class:`fastbgp.session.speaker.Neighbor`: ``session_ended`` when
the FSM clears routes of its main session, ``reestablished`` when a session
reaches Established, ``end_of_rib`` after an End-of-RIB, ``cancel`` when
the neighbour stops.  The routes themselves are the neighbour's route sink's
(:class:`fastbgp.session.sink.RouteSink`): this class calls its
``routes_cleared``, ``stale_families``, ``restart_reestablished`` and
``stale_expired``, then ``Neighbor.check_waiters``.
"""

from __future__ import annotations

from fastbgp.session.fsm import Event, Reason
from fastbgp.wire import capabilities as caps_mod
from fastbgp.wire.errors import CEASE_HARD_RESET, ERR_CEASE

__all__ = ["GracefulRestart"]

# Sessions we chose to end: their routes go at once.
_OUR_CHOICE = frozenset({Reason.ADMIN_DOWN, Reason.ADMIN_RESET, Reason.HARD_RESET, Reason.DECONFIGURED,
                         Reason.PREFIX_LIMIT, Reason.DYING})


class GracefulRestart:
    """The graceful-restart timers of one neighbour."""

    def __init__(self, neighbor):
        self.neighbor = neighbor
        self.restart_timer = None  # asyncio.TimerHandle: the peer must come back
        self.stale_timer = None  # asyncio.TimerHandle: the peer must send End-of-RIB

    def applies(self, session, t, rx_notification) -> bool:
        """Whether the end of ``session`` (transition ``t``) keeps routes:
        ``rx_notification`` is the (code, subcode) received on it, if any."""
        gr = self.neighbor.config.graceful_restart
        neg = session.negotiated
        if gr is None or neg is None or neg.graceful_restart is None:
            return False
        if t.reason in _OUR_CHOICE:
            return False
        sent = t.notification
        received = rx_notification if t.event in (Event.NOTIF_MSG, Event.NOTIF_MSG_VER_ERR) else None
        if sent is None and received is None:
            # RFC 4724 §4.2: the TCP session ended without a NOTIFICATION.
            return True
        # RFC 8538 §4: with the N bit on both sides, any NOTIFICATION but
        # Hard Reset keeps the routes.
        if gr.notification and neg.graceful_restart.notification:
            code_sub = tuple(sent[:2]) if sent is not None else received
            return code_sub != (ERR_CEASE, CEASE_HARD_RESET)
        return False

    def session_ended(self, session, t, rx_notification) -> None:
        """The FSM clears the routes of the neighbour's session: keep the
        families both sides do graceful restart for, stale, and wait the
        peer's restart time for it to come back."""
        keep = set()
        if self.applies(session, t, rx_notification):
            neg = session.negotiated
            keep = {(a, s) for a, s, _f in neg.graceful_restart.families} & set(neg.families)
        self.cancel()
        sink = self.neighbor.sink
        sink.routes_cleared(session, keep)
        if keep and sink.stale_families():
            cap = session.negotiated.graceful_restart
            if self.restart_timer is not None:  # a sink may have started one
                self.restart_timer.cancel()
            self.restart_timer = self.neighbor.loop.call_later(cap.restart_time, self.expired, "restart time")

    def reestablished(self, session) -> None:
        """The session is back: stale families the peer did not keep
        forwarding state for go now, the rest wait for End-of-RIB at most
        the configured stale time."""
        if self.restart_timer is not None:
            self.restart_timer.cancel()
            self.restart_timer = None
        sink = self.neighbor.sink
        if not sink.stale_families():
            return
        cap = session.negotiated.graceful_restart
        forwarding = set()
        if cap is not None:
            forwarding = {(a, s) for a, s, f in cap.families if f & caps_mod.GracefulRestart.FORWARDING_STATE}
        sink.restart_reestablished(session, forwarding)
        gr = self.neighbor.config.graceful_restart
        if sink.stale_families() and gr is not None:
            if self.stale_timer is not None:
                self.stale_timer.cancel()
            self.stale_timer = self.neighbor.loop.call_later(gr.stale_time, self.expired, "stale time")

    def end_of_rib(self) -> None:
        """After the sink handled an End-of-RIB: nothing stale is left to
        wait for, stop the stale timer."""
        if self.stale_timer is not None and not self.neighbor.sink.stale_families():
            self.stale_timer.cancel()
            self.stale_timer = None

    def expired(self, why: str) -> None:
        """The restart or the stale timer fired: every stale route goes."""
        self.cancel()
        self.neighbor.sink.stale_expired(why)
        self.neighbor.check_waiters()

    def cancel(self) -> None:
        for h in (self.restart_timer, self.stale_timer):
            if h is not None:
                h.cancel()
        self.restart_timer = None
        self.stale_timer = None
