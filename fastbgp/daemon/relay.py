"""One BGP session shared by N worker processes (``workers = N``).

With ``workers = N`` (fastbgp.daemon.front) one front process holds every
TCP connection and N workers each run a whole daemon whose RIB keeps one
shard of the prefix space (``Rib(shards=N, shard=k)``).  Every worker sees
the whole session: the front copies each octet the peer sends to all of
them, so each runs the same FSM on the same messages (RFC 4271 §8), the
same OPEN negotiation and the same hold timer, and each parses every
UPDATE but stores and exports only its own prefixes.  What the peer gets
is one session, merged here message by message (:class:`Merge`):

* OPEN, KEEPALIVE and ROUTE-REFRESH requests: every worker sends the same
  ones (same configuration, same FSM); worker 0's are sent, the others'
  dropped.
* UPDATEs: each worker's own prefixes (disjoint shards, so no prefix is
  ever announced by two workers and the order per prefix is one worker's
  order).  Those of workers 1..N-1 wait until worker 0 has sent its first
  KEEPALIVE: the peer is Established only then (RFC 4271 §8.2.2,
  OpenConfirm), and another worker may reach Established first.
* End-of-RIB (RFC 4724 §2) of a family: sent once every worker sent its
  own, i.e. once the whole table was sent; likewise Enhanced Route Refresh
  (RFC 7313 §4): the first BoRR of a round, the EoRR once all sent theirs.
* NOTIFICATION: the first one, from any worker, is sent and ends the
  session for all (a worker sends one only for a reason every worker sees
  alike, or for its own hold timer: the front logs which and why).

Owns: :class:`Merge` (the rules above, no I/O), :func:`end_of_rib` and
:class:`SessionRelay` (the asyncio side: the peer's TCP transport and one
local stream socket per worker).  Bounds, per session: while a worker's
socket holds more than ``WORKER_HIGH`` unsent octets the peer is not read
(TCP pushes back on the peer); while the peer's socket holds more than
asyncio's high-water mark the workers are not read (their own sessions'
write back-pressure then applies); the messages of workers 1..N-1 held
before worker 0's KEEPALIVE are capped at ``HELD_MAX`` octets (beyond:
the session is ended, a worker misbehaving).

May import: the standard library, fastbgp.wire and fastbgp.session (the
wording of a NOTIFICATION).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Callable, Optional

from fastbgp.session.cease import describe_notification
from fastbgp.wire import messages
from fastbgp.wire.constants import (HEADER_LEN, MAX_EXTENDED_MESSAGE_LEN, MSG_KEEPALIVE, MSG_NOTIFICATION, MSG_OPEN,
                                    MSG_ROUTE_REFRESH, MSG_UPDATE, RR_BORR, RR_EORR, RR_NORMAL)

log = logging.getLogger("fastbgp.daemon.relay")

# The message types, the header's size, the largest message (RFC 8654) and
# the ROUTE-REFRESH subtypes (RFC 7313 §3.2) under the names used here.
OPEN, UPDATE, NOTIFICATION, KEEPALIVE, ROUTE_REFRESH = MSG_OPEN, MSG_UPDATE, MSG_NOTIFICATION, MSG_KEEPALIVE, \
    MSG_ROUTE_REFRESH
HEADER = HEADER_LEN
MAX_MESSAGE = MAX_EXTENDED_MESSAGE_LEN
RR_REQUEST = RR_NORMAL
WORKER_HIGH = 4 << 20  # octets queued towards one worker before the peer is paused
WORKER_LOW = 1 << 20
HELD_MAX = 16 << 20
NOTIFICATION_GRACE = 1.0  # seconds the other workers keep a session one of them ended

# The longest End-of-RIB marker: header, two empty lengths, an
# MP_UNREACH_NLRI attribute with the extended-length flag, AFI and SAFI.
EOR_MAX = HEADER + 4 + 7


def end_of_rib(msg) -> Optional[tuple]:
    """The (AFI, SAFI) whose End-of-RIB marker (RFC 4724 §2) the UPDATE
    ``msg`` (a whole message, header included) is, else None.  Only the
    few UPDATEs short enough to be one are decoded (by the one definition,
    ``messages.Update.eor_family``)."""
    if len(msg) > EOR_MAX:
        return None
    try:
        return messages.decode_update(bytes(msg[HEADER:])).eor_family
    except Exception:  # not a well-formed UPDATE: the worker's peer side decides
        return None


def _refresh(msg) -> tuple:
    """(subtype, (AFI, SAFI)) of a ROUTE-REFRESH message (RFC 2918 §3,
    RFC 7313 §3.2)."""
    if len(msg) < HEADER + 4:
        return RR_REQUEST, None
    b = msg[HEADER:]
    return b[2], ((b[0] << 8) | b[1], b[3])


class Merge:
    """The messages N workers write for one session, merged into what the
    peer gets (module docstring).  ``take(k, msgs)`` returns the messages
    to send, in order; ``ended`` is set once a NOTIFICATION went out (the
    caller then closes the session).  An item of ``msgs`` may also be a run
    of UPDATEs none of which is an End-of-RIB (Framer): every rule here
    treats such UPDATEs alike, so the run goes as one."""

    def __init__(self, workers: int):
        self.n = workers
        self.gate = workers == 1  # worker 0 sent its first KEEPALIVE
        self.held: list = [[] for _ in range(workers)]
        self.held_bytes = 0
        self.eor: dict = {}  # (afi, safi) -> workers that sent theirs
        self.borr: dict = {}
        self.eorr: dict = {}
        self.ended = False
        self.ended_by: Optional[int] = None
        self.notification: Optional[bytes] = None

    def take(self, k: int, msgs) -> list:
        out: list = []
        for m in msgs:
            if self.ended:
                break
            self._one(k, m, out)
        return out

    def _one(self, k, m, out):
        t = m[18]
        if t == NOTIFICATION:
            self.ended, self.ended_by, self.notification = True, k, bytes(m)
            out.append(m)
        elif t == OPEN:
            if k == 0:
                out.append(m)
        elif t == KEEPALIVE:
            if k == 0:
                out.append(m)
                if not self.gate:
                    self._open_gate(out)
        elif not self.gate and k:
            if self.held_bytes + len(m) > HELD_MAX:
                raise OverflowError("worker %d queued more than %d octets before the session opened" % (k, HELD_MAX))
            self.held[k].append(m)
            self.held_bytes += len(m)
        elif t == UPDATE:
            fam = end_of_rib(m)
            if fam is None:
                out.append(m)
            elif self._all(self.eor, fam, k):
                out.append(m)
        elif t == ROUTE_REFRESH:
            self._refresh(k, m, out)
        else:
            out.append(m)

    def _open_gate(self, out):
        self.gate = True
        held, self.held, self.held_bytes = self.held, [[] for _ in range(self.n)], 0
        for k in range(1, self.n):
            for m in held[k]:
                self._one(k, m, out)

    def _all(self, table: dict, fam, k) -> bool:
        """Record worker k's marker for ``fam``; True when it was the last
        one missing (the round then starts over)."""
        got = table.setdefault(fam, set())
        got.add(k)
        if len(got) < self.n:
            return False
        del table[fam]
        return True

    def _refresh(self, k, m, out):
        sub, fam = _refresh(m)
        if sub == RR_BORR:
            # The first BoRR of a round goes out; every prefix a worker
            # re-sends follows its own BoRR, so follows that one.
            got = self.borr.setdefault(fam, set())
            if not got:
                out.append(m)
            got.add(k)
        elif sub == RR_EORR:
            if self._all(self.eorr, fam, k):
                self.borr.pop(fam, None)
                out.append(m)
        elif k == 0:
            out.append(m)


class Framer:
    """Whole BGP messages out of a worker's byte stream (our own code's
    output, checked all the same: a bad length ends the session).

    Consecutive UPDATEs too long to be an End-of-RIB (over ``EOR_MAX``
    octets) come out as one bytes object, a run: Merge passes each of them
    on as it comes (or holds it, before the gate), whole, so a run is
    merged exactly as its messages one by one would be, without a Python
    object and a Merge step per message (a route server's front relays
    hundreds of thousands of them).  Every other message comes out alone."""

    __slots__ = ("buf",)

    def __init__(self):
        self.buf = bytearray()

    def feed(self, data) -> list:
        buf = self.buf
        buf += data
        msgs = []
        pos, n = 0, len(buf)
        run = -1  # where the run of long UPDATEs being read started
        while n - pos >= HEADER:
            ln = (buf[pos + 16] << 8) | buf[pos + 17]
            if ln < HEADER or ln > MAX_MESSAGE:
                raise ValueError("bad message length %d from a worker" % ln)
            if n - pos < ln:
                break
            if ln > EOR_MAX and buf[pos + 18] == UPDATE:
                if run < 0:
                    run = pos
            else:
                if run >= 0:
                    msgs.append(bytes(buf[run:pos]))
                    run = -1
                msgs.append(bytes(buf[pos:pos + ln]))
            pos += ln
        if run >= 0:
            msgs.append(bytes(buf[run:pos]))
        if pos:
            del buf[:pos]
        return msgs


def notification_text(msg: Optional[bytes]) -> str:
    """'NOTIFICATION sent 2/4 (OPEN Message Error / ...)' of a whole
    NOTIFICATION message, as the session layer words it."""
    if not msg or len(msg) < HEADER + 2:
        return "no NOTIFICATION"
    return describe_notification(True, msg[HEADER], msg[HEADER + 1], bytes(msg[HEADER + 2:]))


class PeerSide(asyncio.Protocol):
    """The asyncio protocol of the peer's TCP connection: its octets and
    events to ``relay`` (None while there is none yet: nothing forwarded)."""

    def __init__(self, relay):
        self.relay = relay

    def data_received(self, data):
        if self.relay is not None:
            self.relay.from_peer(data)

    def eof_received(self):
        return False  # close the transport; connection_lost follows

    def pause_writing(self):
        if self.relay is not None:
            self.relay.peer_paused(True)

    def resume_writing(self):
        if self.relay is not None:
            self.relay.peer_paused(False)

    def connection_lost(self, exc):
        if self.relay is not None:
            self.relay.lost(None, exc)


class _WorkerSide(asyncio.Protocol):
    def __init__(self, relay, k):
        self.relay = relay
        self.k = k
        self.framer = Framer()

    def data_received(self, data):
        self.relay.from_worker(self.k, self.framer, data)

    def pause_writing(self):
        self.relay.worker_paused(self.k, True)

    def resume_writing(self):
        self.relay.worker_paused(self.k, False)

    def connection_lost(self, exc):
        self.relay.lost(self.k, exc)


class SessionRelay:
    """One TCP connection relayed to N workers (module docstring).
    ``start(peer_sock, worker_socks)`` wires the sockets; ``on_end(relay)``
    is called once when it is over (every socket then closed)."""

    def __init__(self, loop, peer: str, workers: int, on_end: Callable = None):
        self.loop = loop
        self.peer = peer
        self.merge = Merge(workers)
        self.on_end = on_end
        self.peer_t = None
        self.worker_t: list = [None] * workers
        self.sides: list = []
        self.paused_workers: set = set()
        self.peer_write_paused = False
        self.over = False
        self.closing = False  # the daemon is stopping: its Ceases are expected
        self.wired = False  # every worker's socket is connected
        self.early: list = []  # the peer's octets read before that
        self.done = asyncio.Event()  # set once every socket is closed
        self.octets_in = 0  # from the peer
        self.octets_out = 0  # from the workers

    async def start(self, peer_sock, worker_socks, peer_transport=None) -> None:
        """Wire the peer's side: its socket ``peer_sock`` (a connection we
        made), or ``peer_transport`` (one a listener accepted, reading
        paused, whose protocol calls ``from_peer``/``lost``/``peer_paused``);
        then the workers' local sockets.  What a worker writes goes to the
        peer at once; what the peer sends before every worker is wired
        waits (one TCP read: the peer's reading is paused meanwhile)."""
        loop = self.loop
        try:
            if peer_transport is not None:
                self.peer_t = peer_transport
            else:
                self.peer_t, _ = await loop.connect_accepted_socket(lambda: PeerSide(self), peer_sock)
                peer_sock = None
                self.peer_t.pause_reading()
            for k, s in enumerate(worker_socks):
                side = _WorkerSide(self, k)
                self.worker_t[k], _ = await loop.connect_accepted_socket(lambda side=side: side, s)
                self.sides.append(side)  # its socket is the transport's now
                self.worker_t[k].set_write_buffer_limits(high=WORKER_HIGH, low=WORKER_LOW)
                if self.over:
                    break
        except BaseException:
            for s in worker_socks[len(self.sides):]:
                s.close()
            if peer_sock is not None and self.peer_t is None:
                peer_sock.close()
            self.end("the relay could not be set up")
            raise
        if self.over:
            for s in worker_socks[len(self.sides):]:
                s.close()
            return
        self.wired = True
        early, self.early = self.early, []
        for data in early:
            self.from_peer(data)
        if not self.paused_workers:
            self.peer_t.resume_reading()

    # -- the peer's octets to every worker --------------------------------------------

    def from_peer(self, data):
        if self.over:
            return
        if not self.wired:
            self.early.append(data)
            return
        self.octets_in += len(data)
        for t in self.worker_t:
            if t is not None:
                t.write(data)

    def worker_paused(self, k, paused):
        was = bool(self.paused_workers)
        if paused:
            self.paused_workers.add(k)
        else:
            self.paused_workers.discard(k)
        now = bool(self.paused_workers)
        if now != was and self.peer_t is not None and self.wired and not self.over:
            (self.peer_t.pause_reading if now else self.peer_t.resume_reading)()

    # -- the workers' messages, merged, to the peer -------------------------------------

    def from_worker(self, k, framer, data):
        if self.over:
            return
        self.octets_out += len(data)
        try:
            out = self.merge.take(k, framer.feed(data))
        except (ValueError, OverflowError) as exc:
            log.error("session with %s: %s; closing it", self.peer, exc)
            self.end(str(exc))
            return
        if out and self.peer_t is not None:
            self.peer_t.writelines(out)
        if self.merge.ended:
            # A session lost is a WARNING with its reason; the daemon
            # stopping (``closing``) is no loss.
            log.log(logging.INFO if self.closing else logging.WARNING, "session with %s ended by worker %d: %s",
                    self.peer, self.merge.ended_by, notification_text(self.merge.notification))
            # The other workers reach the same NOTIFICATION on the same
            # octets (or their own hold timer's): a moment to send (to
            # nobody) and log it, each with its reason, before their
            # sockets close under them.
            self.end(None, NOTIFICATION_GRACE)

    def peer_paused(self, paused):
        self.peer_write_paused = paused
        for t in self.worker_t:
            if t is not None and not self.over:
                (t.pause_reading if paused else t.resume_reading)()

    # -- the end -------------------------------------------------------------------------------

    def _close_workers(self):
        for t in self.worker_t:
            if t is not None and not t.is_closing():
                t.close()

    def lost(self, k, exc):
        if self.over:
            return
        if k is not None and k == 0 and not self.merge.ended:
            log.debug("session with %s: worker 0 closed it", self.peer)
        self.end(None)

    def end(self, why, grace: float = 0.0):
        """Close every socket of the session: the peer's after what is
        queued for it was written (a NOTIFICATION among it), the workers'
        at once, or ``grace`` seconds later (each sees its connection end).
        ``why``: for the debug log (None: a side closed, or the merge ended
        it)."""
        if self.over:
            return
        self.over = True
        if why:
            log.debug("session with %s: relay ended: %s", self.peer, why)
        if self.peer_t is not None:
            self.peer_t.close()
        if grace:
            self.loop.call_later(grace, self._close_workers)
        else:
            self._close_workers()
        self.done.set()
        if self.on_end is not None:
            cb, self.on_end = self.on_end, None
            try:
                cb(self)
            except Exception:
                log.exception("relay end handler failed")

