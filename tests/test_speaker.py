"""Speaker / NeighborConfig API: configuration validation, prefix packing,
Adj-RIB-Out grouping, subscriptions and argument checking.  Session
behaviour is in test_session.py."""

import ipaddress

import msgspec
import pytest

from fastbgp.wire import codec
from fastbgp.wire.constants import IPV4_UNICAST, IPV6_UNICAST
from fastbgp.session.fsm import State
from fastbgp.session.routes import group_prefixes, key_prefix, split_nlri
from fastbgp.session.sink import RouteSink
from fastbgp.session.speaker import (
    GracefulRestartConfig,
    NeighborConfig,
    RibOut,
    Speaker,
    pack_prefix,
)
from fastbgp.wire.families import family_name, parse_family


# ----------------------------------------------------------------------------- configuration


def test_neighbor_config_defaults_and_normalisation():
    c = NeighborConfig(address="2001:DB8::1", peer_as=65002)
    assert c.address == "2001:db8::1"
    assert c.family_tuples == [IPV4_UNICAST, IPV6_UNICAST]
    assert c.hold_time == 90 and c.keepalive is None and not c.passive
    c = NeighborConfig(address="192.0.2.2", peer_as=65002, graceful_restart=True, addpath_send=True,
                       addpath_receive=["ipv6"], role="Customer")
    assert c.graceful_restart == GracefulRestartConfig()
    assert c.addpath_send_families == {IPV4_UNICAST, IPV6_UNICAST}
    assert c.addpath_receive_families == {IPV6_UNICAST}
    assert c.role_code == 3


@pytest.mark.parametrize(
    "kw,match",
    [
        (dict(hold_time=2), "hold_time"),
        (dict(hold_time=1), "hold_time"),
        (dict(peer_as=0), "peer_as"),
        (dict(families=["ipv5"]), "unknown address family"),
        (dict(role="boss"), "unknown BGP role"),
        (dict(local_address="::1"), "family"),
        (dict(md5_password="x" * 81), "md5_password"),
        (dict(ttl=0), "ttl"),
        (dict(port=0), "port"),
        (dict(graceful_restart=dict(restart_time=5000)), "restart time"),
    ],
)
def test_neighbor_config_rejects(kw, match):
    base = dict(address="192.0.2.2", peer_as=65002)
    base.update(kw)
    with pytest.raises(ValueError, match=match):
        gr = base.get("graceful_restart")
        if isinstance(gr, dict):
            base["graceful_restart"] = GracefulRestartConfig(**gr)
        NeighborConfig(**base)


def test_neighbor_config_from_json_forbids_unknown_fields():
    raw = b'{"address": "192.0.2.2", "peer_as": 65002, "hold_time": 30, "families": ["ipv4-unicast"]}'
    c = msgspec.json.decode(raw, type=NeighborConfig)
    assert c.hold_time == 30 and c.family_tuples == [IPV4_UNICAST]
    with pytest.raises(msgspec.ValidationError, match="unknown field"):
        msgspec.json.decode(b'{"address": "192.0.2.2", "peer_as": 1, "holdtime": 3}', type=NeighborConfig)
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(b'{"address": "192.0.2.2", "peer_as": 1, "hold_time": 2}', type=NeighborConfig)


def test_speaker_validation():
    with pytest.raises(ValueError):
        Speaker(0, "10.0.0.1")
    with pytest.raises(ValueError):
        Speaker(65001, "0.0.0.0")
    s = Speaker(65001, "10.0.0.1")
    s.add_neighbor(NeighborConfig(address="192.0.2.2", peer_as=65002))
    with pytest.raises(ValueError, match="already configured"):
        s.add_neighbor(NeighborConfig(address="192.0.2.2", peer_as=65003))
    with pytest.raises(TypeError):
        s.add_neighbor({"address": "192.0.2.3", "peer_as": 1})
    # A 4-octet local AS needs the 4-octet AS capability.
    big = Speaker(4200000000, "10.0.0.1")
    with pytest.raises(ValueError, match="4-octet"):
        big.add_neighbor(NeighborConfig(address="192.0.2.2", peer_as=65002, four_octet_as=False))


def test_families():
    assert parse_family("ipv4") == IPV4_UNICAST
    assert parse_family("IPv6-Unicast") == IPV6_UNICAST
    assert parse_family((2, 2)) == (2, 2)
    assert family_name((1, 1)) == "ipv4-unicast"
    assert family_name((25, 70)) == "afi25-safi70"


# ----------------------------------------------------------------------------- prefixes


def test_pack_prefix_matches_codec():
    cases = ["10.0.0.0/8", "192.0.2.128/25", "0.0.0.0/0", "203.0.113.7/32", "2001:db8::/32", "::/0",
             "2001:db8:ffff::1/128"]
    for text in cases:
        afi, packed = pack_prefix(text)
        ((_pid, _addr, plen),) = codec.unpack_prefixes(packed, afi)
        assert plen == int(text.split("/")[1])
        assert key_prefix(packed, afi, False) == (str(ipaddress.ip_network(text, strict=False)), None)
    # Host bits are cleared (RFC 4271 §4.3).
    assert pack_prefix("10.1.2.3/24") == pack_prefix("10.1.2.0/24")
    assert key_prefix(pack_prefix("10.1.2.3/23")[1], 1, False) == ("10.1.2.0/23", None)
    assert key_prefix(pack_prefix("2001:db8::1/48")[1], 2, False) == ("2001:db8::/48", None)
    with pytest.raises(ValueError):
        pack_prefix("10.0.0.0/33")
    with pytest.raises(ValueError):
        pack_prefix("banana/8")


