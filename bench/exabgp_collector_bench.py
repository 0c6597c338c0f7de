#!/usr/bin/env python
"""ExaBGP collector scenario (issue 13), scaled to a few minutes: many BGP
sessions send full tables to the daemon, which hands every UPDATE to one
``[[processes]]`` program as ExaBGP JSON, and no session's keepalives may
be late.

On loopback, three kinds of process:

* ``--role sessions``: N BGP speakers in one process (asyncio), each
  listening on its own address 127.0.1.i; once Established each writes a
  table pre-encoded by ``bench/passthrough.build_table`` (the same P /24s
  for every session, its own AS path, 4096-octet UPDATEs) in one go, sends
  its own KEEPALIVEs every 3 s, and records when each message from the
  daemon arrives;
* the fastbgp daemon (``run_daemon``), connecting to the N sessions (hold
  time 9 s, so a KEEPALIVE every 3 s is due on every session; export
  policy: nothing, as a collector), with one ``[[processes]]`` entry;
* that program, this file's ``--role consumer``: parses every line with
  ``json.loads`` and counts the announced prefixes (stdlib only).

Measured per run: seconds from the first table write to the consumer
having parsed N x P prefixes; the longest gap between two messages the
daemon sent on each session (KEEPALIVEs, the only thing it sends a
collector's peers) from Established until 12 s after the consumer finished
-- the worst and the median over sessions (3 s expected, at most 9 s
before the hold timer expires: RFC 4271 §4.4); sessions that went down;
``notice`` lines the program got (events it lost); the daemon's RSS high
water mark.  A run fails if a session went down or a gap reached two
thirds of the hold time.

    python bench/exabgp_collector_bench.py                     # 50 x 20,000, 3 runs
    python bench/exabgp_collector_bench.py --sessions 10 --prefixes 5000 --runs 1
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

from exabgp_process_bench import kill_group

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SYSTEM_PYTHON = "/usr/bin/python3"
TARGET_AS, FIRST_AS = 65000, 64600
TARGET_IP = "127.0.0.2"
HOLD = 9  # seconds; KEEPALIVE every HOLD / 3 (RFC 4271 §10)
TAIL = 12.0  # seconds kept up after the consumer finished (four keepalive periods)

RUNNER = """
import sys
import uvloop
from fastbgp.daemon.process import run_daemon
uvloop.run(run_daemon(sys.argv[1], api=False, metrics=False, log_level="warning"))
"""

# --debug-loop: asyncio's own loop in debug mode, which logs every callback
# that held the loop longer than 0.25 s (what stalled the keepalives).
DEBUG_RUNNER = """
import asyncio, sys, time
from fastbgp.daemon.process import run_daemon

async def lag():
    loop = asyncio.get_running_loop()
    t00 = time.time()
    while True:
        t = loop.time()
        await asyncio.sleep(0.05)
        late = loop.time() - t - 0.05
        if late > 0.25:
            print("daemon loop lag %.2f s at +%.1f s" % (late, time.time() - t00), file=sys.stderr, flush=True)

def watchdog(main_id, beat):
    # A thread: when the loop has not ticked for 1 s, the main thread's stack.
    import threading, traceback
    last_dump = 0
    while True:
        time.sleep(0.5)
        if time.time() - beat[0] > 1.0 and time.time() - last_dump > 2.0:
            last_dump = time.time()
            frame = sys._current_frames().get(main_id)
            print("daemon loop blocked; main thread:" + chr(10) + "".join(traceback.format_stack(frame)[-14:]),
                  file=sys.stderr, flush=True)

async def beat(b):
    while True:
        b[0] = time.time()
        await asyncio.sleep(0.05)

async def main():
    import threading
    asyncio.get_running_loop().slow_callback_duration = 0.25
    asyncio.get_running_loop().create_task(lag())
    b = [time.time()]
    asyncio.get_running_loop().create_task(beat(b))
    threading.Thread(target=watchdog, args=(threading.get_ident(), b), daemon=True).start()
    await run_daemon(sys.argv[1], api=False, metrics=False, log_level="warning")

