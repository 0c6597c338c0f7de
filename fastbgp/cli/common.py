"""What every client command shares: where the daemon is (the connection
options and :func:`client`), the API client, and the errors a command
reports (:class:`UsageError` exit 2, :class:`CliError` exit 1).

``main.py`` (the parser) and the subcommand modules (``mrt.py``) import
this; it imports neither, so they do not import each other.  Like the rest
of the CLI it imports aiohttp and msgspec only when a request is made.
"""

import argparse
import os

__all__ = [
    "UsageError",
    "CliError",
    "ApiError",
    "Client",
    "client",
    "client_options",
    "DEFAULT_TIMEOUT",
    "console",
    "table",
    "duration",
]


# ===================================================================== errors


class UsageError(Exception):
    """Bad command words: printed with the command's usage, exit 2."""


class CliError(Exception):
    """A failure to report in one line, exit 1 (no traceback)."""


class ApiError(CliError):
    def __init__(self, status, message):
        self.status = status
        super().__init__(message)


# ===================================================================== output


def console():
    """A rich Console on stdout (rich is imported here, when printing)."""
    import sys

    from rich.console import Console

    # Piped output keeps whole lines: rich would otherwise wrap tables at 80
    # columns, which breaks grep and awk.
    tty = sys.stdout.isatty()
    width = None if tty else int(os.environ.get("COLUMNS") or 0) or 250
    return Console(file=sys.stdout, highlight=False, soft_wrap=not tty, width=width)


def table(*columns, right=()):
    """The look of every fastbgp table: a bold header line, no frame."""
    from rich import box
    from rich.table import Table

    t = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
    for c in columns:
        t.add_column(c, justify="right" if c in right else "left", no_wrap=True)
    return t


def duration(seconds):
    """GoBGP's Up/Down spelling: 00:12:34, 3d 04:05:06."""
    if seconds is None:
        return "never"
    s = int(max(0, seconds))
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    return ("%dd " % d if d else "") + "%02d:%02d:%02d" % (h, m, s)


# ===================================================================== client


DEFAULT_TIMEOUT = 60.0


def _endpoint(args):
    """(socket_path, url, token) from the options, then the environment."""
    url = getattr(args, "url", None) or os.environ.get("FASTBGP_API_URL") or None
    token = getattr(args, "token", None) or os.environ.get("FASTBGP_API_TOKEN") or None
    sock = getattr(args, "socket", None) or os.environ.get("FASTBGP_API_SOCKET")
    if not sock:
        from fastbgp.config.schema import DEFAULT_API_SOCKET

        sock = DEFAULT_API_SOCKET
    return (None if url else sock), url, token


