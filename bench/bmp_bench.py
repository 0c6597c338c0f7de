#!/usr/bin/env python
"""BMP figure: a full table mirrored to a real collector (pmacct's pmbmpd).

Every process in its own lab namespace (fastbgp/testing/lab.py)::

    sender (bench/passthrough.py --role sender: 1M IPv4 /24 in 1,000 groups)
        --eBGP--> fastbgp daemon --BMP--> pmbmpd (JSON message log)
    watcher --eBGP (hold time 9 s: a KEEPALIVE every 3 s)--> fastbgp daemon

Measured, per run: seconds from the sender's blast to (a) the daemon's
Loc-RIB holding every prefix (its API) and (b) pmbmpd having logged every
prefix as a pre-policy Route Monitoring (lines of its message log); the
daemon's RSS idle (sessions and station up, no routes) and its high-water
mark; the longest gap between two KEEPALIVEs the watcher received from the
daemon over the whole run (3 s expected; the session dies at 9 s).

Run as root::

    python bench/bmp_bench.py                      # 1M prefixes, 3 runs, medians
    python bench/bmp_bench.py --prefixes 100000 --repeat 1
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)  # run as a script from a checkout
PASSTHROUGH = os.path.join(HERE, "passthrough.py")
TARGET_AS, SENDER_AS, WATCHER_AS = 64500, 65001, 65002
BMP_PORT = 11019
WATCH_HOLD = 9


# ------------------------------------------------------------------ the watcher (its own process)


class Watcher(asyncio.Protocol):
    """A BGP peer that only records when the daemon's KEEPALIVEs arrive."""

    def __init__(self, status, asn, router_id):
        self.status = status
        self.asn = asn
        self.router_id = router_id
        self.last = None
        self.max_gap = 0.0
        self.count = 0
        self.notification = None

    def connection_made(self, transport):
        from fastbgp.wire import capabilities as caps, codec

        self.transport = transport
        self.reader = codec.MessageReader()
        pairs = caps.encode_all([caps.Multiprotocol(1, 1), caps.FourOctetAS(self.asn)])
        transport.write(codec.build_open(self.asn, WATCH_HOLD, self.router_id, pairs))

    def data_received(self, data):
        from fastbgp.wire import codec

        for mtype, _body in self.reader.feed(data):
            if mtype == 1:
                self.transport.write(codec.KEEPALIVE)
                self.tick()
            elif mtype == 4:
                now = time.monotonic()
                if self.last is not None:
                    self.max_gap = max(self.max_gap, now - self.last)
                self.last = now
                self.count += 1
                with open(self.status, "w") as f:
                    json.dump({"max_gap": self.max_gap, "keepalives": self.count}, f)
            elif mtype == 3:
                self.notification = bytes(_body).hex()

    def tick(self):
        # Our side of the session: a KEEPALIVE every hold time / 3 (RFC 4271 §10).
        from fastbgp.wire import codec

        if not self.transport.is_closing():
            self.transport.write(codec.KEEPALIVE)
            asyncio.get_running_loop().call_later(WATCH_HOLD / 3, self.tick)

    def connection_lost(self, exc):
        with open(self.status, "w") as f:
            json.dump({"closed": str(exc), "notification": self.notification, "max_gap": self.max_gap}, f)


async def watcher_main(args):
    import ipaddress

    loop = asyncio.get_running_loop()
    w = Watcher(args.status, WATCHER_AS, int(ipaddress.IPv4Address(args.local)))
    while True:
        try:
            await loop.create_connection(lambda: w, args.target, 179, local_addr=(args.local, 0))
            break
        except OSError:
            await asyncio.sleep(0.2)
    await asyncio.Event().wait()


# ------------------------------------------------------------------ orchestration


def rss(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(("VmRSS", "VmHWM")):
                k, v = line.split(":")
                out[k] = int(v.split()[0]) / 1024
    return out.get("VmRSS", 0.0), out.get("VmHWM", 0.0)


def wait(pred, timeout, what, procs=()):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        for p in procs:
            if p.poll() is not None:
                raise RuntimeError("%s exited (%s) while waiting for %s" % (p.args, p.returncode, what))
        if time.monotonic() > deadline:
            raise TimeoutError("timed out waiting for %s" % what)
        time.sleep(0.05)


def events(path):
    try:
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]
    except (OSError, ValueError):
        return []


def logged_prefixes(path):
    """Route monitoring lines pmbmpd has written so far."""
    try:
        res = subprocess.run(["grep", "-c", '"route_monitor"', path], capture_output=True, text=True)
        return int(res.stdout.strip() or 0)
    except (OSError, ValueError):
        return 0


