"""HTTP/JSON API over any :class:`fastbgp.control.contract.Control`.

Listeners
    A unix socket always (``global.api.socket``, default
    ``/run/fastbgp/fastbgp.sock``), created mode 0600 inside a directory
    created 0700 when missing: file permissions are its access control, so
    only the daemon's user (and root) can talk to it.  A TCP listener
    (``global.api.tcp``) only together with a bearer token: every request on
    it must carry ``Authorization: Bearer <token>`` (401 otherwise); the unix
    socket does not ask for it.

Bodies
    JSON, encoded by msgspec from the Structs of :mod:`fastbgp.control.contract`, so a
    client can decode them back with the same types.  Request bodies are
    decoded into those Structs too, which validate them; a bad one gets 400
    with a message naming the field (:func:`fastbgp.config.errors.explain`:
    ``{"error": "med: expected int 0..4294967295, got -1", "field": "med"}``).
    Every error is ``{"error": "..."}`` with a 4xx/5xx status.

Endpoints (all under /v1)
    ``GET  /neighbors``                          [NeighborSummary]
    ``GET  /neighbors/{addr}``                   NeighborDetail (404 unknown)
    ``POST /neighbors/{addr}/enable``            body optional
    ``POST /neighbors/{addr}/disable``           {"message": "..."} (RFC 9003)
    ``POST /neighbors/{addr}/reset``             {"message": "..."}
    ``POST /neighbors/{addr}/softreset``         {"direction": "in"|"out"|"both"}
    ``GET  /neighbors/{addr}/adj-in/{family}``   [Route]
    ``GET  /neighbors/{addr}/adj-out/{family}``  [Route]
    ``GET  /rib/summary``                        [RibSummary]
    ``GET  /global``                             GlobalInfo (AS, router id,
                                                 listeners, uptime, RIB sizes,
                                                 refused connections)
    ``GET  /policy``                             PolicyInfo (policies, defined
                                                 sets, each neighbour's chains)
    ``GET  /rpki``                               RpkiInfo (RTR caches, file, VRPs
                                                 per family, best paths per state)
    ``GET  /rpki/validate?prefix=P&asn=N``       RpkiValidation (RFC 6811 state;
                                                 404 without [rpki])
    ``GET  /rib/{family}``                       [Route] sorted by prefix;
                                                 ``?prefix=P`` with
                                                 ``&match=exact|longest|longer|shorter``
                                                 (``&longest=1`` too),
                                                 ``community``, ``large_community``,
                                                 ``as_path`` (regex), ``origin_as``,
                                                 ``source`` (neighbour or local),
                                                 ``offset``, ``limit`` (contract.RibQuery;
                                                 filtered in the daemon), or
                                                 ``?stream=1`` NDJSON
    ``POST /rib/announce``                       Announce -> {"count": n}
    ``POST /rib/withdraw``                       Announce -> {"count": n}
    ``POST /rib/inject``                         [InjectGroup] -> {"count": n, "groups": g}
                                                 (bulk origination; JSON with
                                                 base64 bytes, or msgpack with
                                                 Content-Type application/msgpack)
    ``POST /reload``                             the daemon's summary of the change
    ``GET  /watch``                              NDJSON of control.AnyEvent
    ``POST /log-level``                          {"level": "debug"}

    ``{family}`` is ``ipv4-unicast`` / ``ipv6-unicast``, or another
    spelling :mod:`fastbgp.wire.families` accepts (``ipv4``, ``inet6``...).
    A full table is never built as one list when it is large: above
    :data:`STREAM_THRESHOLD` paths (or with ``?stream=1``) it is sent
    chunked from ``Control.iter_rib``, still as one JSON array unless
    ``stream=1`` asked for NDJSON (one Route per line), so the format a
    client gets does not depend on the table's size.  A filtered query
    (anything but one prefix's paths) is always sent that way, from
    ``Control.iter_query``.

Watch
    One event per line until the client goes away.  A blank line is sent
    every :data:`WATCH_HEARTBEAT` seconds without events (NDJSON readers
    skip blank lines): it keeps idle proxies from closing the stream and
    lets the server notice a client that vanished without closing.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import inspect
import ipaddress
import logging
import os
import re
from typing import Literal, Optional

import msgspec
from aiohttp import web

from fastbgp.config.errors import ConfigError, explain, render
from fastbgp.config.schema import normalize_address
from fastbgp.control import contract as ctl
from fastbgp.control import logs, sockets
from fastbgp.wire.families import UNICAST, UnknownFamily, family_name, parse_family, unicast_family

__all__ = [
    "ApiServer",
    "make_app",
    "serve",
    "STREAM_THRESHOLD",
    "WATCH_HEARTBEAT",
    "NeighborAction",
    "LogLevel",
    "BadRequest",
    "ListenerError",
    "UpstreamError",
    "InjectGroup",
    "MSGPACK",
]

log = logging.getLogger("fastbgp.api")

# Above this many paths a full-table GET is streamed from iter_rib instead of
# being materialised as one list (memory, and the loop is not blocked for the
# whole encode).
STREAM_THRESHOLD = 10_000
STREAM_CHUNK = 10_000
WATCH_HEARTBEAT = 15.0
# How often a watch stream looks whether its client is still there while no
# event comes (the handler is not cancelled on disconnect by aiohttp).
_WATCH_POLL = 0.5
MAX_BODY = 64 * 1024 * 1024  # an announce of a few hundred thousand prefixes fits
# A request body that stops arriving for this long is refused (408): a
# client trickling a body cannot hold a handler forever.
BODY_STALL_TIMEOUT = 10.0
# Error replies echo the offending value: each word of them at most MAX_ECHO
# characters, the whole at most MAX_MESSAGE (the reply stays small whatever
# the request).
MAX_ECHO = 200
MAX_MESSAGE = 1000
_SPACE = re.compile(r"(\s+)")

JSON = "application/json"
NDJSON = "application/x-ndjson"
MSGPACK = "application/msgpack"

_encoder = msgspec.json.Encoder()


# ------------------------------------------------------------ request bodies


class NeighborAction(msgspec.Struct, forbid_unknown_fields=True):
    """Optional body of POST /v1/neighbors/{addr}/{action}."""

    message: str = ""  # RFC 9003 shutdown communication (disable, reset)
    direction: Literal["in", "out", "both"] = "both"  # softreset


class LogLevel(msgspec.Struct, forbid_unknown_fields=True):
    level: str


class InjectGroup(msgspec.Struct, forbid_unknown_fields=True):
    """One item of POST /v1/rib/inject (``fastbgp mrt inject``): prefixes
    sharing one attribute set, as the daemon stores them -- so it interns the
    set once and hands the packed prefixes to the RIB in one call.

    ``attrs``: path attributes, canonical form (4-octet AS_PATH, no
    MP_REACH/MP_UNREACH_NLRI).  ``nlri``: packed prefixes (RFC 4271 §4.3
    length + address octets).  ``next_hop``: for IPv4 4 octets that replace
    the block's NEXT_HOP, for IPv6 16 or 32 octets (RFC 2545 §3); empty
    keeps the block's (IPv4) or means this router (both).  Bytes are base64
    in JSON."""

    afi: int  # 1 IPv4, 2 IPv6 (unicast)
    attrs: bytes
    nlri: bytes
    next_hop: bytes = b""


class BadRequest(ValueError):
    """A request the API refuses (400); ``field`` is the JSON path of the
    offending value, empty when it is the body as a whole."""

    def __init__(self, field: str, problem: str):
        self.field = field
        self.problem = problem
        super().__init__("%s: %s" % (field, problem) if field else problem)


class ListenerError(OSError):
    """A listener that cannot be bound; ``setting`` names the configuration
    key (``global.api.socket``, ``global.api.tcp``)."""

    def __init__(self, setting: str, message: str):
        super().__init__(message)
        self.setting = setting


class _HttpError(Exception):
    def __init__(self, status: int, message: str, **extra):
        self.status = status
        self.message = message
        self.extra = extra
        super().__init__(message)


class UpstreamError(_HttpError):
    """An answer of another API server this one relays to (a Control such
    as :class:`fastbgp.control.fanout.FanoutControl`): its error passed on
    with its status, message and fields as they are (clipped there), or 502
    when it could not answer."""


async def _call(value):
    """What a Control method returned: a Control may implement any method
    as a coroutine (or return an awaitable), e.g. one that asks other
    servers; a plain value is used as it is."""
    return await value if inspect.isawaitable(value) else value


def _decode(body: bytes, typ, decode=msgspec.json.decode, what="JSON"):
    """The body as ``typ``; BadRequest naming the field otherwise."""
    if not body.strip():
        raise BadRequest("", "a %s body is required" % what)
    try:
        return decode(body, type=typ)
    except msgspec.ValidationError as exc:  # before DecodeError, its base class
        try:
            raw = decode(body)  # untyped, to name the field; may nest deeper
        except (msgspec.DecodeError, RecursionError):
            raise BadRequest("", "body is not valid %s: nested too deeply" % what) from None
        raise BadRequest(*explain(exc, typ, raw)) from None
    except msgspec.DecodeError as exc:
        msg = str(exc).replace("`", "")
        raise BadRequest("", "body is not valid %s: %s" % (what, msg[:1].lower() + msg[1:])) from None
    except RecursionError:
        # msgspec's decoder recurses per nesting level: hostile input, not a
        # server fault.
        raise BadRequest("", "body is not valid %s: nested too deeply" % what) from None


async def _read(request: web.Request) -> bytes:
    """The whole body: 408 when nothing arrives for BODY_STALL_TIMEOUT
    seconds, 413 past MAX_BODY (aiohttp's own bound on request.read())."""
    chunks, size = [], 0
    while True:
        try:
            chunk = await asyncio.wait_for(request.content.readany(), BODY_STALL_TIMEOUT)
        except asyncio.TimeoutError:
            raise _HttpError(408, "request body stalled: nothing received for %g s" % BODY_STALL_TIMEOUT) from None
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > MAX_BODY:
            raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY, actual_size=size)
        chunks.append(chunk)


