#!/usr/bin/env python
"""Route pass-through benchmark: senders -> target daemon -> receiver.

Every speaker runs in its own network namespace (fastbgp/testing/lab.py):
lean fastbgp-based senders blast a pre-encoded table, the target (fastbgp,
BIRD, FRR, GoBGP) passes it on, a counting receiver says when it holds all
of it.  Two shapes:

* ``passthrough``: 1 sender -> target -> 1 receiver, 1,000,000 IPv4 /24 in
  1,000 attribute groups (one 4 KB UPDATE per group);
* ``route-server``: 10 senders x 100,000 disjoint prefixes -> target (route
  server: RFC 7947 clients) -> 1 receiver.

Measured: seconds from the senders starting their blast (right after their
sessions are Established -- all of them, for the route-server shape) to the
receiver holding every prefix (UPDATE prefix counts from
``codec.parse_update``), and the target's resident memory (/proc/PID/status
VmRSS) idle -- sessions up, no routes -- and loaded.  The target is the only
thing measured; senders and receiver are separate processes.

Run as root (namespaces)::

    python bench/passthrough.py                       # fastbgp and BIRD, both shapes
    python bench/passthrough.py --targets fastbgp,bird,frr,gobgp --write bench/RESULTS.md
    python bench/passthrough.py --shape passthrough --prefixes 200000   # quicker

The same file holds the processes it starts (``--role sender|receiver|
fastbgp``), so the sender, receiver and target code measured is exactly what
is shown here.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

TARGET_AS = 64500
RECEIVER_AS = 64999
SENDER_AS0 = 65001
# Seconds after the receiver held every prefix when the settled memory is
# read (fastbgp's heap is trimmed after one quiet second: fastbgp.daemon.trim).
SETTLE = 3.5
BASE = 16 << 24  # prefixes 16.0.0.0/24 upwards: 1M /24 end at 31.255.255.0/24


# ============================================================== speakers


def write_status(path, **event):
    event["t"] = time.monotonic()
    with open(path, "a") as f:
        f.write(json.dumps(event) + "\n")


class Peer:
    """A minimal BGP speaker over a uvloop Protocol: OPEN exchange,
    keepalives, and a hook per UPDATE body.

    ``hold`` is the Hold Time offered in the OPEN; keepalives go out every
    hold/3 seconds (RFC 4271 §10), so a short hold time stays up.  ``afi``
    is the one unicast family offered (1 IPv4, 2 IPv6); ``on_keepalive``
    is called with the arrival time of each KEEPALIVE (bench/scale.py
    checks the target's keepalives are on time while it is loaded)."""

    def __init__(self, asn, router_id, status, on_update=None, on_established=None, hold=240, afi=1,
                 on_keepalive=None):
        self.asn = asn
        self.router_id = router_id
        self.status = status
        self.on_update = on_update
        self.on_established = on_established
        self.hold = hold
        self.afi = afi
        self.on_keepalive = on_keepalive
        self.transport = None
        self.established = False
        self.closed = asyncio.get_event_loop().create_future()

    # asyncio.Protocol
    def connection_made(self, transport):
        from fastbgp.wire import capabilities as caps, codec

        self.transport = transport
        self.reader = codec.MessageReader()
        pairs = caps.encode_all([caps.Multiprotocol(self.afi, 1), caps.RouteRefresh(), caps.FourOctetAS(self.asn)])
        transport.write(codec.build_open(self.asn if self.asn < 65536 else 23456, self.hold, self.router_id, pairs))

    def data_received(self, data):
        from fastbgp.wire import codec

        for mtype, body in self.reader.feed(data):
            if mtype == 2:
                if self.on_update is not None:
                    self.on_update(body)
            elif mtype == 1:
                self.transport.write(codec.KEEPALIVE)
            elif mtype == 4:
                if self.on_keepalive is not None:
                    self.on_keepalive(time.monotonic())
                if not self.established:
                    self.established = True
                    write_status(self.status, event="established")
                    loop = asyncio.get_event_loop()
                    loop.call_later(self.hold / 3, self._keepalive)
                    if self.on_established is not None:
                        self.on_established()
            elif mtype == 3:
                write_status(self.status, event="notification", data=bytes(body).hex())

    def _keepalive(self):
        from fastbgp.wire import codec

        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(codec.KEEPALIVE)
            asyncio.get_event_loop().call_later(self.hold / 3, self._keepalive)

    def connection_lost(self, exc):
        write_status(self.status, event="closed", error=str(exc))
        if not self.closed.done():
            self.closed.set_result(None)

    def pause_writing(self):
        pass

    def resume_writing(self):
        pass


def build_table(first, count, groups, sender_as, next_hop):
    """Pre-encoded UPDATEs: ``count`` /24s from index ``first``, split into
    ``groups`` attribute groups, packed into <= 4096-octet messages."""
    import ipaddress
    import struct

    from fastbgp.wire import codec
    from fastbgp.wire.as4 import encode_attr, encode_segments

    nh = ipaddress.IPv4Address(next_hop).packed
    per = -(-count // groups)
    msgs = []
    for g in range(groups):
        lo = first + g * per
        hi = min(first + count, lo + per)
        if lo >= hi:
            break
        packed = b"".join(struct.pack(">BI", 24, (BASE + (i << 8)))[:4] for i in range(lo, hi))
        attrs = (
            encode_attr(0x40, 1, b"\x00")
            + encode_attr(0x40, 2, encode_segments([(2, [sender_as, 64512 + (lo // per) % 1000])], 4))
            + encode_attr(0x40, 3, nh)
            + encode_attr(0xC0, 8, struct.pack(">I", (sender_as << 16 | g) & 0xFFFFFFFF))
        )
        msgs += codec.pack_updates(attrs, packed, codec.DEFAULT_CONTEXT)
    msgs.append(codec.build_eor(1, 1))
    return msgs


async def _sender(args):
    import ipaddress

    import uvloop  # noqa: F401

    loop = asyncio.get_running_loop()
    msgs = build_table(args.first, args.count, args.groups, args.asn, args.local)
    write_status(args.status, event="ready", messages=len(msgs), octets=sum(map(len, msgs)))
    go = asyncio.Event()
    loop.add_signal_handler(signal.SIGUSR1, go.set)
    peer = Peer(args.asn, int(ipaddress.IPv4Address(args.local)), args.status)
    await connect(loop, lambda: peer, args.target, args.port, args.local)
    await go.wait()
    write_status(args.status, event="go")
    peer.transport.writelines(msgs)
    await peer.closed


async def _receiver(args):
    import ipaddress

    from fastbgp.wire import codec

    loop = asyncio.get_running_loop()
    ctx = codec.Context(as4=True)
    state = {"ann": 0, "wd": 0, "done": False, "first": None, "next": 100_000}
    want = args.count

    def on_update(body):
        p = codec.parse_update(body, ctx)
        if state["first"] is None and p.n_announced:
            state["first"] = True
            write_status(args.status, event="first")
        state["ann"] += p.n_announced
        state["wd"] += p.n_withdrawn
        if state["ann"] >= state["next"]:
            state["next"] += 100_000
            write_status(args.status, event="progress", announced=state["ann"], withdrawn=state["wd"])
        if not state["done"] and state["ann"] - state["wd"] >= want:
            state["done"] = True
            write_status(args.status, event="done", announced=state["ann"], withdrawn=state["wd"])

    peer = Peer(args.asn, int(ipaddress.IPv4Address(args.local)), args.status, on_update=on_update)
    await connect(loop, lambda: peer, args.target, args.port, args.local)
    await peer.closed


async def connect(loop, factory, host, port, local):
    deadline = loop.time() + 60
    while True:
        try:
            return await loop.create_connection(factory, host, port, local_addr=(local, 0))
        except OSError:
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.2)


def _role_main(args):
    import uvloop

    if args.role == "sender":
        uvloop.run(_sender(args))
    elif args.role == "receiver":
        uvloop.run(_receiver(args))
    elif args.role == "fastbgp":
        from fastbgp.daemon.process import main_daemon

        # As ``fastbgp daemon`` runs (one process, or a front and its workers).
        sys.exit(main_daemon(argparse.Namespace(config=args.config, log_level="warning")))


# ============================================================== orchestration


def _descendants(pid):
    """pid and every process below it (OpenBGPD's RIB lives in a child,
    fastbgp's workers under their front)."""
    from fastbgp.loadtest import procnet

    return procnet.descendants([pid])


def _summed_kb(pid, name, keys):
    """procnet.proc_kb of ``pid`` and its descendants, summed (a child that
    ended meanwhile left out)."""
    from fastbgp.loadtest import procnet

    total = [0] * len(keys)
    for p in _descendants(pid):
        try:
            total = [a + b for a, b in zip(total, procnet.proc_kb(p, name, keys))]
        except FileNotFoundError:
            if p == pid:
                raise
    return total


def rss_mb(pid):
    """(VmRSS, VmHWM) in MB of a process and its threads, summed over the
    process and its descendants (the HWM sum is each one's own peak)."""
    rss, hwm = _summed_kb(pid, "status", (b"VmRSS:", b"VmHWM:"))
    return rss / 1024, hwm / 1024


def pss_mb(pid):
    """Proportional set size in MB summed over the process and its
    descendants: each page shared by k processes counts 1/k in each, so
    the sum is the memory the whole daemon occupies (a front and workers
    forked from it share their imported modules; their RSS sum counts
    those pages once per process).  Shared libraries count their share
    with every other process mapping them, for BIRD as for fastbgp."""
    return _summed_kb(pid, "smaps_rollup", (b"Pss:",))[0] / 1024


def read_events(path):
    try:
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []


def wait_event(path, name, timeout, procs=()):
    deadline = time.monotonic() + timeout
    while True:
        for ev in read_events(path):
            if ev["event"] == name:
                return ev
            if ev["event"] == "notification":
                raise RuntimeError("%s: NOTIFICATION %s" % (path, ev.get("data")))
        for p in procs:
            if p.poll() is not None:
                raise RuntimeError("a process exited (%s) while waiting for %s in %s" % (p.returncode, name, path))
        if time.monotonic() > deadline:
            raise TimeoutError("no %r in %s after %ss" % (name, path, timeout))
        time.sleep(0.02)


def fastbgp_workers(kind):
    """The ``workers`` of a fastbgp target: "fastbgp" runs one process,
    "fastbgp-wN" a front and N workers (fastbgp.daemon.front)."""
    if kind == "fastbgp":
        return 0
    if kind.startswith("fastbgp-w") and kind[9:].isdigit():
        return int(kind[9:])
    return None


def _fastbgp_config(t, senders, receiver, rs):
    lines = [
        "[global]",
        "asn = %d" % TARGET_AS,
        'router-id = "%s"' % t.ipv4,
        'listen = ["%s"]' % t.ipv4,
        "[global.log]",
        'level = "warning"',
    ]
    for i, s in enumerate(senders):
        lines += ["[[neighbors]]", 'address = "%s"' % s.ipv4, "peer-as = %d" % (SENDER_AS0 + i), "passive = true",
                  'default-import = "accept"', 'default-export = "reject"',
                  "timers = { hold-time = 240 }"]
        if rs:
            lines.append("route-server-client = true")
    lines += ["[[neighbors]]", 'address = "%s"' % receiver.ipv4, "peer-as = %d" % RECEIVER_AS, "passive = true",
              'default-import = "reject"', 'default-export = "accept"', "timers = { hold-time = 240 }"]
    if rs:
        lines.append("route-server-client = true")
    return "\n".join(lines) + "\n"


PROFILE = None  # --profile: py-spy output file for the fastbgp target


def start_target(kind, lab, t, senders, receiver, rs):
    """(pid to measure, process, stop function)."""
    from fastbgp.testing import lab as L

    workers = fastbgp_workers(kind)
    if workers is not None:
        path = os.path.join(t.workdir, "fastbgp.toml")
        with open(path, "w") as f:
            from fastbgp.testing.daemonlab import workers_toml

            # As ``fastbgp daemon`` runs: its API served (one process
            # too: what an operator runs, and what BIRD's control socket
            # compares with), ``workers = 1`` for one process.
            text = workers_toml(_fastbgp_config(t, senders, receiver, rs), workers or 1,
                                os.path.join(t.workdir, "api.sock"))
            f.write(text)
        log = open(os.path.join(t.workdir, "fastbgp.log"), "ab")
        argv = [sys.executable, os.path.abspath(__file__), "--role", "fastbgp", "--config", path]
        if PROFILE:
            argv = ["py-spy", "record", "-r", "2000", "-f", "speedscope" if PROFILE.endswith(".json") else ("raw" if PROFILE.endswith(".txt") else "flamegraph"),
                    "-o", PROFILE, "--"] + argv
        proc = t.popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        if PROFILE:
            time.sleep(1.0)
            return proc.pid, proc, lambda: (os.kill(proc.pid, signal.SIGINT), proc.wait(30), log.close())
        time.sleep(0.3)
        return proc.pid, proc, lambda: (proc.terminate(), proc.wait(10), log.close())
    neighbors = []
    for i, s in enumerate(senders):
        opts = {}
        if kind == "bird":
            opts = {"import": "all", "export": "none", "extra": "rs client;" if rs else ""}
        elif kind == "frr":
            opts = {"af_extra": "neighbor %s route-map NONE out%s" % (
                s.ipv4, "\nneighbor %s route-server-client" % s.ipv4 if rs else "")}
        elif kind == "gobgp" and rs:
            opts = {"route_server_client": True}
        elif kind == "openbgpd" and rs:
            opts = {"extra": "transparent-as yes"}
        neighbors.append(L.Neighbor(s.ipv4, SENDER_AS0 + i, passive=True, hold_time=240, options=opts))
    ropts = {}
    if kind == "bird":
        ropts = {"import": "none", "export": "all", "extra": "rs client;" if rs else ""}
    elif kind == "frr" and rs:
        ropts = {"af_extra": "neighbor %s route-server-client" % receiver.ipv4}
    elif kind == "gobgp" and rs:
        ropts = {"route_server_client": True}
    elif kind == "openbgpd" and rs:
        ropts = {"extra": "transparent-as yes"}
    neighbors.append(L.Neighbor(receiver.ipv4, RECEIVER_AS, passive=True, hold_time=240, options=ropts))
    if kind == "bird":
        d = L.Bird(t, TARGET_AS, neighbors=neighbors)
    elif kind == "frr":
        d = L.FRR(t, TARGET_AS, neighbors=neighbors, extra_config="route-map NONE deny 10\n")
    elif kind == "gobgp":
        d = L.GoBGP(t, TARGET_AS, neighbors=neighbors, log_level="warn")
    elif kind == "openbgpd":
        # Last matching rule wins in OpenBGPD unless `quick`: nothing back
        # to the senders, the lab's closing "allow to any" for the receiver.
        d = L.OpenBGPD(t, TARGET_AS, neighbors=neighbors,
                       extra_config="\n".join("deny quick to %s" % s.ipv4 for s in senders))
    else:
        raise ValueError(kind)
    d.start()
    return d.proc.pid, d.proc, d.stop


def run_case(kind, shape, prefixes, groups, n_senders, timeout, verbose=False):
    from fastbgp.testing import lab as L

    rs = shape == "route-server"
    with L.Lab() as lab:
        t = lab.add_host("t", ipv6=None)
        r = lab.add_host("r", ipv6=None)
        ss = [lab.add_host("s%d" % i, ipv6=None) for i in range(n_senders)]
        pid, tproc, stop = start_target(kind, lab, t, ss, r, rs)
        me = os.path.abspath(__file__)
        procs = [tproc]
        try:
            rstat = os.path.join(r.workdir, "status")
            rp = r.popen([sys.executable, me, "--role", "receiver", "--target", t.ipv4, "--local", r.ipv4,
                          "--asn", str(RECEIVER_AS), "--count", str(prefixes), "--status", rstat], cwd=ROOT)
            procs.append(rp)
            wait_event(rstat, "established", 60, procs)
            per = prefixes // n_senders
            sstats = []
            sprocs = []
            for i, s in enumerate(ss):
                st = os.path.join(s.workdir, "status")
                sp = s.popen([sys.executable, me, "--role", "sender", "--target", t.ipv4, "--local", s.ipv4,
                              "--asn", str(SENDER_AS0 + i), "--first", str(i * per), "--count", str(per),
                              "--groups", str(max(1, groups // n_senders)), "--status", st], cwd=ROOT)
                sstats.append(st)
                sprocs.append(sp)
            procs += sprocs
            for st in sstats:
                wait_event(st, "established", 120, procs)
            time.sleep(1.0)  # let the target settle (timers, first keepalives)
            idle = rss_mb(pid)
            pss_idle = pss_mb(pid)
            cpu0 = cpu_seconds(pid)
            for sp in sprocs:
                os.kill(sp.pid, signal.SIGUSR1)
            go = min(wait_event(st, "go", 30, procs)["t"] for st in sstats)
            try:
                done = wait_event(rstat, "done", timeout, procs)
            except TimeoutError:
                prog = [e for e in read_events(rstat) if e["event"] == "progress"]
                have = prog[-1]["announced"] if prog else 0
                raise TimeoutError("> %gs (timeout; %s of %s at the receiver)"
                                   % (timeout, "{:,}".format(have), "{:,}".format(prefixes))) from None
            seconds = done["t"] - go
            cpu = cpu_seconds(pid) - cpu0
            loaded = rss_mb(pid)
            pss = pss_mb(pid)
            time.sleep(0.5)
            loaded = max(loaded, rss_mb(pid))
            pss = max(pss, pss_mb(pid))
            # What stays once the daemon is quiet (what ``ps`` shows an
            # operator later): the memory bar is judged on the figure above.
            time.sleep(max(0.0, done["t"] + SETTLE - time.monotonic()))
            settled = pss_mb(pid)
            return {"target": kind, "shape": shape, "prefixes": prefixes, "senders": n_senders,
                    "seconds": seconds, "rss_idle_mb": idle[0], "rss_mb": loaded[0], "hwm_mb": loaded[1],
                    "pss_idle_mb": pss_idle, "pss_mb": pss, "pss_settled_mb": settled,
                    "received": done.get("announced"), "withdrawn": done.get("withdrawn"), "cpu_s": cpu}
        finally:
            stop_all(stop, procs)


def cpu_seconds(pid):
    """utime + stime so far (/proc/PID/stat fields 14 and 15, clock ticks)
    of the target's process and its descendants (OpenBGPD's RIB, fastbgp's
    workers): from the blast to the receiver holding everything, how much
    CPU the target spent."""
    total = 0
    for p in _descendants(pid):
        try:
            with open("/proc/%d/stat" % p) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def stop_all(stop, procs):
    """Stop a target (``stop()``; its failure is not the figure's) and kill
    whatever of ``procs`` still runs (also used by bench/scale.py)."""
    try:
        stop()
    except Exception:
        pass
    for p in procs:
        if p.poll() is None:
            p.kill()


def code_state():
    """(HEAD's short hash, a digest of the working tree's changes to
    tracked files, "" when there are none): what the fastbgp under test is."""
    head = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    diff = subprocess.run(["git", "-C", ROOT, "diff", "HEAD"], capture_output=True).stdout
    return head.stdout.strip(), hashlib.sha1(diff).hexdigest()[:8] if diff else ""


def version(kind, start=None):
    """The version a results table names for ``kind``: the peer daemon's
    own, or for fastbgp the git commit (``+changes`` while the working tree
    differs from it).  ``start``: code_state() when the run began, the
    version named; a run the code changed under is said to be one (it
    measured two versions).  The one version reader of the bench scripts."""
    argv = {"bird": ["bird", "--version"], "openbgpd": ["bgpd", "-V"], "frr": ["/usr/lib/frr/bgpd", "--version"],
            "gobgp": ["gobgpd", "--version"]}
    try:
        if kind in argv:
            out = subprocess.run(argv[kind], capture_output=True, text=True)
            return (out.stderr or out.stdout).strip().split("\n")[0].split()[-1]
        now = code_state()
        head, changes = start or now
        label = "git " + head + ("+changes" if changes else "")
        if start is not None and start != now:
            label += " (the code changed during this run: not one version)"
        return label
    except Exception:
        return "?"


NOTES = """\
How it is measured (bench/passthrough.py):

* every speaker runs in its own network namespace on a virtual Ethernet
  (fastbgp/testing/lab.py); the senders and the receiver are lean fastbgp
  processes (a pre-encoded blaster, a receiver counting prefixes with
  codec.parse_update), the same for every target;
* passthrough: 1 sender -> target -> 1 receiver, 1,000,000 IPv4 /24 in
  1,000 attribute groups, one 4 KB UPDATE per group; route-server: 10
  senders x 100,000 disjoint prefixes, the target configured as a route
  server (fastbgp ``route-server-client``, BIRD ``rs client``, FRR
  ``route-server-client``, GoBGP ``route-server-client``);
* seconds: from the senders starting their blast (sent right after their
  sessions are Established: all of them, for the route-server shape) to
  the receiver holding every prefix;
* RSS: VmRSS of the target process (/proc/PID/status): idle = sessions up,
  no routes; loaded = right after the receiver holds everything (FRR: bgpd
  only, zebra not counted);
* the targets export nothing back to the senders, everything to the
  receiver; fastbgp runs ``fastbgp.daemon.process.run_daemon`` on uvloop with the
  compiled codec and RIB, no API/metrics listeners.
"""


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--role", choices=["sender", "receiver", "fastbgp"])
    ap.add_argument("--target", default=None)
    ap.add_argument("--port", type=int, default=179)
    ap.add_argument("--local")
    ap.add_argument("--asn", type=int)
    ap.add_argument("--first", type=int, default=0)
    ap.add_argument("--count", type=int, default=1_000_000)
    ap.add_argument("--groups", type=int, default=1000)
    ap.add_argument("--status")
    ap.add_argument("--config")
    ap.add_argument("--targets", default="fastbgp,bird", help="comma-separated: fastbgp,bird,frr,gobgp")
    ap.add_argument("--shape", default="both", choices=["both", "passthrough", "route-server"])
    ap.add_argument("--prefixes", type=int, default=1_000_000)
    ap.add_argument("--senders", type=int, default=10, help="senders of the route-server shape")
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--gobgp-timeout", type=float, default=120)
    ap.add_argument("--repeat", type=int, default=1, help="runs per case; the median is reported")
    ap.add_argument("--write", help="write the results as Markdown to this file")
    ap.add_argument("--profile", help="py-spy the fastbgp target into this file (.svg flame graph, .json speedscope)")
    args = ap.parse_args(argv)
    if args.role:
        _role_main(args)
        return 0
    from rich.console import Console
    from rich.table import Table

    global PROFILE
    PROFILE = args.profile

    from fastbgp.wire.bench import machine

    console = Console(width=160)
    shapes = ["passthrough", "route-server"] if args.shape == "both" else [args.shape]
    rows = []
    for shape in shapes:
        for kind in args.targets.split(","):
            n = 1 if shape == "passthrough" else args.senders
            timeout = args.gobgp_timeout if kind == "gobgp" else args.timeout
            runs = []
            for _ in range(args.repeat):
                try:
                    res = run_case(kind, shape, args.prefixes, 1000, n, timeout)
                except (TimeoutError, RuntimeError) as exc:
                    res = {"target": kind, "shape": shape, "prefixes": args.prefixes, "senders": n,
                           "error": str(exc).splitlines()[0][:100]}
                runs.append(res)
                console.print(res)
                if "error" in res:
                    break
            ok = sorted((r for r in runs if "error" not in r), key=lambda r: r["seconds"])
            rows.append(ok[len(ok) // 2] if ok else runs[-1])
    table = Table(title="Pass-through: seconds to the receiver holding every prefix; target RSS")
    for col in ("shape", "target", "version", "prefixes", "seconds", "target CPU s", "RSS idle MB", "RSS loaded MB",
                "over idle MB", "PSS loaded MB"):
        table.add_column(col, justify="right" if col not in ("shape", "target", "version") else "left")
    md = ["| shape | target | version | prefixes | seconds | target CPU s | RSS idle MB | RSS loaded MB | over idle MB "
          "| PSS loaded MB |", "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if "error" in r:
            cells = [r["shape"], r["target"], version(r["target"]), "{:,}".format(r["prefixes"]),
                     r["error"], "", "", "", "", ""]
        else:
            cells = [r["shape"], r["target"], version(r["target"]), "{:,}".format(r["prefixes"]),
                     "%.2f" % r["seconds"], "%.2f" % r["cpu_s"], "%.0f" % r["rss_idle_mb"], "%.0f" % r["rss_mb"],
                     "%.0f" % (r["rss_mb"] - r["rss_idle_mb"]), "%.0f" % r["pss_mb"]]
        table.add_row(*cells)
        md.append("| " + " | ".join(cells) + " |")
    console.print(table)
    mach = machine()
    console.print(mach)
    if args.write:
        cmd = "python bench/passthrough.py " + " ".join(a for a in (argv if argv is not None else sys.argv[1:]))
        with open(args.write, "w") as f:
            f.write("# Pass-through benchmark\n\n")
            f.write("Machine: %s (sender, target and receiver share it)\n\nCommand: `%s`%s\n\n"
                    % (mach, cmd.strip(), " (median of %d runs per case)" % args.repeat if args.repeat > 1 else ""))
            f.write("\n".join(md) + "\n\n" + NOTES)
    return 0


if __name__ == "__main__":
    sys.exit(main())
