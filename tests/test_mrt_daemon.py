"""MRT (RFC 6396) in the running daemon: the dumps it writes and ``fastbgp
mrt inject``.

A module-scoped harness (the pattern of test_api.py: ``run_daemon`` in a
background thread with its own loop, a fastbgp Speaker as the peer, all on
loopback) runs a daemon whose ``[global.mrt]`` writes the updates file every
second (``%S`` in the name, so each interval is its own file) and a
TABLE_DUMP_V2 snapshot every second::

    Daemon AS65001 (127.0.0.1) --eBGP--> Speaker AS65002 (listens 127.0.0.2)

The tests run in file order on that one daemon: UPDATEs received and their
dump, rotation, the RIB snapshot, then injection (small files, the mrtparse
corpus, and bgpdump's 2002 RouteViews table) after a reload turned the
snapshots off.
"""

import glob
import os
import pathlib
import re
import shutil
import subprocess
import tempfile
import time

import msgspec
import pytest

pytest.importorskip("aiohttp")

from fastbgp.cli import main as cli
from fastbgp.wire import codec
from fastbgp.wire.constants import IPV4_UNICAST, IPV6_UNICAST
from fastbgp.mrt import reader as mrt  # noqa: E402
from fastbgp.mrt import writer as mrt_writer  # noqa: E402
from fastbgp.wire.as4 import encode_attr, encode_segments  # noqa: E402
from daemon_harness import DaemonHarness  # noqa: E402
from test_api import http  # noqa: E402

CONFIG = """\
[global]
asn = 65001
router-id = "10.0.0.1"
listen = []

[global.api]
socket = "{socket}"

[global.metrics]
listen = "127.0.0.1:{metrics_port}"

[global.mrt.updates]
path = "{dump}/updates.%Y%m%d.%H%M%S"
interval = 1
{rib}
[[neighbors]]
address = "127.0.0.2"
peer-as = 65002
port = {peer_port}
local-address = "127.0.0.1"
families = ["ipv4-unicast", "ipv6-unicast"]
default-import = "accept"
default-export = "accept"
timers = {{ connect-retry = 1, idle-hold = 1 }}
"""

RIB_SECTION = """
[global.mrt.rib]
path = "{dump}/rib.%Y%m%d.%H%M%S.gz"
interval = 1
"""

V4 = ["203.0.113.0/24", "203.0.113.128/25"]
V6 = ["2001:db8:100::/48"]
# What the peer announces with them (the dumps' expected lines read these values).
V4_ATTRS = dict(as_path=[65020], med=7, communities=["65002:1"], large_communities=["65002:1:2"])
V6_ATTRS = dict(next_hop="2001:db8::2", as_path=[65020, 65021])
BGPDUMP = shutil.which("bgpdump")


class Harness(DaemonHarness):
    thread_name = "fastbgp-mrt-daemon"
    call_timeout = 30.0

    def __init__(self, tmp: pathlib.Path, loop_factory=None):
        super().__init__(tmp, loop_factory)
        self.dump = tmp / "dump"

    def write_config(self, rib=True):
        self.config_path.write_text(CONFIG.format(
            socket=self.socket, metrics_port=self.metrics_port, dump=self.dump, peer_port=self.peer_port,
            rib=RIB_SECTION.format(dump=self.dump) if rib else ""))

    def rib(self, family, prefix=None):
        return self.call(self.daemon.rib, family, prefix)

    def flush_updates(self):
        self.call(lambda: self.daemon.mrt.w.flush())


@pytest.fixture(scope="module")
def harness(loop_factory):
    with tempfile.TemporaryDirectory(prefix="fastbgp-mrt-") as tmp:
        h = Harness(pathlib.Path(tmp), loop_factory)
        try:
            yield h.start()
        finally:
            h.stop()


@pytest.fixture
def fastbgp(harness, capsys, monkeypatch):
    monkeypatch.setenv("FASTBGP_API_SOCKET", harness.socket)
    monkeypatch.delenv("FASTBGP_API_URL", raising=False)

    def run(*words):
        capsys.readouterr()
        rc = cli.main(list(words))
        out, err = capsys.readouterr()
        return rc, out, err

    return run


# ------------------------------------------------------------------ helpers


