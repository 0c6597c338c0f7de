"""``fastbgp demo`` end to end: a real daemon process, the load tester and
the monitor on loopback; every announced prefix must reach the monitor."""

import json

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
