"""The figures a load test produces: a JSON report (msgspec), a result table
(rich), a PNG plot (matplotlib, optional) and the merge of reports from
several hosts (``--slice``)."""

from __future__ import annotations

import statistics
import sys
from typing import Optional

import msgspec

__all__ = ["Report", "PhaseResult", "Canaries", "Drain", "TargetFigures", "MonitorFigures", "Totals", "write_json", "read_json",
           "merge", "render_table", "plot", "canary_stats"]

VERSION = 2  # 2: delivered figures, drain, measured/not_measured; send_rate dropped


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
    send_done: Optional[float] = None  # last chunk handed to our own kernel (not a target figure)
    # The target's TCP acknowledged the last octet of every session (our
    # send queues empty: SIOCOUTQ); what the target has accepted off the wire.
    delivered: Optional[float] = None
    first_received: Optional[float] = None  # monitor saw the first prefix of this step
    converged: Optional[float] = None  # monitor saw the last one (count stable for `settle`)
    send_time: Optional[float] = None  # send_done - start
    converge_time: Optional[float] = None  # converged - start
    expected: int = 0  # prefixes the monitor should see in this step
    sent_prefixes: int = 0
    received: int = 0  # announcements (or withdrawals) the monitor counted in this step
    deliver_time: Optional[float] = None  # delivered - start
    deliver_rate: Optional[float] = None  # sent_prefixes / deliver_time: prefixes/s the target accepted
    undelivered: int = 0  # sessions that went down or did not drain within the timeout
    # Sessions whose reading by the target was seen in its /proc tables
    # (its receive queue empty); the others: acknowledged only.
    read_checked: int = 0
    converge_rate: Optional[float] = None  # expected / converge_time
    sessions: int = 0
    established: int = 0
    canaries: Canaries = msgspec.field(default_factory=Canaries)
    target_cpu: Optional[float] = None  # CPU seconds the target used in this step
    tester_cpu: Optional[float] = None  # CPU seconds the tester used (all its processes)
    timed_out: bool = False
    note: str = ""


class Drain(_S):
    """After the last phase the sessions stay up until the target is quiet,
    so it can pass the routes on before our Cease makes it flush them."""

    method: str = ""  # "target-cpu" (from /proc) or "settle" (fixed wait)
    start: Optional[float] = None  # seconds since the run started
    waited: float = 0.0  # seconds the sessions were kept up
    quiet: bool = False  # target-cpu: its CPU fell below QUIET_CPU_PCT in time
    end: str = "cease"  # "cease" (RFC 4486 Administrative Shutdown) or "error"


class TargetFigures(_S):
    pids: list[int] = []
    cpu: Optional[float] = None  # seconds over the run
    peak_rss_kb: Optional[int] = None
    final_rss_kb: Optional[int] = None
    # PSS summed, for a target of several processes (runner.TargetProbe):
    # what it occupies, its shared pages counted once.
    peak_pss_kb: Optional[int] = None


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
    delivered_prefixes: int = 0  # acknowledged by the target's TCP
    delivered_withdrawn: int = 0
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
    # [t, sent (written), withdrawn sent (written), received announced,
    #  received withdrawn, target cpu % (every PROBE_EVERY, else None),
    #  target rss kB (idem), delivered announced, delivered withdrawn]; a
    #  row every sample_interval when a count changed, else every 0.25 s.
    timeline: list[list] = []
    drain: Drain = msgspec.field(default_factory=Drain)
    measured: list[str] = []  # what the figures are, in words
    not_measured: list[str] = []  # what this run could not measure, and why
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
        m.delivered = _max(shifted("delivered"))
        m.undelivered = sum(p.undelivered for p, _o in ps)
        m.read_checked = sum(p.read_checked for p, _o in ps)
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
                                   peak_rss_kb=_max(x.peak_rss_kb for x in tg), final_rss_kb=_max(x.final_rss_kb for x in tg),
                                   peak_pss_kb=_max(x.peak_pss_kb for x in tg))
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
    if p.delivered is not None:
        p.deliver_time = max(0.0, p.delivered - p.start)
        if p.sent_prefixes and p.deliver_time > 0:
            p.deliver_rate = p.sent_prefixes / p.deliver_time
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


# The table's columns and what each means (printed under the table, in the
# README and by ``fastbgp demo``).
COLUMNS = (
    ("phase", "the step of the scenario (#n: flap cycle)"),
    ("sess", "sessions that took part (establish: Established/all)"),
    ("prefixes", "prefixes our peers sent in the phase"),
    ("dlv s", "seconds from the phase start until the target took our last octet (its TCP acknowledged it; "
              "for a target on this host, its process read it)"),
    ("dlv/s", "prefixes / dlv s: prefixes per second the target accepted off the wire"),
    ("expect", "prefixes the monitor should see"),
    ("recv", "announcements (or withdrawals) the monitor received"),
    ("conv s", "seconds from the phase start until the monitor saw the last one"),
    ("conv/s", "expect / conv s: prefixes per second through the target to the monitor"),
    ("canary ms", "one extra prefix sent during the phase: send-to-monitor latency, median/max"),
    ("tgt CPU", "CPU seconds the target used in the phase (--target-pid)"),
    ("our CPU", "CPU seconds the load tester used"),
)


