"""BMP (RFC 7854, RFC 8671, RFC 9069): every message of fastbgp.bmp.messages
against byte layouts written out from the RFCs, tshark's BMP dissector as a
second opinion, and the daemon's feed to a station on loopback (peer up,
pre-policy bytes as received, post-policy, Loc-RIB, statistics, peer down,
the queued-bytes bound and the re-sync after it)."""

import asyncio
import logging
import shutil
import socket
import struct
import subprocess

import pytest

from fastbgp.bmp import messages as bm
from fastbgp.wire import codec
from fastbgp.wire.types import DEFAULT_CONTEXT

from test_daemon import DUT, addr, neighbor_toml, peer, until

TSHARK = shutil.which("tshark")

HDR_V4 = bytes.fromhex(
    "00"  # peer type: global instance
    "00"  # flags
    "0000000000000000"  # peer distinguisher
    "000000000000000000000000" "c0000201"  # 192.0.2.1, right-aligned in 16 octets
    "0000fde8"  # peer AS 65000
    "c6336401"  # BGP ID 198.51.100.1
    "5f5e1000"  # seconds 1600000000
    "0007a120"  # microseconds 500000
)


# ----------------------------------------------------------------------------- byte layouts


def test_per_peer_header_layout_rfc7854_4_2():
    h = bm.peer_header("192.0.2.1", 65000, 0xC6336401, timestamp=1600000000.5)
    assert bytes(h) == HDR_V4 and len(h) == 42
    # Flags: V (IPv6) 0x80, L (post-policy) 0x40, A (2-octet AS) 0x20, O (Adj-RIB-Out, RFC 8671 §4) 0x10.
    h6 = bm.peer_header("2001:db8::1", 65000, 1, post_policy=True, as2=True, adj_rib_out=True)
    assert h6[1] == 0x80 | 0x40 | 0x20 | 0x10
    assert h6[10:26] == bytes.fromhex("20010db8000000000000000000000001")
    assert bm.peer_header("192.0.2.1", 1, 1, post_policy=True)[1] == 0x40
    with pytest.raises(ValueError):
        bm.peer_header("not an address", 1, 1)


def test_loc_rib_header_rfc9069_4_1():
    h = bm.loc_rib_header(65001, 0x0A000001, timestamp=7)
    assert h[0] == 3 and h[1] == 0  # peer type 3, F clear
    assert h[2:26] == bytes(24)  # distinguisher 0 (default table), address zero
    assert h[26:34] == bytes.fromhex("0000fde9" "0a000001")
    assert h[34:42] == bytes.fromhex("00000007" "00000000")
    assert bm.loc_rib_header(1, 1, filtered=True)[1] == 0x80


def test_initiation_and_termination_rfc7854_4_3_4_5():
    m = bm.initiation("r1", "desc")
    # version 3, length 6+8+6, type 4; TLV sysDescr (1), then sysName (2).
    assert m == bytes.fromhex("03" "00000014" "04") + bytes.fromhex("0001" "0004") + b"desc" + \
        bytes.fromhex("0002" "0002") + b"r1"
    t = bm.termination(bm.TERM_ADMIN_CLOSE)
    assert t == bytes.fromhex("03" "0000000c" "05" "0001" "0002" "0000")
    t = bm.termination(bm.TERM_OUT_OF_RESOURCES, "x")
    assert t == bytes.fromhex("03" "00000011" "05" "0000" "0001") + b"x" + bytes.fromhex("0001" "0002" "0002")


def test_route_monitoring_carries_the_update_unchanged_rfc7854_4_6():
    upd = codec.pack_updates(bytes.fromhex("400101004002004003040a000001"), b"\x18\xcb\x00\x71",
                             DEFAULT_CONTEXT)[0]
    m = bm.route_monitoring(HDR_V4, upd)
    assert m[:6] == bytes((3,)) + (6 + 42 + len(upd)).to_bytes(4, "big") + b"\x00"
    assert m[6:48] == HDR_V4 and m[48:] == upd


