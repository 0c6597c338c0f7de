"""Control-plane faults against the real ``fastbgp daemon`` process in the
namespace lab (issue 10): API abuse and reloads with every kind of bad file.

A WITNESS peer (real BIRD) holds routes both ways with the daemon the whole
time (hold time 9 s, so a daemon loop stalled for a few seconds shows); after
every case the witness session must not have dropped on either side, both
route sets must be complete, keepalives must have kept coming, and the API
must still answer on the unix socket and on TCP.

Layout: ``fb`` runs the daemon (API on a unix socket in its workdir and on
TCP with a bearer token, metrics on TCP); ``bird`` is the witness; ``cli``
runs the hostile clients (a Python script fed its cases on stdin, answering
JSON), since the API's TCP listener lives in the lab's network.

The API abuse and bad-reload cases also run over IPv6 (issue 12; ids
``[ipv6]``, ``[api-ipv6]``, ``[sighup-ipv6]``): a second lab where the
witness session runs over IPv6 (IPv4 routes with RFC 8950 next hops both
ways), the daemon listens for BGP, the API and metrics on its IPv6 address
only, and the hostile client connects there.  The thousand-request and
slowloris case stays on IPv4: it exercises the HTTP listener's bounds, not
a BGP session, and the IPv6 lab's API is checked after every IPv6 case.

Also here, outside the lab: a metrics server cancelled after binding
must leave nothing listening (it used to keep serving on the socket).
"""

import asyncio
import json
import os
import re
import signal
import socket
import sys
import textwrap
import threading
import time

import pytest

from fastbgp.testing import lab as L
from fastbgp.testing.daemonlab import LabDaemon, ipv4_unicast_toml, require, transport_fixtures
from fastbgp.testing.net import free_port

LAB = [pytest.mark.interop, pytest.mark.slow]
TOKEN = "lab-token-2f6c1a0e9b"
API_PORT = 8080
METRICS_PORT = 9179
HOLD = 9  # BIRD and fastbgp agree on 9 s: keepalives every 3 s
N_ROUTES = 200  # each way: BIRD 198.18.x.0/24, fastbgp 198.19.x.0/24 (RFC 2544 range)
MAX_BODY = 64 * 1024 * 1024  # fastbgp.control.api.MAX_BODY, the documented cap

