"""``fastbgp daemon``: the BGP-4 router built from the library's parts.

Data flows one way, without a Python object per prefix on the hot path::

    socket -> Connection (framing, bounded slices) -> codec.parse_update
      -> Session / FSM -> DaemonNeighbor._session_update
      -> import checks + policy, once per attribute set (cached)   importer.py
      -> Rib.update / Rib.withdraw (compiled; Adj-RIB-In + Loc-RIB)
      -> ChangeSet {attr id: packed prefixes}
      -> export.UpdateGroup: export rules + policy per attribute set,
         codec.pack_updates once per group                        exporter.py
      -> the same list of bytes queued to every member's sender
      -> transport.writelines (paused by back-pressure)

Attribute sets are interned together with their source peer id
(:func:`fastbgp.rib.export.source_tag`), so every RIB result names where its
routes came from at the granularity of attribute groups.

This module owns :class:`Daemon`: the shared state (configuration, policy
engine, attribute table, RIBs, cluster id), the lifecycle (start, stop,
wait_idle) and the wiring of its collaborators, each in its own module:

* ``peers.PeerRegistry``     peer ids, sources, neighbours, sessions up/down
* ``importer.Importer``      received UPDATEs into the RIBs, import policy
* ``exporter.Exporter``      update groups and the export queue
* ``origination.Originator`` our own routes (config, API, inject)
* ``views.Views``            the control plane's read views
* ``events.EventStream``     the watch stream
* ``processes.ProcessManager`` ``[[processes]]``: ExaBGP-style programs
* ``mrt_dumps``              MRT update dumps and RIB snapshots
* ``reload``                 applying a new configuration
* ``process``                ``run_daemon`` / ``main_daemon``

:class:`Daemon` implements :class:`fastbgp.control.contract.Control` for the
API, the CLI and metrics by delegating to those.  It calls its
collaborators; the daemon's neighbours (``neighbor.py``) call it.

Work that can be large -- a session dropping a full table, a full dump to a
peer that just came up, a soft reconfiguration -- goes through one export
queue processed in slices, yielding to the event loop every few
milliseconds, so keepalives and the API keep running.  Small changes (one
received UPDATE) are exported inline when the queue is idle, which keeps the
common path free of task switches while preserving order.
"""

from __future__ import annotations

import asyncio
import importlib
import ipaddress
import logging
import time
from typing import AsyncIterator, Optional

from fastbgp.config import schema as cfgmod
from fastbgp.config.checks import load_config
from fastbgp.config.errors import ConfigError
from fastbgp.control import contract as ctl
from fastbgp.rib import AttrTable, Rib
from fastbgp.rib.policy import compile_policies
from fastbgp.wire.constants import AFI_IPV4, AFI_IPV6, IPV4_UNICAST, IPV6_UNICAST
from fastbgp.daemon import reload as reload_mod
from fastbgp.daemon.events import EventStream
from fastbgp.daemon.exporter import Exporter
from fastbgp.daemon.importer import Importer
from fastbgp.daemon.mrt_dumps import MrtDumper, start_dumps, write_rib_snapshot
from fastbgp.daemon.neighbor import DaemonSpeaker
from fastbgp.daemon.origination import Originator
from fastbgp.daemon.peers import PeerRegistry
from fastbgp.daemon.processes import ProcessManager
from fastbgp.daemon.trim import HeapTrimmer
from fastbgp.daemon.views import Views, endpoints_text

__all__ = ["Daemon", "preload"]

log = logging.getLogger("fastbgp.daemon")


def rpki_configured(rcfg) -> bool:
    """``[rpki]`` names a cache or a file: the RPKI feed runs."""
    return rcfg is not None and bool(rcfg.caches or rcfg.file)


def preload(config: cfgmod.Config) -> None:
    """Import the modules a daemon running ``config`` loads only when it is
    configured (the RPKI feed and RTR client), so that workers forked after
    this call (fastbgp.daemon.spawn) share their pages with the front
    instead of each loading its own copy (4.6 MB a worker for RPKI).  BMP
    keeps the daemon in one process, so it is never preloaded."""
    if rpki_configured(config.rpki):
        importlib.import_module("fastbgp.daemon.rpki_feed")


