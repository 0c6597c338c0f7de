"""The daemon core end to end: fastbgp daemons and library Speakers on
loopback (127.0.x.y addresses, free ports), exercising best-path selection,
export rules and policy, update groups, reload, ADD-PATH, graceful restart
and prefix limits through real BGP sessions."""

import asyncio
import gc
import ipaddress
import itertools
import socket

import msgspec
import pytest

from fastbgp.config.checks import load_config
from fastbgp.config.errors import ConfigError
from fastbgp.control import contract as ctl
from fastbgp.session import protocol as session_mod
from fastbgp.daemon.core import Daemon
from fastbgp.daemon.process import GC_THRESHOLDS, run_daemon
from fastbgp.session.fsm import State
from fastbgp.session.speaker import NeighborConfig, Speaker
from fastbgp.testing.net import free_port

# A /24 per test module run: addresses are never reused within a run, so a
# socket in TIME_WAIT can never collide with a later test.
_ADDRS = (str(ipaddress.IPv4Address("127.0.0.0") + (2 << 8) + i) for i in itertools.count(10))


def addr():
    return next(_ADDRS)


async def until(pred, timeout=5.0, what="condition"):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        v = pred()
        if v:
            return v
        if loop.time() > deadline:
            raise AssertionError("timed out waiting for %s" % what)
        await asyncio.sleep(0.02)


def neighbor_toml(address, peer_as, **kw):
    lines = ["[[neighbors]]", 'address = "%s"' % address, "peer-as = %d" % peer_as]
    kw.setdefault("passive", True)
    kw.setdefault("default-import", "accept")
    kw.setdefault("default-export", "accept")
    # Back at once after a drop (the default idle hold is 5 s).
    kw.setdefault("timers", {"idle-hold": 0, "connect-retry": 1})
    for k, v in kw.items():
        lines.append("%s = %s" % (k, _toml(v)))
    return "\n".join(lines) + "\n"