# The hostile client, run in the ``cli`` namespace: {"host", "port", "cases"}
# on stdin, one JSON result per case on stdout.  Raw HTTP/1.1 over asyncio
# streams so that bodies can be oversized, half-sent or not JSON at all.
CLIENT = textwrap.dedent(r'''
    import asyncio, json, sys, time

    spec = json.load(sys.stdin)
    HOST, PORT = spec["host"], spec["port"]

    def body_of(case):
        if "fill" in case:
            ch, n = case["fill"]
            return ch.encode("latin-1") * n
        if "json" in case:
            return json.dumps(case["json"]).encode()
        return case.get("body", "").encode("latin-1")

    async def request(method, path, token=None, body=b"", timeout=30.0):
        t0 = time.monotonic()
        r, w = await asyncio.wait_for(asyncio.open_connection(HOST, PORT), timeout)
        head = ["%s %s HTTP/1.1" % (method, path), "Host: api", "Connection: close",
                "Content-Type: application/json", "Content-Length: %d" % len(body)]
        if token is not None:
            head.append("Authorization: " + token)
        w.write(("\r\n".join(head) + "\r\n\r\n").encode())

        async def send():
            for i in range(0, len(body), 1 << 20):
                w.write(body[i:i + (1 << 20)])
                await w.drain()

        sender = asyncio.ensure_future(send())
        try:
            data = await asyncio.wait_for(r.read(), timeout)
        finally:
            sender.cancel()
            w.close()
        status_line, _, rest = data.partition(b"\r\n")
        _, _, payload = rest.partition(b"\r\n\r\n")
        parts = status_line.split()
        return {"status": int(parts[1]) if len(parts) > 1 else 0, "length": len(payload),
                "body": payload[:4000].decode("utf-8", "replace"), "seconds": time.monotonic() - t0}

    async def one(case):
        try:
            return await request(case.get("method", "POST"), case["path"], case.get("token"), body_of(case))
        except Exception as exc:
            return {"status": -1, "error": "%s: %s" % (type(exc).__name__, exc)}

    async def concurrent(case):
        reqs = [one({"method": "GET", "path": "/v1/neighbors",
                     "token": case["token"] if i % 3 else None}) for i in range(case["n"])]
        t0 = time.monotonic()
        got = await asyncio.gather(*reqs)
        statuses = {}
        for g in got:
            statuses[str(g["status"])] = statuses.get(str(g["status"]), 0) + 1
        return {"statuses": statuses, "seconds": time.monotonic() - t0,
                "errors": sorted({g.get("error", "") for g in got if g["status"] <= 0})[:5]}

    async def slowloris(case):
        held = []
        for i in range(case["n"]):
            r, w = await asyncio.open_connection(HOST, PORT)
            if i % 3 == 1:
                # Headers complete, body promised and never finished.
                w.write(("POST /v1/rib/announce HTTP/1.1\r\nHost: api\r\nAuthorization: %s\r\n"
                         "Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{\"pre"
                         % case["token"]).encode())
            elif i % 3 == 2:
                # Headers never finished.
                w.write(b"GET /v1/neighbors HTTP/1.1\r\nHost: api\r\nX-Slow: ")
            # else: connected, nothing sent
            await w.drain()
            held.append((r, w))
        answers = []
        for _ in range(case["probes"]):
            answers.append(await one({"method": "GET", "path": "/v1/neighbors", "token": case["token"]}))
            await asyncio.sleep(case["hold"] / case["probes"])

        async def status(r):
            try:
                data = await asyncio.wait_for(r.readuntil(b"\r\n"), 3)
                # and then the server closes the connection
                await asyncio.wait_for(r.read(), 3)
            except Exception as exc:
                return type(exc).__name__
            parts = data.split(b"\r\n", 1)[0].split()
            return parts[1].decode() if len(parts) > 1 else "closed-silently"

        held_status = {}
        for s in await asyncio.gather(*[status(r) for r, _ in held]):
            held_status[s] = held_status.get(s, 0) + 1
        for _, w in held:
            w.close()
        return {"probes": [a["status"] for a in answers], "held": held_status,
                "slowest": max(a.get("seconds", 99) for a in answers)}

    async def main():
        out = []
        for case in spec["cases"]:
            kind = case.get("kind", "one")
            out.append(await {"one": one, "concurrent": concurrent, "slowloris": slowloris}[kind](case))
        print(json.dumps(out))

    asyncio.run(main())
''')


# ------------------------------------------------------------ the lab


