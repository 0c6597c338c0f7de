"""One control API over the worker daemons of ``workers = N``.

In that mode a front process owns the TCP sessions and relays every BGP
message to N worker processes.  Each worker is a complete fastbgp daemon
(same configuration, same sessions, same policies, same originated routes)
whose RIB keeps one shard of the prefix space only (a fixed hash of the
prefix picks the shard: every prefix is in exactly one worker); worker 0 is
the primary.  Each worker serves the usual HTTP/JSON API
(:mod:`fastbgp.control.api`) on a private unix socket.
:class:`FanoutControl` implements :class:`fastbgp.control.contract.Control`
over those sockets, so the front serves the very same API with ``make_app``
/ ``ApiServer``: same URLs, same JSON, same errors.

Merge rules (the contract of this module, and why)
    Session state -- ``neighbors``, ``neighbor``, ``global_info``,
    ``policy_info``, ``rpki_info``, ``rpki_validate``: every worker runs the
    same sessions and configuration, so worker 0's answer is taken, except
    the counts of prefixes and paths, which are summed over the workers
    because each holds a disjoint shard: a neighbour's
    ``prefixes_received`` / ``prefixes_accepted`` / ``prefixes_advertised``
    and its ``rpki`` per-state path counts, ``global_info().ribs`` (as
    ``rib_summary``), ``rpki_info().routes``, ``.neighbors`` (per address
    and family) and ``.revalidated``.  Message counters (``counters``) are
    worker 0's: every worker sees every message.  ``policy_info`` and
    ``rpki_validate`` are asked of worker 0 only (configuration and VRPs,
    the same everywhere).  A worker's 404 "unknown neighbor" is the
    contract's KeyError (the API answers it as one daemon does);
    ``rpki_validate``'s 404 is its LookupError.
    ``rib_summary``: per family, ``prefixes`` and ``paths`` summed (exact:
    disjoint shards); ``attribute_sets`` summed too, the attribute sets
    interned over all the processes, which is what memory pays -- it
    exceeds one daemon's count when shards share an attribute set.

    Actions -- ``enable``, ``disable``, ``reset``, ``soft_reset``,
    ``set_log_level``, ``announce``, ``withdraw``, ``inject``, ``reload``:
    sent to every worker at once (each must act: each has the sessions and
    the originated routes), all awaited.  If any failed, the error of the
    lowest-numbered failing worker is raised: a worker's 4xx answer is
    passed on with its status, message and fields unchanged (a bad request
    or a refused configuration reads exactly as one daemon's); a 5xx keeps
    its status with "worker N (socket): " in front of the message.  The
    result is worker 0's: announce/withdraw/inject counts are per request
    (the prefixes of the request originated / withdrawn, every worker
    originating the same routes), as one daemon counts them, so they are
    not summed; a reload's summary is the configuration change, the same in
    every worker.  A failure in some workers only leaves the others changed
    (there is no distributed transaction): the error says which one failed.

    Tables -- the shards are disjoint, so rows are never repeated:
    ``rib`` (full listing), ``iter_rib``, and queries other than one
    prefix's paths (no prefix, ``longer``, ``shorter``) come sorted by
    prefix (address, then length, as ``daemon/views.py`` sorts its keys)
    from each worker; they are merged lazily in that order (a heap over
    the workers' NDJSON streams, never a whole table in memory when
    streamed).  Paging (``offset``/``limit``): each worker is asked for its
    first ``offset + limit`` matching rows without offset (no limit when
    that exceeds MAX_RIB_LIMIT), the merge skips ``offset`` rows and stops
    after ``limit``: the page one daemon holding every shard would give.
    ``match=exact``: every worker is asked (only the one holding the prefix
    has rows; paging passes through).  ``match=longest``: each worker's
    longest match is asked for without filters, the most specific one wins,
    and its worker answers the query itself (filters and paging apply to
    the paths of that prefix, as in one daemon).  ``adj_rib_in`` /
    ``adj_rib_out``: concatenated in worker order (one daemon lists them in
    RIB dump order, grouped by attribute set, no defined prefix order).

    Events -- ``watch`` merges the workers' streams in arrival order.
    Session events are the same in every worker and come from worker 0
    only: StateChange and UpdateReceived (every worker parses every
    received UPDATE).  BestChange comes from every worker (each for its
    shard).  The stream ends when any worker's stream ends.

Failures
    A worker that cannot be reached, does not answer within ``timeout``
    seconds (per request; per read for streams, the watch allowing two
    heartbeats), answers something that does not decode, or a streamed
    table out of order, raises :class:`WorkerError` (an
    ``api.UpstreamError``: status 502) naming the worker and its socket.
    Streams are opened when a stream object is awaited (the API does, before
    its answer's status line), so a dead worker is a 502 rather than a cut
    table; a failure later in a stream cuts it, as one daemon's does.

Methods that contract.Control defines as plain functions are coroutines
here (the API awaits what a Control returns).  ``iter_rib``,
``iter_query`` and ``watch`` return objects that are async iterators and
awaitable (awaiting opens the workers' streams); ``aclose()`` them when
stopping early.  Sessions are created inside the running loop at first
use; ``close()`` closes them.
"""

