"""The per-UPDATE hook flags of the exporter (Exporter.hooks: any group to
export to, any ADD-PATH group, any path-hiding group), which the importer
asks on every received UPDATE instead of scanning the update groups: they
must follow members joining and leaving, or routes would silently not be
exported (or hooks run for nobody)."""

from fastbgp.wire.constants import IPV4_UNICAST

from test_daemon import DUT, addr, neighbor_toml, peer, until


def test_hook_flags_follow_group_membership(run):
    async def main():
        a_addr, c_addr = addr(), addr()
        # A only sends (its export chain exports nothing: no group counts);
        # C receives.
        dut = DUT(neighbors=[neighbor_toml(a_addr, 65001, **{"default-export": "reject"}),
                             neighbor_toml(c_addr, 65003)])
        d = await dut.start()
        ex = d.exporter
        a, na = await peer(dut, 65001, a_addr)
        await na.wait_established(5)
        a.announce(["10.1.0.0/24"], as_path=[65100])
        await until(lambda: d.rib("ipv4-unicast", "10.1.0.0/24"), what="first route imported")
        assert ex.hooks(IPV4_UNICAST) == (False, False, False)
        # C joins after the flags were cached: they must say "export" now.
        c, nc = await peer(dut, 65003, c_addr)
        await nc.wait_established(5)
        await until(lambda: "10.1.0.0/24" in nc.received(), what="table dump to C")
        await until(lambda: ex.hooks(IPV4_UNICAST)[0], what="export flag on")
        a.announce(["10.2.0.0/24"], as_path=[65100])
        await until(lambda: "10.2.0.0/24" in nc.received(), what="an UPDATE after the join exported")
        # C leaves: nothing to export to again.
        await c.stop()
        await until(lambda: not ex.hooks(IPV4_UNICAST)[0], what="export flag off")
        a.announce(["10.3.0.0/24"], as_path=[65100])
        await until(lambda: d.rib("ipv4-unicast", "10.3.0.0/24"), what="imported with nobody to export to")
        # ... and back: the whole table, including what came while it was away.
        c, nc = await peer(dut, 65003, c_addr)
        await nc.wait_established(5)
        await until(lambda: {"10.1.0.0/24", "10.2.0.0/24", "10.3.0.0/24"} <= set(nc.received()),
                    what="C has all three routes")
        a.announce(["10.4.0.0/24"], as_path=[65100])
        await until(lambda: "10.4.0.0/24" in nc.received(), what="exported after the rejoin")
        for s in (a, c):
            await s.stop()
        await dut.stop()

    run(main())