def _family(text: str) -> str:
    """The canonical name of a family in the URL (the daemon runs unicast)."""
    try:
        return family_name(parse_family(text, UNICAST))
    except UnknownFamily as exc:
        raise _HttpError(400, "unknown family %r (use %s)" % (exc.value, exc.choices)) from None


def _flag(request: web.Request, name: str) -> bool:
    v = request.query.get(name)
    return v is not None and v.lower() not in ("0", "false", "no", "")


# ------------------------------------------------------------------ handlers


def _json(value, status: int = 200) -> web.Response:
    return web.Response(body=_encoder.encode(value), status=status, content_type=JSON)


def _error(status: int, message: str, **extra) -> web.Response:
    return _json({"error": message, **extra}, status=status)


def _clip(text: str) -> str:
    """``text`` (an error message that may echo request values) with every
    word over MAX_ECHO characters cut to MAX_ECHO plus "…(N chars)", and the
    whole cut to MAX_MESSAGE likewise: a huge bad value must not come back
    as a huge reply.  Linear in the text (a split, no backtracking)."""
    if len(text) <= MAX_ECHO:
        return text
    parts = _SPACE.split(text)
    for i, w in enumerate(parts):
        if len(w) > MAX_ECHO:
            parts[i] = "%s…(%d chars)" % (w[:MAX_ECHO], len(w))
    text = "".join(parts)
    if len(text) > MAX_MESSAGE:
        text = "%s…(%d chars)" % (text[:MAX_MESSAGE], len(text))
    return text


