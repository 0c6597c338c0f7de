"""BMP to a real collector: the fastbgp daemon reports to pmacct's ``pmbmpd``
(which logs every BMP message it decodes as JSON), with tshark's BMP
dissector as a second opinion on a capture of the same connection::

    BIRD AS65001 (ns "bird") --eBGP--> fastbgp AS65000 (ns "fb") --BMP--> pmbmpd (ns "pm")

pmbmpd's view must match ours exactly: the peer up, the pre-policy routes
(what BIRD sent), the post-policy routes (our Adj-RIB-In after import
policy), the Loc-RIB (RFC 9069), the statistics, then the peer down after
BIRD stops.  Over IPv4 and over IPv6 transport (the BGP session and the BMP
connection; the IPv4 routes then carry RFC 8950 IPv6 next hops, and the
BMP per-peer headers name the peer's IPv6 address).  Needs root, bird,
pmbmpd and tshark; marked interop and slow.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time

import pytest

from fastbgp.testing import lab as L
from fastbgp.testing.daemonlab import ipv4_unicast_toml
from .conftest import require

pytestmark = [pytest.mark.interop, pytest.mark.slow, pytest.mark.timeout(180)]

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUNNER = textwrap.dedent("""
    import sys
    import uvloop
    from fastbgp.daemon.process import run_daemon
    uvloop.run(run_daemon(sys.argv[1], metrics=False, log_level="debug"))
