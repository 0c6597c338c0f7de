"""A raw BGP peer that misbehaves by timing, for the namespace-lab fault tests.

Run inside a lab host (``python -m fastbgp.testing.slowpeer --mode ...``);
it opens one session to ``--peer`` (port 179) and then, by ``--mode``:

``fast``
    reads everything; reports ``eor`` (seconds from Established to the
    IPv4 End-of-RIB, RFC 4724 §2, and the prefixes and octets received).
``slow``
    reads at most ``--rate`` octets a second through a small receive buffer
    (``--rcvbuf``), as a peer on a thin or overloaded link would.
``stall``
    reads nothing after the OPEN exchange, but keeps sending KEEPALIVEs, so
    only our output side can notice.
``feed``
    announces ``--prefixes`` /27s of 10.0.0.0/8 in ``--groups`` attribute
    sets, then re-announces ``--churn`` of them with a new community every
    100 ms while the file ``--churn-flag`` exists (no flag: always).
``flap``
    ``--count`` sessions one after the other: OPEN, wait for the End-of-RIB,
    announce ``--prefixes`` routes, close (a Cease NOTIFICATION on even
    rounds, a TCP reset on odd ones).

With ``--extended-next-hop`` (a session over IPv6 transport) the peer
offers RFC 8950 extended next hop for IPv4 unicast, announces its IPv4
routes in MP_REACH_NLRI with its IPv6 address as next hop and counts the
ones it receives there too.

Every mode sends KEEPALIVEs every hold time / 3 (RFC 4271 §4.4) and prints
one JSON object a line on stdout (``established``, ``eor``, ``closed`` with
the NOTIFICATION received if any, ``fed``, ``flaps``).  Every message is
built and framed by :mod:`fastbgp.wire` (no codec of its own).
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import socket
import struct
import sys
import time

from fastbgp.wire import as4, codec
from fastbgp.wire import capabilities as caps
from fastbgp.wire.constants import AFI_IPV4, AFI_IPV6, MSG_KEEPALIVE, MSG_NOTIFICATION, MSG_OPEN, MSG_UPDATE, SAFI_UNICAST
from fastbgp.wire.errors import BGPError

__all__ = ["main", "Peer"]

BGP_PORT = 179
EOR_BODY = b"\x00\x00\x00\x00"  # IPv4 unicast End-of-RIB: an empty UPDATE
# RFC 4271 §4.3 attribute type codes and flags used by the feeder (and
# RFC 1997 COMMUNITIES).
_ORIGIN, _AS_PATH, _NEXT_HOP, _COMMUNITIES = 1, 2, 3, 8
_TRANSITIVE, _OPTIONAL = 0x40, 0x80
_SEQUENCE = 2
_LINGER_RESET = struct.pack("ii", 1, 0)
_CEASE, _ADMIN_RESET = 6, 4


def report(event: str, **kw) -> None:
    kw["event"] = event
    kw["t"] = time.time()
    sys.stdout.write(json.dumps(kw) + "\n")
    sys.stdout.flush()


class Peer:
    """One TCP connection carrying one BGP session (client side)."""

    def __init__(self, args):
        self.args = args
        self.sock = None
        self.reader = codec.MessageReader()
        self.loop = asyncio.get_running_loop()
        self.notification = None
        self.keepalive_task = None

    async def connect(self) -> None:
        a = self.args
        fam = socket.AF_INET6 if ":" in a.peer else socket.AF_INET
        s = socket.socket(fam, socket.SOCK_STREAM)
        if a.rcvbuf:
            # Before connect(): the window scale is fixed at the handshake.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, a.rcvbuf)
        if a.local:
            s.bind((a.local, 0))
        s.setblocking(False)
        try:
            await asyncio.wait_for(self.loop.sock_connect(s, (a.peer, BGP_PORT)), 5)
        except BaseException:
            s.close()
            raise
        self.sock = s
        self.reader = codec.MessageReader()
        self.notification = None

    async def send(self, data: bytes) -> None:
        await self.loop.sock_sendall(self.sock, data)

    async def messages(self, limit: int = 65536):
        """Yield (type, body) as they arrive; ends at EOF."""
        while True:
            data = await self.loop.sock_recv(self.sock, limit)
            if not data:
                return
            for m in self.reader.feed(data):
                yield m

    async def open_session(self) -> None:
        """OPEN both ways, then KEEPALIVE both ways (RFC 4271 §8.2.2)."""
        a = self.args
        mine = [caps.Multiprotocol(AFI_IPV4, SAFI_UNICAST), caps.FourOctetAS(a.asn), caps.RouteRefresh()]
        if a.extended_next_hop:
            # RFC 8950 §3: IPv4 unicast NLRI with IPv6 next hops (for a
            # session over IPv6 transport).
            mine.append(caps.ExtendedNextHop([(AFI_IPV4, SAFI_UNICAST, AFI_IPV6)]))
        rid = int(ipaddress.IPv4Address(a.router_id))
        await self.send(codec.build_open(a.asn, a.hold, rid, caps.encode_all(mine)))
        got_open = False
        async for mtype, body in self.messages(4096):
            if mtype == MSG_OPEN:
                codec.parse_open(body)
                got_open = True
                await self.send(codec.KEEPALIVE)
            elif mtype == MSG_KEEPALIVE and got_open:
                return
            elif mtype == MSG_NOTIFICATION:
                n = codec.parse_notification(body)
                raise ConnectionError("NOTIFICATION %d/%d while opening" % (n[0], n[1]))
        raise ConnectionError("closed while opening")

    def start_keepalives(self) -> None:
        self.keepalive_task = self.loop.create_task(self._keepalives())

    async def _keepalives(self) -> None:
        interval = max(self.args.hold / 3.0, 0.5)
        ka = codec.KEEPALIVE
        try:
            while True:
                await asyncio.sleep(interval)
                await self.send(ka)
        except OSError as exc:
            report("closed", how="keepalive send failed: %s" % exc)

    def close(self, reset: bool = False) -> None:
        if self.keepalive_task is not None:
            self.keepalive_task.cancel()
            self.keepalive_task = None
        if self.sock is not None:
            if reset:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
            self.sock.close()
            self.sock = None


def _count_update(body: bytes) -> int:
    """IPv4 prefixes announced in the classic NLRI field of an UPDATE, or
    (over IPv6 transport, RFC 8950) in its MP_REACH_NLRI."""
    n = len(body)
    wd = (body[0] << 8) | body[1] if n >= 2 else n
    at = 2 + wd
    if at + 2 > n:
        # RFC 4271 §6.3: the lengths overrun the message.
        raise BGPError(3, 1, b"", "UPDATE withdrawn routes length %d overruns the message" % wd)
    alen = (body[at] << 8) | body[at + 1]
    if at + 2 + alen > n:
        raise BGPError(3, 1, b"", "UPDATE attributes length %d overruns the message" % alen)
    nlri = body[at + 2 + alen:]
    if nlri:
        return codec.count_prefixes(nlri, AFI_IPV4)
    # No classic NLRI: the wire parser finds any MP_REACH_NLRI (one source
    # for the attribute walk).
    return codec.parse_update(body).n_announced if alen else 0


async def read_all(p: Peer) -> None:
    """``fast``: read and count; report the End-of-RIB once."""
    t0 = time.monotonic()
    prefixes = octets = 0
    eor = False
    try:
        async for mtype, body in p.messages():
            octets += len(body) + 19
            if mtype == MSG_UPDATE:
                if body == EOR_BODY and not eor:
                    eor = True
                    report("eor", seconds=time.monotonic() - t0, prefixes=prefixes, octets=octets)
                else:
                    prefixes += _count_update(body)
            elif mtype == MSG_NOTIFICATION:
                p.notification = codec.parse_notification(body)[:2]
    except (OSError, BGPError) as exc:
        report("closed", how=str(exc), notification=p.notification, octets=octets)
        return
    report("closed", how="eof", notification=p.notification, octets=octets)


async def read_slowly(p: Peer) -> None:
    """``slow``: at most ``rate`` octets a second, in 1,024-octet sips."""
    rate = p.args.rate
    octets = 0
    t0 = time.monotonic()
    try:
        while True:
            data = await p.loop.sock_recv(p.sock, 1024)
            if not data:
                break
            octets += len(data)
            for mtype, body in p.reader.feed(data):
                if mtype == MSG_NOTIFICATION:
                    p.notification = codec.parse_notification(body)[:2]
            # Sleep until the average is back at ``rate``.
            ahead = octets / rate - (time.monotonic() - t0)
            if ahead > 0:
                await asyncio.sleep(ahead)
    except (OSError, BGPError) as exc:
        report("closed", how=str(exc), notification=p.notification, octets=octets)
        return
    report("closed", how="eof", notification=p.notification, octets=octets)


async def stall(p: Peer) -> None:
    """``stall``: never read again; the keepalive task notices the end."""
    await p.keepalive_task


def _attrs(asn: int, next_hop, tag: int) -> bytes:
    """ORIGIN IGP, AS_PATH (asn), NEXT_HOP (none if ``next_hop`` is None),
    COMMUNITIES (asn:tag, both mod 65536): a canonical block (type order).
    A community rather than a MED marks each set: an eBGP export passes it
    on, so every peer the daemon exports to is sent each change (a route
    whose MED alone changed is the same route to them, and the daemon
    sends them nothing: fastbgp.rib.export, unchanged_best)."""
    path = bytes((_SEQUENCE, 1)) + asn.to_bytes(4, "big")
    nh = b"" if next_hop is None else as4.encode_attr(_TRANSITIVE, _NEXT_HOP, ipaddress.IPv4Address(next_hop).packed)
    community = ((asn & 0xFFFF) << 16) | (tag & 0xFFFF)
    return (as4.encode_attr(_TRANSITIVE, _ORIGIN, b"\x00")
            + as4.encode_attr(_TRANSITIVE, _AS_PATH, path)
            + nh
            + as4.encode_attr(_OPTIONAL | _TRANSITIVE, _COMMUNITIES, community.to_bytes(4, "big")))


def _announcements(asn: int, local: str, tag: int, packed: bytes) -> list:
    """The UPDATEs announcing the IPv4 prefixes ``packed`` with next hop
    ``local`` (our address): a NEXT_HOP attribute and the classic NLRI
    field, or over IPv6 transport (``--extended-next-hop``) MP_REACH_NLRI
    with ``local`` as RFC 8950 next hop."""
    if ipaddress.ip_address(local).version == 6:
        return codec.pack_updates(_attrs(asn, None, tag), packed, next_hop=ipaddress.IPv6Address(local).packed)
    return codec.pack_updates(_attrs(asn, local, tag), packed)


def _prefixes(n: int, base: str = "10.0.0.0", length: int = 27) -> list:
    """``n`` packed /``length`` prefixes from ``base`` on (length octet + address octets)."""
    start = int(ipaddress.IPv4Address(base))
    step = 1 << (32 - length)
    nbytes = (length + 7) // 8
    return [bytes((length,)) + (start + i * step).to_bytes(4, "big")[:nbytes] for i in range(n)]


async def _drain_input(p: Peer) -> None:
    try:
        async for mtype, body in p.messages():
            if mtype == MSG_NOTIFICATION:
                p.notification = codec.parse_notification(body)[:2]
    except (OSError, BGPError):
        pass
    report("closed", how="eof", notification=p.notification)


async def feed(p: Peer) -> None:
    """``feed``: the table, then churn until stopped."""
    a = p.args
    drain = p.loop.create_task(_drain_input(p))
    local = a.local or p.sock.getsockname()[0]
    pfx = _prefixes(a.prefixes)
    groups = max(1, a.groups)
    for g in range(groups):
        packed = b"".join(pfx[g::groups])
        for m in _announcements(a.asn, local, g, packed):
            await p.send(m)
    await p.send(codec.build_eor())
    report("fed", prefixes=len(pfx))
    tag = groups
    i = 0
    while a.churn and pfx and not drain.done():
        if a.churn_flag and not os.path.exists(a.churn_flag):
            await asyncio.sleep(0.1)
            continue
        # Re-announce a window of the table with a new community: every
        # peer the daemon exports to gets these changes.
        chunk = pfx[i:i + a.churn] or pfx[:a.churn]
        i = (i + a.churn) % len(pfx)
        tag += 1
        for m in _announcements(a.asn, local, tag, b"".join(chunk)):
            await p.send(m)
        await asyncio.sleep(0.1)
    await drain


async def _wait_eor(p: Peer) -> None:
    async for mtype, body in p.messages():
        if mtype == MSG_UPDATE and body == EOR_BODY:
            return
        if mtype == MSG_NOTIFICATION:
            raise ConnectionError("NOTIFICATION %r" % (codec.parse_notification(body)[:2],))
    raise ConnectionError("closed before End-of-RIB")


async def flap(args) -> None:
    """``flap``: ``count`` whole sessions, each up to End-of-RIB and down."""
    done = failures = 0
    t0 = time.monotonic()
    pfx = b"".join(_prefixes(args.prefixes, "10.200.0.0", 24)) if args.prefixes else b""
    while done < args.count and failures < 5 * args.count:
        p = Peer(args)
        try:
            await p.connect()
            await asyncio.wait_for(p.open_session(), 10)
            await asyncio.wait_for(_wait_eor(p), 10)
            if pfx:
                for m in _announcements(args.asn, args.local or p.sock.getsockname()[0], 0, pfx):
                    await p.send(m)
            if done % 2 == 0:
                await p.send(codec.build_notification(_CEASE, _ADMIN_RESET))
            p.close(reset=done % 2 == 1)
            done += 1
            # Give the speaker time to see the end and run its IdleHoldTimer
            # (RFC 4271 §8.1.1; 0.1 s at idle-hold = 0): a connection racing
            # the old one's reset meets §6.8 collision handling (Cease 6/7),
            # one during the IdleHoldTimer is refused; both are retried below.
            await asyncio.sleep(0.1)
        except (OSError, ConnectionError, asyncio.TimeoutError, BGPError) as exc:
            p.close(reset=True)
            failures += 1
            if failures <= 5:
                report("flap_failed", round=done, how=str(exc))
            await asyncio.sleep(0.05)
    report("flaps", done=done, failures=failures, seconds=time.monotonic() - t0)


async def amain(args) -> int:
    if args.mode == "flap":
        await flap(args)
        return 0
    p = Peer(args)
    deadline = time.monotonic() + args.retry
    while True:
        # A speaker whose neighbour is in Idle (RFC 4271 §8.1.1 IdleHoldTimer
        # after the previous session) refuses us for a while: try again.
        try:
            await p.connect()
            await asyncio.wait_for(p.open_session(), 10)
            break
        except (OSError, ConnectionError, asyncio.TimeoutError):
            p.close(reset=True)
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)
    report("established")
    p.start_keepalives()
    mode = {"fast": read_all, "slow": read_slowly, "stall": stall, "feed": feed}[args.mode]
    await mode(p)
    p.close()
    return 0


def parse_args(argv=None):
    ap = argparse.ArgumentParser(prog="python -m fastbgp.testing.slowpeer", description=__doc__.split("\n")[0])
    ap.add_argument("--mode", required=True, choices=("fast", "slow", "stall", "feed", "flap"))
    ap.add_argument("--peer", required=True, help="address of the speaker under test (port 179)")
    ap.add_argument("--local", help="our address (bind)")
    ap.add_argument("--asn", type=int, required=True)
    ap.add_argument("--router-id", required=True)
    ap.add_argument("--hold", type=int, default=9)
    ap.add_argument("--rate", type=float, default=12000.0, help="slow: octets per second")
    ap.add_argument("--rcvbuf", type=int, default=0, help="SO_RCVBUF before connect (0: the kernel's)")
    ap.add_argument("--prefixes", type=int, default=0)
    ap.add_argument("--groups", type=int, default=1)
    ap.add_argument("--churn", type=int, default=0, help="feed: prefixes re-announced every 100 ms")
    ap.add_argument("--retry", type=float, default=20.0, help="seconds to keep trying to open the session")
    ap.add_argument("--churn-flag", help="feed: churn only while this file exists")
    ap.add_argument("--count", type=int, default=1, help="flap: sessions")
    ap.add_argument("--extended-next-hop", action="store_true",
                    help="advertise RFC 8950 IPv4 unicast with IPv6 next hops")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        import uvloop

        factory = uvloop.new_event_loop
    except ImportError:  # pragma: no cover
        factory = None
    try:
        with asyncio.Runner(loop_factory=factory) as r:
            return r.run(amain(args))
    except (OSError, ConnectionError, BGPError) as exc:
        report("closed", how=str(exc))
        return 1


if __name__ == "__main__":
    sys.exit(main())