def test_peer_up_rfc7854_4_10_and_table_name_rfc9069_5_3():
    op1 = codec.build_open(65000, 90, 1, [(65, (65000).to_bytes(4, "big"))])
    op2 = codec.build_open(65001, 180, 2, [])
    m = bm.peer_up(HDR_V4, "192.0.2.2", 179, 40000, op1, op2)
    body = m[48:]
    assert m[5] == 3 and int.from_bytes(m[1:5], "big") == len(m)
    assert body[:16] == bytes(12) + bytes((192, 0, 2, 2))
    assert body[16:20] == struct.pack(">HH", 179, 40000)
    assert body[20:] == op1 + op2
    lr = bm.peer_up(bm.loc_rib_header(1, 1), None, 0, 0, op1, op1, table_name="global")
    assert lr.endswith(bytes.fromhex("0003" "0006") + b"global")
    assert lr[48:64] == bytes(16)


def test_peer_down_reasons_rfc7854_4_9():
    notif = codec.build_notification(6, 2, b"")
    m = bm.peer_down(HDR_V4, bm.DOWN_REMOTE_NOTIFICATION, notif)
    assert m[5] == 2 and m[48] == 3 and m[49:] == notif
    assert bm.peer_down(HDR_V4, bm.DOWN_LOCAL_NO_NOTIFICATION, b"\x00\x00")[48:] == b"\x02\x00\x00"
    assert bm.peer_down(HDR_V4, bm.DOWN_REMOTE_NO_NOTIFICATION)[48:] == b"\x04"
    for bad in (0, 7):
        with pytest.raises(ValueError):
            bm.peer_down(HDR_V4, bad)


def test_statistics_report_rfc7854_4_8():
    m = bm.statistics_report(HDR_V4, [(bm.STAT_REJECTED, 5), (bm.STAT_ADJ_RIB_IN, 1 << 33),
                                      (bm.STAT_LOC_RIB, 3), (bm.STAT_DUPLICATE_PREFIX, (1 << 32) + 1)])
    assert m[5] == 1
    assert m[48:] == bytes.fromhex(
        "00000004"
        "0000" "0004" "00000005"  # type 0: 32-bit counter
        "0007" "0008" "0000000200000000"  # type 7: 64-bit gauge
        "0008" "0008" "0000000000000003"  # type 8: 64-bit gauge
        "0001" "0004" "00000001")  # type 1: counters wrap
    with pytest.raises(ValueError):
        bm.statistics_report(HDR_V4, [(bm.STAT_LOC_RIB, -1)])


# ----------------------------------------------------------------------------- a test-side reader (RFC layouts)


def read_messages(buf):
    """[(type, per-peer header or None, body)] of a BMP byte stream, split by
    the RFC 7854 §4.1 common header; the rest of ``buf`` is left."""
    out = []
    i = 0
    while len(buf) - i >= 6:
        ver, n, t = struct.unpack_from(">BIB", buf, i)
        assert ver == 3 and n >= 6
        if len(buf) - i < n:
            break
        m = bytes(buf[i:i + n])
        if t in (bm.INITIATION, bm.TERMINATION):
            out.append((t, None, m[6:]))
        else:
            out.append((t, m[6:48], m[48:]))
        i += n
    del buf[:i]
    return out


def prefixes_of(update, addpath=False):
    """(announced, withdrawn) prefix texts of one whole UPDATE message."""
    p = codec.parse_update(update[19:], DEFAULT_CONTEXT)
    import ipaddress

    def texts(afi, packed):
        return [str(ipaddress.ip_network((ipaddress.ip_address(a), n))) for _i, a, n in
                codec.unpack_prefixes(packed, afi, addpath)]
    ann = texts(1, p.nlri) + (texts(p.mp_reach[0], p.mp_reach[3]) if p.mp_reach else [])
    wd = texts(1, p.withdrawn) + (texts(p.mp_unreach[0], p.mp_unreach[2]) if p.mp_unreach else [])
    return ann, wd


class StationServer:
    """A BMP station on loopback that records every message."""

    def __init__(self, read=True):
        self.read = read
        self.msgs = []
        self.conns = 0
        self.writers = []

    async def start(self, host):
        sock = socket.socket()
        if not self.read:
            # A small window, inherited by accepted sockets: the sender's
            # queue fills in a few hundred kilobytes, not the kernel's megabytes.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.bind((host, 0))
        self.server = await asyncio.start_server(self.handle, sock=sock)
        self.port = self.server.sockets[0].getsockname()[1]
        self.tasks = []
        return self

    async def handle(self, reader, writer):
        self.conns += 1
        me = self.conns
        self.writers.append(writer)
        self.tasks.append(asyncio.current_task())
        buf = bytearray()
        while not self.read:
            await asyncio.sleep(0.1)
        while True:
            data = await reader.read(65536)
            if not data:
                return
            buf += data
            self.msgs.extend((me,) + m for m in read_messages(buf))

    def of(self, t, conn=None):
        return [m for m in self.msgs if m[1] == t and (conn is None or m[0] == conn)]

    async def close(self):
        self.server.close()
        for w in self.writers:
            w.close()
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


