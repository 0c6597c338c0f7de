"""Running a scenario: peer groups (one per process), the coordinator that
drives phases, the monitor, canaries and the figures they produce.

The coordinator talks to every group through the same small async
interface; :class:`LocalGroup` runs the peers on the coordinator's own loop
(``workers = 1``), :class:`RemoteGroup` in a child process with its own
loop, driven over a pipe (``--workers N``).  Timestamps are
``time.monotonic()``, which is one clock for every process of a host, so a
worker's "last chunk written" and the monitor's "last prefix seen" can be
subtracted.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import math
import time
import traceback
from typing import Optional

from fastbgp.loadtest import generator as gen
from fastbgp.loadtest import procnet
from fastbgp.loadtest.peer import ESTABLISHED, IDLE, STATE_NAMES, Job, LoadPeer, SessionConfig, Ticker, unacked_octets
from fastbgp.loadtest.scenario import Scenario, parse_slice, phases_of

log = logging.getLogger("fastbgp.loadtest")

# Workers report their counters this often: the timeline (and the plot of
# a 0.25 s convergence) needs samples at least every 10 ms.
SNAPSHOT_EVERY = 0.01
# How often the send queues are polled while waiting for delivery, and the
# target's /proc tables (a read costs ~100 octets per connection it has).
DELIVERY_POLL = 0.001
# The /proc table is read only once our side of a session is acknowledged,
# first after PROC_POLL_MIN, then at doubling intervals up to PROC_POLL_MAX
# (a read costs milliseconds of kernel time, taken from the target's host):
# the delivered time of a session the target reads slowly is late by at
# most PROC_POLL_MAX.
PROC_POLL_MIN = 0.005
PROC_POLL_MAX = 0.02


def _plain(name):
    ip = ipaddress.ip_address(name[0])
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return str(ip), name[1]


def _ends(transport):
    """(the target's end, our end) of a connection, each (address, port)
    as the target's socket tables name them; None when gone."""
    if transport is None:
        return None
    ours = transport.get_extra_info("sockname")
    theirs = transport.get_extra_info("peername")
    if not ours or not theirs:
        return None
    return _plain(theirs), _plain(ours)


# ---------------------------------------------------------------------- layout


def slice_indices(count: int, slice_text: str) -> range:
    """Global peer indexes of slice "i/n" (contiguous, as even as possible)."""
    i, n = parse_slice(slice_text)
    return range(count * (i - 1) // n, count * i // n)


def split(indices: range, parts: int) -> list:
    n = len(indices)
    parts = max(1, min(parts, n)) if n else 1
    return [indices[n * k // parts : n * (k + 1) // parts] for k in range(parts)]


def peer_address(sc: Scenario, index: int) -> Optional[str]:
    p = sc.peers
    if p.address is None:
        return None
    return str(ipaddress.ip_address(p.address) + index * p.address_step)


def peer_asn(sc: Scenario, index: int) -> int:
    return sc.peers.asn + index * sc.peers.asn_step


def peer_router_id(sc: Scenario, index: int) -> int:
    p = sc.peers
    if p.router_id is not None:
        return (int(ipaddress.IPv4Address(p.router_id)) + index) & 0xFFFFFFFF or 1
    addr = peer_address(sc, index)
    if addr is not None and ipaddress.ip_address(addr).version == 4:
        return int(ipaddress.IPv4Address(addr))
    # RFC 6286: any unique non-zero value; 10.0.0.0 + index + 1 otherwise.
    return 0x0A000000 + index + 1


def session_config(sc: Scenario, index: int, cap: int = 0) -> SessionConfig:
    p = sc.peers
    asn = peer_asn(sc, index)
    ebgp = p.ebgp if p.ebgp is not None else asn != sc.target.asn
    return SessionConfig(index, peer_address(sc, index), asn, peer_router_id(sc, index), sc.target.address,
                         sc.target.port, sc.target.asn, p.hold_time, p.keepalive, p.four_octet_as, p.addpath,
                         p.extended_message, p.md5_password, p.ttl, ebgp, sc.table.family, cap)


def peer_info(cfg: SessionConfig) -> gen.PeerInfo:
    return gen.PeerInfo(cfg.index, cfg.asn, cfg.address, cfg.ebgp)


def expected_encoding(sc: Scenario, cap=0) -> gen.Encoding:
    p = sc.peers
    return gen.Encoding(p.four_octet_as, p.addpath, 65535 if p.extended_message else 4096, cap)


def cap_for(sc: Scenario) -> int:
    """Prefixes per UPDATE at most: the table's limit, and for paced phases
    the burst size, so a burst is never bigger than asked."""
    cap = sc.table.max_per_update
    for ph in phases_of(sc):
        if ph.kind in ("announce", "flap") and ph.rate > 0:
            cap = ph.burst if not cap else min(cap, ph.burst)
    return cap


# ---------------------------------------------------------------------- sources


def make_source(sc: Scenario):
    """The table source: synthetic (TablePlan) or an MRT replay."""
    if sc.replay is not None:
        from fastbgp.loadtest.replay import ReplaySource

        return ReplaySource(sc)
    return gen.TablePlan(sc.table)


# ---------------------------------------------------------------------- group


class PeerGroup:
    """The peers of one process on one loop."""

    def __init__(self, sc: Scenario, indices, loop=None):
        self.sc = sc
        self.indices = list(indices)
        self.loop = loop or asyncio.get_event_loop()
        self.cap = cap_for(sc)
        self.cfgs = [session_config(sc, i, self.cap) for i in self.indices]
        self.peers = [LoadPeer(c, self.loop) for c in self.cfgs]
        self.source = None
        self.ticker = Ticker(self.loop, self.peers)
        self.prep_time = 0.0
        self._sem = asyncio.Semaphore(sc.peers.connect_concurrency)
        self._connectors: dict = {}
        self._stopping = False

    # -- preparation --------------------------------------------------------

    def prepare(self):
        """Generate and encode every table this group will send for the
        encoding the peers are configured for (done before any clock runs)."""
        t0 = time.perf_counter()
        self.source = make_source(self.sc)
        enc = expected_encoding(self.sc, self.cap)
        for cfg in self.cfgs:
            self.source.stream(peer_info(cfg), enc)
        self.prep_time = time.perf_counter() - t0
        return {"prep_time": self.prep_time, "peers": len(self.peers)}

    # -- sessions --------------------------------------------------------------

    async def establish(self, t_start: float, timeout: float):
        """Start every session (peer with global index k at t_start + k *
        stagger, time.monotonic()) and wait until all are Established or
        ``timeout`` passes."""
        if not self.ticker.handle:
            self.ticker.start()
        self._stopping = False
        deadline = time.monotonic() + timeout
        tasks = []
        for p in self.peers:
            if p.state == IDLE:
                at = t_start + p.cfg.index * self.sc.peers.stagger
                tasks.append(self.loop.create_task(self._run_connect(p, at, deadline)))
        if tasks:
            await asyncio.gather(*tasks)
        est = [p for p in self.peers if p.state == ESTABLISHED]
        times = [p.established_at for p in est if p.established_at is not None]
        return {
            "established": len(est),
            "total": len(self.peers),
            "first": min(times) if times else None,
            "last": max(times) if times else None,
            "errors": sorted({p.last_error for p in self.peers if p.state != ESTABLISHED and p.last_error})[:10],
        }

    async def _run_connect(self, p: LoadPeer, at: float, deadline: float):
        delay = at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        while not self._stopping and time.monotonic() < deadline:
            if p.state == IDLE:
                try:
                    async with self._sem:
                        await p.connect(timeout=max(0.1, min(10.0, deadline - time.monotonic())))
                except (OSError, asyncio.TimeoutError) as exc:
                    p.last_error = "connect: %s" % (exc,)
                    await asyncio.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
                    continue
            if p.state == ESTABLISHED:
                return
            await p.wait_change(max(0.01, deadline - time.monotonic()))
            if p.state == IDLE and time.monotonic() < deadline:
                # Refused (NOTIFICATION) or dropped during the OPEN exchange.
                await asyncio.sleep(min(1.0, max(0.0, deadline - time.monotonic())))

    def _job(self, p: LoadPeer, kind: str, prefixes: int, rate: float, burst: int, total_peers: int):
        enc = p.encoding
        info = peer_info(p.cfg)
        src = self.source
        if kind == "withdraw":
            stream = src.withdraw_stream(info, enc, prefixes)
            upto = stream.n_messages
        else:
            stream = src.stream(info, enc)
            upto = stream.messages_for(prefixes) if prefixes else stream.n_messages
        asn, nh = src.patch_values(info, enc)
        release = None
        timing = getattr(stream, "timing", None)
        if timing is not None and kind != "withdraw":
            # MRT update replay: chunks carry their original time offsets.
            bounds, release = src.timed_bounds(stream, upto)
        elif rate > 0:
            # Paced: each burst leaves when the per-peer rate allows it
            # (token bucket with a bucket of one burst).
            per_peer = rate / max(1, total_peers)
            bounds = []
            release = []
            k = 0
            while True:
                k += 1
                want = min(k * burst, stream.prefixes(0, upto))
                i = stream.messages_for(want)
                if i > upto:
                    i = upto
                if not bounds or i > bounds[-1]:
                    prev_pfx = stream.prefixes(0, bounds[-1]) if bounds else 0
                    release.append(prev_pfx / per_peer)
                    bounds.append(i)
                if i >= upto:
                    break
        else:
            bounds = stream.bounds(gen.CHUNK, upto)
        return Job(stream, bounds, release, asn, nh, kind)

    async def send(self, kind: str, prefixes: int = 0, rate: float = 0.0, burst: int = 1000, total_peers: int = 1,
                   only: Optional[list] = None):
        """Every Established peer (or those of global index in ``only``)
        sends its announcements (``kind`` "announce") or withdrawals; returns
        when the target's TCP has acknowledged the last octet of each
        ("delivered"; "last" is when the last chunk went to our kernel)."""
        futs = []
        jobs = []
        sending = []
        for p in self.peers:
            if p.state != ESTABLISHED or (only is not None and p.cfg.index not in only):
                continue
            job = self._job(p, kind, prefixes, rate, burst, total_peers)
            jobs.append(job)
            sending.append(p)
            futs.append(p.start_job(job))
        t0 = time.monotonic()
        ok = await asyncio.gather(*futs) if futs else []
        firsts = [j.first_write for j in jobs if j.first_write is not None]
        lasts = [j.last_write for j in jobs if j.last_write is not None]
        delivered, undelivered, seen_read = await self.wait_delivered([p for p, x in zip(sending, ok) if x])
        return {
            "sessions": len(jobs),
            "completed": sum(1 for x in ok if x),
            "prefixes": sum(j.sent for j in jobs),
            "first": min(firsts) if firsts else t0,
            "last": max(lasts) if lasts else time.monotonic(),
            "delivered": delivered,
            "undelivered": undelivered + sum(1 for x in ok if not x),
            "seen_read": seen_read,
        }

    async def wait_delivered(self, peers):
        """Wait until the target's TCP has acknowledged every octet written
        to ``peers`` (our send queues empty) and, when its pid is known and
        its /proc tables show the connection, until it has read them all
        (its receive queue empty: :mod:`.procnet`).  Returns
        (time.monotonic() of the last session's delivery or None, sessions
        that went down or did not drain within the monitor timeout,
        sessions whose reading by the target was seen)."""
        deadline = time.monotonic() + self.sc.monitor.timeout
        waiting = list(peers)
        last = None
        lost = 0
        seen_read = 0
        pids = self.sc.target.pid
        tables = ("tcp6",) if ipaddress.ip_address(self.sc.target.address).version == 6 else ("tcp",)
        diag = procnet.SockDiag()
        proc_gap = PROC_POLL_MIN
        next_proc = None
        while waiting:
            now = time.monotonic()
            rxq = None
            if pids and next_proc is not None and now >= next_proc:
                rxq = procnet.rx_queues(pids, tables)
                if rxq is None:
                    pids = None  # unreadable: acknowledged is all we can know
                proc_gap = min(PROC_POLL_MAX, proc_gap * 2)
                next_proc = now + proc_gap
            still = []
            for p in waiting:
                n = unacked_octets(p.transport) if p.state == ESTABLISHED else None
                if n is None:
                    lost += 1
                    continue
                if n == 0:
                    # Acknowledged: the target's receive queue decides --
                    # sock_diag when it shares our namespace, else its /proc
                    # table (with --target-pid).
                    ends = _ends(p.transport)
                    q = diag.rx_queue(*ends) if ends else None
                    if q is None and pids:
                        if rxq is None:
                            if next_proc is None:
                                next_proc = now + PROC_POLL_MIN
                            still.append(p)
                            continue
                        q = rxq.get(ends[1] if ends else None)
                    if q:
                        still.append(p)
                        continue
                    if q == 0:
                        seen_read += 1
                    # q None: not visible (another host or namespace).
                if n == 0:
                    last = now
                    p.poll_delivered()
                else:
                    still.append(p)
            waiting = still
            if not waiting:
                break
            if now > deadline:
                lost += len(waiting)
                break
            await asyncio.sleep(DELIVERY_POLL)
        diag.close()
        return last, lost, seen_read

    async def down(self, fraction: float, total: int):
        """Close the sessions of the first ``fraction`` of all peers (by
        global index) with Cease / Administrative Reset (RFC 4486 §4)."""
        limit = int(math.ceil(fraction * total))
        n = 0
        for p in self.peers:
            if p.cfg.index < limit and p.state != IDLE:
                p.stop(4)
                n += 1
        # Wait for the connections to be gone.
        for _ in range(200):
            if all(p.state == IDLE for p in self.peers if p.cfg.index < limit):
                break
            await asyncio.sleep(0.01)
        return n

    async def canary(self, seq: int):
        """Announce canary ``seq`` from this group's first Established peer;
        (time.monotonic() sent, key) or None."""
        for p in self.peers:
            if p.state == ESTABLISHED:
                msg, key = self.source.canary_update(peer_info(p.cfg), p.encoding, seq)
                return p.send_now(msg), key
        return None

    def snapshot(self) -> dict:
        sent = wd = ups = octs = est = hold = rx = dlv = dlv_wd = 0
        for p in self.peers:
            p.poll_delivered()
            dlv += p.delivered_prefixes
            dlv_wd += p.delivered_withdrawn
            sent += p.sent_prefixes
            wd += p.sent_withdrawn
            ups += p.sent_updates
            octs += p.sent_octets
            rx += p.received_updates()
            hold += p.hold_expired
            if p.state == ESTABLISHED:
                est += 1
        return {"sent": sent, "withdrawn": wd, "delivered": dlv, "delivered_withdrawn": dlv_wd, "updates": ups, "octets": octs, "established": est,
                "hold_expired": hold, "rx_updates": rx, "cpu": time.process_time(),
                "tick_lag": self.ticker.max_lag, "notifications": sum(len(p.notifications_rx) for p in self.peers)}

    def figures(self) -> list:
        out = []
        for p in self.peers:
            c = p.cfg
            out.append({
                "index": c.index, "address": c.address, "asn": c.asn, "state": STATE_NAMES[p.state],
                "established_at": p.established_at, "established_count": p.established_count,
                "drops": p.drops, "hold_expired": p.hold_expired,
                "sent_prefixes": p.sent_prefixes, "sent_withdrawn": p.sent_withdrawn,
                "delivered_prefixes": p.delivered_prefixes, "delivered_withdrawn": p.delivered_withdrawn,
                "sent_updates": p.sent_updates, "sent_octets": p.sent_octets,
                "keepalives_sent": p.keepalives_tx, "received_updates": p.received_updates(),
                "notifications_received": ["%d/%d" % n for n in p.notifications_rx],
                "notifications_sent": ["%d/%d" % n for n in p.notifications_tx],
                "hold_time": p.hold, "encoding": list(p.encoding) if p.encoding else None,
                "last_error": p.last_error,
            })
        return out

    async def close(self):
        self._stopping = True
        for p in self.peers:
            if p.state != IDLE:
                p.stop(2)
        for _ in range(100):
            if all(p.transport is None for p in self.peers):
                break
            await asyncio.sleep(0.01)
        for p in self.peers:
            if p.transport is not None:
                p.abort()
        self.ticker.stop()


class LocalGroup:
    """A PeerGroup on the coordinator's loop, behind the group interface."""

    def __init__(self, sc, indices):
        self.g = PeerGroup(sc, indices)
        self.indices = list(indices)
        self.error = None

    async def prepare(self):
        return self.g.prepare()

    async def establish(self, t_start, timeout):
        return await self.g.establish(t_start, timeout)

    async def send(self, *a, **kw):
        return await self.g.send(*a, **kw)

    async def down(self, fraction, total):
        return await self.g.down(fraction, total)

    async def canary(self, seq):
        return await self.g.canary(seq)

    def snapshot(self):
        return self.g.snapshot()

    async def figures(self):
        return self.g.figures()

    async def close(self):
        await self.g.close()


# ---------------------------------------------------------------------- workers


def _worker_main(conn, sc_builtins, indices):
    """Entry point of a worker process: one loop, one PeerGroup, commands
    from the coordinator over ``conn``."""
    import msgspec

    # uvloop's loop when it is there (asyncio's otherwise), through the loop
    # factory rather than a global event loop policy.
    try:
        import uvloop

        loop_factory = uvloop.new_event_loop
    except ImportError:  # pragma: no cover
        loop_factory = None
    sc = msgspec.convert(sc_builtins, Scenario)

    async def main():
        loop = asyncio.get_running_loop()
        group = PeerGroup(sc, indices, loop)
        done = loop.create_future()

        async def handle(cid, cmd, args):
            try:
                if cmd == "prepare":
                    res = group.prepare()
                elif cmd == "establish":
                    res = await group.establish(*args)
                elif cmd == "send":
                    res = await group.send(*args[0], **args[1])
                elif cmd == "down":
                    res = await group.down(*args)
                elif cmd == "canary":
                    res = await group.canary(*args)
                elif cmd == "figures":
                    res = group.figures()
                elif cmd == "close":
                    await group.close()
                    res = None
                    if not done.done():
                        done.set_result(None)
                else:
                    raise ValueError("unknown command %r" % cmd)
                conn.send(("reply", cid, True, res))
            except Exception as exc:  # reported to the coordinator
                conn.send(("reply", cid, False, "%s\n%s" % (exc, traceback.format_exc())))

        def readable():
            try:
                while conn.poll():
                    cid, cmd, args = conn.recv()
                    loop.create_task(handle(cid, cmd, args))
            except (EOFError, OSError):
                if not done.done():
                    done.set_result(None)

        loop.add_reader(conn.fileno(), readable)

        async def snapshots():
            while True:
                await asyncio.sleep(SNAPSHOT_EVERY)
                try:
                    conn.send(("snap", group.snapshot()))
                except (OSError, BrokenPipeError):
                    return

        st = loop.create_task(snapshots())
        await done
        st.cancel()
        loop.remove_reader(conn.fileno())

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(main())


class RemoteGroup:
    """A PeerGroup in a child process."""

    def __init__(self, sc: Scenario, indices, ctx):
        import msgspec

        self.indices = list(indices)
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child, msgspec.to_builtins(sc), self.indices), daemon=True)
        self.proc.start()
        child.close()
        self._next = 0
        self._futs: dict = {}
        self._snap = {"sent": 0, "withdrawn": 0, "delivered": 0, "delivered_withdrawn": 0, "updates": 0, "octets": 0, "established": 0, "hold_expired": 0,
                      "rx_updates": 0, "cpu": 0.0, "tick_lag": 0.0, "notifications": 0}
        self.loop = None
        self.error = None

    def attach(self, loop):
        self.loop = loop
        loop.add_reader(self.conn.fileno(), self._readable)

    def _readable(self):
        try:
            while self.conn.poll():
                msg = self.conn.recv()
                if msg[0] == "snap":
                    self._snap = msg[1]
                elif msg[0] == "reply":
                    _, cid, ok, res = msg
                    f = self._futs.pop(cid, None)
                    if f is not None and not f.done():
                        if ok:
                            f.set_result(res)
                        else:
                            f.set_exception(RuntimeError("worker: " + str(res)))
        except (EOFError, OSError):
            self.loop.remove_reader(self.conn.fileno())
            self.error = "worker process exited (code %s)" % self.proc.exitcode
            for f in self._futs.values():
                if not f.done():
                    f.set_exception(RuntimeError(self.error))
            self._futs.clear()

    def _call(self, cmd, *args):
        self._next += 1
        cid = self._next
        f = self.loop.create_future()
        self._futs[cid] = f
        self.conn.send((cid, cmd, args))
        return f

    async def prepare(self):
        return await self._call("prepare")

    async def establish(self, t_start, timeout):
        return await self._call("establish", t_start, timeout)

    async def send(self, *a, **kw):
        return await self._call("send", a, kw)

    async def down(self, fraction, total):
        return await self._call("down", fraction, total)

    async def canary(self, seq):
        return await self._call("canary", seq)

    def snapshot(self):
        return self._snap

    async def figures(self):
        return await self._call("figures")

    async def close(self):
        try:
            await asyncio.wait_for(self._call("close"), 10)
        except Exception:
            pass
        try:
            self.loop.remove_reader(self.conn.fileno())
        except Exception:
            pass
        await self.loop.run_in_executor(None, self.proc.join, 5)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(2)
        self.conn.close()
