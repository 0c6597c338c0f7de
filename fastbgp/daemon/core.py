"""``fastbgp daemon``: the BGP-4 router built from the library's parts.

Data flows one way, without a Python object per prefix on the hot path::

    socket -> Connection (framing, bounded slices) -> codec.parse_update
      -> Session / FSM -> DaemonNeighbor._session_update
      -> import checks + policy, once per attribute set (cached)
      -> Rib.update / Rib.withdraw (compiled; Adj-RIB-In + Loc-RIB)
      -> ChangeSet {attr id: packed prefixes}
      -> export.UpdateGroup: export rules + policy per attribute set,
         codec.pack_updates once per group
      -> the same list of bytes queued to every member's sender
      -> transport.writelines (paused by back-pressure)

Attribute sets are interned together with their source peer id
(:func:`fastbgp.rib.export.source_tag`), so every RIB result names where its
routes came from at the granularity of attribute groups.

:class:`Daemon` implements :class:`fastbgp.control.contract.Control` for the API,
the CLI and metrics.  :func:`run_daemon` / :func:`main_daemon` are the
``fastbgp daemon -c FILE`` entry points (signals: SIGHUP reloads, SIGTERM and
SIGINT stop).

Work that can be large -- a session dropping a full table, a full dump to a
peer that just came up, a soft reconfiguration -- goes through one export
queue processed in slices, yielding to the event loop every few
milliseconds, so keepalives and the API keep running.  Small changes (one
received UPDATE) are exported inline when the queue is idle, which keeps the
common path free of task switches while preserving order.
"""

from __future__ import annotations

import asyncio
import heapq
import ipaddress
import logging
import os
import signal
import struct
import sys
import time
import weakref
from collections import deque
from typing import AsyncIterator, Optional

import msgspec

from fastbgp.wire import codec
from fastbgp.config import schema as cfgmod
from fastbgp.control import contract as ctl
from fastbgp.mrt import reader as mrt
from fastbgp.wire.constants import (
    AFI_IPV4,
    AFI_IPV6,
    AS_SET,
    ATTR_AS_PATH,
    ATTR_CLUSTER_LIST,
    ATTR_NEXT_HOP,
    ATTR_ORIGIN,
    ATTR_ORIGINATOR_ID,
    ATTR_OTC,
    FLAG_OPTIONAL,
    FLAG_TRANSITIVE,
    IPV4_UNICAST,
    IPV6_UNICAST,
    ORIGIN_NAMES,
    ROLE_CUSTOMER,
    ROLE_PEER,
    ROLE_PROVIDER,
    ROLE_RS,
    ROLE_RS_CLIENT,
    RR_BORR,
    RR_EORR,
    WELL_KNOWN_FLAGS,
)
from fastbgp.wire.as4 import decode_segments, encode_attr, split_attrs
from fastbgp.wire.errors import ACTION_TREAT_AS_WITHDRAW, CEASE_OTHER_CONFIG_CHANGE
from fastbgp.rib.export import EBGP, IBGP, LOCAL, RS, Delta, Source, UpdateGroup, group_key, rewrite_path_ids
from fastbgp.rib.export import self_next_hops, source_tag, tag_source
from fastbgp.session.fsm import Reason, State
from fastbgp.daemon.neighbor import DaemonNeighbor, DaemonSpeaker
from fastbgp.rib.policy import NEXT_HOP_SELF, PolicyContext, compile_policies, encode_route
from fastbgp.rib import AttrTable, Rib
from fastbgp.session.speaker import GracefulRestartConfig, NeighborConfig, _decode_path

__all__ = ["Daemon", "DaemonNeighbor", "run_daemon", "main_daemon", "neighbor_config", "FAMILIES"]

log = logging.getLogger("fastbgp.daemon")

FAMILIES = {"ipv4-unicast": IPV4_UNICAST, "ipv6-unicast": IPV6_UNICAST, "ipv4": IPV4_UNICAST, "ipv6": IPV6_UNICAST}
_FAMILY_NAME = {IPV4_UNICAST: "ipv4-unicast", IPV6_UNICAST: "ipv6-unicast"}

LOCAL_PID = 0  # the RIB's pseudo-peer for routes originated here
MAX_PID = 0xFFFF
# A delta bigger than this (prefixes) is processed by the export worker in
# slices instead of inline.
INLINE_LIMIT = 20000
# Slice size of big deltas and dumps, in prefixes (about 1 ms of encoding).
SLICE_PREFIXES = 16384
# The worker yields to the loop when a slice ran this long.
SLICE_SECONDS = 0.005
STATS_TTL = 5.0
_WATCH_QUEUE = 10000
_BEST_EVENTS_MAX = 1000  # BestChange events per RIB operation, at most

_MISS = object()
_PER_PREFIX = object()  # import verdict: the chain looks at prefixes


def _family(name) -> tuple:
    try:
        return FAMILIES[str(name).strip().lower()]
    except KeyError:
        raise ValueError("unknown family %r (ipv4-unicast or ipv6-unicast)" % (name,)) from None


def _ip_text(raw: bytes) -> str:
    return str(ipaddress.ip_address(raw))


def _prefix_text(afi, addr, plen) -> str:
    return "%s/%d" % (ipaddress.ip_address(addr), plen)


# ---------------------------------------------------------------- configuration


def neighbor_config(n: cfgmod.Neighbor) -> NeighborConfig:
    """The session settings of a resolved configuration neighbour."""
    t = n.timers
    gr = None
    if n.graceful_restart.enabled:
        # helper-only: we never claim to have kept forwarding state across a
        # restart of our own (RFC 4724 §3, the F bit).
        gr = GracefulRestartConfig(restart_time=n.graceful_restart.restart_time,
                                   forwarding_state=not n.graceful_restart.helper_only)
    gtsm = False
    if n.ttl_security:
        gtsm = n.multihop if n.multihop else True
    return NeighborConfig(
        address=n.address,
        peer_as=n.peer_as,
        local_as=n.local_as,
        passive=n.passive,
        port=n.port,
        local_address=n.local_address,
        description=n.description,
        hold_time=t.hold_time,
        keepalive=t.keepalive or None,
        connect_retry=float(t.connect_retry),
        idle_hold_time=max(float(t.idle_hold), 0.1),
        max_idle_hold_time=max(120.0, float(t.idle_hold)),
        delay_open=float(t.delay_open),
        md5_password=n.md5_password,
        ttl=None if n.ttl_security else n.multihop,
        gtsm=gtsm,
        families=list(n.families),
        addpath_send=list(n.add_path.send),
        addpath_receive=list(n.add_path.receive),
        graceful_restart=gr,
        role=n.role,
        role_strict=n.role_strict,
        admin_down=n.admin_down,
    )


# ---------------------------------------------------------------- export queue


class _ExportQueue:
    """One FIFO of export work (generators), run in slices by one task.

    Order is what matters: a peer's full dump and the incremental changes
    after it must reach it in that order, and so must two changes of the
    same prefix.  A small item submitted while nothing is queued runs at
    once (inline); anything else waits its turn."""

    def __init__(self, loop):
        self.loop = loop
        self.queue = deque()
        self.busy = False
        self._event = asyncio.Event()
        self._task = loop.create_task(self._run())
        self.items_run = 0

    def submit(self, gen, heavy=False):
        if not heavy and not self.queue and not self.busy:
            self.busy = True
            try:
                for _ in gen:
                    pass
            except Exception:
                log.exception("export work failed")
            finally:
                self.busy = False
                self.items_run += 1
            return
        self.queue.append(gen)
        self._event.set()

    @property
    def idle(self):
        return not self.queue and not self.busy

    async def wait_idle(self):
        while not self.idle:
            await asyncio.sleep(0.001)

    async def _run(self):
        loop = self.loop
        while True:
            if not self.queue:
                self._event.clear()
                await self._event.wait()
                continue
            gen = self.queue.popleft()
            self.busy = True
            t0 = loop.time()
            try:
                for _ in gen:
                    if loop.time() - t0 > SLICE_SECONDS:
                        self.busy = True
                        await asyncio.sleep(0)
                        t0 = loop.time()
            except Exception:
                log.exception("export work failed")
            finally:
                self.busy = False
                self.items_run += 1
            if loop.time() - t0 > SLICE_SECONDS:
                await asyncio.sleep(0)

    def close(self):
        self._task.cancel()
        self.queue.clear()


# ---------------------------------------------------------------- the daemon


