"""The coordinator: establishes the monitor and the peer groups, runs the
phases, decides convergence, samples the timeline and the target's
/proc figures, and builds the :class:`~.report.Report`."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import logging
import multiprocessing
import os
import time
from typing import Optional

import msgspec

from fastbgp.wire import bench as _bench
from fastbgp.loadtest import generator as gen
from fastbgp.loadtest import procnet
from fastbgp.loadtest.engine import LocalGroup, RemoteGroup, slice_indices, split
from fastbgp.loadtest.peer import ESTABLISHED, MonitorSession, SessionConfig, Ticker
from fastbgp.loadtest.report import (
    MonitorFigures,
    PhaseResult,
    Report,
    TargetFigures,
    Totals,
    canary_stats,
    finish_figures,
)
from fastbgp.loadtest.scenario import Scenario, phases_of

log = logging.getLogger("fastbgp.loadtest")

_CLK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
# Target CPU/RSS sampling period, and the longest gap between timeline rows
# when nothing changes.
PROBE_EVERY = 0.1
KEEP_ROW = 0.25
# After the last phase: the target counts as quiet once its CPU stayed
# under this share of one core for max(settle, QUIET_WINDOW) seconds.
# The timeline is bounded: past TIMELINE_MAX rows every second row is
# dropped and rows are taken half as often (a long soak keeps its shape at a
# coarser resolution, memory stays flat).
TIMELINE_MAX = 200_000
QUIET_CPU_PCT = 5.0
QUIET_WINDOW = 0.5
# ... and is waited for at most this long (or the step timeout if shorter):
# a target kept busy by something else must not hold the run for minutes.
DRAIN_MAX = 60.0


class TargetProbe:
    """CPU seconds and RSS of the target's processes and their children
    (``workers = N``: the front and its workers), read from /proc.

    RSS summed over several processes counts a page they share once in
    each: a front and the workers forked from it share their modules'
    pages.  For such a target the probe also sums PSS (each shared page
    counted 1/k in each of the k processes sharing it: what the target
    occupies), ``peak_pss``; for one process it stays None (reading it walks
    the page tables, not worth it where it adds nothing to RSS)."""

    def __init__(self, pids):
        self.pids = list(pids)
        self.peak_rss = None
        self.last_rss = None
        self.peak_pss = None
        self.errors = set()

    def sample(self):
        """(cpu seconds, rss kB) summed over the pids, or (None, None)."""
        if not self.pids:
            return None, None
        cpu = 0.0
        rss = pss = 0
        ok = False
        procs = procnet.descendants(self.pids)
        for pid in procs:
            try:
                with open("/proc/%d/stat" % pid, "rb") as f:
                    stat = f.read()
                # Fields after the ")" of the command name: utime and stime
                # are fields 14 and 15 (proc(5)).
                rest = stat[stat.rindex(b")") + 2 :].split()
                cpu += (int(rest[11]) + int(rest[12])) / _CLK
                rss += procnet.proc_kb(pid, "status", (b"VmRSS:",))[0]
                if len(procs) > 1:
                    pss += procnet.proc_kb(pid, "smaps_rollup", (b"Pss:",))[0]
                ok = True
            except (OSError, ValueError, IndexError) as exc:
                if pid in self.pids:  # a child may end between two reads
                    self.errors.add("target pid %d: %s" % (pid, exc))
        if not ok:
            return None, None
        self.last_rss = rss
        if self.peak_rss is None or rss > self.peak_rss:
            self.peak_rss = rss
        if pss and (self.peak_pss is None or pss > self.peak_pss):
            self.peak_pss = pss
        return cpu, rss


class Expectation:
    """What the monitor should see: keys (exact mode) or counts, computed
    over all peers of the test (every slice), not only this process's."""

    def __init__(self, sc: Scenario, source):
        self.sc = sc
        self.source = source
        self.count = sc.peers.count
        self._cache = {}

    def table_ids(self, only=None):
        ids = range(self.count) if only is None else only
        return sorted({self.source.table_id(i) for i in ids})

    def keys(self, prefixes=0, only=None) -> set:
        key = ("k", prefixes, tuple(only) if only is not None else None)
        ks = self._cache.get(key)
        if ks is None:
            ks = set()
            for tid in self.table_ids(only):
                k = self.source.keys(tid)
                ks.update(k[:prefixes] if prefixes else k)
            self._cache[key] = ks
        return ks

    def size(self, prefixes=0, only=None) -> int:
        ov = getattr(self.source, "overlap", None)
        tids = self.table_ids(only)
        n = self.source.table_size(tids[0]) if tids else 0
        per = min(prefixes, n) if prefixes else n
        if len(tids) == 1:
            return per
        if ov == 0.0:
            return sum(min(prefixes, self.source.table_size(t)) if prefixes else self.source.table_size(t) for t in tids)
        return len(self.keys(prefixes, only))


