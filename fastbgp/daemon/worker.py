"""One worker of a daemon run with ``workers = N`` (fastbgp.daemon.front).

A worker is a whole :class:`fastbgp.daemon.core.Daemon` built from the same
configuration file as the front, with four differences (:func:`adapt`,
applied to every file a reload reads too):

* its RIBs keep only shard k of N of the prefix space;
* it listens for no TCP connection and dials none (every neighbour is
  passive): the front holds the sessions' sockets and hands it one local
  stream socket per TCP connection (:meth:`Speaker.adopt`), with the
  connection's addresses, over the control channel;
* its API listens on a private unix socket only (the front serves the
  configured API, merged over the workers: fastbgp.control.fanout), and no
  metrics endpoint;
* workers 1..N-1 log what concerns sessions at ERROR and above
  (``SESSION_LOGGERS``): they see every session exactly as worker 0 does,
  so worker 0's log lines say it once; what concerns their own prefixes
  (route-server checks) they log as configured.

The control channel is a SOCK_SEQPACKET socket from the front, one message
a packet: ``{"op": "conn", "addresses": [peer, port, local, port]}`` with the
socket passed along (SCM_RIGHTS), ``{"op": "stop", "message": ...}``; the
worker sends ``{"op": "ready"}`` once it runs.  The front's end closing
stops the worker too (it never outlives its front).

Started by :func:`run` in a process fastbgp.daemon.spawn forked from the
front (COUNTS: the file of fastbgp.daemon.shared_counts it created).
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import shutil
import signal
import socket

import msgspec

from fastbgp.config.checks import load_config
from fastbgp.control import api as api_mod
from fastbgp.control import logs
from fastbgp.daemon.core import Daemon
from fastbgp.daemon.common import GC_THRESHOLDS, loop_factory
from fastbgp.daemon.shared_counts import SharedCounts

log = logging.getLogger("fastbgp.daemon.worker")

MAX_PACKET = 4096  # a control message (JSON) is far smaller


def adapt(cfg, api_socket: str):
    """The configuration a worker runs for the file's ``cfg`` (module
    docstring)."""
    g = msgspec.structs.replace(
        cfg.global_,
        listen=[],
        api=msgspec.structs.replace(cfg.global_.api, socket=api_socket, tcp=None, token=None),
        metrics=msgspec.structs.replace(cfg.global_.metrics, listen=None),
    )
    neighbors = [msgspec.structs.replace(n, passive=True) for n in cfg.neighbors]
    return msgspec.structs.replace(cfg, global_=g, neighbors=neighbors)


class Worker:
    def __init__(self, config_path, k: int, n: int, ctl: socket.socket, api_socket: str, counts_path: str,
                 config=None):
        self.config_path = config_path
        self.config = config  # the front's parse of config_path (None: read it here)
        self.counts_path = counts_path
        self.k, self.n = k, n
        self.ctl = ctl
        self.api_socket = api_socket
        self.daemon = None
        self.stop = asyncio.Event()
        self.stop_message = "daemon shutting down"
        self.adopting: set = set()
        self.orphaned = False  # the front went away without telling us

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        cfg = adapt(self.config if self.config is not None else load_config(self.config_path), self.api_socket)
        self.config = None
        self.daemon = Daemon(cfg, self.config_path, shard=(self.k, self.n),
                             adapt=lambda c: adapt(c, self.api_socket),
                             counts=SharedCounts(self.counts_path, self.n, self.k))
        await self.daemon.start()
        server = await api_mod.serve(self.daemon, cfg.global_.api)
        self.ctl.setblocking(False)
        loop.add_reader(self.ctl.fileno(), self._control)
        loop.add_signal_handler(signal.SIGTERM, self.stop.set)
        self.ctl.send(json.dumps({"op": "ready", "pid": os.getpid()}).encode())
        # What the start built (the configuration, policies, the API's app)
        # lives as long as the worker: out of the collector's sight, as the
        # front's imports are (fastbgp.daemon.spawn), so no full collection
        # walks it again.  (Young collections are rare while a table comes
        # in: one per worker in a P4 run, 0.5 ms, gc.callbacks.)
        gc.freeze()
        try:
            await self.stop.wait()
        finally:
            loop.remove_reader(self.ctl.fileno())
            await server.stop()
            await self.daemon.stop(message=self.stop_message)
            if self.orphaned and self.k == 0:
                # The front's private directory (API sockets, prefix counts):
                # the front removes it; gone without a word, it cannot.
                shutil.rmtree(os.path.dirname(self.api_socket), ignore_errors=True)
        return 0

    def _control(self):
        try:
            msg, fds, _flags, _addr = socket.recv_fds(self.ctl, MAX_PACKET, 1)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            log.error("worker %d: control channel failed (%s): stopping", self.k, exc)
            self.stop.set()
            return
        if not msg:
            # The front is gone: a worker never outlives it.
            log.error("worker %d: the front process is gone: stopping", self.k)
            self.orphaned = True
            self.stop_message = "daemon front process gone"
            self.stop.set()
            return
        try:
            req = json.loads(msg)
            op = req["op"]
        except (ValueError, KeyError, TypeError):
            log.error("worker %d: bad control message %r", self.k, msg[:80])
            for fd in fds:
                os.close(fd)
            return
        if op == "conn" and len(fds) == 1:
            sock = socket.socket(fileno=fds[0])
            task = asyncio.get_running_loop().create_task(self._adopt(sock, tuple(req["addresses"])))
            self.adopting.add(task)
            task.add_done_callback(self.adopting.discard)
        elif op == "stop":
            self.stop_message = str(req.get("message") or self.stop_message)
            self.stop.set()
        else:
            for fd in fds:
                os.close(fd)

    async def _adopt(self, sock, addresses):
        try:
            sock.setblocking(False)
            await self.daemon.speaker.adopt(sock, addresses)
        except Exception:
            log.exception("worker %d: taking the connection from %s failed", self.k, addresses[0])


class _Tag(logging.Filter):
    """Every record of worker k carries ``worker=k`` (a field of the
    key=value and JSON lines): the front and its workers share one log."""

    def __init__(self, k: int):
        super().__init__()
        self.k = k

    def filter(self, record):
        record.worker = self.k
        return True


# What every worker logs alike (sessions, neighbours, the RTR cache, its
# API): said by worker 0 only; the others log it from ERROR up.  The rest
# (route-server checks, exports) is about the worker's own prefixes.
SESSION_LOGGERS = ("fastbgp.speaker", "fastbgp.session", "fastbgp.daemon", "fastbgp.rpki", "fastbgp.api",
                   "fastbgp.metrics")
# ... but under them, what is about the worker's own prefixes (the
# importer's: our own address as next hop, RFC 8950, confederation loops).
SHARD_LOGGERS = ("fastbgp.daemon.import",)


def _logs(k: int, level: str, as_json: bool):
    logs.setup(level=level, json=as_json).addFilter(_Tag(k))
    if k:
        for name in SESSION_LOGGERS:
            logging.getLogger(name).setLevel(max(logging.ERROR, logging.getLevelName(level.upper())))
        for name in SHARD_LOGGERS:
            logging.getLogger(name).setLevel(logging.getLevelName(level.upper()))


def run(config_path, k: int, n: int, ctl: socket.socket, api_socket: str, counts_path: str, level: str = "info",
        as_json: bool = False, config=None) -> int:
    """Worker ``k`` of ``n``, in the process fastbgp.daemon.spawn forked for
    it: runs until told to stop or its front is gone; the exit status.
    ``config``: the front's parse of ``config_path`` (None: read the file)."""
    _logs(k, level, as_json)
    # The front handles the terminal's Ctrl-C and SIGHUP (it tells the
    # workers what to do); SIGTERM alone stops a worker directly.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    gc.set_threshold(*GC_THRESHOLDS)
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(Worker(config_path, k, n, ctl, api_socket, counts_path, config).run())