def test_split_nlri_normalises_host_bits_and_path_ids():
    packed = b"\x18\x0a\x00\x01" + b"\x17\x0a\x00\x03" + b"\x00"
    keys = split_nlri(packed, False)
    assert keys == [b"\x18\x0a\x00\x01", b"\x17\x0a\x00\x02", b"\x00"]
    ap = b"\x00\x00\x00\x07\x10\x0a\x01" + b"\x00\x00\x00\x08\x20\x01\x02\x03\x04"
    keys = split_nlri(ap, True)
    assert [key_prefix(k, 1, True) for k in keys] == [("10.1.0.0/16", 7), ("1.2.3.4/32", 8)]


def test_group_prefixes_by_family_and_path_id():
    g = group_prefixes(["10.0.0.0/8", "2001:db8::/32", "10.1.0.0/16"], path_id=5)
    assert set(g) == {IPV4_UNICAST, IPV6_UNICAST}
    assert all(k[:4] == b"\x00\x00\x00\x05" for k in g[IPV4_UNICAST])
    assert len(g[IPV4_UNICAST]) == 2


def test_rib_out_groups_are_shared_and_invalidated():
    rib = RibOut()
    g = group_prefixes(["10.%d.0.0/16" % i for i in range(10)])
    rib.set(IPV4_UNICAST, g[IPV4_UNICAST][:5], "spec-a")
    rib.set(IPV4_UNICAST, g[IPV4_UNICAST][5:], "spec-b")
    groups = rib.groups()
    assert groups is rib.groups()  # cached
    assert sorted(len(b.keys) for b in groups[IPV4_UNICAST]) == [5, 5]
    b = groups[IPV4_UNICAST][0]
    assert b.packed(False) is b.packed(False)
    assert len(b.packed(True)) == len(b.packed(False)) + 4 * 5
    assert rib.remove(IPV4_UNICAST, g[IPV4_UNICAST][:2]) == g[IPV4_UNICAST][:2]
    assert rib.groups() is not groups
    assert rib.count() == 8
    assert "10.9.0.0/16" in rib.prefixes()


def test_announce_argument_checks():
    s = Speaker(65001, "10.0.0.1")
    with pytest.raises(ValueError, match="IPv4 next hop"):
        s.announce(["2001:db8::/32"], "192.0.2.1")
    # RFC 8950: an IPv4 route may have an IPv6 next hop; whether a session
    # takes it is decided when it is encoded for that session.
    assert s.announce(["10.9.0.0/16"], "2001:db8::1") == 1
    assert s.withdraw(["10.9.0.0/16"]) == 1
    with pytest.raises(ValueError):
        s.announce(["10.0.0.0/8"], "192.0.2.1", origin="bogus")
    with pytest.raises(ValueError):
        s.announce(["10.0.0.0/8"], "192.0.2.1", large_communities=["1:2"])
    with pytest.raises(ValueError):
        s.announce(["10.0.0.0/8"], "192.0.2.1", communities=["70000:1"])
    assert s.announce(["10.0.0.0/8", "10.1.0.0/16"], "192.0.2.1", communities=["no-export", 65001 << 16 | 5]) == 2
    assert sorted(s.announced()) == ["10.0.0.0/8", "10.1.0.0/16"]
    assert s.withdraw(["10.0.0.0/8", "10.99.0.0/16"]) == 1
    assert s.announced() == ["10.1.0.0/16"]


def test_neighbor_actions_need_a_started_speaker():
    s = Speaker(65001, "10.0.0.1")
    n = s.add_neighbor(NeighborConfig(address="192.0.2.2", peer_as=65002))
    assert n.state is State.IDLE and not n.established and n.negotiated is None
    with pytest.raises(RuntimeError):
        n.enable()
    with pytest.raises(RuntimeError):
        n.request_refresh()


# ----------------------------------------------------------------------------- running speaker


