#!/usr/bin/env python
"""RPKI route origin validation against BIRD 2, in one namespace lab.

One stayrtr (Debian) serves ~500k VRPs to BIRD 2 (``protocol rpki``) and to
the fastbgp daemon (``[rpki]`` caches); one feeder sends both the same
1M IPv4 + 200k IPv6 DFZ-shaped routes.  Routes and VRPs are exactly those of
bench/rpki_bench.py (``routes_of``: the load generator's DFZ-shaped tables
with one origin per IPv4 /16 or IPv6 /32, one UPDATE per run of up to 8
prefixes of one origin; ``derive_vrps``: ~5% of the routes Invalid, some by
max-length).

Both daemons validate at import and keep the state with the route:

* BIRD: an import filter ``case roa_check(r4|r6, net, bgp_path.last)`` adds
  the large community (64500, 100, 0|1|2) for NotFound/Valid/Invalid;
* fastbgp: an import policy with ``rpki = "valid" | "invalid" |
  "not-found"`` conditions adding the same large communities (so the
  importer validates every UPDATE, ``daemon/rpki_feed.py``).

Measured, per daemon (one at a time; the other idles):

* seconds from the feeder's first UPDATE to every route in the RIB (BIRD:
  ``show protocols all`` imported counts; fastbgp: ``GET /v1/rib/summary``
  prefixes), polled every 0.2 s, and the CPU seconds the daemon process
  used meanwhile (/proc/PID/stat utime + stime: steadier than wall time on
  a shared machine);
* RSS (/proc/PID/status VmRSS): idle (no VRPs, no routes), with the VRPs
  (RTR synced), loaded (all routes); the VRP set = RSS growth across the
  RTR sync; BIRD's ``show memory`` "Routing tables" before and after too;
  for fastbgp also ``RtrClient`` alone in a process (``--role rtr-rss``):
  its RSS growth at End of Data and after gc + malloc_trim;
* counts per RFC 6811 state -- BIRD: routes carrying each community
  (``show route ... where (64500,100,N) ~ bgp_large_community count``) and
  a second count by ``roa_check`` at query time; fastbgp: ``GET /v1/rpki``
  ``routes`` (Loc-RIB best paths validated in bulk) -- and the same routes
  validated in this process against the same VRPs (``VrpTable`` compiled,
  ``validate_packed``).  All three must be equal, state by state.

Run as root (namespaces)::

    python bench/rpki_vs_bird.py                    # 1M + 200k routes, ~500k VRPs
    python bench/rpki_vs_bird.py --v4 50000 --v6 10000 --runs 1
    python bench/rpki_vs_bird.py --plain            # baseline: no validation at import
    python bench/rpki_vs_bird.py --distinct         # every UPDATE a new attribute set (a real table)
    python bench/rpki_vs_bird.py --write bench/RESULTS.md

The feeder is this file (``--role feeder``): a lean BGP speaker writing
pre-encoded UPDATEs (``codec.pack_updates``) on SIGUSR1.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import re
import signal
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from passthrough import code_state, cpu_seconds, version  # noqa: E402 (bench/ on sys.path first): the one /proc CPU and version readers

DUT_AS = 64500
FEEDER_AS = 65001
RTR_PORT = 8282
TAG = 100  # large community (64500, 100, state): 0 not-found, 1 valid, 2 invalid
STATES = ("valid", "invalid", "not-found")
TAG_OF = {"valid": 1, "invalid": 2, "not-found": 0}
BIRD_STATE = {"valid": "ROA_VALID", "invalid": "ROA_INVALID", "not-found": "ROA_UNKNOWN"}


def _status(path, **event):
    event["t"] = time.monotonic()
    with open(path, "a") as f:
        f.write(json.dumps(event) + "\n")


def _events(path):
    try:
        with open(path) as f:
            return [json.loads(line) for line in f if line.endswith("\n")]
    except FileNotFoundError:
        return []


def _wait(pred, timeout, what, procs=(), interval=0.2):
    deadline = time.monotonic() + timeout
    while True:
        out = pred()
        if out:
            return out
        for p in procs:
            if p.poll() is not None:
                raise RuntimeError("a process exited (%s) while waiting for %s" % (p.returncode, what))
        if time.monotonic() > deadline:
            raise TimeoutError("no %s after %ss" % (what, timeout))
        time.sleep(interval)


def _wait_event(path, name, timeout, procs=()):
    def find():
        for ev in _events(path):
            if ev["event"] == name:
                return ev
            if ev["event"] == "notification":
                raise RuntimeError("%s: NOTIFICATION %s" % (path, ev.get("data")))
        return None
    return _wait(find, timeout, "%r in %s" % (name, path), procs, 0.05)


# ============================================================== the data


def make_data(v4, v6):
    """(families, vrps) exactly as bench/rpki_bench.py builds them."""
    import rpki_bench

    families = [rpki_bench.routes_of("ipv4", v4, 1), rpki_bench.routes_of("ipv6", v6, 2)]
    return families, rpki_bench.derive_vrps(families, 3)


def write_stayrtr_json(path, vrps):
    """stayrtr's cache file (the rpki-client JSON shape), written whole then
    renamed so stayrtr never reads half of it."""
    import ipaddress

    roas = []
    for afi, addr, plen, maxlen, asn in vrps:
        net = ipaddress.ip_network((ipaddress.ip_address(addr), plen))
        roas.append({"prefix": str(net), "maxLength": maxlen, "asn": "AS%d" % asn})
    with open(path + ".tmp", "w") as f:
        json.dump({"metadata": {"buildtime": "2024-01-01T00:00:00Z"}, "roas": roas}, f)
    os.rename(path + ".tmp", path)


def encode_updates(families, next_hop4, next_hop6, distinct=False):
    """Every UPDATE the feeder sends: one per group (prefixes sharing one
    origin), AS_PATH (FEEDER_AS, origin); IPv6 in MP_REACH_NLRI.
    ``distinct``: each UPDATE also carries a LARGE_COMMUNITY
    (FEEDER_AS:1:n) numbering it, so each brings a new attribute set, as in
    a real table (a router packs the prefixes sharing a set into one UPDATE)."""
    import ipaddress

    from fastbgp.wire import codec
    from fastbgp.wire.as4 import encode_attr, encode_segments

    nh4 = ipaddress.IPv4Address(next_hop4).packed
    nh6 = ipaddress.IPv6Address(next_hop6).packed
    out = []
    n = 0
    for afi, _width, _routes, groups in families:
        for packed, origin in groups:
            attrs = encode_attr(0x40, 1, b"\x00") + encode_attr(0x40, 2, encode_segments([(2, [FEEDER_AS, origin])], 4))
            if afi == 1:
                attrs += encode_attr(0x40, 3, nh4)
            if distinct:
                n += 1  # attributes sorted by type code, as routers send them
                attrs += encode_attr(0xC0, 32, struct.pack("!III", FEEDER_AS, 1, n))
            if afi == 1:
                out += codec.pack_updates(attrs, packed, codec.DEFAULT_CONTEXT)
            else:
                out += codec.pack_updates(attrs, packed, codec.DEFAULT_CONTEXT, afi=2, safi=1, next_hop=nh6)
    out.append(codec.build_eor(1, 1))
    out.append(codec.build_eor(2, 1))
    return out


def expected_counts(families, vrps):
    """{state: routes} from this process's compiled VRP table, and the CPU
    seconds of building it and validating every route."""
    from fastbgp.rpki import vrp as vrp_sel
    from fastbgp.rpki.vrp import INVALID, NOT_FOUND, VALID

    impl = vrp_sel.load("cython")
    t0 = time.process_time()
    table = impl.VrpTable()
    for v in vrps:
        table.add(*v)
    t1 = time.process_time()
    states = [b"".join(table.validate_packed(afi, packed, origin) for packed, origin in groups)
              for afi, _w, _r, groups in families]
    t2 = time.process_time()
    names = {VALID: "valid", INVALID: "invalid", NOT_FOUND: "not-found"}
    return {names[s]: sum(st.count(s) for st in states) for s in names}, t1 - t0, t2 - t1


# ============================================================== the feeder


class FeederPeer(asyncio.Protocol):
    """OPEN (IPv4 + IPv6 unicast, 4-octet AS), keepalives, then the
    pre-encoded UPDATEs on SIGUSR1."""

    def __init__(self, status, router_id):
        self.status = status
        self.router_id = router_id
        self.transport = None
        self.established = asyncio.get_event_loop().create_future()
        self.closed = asyncio.get_event_loop().create_future()

    def connection_made(self, transport):
        from fastbgp.wire import capabilities as caps, codec

        self.transport = transport
        self.reader = codec.MessageReader()
        pairs = caps.encode_all([caps.Multiprotocol(1, 1), caps.Multiprotocol(2, 1), caps.FourOctetAS(FEEDER_AS)])
        transport.write(codec.build_open(FEEDER_AS, 240, self.router_id, pairs))

    def data_received(self, data):
        from fastbgp.wire import codec

        for mtype, body in self.reader.feed(data):
            if mtype == 1:
                self.transport.write(codec.KEEPALIVE)
            elif mtype == 4 and not self.established.done():
                self.established.set_result(None)
                _status(self.status, event="established")
                asyncio.get_event_loop().call_later(60, self.keepalive)
            elif mtype == 3:
                _status(self.status, event="notification", data=bytes(body).hex())

    def keepalive(self):
        from fastbgp.wire import codec

        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(codec.KEEPALIVE)
            asyncio.get_event_loop().call_later(60, self.keepalive)

    def connection_lost(self, exc):
        _status(self.status, event="closed", error=str(exc))
        if not self.closed.done():
            self.closed.set_result(None)


async def feeder(args):
    import ipaddress

    loop = asyncio.get_running_loop()
    with open(args.data, "rb") as f:
        blob = f.read()
    go = asyncio.Event()
    loop.add_signal_handler(signal.SIGUSR1, go.set)
    peer = FeederPeer(args.status, int(ipaddress.IPv4Address(args.local)))
    deadline = loop.time() + 60
    while True:
        try:
            await loop.create_connection(lambda: peer, args.target, 179, local_addr=(args.local, 0))
            break
        except OSError:
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.2)
    await peer.established
    await go.wait()
    _status(args.status, event="go")
    peer.transport.write(blob)
    await peer.closed


async def rtr_client_rss(args):
    """The RTR client alone (fastbgp.rpki.client.RtrClient with its
    VrpTable, no daemon): RSS before the sync, right after End of Data,
    and after gc + malloc_trim (what stays is the table and the client,
    not the freed lists of the sync)."""
    import ctypes
    import gc

    from fastbgp.rpki import client as C

    done = asyncio.Event()

    class Watch(C.RtrObserver):
        def vrps_changed(self, added, removed):
            done.set()

    gc.collect()
    before = rss_mb(os.getpid())
    client = C.RtrClient([C.CacheSpec(address=args.target, port=RTR_PORT, retry=1)], Watch())
    task = client.start()
    await done.wait()
    synced = rss_mb(os.getpid())
    await asyncio.sleep(1.0)
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    _status(args.status, event="rss", before=before, synced=synced, trimmed=rss_mb(os.getpid()),
            vrps=len(client.vrps))
    task.cancel()


# ============================================================== the daemons


def rss_mb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    return 0.0


class UnixHTTP(http.client.HTTPConnection):
    """HTTP over the daemon's API unix socket (filesystem path: reachable
    from outside its namespace)."""

    def __init__(self, path, timeout=120):
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


def api_get(sock, path):
    c = UnixHTTP(sock)
    try:
        c.request("GET", path)
        r = c.getresponse()
        body = r.read()
        if r.status != 200:
            raise RuntimeError("GET %s: %d %s" % (path, r.status, body[:200]))
        return json.loads(body)
    finally:
        c.close()


def fastbgp_tagged(sock, states):
    """{state: paths carrying its import-time tag whose state the daemon
    shows (``rpki`` of the path row) is that state}: the tag set at import
    agrees with the state derived at query time.  Only the small states:
    a streamed row per path."""
    out = {}
    for state in states:
        n = 0
        for fam in ("ipv4-unicast", "ipv6-unicast"):
            c = UnixHTTP(sock, timeout=600)
            try:
                c.request("GET", "/v1/rib/%s?large_community=%d:%d:%d&stream=1" % (fam, DUT_AS, TAG, TAG_OF[state]))
                r = c.getresponse()
                if r.status != 200:
                    raise RuntimeError("tagged %s: %d %s" % (state, r.status, r.read()[:200]))
                for line in r:
                    row = json.loads(line)
                    paths = row.get("paths", [row])
                    n += sum(1 for p in paths if p.get("rpki") == state)
            finally:
                c.close()
        out[state] = n
    return out


def fastbgp_config(host, feeder, cache, api_sock, plain=False, log_level="warning"):
    pol = []
    for state in STATES:
        pol += ["[[policies.statements]]", "conditions = { rpki = \"%s\" }" % state,
                "actions = { result = \"accept\", large-communities = { add = [\"%d:%d:%d\"] } }"
                % (DUT_AS, TAG, TAG_OF[state])]
    return "\n".join([
        "[global]", "asn = %d" % DUT_AS, 'router-id = "%s"' % host.ipv4, 'listen = ["%s"]' % host.ipv4,
        "[global.api]", 'socket = "%s"' % api_sock,
        "[global.log]", 'level = "%s"' % log_level,
        "[rpki]", 'caches = [{ address = "%s", port = %d, retry = 1 }]' % (cache.ipv4, RTR_PORT),
        "[[policies]]", 'name = "rov"', *pol,
        "[[neighbors]]", 'address = "%s"' % feeder.ipv4, "peer-as = %d" % FEEDER_AS, "passive = true",
        'families = ["ipv4-unicast", "ipv6-unicast"]', 'import-policy = [%s]' % ('' if plain else '"rov"'),
        'default-import = "accept"', 'default-export = "reject"', "timers = { hold-time = 240 }",
    ]) + "\n"


BIRD_RPKI = """\
roa4 table r4;
roa6 table r6;
protocol rpki rtr1 {
  roa4 { table r4; };
  roa6 { table r6; };
  remote %(cache)s port %(port)d;
  retry keep 1;
}
filter rov {
  if net.type = NET_IP4 then {
    case roa_check(r4, net, bgp_path.last) {
      ROA_VALID: bgp_large_community.add((%(asn)d, %(tag)d, 1));
      ROA_INVALID: bgp_large_community.add((%(asn)d, %(tag)d, 2));
      else: bgp_large_community.add((%(asn)d, %(tag)d, 0));
    }
  } else {
    case roa_check(r6, net, bgp_path.last) {
      ROA_VALID: bgp_large_community.add((%(asn)d, %(tag)d, 1));
      ROA_INVALID: bgp_large_community.add((%(asn)d, %(tag)d, 2));
      else: bgp_large_community.add((%(asn)d, %(tag)d, 0));
    }
  }
  accept;
}
"""


def rov_bird(lab_module):
    """BIRD with the ROA tables and the ``rov`` filter declared before the
    BGP protocol that uses them (BIRD resolves names as it parses)."""

    class RovBird(lab_module.Bird):
        def __init__(self, *a, preamble="", **kw):
            super().__init__(*a, **kw)
            self.preamble = preamble

        def config_text(self):
            return self.preamble + super().config_text()

    return RovBird


def bird_count(bird, table, where=None):
    argv = ["show", "route", "table", table] + (["where", where] if where else []) + ["count"]
    out = bird.birdc(*argv).stdout
    m = re.search(r"(\d+) of (\d+) routes", out)
    if not m:
        raise RuntimeError("birdc %s: %s" % (" ".join(argv), out[-300:]))
    return int(m.group(1))


def bird_tagged(bird):
    """{state: BIRD routes carrying its import-time tag}: two table scans
    per state, in BIRD's own thread."""
    out = {}
    for state in STATES:
        w = "(%d,%d,%d) ~ bgp_large_community" % (DUT_AS, TAG, TAG_OF[state])
        out[state] = bird_count(bird, "master4", w) + bird_count(bird, "master6", w)
    return out