class Fixture:
    """The lab, the daemon process, the witness and the helpers the tests use."""

    def __init__(self, lab, transport="ipv4"):
        self.lab = lab
        self.transport = transport
        self.fb = lab.add_host("fb")
        self.bh = lab.add_host("bird")
        self.cli = lab.add_host("cli")
        # The daemon's and the witness's addresses on the transport.
        self.me = self.fb.addr(transport)
        self.peer = self.bh.addr(transport)
        self.socket = os.path.join(self.fb.workdir, "run", "api.sock")
        # `python -m fastbgp daemon -c`: API (unix socket and TCP) and metrics on.
        self.fbd = LabDaemon(self.fb, "", cli=True)
        self.config_path = self.fbd.config_path
        self.log_path = self.fbd.logpath
        self.description = "witness"

    # -- configuration

    def hostport(self, addr, port):
        """``addr:port`` as the configuration and ``ss`` write it."""
        return ("[%s]:%d" if ":" in addr else "%s:%d") % (addr, port)

    def config_text(self, **over):
        g = dict(listen='["%s"]' % self.me, api_socket=self.socket, api_tcp=self.hostport(self.me, API_PORT),
                 hold=HOLD, description=self.description, extra_global="", extra="")
        g.update(over)
        lines = [
            "[global]", "asn = 65000", 'router-id = "%s"' % self.fb.ipv4, "listen = %s" % g["listen"], g["extra_global"],
            "[global.api]", 'socket = "%s"' % g["api_socket"], 'tcp = "%s"' % g["api_tcp"], 'token = "%s"' % TOKEN,
            "[global.metrics]", 'listen = "%s"' % self.hostport(self.me, METRICS_PORT),
            "[global.log]", 'level = "info"',
            "[[neighbors]]", 'address = "%s"' % self.peer, "peer-as = 65001",
            'description = "%s"' % g["description"], 'default-import = "accept"', 'default-export = "accept"',
            "timers = { hold-time = %s, connect-retry = 2, idle-hold = 1 }" % g["hold"],
            *ipv4_unicast_toml(self.peer),
        ]
        for i in range(N_ROUTES):
            lines += ["[[routes]]", 'prefix = "198.19.%d.0/24"' % i]
        return "\n".join(lines) + "\n" + g["extra"]

    def write_config(self, text):
        tmp = self.config_path + ".new"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, self.config_path)

    # -- processes

    def start(self):
        self.proc = self.fbd.start(self.config_text()).proc
        self.bird = L.Bird(self.bh, 65001, neighbors=[L.ipv4_neighbor(self.me, 65000, hold_time=HOLD)],
                           routes=[L.Route("198.18.%d.0/24" % i) for i in range(N_ROUTES)]).start()
        self.bird.wait_established(self.me)
        L.wait_for(lambda: self.witness_routes_at_bird() == N_ROUTES, 60, what="fastbgp's routes at BIRD")
        L.wait_for(lambda: self.neighbor()["prefixes_received"] == N_ROUTES, 60, what="BIRD's routes at fastbgp")
        self.baseline = self.witness()
        self.min_hold = float(HOLD)
        self._sampling = threading.Event()
        self._sampler = threading.Thread(target=self._sample_hold_timer, daemon=True)
        self._sampler.start()
        return self

    def _sample_hold_timer(self):
        # BIRD's hold timer restarts on every message from us: what is left
        # of it, sampled twice a second, shows the longest silence of ours
        # (RFC 4271 §4.4: a KEEPALIVE every hold time / 3).
        while not self._sampling.wait(0.5):
            try:
                m = re.search(r"Hold timer:\s+([\d.]+)/", self.bird.protocol_info(self.me))
            except Exception:
                continue
            if m:
                self.min_hold = min(self.min_hold, float(m.group(1)))

    def stop_sampling(self):
        if getattr(self, "_sampling", None) is not None:
            self._sampling.set()
            self._sampler.join(5)

    def log_tail(self, n=80):
        return self.fbd.log_tail(n)

    def log_size(self):
        return os.path.getsize(self.log_path)

    def log_since(self, offset):
        with open(self.log_path, "rb") as f:
            f.seek(offset)
            return f.read().decode("utf-8", "replace")

    # -- the API

    def api(self, method, path, body=None, timeout=15.0):
        """(status, decoded JSON) over the unix socket (file system, so
        reachable from the test's own namespace; no token there)."""
        import aiohttp

        async def go():
            conn = aiohttp.UnixConnector(path=self.socket)
            async with aiohttp.ClientSession(connector=conn) as s:
                data = json.dumps(body).encode() if body is not None else None
                async with s.request(method, "http://fastbgp" + path, data=data,
                                     timeout=aiohttp.ClientTimeout(total=timeout)) as r:
                    raw = await r.read()
                    return r.status, (json.loads(raw) if raw else None)

        return asyncio.run(go())

    def neighbor(self):
        status, body = self.api("GET", "/v1/neighbors/%s" % self.peer)
        assert status == 200, body
        return body

    def client(self, cases, timeout=120):
        """Run the hostile client in ``cli`` against the TCP API."""
        spec = json.dumps({"host": self.me, "port": API_PORT, "cases": cases})
        res = self.cli.run([sys.executable, "-c", CLIENT], input=spec, timeout=timeout)
        assert res.returncode == 0, res.stderr[-3000:]
        return json.loads(res.stdout)

    def tcp_api_answers(self):
        got = self.client([{"method": "GET", "path": "/v1/neighbors", "token": "Bearer " + TOKEN}])[0]
        return got["status"] == 200

    def listeners(self):
        """TCP sockets listening in the daemon's namespace."""
        out = self.fb.run(["ss", "-Hltn"]).stdout
        return sorted(line.split()[3] for line in out.splitlines() if line.strip())

    # -- the witness

    def witness_routes_at_bird(self):
        return sum(1 for p in self.bird.rib("ipv4") if p.startswith("198.19."))

    def witness(self):
        nb = self.neighbor()
        since = re.search(r"^\S+\s+BGP\s+\S+\s+up\s+(\S+ ?\S*)\s+Established", self.bird.protocol_info(self.me),
                          re.M)
        return {"state": nb["state"], "established_count": nb["established_count"],
                "received": nb["prefixes_received"], "bird_since": since.group(1) if since else None,
                "rx_keepalive": nb["counters"]["received_keepalive"], "tx_keepalive": nb["counters"]["sent_keepalive"],
                "rx_notification": nb["counters"]["received_notification"],
                "tx_notification": nb["counters"]["sent_notification"], "t": time.monotonic()}

    def check_witness(self):
        """The witness session never dropped, both route sets are complete,
        keepalives kept coming both ways, and the API answers on both
        listeners."""
        assert self.proc.poll() is None, "the daemon exited:\n" + self.log_tail()
        b, now = self.baseline, self.witness()
        assert now["state"] == "established", (now, self.log_tail())
        assert now["established_count"] == b["established_count"], ("the witness session was re-established", now)
        assert now["bird_since"] is not None and now["bird_since"] == b["bird_since"], (b, now)
        assert (now["rx_notification"], now["tx_notification"]) == (b["rx_notification"], b["tx_notification"])
        assert now["received"] == N_ROUTES
        assert self.witness_routes_at_bird() == N_ROUTES
        # Keepalives every HOLD/3 s both ways (RFC 4271 §10); allow for the
        # phase of the timers at both ends.
        expected = int((now["t"] - b["t"]) / (HOLD / 3)) - 2
        assert now["rx_keepalive"] - b["rx_keepalive"] >= expected, (b, now)
        assert now["tx_keepalive"] - b["tx_keepalive"] >= expected, (b, now)
        print("witness: BIRD's hold timer at least %.3f s of %d, %d keepalives received"
              % (self.min_hold, HOLD, now["rx_keepalive"] - b["rx_keepalive"]))
        # Our keepalives on time: never more than HOLD/3 + 3 s of silence.
        assert self.min_hold >= HOLD - HOLD / 3 - 3, "BIRD's hold timer fell to %.3f s" % self.min_hold
        assert self.api("GET", "/v1/neighbors")[0] == 200
        assert self.tcp_api_answers()


