"""ADD-PATH send-max (RFC 7911 §5, draft-ietf-idr-add-paths-guidelines
"add-n"): a peer with ADD-PATH send negotiated and ``send-max = N`` gets
the best N paths per prefix, best first by the decision process, with the
path ids that leave the top N withdrawn and those that enter announced.

The ranking (fastbgp.rib.export.PathRanker) is checked on both RIB
implementations; the daemon end to end with library speakers on loopback,
on whichever RIB the daemon selected (run with FASTBGP_NO_EXTENSIONS=1 for
the twin)."""

import asyncio
import ipaddress

import pytest

from fastbgp.rib.attrs import AttrTable
from fastbgp.rib.export import PathRanker, prefix_entries
from fastbgp.wire.as4 import encode_attr, encode_segments
from fastbgp.wire.constants import AS_SEQUENCE

from tests.test_daemon import DUT, addr, neighbor_toml, peer, until


def attrs(path, med=None, lp=None):
    out = encode_attr(0x40, 1, b"\x00")
    out += encode_attr(0x40, 2, encode_segments([(AS_SEQUENCE, list(path))], 4))
    out += encode_attr(0x40, 3, ipaddress.IPv4Address("192.0.2.1").packed)
    if med is not None:
        out += encode_attr(0x80, 4, med.to_bytes(4, "big"))
    if lp is not None:
        out += encode_attr(0x40, 5, lp.to_bytes(4, "big"))
    return out


def entry(text):
    net = ipaddress.ip_network(text)
    return bytes((net.prefixlen,)) + net.network_address.packed[: (net.prefixlen + 7) >> 3]


def build(rib_impl):
    table = AttrTable()
    r = rib_impl.Rib(1, table)
    for pid, (pas, rid, a) in {1: (65001, "1.1.1.1", "10.0.0.1"), 2: (65002, "2.2.2.2", "10.0.0.2"),
                              3: (65003, "3.3.3.3", "10.0.0.3"), 4: (65000, "4.4.4.4", "10.0.0.4")}.items():
        r.add_peer(pid, pas, 65000, rid, a)
    return table, r


def put(table, r, peer_id, prefix, path_id=0, **kw):
    aid = table.intern(attrs(**kw), b"")
    try:
        r.update(peer_id, path_id.to_bytes(4, "big") + entry(prefix), True, aid)
    finally:
        table.release(aid)
    return aid


def test_ranker_orders_by_decision_process(rib_impl):
    table, r = build(rib_impl)
    p = "10.0.0.0/24"
    # Ranks: LOCAL_PREF 200 (peer 4), then AS_PATH length 1 (peer 2), then
    # length 2 from peer 3 (path id 7) and peer 1 -- tie broken by router id.
    a1 = put(table, r, 1, p, path=(65001, 9))
    a2 = put(table, r, 2, p, path=(65002,))
    a3 = put(table, r, 3, p, path_id=7, path=(65003, 8))
    a3b = put(table, r, 3, p, path_id=8, path=(65003, 8, 8, 8))
    a4 = put(table, r, 4, p, path=(65100, 1, 2), lp=200)
    refs = {a: table.refcount(a) for a in (a1, a2, a3, a3b, a4)}
    rk = PathRanker(r)
    e = entry(p)
    assert rk.top(e, 10) == [(4, 0, a4), (2, 0, a2), (1, 0, a1), (3, 7, a3), (3, 8, a3b)]
    assert rk.top(e, 2) == [(4, 0, a4), (2, 0, a2)]
    assert rk.top(e, 1) == [(4, 0, a4)]
    assert rk.top(entry("10.9.0.0/24"), 3) == []
    # The scratch RIB is left empty and the attribute table untouched.
    assert rk.scratch.path_count() == 0
    assert {a: table.refcount(a) for a in refs} == refs
    assert r.path_count() == 5


def test_ranker_follows_peer_changes(rib_impl):
    """A peer re-registered with another router id: the scratch RIB's copy
    of its record is refreshed, so the tie-break follows the RIB's."""
    table, r = build(rib_impl)
    p = "10.1.0.0/24"
    put(table, r, 1, p, path=(65001,))
    put(table, r, 2, p, path=(65002,))
    put(table, r, 3, p, path=(65003,))
    rk = PathRanker(r)
    assert [q[0] for q in rk.top(entry(p), 3)] == [1, 2, 3]
    r.remove_peer(3)
    r.add_peer(3, 65003, 65000, "0.0.0.1", "10.0.0.3")
    put(table, r, 3, p, path=(65003,))
    rk.begin()
    assert [q[0] for q in rk.top(entry(p), 3)] == [3, 1, 2]


