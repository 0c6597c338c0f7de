"""fastbgp's RTR client against the real stayrtr (Debian), in the namespace
lab: stayrtr serves a JSON file from host "a" (192.0.2.1), the client runs
in host "b" and prints every change it reports as a JSON line.

One scenario walks the issue's list: start (VRPs of both families and
ASPA over version 2), serial update after the file changes (Serial Notify,
then an incremental answer), cache down and back (a new session: the client
reloads and reports only the difference), Cache Reset (stayrtr keeps 3
serials of history: after 5 unseen changes its answer to our Serial Query is
a Cache Reset), and expiry (short timers: the data outlives the cache, then
is withdrawn).  A second test negotiates down to version 0; a third gives
BIRD 2 (``protocol rpki`` from the same stayrtr) and our table the same VRPs
and 700 routes and compares the RFC 6811 state of every route.

The first two also run over IPv6 (issue 12, ids ``[ipv6]``): stayrtr bound
to host a's IPv6 address, our client connecting there (its log names the
cache ``[address]:port``).  The third stays on IPv4: only BIRD speaks RTR
in it (our side loads the same file), and BIRD's RTR transport is not
what is under test.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from fastbgp.testing import lab as L

pytestmark = [pytest.mark.interop, pytest.mark.slow, pytest.mark.timeout(150)]

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PORT = 8282

RUNNER = r"""
import asyncio, json, logging, sys
from fastbgp.rpki import client as C

def hexed(vrps):
    return sorted([v[0], v[1].hex(), v[2], v[3], v[4]] for v in vrps)

class Printer(C.RtrObserver):
    def emit(self, **kw):
        kw["at"] = __import__("time").monotonic()
        sys.stdout.write(json.dumps(kw) + "\n")
        sys.stdout.flush()
    def vrps_changed(self, added, removed):
        self.emit(t="vrps", added=hexed(added), removed=hexed(removed), total=len(client.vrps))
    def aspas_changed(self, changed):
        self.emit(t="aspas", changed={str(k): v for k, v in changed.items()})
    def cache_changed(self, st):
        self.emit(t="cache", state=st.state, version=st.version, serial=st.serial, session=st.session_id)

async def main():
    global client
    args = json.loads(sys.argv[1])
    client = C.RtrClient([C.CacheSpec(**c) for c in args["caches"]], Printer(), version=args["version"])
    await client.run()

logging.basicConfig(level=logging.DEBUG, stream=sys.stderr, format="%(levelname)s %(message)s")
asyncio.run(main())
"""


def require_stayrtr():
    if not L.is_root():
        pytest.skip("interop lab needs root (network namespaces)")
    missing = L.missing_binaries("ip", "stayrtr")
    if missing:
        pytest.skip("not installed: %s (run .ci/install-peers.sh)" % ", ".join(missing))


def vrp(prefix, maxlen, asn):
    return {"prefix": prefix, "maxLength": maxlen, "asn": "AS%d" % asn}


def hexed(prefix, maxlen, asn):
    """The runner's spelling of a VRP."""
    import ipaddress
    net = ipaddress.ip_network(prefix)
    return [1 if net.version == 4 else 2, net.network_address.packed.hex(), net.prefixlen, maxlen, asn]


def hostport(addr, port=PORT):
    """``addr:port``, an IPv6 address in brackets (as stayrtr's -bind and
    our client's log write it)."""
    return ("[%s]:%d" if ":" in addr else "%s:%d") % (addr, port)


class Stayrtr:
    def __init__(self, host, path, transport="ipv4"):
        self.host = host
        self.path = path
        self.address = host.addr(transport)
        self.proc = None
        self.log = os.path.join(host.workdir, "stayrtr.log")

    def write(self, roas, aspas=None):
        doc = {"metadata": {"buildtime": "2024-01-01T00:00:00Z"}, "roas": roas}
        if aspas:
            doc["provider_authorizations"] = {"ipv4": [{"customer_asid": c, "providers": p}
                                                       for c, p in aspas.items()], "ipv6": []}
        with open(self.path + ".tmp", "w") as f:
            json.dump(doc, f)
        os.rename(self.path + ".tmp", self.path)  # stayrtr never reads half a file

    def start(self, notifications=True, protocol=2):
        argv = ["stayrtr", "-cache", self.path, "-checktime=false", "-bind", hostport(self.address),
                "-refresh", "1", "-metrics.addr", hostport(self.address, 9847), "-protocol", str(protocol),
                "-notifications=%s" % ("true" if notifications else "false")]
        with open(self.log, "ab") as out:
            self.proc = self.host.popen(argv, stdout=out, stderr=subprocess.STDOUT)
        L.wait_for(lambda: self.host.run(["ss", "-ltn"]).stdout.count(":%d " % PORT), 10, what="stayrtr listening",
                   on_timeout=self.tail)
        return self

    def stop(self):
        os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(timeout=10)

    def tail(self):
        with open(self.log, errors="replace") as f:
            return "--- stayrtr ---\n" + "\n".join(f.read().splitlines()[-30:])


