"""The ``fastbgp`` command line against a real Daemon (the harness of
test_api.py), through ``cli.main([...])`` as a user's shell would call it."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import msgspec
import pytest

pytest.importorskip("aiohttp")

from fastbgp.cli import main as cli
from fastbgp.control import contract as ctl  # noqa: E402
from test_api import PEER_PREFIXES, TOKEN, harness, http  # noqa: E402,F401 - harness is a fixture


@pytest.fixture
def fastbgp(harness, capsys, monkeypatch):
    """run(*words) -> (exit status, stdout, stderr) of `fastbgp words...`
    pointed at the harness daemon's socket through the environment."""
    monkeypatch.setenv("FASTBGP_API_SOCKET", harness.socket)
    monkeypatch.delenv("FASTBGP_API_URL", raising=False)
    monkeypatch.delenv("FASTBGP_API_TOKEN", raising=False)

    def run(*words):
        capsys.readouterr()
        rc = cli.main(list(words))
        out, err = capsys.readouterr()
        return rc, out, err

    return run


def test_neighbor_table(fastbgp):
    rc, out, err = fastbgp("neighbor")
    assert rc == 0, err
    lines = out.splitlines()
    header = lines[0].split()
    assert header == ["Peer", "AS", "Up/Down", "State", "#Received", "Accepted"]
    rows = {ln.split()[0]: ln.split() for ln in lines[2:] if ln.strip()}
    assert rows["127.0.0.2"][1] == "65002" and rows["127.0.0.2"][3] == "Establ"
    assert rows["127.0.0.2"][4] == "3"  # two IPv4 and one IPv6 prefix
    assert rows["127.0.0.3"][3] in ("Active", "Idle", "Connect")


def test_neighbor_json_and_detail(fastbgp):
    rc, out, _ = fastbgp("neighbor", "-j")
    assert rc == 0
    neighbors = msgspec.json.decode(out, type=list[ctl.NeighborSummary])
    assert {n.address for n in neighbors} == {"127.0.0.2", "127.0.0.3"}
    # -j before the command works as well.
    rc, out2, _ = fastbgp("-j", "neighbor", "127.0.0.2")
    assert rc == 0 and msgspec.json.decode(out2, type=ctl.NeighborDetail).remote_id == "10.0.0.2"

    rc, out, _ = fastbgp("neighbor", "127.0.0.2")
    assert rc == 0
    assert "BGP neighbor is 127.0.0.2, remote AS 65002, local AS 65001" in out
    assert "remote router ID 10.0.0.2" in out and "BGP state = Established, up for" in out
    assert "Message statistics" in out and "Opens" in out
    assert "Families: ipv4-unicast, ipv6-unicast" in out


def test_neighbor_adj_in(fastbgp):
    rc, out, _ = fastbgp("neighbor", "127.0.0.2", "adj-in")
    assert rc == 0
    for p in PEER_PREFIXES:
        assert p in out
    assert "65002 65020" in out and "{Med: 7}" in out
    rc, out, _ = fastbgp("neighbor", "127.0.0.2", "adj-in", "-a", "ipv6", "-j")
    assert [r["prefix"] for r in json.loads(out)] == ["2001:db8:100::/48"]
    rc, out, _ = fastbgp("neighbor", "127.0.0.2", "adj-in", PEER_PREFIXES[0], "-j")
    assert [r["prefix"] for r in json.loads(out)] == [PEER_PREFIXES[0]]
    rc, out, _ = fastbgp("neighbor", "127.0.0.2", "adj-out")
    assert rc == 0


def test_unknown_neighbor(fastbgp):
    rc, out, err = fastbgp("neighbor", "192.0.2.99")
    assert rc == 1 and "unknown neighbor 192.0.2.99" in err and "Traceback" not in err


def test_neighbor_disable_enable(fastbgp, harness):
    rc, out, err = fastbgp("neighbor", "127.0.0.3", "disable", "--message", "planned work")
    assert rc == 0 and out.strip() == "neighbor 127.0.0.3 disabled", err
    rc, out, _ = fastbgp("neighbor", "-j")
    n = {x["address"]: x for x in json.loads(out)}["127.0.0.3"]
    assert n["admin_down"] is True and n["state"] == "idle"
    rc, out, _ = fastbgp("neighbor")
    assert "Idle(Admin)" in out
    rc, out, _ = fastbgp("neighbor", "127.0.0.3", "enable")
    assert rc == 0 and out.strip() == "neighbor 127.0.0.3 enabled"
    rc, out, _ = fastbgp("neighbor", "-j")
    assert {x["address"]: x for x in json.loads(out)}["127.0.0.3"]["admin_down"] is False
    rc, out, _ = fastbgp("neighbor", "127.0.0.2", "softreset", "in")
    assert rc == 0 and out.strip() == "neighbor 127.0.0.2 soft reset (in)"
    rc, out, _ = fastbgp("neighbor", "127.0.0.2", "softresetout")
    assert rc == 0 and "(out)" in out