class Daemon:
    """The daemon core; implements :class:`fastbgp.control.contract.Control`.

    ``Daemon(config)`` from :func:`fastbgp.config.schema.load_config`;
    ``config_path`` is what :meth:`reload` re-reads.  ``await start()``
    binds the listeners and starts every neighbour; ``await stop()``.
    """

    def __init__(self, config: cfgmod.Config, config_path=None, *, dual_stack: bool = False):
        if not isinstance(config, cfgmod.Config):
            raise TypeError("Daemon needs a config.Config (config.load_config)")
        self.config = config
        self.config_path = config_path
        self.dual_stack = dual_stack
        self.engine = compile_policies(config)
        self.attrs = AttrTable()
        self.ribs = {IPV4_UNICAST: Rib(AFI_IPV4, self.attrs), IPV6_UNICAST: Rib(AFI_IPV6, self.attrs)}
        self.pre_ribs: dict = {}  # family -> Rib of pre-policy paths (soft reconfiguration inbound)
        self.sources: dict = {}
        self.groups: dict = {}  # key -> UpdateGroup
        self.local_routes: dict = {IPV4_UNICAST: {}, IPV6_UNICAST: {}}  # family -> {packed prefix: origin}
        self.loop: Optional[asyncio.AbstractEventLoop] = None
        self.speaker: Optional[DaemonSpeaker] = None
        self.exports: Optional[_ExportQueue] = None
        self.started = False
        self.stopping = False
        self.on_reload: list = []  # async callables (old, new, diff) run after a reload
        self._free_pids: list = []
        self._next_pid = 1
        self._watchers: set = set()
        self._pending_joins: dict = {}  # group key -> (group, [(member, epoch, eor)]) not started yet
        self._observe = None
        self._setup_observe(config)
        self._changes = 0
        self._stats = None
        self._stats_at = (-1, 0.0)
        self.events_dropped = 0
        self._cluster_id = ipaddress.IPv4Address(config.global_.effective_cluster_id).packed
        self.mrt: Optional[_MrtDumper] = None  # global.mrt dumps, while running
        self._injected = {IPV4_UNICAST: 0, IPV6_UNICAST: 0}  # prefixes injected (mrt inject), not tracked one by one
        self._started_at = time.time()
        for rib in self.ribs.values():
            self._register_local(rib)

    def __repr__(self):
        return "<Daemon AS%d %s>" % (self.config.global_.asn, self.config.global_.router_id)

    def _setup_observe(self, config):
        """UPDATE processing latency for the Prometheus histogram; only worth
        the imports (aiohttp, prometheus_client) when metrics are served."""
        self._observe = None
        if config.global_.metrics.listen:
            try:
                from fastbgp.control.metrics import observe_update_latency

                self._observe = observe_update_latency
            except ImportError:  # pragma: no cover - prometheus_client missing
                pass

    # -- lifecycle ----------------------------------------------------------------------

    @property
    def asn(self):
        return self.config.global_.asn

    @property
    def router_id(self):
        return self.config.global_.router_id

    def _register_local(self, rib):
        g = self.config.global_
        # Our own routes: a pseudo-peer that counts as external for the
        # decision process, so it wins ties against routes of internal peers.
        rib.add_peer(LOCAL_PID, g.asn, g.asn, g.router_id, "0.0.0.0", ibgp=False)
        self.sources[LOCAL_PID] = Source(LOCAL_PID, LOCAL, router_id=int(ipaddress.IPv4Address(g.router_id)))

    async def start(self):
        """Bind the listeners, start every neighbour, originate the
        configured routes.  Raises (and leaves nothing running) when a
        listener cannot be bound."""
        if self.started:
            return
        self.loop = asyncio.get_running_loop()
        g = self.config.global_
        self.exports = _ExportQueue(self.loop)
        self.speaker = DaemonSpeaker(self, g.asn, g.router_id, listen=g.listen_endpoints(), dual_stack=self.dual_stack)
        try:
            await self.speaker.start()
        except BaseException:
            self.exports.close()
            raise
        self.started = True
        self._started_at = time.time()
        self._start_mrt(g.mrt)
        for r in self.config.routes:
            self._originate_route(r, "config")
        for n in self.config.neighbors:
            self._add_neighbor(n)
        log.info("daemon started: AS%d router id %s, %d neighbours, listening on %s", g.asn, g.router_id,
                 len(self.config.neighbors), self.speaker.listen_addresses)

    async def stop(self, message: str = ""):
        if not self.started:
            return
        self.stopping = True
        await self.speaker.stop(message=message)
        # After the speaker: the sessions' last state changes are in the dump.
        await self._stop_mrt()
        self.exports.close()
        self.started = False
        for q in list(self._watchers):
            try:
                q.put_nowait(None)
            except asyncio.QueueFull:
                pass

    async def wait_idle(self):
        """Until the export queue is empty and every sender flushed (tests)."""
        await self.exports.wait_idle()
        for nb in list(self.speaker.neighbors.values()):
            try:
                await nb.flush(timeout=10)
            except asyncio.TimeoutError:
                pass

    # -- neighbours ----------------------------------------------------------------------

    def _alloc_pid(self):
        if self._free_pids:
            return heapq.heappop(self._free_pids)
        if self._next_pid > MAX_PID:
            raise RuntimeError("too many neighbours (peer ids are 16 bits)")
        pid = self._next_pid
        self._next_pid += 1
        return pid

    def _bind_policy(self, nb):
        """Resolve the neighbour's import chain and context in the current
        engine (again after a reload)."""
        nb.import_chain = self.engine.chain(nb.cfg, "import")
        nb.import_cache = {}
        local = nb.connection.local_address if nb.connection is not None else nb.cfg.local_address
        nb.pctx = PolicyContext(nb.address, nb.cfg.peer_as, nb.cfg.local_as, local_address=local)

    def _add_neighbor(self, cfgn, dynamic=False):
        nb = self.speaker.add_daemon_neighbor(neighbor_config(cfgn), cfgn, dynamic)
        return nb

    def _remove_neighbor(self, address, message="", config_change=False):
        nb = self.speaker.neighbors.get(address)
        if nb is None:
            return
        if config_change and nb._session is not None:
            # RFC 4486: Cease / Other Configuration Change (6/6) when the
            # session restarts with new settings (6/3 when it goes for good).
            nb._stop_sessions(Reason.CONFIG_CHANGE, CEASE_OTHER_CONFIG_CHANGE, message)
        self.speaker.remove_neighbor(address, message)
        self._release_pid(nb)

    def _release_pid(self, nb):
        for rib in (*self.ribs.values(), *self.pre_ribs.values()):
            if rib.has_peer(nb.pid):
                cs = rib.remove_peer(nb.pid)
                if rib in self.ribs.values():
                    self._export_cs(self._fam_of(rib), cs, heavy=True)
        self.sources.pop(nb.pid, None)
        heapq.heappush(self._free_pids, nb.pid)
        nb.pid = -1

    def _remove_dynamic(self, nb):
        if self.speaker is None or self.speaker.neighbors.get(nb.address) is not nb or nb.removed:
            return
        if nb.state not in (State.IDLE, State.ACTIVE) or nb.connection is not None or nb.stale_fams:
            return  # a session is coming up again, or stale routes wait for it
        log.info("dynamic neighbour %s removed", nb.address)
        self.speaker.neighbors.pop(nb.address, None)
        nb._remove("")
        self._release_pid(nb)

    def _nb(self, address) -> DaemonNeighbor:
        try:
            key = str(ipaddress.ip_address(str(address).split("%")[0]))
        except ValueError:
            raise KeyError(address) from None
        nb = self.speaker.neighbors.get(key) if self.speaker is not None else None
        if nb is None:
            raise KeyError(address)
        return nb

    def _fam_of(self, rib):
        for fam, r in self.ribs.items():
            if r is rib:
                return fam
        return None

    # -- peers coming and going --------------------------------------------------------------

    def _peer_up(self, nb, session):
        neg = session.negotiated
        cfg = nb.cfg
        kind = RS if cfg.route_server_client else (EBGP if nb.ebgp else IBGP)
        rr = bool(cfg.route_reflector_client) and kind == IBGP
        rid = session.remote_id or 0
        addr = nb.address
        for fam, rib in self.ribs.items():
            if rib.has_peer(nb.pid):
                info = rib.peer_info(nb.pid)
                if info["router_id"] == rid:
                    continue
                # A different speaker behind the address: nothing stale of the
                # old one may survive.
                self._export_cs(fam, rib.remove_peer(nb.pid), heavy=True)
                nb.stale_fams.discard(fam)
            rib.add_peer(nb.pid, neg.peer_asn, nb.local_as, rid, addr, ibgp=kind == IBGP, rr_client=rr)
        self.sources[nb.pid] = Source(nb.pid, kind, rr, rid, neg.peer_asn, addr, frozenset(session.ctx.addpath_rx))
        # Without ROUTE-REFRESH (RFC 2918) the only way to re-run import
        # policy later is a copy of what the peer sent.
        nb.pre_policy = not neg.route_refresh
        for fam, pre in self.pre_ribs.items():
            if pre.has_peer(nb.pid):
                pre.remove_peer(nb.pid)
        self._bind_policy(nb)
        if self.mrt is not None:
            self.mrt.hook(nb, session)

    def _peer_down(self, nb, keep, session):
        """The session ended: graceful restart keeps the families in
        ``keep`` (stale, RFC 4724 §4.2), everything else is withdrawn."""
        self._leave_groups(nb)
        for fam, pre in self.pre_ribs.items():
            if pre.has_peer(nb.pid):
                pre.drop_peer(nb.pid)
        stale = False
        for fam, rib in self.ribs.items():
            if not rib.has_peer(nb.pid) or not rib.peer_path_count(nb.pid):
                nb.stale_fams.discard(fam)
                continue
            if fam in keep:
                rib.mark_stale(nb.pid)
                nb.stale_fams.add(fam)
                stale = True
                continue
            self._addpath_withdraw_all(nb.pid, fam)
            self._export_cs(fam, rib.drop_peer(nb.pid), heavy=True)
            nb.stale_fams.discard(fam)
        if stale and session is not None:
            cap = session.negotiated.graceful_restart
            if nb._gr_timer is not None:
                nb._gr_timer.cancel()
            log.info("%s: graceful restart: keeping routes stale for %ds", nb.address, cap.restart_time)
            nb._gr_timer = self.loop.call_later(cap.restart_time, nb._gr_expired, "restart time")

    def _mark_stale(self, nb, fam):
        rib = self.ribs[fam]
        if rib.has_peer(nb.pid) and rib.mark_stale(nb.pid):
            nb.stale_fams.add(fam)

    def _sweep(self, nb, fam):
        nb.stale_fams.discard(fam)
        rib = self.ribs[fam]
        if not rib.has_peer(nb.pid):
            return
        if self._addpath_groups(fam):
            # ADD-PATH members hold paths by id: withdraw what the peer had,
            # re-announce what survives the sweep.
            self._addpath_withdraw_all(nb.pid, fam)
            cs = rib.sweep_stale(nb.pid)
            self._addpath_announce_all(nb.pid, fam)
        else:
            cs = rib.sweep_stale(nb.pid)
        self._export_cs(fam, cs, heavy=True)

    # -- import ------------------------------------------------------------------------------

    def _update_in(self, nb, session, parsed):
        observe = self._observe
        if observe is None:
            # Metrics off: not even a clock read per UPDATE.
            self._process_update(nb, session, parsed)
            return
        t0 = time.perf_counter()
        self._process_update(nb, session, parsed)
        # From the UPDATE being framed (at the latest when its burst
        # arrived) to its routes being in the RIB and queued for export.
        conn = session.conn
        queued = self.loop.time() - conn.last_rx if conn is not None and conn.last_rx else 0.0
        observe(max(time.perf_counter() - t0, queued))

    def _process_update(self, nb, session, parsed):
        c = nb.counters
        c.last_update_received = time.time()
        if parsed.errors:
            # RFC 7606: handled without a reset; counted and logged.
            if parsed.action == ACTION_TREAT_AS_WITHDRAW:
                c.treat_as_withdraw += 1
            else:
                c.attribute_discard += 1
            log.warning("%s: UPDATE error handled as %s: %s", nb.address,
                        "treat-as-withdraw" if parsed.action == ACTION_TREAT_AS_WITHDRAW else "attribute-discard",
                        "; ".join(str(e) for e in parsed.errors))
        fams = session.negotiated.families
        rx = session.ctx.addpath_rx
        if parsed.n_withdrawn:
            c.received.withdraw_update += 1
            c.received.withdraw_prefix += parsed.n_withdrawn
        touched = None
        if parsed.withdrawn:
            self._withdraw_in(nb, IPV4_UNICAST, parsed.withdrawn, IPV4_UNICAST in rx)
        mpu = parsed.mp_unreach
        if mpu is not None and mpu[2]:
            fam = (mpu[0], mpu[1])
            if fam in fams and fam in self.ribs:
                self._withdraw_in(nb, fam, mpu[2], fam in rx)
            else:
                c.received.discarded += 1
        twd = parsed.action == ACTION_TREAT_AS_WITHDRAW
        if parsed.nlri:
            if IPV4_UNICAST in fams:
                touched = IPV4_UNICAST
                if twd:
                    self._withdraw_in(nb, IPV4_UNICAST, parsed.nlri, IPV4_UNICAST in rx)
                else:
                    self._announce_in(nb, IPV4_UNICAST, parsed.attrs, b"", parsed.nlri, IPV4_UNICAST in rx)
            else:
                c.received.discarded += 1
        mpr = parsed.mp_reach
        if mpr is not None and mpr[3]:
            fam = (mpr[0], mpr[1])
            if fam in fams and fam in self.ribs:
                touched = fam
                if twd:
                    self._withdraw_in(nb, fam, mpr[3], fam in rx)
                else:
                    self._announce_in(nb, fam, parsed.attrs, bytes(mpr[2]), mpr[3], fam in rx)
            else:
                # RFC 4760 §6: a family that was not negotiated is ignored.
                c.received.discarded += 1
        if parsed.is_eor:
            nb._eor_received(IPV4_UNICAST if mpu is None else (mpu[0], mpu[1]))
        if touched is not None:
            lim = nb.cfg.prefix_limit.get(_FAMILY_NAME.get(touched, ""))
            if lim is not None and self.ribs[touched].peer_path_count(nb.pid) > lim.max:
                nb.config.prefix_limit_restart = float(lim.restart_after) or None
                nb._prefix_limit_exceeded(session, touched, lim.max)
                return
        if self._watchers:
            self._update_event(nb, parsed)
        if nb._waiters:
            nb._check_waiters()

    def _import(self, nb, fam, attrs, nh):
        """(attrs, next hop) to store, None (rejected), or _PER_PREFIX;
        computed once per attribute set and peer."""
        key = (fam, attrs, nh)
        hit = nb.import_cache.get(key, _MISS)
        if hit is not _MISS:
            return hit
        if len(nb.import_cache) > 65536:
            nb.import_cache.clear()
        try:
            res = self._import_eval(nb, fam, attrs, nh)
        except Exception:
            log.exception("%s: import of an attribute set failed; treated as withdrawn", nb.address)
            res = None
        nb.import_cache[key] = res
        return res

    def _import_eval(self, nb, fam, attrs, nh):
        src = self.sources.get(nb.pid)
        items = split_attrs(attrs)
        otc = None
        for _f, t, v in items:
            if t == ATTR_AS_PATH and src.kind != IBGP:
                # RFC 4271 §9.1.2: a path holding our own AS is a loop.
                for _st, asns in decode_segments(v, 4):
                    if nb.local_as in asns or self.asn in asns:
                        return None
            elif t == ATTR_ORIGINATOR_ID and src.kind == IBGP:
                # RFC 4456 §8: our own route reflected back to us.
                if int.from_bytes(v, "big") == int(ipaddress.IPv4Address(self.router_id)):
                    return None
            elif t == ATTR_CLUSTER_LIST and src.kind == IBGP:
                # RFC 4456 §8: our CLUSTER_ID in the list is a loop.
                cid = self._cluster_id
                if any(v[i : i + 4] == cid for i in range(0, len(v) - 3, 4)):
                    return None
            elif t == ATTR_OTC:
                otc = v
        neg = nb.negotiated
        role = neg.local_role if neg is not None else None
        if role is not None and src.kind != IBGP:
            # RFC 9234 §5 (ingress): OTC from a customer or RS client, or an
            # OTC other than the peer's AS from a lateral peer, is a leak;
            # routes from providers, peers and route servers get OTC added.
            if otc is not None and (role in (ROLE_PROVIDER, ROLE_RS) or
                                    (role == ROLE_PEER and int.from_bytes(otc, "big") != src.peer_as)):
                return None
            if otc is None and role in (ROLE_CUSTOMER, ROLE_RS_CLIENT, ROLE_PEER):
                attrs = _add_attr(attrs, ATTR_OTC, FLAG_OPTIONAL | FLAG_TRANSITIVE, src.peer_as.to_bytes(4, "big"))
        chain = nb.import_chain
        if not chain.policies and chain.default_accept:
            return (attrs, nh)
        if chain.prefix_dependent:
            return (_PER_PREFIX, attrs, nh)
        v = self.engine.evaluate_group(chain, attrs, nb.pctx, fam[0], "import")
        if v is None:
            return None
        out_nh = nh
        if fam != IPV4_UNICAST and isinstance(v.next_hop, bytes) and len(v.next_hop) == 16:
            out_nh = v.next_hop
        return (v.attrs, out_nh)

    def _withdraw_in(self, nb, fam, packed, addpath):
        pre = self.pre_ribs.get(fam)
        if pre is not None and pre.has_peer(nb.pid):
            pre.withdraw(nb.pid, packed, addpath)
        rib = self.ribs[fam]
        if self._addpath_groups(fam):
            self._addpath_delta(fam, nb.pid, None, None, packed, addpath)
        self._export_cs(fam, rib.withdraw(nb.pid, packed, addpath))

    def _announce_in(self, nb, fam, attrs, nh, packed, addpath, keep_pre=True):
        pid = nb.pid
        table = self.attrs
        if keep_pre and nb.pre_policy:
            pre = self._pre_rib(fam, nb)
            aid = table.intern(attrs, source_tag(pid, nh))
            try:
                pre.update(pid, packed, addpath, aid)
            finally:
                table.release(aid)
        res = self._import(nb, fam, attrs, nh)
        if res is None:
            self._withdraw_post(nb, fam, packed, addpath)
            return
        if res[0] is _PER_PREFIX:
            self._announce_per_prefix(nb, fam, res[1], res[2], packed, addpath)
            return
        out, out_nh = res
        aid = table.intern(out, source_tag(pid, out_nh))
        try:
            if self._addpath_groups(fam):
                self._addpath_delta(fam, pid, out, out_nh, packed, addpath)
            self._update_rib(fam, pid, packed, addpath, aid)
        finally:
            table.release(aid)

    def _update_rib(self, fam, pid, packed, addpath, aid):
        """Rib.update and export.  When the table grew by exactly the number
        of prefixes whose best path changed, every one of them is new: no
        peer can hold an older route for them, so neither the withdrawals of
        what an export rejects nor the split-horizon withdrawals to the
        source are needed (a first full table costs no extra message)."""
        rib = self.ribs[fam]
        before = len(rib)
        cs = rib.update(pid, packed, addpath, aid)
        self._export_cs(fam, cs, fresh=bool(cs) and len(rib) - before == cs.n_announced)

    def _withdraw_post(self, nb, fam, packed, addpath):
        """Rejected by import: out of the post-policy Adj-RIB-In (the
        pre-policy copy keeps it)."""
        if self._addpath_groups(fam):
            self._addpath_delta(fam, nb.pid, None, None, packed, addpath)
        self._export_cs(fam, self.ribs[fam].withdraw(nb.pid, packed, addpath))

    def _announce_per_prefix(self, nb, fam, attrs, nh, packed, addpath):
        """The import chain has prefix conditions: evaluate each prefix,
        then store the prefixes grouped by result."""
        afi = fam[0]
        buckets = {}
        for rx_id, addr, plen in codec.unpack_prefixes(packed, afi, addpath):
            v = self.engine.evaluate(nb.import_chain, "import", (afi, addr, plen), attrs, nb.pctx)
            if v is None:
                key = None
            else:
                out_nh = nh
                if fam != IPV4_UNICAST and isinstance(v.next_hop, bytes) and len(v.next_hop) == 16:
                    out_nh = v.next_hop
                key = (v.attrs, out_nh)
            entry = bytes((plen,)) + addr[: (plen + 7) >> 3]
            if addpath:
                entry = rx_id.to_bytes(4, "big") + entry
            buckets.setdefault(key, []).append(entry)
        for key, entries in buckets.items():
            pk = b"".join(entries)
            if key is None:
                self._withdraw_post(nb, fam, pk, addpath)
                continue
            aid = self.attrs.intern(key[0], source_tag(nb.pid, key[1]))
            try:
                if self._addpath_groups(fam):
                    self._addpath_delta(fam, nb.pid, key[0], key[1], pk, addpath)
                self._update_rib(fam, nb.pid, pk, addpath, aid)
            finally:
                self.attrs.release(aid)

    def _pre_rib(self, fam, nb):
        pre = self.pre_ribs.get(fam)
        if pre is None:
            pre = self.pre_ribs[fam] = Rib(fam[0], self.attrs)
        if not pre.has_peer(nb.pid):
            info = self.ribs[fam].peer_info(nb.pid)
            pre.add_peer(nb.pid, info["peer_as"], info["local_as"], info["router_id"], info["address"],
                         ibgp=info["ibgp"], rr_client=info["rr_client"])
        return pre

    # -- export --------------------------------------------------------------------------------

    def _groups_of(self, fam, addpath):
        return [g for g in self.groups.values()
                if g.family == fam and g.addpath == addpath and g.members and not g.exports_nothing]

    def _addpath_groups(self, fam):
        for g in self.groups.values():
            if g.family == fam and g.addpath and g.members and not g.exports_nothing:
                return True
        return False

    def _export_cs(self, fam, cs, heavy=False, fresh=False):
        """Hand a Loc-RIB ChangeSet to the update groups of its family.
        ``fresh``: every prefix in it is new to the Loc-RIB (see
        :meth:`_update_rib`)."""
        if not cs:
            return
        self._changes += 1
        if self._watchers:
            self._best_events(fam, cs)
        if not self._groups_of(fam, False):
            return
        delta = Delta.from_changeset(fam, cs, self.attrs)
        delta.fresh = fresh
        self.exports.submit(self._run_delta(delta), heavy=heavy or delta.n > INLINE_LIMIT)

    def _addpath_delta(self, fam, pid, attrs, nh, packed, addpath):
        """An Adj-RIB-In change of ``pid`` for the ADD-PATH groups (attrs
        None: withdrawn)."""
        afi = fam[0]
        ours = rewrite_path_ids(packed, afi, addpath, pid)
        if attrs is None:
            delta = Delta(fam, (), [(pid, ours)], addpath=True)
        else:
            delta = Delta(fam, [(pid, attrs, nh, ours)], addpath=True)
        self.exports.submit(self._run_delta(delta))

    def _addpath_withdraw_all(self, pid, fam):
        if not self._addpath_groups(fam):
            return
        rib = self.ribs[fam]
        src = self.sources.get(pid)
        rx = src is not None and fam in src.addpath_rx
        wd = [(pid, rewrite_path_ids(packed, fam[0], rx, pid)) for _aid, packed in rib.dump_peer(pid, rx)]
        if wd:
            self.exports.submit(self._run_delta(Delta(fam, (), wd, addpath=True)), heavy=True)

    def _addpath_announce_all(self, pid, fam):
        rib = self.ribs[fam]
        src = self.sources.get(pid)
        rx = src is not None and fam in src.addpath_rx
        ann = []
        for aid, packed in rib.dump_peer(pid, rx):
            spid, attrs, nh = tag_source(self.attrs, aid)
            ann.append((spid, attrs, nh, rewrite_path_ids(packed, fam[0], rx, pid)))
        if ann:
            self.exports.submit(self._run_delta(Delta(fam, ann, addpath=True)), heavy=True)

    def _run_delta(self, delta):
        """Export work: encode ``delta`` per group and queue it to members."""
        for part in _slices(delta):
            for g in self._groups_of(part.family, part.addpath):
                out = g.process(part, self.sources)
                if out:
                    _distribute(g, out)
            yield

    def _group_for(self, nb, fam):
        session = nb.session
        neg = session.negotiated
        cfg = nb.cfg
        kind = RS if cfg.route_server_client else (EBGP if nb.ebgp else IBGP)
        rr = bool(cfg.route_reflector_client) and kind == IBGP
        chain = self.engine.chain(cfg, "export")
        local = session.conn.local_address if session.conn is not None else cfg.local_address
        nh4, nh6 = self_next_hops(local)
        otc = kind != IBGP and neg.local_role in (ROLE_PROVIDER, ROLE_PEER, ROLE_RS)
        key = group_key(fam, chain, session.ctx, kind, rr, nb.local_as, nh4 if fam == IPV4_UNICAST else nh6,
                        nb.address, self._cluster_id, otc)
        g = self.groups.get(key)
        if g is None:
            pctx = PolicyContext(nb.address, cfg.peer_as, nb.local_as, local_address=local)
            ctx = codec.Context(as4=session.ctx.as4, addpath_tx=frozenset(session.ctx.addpath_tx) & {fam},
                                extended_message=session.ctx.extended_message)
            g = UpdateGroup(key, fam, ctx, self.engine, chain, pctx, kind, rr, nb.local_as, nh4, nh6,
                            self._cluster_id, otc)
            self.groups[key] = g
        return g

    def _leave_groups(self, nb):
        for fam, g in list(nb.groups.items()):
            g.members.pop(nb.pid, None)
            if not g.members and self.groups.get(g.key) is g:
                del self.groups[g.key]
        nb.groups = {}

    def _submit_join(self, nb, fam, eor=True):
        """Queue: ``nb`` joins its update group for ``fam`` and receives the
        full table (then End-of-RIB, RFC 4724 §2).  Peers of one group that
        come up together (a restart, a reload) join in one batch: one dump,
        encoded once, the same bytes to each of them."""
        g = self._group_for(nb, fam)
        batch = self._pending_joins.get(g.key)
        if batch is not None and batch[0] is g:
            batch[1].append((nb, nb.epoch, eor))
            return
        batch = (g, [(nb, nb.epoch, eor)])
        self._pending_joins[g.key] = batch
        self.exports.submit(self._join(batch), heavy=True)

    def _join(self, batch):
        g, joiners = batch
        if self._pending_joins.get(g.key) is batch:
            del self._pending_joins[g.key]  # from now on, later joiners queue a new batch
        live = self.groups.get(g.key)
        if live is None:
            self.groups[g.key] = live = g
        g = live
        fam = g.family
        joiners = [(nb, epoch, eor) for nb, epoch, eor in joiners
                   if nb.epoch == epoch and nb.established and not nb.removed]
        if not joiners:
            return
        for nb, _epoch, _eor in joiners:
            g.members[nb.pid] = nb
            nb.groups[fam] = g
        pids = {nb.pid for nb, _e, _r in joiners}
        for part in _slices(self._table_delta(g, None)):
            out = g.process(part, self.sources, members=pids)
            joiners = [(nb, epoch, eor) for nb, epoch, eor in joiners if nb.epoch == epoch and nb.groups.get(fam) is g]
            if out:
                _distribute(g, out, [(nb.pid, nb) for nb, _e, _r in joiners])
            yield
        for nb, epoch, eor in joiners:
            if eor and nb.epoch == epoch:
                nb.end_of_rib_sent.add(fam)
                nb.send_messages([codec.build_eor(*fam)])

    def _submit_redump(self, nb, fam, brackets=False, rejected_as_withdraw=False, rejoin=False):
        self.exports.submit(self._redump(nb, fam, nb.epoch, brackets, rejected_as_withdraw, rejoin), heavy=True)

    def _redump(self, nb, fam, epoch, brackets, rejected_as_withdraw, rejoin):
        if nb.epoch != epoch or not nb.established or nb.removed:
            return
        g = nb.groups.get(fam)
        if rejoin or g is None:
            if g is not None:
                g.members.pop(nb.pid, None)
                if not g.members and self.groups.get(g.key) is g:
                    del self.groups[g.key]
            g = self._group_for(nb, fam)
            g.members[nb.pid] = nb
            nb.groups[fam] = g
        if brackets:
            nb.send_messages([codec.build_route_refresh(fam[0], fam[1], RR_BORR)])
        yield from self._dump_to(nb, g, epoch, rejected_as_withdraw)
        if brackets and nb.epoch == epoch:
            nb.send_messages([codec.build_route_refresh(fam[0], fam[1], RR_EORR)])

    def _table_delta(self, g, exclude, rejected_as_withdraw=False):
        """The whole table as a dump Delta for group ``g`` (the Loc-RIB, or
        for ADD-PATH every path of the Adj-RIBs-In), without the paths of
        peer ``exclude``.  Attribute ids are resolved now."""
        fam = g.family
        rib = self.ribs[fam]
        table = self.attrs
        items = []
        if g.addpath:
            # RFC 7911: every path of every peer, with our path ids.
            for spid, src in list(self.sources.items()):
                if spid == exclude or not rib.has_peer(spid):
                    continue
                rx = fam in src.addpath_rx
                for aid, packed in rib.dump_peer(spid, rx):
                    p2, attrs, nh = tag_source(table, aid)
                    items.append((p2, attrs, nh, rewrite_path_ids(packed, fam[0], rx, spid)))
        else:
            for aid, packed in rib.dump_best(exclude_peer=exclude):
                pid, attrs, nh = tag_source(table, aid)
                items.append((pid, attrs, nh, packed))
        return Delta(fam, items, [] if g.addpath else b"", addpath=g.addpath, dump=True,
                     rejected_as_withdraw=rejected_as_withdraw)

    def _dump_to(self, nb, g, epoch, rejected_as_withdraw):
        """The group's Adj-RIB-Out for one member, in slices."""
        fam = g.family
        delta = self._table_delta(g, nb.pid, rejected_as_withdraw)
        for part in _slices(delta):
            if nb.epoch != epoch or nb.groups.get(fam) is not g:
                return
            out = g.process(part, self.sources, single=True)
            nb.send_messages(out.common)
            yield

    # -- local routes ----------------------------------------------------------------------------

    def _originate_route(self, route, origin):
        (afi, addr, plen), block, nh = encode_route(route)
        fam = (afi, 1)
        packed = bytes((plen,)) + addr[: (plen + 7) >> 3]
        nhb = b"" if (nh == NEXT_HOP_SELF or fam == IPV4_UNICAST) else nh
        aid = self.attrs.intern(block, source_tag(LOCAL_PID, nhb))
        self.local_routes[fam][packed] = origin
        try:
            if self._addpath_groups(fam):
                self._addpath_delta(fam, LOCAL_PID, block, nhb, packed, False)
            self._update_rib(fam, LOCAL_PID, packed, False, aid)
        finally:
            self.attrs.release(aid)

    def _unoriginate(self, fam, packed):
        if self.local_routes[fam].pop(packed, None) is None:
            # Injected routes (mrt inject) are not listed one by one: look in
            # the RIB itself for a path of ours.
            if not self._injected.get(fam) or not self._has_local_path(fam, packed):
                return False
        if self._addpath_groups(fam):
            self._addpath_delta(fam, LOCAL_PID, None, None, packed, False)
        self._export_cs(fam, self.ribs[fam].withdraw(LOCAL_PID, packed, False))
        return True

    def _has_local_path(self, fam, packed):
        addr = packed[1:] + bytes((4 if fam[0] == AFI_IPV4 else 16) - (len(packed) - 1))
        prefix = _prefix_text(fam[0], addr, packed[0])
        return any(peer == LOCAL_PID for peer, _i, _a, _f in self.ribs[fam].paths(prefix))

    # -- routes injected in bulk (fastbgp mrt inject) ----------------------------------------------

    def _inject_check(self, i, g):
        """(family, attrs to intern, MP next hop, prefix count) of one
        injected group; ValueError naming the group when it is unusable."""
        afi = g.afi
        fam = (afi, 1)
        if fam not in self.ribs:
            raise ValueError("[%d].afi: %r is not a family this daemon routes (1 or 2)" % (i, afi))
        try:
            n = codec.count_prefixes(g.nlri, afi)
        except ValueError:
            raise ValueError("[%d].nlri: malformed packed prefixes" % i) from None
        attrs, nh = g.attrs, bytes(g.next_hop or b"")
        # The block goes through the session parser (4-octet AS), strict:
        # whatever a received UPDATE could not carry (bad flags, lengths,
        # duplicates, a malformed AS_PATH) is refused here rather than sent
        # on to peers that would reset the session over it, and what is kept
        # is the canonical form received paths are interned in.
        if len(attrs) > 0xFFFF - 4:
            raise ValueError("[%d].attrs: longer than an UPDATE can carry" % i)
        try:
            parsed = codec.parse_update(b"\x00\x00" + len(attrs).to_bytes(2, "big") + attrs, _INJECT_CTX, strict=True)
        except Exception as exc:
            raise ValueError("[%d].attrs: %s" % (i, exc)) from None
        if parsed.mp_reach is not None or parsed.mp_unreach is not None:
            raise ValueError("[%d].attrs: MP_REACH_NLRI/MP_UNREACH_NLRI do not belong in the block "
                             "(the next hop goes in next_hop, prefixes in nlri)" % i)
        block = parsed.attrs
        types = {t for _f, t, _v in split_attrs(block)}
        if ATTR_ORIGIN not in types or ATTR_AS_PATH not in types:
            # RFC 4271 §5.1.1, §5.1.2: mandatory in every UPDATE we would send.
            raise ValueError("[%d].attrs: ORIGIN and AS_PATH are required" % i)
        if afi == AFI_IPV4:
            if nh:
                if len(nh) != 4:
                    raise ValueError("[%d].next_hop: an IPv4 route needs a 4-octet next hop" % i)
                block = _add_attr(block, ATTR_NEXT_HOP, WELL_KNOWN_FLAGS[ATTR_NEXT_HOP], nh)
            nh = b""  # IPv4 unicast: NEXT_HOP lives in the block (none: ours)
        elif len(nh) not in (0, 16, 32):
            # RFC 2545 §3: a global address, optionally followed by a link-local one.
            raise ValueError("[%d].next_hop: an IPv6 next hop is 16 or 32 octets" % i)
        return fam, block, nh, n

    async def inject(self, groups) -> int:
        """Originate routes in bulk: ``groups`` of (afi, attrs, next_hop,
        nlri), each an attribute block in canonical form (4-octet AS) and the
        packed prefixes that carry it.  Each group is interned once and goes
        to the RIB with one Rib.update -- no Python object per prefix -- as
        a locally originated path (replacing an earlier one of ours).  The
        whole batch is checked first: a bad group changes nothing.  Large
        batches yield to the loop between groups.  Returns the prefix count."""
        loop = self.loop
        t0 = loop.time()
        checked = []
        for i, g in enumerate(groups):
            checked.append(self._inject_check(i, g) + (g.nlri,))
            if not i & 63 and loop.time() - t0 > SLICE_SECONDS:
                await asyncio.sleep(0)
                t0 = loop.time()
        total = 0
        table = self.attrs
        for fam, block, nh, n, nlri in checked:
            if not n:
                continue
            nlri = bytes(nlri)
            aid = table.intern(block, source_tag(LOCAL_PID, nh))
            try:
                if self._addpath_groups(fam):
                    self._addpath_delta(fam, LOCAL_PID, block, nh, nlri, False)
                self._update_rib(fam, LOCAL_PID, nlri, False, aid)
            finally:
                table.release(aid)
            self._injected[fam] += n
            total += n
            if loop.time() - t0 > SLICE_SECONDS:
                await asyncio.sleep(0)
                t0 = loop.time()
        return total

    # -- MRT dumps (global.mrt) ---------------------------------------------------------------------

    def _start_mrt(self, mcfg):
        if mcfg.updates is None and mcfg.rib is None:
            self.mrt = None
            return
        try:
            self.mrt = _MrtDumper(self, mcfg)
        except OSError as exc:
            # A dump directory we cannot write to must not keep the router
            # down: the routing goes on, the log says why there is no dump.
            log.error("MRT dumps disabled: %s", exc)
            self.mrt = None
            return
        # Sessions already up (a reload that turned dumping on).
        for nb in list(self.speaker.neighbors.values()):
            if nb.established and nb.session is not None and nb.session.conn is not None:
                self.mrt.hook(nb, nb.session)

    async def _stop_mrt(self):
        d, self.mrt = self.mrt, None
        if d is not None:
            await d.close()

    async def write_mrt_rib(self, path, timestamp=None) -> int:
        """Write the RIBs as one TABLE_DUMP_V2 snapshot (RFC 6396 §4.3) to
        ``path`` (.gz/.bz2 compress): PEER_INDEX_TABLE, then one
        RIB_IPV4_UNICAST / RIB_IPV6_UNICAST record per prefix with every
        path the RIB holds for it (the Adj-RIBs-In after import policy, and
        our own routes as peer 0).  Built in slices that yield to the loop,
        into ``path.tmp`` renamed at the end, so a reader never sees half a
        snapshot.  Records come in the order of Rib.dump_best's groups
        (RFC 6396 asks for none); sequence numbers count up from 0.
        Returns the number of RIB records."""
        loop = self.loop
        ts = int(time.time() if timestamp is None else timestamp)
        g = self.config.global_
        # RFC 6396 §4.3.1: the peer index; entry 0 is this router (its own
        # routes), then every peer with paths in the RIB.
        peers = [mrt.Peer(g.router_id, "0.0.0.0", g.asn)]
        index = {LOCAL_PID: 0}
        srcs = {LOCAL_PID: self.sources.get(LOCAL_PID)}
        # RFC 6396 §4.3.4 wants the time the route was received; the RIB does
        # not keep one per path, so a peer's paths carry the time its session
        # came up (the earliest they can be from), ours the daemon's start.
        orig = {LOCAL_PID: int(self._started_at)}
        up = {nb.pid: nb.counters.uptime for nb in self.speaker.neighbors.values()} if self.speaker else {}
        for pid, src in sorted(self.sources.items()):
            if pid == LOCAL_PID or not any(r.has_peer(pid) and r.peer_path_count(pid) for r in self.ribs.values()):
                continue
            index[pid] = len(peers)
            srcs[pid] = src
            orig[pid] = int(up.get(pid) or ts)
            peers.append(mrt.Peer(str(ipaddress.IPv4Address(src.router_id or 0)), src.address or "0.0.0.0",
                                  src.peer_as or 0))
        tmp = "%s.tmp" % path
        d = os.path.dirname(path)
        if d:
            os.makedirs(d, exist_ok=True)
        sp = os.fsdecode(path)
        comp = "gz" if sp.endswith(".gz") else "bz2" if sp.endswith(".bz2") else ""
        w = mrt.MrtWriter(tmp, compress=comp)
        done = False
        seq = 0
        try:
            w.write_raw(mrt.encode_peer_index(ts, g.router_id, peers))
            hdr = _MRT_HDR.pack
            u32, u16 = _U32.pack, _U16.pack
            for fam, rib in self.ribs.items():
                afi = fam[0]
                sub = mrt.RIB_IPV4_UNICAST if afi == AFI_IPV4 else mrt.RIB_IPV6_UNICAST
                width = 4 if afi == AFI_IPV4 else 16
                pad = [bytes(width - k) for k in range(width + 1)]
                # Every prefix, as packed groups (one C pass, no object per
                # prefix): the walk below is what gets sliced.  The RIB moves
                # on between slices; what it holds when a prefix's turn comes
                # is what is written.
                groups = list(rib.dump_best())
                t0 = loop.time()
                memo = {}  # attr id -> (peer index, originated, RIB attrs); valid for one slice
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
                        paths = rib.paths(mrt.prefix_text(raw[1:] + pad[nb], plen))
                        if not paths:
                            continue  # withdrawn since
                        ents = []
                        addpath = False
                        for peer, path_id, aid, _flags in paths:
                            idx = index.get(peer)
                            if idx is None or self.sources.get(peer) is not srcs[peer]:
                                continue  # a peer that came (or came back) after the index was written
                            e = memo.get(aid)
                            if e is None:
                                _pid, attrs, nh = tag_source(self.attrs, aid)
                                if nh:
                                    # RFC 6396 §4.3.4: the MP next hop in an
                                    # abbreviated MP_REACH_NLRI.
                                    attrs = mrt.rib_attrs(attrs, nh)
                                e = memo[aid] = (idx, orig[peer], attrs)
                            if path_id:
                                addpath = True
                            ents.append((e, path_id))
                        if not ents:
                            continue
                        out = [u32(seq & 0xFFFFFFFF), raw, u16(len(ents))]
                        for (idx, o, attrs), path_id in ents:
                            # RFC 8050 §4: the _ADDPATH subtypes put a path
                            # identifier in every entry.
                            out.append(_RIB_ENT_AP.pack(idx, o, path_id, len(attrs)) if addpath
                                       else _RIB_ENT.pack(idx, o, len(attrs)))
                            out.append(attrs)
                        body = b"".join(out)
                        w.write_raw(hdr(ts, mrt.TABLE_DUMP_V2, sub + (6 if addpath else 0), len(body)) + body)
                        seq += 1
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

    # -- Control: neighbours ---------------------------------------------------------------------

    def neighbors(self) -> list:
        if self.speaker is None:
            return []
        stats = self._peer_stats()
        return [self._summary(nb, ctl.NeighborSummary, stats) for nb in self.speaker.neighbors.values()]

    def neighbor(self, address: str) -> ctl.NeighborDetail:
        nb = self._nb(address)
        d = self._summary(nb, ctl.NeighborDetail, self._peer_stats())
        s = nb.session
        neg = nb.negotiated
        conn = nb.connection
        if conn is not None:
            d.local_address = conn.local_address
            d.remote_port = conn.peer_port
        d.remote_id = nb.remote_id
        if s is not None:
            d.hold_time = s.fsm.negotiated_hold_time
            d.keepalive = s.fsm.negotiated_keepalive_time
            d.capabilities_sent = msgspec.to_builtins(list(s.local_capabilities))
            d.capabilities_received = msgspec.to_builtins(list(s.remote_capabilities))
        if neg is not None:
            d.families = sorted(_FAMILY_NAME.get(f, "%d/%d" % f) for f in neg.families)
            d.four_octet_as = neg.as4
            d.addpath_rx = sorted(_FAMILY_NAME.get(f, "%d/%d" % f) for f in neg.addpath_rx)
            d.addpath_tx = sorted(_FAMILY_NAME.get(f, "%d/%d" % f) for f in neg.addpath_tx)
            d.extended_message = neg.extended_message
            d.graceful_restart = neg.graceful_restart is not None
        if nb.last_notification_sent is not None:
            d.last_notification_sent = _notif(nb.last_notification_sent)
        if nb.last_notification_received is not None:
            d.last_notification_received = _notif(nb.last_notification_received)
        return d

    def _summary(self, nb, cls, stats):
        c = nb.counters
        s, r = c.sent, c.received
        counters = ctl.Counters(
            sent_open=s.open, sent_update=s.update, sent_notification=s.notification, sent_keepalive=s.keepalive,
            sent_refresh=s.refresh, sent_total=s.total, received_open=r.open, received_update=r.update,
            received_notification=r.notification, received_keepalive=r.keepalive, received_refresh=r.refresh,
            received_discarded=r.discarded, received_total=r.total,
        )
        st = stats.get(nb.pid, (0, 0))
        reason = nb.last_reason
        downtime = None
        if not nb.established and c.downtime is not None:
            downtime = max(time.time() - c.downtime, 0.0)
        return cls(
            address=nb.address,
            peer_as=nb.config.peer_as,
            local_as=nb.local_as,
            description=nb.cfg.description or "",
            state=nb.state.name.lower(),
            admin_down=bool(nb.admin_down),
            uptime=nb.uptime,
            downtime=downtime,
            established_count=c.established_count,
            last_reason=None if reason is None else reason.value,
            last_error=nb.last_error,
            prefixes_received=self._path_count(nb),
            prefixes_accepted=st[0],
            prefixes_advertised=st[1],
            counters=counters,
        )

    def _path_count(self, nb):
        n = 0
        for rib in self.ribs.values():
            if nb.pid >= 0 and rib.has_peer(nb.pid):
                n += rib.peer_path_count(nb.pid)
        return n

    def _peer_stats(self, force=False):
        """{pid: (best paths from it, prefixes in its Adj-RIB-Out)} from one
        walk of each Loc-RIB (every attribute group names its source), then
        the members' groups' cached export decisions.  Cached for STATS_TTL
        seconds while the RIB changes."""
        now = time.monotonic()
        if not force and self._stats is not None and (
            self._stats_at[0] == self._changes or now - self._stats_at[1] < STATS_TTL
        ):
            return self._stats
        best = {}
        adv = {}
        for fam, rib in self.ribs.items():
            groups = [g for g in self.groups.values() if g.family == fam and g.members]
            for aid, packed in rib.dump_best():
                pid, attrs, nh = tag_source(self.attrs, aid)
                n = codec.count_prefixes(packed, fam[0])
                best[pid] = best.get(pid, 0) + n
                src = self.sources.get(pid)
                if src is None:
                    continue
                for g in groups:
                    res = g.export(src, attrs, nh)
                    if res is None:
                        continue
                    k = n
                    if len(res) == 3:
                        # Prefix-dependent export policy: ask per prefix.
                        k = sum(1 for _i, ad, pl in codec.unpack_prefixes(packed, fam[0], False)
                                if g.export_prefix(src, res[0], res[1], (fam[0], ad, pl)) is not None)
                    for mpid in g.members:
                        if mpid != pid:
                            adv[mpid] = adv.get(mpid, 0) + k
        self._stats = {pid: (best.get(pid, 0), adv.get(pid, 0)) for pid in set(best) | set(adv)}
        self._stats_at = (self._changes, now)
        return self._stats

    async def enable(self, address: str) -> None:
        self._nb(address).enable()

    async def disable(self, address: str, message: str = "") -> None:
        self._nb(address).disable(message)

    async def reset(self, address: str, message: str = "") -> None:
        self._nb(address).reset(message)

    async def soft_reset(self, address: str, direction: str = "both") -> None:
        nb = self._nb(address)
        if direction not in ("in", "out", "both"):
            raise ValueError("direction must be in, out or both")
        if not nb.established:
            raise RuntimeError("neighbour %s is not established" % nb.address)
        if direction in ("in", "both"):
            self._soft_in(nb)
        if direction in ("out", "both"):
            for fam in list(nb.groups):
                self._submit_redump(nb, fam, rejected_as_withdraw=True, rejoin=True)

    def _soft_in(self, nb):
        """Re-run import policy: ROUTE-REFRESH to the peer (RFC 2918) when it
        supports it, else re-import the stored pre-policy Adj-RIB-In."""
        self._bind_policy(nb)
        neg = nb.negotiated
        if neg is not None and neg.route_refresh:
            for fam in sorted(neg.families):
                if fam in self.ribs:
                    nb.request_refresh(fam)
            return
        for fam, pre in self.pre_ribs.items():
            if not pre.has_peer(nb.pid):
                continue
            addpath = fam in self.sources[nb.pid].addpath_rx
            for aid, packed in list(pre.dump_peer(nb.pid, addpath)):
                _pid, attrs, nh = tag_source(self.attrs, aid)
                self._announce_in(nb, fam, attrs, nh, packed, addpath, keep_pre=False)

    # -- Control: RIB views -----------------------------------------------------------------------

    def _route_base(self, attrs, nh, memo):
        key = (attrs, nh)
        base = memo.get(key)
        if base is None:
            base = memo[key] = _route_fields(attrs, nh)
        return base

    def _source_name(self, pid):
        if pid == LOCAL_PID:
            return "local"
        src = self.sources.get(pid)
        return src.address if src is not None else None

    def _resolved(self, items):
        """[(pid, attrs, nh, packed, aid)] of RIB (attr id, packed) items,
        resolved now (ids may be reused once the RIB moves on)."""
        out = []
        for aid, packed in items:
            pid, attrs, nh = tag_source(self.attrs, aid)
            out.append((pid, attrs, nh, packed, aid))
        return out

    def _routes_of(self, fam, items, best, memo, addpath=False, stale_check=None):
        out = []
        afi = fam[0]
        for pid, attrs, nh, packed, aid in items:
            base = self._route_base(attrs, nh, memo)
            source = self._source_name(pid)
            for path_id, addr, plen in codec.unpack_prefixes(packed, afi, addpath):
                p = _prefix_text(afi, addr, plen)
                is_best = best if best is not None else (self.ribs[fam].best(p) == (pid, aid))
                stale = bool(stale_check and stale_check(p, pid))
                out.append(ctl.Route(prefix=p, source=source, best=is_best, stale=stale,
                                     path_id=path_id if addpath else None, **base))
        return out

    def _stale_checker(self, fam):
        rib = self.ribs[fam]
        stale_pids = {nb.pid for nb in self.speaker.neighbors.values() if fam in nb.stale_fams}
        if not stale_pids:
            return None

        def check(prefix, pid):
            if pid not in stale_pids:
                return False
            bp = rib.best_path(prefix)
            return bool(bp and bp[0] == pid and bp[3] & 1)

        return check

    def rib(self, family: str, prefix: Optional[str] = None, longest_match: bool = False) -> list:
        fam = _family(family)
        rib = self.ribs[fam]
        memo = {}
        if prefix is None:
            return self._routes_of(fam, self._resolved(rib.dump_best()), True, memo,
                                   stale_check=self._stale_checker(fam))
        if longest_match:
            hit = rib.longest_match(prefix)
            if hit is None:
                return []
            prefix = hit[0]
        out = []
        best = rib.best_path(prefix)
        hit = rib.lookup(prefix)
        p = hit[0] if hit else str(prefix)
        for peer, path_id, aid, flags in rib.paths(prefix):
            _pid, attrs, nh = tag_source(self.attrs, aid)
            base = self._route_base(attrs, nh, memo)
            out.append(ctl.Route(prefix=p, source=self._source_name(peer),
                                 best=best is not None and best[:3] == (peer, path_id, aid),
                                 stale=bool(flags & 1), path_id=path_id or None, **base))
        return out

    async def iter_rib(self, family: str, chunk: int = 10000) -> AsyncIterator[list]:
        fam = _family(family)
        rib = self.ribs[fam]
        items = self._resolved(rib.dump_best())  # a snapshot: the RIB may change while streaming
        memo = {}
        check = self._stale_checker(fam)
        buf = []
        for aid_packed in items:
            buf.extend(self._routes_of(fam, (aid_packed,), True, memo, stale_check=check))
            while len(buf) >= chunk:
                yield buf[:chunk]
                buf = buf[chunk:]
                await asyncio.sleep(0)
        if buf:
            yield buf

    def adj_rib_in(self, address: str, family: str) -> list:
        nb = self._nb(address)
        fam = _family(family)
        rib = self.ribs[fam]
        if nb.pid < 0 or not rib.has_peer(nb.pid):
            return []
        src = self.sources.get(nb.pid)
        addpath = src is not None and fam in src.addpath_rx
        return self._routes_of(fam, self._resolved(rib.dump_peer(nb.pid, addpath)), None, {}, addpath=addpath,
                               stale_check=self._stale_checker(fam))

    def adj_rib_out(self, address: str, family: str) -> list:
        nb = self._nb(address)
        fam = _family(family)
        g = nb.groups.get(fam)
        if g is None:
            return []
        rib = self.ribs[fam]
        memo = {}
        out = []
        afi = fam[0]
        for aid, packed in rib.dump_best(exclude_peer=nb.pid):
            pid, attrs, nh = tag_source(self.attrs, aid)
            src = self.sources.get(pid)
            if src is None:
                continue
            res = g.export(src, attrs, nh)
            if res is None:
                continue
            for _p, addr, plen in codec.unpack_prefixes(packed, afi, False):
                o = res
                if len(res) == 3:
                    o = g.export_prefix(src, res[0], res[1], (afi, addr, plen))
                    if o is None:
                        continue
                base = self._route_base(o[0], o[1], memo)
                out.append(ctl.Route(prefix=_prefix_text(afi, addr, plen), source=self._source_name(pid),
                                     best=True, **base))
        return out

    def rib_summary(self) -> list:
        return [
            ctl.RibSummary(family=_FAMILY_NAME[fam], prefixes=len(rib), paths=rib.path_count(),
                           attribute_sets=len(self.attrs))
            for fam, rib in self.ribs.items()
        ]

    # -- Control: origination ----------------------------------------------------------------------

    def _routes_from_request(self, req: ctl.Announce, withdraw=False):
        if not req.prefixes:
            raise ValueError("prefixes: at least one prefix is needed")
        out = []
        for i, p in enumerate(req.prefixes):
            try:
                net = ipaddress.ip_network(str(p), strict=False)
            except ValueError as exc:
                raise ValueError("prefixes[%d]: not an IP prefix: %r (%s)" % (i, p, exc)) from None
            if withdraw:
                out.append(cfgmod.Route(prefix=str(net)))
                continue
            raw = {"prefix": str(net), "as-path": list(req.as_path), "origin": req.origin,
                   "communities": list(req.communities), "large-communities": list(req.large_communities)}
            if req.next_hop is not None:
                nh = ipaddress.ip_address(req.next_hop)
                if nh.version != net.version:
                    raise ValueError("next_hop: IPv%d next hop for the IPv%d prefix %s" % (nh.version, net.version, net))
                raw["next-hop"] = str(nh)
            if req.med is not None:
                raw["med"] = req.med
            if req.local_pref is not None:
                raw["local-pref"] = req.local_pref
            try:
                r = msgspec.convert(raw, cfgmod.Route)
            except msgspec.ValidationError as exc:
                raise ValueError(str(exc)) from None
            for j, c in enumerate(r.communities):
                cfgmod.parse_community(c)
            for c in r.large_communities:
                cfgmod.parse_large_community(c)
            out.append(r)
        return out

    async def announce(self, request: ctl.Announce) -> int:
        routes = self._routes_from_request(request)
        for r in routes:
            self._originate_route(r, "api")
        return len(routes)

    async def withdraw(self, request: ctl.Announce) -> int:
        n = 0
        for r in self._routes_from_request(request, withdraw=True):
            (afi, addr, plen), _block, _nh = encode_route(r)
            packed = bytes((plen,)) + addr[: (plen + 7) >> 3]
            if self._unoriginate((afi, 1), packed):
                n += 1
        return n

    # -- Control: reload ----------------------------------------------------------------------------

    async def reload(self) -> dict:
        """Re-read the configuration file and apply the difference.  A bad
        file raises ConfigError and changes nothing."""
        if not self.config_path:
            raise cfgmod.ConfigError([("", "the daemon was not started from a configuration file")])
        new = cfgmod.load_config(self.config_path)
        return await self.apply_config(new)

    async def apply_config(self, new: cfgmod.Config) -> dict:
        old = self.config
        d = cfgmod.diff(old, new)
        engine = compile_policies(new)  # before anything changes
        if not self.started:
            self.config, self.engine = new, engine
            return msgspec.to_builtins(d)
        g_old, g_new = old.global_, new.global_
        if g_old.listen_endpoints() != g_new.listen_endpoints():
            await self.speaker.rebind(g_new.listen_endpoints())  # may raise: nothing else changed yet
        self.config = new
        self.engine = engine
        self._setup_observe(new)
        if g_old.mrt != g_new.mrt:
            await self._stop_mrt()
            self._start_mrt(g_new.mrt)
        self._cluster_id = ipaddress.IPv4Address(g_new.effective_cluster_id).packed
        if (g_old.asn, g_old.router_id) != (g_new.asn, g_new.router_id):
            # Every neighbour is reset (config.diff): the ones created below
            # must use the new identity in their OPEN.
            sp = self.speaker
            sp.asn = g_new.asn
            sp.router_id = g_new.router_id
            sp.router_id_int = int(ipaddress.IPv4Address(g_new.router_id))
            self.sources[LOCAL_PID].router_id = sp.router_id_int
        changed = {c.address: c for c in d.changed}
        for addr in d.removed:
            self._remove_neighbor(addr, "de-configured")
        resets = [a for a, c in changed.items() if c.action == "reset"]
        for addr in resets:
            self._remove_neighbor(addr, "configuration changed", config_change=True)
            self._add_neighbor(new.neighbor(addr))
        for addr in d.added:
            self._add_neighbor(new.neighbor(addr))
        if d.dynamic_changed:
            for nb in [n for n in self.speaker.neighbors.values() if n.dynamic]:
                self._remove_neighbor(nb.address, "dynamic neighbour settings changed", config_change=True)
        # Every neighbour that stays: new engine, new config object.
        cluster_changed = "cluster-id" in d.global_changed or "router-id" in d.global_changed
        for nb in list(self.speaker.neighbors.values()):
            if nb.dynamic or nb.address in resets or nb.address in d.added:
                continue
            cfgn = new.neighbor(nb.address)
            if cfgn is None:
                continue
            nb.cfg = cfgn
            nb.config.description = cfgn.description
            self._bind_policy(nb)
        for g in list(self.groups.values()):
            chain = engine.chain(g.chain.names, "export", "accept" if g.chain.default_accept else "reject")
            g.set_policy(engine, chain, g.pctx)
        for addr, c in changed.items():
            if c.action != "soft":
                continue
            nb = self.speaker.neighbors.get(addr)
            if nb is None or not nb.established:
                continue
            if c.soft_import:
                self._soft_in(nb)
            if c.soft_export:
                for fam in list(nb.groups):
                    self._submit_redump(nb, fam, rejected_as_withdraw=True, rejoin=True)
        if cluster_changed:
            for nb in list(self.speaker.neighbors.values()):
                if nb.established and not nb.ebgp:
                    for fam in list(nb.groups):
                        self._submit_redump(nb, fam, rejected_as_withdraw=True, rejoin=True)
        # Originated routes.
        old_routes = {str(ipaddress.ip_network(r.prefix)): r for r in old.routes}
        new_routes = {str(ipaddress.ip_network(r.prefix)): r for r in new.routes}
        for p in d.routes_removed:
            r = old_routes[p]
            (afi, addr, plen), _b, _n = encode_route(r)
            self._unoriginate((afi, 1), bytes((plen,)) + addr[: (plen + 7) >> 3])
        for p in d.routes_added + d.routes_changed:
            self._originate_route(new_routes[p], "config")
        for cb in list(self.on_reload):
            try:
                await cb(old, new, d)
            except Exception:
                log.exception("reload hook %r failed", cb)
        summary = msgspec.to_builtins(d)
        log.info("configuration reloaded: %s", summary or "no change")
        return summary

    # -- Control: events ----------------------------------------------------------------------------

    async def watch(self) -> AsyncIterator:
        q = asyncio.Queue(_WATCH_QUEUE)
        self._watchers.add(q)
        try:
            while True:
                ev = await q.get()
                if ev is None:
                    return
                yield ev
        finally:
            self._watchers.discard(q)

    def _emit(self, ev):
        for q in list(self._watchers):
            try:
                q.put_nowait(ev)
            except asyncio.QueueFull:
                self.events_dropped += 1

    def _state_event(self, nb, old, new, reason):
        if self.mrt is not None:
            self.mrt.state_change(nb, old, new)
        if self._watchers:
            self._emit(ctl.StateChange(time=time.time(), neighbor=nb.address, old=old.name.lower(),
                                       new=new.name.lower(), reason=None if reason is None else reason.value))

    def _update_event(self, nb, parsed):
        prefixes = []
        afi = AFI_IPV4
        packed = parsed.nlri
        if not packed and parsed.mp_reach is not None:
            afi, packed = parsed.mp_reach[0], parsed.mp_reach[3]
        if packed:
            try:
                rx = (afi, 1) in nb.session.ctx.addpath_rx if nb.session else False
                prefixes = [_prefix_text(afi, a, p) for _i, a, p in codec.unpack_prefixes(packed, afi, rx)[:16]]
            except Exception:
                prefixes = []
        self._emit(ctl.UpdateReceived(time=time.time(), neighbor=nb.address, announced=parsed.n_announced,
                                      withdrawn=parsed.n_withdrawn, prefixes=prefixes))

    def _best_events(self, fam, cs):
        now = time.time()
        name = _FAMILY_NAME[fam]
        afi = fam[0]
        left = _BEST_EVENTS_MAX
        memo = {}
        for aid, packed in cs.announced.items():
            pid, attrs, nh = tag_source(self.attrs, aid)
            base = self._route_base(attrs, nh, memo)
            for _i, addr, plen in codec.unpack_prefixes(packed, afi, False)[:left]:
                p = _prefix_text(afi, addr, plen)
                self._emit(ctl.BestChange(time=now, family=name, prefix=p,
                                          route=ctl.Route(prefix=p, source=self._source_name(pid), best=True, **base)))
                left -= 1
            if left <= 0:
                return
        if cs.withdrawn:
            for _i, addr, plen in codec.unpack_prefixes(cs.withdrawn, afi, False)[:left]:
                self._emit(ctl.BestChange(time=now, family=name, prefix=_prefix_text(afi, addr, plen), route=None))

    def set_log_level(self, level: str) -> None:
        try:
            from fastbgp.control import logs
        except ImportError:  # pragma: no cover
            logging.getLogger("fastbgp").setLevel(level.upper())
            return
        logs.set_level(level)


