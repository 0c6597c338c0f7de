"""fastbgp loadtest: scenario parsing, generation correctness (generated
UPDATEs decoded with the codec and compared prefix by prefix), the compiled
helpers, and end-to-end runs on loopback against a fastbgp Speaker
pass-through target (127.0.0.x)."""

import asyncio
import functools
import ipaddress
import json
import struct
import time

import msgspec
import pytest

from fastbgp.wire import as4, codec  # noqa: E402
from fastbgp.wire.types import Context  # noqa: E402
from fastbgp.loadtest import cli, gen, generator as G, report as R, scenario as S  # noqa: E402
from fastbgp.loadtest import runner  # noqa: E402
from fastbgp.loadtest.selftarget import PassThroughTarget  # noqa: E402
from fastbgp.testing import loops  # noqa: E402

# ---------------------------------------------------------------- scenario files


GOOD = """
name = "t"
[target]
address = "192.0.2.1"
asn = 65000
[peers]
count = 4
address = "192.0.2.10"
[table]
prefixes = 1000
lengths = "24:60,23:40"
[monitor]
address = "192.0.2.3"
[[phases]]
kind = "announce"
rate = 1000
[[phases]]
kind = "flap"
count = 2
"""


def test_scenario_parses():
    sc = S.loads(GOOD)
    assert sc.peers.count == 4 and sc.table.prefixes == 1000
    assert [p.kind for p in S.phases_of(sc)] == ["announce", "flap"]
    assert S.length_weights(sc.table.lengths, "ipv4") == {24: 60.0, 23: 40.0}


@pytest.mark.parametrize("text, path, words", [
    ('[peers]\ncount = "ten"', "peers.count", "expected int, got \"ten\""),
    ('[peers]\ncuont = 3', "peers.cuont", "unknown field"),
    ('[table]\nfamily = "ipv5"', "table.family", "ipv5"),
    ('[[phases]]\nkind = "announce"\nrate = -1', "phases[0].rate", "must be >= 0"),
    ('[table]\nlengths = "24:x"', "table.lengths", "bad length"),
    ('[table]\nlengths = "40"', "table.lengths", "outside 1..32"),
    ('[table]\ncommunities = ["65000"]', "table.communities[0]", "asn:value"),
    ('[table]\nas-path = [65000]', "table.as-path[0]", "target's own ASN"),
    ('[peers]\ncount = 3', "peers.address", "required with more than one peer"),
    ('[peers]\nhold-time = 2', "peers.hold-time", "RFC 4271"),
    ('[peers]\nfour-octet-as = false\nasn = 70000', "peers.four-octet-as", "2-octet"),
    ('slice = "3/2"', "slice", "1 <= i <= n"),
    ('[table]\nprefixes = 10000000\nlengths = "16"', "table.lengths", "do not fit"),
    ('[monitor]\naddress = "2001:db8::1"', "monitor.address", "family"),
])
def test_scenario_errors_name_the_field(text, path, words):
    base = '[target]\naddress = "192.0.2.1"\nasn = 65000\n'
    with pytest.raises(S.ScenarioError) as ei:
        S.loads(base + text if text.startswith("[") else text + "\n" + base)
    assert any(p == path and words in m for p, m in ei.value.errors), ei.value.errors


def test_scenario_toml_syntax_and_missing_target():
    with pytest.raises(S.ScenarioError, match="TOML syntax"):
        S.loads("[peers\ncount=1")
    with pytest.raises(S.ScenarioError) as ei:
        S.loads("")
    assert {p for p, _m in ei.value.errors} == {"target.address", "target.asn"}


def test_cli_flags_build_the_same_scenario(tmp_path):
    import argparse

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    cli.add_parser(sub)
    args = parser.parse_args(["loadtest", "--target", "192.0.2.1", "--target-as", "65000", "--peers", "10",
                              "--peer-address", "192.0.2.10", "--prefixes", "100000", "--monitor", "192.0.2.3",
                              "--scenario", "flap", "--count", "3", "--rate", "5000", "--two-octet-as"])
    sc = cli.build_scenario(args)
    assert (sc.target.address, sc.target.asn, sc.peers.count, sc.table.prefixes, sc.monitor.address) == \
        ("192.0.2.1", 65000, 10, 100000, "192.0.2.3")
    assert sc.peers.four_octet_as is False
    kinds = {p.kind: p for p in sc.phases}
    assert kinds["flap"].count == 3 and kinds["announce"].rate == 5000
    # A -c file with flags on top.
    f = tmp_path / "s.toml"
    f.write_text(GOOD)
    args = parser.parse_args(["loadtest", "-c", str(f), "--peers", "2"])
    sc = cli.build_scenario(args)
    assert sc.peers.count == 2 and sc.name == "t"
    # Errors name the flag when there is no file.
    args = parser.parse_args(["loadtest", "--target", "192.0.2.1", "--target-as", "65000", "--peers", "0"])
    with pytest.raises(S.ScenarioError, match=r"peers.count \(--peers\): must be >= 1"):
        cli.build_scenario(args)


