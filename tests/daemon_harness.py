"""A real ``fastbgp daemon`` for tests: ``daemon.run_daemon`` (the production
entry point, so API, metrics and MRT come from the config file) runs in a
background thread with its own event loop, next to a fastbgp Speaker playing
its eBGP peer, all on loopback::

    Daemon AS65001 (127.0.0.1) --eBGP--> Speaker AS65002 (listens 127.0.0.2)

Subclasses write the config (``write_config``) and choose what the peer
announces (``announce``); tests drive the daemon through its API or CLI and
read its state with ``call`` (run on the daemon's own loop thread).

The daemon's loop comes from ``loop_factory`` (the plugin's fixture of that
name: asyncio or uvloop); ``run_client`` runs a test's own client coroutine
on a fresh loop of the same kind."""

import asyncio
import pathlib
import threading
import time

from fastbgp.control import logs
from fastbgp.session.speaker import NeighborConfig, Speaker
from fastbgp.testing import loops
from fastbgp.testing.net import free_port


class DaemonHarness:
    thread_name = "fastbgp-daemon"
    call_timeout = 10.0

    def __init__(self, tmp: pathlib.Path, loop_factory=None):
        self.tmp = tmp
        self.loop_factory = loop_factory
        # A directory that does not exist yet: the API must create it 0700.
        self.socket = str(tmp / "run" / "fastbgp.sock")
        self.config_path = tmp / "fastbgp.toml"
        self.metrics_port = free_port()
        self.loop = self.daemon = self.speaker = self.peer = self.error = None
        self.peer_port = None
        self._ready = threading.Event()
        self._stop = None
        self._thread = None

    # -- what subclasses decide

    def write_config(self):
        raise NotImplementedError

    def announce(self):
        """Routes the peer announces before the session comes up."""

    def started(self):
        """Called once the daemon runs; wait here for what the tests need."""
        self.wait_for(lambda: self.state("127.0.0.2") == "established", "session with the peer")

    # -- the background loop

    async def _main(self):
        from fastbgp.daemon import process as daemon_mod

        self.loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self.speaker = Speaker(65002, "10.0.0.2", listen=[("127.0.0.2", 0)])
        self.peer = self.speaker.add_neighbor(NeighborConfig(
            address="127.0.0.1", peer_as=65001, passive=True, hold_time=30,
            families=["ipv4-unicast", "ipv6-unicast"], idle_hold_time=0.2))
        await self.speaker.start()
        self.announce()
        self.peer_port = self.speaker.port
        self.write_config()

        def ready(d):
            self.daemon = d
            self._ready.set()

        try:
            await daemon_mod.run_daemon(str(self.config_path), ready=ready, stop_event=self._stop)
        finally:
            await self.speaker.stop()

    def _thread_main(self):
        try:
            with asyncio.Runner(loop_factory=self.loop_factory) as runner:
                runner.run(self._main())
        except BaseException as exc:  # reported by start()
            self.error = exc
            self._ready.set()

    def start(self, timeout=10.0):
        self._thread = threading.Thread(target=self._thread_main, name=self.thread_name, daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout) or self.error is not None:
            raise RuntimeError("daemon did not start: %r" % (self.error,))
        self.started()
        return self

    def stop(self):
        if self.loop is not None and self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(10)
        # run_daemon set up logging for the whole process: give later tests
        # the usual setup back.
        logs.reset()

    # -- helpers for tests

    def run(self, coro, timeout=None):
        """Run a coroutine on the daemon's loop (Speaker operations)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout or self.call_timeout)

    def run_client(self, coro, timeout=loops.DEFAULT_TIMEOUT):
        """Run a test's client coroutine (HTTP, watch) on a fresh loop of the
        daemon's kind, in the calling thread."""
        return loops.run(coro, timeout, self.loop_factory)

    def call(self, fn, *args, **kw):
        """Call a function on the daemon's loop thread (its state is not
        thread-safe; only reads for waiting, never instead of the API)."""

        async def go():
            return fn(*args, **kw)

        return self.run(go())

    def state(self, address):
        return self.call(lambda: self.daemon.neighbor(address).state)

    def wait_for(self, predicate, what, timeout=10.0, interval=0.05):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(interval)
        raise AssertionError("timed out waiting for %s" % what)
