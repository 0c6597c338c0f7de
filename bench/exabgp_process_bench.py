#!/usr/bin/env python
"""ExaBGP process API figure: a peer sends N IPv4 prefixes; the speaker
under test delivers them as ExaBGP JSON to a program that parses every
line (``json.loads``) and counts the announced prefixes.

The same script runs both speakers, one after the other, on loopback:

* fastbgp: the daemon with a ``[[processes]]`` entry (receive = updates,
  encoder json), its received routes also going into its RIB;
* ExaBGP 4.2 (Debian's ``exabgp``) with a ``process`` (encoder json) and
  ``api { receive { parsed; update; } }`` on the neighbour.

The sending peer is this file's ``--role sender``: it listens, and once
the session is Established writes a table pre-encoded by
``bench/passthrough.build_table`` (N /24s in G attribute groups, packed
into 4096-octet UPDATEs) in one go.  The consumer is this file's
``--role consumer`` (stdlib only, run by the system python3 for both).

Measured: seconds from the sender's first write to the consumer having
parsed every prefix (both wall-clock stamps on this host).  Reported per
run, the median per speaker, and the ratio of the medians.

    python bench/exabgp_process_bench.py --prefixes 1000000 --groups 1000 --runs 3
    python bench/exabgp_process_bench.py --prefixes 200000 --groups 50000 --runs 3

``--source bird`` (root: fastbgp/testing/lab.py namespaces) replaces the
sender by BIRD 2 in its own namespace, originating the N /24s from a
generated ``protocol static`` whose routes carry MED = prefix index // (N/G),
i.e. G attribute groups (MED rather than communities: one attribute in each
static route's block, kept by the lab's BIRD export filter).  For each run
and speaker BIRD is started afresh, waits until all N routes are in its
table, and only then does the speaker (in the other namespace) connect, so
each gets the whole table the same way.  Measured there: seconds from the
speaker's own "state up" event (``neighbor-changes``, both speakers) to the
consumer having parsed every prefix; the time from the first UPDATE line is
printed too.

    python bench/exabgp_process_bench.py --source bird --prefixes 1000000 --groups 1000 --runs 3

``--targets sink`` (with ``--source bird``) adds a bare BGP session that only
parses BIRD's UPDATEs with the compiled codec and counts their prefixes
(``--role sink``).  It shows how BIRD cuts its table for a reader that
keeps up: measured here, one prefix per UPDATE (1,000,000 UPDATEs, 4.3 s),
slower than fastbgp (whose slower reads let BIRD fill ~5 prefixes per
UPDATE): the time of this scenario is mostly BIRD's way of sending.

``--targets floor`` (with ``--source bird``) is the same bare reader, but it
reads nothing for ``--floor-pause`` seconds (default 1.0) after Established.
BIRD's socket fills, so BIRD keeps feeding its table into its per-attribute
buckets instead of cutting one small UPDATE per prefix; when the reader
starts, the table arrives in full UPDATEs.  With a pause just longer than
BIRD's own feed this is the least time any reader can take to get the whole
table from BIRD 2 in this lab (a shorter pause lets BIRD go back to small
UPDATEs part-way): it bounds what the ratio against ExaBGP can be.

    python bench/exabgp_process_bench.py --source bird --targets floor,sink,fastbgp,exabgp --floor-pause 0.9
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SYSTEM_PYTHON = "/usr/bin/python3"
SENDER_AS, TARGET_AS = 65001, 65000
SENDER_IP, TARGET_IP = "127.0.0.1", "127.0.0.2"

RUNNER = """
import sys
import uvloop
from fastbgp.daemon.process import run_daemon
uvloop.run(run_daemon(sys.argv[1], api=False, metrics=False, log_level="warning"))
"""


# ============================================================== consumer (stdlib only)


def consumer(result, want):
    n = 0
    lines = 0
    done = False
    t_up = t_first = None
    for line in sys.stdin:
        lines += 1
        e = json.loads(line)
        if e.get("type") == "state" and t_up is None and e.get("neighbor", {}).get("state") == "up":
            t_up = time.time()  # the speaker's "session Established" event (neighbor-changes)
        if e.get("type") != "update":
            continue
        if t_first is None:
            t_first = time.time()
        upd = e["neighbor"]["message"].get("update")
        if not upd:
            continue
        for by_nh in upd.get("announce", {}).values():
            for nlri in by_nh.values():
                n += len(nlri)
        if not done and n >= want:
            done = True
            with open(result, "w") as f:
                json.dump({"t1": time.time(), "prefixes": n, "lines": lines, "t_up": t_up, "t_first": t_first}, f)


# ============================================================== sink (--source bird: a bare reader)


async def sink(peer, local, result, want, pause=0.0):
    """A bare reader of BIRD's table: a BGP session (OPEN, KEEPALIVEs)
    whose UPDATEs are parsed by fastbgp's compiled codec and their prefixes
    counted -- no RIB, no JSON, no program ("lines" = UPDATEs received)."""
    import ipaddress

    from fastbgp.wire import capabilities as caps
    from fastbgp.wire import codec

    loop = asyncio.get_running_loop()
    done = loop.create_future()
    ctx = codec.Context(as4=True)
    state = {"n": 0, "updates": 0, "t_up": None, "t_first": None}

    class Sink(asyncio.Protocol):
        def connection_made(self, transport):
            self.t = transport
            self.reader = codec.MessageReader()
            pairs = caps.encode_all([caps.Multiprotocol(1, 1), caps.RouteRefresh(), caps.FourOctetAS(TARGET_AS)])
            transport.write(codec.build_open(TARGET_AS, 240, int(ipaddress.IPv4Address(local)), pairs))

        def data_received(self, data):
            for mtype, body in self.reader.feed(data):
                if mtype == 1:
                    self.t.write(codec.KEEPALIVE)
                elif mtype == 4 and state["t_up"] is None:
                    state["t_up"] = time.time()  # Established (RFC 4271 §8.2.2)
                    if pause > 0:  # --targets floor: let BIRD's socket fill while it feeds its table
                        self.t.pause_reading()
                        loop.call_later(pause, self.t.resume_reading)
                elif mtype == 2:
                    if state["t_first"] is None:
                        state["t_first"] = time.time()
                    state["updates"] += 1
                    state["n"] += codec.count_prefixes(codec.parse_update(body, ctx).nlri)
                    if state["n"] >= want and not done.done():
                        with open(result, "w") as f:
                            json.dump({"t1": time.time(), "prefixes": state["n"], "lines": state["updates"],
                                       "t_up": state["t_up"], "t_first": state["t_first"]}, f)
                        done.set_result(None)

        def connection_lost(self, exc):
            if not done.done():
                done.set_exception(ConnectionError("BIRD closed the session: %s" % exc))

    await loop.create_connection(Sink, peer, 179, local_addr=(local, 0))
    await done
    await asyncio.sleep(3600)  # hold the session until the bench stops this process


# ============================================================== sender


async def sender(port, count, groups, status):
    import ipaddress

    from passthrough import build_table
    from fastbgp.wire import capabilities as caps
    from fastbgp.wire import codec

    msgs = build_table(0, count, groups, SENDER_AS, SENDER_IP)
    loop = asyncio.get_running_loop()
    done = loop.create_future()

    class Peer(asyncio.Protocol):
        def connection_made(self, transport):
            self.t = transport
            self.reader = codec.MessageReader()
            pairs = caps.encode_all([caps.Multiprotocol(1, 1), caps.RouteRefresh(), caps.FourOctetAS(SENDER_AS)])
            transport.write(codec.build_open(SENDER_AS, 240, int(ipaddress.IPv4Address(SENDER_IP)), pairs))
            self.up = False

        def data_received(self, data):
            for mtype, _body in self.reader.feed(data):
                if mtype == 1:
                    self.t.write(codec.KEEPALIVE)
                elif mtype == 4 and not self.up:
                    self.up = True
                    with open(status, "w") as f:
                        json.dump({"t0": time.time(), "messages": len(msgs)}, f)
                    self.t.writelines(msgs)
                    loop.call_later(30, self.keepalive)
                elif mtype == 3:
                    print("sender: NOTIFICATION %s" % bytes(_body).hex(), file=sys.stderr)

        def keepalive(self):
            if not self.t.is_closing():
                self.t.write(codec.KEEPALIVE)
                loop.call_later(30, self.keepalive)

        def connection_lost(self, exc):
            if not done.done():
                done.set_result(None)

    server = await loop.create_server(Peer, SENDER_IP, port, reuse_address=True)
    with open(status + ".ready", "w") as f:
        f.write("ready")
    async with server:
        await done


# ============================================================== targets


def _free_port():
    import socket

    with socket.socket() as s:
        s.bind((SENDER_IP, 0))
        return s.getsockname()[1]


def _consumer_argv(result, count):
    return [SYSTEM_PYTHON, os.path.abspath(__file__), "--role", "consumer", "--result", result, "--count", str(count)]


def fastbgp_target(work, port, result, count):
    path = os.path.join(work, "fastbgp.toml")
    run = ", ".join('"%s"' % a for a in _consumer_argv(result, count))
    with open(path, "w") as f:
        f.write('[global]\nasn = %d\nrouter-id = "%s"\nlisten = []\n' % (TARGET_AS, TARGET_IP))
        f.write('[[neighbors]]\naddress = "%s"\nport = %d\npeer-as = %d\nlocal-address = "%s"\n'
                'default-import = "accept"\ndefault-export = "accept"\n'
                "timers = { connect-retry = 1, hold-time = 240 }\n" % (SENDER_IP, port, SENDER_AS, TARGET_IP))
        f.write('[[processes]]\nname = "consumer"\nrun = [%s]\nreceive = ["updates"]\n' % run)
    return [sys.executable, "-c", RUNNER, path], dict(os.environ)


def exabgp_target(work, port, result, count):
    path = os.path.join(work, "exabgp.conf")
    with open(path, "w") as f:
        f.write("process consumer {\n    run %s;\n    encoder json;\n}\n" % " ".join(_consumer_argv(result, count)))
        f.write("neighbor %s {\n    router-id %s;\n    local-address %s;\n    local-as %d;\n    peer-as %d;\n"
                "    connect %d;\n    hold-time 240;\n    family { ipv4 unicast; }\n"
                "    api { processes [ consumer ]; receive { parsed; update; } }\n}\n"
                % (SENDER_IP, TARGET_IP, TARGET_IP, TARGET_AS, SENDER_AS, port))
    env = dict(os.environ, exabgp_daemon_user="root", exabgp_daemon_daemonize="false",
               exabgp_log_destination=os.path.join(work, "exabgp.log"), exabgp_tcp_bind="",
               exabgp_api_cli="false")
    env.pop("PYTHONPATH", None)
    return [shutil.which("exabgp") or "/usr/sbin/exabgp", path], env


def kill_group(p):
    """SIGTERM ``p``'s process group, SIGKILL after 5 s (also used by
    exabgp_collector_bench.py)."""
    if p.poll() is None:
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def one_run(name, make, count, groups, timeout):
    work = tempfile.mkdtemp(prefix="exabench-")
    port = _free_port()
    status = os.path.join(work, "sender.json")
    result = os.path.join(work, "result.json")
    procs = []
    try:
        s = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--role", "sender", "--port", str(port),
                              "--count", str(count), "--groups", str(groups), "--status", status],
                             cwd=ROOT, start_new_session=True,
                             env=dict(os.environ, PYTHONPATH=os.pathsep.join((ROOT, HERE))))
        procs.append(s)
        deadline = time.time() + 300
        while not os.path.exists(status + ".ready"):
            if s.poll() is not None or time.time() > deadline:
                raise RuntimeError("sender did not start")
            time.sleep(0.05)
        argv, env = make(work, port, result, count)
        log = open(os.path.join(work, name + ".out"), "wb")
        t = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        procs.append(t)
        deadline = time.time() + timeout
        while not os.path.exists(result):
            if t.poll() is not None:
                raise RuntimeError("%s exited: %s" % (name, open(os.path.join(work, name + ".out")).read()[-2000:]))
            if time.time() > deadline:
                raise RuntimeError("%s: no result within %d s" % (name, timeout))
            time.sleep(0.02)
        time.sleep(0.05)
        with open(status) as f:
            t0 = json.load(f)["t0"]
        with open(result) as f:
            r = json.load(f)
        return {"seconds": r["t1"] - t0, "prefixes": r["prefixes"], "lines": r["lines"]}
    finally:
        for p in reversed(procs):
            kill_group(p)
        shutil.rmtree(work, ignore_errors=True)


# ============================================================== --source bird (namespace lab)

BIRD_AS = 65001
BASE = 16 << 24  # 16.0.0.0/24 upwards, as bench/passthrough.py


def bird_static(count, groups):
    """BIRD 2 ``protocol static`` text: ``count`` /24s, the MED of each set
    from its index so the table has ``groups`` distinct attribute sets
    (runs of consecutive prefixes share one), exported by the lab's default
    BIRD export filter (which keeps a static route's MED)."""
    per = -(-count // groups)
    out = ["protocol static s_bench {", "  ipv4;"]
    for i in range(count):
        a = BASE + (i << 8)
        out.append("  route %d.%d.%d.0/24 blackhole { bgp_med = %d; };" % (a >> 24, (a >> 16) & 255, (a >> 8) & 255,
                                                                         i // per))
    out.append("}")
    return "\n".join(out) + "\n"


def _bird_fastbgp(t, b, result, count):
    path = os.path.join(t.workdir, "fastbgp.toml")
    run = ", ".join('"%s"' % a for a in _consumer_argv(result, count))
    with open(path, "w") as f:
        f.write('[global]\nasn = %d\nrouter-id = "%s"\nlisten = []\n' % (TARGET_AS, t.ipv4))
        f.write('[[neighbors]]\naddress = "%s"\npeer-as = %d\nlocal-address = "%s"\n'
                'default-import = "accept"\ndefault-export = "accept"\n'
                "timers = { connect-retry = 1, hold-time = 240 }\n" % (b.ipv4, BIRD_AS, t.ipv4))
        f.write('[[processes]]\nname = "consumer"\nrun = [%s]\nreceive = ["updates", "neighbor-changes"]\n' % run)
    return [sys.executable, "-c", RUNNER, path], dict(os.environ)


def _bird_sink(t, b, result, count, pause=0.0):
    argv = [sys.executable, os.path.abspath(__file__), "--role", "sink", "--peer", b.ipv4, "--local", t.ipv4,
            "--result", result, "--count", str(count), "--floor-pause", str(pause)]
    return argv, dict(os.environ, PYTHONPATH=os.pathsep.join((ROOT, HERE)))


def _bird_exabgp(t, b, result, count):
    path = os.path.join(t.workdir, "exabgp.conf")
    with open(path, "w") as f:
        f.write("process consumer {\n    run %s;\n    encoder json;\n}\n" % " ".join(_consumer_argv(result, count)))
        f.write("neighbor %s {\n    router-id %s;\n    local-address %s;\n    local-as %d;\n    peer-as %d;\n"
                "    hold-time 240;\n    family { ipv4 unicast; }\n"
                "    api { processes [ consumer ]; neighbor-changes; receive { parsed; update; } }\n}\n"
                % (b.ipv4, t.ipv4, t.ipv4, TARGET_AS, BIRD_AS))
    env = dict(os.environ, exabgp_daemon_user="root", exabgp_daemon_daemonize="false",
               exabgp_log_destination=os.path.join(t.workdir, "exabgp.log"), exabgp_tcp_bind="",
               exabgp_api_cli="false")
    env.pop("PYTHONPATH", None)
    return [shutil.which("exabgp") or "/usr/sbin/exabgp", path], env


def bird_feed_seconds(bird, count, timeout=30.0):
    """--targets floor: seconds from BIRD showing the session Established
    to its export counter ("Export updates", accepted) reaching ``count``,
    polled with birdc every ~10 ms while the reader is paused -- how long
    BIRD takes to feed its table to a peer when it is not also sending
    (None when the counter did not get there)."""
    name = None
    t_est = None
    end = time.time() + timeout
    while time.time() < end:
        if name is None:
            rows = bird.birdc("show", "protocols").stdout.splitlines()
            name = next((r.split()[0] for r in rows if " BGP " in r), None)
            continue
        out = bird.birdc("show", "protocols", "all", name).stdout
        now = time.time()
        if t_est is None and "Established" in out:
            t_est = now
        for row in out.splitlines():
            cells = row.split()
            if t_est is not None and row.strip().startswith("Export updates:") and cells[-1].isdigit() \
                    and int(cells[-1]) >= count:
                return now - t_est
        time.sleep(0.01)
    return None


def bird_run(lab, t, b, static, name, count, timeout, pause=1.0):
    """One run: a fresh BIRD (so the table goes out from the start, the
    same way for every speaker) holding ``count`` static routes, then the
    speaker under test connecting to it.  Seconds from the speaker's
    Established event (its "state up" JSON line) to the program having
    parsed every prefix; also from the first UPDATE line."""
    from fastbgp.testing import lab as L

    result = os.path.join(t.workdir, "result.json")
    if os.path.exists(result):
        os.unlink(result)
    bird = L.Bird(b, BIRD_AS, neighbors=[L.Neighbor(t.ipv4, TARGET_AS, passive=True, hold_time=240)],
                  extra_config=static)
    target = None
    try:
        bird.start()
        deadline = time.time() + 120
        while True:  # every static route in BIRD's table before the speaker connects
            out = bird.birdc("show", "route", "count").stdout
            if "%d of %d routes" % (count, count) in out or " %d routes" % count in out.replace("of ", ""):
                break
            if time.time() > deadline:
                raise RuntimeError("BIRD did not load %d routes: %s" % (count, out))
            time.sleep(0.2)
        make = {"fastbgp": _bird_fastbgp, "exabgp": _bird_exabgp, "sink": _bird_sink,
                "floor": lambda *a: _bird_sink(*a, pause=pause)}[name]
        argv, env = make(t, b, result, count)
        log = open(os.path.join(t.workdir, name + ".out"), "wb")
        target = t.popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        feed = bird_feed_seconds(bird, count) if name == "floor" else None
        deadline = time.time() + timeout
        while not os.path.exists(result):
            if target.poll() is not None:
                raise RuntimeError("%s exited: %s" % (name, open(os.path.join(t.workdir, name + ".out")).read()[-2000:]))
            if time.time() > deadline:
                raise RuntimeError("%s: no result within %d s" % (name, timeout))
            time.sleep(0.02)
        time.sleep(0.05)
        with open(result) as f:
            r = json.load(f)
        if r.get("t_up") is None:
            raise RuntimeError("%s: no 'state up' line before the updates" % name)
        return {"seconds": r["t1"] - r["t_up"], "from_first": r["t1"] - r["t_first"], "prefixes": r["prefixes"],
                "lines": r["lines"], "feed": feed}
    finally:
        if target is not None:
            kill_group(target)
        bird.stop()


def bench_bird(args, targets):
    from fastbgp.testing import lab as L

    static = bird_static(args.count, args.groups)
    times = {x: [] for x in targets}
    with L.Lab() as lab:
        t = lab.add_host("t", ipv6=None)
        b = lab.add_host("b", ipv6=None)
        for i in range(args.runs):
            for x in targets:
                r = bird_run(lab, t, b, static, x, args.count, args.timeout, args.floor_pause)
                times[x].append(r["seconds"])
                print("run %d %-8s %8.3f s from Established (%.3f s from the first UPDATE line)  %d prefixes in %d "
                      "%s" % (i + 1, x, r["seconds"], r["from_first"], r["prefixes"], r["lines"],
                              "UPDATEs" if x in ("sink", "floor") else "JSON lines"), flush=True)
                if r["feed"] is not None:
                    print("      BIRD fed its %d routes to the paused reader in %.3f s (birdc export counter)"
                          % (args.count, r["feed"]), flush=True)
    return times


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--role", choices=["bench", "sender", "consumer", "sink"], default="bench")
    ap.add_argument("--prefixes", "--count", dest="count", type=int, default=1_000_000)
    ap.add_argument("--groups", type=int, default=1000, help="attribute groups (the table's distinct paths)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--targets", default="fastbgp,exabgp")
    ap.add_argument("--timeout", type=int, default=600)
    ap.add_argument("--source", choices=["sender", "bird"], default="sender",
                    help="who sends the table: this file's pre-encoded sender on loopback, or BIRD 2 in a "
                         "namespace lab (root) originating it from static routes, MED = group")
    ap.add_argument("--floor-pause", type=float, default=1.0,
                    help="--targets floor (and --role sink): seconds the bare reader reads nothing after "
                         "Established")
    ap.add_argument("--port", type=int)
    ap.add_argument("--peer", help="--role sink: BIRD's address")
    ap.add_argument("--local", help="--role sink: our address")
    ap.add_argument("--status")
    ap.add_argument("--result")
    args = ap.parse_args()
    if args.role == "consumer":
        return consumer(args.result, args.count)
    if args.role == "sink":
        import uvloop

        return uvloop.run(sink(args.peer, args.local, args.result, args.count, args.floor_pause))
    if args.role == "sender":
        import uvloop

        return uvloop.run(sender(args.port, args.count, args.groups, args.status))
    makers = {"fastbgp": fastbgp_target, "exabgp": exabgp_target}
    targets = args.targets.split(",")
    times = {t: [] for t in targets}
    for i in range(args.runs if args.source == "sender" else 0):
        for t in targets:
            r = one_run(t, makers[t], args.count, args.groups, args.timeout)
            times[t].append(r["seconds"])
            print("run %d %-8s %8.3f s  %d prefixes in %d JSON lines" % (i + 1, t, r["seconds"], r["prefixes"],
                                                                       r["lines"]), flush=True)
    if args.source == "bird":
        times = bench_bird(args, targets)
    med = {t: statistics.median(v) for t, v in times.items()}
    print("%d prefixes, %d attribute groups, %d run(s), source %s:" % (args.count, args.groups, args.runs,
                                                                      args.source))
    for t in targets:
        print("  %-8s median %.3f s  (runs: %s)" % (t, med[t], ", ".join("%.3f" % x for x in times[t])))
    if "fastbgp" in med and "exabgp" in med:
        print("  ExaBGP / fastbgp: %.1fx" % (med["exabgp"] / med["fastbgp"]))
    if "sink" in med and "exabgp" in med:
        print("  ExaBGP / bare reader: %.1fx" % (med["exabgp"] / med["sink"]))
    if "floor" in med and "exabgp" in med:
        print("  ExaBGP / BIRD's floor (bare reader after a %.2f s pause): %.1fx" % (args.floor_pause,
                                                                                   med["exabgp"] / med["floor"]))


if __name__ == "__main__":
    sys.exit(main())