class Client:
    def __init__(self, host, cache_addr, version=2, **timers):
        self.events_path = os.path.join(host.workdir, "events.jsonl")
        self.log_path = os.path.join(host.workdir, "client.log")
        spec = {"caches": [dict(address=cache_addr, port=PORT, **timers)], "version": version}
        with open(self.events_path, "wb") as out, open(self.log_path, "wb") as err:
            self.proc = host.popen([sys.executable, "-c", RUNNER, json.dumps(spec)], stdout=out, stderr=err,
                                   cwd=ROOT)

    def events(self, kind=None):
        with open(self.events_path) as f:
            out = [json.loads(line) for line in f if line.endswith("\n")]
        return [e for e in out if kind is None or e["t"] == kind]

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def wait(self, pred, timeout, what):
        def check():
            if self.proc.poll() is not None:
                raise L.DaemonExited("client exited:\n" + self.log()[-3000:])
            return pred()
        return L.wait_for(check, timeout, interval=0.1, what=what,
                          on_timeout=lambda: "--- client ---\n" + self.log()[-3000:])

    def total(self):
        ev = self.events("vrps")
        return ev[-1]["total"] if ev else 0


ROAS = [vrp("192.0.2.0/24", 24, 64496), vrp("198.51.100.0/22", 24, 64497), vrp("2001:db8::/32", 48, 64498)]
ASPAS = {64496: [64510, 64511]}


@pytest.mark.parametrize("transport", L.TRANSPORTS)
def test_rtr_against_stayrtr(lab, transport):
    require_stayrtr()
    a, b = lab.add_host("a"), lab.add_host("b")
    cache = Stayrtr(a, os.path.join(a.workdir, "vrps.json"), transport)
    cache.write(ROAS, ASPAS)
    cache.start()
    client = Client(b, cache.address, refresh=8, retry=1, expire=5)

    # start: every VRP and the ASPA record, over version 2
    first = client.wait(lambda: client.events("vrps"), 15, "the first VRPs")[0]
    assert first["added"] == sorted(hexed(r["prefix"], r["maxLength"], int(r["asn"][2:])) for r in ROAS)
    assert first["removed"] == []
    assert client.wait(lambda: client.events("aspas"), 5, "ASPA")[0]["changed"] == {"64496": [64510, 64511]}
    up = [e for e in client.events("cache") if e["state"] == "up"]
    assert up[0]["version"] == 2
    session = up[0]["session"]

    # serial update: stayrtr re-reads the file, notifies, the client asks for the delta
    roas = ROAS[1:] + [vrp("203.0.113.0/24", 24, 64499)]
    cache.write(roas, ASPAS)
    ev = client.wait(lambda: [e for e in client.events("vrps")[1:] if e["added"] or e["removed"]], 10,
                     "the serial update")[0]
    assert ev["added"] == [hexed("203.0.113.0/24", 24, 64499)]
    assert ev["removed"] == [hexed("192.0.2.0/24", 24, 64496)]
    assert "received SerialNotify" in client.log() and "received CacheResponse" in client.log()
    assert client.total() == 3

    # cache down and back, without notifications this time: a new session; the
    # client reloads everything and reports only what changed
    cache.stop()
    client.wait(lambda: "RTR session to %s lost" % hostport(cache.address) in client.log(), 10, "the loss warning")
    assert "WARNING RTR session to" in client.log()
    roas = roas + [vrp("192.0.2.128/25", 25, 64500)]
    cache.write(roas, ASPAS)
    n_before = len(client.events("vrps"))
    cache.start(notifications=False)
    ev = client.wait(lambda: client.events("vrps")[n_before:], 15, "data from the restarted cache")[0]
    assert ev["added"] == [hexed("192.0.2.128/25", 25, 64500)] and ev["removed"] == []
    new_session = [e for e in client.events("cache") if e["state"] == "up"][-1]["session"]
    assert new_session != session

    # Cache Reset: five changes the client is not told about; stayrtr keeps
    # three serials, so the next Serial Query (refresh, 8 s) gets a Cache Reset
    extra = []
    for i in range(5):
        extra.append(vrp("198.51.100.%d/32" % (i * 8), 32, 64501))
        cache.write(roas + extra, ASPAS)
        time.sleep(1.2)
    client.wait(lambda: client.total() == 9, 15, "the answer after Cache Reset")
    assert "received CacheReset" in client.log(), client.log()[-2000:]

    # expire: the cache goes away; the data stays until 5 s after the last
    # End of Data, then everything is withdrawn
    last_up = [e for e in client.events("cache") if e["state"] == "up"][-1]["at"]
    cache.stop()
    time.sleep(1)
    # CLOCK_MONOTONIC is the same in every namespace: the runner's "at" compares
    if time.monotonic() - last_up < 4:
        assert client.total() == 9  # kept: the cache is gone but expire has not passed
    ev = client.wait(lambda: [e for e in client.events("vrps") if e["total"] == 0], 20, "expiry")[0]
    assert len(ev["removed"]) == 9 and ev["at"] - last_up >= 5 - 0.5
    assert "WARNING RPKI data from" in client.log() and "expired" in client.log()
    client.proc.terminate()
    client.proc.wait(timeout=10)


