"""fastbgp.control.exabgp_coalesce: runs of UPDATEs folded into fewer
ExaBGP update lines that mean exactly what the UPDATEs meant.

The property: a program applying the coalesced lines in order (withdraw
before announce within a line, as ExaBGP's update object means) ends with
the same routes (prefix -> attributes and next hop) as one applying the
one-line-per-UPDATE output of the same encoder, for any sequence of
UPDATEs, both codec twins.
"""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastbgp.control.exabgp_coalesce import UpdateCoalescer
from fastbgp.control.exabgp_json import JsonEncoder, PeerInfo
from fastbgp.wire import messages as m
from fastbgp.wire.types import Context

PEER = PeerInfo(peer_address="192.0.2.2", local_address="192.0.2.1", peer_as=65002, local_as=65001)
PEER2 = PeerInfo(peer_address="192.0.2.3", local_address="192.0.2.1", peer_as=65003, local_as=65001)
AS4 = Context(as4=True)
POOL = ["10.%d.%d.0/24" % (i // 8, i % 8) for i in range(24)]
POOL6 = ["2001:db8:%x::/48" % i for i in range(8)]


def body(announce=(), withdraw=(), med=0, announce6=(), withdraw6=()):
    attrs = [m.Origin(0), m.AsPath([m.Segment(2, [65002, 65010 + med])]), m.NextHop("192.0.2.2"), m.Med(med)]
    if announce6:
        attrs.append(m.MpReach(afi=2, safi=1, next_hops=["2001:db8::2"], nlri=[m.Prefix(p) for p in announce6]))
    if withdraw6:
        attrs.append(m.MpUnreach(afi=2, safi=1, nlri=[m.Prefix(p) for p in withdraw6]))
    u = m.Update(withdrawn=[m.Prefix(p) for p in withdraw], attributes=attrs if (announce or announce6) else
                 [a for a in attrs if isinstance(a, m.MpUnreach)], nlri=[m.Prefix(p) for p in announce])
    return m.encode_update(u, AS4)


def apply(lines, state=None):
    """A program's view: {(peer, family, prefix): (attribute JSON, next hop)}."""
    state = {} if state is None else state
    for line in lines:
        e = json.loads(line)
        assert e["type"] == "update", e
        nb = e["neighbor"]
        peer = nb["address"]["peer"]
        if "eor" in nb["message"]:
            continue  # an empty UPDATE is IPv4's End-of-RIB (RFC 4724 §2)
        upd = nb["message"]["update"]
        for fam, nlris in upd.get("withdraw", {}).items():
            for n in nlris:
                state.pop((peer, fam, n["nlri"]), None)
        attrs = json.dumps(upd.get("attribute"), sort_keys=True)
        for fam, by_nh in upd.get("announce", {}).items():
            for nh, nlris in by_nh.items():
                for n in nlris:
                    state[(peer, fam, n["nlri"])] = (attrs, nh)
    return state


def run(codec, events, **kw):
    """(one line per UPDATE, coalesced lines) for events [(peer, body)]."""
    plain = JsonEncoder(impl=codec)
    one = [plain.update(peer, b, AS4) for peer, b in events]
    coal = UpdateCoalescer(JsonEncoder(impl=codec), **kw)
    lines = []
    for i, (peer, b) in enumerate(events):
        # Half of them come parsed by the session already (processes.py).
        parsed = codec.parse_update(b, AS4) if i % 2 else None
        lines += coal.add(peer, b, AS4, parsed=parsed)
    lines += coal.flush()
    return one, lines


update_st = st.builds(
    lambda ann, wd, med, ann6, wd6: body(sorted(set(ann)), sorted(set(wd)), med, sorted(set(ann6)), sorted(set(wd6))),
    st.lists(st.sampled_from(POOL), max_size=6), st.lists(st.sampled_from(POOL), max_size=3),
    st.integers(0, 3), st.lists(st.sampled_from(POOL6), max_size=3), st.lists(st.sampled_from(POOL6), max_size=2))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from([PEER, PEER2]), update_st), max_size=40),
       st.sampled_from([2, 5, 4096]))
def test_same_routes_as_one_line_per_update(codec, events, max_line):
    one, lines = run(codec, events, max_line_prefixes=max_line)
    assert apply(lines) == apply(one)
    if max_line == 4096:
        assert len(lines) <= len(one)


