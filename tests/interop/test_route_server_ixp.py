"""The fastbgp daemon as an IXP route server (RFC 7947) with three
clients -- BIRD 2, GoBGP and FRR --, each over an IPv4 and an IPv6 session:
Euro-IX BGP communities (standard and large, prepend-to-peer), RFC 7999
blackhole and the next-hop check, as configured in ``[global.route-server]``.
Each client must hold exactly the expected prefixes, control communities
stripped and prepends applied.  The same inputs go through BIRD as route
server (``rs client``, the community filters written below) to three more
clients of the same kinds, and each pair of clients of the two route
servers must hold the same routes.

``transport`` (issue 12): ``ipv4``, each client has one session per family
with each route server; ``ipv6``, one session over IPv6 carrying both
families, the IPv4 routes with RFC 8950 next hops (the clients' IPv6
addresses: the next-hop check then compares IPv6 addresses for IPv4
routes too, and a client's third-party next hop is an IPv6 one).

Needs root, BIRD, GoBGP and FRR (fastbgp/testing/lab.py); marked
``interop`` and ``slow``.
"""

import ipaddress

import pytest

from fastbgp.testing import lab as L
from fastbgp.testing.daemonlab import LabDaemon, families_toml, global_toml, neighbor_toml, require

pytestmark = [pytest.mark.interop, pytest.mark.slow, pytest.mark.timeout(150)]

RS_AS = 64500
BLACKHOLE_NH = {"ipv4": "192.0.2.66", "ipv6": "2001:db8::66"}
BAD_NH = {"ipv4": "192.0.2.50", "ipv6": "2001:db8::50"}  # addresses on the IXP LAN that are nobody's
NO_EXPORT = "65535:65281"
FAMS = ("ipv4", "ipv6")
BLACKHOLE = "65535:666"

# Client AS -> [(prefix, communities, large communities)] it announces.
ANNOUNCED = {
    65001: [
        ("198.51.100.0/28", (), ()),
        ("198.51.100.16/28", ("0:65002",), ()),  # not to 65002
        ("198.51.100.32/28", ("%d:65003" % RS_AS,), ()),  # only to 65003
        ("198.51.100.48/28", ("0:%d" % RS_AS,), ()),  # to nobody
        ("198.51.100.64/28", ("65502:65003", "65001:7"), ()),  # prepend twice to 65003
        ("198.51.100.80/28", (), ("%d:0:65003" % RS_AS,)),  # not to 65003 (large)
    ],
    65002: [
        ("198.51.100.128/28", (), ()),
        ("198.51.100.144/28", (), ("%d:1:65001" % RS_AS,)),  # only to 65001 (large)
        ("198.51.100.160/28", (), ("%d:101:65003" % RS_AS, "65002:1:1")),  # prepend once to 65003
        ("198.51.100.176/28", ("0:%d" % RS_AS, "%d:65003" % RS_AS), ()),  # nobody but 65003
    ],
    65003: [
        ("203.0.113.0/28", (), ()),
        ("203.0.113.16/28", ("0:65001", "65003:777"), ()),
        ("203.0.113.99/32", (BLACKHOLE,), ()),  # RFC 7999
    ],
}
# 65001 also announces this one with a next hop that is not its own.
WRONG_NH_PREFIX = "198.51.100.96/28"
# One client of each kind; FRR's JSON names well-known communities, so it
# is the client that receives none (it originates the blackhole route).
CLIENT_KINDS = {65001: L.Bird, 65002: L.GoBGP, 65003: L.FRR}

