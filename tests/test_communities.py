"""fastbgp.wire.communities: one parser and formatter for every entry point."""

import msgspec
import pytest

from fastbgp.config.checks import load_config
from fastbgp.config.errors import ConfigError
from fastbgp.control import contract as ctl
from fastbgp.rib.policy import encode_route
from fastbgp.wire import constants as C
from fastbgp.wire import messages as m
from fastbgp.wire.communities import (
    WELL_KNOWN,
    format_community,
    format_ext_community,
    format_large_community,
    parse_community,
    parse_community_pattern,
    parse_large_community,
    parse_large_community_pattern,
)


def test_well_known_table():
    assert WELL_KNOWN == {
        "no-export": C.COMMUNITY_NO_EXPORT,
        "no-advertise": C.COMMUNITY_NO_ADVERTISE,
        "no-export-subconfed": C.COMMUNITY_NO_EXPORT_SUBCONFED,
        "no-peer": 0xFFFFFF04,  # RFC 3765
        "graceful-shutdown": 0xFFFF0000,  # RFC 8326
        "accept-own": 0xFFFF0001,  # RFC 7611
        "llgr-stale": 0xFFFF0006,  # RFC 9494
        "no-llgr": 0xFFFF0007,
        "blackhole": 0xFFFF029A,  # RFC 7999
    }


@pytest.mark.parametrize("name,value", list(WELL_KNOWN.items()))
def test_well_known_round_trip(name, value):
    assert parse_community(name) == parse_community(name.upper()) == value
    assert format_community(value) == name
    assert m.Communities([value]).strings() == [name]


@pytest.mark.parametrize("value", [0, 1, (65000 << 16) | 1, 0xFFFFFFFF, 0xFFFF0002])
def test_standard_round_trip(value):
    text = format_community(value)
    assert parse_community(text) == value
    assert parse_community(str(value), numeric=True) == value


def test_standard_errors_say_what_is_wrong():
    with pytest.raises(ValueError, match="asn:value"):
        parse_community("1:2:3")
    with pytest.raises(ValueError, match="'65536' is not 0..65535"):
        parse_community("65536:1")
    with pytest.raises(ValueError):
        parse_community("4259840001")  # a plain number only with numeric=True
    with pytest.raises(ValueError):
        parse_community("+1:2")


def test_patterns():
    assert parse_community_pattern("65000:*") == (65000, None)
    assert parse_community_pattern("*:7") == (None, 7)
    assert parse_community_pattern("no-export") == (0xFFFF, 0xFF01)
    assert parse_large_community_pattern("1:*:3") == (1, None, 3)
    with pytest.raises(ValueError):
        parse_community_pattern("65000:*:1")
    with pytest.raises(ValueError):
        parse_large_community_pattern("1:*")


@pytest.mark.parametrize("value", [(0, 0, 0), (4200000000, 1, 2), (0xFFFFFFFF,) * 3])
def test_large_round_trip(value):
    text = format_large_community(value)
    assert parse_large_community(text) == value
    assert m.LargeCommunities([value]).strings() == [text]


def test_large_errors():
    with pytest.raises(ValueError, match="global:local1:local2"):
        parse_large_community("1:2")
    with pytest.raises(ValueError, match="4294967296"):
        parse_large_community("4294967296:1:2")


def test_extended_text():
    assert format_ext_community(0x0002004800000001) == "target:72:1"
    assert m.ExtCommunities([0x0102C0000201000A]).strings() == ["target:192.0.2.1:10"]


def test_no_peer_is_accepted_everywhere():
    """The API once took "no-peer" while Speaker.announce refused it: every
    entry point now reads the same table."""
    head = '[global]\nasn = 65000\nrouter-id = "192.0.2.1"\n'
    cfg = load_config(head + '[[routes]]\nprefix = "10.0.0.0/8"\ncommunities = ["no-peer"]\n')
    _, block, _ = encode_route(cfg.routes[0])
    assert (0xFFFFFF04).to_bytes(4, "big") in block
    req = msgspec.json.decode(b'{"prefixes": ["10.0.0.0/8"], "communities": ["no-peer"]}', type=ctl.Announce)
    assert req.communities == ["no-peer"]
    assert parse_community("no-peer", numeric=True) == 0xFFFFFF04  # Speaker.announce's mode
    assert format_community(0xFFFFFF04) == "no-peer"
    with pytest.raises(ConfigError, match="no-peers"):
        load_config(head + '[[routes]]\nprefix = "10.0.0.0/8"\ncommunities = ["no-peers"]\n')