def route_state(msgs, peer_type, post, out=False, peer=None):
    """{prefix: UPDATE} after replaying the route monitoring messages of
    one kind (peer type, L flag, O flag, peer address) in order."""
    table = {}
    for _c, t, hdr, body in msgs:
        if t != bm.ROUTE_MONITORING or hdr[0] != peer_type or bool(hdr[1] & 0x40) != post:
            continue
        if peer_type == 0 and bool(hdr[1] & 0x10) != out:
            continue
        if peer is not None and hdr[22:26] != bytes(int(x) for x in peer.split(".")):
            continue
        ann, wd = prefixes_of(body)
        for p in wd:
            table.pop(p, None)
        for p in ann:
            table[p] = body
    return table


# ----------------------------------------------------------------------------- the daemon's feed


# Import policy "in": 10.9.0.0/16 and longer rejected, the rest accepted
# with LOCAL_PREF 222 (pre- and post-policy routes then differ both ways).
IMPORT_POLICY = """
[[defined-sets.prefix-sets]]
name = "no"
prefixes = ["10.9.0.0/16 le 32"]
[[policies]]
name = "in"
[[policies.statements]]
conditions = { prefix-set = "no" }
actions = { result = "reject" }
[[policies.statements]]
actions = { set-local-pref = 222, result = "accept" }
"""


def test_daemon_feed_peer_up_routes_stats_peer_down(run):
    async def main():
        host = addr()
        st = await StationServer().start(host)
        a_addr = addr()
        bmp = '[[bmp]]\naddress = "%s"\nport = %d\npolicy = "both"\nloc-rib = true\nstats-interval = 1\n' % (
            host, st.port)
        dut = DUT(extra=bmp + IMPORT_POLICY, neighbors=[neighbor_toml(a_addr, 65001, **{"import-policy": ["in"]})])
        d = await dut.start()
        a, na = await peer(dut, 65001, a_addr)
        await na.wait_established(5)
        a.announce(["10.1.0.0/24", "10.1.1.0/24", "10.9.0.0/24"], as_path=[65100])
        await until(lambda: len(route_state(st.msgs, 0, True)) == 2, what="post-policy routes")
        await until(lambda: len(route_state(st.msgs, 3, False)) == 2, what="Loc-RIB routes")
        await until(lambda: st.of(bm.STATISTICS_REPORT), timeout=4, what="statistics")
        ups = st.of(bm.PEER_UP)
        assert ups[0][2][0] == 0 or ups[0][2][0] == 3
        # One Peer Up per peer session and connection, the Loc-RIB instance's too.
        assert [m[2][0] for m in ups].count(0) == 1 and [m[2][0] for m in ups].count(3) == 1
        up = next(m for m in ups if m[2][0] == 0)
        assert up[2][10:26] == bytes(12) + bytes(int(x) for x in a_addr.split("."))
        assert int.from_bytes(up[2][26:30], "big") == 65001
        body = up[3]
        assert body[:16] == bytes(12) + bytes(int(x) for x in dut.addr.split("."))
        sent_len = int.from_bytes(body[36:38], "big")
        sent, recv = body[20:20 + sent_len], body[20 + sent_len:]
        assert sent[18] == 1 and recv[18] == 1  # both whole OPEN messages (type 1)
        assert codec.parse_open(sent[19:]).asn == 65000 and codec.parse_open(recv[19:]).asn == 65001
        # Pre-policy: the rejected prefix too, and the bytes as received.
        pre = route_state(st.msgs, 0, False)
        assert sorted(pre) == ["10.1.0.0/24", "10.1.1.0/24", "10.9.0.0/24"]
        post = route_state(st.msgs, 0, True)
        assert sorted(post) == sorted(r.prefix for r in d.adj_rib_in(a_addr, "ipv4-unicast"))
        assert codec.parse_update(post["10.1.0.0/24"][19:], DEFAULT_CONTEXT).attrs.find(b"\x40\x05\x04\x00\x00\x00\xde") >= 0
        loc = route_state(st.msgs, 3, False)
        assert sorted(loc) == sorted(r.prefix for r in d.rib("ipv4-unicast") if r.best)
        stats = st.of(bm.STATISTICS_REPORT)
        peer_stats = [m for m in stats if m[2][0] == 0]
        await until(lambda: any(_stat(m[3], 0) == 1 and _stat(m[3], 7) == 2
                                for m in st.of(bm.STATISTICS_REPORT) if m[2][0] == 0), timeout=4,
                    what="rejected 1, Adj-RIB-In 2")
        del peer_stats
        assert any(_stat(m[3], 8) == 2 for m in st.of(bm.STATISTICS_REPORT) if m[2][0] == 3)
        # A withdrawal reaches all three views.
        a.withdraw(["10.1.1.0/24"])
        await until(lambda: sorted(route_state(st.msgs, 0, True)) == ["10.1.0.0/24"]
                    and sorted(route_state(st.msgs, 3, False)) == ["10.1.0.0/24"]
                    and sorted(route_state(st.msgs, 0, False)) == ["10.1.0.0/24", "10.9.0.0/24"])
        # The peer closes with a Cease: Peer Down reason 3 with its NOTIFICATION.
        await a.stop()
        await until(lambda: st.of(bm.PEER_DOWN), what="peer down")
        down = st.of(bm.PEER_DOWN)[0]
        assert down[3][0] == bm.DOWN_REMOTE_NOTIFICATION and down[3][1 + 18] == 3 and down[3][1 + 19] == 6
        # Its routes left the Loc-RIB with it: withdrawn there (RFC 9069 §5.2).
        await until(lambda: not route_state(st.msgs, 3, False), what="Loc-RIB withdrawals")
        assert not d.rib("ipv4-unicast")
        await dut.stop()
        await until(lambda: st.of(bm.TERMINATION), what="termination")
        await st.close()

    run(main(), timeout=60)