class Daemon:
    """The daemon core; implements :class:`fastbgp.control.contract.Control`.

    ``Daemon(config)`` from :func:`fastbgp.config.checks.load_config`;
    ``config_path`` is what :meth:`reload` re-reads.  ``await start()``
    binds the listeners and starts every neighbour; ``await stop()``.
    """

    def __init__(self, config: cfgmod.Config, config_path=None, *, dual_stack: bool = False,
                 shard: tuple = (0, 1), adapt=None, counts=None):
        """``shard`` (k, N): this daemon is worker k of N (``workers = N``,
        fastbgp.daemon.front) and its RIBs keep only shard k of the prefix
        space; ``counts``: the workers' shared_counts.SharedCounts (prefix
        limits on every shard's paths).  ``adapt``: a function of a Config
        to the Config to run, applied to every file a reload reads too (a
        worker's own settings)."""
        if not isinstance(config, cfgmod.Config):
            raise TypeError("Daemon needs a config.Config (config.load_config)")
        self.config = config
        self.config_path = config_path
        self.dual_stack = dual_stack
        self.engine = compile_policies(config)
        self.attrs = AttrTable()
        self.shard, self.shards = shard
        self.adapt = adapt
        self.counts = counts
        self.ribs = {IPV4_UNICAST: self.new_rib(AFI_IPV4), IPV6_UNICAST: self.new_rib(AFI_IPV6)}
        self.cluster_id = ipaddress.IPv4Address(config.global_.effective_cluster_id).packed
        self.loop: Optional[asyncio.AbstractEventLoop] = None
        self.speaker: Optional[DaemonSpeaker] = None
        self.started = False
        self.stopping = False
        self.on_reload: list = []  # async callables (old, new, diff) run after a reload
        # async callables (old, new) run before a reload changes anything:
        # they bind what the new configuration needs and return (commit,
        # abort) coroutine functions, or raise ConfigError to refuse it.
        self.on_prepare_reload: list = []
        self.mrt: Optional[MrtDumper] = None  # global.mrt dumps, while running
        self.bmp = None  # bmp_feed.BmpFeed of the [[bmp]] stations, while running
        self.on_reload.append(self.reload_bmp)
        self.rpki = None  # rpki_feed.RpkiFeed of [rpki], while running
        self.on_reload.append(self.reload_rpki)
        self.started_at = time.time()
        # The collaborators, each after those it calls.
        self.events = EventStream(self)
        self.exporter = Exporter(self, self.events)
        # A burst's freed heap back to the system once it settled.
        self.trimmer = HeapTrimmer(lambda: self.importer.calls + self.exporter.changes + self.exporter.queue.items_run)
        self.importer = Importer(self, self.exporter, self.events)
        self.peers = PeerRegistry(self, self.importer, self.exporter)
        self.originator = Originator(self, self.importer, self.exporter)
        self.views = Views(self, self.peers, self.exporter)
        self.processes = ProcessManager(self)  # [[processes]]: ExaBGP-style programs
        self.on_reload.append(self.processes.reload)
        # Their tables under the daemon's names (the same objects).
        self.sources: dict = self.peers.sources  # pid -> export.Source
        self.groups: dict = self.exporter.groups  # key -> UpdateGroup
        # family -> Rib of the pre-policy paths the post-policy RIB cannot
        # give back; the whole view: importer.prepolicy (daemon/prepolicy.py)
        self.pre_ribs: dict = self.importer.pre_ribs
        self.local_routes: dict = self.originator.local_routes  # family -> {packed prefix: origin}

    def new_rib(self, afi):
        """A RIB of ``afi`` on the daemon's attribute table, keeping only
        the daemon's shard of the prefix space."""
        return Rib(afi, self.attrs, shards=self.shards, shard=self.shard)

    def __repr__(self):
        return "<Daemon AS%d %s>" % (self.config.global_.asn, self.config.global_.router_id)

    @property
    def asn(self):
        return self.config.global_.asn

    @property
    def router_id(self):
        return self.config.global_.router_id

    @property
    def exports(self):
        """The export queue (:class:`fastbgp.daemon.exporter.ExportQueue`)."""
        return self.exporter.queue

    @exports.setter
    def exports(self, queue):
        self.exporter.queue = queue

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self):
        """Bind the listeners, start every neighbour, originate the
        configured routes.  Raises (and leaves nothing running) when a
        listener cannot be bound."""
        if self.started:
            return
        self.loop = asyncio.get_running_loop()
        g = self.config.global_
        self.exporter.start(self.loop)
        self.trimmer.start(self.loop)
        self.speaker = DaemonSpeaker(self, g.asn, g.router_id, listen=g.listen_endpoints(), dual_stack=self.dual_stack)
        try:
            await self.speaker.start()
        except BaseException:
            self.trimmer.stop()
            self.exporter.close()
            raise
        self.started = True
        self.started_at = time.time()
        # Before the neighbours: the file's VRPs are in place for the first UPDATE.
        self.start_rpki(self.config.rpki)
        self.start_mrt_dumps(g.mrt)
        self.start_bmp(self.config.bmp)
        for r in self.config.routes:
            self.originator.originate_route(r, "config")
        for n in self.config.neighbors:
            self.peers.add_neighbor(n)
        self.processes.start()
        if self.shards > 1:
            # fastbgp.daemon.front logs "daemon started" for the whole.
            log.info("worker %d of %d started: AS%d router id %s, %d neighbours", self.shard, self.shards, g.asn,
                     g.router_id, len(self.config.neighbors))
            return
        log.info("daemon started: AS%d router id %s, %d neighbours, listening on %s", g.asn, g.router_id,
                 len(self.config.neighbors), ", ".join(endpoints_text(self.speaker.listen_addresses)) or "nothing")

    async def stop(self, message: str = ""):
        if not self.started:
            return
        self.stopping = True
        await self.processes.stop()
        await self.speaker.stop(message=message)
        # After the speaker: the sessions' last state changes are in the dump.
        await self.stop_mrt_dumps()
        # After the speaker too: the stations hear every Peer Down first.
        await self.stop_bmp()
        await self.stop_rpki()
        self.trimmer.stop()
        self.exporter.close()
        self.started = False
        self.events.close()

    async def wait_idle(self):
        """Until the export queue is empty and every sender flushed (tests)."""
        await self.exports.wait_idle()
        for nb in list(self.speaker.neighbors.values()):
            try:
                await nb.flush(timeout=10)
            except asyncio.TimeoutError:
                pass

    # -- MRT dumps (global.mrt) and bulk inject ---------------------------------------------------

    def start_mrt_dumps(self, mcfg):
        self.mrt = start_dumps(self, mcfg)

    async def stop_mrt_dumps(self):
        d, self.mrt = self.mrt, None
        if d is not None:
            await d.close()

    # -- BMP stations ([[bmp]], daemon/bmp_feed.py) ---------------------------------------------

    def start_bmp(self, stations):
        """Connect to the configured BMP stations (none: nothing runs, and
        the BMP modules are never loaded)."""
        self.bmp = None
        if stations:
            from fastbgp.daemon.bmp_feed import BmpFeed

            self.bmp = BmpFeed(self, stations)

    async def reload_bmp(self, old, new, diff):
        """A reload that changed ``[[bmp]]`` (or our identity, which the
        stations were told): reconnect with the new settings; each station
        gets a fresh Initiation and dump."""
        g0, g1 = old.global_, new.global_
        if old.bmp != new.bmp or (new.bmp and (g0.asn, g0.router_id) != (g1.asn, g1.router_id)):
            await self.stop_bmp()
            self.start_bmp(new.bmp)

    async def stop_bmp(self):
        feed, self.bmp = getattr(self, "bmp", None), None
        if feed is not None:
            await feed.close()

    # -- RPKI ([rpki], daemon/rpki_feed.py) -----------------------------------------------------

    def start_rpki(self, rcfg):
        """Load the RPKI file and start the RTR client (none: nothing runs,
        and the RPKI modules are never loaded: 4.6 MB a process)."""
        if rpki_configured(rcfg):
            from fastbgp.daemon.rpki_feed import RpkiFeed

            self.rpki = RpkiFeed(self, rcfg)
            self.rpki.start()

    async def stop_rpki(self):
        feed, self.rpki = self.rpki, None
        if feed is not None:
            await feed.close()

    async def reload_rpki(self, old, new, diff):
        """A reload changed ``[rpki]``: the feed restarts its sources on the
        same tables; the JSON file is re-read on every reload."""
        if old.rpki == new.rpki:
            if self.rpki is not None and self.rpki.cfg.file:
                self.rpki.load_file()
            return
        if self.rpki is not None and rpki_configured(new.rpki):
            await self.rpki.reconfigure(new.rpki)
            return
        await self.stop_rpki()
        self.start_rpki(new.rpki)

    def rpki_info(self) -> ctl.RpkiInfo:
        return self.rpki.info() if self.rpki is not None else ctl.RpkiInfo()

    def rpki_validate(self, prefix: str, asn: int) -> ctl.RpkiValidation:
        """RFC 6811 state of ``prefix`` from ``asn``; LookupError without [rpki]."""
        if self.rpki is None:
            raise LookupError("no [rpki] configured")
        return ctl.RpkiValidation(prefix=prefix, origin_as=asn, state=self.rpki.validate(prefix, asn))

    async def write_mrt_rib(self, path, timestamp=None) -> int:
        """One TABLE_DUMP_V2 snapshot of the RIBs to ``path``; see
        :func:`fastbgp.daemon.mrt_dumps.write_rib_snapshot`."""
        return await write_rib_snapshot(self, path, timestamp)

    async def inject(self, groups) -> int:
        """Originate routes in bulk (``POST /v1/rib/inject``); see
        :meth:`fastbgp.daemon.origination.Originator.inject`."""
        return await self.originator.inject(groups)

    # -- Control: neighbours ---------------------------------------------------------------------

    def neighbors(self) -> list:
        return self.views.neighbors()

    def neighbor(self, address: str) -> ctl.NeighborDetail:
        return self.views.neighbor(address)

    async def enable(self, address: str) -> None:
        self.peers.get(address).enable()

    async def disable(self, address: str, message: str = "") -> None:
        self.peers.get(address).disable(message)

    async def reset(self, address: str, message: str = "") -> None:
        self.peers.get(address).reset(message)

    async def soft_reset(self, address: str, direction: str = "both") -> None:
        nb = self.peers.get(address)
        if direction not in ("in", "out", "both"):
            raise ValueError("direction must be in, out or both")
        if not nb.established:
            raise RuntimeError("neighbour %s is not established" % nb.address)
        if direction in ("in", "both"):
            self.importer.soft_in(nb)
        if direction in ("out", "both"):
            self.exporter.redump_all(nb)

    # -- Control: RIBs ---------------------------------------------------------------------------

    def rib(self, family: str, prefix: Optional[str] = None, longest_match: bool = False) -> list:
        return self.views.rib(family, prefix, longest_match)

    def iter_rib(self, family: str, chunk: int = 10000) -> AsyncIterator[list]:
        return self.views.iter_rib(family, chunk)

    def adj_rib_in(self, address: str, family: str) -> list:
        return self.views.adj_rib_in(address, family)

    def adj_rib_out(self, address: str, family: str) -> list:
        return self.views.adj_rib_out(address, family)

    def rib_summary(self) -> list:
        return self.views.rib_summary()

    def query_rib(self, family: str, query: ctl.RibQuery) -> list:
        return self.views.query_rib(family, query)

    def iter_query(self, family: str, query: ctl.RibQuery, chunk: int = 10000) -> AsyncIterator[list]:
        return self.views.iter_query(family, query, chunk)

    def global_info(self) -> ctl.GlobalInfo:
        return self.views.global_info()

    def policy_info(self) -> ctl.PolicyInfo:
        return self.views.policy_info()

    def process_info(self) -> list:
        """The ``[[processes]]`` programs' counters (list of ctl.ProcessInfo)."""
        return self.processes.info()

    async def announce(self, request: ctl.Announce) -> int:
        return self.originator.announce(request)

    async def withdraw(self, request: ctl.Announce) -> int:
        return self.originator.withdraw(request)

    # -- Control: reload, events, logs -----------------------------------------------------------

    async def reload(self) -> dict:
        """Re-read the configuration file and apply the difference.  A bad
        file raises ConfigError and changes nothing."""
        if not self.config_path:
            raise ConfigError([("", "the daemon was not started from a configuration file")])
        try:
            new = load_config(self.config_path)
            return await self.apply_config(new if self.adapt is None else self.adapt(new))
        except ConfigError as exc:
            log.warning("reload refused, configuration unchanged:\n%s", exc)
            raise

    async def apply_config(self, new: cfgmod.Config) -> dict:
        """Apply a new configuration; see :mod:`fastbgp.daemon.reload`."""
        return await reload_mod.apply_config(self, new)

    def watch(self) -> AsyncIterator[ctl.AnyEvent]:
        return self.events.watch()

    def set_log_level(self, level: str) -> None:
        try:
            from fastbgp.control import logs
        except ImportError:  # pragma: no cover
            logging.getLogger("fastbgp").setLevel(level.upper())
            return
        logs.set_level(level)

    # -- called by the daemon's neighbours (neighbor.py); the rest they call on the collaborators

    def state_changed(self, nb, old, new, reason):
        """A neighbour changed state: to the MRT dump and the watchers."""
        if self.mrt is not None:
            self.mrt.state_change(nb, old, new)
        if self.events.watchers:
            self.events.state_change(nb, old, new, reason)
        if self.processes.programs:
            self.processes.state_change(nb, old, new, reason)