class Client:
    """A small aiohttp client of the API; answers decoded with the
    control.py Structs, failures raised as CliError with a readable text."""

    def __init__(self, socket_path=None, url=None, token=None, timeout=DEFAULT_TIMEOUT):
        if url is None and socket_path is None:
            raise ValueError("a socket path or a URL is needed")
        self.socket_path = socket_path
        self.base = (url or "http://localhost").rstrip("/")
        self.token = token
        self.timeout = timeout
        self._session = None

    async def __aenter__(self):
        import aiohttp

        connector = aiohttp.UnixConnector(path=self.socket_path) if self.socket_path else None
        headers = {"Authorization": "Bearer " + self.token} if self.token else {}
        self._session = aiohttp.ClientSession(connector=connector, headers=headers)
        return self

    async def __aexit__(self, *exc):
        await self._session.close()

    def _unreachable(self, exc):
        if self.socket_path:
            if not os.path.exists(self.socket_path):
                why = "no socket at %s" % self.socket_path
            elif isinstance(getattr(exc, "os_error", exc), PermissionError):
                why = "permission denied on %s (the socket is mode 0600: run as the daemon's user)" % self.socket_path
            else:
                why = "%s does not answer (%s)" % (self.socket_path, _reason(exc))
            hint = "is `fastbgp daemon` running? (--socket or FASTBGP_API_SOCKET choose another socket)"
        else:
            why = "%s does not answer (%s)" % (self.base, _reason(exc))
            hint = "is the daemon's TCP API (global.api.tcp) enabled?"
        return CliError("cannot reach the fastbgp daemon: %s; %s" % (why, hint))

    async def _send(self, method, path, params=None, body=None, timeout=None, content_type=None):
        import aiohttp
        import msgspec

        if isinstance(body, (bytes, bytearray, memoryview)):
            # Already encoded (e.g. msgpack for /v1/rib/inject).
            data = bytes(body)
            headers = {"Content-Type": content_type or "application/octet-stream"}
        else:
            data = msgspec.json.encode(body) if body is not None else None
            headers = {"Content-Type": "application/json"} if data is not None else None
        t = aiohttp.ClientTimeout(total=timeout, sock_connect=5.0)
        try:
            resp = await self._session.request(method, self.base + path, params=params, data=data,
                                               headers=headers, timeout=t)
        except (aiohttp.ClientConnectorError, FileNotFoundError, ConnectionRefusedError) as exc:
            raise self._unreachable(exc) from None
        except aiohttp.ClientError as exc:
            raise CliError("API request %s %s failed: %s" % (method, path, _reason(exc))) from None
        except TimeoutError:  # asyncio.TimeoutError is this builtin since 3.11; no asyncio import at start-up
            raise CliError("API request %s %s timed out after %.0f s" % (method, path, timeout)) from None
        if resp.status >= 400:
            text = await resp.read()
            resp.release()
            raise _api_error(resp.status, text)
        return resp

    async def request(self, method, path, params=None, body=None, type=None, raw=False, content_type=None):
        """The answer decoded as ``type`` (or the raw bytes).  ``body`` is
        JSON-encoded, unless it is bytes: then sent as ``content_type``."""
        import aiohttp
        import msgspec

        resp = await self._send(method, path, params, body, timeout=self.timeout, content_type=content_type)
        try:
            data = await resp.read()
        except aiohttp.ClientError as exc:
            raise CliError("API answer to %s %s cut short: %s" % (method, path, _reason(exc))) from None
        finally:
            resp.release()
        if raw:
            return data
        try:
            return msgspec.json.decode(data, type=type) if type is not None else msgspec.json.decode(data)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise CliError("unexpected answer to %s %s: %s" % (method, path, exc)) from None

    async def lines(self, path, params=None):
        """Raw NDJSON lines of a streamed answer (blank heartbeats skipped)."""
        import aiohttp

        resp = await self._send("GET", path, params, timeout=None)
        try:
            while True:
                try:
                    line = await resp.content.readline()
                except aiohttp.ClientPayloadError as exc:
                    raise CliError("stream %s cut short: %s" % (path, _reason(exc))) from None
                if not line:
                    return
                line = line.strip()
                if line:
                    yield line
        finally:
            resp.release()

    async def chunks(self, path, params=None):
        """A body piece by piece, as it comes (for -j of large tables)."""
        import aiohttp

        resp = await self._send("GET", path, params, timeout=None)
        try:
            async for chunk in resp.content.iter_chunked(1 << 16):
                yield chunk
        except aiohttp.ClientPayloadError as exc:
            raise CliError("answer to %s cut short: %s" % (path, _reason(exc))) from None
        finally:
            resp.release()


def _reason(exc):
    inner = getattr(exc, "os_error", None)
    if inner is not None and getattr(inner, "strerror", None):
        return inner.strerror
    return str(exc) or type(exc).__name__


def _api_error(status, body):
    import msgspec

    message = None
    try:
        doc = msgspec.json.decode(body)
        if isinstance(doc, dict):
            message = doc.get("error")
    except msgspec.DecodeError:
        pass
    if message is None:
        message = body.decode(errors="replace").strip() or "HTTP %d" % status
    if status == 401:
        message += " (pass --token or set FASTBGP_API_TOKEN)"
    return ApiError(status, message)


def client(args):
    sock, url, token = _endpoint(args)
    return Client(socket_path=sock, url=url, token=token)


def client_options(parser, suppress):
    """Where the daemon is, and -j.  Given to the top-level parser and, with
    SUPPRESS defaults (so they do not undo what was given before the
    command), to every client command, so they work in either place."""
    d = (lambda v: argparse.SUPPRESS) if suppress else (lambda v: v)
    g = parser.add_argument_group("daemon connection")
    g.add_argument("--socket", metavar="PATH", default=d(None),
                   help="API unix socket (env FASTBGP_API_SOCKET; default /run/fastbgp/fastbgp.sock)")
    g.add_argument("--url", metavar="URL", default=d(None),
                   help="TCP API, e.g. http://127.0.0.1:8179 (env FASTBGP_API_URL)")
    g.add_argument("--token", metavar="TOKEN", default=d(None),
                   help="bearer token for the TCP API (env FASTBGP_API_TOKEN; the environment keeps it out of ps)")
    parser.add_argument("-j", "--json", action="store_true", default=d(False), help="print JSON")
