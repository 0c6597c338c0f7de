"""The compact Adj-RIB-Out (fastbgp.rib.export, ``Rib.held``) where it was
not exact before: a soft reset out withdraws only what the member's group
before it held (``prior``); a route offered to some neighbours only
(``Source.scopes``) is withdrawn only from the members that may hold it;
ADD-PATH groups track (path id, prefix) in a HeldSet of path keys
(:func:`path_keys`); a new best path that the group's export turns into
what the group holds already is not announced again
(``ChangeSet.replaced``, :meth:`HeldOut.unchanged_best`).

Unit tests on :class:`UpdateGroup` run on the compiled RIB's HeldSet and
on its twin (``rib_impl``); the daemon tests count the withdrawals library
Speakers receive."""

from __future__ import annotations

import ipaddress

import pytest

from fastbgp.control import contract as ctl
from fastbgp.rib.export import EBGP, LOCAL, Delta, Source, UpdateGroup, from_path_keys, path_keys
from fastbgp.rib.policy import PolicyContext, PolicyEngine
from fastbgp.wire import codec, messages
from fastbgp.wire.constants import IPV4_UNICAST, IPV6_UNICAST

from test_daemon import DUT, addr, best, neighbor_toml, peer, until

pytestmark = pytest.mark.timeout(120)

SRC, LOC = 1, 0
A, B = 10, 11  # member pids
A_ADDR, B_ADDR = "192.0.2.10", "192.0.2.11"


def pk(*prefixes, ids=None):
    out = b""
    for i, text in enumerate(prefixes):
        net = ipaddress.ip_network(text, strict=False)
        if ids is not None:
            out += ids[i].to_bytes(4, "big")
        out += bytes((net.prefixlen,)) + net.network_address.packed[: (net.prefixlen + 7) >> 3]
    return out


ATTRS = messages.encode_attributes([
    messages.Origin(value=0), messages.AsPath(segments=[messages.Segment(type=2, asns=[65001])]),
    messages.NextHop(address="192.0.2.1")])

ATTRS6 = messages.encode_attributes([
    messages.Origin(value=0), messages.AsPath(segments=[messages.Segment(type=2, asns=[65001])])])
NH6 = ipaddress.ip_address("2001:db8::1").packed


class Member:
    def __init__(self, pid, address):
        self.pid = pid
        self.address = address


def group(rib_impl, addpath=False, members=((A, A_ADDR), (B, B_ADDR))):
    engine = PolicyEngine({})
    chain = engine.chain([], "export", "accept")
    ctx = codec.Context(as4=True, addpath_tx=frozenset({IPV4_UNICAST}) if addpath else frozenset())
    g = UpdateGroup(("t", addpath), IPV4_UNICAST, ctx, engine, chain, PolicyContext("192.0.2.9", 65009, 65000),
                    EBGP, False, 65000, bytes((192, 0, 2, 254)), None)
    for pid, address in members:
        g.members[pid] = Member(pid, address)
    rib = rib_impl.Rib(1)
    g.attach_held(rib.held, type(rib.held)(2) if addpath else None)
    return g


def withdrawn(msgs, addpath=False):
    """Packed prefixes withdrawn by ``msgs``."""
    ctx = codec.Context(as4=True, addpath_rx=frozenset({IPV4_UNICAST}) if addpath else frozenset())
    return b"".join(codec.parse_update(m[19:], ctx).withdrawn for m in msgs)


def announced(msgs, addpath=False):
    ctx = codec.Context(as4=True, addpath_rx=frozenset({IPV4_UNICAST}) if addpath else frozenset())
    return b"".join(codec.parse_update(m[19:], ctx).nlri for m in msgs)


def sources(scopes=None):
    src = Source(SRC, EBGP, peer_as=65001, router_id=1)
    loc = Source(LOC, LOCAL)
    loc.scopes = scopes
    return {SRC: src, LOC: loc}


def med(value):
    return messages.encode_attributes([messages.Med(value=value)])


X, Y = 2, 3  # two neighbours of one AS: what they send differs only in MED


def two_sources():
    out = sources()
    out[X] = Source(X, EBGP, peer_as=65001, router_id=2)
    out[Y] = Source(Y, EBGP, peer_as=65001, router_id=3)
    return out


def moved(packed, old=(X, ATTRS + med(10)), new=(Y, ATTRS + med(20)), srcs=None, **kw):
    """The Delta of ``packed`` moving from ``old`` (pid, attrs) to ``new``."""
    srcs = srcs or two_sources()
    d = Delta(IPV4_UNICAST, [(new[0], new[1], b"", packed)], **kw)
    d.replaced = {(new[0], new[1], b""): [(srcs[old[0]], old[1], b"", packed)]}
    return d