def _source_helpers(src):
    """TablePlan and ReplaySource expose table_size/table_id/keys/overlap."""
    if not hasattr(src, "table_size"):
        src.table_size = lambda tid, _s=src: _s.table.prefixes
    if not hasattr(src, "overlap"):
        src.overlap = src.table.overlap
    return src


class Progress:
    """Live progress (rich): delivered and received prefixes and their rates."""

    def __init__(self, console, enabled):
        self.enabled = enabled and console.is_terminal
        self.console = console
        self.live = None
        self.prog = None

    def start(self):
        if not self.enabled:
            return
        from rich.progress import BarColumn, Progress as RP, TextColumn

        self.prog = RP(TextColumn("{task.description:<22}"), BarColumn(bar_width=30),
                       TextColumn("{task.completed:>12,.0f} / {task.total:<12,.0f}"),
                       TextColumn("{task.fields[rate]}"), console=self.console, transient=False,
                       refresh_per_second=8)
        self.sent = self.prog.add_task("delivered", total=1, rate="")
        self.rx = self.prog.add_task("received (monitor)", total=1, rate="")
        self.prog.start()

    def update(self, phase, sent, sent_total, sent_rate, rx, rx_total, rx_rate, est, peers):
        if not self.prog:
            return
        self.prog.update(self.sent, description="%s delivered" % phase[:11], completed=sent, total=max(sent_total, 1),
                         rate="%12s pfx/s  %d/%d up" % ("{:,.0f}".format(sent_rate), est, peers))
        self.prog.update(self.rx, completed=rx, total=max(rx_total, 1), rate="%12s pfx/s" % "{:,.0f}".format(rx_rate))

    def stop(self):
        if self.prog:
            self.prog.stop()
            self.prog = None