def test_a_table_in_few_lines(codec):
    """300 small UPDATEs of 3 attribute sets, every prefix once: one line
    per attribute set, the prefixes in arrival order within it."""
    prefixes = ["10.%d.%d.0/24" % (i // 250, i % 250) for i in range(900)]
    events = [(PEER, body(prefixes[i:i + 3], med=(i // 3) % 3)) for i in range(0, 900, 3)]
    one, lines = run(codec, events)
    assert len(one) == 300 and len(lines) == 3
    assert apply(lines) == apply(one)
    first = json.loads(lines[0])["neighbor"]["message"]["update"]["announce"]["ipv4 unicast"]["192.0.2.2"]
    assert [n["nlri"] for n in first[:6]] == prefixes[0:3] + prefixes[9:12]


def test_a_repeated_prefix_unfolds_the_run(codec):
    """The later UPDATE wins: a run where a prefix occurs twice is written
    one line per UPDATE, in order; the next run folds again."""
    events = [(PEER, body(["10.0.0.0/24"], med=1)), (PEER, body(["10.0.1.0/24"], med=2)),
              (PEER, body(["10.0.0.0/24"], med=2))]
    enc = JsonEncoder(impl=codec)
    coal = UpdateCoalescer(enc)
    lines = []
    for peer, b in events:
        lines += coal.add(peer, b, AS4)
    lines += coal.flush()
    one = [JsonEncoder(impl=codec).update(peer, b, AS4) for peer, b in events]
    assert len(lines) == 3 and coal.unfolded == 1
    assert [json.loads(x)["neighbor"] for x in lines] == [json.loads(x)["neighbor"] for x in one]
    more = []
    for i in range(3):
        more += coal.add(PEER, body(["10.1.%d.0/24" % i], med=1), AS4)
    more += coal.flush()
    assert len(more) == 1 and coal.unfolded == 1


def test_withdrawn_and_announced_in_one_update_is_written_as_it_came(codec):
    """RFC 4271 §3.1: withdrawals first, then the NLRI: a run holding such
    an UPDATE is written one line per UPDATE."""
    events = [(PEER, body(["10.0.1.0/24"])), (PEER, body(["10.0.0.0/24"], withdraw=["10.0.0.0/24"])),
              (PEER, body(["10.0.2.0/24"]))]
    one, lines = run(codec, events)
    assert len(lines) == 3 and json.loads(lines[1])["neighbor"] == json.loads(one[1])["neighbor"]
    assert (PEER.peer_address, "ipv4 unicast", "10.0.0.0/24") in apply(lines)


def test_errors_and_end_of_rib_keep_their_place(codec):
    enc = JsonEncoder(impl=codec)
    coal = UpdateCoalescer(enc)
    out = coal.add(PEER, body(["10.0.0.0/24"]), AS4)
    assert out == []
    out = coal.add(PEER, b"\x00\x00\x00\x05\x40\x01", AS4)  # cut attribute block
    assert len(out) == 2 and json.loads(out[0])["type"] == "update" and json.loads(out[1])["type"] == "error"
    out = coal.add(PEER, bytes(4), AS4)  # IPv4 End-of-RIB (RFC 4724 §2)
    assert len(out) == 1 and "eor" in json.loads(out[0])["neighbor"]["message"]
    assert coal.flush() == []


def test_line_size_and_run_bounds(codec):
    prefixes = ["10.%d.%d.0/24" % (i // 250, i % 250) for i in range(100)]
    events = [(PEER, body(prefixes[i:i + 10])) for i in range(0, 100, 10)]
    _one, lines = run(codec, events, max_line_prefixes=25)
    sizes = [sum(len(v) for by in json.loads(x)["neighbor"]["message"]["update"]["announce"].values()
                 for v in by.values()) for x in lines]
    assert max(sizes) <= 30 and sum(sizes) == 100  # written once a line holds 25 (one UPDATE may add 10 to 20)
    coal = UpdateCoalescer(JsonEncoder(impl=codec), max_run=25)
    lines = []
    for _peer, b in events:
        lines += coal.add(PEER, b, AS4)
    assert coal.count <= 25
    lines += coal.flush()
    assert apply(lines) == apply(_one)


def test_a_neighbour_change_ends_the_run(codec):
    events = [(PEER, body(["10.0.0.0/24"])), (PEER2, body(["10.0.0.0/24"])), (PEER, body(["10.0.1.0/24"]))]
    one, lines = run(codec, events)
    assert len(lines) == 3 and apply(lines) == apply(one)
    assert [json.loads(x)["counter"] for x in lines] == [1, 1, 2]  # per neighbour, as ExaBGP counts