def _control_lab(transport):
    require(L.Bird)
    with L.Lab() as lab:
        fx = Fixture(lab, transport)
        try:
            yield fx.start()
        except Exception:
            print(fx.log_tail())
            raise
        finally:
            fx.stop_sampling()
            fx.fbd.stop()


# ``labt``: the lab of the case's transport (``lab`` or ``lab6``).
lab, lab6, labt = transport_fixtures(_control_lab, ("lab", "lab6", "labt"))


over_transports = pytest.mark.parametrize("transport", L.TRANSPORTS)


# ------------------------------------------------------------ API abuse

BEARER = "Bearer " + TOKEN
BAD_NEXT_HOPS_V4 = ["0.0.0.0", "224.0.0.1", "255.255.255.255", "127.0.0.1"]
BAD_NEXT_HOPS_V6 = ["::", "ff02::1", "::1"]


def _abuse_cases():
    """(name, request, expected status, words the message must hold)."""
    announce = "/v1/rib/announce"
    cases = [
        ("no-token", {"method": "GET", "path": "/v1/neighbors"}, 401, ["token"]),
        ("wrong-token", {"method": "GET", "path": "/v1/neighbors", "token": "Bearer nope"}, 401, ["token"]),
        ("wrong-scheme", {"method": "GET", "path": "/v1/neighbors", "token": "Basic " + TOKEN}, 401, ["token"]),
        ("no-token-post", {"path": announce, "json": {"prefixes": ["198.51.100.0/24"]}}, 401, ["token"]),
        ("oversized", {"path": announce, "token": BEARER, "fill": [" ", MAX_BODY + 1]}, 413, []),
        ("malformed-json", {"path": announce, "token": BEARER, "body": '{"prefixes": ['}, 400, ["JSON"]),
        ("not-utf8", {"path": announce, "token": BEARER, "body": "\xff\xfe\x00{"}, 400, []),
        ("deep-nesting", {"path": announce, "token": BEARER, "fill": ["[", 200_000]}, 400, []),
        ("empty-body", {"path": announce, "token": BEARER}, 400, ["body"]),
        ("prefixes-not-list", {"path": announce, "token": BEARER, "json": {"prefixes": "198.51.100.0/24"}}, 400,
         ["prefixes"]),
        ("med-wrong-type", {"path": announce, "token": BEARER, "json": {"prefixes": ["198.51.100.0/24"], "med": "x"}},
         400, ["med"]),
        ("unknown-field", {"path": announce, "token": BEARER, "json": {"prefixes": ["198.51.100.0/24"], "bogus": 1}},
         400, ["bogus"]),
        ("bad-prefix", {"path": announce, "token": BEARER, "json": {"prefixes": ["300.1.2.0/24"]}}, 400, ["prefixes"]),
        ("host-bits", {"path": announce, "token": BEARER, "json": {"prefixes": ["198.51.100.1/24"]}}, 400,
         ["prefixes"]),
        ("huge-prefix", {"path": announce, "token": BEARER, "json": {"prefixes": ["9" * 1_000_000]}}, 400,
         ["prefixes"]),
        ("huge-next-hop", {"path": announce, "token": BEARER,
                           "json": {"prefixes": ["198.51.100.0/24"], "next_hop": "x" * 500_000}}, 400, ["next"]),
        ("unknown-endpoint", {"method": "GET", "path": "/v1/nothing", "token": BEARER}, 404, []),
        ("wrong-method", {"method": "DELETE", "path": announce, "token": BEARER}, 405, []),
    ]
    for nh in BAD_NEXT_HOPS_V4:
        cases.append(("next-hop-" + nh, {"path": announce, "token": BEARER,
                                         "json": {"prefixes": ["198.51.100.0/24"], "next_hop": nh}}, 400, ["next"]))
    for nh in BAD_NEXT_HOPS_V6:
        cases.append(("next-hop-" + nh, {"path": announce, "token": BEARER,
                                         "json": {"prefixes": ["2001:db8:ff::/48"], "next_hop": nh}}, 400, ["next"]))
    return cases


