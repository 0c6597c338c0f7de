"""Session-layer behaviour of fastbgp against real daemons: connection
collisions (both sides connecting and listening), keepalives on a short
hold time, hold timer expiry when the peer freezes, the peer crashing and
coming back, speaker shutdown, and a table of some size in both directions.

The hold-timer/crash and DelayOpen cases run over IPv4 and over IPv6
transport (issue 12; IPv4 routes with RFC 8950 next hops over IPv6); the
collision and extended-message cases hold a session of each transport side
by side, the large-table and frozen-peer ones run over IPv6.
"""

from __future__ import annotations

import ipaddress
import os
import re
import signal
import time

import pytest

from fastbgp.testing import lab as L
from .conftest import require
from .fastbgp_peer import FastBGP

pytestmark = pytest.mark.interop

FB_AS = 65001
PEER_AS = 65002


def _bgp_connections(host: L.Host, peer_ip: str) -> list:
    """Established TCP connections between *host* and *peer_ip* on which
    one end uses port 179."""
    out = host.run(["ss", "-Htn", "state", "established"], check=True).stdout
    conns = []
    for line in out.splitlines():
        parts = line.split()
        if len(parts) < 4:
            continue
        local, remote = parts[-2], parts[-1]
        rip, _, rport = remote.rpartition(":")
        _lip, _, lport = local.rpartition(":")
        if rip.strip("[]") == peer_ip and "179" in (lport, rport):
            conns.append((local, remote))
    return conns


_RESET = {
    "bird": lambda d, ip: d.birdc("restart", d._proto(ip), check=True),
    # (`gobgp neighbor X reset` leaves GoBGP 3.10 Idle for good -- it then
    # refuses every connection, whoever the peer -- so disable + enable.)
    "gobgp": lambda d, ip: (d.disable(ip), d.enable(ip)),
    "frr": lambda d, ip: d.vtysh(f"clear bgp {ip}", check=True),
    "openbgpd": lambda d, ip: d.bgpctl("neighbor", ip, "clear", check=True),
}
_CLASSES = {"bird": L.Bird, "gobgp": L.GoBGP, "frr": L.FRR, "openbgpd": L.OpenBGPD}


@pytest.mark.parametrize("kind", list(_RESET))
def test_collisions_and_keepalives(lab, kind):
    """Both ends connect and listen; the session must end up on exactly one
    TCP connection per address family whoever wins, survive resets from
    either side (reconnecting at the same time), and stay up on a 3 s hold
    time (KEEPALIVEs every second)."""
    cls = _CLASSES[kind]
    require(cls)
    a = lab.add_host("fbgp")
    b = lab.add_host(kind)
    fb = FastBGP(a, FB_AS, neighbors=[L.Neighbor(b.ipv4, PEER_AS, hold_time=3), L.Neighbor(b.ipv6, PEER_AS, hold_time=3)],
                 listen=[(a.ipv4, 179), (a.ipv6, 179)]).start()
    fb.announce("198.51.100.0/24")
    fb.announce("2001:db8:1::/48")
    peer = cls(b, PEER_AS, neighbors=[L.Neighbor(a.ipv4, FB_AS, hold_time=3), L.Neighbor(a.ipv6, FB_AS, hold_time=3)],
               routes=["203.0.113.0/24", "2001:db8:2::/48"]).start()

    def settled(ip_peer, ip_ours):
        fb.wait_established(ip_peer, timeout=30)
        peer.wait_established(ip_ours, timeout=15)
        L.wait_for(lambda: len(_bgp_connections(a, ip_peer)) == 1, 10,
                   what=f"a single TCP connection to {ip_peer}",
                   on_timeout=lambda: repr(_bgp_connections(a, ip_peer)) + "\n" + fb.log_tail())

    for ip_peer, ip_ours in ((b.ipv4, a.ipv4), (b.ipv6, a.ipv6)):
        settled(ip_peer, ip_ours)
    assert fb.negotiated(b.ipv4) is not None
    peer.wait_route("198.51.100.0/24")
    L.wait_for(lambda: "203.0.113.0/24" in fb.received(b.ipv4), 10, what="peer route")

    # resets from either end, then from both at once (simultaneous reconnects)
    for i, who in enumerate(["peer", "fastbgp", "both"]):
        before = fb.info(b.ipv4)["established_count"]
        if who in ("fastbgp", "both"):
            fb.reset(b.ipv4, f"reset {i}")
        if who in ("peer", "both"):
            _RESET[kind](peer, a.ipv4)
        L.wait_for(lambda: fb.info(b.ipv4)["established_count"] > before, 30,
                   what=f"re-establishment after reset {i} by {who}", on_timeout=fb.log_tail)
        settled(b.ipv4, a.ipv4)
        L.wait_for(lambda: "203.0.113.0/24" in fb.received(b.ipv4), 10, what="peer route back")
        peer.wait_route("198.51.100.0/24")

    # 3 s hold time: only KEEPALIVEs keep it up
    neg_hold = fb.info(b.ipv4)
    time.sleep(4)
    for ip_peer, ip_ours in ((b.ipv4, a.ipv4), (b.ipv6, a.ipv6)):
        assert fb.state(ip_peer) == "established"
        assert peer.neighbor_state(ip_ours) == "established"
    after = fb.info(b.ipv4)
    assert after["established_count"] == neg_hold["established_count"]
    assert after["counters"]["received"]["keepalive"] >= neg_hold["counters"]["received"]["keepalive"] + 2
    assert after["counters"]["sent"]["keepalive"] >= neg_hold["counters"]["sent"]["keepalive"] + 2


