"""fastbgp loadtest measures the target, not our own socket buffer:
"delivered" waits until the target has taken every octet, the sessions
stay up until the target is quiet and end with a Cease, ``--json -`` keeps
stdout pure JSON, and the plot starts its axes at 0 with a target panel.

The target here is a real BGP speaker reduced to what these checks need: a
blocking-socket OPEN/KEEPALIVE exchange (RFC 4271 §8.2.2) in a thread, a
small receive buffer, and a pause before it starts reading -- the slow
reader every honest delivery figure has to wait for."""

import functools
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from fastbgp.wire import capabilities as caps
from fastbgp.wire import codec
from fastbgp.loadtest import procnet, report as R, runner, scenario as S
from fastbgp.testing import loops

run = functools.partial(loops.run, timeout=120)

TARGET_AS = 65000


class SlowTarget:
    """One passive BGP session on 127.0.0.1 that waits ``delay`` seconds
    after Established before reading anything, then reads as fast as it
    can; records when the last UPDATE was read and which NOTIFICATION
    ended the session."""

    def __init__(self, delay=0.0, rcvbuf=4096):
        self.delay = delay
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Set before listen(): accepted sockets inherit it, and a small
        # window makes our side keep the unread octets in its send queue.
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(4)
        self.port = self.lsock.getsockname()[1]
        self.established_at = None
        self.reading_from = None
        self.last_update_at = None
        self.notification = None  # (code, subcode, time.monotonic())
        self.updates = 0
        self.error = None
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        try:
            self.lsock.settimeout(60)
            conn, _addr = self.lsock.accept()
            conn.settimeout(60)
            with conn:
                self._session(conn)
        except Exception as exc:  # reported by the test
            self.error = repr(exc)
        finally:
            self.lsock.close()

    def _session(self, conn):
        reader = codec.MessageReader()
        state = "opensent"
        while True:
            if state == "established" and self.reading_from is None:
                time.sleep(self.delay)
                self.reading_from = time.monotonic()
            data = conn.recv(65536)
            if not data:
                return
            for mtype, body in reader.feed(data):
                if mtype == 1 and state == "opensent":
                    mine = caps.encode_all([caps.Multiprotocol(1, 1), caps.FourOctetAS(TARGET_AS)])
                    conn.sendall(codec.build_open(TARGET_AS, 90, 0xC0000201, mine) + codec.KEEPALIVE)
                    state = "openconfirm"
                elif mtype == 4 and state == "openconfirm":
                    state = "established"
                    self.established_at = time.monotonic()
                elif mtype == 2:
                    self.updates += 1
                    self.last_update_at = time.monotonic()
                elif mtype == 3:
                    code, sub, _data = codec.parse_notification(body)
                    self.notification = (code, sub, time.monotonic())

    def join(self):
        self.thread.join(10)


def scenario(port, prefixes=20_000, settle=0.5, pid=None, **extra):
    raw = {"target": {"address": "127.0.0.1", "asn": TARGET_AS, "port": port},
           "peers": {"count": 1, "address": "127.0.3.1"},
           "table": {"prefixes": prefixes},
           "monitor": {"settle": settle, "timeout": 30},
           "progress": False}
    if pid is not None:
        raw["target"]["pid"] = [pid]
    raw.update(extra)
    return S.from_dict(raw)


def test_delivered_waits_until_the_target_has_read_everything():
    tgt = SlowTarget(delay=1.0)
    rep = run(runner.run(scenario(tgt.port)))
    tgt.join()
    assert tgt.error is None, tgt.error
    ann = next(p for p in rep.phases if p.kind == "announce")
    assert ann.sent_prefixes == 20_000 and ann.undelivered == 0
    # The target shares our namespace: its reading was seen (sock_diag).
    assert ann.read_checked == 1
    # Written into our own kernel almost at once; delivered only after the
    # target's one-second pause, when it read the last UPDATE.
    assert ann.delivered is not None and ann.deliver_time >= 0.95, ann
    assert ann.send_time < ann.deliver_time
    assert tgt.last_update_at - tgt.reading_from < ann.deliver_time
    assert ann.deliver_rate == pytest.approx(20_000 / ann.deliver_time)
    assert ann.deliver_rate < 20_000 / 0.95
    # Every prefix counted as delivered in the totals and the timeline.
    assert rep.totals.delivered_prefixes == 20_000
    assert rep.timeline[-1][7] == 20_000
    assert any("delivered" in m for m in rep.measured)
    assert any("--monitor" in m for m in rep.not_measured) and any("--target-pid" in m for m in rep.not_measured)


