"""fastbgp.config: decoding, peer-group merge, semantic checks, diff."""

import pathlib
import textwrap

import msgspec
import pytest
from msgspec import UNSET

from fastbgp.config.checks import load_config
from fastbgp.config.diff import diff
from fastbgp.config.errors import ConfigError
from fastbgp.config.schema import Config, Neighbor, parse_endpoint, parse_prefix_entry
from fastbgp.wire.communities import parse_community, parse_community_pattern, parse_large_community

EXAMPLE = pathlib.Path(__file__).resolve().parents[1] / "examples" / "fastbgp.toml"

HEAD = """
[global]
asn = 65000
router-id = "192.0.2.1"
"""


def cfg(body="", head=HEAD):
    return load_config(textwrap.dedent(head) + textwrap.dedent(body))


def errors_of(body, head=HEAD):
    with pytest.raises(ConfigError) as ei:
        cfg(body, head)
    return ei.value


# ---------------------------------------------------------------- example


def test_example_loads():
    c = load_config(EXAMPLE)
    assert isinstance(c, Config)
    assert c.global_.asn == 65000
    assert c.global_.listen_endpoints() == [("0.0.0.0", 179), ("::", 179)]
    assert c.global_.api.tcp == "127.0.0.1:50179"
    assert c.global_.mrt.rib.interval == 7200
    assert len(c.neighbors) == 6
    names = {p.name for p in c.policies}
    assert {"bogons", "transit-in", "customer-in", "own-only", "customer-out", "ixp-out"} <= names
    # After loading no neighbour field is UNSET.
    for n in c.neighbors:
        for f in Neighbor.__struct_fields__:
            assert getattr(n, f) is not UNSET, (n.address, f)
        for sub in (n.timers, n.add_path, n.graceful_restart):
            for f in sub.__struct_fields__:
                assert getattr(sub, f) is not UNSET, (n.address, f)


def test_example_loads_from_text_and_str_path():
    text = EXAMPLE.read_text()
    assert load_config(text) == load_config(str(EXAMPLE)) == load_config(EXAMPLE)


def test_example_neighbor_details():
    c = load_config(EXAMPLE)
    a = c.neighbor("198.51.100.1")
    # group: hold 90/keepalive 30/connect-retry 60; neighbour: hold 180/keepalive 60.
    assert (a.timers.hold_time, a.timers.keepalive, a.timers.connect_retry) == (180, 60, 60)
    assert a.description == "transit A"
    assert a.import_policy == ["bogons", "transit-in"]
    assert a.ttl_security is True
    assert a.prefix_limit["ipv4-unicast"].max == 1200000
    v6 = c.neighbor("2001:DB8:100:0::1")  # any spelling finds it
    assert v6.address == "2001:db8:100::1"
    assert v6.families == ["ipv6-unicast"]
    # The group's ipv4 prefix limit does not apply to an IPv6-only member.
    assert set(v6.prefix_limit) == {"ipv6-unicast"}
    edge = c.neighbor("192.0.2.10")
    assert edge.peer_as == 65000 and not edge.ebgp
    assert edge.graceful_restart.helper_only is True
    assert edge.graceful_restart.restart_time == 120
    assert edge.add_path.send == ["ipv4-unicast"] and edge.add_path.send_max == 4
    assert edge.afi_safis == [(1, 1), (2, 1)]


def test_example_round_trips_through_msgspec():
    c = load_config(EXAMPLE)
    again = msgspec.convert(msgspec.to_builtins(c), Config)
    assert again == c


def test_minimal_defaults():
    c = cfg(
        """
        [[neighbors]]
        address = "192.0.2.2"
        peer-as = 65001
        [[neighbors]]
        address = "2001:db8::2"
        peer-as = 65000
        """
    )
    e, i = c.neighbors
    assert e.local_as == 65000 and e.ebgp
    assert e.families == ["ipv4-unicast"]
    assert i.families == ["ipv6-unicast"]
    assert (e.timers.hold_time, e.timers.keepalive, e.timers.connect_retry) == (90, 30, 120)
    # RFC 8212: eBGP without policy rejects both ways; iBGP accepts.
    assert (e.default_import, e.default_export) == ("reject", "reject")
    assert (i.default_import, i.default_export) == ("accept", "accept")
    assert e.port == 179 and e.passive is False and e.md5_password is None
    assert c.global_.api.socket == "/run/fastbgp/fastbgp.sock"
    assert c.global_.log.level == "info"
    assert c.global_.effective_cluster_id == "192.0.2.1"