def _frames(data):
    """Whole BGP messages of a byte stream."""
    out, i = [], 0
    while i + 19 <= len(data):
        n = int.from_bytes(data[i + 16 : i + 18], "big")
        out.append(data[i : i + n])
        i += n
    return out


def _capture_sent(h):
    """Every message the peer Speaker writes from now on (its UPDATEs are
    what the daemon must dump byte for byte)."""
    sent = []

    def install():
        conn = h.peer.connection
        writelines, write = conn.writelines, conn.write

        def wl(chunks):
            chunks = list(chunks)
            sent.extend(bytes(c) for c in chunks)
            return writelines(chunks)

        def w(data):
            sent.append(bytes(data))
            return write(data)

        conn.writelines, conn.write = wl, w

    h.call(install)
    return sent


def _update_records(h):
    recs = []
    for p in sorted(glob.glob(str(h.dump / "updates.*"))):
        reader = mrt.MrtReader(p)
        recs.extend(reader)
        assert reader.corrupt == 0 and reader.truncated is None, p
    return recs


def _attrs(*items):
    return b"".join(encode_attr(f, t, v) for f, t, v in items)


def _bgpdump(path, *opts):
    r = subprocess.run([BGPDUMP, *(opts or ("-m",)), str(path)], capture_output=True, text=True, timeout=30,
                       env=dict(os.environ, TZ="UTC"))
    assert r.returncode == 0, r.stderr
    return r.stdout.splitlines()


# -------------------------------------------------------------- updates dump


def test_updates_dump_holds_what_the_peer_sent(harness):
    h = harness
    sent = _capture_sent(h)
    h.call(h.speaker.announce, V4, **V4_ATTRS)
    h.call(h.speaker.announce, V6, **V6_ATTRS)
    h.wait_for(lambda: len(h.rib("ipv4-unicast")) == 2 and len(h.rib("ipv6-unicast")) == 1, "routes in the RIB")
    h.call(h.speaker.withdraw, [V4[1]])
    h.wait_for(lambda: len(h.rib("ipv4-unicast")) == 1, "withdrawal in the RIB")
    h.flush_updates()

    recs = _update_records(h)
    msgs = [r for r in recs if isinstance(r, mrt.Bgp4mpMessage)]
    states = [r for r in recs if isinstance(r, mrt.Bgp4mpStateChange)]
    # RFC 6396 §4.4.4: the session's way up, OpenSent ... Established (6).
    assert any(s.new_state == 6 and s.peer_ip == "127.0.0.2" for s in states), states
    for s in states:
        assert (s.type, s.subtype) == (mrt.BGP4MP_ET, mrt.BGP4MP_STATE_CHANGE_AS4)
        assert (s.peer_as, s.local_as, s.peer_ip, s.local_ip) == (65002, 65001, "127.0.0.2", "127.0.0.1")
    assert msgs and all((m.type, m.subtype) == (mrt.BGP4MP_ET, mrt.BGP4MP_MESSAGE_AS4) for m in msgs)
    for m in msgs:
        assert (m.peer_as, m.local_as, m.peer_ip, m.local_ip) == (65002, 65001, "127.0.0.2", "127.0.0.1")
        assert m.update is not None and m.error is None
        assert 0 <= m.microsecond < 1000000
    # Byte for byte what the Speaker wrote, in order; before the capture
    # started it had only sent its (empty) table's End-of-RIB markers.
    updates_sent = [x for x in _frames(b"".join(sent)) if x[18] == 2]
    assert len(updates_sent) >= 3
    got = [m.message for m in msgs]
    assert got[len(got) - len(updates_sent):] == updates_sent
    assert all(m.update.is_eor for m in msgs[: len(got) - len(updates_sent)])
    # And decoded: the prefixes, then the withdrawal.
    ann = set()
    for m in msgs:
        u = m.update
        if u.nlri:
            ann |= {"%s/%d" % (mrt.ip_str(a[:4]), n) for _i, a, n in codec.unpack_prefixes(u.nlri, 1)}
        if u.mp_reach is not None and u.mp_reach[3]:
            ann |= {"%s/%d" % (mrt.ip_str(a), n) for _i, a, n in codec.unpack_prefixes(u.mp_reach[3], 2)}
    assert ann == set(V4 + V6)
    wd = [m for m in msgs if m.update.withdrawn]
    assert [p for _i, a, p in codec.unpack_prefixes(wd[-1].update.withdrawn, 1)] == [25]

    # metrics: the receive path fed the latency histogram.
    from fastbgp.control import metrics

    count = [s.value for s in metrics.UPDATE_LATENCY.collect()[0].samples if s.name.endswith("_count")][0]
    assert count >= len(updates_sent)

    if BGPDUMP is None:
        pytest.skip("bgpdump is not installed: the Debian binary's reading not checked")
    lines = []
    for p in sorted(glob.glob(str(h.dump / "updates.*"))):
        if os.path.getsize(p):
            lines += _bgpdump(p)
    assert any(re.match(r"BGP4MP_ET\|\d+\.\d+\|A\|127\.0\.0\.2\|65002\|203\.0\.113\.0/24\|65002 65020\|IGP\|127\.0\.0\.2\|0\|7\|65002:1\|", ln)
               for ln in lines), lines
    assert any("|A|127.0.0.2|65002|2001:db8:100::/48|65002 65020 65021|IGP|2001:db8::2|" in ln for ln in lines), lines
    assert any("|W|127.0.0.2|65002|203.0.113.128/25" in ln for ln in lines), lines
    assert any("|STATE|127.0.0.2|65002|" in ln for ln in lines), lines