def _clipped_error(status: int, message: str, **extra) -> web.Response:
    return _error(status, _clip(message), **{k: _clip(v) if isinstance(v, str) else v for k, v in extra.items()})


class _Handlers:
    def __init__(self, control: ctl.Control):
        self.control = control
        # Set by ApiServer.stop(): watch streams end at once instead of
        # holding the shutdown until their clients leave.
        self.closing = asyncio.Event()

    # ---- neighbours

    async def _neighbor(self, request) -> ctl.NeighborDetail:
        addr = normalize_address(request.match_info["addr"])
        try:
            return await _call(self.control.neighbor(addr))
        except KeyError:
            raise _HttpError(404, "unknown neighbor %s" % addr) from None

    async def neighbors(self, request):
        return _json(await _call(self.control.neighbors()))

    async def neighbor(self, request):
        return _json(await self._neighbor(request))

    async def neighbor_action(self, request):
        action = request.match_info["action"]
        body = await _read(request)
        args = _decode(body, NeighborAction) if body.strip() else NeighborAction()
        addr = (await self._neighbor(request)).address
        try:
            if action == "enable":
                await self.control.enable(addr)
            elif action == "disable":
                await self.control.disable(addr, args.message)
            elif action == "reset":
                await self.control.reset(addr, args.message)
            else:
                await self.control.soft_reset(addr, args.direction)
        except KeyError:
            # Deconfigured between the lookup and the call.
            raise _HttpError(404, "unknown neighbor %s" % addr) from None
        log.info("neighbor %s: %s", action, addr, extra={"neighbor": addr, "action": action})
        return _json({"neighbor": addr, "action": action})

    async def adj_rib(self, request):
        addr = normalize_address(request.match_info["addr"])
        fam = _family(request.match_info["family"])
        getter = self.control.adj_rib_in if request.match_info["dir"] == "in" else self.control.adj_rib_out
        try:
            routes = await _call(getter(addr, fam))
        except KeyError:
            raise _HttpError(404, "unknown neighbor %s" % addr) from None
        return _json(routes)

    # ---- RIB

    async def rib_summary(self, request):
        return _json(await _call(self.control.rib_summary()))

    async def global_info(self, request):
        return _json(await _call(self.control.global_info()))

    async def policy(self, request):
        return _json(await _call(self.control.policy_info()))

    # ---- RPKI (optional in a Control: the daemon has it)

    async def rpki(self, request):
        fn = getattr(self.control, "rpki_info", None)
        if fn is None:
            raise _HttpError(404, "this server has no RPKI")
        return _json(await _call(fn()))

    async def rpki_validate(self, request):
        fn = getattr(self.control, "rpki_validate", None)
        if fn is None:
            raise _HttpError(404, "this server has no RPKI")
        prefix = request.query.get("prefix", "")
        asn = request.query.get("asn", "")
        try:
            net = ipaddress.ip_network(prefix, strict=False)
        except ValueError:
            raise _HttpError(400, "prefix: not a prefix: %s" % _clip(prefix)) from None
        text = asn[2:] if asn[:2].upper() == "AS" else asn
        if not text.isdigit() or int(text) > 0xFFFFFFFF:
            raise _HttpError(400, "asn: not an AS number: %s" % _clip(asn))
        try:
            return _json(await _call(fn(str(net), int(text))))
        except LookupError as exc:
            raise _HttpError(404, str(exc)) from None

    async def rib(self, request):
        fam = _family(request.match_info["family"])
        q = _rib_query(request, fam)
        ndjson = _flag(request, "stream")
        if q.filtered:
            if not ndjson and q.prefix is not None and q.match in ("exact", "longest"):
                return _json(await _call(self.control.query_rib(fam, q)))  # the paths of one prefix
            # Streamed: a filter may match most of a full table.  An
            # awaitable iterator is awaited first (it may fail as a whole
            # while an error status can still be sent).
            agen = await _call(self.control.iter_query(fam, q, STREAM_CHUNK))
            return await self._stream_rib(request, fam, ndjson, agen)
        if not ndjson and await self._paths(fam) <= STREAM_THRESHOLD:
            return _json(await _call(self.control.rib(fam)))
        return await self._stream_rib(request, fam, ndjson, await _call(self.control.iter_rib(fam, STREAM_CHUNK)))

    async def _paths(self, fam) -> int:
        for s in await _call(self.control.rib_summary()):
            if s.family == fam:
                return s.paths
        return 0

    async def _stream_rib(self, request, fam, ndjson, agen):
        resp = web.StreamResponse(headers={"Content-Type": NDJSON if ndjson else JSON})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        first = True
        try:
            if not ndjson:
                await resp.write(b"[")
            async for chunk in agen:
                if not chunk:
                    continue
                if ndjson:
                    await resp.write(b"".join(_encoder.encode(r) + b"\n" for r in chunk))
                else:
                    body = _encoder.encode(chunk)[1:-1]  # the items of the array, comma-joined
                    await resp.write(body if first else b"," + body)
                first = False
            if not ndjson:
                await resp.write(b"]")
            await resp.write_eof()
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        except Exception:
            # The status line is gone: the only honest signal left is to cut
            # the connection, so the client sees a truncated body rather than
            # a well-formed partial table.
            log.exception("streaming the %s table failed", fam)
            if request.transport is not None:
                request.transport.close()
        finally:
            aclose = getattr(agen, "aclose", None)
            if aclose is not None:
                await aclose()
        return resp

    async def announce(self, request):
        req = _decode(await _read(request), ctl.Announce)
        n = await self.control.announce(req)
        log.info("announce %d prefixes", len(req.prefixes), extra={"count": n})
        return _json({"count": n})

    async def withdraw(self, request):
        req = _decode(await _read(request), ctl.Announce)
        n = await self.control.withdraw(req)
        log.info("withdraw %d prefixes", len(req.prefixes), extra={"count": n})
        return _json({"count": n})

    async def inject(self, request):
        fn = getattr(self.control, "inject", None)
        if fn is None:
            raise NotImplementedError("bulk route injection")
        body = await _read(request)
        if request.content_type in (MSGPACK, "application/x-msgpack"):
            groups = _decode(body, list[InjectGroup], msgspec.msgpack.decode, "msgpack")
        else:
            groups = _decode(body, list[InjectGroup])
        n = await fn(groups)
        log.info("inject %d prefixes in %d groups", n, len(groups), extra={"count": n})
        return _json({"count": n, "groups": len(groups)})

    # ---- daemon

    async def reload(self, request):
        try:
            result = await self.control.reload()
        except ConfigError as exc:
            return _error(400, "configuration rejected, nothing changed:\n%s" % exc,
                          errors=[{"path": p, "problem": m} for p, m in exc.errors])
        return _json(result if result is not None else {})

    async def log_level(self, request):
        body = await _read(request)
        if body.strip():
            level = _decode(body, LogLevel).level
        elif "level" in request.query:
            level = request.query["level"]
        else:
            raise BadRequest("level", "required field missing")
        try:
            name = logs.level_name(logs.parse_level(level))
        except ValueError as exc:
            raise BadRequest("level", str(exc)) from None
        await _call(self.control.set_log_level(name))
        log.info("log level set to %s", name)
        return _json({"level": name})

    async def watch(self, request):
        resp = web.StreamResponse(headers={"Content-Type": NDJSON, "Cache-Control": "no-cache"})
        resp.enable_chunked_encoding()
        agen = await _call(self.control.watch())
        nxt = None
        try:
            # Start the generator before answering: a generator subscribes
            # when its body first runs, and the client takes the headers as
            # "subscribed" (it may act right away and expect to see the
            # events that causes).  prepare() then sends the headers at once.
            nxt = asyncio.ensure_future(agen.__anext__())
            await asyncio.sleep(0)
            await resp.prepare(request)
            loop = asyncio.get_running_loop()
            idle_since = loop.time()
            closing = asyncio.ensure_future(self.closing.wait())
            try:
                while True:
                    if nxt is None:
                        nxt = asyncio.ensure_future(agen.__anext__())
                    done, _ = await asyncio.wait({nxt, closing}, timeout=_WATCH_POLL,
                                                 return_when=asyncio.FIRST_COMPLETED)
                    if closing in done:
                        break
                    if nxt in done:
                        task, nxt = nxt, None
                        try:
                            event = task.result()
                        except StopAsyncIteration:
                            break
                        except Exception:
                            # Headers are out: end the stream, keep the cause in the log.
                            log.exception("watch stream: the daemon's event source failed")
                            break
                        await resp.write(_encoder.encode(event) + b"\n")
                        idle_since = loop.time()
                        continue
                    # No event this round: has the client gone?
                    transport = request.transport
                    if transport is None or transport.is_closing():
                        break
                    if loop.time() - idle_since >= WATCH_HEARTBEAT:
                        await resp.write(b"\n")
                        idle_since = loop.time()
            finally:
                closing.cancel()
            # A clean end of the chunked body also when the server stops:
            # the client then sees the stream end, not a broken connection.
            await resp.write_eof()
        except (ConnectionResetError, ConnectionError):
            pass  # the client left: the normal end of a watch
        finally:
            if nxt is not None:
                # Cancelling the pending step ends the generator where it
                # waits, so the daemon drops this subscriber.
                nxt.cancel()
                try:
                    await nxt
                except (asyncio.CancelledError, StopAsyncIteration, Exception):
                    pass
            aclose = getattr(agen, "aclose", None)
            if aclose is not None:
                try:
                    await aclose()
                except RuntimeError:
                    pass  # "aclose(): asynchronous generator is already running" on odd iterators
        return resp


