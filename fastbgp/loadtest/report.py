"""The figures a load test produces: a JSON report (msgspec), a result table
(rich), a PNG plot (matplotlib, optional) and the merge of reports from
several hosts (``--slice``)."""

from __future__ import annotations

import statistics
import sys
from typing import Optional

import msgspec

__all__ = ["Report", "PhaseResult", "Canaries", "TargetFigures", "MonitorFigures", "Totals", "write_json", "read_json",
           "merge", "render_table", "plot", "canary_stats"]

VERSION = 1


class _S(msgspec.Struct, kw_only=True, omit_defaults=False):
    pass


class Canaries(_S):
    sent: int = 0
    seen: int = 0
    min: Optional[float] = None  # seconds
    median: Optional[float] = None
    max: Optional[float] = None
    latencies: list[float] = []


class PhaseResult(_S):
    name: str
    kind: str  # establish | announce | withdraw | session-down | session-up | hold
    cycle: int = 0
    start: float = 0.0  # seconds since the run started
    send_done: Optional[float] = None  # last chunk handed to the kernel
    first_received: Optional[float] = None  # monitor saw the first prefix of this step
    converged: Optional[float] = None  # monitor saw the last one (count stable for `settle`)
    send_time: Optional[float] = None  # send_done - start
    converge_time: Optional[float] = None  # converged - start
    expected: int = 0  # prefixes the monitor should see in this step
    sent_prefixes: int = 0
    received: int = 0  # announcements (or withdrawals) the monitor counted in this step
    send_rate: Optional[float] = None  # prefixes/s handed to the kernel
    converge_rate: Optional[float] = None  # expected / converge_time
    sessions: int = 0
    established: int = 0
    canaries: Canaries = msgspec.field(default_factory=Canaries)
    target_cpu: Optional[float] = None  # CPU seconds the target used in this step
    tester_cpu: Optional[float] = None  # CPU seconds the tester used (all its processes)
    timed_out: bool = False
    note: str = ""


class TargetFigures(_S):
    pids: list[int] = []
    cpu: Optional[float] = None  # seconds over the run
    peak_rss_kb: Optional[int] = None
    final_rss_kb: Optional[int] = None


class MonitorFigures(_S):
    address: Optional[str] = None
    established: bool = False
    exact: bool = False
    updates: int = 0
    announced: int = 0
    withdrawn: int = 0
    present: Optional[int] = None  # exact mode: prefixes held at the end
    errors: int = 0
    hold_expired: int = 0
    last_error: Optional[str] = None


class Totals(_S):
    peers: int = 0
    established: int = 0
    sent_prefixes: int = 0
    sent_withdrawn: int = 0
    sent_updates: int = 0
    sent_octets: int = 0
    hold_expired: int = 0
    drops: int = 0
    notifications_received: int = 0
    max_tick_lag: float = 0.0  # worst lateness of the KEEPALIVE ticker (s)


class Report(_S):
    version: int = VERSION
    tool: str = "fastbgp loadtest"
    started: str = ""  # ISO 8601 wall clock
    started_epoch: float = 0.0
    machine: str = ""
    scenario: dict = {}
    slices: list[str] = []
    prep_time: float = 0.0  # generating/encoding tables, before the clock
    duration: float = 0.0
    phases: list[PhaseResult] = []
    totals: Totals = msgspec.field(default_factory=Totals)
    monitor: MonitorFigures = msgspec.field(default_factory=MonitorFigures)
    target: TargetFigures = msgspec.field(default_factory=TargetFigures)
    peers: list[dict] = []
    # [t, sent, withdrawn sent, received announced, received withdrawn,
    #  target cpu %, target rss kB]
    timeline: list[list] = []
    errors: list[str] = []


