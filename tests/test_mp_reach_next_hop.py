"""The next hop of an MP_REACH_NLRI must be a host address (RFC 4271 §6.3),
as the NEXT_HOP attribute's must: otherwise the UPDATE is treat-as-withdraw
(RFC 7606 §7.3's handling of an invalid NEXT_HOP), its MP_REACH NLRI joining
MP_UNREACH_NLRI.  This matters most for IPv4 routes over IPv6 transport,
whose RFC 8950 IPv6 next hop was taken whatever it was (``::``, ``ff02::1``):
the daemon installed such routes and passed them on (issue 12; found by
tests/interop/test_faults_wire.py over IPv6).  Both codec twins.
"""

import pytest

from bgpgen import IBGP, as_path, ip4, ip6, mp_reach, origin, prefixes, update_body
from fastbgp.wire.errors import ACTION_NONE, ACTION_TREAT_AS_WITHDRAW

V4 = prefixes("198.51.100.0/24", "203.0.113.0/25")
V6 = prefixes("2001:db8:1::/48")
LL = ip6("fe80::1")


def _body(afi, nh, nlri):
    return update_body(attrs=origin() + as_path() + mp_reach(afi, 1, nh, nlri))


REFUSED = [
    pytest.param(1, ip6("::"), V4, id="rfc8950-unspecified"),
    pytest.param(1, ip6("ff02::1"), V4, id="rfc8950-multicast"),
    pytest.param(1, ip6("ff02::1") + LL, V4, id="rfc8950-multicast-with-link-local"),
    pytest.param(1, bytes(32), V4, id="rfc8950-unspecified-twice"),
    pytest.param(1, ip4("0.0.0.0"), V4, id="ipv4-mp-0.0.0.0"),
    pytest.param(1, ip4("224.0.0.5"), V4, id="ipv4-mp-multicast"),
    pytest.param(1, ip4("255.255.255.255"), V4, id="ipv4-mp-broadcast"),
    pytest.param(2, ip6("::"), V6, id="ipv6-unspecified"),
    pytest.param(2, ip6("ff05::2"), V6, id="ipv6-multicast"),
]

ACCEPTED = [
    pytest.param(1, ip6("2001:db8::2"), V4, id="rfc8950-global"),
    pytest.param(1, ip6("2001:db8::2") + LL, V4, id="rfc8950-global-and-link-local"),
    # BIRD's "link local next hop format double": :: then the link-local.
    pytest.param(2, bytes(16) + LL, V6, id="ipv6-unspecified-then-link-local"),
    pytest.param(2, LL, V6, id="ipv6-link-local-only"),
    # Loopback stays accepted, as 127/8 in NEXT_HOP (sessions over loopback).
    pytest.param(2, ip6("::1"), V6, id="ipv6-loopback"),
    pytest.param(1, ip4("192.0.2.1"), V4, id="ipv4-mp-host"),
]


@pytest.mark.parametrize("afi,nh,nlri", REFUSED)
def test_mp_reach_next_hop_not_a_host_is_treat_as_withdraw(codec, afi, nh, nlri):
    pu = codec.parse_update(_body(afi, nh, nlri), IBGP)
    assert pu.action == ACTION_TREAT_AS_WITHDRAW
    assert pu.mp_reach is None and pu.n_announced == 0
    assert pu.mp_unreach == (afi, 1, nlri)
    (err,) = pu.errors
    assert (err.code, err.subcode, err.attr_type) == (3, 8, 14), err
    assert "next hop" in err.reason


@pytest.mark.parametrize("afi,nh,nlri", ACCEPTED)
def test_mp_reach_host_next_hop_is_kept(codec, afi, nh, nlri):
    pu = codec.parse_update(_body(afi, nh, nlri), IBGP)
    assert pu.action == ACTION_NONE and not pu.errors
    assert pu.mp_reach == (afi, 1, nh, nlri)


def test_mp_reach_next_hop_check_spares_lenient_reading(codec):
    # MRT files and the like are read leniently: what a collector recorded
    # is taken as it was.
    pu = codec.parse_update(_body(1, ip6("::"), V4), IBGP, lenient=True)
    assert pu.action == ACTION_NONE and pu.mp_reach[2] == ip6("::")
