"""Peers that misbehave by timing, against the real ``fastbgp daemon``
process in the namespace lab (issue 10, defect 1 and "Keep it that way").

One daemon per module, with a feeder (a raw peer announcing a 100k table,
with churn when asked) and a WITNESS (real BIRD, 1,000 routes each way).
Each test brings in one kind of bad peer: a slow reader, a peer that never
reads, a slow member of an update group, BIRD SIGSTOPped and GoBGP
SIGKILLed mid-table, 300 session flaps.  Every one of them also comes over
IPv6 transport (issue 12: the ``transport`` parameter, ids ``[ipv6]``), from
a host of its own and watched by a second BIRD witness whose session with
the daemon runs over IPv6 too (IPv4 routes with RFC 8950 next hops both
ways).  ``transport`` is a module-scoped parameter, so pytest runs every
IPv4 case first and the IPv6 ones after them: the IPv6 witness, started for
the first IPv6 case, sends its routes on to the IPv4 one.  Each asserts that the witness
session never dropped, kept all its routes both ways, and that our
KEEPALIVEs kept time (one sent each interval, by /metrics; BIRD's hold
timer never ran down by two intervals), and the daemon's own figures (log WARNINGs with the
reason, /metrics counters, RSS from /proc/PID/status, open fds).

Needs root and bird, gobgpd (fastbgp/testing/lab.py); marked interop+slow.
"""

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

from fastbgp.testing import lab as L
from fastbgp.testing.daemonlab import ROOT, LabDaemon, ipv4_unicast_toml

from .conftest import require

pytestmark = [pytest.mark.interop, pytest.mark.slow]

ASN = 65000
TABLE = 100_000  # feeder prefixes (/27s of 10.0.0.0/8)
GROUPS = 2_000  # feeder attribute sets
WITNESS_ROUTES = 1_000
VICTIM_ROUTES = 20
# max-queued-bytes of the slow peers: above the table dump (about 0.6 MB),
# so churn arriving faster than they read is what fills it.
SMALL_CAP = 1024 * 1024
WITNESS_HOLD = 9
METRICS_PORT = 9179
MiB = 1024 * 1024
# The daemon's RSS under churn sits at one of two levels about 9 MB apart
# (56.9 or 66.1 MB here, for many seconds at a time, whether or not a bad
# peer was ever dropped: glibc returns the heap's top only when nothing
# live sits above it).  RSS compared across a test allows that swing; a
# leak is looked for over several drops, where it adds up past it.
RSS_SWING = 12 * MiB
# The bad peers' hosts (each with a twin "<name>6" whose session runs
# over IPv6) and their ASNs.
PEER_HOSTS = ("slow", "stall", "g1", "g2", "g3", "gs", "vstop", "vkill", "flap")
ASNS = {"slow": 65010, "stall": 65011, "g1": 65020, "g2": 65021, "g3": 65022, "gs": 65023,
        "vstop": 65030, "vkill": 65031, "flap": 65040}
# Hosts whose sessions with the daemon run over IPv6 (the rest: IPv4).
IPV6_HOSTS = ("wit6",) + tuple(n + "6" for n in PEER_HOSTS)
# Every IPv4 case first, then every IPv6 one (see the module docstring).
over_transports = pytest.mark.parametrize("transport", L.TRANSPORTS, scope="module")


def on(name, transport) -> str:
    """The host of bad peer ``name`` for ``transport``."""
    return name if transport == "ipv4" else name + "6"


def asn_of(host) -> int:
    """The ASN of a bad peer's host (its IPv6 twin's: the same)."""
    return ASNS[host] if host in ASNS else ASNS[host[:-1]]


# -------------------------------------------------------------------- helpers


def proc_status(pid: int) -> dict:
    """VmRSS (octets) and open fds of a process, from /proc."""
    with open("/proc/%d/status" % pid) as f:
        rss = int(re.search(r"VmRSS:\s+(\d+) kB", f.read()).group(1)) * 1024
    return {"rss": rss, "fds": len(os.listdir("/proc/%d/fd" % pid))}