# Client AS -> {prefix: (AS path, communities, large communities, blackhole?)} expected.
EXPECTED = {
    65001: {
        "198.51.100.128/28": ([65002], [], [], False),
        "198.51.100.144/28": ([65002], [], [], False),
        "198.51.100.160/28": ([65002], [], ["65002:1:1"], False),
        "203.0.113.0/28": ([65003], [], [], False),
        "203.0.113.99/32": ([65003], [BLACKHOLE, NO_EXPORT], [], True),
    },
    65002: {
        "198.51.100.0/28": ([65001], [], [], False),
        "198.51.100.64/28": ([65001], ["65001:7"], [], False),
        "198.51.100.80/28": ([65001], [], [], False),
        "203.0.113.0/28": ([65003], [], [], False),
        "203.0.113.16/28": ([65003], ["65003:777"], [], False),
        "203.0.113.99/32": ([65003], [BLACKHOLE, NO_EXPORT], [], True),
    },
    65003: {
        "198.51.100.0/28": ([65001], [], [], False),
        "198.51.100.16/28": ([65001], [], [], False),
        "198.51.100.32/28": ([65001], [], [], False),
        "198.51.100.64/28": ([65001, 65001, 65001], ["65001:7"], [], False),
        "198.51.100.128/28": ([65002], [], [], False),
        "198.51.100.160/28": ([65002, 65002], [], ["65002:1:1"], False),
        "198.51.100.176/28": ([65002], [], [], False),
    },
}



def v6(prefix):
    """The IPv6 twin of a lab IPv4 prefix: 198.51.100.X/28 ->
    2001:db8:100:X::/64, 203.0.113.X/28 -> 2001:db8:113:X::/64, a /32 ->
    2001:db8:113:X::1/128."""
    addr, plen = prefix.split("/")
    o = addr.split(".")
    base = "2001:db8:%s:%s::" % ("100" if o[0] == "198" else "113", o[3])
    return str(ipaddress.ip_network(base + "1/128" if plen == "32" else base + "/64"))


def _prefix(prefix, fam):
    return prefix if fam == "ipv4" else v6(prefix)


def _routes(asn, next_hops):
    """The client's routes; ``next_hops``: family -> the next hop to give
    (None: the daemon's default)."""
    out = []
    for fam in ("ipv4", "ipv6"):
        out += [L.Route(_prefix(p, fam), communities=c, large_communities=lc, next_hop=next_hops.get(fam))
                for p, c, lc in ANNOUNCED[asn]]
        if asn == 65001:
            out.append(L.Route(_prefix(WRONG_NH_PREFIX, fam)))
    return out


def _client_export(asn, fam, transport):
    """BIRD client export filter: its static routes; 65001 names a next hop
    that is not its own for WRONG_NH_PREFIX (third-party next hop on the
    shared LAN, which BIRD keeps)."""
    bad = ""
    if asn == 65001:
        bad = "if net = %s then bgp_next_hop = %s; " % (_prefix(WRONG_NH_PREFIX, fam),
                                                       BAD_NH[L.next_hop_family(fam, transport)])
    return bad + "if source = RTS_STATIC then accept; reject;"


def _client(host, asn, rs_host, transport):
    """The client of AS ``asn`` (BIRD, GoBGP or FRR) peering with the route
    server on ``rs_host`` (both families, over ``transport``)."""
    kind = CLIENT_KINDS[asn]
    nbs = []
    for t, fams in L.transport_sessions(transport):
        if kind is L.Bird:
            opts = {"export": {fam: _client_export(asn, fam, transport) for fam in fams}}
        elif kind is L.FRR:
            # FRR must accept a first AS that is not the route server's.
            opts = {"extra": "no bgp enforce-first-as"}
        else:
            opts = {}
        nbs.append(L.session_neighbor(rs_host.addr(t), RS_AS, fams, options=opts))
    # GoBGP originates with the host's address of the route's family as next
    # hop and keeps it on an IPv6 session: over IPv6 it is given its IPv6
    # address, the RFC 8950 next hop BIRD and FRR choose themselves (an IPv4
    # next hop would need the route servers told the client's IPv4 address).
    nhs = {"ipv4": host.ipv6} if kind is L.GoBGP and transport == "ipv6" else {}
    return kind(host, asn, routes=_routes(asn, nhs), neighbors=nbs).start()


