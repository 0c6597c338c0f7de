"""In-process session tests: fastbgp Speakers (and a raw BGP peer for what a
well-behaved speaker would never send) on loopback with ephemeral ports.

Addresses: 127.0.0.1 / 127.0.0.2 / 127.0.0.3 (Linux routes all of 127/8 to
lo) and ::1; every test starts and stops its own speakers.
"""

import asyncio
import random
import socket
import time

import pytest

from fastbgp.wire import as4, codec, messages
from fastbgp.wire import capabilities as caps
from fastbgp.wire.constants import (
    AS_TRANS,
    IPV4_UNICAST,
    IPV6_UNICAST,
    MSG_KEEPALIVE,
    MSG_NOTIFICATION,
    MSG_OPEN,
    MSG_UPDATE,
)
from fastbgp.session.fsm import Reason, State
from fastbgp.session.speaker import GracefulRestartConfig, NeighborConfig, Speaker

A_ADDR, B_ADDR, C_ADDR = "127.0.0.1", "127.0.0.2", "127.0.0.3"
A_ID, B_ID, C_ID = "10.0.0.1", "10.0.0.2", "10.0.0.3"


def quick(**kw):
    """Neighbour defaults that keep tests fast."""
    base = dict(idle_hold_time=0.1, max_idle_hold_time=0.5, connect_retry=2.0)
    base.update(kw)
    return base


class Pair:
    """Speaker A (127.0.0.1, AS a_as) and B (127.0.0.2, AS b_as), both
    listening; ``na`` is A's neighbour object for B, ``nb`` B's for A."""

    def __init__(self, a, b, na, nb):
        self.a, self.b, self.na, self.nb = a, b, na, nb

    async def established(self, timeout=5):
        await self.na.wait_established(timeout)
        await self.nb.wait_established(timeout)

    async def stop(self):
        await self.a.stop()
        await self.b.stop()


async def make_pair(*, a_as=65001, b_as=65002, a_kw=None, b_kw=None, a_speaker=None, b_speaker=None,
                    active="a", a_id=A_ID, b_id=B_ID):
    a = Speaker(a_as, a_id, listen=[(A_ADDR, 0)], **(a_speaker or {}))
    b = Speaker(b_as, b_id, listen=[(B_ADDR, 0)], **(b_speaker or {}))
    await a.start()
    await b.start()
    acfg = quick(address=B_ADDR, peer_as=b_as, port=b.port, local_address=A_ADDR, passive=active == "b")
    acfg.update(a_kw or {})
    bcfg = quick(address=A_ADDR, peer_as=a_as, port=a.port, local_address=B_ADDR, passive=active == "a")
    bcfg.update(b_kw or {})
    # The passive side first so the active one finds it ready.
    if active == "a":
        nb = b.add_neighbor(NeighborConfig(**bcfg))
        na = a.add_neighbor(NeighborConfig(**acfg))
    else:
        na = a.add_neighbor(NeighborConfig(**acfg))
        nb = b.add_neighbor(NeighborConfig(**bcfg))
    return Pair(a, b, na, nb)


# ----------------------------------------------------------------------------- raw peer