def test_prefix_entries():
    packed = b"\x00\x00\x00\x01" + entry("10.0.0.0/24") + b"\x00\x00\x00\x02" + entry("10.0.0.0/24")
    assert prefix_entries(packed, 1, True) == [entry("10.0.0.0/24")]


def _paths(nc):
    """{path id: as_path} the speaker holds for 10.90.0.0/24."""
    return {pid: r.as_path for (p, pid), r in nc.received_paths().items() if str(p) == "10.90.0.0/24"}


@pytest.mark.timeout(60)
def test_daemon_sends_best_two_of_three(run):
    async def main():
        a_addr, b_addr, c_addr, d_addr = addr(), addr(), addr(), addr()
        dut = DUT(neighbors=[neighbor_toml(a_addr, 65001), neighbor_toml(b_addr, 65002),
                             neighbor_toml(c_addr, 65003),
                             neighbor_toml(d_addr, 65004, **{"add-path": {"send": ["ipv4-unicast"], "send-max": 2}})])
        d = await dut.start()
        a, na = await peer(dut, 65001, a_addr)
        b, nb = await peer(dut, 65002, b_addr)
        c, nc_ = await peer(dut, 65003, c_addr)
        for n in (na, nb, nc_):
            await n.wait_established(5)
        # Best: A (shortest AS_PATH), then B, then C.
        a.announce(["10.90.0.0/24"], as_path=[65100])
        b.announce(["10.90.0.0/24"], as_path=[65200, 65201])
        c.announce(["10.90.0.0/24"], as_path=[65300, 65301, 65302])
        await until(lambda: len(d.rib("ipv4-unicast", "10.90.0.0/24")) == 3, what="three paths in the RIB")
        dd, nd = await peer(dut, 65004, d_addr, addpath_receive=["ipv4-unicast"])
        await nd.wait_established(5)
        # The full table on joining: exactly the best two.
        await until(lambda: len(_paths(nd)) == 2, what="two paths at D")
        await asyncio.sleep(0.3)
        got = _paths(nd)
        assert sorted(got.values()) == [[65000, 65001, 65100],
                                        [65000, 65002, 65200, 65201]]
        ids = {tuple(v): k for k, v in got.items()}
        # The best path leaves: its id is withdrawn and C's path enters.
        a.withdraw(["10.90.0.0/24"])
        await until(lambda: sorted(_paths(nd).values()) == [[65000, 65002, 65200, 65201],
                                                           [65000, 65003, 65300, 65301, 65302]],
                    what="A's id withdrawn, C's path announced")
        assert ids[(65000, 65002, 65200, 65201)] in _paths(nd)  # B kept its id
        # A better path from A again: the worst (C) leaves the top two.
        a.announce(["10.90.0.0/24"], as_path=[65100])
        await until(lambda: sorted(_paths(nd).values()) == [[65000, 65001, 65100], [65000, 65002, 65200, 65201]],
                    what="C's id withdrawn, A's back")
        # A change to a path in the top two is re-sent under the same id.
        b.announce(["10.90.0.0/24"], as_path=[65200, 65202])
        await until(lambda: sorted(_paths(nd).values()) == [[65000, 65001, 65100], [65000, 65002, 65200, 65202]],
                    what="B's new attributes")
        assert ids[(65000, 65002, 65200, 65201)] in _paths(nd)
        # A change below the top two sends nothing.
        before = nd.counters.received.update
        c.announce(["10.90.0.0/24"], as_path=[65300, 65309, 65302])
        await until(lambda: d.rib("ipv4-unicast", "10.90.0.0/24") and any(
            r.as_path == [65003, 65300, 65309, 65302] for r in d.rib("ipv4-unicast", "10.90.0.0/24")),
            what="C's change in the RIB")
        await asyncio.sleep(0.3)
        assert nd.counters.received.update == before
        assert len(_paths(nd)) == 2
        # The session of the best path's peer goes down: C's path enters.
        await a.stop()
        await until(lambda: sorted(_paths(nd).values()) == [[65000, 65002, 65200, 65202],
                                                           [65000, 65003, 65300, 65309, 65302]],
                    what="A's path replaced by C's after A went down")
        for s in (b, c, dd):
            await s.stop()
        await dut.stop()

    run(main())


