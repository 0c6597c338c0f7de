"""Starting the worker processes of ``workers = N``: forked from the
``fastbgp daemon`` process before its event loop runs.

Why forked rather than started afresh: a worker is a whole daemon, so each
imports the same modules (the interpreter's own, aiohttp for its private
API, msgspec, the codec, the RIB): about 33 MB of private heap per process
when each imports them itself.  Forked once the front has imported them, and
after ``gc.freeze()`` (so that no collection ever writes the GC headers of
those objects, which would copy their pages), the workers share those pages
with the front copy-on-write; a worker's own memory is then what it holds:
its shard of the RIB and its sessions (bench/RESULTS.md, "forked workers").

Forking is only safe before anything runs: no event loop, no thread, no
socket but the control channels made here.  :func:`start_workers` is
therefore called by fastbgp.daemon.process before the loop starts; in the
parent it returns the workers, in each child it never returns (the child
runs fastbgp.daemon.worker and leaves with ``os._exit``).

Each worker gets: its control channel (a SOCK_SEQPACKET socket; the front
keeps the other end, and every other end is closed in the child, so that
the front's end closing is seen as the front gone), a private directory's
API socket path and the shared prefix-count file (fastbgp.daemon.shared_counts).

Owns: :class:`WorkerProcess`, :class:`Workers`, :func:`start_workers`.
Calls: fastbgp.daemon.worker (in the child), fastbgp.daemon.shared_counts,
fastbgp.heap (the heap trimmed before the fork).
Called by: fastbgp.daemon.process (before the loop) and fastbgp.daemon.front.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import random
import shutil
import socket
import sys
import tempfile
import threading
import traceback
from typing import Optional

# Everything a worker runs (the daemon, its API, the logs, uvloop) is
# imported with this module, before any fork, so its pages are shared.
from fastbgp import heap
from fastbgp.daemon import shared_counts, worker

log = logging.getLogger("fastbgp.daemon")

# Octets of connections handed over, queued towards one worker: room for
# many while the worker is busy; a full channel refuses the connection
# (logged by the front), it never blocks the front.
CONTROL_BUFFER = 1 << 20


class WorkerProcess:
    """The front's handle on worker ``k``: its pid, the front's end of the
    control channel, the path of its private API socket."""

    def __init__(self, k: int, pid: int, ctl: socket.socket, api_socket: str):
        self.k = k
        self.pid = pid
        self.ctl = ctl
        self.api_socket = api_socket
        self._exit: Optional[asyncio.Future] = None
        self._pidfd: Optional[int] = None

    def send(self, req: dict, fd: Optional[int] = None) -> None:
        """One control message (JSON), with ``fd`` passed along (SCM_RIGHTS)."""
        data = json.dumps(req).encode()
        if fd is None:
            self.ctl.send(data)
        else:
            socket.send_fds(self.ctl, [data], [fd])

    def wait(self) -> asyncio.Future:
        """The worker's exit status (as ``subprocess``: -N for signal N),
        once it has exited; any number of callers may wait.  The process is
        watched through a pidfd (Linux 5.3), so no SIGCHLD handler is
        needed and no other child's status is ever reaped."""
        if self._exit is None:
            loop = asyncio.get_running_loop()
            self._exit = loop.create_future()
            try:
                self._pidfd = os.pidfd_open(self.pid)
            except ProcessLookupError:  # already reaped
                self._exit.set_result(self._reap())
            else:
                loop.add_reader(self._pidfd, self._exited, loop)
        return asyncio.shield(self._exit)

    def _exited(self, loop) -> None:
        loop.remove_reader(self._pidfd)
        os.close(self._pidfd)
        self._pidfd = None
        if not self._exit.done():
            self._exit.set_result(self._reap())

    def _reap(self) -> Optional[int]:
        try:
            _pid, status = os.waitpid(self.pid, 0)
        except ChildProcessError:
            return None
        return os.waitstatus_to_exitcode(status)

    def kill(self) -> None:
        try:
            os.kill(self.pid, 9)
        except ProcessLookupError:
            pass


class Workers:
    """The N workers and their private directory (API sockets, the shared
    prefix-count file), removed by :meth:`remove` once they have exited."""

    def __init__(self, directory: str, counts_path: str, procs: list):
        self.dir = directory
        self.counts_path = counts_path
        self.procs = procs

    def remove(self) -> None:
        for p in self.procs:
            try:
                p.ctl.close()
            except OSError:
                pass
        shutil.rmtree(self.dir, ignore_errors=True)


def start_workers(config_path: str, n: int, *, log_level: str, log_json: bool, config=None) -> Workers:
    """Fork ``n`` workers running ``config_path`` (module docstring), from
    ``config`` when given: the front's own parse of that file, so front and
    workers start from the same text even if the file changes meanwhile,
    and the workers parse nothing (their copy is the front's pages).  In the
    parent: the :class:`Workers` (each worker says ``ready`` on its channel
    once it runs).  In a child: never returns.  OSError when a worker cannot
    be started (those already started see their channel close and exit)."""
    if threading.active_count() > 1:
        # A thread's locks would be copied held into the children.
        raise OSError("cannot fork workers: %d threads are running" % threading.active_count())

    directory = tempfile.mkdtemp(prefix="fastbgp-workers-")
    counts_path = os.path.join(directory, "prefix-counts")
    procs: list = []
    try:
        shared_counts.create(counts_path, n)
        sys.stdout.flush()
        sys.stderr.flush()
        gc.collect()
        # The heap's free pages back to the system before they are shared:
        # a worker that allocates into a free page it shares with the front
        # copies it first, and the front's copy stays behind; returned, the
        # page is simply faulted in anew where it is used (1.1-1.4 MB less
        # over a front and two idle workers, bench/RESULTS.md).
        heap.trim()
        gc.freeze()  # no collection in any process writes these objects again
        for k in range(n):
            procs.append(_fork(k, n, config_path, config, directory, counts_path, procs, log_level, log_json))
    except BaseException:
        for p in procs:
            p.kill()
            p._reap()
        Workers(directory, counts_path, procs).remove()
        raise
    return Workers(directory, counts_path, procs)


def _fork(k, n, config_path, config, directory, counts_path, started, log_level, log_json) -> WorkerProcess:
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    mine.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, CONTROL_BUFFER)
    api_socket = os.path.join(directory, "worker%d.sock" % k)
    pid = os.fork()
    if pid == 0:  # the child: never returns
        status = 1
        try:
            # Only its own channel: with the front's ends closed here, the
            # front's exit reaches every worker as end of file.
            for p in started:
                p.ctl.close()
            mine.close()
            random.seed()  # not the front's sequence
            status = worker.run(config_path, k, n, theirs, api_socket, counts_path, log_level, log_json,
                                config=config)
        except SystemExit as exc:
            status = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            traceback.print_exc()
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(status)
    theirs.close()
    mine.setblocking(False)
    return WorkerProcess(k, pid, mine, api_socket)