def test_updates_file_rotates_every_interval(harness):
    h = harness
    time.sleep(1.1)  # at least one more boundary
    paths = h.call(lambda: list(h.daemon.mrt.updates.paths))
    assert len(paths) >= 2
    starts = [time.mktime(time.strptime(os.path.basename(p), "updates.%Y%m%d.%H%M%S")) for p in paths]
    assert starts == sorted(set(starts))  # one file per interval, in order
    assert all(os.path.exists(p) for p in paths)


# -------------------------------------------------------------------- RIB dump


def _received(h, fam, prefix):
    """The daemon RIB's receive times of ``prefix``: {peer id: Unix s}."""
    return {q[0]: q[4] for q in h.call(lambda: h.daemon.ribs[fam].paths(prefix, received=True))}


def _table_of_the_updates_test(h):
    """The routes test_updates_dump_holds_what_the_peer_sent leaves in the
    RIB (V4[0] with its MED and communities, V6[0]), announced here when
    this test runs without it (``-k``): the module's tests share one daemon."""
    def left():
        return [r.prefix for r in h.rib("ipv4-unicast")] == [V4[0]] and len(h.rib("ipv6-unicast")) == 1

    if left():
        return
    h.call(h.speaker.announce, [V4[0]], **V4_ATTRS)
    h.call(h.speaker.announce, V6, **V6_ATTRS)
    h.wait_for(left, "the routes in the RIB")


