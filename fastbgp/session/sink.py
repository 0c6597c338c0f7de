"""The route sink: what a neighbour does with the routes it receives and
with its session coming and going.

A :class:`fastbgp.session.speaker.Neighbor` runs the protocol (FSM,
collisions, graceful-restart timers, route-refresh checks, the sender of
its Adj-RIB-Out) and hands every routing decision to one
:class:`RouteSink`.  The library's default is the dict Adj-RIB-In
(:class:`fastbgp.session.adj_rib_in.AdjRibIn`, which also sends the
speaker's announced routes); the daemon's keeps routes in its compiled
RIBs and sends its update groups' messages.  A Speaker picks the sink of
each neighbour with its ``sink_factory`` (``factory(neighbor) -> sink``);
``Speaker.add_neighbor(config, sink=...)`` gives one explicitly.

Order of the calls for one session (all from the event loop):

* ``session_up(session)`` when it reaches Established, before graceful
  restart looks at what is stale; then ``restart_reestablished`` (only when
  something is stale); then the neighbour starts its sender and calls
  ``send_table(session)``.
* ``update_received`` for every UPDATE in Established (``bodies_received``
  / ``updates_received`` for UPDATEs framed in a row); End-of-RIB inside
  it is reported back through ``Neighbor.eor_received``, which calls
  ``end_of_rib``.
* ``route_refresh`` for a ROUTE-REFRESH whose family was negotiated and
  whose subtype is known (RFC 2918 §4, RFC 7313 §5 are checked before).
* ``routes_cleared(session, keep)`` when the FSM clears routes (the session
  ended, RFC 4271 §8) or the neighbour is removed (``session`` None);
  ``keep`` are the families graceful restart keeps stale (RFC 4724 §4.2).
  Then ``session_down(session)`` if it had been Established.
* ``stale_expired(why)`` when the restart or stale timer fires.
* ``state_published(old, new, reason)`` after subscribers heard of a state
  change.

The sink calls back ``Neighbor.eor_received``,
``Neighbor.prefix_limit_exceeded``, ``Neighbor.send_messages`` /
``Neighbor.adj_rib_out`` and ``Neighbor.check_waiters``.
"""

from __future__ import annotations

import abc
from typing import Collection, Optional

from fastbgp.session.fsm import State
from fastbgp.wire import codec
from fastbgp.wire.errors import BGPError

__all__ = ["RouteSink", "parse_updates"]


def parse_updates(bodies, ctx) -> tuple:
    """(ParsedUpdates, error): the codec's parse of UPDATE ``bodies`` in
    order with the session context ``ctx``, up to the first it refuses
    (RFC 4271 §6.3, RFC 7606: its BGPError, else None); none after that one
    is parsed."""
    parse = codec.parse_update
    parsed = []
    append = parsed.append
    try:
        for body in bodies:
            append(parse(body, ctx))
    except BGPError as exc:
        return parsed, exc
    return parsed, None


class RouteSink(abc.ABC):
    """Receives a neighbour's routes and session events (see the module
    docstring for the order).  Methods without a body here are required;
    the others default to doing nothing."""

    # -- the table we send ------------------------------------------------------------

    @abc.abstractmethod
    def send_table(self, session) -> None:
        """The sender runs for ``session`` (just Established): queue the
        initial table and End-of-RIB per negotiated family (RFC 4724 §2)."""

    def session_up(self, session) -> None:
        """``session`` reached Established (counters already updated)."""

    def session_down(self, session) -> None:
        """``session`` left Established; the sender stops right after."""

    def state_published(self, old, new, reason) -> None:
        """A state change of the neighbour was published."""

    # -- routes received ----------------------------------------------------------------

    @abc.abstractmethod
    def update_received(self, session, parsed) -> None:
        """One UPDATE (the codec's ParsedUpdate) received in Established.
        May end the session (prefix limit); the neighbour then does not
        notify its update subscribers."""

    def updates_received(self, session, parsed_list) -> int:
        """UPDATEs received one after the other, in order: update_received
        for each until one ends the session.  Returns how many were
        processed.  A sink may take the list at once (the daemon does)."""
        done = 0
        for parsed in parsed_list:
            self.update_received(session, parsed)
            done += 1
            if session.fsm.state is not State.ESTABLISHED:
                break
        return done

    def bodies_received(self, session, bodies, handled) -> Optional[BGPError]:
        """UPDATE bodies received one after the other in Established, not
        yet parsed (nobody watches the messages themselves): each parsed
        with ``session.ctx``, ``handled(parsed)`` for one that carries
        errors the codec handled (RFC 7606 treat-as-withdraw, attribute
        discard: the neighbour counts and logs them), then processed as
        updates_received would, in order, until one ends the session.
        Returns the codec's BGPError for the first body it refused (those
        before it processed, none after it parsed), else None.  A sink may
        skip the parse of a body whose outcome it already knows (the
        daemon's import lane does)."""
        parsed, error = parse_updates(bodies, session.ctx)
        for p in parsed:
            if p.errors:
                handled(p)
        if parsed:
            self.updates_received(session, parsed)
        return error

    @abc.abstractmethod
    def route_refresh(self, session, family: tuple, subtype: int) -> None:
        """ROUTE-REFRESH for ``family``: RR_NORMAL asks for the table again
        (RFC 2918 §4; bracket with BoRR/EoRR when enhanced route refresh
        was negotiated, RFC 7313 §4); RR_BORR / RR_EORR (only when
        negotiated) begin and end the peer's re-advertisement: routes not
        re-advertised in between are removed."""

    @abc.abstractmethod
    def routes_cleared(self, session, keep: Collection) -> None:
        """Drop the received routes, except the families in ``keep``, which
        become stale (graceful restart, RFC 4724 §4.2)."""

    @abc.abstractmethod
    def stale_families(self) -> Collection:
        """The families with stale routes."""

    @abc.abstractmethod
    def end_of_rib(self, family: tuple) -> None:
        """End-of-RIB for ``family`` (RFC 4724 §2): drop what is still stale
        of it (RFC 4724 §4.2)."""

    @abc.abstractmethod
    def restart_reestablished(self, session, forwarding: Collection) -> None:
        """The session is back while routes are stale: drop the stale
        families not in ``forwarding`` (the families the peer kept
        forwarding state for, RFC 4724 §4.2)."""

    @abc.abstractmethod
    def stale_expired(self, why: str) -> None:
        """The restart time or the stale time ran out: drop every stale
        route (``why`` names the timer, for the log)."""

    @property
    @abc.abstractmethod
    def received_count(self) -> int:
        """Prefixes (paths, with ADD-PATH) held from the peer, stale ones
        included."""

    @property
    def stale_count(self) -> int:
        """Stale prefixes held (0 when the sink does not count them)."""
        return 0

    def received_paths(self, family: Optional[tuple]) -> dict:
        """{(prefix, path id or None): RouteAttributes} held from the peer
        for ``family`` (every family when None); empty when the sink keeps
        no per-neighbour view."""
        return {}
