"""Next hops: one check (fastbgp.wire.nexthop) for every source of routes we
originate -- the API, the configuration, policies, MRT inject -- and
received routes whose NEXT_HOP is the daemon's own address ignored
(RFC 4271 §6.3)."""

import ipaddress
import logging

import msgspec
import pytest
from prometheus_client import generate_latest

from fastbgp.config.errors import explain
from fastbgp.control import contract as ctl
from fastbgp.control import metrics
from fastbgp.daemon.origination import Originator
from fastbgp.wire.constants import IPV4_UNICAST, IPV6_UNICAST
from fastbgp.wire.nexthop import check_next_hop

# The daemon test's harness, and its address sequence (never reused in a run).
from test_daemon import DUT, best, neighbor_toml, peer, until
from test_daemon import addr as new_addr
# The configuration tests' header and loaders.
from test_config import cfg, errors_of

BAD = [
    ("0.0.0.0", "unspecified"),
    ("0.1.2.3", "unspecified"),
    ("224.0.0.5", "multicast"),
    ("239.255.255.255", "multicast"),
    ("255.255.255.255", "broadcast"),
    ("127.0.0.1", "loopback"),
    ("127.1.2.3", "loopback"),
    ("240.0.0.1", "class E"),
    ("::", "unspecified"),
    ("::1", "loopback"),
    ("ff02::1", "multicast"),
    ("ff0e::1:2", "multicast"),
]
GOOD = ["192.0.2.1", "10.0.0.1", "1.0.0.0", "223.255.255.254", "2001:db8::1", "fe80::1", "2001:db8::ffff:1"]


@pytest.mark.parametrize("address,reason", BAD)
def test_checker_refuses(address, reason):
    for form in (address, " %s " % address):
        with pytest.raises(ValueError) as ei:
            check_next_hop(form)
        assert reason in str(ei.value) and "RFC 4271 §6.3" in str(ei.value)
    # Packed, as an MRT group or an UPDATE carries it.
    with pytest.raises(ValueError, match=reason):
        check_next_hop(ipaddress.ip_address(address).packed)


@pytest.mark.parametrize("address", GOOD)
def test_checker_accepts(address):
    check_next_hop(address)
    check_next_hop(ipaddress.ip_address(address).packed)


def test_checker_refuses_garbage():
    for bad in ("x", "", "10.0.0.0/8", b"\x01\x02\x03"):
        with pytest.raises(ValueError):
            check_next_hop(bad)


@pytest.mark.parametrize("address,reason", BAD)
def test_api_announce_refuses_bad_next_hop(address, reason):
    prefix = "2001:db8::/32" if ":" in address else "10.0.0.0/24"
    fields = {"prefixes": [prefix], "next_hop": address}
    with pytest.raises(msgspec.ValidationError) as ei:
        msgspec.convert(fields, ctl.Announce)
    path, problem = explain(ei.value, ctl.Announce, fields)
    assert path == "next_hop" and reason in problem, (path, problem)


def test_api_announce_keeps_good_next_hop():
    a = msgspec.convert({"prefixes": ["2001:db8::/32"], "next_hop": " 2001:DB8::1 "}, ctl.Announce)
    assert a.next_hop == "2001:db8::1"


@pytest.mark.parametrize("address,prefix,reason", [
    ("224.0.0.1", "10.0.0.0/8", "multicast"),
    ("127.0.0.1", "10.0.0.0/8", "loopback"),
    ("255.255.255.255", "10.0.0.0/8", "broadcast"),
    ("ff02::1", "2001:db8::/32", "multicast"),
    ("::1", "2001:db8::/32", "loopback"),
])
def test_config_route_next_hop_refused(address, prefix, reason):
    e = str(errors_of('[[routes]]\nprefix = "%s"\nnext-hop = "%s"\n' % (prefix, address)))
    assert "routes[0].next-hop: %s address" % reason in e, e


def test_config_policy_set_next_hop_refused():
    e = str(errors_of('[[policies]]\nname = "p"\n[[policies.statements]]\nactions = { set-next-hop = "240.1.2.3" }\n'))
    assert "policies[0].statements[0].actions.set-next-hop: reserved (class E) address" in e, e
    # A usable address still loads.
    cfg('[[policies]]\nname = "p"\n[[policies.statements]]\n'
        'actions = { set-next-hop = "192.0.2.9" }\n[[routes]]\nprefix = "10.0.0.0/8"\nnext-hop = "192.0.2.7"\n')


class _Daemon:
    ribs = {IPV4_UNICAST: None, IPV6_UNICAST: None}


class _Group(msgspec.Struct):
    afi: int
    attrs: bytes
    nlri: bytes
    next_hop: bytes = b""


_ATTRS = b"\x40\x01\x01\x00\x40\x02\x00"  # ORIGIN igp, empty AS_PATH