def test_rib_snapshot_holds_the_routes(harness):
    h = harness
    _table_of_the_updates_test(h)
    # The IPv6 route changes (a MED) in a later second than the IPv4 one
    # was received: RFC 6396 §4.3.4's originated time must be each path's
    # own receive time, not one per peer or the time of the dump.
    (t4,) = _received(h, IPV4_UNICAST, V4[0]).values()
    while int(time.time()) <= t4:
        time.sleep(0.05)
    h.call(h.speaker.announce, V6, med=9, **V6_ATTRS)
    h.wait_for(lambda: [r.med for r in h.rib("ipv6-unicast")] == [9], "the changed IPv6 route")
    (t6,) = _received(h, IPV6_UNICAST, V6[0]).values()
    assert t6 > t4
    t = time.time()
    # A snapshot of an interval that began after the routes were in.
    h.wait_for(lambda: any(os.path.basename(p) >= time.strftime("rib.%Y%m%d.%H%M%S", time.gmtime(t + 1))
                           for p in h.call(lambda: list(h.daemon.mrt.rib_written))), "a RIB snapshot", 5)
    path = h.call(lambda: h.daemon.mrt.rib_written[-1])
    recs = list(mrt.MrtReader(path))
    pit = recs[0]
    assert isinstance(pit, mrt.PeerIndexTable) and pit.collector_id == "10.0.0.1"
    assert pit.peers[0] == mrt.Peer("10.0.0.1", "0.0.0.0", 65001)
    assert pit.peers[1] == mrt.Peer("10.0.0.2", "127.0.0.2", 65002)
    ribs = {r.prefix: r for r in recs[1:]}
    assert all(isinstance(r, mrt.RibRecord) for r in recs[1:])
    assert [r.sequence for r in recs[1:]] == list(range(len(recs) - 1))
    want = {r.prefix for f in ("ipv4-unicast", "ipv6-unicast") for r in h.rib(f)}
    assert set(ribs) == want == {V4[0], V6[0]}
    (e,) = ribs[V4[0]].entries
    assert e.peer_index == 1 and e.next_hop == bytes([127, 0, 0, 2])
    assert ribs[V4[0]].subtype == mrt.RIB_IPV4_UNICAST
    (e6,) = ribs[V6[0]].entries
    assert ribs[V6[0]].subtype == mrt.RIB_IPV6_UNICAST and mrt.ip_str(e6.next_hop[:16]) == "2001:db8::2"
    assert (e.originated, e6.originated) == (t4, t6)
    if BGPDUMP is not None:
        lines = _bgpdump(path)
        assert any(ln.startswith("TABLE_DUMP2|") and "|B|127.0.0.2|65002|203.0.113.0/24|65002 65020|IGP|127.0.0.2|0|7|65002:1|" in ln
                   for ln in lines), lines
        assert any("|2001:db8:100::/48|65002 65020 65021|IGP|2001:db8::2|0|9|" in ln for ln in lines), lines
        # The originated times as bgpdump reads them: its verbose form
        # (Debian's 1.6.2 prints 0 in -m's time column with ``-t change``).
        got, prefix = {}, None
        for ln in _bgpdump(path, "-v"):
            if ln.startswith("PREFIX: "):
                prefix = ln.split()[1]
            elif ln.startswith("ORIGINATED: "):
                got[prefix] = ln[len("ORIGINATED: "):]
        fmt = "%m/%d/%y %H:%M:%S"
        assert got == {V4[0]: time.strftime(fmt, time.gmtime(t4)), V6[0]: time.strftime(fmt, time.gmtime(t6))}


def test_route_age_in_api_and_cli(harness, fastbgp):
    """Each path's receive time and age (seconds since its last change) in
    the API's three RIB views and in ``fastbgp global rib``'s Age column
    (GoBGP's 00:01:23 spelling): the RIB's times, which differ per path."""
    h = harness
    (t4,) = _received(h, IPV4_UNICAST, V4[0]).values()
    (t6,) = _received(h, IPV6_UNICAST, V6[0]).values()
    assert t6 > t4  # the IPv6 route changed a second later (test above)

    def check(r, t):
        assert r.received == t and 0 <= int(time.time()) - t - r.age <= 1, (r, t)

    (r4,) = h.rib("ipv4-unicast", V4[0])  # every path of one prefix
    check(r4, t4)
    (r6,) = h.rib("ipv6-unicast")  # the Loc-RIB's best paths
    check(r6, t6)
    (a4,) = h.call(h.daemon.adj_rib_in, "127.0.0.2", "ipv4-unicast")  # one peer's paths
    check(a4, t4)
    rc, out, err = fastbgp("global", "rib", "-a", "ipv6", "-j")
    assert rc == 0, err
    (j6,) = msgspec.json.decode(out)
    assert j6["received"] == t6 and 0 <= int(time.time()) - t6 - j6["age"] <= 1
    for fam, prefix, t in (("ipv4", V4[0], t4), ("ipv6", V6[0], t6)):
        rc, out, err = fastbgp("global", "rib", "-a", fam)
        assert rc == 0, err
        row = next(ln for ln in out.splitlines() if prefix in ln)
        hh, mm, ss = re.search(r" (\d\d):(\d\d):(\d\d) ", row).groups()
        assert 0 <= int(time.time()) - t - (int(hh) * 3600 + int(mm) * 60 + int(ss)) <= 1, row


# ---------------------------------------------------------------------- inject


