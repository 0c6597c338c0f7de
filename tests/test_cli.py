# ruff: noqa: F811 - the harness fixture is imported, then named as a parameter
"""The ``fastbgp`` command line against a real Daemon (the harness of
test_api.py), through ``cli.main([...])`` as a user's shell would call it."""

import argparse
import ipaddress
import json
import logging
import os
import re
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


# ------------------------------------------------- issue 14: CLI and API views

# Appended to the harness config: the lines before the first table belong to
# the last [[neighbors]] (127.0.0.3, passive, nobody there), so changing
# them never touches the session with the peer.
POLICY_EXTRA = """\
import-policy = ["from-customers"]
export-policy = ["to-customers"]
default-export = "reject"
prefix-limit = { ipv4-unicast = { max = 100, restart-after = 30 } }

[defined-sets]
prefix-sets = [{ name = "customer-nets", prefixes = ["10.0.0.0/8 le 24", "192.0.2.0/24"] }]
as-path-sets = [{ name = "from-65020", as-paths = ["65020$"] }]
community-sets = [{ name = "blackhole", communities = ["65535:666"] }]

[[policies]]
name = "from-customers"
[[policies.statements]]
name = "nets"
conditions = { prefix-set = "customer-nets", as-path-set = { name = "from-65020", match = "invert" } }
actions = { result = "accept", set-local-pref = 200, communities = { add = ["65001:100"] } }

[[policies]]
name = "to-customers"
[[policies.statements]]
conditions = { community-set = "blackhole" }
actions = { result = "reject" }
"""


@pytest.fixture
def policy_config(fastbgp, harness):
    harness.write_config(extra=POLICY_EXTRA)
    rc, out, err = fastbgp("reload")
    assert rc == 0, err
    try:
        yield
    finally:
        harness.write_config()
        fastbgp("reload")


def test_global_shows_the_daemon(fastbgp, harness):
    rc, out, err = fastbgp("global")
    assert rc == 0, err
    assert "AS:" in out and "65001" in out and "Router-ID:" in out and "10.0.0.1" in out
    assert "Listening Port:" in out and "none (outbound only)" in out  # listen = []
    assert "Uptime:" in out and "Neighbors:" in out and "2 configured, 1 established" in out
    assert "Refused connections:" in out and "from unconfigured addresses" in out
    rows = {ln.split()[0]: ln.split() for ln in out.splitlines() if ln.strip().startswith("ipv")}
    assert int(rows["ipv4-unicast"][1].replace(",", "")) >= len(PEER_PREFIXES)
    rc, out, _ = fastbgp("global", "-j")
    g = msgspec.json.decode(out, type=ctl.GlobalInfo)
    assert g.asn == 65001 and g.router_id == "10.0.0.1" and g.listen == [] and g.uptime > 0
    assert {r.family for r in g.ribs} == {"ipv4-unicast", "ipv6-unicast"}
    assert g.refused_unknown == 0 and g.half_open_closed == 0


def test_policy_and_defined_sets(fastbgp, policy_config):
    rc, out, err = fastbgp("policy")
    assert rc == 0, err
    assert "Name from-customers:" in out and "StatementName nets:" in out
    assert "PrefixSet:" in out and "any customer-nets" in out and "invert from-65020" in out
    assert "LocalPref:" in out and "200" in out and "add 65001:100" in out and "accept" in out
    assert "Name to-customers:" in out and "StatementName #1:" in out and "reject" in out
    assert "Used by: 127.0.0.3 import" in out and "127.0.0.3 export" in out
    rc, out, _ = fastbgp("policy", "to-customers")
    assert "to-customers" in out and "from-customers" not in out
    rc, out, err = fastbgp("policy", "nothing-like-it")
    assert rc == 1 and "no policy named" in err
    rc, out, _ = fastbgp("policy", "-j")
    assert [p["name"] for p in json.loads(out)] == ["from-customers", "to-customers"]

    rc, out, err = fastbgp("defined-set")
    assert rc == 0, err
    assert "Prefix sets:" in out and "customer-nets" in out and "10.0.0.0/8 le 24" in out and "192.0.2.0/24" in out
    assert "As-path sets:" in out and "65020$" in out and "Community sets:" in out and "65535:666" in out
    rc, out, _ = fastbgp("defined-set", "community")
    assert "65535:666" in out and "customer-nets" not in out
    rc, out, _ = fastbgp("defined-set", "prefix", "customer-nets", "-j")
    assert json.loads(out) == {"prefix-sets": [{"name": "customer-nets",
                                                "prefixes": ["10.0.0.0/8 le 24", "192.0.2.0/24"]}]}
    rc, out, err = fastbgp("defined-set", "colour")
    assert rc == 2 and "unknown kind 'colour'" in err


