"""The pre-policy Adj-RIB-In view (fastbgp.daemon.prepolicy): the post-policy
RIB read back through the received attribute sets, plus what it cannot give
back (rejected paths, post-policy sets two received sets share).  Whatever
the policy, it must be exactly what each neighbour sent, at every step, and
hold what the full copy held (a neighbour forced to keep one is the
reference); re-imports from it (soft-in, RPKI re-validation) leave the
post-policy RIB as the reference's."""

from __future__ import annotations

import json
import random
import struct
import types

import pytest

from fastbgp.daemon.prepolicy import FULL, GC_FIRST, UNION, PrePolicy
from fastbgp.rib.attrs import AttrTable
from fastbgp.rib.export import source_tag, tag_source
from fastbgp.wire import codec
from fastbgp.wire.as4 import encode_attr
from fastbgp.wire.constants import MSG_UPDATE
from fastbgp.wire.types import DEFAULT_CONTEXT

from test_daemon import DUT, addr, neighbor_toml, peer, until
from test_update_batches import FAMS, ROV, V4, VRPS, body, pre_table, split, table

pytestmark = pytest.mark.timeout(90)

# Prefix conditions (the per-prefix import path), a rejection, and a MED
# every path gets: attribute sets differing only in MED give one
# post-policy set, which maps back to only one of them.
MIX = """
[[defined-sets.prefix-sets]]
name = "some"
prefixes = [%s]
[[policies]]
name = "mix"
[[policies.statements]]
conditions = { prefix-set = "some" }
actions = { result = "reject" }
[[policies.statements]]
actions = { result = "accept", set-med = 7 }
""" % ", ".join('"%s"' % p for p in V4[::5])
MED = """
[[policies]]
name = "med"
[[policies.statements]]
actions = { result = "accept", set-med = 7 }
"""


def received(model, parsed, own4, own_mp):
    """Apply one parsed UPDATE to ``model`` ({(family, entry): (attrs, next
    hop)}) as RFC 4271 says the Adj-RIB-In takes it (withdrawals, then
    announcements; our own next hop: not installed, RFC 4271 §6.3)."""
    for e in split(parsed.withdrawn or b""):
        model.pop(((1, 1), e), None)
    if parsed.mp_unreach is not None and parsed.mp_unreach[2]:
        for e in split(parsed.mp_unreach[2]):
            model.pop(((2, 1), e), None)
    if parsed.nlri:
        for e in split(parsed.nlri):
            if parsed.next_hop in own4:
                model.pop(((1, 1), e), None)
            else:
                model[((1, 1), e)] = (bytes(parsed.attrs), b"")
    mpr = parsed.mp_reach
    if mpr is not None and mpr[3]:
        nh = bytes(mpr[2])
        for e in split(mpr[3]):
            if nh[:16] in own_mp:
                model.pop(((2, 1), e), None)
            else:
                model[((2, 1), e)] = (bytes(parsed.attrs), nh)


def view_table(d, pid):
    """The view through its per-prefix reader (BMP's) too: it must agree."""
    out = pre_table(d, pid)
    view = d.importer.prepolicy
    for (fam, e), got in out.items():
        aid = view.path(pid, fam, codec_key(fam, e))
        assert aid is not None and tag_source(d.attrs, aid)[1:] == got
    return out


def codec_key(fam, entry):
    from fastbgp.daemon.bmp_feed import prefix_key

    return prefix_key(fam, entry)


@pytest.mark.parametrize("seed,policy,cap", [(11, "rov", None), (12, "mix", None), (13, "med", None),
                                             (14, None, None), (15, "rov", 1), (16, "mix", 1)])