def test_new_best_exported_alike_is_not_announced_again(rib_impl):
    """The best moves from X to Y (same AS path, MEDs differ: an eBGP
    group drops MED, so both export alike): the group is sent only the
    prefixes it does not hold; a different export, a fresh change, a path
    from a member, or members still holding a former policy's export: all
    announced as before."""
    g = group(rib_impl)
    srcs = two_sources()
    held, other = pk("10.0.0.0/24", "10.0.2.0/24"), pk("10.0.1.0/24")
    g.held_mark(held)
    assert g.export(srcs[X], ATTRS + med(10), b"") == g.export(srcs[Y], ATTRS + med(20), b"")
    out = g.process(moved(pk("10.0.0.0/24", "10.0.1.0/24", "10.0.2.0/24")), srcs)
    assert announced(out.common) == other and not withdrawn(out.common)
    assert g.held.filter(g.held_index, held + other) == held + other  # bits stay, the sent one is held
    # Another AS path before: exported otherwise, so announced.
    longer = messages.encode_attributes([
        messages.Origin(value=0), messages.AsPath(segments=[messages.Segment(type=2, asns=[65001, 65001])]),
        messages.NextHop(address="192.0.2.1")])
    out = g.process(moved(held, old=(X, longer)), srcs)
    assert announced(out.common) == held
    for kw in (dict(fresh=True), dict(dump=True)):
        d = moved(held)
        for k, v in kw.items():
            setattr(d, k, v)
        assert announced(g.process(d, srcs).common) == held
    # The path before was member A's own: split horizon kept it from A,
    # which alone is sent it; now member B's own too: B, which held A's
    # from us, alone is sent the withdrawal.  The others are sent nothing.
    srcs[A] = Source(A, EBGP, peer_as=65001, router_id=10)
    srcs[B] = Source(B, EBGP, peer_as=65001, router_id=11)
    out = g.process(moved(held, old=(A, ATTRS + med(10)), srcs=srcs), srcs)
    assert not out.common and not out.by_src
    assert [(set(to), announced(m), w) for to, m, w, _ in out.scoped] == [({A_ADDR}, held, None)]
    out = g.process(moved(held, old=(A, ATTRS + med(10)), new=(B, ATTRS + med(20)), srcs=srcs), srcs)
    assert not out.common and not out.by_src and not out.echo
    assert [(set(to), announced(m), withdrawn(m)) for to, m, _w, _ in out.scoped] == [
        ({A_ADDR}, held, b""), ({B_ADDR}, b"", held)]
    # A member changing its own path (exported alike): nobody is sent anything.
    out = g.process(moved(held, old=(A, ATTRS + med(10)), new=(A, ATTRS + med(20)), srcs=srcs), srcs)
    assert not out
    # The best moving to a lone member's own path: the echo as before,
    # which clears the bits (nobody else holds the prefixes).
    lone = group(rib_impl, members=((B, B_ADDR),))
    lone.held_mark(held)
    out = lone.process(moved(held, new=(B, ATTRS + med(20)), srcs=srcs), srcs)
    assert not out.common and lone.held.filter(lone.held_index, held) == b""
    # A policy change not yet re-sent to every member (UpdateGroup.before).
    engine = PolicyEngine({})
    g.set_policy(engine, engine.chain([], "export", "accept"), g.pctx)
    assert g.before is not None
    assert announced(g.process(moved(held), srcs).common) == held


def test_path_keys_round_trip():
    ids = [7, 0xFFFFFFFF, 1 << 16]
    v4 = pk("10.0.0.0/24", "0.0.0.0/0", "10.1.2.3/32", ids=ids)
    keys, loose = path_keys(v4, 1)
    assert loose == b"" and from_path_keys(keys) == v4
    # One key per path: the same prefix under two ids is two keys.
    assert len({k for k in codec.unpack_prefixes(keys, 2)}) == 3
    v6 = pk("2001:db8::/32", "2001:db8::/96", "2001:db8::1/128", "::/0", ids=[1, 2, 3, 4])
    keys, loose = path_keys(v6, 2)
    assert loose == pk("2001:db8::1/128", ids=[3])  # longer than /96: no key
    assert from_path_keys(keys) == pk("2001:db8::/32", "2001:db8::/96", "::/0", ids=[1, 2, 4])


def test_soft_reset_withdraws_only_what_prior_group_held(rib_impl):
    """A dump with rejected_as_withdraw: without ``prior`` every rejected
    prefix is withdrawn (the member may hold anything); with it, those the
    member's group before held."""
    new = group(rib_impl, members=((A, A_ADDR),))
    old = group(rib_impl, members=())
    old.held_mark(pk("10.0.1.0/24"))
    # The new group's export rejects both (NO_ADVERTISE); the old group held one.
    attrs = ATTRS + codec_community(0xFFFFFF02)
    delta = Delta(IPV4_UNICAST, [(SRC, attrs, b"", pk("10.0.0.0/24", "10.0.1.0/24"))], dump=True,
                  rejected_as_withdraw=True)
    out = new.process(delta, sources(), single=True, exclude=A)
    assert withdrawn(out.common) == pk("10.0.0.0/24", "10.0.1.0/24")
    out = new.process(delta, sources(), single=True, exclude=A, prior=old)
    assert withdrawn(out.common) == pk("10.0.1.0/24")
    assert old.held.count(old.held_index) == 1  # another group's bits are not cleared
    # The member's own group, it its only member: its bits are cleared.
    new.held_mark(pk("10.0.0.0/24"))
    out = new.process(delta, sources(), single=True, exclude=A, prior=new)
    assert withdrawn(out.common) == pk("10.0.0.0/24") and new.held.count(new.held_index) == 0