@pytest.mark.parametrize("transport", L.TRANSPORTS)
def test_version_negotiated_down_to_0(lab, transport):
    require_stayrtr()
    a, b = lab.add_host("a"), lab.add_host("b")
    cache = Stayrtr(a, os.path.join(a.workdir, "vrps.json"), transport)
    cache.write(ROAS)
    cache.start(protocol=0)
    client = Client(b, cache.address, retry=1)
    client.wait(lambda: client.total() == 3, 15, "VRPs over version 0")
    up = [e for e in client.events("cache") if e["state"] == "up"]
    assert up[-1]["version"] == 0
    client.proc.terminate()
    client.proc.wait(timeout=10)


def _random_prefixes(rnd, nets, lengths, count):
    import ipaddress
    out = set()
    while len(out) < count:
        net = ipaddress.ip_network(rnd.choice(nets))
        plen = rnd.randint(*lengths[net.version])
        width = net.max_prefixlen
        value = int(net.network_address) | rnd.getrandbits(width - net.prefixlen)
        if plen < net.prefixlen:
            value = int(net.network_address)
        value &= ((1 << plen) - 1) << (width - plen)
        out.add(str(ipaddress.ip_network((value, plen))))
    return sorted(out)


def _bird_prefixes(bird, table, condition):
    out = bird.birdc("show", "route", "table", table, "where", condition).stdout
    return {line.split()[0] for line in out.splitlines() if line[:1].isalnum() and "/" in line.split()[0]}


def test_validation_matches_bird(lab):
    """The same VRPs, served by stayrtr to BIRD 2 (``protocol rpki``) and
    read from the same file into our table: every route gets the state
    BIRD's roa_check gives it (RFC 6811), route by route."""
    import ipaddress
    import random

    from fastbgp.rpki.aspa import AspaTable
    from fastbgp.rpki.files import load_into
    from fastbgp.rpki.vrp import INVALID, NOT_FOUND, VALID, VrpTable

    require_stayrtr()
    if L.missing_binaries("bird", "birdc"):
        pytest.skip("bird2 not installed")
    rnd = random.Random(5)
    nets = ["192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32"]
    asns = list(range(64496, 64502))
    routes = [(p, rnd.choice(asns)) for p in _random_prefixes(rnd, nets, {4: (24, 32), 6: (32, 64)}, 700)]
    roas = []
    for p in _random_prefixes(rnd, nets, {4: (25, 30), 6: (36, 52)}, 250):
        net = ipaddress.ip_network(p)
        roas.append(vrp(p, rnd.randint(net.prefixlen, net.max_prefixlen if rnd.random() < 0.3 else
                                       min(net.max_prefixlen, net.prefixlen + 4)), rnd.choice(asns + [0])))
    a, b = lab.add_host("a"), lab.add_host("b")
    cache = Stayrtr(a, os.path.join(a.workdir, "vrps.json"))
    cache.write(roas)
    cache.start()
    rpki = textwrap.dedent("""\
        roa4 table r4;
        roa6 table r6;
        protocol rpki rtr1 {
          roa4 { table r4; };
          roa6 { table r6; };
          remote %s port %d;
          retry keep 1;
        }
        """ % (a.ipv4, PORT))
    bird = L.Bird(b, 64511, routes=[L.Route(p, as_path=(asn,)) for p, asn in routes], extra_config=rpki).start()
    n4 = sum(":" not in r["prefix"] for r in roas)

    def loaded():
        c4 = bird.birdc("show", "route", "table", "r4", "count").stdout
        c6 = bird.birdc("show", "route", "table", "r6", "count").stdout
        return ("%d of %d routes" % (n4, n4) in c4) and ("%d of %d routes" % (len(roas) - n4, len(roas) - n4) in c6)

    L.wait_for(loaded, 30, what="BIRD to load the VRPs over RTR", on_timeout=bird.log_tail)

    vrps = VrpTable()
    load_into(cache.path, vrps, AspaTable())
    ours = {VALID: set(), INVALID: set(), NOT_FOUND: set()}
    for p, asn in routes:
        net = ipaddress.ip_network(p)
        ours[vrps.validate(1 if net.version == 4 else 2, net.network_address.packed, net.prefixlen, asn)].add(p)
    names = {VALID: "ROA_VALID", INVALID: "ROA_INVALID", NOT_FOUND: "ROA_UNKNOWN"}
    for state, name in names.items():
        theirs = (_bird_prefixes(bird, "master4", "roa_check(r4, net, bgp_path.last) = %s" % name)
                  | _bird_prefixes(bird, "master6", "roa_check(r6, net, bgp_path.last) = %s" % name))
        assert theirs == ours[state], (name, sorted(theirs ^ ours[state])[:10])
    assert all(len(s) > 30 for s in ours.values()), {k: len(v) for k, v in ours.items()}
    print("states (ours = BIRD):", {names[k]: len(v) for k, v in ours.items()})