from __future__ import annotations

import asyncio
import heapq
import os
import socket
from typing import Optional
from urllib.parse import quote

import aiohttp
import msgspec
from yarl import URL

from fastbgp.control import api
from fastbgp.control import contract as ctl

__all__ = ["FanoutControl", "WorkerError", "prefix_key", "MAX_ANSWER", "MAX_LINE"]

# Bounds on what a worker may send: one non-streamed answer, one line of a
# stream, one error answer.
MAX_ANSWER = 1 << 30
MAX_LINE = 16 << 20
MAX_ERROR_ANSWER = 1 << 20
MAX_ERROR_TEXT = 2000
# Connections to one worker at a time (each watch and stream holds one).
CONNECTIONS = 256
WATCH_QUEUE = 1000
_BASE = "http://fastbgp-worker"
# Fields of a relayed error that are not passed on as extra JSON fields.
_RESERVED = {"error", "status", "message", "self"}
_SUMMED = ("prefixes_received", "prefixes_accepted", "prefixes_advertised")


class WorkerError(api.UpstreamError):
    """A worker that could not answer (unreachable, too slow, garbage):
    status 502, the message names the worker and its socket."""

    def __init__(self, index: int, path: str, problem: str):
        self.index = index
        self.path = path
        self.problem = problem
        super().__init__(502, "worker %d (%s): %s" % (index, path, problem))


class _Count(msgspec.Struct):
    count: int


_DEC = {
    "neighbors": msgspec.json.Decoder(list[ctl.NeighborSummary]),
    "neighbor": msgspec.json.Decoder(ctl.NeighborDetail),
    "routes": msgspec.json.Decoder(list[ctl.Route]),
    "summary": msgspec.json.Decoder(list[ctl.RibSummary]),
    "global": msgspec.json.Decoder(ctl.GlobalInfo),
    "policy": msgspec.json.Decoder(ctl.PolicyInfo),
    "rpki": msgspec.json.Decoder(ctl.RpkiInfo),
    "validate": msgspec.json.Decoder(ctl.RpkiValidation),
    "count": msgspec.json.Decoder(_Count),
    "dict": msgspec.json.Decoder(dict),
    "event": msgspec.json.Decoder(ctl.AnyEvent),
}
_encoder = msgspec.json.Encoder()


def prefix_key(prefix: str) -> tuple:
    """(address as an int, length): the order of a RIB listing (one daemon
    sorts by ``address << 8 | length``).  ValueError/OSError if malformed."""
    addr, slash, plen = prefix.partition("/")
    v6 = ":" in addr
    n = int.from_bytes(socket.inet_pton(socket.AF_INET6 if v6 else socket.AF_INET, addr), "big")
    return n, int(plen) if slash else (128 if v6 else 32)


def _seg(text) -> str:
    """One URL path segment: a hostile address cannot reach another endpoint."""
    return quote(str(text), safe="")


def _url(path: str) -> URL:
    return URL(_BASE + path, encoded=True)


def _reason(exc) -> str:
    inner = getattr(exc, "os_error", None)
    if inner is not None and getattr(inner, "strerror", None):
        return inner.strerror
    return str(exc) or type(exc).__name__


def _query_params(q: ctl.RibQuery, offset: Optional[int] = None, limit=False) -> dict:
    """A RibQuery as the URL parameters of GET /v1/rib/{family}
    (``offset``/``limit`` replaced when given)."""
    out = {"match": q.match}
    for field in ("prefix", "community", "large_community", "as_path", "origin_as", "source"):
        v = getattr(q, field)
        if v is not None:
            out[field] = str(v)
    off = q.offset if offset is None else offset
    lim = q.limit if limit is False else limit
    if off:
        out["offset"] = str(off)
    if lim is not None:
        out["limit"] = str(lim)
    return out


