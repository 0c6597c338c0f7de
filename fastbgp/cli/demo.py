"""``fastbgp demo``: the daemon and the load tester on loopback, one command.

Starts a real ``fastbgp daemon`` in its own process on 127.0.0.1 (a port
picked free, a private API socket, no metrics), points ``fastbgp loadtest``
at it -- N emulated eBGP peers on 127.0.0.10.. announcing disjoint synthetic
tables, and a monitor session on 127.0.0.3 that must receive every prefix
from the daemon -- prints the load tester's result table and one closing sentence (what was
measured, and the result), then stops the daemon and removes every file it
made.  Nothing leaves the loopback range.
"""

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

MONITOR = "127.0.0.3"
FIRST_PEER = 10  # peers are 127.0.0.10, .11, ...
DAEMON_AS = 65000
MONITOR_AS = 64999
FIRST_PEER_AS = 64600


def _free_port(host):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def config_text(port, peers, api_socket):
    """The daemon's TOML: every emulated peer and the monitor as passive
    eBGP neighbours with accept-all import and export (the demo measures the
    speaker, not a policy)."""
    lines = [
        "[global]",
        "asn = %d" % DAEMON_AS,
        'router-id = "192.0.2.250"',
        'listen = ["127.0.0.1:%d"]' % port,
        "[global.api]",
        'socket = "%s"' % api_socket,
        "[global.log]",
        'level = "warning"',
        "",
        "[[peer-groups]]",
        'name = "demo"',
        "passive = true",
        'default-import = "accept"',
        'default-export = "accept"',
        "timers = { hold-time = 90 }",
    ]
    for i in range(peers):
        lines += [
            "[[neighbors]]",
            'address = "127.0.0.%d"' % (FIRST_PEER + i),
            "peer-as = %d" % (FIRST_PEER_AS + i),
            'peer-group = "demo"',
            'description = "loadtest peer %d"' % (i + 1),
        ]
    lines += ["[[neighbors]]", 'address = "%s"' % MONITOR, "peer-as = %d" % MONITOR_AS, 'peer-group = "demo"',
              'description = "loadtest monitor"', ""]
    return "\n".join(lines)