def test_hold_time_zero_disables_keepalive():
    c = cfg(
        """
        [[neighbors]]
        address = "192.0.2.2"
        peer-as = 65001
        timers = { hold-time = 0 }
        """
    )
    assert c.neighbors[0].timers.keepalive == 0


# ----------------------------------------------------------- peer groups


def test_peer_group_merge_rules():
    c = cfg(
        """
        [[peer-groups]]
        name = "g"
        peer-as = 65010
        description = "group"
        families = ["ipv4-unicast", "ipv6-unicast"]
        import-policy = ["p1", "p2"]
        timers = { hold-time = 60, connect-retry = 7, idle-hold = 9 }
        graceful-restart = { enabled = true, restart-time = 300 }
        prefix-limit.ipv4-unicast = { max = 10 }
        prefix-limit.ipv6-unicast = { max = 20, restart-after = 30 }

        [[neighbors]]
        address = "192.0.2.2"
        peer-group = "g"
        description = "mine"
        import-policy = ["p2"]
        timers = { hold-time = 30 }
        graceful-restart = { helper-only = true }
        prefix-limit.ipv4-unicast = { max = 5 }

        [[neighbors]]
        address = "192.0.2.3"
        peer-group = "g"

        [[policies]]
        name = "p1"
        [[policies]]
        name = "p2"
        """
    )
    n, plain = c.neighbors
    assert n.peer_as == 65010  # inherited
    assert n.description == "mine"  # own wins
    assert n.import_policy == ["p2"]  # arrays are replaced, not appended
    assert n.families == ["ipv4-unicast", "ipv6-unicast"]
    # tables merge key by key; keepalive follows the merged hold time
    assert (n.timers.hold_time, n.timers.keepalive, n.timers.connect_retry, n.timers.idle_hold) == (30, 10, 7, 9)
    assert (n.graceful_restart.enabled, n.graceful_restart.restart_time, n.graceful_restart.helper_only) == (True, 300, True)
    # prefix-limit merges family by family
    assert n.prefix_limit["ipv4-unicast"].max == 5
    assert n.prefix_limit["ipv6-unicast"].max == 20 and n.prefix_limit["ipv6-unicast"].restart_after == 30
    assert plain.description == "group" and plain.timers.hold_time == 60 and plain.import_policy == ["p1", "p2"]
    # the group itself stays a template with its UNSET fields
    g = c.peer_group("g")
    assert g.passive is UNSET and g.peer_as == 65010
    assert "passive" not in msgspec.to_builtins(g)


def test_peer_as_may_come_from_group_only():
    e = errors_of(
        """
        [[peer-groups]]
        name = "g"
        [[neighbors]]
        address = "192.0.2.2"
        peer-group = "g"
        """
    )
    assert "neighbors[0].peer-as: required" in str(e)


# ----------------------------------------------------------- dynamic


DYN = """
[[peer-groups]]
name = "ixp"
peer-as = 65100
description = "ixp member"
[[peer-groups]]
name = "inner"
peer-as = 65200
[[dynamic-neighbors]]
prefix = "203.0.113.0/24"
peer-group = "ixp"
[[dynamic-neighbors]]
prefix = "203.0.113.128/25"
peer-group = "inner"
[[dynamic-neighbors]]
prefix = "2001:db8:1::/48"
peer-group = "ixp"
[[neighbors]]
address = "203.0.113.200"
peer-as = 65300
"""


def test_dynamic_neighbors():
    c = cfg(DYN)
    n = c.neighbor_for("203.0.113.7")
    assert n.address == "203.0.113.7" and n.peer_as == 65100 and n.peer_group == "ixp"
    assert n.passive is True and n.description == "ixp member"
    assert n.families == ["ipv4-unicast"]
    # most specific range wins
    assert c.neighbor_for("203.0.113.130").peer_as == 65200
    # static neighbour first
    assert c.neighbor_for("203.0.113.200").peer_as == 65300
    v6 = c.neighbor_for("2001:db8:1::99")
    assert v6.families == ["ipv6-unicast"] and v6.peer_as == 65100
    assert c.neighbor_for("198.51.100.1") is None
    assert c.neighbor_for("not an address") is None