def bird_imported(bird, proto):
    out = bird.birdc("show", "protocols", "all", proto).stdout
    return sum(int(x) for x in re.findall(r"Routes:\s+(\d+) imported", out))


def bird_tables_memory(bird):
    out = bird.birdc("show", "memory").stdout
    m = re.search(r"Routing tables:\s+([\d.]+)\s*(\w+)", out)
    if not m:
        return None
    scale = {"B": 1 / 1e6, "kB": 1 / 1e3, "MB": 1, "GB": 1e3}.get(m.group(2), 1)
    return float(m.group(1)) * scale * (1.024 if m.group(2) in ("kB", "MB") else 1)


# ============================================================== one run


BLOBS: dict = {}  # (IPv4, IPv6 address) -> the feeder's file, removed at the end


def blob_for(families, host, distinct=False, cache=BLOBS):
    """The feeder's UPDATEs (next hops: its own addresses), encoded once per
    address pair and kept in a file the feeder reads."""
    key = (host.ipv4, host.ipv6)
    if key not in cache:
        path = "/tmp/rpki_vs_bird.%d.%s.bin" % (os.getpid(), host.ipv4)
        with open(path, "wb") as f:
            f.write(b"".join(encode_updates(families, host.ipv4, host.ipv6, distinct)))
        cache[key] = path
    return cache[key]


