"""fastbgp's socket options against real daemons (:mod:`fastbgp.session.transport`).

* RFC 2385 TCP MD5: one lab, six sessions, both directions of connection
  and both address families.  With the same key on both ends a session
  comes up (fastbgp connecting to BIRD and FRR, GoBGP connecting to
  fastbgp's listener, where the key is installed per neighbour address);
  with different keys, or a key on one side only, the kernel drops the
  segments and the session stays down on both ends.
* RFC 5082 GTSM: against BIRD (``ttl security on``) and FRR
  (``ttl-security hops 1``), which only accept TTL 255, in both directions
  of connection -- so the TTL of our SYN, of the SYN-ACK our listener sends
  and of everything after is checked by the peer's kernel; against a peer
  without GTSM (eBGP TTL 1) the session must not come up.
"""

from __future__ import annotations

import time

import pytest

from fastbgp.testing import lab as L
from .conftest import require
from .fastbgp_peer import FastBGP

pytestmark = pytest.mark.interop

FB_AS = 65001
# How long a session with mismatched keys must stay down while every daemon
# retries (their connect retry timers are 1-2 s in the lab).
DOWN_FOR = 6.0


def _stays_down(fb, bad, since):
    """Every (daemon, peer address, our address) in *bad* never leaves
    Idle/Connect/Active on our side nor reaches Established on theirs,
    until DOWN_FOR seconds after *since*."""
    deadline = max(time.monotonic(), since + DOWN_FOR)
    while True:
        for daemon, peer_ip, our_ip in bad:
            assert fb.state(peer_ip) in ("idle", "connect", "active", "opensent"), (peer_ip, fb.info(peer_ip))
            assert daemon.neighbor_state(our_ip) != "established", (daemon, our_ip)
        if time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    for _d, peer_ip, _o in bad:
        assert fb.info(peer_ip)["established_count"] == 0


def test_md5(lab):
    require(L.Bird, L.GoBGP, L.FRR)
    a = lab.add_host("fbgp")
    hb = lab.add_host("bird")
    hg = lab.add_host("gobgp")
    hf = lab.add_host("frr")
    bird = L.Bird(hb, 65002, neighbors=[L.Neighbor(a.ipv4, FB_AS, passive=True, password="bird-v4-key"),
                                        L.Neighbor(a.ipv6, FB_AS, passive=True, password="bird-v6-key")],
                  routes=["203.0.113.0/24"]).start()
    gobgp = L.GoBGP(hg, 65003, neighbors=[L.Neighbor(a.ipv4, FB_AS, password="gobgp-v4-theirs"),
                                          L.Neighbor(a.ipv6, FB_AS, password="gobgp v6 key")],
                    routes=["2001:db8:3::/48"]).start()
    frr = L.FRR(hf, 65004, neighbors=[L.Neighbor(a.ipv4, FB_AS, passive=True, password="frr-v4-key"),
                                      L.Neighbor(a.ipv6, FB_AS)]).start()
    fb = FastBGP(a, FB_AS, neighbors=[
        # fastbgp connects
        L.Neighbor(hb.ipv4, 65002, password="bird-v4-key"),          # match
        L.Neighbor(hb.ipv6, 65002, password="bird-v6-WRONG"),        # mismatch
        L.Neighbor(hf.ipv4, 65004, password="frr-v4-key"),           # match
        # the daemon connects to fastbgp's listeners
        L.Neighbor(hg.ipv4, 65003, passive=True, password="gobgp-v4-ours"),  # mismatch
        L.Neighbor(hg.ipv6, 65003, passive=True, password="gobgp v6 key"),   # match
        L.Neighbor(hf.ipv6, 65004, passive=True, password="frr-v6-only-here"),  # key on our side only
    ]).start()
    fb.announce("198.51.100.0/24")

    good = [(bird, hb.ipv4, a.ipv4), (frr, hf.ipv4, a.ipv4), (gobgp, hg.ipv6, a.ipv6)]
    bad = [(bird, hb.ipv6, a.ipv6), (gobgp, hg.ipv4, a.ipv4), (frr, hf.ipv6, a.ipv6)]

    t0 = time.monotonic()
    for daemon, peer_ip, our_ip in good:
        fb.wait_established(peer_ip, timeout=30)
        daemon.wait_established(our_ip, timeout=10)
    assert "203.0.113.0/24" in fb.received(hb.ipv4)
    assert "2001:db8:3::/48" in fb.received(hg.ipv6)
    assert bird.wait_route("198.51.100.0/24")["as_path"] == [FB_AS]

    # The mismatched ones never got anywhere, on either side.
    _stays_down(fb, bad, t0)
    for _d, peer_ip, _o in bad:
        info = fb.info(peer_ip)
        assert info["established_count"] == 0 and info["history"] and \
            all(new not in ("OPENSENT", "OPENCONFIRM", "ESTABLISHED") for _old, new, _r in info["history"]), info
        assert info["counters"]["received"]["total"] == 0
    # fastbgp kept retrying the one it connects to (a SYN with the wrong
    # signature is dropped silently, so each attempt ends by ConnectRetry)
    assert fb.info(hb.ipv6)["connect_attempts"] >= 2
    # and never accepted an unsigned / wrongly signed connection
    assert fb.info(hg.ipv4)["counters"]["accepted"] == 0
    assert fb.info(hf.ipv6)["counters"]["accepted"] == 0
    # the good sessions are still up
    for _d, peer_ip, _o in good:
        assert fb.state(peer_ip) == "established"