@pytest.mark.parametrize("group,field", [
    (_Group(1, _ATTRS, b"\x18\xc6\x33\x65", bytes([224, 0, 0, 1])), "[0].next_hop: multicast"),
    (_Group(1, _ATTRS, b"\x18\xc6\x33\x65", bytes([127, 0, 0, 1])), "[0].next_hop: loopback"),
    # The codec's attribute check refuses it first (RFC 7606 §7.3 Invalid NEXT_HOP).
    (_Group(1, _ATTRS + b"\x40\x03\x04\xff\xff\xff\xff", b"\x18\xc6\x33\x65"),
     "[0].attrs: UPDATE Message Error (3/8, treat-as-withdraw): NEXT_HOP 255.255.255.255"),
    (_Group(1, _ATTRS + b"\x40\x03\x04\x7f\x00\x00\x01", b"\x18\xc6\x33\x65"), "[0].attrs: loopback"),
    (_Group(2, _ATTRS, b"\x20\x20\x01\x0d\xb8", bytes(15) + b"\x01"), "[0].next_hop: loopback"),
    (_Group(2, _ATTRS, b"\x20\x20\x01\x0d\xb8", b"\xff\x02" + bytes(13) + b"\x01"), "[0].next_hop: multicast"),
    (_Group(2, _ATTRS, b"\x20\x20\x01\x0d\xb8", b"\x20\x01\x0d\xb8" + bytes(12) + b"\xff\x02" + bytes(14)),
     "[0].next_hop: multicast"),
])
def test_inject_refuses_bad_next_hop(group, field):
    orig = Originator(_Daemon(), None, None)
    with pytest.raises(ValueError) as ei:
        orig.inject_check(0, group)
    assert str(ei.value).startswith(field), str(ei.value)


def test_inject_accepts_good_next_hop():
    orig = Originator(_Daemon(), None, None)
    fam, _block, nh, n = orig.inject_check(0, _Group(1, _ATTRS, b"\x18\xc6\x33\x65", bytes([192, 0, 2, 1])))
    assert fam == IPV4_UNICAST and nh == b"" and n == 1
    ll = b"\x20\x01\x0d\xb8" + bytes(11) + b"\x01" + b"\xfe\x80" + bytes(13) + b"\x01"
    fam, _block, nh, n = orig.inject_check(0, _Group(2, _ATTRS, b"\x20\x20\x01\x0d\xb8", ll))
    assert fam == IPV6_UNICAST and nh == ll and n == 1


def test_daemon_ignores_routes_with_own_next_hop(run, caplog):
    """RFC 4271 §6.3: a route whose NEXT_HOP is the daemon's own address
    (the session's local address, or the router id) is not installed; a
    path already held for the prefix goes; other routes of the peer stay."""

    async def main():
        a_addr = new_addr()
        dut = DUT(neighbors=[neighbor_toml(a_addr, 65000)])  # iBGP: the next hop is kept as sent
        d = await dut.start()
        a, na = await peer(dut, 65000, a_addr)
        await na.wait_established(5)
        a.announce(["10.60.0.0/24", "10.61.0.0/24"], next_hop="192.0.2.10")
        await until(lambda: best(d, "10.61.0.0/24") is not None, what="the peer's routes")
        with caplog.at_level(logging.WARNING, logger="fastbgp.daemon"):
            a.announce(["10.61.0.0/24", "10.62.0.0/24"], next_hop=dut.addr)  # the session's local address
            a.announce(["10.63.0.0/24"], next_hop=dut.rid)  # the router id
            a.announce(["10.64.0.0/24"], next_hop="192.0.2.11")
            await until(lambda: best(d, "10.64.0.0/24") is not None, what="the route sent last")
        assert best(d, "10.60.0.0/24").next_hop == "192.0.2.10"
        for p in ("10.61.0.0/24", "10.62.0.0/24", "10.63.0.0/24"):
            assert d.rib("ipv4-unicast", p) == [], p
        assert sorted(r.prefix for r in d.adj_rib_in(a_addr, "ipv4-unicast")) == ["10.60.0.0/24", "10.64.0.0/24"]
        # Logged once (Neighbor.warn_repeated: a table of such UPDATEs must
        # not flood the log), every prefix counted.
        warned = [r.getMessage() for r in caplog.records if "our own address as next hop" in r.getMessage()]
        assert warned == ["%s: UPDATE with our own address as next hop: 2 prefixes ignored (RFC 4271 §6.3)" % a_addr]
        assert d.speaker.neighbors[a_addr].counters.own_next_hop == 3
        assert d.neighbor(a_addr).counters.own_next_hop == 3  # the API (and `fastbgp neighbor`)
        text = generate_latest(metrics.make_registry(d, process=False)).decode()
        assert 'fastbgp_prefixes_own_next_hop_total{neighbor="%s"} 3.0' % a_addr in text
        await a.stop()
        await dut.stop()

    run(main())
