"""``[[processes]]`` end to end (fastbgp.daemon.processes): real child
programs (Python scripts) under a daemon, library Speakers as BGP peers."""

from __future__ import annotations

import asyncio
import json
import sys

import msgspec
import pytest

from test_daemon import DUT, addr, neighbor_toml, peer, until

pytestmark = pytest.mark.timeout(120)

# The program's stdin, line by line, into a file (what it was told).
RECORDER = """
import sys
out = open(sys.argv[1], "w")
for line in sys.stdin:
    out.write(line)
    out.flush()
"""

BURST = """
import sys, time
lines = ["announce route 10.%d.%d.0/24 next-hop 192.0.2.1 med %d" % (i >> 8, i & 255, i) for i in range(5000)]
sys.stdout.write("\\n".join(lines) + "\\n")
sys.stdout.flush()
out = open(sys.argv[1], "w")
for line in sys.stdin:
    out.write(line)
    out.flush()
"""

HOSTILE = """
import sys
sys.stdout.write("frobnicate\\n")
sys.stdout.write("announce route 10.9.0.1/24 next-hop 192.0.2.1\\n")
sys.stdout.write("announce route 10.9.0.0/24 next-hop 0.0.0.0\\n")
sys.stdout.write("announce route 10.9.9.0/24 next-hop self extended-community [ color:1:1 ]\\n")
sys.stdout.write("neighbor 192.0.2.99 announce route 10.9.8.0/24 next-hop self\\n")
sys.stdout.write("x" * 2000000 + "\\n")
sys.stdout.buffer.write(b"\\xff\\xfe\\x00 announce\\n")
sys.stdout.write("announce route 10.9.1.0/24 next-hop 192.0.2.1 as-path [ 65001 65002 ] community [ 65000:1 ]\\n")
sys.stdout.write("announce route 10.9.2.0/24 next-hop 192.0.2.1 split /26\\n")
sys.stdout.write("withdraw route 10.9.2.64/26\\n")
sys.stdout.flush()
out = open(sys.argv[1], "w")
for line in sys.stdin:
    out.write(line)
    out.flush()
"""

# Reads nothing for a while (a slow consumer), then everything.
SLOW = """
import sys, time
time.sleep(float(sys.argv[2]))
out = open(sys.argv[1], "w")
for line in sys.stdin:
    out.write(line)
    out.flush()
"""


def process_toml(name, script, *args, **kw):
    lines = ["[[processes]]", 'name = "%s"' % name,
             "run = [%s]" % ", ".join('"%s"' % a for a in (sys.executable, str(script)) + tuple(str(a) for a in args))]
    for k, v in kw.items():
        if isinstance(v, list):
            v = "[%s]" % ", ".join('"%s"' % x for x in v)
        elif isinstance(v, str):
            v = '"%s"' % v
        lines.append("%s = %s" % (k, v))
    return "\n".join(lines) + "\n"


def _script(tmp_path, name, text):
    p = tmp_path / (name + ".py")
    p.write_text(text)
    return p


def _lines(path):
    try:
        return path.read_text().splitlines()
    except FileNotFoundError:
        return []


def test_burst_of_5000_announcements_all_applied(run, tmp_path):
    out = tmp_path / "acks"

    async def main():
        dut = DUT(extra=process_toml("burst", _script(tmp_path, "burst", BURST), out))
        d = await dut.start()
        try:
            await until(lambda: d.rib_summary()[0].prefixes == 5000, timeout=60, what="5000 routes in the RIB")
            await until(lambda: len(_lines(out)) == 5000, timeout=30, what="5000 answers")
            assert set(_lines(out)) == {"done"}
            prog = d.processes.programs["burst"]
            assert prog.commands == 5000 and prog.errors == 0
            r = d.rib("ipv4-unicast", "10.19.135.0/24")[0]  # i = 19 * 256 + 135
            assert (r.next_hop, r.med) == ("192.0.2.1", 19 * 256 + 135)
        finally:
            await dut.stop()

    run(main())


