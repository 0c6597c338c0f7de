"""Per-neighbour counters, named after GoBGP's ``PeerState.Messages`` and
``Timers.State`` so numbers can be compared side by side."""

from __future__ import annotations

from collections import OrderedDict
from typing import Optional

import msgspec

from fastbgp.wire.constants import (
    MSG_KEEPALIVE,
    MSG_NOTIFICATION,
    MSG_OPEN,
    MSG_ROUTE_REFRESH,
    MSG_UPDATE,
)

__all__ = ["MessageCounts", "Counters", "LogLimit", "RefusedConnections"]

_FIELD = {
    MSG_OPEN: "open",
    MSG_UPDATE: "update",
    MSG_NOTIFICATION: "notification",
    MSG_KEEPALIVE: "keepalive",
    MSG_ROUTE_REFRESH: "refresh",
}


class MessageCounts(msgspec.Struct):
    """Messages of each type in one direction.  ``discarded`` counts
    messages (or parts) dropped without effect: UPDATEs for families not
    negotiated, ROUTE-REFRESH for unknown families or subtypes.
    ``withdraw_update``/``withdraw_prefix`` count UPDATEs carrying
    withdrawals and the withdrawn prefixes (GoBGP's WithdrawUpdate /
    WithdrawPrefix)."""

    open: int = 0
    update: int = 0
    notification: int = 0
    keepalive: int = 0
    refresh: int = 0
    discarded: int = 0
    withdraw_update: int = 0
    withdraw_prefix: int = 0
    total: int = 0

    def count(self, mtype: int, n: int = 1) -> None:
        name = _FIELD.get(mtype)
        if name is not None:
            setattr(self, name, getattr(self, name) + n)
        self.total += n


class Counters(msgspec.Struct):
    """Everything counted for one neighbour; survives session restarts
    (like GoBGP's peer state) until :meth:`reset`.

    Times are wall-clock seconds (``time.time()``): ``uptime`` is when the
    current/last session became Established, ``downtime`` when it last left
    Established, ``last_update_received``/``last_update_sent`` the last
    UPDATE in each direction.
    """

    sent: MessageCounts = msgspec.field(default_factory=MessageCounts)
    received: MessageCounts = msgspec.field(default_factory=MessageCounts)
    established_count: int = 0
    flaps: int = 0  # transitions out of Established
    uptime: Optional[float] = None
    downtime: Optional[float] = None
    last_update_received: Optional[float] = None
    last_update_sent: Optional[float] = None
    # RFC 7606 errors handled without a session reset.
    treat_as_withdraw: int = 0
    attribute_discard: int = 0
    # Prefixes handled as withdrawn because their next hop is one of our
    # own addresses (RFC 4271 §6.3).
    own_next_hop: int = 0
    # Connections: attempts made, failed, accepted, refused (unknown peer or
    # Idle / second collision connection).
    connect_attempts: int = 0
    connect_failures: int = 0
    accepted: int = 0
    refused: int = 0
    collisions: int = 0  # RFC 4271 §6.8 collisions resolved
    # Connections from the peer's address closed before their OPEN to make
    # room for a newer one (session/collision.py, at most 2 kept).
    half_open_closed: int = 0
    out_of_resources: int = 0  # sessions ended for a full or stalled output queue (RFC 4486 subcode 8)

    def reset(self) -> None:
        fresh = Counters()
        for name in self.__struct_fields__:
            setattr(self, name, getattr(fresh, name))

    def to_dict(self) -> dict:
        return msgspec.to_builtins(self)


class LogLimit:
    """A log line that may repeat with every message a peer sends (or every
    connection a stranger makes): counted in ``total`` and per key, logged
    at most once per key per ``interval`` seconds -- :meth:`note` says when
    to log and how many were not logged since the last line.  A peer must
    not be able to flood the log (a full table of UPDATEs that all carry
    the same fault would otherwise be a million lines).

    Keys may be hostile and unbounded (source addresses), so ``by_key``
    keeps the ``max_keys`` keys noted most recently; an older one is
    forgotten (its count and its rate limit) and starts again from zero."""

    __slots__ = ("total", "by_key", "interval", "max_keys")

    MAX_KEYS = 1024
    INTERVAL = 60.0

    def __init__(self, interval: float = INTERVAL, max_keys: int = MAX_KEYS):
        self.total = 0
        # key -> [noted, time of the last log line, not logged since]
        self.by_key: OrderedDict = OrderedDict()
        self.interval = interval
        self.max_keys = max_keys

    def count(self, key) -> int:
        """Times ``key`` was noted (while it is remembered)."""
        entry = self.by_key.get(key)
        return 0 if entry is None else entry[0]

    def note(self, key, now: float) -> Optional[int]:
        """Count one occurrence of ``key`` at ``now`` (monotonic seconds).
        Returns None when it is not to be logged, else how many were not
        logged since the last line."""
        self.total += 1
        by = self.by_key
        entry = by.get(key)
        if entry is None:
            if len(by) >= self.max_keys:
                by.popitem(last=False)
            by[key] = [1, now, 0]
            return 0
        by.move_to_end(key)
        entry[0] += 1
        if now - entry[1] < self.interval:
            entry[2] += 1
            return None
        suppressed = entry[2]
        entry[1] = now
        entry[2] = 0
        return suppressed

    def clear(self) -> None:
        """Forget every key: the next occurrence of each is logged."""
        self.by_key.clear()


class RefusedConnections(LogLimit):
    """Connections refused from addresses with no neighbour (RFC 4271 §8):
    a :class:`LogLimit` keyed by source address (``refuse``; the latest
    1,024 sources in ``by_address``)."""

    __slots__ = ()

    def __init__(self, interval: float = LogLimit.INTERVAL, max_addresses: int = LogLimit.MAX_KEYS):
        super().__init__(interval, max_addresses)

    refuse = LogLimit.note

    def refuse_logged(self, address, now: float, logger) -> None:
        """``refuse`` ``address`` and say so on ``logger`` (INFO) when a
        line is due: the one wording of the speaker and of the front of
        ``workers = N``."""
        suppressed = self.refuse(address, now)
        if suppressed is not None:
            logger.info("connection from unknown peer %s refused%s", address,
                        " (%d more refused since the last line)" % suppressed if suppressed else "")

    @property
    def by_address(self) -> OrderedDict:
        return self.by_key
