"""The HTTP/JSON API served by a real Daemon.

A module-scoped harness runs ``daemon.run_daemon`` (the ``fastbgp daemon``
entry point, so the API and metrics listeners come from the config file as
in production) in a background thread with its own event loop (once on
asyncio, once on uvloop), next to a fastbgp Speaker playing the peer, all on
loopback:

    Daemon AS65001 (127.0.0.1) --eBGP--> Speaker AS65002 (listens 127.0.0.2)
    Daemon neighbour 127.0.0.3 (passive, nobody there: stays Active)

Tests talk to it as clients do: raw HTTP on the unix socket / TCP here, the
CLI in test_cli.py, a scrape in test_metrics.py (they import the harness).
"""

import asyncio
import ipaddress
import os
import pathlib
import socket
import stat
import tempfile
import time

import msgspec
import pytest

aiohttp = pytest.importorskip("aiohttp")

from fastbgp.control import api, contract as ctl, logs  # noqa: E402
from daemon_harness import DaemonHarness  # noqa: E402
from fastbgp.testing.net import free_port  # noqa: E402

TOKEN = "test-token-0123456789abcdef"
PEER_PREFIXES = ["203.0.113.0/24", "203.0.113.128/25"]
PEER_V6 = ["2001:db8:100::/48"]


CONFIG = """\
[global]
asn = 65001
router-id = "10.0.0.1"
listen = []

[global.api]
socket = "{socket}"
tcp = "127.0.0.1:{api_port}"
token = "{token}"

[global.metrics]
listen = "127.0.0.1:{metrics_port}"

[global.log]
level = "info"

[[neighbors]]
address = "127.0.0.2"
peer-as = 65002
port = {peer_port}
local-address = "127.0.0.1"
description = "{description}"
families = ["ipv4-unicast", "ipv6-unicast"]
default-import = "accept"
default-export = "accept"
timers = {{ connect-retry = 1, idle-hold = 1 }}

[[neighbors]]
address = "127.0.0.3"
peer-as = 65003
passive = true
"""


class Harness(DaemonHarness):
    """The daemon and its peer in a background event loop."""

    def __init__(self, tmp: pathlib.Path, loop_factory=None):
        super().__init__(tmp, loop_factory)
        self.api_port = free_port()

    def write_config(self, description="the peer", extra=""):
        self.config_path.write_text(CONFIG.format(
            socket=self.socket, api_port=self.api_port, metrics_port=self.metrics_port, token=TOKEN,
            peer_port=self.peer_port, description=description) + extra)

    def announce(self):
        self.speaker.announce(PEER_PREFIXES, next_hop="127.0.0.2", as_path=[65020], med=7)
        self.speaker.announce(PEER_V6, next_hop="2001:db8::2", as_path=[65020])

    def started(self):
        super().started()
        self.wait_for(lambda: len(self.call(self.daemon.rib, "ipv4-unicast")) >= len(PEER_PREFIXES), "peer routes")

    @property
    def tcp_url(self):
        return "http://127.0.0.1:%d" % self.api_port

    @property
    def metrics_url(self):
        return "http://127.0.0.1:%d/metrics" % self.metrics_port


@pytest.fixture(scope="module")
def harness(loop_factory):
    with tempfile.TemporaryDirectory(prefix="fastbgp-api-") as tmp:
        h = Harness(pathlib.Path(tmp), loop_factory)
        try:
            yield h.start()
        finally:
            h.stop()


# ------------------------------------------------------------------ raw HTTP


async def _request(method, path, body=None, *, unix=None, url=None, token=None, raw_body=None, timeout=10.0):
    connector = aiohttp.UnixConnector(path=unix) if unix else None
    headers = {"Authorization": "Bearer " + token} if token else {}
    data = raw_body if raw_body is not None else (msgspec.json.encode(body) if body is not None else None)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as s:
        async with s.request(method, (url or "http://localhost") + path, data=data,
                             timeout=aiohttp.ClientTimeout(total=timeout)) as r:
            return r.status, r.headers, await r.read()


