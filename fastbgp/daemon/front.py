"""``workers = N``: one daemon spread over N worker processes and a front.

At full-table scale one process spends its core storing and choosing paths
(bench/RESULTS.md, P8: a dozen prefix-table look-ups per path).  With
``[global] workers = N`` (0: one per core) ``fastbgp daemon`` runs N
workers (fastbgp.daemon.worker, forked before this front's event loop
starts: fastbgp.daemon.spawn), each a whole daemon whose RIB keeps one
shard of the prefix space (a fixed hash of the prefix: fastbgp.rib
``prefix_shard``), and this front, which

* listens and dials for BGP exactly as one daemon would (the neighbours'
  TCP MD5 keys and RFC 5082 settings, connect-retry), and relays each TCP
  connection to every worker (fastbgp.daemon.relay: each worker runs the
  session's FSM on the peer's bytes; their output is merged into one
  session);
* serves the configured API (and its CLI) over the workers
  (fastbgp.control.fanout: tables concatenated, counts summed, actions sent
  to all), so nothing outside sees more than one daemon;
* reloads (SIGHUP, ``POST /v1/reload``: every worker re-reads the file) and
  stops them (SIGTERM/SIGINT: each sends its Cease, worker 0's reaches the
  peer); a worker that dies stops the whole daemon (exit status 1, logged:
  a supervisor restarts it whole, never half a table).

What one process has and workers cannot share yet keeps the daemon in one
process, logged at WARNING with the reason (:func:`single_reasons`): BMP
stations, ``[[processes]]``, MRT dumps and a metrics endpoint.  Prefix
limits are judged on every shard's paths (fastbgp.daemon.shared_counts).

Owns: :class:`Front`, :func:`worker_count`, :func:`single_reasons`.
Calls: the session layer's listeners and transport, fastbgp.daemon.relay,
fastbgp.daemon.trim (its relay buffers freed after a burst), the control
API, the workers' handles (fastbgp.daemon.spawn.Workers, given).  Called by: fastbgp.daemon.process (``main_daemon``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import types
from typing import Optional

from fastbgp.config.checks import load_config
from fastbgp.config.errors import ConfigError
from fastbgp.control.fanout import FanoutControl
from fastbgp.daemon.peers import neighbor_config
from fastbgp.daemon.common import handled_signals
from fastbgp.daemon.relay import PeerSide, SessionRelay
from fastbgp.daemon.trim import HeapTrimmer
from fastbgp.daemon.views import endpoints_text
from fastbgp.session import transport as _transport
from fastbgp.session.counters import RefusedConnections
from fastbgp.session.listeners import ListenerManager

log = logging.getLogger("fastbgp.daemon")

READY_TIMEOUT = 120.0  # seconds a worker may take to start (it loads the RPKI file first)
STOP_TIMEOUT = 10.0  # seconds workers get to send their Ceases and exit
CONNECT_TIMEOUT = 10.0
# Octets relayed (both ways) that make a burst worth trimming the front's
# heap after (fastbgp.daemon.trim): not its sessions' KEEPALIVEs.
TRIM_OCTETS = 64 << 10
DIAL_POLL = 1.0  # seconds between looks at whether a neighbour wants a connection
# Bytes of a local relay socket's kernel buffers: a full-size UPDATE batch
# fits, so a worker reads the peer's table in few, large reads.
RELAY_BUFFER = 1 << 20


def worker_count(cfg) -> int:
    """How many workers ``cfg`` asks for (``workers = 0``: one per core
    this process may run on)."""
    n = cfg.global_.workers
    if n == 0:
        try:
            n = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):  # pragma: no cover - not Linux
            n = os.cpu_count() or 1
    return max(1, n)


def single_reasons(cfg) -> list:
    """Why ``cfg`` must run in one process (module docstring); empty when
    workers can share it."""
    why = []
    if cfg.bmp:
        why.append("[[bmp]] stations")
    if cfg.processes:
        why.append("[[processes]]")
    if cfg.global_.mrt.updates is not None or cfg.global_.mrt.rib is not None:
        why.append("[global.mrt] dumps")
    if cfg.global_.metrics.listen:
        why.append("global.metrics.listen")
    return why


class Front:
    """The front process of ``workers = N`` (module docstring)."""

    def __init__(self, cfg, config_path, workers):
        self.cfg = cfg
        self.config_path = config_path
        self.workers = workers  # fastbgp.daemon.spawn.Workers, forked before the loop ran
        self.n = len(workers.procs)
        self.procs: list = workers.procs
        self.relays: set = set()
        self.relayed = 0  # octets of the relays that ended (the trimmer's activity count)
        self.trimmer = HeapTrimmer(self.activity, min_step=TRIM_OCTETS)
        self.dialers: dict = {}  # address -> task
        self.live: dict = {}  # peer address -> number of relays running
        self.listeners: Optional[ListenerManager] = None
        self.nbs: list = []
        self.stopped = asyncio.Event()
        self.exit_status = 0
        self.stopping = False
        self.refused = RefusedConnections()  # from addresses with no neighbour (RFC 4271 §8)
        self.tasks: set = set()
        # async (address) -> the workers' NeighborDetail (FrontControl.neighbor):
        # whether to dial (``_wants``); None: dial whenever no session is up.
        self.state_probe = None

    def activity(self) -> int:
        """Octets relayed so far, both ways: a burst's freed buffers go back
        once it stopped moving (fastbgp.daemon.trim)."""
        return self.relayed + sum(r.octets_in + r.octets_out for r in self.relays)

    # -- workers ------------------------------------------------------------------------------

    async def start(self) -> None:
        try:
            await asyncio.gather(*(self._ready(p) for p in self.procs))
            for p in self.procs:
                self._task(self._watch(p))
            self._set_neighbors(self.cfg)
            self.listeners = ListenerManager(lambda: self.nbs, self._accepted)
            await self.listeners.start(self.cfg.global_.listen_endpoints())
        except BaseException:
            await self._stop_workers("daemon start failed")
            raise
        log.info("daemon started: AS%d router id %s, %d neighbours, %d workers, listening on %s",
                 self.cfg.global_.asn, self.cfg.global_.router_id, len(self.cfg.neighbors), self.n,
                 ", ".join("%s:%d" % a[:2] for a in self.listeners.addresses) or "nothing")

    async def _ready(self, p) -> None:
        loop = asyncio.get_running_loop()
        try:
            msg = await asyncio.wait_for(loop.sock_recv(p.ctl, 4096), READY_TIMEOUT)
        except asyncio.TimeoutError:
            raise OSError("worker %d did not start within %gs" % (p.k, READY_TIMEOUT)) from None
        if not msg:
            status = await p.wait()
            raise OSError("worker %d exited at start (status %s): see its messages above" % (p.k, status))

    async def _watch(self, p) -> None:
        status = await p.wait()
        if not self.stopping:
            log.error("worker %d (pid %d) exited with status %s: stopping the daemon", p.k, p.pid, status)
            self.exit_status = 1
            self.stopped.set()

    async def _stop_workers(self, message: str) -> None:
        self.stopping = True
        for p in self.procs:
            try:
                p.send({"op": "stop", "message": message})
            except OSError:
                pass
        for p in self.procs:
            try:
                await asyncio.wait_for(p.wait(), STOP_TIMEOUT)
            except asyncio.TimeoutError:
                log.error("worker %d did not stop within %gs: killed", p.k, STOP_TIMEOUT)
                p.kill()
                await p.wait()
        self.workers.remove()

    async def stop(self, message: str = "daemon shutting down") -> None:
        self.stopping = True
        for r in self.relays:
            r.closing = True
        for t in self.dialers.values():
            t.cancel()
        if self.listeners is not None:
            self.listeners.close()
        await self._stop_workers(message)
        for r in list(self.relays):
            r.end("daemon stopping")

    @property
    def api_sockets(self) -> list:
        return [p.api_socket for p in self.procs]

    # -- connections --------------------------------------------------------------------------

    def _set_neighbors(self, cfg):
        self.nbs = [types.SimpleNamespace(address=n.address, config=neighbor_config(n, cfg.global_))
                    for n in cfg.neighbors]

    def _accepted(self):
        return _Incoming(self)

    def relay(self, sock, peer_t=None, *, addresses: tuple) -> Optional[SessionRelay]:
        """Relay a TCP connection (``addresses``: peer, port, local, port) to
        every worker: a local socket pair per worker, one end handed over
        the control channel."""
        loop = asyncio.get_running_loop()
        peer = addresses[0]
        theirs, mine = [], []
        try:
            for p in self.procs:
                a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
                for s in (a, b):
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, RELAY_BUFFER)
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RELAY_BUFFER)
                    s.setblocking(False)
                theirs.append(a)
                mine.append(b)
            for p, s in zip(self.procs, theirs):
                p.send({"op": "conn", "addresses": list(addresses)}, s.fileno())
        except OSError as exc:
            log.error("cannot hand the connection from %s to the workers: %s", peer, exc)
            for s in mine:
                s.close()
            return None
        finally:
            for s in theirs:
                s.close()
        r = SessionRelay(loop, peer, self.n, on_end=self._ended)
        self.relays.add(r)
        self.live[peer] = self.live.get(peer, 0) + 1
        self._task(self._start_relay(r, sock, peer_t, mine))
        return r

    def _task(self, coro):
        """A task kept referenced until it ends (the loop holds tasks weakly)."""
        t = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(t)
        t.add_done_callback(self.tasks.discard)
        return t

    async def _start_relay(self, r, sock, peer_t, mine):
        try:
            await r.start(sock, mine, peer_transport=peer_t)
        except Exception as exc:
            log.error("relaying the session with %s failed: %s", r.peer, exc)

    def _ended(self, r):
        self.relays.discard(r)
        self.relayed += r.octets_in + r.octets_out
        left = self.live.get(r.peer, 1) - 1
        if left:
            self.live[r.peer] = left
        else:
            self.live.pop(r.peer, None)

    # -- dialing ------------------------------------------------------------------------------

    def dial(self, cfg):
        """Dial the neighbours of ``cfg`` that are not passive (once the
        front runs; again after a reload)."""
        want = {n.address: n for n in cfg.neighbors if not n.passive}
        for addr in list(self.dialers):
            if addr not in want:
                self.dialers.pop(addr).cancel()
        for addr, n in want.items():
            if addr not in self.dialers:
                self.dialers[addr] = asyncio.get_running_loop().create_task(self._dial(n, cfg.global_))

    async def _dial(self, n, glob):
        """Connect to ``n`` whenever no session with it is relayed and the
        workers' FSM for it wants one (worker 0's state is Active: not
        administratively down, not in its idle hold after a session ended,
        RFC 4271 §8.2.2); after a failed attempt, again after connect-retry
        (RFC 4271 §8.1.1)."""
        nc = neighbor_config(n, glob)
        while True:
            if self.live.get(n.address) or not await self._wants(n.address):
                await asyncio.sleep(DIAL_POLL)
                continue
            try:
                sock = await _transport.open_connection(
                    nc.address, nc.port, timeout=CONNECT_TIMEOUT, local_address=nc.local_address,
                    md5_password=nc.md5_password, ttl=nc.ttl, gtsm=nc.gtsm, ebgp=n.ebgp)
            except OSError as exc:
                log.debug("connect to %s failed: %s", n.address, exc)
                await asyncio.sleep(nc.connect_retry)
                continue
            peer, local = sock.getpeername(), sock.getsockname()
            r = self.relay(sock, addresses=(_transport.normalize_address(peer[0]), peer[1],
                                            _transport.normalize_address(local[0]), local[1]))
            if r is None:
                sock.close()
                await asyncio.sleep(nc.connect_retry)
            else:
                await r.done.wait()

    async def _wants(self, address) -> bool:
        """Worker 0's FSM for ``address`` waits for a connection (every
        worker's is in the same state: they see the same sessions)."""
        if self.state_probe is None:
            return True
        try:
            nb = await self.state_probe(address)
        except Exception as exc:  # a worker going away: its watcher stops the daemon
            log.debug("state of %s unknown: %s", address, exc)
            return False
        return not nb.admin_down and nb.state == "active"

    # -- reload --------------------------------------------------------------------------------

    async def rebind(self, cfg) -> None:
        """A reload's listeners, before anything else changes: all of
        ``cfg``'s bound or none (ConfigError naming the setting)."""
        if self.cfg.global_.listen_endpoints() != cfg.global_.listen_endpoints():
            try:
                await self.listeners.rebind(cfg.global_.listen_endpoints())
            except OSError as exc:
                raise ConfigError([("global.listen", "cannot listen for BGP: %s" % (exc.strerror or exc))]) from None

    def reloaded(self, cfg) -> None:
        """After the workers took a new file: the front's TCP MD5 keys and
        whom it dials."""
        old_nbs, self.cfg = self.nbs, cfg
        self._set_neighbors(cfg)
        kept = {nb.address for nb in self.nbs}
        for nb in old_nbs:
            if nb.address not in kept:
                self.listeners.neighbor_removed(nb.address, nb.config.md5_password)
        for nb in self.nbs:
            self.listeners.neighbor_added(nb.address, nb.config.md5_password)
        self.dial(cfg)


