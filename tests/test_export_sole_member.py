"""Exporter.sole_member: new routes from the only member of a family's
update groups are not encoded for anyone (split horizon leaves nobody),
and everything is right once a second peer is up."""

from __future__ import annotations

import pytest

from test_daemon import DUT, addr, neighbor_toml, peer, until

pytestmark = pytest.mark.timeout(60)


def test_one_peer_table_costs_no_export_work(run):
    async def main():
        a_addr, b_addr = addr(), addr()
        dut = DUT(neighbors=[neighbor_toml(a_addr, 65001), neighbor_toml(b_addr, 65002)])
        d = await dut.start()
        try:
            a, na = await peer(dut, 65001, a_addr)
            await na.wait_established(5)
            ex = d.exporter
            await until(lambda: ex.queue.idle, what="the join done")
            await until(lambda: ex.sole_member((1, 1)) is not None, what="A in its update group")
            before = ex.queue.items_run
            a.announce(["10.2.%d.0/24" % i for i in range(100)], as_path=[65001], med=1)
            for i in range(50):  # fifty UPDATEs of their own
                a.announce(["10.3.%d.0/24" % i], as_path=[65001, 65100 + i])
            await until(lambda: d.rib_summary()[0].prefixes == 150, what="150 routes in the RIB")
            assert ex.queue.items_run == before and ex.queue.idle  # nothing encoded, nothing queued
            # A second peer: it gets the whole table, then A's new routes.
            b, nb = await peer(dut, 65002, b_addr)
            await nb.wait_established(5)
            await until(lambda: len(nb.received()) == 150, what="the table at B")
            assert ex.sole_member((1, 1)) is None
            a.announce(["10.4.0.0/24"], as_path=[65001])
            await until(lambda: "10.4.0.0/24" in nb.received(), what="a new route at B")
            # B's own routes go to A (A is no longer alone) and not back to B.
            b.announce(["10.5.0.0/24"], as_path=[65002])
            await until(lambda: "10.5.0.0/24" in na.received(), what="B's route at A")
            assert "10.5.0.0/24" not in nb.received()
            # B leaves: A is alone again; A's routes replacing B's best are
            # not fresh and still take the export path (nothing to send).
            await b.stop()
            await until(lambda: ex.sole_member((1, 1)) is not None, what="A alone again")
            await until(lambda: "10.5.0.0/24" not in na.received(), what="B's route withdrawn at A")
            for s in (a,):
                await s.stop()
        finally:
            await dut.stop()

    run(main())