class LabRun:
    """One run: the lab, both daemons, one stayrtr, two feeders; ``out``
    holds the figures per daemon."""

    def __init__(self, args, lab, families, vrps, total):
        from fastbgp.testing import lab as L

        self.args, self.lab, self.families, self.vrps, self.total = args, lab, families, vrps, total
        self.n4 = sum(v[0] == 1 for v in vrps)
        self.n6 = len(vrps) - self.n4
        self.out = {"bird": {}, "fastbgp": {}}
        self.procs = []
        self.c, self.b, self.d = lab.add_host("c"), lab.add_host("b"), lab.add_host("d")
        self.fb, self.fd = lab.add_host("fb"), lab.add_host("fd")
        self.api_sock = os.path.join(self.d.workdir, "api.sock")
        self.dlog_path = os.path.join(self.d.workdir, "fastbgp.log")
        self.last_rpki = 0.0
        # daemons first, the cache later: idle RSS is without VRPs
        imp = "all" if args.plain else "filter rov"
        opts = {"import": imp, "export": "none"}
        if args.revalidate:
            # BIRD 2.0 re-runs its import filter only on `reload in`; kept
            # Adj-RIB-In, so that needs no route refresh (RFC 9324).
            opts["channel_extra"] = "import table on;"
        nb = L.Neighbor(self.fb.ipv4, FEEDER_AS, passive=True, hold_time=240, families=("ipv4", "ipv6"),
                        options=opts)
        self.bird = rov_bird(L)(self.b, DUT_AS, neighbors=[nb], preamble=BIRD_RPKI % {
            "cache": self.c.ipv4, "port": RTR_PORT, "asn": DUT_AS, "tag": TAG})
        self.bird.start()
        self.procs.append(self.bird.proc)
        cfg = os.path.join(self.d.workdir, "fastbgp.toml")
        with open(cfg, "w") as f:
            # --revalidate: at INFO the daemon logs each re-validation's paths and seconds
            f.write(fastbgp_config(self.d, self.fd, self.c, self.api_sock, args.plain,
                                   "info" if args.revalidate else "warning"))
        with open(self.dlog_path, "ab") as log:
            argv = [sys.executable, os.path.abspath(__file__), "--role", "fastbgp", "--config", cfg]
            if args.profile:
                argv += ["--profile", os.path.abspath(args.profile)]
            self.dproc = self.d.popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        self.procs.append(self.dproc)

    @property
    def cache_path(self):
        return os.path.join(self.c.workdir, "vrps.json")

    def start_stayrtr(self, refresh):
        """stayrtr serving ``cache_path``, re-read every ``refresh`` seconds."""
        c = self.c
        with open(os.path.join(c.workdir, "stayrtr.log"), "ab") as log:
            p = c.popen(["stayrtr", "-cache", self.cache_path, "-checktime=false", "-bind",
                         "%s:%d" % (c.ipv4, RTR_PORT), "-refresh", str(refresh), "-metrics.addr",
                         "%s:9847" % c.ipv4], stdout=log, stderr=subprocess.STDOUT)
        self.procs.append(p)
        return p

    def log_tail(self):
        with open(self.dlog_path, errors="replace") as f:
            return "--- fastbgp log ---\n" + f.read()[-3000:]

    def pid(self, kind):
        return self.bird.proc.pid if kind == "bird" else self.dproc.pid

    def rss(self):
        return {kind: rss_mb(self.pid(kind)) for kind in ("bird", "fastbgp")}

    def idle(self):
        _wait(lambda: os.path.exists(self.api_sock), 30, "the fastbgp API socket", self.procs)
        time.sleep(2.0)
        for kind, mb in self.rss().items():
            self.out[kind]["rss_idle"] = mb
        self.out["bird"]["tables_idle"] = bird_tables_memory(self.bird)

    def fastbgp_vrps(self):
        self.last_rpki = time.monotonic()
        r = api_get(self.api_sock, "/v1/rpki")
        return r["vrps"].get("ipv4") == self.n4 and r["vrps"].get("ipv6") == self.n6

    def rtr_sync(self):
        c, bird = self.c, self.bird
        st = os.path.join(self.fb.workdir, "rtr-rss")
        with open(os.path.join(self.fb.workdir, "rtr-rss.log"), "ab") as log:  # its retries while stayrtr starts
            alone = self.fb.popen([sys.executable, os.path.abspath(__file__), "--role", "rtr-rss", "--target",
                                   c.ipv4, "--status", st], stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        write_stayrtr_json(self.cache_path, self.vrps)
        self.stayrtr = self.start_stayrtr(3600)
        t0 = time.monotonic()
        _wait(lambda: bird_count(bird, "r4") == self.n4 and bird_count(bird, "r6") == self.n6, 300, "BIRD's VRPs",
              self.procs, 0.5)
        self.out["bird"]["rtr_sync"] = time.monotonic() - t0
        _wait(self.fastbgp_vrps, 300, "fastbgp's VRPs", self.procs, 0.5)
        self.out["fastbgp"]["rtr_sync"] = time.monotonic() - t0  # checked after BIRD's: an upper bound
        time.sleep(2.0)
        for kind, mb in self.rss().items():
            self.out[kind]["rss_vrps"] = mb
        self.out["bird"]["tables_vrps"] = bird_tables_memory(bird)
        ev = _wait_event(st, "rss", 300, [alone])
        self.out["fastbgp"]["client_alone"] = (ev["synced"] - ev["before"], ev["trimmed"] - ev["before"])
        alone.wait(10)

    def bird_done(self):
        return bird_imported(self.bird, "n1") >= self.total

    def fastbgp_done(self):
        return sum(r["prefixes"] for r in api_get(self.api_sock, "/v1/rib/summary")) >= self.total

    def feed(self):
        """Both feeders connect; then each daemon is fed alone, BIRD first."""
        feeders = {}
        for kind, host, target in (("bird", self.fb, self.b), ("fastbgp", self.fd, self.d)):
            st = os.path.join(host.workdir, "status")
            p = host.popen([sys.executable, os.path.abspath(__file__), "--role", "feeder", "--target", target.ipv4,
                            "--local", host.ipv4, "--data", blob_for(self.families, host, self.args.distinct), "--status", st], cwd=ROOT)
            self.procs.append(p)
            feeders[kind] = (p, st)
        for _p, st in feeders.values():
            _wait_event(st, "established", 60, self.procs)
        for kind, done in (("bird", self.bird_done), ("fastbgp", self.fastbgp_done)):
            p, st = feeders[kind]
            cpu0 = cpu_seconds(self.pid(kind))
            os.kill(p.pid, signal.SIGUSR1)
            go = _wait_event(st, "go", 30, self.procs)["t"]
            _wait(done, self.args.timeout, "%s holding %d routes" % (kind, self.total), self.procs, 0.2)
            self.out[kind]["seconds"] = time.monotonic() - go
            self.out[kind]["cpu"] = cpu_seconds(self.pid(kind)) - cpu0
            self.out[kind]["rss_loaded"] = self.rss()[kind]
            print("  %s: %.2f s, %.2f s CPU" % (kind, self.out[kind]["seconds"], self.out[kind]["cpu"]), flush=True)
        self.out["bird"]["tables_loaded"] = bird_tables_memory(self.bird)

    def count(self):
        bird, out = self.bird, self.out
        out["bird"]["counts_query"] = {
            s: bird_count(bird, "master4", "roa_check(r4, net, bgp_path.last) = %s" % BIRD_STATE[s])
            + bird_count(bird, "master6", "roa_check(r6, net, bgp_path.last) = %s" % BIRD_STATE[s]) for s in STATES}
        # without the import filter the state is only known at query time
        out["bird"]["counts"] = out["bird"]["counts_query"] if self.args.plain else bird_tagged(bird)
        if not self.args.plain:
            out["fastbgp"]["tagged"] = fastbgp_tagged(self.api_sock, ("invalid", "not-found"))
        # /v1/rpki's route counts are reused for 30 s (rpki_feed.COUNT_TTL):
        # ask once more than that after the last look
        time.sleep(max(0.0, 31.0 - (time.monotonic() - self.last_rpki)))
        t = time.monotonic()
        routes = api_get(self.api_sock, "/v1/rpki")["routes"]
        out["fastbgp"]["count_seconds"] = time.monotonic() - t
        out["fastbgp"]["counts"] = {k: v for k, v in routes.items() if k in STATES}


class Revalidation:
    """``--revalidate``: the VRP set changes under the loaded routes, and
    each daemon brings every path's state up to date.

    stayrtr is restarted on the same file re-read every ``REFRESH`` seconds
    (the import phase ran with a one-hour refresh); once both daemons hold
    its data again, the file is rewritten for each step:

    1. 1,000 changes (bench/rpki_bench.py ``changes_for``: 500 VRPs removed,
       500 added, half of them on routes not covered before);
    2. every VRP gone but one unrelated VRP (every path becomes NotFound);
    3. every VRP back: the initial validation of routes already held.

    Per step and daemon: seconds from the file's rewrite until every path
    shows its new state, and the daemon's CPU seconds meanwhile (both
    daemons work at once: stayrtr notifies both).  fastbgp re-validates on
    its own (the paths the changed VRPs cover, incrementally): its
    neighbour's state counts (``GET /v1/neighbors/ADDR`` ``rpki``, kept per
    path by the RIB) polled every 0.05 s.  BIRD 2.0 does not re-run import
    filters when its ROA tables change (BIRD 2.13 added that): as its
    operators do, ``birdc reload in n1`` (from the kept Adj-RIB-In) once the
    RTR serial has moved (polled every 0.05 s); done when it stopped using
    CPU and its tag counts are the new ones (``bird_busy_until``).
    """

    DUMMY = (1, bytes((198, 51, 100, 0)), 24, 24, 64496)  # TEST-NET-2: no route of the bench
    # stayrtr re-reads and parses its file every refresh even when it did not
    # change: 1.2 CPU s per read of this 35 MB file (measured here), so a
    # 1 s refresh takes a whole core from the daemons measured; 5 s: a
    # fifth of one, and up to 5 s before a change is served.
    REFRESH = 5

    def __init__(self, run):
        self.run = run

    def bird_serial(self):
        out = self.run.bird.birdc("show", "protocols", "all", "rtr1").stdout
        m = re.search(r"Serial number:\s+(\d+)", out)
        return int(m.group(1)) if m else None

    def fastbgp_counts(self):
        d = api_get(self.run.api_sock, "/v1/neighbors/%s" % self.run.fd.ipv4)
        return {s: d["rpki"][s] for s in STATES}

    def bird_busy_until(self, done, deadline, quiet=0.3, sample=0.05):
        """When BIRD's reload ended, asking BIRD as little as possible: a
        ``show route`` count is a table scan in BIRD's own (single) thread,
        which would slow the reload it measures.  BIRD's CPU time (/proc,
        10 ms ticks) is sampled every ``sample`` s; whenever it has been
        idle for ``quiet`` s, ``done()`` (its tag counts) is asked: if
        true, the reload ended at the last sample where BIRD was busy (>=
        40%% of the interval).  An idle spell alone does not say the reload is
        over, hence the check (BIRD also shows a second burst about a second
        after a reload, its counts already right before it; what that burst
        is was not found)."""
        pid = self.run.pid("bird")
        last_busy = time.monotonic()
        prev = cpu_seconds(pid)
        while time.monotonic() < deadline:
            time.sleep(sample)
            now, cpu = time.monotonic(), cpu_seconds(pid)
            if cpu - prev >= 0.4 * sample:
                last_busy = now
            prev = cpu
            if now - last_busy >= quiet:
                if done():
                    return last_busy
                prev = cpu_seconds(pid)  # the check's own scan is not the reload
                last_busy = time.monotonic()
        raise TimeoutError("BIRD's reload not done")

    def resync(self):
        """stayrtr restarted with a ``REFRESH``-second refresh; both daemons
        hold its data again (new session: a full sync each)."""
        run = self.run
        run.stayrtr.terminate()
        run.stayrtr.wait(10)
        run.procs.remove(run.stayrtr)
        run.stayrtr = run.start_stayrtr(self.REFRESH)
        time.sleep(1.0)
        up = lambda: "Established" in run.bird.birdc("show", "protocols", "all", "rtr1").stdout  # noqa: E731
        try:
            _wait(up, 60, "BIRD's RTR session again", run.procs, 0.5)
        except TimeoutError:
            # Seen once in six restarts: BIRD's rpki protocol stayed down
            # (stayrtr still loading when BIRD came back?); restart it.
            print("  BIRD's RTR session not back after 60 s: birdc restart rtr1\n%s" % run.bird.birdc(
                "show", "protocols", "all", "rtr1").stdout, flush=True)
            run.bird.birdc("restart", "rtr1", check=True)
            _wait(up, 120, "BIRD's RTR session after a restart", run.procs, 0.5)
        _wait(lambda: any(c["state"] == "up" and c["source"] for c in api_get(run.api_sock, "/v1/rpki")["caches"]),
              120, "fastbgp's RTR session again", run.procs, 0.5)
        time.sleep(3.0)  # both daemons' re-syncs done (same data: nothing to re-validate)

    def step(self, name, new_vrps, expected):
        run = self.run
        before = self.fastbgp_counts()
        serial0 = self.bird_serial()
        cpu0 = {k: cpu_seconds(run.pid(k)) for k in ("bird", "fastbgp")}
        res = {"name": name, "vrps": len(new_vrps), "expected": expected, "before": before}
        deadline = time.monotonic() + run.args.timeout
        got = {}

        def fastbgp_done():  # in a thread: BIRD's polls must not delay it
            try:
                while time.monotonic() < deadline:
                    if self.fastbgp_counts() == expected:
                        got["t"] = time.monotonic()
                        got["cpu"] = cpu_seconds(run.pid("fastbgp")) - cpu0["fastbgp"]
                        return
                    time.sleep(0.05)
            except Exception as exc:  # reported below
                got["error"] = exc

        with open(run.dlog_path, errors="replace") as f:
            log_at = len(f.read())
        t0, t0_unix = time.monotonic(), time.time()
        write_stayrtr_json(run.cache_path, new_vrps)
        th = threading.Thread(target=fastbgp_done, daemon=True)
        th.start()
        _wait(lambda: self.bird_serial() != serial0, run.args.timeout, "BIRD's new RTR serial", run.procs, 0.05)
        res["bird_roa"] = time.monotonic() - t0
        run.bird.birdc("reload", "in", "n1", check=True)
        res["bird"] = self.bird_busy_until(lambda: bird_tagged(run.bird) == expected, deadline) - t0
        res["bird_cpu"] = cpu_seconds(run.pid("bird")) - cpu0["bird"]  # its checks' scans included
        th.join(max(0.0, deadline - time.monotonic()))
        if "t" not in got:
            raise RuntimeError("fastbgp did not re-validate (%s): %s" % (name, got.get("error", "timeout")))
        res["fastbgp"], res["fastbgp_cpu"] = got["t"] - t0, got["cpu"]
        res["bird_counts"] = bird_tagged(run.bird)
        res["fastbgp_counts"] = self.fastbgp_counts()
        rp = api_get(run.api_sock, "/v1/rpki")
        res["fastbgp_vrps"] = rp["last_update"] - t0_unix  # its VRP tables changed (RTR End of Data applied)
        # The daemon's own account: paths re-validated and the seconds it took
        # (rpki_feed.revalidate's INFO line, once per pass).
        with open(run.dlog_path, errors="replace") as f:
            passes = re.findall(r"RPKI change: (\d+) paths re-validated in ([\d.]+) s", f.read()[log_at:])
        res["fastbgp_paths"] = sum(int(n) for n, _s in passes)
        res["fastbgp_revalidate_s"] = sum(float(x) for _n, x in passes)
        print("  %s: BIRD %.2f s (ROA tables %.2f s; %.1f s CPU), fastbgp %.2f s (VRP tables %.2f s; %.1f s CPU; "
              "its log: %d paths re-validated in %.2f s)" % (
                  name, res["bird"], res["bird_roa"], res["bird_cpu"], res["fastbgp"], res["fastbgp_vrps"],
                  res["fastbgp_cpu"], res["fastbgp_paths"], res["fastbgp_revalidate_s"]), flush=True)
        return res

    def __call__(self):
        import rpki_bench

        run = self.run
        self.resync()
        removed, added = rpki_bench.changes_for(run.vrps, run.families, 3)
        gone = set(removed)
        changed = [v for v in run.vrps if v not in gone] + added
        steps = [("1,000 VRP changes", changed), ("every VRP withdrawn", [self.DUMMY]),
                 ("every VRP back: initial validation of the loaded routes", run.vrps)]
        out = []
        for name, new in steps:
            expected = expected_counts(run.families, new)[0]
            r = self.step(name, new, expected)
            for kind in ("bird", "fastbgp"):
                assert r[kind + "_counts"] == expected, (name, kind, r[kind + "_counts"], expected)
            out.append(r)
        return out


def run_once(args, families, vrps, total):
    from fastbgp.testing import lab as L

    with L.Lab() as lab:
        run = LabRun(args, lab, families, vrps, total)
        try:
            run.idle()
            run.rtr_sync()
            if args.rtr_only:
                run.dproc.terminate()
                run.dproc.wait(30)
                return run.out
            run.feed()
            run.count()
            if args.revalidate:
                run.out["revalidation"] = Revalidation(run)()
        except Exception:
            print(run.log_tail(), file=sys.stderr)
            raise
        run.dproc.terminate()
        run.dproc.wait(30)
        return run.out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--role", choices=["feeder", "fastbgp", "rtr-rss"])
    ap.add_argument("--target")
    ap.add_argument("--local")
    ap.add_argument("--data")
    ap.add_argument("--status")
    ap.add_argument("--config")
    ap.add_argument("--v4", type=int, default=1_000_000)
    ap.add_argument("--v6", type=int, default=200_000)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=900)
    ap.add_argument("--distinct", action="store_true",
                    help="every UPDATE its own attribute set (a LARGE_COMMUNITY numbering it), as in a real table")
    ap.add_argument("--plain", action="store_true",
                    help="baseline: no validation at import (BIRD import all, fastbgp no policy); "
                         "the states are still counted at query time")
    ap.add_argument("--profile", help="cProfile the fastbgp daemon into this file (pstats)")
    ap.add_argument("--write", help="append the result as Markdown to this file")
    ap.add_argument("--revalidate", action="store_true",
                    help="after the import: 1,000 VRP changes, every VRP withdrawn, every VRP back, each "
                         "re-validated by both daemons (BIRD: `reload in` from `import table`)")
    ap.add_argument("--rtr-only", action="store_true",
                    help="only the RTR sync part (VRPs to both daemons and the lone client; no routes fed)")
    args = ap.parse_args(argv)
    if args.role == "feeder":
        import uvloop

        uvloop.run(feeder(args))
        return 0
    if args.role == "rtr-rss":
        import uvloop

        uvloop.run(rtr_client_rss(args))
        return 0
    if args.role == "fastbgp":
        import uvloop

        from fastbgp.daemon.process import run_daemon

        if args.profile:  # cProfile of the whole daemon, written when SIGTERM ends it
            import cProfile

            cProfile.runctx("uvloop.run(run_daemon(config, api=True, metrics=False))",
                            {"uvloop": uvloop, "run_daemon": run_daemon, "config": args.config}, {}, args.profile)
            return 0
        uvloop.run(run_daemon(args.config, api=True, metrics=False))  # the config's log level
        return 0

    if args.rtr_only:
        return rtr_only(args)
    args.code_start = code_state()  # what report() names, warning when it changed during the run
    t = time.perf_counter()
    families, vrps = make_data(args.v4, args.v6)
    total = len(families[0][2]) + len(families[1][2])
    expected, build_cpu, validate_cpu = expected_counts(families, vrps)
    print("setup: %d IPv4 + %d IPv6 routes, %d VRPs (%d IPv4, %d IPv6), %.1f s" % (
        len(families[0][2]), len(families[1][2]), len(vrps), sum(v[0] == 1 for v in vrps),
        sum(v[0] == 2 for v in vrps), time.perf_counter() - t), flush=True)
    print("in-process (compiled VrpTable): build %.2f s, validate %d routes %.2f s CPU; %s" % (
        build_cpu, total, validate_cpu, expected), flush=True)
    runs = []
    try:
        for i in range(args.runs):
            print("run %d of %d" % (i + 1, args.runs), flush=True)
            r = run_once(args, families, vrps, total)
            runs.append(r)
            for kind in ("bird", "fastbgp"):
                assert r[kind]["counts"] == expected, (kind, r[kind]["counts"], expected)
            assert r["bird"]["counts_query"] == expected, ("bird roa_check", r["bird"]["counts_query"], expected)
            for state, n in r["fastbgp"].get("tagged", {}).items():
                assert n == expected[state], ("fastbgp tagged", state, n, expected[state])
    finally:
        for path in BLOBS.values():
            os.unlink(path)
    text = report(args, runs, families, vrps, total, expected, build_cpu, validate_cpu)
    print(text)
    if args.write:
        with open(args.write, "a") as f:
            f.write("\n" + text)
    return 0