def canary_stats(sent: dict, seen: dict) -> Canaries:
    """``sent``: key -> send time; ``seen``: key -> first seen time."""
    lat = sorted(seen[k] - t for k, t in sent.items() if k in seen and seen[k] >= t)
    return Canaries(sent=len(sent), seen=len(lat), min=lat[0] if lat else None,
                    median=statistics.median(lat) if lat else None, max=lat[-1] if lat else None,
                    latencies=[round(x, 6) for x in lat])


def write_json(report: Report, path: str) -> None:
    data = msgspec.json.format(msgspec.json.encode(report), indent=2)
    if path == "-":
        sys.stdout.write(data.decode() + "\n")
        return
    with open(path, "wb") as f:
        f.write(data + b"\n")


def read_json(path: str) -> Report:
    with open(path, "rb") as f:
        return msgspec.json.decode(f.read(), type=Report)


# ---------------------------------------------------------------------- merge


def _max(values):
    v = [x for x in values if x is not None]
    return max(v) if v else None


def _min(values):
    v = [x for x in values if x is not None]
    return min(v) if v else None


def _sum(values):
    v = [x for x in values if x is not None]
    return sum(v) if v else None


def merge(reports: list) -> Report:
    """One report for a test run as slices on several hosts.

    Sums what adds up (prefixes, sessions, octets); per phase the start is
    the earliest and the end the latest over the slices, on each host's
    wall clock (hosts are assumed NTP-synchronised; a phase's times are
    shifted by the difference of the runs' start times); monitor figures
    come from the slice(s) that ran one."""
    if not reports:
        raise ValueError("nothing to merge")
    names = {r.scenario.get("name") for r in reports}
    if len(names) > 1:
        raise ValueError("reports of different scenarios: %s" % ", ".join(sorted(map(str, names))))
    lens = {len(r.phases) for r in reports}
    if len(lens) > 1:
        raise ValueError("reports have different phase lists (%s phases)" % ", ".join(map(str, sorted(lens))))
    t0 = min(r.started_epoch for r in reports)
    base = min(reports, key=lambda r: r.started_epoch)
    out = Report(started=base.started, started_epoch=t0, machine="; ".join(sorted({r.machine for r in reports})),
                 scenario=base.scenario, slices=[s for r in reports for s in r.slices])
    out.prep_time = max(r.prep_time for r in reports)
    out.duration = max(r.started_epoch - t0 + r.duration for r in reports)
    for i in range(lens.pop()):
        ps = [(r.phases[i], r.started_epoch - t0) for r in reports]
        p0 = ps[0][0]
        shifted = lambda attr: [(getattr(p, attr) + off) if getattr(p, attr) is not None else None for p, off in ps]  # noqa: E731
        start = _min(shifted("start"))
        m = PhaseResult(name=p0.name, kind=p0.kind, cycle=p0.cycle, start=start)
        m.send_done = _max(shifted("send_done"))
        m.first_received = _min(shifted("first_received"))
        conv = [c for c in shifted("converged")]
        with_mon = [p for p, _o in ps if p.expected or p.converged is not None]
        m.converged = _max(conv) if with_mon else None
        m.timed_out = any(p.timed_out for p, _o in ps)
        m.expected = max((p.expected for p, _o in ps), default=0)
        m.received = max((p.received for p, _o in ps), default=0)
        m.sent_prefixes = sum(p.sent_prefixes for p, _o in ps)
        m.sessions = sum(p.sessions for p, _o in ps)
        m.established = sum(p.established for p, _o in ps)
        m.target_cpu = _max(p.target_cpu for p, _o in ps)
        m.tester_cpu = _sum(p.tester_cpu for p, _o in ps)
        lat = sorted(x for p, _o in ps for x in p.canaries.latencies)
        m.canaries = Canaries(sent=sum(p.canaries.sent for p, _o in ps), seen=len(lat), min=lat[0] if lat else None,
                              median=statistics.median(lat) if lat else None, max=lat[-1] if lat else None,
                              latencies=lat)
        finish_figures(m)
        m.note = "; ".join(sorted({p.note for p, _o in ps if p.note}))
        out.phases.append(m)
    t = Totals()
    for r in reports:
        for f in msgspec.structs.fields(Totals):
            if f.name == "max_tick_lag":
                t.max_tick_lag = max(t.max_tick_lag, r.totals.max_tick_lag)
            else:
                setattr(t, f.name, getattr(t, f.name) + getattr(r.totals, f.name))
    out.totals = t
    mons = [r.monitor for r in reports if r.monitor.address]
    if mons:
        out.monitor = max(mons, key=lambda m: m.announced + m.withdrawn)
    tg = [r.target for r in reports if r.target.pids]
    if tg:
        out.target = TargetFigures(pids=sorted({p for x in tg for p in x.pids}), cpu=_max(x.cpu for x in tg),
                                   peak_rss_kb=_max(x.peak_rss_kb for x in tg), final_rss_kb=_max(x.final_rss_kb for x in tg))
    out.peers = sorted((p for r in reports for p in r.peers), key=lambda p: p.get("index", 0))
    # Timelines: each shifted to the merged start; sent figures add up at
    # equal times only approximately, so they are kept per slice.
    for r in reports:
        off = r.started_epoch - t0
        out.timeline.extend([[round(row[0] + off, 3)] + list(row[1:]) for row in r.timeline])
    out.timeline.sort(key=lambda row: row[0])
    out.errors = [e for r in reports for e in r.errors]
    return out