class RssSampler:
    """Peak RSS of a process, sampled every 50 ms in a thread."""

    def __init__(self, pid):
        self.pid = pid
        self.peak = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, proc_status(self.pid)["rss"])
            except OSError:
                return
            self._stop.wait(0.05)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join(5)


class Witness:
    """BIRD on the witness host: samples its session with the daemon every
    0.3 s in a thread (state, since, remaining hold time, routes)."""

    def __init__(self, bird, peer_ip, keepalives_sent, table=TABLE):
        self.bird = bird
        self.table = table  # routes it gets from the daemon when no victim is up
        self.peer_ip = peer_ip
        self.keepalives_sent = keepalives_sent  # () -> the daemon's count, from /metrics
        self.samples = []
        self._stop = threading.Event()
        self._t = None

    def info(self) -> dict:
        text = self.bird.protocol_info(self.peer_ip)
        m = re.search(r"^n\d+\s+BGP\s+\S+\s+(\w+)\s+(\S+ \S+)\s+(\w+)", text, re.M)
        hold = re.search(r"Hold timer:\s+([\d.]+)/(\d+)", text)
        routes = re.search(r"Routes:\s+(\d+) imported, (?:\d+ filtered, )?(\d+) exported", text)
        return {
            "up": bool(m) and m.group(1) == "up" and m.group(3) == "Established",
            "since": m.group(2) if m else None,
            "hold_left": float(hold.group(1)) if hold else None,
            "imported": int(routes.group(1)) if routes else 0,
            "exported": int(routes.group(2)) if routes else 0,
        }

    def _run(self):
        while not self._stop.is_set():
            try:
                self.samples.append(self.info())
            except Exception as exc:  # a sample lost is recorded, never hidden
                self.samples.append({"up": False, "error": repr(exc)})
            self._stop.wait(0.3)

    def __enter__(self):
        self.samples = []
        self.baseline = self.info()
        assert self.baseline["up"], self.baseline
        self.t0, self.sent0 = time.monotonic(), self.keepalives_sent()
        self._stop.clear()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join(10)

    def check(self, imported: int):
        """Never dropped, our keepalives on time, all routes both ways."""
        assert self.samples, "no witness samples"
        bad = [s for s in self.samples if not s["up"] or s["since"] != self.baseline["since"]]
        assert not bad, "witness session dropped: %r" % bad[:3]
        # Our keepalive interval is hold/3 (RFC 4271 §4.4).  We sent one
        # each interval (less the one in flight) ...
        interval = WITNESS_HOLD / 3
        sent = self.keepalives_sent() - self.sent0
        due = int((time.monotonic() - self.t0) / interval) - 1
        assert sent >= due, "%d KEEPALIVEs sent to the witness, %d due" % (sent, due)
        # ... and BIRD's hold timer, restarted by each, never ran down by
        # two intervals (BIRD, busy importing churn, may read a little late).
        low = min(s["hold_left"] for s in self.samples if s["hold_left"] is not None)
        assert low > WITNESS_HOLD - 2 * interval, "a keepalive came late: hold timer down to %.1fs" % low
        last = L.wait_for(lambda: (lambda i: i if i["imported"] == imported and i["exported"] == WITNESS_ROUTES
                                   else None)(self.info()), 30, what="witness routes %d/%d" % (imported, WITNESS_ROUTES))
        return low, last