def test_soft_reset_announces_only_what_changed(rib_impl):
    """``was`` (the export the member's table was sent with): prefixes its
    group before holds with the same attributes are not announced again,
    and are held by the new group; the others are."""
    old = group(rib_impl, members=())
    new = group(rib_impl, members=((A, A_ADDR),))
    held, fresh = pk("10.0.0.0/24", "10.0.1.0/24"), pk("10.0.2.0/24")
    old.held_mark(held)
    delta = Delta(IPV4_UNICAST, [(SRC, ATTRS, b"", held + fresh)], dump=True, rejected_as_withdraw=True)
    out = new.process(delta, sources(), single=True, exclude=A, prior=old, was=old.snapshot())
    assert announced(out.common) == fresh
    assert new.held.filter(new.held_index, held + fresh) == held + fresh
    # Sent with other attributes before (another local AS in front): all
    # announced again.
    other = group(rib_impl, members=())
    other.local_as = 65111
    out = new.process(delta, sources(), single=True, exclude=A, prior=old, was=other)
    assert announced(out.common) == held + fresh
    # Not a soft reset (no rejected_as_withdraw): everything, as a refresh.
    delta.rejected_as_withdraw = False
    out = new.process(delta, sources(), single=True, exclude=A, prior=old, was=old.snapshot())
    assert announced(out.common) == held + fresh


def test_policy_change_keeps_the_export_before(rib_impl):
    """set_policy keeps a copy exporting as before for the members not yet
    re-sent their table (``sent_by``); once they all were, it is dropped."""
    g = group(rib_impl)
    before = g.export(sources()[SRC], ATTRS, b"")
    engine = PolicyEngine({})
    g.set_policy(engine, engine.chain([], "export", "reject"), g.pctx)
    assert g.export(sources()[SRC], ATTRS, b"") is None
    assert g.sent_by(A).export(sources()[SRC], ATTRS, b"") == before
    g.resent(A)
    assert g.sent_by(A).export(sources()[SRC], ATTRS, b"") is None
    assert g.sent_by(B) is g.before
    g.resent(B)
    assert g.before is None


def codec_community(value):
    return messages.encode_attributes([messages.Communities(values=[value])])


def test_scoped_route_withdrawn_only_from_its_members(rib_impl):
    g = group(rib_impl)
    x = pk("10.5.0.0/24")
    scope = frozenset({A_ADDR})
    srcs = sources({IPV4_UNICAST: {x: scope}})
    # Our route for X, offered to A only; X was in the Loc-RIB before (not
    # fresh) but the group never held it: B is sent nothing.
    out = g.process(Delta(IPV4_UNICAST, [(LOC, ATTRS, b"", x)]), srcs)
    assert not out.common
    sent = {m.address: (announced(msgs), withdrawn(w or [])) for m in g.members.values()
            for (addrs, msgs, w, to) in out.scoped if m.address in addrs or (w and (to is None or m.address in to))}
    assert sent == {A_ADDR: (x, b"")}
    # X leaves the Loc-RIB: only A, which holds it, is sent the withdrawal.
    out = g.process(Delta(IPV4_UNICAST, (), x), srcs)
    assert not out.common
    assert [(set(addrs), msgs, withdrawn(w), set(to)) for addrs, msgs, w, to in out.scoped] == [
        (set(), [], x, {A_ADDR})]
    assert g.held.count(g.held_index) == 0 and not g.holders
    # Offered to A again, then a peer's path for X goes to everyone: B
    # holds it too, so its later withdrawal goes to every member.
    g.process(Delta(IPV4_UNICAST, [(LOC, ATTRS, b"", x)]), srcs)
    out = g.process(Delta(IPV4_UNICAST, [(SRC, ATTRS, b"", x)]), srcs)
    assert announced(out.common) == x and not g.holders
    out = g.process(Delta(IPV4_UNICAST, (), x), srcs)
    assert withdrawn(out.common) == x and not out.scoped
    # Held by every member, then offered to A only: B is sent the withdrawal.
    g.process(Delta(IPV4_UNICAST, [(SRC, ATTRS, b"", x)]), srcs)
    out = g.process(Delta(IPV4_UNICAST, [(LOC, ATTRS, b"", x)]), srcs)
    wd = [(set(addrs), withdrawn(w), to) for addrs, _m, w, to in out.scoped if w]
    assert wd == [({A_ADDR}, x, None)]


def test_addpath_group_withdraws_only_paths_it_holds(rib_impl):
    g = group(rib_impl, addpath=True)
    assert g.held is not None and g.paths
    one, two = pk("10.7.0.0/24", ids=[0x10001]), pk("10.7.0.0/24", ids=[0x10002])
    # A path the export rejects (NO_ADVERTISE), then withdrawn: nothing sent.
    rejected = ATTRS + codec_community(0xFFFFFF02)
    out = g.process(Delta(IPV4_UNICAST, [(SRC, rejected, b"", two)], addpath=True), sources())
    assert not out.common
    out = g.process(Delta(IPV4_UNICAST, (), [(SRC, two)], addpath=True), sources())
    assert not out.common
    # An announced path: its withdrawal is sent, once.
    out = g.process(Delta(IPV4_UNICAST, [(SRC, ATTRS, b"", one)], addpath=True), sources())
    assert announced(out.common, True) == one
    out = g.process(Delta(IPV4_UNICAST, (), [(SRC, one + two)], addpath=True), sources())
    assert withdrawn(out.common, True) == one
    out = g.process(Delta(IPV4_UNICAST, (), [(SRC, one)], addpath=True), sources())
    assert not out.common
    g.release_held()
    assert g.held is None


