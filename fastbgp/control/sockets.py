"""Listening sockets of the control plane (API and metrics), bound before
their aiohttp servers start so a bad address fails at once, with a message
that names the setting."""

import asyncio
import os
import socket
import stat

from fastbgp.config.schema import parse_endpoint

__all__ = ["bind_unix", "bind_tcp", "serve_runner"]


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


async def serve_runner(runner, sock: socket.socket) -> asyncio.AbstractServer:
    """Serve the set-up aiohttp ``runner`` (``await runner.setup()`` done)
    on the bound ``sock``; returns the asyncio server, to close before
    ``runner.cleanup()``.

    Whatever stops this half-way -- an error, a reload or shutdown that
    cancels it -- leaves nothing listening and ``sock`` closed.  (aiohttp's
    SockSite cannot promise that: cancelled inside ``loop.create_server``,
    after serving began, it never learns of the server, which keeps
    accepting on the socket.)"""
    loop = asyncio.get_running_loop()
    try:
        # start_serving=False: the server object exists before the first
        # suspension point, so a cancellation below can still close it.
        server = await loop.create_server(runner.server, sock=sock, start_serving=False)
    except BaseException:
        sock.close()
        raise
    try:
        await server.start_serving()
    except BaseException:
        server.close()
        raise
    return server