# Query parameters of GET /v1/rib/{family} -> RibQuery fields (both
# spellings of the multi-word ones).
_RIB_PARAMS = {"prefix": "prefix", "match": "match", "community": "community",
               "large_community": "large_community", "large-community": "large_community",
               "as_path": "as_path", "as-path": "as_path", "aspath": "as_path",
               "origin_as": "origin_as", "origin-as": "origin_as", "source": "source",
               "offset": "offset", "limit": "limit"}


def _rib_query(request: web.Request, fam: str) -> ctl.RibQuery:
    """The RibQuery of a RIB request's parameters (``longest=1`` is the old
    spelling of ``match=longest``); BadRequest naming the parameter."""
    raw = {}
    for key, value in request.query.items():
        if key in ("stream", "longest"):
            continue
        field = _RIB_PARAMS.get(key)
        if field is None:
            raise BadRequest(key, "unknown parameter (use %s, stream)" % ", ".join(sorted(set(_RIB_PARAMS.values()))))
        raw[field] = value
    if _flag(request, "longest"):
        raw["match"] = "longest"
    try:
        q = msgspec.convert(raw, ctl.RibQuery, strict=False)
    except msgspec.ValidationError as exc:
        raise BadRequest(*explain(exc, ctl.RibQuery, raw)) from None
    if q.prefix is not None:
        q.prefix = _lookup_key(q.prefix, fam, q.match != "exact")
        if q.match in ("longer", "shorter") and "/" not in q.prefix:
            q.prefix = str(ipaddress.ip_network(q.prefix))
    return q


