"""Adj-RIB-Out (RFC 4271 §3.2): routes to send, and the sender that writes
them to the session.

Owns:

:class:`RibOut`
    locally originated routes, family -> {key: PathSpec}; one per Speaker
    (speaker-wide routes) and one per neighbour (routes for it alone, which
    win over the speaker-wide ones).
:class:`Batch`
    prefixes of one family sharing one PathSpec, packed once and shared by
    every neighbour.
:class:`AdjRibOut`
    one neighbour's view: its own RibOut, the out-queue and the sender task
    that drains it into the connection, honouring transport back-pressure.

Who calls it: :class:`fastbgp.session.speaker.Neighbor` (``start`` when its
session is Established, ``stop`` when it leaves, ``announce``/``withdraw``
for the neighbour's own routes), the Speaker (``speaker_announced`` /
``speaker_withdrew`` for speaker-wide routes), route sinks (``send_table``,
``resend``, ``send_messages`` for messages encoded elsewhere, e.g. shared
by every member of a daemon update group).

What it calls back: nothing but the neighbour's ``counters``,
``end_of_rib_sent``, ``address``, ``ebgp``, ``local_as`` and ``config``
(read when encoding; ``config.max_queued_bytes`` caps the queue), and the
session's ``out_of_resources`` when the queue outgrows that cap.  While no
sender runs, everything queued is dropped: the full table goes out when
the session establishes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Optional

from fastbgp.session.routes import PathSpec, family_of, key_prefix, wire_attributes
from fastbgp.wire import codec
from fastbgp.wire.constants import AFI_IPV6, IPV4_UNICAST, MSG_UPDATE, RR_BORR, RR_EORR

__all__ = ["ANNOUNCE", "WITHDRAW", "EOR", "RAW", "MSGS", "Batch", "RibOut", "AdjRibOut"]

log = logging.getLogger("fastbgp.speaker")

# Out-queue item kinds.
ANNOUNCE = 1  # a Batch with a PathSpec
WITHDRAW = 2  # a Batch without
EOR = 3  # a family: End-of-RIB (RFC 4724 §2)
RAW = 4  # one encoded message
MSGS = 5  # a list of encoded messages, possibly shared with other neighbours

# Queued-octet estimates for items encoded only when sent: a prefix (with
# its 4-octet path id) and a whole End-of-RIB message.  Exact sizes would
# cost an encoding per enqueue; the cap needs the order of magnitude.
_KEY_OCTETS = 8
_EOR_OCTETS = 30

# Queued lists of encoded messages joined into one write, up to this many
# octets (AdjRibOut._run).
JOIN_OCTETS = 16 << 10

# The last shared message list sized: an update group queues one list for
# every member in a row, so it is summed once, not once per member.
_sized = [None, 0]


def _list_octets(msgs) -> int:
    if _sized[0] is not msgs:
        _sized[0] = msgs
        _sized[1] = sum(map(len, msgs))
    return _sized[1]


def _item_octets(kind, item) -> int:
    if kind == MSGS:
        return _list_octets(item)
    if kind == RAW:
        return len(item)
    if kind == EOR:
        return _EOR_OCTETS
    return len(item.keys) * _KEY_OCTETS


class Batch:
    """Prefixes of one family sharing one PathSpec (None = withdrawal); the
    packed forms are built once and shared by every neighbour."""

    __slots__ = ("family", "keys", "spec", "_packed")

    def __init__(self, family, keys, spec):
        self.family = family
        self.keys = keys
        self.spec = spec
        self._packed = {}

    def packed(self, addpath: bool) -> bytes:
        p = self._packed.get(addpath)
        if p is None:
            if addpath:
                p = b"".join(self.keys)
            else:
                p = b"".join([k[4:] for k in self.keys])
            self._packed[addpath] = p
        return p


class RibOut:
    """Adj-RIB-Out of locally originated routes: family -> {key: PathSpec},
    key = 4-octet path id + packed prefix."""

    def __init__(self):
        self.tables: dict = {}
        self._groups = None

    def set(self, family, keys, spec):
        table = self.tables.get(family)
        if table is None:
            table = self.tables[family] = {}
        table.update(dict.fromkeys(keys, spec))
        self._groups = None

    def remove(self, family, keys) -> list:
        table = self.tables.get(family)
        if not table:
            return []
        gone = [k for k in keys if table.pop(k, None) is not None]
        if gone:
            self._groups = None
        return gone

    def has(self, family, key) -> bool:
        t = self.tables.get(family)
        return bool(t) and key in t

    def groups(self) -> dict:
        """{family: [Batch]} grouping every route by PathSpec; cached until
        the next change, so N neighbours coming up share one grouping."""
        if self._groups is None:
            out = {}
            for fam, table in self.tables.items():
                by_spec = {}
                for key, spec in table.items():
                    lst = by_spec.get(spec)
                    if lst is None:
                        by_spec[spec] = [key]
                    else:
                        lst.append(key)
                out[fam] = [Batch(fam, keys, spec) for spec, keys in by_spec.items()]
            self._groups = out
        return self._groups

    def count(self, family=None) -> int:
        if family is not None:
            return len(self.tables.get(family_of(family), ()))
        return sum(len(t) for t in self.tables.values())

    def prefixes(self, family=None) -> list:
        out = []
        want = None if family is None else family_of(family)
        for fam, table in self.tables.items():
            if want is not None and fam != want:
                continue
            out += [key_prefix(k, fam[0], True)[0] for k in table]
        return out


class AdjRibOut:
    """One neighbour's Adj-RIB-Out: ``routes`` (its own RibOut) over the
    speaker-wide ``speaker_routes``, and the queue its sender drains."""

    def __init__(self, neighbor, speaker_routes: RibOut):
        self.neighbor = neighbor
        self.counters = neighbor.counters
        self.speaker_routes = speaker_routes
        self.routes = RibOut()
        self.queue: deque = deque()
        self.sending = False  # an item is being written
        self._event = asyncio.Event()
        self._task: Optional[asyncio.Task] = None
        self._flush_waiters: list = []
        self._session = None
        # Octets in ``queue`` (estimated for batches), added on append and
        # taken off when the sender pops the item for the transport; each
        # item is (kind, item, its octets), sized once.
        self.queued_bytes = 0

    @property
    def running(self) -> bool:
        """A sender runs (the session is Established)."""
        return self._task is not None

    # -- queueing ------------------------------------------------------------------------

    def enqueue(self, kind: int, item) -> None:
        if self._task is None:
            return  # not Established: the full table goes out on establishment
        octets = _item_octets(kind, item)
        self.queue.append((kind, item, octets))
        self.queued_bytes += octets
        self._event.set()
        if self.queued_bytes > self._room():
            self._overflow()

    def send_messages(self, msgs: list) -> None:
        """Queue encoded messages as they are (UPDATE, End-of-RIB,
        ROUTE-REFRESH); the list may be shared with other neighbours and
        must not change afterwards.  Dropped when not Established."""
        # enqueue() inlined: update groups call this per member and batch.
        if msgs and self._task is not None:
            octets = _list_octets(msgs)
            self.queue.append((MSGS, msgs, octets))
            self.queued_bytes += octets
            self._event.set()
            if self.queued_bytes > self._room():
                self._overflow()

    def _room(self) -> int:
        """Octets the queue may hold: the cap less the transport's buffer."""
        conn = self._session.conn if self._session is not None else None
        buffered = conn.write_buffer_size() if conn is not None else 0
        return self.neighbor.config.max_queued_bytes - buffered

    def _overflow(self) -> None:
        """More is waiting than the cap allows: the peer does not keep up.
        Drop this neighbour's queue at once (the memory goes; shared lists
        stay with the other members) and end the session with Cease / Out
        of Resources (RFC 4486 §3, subcode 8) on the next loop turn, not
        under the caller (an update group may be iterating its members)."""
        session = self._session
        conn = session.conn if session is not None else None
        buffered = conn.write_buffer_size() if conn is not None else 0
        detail = "output queue over its cap: %d octets queued + %d in the socket buffer > %d" % (
            self.queued_bytes, buffered, self.neighbor.config.max_queued_bytes)
        self.stop()
        if session is not None:
            self.neighbor.loop.call_soon(session.out_of_resources, detail)

    def dump(self, family) -> list:
        """Out-queue items announcing every route of ``family``."""
        items = [(ANNOUNCE, b) for b in self.speaker_routes.groups().get(family, ())]
        items += [(ANNOUNCE, b) for b in self.routes.groups().get(family, ())]
        return items

    def send_table(self, families) -> None:
        """Every route, then End-of-RIB per family (RFC 4724 §2)."""
        for fam in sorted(families):
            for item in self.dump(fam):
                self.enqueue(*item)
            self.enqueue(EOR, fam)

    def resend(self, family, brackets: bool) -> None:
        """Every route of ``family`` again (route refresh); ``brackets``:
        between BoRR and EoRR (RFC 7313 §4)."""
        items = self.dump(family)
        if brackets:
            afi, safi = family
            items = [(RAW, codec.build_route_refresh(afi, safi, RR_BORR))] + items
            items.append((RAW, codec.build_route_refresh(afi, safi, RR_EORR)))
        for item in items:
            self.enqueue(*item)

    # -- routes ----------------------------------------------------------------------------

    def announce(self, groups: dict, spec: PathSpec) -> int:
        """Announce ({family: [key]}) to this neighbour only."""
        n = 0
        for fam, keys in groups.items():
            self.routes.set(fam, keys, spec)
            self.enqueue(ANNOUNCE, Batch(fam, keys, spec))
            n += len(keys)
        return n

    def withdraw(self, groups: dict) -> int:
        """Withdraw routes of this neighbour; a speaker-wide route for the
        same key takes over."""
        n = 0
        speaker = self.speaker_routes
        for fam, keys in groups.items():
            gone = self.routes.remove(fam, keys)
            back = [k for k in gone if speaker.has(fam, k)]
            wd = [k for k in gone if not speaker.has(fam, k)]
            if wd:
                self.enqueue(WITHDRAW, Batch(fam, wd, None))
            if back:
                table = speaker.tables[fam]
                by_spec = {}
                for k in back:
                    by_spec.setdefault(table[k], []).append(k)
                for spec, ks in by_spec.items():
                    self.enqueue(ANNOUNCE, Batch(fam, ks, spec))
            n += len(gone)
        return n

    def speaker_announced(self, batch: Batch) -> None:
        """A speaker-wide announcement; keys this neighbour has its own
        route for are left out."""
        own = self.routes.tables.get(batch.family)
        if own:
            ks = [k for k in batch.keys if k not in own]
            if ks:
                self.enqueue(ANNOUNCE, Batch(batch.family, ks, batch.spec))
        else:
            self.enqueue(ANNOUNCE, batch)

    def speaker_withdrew(self, batch: Batch) -> None:
        """A speaker-wide withdrawal (same rule)."""
        own = self.routes.tables.get(batch.family)
        if own:
            ks = [k for k in batch.keys if k not in own]
            if ks:
                self.enqueue(WITHDRAW, Batch(batch.family, ks, None))
        else:
            self.enqueue(WITHDRAW, batch)

    # -- the sender ----------------------------------------------------------------------------

    def start(self, session) -> None:
        """Start the sender for ``session`` with an empty queue."""
        self.queue.clear()
        self.queued_bytes = 0
        self._session = session
        self._event = asyncio.Event()  # of the running loop (a speaker may be restarted in another)
        self._event.set()
        self._task = self.neighbor.loop.create_task(self._run(session, session.conn))

    def stop(self) -> None:
        task = self._task
        self._task = None
        if task is not None and not task.done():
            task.cancel()
        self.queue.clear()
        self.queued_bytes = 0
        self._session = None
        self._wake_flush()

    async def flush(self, timeout: Optional[float] = None) -> None:
        """Until everything queued was handed to the transport (at once when
        no sender runs)."""
        if (not self.queue and not self.sending) or self._task is None:
            return
        fut = asyncio.get_running_loop().create_future()
        self._flush_waiters.append(fut)
        await asyncio.wait_for(fut, timeout)

    def _wake_flush(self):
        waiters, self._flush_waiters = self._flush_waiters, []
        for f in waiters:
            if not f.done():
                f.set_result(None)

    async def _run(self, session, conn):
        """Drain the out queue into the connection: pre-encoded UPDATEs via
        writelines, pausing while the transport is above its high-water
        mark (Connection.drain)."""
        q = self.queue
        event = self._event
        sent = self.counters.sent
        since_yield = 0
        try:
            while True:
                if not q:
                    self.sending = False
                    self._wake_flush()
                    event.clear()
                    await event.wait()
                    since_yield = 0
                    continue
                if session.conn is not conn or conn.detached:
                    return
                self.sending = True
                kind, item, octets = q.popleft()
                self.queued_bytes -= octets
                try:
                    msgs = self._encode(session, kind, item)
                except Exception as exc:
                    log.error("%s: cannot encode routes for this session, skipped: %s", self.neighbor.address, exc)
                    continue
                if kind == MSGS or kind == RAW:
                    # Encoded messages queued behind these go in the same
                    # write: a member of an update group is queued one list
                    # per change (a route server's client, one per other
                    # client's announcement), and a write per list was a
                    # system call per list.  Up to JOIN_OCTETS: what the
                    # kernel does not take the transport copies, for each
                    # member (the queue holds the shared lists, not copies).
                    # Never extended in place: the lists are shared.
                    while q and q[0][0] == MSGS and len(msgs) < 64 and octets < JOIN_OCTETS:
                        _kind, more, size = q.popleft()
                        self.queued_bytes -= size
                        octets += size
                        msgs = msgs + more
                if not msgs:
                    continue
                for i in range(0, len(msgs), 64):
                    chunk = msgs[i : i + 64]
                    if not conn.writelines(chunk):
                        return
                    if kind == RAW or kind == MSGS:
                        # Pre-encoded lists may hold ROUTE-REFRESH (RFC 7313
                        # BoRR/EoRR) too: count by the header's type octet.
                        for m in chunk:
                            sent.count(m[18])
                    else:
                        sent.count(MSG_UPDATE, len(chunk))
                    since_yield += len(chunk)
                    if conn.write_paused:
                        await conn.drain()
                        since_yield = 0
                    elif since_yield >= 256:
                        # The kernel keeps absorbing: still give timers and
                        # other sessions a turn now and then.
                        await asyncio.sleep(0)
                        since_yield = 0
                if kind == WITHDRAW:
                    sent.withdraw_update += len(msgs)
                    sent.withdraw_prefix += len(item.keys)
                self.counters.last_update_sent = time.time()
        except ConnectionError:
            return
        finally:
            if self._task is asyncio.current_task() or self._task is None:
                self.sending = False
                self._wake_flush()

    def _encode(self, session, kind, item) -> list:
        if kind == MSGS:
            return item
        if kind == RAW:
            return [item]
        if kind == EOR:
            self.neighbor.end_of_rib_sent.add(item)
            return [codec.build_eor(item[0], item[1])]
        neg = session.negotiated
        ctx = session.ctx
        fam = item.family
        if fam not in neg.families:
            return []
        afi, safi = fam
        packed = item.packed(fam in ctx.addpath_tx)
        if not packed:
            return []
        if kind == WITHDRAW:
            return codec.pack_withdraws(packed, ctx, afi, safi)
        attrs, nh = self._attributes(session, item.spec, fam)
        if fam == IPV4_UNICAST and nh is None:
            return codec.pack_updates(attrs, packed, ctx)
        return codec.pack_updates(attrs, packed, ctx, afi, safi, nh)

    def _attributes(self, session, spec: PathSpec, fam) -> tuple:
        """(attribute block, MP next hop) of ``spec`` for this session,
        built once per (spec, family) and session."""
        key = (spec, fam)
        hit = session.attr_cache.get(key)
        if hit is not None:
            return hit
        nb = self.neighbor
        conn = session.conn
        neg = session.negotiated
        out = wire_attributes(
            spec, fam,
            ebgp=nb.ebgp,
            local_as=nb.local_as,
            local_address=conn.local_address if conn is not None else nb.config.local_address,
            local_role=neg.local_role if neg is not None else None,
            ipv6_next_hop=neg is not None and (fam[0], fam[1], AFI_IPV6) in neg.extended_nexthop_tx,
        )
        session.attr_cache[key] = out
        return out