def http(h, method, path, body=None, **kw):
    """(status, headers, decoded JSON or raw bytes) over the unix socket."""
    if "url" not in kw:
        kw.setdefault("unix", h.socket)
    status, headers, data = h.run_client(_request(method, path, body, **kw))
    if headers.get("Content-Type", "").startswith("application/json") and data:
        return status, headers, msgspec.json.decode(data)
    return status, headers, data


# --------------------------------------------------------------------- tests


def test_unix_socket_is_private(harness):
    st = os.stat(harness.socket)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o600
    # The directory did not exist: the API made it, for the owner only.
    assert stat.S_IMODE(os.stat(os.path.dirname(harness.socket)).st_mode) == 0o700


def test_neighbor_list_and_detail(harness):
    status, headers, body = http(harness, "GET", "/v1/neighbors")
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    neighbors = {n.address: n for n in msgspec.convert(body, list[ctl.NeighborSummary])}
    assert set(neighbors) == {"127.0.0.2", "127.0.0.3"}
    up = neighbors["127.0.0.2"]
    assert up.state == "established" and up.peer_as == 65002 and up.local_as == 65001
    assert up.prefixes_received == len(PEER_PREFIXES) + len(PEER_V6)
    assert up.counters.received_open == 1 and up.counters.sent_open == 1
    assert neighbors["127.0.0.3"].state in ("active", "idle", "connect")

    status, _, body = http(harness, "GET", "/v1/neighbors/127.0.0.2")
    d = msgspec.convert(body, ctl.NeighborDetail)
    assert status == 200 and d.remote_id == "10.0.0.2" and d.description == "the peer"
    assert set(d.families) == {"ipv4-unicast", "ipv6-unicast"}
    assert d.hold_time == 30  # negotiated down to the peer's


def test_unknown_neighbor_is_404(harness):
    for method, path in (("GET", "/v1/neighbors/192.0.2.99"), ("POST", "/v1/neighbors/192.0.2.99/disable"),
                         ("GET", "/v1/neighbors/192.0.2.99/adj-in/ipv4-unicast"), ("GET", "/v1/neighbors/nonsense")):
        status, _, body = http(harness, method, path)
        assert status == 404, path
        assert "unknown neighbor" in body["error"]


def test_errors_are_json(harness):
    status, _, body = http(harness, "GET", "/v1/nothing")
    assert status == 404 and body["error"].startswith("no such endpoint")
    status, headers, body = http(harness, "DELETE", "/v1/neighbors")
    assert status == 405 and "error" in body
    status, _, body = http(harness, "GET", "/v1/rib/ipv5")
    assert status == 400 and "unknown family" in body["error"]
    status, _, body = http(harness, "POST", "/v1/neighbors/127.0.0.2/softreset", {"direction": "sideways"})
    assert status == 400 and body["field"] == "direction"


def test_adj_rib_in_and_out(harness):
    status, _, body = http(harness, "GET", "/v1/neighbors/127.0.0.2/adj-in/ipv4")
    routes = msgspec.convert(body, list[ctl.Route])
    assert status == 200 and sorted(r.prefix for r in routes) == sorted(PEER_PREFIXES)
    assert all(r.as_path == [65002, 65020] and r.med == 7 for r in routes)
    status, _, body = http(harness, "GET", "/v1/neighbors/127.0.0.2/adj-in/ipv6-unicast")
    assert [r["prefix"] for r in body] == PEER_V6
    status, _, body = http(harness, "GET", "/v1/neighbors/127.0.0.2/adj-out/ipv4-unicast")
    assert status == 200 and isinstance(body, list)


