"""control.fanout.FanoutControl: the API of a ``workers = N`` front over
real worker daemons, compared with one daemon holding every shard.

Three in-process Daemons play the workers (same configuration and
sessions, each given a different, disjoint set of prefixes: routes it
originates through its own API, routes its eBGP peer announces), a fourth
daemon ("ref") holds all of them.  Each serves the real api.ApiServer on a
unix socket; the front serves FanoutControl through the same ApiServer on
its own socket.  The tests ask the front and ref the same requests and
compare the JSON.

Fields that legitimately differ and are ignored: a Route's ``age`` and
``received`` (when each daemon got it), GlobalInfo ``started`` / ``uptime``
/ ``listen`` (per process), a neighbour's ``uptime`` / ``downtime`` /
``counters`` (message counts: each peer sent its own UPDATEs) /
``remote_port``, and RibSummary ``attribute_sets`` (interned per process,
summed over the workers).
"""

import asyncio
import contextlib
import ipaddress
import itertools
import json
import logging
import socket
import time
import zlib

import msgspec
import pytest

aiohttp = pytest.importorskip("aiohttp")

from aiohttp import web  # noqa: E402

from fastbgp.cli.common import ApiError, Client  # noqa: E402
from fastbgp.config.checks import load_config  # noqa: E402
from fastbgp.control import api, logs  # noqa: E402
from fastbgp.control.fanout import FanoutControl, WorkerError, prefix_key  # noqa: E402
from fastbgp.daemon.core import Daemon  # noqa: E402
from fastbgp.session.speaker import NeighborConfig, Speaker  # noqa: E402
from fastbgp.testing.net import free_port  # noqa: E402

N = 3
# A fresh /24 of loopback per cluster: no address reused within a run.
_NETS = (i for i in itertools.count(60))
IDLE = "127.0.%d.250"  # a configured neighbour nobody connects for (stays Active)


def _shard(prefix: str) -> int:
    return zlib.crc32(prefix.encode()) % N


# Originated prefixes: nested ones across shards (10.a/16 > 10.a.b/24 > /25).
ORIGINATED = ["10.0.0.0/8"] + ["10.%d.0.0/16" % a for a in range(8)] + [
    "10.%d.%d.0/24" % (a, b) for a in range(8) for b in range(3)] + [
    "10.%d.%d.128/25" % (a, b) for a in range(0, 8, 2) for b in range(2)] + [
    "2001:db8::/32"] + ["2001:db8:%x::/48" % i for i in range(1, 8)]
PEER_ROUTES = ["172.16.%d.0/24" % i for i in range(12)] + ["172.16.0.0/16", "2001:db8:ff00::/40"]


def _attrs(i: int, prefix: str) -> dict:
    req = {"prefixes": [prefix], "as_path": [65100 + i % 4], "communities": ["65001:%d" % (i % 3)], "med": i % 2}
    if ":" not in prefix:
        req["next_hop"] = "192.0.2.%d" % (1 + i % 5)
    return req


def _config(net: int, port: int) -> str:
    return """\
[global]
asn = 65001
router-id = "10.0.0.1"
listen = ["127.0.{net}.1:{port}"]

[[neighbors]]
address = "127.0.{net}.9"
peer-as = 65002
passive = true
families = ["ipv4-unicast", "ipv6-unicast"]
default-import = "accept"
default-export = "accept"
timers = {{ idle-hold = 0, connect-retry = 1 }}

[[neighbors]]
address = "127.0.{net}.250"
peer-as = 65003
passive = true
""".format(net=net, port=port)


async def _until(pred, what, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for %s" % what)
        await asyncio.sleep(0.02)


async def http(sock, method, path, body=None, params=None, timeout=10.0):
    """(status, decoded JSON) of one request on a unix socket."""
    data = json.dumps(body).encode() if body is not None else None
    async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=sock)) as s:
        async with s.request(method, "http://localhost" + path, data=data, params=params,
                             timeout=aiohttp.ClientTimeout(total=timeout)) as r:
            raw = await r.read()
            return r.status, (json.loads(raw) if raw.strip() else None)