def test_hostile_commands_get_error_lines(run, tmp_path):
    out = tmp_path / "answers"

    async def main():
        dut = DUT(extra=process_toml("hostile", _script(tmp_path, "hostile", HOSTILE), out))
        d = await dut.start()
        try:
            await until(lambda: len(_lines(out)) == 10, timeout=20, what="ten answers")
            got = _lines(out)
            assert [g.split(" ")[0] for g in got] == ["error"] * 7 + ["done"] * 3, got
            assert "unknown command" in got[0]
            assert "host bits" in got[1]
            assert "RFC 4271 §6.3" in got[2]
            assert "ext_communities" in got[3]
            assert "not configured" in got[4]
            assert "longer than" in got[5]
            prefixes = sorted(r.prefix for r in d.rib("ipv4-unicast"))
            assert prefixes == ["10.9.1.0/24", "10.9.2.0/26", "10.9.2.128/26", "10.9.2.192/26"]
            r = d.rib("ipv4-unicast", "10.9.1.0/24")[0]
            assert r.as_path == [65001, 65002] and r.communities == ["65000:1"]
            assert d.processes.programs["hostile"].errors == 7
            # The counters in /metrics (control.metrics, process_info).
            from prometheus_client import generate_latest
            from fastbgp.control.metrics import make_registry
            text = generate_latest(make_registry(d, process=False)).decode()
            for line in ('fastbgp_process_commands_total{process="hostile",result="error"} 7.0',
                         'fastbgp_process_commands_total{process="hostile",result="ok"} 3.0',
                         'fastbgp_process_up{process="hostile"} 1.0',
                         'fastbgp_process_restarts_total{process="hostile"} 0.0',
                         'fastbgp_process_events_dropped_total{process="hostile"} 0.0'):
                assert line in text, (line, [x for x in text.splitlines() if "process" in x])
            assert 'fastbgp_process_events_total{process="hostile"} 10.0' in text  # the ten answers
        finally:
            await dut.stop()

    run(main())


def test_updates_and_state_as_exabgp_json(run, tmp_path):
    out = tmp_path / "events"

    async def main():
        a_addr = addr()
        dut = DUT(neighbors=[neighbor_toml(a_addr, 65001)],
                  extra=process_toml("rec", _script(tmp_path, "rec", RECORDER), out,
                                     receive=["updates", "neighbor-changes", "notifications"]))
        d = await dut.start()
        try:
            sp, nb = await peer(dut, 65001, a_addr)
            await nb.wait_established(5)
            sp.announce(["10.1.0.0/24", "10.1.1.0/24"], as_path=[65001, 65100], med=7)
            await until(lambda: any('"announce"' in x for x in _lines(out)), what="an update line")
            sp.withdraw(["10.1.1.0/24"])
            await until(lambda: any('"withdraw"' in x for x in _lines(out)), what="a withdraw line")
            events = [json.loads(x) for x in _lines(out)]
            assert events[0]["type"] == "state" and events[0]["neighbor"]["state"] == "up"
            assert events[0]["neighbor"]["address"]["peer"] == a_addr
            assert events[0]["neighbor"]["asn"] == {"local": 65000, "peer": 65001}
            ups = [e for e in events if e["type"] == "update" and "announce" in e["neighbor"]["message"].get("update", {})]
            upd = ups[0]["neighbor"]["message"]["update"]
            assert upd["attribute"]["as-path"] == [65001, 65001, 65100]  # the peer prepends its AS (eBGP) and upd["attribute"]["med"] == 7
            nlri = [x["nlri"] for x in upd["announce"]["ipv4 unicast"][a_addr]]
            assert sorted(nlri) == ["10.1.0.0/24", "10.1.1.0/24"]
            counters = [e["counter"] for e in events]
            assert counters == sorted(counters)
            await sp.stop()
            await until(lambda: any('"down"' in x for x in _lines(out)), what="a down line")
            # The peer's Cease (RFC 4486 §4 subcode 2, administrative shutdown).
            await until(lambda: any('"notification"' in x for x in _lines(out)), what="a notification line")
            n = [json.loads(x) for x in _lines(out) if '"notification"' in x][0]["neighbor"]
            assert n["direction"] == "receive" and (n["notification"]["code"], n["notification"]["subcode"]) == (6, 2)
            assert d.processes.programs["rec"].dropped == 0
        finally:
            await dut.stop()

    run(main())