def test_view_is_what_each_neighbour_sent(run, tmp_path, seed, policy, cap):
    """Two neighbours get the same 500 random UPDATEs: one keeps a full
    copy (the reference), the other the union view (with ``cap``: room for
    one mapped attribute set, the rest in ``pre_ribs``).  At every step
    each view is what was sent and the post-policy RIBs agree; then
    soft-in and (ROV) a VRP change re-import from the views and they
    still agree."""
    async def main():
        vrps = tmp_path / "vrps.json"
        vrps.write_text(json.dumps(VRPS))
        extra = {"rov": ROV % vrps, "mix": MIX, "med": MED, None: ""}[policy]
        kw = {"import-policy": [policy]} if policy else {}
        addrs = [addr() for _ in range(2)]
        dut = DUT(neighbors=[neighbor_toml(x, 65001, families=FAMS, **kw) for x in addrs], extra=extra)
        d = await dut.start()
        speakers, nbs = [], []
        try:
            for x in addrs:
                sp, n = await peer(dut, 65001, x, families=FAMS, route_refresh=False)
                speakers.append(sp)
                await n.wait_established(5)
            for x in addrs:
                await until(lambda x=x: d.speaker.neighbors[x].established, what="up")
                nbs.append(d.speaker.neighbors[x])
            if policy == "rov":
                await until(lambda: len(d.rpki.vrps) == 3, what="the VRPs loaded")
            assert all(n.pre_policy for n in nbs)
            view = d.importer.prepolicy
            full, union = nbs
            for fam in ((1, 1), (2, 1)):
                view.modes[(full.pid, fam)] = FULL
            if cap:
                view.origins_max = cap
            rnd = random.Random(seed)
            model = {}
            own4, own_mp = full.own_next_hops
            ctx = full.session.ctx
            for i in range(500):
                b = body(rnd, 65001, dut.addr)
                received(model, codec.parse_update(b, ctx), own4, own_mp)
                for n in nbs:
                    if i % 2:
                        n.session.on_updates(n.session.conn, [b])
                    else:
                        n.session.on_message(n.session.conn, MSG_UPDATE, b)
                if i % 25 == 0 or i == 499:
                    for n in nbs:
                        assert view_table(d, n.pid) == model, (i, n.address)
                    assert table(d, union.pid) == table(d, full.pid)
            assert model and view.modes.get((union.pid, (1, 1))) == UNION
            kept = {n: sum(r.peer_path_count(n.pid) for r in d.importer.pre_ribs.values() if r.has_peer(n.pid))
                    for n in nbs}
            assert kept[full] == len(model)
            if policy is None:
                assert kept[union] == 0  # nothing changed by policy: nothing kept twice
            if policy == "med":
                assert 0 < kept[union] < len(model)  # the MEDs that share a post-policy set
            if cap:
                assert kept[union] > len(model) // 2  # most sets find no room
            if policy == "rov":
                assert len(table(d, full.pid)) < len(model), "some were rejected as invalid"
            assert len(view.origins.get(union.pid, ())) <= (cap or GC_FIRST)
            for n in nbs:
                d.importer.soft_in(n)
            for n in nbs:
                assert view_table(d, n.pid) == model
            assert table(d, union.pid) == table(d, full.pid)
            if policy == "rov":
                before = table(d, full.pid)
                # The valid /16 becomes another AS's: its routes turn invalid, rejected.
                vrps.write_text(json.dumps({"roas": [dict(VRPS["roas"][0], asn="AS65103")] + VRPS["roas"][1:]}))
                done = d.rpki.revalidated
                assert d.rpki.load_file()
                await until(lambda: d.rpki.revalidated > done and (d.rpki.task is None or d.rpki.task.done()),
                            what="re-validation")
                assert table(d, full.pid) != before
                for n in nbs:
                    assert view_table(d, n.pid) == model
                assert table(d, union.pid) == table(d, full.pid)
            # Sessions gone, paths swept: no attribute set is still referenced
            # (the lane's batch ids, the views' mapping).
            for sp in speakers:
                await sp.stop()
            await until(lambda: not any(n.established for n in nbs), what="both down")
            await until(lambda: not any(d.peers.sweeping(n.pid) for n in nbs) and d.exporter.queue.idle
                        and not any(len(r) for r in d.ribs.values()), what="swept")
            assert not view.origins and len(d.attrs) == 0
        finally:
            for sp in speakers:
                await sp.stop()
            await dut.stop()

    run(main())


def test_view_follows_the_session(run):
    """A session's end leaves the view with what ``pre_ribs`` holds (swept
    like the rest), not the post-policy paths; the next session's view is
    what it sends, in union mode again once the old paths are gone."""
    async def main():
        a_addr = addr()
        dut = DUT(neighbors=[neighbor_toml(a_addr, 65001)])
        d = await dut.start()
        a, na = await peer(dut, 65001, a_addr, route_refresh=False)
        a2 = None
        try:
            await na.wait_established(5)
            a.announce(["10.160.%d.0/24" % i for i in range(30)], as_path=[65100])
            nb = d.peers.get(a_addr)
            pid = nb.pid
            view = d.importer.prepolicy
            await until(lambda: view.count(pid, (1, 1)) == 30, what="A's routes in the view")
            assert view.modes[(pid, (1, 1))] == UNION and view.origins[pid]
            await a.stop()
            await until(lambda: not nb.established, what="A down")
            assert view.count(pid, (1, 1)) == 0 and pid not in view.origins
            await until(lambda: len(d.ribs[(1, 1)]) == 0 and not d.peers.sweeping(pid), what="swept")
            assert len(d.attrs) == 0  # nothing of the session still referenced
            a2, na2 = await peer(dut, 65001, a_addr, route_refresh=False)
            a2.announce(["10.161.0.0/24"], as_path=[65100])
            await na2.wait_established(5)
            await until(lambda: view.count(nb.pid, (1, 1)) == 1, what="the new session's route")
            assert view.modes[(nb.pid, (1, 1))] == UNION
        finally:
            for s in (a,) + ((a2,) if a2 else ()):
                await s.stop()
            await dut.stop()

    run(main())


