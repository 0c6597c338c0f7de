"""One BMP monitoring station: the TCP connection, its reconnect loop and
the bound on what is queued towards it.

The router opens the connection (RFC 7854 §3.2) and only writes; whatever
the station sends is read and discarded (§3.2: the station sends nothing;
reading keeps a misbehaving one from filling our socket buffer).

The queue towards a station is the transport's write buffer.  Live
messages (peer up/down, route monitoring) are written without waiting;
past ``max_queued_bytes`` the station is dropped -- a WARNING with the
reason, ``drops`` counted -- and reconnected after the backoff, to be
re-synced from scratch by ``on_connect``.  The initial dump waits for the
buffer to drain below a low mark (:meth:`Station.drain`), so a slow
station slows its own dump and never the BGP sessions.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
from typing import Awaitable, Callable, Optional

from fastbgp.bmp import messages

__all__ = ["Station", "BACKOFF_MIN", "BACKOFF_MAX", "kernel_buffer"]

log = logging.getLogger("fastbgp.bmp")

BACKOFF_MIN = 1.0  # seconds before the first reconnect
BACKOFF_MAX = 60.0  # the backoff doubles up to this
CONNECT_TIMEOUT = 10.0
STABLE_SECONDS = 30.0  # a connection that lasted this long resets the backoff


def kernel_buffer(max_queued: int) -> int:
    """SO_SNDBUF for a station: a quarter of its bound, 64 KiB to 4 MiB."""
    return min(max(max_queued // 4, 65536), 4 << 20)


class _Protocol(asyncio.Protocol):
    def __init__(self, station):
        self.station = station

    def connection_made(self, transport):
        self.station.connection_made(self, transport)

    def connection_lost(self, exc):
        self.station.lost(self, exc)

    def data_received(self, data):
        # RFC 7854 §3.2: the station sends no messages; ignore what it does.
        pass

    def pause_writing(self):
        self.station.paused = True

    def resume_writing(self):
        self.station.paused = False
        ev = self.station.drained
        if ev is not None:
            ev.set()


class Station:
    """The client of one station.  ``on_connect(station)``: an async
    callable run on every new connection after the Initiation message
    (the daemon's peer ups and dump); ``start()`` / ``await close()``."""

    def __init__(self, cfg, sys_name: str, sys_descr: str,
                 on_connect: Callable[["Station"], Awaitable[None]], *, backoff_min: float = BACKOFF_MIN,
                 on_drop: Optional[Callable[["Station"], None]] = None):
        self.cfg = cfg
        self.name = "%s:%d" % (cfg.address, cfg.port)
        self.sys_name = sys_name
        self.sys_descr = sys_descr
        self.on_connect = on_connect
        self.on_drop = on_drop
        self.backoff_min = backoff_min
        self.transport: Optional[asyncio.Transport] = None
        self.protocol: Optional[_Protocol] = None
        self.paused = False
        self.drained: Optional[asyncio.Event] = None
        self.connected = asyncio.Event()  # set while a connection is up (tests wait on it)
        self.synced = False  # the initial dump of this connection is done
        self.task: Optional[asyncio.Task] = None
        self.sync_task: Optional[asyncio.Task] = None
        self.closing = False
        self.dropped = False  # this connection was dropped by us (overflow)
        self._lost: Optional[asyncio.Event] = None
        # Counters.
        self.connects = 0
        self.drops = 0  # dropped for exceeding max_queued_bytes
        self.messages = 0
        self.bytes = 0

    def __repr__(self):
        return "<BMP station %s%s>" % (self.name, " up" if self.transport else "")

    @property
    def up(self) -> bool:
        return self.transport is not None

    def start(self):
        self.task = asyncio.get_running_loop().create_task(self._run(), name="bmp " + self.name)

    # -- sending -----------------------------------------------------------------------------

    def send(self, data: bytes) -> bool:
        """Queue one message; False when not connected (the next
        connection's dump covers it) or when it made the station overflow."""
        t = self.transport
        if t is None:
            return False
        t.write(data)
        self.messages += 1
        self.bytes += len(data)
        if t.get_write_buffer_size() > self.cfg.max_queued_bytes:
            self.drop("more than %d bytes queued" % self.cfg.max_queued_bytes)
            return False
        return True

    async def drain(self):
        """Until the write buffer is under the transport's low-water mark
        (the dump's back-pressure).  Returns at once when not connected."""
        while self.transport is not None and self.paused:
            self.drained = asyncio.Event()
            await self.drained.wait()

    def drop(self, why: str):
        """Lose the connection because of us (overflow): a WARNING, the
        counter, then the reconnect loop takes over."""
        t = self.transport
        if t is None:
            return
        self.drops += 1
        log.warning("BMP station %s dropped: %s; it gets a fresh dump when it reconnects", self.name, why)
        if self.on_drop is not None:
            self.on_drop(self)
        # No more writes to it (connection_lost comes on the next loop turn).
        self.transport = None
        self.dropped = True
        t.abort()  # buffered bytes are useless now: the station is re-synced

    # -- the connection loop -----------------------------------------------------------------

    async def _run(self):
        loop = asyncio.get_running_loop()
        delay = self.backoff_min
        while not self.closing:
            try:
                await asyncio.wait_for(loop.create_connection(lambda: _Protocol(self), self.cfg.address,
                                                              self.cfg.port), CONNECT_TIMEOUT)
            except (OSError, asyncio.TimeoutError) as exc:
                log.info("BMP station %s: cannot connect (%s); retrying in %.0f s", self.name,
                         exc or "timeout", delay)
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))
                delay = min(delay * 2, BACKOFF_MAX)
                continue
            up_at = loop.time()
            await self._lost.wait()
            # A connection that held for a while resets the backoff; one lost
            # soon (a station that keeps overflowing or closing) backs off more.
            delay = self.backoff_min if loop.time() - up_at > STABLE_SECONDS else min(delay * 2, BACKOFF_MAX)
            if not self.closing:
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))

    def connection_made(self, protocol, transport):
        self.protocol = protocol
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # The kernel's send buffer is part of the bound too: without this
            # it autotunes to megabytes a stalled station never reads.
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, kernel_buffer(self.cfg.max_queued_bytes))
            except OSError:
                pass
        # Back-pressure for the dump: pause past a quarter of the bound.
        high = self.cfg.max_queued_bytes // 4
        transport.set_write_buffer_limits(high=high, low=high // 4)
        self.paused = False
        self.dropped = False
        self._lost = asyncio.Event()
        self.connects += 1
        self.synced = False
        self.connected.set()
        log.info("BMP station %s connected", self.name)
        # RFC 7854 §4.3: Initiation is the first message on a connection.
        self.send(messages.initiation(self.sys_name, self.sys_descr))
        self.sync_task = asyncio.get_running_loop().create_task(self._sync(transport))

    async def _sync(self, transport):
        try:
            await self.on_connect(self)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("BMP station %s: initial dump failed", self.name)
            if self.transport is transport:
                transport.abort()
            return
        if self.transport is transport:
            self.synced = True

    def lost(self, protocol, exc):
        if protocol is not self.protocol:
            return
        self.transport = None
        self.protocol = None
        self.connected.clear()
        if self.drained is not None:
            self.drained.set()
        if self.sync_task is not None and not self.sync_task.done():
            self.sync_task.cancel()
        if not self.closing and not self.dropped:
            log.warning("BMP station %s: connection lost (%s)", self.name, exc or "closed by the station")
        if self._lost is not None:
            self._lost.set()

    async def close(self, reason: int = messages.TERM_ADMIN_CLOSE, text: str = ""):
        """Termination (RFC 7854 §4.5), then close; the loop stops."""
        self.closing = True
        t = self.transport
        if t is not None:
            t.write(messages.termination(reason, text))
            t.close()
        if self.sync_task is not None and not self.sync_task.done():
            self.sync_task.cancel()
        if self.task is not None:
            self.task.cancel()
            try:
                await self.task
            except (asyncio.CancelledError, Exception):
                pass
