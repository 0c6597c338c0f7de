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


def test_import_small_updates_bench_counts_every_route(run):
    """bench/import_small_updates.py stays runnable and imports exactly the
    routes it built (every round from an empty RIB)."""
    import argparse
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).resolve().parent.parent / "bench" / "import_small_updates.py"
    spec = importlib.util.spec_from_file_location("import_small_updates", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    ann, _wd, _n = bench.build(2000)
    from fastbgp.wire import codec

    expected = sum(codec.count_prefixes(p.nlri, 1) + (codec.count_prefixes(p.mp_reach[3], 2) if p.mp_reach else 0)
                   for p in (codec.parse_update(b, codec.Context(as4=True)) for b in ann))
    # Session.on_message per UPDATE, and on_updates; --distinct; --cold (the lane memo forgotten between rounds)
    for batch, distinct, cold in ((1, False, False), (256, False, True), (256, True, False)):
        res = run(bench.run(argparse.Namespace(updates=2000, rounds=2, profile=None, batch=batch, distinct=distinct,
                                               cold=cold)))
        assert res["updates"] == len(ann) and res["routes"] == expected
    # --distinct: the same UPDATEs, each with an attribute set of its own, new in every round
    sets = [{codec.parse_update(b, codec.Context(as4=True)).attrs for b in bench.build(2000, distinct=r)[0]}
            for r in (1, 2)]
    assert len(sets[0]) == len(sets[1]) == len(ann) and not sets[0] & sets[1]
    assert len(res["us_per_update"]) == 2 and len(res["importer_us_per_update"]) == 2
    assert all(x > 0 for x in res["us_per_update"] + res["importer_us_per_update"])