class Runner:
    def __init__(self, sc: Scenario, console=None):
        from rich.console import Console

        self.sc = sc
        self.console = console or Console(stderr=True)
        self.groups: list = []
        self.monitor: Optional[MonitorSession] = None
        self.ticker: Optional[Ticker] = None
        self.report = Report()
        self.t_start = 0.0
        self.probe = TargetProbe(sc.target.pid)
        self.errors: list = []
        self._phase_name = "start"
        self._sent_target = 0
        self._rx_target = 0
        self._sampler = None
        self._marks: dict = {}

    # -- set-up ---------------------------------------------------------------

    def _monitor_config(self) -> Optional[SessionConfig]:
        m = self.sc.monitor
        if m.address is None:
            return None
        rid = int(ipaddress.IPv4Address(m.router_id)) if m.router_id else None
        if rid is None:
            a = ipaddress.ip_address(m.address)
            rid = int(a) if a.version == 4 else 0x0AFFFFFE
        return SessionConfig(-1, m.address, m.asn, rid, self.sc.target.address, self.sc.target.port,
                             self.sc.target.asn, m.hold_time, None, True, False, False, self.sc.peers.md5_password,
                             self.sc.peers.ttl, m.asn != self.sc.target.asn, self.sc.table.family)

    def _exact(self) -> bool:
        m = self.sc.monitor
        if m.exact != "auto":
            return m.exact == "on"
        if self.sc.replay is not None:
            return True
        return self.sc.peers.count > 1 and self.sc.table.overlap > 0.0

    async def _start_monitor(self, loop):
        cfg = self._monitor_config()
        if cfg is None:
            return
        net = gen.CANARY_V4 if self.sc.table.family == "ipv4" else gen.CANARY_V6
        canary = (net.network_address.packed, net.prefixlen)
        self.monitor = MonitorSession(cfg, loop, exact=self._exact(), canary_net=canary)
        self.ticker = Ticker(loop, [self.monitor])
        self.ticker.start()
        deadline = time.monotonic() + self.sc.peers.establish_timeout
        while time.monotonic() < deadline:
            if self.monitor.state == 0:
                try:
                    await self.monitor.connect(timeout=max(0.1, min(10.0, deadline - time.monotonic())))
                except (OSError, asyncio.TimeoutError) as exc:
                    self.monitor.last_error = "connect: %s" % (exc,)
                    await asyncio.sleep(0.5)
                    continue
            if self.monitor.state == ESTABLISHED:
                return
            await self.monitor.wait_change(max(0.01, deadline - time.monotonic()))
            if self.monitor.state == 0:
                await asyncio.sleep(0.5)
        raise RuntimeError("monitor session from %s to %s not Established within %gs: %s" % (
            cfg.address, cfg.target, self.sc.peers.establish_timeout, self.monitor.last_error))

    def _make_groups(self, loop):
        idx = slice_indices(self.sc.peers.count, self.sc.slice)
        parts = split(idx, self.sc.workers)
        if self.sc.workers <= 1:
            self.groups = [LocalGroup(self.sc, parts[0])]
            return
        ctx = multiprocessing.get_context("spawn")
        for part in parts:
            g = RemoteGroup(self.sc, part, ctx)
            g.attach(loop)
            self.groups.append(g)

    # -- sampling ----------------------------------------------------------------

    def _tester_cpu(self):
        # This process (coordinator, monitor, a LocalGroup) plus the workers.
        total = time.process_time()
        for g in self.groups:
            if isinstance(g, RemoteGroup):
                total += g.snapshot().get("cpu", 0.0)
        return total

    def _totals(self):
        s = {"sent": 0, "withdrawn": 0, "delivered": 0, "delivered_withdrawn": 0, "established": 0, "hold_expired": 0,
             "tick_lag": 0.0}
        for g in self.groups:
            snap = g.snapshot()
            for k in ("sent", "withdrawn", "delivered", "delivered_withdrawn", "established", "hold_expired"):
                s[k] += snap.get(k, 0)
            s["tick_lag"] = max(s["tick_lag"], snap.get("tick_lag", 0.0))
        return s

    async def _sample(self, progress: Progress):
        """Timeline rows every ``sample_interval`` (10 ms by default) when
        a count changed, else every KEEP_ROW seconds; the target's CPU and
        RSS every PROBE_EVERY seconds (/proc CPU counts in clock ticks, so
        a finer CPU % would be noise)."""
        prev_t = time.monotonic()
        prev_cpu, _rss = self.probe.sample()
        prev_sent = prev_rx = 0
        last_row = None
        row_t = 0.0
        ui_t = prev_t
        gap = self.sc.sample_interval  # least time between two rows
        tl = self.report.timeline
        while True:
            await asyncio.sleep(self.sc.sample_interval)
            now = time.monotonic()
            s = self._totals()
            mon = self.monitor
            rx = mon.announced if mon else 0
            rxw = mon.withdrawn if mon else 0
            counts = [s["sent"], s["withdrawn"], rx, rxw]
            dlv = [s["delivered"], s["delivered_withdrawn"]]
            cpu_pct = rss = None
            if now - prev_t >= PROBE_EVERY:
                cpu, rss = self.probe.sample()
                if cpu is not None and prev_cpu is not None:
                    cpu_pct = round(100.0 * (cpu - prev_cpu) / (now - prev_t), 1)
                prev_t, prev_cpu = now, cpu
            counts += dlv
            if (now - row_t >= gap and (counts != last_row or rss is not None)) or now - row_t >= max(KEEP_ROW, gap):
                tl.append([round(now - self.t_start, 3)] + counts[:4] + [cpu_pct, rss] + dlv)
                last_row, row_t = counts, now
                if len(tl) >= TIMELINE_MAX:
                    tl[:] = tl[::2]
                    gap *= 2
            dt = now - ui_t
            if dt >= 0.1:
                # Delivered (acknowledged by the target), not written: the
                # live rate is the target's, like the table's dlv/s.
                sent_all = s["delivered"] + s["delivered_withdrawn"]
                rx_all = rx + rxw
                progress.update(self._phase_name, sent_all, self._sent_target, (sent_all - prev_sent) / dt,
                                rx_all, self._rx_target, (rx_all - prev_rx) / dt, s["established"],
                                self.sc.peers.count)
                ui_t, prev_sent, prev_rx = now, sent_all, rx_all

    # -- phases ------------------------------------------------------------------

    def _rel(self, t):
        return None if t is None else t - self.t_start

    def _begin(self, name, kind, cycle=0) -> PhaseResult:
        self._phase_name = name
        ph = PhaseResult(name=name, kind=kind, cycle=cycle, start=time.monotonic() - self.t_start)
        self._marks[id(ph)] = (self.probe.sample()[0], self._tester_cpu())
        return ph

    def _end(self, ph: PhaseResult):
        cpu0, tcpu0 = self._marks.pop(id(ph))
        cpu = self.probe.sample()[0]
        if cpu is not None and cpu0 is not None:
            ph.target_cpu = round(cpu - cpu0, 3)
        ph.tester_cpu = round(self._tester_cpu() - tcpu0, 3)
        finish_figures(ph)
        self.report.phases.append(ph)

    async def _establish(self, name="establish", cycle=0):
        ph = self._begin(name, "establish" if name == "establish" else "session-up", cycle)
        t0 = time.monotonic() + 0.01
        res = await asyncio.gather(*(g.establish(t0, self.sc.peers.establish_timeout) for g in self.groups))
        ph.sessions = sum(r["total"] for r in res)
        ph.established = sum(r["established"] for r in res)
        last = [r["last"] for r in res if r["last"] is not None]
        if last:
            ph.converged = max(last) - self.t_start
        errs = sorted({e for r in res for e in r["errors"]})
        if ph.established < ph.sessions:
            ph.note = "%d sessions not Established" % (ph.sessions - ph.established)
            self.errors.append("%s: %d of %d sessions not Established%s" % (
                name, ph.sessions - ph.established, ph.sessions, (": " + "; ".join(errs[:5])) if errs else ""))
        self._end(ph)
        return ph

    async def _canaries(self, state):
        """Canary prefixes (kakapo style) from the first peer while a step
        runs: each one's send-to-seen time is the end-to-end latency a new
        route experiences at that moment."""
        interval = self.sc.monitor.canary_interval
        g = self.groups[0]
        try:
            await asyncio.sleep(min(0.05, interval))
            while True:
                await self._one_canary(g, state)
                await asyncio.sleep(interval)
        except asyncio.CancelledError:
            pass

    async def _one_canary(self, g, state):
        seq = self._canary_seq
        self._canary_seq += 1
        try:
            r = await g.canary(seq)
        except Exception as exc:  # a worker gone: recorded, not fatal
            self.errors.append("canary: %s" % exc)
            return
        if r:
            t, key = r
            if t:
                state[key] = t

    def _cond(self, kind, expected_keys, expected_n, base):
        mon = self.monitor
        if kind in ("announce", "session-up"):
            if mon.exact:
                target = base["target"]
                return lambda: len(mon.present) >= target
            return lambda: mon.announced - base["a"] >= expected_n
        if kind == "withdraw":
            if mon.exact:
                target = base["target"]
                return lambda: len(mon.present) <= target
            return lambda: mon.withdrawn - base["w"] >= expected_n
        # session-down: the target withdraws what only those peers sent --
        # quiet after any change.
        return lambda: mon.last_change > base["t0"]

    async def _wait_converged(self, ph: PhaseResult, cond, verify=None):
        """Wait for ``cond`` and then for the received count to stay
        unchanged ``settle`` seconds; the phase converged when the last
        prefix arrived."""
        mon = self.monitor
        m = self.sc.monitor
        deadline = time.monotonic() + m.timeout
        while True:
            now = time.monotonic()
            if cond() and now - mon.last_change >= m.settle:
                if verify is None or verify():
                    ph.converged = mon.last_change - self.t_start
                    return True
            if now > deadline:
                ph.timed_out = True
                ph.note = (ph.note + "; " if ph.note else "") + "not converged within %gs" % m.timeout
                return False
            if mon.state != ESTABLISHED:
                ph.timed_out = True
                ph.note = (ph.note + "; " if ph.note else "") + "monitor session down: %s" % mon.last_error
                return False
            await asyncio.sleep(0.02)

    async def _step(self, name, kind, cycle=0, prefixes=0, rate=0.0, burst=1000, wait=True, only=None):
        ph = self._begin(name, kind, cycle)
        mon = self.monitor
        src_kind = "withdraw" if kind == "withdraw" else "announce"
        exp_keys = None
        exp_n = 0
        base = {}
        if mon is not None:
            exp_n = self.expect.size(prefixes, only)
            if mon.exact:
                exp_keys = self.expect.keys(prefixes, only)
                if kind == "withdraw":
                    base["target"] = len(mon.present) - sum(1 for k in exp_keys if k in mon.present)
                else:
                    base["target"] = len(mon.present) + sum(1 for k in exp_keys if k not in mon.present)
            base["a"] = mon.announced
            base["w"] = mon.withdrawn
            base["t0"] = time.monotonic()
            mon.first_change = None
            ph.expected = exp_n
        self._rx_target = (mon.announced + mon.withdrawn + exp_n) if mon else 0
        peers_total = self.sc.peers.count
        size = self.expect.source.table_size(0)
        per_peer = min(prefixes, size) if prefixes else size
        local = [i for g in self.groups for i in g.indices if only is None or i in only]
        snap = self._totals()
        self._sent_target = snap["sent"] + snap["withdrawn"] + per_peer * len(local)
        canaries = {}
        ctask = None
        if mon is not None and self.sc.monitor.canary_interval > 0:
            ctask = asyncio.get_running_loop().create_task(self._canaries(canaries))
        ph.start = time.monotonic() - self.t_start
        res = await asyncio.gather(*(g.send(src_kind, prefixes, rate, burst, peers_total, only) for g in self.groups))
        ph.sessions = sum(r["sessions"] for r in res)
        ph.sent_prefixes = sum(r["prefixes"] for r in res)
        ph.send_done = max(r["last"] for r in res) - self.t_start if res else None
        dl = [r["delivered"] for r in res if r.get("delivered") is not None]
        ph.delivered = max(dl) - self.t_start if dl else None
        ph.undelivered = sum(r.get("undelivered", 0) for r in res)
        ph.read_checked = sum(r.get("seen_read", 0) for r in res)
        if ph.undelivered:
            self.errors.append("%s: %d sessions did not deliver everything (down, or not drained within %gs)" % (
                name, ph.undelivered, self.sc.monitor.timeout))
        if mon is not None and wait:
            if ctask is not None:
                # One more canary right behind the last chunk.
                await self._one_canary(self.groups[0], canaries)
            verify = None
            if mon.exact and exp_keys is not None:
                if kind == "withdraw":
                    verify = lambda: not any(k in mon.present for k in exp_keys)  # noqa: E731
                else:
                    verify = lambda: all(k in mon.present for k in exp_keys)  # noqa: E731
            await self._wait_converged(ph, self._cond(kind, exp_keys, exp_n, base), verify)
        if ctask is not None:
            ctask.cancel()
            await asyncio.gather(ctask, return_exceptions=True)
            # Canaries still in flight get a short grace period.
            t_end = time.monotonic() + min(2.0, self.sc.monitor.settle + 0.5)
            while time.monotonic() < t_end and not all(k in mon.canaries for k in canaries):
                await asyncio.sleep(0.02)
        if mon is not None:
            ph.received = (mon.withdrawn - base["w"]) if kind == "withdraw" else (mon.announced - base["a"])
            ph.first_received = self._rel(mon.first_change)
            ph.canaries = canary_stats(canaries, mon.canaries)
        self._end(ph)
        return ph

    async def _session_flap(self, ph_spec, cycle):
        total = self.sc.peers.count
        limit = max(1, int(-(-ph_spec.fraction * total // 1)))
        only = list(range(limit))
        name = ph_spec.name or "session-flap"
        mon = self.monitor
        ph = self._begin(name + " down", "session-down", cycle)
        base = {"t0": time.monotonic(), "w": mon.withdrawn if mon else 0}
        if mon is not None:
            mon.first_change = None
        res = await asyncio.gather(*(g.down(ph_spec.fraction, total) for g in self.groups))
        ph.sessions = sum(res)
        ph.send_done = time.monotonic() - self.t_start
        if mon is not None and ph_spec.wait:
            if mon.exact and limit == total:
                target = 0
                ph.expected = len(mon.present)
                cond = lambda: len(mon.present) <= target  # noqa: E731
            else:
                # Which prefixes go depends on what the other peers still
                # announce: converged = quiet after the first change, or
                # nothing at all within a few settle periods.
                quiet = max(2.0, 3 * self.sc.monitor.settle)
                t0 = base["t0"]
                cond = lambda: mon.last_change > t0 or time.monotonic() - t0 > quiet  # noqa: E731
            await self._wait_converged(ph, cond)
            if mon.last_change <= base["t0"] and not ph.timed_out:
                ph.converged = None
                ph.note = "the target withdrew nothing within %.1fs" % max(2.0, 3 * self.sc.monitor.settle)
            ph.received = mon.withdrawn - base["w"]
            ph.first_received = self._rel(mon.first_change)
        self._end(ph)
        await asyncio.sleep(ph_spec.interval)
        await self._establish(name + " up", cycle)
        await self._step(name + " re-announce", "session-up", cycle, 0, 0.0, 1000, ph_spec.wait, only)
        await asyncio.sleep(ph_spec.interval)

    async def _hold(self, ph_spec):
        ph = self._begin(ph_spec.name or "hold", "hold")
        before = self._totals()
        await asyncio.sleep(ph_spec.duration)
        after = self._totals()
        ph.sessions = sum(len(g.indices) for g in self.groups)
        ph.established = after["established"]
        ph.send_done = time.monotonic() - self.t_start
        ph.note = "%d hold-timer expiries during the hold" % (after["hold_expired"] - before["hold_expired"])
        self._end(ph)

    # -- main ---------------------------------------------------------------------

    async def run(self) -> Report:
        sc = self.sc
        loop = asyncio.get_running_loop()
        rep = self.report
        rep.started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        rep.started_epoch = time.time()
        rep.machine = _bench.machine()
        rep.scenario = msgspec.to_builtins(sc)
        rep.slices = [sc.slice]
        self._canary_seq = 0
        progress = Progress(self.console, sc.progress)
        t_prep = time.perf_counter()
        self._make_groups(loop)
        try:
            preps = await asyncio.gather(*(g.prepare() for g in self.groups))
            self.expect = Expectation(sc, _source_helpers(self.groups[0].g.source if isinstance(self.groups[0], LocalGroup)
                                                          else _local_source(sc)))
            if self.monitor is None and sc.monitor.address is not None and self._exact():
                self.expect.keys()  # built before the clock starts
            rep.prep_time = round(max(p["prep_time"] for p in preps) if preps else 0.0, 3)
            rep.prep_time = round(max(rep.prep_time, time.perf_counter() - t_prep), 3)
            self.t_start = time.monotonic()
            await self._start_monitor(loop)
            progress.start()
            self._sampler = loop.create_task(self._sample(progress))
            await self._establish()
            for ph_spec in phases_of(sc):
                name = ph_spec.name or ph_spec.kind
                if ph_spec.kind == "announce":
                    await self._step(name, "announce", 0, ph_spec.prefixes, ph_spec.rate, ph_spec.burst, ph_spec.wait)
                elif ph_spec.kind == "withdraw":
                    await self._step(name, "withdraw", 0, ph_spec.prefixes, ph_spec.rate, ph_spec.burst, ph_spec.wait)
                elif ph_spec.kind == "flap":
                    # With a duration, cycles repeat until it has passed
                    # (sessions kept busy for a soak test); else ``count``.
                    t_end = time.monotonic() + ph_spec.duration
                    c = 0
                    while (c < ph_spec.count) if not ph_spec.duration else (time.monotonic() < t_end):
                        c += 1
                        await self._step(name + " withdraw", "withdraw", c, ph_spec.prefixes, ph_spec.rate,
                                         ph_spec.burst, ph_spec.wait)
                        await asyncio.sleep(ph_spec.interval)
                        await self._step(name + " announce", "announce", c, ph_spec.prefixes, ph_spec.rate,
                                         ph_spec.burst, ph_spec.wait)
                        await asyncio.sleep(ph_spec.interval)
                elif ph_spec.kind == "session-flap":
                    for c in range(1, ph_spec.count + 1):
                        await self._session_flap(ph_spec, c)
                elif ph_spec.kind == "hold":
                    await self._hold(ph_spec)
            await self._drain()
        finally:
            progress.stop()
            await self._finish()
        return rep

    async def _drain(self):
        """Keep the sessions up until the target has gone quiet -- its CPU
        under QUIET_CPU_PCT for a window (with --target-pid), else
        ``settle`` seconds -- so it can pass the routes on before the Cease
        that ends the run makes it flush them (RFC 4271 §9.1: routes of a
        closed session are withdrawn)."""
        d = self.report.drain
        t0 = time.monotonic()
        settle = self.sc.monitor.settle
        d.end = "cease"
        d.start = round(t0 - self.t_start, 3)
        if not self.probe.pids:
            d.method = "settle"
            await asyncio.sleep(settle)
            d.waited = round(time.monotonic() - t0, 3)
            return
        d.method = "target-cpu"
        window = max(settle, QUIET_WINDOW)
        limit = min(self.sc.monitor.timeout, DRAIN_MAX)
        deadline = t0 + limit
        hist = []  # (time, cpu seconds)
        while True:
            now = time.monotonic()
            cpu, _rss = self.probe.sample()
            if cpu is None:
                break
            hist.append((now, cpu))
            old = [h for h in hist if now - h[0] >= window]
            if old:
                t_a, c_a = old[-1]
                hist = hist[len(old) - 1:]
                if 100.0 * (cpu - c_a) / (now - t_a) < QUIET_CPU_PCT:
                    d.quiet = True
                    break
            if now > deadline:
                self.errors.append("drain: the target was still busy (CPU >= %g%% of a core) after %gs" % (
                    QUIET_CPU_PCT, limit))
                break
            await asyncio.sleep(PROBE_EVERY)
        d.waited = round(time.monotonic() - t0, 3)

    def _explain(self, rep):
        """What the figures of this run are, and what it did not measure."""
        sc = self.sc
        sends = [p for p in rep.phases if p.kind not in ("establish", "session-down", "hold") and p.sessions]
        checked = sum(p.read_checked for p in sends)
        total = sum(p.sessions - p.undelivered for p in sends)
        rep.measured = [
            "delivered: the target's TCP acknowledged every octet we sent (our send queues empty, SIOCOUTQ)%s; "
            "dlv/s = prefixes / seconds from the phase start to delivered" % (
                " and the target process read them all (its receive queues empty: sock_diag, or "
                "/proc/PID/net/tcp for a target in another namespace)"
                if total and checked >= total else ""),
        ]
        rep.not_measured = []
        if checked < total:
            rep.not_measured.append(
                "target reading: for %d of %d sessions the target's receive queue was not visible (%s), so "
                "delivered means acknowledged, and up to a socket receive buffer per session may have been "
                "unread at that moment" % (total - checked, total,
                                           "not in our network namespace, and no --target-pid" if not self.probe.pids
                                           else "in neither our namespace nor its /proc tables"))
        rep.not_measured.append("processing: a delivered route may still be in the target's queues; the monitor "
                                "and the target's CPU show when it was done")
        if sc.monitor.address:
            rep.measured.append("propagation: a monitor session counted what the target passed on (recv, conv s, "
                                "conv/s)")
        else:
            rep.not_measured.append("propagation: no --monitor session, so nothing shows the target passed the "
                                    "routes on")
        if self.probe.pids:
            rep.measured.append("target CPU seconds and RSS from /proc for pid %s" % ",".join(map(str, self.probe.pids)))
        else:
            rep.not_measured.append("target CPU and memory: no --target-pid")
        d = rep.drain
        if d.method == "target-cpu":
            rep.measured.append("sessions kept up %.2f s after the last phase until the target's CPU %s, then Cease" % (
                d.waited, "went quiet" if d.quiet else "(never quiet)"))
        elif d.method == "settle":
            rep.measured.append("sessions kept up %.2f s (--settle) after the last phase, then Cease" % d.waited)

    async def _finish(self):
        rep = self.report
        if self._sampler is not None:
            self._sampler.cancel()
            res = await asyncio.gather(self._sampler, return_exceptions=True)
            if isinstance(res[0], Exception):
                self.errors.append("timeline sampler failed: %r" % (res[0],))
        figures = []
        for g in self.groups:
            try:
                figures.extend(await g.figures())
            except Exception as exc:
                self.errors.append("figures: %s" % exc)
        snap = self._totals()
        mon = self.monitor
        if mon is not None:
            rep.monitor = MonitorFigures(address=mon.cfg.address, established=mon.state == ESTABLISHED, exact=mon.exact,
                                         updates=mon.updates, announced=mon.announced, withdrawn=mon.withdrawn,
                                         present=len(mon.present) if mon.exact else None, errors=mon.errors,
                                         hold_expired=mon.hold_expired, last_error=mon.last_error)
            if mon.hold_expired:
                self.errors.append("monitor: hold timer expired %d times" % mon.hold_expired)
        rep.duration = round(time.monotonic() - self.t_start, 3) if self.t_start else 0.0
        for g in self.groups:
            try:
                await g.close()
            except Exception as exc:
                self.errors.append("close: %s" % exc)
        if mon is not None:
            mon.stop(2)
            for _ in range(50):
                if mon.transport is None:
                    break
                await asyncio.sleep(0.01)
            if mon.transport is not None:
                mon.abort()
        if self.ticker is not None:
            self.ticker.stop()
        for f in figures:
            if f.get("established_at") is not None and self.t_start:
                f["established_at"] = round(f["established_at"] - self.t_start, 4)
        rep.peers = sorted(figures, key=lambda f: f["index"])
        t = Totals(peers=len(figures))
        for f in figures:
            t.established += f["state"] == "established"
            t.sent_prefixes += f["sent_prefixes"]
            t.sent_withdrawn += f["sent_withdrawn"]
            t.delivered_prefixes += f.get("delivered_prefixes", 0)
            t.delivered_withdrawn += f.get("delivered_withdrawn", 0)
            t.sent_updates += f["sent_updates"]
            t.sent_octets += f["sent_octets"]
            t.hold_expired += f["hold_expired"]
            t.drops += f["drops"]
            t.notifications_received += len(f["notifications_received"])
        t.max_tick_lag = round(max(snap["tick_lag"], self.ticker.max_lag if self.ticker else 0.0), 4)
        rep.totals = t
        cpu, rss = self.probe.sample()
        if self.probe.pids:
            first_cpu = None
            rep.target = TargetFigures(pids=self.probe.pids, peak_rss_kb=self.probe.peak_rss, final_rss_kb=rss,
                                       peak_pss_kb=self.probe.peak_pss)
            cpus = [p.target_cpu for p in rep.phases if p.target_cpu is not None]
            rep.target.cpu = round(sum(cpus), 3) if cpus else first_cpu
        self.errors.extend(sorted(self.probe.errors))
        if not rep.drain.method:
            rep.drain.end = "error"
        self._explain(rep)
        rep.errors = self.errors


def _local_source(sc):
    from fastbgp.loadtest.engine import make_source

    return make_source(sc)


async def run(sc: Scenario, console=None) -> Report:
    return await Runner(sc, console).run()


def run_sync(sc: Scenario, console=None) -> Report:
    """Run on uvloop when it is there (the CLI's way)."""
    try:
        import uvloop

        return uvloop.run(run(sc, console))
    except ImportError:  # pragma: no cover
        return asyncio.run(run(sc, console))