# ---------------------------------------------------------------- MRT dumps

# RFC 6396 §2 header with the §3 microsecond field of the _ET types.
_MRT_ET_HDR = struct.Struct(">IHHII")
_MRT_HDR = struct.Struct(">IHHI")
_BGP_LEN_TYPE = struct.Struct(">HB")
_RIB_ENT = struct.Struct(">HIH")  # RFC 6396 §4.3.4 RIB entry header
_RIB_ENT_AP = struct.Struct(">HIIH")  # RFC 8050 §4: with a path identifier
_U32 = struct.Struct(">I")
_U16 = struct.Struct(">H")
_MRT_FLUSH_S = 1.0
_INJECT_CTX = codec.Context(as4=True, extended_message=True)


def _update_family(body):
    """(afi, safi) an UPDATE body is about: IPv4 unicast for withdrawn
    routes or NLRI, else its MP_REACH/MP_UNREACH_NLRI; only needed to pick
    the MRT subtype of ADD-PATH sessions (per family, RFC 7911)."""
    try:
        wlen = (body[0] << 8) | body[1]
        if wlen:
            return IPV4_UNICAST
        alen = (body[2] << 8) | body[3]
        i, end = 4, 4 + alen
        while i + 3 <= end:
            flags, t = body[i], body[i + 1]
            if flags & 0x10:
                ln, vs = (body[i + 2] << 8) | body[i + 3], i + 4
            else:
                ln, vs = body[i + 2], i + 3
            if t in (14, 15):
                return ((body[vs] << 8) | body[vs + 1], body[vs + 2])
            i = vs + ln
    except IndexError:
        pass
    return IPV4_UNICAST