def test_adj_rib_out_rfc8671(run):
    async def main():
        host = addr()
        st = await StationServer().start(host)
        a_addr, c_addr = addr(), addr()
        bmp = '[[bmp]]\naddress = "%s"\nport = %d\npolicy = "pre"\nadj-rib-out = true\nstats-interval = 0\n' % (
            host, st.port)
        policy = """
[[defined-sets.prefix-sets]]
name = "no"
prefixes = ["10.9.0.0/16 le 32"]
[[policies]]
name = "out"
[[policies.statements]]
conditions = { prefix-set = "no" }
actions = { result = "reject" }
[[policies.statements]]
actions = { set-med = 7, result = "accept" }
"""
        dut = DUT(extra=bmp + policy, neighbors=[neighbor_toml(a_addr, 65001),
                                                  neighbor_toml(c_addr, 65003, **{"export-policy": ["out"]})])
        d = await dut.start()
        a, na = await peer(dut, 65001, a_addr)
        await na.wait_established(5)
        a.announce(["10.1.0.0/24", "10.9.0.0/24"], as_path=[65100])
        await until(lambda: len(d.rib("ipv4-unicast")) == 2)
        # C comes up after the routes: its Adj-RIB-Out is dumped.
        c, nc = await peer(dut, 65003, c_addr)
        await nc.wait_established(5)
        await until(lambda: set(route_state(st.msgs, 0, True, out=True, peer=c_addr)) == {"10.1.0.0/24"},
                    what="C's Adj-RIB-Out")
        # Live: a new route, then A goes and takes its routes with it.
        a.announce(["10.2.0.0/24"], as_path=[65100])
        await until(lambda: set(route_state(st.msgs, 0, True, out=True, peer=c_addr)) == {"10.1.0.0/24",
                                                                                          "10.2.0.0/24"})
        await until(lambda: set(nc.received()) == {"10.1.0.0/24", "10.2.0.0/24"})
        upd = route_state(st.msgs, 0, True, out=True, peer=c_addr)["10.1.0.0/24"]
        got = codec.parse_update(upd[19:], DEFAULT_CONTEXT)
        # As sent to C: our AS first, MED 7 from the export policy.
        assert b"\x80\x04\x04\x00\x00\x00\x07" in got.attrs
        assert nc.received()["10.1.0.0/24"].med == 7
        # A's side: nothing back to its own source (split horizon).
        assert not route_state(st.msgs, 0, True, out=True, peer=a_addr)
        await a.stop()
        await until(lambda: not route_state(st.msgs, 0, True, out=True, peer=c_addr), what="withdrawn at C")
        await until(lambda: not nc.received())
        await c.stop()
        await dut.stop()
        await st.close()

    run(main(), timeout=60)


