"""Who hears about a neighbour: subscribers and waiters.

Owns: :class:`Subscribers` (callbacks run in order; one failing is logged
and does not stop the others), :class:`Waiters` (futures that complete when
a predicate becomes true) and :class:`StateChange` (one entry of a
neighbour's state history).

:class:`fastbgp.session.speaker.Neighbor` holds one of each per kind of
event and calls ``notify`` / ``check`` after every state change and every
UPDATE; a route sink (or the daemon) calls ``Neighbor.check_waiters`` when
it changed routes outside those points.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Callable, Optional

import msgspec

from fastbgp.session.fsm import Reason, State

__all__ = ["StateChange", "Subscribers", "Waiters"]

log = logging.getLogger("fastbgp.speaker")


class StateChange(msgspec.Struct, frozen=True):
    """One published state change of a neighbour."""

    time: float
    old: State
    new: State
    reason: Optional[Reason]


class Subscribers:
    """An ordered list of callbacks; ``what`` names them in the log."""

    __slots__ = ("callbacks", "_what")

    def __init__(self, what: str):
        self.callbacks: list = []
        self._what = what

    def __bool__(self) -> bool:
        return bool(self.callbacks)

    def add(self, callback: Callable) -> Callable[[], None]:
        """Subscribe; returns the unsubscribe function."""
        self.callbacks.append(callback)
        return lambda: self.callbacks.remove(callback) if callback in self.callbacks else None

    def notify(self, *args) -> None:
        for cb in list(self.callbacks):
            try:
                cb(*args)
            except Exception:
                log.exception("%s subscriber %r failed", self._what, cb)


class Waiters:
    """Pending ``wait(predicate)`` calls; :meth:`check` completes those whose
    predicate became true (or raises into the waiter if it failed)."""

    __slots__ = ("entries",)

    def __init__(self):
        self.entries: list = []

    def __bool__(self) -> bool:
        return bool(self.entries)

    async def wait(self, loop, predicate: Callable[[], bool], timeout: Optional[float],
                   on_timeout: Callable[[], str]) -> None:
        """Until ``predicate()`` holds; on timeout, asyncio.TimeoutError with
        the text ``on_timeout()`` gives."""
        if predicate():
            return
        fut = loop.create_future()
        entry = (predicate, fut)
        self.entries.append(entry)
        try:
            await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            raise asyncio.TimeoutError(on_timeout()) from None
        finally:
            if entry in self.entries:
                self.entries.remove(entry)

    def check(self) -> None:
        for pred, fut in list(self.entries):
            if fut.done():
                continue
            try:
                ok = pred()
            except Exception as exc:
                fut.set_exception(exc)
                continue
            if ok:
                fut.set_result(None)