@pytest.mark.timeout(120)
@pytest.mark.interop
@pytest.mark.slow
@over_transports
def test_api_abuse_is_refused_with_short_4xx(labt):
    lab = labt
    cases = _abuse_cases()
    # A good announce first and last: the API still does its job.
    good = {"path": "/v1/rib/announce", "token": BEARER,
            "json": {"prefixes": ["198.51.100.0/24"], "next_hop": lab.fb.ipv4}}
    results = lab.client([good] + [c[1] for c in cases] + [good])
    assert results[0]["status"] == 200 and results[-1]["status"] == 200, (results[0], results[-1])
    wrong = []
    for (name, _, status, words), got in zip(cases, results[1:-1]):
        body = got.get("body", "")
        try:
            message = json.loads(body)["error"] if body else ""
        except (ValueError, KeyError):
            message = None
        ok = (got["status"] == status and message is not None
              # a short reply whatever came in: echoed values are truncated
              and got["length"] <= 2000
              and all(w.lower() in message.lower() for w in words))
        if not ok:
            wrong.append((name, status, got))
    assert not wrong, "\n".join("%s: want %d, got %r" % w for w in wrong)
    lab.bird.wait_route("198.51.100.0/24")
    status, body = lab.api("POST", "/v1/rib/withdraw", {"prefixes": ["198.51.100.0/24"]})
    assert status == 200, body
    lab.bird.wait_route("198.51.100.0/24", present=False)
    lab.check_witness()


@pytest.mark.timeout(180)
@pytest.mark.interop
@pytest.mark.slow
def test_thousand_concurrent_requests_and_slowloris(lab):
    got = lab.client([
        {"kind": "concurrent", "n": 1000, "token": BEARER},
        # More than the listener's MAX_CONNECTIONS (1024), held past its
        # HEAD_TIMEOUT and the API's BODY_STALL_TIMEOUT (10 s each).
        {"kind": "slowloris", "n": 1100, "probes": 12, "hold": 12.0, "token": BEARER},
    ], timeout=150)
    burst, slow = got
    # Every request answered: two in three with the token (200), the rest 401.
    assert burst["statuses"] == {"200": 666, "401": 334}, burst
    # 1,100 connections idle, with half-sent heads or half-sent bodies: the
    # others are still served (the oldest unfinished heads make room), and
    # every slow one ends with 408, not held forever.
    assert slow["probes"] == [200] * 12, slow
    assert slow["slowest"] < 5.0, slow
    assert slow["held"] == {"408": 1100}, slow
    lab.check_witness()