asyncio.run(main(), debug=True)
"""


def session_ip(i):
    return "127.0.1.%d" % (i + 1)


# ============================================================== consumer (stdlib only)


def consumer(result, want):
    n = lines = notices = 0
    done = False
    for line in sys.stdin:
        lines += 1
        e = json.loads(line)
        t = e.get("type")
        if t == "notice":
            notices += 1
            continue
        if t != "update":
            continue
        upd = e["neighbor"]["message"].get("update")
        if not upd:
            continue
        for by_nh in upd.get("announce", {}).values():
            for nlri in by_nh.values():
                n += len(nlri)
        if not done and n >= want:
            done = True
            with open(result, "w") as f:
                json.dump({"t1": time.time(), "prefixes": n, "lines": lines, "notices": notices}, f)


# ============================================================== the sessions


async def sessions(n, port, count, groups, status, stop):
    import ipaddress

    from passthrough import build_table
    from fastbgp.wire import capabilities as caps
    from fastbgp.wire import codec

    loop = asyncio.get_running_loop()
    tables = [build_table(0, count, groups, FIRST_AS + i, session_ip(i)) for i in range(n)]
    state = [{"up": None, "t0": None, "last": None, "max_gap": 0.0, "gap_at": None, "rx": 0, "lost": None}
             for _ in range(n)]
    lag = {"max": 0.0}

    async def ticker():
        # This process's own loop lag: a gap measured here is the daemon's
        # only while this stays well below it.
        while True:
            t = loop.time()
            await asyncio.sleep(0.1)
            lag["max"] = max(lag["max"], loop.time() - t - 0.1)

    lag_task = loop.create_task(ticker())

    class Peer(asyncio.Protocol):
        def __init__(self, i):
            self.i = i
            self.s = state[i]

        def connection_made(self, transport):
            self.t = transport
            self.reader = codec.MessageReader()
            asn = FIRST_AS + self.i
            pairs = caps.encode_all([caps.Multiprotocol(1, 1), caps.RouteRefresh(), caps.FourOctetAS(asn)])
            transport.write(codec.build_open(asn, HOLD, int(ipaddress.IPv4Address(session_ip(self.i))), pairs))

        def data_received(self, data):
            now = loop.time()
            s = self.s
            for mtype, _body in self.reader.feed(data):
                if s["up"] is not None:
                    if s["last"] is not None and now - s["last"] > s["max_gap"]:
                        s["max_gap"] = now - s["last"]
                        s["gap_at"] = time.time() - (now - s["last"])  # when the gap began
                    s["last"] = now
                    s["rx"] += 1
                if mtype == 1:
                    self.t.write(codec.KEEPALIVE)
                elif mtype == 4 and s["up"] is None:
                    s["up"] = s["last"] = now
                    s["t0"] = time.time()
                    self.t.writelines(tables[self.i])
                    loop.call_later(HOLD / 3, self.keepalive)
                elif mtype == 3:
                    s["lost"] = "NOTIFICATION %s" % bytes(_body).hex()

        def keepalive(self):
            if not self.t.is_closing():
                self.t.write(codec.KEEPALIVE)
                loop.call_later(HOLD / 3, self.keepalive)

        def connection_lost(self, exc):
            if self.s["up"] is not None and self.s["lost"] is None:
                self.s["lost"] = "connection lost: %s" % exc

    servers = []
    for i in range(n):
        servers.append(await loop.create_server(lambda i=i: Peer(i), session_ip(i), port, reuse_address=True))
    open(status + ".ready", "w").close()
    while not os.path.exists(stop):
        await asyncio.sleep(0.2)
    now = loop.time()
    for s in state:
        if s["last"] is not None and s["lost"] is None:
            s["max_gap"] = max(s["max_gap"], now - s["last"])  # the gap still open counts too
    lag_task.cancel()
    with open(status, "w") as f:
        json.dump({"sessions": state, "own_lag": lag["max"]}, f)
    # Up until the driver has stopped the daemon (which ends the sessions
    # with a Cease), then this process.
    await asyncio.sleep(3600)


# ============================================================== the driver


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.1.1", 0))
        return s.getsockname()[1]


def _wait(path, timeout, procs, what):
    deadline = time.time() + timeout
    while not os.path.exists(path):
        for p in procs:
            if p.poll() is not None:
                raise RuntimeError("%s: a process exited (%s) while waiting for %s" % (p.args[:3], p.returncode, what))
        if time.time() > deadline:
            raise RuntimeError("timed out waiting for %s" % what)
        time.sleep(0.05)


def _hwm_mb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def config(work, n, port, result, want, process=True):
    path = os.path.join(work, "fastbgp.toml")
    run = ", ".join('"%s"' % a for a in (SYSTEM_PYTHON, os.path.abspath(__file__), "--role", "consumer",
                                         "--result", result, "--want", str(want)))
    with open(path, "w") as f:
        f.write('[global]\nasn = %d\nrouter-id = "%s"\nlisten = []\n' % (TARGET_AS, TARGET_IP))
        for i in range(n):
            f.write('[[neighbors]]\naddress = "%s"\nport = %d\npeer-as = %d\nlocal-address = "%s"\n'
                    'default-import = "accept"\ndefault-export = "reject"\n'
                    "timers = { connect-retry = 1, hold-time = %d }\n" % (session_ip(i), port, FIRST_AS + i,
                                                                         TARGET_IP, HOLD))
        if process:
            f.write('[[processes]]\nname = "collector"\nrun = [%s]\nreceive = ["updates"]\n' % run)
    return path


def one_run(n, count, groups, timeout, process=True, settle=30.0, debug_loop=False):
    work = tempfile.mkdtemp(prefix="collector-")
    port = _free_port()
    status, stop, result = (os.path.join(work, x) for x in ("sessions.json", "stop", "result.json"))
    procs = []
    try:
        s = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--role", "sessions", "--sessions", str(n),
                              "--port", str(port), "--prefixes", str(count), "--groups", str(groups),
                              "--status", status, "--stop", stop], cwd=ROOT, start_new_session=True,
                             env=dict(os.environ, PYTHONPATH=os.pathsep.join((ROOT, HERE))))
        procs.append(s)
        _wait(status + ".ready", 600, procs, "the sessions to listen")
        d = subprocess.Popen([sys.executable, "-c", DEBUG_RUNNER if debug_loop else RUNNER, config(work, n, port, result, n * count, process)],
                             cwd=ROOT, start_new_session=True)
        procs.append(d)
        if process:
            _wait(result, timeout, procs, "the consumer to parse every prefix")
        else:
            # The same load without a program: a fixed time instead.
            time.sleep(settle)
            with open(result, "w") as f:
                json.dump({"t1": float("nan"), "prefixes": 0, "lines": 0, "notices": 0}, f)
        time.sleep(TAIL)
        hwm = _hwm_mb(d.pid)
        open(stop, "w").close()
        _wait(status, 30, procs[:1], "the sessions' report")
        with open(status) as f:
            got = json.load(f)
        st = got["sessions"]
        with open(result) as f:
            res = json.load(f)
    finally:
        for p in reversed(procs):
            kill_group(p)
    up = [x for x in st if x["up"] is not None]
    gaps = [x["max_gap"] for x in up]
    t0 = min(x["t0"] for x in up)
    return {
        "sessions_up": len(up), "sessions_lost": sum(1 for x in st if x["lost"]),
        "lost": [x["lost"] for x in st if x["lost"]][:3],
        "prefixes": res["prefixes"], "seconds": res["t1"] - t0, "lines": res["lines"], "notices": res["notices"],
        "max_gap": max(gaps) if gaps else None, "median_gap": statistics.median(gaps) if gaps else None,
        "worst_gap_began_s": max(up, key=lambda x: x["max_gap"])["gap_at"] - t0 if up else None,
        "sessions_own_lag": got["own_lag"],
        "daemon_hwm_mb": hwm,
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--role", choices=["driver", "sessions", "consumer"], default="driver")
    ap.add_argument("--sessions", type=int, default=50)
    ap.add_argument("--prefixes", type=int, default=20000, help="per session (the same prefixes on every one)")
    ap.add_argument("--groups", type=int, default=200, help="attribute groups per table")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--port", type=int)
    ap.add_argument("--status")
    ap.add_argument("--stop")
    ap.add_argument("--result")
    ap.add_argument("--want", type=int)
    ap.add_argument("--no-process", action="store_true", help="the same sessions without [[processes]] (baseline)")
    ap.add_argument("--debug-loop", action="store_true", help="log the daemon's callbacks that held its loop > 0.25 s")
    a = ap.parse_args(argv)
    if a.role == "consumer":
        consumer(a.result, a.want)
        return 0
    if a.role == "sessions":
        asyncio.run(sessions(a.sessions, a.port, a.prefixes, a.groups, a.status, a.stop))
        return 0
    runs = []
    for k in range(a.runs):
        r = one_run(a.sessions, a.prefixes, a.groups, a.timeout, process=not a.no_process, debug_loop=a.debug_loop)
        runs.append(r)
        print("run %d: %s" % (k + 1, json.dumps(r)), flush=True)
    ok = all(r["sessions_lost"] == 0 and r["sessions_up"] == a.sessions and r["max_gap"] < HOLD * 2 / 3
             for r in runs)
    med = {k: statistics.median(r[k] for r in runs) for k in ("seconds", "max_gap", "median_gap", "daemon_hwm_mb")}
    print("%d sessions x %d prefixes (%d announcements) to one JSON consumer, %d runs: median %.2f s to the "
          "last prefix parsed; keepalive gap worst %.2f s (median of runs), per-session median %.2f s, hold %d s; "
          "sessions lost %d; daemon RSS high water %.0f MB; %s" % (
              a.sessions, a.prefixes, a.sessions * a.prefixes, a.runs, med["seconds"], med["max_gap"],
              med["median_gap"], HOLD, sum(r["sessions_lost"] for r in runs), med["daemon_hwm_mb"],
              "PASS" if ok else "FAIL"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