def _fastbgp_config(host, clients, transport):
    text = global_toml(RS_AS, host, "[global.route-server]", "euro-ix-communities = true", "blackhole = true",
                       'blackhole-next-hop-ipv4 = "%s"' % BLACKHOLE_NH["ipv4"],
                       'blackhole-next-hop-ipv6 = "%s"' % BLACKHOLE_NH["ipv6"],
                       "next-hop-check = true",
                       # Like the BIRD RS below (no `secondary`): FRR and GoBGP send the routes
                       # they learn back, which path hiding mitigation (RFC 7947 §2.3.2.1, on by
                       # default) would offer to the clients the best is hidden from; that is
                       # tests/interop/test_route_server_hiding.py's subject.
                       "path-hiding = false",
                       listen=[host.ipv4, "[%s]:179" % host.ipv6])
    for asn, h in clients.items():
        for t, fams in L.transport_sessions(transport):
            limits = ", ".join("%s-unicast = { max = 100 }" % f for f in fams)
            text += neighbor_toml(h.addr(t), asn, "route-server-client = true", "prefix-limit = { %s }" % limits,
                                  *families_toml(h.addr(t), fams))
    return text


def _bird_rs_export(peer, fam):
    """The same policy as BIRD filter text for client ``peer`` (what an IXP
    writes, or arouteserver generates, for BIRD)."""
    rs = RS_AS
    prepend = []
    for n, (std, lrg) in ((3, (65503, 103)), (2, (65502, 102)), (1, (65501, 101))):
        cond = "(%d,%d) ~ bgp_community || (%d,0) ~ bgp_community || (%d,%d,%d) ~ bgp_large_community || " \
               "(%d,%d,0) ~ bgp_large_community" % (std, peer, std, rs, lrg, peer, rs, lrg)
        prepend.append("if %s then { %s }" % (cond, " ".join(["bgp_path.prepend(bgp_path.first);"] * n)))
    return " ".join([
        "if (0,%d) ~ bgp_community then reject;" % peer,
        "if (%d,0,%d) ~ bgp_large_community then reject;" % (rs, peer),
        "if bgp_community ~ [(%d,0..%d), (%d,%d..65535)] || bgp_large_community ~ [(%d,1,*)] then {"
        % (rs, rs - 1, rs, rs + 1, rs),
        "  if !((%d,%d) ~ bgp_community || (%d,1,%d) ~ bgp_large_community) then reject;" % (rs, peer, rs, peer),
        "} else {",
        "  if (0,%d) ~ bgp_community || (%d,0,0) ~ bgp_large_community then reject;" % (rs, rs),
        "}",
        " else ".join(prepend),
        "bgp_community.delete([(0,*), (%d,*), (65501,*), (65502,*), (65503,*)]);" % rs,
        "bgp_large_community.delete([(%d,0,*), (%d,1,*), (%d,101,*), (%d,102,*), (%d,103,*)]);" % ((rs,) * 5),
        "if (65535,666) ~ bgp_community then { bgp_community.add((65535,65281)); bgp_next_hop = %s; }"
        % BLACKHOLE_NH[fam],
        "accept;",
    ])


def bird_route_server(host, clients, transport):
    # BIRD's `next hop check` is arouteserver's "bgp_next_hop != from".
    nbs = [L.session_neighbor(h.addr(t), asn, fams, options={
               "extra": "rs client;", "import": "if bgp_next_hop != from then reject; accept;",
               "export": {fam: _bird_rs_export(asn, fam) for fam in fams}})
           for asn, h in clients.items() for t, fams in L.transport_sessions(transport)]
    return L.Bird(host, RS_AS, neighbors=nbs)


def _view(rib):
    return {p: (r["as_path"], r["communities"], r["large_communities"], r["next_hop"]) for p, r in rib.items()}


def _expected(asn, fam):
    return {_prefix(p, fam): v for p, v in EXPECTED[asn].items()}