class _Incoming(PeerSide):
    """The asyncio protocol of a connection a listener accepted: checks the
    peer and hands the connection to a relay, then forwards to it as
    :class:`fastbgp.daemon.relay.PeerSide` does."""

    def __init__(self, front: Front):
        super().__init__(None)
        self.front = front

    def connection_made(self, transport):
        peer = transport.get_extra_info("peername")
        local = transport.get_extra_info("sockname")
        addr = _transport.normalize_address(peer[0])
        front = self.front
        n = None if front.stopping else front.cfg.neighbor_for(addr)
        if n is None:
            # RFC 4271 §8: only configured neighbours (the workers would
            # refuse it too; no need to trouble them).  Counted per source,
            # logged at most once a minute per source, as one daemon does.
            front.refused.refuse_logged(addr, time.monotonic(), log)
            transport.abort()
            return
        nc = neighbor_config(n, front.cfg.global_)
        try:
            # The TTL policy of the session (RFC 5082, eBGP single hop) on
            # the TCP socket: the workers only see local sockets.
            _transport.apply_ttl(transport.get_extra_info("socket"), ttl=nc.ttl, gtsm=nc.gtsm, ebgp=n.ebgp,
                                 peer_family=_transport.address_family(addr))
        except OSError as exc:
            log.error("%s: cannot apply TTL settings to the accepted connection: %s", addr, exc)
            transport.abort()
            return
        transport.pause_reading()
        self.relay = front.relay(None, transport, addresses=(addr, peer[1],
                                                            _transport.normalize_address(local[0]), local[1]))
        if self.relay is None:
            transport.abort()