def finish_figures(p: PhaseResult) -> None:
    """Derived durations and rates of a phase."""
    if p.send_done is not None:
        p.send_time = max(0.0, p.send_done - p.start)
        if p.sent_prefixes and p.send_time > 0:
            p.send_rate = p.sent_prefixes / p.send_time
    if p.converged is not None:
        p.converge_time = max(0.0, p.converged - p.start)
        if p.expected and p.converge_time > 0:
            p.converge_rate = p.expected / p.converge_time


# ---------------------------------------------------------------------- output


def _fmt_s(x):
    return "-" if x is None else ("%.3f" % x if x < 10 else "%.2f" % x)


def _fmt_rate(x):
    return "-" if x is None else _si(x)


def _si(x):
    """1234567 -> 1.23M: keeps the table narrow enough for 80 columns."""
    for div, suf in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= div:
            v = x / div
            return ("%.2f" if v < 10 else "%.1f" if v < 100 else "%.0f") % v + suf
    return "%d" % x if float(x).is_integer() else "%.1f" % x


def _fmt_ms(x):
    return "-" if x is None else ("%.1f" % (x * 1000) if x < 0.01 else "%.0f" % (x * 1000))


def render_table(report: Report, console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    sc = report.scenario
    tgt = sc.get("target", {})
    title = "fastbgp loadtest %s: %d peers -> %s AS%s" % (sc.get("name", ""), report.totals.peers,
                                                          tgt.get("address", "?"), tgt.get("asn", "?"))
    from rich import box

    # Narrow terminals (80 columns) drop the CPU columns rather than
    # folding numbers; the JSON report has everything.
    wide = console.width >= 110
    t = Table(title=title, caption=("send s, conv s: seconds from the start of the phase; canary ms: median/max; CPU in s"
                                    if wide else "conv s: seconds from the start of the phase; canary ms: median/max"),
              box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False)
    cols = [("phase", "left"), ("sess", "right"), ("sent", "right"), ("send s", "right"), ("sent/s", "right"),
            ("expect", "right"), ("recv", "right"), ("conv s", "right"), ("conv/s", "right"), ("canary ms", "right"),
            ("tgt CPU", "right"), ("our CPU", "right")]
    keep = set(range(len(cols))) if wide else {0, 1, 4, 5, 6, 7, 8, 9}
    for i, (col, just) in enumerate(cols):
        if i in keep:
            t.add_column(col, justify=just, no_wrap=col != "phase", overflow="fold", min_width=14 if i == 0 else None)
    for p in report.phases:
        name = p.name + (" #%d" % p.cycle if p.cycle else "")
        conv = _fmt_s(p.converge_time) + (" (timeout)" if p.timed_out else "")
        can = "-" if not p.canaries.seen else "%s/%s" % (_fmt_ms(p.canaries.median), _fmt_ms(p.canaries.max))
        sess = "%d/%d" % (p.established, p.sessions) if p.kind in ("establish", "session-up") else str(p.sessions or "-")
        row = [name, sess, _si(p.sent_prefixes) if p.sent_prefixes else "-", _fmt_s(p.send_time),
               _fmt_rate(p.send_rate), _si(p.expected) if p.expected else "-",
               _si(p.received) if p.received else "-", conv, _fmt_rate(p.converge_rate), can]
        row += [_fmt_s(p.target_cpu), _fmt_s(p.tester_cpu)]
        t.add_row(*[v for i, v in enumerate(row) if i in keep])
    console.print(t)
    tt = report.totals
    line = ("sessions %d/%d established, %d hold-timer expiries, %d drops, %d NOTIFICATIONs received, "
            "keepalive ticker worst lag %.0f ms" % (tt.established, tt.peers, tt.hold_expired, tt.drops,
                                                     tt.notifications_received, tt.max_tick_lag * 1000))
    console.print(line)
    if report.target.pids:
        tg = report.target
        console.print("target pid %s: CPU %s s, peak RSS %s MiB" % (
            ",".join(map(str, tg.pids)), _fmt_s(tg.cpu), "-" if tg.peak_rss_kb is None else "%.1f" % (tg.peak_rss_kb / 1024)))
    for e in report.errors:
        console.print("[yellow]%s[/yellow]" % e)


def plot(report: Report, path: str) -> Optional[str]:
    """PNG of prefixes sent and received over time; returns None when
    written, else why not (matplotlib missing)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install 'fastbgp[plot]'): no plot written"
    rows = report.timeline
    if not rows:
        return "no timeline samples: no plot written"
    t = [r[0] for r in rows]
    fig, ax = plt.subplots(figsize=(10, 5.5), dpi=100)
    ax.plot(t, [r[1] for r in rows], label="announced (sent)", color="tab:blue")
    ax.plot(t, [r[3] for r in rows], label="announced (received by monitor)", color="tab:green")
    if any(r[2] for r in rows):
        ax.plot(t, [r[2] for r in rows], label="withdrawn (sent)", color="tab:orange", linestyle="--")
    if any(r[4] for r in rows):
        ax.plot(t, [r[4] for r in rows], label="withdrawn (received by monitor)", color="tab:red", linestyle="--")
    for p in report.phases:
        if p.kind != "establish":
            ax.axvline(p.start, color="grey", linewidth=0.6, alpha=0.6)
            ax.text(p.start, ax.get_ylim()[1] * 0.98 if ax.get_ylim()[1] else 1, " " + p.name + (" #%d" % p.cycle if p.cycle else ""),
                    fontsize=7, va="top", color="grey", rotation=90)
    ax.set_xlabel("seconds since start")
    ax.set_ylabel("prefixes (cumulative)")
    ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _p: "{:,.0f}".format(v)))
    ax.legend(loc="upper left", fontsize=8)
    if any(len(r) > 5 and r[5] is not None for r in rows):
        ax2 = ax.twinx()
        ax2.plot(t, [r[5] if len(r) > 5 else None for r in rows], color="tab:purple", alpha=0.4, linewidth=0.8,
                 label="target CPU %")
        ax2.set_ylabel("target CPU %")
        ax2.legend(loc="lower right", fontsize=8)
    sc = report.scenario
    ax.set_title("fastbgp loadtest %s: %d peers -> %s" % (sc.get("name", ""), report.totals.peers,
                                                         sc.get("target", {}).get("address", "?")))
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return None