def rtr_only(args):
    """``--rtr-only``: the RTR sync figures alone, medians of ``--runs``."""
    families, vrps = make_data(args.v4, args.v6)
    runs = [run_once(args, families, vrps, 0) for _ in range(args.runs)]
    for r in runs:
        print(json.dumps(r), flush=True)
    med = statistics.median
    print("rtr-only, %d VRPs, median of %d: sync BIRD %.1f s, fastbgp <= %.1f s; RSS growth across the sync "
          "BIRD %.1f MB, fastbgp daemon %.1f MB; RtrClient alone at End of Data %.1f MB, after gc + malloc_trim %.1f MB"
          % (len(vrps), len(runs), med(r["bird"]["rtr_sync"] for r in runs), med(r["fastbgp"]["rtr_sync"] for r in runs),
             med(r["bird"]["rss_vrps"] - r["bird"]["rss_idle"] for r in runs),
             med(r["fastbgp"]["rss_vrps"] - r["fastbgp"]["rss_idle"] for r in runs),
             med(r["fastbgp"]["client_alone"][0] for r in runs), med(r["fastbgp"]["client_alone"][1] for r in runs)))
    return 0


def _med(runs, kind, key):
    vals = [r[kind][key] for r in runs if r[kind].get(key) is not None]
    return statistics.median(vals) if vals else float("nan")


