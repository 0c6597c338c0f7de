"""fastbgp loadtest against real BGP daemons, each in its own network
namespace (fastbgp/testing/lab.py), and the results table written to
bench/LOADTEST_RESULTS.md by this one command::

    python bench/loadtest_targets.py                      # everything
    python bench/loadtest_targets.py --targets bird --prefixes 200000
    python bench/loadtest_targets.py --hold-minutes 5     # + 1,000 sessions held 5 min

Needs root and the daemons of .ci/install-peers.sh.  Only TEST-NET
addresses are put on interfaces (192.0.2.0/24); the synthetic prefixes only
ever travel inside the namespaces.  Everything is torn down at the end
(also on errors: the lab's context manager).

What is measured, all in one run, on this machine:

1. BIRD, 1 peer, 1M IPv4 /24s, a monitor session on a second address:
   * fastbgp loadtest (convergence = the monitor saw the last prefix);
   * a raw pre-encoded socket write of the same bytes (OPEN/KEEPALIVE by
     hand, then one sendall) timed by the same monitor: the bar is
     loadtest within 10% of it;
   * ExaBGP 4.2 as the generator of a smaller table, the same monitor
     counting: the bar is loadtest >= 200x ExaBGP's prefixes/s.
   Rates compare like with like: prefixes / (last - first prefix seen by
   the monitor).
2. BIRD, GoBGP and FRR as targets: 1M pass-through (1 peer) and 10 x 100k
   (10 peers, disjoint tables), with the target's CPU seconds and peak RSS.
3. ``--hold-minutes M``: 1,000 sessions from one process held M minutes
   with keepalives against a fastbgp Speaker target on loopback, zero
   hold-timer expiries required.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

DUT_AS = 65000
PEER_AS = 64512
MON_AS = 65534
EXA_AS = 64700
PEER_BASE = 10  # 192.0.2.10 ...
MON_ADDR = "192.0.2.3"
EXA_ADDR = "192.0.2.4"


# ---------------------------------------------------------------------- children (run inside the gen namespace)


async def _monitor(target, addr, asn, family="ipv4"):
    from fastbgp.loadtest.peer import ESTABLISHED, MonitorSession, SessionConfig, Ticker

    loop = asyncio.get_running_loop()
    cfg = SessionConfig(-1, addr, asn, 0x0AFFFF03, target, 179, DUT_AS, 90, None, True, False, False, None, None,
                        asn != DUT_AS, family)
    mon = MonitorSession(cfg, loop)
    Ticker(loop, [mon]).start()
    deadline = time.monotonic() + 60
    while mon.state != ESTABLISHED:
        if time.monotonic() > deadline:
            raise RuntimeError("monitor not Established: %s" % mon.last_error)
        if mon.state == 0:
            try:
                await mon.connect()
            except OSError as exc:
                mon.last_error = str(exc)
                await asyncio.sleep(0.5)
                continue
        await mon.wait_change(1)
    return mon


async def _wait_count(mon, n, settle=1.0, timeout=900):
    deadline = time.monotonic() + timeout
    while True:
        now = time.monotonic()
        if mon.announced >= n and now - mon.last_change >= settle:
            return True
        if now > deadline:
            return False
        await asyncio.sleep(0.02)


async def child_raw(target, local, n):
    """Pre-encoded bytes written raw: OPEN / KEEPALIVE by hand, then one
    sendall of the whole table; the monitor times it."""
    from fastbgp.wire import capabilities as caps, codec
    from fastbgp.session import transport
    from fastbgp.loadtest import generator as G, scenario as S

    plan = G.TablePlan(S.Table(prefixes=n))
    st = plan.stream(G.PeerInfo(0, PEER_AS, local, True), G.Encoding())
    data = bytes(st.buf)
    mon = await _monitor(target, MON_ADDR, MON_AS)
    loop = asyncio.get_running_loop()
    sock = transport.create_connect_socket(target, local_address=local)
    await loop.sock_connect(sock, (target, 179))
    op = codec.build_open(PEER_AS, 90, 0x0AFFFF10, caps.encode_all([caps.Multiprotocol(1, 1), caps.FourOctetAS(PEER_AS)]))
    await loop.sock_sendall(sock, op)
    reader = codec.MessageReader()
    got = []
    while not any(t == 4 for t, _b in got):
        chunk = await loop.sock_recv(sock, 65536)
        if not chunk:
            raise RuntimeError("target closed the raw session")
        got += reader.feed(chunk)
        if any(t == 1 for t, _b in got):
            await loop.sock_sendall(sock, codec.KEEPALIVE)
    await loop.sock_sendall(sock, codec.KEEPALIVE)

    async def drain():
        while True:
            if not await loop.sock_recv(sock, 1 << 20):
                return

    dt = loop.create_task(drain())
    mon.first_change = None
    t0 = time.monotonic()
    await loop.sock_sendall(sock, data)
    t_sent = time.monotonic()
    ok = await _wait_count(mon, n)
    out = {"ok": ok, "prefixes": mon.announced, "send_time": t_sent - t0, "converge_time": mon.last_change - t0,
           "first": mon.first_change - t0 if mon.first_change else None, "last": mon.last_change - t0,
           "octets": len(data)}
    dt.cancel()
    sock.close()
    mon.stop()
    print(json.dumps(out))


async def child_watch(target, n):
    """Monitor only: first/last time the prefixes arrive (ExaBGP runs)."""
    mon = await _monitor(target, MON_ADDR, MON_AS)
    print(json.dumps({"ready": True}), flush=True)
    ok = await _wait_count(mon, n, settle=2.0, timeout=1200)
    print(json.dumps({"ok": ok, "prefixes": mon.announced, "span": mon.last_change - mon.first_change
                      if mon.first_change else None}), flush=True)
    mon.stop()


# ---------------------------------------------------------------------- orchestration


def _lab():
    from fastbgp.testing import lab as L

    return L


def _daemon(L, kind, host, peers, log):
    """A target daemon with ``peers`` load peers (192.0.2.10+), the monitor
    and the ExaBGP host as neighbours."""
    neighbors = []
    for i in range(peers):
        opts = {}
        if kind == "bird":
            opts = {"import": "all", "export": "none"}
        neighbors.append(L.Neighbor("192.0.2.%d" % (PEER_BASE + i), PEER_AS + i, passive=True, options=opts))
    mon_opts = {"import": "none", "export": "all"} if kind == "bird" else {}
    neighbors.append(L.Neighbor(MON_ADDR, MON_AS, passive=True, options=mon_opts))
    if kind == "bird":
        neighbors.append(L.Neighbor(EXA_ADDR, EXA_AS, passive=True, options={"import": "all", "export": "none"}))
    cls = {"bird": L.Bird, "gobgp": L.GoBGP, "frr": L.FRR}[kind]
    kw = {"log_level": "warn"} if kind == "gobgp" else {}
    d = cls(host, DUT_AS, router_id="192.0.2.1", neighbors=neighbors, **kw)
    d.start()
    return d


def _pids(d):
    pids = [d.proc.pid]
    zp = getattr(d, "zebra_proc", None)
    if zp is not None:
        pids.append(zp.pid)
    return pids


def _loadtest(gen, args, timeout=1800):
    fd, path = tempfile.mkstemp(suffix=".json")
    os.close(fd)
    argv = [sys.executable, "-m", "fastbgp.loadtest.cli", "loadtest", "--no-progress", "--json", path] + args
    res = gen.run(argv, timeout=timeout)
    try:
        with open(path) as f:
            rep = json.load(f)
    except (OSError, ValueError):
        raise RuntimeError("loadtest failed (%s):\n%s\n%s" % (res.returncode, res.stdout[-3000:], res.stderr[-3000:]))
    finally:
        os.unlink(path)
    return rep


def _announce(rep):
    return next(p for p in rep["phases"] if p["kind"] == "announce")


def _span(rep):
    """prefixes / (last - first seen at the monitor) of the announce phase."""
    p = _announce(rep)
    if p["converged"] is None or p["first_received"] is None:
        return None
    span = p["converged"] - p["first_received"]
    return p["expected"] / span if span > 0 else None


def run_case(L, lab_, kind, gen, dut, peers, prefixes):
    d = _daemon(L, kind, dut, peers, None)
    try:
        args = ["--target", "192.0.2.1", "--target-as", str(DUT_AS), "--peers", str(peers),
                "--peer-address", "192.0.2.%d" % PEER_BASE, "--peer-as", str(PEER_AS), "--prefixes", str(prefixes),
                "--overlap", "0", "--monitor", MON_ADDR, "--monitor-as", str(MON_AS), "--timeout", "900",
                "--target-pid", ",".join(map(str, _pids(d))), "--settle", "2", "--name", "%s-%dx%d" % (kind, peers, prefixes)]
        rep = _loadtest(gen, args)
    finally:
        d.stop()
    return rep


def run_raw(L, dut, gen, prefixes):
    d = _daemon(L, "bird", dut, 1, None)
    try:
        res = gen.run([sys.executable, os.path.abspath(__file__), "--child", "raw", "--prefixes", str(prefixes)],
                      timeout=1800)
        line = [l for l in res.stdout.splitlines() if l.startswith("{")]
        if not line:
            raise RuntimeError("raw baseline failed:\n%s\n%s" % (res.stdout[-2000:], res.stderr[-2000:]))
        return json.loads(line[-1])
    finally:
        d.stop()


def run_exabgp(L, lab_, dut, gen, n):
    """ExaBGP 4.2 as the generator, the way it is driven in practice: one
    ``announce route`` API command per prefix (its static-route config is
    read only at start-up)."""
    d = _daemon(L, "bird", dut, 0, None)
    exa_host = lab_.add_host("exa", ipv4=EXA_ADDR + "/24", ipv6=None)
    watch = subprocess.Popen(gen.wrap([sys.executable, os.path.abspath(__file__), "--child", "watch",
                                       "--prefixes", str(n)]), stdout=subprocess.PIPE, text=True)
    try:
        first = watch.stdout.readline()
        if "ready" not in first:
            raise RuntimeError("monitor for the ExaBGP run did not come up: %r" % first)
        exa = L.ExaBGP(exa_host, EXA_AS, router_id=EXA_ADDR, neighbors=[L.Neighbor("192.0.2.1", DUT_AS)])
        exa.start()
        exa.wait_established("192.0.2.1", timeout=60)
        cmds = "".join("announce route 16.%d.%d.0/24 next-hop %s\n" % (i >> 8, i & 255, EXA_ADDR) for i in range(n))
        t0 = time.monotonic()
        fd = os.open(exa.fifo, os.O_WRONLY)
        try:
            view = memoryview(cmds.encode())
            while view:
                k = os.write(fd, view)
                view = view[k:]
        finally:
            os.close(fd)
        out, _err = watch.communicate(timeout=1800)
        res = json.loads(out.strip().splitlines()[-1])
        res["wall"] = time.monotonic() - t0
        exa.stop()
        return res
    finally:
        if watch.poll() is None:
            watch.kill()
        d.stop()


def hold_test(minutes, sessions=1000, rate=100_000.0):
    """1,000 sessions from one process held ``minutes`` with keepalives
    against a fastbgp Speaker in another process (loopback)."""
    import multiprocessing

    import test_loadtest as T
    from fastbgp.loadtest import runner, scenario as S

    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=T._target_process, args=(child, sessions, 9), daemon=True)
    proc.start()
    try:
        port = parent.recv()
        sc = S.from_dict({"target": {"address": "127.0.0.1", "asn": 65000, "port": port},
                          "peers": {"count": sessions, "address": "127.0.10.1", "hold-time": 9,
                                    "establish-timeout": 120, "connect-concurrency": 100},
                          "table": {"prefixes": 1000, "overlap": 0.0}, "progress": False,
                          # Sending the whole time: every peer withdraws and
                          # re-announces its table back to back for the hold,
                          # at ``rate`` prefixes/s over all peers -- what this
                          # target (one Python process) keeps up with; flat
                          # out it stops reading for longer than the hold time.
                          "phases": [{"kind": "announce"},
                                     {"kind": "flap", "duration": minutes * 60, "interval": 0.0, "rate": rate,
                                      "burst": 100}]})
        rep = asyncio.run(runner.run(sc))
        parent.send("report")
        tgt = parent.recv()
    finally:
        proc.join(30)
    return rep, tgt


class _NoLab:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def fmt(x, spec="{:,.0f}"):
    return "-" if x is None else spec.format(x)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child", choices=("raw", "watch"), help=argparse.SUPPRESS)
    ap.add_argument("--targets", default="bird,gobgp,frr")
    ap.add_argument("--prefixes", type=int, default=1_000_000)
    ap.add_argument("--multi", type=int, default=10, help="peers of the multi-peer case (x prefixes/peers each)")
    ap.add_argument("--exabgp-prefixes", type=int, default=20_000)
    ap.add_argument("--skip-raw", action="store_true")
    ap.add_argument("--skip-exabgp", action="store_true")
    ap.add_argument("--hold-minutes", type=float, default=0.0, help="also hold 1,000 sessions this long")
    ap.add_argument("--hold-rate", type=float, default=100_000.0,
                    help="prefixes/s (all sessions) withdrawn and re-announced during the hold")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "LOADTEST_RESULTS.md"))
    args = ap.parse_args(argv)
    if args.child == "raw":
        asyncio.run(child_raw("192.0.2.1", "192.0.2.%d" % PEER_BASE, args.prefixes))
        return 0
    if args.child == "watch":
        asyncio.run(child_watch("192.0.2.1", args.prefixes))
        return 0

    from fastbgp.wire import bench as B

    L = _lab()
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    missing = [] if not targets else L.missing_binaries("ip", *[b for t in targets for b in {"bird": L.Bird, "gobgp": L.GoBGP,
                                                                       "frr": L.FRR}[t].binaries])
    if not L.is_root() or missing:
        print("needs root and %s" % (", ".join(missing) or "the daemons"), file=sys.stderr)
        return 2
    lines = ["# fastbgp loadtest against real daemons", "",
             "Written by `python bench/loadtest_targets.py %s` on %s." % (" ".join(argv or sys.argv[1:]), time.strftime("%Y-%m-%d")),
             "", "Machine: %s.  Each daemon in its own network namespace (fastbgp/testing/lab.py), the tester in "
             "another; peers on 192.0.2.10+, monitor on %s.  Rates are prefixes/s." % (B.machine(), MON_ADDR), ""]
    results = {}
    with (L.Lab() if targets else _NoLab()) as lab_:
        dut = lab_.add_host("dut", ipv4="192.0.2.1/24", ipv6=None) if targets else None
        gen = lab_.add_host("gen", ipv4="192.0.2.2/24", ipv6=None) if targets else None
        for ip in [] if not targets else [MON_ADDR] + ["192.0.2.%d" % (PEER_BASE + i) for i in range(max(args.multi, 1))]:
            L._run([L.IP, "-n", gen.ns, "addr", "add", ip + "/24", "dev", "eth0"])
        n = args.prefixes
        if "bird" in targets:
            print("BIRD: loadtest 1 x %d ..." % n, flush=True)
            rep = run_case(L, lab_, "bird", gen, dut, 1, n)
            results[("bird", 1)] = rep
            raw = None
            if not args.skip_raw:
                print("BIRD: raw pre-encoded write of the same bytes ...", flush=True)
                raw = run_raw(L, dut, gen, n)
            exa = None
            if not args.skip_exabgp:
                print("BIRD: ExaBGP generating %d prefixes ..." % args.exabgp_prefixes, flush=True)
                exa = run_exabgp(L, lab_, dut, gen, args.exabgp_prefixes)
            p = _announce(rep)
            lt_rate = _span(rep)
            lines += ["## BIRD: the tester is not the bottleneck", "",
                      "| generator | prefixes | monitor saw first (s) | converged (s) | prefixes/s (first..last at monitor) | ratio |",
                      "|---|---:|---:|---:|---:|---:|"]
            lines.append("| fastbgp loadtest | %s | %s | %s | %s | |" % (fmt(p["expected"]), fmt(p["first_received"] - p["start"] if p["first_received"] else None, "{:.3f}"),
                                                                        fmt(p["converge_time"], "{:.3f}"), fmt(lt_rate)))
            if raw:
                raw_rate = raw["prefixes"] / (raw["last"] - raw["first"]) if raw.get("first") is not None and raw["last"] > raw["first"] else None
                ratio = p["converge_time"] / raw["converge_time"] if raw["converge_time"] else None
                lines.append("| raw socket write, same bytes | %s | %s | %s | %s | loadtest/raw convergence time = %s (bar: <= 1.10) |" % (
                    fmt(raw["prefixes"]), fmt(raw["first"], "{:.3f}"), fmt(raw["converge_time"], "{:.3f}"), fmt(raw_rate),
                    fmt(ratio, "{:.3f}")))
                results["raw"] = raw
            if exa:
                exa_rate = exa["prefixes"] / exa["span"] if exa.get("span") else None
                ratio = lt_rate / exa_rate if lt_rate and exa_rate else None
                lines.append("| ExaBGP 4.2 (API: one `announce route` per prefix) | %s | | %s | %s | loadtest/ExaBGP = %s (bar: >= 200) |" % (
                    fmt(exa["prefixes"]), fmt(exa["wall"], "{:.2f}"), fmt(exa_rate), fmt(ratio, "{:.0f}x")))
                results["exabgp"] = exa
            lines.append("")
        for kind in targets:
            if (kind, 1) not in results:
                print("%s: loadtest 1 x %d ..." % (kind, n), flush=True)
                results[(kind, 1)] = run_case(L, lab_, kind, gen, dut, 1, n)
            print("%s: loadtest %d x %d ..." % (kind, args.multi, n // args.multi), flush=True)
            results[(kind, args.multi)] = run_case(L, lab_, kind, gen, dut, args.multi, n // args.multi)
    if targets:
        lines += ["## Targets", "",
                  "| target | case | sessions up | delivered (s) | delivered rate | monitor first (s) | converged (s) | convergence rate | canary median/max (ms) | target CPU (s) | target peak RSS (MiB) | hold expiries |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for kind in targets:
        for peers in (1, args.multi):
            rep = results[(kind, peers)]
            p = _announce(rep)
            est = next(x for x in rep["phases"] if x["kind"] == "establish")
            can = p["canaries"]
            lines.append("| %s | %d x %s | %d/%d | %s | %s | %s | %s%s | %s | %s | %s | %s | %d |" % (
                kind, peers, fmt(n // peers), est["established"], est["sessions"], fmt(p["deliver_time"], "{:.2f}"),
                fmt(p["deliver_rate"]), fmt(p["first_received"] - p["start"] if p["first_received"] else None, "{:.3f}"),
                fmt(p["converge_time"], "{:.2f}"), " (timeout)" if p["timed_out"] else "", fmt(p["converge_rate"]),
                "%s/%s" % (fmt(can["median"] * 1000 if can["median"] is not None else None, "{:.0f}"),
                           fmt(can["max"] * 1000 if can["max"] is not None else None, "{:.0f}")),
                fmt(p["target_cpu"], "{:.1f}"),
                fmt(rep["target"]["peak_rss_kb"] / 1024 if rep["target"].get("peak_rss_kb") else None, "{:.0f}"),
                rep["totals"]["hold_expired"]))
    if targets:
        lines += ["", "Delivered: seconds until the target had taken every octet (its TCP acknowledged it and, "
              "seen in its /proc/PID/net/tcp, the process read it); delivered rate: prefixes / that time, what the "
              "target accepted off the wire per second.  Converged: the monitor saw every "
              "expected prefix and nothing changed for 2 s; the time is that of the last prefix.  Canaries: "
              "single-prefix UPDATEs from the first peer during the blast, send-to-monitor latency.", ""]
    if args.hold_minutes:
        print("hold: 1,000 sessions for %g minutes ..." % args.hold_minutes, flush=True)
        rep, tgt = hold_test(args.hold_minutes, rate=args.hold_rate)
        lines += ["## 1,000 sessions held %g minutes" % args.hold_minutes, "",
                  "One process, hold time 9 s (keepalive 3 s); every session announces 1,000 prefixes at full speed, "
                  "then withdraws them (one burst per cycle) and re-announces them (paced at %s prefixes/s over all "
                  "sessions) back to back for the whole time; target: a fastbgp Speaker in another process on "
                  "loopback." % fmt(args.hold_rate), "",
                  "| sessions up | flap cycles | prefixes sent | our hold-timer expiries | drops | target saw drops | keepalives sent | keepalive ticker worst lag (ms) |",
                  "|---:|---:|---:|---:|---:|---:|---:|---:|",
                  "| %d/%d | %d | %s | %d | %d | %d | %s | %.0f |" % (
                      rep.totals.established, rep.totals.peers, sum(1 for p in rep.phases if p.name.endswith("withdraw")),
                      fmt(rep.totals.sent_prefixes + rep.totals.sent_withdrawn), rep.totals.hold_expired, rep.totals.drops,
                      len(tgt["bad_drops"]), fmt(sum(p["keepalives_sent"] for p in rep.peers)),
                      rep.totals.max_tick_lag * 1000), ""]
    text = "\n".join(lines) + "\n"
    with open(args.out, "w") as f:
        f.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
