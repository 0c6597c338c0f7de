"""ExaBGP text commands (fastbgp.control.exabgp_commands): what they
become, and a one-line reason for everything refused."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastbgp.control.exabgp_commands import MAX_SPLIT_PREFIXES, CommandError, parse_command


def test_announce_route_with_every_attribute():
    c = parse_command("announce route 10.0.0.0/24 next-hop 192.0.2.1 med 10 local-preference 200 "
                      "as-path [ 65000 65001 ] community [65000:1 no-export] large-community 1:2:3 origin egp")
    assert c.kind == "announce" and c.neighbors == []
    r = c.request
    assert (r.prefixes, r.next_hop, r.med, r.local_pref, r.as_path, r.origin) == (
        ["10.0.0.0/24"], "192.0.2.1", 10, 200, [65000, 65001], "egp")
    assert r.communities == ["65000:1", "no-export"] and r.large_communities == ["1:2:3"]


def test_extended_communities_path_information_and_selectors():
    c = parse_command("neighbor 192.0.2.2, neighbor 192.0.2.1 announce route 10.0.0.0/24 next-hop self "
                      "extended-community [ target:65000:1 origin:192.0.2.1:7 0x0002FDE800000002 ] "
                      "path-information 0.0.1.2")
    r = c.request
    assert r.ext_communities == ["target:65000:1", "origin:192.0.2.1:7", "0x0002FDE800000002"]
    assert r.path_id == 258 and r.neighbors == ["192.0.2.1", "192.0.2.2"]
    assert parse_command("announce route 10.0.0.0/24 next-hop self path-information 7").request.path_id == 7
    w = parse_command("neighbor 192.0.2.1 withdraw route 10.0.0.0/24 path-information 7 "
                      "extended-community [ target:1:1 ]")
    assert (w.request.path_id, w.request.neighbors, w.request.ext_communities) == (7, ["192.0.2.1"], [])


def test_healthcheck_spelling():
    # What ExaBGP's healthcheck writes (exabgp/application/healthcheck.py).
    c = parse_command("announce route 192.0.2.10/32 next-hop self med 100")
    assert c.request.next_hop is None and c.request.med == 100
    w = parse_command("withdraw route 192.0.2.10/32 next-hop self")
    assert w.kind == "withdraw" and w.request.prefixes == ["192.0.2.10/32"]
    n = parse_command("neighbor 192.0.2.1, neighbor 192.0.2.2 announce route 192.0.2.10/32 next-hop self")
    assert n.neighbors == ["192.0.2.1", "192.0.2.2"]


def test_split_bulk_and_ipv6():
    c = parse_command("announce route 10.0.0.0/24 next-hop self split /26")
    assert c.request.prefixes == ["10.0.0.0/26", "10.0.0.64/26", "10.0.0.128/26", "10.0.0.192/26"]
    b = parse_command("announce attributes next-hop 192.0.2.1 med 3 nlri 10.0.0.0/24 10.0.1.0/24")
    assert b.request.prefixes == ["10.0.0.0/24", "10.0.1.0/24"] and b.request.med == 3
    v6 = parse_command("announce route 2001:DB8::/32 next-hop 2001:db8::1")
    assert v6.request.prefixes == ["2001:db8::/32"]
    with pytest.raises(CommandError, match="more than %d" % MAX_SPLIT_PREFIXES):
        parse_command("announce route 10.0.0.0/8 next-hop self split /32")


def test_other_commands():
    assert parse_command("neighbor 192.0.2.1,192.0.2.2 announce eor ipv4 unicast").family == "ipv4 unicast"
    assert parse_command("announce eor").family is None
    assert parse_command("announce route-refresh ipv6 unicast").kind == "route-refresh"
    assert parse_command("flush adj-rib out").kind == "flush"
    assert parse_command("clear adj-rib out").kind == "clear"
    assert parse_command("shutdown").kind == "shutdown"


@pytest.mark.parametrize("line, reason", [
    ("", "empty"),
    ("frobnicate", "unknown command"),
    ("announce route 10.0.0.1/24 next-hop self", "host bits"),
    ("announce route 10.0.0.0/24", "next-hop is required"),
    ("announce route 10.0.0.0/24 next-hop 0.0.0.0", "RFC 4271"),
    ("announce route 10.0.0.0/24 next-hop self as-path [ 0 ]", ">= 1"),
    ("announce route 10.0.0.0/24 next-hop self med 4294967296", "med"),
    ("announce route 10.0.0.0/24 next-hop self as-path [ 1 2", "closing"),
    ("announce route 10.0.0.0/24 next-hop self as-path ( 1 2 )", "AS_SET"),
    ("announce route 10.0.0.0/24 next-hop self community [ 70000:1 ]", "70000"),
    ("announce route 10.0.0.0/24 next-hop self origin bgp", "origin"),
    ("announce route 10.0.0.0/24 next-hop self extended-community [ color:1:1 ]", "ext_communities"),
    ("announce route 10.0.0.0/24 next-hop self extended-community [ target:1:70000 ] "
     "extended-community 0x12", "ext_communities"),
    ("announce route 10.0.0.0/24 next-hop self path-information 1.2.3.4", "16 bits"),
    ("announce route 10.0.0.0/24 next-hop self path-information 1.2.3", "dotted quad"),
    ("announce route 10.0.0.0/24 next-hop self path-information 65536", "16 bits"),
    ("announce route 10.0.0.0/24 next-hop self split /16", "split"),
    ("announce route 10.0.0.0/24 next-hop self colour blue", "unknown attribute"),
    ("announce eor ipv4 flow", "family"),
    ("flush adj-rib in", "adj-rib out"),
    ("neighbor nowhere announce route 10.0.0.0/24 next-hop self", "not an IP address"),
    ("announce attributes next-hop self nlri", "nlri"),
    ("withdraw eor", "unknown"),
])
def test_refused_with_a_reason(line, reason):
    with pytest.raises(CommandError, match=reason):
        parse_command(line)


def test_reason_is_bounded():
    with pytest.raises(CommandError) as info:
        parse_command("announce route %s next-hop self" % ("9" * 100000))
    assert len(str(info.value)) <= 303


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_any_text_parses_or_is_refused(text):
    try:
        parse_command(text)
    except CommandError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["announce", "withdraw", "route", "attributes", "nlri", "next-hop", "self", "med",
                                 "as-path", "[", "]", "(", "1", "10.0.0.0/24", "2001:db8::/32", "community",
                                 "65000:1", "split", "/26", "neighbor", "192.0.2.1", ",", "eor", "ipv4", "unicast",
                                 "origin", "igp", "large-community", "1:2:3", "flush", "adj-rib", "out"]),
                max_size=14))
def test_command_shaped_tokens_parse_or_are_refused(tokens):
    try:
        parse_command(" ".join(tokens))
    except CommandError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.integers(0, (1 << 64) - 1))
def test_extended_community_text_parses_back(value):
    """wire.communities: what format_ext_community writes parses back to
    the same eight octets (RFC 4360), but for a four-octet AS below 65536
    (shown like a two-octet one); the 0x form always does."""
    from fastbgp.wire.communities import format_ext_community, parse_ext_community

    text = format_ext_community(value)
    assert parse_ext_community("0x%016x" % value) == value
    t, sub, asn = value >> 56, (value >> 48) & 0xFF, (value >> 16) & 0xFFFFFFFF
    if not (t == 0x02 and sub in (2, 3) and asn <= 0xFFFF):
        assert parse_ext_community(text) == value


def test_table_dump_line_carries_extended_communities():
    import json

    from fastbgp.control import contract as ctl
    from fastbgp.control.exabgp_json import PeerInfo, make_encoder
    from fastbgp.daemon.processes import ProcessManager

    r = ctl.Route(prefix="10.0.0.0/24", next_hop="192.0.2.1", as_path=[65001], ext_communities=["target:65000:7"],
                  source="192.0.2.1")
    line = ProcessManager.route_line(make_encoder("json"), {"192.0.2.1": PeerInfo(peer_address="192.0.2.1")},
                                     "ipv4-unicast", r)
    attr = json.loads(line)["neighbor"]["message"]["update"]["attribute"]
    assert attr["extended-community"] == [{"value": (2 << 48) | (65000 << 32) | 7, "string": "target:65000:7"}]
