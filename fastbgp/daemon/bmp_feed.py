"""``[[bmp]]``: the daemon's routing state to BMP monitoring stations
(RFC 7854, RFC 9069 Loc-RIB).

Owns: the :class:`fastbgp.bmp.Station` clients of the configured stations
and what they are told, through the session layer's explicit observers
only (nothing is replaced):

* ``Speaker.subscribe``: every neighbour state change.  Reaching
  Established sends Peer Up (RFC 7854 §4.10; both OPENs); leaving it sends
  Peer Down (§4.9) with the NOTIFICATION that ended the session.
* ``Session.observe_updates``: the UPDATE bodies as received, before the
  codec: pre-policy Route Monitoring (§4.6, L=0) carries those bytes
  unchanged, behind the per-peer header.
* ``Neighbor.subscribe_updates``: after an UPDATE went through import
  policy into the RIBs, the post-policy Adj-RIB-In (L=1) and the Loc-RIB
  (RFC 9069) state of every prefix it named, read back from the RIBs.

On every (re)connection a station gets Initiation, Peer Up for every
Established peer, then a dump in slices (yield to the loop, wait for the
station to drain): the post-policy Adj-RIBs-In and the Loc-RIB from the
RIBs, the pre-policy Adj-RIB-In by ROUTE-REFRESH (RFC 2918) to peers that
support it (they resend their table, which flows through the observer
above), else from the pre-policy copy the importer keeps for them.
Prefixes that change while a dump runs are re-sent from the RIBs at its
end (their dump entry may predate the change).

A peer going down takes its routes out of the Loc-RIB without an UPDATE:
while a station wants the Loc-RIB, the feed keeps the packed prefixes each
peer announced (a few octets a prefix, compacted from the RIB as it grows)
and, after the peer's Peer Down, sends the Loc-RIB state of each of them
(withdrawn, or the path that replaced it), in slices.  Our own API
announcements and withdrawals (``Originator.observe``) queue the Loc-RIB
and Adj-RIB-Out state of the prefixes they named like a received UPDATE
does.  Loc-RIB changes with none of these causes -- graceful-restart
sweeps, soft reconfiguration -- reach a station with its next dump
(reconnect or reload).

Calls: the daemon's ``speaker``, ``ribs``, ``attrs``, ``importer.prepolicy``,
``config``.  Called by: the daemon (``start_bmp`` / ``stop_bmp``, reload).
"""

from __future__ import annotations

import asyncio
import collections
import ipaddress
import logging
import socket
import time
from typing import Optional

from fastbgp.bmp import messages as bm
from fastbgp.bmp.station import Station
from fastbgp.rib.export import scope_of, tag_source
from fastbgp.session.fsm import Reason, State
from fastbgp.wire import capabilities as caps_mod
from fastbgp.wire import codec
from fastbgp.wire.constants import AFI_IPV4, IPV4_UNICAST, MSG_UPDATE
from fastbgp.wire.errors import BGPError
from fastbgp.wire.types import DEFAULT_CONTEXT
from fastbgp.daemon.common import SLICE_SECONDS

log = logging.getLogger("fastbgp.bmp")

__all__ = ["BmpFeed", "TOUCHED_MAX", "WORK_MAX", "prefix_key"]

# Prefixes remembered per station while its dump runs (re-sent at its end);
# past this the station is dropped and re-synced from scratch.
TOUCHED_MAX = 500_000
# Prefixes queued for the worker; past it the stations wanting the
# post-policy, Loc-RIB or Adj-RIB-Out views are dropped and re-synced.
WORK_MAX = 4_000_000
DUMP_BATCH = 64  # UPDATEs written between two clock reads
_REMOTE_CLOSE = (Reason.READ_FAILED, Reason.WRITE_FAILED, Reason.HOLD_TIMER_EXPIRED)


def prefix_key(fam, entry):
    """The RIB's key text of a packed prefix (inet_ntop: a tenth of
    ipaddress's cost, on the per-prefix path)."""
    if fam[0] == AFI_IPV4:
        return "%s/%d" % (socket.inet_ntop(socket.AF_INET, entry[1:] + bytes(5 - len(entry))), entry[0])
    return "%s/%d" % (socket.inet_ntop(socket.AF_INET6, entry[1:] + bytes(17 - len(entry))), entry[0])


