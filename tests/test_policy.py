"""fastbgp.rib.policy: conditions, actions, chains, defaults and the caches."""

import ipaddress
import pathlib
import random
import struct
import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastbgp.wire.as4 import decode_segments, encode_attr, encode_segments, split_attrs
from fastbgp.config.checks import load_config
from fastbgp.wire.constants import (
    AFI_IPV4,
    AFI_IPV6,
    AS_CONFED_SEQUENCE,
    AS_SEQUENCE,
    AS_SET,
    ATTR_AS_PATH,
    ATTR_COMMUNITIES,
    ATTR_LARGE_COMMUNITY,
    ATTR_LOCAL_PREF,
    ATTR_MED,
    ATTR_NEXT_HOP,
)
from fastbgp.rib.policy import (
    NEXT_HOP_SELF,
    PolicyContext,
    PrefixMatcher,
    Verdict,
    compile_policies,
    encode_route,
    render_as_path,
)

EXAMPLE = pathlib.Path(__file__).resolve().parents[1] / "examples" / "fastbgp.toml"
HEAD = '[global]\nasn = 65000\nrouter-id = "192.0.2.1"\n'


def engine(body, **opts):
    return compile_policies(load_config(HEAD + textwrap.dedent(body)), **opts)


def attrs(path=(65001,), origin=0, nh="198.51.100.1", comms=(), large=(), med=None, lp=None, segs=None, order=None):
    """A canonical block; attributes in type order unless ``order`` says."""
    items = [(0x40, 1, bytes((origin,)))]
    items.append((0x40, 2, encode_segments(segs if segs is not None else [(AS_SEQUENCE, list(path))], 4)))
    if nh:
        items.append((0x40, 3, ipaddress.ip_address(nh).packed))
    if med is not None:
        items.append((0x80, 4, med.to_bytes(4, "big")))
    if lp is not None:
        items.append((0x40, 5, lp.to_bytes(4, "big")))
    if comms:
        items.append((0xC0, 8, b"".join(c.to_bytes(4, "big") for c in comms)))
    if large:
        items.append((0xC0, 32, b"".join(struct.pack(">III", *x) for x in large)))
    if order:
        items.sort(key=lambda i: order.index(i[1]) if i[1] in order else 99)
    return b"".join(encode_attr(f, t, v) for f, t, v in items)


def by_type(block):
    return {t: v for _f, t, v in split_attrs(block)}


def c(a, b):
    return (a << 16) | b


def P(text):
    net = ipaddress.ip_network(text)
    return (AFI_IPV4 if net.version == 4 else AFI_IPV6, net.network_address.packed, net.prefixlen)


def one(cond="", act='result = "accept"', default="reject", sets="", match="all"):
    """Engine with a single one-statement policy 'p', and its chain."""
    e = engine(
        sets
        + """
        [[policies]]
        name = "p"
        [[policies.statements]]
        match = "%s"
        conditions = { %s }
        actions = { %s }
        """
        % (match, cond, act)
    )
    return e, e.chain(["p"], default=default)


# --------------------------------------------------------------- prefix sets


@pytest.mark.parametrize(
    "entry, yes, no",
    [
        ("10.0.0.0/8", ["10.0.0.0/8"], ["10.0.0.0/9", "10.1.0.0/16", "11.0.0.0/8", "0.0.0.0/0"]),
        ("10.0.0.0/8 le 16", ["10.0.0.0/8", "10.128.0.0/9", "10.255.0.0/16"], ["10.0.0.0/17", "11.0.0.0/16", "0.0.0.0/7"]),
        ("10.0.0.0/8 ge 24", ["10.1.2.0/24", "10.1.2.3/32"], ["10.0.0.0/8", "10.1.0.0/23"]),
        ("10.0.0.0/8 ge 16 le 24", ["10.1.0.0/16", "10.1.2.0/24"], ["10.0.0.0/15", "10.1.2.0/25"]),
        ("0.0.0.0/0 ge 25", ["8.8.8.0/25", "1.2.3.4/32"], ["8.8.8.0/24", "0.0.0.0/0"]),
        ("0.0.0.0/0 le 32", ["0.0.0.0/0", "1.2.3.4/32"], ["::/0"]),
        ("2001:db8::/32 le 48", ["2001:db8::/32", "2001:db8:ffff::/48"], ["2001:db8::/49", "2001:db9::/32", "10.0.0.0/8"]),
    ],
)
def test_prefix_set_ge_le(entry, yes, no):
    m = PrefixMatcher([entry])
    for p in yes:
        afi, addr, plen = P(p)
        assert m.match(afi, int.from_bytes(addr, "big"), plen), (entry, p)
    for p in no:
        afi, addr, plen = P(p)
        assert not m.match(afi, int.from_bytes(addr, "big"), plen), (entry, p)