def test_announce_query_withdraw(harness):
    req = {"prefixes": ["198.51.100.0/24"], "next_hop": "192.0.2.1",
           "as_path": [65100], "communities": ["65001:42"], "med": 5, "local_pref": 200}
    status, _, body = http(harness, "POST", "/v1/rib/announce", req)
    assert status == 200 and body == {"count": 1}
    status, _, body = http(harness, "POST", "/v1/rib/announce", {"prefixes": ["2001:db8:beef::/48"]})
    assert status == 200 and body == {"count": 1}
    # The daemon's own checks come back as 400 too.
    status, _, body = http(harness, "POST", "/v1/rib/announce", {"prefixes": ["2001:db8::/32"], "next_hop": "192.0.2.1"})
    assert status == 400 and "next_hop" in body["error"]

    status, _, body = http(harness, "GET", "/v1/rib/ipv4-unicast?prefix=198.51.100.0/24")
    (route,) = msgspec.convert(body, list[ctl.Route])
    assert route.source == "local" and route.best and route.med == 5 and route.communities == ["65001:42"]
    # Longest match with a bare address.
    status, _, body = http(harness, "GET", "/v1/rib/ipv4?prefix=198.51.100.77&longest=1")
    assert [r["prefix"] for r in body] == ["198.51.100.0/24"]
    status, _, body = http(harness, "GET", "/v1/rib/ipv6-unicast?prefix=2001:db8:beef::/48")
    assert [r["prefix"] for r in body] == ["2001:db8:beef::/48"]

    # It really went out to the peer, eBGP rules applied.
    harness.wait_for(lambda: "198.51.100.0/24" in harness.call(harness.peer.received), "the peer to receive it")
    got = harness.call(harness.peer.received)["198.51.100.0/24"]
    assert got.as_path == [65001, 65100] and got.med == 5 and got.communities == ["65001:42"]

    status, _, body = http(harness, "POST", "/v1/rib/withdraw", {"prefixes": ["198.51.100.0/24", "2001:db8:beef::/48"]})
    assert status == 200 and body == {"count": 2}
    status, _, body = http(harness, "GET", "/v1/rib/ipv4-unicast?prefix=198.51.100.0/24")
    assert body == []
    harness.wait_for(lambda: "198.51.100.0/24" not in harness.call(harness.peer.received), "the withdrawal")


@pytest.mark.parametrize(
    "body,field,words",
    [
        ({"prefixes": ["10.0.0.1/33"]}, "prefixes[0]", "not an IP prefix"),
        ({"prefixes": ["10.0.0.0/24", "10.0.0.1/24"]}, "prefixes[1]", "host bits"),
        ({"prefixes": []}, "prefixes", "at least one"),
        ({"next_hop": "10.0.0.1"}, "prefixes", "required"),
        ({"prefixes": ["10.0.0.0/24"], "med": "x"}, "med", "expected int"),
        ({"prefixes": ["10.0.0.0/24"], "med": -1}, "med", "0..4294967295"),
        ({"prefixes": ["10.0.0.0/24"], "next_hop": "nope"}, "next_hop", "not an IP address"),
        ({"prefixes": ["10.0.0.0/24"], "as_path": [65000, "x"]}, "as_path[1]", "AS number"),
        ({"prefixes": ["10.0.0.0/24"], "communities": ["1:2:3"]}, "communities[0]", "asn:value"),
        ({"prefixes": ["10.0.0.0/24"], "large_communities": ["1:2"]}, "large_communities[0]", "global:local1"),
        ({"prefixes": ["10.0.0.0/24"], "origin": "ibgp"}, "origin", "igp"),
        ({"prefixes": ["10.0.0.0/24"], "nexthop": "10.0.0.1"}, "nexthop", "unknown field"),
    ],
)
def test_announce_rejects_bad_input_naming_the_field(harness, body, field, words):
    status, _, answer = http(harness, "POST", "/v1/rib/announce", body)
    assert status == 400
    assert answer["field"] == field and answer["error"].startswith(field + ":")
    assert words in answer["error"]