def count_duplicates(daemon, p, body):
    """RFC 7854 §4.8 type 1: prefixes of an UPDATE (seen before it is
    processed) that the peer already holds with the same attributes after
    import policy -- the known duplicates; a rejected or per-prefix-policy
    attribute set, and ADD-PATH families, are not compared.  Cost: one RIB
    lookup per prefix of a peer that already has routes, bounded per loop
    turn by the connection's per-turn budget."""
    session = p.session
    try:
        parsed = codec.parse_update(bytes(body), session.ctx)
    except BGPError:
        return 0  # the session's own parse reports it
    n = 0
    rx = session.ctx.addpath_rx
    todo = []
    if parsed.nlri:
        todo.append((IPV4_UNICAST, b"", parsed.nlri))
    if parsed.mp_reach is not None:
        r = parsed.mp_reach
        todo.append(((r[0], r[1]), bytes(r[2]), r[3]))
    for fam, nh, packed in todo:
        rib = daemon.ribs.get(fam)
        if rib is None or fam in rx or not rib.has_peer(p.pid) or not rib.peer_path_count(p.pid):
            continue
        res = daemon.importer.import_(p.nb, fam, parsed.attrs, nh)
        if res is None or not isinstance(res[0], (bytes, bytearray, memoryview)):
            continue
        want = (bytes(res[0]), bytes(res[1] or b""))
        table = daemon.attrs
        for _i, addr, plen in codec.unpack_prefixes(packed, fam[0], False):
            for q in rib.paths(prefix_key(fam, bytes((plen,)) + addr[: (plen + 7) >> 3])):
                if q[0] == p.pid:
                    _spid, a, h = tag_source(table, q[2])
                    if (bytes(a), bytes(h or b"")) == want:
                        n += 1
                    break
    return n


def down_reason(nb, session, reason):
    """RFC 7854 §4.9 reason and data of a session's end: the
    NOTIFICATION that ended it (sent: 1, received: 3) as a whole BGP
    message, else 4 for a connection the peer closed, else 2."""
    ln = getattr(session, "loss_notification", None)
    if ln is not None:
        sent, code, subcode, data = ln
    elif reason in (Reason.NOTIFICATION_SENT, Reason.NOTIFICATION_RECEIVED):
        sent = reason is Reason.NOTIFICATION_SENT
        n = nb.last_notification_sent if sent else nb.last_notification_received
        if n is None:
            return bm.DOWN_LOCAL_NO_NOTIFICATION, b"\x00\x00"
        code, subcode, data = n.code, n.subcode, n.data
    elif reason in _REMOTE_CLOSE:
        return bm.DOWN_REMOTE_NO_NOTIFICATION, b""
    else:
        # RFC 7854 §4.9 reason 2: the FSM event; 0 when it has no RFC 4271 number.
        return bm.DOWN_LOCAL_NO_NOTIFICATION, b"\x00\x00"
    pdu = codec.build_notification(code, subcode, bytes(data))
    return (bm.DOWN_LOCAL_NOTIFICATION if sent else bm.DOWN_REMOTE_NOTIFICATION), pdu


class _Peer:
    """What the feed keeps about one Established peer."""

    __slots__ = ("nb", "session", "pid", "pre_hdr", "post_hdr", "out_hdr", "peer_up", "unsubscribe", "rejected", "duplicates",
                 "stats", "seen",
                 "seen_base")

    def __init__(self, nb, session, peer_up, pre_hdr, post_hdr):
        self.nb = nb
        self.session = session
        self.pid = nb.pid
        self.peer_up = peer_up  # the Peer Up message after its per-peer header
        self.pre_hdr = pre_hdr
        self.post_hdr = post_hdr
        # RFC 8671 §4: O flag, post-policy: what we send this peer.
        self.out_hdr = bm.peer_header(nb.address, nb.negotiated.peer_asn, nb.session.remote_id or 0,
                                      post_policy=True, adj_rib_out=True)
        self.unsubscribe = []
        self.rejected = 0  # RFC 7854 §4.8 type 0, for this session
        self.duplicates = 0  # RFC 7854 §4.8 type 1, for this session
        self.stats = False  # some station wants Statistics Reports
        # family -> packed prefixes this peer announced (kept while a station
        # wants the Loc-RIB): what to look up again when the peer goes.
        self.seen: dict = {}
        self.seen_base: dict = {}  # family -> its size after the last compaction