def _lookup_key(text: str, fam: str, longest: bool) -> str:
    """?prefix= for the family: a prefix (exact lookup), or for a longest
    match also a bare address.  Returned in canonical spelling."""
    text = text.strip()
    try:
        if longest and "/" not in text:
            ip = ipaddress.ip_address(text)
            net = ipaddress.ip_network(ip)
        else:
            net = ipaddress.ip_network(text, strict=not longest)
    except ValueError as exc:
        raise BadRequest("prefix", "not an IP prefix: %s (%s)" % (render(text), exc)) from None
    if unicast_family(net.version) != parse_family(fam):
        raise BadRequest("prefix", "%s is not an %s prefix" % (text, fam))
    if longest and "/" not in text:
        return str(net.network_address)
    return str(net)


@web.middleware
async def _errors(request, handler):
    """Every failure as {"error": ...}: the CLI shows the message as is."""
    try:
        return await handler(request)
    except UpstreamError as exc:
        # Already clipped where it was made: the same text one daemon gives.
        return _error(exc.status, exc.message, **exc.extra)
    except _HttpError as exc:
        resp = _clipped_error(exc.status, exc.message, **exc.extra)
        if exc.status == 408:
            resp.force_close()  # the rest of that body may never come: no keep-alive
        return resp
    except BadRequest as exc:
        return _clipped_error(400, str(exc), **({"field": exc.field} if exc.field else {}))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        reason = exc.text if exc.text and not exc.text.startswith("%d:" % exc.status) else exc.reason
        if exc.status == 404:
            reason = "no such endpoint: %s %s" % (request.method, request.path)
        elif exc.status == 405:
            reason = "method %s not allowed on %s" % (request.method, request.path)
        resp = _clipped_error(exc.status, reason)
        for h in ("Allow", "WWW-Authenticate"):
            if h in exc.headers:
                resp.headers[h] = exc.headers[h]
        return resp
    except NotImplementedError as exc:
        return _clipped_error(501, "not implemented by this daemon: %s" % (exc or request.path))
    except ValueError as exc:
        # The daemon's own validation (a family it does not run, a next hop
        # it cannot use...): the request's fault.
        return _clipped_error(400, str(exc))
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception as exc:
        log.exception("API %s %s failed", request.method, request.path)
        return _clipped_error(500, "internal error: %s: %s" % (type(exc).__name__, exc))


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def _auth_middleware(token: str):
    # Digests of equal length, compared in constant time: neither the
    # token's content nor its length shows in the response time.
    want = _digest(token)

    @web.middleware
    async def auth(request, handler):
        scheme, _, cred = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(_digest(cred.strip()), want):
            resp = _error(401, "unauthorized: a valid bearer token is required on the TCP API")
            resp.headers["WWW-Authenticate"] = 'Bearer realm="fastbgp"'
            return resp
        return await handler(request)

    return auth