def test_addpath_group_ipv6_long_prefixes_withdrawn_only_when_held(rib_impl):
    """IPv6 paths longer than /96 have no HeldSet key (path_keys): the
    group keeps them apart, and withdraws them exactly as the others."""
    engine = PolicyEngine({})
    chain = engine.chain([], "export", "accept")
    ctx = codec.Context(as4=True, addpath_tx=frozenset({IPV6_UNICAST}))
    g = UpdateGroup(("t6",), IPV6_UNICAST, ctx, engine, chain, PolicyContext("2001:db8::9", 65009, 65000),
                    EBGP, False, 65000, None, ipaddress.ip_address("2001:db8::fe").packed)
    g.members[A] = Member(A, A_ADDR)
    g.attach_held(rib_impl.Rib(2).held, type(rib_impl.Rib(2).held)(2))
    short, host, other = (pk("2001:db8:1::/48", ids=[5]), pk("2001:db8::1/128", ids=[5]),
                          pk("2001:db8::2:0/112", ids=[6]))
    ctx_rx = codec.Context(as4=True, addpath_rx=frozenset({IPV6_UNICAST}))

    def withdrawn6(out):
        return b"".join(codec.parse_update(m[19:], ctx_rx).mp_unreach[2] for m in out.common)

    def announced6(out):
        return b"".join(codec.parse_update(m[19:], ctx_rx).mp_reach[3] for m in out.common)

    # Never sent: nothing to withdraw, short or long.
    out = g.process(Delta(IPV6_UNICAST, (), [(SRC, short + host)], addpath=True), sources())
    assert not out.common
    # Sent the host route and the /112: each withdrawn once, the rest not.
    out = g.process(Delta(IPV6_UNICAST, [(SRC, ATTRS6, NH6, host + other)], addpath=True), sources())
    assert announced6(out) == host + other
    out = g.process(Delta(IPV6_UNICAST, (), [(SRC, short + host)], addpath=True), sources())
    assert withdrawn6(out) == host
    out = g.process(Delta(IPV6_UNICAST, (), [(SRC, host + other)], addpath=True), sources())
    assert withdrawn6(out) == other
    out = g.process(Delta(IPV6_UNICAST, (), [(SRC, other)], addpath=True), sources())
    assert not out.common
    g.release_held()
    assert g.loose is None


# ----------------------------------------------------------------------------- through the daemon

SOME = """
[[defined-sets.prefix-sets]]
name = "some"
prefixes = ["10.9.0.0/16 le 24"%s]

[[policies]]
name = "some"
[[policies.statements]]
name = "some"
conditions = { prefix-set = "some" }
actions = { result = "accept" }
"""
ONLY_SOME = {"export-policy": ["some"], "default-export": "reject"}


def wd_count(nb):
    return nb.counters.received.withdraw_prefix


async def synced(nb, prefix, as_path, paths=False):
    def seen():
        got = nb.received_paths() if paths else nb.received()
        return any((k[0] if paths else k) == prefix and r.as_path == as_path for k, r in got.items())

    await until(seen, what="%s with %s" % (prefix, as_path))


def test_soft_reset_out_withdraws_only_what_the_peer_holds(run, tmp_path):
    """C's export passes 10.9/16 only.  A soft reset out re-sends C its
    table and withdraws nothing (before: every prefix the export rejects);
    after a reload that narrows C's policy, exactly what C held and is now
    rejected is withdrawn."""
    async def main():
        a_addr, c_addr = addr(), addr()
        path = tmp_path / "fastbgp.toml"
        dut = DUT(path=path, extra=SOME % "", neighbors=[neighbor_toml(a_addr, 65001),
                                                         neighbor_toml(c_addr, 65003, **ONLY_SOME)])
        d = await dut.start()
        a, na = await peer(dut, 65001, a_addr)
        c, nc = await peer(dut, 65003, c_addr)
        try:
            await na.wait_established(5)
            await nc.wait_established(5)
            rejected = ["10.1.%d.0/24" % i for i in range(20)]
            a.announce(["10.9.0.0/24"], as_path=[65100, 65101])
            a.announce(rejected + ["10.9.1.0/24"], as_path=[65100])
            await synced(nc, "10.9.1.0/24", [65000, 65001, 65100])
            await synced(nc, "10.9.0.0/24", [65000, 65001, 65100, 65101])
            updates = nc.counters.received.update
            await d.soft_reset(c_addr, "out")
            await until(lambda: d.exporter.queue.idle, what="the re-sent table")
            a.announce(["10.9.2.0/24"], as_path=[65100])
            await synced(nc, "10.9.2.0/24", [65000, 65001, 65100])
            assert wd_count(nc) == 0 and set(nc.received()) == {"10.9.0.0/24", "10.9.1.0/24", "10.9.2.0/24"}
            # Nothing C holds was announced again: one UPDATE, the last one.
            assert nc.counters.received.update == updates + 1
            updates = nc.counters.received.update
            # C's policy now passes 10.9.0.0/24 and the 10.1/16 ones: one
            # withdrawal (10.9.1.0/24 and 10.9.2.0/24) -- two prefixes.
            path.write_text(dut.text(extra=(SOME % "").replace('"10.9.0.0/16 le 24"',
                                                               '"10.9.0.0/24", "10.1.0.0/16 le 24"'),
                                     neighbors=[neighbor_toml(a_addr, 65001),
                                                neighbor_toml(c_addr, 65003, **ONLY_SOME)]))
            await d.reload()
            await until(lambda: "10.1.19.0/24" in nc.received() and "10.9.1.0/24" not in nc.received(),
                        what="C's table under the new policy")
            await until(lambda: d.exporter.queue.idle, what="the re-sent table")
            a.announce(["10.1.99.0/24"], as_path=[65100])
            await synced(nc, "10.1.99.0/24", [65000, 65001, 65100])
            assert wd_count(nc) == 2
            # One UPDATE of withdrawals, one of the 10.1/16 prefixes, the
            # last one; 10.9.0.0/24 (same attributes) not again.
            assert nc.counters.received.update == updates + 3
        finally:
            for sp in (a, c):
                await sp.stop()
            await dut.stop()

    run(main())