def test_graceful_restart_keeps_stale_paths_out_of_the_view(run):
    """RFC 4724: the stale paths a restarting peer left in the post-policy
    RIB are not what its new session sent: that session's view is a full
    copy (FULL), holding only what it sends, and the stale path swept at
    End-of-RIB never shows in it."""
    from fastbgp.session.speaker import NeighborConfig, Speaker

    async def main():
        a_addr = addr()
        gr = {"enabled": True, "restart-time": 30}
        dut = DUT(neighbors=[neighbor_toml(a_addr, 65001, **{"graceful-restart": gr})])
        d = await dut.start()
        a, na = await peer(dut, 65001, a_addr, graceful_restart=True, route_refresh=False)
        a2 = None
        try:
            await na.wait_established(5)
            a.announce(["10.170.0.0/24", "10.170.1.0/24"], as_path=[65100])
            nb = d.peers.get(a_addr)
            view = d.importer.prepolicy
            await until(lambda: view.count(nb.pid, (1, 1)) == 2, what="A's routes in the view")
            assert view.modes[(nb.pid, (1, 1))] == UNION
            await a.stop(notify=False)
            await until(lambda: all(r.stale for r in d.rib("ipv4-unicast")) and len(d.rib("ipv4-unicast")) == 2,
                        what="stale routes")
            assert view.count(nb.pid, (1, 1)) == 0
            a2 = Speaker(65001, a_addr.replace("127.", "11.", 1), restarting=True)
            a2.announce(["10.170.0.0/24"], as_path=[65100, 65101])
            await a2.start()
            na2 = a2.add_neighbor(NeighborConfig(address=dut.addr, peer_as=65000, port=dut.port, local_address=a_addr,
                                                 families=["ipv4-unicast"], graceful_restart=True, route_refresh=False,
                                                 idle_hold_time=0.1, connect_retry=1.0))
            await na2.wait_established(5)
            await until(lambda: [r.prefix for r in d.rib("ipv4-unicast")] == ["10.170.0.0/24"], what="sweep at EoR")
            assert view.modes[(nb.pid, (1, 1))] == FULL
            got = pre_table(d, nb.pid)
            assert [e for (_f, e) in got] == [bytes([24, 10, 170, 0])]
            assert table(d, nb.pid) == got  # no policy: as received
        finally:
            for s in (a,) + ((a2,) if a2 else ()):
                await s.stop()
            await dut.stop()

    run(main())


def add_path_table(d, pid, pre):
    """{(path id, entry): (attrs, next hop)} of IPv4 paths with ADD-PATH,
    pre-policy view or post-policy RIB."""
    out = {}
    groups = d.importer.prepolicy.dump_peer(pid, (1, 1), True) if pre else d.ribs[(1, 1)].dump_peer(pid, True)
    for aid, packed in groups:
        _pid, attrs, nh = tag_source(d.attrs, aid)
        i = 0
        while i < len(packed):
            n = 5 + (packed[i + 4] + 7) // 8
            key = (int.from_bytes(packed[i:i + 4], "big"), bytes(packed[i + 4:i + n]))
            assert key not in out, "one path per prefix and path id"
            out[key] = (attrs, nh)
            i += n
    return out


def test_view_with_add_path(run):
    """RFC 7911: the view keeps each path id apart, as the full copy does
    (rejected ones, shared post-policy sets, withdrawals of one path id)."""
    async def main():
        addrs = [addr(), addr()]
        kw = {"import-policy": ["mix"], "add-path": {"receive": ["ipv4-unicast"]}}
        dut = DUT(neighbors=[neighbor_toml(x, 65001, **kw) for x in addrs], extra=MIX)
        d = await dut.start()
        speakers = []
        try:
            for x in addrs:
                sp, n = await peer(dut, 65001, x, route_refresh=False, addpath_send=["ipv4-unicast"])
                speakers.append(sp)
                await n.wait_established(5)
            await until(lambda: all(d.speaker.neighbors[x].established for x in addrs), what="up")
            full, union = (d.speaker.neighbors[x] for x in addrs)
            view = d.importer.prepolicy
            view.modes[(full.pid, (1, 1))] = FULL
            for sp in speakers:
                for pid_, med in ((1, 0), (2, 1), (3, 2)):
                    sp.announce(V4[:20], next_hop="192.0.2.1", as_path=[65100], med=med, path_id=pid_)
                sp.withdraw(V4[5:8], path_id=2)
            want = 60 - 3
            await until(lambda: all(len(add_path_table(d, n.pid, True)) == want for n in (full, union)),
                        what="both views")
            assert add_path_table(d, union.pid, True) == add_path_table(d, full.pid, True)
            post = add_path_table(d, full.pid, False)
            assert post == add_path_table(d, union.pid, False) and 0 < len(post) < want
            assert view.modes[(union.pid, (1, 1))] == UNION
            for n in (full, union):
                d.importer.soft_in(n)
            assert add_path_table(d, union.pid, True) == add_path_table(d, full.pid, True)
            assert add_path_table(d, union.pid, False) == post
        finally:
            for sp in speakers:
                await sp.stop()
            await dut.stop()

    run(main())