class _Target:
    """One station and its dump bookkeeping."""

    def __init__(self, station):
        self.station = station
        self.cfg = station.cfg
        self.pre = station.cfg.policy in ("pre", "both")
        self.post = station.cfg.policy in ("post", "both")
        self.dumping = False
        self.touched: set = set()  # (kind, pid, fam, packed prefix) changed while dumping
        self.lock = asyncio.Lock()
        self.stats_handle = None
        self.told: set = set()  # peers whose Peer Up went on this connection
        self.told_conn = 0  # ... which is the station's connection number
        self.loc_told = False  # the Loc-RIB instance's Peer Up went on it

    def knows(self, p) -> bool:
        """The station had ``p``'s Peer Up on this connection (RFC 7854 §4.6:
        route monitoring of a peer follows its Peer Up); ``None``: the
        Loc-RIB instance's."""
        if self.told_conn != self.station.connects:
            return False
        return self.loc_told if p is None else p in self.told

    def tell(self, p) -> bool:
        """True (and noted) if ``p``'s Peer Up is still to be sent on the
        current connection: exactly one per peer session and connection."""
        if self.told_conn != self.station.connects:
            self.told_conn = self.station.connects
            self.told = set()
            self.loc_told = False
        if p is None:
            self.loc_told = True
            return True
        if p in self.told:
            return False
        self.told.add(p)
        return True