class Bed:
    """The module's lab: daemon, feeder, witness and the hosts of the bad peers."""

    def __init__(self, lab):
        self.lab = lab
        self.fb = lab.add_host("fb")
        self.hosts = {n: lab.add_host(n, ipv6=None) for n in ("wit", "feed") + PEER_HOSTS}
        self.hosts.update({n: lab.add_host(n) for n in IPV6_HOSTS})
        self.peers = []
        self.fbd = LabDaemon(self.fb, "", cli=True)

    def transport(self, name) -> str:
        return "ipv6" if name in IPV6_HOSTS else "ipv4"

    def addr(self, name):
        return self.hosts[name].addr(self.transport(name))

    def config(self) -> str:
        fb = self.fb
        lines = ["[global]", "asn = %d" % ASN, 'router-id = "%s"' % fb.ipv4, 'listen = ["%s", "%s"]' % (fb.ipv4, fb.ipv6),
                 self.fbd.api_toml().rstrip("\n"),
                 "[global.metrics]", 'listen = "127.0.0.1:%d"' % METRICS_PORT,
                 "[global.log]", 'level = "info"']

        def nb(name, asn, *more, export="accept", passive=True, hold=9, idle_hold=1):
            return ["[[neighbors]]", 'address = "%s"' % self.addr(name), "peer-as = %d" % asn,
                    'default-import = "accept"', 'default-export = "%s"' % export,
                    "passive = %s" % ("true" if passive else "false"),
                    "timers = { hold-time = %d, connect-retry = 1, idle-hold = %d }" % (hold, idle_hold),
                    *ipv4_unicast_toml(self.addr(name)), *more]

        lines += nb("wit", 65001, passive=False, hold=WITNESS_HOLD)
        lines += nb("feed", 65002, export="reject")
        # The IPv6 witness (started by the wit6 fixture, it dials us).
        lines += nb("wit6", 65003, hold=WITNESS_HOLD)
        # Each bad peer over IPv4 and its twin over IPv6 (IPv4 unicast, RFC 8950).
        for t in L.TRANSPORTS:
            lines += nb(on("slow", t), ASNS["slow"], "max-queued-bytes = %d" % SMALL_CAP)
            # Default cap: the progress deadline (one hold time) ends it.
            lines += nb(on("stall", t), ASNS["stall"], hold=3)
            for g in ("g1", "g2", "g3"):
                lines += nb(on(g, t), ASNS[g])
            lines += nb(on("gs", t), ASNS["gs"], "max-queued-bytes = %d" % SMALL_CAP)
            # Passive: started late in the module, they dial us (a dialling
            # daemon would by then be deep in its damped IdleHoldTimer).
            lines += nb(on("vstop", t), ASNS["vstop"], hold=6)
            lines += nb(on("vkill", t), ASNS["vkill"], hold=6)
            lines += nb(on("flap", t), ASNS["flap"], "damp-peer-oscillations = false", export="reject",
                        idle_hold=0)
        return "\n".join(lines) + "\n"

    def start(self):
        self.logpath = self.fbd.logpath
        self.daemon = self.fbd.start(self.config()).proc
        wit = self.hosts["wit"]
        routes = [L.Route("172.16.%d.%d/32" % (i // 256, i % 256)) for i in range(WITNESS_ROUTES)]
        self.bird = L.Bird(wit, 65001, neighbors=[L.Neighbor(self.fb.ipv4, ASN, hold_time=WITNESS_HOLD)],
                           routes=routes).start()
        self.bird.wait_established(self.fb.ipv4, timeout=60)
        self.churn_flag = os.path.join(self.lab.tmpdir, "churn")
        self.feeder = self.peer("feed", "feed", 65002, "--prefixes", TABLE, "--groups", GROUPS, "--churn", 2000,
                                "--churn-flag", self.churn_flag)
        self.wait_event(self.feeder, "fed", 60)
        self.witness = Witness(self.bird, self.fb.ipv4, lambda: self.metric(
            "fastbgp_messages_sent_total", self.addr("wit"), type="keepalive"))
        L.wait_for(lambda: self.witness.info()["imported"] == TABLE, 60, what="witness has the feeder's table")
        # The first scrape builds the metrics server's own state (several
        # MB): done now so that RSS compared later is the peers' doing.
        assert "fastbgp_up 1.0" in self.metrics()
        # So do the first full-table dump to a peer and the first churn
        # (their slices, encodings and attribute sets size the allocator's
        # arenas, which Python keeps).
        self.churn(True)
        self.fast_round(("g1",))
        time.sleep(2)
        self.churn(False)
        return self

    def fast_round(self, names, slow=None, keep=False) -> tuple:
        """Fast readers ``names`` (and a slow reader ``slow``) connect
        together; returns ({name: eor event}, {name: process}) once each
        fast one has the full table; unless ``keep``, the fast ones leave
        again."""
        procs = {}
        if slow is not None:
            procs[slow] = self.peer(slow, "slow", asn_of(slow), "--rate", 12000, "--rcvbuf", 4096)
            self.wait_event(procs[slow], "established", 30)  # a member of the group before the fast ones join
        for n in names:
            procs[n] = self.peer(n, "fast", asn_of(n))
        eors = {n: self.wait_event(procs[n], "eor", 60) for n in names}
        if not keep:
            self.leave(procs, names)
        return eors, procs

    def leave(self, procs, names):
        for n in names:
            self.kill(procs[n])
        L.wait_for(lambda: not any(self.up(self.addr(n)) for n in names), 20, what="peers down")

    def close(self):
        self.fbd.stop()

    # -- peers and the daemon's side ------------------------------------------------------------

    def peer(self, name, mode, asn, *more):
        host = self.hosts[name]
        out = os.path.join(host.workdir, "%s-%d.jsonl" % (mode, len(self.peers)))
        t = self.transport(name)
        argv = [sys.executable, "-m", "fastbgp.testing.slowpeer", "--mode", mode, "--peer", self.fb.addr(t),
                "--local", host.addr(t), "--asn", asn, "--router-id", host.ipv4, *more]
        if t == "ipv6":
            argv.append("--extended-next-hop")
        with open(out, "wb") as f:
            proc = host.popen(argv, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT)
        proc.out = out
        self.peers.append(proc)
        return proc

    @staticmethod
    def events(proc, name=None) -> list:
        out = []
        with open(proc.out, errors="replace") as f:
            for line in f:
                if line.startswith("{"):
                    e = json.loads(line)
                    if name is None or e["event"] == name:
                        out.append(e)
        return out

    def wait_event(self, proc, name, timeout):
        def got():
            if proc.poll() is not None and not self.events(proc, name):
                raise AssertionError("peer exited: %s" % open(proc.out).read()[-2000:])
            e = self.events(proc, name)
            return e[0] if e else None
        return L.wait_for(got, timeout, interval=0.05, what="%s from %s" % (name, proc.out))

    def kill(self, proc):
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(5)

    def log(self) -> str:
        return self.fbd.log_text()

    def warnings(self, address, since=0) -> list:
        return [line for line in self.log()[since:].splitlines() if "level=warning" in line and address in line]

    def metrics(self) -> str:
        code = "import urllib.request,sys;sys.stdout.write(urllib.request.urlopen('http://127.0.0.1:%d/metrics')" \
               ".read().decode())" % METRICS_PORT
        return self.fb.run([sys.executable, "-c", code], check=True).stdout

    def metric(self, name, address, **labels) -> float:
        """Value of ``name`` for neighbour ``address`` (and ``labels``)."""
        want = dict(labels, neighbor=address)
        for m in re.finditer(r"^%s\{([^}]*)\} (\S+)$" % name, self.metrics(), re.M):
            got = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
            if all(got.get(k) == v for k, v in want.items()):
                return float(m.group(2))
        return None

    def up(self, address) -> bool:
        return self.metric("fastbgp_neighbor_up", address) == 1.0

    def status(self) -> dict:
        return proc_status(self.daemon.pid)

    def churn(self, on: bool):
        if on:
            open(self.churn_flag, "w").close()
        elif os.path.exists(self.churn_flag):
            os.unlink(self.churn_flag)


@pytest.fixture(scope="module")
def bed():
    require(L.Bird, L.GoBGP)
    with L.Lab() as lab:
        b = Bed(lab)
        try:
            yield b.start()
        except BaseException:
            print(b.log()[-8000:] if getattr(b, "logpath", None) else "")
            raise
        finally:
            b.close()
    leftovers = [ns for ns in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
                 if ns.startswith(lab.prefix)]
    assert not leftovers, leftovers


def dropped_out_of_resources(bed, name, mark, what, timeout):
    """Wait for the daemon's WARNING that it ended ``name``'s session with
    Cease / Out of Resources; returns the line."""
    addr = bed.addr(name)

    def line():
        for w in bed.warnings(addr, mark):
            if "NOTIFICATION sent 6/8" in w:  # Cease / Out of Resources
                return w
        return None
    w = L.wait_for(line, timeout, interval=0.1, what="Out of Resources WARNING for %s" % addr,
                   on_timeout=lambda: bed.log()[mark:][-4000:])
    assert what in w, w
    return w


# ---------------------------------------------------------------------- tests


@pytest.fixture(scope="module")
def wit6(bed):
    """A second BIRD witness whose session with the daemon runs over IPv6
    (IPv4 unicast with RFC 8950 next hops), holding 1,000 routes of its own;
    it gets the feeder's table and the first witness's routes."""
    ours = bed.fb.ipv6
    routes = [L.Route("172.17.%d.%d/32" % (i // 256, i % 256)) for i in range(WITNESS_ROUTES)]
    bird = L.Bird(bed.hosts["wit6"], 65003, neighbors=[L.ipv4_neighbor(ours, ASN, hold_time=WITNESS_HOLD)],
                  routes=routes).start()
    try:
        bird.wait_established(ours, timeout=60)
        w = Witness(bird, ours, lambda: bed.metric("fastbgp_messages_sent_total", bed.addr("wit6"), type="keepalive"),
                    table=TABLE + WITNESS_ROUTES)
        L.wait_for(lambda: w.info()["imported"] == w.table, 60, what="IPv6 witness has the table")
        yield w
    finally:
        bird.stop()


@pytest.fixture
def wit(bed, transport, request):
    """The witness whose session runs over the case's transport."""
    return bed.witness if transport == "ipv4" else request.getfixturevalue("wit6")


@over_transports
@pytest.mark.timeout(150)
def test_slow_reader_is_dropped_at_the_queue_cap(bed, transport, wit):
    """A peer reading ~12 KB/s while churn flows: Cease/Out of Resources at
    the cap, a WARNING with the figures, counted in /metrics; three such
    peers in a row leave the daemon's RSS where the first one left it."""
    name = on("slow", transport)
    bed.churn(True)
    try:
        time.sleep(3)  # churn's own steady state (attribute sets come and go) before measuring
        before = bed.status()
        afters, took = [], []
        with wit, RssSampler(bed.daemon.pid) as rss:
            for i in range(3):
                mark = len(bed.log())
                p = bed.peer(name, "slow", asn_of(name), "--rate", 12000, "--rcvbuf", 4096)
                bed.wait_event(p, "established", 30)
                t0 = time.monotonic()
                w = dropped_out_of_resources(bed, name, mark, "over its cap", 60)
                took.append(time.monotonic() - t0)
                # The figures: octets queued, in the socket buffer, the cap.
                assert re.search(r"\d+ octets queued \+ \d+ in the socket buffer > %d" % SMALL_CAP, w), w
                assert bed.metric("fastbgp_neighbor_out_of_resources_total", bed.addr(name)) == i + 1
                assert not bed.up(bed.addr(name))
                bed.kill(p)
                time.sleep(1)
                afters.append(bed.status()["rss"])
        bed.churn(False)
        low, _ = wit.check(wit.table)
        print("slow reader (%s): dropped after %s s; RSS before %.1f MB, peak %.1f MB, after each %s MB; "
              "witness hold timer low %.1fs" % (transport, ["%.1f" % t for t in took], before["rss"] / MiB,
                                                rss.peak / MiB, ["%.1f" % (a / MiB) for a in afters], low))
        # What was queued for a dropped peer is released: the next ones
        # reuse it instead of adding theirs (the defect grew ~2.3 MB/s, some
        # 30 MB over three drops).  The margin is RSS_SWING (see there).
        assert afters[-1] - afters[0] < RSS_SWING
        assert rss.peak - before["rss"] < 24 * MiB
    finally:
        bed.churn(False)


@over_transports
@pytest.mark.timeout(120)
def test_non_reading_peer_is_dropped_by_the_progress_deadline(bed, transport, wit):
    """A peer that never reads after the OPEN exchange (keepalives still
    sent, so its hold timer never fires): the write progress deadline.
    Three such peers in a row: the last leaves the daemon's RSS where the
    first left it (what was queued for a dropped peer is released)."""
    name = on("stall", transport)
    bed.churn(True)
    try:
        time.sleep(3)  # churn's own steady state (attribute sets come and go) before measuring
        before = bed.status()
        afters, took = [], []
        with wit, RssSampler(bed.daemon.pid) as rss:
            for i in range(3):
                mark = len(bed.log())
                count = bed.metric("fastbgp_neighbor_out_of_resources_total", bed.addr(name)) or 0
                p = bed.peer(name, "stall", asn_of(name), "--hold", 3, "--rcvbuf", 4096)
                bed.wait_event(p, "established", 20)
                t0 = time.monotonic()
                dropped_out_of_resources(bed, name, mark, "output stalled", 40)
                took.append(time.monotonic() - t0)
                assert bed.metric("fastbgp_neighbor_out_of_resources_total", bed.addr(name)) == count + 1
                assert not bed.up(bed.addr(name))
                bed.kill(p)
                time.sleep(2)
                afters.append(bed.status()["rss"])
        bed.churn(False)
        low, _ = wit.check(wit.table)
        print("non-reader (%s): dropped after %s s; RSS before %.1f MB, peak %.1f MB, after each %s MB; "
              "witness hold timer low %.1fs" % (transport, ["%.1f" % t for t in took], before["rss"] / MiB,
                                                rss.peak / MiB, ["%.1f" % (a / MiB) for a in afters], low))
        for t in took:
            assert t < 3 * 3 + 5  # a window (hold 3 s) after the last progress, checked every quarter
        # Not after - before: see RSS_SWING.  A leak (the defect: ~2.3 MB/s,
        # ~9 MB per 3.8 s drop) shows as the later peers adding to the first.
        assert afters[-1] - afters[0] < RSS_SWING
        assert rss.peak - before["rss"] < 24 * MiB
    finally:
        bed.churn(False)


@over_transports
@pytest.mark.timeout(150)
def test_slow_member_does_not_hold_back_its_update_group(bed, transport, wit):
    """Three fast receivers with the same export policy (one update group)
    get the full table as fast with a slow member among them as without it;
    memory stays bounded; the slow member is dropped at its own cap."""
    names = tuple(on(g, transport) for g in ("g1", "g2", "g3"))
    slow = on("gs", transport)
    mark = len(bed.log())
    with wit:
        alone, _ = bed.fast_round(names)
        before = bed.status()
        mark = len(bed.log())
        with RssSampler(bed.daemon.pid) as rss:
            mixed, procs = bed.fast_round(names, slow=slow, keep=True)
            # The fast ones are done while the slow member still hangs on
            # (it reads 12 KB/s of a table of several hundred KB).
            assert bed.up(bed.addr(slow)), bed.log()[mark:][-3000:]
            sent = [bed.metric("fastbgp_messages_sent_total", bed.addr(n), type="update") for n in names]
            bed.churn(True)
            try:
                dropped_out_of_resources(bed, slow, mark, "over its cap", 60)
            finally:
                bed.churn(False)
            # Churn kept flowing to the fast members all along, and they stayed.
            for n, before_churn in zip(names, sent):
                assert bed.up(bed.addr(n)), n
                assert bed.metric("fastbgp_messages_sent_total", bed.addr(n), type="update") > before_churn + 10
            assert not any("level=warning" in w for n in names for w in bed.warnings(bed.addr(n), mark))
            bed.leave(procs, names + (slow,))
        time.sleep(1)
        after = bed.status()
    low, _ = wit.check(wit.table)
    t_alone = max(e["seconds"] for e in alone.values())
    t_mixed = max(e["seconds"] for e in mixed.values())
    print("update group (%s): full table (%d octets) to 3 fast members in %.2fs alone, %.2fs with a slow member "
          "(x%.2f); RSS before %.1f MB, peak %.1f MB, after %.1f MB; witness hold timer low %.1fs"
          % (transport, alone[names[0]]["octets"], t_alone, t_mixed, t_mixed / t_alone, before["rss"] / MiB,
             rss.peak / MiB, after["rss"] / MiB, low))
    # Everything the daemon holds: what the witness gets, and its own routes.
    prefixes = {e["prefixes"] for e in list(alone.values()) + list(mixed.values())}
    assert prefixes == {wit.table + WITNESS_ROUTES}, prefixes
    assert t_mixed < max(2 * t_alone, t_alone + 2.0)
    # Bounded: the slow member's queue is capped at 1 MiB; a member that
    # bloated the group would hold the whole table per churn round.
    assert rss.peak - before["rss"] < 16 * MiB
    assert after["rss"] - before["rss"] < RSS_SWING
    assert bed.metric("fastbgp_neighbor_out_of_resources_total", bed.addr(slow)) >= 1


def victim_routes(base):
    return [L.Route("10.%d.%d.0/24" % (base, i)) for i in range(VICTIM_ROUTES)]


def wait_victim_routes(bed, name, wit, n):
    """The daemon has ``n`` routes of ``name`` and passed them to the witness."""
    L.wait_for(lambda: bed.metric("fastbgp_prefixes_received", bed.addr(name)) == n, 30,
               what="%d routes from %s" % (n, name))
    L.wait_for(lambda: wit.info()["imported"] == wit.table + n, 30, what="witness has %s's routes" % name)


# Victims' routes: 10.<base>.x.0/24, one base per victim host.
VICTIM_BASE = {"vstop": 250, "vkill": 251, "vstop6": 253, "vkill6": 252}


@over_transports
@pytest.mark.timeout(120)
def test_sigstopped_bird_mid_table_is_dropped_by_the_hold_timer(bed, transport, wit):
    """BIRD stopped (SIGSTOP) while the table streams to it: our hold timer
    expires, a WARNING says so, its routes are withdrawn at the witness."""
    name = on("vstop", transport)
    host = bed.hosts[name]
    addr = bed.addr(name)
    ours = bed.fb.addr(transport)
    bed.churn(True)  # the daemon keeps writing to it
    with wit:
        mark = len(bed.log())
        v = L.Bird(host, asn_of(name), neighbors=[L.ipv4_neighbor(ours, ASN, hold_time=6)],
                   routes=victim_routes(VICTIM_BASE[name]))
        try:
            v.start()
            v.wait_established(ours, 30)
            wait_victim_routes(bed, name, wit, VICTIM_ROUTES)
            imported = int(re.search(r"Routes:\s+(\d+) imported", v.protocol_info(ours)).group(1))
            os.kill(v.proc.pid, signal.SIGSTOP)
            t0 = time.monotonic()
            w = L.wait_for(lambda: [x for x in bed.warnings(addr, mark) if "session lost" in x], 20,
                           interval=0.1, what="session loss WARNING for %s" % addr,
                           on_timeout=lambda: bed.log()[mark:][-3000:])[0]
            took = time.monotonic() - t0
            assert "hold-timer-expired" in w or "hold timer" in w, w
            assert "4/0" in w  # NOTIFICATION Hold Timer Expired (RFC 4271 §6.5)
            L.wait_for(lambda: wit.info()["imported"] == wit.table, 15, interval=0.1, what="victim routes withdrawn")
            gone = time.monotonic() - t0
        finally:
            bed.churn(False)
            if v.running():  # stopped processes take SIGKILL (and nothing else)
                os.kill(v.proc.pid, signal.SIGKILL)
                v.proc.wait(10)
            v.stop()
    low, _ = wit.check(wit.table)
    print("SIGSTOP (%s): BIRD had %d routes when stopped; hold timer (6 s) WARNING after %.1fs, routes gone at the "
          "witness after %.1fs; witness hold timer low %.1fs" % (transport, imported, took, gone, low))
    assert took < 6 + 3
    assert not bed.up(addr)


@over_transports
@pytest.mark.timeout(120)
def test_sigkilled_gobgp_mid_table_is_cleaned_up(bed, transport, wit):
    """GoBGP killed (SIGKILL) while the table streams to it: the reset is
    seen at once, a WARNING, its routes withdrawn within a few seconds."""
    name = on("vkill", transport)
    host = bed.hosts[name]
    addr = bed.addr(name)
    ours = bed.fb.addr(transport)
    bed.churn(True)
    with wit:
        mark = len(bed.log())
        v = L.GoBGP(host, asn_of(name), neighbors=[L.ipv4_neighbor(ours, ASN, hold_time=6)],
                    routes=victim_routes(VICTIM_BASE[name]))
        try:
            v.start()
            v.wait_established(ours, 30)
            wait_victim_routes(bed, name, wit, VICTIM_ROUTES)
            os.kill(v.proc.pid, signal.SIGKILL)
            t0 = time.monotonic()
            v.proc.wait(10)
            w = L.wait_for(lambda: [x for x in bed.warnings(addr, mark) if "session lost" in x], 20,
                           interval=0.05, what="session loss WARNING for %s" % addr,
                           on_timeout=lambda: bed.log()[mark:][-3000:])[0]
            took = time.monotonic() - t0
            L.wait_for(lambda: wit.info()["imported"] == wit.table, 15, interval=0.1, what="victim routes withdrawn")
            gone = time.monotonic() - t0
        finally:
            bed.churn(False)
            v.stop()
    low, _ = wit.check(wit.table)
    print("SIGKILL (%s): WARNING after %.2fs (%s), routes gone at the witness after %.2fs; witness hold timer low %.1fs"
          % (transport, took, w.split("msg=", 1)[-1][:120], gone, low))
    assert "connection" in w, w  # reset / closed by the peer, not a timer
    assert took < 3 and gone < 5


@over_transports
@pytest.mark.timeout(150)
def test_300_session_flaps_leak_neither_memory_nor_fds(bed, transport, wit):
    """A peer that opens a session, announces 5 routes and drops it (Cease
    or TCP reset, alternately), 300 times: RSS and open fds after equal
    those before (within 5 MB), the witness undisturbed."""
    name = on("flap", transport)
    addr = bed.addr(name)
    with wit:
        warm = bed.peer(name, "flap", asn_of(name), "--count", 20, "--prefixes", 5)
        bed.wait_event(warm, "flaps", 60)
        time.sleep(1)
        before = bed.status()
        p = bed.peer(name, "flap", asn_of(name), "--count", 300, "--prefixes", 5)
        done = bed.wait_event(p, "flaps", 120)
        L.wait_for(lambda: not bed.up(addr), 10, what="flapper down")
        time.sleep(2)
        after = bed.status()
    low, _ = wit.check(wit.table)
    established = bed.metric("fastbgp_neighbor_established_total", addr)
    print("300 flaps (%s) in %.1fs (%d failed attempts, %s sessions Established in all): RSS %.1f -> %.1f MB, "
          "fds %d -> %d; witness hold timer low %.1fs" % (transport, done["seconds"], done["failures"], established,
                                                          before["rss"] / MiB, after["rss"] / MiB, before["fds"],
                                                          after["fds"], low))
    assert done["done"] == 300, open(p.out).read()[-2000:]
    assert established >= 320
    assert after["rss"] - before["rss"] < RSS_SWING  # 40 kB per flap would add up past it
    assert after["fds"] == before["fds"]
