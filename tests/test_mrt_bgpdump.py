"""``fastbgp mrt dump -m`` against bgpdump's own output.

1. Every file of the bgpdump test corpus: our output must equal, line for
   line, bgpdump's expected ``-m`` output (test_expect/<file>.bgp.gz), with
   both codec implementations.
2. Hand-built records exercising bgpdump's quirks; the expected lines were
   produced by Debian's bgpdump 1.6.2 and are checked against the installed
   binary as well when there is one.
"""

import gzip
import shutil
import struct
import subprocess

import pytest

from fastbgp.mrt import dump as mrt_dump, reader as mrt, writer as mrt_writer
from fastbgp.wire.as4 import encode_attr, encode_segments

FILES = [
    "bview.20020722.2337.gz",
    "bview.64k_stream_overflow.gz",
    "bview.ipv4_unicast_add_path.gz",
    "bview.ipv6_unicast_add_path.gz",
    "updates.20020722.2238.gz",
    "updates.20070211.0141.gz",
    "updates.20071015.1505.gz",
    "updates.20100722.2015.gz",
    "updates.20160811.1600.gz",
    "updates.et-header.2015.gz",
    "updates.long_withdrawal.gz",
    "updates.nlri_mask_trailing_bits.gz",
]


@pytest.mark.parametrize("name", FILES)
def test_corpus_matches_bgpdump(codec, corpora, name):
    data = corpora / "bgpdump" / "test_data" / name
    with gzip.open(corpora / "bgpdump" / "test_expect" / (name + ".bgp.gz"), "rt") as f:
        expected = f.read().splitlines()
    got = "".join(mrt_dump.iter_text(str(data), "m", codec)).splitlines()
    bad = [(i + 1, g, e) for i, (g, e) in enumerate(zip(got, expected)) if g != e]
    assert not bad, "first differing line %d:\n ours: %s\n bgpdump: %s" % bad[0]
    assert len(got) == len(expected)


def test_corpus_files_are_all_covered(corpora):
    assert sorted(p.name for p in (corpora / "bgpdump" / "test_data").iterdir()) == FILES


# ---------------------------------------------------------------- quirks


def A(t, v):
    flags = {1: 0x40, 2: 0x40, 3: 0x40, 4: 0x80, 5: 0x40, 6: 0x40, 14: 0x80, 15: 0x80}.get(t, 0xC0)
    return encode_attr(flags, t, v)


def path(segs, width=4):
    return A(2, encode_segments(segs, width))


def origin(o):
    return A(1, bytes((o,)))


def nh(ip):
    return A(3, mrt.ip_bytes(ip))