def _stayrtr_version():
    stay = subprocess.run(["stayrtr", "-version"], capture_output=True, text=True)
    return (stay.stdout + stay.stderr).strip().splitlines()[0] if (stay.stdout + stay.stderr) else "?"


def report(args, runs, families, vrps, total, expected, build_cpu, validate_cpu):
    from fastbgp.wire.bench import machine

    bird_v, head, stay_v = version("bird"), version("fastbgp", args.code_start), _stayrtr_version()
    n = len(runs)
    what = "median of %d runs" % n if n > 1 else "one run"
    mode = ("baseline: no validation at import (BIRD `import all`, fastbgp no import policy; "
            "the states counted at query time)" if args.plain else "validation at import")
    lines = [
        "## RPKI origin validation against BIRD, %s (bench/rpki_vs_bird.py, %s)" % (mode, time.strftime("%Y-%m-%d")),
        "",
        "`sudo python bench/rpki_vs_bird.py --v4 %d --v6 %d --runs %d%s` -- %s; machine: %s; BIRD %s, "
        "fastbgp %s, stayrtr %s." % (args.v4, args.v6, args.runs, (" --plain" if args.plain else "")
                                         + (" --revalidate" if args.revalidate else "")
                                         + (" --distinct" if args.distinct else ""), what,
                                         machine(), bird_v, head, stay_v),
        "%d IPv4 + %d IPv6 routes (bench/rpki_bench.py routes_of), %d VRPs (%d IPv4, %d IPv6; derive_vrps) "
        "served by one stayrtr to both daemons over RTR; one feeder per daemon sends the same UPDATEs; %s" % (
            len(families[0][2]), len(families[1][2]), len(vrps), sum(v[0] == 1 for v in vrps),
            sum(v[0] == 2 for v in vrps),
            "no import filter or policy." if args.plain else
            "each daemon validates at import (BIRD: roa_check in the import filter; fastbgp: rpki conditions "
            "in the import policy) and tags the state as a large community.")
        + (" Every UPDATE carries its own attribute set (`--distinct`: a LARGE_COMMUNITY numbering it), "
           "as in a real table." if args.distinct else ""),
        "",
        "| | BIRD %s | fastbgp | ratio BIRD/fastbgp |" % bird_v,
        "|---|---:|---:|---:|",
    ]
    b, f = "bird", "fastbgp"
    sec_b, sec_f = _med(runs, b, "seconds"), _med(runs, f, "seconds")
    lines.append("| first UPDATE -> all %d routes in the RIB%s (s) | %.1f | %.1f | %.2fx |" % (
        total, "" if args.plain else ", validated and tagged", sec_b, sec_f, sec_b / sec_f))
    cpu_b, cpu_f = _med(runs, b, "cpu"), _med(runs, f, "cpu")
    lines.append("| the same, CPU seconds of the daemon process (utime + stime) | %.1f | %.1f | %.2fx |" % (
        cpu_b, cpu_f, cpu_b / cpu_f))
    for key, label in (("rss_idle", "RSS idle, no VRPs (MB)"), ("rss_vrps", "RSS with the VRPs (MB)"),
                       ("rss_loaded", "RSS loaded (MB)")):
        lines.append("| %s | %.0f | %.0f | |" % (label, _med(runs, b, key), _med(runs, f, key)))
    vb = statistics.median([r[b]["rss_vrps"] - r[b]["rss_idle"] for r in runs])
    vf = statistics.median([r[f]["rss_vrps"] - r[f]["rss_idle"] for r in runs])
    lines.append("| VRP set: RSS growth across the RTR sync (MB) | %.1f | %.1f | |" % (vb, vf))
    alone = [r[f]["client_alone"] for r in runs if r[f].get("client_alone")]
    if alone:
        lines.append("| VRP set: RtrClient alone in a process, RSS growth at End of Data / after gc+malloc_trim "
                     "(MB) | | %.1f / %.1f | |" % (statistics.median(a[0] for a in alone),
                                                   statistics.median(a[1] for a in alone)))
    tb = [r[b]["tables_vrps"] - r[b]["tables_idle"] for r in runs
          if r[b].get("tables_vrps") is not None and r[b].get("tables_idle") is not None]
    if tb:
        lines.append("| VRP set: BIRD `show memory` routing tables growth (MB) | %.1f | | |" % statistics.median(tb))
    lines.append("| RTR sync of %d VRPs from stayrtr start (s; fastbgp's checked after BIRD's) | %.1f | <= %.1f | |"
                 % (len(vrps), _med(runs, b, "rtr_sync"), _med(runs, f, "rtr_sync")))
    for s in STATES:
        lines.append("| %s routes | %d | %d | in-process: %d |" % (s, runs[-1][b]["counts"][s], runs[-1][f]["counts"][s],
                                                                    expected[s]))
    tagged = runs[-1][f].get("tagged")
    if tagged:
        lines.append("| fastbgp paths tagged at import and shown with that state | | %s | |" % ", ".join(
            "%s %d" % kv for kv in tagged.items()))
    if runs[-1].get("revalidation"):
        lines += revalidation_table(runs, bird_v)
    lines += [
        "",
        "Counts equal in every run (BIRD %sby roa_check at query time, fastbgp by GET /v1/rpki, "
        "and this process's compiled VrpTable: build %.2f s, validate_packed over all routes %.2f s CPU). "
        "fastbgp's /v1/rpki bulk recount of %d best paths took %.1f s. RSS: /proc/PID/status VmRSS; "
        "the daemons are fed one after the other (BIRD first), the other one idle." % (
            "" if args.plain else "by its tags and ", build_cpu, validate_cpu, total, _med(runs, f, "count_seconds")),
        "",
    ]
    return "\n".join(lines)