def test_global_rib_add_show_del(fastbgp, harness):
    rc, out, err = fastbgp("global", "rib", "add", "198.51.100.0/24", "nexthop", "192.0.2.1", "aspath", "65100 65101",
                           "community", "65001:7", "no-export", "med", "5", "local-pref", "300", "-a", "ipv4")
    assert rc == 0 and out.strip() == "announced 1 prefix", err
    rc, out, _ = fastbgp("global", "rib", "198.51.100.0/24", "-j")
    (r,) = msgspec.json.decode(out, type=list[ctl.Route])
    assert r.as_path == [65100, 65101] and r.med == 5 and r.local_pref == 300
    assert r.communities == ["65001:7", "no-export"] and r.source == "local" and r.next_hop == "192.0.2.1"
    # An address finds the covering route (longest match).
    rc, out, _ = fastbgp("global", "rib", "198.51.100.9", "-j")
    assert [x["prefix"] for x in json.loads(out)] == ["198.51.100.0/24"]

    rc, out, _ = fastbgp("global", "rib")
    assert rc == 0
    lines = out.splitlines()
    assert lines[0].split() == ["Network", "Next", "Hop", "AS_PATH", "Age", "Attrs"]
    row = next(ln for ln in lines if "198.51.100.0/24" in ln)
    assert row.startswith("*>") and "65100 65101" in row and "{LocalPref: 300}" in row
    assert all(any(p in ln for ln in lines) for p in PEER_PREFIXES)

    rc, out, _ = fastbgp("global", "rib", "-j")
    assert "198.51.100.0/24" in {x["prefix"] for x in json.loads(out)}

    rc, out, _ = fastbgp("global", "rib", "summary")
    assert rc == 0 and "ipv4-unicast" in out and "ipv6-unicast" in out and "Prefixes" in out

    rc, out, _ = fastbgp("global", "rib", "add", "2001:db8:1::/48", "-a", "ipv6")
    assert rc == 0
    rc, out, _ = fastbgp("global", "rib", "-a", "ipv6", "-j")
    assert "2001:db8:1::/48" in {x["prefix"] for x in json.loads(out)}

    rc, out, _ = fastbgp("global", "rib", "del", "198.51.100.0/24")
    assert rc == 0 and out.strip() == "withdrew 1 prefix"
    rc, out, _ = fastbgp("global", "rib", "198.51.100.0/24")
    assert "Network not in table" in out
    rc, out, _ = fastbgp("global", "rib", "del", "all")
    assert rc == 0 and out.strip() == "withdrew 1 prefix"  # the IPv6 one; the peer's routes stay
    rc, out, _ = fastbgp("global", "rib", "-j")
    assert sorted(x["prefix"] for x in json.loads(out)) == sorted(PEER_PREFIXES)


@pytest.mark.parametrize(
    "words,message",
    [
        (["global", "rib", "add", "10.0.0.0/33"], "prefixes[0]: not an IP prefix"),
        (["global", "rib", "add", "10.0.0.0/24", "nexthop"], "nexthop needs a value"),
        (["global", "rib", "add", "10.0.0.0/24", "med", "x"], 'med: expected int 0..4294967295, got "x"'),
        (["global", "rib", "add", "10.0.0.0/24", "aspath", "65000 x"], "aspath[1]: expected an AS number"),
        (["global", "rib", "add", "10.0.0.0/24", "community", "65536:1"], "community[0]: \"65536:1\": '65536' is not 0..65535"),
        (["global", "rib", "add", "10.0.0.0/24", "-a", "ipv5"], "-a: unknown address family 'ipv5'"),
        (["global", "rib", "add", "10.0.0.0/24", "colour", "red"], "unknown word 'colour'"),
        (["global", "rib", "add", "2001:db8::/32", "-a", "ipv4"], "not an ipv4-unicast prefix"),
        (["global", "table"], "expected 'global' or 'global rib"),
        (["neighbor", "127.0.0.2", "dance"], "unknown neighbor command"),
        (["neighbor", "not-an-ip"], "not a neighbor address"),
        (["monitor", "everything"], "use: monitor"),
    ],
)
def test_usage_errors(fastbgp, words, message):
    rc, out, err = fastbgp(*words)
    assert rc == 2 and message in err and "Traceback" not in err


def test_daemon_side_rejection_is_reported(fastbgp):
    rc, out, err = fastbgp("global", "rib", "add", "2001:db8::/32", "nexthop", "192.0.2.1")
    assert rc == 1 and "next_hop" in err and "Traceback" not in err