class _MrtDumper:
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
            self.updates = mrt.RotatingMrtWriter(mcfg.updates.path, mcfg.updates.interval)
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
        head = mrt.bgp4mp_head(as4, neg.peer_asn, nb.local_as, peer_ip, local_ip) + b"\xff" * 16
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
                s = sub if not rx or _update_family(body) not in rx else sub_ap
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
            t.cancel()
            try:
                await t
            except (asyncio.CancelledError, Exception):
                pass
        self.w = None
        if self.updates is not None:
            try:
                self.updates.close()
            except OSError as exc:
                log.error("closing the MRT updates dump: %s", exc)


# ---------------------------------------------------------------- helpers


def _slices(delta):
    """``delta`` cut into pieces of about SLICE_PREFIXES prefixes (whole
    attribute groups; withdrawals in the first piece)."""
    if delta.n and delta.n <= SLICE_PREFIXES or len(delta.announced) <= 1:
        yield delta
        return
    piece = []
    size = 0
    first = True
    afi = delta.family[0]
    for item in delta.announced:
        piece.append(item)
        size += len(item[3]) // (4 if afi == AFI_IPV4 else 8) + 1
        if size >= SLICE_PREFIXES:
            yield Delta(delta.family, piece, delta.withdrawn if first else ([] if delta.addpath else b""),
                        delta.addpath, delta.rejected_as_withdraw, delta.dump)
            first = False
            piece = []
            size = 0
    if piece or first:
        yield Delta(delta.family, piece, delta.withdrawn if first else ([] if delta.addpath else b""),
                    delta.addpath, delta.rejected_as_withdraw, delta.dump)