def title_of(report: Report) -> str:
    """"fastbgp loadtest NAME: N peers -> ADDR ASN", without saying
    "fastbgp" twice when the scenario's name already starts with it."""
    sc = report.scenario
    tgt = sc.get("target", {})
    name = str(sc.get("name", "") or "").strip()
    head = name if name.lower().startswith("fastbgp") else ("fastbgp loadtest " + name).strip()
    # The default scenario name is "loadtest": never "fastbgp loadtest loadtest".
    words = []
    for w in head.split():
        if not words or words[-1].lower() != w.lower():
            words.append(w)
    head = " ".join(words)
    return "%s: %d peers -> %s AS%s" % (head, report.totals.peers, tgt.get("address", "?"), tgt.get("asn", "?"))


def render_table(report: Report, console=None) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    # Narrow terminals (80 columns) drop the CPU columns rather than
    # folding numbers; the JSON report has everything.
    wide = console.width >= 110
    t = Table(title=title_of(report), box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False)
    keep = set(range(len(COLUMNS))) if wide else {0, 1, 3, 4, 5, 6, 7, 8}
    for i, (col, _what) in enumerate(COLUMNS):
        if i in keep:
            t.add_column(col, justify="left" if i == 0 else "right", no_wrap=i != 0, overflow="fold",
                         min_width=14 if i == 0 else None)
    for p in report.phases:
        name = p.name + (" #%d" % p.cycle if p.cycle else "")
        conv = _fmt_s(p.converge_time) + (" (timeout)" if p.timed_out else "")
        can = "-" if not p.canaries.seen else "%s/%s" % (_fmt_ms(p.canaries.median), _fmt_ms(p.canaries.max))
        sess = "%d/%d" % (p.established, p.sessions) if p.kind in ("establish", "session-up") else str(p.sessions or "-")
        dlv = _fmt_s(p.deliver_time) + (" (%d lost)" % p.undelivered if p.undelivered else "")
        row = [name, sess, _si(p.sent_prefixes) if p.sent_prefixes else "-", dlv,
               _fmt_rate(p.deliver_rate), _si(p.expected) if p.expected else "-",
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
        console.print("target pid %s: CPU %s s, peak RSS %s MiB%s" % (
            ",".join(map(str, tg.pids)), _fmt_s(tg.cpu), "-" if tg.peak_rss_kb is None else "%.1f" % (tg.peak_rss_kb / 1024),
            "" if tg.peak_pss_kb is None else " summed over its processes (peak PSS %.1f MiB: the pages they share "
                                              "counted once)" % (tg.peak_pss_kb / 1024)))
    console.print(columns_text(keep), style="dim", highlight=False)
    for m in report.measured:
        console.print("measured: " + m, highlight=False)
    for m in report.not_measured:
        console.print("not measured: " + m, highlight=False)
    for e in report.errors:
        console.print("[yellow]%s[/yellow]" % e)


def columns_text(keep=None) -> str:
    """One line per column of the table: its name and meaning."""
    return "\n".join("  %-9s %s" % (c, w) for i, (c, w) in enumerate(COLUMNS) if keep is None or i in keep)


PHASE_COLOURS = ("#dbe9f6", "#fde9d9", "#e2f0d9", "#ede4f3", "#fff2cc")


def figure(report: Report):
    """The matplotlib Figure of a report: prefixes over time on top
    (sent by our peers, received by the monitor, withdrawn), the target's
    CPU and RSS below; time from the start of the first phase after the
    sessions came up, both y axes from 0, a band and a label per phase."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    rows = report.timeline
    phases = [p for p in report.phases if p.kind != "establish"]
    t0 = phases[0].start if phases else (rows[0][0] if rows else 0.0)
    before = [r for r in rows if r[0] < t0]
    rows = [r for r in rows if r[0] >= t0]
    if before:
        # The counts at the phase start are those of the last earlier row:
        # the curves start at x = 0 (CPU and RSS are not carried over).
        rows.insert(0, [t0] + list(before[-1][1:5]) + [None, None] + list(before[-1][7:]))
    t = [r[0] - t0 for r in rows]
    fig, (ax, ax_cpu) = plt.subplots(2, 1, figsize=(10, 7), dpi=100, sharex=True,
                                     gridspec_kw={"height_ratios": [3, 1.2]})
    # Delivered (acknowledged by the target's TCP) when the report has it,
    # else what our peers wrote (reports of version 1).
    has_dlv = bool(rows) and len(rows[0]) > 8
    ia, iw, what = (7, 8, "acknowledged by the target's TCP") if has_dlv else (1, 2, "written by our peers")
    ax.step(t, [r[ia] for r in rows], where="post", label="announced, " + what, color="tab:blue")
    mon = bool(report.monitor.address)
    if mon:
        ax.step(t, [r[3] for r in rows], where="post", label="announced, received by the monitor", color="tab:green")
    if any(r[iw] for r in rows):
        ax.step(t, [r[iw] for r in rows], where="post", label="withdrawn, " + what, color="tab:orange",
                linestyle="--")
    if mon and any(r[4] for r in rows):
        ax.step(t, [r[4] for r in rows], where="post", label="withdrawn, received by the monitor", color="tab:red",
                linestyle="--")
    t_end = max([t[-1] if t else 0.0] + [(p.converged or p.delivered or p.start) - t0 for p in phases]) or 1.0
    labelled = set()

    def once(label):
        # One legend entry per kind of marker line.
        if label in labelled:
            return None
        labelled.add(label)
        return label

    for k, p in enumerate(phases):
        a = p.start - t0
        nxt = phases[k + 1].start - t0 if k + 1 < len(phases) else (
            report.drain.start - t0 if report.drain.start is not None else t_end)
        for axis in (ax, ax_cpu):
            axis.axvspan(a, nxt, color=PHASE_COLOURS[k % len(PHASE_COLOURS)], alpha=0.5, linewidth=0, zorder=0)
        ax.text(a + (nxt - a) / 2, 0.985, p.name + (" #%d" % p.cycle if p.cycle else ""), transform=ax.get_xaxis_transform(),
                ha="center", va="top", fontsize=8, color="#333333", clip_on=True)
        if p.delivered is not None:
            ax.axvline(p.delivered - t0, color="tab:blue", linewidth=0.8, linestyle=":",
                       label=once("delivered (the target read every octet)" if p.read_checked
                                  else "delivered (the target acknowledged every octet)"))
        if p.converged is not None and p.expected:
            ax.axvline(p.converged - t0, color="tab:green", linewidth=0.8, linestyle=":",
                       label=once("converged (monitor saw the last prefix)"))
    d = report.drain
    if d.start is not None and d.waited:
        a = d.start - t0
        for axis in (ax, ax_cpu):
            axis.axvspan(a, a + d.waited, color="#eeeeee", linewidth=0, zorder=0)
        ax.text(a + d.waited / 2, 0.985, "kept up until quiet", transform=ax.get_xaxis_transform(), ha="center",
                va="top", fontsize=8, color="#333333", clip_on=True)
        t_end = max(t_end, a + d.waited)
    ax.set_xlim(0, t_end * 1.02)
    ax.set_ylim(bottom=0)
    top = ax.get_ylim()[1]
    ax.set_ylim(0, top * 1.12)  # room for the phase labels above the curves
    ax.set_ylabel("prefixes (cumulative)")
    ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _p: "{:,.0f}".format(v)))
    ax.legend(loc="best", fontsize=8, framealpha=0.9)
    ax.grid(True, alpha=0.3)
    ax.set_title(title_of(report), fontsize=11)
    cpu = [(r[0] - t0, r[5]) for r in rows if len(r) > 5 and r[5] is not None]
    rss = [(r[0] - t0, r[6] / 1024) for r in rows if len(r) > 6 and r[6] is not None]
    ax_cpu.set_ylabel("target CPU %")
    ax_cpu.set_xlabel("seconds since the start of the %s phase" % (phases[0].name if phases else "first"))
    ax_rss = ax_cpu.twinx()
    ax_rss.set_ylabel("target RSS MiB")
    if cpu:
        ax_cpu.plot([x for x, _ in cpu], [y for _, y in cpu], color="tab:purple", linewidth=1, label="target CPU %")
        ax_rss.plot([x for x, _ in rss], [y for _, y in rss], color="tab:brown", linewidth=1, label="target RSS MiB")
        h1, l1 = ax_cpu.get_legend_handles_labels()
        h2, l2 = ax_rss.get_legend_handles_labels()
        ax_cpu.legend(h1 + h2, l1 + l2, loc="upper right", fontsize=8, framealpha=0.9)
    else:
        ax_cpu.text(0.5, 0.5, "target CPU and RSS not measured (no --target-pid)", transform=ax_cpu.transAxes,
                    ha="center", va="center", fontsize=9, color="grey")
    ax_cpu.set_ylim(bottom=0)
    ax_rss.set_ylim(bottom=0)
    ax_cpu.set_xlim(0, t_end * 1.02)
    ax_cpu.grid(True, alpha=0.3)
    fig.tight_layout()
    return fig


def plot(report: Report, path: str) -> Optional[str]:
    """PNG of :func:`figure`; returns None when written, else why not
    (matplotlib missing, no samples)."""
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install 'fastbgp[plot]'): no plot written"
    if not report.timeline:
        return "no timeline samples: no plot written"
    fig = figure(report)
    try:
        fig.savefig(path)
    except OSError as exc:
        return "cannot write the plot %s: %s" % (path, exc)
    finally:
        plt.close(fig)
    return None