class BmpFeed:
    """The BMP feed of a running daemon; see the module docstring."""

    def __init__(self, daemon, stations_cfg, *, backoff_min: Optional[float] = None):
        self.daemon = daemon
        self.loop = daemon.loop
        g = daemon.config.global_
        self.router_id = int(ipaddress.IPv4Address(g.router_id))
        self.peers: dict = {}  # neighbour -> _Peer
        self.targets: list = []
        self.drops = 0
        self.tasks: set = set()  # Loc-RIB updates after a peer went
        # Prefixes named by received UPDATEs, waiting for their post-policy /
        # Loc-RIB / Adj-RIB-Out lookups (bounded by WORK_MAX prefixes).
        self.work: collections.deque = collections.deque()
        self.work_prefixes = 0
        self.worker: Optional[asyncio.Task] = None
        self._unsubscribe_state = daemon.speaker.subscribe(self.state_change)
        self._unsubscribe_local = daemon.originator.observe(self.local_changed)
        descr = "fastbgp BGP-4 speaker, AS%d, router id %s" % (g.asn, g.router_id)
        for cfg in stations_cfg:
            kw = {} if backoff_min is None else {"backoff_min": backoff_min}
            st = Station(cfg, cfg.sys_name or "fastbgp %s" % g.router_id, descr, self.station_connected,
                         on_drop=self.station_dropped, **kw)
            self.targets.append(_Target(st))
        for nb in list(daemon.speaker.neighbors.values()):
            if nb.established and nb.session is not None:
                self.peer_up(nb, nb.session)
        for t in self.targets:
            t.station.start()
            if t.cfg.stats_interval:
                t.stats_handle = self.loop.call_later(t.cfg.stats_interval, self.stats_due, t)

    @property
    def keep_seen(self) -> bool:
        return any(t.cfg.loc_rib or t.cfg.adj_rib_out for t in self.targets)

    @property
    def stations(self) -> list:
        return [t.station for t in self.targets]

    async def close(self):
        self._unsubscribe_state()
        self._unsubscribe_local()
        for task in self.tasks:
            task.cancel()
        if self.worker is not None:
            self.worker.cancel()
        self.work.clear()
        for p in list(self.peers.values()):
            for u in p.unsubscribe:
                u()
        self.peers.clear()
        for t in self.targets:
            if t.stats_handle is not None:
                t.stats_handle.cancel()
            await t.station.close()

    # -- peers up and down -----------------------------------------------------------------------

    def state_change(self, nb, old, new, reason):
        try:
            if new is State.ESTABLISHED and nb.session is not None:
                self.peer_up(nb, nb.session)
                p = self.peers.get(nb)
                for t in self.targets:
                    if self.send_peer_up(t, p) and t.cfg.adj_rib_out:
                        # The exporter sends it the table without an UPDATE
                        # received: its Adj-RIB-Out is dumped.
                        self.tasks.add(self.loop.create_task(self.dump_out(t, p)))
            elif old is State.ESTABLISHED:
                self.peer_down(nb, reason)
        except Exception:
            # An observer must not break the session's state change.
            log.exception("BMP: state change of %s not reported", nb.address)

    def peer_up(self, nb, session):
        old = self.peers.pop(nb, None)
        if old is not None:
            for u in old.unsubscribe:
                u()
        conn = session.conn
        peer_as = session.negotiated.peer_asn
        rid = session.remote_id or 0
        now = time.time()
        as2 = not session.ctx.as4
        pre = bm.peer_header(nb.address, peer_as, rid, as2=as2, timestamp=now)
        post = bm.peer_header(nb.address, peer_as, rid, post_policy=True, timestamp=now)
        # The OPENs as exchanged: ours is rebuilt by the function that built
        # it, theirs from every field and capability the codec kept.
        sent = codec.build_open(nb.local_as, nb.config.hold_time, nb.router_id,
                                caps_mod.encode_all(session.local_capabilities))
        ro = session.remote_open
        received = codec.build_open(ro.asn, ro.hold_time, ro.bgp_id, ro.capabilities) if ro is not None else sent
        local = conn.local_address if conn is not None else None
        body = bm.peer_up(b"", local, conn.local_port if conn else 0, conn.peer_port if conn else 0, sent,
                          received)[6:]
        p = self.peers[nb] = _Peer(nb, session, body, pre, post)
        p.stats = any(t.cfg.stats_interval for t in self.targets)
        p.unsubscribe.append(session.observe_updates(self.raw_observer(p)))
        p.unsubscribe.append(nb.subscribe_updates(self.update_processed))

    def send_peer_up(self, t, p) -> bool:
        """Peer Up of ``p`` to ``t`` unless already sent on this connection;
        True when sent."""
        if p is None or not t.station.up or not t.tell(p):
            return False
        hdr = bm.stamp(bytearray(p.pre_hdr), time.time())
        # RFC 7854 §4.10: common header + per-peer header + the rest.
        t.station.send(bm.message(bm.PEER_UP, hdr, p.peer_up))
        return True

    def peer_down(self, nb, reason):
        p = self.peers.pop(nb, None)
        if p is None:
            return
        for u in p.unsubscribe:
            u()
        why, data = down_reason(nb, p.session, reason)
        msg = bm.peer_down(bm.stamp(p.pre_hdr, time.time()), why, data)
        for t in self.targets:
            if t.station.up and t.knows(p):
                t.station.send(msg)
        if p.seen and any((t.cfg.loc_rib or t.cfg.adj_rib_out) and t.station.up for t in self.targets):
            # Its routes left the RIBs with the session: the Loc-RIB state of
            # every prefix it announced, now (RFC 9069 §5.2).
            self.tasks.add(self.loop.create_task(self.peer_gone(p)))
            for t in list(self.tasks):
                if t.done():
                    self.tasks.discard(t)

    # -- live route monitoring ---------------------------------------------------------------

    def raw_observer(self, p):
        targets = self.targets
        hdr = p.pre_hdr
        frame = codec.frame

        daemon = self.daemon

        def on_update(body):
            # RFC 7854 §4.6: the UPDATE exactly as received, behind the header.
            msg = None
            try:
                if p.stats:
                    p.duplicates += count_duplicates(daemon, p, body)
                for t in targets:
                    if t.pre and t.station.up and t.knows(p):
                        if msg is None:
                            msg = bm.route_monitoring(bm.stamp(hdr, time.time()), frame(MSG_UPDATE, bytes(body)))
                        t.station.send(msg)
            except Exception:
                # An observer must not raise into the session (Session.observe_updates).
                log.exception("BMP: pre-policy monitoring of an UPDATE from %s failed", p.nb.address)

        return on_update

    def update_processed(self, nb, parsed):
        """After an UPDATE went into the RIBs: what the post-policy,
        Loc-RIB and Adj-RIB-Out views must say about the prefixes it named
        is read back from the RIBs later, by the feed's worker in slices
        (the session's own turn only unpacks and queues)."""
        p = self.peers.get(nb)
        if p is None:
            return
        post = any(t.post and t.station.up for t in self.targets)
        loc = any(t.cfg.loc_rib and t.station.up for t in self.targets)
        out = any(t.cfg.adj_rib_out and t.station.up for t in self.targets)
        stats = any(t.cfg.stats_interval for t in self.targets)
        keep = self.keep_seen
        if not (post or loc or out or stats or keep):
            return
        try:
            for fam, entries, announced, attrs, nh in self.named_prefixes(p, parsed):
                if announced:
                    if stats:
                        p.rejected += self.count_rejected(p, fam, entries, attrs, nh)
                    if keep:
                        self.remember(p, fam, entries)
                if post or loc or out:
                    self.queue_work(p, fam, entries, post, loc, out)
        except Exception:
            log.exception("BMP: post-policy monitoring of an UPDATE from %s failed", nb.address)

    def local_changed(self, fam, entries):
        """Our routes changed through the API: the Loc-RIB (RFC 9069) and
        Adj-RIB-Out (RFC 8671) state of ``entries``, queued for the worker
        like a received UPDATE's (``p`` None: no post-policy view)."""
        try:
            loc = any(t.cfg.loc_rib and t.station.up for t in self.targets)
            out = any(t.cfg.adj_rib_out and t.station.up for t in self.targets)
            if fam in self.daemon.ribs and (loc or out):
                self.queue_work(None, fam, entries, False, loc, out)
        except Exception:
            log.exception("BMP: monitoring of our own routes failed")

    def queue_work(self, p, fam, entries, post, loc, out):
        self.work.append((p, fam, entries, post, loc, out))
        self.work_prefixes += len(entries)
        if self.work_prefixes > WORK_MAX:
            # The stations cannot be told in time: re-synced from scratch.
            self.work.clear()
            self.work_prefixes = 0
            for t in self.targets:
                if t.post or t.cfg.loc_rib or t.cfg.adj_rib_out:
                    t.station.drop("more than %d prefixes waiting to be reported" % WORK_MAX)
        if self.worker is None or self.worker.done():
            self.worker = self.loop.create_task(self.work_loop())

    async def work_loop(self):
        loop = self.loop
        t0 = loop.time()
        while self.work:
            p, fam, entries, post, loc, out = self.work.popleft()
            self.work_prefixes -= len(entries)
            try:
                if post and self.peers.get(p.nb) is p:
                    self.send_current("post", p, fam, entries)
                if loc:
                    self.send_current("loc", p, fam, entries)
                if out:
                    for q in list(self.peers.values()):
                        if fam in q.nb.groups:
                            self.send_current("out", q, fam, entries)
            except Exception:
                log.exception("BMP: monitoring of an UPDATE from %s failed", "us" if p is None else p.nb.address)
            if loop.time() - t0 > SLICE_SECONDS:
                await asyncio.sleep(0)
                t0 = loop.time()

    def named_prefixes(self, p, parsed):
        """[(family, [packed prefix...], announced)] of one ParsedUpdate."""
        rx = p.session.ctx.addpath_rx
        out = []

        def add(fam, packed, announced, nh=b""):
            if packed and fam in self.daemon.ribs:
                ents = [bytes((plen,)) + addr[: (plen + 7) >> 3]
                        for _i, addr, plen in codec.unpack_prefixes(packed, fam[0], fam in rx)]
                out.append((fam, ents, announced, parsed.attrs, nh))

        add(IPV4_UNICAST, parsed.withdrawn, False)
        add(IPV4_UNICAST, parsed.nlri, True)
        if parsed.mp_unreach is not None:
            u = parsed.mp_unreach
            add((u[0], u[1]), u[2], False)
        if parsed.mp_reach is not None:
            r = parsed.mp_reach
            add((r[0], r[1]), r[3], True, bytes(r[2]))
        return out

    def remember(self, p, fam, entries):
        buf = p.seen.get(fam)
        if buf is None:
            buf = p.seen[fam] = bytearray()
        buf += b"".join(entries)
        if len(buf) > 2 * p.seen_base.get(fam, 0) + 65536:
            # Compaction: what the peer holds now (announcements repeat).
            rib = self.daemon.ribs[fam]
            buf = p.seen[fam] = bytearray(b"".join(packed for _aid, packed in rib.dump_peer(p.pid, False))
                                          if rib.has_peer(p.pid) else b"")
            p.seen_base[fam] = len(buf)

    async def peer_gone(self, p):
        loop = self.loop
        for fam, buf in p.seen.items():
            afi = fam[0]
            entries = sorted({bytes((plen,)) + addr[: (plen + 7) >> 3]
                              for _i, addr, plen in codec.unpack_prefixes(bytes(buf), afi, False)})
            for i in range(0, len(entries), 1000):
                t0 = loop.time()
                self.send_current("loc", None, fam, entries[i:i + 1000])
                for q in list(self.peers.values()):
                    if fam in q.nb.groups:
                        self.send_current("out", q, fam, entries[i:i + 1000])
                if loop.time() - t0 > SLICE_SECONDS / 2:
                    await asyncio.sleep(0)
        p.seen = {}

    def count_rejected(self, p, fam, entries, attrs, nh):
        """RFC 7854 §4.8 type 0: prefixes of an UPDATE that import policy
        rejected.  The importer's verdict is cached per attribute set; only
        a chain with prefix conditions needs the RIB, per prefix."""
        res = self.daemon.importer.import_(p.nb, fam, attrs, nh)
        if res is None:
            return len(entries)
        if isinstance(res[0], (bytes, bytearray, memoryview)):
            return 0
        rib = self.daemon.ribs[fam]
        n = 0
        for e in entries:
            if not any(q[0] == p.pid for q in rib.paths(prefix_key(fam, e))):
                n += 1
        return n

    def current(self, kind, pid, fam, entries):
        """({attr id: packed prefixes}, packed withdrawn) of ``entries`` as
        the RIBs hold them now: the peer's post-policy path ("post"), the
        best path ("loc") or its pre-policy copy ("pre"); for "out" keyed by
        (attributes, next hop) as exported to peer ``pid``."""
        if kind == "out":
            return self.current_out(pid, fam, entries)
        view = None
        if kind == "pre":
            view = self.daemon.importer.prepolicy  # fastbgp.daemon.prepolicy
            rib = None
        else:
            rib = self.daemon.ribs[fam]
        groups: dict = {}
        wd = bytearray()
        for e in entries:
            t = prefix_key(fam, e)
            aid = None
            if kind == "loc":
                b = rib.best(t)
                if b is not None:
                    aid = b[1]
            elif view is not None:
                aid = view.path(pid, fam, t)
            else:
                for q in rib.paths(t):
                    if q[0] == pid:
                        aid = q[2]
                        break
            if aid is None:
                wd += e
            else:
                g = groups.get(aid)
                if g is None:
                    g = groups[aid] = bytearray()
                g += e
        return groups, bytes(wd)

    def current_out(self, pid, fam, entries):
        """RFC 8671 Adj-RIB-Out (post-policy) of ``entries`` for peer ``pid``:
        what its update group exports for each prefix's best path now."""
        p = next((x for x in self.peers.values() if x.pid == pid), None)
        g = p.nb.groups.get(fam) if p is not None else None
        groups: dict = {}
        wd = bytearray()
        if g is None:
            return groups, b""
        d = self.daemon
        rib = d.ribs[fam]
        afi = fam[0]
        width = 4 if afi == AFI_IPV4 else 16
        for e in entries:
            o = None
            b = rib.best(prefix_key(fam, e))
            if b is not None and b[0] != pid:  # RFC 4271 §9.2: nothing back to its source (split horizon)
                spid, attrs, nh = tag_source(d.attrs, b[1])
                src = d.sources.get(spid)
                o = g.export(src, attrs, nh) if src is not None else None
                scope = scope_of(src, fam, e) if o is not None else None
                if scope is not None and p.nb.address not in scope:
                    o = None  # our route offered to other neighbours only
                if o is not None and len(o) == 3:
                    o = g.export_prefix(src, o[0], o[1], (afi, e[1:] + bytes(width + 1 - len(e)), e[0]))
            if o is None:
                wd += e
            else:
                key = (o[0], o[1])
                buf = groups.get(key)
                if buf is None:
                    buf = groups[key] = bytearray()
                buf += e
        return groups, bytes(wd)

    def updates(self, fam, groups, withdrawn):
        """The UPDATE messages (whole, marker included) of an Adj-RIB state."""
        afi, safi = fam
        out = []
        if withdrawn:
            out += codec.pack_withdraws(withdrawn, DEFAULT_CONTEXT, afi, safi)
        table = self.daemon.attrs
        for key, packed in groups.items():
            if isinstance(key, tuple):
                attrs, nh = key  # exported (Adj-RIB-Out)
            else:
                _pid, attrs, nh = tag_source(table, key)
            out += codec.pack_updates(attrs, bytes(packed), DEFAULT_CONTEXT, afi, safi, next_hop=nh or None)
        return out

    def header(self, kind, p):
        now = time.time()
        if kind == "loc":
            return bm.loc_rib_header(self.daemon.asn, self.router_id, timestamp=now)
        return bm.stamp(p.post_hdr if kind == "post" else p.out_hdr if kind == "out" else p.pre_hdr, now)

    def send_current(self, kind, p, fam, entries):
        msgs = None
        for t in self.targets:
            want = t.post if kind == "post" else t.cfg.adj_rib_out if kind == "out" else t.cfg.loc_rib
            if not t.station.up or not want or \
                    not t.knows(p if kind != "loc" else None):
                continue
            pid = p.pid if kind != "loc" else -1
            if t.dumping:
                t.touched.update((kind, pid, fam, e) for e in entries)
                if len(t.touched) > TOUCHED_MAX:
                    t.station.drop("more than %d prefixes changed during its dump" % TOUCHED_MAX)
            if msgs is None:
                hdr = self.header(kind, p)
                groups, wd = self.current(kind, pid, fam, entries)
                msgs = [bm.route_monitoring(hdr, u) for u in self.updates(fam, groups, wd)]
            for m in msgs:
                t.station.send(m)

    # -- dumps ---------------------------------------------------------------------------------

    async def station_connected(self, station):
        t = next(x for x in self.targets if x.station is station)
        async with t.lock:
            t.dumping = True
            t.touched = set()
            try:
                # Peers that came up since the connection was made told the
                # station themselves, and their table is on its way anyway.
                fresh = [p for p in list(self.peers.values()) if self.send_peer_up(t, p)]
                if t.cfg.loc_rib:
                    self.send_loc_rib_up(t)
                await self.dump(t, fresh)
            finally:
                t.dumping = False
                t.touched = set()

    def send_loc_rib_up(self, t):
        """RFC 9069 §5.3: the Loc-RIB instance's Peer Up; its OPENs are
        fabricated (ours, both sides) and it names the table."""
        caps = [(65, self.daemon.asn.to_bytes(4, "big"))] + [
            (1, fam[0].to_bytes(2, "big") + bytes((0, fam[1]))) for fam in sorted(self.daemon.ribs)]
        op = codec.build_open(self.daemon.asn, 0, self.router_id, caps)
        t.tell(None)
        t.station.send(bm.peer_up(self.header("loc", None), None, 0, 0, op, op, table_name="global"))

    async def dump(self, t, peers):
        st = t.station
        d = self.daemon
        for p in peers:
            if self.peers.get(p.nb) is not p:
                continue
            if t.pre:
                await self.dump_pre(t, p)
            if t.post:
                for fam, rib in d.ribs.items():
                    if rib.has_peer(p.pid):
                        await self.write_groups(t, "post", p, fam, list(rib.dump_peer(p.pid, False)))
            if t.cfg.adj_rib_out:
                await self.write_out(t, p)
        if t.cfg.loc_rib:
            for fam, rib in d.ribs.items():
                await self.write_groups(t, "loc", None, fam, list(rib.dump_best()))
        # What changed meanwhile, as it is now (RFC 9069 §5.2: then End-of-RIB).
        await self.fixups(t)
        if t.cfg.loc_rib:
            hdr = self.header("loc", None)
            for fam in d.ribs:
                st.send(bm.route_monitoring(hdr, codec.build_eor(*fam)))

    async def fixups(self, t):
        """Re-send what changed while a dump ran, as the RIBs hold it now."""
        touched, t.touched = t.touched, set()
        t.dumping = False
        by: dict = {}
        for kind, pid, fam, e in touched:
            by.setdefault((kind, pid, fam), []).append(e)
        for (kind, pid, fam), entries in by.items():
            p = next((x for x in self.peers.values() if x.pid == pid), None)
            if kind != "loc" and p is None:
                continue
            groups, wd = self.current(kind, pid, fam, entries)
            hdr = self.header(kind, p)
            for u in self.updates(fam, groups, wd):
                t.station.send(bm.route_monitoring(hdr, u))
            await asyncio.sleep(0)

    async def dump_out(self, t, p):
        # The peer joins its update groups from the export queue, soon after
        # Established: its Adj-RIB-Out exists from then on.
        fams = {f for f in p.session.negotiated.families if f in self.daemon.ribs}
        for _ in range(200):
            if fams <= set(p.nb.groups) or self.peers.get(p.nb) is not p:
                break
            await asyncio.sleep(0.05)
        async with t.lock:
            t.dumping = True
            t.touched = set()
            try:
                await self.write_out(t, p)
                await self.fixups(t)
            finally:
                t.dumping = False
                t.touched = set()

    async def write_out(self, t, p):
        """RFC 8671 Adj-RIB-Out of ``p``: every best path its update groups
        export, in slices."""
        loop = self.loop
        for fam, rib in self.daemon.ribs.items():
            if fam not in p.nb.groups:
                continue
            hdr = self.header("out", p)
            for _aid, packed in list(rib.dump_best(exclude_peer=p.pid)):
                if not t.station.up or self.peers.get(p.nb) is not p:
                    return
                t0 = loop.time()
                entries = [bytes((plen,)) + addr[: (plen + 7) >> 3]
                           for _i, addr, plen in codec.unpack_prefixes(packed, fam[0], False)]
                groups, _wd = self.current_out(p.pid, fam, entries)
                for u in self.updates(fam, groups, b""):
                    t.station.send(bm.route_monitoring(hdr, u))
                    if t.station.paused:
                        await t.station.drain()
                if loop.time() - t0 > SLICE_SECONDS:
                    await asyncio.sleep(0)

    async def dump_pre(self, t, p):
        neg = p.session.negotiated
        if neg is not None and neg.route_refresh:
            # RFC 2918: the peer resends its Adj-RIB-Out; the raw observer
            # carries it to every pre-policy station.
            for fam in sorted(neg.families):
                if fam in self.daemon.ribs:
                    p.nb.request_refresh(fam)
            return
        view = self.daemon.importer.prepolicy  # fastbgp.daemon.prepolicy
        for fam in list(self.daemon.ribs):
            if view.has_peer(p.pid, fam):
                await self.write_groups(t, "pre", p, fam, view.dump_peer(p.pid, fam, False))

    async def write_groups(self, t, kind, p, fam, groups):
        """Route Monitoring of (attr id, packed prefixes) groups, in slices:
        yield to the loop every SLICE_SECONDS, wait while the station's
        buffer is over its high mark."""
        st = t.station
        loop = self.loop
        t0 = loop.time()
        n = 0
        hdr = self.header(kind, p)
        for aid, packed in groups:
            if not st.up:
                return
            try:
                msgs = self.updates(fam, {aid: packed}, b"")
            except KeyError:
                continue  # the attribute set went since the snapshot; its prefixes are in touched
            for u in msgs:
                st.send(bm.route_monitoring(hdr, u))
                n += 1
                if st.paused:
                    # Past the high mark (a quarter of the bound): wait for the
                    # station rather than overflow it.
                    await st.drain()
                    t0 = loop.time()
                elif n % DUMP_BATCH == 0:
                    if loop.time() - t0 > SLICE_SECONDS:
                        await asyncio.sleep(0)
                        t0 = loop.time()

    # -- statistics and drops ------------------------------------------------------------------

    def stats_due(self, t):
        t.stats_handle = self.loop.call_later(t.cfg.stats_interval, self.stats_due, t)
        if not t.station.up:
            return
        try:
            self.send_stats(t)
        except Exception:
            log.exception("BMP: statistics report to %s failed", t.station.name)

    def send_stats(self, t):
        """RFC 7854 §4.8: per peer, prefixes rejected by import policy and
        the routes in its (post-policy) Adj-RIB-In; RFC 9069 §5.1: the
        Loc-RIB size in the Loc-RIB instance's report."""
        ribs = self.daemon.ribs
        now = time.time()
        for p in self.peers.values():
            if not t.knows(p):
                continue
            adj = sum(r.peer_path_count(p.pid) for r in ribs.values() if r.has_peer(p.pid))
            t.station.send(bm.statistics_report(bm.stamp(p.pre_hdr, now),
                                                [(bm.STAT_REJECTED, p.rejected), (bm.STAT_DUPLICATE_PREFIX, p.duplicates),
                                                 (bm.STAT_ADJ_RIB_IN, adj)]))
        if t.cfg.loc_rib and t.knows(None):
            t.station.send(bm.statistics_report(self.header("loc", None),
                                                [(bm.STAT_LOC_RIB, sum(len(r) for r in ribs.values()))]))

    def station_dropped(self, station):
        self.drops += 1
        try:
            from fastbgp.control.metrics import count_bmp_drop
        except ImportError:  # pragma: no cover - prometheus_client missing
            return
        count_bmp_drop(station.name)