def test_sessions_stay_up_settle_seconds_then_cease():
    tgt = SlowTarget(delay=0.0)
    rep = run(runner.run(scenario(tgt.port, prefixes=5000, settle=0.6)))
    tgt.join()
    assert tgt.error is None, tgt.error
    assert rep.drain.method == "settle" and rep.drain.waited >= 0.6 and rep.drain.end == "cease"
    # RFC 4486 §4: Cease / Administrative Shutdown, sent after the settle
    # time following the last UPDATE the target read.
    code, sub, t_cease = tgt.notification
    assert (code, sub) == (6, 2)
    assert t_cease - tgt.last_update_at >= 0.55


def test_sessions_stay_up_until_the_target_cpu_is_quiet(tmp_path):
    """With --target-pid the wait follows the target's CPU from /proc: a
    process that stays busy 1.5 s keeps the sessions up about that long."""
    busy = subprocess.Popen([sys.executable, "-c", "import time\nt = time.time()\nwhile time.time() - t < 1.5: pass\n"
                             "time.sleep(30)"])
    try:
        tgt = SlowTarget(delay=0.0)
        t0 = time.monotonic()
        rep = run(runner.run(scenario(tgt.port, prefixes=2000, settle=0.2, pid=busy.pid)))
        tgt.join()
    finally:
        busy.kill()
        busy.wait()
    assert rep.drain.method == "target-cpu" and rep.drain.quiet
    code, sub, t_cease = tgt.notification
    assert (code, sub) == (6, 2)
    assert t_cease - t0 >= 1.5
    assert rep.target.peak_rss_kb > 0
    assert any("CPU" in m and "quiet" in m for m in rep.measured)


def test_procnet_sees_unread_octets_of_a_connection():
    """The target-side check: /proc/PID/net/tcp rx_queue of the far end of
    our connection, and the sock_diag lookup of it, count what the process
    has not read."""
    srv = socket.create_server(("127.0.0.1", 0))
    cli = socket.create_connection(srv.getsockname())
    acc, _ = srv.accept()
    try:
        cli.sendall(b"x" * 3000)
        key = cli.getsockname()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            q = procnet.rx_queues([os.getpid()])
            if q.get(key) == 3000:
                break
            time.sleep(0.01)
        assert q.get(key) == 3000
        diag = procnet.SockDiag()
        assert diag.rx_queue(srv.getsockname(), key) == 3000
        # Not that connection (a lookup would fall back to the listener).
        assert diag.rx_queue(srv.getsockname(), ("127.0.0.1", 1)) is None
        got = 0
        while got < 3000:
            got += len(acc.recv(4096))
        assert procnet.rx_queues([os.getpid()]).get(key) == 0
        assert diag.rx_queue(srv.getsockname(), key) == 0
        diag.close()
        assert diag.rx_queue(srv.getsockname(), key) is None
    finally:
        for s in (cli, acc, srv):
            s.close()
    assert procnet.rx_queues([]) is None
    # Malformed lines are skipped, not fatal.
    assert procnet.parse("header\n  0: zz:1 nonsense 01 00:00\n garbage\n") == {}
    assert procnet.parse("h\n 1: 0100007F:0CEA 0200007F:B4FB 01 00000000:00000010 0\n") == {("127.0.0.2", 46331): 16}


def test_json_dash_prints_only_json_on_stdout():
    tgt = SlowTarget(delay=0.0)
    cmd = ("%s -m fastbgp loadtest --target 127.0.0.1 --target-port %d --target-as %d --peer-address 127.0.3.2 "
           "--prefixes 2000 "
           "--settle 0.2 --no-progress --json - | %s -m json.tool" % (sys.executable, tgt.port, TARGET_AS,
                                                                    sys.executable))
    res = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, text=True, timeout=120,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    tgt.join()
    assert res.returncode == 0, res.stderr[-2000:]
    import json

    data = json.loads(res.stdout)
    assert data["totals"]["delivered_prefixes"] == 2000
    # The table went to stderr.
    assert "sessions 1/1 established" in res.stderr and "sessions 1/1" not in res.stdout
    words = res.stderr.split("\n", 1)[0].split()
    assert all(a != b for a, b in zip(words, words[1:])), words  # "fastbgp loadtest loadtest" once was