def _small_rib(path):
    """Two peers' views of three IPv4 and two IPv6 prefixes (MrtWriter)."""
    peers = [("10.9.9.1", "192.0.2.1", 64501), ("10.9.9.2", "192.0.2.2", 4200000002)]

    def attrs(i, v4):
        asn = peers[i][2]
        items = [(0x40, 1, b"\x00" if i == 0 else b"\x02"),
                 (0x40, 2, encode_segments([(2, [asn, 64999])], 4))]
        if v4:
            items.append((0x40, 3, bytes([192, 0, 2, 1 + i])))
        items += [(0x80, 4, (50 + 10 * i).to_bytes(4, "big")),
                  (0xC0, 8, (64501 << 16 | 100 + i).to_bytes(4, "big")),
                  (0xC0, 32, (64501).to_bytes(4, "big") + (1).to_bytes(4, "big") + (1 + i).to_bytes(4, "big"))]
        return _attrs(*items)

    v4 = ["198.51.100.0/24", "198.51.100.128/25", "100.64.0.0/10"]
    v6 = ["2001:db8:aa::/48", "2001:db8:bb::/48"]
    routes = [(p, [(0, attrs(0, True), None), (1, attrs(1, True), None)]) for p in v4]
    routes += [(p, [(0, attrs(0, False), bytes.fromhex("20010db8000000000000000000000001")),
                    (1, attrs(1, False), bytes.fromhex("20010db8000000000000000000000002"))]) for p in v6]
    with mrt_writer.MrtWriter(path) as w:
        w.write_rib(peers, routes, collector_id="10.9.9.9")
    return v4, v6


def test_inject_small_table_dump_v2(harness, fastbgp):
    h = harness
    path = h.tmp / "small.mrt"
    _small_rib(path)
    before = h.call(lambda: h.peer.received_count)
    rc, out, err = fastbgp("mrt", "inject", str(path))
    assert rc == 0, err
    assert re.fullmatch(r"injected 5 prefixes in \d+\.\d\d s\n", out), out
    r = h.rib("ipv4-unicast", "198.51.100.0/24")
    assert len(r) == 1
    r = r[0]
    assert (r.source, r.best, r.as_path, r.origin, r.next_hop, r.med) == ("local", True, [64501, 64999], "igp", "192.0.2.1", 50)
    assert r.communities == ["64501:100"] and r.large_communities == ["64501:1:1"]
    (r6,) = h.rib("ipv6-unicast", "2001:db8:aa::/48")
    assert (r6.source, r6.as_path, r6.next_hop, r6.med) == ("local", [64501, 64999], "2001:db8::1", 50)
    # The peer gets them as our routes: our AS in front, MED of our own
    # routes kept (RFC 4271 §5.1.4 only stops received ones), communities.
    h.wait_for(lambda: h.call(lambda: h.peer.received_count) >= before + 5, "the peer receiving the injected routes")
    got = h.call(h.peer.received, "ipv4-unicast")["100.64.0.0/10"]
    assert got.as_path == [65001, 64501, 64999] and got.med == 50 and got.next_hop == "127.0.0.1"
    assert got.communities == ["64501:100"] and got.large_communities == ["64501:1:1"]
    assert h.call(h.peer.received, "ipv6-unicast")["2001:db8:bb::/48"].as_path == [65001, 64501, 64999]

    # The other peer's routes (a 4-octet AS), IPv6 only; then a new next hop.
    rc, out, err = fastbgp("mrt", "inject", str(path), "--only-peer", "1", "-a", "ipv6")
    assert rc == 0 and out.startswith("injected 2 prefixes in ") and "peer 1 (192.0.2.2 AS4200000002)" in out, (out, err)
    (r6,) = h.rib("ipv6-unicast", "2001:db8:bb::/48")
    assert (r6.as_path, r6.origin, r6.next_hop, r6.med) == ([4200000002, 64999], "incomplete", "2001:db8::2", 60)
    assert h.rib("ipv4-unicast", "198.51.100.0/24")[0].as_path == [64501, 64999]
    rc, out, err = fastbgp("mrt", "inject", str(path), "--only-peer", "192.0.2.2", "--nexthop", "198.51.100.254",
                           "-a", "ipv4", "--count", "2", "-j")
    assert rc == 0, err
    doc = msgspec.json.decode(out)
    assert doc["count"] == 2
    assert h.rib("ipv4-unicast", "198.51.100.0/24")[0].next_hop == "198.51.100.254"
    assert h.rib("ipv4-unicast", "100.64.0.0/10")[0].next_hop == "192.0.2.1"  # past --count

    # Injected routes are ours to withdraw like any other.
    rc, out, err = fastbgp("global", "rib", "del", "198.51.100.0/24")
    assert rc == 0 and "withdrew 1 prefix" in out, (out, err)
    assert h.rib("ipv4-unicast", "198.51.100.0/24") == []