def _check_client(rib, asn, client_hosts, fam, transport):
    """Exactly the expected prefixes, attributes and next hops."""
    want = _expected(asn, fam)
    assert set(rib) == set(want), (asn, sorted(rib), sorted(want))
    for prefix, (path, comms, large, bh) in want.items():
        r = rib[prefix]
        origin_as = path[0]
        nh = BLACKHOLE_NH[fam] if bh else client_hosts[origin_as].addr(L.next_hop_family(fam, transport))
        got = (r["as_path"], sorted(r["communities"]), sorted(r["large_communities"]), r["next_hop"])
        assert got == (path, sorted(comms), sorted(large), nh), (asn, fam, prefix, got)


def _wait_set(client, asn, fam, rs, diag):
    """Until ``client`` holds exactly the expected prefixes of ``fam``."""
    L.wait_for(lambda: set(client.rib(fam)) == set(_expected(asn, fam)), timeout=30,
               what="AS%d's %s set from %s" % (asn, fam, rs),
               on_timeout=lambda: "%s\n%s" % (sorted(client.rib(fam)), diag()))


def _require():
    require(*set(CLIENT_KINDS.values()))


@pytest.mark.parametrize("workers", [0, 2], ids=["one-process", "2-workers"])
@pytest.mark.parametrize("transport", L.TRANSPORTS)
def test_route_server_ixp_policy_fastbgp_and_bird(transport, workers):
    """``workers = 2`` too: a front and two workers each holding half the
    prefixes give every client what one process gives (and BIRD)."""
    _require()
    with L.Lab() as lab:
        rs_host = lab.add_host("rs")
        clients = {asn: lab.add_host("c%d" % (asn - 65000)) for asn in ANNOUNCED}
        rsb_host = lab.add_host("rsb")
        bclients = {asn: lab.add_host("d%d" % (asn - 65000)) for asn in ANNOUNCED}
        with LabDaemon(rs_host, _fastbgp_config(rs_host, clients, transport), workers=workers) as fb:
            birds = {asn: _client(h, asn, rs_host, transport) for asn, h in clients.items()}
            bird_rs = bird_route_server(rsb_host, bclients, transport).start()
            bbirds = {asn: _client(h, asn, rsb_host, transport) for asn, h in bclients.items()}
            for asn in ANNOUNCED:
                for t, _ in L.transport_sessions(transport):
                    birds[asn].wait_established(rs_host.addr(t), timeout=40)
                    bbirds[asn].wait_established(rsb_host.addr(t), timeout=40)
            for asn in ANNOUNCED:
                for fam in FAMS:
                    _wait_set(birds[asn], asn, fam, "the fastbgp RS", fb.log_tail)
                    _check_client(birds[asn].rib(fam), asn, clients, fam, transport)
            # The next-hop check saw and rejected 65001's third-party next
            # hops: one WARNING per session, naming the first one (with
            # workers: per session and worker whose prefixes had one).
            n = len(L.transport_sessions(transport))
            L.wait_for(lambda: n <= fb.log_tail(400).count("next-hop-check") <= n * max(workers, 1), timeout=10,
                       what="next-hop-check warnings")
            warn = [line for line in fb.log_tail(400).splitlines() if "next-hop-check" in line]
            bad = {BAD_NH[L.next_hop_family(fam, transport)] for fam in FAMS}
            assert n <= len(warn) <= n * max(workers, 1) and all(any(b in w for b in bad) for w in warn), warn
            # Never twice for one session from one worker.
            said = {(w.split('msg="', 1)[1].split(": route-server", 1)[0], w.rsplit("worker=", 1)[-1]) for w in warn}
            assert len(said) == len(warn), warn
            # BIRD as route server on the same inputs: the same routes.
            for asn in ANNOUNCED:
                for fam in FAMS:
                    _wait_set(bbirds[asn], asn, fam, "the BIRD RS", bird_rs.log_tail)
                    _check_client(bbirds[asn].rib(fam), asn, bclients, fam, transport)
                    ours = {p: v[:3] for p, v in _view(birds[asn].rib(fam)).items()}
                    bd = {p: v[:3] for p, v in _view(bbirds[asn].rib(fam)).items()}
                    assert ours == bd, (asn, fam, ours, bd)
            fb.assert_alive()