def test_announce_rejects_non_json(harness):
    status, _, answer = http(harness, "POST", "/v1/rib/announce", raw_body=b"{prefixes:")
    assert status == 400 and "not valid JSON" in answer["error"]
    status, _, answer = http(harness, "POST", "/v1/rib/announce", raw_body=b"")
    assert status == 400 and "body is required" in answer["error"]


def test_rib_full_table_small_large_and_ndjson(harness, monkeypatch):
    status, headers, small = http(harness, "GET", "/v1/rib/ipv4-unicast")
    assert status == 200 and sorted(r["prefix"] for r in small) == sorted(PEER_PREFIXES)
    # NDJSON on request, one Route per line.
    status, headers, data = http(harness, "GET", "/v1/rib/ipv4-unicast?stream=1")
    assert headers["Content-Type"].startswith("application/x-ndjson")
    lines = [msgspec.json.decode(x, type=ctl.Route) for x in data.splitlines() if x.strip()]
    assert sorted(r.prefix for r in lines) == sorted(PEER_PREFIXES)
    # Above the threshold the same JSON array comes chunked from iter_rib.
    monkeypatch.setattr(api, "STREAM_THRESHOLD", 0)
    monkeypatch.setattr(api, "STREAM_CHUNK", 1)
    status, headers, large = http(harness, "GET", "/v1/rib/ipv4-unicast")
    assert status == 200 and headers.get("Transfer-Encoding") == "chunked"
    assert sorted(large, key=lambda r: r["prefix"]) == sorted(small, key=lambda r: r["prefix"])


def test_rib_summary(harness):
    status, _, body = http(harness, "GET", "/v1/rib/summary")
    summary = {s.family: s for s in msgspec.convert(body, list[ctl.RibSummary])}
    assert summary["ipv4-unicast"].prefixes >= len(PEER_PREFIXES)
    assert summary["ipv6-unicast"].prefixes >= len(PEER_V6)


async def _watch_until(h, trigger, want, timeout=10.0):
    """Open /v1/watch, run ``trigger`` once subscribed, collect events until
    ``want(events)``."""
    events = []
    async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=h.socket)) as s:
        async with s.get("http://localhost/v1/watch", timeout=aiohttp.ClientTimeout(total=timeout)) as r:
            assert r.status == 200 and r.headers["Content-Type"].startswith("application/x-ndjson")
            await trigger()
            async for line in r.content:
                if not line.strip():
                    continue
                events.append(msgspec.json.decode(line, type=ctl.AnyEvent))
                if want(events):
                    return events
    raise AssertionError("stream ended: %r" % events)


def _state_changes(events, neighbor):
    return [(e.old, e.new) for e in events if isinstance(e, ctl.StateChange) and e.neighbor == neighbor]


def test_watch_sees_disable_and_enable(harness):
    async def disable():
        status, _, body = await _request("POST", "/v1/neighbors/127.0.0.2/disable", {"message": "maintenance"},
                                         unix=harness.socket)
        assert status == 200, body

    events = harness.run_client(_watch_until(
        harness, disable, lambda ev: ("established", "idle") in _state_changes(ev, "127.0.0.2")))
    assert ("established", "idle") in _state_changes(events, "127.0.0.2")
    status, _, body = http(harness, "GET", "/v1/neighbors/127.0.0.2")
    assert body["admin_down"] is True and body["state"] == "idle"
    # Its routes went with it.
    harness.wait_for(lambda: http(harness, "GET", "/v1/rib/ipv4?prefix=203.0.113.0/24")[2] == [], "routes to go")

    async def enable():
        status, _, body = await _request("POST", "/v1/neighbors/127.0.0.2/enable", unix=harness.socket)
        assert status == 200, body

    events = harness.run_client(_watch_until(
        harness, enable, lambda ev: any(new == "established" for _, new in _state_changes(ev, "127.0.0.2"))))
    assert any(new == "established" for _, new in _state_changes(events, "127.0.0.2"))
    harness.wait_for(lambda: len(harness.call(harness.daemon.rib, "ipv4-unicast")) >= len(PEER_PREFIXES),
                     "the peer's routes back")