@pytest.mark.parametrize(
    "body, path, problem",
    [
        ('[[dynamic-neighbors]]\nprefix = "203.0.113.1/24"\npeer-group = "g"\n', "dynamic-neighbors[0].prefix", "host bits set"),
        ('[[dynamic-neighbors]]\nprefix = "nonsense"\npeer-group = "g"\n', "dynamic-neighbors[0].prefix", "not a prefix range"),
        ('[[dynamic-neighbors]]\nprefix = "203.0.113.0/24"\npeer-group = "nope"\n', "dynamic-neighbors[0].peer-group", 'unknown peer group "nope"'),
        ('[[dynamic-neighbors]]\nprefix = "203.0.113.0/24"\npeer-group = "nopeeras"\n', "dynamic-neighbors[0]", "peer-as: required"),
        (
            '[[dynamic-neighbors]]\nprefix = "203.0.113.0/24"\npeer-group = "g"\n'
            '[[dynamic-neighbors]]\nprefix = "203.0.113.0/24"\npeer-group = "g"\n',
            "dynamic-neighbors[1].prefix",
            "duplicate of dynamic-neighbors[0]",
        ),
    ],
)
def test_dynamic_errors(body, path, problem):
    groups = '[[peer-groups]]\nname = "g"\npeer-as = 65001\n[[peer-groups]]\nname = "nopeeras"\n'
    e = errors_of(groups + body)
    assert any(p.startswith(path) and problem in (p + ": " + m) for p, m in e.errors), e.errors


# ------------------------------------------------------------- errors

N = '[[neighbors]]\naddress = "192.0.2.2"\npeer-as = 65001\n'

