"""RFC 6793 against real daemons: 4-octet AS numbers across a session where
one side only speaks 2-octet AS numbers.

* ExaBGP with ``asn4 disable`` is a 2-octet-only peer: fastbgp must send
  AS_PATH with AS_TRANS (23456) in place of every 4-octet ASN plus the real
  path in AS4_PATH, and merge AS4_PATH back when receiving.  ExaBGP's raw
  packet log (``api { receive/send { packets; } }``) shows the wire form,
  its parsed log the path after its own merge.
* fastbgp with ``four_octet_as=False`` against BIRD: the same with the
  roles swapped (BIRD is the 4-octet speaker that must translate); over
  IPv4 and over IPv6 transport (issue 12: IPv4 routes, RFC 8950 next hops
  from BIRD; the library speaker names its IPv4 address as next hop, as it
  sends no RFC 8950 next hop).  The ExaBGP test already runs a session of
  each transport side by side.
"""

from __future__ import annotations

import re

import pytest

from fastbgp.testing import lab as L
from .conftest import require
from .fastbgp_peer import FastBGP

pytestmark = pytest.mark.interop

AS_TRANS = 23456
ATTR_AS_PATH = 2
ATTR_AS4_PATH = 17


def _update_attrs(body_hex: str) -> dict:
    """{type code: value bytes} of the path attributes of a raw UPDATE body
    (stdlib only: independent of fastbgp's codec)."""
    body = bytes.fromhex(body_hex[2:] if body_hex.startswith("0x") else body_hex)
    wlen = int.from_bytes(body[0:2], "big")
    pos = 2 + wlen
    alen = int.from_bytes(body[pos:pos + 2], "big")
    pos += 2
    end = pos + alen
    out = {}
    while pos < end:
        flags, code = body[pos], body[pos + 1]
        if flags & 0x10:
            ln = int.from_bytes(body[pos + 2:pos + 4], "big")
            pos += 4
        else:
            ln = body[pos + 2]
            pos += 3
        out[code] = (flags, body[pos:pos + ln])
        pos += ln
    return out


def _path(value: bytes, width: int) -> list:
    """Flatten AS_PATH / AS4_PATH segments of *width*-octet ASNs."""
    out = []
    pos = 0
    while pos < len(value):
        n = value[pos + 1]
        pos += 2
        out += [int.from_bytes(value[pos + i * width:pos + (i + 1) * width], "big") for i in range(n)]
        pos += n * width
    return out


def _raw_updates(exa: L.ExaBGP, direction: str) -> list:
    """Attribute dicts of every raw UPDATE (with attributes) ExaBGP sent or
    received."""
    out = []
    for ev in exa.events("update"):
        n = ev["neighbor"]
        msg = n.get("message", {})
        if n.get("direction") != direction or "body" not in msg:
            continue
        attrs = _update_attrs(msg["body"])
        if attrs:
            out.append(attrs)
    return out


