"""fastbgp against real BGP daemons: sessions, capabilities, routes in both
directions, withdrawals, route refresh and administrative shutdown.

Every test runs one daemon (BIRD 2, GoBGP, FRR, ExaBGP, OpenBGPD) in one lab
namespace and fastbgp (a real :class:`fastbgp.session.speaker.Speaker` on uvloop,
see :mod:`tests.interop.fastbgp_peer`) in another, on the lab bridge.

What each daemon is expected to say about itself (capabilities it sends,
how it reports routes) is in :data:`PEERS`; the daemon quirks behind those
expectations are documented in :mod:`fastbgp.testing.lab`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Callable, Optional

import pytest

from fastbgp.testing import lab as L
from .conftest import require
from .fastbgp_peer import FastBGP

pytestmark = pytest.mark.interop

FB_AS = 65001
PEER_AS = 65002

V4, V6 = [1, 1], [2, 1]


def _no_lp(r: Optional[dict]) -> Optional[dict]:
    """A normalised route without LOCAL_PREF: on eBGP routes BIRD and
    OpenBGPD show their import default (100), the others nothing."""
    if r is None:
        return None
    r = dict(r)
    r.pop("local_pref", None)
    return r


def _route(*args, **kw) -> dict:
    return _no_lp(L.route(*args, **kw))


# --------------------------------------------------------------------------
# per-daemon knowledge


def _bird_caps(d: L.Bird, fb_host, families) -> None:
    text = d.protocol_info(fb_host.ipv4)
    nb = text.split("Neighbor capabilities", 1)[1].split("Session:", 1)[0]
    assert "4-octet AS numbers" in nb and "Route refresh" in nb and "Enhanced refresh" in nb, text
    assert re.search(r"AF announced:\s+" + r"\s+".join(families), nb), text
    assert re.search(r"Session:\s+external AS4", text), text
    for fam in families:
        assert re.search(rf"Channel {fam}\s+State:\s+UP", text), text


def _gobgp_caps(d: L.GoBGP, fb_host, families) -> None:
    text = d.cli("neighbor", fb_host.ipv4, check=True).stdout
    for fam in families:
        assert re.search(rf"{fam}-unicast:\s+advertised and received", text), text
    assert re.search(r"4-octet-as:\s+advertised and received", text), text
    assert re.search(r"route-refresh:\s+advertised and received", text), text
    # GoBGP does not offer Enhanced Route Refresh; it shows ours as received.
    assert re.search(r"enhanced-route-refresh:\s+received", text), text


def _frr_caps(d: L.FRR, fb_host, families) -> None:
    caps = d.neighbors_json()[fb_host.ipv4]["neighborCapabilities"]
    assert caps["4byteAs"] == "advertisedAndReceived", caps
    assert caps["routeRefresh"].startswith("advertisedAndReceived"), caps
    assert caps["enhancedRouteRefresh"] == "advertisedAndReceived", caps
    for fam in families:
        assert caps["multiprotocolExtensions"][f"{fam}Unicast"].get("advertisedAndReceived") is True, caps


def _exabgp_caps(d: L.ExaBGP, fb_host, families) -> None:
    opens = [e["neighbor"] for e in d.events("open")
             if e["neighbor"].get("direction") == "receive" and d._peer(e) == fb_host.ipv4]
    assert opens, d.events("open")
    op = opens[-1]["open"]
    assert (op["asn"], op["router_id"], op["hold_time"]) == (FB_AS, fb_host.ipv4, 90)
    caps = {c["name"]: c for c in op["capabilities"].values()}
    assert caps["asn4"]["asn4"] == FB_AS
    assert sorted(caps["multiprotocol"]["families"]) == [f"{f}/unicast" for f in families]
    assert "route-refresh" in caps and "enhanced-route-refresh" in caps, caps


def _openbgpd_caps(d: L.OpenBGPD, fb_host, families) -> None:
    data = json.loads(d.bgpctl("-j", "show", "neighbor", fb_host.ipv4, check=True).stdout)
    sess = data["neighbors"][0]["session"]
    want = sorted(f"IPv{f[-1]} unicast" for f in families)
    remote = sess["remote"]["capabilities"]
    assert remote["as4byte"] and remote["refresh"] and remote["enhanced_refresh"], remote
    assert sorted(remote["multiprotocol"]) == want, remote
    neg = sess["capabilities"]
    assert neg["as4byte"] and neg["refresh"] and sorted(neg["multiprotocol"]) == want, neg


def _log_has(d: L.Daemon, *patterns: str) -> bool:
    text = d.log_text()
    return all(re.search(p, text) for p in patterns)


@dataclass
class Peer:
    cls: type
    caps: Callable
    # What fastbgp negotiates with it (i.e. what the daemon sends by default).
    route_refresh: bool
    enhanced_route_refresh: bool
    graceful_restart: bool
    # Regexes (formatted with addr= and msg=) the daemon logs for a received
    # Cease/Administrative Shutdown carrying msg; None: we must not send one.
    shutdown_log: Optional[tuple]
    # Can originate a route with an arbitrary AS_PATH (OpenBGPD cannot).
    as_path: bool = True
    # How to make the daemon send us a ROUTE-REFRESH (None: it cannot).
    soft_in: Optional[Callable] = None
    # Answers our ROUTE-REFRESH on this (non graceful restart) session.
    answers_refresh: bool = True
    # What its RIB shows for a route without MED (OpenBGPD: 0).
    no_med: Optional[int] = None


PEERS = {
    "bird": Peer(L.Bird, _bird_caps, True, True, True,
                 (r'Received: Administrative shutdown: "{msg}"',),
                 soft_in=lambda d, ip: d.birdc("reload", "in", d._proto(ip), check=True)),
    "gobgp": Peer(L.GoBGP, _gobgp_caps, True, False, False,
                  (r'received notification" Code=6 Communicated-Reason="{msg}" .*Subcode=2',)),
    # (GoBGP keeps its Adj-RIB-In: `softresetin` re-runs policy locally and
    # sends no ROUTE-REFRESH, so only our request is tested against it.)
    "frr": Peer(L.FRR, _frr_caps, True, True, True,
                (r'%NOTIFICATION: received from neighbor {addr} 6/2 \(Cease/Administrative Shutdown\) "{msg}"',),
                soft_in=lambda d, ip: d.vtysh(f"clear bgp {ip} soft in", check=True),
                # FRR 8.4 ignores a ROUTE-REFRESH that arrives before it sent
                # End-of-RIB ("rcvd route-refresh (REQUEST) ... before EoR"),
                # and it sends End-of-RIB only to graceful-restart peers.
                answers_refresh=False),
    # ExaBGP 4.2 crashes decoding a shutdown communication: never send one.
    "exabgp": Peer(L.ExaBGP, _exabgp_caps, False, False, False, None),
    "openbgpd": Peer(L.OpenBGPD, _openbgpd_caps, True, False, True,
                     (r"neighbor {addr}: received notification: Cease, administratively down",
                      r'neighbor {addr}: received shutdown reason: "{msg}"'),
                     as_path=False, no_med=0,
                     # OpenBGPD 7.7's RDE drops every ROUTE-REFRESH ("route
                     # refresh: AID IPv4 unicast not negotiated"), BIRD's too.
                     answers_refresh=False,
                     soft_in=lambda d, ip: d.bgpctl("neighbor", ip, "refresh", check=True)),
}


def _check_negotiated(neg: dict, spec: Peer, families) -> None:
    assert neg is not None
    assert neg["families"] == families
    assert (neg["as4"], neg["ebgp"], neg["local_asn"], neg["peer_asn"]) == (True, True, FB_AS, PEER_AS)
    assert neg["route_refresh"] is spec.route_refresh
    assert neg["enhanced_route_refresh"] is spec.enhanced_route_refresh
    assert (neg["graceful_restart"] is not None) is spec.graceful_restart
    assert neg["addpath_rx"] == [] and neg["addpath_tx"] == [] and neg["extended_message"] is False


def _wait_fb_route(fb: FastBGP, peer_ip: str, prefix: str, present: bool = True, timeout: float = 20):
    """fastbgp's decoded view of *prefix* from *peer_ip* (the raw runner
    dict, with as_path_segments, link_local, attribute_codes...)."""
    fam = "ipv6" if ":" in prefix else "ipv4"

    def check():
        r = fb.received(peer_ip, fam).get(prefix)
        return (r is not None) is present and (r or True)

    return L.wait_for(check, timeout, what=f"{prefix} {'from' if present else 'gone from'} {peer_ip} in fastbgp",
                      on_timeout=lambda: f"received={fb.received(peer_ip, fam)}\n{fb.log_tail()}")


# --------------------------------------------------------------------------
# fastbgp connects, the daemon listens: one session per address family


@pytest.mark.parametrize("kind", list(PEERS))
def test_fastbgp_active(lab, kind):
    spec = PEERS[kind]
    require(spec.cls)
    a = lab.add_host("fbgp")
    b = lab.add_host(kind)
    peer_path = (65100,) if spec.as_path else ()
    peer = spec.cls(b, PEER_AS,
                    neighbors=[L.Neighbor(a.ipv4, FB_AS, passive=True), L.Neighbor(a.ipv6, FB_AS, passive=True)],
                    routes=[L.Route("203.0.113.0/24", as_path=peer_path, origin="egp", med=7,
                                    communities=("65002:1", "65002:2"), large_communities=("65002:3:4",)),
                            L.Route("2001:db8:2::/48", med=3, communities=("65002:6",))]).start()
    fb = FastBGP(a, FB_AS, neighbors=[L.Neighbor(b.ipv4, PEER_AS), L.Neighbor(b.ipv6, PEER_AS)]).start()
    # Announced before the sessions are up: part of the initial table dump.
    fb.announce("198.51.100.0/24", as_path=[65010, 4200000001], origin="incomplete", med=5,
                communities=["65001:7", "65001:8"], large_communities=["65001:1:2", "4200000001:0:1"])
    # global + link-local next hop (RFC 2545 §3, 32 octets)
    our_ll = fb.link_local()
    fb.announce("2001:db8:1::/48", a.ipv6, link_local=our_ll, med=9, communities=["65001:9"],
                large_communities=["65001:0:6"])

    for ip, fam in ((b.ipv4, V4), (b.ipv6, V6)):
        fb.wait_established(ip)
        _check_negotiated(fb.negotiated(ip), spec, [fam])
        info = fb.info(ip)
        assert info["outbound"] is True and info["connection"][3] == 179
        assert info["remote_id"] == b.ipv4
    peer.wait_established(a.ipv4)
    peer.wait_established(a.ipv6)
    spec.caps(peer, a, ["ipv4"])

    # fastbgp -> daemon (next-hop-self: the session's own address)
    assert _no_lp(peer.wait_route("198.51.100.0/24")) == _route(
        a.ipv4, [FB_AS, 65010, 4200000001], "incomplete", 5, None, ["65001:7", "65001:8"],
        ["65001:1:2", "4200000001:0:1"])
    assert _no_lp(peer.wait_route("2001:db8:1::/48")) == _route(a.ipv6, [FB_AS], "igp", 9, None, ["65001:9"],
                                                                ["65001:0:6"])
    if kind == "bird":
        out = peer.birdc("show", "route", "2001:db8:1::/48", "all").stdout
        assert re.search(rf"BGP.next_hop: {re.escape(a.ipv6)} {re.escape(our_ll)}", out), out

    # daemon -> fastbgp, decoded
    r = _wait_fb_route(fb, b.ipv4, "203.0.113.0/24")
    assert FastBGP.norm(r) == L.route(b.ipv4, [PEER_AS, *peer_path], "egp", 7, None, ["65002:1", "65002:2"],
                                      ["65002:3:4"])
    assert r["as_path_segments"] == [[2, [PEER_AS, *peer_path]]]
    assert r["local_pref"] is None  # never on eBGP
    r = _wait_fb_route(fb, b.ipv6, "2001:db8:2::/48")
    assert FastBGP.norm(r) == L.route(b.ipv6, [PEER_AS], "igp", 3, None, ["65002:6"], [])
    if r["link_local"] is not None:  # RFC 2545 global + link-local next hop
        assert r["link_local"].startswith("fe80:")

    # runtime changes, both directions
    fb.announce("198.51.100.128/25", "192.0.2.1", communities=["65001:128"])
    assert _no_lp(peer.wait_route("198.51.100.128/25")) == _route(a.ipv4, [FB_AS], "igp", spec.no_med, None,
                                                                  ["65001:128"], [])
    peer.announce("203.0.113.128/25", med=11, communities=["65002:128"])
    r = _wait_fb_route(fb, b.ipv4, "203.0.113.128/25")
    assert (r["as_path"], r["med"], r["communities"], r["next_hop"]) == ([PEER_AS], 11, ["65002:128"], b.ipv4)

    # withdrawals, both directions
    fb.withdraw("198.51.100.0/24")
    fb.withdraw("2001:db8:1::/48")
    peer.wait_route("198.51.100.0/24", present=False)
    peer.wait_route("2001:db8:1::/48", present=False)
    assert "198.51.100.128/25" in peer.rib("ipv4")
    peer.withdraw("203.0.113.128/25")
    peer.withdraw("2001:db8:2::/48")
    _wait_fb_route(fb, b.ipv4, "203.0.113.128/25", present=False)
    _wait_fb_route(fb, b.ipv6, "2001:db8:2::/48", present=False)
    assert "203.0.113.0/24" in fb.received(b.ipv4, "ipv4")

    # ROUTE-REFRESH both ways: the session survives, routes stay
    if spec.route_refresh:
        before = fb.counters(b.ipv4)
        assert fb.refresh(b.ipv4) == 1
        if spec.answers_refresh:
            L.wait_for(lambda: fb.counters(b.ipv4)["received"]["update"] > before["received"]["update"], 10,
                       what="UPDATEs re-sent after our ROUTE-REFRESH")
        if spec.soft_in is not None:
            spec.soft_in(peer, a.ipv4)
            L.wait_for(lambda: fb.counters(b.ipv4)["received"]["refresh"] > before["received"]["refresh"], 10,
                       what="ROUTE-REFRESH from the daemon")
            L.wait_for(lambda: fb.counters(b.ipv4)["sent"]["update"] > before["sent"]["update"], 10,
                       what="fastbgp re-sending its routes")
        assert fb.state(b.ipv4) == "established" and peer.neighbor_state(a.ipv4) == "established"
        assert "198.51.100.128/25" in peer.rib("ipv4")
        assert "203.0.113.0/24" in fb.received(b.ipv4, "ipv4")

    # Administrative shutdown from fastbgp: Cease 6/2 (+ RFC 8203 message)
    msg = f"fastbgp maintenance {kind}" if spec.shutdown_log else ""
    fb.disable(b.ipv4, msg)
    if spec.shutdown_log:
        pats = [p.format(addr=re.escape(a.ipv4), msg=re.escape(msg)) for p in spec.shutdown_log]
        L.wait_for(lambda: _log_has(peer, *pats), 10, what=f"Cease 6/2 {msg!r} in {kind}'s log",
                   on_timeout=peer.log_tail)
    else:  # ExaBGP records the NOTIFICATION it received
        L.wait_for(lambda: any(n["code"] == 6 and n["subcode"] == 2 and n["peer"] == a.ipv4
                               and n.get("direction") == "receive" for n in peer.notifications()), 10,
                   what="Cease/2 recorded by ExaBGP", on_timeout=peer.log_tail)
    L.wait_for(lambda: peer.neighbor_state(a.ipv4) != "established", 10, what=f"{kind} session down")
    peer.wait_route("198.51.100.128/25", present=False)
    sent = fb.notifications(b.ipv4)["sent"]
    assert (sent["code"], sent["subcode"], sent["shutdown_message"]) == (6, 2, msg or None)
    assert fb.state(b.ipv4) == "idle"  # stays down until enable
    assert fb.received(b.ipv4) == {}
    assert fb.state(b.ipv6) == "established"  # the other session is untouched

    # ...and back up
    fb.enable(b.ipv4)
    fb.wait_established(b.ipv4)
    assert _wait_fb_route(fb, b.ipv4, "203.0.113.0/24")["med"] == 7
    peer.wait_route("198.51.100.128/25")

    # Administrative shutdown from the daemon, decoded by fastbgp
    if spec.shutdown_log or kind == "exabgp":
        # ExaBGP's `teardown 2` always says "Administrative Shutdown"
        peer_msg = f"{kind} going down" if kind != "exabgp" else None
        peer.disable(a.ipv6, peer_msg)
        L.wait_for(lambda: (fb.notifications(b.ipv6)["received"] or {}).get("code") == 6, 10,
                   what="Cease from the daemon", on_timeout=fb.log_tail)
        got = fb.notifications(b.ipv6)["received"]
        assert got["subcode"] == 2
        assert got["shutdown_message"] == (peer_msg or "Administrative Shutdown")
        L.wait_for(lambda: fb.state(b.ipv6) != "established", 10, what="fastbgp v6 session down")
        assert fb.received(b.ipv6) == {}


# --------------------------------------------------------------------------
# The daemon connects, fastbgp listens; IPv4 + IPv6 unicast on the IPv4
# session (multiprotocol), plus an IPv6 session to the IPv6 listener.


@pytest.mark.parametrize("kind", list(PEERS))
def test_fastbgp_passive(lab, kind):
    spec = PEERS[kind]
    require(spec.cls)
    a = lab.add_host("fbgp")
    b = lab.add_host(kind)
    both = ("ipv4", "ipv6")
    fb = FastBGP(a, FB_AS, neighbors=[L.Neighbor(b.ipv4, PEER_AS, passive=True, families=both),
                                      L.Neighbor(b.ipv6, PEER_AS, passive=True)]).start()
    assert sorted(fb.listen) == sorted([(a.ipv4, 179), (a.ipv6, 179)])
    fb.announce("198.51.100.0/24", communities=["65001:1"])
    # IPv6 routes over the IPv4 session need an explicit IPv6 next hop.
    fb.announce("2001:db8:1::/48", a.ipv6, med=4)
    peer = spec.cls(b, PEER_AS, neighbors=[L.Neighbor(a.ipv4, FB_AS, families=both), L.Neighbor(a.ipv6, FB_AS)],
                    routes=[L.Route("203.0.113.0/24", med=1)]).start()

    fb.wait_established(b.ipv4, timeout=40)
    fb.wait_established(b.ipv6, timeout=40)
    _check_negotiated(fb.negotiated(b.ipv4), spec, [V4, V6])
    _check_negotiated(fb.negotiated(b.ipv6), spec, [V6])
    for ip in (b.ipv4, b.ipv6):
        info = fb.info(ip)
        assert info["outbound"] is False and info["connection"][1] == 179, info
        assert info["counters"]["accepted"] >= 1
    peer.wait_established(a.ipv4)
    spec.caps(peer, a, ["ipv4", "ipv6"])

    assert _no_lp(peer.wait_route("198.51.100.0/24")) == _route(a.ipv4, [FB_AS], "igp", spec.no_med, None,
                                                                ["65001:1"], [])
    r = peer.wait_route("2001:db8:1::/48")
    assert (r["next_hop"], r["as_path"], r["med"]) == (a.ipv6, [FB_AS], 4)
    r = _wait_fb_route(fb, b.ipv4, "203.0.113.0/24")
    assert FastBGP.norm(r) == L.route(b.ipv4, [PEER_AS], "igp", 1)

    fb.withdraw("2001:db8:1::/48")
    peer.wait_route("2001:db8:1::/48", present=False)