def test_gtsm(lab):
    require(L.Bird, L.FRR)
    a = lab.add_host("fbgp")
    hb = lab.add_host("bird")
    hf = lab.add_host("frr")
    bird = L.Bird(hb, 65002, neighbors=[L.Neighbor(a.ipv4, FB_AS, passive=True, options={"extra": "ttl security on;"}),
                                        L.Neighbor(a.ipv6, FB_AS, passive=True, options={"extra": "ttl security on;"}),
                                        ], routes=["203.0.113.0/24"]).start()
    frr = L.FRR(hf, 65004, neighbors=[
        L.Neighbor(a.ipv4, FB_AS, options={"extra": f"neighbor {a.ipv4} ttl-security hops 1"}),
        L.Neighbor(a.ipv6, FB_AS)]).start()  # no GTSM: sends with TTL 1
    gtsm = {"gtsm": True}
    t0 = time.monotonic()
    fb = FastBGP(a, FB_AS, neighbors=[
        L.Neighbor(hb.ipv4, 65002, options=gtsm),                 # we connect, both GTSM
        L.Neighbor(hb.ipv6, 65002, options=gtsm),                 # same over IPv6 (hop limit)
        L.Neighbor(hf.ipv4, 65004, passive=True, options=gtsm),   # FRR connects, both GTSM
        L.Neighbor(hf.ipv6, 65004, passive=True, options=gtsm),   # FRR connects without GTSM
    ]).start()
    for daemon, peer_ip, our_ip in ((bird, hb.ipv4, a.ipv4), (bird, hb.ipv6, a.ipv6), (frr, hf.ipv4, a.ipv4)):
        fb.wait_established(peer_ip, timeout=30)
        daemon.wait_established(our_ip, timeout=10)
    assert "203.0.113.0/24" in fb.received(hb.ipv4)
    assert fb.info(hf.ipv4)["counters"]["accepted"] >= 1
    _stays_down(fb, [(frr, hf.ipv6, a.ipv6)], t0)
    # its TTL-1 SYNs never even reached the listener's accept queue
    assert fb.info(hf.ipv6)["counters"]["accepted"] == 0


def test_dual_stack_listener(lab):
    """One IPv6 listener ("::", dual stack) for IPv4 and IPv6 peers: the
    MD5 key of an IPv4 peer must be installed under its v4-mapped address,
    and GTSM for an IPv4 peer needs IP_TTL / IP_MINTTL on the AF_INET6
    socket."""
    require(L.GoBGP, L.FRR)
    a = lab.add_host("fbgp")
    hg = lab.add_host("gobgp")
    hf = lab.add_host("frr")
    L.GoBGP(hg, 65003, neighbors=[L.Neighbor(a.ipv4, FB_AS, password="dual-v4"),
                                  L.Neighbor(a.ipv6, FB_AS, password="dual-v6")],
            routes=["203.0.113.0/24"]).start()
    L.FRR(hf, 65004, neighbors=[L.Neighbor(a.ipv4, FB_AS, options={"extra": f"neighbor {a.ipv4} ttl-security hops 1"})],
          routes=["198.51.100.0/24"]).start()
    fb = FastBGP(a, FB_AS, neighbors=[L.Neighbor(hg.ipv4, 65003, passive=True, password="dual-v4"),
                                      L.Neighbor(hg.ipv6, 65003, passive=True, password="dual-v6"),
                                      L.Neighbor(hf.ipv4, 65004, passive=True, options={"gtsm": True})],
                 listen=[("::", 179)], dual_stack=True).start()
    for ip, local in ((hg.ipv4, a.ipv4), (hg.ipv6, a.ipv6), (hf.ipv4, a.ipv4)):
        fb.wait_established(ip, timeout=30)
        info = fb.info(ip)
        # addresses come out normalised (no ::ffff: prefix)
        assert info["connection"][:3] == [local, 179, ip], info
    L.wait_for(lambda: "203.0.113.0/24" in fb.received(hg.ipv4), 10, what="GoBGP route over IPv4")
    L.wait_for(lambda: "198.51.100.0/24" in fb.received(hf.ipv4), 10, what="FRR route")