CASES = [
    # decoding (msgspec) errors, rewritten with the field path
    (N.replace("65001", '"x"'), 'neighbors[0].peer-as: expected int >= 1 and <= 4294967295, got "x"'),
    (N.replace("65001", "0"), "neighbors[0].peer-as: expected int >= 1 and <= 4294967295, got 0"),
    (N.replace("65001", "4294967296"), "neighbors[0].peer-as: expected int >= 1"),
    (N + "port = 0\n", "neighbors[0].port: expected int >= 1 and <= 65535, got 0"),
    (N + "multihop = 256\n", "neighbors[0].multihop: expected int >= 1 and <= 255, got 256"),
    (N + "multihop = 0\n", "neighbors[0].multihop: expected int >= 1 and <= 255, got 0"),
    (N + 'md5-password = "' + "k" * 81 + '"\n', "neighbors[0].md5-password: expected string of 1 to 80 characters"),
    (N + "passive = 1\n", "neighbors[0].passive: expected bool (true/false), got 1"),
    (N + 'families = ["ipv4-multicast"]\n', 'neighbors[0].families[0]: expected one of "ipv4-unicast", "ipv6-unicast", got "ipv4-multicast"'),
    (N + "prefix-limit.ipv4-unicast = { max = 0 }\n", "neighbors[0].prefix-limit.ipv4-unicast.max: expected int >= 1, got 0"),
    (N + "prefix-limit.ipv4-unicast = { max = 5, restart-after = -1 }\n", "neighbors[0].prefix-limit.ipv4-unicast.restart-after: expected int >= 0, got -1"),
    (N + "prefix-limit.ipv9-unicast = { max = 5 }\n", 'neighbors[0].prefix-limit: invalid key "ipv9-unicast"'),
    (N + "timers = { hold-time = 70000 }\n", "neighbors[0].timers.hold-time: expected int >= 0 and <= 65535, got 70000"),
    (N + "graceful-restart = { restart-time = 5000 }\n", "neighbors[0].graceful-restart.restart-time: expected int >= 0 and <= 4095"),
    (N + 'role = "boss"\n', 'neighbors[0].role: expected one of "customer", "peer", "provider", "rs", "rs-client", got "boss"'),
    (N + 'default-import = "maybe"\n', "neighbors[0].default-import: expected one of"),
    (N + "peer-az = 1\n", 'neighbors[0].peer-az: unknown field (did you mean "peer-as"?)'),
    (N + "[neighbors.timers]\nhold = 5\n", "neighbors[0].timers.hold: unknown field"),
    ('[[neighbors]]\npeer-as = 65001\n', "neighbors[0].address: required field missing"),
    ("[global.log]\nlevel = \"loud\"\n", 'global.log.level: expected one of "critical", "debug", "error", "info", "warning", got "loud"'),
    # semantic checks
    (N.replace("65001", "23456"), "neighbors[0].peer-as: 23456 is AS_TRANS"),
    (N + "local-as = 23456\n", "neighbors[0].local-as: 23456 is AS_TRANS"),
    (N.replace("192.0.2.2", "192.0.2.300"), 'neighbors[0].address: not an IPv4 or IPv6 address: "192.0.2.300"'),
    (N.replace("192.0.2.2", "224.0.0.5"), "neighbors[0].address: not a unicast address"),
    (N.replace("192.0.2.2", "0.0.0.0"), "neighbors[0].address: not a unicast address"),
    (N + "timers = { hold-time = 2 }\n", "neighbors[0].timers.hold-time: must be 0 or 3..65535 (RFC 4271 §4.2), got 2"),
    (N + "timers = { hold-time = 30, keepalive = 30 }\n", "neighbors[0].timers.keepalive: must be less than hold-time (30), got 30"),
    (N + "timers = { hold-time = 0, keepalive = 10 }\n", "neighbors[0].timers.keepalive: must be 0 when hold-time is 0"),
    (N + "families = []\n", "neighbors[0].families: must name at least one family"),
    (N + 'families = ["ipv4-unicast", "ipv4-unicast"]\n', "neighbors[0].families: lists a family twice"),
    (N + 'add-path = { send = ["ipv6-unicast"] }\n', 'neighbors[0].add-path.send[0]: family "ipv6-unicast" is not in families'),
    (N + "prefix-limit.ipv6-unicast = { max = 5 }\n", "neighbors[0].prefix-limit.ipv6-unicast: family is not in families"),
    (N + 'local-address = "2001:db8::1"\n', "neighbors[0].local-address: IPv6 address for an IPv4 neighbour"),
    (N + 'local-address = "bogus"\n', "neighbors[0].local-address: not an IPv4 or IPv6 address"),
    (N + "route-server-client = true\nroute-reflector-client = true\n", "neighbors[0]: route-server-client and route-reflector-client are exclusive"),
    (N + "route-reflector-client = true\n", "neighbors[0].route-reflector-client: needs an iBGP session"),
    (N.replace("65001", "65000") + "route-server-client = true\n", "neighbors[0].route-server-client: needs an eBGP session"),
    (N.replace("65001", "65000") + 'role = "peer"\n', "neighbors[0].role: BGP roles apply to eBGP sessions only"),
    (N + 'route-server-client = true\nrole = "peer"\n', "neighbors[0].role: a route-server-client's local role is \"rs\""),
    (N + "role-strict = true\n", "neighbors[0].role-strict: needs a role"),
    (N + N, "neighbors[1].address: duplicate of neighbors[0] (192.0.2.2)"),
    (
        '[[neighbors]]\naddress = "2001:db8::1"\npeer-as = 1\n[[neighbors]]\naddress = "2001:DB8:0::1"\npeer-as = 2\n',
        "neighbors[1].address: duplicate of neighbors[0] (2001:db8::1)",
    ),
    (N + 'peer-group = "ghost"\n', 'neighbors[0].peer-group: unknown peer group "ghost"'),
    (N + 'import-policy = ["ghost"]\n', 'neighbors[0].import-policy[0]: unknown policy "ghost"'),
    ('[[peer-groups]]\nname = "g"\nexport-policy = ["ghost"]\n', 'peer-groups[0].export-policy[0]: unknown policy "ghost"'),
    ('[[peer-groups]]\nname = "g"\n[[peer-groups]]\nname = "g"\n', "peer-groups[1].name: duplicate of peer-groups[0]"),
    ('[[peer-groups]]\nname = "g"\ntimers = { hold-time = 1 }\n', "peer-groups[0].timers.hold-time: must be 0 or 3..65535"),
    # sets and policies
    ('[[policies]]\nname = "p"\n[[policies.statements]]\nconditions = { prefix-set = "ghost" }\n', 'policies[0].statements[0].conditions.prefix-set: unknown prefix-set "ghost"'),
    ('[[policies]]\nname = "p"\n[[policies.statements]]\nconditions = { community-set = { name = "ghost", match = "all" } }\n', 'policies[0].statements[0].conditions.community-set: unknown community-set "ghost"'),
    (
        '[[defined-sets.prefix-sets]]\nname = "s"\nprefixes = ["10.0.0.0/8"]\n[[policies]]\nname = "p"\n[[policies.statements]]\nconditions = { prefix-set = { name = "s", match = "all" } }\n',
        'policies[0].statements[0].conditions.prefix-set.match: a prefix-set matches "any" or "invert"',
    ),
    ('[[policies]]\nname = "p"\n[[policies]]\nname = "p"\n', "policies[1].name: duplicate of policies[0]"),
    ('[[policies]]\nname = "p"\n[[policies.statements]]\nname = "a"\n[[policies.statements]]\nname = "a"\n', "policies[0].statements[1].name: duplicate of policies[0].statements[0]"),
    ('[[policies]]\nname = "p"\n[[policies.statements]]\nconditions = { neighbor = ["10.0.0.1/8"] }\n', "policies[0].statements[0].conditions.neighbor[0]: not an address or prefix"),
    ('[[policies]]\nname = "p"\n[[policies.statements]]\nactions = { result = "maybe" }\n', 'policies[0].statements[0].actions.result: expected one of "accept", "next", "reject", got "maybe"'),
    ('[[policies]]\nname = "p"\n[[policies.statements]]\nactions = { set-local-pref = -1 }\n', "policies[0].statements[0].actions.set-local-pref: expected int >= 0 and <= 4294967295, got -1"),
    ('[[policies]]\nname = "p"\n[[policies.statements]]\nactions = { communities = { add = ["65536:1"] } }\n', "policies[0].statements[0].actions.communities.add[0]: \"65536:1\": '65536' is not 0..65535"),
    ('[[policies]]\nname = "p"\n[[policies.statements]]\nactions = { communities = { add = ["1:*"] } }\n', "policies[0].statements[0].actions.communities.add[0]"),
    ('[[policies]]\nname = "p"\n[[policies.statements]]\nactions = { communities = { replace = ["1:1"], add = ["1:2"] } }\n', "policies[0].statements[0].actions.communities: replace cannot be combined with add or remove"),
    ('[[policies]]\nname = "p"\n[[policies.statements]]\nactions = { large-communities = { remove = ["1:2"] } }\n', "policies[0].statements[0].actions.large-communities.remove[0]"),
    ('[[policies]]\nname = "p"\n[[policies.statements]]\nactions = { next-hop-self = true, set-next-hop = "192.0.2.9" }\n', "policies[0].statements[0].actions: next-hop-self and set-next-hop are exclusive"),
    ('[[policies]]\nname = "p"\n[[policies.statements]]\nactions = { set-next-hop = "nowhere" }\n', "policies[0].statements[0].actions.set-next-hop: not an IPv4 or IPv6 address"),
    ('[[policies]]\nname = "p"\n[[policies.statements]]\nactions = { as-path-prepend = { count = 0 } }\n', "policies[0].statements[0].actions.as-path-prepend.count: expected int >= 1 and <= 32, got 0"),
    ('[[policies]]\nname = "p"\n[[policies.statements]]\nactions = { as-path-prepend = { asn = 23456 } }\n', "policies[0].statements[0].actions.as-path-prepend.asn: 23456 is AS_TRANS"),
    ('[[defined-sets.prefix-sets]]\nname = "s"\nprefixes = ["10.0.0.1/8"]\n', 'defined-sets.prefix-sets[0].prefixes[0]: "10.0.0.1/8": 10.0.0.1/8 has host bits set'),
    ('[[defined-sets.prefix-sets]]\nname = "s"\nprefixes = ["10.0.0.0/8 le 7"]\n', "defined-sets.prefix-sets[0].prefixes[0]: \"10.0.0.0/8 le 7\": need 8 <= ge <= le <= 32"),
    ('[[defined-sets.prefix-sets]]\nname = "s"\nprefixes = ["10.0.0.0/8 ge 20 le 16"]\n', "need 8 <= ge <= le <= 32, got ge 20 le 16"),
    ('[[defined-sets.prefix-sets]]\nname = "s"\nprefixes = ["10.0.0.0/8 upto 16"]\n', "defined-sets.prefix-sets[0].prefixes[0]"),
    ('[[defined-sets.prefix-sets]]\nname = "s"\nprefixes = ["::/0 le 129"]\n', "need 0 <= ge <= le <= 128"),
    ('[[defined-sets.prefix-sets]]\nname = "s"\nprefixes = [{ prefix = "10.0.0.0/8", ge = 33 }]\n', "defined-sets.prefix-sets[0].prefixes[0]"),
    ('[[defined-sets.prefix-sets]]\nname = "s"\nprefixes = [{ prefix = "10.0.0.0/8", ge = 129 }]\n', "defined-sets.prefix-sets[0].prefixes[0].ge: expected int >= 0 and <= 128, got 129"),
    ('[[defined-sets.prefix-sets]]\nname = "s"\n[[defined-sets.prefix-sets]]\nname = "s"\n', "defined-sets.prefix-sets[1].name: duplicate of defined-sets.prefix-sets[0]"),
    ('[[defined-sets.as-path-sets]]\nname = "a"\nas-paths = ["^(65000"]\n', "defined-sets.as-path-sets[0].as-paths[0]: invalid regular expression"),
    ('[[defined-sets.community-sets]]\nname = "c"\ncommunities = ["no-such-thing"]\n', "defined-sets.community-sets[0].communities[0]"),
    ('[[defined-sets.large-community-sets]]\nname = "l"\nlarge-communities = ["1:2:4294967296"]\n', "defined-sets.large-community-sets[0].large-communities[0]"),
    # routes
    ('[[routes]]\nprefix = "10.0.0.0/8"\n[[routes]]\nprefix = "10.0.0.0/8"\n', "routes[1].prefix: duplicate of routes[0]"),
    ('[[routes]]\nprefix = "10.0.0.1/8"\n', "routes[0].prefix: not a prefix"),
    ('[[routes]]\nprefix = "10.0.0.0/8"\nnext-hop = "2001:db8::1"\n', "routes[0].next-hop: IPv6 next hop for an IPv4 prefix"),
    ('[[routes]]\nprefix = "10.0.0.0/8"\norigin = "bgp"\n', 'routes[0].origin: expected one of "egp", "igp", "incomplete", got "bgp"'),
    ('[[routes]]\nprefix = "10.0.0.0/8"\nas-path = [65001, 0]\n', "routes[0].as-path[1]: expected int >= 1"),
    ('[[routes]]\nprefix = "10.0.0.0/8"\ncommunities = ["x"]\n', "routes[0].communities[0]"),
]


