"""UPDATEs framed in a row go up as one batch (Connection.process ->
Session.on_updates -> Speaker.session_updates -> Sink.updates_received ->
Importer.updates_in and its fast lane).  A batch must leave exactly what
one call per UPDATE leaves, stop where one call per UPDATE would stop (a
malformed UPDATE, a prefix limit), and never process an UPDATE of a
session that already ended."""

from __future__ import annotations

import ipaddress
import random

import pytest

from fastbgp.rib.export import tag_source
from fastbgp.wire import codec, messages as m
from fastbgp.wire.as4 import split_attrs
from fastbgp.wire.constants import MSG_UPDATE
from fastbgp.wire.types import Context

from test_daemon import DUT, addr, neighbor_toml, peer, until
from test_rpki_daemon import RPKI_POLICY

pytestmark = pytest.mark.timeout(60)
AS4 = Context(as4=True)
V4 = ["10.%d.%d.0/24" % (i // 16, i % 16) for i in range(48)]
V6 = ["2001:db8:%x::/48" % i for i in range(16)]
FAMS = ["ipv4-unicast", "ipv6-unicast"]


def body(rnd, peer_as, own_nh):
    """A random UPDATE: announcements (IPv4 NLRI or MP_REACH, a few
    attribute sets), withdrawals of either family, sometimes both, now and
    then our own address as next hop (RFC 4271 §6.3: ignored)."""
    kind = rnd.random()
    wd = rnd.sample(V4, rnd.randint(0, 3)) if kind < 0.3 else []
    wd6 = rnd.sample(V6, rnd.randint(0, 2)) if 0.2 < kind < 0.4 else []
    attrs = [m.Origin(0), m.AsPath([m.Segment(2, [peer_as, 65100 + rnd.randint(0, 3)])]), m.Med(rnd.randint(0, 2))]
    ann = ann6 = []
    if kind > 0.25:
        if rnd.random() < 0.7:
            ann = rnd.sample(V4, rnd.randint(1, 5))
            attrs.append(m.NextHop(own_nh if rnd.random() < 0.05 else "192.0.2.%d" % rnd.randint(1, 2)))
        else:
            ann6 = rnd.sample(V6, rnd.randint(1, 3))
            attrs.append(m.MpReach(afi=2, safi=1, next_hops=["2001:db8::%d" % rnd.randint(1, 2)],
                                   nlri=[m.Prefix(p) for p in ann6]))
    if wd6:
        attrs.append(m.MpUnreach(afi=2, safi=1, nlri=[m.Prefix(p) for p in wd6]))
    if not ann and not ann6:
        attrs = [a for a in attrs if isinstance(a, m.MpUnreach)]
    if not (ann or ann6 or wd or wd6):
        wd = [V4[0]]
    u = m.Update(withdrawn=[m.Prefix(p) for p in wd], attributes=attrs, nlri=[m.Prefix(p) for p in ann])
    return m.encode_update(u, AS4)


def table(d, pid):
    """{(family, packed prefix): (attrs, next hop)} of one neighbour's paths."""
    out = {}
    for fam, rib in d.ribs.items():
        if not rib.has_peer(pid):
            continue
        for aid, packed in rib.dump_peer(pid, False):
            _pid, attrs, nh = tag_source(d.attrs, aid)
            for entry in split(packed):
                out[(fam, entry)] = (attrs, nh)
    return out


def split(packed):
    i = 0
    while i < len(packed):
        n = 1 + (packed[i] + 7) // 8
        yield bytes(packed[i:i + n])
        i += n


async def two_peers(dut, rx=None, **kw):
    """Two senders of AS 65001 (and ``rx``, an address: a neighbour of AS
    65002 configured for the caller to connect)."""
    a_addr, b_addr = addr(), addr()
    dut.neighbors = [neighbor_toml(a_addr, 65001, families=FAMS, **kw), neighbor_toml(b_addr, 65001, families=FAMS, **kw)]
    if rx is not None:
        dut.neighbors.append(neighbor_toml(rx, 65002, families=FAMS))
    d = await dut.start()
    a, na = await peer(dut, 65001, a_addr, families=FAMS)
    b, nb = await peer(dut, 65001, b_addr, families=FAMS)
    await na.wait_established(5)
    await nb.wait_established(5)
    await until(lambda: all(x.session is not None and x.session.state.name == "ESTABLISHED"
                            for x in (d.speaker.neighbors[a_addr], d.speaker.neighbors[b_addr])), what="both up")
    return d, (a, b), (d.speaker.neighbors[a_addr], d.speaker.neighbors[b_addr])


ROV = '[rpki]\nfile = "%s"\n' + RPKI_POLICY  # invalid rejected, valid with LOCAL_PREF 200
VRPS = {"roas": [{"prefix": "10.0.0.0/16", "maxLength": 24, "asn": "AS65100"},
                 {"prefix": "10.1.0.0/16", "maxLength": 20, "asn": "AS65101"},
                 {"prefix": "2001:db8::/32", "maxLength": 48, "asn": "AS65102"}]}


def pre_table(d, pid):
    """The pre-policy Adj-RIB-In view of one neighbour (RPKI re-validation;
    fastbgp.daemon.prepolicy)."""
    out = {}
    view = d.importer.prepolicy
    for fam in d.ribs:
        if view.has_peer(pid, fam):
            for aid, packed in view.dump_peer(pid, fam, False):
                _pid, attrs, nh = tag_source(d.attrs, aid)
                for entry in split(packed):
                    assert (fam, entry) not in out, "one path per prefix"
                    out[(fam, entry)] = (attrs, nh)
    return out


def announcement(prefix, origin=65100):
    """An UPDATE of AS 65001 announcing ``prefix`` (originated by
    ``origin``) with next hop 192.0.2.1."""
    return m.encode_update(m.Update(attributes=[m.Origin(0), m.AsPath([m.Segment(2, [65001, origin])]),
                                                m.NextHop("192.0.2.1")],
                                    nlri=[m.Prefix(prefix)]), AS4)


async def one_neighbour(dut, a_addr, lane_impl):
    """``dut`` started with ``lane_impl``'s lane step and a peer of AS
    65001 at ``a_addr`` established: (daemon, peer, its daemon neighbour)."""
    d = await dut.start()
    d.importer.lane_step = lane_impl
    a, na = await peer(dut, 65001, a_addr, families=FAMS)
    try:
        await na.wait_established(5)
        nb = d.speaker.neighbors[a_addr]
        await until(lambda: nb.session is not None and nb.session.state.name == "ESTABLISHED", what="up")
    except BaseException:
        await a.stop()  # the caller stops dut
        raise
    return d, a, nb


def test_both_lane_steps_export_the_api(both_lanes):
    from fastbgp.daemon import lanestep

    for impl in both_lanes:
        for name in lanestep.API:
            assert hasattr(impl, name), name
    assert both_lanes[0].IMPLEMENTATION == "cython" and both_lanes[1].IMPLEMENTATION == "python"
    if not lanestep.NO_EXTENSIONS:
        assert lanestep.take is both_lanes[0].take, "the compiled step is the one the daemon uses"


def lane_takes(bodies, own):
    """How many of ``bodies`` the fast lane must take: every announcement
    of one family without withdrawals or our own next hop -- with RPKI
    also those whose prefixes have several states (split as the general
    path splits them)."""
    n = 0
    for b in bodies:
        p = codec.parse_update(b, AS4)
        if p.withdrawn or p.mp_unreach is not None or p.action:
            continue
        if p.nlri and p.mp_reach is None and p.next_hop != ipaddress.ip_address(own).packed:
            n += 1
        elif not p.nlri and p.mp_reach is not None and p.mp_reach[3]:
            n += 1
    return n


@pytest.mark.parametrize("seed,mode", [(1, "plain"), (2, "plain"), (3, "rpki"), (4, "rpki")])
def test_batches_leave_what_single_updates_leave(run, tmp_path, seed, mode, lane_impl):
    """The same 600 random UPDATEs to two neighbours: one Session.on_message
    per UPDATE for the first, Session.on_updates in random-sized batches for
    the second (the fast lane, fastbgp.daemon.fastlane, with each
    implementation of its step); both neighbours' paths end equal, every
    step of the way -- also with RPKI validation, an import policy on the
    state (invalid rejected, valid tagged) and the pre-policy copy it
    needs.  The lane takes every plain announcement, those whose prefixes
    have several RFC 6811 states too."""
    async def main():
        import json

        kw = {}
        extra = ""
        if mode == "rpki":
            vrps = tmp_path / "vrps.json"
            vrps.write_text(json.dumps(VRPS))
            extra = ROV % vrps
            kw = {"import-policy": ["rov"]}
        dut = DUT(neighbors=[], extra=extra)
        rx_addr = addr()
        d, speakers, (one, many) = await two_peers(dut, rx=rx_addr, **kw)
        d.importer.lane_step = lane_impl
        # A receiver: what the batches export must end as the Loc-RIB (the
        # lane exports one Rib.update_many per batch; fastbgp.daemon.fastlane).
        rx, nrx = await peer(dut, 65002, rx_addr, families=FAMS)
        speakers = (*speakers, rx)
        await nrx.wait_established(5)
        if mode == "rpki":
            await until(lambda: len(d.rpki.vrps) == 3, what="the VRPs loaded")
            assert one.pre_policy and many.pre_policy
        try:
            rnd = random.Random(seed)
            own = dut.addr
            bodies = [body(rnd, 65001, own) for _ in range(600)]
            i = 0
            while i < len(bodies):
                n = rnd.randint(1, 40)
                chunk = bodies[i:i + n]
                for x in chunk:
                    one.session.on_message(one.session.conn, MSG_UPDATE, x)
                many.session.on_updates(many.session.conn, chunk)
                i += n
                assert table(d, one.pid) == table(d, many.pid)
                assert pre_table(d, one.pid) == pre_table(d, many.pid)
            assert any(d.rib(fam) for fam in FAMS), "some routes to export"
            for fam in FAMS:
                want = {r.prefix: r.as_path[-1] for r in d.rib(fam)}
                await until(lambda: {p: r.as_path[-1] for p, r in nrx.received(fam).items()} == want,
                            what="the receiver holds the Loc-RIB (%s)" % fam)
            assert table(d, one.pid), "the sequence left routes"
            assert d.importer.fast_updates == lane_takes(bodies, own), "the fast lane took its share"
            if mode == "rpki":
                assert len(pre_table(d, one.pid)) > len(table(d, one.pid)), "some were rejected as invalid"
                marks = {fam: rib.peer_marks(many.pid) for fam, rib in d.ribs.items() if rib.has_peer(many.pid)}
                assert marks == {fam: rib.peer_marks(one.pid) for fam, rib in d.ribs.items() if rib.has_peer(one.pid)}
            assert one.counters.received.update == many.counters.received.update
        finally:
            for s in speakers:
                await s.stop()
            await dut.stop()

    run(main())


def test_the_pre_policy_view_follows_a_batch(run, tmp_path, lane_impl):
    """Within one batch a path rejected as RPKI-invalid is kept in the
    pre-policy view, then the same prefix arrives valid with a set the
    batch has already seen: the view must drop its copy again (the lane
    step's look at whether the view holds anything is taken again after a
    store).  Both neighbours' views end equal: one UPDATE at a time for the
    first, one batch for the second."""
    async def main():
        import json

        vrps = tmp_path / "vrps.json"
        vrps.write_text(json.dumps(VRPS))
        dut = DUT(neighbors=[], extra=ROV % vrps)
        d, speakers, (one, many) = await two_peers(dut, **{"import-policy": ["rov"]})
        d.importer.lane_step = lane_impl
        await until(lambda: len(d.rpki.vrps) == 3, what="the VRPs loaded")
        try:
            up = announcement

            batches = [
                # After a new set's first UPDATE (first() stores into the view):
                [up("10.0.1.0/24", 65100), up("10.0.2.0/24", 65100),  # valid; the view holds nothing
                 up("10.0.3.0/24", 65101),  # invalid: rejected, its copy kept in the view
                 up("10.0.3.0/24", 65100)],  # valid again, a set already seen: the copy goes
                # After a seen set's store:
                [up("10.0.4.0/24", 65101), up("10.0.4.0/24", 65100),  # both sets new: nothing left in the view
                 up("10.0.5.0/24", 65100),  # the view holds nothing
                 up("10.0.6.0/24", 65101),  # a seen rejected set: a copy kept
                 up("10.0.6.0/24", 65100)],  # a seen valid set: the copy goes
            ]
            for batch in batches:
                for x in batch:
                    one.session.on_message(one.session.conn, MSG_UPDATE, x)
                many.session.on_updates(many.session.conn, batch)
                assert table(d, one.pid) == table(d, many.pid)
                assert pre_table(d, one.pid) == pre_table(d, many.pid)
            assert d.importer.fast_updates == 9
            assert len(table(d, many.pid)) == 6
        finally:
            for s in speakers:
                await s.stop()
            await dut.stop()

    run(main())


def test_a_malformed_update_ends_the_batch(run):
    """UPDATEs before it are imported, the session is reset with the
    codec's NOTIFICATION (RFC 4271 §6.3), nothing after it is imported."""
    async def main():
        dut = DUT(neighbors=[])
        d, speakers, (a, _b) = await two_peers(dut)
        try:
            good = [m.encode_update(m.Update(attributes=[m.Origin(0), m.AsPath([m.Segment(2, [65001])]),
                                                         m.NextHop("192.0.2.1")],
                                             nlri=[m.Prefix("10.50.%d.0/24" % i)]), AS4) for i in range(3)]
            bad = bytearray(m.encode_update(m.Update(attributes=[m.Origin(0), m.AsPath([m.Segment(2, [65001])]),
                                                                 m.NextHop("192.0.2.1")],
                                                     nlri=[m.Prefix("10.50.9.0/24")]), AS4))
            assert bad[4:7] == b"\x40\x01\x01"
            bad[7] = 9  # ORIGIN 9: RFC 7606 §7.1 treat-as-withdraw, the batch goes on
            bad = bytes(bad)
            cut = b"\x00\x00\x00\x09\x40\x01"  # attribute block overruns the message: session reset
            a.session.on_updates(a.session.conn, good[:1] + [bad] + good[1:2] + [cut] + good[2:])
            assert sorted(p for (_f, p) in table(d, a.pid)) == sorted(
                bytes([24, 10, 50, i]) for i in (0, 1))  # the third came after the reset
            await until(lambda: speakers[0].neighbors[dut.addr].last_notification_received is not None,
                        what="the NOTIFICATION at the peer")
            n = speakers[0].neighbors[dut.addr].last_notification_received
            assert n.code == 3  # UPDATE Message Error
        finally:
            for s in speakers:
                await s.stop()
            await dut.stop()

    run(main())


def test_prefix_limit_inside_a_batch(run, lane_impl):
    """RFC 4486 Cease 6/1 when the limit is crossed in the middle of a
    batch: the UPDATEs after it are not imported, the peer gets 6/1, and
    the attribute sets the lane held are released."""
    async def main():
        dut = DUT(neighbors=[])
        d, speakers, (a, _b) = await two_peers(dut, **{"prefix-limit": {"ipv4-unicast": {"max": 5}}})
        d.importer.lane_step = lane_impl
        try:
            ups = [m.encode_update(m.Update(attributes=[m.Origin(0), m.AsPath([m.Segment(2, [65001])]),
                                                        m.NextHop("192.0.2.1")],
                                            nlri=[m.Prefix("10.60.%d.0/24" % i), m.Prefix("10.61.%d.0/24" % i)]),
                                   AS4) for i in range(6)]
            session = a.session
            session.on_updates(session.conn, ups)
            assert session.state.name != "ESTABLISHED"
            await until(lambda: speakers[0].neighbors[dut.addr].last_notification_received is not None,
                        what="Cease 6/1 at the peer")
            n = speakers[0].neighbors[dut.addr].last_notification_received
            assert (n.code, n.subcode) == (6, 1)
            await until(lambda: not table(d, a.pid), what="its routes dropped")
            # The session ended inside the batch, while the lane's memo was
            # in use: it is released when the batch ends.
            assert a.lane_memo is None
            await until(lambda: len(d.attrs) == 0, what="nothing of the session still referenced")
        finally:
            for s in speakers:
                await s.stop()
            await dut.stop()

    run(main())


NO_TO_R = (65002).to_bytes(4, "big")  # Euro-IX 0:65002, do not announce to AS 65002


def rs_body(rnd, own_nh):
    """A random IPv4 UPDATE of route-server client AS 65001: a few
    announcements with the client's own next hop, sometimes the Euro-IX
    "do not announce to AS 65002" community (0:65002), sometimes
    withdrawals."""
    wd = rnd.sample(V4, rnd.randint(1, 3)) if rnd.random() < 0.25 else []
    ann = [] if wd and rnd.random() < 0.5 else rnd.sample(V4, rnd.randint(1, 4))
    attrs = []
    if ann:
        attrs = [m.Origin(0), m.AsPath([m.Segment(2, [65001, 65100 + rnd.randint(0, 2)])]), m.NextHop(own_nh)]
        if rnd.random() < 0.3:
            attrs.append(m.Communities([(0 << 16) | 65002]))
    return m.encode_update(m.Update(withdrawn=[m.Prefix(p) for p in wd], attributes=attrs,
                                    nlri=[m.Prefix(p) for p in ann]), AS4)


def test_batches_with_route_server_path_hiding(run):
    """A route server with RFC 7947 §2.3 path hiding: client A's UPDATEs go
    up in batches (the fast lane defers them and touches the hidden paths
    after each batch, Exporter.hiding_touch_many).  Client C holds the best
    path of the first half of the prefixes, told by Euro-IX 0:65002 not to
    be sent to R (AS 65002), and a worse path of the rest; A's paths come
    and go, some of them tagged 0:65002 too.  R holds A's path where C's is
    hidden from it (A's non-best paths are what path hiding picks), Q holds
    the overall best; both exactly, at every checkpoint.  And a batch of
    one-prefix UPDATEs with one attribute set reaches each client as a
    handful of UPDATEs, not one each."""
    from test_route_server_policy import RS_AS

    async def main():
        addrs = {k: addr() for k in "acrq"}
        asns = {"a": 65001, "c": 65003, "r": 65002, "q": 65004}
        rs = {"route-server-client": True}
        dut = DUT(asn=RS_AS, glob="[global.route-server]\neuro-ix-communities = true\n",
                  neighbors=[neighbor_toml(addrs[k], asns[k], **rs) for k in "acrq"])
        d = await dut.start()
        sp = {}
        for k in "acrq":
            sp[k] = await peer(dut, asns[k], addrs[k])
        try:
            for _s, n in sp.values():
                await n.wait_established(5)
            a = d.speaker.neighbors[addrs["a"]]
            await until(lambda: a.session is not None and a.session.state.name == "ESTABLISHED", what="A up")
            c_best = V4[:24]
            sp["c"][0].announce(c_best, communities=["0:65002"])  # (65003): better than A's
            sp["c"][0].announce(V4[24:], as_path=(65003, 65200))  # worse than A's
            nr, nq = sp["r"][1], sp["q"][1]
            await until(lambda: len(nq.received()) == len(V4), what="Q holds C's paths")

            def want(for_r):
                """{prefix: next hop} R (``for_r``) or Q should hold."""
                held = {}  # A's prefixes: carrying 0:65002?
                for (_f, entry), (attrs, _nh) in table(d, a.pid).items():
                    comms = b"".join(v for _fl, t, v in split_attrs(attrs) if t == 8)
                    held[entry] = any(comms[j:j + 4] == NO_TO_R for j in range(0, len(comms), 4))
                out = {}
                for p in V4:
                    net = ipaddress.ip_network(p)
                    entry = bytes([net.prefixlen]) + net.network_address.packed[:3]
                    a_ok = entry in held and not (for_r and held[entry])
                    if p in c_best:
                        if not for_r:
                            out[p] = addrs["c"]
                        elif a_ok:
                            out[p] = addrs["a"]  # C's is hidden from R: A's non-best path
                    else:
                        out[p] = addrs["a"] if a_ok else addrs["c"]
                return out

            async def check():
                for who, for_r in ((nr, True), (nq, False)):
                    await until(lambda: {p: r.next_hop for p, r in who.received().items()} == want(for_r),
                                what="%s holds its paths" % ("R" if for_r else "Q"))

            # One batch of one-prefix UPDATEs, one attribute set: a few UPDATEs to each.
            before = (nr.counters.received.update, nq.counters.received.update)
            same = [m.encode_update(m.Update(attributes=[m.Origin(0), m.AsPath([m.Segment(2, [65001, 65100])]),
                                                         m.NextHop(addrs["a"])], nlri=[m.Prefix(p)]), AS4)
                    for p in V4]
            a.session.on_updates(a.session.conn, same)
            await check()
            assert len(nr.received()) == len(V4), "R got A's paths where C's are hidden"
            got = (nr.counters.received.update - before[0], nq.counters.received.update - before[1])
            assert max(got) <= 4, got
            rnd = random.Random(11)
            bodies = [rs_body(rnd, addrs["a"]) for _ in range(400)]
            fast0 = d.importer.fast_updates
            i = 0
            while i < len(bodies):
                n = rnd.randint(1, 60)
                a.session.on_updates(a.session.conn, bodies[i:i + n])
                i += n
                if rnd.random() < 0.2 or i >= len(bodies):
                    await check()
            assert d.importer.fast_updates - fast0 >= 100, "the fast lane took its share"
            assert want(True) != want(False), "some paths hidden from R"
        finally:
            for s, _n in sp.values():
                await s.stop()
            await dut.stop()

    run(main())


LP_POLICY = """
[[policies]]
name = "lp"
[[policies.statements]]
actions = { result = "accept", set-local-pref = %d }
"""


def test_the_lane_memo_spans_batches_until_its_inputs_change(run, tmp_path, lane_impl, monkeypatch):
    """The lane works out an attribute set once per session, not once per
    batch (fastbgp.daemon.fastlane.LaneMemo): a second batch with the same
    set takes the memo.  A reload binding a new import policy makes the
    next batch follow the new verdict; the import cache cleared for ASPA
    data (forget_imports), End-of-RIB and the session's end release the
    ids it held."""
    from fastbgp.daemon.fastlane import FastLane

    firsts = []
    real_first = FastLane.first

    def counting_first(self, key, packed):
        firsts.append(key)
        return real_first(self, key, packed)

    monkeypatch.setattr(FastLane, "first", counting_first)

    def local_pref(attrs):
        return {t: v for _f, t, v in split_attrs(attrs)}.get(5)

    async def main():
        path = tmp_path / "fastbgp.toml"
        a_addr = addr()
        dut = DUT(path=path, extra=LP_POLICY % 150,
                  neighbors=[neighbor_toml(a_addr, 65001, families=FAMS, **{"import-policy": ["lp"]})])
        a = None
        try:
            d, a, nb = await one_neighbour(dut, a_addr, lane_impl)

            def up(prefixes):
                return [announcement(p) for p in prefixes]

            nb.session.on_updates(nb.session.conn, up(["10.0.1.0/24", "10.0.2.0/24"]))
            memo = nb.lane_memo
            assert len(firsts) == 1 and len(memo.seen) == 1
            nb.session.on_updates(nb.session.conn, up(["10.0.3.0/24", "10.0.4.0/24"]))
            assert len(firsts) == 1, "the second batch took the memo"
            assert nb.lane_memo is memo
            lps = {local_pref(attrs) for attrs, _nh in table(d, nb.pid).values()}
            assert lps == {(150).to_bytes(4, "big")} and len(table(d, nb.pid)) == 4
            # A new policy: the same set's next UPDATE follows it.
            dut.extra = LP_POLICY % 250
            path.write_text(dut.text())
            await d.reload()
            assert nb.lane_memo is None, "a new import chain drops the memo"
            nb.session.on_updates(nb.session.conn, up(["10.0.5.0/24", "10.0.6.0/24"]))
            assert len(firsts) == 2
            got = table(d, nb.pid)
            assert local_pref(got[((1, 1), bytes([24, 10, 0, 5]))][0]) == (250).to_bytes(4, "big")
            assert local_pref(got[((1, 1), bytes([24, 10, 0, 6]))][0]) == (250).to_bytes(4, "big")
            # The import cache cleared (new ASPA data): the memo's ids released.
            memo = nb.lane_memo
            (aid, _mark, _ok), = memo.seen.values()
            held = d.attrs.refcount(aid)
            d.importer.forget_imports(nb)
            assert nb.lane_memo is None and not memo.seen and d.attrs.refcount(aid) == held - 1
            nb.session.on_updates(nb.session.conn, up(["10.0.7.0/24"]))
            assert len(firsts) == 3
            # End-of-RIB (RFC 4724 §2), inside a batch: the memo goes once
            # the batch is over, its ids released; the routes around it in.
            memo = nb.lane_memo
            (aid, _mark, _ok), = memo.seen.values()
            held = d.attrs.refcount(aid)
            eor = b"\x00\x00\x00\x00"
            nb.session.on_updates(nb.session.conn, up(["10.0.8.0/24"]) + [eor] + up(["10.0.9.0/24"]))
            assert nb.lane_memo is None and not memo.seen
            assert d.attrs.refcount(aid) == held + 2 - 1, "two more paths hold it, the memo no longer"
            assert len(table(d, nb.pid)) == 9
            nb.session.on_updates(nb.session.conn, up(["10.0.10.0/24"]))
            assert len(firsts) == 4 and nb.lane_memo is not None, "a new memo after End-of-RIB"
            # The session ends: nothing of it stays referenced.
            await a.stop()
            await until(lambda: not nb.established, what="down")
            assert nb.lane_memo is None
            await until(lambda: not any(len(r) for r in d.ribs.values()) and not d.peers.sweeping(nb.pid),
                        what="swept")
            assert len(d.attrs) == 0
        finally:
            if a is not None:
                await a.stop()
            await dut.stop()

    run(main())


def test_the_lane_memo_goes_with_the_rfc8097_flag(run, tmp_path, lane_impl):
    """When some neighbour starts asking for RFC 8097 signalling, the sets
    stored from then on carry the state community: the next batch must not
    take the set the memo holds from before (RpkiFeed.refresh_signal drops
    it; a dynamic neighbour is not rebound by the reload that changed the
    flag)."""
    import json

    import msgspec

    from fastbgp.wire.constants import ATTR_EXT_COMMUNITIES

    async def main():
        vrps = tmp_path / "vrps.json"
        vrps.write_text(json.dumps(VRPS))
        a_addr = addr()
        dut = DUT(extra=ROV % vrps,
                  neighbors=[neighbor_toml(a_addr, 65001, families=FAMS, **{"import-policy": ["rov"]})])
        a = None
        try:
            d, a, nb = await one_neighbour(dut, a_addr, lane_impl)
            await until(lambda: len(d.rpki.vrps) == 3, what="the VRPs loaded")
            up = announcement

            def ext(prefix):
                attrs, _nh = table(d, nb.pid)[((1, 1), bytes([24, 10, 0, int(prefix.split(".")[2])]))]
                return {t: v for _f, t, v in split_attrs(attrs)}.get(ATTR_EXT_COMMUNITIES)

            nb.session.on_updates(nb.session.conn, [up("10.0.1.0/24"), up("10.0.2.0/24")])
            assert nb.lane_memo is not None and ext("10.0.1.0/24") is None
            nb.cfg = msgspec.structs.replace(nb.cfg, rpki_signal=True)
            assert d.rpki.refresh_signal()
            assert nb.lane_memo is None
            nb.session.on_updates(nb.session.conn, [up("10.0.3.0/24")])
            assert ext("10.0.3.0/24") == bytes((0x43, 0x00, 0, 0, 0, 0, 0, 0)), "valid (0) signalled"
        finally:
            if a is not None:
                await a.stop()
            await dut.stop()

    run(main())


def counted_parses():
    """(bodies parsed, a codec.parse_update that records them there, the
    real one): to count the parses a batch costs."""
    parses = []
    real_parse = codec.parse_update

    def counting_parse(body, *a, **kw):
        parses.append(body)
        return real_parse(body, *a, **kw)

    return parses, counting_parse, real_parse


def test_bodies_with_a_known_attribute_block_are_not_parsed(run, lane_impl, monkeypatch):
    """The lane learns the key of a plain announcement it took (its octets
    less the prefixes) from its set's second UPDATE; later bodies with that
    key go into the RIB without a parse (take_raw), in this batch and the
    next -- IPv4 NLRI and IPv6 in MP_REACH_NLRI alike, whatever the
    prefixes.  A withdrawal or another key is parsed; what ends in the RIB
    is what the parse would have given."""
    parses, counting_parse, real_parse = counted_parses()

    async def main():
        dut = DUT(neighbors=[])
        d, speakers, (one, many) = await two_peers(dut)
        d.importer.lane_step = lane_impl
        try:
            ups = [announcement("10.60.%d.0/24" % i) for i in range(20)]
            wd = m.encode_update(m.Update(withdrawn=[m.Prefix("10.60.3.0/24")]), AS4)
            other = announcement("10.61.0.0/24", origin=65200)
            def v6_of(*prefixes):
                return m.encode_update(m.Update(attributes=[
                    m.Origin(0), m.AsPath([m.Segment(2, [65001, 65100])]),
                    m.MpReach(afi=2, safi=1, next_hops=["2001:db8::1"], nlri=[m.Prefix(p) for p in prefixes])]), AS4)

            v6 = v6_of("2001:db8:60::/48")
            first = ups[:10] + [wd, other, v6]
            second = ups[10:] + [other, v6_of("2001:db8:61::/48", "2001:db8:62::/47")]
            monkeypatch.setattr(codec, "parse_update", counting_parse)
            many.session.on_updates(many.session.conn, first)
            # A set's first UPDATE is parsed, and its second, whose key the
            # lane then learns (a first may be the set's only UPDATE).
            assert parses == [ups[0], ups[1], wd, other, v6], "two parses per set the lane did not know"
            del parses[:]
            many.session.on_updates(many.session.conn, second)
            assert parses == [other, second[-1]], "the next batch's second UPDATEs of the other sets"
            del parses[:]
            many.session.on_updates(many.session.conn, [announcement("10.60.99.0/24"), other, second[-1]])
            assert parses == [], "the keys are known"
            monkeypatch.setattr(codec, "parse_update", real_parse)
            for x in first + second + [announcement("10.60.99.0/24"), other, second[-1]]:
                one.session.on_message(one.session.conn, MSG_UPDATE, x)
            assert table(d, one.pid) == table(d, many.pid)
            assert len(table(d, many.pid)) == 20 + 1 - 1 + 1 + 3
            assert len(many.lane_memo.raw) == 3
        finally:
            for s in speakers:
                await s.stop()
            await dut.stop()

    run(main())


@pytest.mark.parametrize("damage", ["nlri-overrun", "nlri-too-long", "attr-length", "empty-nlri", "mp-nlri-overrun",
                                    "mp-nlri-too-long"])
def test_a_known_attribute_block_does_not_hide_a_malformed_body(run, lane_impl, damage):
    """A body whose attribute block the lane knows, but whose lengths or
    NLRI are broken, gets exactly the codec's verdict (RFC 4271 §6.3, RFC
    7606 §5.3: a session reset with the codec's NOTIFICATION, those before
    it imported) -- the raw step never takes it; an UPDATE with the block
    and no NLRI at all is parsed too (nothing to announce)."""
    async def main():
        dut = DUT(neighbors=[])
        d, speakers, (a, _b) = await two_peers(dut)
        d.importer.lane_step = lane_impl
        try:
            ups = [announcement("10.70.%d.0/24" % i) for i in range(3)]
            bad = bytearray(announcement("10.70.9.0/24"))
            alen = (bad[2] << 8) | bad[3]
            if damage.startswith("mp-"):
                # IPv6 in MP_REACH_NLRI (RFC 4760 §3), the prefix last: a
                # /48 is its length octet and 6 octets.
                def v6(prefix):
                    return m.encode_update(m.Update(attributes=[
                        m.Origin(0), m.AsPath([m.Segment(2, [65001, 65100])]),
                        m.MpReach(afi=2, safi=1, next_hops=["2001:db8::1"], nlri=[m.Prefix(prefix)])]), AS4)

                ups = [v6("2001:db8:%x::/48" % (0x70 + i)) for i in range(3)]
                bad = bytearray(v6("2001:db8:79::/48"))
                assert bad[-7] == 48
                bad[-7] = 56 if damage == "mp-nlri-overrun" else 129
            elif damage == "nlri-overrun":
                bad[4 + alen] = 25  # a /25 whose address octets are missing
            elif damage == "nlri-too-long":
                bad[4 + alen] = 33  # RFC 4271 §4.3: longer than 32 bits
            elif damage == "attr-length":
                bad[3] += 10  # the block overruns into the NLRI and past the end
            else:
                del bad[4 + alen:]
            a.session.on_updates(a.session.conn, ups[:2] + [bytes(bad)] + ups[2:])
            got = sorted(p for (_f, p) in table(d, a.pid))
            if damage == "empty-nlri":
                # RFC 4271 §4.3 / RFC 7606 §5.2: attributes without NLRI -- no
                # route, no error; the batch goes on.
                assert got == sorted(bytes([24, 10, 70, i]) for i in (0, 1, 2))
                assert a.established
                return
            if damage.startswith("mp-"):
                assert got == sorted(bytes([48, 0x20, 0x01, 0x0d, 0xb8, 0, 0x70 + i]) for i in (0, 1)), \
                    "the third came after the reset"
            else:
                assert got == sorted(bytes([24, 10, 70, i]) for i in (0, 1)), "the third came after the reset"
            await until(lambda: speakers[0].neighbors[dut.addr].last_notification_received is not None,
                        what="the NOTIFICATION at the peer")
            assert speakers[0].neighbors[dut.addr].last_notification_received.code == 3
        finally:
            for s in speakers:
                await s.stop()
            await dut.stop()

    run(main())


PREFIX_POLICY = """
[[defined-sets.prefix-sets]]
name = "blocked"
prefixes = ["10.80.1.0/24", "2001:db8:81::/48"]

[[policies]]
name = "pfx"
[[policies.statements]]
conditions = { prefix-set = "blocked" }
actions = { result = "reject" }
[[policies.statements]]
actions = { result = "accept", set-local-pref = 120 }
"""


def test_bodies_under_a_prefix_dependent_policy_are_parsed_once(run, lane_impl, monkeypatch):
    """An import chain that looks at prefixes is the general path's (the
    lane stops at every UPDATE): a batch of bodies is still parsed once
    each -- the step hands its parse to the importer -- and the RIB ends
    as with one UPDATE at a time."""
    parses, counting_parse, real_parse = counted_parses()

    async def main():
        dut = DUT(neighbors=[], extra=PREFIX_POLICY)
        d, speakers, (one, many) = await two_peers(dut, **{"import-policy": ["pfx"]})
        d.importer.lane_step = lane_impl
        try:
            bodies = [announcement("10.80.%d.0/24" % i) for i in range(4)]
            bodies += [m.encode_update(m.Update(attributes=[
                m.Origin(0), m.AsPath([m.Segment(2, [65001, 65100])]),
                m.MpReach(afi=2, safi=1, next_hops=["2001:db8::1"], nlri=[m.Prefix("2001:db8:%x::/48" % (0x80 + i))])]),
                AS4) for i in range(3)]
            monkeypatch.setattr(codec, "parse_update", counting_parse)
            many.session.on_updates(many.session.conn, bodies)
            assert parses == bodies, "each body parsed once"
            monkeypatch.setattr(codec, "parse_update", real_parse)
            for x in bodies:
                one.session.on_message(one.session.conn, MSG_UPDATE, x)
            got = table(d, many.pid)
            assert got == table(d, one.pid)
            assert len(got) == 5 and ((1, 1), bytes([24, 10, 80, 1])) not in got
        finally:
            for s in speakers:
                await s.stop()
            await dut.stop()

    run(main())