def test_source_changing_its_own_best_route_gets_no_withdrawal(run):
    """Split horizon (fastbgp.rib.export, the echo): A changes the route
    whose best path is already its own -- B and C get the new one, A no
    withdrawal (before: one per change, though split horizon had kept our
    route from it).  When the best moves from A to B, B does get one: it
    held A's route from us."""
    async def main():
        a_addr, b_addr, c_addr = addr(), addr(), addr()
        dut = DUT(neighbors=[neighbor_toml(a_addr, 65001), neighbor_toml(b_addr, 65002),
                             neighbor_toml(c_addr, 65003)])
        d = await dut.start()
        speakers = [await peer(dut, asn, x) for asn, x in ((65001, a_addr), (65002, b_addr), (65003, c_addr))]
        (a, na), (b, nb), (c, nc) = speakers
        try:
            for _sp, n in speakers:
                await n.wait_established(5)
            await until(lambda: len({id(g) for g in d.exporter.groups.values() if g.members}) == 1,
                        what="one update group for the three")
            a.announce(["10.5.0.0/24", "10.5.1.0/24"], as_path=[65100])
            await synced(nc, "10.5.1.0/24", [65000, 65001, 65100])
            await synced(nb, "10.5.1.0/24", [65000, 65001, 65100])
            for n in range(3):
                a.announce(["10.5.0.0/24", "10.5.1.0/24"], as_path=[65100] + [65200 + n] * (n + 1))
                await synced(nc, "10.5.1.0/24", [65000, 65001, 65100] + [65200 + n] * (n + 1))
                await synced(nb, "10.5.1.0/24", [65000, 65001, 65100] + [65200 + n] * (n + 1))
            await until(lambda: d.exporter.queue.idle, what="export done")
            assert wd_count(na) == 0 and not na.received()
            # B's path is shorter: the best moves to B, which held A's route.
            b.announce(["10.5.1.0/24"], as_path=[])
            await synced(na, "10.5.1.0/24", [65000, 65002])
            await until(lambda: wd_count(nb) == 1, what="B's echo withdrawal")
            assert "10.5.1.0/24" not in nb.received() and wd_count(na) == 0
        finally:
            for sp, _n in speakers:
                await sp.stop()
            await dut.stop()

    run(main())


def test_scoped_route_withdrawn_only_where_offered(run):
    """A and B share an update group; our route offered to A only is
    withdrawn from A only (before: from B too, which never had it)."""
    async def main():
        a_addr, b_addr = addr(), addr()
        dut = DUT(neighbors=[neighbor_toml(a_addr, 65001), neighbor_toml(b_addr, 65002)])
        d = await dut.start()
        a, na = await peer(dut, 65001, a_addr)
        b, nb = await peer(dut, 65002, b_addr)
        try:
            await na.wait_established(5)
            await nb.wait_established(5)
            assert d.neighbor(a_addr) is not None
            x, sync = "10.5.2.0/24", "10.5.3.0/24"
            await d.announce(ctl.Announce(prefixes=[x], next_hop="192.0.2.7", neighbors=[a_addr]))
            await until(lambda: x in na.received(), what="X at A")
            await d.withdraw(ctl.Announce(prefixes=[x]))
            await until(lambda: x not in na.received(), what="X withdrawn at A")
            await d.announce(ctl.Announce(prefixes=[sync], next_hop="192.0.2.7"))
            await until(lambda: sync in nb.received() and sync in na.received(), what="the sync prefix")
            assert x not in nb.received()
            assert wd_count(na) == 1 and wd_count(nb) == 0
        finally:
            for sp in (a, b):
                await sp.stop()
            await dut.stop()

    run(main())