@pytest.mark.parametrize("body, expected", CASES, ids=[c[1][:60] for c in CASES])
def test_error_names_field_path(body, expected):
    e = errors_of(body)
    assert expected in str(e), str(e)


GLOBAL_CASES = [
    ('[global]\nasn = 65000\nrouter-id = "1.2.3"\n', 'global.router-id: not an IPv4 address: "1.2.3"'),
    ('[global]\nasn = 65000\nrouter-id = "2001:db8::1"\n', "global.router-id: not an IPv4 address"),
    ('[global]\nasn = 65000\nrouter-id = "0.0.0.0"\n', "global.router-id: must not be 0.0.0.0 (RFC 6286)"),
    ('[global]\nasn = 65000\n', "global.router-id: required field missing"),
    ('[global]\nasn = 0\nrouter-id = "1.1.1.1"\n', "global.asn: expected int >= 1 and <= 4294967295, got 0"),
    ('[global]\nasn = 23456\nrouter-id = "1.1.1.1"\n', "global.asn: 23456 is AS_TRANS"),
    ("asn = 65000\n", "asn: unknown field"),
    ('[globl]\nasn = 1\n', 'globl: unknown field (did you mean "global"?)'),
    ('', "global: required field missing"),
    ('[global]\nasn = 65000\nrouter-id = "1.1.1.1"\ncluster-id = "x"\n', "global.cluster-id: not an IPv4 address"),
    ('[global]\nasn = 65000\nrouter-id = "1.1.1.1"\nlisten = ["1.2.3.4:99999"]\n', "global.listen[0]: not an address[:port]"),
    ('[global]\nasn = 65000\nrouter-id = "1.1.1.1"\nlisten = ["::1:179"]\n', None),  # a bare v6 address ending in :179
    ('[global]\nasn = 65000\nrouter-id = "1.1.1.1"\nlisten = ["[::1"]\n', "global.listen[0]: not an address[:port]"),
    ('[global]\nasn = 65000\nrouter-id = "1.1.1.1"\nlisten = ["0.0.0.0", "0.0.0.0:179"]\n', "global.listen[1]: duplicate of global.listen[0]"),
    ('[global]\nasn = 65000\nrouter-id = "1.1.1.1"\napi = { tcp = "127.0.0.1:8000" }\n', "global.api.token: required when global.api.tcp is set"),
    ('[global]\nasn = 65000\nrouter-id = "1.1.1.1"\napi = { tcp = "127.0.0.1:8000", token = "short" }\n', "global.api.token: too short"),
    ('[global]\nasn = 65000\nrouter-id = "1.1.1.1"\napi = { tcp = "127.0.0.1", token = "0123456789abcdef" }\n', "global.api.tcp: not an address[:port]"),
    ('[global]\nasn = 65000\nrouter-id = "1.1.1.1"\napi = { socket = "" }\n', "global.api.socket: expected non-empty string"),
    ('[global]\nasn = 65000\nrouter-id = "1.1.1.1"\nmetrics = { listen = "localhost:9" }\n', "global.metrics.listen: not an address[:port]"),
    ('[global]\nasn = 65000\nrouter-id = "1.1.1.1"\nmrt.updates = { path = "/tmp/u.mrt" }\n', "global.mrt.updates.path: needs a strftime field"),
    ('[global]\nasn = 65000\nrouter-id = "1.1.1.1"\nmrt.updates = { path = "/tmp/u.%H", interval = 0 }\n', "global.mrt.updates.interval: expected int >= 1, got 0"),
    (
        '[global]\nasn = 65000\nrouter-id = "1.1.1.1"\nmrt.updates = { path = "/tmp/%H" }\nmrt.rib = { path = "/tmp/%H" }\n',
        "global.mrt.rib.path: same template as global.mrt.updates.path",
    ),
    ('[global]\nasn = 65000\nrouter-id = "1.1.1.1"\nlog = { json = "yes" }\n', 'global.log.json: expected bool (true/false), got "yes"'),
    ("[global\n", "TOML syntax error"),
    ('neighbors = 3\n[global]\nasn = 65000\nrouter-id = "1.1.1.1"\n', "neighbors: expected array, got 3"),
]