def test_bmp_pre_policy_dump_reads_the_view(run, tmp_path):
    """RFC 7854 §5: a station added while a peer without ROUTE-REFRESH is
    up gets its pre-policy routes from the view: the rejected one (kept in
    ``pre_ribs``) and the accepted ones (read back from the post-policy
    RIB) with their attributes as received, not as the policy set them."""
    from test_bmp import IMPORT_POLICY as policy, StationServer, route_state

    async def main():
        host = addr()
        st = await StationServer().start(host)
        a_addr = addr()
        path = tmp_path / "d.toml"
        dut = DUT(path=path, extra=policy, neighbors=[neighbor_toml(a_addr, 65001, **{"import-policy": ["in"]})])
        d = await dut.start()
        a, na = await peer(dut, 65001, a_addr, route_refresh=False)
        try:
            await na.wait_established(5)
            a.announce(["10.1.0.0/24", "10.1.1.0/24", "10.9.0.0/24"], as_path=[65100])
            pid = d.peers.get(a_addr).pid
            await until(lambda: d.importer.prepolicy.count(pid, (1, 1)) == 3, what="A's routes")
            assert d.importer.pre_ribs[(1, 1)].peer_path_count(pid) == 1  # the rejected one only
            bmp = '[[bmp]]\naddress = "%s"\nport = %d\npolicy = "pre"\nstats-interval = 0\n' % (host, st.port)
            dut.extra = bmp + policy
            path.write_text(dut.text())
            await d.reload()
            await until(lambda: len(route_state(st.msgs, 0, False)) == 3, what="the pre-policy dump")
            pre = route_state(st.msgs, 0, False)
            assert sorted(pre) == ["10.1.0.0/24", "10.1.1.0/24", "10.9.0.0/24"]
            lp222 = b"\x40\x05\x04\x00\x00\x00\xde"  # LOCAL_PREF 222, as the policy sets it
            post = table(d, pid)
            assert len(post) == 2 and all(lp222 in attrs for attrs, _nh in post.values())
            for msg in pre.values():
                attrs = codec.parse_update(msg[19:], DEFAULT_CONTEXT).attrs
                assert lp222 not in bytes(attrs)  # as received
        finally:
            await a.stop()
            await dut.stop()
            await st.close()

    run(main(), timeout=60)


def test_a_full_origins_table_is_not_looked_through_for_every_new_set():
    """A neighbour whose every UPDATE brings a new attribute set (a real
    table: a router packs the prefixes sharing a set into one UPDATE) fills
    ``origins``; each further set is refused (kept as received instead).  A
    pass over the table comes only after as many refusals as it holds
    entries: one pass per refusal made the import quadratic (a 96k-UPDATE
    table with the bound at 65,536 never finished in 20 minutes).  Entries
    whose paths went are found by the next pass, and new sets map again."""
    table = AttrTable()
    view = PrePolicy(types.SimpleNamespace(attrs=table, ribs={}))
    view.origins_max = cap = 64
    m = view.origins[1] = {}

    def new_set(i):
        attrs = encode_attr(0x40, 1, b"\x00") + encode_attr(0xC0, 32, struct.pack("!III", 1, 7, i))
        aid = table.intern(attrs, source_tag(1))  # the post-policy path's reference
        return attrs, aid, view.map(m, 1, attrs, b"", aid)

    held = []
    for i in range(cap + 10 * cap):
        _attrs, aid, got = new_set(i)
        assert (got is not None) == (i < cap), i
        held.append(aid)
    assert len(m) == cap
    assert 1 <= view.collections <= 10, view.collections  # was 640: one per refusal
    for aid in held[:cap]:  # the mapped sets' paths are withdrawn
        table.release(aid)
    mapped = [new_set(10_000 + i)[2] is not None for i in range(cap + 1)]
    assert any(mapped), "the table stayed full after its paths went"
    assert len(m) <= cap