def test_addpath_peer_not_sent_withdrawals_of_paths_it_never_had(run):
    """C receives every path (ADD-PATH send) of 10.9/16 only: A's paths
    its export rejects are not withdrawn from it (before: each one), and
    when A goes down it is sent the withdrawal of the one path it has."""
    async def main():
        a_addr, b_addr, c_addr = addr(), addr(), addr()
        dut = DUT(extra=SOME % "", neighbors=[
            neighbor_toml(a_addr, 65001), neighbor_toml(b_addr, 65002),
            neighbor_toml(c_addr, 65003, **dict(ONLY_SOME, **{"add-path": {"send": ["ipv4-unicast"]}}))])
        d = await dut.start()
        a, na = await peer(dut, 65001, a_addr)
        b, nb = await peer(dut, 65002, b_addr)
        c, nc = await peer(dut, 65003, c_addr, addpath_receive=["ipv4-unicast"])
        try:
            for n in (na, nb, nc):
                await n.wait_established(5)
            assert d.neighbor(c_addr).addpath_tx == ["ipv4-unicast"]
            rejected = ["10.1.%d.0/24" % i for i in range(10)]
            a.announce(rejected + ["10.9.0.0/24"], as_path=[65100])
            await synced(nc, "10.9.0.0/24", [65000, 65001, 65100], paths=True)
            a.announce(rejected, as_path=[65100, 65101])  # changed, still rejected
            a.withdraw(rejected[:5])
            b.announce(["10.9.1.0/24"], as_path=[65200])
            await synced(nc, "10.9.1.0/24", [65000, 65002, 65200], paths=True)
            assert wd_count(nc) == 0
            await a.stop()
            await until(lambda: len(nc.received_paths()) == 1, what="A's path withdrawn at C")
            b.announce(["10.9.2.0/24"], as_path=[65200])
            await synced(nc, "10.9.2.0/24", [65000, 65002, 65200], paths=True)
            assert wd_count(nc) == 1
        finally:
            for sp in (a, b, c):
                await sp.stop()
            await dut.stop()

    run(main())


def test_addpath_paths_exported_as_before_are_not_sent_again(run):
    """C is sent every path (ADD-PATH send), D the best two (send-max 2),
    of A's and B's 20 prefixes.  A and B announce them again with another
    MED, which an eBGP peer is not sent (RFC 4271 §5.1.3): C and D are sent
    nothing (before: every path again under its id, UpdateGroup.unchanged_paths
    and ranked_delta's rule).  A new AS path still reaches both, under the
    path ids they hold."""
    table = ["10.9.%d.0/24" % i for i in range(20)]
    sentinel = "10.9.200.0/24"

    async def main():
        a_addr, b_addr, c_addr, d_addr = addr(), addr(), addr(), addr()
        dut = DUT(neighbors=[
            neighbor_toml(a_addr, 65001), neighbor_toml(b_addr, 65002),
            neighbor_toml(c_addr, 65003, **{"add-path": {"send": ["ipv4-unicast"]}}),
            neighbor_toml(d_addr, 65004, **{"add-path": {"send": ["ipv4-unicast"], "send-max": 2}})])
        d = await dut.start()
        a, na = await peer(dut, 65001, a_addr)
        b, nb = await peer(dut, 65002, b_addr)
        c, nc = await peer(dut, 65003, c_addr, addpath_receive=["ipv4-unicast"])
        e, ne = await peer(dut, 65004, d_addr, addpath_receive=["ipv4-unicast"])
        speakers = (a, b, c, e)

        def meds(value):
            return all(sorted(r.med for r in d.rib("ipv4-unicast", p)) == [value, value + 1] for p in table)

        try:
            for n in (na, nb, nc, ne):
                await n.wait_established(5)
            a.announce(table, as_path=[65100], med=10)
            b.announce(table, as_path=[65200], med=11)
            await until(lambda: len(nc.received_paths()) == 40 and len(ne.received_paths()) == 40
                        and d.exporter.queue.idle, what="two paths of each prefix at C and D")
            assert all(r.med is None for r in nc.received_paths().values())
            ids = (dict(nc.received_paths()), dict(ne.received_paths()))
            sent = (nc.counters.received.update, ne.counters.received.update)
            a.announce(table, as_path=[65100], med=20)
            b.announce(table, as_path=[65200], med=21)
            await until(lambda: meds(20), what="the new MEDs in the RIB")
            a.announce([sentinel], as_path=[65100])  # anything queued before it comes first
            for n in (nc, ne):
                await synced(n, sentinel, [65000, 65001, 65100], paths=True)
            assert (nc.counters.received.update, ne.counters.received.update) == (sent[0] + 1, sent[1] + 1)
            # A changed AS path is sent, under the same ids.
            a.announce(table[:5], as_path=[65100, 65101], med=20)
            for n, held in zip((nc, ne), ids):
                await synced(n, table[4], [65000, 65001, 65100, 65101], paths=True)
                assert set(n.received_paths()) == set(held) | {k for k in n.received_paths() if str(k[0]) == sentinel}
            assert wd_count(nc) == wd_count(ne) == 0
        finally:
            for sp in speakers:
                await sp.stop()
            await dut.stop()

    run(main())