def test_station_reconnects_with_backoff_and_reload_changes_stations(run, tmp_path):
    async def main():
        host = addr()
        # A port nobody listens on yet: the client retries with backoff.
        probe = await StationServer().start(host)
        port = probe.port
        await probe.close()
        a_addr = addr()
        bmp = '[[bmp]]\naddress = "%s"\nport = %d\nstats-interval = 0\n' % (host, port)
        dut = DUT(extra=bmp, neighbors=[neighbor_toml(a_addr, 65001)], path=tmp_path / "f.toml")
        d = await dut.start()
        a, na = await peer(dut, 65001, a_addr)
        await na.wait_established(5)
        a.announce(["10.1.0.0/24"])
        await until(lambda: d.rib("ipv4-unicast"))
        await asyncio.sleep(1.5)
        assert not d.bmp.stations[0].up
        # The station starts listening: the client gets there by itself and
        # the station gets Initiation, Peer Up and the peer's table.
        st = StationServer()
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        st.server = await asyncio.start_server(st.handle, sock=sock)
        st.tasks = []
        await until(lambda: route_state(st.msgs, 0, False), timeout=10, what="reconnect and dump")
        kinds = [m[1] for m in st.msgs]
        assert kinds[0] == bm.INITIATION and kinds.index(bm.PEER_UP) < kinds.index(bm.ROUTE_MONITORING)
        # A reload to a second station: the first one is told Termination.
        st2 = await StationServer().start(host)
        dut.path.write_text(dut.text(extra='[[bmp]]\naddress = "%s"\nport = %d\npolicy = "post"\n' % (
            host, st2.port)))
        await d.reload()
        await until(lambda: st.of(bm.TERMINATION), what="termination to the old station")
        await until(lambda: set(route_state(st2.msgs, 0, True)) == {"10.1.0.0/24"}, what="the new station's dump")
        assert d.bmp.stations[0].cfg.port == st2.port
        await a.stop()
        await dut.stop()
        await st.close()
        await st2.close()

    run(main(), timeout=60)


def test_lookup_queue_bound_drops_and_resyncs(run, monkeypatch):
    from fastbgp.daemon import bmp_feed

    monkeypatch.setattr(bmp_feed, "WORK_MAX", 20)

    async def main():
        host = addr()
        st = await StationServer().start(host)
        a_addr = addr()
        bmp = '[[bmp]]\naddress = "%s"\nport = %d\npolicy = "pre"\nloc-rib = true\nstats-interval = 0\n' % (
            host, st.port)
        dut = DUT(extra=bmp, neighbors=[neighbor_toml(a_addr, 65001)])
        d = await dut.start()
        d.bmp.stations[0].backoff_min = 0.2
        await until(lambda: d.bmp.stations[0].synced, what="station synced")
        a, na = await peer(dut, 65001, a_addr)
        await na.wait_established(5)
        # One UPDATE naming 50 prefixes: past the bound at once.
        a.announce(["10.7.%d.0/24" % i for i in range(50)])
        await until(lambda: d.bmp.drops >= 1, what="dropped for the lookup queue")
        # Reconnected: the dump has the whole Loc-RIB.
        await until(lambda: len(route_state([m for m in st.msgs if m[0] == st.conns], 3, False)) == 50
                    and st.conns >= 2, timeout=20, what="re-synced Loc-RIB")
        await a.stop()
        await dut.stop()
        await st.close()

    run(main(), timeout=60)