async def run_front(cfg, config_path, workers, *, ready=None, stop_event: Optional[asyncio.Event] = None) -> int:
    """Run the front of ``workers`` (fastbgp.daemon.spawn.Workers: forked
    before the loop ran) until SIGTERM/SIGINT, ``stop_event`` or a worker's
    death (status 1)."""
    from fastbgp.control import api as api_mod

    loop = asyncio.get_running_loop()
    g = cfg.global_
    front = Front(cfg, config_path, workers)
    await front.start()
    front.trimmer.start(loop)
    control = FrontControl(front)
    front.state_probe = control.neighbor
    front.dial(cfg)
    try:
        server = await api_mod.serve(control, g.api)
    except BaseException:
        front.trimmer.stop()
        await front.stop()
        raise
    stop = stop_event or asyncio.Event()
    try:
        with handled_signals(loop, control, stop):
            if ready is not None:
                ready(front)
            waits = [loop.create_task(front.stopped.wait()), loop.create_task(stop.wait())]
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for t in waits:
                    t.cancel()
    finally:
        front.trimmer.stop()
        await server.stop()
        await front.stop()
        await control.close()
    return front.exit_status


class FrontControl(FanoutControl):
    """The API's control object: the workers' merged view
    (fastbgp.control.fanout), with what only the front knows: its
    listeners, the connections it refused, the number of workers, its own
    log level, and a reload that also updates the front."""

    def __init__(self, front: Front):
        super().__init__(front.api_sockets)
        self.front = front

    async def global_info(self):
        g = await super().global_info()
        f = self.front
        g.listen = endpoints_text(f.listeners.addresses) if f.listeners is not None else []
        g.refused_unknown += f.refused.total
        g.workers = f.n
        return g

    async def reload(self) -> dict:
        """Every worker re-reads the file (each refuses a bad one, changing
        nothing), then the front takes its part.  A file asking for what
        workers cannot share is refused here first: they would each run
        it."""
        try:
            cfg = load_config(self.front.config_path)
            why = single_reasons(cfg)
            if why:
                raise ConfigError([("global.workers", "the daemon runs with %d workers, which cannot share %s: "
                                    "restart it to run in one process" % (self.front.n, ", ".join(why)))])
        except ConfigError as exc:
            log.warning("reload refused, configuration unchanged:\n%s", exc)
            raise
        await self.front.rebind(cfg)
        out = await super().reload()
        if cfg.global_.api != self.front.cfg.global_.api:
            log.warning("global.api changed: with workers it takes effect when the daemon restarts")
        self.front.reloaded(cfg)
        return out

    async def set_log_level(self, level: str) -> None:
        await super().set_log_level(level)
        from fastbgp.control import logs

        logs.set_level(level)