def test_neighbor_policy_and_limits(fastbgp, policy_config):
    rc, out, err = fastbgp("neighbor", "127.0.0.3", "policy")
    assert rc == 0, err
    imp, exp = out.split("Export policy:")
    assert "Import policy:" in imp and "Default: REJECT" in imp  # eBGP without a default: RFC 8212
    assert "Name from-customers:" in imp and "StatementName nets:" in imp
    assert "Default: REJECT" in exp and "Name to-customers:" in exp
    rc, out, _ = fastbgp("neighbor", "127.0.0.3")
    assert "Import policy: from-customers (default reject)" in out
    assert "Export policy: to-customers (default reject)" in out
    assert "Prefix limits: ipv4-unicast 100, restart after 30 s" in out
    assert "Connections refused: 0, closed half-open: 0" in out
    assert "UPDATE errors handled (RFC 7606): treat-as-withdraw 0, attribute-discard 0; prefixes with our own " \
           "next hop ignored: 0" in out
    rc, out, _ = fastbgp("neighbor", "127.0.0.3", "-j")
    d = msgspec.json.decode(out, type=ctl.NeighborDetail)
    assert d.prefix_limits == [ctl.PrefixLimitInfo(family="ipv4-unicast", max=100, restart_after=30)]
    rc, out, _ = fastbgp("neighbor", "127.0.0.2")
    assert "Prefix limits: none" in out and "Import policy: - (default accept)" in out


@pytest.mark.timeout(60)
def test_counters_after_disable(fastbgp, harness):
    """A disabled neighbour has nothing accepted or advertised (its routes
    are gone), while its message counters are kept."""
    # The statistics (cached up to views.STATS_TTL seconds) while up, so a
    # stale cache would show after the disable.
    def detail():
        rc, out, _ = fastbgp("neighbor", "127.0.0.2", "-j")
        return msgspec.json.decode(out, type=ctl.NeighborDetail)

    harness.wait_for(lambda: detail().prefixes_accepted == len(PEER_PREFIXES) + 1, "accepted count", timeout=8)
    before = detail()
    assert before.counters.received_update >= 2
    rc, out, err = fastbgp("neighbor", "127.0.0.2", "disable")
    assert rc == 0, err
    try:
        harness.wait_for(lambda: harness.state("127.0.0.2") == "idle", "disabled")
        rc, out, _ = fastbgp("neighbor", "127.0.0.2", "-j")
        d = msgspec.json.decode(out, type=ctl.NeighborDetail)
        assert d.admin_down and d.prefixes_received == 0
        assert d.prefixes_accepted == 0 and d.prefixes_advertised == 0
        assert d.counters.received_update >= before.counters.received_update
        assert d.counters.sent_open >= 1 and d.counters.received_open >= 1
        rc, out, _ = fastbgp("neighbor", "127.0.0.2")
        assert "BGP state = Idle (admin down)" in out
        for label in ("Advertised:", "Received:", "Accepted:"):
            line = next(ln for ln in out.splitlines() if label in ln)
            assert line.split()[-1] == "0", line
        rc, out, _ = fastbgp("neighbor")
        row = next(ln.split() for ln in out.splitlines() if ln.startswith("127.0.0.2"))
        assert row[3] == "Idle(Admin)" and row[4:] == ["0", "0"]
    finally:
        fastbgp("neighbor", "127.0.0.2", "enable")
        harness.wait_for(lambda: harness.state("127.0.0.2") == "established", "re-established", timeout=20)
        harness.wait_for(lambda: len(harness.call(harness.daemon.rib, "ipv4-unicast")) >= len(PEER_PREFIXES),
                         "peer routes back", timeout=20)