def run_once(prefixes, timeout, policy="pre", loc_rib=False, bmp=True):
    from fastbgp.testing import lab as L

    with L.Lab() as lab:
        t = lab.add_host("t", ipv6=None)
        s = lab.add_host("s", ipv6=None)
        w = lab.add_host("w", ipv6=None)
        pm = lab.add_host("pm", ipv6=None)
        msglog = os.path.join("/dev/shm", "bmp-bench-%d.json" % os.getpid())
        pconf = os.path.join(pm.workdir, "pmbmpd.conf")
        with open(pconf, "w") as f:
            f.write("bmp_daemon_ip: %s\nbmp_daemon_port: %d\nbmp_daemon_msglog_file: %s\n"
                    "bmp_daemon_msglog_output: json\nlogfile: %s\n"
                    % (pm.ipv4, BMP_PORT, msglog, os.path.join(pm.workdir, "pmbmpd.log")))
        procs = [pm.popen(["pmbmpd", "-f", pconf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
        sock = os.path.join(t.workdir, "api.sock")
        conf = os.path.join(t.workdir, "fastbgp.toml")
        with open(conf, "w") as f:
            f.write("\n".join([
                "[global]", "asn = %d" % TARGET_AS, 'router-id = "%s"' % t.ipv4, 'listen = ["%s"]' % t.ipv4,
                "[global.api]", 'socket = "%s"' % sock, "[global.log]", 'level = "warning"',
                *(["[[bmp]]", 'address = "%s"' % pm.ipv4, "port = %d" % BMP_PORT, 'policy = "%s"' % policy,
                   "loc-rib = %s" % ("true" if loc_rib else "false"), "stats-interval = 0"] if bmp else []),
                "[[neighbors]]", 'address = "%s"' % s.ipv4, "peer-as = %d" % SENDER_AS, "passive = true",
                'default-import = "accept"', 'default-export = "reject"', "timers = { hold-time = 240 }",
                "[[neighbors]]", 'address = "%s"' % w.ipv4, "peer-as = %d" % WATCHER_AS, "passive = true",
                'default-import = "reject"', 'default-export = "reject"',
                "timers = { hold-time = %d }" % WATCH_HOLD]) + "\n")
        log = open(os.path.join(t.workdir, "fastbgp.log"), "ab")
        penv = dict(os.environ, PYTHONPATH=ROOT)
        runner = ("import sys, uvloop\nfrom fastbgp.daemon.process import run_daemon\n"
                  "uvloop.run(run_daemon(sys.argv[1], metrics=False))")
        time.sleep(0.5)
        d = t.popen([sys.executable, "-c", runner, conf], stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                    env=penv)
        procs.append(d)
        try:
            wstat = os.path.join(w.workdir, "status")
            procs.append(w.popen([sys.executable, os.path.abspath(__file__), "--role", "watcher", "--target",
                                  t.ipv4, "--local", w.ipv4, "--status", wstat], cwd=ROOT, env=penv))
            sstat = os.path.join(s.workdir, "status")
            sp = s.popen([sys.executable, PASSTHROUGH, "--role", "sender", "--target", t.ipv4, "--local", s.ipv4,
                          "--asn", str(SENDER_AS), "--count", str(prefixes), "--groups", "1000",
                          "--status", sstat], cwd=ROOT, env=penv)
            procs.append(sp)
            wait(lambda: any(e["event"] == "established" for e in events(sstat)), 120, "sender up", procs)
            wait(lambda: os.path.exists(wstat), 30, "watcher up", procs)
            if bmp:
                wait(lambda: os.path.exists(msglog) and "init" in open(msglog).read(), 30, "pmbmpd connected",
                     procs)
            time.sleep(1.0)
            idle = rss(d.pid)
            env = dict(os.environ, FASTBGP_API_SOCKET=sock)

            def rib_size():
                r = subprocess.run([sys.executable, "-m", "fastbgp", "-j", "global", "rib", "summary"],
                                   capture_output=True, text=True, env=env, cwd=ROOT)
                try:
                    return sum(x["prefixes"] for x in json.loads(r.stdout))
                except ValueError:
                    return 0

            os.kill(sp.pid, signal.SIGUSR1)
            go = wait(lambda: next((e["t"] for e in events(sstat) if e["event"] == "go"), None), 30, "go", procs)
            wait(lambda: rib_size() >= prefixes, timeout, "Loc-RIB full", procs)
            t_rib = time.monotonic() - go
            t_bmp = 0.0
            if bmp:
                views = (2 if policy == "both" else 1) + (1 if loc_rib else 0)
                wait(lambda: logged_prefixes(msglog) >= views * prefixes, timeout, "pmbmpd logged every prefix",
                     procs)
                t_bmp = time.monotonic() - go
            loaded = rss(d.pid)
            time.sleep(WATCH_HOLD / 3 + 0.5)  # one more keepalive period
            with open(wstat) as f:
                ws = json.load(f)
            if "max_gap" not in ws or "closed" in ws or "notification" in ws:
                raise RuntimeError("watcher session failed: %s" % ws)
            return {"prefixes": prefixes, "bmp": bmp, "policy": policy, "loc_rib": loc_rib, "rib_s": t_rib, "bmp_s": t_bmp, "rss_idle_mb": idle[0],
                    "hwm_mb": loaded[1], "max_keepalive_gap_s": ws["max_gap"], "keepalives": ws["keepalives"]}
        finally:
            for p in procs:
                if p.poll() is None:
                    p.terminate()
            for p in procs:
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
            log.close()
            try:
                os.unlink(msglog)
            except OSError:
                pass


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--role", choices=["watcher"])
    ap.add_argument("--target")
    ap.add_argument("--local")
    ap.add_argument("--status")
    ap.add_argument("--prefixes", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--policy", default="pre", choices=["pre", "post", "both"])
    ap.add_argument("--loc-rib", action="store_true")
    args = ap.parse_args(argv)
    if args.role == "watcher":
        import uvloop

        uvloop.run(watcher_main(args))
        return 0
    runs, base = [], []
    for i in range(args.repeat):
        # The same table without [[bmp]] in the same run: what BMP costs.
        r = run_once(args.prefixes, args.timeout, bmp=False)
        print(json.dumps(r), flush=True)
        base.append(r)
        r = run_once(args.prefixes, args.timeout, args.policy, args.loc_rib)
        print(json.dumps(r), flush=True)
        runs.append(r)
    for name, rs in (("without BMP", base), ("with BMP", runs)):
        med = {k: statistics.median(r[k] for r in rs) for k in rs[0] if isinstance(rs[0][k], float)}
        print("median of %d %s: %s" % (len(rs), name, json.dumps(med)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