def test_inject_api_refuses_bad_groups(harness):
    from fastbgp.control.api import InjectGroup

    good = InjectGroup(afi=1, attrs=_attrs((0x40, 1, b"\x00"), (0x40, 2, b"")), nlri=b"\x18\xc6\x33\x65")
    cases = [
        (InjectGroup(afi=3, attrs=good.attrs, nlri=good.nlri), "afi"),
        (InjectGroup(afi=1, attrs=good.attrs, nlri=b"\x21\x01"), "nlri"),
        (InjectGroup(afi=1, attrs=_attrs((0x40, 1, b"\x00")), nlri=good.nlri), "ORIGIN and AS_PATH"),
        (InjectGroup(afi=1, attrs=b"\x40\x01\x05\x00", nlri=good.nlri), "attrs"),
        (InjectGroup(afi=2, attrs=good.attrs, nlri=b"\x20\x20\x01\x0d\xb8", next_hop=b"\x01\x02\x03\x04"), "next_hop"),
    ]
    for bad, word in cases:
        status, _, body = http(harness, "POST", "/v1/rib/inject", [good, bad])
        assert status == 400 and word in body["error"] and body["error"].startswith("[1]."), body
    # Nothing of a refused batch was applied.
    assert harness.rib("ipv4-unicast", "198.51.101.0/24") == []
    status, _, body = http(harness, "POST", "/v1/rib/inject", [good])
    assert status == 200 and body == {"count": 1, "groups": 1}
    assert harness.rib("ipv4-unicast", "198.51.101.0/24")[0].source == "local"


def test_inject_errors_exit_1(harness, fastbgp, tmp_path, monkeypatch):
    small = tmp_path / "small.mrt"
    _small_rib(small)
    rc, out, err = fastbgp("mrt", "inject", str(tmp_path / "missing.mrt"))
    assert rc == 1 and "cannot read" in err and "missing.mrt" in err
    text = tmp_path / "notes.txt"
    text.write_text("not an MRT file at all, just some words\n" * 10)
    rc, out, err = fastbgp("mrt", "inject", str(text))
    assert rc == 1 and "no TABLE_DUMP or TABLE_DUMP_V2 RIB records" in err
    rc, out, err = fastbgp("mrt", "inject", str(small), "--only-peer", "7")
    assert rc == 1 and "PEER_INDEX_TABLE has 2 peers" in err
    monkeypatch.setenv("FASTBGP_API_SOCKET", str(tmp_path / "nobody.sock"))
    rc, out, err = fastbgp("mrt", "inject", str(small))
    assert rc == 1 and "cannot reach the fastbgp daemon" in err


def test_inject_skips_entries_without_origin_or_as_path(harness, fastbgp, tmp_path):
    """An entry without ORIGIN or AS_PATH (RFC 4271 §5.1.1-2) is left out
    and counted, with the record and offset of the first one; the others
    are injected (the daemon used to refuse the whole batch, naming an
    index of our own batch)."""
    path = tmp_path / "holes.mrt"
    good = _attrs((0x40, 1, b"\x00"), (0x40, 2, encode_segments([(2, [64777])], 4)), (0x40, 3, bytes([192, 0, 2, 7])))
    no_path = _attrs((0x40, 1, b"\x00"), (0x40, 3, bytes([192, 0, 2, 7])))
    no_origin = _attrs((0x40, 2, encode_segments([(2, [64777])], 4)), (0x40, 3, bytes([192, 0, 2, 7])))
    routes = [("198.51.102.0/24", [(0, good, None)]), ("198.51.103.0/24", [(0, no_path, None)]),
              ("198.51.104.0/24", [(0, no_origin, None)]), ("198.51.105.0/24", [(0, good, None)])]
    with mrt_writer.MrtWriter(path) as w:
        w.write_rib([("10.9.9.1", "192.0.2.7", 64777)], routes, collector_id="10.9.9.9")
    offsets = []
    r = mrt.MrtReader(path)
    for _rec in r:
        offsets.append(r.offset)
    rc, out, err = fastbgp("mrt", "inject", str(path))
    assert rc == 0, err
    assert out.startswith("injected 2 prefixes in "), out
    skipped = re.search(r"2 skipped: (.*)\)$", out.strip()).group(1)
    # Record 3 (the PEER_INDEX_TABLE is record 1) is the first one left out.
    assert "(first: record 3, offset %d)" % offsets[2] in skipped, (skipped, offsets)
    assert harness.rib("ipv4-unicast", "198.51.105.0/24")[0].source == "local"
    assert harness.rib("ipv4-unicast", "198.51.103.0/24") == []
    rc, out, err = fastbgp("mrt", "inject", str(path), "-j")
    doc = msgspec.json.decode(out)
    assert rc == 0 and doc["count"] == 2 and sum(doc["skipped"].values()) == 2
    assert {"record": 3, "offset": offsets[2]} in doc["first_skipped"].values()


