"""MRT reader/writer (fastbgp.mrt.reader, fastbgp.mrt.writer), on hand-built records of every type and
subtype, on the real files of the shared corpora, and against bgpdump.

Every reader test runs on both codec implementations (``codec`` fixture)."""

import bz2
import gzip
import io
import json
import lzma
import shutil
import struct
import subprocess

import pytest

from fastbgp.mrt import dump as mrt_dump, reader as mrt, writer as mrt_writer
from fastbgp.wire.as4 import encode_attr, encode_segments
from fastbgp.wire.types import Context

# ---------------------------------------------------------------- builders


def attr(t, v, flags=None):
    if flags is None:
        flags = {1: 0x40, 2: 0x40, 3: 0x40, 4: 0x80, 5: 0x40, 6: 0x40, 9: 0x80, 10: 0x80, 14: 0x80, 15: 0x80}.get(t, 0xC0)
    return encode_attr(flags, t, v)


def origin(o=0):
    return attr(1, bytes((o,)))


def as_path(segs, width=4):
    return attr(2, encode_segments(segs, width))


def next_hop(ip):
    return attr(3, mrt.ip_bytes(ip))


def med(v):
    return attr(4, struct.pack(">I", v))


def local_pref(v):
    return attr(5, struct.pack(">I", v))


def communities(*cs):
    return attr(8, b"".join(struct.pack(">I", c) for c in cs))