# ------------------------------------------------------------ reloads

# (name, how to break the file, words the refusal must hold: the field)
def _bad_files(fx):
    no_addr = "192.0.2.250"  # on the lab subnet, on no host
    if fx.transport == "ipv6":
        no_addr = "2001:db8::fa"
    dup = "\n".join(["[[neighbors]]", 'address = "%s"' % fx.peer, "peer-as = 65009"]) + "\n"
    return [
        ("toml-syntax", lambda: fx.write_config(fx.config_text() + "[[neighbors\n"), ["TOML"]),
        ("unknown-key", lambda: fx.write_config(fx.config_text(extra_global="colour = 1")), ["colour"]),
        ("wrong-type", lambda: fx.write_config(fx.config_text(hold='"nine"')), ["hold-time"]),
        ("out-of-range", lambda: fx.write_config(fx.config_text(hold=70000)), ["hold-time"]),
        ("duplicate-neighbour", lambda: fx.write_config(fx.config_text(extra=dup)), [fx.peer]),
        ("bad-listen", lambda: fx.write_config(fx.config_text(listen='["%s"]' % no_addr)), ["global.listen"]),
        ("api-tcp-absent-address", lambda: fx.write_config(fx.config_text(api_tcp=fx.hostport(no_addr, API_PORT))),
         ["global.api.tcp"]),
        ("api-socket-unwritable-dir",
         lambda: fx.write_config(fx.config_text(api_socket="/proc/fastbgp-lab-%d/api.sock" % os.getpid())),
         ["global.api.socket"]),
        ("deep-nesting", lambda: fx.write_config(fx.config_text(extra="x = " + "[" * 100_000 + "]" * 100_000)),
         ["TOML"]),
        ("not-utf8", lambda: open(fx.config_path, "wb").write(b"[global]\nasn = 65000 # \xff\xfe\n"), ["cannot read"]),
        ("is-a-directory", lambda: (os.unlink(fx.config_path), os.mkdir(fx.config_path)), ["cannot read"]),
        ("deleted", lambda: os.unlink(fx.config_path), ["cannot read"]),
        # Opening a FIFO blocks until a writer comes: the daemon's loop with it.
        ("fifo", lambda: (os.unlink(fx.config_path), os.mkfifo(fx.config_path)), ["not a regular file"]),
        ("endless-device", lambda: (os.unlink(fx.config_path), os.symlink("/dev/zero", fx.config_path)),
         ["not a regular file"]),
    ]


def _restore(fx, description):
    if os.path.isdir(fx.config_path):
        os.rmdir(fx.config_path)
    fx.description = description
    fx.write_config(fx.config_text())


def _wait_log(fx, offset, words, timeout=5.0):
    """The daemon's log since ``offset`` once it holds a WARNING/ERROR line
    (the refusal) naming ``words``."""
    def found():
        text = fx.log_since(offset)
        hit = re.search(r"\b(warning|error)\b", text, re.I)
        return text if hit and all(w in text[hit.start():] for w in words) else None

    return L.wait_for(found, timeout, what="refusal in the daemon log")


