"""Cease NOTIFICATIONs a neighbour sends and the text it logs for them.

Owns: the RFC 8538 §5 rule that wraps a "Hard" Cease in Hard Reset when
both sides negotiated the N bit (``cease_for``), the RFC 9003 shutdown
communication data (``shutdown_data``), the log text of a NOTIFICATION
(``notification_text``), and :class:`PrefixLimit`: the Cease / Maximum
Number of Prefixes Reached (RFC 4486 §4) and the timer that lifts it.

The functions are pure, called by :class:`fastbgp.session.speaker.Neighbor`
and :class:`fastbgp.session.collision.Sessions` before they stop a session.
A PrefixLimit belongs to one Neighbor: its route sink reports the limit
exceeded (``Neighbor.prefix_limit_exceeded``); it stops the session and
calls back ``Neighbor.enable`` when the restart time is over.
"""

from __future__ import annotations

import logging

from fastbgp.session.fsm import Event, Reason, State
from fastbgp.wire import messages
from fastbgp.wire.errors import (
    CEASE_ADMIN_SHUTDOWN,
    CEASE_HARD_RESET,
    CEASE_MAX_PREFIXES,
    CEASE_PEER_DECONFIGURED,
    ERR_CEASE,
)

__all__ = ["HARD_CEASE", "PrefixLimit", "cease_for", "notification_text", "shutdown_data"]

log = logging.getLogger("fastbgp.speaker")

# Cease subcodes RFC 8538 §5 marks "Hard": with the N bit negotiated they
# go out wrapped in Hard Reset so the peer does not keep our routes.
HARD_CEASE = frozenset({CEASE_MAX_PREFIXES, CEASE_ADMIN_SHUTDOWN, CEASE_PEER_DECONFIGURED, CEASE_HARD_RESET})


def shutdown_data(message: str) -> bytes:
    """The Cease data carrying an RFC 9003 shutdown communication."""
    return messages.build_shutdown_data(message) if message else b""


def cease_for(session, graceful_restart, subcode: int, data: bytes) -> tuple:
    """(subcode, data) of the Cease to send on ``session``: RFC 8538 §5,
    with the N bit on both sides (``graceful_restart`` is our
    GracefulRestartConfig or None) a "Hard" Cease goes out as Hard Reset
    whose data is the original code, subcode and data."""
    neg = session.negotiated
    gr = graceful_restart
    if (
        subcode in HARD_CEASE
        and subcode != CEASE_HARD_RESET
        and gr is not None
        and gr.notification
        and neg is not None
        and neg.graceful_restart is not None
        and neg.graceful_restart.notification
        and session.state in (State.OPENCONFIRM, State.ESTABLISHED)
    ):
        return CEASE_HARD_RESET, bytes((ERR_CEASE, subcode)) + data
    return subcode, data


def notification_text(n) -> str:
    """"(error name)" or "(error name: 'shutdown message')" of a
    Notification, looking inside a Hard Reset (RFC 8538 §3)."""
    msg = n.shutdown_message
    if msg is None and n.code == ERR_CEASE and n.subcode == CEASE_HARD_RESET and len(n.data) >= 2:
        inner = messages.Notification(n.data[0], n.data[1], n.data[2:])
        msg = inner.shutdown_message
    return "(%s)" % (n.error_name if msg is None else "%s: %r" % (n.error_name, msg))


class PrefixLimit:
    """One neighbour's prefix limit: ``hit`` after the Cease, until
    :meth:`clear` (``Neighbor.enable``) or the configured restart time."""

    def __init__(self, neighbor):
        self.neighbor = neighbor
        self.hit = False
        self._restart = None  # asyncio.TimerHandle

    def exceeded(self, session, family, limit: int) -> None:
        nb = self.neighbor
        log.warning("%s: prefix limit %d exceeded", nb.address, limit)
        self.hit = True
        # RFC 4486 §4: data = AFI (2), SAFI (1), the upper bound (4).
        data = family[0].to_bytes(2, "big") + bytes((family[1],)) + int(limit).to_bytes(4, "big")
        sub, dat = cease_for(session, nb.config.graceful_restart, CEASE_MAX_PREFIXES, data)
        # A manual stop: no automatic restart; the neighbour stays Idle until
        # enable() or the configured restart timer.
        session.handle(Event.MANUAL_STOP, reason=Reason.PREFIX_LIMIT, subcode=sub, data=dat)
        nb.sessions.drop_secondary()
        restart = nb.config.prefix_limit_restart
        if restart:
            self._restart = nb.loop.call_later(restart, self._restart_now)

    def _restart_now(self):
        self._restart = None
        nb = self.neighbor
        if not nb.removed and nb.sessions.main is not None and nb.speaker.started:
            nb.enable()

    def clear(self) -> None:
        self.hit = False
        self.cancel()

    def cancel(self) -> None:
        if self._restart is not None:
            self._restart.cancel()
            self._restart = None