_HANDLERS = web.AppKey("fastbgp_handlers", _Handlers)


def make_app(control: ctl.Control, token: Optional[str] = None) -> web.Application:
    """The aiohttp application; with ``token`` every request must bear it."""
    middlewares = [_errors]
    if token is not None:
        middlewares.insert(0, _auth_middleware(token))
    app = web.Application(middlewares=middlewares, client_max_size=MAX_BODY)
    h = _Handlers(control)
    app[_HANDLERS] = h
    r = app.router
    r.add_get("/v1/neighbors", h.neighbors)
    r.add_get("/v1/neighbors/{addr}", h.neighbor)
    r.add_post("/v1/neighbors/{addr}/{action:enable|disable|reset|softreset}", h.neighbor_action)
    r.add_get("/v1/neighbors/{addr}/adj-{dir:in|out}/{family}", h.adj_rib)
    r.add_get("/v1/global", h.global_info)
    r.add_get("/v1/policy", h.policy)
    r.add_get("/v1/rpki", h.rpki)
    r.add_get("/v1/rpki/validate", h.rpki_validate)
    r.add_get("/v1/rib/summary", h.rib_summary)  # before /rib/{family}: first match wins
    r.add_get("/v1/rib/{family}", h.rib)
    r.add_post("/v1/rib/announce", h.announce)
    r.add_post("/v1/rib/withdraw", h.withdraw)
    r.add_post("/v1/rib/inject", h.inject)
    r.add_post("/v1/reload", h.reload)
    r.add_get("/v1/watch", h.watch)
    r.add_post("/v1/log-level", h.log_level)
    return app