class Node:
    """One daemon, its eBGP peer (a library Speaker) and its API socket."""

    def __init__(self, tmp, name, net, originated, peer_routes):
        self.sock = str(tmp / ("%s.sock" % name))
        self.net = net
        self.originated = originated
        self.peer_routes = peer_routes
        self.port = free_port("127.0.%d.1" % net)
        self.daemon = self.server = self.speaker = None

    async def start(self):
        self.daemon = Daemon(load_config(_config(self.net, self.port)))
        await self.daemon.start()
        self.server = await api.ApiServer(self.daemon, socket_path=self.sock).start()
        self.speaker = Speaker(65002, "10.0.0.2")
        await self.speaker.start()
        self.peer = self.speaker.add_neighbor(NeighborConfig(
            address="127.0.%d.1" % self.net, peer_as=65001, port=self.port, local_address="127.0.%d.9" % self.net,
            families=["ipv4-unicast", "ipv6-unicast"], idle_hold_time=0.1, connect_retry=1.0))
        for p in self.peer_routes:
            self.peer.announce([p], next_hop="127.0.%d.9" % self.net if ":" not in p else "2001:db8::9",
                               as_path=[65020 + ORDER[p] % 2])
        for p in self.originated:
            status, body = await http(self.sock, "POST", "/v1/rib/announce", _attrs(ORDER[p], p))
            assert status == 200 and body == {"count": 1}, body
        await self.peer.wait_established(10)
        want = {}
        for p in self.originated + self.peer_routes:
            fam = "ipv6-unicast" if ":" in p else "ipv4-unicast"
            want[fam] = want.get(fam, 0) + 1
        await _until(lambda: {s.family: s.paths for s in self.daemon.rib_summary() if s.paths} == want, "routes in the RIB")

    async def stop(self):
        if self.server is not None:
            await self.server.stop()
        if self.speaker is not None:
            await self.speaker.stop()
        if self.daemon is not None:
            await self.daemon.stop()


ORDER = {p: i for i, p in enumerate(ORIGINATED + PEER_ROUTES)}


class Cluster:
    def __init__(self, tmp):
        self.tmp = tmp
        net = next(_NETS)
        self.net = net
        self.peer_address = "127.0.%d.9" % net
        self.idle = IDLE % net
        self.workers = [Node(tmp, "worker%d" % i, net, [p for p in ORIGINATED if _shard(p) == i],
                             [p for p in PEER_ROUTES if _shard(p) == i]) for i in range(N)]
        self.ref = Node(tmp, "ref", net, ORIGINATED, PEER_ROUTES)
        self.front_sock = str(tmp / "front.sock")
        self.fc = self.front = None

    async def __aenter__(self):
        try:
            await asyncio.gather(*(n.start() for n in self.workers + [self.ref]))
            self.fc = FanoutControl([w.sock for w in self.workers], timeout=5.0)
            self.front = await api.ApiServer(self.fc, socket_path=self.front_sock).start()
        except BaseException:
            await self.__aexit__()
            raise
        return self

    async def __aexit__(self, *exc):
        if self.front is not None:
            await self.front.stop()
        if self.fc is not None:
            await self.fc.close()
        for n in self.workers + [self.ref]:
            await n.stop()
        logs.reset()

    async def both(self, method, path, body=None, params=None):
        """(front's (status, body), ref's (status, body))."""
        return (await http(self.front_sock, method, path, body, params),
                await http(self.ref.sock, method, path, body, params))


def _routes(rows):
    return [{k: v for k, v in r.items() if k not in ("age", "received")} for r in rows]


def _sorted(rows):
    return sorted(_routes(rows), key=lambda r: (prefix_key(r["prefix"]), json.dumps(r, sort_keys=True)))


def _without(d, *keys):
    return {k: v for k, v in d.items() if k not in keys}


NEIGHBOR_VARIES = ("uptime", "downtime", "counters", "remote_port")


# ------------------------------------------------------------------ reads


