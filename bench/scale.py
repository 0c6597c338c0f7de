#!/usr/bin/env python
"""Issue 12's scale benchmarks, one script, one run, every target in the same
namespace lab with the same feeders and receivers (fastbgp/testing/lab.py):

* P1 pass-through: 1M IPv4 /24 in 1,000 attribute groups, 1 sender ->
  target -> 1 receiver (bench/passthrough.py's ``passthrough`` shape);
* P4 route server: 10 senders x 100k disjoint prefixes -> 1 receiver, the
  senders started at one instant (bench/passthrough.py's ``route-server``);
* P8 full tables: 20 senders each announcing the same 1,000,000 prefixes
  (own AS path per sender) -> 1 receiver, 20M paths in the target.
  Converged = the receiver's last UPDATE before a quiet period, with the
  receiver holding exactly the 1M prefixes.  Every sender records the
  target's KEEPALIVEs (hold time 15 s: one every 5 s) and the largest gap
  is reported;
* P9 IXP route server: 200 clients, each with an IPv4 and an IPv6 session
  (400 sessions), 1,000 prefixes per session, 10% of them (one attribute
  group in ten) carrying a Euro-IX control community; seconds until every
  session holds exactly the set it must hold (a bitmap per session compared
  with the expected one); the clients also count prefixes that arrive
  with a control community still on them.  fastbgp runs with
  ``[global.route-server] euro-ix-communities``; BIRD as route server gets
  the filters of tests/interop/test_route_server_ixp.py (its config
  generator is reused); FRR and OpenBGPD get the same semantics from
  bench/p9_route_servers.py.  ``--p9-clients`` runs it with fewer clients.

Run as root::

    python bench/scale.py                        # fastbgp and BIRD, every scenario
    python bench/scale.py --scenarios p9 --targets fastbgp,bird,frr,openbgpd --p9-timeout 600
    python bench/scale.py --scenarios p8 --lengths dfz --write bench/RESULTS.md

The roles (``--role p8-sender|p8-receiver|p9-clients``) are the processes
this file starts inside the lab namespaces.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import ipaddress
import os
import signal
import subprocess
import sys
import time

import passthrough as PT

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
ME = os.path.abspath(__file__)

P8_HOLD = 15  # seconds: keepalives every 5 s (RFC 4271 §10), so a 30-60 s load spans several
P8_QUIET = 3.0  # seconds without an UPDATE at the receiver = converged
P9_CLIENTS = 200
P9_PREFIXES = 1000  # per session
P9_GROUPS = 10  # attribute groups per session; group 0 (10%) carries the control community
P9_AS0 = 65001
V6_BASE = 0x2A00 << 32  # IPv6 /48 n is 2a00:0000:0000::/48 + n (48-bit value)


# ============================================================== P8 roles


def _p8_sender(args):
    import uvloop

    async def main():
        loop = asyncio.get_running_loop()
        msgs = p8_table(args)
        PT.write_status(args.status, event="ready", messages=len(msgs))
        go = asyncio.Event()
        loop.add_signal_handler(signal.SIGUSR1, go.set)

        def on_keepalive(t):
            PT.write_status(args.status, event="keepalive", at=t)

        peer = PT.Peer(args.asn, int(ipaddress.IPv4Address(args.local)), args.status, hold=args.hold,
                       on_keepalive=on_keepalive)
        await PT.connect(loop, lambda: peer, args.target, args.port, args.local)
        await go.wait()
        PT.write_status(args.status, event="go")
        peer.transport.writelines(msgs)
        await peer.closed

    uvloop.run(main())


def _dfz_plan(count, groups):
    """fastbgp/loadtest's DFZ-shaped IPv4 table (scenario.DFZ_V4 length
    mix), the same prefixes for every peer (overlap 1)."""
    from fastbgp.loadtest.generator import TablePlan
    from fastbgp.loadtest.scenario import Table

    return TablePlan(Table(prefixes=count, lengths="dfz", per_group=max(1, count // groups), overlap=1.0))


def p8_table(args):
    """The UPDATEs a P8 sender announces: /24s (bench/passthrough.py's
    table) or the DFZ length mix, AS path and next hop its own."""
    if args.lengths == "24":
        return PT.build_table(0, args.count, args.groups, args.asn, args.local)
    from fastbgp.loadtest.generator import Encoding, PeerInfo
    from fastbgp.wire import codec

    stream = _dfz_plan(args.count, args.groups).stream(PeerInfo(0, args.asn, args.local, True), Encoding())
    return stream.messages() + [codec.build_eor(1, 1)]


def _v4_index(packed, base):
    """Indices of a packed run of /24s (4 octets each), or None if any
    prefix is not a /24."""
    import numpy as np

    a = np.frombuffer(packed, dtype=np.uint8).reshape(-1, 4)
    if (a[:, 0] != 24).any():
        return None
    v = (a[:, 1].astype(np.int64) << 16) | (a[:, 2].astype(np.int64) << 8) | a[:, 3]
    return v - (base >> 8)


def _p8_receiver(args):
    """Holds a bitmap of the 1M /24s; says "converged" once it holds exactly
    all of them and no UPDATE came for ``--quiet`` seconds (t = the last
    UPDATE's arrival)."""
    import numpy as np
    import uvloop

    from fastbgp.wire import codec

    async def main():
        loop = asyncio.get_running_loop()
        ctx = codec.Context(as4=True)
        held = np.zeros(args.count, dtype=np.uint8)
        keys = None
        if args.lengths != "24":
            from fastbgp.loadtest import gen

            keys = {k: i for i, k in enumerate(_dfz_plan(args.count, args.groups).keys(0))}
        st = {"n": 0, "ann": 0, "wd": 0, "bad": 0, "last": None, "updates": 0}

        def apply(packed, value):
            if not packed:
                return
            if keys is not None:
                try:
                    idx = np.array([keys.get(k, -1) for k in gen.split_keys(packed, 32, False)], dtype=np.int64)
                except ValueError:
                    idx = None
            else:
                idx = _v4_index(packed, PT.BASE) if len(packed) % 4 == 0 else None
            if idx is None or (idx < 0).any() or (idx >= args.count).any():
                st["bad"] += 1
                return
            before = held[idx]
            st["n"] += int((before == 0).sum()) if value else -int((before == 1).sum())
            held[idx] = value

        def on_update(body):
            st["last"] = time.monotonic()
            st["updates"] += 1
            p = codec.parse_update(body, ctx)
            st["ann"] += p.n_announced
            st["wd"] += p.n_withdrawn
            apply(p.withdrawn, 0)
            apply(p.nlri, 1)

        def check():
            now = time.monotonic()
            if st["last"] is not None and now - st["last"] >= args.quiet and st["n"] == args.count:
                PT.write_status(args.status, event="converged", last=st["last"], announced=st["ann"],
                                withdrawn=st["wd"], updates=st["updates"], held=st["n"], bad=st["bad"])
                return
            PT.write_status(args.status, event="progress", held=st["n"], announced=st["ann"], bad=st["bad"])
            loop.call_later(0.5, check)

        peer = PT.Peer(args.asn, int(ipaddress.IPv4Address(args.local)), args.status, on_update=on_update,
                       hold=args.hold)
        await PT.connect(loop, lambda: peer, args.target, args.port, args.local)
        loop.call_later(0.5, check)
        await peer.closed

    uvloop.run(main())


# ============================================================== P9: prefixes, policy, clients


def p9_kind(j):
    """The control community client j puts on its group 0, and the client
    it names: 0 = ``0:peer`` (not to peer), 1 = ``rs:peer`` (only to peer),
    2 = ``0:rs`` (to nobody), 3 = large ``rs:0:peer`` (not to peer)."""
    return j % 4, (j + 1) % P9_CLIENTS


def p9_expected(c, clients=None, per=P9_PREFIXES):
    """Bool array over every session's prefix index: what client c must
    hold in one family (the Euro-IX semantics, written independently of
    either route server's implementation)."""
    import numpy as np

    clients = P9_CLIENTS if clients is None else clients
    exp = np.ones(clients * per, dtype=bool)
    exp[c * per:(c + 1) * per] = False  # its own routes do not come back
    g0 = per // P9_GROUPS
    for j in range(clients):
        kind, peer = p9_kind(j)
        if j == c:
            continue
        hide = (kind in (0, 3) and peer == c) or (kind == 1 and peer != c) or kind == 2
        if hide:
            exp[j * per:j * per + g0] = False
    return exp


def p9_addresses(k):
    return "192.0.2.%d" % (10 + k), "2001:db8::%x" % (0x100 + k)


def _p9_messages(k, afi, v4, v6):
    import struct

    from fastbgp.wire import codec
    from fastbgp.wire.as4 import encode_attr, encode_segments

    asn = P9_AS0 + k
    per_g = P9_PREFIXES // P9_GROUPS
    msgs = []
    for g in range(P9_GROUPS):
        lo = k * P9_PREFIXES + g * per_g
        attrs = encode_attr(0x40, 1, b"\x00") + encode_attr(0x40, 2, encode_segments([(2, [asn])], 4))
        if afi == 1:
            attrs += encode_attr(0x40, 3, ipaddress.IPv4Address(v4).packed)
            nlri = b"".join(struct.pack(">BI", 24, PT.BASE + (i << 8))[:4] for i in range(lo, lo + per_g))
        else:
            nlri = b"".join(bytes([48]) + (V6_BASE + i).to_bytes(6, "big") for i in range(lo, lo + per_g))
        if g == 0:
            kind, peer = p9_kind(k)
            peer_as = P9_AS0 + peer
            if kind == 3:
                attrs += encode_attr(0xC0, 32, struct.pack(">III", PT.TARGET_AS, 0, peer_as))
            else:
                value = {0: (0, peer_as), 1: (PT.TARGET_AS, peer_as), 2: (0, PT.TARGET_AS)}[kind]
                attrs += encode_attr(0xC0, 8, struct.pack(">HH", *value))
        nh = None if afi == 1 else ipaddress.IPv6Address(v6).packed
        msgs += codec.pack_updates(attrs, nlri, codec.DEFAULT_CONTEXT, afi=afi, next_hop=nh)
    msgs.append(codec.build_eor(afi, 1))
    return msgs



def p9_control_left(attrs, rs=PT.TARGET_AS):
    """Whether a route's attributes still carry a Euro-IX control community
    (``0:*`` or ``rs:*`` standard, ``rs:*:*`` large): a route server must
    remove them before sending (the clients count such prefixes)."""
    from fastbgp.wire.as4 import attr_spans

    for _flags, t, vs, ve, _start in attr_spans(attrs):
        if t == 8:  # COMMUNITIES, RFC 1997: 4 octets each, the AS in the first two
            for i in range(vs, ve - 3, 4):
                if int.from_bytes(attrs[i:i + 2], "big") in (0, rs):
                    return True
        elif t == 32:  # LARGE_COMMUNITY, RFC 8092: 12 octets each, global administrator first
            for i in range(vs, ve - 11, 12):
                if int.from_bytes(attrs[i:i + 4], "big") == rs:
                    return True
    return False


class _Session:
    """One client session's view: a bitmap over every prefix index of its
    family, with running counts of held expected and unexpected prefixes."""

    def __init__(self, k, afi, exp):
        import numpy as np

        self.k, self.afi, self.exp = k, afi, exp
        self.want = int(exp.sum())
        self.held = np.zeros(len(exp), dtype=np.uint8)
        self.good = 0
        self.extra = 0
        self.malformed = 0
        self.done_at = None
        self.updates = 0  # UPDATE messages and prefixes announced to this session (churn shows here)
        self.announced = 0
        self.control_left = 0  # prefixes announced with a control community still on them

    def indices(self, packed):
        import numpy as np

        if self.afi == 1:
            idx = _v4_index(packed, PT.BASE) if len(packed) % 4 == 0 else None
        else:
            idx = None
            if len(packed) % 7 == 0:
                a = np.frombuffer(packed, dtype=np.uint8).reshape(-1, 7)
                if (a[:, 0] == 48).all():
                    v = np.zeros(len(a), dtype=np.int64)
                    for col in range(1, 7):
                        v = (v << 8) | a[:, col]
                    idx = v - V6_BASE
        if idx is None or (idx < 0).any() or (idx >= len(self.held)).any():
            self.malformed += 1
            return None
        return idx

    def apply(self, packed, value, now):
        if not packed:
            return
        idx = self.indices(packed)
        if idx is None:
            return
        if value:
            new = idx[self.held[idx] == 0]
            g = int(self.exp[new].sum())
            self.good += g
            self.extra += len(new) - g
        else:
            new = idx[self.held[idx] == 1]
            g = int(self.exp[new].sum())
            self.good -= g
            self.extra -= len(new) - g
        self.held[new] = value
        ok = self.good == self.want and self.extra == 0 and not self.malformed
        self.done_at = (self.done_at or now) if ok else None


def _p9_clients(args):
    """Every client session in one process (one namespace with 200 IPv4 and
    200 IPv6 addresses, an IXP LAN): connect, wait for SIGUSR1, announce,
    check."""
    import uvloop

    from fastbgp.wire import codec

    async def main():
        loop = asyncio.get_running_loop()
        ctx = codec.Context(as4=True)
        exps = [p9_expected(c) for c in range(P9_CLIENTS)]
        leaky = {}  # attribute block -> carries a control community (a few thousand distinct blocks)
        sessions, peers, msgs = [], [], []
        go = asyncio.Event()
        loop.add_signal_handler(signal.SIGUSR1, go.set)
        for k in range(P9_CLIENTS):
            v4, v6 = p9_addresses(k)
            for afi in (1, 2):
                s = _Session(k, afi, exps[k])

                def on_update(body, s=s):
                    now = time.monotonic()
                    p = codec.parse_update(body, ctx)
                    s.updates += 1
                    s.announced += p.n_announced
                    if p.n_announced and p.attrs:
                        left = leaky.get(p.attrs)
                        if left is None:
                            left = leaky[p.attrs] = p9_control_left(p.attrs)
                        if left:
                            s.control_left += p.n_announced
                    if s.afi == 1:
                        s.apply(p.withdrawn, 0, now)
                        s.apply(p.nlri, 1, now)
                    else:
                        if p.mp_unreach is not None:
                            s.apply(p.mp_unreach[2], 0, now)
                        if p.mp_reach is not None:
                            s.apply(p.mp_reach[3], 1, now)

                peer = PT.Peer(P9_AS0 + k, int(ipaddress.IPv4Address(v4)), args.status, on_update=on_update,
                               afi=afi)
                sessions.append(s)
                peers.append((peer, args.target if afi == 1 else args.target6, v4 if afi == 1 else v6))
                msgs.append(_p9_messages(k, afi, v4, v6))
        sem = asyncio.Semaphore(50)

        async def dial(peer, target, local):
            async with sem:
                await PT.connect(loop, lambda: peer, target, 179, local)

        await asyncio.gather(*(dial(*p) for p in peers))
        while not all(p.established for p, _, _ in peers):
            await asyncio.sleep(0.1)
        PT.write_status(args.status, event="all-established")
        await go.wait()
        PT.write_status(args.status, event="go")
        for (peer, _, _), m in zip(peers, msgs):
            peer.transport.writelines(m)
        while True:
            await asyncio.sleep(0.25)
            done = [s for s in sessions if s.done_at is not None]
            closed = sum(1 for p, _, _ in peers if p.closed.done())
            if len(done) == len(sessions):
                PT.write_status(args.status, event="done", last=max(s.done_at for s in done), sessions=len(done),
                                want=sum(s.want for s in sessions))
                break
            PT.write_status(args.status, event="progress", done=len(done), closed=closed,
                            control_left=sum(s.control_left for s in sessions),
                            extra=sum(s.extra for s in sessions), malformed=sum(s.malformed for s in sessions),
                            good=sum(s.good for s in sessions), want=sum(s.want for s in sessions))
        # What arrives after every session is exact (late duplicates) is
        # counted too: reported once the route server has been quiet 3 s.
        last = -1
        while True:
            await asyncio.sleep(3)
            n = sum(s.updates for s in sessions)
            if n == last:
                break
            last = n
        PT.write_status(args.status, event="totals", updates=n, announced=sum(s.announced for s in sessions),
                        control_left=sum(s.control_left for s in sessions),
                        exact=sum(1 for s in sessions if s.done_at is not None))
        await asyncio.Event().wait()

    uvloop.run(main())


# ============================================================== orchestration


class ScenarioTimeout(Exception):
    pass


def _wait(path, name, timeout, procs, scenario_timeout, what=""):
    try:
        return PT.wait_event(path, name, timeout, procs)
    except TimeoutError:
        prog = [e for e in PT.read_events(path) if e["event"] == "progress"]
        raise ScenarioTimeout("did not finish in %d s%s" % (scenario_timeout, (" (%s; last progress: %s)" % (
            what, {k: v for k, v in prog[-1].items() if k not in ("event", "t")}) if prog else ""))) from None


RSS_CAP_MB = 6 * 1024  # a target past this fails its scenario (the machine is shared)


def _peak(pid, until, sample):
    """Poll /proc while waiting: (peak VmRSS MB); VmHWM covers between polls."""
    best = 0.0
    while time.monotonic() < until:
        try:
            best = max(best, max(PT.rss_mb(pid)))
        except OSError:
            break
        if best > RSS_CAP_MB:
            raise ScenarioTimeout("stopped: target RSS over %d MB" % RSS_CAP_MB)
        if sample():
            break
        time.sleep(0.2)
    return best


def run_p8(kind, peers, count, groups, timeout, lengths):
    from fastbgp.testing import lab as L

    deadline = time.monotonic() + timeout
    with L.Lab() as lab:
        t = lab.add_host("t", ipv6=None)
        r = lab.add_host("r", ipv6=None)
        ss = [lab.add_host("s%d" % i, ipv6=None) for i in range(peers)]
        pid, tproc, stop = PT.start_target(kind, lab, t, ss, r, False)
        procs = [tproc]
        try:
            rstat = os.path.join(r.workdir, "status")
            procs.append(r.popen([sys.executable, ME, "--role", "p8-receiver", "--target", t.ipv4, "--local", r.ipv4,
                                  "--asn", str(PT.RECEIVER_AS), "--count", str(count), "--hold", str(P8_HOLD),
                                  "--quiet", str(P8_QUIET), "--lengths", lengths, "--status", rstat], cwd=ROOT))
            _wait(rstat, "established", 60, procs, timeout, "receiver session")
            sstats, sprocs = [], []
            for i, s in enumerate(ss):
                st = os.path.join(s.workdir, "status")
                sprocs.append(s.popen([sys.executable, ME, "--role", "p8-sender", "--target", t.ipv4, "--local",
                                       s.ipv4, "--asn", str(PT.SENDER_AS0 + i), "--count", str(count), "--groups",
                                       str(groups), "--hold", str(P8_HOLD), "--lengths", lengths, "--status", st],
                                      cwd=ROOT))
                sstats.append(st)
            procs += sprocs
            for st in sstats:
                _wait(st, "established", max(1, deadline - time.monotonic()), procs, timeout, "sender sessions")
            time.sleep(1.0)
            idle = PT.rss_mb(pid)
            pss_idle = PT.pss_mb(pid)
            for sp in sprocs:
                os.kill(sp.pid, signal.SIGUSR1)
            go = min(_wait(st, "go", 30, procs, timeout)["t"] for st in sstats)
            peak = _peak(pid, deadline, lambda: any(e["event"] == "converged" for e in PT.read_events(rstat)))
            conv = _wait(rstat, "converged", max(1, deadline - time.monotonic()), procs, timeout,
                         "receiver progress")
            loaded = PT.rss_mb(pid)
            pss = PT.pss_mb(pid)
            end = time.monotonic()
            gaps = []
            for st in sstats:
                evs = PT.read_events(st)
                est = [e["t"] for e in evs if e["event"] == "established"][0]
                ka = [e["at"] for e in evs if e["event"] == "keepalive" and e["at"] > est]
                marks = [est] + ka + [end]
                gaps.append(max(b - a for a, b in zip(marks, marks[1:])))
            paths = peers * count
            return {"target": kind, "seconds": conv["last"] - go, "rss_idle_mb": idle[0], "rss_mb": loaded[0],
                    "pss_idle_mb": pss_idle, "pss_mb": pss,
                    "peak_mb": max(peak, loaded[1]), "bytes_per_path": (loaded[0] - idle[0]) * 2**20 / paths,
                    "max_keepalive_gap": max(gaps), "announced": conv["announced"], "withdrawn": conv["withdrawn"],
                    "bad": conv["bad"]}
        finally:
            PT.stop_all(stop, procs)


def _p9_fastbgp_config(t):
    lines = [
        "[global]", "asn = %d" % PT.TARGET_AS, 'router-id = "%s"' % t.ipv4,
        'listen = ["%s", "[%s]:179"]' % (t.ipv4, t.ipv6),
        "[global.log]", 'level = "warning"',
        "[global.route-server]", "euro-ix-communities = true", "next-hop-check = true",
    ]
    for k in range(P9_CLIENTS):
        for addr in p9_addresses(k):
            lines += ["[[neighbors]]", 'address = "%s"' % addr, "peer-as = %d" % (P9_AS0 + k), "passive = true",
                      "route-server-client = true", 'default-import = "accept"', 'default-export = "accept"']
    return "\n".join(lines) + "\n"


class _ClientAddrs:
    """What tests/interop/test_route_server_ixp.py's BIRD route-server
    generator needs of a client host: its address per family."""

    def __init__(self, k):
        self.ipv4, self.ipv6 = p9_addresses(k)

    def addr(self, family):
        return self.ipv6 if family == "ipv6" else self.ipv4


def _p9_target(kind, t):
    workers = PT.fastbgp_workers(kind)
    if workers is not None:
        path = os.path.join(t.workdir, "fastbgp.toml")
        from fastbgp.testing.daemonlab import workers_toml

        argv = [sys.executable, os.path.join(HERE, "passthrough.py"), "--role", "fastbgp", "--config", path]
        # As ``fastbgp daemon`` runs it (passthrough.start_target).
        text = workers_toml(_p9_fastbgp_config(t), workers or 1, os.path.join(t.workdir, "api.sock"))
        with open(path, "w") as f:
            f.write(text)
        log = open(os.path.join(t.workdir, "fastbgp.log"), "ab")
        proc = t.popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        return proc.pid, proc, lambda: (proc.terminate(), proc.wait(10), log.close())
    if kind in ("frr", "openbgpd"):
        import p9_route_servers as RS

        cls = RS.FrrRouteServer if kind == "frr" else RS.OpenbgpdRouteServer
        d = cls(t, PT.TARGET_AS, {P9_AS0 + k: p9_addresses(k) for k in range(P9_CLIENTS)}).start()
        if kind == "frr":
            d.wait_accepting()
        return d.proc.pid, d.proc, d.stop
    if kind != "bird":
        raise ValueError(kind)
    sys.path.insert(0, os.path.join(ROOT, "tests", "interop"))
    import test_route_server_ixp as ixp  # the BIRD route-server filters of the interop test, reused

    # "ipv4": the interop test's transport with one session per family
    # (IPv4 and IPv6), as P9's clients connect.
    bird = ixp.bird_route_server(t, {P9_AS0 + k: _ClientAddrs(k) for k in range(P9_CLIENTS)}, "ipv4")
    for n in bird.neighbors:
        n.passive = True
    bird.start()
    return bird.proc.pid, bird.proc, bird.stop


def run_p9(kind, timeout):
    from fastbgp.testing import lab as L

    deadline = time.monotonic() + timeout
    with L.Lab() as lab:
        t = lab.add_host("t")
        c = lab.add_host("c")
        batch = os.path.join(c.workdir, "addrs")
        with open(batch, "w") as f:
            for k in range(P9_CLIENTS):
                v4, v6 = p9_addresses(k)
                f.write("addr add %s/24 dev eth0\naddr add %s/64 dev eth0 nodad\n" % (v4, v6))
        c.run(["ip", "-batch", batch], check=True)
        pid, tproc, stop = _p9_target(kind, t)
        # The bound starts once the target is up: FRR takes about two
        # minutes to read this configuration (not part of the figure).
        deadline = time.monotonic() + timeout
        procs = [tproc]
        try:
            cstat = os.path.join(c.workdir, "status")
            cp = c.popen([sys.executable, ME, "--role", "p9-clients", "--target", t.ipv4, "--target6", t.ipv6,
                          "--p9-clients", str(P9_CLIENTS), "--status", cstat], cwd=ROOT)
            procs.append(cp)
            _wait(cstat, "all-established", min(180, deadline - time.monotonic()), procs, timeout,
                  "sessions establishing")
            time.sleep(1.0)
            idle = PT.rss_mb(pid)
            pss_idle = PT.pss_mb(pid)
            cpu0 = PT.cpu_seconds(cp.pid)
            os.kill(cp.pid, signal.SIGUSR1)
            go = _wait(cstat, "go", 30, procs, timeout)["t"]
            try:
                peak = _peak(pid, deadline, lambda: any(e["event"] == "done" for e in PT.read_events(cstat)))
                done = _wait(cstat, "done", max(1, deadline - time.monotonic()), procs, timeout, "client sessions")
            except ScenarioTimeout as exc:
                raise ScenarioTimeout("%s (at %.0f s after go%s)" % (str(exc).split(" (")[0], time.monotonic() - go,
                                                                   _p9_progress(cstat))) from None
            loaded = PT.rss_mb(pid)
            pss = PT.pss_mb(pid)
            try:
                totals = _wait(cstat, "totals", 60, procs, timeout)
            except ScenarioTimeout:
                totals = {}
            settled = PT.pss_mb(pid)  # the route server quiet for 3 s (the clients' "totals")
            # The clients' own CPU over the run: near the run's length means
            # the clients, not the route server, set the pace.
            return {"target": kind, "seconds": done["last"] - go, "rss_idle_mb": idle[0], "rss_mb": loaded[0],
                    "pss_idle_mb": pss_idle, "pss_mb": pss, "pss_settled_mb": settled, "peak_mb": max(peak, loaded[1]),
                    "sessions": done["sessions"],
                    "clients_cpu_s": PT.cpu_seconds(cp.pid) - cpu0, "want": done["want"],
                    "updates": totals.get("updates"), "announced": totals.get("announced"),
                    "exact_after": totals.get("exact"), "control_left": totals.get("control_left")}
        finally:
            PT.stop_all(stop, procs)


def _p9_progress(cstat):
    """The clients' last progress line, for a run that did not finish:
    sessions exact, prefixes held (expected / unexpected), sessions lost."""
    prog = [e for e in PT.read_events(cstat) if e["event"] == "progress"]
    if not prog:
        return ""
    e = prog[-1]
    return "; then: %d of %d sessions exact, {:,} of {:,} expected prefixes held, {:,} unexpected, %d sessions " \
           "closed".format(e["good"], e["want"], e["extra"]) % (e["done"], 2 * P9_CLIENTS, e["closed"])


def run_passthrough(kind, shape, timeout, repeat):
    """P1/P4: bench/passthrough.py's cases, median of ``repeat`` runs."""
    runs = []
    for _ in range(repeat):
        try:
            res = PT.run_case(kind, shape, 1_000_000, 1000, 1 if shape == "passthrough" else 10, timeout)
        except TimeoutError:
            return {"target": kind, "error": "did not finish in %d s" % timeout}
        except RuntimeError as exc:
            return {"target": kind, "error": str(exc).splitlines()[0][:100]}
        res["peak_mb"] = res["hwm_mb"]
        runs.append(res)
    runs.sort(key=lambda r: r["seconds"])
    out = dict(runs[len(runs) // 2])
    out["all_seconds"] = [round(r["seconds"], 2) for r in runs]
    return out


# ============================================================== tables


BARS = {
    "P1": "time <= 0.6x BIRD, memory (PSS) <= BIRD",
    "P4": "time <= 0.2x BIRD, memory (PSS) <= BIRD",
    "P8": "time <= 0.2x BIRD, <= 25 B/path, keepalives on time",
    "P9": "(no figure in the issue) every session exact",
}


def _verdict(scn, r, bird):
    scn = scn[:2]  # P8DFZ is judged as P8
    if "error" in r:
        return "not met (%s)" % r["error"]
    if scn == "P9":
        if r.get("control_left"):
            return "not met: control communities sent"
        return "met" if r.get("sessions") == 2 * P9_CLIENTS else "not met"
    if r["target"] == "bird" or bird is None or "error" in bird:
        return ""
    fails = []
    limit = {"P1": 0.6, "P4": 0.2, "P8": 0.2}[scn]
    if r["seconds"] > limit * bird["seconds"]:
        fails.append("time %.2fx" % (r["seconds"] / bird["seconds"]))
    # Memory: the PSS summed over the daemon's processes (passthrough.pss_mb),
    # against BIRD's; for one process it is its RSS less its share of the
    # shared libraries.  The RSS sum is said beside it when it is over.
    rss_over = scn in ("P1", "P4") and r["rss_mb"] > bird["rss_mb"]
    if scn in ("P1", "P4") and r["pss_mb"] > bird["pss_mb"]:
        fails.append("memory (PSS %.2fx)" % (r["pss_mb"] / bird["pss_mb"]))
    if scn == "P8":
        if r["bytes_per_path"] > 25:
            fails.append("%.1f B/path" % r["bytes_per_path"])
        if r["max_keepalive_gap"] > 1.5 * P8_HOLD / 3:
            fails.append("keepalive gap %.1f s" % r["max_keepalive_gap"])
    note = " (summed RSS %.2fx BIRD's)" % (r["rss_mb"] / bird["rss_mb"]) if rss_over else ""
    return ("met" if not fails else "not met: " + ", ".join(fails)) + note


def table(label, title, rows):
    scn = label[:2]  # P8DFZ has P8's columns and bar
    bird = next((r for r in rows if r["target"] == "bird"), None)
    head = ["target", "version", "seconds", "RSS idle MB", "RSS loaded MB", "RSS peak MB", "PSS loaded MB",
            "PSS settled MB", "B/path",
            "time vs BIRD", "RSS vs BIRD", "PSS vs BIRD"]
    if scn == "P8":
        head.append("max keepalive gap s")
    if scn == "P9":
        head += ["clients' CPU s", "UPDATEs / prefixes sent to clients (needed)",
                 "prefixes sent with a control community"]
    head += ["bar", "verdict"]
    md = ["**%s** %s" % (label, title), "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        if "error" in r:
            cells = [r["target"], version_cell(r["target"]), r["error"]]
            cells += [""] * (len(head) - len(cells) - 2)
        else:
            ok_bird = bird is not None and "error" not in bird
            bpp = r.get("bytes_per_path")
            cells = [r["target"], version_cell(r["target"]),
                     "%.2f" % r["seconds"] + (" (runs %s)" % r["all_seconds"] if len(r.get("all_seconds", [])) > 1 else ""),
                     "%.0f" % r["rss_idle_mb"], "%.0f" % r["rss_mb"], "%.0f" % r["peak_mb"], "%.0f" % r["pss_mb"],
                     "%.0f" % r["pss_settled_mb"] if r.get("pss_settled_mb") is not None else "",
                     "%.1f" % bpp if bpp is not None else "",
                     "%.2fx" % (r["seconds"] / bird["seconds"]) if ok_bird else "",
                     "%.2fx" % (r["rss_mb"] / bird["rss_mb"]) if ok_bird else "",
                     "%.2fx" % (r["pss_mb"] / bird["pss_mb"]) if ok_bird else ""]
            if scn == "P8":
                cells.append("%.1f" % r["max_keepalive_gap"])
            if scn == "P9":
                cells.append("%.1f" % r["clients_cpu_s"])
                cells.append("{:,} / {:,} ({:,})".format(r["updates"] or 0, r["announced"] or 0, r["want"]))
                cells.append("{:,}".format(r["control_left"]) if r.get("control_left") is not None else "")
        cells += [BARS[scn], _verdict(scn, r, bird)]
        md.append("| " + " | ".join(cells) + " |")
    return "\n".join(md)


VERSIONS = {}  # target -> version, read once when the run starts (HEAD may move during a run)
START = {}  # "code": passthrough.code_state() when the run started


def version_cell(kind):
    """The version column: the one read at the start, and for fastbgp a
    warning when the code changed since (the run measured two versions)."""
    if kind.startswith("fastbgp") and "code" in START:
        return PT.version(kind, START["code"])
    return VERSIONS.get(kind) or PT.version(kind)


def main(argv=None):
    global P9_CLIENTS
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--role", choices=["p8-sender", "p8-receiver", "p9-clients"])
    ap.add_argument("--target")
    ap.add_argument("--target6")
    ap.add_argument("--port", type=int, default=179)
    ap.add_argument("--local")
    ap.add_argument("--asn", type=int)
    ap.add_argument("--count", type=int, default=1_000_000)
    ap.add_argument("--groups", type=int, default=1000)
    ap.add_argument("--hold", type=int, default=P8_HOLD)
    ap.add_argument("--quiet", type=float, default=P8_QUIET)
    ap.add_argument("--status")
    ap.add_argument("--lengths", default="24", choices=["24", "dfz"], help="P8 roles: /24s or the DFZ length mix")
    ap.add_argument("--targets", default="fastbgp,bird")
    ap.add_argument("--scenarios", default="p1,p4,p8,p8dfz,p9")
    ap.add_argument("--repeat", type=int, default=3, help="runs of P1 and P4 (median); P8 and P9 run once")
    ap.add_argument("--p8-peers", type=int, default=20)
    ap.add_argument("--p8-prefixes", type=int, default=1_000_000)
    ap.add_argument("--timeout", type=float, default=120, help="P1/P4 bound, seconds")
    ap.add_argument("--p8-timeout", type=float, default=300)
    ap.add_argument("--p9-timeout", type=float, default=300)
    ap.add_argument("--p9-clients", type=int, default=P9_CLIENTS,
                    help="P9 clients (default %d; fewer for a quick check of a target's config)" % P9_CLIENTS)
    ap.add_argument("--write", help="append the tables as Markdown to this file")
    args = ap.parse_args(argv)
    P9_CLIENTS = args.p9_clients
    if args.role == "p8-sender":
        return _p8_sender(args)
    if args.role == "p8-receiver":
        return _p8_receiver(args)
    if args.role == "p9-clients":
        return _p9_clients(args)
    from fastbgp.wire.bench import machine

    targets = args.targets.split(",")
    START["code"] = PT.code_state()
    for kind in targets:
        VERSIONS[kind] = PT.version(kind)
    out = []
    for scn in args.scenarios.lower().split(","):
        rows = []
        for kind in targets:
            try:
                if scn == "p1":
                    r = run_passthrough(kind, "passthrough", args.timeout, args.repeat)
                elif scn == "p4":
                    r = run_passthrough(kind, "route-server", args.timeout, args.repeat)
                elif scn in ("p8", "p8dfz"):
                    r = run_p8(kind, args.p8_peers, args.p8_prefixes, 1000, args.p8_timeout,
                               "dfz" if scn == "p8dfz" else "24")
                else:
                    r = run_p9(kind, args.p9_timeout)
            except (ScenarioTimeout, RuntimeError, TimeoutError) as exc:
                r = {"target": kind, "error": str(exc).splitlines()[0][:400]}
            print(scn, r, flush=True)
            rows.append(r)
        title = {
            "p1": "pass-through, 1M IPv4 /24 in 1,000 attribute groups, 1 sender -> target -> 1 receiver "
                  "(median of %d)" % args.repeat,
            "p4": "route server, 10 senders x 100k disjoint, started at one instant -> 1 receiver "
                  "(median of %d)" % args.repeat,
            "p8": "full tables, %d peers x the same %s /24s (own AS path each) -> 1 receiver = %sM paths; "
                  "B/path = (loaded - idle RSS) / paths; hold time %d s" % (
                      args.p8_peers, "{:,}".format(args.p8_prefixes), args.p8_peers * args.p8_prefixes / 1e6, P8_HOLD),
            "p8dfz": "full tables as P8, the DFZ length mix (fastbgp/loadtest scenario.DFZ_V4: 60%% /24, "
                     "12%% /22, 9%% /23, ... /12) instead of /24s, %d peers x %s prefixes" % (
                         args.p8_peers, "{:,}".format(args.p8_prefixes)),
            "p9": "IXP route server, %d clients x (IPv4 + IPv6 session) x %d prefixes, Euro-IX control "
                  "communities on 10%%, until every session holds exactly its expected set" % (
                      P9_CLIENTS, P9_PREFIXES),
        }[scn]
        md = table(scn.upper(), title, rows)
        print(md, flush=True)
        out.append(md)
    mach = machine()
    print(mach)
    if args.write:
        cmd = "python bench/scale.py " + " ".join(argv if argv is not None else sys.argv[1:])
        with open(args.write, "a") as f:
            f.write("\n## Scale: P1, P4, P8, P9 in one run (issue 12)\n\n")
            f.write("Command: `%s` (%s UTC). Machine: %s; shared with other jobs while it ran.\n\n"
                    % (cmd.strip(), datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"), mach))
            f.write("\n\n".join(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
