"""fastbgp.wire.families: the one table of address family names."""

import pytest

from fastbgp.config.checks import load_config
from fastbgp.config.errors import ConfigError
from fastbgp.wire.constants import AFI_IPV4, AFI_IPV6, IPV4_UNICAST, IPV6_UNICAST, SAFI_MULTICAST
from fastbgp.wire.families import (
    ALIASES,
    FAMILIES,
    UNICAST,
    UNICAST_NAMES,
    UnknownFamily,
    family_name,
    parse_family,
    unicast_family,
)


@pytest.mark.parametrize("name", list(FAMILIES))
def test_names_round_trip(name):
    assert family_name(parse_family(name)) == name
    assert parse_family(name.upper()) == parse_family(" %s " % name) == FAMILIES[name]


@pytest.mark.parametrize("alias,name", list(ALIASES.items()))
def test_aliases(alias, name):
    assert family_name(parse_family(alias)) == name


def test_spellings():
    for text in ("ipv4", "IPv4", "inet", "ipv4-unicast"):
        assert parse_family(text) == IPV4_UNICAST
    for text in ("ipv6", "inet6", "ipv6-unicast"):
        assert parse_family(text) == IPV6_UNICAST
    assert parse_family("ipv6-multicast") == (AFI_IPV6, SAFI_MULTICAST)
    assert parse_family((1, 1)) == IPV4_UNICAST and parse_family([25, 70]) == (25, 70)
    assert family_name((25, 70)) == "afi25-safi70"
    assert unicast_family(4) == IPV4_UNICAST and unicast_family(6) == IPV6_UNICAST
    assert UNICAST_NAMES == ("ipv4-unicast", "ipv6-unicast")


def test_unknown_family_message_names_the_choices():
    with pytest.raises(UnknownFamily) as ei:
        parse_family("ipv5")
    assert isinstance(ei.value, ValueError)
    assert "unknown address family 'ipv5'" in str(ei.value) and "ipv4-unicast" in str(ei.value)
    # Restricted to what the daemon runs: multicast is refused, and not offered.
    with pytest.raises(UnknownFamily) as ei:
        parse_family("ipv4-multicast", UNICAST)
    assert "ipv4-multicast" not in ei.value.choices and "ipv6-unicast" in ei.value.choices
    with pytest.raises(UnknownFamily):
        parse_family((AFI_IPV4, SAFI_MULTICAST), UNICAST)
    with pytest.raises(UnknownFamily):
        parse_family(("x", 1))


def test_config_accepts_exactly_the_unicast_names():
    head = '[global]\nasn = 65000\nrouter-id = "192.0.2.1"\n[[neighbors]]\naddress = "192.0.2.2"\npeer-as = 65001\n'
    cfg = load_config(head + "families = %s\n" % list(UNICAST_NAMES).__repr__().replace("'", '"'))
    assert cfg.neighbors[0].afi_safis == list(UNICAST)
    with pytest.raises(ConfigError):
        load_config(head + 'families = ["ipv4"]\n')