async def _check_listings(c: Cluster):
    for fam in ("ipv4-unicast", "ipv6-unicast"):
        (fs, front), (rs, ref) = await c.both("GET", "/v1/rib/" + fam)
        assert fs == rs == 200
        assert len(ref) == len([p for p in ORIGINATED + PEER_ROUTES if (":" in p) == (fam[3] == "6")])
        assert _routes(front) == _routes(ref)
        # Each worker alone holds its shard only: the merge really interleaves.
        for w in c.workers:
            _, mine = await http(w.sock, "GET", "/v1/rib/" + fam)
            assert 0 < len(mine) < len(ref)
        # Streamed (iter_rib): NDJSON, the same rows in the same order.
        async with Client(socket_path=c.front_sock) as cl:
            lines = [json.loads(x) async for x in cl.lines("/v1/rib/" + fam, {"stream": "1"})]
        assert _routes(lines) == _routes(ref)
        # The same rows straight from FanoutControl's own stream, in small chunks.
        chunks = [ch async for ch in c.fc.iter_rib(fam, chunk=7)]
        assert max(len(ch) for ch in chunks) == 7
        assert _routes(msgspec.to_builtins([r for ch in chunks for r in ch])) == _routes(ref)


async def _check_prefixes(c: Cluster):
    for p in ["10.1.0.0/16", "10.1.1.0/24", "172.16.3.0/24", "10.0.0.0/8", "2001:db8:3::/48", "10.200.0.0/16"]:
        fam = "ipv6-unicast" if ":" in p else "ipv4-unicast"
        (fs, front), (rs, ref) = await c.both("GET", "/v1/rib/" + fam, params={"prefix": p})
        assert fs == rs == 200 and _routes(front) == _routes(ref), p
        assert len(ref) == (0 if p.startswith("10.200") else 1)
    # Longest match: the most specific prefix wins whichever worker holds it.
    crossing = 0
    addresses = ["10.%d.%d.%d" % (a, b, h) for a in range(9) for b in (0, 1, 2, 5) for h in (1, 200)]
    for addr in addresses + ["192.0.2.1", "10.200.1.1"]:
        for params in ({"prefix": addr, "longest": "1"}, {"prefix": addr, "match": "longest", "community": "65001:1"},
                       {"prefix": addr, "match": "longest", "source": "local", "limit": "1"}):
            (fs, front), (rs, ref) = await c.both("GET", "/v1/rib/ipv4-unicast", params=params)
            assert fs == rs == 200 and _routes(front) == _routes(ref), params
        if ref:
            hit = ref[0]["prefix"]
            covering = [p for p in ORIGINATED if ":" not in p and p != hit
                        and ipaddress.ip_network(hit).subnet_of(ipaddress.ip_network(p))]
            crossing += any(_shard(p) != _shard(hit) for p in covering)
    assert crossing > 5  # the winner's shard is not its covering prefixes' shard


QUERIES = [
    {}, {"community": "65001:1"}, {"origin_as": "65101"}, {"as_path": "6510[12]$"}, {"source": "local"},
    {"prefix": "10.0.0.0/8", "match": "longer"}, {"prefix": "10.2.0.0/16", "match": "longer"},
    {"prefix": "10.2.1.128/25", "match": "shorter"}, {"prefix": "10.0.0.0/8", "match": "longer", "community": "65001:0"},
]
PAGES = [(0, None), (0, 1), (0, 5), (3, 4), (7, 10), (10, 3), (1, 30), (35, 5), (5, None), (1000, 2)]