""")
BMP_PORT = 11019
ACCEPTED = ["198.51.100.%d/28" % (16 * i) for i in range(16)]
REJECTED = ["203.0.113.%d/28" % (16 * i) for i in range(8)]


def _wait(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for %s" % what)
        time.sleep(0.2)


class Pmbmpd:
    """pmbmpd in a lab host, logging every decoded BMP message as JSON lines."""

    def __init__(self, host, transport="ipv4"):
        self.host = host
        self.log = os.path.join(host.workdir, "bmp.json")
        self.conf = os.path.join(host.workdir, "pmbmpd.conf")
        with open(self.conf, "w") as f:
            f.write("bmp_daemon_ip: %s\nbmp_daemon_port: %d\nbmp_daemon_msglog_file: %s\n"
                    "bmp_daemon_msglog_output: json\nlogfile: %s\n"
                    % (host.addr(transport), BMP_PORT, self.log, os.path.join(host.workdir, "pmbmpd.log")))
        self.proc = host.popen(["pmbmpd", "-f", self.conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def messages(self):
        try:
            with open(self.log) as f:
                lines = f.readlines()
        except OSError:
            return []
        out = []
        for line in lines:
            try:
                out.append(json.loads(line))
            except ValueError:
                pass  # a line being written
        return out

    def of(self, mtype):
        return [m for m in self.messages() if m.get("bmp_msg_type") == mtype]

    def routes(self, rib, peer_ip=None):
        """{prefix: message} after replaying pmbmpd's route monitoring log
        of one RIB: "pre" / "post" (Adj-RIB-In, RFC 7854 §4.2 L flag, pmbmpd's
        is_post) or "loc" (RFC 9069, pmbmpd's is_loc)."""
        table = {}
        for m in self.of("route_monitor"):
            kind = "loc" if m.get("is_loc") else "post" if m.get("is_post") else "pre"
            if kind != rib or (peer_ip and m.get("peer_ip") != peer_ip):
                continue
            if m.get("log_type") == "withdraw":
                table.pop(m["ip_prefix"], None)
            else:
                table[m["ip_prefix"]] = m
        return table


@pytest.mark.parametrize("transport", L.TRANSPORTS)
def test_bmp_to_pmbmpd_and_tshark(transport):
    require(L.Bird)
    for tool in ("pmbmpd", "tshark"):
        if shutil.which(tool) is None:
            pytest.skip("%s is not installed (.ci/install-peers.sh)" % tool)
    with L.Lab() as lab:
        f = lab.add_host("fb")
        b = lab.add_host("bird")
        pm = lab.add_host("pm")
        me, peer = f.addr(transport), b.addr(transport)
        collector = Pmbmpd(pm, transport)
        cap = os.path.join(pm.workdir, "bmp.pcap")
        tshark_err = os.path.join(pm.workdir, "tshark.err")
        with open(tshark_err, "wb") as err:
            tshark = pm.popen(["tshark", "-i", "eth0", "-w", cap, "-f", "tcp port %d" % BMP_PORT],
                              stdout=subprocess.DEVNULL, stderr=err)

        def capturing():
            # tshark says so on stderr once its capture runs; a fixed sleep
            # was not enough on a loaded machine (the capture began after the
            # BMP Initiation and Peer Up had gone by).
            with open(tshark_err, errors="replace") as fh:
                return "Capture started" in fh.read() or tshark.poll() is not None

        _wait(capturing, 30, "tshark capturing")
        assert tshark.poll() is None, open(tshark_err, errors="replace").read()
        sock = os.path.join(f.workdir, "api.sock")
        conf = os.path.join(f.workdir, "fastbgp.toml")
        with open(conf, "w") as fh:
            fh.write(textwrap.dedent("""\
                [global]
                asn = 65000
                router-id = "{rid}"
                listen = ["{fb}"]
                [global.api]
                socket = "{sock}"
                [[bmp]]
                address = "{pm}"
                port = {port}
                policy = "both"
                loc-rib = true
                stats-interval = 2
                [[defined-sets.prefix-sets]]
                name = "rejected"
                prefixes = ["203.0.113.0/24 le 32"]
                [[policies]]
                name = "in"
                [[policies.statements]]
                conditions = {{ prefix-set = "rejected" }}
                actions = {{ result = "reject" }}
                [[policies.statements]]
                actions = {{ set-local-pref = 200, result = "accept" }}
                [[neighbors]]
                address = "{bird}"
                peer-as = 65001
                import-policy = ["in"]
                default-export = "accept"
                timers = {{ connect-retry = 2, idle-hold = 1 }}
                """).format(rid=f.ipv4, fb=me, sock=sock, pm=pm.addr(transport), port=BMP_PORT, bird=peer)
                     + "".join(line + "\n" for line in ipv4_unicast_toml(me)))
        logpath = os.path.join(f.workdir, "fastbgp.log")
        log = open(logpath, "ab")
        _wait(lambda: os.path.exists(collector.log) or collector.proc.poll() is None, 10, "pmbmpd")
        time.sleep(1.0)  # pmbmpd listening
        proc = f.popen([sys.executable, "-c", RUNNER, conf], stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        try:
            bird = L.Bird(b, 65001, neighbors=[L.ipv4_neighbor(me, 65000)],
                          routes=[L.Route(p, as_path=(65100,)) for p in ACCEPTED + REJECTED]).start()
            bird.wait_established(me)
            _wait(lambda: len(collector.routes("loc")) == len(ACCEPTED), 30, "Loc-RIB at pmbmpd")
            _wait(lambda: len(collector.routes("post")) == len(ACCEPTED), 30, "post-policy")
            _wait(lambda: len(collector.routes("pre")) == len(ACCEPTED + REJECTED), 30,
                  "pre-policy")
            _wait(lambda: [m for m in collector.of("stats") if m.get("peer_ip") == peer], 10, "statistics")
            # Our RIB, through our API, against pmbmpd's.
            env = dict(os.environ, FASTBGP_API_SOCKET=sock)

            def cli(*words):
                res = subprocess.run([sys.executable, "-m", "fastbgp", "-j", *words], capture_output=True,
                                     text=True, env=env, cwd=ROOT, timeout=30)
                assert res.returncode == 0, res.stderr
                return json.loads(res.stdout)

            ours_loc = {r["prefix"] for r in cli("global", "rib") if r.get("best")}
            ours_post = {r["prefix"] for r in cli("neighbor", peer, "adj-in")}
            assert ours_loc == set(ACCEPTED) and ours_post == set(ACCEPTED)
            assert set(collector.routes("loc")) == ours_loc
            assert set(collector.routes("post", peer)) == ours_post
            assert set(collector.routes("pre", peer)) == set(ACCEPTED + REJECTED)
            post = collector.routes("post", peer)[ACCEPTED[0]]
            assert post.get("local_pref") == 200 and post.get("as_path") == "65001 65100", post
            pre = collector.routes("pre", peer)[ACCEPTED[0]]
            assert pre.get("local_pref") in (None, 0) and pre.get("as_path") == "65001 65100", pre
            # BIRD's own next hop in the Adj-RIB-In views (pmbmpd 1.7.7 logs
            # an RFC 8950 IPv6 one of an IPv4 route as "": tshark checks
            # those below).
            if transport == "ipv4":
                assert pre.get("bgp_nexthop") == peer and post.get("bgp_nexthop") == peer, (pre, post)
            ups = collector.of("peer_up")
            assert any(m.get("peer_ip") == peer and m.get("peer_asn") == 65001 for m in ups), ups
            init = collector.of("init")
            assert init and "fastbgp" in json.dumps(init[0]), init
            stats = [m for m in collector.of("stats") if m.get("peer_ip") == peer]
            by_type = {m.get("counter_type"): m.get("counter_value") for m in stats}
            assert by_type.get(0) == len(REJECTED) and by_type.get(7) == len(ACCEPTED), stats
            assert by_type.get(1) == 0, stats  # nothing was sent twice
            # BIRD stops: Peer Down with its Cease, the Loc-RIB emptied.
            bird.stop()
            _wait(lambda: [m for m in collector.of("peer_down") if m.get("peer_ip") == peer], 20, "peer down")
            down = [m for m in collector.of("peer_down") if m.get("peer_ip") == peer][0]
            assert down.get("reason_type") in (1, 3, 4), down
            _wait(lambda: not collector.routes("loc"), 20, "Loc-RIB emptied")
            assert proc.poll() is None
        except Exception:
            with open(logpath, errors="replace") as fh:
                print("".join(fh.readlines()[-60:]))
            print("\n".join(json.dumps(m) for m in collector.messages()[:30]))
            raise
        finally:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(10)
            time.sleep(1.0)
            tshark.terminate()
            tshark.wait(10)
        # tshark's BMP dissector on the same connection: every message
        # decoded, nothing malformed (the Loc-RIB Peer Up's VRF/Table Name
        # TLV excepted: this tshark does not know Peer Up TLVs, see
        # tests/test_bmp.py).
        res = subprocess.run(["tshark", "-r", cap, "-d", "tcp.port==%d,bmp" % BMP_PORT, "-T", "fields",
                              "-e", "bmp.type", "-e", "bmp.peer.type", "-e", "_ws.malformed",
                              "-e", "bgp.update.path_attribute.next_hop",
                              "-e", "bgp.update.path_attribute.mp_reach_nlri.next_hop.ipv6",
                              "-E", "occurrence=a", "-E", "aggregator=,"],
                             capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stderr
        types = []
        next_hops = set()
        for line in res.stdout.splitlines():
            cols = line.split("\t")
            if not cols[0]:
                continue
            ts = [int(x) for x in cols[0].split(",")]
            types += ts
            # Every route in the BMP stream (pre, post, Loc-RIB) is BIRD's
            # with its next hop: IPv4 in NEXT_HOP, or over IPv6 the RFC 8950
            # one in MP_REACH_NLRI.
            next_hops |= {a for c in cols[3:5] for a in c.split(",") if a}
            if len(cols) > 2 and cols[2]:
                # Only the Loc-RIB Peer Up (type 3, peer type 3) may be flagged.
                assert 3 in ts and "3" in cols[1].split(","), line
        assert types[0] == 4 and types.count(3) >= 2 and 0 in types and 1 in types and 2 in types, types[:40]
        assert types[-1] == 5, types[-10:]
        assert next_hops == {peer}, next_hops