@pytest.mark.timeout(30)
def test_monitor_prints_one_line_per_event(fastbgp, harness):
    stop = threading.Event()

    def poke():
        # Keep making events until the monitor has what it waits for (it
        # may subscribe after the first ones).
        i = 0
        while not stop.is_set() and i < 100:
            http(harness, "POST", "/v1/rib/announce", {"prefixes": ["192.0.2.%d/32" % i]})
            i += 1
            time.sleep(0.1)

    t = threading.Thread(target=poke)
    t.start()
    try:
        rc, out, err = fastbgp("monitor", "global", "rib", "--count", "2")
    finally:
        stop.set()
        t.join()
        http(harness, "POST", "/v1/rib/withdraw", {"prefixes": ["192.0.2.%d/32" % i for i in range(100)]})
    assert rc == 0, err
    lines = out.splitlines()
    assert len(lines) == 2
    for ln in lines:
        assert "[ROUTE] ipv4-unicast 192.0.2." in ln and "from local" in ln


@pytest.mark.timeout(30)
def test_monitor_json_state_change(fastbgp, harness):
    stop = threading.Event()

    def bounce():
        # Until the monitor has seen one (it may subscribe after the first).
        for _ in range(50):
            if stop.wait(0.2):
                return
            http(harness, "POST", "/v1/neighbors/127.0.0.3/disable")
            http(harness, "POST", "/v1/neighbors/127.0.0.3/enable")

    t = threading.Thread(target=bounce)
    t.start()
    try:
        rc, out, err = fastbgp("monitor", "neighbor", "127.0.0.3", "-j", "--count", "1")
    finally:
        stop.set()
        t.join()
    assert rc == 0, err
    ev = msgspec.json.decode(out.strip(), type=ctl.AnyEvent)
    assert isinstance(ev, ctl.StateChange) and ev.neighbor == "127.0.0.3"


def test_log_level_and_reload(fastbgp, harness):
    rc, out, _ = fastbgp("log-level", "debug")
    assert rc == 0 and out.strip() == "log level set to debug"
    rc, out, _ = fastbgp("log-level", "info")
    assert rc == 0
    rc, out, err = fastbgp("reload")
    assert rc == 0 and out.strip() == "configuration reloaded: no change", err
    try:
        harness.write_config(description="edited")
        rc, out, err = fastbgp("reload")
        assert rc == 0 and out.startswith("configuration reloaded\n"), err
        assert "changed: 127.0.0.2 (" in out and "description" in out
    finally:
        harness.write_config()
        fastbgp("reload")


def test_reload_refused_is_an_error(fastbgp, harness):
    try:
        harness.write_config(extra='\n[[neighbors]]\naddress = "127.0.0.9"\npeer-as = 0\n')
        rc, out, err = fastbgp("reload")
        assert rc == 1 and "peer-as" in err and "Traceback" not in err
    finally:
        harness.write_config()


def test_tcp_with_token(fastbgp, harness, monkeypatch):
    rc, out, err = fastbgp("--url", harness.tcp_url, "neighbor")
    assert rc == 1 and "unauthorized" in err and "FASTBGP_API_TOKEN" in err
    rc, out, err = fastbgp("neighbor", "--url", harness.tcp_url, "--token", TOKEN, "-j")
    assert rc == 0 and len(json.loads(out)) == 2, err
    monkeypatch.setenv("FASTBGP_API_TOKEN", TOKEN)
    monkeypatch.setenv("FASTBGP_API_URL", harness.tcp_url)
    rc, out, err = fastbgp("global", "rib", "summary", "-j")
    assert rc == 0 and {s["family"] for s in json.loads(out)} == {"ipv4-unicast", "ipv6-unicast"}