def _has_filters(q: ctl.RibQuery) -> bool:
    return any(getattr(q, f) is not None for f in ("community", "large_community", "as_path", "origin_as", "source"))


def _sum_dicts(mine: dict, other: dict) -> dict:
    """``mine`` with ``other``'s integer values added key by key."""
    out = dict(mine)
    for k, v in other.items():
        if isinstance(v, int) and not isinstance(v, bool):
            cur = out.get(k, 0)
            out[k] = cur + v if isinstance(cur, int) and not isinstance(cur, bool) else cur
    return out


def _sum_summaries(lists) -> list:
    """RibSummary lists of every worker summed per family (worker 0's order)."""
    out: dict = {}
    for summaries in lists:
        for s in summaries:
            t = out.get(s.family)
            if t is None:
                out[s.family] = ctl.RibSummary(family=s.family, prefixes=s.prefixes, paths=s.paths,
                                               attribute_sets=s.attribute_sets)
            else:
                t.prefixes += s.prefixes
                t.paths += s.paths
                t.attribute_sets += s.attribute_sets
    return list(out.values())


def _first_error(results):
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return results


# --------------------------------------------------------------------- one worker


class _Worker:
    """One worker's socket and client session (made in the running loop)."""

    def __init__(self, index: int, path: str):
        self.index = index
        self.path = path
        self.session: Optional[aiohttp.ClientSession] = None

    def client(self) -> aiohttp.ClientSession:
        if self.session is None or self.session.closed:
            self.session = aiohttp.ClientSession(
                connector=aiohttp.UnixConnector(path=self.path, limit=CONNECTIONS),
                timeout=aiohttp.ClientTimeout(total=None))
        return self.session

    def error(self, problem: str) -> WorkerError:
        return WorkerError(self.index, self.path, problem)

    def failure(self, exc, what: str, timeout: float) -> WorkerError:
        """The WorkerError of a transport failure of request ``what``."""
        if isinstance(exc, WorkerError):
            return exc
        if isinstance(exc, TimeoutError):
            return self.error("no answer to %s within %g s" % (what, timeout))
        if isinstance(exc, (aiohttp.ClientConnectorError, FileNotFoundError, ConnectionRefusedError)):
            if not os.path.exists(self.path):
                return self.error("cannot connect: no socket at %s" % self.path)
            return self.error("cannot connect: %s" % _reason(exc))
        if isinstance(exc, aiohttp.ServerDisconnectedError):
            return self.error("closed the connection during %s" % what)
        if isinstance(exc, aiohttp.ClientPayloadError):
            return self.error("answer to %s cut short: %s" % (what, _reason(exc)))
        return self.error("%s failed: %s: %s" % (what, type(exc).__name__, _reason(exc)))

    def decode(self, data: bytes, kind: str, what: str):
        try:
            return _DEC[kind].decode(data)
        except (msgspec.DecodeError, RecursionError) as exc:
            raise self.error("unexpected answer to %s: %s" % (what, exc)) from None

    def relayed(self, status: int, body: bytes, what: str, neighbor=None, lookup=False) -> Exception:
        """The exception of a worker's non-200 answer (see the module docstring)."""
        message, extra = None, {}
        try:
            doc = msgspec.json.decode(body)
        except (msgspec.DecodeError, RecursionError):
            doc = None
        if isinstance(doc, dict) and isinstance(doc.get("error"), str):
            message = doc["error"]
            extra = {k: v for k, v in doc.items() if isinstance(k, str) and k not in _RESERVED}
        if not 400 <= status <= 599:
            return self.error("unexpected HTTP status %d to %s" % (status, what))
        if message is None:
            text = body[:MAX_ERROR_TEXT].decode(errors="replace").strip()
            message = text or "HTTP %d" % status
        if status == 404 and neighbor is not None and message.startswith("unknown neighbor"):
            return KeyError(neighbor)
        if status == 404 and lookup:
            return LookupError(message)
        if status >= 500:
            message = "worker %d (%s): %s" % (self.index, self.path, message)
        return api.UpstreamError(status, message, **extra)