# ------------------------------------------------------------------ listeners


class ApiServer:
    """The API listeners of one daemon, on the running event loop.

    ::

        server = ApiServer(daemon, socket_path="/run/fastbgp/fastbgp.sock",
                           tcp="127.0.0.1:50051", token="...")
        await server.start()
        ...
        await server.stop()

    ``ApiServer.from_config(control, config.global_.api)`` reads the
    listeners from ``[global.api]``.  ``socket_path=None`` serves no unix
    socket (tests of the TCP listener); ``tcp`` without ``token`` is refused.
    """

    def __init__(self, control: ctl.Control, socket_path: Optional[str] = None, tcp=None,
                 token: Optional[str] = None, shutdown_timeout: float = 2.0):
        if tcp is not None and not token:
            raise ValueError("the TCP API listener needs a token (global.api.token)")
        self.control = control
        self.socket_path = os.path.abspath(socket_path) if socket_path else None
        self.tcp = tcp
        self.token = token
        self.shutdown_timeout = shutdown_timeout
        self._runners: list = []
        self._servers: list = []  # asyncio servers on the listening sockets
        self._socket_inode = None
        self._bound: dict = {}  # "unix"/"tcp" -> socket bound by bind(), not yet served
        self._listening: dict = {}  # "unix"/"tcp" -> socket served
        self._shared_from: Optional["ApiServer"] = None  # whose unix socket bind() shared
        self.tcp_address: Optional[tuple] = None  # (host, port) once started

    @classmethod
    def from_config(cls, control: ctl.Control, api_config, **kw) -> "ApiServer":
        """From a config.ApiConfig (``[global.api]``)."""
        return cls(control, socket_path=api_config.socket, tcp=api_config.tcp, token=api_config.token, **kw)

    async def _site(self, app, sock):
        # lingering_time: after a refused body (408, 413) drain what is still
        # coming for at most 1 s, not aiohttp's 10 s, then close.
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=self.shutdown_timeout, lingering_time=1.0)
        try:
            await runner.setup()
        except BaseException:
            sock.close()
            raise
        self._runners.append(runner)
        # Not SockSite: cancelled half-way it leaves the socket listening.
        self._servers.append(await sockets.serve_runner(runner, sock, sockets.Guard()))

    def bind(self, previous: Optional["ApiServer"] = None) -> "ApiServer":
        """Bind the listening sockets, serving nothing yet: a bad address
        raises :class:`ListenerError` naming the setting before anything else
        changes (a reload binds every new listener first, then swaps).  A
        listener ``previous`` (the running server) already has at the same
        place is shared, its socket duplicated, since it cannot be bound
        twice; ``start`` then takes the socket file over from ``previous``."""
        try:
            if self.socket_path:
                prev = previous._listening.get("unix") if previous is not None else None
                if prev is not None and previous.socket_path == self.socket_path:
                    self._bound["unix"] = prev.dup()
                    self._socket_inode = previous._socket_inode
                    self._shared_from = previous
                else:
                    try:
                        self._bound["unix"] = sockets.bind_unix(self.socket_path)
                    except OSError as exc:
                        raise ListenerError("global.api.socket", str(exc)) from None
                    self._socket_inode = os.stat(self.socket_path).st_ino
            if self.tcp is not None:
                prev = previous._listening.get("tcp") if previous is not None else None
                if prev is not None and previous.tcp == self.tcp:
                    self._bound["tcp"] = prev.dup()
                else:
                    try:
                        self._bound["tcp"] = sockets.bind_tcp(self.tcp)
                    except (OSError, ValueError) as exc:
                        raise ListenerError("global.api.tcp", "cannot bind the API TCP listener %s: %s"
                                            % (self.tcp, getattr(exc, "strerror", None) or exc)) from None
        except BaseException:
            self.unbind()
            raise
        return self

    def unbind(self) -> None:
        """Close what ``bind`` bound and ``start`` did not serve (a refused
        reload); a socket file shared with the running server stays."""
        bound, self._bound = self._bound, {}
        for sock in bound.values():
            sock.close()
        if "unix" in bound and self._shared_from is None:
            self._unlink_own_socket()
        self._socket_inode = None
        self._shared_from = None

    def _unlink_own_socket(self) -> None:
        # Only if the file is still ours: a daemon started since may have
        # replaced it.
        if self.socket_path and self._socket_inode is not None:
            try:
                if os.stat(self.socket_path).st_ino == self._socket_inode:
                    os.unlink(self.socket_path)
            except FileNotFoundError:
                pass
            self._socket_inode = None

    async def start(self) -> "ApiServer":
        bound = {}
        try:
            if not self._bound:
                self.bind()
            bound, self._bound = self._bound, {}
            if "unix" in bound:
                self._listening["unix"] = bound["unix"]
                await self._site(make_app(self.control), bound.pop("unix"))
                log.info("API listening on unix:%s", self.socket_path, extra={"socket": self.socket_path})
            if "tcp" in bound:
                sock = self._listening["tcp"] = bound.pop("tcp")
                self.tcp_address = sock.getsockname()[:2]
                await self._site(make_app(self.control, token=self.token), sock)
                log.info("API listening on tcp %s:%d (bearer token required)", *self.tcp_address)
        except BaseException:
            for sock in bound.values():
                sock.close()
            await self.stop()
            raise
        if self._shared_from is not None:
            self._shared_from._socket_inode = None  # the file is ours now: the old server leaves it
            self._shared_from = None
        return self

    async def stop(self) -> None:
        runners, self._runners = self._runners, []
        servers, self._servers = self._servers, []
        for server in servers:
            server.close()
        self._listening = {}
        # First, so no new client finds it.
        self._unlink_own_socket()
        for runner in runners:
            h = runner.app[_HANDLERS]
            h.closing.set()  # ends watch streams now rather than at the timeout
        for runner in runners:
            await runner.cleanup()

    async def __aenter__(self):
        return await self.start()

    async def __aexit__(self, *exc):
        await self.stop()


async def serve(control: ctl.Control, api_config=None, **kw) -> ApiServer:
    """Start the API of ``control`` as ``[global.api]`` says (or with the
    ApiServer keywords given); returns the started server to stop later."""
    server = ApiServer.from_config(control, api_config, **kw) if api_config is not None else ApiServer(control, **kw)
    return await server.start()