def test_watch_reports_best_path_changes(harness):
    async def announce():
        status, _, _ = await _request("POST", "/v1/rib/announce", {"prefixes": ["192.0.2.128/25"]}, unix=harness.socket)
        assert status == 200

    events = harness.run_client(_watch_until(
        harness, announce, lambda ev: any(isinstance(e, ctl.BestChange) and e.prefix == "192.0.2.128/25" for e in ev)))
    best = [e for e in events if isinstance(e, ctl.BestChange)][-1]
    assert best.family == "ipv4-unicast" and best.route is not None and best.route.source == "local"
    http(harness, "POST", "/v1/rib/withdraw", {"prefixes": ["192.0.2.128/25"]})


def test_watch_subscriber_is_dropped_when_client_leaves(harness):
    async def go():
        async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=harness.socket)) as s:
            async with s.get("http://localhost/v1/watch") as r:
                assert r.status == 200
                harness.wait_for(lambda: len(harness.daemon.events.watchers) >= 1, "subscription")

    before = harness.call(lambda: len(harness.daemon.events.watchers))
    harness.run_client(go())
    harness.wait_for(lambda: harness.call(lambda: len(harness.daemon.events.watchers)) == before, "unsubscribe", timeout=5)


def test_reset_and_softreset(harness):
    for direction in ("in", "out", "both"):
        status, _, body = http(harness, "POST", "/v1/neighbors/127.0.0.2/softreset", {"direction": direction})
        assert status == 200 and body == {"neighbor": "127.0.0.2", "action": "softreset"}
    assert harness.state("127.0.0.2") == "established"
    before = harness.call(lambda: harness.daemon.neighbor("127.0.0.2").established_count)
    status, _, _ = http(harness, "POST", "/v1/neighbors/127.0.0.2/reset", {"message": "testing"})
    assert status == 200
    harness.wait_for(lambda: harness.call(lambda: harness.daemon.neighbor("127.0.0.2").established_count) > before
                     and harness.state("127.0.0.2") == "established", "the session to come back")


def test_tcp_listener_needs_the_token(harness):
    url = harness.tcp_url
    status, headers, body = http(harness, "GET", "/v1/neighbors", url=url)
    assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")
    assert "unauthorized" in body["error"]
    status, _, _ = http(harness, "GET", "/v1/neighbors", url=url, token="wrong-token-0123456789abcdef")
    assert status == 401
    status, _, body = http(harness, "GET", "/v1/neighbors", url=url, token=TOKEN)
    assert status == 200 and len(body) == 2
    # The unix socket asks for nothing.
    assert http(harness, "GET", "/v1/neighbors")[0] == 200


def test_tcp_listener_refused_without_token():
    with pytest.raises(ValueError, match="token"):
        api.ApiServer(object(), tcp=("127.0.0.1", 0))


def test_log_level_changes_at_run_time(harness):
    status, _, body = http(harness, "POST", "/v1/log-level", {"level": "debug"})
    assert status == 200 and body == {"level": "debug"}
    assert logs.get_level() == "debug"
    status, _, body = http(harness, "POST", "/v1/log-level", {"level": "loud"})
    assert status == 400 and body["field"] == "level" and "unknown log level" in body["error"]
    assert http(harness, "POST", "/v1/log-level", {"level": "INFO"})[2] == {"level": "info"}
    assert logs.get_level() == "info"


def test_reload(harness):
    try:
        harness.write_config(description="renamed")
        status, _, body = http(harness, "POST", "/v1/reload")
        assert status == 200, body
        assert http(harness, "GET", "/v1/neighbors/127.0.0.2")[2]["description"] == "renamed"
        # A bad file: 400 naming the field, nothing changes.
        harness.write_config(description="again", extra='\n[[neighbors]]\naddress = "127.0.0.4"\npeer-as = "x"\n')
        status, _, body = http(harness, "POST", "/v1/reload")
        assert status == 400 and "peer-as" in body["error"]
        assert body["errors"][0]["path"].endswith("peer-as")
        assert http(harness, "GET", "/v1/neighbors/127.0.0.2")[2]["description"] == "renamed"
    finally:
        harness.write_config()
        http(harness, "POST", "/v1/reload")
    assert harness.state("127.0.0.2") == "established"