RIB_ROUTES = [
    # (prefix, aspath, communities, large communities)
    ("10.10.0.0/16", "65100 65200", "65000:1", None),
    ("10.2.0.0/16", "65100", None, "65000:1:2"),
    ("10.2.3.0/24", "65300 65200", "65000:1", None),
    ("9.0.0.0/8", "65200", None, None),
    ("10.0.0.0/8", "65400", None, None),
]


@pytest.fixture
def rib_routes(fastbgp):
    for p, aspath, comm, large in RIB_ROUTES:
        words = ["global", "rib", "add", p, "nexthop", "192.0.2.1", "aspath", aspath]
        words += ["community", comm] if comm else []
        words += ["large-community", large] if large else []
        rc, out, err = fastbgp(*words)
        assert rc == 0, err
    try:
        yield
    finally:
        fastbgp("global", "rib", "del", *[r[0] for r in RIB_ROUTES])


def _prefixes(out):
    return [x["prefix"] for x in json.loads(out)]


def test_global_rib_sorted_and_filtered(fastbgp, rib_routes):
    rc, out, _ = fastbgp("global", "rib", "-j")
    mine = [p for p in _prefixes(out) if p in {r[0] for r in RIB_ROUTES}]
    # Numerically by address, then length: not as strings.
    assert mine == ["9.0.0.0/8", "10.0.0.0/8", "10.2.0.0/16", "10.2.3.0/24", "10.10.0.0/16"]
    rc, out, _ = fastbgp("global", "rib")
    rows = [ln.split()[1] for ln in out.splitlines()[2:] if ln.strip()]
    assert rows == sorted(rows, key=lambda p: (int(ipaddress.ip_network(p).network_address),
                                               ipaddress.ip_network(p).prefixlen))
    assert rows.index("9.0.0.0/8") < rows.index("10.2.0.0/16") < rows.index("10.10.0.0/16")
    # Age: since the RIB received the path, GoBGP's spelling (fresh routes).
    assert re.fullmatch(r"\d\d:\d\d:\d\d", out.splitlines()[2].split()[4]), out

    def q(*words):
        rc, out, err = fastbgp("global", "rib", *words, "-j")
        assert rc == 0, err
        return _prefixes(out)

    assert q("10.0.0.0/8", "longer-prefixes") == ["10.0.0.0/8", "10.2.0.0/16", "10.2.3.0/24", "10.10.0.0/16"]
    assert q("10.2.0.0/16", "longer-prefixes") == ["10.2.0.0/16", "10.2.3.0/24"]
    # 10.0.0.0/8 starts at the same address as 10.0.0.0/9 but is shorter.
    assert q("10.0.0.0/9", "longer-prefixes") == ["10.2.0.0/16", "10.2.3.0/24", "10.10.0.0/16"]
    assert q("10.2.3.0/25", "shorter-prefixes", "community", "65000:1") == ["10.2.3.0/24"]
    assert q("10.2.3.0/24", "shorter-prefixes") == ["10.0.0.0/8", "10.2.0.0/16", "10.2.3.0/24"]
    assert q("10.2.3.0/24", "longest-match") == ["10.2.3.0/24"]
    assert q("10.2.3.9") == ["10.2.3.0/24"]
    assert q("community", "65000:1") == ["10.2.3.0/24", "10.10.0.0/16"]
    assert q("large-community", "65000:1:2") == ["10.2.0.0/16"]
    assert q("aspath", "^65100") == ["10.2.0.0/16", "10.10.0.0/16"]
    assert q("origin-as", "65200") == ["9.0.0.0/8", "10.2.3.0/24", "10.10.0.0/16"]
    assert q("10.0.0.0/8", "longer-prefixes", "origin-as", "AS65200") == ["10.2.3.0/24", "10.10.0.0/16"]
    assert q("10.0.0.0/8", "longer-prefixes", "limit", "2") == ["10.0.0.0/8", "10.2.0.0/16"]
    assert q("10.0.0.0/8", "longer-prefixes", "limit", "2", "offset", "2") == ["10.2.3.0/24", "10.10.0.0/16"]
    assert q("community", "65000:999") == []
    assert q("source", "local") == ["9.0.0.0/8", "10.0.0.0/8", "10.2.0.0/16", "10.2.3.0/24", "10.10.0.0/16"]
    assert q("source", "127.0.0.2") == PEER_PREFIXES
    assert q("10.0.0.0/8", "longer-prefixes", "source", "127.0.0.2") == [] and q("source", "127.0.0.3") == []
    assert q("203.0.113.0/24", "longer-prefixes", "source", "127.0.0.2") == PEER_PREFIXES
    rc, out, _ = fastbgp("global", "rib", "10.0.0.0/8", "longer-prefixes", "community", "65000:1")
    lines = out.splitlines()
    assert lines[0].split()[:2] == ["Network", "Next"] and len([ln for ln in lines[2:] if ln.strip()]) == 2