@pytest.mark.parametrize("mode", ["resync", "restart"])
def test_slow_reader_never_stalls_the_session(run, tmp_path, mode):
    """A program that reads nothing for 3 s while 1,500 UPDATEs arrive:
    the session stays up and fast, the queue overflows (counted), and the
    program is told and gets a table dump (after a restart, in that mode)."""
    out = tmp_path / "events"
    n = 1500

    async def main():
        a_addr = addr()
        dut = DUT(neighbors=[neighbor_toml(a_addr, 65001)],
                  extra=process_toml("slow", _script(tmp_path, "slow", SLOW), out, 3,
                                     receive=["updates"], **{"queue-limit": 16, "on-overflow": mode}))
        d = await dut.start()
        try:
            sp, nb = await peer(dut, 65001, a_addr)
            await nb.wait_established(5)
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            for i in range(n):  # one UPDATE each: a MED of its own
                sp.announce(["10.%d.%d.0/24" % (i >> 8, i & 255)], as_path=[65001], med=i)
            await until(lambda: d.rib_summary()[0].prefixes == n, timeout=30, what="every route in the RIB")
            assert loop.time() - t0 < 2.5, "the RIB waited for the slow program"
            prog = d.processes.programs["slow"]
            assert prog.overflows >= 1 and prog.dropped > 0
            assert nb.established
            # Then the program catches up: it is told it lost events, and the
            # dumps that follow (one per overflow) and the live updates leave
            # it with every route.
            def events():
                got = []
                for x in _lines(out):
                    try:
                        got.append(json.loads(x))
                    except ValueError:
                        continue  # a line being written
                return got

            def seen():
                dumped = set()
                for e in events():
                    if e["type"] == "update":
                        for by_nh in e["neighbor"]["message"].get("update", {}).get("announce", {}).values():
                            dumped.update(x["nlri"] for xs in by_nh.values() for x in xs)
                return dumped

            def notices():
                return [e["notice"] for e in events() if e["type"] == "notice"]

            # The dump's last UPDATE line can reach the file before its
            # "table dump done" notice does: wait for both.
            await until(lambda: len(seen()) == n and any("table dump done" in x for x in notices()),
                        timeout=30, what="every route and the dump's end at the program")
            got = notices()
            assert "lost" in got[0] and "table dump done" in got[1]
            if mode == "restart":
                assert prog.restarts >= 1
        finally:
            await dut.stop()

    run(main())


def test_exits_are_restarted_with_backoff(run, tmp_path):
    async def main():
        dut = DUT(extra=process_toml("quits", _script(tmp_path, "quits", "import sys; sys.exit(3)\n")))
        d = await dut.start()
        try:
            prog = d.processes.programs["quits"]
            await until(lambda: prog.restarts >= 2, timeout=10, what="two restarts")
            # 1 s then 2 s: not a third within the next second.
            r = prog.restarts
            await asyncio.sleep(1.0)
            assert prog.restarts <= r + 1
        finally:
            await dut.stop()
        assert prog.proc.returncode is not None

    run(main())


def test_reload_starts_and_stops_programs(run, tmp_path):
    out_a, out_b = tmp_path / "a", tmp_path / "b"
    rec = _script(tmp_path, "rec", RECORDER)

    async def main():
        dut = DUT(extra=process_toml("a", rec, out_a), path=tmp_path / "fastbgp.toml")
        d = await dut.start()
        try:
            a = d.processes.programs["a"]
            await until(lambda: a.proc is not None and out_a.exists(), what="a running")
            dut.extra = process_toml("b", rec, out_b)
            dut.path.write_text(dut.text())
            await d.reload()
            assert list(d.processes.programs) == ["b"]
            assert a.proc.returncode is not None  # stopped, not restarted
            b = d.processes.programs["b"]
            await until(lambda: b.proc is not None and out_b.exists(), what="b running")
            # An unchanged program keeps running through a reload.
            pid = b.proc.pid
            await d.reload()
            assert d.processes.programs["b"].proc.pid == pid
        finally:
            await dut.stop()

    run(main())