def test_announce_canonicalises():
    req = ctl.Announce(prefixes=["2001:DB8::/32", " 10.0.0.0/8"], communities=["no-export", "65000:1"])
    assert req.prefixes == ["2001:db8::/32", "10.0.0.0/8"]
    assert ipaddress.ip_network(req.prefixes[0]).version == 6


def test_announce_accepts_every_well_known_community():
    # One table: what the config and the speaker accept, the API accepts.
    from fastbgp.wire.communities import WELL_KNOWN

    assert ctl.Announce(prefixes=["10.0.0.0/8"], communities=list(WELL_KNOWN)).communities == list(WELL_KNOWN)


@pytest.mark.parametrize(
    "fields,field,words",
    [
        (dict(prefixes=["10.0.0.0/24"], next_hop="x"), "next_hop", "not an IP address"),
        (dict(prefixes=["10.0.0.0/24", "10.0.0.1/24"]), "prefixes[1]", "host bits"),
        (dict(prefixes=["10.0.0.0/24"], communities=["65000:1", "nope"]), "communities[1]", "asn:value"),
        (dict(prefixes=["10.0.0.0/24"], large_communities=["1:2:4294967296"]), "large_communities[0]", "4294967296"),
    ],
)
def test_announce_validation_names_the_field(fields, field, words):
    """The one validation of Announce: building it (the CLI) raises
    FieldError; decoding it (the API) gives the same field through
    config.errors.explain."""
    from fastbgp.config.errors import FieldError, explain

    with pytest.raises(FieldError) as ei:
        ctl.Announce(**fields)
    assert str(ei.value).startswith(field + ":") and words in str(ei.value)
    with pytest.raises(msgspec.ValidationError) as ei:
        msgspec.json.decode(msgspec.json.encode(fields), type=ctl.Announce)
    path, problem = explain(ei.value, ctl.Announce, fields)
    assert path == field and words in problem


def test_announce_types_name_the_field():
    from fastbgp.config.errors import explain

    for fields, field, words in (
        ({"prefixes": []}, "prefixes", "at least one prefix"),
        ({"prefixes": ["10.0.0.0/24"], "as_path": [0]}, "as_path[0]", "AS number 1..4294967295, got 0"),
        ({"prefixes": ["10.0.0.0/24"], "local_pref": 1 << 32}, "local_pref", "int 0..4294967295"),
        ({"prefixes": ["10.0.0.0/24"], "origin": "IGP"}, "origin", 'one of "egp", "igp", "incomplete"'),
    ):
        with pytest.raises(msgspec.ValidationError) as ei:
            msgspec.convert(fields, ctl.Announce)
        path, problem = explain(ei.value, ctl.Announce, fields)
        assert path == field and words in problem, (path, problem)


def test_socket_file_handling(harness, tmp_path):
    # A live socket (the harness daemon's own) is never taken over.
    with pytest.raises(OSError, match="already serves"):
        harness.run(api.ApiServer(harness.daemon, socket_path=harness.socket).start())
    assert http(harness, "GET", "/v1/neighbors")[0] == 200
    # Something that is not a socket is not removed.
    plain = tmp_path / "file.sock"
    plain.write_text("keep me")
    with pytest.raises(OSError, match="not a socket"):
        harness.run(api.ApiServer(harness.daemon, socket_path=str(plain)).start())
    assert plain.read_text() == "keep me"
    # A stale socket (a crashed daemon's) is replaced, and removed on stop.
    stale = tmp_path / "stale.sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(stale))
    s.close()
    server = harness.run(api.ApiServer(harness.daemon, socket_path=str(stale)).start())
    try:
        assert http(harness, "GET", "/v1/rib/summary", unix=str(stale))[0] == 200
        assert stat.S_IMODE(os.stat(stale).st_mode) == 0o600
    finally:
        harness.run(server.stop())
    assert not stale.exists()