def _wait_listening(port, proc, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("the daemon exited with status %d before listening" % proc.returncode)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("the daemon did not listen on 127.0.0.1:%d within %.0f s" % (port, timeout))


def _loadtest(argv):
    """``fastbgp loadtest ARGV`` in this process (its table goes to our
    stdout), through the load tester's own parser."""
    from fastbgp.loadtest import cli as loadtest_cli

    parser = argparse.ArgumentParser(prog="fastbgp")
    loadtest_cli.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def _n(x):
    return format(int(x), ",")


def _rate(x):
    """442123 -> "442k", 1234567 -> "1.23M" prefixes/s."""
    if x >= 1e6:
        return "%.2fM" % (x / 1e6)
    if x >= 1e3:
        return "%.0fk" % (x / 1e3)
    return "%.0f" % x


def _peers(n):
    return "1 peer" if n == 1 else "%d peers" % n


def summary(report, peers) -> str:
    """The one plain sentence the demo ends with: what was measured and the
    result, from the load tester's report."""
    ann = next((p for p in report.phases if p.kind == "announce"), None)
    rss = report.target.peak_rss_kb
    rss_text = ", peak RSS %.0f MiB" % (rss / 1024) if rss else ""
    pss = report.target.peak_pss_kb
    if rss and pss:  # a front and its workers: they share pages
        rss_text += " summed over its processes (%.0f MiB PSS, shared pages counted once)" % (pss / 1024)
    if ann is None:
        return "fastbgp demo: no announce phase ran, nothing was measured."
    dlv = ""
    if ann.deliver_rate:
        dlv = " (it accepted them off the wire in %.2f s, %s prefixes/s)" % (ann.deliver_time, _rate(ann.deliver_rate))
    if ann.converge_time is None or ann.timed_out or ann.received < ann.expected:
        return ("fastbgp demo: the daemon did not pass every prefix on: the monitor received %s of the %s prefixes "
                "from %s%s%s." % (_n(ann.received), _n(ann.expected), _peers(peers), dlv, rss_text))
    return ("fastbgp demo: the daemon passed %s prefixes from %s to the monitor in %.2f s, %s prefixes/s%s%s."
            % (_n(ann.expected), _peers(peers), ann.converge_time, _rate(ann.converge_rate or 0), dlv, rss_text))


def run(peers=10, prefixes=100_000, lengths="24", json_path=None, plot_path=None, keep=False):
    """Run the demo; returns the load tester's exit status."""
    if peers < 1 or peers > 200:
        raise ValueError("--peers must be 1..200 (loopback addresses 127.0.0.10 onwards)")
    if prefixes < 1:
        raise ValueError("--prefixes must be positive")
    workdir = tempfile.mkdtemp(prefix="fastbgp-demo-")
    port = _free_port("127.0.0.1")
    conf = os.path.join(workdir, "fastbgp.toml")
    with open(conf, "w") as f:
        f.write(config_text(port, peers, os.path.join(workdir, "api.sock")))
    log = open(os.path.join(workdir, "daemon.log"), "wb")
    proc = subprocess.Popen([sys.executable, "-m", "fastbgp", "daemon", "-c", conf], stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_listening(port, proc)
        print("fastbgp demo: daemon pid %d on 127.0.0.1:%d; %d peers x %s prefixes; monitor %s"
              % (proc.pid, port, peers, format(prefixes, ","), MONITOR), flush=True,
              file=sys.stderr if json_path == "-" else sys.stdout)
        argv = [
            "loadtest",
            "--target", "127.0.0.1", "--target-port", str(port), "--target-as", str(DAEMON_AS),
            "--target-pid", str(proc.pid),
            "--peers", str(peers), "--peer-address", "127.0.0.%d" % FIRST_PEER, "--peer-as", str(FIRST_PEER_AS),
            "--prefixes", str(prefixes), "--lengths", lengths, "--overlap", "0",
            "--monitor", MONITOR, "--monitor-as", str(MONITOR_AS),
            "--name", "fastbgp demo",
        ]
        # The report is always written (to the work directory unless asked
        # elsewhere): the closing sentence is read from it.
        report_path = json_path if json_path and json_path != "-" else os.path.join(workdir, "report.json")
        argv += ["--json", report_path]
        if plot_path:
            argv += ["--plot", plot_path]
        if json_path == "-":
            # stdout carries the JSON report only: the table goes to stderr.
            with contextlib.redirect_stdout(sys.stderr):
                status = _loadtest(argv)
        else:
            status = _loadtest(argv)
        if proc.poll() is not None:
            print("fastbgp demo: the daemon died during the run (status %d); its log: %s" % (proc.returncode, log.name))
            keep = True
            return 1
        from fastbgp.loadtest import report as R

        try:
            rep = R.read_json(report_path)
        except (OSError, ValueError) as exc:
            print("fastbgp demo: no report (%s)" % exc)
            return status or 1
        if json_path == "-":
            R.write_json(rep, "-")
        print(summary(rep, peers), file=sys.stderr if json_path == "-" else sys.stdout, flush=True)
        return status
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()
        if keep:
            print("fastbgp demo: files kept in %s" % workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def add_parser(sub):
    d = sub.add_parser("demo", help="daemon plus load test on loopback: prints a result table",
                       description="Start a fastbgp daemon on 127.0.0.1, blast it with emulated peers "
                                   "and measure how fast a monitor session receives every prefix.")
    d.add_argument("--peers", type=int, default=10, help="emulated eBGP peers (default 10)")
    d.add_argument("--prefixes", type=int, default=100_000, help="prefixes per peer, disjoint (default 100,000)")
    d.add_argument("--lengths", default="24", help='prefix lengths: "24" (default), "dfz" or "24:60,23:40"')
    d.add_argument("--json", metavar="FILE", help="also write the JSON report (- for stdout: the table goes to stderr)")
    d.add_argument("--plot", metavar="PNG", help="also write a plot (needs matplotlib)")
    d.add_argument("--keep", action="store_true", help="keep the daemon's config and log")
    d.set_defaults(func=lambda a: run(a.peers, a.prefixes, a.lengths, a.json, a.plot, a.keep))