def test_joiner_not_sent_again_what_its_dump_sent(run):
    """C's join dump waits in the export queue while A's routes enter the
    RIB (their exports queued behind the join): the dump sends them, and
    the queued changes are not sent to C again (before: every prefix
    twice).  B is up too, so A's routes are exported (not only to A)."""
    n = 2000
    table = ["10.%d.%d.0/24" % (i >> 8, i & 255) for i in range(n)]

    async def main():
        a_addr, b_addr, c_addr = addr(), addr(), addr()
        dut = DUT(neighbors=[neighbor_toml(a_addr, 65001), neighbor_toml(b_addr, 65002),
                             neighbor_toml(c_addr, 65003)])
        d = await dut.start()
        a, na = await peer(dut, 65001, a_addr)
        b, nb = await peer(dut, 65002, b_addr)
        c = None
        gate = []

        def hold():
            while not gate:
                yield

        try:
            await na.wait_established(5)
            await nb.wait_established(5)
            await until(lambda: d.exporter.queue.idle and not d.exporter.pending_joins, what="A and B joined")
            d.exporter.queue.submit(hold(), heavy=True)  # export work waits behind this
            c, nc = await peer(dut, 65003, c_addr)
            announced = []
            nc.subscribe_updates(lambda _nb, parsed: announced.append(parsed.n_announced))
            await until(lambda: d.exporter.pending_joins, what="C's join queued")
            a.announce(table, as_path=[])
            await until(lambda: len(d.ribs[(1, 1)]) == n, what="A's routes in the RIB")
            gate.append(True)
            await until(lambda: len(nc.received()) == n and d.exporter.queue.idle, timeout=20,
                        what="the table at C")
            a.announce(["10.200.0.0/24"], as_path=[])
            await until(lambda: "10.200.0.0/24" in nc.received(), what="the last prefix at C")
            assert sum(announced) == n + 1
            assert len(nb.received()) == n + 1
        finally:
            gate.append(True)
            for sp in (a, b, c):
                if sp is not None:
                    await sp.stop()
            await dut.stop()

    run(main())


async def three(asns):
    """The daemon with neighbours A, B, C of ``asns`` (library Speakers),
    sessions up: (dut, daemon, their addresses, [(speaker, neighbour)])."""
    addrs = [addr() for _ in asns]
    dut = DUT(neighbors=[neighbor_toml(x, asn) for x, asn in zip(addrs, asns)])
    d = await dut.start()
    speakers = [await peer(dut, asn, x) for x, asn in zip(addrs, asns)]
    for _sp, n in speakers:
        await n.wait_established(5)
    return dut, d, addrs, speakers


async def stop_all(dut, speakers):
    for sp in speakers:
        if sp is not None:
            await sp.stop()
    await dut.stop()


def test_best_moving_to_a_path_exported_alike_sends_nothing(run):
    """A and B are iBGP peers sending the same route with different
    LOCAL_PREFs; C (eBGP) is sent neither LOCAL_PREF and our address as next
    hop, so both give it the same route.  A withdrawing, coming back, and
    its session going down move the best path between them: C gets no
    UPDATE for any of it (before: one per move); B's withdrawal at the end
    reaches C."""
    prefixes = ["10.6.%d.0/24" % i for i in range(8)]

    async def main():
        dut, d, (a_addr, b_addr, _c), speakers = await three((65000, 65000, 65003))
        (a, _na), (b, _nb), (c, nc) = speakers
        try:
            b.announce(prefixes, as_path=[65100], local_pref=100)
            await synced(nc, prefixes[-1], [65000, 65100])
            a.announce(prefixes, as_path=[65100], local_pref=200)
            await until(lambda: all(best(d, p).source == a_addr for p in prefixes), what="A's paths best")
            await until(lambda: d.exporter.queue.idle, what="export done")
            updates = nc.counters.received.update
            a.withdraw(prefixes[:4])
            await until(lambda: all(best(d, p).source == b_addr for p in prefixes[:4]), what="B's paths best")
            a.announce(prefixes[:4], as_path=[65100], local_pref=200)
            await until(lambda: all(best(d, p).source == a_addr for p in prefixes), what="A's paths best again")
            await a.stop()
            a = None
            await until(lambda: all(best(d, p).source == b_addr for p in prefixes), what="B's paths best")
            await until(lambda: d.exporter.queue.idle, what="export done")
            assert nc.counters.received.update == updates and wd_count(nc) == 0
            assert set(nc.received()) == set(prefixes)
            b.announce(prefixes[2:4], as_path=[65100, 65101], local_pref=100)  # exported otherwise: sent
            await synced(nc, prefixes[3], [65000, 65100, 65101])
            b.withdraw(prefixes[:2])
            await until(lambda: wd_count(nc) == 2, what="B's withdrawal at C")
            assert set(nc.received()) == set(prefixes[2:])
        finally:
            await stop_all(dut, (a, b, c))

    run(main())