def test_prefix_matcher_agrees_with_brute_force():
    rnd = random.Random(7)
    entries = []
    for _ in range(60):
        n = rnd.randrange(0, 25)
        net = ipaddress.ip_network((rnd.getrandbits(32) >> (32 - n) << (32 - n) if n else 0, n))
        lo = rnd.randrange(n, 33)
        hi = rnd.randrange(lo, 33)
        entries.append("%s ge %d le %d" % (net, lo, hi))
    m = PrefixMatcher(entries)
    parsed = [(ipaddress.ip_network(e.split()[0]), int(e.split()[2]), int(e.split()[4])) for e in entries]
    for _ in range(3000):
        plen = rnd.randrange(0, 33)
        net = ipaddress.ip_network((rnd.getrandbits(32) >> (32 - plen) << (32 - plen) if plen else 0, plen))
        # bias towards the set's networks
        if rnd.random() < 0.5:
            base = rnd.choice(parsed)[0]
            plen = rnd.randrange(base.prefixlen, 33)
            net = ipaddress.ip_network((int(base.network_address) | (rnd.getrandbits(32) & (0xFFFFFFFF >> base.prefixlen)), 32)).supernet(new_prefix=plen)
        want = any(net.subnet_of(n) and lo <= net.prefixlen <= hi for n, lo, hi in parsed)
        assert m.match(AFI_IPV4, int(net.network_address), net.prefixlen) == want, net


# ---------------------------------------------------------------- conditions

SETS = """
[[defined-sets.prefix-sets]]
name = "ten"
prefixes = ["10.0.0.0/8 le 24", { prefix = "2001:db8::/32", le = 48 }]
[[defined-sets.as-path-sets]]
name = "from-65001"
as-paths = ["^65001( |$)"]
[[defined-sets.as-path-sets]]
name = "two"
as-paths = ["65001", "65002"]
[[defined-sets.community-sets]]
name = "cs"
communities = ["65000:1", "65000:2"]
[[defined-sets.large-community-sets]]
name = "ls"
large-communities = ["65000:1:1", "65000:1:2"]
"""


def accepted(cond, prefix="192.0.2.0/24", block=None, ctx=None, match="all", sets=SETS):
    e, ch = one(cond, sets=sets, match=match)
    return e.apply(ch, "import", P(prefix), block if block is not None else attrs(), ctx) is not None


def test_condition_prefix_set():
    assert accepted('prefix-set = "ten"', "10.1.0.0/16")
    assert not accepted('prefix-set = "ten"', "10.1.2.0/25")
    assert accepted('prefix-set = "ten"', "2001:db8:1::/48")
    assert not accepted('prefix-set = "ten"', "2001:db8:1::/64")
    assert accepted('prefix-set = { name = "ten", match = "invert" }', "11.0.0.0/8")
    assert not accepted('prefix-set = { name = "ten", match = "invert" }', "10.0.0.0/8")


def test_condition_as_path_set():
    assert accepted('as-path-set = "from-65001"', block=attrs(path=(65001, 3356)))
    assert accepted('as-path-set = "from-65001"', block=attrs(path=(65001,)))
    assert not accepted('as-path-set = "from-65001"', block=attrs(path=(650012,)))
    assert not accepted('as-path-set = "from-65001"', block=attrs(path=(3356, 65001)))
    assert accepted('as-path-set = { name = "two", match = "all" }', block=attrs(path=(65001, 65002)))
    assert not accepted('as-path-set = { name = "two", match = "all" }', block=attrs(path=(65001, 3)))
    assert accepted('as-path-set = { name = "two", match = "any" }', block=attrs(path=(65001, 3)))
    assert accepted('as-path-set = { name = "two", match = "invert" }', block=attrs(path=(7, 8)))
    assert not accepted('as-path-set = { name = "two", match = "invert" }', block=attrs(path=(7, 65002)))


def test_as_path_rendering_and_regex_over_sets():
    segs = [(AS_CONFED_SEQUENCE, [64512, 64513]), (AS_SEQUENCE, [65001, 65002]), (AS_SET, [65010, 65011])]
    assert render_as_path(segs) == "(64512 64513) 65001 65002 {65010 65011}"
    assert render_as_path([]) == ""
    sets = SETS + '[[defined-sets.as-path-sets]]\nname = "agg"\nas-paths = ["\\\\{[^}]*65011"]\n'
    assert accepted('as-path-set = "agg"', block=attrs(segs=segs), sets=sets)
    assert not accepted('as-path-set = "agg"', block=attrs(path=(65011,)), sets=sets)


def test_condition_community_set():
    assert accepted('community-set = "cs"', block=attrs(comms=[c(65000, 2), c(1, 1)]))
    assert not accepted('community-set = "cs"', block=attrs(comms=[c(1, 1)]))
    assert not accepted('community-set = "cs"', block=attrs())
    assert accepted('community-set = { name = "cs", match = "all" }', block=attrs(comms=[c(65000, 1), c(65000, 2), c(9, 9)]))
    assert not accepted('community-set = { name = "cs", match = "all" }', block=attrs(comms=[c(65000, 1)]))
    assert accepted('community-set = { name = "cs", match = "invert" }', block=attrs(comms=[c(9, 9)]))
    assert not accepted('community-set = { name = "cs", match = "invert" }', block=attrs(comms=[c(65000, 1)]))


def test_condition_large_community_set():
    assert accepted('large-community-set = "ls"', block=attrs(large=[(65000, 1, 2)]))
    assert not accepted('large-community-set = "ls"', block=attrs(large=[(65000, 1, 3)]))
    assert accepted('large-community-set = { name = "ls", match = "all" }', block=attrs(large=[(65000, 1, 1), (65000, 1, 2)]))
    assert accepted('large-community-set = { name = "ls", match = "invert" }', block=attrs())