# Waits for the test's go file, then sends its commands one by one, each
# after the previous answer (as ExaBGP's own programs do with ack on).
SCRIPTED = """
import os, sys, time
go, answers = sys.argv[1], sys.argv[2]
while not os.path.exists(go):
    time.sleep(0.05)
out = open(answers, "w")
for cmd in open(go).read().splitlines():
    sys.stdout.write(cmd + "\\n")
    sys.stdout.flush()
    out.write(sys.stdin.readline())
    out.flush()
    time.sleep(0.3)
time.sleep(30)
"""


def test_eor_refresh_flush_clear_and_shutdown(run, tmp_path):
    go, answers = tmp_path / "go", tmp_path / "answers"

    async def main():
        a_addr = addr()
        dut = DUT(neighbors=[neighbor_toml(a_addr, 65001)],
                  extra=process_toml("cmds", _script(tmp_path, "cmds", SCRIPTED), go, answers))
        d = await dut.start()
        try:
            sp, nb = await peer(dut, 65001, a_addr)
            await nb.wait_established(5)
            sent_before = nb.counters.received.update
            go.write_text("\n".join([
                "announce route 10.7.0.0/24 next-hop self med 5",
                "neighbor %s announce route-refresh ipv4 unicast" % a_addr,
                "neighbor %s announce eor ipv4 unicast" % a_addr,
                "flush adj-rib out",
                "clear adj-rib out",
                "announce route 10.7.1.0/24 next-hop self",
                "shutdown",
            ]) + "\n")
            await until(lambda: len(_lines(answers)) == 7, timeout=20, what="seven answers")
            assert _lines(answers) == ["done"] * 7
            prog = d.processes.programs["cmds"]
            # "clear" withdrew 10.7.0.0/24, "shutdown" the route announced after it.
            await until(lambda: not d.rib("ipv4-unicast"), what="the program's routes withdrawn")
            await until(lambda: "10.7.0.0/24" not in nb.received(), what="withdrawn at the peer")
            assert nb.counters.received.update > sent_before
            await until(lambda: prog.proc.returncode is not None, what="the program stopped")
            await asyncio.sleep(1.5)
            assert prog.restarts == 0 and prog.shutdown_requested
        finally:
            await dut.stop()

    run(main())