def test_best_moving_between_members_exported_alike(run):
    """A and B, two routers of AS 65001, and C share one update group.  The
    best path of A's prefixes moves to B (A withdraws them; MED chose A
    before): C is sent nothing (it holds that very route), A is sent B's
    route (split horizon had kept its own from it) and B the withdrawal of
    the route it held from us, A's."""
    prefixes = ["10.7.%d.0/24" % i for i in range(8)]

    async def main():
        dut, d, (a_addr, b_addr, _c), speakers = await three((65001, 65001, 65003))
        (a, na), (b, nb), (c, nc) = speakers
        try:
            await until(lambda: len({id(g) for g in d.exporter.groups.values() if g.members}) == 1,
                        what="one update group for the three")
            b.announce(prefixes, as_path=[65100], med=20)
            await synced(nc, prefixes[-1], [65000, 65001, 65100])
            a.announce(prefixes, as_path=[65100], med=10)
            await until(lambda: all(best(d, p).source == a_addr for p in prefixes), what="A's paths best")
            await until(lambda: d.exporter.queue.idle, what="export done")
            before = [(n.counters.received.update, wd_count(n)) for _sp, n in speakers]
            a.withdraw(prefixes[:4])
            await until(lambda: all(best(d, p).source == b_addr for p in prefixes[:4]), what="B's paths best")
            await until(lambda: wd_count(nb) == before[1][1] + 4, what="B's withdrawal of A's route")
            await until(lambda: na.counters.received.update > before[0][0], what="B's route at A")
            c.announce(["10.8.0.0/24"], as_path=[65003])  # a marker: A and B get it after the rest
            await until(lambda: "10.8.0.0/24" in nb.received() and "10.8.0.0/24" in na.received(), what="the marker")
            assert (nc.counters.received.update, wd_count(nc)) == before[2]
            assert wd_count(na) == before[0][1]
            assert nb.counters.received.update == before[1][0] + 2  # the withdrawal, the marker
        finally:
            await stop_all(dut, [sp for sp, _n in speakers])

    run(main())


def test_sets_exported_alike_share_their_updates(rib_impl):
    """Attribute sets the group's export makes alike (eBGP drops the MED)
    go out in one UPDATE run, not one per set received; a member's own path
    stays apart (split horizon), and a set exported otherwise too."""
    g = group(rib_impl)
    srcs = two_sources()
    srcs[A] = Source(A, EBGP, peer_as=65001, router_id=10)
    longer = messages.encode_attributes([
        messages.Origin(value=0), messages.AsPath(segments=[messages.Segment(type=2, asns=[65001, 65002])]),
        messages.NextHop(address="192.0.2.1")])
    d = Delta(IPV4_UNICAST, [(X, ATTRS + med(10), b"", pk("10.0.0.0/24")),
                             (SRC, longer, b"", pk("10.0.1.0/24")),
                             (Y, ATTRS + med(20), b"", pk("10.0.2.0/24")),
                             (A, ATTRS + med(30), b"", pk("10.0.3.0/24")),
                             (X, ATTRS + med(40), b"", pk("10.0.4.0/24"))])
    d.fresh = True
    out = g.process(d, srcs)
    assert len(out.common) == 2
    assert announced(out.common[:1]) == pk("10.0.0.0/24", "10.0.2.0/24", "10.0.4.0/24")
    assert announced(out.common[1:]) == pk("10.0.1.0/24")
    assert list(out.by_src) == [A] and announced(out.by_src[A]) == pk("10.0.3.0/24")


def test_route_server_control_community_change_sends_the_others_nothing(run):
    """A route server with path hiding (RFC 7947 §2.3).  Client A tags 4 of
    its 8 prefixes "do not announce to AS 65004" (Euro-IX 0:65004) and then
    untags them: D gets the 4 withdrawals and then the routes again; C,
    whose export of A's paths is the same either way (the control community
    is stripped), gets no UPDATE at all (before: 4 each time).  Where C
    holds a hidden path's alternative (A's tagged 0:65003, B's path sent
    instead), A untagging is sent to C."""
    from test_route_server_policy import RS_AS

    prefixes = ["10.8.%d.0/24" % i for i in range(8)]

    async def main():
        addrs = [addr() for _ in range(4)]
        asns = (65001, 65002, 65003, 65004)
        rs = {"route-server-client": True}
        dut = DUT(asn=RS_AS, glob="[global.route-server]\neuro-ix-communities = true\n",
                  neighbors=[neighbor_toml(x, asn, **rs) for x, asn in zip(addrs, asns)])
        d = await dut.start()
        speakers = [await peer(dut, asn, x) for x, asn in zip(addrs, asns)]
        (a, _na), (b, _nb), (c, nc), (_dd, nd) = speakers
        try:
            for _sp, n in speakers:
                await n.wait_established(5)
            a.announce(prefixes, as_path=[65100])
            await until(lambda: set(nc.received()) == set(prefixes) and set(nd.received()) == set(prefixes),
                        what="C and D hold A's paths")
            await until(lambda: d.exporter.queue.idle, what="export done")
            updates = nc.counters.received.update
            a.announce(prefixes[:4], as_path=[65100], communities=["0:65004"])
            await until(lambda: set(nd.received()) == set(prefixes[4:]), what="D's 4 withdrawn")
            a.announce(prefixes[:4], as_path=[65100])
            await until(lambda: set(nd.received()) == set(prefixes), what="D holds them again")
            await until(lambda: d.exporter.queue.idle, what="export done")
            assert nc.counters.received.update == updates and wd_count(nc) == 0
            # C holds B's path for 2 prefixes (A's hidden from it); A untags: C gets A's.
            b.announce(prefixes[:2], as_path=[65100, 65101])
            a.announce(prefixes[:2], as_path=[65100], communities=["0:65003"])
            await until(lambda: all(nc.received()[p].next_hop == addrs[1] for p in prefixes[:2]),
                        what="C holds B's paths")
            a.announce(prefixes[:2], as_path=[65100])
            await until(lambda: all(nc.received()[p].next_hop == addrs[0] for p in prefixes[:2]),
                        what="C holds A's paths again")
        finally:
            await stop_all(dut, [s for s, _n in speakers])

    run(main())