async def _body(w: _Worker, resp, limit: int, what: str) -> bytes:
    chunks, size = [], 0
    async for chunk in resp.content.iter_any():
        size += len(chunk)
        if size > limit:
            raise w.error("answer to %s larger than %d bytes" % (what, limit))
        chunks.append(chunk)
    return b"".join(chunks)


class _Lines:
    """One worker's NDJSON answer, read a chunk of complete lines at a time."""

    def __init__(self, w: _Worker, path: str, params, read_timeout: float, connect_timeout: float):
        self.w = w
        self.path = path
        self.params = params
        self.read_timeout = read_timeout
        self.connect_timeout = connect_timeout
        self.what = "GET " + path
        self.resp = None
        self.buf = bytearray()
        self.closed = False

    async def open(self):
        w = self.w
        try:
            async with asyncio.timeout(self.connect_timeout):
                resp = await w.client().get(_url(self.path), params=self.params, allow_redirects=False)
                if resp.status != 200:
                    try:
                        body = await _body(w, resp, MAX_ERROR_ANSWER, self.what)
                    finally:
                        resp.release()
                    raise w.relayed(resp.status, body, self.what)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise w.failure(exc, self.what, self.connect_timeout) from None
        if self.closed:  # closed while opening
            resp.close()
        else:
            self.resp = resp
        return self

    async def lines(self) -> Optional[list]:
        """The next complete non-blank lines; None at the end."""
        w = self.w
        while True:
            try:
                async with asyncio.timeout(self.read_timeout):
                    chunk = await self.resp.content.readany()
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                raise w.failure(exc, self.what, self.read_timeout) from None
            if not chunk:
                if self.buf.strip():
                    raise w.error("unexpected answer to %s: it ends inside a line" % self.what)
                return None
            self.buf += chunk
            cut = self.buf.rfind(b"\n")
            if cut < 0:
                if len(self.buf) > MAX_LINE:
                    raise w.error("a line of %s is longer than %d bytes" % (self.what, MAX_LINE))
                continue
            data = bytes(self.buf[:cut])
            del self.buf[: cut + 1]
            lines = [line for line in data.split(b"\n") if line.strip()]
            if lines:
                return lines

    def close(self):
        self.closed = True
        if self.resp is not None:
            self.resp.close()  # not released: an unread stream must not go back to the pool


class _RouteCursor:
    """A worker's sorted Route stream, one (key, Route) at a time."""

    def __init__(self, lines: _Lines):
        self.lines = lines
        self.rows: list = []
        self.pos = 0
        self.last = None
        self.done = False

    async def next(self):
        if self.pos >= len(self.rows):
            if self.done or not await self._fill():
                self.done = True
                return None
        row = self.rows[self.pos]
        self.pos += 1
        return row

    async def _fill(self) -> bool:
        ls = self.lines
        lines = await ls.lines()
        if lines is None:
            return False
        routes = ls.w.decode(b"[" + b",".join(lines) + b"]", "routes", ls.what)
        rows = []
        last = self.last
        for r in routes:
            try:
                k = prefix_key(r.prefix)
            except (ValueError, OSError):
                raise ls.w.error("unexpected answer to %s: not a prefix: %.100r" % (ls.what, r.prefix)) from None
            if last is not None and k < last:
                raise ls.w.error("answer to %s out of prefix order at %s" % (ls.what, r.prefix))
            last = k
            rows.append((k, r))
        self.last = last
        self.rows, self.pos = rows, 0
        return True