@pytest.mark.parametrize("text, expected", GLOBAL_CASES, ids=[str(c[1])[:50] for c in GLOBAL_CASES])
def test_global_errors(text, expected):
    if expected is None:
        load_config(text + "\n")
        return
    with pytest.raises(ConfigError) as ei:
        load_config(text + "\n")
    assert expected in str(ei.value), str(ei.value)


def test_all_semantic_errors_are_reported():
    e = errors_of(
        N.replace("65001", "23456")
        + "timers = { hold-time = 1 }\n"
        + '[[neighbors]]\naddress = "192.0.2.300"\npeer-as = 65002\n'
    )
    paths = [p for p, _ in e.errors]
    assert "neighbors[0].peer-as" in paths
    assert "neighbors[0].timers.hold-time" in paths
    assert "neighbors[1].address" in paths
    assert e.path == paths[0]
    assert str(e).count("\n") == len(e.errors) - 1


def test_missing_file():
    with pytest.raises(ConfigError) as ei:
        load_config("/nonexistent/fastbgp.toml")
    assert "cannot read /nonexistent/fastbgp.toml" in str(ei.value)
    assert ei.value.source == "/nonexistent/fastbgp.toml"


def test_load_is_pure(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text(HEAD + '[global.api]\nsocket = "%s"\n[global.mrt.updates]\npath = "%s"\n' % (tmp_path / "s" / "sock", tmp_path / "m" / "%H"))
    load_config(p)
    assert sorted(x.name for x in tmp_path.iterdir()) == ["c.toml"]


# ------------------------------------------------------------- helpers


def test_parse_endpoint():
    assert parse_endpoint("192.0.2.1", 179) == ("192.0.2.1", 179)
    assert parse_endpoint("192.0.2.1:1179") == ("192.0.2.1", 1179)
    assert parse_endpoint("[2001:db8::1]:1179") == ("2001:db8::1", 1179)
    assert parse_endpoint("2001:db8::1", 179) == ("2001:db8::1", 179)
    assert parse_endpoint("[::]", 5) == ("::", 5)
    for bad in ("192.0.2.1", "host:80", "[::1]x", "1.2.3.4:0", "1.2.3.4:x"):
        with pytest.raises(ValueError):
            parse_endpoint(bad)


def test_parse_prefix_entry_ranges():
    def r(e):
        net, lo, hi = parse_prefix_entry(e)
        return str(net), lo, hi

    assert r("10.0.0.0/8") == ("10.0.0.0/8", 8, 8)
    assert r("10.0.0.0/8 le 24") == ("10.0.0.0/8", 8, 24)
    assert r("10.0.0.0/8 ge 16") == ("10.0.0.0/8", 16, 32)
    assert r("10.0.0.0/8 le 24 ge 16") == ("10.0.0.0/8", 16, 24)
    assert r("2001:db8::/32 ge 48") == ("2001:db8::/32", 48, 128)
    with pytest.raises(ValueError):
        parse_prefix_entry("10.0.0.0/8 le 24 le 25")


def test_parse_communities():
    assert parse_community("65000:100") == (65000 << 16) | 100
    assert parse_community("NO-EXPORT") == 0xFFFFFF01
    assert parse_community("blackhole") == 0xFFFF029A
    assert parse_community_pattern("65000:*") == (65000, None)
    assert parse_community_pattern("*:*") == (None, None)
    assert parse_large_community("4200000000:1:2") == (4200000000, 1, 2)
    for bad in ("1", "1:2:3", "-1:2", "65536:0", "a:b"):
        with pytest.raises(ValueError):
            parse_community(bad)
    with pytest.raises(ValueError):
        parse_large_community("1:2")


# ---------------------------------------------------------------- diff

BASE = HEAD + """
[[defined-sets.prefix-sets]]
name = "s"
prefixes = ["10.0.0.0/8 le 24"]
[[policies]]
name = "in"
[[policies.statements]]
conditions = { prefix-set = "s" }
actions = { result = "accept" }
[[policies]]
name = "out"
[[policies.statements]]
actions = { result = "accept" }
[[peer-groups]]
name = "dyn"
peer-as = 65100
[[dynamic-neighbors]]
prefix = "203.0.113.0/24"
peer-group = "dyn"
[[neighbors]]
address = "192.0.2.2"
peer-as = 65001
import-policy = ["in"]
[[neighbors]]
address = "192.0.2.3"
peer-as = 65002
export-policy = ["out"]
[[neighbors]]
address = "192.0.2.4"
peer-as = 65003
[[routes]]
prefix = "198.51.100.0/24"
[[routes]]
prefix = "198.51.101.0/24"
"""


def _d(new):
    return diff(load_config(BASE), load_config(new))


def test_diff_identical_is_empty():
    d = _d(BASE)
    assert d.empty and d.changed == [] and d.global_changed == []


def test_diff_added_removed():
    new = BASE.replace('address = "192.0.2.4"\npeer-as = 65003', 'address = "192.0.2.5"\npeer-as = 65003')
    d = _d(new)
    assert d.added == ["192.0.2.5"] and d.removed == ["192.0.2.4"] and d.changed == []


def test_diff_reset_on_session_settings():
    d = _d(BASE.replace("peer-as = 65003", "peer-as = 65003\ntimers = { hold-time = 30 }"))
    (c,) = d.changed
    assert (c.address, c.action, c.fields) == ("192.0.2.4", "reset", ["timers"])


def test_diff_soft_on_policy_list_change():
    d = _d(BASE.replace('peer-as = 65002\nexport-policy = ["out"]', 'peer-as = 65002\nexport-policy = ["out", "in"]'))
    (c,) = d.changed
    assert (c.address, c.action, c.soft_import, c.soft_export) == ("192.0.2.3", "soft", False, True)


def test_diff_soft_on_policy_definition_change():
    d = _d(BASE.replace('actions = { result = "accept" }\n[[policies]]', 'actions = { result = "reject" }\n[[policies]]'))
    assert d.policies_changed == ["in"]
    (c,) = d.changed
    assert (c.address, c.action, c.soft_import, c.soft_export, c.fields) == ("192.0.2.2", "soft", True, False, [])


def test_diff_soft_on_defined_set_change():
    d = _d(BASE.replace('"10.0.0.0/8 le 24"', '"10.0.0.0/8 le 23"'))
    assert d.policies_changed == ["in"]
    assert [(c.address, c.action, c.soft_import) for c in d.changed] == [("192.0.2.2", "soft", True)]


def test_diff_no_action_for_description():
    d = _d(BASE.replace("peer-as = 65003", 'peer-as = 65003\ndescription = "x"'))
    (c,) = d.changed
    assert (c.action, c.fields) == ("none", ["description"])


def test_diff_router_id_resets_everyone():
    d = _d(BASE.replace('router-id = "192.0.2.1"', 'router-id = "192.0.2.9"'))
    assert d.global_changed == ["router-id"]
    assert {c.address for c in d.changed} == {"192.0.2.2", "192.0.2.3", "192.0.2.4"}
    assert all(c.action == "reset" and "global.router-id" in c.fields for c in d.changed)


def test_diff_asn_change_resets_via_local_as():
    d = _d(BASE.replace("asn = 65000", "asn = 65009"))
    assert all(c.action == "reset" and "local-as" in c.fields for c in d.changed)
    assert len(d.changed) == 3


def test_diff_routes_and_dynamic():
    new = BASE.replace('prefix = "198.51.101.0/24"', 'prefix = "198.51.101.0/24"\nmed = 5')
    new = new.replace('[[routes]]\nprefix = "198.51.100.0/24"\n', '[[routes]]\nprefix = "198.51.102.0/24"\n')
    new = new.replace("peer-as = 65100", "peer-as = 65101")
    d = _d(new)
    assert d.routes_added == ["198.51.102.0/24"]
    assert d.routes_removed == ["198.51.100.0/24"]
    assert d.routes_changed == ["198.51.101.0/24"]
    assert d.dynamic_changed is True
    assert d.changed == []


def test_diff_is_msgspec_encodable():
    d = _d(BASE.replace("peer-as = 65003", "peer-as = 65004"))
    out = msgspec.json.decode(msgspec.json.encode(d))
    assert out["changed"][0]["action"] == "reset"