@pytest.mark.parametrize("transport", L.TRANSPORTS)
def test_hold_timer_expiry_and_peer_crash(lab, transport):
    """GoBGP frozen (SIGSTOP) -> our hold timer expires -> NOTIFICATION 4/0
    -> GoBGP, thawed, reads it and reconnects.  Then BIRD killed (SIGKILL):
    its routes go; restarted, the session and routes come back."""
    require(L.GoBGP, L.Bird)
    a = lab.add_host("fbgp")
    hg = lab.add_host("gobgp")
    hb = lab.add_host("bird")
    ours, g, b = a.addr(transport), hg.addr(transport), hb.addr(transport)
    gobgp = L.GoBGP(hg, 65003, neighbors=[L.ipv4_neighbor(ours, FB_AS, passive=True, hold_time=3)],
                    routes=["203.0.113.0/24"]).start()
    bird = L.Bird(hb, 65004, neighbors=[L.ipv4_neighbor(ours, FB_AS, passive=True)],
                  routes=[L.Route("198.51.100.0/24", communities=("65004:1",))]).start()
    fb = FastBGP(a, FB_AS, neighbors=[L.ipv4_neighbor(g, 65003, hold_time=3),
                                      L.ipv4_neighbor(b, 65004)]).start()
    fb.wait_established(g)
    fb.wait_established(b)
    L.wait_for(lambda: "203.0.113.0/24" in fb.received(g), 10, what="GoBGP route")

    os.killpg(gobgp.proc.pid, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        L.wait_for(lambda: fb.state(g) != "established", 8, what="hold timer expiry")
        assert 1.5 <= time.monotonic() - t0 <= 6.0
        sent = fb.notifications(g)["sent"]
        assert (sent["code"], sent["subcode"]) == (4, 0)
        assert fb.info(g)["last_error"] == "hold timer expired"
        assert fb.received(g) == {}
        assert fb.state(b) == "established"  # the other peer is unaffected
    finally:
        os.killpg(gobgp.proc.pid, signal.SIGCONT)
    # GoBGP's own hold timer expired too while it was frozen.  Thawed, it
    # either reads our NOTIFICATION first (logged as received 4/0) or runs
    # its expired timer first and drops the connection unread -- a race
    # inside GoBGP that we cannot order; either way the session was torn
    # down for the hold timer on its side too.
    L.wait_for(lambda: re.search(r'received notification" Code=4 .*Subcode=0|hold timer expired', gobgp.log_text()), 10,
               what="GoBGP tearing down for the hold timer", on_timeout=gobgp.log_tail)
    fb.wait_established(g, timeout=30)
    L.wait_for(lambda: "203.0.113.0/24" in fb.received(g), 10, what="GoBGP route back")

    # BIRD crashes: the kernel closes its sockets, no NOTIFICATION
    bird.proc.send_signal(signal.SIGKILL)
    bird.proc.wait(5)
    L.wait_for(lambda: fb.state(b) != "established", 10, what="BIRD session down")
    assert fb.received(b) == {}
    bird.start()
    fb.wait_established(b, timeout=30)
    r = L.wait_for(lambda: fb.received(b).get("198.51.100.0/24"), 10, what="BIRD route back")
    assert r["communities"] == ["65004:1"]
    assert fb.info(b)["established_count"] == 2


def test_speaker_stop_and_large_table(lab):
    """20k IPv6 prefixes each way with BIRD (table dump on establishment,
    then a bulk withdrawal), then Speaker.stop() with a message."""
    require(L.Bird)
    n = 20000
    a = lab.add_host("fbgp")
    b = lab.add_host("bird")
    theirs = [str(ipaddress.ip_network(f"2001:db8:2:{i:x}::/64")) for i in range(n)]
    bird = L.Bird(b, PEER_AS, neighbors=[L.Neighbor(a.ipv6, FB_AS, passive=True)],
                  routes=[L.Route(p) for p in theirs]).start()
    fb = FastBGP(a, FB_AS, neighbors=[L.Neighbor(b.ipv6, PEER_AS)]).start()
    ours = [str(ipaddress.ip_network(f"2001:db8:1:{i:x}::/64")) for i in range(n)]
    assert fb.call("announce", prefixes=ours, communities=["65001:1"]) == n
    fb.wait_established(b.ipv6)

    def bird_count():
        out = bird.birdc("show", "route", "count", "protocol", bird._proto(a.ipv6)).stdout
        m = re.search(r"(\d+) of \d+ routes", out)
        return int(m.group(1)) if m else -1

    t0 = time.monotonic()
    L.wait_for(lambda: len(fb.received(b.ipv6, "ipv6")) == n, 60, what=f"{n} prefixes from BIRD",
               on_timeout=fb.log_tail)
    L.wait_for(lambda: bird_count() == n, 60, what=f"{n} prefixes in BIRD", on_timeout=bird.log_tail)
    took = time.monotonic() - t0
    got = fb.received(b.ipv6, "ipv6")
    assert got[theirs[-1]]["next_hop"] == b.ipv6 and got[theirs[-1]]["as_path"] == [PEER_AS]
    r = bird.rib("ipv6")
    assert r[ours[12345]]["communities"] == ["65001:1"] and r[ours[0]]["next_hop"] == a.ipv6
    assert took < 30, took

    fb.call("withdraw", prefixes=ours[: n // 2])
    L.wait_for(lambda: bird_count() == n - n // 2, 60, what="bulk withdrawal in BIRD")
    assert fb.state(b.ipv6) == "established"

    fb.call("stop", message="fastbgp stopping")
    L.wait_for(lambda: "fastbgp stopping" in bird.log_text(), 10, what="shutdown message in BIRD's log",
               on_timeout=bird.log_tail)
    assert bird.neighbor_state(a.ipv6) != "established"


def test_extended_messages_bird(lab):
    """RFC 8654 with BIRD: over the session where both offer Extended
    Messages, UPDATEs of ~6 kB (1500 communities) pass both ways (our
    reader accepts > 4096 octets once negotiated); where BIRD does not
    offer it, our oversized route is not sent and the session stays up."""
    require(L.Bird)
    a = lab.add_host("fbgp")
    b = lab.add_host("bird")
    theirs = tuple(f"{PEER_AS}:{i}" for i in range(1500))
    ours = [f"{FB_AS}:{i}" for i in range(1500)]
    bird = L.Bird(b, PEER_AS, neighbors=[L.Neighbor(a.ipv4, FB_AS, passive=True,
                                                    options={"extra": "enable extended messages on;"}),
                                         L.Neighbor(a.ipv6, FB_AS, passive=True)],
                  routes=[L.Route("203.0.113.0/24", communities=theirs)]).start()
    ext = {"extended_message": True}
    fb = FastBGP(a, FB_AS, neighbors=[L.Neighbor(b.ipv4, PEER_AS, options=ext),
                                      L.Neighbor(b.ipv6, PEER_AS, options=ext)]).start()
    fb.wait_established(b.ipv4)
    fb.wait_established(b.ipv6)
    assert fb.negotiated(b.ipv4)["extended_message"] is True
    assert fb.negotiated(b.ipv6)["extended_message"] is False

    r = L.wait_for(lambda: fb.received(b.ipv4).get("203.0.113.0/24"), 10, what="BIRD's big route")
    assert r["communities"] == sorted(theirs, key=lambda c: int(c.split(":")[1]))

    fb.announce("198.51.100.0/24", communities=ours)
    fb.announce("2001:db8:1::/48", communities=ours)  # too big for the IPv6 session
    fb.announce("2001:db8:4::/48", communities=ours[:10])

    def bird_comms(prefix):
        out = bird.birdc("show", "route", prefix, "all").stdout
        return sorted({int(x) for x in re.findall(rf"\({FB_AS},(\d+)\)", out)})

    L.wait_for(lambda: bird_comms("198.51.100.0/24") == list(range(1500)), 10, what="our big route in BIRD")
    bird.wait_route("2001:db8:4::/48")
    assert "2001:db8:1::/48" not in bird.rib("ipv6")
    assert fb.state(b.ipv6) == "established" and bird.neighbor_state(a.ipv6) == "established"


def _tcp_sockets(host: L.Host, peer_ip: str) -> list:
    """(state, send-queue, local, remote) of every TCP socket on *host*
    towards *peer_ip* port 179, whatever its state (orphans included)."""
    out = host.run(["ss", "-Htan"], check=True).stdout
    res = []
    for line in out.splitlines():
        parts = line.split()
        if len(parts) < 5:
            continue
        rip, _, rport = parts[4].rpartition(":")
        if rip.strip("[]") == peer_ip and rport == "179":
            res.append((parts[0], int(parts[2]), parts[3], parts[4]))
    return res


def test_frozen_peer_during_table_transfer(lab):
    """BIRD is frozen (SIGSTOP) while we push ~16 MB of UPDATEs: the writer
    blocks on back-pressure, yet our 3 s hold timer fires on time; the dead
    connection is reset -- not left in the kernel with megabytes of stale
    UPDATEs queued behind a FIN, which the peer would still read and apply
    once it runs again -- and when BIRD is thawed the session comes back
    and the whole table goes out again."""
    require(L.Bird)
    n = 40000
    a = lab.add_host("fbgp")
    b = lab.add_host("bird")
    bird = L.Bird(b, PEER_AS, neighbors=[L.Neighbor(a.ipv6, FB_AS, passive=True, hold_time=3)]).start()
    fb = FastBGP(a, FB_AS, neighbors=[L.Neighbor(b.ipv6, PEER_AS, hold_time=3)]).start()
    fb.wait_established(b.ipv6)
    old = _tcp_sockets(a, b.ipv6)
    assert len(old) == 1 and old[0][0] == "ESTAB", old

    os.killpg(bird.proc.pid, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        ours = [str(ipaddress.ip_network(f"2001:db8:1:{i:x}::/64")) for i in range(n)]
        # 1000 communities: ~10 prefixes an UPDATE, ~4000 UPDATEs of 4 kB
        fb.call("announce", prefixes=ours, communities=[f"{FB_AS}:{i}" for i in range(1000)])
        L.wait_for(lambda: fb.state(b.ipv6) != "established", 10, interval=0.1, what="hold timer expiry")
        assert 1.5 <= time.monotonic() - t0 <= 5.0
        assert fb.info(b.ipv6)["last_error"] in ("hold timer expired", "could not write to the peer for 3s")
        # the old connection is gone from our kernel (RST), nothing queued
        L.wait_for(lambda: not [s for s in _tcp_sockets(a, b.ipv6) if s[2] == old[0][2]], 2,
                   what="old connection gone", on_timeout=lambda: repr(_tcp_sockets(a, b.ipv6)))
    finally:
        os.killpg(bird.proc.pid, signal.SIGCONT)

    fb.wait_established(b.ipv6, timeout=30)

    def bird_count():
        out = bird.birdc("show", "route", "count", "protocol", bird._proto(a.ipv6)).stdout
        m = re.search(r"(\d+) of \d+ routes", out)
        return int(m.group(1)) if m else -1

    L.wait_for(lambda: bird_count() == n, 60, what=f"{n} prefixes in BIRD", on_timeout=bird.log_tail)
    assert fb.state(b.ipv6) == "established"


@pytest.mark.parametrize("transport", L.TRANSPORTS)
def test_delay_open_zero_hold_and_unknown_peer(lab, transport):
    """RFC 4271 DelayOpen with BIRD (which sends its OPEN at once: ours
    answers it before the timer) and FRR (``timers delayopen``: both wait,
    our timer expires first); hold time 0 with BIRD (no KEEPALIVEs after
    the OPEN exchange); and a connection from an address that is not a
    configured neighbour, refused."""
    require(L.Bird, L.FRR)
    a = lab.add_host("fbgp")
    hb = lab.add_host("bird")
    hf = lab.add_host("frr")
    hx = lab.add_host("stranger")
    ours, b, f, x = a.addr(transport), hb.addr(transport), hf.addr(transport), hx.addr(transport)
    bird = L.Bird(hb, 65002, neighbors=[L.ipv4_neighbor(ours, FB_AS, passive=True, hold_time=0)]).start()
    L.FRR(hf, 65004, neighbors=[L.ipv4_neighbor(ours, FB_AS, passive=True,
                                              options={"extra": f"neighbor {ours} timers delayopen 4"})]).start()
    stranger = L.Bird(hx, 65009, neighbors=[L.ipv4_neighbor(ours, FB_AS)]).start()
    delay = {"delay_open": 2}
    t0 = time.monotonic()
    fb = FastBGP(a, FB_AS, neighbors=[L.ipv4_neighbor(b, 65002, hold_time=0, options=delay),
                                      L.ipv4_neighbor(f, 65004, options=delay)],
                 listen=[(ours, 179)]).start()
    fb.wait_established(b, timeout=10)
    assert time.monotonic() - t0 < 2.0  # BIRD's OPEN cut our DelayOpen short
    hist = [h[2] for h in fb.info(b)["history"]]
    assert "delay-open-expired" not in hist, hist
    fb.wait_established(f, timeout=10)
    assert time.monotonic() - t0 >= 2.0
    hist = [h[1:] for h in fb.info(f)["history"]]
    assert ["OPENSENT", "delay-open-expired"] in hist, hist

    # hold time 0: no KEEPALIVEs at all once Established
    k0 = fb.info(b)["counters"]
    assert re.search(r"Hold timer:\s+0\.000/0", bird.protocol_info(ours))
    time.sleep(2.5)
    k1 = fb.info(b)["counters"]
    assert k1["sent"]["keepalive"] == k0["sent"]["keepalive"] <= 1
    assert k1["received"]["keepalive"] == k0["received"]["keepalive"] <= 1
    assert fb.state(b) == "established"

    # the stranger (BIRD retries every 2 s) never gets a session
    assert stranger.neighbor_state(ours) != "established"
    L.wait_for(lambda: f"connection from unknown peer {x} refused" in fb.log_text(), 5,
               what="refused connection logged", on_timeout=fb.log_tail)