def test_condition_neighbor():
    ctx = PolicyContext("192.0.2.7", peer_as=65001, local_as=65000)
    assert accepted('neighbor = ["192.0.2.7"]', ctx=ctx)
    assert accepted('neighbor = ["2001:db8::1", "192.0.2.0/24"]', ctx=ctx)
    assert not accepted('neighbor = ["192.0.2.8", "198.51.100.0/24"]', ctx=ctx)
    assert not accepted('neighbor = ["192.0.2.7"]', ctx=None)  # no context: no neighbour
    assert accepted('neighbor = ["2001:db8::/32"]', ctx=PolicyContext("2001:db8::5"))


def test_condition_family_and_origin():
    assert accepted('family = ["ipv6-unicast"]', "2001:db8::/32")
    assert not accepted('family = ["ipv6-unicast"]', "10.0.0.0/8")
    assert accepted('origin = "egp"', block=attrs(origin=1))
    assert not accepted('origin = "igp"', block=attrs(origin=2))


def test_statement_match_modes():
    cond = 'origin = "igp", family = ["ipv6-unicast"]'
    assert not accepted(cond, "10.0.0.0/8", match="all")
    assert accepted(cond, "10.0.0.0/8", match="any")
    assert not accepted(cond, "10.0.0.0/8", match="invert")
    assert accepted(cond, "10.0.0.0/8", block=attrs(origin=2), match="invert")
    assert accepted("", match="all") and accepted("", match="any") and accepted("", match="invert")


# ------------------------------------------------------------------ actions


def run(act, block=None, prefix="192.0.2.0/24", ctx=None):
    e, ch = one(act=", ".join(x for x in ('result = "accept"', act) if x))
    return e.evaluate(ch, "import", P(prefix), block if block is not None else attrs(), ctx)


def test_set_local_pref_and_med():
    out = run("set-local-pref = 300, set-med = 7", attrs(med=1)).attrs
    d = by_type(out)
    assert d[ATTR_LOCAL_PREF] == (300).to_bytes(4, "big")
    assert d[ATTR_MED] == (7).to_bytes(4, "big")
    # canonical order: sorted by type code
    assert [t for _f, t, _v in split_attrs(out)] == sorted(d)
    flags = {t: f for f, t, _v in split_attrs(out)}
    assert flags[ATTR_LOCAL_PREF] == 0x40 and flags[ATTR_MED] == 0x80


def test_unchanged_block_is_the_same_object():
    block = attrs(lp=100)
    assert run("", block).attrs is block
    # setting a value it already has changes nothing either
    assert run("set-local-pref = 100", block).attrs is block


def test_modification_sorts_a_block_received_out_of_order():
    block = attrs(comms=[c(1, 1)], lp=5, order=[8, 5, 3, 2, 1])
    out = run("set-med = 1", block).attrs
    assert [t for _f, t, _v in split_attrs(out)] == [1, 2, 3, 4, 5, 8]
    assert by_type(out)[ATTR_COMMUNITIES] == by_type(block)[ATTR_COMMUNITIES]


def test_modified_attribute_keeps_its_flags():
    block = attrs(comms=[c(1, 1)]).replace(b"\xc0\x08", b"\xe0\x08")  # Partial bit set
    out = run('communities = { add = ["2:2"] }', block).attrs
    assert {t: f for f, t, _v in split_attrs(out)}[ATTR_COMMUNITIES] == 0xE0