@pytest.mark.timeout(150)
@pytest.mark.interop
@pytest.mark.slow
@over_transports
@pytest.mark.parametrize("trigger", ["api", "sighup"])
def test_bad_reloads_are_refused_and_change_nothing(labt, trigger):
    lab = labt
    listening = lab.listeners()
    assert lab.hostport(lab.me, API_PORT) in listening and lab.hostport(lab.me, 179) in listening, listening
    failures = []
    for i, (name, breaking, words) in enumerate(_bad_files(lab)):
        offset = lab.log_size()
        breaking()
        if trigger == "api":
            status, body = lab.api("POST", "/v1/reload")
            message = (body or {}).get("error", "") if isinstance(body, dict) else ""
            if status != 400 or not all(w in message for w in words) or len(message) > 4000:
                failures.append((name, "API reply", status, body))
        else:
            os.kill(lab.proc.pid, signal.SIGHUP)
        try:
            text = _wait_log(lab, offset, words)
        except TimeoutError:
            failures.append((name, "no WARNING/ERROR naming %s in the log" % words, lab.log_since(offset)[-1500:]))
            text = ""
        if "configuration reloaded" in text or "Traceback" in text:
            failures.append((name, "log", text[-1500:]))
        # Nothing changed: the same listeners, the old ones still serving.
        if lab.listeners() != listening:
            failures.append((name, "listeners", listening, lab.listeners()))
        if not lab.tcp_api_answers():
            failures.append((name, "TCP API no longer answers"))
        if lab.neighbor()["description"] != lab.description:
            failures.append((name, "description changed", lab.neighbor()["description"]))
        # Then a good file applies.
        new_desc = "witness %s %d" % (trigger, i)
        _restore(lab, new_desc)
        if trigger == "api":
            status, body = lab.api("POST", "/v1/reload")
            if status != 200:
                failures.append((name, "good reload refused", status, body))
        else:
            os.kill(lab.proc.pid, signal.SIGHUP)
        try:
            L.wait_for(lambda: lab.neighbor()["description"] == new_desc, 10, what="good reload applied")
        except TimeoutError:
            failures.append((name, "good reload not applied", lab.log_since(offset)[-1500:]))
    assert not failures, "\n".join(repr(f) for f in failures)
    assert lab.listeners() == listening
    lab.check_witness()


# ------------------------------------------------------------ metrics listener


def test_metrics_server_cancelled_after_binding_leaves_nothing_listening(run):
    # A reload or shutdown may cancel MetricsServer.start at any of its
    # suspension points; after each, nothing may be left accepting on the
    # port (aiohttp's SockSite, cancelled inside create_server, left a
    # server listening that nobody could close).
    from fastbgp.control.metrics import MetricsServer

    async def attempt(steps):
        port = free_port()
        srv = MetricsServer(None, "127.0.0.1:%d" % port)
        task = asyncio.get_running_loop().create_task(srv.start())
        for _ in range(steps):
            await asyncio.sleep(0)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        else:
            await srv.stop()
            return None
        await asyncio.sleep(0.01)
        probe = socket.socket()
        try:
            probe.connect(("127.0.0.1", port))
            return steps  # still accepting
        except ConnectionRefusedError:
            return None
        finally:
            probe.close()

    async def main():
        return [s for s in [await attempt(n) for n in range(12)] if s is not None]

    assert run(main(), timeout=30) == []


def test_listener_guard_bounds_slow_connections(run):
    # fastbgp.control.sockets.Guard, with small bounds: a connection without
    # a whole request head in time gets 408; at the connection cap the oldest
    # unfinished one makes room, and with none to evict a new one gets 503.
    from aiohttp import web

    from fastbgp.control.sockets import Guard, bind_tcp, serve_runner

    async def ok(request):
        return web.Response(text="ok")

    async def status(reader):
        line = await asyncio.wait_for(reader.readline(), 5)
        return int(line.split()[1])

    async def main():
        app = web.Application()
        app.router.add_get("/", ok)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        sock = bind_tcp(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        guard = Guard(head_timeout=0.5, max_connections=3)
        server = await serve_runner(runner, sock, guard)
        try:
            conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
            conns[1][1].write(b"GET / HTTP/1.1\r\nHost: x\r\n")  # unfinished head
            conns[2][1].write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # a whole request: served
            assert await status(conns[2][0]) == 200
            # Full: the oldest unfinished connection (conns[0]) makes room.
            fourth = await asyncio.open_connection("127.0.0.1", port)
            assert await status(conns[0][0]) == 408
            # The rest time out.
            assert await status(conns[1][0]) == 408
            assert await status(fourth[0]) == 408
            # Three connections that finished their heads (kept alive:
            # conns[2] and two more): no room and nothing to evict, so the
            # next one is refused.
            busy = []
            for _ in range(2):
                r, w = await asyncio.open_connection("127.0.0.1", port)
                w.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                assert await status(r) == 200
                busy.append((r, w))
            extra = await asyncio.open_connection("127.0.0.1", port)
            assert await status(extra[0]) == 503
            assert (guard.late, guard.refused) == (3, 1)
            for _, w in conns + busy + [fourth, extra]:
                w.close()
        finally:
            server.close()
            await runner.cleanup()

    run(main(), timeout=30)
