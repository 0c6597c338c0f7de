"""A fastbgp :class:`~fastbgp.session.speaker.Speaker` set up as a load-test target:
it accepts the emulated peers and the monitor (all passive neighbours) and
passes every UPDATE it accepts from a peer on to the monitor, re-encoded for
the monitor's session.  Used by the tests and for trying the tool on
loopback without installing a routing daemon; it is a pass-through, not a
RIB (no best-path selection), so what the monitor counts is what arrived."""

from __future__ import annotations

from fastbgp.wire import codec
from fastbgp.wire.constants import AFI_IPV4, AFI_IPV6, SAFI_UNICAST
from fastbgp.session.speaker import NeighborConfig, Speaker
from fastbgp.loadtest import gen

__all__ = ["PassThroughTarget"]


class PassThroughTarget:
    def __init__(self, asn=65000, address="127.0.0.1", router_id="192.0.2.250", hold_time=90, port=0, track=False):
        self.asn = asn
        self.address = address
        self.speaker = Speaker(asn, router_id, listen=[(address, port)])
        self.monitors: list = []
        self.peers: dict = {}
        self.hold_time = hold_time
        self.forwarded = 0
        # track: remember each peer's IPv4 prefixes and withdraw them
        # towards the monitor when its session goes down (what a RIB does
        # for prefixes no other peer announces).
        self.track = track
        self.owned: dict = {}

    @property
    def port(self):
        return self.speaker.port

    async def start(self):
        await self.speaker.start()
        return self

    async def stop(self):
        await self.speaker.stop()

    def add_monitor(self, address, asn, **kw):
        nb = self.speaker.add_neighbor(NeighborConfig(address=address, peer_as=asn, passive=True,
                                                      hold_time=self.hold_time, **kw))
        self.monitors.append(nb)
        return nb

    def add_peer(self, address, asn, **kw):
        kw.setdefault("hold_time", self.hold_time)
        nb = self.speaker.add_neighbor(NeighborConfig(address=address, peer_as=asn, passive=True, **kw))
        nb.subscribe_updates(self._forward)
        if self.track:
            nb.subscribe(self._state)
        self.peers[address] = nb
        return nb

    def _state(self, nb, old, new, reason):
        from fastbgp.session.fsm import State

        if old is State.ESTABLISHED and new is not State.ESTABLISHED:
            gone = self.owned.pop(nb.address, set())
            others = set()
            for keys in self.owned.values():
                others |= keys
            gone -= others
            if gone:
                self._send_all(lambda ctx: codec.pack_withdraws(b"".join(sorted(gone)), ctx))

    def _send_all(self, build):
        for mon in self.monitors:
            sess = mon.session
            if sess is not None and mon.established:
                msgs = build(sess.ctx)
                if msgs:
                    mon.send_messages(msgs)

    def _forward(self, nb, u):
        src = nb.session.ctx.addpath_rx if nb.session is not None else frozenset()
        if src:
            # RFC 7911: path ids are per session; the monitor gets plain NLRI.
            strip = lambda packed, w: b"".join(gen.split_keys(packed, w, True)) if packed else packed  # noqa: E731
            mpr = u.mp_reach
            mpu = u.mp_unreach
            u = u.__class__(strip(u.withdrawn, 32) if (1, 1) in src else u.withdrawn, u.attrs,
                            strip(u.nlri, 32) if (1, 1) in src else u.nlri, u.next_hop,
                            None if mpr is None else (mpr[0], mpr[1], mpr[2], strip(mpr[3], 128 if mpr[0] == 2 else 32)
                                                      if (mpr[0], mpr[1]) in src else mpr[3]),
                            None if mpu is None else (mpu[0], mpu[1], strip(mpu[2], 128 if mpu[0] == 2 else 32)
                                                      if (mpu[0], mpu[1]) in src else mpu[2]),
                            u.n_announced, u.n_withdrawn)
        if self.track:
            own = self.owned.setdefault(nb.address, set())
            if u.nlri:
                own.update(gen.split_keys(u.nlri))
            if u.withdrawn:
                own.difference_update(gen.split_keys(u.withdrawn))
        for mon in self.monitors:
            sess = mon.session
            if sess is None or not mon.established:
                continue
            ctx = sess.ctx
            msgs = []
            if u.withdrawn:
                msgs += codec.pack_withdraws(u.withdrawn, ctx)
            if u.mp_unreach is not None and u.mp_unreach[2]:
                a, s, nl = u.mp_unreach
                msgs += codec.pack_withdraws(nl, ctx, a, s)
            if u.nlri:
                msgs += codec.pack_updates(u.attrs, u.nlri, ctx)
            if u.mp_reach is not None and u.mp_reach[3]:
                a, s, nh, nl = u.mp_reach
                if (a, s) in ((AFI_IPV4, SAFI_UNICAST), (AFI_IPV6, SAFI_UNICAST)):
                    msgs += codec.pack_updates(u.attrs, nl, ctx, a, s, nh)
            if msgs:
                self.forwarded += len(msgs)
                mon.send_messages(msgs)