class RawPeer:
    """A hand-driven BGP speaker on a plain asyncio stream, for sending what
    fastbgp itself never would."""

    def __init__(self, reader, writer):
        self.reader = reader
        self.writer = writer
        self.framer = codec.MessageReader(65535)
        self.queue = []

    @classmethod
    async def connect(cls, port, host=A_ADDR, local=C_ADDR, rcvbuf=None):
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.bind((local, 0))
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (host, port))
        r, w = await asyncio.open_connection(sock=sock)
        return cls(r, w)

    def send(self, data):
        self.writer.write(data)

    def send_open(self, asn=65003, hold=90, bgp_id=C_ID, capabilities=None):
        if capabilities is None:
            capabilities = [caps.Multiprotocol(1, 1), caps.Multiprotocol(2, 1), caps.FourOctetAS(asn)]
        rid = int.from_bytes(socket.inet_aton(bgp_id), "big")
        self.send(codec.build_open(asn, hold, rid, caps.encode_all(capabilities)))

    async def recv(self, timeout=5.0):
        """(type, body) of the next message; None at EOF."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not self.queue:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise asyncio.TimeoutError("no message")
            data = await asyncio.wait_for(self.reader.read(65536), left)
            if not data:
                return None
            self.queue.extend(self.framer.feed(data))
        return self.queue.pop(0)

    async def recv_type(self, mtype, timeout=5.0):
        while True:
            m = await self.recv(timeout)
            if m is None or m[0] == mtype:
                return m

    async def expect_notification(self, timeout=5.0):
        m = await self.recv_type(MSG_NOTIFICATION, timeout)
        assert m is not None, "connection closed without NOTIFICATION"
        return codec.parse_notification(m[1])

    async def handshake(self, **open_kw):
        m = await self.recv_type(MSG_OPEN)
        assert m is not None
        self.send_open(**open_kw)
        self.send(codec.KEEPALIVE)
        m = await self.recv_type(MSG_KEEPALIVE)
        assert m is not None
        return codec.parse_open(m[1]) if m[0] == MSG_OPEN else None

    async def closed(self, timeout=5.0):
        """True once the speaker closed the connection."""
        try:
            while True:
                m = await self.recv(timeout)
                if m is None:
                    return True
        except (ConnectionError, asyncio.TimeoutError):
            return True

    def close(self):
        try:
            self.writer.transport.abort()
            self.writer.close()
        except Exception:
            pass


async def speaker_with_raw_neighbor(hold_time=90, **kw):
    """Speaker A with a passive neighbour 127.0.0.3 (AS 65003) for RawPeer."""
    a = Speaker(65001, A_ID, listen=[(A_ADDR, 0)])
    await a.start()
    cfg = quick(address=C_ADDR, peer_as=65003, passive=True, hold_time=hold_time)
    cfg.update(kw)
    n = a.add_neighbor(NeighborConfig(**cfg))
    await n.wait_state(State.ACTIVE, 2)
    return a, n


def left_established(n):
    """Reason of the last transition out of Established."""
    for ch in reversed(n.history):
        if ch.old is State.ESTABLISHED:
            return ch.reason
    return None


def update_body(withdrawn=b"", attrs=b"", nlri=b""):
    return len(withdrawn).to_bytes(2, "big") + withdrawn + len(attrs).to_bytes(2, "big") + attrs + nlri


def attr(flags, t, value):
    return bytes((flags, t, len(value))) + value


GOOD_ATTRS = attr(0x40, 1, b"\x00") + attr(0x40, 2, b"\x02\x01\x00\x00\xfd\xeb") + attr(0x40, 3, socket.inet_aton("127.0.0.3"))


# ----------------------------------------------------------------------------- establishment and routes


@pytest.mark.parametrize("active", ["a", "b"])
def test_establish_and_exchange_routes(active, run):
    async def main():
        p = await make_pair(active=active)
        try:
            await p.established()
            assert p.na.state is State.ESTABLISHED and p.nb.state is State.ESTABLISHED
            # The side that connected has the outbound connection.
            assert p.na.session.outbound == (active == "a")
            assert p.nb.session.outbound == (active == "b")
            neg = p.nb.negotiated
            assert neg.families == frozenset({IPV4_UNICAST, IPV6_UNICAST})
            assert neg.as4 and neg.peer_asn == 65001 and neg.ebgp
            assert neg.route_refresh and neg.enhanced_route_refresh
            p.a.announce(["10.1.0.0/24", "10.2.0.0/16"], "127.0.0.1", as_path=[65010, 65011], med=50,
                         communities=["65001:100", "no-export"], large_communities=["65001:1:2"])
            p.a.announce(["2001:db8:1::/48"], "2001:db8::1", link_local="fe80::1", as_path=[65020],
                         origin="incomplete")
            await p.nb.wait_received(3, 5)
            got = p.nb.received()
            assert set(got) == {"10.1.0.0/24", "10.2.0.0/16", "2001:db8:1::/48"}
            r = got["10.1.0.0/24"]
            # RFC 4271 §5.1.2: A prepends its AS for the eBGP peer.
            assert r.as_path == [65001, 65010, 65011]
            assert r.next_hop == "127.0.0.1" and r.med == 50 and r.origin == 0
            assert r.communities == ["65001:100", "no-export"]
            assert r.large_communities == ["65001:1:2"]
            assert r.local_pref is None  # never sent to eBGP peers
            r6 = got["2001:db8:1::/48"]
            assert r6.next_hop == "2001:db8::1" and r6.link_local == "fe80::1"
            assert r6.as_path == [65001, 65020] and r6.origin == 2
            # End-of-RIB for both families after the initial table.
            await p.nb.wait_end_of_rib(timeout=5)
            # Withdrawals of both families.
            p.a.withdraw(["10.2.0.0/16", "2001:db8:1::/48"])
            await p.nb.wait_received(1, 5)
            assert set(p.nb.received()) == {"10.1.0.0/24"}
            assert p.nb.counters.received.withdraw_prefix == 2
            # The other direction, next-hop-self.
            p.b.announce(["192.0.2.0/24"])
            await p.na.wait_received(1, 5)
            assert p.na.received()["192.0.2.0/24"].next_hop == B_ADDR
            c = p.na.counters
            assert c.sent.open == 1 and c.received.open == 1
            assert c.received.update >= 2 and c.sent.update >= 3
            assert c.established_count == 1 and c.uptime is not None
            assert c.sent.total == c.sent.open + c.sent.update + c.sent.keepalive + c.sent.notification + c.sent.refresh
        finally:
            await p.stop()

    run(main())


def test_routes_announced_before_start_are_sent_on_establishment(run):
    async def main():
        a = Speaker(65001, A_ID, listen=[(A_ADDR, 0)])
        b = Speaker(65002, B_ID, listen=[(B_ADDR, 0)])
        a.announce(["10.%d.0.0/16" % i for i in range(100)], "127.0.0.1")
        await b.start()
        nb = b.add_neighbor(NeighborConfig(**quick(address=A_ADDR, peer_as=65001, passive=True)))
        a.add_neighbor(NeighborConfig(**quick(address=B_ADDR, peer_as=65002, port=b.port, local_address=A_ADDR)))
        await a.start()
        try:
            await nb.wait_end_of_rib(timeout=5)
            assert nb.received_count == 100
            assert nb.end_of_rib_received == {IPV4_UNICAST, IPV6_UNICAST}
        finally:
            await a.stop()
            await b.stop()

    run(main())


def test_ibgp_local_pref_and_as_path_as_given(run):
    async def main():
        p = await make_pair(a_as=65001, b_as=65001)
        try:
            await p.established()
            assert not p.nb.negotiated.ebgp
            p.a.announce(["10.9.0.0/24"], "127.0.0.1", as_path=[65100], local_pref=250)
            p.a.announce(["10.8.0.0/24"], "127.0.0.1")
            await p.nb.wait_received(2, 5)
            got = p.nb.received()
            assert got["10.9.0.0/24"].as_path == [65100] and got["10.9.0.0/24"].local_pref == 250
            assert got["10.8.0.0/24"].as_path == [] and got["10.8.0.0/24"].local_pref == 100
        finally:
            await p.stop()

    run(main())


def test_capabilities_negotiated_addpath_extended_message_gr_role(run):
    async def main():
        kw = dict(addpath_send=True, addpath_receive=True, extended_message=True,
                  graceful_restart=GracefulRestartConfig(restart_time=77), hostname="a.example")
        p = await make_pair(a_kw=dict(kw, role="provider"), b_kw=dict(kw, role="customer"))
        try:
            await p.established()
            neg = p.nb.negotiated
            assert neg.addpath_rx == neg.addpath_tx == frozenset({IPV4_UNICAST, IPV6_UNICAST})
            assert neg.extended_message
            assert p.nb.session.conn.reader.max_len == 65535
            assert neg.graceful_restart.restart_time == 77
            assert neg.local_role == 3 and neg.peer_role == 0
            assert neg.peer_fqdn.hostname == "a"
            # ADD-PATH: two paths for one prefix.
            p.a.announce(["10.5.0.0/24"], "127.0.0.1", med=1, path_id=1)
            p.a.announce(["10.5.0.0/24"], "127.0.0.1", med=2, path_id=2)
            await p.nb.wait_received(2, 5)
            paths = p.nb.received_paths()
            assert {k: v.med for k, v in paths.items()} == {("10.5.0.0/24", 1): 1, ("10.5.0.0/24", 2): 2}
            assert p.nb.received()["10.5.0.0/24"].path_id == 1
            # RFC 9234 §5: provider -> customer routes carry OTC = provider AS.
            assert paths[("10.5.0.0/24", 1)].otc == 65001
            # Extended messages: a large batch uses UPDATEs over 4096 octets.
            p.a.announce(["10.%d.%d.0/24" % (i >> 8, i & 255) for i in range(3000)], "127.0.0.1", path_id=7)
            await p.nb.wait_received(3002, 5)
            assert p.nb.counters.received.update < 10
        finally:
            await p.stop()

    run(main())


def test_two_octet_peer_as4_path(run):
    """RFC 6793: B runs without the 4-octet AS capability; 4-octet ASes
    travel as AS_TRANS + AS4_PATH and come out whole on both sides."""

    async def main():
        p = await make_pair(a_as=4200000001, b_as=65002, b_kw=dict(four_octet_as=False))
        try:
            await p.established()
            assert not p.na.negotiated.as4 and not p.nb.negotiated.as4
            assert p.nb.negotiated.peer_asn == 4200000001
            # B is a 2-octet speaker: it sent AS 65002 in My Autonomous System.
            assert p.na.session.remote_open.asn == 65002
            p.a.announce(["10.1.0.0/24"], "127.0.0.1", as_path=[4200000002, 65010])
            await p.nb.wait_received(1, 5)
            assert p.nb.received()["10.1.0.0/24"].as_path == [4200000001, 4200000002, 65010]
            p.b.announce(["10.2.0.0/24"], "127.0.0.2", as_path=[4200000009, 65020])
            await p.na.wait_received(1, 5)
            assert p.na.received()["10.2.0.0/24"].as_path == [65002, 4200000009, 65020]
        finally:
            await p.stop()

    run(main())


def test_two_octet_wire_format_seen_by_raw_peer(run):
    """What a 2-octet peer really receives: AS_TRANS in AS_PATH, AS4_PATH."""

    async def main():
        a = Speaker(4200000001, A_ID, listen=[(A_ADDR, 0)])
        await a.start()
        n = a.add_neighbor(NeighborConfig(**quick(address=C_ADDR, peer_as=65003, passive=True)))
        a.announce(["10.1.0.0/24"], "127.0.0.1", as_path=[65010])
        await n.wait_state(State.ACTIVE, 2)
        peer = await RawPeer.connect(a.port)
        try:
            opn = await peer.recv_type(MSG_OPEN)
            assert codec.parse_open(opn[1]).asn == AS_TRANS
            peer.send_open(capabilities=[caps.Multiprotocol(1, 1)])  # no 4-octet AS capability
            peer.send(codec.KEEPALIVE)
            upd = await peer.recv_type(MSG_UPDATE)
            parsed = messages.decode_update(upd[1], codec.Context(as4=False, ebgp=True))
            # On the wire: AS_PATH with AS_TRANS, AS4_PATH with the real AS.
            body = upd[1]
            wlen = int.from_bytes(body[:2], "big")
            alen = int.from_bytes(body[2 + wlen : 4 + wlen], "big")
            wire = {t: v for _f, t, v in as4.split_attrs(body[4 + wlen : 4 + wlen + alen])}
            assert as4.decode_segments(wire[2], 2) == [(2, [AS_TRANS, 65010])]
            assert as4.decode_segments(wire[17], 4) == [(2, [4200000001, 65010])]
            # decode_update merges them back (RFC 6793 §4.2.3).
            assert parsed.as_path_asns() == [4200000001, 65010]
        finally:
            peer.close()
            await a.stop()

    run(main())


# ----------------------------------------------------------------------------- timers


def test_hold_timer_expiry_sends_4_0(run):
    async def main():
        a, n = await speaker_with_raw_neighbor(hold_time=3)
        peer = await RawPeer.connect(a.port)
        try:
            await peer.handshake(hold=3)
            await n.wait_established(2)
            t0 = time.monotonic()
            # The raw peer now stays silent: no KEEPALIVE for 3 s.
            code, sub, _ = await peer.expect_notification(timeout=6)
            elapsed = time.monotonic() - t0
            assert (code, sub) == (4, 0)
            assert 2.0 < elapsed < 4.5
            await n.wait_for(lambda: not n.established, 2)
            assert left_established(n) is Reason.HOLD_TIMER_EXPIRED
            assert n.last_notification_sent.code == 4
        finally:
            peer.close()
            await a.stop()

    run(main())


def test_keepalives_keep_session_and_hold_is_min(run):
    async def main():
        a, n = await speaker_with_raw_neighbor(hold_time=30)
        peer = await RawPeer.connect(a.port)
        try:
            await peer.handshake(hold=3)
            await n.wait_established(2)
            # RFC 4271 §4.2: the smaller hold time (3) wins; keepalive = 1 s.
            assert n.fsm.negotiated_hold_time == 3 and n.fsm.negotiated_keepalive_time == 1
            kas = 0
            end = asyncio.get_running_loop().time() + 4
            while asyncio.get_running_loop().time() < end:
                peer.send(codec.KEEPALIVE)
                try:
                    m = await peer.recv(1.0)
                    kas += m is not None and m[0] == MSG_KEEPALIVE
                except asyncio.TimeoutError:
                    pass
            assert n.established
            assert kas >= 3
        finally:
            peer.close()
            await a.stop()

    run(main())


def test_hold_time_zero_no_keepalives(run):
    async def main():
        p = await make_pair(a_kw=dict(hold_time=0), b_kw=dict(hold_time=0))
        try:
            await p.established()
            assert p.na.fsm.negotiated_hold_time == 0
            await asyncio.sleep(2.5)
            assert p.na.established and p.nb.established
            # Only the KEEPALIVE that confirms the OPEN (RFC 4271 §4.4).
            assert p.na.counters.sent.keepalive == 1 and p.nb.counters.sent.keepalive == 1
            assert "keepalive" not in p.na.session.timers and "hold" not in p.na.session.timers
        finally:
            await p.stop()

    run(main())


def test_hold_time_one_or_two_rejected(run):
    async def main():
        a, n = await speaker_with_raw_neighbor()
        peer = await RawPeer.connect(a.port)
        try:
            await peer.recv_type(MSG_OPEN)
            peer.send_open(hold=2)
            code, sub, _ = await peer.expect_notification()
            # RFC 4271 §6.2: Unacceptable Hold Time.
            assert (code, sub) == (2, 6)
            assert not n.established
        finally:
            peer.close()
            await a.stop()

    run(main())


def test_delay_open(run):
    async def main():
        p = await make_pair(a_kw=dict(delay_open=0.3), b_kw=dict(delay_open=0.3))
        try:
            await p.established()
        finally:
            await p.stop()

    run(main())


def test_connect_retry_backoff_for_unreachable_peer(run):
    async def main():
        a = Speaker(65001, A_ID)
        await a.start()
        # Nothing listens there: every connect is refused; the idle hold
        # time doubles each time (DampPeerOscillations).
        n = a.add_neighbor(NeighborConfig(address=B_ADDR, peer_as=65002, port=1, idle_hold_time=0.1,
                                          max_idle_hold_time=10))
        try:
            await asyncio.sleep(1.6)
            # 0.1 + 0.2 + 0.4 + 0.8 = 1.5 s -> about 5 attempts, not 16.
            assert 3 <= n.counters.connect_attempts <= 6
            assert n.counters.connect_failures >= 3
        finally:
            await a.stop()

    run(main())


# ----------------------------------------------------------------------------- administrative events


def test_admin_shutdown_message_and_enable(run):
    async def main():
        p = await make_pair()
        try:
            await p.established()
            p.na.disable("maintenance window, back at 10:00 ✓")
            await p.nb.wait_for(lambda: p.nb.last_notification_received is not None, 3)
            n = p.nb.last_notification_received
            assert (n.code, n.subcode) == (6, 2)
            assert n.shutdown_message == "maintenance window, back at 10:00 ✓"
            assert p.na.state is State.IDLE and p.na.admin_down
            await asyncio.sleep(0.5)
            assert p.na.state is State.IDLE  # stays down
            assert p.na.last_reason is Reason.ADMIN_DOWN
            p.na.enable()
            await p.established(5)
        finally:
            await p.stop()

    run(main())


def test_reset_and_deconfigure(run):
    async def main():
        p = await make_pair()
        try:
            await p.established()
            p.na.reset("config reload")
            await p.nb.wait_for(lambda: p.nb.last_notification_received is not None, 3)
            assert (p.nb.last_notification_received.code, p.nb.last_notification_received.subcode) == (6, 4)
            await p.established(5)
            p.a.remove_neighbor(B_ADDR)
            await p.nb.wait_for(lambda: p.nb.last_notification_received.subcode == 3, 3)
            assert B_ADDR not in p.a.neighbors
        finally:
            await p.stop()

    run(main())


def test_prefix_limit_cease_and_stays_idle(run):
    async def main():
        p = await make_pair(b_kw=dict(prefix_limit=5))
        try:
            await p.established()
            p.a.announce(["10.0.%d.0/24" % i for i in range(10)], "127.0.0.1")
            await p.na.wait_for(lambda: p.na.last_notification_received is not None, 3)
            n = p.na.last_notification_received
            assert (n.code, n.subcode) == (6, 1)
            # RFC 4486 §4: AFI, SAFI, the limit.
            assert n.data == b"\x00\x01\x01\x00\x00\x00\x05"
            assert p.nb.prefix_limit_hit and p.nb.last_reason is Reason.PREFIX_LIMIT
            await asyncio.sleep(1.0)
            assert p.nb.state is State.IDLE  # A retries; B refuses while Idle
            assert p.nb.received_count == 0
            p.a.withdraw(["10.0.%d.0/24" % i for i in range(10)])
            p.nb.enable()
            await p.established(5)
            assert not p.nb.prefix_limit_hit
        finally:
            await p.stop()

    run(main())


def test_prefix_limit_restart_timer(run):
    async def main():
        p = await make_pair(b_kw=dict(prefix_limit=2, prefix_limit_restart=0.5))
        try:
            await p.established()
            p.a.announce(["10.0.%d.0/24" % i for i in range(3)], "127.0.0.1")
            await p.nb.wait_state(State.IDLE, 3)
            p.a.withdraw(["10.0.0.0/24"])
            await p.established(5)
        finally:
            await p.stop()

    run(main())


# ----------------------------------------------------------------------------- OPEN errors


def test_bad_peer_as(run):
    async def main():
        p = await make_pair(a_kw=dict(peer_as=65099))
        try:
            await p.nb.wait_for(lambda: p.nb.last_notification_received is not None, 5)
            n = p.nb.last_notification_received
            assert (n.code, n.subcode) == (2, 2)
            assert (p.na.last_notification_sent.code, p.na.last_notification_sent.subcode) == (2, 2)
            assert not p.na.established
        finally:
            await p.stop()

    run(main())


def test_bad_bgp_identifier_internal_peer(run):
    """RFC 6286 §2.2: an internal peer with our own identifier -> 2/3."""

    async def main():
        p = await make_pair(a_as=65001, b_as=65001, b_id=A_ID)
        try:
            await p.na.wait_for(lambda: p.na.last_notification_sent is not None, 5)
            n = p.na.last_notification_sent
            assert (n.code, n.subcode) == (2, 3)
        finally:
            await p.stop()

    run(main())


def test_role_mismatch(run):
    async def main():
        p = await make_pair(a_kw=dict(role="provider"), b_kw=dict(role="provider"))
        try:
            await p.na.wait_for(lambda: p.na.last_notification_sent is not None
                                or p.na.last_notification_received is not None, 5)
            n = p.na.last_notification_sent or p.na.last_notification_received
            assert (n.code, n.subcode) == (2, 11)
            assert not p.na.established
        finally:
            await p.stop()

    run(main())


def test_role_strict_requires_peer_role(run):
    async def main():
        p = await make_pair(a_kw=dict(role="customer", role_strict=True))
        try:
            await p.na.wait_for(lambda: p.na.last_notification_sent is not None, 5)
            assert (p.na.last_notification_sent.code, p.na.last_notification_sent.subcode) == (2, 11)
        finally:
            await p.stop()

    run(main())


def test_unknown_peer_refused(run):
    async def main():
        a = Speaker(65001, A_ID, listen=[(A_ADDR, 0)])
        await a.start()
        try:
            peer = await RawPeer.connect(a.port, local="127.0.0.9")
            assert await peer.closed(2)
            peer.close()
        finally:
            await a.stop()

    run(main())


# ----------------------------------------------------------------------------- collisions


@pytest.mark.parametrize("ids", [(A_ID, B_ID), (B_ID, A_ID)])
def test_collision_keeps_one_session_of_higher_id(ids, run):
    """RFC 4271 §6.8: both connect at once; the connection initiated by the
    speaker with the higher BGP identifier survives, on both sides."""

    async def main():
        p = await make_pair(active="both", a_id=ids[0], b_id=ids[1],
                            a_kw=dict(admin_down=True), b_kw=dict(admin_down=True))
        try:
            # Both enabled in the same loop turn: both SYNs cross.
            p.na.enable()
            p.nb.enable()
            await p.established(5)
            await asyncio.sleep(0.5)
            assert p.na.established and p.nb.established
            ca, cb = p.na.connection, p.nb.connection
            assert (ca.local_port, ca.peer_port) == (cb.peer_port, cb.local_port)  # one and the same TCP connection
            assert p.na.sessions.secondary is None and p.nb.sessions.secondary is None
            assert p.na.counters.collisions + p.nb.counters.collisions >= 1
            # Every decision taken before a session was Established kept the
            # connection initiated by the higher identifier; one already
            # Established (it can win the race on a loaded machine) is kept.
            a_higher = ids[0] > ids[1]
            for n, higher in ((p.na, a_higher), (p.nb, not a_higher)):
                for rec in n.collision_log:
                    if rec.existing_state is State.ESTABLISHED:
                        assert not rec.kept_new
                    else:
                        assert rec.kept_outbound == higher
            if not any(r.existing_state is State.ESTABLISHED for n in (p.na, p.nb) for r in n.collision_log):
                assert p.na.session.outbound == a_higher
                assert p.nb.session.outbound == (not a_higher)
            assert p.na.counters.established_count == 1 and p.nb.counters.established_count == 1
            # Routes flow over the surviving connection.
            p.a.announce(["10.7.0.0/24"], "127.0.0.1")
            await p.nb.wait_received(1, 3)
        finally:
            await p.stop()

    run(main())


@pytest.mark.parametrize("raw_higher", [True, False])
@pytest.mark.parametrize("first", ["inbound", "outbound"])
def test_collision_resolution_by_bgp_identifier(raw_higher, first, run):
    """Deterministic RFC 4271 §6.8: speaker A has an outbound connection to
    the raw peer and an inbound one from it, both in OpenSent; the raw peer
    sends its OPEN on ``first``.  The connection initiated by the higher BGP
    identifier is kept, the other gets Cease / Connection Collision
    Resolution (6/7)."""

    async def main():
        a = Speaker(65001, "10.0.0.50", listen=[(A_ADDR, 0)])
        await a.start()
        lsock = socket.socket()
        lsock.bind((C_ADDR, 0))
        lsock.listen(4)
        lsock.setblocking(False)
        srv_conns = asyncio.Queue()

        async def on_conn(r, w):
            await srv_conns.put(RawPeer(r, w))

        server = await asyncio.start_server(on_conn, sock=lsock)
        n = a.add_neighbor(NeighborConfig(**quick(address=C_ADDR, peer_as=65003, port=lsock.getsockname()[1],
                                                  local_address=A_ADDR)))
        peers = []
        try:
            out_peer = await asyncio.wait_for(srv_conns.get(), 3)  # A's outbound connection
            await out_peer.recv_type(MSG_OPEN)
            in_peer = await RawPeer.connect(a.port)  # our connection to A
            await in_peer.recv_type(MSG_OPEN)
            peers = [out_peer, in_peer]
            assert n.session.state is State.OPENSENT and n.sessions.secondary.state is State.OPENSENT
            raw_id = "10.0.0.99" if raw_higher else "10.0.0.9"
            winner, loser = (in_peer, out_peer) if raw_higher else (out_peer, in_peer)
            (in_peer if first == "inbound" else out_peer).send_open(bgp_id=raw_id)
            code, sub, _ = await loser.expect_notification()
            assert (code, sub) == (6, 7)
            if first == ("outbound" if raw_higher else "inbound"):
                winner.send_open(bgp_id=raw_id)
            winner.send(codec.KEEPALIVE)
            await n.wait_established(3)
            # A's surviving connection: outbound iff A has the higher identifier.
            assert n.session.outbound == (not raw_higher)
            assert n.sessions.secondary is None and n.counters.collisions == 1
            rec = n.collision_log[-1]
            assert rec.existing_state is State.OPENSENT and rec.kept_outbound == (not raw_higher)
            a.announce(["10.3.0.0/24"], "127.0.0.1")
            assert (await winner.recv_type(MSG_UPDATE)) is not None
        finally:
            for pr in peers:
                pr.close()
            server.close()
            await a.stop()

    run(main())


def test_second_connection_while_established_is_refused_with_cease_7(run):
    async def main():
        a, n = await speaker_with_raw_neighbor()
        p1 = await RawPeer.connect(a.port)
        try:
            await p1.handshake()
            await n.wait_established(2)
            p2 = await RawPeer.connect(a.port)
            await p2.recv_type(MSG_OPEN)
            p2.send_open()
            code, sub, _ = await p2.expect_notification()
            assert (code, sub) == (6, 7)
            p2.close()
            await asyncio.sleep(0.1)
            assert n.established
        finally:
            p1.close()
            await a.stop()

    run(main())


# ----------------------------------------------------------------------------- hostile input

MALFORMED = {
    # name: (bytes to send after Established, expected (code, subcode))
    "bad-marker": (b"\x00" * 16 + b"\x00\x13\x04", (1, 1)),
    "short-length": (b"\xff" * 16 + b"\x00\x12\x04", (1, 2)),
    "keepalive-with-body": (b"\xff" * 16 + b"\x00\x14\x04\x00", (1, 2)),
    "bad-type": (b"\xff" * 16 + b"\x00\x13\x09", (1, 3)),
    "too-long": (b"\xff" * 16 + b"\x10\x01\x02" + b"\x00" * 4078, (1, 2)),
    "withdrawn-overrun": (codec.frame(MSG_UPDATE, b"\x00\x10\x00\x00"), (3, 1)),
    "attrs-overrun": (codec.frame(MSG_UPDATE, b"\x00\x00\x00\x10" + b"\x40\x01\x01"), (3, 1)),
    "bad-nlri": (codec.frame(MSG_UPDATE, update_body(attrs=GOOD_ATTRS, nlri=b"\x21\x0a\x00\x00\x00\x00")), (3, 10)),
    "unrecognized-well-known": (codec.frame(MSG_UPDATE, update_body(attrs=GOOD_ATTRS + attr(0x40, 99, b"x"), nlri=b"\x18\x0a\x00\x00")), (3, 2)),
    "mp-reach-bad-next-hop": (codec.frame(MSG_UPDATE, update_body(attrs=GOOD_ATTRS + attr(0x80, 14, b"\x00\x02\x01\x03abc\x00\x20\x20\x01\x0d\xb8"))), (3, 9)),
    "open-in-established": (codec.build_open(65003, 90, 0x0A000003), (5, 3)),
    "route-refresh-bad-length": (codec.frame(5, b"\x00\x01\x01\x01\x00"), (7, 1)),
    "truncated-update": (b"\xff" * 16 + b"\x00\x16\x02\x00\x00\x00", (1, 2)),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_messages_get_the_right_notification(case, run):
    data, expected = MALFORMED[case]

    async def main():
        a, n = await speaker_with_raw_neighbor()
        peer = await RawPeer.connect(a.port)
        try:
            await peer.handshake()
            await n.wait_established(2)
            peer.send(data)
            code, sub, _ = await peer.expect_notification()
            assert (code, sub) == expected
            assert await peer.closed()
            await n.wait_for(lambda: not n.established, 2)
        finally:
            peer.close()
            await a.stop()

    run(main())


def test_treat_as_withdraw_keeps_session(run):
    async def main():
        a, n = await speaker_with_raw_neighbor()
        peer = await RawPeer.connect(a.port)
        try:
            await peer.handshake()
            await n.wait_established(2)
            peer.send(codec.frame(MSG_UPDATE, update_body(attrs=GOOD_ATTRS, nlri=b"\x18\x0a\x00\x00\x18\x0a\x00\x01")))
            await n.wait_received(2, 2)
            # MED of 3 octets: RFC 7606 §7.4 treat-as-withdraw.
            peer.send(codec.frame(MSG_UPDATE, update_body(attrs=GOOD_ATTRS + attr(0x80, 4, b"\x00\x00\x01"), nlri=b"\x18\x0a\x00\x00")))
            await n.wait_received(1, 2)
            assert n.counters.treat_as_withdraw == 1
            # Malformed AGGREGATOR: attribute-discard, the route stays.
            peer.send(codec.frame(MSG_UPDATE, update_body(attrs=GOOD_ATTRS + attr(0xC0, 7, b"\x00"), nlri=b"\x18\x0a\x00\x02")))
            await n.wait_received(2, 2)
            assert n.counters.attribute_discard == 1
            await asyncio.sleep(0.1)
            assert n.established
        finally:
            peer.close()
            await a.stop()

    run(main())


def test_hostile_garbage_never_crashes_speaker_or_other_sessions(run):
    async def main():
        a = Speaker(65001, A_ID, listen=[(A_ADDR, 0)])
        b = Speaker(65002, B_ID, listen=[(B_ADDR, 0)])
        await a.start()
        await b.start()
        good_b = a.add_neighbor(NeighborConfig(**quick(address=B_ADDR, peer_as=65002, passive=True)))
        good_a = b.add_neighbor(NeighborConfig(**quick(address=A_ADDR, peer_as=65001, port=a.port, local_address=B_ADDR)))
        bad = a.add_neighbor(NeighborConfig(**quick(address=C_ADDR, peer_as=65003, passive=True, idle_hold_time=0.01,
                                                    damp_peer_oscillations=False)))
        rnd = random.Random(4271)
        try:
            await good_b.wait_established(5)
            a.announce(["10.0.0.0/24"], "127.0.0.1")
            await good_a.wait_received(1, 3)
            for i in range(60):
                await bad.wait_state(State.ACTIVE, 3)
                peer = await RawPeer.connect(a.port)
                try:
                    if i % 3 == 0:
                        payload = rnd.randbytes(rnd.randrange(1, 600))
                    elif i % 3 == 1:
                        # A valid marker with random length/type/body.
                        payload = b"\xff" * 16 + rnd.randbytes(rnd.randrange(3, 300))
                    else:
                        # Established, then a random UPDATE body.
                        await peer.handshake()
                        body = rnd.randbytes(rnd.randrange(0, 200))
                        payload = codec.frame(MSG_UPDATE, body)
                    peer.send(payload)
                    try:
                        await peer.closed(0.3)
                    except Exception:
                        pass
                finally:
                    peer.close()
            assert good_b.established and good_a.established
            assert good_b.counters.flaps == 0
            a.announce(["10.0.1.0/24"], "127.0.0.1")
            await good_a.wait_received(2, 3)
        finally:
            await a.stop()
            await b.stop()

    run(main(), timeout=60)


def test_exception_in_subscriber_or_processing_is_contained(run):
    async def main():
        p = await make_pair()
        try:
            await p.established()

            def boom(*a):
                raise RuntimeError("subscriber bug")

            p.nb.subscribe_updates(boom)
            p.nb.subscribe(boom)
            p.a.announce(["10.0.0.0/24"], "127.0.0.1")
            await p.nb.wait_received(1, 3)
            assert p.nb.established
        finally:
            await p.stop()

    run(main())


# ----------------------------------------------------------------------------- graceful restart


def test_graceful_restart_helper_keeps_stale_until_eor(run):
    async def main():
        gr = GracefulRestartConfig(restart_time=30)
        b = Speaker(65002, B_ID, listen=[(B_ADDR, 0)])
        await b.start()
        nb = b.add_neighbor(NeighborConfig(**quick(address=A_ADDR, peer_as=65001, passive=True, graceful_restart=gr)))
        acfg = NeighborConfig(**quick(address=B_ADDR, peer_as=65002, port=b.port, local_address=A_ADDR, graceful_restart=gr))
        a = Speaker(65001, A_ID)
        a.add_neighbor(acfg)
        a.announce(["10.1.0.0/24", "10.2.0.0/24", "10.3.0.0/24"], "127.0.0.1")
        await a.start()
        a2 = None
        try:
            await nb.wait_end_of_rib(timeout=5)
            assert nb.received_count == 3
            assert not nb.negotiated.graceful_restart.restart_state
            # A "crashes": TCP goes away without a NOTIFICATION.
            await a.stop(notify=False)
            assert a.neighbor(B_ADDR).state is State.IDLE
            await nb.wait_for(lambda: not nb.established, 3)
            assert nb.stale_count == 3
            assert nb.last_notification_received is None
            assert all(r.stale for r in nb.received().values())
            # A comes back (R bit set), announces one route, then End-of-RIB.
            a2 = Speaker(65001, A_ID, restarting=True)
            a2.add_neighbor(acfg)
            a2.announce(["10.1.0.0/24"], "127.0.0.1", med=9)
            await a2.start()
            await nb.wait_established(5)
            assert nb.negotiated.graceful_restart.restart_state
            await nb.wait_end_of_rib(timeout=5)
            got = nb.received()
            assert set(got) == {"10.1.0.0/24"}
            assert not got["10.1.0.0/24"].stale and got["10.1.0.0/24"].med == 9
            assert nb.stale_count == 0
        finally:
            if a2 is not None:
                await a2.stop()
            await b.stop()

    run(main())


def test_graceful_restart_stale_routes_dropped_after_restart_time(run):
    async def main():
        gr = GracefulRestartConfig(restart_time=1)
        p = await make_pair(a_kw=dict(graceful_restart=gr), b_kw=dict(graceful_restart=gr, idle_hold_time=5))
        try:
            await p.established()
            p.a.announce(["10.1.0.0/24"], "127.0.0.1")
            await p.nb.wait_received(1, 3)
            await p.a.stop(notify=False)
            await p.nb.wait_for(lambda: not p.nb.established, 3)
            assert p.nb.stale_count == 1
            await p.nb.wait_received(0, 3)
        finally:
            await p.stop()

    run(main())


def test_no_graceful_restart_without_capability_clears_routes(run):
    async def main():
        p = await make_pair()
        try:
            await p.established()
            p.a.announce(["10.1.0.0/24"], "127.0.0.1")
            await p.nb.wait_received(1, 3)
            await p.a.stop(notify=False)
            await p.nb.wait_for(lambda: not p.nb.established, 3)
            assert p.nb.received_count == 0
        finally:
            await p.stop()

    run(main())


def test_rfc8538_admin_shutdown_goes_out_as_hard_reset_and_drops_routes(run):
    async def main():
        gr = GracefulRestartConfig(restart_time=30, notification=True)
        p = await make_pair(a_kw=dict(graceful_restart=gr), b_kw=dict(graceful_restart=gr))
        try:
            await p.established()
            assert p.nb.negotiated.graceful_restart.notification
            p.a.announce(["10.1.0.0/24"], "127.0.0.1")
            await p.nb.wait_received(1, 3)
            p.na.disable("bye")
            await p.nb.wait_for(lambda: p.nb.last_notification_received is not None, 3)
            n = p.nb.last_notification_received
            # RFC 8538 §5: Cease/Hard Reset carrying the original 6/2 + message.
            assert (n.code, n.subcode) == (6, 9)
            assert n.data[:2] == b"\x06\x02" and messages.parse_shutdown_data(n.data[2:]) == "bye"
            assert p.nb.received_count == 0 and p.nb.stale_count == 0
        finally:
            await p.stop()

    run(main())


def test_rfc8538_soft_notification_keeps_routes_stale(run):
    async def main():
        gr = GracefulRestartConfig(restart_time=30, notification=True)
        p = await make_pair(a_kw=dict(graceful_restart=gr), b_kw=dict(graceful_restart=gr))
        try:
            await p.established()
            p.a.announce(["10.1.0.0/24", "10.2.0.0/24"], "127.0.0.1")
            await p.nb.wait_received(2, 3)
            p.na.reset("soft")  # Cease 6/4 is not Hard: the helper keeps routes
            await p.nb.wait_for(lambda: not p.nb.established, 3)
            assert (p.nb.last_notification_received.code, p.nb.last_notification_received.subcode) == (6, 4)
            assert p.nb.stale_count == 2
            p.a.withdraw(["10.2.0.0/24"])
            await p.established(5)
            await p.nb.wait_end_of_rib(timeout=5)
            assert set(p.nb.received()) == {"10.1.0.0/24"} and p.nb.stale_count == 0
        finally:
            await p.stop()

    run(main())


def test_interned_attribute_blocks_are_compacted(run):
    async def main():
        p = await make_pair()
        try:
            await p.established()
            p.nb.sink.paths_floor = p.nb.sink.paths_limit = 8
            for i in range(40):
                p.a.announce(["10.0.%d.0/24" % i], "127.0.0.1", med=i)
            await p.nb.wait_received(40, 3)
            for i in range(40):
                p.a.announce(["10.0.%d.0/24" % i], "127.0.0.1", med=1000 + i)
            await p.nb.wait_for(lambda: p.nb.received()["10.0.39.0/24"].med == 1039, 3)
            # Only blocks still in use survive a compaction.
            assert len(p.nb.sink.paths) <= 60
            assert {r.med for r in p.nb.received().values()} == set(range(1000, 1040))
        finally:
            await p.stop()

    run(main())


# ----------------------------------------------------------------------------- route refresh


def test_route_refresh_resends_table(run):
    async def main():
        p = await make_pair()
        try:
            await p.established()
            p.a.announce(["10.1.0.0/24", "10.2.0.0/24"], "127.0.0.1")
            await p.nb.wait_received(2, 3)
            before = p.nb.counters.received.update
            assert p.nb.request_refresh(IPV4_UNICAST) == 1
            # Enhanced route refresh: BoRR, the table, EoRR arrive.
            await p.nb.wait_for(lambda: p.nb.counters.received.refresh >= 2, 3)
            assert p.nb.counters.received.update > before
            assert p.nb.received_count == 2 and p.nb.stale_count == 0
            assert p.na.counters.received.refresh == 1
        finally:
            await p.stop()

    run(main())


# ----------------------------------------------------------------------------- back-pressure


def test_back_pressure_write_failed_after_hold_time(run):
    """A peer that keeps its session alive but stops reading: the sender
    pauses and the session ends as write-failed after the hold time."""

    async def main():
        a, n = await speaker_with_raw_neighbor(hold_time=3)
        peer = await RawPeer.connect(a.port, rcvbuf=4096)
        try:
            await peer.handshake(hold=3)
            await n.wait_established(2)
            # Small kernel buffers so the transport's own buffer fills up.
            sock = n.transport.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            await asyncio.sleep(0.1)  # let the End-of-RIBs out first
            a.announce(["10.%d.%d.%d/32" % (i >> 16, (i >> 8) & 255, i & 255) for i in range(200000)], "127.0.0.1")
            # Keep the session alive from the peer side without reading.
            paused = False
            t0 = time.monotonic()
            while n.established and time.monotonic() - t0 < 8:
                peer.send(codec.KEEPALIVE)
                conn = n.connection
                paused = paused or (conn is not None and conn.write_paused)
                await asyncio.sleep(0.2)
            elapsed = time.monotonic() - t0
            assert paused, "the writer never paused"
            assert not n.established
            assert left_established(n) is Reason.WRITE_FAILED
            assert 2.5 < elapsed < 5.5
            assert n.counters.sent.update < 1000
        finally:
            peer.close()
            await a.stop()

    run(main(), timeout=30)


def test_large_burst_is_processed_in_slices_and_keeps_hold_timer(run):
    """A 300k-prefix burst with hold time 3: processing takes longer than a
    keepalive interval but KEEPALIVEs still go out and nothing expires."""

    async def main():
        p = await make_pair(a_kw=dict(hold_time=3), b_kw=dict(hold_time=3))
        try:
            await p.established()
            prefixes = ["%d.%d.%d.0/24" % (1 + (i >> 16), (i >> 8) & 255, i & 255) for i in range(300000)]
            loop = asyncio.get_running_loop()
            lag = [0.0]

            async def heartbeat():
                # How long the loop is unavailable to other callbacks.
                while True:
                    t = loop.time()
                    await asyncio.sleep(0.005)
                    lag[0] = max(lag[0], loop.time() - t - 0.005)

            p.a.announce(prefixes, "127.0.0.1")
            hb = asyncio.ensure_future(heartbeat())
            try:
                await p.nb.wait_received(300000, 20)
            finally:
                hb.cancel()
            await asyncio.sleep(0.1)
            assert p.na.established and p.nb.established
            assert p.na.counters.flaps == 0 and p.nb.counters.flaps == 0
            # Processing went in slices: the loop was never blocked for long.
            assert lag[0] < 0.5, lag[0]
            assert p.nb.connection._read_paused is False
        finally:
            await p.stop()

    run(main(), timeout=40)
