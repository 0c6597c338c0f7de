"""Listening sockets of the control plane (API and metrics), bound before
their aiohttp servers start so a bad address fails at once, with a message
that names the setting."""

import asyncio
import os
import socket
import stat

from fastbgp.config.schema import parse_endpoint

__all__ = ["bind_unix", "bind_tcp", "serve_runner", "Guard", "HEAD_TIMEOUT", "MAX_CONNECTIONS"]


def bind_unix(path: str) -> socket.socket:
    """A listening-ready unix socket at ``path``, mode 0600.

    The parent directory is created 0700 when missing (an existing one is
    left as the administrator made it).  A stale socket from a crashed
    daemon is replaced; a live one (another daemon answers) or any other
    kind of file is an error, never silently removed.
    """
    path = os.path.abspath(path)
    if len(os.fsencode(path)) >= 108:
        raise OSError("API socket path too long for a unix socket (max 107 bytes): %s" % path)
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        try:
            os.makedirs(parent, mode=0o700, exist_ok=True)
            os.chmod(parent, 0o700)
        except OSError as exc:
            raise OSError("cannot create the API socket directory %s: %s (see global.api.socket)"
                          % (parent, exc.strerror or exc)) from None
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    if st is not None:
        if not stat.S_ISSOCK(st.st_mode):
            raise OSError("%s exists and is not a socket; not replacing it" % path)
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.settimeout(1.0)
            probe.connect(path)
        except (ConnectionRefusedError, FileNotFoundError):
            os.unlink(path)  # stale: nobody listens any more
        except OSError as exc:
            raise OSError("cannot tell whether %s is in use: %s" % (path, exc)) from None
        else:
            raise OSError("another process already serves the API on %s" % path)
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    # bind() creates the file with the umask applied: narrow it for the call
    # so the socket is never reachable by others, even for a moment.
    old = os.umask(0o177)
    try:
        sock.bind(path)
    except OSError as exc:
        sock.close()
        raise OSError("cannot bind the API socket %s: %s" % (path, exc.strerror or exc)) from None
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    sock.setblocking(False)
    return sock


def bind_tcp(endpoint) -> socket.socket:
    """A bound, non-blocking TCP socket for a listener at ``endpoint``:
    ``"addr:port"`` / ``"[v6]:port"`` / (addr, port); port 0 picks one.
    IPv6 sockets are v6-only, so "::" and "0.0.0.0" can both be bound."""
    if isinstance(endpoint, str):
        host, port = parse_endpoint(endpoint)
    else:
        host, port = endpoint
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, int(port)))
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


async def serve_runner(runner, sock: socket.socket, guard: "Guard | None" = None) -> asyncio.AbstractServer:
    """Serve the set-up aiohttp ``runner`` (``await runner.setup()`` done)
    on the bound ``sock``; returns the asyncio server, to close before
    ``runner.cleanup()``.

    Whatever stops this half-way -- an error, a reload or shutdown that
    cancels it -- leaves nothing listening and ``sock`` closed.  (aiohttp's
    SockSite cannot promise that: cancelled inside ``loop.create_server``,
    after serving began, it never learns of the server, which keeps
    accepting on the socket.)  ``guard`` (a :class:`Guard`) bounds the
    connections and the time to a first request head."""
    loop = asyncio.get_running_loop()
    try:
        # start_serving=False: the server object exists before the first
        # suspension point, so a cancellation below can still close it.
        factory = runner.server if guard is None else guard.factory(runner.server)
        server = await loop.create_server(factory, sock=sock, start_serving=False)
    except BaseException:
        sock.close()
        raise
    try:
        await server.start_serving()
    except BaseException:
        server.close()
        raise
    return server


# Bounds of one API/metrics listener (README "Operating limits").
# A connection must deliver its first request head (request line and
# headers) within HEAD_TIMEOUT seconds, else it gets 408 and is closed.
HEAD_TIMEOUT = 10.0
# Connections served at once per listener; past it the oldest connection
# still waiting for its head makes room (408), else the new one gets 503.
MAX_CONNECTIONS = 1024

_END_OF_HEAD = b"\r\n\r\n"


def _reply(transport, status: int, reason: str, message: str) -> None:
    body = ('{"error":"%s"}' % message).encode()
    transport.write(b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                    b"Connection: close\r\n\r\n%s" % (status, reason.encode(), len(body), body))
    transport.close()


class Guard:
    """The connections of one listener: how many are open, which ones have
    not yet sent a whole request head (oldest first), and the count of
    those closed for a bound (``late``, ``refused``)."""

    def __init__(self, head_timeout: float = HEAD_TIMEOUT, max_connections: int = MAX_CONNECTIONS):
        self.head_timeout = head_timeout
        self.max_connections = max_connections
        self.open = 0
        self.waiting: dict = {}  # _Guarded -> None, insertion order = age
        self.late = 0
        self.refused = 0

    def factory(self, make_protocol):
        """A protocol factory wrapping ``make_protocol``'s protocols."""
        return lambda: _Guarded(self, make_protocol())


class _Guarded(asyncio.Protocol):
    """One connection: forwards everything to the aiohttp protocol, and
    enforces its listener's Guard (a slowloris client holding connections
    open with an unfinished request cannot exhaust the daemon's sockets)."""

    def __init__(self, guard: Guard, inner):
        self.guard = guard
        self.inner = inner
        self.transport = None
        self.timer = None
        self.tail = b""
        self.live = False

    def connection_made(self, transport):
        g = self.guard
        self.transport = transport
        if g.open >= g.max_connections:
            if not g.waiting:
                g.refused += 1
                _reply(transport, 503, "Service Unavailable", "too many API connections (%d)" % g.max_connections)
                return
            next(iter(g.waiting)).expire()
        g.open += 1
        self.live = True
        g.waiting[self] = None
        self.timer = asyncio.get_running_loop().call_later(g.head_timeout, self.expire)
        self.inner.connection_made(transport)

    def expire(self):
        """No whole request head in time (or room needed): 408, closed."""
        if self.timer is not None:
            self.guard.late += 1
            self._head_done()
            _reply(self.transport, 408, "Request Timeout",
                   "no complete request within %g s" % self.guard.head_timeout)

    def _head_done(self):
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
            self.guard.waiting.pop(self, None)
            self.tail = b""

    def data_received(self, data):
        if not self.live:
            return
        if self.timer is not None:
            seen = self.tail + data
            if _END_OF_HEAD in seen:
                self._head_done()
            else:
                self.tail = seen[-3:]
        self.inner.data_received(data)

    def eof_received(self):
        return self.inner.eof_received() if self.live else False

    def connection_lost(self, exc):
        if self.live:
            self.live = False
            self._head_done()
            self.guard.open -= 1
            self.inner.connection_lost(exc)

    def pause_writing(self):
        if self.live:
            self.inner.pause_writing()

    def resume_writing(self):
        if self.live:
            self.inner.resume_writing()