def revalidation_table(runs, bird_v):
    """The --revalidate steps: medians over the runs, per step."""
    med = statistics.median
    lines = [
        "",
        "Re-validation of the loaded routes (`--revalidate`, class Revalidation: stayrtr's file rewritten; "
        "BIRD `import table on`, `birdc reload in` once its RTR serial moved, done at its last CPU burst "
        "before its tag counts were the new ones; fastbgp on its own, done when its per-path state counts "
        "were the new ones). Seconds from the rewrite until every path shows its new state (stayrtr re-reads "
        "its file every %d s); both daemons work at once; BIRD's CPU includes the scans of its tag checks:"
        % Revalidation.REFRESH,
        "",
        "| step | routes whose state changes | BIRD %s: ROA tables / all paths (s) | BIRD CPU s | fastbgp: VRP "
        "tables / all paths (s) | fastbgp CPU s | fastbgp's log: paths re-validated, in s | ratio BIRD/fastbgp "
        "(all paths; after the tables changed) |" % bird_v,
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for i, step in enumerate(runs[-1]["revalidation"]):
        rs = [r["revalidation"][i] for r in runs]
        moved = sum(abs(step["expected"][s] - step["before"][s]) for s in STATES) // 2
        b, f = med(x["bird"] for x in rs), med(x["fastbgp"] for x in rs)
        b_after = med(x["bird"] - x["bird_roa"] for x in rs)
        f_after = med(x["fastbgp"] - x["fastbgp_vrps"] for x in rs)
        lines.append("| %s | >= %d | %.2f / %.2f | %.2f | %.2f / %.2f | %.2f | %d in %.2f | %.2fx; %.2fx |" % (
            step["name"], moved, med(x["bird_roa"] for x in rs), b, med(x["bird_cpu"] for x in rs),
            med(x["fastbgp_vrps"] for x in rs), f, med(x["fastbgp_cpu"] for x in rs),
            med(x["fastbgp_paths"] for x in rs), med(x["fastbgp_revalidate_s"] for x in rs), b / f,
            b_after / f_after if f_after > 0 else float("nan")))
    lines.append("")
    lines.append("States after each step, both daemons equal to this process's VrpTable: %s." % "; ".join(
        "%s: %s" % (st["name"], ", ".join("%s %d" % (k, st["expected"][k]) for k in STATES))
        for st in runs[-1]["revalidation"]))
    return lines


if __name__ == "__main__":
    sys.exit(main())