def test_duplicate_advertisements_statistic(run):
    async def main():
        host = addr()
        st = await StationServer().start(host)
        a_addr = addr()
        bmp = '[[bmp]]\naddress = "%s"\nport = %d\nstats-interval = 1\n' % (host, st.port)
        dut = DUT(extra=bmp, neighbors=[neighbor_toml(a_addr, 65001)])
        d = await dut.start()
        a, na = await peer(dut, 65001, a_addr)
        await na.wait_established(5)
        a.announce(["10.1.0.0/24", "10.1.1.0/24"], as_path=[65100])
        await until(lambda: len(d.rib("ipv4-unicast")) == 2)
        # ROUTE-REFRESH: the peer sends both again, unchanged: two known
        # duplicates (RFC 7854 §4.8 type 1); a changed one is not.
        a.announce(["10.1.1.0/24"], as_path=[65100, 65101])
        await until(lambda: d.rib("ipv4-unicast", "10.1.1.0/24")[0].as_path == [65001, 65100, 65101])
        await d.soft_reset(a_addr, "in")
        await until(lambda: any(_stat(m[3], 1) == 2 and _stat(m[3], 0) == 0
                                for m in st.of(bm.STATISTICS_REPORT) if m[2][0] == 0),
                    timeout=5, what="two duplicate advertisements")
        await a.stop()
        await dut.stop()
        await st.close()

    run(main(), timeout=60)


def test_prefix_key_matches_the_rib_text():
    from fastbgp.daemon.bmp_feed import prefix_key

    assert prefix_key((1, 1), bytes([24, 10, 1, 2])) == "10.1.2.0/24"
    assert prefix_key((1, 1), bytes([0])) == "0.0.0.0/0"
    assert prefix_key((1, 1), bytes([32, 192, 0, 2, 1])) == "192.0.2.1/32"
    assert prefix_key((2, 1), bytes([48, 0x20, 0x01, 0x0D, 0xB8, 0, 1])) == "2001:db8:1::/48"
    assert prefix_key((2, 1), bytes([128]) + bytes(15) + b"\x01") == "::1/128"


def test_ipv6_post_policy_and_loc_rib(run):
    async def main():
        host = addr()
        st = await StationServer().start(host)
        a_addr = addr()
        bmp = '[[bmp]]\naddress = "%s"\nport = %d\npolicy = "both"\nloc-rib = true\nstats-interval = 0\n' % (
            host, st.port)
        dut = DUT(extra=bmp, neighbors=[neighbor_toml(a_addr, 65001, families=["ipv4-unicast", "ipv6-unicast"])])
        d = await dut.start()
        a, na = await peer(dut, 65001, a_addr, families=["ipv4-unicast", "ipv6-unicast"])
        await na.wait_established(5)
        a.announce(["2001:db8:1::/48", "2001:db8:2::/48"], next_hop="2001:db8::1")
        for post, ptype in ((False, 0), (True, 0), (False, 3)):
            await until(lambda: set(route_state(st.msgs, ptype, post)) == {"2001:db8:1::/48", "2001:db8:2::/48"},
                        what="IPv6 routes (%s, %s)" % (ptype, post))
        upd = route_state(st.msgs, 3, False)["2001:db8:1::/48"]
        p = codec.parse_update(upd[19:], DEFAULT_CONTEXT)
        assert p.mp_reach[0] == 2 and bytes(p.mp_reach[2])[:16] == bytes.fromhex("20010db8" + "00" * 11 + "01")
        a.withdraw(["2001:db8:2::/48"])
        await until(lambda: set(route_state(st.msgs, 3, False)) == {"2001:db8:1::/48"}
                    and set(route_state(st.msgs, 0, True)) == {"2001:db8:1::/48"})
        assert set(route_state(st.msgs, 3, False)) == {r.prefix for r in d.rib("ipv6-unicast") if r.best}
        await a.stop()
        await dut.stop()
        await st.close()

    run(main(), timeout=60)


def _stat(body, t):
    n = int.from_bytes(body[:4], "big")
    i = 4
    for _ in range(n):
        tt, ln = struct.unpack_from(">HH", body, i)
        if tt == t:
            return int.from_bytes(body[i + 4:i + 4 + ln], "big")
        i += 4 + ln
    return None


