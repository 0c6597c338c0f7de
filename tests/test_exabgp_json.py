"""Our ExaBGP JSON/text encoders (fastbgp.control.exabgp_json) against
ExaBGP's own decode of its QA messages (../shared/corpora/exabgp-qa, read
the way tests/test_corpus_exabgp.py reads it).

The corpus JSON is ExaBGP 6's spelling, so the encoder runs with
``api_version=6`` and the whole ``neighbor`` object must be equal, field
by field.  Families fastbgp keeps opaque (VPN, flowspec, EVPN, BGP-LS,
SR policy: it does not route them) are compared on the attributes both
sides decode.  The only documented exceptions are in RFC_EXCEPTIONS.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastbgp.control.exabgp_json import JsonEncoder, PeerInfo, TextEncoder, exa_ext_community, make_encoder
from fastbgp.wire import messages as m
from fastbgp.wire.constants import MSG_UPDATE
from fastbgp.wire.types import Context

import test_corpus_exabgp as qa

# Where ExaBGP is wrong per an RFC, the case and the section.
RFC_EXCEPTIONS = {
    # NEXT_HOP 255.255.255.255 (the limited broadcast address) is not a
    # valid host address: RFC 4271 §6.3 makes the NEXT_HOP semantically
    # incorrect and RFC 7606 §7.3 says treat-as-withdraw.  ExaBGP reports it
    # as an announcement; we (like the session that would receive it) report
    # the withdrawal of 10.0.0.7/32.
    ("encoding/conf-attributes.ci", 10): "RFC 4271 §6.3, RFC 7606 §7.3",
}

# Attributes ExaBGP decodes into structures for families and attributes we
# keep as opaque octets (RFC 4271 §5: carried unchanged), so we show them
# under ExaBGP's generic "attribute-0xTT-0xFF" key instead.
OPAQUE_ATTRIBUTE_NAMES = {"extended-community-ipv6", "bgp-ls", "tunnel-encap", "bgp-prefix-sid", "aigp", "pmsi"}


def _update_cases():
    return [c for c in qa.CASE_IDS if c != "<corpus absent>"] or ["<corpus absent>"]


def _peer(exa):
    nb = exa["neighbor"]
    return PeerInfo(peer_address=nb["address"]["peer"], local_address=nb["address"]["local"],
                    peer_as=nb["asn"]["peer"], local_as=nb["asn"]["local"], router_id=nb.get("router-id", ""))


@pytest.mark.parametrize("case_id", _update_cases())
def test_json_equals_exabgp(codec, corpora, case_id):
    case = qa.load_case(corpora, case_id)
    if case is None or case.json is None or case.key in qa.REJECTED:
        pytest.skip("no ExaBGP JSON for this message (or a message a session must refuse)")
    mtype, body = case.split()
    if mtype != MSG_UPDATE:
        pytest.skip("not an UPDATE")
    enc = JsonEncoder(api_version=int(case.json["exabgp"].split(".")[0]), impl=codec)
    got = json.loads(enc.update(_peer(case.json), body, case.ctx))
    want = case.json
    assert got["type"] == want["type"] == "update"
    assert got["exabgp"] == want["exabgp"]
    u = m.decode_update(body, case.ctx, impl=codec)
    if case.key in RFC_EXCEPTIONS:
        # Everything but the message agrees; the message is the withdrawal.
        assert {k: v for k, v in got["neighbor"].items() if k != "message"} == \
            {k: v for k, v in want["neighbor"].items() if k != "message"}
        assert got["neighbor"]["message"]["update"]["withdraw"] == \
            {f: [{"nlri": e["nlri"]} for es in nh.values() for e in es]
             for f, nh in want["neighbor"]["message"]["update"]["announce"].items()}
        return
    if not qa.is_opaque(u):
        assert got["neighbor"] == want["neighbor"]
        return
    # An opaque family: every attribute ExaBGP shows that we decode too.
    ours = got["neighbor"]["message"]["update"].get("attribute", {})
    theirs = want["neighbor"]["message"]["update"].get("attribute", {})
    common = {k: v for k, v in theirs.items() if k not in OPAQUE_ATTRIBUTE_NAMES}
    assert {k: v for k, v in ours.items() if not k.startswith("attribute-0x")} == common


@pytest.mark.parametrize("case_id", _update_cases())
def test_fast_path_equals_full_view(codec, corpora, case_id):
    """update_fast (parse_update + cached attributes + prefixes as text)
    writes what the full message view writes, for every corpus UPDATE it
    takes."""
    case = qa.load_case(corpora, case_id)
    if case is None or case.key in qa.REJECTED:
        pytest.skip("a message a session must refuse")
    mtype, body = case.split()
    if mtype != MSG_UPDATE:
        pytest.skip("not an UPDATE")
    for version in (4, 6):
        fast = JsonEncoder(api_version=version, impl=codec)
        slow = JsonEncoder(api_version=version, impl=codec)
        a = json.loads(fast.update(PEER, body, case.ctx))
        b = json.loads(slow.update_slow(PEER, body, case.ctx))
        assert a["neighbor"] == b["neighbor"]


def test_corpus_coverage(corpora):
    """The comparison is not vacuous: most corpus UPDATEs with JSON are
    compared in full."""
    full = 0
    for case_id in qa.CASE_IDS:
        case = qa.load_case(corpora, case_id)
        if case is None or case.json is None or case.key in qa.REJECTED or case.key in RFC_EXCEPTIONS:
            continue
        mtype, body = case.split()
        if mtype == MSG_UPDATE and not qa.is_opaque(m.decode_update(body, case.ctx)):
            full += 1
    assert full >= 50


# ---------------------------------------------------------------- envelope and events

PEER = PeerInfo(peer_address="192.0.2.2", local_address="192.0.2.1", peer_as=65002, local_as=65001,
                router_id="192.0.2.2")
AS4 = Context(as4=True)


def _body(nlri=("10.1.0.0/16",), as_path=(65002, 65010), withdrawn=()):
    u = m.Update(withdrawn=[m.Prefix(p) for p in withdrawn],
                 attributes=[m.Origin(0), m.AsPath([m.Segment(2, list(as_path))]), m.NextHop("192.0.2.2"),
                             m.Med(5), m.Communities([65002 << 16 | 7]), m.LargeCommunities([(65002, 1, 2)])]
                 if nlri else [],
                 nlri=[m.Prefix(p) for p in nlri])
    return m.encode_update(u, AS4)


def test_v4_envelope():
    enc = JsonEncoder()  # api_version 4: what Debian's ExaBGP 4.2 writes
    a = json.loads(enc.update(PEER, _body(), AS4))
    b = json.loads(enc.update(PEER, _body(), AS4))
    assert list(a)[:8] == ["exabgp", "time", "host", "pid", "ppid", "counter", "type", "neighbor"]
    assert a["exabgp"] == "4.0.1" and a["type"] == "update"
    assert a["host"] == socket.gethostname() and a["pid"] == os.getpid() and a["ppid"] == os.getppid()
    assert (a["counter"], b["counter"]) == (1, 2)
    nb = a["neighbor"]
    assert nb["address"] == {"local": "192.0.2.1", "peer": "192.0.2.2"}
    assert nb["asn"] == {"local": 65001, "peer": 65002}
    assert nb["direction"] == "in" and "router-id" not in nb
    upd = nb["message"]["update"]
    # ExaBGP 4.x spells AS_PATH as lists (exabgp.bgp.message.update.attribute.aspath).
    assert upd["attribute"] == {"origin": "igp", "as-path": [65002, 65010], "confederation-path": [], "med": 5,
                                "community": [[65002, 7]], "large-community": [[65002, 1, 2]]}
    assert upd["announce"] == {"ipv4 unicast": {"192.0.2.2": [{"nlri": "10.1.0.0/16"}]}}


def test_withdraw_and_eor():
    enc = JsonEncoder()
    w = json.loads(enc.update(PEER, _body(nlri=(), withdrawn=("10.1.0.0/16",)), AS4))
    assert w["neighbor"]["message"] == {"update": {"withdraw": {"ipv4 unicast": [{"nlri": "10.1.0.0/16"}]}}}
    eor = json.loads(enc.update(PEER, b"\x00\x00\x00\x00", AS4))  # RFC 4724 §2
    assert eor["neighbor"]["message"] == {"eor": {"afi": "ipv4", "safi": "unicast"}}


def test_state_notification_open_keepalive():
    enc = JsonEncoder()
    up = json.loads(enc.state(PEER, "up"))
    assert up["type"] == "state" and up["neighbor"]["state"] == "up"
    down = json.loads(enc.state(PEER, "down", "peer reset"))
    assert down["neighbor"]["state"] == "down" and down["neighbor"]["reason"] == "peer reset"
    n = json.loads(enc.notification(PEER, "receive", 6, 2, b"\x01"))
    assert n["type"] == "notification" and n["neighbor"]["notification"] == {"code": 6, "subcode": 2, "data": "01"}
    assert n["neighbor"]["direction"] == "receive"
    o = json.loads(enc.open(PEER, "receive", m.Open(version=4, asn=65002, hold_time=90, bgp_id="192.0.2.2")))
    assert o["neighbor"]["open"]["asn"] == 65002 and o["neighbor"]["open"]["hold_time"] == 90
    k = json.loads(enc.keepalive(PEER, "receive"))
    assert k["type"] == "keepalive" and k["neighbor"]["direction"] == "receive"


def test_hostile_body_gives_an_error_line():
    for enc in (JsonEncoder(), TextEncoder()):
        for bad in (b"", b"\x00", b"\x00\x05\x00\x00", b"\xff" * 40):
            line = enc.update(PEER, bad, AS4)
            assert "undecodable UPDATE" in line and "\n" not in line


def test_text_encoder():
    t = make_encoder("text")
    out = t.update(PEER, _body(), AS4).split("\n")
    assert out[0] == "neighbor 192.0.2.2 in update start"
    assert out[1] == ("neighbor 192.0.2.2 in update announced 10.1.0.0/16 next-hop 192.0.2.2 origin igp "
                      "as-path [ 65002 65010 ] med 5 community [ 65002:7 ] large-community [ 65002:1:2 ]")
    assert out[-1] == "neighbor 192.0.2.2 in update end"
    assert t.state(PEER, "up") == "neighbor 192.0.2.2 up"
    assert t.state(PEER, "down", "hold timer") == "neighbor 192.0.2.2 down - hold timer"
    with pytest.raises(ValueError):
        make_encoder("xml")


def test_ext_community_spelling():
    # Values and spellings from ExaBGP's QA corpus.
    assert exa_ext_community(563259191066625) == "target:72:1"
    assert exa_ext_community(844854426862568) == "origin:100:0.0.3.232"
    assert exa_ext_community(9226187895601526928) == "l2info:1:2:13398:30864"  # RFC 4761 §3.2.4
    assert exa_ext_community(0x0800000000000001) == "copy-to-nexthop"
    assert exa_ext_community(0x4299000000000001).startswith("0x")  # unknown: ExaBGP's hex form


def test_attribute_caches_are_bounded():
    from fastbgp.control import exabgp_json as xj

    enc = JsonEncoder()
    for i in range(xj.ATTR_CACHE + 10):
        body = _body(as_path=(65002, 1 + i))
        json.loads(enc.update(PEER, body, AS4))
    assert len(enc._attr_cache) <= xj.ATTR_CACHE and len(enc._frag_cache) <= xj.ATTR_CACHE
    # A long attribute is not kept at all.
    big = tuple(range(1, 300))
    json.loads(enc.update(PEER, _body(as_path=big), AS4))
    assert not any(len(k[2]) > xj.ATTR_CACHE_MAX_OCTETS for k in enc._frag_cache)


@settings(max_examples=400, deadline=None)
@given(body=st.binary(max_size=300), version=st.sampled_from([4, 6]))
def test_any_body_gives_one_json_line(body, version):
    """The observer hands over bodies before the session validates them:
    whatever they hold, the encoders write one line and never raise."""
    line = JsonEncoder(api_version=version).update(PEER, body, AS4)
    assert "\n" not in line and json.loads(line)["type"] in ("update", "error")
    TextEncoder().update(PEER, body, AS4)


@settings(max_examples=200, deadline=None)
@given(prefixes=st.lists(st.tuples(st.integers(0, 255), st.integers(0, 255), st.integers(8, 24)), min_size=1,
                         max_size=20, unique=True))
def test_fast_path_equals_full_view_random(prefixes):
    nets = sorted({str(ipaddress.ip_network("%d.%d.0.0/%d" % (a, b, n), strict=False)) for a, b, n in prefixes})
    body = _body(nlri=nets)
    fast = json.loads(JsonEncoder().update(PEER, body, AS4))
    slow = json.loads(JsonEncoder().update_slow(PEER, body, AS4))
    assert fast["neighbor"] == slow["neighbor"]