def test_daemon_not_running(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("FASTBGP_API_URL", raising=False)
    missing = str(tmp_path / "nope.sock")
    rc = cli.main(["--socket", missing, "neighbor"])
    out, err = capsys.readouterr()
    assert rc == 1 and "cannot reach the fastbgp daemon" in err and "no socket at " + missing in err
    assert "Traceback" not in err and out == ""
    monkeypatch.setenv("FASTBGP_API_SOCKET", missing)
    assert cli.main(["monitor"]) == 1
    rc = cli.main(["--url", "http://127.0.0.1:1", "reload"])
    out, err = capsys.readouterr()
    assert rc == 1 and "cannot reach" in err and "Traceback" not in err


def test_parse_route_words():
    f = cli.parse_route_words(["10.0.0.0/24", "10.0.1.0/24", "nexthop", "192.0.2.1", "aspath", "65000", "65001",
                               "origin", "e", "community", "65000:1,no-export", "large-community", "1:2:3",
                               "med", "0", "localpref", "100"])
    assert f == {"prefixes": ["10.0.0.0/24", "10.0.1.0/24"], "next_hop": "192.0.2.1", "as_path": [65000, 65001],
                 "origin": "egp", "communities": ["65000:1", "no-export"], "large_communities": ["1:2:3"],
                 "med": 0, "local_pref": 100}
    assert cli.parse_route_words(["10.0.0.0/8", "aspath", "65000 65001", "med", "3"])["as_path"] == [65000, 65001]
    with pytest.raises(cli.UsageError, match="given twice"):
        cli.parse_route_words(["10.0.0.0/8", "med", "1", "med", "2"])


def test_daemon_check(tmp_path, capsys):
    good = tmp_path / "ok.toml"
    good.write_text('[global]\nasn = 65001\nrouter-id = "10.0.0.1"\n')
    assert cli.main(["daemon", "-c", str(good), "--check"]) == 0
    assert "configuration OK" in capsys.readouterr().out
    bad = tmp_path / "bad.toml"
    bad.write_text('[global]\nasn = 65001\nrouter-id = "1.2.3"\n')
    assert cli.main(["daemon", "-c", str(bad), "--check"]) == 1
    assert "global.router-id" in capsys.readouterr().err


def test_other_commands_are_wired(capsys):
    parser = cli.build_parser()
    choices = parser._subparsers._group_actions[0].choices
    for name in ("neighbor", "global", "monitor", "reload", "log-level", "daemon", "bench"):
        assert name in choices
    import importlib.util

    for module, command in (("fastbgp.cli.mrt", "mrt"), ("fastbgp.loadtest.cli", "loadtest")):
        try:
            present = importlib.util.find_spec(module) is not None
        except ImportError:
            present = False
        assert (command in choices) == present, command
    with pytest.raises(SystemExit) as exc:
        cli.main(["bench", "codec", "--help"])
    assert exc.value.code == 0 and "--table-size" in capsys.readouterr().out


def test_bench_codec_still_works(capsys):
    assert cli.main(["bench", "codec", "--table-size", "500", "--repeat", "1", "--min-time", "0.001", "-j"]) == 0
    out = capsys.readouterr().out
    rows = json.loads(out[out.index("["):])
    assert rows and {"case", "op", "prefixes_per_s"} <= set(rows[0])


def test_fastbgp_daemon_command_end_to_end(tmp_path):
    """`fastbgp daemon -c FILE` as a process: the API comes up on the
    configured socket, the CLI reads it, SIGTERM stops it cleanly."""
    sock = tmp_path / "d" / "api.sock"
    cfg = tmp_path / "d.toml"
    cfg.write_text('[global]\nasn = 65001\nrouter-id = "10.0.0.1"\nlisten = []\n'
                   '[global.api]\nsocket = "%s"\n'
                   '[[neighbors]]\naddress = "127.0.0.5"\npeer-as = 65005\npassive = true\n' % sock)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "fastbgp", "daemon", "-c", str(cfg), "--log-json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        deadline = time.monotonic() + 15
        while not sock.exists():
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "the API socket never appeared"
            time.sleep(0.05)
        out = subprocess.run([sys.executable, "-m", "fastbgp", "--socket", str(sock), "neighbor", "-j"],
                             capture_output=True, timeout=15)
        assert out.returncode == 0, out.stderr.decode()
        assert [n["address"] for n in json.loads(out.stdout)] == ["127.0.0.5"]
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
    assert proc.returncode == 0, err.decode()
    # --log-json: every stderr line is one JSON object.
    lines = [ln for ln in err.decode().splitlines() if ln.strip()]
    assert lines and all(json.loads(ln)["level"] for ln in lines)
    assert not sock.exists()  # removed on the way out


def test_large_table_prints_plain_aligned_lines(fastbgp, monkeypatch):
    # Past TABLE_MAX_ROWS the view streams instead of building a rich table.
    monkeypatch.setattr(cli, "TABLE_MAX_ROWS", 1)
    rc, out, _ = fastbgp("global", "rib")
    assert rc == 0
    lines = out.splitlines()
    assert lines[0].split() == ["Network", "Next", "Hop", "AS_PATH", "Age", "Attrs"]
    assert sorted(ln.split()[1] for ln in lines[1:]) == sorted(PEER_PREFIXES)
    assert all(ln.startswith("*>") for ln in lines[1:])


def test_capability_names_show_unknown_codes():
    # An uninterpreted capability is listed with its code (as gobgp does),
    # not as a bare "unknown".
    caps = [{"kind": "multiprotocol", "afi": 1, "safi": 1}, {"kind": "unknown", "code": 73, "value": ""}]
    assert cli.capability_names(caps) == "multiprotocol(1/1), unknown(73)"