def test_communities_add_remove_replace():
    block = attrs(comms=[c(65000, 1), c(65000, 2), c(3, 3)])

    def comms(act, b=block):
        v = by_type(run(act, b).attrs).get(ATTR_COMMUNITIES)
        return None if v is None else list(struct.unpack(">%dI" % (len(v) // 4), v))

    assert comms('communities = { add = ["4:4", "65000:1"] }') == [c(65000, 1), c(65000, 2), c(3, 3), c(4, 4)]
    assert comms('communities = { remove = ["65000:*"] }') == [c(3, 3)]
    assert comms('communities = { remove = ["*:3"], add = ["no-export"] }') == [c(65000, 1), c(65000, 2), 0xFFFFFF01]
    assert comms('communities = { replace = ["9:9", "9:9"] }') == [c(9, 9)]
    assert comms("communities = { replace = [] }") is None  # attribute removed
    assert comms('communities = { remove = ["*:*"] }') is None
    assert comms('communities = { add = ["1:1"] }', attrs()) == [c(1, 1)]


def test_large_communities_add_remove_replace():
    block = attrs(large=[(65000, 1, 1), (65000, 2, 2)])

    def large(act, b=block):
        v = by_type(run(act, b).attrs).get(ATTR_LARGE_COMMUNITY)
        return None if v is None else [struct.unpack(">III", v[i : i + 12]) for i in range(0, len(v), 12)]

    assert large('large-communities = { add = ["1:2:3"] }') == [(65000, 1, 1), (65000, 2, 2), (1, 2, 3)]
    assert large('large-communities = { remove = ["65000:1:*"] }') == [(65000, 2, 2)]
    assert large('large-communities = { replace = ["7:7:7"] }') == [(7, 7, 7)]
    assert large('large-communities = { remove = ["*:*:*"] }') is None


def test_as_path_prepend():
    def path(act, block=None, ctx=None):
        return decode_segments(by_type(run(act, block, ctx=ctx).attrs)[ATTR_AS_PATH], 4)

    assert path("as-path-prepend = { asn = 65000, count = 3 }") == [(AS_SEQUENCE, [65000, 65000, 65000, 65001])]
    ctx = PolicyContext("192.0.2.7", peer_as=65001, local_as=4200000001)
    assert path("as-path-prepend = { count = 1 }", ctx=ctx) == [(AS_SEQUENCE, [4200000001, 65001])]
    # an empty AS_PATH gets a new segment
    assert path("as-path-prepend = { asn = 65000 }", attrs(segs=[])) == [(AS_SEQUENCE, [65000])]
    # before an AS_SET: new sequence in front
    assert path("as-path-prepend = { asn = 65000 }", attrs(segs=[(AS_SET, [1, 2])])) == [(AS_SEQUENCE, [65000]), (AS_SET, [1, 2])]
    # confederation segments stay first (RFC 5065)
    confed = [(AS_CONFED_SEQUENCE, [64512]), (AS_SEQUENCE, [65001])]
    assert path("as-path-prepend = { asn = 65000 }", attrs(segs=confed)) == [(AS_CONFED_SEQUENCE, [64512]), (AS_SEQUENCE, [65000, 65001])]
    # without an asn and without a context local AS nothing is prepended
    assert path("as-path-prepend = { count = 2 }") == [(AS_SEQUENCE, [65001])]


def test_prepend_past_255_asns_splits_segments():
    out = run("as-path-prepend = { asn = 65000, count = 32 }", attrs(path=[7] * 250)).attrs
    segs = decode_segments(by_type(out)[ATTR_AS_PATH], 4)
    assert [len(a) for _s, a in segs] == [255, 27]
    assert sum((a for _s, a in segs), []) == [65000] * 32 + [7] * 250


def test_next_hop_self():
    ctx = PolicyContext("192.0.2.7", 65001, 65000, local_address="192.0.2.1")
    v = run("next-hop-self = true", ctx=ctx)
    assert v.next_hop == bytes([192, 0, 2, 1])
    assert by_type(v.attrs)[ATTR_NEXT_HOP] == bytes([192, 0, 2, 1])
    # IPv6 route: the next hop is not in the block; the verdict carries it
    ctx6 = PolicyContext("2001:db8::7", 65001, 65000, local_address="2001:db8::1")
    block = attrs(nh=None)
    v = run("next-hop-self = true", block, prefix="2001:db8:5::/48", ctx=ctx6)
    assert v.next_hop == ipaddress.ip_address("2001:db8::1").packed and v.attrs is block
    # unknown local address: the session substitutes its own
    v = run("next-hop-self = true", prefix="2001:db8:5::/48", ctx=ctx)
    assert v.next_hop is NEXT_HOP_SELF


def test_set_next_hop():
    v = run('set-next-hop = "203.0.113.1"')
    assert v.next_hop == bytes([203, 0, 113, 1]) and by_type(v.attrs)[ATTR_NEXT_HOP] == v.next_hop
    v = run('set-next-hop = "2001:db8::99"', attrs(nh=None), prefix="2001:db8:1::/48")
    assert v.next_hop == ipaddress.ip_address("2001:db8::99").packed
    # a next hop of the other family is not applied
    block = attrs()
    v = run('set-next-hop = "2001:db8::99"', block)
    assert v.next_hop is None and v.attrs is block


def test_verdict_type():
    v = run("")
    assert isinstance(v, Verdict) and v.next_hop is None


# ------------------------------------------------------------------- chains

CHAINS = SETS + """
[[policies]]
name = "tag"
[[policies.statements]]
name = "add"
actions = { communities = { add = ["65000:1"] } }
[[policies.statements]]
name = "see-it"
conditions = { community-set = "cs" }
actions = { set-local-pref = 111 }
[[policies]]
name = "drop-ten"
[[policies.statements]]
conditions = { prefix-set = "ten" }
actions = { result = "reject" }
[[policies]]
name = "accept-all"
[[policies.statements]]
actions = { result = "accept", set-med = 5 }
[[policies]]
name = "reject-all"
[[policies.statements]]
actions = { result = "reject" }
[[policies]]
name = "empty"
"""


def test_next_continues_with_modified_route():
    e = engine(CHAINS)
    out = e.apply(e.chain(["tag"], default="accept"), "import", P("192.0.2.0/24"), attrs())
    d = by_type(out)
    assert d[ATTR_COMMUNITIES] == c(65000, 1).to_bytes(4, "big")
    assert d[ATTR_LOCAL_PREF] == (111).to_bytes(4, "big")


def test_chain_order_and_results():
    e = engine(CHAINS)
    block = attrs()
    ten, other = P("10.1.0.0/16"), P("192.0.2.0/24")
    ch = e.chain(["drop-ten", "accept-all", "reject-all"], default="reject")
    assert e.apply(ch, "import", ten, block) is None  # reject ends the chain
    assert by_type(e.apply(ch, "import", other, block))[ATTR_MED] == (5).to_bytes(4, "big")  # accept ends it
    ch = e.chain(["reject-all", "accept-all"], default="accept")
    assert e.apply(ch, "import", other, block) is None
    # falling off the end: the default
    assert e.apply(e.chain(["drop-ten", "empty"], default="accept"), "import", other, block) is block
    assert e.apply(e.chain(["drop-ten", "empty"], default="reject"), "import", other, block) is None
    assert e.apply(e.chain([], default="reject"), "import", other, block) is None
    # modifications made by "next" statements survive into the default accept
    out = e.apply(e.chain(["tag"], default="accept"), "export", other, block)
    assert ATTR_COMMUNITIES in by_type(out)
    assert e.apply(e.chain(["tag"], default="reject"), "import", other, block) is None


def test_chain_by_name_and_unknown():
    e = engine(CHAINS)
    assert e.chain("accept-all") is e.chain(["accept-all"])  # interned
    assert e.chain(("accept-all",), default="accept") is e.chain(["accept-all"])
    with pytest.raises(KeyError):
        e.chain(["nope"])
    with pytest.raises(ValueError):
        e.chain(["empty"], default="maybe")
    with pytest.raises(ValueError):
        e.chain(["empty"], direction="sideways")


def test_neighbor_target_uses_its_policies_and_rfc8212_defaults():
    cfg = load_config(
        HEAD
        + CHAINS
        + """
        [[neighbors]]
        address = "192.0.2.2"
        peer-as = 65001
        [[neighbors]]
        address = "192.0.2.3"
        peer-as = 65000
        [[neighbors]]
        address = "192.0.2.4"
        peer-as = 65002
        import-policy = ["drop-ten"]
        default-import = "accept"
        export-policy = ["accept-all"]
        """
    )
    e = compile_policies(cfg)
    ebgp, ibgp, custom = cfg.neighbors
    block = attrs()
    p = P("192.0.2.0/24")
    assert e.apply(ebgp, "import", p, block) is None  # RFC 8212: eBGP default reject
    assert e.apply(ebgp, "export", p, block) is None
    assert e.apply(ibgp, "import", p, block) is block
    assert e.apply(custom, "import", P("10.0.0.0/8"), block) is None
    assert e.apply(custom, "import", p, block) is block
    assert ATTR_MED in by_type(e.apply(custom, "export", p, block))
    assert e.prefix_independent(custom, "export") and not e.prefix_independent(custom, "import")


def test_example_config_policies():
    cfg = load_config(EXAMPLE)
    e = compile_policies(cfg)
    transit = cfg.neighbor("198.51.100.1")
    block = attrs(path=(64501, 3356), comms=[c(65000, 5)])
    assert e.apply(transit, "import", P("10.0.0.0/8"), block) is None  # bogon
    assert e.apply(transit, "import", P("8.8.8.0/25"), block) is None  # too specific
    out = by_type(e.apply(transit, "import", P("8.8.8.0/24"), block))
    assert out[ATTR_LOCAL_PREF] == (120).to_bytes(4, "big")
    assert out[ATTR_COMMUNITIES] == c(65000, 100).to_bytes(4, "big")
    cust = cfg.neighbor("203.0.113.9")
    good = attrs(path=(64600, 64600))
    assert by_type(e.apply(cust, "import", P("203.0.113.0/24"), good))[ATTR_LOCAL_PREF] == (200).to_bytes(4, "big")
    assert e.apply(cust, "import", P("203.0.113.0/25"), good) is None  # longer than le 24
    assert e.apply(cust, "import", P("198.51.100.0/24"), good) is None
    assert e.apply(cust, "import", P("203.0.113.0/24"), attrs(path=(64600, 3356))) is None  # as-path-set
    rtbh = attrs(path=(64600,), comms=[0xFFFF029A])
    v = e.evaluate(cust, "import", P("203.0.113.7/32"), rtbh)
    assert v.next_hop == bytes([192, 0, 2, 66])
    assert by_type(v.attrs)[ATTR_COMMUNITIES] == struct.pack(">II", 0xFFFFFF01, 0xFFFF029A)
    assert e.apply(cust, "import", P("203.0.113.7/32"), good) is None  # no blackhole community


# ------------------------------------------------------------------ caching


def groups(n, seed=1):
    rnd = random.Random(seed)
    return [attrs(path=(rnd.choice([65001, 65002, 3356]), 1000 + i), comms=[c(65000, rnd.randrange(3))], origin=rnd.randrange(3)) for i in range(n)]


def prefixes(n, seed=2):
    rnd = random.Random(seed)
    out = []
    for _ in range(n):
        plen = rnd.choice([8, 16, 20, 24, 24, 24, 25, 32])
        addr = (rnd.choice([10, 11, 192, 8]) << 24 | rnd.getrandbits(24)) >> (32 - plen) << (32 - plen)
        out.append((AFI_IPV4, addr.to_bytes(4, "big"), plen))
    return out


CACHE_POLICIES = SETS + """
[[policies]]
name = "attrs-only"
[[policies.statements]]
conditions = { as-path-set = "from-65001" }
actions = { result = "accept", set-local-pref = 200 }
[[policies.statements]]
conditions = { community-set = { name = "cs", match = "invert" } }
actions = { result = "reject" }
[[policies.statements]]
conditions = { origin = "incomplete" }
actions = { result = "reject" }
[[policies.statements]]
actions = { communities = { add = ["65000:9"] } }
[[policies]]
name = "with-prefix"
[[policies.statements]]
conditions = { prefix-set = "ten" }
actions = { result = "reject" }
[[policies.statements]]
match = "any"
conditions = { prefix-set = { name = "ten", match = "invert" }, origin = "egp" }
actions = { set-med = 1 }
[[policies]]
name = "per-peer"
[[policies.statements]]
conditions = { neighbor = ["192.0.2.0/25"] }
actions = { result = "accept", as-path-prepend = { count = 1 } }
"""


def test_prefix_independent_chain_runs_once_per_group():
    e = engine(CACHE_POLICIES)
    ch = e.chain(["attrs-only"], default="accept")
    assert e.prefix_independent(ch)
    gs, ps = groups(100), prefixes(200)
    results = {}
    for g in gs:
        for p in ps:
            results.setdefault(g, set()).add(e.apply(ch, "import", p, g))
    assert e.evaluations == len(gs)
    assert all(len(r) == 1 for r in results.values())
    for g in gs:
        assert e.apply_group(ch, g) == next(iter(results[g]))
        assert e.evaluate_group(ch, g) == e.evaluate_uncached(ch, "import", P("1.0.0.0/8"), g)
    assert e.evaluations == len(gs) + len(gs)  # evaluate_uncached runs every time


def test_prefix_dependent_chain_cost_scales_with_groups_not_prefixes():
    e = engine(CACHE_POLICIES)
    ch = e.chain(["with-prefix", "attrs-only"], default="reject")
    assert not e.prefix_independent(ch)
    with pytest.raises(ValueError):
        e.apply_group(ch, attrs())
    gs, ps = groups(50), prefixes(400)
    for g in gs:
        for p in ps:
            assert e.evaluate(ch, "import", p, g) == e.evaluate_uncached(ch, "import", p, g)
    # each group has at most two branches (in "ten" or not)
    assert e.evaluations <= 2 * len(gs) + len(gs) * len(ps)  # includes the uncached runs
    runs = e.evaluations - len(gs) * len(ps)
    assert runs <= 2 * len(gs)


def test_cached_verdict_objects_are_shared():
    e = engine(CACHE_POLICIES)
    ch = e.chain(["attrs-only"], default="accept")
    g = attrs(path=(7,), comms=[c(65000, 1)])
    a = e.apply(ch, "import", P("1.0.0.0/8"), g)
    b = e.apply(ch, "import", P("2.0.0.0/8"), g)
    assert a is b and a is not g


def test_context_dependent_chain_is_keyed_by_context():
    e = engine(CACHE_POLICIES)
    ch = e.chain(["per-peer"], default="reject")
    assert ch.uses_ctx and e.prefix_independent(ch)
    g = attrs(path=(65001,))
    near = PolicyContext("192.0.2.7", 65001, 65000)
    far = PolicyContext("192.0.2.200", 65001, 65000)
    out = e.apply_group(ch, g, near)
    assert decode_segments(by_type(out)[ATTR_AS_PATH], 4) == [(AS_SEQUENCE, [65000, 65001])]
    assert e.apply_group(ch, g, far) is None
    assert e.apply_group(ch, g, PolicyContext("192.0.2.7", 65001, 65000)) is out  # equal context, same entry
    # chains that ignore the context share entries across neighbours
    ch2 = e.chain(["attrs-only"], default="accept")
    e.apply_group(ch2, g, near)
    n = e.evaluations
    e.apply_group(ch2, g, far)
    assert e.evaluations == n


def test_family_dependent_chain_is_keyed_by_family():
    e, ch = one('family = ["ipv6-unicast"]', default="reject")
    g = attrs(nh=None)
    assert e.apply_group(ch, g, afi=AFI_IPV6) is g
    assert e.apply_group(ch, g, afi=AFI_IPV4) is None


def test_small_cache_stays_correct():
    e = engine(CACHE_POLICIES, cache_size=3, view_cache_size=2)
    ch = e.chain(["with-prefix", "attrs-only"], default="accept")
    gs, ps = groups(20), prefixes(50)
    for _ in range(2):
        for g in gs:
            for p in ps:
                assert e.evaluate(ch, "import", p, g) == e.evaluate_uncached(ch, "import", p, g)
    assert len(ch._cache) <= 3


@settings(max_examples=150, deadline=None)
@given(
    plens=st.lists(st.integers(0, 32), min_size=1, max_size=30),
    addrs=st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=30),
    comm=st.integers(0, 3),
    origin=st.integers(0, 2),
)
def test_decision_cache_matches_uncached(plens, addrs, comm, origin):
    e = _PROP_ENGINE
    ch = e.chain(["with-prefix", "tag", "attrs-only"], default="accept")
    g = attrs(path=(65001 + comm % 2,), comms=[c(65000, comm)], origin=origin)
    for plen, addr in zip(plens, addrs):
        p = (AFI_IPV4, (addr >> (32 - plen) << (32 - plen) if plen else 0).to_bytes(4, "big"), plen)
        assert e.evaluate(ch, "import", p, g) == e.evaluate_uncached(ch, "import", p, g)


_PROP_ENGINE = engine(CACHE_POLICIES + CHAINS.replace(SETS, ""))


def test_prefix_spellings():
    e, ch = one('prefix-set = "ten"', sets=SETS)
    g = attrs()
    for p in (P("10.1.0.0/16"), b"\x10\x0a\x01", "10.1.0.0/16", ipaddress.ip_network("10.1.0.0/16"), (AFI_IPV4, b"\x0a\x01", 16)):
        assert e.apply(ch, "import", p, g) is g, p
    for p in (P("10.1.2.0/25"), b"\x19\x0a\x01\x02\x00", "11.0.0.0/8"):
        assert e.apply(ch, "import", p, g) is None, p
    # packed IPv6 needs the family
    assert e.apply(ch, "import", b"\x30\x20\x01\x0d\xb8\x00\x01", g, afi=AFI_IPV6) is g


def test_apply_group_agrees_with_apply_for_a_million_style_load():
    """The shape of a full table: many prefixes over few groups."""
    e = engine(CACHE_POLICIES)
    ch = e.chain(["with-prefix", "attrs-only"], default="accept")
    gs, ps = groups(200, seed=5), prefixes(1000, seed=6)
    for i, p in enumerate(ps):
        e.apply(ch, "import", p, gs[i % len(gs)])
    first = e.evaluations
    for i, p in enumerate(ps):
        e.apply(ch, "import", p, gs[i % len(gs)])
    assert e.evaluations == first  # second pass entirely from the cache
    assert first <= 2 * len(gs)


# -------------------------------------------------------------- origination


def test_encode_route():
    cfg = load_config(EXAMPLE)
    (afi, addr, plen), block, nh = encode_route(cfg.routes[0])
    assert (afi, addr, plen) == (AFI_IPV4, bytes([192, 0, 2, 0]), 24)
    d = by_type(block)
    assert d[1] == b"\x00" and d[2] == b"" and d[ATTR_NEXT_HOP] == bytes([192, 0, 2, 1])
    assert d[ATTR_MED] == (10).to_bytes(4, "big") and d[ATTR_COMMUNITIES] == c(65000, 1).to_bytes(4, "big")
    assert nh == bytes([192, 0, 2, 1])
    assert [t for _f, t, _v in split_attrs(block)] == sorted(d)
    (afi, addr, plen), block, nh = encode_route(cfg.routes[1])
    d = by_type(block)
    assert afi == AFI_IPV6 and plen == 32 and nh is NEXT_HOP_SELF
    assert ATTR_NEXT_HOP not in d and d[1] == b"\x02" and d[ATTR_LOCAL_PREF] == (100).to_bytes(4, "big")
    assert d[ATTR_LARGE_COMMUNITY] == struct.pack(">III", 65000, 1, 1)


# ------------------------------------------------ fast paths vs the general one

# Conditions and actions the property test draws statements from: the fast
# paths (one changed attribute spliced into a sorted block, community edits
# on a route without the attribute encoded at compile time, views split on
# first use) must give what evaluate_uncached's general path gives.
_FAST_CONDS = ['rpki = "valid"', 'rpki = "invalid"', 'rpki = "not-found"', 'community-set = "cs"',
               'large-community-set = "ls"', 'as-path-set = "two"', 'origin = "igp"', ""]
_FAST_ACTS = ['large-communities = { add = ["65000:9:1"] }', 'large-communities = { add = ["65000:1:1", "65000:9:2"] }',
              'large-communities = { remove = ["65000:1:*"] }', 'large-communities = { replace = ["65000:7:7"] }',
              'communities = { add = ["65000:9"] }', 'communities = { remove = ["65000:*"] }',
              'communities = { replace = [] }', "set-local-pref = 300", "set-med = 7",
              "as-path-prepend = { asn = 65000, count = 2 }", 'set-next-hop = "192.0.2.77"']
_RPKI_HEAD = '[rpki]\ncaches = [{ address = "192.0.2.1" }]\n'


def _fast_engine(statements, default):
    body = SETS + '[[policies]]\nname = "p"\n'
    for cond, acts, result in statements:
        body += "[[policies.statements]]\nconditions = { %s }\nactions = { %s }\n" % (
            cond, ", ".join(list(acts) + ['result = "%s"' % result]))
    e = compile_policies(load_config(HEAD + _RPKI_HEAD + body))
    return e, e.chain(["p"], default=default)


_block_items = st.lists(
    st.sampled_from([
        (0x40, 1, b"\x00"), (0x40, 1, b"\x02"), (0x40, 2, encode_segments([(AS_SEQUENCE, [65001, 64512])], 4)),
        (0x40, 2, b""), (0x40, 3, bytes([198, 51, 100, 1])), (0x80, 4, (5).to_bytes(4, "big")),
        (0x40, 5, (100).to_bytes(4, "big")), (0xC0, 8, struct.pack(">II", c(65000, 1), c(65001, 3))),
        (0xC0, 8, b""), (0xD0, 8, struct.pack(">I", c(65000, 9))),  # extended length, 4 octets
        (0xC0, 32, struct.pack(">III", 65000, 1, 1) * 2), (0xC0, 32, struct.pack(">III", 65000, 9, 1)),
        (0xC0, 99, b"opaque"), (0xD0, 120, bytes(300)),
    ]),
    max_size=9,
)


@settings(max_examples=120, deadline=None)
@given(
    items=_block_items,
    shuffle=st.booleans(),
    statements=st.lists(
        st.tuples(st.sampled_from(_FAST_CONDS), st.lists(st.sampled_from(_FAST_ACTS), max_size=3, unique_by=lambda a: a.split(" =")[0]),
                  st.sampled_from(["accept", "next", "reject"])),
        min_size=1, max_size=4),
    default=st.sampled_from(["accept", "reject"]),
)
def test_fast_paths_agree_with_the_general_path(items, shuffle, statements, default):
    """Random blocks (sorted or not, duplicate types included) through random
    chains: the cached, shortcut evaluation equals the general one for every
    RFC 6811 state, and the accepted block is the very input object when
    nothing changed.  So does the evaluation without the chain's cache (the
    daemon's import, which keeps its own), which leaves that cache as it
    was."""
    if not shuffle:
        items = sorted(items, key=lambda i: i[1])
    block = b"".join(encode_attr(f, t, v) for f, t, v in items)
    e, ch = _fast_engine(statements, default)
    base = PolicyContext("192.0.2.9", 65001, 65000)
    for state in ("valid", "invalid", "not-found", None):
        ctx = base.with_validation(state)
        for afi in (AFI_IPV4, AFI_IPV6):
            want = e.evaluate_uncached(ch, "import", (afi, b"", 0), block, ctx)
            held = len(ch._cache)
            direct = e.evaluate_group(ch, block, ctx, afi, cached=False)
            assert direct == want and len(ch._cache) == held
            got = e.evaluate_group(ch, block, ctx, afi)
            assert got == want
            if got is not None and got.attrs == block:
                assert got.attrs is block and direct.attrs is block


def test_a_chain_blind_to_the_block_replays_its_plan():
    """A chain whose conditions read only the context (RFC 6811 state) and
    whose actions are data (tag, LOCAL_PREF) is worked out once per
    context and family and replayed on every new block, with the general
    path's result; a condition on the block, or a prepend among the actions
    that apply, runs the chain itself every time."""
    rov = [('rpki = "invalid"', [], "reject"),
           ('rpki = "valid"', ['large-communities = { add = ["65000:9:1"] }', 'communities = { add = ["65000:9"] }',
                               "set-local-pref = 200"], "accept")]
    e, ch = _fast_engine(rov, "accept")
    blocks = [attrs(comms=[c(65000, k)], med=k) for k in range(4)]
    # Extended Length on short values: the edited attribute is re-encoded
    # without it, as _Route.set does.
    blocks.append(b"".join(encode_attr(f, t, v) for f, t, v in (
        (0x40, 1, b"\x00"), (0x40, 2, encode_segments([(AS_SEQUENCE, [65001])], 4)), (0x40, 3, bytes([198, 51, 100, 1])),
        (0xD0, 8, struct.pack(">I", c(65000, 9))), (0xD0, 32, struct.pack(">III", 65000, 1, 1)))))
    for state in ("valid", "invalid", "not-found"):
        ctx = PolicyContext("192.0.2.9", 65001, 65000).with_validation(state)
        for g in blocks:
            assert e.evaluate_group(ch, g, ctx, cached=False) == \
                e.evaluate_uncached(ch, "import", P("192.0.2.0/24"), g, ctx)
    assert e.replays == 15 and len(ch._plans) == 3
    for extra in (('community-set = "cs"', [], "next"),
                  ('rpki = "valid"', ["as-path-prepend = { asn = 65000, count = 2 }"], "next")):
        e, ch = _fast_engine([extra] + rov, "accept")
        ctx = PolicyContext("192.0.2.9", 65001, 65000).with_validation("valid")
        for g in blocks:
            assert e.evaluate_group(ch, g, ctx, cached=False) == \
                e.evaluate_uncached(ch, "import", P("192.0.2.0/24"), g, ctx)
        assert e.replays == 0


def test_rov_chain_splices_the_tag_into_the_block():
    """bench/rpki_vs_bird.py's ROV policy: the state's large community is
    inserted in type order, the other attributes' bytes untouched, and the
    result is the general path's."""
    e, ch = _fast_engine([('rpki = "%s"' % s, ['large-communities = { add = ["65000:9:%d"] }' % i], "accept")
                          for i, s in enumerate(("valid", "invalid", "not-found"))], "accept")
    g = attrs(comms=[c(65000, 1)], med=5)
    for i, state in enumerate(("valid", "invalid", "not-found")):
        ctx = PolicyContext("192.0.2.9", 65001, 65000).with_validation(state)
        v = e.evaluate_group(ch, g, ctx)
        assert v.attrs == g + encode_attr(0xC0, 32, struct.pack(">III", 65000, 9, i))
        assert v == e.evaluate_uncached(ch, "import", P("192.0.2.0/24"), g, ctx)
    # A large community already there: kept first, the tag appended.
    g2 = attrs(large=[(65000, 1, 1)], order=[32, 1, 2, 3])
    v = e.evaluate_group(ch, g2, PolicyContext().with_validation("valid"))
    assert by_type(v.attrs)[ATTR_LARGE_COMMUNITY] == struct.pack(">III", 65000, 1, 1) + struct.pack(">III", 65000, 9, 0)
    assert [t for _f, t, _v in split_attrs(v.attrs)] == [1, 2, 3, 32]
