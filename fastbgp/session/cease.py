"""Cease NOTIFICATIONs a neighbour sends and the text it logs for them.

Owns: the RFC 8538 §5 rule that wraps a "Hard" Cease in Hard Reset when
both sides negotiated the N bit (``cease_for``), the RFC 9003 shutdown
communication data (``shutdown_data``), the log text of a NOTIFICATION
(``notification_text``, ``describe_notification``), the one log line of a
session's end (``log_session_end``: WARNING when the session was lost,
INFO when the operator or a collision ended it), and :class:`PrefixLimit`: the Cease / Maximum
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
from fastbgp.wire import errors, messages
from fastbgp.wire.errors import (
    CEASE_ADMIN_SHUTDOWN,
    CEASE_COLLISION,
    CEASE_HARD_RESET,
    CEASE_MAX_PREFIXES,
    CEASE_PEER_DECONFIGURED,
    ERR_CEASE,
    ERR_FSM,
    ERR_HEADER,
    ERR_OPEN,
    ERR_ROUTE_REFRESH,
    ERR_UPDATE,
    ERROR_NAMES,
)

__all__ = [
    "HARD_CEASE",
    "PrefixLimit",
    "cease_for",
    "describe_notification",
    "hex_data",
    "log_session_end",
    "notification_text",
    "shutdown_data",
    "subcode_name",
]

log = logging.getLogger("fastbgp.speaker")

# Cease subcodes RFC 8538 §5 marks "Hard": with the N bit negotiated they
# go out wrapped in Hard Reset so the peer does not keep our routes.
HARD_CEASE = frozenset({CEASE_MAX_PREFIXES, CEASE_ADMIN_SHUTDOWN, CEASE_PEER_DECONFIGURED, CEASE_HARD_RESET})


# Subcode names come from fastbgp.wire.errors' own constants (the one
# source of the numbers): each error code's subcodes share a name prefix.
_SUBCODE_PREFIX = {ERR_HEADER: "HDR_", ERR_OPEN: "OPEN_", ERR_UPDATE: "UPD_", ERR_FSM: "FSM_",
                   ERR_CEASE: "CEASE_", ERR_ROUTE_REFRESH: "RR_"}
_SUBCODE_NAMES = {
    (code, value): name[len(prefix):].lower().replace("_", "-")
    for code, prefix in _SUBCODE_PREFIX.items()
    for name, value in vars(errors).items()
    if name.startswith(prefix) and isinstance(value, int)
}

# Octets of NOTIFICATION data shown in a log line; the data is the peer's
# (hostile) input and may be up to 65535 octets (RFC 8654).
LOG_DATA_OCTETS = 64

# Up states: leaving one of them is losing the session (RFC 4271 §8.2.2).
_UP = (State.OPENSENT, State.OPENCONFIRM, State.ESTABLISHED)
_DOWN = (State.IDLE, State.CONNECT, State.ACTIVE)
# Ends the operator asked for (disable, reset, deconfigure, reload, stop) or
# a collision decided (RFC 4271 §6.8): logged at INFO, not WARNING.
_ORDERED = frozenset({Reason.ADMIN_DOWN, Reason.ADMIN_RESET, Reason.DYING, Reason.DECONFIGURED,
                      Reason.CONFIG_CHANGE, Reason.COLLISION})


def subcode_name(code: int, subcode: int) -> str:
    """The name of a NOTIFICATION subcode ("malformed-attr-list"); subcode 0
    is Unspecific (RFC 4271 §4.5)."""
    name = _SUBCODE_NAMES.get((code, subcode))
    if name is None:
        return "unspecific" if subcode == 0 else "subcode %d" % subcode
    return name


def hex_data(data: bytes, limit: int = LOG_DATA_OCTETS) -> str:
    """``data`` in hex, cut to ``limit`` octets with "…(N octets)"."""
    data = bytes(data)
    if len(data) <= limit:
        return data.hex()
    return "%s…(%d octets)" % (data[:limit].hex(), len(data))


def describe_notification(sent: bool, code: int, subcode: int, data: bytes) -> str:
    """'NOTIFICATION sent 3/1 (UPDATE Message Error / malformed-attr-list)
    data 4001…' for a log line."""
    text = "NOTIFICATION %s %d/%d (%s / %s)" % ("sent" if sent else "received", code, subcode,
                                               ERROR_NAMES.get(code, "error code %d" % code),
                                               subcode_name(code, subcode))
    return text + (" data %s" % hex_data(data) if data else "")


def log_session_end(address, session, t) -> None:
    """Log the end of ``session`` once, on the transition ``t`` that ended
    it: leaving OpenSent/OpenConfirm/Established, or any state after a
    NOTIFICATION.  WARNING with the reason and the NOTIFICATION, unless the
    operator or a collision ended it (INFO)."""
    notif = session.loss_notification
    if t.state not in _DOWN or (t.old_state not in _UP and notif is None):
        return
    if session.quiet_end:
        # Counted and logged (rate-limited) by its owner: a flood of such
        # connections must not flood the log (collision.Sessions._evict).
        session.loss_notification = session.loss_error = None
        return
    session.loss_notification = None
    detail = session.loss_error
    session.loss_error = None
    ordered = session.silent or (t.reason in _ORDERED and (notif is None or notif[0]))
    if notif is not None and notif[0] and notif[1] == ERR_CEASE and notif[2] == CEASE_COLLISION:
        ordered = True
    text = "%s: session %s in %s (%s)" % (address, "closed" if ordered else "lost", t.old_state.name,
                                          t.reason.value if t.reason else "-")
    if detail:
        text += ": " + detail
    if notif is not None:
        text += "; " + describe_notification(*notif)
    if ordered:
        log.info("%s", text)
    else:
        log.warning("%s", text)


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
        # INFO: the session's end is the WARNING (log_session_end).
        log.info("%s: prefix limit %d exceeded", nb.address, limit)
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
