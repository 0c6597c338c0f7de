"""fastbgp.mrt.elements: the analysts' flat route elements, checked against
bgpdump -m's lines on every file of the bgpdump corpus (the same elements,
in the same order, with the same fields), plus what -m does not show
(large communities, None for a missing attribute, laziness)."""

import gzip
import ipaddress
import types

import pytest

from fastbgp.mrt import dump as mrt_dump
from fastbgp.mrt.elements import Element, elements
from fastbgp.mrt.writer import MrtWriter
from fastbgp.wire.as4 import encode_attr, encode_segments

NO_NH = mrt_dump.next_hop_text(b"")  # what -m prints for a route without next hop


def _expected(line):
    """(type, time, peer, asn, prefix, path id, as path, origin, next hop,
    local pref, med, communities) of one -m line."""
    f = line.split("|")
    kind = {"A": "A", "W": "W", "B": "R"}[f[2]]
    ap = f[0].endswith("_AP")
    prefix = ipaddress.ip_network(f[5], strict=False)
    rest = f[6:]
    pid = int(rest.pop(0)) if ap else 0
    row = (kind, float(f[1]), ipaddress.ip_address(f[3]), int(f[4]), prefix, pid)
    if kind == "W":
        return row
    return row + (rest[0], rest[1], ipaddress.ip_address(rest[2]), int(rest[3]), int(rest[4]), rest[5])


def _ours(e):
    row = (e.type, e.time, ipaddress.ip_address(e.peer_ip), e.peer_asn, ipaddress.ip_network(e.prefix), e.path_id)
    if e.type == "W":
        return row
    return row + (e.as_path or "", e.origin or "INCOMPLETE", ipaddress.ip_address(e.next_hop or NO_NH),
                  e.local_pref or 0, e.med or 0, " ".join(e.communities))


def _names(corpora):
    return sorted(p.name for p in (corpora / "bgpdump" / "test_data").iterdir())


@pytest.mark.timeout(300)
def test_same_elements_as_bgpdump_on_the_corpus(corpora):
    data = corpora / "bgpdump" / "test_data"
    expect = corpora / "bgpdump" / "test_expect"
    checked = 0
    for name in _names(corpora):
        with gzip.open(expect / (name + ".bgp.gz"), "rt") as f:
            want = [_expected(x) for x in f.read().splitlines() if x.split("|")[2] in "AWB"]
        got = [_ours(e) for e in elements(data / name)]
        assert len(got) == len(want), name
        bad = next((i for i, (g, w) in enumerate(zip(got, want)) if g != w), None)
        assert bad is None, "%s element %d:\n ours    %s\n bgpdump %s" % (name, bad, got[bad], want[bad])
        checked += len(got)
    assert checked > 800_000


def test_fields_bgpdump_does_not_show(tmp_path):
    """Large communities (RFC 8092), MED/LOCAL_PREF, and None for what a
    route does not carry; a generator that reads as it goes."""
    path = tmp_path / "rib.mrt"
    full = b"".join([encode_attr(0x40, 1, b"\x00"), encode_attr(0x40, 2, encode_segments([(2, [64496, 64497])], 4)),
                     encode_attr(0x40, 3, bytes([192, 0, 2, 1])), encode_attr(0x80, 4, (7).to_bytes(4, "big")),
                     encode_attr(0xC0, 8, (64496 << 16 | 9).to_bytes(4, "big") + (0xFFFFFF01).to_bytes(4, "big")),
                     encode_attr(0xC0, 32, b"".join(x.to_bytes(4, "big") for x in (64496, 1, 2)))])
    bare = encode_attr(0x40, 2, encode_segments([(2, [64499])], 4))
    routes = [("198.51.100.0/24", [(0, full, None), (1, bare, None)]),
              ("2001:db8:1::/48", [(1, bare, bytes.fromhex("20010db8" + "00" * 11 + "02"))])]
    with MrtWriter(str(path)) as w:
        w.write_rib([("10.0.0.1", "192.0.2.1", 64496), ("10.0.0.2", "2001:db8::2", 64499)], routes, timestamp=1700000000)
    it = elements(path)
    assert isinstance(it, types.GeneratorType)
    a, b, c = list(it)
    assert a == Element(1700000000.0, "R", "192.0.2.1", 64496, "198.51.100.0/24", "192.0.2.1", "64496 64497", "IGP",
                        ("64496:9", "no-export"), ("64496:1:2",), 7, None)
    assert (b.peer_ip, b.as_path, b.origin, b.next_hop, b.communities, b.med) == ("2001:db8::2", "64499", None, None, (), None)
    assert (c.prefix, c.next_hop, c.peer_asn) == ("2001:db8:1::/48", "2001:db8::2", 64499)