def pfx(prefix, path_id=None):
    _afi, a, ln = mrt.prefix_bytes(prefix)
    return (b"" if path_id is None else struct.pack(">I", path_id)) + bytes((ln,)) + a[: (ln + 7) // 8]


def mp_reach(afi, safi, nh, nlri):
    return attr(14, struct.pack(">HBB", afi, safi, len(nh)) + nh + b"\x00" + nlri)


def mp_unreach(afi, safi, nlri):
    return attr(15, struct.pack(">HB", afi, safi) + nlri)


def update(withdrawn=b"", attrs=b"", nlri=b""):
    body = struct.pack(">H", len(withdrawn)) + withdrawn + struct.pack(">H", len(attrs)) + attrs + nlri
    return b"\xff" * 16 + struct.pack(">HB", len(body) + 19, 2) + body


def message(msg, subtype=mrt.BGP4MP_MESSAGE_AS4, peer="192.0.2.1", peer_as=65001, local="192.0.2.2", local_as=65002,
            ts=1000, us=None):  # fmt: skip
    return mrt_writer.encode_bgp4mp_message(ts, msg, peer, peer_as, local, local_as, subtype=subtype, et=us is not None, microsecond=us)


def table_dump(prefix, peer, peer_as, attrs, ts=3000, status=1, originated=1500, view=0, seq=0):
    afi, a, ln = mrt.prefix_bytes(prefix)
    body = struct.pack(">HH", view, seq) + a + struct.pack(">BBI", ln, status, originated)
    body += mrt.ip_bytes(peer) + struct.pack(">HH", peer_as, len(attrs)) + attrs
    return mrt_writer.encode_header(ts, mrt.TABLE_DUMP, afi, body)


def rib_generic(seq, afi, safi, nlri, entries, addpath=False, ts=2000):
    out = [struct.pack(">IHB", seq, afi, safi), nlri, struct.pack(">H", len(entries))]
    for e in entries:
        pidx, orig, attrs = e[:3]
        out.append(struct.pack(">HI", pidx, orig))
        if addpath:
            out.append(struct.pack(">I", e[3]))
        out.append(struct.pack(">H", len(attrs)) + attrs)
    return mrt_writer.encode_header(ts, mrt.TABLE_DUMP_V2, mrt.RIB_GENERIC_ADDPATH if addpath else mrt.RIB_GENERIC, b"".join(out))


def abbreviated_mp(nh):
    # RFC 6396 §4.3.4: next hop length and next hop only.
    return attr(14, bytes((len(nh),)) + nh)


def read_all(data, codec, **kw):
    return list(mrt.MrtReader(io.BytesIO(data), codec=codec, **kw))


BASE = origin(0) + as_path([(2, [65001, 4200000000])]) + next_hop("192.0.2.1") + local_pref(100)
BASE2 = origin(0) + as_path([(2, [65001, 23456])], 2) + next_hop("192.0.2.1")


# ---------------------------------------------------------------- BGP4MP


@pytest.mark.parametrize("et", [False, True], ids=["BGP4MP", "BGP4MP_ET"])
@pytest.mark.parametrize("subtype", sorted(mrt.MESSAGE_SUBTYPES), ids=lambda s: mrt.SUBTYPE_NAMES[mrt.BGP4MP][s])
def test_message_subtypes(codec, subtype, et):
    as4, local, addpath = mrt.MESSAGE_SUBTYPES[subtype]
    pid = 7 if addpath else None
    attrs = BASE if as4 else BASE2
    msg = update(withdrawn=pfx("198.51.100.0/24", pid), attrs=attrs, nlri=pfx("203.0.113.0/24", pid) + pfx("10.0.0.0/8", pid))
    data = message(msg, subtype, peer_as=4200000001 if as4 else 65001, us=123456 if et else None)
    (rec,) = read_all(data, codec)
    assert isinstance(rec, mrt.Bgp4mpMessage)
    assert (rec.type, rec.subtype) == (mrt.BGP4MP_ET if et else mrt.BGP4MP, subtype)
    assert (rec.timestamp, rec.microsecond) == (1000, 123456 if et else 0)
    assert (rec.peer_ip, rec.local_ip, rec.afi) == ("192.0.2.1", "192.0.2.2", 1)
    assert (rec.peer_as, rec.local_as) == (4200000001 if as4 else 65001, 65002)
    assert (rec.as4, rec.local, rec.addpath) == (as4, local, addpath)
    assert rec.message == msg and rec.msg_type == 2 and rec.error is None
    u = rec.update
    assert (u.n_announced, u.n_withdrawn) == (2, 1)
    assert codec.unpack_prefixes(u.nlri, 1, addpath) == [(pid or 0, bytes((203, 0, 113, 0)), 24), (pid or 0, bytes((10, 0, 0, 0)), 8)]
    # The canonical block always has 4-octet AS numbers (RFC 6793).
    ctx = Context(as4=True, addpath_rx=frozenset({(1, 1)}) if addpath else frozenset())
    assert u.attrs == codec.parse_update(update(attrs=BASE if as4 else origin(0) + as_path([(2, [65001, 23456])]) + next_hop("192.0.2.1"))[19:], ctx).attrs


@pytest.mark.parametrize("as4", [False, True])
def test_state_change(codec, as4):
    data = mrt_writer.encode_state_change(77, 3, 4, "2001:db8::1", 65001, "2001:db8::2", 4200000000 if as4 else 65002, as4=as4, microsecond=9)
    data += mrt_writer.encode_state_change(78, 4, 6, "192.0.2.1", 65001, "192.0.2.2", 65002, as4=as4, et=False)
    a, b = read_all(data, codec)
    assert a == mrt.Bgp4mpStateChange(77, 9, mrt.BGP4MP_ET, 5 if as4 else 0, 65001, 4200000000 if as4 else 65002, 0, 2,
                                      "2001:db8::1", "2001:db8::2", 3, 4)  # fmt: skip
    assert (b.type, b.old_state, b.new_state, b.peer_ip) == (mrt.BGP4MP, 4, 6, "192.0.2.1")


def test_ipv6_session_and_mp_families(codec):
    nh = mrt.ip_bytes("2001:db8::1") + mrt.ip_bytes("fe80::1")
    msg = update(attrs=origin() + as_path([(2, [1])]) + mp_unreach(2, 1, pfx("2001:db8:9::/48")) + mp_reach(2, 1, nh, pfx("2001:db8:1::/48")))
    (rec,) = read_all(message(msg, peer="2001:db8::5", local="2001:db8::6"), codec)
    assert (rec.afi, rec.peer_ip) == (2, "2001:db8::5")
    assert rec.update.mp_reach == (2, 1, nh, pfx("2001:db8:1::/48"))
    assert rec.update.mp_unreach == (2, 1, pfx("2001:db8:9::/48"))


def test_non_update_messages_are_kept_raw(codec):
    keepalive = b"\xff" * 16 + b"\x00\x13\x04"
    notification = b"\xff" * 16 + b"\x00\x15\x03\x06\x02"
    recs = read_all(message(keepalive) + message(notification), codec)
    assert [r.msg_type for r in recs] == [4, 3]
    assert all(r.update is None and r.error is None for r in recs)


def test_bad_update_is_reported_not_raised(codec):
    # NLRI ending inside a prefix: the codec rejects it, the reader goes on.
    bad = update(attrs=BASE, nlri=pfx("10.1.0.0/16") + b"\x18\x01")
    recs = read_all(message(bad) + message(update(attrs=BASE, nlri=pfx("10.2.0.0/16"))), codec)
    assert recs[0].update is None and "NLRI" in recs[0].error
    assert recs[1].update.n_announced == 1


def test_addpath_without_addpath_subtype(codec):
    # BIRD 1.6 wrote ADD-PATH sessions as plain MESSAGE_AS4: a message that
    # only parses with path ids is read with them.
    msg = update(attrs=BASE, nlri=pfx("10.0.0.0/8", 1) + pfx("10.0.0.0/8", 2))
    (rec,) = read_all(message(msg), codec)
    assert rec.subtype == mrt.BGP4MP_MESSAGE_AS4 and rec.addpath and rec.error is None
    assert [p[0] for p in codec.unpack_prefixes(rec.update.nlri, 1, True)] == [1, 2]
    # -m labels such lines like the _ADDPATH subtype's, path ids included.
    lines = mrt_dump.formatter("m", codec).lines(rec)
    assert "".join(lines).splitlines() == ["BGP4MP_AP|1000|A|192.0.2.1|65001|10.0.0.0/8|%d|65001 4200000000|IGP|192.0.2.1|100|0||NAG||" % i for i in (1, 2)]


def test_bad_marker_and_length(codec):
    good = update(attrs=BASE, nlri=pfx("10.0.0.0/8"))
    recs = read_all(message(b"\x00" + good[1:]) + message(good + b"\x00") + message(good[:10]), codec)
    assert [r.update for r in recs] == [None, None, None]
    assert "marker" in recs[0].error and "length" in recs[1].error and "shorter" in recs[2].error


def test_bgp4mp_entry(codec):
    # The deprecated BGP4MP_ENTRY OpenBGPD writes (2-octet AS_PATH).
    attrs = BASE2
    body = struct.pack(">HHHH", 65000, 65001, 0, 1) + mrt.ip_bytes("192.0.2.1") + mrt.ip_bytes("192.0.2.2")
    body += struct.pack(">HHIHBB", 0, 1, 1234, 1, 1, 4) + mrt.ip_bytes("192.0.2.9") + pfx("10.0.0.0/8")
    body += struct.pack(">H", len(attrs)) + attrs
    data = mrt_writer.encode_header(5, mrt.BGP4MP, mrt.BGP4MP_ENTRY, body)
    (rec,) = read_all(data, codec)
    assert isinstance(rec, mrt.Bgp4mpEntry)
    assert (rec.prefix, rec.next_hop, rec.originated, rec.peer_as) == ("10.0.0.0/8", mrt.ip_bytes("192.0.2.9"), 1234, 65000)
    assert rec.update.n_withdrawn == 0 and rec.update.attrs
    assert mrt_writer.encode_record(rec) == data


# ---------------------------------------------------------------- TABLE_DUMP


def test_table_dump_v1(codec):
    data = table_dump("10.0.0.0/8", "192.0.2.1", 65001, BASE2, seq=1)
    v6 = origin() + as_path([(2, [65001])], 2) + mp_reach(2, 1, mrt.ip_bytes("2001:db8::1"), pfx("2001:db8::/32"))
    data += table_dump("2001:db8::/32", "2001:db8::7", 65002, v6, seq=2, status=0)
    # RFC 6396 §4.2 stores the whole address: host bits survive.
    data += table_dump("10.9.2.1/24", "192.0.2.1", 65001, BASE2, seq=3)
    a, b, c = read_all(data, codec)
    assert (a.type, a.subtype, a.prefix, a.peer_ip, a.peer_as, a.sequence, a.originated) == (12, 1, "10.0.0.0/8", "192.0.2.1", 65001, 1, 1500)
    # 2-octet AS_PATH, canonical 4-octet in the ParsedUpdate.
    assert a.update.attrs == origin(0) + as_path([(2, [65001, 23456])]) + next_hop("192.0.2.1")
    assert (b.subtype, b.prefix, b.status, b.update.mp_reach[2]) == (2, "2001:db8::/32", 0, mrt.ip_bytes("2001:db8::1"))
    assert c.prefix == "10.9.2.1/24"
    assert [mrt_writer.encode_record(r) for r in (a, b, c)] == [table_dump("10.0.0.0/8", "192.0.2.1", 65001, BASE2, seq=1), data[len(mrt_writer.encode_record(a)) : -len(mrt_writer.encode_record(c))], mrt_writer.encode_record(c)]


def test_peer_index_table(codec):
    peers = [mrt.Peer("1.1.1.1", "192.0.2.1", 65001, as4=False), mrt.Peer("2.2.2.2", "2001:db8::1", 4200000000), mrt.Peer("3.3.3.3", "192.0.2.3", 7)]
    data = mrt_writer.encode_peer_index(2000, "9.9.9.9", peers, "view-ä")
    (rec,) = read_all(data, codec)
    assert rec == mrt.PeerIndexTable(2000, 0, 13, 1, "9.9.9.9", "view-ä", tuple(peers))
    assert mrt_writer.encode_record(rec) == data


RIB_CASES = [
    (mrt.RIB_IPV4_UNICAST, "10.0.0.0/8", 1, 1),
    (mrt.RIB_IPV4_MULTICAST, "10.0.0.0/8", 1, 2),
    (mrt.RIB_IPV6_UNICAST, "2001:db8::/32", 2, 1),
    (mrt.RIB_IPV6_MULTICAST, "2001:db8::/32", 2, 2),
    (mrt.RIB_IPV4_UNICAST_ADDPATH, "10.0.0.0/8", 1, 1),
    (mrt.RIB_IPV4_MULTICAST_ADDPATH, "10.0.0.0/8", 1, 2),
    (mrt.RIB_IPV6_UNICAST_ADDPATH, "2001:db8::/32", 2, 1),
    (mrt.RIB_IPV6_MULTICAST_ADDPATH, "2001:db8::/32", 2, 2),
]


@pytest.mark.parametrize("subtype,prefix,afi,safi", RIB_CASES, ids=lambda x: mrt.SUBTYPE_NAMES[13].get(x) if isinstance(x, int) and x > 2 else None)
def test_rib_subtypes(codec, subtype, prefix, afi, safi):
    addpath = subtype >= mrt.RIB_IPV4_UNICAST_ADDPATH
    nh6 = mrt.ip_bytes("2001:db8::1") + mrt.ip_bytes("fe80::1")
    attrs_v4 = BASE + communities(0xFFFFFF01)
    attrs_mp = origin(2) + as_path([(2, [65001]), (1, [1, 2])]) + abbreviated_mp(nh6 if afi == 2 else mrt.ip_bytes("192.0.2.9"))
    entries = [(0, 1500, attrs_v4, 11 if addpath else 0), (1, 1600, attrs_mp, 12 if addpath else 0)]
    data = mrt_writer.encode_rib(2000, 5, prefix, entries, subtype=subtype)
    (rec,) = read_all(data, codec)
    assert isinstance(rec, mrt.RibRecord)
    assert (rec.subtype, rec.sequence, rec.afi, rec.safi, rec.prefix, rec.addpath) == (subtype, 5, afi, safi, prefix, addpath)
    e0, e1 = rec.entries
    assert (e0.peer_index, e0.originated, e0.path_id, e0.attrs) == (0, 1500, 11 if addpath else 0, attrs_v4)
    assert e0.update.attrs == attrs_v4 and e0.next_hop == mrt.ip_bytes("192.0.2.1")
    # The abbreviated MP_REACH_NLRI becomes a full one without NLRI.
    assert e1.update.mp_reach == (afi, safi, nh6 if afi == 2 else mrt.ip_bytes("192.0.2.9"), b"")
    assert e1.update.attrs == origin(2) + as_path([(2, [65001]), (1, [1, 2])])
    assert e1.next_hop == (nh6 if afi == 2 else mrt.ip_bytes("192.0.2.9"))
    assert mrt_writer.encode_record(rec) == data


def test_rib_full_mp_reach(codec):
    # Quagga writes the whole RFC 4760 attribute (with NLRI) in RIB entries.
    nh = mrt.ip_bytes("2001:db8::1")
    attrs = origin() + as_path([(2, [1])]) + mp_reach(2, 1, nh, pfx("2001:db8::/32"))
    (rec,) = read_all(mrt_writer.encode_rib(1, 0, "2001:db8::/32", [(0, 1, attrs)]), codec)
    assert rec.entries[0].update.mp_reach == (2, 1, nh, pfx("2001:db8::/32"))


@pytest.mark.parametrize("addpath", [False, True])
def test_rib_generic(codec, addpath):
    e = [(0, 10, BASE, 5)] if addpath else [(0, 10, BASE)]
    data = rib_generic(3, 1, 1, pfx("10.0.0.0/8"), e, addpath)
    data += rib_generic(4, 25, 70, b"\x08\x01", [(0, 10, origin())], addpath=False)  # an unknown family
    a, b = read_all(data, codec)
    assert (a.subtype, a.afi, a.safi, a.prefix, a.nlri) == (12 if addpath else 6, 1, 1, "10.0.0.0/8", pfx("10.0.0.0/8"))
    assert a.entries[0].path_id == (5 if addpath else 0) and a.entries[0].update.attrs == BASE
    assert (b.afi, b.safi, b.prefix, b.nlri) == (25, 70, "", b"\x08\x01")
    assert b"".join(mrt_writer.encode_record(r) for r in (a, b)) == data


def test_rib_entry_with_bad_attributes(codec):
    bad = origin(9) + as_path([(2, [1])])
    (rec,) = read_all(mrt_writer.encode_rib(1, 0, "10.0.0.0/8", [(0, 1, bad)]), codec)
    e = rec.entries[0]
    # ORIGIN 9: RFC 7606 treat-as-withdraw (an attribute-only parse keeps
    # the error in the ParsedUpdate rather than raising).
    assert e.update is None or e.update.action != 0


# ---------------------------------------------------------------- framing


def test_extended_lengths(codec):
    # RFC 8654: a 35,000-octet UPDATE in a BGP4MP_ET record, and a
    # TABLE_DUMP_V2 record longer than 65,535 octets.
    nlri = b"".join(pfx("2001:db8:%x::/48" % i) for i in range(5000))
    big = update(attrs=origin() + as_path([(2, [1])]) + mp_reach(2, 1, mrt.ip_bytes("2001:db8::1"), nlri))
    assert 30000 < len(big) <= 65535
    entries = [(i % 3, i, BASE + communities(*range(i % 40))) for i in range(700)]
    rib = mrt_writer.encode_rib(2, 0, "10.0.0.0/8", entries)
    assert len(rib) > 70000
    data = mrt_writer.encode_peer_index(1, "1.1.1.1", [("1.1.1.1", "192.0.2.%d" % i, 64500 + i) for i in range(3)])
    data += message(big, us=5) + rib
    for chunk in (7, 4096, mrt.CHUNK):
        recs = list(mrt.MrtReader(io.BytesIO(data), codec=codec, chunk=chunk))
        assert [type(r).__name__ for r in recs] == ["PeerIndexTable", "Bgp4mpMessage", "RibRecord"]
        assert recs[1].update.n_announced == 5000 and len(recs[2].entries) == 700
        assert b"".join(mrt_writer.encode_record(r) for r in recs) == data


@pytest.mark.parametrize("cut", [5, 12, 40])
def test_truncated_last_record(codec, cut):
    good = message(update(attrs=BASE, nlri=pfx("10.0.0.0/8")))
    last = message(update(attrs=BASE, nlri=pfx("10.1.0.0/16")))
    reader = mrt.MrtReader(io.BytesIO(good + last[:cut]), codec=codec)
    recs = list(reader)
    assert recs[0] == read_all(good, codec)[0]
    t = recs[-1]
    assert isinstance(t, mrt.TruncatedRecord) and reader.truncated is t
    assert t.offset == len(good) and len(recs) == 2
    if cut >= 12:
        assert (t.timestamp, t.type, t.subtype, t.length) == (1000, 16, 4, len(last) - 12)
        assert t.data == last[12:cut]
    else:
        assert t.data == last[:cut]


def test_truncated_compressed_stream(codec):
    data = b"".join(message(update(attrs=BASE + med(i), nlri=pfx("10.%d.0.0/16" % (i % 256)))) for i in range(3000))
    z = gzip.compress(data)
    reader = mrt.MrtReader(io.BytesIO(z[: len(z) // 2]), codec=codec)
    recs = list(reader)
    assert 0 < len(recs) < 3000
    assert reader.stream_errors == ["compressed stream ends early"]
    assert all(isinstance(r, mrt.Bgp4mpMessage) for r in recs[:-1])


def test_corrupt_and_unknown_records(codec):
    bad_afi = mrt_writer.encode_header(1, mrt.BGP4MP, mrt.BGP4MP_MESSAGE_AS4, struct.pack(">IIHH", 1, 2, 0, 7) + b"\x00" * 30)
    short = mrt_writer.encode_header(2, mrt.TABLE_DUMP_V2, mrt.RIB_IPV4_UNICAST, b"\x00\x00")
    unknown = mrt_writer.encode_header(3, 99, 1, b"hello")
    isis_et = mrt_writer.encode_header(4, 33, 0, b"pdu", microsecond=5)
    good = message(update(attrs=BASE, nlri=pfx("10.0.0.0/8")))
    reader = mrt.MrtReader(io.BytesIO(bad_afi + short + unknown + isis_et + good), codec=codec)
    a, b, c, d, e = list(reader)
    assert isinstance(a, mrt.CorruptRecord) and "family 7" in a.reason and a.offset == 0
    assert isinstance(b, mrt.CorruptRecord) and b.offset == len(bad_afi)
    assert c == mrt.UnknownRecord(3, 0, 99, 1, b"hello")
    assert d == mrt.UnknownRecord(4, 5, 33, 0, b"pdu")
    assert e.update.n_announced == 1
    assert (reader.records, reader.corrupt, reader.truncated) == (5, 2, None)
    assert [mrt_writer.encode_record(r) for r in (a, b, c, d)] == [bad_afi, short, unknown, isis_et]


def test_absurd_length_stops_the_stream(codec):
    # Garbage (or a lost framing) declaring a 3 GB record: no buffering of
    # the rest of the file, a CorruptRecord and the end of the stream.
    good = message(update(attrs=BASE, nlri=pfx("10.0.0.0/8")))
    reader = mrt.MrtReader(io.BytesIO(good + struct.pack(">IHHI", 1, 16, 4, 3 << 30) + b"x" * 5000), codec=codec, max_record=1 << 20)
    recs = list(reader)
    assert len(recs) == 2 and isinstance(recs[1], mrt.CorruptRecord) and recs[1].offset == len(good)
    assert reader.corrupt == 1 and "exceeds" in reader.stream_errors[0]


@pytest.mark.parametrize("kind", ["plain", "gz", "gz-multi", "bz2", "xz"])
def test_compression_by_magic(codec, kind, tmp_path):
    data = b"".join(message(update(attrs=BASE, nlri=pfx("10.%d.0.0/16" % i))) for i in range(50))
    blob = {
        "plain": data,
        "gz": gzip.compress(data),
        # RFC 1952 §2.2: members may be concatenated (appending writers).
        "gz-multi": gzip.compress(data[: 10 * 79]) + gzip.compress(data[10 * 79 :]),
        "bz2": bz2.compress(data),
        "xz": lzma.compress(data),
    }[kind]
    path = tmp_path / ("f." + kind)
    path.write_bytes(blob)
    recs = list(mrt.MrtReader(str(path), codec=codec, chunk=97))
    assert recs == read_all(data, codec)
    assert len(recs) == 50


# ---------------------------------------------------------------- corpora


def _raw_records(path):
    with open(path, "rb") as f:
        head = f.read(3)
    opener = gzip.open if head[:2] == b"\x1f\x8b" else bz2.open if head == b"BZh" else open
    with opener(path, "rb") as f:
        data = f.read()
    pos = 0
    while pos + 12 <= len(data):
        ln = struct.unpack_from(">I", data, pos + 8)[0]
        yield data[pos : pos + 12 + ln]
        pos += 12 + ln


def _corpus_files(corpora):
    return sorted(p for d in ("bgpdump/test_data", "mrtparse") for p in (corpora / d).iterdir())


def test_corpus_decodes_and_reencodes(corpora):
    """Every corpus record decodes without a corrupt/truncated record and
    encode_record gives back its exact bytes (compiled codec)."""
    for path in _corpus_files(corpora):
        reader = mrt.MrtReader(str(path))
        n = 0
        for rec, raw in zip(reader, _raw_records(path), strict=True):
            assert not isinstance(rec, (mrt.CorruptRecord, mrt.TruncatedRecord, mrt.UnknownRecord)), (path.name, rec)
            assert mrt_writer.encode_record(rec) == raw, path.name
            n += 1
        assert n == reader.records > 0
        assert reader.truncated is None and reader.corrupt == 0 and not reader.stream_errors


def test_mrtparse_files(codec, corpora):
    """Files written by BIRD, OpenBGPD and Quagga: every UPDATE decodes."""
    for path in sorted((corpora / "mrtparse").iterdir()):
        recs = list(mrt.MrtReader(str(path), codec=codec))
        assert recs, path.name
        for rec in recs:
            if isinstance(rec, mrt.Bgp4mpMessage) and rec.msg_type == 2:
                assert rec.update is not None and rec.error is None, (path.name, rec.error)
            for e in getattr(rec, "entries", ()):
                assert e.update is not None, path.name
        assert [type(r) for r in recs] == [type(r) for r in mrt.MrtReader(str(path), parse=False)]


def test_both_codecs_read_the_same(both_codecs, corpora):
    compiled, twin = both_codecs
    for path in sorted((corpora / "mrtparse").iterdir()) + [corpora / "bgpdump/test_data/updates.20100722.2015.gz"]:
        assert list(mrt.MrtReader(str(path), codec=compiled)) == list(mrt.MrtReader(str(path), codec=twin)), path.name


# ---------------------------------------------------------------- writer


def _peers():
    return [mrt.Peer("10.0.0.1", "192.0.2.1", 65001), mrt.Peer("10.0.0.2", "2001:db8::2", 4200000000)]


def _routes():
    v4 = BASE + communities(65001 << 16 | 1)
    v6 = origin(0) + as_path([(2, [4200000000, 3])]) + med(5)
    nh6 = mrt.ip_bytes("2001:db8::2") + mrt.ip_bytes("fe80::2")
    return [
        ("10.0.0.0/8", [(0, v4, mrt.ip_bytes("192.0.2.1"))]),
        ("10.1.0.0/16", [(0, v4, mrt.ip_bytes("192.0.2.1")), (1, v4, mrt.ip_bytes("192.0.2.7"), 0, 1234)]),
        ("2001:db8:1::/48", [(1, v6, nh6)]),
        ("2001:db8:2::/48", [(1, v6, mrt.ip_bytes("2001:db8::2")), (0, v6, mrt.ip_bytes("2001:db8::9"))]),
    ]


def _updates():
    return [
        update(attrs=BASE, nlri=pfx("203.0.113.0/24") + pfx("198.51.100.0/24")),
        update(withdrawn=pfx("203.0.113.0/24")),
        update(attrs=origin() + as_path([(2, [65001])]) + mp_reach(2, 1, mrt.ip_bytes("2001:db8::1"), pfx("2001:db8:5::/48"))),
        update(attrs=origin() + as_path([(2, [65001])]) + mp_unreach(2, 1, pfx("2001:db8:5::/48"))),
    ]


def _write_sample(w):
    w.write_state_change(5, 6, "192.0.2.1", 65001, "192.0.2.254", 65000, timestamp=1700000000.25)
    for i, m in enumerate(_updates()):
        w.write_update(m, "192.0.2.1", 65001, "192.0.2.254", 65000, timestamp=1700000000.5 + i)
    w.write_update(update(attrs=BASE, nlri=pfx("10.0.0.0/8", 9)), "192.0.2.1", 65001, "192.0.2.254", 65000, timestamp=1700000010, addpath=True)
    w.write_rib(_peers(), _routes(), timestamp=1700000100, collector_id="192.0.2.254", view_name="main")


@pytest.mark.parametrize("suffix", ["", ".gz", ".bz2"])
def test_writer_round_trip(codec, tmp_path, suffix):
    path = tmp_path / ("out.mrt" + suffix)
    with mrt_writer.MrtWriter(str(path)) as w:
        _write_sample(w)
    recs = list(mrt.MrtReader(str(path), codec=codec))
    state, *msgs, ap, pit = recs[:7]
    ribs = recs[7:]
    assert (state.type, state.subtype, state.timestamp, state.microsecond, state.new_state) == (17, 5, 1700000000, 250000, 6)
    assert [m.message for m in msgs] == _updates()
    assert [(m.type, m.subtype, m.timestamp, m.microsecond) for m in msgs] == [(17, 4, 1700000000 + i, 500000) for i in range(4)]
    assert all(m.peer_ip == "192.0.2.1" and m.peer_as == 65001 and m.local_as == 65000 and m.update for m in msgs)
    assert (ap.subtype, ap.addpath, codec.unpack_prefixes(ap.update.nlri, 1, True)) == (9, True, [(9, bytes((10, 0, 0, 0)), 8)])
    assert pit == mrt.PeerIndexTable(1700000100, 0, 13, 1, "192.0.2.254", "main", tuple(_peers()))
    assert [(r.subtype, r.sequence, r.prefix) for r in ribs] == [(2, 0, "10.0.0.0/8"), (2, 1, "10.1.0.0/16"), (4, 2, "2001:db8:1::/48"), (4, 3, "2001:db8:2::/48")]
    for rec, (_prefix, paths) in zip(ribs, _routes(), strict=True):
        for e, p in zip(rec.entries, paths, strict=True):
            assert (e.peer_index, e.update.attrs, e.next_hop) == (p[0], p[1], p[2])
            assert e.originated == (p[4] if len(p) > 4 else 1700000100)
    # What was read writes back byte for byte.
    again = tmp_path / "again.mrt"
    with mrt_writer.MrtWriter(str(again)) as w:
        for r in recs:
            w.write_record(r)
    assert list(mrt.MrtReader(str(again), codec=codec)) == recs


def test_rotating_writer(tmp_path):
    now = [1700000000.0]
    template = str(tmp_path / "%Y" / "updates.%Y%m%d.%H%M.gz")
    with mrt_writer.RotatingMrtWriter(template, 300, clock=lambda: now[0]) as w:
        for step in range(7):
            w.write_update(update(attrs=BASE, nlri=pfx("10.%d.0.0/16" % step)), "192.0.2.1", 1, "192.0.2.2", 2)
            now[0] += 100
        paths = list(w.paths)
    # 1700000000 is 22:13:20 UTC: intervals start 22:10, 22:15, 22:20.
    assert [p.rsplit("/", 1)[1] for p in paths] == ["updates.20231114.2210.gz", "updates.20231114.2215.gz", "updates.20231114.2220.gz"]
    counts = [len(list(mrt.MrtReader(p))) for p in paths]
    assert counts == [1, 3, 3]
    # A restart within an interval appends a gzip member to the same file.
    with mrt_writer.RotatingMrtWriter(template, 300, clock=lambda: 1700000599.0) as w:
        w.write_update(update(attrs=BASE, nlri=pfx("10.99.0.0/16")), "192.0.2.1", 1, "192.0.2.2", 2)
    assert len(list(mrt.MrtReader(paths[-1]))) == 4


# ---------------------------------------------------------------- bgpdump

needs_bgpdump = pytest.mark.skipif(shutil.which("bgpdump") is None, reason="bgpdump binary not installed (apt-get install -y bgpdump, see .ci/install-peers.sh)")


@needs_bgpdump
@pytest.mark.parametrize("suffix", ["", ".gz", ".bz2"])
def test_bgpdump_accepts_our_files(tmp_path, suffix):
    path = tmp_path / ("written.mrt" + suffix)
    with mrt_writer.MrtWriter(str(path)) as w:
        _write_sample(w)
    proc = subprocess.run(["bgpdump", "-m", str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    ours = "".join(mrt_dump.iter_text(str(path)))
    assert proc.stdout == ours
    assert proc.stdout.count("\n") == 13  # 1 state + 6 update lines + 6 RIB lines
    # bgpdump's verbose decoder complains on stderr about what it cannot
    # read; it must have nothing to say.
    verbose = subprocess.run(["bgpdump", str(path)], capture_output=True, text=True, timeout=60)
    assert verbose.returncode == 0
    assert not [ln for ln in verbose.stderr.splitlines() if "logging to syslog" not in ln and ln.strip()]


# ---------------------------------------------------------------- dump & CLI


def test_json_lines(codec, corpora):
    path = corpora / "mrtparse" / "bird-mrtdump_rib"
    lines = "".join(mrt_dump.iter_text(str(path), "j", codec)).splitlines()
    objs = [json.loads(x) for x in lines]
    assert len(objs) == len(list(mrt.MrtReader(str(path))))
    assert objs[0]["subtype"] == "PEER_INDEX_TABLE" and objs[0]["peers"]
    rib = [o for o in objs if o["subtype"] == "RIB_IPV4_UNICAST_ADDPATH"][1]
    e = rib["entries"][0]
    assert set(e) >= {"peer_ip", "peer_as", "originated", "path_id", "attrs", "next_hop"}
    assert e["attrs"]["communities"] == ["65000:100", "65000:200", "65000:300"]


def test_json_update(codec):
    msg = update(withdrawn=pfx("10.9.0.0/16"), attrs=BASE + communities(0xFFFFFF01) + attr(32, struct.pack(">III", 1, 2, 3)), nlri=pfx("10.0.0.0/8"))
    data = message(msg, us=42) + message(update())
    a, b = ["".join(mrt_dump.formatter("j", codec).lines(r)) for r in read_all(data, codec)]
    a = json.loads(a)
    assert a["type"] == "BGP4MP_ET" and a["microsecond"] == 42 and a["message"] == "UPDATE"
    assert a["withdrawn"] == ["10.9.0.0/16"] and a["announced"] == ["10.0.0.0/8"]
    assert a["attrs"] == {"origin": "IGP", "as_path": "65001 4200000000", "next_hop": "192.0.2.1", "local_pref": 100,
                          "communities": ["no-export"], "large_communities": ["1:2:3"]}  # fmt: skip
    assert json.loads(b)["end_of_rib"] is True


def test_cli_dump(tmp_path, capsys):
    from fastbgp.cli import mrt as mrt_cli

    path = tmp_path / "x.mrt"
    path.write_bytes(message(update(attrs=BASE, nlri=pfx("10.0.0.0/8")), us=7) + b"\x00\x00\x00")
    assert mrt_cli.main(["mrt", "dump", str(path)]) == 1  # the 3 stray octets are a truncated record
    out, err = capsys.readouterr()
    assert out == "BGP4MP_ET|1000.000007|A|192.0.2.1|65001|10.0.0.0/8|65001 4200000000|IGP|192.0.2.1|100|0||NAG||\n"
    assert "truncated" in err
    assert mrt_cli.main(["dump", "-j", str(path)]) == 1
    out, _err = capsys.readouterr()
    assert [json.loads(x)["type"] for x in out.splitlines()] == ["BGP4MP_ET", "0"]


def test_cli_add_parser():
    import argparse

    from fastbgp.cli import mrt as mrt_cli

    parser = argparse.ArgumentParser(prog="fastbgp")
    sub = parser.add_subparsers(dest="command", required=True)
    mrt_cli.add_parser(sub)
    args = parser.parse_args(["mrt", "dump", "-j", "a", "b"])
    assert (args.files, args.format, args.func) == (["a", "b"], "j", mrt_cli._dump)
    assert parser.parse_args(["mrt", "dump", "a"]).format == "m"
