"""``global.mrt``: MRT dumps of received UPDATEs and state changes, and
TABLE_DUMP_V2 snapshots of the RIBs (RFC 6396, RFC 8050 for ADD-PATH).

Owns: the :class:`MrtDumper` of a running daemon (its files, timers and
session subscriptions) and the RIB snapshot writer
(:func:`write_rib_snapshot`).  The per-UPDATE cost is only paid while
dumping: the dumper subscribes to a session's raw UPDATEs through
``Session.observe_updates`` -- no session method is replaced.

Calls: :mod:`fastbgp.mrt` (records, rotating writer), the daemon's
``config``, ``ribs``, ``attrs``, ``sources``, ``speaker``, ``loop`` and
``started_at``, and ``Daemon.write_mrt_rib`` for the scheduled snapshots;
the RIBs' per-path receive times are the snapshots' originated times.
Called by: the daemon (start / stop / reload create and close the dumper;
the peer registry hooks each session that comes up; every state change is
passed to ``state_change``).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import struct
import time
import weakref
from typing import Optional

from fastbgp.mrt import reader as mrt
from fastbgp.mrt import writer
from fastbgp.rib.export import tag_source
from fastbgp.wire.as4 import attr_spans
from fastbgp.wire.constants import AFI_IPV4, ATTR_MP_REACH_NLRI, ATTR_MP_UNREACH_NLRI, IPV4_UNICAST
from fastbgp.daemon.common import LOCAL_PID, SLICE_SECONDS, cancel_and_wait

log = logging.getLogger("fastbgp.daemon")

# RFC 6396 §2 header with the §3 microsecond field of the _ET types.
_MRT_ET_HDR = struct.Struct(">IHHII")
_BGP_LEN_TYPE = struct.Struct(">HB")
_MRT_FLUSH_S = 1.0


def start_dumps(daemon, mcfg) -> Optional[MrtDumper]:
    """The dumper of ``global.mrt`` (None when nothing is dumped), with the
    sessions already up hooked (a reload that turned dumping on)."""
    if mcfg.updates is None and mcfg.rib is None:
        return None
    try:
        dumper = MrtDumper(daemon, mcfg)
    except OSError as exc:
        # A dump directory we cannot write to must not keep the router
        # down: the routing goes on, the log says why there is no dump.
        log.error("MRT dumps disabled: %s", exc)
        return None
    for nb in list(daemon.speaker.neighbors.values()):
        if nb.established and nb.session is not None and nb.session.conn is not None:
            dumper.hook(nb, nb.session)
    return dumper


def update_family(body):
    """(afi, safi) an UPDATE body is about: IPv4 unicast for withdrawn
    routes or NLRI, else its MP_REACH/MP_UNREACH_NLRI; only needed to pick
    the MRT subtype of ADD-PATH sessions (per family, RFC 7911)."""
    try:
        wlen = (body[0] << 8) | body[1]
        if wlen:
            return IPV4_UNICAST
        alen = (body[2] << 8) | body[3]
        # The body is not validated yet (observers see it before the codec).
        for _flags, t, vs, _ve, _start in attr_spans(body, 4, 4 + alen):
            if t in (ATTR_MP_REACH_NLRI, ATTR_MP_UNREACH_NLRI):
                return ((body[vs] << 8) | body[vs + 1], body[vs + 2])
    except IndexError:
        pass
    return IPV4_UNICAST


class MrtDumper:
    """``global.mrt``: what BIRD's and GoBGP's MRT dumpers write.

    * updates: every UPDATE received on an Established session, as the
      BGP4MP_ET MESSAGE_AS4 record (RFC 6396 §4.4.3; §3 for the microsecond
      field; MESSAGE for 2-octet-AS sessions, the RFC 8050 _ADDPATH subtypes
      for ADD-PATH families) around the message exactly as received, and
      every FSM state change as STATE_CHANGE_AS4 (§4.4.4), into a file that
      a timer rotates on interval boundaries (strftime template).
    * rib: every interval, a TABLE_DUMP_V2 snapshot of the RIBs
      (:meth:`Daemon.write_mrt_rib`).

    The per-UPDATE cost is only paid while dumping: ``hook`` subscribes a
    closure to the session's raw UPDATEs (``Session.observe_updates``) that
    writes the record (one buffered write of a precomputed header + the
    body); without a dump no session is observed."""

    def __init__(self, daemon, mcfg):
        self.daemon = daemon
        self.loop = daemon.loop
        self.cfg = mcfg
        self.updates = None
        self.w = None  # current MrtWriter of the updates file
        self.failed = None
        self._handles = {}
        self._flushed = 0
        self._local_ip = {}  # neighbour -> our address on its last session
        # session -> unsubscribe call; weak so a closed session's entry goes.
        self._unsubscribe = weakref.WeakKeyDictionary()
        self.rib_task = None
        self.rib_written = []  # snapshot files written, in order
        if mcfg.updates is not None:
            self.updates = writer.RotatingMrtWriter(mcfg.updates.path, mcfg.updates.interval)
            self.w = self.updates.current()
            self._at_boundary("rotate", mcfg.updates.interval, self._rotate)
            self._handles["flush"] = self.loop.call_later(_MRT_FLUSH_S, self._flush)
        if mcfg.rib is not None:
            self._at_boundary("rib", mcfg.rib.interval, self._rib_due)

    def _at_boundary(self, name, interval, fn):
        # Wall-clock aligned (files start on round times, like the names
        # say); a little late rather than early, so the clock has moved on.
        now = time.time()
        nxt = (now // interval + 1) * interval
        self._handles[name] = self.loop.call_later(nxt - now + 0.005, fn, int(nxt))

    # -- updates

    def _rotate(self, start):
        self._at_boundary("rotate", self.updates.interval, self._rotate)
        if self.w is None:
            return
        try:
            self.w = self.updates.current()
        except OSError as exc:
            self._fail(exc)

    def _flush(self):
        # Buffered writes keep the per-UPDATE cost at one write call; a
        # flush a second makes the file follow the router closely anyway.
        self._handles["flush"] = self.loop.call_later(_MRT_FLUSH_S, self._flush)
        w = self.w
        if w is not None and w.records != self._flushed:
            try:
                w.flush()
                self._flushed = w.records
            except OSError as exc:
                self._fail(exc)

    def _fail(self, exc):
        if self.failed is None:
            log.error("MRT updates dump stopped: %s", exc)
        self.failed = exc
        self.w = None
        self._unhook_all()
        if self.updates is not None:
            try:
                self.updates.close()
            except OSError:
                pass

    def _addrs(self, nb, conn):
        peer_ip = nb.address
        local_ip = (conn.local_address if conn is not None else None) or self._local_ip.get(peer_ip) \
            or nb.cfg.local_address or ("::" if ":" in peer_ip else "0.0.0.0")
        if (":" in peer_ip) != (":" in local_ip):
            local_ip = "::" if ":" in peer_ip else "0.0.0.0"
        return peer_ip, local_ip

    def hook(self, nb, session):
        if self.w is None:
            return
        conn = session.conn
        peer_ip, local_ip = self._addrs(nb, conn)
        self._local_ip[peer_ip] = local_ip
        neg = session.negotiated
        as4 = session.ctx.as4
        # RFC 6396 §4.4.2/§4.4.3: the subtype says how wide the AS numbers
        # are, in the header and in the message's AS_PATH alike.
        head = writer.bgp4mp_head(as4, neg.peer_asn, nb.local_as, peer_ip, local_ip) + b"\xff" * 16
        sub = mrt.BGP4MP_MESSAGE_AS4 if as4 else mrt.BGP4MP_MESSAGE
        sub_ap = mrt.BGP4MP_MESSAGE_AS4_ADDPATH if as4 else mrt.BGP4MP_MESSAGE_ADDPATH
        rx = frozenset(session.ctx.addpath_rx)
        dumper = self
        pack = _MRT_ET_HDR.pack
        lt = _BGP_LEN_TYPE.pack
        clock = time.time
        hlen = 4 + len(head) + 3  # after the MRT header: microseconds, BGP4MP part + marker, length + type

        def on_update(body):
            w = dumper.w
            if w is not None:
                now = clock()
                sec = int(now)
                n = len(body)
                s = sub if not rx or update_family(body) not in rx else sub_ap
                try:
                    # The message as received: the framer handed over the
                    # body, so its 19-octet header (marker, length, type 2) is
                    # rebuilt in front of it.
                    w.write_raw(b"".join((pack(sec, mrt.BGP4MP_ET, s, hlen + n, int((now - sec) * 1e6)), head,
                                          lt(n + 19, 2), body)))
                except (OSError, ValueError) as exc:
                    dumper._fail(exc)

        self._unsubscribe[session] = session.observe_updates(on_update)

    def _unhook_all(self):
        sp = self.daemon.speaker
        if sp is None:
            return
        for unsubscribe in self._unsubscribe.values():
            unsubscribe()
        self._unsubscribe.clear()

    def state_change(self, nb, old, new):
        w = self.w
        if w is None:
            return
        peer_ip, local_ip = self._addrs(nb, nb.connection)
        neg = nb.negotiated
        peer_as = neg.peer_asn if neg is not None else (nb.config.peer_as or 0)
        try:
            # RFC 6396 §4.4.1: states numbered as RFC 4271 §8.2.2 (= fsm.State).
            w.write_state_change(int(old), int(new), peer_ip, peer_as, local_ip, nb.local_as)
        except (OSError, ValueError, struct.error) as exc:
            self._fail(exc)

    # -- RIB snapshots

    def _rib_due(self, start):
        self._at_boundary("rib", self.cfg.rib.interval, self._rib_due)
        if self.rib_task is not None and not self.rib_task.done():
            log.warning("MRT RIB dump of %s skipped: the previous one is still being written",
                        time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(start)))
            return
        path = time.strftime(self.cfg.rib.path, time.gmtime(start))
        self.rib_task = self.loop.create_task(self._rib(path, start))

    async def _rib(self, path, start):
        t0 = time.perf_counter()
        try:
            n = await self.daemon.write_mrt_rib(path, start)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.error("MRT RIB dump to %s failed: %s", path, exc)
            return
        self.rib_written.append(path)
        log.info("MRT RIB dump: %d prefixes to %s in %.2f s", n, path, time.perf_counter() - t0)

    async def close(self):
        for h in self._handles.values():
            h.cancel()
        self._handles.clear()
        self._unhook_all()
        t = self.rib_task
        if t is not None and not t.done():
            await cancel_and_wait(t)
        self.w = None
        if self.updates is not None:
            try:
                self.updates.close()
            except OSError as exc:
                log.error("closing the MRT updates dump: %s", exc)


# ---------------------------------------------------------------- RIB snapshots


def _peer_index(daemon):
    """RFC 6396 §4.3.1: the peer index; entry 0 is this router (its own
    routes), then every peer with paths in the RIB.  Returns (peers, pid ->
    index, pid -> Source as indexed)."""
    g = daemon.config.global_
    peers = [mrt.Peer(g.router_id, "0.0.0.0", g.asn)]
    index = {LOCAL_PID: 0}
    srcs = {LOCAL_PID: daemon.sources.get(LOCAL_PID)}
    for pid, src in sorted(daemon.sources.items()):
        if pid == LOCAL_PID or not any(r.has_peer(pid) and r.peer_path_count(pid) for r in daemon.ribs.values()):
            continue
        index[pid] = len(peers)
        srcs[pid] = src
        peers.append(mrt.Peer(str(ipaddress.IPv4Address(src.router_id or 0)), src.address or "0.0.0.0",
                              src.peer_as or 0))
    return peers, index, srcs


async def write_rib_snapshot(daemon, path, timestamp=None) -> int:
    """Write the RIBs as one TABLE_DUMP_V2 snapshot (RFC 6396 §4.3) to
    ``path`` (.gz/.bz2 compress): PEER_INDEX_TABLE, then one
    RIB_IPV4_UNICAST / RIB_IPV6_UNICAST record per prefix with every
    path the RIB holds for it (the Adj-RIBs-In after import policy, and
    our own routes as peer 0).  Built in slices that yield to the loop,
    into ``path.tmp`` renamed at the end, so a reader never sees half a
    snapshot.  Records come in the order of Rib.dump_best's groups
    (RFC 6396 asks for none); sequence numbers count up from 0.
    Returns the number of RIB records."""
    ts = int(time.time() if timestamp is None else timestamp)
    peers, index, srcs = _peer_index(daemon)
    tmp = "%s.tmp" % path
    d = os.path.dirname(path)
    if d:
        os.makedirs(d, exist_ok=True)
    sp = os.fsdecode(path)
    comp = "gz" if sp.endswith(".gz") else "bz2" if sp.endswith(".bz2") else ""
    w = writer.MrtWriter(tmp, compress=comp)
    done = False
    seq = 0
    try:
        w.write_raw(writer.encode_peer_index(ts, daemon.config.global_.router_id, peers))
        for fam, rib in daemon.ribs.items():
            seq = await _write_family(daemon, w, ts, fam, rib, index, srcs, seq)
        w.close()
        os.replace(tmp, path)
        done = True
    finally:
        if not done:
            w.close()
            try:
                os.unlink(tmp)
            except OSError:
                pass
    return seq


async def _write_family(daemon, w, ts, fam, rib, index, srcs, seq):
    """The RIB records of one family, numbered from ``seq``; returns the
    next sequence number."""
    loop = daemon.loop
    afi = fam[0]
    width = 4 if afi == AFI_IPV4 else 16
    pad = [bytes(width - k) for k in range(width + 1)]
    # Every prefix, as packed groups (one C pass, no object per
    # prefix): the walk below is what gets sliced.  The RIB moves
    # on between slices; what it holds when a prefix's turn comes
    # is what is written.
    groups = list(rib.dump_best())
    t0 = loop.time()
    memo = {}  # attr id -> (peer index, RIB attrs); valid for one slice
    k = 0
    for _best, packed in groups:
        i, end = 0, len(packed)
        while i < end:
            plen = packed[i]
            nb = (plen + 7) >> 3
            raw = packed[i : i + 1 + nb]
            i += 1 + nb
            k += 1
            if not k & 255 and loop.time() - t0 > SLICE_SECONDS:
                await asyncio.sleep(0)
                t0 = loop.time()
                memo = {}  # attribute ids may be reused once the RIB moved on
            paths = rib.paths(mrt.prefix_text(raw[1:] + pad[nb], plen), received=True)
            if not paths:
                continue  # withdrawn since
            ents = []
            for peer, path_id, aid, _flags, received in paths:
                idx = index.get(peer)
                if idx is None or daemon.sources.get(peer) is not srcs[peer]:
                    continue  # a peer that came (or came back) after the index was written
                e = memo.get(aid)
                if e is None:
                    _pid, attrs, nh = tag_source(daemon.attrs, aid)
                    if nh:
                        # RFC 6396 §4.3.4: the MP next hop in an
                        # abbreviated MP_REACH_NLRI.
                        attrs = writer.rib_attrs(attrs, nh)
                    e = memo[aid] = (idx, attrs)
                # RFC 6396 §4.3.4 "originated time": when the path was
                # received (its last change, as the RIB keeps it), not the
                # time of the dump.
                ents.append((e[0], received, e[1], path_id))
            if not ents:
                continue
            w.write_raw(writer.encode_rib_packed(ts, seq, afi, raw, ents))
            seq += 1
    return seq