async def _check_queries(c: Cluster):
    async with Client(socket_path=c.front_sock) as cl_front, Client(socket_path=c.ref.sock) as cl_ref:
        for q in QUERIES + [{"source": c.peer_address}]:
            for offset, limit in PAGES:
                params = dict(q, offset=str(offset))
                if limit is not None:
                    params["limit"] = str(limit)
                (fs, front), (rs, ref) = await c.both("GET", "/v1/rib/ipv4-unicast", params=params)
                assert fs == rs == 200, (params, front)
                assert _routes(front) == _routes(ref), params
            # NDJSON of the whole query (iter_query)
            got = [json.loads(x) async for x in cl_front.lines("/v1/rib/ipv4-unicast", dict(q, stream="1"))]
            want = [json.loads(x) async for x in cl_ref.lines("/v1/rib/ipv4-unicast", dict(q, stream="1"))]
            assert _routes(got) == _routes(want), q
    # A page that crosses shard boundaries really takes rows of several workers.
    _, page = await http(c.front_sock, "GET", "/v1/rib/ipv4-unicast", params={"offset": "3", "limit": "10"})
    assert len({_shard(r["prefix"]) for r in page}) == N
    # A bad query is refused by the front itself, as by one daemon.
    (fs, front), (rs, ref) = await c.both("GET", "/v1/rib/ipv4-unicast", params={"as_path": "(1+)+"})
    assert fs == rs == 400 and front == ref


async def _check_state(c: Cluster):
    (fs, front), (rs, ref) = await c.both("GET", "/v1/rib/summary")
    assert fs == rs == 200
    assert [_without(s, "attribute_sets") for s in front] == [_without(s, "attribute_sets") for s in ref]
    (fs, front), (rs, ref) = await c.both("GET", "/v1/global")
    assert fs == rs == 200
    assert _without(front, "started", "uptime", "listen", "ribs") == _without(ref, "started", "uptime", "listen", "ribs")
    assert [_without(s, "attribute_sets") for s in front["ribs"]] == [_without(s, "attribute_sets") for s in ref["ribs"]]
    (fs, front), (rs, ref) = await c.both("GET", "/v1/neighbors")
    assert fs == rs == 200
    assert [_without(n, *NEIGHBOR_VARIES) for n in front] == [_without(n, *NEIGHBOR_VARIES) for n in ref]
    peer = {n["address"]: n for n in ref}[c.peer_address]
    assert peer["prefixes_received"] == len(PEER_ROUTES) and peer["prefixes_advertised"] == len(ORIGINATED)
    (fs, front), (rs, ref) = await c.both("GET", "/v1/neighbors/" + c.peer_address)
    assert fs == rs == 200 and _without(front, *NEIGHBOR_VARIES) == _without(ref, *NEIGHBOR_VARIES)
    for fam in ("ipv4-unicast", "ipv6-unicast"):
        for d in ("in", "out"):
            (fs, front), (rs, ref) = await c.both("GET", "/v1/neighbors/%s/adj-%s/%s" % (c.peer_address, d, fam))
            assert fs == rs == 200 and ref and _sorted(front) == _sorted(ref), (d, fam)
    for path in ("/v1/policy", "/v1/rpki", "/v1/rpki/validate?prefix=10.0.0.0/8&asn=65100"):
        (fs, front), (rs, ref) = await c.both("GET", path)
        assert (fs, front) == (rs, ref), path
    # Unknown neighbours: the same 404 and text as one daemon.
    for method, path in (("GET", "/v1/neighbors/192.0.2.99"), ("POST", "/v1/neighbors/192.0.2.99/disable"),
                         ("GET", "/v1/neighbors/192.0.2.99/adj-in/ipv4-unicast"), ("GET", "/v1/neighbors/nonsense"),
                         ("GET", "/v1/neighbors/a%2Fadj-in")):
        (fs, front), (rs, ref) = await c.both(method, path)
        assert fs == rs == 404 and front == ref, path


def test_reads_match_one_daemon(tmp_path, run):
    async def main():
        async with Cluster(tmp_path) as c:
            await _check_listings(c)
            await _check_prefixes(c)
            await _check_queries(c)
            await _check_state(c)

    run(main(), timeout=60)


# ---------------------------------------------------------------- actions