def test_stopping_the_api_ends_watch_streams(harness, tmp_path):
    path = str(tmp_path / "w.sock")
    server = harness.run(api.ApiServer(harness.daemon, socket_path=path).start())

    stopped = []

    async def watch():
        async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=path)) as s:
            async with s.get("http://localhost/v1/watch", timeout=aiohttp.ClientTimeout(total=10)) as r:
                asyncio.get_running_loop().call_later(0.2, lambda: stopped.append(asyncio.run_coroutine_threadsafe(
                    server.stop(), harness.loop)))
                t0 = time.monotonic()
                async for _ in r.content:
                    pass
                return time.monotonic() - t0

    # The open stream ends at once, not at aiohttp's shutdown timeout.
    assert harness.run_client(watch()) < 1.5
    stopped[0].result(5)
    assert not os.path.exists(path)


# ------------------------------------------------- issue 14: global, policy, RIB queries


def test_global_endpoint(harness):
    status, _, g = http(harness, "GET", "/v1/global")
    assert status == 200
    g = msgspec.convert(g, ctl.GlobalInfo)
    assert (g.asn, g.router_id, g.listen) == (65001, "10.0.0.1", [])
    assert g.started is not None and g.uptime > 0 and g.neighbors == 2 and g.established == 1
    assert {r.family for r in g.ribs} == {"ipv4-unicast", "ipv6-unicast"}
    assert g.refused_unknown == 0 and g.refused_neighbors >= 0 and g.half_open_closed == 0


def test_policy_endpoint(harness):
    status, _, p = http(harness, "GET", "/v1/policy")
    assert status == 200
    p = msgspec.convert(p, ctl.PolicyInfo)
    assert p.policies == [] and p.defined_sets == {}
    assert {n.address: (n.default_import, n.default_export) for n in p.neighbors} == {
        "127.0.0.2": ("accept", "accept"), "127.0.0.3": ("reject", "reject")}  # RFC 8212 for eBGP


QUERY_ROUTES = [("100.64.0.0/10", [65010]), ("100.64.8.0/21", [65010, 65011]), ("100.64.9.0/24", [65012]),
                ("100.127.0.0/16", [65011])]


def test_rib_query_is_filtered_by_the_daemon(harness, monkeypatch):
    for p, path in QUERY_ROUTES:
        body = {"prefixes": [p], "as_path": path, "communities": ["65001:%d" % path[-1]]}
        assert http(harness, "POST", "/v1/rib/announce", body)[0] == 200
    try:
        def get(query):
            status, _, body = http(harness, "GET", "/v1/rib/ipv4-unicast?" + query)
            assert status == 200, body
            return [r["prefix"] for r in body]

        assert get("prefix=100.64.0.0/10&match=longer") == ["100.64.0.0/10", "100.64.8.0/21", "100.64.9.0/24",
                                                            "100.127.0.0/16"]
        assert get("prefix=100.64.9.0/24&match=shorter") == ["100.64.0.0/10", "100.64.8.0/21", "100.64.9.0/24"]
        assert get("prefix=100.64.9.1&match=shorter") == ["100.64.0.0/10", "100.64.8.0/21", "100.64.9.0/24"]
        assert get("origin_as=65011") == ["100.64.8.0/21", "100.127.0.0/16"]
        assert get("origin-as=65011&community=65001:65011&prefix=100.64.0.0/10&match=longer") == [
            "100.64.8.0/21", "100.127.0.0/16"]
        assert get("as_path=%5E65010%20") == ["100.64.8.0/21"]  # "^65010 "
        assert get("prefix=100.64.0.0/10&match=longer&offset=1&limit=2") == ["100.64.8.0/21", "100.64.9.0/24"]
        assert get("prefix=100.64.0.0/10&match=longer&offset=9") == []
        # Streamed in chunks (here of one row): still one JSON array, or NDJSON.
        monkeypatch.setattr(api, "STREAM_CHUNK", 1)
        assert get("prefix=100.64.0.0/10&match=longer&limit=3") == ["100.64.0.0/10", "100.64.8.0/21", "100.64.9.0/24"]
        status, headers, body = http(harness, "GET", "/v1/rib/ipv4-unicast?origin_as=65011&stream=1")
        assert status == 200 and headers["Content-Type"].startswith("application/x-ndjson")
        assert [msgspec.json.decode(ln)["prefix"] for ln in body.splitlines()] == ["100.64.8.0/21", "100.127.0.0/16"]
    finally:
        http(harness, "POST", "/v1/rib/withdraw", {"prefixes": [p for p, _ in QUERY_ROUTES]})