def test_exabgp_two_octet_peer(lab):
    require(L.ExaBGP)
    a = lab.add_host("fbgp")
    b = lab.add_host("exa")
    def two_octet(name):  # api block names must be unique
        return {"asn4": False, "extra": f"api {name} {{ processes [ lab ]; receive {{ packets; update; }} "
                                        "send { packets; update; } }"}
    # IPv6 session: fastbgp uses a 4-octet local AS there, so the 2-octet
    # peer knows it as AS_TRANS (RFC 6793 §4.2.1).
    exa = L.ExaBGP(b, 65002, neighbors=[L.Neighbor(a.ipv4, 65001, passive=True, options=two_octet("raw4")),
                                        L.Neighbor(a.ipv6, AS_TRANS, passive=True, options=two_octet("raw6"))],
                   routes=[L.Route("203.0.113.0/24", as_path=(4200000002, 65020), communities=("65002:1",))]).start()
    fb = FastBGP(a, 65001, neighbors=[L.Neighbor(b.ipv4, 65002),
                                      L.Neighbor(b.ipv6, 65002, options={"local_as": 4200000010})]).start()
    fb.wait_established(b.ipv4)
    neg = fb.negotiated(b.ipv4)
    assert neg["as4"] is False and neg["peer_asn"] == 65002
    exa.wait_established(a.ipv4)
    fb.wait_established(b.ipv6)
    neg = fb.negotiated(b.ipv6)
    assert (neg["as4"], neg["local_asn"], neg["peer_asn"]) == (False, 4200000010, 65002)
    exa.wait_established(a.ipv6)
    op = [e["neighbor"]["open"] for e in exa.events("open")  # (the raw api logs OPENs too)
          if "open" in e["neighbor"] and e["neighbor"]["direction"] == "receive" and exa._peer(e) == a.ipv6][-1]
    assert op["asn"] == AS_TRANS  # My Autonomous System in the OPEN
    assert {c["name"]: c for c in op["capabilities"].values()}["asn4"]["asn4"] == 4200000010

    # fastbgp -> 2-octet peer
    fb.announce("198.51.100.0/24", as_path=[4200000001, 65010])
    # ExaBGP merged AS_PATH + AS4_PATH back into the real path...
    r = exa.wait_route("198.51.100.0/24")
    assert r["as_path"] == [65001, 4200000001, 65010]
    # ...from this wire form:
    def raw_in():
        for attrs in _raw_updates(exa, "receive"):
            if ATTR_AS4_PATH in attrs:
                return attrs
    attrs = L.wait_for(raw_in, 10, what="raw UPDATE with AS4_PATH received by ExaBGP")
    assert _path(attrs[ATTR_AS_PATH][1], 2) == [65001, AS_TRANS, 65010]
    flags, value = attrs[ATTR_AS4_PATH]
    assert flags & 0xC0 == 0xC0  # optional transitive (RFC 6793 §3)
    assert _path(value, 4) == [65001, 4200000001, 65010]

    # 2-octet peer -> fastbgp: ExaBGP sends AS_TRANS + AS4_PATH...
    r = FastBGP.norm(L.wait_for(lambda: fb.received(b.ipv4).get("203.0.113.0/24"), 10,
                                what="ExaBGP's route in fastbgp"))
    sent = [a_ for a_ in _raw_updates(exa, "send") if ATTR_AS4_PATH in a_]
    assert sent and _path(sent[0][ATTR_AS_PATH][1], 2) == [65002, AS_TRANS, 65020]
    # ...which fastbgp merges into the real path
    assert r == L.route(b.ipv4, [65002, 4200000002, 65020], "igp", None, None, ["65002:1"])
    got = fb.received(b.ipv4)["203.0.113.0/24"]
    assert got["as_path_segments"] == [[2, [65002, 4200000002, 65020]]]
    assert ATTR_AS4_PATH not in got["attribute_codes"]  # merged, not passed on as such

    # a path that fits in 2 octets needs no AS4_PATH (RFC 6793 §4.2.2)
    n_before = len(_raw_updates(exa, "receive"))
    fb.announce("198.51.100.128/25", as_path=[65030])
    assert exa.wait_route("198.51.100.128/25")["as_path"] == [65001, 65030]
    new = L.wait_for(lambda: _raw_updates(exa, "receive")[n_before:], 10, what="raw UPDATE")
    assert ATTR_AS4_PATH not in new[-1] and _path(new[-1][ATTR_AS_PATH][1], 2) == [65001, 65030]

    # from the 4-octet local AS, over the IPv6 session
    fb.announce("2001:db8:1::/48", as_path=[65040])
    assert exa.wait_route("2001:db8:1::/48")["as_path"] == [4200000010, 65040]
    v6_in = L.wait_for(lambda: [x for x in _raw_updates(exa, "receive")
                                if ATTR_AS4_PATH in x and _path(x[ATTR_AS4_PATH][1], 4)[0] == 4200000010], 10,
                       what="raw IPv6 UPDATE")
    assert _path(v6_in[0][ATTR_AS_PATH][1], 2) == [AS_TRANS, 65040]

    fb.withdraw("198.51.100.0/24")
    exa.wait_route("198.51.100.0/24", present=False)
    exa.withdraw("203.0.113.0/24")
    L.wait_for(lambda: "203.0.113.0/24" not in fb.received(b.ipv4), 10, what="withdrawal in fastbgp")


@pytest.mark.parametrize("transport", L.TRANSPORTS)
def test_fastbgp_two_octet_speaker_bird(lab, transport):
    """fastbgp configured as an RFC 4271-only speaker (no 4-octet AS
    capability) against BIRD, which then does the AS_TRANS translation."""
    require(L.Bird)
    a = lab.add_host("fbgp")
    b = lab.add_host("bird")
    ours, theirs = a.addr(transport), b.addr(transport)
    bird = L.Bird(b, 65002, neighbors=[L.ipv4_neighbor(ours, 65001, passive=True)],
                  routes=[L.Route("203.0.113.0/24", as_path=(4200000002, 65020))]).start()
    fb = FastBGP(a, 65001, neighbors=[L.ipv4_neighbor(theirs, 65002, options={"four_octet_as": False})]).start()
    fb.wait_established(theirs)
    assert fb.negotiated(theirs)["as4"] is False
    bird.wait_established(ours)
    info = bird.protocol_info(ours)
    nb_caps = info.split("Neighbor capabilities", 1)[1].split("Session:", 1)[0]
    assert "4-octet AS numbers" not in nb_caps, info
    assert re.search(r"Session:\s+external\s*$", info, re.M), info  # not "external AS4"

    fb.announce("198.51.100.0/24", next_hop=a.ipv4, as_path=[4200000001, 65010])
    assert bird.wait_route("198.51.100.0/24")["as_path"] == [65001, 4200000001, 65010]
    r = L.wait_for(lambda: fb.received(theirs).get("203.0.113.0/24"), 10, what="BIRD's route in fastbgp")
    assert r["as_path"] == [65002, 4200000002, 65020]
    assert r["next_hop"] == theirs  # RFC 8950 over IPv6
    assert ATTR_AS4_PATH not in r["attribute_codes"]