class _Rows:
    """Rows of one listing over every worker, in chunks: an async iterator,
    and awaitable (awaiting opens the workers' streams, or computes the
    whole answer when ``single`` -- a coroutine function -- gives it)."""

    def __init__(self, fc: "FanoutControl", path: str = "", params=None, chunk: int = 10000, skip: int = 0,
                 take: Optional[int] = None, single=None):
        self.fc = fc
        self.path = path
        self.params = params
        self.chunk = max(1, int(chunk))
        self.skip = skip
        self.take = take
        self.single = single
        self.streams: list = []
        self.gen = None
        self.started = False
        self.failed: Optional[BaseException] = None

    def __await__(self):
        return self._start().__await__()

    async def _start(self):
        if self.failed is not None:
            raise self.failed
        if self.started:
            return self
        self.started = True
        try:
            if self.single is not None:
                self.gen = self._one(await self.single())
            else:
                fc = self.fc
                self.streams = [_Lines(w, self.path, self.params, fc.timeout, fc.timeout) for w in fc.workers]
                _first_error(await asyncio.gather(*(s.open() for s in self.streams), return_exceptions=True))
                # The first rows too: a worker answering garbage from the
                # start is still an error status, not a cut table.
                cursors = [_RouteCursor(s) for s in self.streams]
                firsts = _first_error(await asyncio.gather(*(c.next() for c in cursors), return_exceptions=True))
                self.gen = self._merge(cursors, firsts)
        except BaseException as exc:
            self.failed = exc
            self._close()
            raise
        return self

    def __aiter__(self):
        return self

    async def __anext__(self):
        await self._start()
        return await self.gen.__anext__()

    async def _one(self, routes):
        yield routes

    async def _merge(self, cursors, firsts):
        try:
            heap = [(row[0], i, row[1]) for i, row in enumerate(firsts) if row is not None]
            heapq.heapify(heap)
            skip, take, out = self.skip, self.take, []
            while heap and (take is None or take > 0):
                _k, i, route = heap[0]
                nxt = await cursors[i].next()
                if nxt is None:
                    heapq.heappop(heap)
                else:
                    heapq.heapreplace(heap, (nxt[0], i, nxt[1]))
                if skip:
                    skip -= 1
                    continue
                out.append(route)
                if take is not None:
                    take -= 1
                if len(out) >= self.chunk:
                    yield out
                    out = []
            if out:
                yield out
        finally:
            self._close()

    def _close(self):
        for s in self.streams:
            s.close()

    async def aclose(self):
        self._close()
        if self.gen is not None:
            await self.gen.aclose()


class _Events:
    """The workers' watch streams merged (see the module docstring):
    awaitable (subscribes at every worker) and an async iterator."""

    _END = object()

    def __init__(self, fc: "FanoutControl"):
        self.fc = fc
        self.streams: list = []
        self.tasks: list = []
        self.queue: asyncio.Queue = asyncio.Queue(WATCH_QUEUE)
        self.started = False
        self.finished = False

    def __await__(self):
        return self._start().__await__()

    async def _start(self):
        if self.started:
            return self
        self.started = True
        fc = self.fc
        # Workers send a blank line every WATCH_HEARTBEAT s without events:
        # two missed ones and a worker is taken for gone.
        read_timeout = 2 * api.WATCH_HEARTBEAT + fc.timeout
        self.streams = [_Lines(w, "/v1/watch", None, read_timeout, fc.timeout) for w in fc.workers]
        try:
            # A worker answers once it has subscribed: then so have we.
            _first_error(await asyncio.gather(*(s.open() for s in self.streams), return_exceptions=True))
        except BaseException:
            self._close()
            raise
        self.tasks = [asyncio.ensure_future(self._read(i, s)) for i, s in enumerate(self.streams)]
        return self

    async def _read(self, i: int, stream: _Lines):
        try:
            while True:
                lines = await stream.lines()
                if lines is None:
                    await self.queue.put(self._END)
                    return
                for line in lines:
                    ev = stream.w.decode(line, "event", stream.what)
                    if i == 0 or isinstance(ev, ctl.BestChange):
                        await self.queue.put(ev)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            await self.queue.put(exc)

    def __aiter__(self):
        return self

    async def __anext__(self):
        await self._start()
        if self.finished:
            raise StopAsyncIteration
        item = await self.queue.get()
        if item is self._END or isinstance(item, BaseException):
            self.finished = True
            self._close()
            if item is self._END:
                raise StopAsyncIteration
            raise item
        return item

    def _close(self):
        for t in self.tasks:
            t.cancel()
        for s in self.streams:
            s.close()

    async def aclose(self):
        self.finished = True
        self._close()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)


# ----------------------------------------------------------------- the Control