@pytest.mark.parametrize("query,field", [
    ("community=65536:1", "community"),
    ("large_community=1:2", "large_community"),
    ("as_path=(", "as_path"),
    ("as_path=" + "x" * 300, "as_path"),
    ("as_path=(1%2B)%2B2", "as_path"),  # (1+)+2: exponential backtracking
    ("limit=0", "limit"),
    ("limit=100001", "limit"),
    ("offset=-1", "offset"),
    ("origin_as=0", "origin_as"),
    ("match=longer", "match"),
    ("match=widest&prefix=10.0.0.0/8", "match"),
    ("colour=red", "colour"),
    ("source=somewhere", "source"),
    ("prefix=2001:db8::/32&match=longer", "prefix"),
])
def test_rib_query_rejects_bad_parameters(harness, query, field):
    status, _, body = http(harness, "GET", "/v1/rib/ipv4-unicast?" + query)
    assert status == 400 and body.get("field") == field, body


def test_route_age_is_optional():
    r = msgspec.json.decode(b'{"prefix": "192.0.2.0/24"}', type=ctl.Route)
    assert r.age is None


def test_watch_reports_withdrawn_prefixes(harness):
    extra = "198.18.9.0/24"

    async def flap():
        # Announced by the peer, then withdrawn: the UPDATE event of the
        # withdrawal names the prefix.
        harness.speaker.announce([extra], next_hop="127.0.0.2", as_path=[65020])
        await asyncio.sleep(0.3)
        harness.speaker.withdraw([extra])

    def want(events):
        return any(isinstance(e, ctl.UpdateReceived) and e.withdrawn_prefixes == [extra] for e in events)

    async def trigger():
        harness.run(flap())

    events = harness.run_client(_watch_until(harness, trigger, want), timeout=30)
    ev = next(e for e in events if isinstance(e, ctl.UpdateReceived) and e.withdrawn_prefixes)
    assert ev.neighbor == "127.0.0.2" and ev.withdrawn == 1 and ev.prefixes == []


@pytest.mark.parametrize("pattern,refused", [
    ("^65001 ", False), ("65020$", False), ("^(65001 )+65002", False), ("^6500[0-9]+$", False),
    ("[(+]+", False), (r"\(x+\)+", False), ("(6500[12] )*", False),
    ("(1+)+2", True), ("(a*)*", True), ("((a+)b)*", True), ("(1|12)*", True), ("(ab{2,})*", True),
    (".*.*.*.*1", True),
])
def test_as_path_regex_cost_is_bounded(pattern, refused):
    """Patterns whose matching can blow up (Python's re cannot be stopped,
    and a RIB query runs on the daemon's loop) are refused before use."""
    assert (ctl.regex_cost_problem(pattern) is not None) == refused
    if refused:
        with pytest.raises(Exception, match="as_path"):
            ctl.RibQuery(as_path=pattern)