def test_subscriptions_history_and_per_neighbor_routes(run):
    async def main():
        a = Speaker(65001, "10.0.0.1", listen=[("127.0.0.1", 0)])
        b = Speaker(65002, "10.0.0.2", listen=[("127.0.0.2", 0)])
        events = []
        b.subscribe(lambda n, old, new, reason: events.append((n.address, old, new, reason)))
        async with a, b:
            nb = b.add_neighbor(NeighborConfig(address="127.0.0.1", peer_as=65001, passive=True))
            na = a.add_neighbor(NeighborConfig(address="127.0.0.2", peer_as=65002, port=b.port,
                                               local_address="127.0.0.1", idle_hold_time=0.1))
            await nb.wait_established(5)
            assert [e[2] for e in events] == [State.ACTIVE, State.OPENSENT, State.OPENCONFIRM, State.ESTABLISHED]
            assert [h.new for h in nb.history][-1] is State.ESTABLISHED
            updates = []
            unsub = nb.subscribe_updates(lambda n, parsed: updates.append(parsed))
            # Per-neighbour announcements override speaker-wide ones.
            a.announce(["10.0.0.0/24", "10.0.1.0/24"], "127.0.0.1", med=1)
            na.announce(["10.0.1.0/24"], "127.0.0.1", med=2)
            await nb.wait_received(2, 3)
            await nb.wait_for(lambda: nb.received()["10.0.1.0/24"].med == 2, 3)
            # Withdrawing the per-neighbour route falls back to the global one.
            na.withdraw(["10.0.1.0/24"])
            await nb.wait_for(lambda: nb.received()["10.0.1.0/24"].med == 1, 3)
            assert updates
            unsub()
            await na.flush(2)
            assert na.uptime is not None and na.remote_id == "10.0.0.2"
        # Stopping: Cease 6/2 on the way out.
        assert nb.last_notification_received is not None or na.last_notification_received is not None
        assert any(e[2] is State.IDLE for e in events)

    run(main())


def test_ipv6_session_over_ipv6_transport(run):
    async def main():
        a = Speaker(65001, "10.0.0.1", listen=[("::1", 0)])
        b = Speaker(65002, "10.0.0.2")
        async with a, b:
            na = a.add_neighbor(NeighborConfig(address="::1", peer_as=65002, passive=True))
            b.add_neighbor(NeighborConfig(address="::1", peer_as=65001, port=a.port, idle_hold_time=0.1))
            await na.wait_established(5)
            b.announce(["2001:db8:5::/48"])  # next-hop-self: ::1
            b.announce(["198.51.100.0/24"], "192.0.2.1")
            await na.wait_received(2, 3)
            got = na.received()
            assert got["2001:db8:5::/48"].next_hop == "::1"
            assert got["198.51.100.0/24"].next_hop == "192.0.2.1"

    run(main())


class RecordingSink(RouteSink):
    """A route sink that only counts: what the RouteSink contract delivers."""

    def __init__(self, nb):
        self.nb = nb
        self.events = []
        self.announced = 0

    def session_up(self, session):
        self.events.append("up")

    def send_table(self, session):
        self.events.append("table")
        self.nb.send_messages([codec.build_eor(*fam) for fam in sorted(session.negotiated.families)])

    def update_received(self, session, parsed):
        self.announced += parsed.n_announced
        if parsed.is_eor:
            mpu = parsed.mp_unreach
            self.nb.eor_received(IPV4_UNICAST if mpu is None else (mpu[0], mpu[1]))

    def route_refresh(self, session, family, subtype):
        self.events.append(("refresh", family, subtype))
        self.nb.check_waiters()

    def routes_cleared(self, session, keep):
        self.events.append(("cleared", set(keep)))

    def stale_families(self):
        return ()

    def end_of_rib(self, family):
        self.events.append(("eor", family))

    def restart_reestablished(self, session, forwarding):
        pass

    def stale_expired(self, why):
        pass

    @property
    def received_count(self):
        return self.announced


def test_route_sink_factory_and_unknown_peer_hook(run):
    async def main():
        added = []

        def unknown(conn):
            if conn.peer_address != "127.0.0.1":
                return None
            nb = b.add_neighbor(NeighborConfig(address=conn.peer_address, peer_as=65001, passive=True))
            added.append(nb)
            return nb

        a = Speaker(65001, "10.0.0.1")
        b = Speaker(65002, "10.0.0.2", listen=[("127.0.0.2", 0)], sink_factory=RecordingSink,
                    on_unknown_peer=unknown)
        async with a, b:
            na = a.add_neighbor(NeighborConfig(address="127.0.0.2", peer_as=65002, port=b.port,
                                               local_address="127.0.0.1", idle_hold_time=0.1))
            await na.wait_established(5)
            (nb,) = added
            sink = nb.sink
            assert isinstance(sink, RecordingSink) and sink.events[:2] == ["up", "table"]
            # The sink's End-of-RIBs (send_messages) reach A; A's reach the sink.
            await na.wait_end_of_rib(timeout=3)
            await nb.wait_end_of_rib(timeout=3)
            assert ("eor", IPV4_UNICAST) in sink.events
            a.announce(["10.0.0.0/24", "10.0.1.0/24"], "127.0.0.1")
            await nb.wait_received(2, 3)
            assert nb.received() == {}  # this sink keeps no per-prefix view
            na.request_refresh("ipv4")
            await nb.wait_for(lambda: ("refresh", IPV4_UNICAST, 0) in sink.events, 3)
            na.disable()
            await nb.wait_for(lambda: any(e[0] == "cleared" for e in sink.events if isinstance(e, tuple)), 3)

    run(main())


def test_route_sink_must_implement_the_contract():
    class Partial(RouteSink):
        def send_table(self, session):
            pass

    with pytest.raises(TypeError):
        Partial()