# ---------------------------------------------------------------- generation


def decode_all(stream, ctx=Context(), family="ipv4"):
    """(announced keys, withdrawn keys, attribute blocks, path ids, n messages)."""
    width = 32 if family == "ipv4" else 128
    ann, wd, attrs, pids = [], [], set(), set()
    ap = bool(ctx.addpath_rx)
    n = 0
    for mtype, body in codec.MessageReader(ctx.max_message_len).feed(stream.buf):
        assert mtype == 2
        n += 1
        u = codec.parse_update(body, ctx, strict=True)
        nl = u.nlri if family == "ipv4" else (u.mp_reach[3] if u.mp_reach else b"")
        w = u.withdrawn if family == "ipv4" else (u.mp_unreach[2] if u.mp_unreach else b"")
        if ap:
            for pid, _a, _l in codec.unpack_prefixes(nl, 1 if family == "ipv4" else 2, True):
                pids.add(pid)
        ann += gen.split_keys(nl, width, ap)
        wd += gen.split_keys(w, width, ap)
        if nl:
            attrs.add(u.attrs)
            assert u.n_announced == len(gen.split_keys(nl, width, ap))
    return ann, wd, attrs, pids, n


def reference_keys(table, family, start=None):
    """The prefixes a table must hold, computed independently in Python:
    draw lengths with the same xorshift, per-length counters."""
    lut = G.lut_for(S.length_weights(table.lengths, family))
    width = 32 if family == "ipv4" else 128
    base = int(ipaddress.ip_address(table.base or G.DEFAULT_BASE[family]))
    mask = (1 << 64) - 1
    s = (table.seed * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) & mask or 1
    cnt = dict(start or {})
    out = []
    for _ in range(table.prefixes):
        s ^= s >> 12
        s ^= (s << 25) & mask
        s ^= s >> 27
        r = (s * 0x2545F4914F6CDD1D) & mask
        plen = lut[r >> 52]
        c = cnt.get(plen, 0)
        cnt[plen] = c + 1
        addr = base + (c << (width - plen))
        nb = (plen + 7) // 8
        out.append(bytes((plen,)) + addr.to_bytes(width // 8, "big")[:nb])
    return out


PEER0 = G.PeerInfo(0, 64512, "192.0.2.10", True)


@pytest.mark.parametrize("family, lengths, per_group", [
    ("ipv4", "24", 100), ("ipv4", "dfz", 1), ("ipv4", "dfz", 7), ("ipv6", "dfz", 50), ("ipv6", "48", 1000),
])
def test_generated_updates_decode_to_the_table(family, lengths, per_group):
    t = S.Table(prefixes=20_000, family=family, lengths=lengths, per_group=per_group,
                next_hop="self" if family == "ipv4" else "2001:db8::10", communities=["65000:1"],
                large_communities=["65000:1:2"], community_count=2)
    plan = G.TablePlan(t)
    st = plan.stream(PEER0, G.Encoding())
    ann, wd, attrs, _p, n = decode_all(st, family=family)
    assert ann == reference_keys(t, family)
    assert st.n_prefixes == len(ann) == 20_000 and not wd and n == st.n_messages
    # Every group is a distinct attribute set, and each UPDATE is one group.
    assert len(attrs) == (20_000 + per_group - 1) // per_group
    assert sorted(plan.keys(0)) == sorted(ann)
    # Attributes carry what was asked for, AS_PATH starts with the peer's AS.
    a = dict((t_, v) for _f, t_, v in as4.split_attrs(next(iter(attrs))))
    path = as4.decode_segments(a[2], 4)[0][1]
    assert path[0] == 64512 and len(path) == 3 and path[1] == 64496
    assert 65000 << 16 | 1 in struct.unpack(">%dI" % (len(a[8]) // 4), a[8])
    assert 32 in a
    if family == "ipv4":
        assert a[3] == ipaddress.ip_address("192.0.2.10").packed


def test_lengths_follow_the_distribution():
    t = S.Table(prefixes=100_000, lengths="24:50,22:30,20:20")
    ks = G.TablePlan(t).keys(0)
    share = {ln: sum(1 for k in ks if k[0] == ln) / len(ks) for ln in (24, 22, 20)}
    assert abs(share[24] - 0.5) < 0.01 and abs(share[22] - 0.3) < 0.01 and abs(share[20] - 0.2) < 0.01


def test_two_octet_encoding_uses_as_trans_and_as4_path():
    t = S.Table(prefixes=500, as_path=[4200000001, 64500])
    plan = G.TablePlan(t)
    st = plan.stream(G.PeerInfo(0, 64512, "192.0.2.10", True), G.Encoding(as4=False))
    ctx = Context(as4=False)
    ann, _w, attrs, _p, _n = decode_all(st, ctx)
    assert ann == reference_keys(t, "ipv4")
    # parse_update merges AS4_PATH back (RFC 6793 §4.2.3): the real path.
    for blk in attrs:
        a = dict((t_, v) for _f, t_, v in as4.split_attrs(blk))
        assert as4.decode_segments(a[2], 4)[0][1] == [64512, 4200000001, 64500]
    raw = st.messages()[0]
    assert b"\x5b\xa0" in raw  # AS_TRANS (23456) on the wire


def test_addpath_and_cap():
    t = S.Table(prefixes=3000, path_id=7, max_per_update=50)
    plan = G.TablePlan(t)
    st = plan.stream(PEER0, G.Encoding(addpath=True, cap=50))
    ctx = Context(addpath_rx=frozenset([(1, 1)]))
    ann, _w, _a, pids, n = decode_all(st, ctx)
    assert ann == reference_keys(t, "ipv4") and pids == {7}
    assert n == 3000 // 50  # per_group 100 is a multiple of the cap
    wd = plan.withdraw_stream(PEER0, G.Encoding(addpath=True), 1000)
    _a2, wkeys, _x, _y, _m = decode_all(wd, ctx)
    assert wkeys == ann[:1000] and wd.n_prefixes == 1000


def test_extended_messages_are_bigger():
    t = S.Table(prefixes=50_000, per_group=50_000)
    plan = G.TablePlan(t)
    big = plan.stream(PEER0, G.Encoding(maxlen=65535))
    small = plan.stream(PEER0, G.Encoding())
    assert big.n_messages * 10 < small.n_messages
    ann, *_ = decode_all(big, Context(extended_message=True))
    assert ann == reference_keys(t, "ipv4")


def test_overlap_and_disjoint_ranges():
    def keys_of(overlap, i):
        plan = G.TablePlan(S.Table(prefixes=4000, overlap=overlap, lengths="dfz"))
        return set(plan.keys(plan.table_id(i)))

    assert keys_of(1.0, 0) == keys_of(1.0, 3)
    a, b, c = keys_of(0.0, 0), keys_of(0.0, 1), keys_of(0.0, 2)
    assert len(a) == len(b) == 4000 and not (a & b) and not (b & c)
    h0, h1 = keys_of(0.5, 0), keys_of(0.5, 1)
    assert 0.4 < len(h0 & h1) / 4000 < 0.6


def test_shared_stream_patched_per_session():
    t = S.Table(prefixes=5000, per_group=10)
    plan = G.TablePlan(t)
    p1 = G.PeerInfo(1, 64999, "192.0.2.77", True)
    shared = plan.stream(PEER0, G.Encoding())
    assert plan.stream(p1, G.Encoding()) is shared  # one encoding for both
    asn, nh = plan.patch_values(p1, G.Encoding())
    chunks = []
    prev = 0
    for b in shared.bounds(8192):
        chunks.append(bytes(shared.chunk(prev, b, asn, nh)))
        prev = b
    # The same as encoding from scratch with peer 1's values.
    fresh = G.TablePlan(t)
    fresh._streams.clear()
    ref = G.TablePlan(t).stream(p1, G.Encoding())
    assert b"".join(chunks) == ref.buf
    # Peer 0 gets views of the shared buffer, no copies.
    a0, n0 = plan.patch_values(PEER0, G.Encoding())
    assert isinstance(shared.chunk(0, 1, a0, n0), memoryview)


def test_chunks_end_on_message_boundaries():
    st = G.TablePlan(S.Table(prefixes=20000, lengths="dfz", per_group=3)).stream(PEER0, G.Encoding())
    ends = set(memoryview(st.ends).cast("q"))
    for b in st.bounds(10_000):
        assert st.start(b) in ends
    assert st.bounds(10_000)[-1] == st.n_messages


def test_address_space_exhaustion_is_an_error():
    with pytest.raises(ValueError, match="address space"):
        G.TablePlan(S.Table(prefixes=300, lengths="8")).stream(PEER0, G.Encoding())


def test_skipper_frames_any_split():
    msgs = [codec.build_open(65000, 90, 1), codec.KEEPALIVE] + \
        G.TablePlan(S.Table(prefixes=3000)).stream(PEER0, G.Encoding()).messages() + \
        [codec.build_notification(6, 2, b"\x03bye"), codec.KEEPALIVE]
    data = b"".join(msgs)
    for step in (1, 7, 19, 4096, len(data)):
        sk = gen.Skipper()
        others = []
        for i in range(0, len(data), step):
            others += list(sk.feed(data[i : i + step]))
        assert [t for t, _b in others] == [1, 3]
        assert others[1][1] == b"\x06\x02\x03bye"
        assert sk.updates == len(msgs) - 4 and sk.keepalives == 2 and sk.octets == len(data)
    with pytest.raises(ValueError):
        gen.Skipper().feed(b"\x00" * 19)


def test_find_range_and_split_keys():
    packed = bytes([24, 198, 18, 1, 32, 198, 19, 0, 9, 24, 10, 0, 0, 15, 198, 19])
    assert gen.find_range(packed, 32, False, bytes([198, 18, 0, 0]), 15) == [bytes([24, 198, 18, 1]),
                                                                               bytes([32, 198, 19, 0, 9]),
                                                                               bytes([15, 198, 18])]
    assert gen.find_range(bytes([24, 10, 0, 0]), 32, False, bytes([198, 18, 0, 0]), 15) is None
    # Host bits past the length do not matter (RFC 4271 §4.3).
    assert gen.split_keys(bytes([23, 10, 0, 1])) == [bytes([23, 10, 0, 0])]
    assert gen.packed_offset(packed, 2) == 9


@pytest.mark.skipif(gen.IMPLEMENTATION != "cython", reason="a speed floor of the compiled generator")
def test_generator_rate_into_discarding_sink():
    """The bar is >= 5M prefixes/s (bench/test_loadtest_bench.py measures
    it properly); here only a sanity floor that holds on slow CI."""
    t0 = time.perf_counter()
    plan = G.TablePlan(S.Table(prefixes=1_000_000, per_group=100))
    st = plan.stream(PEER0, G.Encoding())
    sink = G.DiscardSink()
    prev = 0
    for b in st.bounds():
        sink.writelines([st.chunk(prev, b)])
        prev = b
    dt = time.perf_counter() - t0
    assert sink.octets == st.octets and st.n_prefixes == 1_000_000
    assert 1_000_000 / dt > 1_000_000


# ---------------------------------------------------------------- loopback runs


# asyncio only (the loopback runs are long); a generous hang guard.
run = functools.partial(loops.run, timeout=120)


async def _run_against_self(peers=3, table=None, monitor=None, scen=None, peer_kw=None, target_kw=None,
                            nb_kw=None, monitor_on=True):
    tgt = await PassThroughTarget(**(target_kw or {})).start()
    for i in range(peers):
        tgt.add_peer("127.0.1.%d" % (i + 1), 64512 + i, **(nb_kw or {}))
    if monitor_on:
        tgt.add_monitor("127.0.2.1", 65534)
    raw = {"target": {"address": "127.0.0.1", "asn": 65000, "port": tgt.port},
           "peers": dict({"count": peers, "address": "127.0.1.1"}, **(peer_kw or {})),
           "table": dict({"prefixes": 5000}, **(table or {})),
           "monitor": dict({"address": "127.0.2.1" if monitor_on else None, "settle": 0.2, "timeout": 20},
                           **(monitor or {})),
           "progress": False}
    raw.update(scen or {})
    sc = S.from_dict(raw)
    try:
        rep = await runner.run(sc)
    finally:
        await tgt.stop()
    return rep, tgt


def _phase(rep, name, cycle=0):
    return next(p for p in rep.phases if p.name == name and p.cycle == cycle)


def test_blast_and_withdraw_storm_counts():
    rep, _t = run(_run_against_self(3, {"overlap": 0.0}, scen={"scenario": "withdraw"}))
    assert rep.totals.established == 3 and rep.totals.hold_expired == 0 and not rep.errors
    ann = _phase(rep, "announce")
    assert ann.expected == ann.received == ann.sent_prefixes == 15_000 and not ann.timed_out
    assert ann.converge_time is not None and ann.converge_rate > 0
    assert ann.canaries.seen >= 1 and ann.canaries.median < 5
    wd = _phase(rep, "withdraw-storm")
    assert wd.expected == wd.received == 15_000 and not wd.timed_out
    assert rep.monitor.exact is False and rep.monitor.announced == 15_000
    assert [p["sent_prefixes"] for p in rep.peers] == [5000] * 3


def test_exact_tracking_with_overlap_and_workers():
    rep, _t = run(_run_against_self(4, {"overlap": 0.5, "lengths": "dfz"}, scen={"workers": 2}))
    ann = _phase(rep, "announce")
    keys = set()
    plan = G.TablePlan(S.Table(prefixes=5000, overlap=0.5, lengths="dfz"))
    for i in range(4):
        keys.update(plan.keys(plan.table_id(i)))
    assert rep.monitor.exact and ann.expected == len(keys) == rep.monitor.present
    assert ann.received == 20_000 and not ann.timed_out
    assert len(rep.peers) == 4 and rep.totals.established == 4


def test_paced_rate_is_accurate():
    rate = 8000.0
    rep, _t = run(_run_against_self(2, {"prefixes": 8000}, scen={"phases": [{"kind": "announce", "rate": rate, "burst": 400}]}))
    ph = rep.phases[-1]
    # Bursts leave at (prefixes before them) / rate: the last one at
    # (total - burst per peer * peers) / rate.
    ideal = (16000 - 400 * 2) / rate
    assert abs(ph.send_time - ideal) / ideal < 0.10, (ph.send_time, ideal)
    assert ph.received == 16000 and not ph.timed_out
    # Sent counts follow the rate on the timeline too (no early bursts).
    mid = [row for row in rep.timeline if ph.start + 0.5 < row[0] < ph.start + ideal - 0.5]
    for row in mid:
        assert row[1] <= (row[0] - ph.start) * rate + 2 * 400 + 1000


def test_prefix_flaps():
    rep, _t = run(_run_against_self(2, {"overlap": 0.0}, scen={"phases": [
        {"kind": "announce"}, {"kind": "flap", "count": 3, "interval": 0.1, "prefixes": 1000}]}))
    cycles = [p for p in rep.phases if p.name.startswith("flap")]
    assert len(cycles) == 6
    for p in cycles:
        assert p.expected == 2000 and p.received == 2000 and not p.timed_out
    assert rep.monitor.announced == 10_000 + 3 * 2000 and rep.monitor.withdrawn == 3 * 2000


def test_session_flaps():
    rep, tgt = run(_run_against_self(3, {"overlap": 0.0}, target_kw={"track": True, "hold_time": 30},
                                     nb_kw={"idle_hold_time": 0.1, "damp_peer_oscillations": False},
                                     scen={"phases": [{"kind": "announce"},
                                                      {"kind": "session-flap", "count": 2, "interval": 0.2,
                                                       "fraction": 0.34}]}))
    downs = [p for p in rep.phases if p.kind == "session-down"]
    ups = [p for p in rep.phases if p.name.endswith("re-announce")]
    assert len(downs) == 2 and len(ups) == 2
    for d in downs:
        assert d.sessions == 2 and d.received == 10_000  # the flapped peers' routes withdrawn
    for u in ups:
        assert u.received == 10_000 and not u.timed_out
    assert rep.totals.established == 3
    assert sorted(p["drops"] for p in rep.peers) == [0, 2, 2]


def test_two_octet_addpath_ipv6_over_ipv4():
    rep, _t = run(_run_against_self(1, {"family": "ipv6", "next-hop": "2001:db8::10"},
                                    peer_kw={"four-octet-as": False, "addpath": True},
                                    nb_kw={"families": ["ipv6-unicast"], "four_octet_as": True,
                                           "addpath_receive": True}))
    ann = _phase(rep, "announce")
    assert ann.received == 5000 and not ann.timed_out
    assert rep.peers[0]["encoding"] == [False, True, 4096, 0]


def test_ipv6_transport():
    async def main():
        tgt = await PassThroughTarget(address="::1").start()
        nb = tgt.add_peer("::1", 64512, families=["ipv6-unicast"])
        got = []
        nb.subscribe_updates(lambda n, u: got.append(u.n_announced))
        sc = S.from_dict({"target": {"address": "::1", "asn": 65000, "port": tgt.port},
                          "peers": {"count": 1, "address": "::1"},
                          "table": {"family": "ipv6", "prefixes": 3000}, "progress": False,
                          "phases": [{"kind": "announce"}, {"kind": "hold", "duration": 0.3}]})
        try:
            rep = await runner.run(sc)
        finally:
            await tgt.stop()
        return rep, sum(got)

    rep, got = run(main())
    assert got == 3000 and rep.totals.established == 1
    assert rep.phases[1].sent_prefixes == 3000 and rep.phases[1].converged is None  # no monitor


def test_md5_sessions():
    from fastbgp.session import transport

    import socket as _s
    probe = _s.socket()
    try:
        transport.set_md5(probe, "127.0.0.1", "x")
    except OSError:
        pytest.skip("TCP MD5 not available here")
    finally:
        probe.close()
    rep, _t = run(_run_against_self(1, peer_kw={"md5-password": "s3cret"}, nb_kw={"md5_password": "s3cret"},
                                    monitor_on=False))
    assert rep.totals.established == 1 and rep.phases[-1].sent_prefixes == 5000


def test_wrong_target_as_is_reported():
    async def main():
        tgt = await PassThroughTarget().start()
        tgt.add_peer("127.0.1.1", 64512)
        sc = S.from_dict({"target": {"address": "127.0.0.1", "asn": 65099, "port": tgt.port},
                          "peers": {"address": "127.0.1.1", "establish-timeout": 1.5}, "progress": False})
        try:
            return await runner.run(sc)
        finally:
            await tgt.stop()

    rep = run(main())
    assert rep.totals.established == 0
    assert any("expected 65099" in e for e in rep.errors), rep.errors


def test_report_json_merge_and_plot(tmp_path):
    rep, _t = run(_run_against_self(2, {"overlap": 0.0}))
    p = tmp_path / "a.json"
    R.write_json(rep, str(p))
    data = json.loads(p.read_text())
    assert data["scenario"]["peers"]["count"] == 2 and data["phases"][1]["kind"] == "announce"
    assert data["phases"][1]["received"] == 10_000 and data["totals"]["sent_prefixes"] == 10_000
    back = R.read_json(str(p))
    assert back == msgspec.json.decode(msgspec.json.encode(rep), type=R.Report)
    # Two slices merge: sums add up, monitor figures come from the one that had it.
    a = msgspec.structs.replace(back, slices=["1/2"])
    b = msgspec.structs.replace(back, slices=["2/2"], started_epoch=back.started_epoch + 1.0,
                                monitor=R.MonitorFigures(),
                                peers=[dict(x, index=x["index"] + 2) for x in back.peers])
    m = R.merge([a, b])
    assert m.totals.sent_prefixes == 20_000 and m.totals.peers == 4 and m.slices == ["1/2", "2/2"]
    assert m.monitor.announced == back.monitor.announced
    ph = m.phases[1]
    assert ph.sent_prefixes == 20_000 and ph.sessions == 4
    assert ph.start == back.phases[1].start and ph.send_done == pytest.approx(back.phases[1].send_done + 1.0)
    assert [x["index"] for x in m.peers] == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="different scenarios"):
        R.merge([a, msgspec.structs.replace(b, scenario=dict(b.scenario, name="other"))])
    # The CLI merge writes the merged report.
    pb = tmp_path / "b.json"
    R.write_json(b, str(pb))
    out = tmp_path / "m.json"
    assert cli.standalone(["loadtest", "merge", str(p), str(pb), "-o", str(out)]) == 0
    assert json.loads(out.read_text())["totals"]["peers"] == 4
    why = R.plot(rep, str(tmp_path / "p.png"))
    if why is None:
        assert (tmp_path / "p.png").stat().st_size > 1000
    else:
        assert "matplotlib" in why


def _write_rib(path, peers, n):
    from fastbgp.mrt import writer as mrt_writer

    def routes():
        for i in range(n):
            prefix = "20.%d.%d.0/24" % (i >> 8, i & 255)
            paths = []
            for pi, (_rid, ip, asn) in enumerate(peers):
                if i % (pi + 1) == 0:
                    a = as4.encode_attr(0x40, 1, b"\x00") + \
                        as4.encode_attr(0x40, 2, as4.encode_segments([(2, [asn, 64496 + (i % 7)])], 4)) + \
                        as4.encode_attr(0x40, 3, ipaddress.ip_address(ip).packed)
                    paths.append((pi, a, None))
            yield prefix, paths

    with mrt_writer.MrtWriter(str(path)) as w:
        w.write_rib(peers, routes(), timestamp=1_700_000_000)


def test_replay_rib_per_peer(tmp_path):
    f = tmp_path / "rib.mrt"
    _write_rib(f, [("192.0.2.101", "192.0.2.101", 64601), ("192.0.2.102", "192.0.2.102", 64602)], 3000)
    rep, _t = run(_run_against_self(2, scen={"replay": {"file": str(f)}}))
    ann = _phase(rep, "announce")
    assert rep.monitor.exact and ann.expected == 3000 and rep.monitor.present == 3000
    assert ann.received == 3000 + 1500 and not ann.timed_out
    assert sorted(p["sent_prefixes"] for p in rep.peers) == [1500, 3000]


def test_replay_updates_with_original_pacing(tmp_path):
    from fastbgp.mrt import writer as mrt_writer

    f = tmp_path / "upd.mrt"
    attrs = as4.encode_attr(0x40, 1, b"\x00") + as4.encode_attr(0x40, 2, as4.encode_segments([(2, [64601])], 4)) + \
        as4.encode_attr(0x40, 3, bytes([192, 0, 2, 101]))
    with mrt_writer.MrtWriter(str(f)) as w:
        for k in range(5):
            nl = b"".join(bytes([24, 21, k, j]) for j in range(200))
            for m in codec.pack_updates(attrs, nl):
                w.write_update(m, "192.0.2.101", 64601, "192.0.2.1", 65000, timestamp=1_700_000_000 + k * 0.25)
        for m in codec.pack_withdraws(b"".join(bytes([24, 21, 0, j]) for j in range(200))):
            w.write_update(m, "192.0.2.101", 64601, "192.0.2.1", 65000, timestamp=1_700_000_001.25)
    rep, _t = run(_run_against_self(1, scen={"replay": {"file": str(f), "speed": 1.0}}))
    ann = _phase(rep, "announce")
    assert ann.expected == 800 and rep.monitor.present == 800 and rep.monitor.withdrawn == 200
    assert 1.0 < ann.send_time < 1.6  # the original 1.25 s of spacing


@pytest.mark.slow
def test_thousand_sessions_held_without_hold_expiry(tmp_path):
    """1,000 emulated sessions from one process, Established and held ~30 s
    with a 9 s hold time while each announces 500 prefixes; the target
    (a fastbgp Speaker in its own process) must not expire any of them and
    none of ours may expire.  The 5-minute hold is bench/loadtest_targets.py
    --hold-minutes 5."""
    import multiprocessing

    n = 1000
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_target_process, args=(child, n, 9), daemon=True)
    proc.start()
    try:
        port = parent.recv()
        sc = S.from_dict({"target": {"address": "127.0.0.1", "asn": 65000, "port": port},
                          "peers": {"count": n, "address": "127.0.10.1", "hold-time": 9, "establish-timeout": 60,
                                    "connect-concurrency": 100},
                          "table": {"prefixes": 500, "overlap": 0.0}, "progress": False,
                          "phases": [{"kind": "announce"}, {"kind": "hold", "duration": 30}]})
        rep = asyncio.run(runner.run(sc))
        parent.send("report")
        tgt = parent.recv()
    finally:
        proc.join(30)
        if proc.is_alive():
            proc.terminate()
    assert rep.totals.established == n, rep.errors
    assert rep.totals.hold_expired == 0 and rep.totals.drops == 0 and rep.totals.notifications_received == 0
    assert all(p["keepalives_sent"] >= 30 // 3 for p in rep.peers)
    assert rep.totals.sent_prefixes == n * 500
    assert rep.totals.max_tick_lag < 1.0
    assert tgt["established"] == n and not tgt["bad_drops"], tgt["bad_drops"][:5]
    assert tgt["received"] == n * 500


def _target_process(conn, n, hold):
    from fastbgp.session.fsm import Reason, State
    from fastbgp.session.speaker import NeighborConfig, Speaker

    async def main():
        sp = Speaker(65000, "192.0.2.250", listen=[("127.0.0.1", 0)])
        await sp.start()
        stats = {"established": 0, "bad_drops": [], "received": 0, "closed": 0}
        stopping = []

        def changed(nb, old, new, reason):
            if new is State.ESTABLISHED:
                stats["established"] += 1
            elif old is State.ESTABLISHED:
                stats["closed"] += 1
                if reason is not Reason.NOTIFICATION_RECEIVED and not stopping:
                    # Anything but the tester's Cease at the end (hold timer
                    # expiry etc.); sessions our own stop ends are not drops.
                    stats["bad_drops"].append("%s %s" % (nb.address, reason.value))

        def counted(nb, u):
            stats["received"] += u.n_announced

        sp.subscribe(changed)
        for i in range(n):
            nb = sp.add_neighbor(NeighborConfig(address=str(ipaddress.ip_address("127.0.10.1") + i),
                                                peer_as=64512 + i, passive=True, hold_time=hold))
            nb.subscribe_updates(counted)
        conn.send(sp.port)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, conn.recv)
        # The tester's Ceases may still be in flight on a loaded machine:
        # give them a bounded while to arrive before stopping ourselves.
        deadline = loop.time() + 15
        while stats["closed"] < stats["established"] and loop.time() < deadline:
            await asyncio.sleep(0.1)
        stopping.append(True)
        await sp.stop(timeout=0.5)
        return stats

    conn.send(asyncio.run(main()))


@pytest.mark.interop
def test_bird_in_the_lab(tmp_path):
    """1 peer, 100k prefixes, monitor: BIRD in its own namespace, the
    tester in another (TEST-NET-1 addresses only), withdraw storm after."""
    import subprocess
    import sys

    from fastbgp.testing import lab as L

    if not L.is_root():
        pytest.skip("interop lab needs root (network namespaces)")
    missing = L.missing_binaries("ip", *L.Bird.binaries)
    if missing:
        pytest.skip("not installed: %s" % ", ".join(missing))
    out = tmp_path / "bird.json"
    with L.Lab() as lab:
        dut = lab.add_host("dut", ipv4="192.0.2.1/24", ipv6=None)
        gen = lab.add_host("gen", ipv4="192.0.2.2/24", ipv6=None)
        for ip in ("192.0.2.3", "192.0.2.10"):
            L._run([L.IP, "-n", gen.ns, "addr", "add", ip + "/24", "dev", "eth0"])
        bird = L.Bird(dut, 65000, router_id="192.0.2.1", neighbors=[
            L.Neighbor("192.0.2.10", 64512, passive=True, options={"import": "all", "export": "none"}),
            L.Neighbor("192.0.2.3", 65534, passive=True, options={"import": "none", "export": "all"}),
        ]).start()
        res = gen.run([sys.executable, "-m", "fastbgp.loadtest.cli", "loadtest", "--target", "192.0.2.1",
                       "--target-as", "65000", "--peer-address", "192.0.2.10", "--prefixes", "100000",
                       "--monitor", "192.0.2.3", "--scenario", "withdraw", "--target-pid", str(bird.proc.pid),
                       "--settle", "1", "--timeout", "120", "--no-progress", "--json", str(out)], timeout=300)
        assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    rep = json.loads(out.read_text())
    ann = next(p for p in rep["phases"] if p["kind"] == "announce")
    wd = next(p for p in rep["phases"] if p["kind"] == "withdraw")
    assert ann["expected"] == ann["received"] == 100_000 and not ann["timed_out"]
    assert wd["expected"] == wd["received"] == 100_000 and not wd["timed_out"]
    assert rep["totals"]["hold_expired"] == 0 and rep["target"]["peak_rss_kb"] > 0
    assert ann["canaries"]["seen"] >= 1
    assert subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.count(lab.prefix) == 0