@pytest.mark.parametrize("words,message", [
    (["community", "65536:1"], "community: \"65536:1\""),
    (["aspath", "(unclosed"], "as_path: not a regular expression"),
    (["limit", "0"], "limit"),
    (["origin-as", "x"], "origin-as: expected a number"),
    (["10.0.0.0/8", "longer-prefixes", "colour", "red"], "unexpected 'colour'"),
    (["community"], "community needs a value"),
])
def test_global_rib_filter_errors(fastbgp, words, message):
    rc, out, err = fastbgp("global", "rib", *words)
    assert rc in (1, 2) and message in err and "Traceback" not in err, err


@pytest.mark.timeout(30)
def test_monitor_shows_withdrawn_prefixes(fastbgp, harness):
    stop = threading.Event()
    extra = "198.18.7.0/24"

    def flap():
        for _ in range(100):
            harness.call(harness.speaker.announce, [extra], next_hop="127.0.0.2", as_path=[65020])
            if stop.wait(0.1):
                return
            harness.call(harness.speaker.withdraw, [extra])
            if stop.wait(0.1):
                return

    t = threading.Thread(target=flap)
    t.start()
    try:
        out = ""
        for _ in range(4):  # until a withdrawal is among the events seen
            rc, got, err = fastbgp("monitor", "neighbor", "127.0.0.2", "--count", "2")
            assert rc == 0, err
            out += got
            if "-" + extra in out:
                break
    finally:
        stop.set()
        t.join()
        harness.call(harness.speaker.withdraw, [extra])
    lines = [ln for ln in out.splitlines() if "[UPDATE]" in ln]
    assert any(ln.endswith("+0 -1 -" + extra) for ln in lines), out
    assert any(("+1 -0 +" + extra) in ln for ln in lines), out


def test_reload_restores_configured_routes(fastbgp, harness):
    configured = "198.51.100.128/25"
    harness.write_config(extra='\n[[routes]]\nprefix = "%s"\nas-path = [65001]\n' % configured)
    try:
        rc, out, err = fastbgp("reload")
        assert rc == 0 and "routes added: %s" % configured in out, (out, err)
        rc, out, _ = fastbgp("global", "rib", configured, "-j")
        assert _prefixes(out) == [configured]
        rc, out, _ = fastbgp("global", "rib", "del", "all")
        assert rc == 0 and out.strip() == "withdrew 1 prefix"
        rc, out, _ = fastbgp("global", "rib", configured, "-j")
        assert _prefixes(out) == []
        rc, out, err = fastbgp("reload")
        assert rc == 0 and out == "configuration reloaded\n  routes restored: %s\n" % configured, (out, err)
        rc, out, _ = fastbgp("global", "rib", configured, "-j")
        assert [(r["prefix"], r["source"]) for r in json.loads(out)] == [(configured, "local")]
        rc, out, _ = fastbgp("reload")
        assert out.strip() == "configuration reloaded: no change"
    finally:
        harness.write_config()
        fastbgp("reload")
    rc, out, _ = fastbgp("global", "rib", configured, "-j")
    assert _prefixes(out) == []


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines = []

    def emit(self, record):
        self.lines.append((record.levelno, record.getMessage()))