def _distribute(g, out, targets=None):
    """Queue a group's encoded messages to its members (or ``targets``,
    [(pid, member)]): the same list objects to each (see export._Out)."""
    common, by_src, echo = out.common, out.by_src, out.echo
    for pid, m in (list(g.members.items()) if targets is None else targets):
        if common:
            m.send_messages(common)
        if by_src:
            for spid, msgs in by_src.items():
                if spid != pid:
                    m.send_messages(msgs)
            e = echo.get(pid)
            if e:
                m.send_messages(e)


def _add_attr(attrs, t, flags, value):
    items = {tt: (f, v) for f, tt, v in split_attrs(attrs)}
    items[t] = (flags, value)
    return b"".join(encode_attr(items[k][0], k, items[k][1]) for k in sorted(items))


def _notif(n) -> str:
    msg = n.shutdown_message
    text = "%d/%d %s" % (n.code, n.subcode, n.error_name)
    return text + (": %s" % msg if msg else "")


def _route_fields(attrs, nh) -> dict:
    """Route fields (fastbgp.control.contract.Route) of one attribute set: the
    speaker's decoded view, with each AS_SET kept as a nested list."""
    ra = _decode_path((attrs, nh))
    kw = {}
    if ra.origin is not None:
        kw["origin"] = ORIGIN_NAMES.get(ra.origin, str(ra.origin))
    if ra.as_path_segments:
        path = []
        for st, asns in ra.as_path_segments:
            if st == AS_SET:
                path.append(list(asns))
            else:
                path.extend(asns)
        kw["as_path"] = path
    for name in ("next_hop", "med", "local_pref"):
        value = getattr(ra, name)
        if value is not None:
            kw[name] = value
    for name in ("communities", "large_communities", "ext_communities"):
        value = getattr(ra, name)
        if value:
            kw[name] = list(value)
    return kw