def pfx(p, pid=None):
    _afi, a, ln = mrt.prefix_bytes(p)
    return (b"" if pid is None else struct.pack(">I", pid)) + bytes((ln,)) + a[: (ln + 7) // 8]


def mpr(afi, safi, hop, nlri):
    return A(14, struct.pack(">HBB", afi, safi, len(hop)) + hop + b"\x00" + nlri)


def mpu(afi, safi, nlri):
    return A(15, struct.pack(">HB", afi, safi) + nlri)


def upd(withdrawn=b"", attrs=b"", nlri=b""):
    body = struct.pack(">H", len(withdrawn)) + withdrawn + struct.pack(">H", len(attrs)) + attrs + nlri
    return b"\xff" * 16 + struct.pack(">HB", len(body) + 19, 2) + body


def msg(m, sub=4, et=False, us=0, peer="10.0.0.1", local="10.0.0.2"):
    return mrt_writer.encode_bgp4mp_message(1000, m, peer, 65001, local, 65002, subtype=sub, et=et, microsecond=us)


def ip(s):
    return mrt.ip_bytes(s)


BASE = origin(0) + path([(2, [65001, 65010])]) + nh("10.0.0.1")
BASE2 = origin(0) + path([(2, [65001, 65010])], 2) + nh("10.0.0.1")
H = "BGP4MP|1000|A|10.0.0.1|65001|"
T = "|65001 65010|IGP|10.0.0.1|0|0||NAG||"

# (what, records, bgpdump -m output)
MESSAGE_CASES = [
    ("no attributes: INCOMPLETE, 255.255.255.255", msg(upd(nlri=pfx("1.0.0.0/24"))), [H + "1.0.0.0/24||INCOMPLETE|255.255.255.255|0|0||NAG||"]),
    ("no NEXT_HOP", msg(upd(attrs=origin(1) + path([(2, [1, 2])]), nlri=pfx("1.0.2.0/24"))), [H + "1.0.2.0/24|1 2|EGP|255.255.255.255|0|0||NAG||"]),
    (
        "segment types",
        msg(upd(attrs=origin(2) + path([(3, [7, 8]), (4, [9, 10]), (2, [1, 2]), (1, [5, 6, 4]), (2, [3])]) + nh("10.0.0.9"), nlri=pfx("1.0.3.0/24"))),
        [H + "1.0.3.0/24|(7 8) [9,10] 1 2 {5,6,4} 3|INCOMPLETE|10.0.0.9|0|0||NAG||"],
    ),
    (
        "communities",
        msg(upd(attrs=BASE + A(8, struct.pack(">9I", 0xFFFFFF01, 0xFFFFFF02, 0xFFFFFF03, 0xFFFF0000, 0xFFFF029A, 0xFFFFFF04, 0x00010002, 0xFFFFFFFF, 0)), nlri=pfx("1.0.4.0/24"))),
        [H + "1.0.4.0/24|65001 65010|IGP|10.0.0.1|0|0|no-export no-advertise local-AS 65535:0 65535:666 65535:65284 1:2 65535:65535 0:0|NAG||"],
    ),
    (
        "AG and aggregator",
        msg(upd(attrs=BASE + A(6, b"") + A(7, struct.pack(">I", 4200000000) + ip("1.2.3.4")), nlri=pfx("1.0.5.0/24"))),
        [H + "1.0.5.0/24|65001 65010|IGP|10.0.0.1|0|0||AG|4200000000 1.2.3.4|"],
    ),
    (
        "LOCAL_PREF before MED, unsigned",
        msg(upd(attrs=BASE + A(4, struct.pack(">I", 4294967295)) + A(5, struct.pack(">I", 3000000000)), nlri=pfx("1.0.6.0/24"))),
        [H + "1.0.6.0/24|65001 65010|IGP|10.0.0.1|3000000000|4294967295||NAG||"],
    ),
    ("IPv4 MP_REACH next hop", msg(upd(attrs=BASE + mpr(1, 1, ip("10.9.9.9"), pfx("2.0.0.0/8")), nlri=pfx("1.0.7.0/24"))), [H + "1.0.7.0/24" + T, H + "2.0.0.0/8|65001 65010|IGP|10.9.9.9|0|0||NAG||"]),
    (
        "global + link-local",
        msg(upd(attrs=origin(0) + path([(2, [1])]) + mpr(2, 1, ip("2001:db8::1") + ip("fe80::1"), pfx("2001:db8:1::/48") + pfx("2001:db8:2::/48")))),
        [H + "2001:db8:1::/48|1|IGP|2001:db8::1|0|0||NAG||", H + "2001:db8:2::/48|1|IGP|2001:db8::1|0|0||NAG||"],
    ),
    ("multicast", msg(upd(attrs=origin(0) + path([(2, [1])]) + nh("10.0.0.1") + mpr(1, 2, ip("10.7.7.7"), pfx("3.0.0.0/8")))), [H + "3.0.0.0/8|1|IGP|10.7.7.7|0|0||NAG||"]),
    (
        "withdrawals first",
        msg(upd(withdrawn=pfx("9.9.9.0/24"), attrs=BASE + mpu(2, 1, pfx("2001:db8:9::/48")) + mpr(2, 1, ip("2001:db8::1"), pfx("2001:db8:a::/48")), nlri=pfx("1.0.8.0/24"))),
        ["BGP4MP|1000|W|10.0.0.1|65001|9.9.9.0/24", "BGP4MP|1000|W|10.0.0.1|65001|2001:db8:9::/48", H + "1.0.8.0/24" + T, H + "2001:db8:a::/48|65001 65010|IGP|2001:db8::1|0|0||NAG||"],
    ),
    (
        "ADD-PATH",
        msg(upd(withdrawn=pfx("9.9.8.0/24", 7), attrs=BASE, nlri=pfx("1.0.9.0/24", 5)), sub=9),
        ["BGP4MP_AP|1000|W|10.0.0.1|65001|9.9.8.0/24|7", "BGP4MP_AP|1000|A|10.0.0.1|65001|1.0.9.0/24|5" + T],
    ),
    ("MESSAGE_AS4_LOCAL", msg(upd(attrs=BASE, nlri=pfx("1.0.10.0/24")), sub=7), ["BGP4MP_LOCAL|1000|A|10.0.0.1|65001|1.0.10.0/24" + T]),
    ("MESSAGE_LOCAL_ADDPATH prints the local side", msg(upd(attrs=BASE2, nlri=pfx("1.0.9.0/24", 5)), sub=10), ["BGP4MP_AP|1000|A|10.0.0.2|65002|1.0.9.0/24|5" + T]),
    ("ET + LOCAL", msg(upd(attrs=BASE, nlri=pfx("1.0.9.0/24")), sub=7, et=True, us=5), ["BGP4MP_ET_LOCAL|1000.000005|A|10.0.0.1|65001|1.0.9.0/24" + T]),
    ("ET + ADDPATH", msg(upd(attrs=BASE, nlri=pfx("1.0.9.0/24", 5)), sub=9, et=True, us=5), ["BGP4MP_ET_AP|1000.000005|A|10.0.0.1|65001|1.0.9.0/24|5" + T]),
    ("AS4_PATH ignored in AS4 sessions", msg(upd(attrs=BASE + A(17, encode_segments([(2, [99, 98])], 4)), nlri=pfx("1.0.12.0/24"))), [H + "1.0.12.0/24" + T]),
    (
        "AS4_PATH merge",
        msg(upd(attrs=origin(0) + path([(2, [1, 23456]), (1, [23456, 5])], 2) + nh("10.0.0.1") + A(17, encode_segments([(2, [4200000001]), (1, [4200000002, 5])], 4)), nlri=pfx("1.0.14.0/24")), sub=1),
        [H + "1.0.14.0/24|1 4200000001 {4200000002,5}|IGP|10.0.0.1|0|0||NAG||"],
    ),
    (
        "AS4_AGGREGATOR",
        msg(
            upd(
                attrs=origin(0) + path([(2, [1])], 2) + nh("10.0.0.1") + A(7, struct.pack(">H", 23456) + ip("1.2.3.4")) + A(18, struct.pack(">I", 4200000009) + ip("1.2.3.5")), nlri=pfx("1.0.15.0/24")
            ),
            sub=1,
        ),
        [H + "1.0.15.0/24|1|IGP|10.0.0.1|0|0||NAG|4200000009 1.2.3.5|"],
    ),
    (
        "AGGREGATOR not AS_TRANS: AS4_* ignored",
        msg(
            upd(
                attrs=origin(0)
                + path([(2, [1, 23456, 3])], 2)
                + nh("10.0.0.1")
                + A(7, struct.pack(">H", 7) + ip("1.2.3.4"))
                + A(18, struct.pack(">I", 4200000009) + ip("1.2.3.5"))
                + A(17, encode_segments([(2, [4200000001, 3])], 4)),
                nlri=pfx("1.1.0.0/24"),
            ),
            sub=1,
        ),
        [H + "1.1.0.0/24|1 23456 3|IGP|10.0.0.1|0|0||NAG|7 1.2.3.4|"],
    ),
    (
        "AS4_PATH longer than AS_PATH ignored",
        msg(upd(attrs=origin(0) + path([(2, [1])], 2) + nh("10.0.0.1") + A(17, encode_segments([(2, [4200000001, 4200000002, 3])], 4)), nlri=pfx("1.0.16.0/24")), sub=1),
        [H + "1.0.16.0/24|1|IGP|10.0.0.1|0|0||NAG||"],
    ),
    (
        "large and extended communities not shown",
        msg(upd(attrs=BASE + A(16, bytes.fromhex("0002fde800000064")) + A(32, struct.pack(">III", 1, 2, 3)), nlri=pfx("1.0.17.0/24"))),
        [H + "1.0.17.0/24" + T],
    ),
    ("End-of-RIB and attribute-only UPDATEs print nothing", msg(upd()) + msg(upd(attrs=BASE)), []),
    ("non-UPDATE messages print nothing", msg(b"\xff" * 16 + b"\x00\x13\x04") + msg(b"\xff" * 16 + b"\x00\x15\x03\x06\x02"), []),
    ("IPv6 peer", msg(upd(attrs=BASE, nlri=pfx("1.0.18.0/24")), peer="2001:db8:0:5:1:2:3:4", local="2001:db8::6"), ["BGP4MP|1000|A|2001:db8::5:1:2:3:4|65001|1.0.18.0/24" + T]),
    (
        "STATE",
        mrt_writer.encode_state_change(1000, 3, 4, "10.0.0.1", 65001, "10.0.0.2", 65002, microsecond=42) + mrt_writer.encode_state_change(1000, 1, 2, "::5", 65001, "::6", 65002, as4=False, et=False),
        ["BGP4MP_ET|1000.000042|STATE|10.0.0.1|65001|3|4", "BGP4MP|1000|STATE|::0.0.0.5|65001|1|2"],
    ),
    (
        "ORIGIN out of range, NEXT_HOP 0.0.0.0, empty AS_SEQUENCE (the codec rejects all three)",
        msg(upd(attrs=origin(5) + path([(2, [1])]) + nh("10.0.0.1"), nlri=pfx("1.0.22.0/24")))
        + msg(upd(attrs=origin(0) + path([(2, [1])]) + nh("0.0.0.0"), nlri=pfx("1.0.23.0/24")))
        + msg(upd(attrs=origin(0) + path([(2, [])]) + nh("10.0.0.1"), nlri=pfx("1.0.24.0/24"))),
        [H + "1.0.22.0/24|1|INCOMPLETE|10.0.0.1|0|0||NAG||", H + "1.0.23.0/24|1|IGP|0.0.0.0|0|0||NAG||", H + "1.0.24.0/24||IGP|10.0.0.1|0|0||NAG||"],
    ),
    (
        "2-octet session the codec rejects: AS4 merge in the lenient path, trailing partial prefix",
        msg(
            upd(
                attrs=origin(5)
                + path([(2, [1, 23456, 3])], 2)
                + nh("10.0.0.1")
                + A(7, struct.pack(">H", 23456) + ip("1.2.3.4"))
                + A(18, struct.pack(">I", 4200000009) + ip("1.2.3.5"))
                + A(17, encode_segments([(2, [4200000001, 3])], 4)),
                nlri=pfx("1.2.0.0/24"),
            ),
            sub=1,
        )
        + msg(upd(attrs=origin(0) + path([(2, [1, 2])], 2) + nh("224.0.0.1") + A(6, b""), nlri=pfx("1.2.1.0/24") + b"\x18\x01"), sub=1),
        [H + "1.2.0.0/24|1 4200000001 3|INCOMPLETE|10.0.0.1|0|0||NAG|4200000009 1.2.3.5|", H + "1.2.1.0/24|1 2|IGP|224.0.0.1|0|0||AG||"],
    ),
]


def _rib_cases():
    base = origin(0) + path([(2, [65001, 65010])])
    peers = [mrt.Peer("1.1.1.1", "10.0.0.1", 65001), mrt.Peer("2.2.2.2", "2001:db8::1", 4200000000), mrt.Peer("3.3.3.3", "10.0.0.3", 65003, as4=False)]

    def abbr(hop):
        return A(14, bytes((len(hop),)) + hop)

    records = [
        mrt_writer.encode_peer_index(2000, "9.9.9.9", peers, "view1"),
        mrt_writer.encode_rib(
            2000,
            0,
            "10.1.0.0/16",
            [
                (0, 1500, base + nh("10.0.0.1")),
                (
                    2,
                    1600,
                    base + nh("10.0.0.3") + A(4, struct.pack(">I", 5)) + A(5, struct.pack(">I", 7)) + A(8, struct.pack(">I", 0xFFFFFF01)) + A(6, b"") + A(7, struct.pack(">I", 9) + ip("1.2.3.4")),
                ),
            ],
        ),
        mrt_writer.encode_rib(2000, 1, "10.2.0.0/16", [(1, 1500, base + abbr(ip("10.0.0.7")) + nh("10.0.0.1"))]),
        mrt_writer.encode_rib(2000, 2, "10.3.0.0/16", [(1, 1500, base + abbr(ip("2001:db8::7")))]),
        mrt_writer.encode_rib(2000, 3, "2001:db8:1::/48", [(1, 1500, base + abbr(ip("2001:db8::7") + ip("fe80::7"))), (0, 1500, base + abbr(ip("fe80::9")))]),
        mrt_writer.encode_rib(2000, 4, "2001:db8:2::/48", [(1, 1500, base + nh("10.0.0.1")), (0, 1500, base)]),
        # bgpdump -m prints no multicast or RIB_GENERIC records, nor empty ones.
        mrt_writer.encode_rib(2000, 5, "10.4.0.0/16", [(1, 1500, base + nh("10.0.0.1"))], subtype=3),
        mrt_writer.encode_rib(2000, 6, "2001:db8:3::/48", [(1, 1500, base + abbr(ip("2001:db8::7")))], subtype=5),
        mrt_writer.encode_header(2000, 13, 6, struct.pack(">IHB", 7, 1, 1) + pfx("10.5.0.0/16") + struct.pack(">HHIH", 1, 0, 1500, len(base + nh("10.0.0.1"))) + base + nh("10.0.0.1")),
        mrt_writer.encode_rib(2000, 10, "10.7.0.0/16", []),
        mrt_writer.encode_rib(2000, 9, "10.6.0.0/16", [(0, 1500, base + nh("10.0.0.1"), 17), (2, 1500, base + nh("10.0.0.1"), 18)]),
        # A 2-octet AS_PATH where 4 octets are due.
        mrt_writer.encode_rib(2000, 11, "10.8.0.0/16", [(0, 1500, origin(0) + path([(2, [1, 2])], 2) + nh("10.0.0.1"))]),
    ]
    v2 = "TABLE_DUMP2|2000|B|"
    lines = [
        v2 + "10.0.0.1|65001|10.1.0.0/16|65001 65010|IGP|10.0.0.1|0|0||NAG||",
        v2 + "10.0.0.3|65003|10.1.0.0/16|65001 65010|IGP|10.0.0.3|7|5|no-export|AG|9 1.2.3.4|",
        v2 + "2001:db8::1|4200000000|10.2.0.0/16|65001 65010|IGP|10.0.0.7|0|0||NAG||",
        v2 + "2001:db8::1|4200000000|10.3.0.0/16|65001 65010|IGP|2001:db8::7|0|0||NAG||",
        v2 + "2001:db8::1|4200000000|2001:db8:1::/48|65001 65010|IGP|2001:db8::7|0|0||NAG||",
        v2 + "10.0.0.1|65001|2001:db8:1::/48|65001 65010|IGP|fe80::9|0|0||NAG||",
        v2 + "2001:db8::1|4200000000|2001:db8:2::/48|65001 65010|IGP|10.0.0.1|0|0||NAG||",
        v2 + "10.0.0.1|65001|2001:db8:2::/48|65001 65010|IGP|255.255.255.255|0|0||NAG||",
        "TABLE_DUMP2_AP|2000|B|10.0.0.1|65001|10.6.0.0/16|17|65001 65010|IGP|10.0.0.1|0|0||NAG||",
        "TABLE_DUMP2_AP|2000|B|10.0.0.3|65003|10.6.0.0/16|18|65001 65010|IGP|10.0.0.1|0|0||NAG||",
        v2 + "10.0.0.1|65001|10.8.0.0/16|! Error !|IGP|10.0.0.1|0|0||NAG||",
    ]
    return [("TABLE_DUMP_V2", b"".join(records), lines)]


def _td1_cases():
    def td1(prefix, peer, attrs, status=1, sub=1):
        _afi, a, ln = mrt.prefix_bytes(prefix)
        body = struct.pack(">HH", 0, 0) + a + struct.pack(">BBI", ln, status, 1500) + ip(peer) + struct.pack(">HH", 65001, len(attrs)) + attrs
        return mrt_writer.encode_header(3000, 12, sub, body)

    b2 = origin(0) + path([(2, [65001, 65010])], 2)
    records = [
        td1("10.9.0.0/16", "10.0.0.1", b2 + nh("10.0.0.1")),
        td1("10.9.1.0/24", "10.0.0.1", b2 + nh("10.0.0.1"), status=0),
        td1("10.9.2.1/24", "10.0.0.1", b2 + nh("10.0.0.1")),
        td1("2001:db8:5::/48", "2001:db8::1", b2 + mpr(2, 1, ip("2001:db8::9"), pfx("2001:db8:5::/48")), sub=2),
        td1("2001:db8:6::/48", "2001:db8::1", b2 + nh("10.0.0.1"), sub=2),
    ]
    t = "TABLE_DUMP|3000|B|"
    lines = [
        t + "10.0.0.1|65001|10.9.0.0/16|65001 65010|IGP|10.0.0.1|0|0||NAG||",
        t + "10.0.0.1|65001|10.9.1.0/24|65001 65010|IGP|10.0.0.1|0|0||NAG||",
        t + "10.0.0.1|65001|10.9.2.1/24|65001 65010|IGP|10.0.0.1|0|0||NAG||",
        t + "2001:db8::1|65001|2001:db8:5::/48|65001 65010|IGP|2001:db8::9|0|0||NAG||",
        t + "2001:db8::1|65001|2001:db8:6::/48|65001 65010|IGP|10.0.0.1|0|0||NAG||",
    ]
    return [("TABLE_DUMP", b"".join(records), lines)]


QUIRKS = MESSAGE_CASES + _rib_cases() + _td1_cases()


@pytest.mark.parametrize("what,data,expected", QUIRKS, ids=[q[0] for q in QUIRKS])
def test_quirks(codec, tmp_path, what, data, expected):
    path = tmp_path / "q.mrt"
    path.write_bytes(data)
    got = "".join(mrt_dump.iter_text(str(path), "m", codec)).splitlines()
    assert got == expected


@pytest.mark.skipif(shutil.which("bgpdump") is None, reason="bgpdump binary not installed (apt-get install -y bgpdump, see .ci/install-peers.sh)")
def test_quirks_against_installed_bgpdump(tmp_path):
    path = tmp_path / "all.mrt"
    path.write_bytes(b"".join(q[1] for q in QUIRKS))
    proc = subprocess.run(["bgpdump", "-m", str(path)], capture_output=True, timeout=60)
    assert proc.returncode == 0
    assert proc.stdout.decode().splitlines() == [line for q in QUIRKS for line in q[2]]


def test_ipv6_text_like_bgpdump():
    # bgpdump's inet_ntop shortens a lone zero group and writes 7 leading
    # zero groups as ::a.b.c.d (BIND style), unlike RFC 5952.
    cases = {
        "2001:7f8:30:0:2:1:0:8447": "2001:7f8:30::2:1:0:8447",
        "1:2:3:4:5:6:7:0": "1:2:3:4:5:6:7::",
        "0:1:2:3:4:5:6:7": "::1:2:3:4:5:6:7",
        "::1": "::1",
        "::": "::",
        "::5": "::0.0.0.5",
        "::ffff:1.2.3.4": "::ffff:1.2.3.4",
        "2001:db8::1": "2001:db8::1",
        "fe80::": "fe80::",
    }
    for text, want in cases.items():
        assert mrt_dump._v6(mrt.ip_bytes(text)) == want, text