def test_selectors_extended_communities_and_path_ids(run, tmp_path):
    """``neighbor A announce`` offers a route to A only, extended
    communities reach the peer, ``path-information`` gives ADD-PATH peers
    one path per id; the same from ``[[routes]]`` in the file."""
    go, answers = tmp_path / "go", tmp_path / "answers"

    async def main():
        a_addr, b_addr, c_addr = addr(), addr(), addr()
        routes = ('[[routes]]\nprefix = "10.6.0.0/24"\nneighbors = ["%s"]\next-communities = ["target:65000:9"]\n'
                  '[[routes]]\nprefix = "10.6.1.0/24"\npath-id = 4\n'
                  '[[routes]]\nprefix = "10.6.1.0/24"\npath-id = 6\nmed = 1\n' % b_addr)
        dut = DUT(neighbors=[neighbor_toml(a_addr, 65001), neighbor_toml(b_addr, 65002),
                             neighbor_toml(c_addr, 65003, **{"add-path": {"send": ["ipv4-unicast"]}})],
                  extra=routes + process_toml("sel", _script(tmp_path, "sel", SCRIPTED), go, answers))
        d = await dut.start()
        try:
            a, na = await peer(dut, 65001, a_addr)
            b, nb = await peer(dut, 65002, b_addr)
            c, nc = await peer(dut, 65003, c_addr, addpath_receive=["ipv4-unicast"])
            for n in (na, nb, nc):
                await n.wait_established(5)
            go.write_text("\n".join([
                "neighbor %s announce route 10.8.0.0/24 next-hop self extended-community [ target:65000:7 "
                "origin:192.0.2.1:3 ]" % a_addr,
                "announce route 10.8.1.0/24 next-hop self path-information 1 med 10",
                "announce route 10.8.1.0/24 next-hop self path-information 0.0.0.2 med 20",
                "neighbor %s, neighbor %s announce route 10.8.2.0/24 next-hop self" % (a_addr, b_addr),
                "neighbor %s withdraw route 10.8.2.0/24" % a_addr,
                "withdraw route 10.8.1.0/24 path-information 1",
            ]) + "\n")
            await until(lambda: len(_lines(answers)) == 6, timeout=20, what="six answers")
            assert _lines(answers) == ["done"] * 6
            await until(lambda: "10.8.2.0/24" in nb.received() and "10.8.2.0/24" not in na.received(),
                        what="10.8.2.0/24 kept for B, withdrawn from A")
            await until(lambda: {pid for (p, pid) in nc.received_paths() if p == "10.8.1.0/24"} == {2},
                        what="path 1 withdrawn at C")
            ra = na.received()
            assert ra["10.8.0.0/24"].ext_communities == ["target:65000:7", "origin:192.0.2.1:3"]
            for n in (nb, nc):
                assert "10.8.0.0/24" not in n.received()
            # The API's Adj-RIB-Out view says the same (views.adj_rib_out).
            assert "10.8.0.0/24" in {r.prefix for r in d.adj_rib_out(a_addr, "ipv4-unicast")}
            assert "10.8.0.0/24" not in {r.prefix for r in d.adj_rib_out(b_addr, "ipv4-unicast")}
            assert "10.8.2.0/24" not in nc.received()
            assert ra["10.8.1.0/24"].med == 20 and nb.received()["10.8.1.0/24"].med == 20
            # From the file: scoped to B with its extended community, and two
            # paths of 10.6.1.0/24 with ids 4 and 6 at the ADD-PATH peer.
            assert nb.received()["10.6.0.0/24"].ext_communities == ["target:65000:9"]
            assert "10.6.0.0/24" not in na.received() and "10.6.0.0/24" not in nc.received()
            assert {pid for (p, pid) in nc.received_paths() if p == "10.6.1.0/24"} == {4, 6}
            assert len(d.rib("ipv4-unicast", "10.6.1.0/24")) == 2
            for s in (a, b, c):
                await s.stop()
        finally:
            await dut.stop()

    run(main())


def test_open_and_keepalive_events(run, tmp_path):
    """``receive = ["opens", "keepalives"]``: the peer's OPEN (through
    Session.observe_opens, hooked before it arrives) and its KEEPALIVEs
    (Session.observe_keepalives) as ExaBGP JSON."""
    out = tmp_path / "events"

    async def main():
        a_addr = addr()
        dut = DUT(neighbors=[neighbor_toml(a_addr, 65001)],
                  extra=process_toml("msgs", _script(tmp_path, "msgs", RECORDER), out, receive=["opens", "keepalives"]))
        await dut.start()
        try:
            sp, nb = await peer(dut, 65001, a_addr, hold_time=3)
            await nb.wait_established(5)

            def events():
                got = []
                for x in _lines(out):
                    try:
                        got.append(json.loads(x))
                    except ValueError:
                        pass
                return got

            await until(lambda: len([e for e in events() if e["type"] == "keepalive"]) >= 2, timeout=10,
                        what="two keepalive lines")
            opens = [e for e in events() if e["type"] == "open"]
            assert len(opens) == 1, opens
            o = opens[0]["neighbor"]
            assert o["direction"] == "receive" and o["address"]["peer"] == a_addr
            assert (o["open"]["asn"], o["open"]["hold_time"], o["open"]["router_id"]) == (
                65001, 3, a_addr.replace("127.", "11.", 1))
            ka = [e for e in events() if e["type"] == "keepalive"][0]["neighbor"]
            assert ka["direction"] == "receive" and ka["address"]["peer"] == a_addr
            assert not any(e["type"] == "update" for e in events())  # not asked for
            await sp.stop()
        finally:
            await dut.stop()

    run(main())