def test_actions_reach_every_worker(tmp_path, run):
    async def main():
        async with Cluster(tmp_path) as c:
            everyone = c.workers + [c.ref]

            async def admin_down():
                return [(await http(w.sock, "GET", "/v1/neighbors/" + c.idle))[1]["admin_down"] for w in c.workers]

            (fs, front), (rs, ref) = await c.both("POST", "/v1/neighbors/%s/disable" % c.idle, {"message": "bye"})
            assert fs == rs == 200 and front == ref
            assert await admin_down() == [True] * N
            status, _ = await http(c.front_sock, "POST", "/v1/neighbors/%s/enable" % c.idle)
            assert status == 200 and await admin_down() == [False] * N

            # announce / withdraw: every worker originates; the count is per request.
            req = {"prefixes": ["198.51.100.0/24", "198.51.101.0/24"], "next_hop": "192.0.2.7"}
            (fs, front), (rs, ref) = await c.both("POST", "/v1/rib/announce", req)
            assert fs == rs == 200 and front == ref == {"count": 2}
            for w in c.workers:
                _, rows = await http(w.sock, "GET", "/v1/rib/ipv4-unicast", params={"prefix": "198.51.100.0/24"})
                assert [r["source"] for r in rows] == ["local"]
            wd = {"prefixes": ["198.51.100.0/24", "198.51.102.0/24"]}
            (fs, front), (rs, ref) = await c.both("POST", "/v1/rib/withdraw", wd)
            assert fs == rs == 200 and front == ref == {"count": 1}
            for w in everyone:
                _, rows = await http(w.sock, "GET", "/v1/rib/ipv4-unicast", params={"prefix": "198.51.100.0/24"})
                assert rows == []
            # Refusals read exactly as one daemon's: the daemon's own check,
            # the API's validation, a reload refused with its error list.
            for path, body in (("/v1/rib/announce", {"prefixes": ["2001:db8:9::/48"], "next_hop": "192.0.2.1"}),
                               ("/v1/rib/announce", {"prefixes": ["10.0.0.1/24"]}),
                               ("/v1/rib/announce", {"prefixes": ["10.9.0.0/24"], "neighbors": ["192.0.2.77"]}),
                               ("/v1/reload", None),
                               ("/v1/neighbors/%s/softreset" % c.idle, None),
                               ("/v1/log-level", {"level": "loud"})):
                (fs, front), (rs, ref) = await c.both("POST", path, body)
                assert fs == rs and fs >= 400, (path, front, ref)
                if fs < 500:
                    assert front == ref, path
                else:  # a worker's internal error keeps its text, the worker named in front
                    assert front["error"].startswith("worker 0 (%s): " % c.workers[0].sock)
                    assert front["error"].endswith(ref["error"])
            # bulk injection reaches every worker
            groups = [{"afi": 1, "attrs": "QAEBAEACBgIBAAD+TA==", "nlri": "GMYzZA==", "next_hop": "wAACAQ=="}]
            (fs, front), (rs, ref) = await c.both("POST", "/v1/rib/inject", groups)
            assert fs == rs == 200 and front == ref == {"count": 1, "groups": 1}
            for w in c.workers:
                _, rows = await http(w.sock, "GET", "/v1/rib/ipv4-unicast", params={"prefix": "198.51.100.0/24"})
                assert len(rows) == 1 and rows[0]["as_path"] == [65100]
            # log level: every worker answers (one process here: one logging)
            (fs, front), (rs, ref) = await c.both("POST", "/v1/log-level", {"level": "warning"})
            assert fs == rs == 200 and front == ref
            assert logging.getLogger().level == logging.WARNING

    run(main(), timeout=60)


def test_watch_merges_worker_streams(tmp_path, run):
    async def main():
        async with Cluster(tmp_path) as c:
            async with Client(socket_path=c.front_sock) as cl:
                events = []
                got_all = asyncio.Event()

                async def read():
                    async for line in cl.lines("/v1/watch"):
                        events.append(json.loads(line))
                        if sum(e["event"] == "bestchange" for e in events) >= 2:
                            got_all.set()

                reader = asyncio.ensure_future(read())
                await asyncio.sleep(0.2)  # the front's answer came: subscribed at every worker
                # A session event happens in every worker: seen once.
                status, _ = await http(c.front_sock, "POST", "/v1/neighbors/%s/disable" % c.idle)
                assert status == 200
                # Route events from any worker: one announced at worker 2 and at worker 1 directly.
                for i, p in ((2, "198.18.2.0/24"), (1, "198.18.1.0/24")):
                    await http(c.workers[i].sock, "POST", "/v1/rib/announce", {"prefixes": [p], "next_hop": "192.0.2.1"})
                await asyncio.wait_for(got_all.wait(), 5)
                await asyncio.sleep(0.3)
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
            states = [e for e in events if e["event"] == "statechange" and e["neighbor"] == c.idle]
            assert len(states) == 1 and states[0]["new"] == "idle"
            assert sorted(e["prefix"] for e in events if e["event"] == "bestchange") == ["198.18.1.0/24",
                                                                                          "198.18.2.0/24"]

    run(main(), timeout=60)