@pytest.fixture
def daemon_log():
    handler = _Records()
    logger = logging.getLogger("fastbgp.daemon")
    logger.addHandler(handler)
    try:
        yield handler.lines
    finally:
        logger.removeHandler(handler)


def test_reload_log_lines_are_readable(fastbgp, harness, daemon_log):
    try:
        harness.write_config(description="edited", extra='\n[[routes]]\nprefix = "198.51.100.64/26"\n')
        rc, out, err = fastbgp("reload")
        assert rc == 0, err
        harness.write_config(extra='\n[[neighbors]]\naddress = "127.0.0.9"\npeer-as = 0\n')
        rc, out, err = fastbgp("reload")
        assert rc == 1
    finally:
        harness.write_config()
        fastbgp("reload")
    done = [m for lv, m in daemon_log if m.startswith("configuration reloaded: ") and "edited" not in m]
    assert done and "changed: 127.0.0.2 (" in done[0] and "description" in done[0], daemon_log
    assert "routes added: 198.51.100.64/26" in done[0]
    # No Python reprs: no dict/list brackets or quotes around names.
    for m in done:
        assert not any(ch in m for ch in "{}[]'"), m
    refused = [(lv, m) for lv, m in daemon_log if "reload refused" in m]
    assert refused and refused[0][0] == logging.WARNING and "peer-as" in refused[0][1], daemon_log


def test_endpoints_are_logged_as_text():
    from fastbgp.daemon.views import endpoints_text

    assert endpoints_text([("0.0.0.0", 179), ("::", 1790)]) == ["0.0.0.0:179", "[::]:1790"]


def _all_parsers(parser, name="fastbgp"):
    yield name, parser
    for action in parser._actions:
        if action.nargs == argparse.PARSER:
            seen = set()
            for word, sub in action.choices.items():
                if id(sub) not in seen:
                    seen.add(id(sub))
                    yield from _all_parsers(sub, "%s %s" % (name, word))


def test_usage_lines_name_real_options():
    """Every option a usage line shows is one the command takes; no usage
    or help line shows an internal name."""
    parser = cli.build_parser(None)
    checked = 0
    for name, p in _all_parsers(parser):
        known = {s for a in p._actions for s in a.option_strings}
        usage = p.format_usage()
        for tok in re.findall(r"(?<![\w-])(--?[a-zA-Z][\w-]*)", usage):
            assert tok in known, "%s: usage shows %s, which it does not take" % (name, tok)
        text = p.format_help()
        for internal in ("_command", "words_command", "subparser", "what}", "{what"):
            assert internal not in text, "%s: help shows %r" % (name, internal)
        checked += 1
    assert checked >= 12


@pytest.mark.parametrize("words", [["mrt"], ["bench"], ["mrt", "dump"], []])
def test_usage_errors_name_no_internal_dest(words, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(words)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    line = next(ln for ln in err.splitlines() if "arguments are required:" in ln)
    assert re.search(r"\b(mrt_command|command|what|func|files)\b", line.split("required:")[1]) is None, err


def test_event_lines_are_text():
    """An UPDATE line names its prefixes (+ announced, - withdrawn, then
    how many more); an event kind this CLI does not know is printed as its
    JSON, never as a Python repr."""
    ev = ctl.UpdateReceived(time=0.0, neighbor="192.0.2.2", announced=20, withdrawn=1, prefixes=["10.0.0.0/24"],
                            withdrawn_prefixes=["10.9.0.0/16"])
    assert cli._event_line(ev).endswith("[UPDATE] 192.0.2.2 +20 -1 +10.0.0.0/24 -10.9.0.0/16 (19 more)")

    class Novel(ctl.Event):
        detail: str = "x"

    line = cli._event_line(Novel(time=0.0))
    assert line.endswith('[NOVEL] {"event":"novel","time":0.0,"detail":"x"}') and "Novel(" not in line