@pytest.mark.timeout(60)
def test_daemon_send_max_zero_sends_every_path(run):
    """send-max = 0 (the default) keeps every path, as before."""
    async def main():
        a_addr, b_addr, c_addr, d_addr = addr(), addr(), addr(), addr()
        dut = DUT(neighbors=[neighbor_toml(a_addr, 65001), neighbor_toml(b_addr, 65002),
                             neighbor_toml(c_addr, 65003),
                             neighbor_toml(d_addr, 65004, **{"add-path": {"send": ["ipv4-unicast"], "send-max": 0}})])
        d = await dut.start()
        speakers = []
        for asn, a_ in ((65001, a_addr), (65002, b_addr), (65003, c_addr)):
            s, n = await peer(dut, asn, a_)
            await n.wait_established(5)
            s.announce(["10.90.0.0/24"], as_path=[asn + 100])
            speakers.append(s)
        await until(lambda: len(d.rib("ipv4-unicast", "10.90.0.0/24")) == 3)
        dd, nd = await peer(dut, 65004, d_addr, addpath_receive=["ipv4-unicast"])
        await nd.wait_established(5)
        await until(lambda: len(_paths(nd)) == 3, what="every path at D")
        for s in speakers + [dd]:
            await s.stop()
        await dut.stop()

    run(main())


@pytest.mark.timeout(60)
def test_daemon_best_n_table_in_several_slices(run):
    """A joining peer's table spans several ranking slices (BEST_N_SLICE):
    every prefix with exactly its best two paths."""
    from fastbgp.daemon.exporter import BEST_N_SLICE

    async def main():
        n = BEST_N_SLICE * 2 + 100
        prefixes = ["10.%d.%d.0/24" % (100 + i // 256, i % 256) for i in range(n)]
        addrs = [addr() for _ in range(3)]
        d_addr = addr()
        dut = DUT(neighbors=[neighbor_toml(a, 65001 + i) for i, a in enumerate(addrs)]
                  + [neighbor_toml(d_addr, 65009, **{"add-path": {"send": ["ipv4-unicast"], "send-max": 2}})])
        d = await dut.start()
        speakers = []
        for i, a in enumerate(addrs):
            s, nbr = await peer(dut, 65001 + i, a)
            await nbr.wait_established(5)
            s.announce(prefixes, as_path=list(range(65100, 65101 + i)))
            speakers.append(s)
        sample = prefixes[:: BEST_N_SLICE // 2] + [prefixes[-1]]
        await until(lambda: all(len(d.rib("ipv4-unicast", p)) == 3 for p in sample), timeout=20,
                    what="three paths for sampled prefixes")
        dd, nd = await peer(dut, 65009, d_addr, addpath_receive=["ipv4-unicast"])
        await nd.wait_established(5)
        await until(lambda: len(nd.received_paths()) == 2 * n, timeout=20, what="two paths per prefix at D")
        per = {}
        for (p, _pid), r in nd.received_paths().items():
            per.setdefault(str(p), []).append(r.as_path[1])
        assert len(per) == n and all(sorted(v) == [65001, 65002] for v in per.values())
        for s in speakers + [dd]:
            await s.stop()
        await dut.stop()

    run(main())


def test_config_check_send_max_needs_send():
    from fastbgp.config.checks import load_config
    from fastbgp.config.errors import ConfigError
    head = '[global]\nasn = 65000\nrouter-id = "192.0.2.1"\n[[neighbors]]\naddress = "192.0.2.2"\npeer-as = 65001\n'
    with pytest.raises(ConfigError) as ei:
        load_config(head + "add-path = { send-max = 2 }\n")
    assert "send-max" in str(ei.value)
    cfg = load_config(head + 'add-path = { send = ["ipv4-unicast"], send-max = 2 }\n')
    assert cfg.neighbors[0].add_path.send_max == 2