def test_reload_summary_lists_bmp_processes_and_path_ids():
    """config.diff: [[bmp]] stations and [[processes]] programs added,
    removed and changed, and routes named with their path id, reach the
    reload summary (contract.change_lines)."""
    from fastbgp.config.checks import load_config
    from fastbgp.config.diff import diff
    from fastbgp.control.contract import change_lines

    head = '[global]\nasn = 65000\nrouter-id = "192.0.2.1"\n'
    old = load_config(head + '[[bmp]]\naddress = "192.0.2.50"\n[[bmp]]\naddress = "192.0.2.51"\n'
                             '[[processes]]\nname = "a"\nrun = ["/bin/cat"]\n'
                             '[[processes]]\nname = "b"\nrun = ["/bin/cat"]\n'
                             '[[routes]]\nprefix = "10.0.0.0/24"\npath-id = 1\n')
    new = load_config(head + '[[bmp]]\naddress = "192.0.2.50"\npolicy = "both"\n[[bmp]]\naddress = "192.0.2.52"\n'
                             '[[processes]]\nname = "a"\nrun = ["/bin/cat", "-u"]\n'
                             '[[processes]]\nname = "c"\nrun = ["/bin/cat"]\n'
                             '[[routes]]\nprefix = "10.0.0.0/24"\npath-id = 1\n'
                             '[[routes]]\nprefix = "10.0.0.0/24"\npath-id = 2\n')
    d = diff(old, new)
    assert not d.empty
    assert (d.bmp_added, d.bmp_removed, d.bmp_changed) == (["192.0.2.52:11019"], ["192.0.2.51:11019"],
                                                           ["192.0.2.50:11019"])
    assert (d.processes_added, d.processes_removed, d.processes_changed) == (["c"], ["b"], ["a"])
    assert d.routes_added == ["10.0.0.0/24 path-id 2"] and not d.routes_changed
    lines = change_lines(msgspec.to_builtins(d))
    assert "bmp changed: 192.0.2.50:11019" in lines and "processes removed: b" in lines
    assert diff(new, new).empty


@pytest.mark.parametrize("window", [0, 200])
def test_coalesced_update_lines(run, tmp_path, window):
    """400 UPDATEs of one prefix each in 4 attribute sets reach the program
    as 400 lines with ``coalesce-ms = 0`` (one per UPDATE, as ExaBGP) and
    as far fewer lines by default (a line per attribute set per run), the
    same routes either way and each within the window."""
    out = tmp_path / "events"
    n = 400

    async def main():
        a_addr = addr()
        dut = DUT(neighbors=[neighbor_toml(a_addr, 65001)],
                  extra=process_toml("rec", _script(tmp_path, "rec", RECORDER), out, receive=["updates"],
                                     **{"coalesce-ms": window}))
        d = await dut.start()
        try:
            sp, nb = await peer(dut, 65001, a_addr)
            await nb.wait_established(5)
            for i in range(n):
                sp.announce(["10.7.%d.%d/32" % (i >> 8, i & 255)], as_path=[65001], med=i % 4)
            routes = {}

            def seen():
                routes.clear()
                for x in _lines(out):
                    try:
                        e = json.loads(x)
                    except ValueError:
                        continue  # a line being written
                    upd = e["neighbor"]["message"].get("update", {})
                    for by_nh in upd.get("announce", {}).values():
                        for xs in by_nh.values():
                            routes.update((x["nlri"], upd["attribute"]["med"]) for x in xs)
                return len(routes)

            await until(lambda: seen() == n, timeout=30, what="every route at the program")
            assert routes == {"10.7.%d.%d/32" % (i >> 8, i & 255): i % 4 for i in range(n)}
            lines = sum('"announce"' in x for x in _lines(out))
            if window:
                assert lines < n // 4, lines
                assert d.processes.programs["rec"].coalescer.updates >= n - 4
                info = d.processes.info()[0]
                assert info.updates_folded >= n - 4 and 0 < info.update_lines < n // 4 and info.runs_unfolded == 0
            else:
                assert lines == n and d.processes.programs["rec"].coalescer is None
        finally:
            await dut.stop()

    run(main())