def test_slow_station_dropped_counted_and_resynced(run, caplog):
    async def main():
        host = addr()
        st = await StationServer(read=False).start(host)
        a_addr = addr()
        bmp = ('[[bmp]]\naddress = "%s"\nport = %d\npolicy = "post"\nloc-rib = true\nstats-interval = 0\n'
               'max-queued-bytes = 65536\n' % (host, st.port))
        dut = DUT(extra=bmp, neighbors=[neighbor_toml(a_addr, 65001)])
        d = await dut.start()
        d.bmp.targets[0].station.backoff_min = 0.2
        a, na = await peer(dut, 65001, a_addr)
        await na.wait_established(5)
        await until(lambda: d.bmp.stations[0].up, what="station connected")
        # Distinct attributes per prefix: many UPDATEs, far past the bound.
        for i in range(3000):
            a.announce(["10.%d.%d.0/24" % (i // 256, i % 256)], as_path=[65100, i + 1])
        await until(lambda: d.bmp.drops >= 1, timeout=20, what="the station dropped")
        assert d.bmp.stations[0].drops >= 1
        assert any(r.levelno == logging.WARNING and "dropped" in r.getMessage() for r in caplog.records)
        from fastbgp.control.metrics import BMP_STATION_DROPS
        assert BMP_STATION_DROPS.labels(d.bmp.stations[0].name)._value.get() >= 1
        # Now a station that reads: the reconnect gets the whole table.
        st.read = True
        await until(lambda: d.bmp.stations[0].synced, timeout=20, what="reconnected and dumped")
        await until(lambda: len(route_state([m for m in st.msgs if m[0] == st.conns], 3, False)) == 3000,
                    timeout=20, what="fresh Loc-RIB dump")
        assert st.of(bm.INITIATION, st.conns)
        await a.stop()
        await dut.stop()
        await st.close()

    caplog.set_level(logging.WARNING, logger="fastbgp.bmp")
    run(main(), timeout=90)


# ----------------------------------------------------------------------------- tshark


def _pcap(payload, port):
    """A pcap (LINKTYPE_RAW IPv4) of one TCP stream carrying ``payload``."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101)]
    seq = 1000
    for k in range(0, len(payload), 1400):
        data = payload[k:k + 1400]
        tcp = struct.pack(">HHIIBBHHH", 40000, port, seq, 1, 5 << 4, 0x18, 65535, 0, 0) + data
        ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 1, 0, 64, 6, 0, bytes((192, 0, 2, 1)),
                         bytes((192, 0, 2, 2))) + tcp
        out.append(struct.pack("<IIII", 1, k, len(ip), len(ip)) + ip)
        seq += len(data)
    return b"".join(out)


@pytest.mark.skipif(TSHARK is None, reason="tshark is not installed")
def test_tshark_decodes_every_message(tmp_path):
    op = codec.build_open(65000, 90, 1, [(65, (65000).to_bytes(4, "big"))])
    upd = codec.pack_updates(bytes.fromhex("400101004002004003040a000001"), b"\x18\xcb\x00\x71",
                             DEFAULT_CONTEXT)[0]
    h = bm.peer_header("192.0.2.1", 65000, 1, timestamp=1600000000)
    lr = bm.loc_rib_header(65000, 1)
    msgs = [bm.initiation("r1", "fastbgp test"),
            bm.peer_up(h, "192.0.2.2", 179, 40000, op, op),
            bm.route_monitoring(h, upd),
            bm.route_monitoring(bm.peer_header("192.0.2.1", 65000, 1, post_policy=True), upd),
            bm.peer_up(lr, None, 0, 0, op, op),
            bm.route_monitoring(lr, upd),
            bm.statistics_report(h, [(bm.STAT_REJECTED, 1), (bm.STAT_ADJ_RIB_IN, 2)]),
            bm.peer_down(h, bm.DOWN_REMOTE_NOTIFICATION, codec.build_notification(6, 2, b"")),
            bm.termination()]
    cap = tmp_path / "bmp.pcap"
    cap.write_bytes(_pcap(b"".join(msgs), 11019))
    res = subprocess.run([TSHARK, "-r", str(cap), "-d", "tcp.port==11019,bmp", "-T", "json"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    text = res.stdout
    assert "_ws.malformed" not in text and "_ws.expert" not in text
    # One packet may hold several BMP messages (JSON would merge their keys).
    res = subprocess.run([TSHARK, "-r", str(cap), "-d", "tcp.port==11019,bmp", "-T", "fields", "-e", "bmp.type",
                          "-e", "bmp.peer.flags.post_policy", "-E", "occurrence=a", "-E", "aggregator=,"],
                         capture_output=True, text=True, timeout=60)
    rows = [line.split("\t") for line in res.stdout.splitlines() if line.strip()]
    types = [int(t) for r in rows for t in r[0].split(",")]
    flags = [f for r in rows for f in r[1].split(",") if f]
    assert types == [4, 3, 0, 0, 3, 0, 1, 2, 5]
    assert flags.count("1") + flags.count("True") == 1, flags
    # The Loc-RIB Peer Up with its VRF/Table Name TLV (RFC 9069 §5.3 makes it
    # a MUST; RFC 7854 §4.10 allows Information TLVs after the OPENs): this
    # tshark's dissector decodes the header and both OPENs, then does not
    # know Peer Up TLVs and reports the rest as malformed BGP -- its gap.
    cap.write_bytes(_pcap(bm.peer_up(lr, None, 0, 0, op, op, table_name="global"), 11019))
    res = subprocess.run([TSHARK, "-r", str(cap), "-d", "tcp.port==11019,bmp", "-V"],
                         capture_output=True, text=True, timeout=60)
    out = res.stdout
    assert out.count("OPEN Message (1)") == 2 and "Type: Peer Up Notification (3)" in out
    assert out.index("Malformed") > out.rindex("OPEN Message (1)") if "Malformed" in out else True


def test_api_announcements_reach_stations_live(run):
    """Our own routes announced / withdrawn through the API
    (Originator.observe) reach the Loc-RIB (RFC 9069) and Adj-RIB-Out
    (RFC 8671) views at once, not with the next dump; a route offered to C
    only is in C's Adj-RIB-Out and not in A's."""
    from fastbgp.control import contract as ctl

    async def main():
        host = addr()
        st = await StationServer().start(host)
        a_addr, c_addr = addr(), addr()
        bmp = ('[[bmp]]\naddress = "%s"\nport = %d\npolicy = "pre"\nloc-rib = true\nadj-rib-out = true\n'
               'stats-interval = 0\n' % (host, st.port))
        dut = DUT(extra=bmp, neighbors=[neighbor_toml(a_addr, 65001), neighbor_toml(c_addr, 65003)])
        d = await dut.start()
        a, na = await peer(dut, 65001, a_addr)
        c, nc = await peer(dut, 65003, c_addr)
        await na.wait_established(5)
        await nc.wait_established(5)
        await until(lambda: len(st.of(bm.PEER_UP)) == 3, what="Peer Up of A, C and the Loc-RIB")
        await d.announce(ctl.Announce(prefixes=["10.5.0.0/24", "10.5.1.0/24"], next_hop="192.0.2.7"))
        await d.announce(ctl.Announce(prefixes=["10.5.2.0/24"], next_hop="192.0.2.7", neighbors=[c_addr]))
        await until(lambda: set(route_state(st.msgs, 3, False)) == {"10.5.0.0/24", "10.5.1.0/24", "10.5.2.0/24"},
                    what="our routes in the station's Loc-RIB")
        await until(lambda: set(route_state(st.msgs, 0, True, out=True, peer=c_addr)) == {
            "10.5.0.0/24", "10.5.1.0/24", "10.5.2.0/24"}, what="C's Adj-RIB-Out")
        await until(lambda: set(route_state(st.msgs, 0, True, out=True, peer=a_addr)) == {
            "10.5.0.0/24", "10.5.1.0/24"}, what="A's Adj-RIB-Out, without C's route")
        await until(lambda: "10.5.2.0/24" in nc.received())
        assert "10.5.2.0/24" not in na.received()
        await d.withdraw(ctl.Announce(prefixes=["10.5.1.0/24", "10.5.2.0/24"]))
        await until(lambda: set(route_state(st.msgs, 3, False)) == {"10.5.0.0/24"}, what="Loc-RIB withdrawals")
        await until(lambda: set(route_state(st.msgs, 0, True, out=True, peer=c_addr)) == {"10.5.0.0/24"},
                    what="C's Adj-RIB-Out withdrawals")
        assert st.conns == 1  # no reconnection, no second dump
        for s in (a, c):
            await s.stop()
        await dut.stop()
        await st.close()

    run(main(), timeout=60)