# ---------------------------------------------------------------- entry points


async def run_daemon(config_path, *, log_level: Optional[str] = None, log_json: Optional[bool] = None,
                     api: bool = True, metrics: bool = True, ready=None, stop_event: Optional[asyncio.Event] = None,
                     dual_stack: bool = False) -> int:
    """Run ``fastbgp daemon -c config_path`` until SIGTERM/SIGINT (or
    ``stop_event``).  ConfigError propagates before anything starts.
    ``log_level``/``log_json`` override ``[global.log]``; ``api``/``metrics``
    False skip those listeners; ``ready(daemon)`` is called once running.
    SIGHUP reloads the file (a bad file is logged and changes nothing)."""
    cfg = cfgmod.load_config(config_path)
    try:
        from fastbgp.control import logs

        logs.setup(level=log_level or cfg.global_.log.level,
                   json=cfg.global_.log.json if log_json is None else log_json)
    except ImportError:  # pragma: no cover
        logging.basicConfig(level=(log_level or cfg.global_.log.level).upper())
    loop = asyncio.get_running_loop()
    daemon = Daemon(cfg, config_path, dual_stack=dual_stack)
    await daemon.start()
    servers = {}

    async def start_servers(c):
        if api:
            from fastbgp.control import api as api_mod

            servers["api"] = await api_mod.serve(daemon, c.global_.api)
        if metrics and c.global_.metrics.listen:
            from fastbgp.control import metrics as metrics_mod

            servers["metrics"] = await metrics_mod.serve(daemon, c.global_.metrics.listen)

    async def stop_servers():
        for name in ("api", "metrics"):
            s = servers.pop(name, None)
            if s is not None:
                try:
                    await s.stop()
                except Exception:
                    log.exception("stopping the %s listener failed", name)

    async def on_reload(old, new, d):
        g_old, g_new = old.global_, new.global_
        if g_old.log != g_new.log and log_level is None:
            try:
                from fastbgp.control import logs

                logs.setup(level=g_new.log.level, json=g_new.log.json if log_json is None else log_json)
            except ImportError:  # pragma: no cover
                pass
        if g_old.api != g_new.api or g_old.metrics != g_new.metrics:
            await stop_servers()
            await start_servers(new)

    daemon.on_reload.append(on_reload)
    try:
        await start_servers(cfg)
    except BaseException:
        await stop_servers()
        await daemon.stop()
        raise
    stop = stop_event or asyncio.Event()

    async def sighup():
        try:
            await daemon.reload()
        except cfgmod.ConfigError as exc:
            log.error("reload refused, configuration unchanged:\n%s", exc)
        except Exception:
            log.exception("reload failed")

    installed = []
    try:
        loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(sighup()))
        installed.append(signal.SIGHUP)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
    except (NotImplementedError, RuntimeError, ValueError):  # not the main thread
        pass
    if ready is not None:
        ready(daemon)
    try:
        await stop.wait()
    finally:
        for sig in installed:
            try:
                loop.remove_signal_handler(sig)
            except Exception:
                pass
        await stop_servers()
        await daemon.stop(message="daemon shutting down")
    return 0


def main_daemon(args) -> int:
    """``fastbgp daemon``: ``args.config`` (path); optional ``args.log_level``,
    ``args.log_json``.  Installs uvloop, runs until signalled; exit status 2
    on a configuration error."""
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    try:
        return asyncio.run(run_daemon(args.config, log_level=getattr(args, "log_level", None),
                                      log_json=getattr(args, "log_json", None)))
    except cfgmod.ConfigError as exc:
        print("fastbgp: configuration error in %s:\n%s" % (exc.source, exc), file=sys.stderr)
        return 2
    except OSError as exc:
        print("fastbgp: %s" % exc, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