def test_inject_names_record_and_offset_of_a_refused_group():
    """The daemon's "[i]." (an index into one request) becomes where that
    group's first route is in the file."""
    from fastbgp.cli import mrt as mrt_cli
    from fastbgp.cli.common import ApiError

    where = [(2, 40), (9, 1234)]
    text = mrt_cli._located(ApiError(400, "[1].attrs: ORIGIN and AS_PATH are required"), where)
    assert text == "record 9 (offset 1234): attrs: ORIGIN and AS_PATH are required"
    assert mrt_cli._located(ApiError(400, "daemon is shutting down"), where) == "daemon is shutting down"


def test_inject_mrtparse_corpus(harness, fastbgp, corpora):
    for name, afi, prefix in (("quagga_rib", 2, "fd01:1::/64"), ("openbgpd_rib_table-v2", 1, "192.168.0.0/16")):
        path = corpora / "mrtparse" / name
        want = {(r.afi, r.prefix) for r in mrt.MrtReader(path) if isinstance(r, mrt.RibRecord) and r.safi == 1}
        rc, out, err = fastbgp("mrt", "inject", str(path))
        assert rc == 0, err
        assert out.startswith("injected %d prefixes" % len(want)), out
        fam = "ipv4-unicast" if afi == 1 else "ipv6-unicast"
        assert harness.rib(fam, prefix)[0].source == "local"


def test_reload_turns_snapshots_off_and_updates_go_on(harness):
    h = harness
    h.write_config(rib=False)
    status, _, body = http(h, "POST", "/v1/reload")
    assert status == 200 and "mrt" in body["global-changed"], body
    assert h.call(lambda: h.daemon.mrt.cfg.rib) is None
    # The established session was hooked again by the new dumper.
    h.call(h.speaker.announce, ["203.0.113.64/26"], as_path=[65020])
    h.wait_for(lambda: h.rib("ipv4-unicast", "203.0.113.64/26") != [], "the new route")
    h.flush_updates()
    msgs = [r for r in _update_records(h) if isinstance(r, mrt.Bgp4mpMessage) and r.update.nlri]
    assert msgs[-1].update.nlri == b"\x1a\xcb\x00\x71\x40"


def test_inject_bview_peer_table(harness, fastbgp, corpora):
    """bgpdump's RouteViews table of 2002 (TABLE_DUMP, 115,521 records):
    the 112,986 routes of peer 193.203.0.1 into the daemon, and on to the
    peer Speaker."""
    h = harness
    path = corpora / "bgpdump" / "test_data" / "bview.20020722.2337.gz"
    before = h.call(lambda: h.peer.received_count)
    t0 = time.perf_counter()
    rc, out, err = fastbgp("mrt", "inject", str(path), "--only-peer", "193.203.0.1")
    took = time.perf_counter() - t0
    assert rc == 0, err
    assert out.startswith("injected 112986 prefixes in "), out
    (r,) = h.rib("ipv4-unicast", "3.0.0.0/8")
    assert (r.source, r.as_path, r.next_hop, r.origin) == ("local", [1853, 1239, 80], "193.203.0.1", "igp")
    h.wait_for(lambda: h.call(lambda: h.peer.received_count) >= before + 112986, "the peer receiving the table", 20)
    through = time.perf_counter() - t0
    print("\nmrt inject bview.20020722.2337.gz peer 193.203.0.1: %s (CLI %.2f s; at the peer after %.2f s)"
          % (out.strip(), took, through))
    got = h.call(h.peer.received, "ipv4-unicast")["3.0.0.0/8"]
    assert got.as_path == [65001, 1853, 1239, 80]
