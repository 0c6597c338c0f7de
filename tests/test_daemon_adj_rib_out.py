"""The compact Adj-RIB-Out (fastbgp.rib.export, ``Rib.held``) seen from
peers: a peer is sent the withdrawal of a prefix only when its update group
was sent the prefix -- not for one its export policy rejects, not the
split-horizon echo of a prefix it never got, not the whole table of a
neighbour that goes down.  Library Speakers count what they receive.

Each test synchronises on a later announcement the peer does receive
(one TCP stream: anything sent before it has arrived by then) before it
counts the withdrawals."""

from __future__ import annotations

import pytest

from test_daemon import DUT, addr, neighbor_toml, peer, until

pytestmark = pytest.mark.timeout(120)

# Export policy "some": the prefixes of prefix-set "some" only.
SOME = """
[[defined-sets.prefix-sets]]
name = "some"
prefixes = [%s]

[[policies]]
name = "some"
[[policies.statements]]
name = "some"
conditions = { prefix-set = "some" }
actions = { result = "accept" }
"""


def some(*prefixes):
    return SOME % ", ".join('"%s"' % p for p in prefixes)


ONLY_Q = {"export-policy": ["some"], "default-export": "reject"}


def withdrawn(nb):
    return nb.counters.received.withdraw_prefix


async def synced(nb, prefix, as_path):
    await until(lambda: prefix in nb.received() and nb.received()[prefix].as_path == as_path,
                what="%s with %s" % (prefix, as_path))


def test_no_withdrawal_of_what_export_policy_rejects(run):
    async def main():
        a_addr, b_addr, c_addr = addr(), addr(), addr()
        dut = DUT(extra=some("10.9.0.0/24"), neighbors=[
            neighbor_toml(a_addr, 65001), neighbor_toml(b_addr, 65002),
            neighbor_toml(c_addr, 65003, **ONLY_Q)])
        await dut.start()
        speakers = []
        try:
            for asn, ad in ((65001, a_addr), (65002, b_addr), (65003, c_addr)):
                sp, nb = await peer(dut, asn, ad)
                speakers.append((sp, nb))
                await nb.wait_established(5)
            (a, na), (b, nb_), (c, nc) = speakers
            p, q = "10.1.0.0/24", "10.9.0.0/24"
            a.announce([p, q], as_path=[65100])
            await synced(nc, q, [65000, 65001, 65100])
            assert p not in nc.received()
            # P's best path changes (B's is shorter), goes back to A, then
            # P leaves the Loc-RIB: C, never sent P, is sent nothing of it.
            b.announce([p], as_path=[])
            await synced(na, p, [65000, 65002])
            b.withdraw([p])
            await until(lambda: p not in na.received(), what="P back to A's path (A withdrawn its own)")
            a.withdraw([p])
            await until(lambda: p not in nb_.received(), what="P gone at B")
            a.announce([q], as_path=[])
            await synced(nc, q, [65000, 65001])
            assert withdrawn(nc) == 0
            # What C holds is still withdrawn.
            a.withdraw([q])
            await until(lambda: q not in nc.received(), what="Q withdrawn at C")
            assert withdrawn(nc) == 1
        finally:
            for sp, _nb in speakers:
                await sp.stop()
            await dut.stop()

    run(main())


def test_split_horizon_withdraws_only_what_was_sent(run):
    """A is alone in its update group (its own export policy): a change of
    its own best path is not echoed to it as a withdrawal, since it was
    never sent the prefix; once it was sent another peer's path for it,
    the echo comes."""
    async def main():
        a_addr, b_addr = addr(), addr()
        dut = DUT(extra=some("10.0.0.0/8 le 24"), neighbors=[
            neighbor_toml(a_addr, 65001, **ONLY_Q), neighbor_toml(b_addr, 65002)])
        await dut.start()
        a, na = await peer(dut, 65001, a_addr)
        b, nb = await peer(dut, 65002, b_addr)
        try:
            await na.wait_established(5)
            await nb.wait_established(5)
            p, sync = "10.1.0.0/24", "10.2.0.0/24"
            a.announce([p], as_path=[65100])
            await synced(nb, p, [65000, 65001, 65100])
            a.announce([p], as_path=[])  # the best changes, still A's
            await synced(nb, p, [65000, 65001])
            b.announce([sync], as_path=[])
            await synced(na, sync, [65000, 65002])
            assert withdrawn(na) == 0 and p not in na.received()
            # B's path for P becomes best (A sent a longer one): A gets it;
            # then A's is best again: A is sent the withdrawal of B's.
            a.announce([p], as_path=[65100, 65101])
            b.announce([p], as_path=[])
            await synced(na, p, [65000, 65002])
            b.withdraw([p])
            await until(lambda: p not in na.received(), what="B's path for P withdrawn at A")
            assert withdrawn(na) == 1
        finally:
            for sp in (a, b):
                await sp.stop()
            await dut.stop()

    run(main())


def test_peer_down_withdraws_only_what_was_sent(run):
    """A has 50,000 routes; C's export policy passes 100 of them: when A
    goes down C receives exactly 100 withdrawals (49,900 before)."""
    n = 50_000
    table = ["16.%d.%d.0/24" % (i >> 8, i & 255) for i in range(n)]

    async def main():
        a_addr, c_addr = addr(), addr()
        # 64 + 32 + 4 = the first 100 prefixes of the table.
        dut = DUT(extra=some("16.0.0.0/18 le 24", "16.0.64.0/19 le 24", "16.0.96.0/22 le 24"), neighbors=[
            neighbor_toml(a_addr, 65001), neighbor_toml(c_addr, 65003, **ONLY_Q)])
        d = await dut.start()
        a, na = await peer(dut, 65001, a_addr)
        c, nc = await peer(dut, 65003, c_addr)
        try:
            await na.wait_established(5)
            await nc.wait_established(5)
            a.announce(table, as_path=[])
            rib = d.ribs[(1, 1)]
            await until(lambda: len(rib) == n and len(nc.received()) == 100 and d.exporter.queue.idle, timeout=60,
                        what="A's table in, 100 of it at C")
            await a.stop()
            await until(lambda: len(rib) == 0 and d.exporter.queue.idle and not nc.received(), timeout=60,
                        what="A's routes gone")
            # Anything still queued to C comes before this.
            b, nb = await peer(dut, 65001, a_addr)
            await nb.wait_established(5)
            b.announce(["16.0.1.0/24"], as_path=[65200])
            await synced(nc, "16.0.1.0/24", [65000, 65001, 65200])
            assert withdrawn(nc) == 100
            await b.stop()
        finally:
            for sp in (a, c):
                await sp.stop()
            await dut.stop()

    run(main())
