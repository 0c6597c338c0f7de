"""The watch stream: neighbour state changes, received UPDATEs and best-path
changes as :mod:`fastbgp.control.contract` events, to every subscriber.

Owns: the subscribers' queues (``watchers``; bounded, an event a full queue
cannot take is counted in ``dropped``, never waited for).  Producers check
``watchers`` first, so nothing is built while nobody watches.

Calls: the daemon's ``attrs`` and ``sources`` (to describe a best path) and
the route helpers of :mod:`fastbgp.daemon.views`.  Called by: the daemon
(``watch`` for the Control API, ``state_change`` on every neighbour state
change, ``close`` when it stops), the importer (``update_received``) and
the exporter (``best_changes``).
"""

from __future__ import annotations

import asyncio
import time
from typing import AsyncIterator

from fastbgp.control import contract as ctl
from fastbgp.rib.export import tag_source
from fastbgp.wire import codec
from fastbgp.wire.constants import AFI_IPV4
from fastbgp.wire.families import family_name
from fastbgp.daemon.common import prefix_text
from fastbgp.daemon.views import route_base, source_name

WATCH_QUEUE = 10000
BEST_EVENTS_MAX = 1000  # BestChange events per RIB operation, at most


class EventStream:
    """Fan-out of control events; see the module docstring for its contract."""

    def __init__(self, daemon):
        self.daemon = daemon
        self.watchers: set = set()
        self.dropped = 0

    async def watch(self) -> AsyncIterator:
        q = asyncio.Queue(WATCH_QUEUE)
        self.watchers.add(q)
        try:
            while True:
                ev = await q.get()
                if ev is None:
                    return
                yield ev
        finally:
            self.watchers.discard(q)

    def close(self):
        """End every subscription (the daemon stopped)."""
        for q in list(self.watchers):
            try:
                q.put_nowait(None)
            except asyncio.QueueFull:
                pass

    def emit(self, ev):
        for q in list(self.watchers):
            try:
                q.put_nowait(ev)
            except asyncio.QueueFull:
                self.dropped += 1

    def state_change(self, nb, old, new, reason):
        self.emit(ctl.StateChange(time=time.time(), neighbor=nb.address, old=old.name.lower(),
                                  new=new.name.lower(), reason=None if reason is None else reason.value))

    def update_received(self, nb, parsed):
        prefixes = []
        afi = AFI_IPV4
        packed = parsed.nlri
        if not packed and parsed.mp_reach is not None:
            afi, packed = parsed.mp_reach[0], parsed.mp_reach[3]
        if packed:
            prefixes = self.prefix_texts(nb, afi, packed)
        # The withdrawn prefixes too (IPv4 withdrawn routes, else MP_UNREACH),
        # as bounded as the announced ones.
        wafi, wpacked = AFI_IPV4, parsed.withdrawn
        if not wpacked and parsed.mp_unreach is not None:
            wafi, wpacked = parsed.mp_unreach[0], parsed.mp_unreach[2]
        withdrawn = self.prefix_texts(nb, wafi, wpacked) if wpacked else []
        self.emit(ctl.UpdateReceived(time=time.time(), neighbor=nb.address, announced=parsed.n_announced,
                                     withdrawn=parsed.n_withdrawn, prefixes=prefixes,
                                     withdrawn_prefixes=withdrawn))

    @staticmethod
    def prefix_texts(nb, afi, packed, most=16) -> list:
        """The first ``most`` prefixes of ``packed`` as text; [] when they
        cannot be read (the session has dealt with that already)."""
        try:
            rx = (afi, 1) in nb.session.ctx.addpath_rx if nb.session else False
            return [prefix_text(afi, a, p) for _i, a, p in codec.unpack_prefixes(packed, afi, rx)[:most]]
        except Exception:
            return []

    def best_changes(self, fam, cs):
        """BestChange events of a Loc-RIB ChangeSet (at most BEST_EVENTS_MAX)."""
        now = time.time()
        name = family_name(fam)
        afi = fam[0]
        left = BEST_EVENTS_MAX
        memo = {}
        table = self.daemon.attrs
        sources = self.daemon.sources
        for aid, packed in cs.announced.items():
            pid, attrs, nh = tag_source(table, aid)
            base = route_base(memo, attrs, nh)
            for _i, addr, plen in codec.unpack_prefixes(packed, afi, False)[:left]:
                p = prefix_text(afi, addr, plen)
                self.emit(ctl.BestChange(time=now, family=name, prefix=p,
                                         route=ctl.Route(prefix=p, source=source_name(sources, pid), best=True,
                                                         **base)))
                left -= 1
            if left <= 0:
                return
        if cs.withdrawn:
            for _i, addr, plen in codec.unpack_prefixes(cs.withdrawn, afi, False)[:left]:
                self.emit(ctl.BestChange(time=now, family=name, prefix=prefix_text(afi, addr, plen), route=None))