class FanoutControl:
    """contract.Control over the API sockets of worker daemons; see the
    module docstring for what each method asks and how answers merge."""

    def __init__(self, paths: list, *, timeout: float = 30.0):
        paths = [os.fspath(p) for p in paths]
        if not paths:
            raise ValueError("FanoutControl needs at least one worker socket")
        if not timeout > 0:
            raise ValueError("timeout must be > 0")
        self.paths = paths
        self.timeout = float(timeout)
        self.workers = [_Worker(i, p) for i, p in enumerate(paths)]

    def __repr__(self):
        return "<FanoutControl %d workers>" % len(self.workers)

    async def close(self) -> None:
        for w in self.workers:
            if w.session is not None:
                await w.session.close()
                w.session = None

    # -- requests

    async def _request(self, w: _Worker, method: str, path: str, *, params=None, body=None,
                       content_type: str = api.JSON, neighbor=None, lookup=False) -> bytes:
        what = "%s %s" % (method, path)
        headers = {"Content-Type": content_type} if body is not None else None
        try:
            async with asyncio.timeout(self.timeout):
                async with w.client().request(method, _url(path), params=params, data=body, headers=headers,
                                              allow_redirects=False) as resp:
                    status = resp.status
                    data = await _body(w, resp, MAX_ANSWER if status == 200 else MAX_ERROR_ANSWER, what)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise w.failure(exc, what, self.timeout) from None
        if status != 200:
            raise w.relayed(status, data, what, neighbor, lookup)
        return data

    async def _each(self, method: str, path: str, kind: str, **kw) -> list:
        """The decoded answers of every worker; the first failure raised
        (after every worker answered: an action reaches all of them)."""
        ws = self.workers
        results = await asyncio.gather(*(self._request(w, method, path, **kw) for w in ws), return_exceptions=True)
        _first_error(results)
        return [w.decode(data, kind, "%s %s" % (method, path)) for w, data in zip(ws, results)]

    async def _first(self, method: str, path: str, kind: str, **kw):
        w = self.workers[0]
        return w.decode(await self._request(w, method, path, **kw), kind, "%s %s" % (method, path))

    # -- neighbours

    async def neighbors(self) -> list:
        answers = await self._each("GET", "/v1/neighbors", "neighbors")
        out = answers[0]
        mine = {n.address: n for n in out}
        for other in answers[1:]:
            for n in other:
                m = mine.get(n.address)
                if m is not None:
                    for f in _SUMMED:
                        setattr(m, f, getattr(m, f) + getattr(n, f))
        return out

    async def neighbor(self, address: str) -> ctl.NeighborDetail:
        answers = await self._each("GET", "/v1/neighbors/" + _seg(address), "neighbor", neighbor=address)
        d = answers[0]
        for o in answers[1:]:
            for f in _SUMMED:
                setattr(d, f, getattr(d, f) + getattr(o, f))
            if d.rpki is not None and o.rpki is not None:
                d.rpki = _sum_dicts(d.rpki, o.rpki)
        return d

    async def _action(self, address: str, action: str, body: dict) -> None:
        await self._each("POST", "/v1/neighbors/%s/%s" % (_seg(address), action), "dict",
                         body=_encoder.encode(body), neighbor=address)

    async def enable(self, address: str) -> None:
        await self._action(address, "enable", {})

    async def disable(self, address: str, message: str = "") -> None:
        await self._action(address, "disable", {"message": message})

    async def reset(self, address: str, message: str = "") -> None:
        await self._action(address, "reset", {"message": message})

    async def soft_reset(self, address: str, direction: str = "both") -> None:
        await self._action(address, "softreset", {"direction": direction})

    async def adj_rib_in(self, address: str, family: str) -> list:
        return await self._adj(address, "in", family)

    async def adj_rib_out(self, address: str, family: str) -> list:
        return await self._adj(address, "out", family)

    async def _adj(self, address, direction, family) -> list:
        path = "/v1/neighbors/%s/adj-%s/%s" % (_seg(address), direction, _seg(family))
        return [r for routes in await self._each("GET", path, "routes", neighbor=address) for r in routes]

    # -- RIB

    async def rib(self, family: str, prefix: Optional[str] = None, longest_match: bool = False) -> list:
        if prefix is None:
            return await self._collect(self.iter_rib(family))
        return await self.query_rib(family, ctl.RibQuery(prefix=prefix, match="longest" if longest_match else "exact"))

    def iter_rib(self, family: str, chunk: int = 10000) -> _Rows:
        return _Rows(self, "/v1/rib/" + _seg(family), {"stream": "1"}, chunk)

    async def query_rib(self, family: str, query: ctl.RibQuery) -> list:
        if query.prefix is not None and query.match in ("exact", "longest"):
            return await self._one_prefix(family, query)
        return await self._collect(self.iter_query(family, query))

    def iter_query(self, family: str, query: ctl.RibQuery, chunk: int = 10000) -> _Rows:
        if query.prefix is not None and query.match in ("exact", "longest"):
            return _Rows(self, chunk=chunk, single=lambda: self._one_prefix(family, query))
        # Each worker's first offset+limit rows hold the page: merged, the
        # first offset skipped.  Past MAX_RIB_LIMIT a worker is asked for
        # all (the merge still stops reading at the page's end).
        limit = None
        if query.limit is not None and query.offset + query.limit <= ctl.MAX_RIB_LIMIT:
            limit = query.offset + query.limit
        params = _query_params(query, offset=0, limit=limit)
        params["stream"] = "1"
        return _Rows(self, "/v1/rib/" + _seg(family), params, chunk, skip=query.offset, take=query.limit)

    async def _one_prefix(self, family: str, q: ctl.RibQuery) -> list:
        path = "/v1/rib/" + _seg(family)
        if q.match == "exact":
            # Only the worker holding the prefix has rows: paging passes through.
            answers = await self._each("GET", path, "routes", params=_query_params(q))
            return [r for routes in answers for r in routes]
        # Longest match: each worker's own (unfiltered), the most specific wins.
        plain = ctl.RibQuery(prefix=q.prefix, match="longest")
        answers = await self._each("GET", path, "routes", params=_query_params(plain))
        best, best_len = None, -1
        for i, routes in enumerate(answers):
            if routes:
                try:
                    plen = prefix_key(routes[0].prefix)[1]
                except (ValueError, OSError):
                    raise self.workers[i].error("unexpected answer to GET %s: not a prefix: %.100r"
                                                % (path, routes[0].prefix)) from None
                if plen > best_len:
                    best, best_len = i, plen
        if best is None:
            return []
        if not _has_filters(q):
            return answers[best][q.offset : None if q.limit is None else q.offset + q.limit]
        w = self.workers[best]
        return w.decode(await self._request(w, "GET", path, params=_query_params(q)), "routes", "GET " + path)

    @staticmethod
    async def _collect(rows: _Rows) -> list:
        out: list = []
        try:
            async for chunk in rows:
                out.extend(chunk)
        finally:
            await rows.aclose()
        return out

    async def rib_summary(self) -> list:
        return _sum_summaries(await self._each("GET", "/v1/rib/summary", "summary"))

    async def global_info(self) -> ctl.GlobalInfo:
        answers = await self._each("GET", "/v1/global", "global")
        g = answers[0]
        g.ribs = _sum_summaries([a.ribs for a in answers])
        return g

    async def policy_info(self) -> ctl.PolicyInfo:
        return await self._first("GET", "/v1/policy", "policy")

    async def rpki_info(self) -> ctl.RpkiInfo:
        answers = await self._each("GET", "/v1/rpki", "rpki")
        info = answers[0]
        rows = {}
        for a in answers:
            for r in a.neighbors:
                key = (r.address, r.family)
                t = rows.get(key)
                if t is None:
                    rows[key] = ctl.RpkiNeighborRoutes(address=r.address, family=r.family, valid=r.valid,
                                                       invalid=r.invalid, not_found=r.not_found)
                else:
                    t.valid += r.valid
                    t.invalid += r.invalid
                    t.not_found += r.not_found
        for a in answers[1:]:
            info.routes = _sum_dicts(info.routes, a.routes)
            info.revalidated += a.revalidated
        info.neighbors = list(rows.values())
        return info

    async def rpki_validate(self, prefix: str, asn: int) -> ctl.RpkiValidation:
        return await self._first("GET", "/v1/rpki/validate", "validate",
                                 params={"prefix": prefix, "asn": str(asn)}, lookup=True)

    # -- origination, daemon

    async def announce(self, request: ctl.Announce) -> int:
        return (await self._each("POST", "/v1/rib/announce", "count", body=_encoder.encode(request)))[0].count

    async def withdraw(self, request: ctl.Announce) -> int:
        return (await self._each("POST", "/v1/rib/withdraw", "count", body=_encoder.encode(request)))[0].count

    async def inject(self, groups) -> int:
        body = msgspec.msgpack.encode(groups)
        return (await self._each("POST", "/v1/rib/inject", "count", body=body, content_type=api.MSGPACK))[0].count

    async def reload(self) -> dict:
        return (await self._each("POST", "/v1/reload", "dict"))[0]

    async def set_log_level(self, level: str) -> None:
        await self._each("POST", "/v1/log-level", "dict", body=_encoder.encode({"level": level}))

    def watch(self) -> _Events:
        return _Events(self)