# ----------------------------------------------------------------- failures


async def _garbage_server(path):
    async def handler(request):
        return web.Response(body=b"this is { not json", content_type="application/json")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.UnixSite(runner, path).start()
    return runner


def test_dead_silent_or_garbage_worker_is_a_named_502(tmp_path, run):
    async def main():
        missing = str(tmp_path / "gone.sock")
        silent = str(tmp_path / "silent.sock")
        garbage = str(tmp_path / "garbage.sock")
        hold = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)  # listens, never accepts nor answers
        hold.bind(silent)
        hold.listen(16)
        runner = await _garbage_server(garbage)
        node = Node(tmp_path, "w0", next(_NETS), ORIGINATED[:3], [])
        try:
            await node.start()
            for bad, words in ((missing, "no socket at"), (silent, "no answer"), (garbage, "unexpected answer")):
                fc = FanoutControl([node.sock, bad], timeout=0.3)
                front_sock = str(tmp_path / "front.sock")
                server = await api.ApiServer(fc, socket_path=front_sock).start()
                try:
                    async with Client(socket_path=front_sock) as cl:
                        for path, params in (("/v1/neighbors", None), ("/v1/rib/ipv4-unicast", None),
                                             ("/v1/rib/ipv4-unicast", {"stream": "1"}),
                                             ("/v1/rib/ipv4-unicast", {"community": "65001:1"}),
                                             ("/v1/global", None)):
                            t0 = time.monotonic()
                            with pytest.raises(ApiError) as err:
                                await cl.request("GET", path, params=params, raw=True)
                            assert time.monotonic() - t0 < 3
                            assert err.value.status == 502, (bad, path)
                            assert str(err.value).startswith("worker 1 (%s): " % bad) and words in str(err.value)
                        with pytest.raises(ApiError) as err:
                            await cl.request("POST", "/v1/log-level", body={"level": "info"})
                        assert err.value.status == 502 and "worker 1" in str(err.value)
                        if bad != garbage:
                            with pytest.raises(ApiError) as err:
                                async for _ in cl.lines("/v1/watch"):
                                    pass
                            assert err.value.status == 502 and "worker 1" in str(err.value)
                        else:  # garbage after a 200: the stream ends (headers are out), the front lives on
                            assert [x async for x in cl.lines("/v1/watch")] == []
                    with pytest.raises(WorkerError):
                        await fc.neighbors()
                finally:
                    await server.stop()
                    await fc.close()
            # The front still serves: its healthy worker alone.
            fc = FanoutControl([node.sock], timeout=0.5)
            assert len(await fc.rib("ipv4-unicast")) == 3
            await fc.close()
        finally:
            hold.close()
            await runner.cleanup()
            await node.stop()
            logs.reset()

    run(main(), timeout=60)


def test_prefix_key_is_the_daemon_order():
    texts = ["10.0.0.0/8", "10.0.0.0/16", "9.255.0.0/16", "10.0.0.0/24", "10.0.1.0/24", "2001:db8::/32", "::/0"]
    v4 = sorted((t for t in texts if ":" not in t), key=prefix_key)
    assert v4 == sorted((t for t in texts if ":" not in t),
                        key=lambda t: (int(ipaddress.ip_network(t).network_address), ipaddress.ip_network(t).prefixlen))
    with pytest.raises((ValueError, OSError)):
        prefix_key("10.0.0/8x")