def _toml(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"%s"' % v
    if isinstance(v, dict):
        return "{ " + ", ".join("%s = %s" % (k, _toml(x)) for k, x in v.items()) + " }"
    if isinstance(v, list):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    return str(v)


class DUT:
    """A daemon under test on its own address."""

    def __init__(self, asn=65000, rid=None, extra="", neighbors=(), path=None, glob=""):
        self.addr = addr()
        self.glob = glob
        self.port = free_port(self.addr)
        self.asn = asn
        self.rid = rid or self.addr.replace("127.", "10.", 1)
        self.extra = extra
        self.neighbors = list(neighbors)
        self.path = path
        self.daemon = None

    def text(self, neighbors=None, extra=None):
        head = '[global]\nasn = %d\nrouter-id = "%s"\nlisten = ["%s:%d"]\n%s\n' % (
            self.asn, self.rid, self.addr, self.port, self.glob)
        return head + (self.extra if extra is None else extra) + "\n" + "".join(
            self.neighbors if neighbors is None else neighbors)

    async def start(self):
        text = self.text()
        if self.path is not None:
            self.path.write_text(text)
            cfg = load_config(self.path)
        else:
            cfg = load_config(text)
        self.daemon = Daemon(cfg, self.path)
        await self.daemon.start()
        return self.daemon

    async def stop(self):
        if self.daemon is not None:
            await self.daemon.stop()


async def peer(dut, asn, address=None, rid=None, **kw):
    """A library Speaker peering with ``dut`` (it connects, the daemon is
    passive); returns (speaker, its neighbour object for the daemon)."""
    address = address or addr()
    sp = Speaker(asn, rid or address.replace("127.", "11.", 1))
    await sp.start()
    base = dict(address=dut.addr, peer_as=dut.asn, port=dut.port, local_address=address, families=["ipv4-unicast"],
                idle_hold_time=0.1, max_idle_hold_time=0.5, connect_retry=1.0)
    base.update(kw)
    nb = sp.add_neighbor(NeighborConfig(**base))
    return sp, nb


def best(d, prefix):
    routes = [r for r in d.rib("ipv4-unicast", prefix) if r.best]
    return routes[0] if routes else None


# ----------------------------------------------------------------------------- best path, export, withdraw


def test_best_path_across_peers_export_and_withdraw(run):
    async def main():
        a_addr, b_addr, c_addr = addr(), addr(), addr()
        dut = DUT(neighbors=[neighbor_toml(a_addr, 65001), neighbor_toml(b_addr, 65002), neighbor_toml(c_addr, 65003)])
        d = await dut.start()
        a, na = await peer(dut, 65001, a_addr)
        b, nb = await peer(dut, 65002, b_addr)
        c, nc = await peer(dut, 65003, c_addr)
        for n in (na, nb, nc):
            await n.wait_established(5)
        # A's path is longer: B's wins (RFC 4271 §9.1.2.2 a).
        a.announce(["10.1.0.0/24"], as_path=[65100, 65101], med=10)
        b.announce(["10.1.0.0/24"], as_path=[65200])
        await until(lambda: best(d, "10.1.0.0/24") is not None and best(d, "10.1.0.0/24").source == b_addr,
                    what="B's path best")
        paths = d.rib("ipv4-unicast", "10.1.0.0/24")
        assert sorted(p.source for p in paths) == sorted([a_addr, b_addr])
        got = await until(lambda: nc.received().get("10.1.0.0/24"), what="C gets the route")
        await until(lambda: nc.received()["10.1.0.0/24"].as_path == [65000, 65002, 65200])
        r = nc.received()["10.1.0.0/24"]
        # eBGP export: our AS prepended, next hop self, no LOCAL_PREF.
        assert r.next_hop == dut.addr and r.local_pref is None
        del got
        # A also gets B's route, B gets nothing back for its own prefix.
        await until(lambda: "10.1.0.0/24" in na.received())
        # B may have had A's path before its own arrived: withdrawn then.
        await until(lambda: "10.1.0.0/24" not in nb.received(), what="nothing of its own back at B")
        # B withdraws: A's path becomes best; its MED (from another AS) is not
        # passed on to eBGP peers (RFC 4271 §5.1.4).
        b.withdraw(["10.1.0.0/24"])
        await until(lambda: nc.received().get("10.1.0.0/24") is not None
                    and nc.received()["10.1.0.0/24"].as_path == [65000, 65001, 65100, 65101], what="A's path at C")
        assert nc.received()["10.1.0.0/24"].med is None
        # ... and B now has A's path.
        await until(lambda: "10.1.0.0/24" in nb.received())
        a.withdraw(["10.1.0.0/24"])
        await until(lambda: "10.1.0.0/24" not in nc.received() and "10.1.0.0/24" not in nb.received(),
                    what="withdrawal propagated")
        assert best(d, "10.1.0.0/24") is None
        # Control views.
        summ = {s.address: s for s in d.neighbors()}
        assert summ[a_addr].state == "established" and summ[c_addr].peer_as == 65003
        det = d.neighbor(c_addr)
        assert det.families == ["ipv4-unicast"] and det.four_octet_as and det.remote_id
        with pytest.raises(KeyError):
            d.neighbor("127.9.9.9")
        for s in (a, b, c):
            await s.stop()
        await dut.stop()

    run(main())


def test_export_policy_prefix_set_community_med_and_adj_ribs(run):
    policy = """
[[defined-sets.prefix-sets]]
name = "blocked"
prefixes = ["10.9.0.0/16 le 32"]

[[policies]]
name = "to-c"
[[policies.statements]]
name = "block"
conditions = { prefix-set = "blocked" }
actions = { result = "reject" }
[[policies.statements]]
name = "tag"
actions = { communities = { add = ["65000:42"] }, set-med = 77, result = "accept" }

[[policies]]
name = "lp"
[[policies.statements]]
actions = { set-local-pref = 300, result = "accept" }
"""

    async def main():
        a_addr, c_addr = addr(), addr()
        dut = DUT(extra=policy, neighbors=[neighbor_toml(a_addr, 65001, **{"import-policy": ["lp"]}),
                                           neighbor_toml(c_addr, 65003, **{"export-policy": ["to-c"]})])
        d = await dut.start()
        a, na = await peer(dut, 65001, a_addr)
        c, nc = await peer(dut, 65003, c_addr)
        await na.wait_established(5)
        await nc.wait_established(5)
        a.announce(["10.1.0.0/24", "10.9.1.0/24", "10.2.0.0/24"], as_path=[65100])
        await until(lambda: set(nc.received()) == {"10.1.0.0/24", "10.2.0.0/24"}, what="C's routes")
        r = nc.received()["10.1.0.0/24"]
        assert r.communities == ["65000:42"] and r.med == 77 and r.as_path == [65000, 65001, 65100]
        # Import policy applied before the Loc-RIB.
        assert best(d, "10.9.1.0/24").local_pref == 300
        ain = {x.prefix: x for x in d.adj_rib_in(a_addr, "ipv4-unicast")}
        assert set(ain) == {"10.1.0.0/24", "10.9.1.0/24", "10.2.0.0/24"} and all(x.best for x in ain.values())
        aout = {x.prefix: x for x in d.adj_rib_out(c_addr, "ipv4-unicast")}
        assert set(aout) == {"10.1.0.0/24", "10.2.0.0/24"} and aout["10.1.0.0/24"].med == 77
        assert d.adj_rib_out(a_addr, "ipv4") == []  # its own routes are not sent back
        d.views.peer_stats(force=True)
        assert d.neighbor(c_addr).prefixes_advertised == 2 and d.neighbor(a_addr).prefixes_accepted == 3
        assert d.neighbor(a_addr).prefixes_received == 3
        summ = {s.family: s for s in d.rib_summary()}
        assert summ["ipv4-unicast"].prefixes == 3 and summ["ipv4-unicast"].paths == 3
        # C asks for a refresh (RFC 2918; BoRR/EoRR around it, RFC 7313):
        # the same Adj-RIB-Out comes again, nothing else.
        before = nc.counters.received.update
        refreshes = nc.counters.received.refresh
        assert nc.request_refresh("ipv4-unicast") == 1
        await until(lambda: nc.counters.received.refresh >= refreshes + 2, what="BoRR and EoRR")
        assert nc.counters.received.update > before
        assert set(nc.received()) == {"10.1.0.0/24", "10.2.0.0/24"}
        for s in (a, c):
            await s.stop()
        await dut.stop()

    run(main())


# ----------------------------------------------------------------------------- iBGP, RR, route server


def test_ibgp_split_horizon(run):
    async def main():
        i1, i2, e = addr(), addr(), addr()
        dut = DUT(neighbors=[neighbor_toml(i1, 65000), neighbor_toml(i2, 65000), neighbor_toml(e, 65010)])
        d = await dut.start()
        s1, n1 = await peer(dut, 65000, i1)
        s2, n2 = await peer(dut, 65000, i2)
        se, ne = await peer(dut, 65010, e)
        for n in (n1, n2, ne):
            await n.wait_established(5)
        s1.announce(["10.10.0.0/24"], next_hop="192.0.2.10", local_pref=200)
        se.announce(["10.20.0.0/24"], as_path=[65011])
        # iBGP -> eBGP: sent, next hop self, AS prepended.
        await until(lambda: "10.10.0.0/24" in ne.received())
        assert ne.received()["10.10.0.0/24"].as_path == [65000]
        # eBGP -> iBGP: to both internal peers, next hop unchanged, LOCAL_PREF added.
        await until(lambda: "10.20.0.0/24" in n1.received() and "10.20.0.0/24" in n2.received())
        r = n2.received()["10.20.0.0/24"]
        assert r.next_hop == e and r.local_pref == 100 and r.as_path == [65010, 65011]
        # RFC 4271 §9.2: iBGP -> iBGP not re-advertised.
        await asyncio.sleep(0.3)
        assert "10.10.0.0/24" not in n2.received()
        assert best(d, "10.10.0.0/24").local_pref == 200
        for s in (s1, s2, se):
            await s.stop()
        await dut.stop()

    run(main())


def test_route_reflection(run):
    async def main():
        c1, c2, nc_ = addr(), addr(), addr()
        dut = DUT(glob='cluster-id = "1.2.3.4"', neighbors=[
            neighbor_toml(c1, 65000, **{"route-reflector-client": True}),
            neighbor_toml(c2, 65000, **{"route-reflector-client": True}),
            neighbor_toml(nc_, 65000)])
        await dut.start()
        sc1, n1 = await peer(dut, 65000, c1, rid="9.9.9.1")
        sc2, n2 = await peer(dut, 65000, c2, rid="9.9.9.2")
        sn, nn = await peer(dut, 65000, nc_, rid="9.9.9.3")
        for n in (n1, n2, nn):
            await n.wait_established(5)
        sc1.announce(["10.30.0.0/24"], next_hop="192.0.2.30")
        sn.announce(["10.40.0.0/24"], next_hop="192.0.2.40")
        # Client route: reflected to the other client and to the non-client,
        # with ORIGINATOR_ID and CLUSTER_LIST (RFC 4456 §8).
        await until(lambda: "10.30.0.0/24" in n2.received() and "10.30.0.0/24" in nn.received())
        r = nn.received()["10.30.0.0/24"]
        assert r.originator_id == "9.9.9.1" and r.cluster_list == ["1.2.3.4"] and r.next_hop == "192.0.2.30"
        # Non-client route: to clients only.
        await until(lambda: "10.40.0.0/24" in n1.received() and "10.40.0.0/24" in n2.received())
        assert n1.received()["10.40.0.0/24"].originator_id == "9.9.9.3"
        await asyncio.sleep(0.2)
        assert "10.30.0.0/24" not in n1.received()  # not back to its source
        for s in (sc1, sc2, sn):
            await s.stop()
        await dut.stop()

    run(main())


def test_reflection_loops_rejected_on_import(run):
    from fastbgp.wire.as4 import encode_attr
    from fastbgp.rib.export import IBGP, Source

    async def main():
        i1 = addr()
        dut = DUT(neighbors=[neighbor_toml(i1, 65000)])
        d = await dut.start()
        s1, n1 = await peer(dut, 65000, i1)
        await n1.wait_established(5)
        nb = d.peers.get(i1)
        d.sources[nb.pid] = Source(nb.pid, IBGP, False, 1, 65000, i1)
        base = encode_attr(0x40, 1, b"\x00") + encode_attr(0x40, 2, b"") + encode_attr(0x40, 3, bytes([192, 0, 2, 1]))
        rid = ipaddress.IPv4Address(dut.rid).packed
        own = base + encode_attr(0x80, 9, rid)
        cl = base + encode_attr(0x80, 10, b"\x01\x01\x01\x01" + rid)
        assert d.importer.import_eval(nb, (1, 1), own, b"") is None  # ORIGINATOR_ID is ours
        assert d.importer.import_eval(nb, (1, 1), cl, b"") is None  # our CLUSTER_ID in the list
        assert d.importer.import_eval(nb, (1, 1), base, b"") == (base, b"")
        await s1.stop()
        await dut.stop()

    run(main())


def test_route_server_transparency(run):
    async def main():
        a_addr, c_addr = addr(), addr()
        rs = {"route-server-client": True}
        dut = DUT(neighbors=[neighbor_toml(a_addr, 65001, **rs), neighbor_toml(c_addr, 65003, **rs)])
        d = await dut.start()
        a, na = await peer(dut, 65001, a_addr)
        c, nc = await peer(dut, 65003, c_addr)
        await na.wait_established(5)
        await nc.wait_established(5)
        a.announce(["10.50.0.0/24"], as_path=[65100], med=33)
        await until(lambda: "10.50.0.0/24" in nc.received())
        r = nc.received()["10.50.0.0/24"]
        # RFC 7947 §2.2: no RS AS in the path, next hop and MED untouched.
        assert r.as_path == [65001, 65100] and r.next_hop == a_addr and r.med == 33
        assert best(d, "10.50.0.0/24").source == a_addr
        await a.stop()
        await c.stop()
        await dut.stop()

    run(main())


# ----------------------------------------------------------------------------- update groups


def test_update_group_members_get_the_same_bytes(monkeypatch, run):
    written = {}
    orig = session_mod.Connection.writelines

    def spy(self, chunks):
        chunks = list(chunks)
        written.setdefault(self.peer_address, []).extend(chunks)
        return orig(self, chunks)

    monkeypatch.setattr(session_mod.Connection, "writelines", spy)

    async def main():
        a_addr, b_addr, c_addr = addr(), addr(), addr()
        dut = DUT(neighbors=[neighbor_toml(a_addr, 65001), neighbor_toml(b_addr, 65002), neighbor_toml(c_addr, 65003)])
        d = await dut.start()
        a, na = await peer(dut, 65001, a_addr)
        b, nb = await peer(dut, 65002, b_addr)
        c, nc = await peer(dut, 65003, c_addr)
        for n in (na, nb, nc):
            await n.wait_established(5)
        await until(lambda: len([g for g in d.groups.values() if g.members]) == 1 and
                    len(next(iter(d.groups.values())).members) == 3, what="one update group of 3")
        written.clear()
        a.announce(["10.60.%d.0/24" % i for i in range(50)], as_path=[65100])
        await until(lambda: len(nb.received()) == 50 and len(nc.received()) == 50)
        to_b = [m for m in written.get(b_addr, []) if m[18] == 2]
        to_c = [m for m in written.get(c_addr, []) if m[18] == 2]
        assert to_b and len(to_b) == len(to_c)
        # Encoded once: the very same objects went to both members.
        assert all(x is y for x, y in zip(to_b, to_c))
        # New prefixes: nothing at all goes back to their source (no
        # split-horizon withdrawals needed, nobody held them before).
        assert not [m for m in written.get(a_addr, []) if m[18] == 2]
        # B takes ten of them over with a shorter path: C and A get B's
        # path; B, which held A's, gets a withdrawal (split horizon).
        written.clear()
        b.announce(["10.60.%d.0/24" % i for i in range(10)])
        await until(lambda: nc.received()["10.60.0.0/24"].as_path == [65000, 65002], what="B's path at C")
        await until(lambda: "10.60.0.0/24" in na.received(), what="B's path at A")
        await until(lambda: "10.60.0.0/24" not in nb.received(), what="split horizon: withdrawn from B")
        for s in (a, b, c):
            await s.stop()
        await dut.stop()

    run(main())


# ----------------------------------------------------------------------------- reload


def test_reload_keeps_unchanged_sessions_and_bad_config_changes_nothing(tmp_path, run):
    async def main():
        a_addr, b_addr, c_addr = addr(), addr(), addr()
        path = tmp_path / "fastbgp.toml"
        policy = """
[[defined-sets.prefix-sets]]
name = "hide"
prefixes = ["10.70.1.0/24"]

[[policies]]
name = "tag"
[[policies.statements]]
conditions = { prefix-set = "hide" }
actions = { result = "reject" }
[[policies.statements]]
actions = { communities = { add = ["65000:7"] }, result = "accept" }
"""
        dut = DUT(path=path, extra=policy, neighbors=[neighbor_toml(a_addr, 65001), neighbor_toml(b_addr, 65002)])
        d = await dut.start()
        a, na = await peer(dut, 65001, a_addr)
        b, nb = await peer(dut, 65002, b_addr)
        c, nc = await peer(dut, 65003, c_addr)
        await na.wait_established(5)
        await nb.wait_established(5)
        a.announce(["10.70.0.0/24", "10.70.1.0/24"], as_path=[65100])
        await until(lambda: "10.70.0.0/24" in nb.received() and "10.70.1.0/24" in nb.received())
        assert nb.received()["10.70.0.0/24"].communities == []
        # Bad file: ConfigError, nothing changes.
        path.write_text(dut.text() + "\n[[neighbors]]\naddress = \"x\"\n")
        with pytest.raises(ConfigError):
            await d.reload()
        assert set(d.speaker.neighbors) == {a_addr, b_addr}
        # B gets an export policy, C is added, A is unchanged.
        path.write_text(dut.text(neighbors=[neighbor_toml(a_addr, 65001),
                                            neighbor_toml(b_addr, 65002, **{"export-policy": ["tag"]}),
                                            neighbor_toml(c_addr, 65003)]))
        res = await d.reload()
        assert res["added"] == [c_addr] and res["changed"][0]["action"] == "soft"
        await nc.wait_established(5)
        await until(lambda: nb.received().get("10.70.0.0/24") is not None
                    and nb.received()["10.70.0.0/24"].communities == ["65000:7"], what="soft export to B")
        # What the new export policy rejects is withdrawn (soft reset out).
        await until(lambda: "10.70.1.0/24" not in nb.received(), what="rejected prefix withdrawn at B")
        await until(lambda: "10.70.0.0/24" in nc.received())
        for n in (na, nb):
            assert n.state is State.ESTABLISHED and n.counters.established_count == 1
        assert d.neighbor(a_addr).established_count == 1 and d.neighbor(b_addr).established_count == 1
        # Remove B: Cease / Peer De-configured; A still up.
        path.write_text(dut.text(neighbors=[neighbor_toml(a_addr, 65001), neighbor_toml(c_addr, 65003)]))
        res = await d.reload()
        assert res["removed"] == [b_addr]
        await until(lambda: nb.state is not State.ESTABLISHED)
        assert nb.last_notification_received is not None and nb.last_notification_received.subcode == 3
        assert na.counters.established_count == 1 and na.state is State.ESTABLISHED
        # A session setting of A changes: Cease / Other Configuration Change
        # (RFC 4486, 6/6), then it comes back with the new hold time.
        path.write_text(dut.text(neighbors=[neighbor_toml(a_addr, 65001, timers={"hold-time": 30, "idle-hold": 0}),
                                            neighbor_toml(c_addr, 65003)]))
        res = await d.reload()
        assert res["changed"][0]["action"] == "reset"
        await until(lambda: na.counters.established_count == 2 and na.state is State.ESTABLISHED, timeout=8,
                    what="A back")
        n = na.last_notification_received
        assert (n.code, n.subcode) == (6, 6)
        assert d.neighbor(a_addr).hold_time == 30
        await until(lambda: "10.70.0.0/24" in nc.received(), what="A's routes again")
        for s in (a, b, c):
            await s.stop()
        await dut.stop()

    run(main())


def test_bad_config_nothing_started(tmp_path, run):
    host = addr()
    port = free_port(host)
    path = tmp_path / "bad.toml"
    path.write_text('[global]\nasn = 65000\nrouter-id = "1.2.3"\nlisten = ["%s:%d"]\n' % (host, port))

    async def main():
        with pytest.raises(ConfigError) as ei:
            await run_daemon(str(path), api=False, metrics=False)
        assert "global.router-id" in str(ei.value)
        # Nothing bound the port.
        s = socket.socket()
        s.bind((host, port))
        s.close()

    run(main())


def test_run_daemon_serves_and_stops(tmp_path, run):
    host = addr()
    port = free_port(host)
    path = tmp_path / "ok.toml"
    path.write_text('[global]\nasn = 65000\nrouter-id = "1.2.3.4"\nlisten = ["%s:%d"]\n'
                    '[[routes]]\nprefix = "10.80.0.0/24"\n' % (host, port))

    async def main():
        stop = asyncio.Event()
        seen = []
        before = gc.get_threshold()
        task = asyncio.create_task(run_daemon(str(path), api=False, metrics=False, stop_event=stop,
                                              ready=seen.append))
        await until(lambda: seen)
        d = seen[0]
        assert [r.prefix for r in d.rib("ipv4-unicast")] == ["10.80.0.0/24"]
        assert d.rib("ipv4-unicast")[0].source == "local"
        assert gc.get_threshold() == GC_THRESHOLDS  # the daemon's collector thresholds while it runs
        stop.set()
        assert await task == 0
        assert gc.get_threshold() == before

    run(main())


# ----------------------------------------------------------------------------- ADD-PATH, GR, prefix limit


def test_addpath_send_several_paths(run):
    async def main():
        a_addr, b_addr, c_addr = addr(), addr(), addr()
        dut = DUT(neighbors=[neighbor_toml(a_addr, 65001), neighbor_toml(b_addr, 65002),
                             neighbor_toml(c_addr, 65003, **{"add-path": {"send": ["ipv4-unicast"]}})])
        d = await dut.start()
        a, na = await peer(dut, 65001, a_addr)
        b, nb = await peer(dut, 65002, b_addr)
        a.announce(["10.90.0.0/24"], as_path=[65100])
        b.announce(["10.90.0.0/24"], as_path=[65200, 65201])
        await na.wait_established(5)
        await nb.wait_established(5)
        await until(lambda: len(d.rib("ipv4-unicast", "10.90.0.0/24")) == 2)
        c, nc = await peer(dut, 65003, c_addr, addpath_receive=["ipv4-unicast"])
        await nc.wait_established(5)
        assert d.neighbor(c_addr).addpath_tx == ["ipv4-unicast"]
        await until(lambda: len(nc.received_paths()) == 2, what="two paths at C")
        paths = nc.received_paths()
        assert len({pid for (_p, pid) in paths}) == 2
        assert sorted(r.as_path for r in paths.values()) == [[65000, 65001, 65100], [65000, 65002, 65200, 65201]]
        # A third path arrives incrementally, one leaves.
        b.withdraw(["10.90.0.0/24"])
        await until(lambda: len(nc.received_paths()) == 1, what="B's path withdrawn at C")
        assert list(nc.received_paths().values())[0].as_path == [65000, 65001, 65100]
        for s in (a, b, c):
            await s.stop()
        await dut.stop()

    run(main())


def test_graceful_restart_helper(run):
    async def main():
        a_addr, c_addr = addr(), addr()
        gr = {"enabled": True, "restart-time": 30}
        dut = DUT(neighbors=[neighbor_toml(a_addr, 65001, **{"graceful-restart": gr}), neighbor_toml(c_addr, 65003)])
        d = await dut.start()
        a, na = await peer(dut, 65001, a_addr, graceful_restart=True)
        c, nc = await peer(dut, 65003, c_addr)
        await na.wait_established(5)
        await nc.wait_established(5)
        a.announce(["10.100.0.0/24", "10.100.1.0/24"], as_path=[65100])
        await until(lambda: len(nc.received()) == 2)
        # A dies without a NOTIFICATION: its routes stay, stale (RFC 4724 §4.2).
        await a.stop(notify=False)
        await until(lambda: d.neighbor(a_addr).state != "established")
        await until(lambda: all(r.stale for r in d.rib("ipv4-unicast")), what="stale routes")
        assert len(d.rib("ipv4-unicast")) == 2
        await asyncio.sleep(0.2)
        assert len(nc.received()) == 2  # still advertised
        # A comes back with one route and End-of-RIB: the other one is swept.
        a2 = Speaker(65001, a_addr.replace("127.", "11.", 1), restarting=True)
        a2.announce(["10.100.0.0/24"], as_path=[65100])
        await a2.start()
        na2 = a2.add_neighbor(NeighborConfig(address=dut.addr, peer_as=65000, port=dut.port, local_address=a_addr,
                                             families=["ipv4-unicast"], graceful_restart=True, idle_hold_time=0.1,
                                             connect_retry=1.0))
        await na2.wait_established(5)
        await until(lambda: [r.prefix for r in d.rib("ipv4-unicast")] == ["10.100.0.0/24"], what="sweep at EoR")
        assert not d.rib("ipv4-unicast")[0].stale
        await until(lambda: list(nc.received()) == ["10.100.0.0/24"], what="swept route withdrawn at C")
        for s in (a2, c):
            await s.stop()
        await dut.stop()

    run(main())


def test_prefix_limit(run):
    async def main():
        a_addr = addr()
        lim = {"prefix-limit": {"ipv4-unicast": {"max": 5}}}
        dut = DUT(neighbors=[neighbor_toml(a_addr, 65001, **lim)])
        d = await dut.start()
        a, na = await peer(dut, 65001, a_addr, idle_hold_time=5.0)
        await na.wait_established(5)
        a.announce(["10.110.%d.0/24" % i for i in range(4)])
        await until(lambda: len(d.rib("ipv4-unicast")) == 4)
        a.announce(["10.111.%d.0/24" % i for i in range(4)])
        # RFC 4486: Cease / Maximum Number of Prefixes Reached (6/1).
        await until(lambda: na.last_notification_received is not None, what="Cease 6/1")
        n = na.last_notification_received
        assert (n.code, n.subcode) == (6, 1)
        await until(lambda: d.rib("ipv4-unicast") == [], what="routes dropped")
        assert d.neighbor(a_addr).state == "idle"
        await a.stop()
        await dut.stop()

    run(main())


# ----------------------------------------------------------------------------- dynamic neighbours, API


def test_dynamic_neighbor_from_range(run):
    async def main():
        dyn = addr()
        extra = """
[[peer-groups]]
name = "edge"
peer-as = 65020
default-import = "accept"
default-export = "accept"

[[dynamic-neighbors]]
prefix = "%s/32"
peer-group = "edge"
""" % dyn
        dut = DUT(extra=extra)
        d = await dut.start()
        s, n = await peer(dut, 65020, dyn)
        await n.wait_established(5)
        assert [x.address for x in d.neighbors()] == [dyn]
        s.announce(["10.120.0.0/24"])
        await until(lambda: best(d, "10.120.0.0/24") is not None)
        await s.stop()
        await until(lambda: d.neighbors() == [], what="dynamic neighbour removed")
        assert d.rib("ipv4-unicast") == []
        await dut.stop()

    run(main())


def test_api_announce_withdraw_and_watch(run):
    async def main():
        c_addr = addr()
        dut = DUT(neighbors=[neighbor_toml(c_addr, 65003)])
        d = await dut.start()
        c, nc = await peer(dut, 65003, c_addr)
        await nc.wait_established(5)
        events = []

        async def watcher():
            async for ev in d.watch():
                events.append(ev)

        task = asyncio.create_task(watcher())
        await asyncio.sleep(0)
        n = await d.announce(ctl.Announce(prefixes=["10.130.0.0/24", "10.130.1.0/24"], as_path=[65500],
                                          communities=["65000:1"], med=5))
        assert n == 2
        await until(lambda: len(nc.received()) == 2)
        r = nc.received()["10.130.0.0/24"]
        assert r.as_path == [65000, 65500] and r.med == 5 and r.next_hop == dut.addr  # our own MED is sent
        with pytest.raises(ValueError):
            await d.announce(ctl.Announce(prefixes=["10.1.0.0/24"], next_hop="2001:db8::1"))
        assert await d.withdraw(ctl.Announce(prefixes=["10.130.1.0/24", "10.131.0.0/24"])) == 1
        await until(lambda: list(nc.received()) == ["10.130.0.0/24"])
        await until(lambda: any(isinstance(e, ctl.BestChange) and e.route is None for e in events))
        assert any(isinstance(e, ctl.BestChange) and e.prefix == "10.130.0.0/24" for e in events)
        chunks = [x async for x in d.iter_rib("ipv4", chunk=1)]
        assert [[r.prefix for r in ch] for ch in chunks] == [["10.130.0.0/24"]]
        assert msgspec.json.decode(msgspec.json.encode(d.neighbors()), type=list[ctl.NeighborSummary])
        d.set_log_level("debug")
        d.set_log_level("info")
        await c.stop()
        await until(lambda: any(isinstance(e, ctl.StateChange) and e.old == "established" for e in events))
        task.cancel()
        await dut.stop()

    run(main())


@pytest.mark.parametrize("route_refresh", [True, False])
def test_soft_reconfiguration_inbound(tmp_path, route_refresh, run):
    """An import policy change re-runs import: by ROUTE-REFRESH (RFC 2918)
    when the peer supports it, else from the stored pre-policy Adj-RIB-In."""

    async def main():
        a_addr = addr()
        path = tmp_path / "d.toml"
        policy = """
[[defined-sets.prefix-sets]]
name = "only"
prefixes = ["10.140.0.0/24"]

[[policies]]
name = "only"
[[policies.statements]]
conditions = { prefix-set = "only" }
actions = { result = "accept" }
[[policies.statements]]
actions = { result = "reject" }
"""
        dut = DUT(path=path, extra=policy, neighbors=[neighbor_toml(a_addr, 65001)])
        d = await dut.start()
        a, na = await peer(dut, 65001, a_addr, route_refresh=route_refresh)
        await na.wait_established(5)
        a.announce(["10.140.0.0/24", "10.141.0.0/24"])
        await until(lambda: len(d.rib("ipv4-unicast")) == 2)
        refresh_before = na.counters.received.refresh
        path.write_text(dut.text(neighbors=[neighbor_toml(a_addr, 65001, **{"import-policy": ["only"]})]))
        res = await d.reload()
        assert res["changed"][0]["soft-import"]
        await until(lambda: [r.prefix for r in d.rib("ipv4-unicast")] == ["10.140.0.0/24"], what="re-import")
        assert (na.counters.received.refresh > refresh_before) == route_refresh
        # And back: everything accepted again.
        path.write_text(dut.text())
        await d.reload()
        await until(lambda: len(d.rib("ipv4-unicast")) == 2, what="re-import without policy")
        assert na.counters.established_count == 1
        await a.stop()
        await dut.stop()

    run(main())


def test_sighup_reloads(tmp_path, run):
    import os
    import signal

    host = addr()
    port = free_port(host)
    path = tmp_path / "d.toml"
    base = '[global]\nasn = 65000\nrouter-id = "1.2.3.4"\nlisten = ["%s:%d"]\n' % (host, port)
    path.write_text(base)

    async def main():
        stop = asyncio.Event()
        seen = []
        task = asyncio.create_task(run_daemon(str(path), api=False, metrics=False, stop_event=stop,
                                              ready=seen.append))
        await until(lambda: seen)
        d = seen[0]
        path.write_text(base + '[[routes]]\nprefix = "10.150.0.0/24"\n')
        os.kill(os.getpid(), signal.SIGHUP)
        await until(lambda: d.rib("ipv4-unicast"), what="route from the reloaded file")
        path.write_text(base + "garbage = [")
        os.kill(os.getpid(), signal.SIGHUP)  # logged, nothing changes
        await asyncio.sleep(0.2)
        assert [r.prefix for r in d.rib("ipv4-unicast")] == ["10.150.0.0/24"]
        stop.set()
        assert await task == 0

    run(main())
