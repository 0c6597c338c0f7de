"""``fastbgp demo`` end to end: a real daemon process, the load tester and
the monitor on loopback; every announced prefix must reach the monitor."""

import json
import re

from fastbgp.cli import main as cli, demo


def test_demo_config_is_valid():
    from fastbgp.config.checks import load_config

    cfg = load_config(demo.config_text(17900, 3, "/tmp/x.sock"))
    assert [n.address for n in cfg.neighbors] == ["127.0.0.10", "127.0.0.11", "127.0.0.12", demo.MONITOR]
    assert all(n.passive for n in cfg.neighbors)


def test_demo_runs_and_converges(tmp_path, capsys):
    report = tmp_path / "demo.json"
    status = cli.main(["demo", "--peers", "3", "--prefixes", "5000", "--json", str(report)])
    out = capsys.readouterr().out
    assert status == 0, out
    assert "3/3 established" in out and "0 hold-timer expiries" in out
    data = json.loads(report.read_text())
    announce = [p for p in data["phases"] if p["kind"] == "announce"][0]
    # Disjoint tables: the monitor must hold all 15,000 prefixes.
    assert announce["expected"] == 15000
    assert announce["converged"] is not None and not announce["timed_out"]
    assert announce["received"] >= 15000
    # It ends with one plain sentence: what was measured, and the result.
    last = out.strip().splitlines()[-1]
    m = re.fullmatch(r"fastbgp demo: the daemon passed 15,000 prefixes from 3 peers to the monitor in [0-9.]+ s, "
                     r"[0-9.]+[kM]? prefixes/s \(it accepted them off the wire in [0-9.]+ s, [0-9.]+[kM]? "
                     r"prefixes/s\), peak RSS ([0-9]+) MiB( summed over its processes \(([0-9]+) MiB PSS, shared "
                     r"pages counted once\))?\.", last)
    assert m, last
    # A front and its workers (the default on a machine of several cores):
    # their PSS beside the summed RSS, and under it (they share pages).
    pss = data["target"].get("peak_pss_kb")
    assert (m.group(2) is not None) == (pss is not None), (last, pss)
    if pss is not None:
        assert int(m.group(3)) < int(m.group(1))
    # The columns are explained, and "sent/s" (bytes queued locally) is gone.
    assert "dlv/s" in out and "prefixes per second the target accepted off the wire" in " ".join(out.split())
    assert "sent/s" not in out
    assert announce["delivered"] is not None and announce["read_checked"] == 3


def test_demo_summary_when_the_monitor_misses_prefixes():
    from fastbgp.loadtest import report as R

    rep = R.Report(phases=[R.PhaseResult(name="announce", kind="announce", expected=100, received=40,
                                         timed_out=True)])
    assert demo.summary(rep, 2) == ("fastbgp demo: the daemon did not pass every prefix on: the monitor received 40 "
                                    "of the 100 prefixes from 2 peers.")


def test_demo_json_dash_keeps_stdout_json(capsys):
    status = cli.main(["demo", "--peers", "1", "--prefixes", "1000", "--json", "-"])
    cap = capsys.readouterr()
    assert status == 0, cap.err
    data = json.loads(cap.out)  # nothing but the report on stdout
    assert data["totals"]["delivered_prefixes"] == 1000
    assert "fastbgp demo: the daemon passed 1,000 prefixes from 1 peer to" in cap.err