def test_plot_axes_start_at_zero_with_a_target_panel(tmp_path):
    pytest.importorskip("matplotlib")
    tgt = SlowTarget(delay=0.3)
    rep = run(runner.run(scenario(tgt.port, prefixes=5000, settle=0.2, name="fastbgp demo")))
    tgt.join()
    # Samples fine enough for a 0.25 s convergence: rows 10 ms apart while
    # counts change.
    gaps = [b[0] - a[0] for a, b in zip(rep.timeline, rep.timeline[1:])]
    assert min(gaps) <= 0.015
    fig = R.figure(rep)
    ax, ax_cpu = fig.axes[0], fig.axes[1]
    assert len(fig.axes) == 3  # prefixes, target CPU, its RSS twin
    assert ax.get_xlim()[0] == 0 and ax.get_ylim()[0] == 0
    assert ax_cpu.get_xlim()[0] == 0 and ax_cpu.get_ylim()[0] == 0 and fig.axes[2].get_ylim()[0] == 0
    # The x axis reaches past the drain band.
    assert ax.get_xlim()[1] >= rep.drain.start + rep.drain.waited - rep.phases[1].start
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    # No monitor in this run: no monitor curve pretending to be zero.
    assert any("delivered" in x for x in labels) and not any("monitor" in x for x in labels), labels
    # Phase labels are inside the axes (axes-fraction y below 1).
    texts = [t for t in ax.texts if t.get_text() == "announce"]
    assert texts and all(0 < t.get_position()[1] < 1 for t in texts)
    words = ax.get_title().replace(":", " ").split()
    assert all(a != b for a, b in zip(words, words[1:])) and words.count("fastbgp") == 1, words
    out = tmp_path / "p.png"
    assert R.plot(rep, str(out)) is None and out.stat().st_size > 10_000
    import matplotlib.pyplot as plt

    plt.close(fig)


@pytest.mark.interop
@pytest.mark.slow
@pytest.mark.timeout(240)
def test_bird_holds_every_delivered_route(tmp_path):
    """No monitor, BIRD as the target: when the load test says delivered
    and the sessions are kept up until BIRD is quiet, BIRD holds every
    route (the figures are not bytes in our socket buffer that BIRD later
    flushes); the run ends with a Cease."""
    import json
    import re

    from fastbgp.testing import lab as L

    if not L.is_root():
        pytest.skip("interop lab needs root (network namespaces)")
    missing = L.missing_binaries("ip", *L.Bird.binaries)
    if missing:
        pytest.skip("not installed: %s" % ", ".join(missing))
    n = 400_000
    out = tmp_path / "bird.json"
    counts = []
    with L.Lab() as lab:
        dut = lab.add_host("dut", ipv4="192.0.2.1/24", ipv6=None)
        gen = lab.add_host("gen", ipv4="192.0.2.2/24", ipv6=None)
        L._run([L.IP, "-n", gen.ns, "addr", "add", "192.0.2.10/24", "dev", "eth0"])
        bird = L.Bird(dut, 65000, router_id="192.0.2.1", neighbors=[
            L.Neighbor("192.0.2.10", 64512, passive=True, options={"import": "all", "export": "none"}),
        ]).start()
        proc = gen.popen([sys.executable, "-m", "fastbgp", "loadtest", "--target", "192.0.2.1", "--target-as", "65000",
                          "--peer-address", "192.0.2.10", "--prefixes", str(n), "--target-pid", str(bird.proc.pid),
                          "--hold", "4", "--timeout", "60", "--no-progress", "--json", str(out)],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        while proc.poll() is None:
            m = re.search(r"(\d+) of \d+ routes", bird.birdc("show", "route", "count").stdout)
            counts.append((time.monotonic(), int(m.group(1)) if m else -1))
            # Counting 400k routes costs BIRD CPU: polled rarely enough not
            # to keep it from going quiet.
            time.sleep(1.0)
        text = proc.stdout.read()
        assert proc.returncode == 0, text[-3000:]
        m = re.search(r"(\d+) of \d+ routes", bird.birdc("show", "route", "count").stdout)
        after = int(m.group(1)) if m else -1
    rep = json.loads(out.read_text())
    ann = next(p for p in rep["phases"] if p["kind"] == "announce")
    assert ann["sent_prefixes"] == n and ann["undelivered"] == 0
    # The target's own socket table showed it read everything.
    assert ann["read_checked"] == 1 and ann["deliver_rate"] > 0
    assert rep["drain"]["method"] == "target-cpu" and rep["drain"]["quiet"]
    # While the sessions were held, BIRD held every route; the Cease at the
    # end made it withdraw them (RFC 4271 §9.1).
    assert max(c for _t, c in counts) == n, counts[-20:]
    assert after == 0
    print("BIRD: delivered %d prefixes in %.2f s (%.0f prefixes/s), kept up %.2f s until quiet, BIRD CPU %.2f s, "
          "peak RSS %.0f MiB" % (n, ann["deliver_time"], ann["deliver_rate"], rep["drain"]["waited"],
                                 rep["target"]["cpu"] or 0, (rep["target"]["peak_rss_kb"] or 0) / 1024))
