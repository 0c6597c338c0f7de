"""RFC 8097 origin validation state signalling in the daemon: the extended
community (type 0x43, sub-type 0x00) added on export to the iBGP neighbours
configured with ``rpki-signal``, never sent elsewhere (and no non-transitive
extended community to eBGP peers, RFC 4360 §2), and trusted on receipt from
iBGP neighbours configured with ``rpki-accept-signal``.

In process: the daemon with library Speakers on loopback (the
``test_daemon`` helpers) and a real rpki-client JSON file."""

import pathlib
import re

import pytest

from fastbgp.config.checks import load_config
from fastbgp.config.errors import ConfigError
from fastbgp.rpki.community import export_ext, ovs_community, received_state, with_state
from fastbgp.rpki.vrp import INVALID, NOT_FOUND, VALID
from fastbgp.testing import lab as L
from fastbgp.testing.daemonlab import LabDaemon, global_toml, require
from fastbgp.testing.daemonlab import neighbor_toml as lab_neighbor
from fastbgp.wire.as4 import split_attrs
from fastbgp.wire.communities import parse_ext_community
from test_daemon import DUT, addr, neighbor_toml, peer, until
from test_rpki_daemon import RPKI_POLICY, write_roas

OVS = {VALID: 0x4300000000000000, NOT_FOUND: 0x4300000000000001, INVALID: 0x4300000000000002}  # RFC 8097 §2
RT = 0x0002FDE800000001  # route target 65000:1, transitive (RFC 4360 §4)
NT = 0x4102FDE800000007  # a non-transitive extended community (T bit set, RFC 4360 §2)


def ext_of(route):
    return sorted(parse_ext_community(c) for c in route.ext_communities)


def ovs_of(route):
    return [c for c in ext_of(route) if c >> 48 == 0x4300]


# ----------------------------------------------------------------------------- the community


def test_state_community_in_an_attribute_block():
    origin = b"\x40\x01\x01\x00"
    assert ovs_community(VALID) == OVS[VALID] and ovs_community(INVALID) == OVS[INVALID]
    marked = with_state(origin, INVALID)
    assert received_state(marked) == INVALID and received_state(origin) is None
    again = with_state(marked, VALID)  # replaced, not added
    ext = [v for _f, t, v in split_attrs(again) if t == 16]
    assert ext == [OVS[VALID].to_bytes(8, "big")] and received_state(again) == VALID
    # Two disagreeing states, or an undefined one (RFC 8097 §2): none.
    both = b"\xc0\x10\x10" + OVS[VALID].to_bytes(8, "big") + OVS[INVALID].to_bytes(8, "big")
    assert received_state(both) is None
    assert received_state(b"\xc0\x10\x08" + (0x4300000000000003).to_bytes(8, "big")) is None


def test_export_ext_strips_by_peer_kind():
    value = b"".join(c.to_bytes(8, "big") for c in (RT, NT, OVS[INVALID]))
    assert export_ext(value, external=False, signal=True) is value
    assert export_ext(value, external=False, signal=False) == RT.to_bytes(8, "big") + NT.to_bytes(8, "big")
    # RFC 4360 §2 / RFC 8097 §2: nothing non-transitive leaves the AS.
    assert export_ext(value, external=True, signal=True) == RT.to_bytes(8, "big")
    assert export_ext(NT.to_bytes(8, "big"), external=True, signal=False) is None


@pytest.mark.parametrize("key", ["rpki-signal", "rpki-accept-signal"])
def test_signal_needs_ibgp(key):
    with pytest.raises(ConfigError) as e:
        load_config('[global]\nasn = 65000\nrouter-id = "10.0.0.1"\n[rpki]\ncaches = [{ address = "192.0.2.1" }]\n'
                    + neighbor_toml("192.0.2.7", 65001, **{key: True}))
    assert any(p == "neighbors[0]." + key and "iBGP" in m for p, m in e.value.errors), e.value.errors
    cfg = load_config('[global]\nasn = 65000\nrouter-id = "10.0.0.1"\n[rpki]\ncaches = [{ address = "192.0.2.1" }]\n'
                      + neighbor_toml("192.0.2.7", 65000, **{key: True}))
    assert cfg.neighbors[0].rpki_signal is (key == "rpki-signal")


# ----------------------------------------------------------------------------- the daemon


def test_signal_to_ibgp_that_asked_only(tmp_path, run):
    """A (eBGP) sends a valid, an invalid and a not-found route in one
    UPDATE with a transitive and a non-transitive extended community.
    S (iBGP, rpki-signal) gets each with its state; Q (iBGP) gets no state
    community but the non-transitive one; E (eBGP) only the transitive one.
    A VRP change re-signals the state to S."""
    vrps = tmp_path / "vrps.json"
    write_roas(vrps, [("10.95.0.0/24", 24, 65001), ("10.95.1.0/24", 24, 64999)])
    a_addr, s_addr, q_addr, e_addr = addr(), addr(), addr(), addr()

    async def main():
        dut = DUT(path=tmp_path / "fastbgp.toml", extra='[rpki]\nfile = "%s"\n' % vrps,
                  neighbors=[neighbor_toml(a_addr, 65001), neighbor_toml(s_addr, 65000, **{"rpki-signal": True}),
                             neighbor_toml(q_addr, 65000), neighbor_toml(e_addr, 65003)])
        d = await dut.start()
        peers = [await peer(dut, asn, ad) for asn, ad in ((65001, a_addr), (65000, s_addr), (65000, q_addr),
                                                          (65003, e_addr))]
        (a, na), (s, ns), (q, nq), (e, ne) = peers
        for _sp, nb in peers:
            await nb.wait_established(5)
        want = {"10.95.0.0/24": VALID, "10.95.1.0/24": INVALID, "10.95.2.0/24": NOT_FOUND}
        a.announce(list(want), ext_communities=[RT, NT])
        for nb in (ns, nq, ne):
            await until(lambda nb=nb: set(nb.received()) == set(want), what="three routes at every peer")
        got = ns.received()
        assert {p: ovs_of(r) for p, r in got.items()} == {p: [OVS[st]] for p, st in want.items()}
        assert all(RT in ext_of(r) and NT in ext_of(r) for r in got.values())
        for p, r in nq.received().items():
            assert ext_of(r) == sorted([RT, NT]), p
        for p, r in ne.received().items():
            assert ext_of(r) == [RT], p
        # The invalid route turns valid: re-validated and signalled again.
        write_roas(vrps, [("10.95.0.0/24", 24, 65001), ("10.95.1.0/24", 24, 65001)])
        assert d.rpki.load_file()
        await until(lambda: ovs_of(ns.received()["10.95.1.0/24"]) == [OVS[VALID]], what="new state at S")
        assert not ovs_of(nq.received()["10.95.1.0/24"])
        for sp, _nb in peers:
            await sp.stop()
        await dut.stop()

    run(main())


def test_accept_signal_from_ibgp(tmp_path, run):
    """B (iBGP, rpki-accept-signal) says its route is invalid: the rov
    import policy rejects it although the VRPs say not-found; the same
    route from C (iBGP, not trusted) is validated here and accepted.  A
    route from B without the community is validated here."""
    vrps = tmp_path / "vrps.json"
    write_roas(vrps, [("10.97.9.0/24", 24, 65001)])
    b_addr, c_addr, x_addr = addr(), addr(), addr()

    async def main():
        dut = DUT(path=tmp_path / "fastbgp.toml", extra='[rpki]\nfile = "%s"\n%s' % (vrps, RPKI_POLICY),
                  neighbors=[neighbor_toml(b_addr, 65000, **{"rpki-accept-signal": True, "import-policy": ["rov"]}),
                             neighbor_toml(c_addr, 65000, **{"import-policy": ["rov"]}),
                             neighbor_toml(x_addr, 65009)])
        d = await dut.start()
        peers = [await peer(dut, asn, ad) for asn, ad in ((65000, b_addr), (65000, c_addr), (65009, x_addr))]
        (b, nb_), (c, nc), (x, nx) = peers
        for _sp, n in peers:
            await n.wait_established(5)
        b.announce(["10.97.0.0/24"], as_path=[65001], ext_communities=[OVS[INVALID]])
        b.announce(["10.97.1.0/24"], as_path=[65001], ext_communities=[OVS[VALID]])
        b.announce(["10.97.9.0/24"], as_path=[65002])  # no community: validated here, invalid
        c.announce(["10.97.2.0/24"], as_path=[65001], ext_communities=[OVS[INVALID]])
        await until(lambda: {"10.97.1.0/24", "10.97.2.0/24"} <= set(nx.received()), what="accepted routes at X")
        assert "10.97.0.0/24" not in nx.received() and "10.97.9.0/24" not in nx.received()
        assert d.rib("ipv4-unicast", "10.97.1.0/24")[0].local_pref == 200  # trusted "valid"
        assert d.rib("ipv4-unicast", "10.97.2.0/24")[0].local_pref == 100  # not trusted: not-found here
        assert all(not ovs_of(r) for r in nx.received().values())  # never to eBGP
        for sp, _n in peers:
            await sp.stop()
        await dut.stop()

    run(main())


def test_signal_turned_on_by_reload(tmp_path, run):
    """A reload gives S rpki-signal: S's session restarts, the routes
    already held get their state (A is asked for its routes again,
    ROUTE-REFRESH) and S receives them with it."""
    vrps = tmp_path / "vrps.json"
    write_roas(vrps, [("10.86.0.0/24", 24, 65001)])
    a_addr, s_addr = addr(), addr()

    async def main():
        dut = DUT(path=tmp_path / "fastbgp.toml", extra='[rpki]\nfile = "%s"\n' % vrps,
                  neighbors=[neighbor_toml(a_addr, 65001), neighbor_toml(s_addr, 65000)])
        d = await dut.start()
        (a, na), (s, ns) = await peer(dut, 65001, a_addr), await peer(dut, 65000, s_addr)
        await na.wait_established(5)
        await ns.wait_established(5)
        a.announce(["10.86.0.0/24", "10.86.1.0/24"])
        await until(lambda: len(ns.received()) == 2, what="two routes at S")
        assert all(not ovs_of(r) for r in ns.received().values())
        dut.neighbors[1] = neighbor_toml(s_addr, 65000, **{"rpki-signal": True})
        dut.path.write_text(dut.text())
        await d.reload()
        await until(lambda: {p: ovs_of(r) for p, r in ns.received().items()}
                    == {"10.86.0.0/24": [OVS[VALID]], "10.86.1.0/24": [OVS[NOT_FOUND]]},
                    timeout=10, what="the states at S after the reload")
        for sp in (a, s):
            await sp.stop()
        await dut.stop()

    run(main())


# ----------------------------------------------------------------------------- with BIRD 2 in the lab

LAB_AS = 64500
LAB_VALID, LAB_INVALID, LAB_NOT_FOUND = "198.51.100.0/25", "198.51.100.128/25", "203.0.113.0/24"
SAID_INVALID, SAID_VALID = "203.0.113.128/26", "203.0.113.192/26"  # from the iBGP BIRD, with the community


def _lab_config(dut, vrps, b1, b2, b3):
    return (global_toml(LAB_AS, dut, "[rpki]", 'file = "%s"' % vrps, RPKI_POLICY)
            + lab_neighbor(b1.ipv4, 65001)
            + lab_neighbor(b2.ipv4, LAB_AS, "rpki-signal = true", "rpki-accept-signal = true",
                           'import-policy = ["rov"]')
            + lab_neighbor(b3.ipv4, 65003))


def _bird_ext(bird, prefix):
    """The RFC 8097 states BIRD holds for ``prefix`` (its ``show route``
    prints our community as ``(generic, 0x43000000, 0xN)``), or None when
    it has no route for it."""
    out = bird.birdc("show", "route", "for", prefix, "all").stdout
    if prefix not in out:
        return None
    ext = re.findall(r"BGP\.ext_community:(.*)", out)
    return sorted(int(v, 16) for line in ext for v in re.findall(r"\(generic, 0x43000000, 0x([0-9a-f]+)\)", line))


@pytest.mark.interop
@pytest.mark.slow
@pytest.mark.timeout(120)
def test_signal_with_bird_peers(tmp_path):
    """fastbgp between BIRD 2 peers: the iBGP BIRD (rpki-signal) receives
    each route with its RFC 8097 state, the eBGP BIRD with none; the
    state the iBGP BIRD puts on its own routes is trusted
    (rpki-accept-signal): "invalid" is rejected by the rov import policy
    (the VRPs alone say not-found), "valid" is passed on."""
    require(L.Bird)
    with L.Lab() as lab:
        dut, h1, h2, h3 = (lab.add_host(n) for n in ("dut", "b1", "b2", "b3"))
        vrps = pathlib.Path(dut.workdir) / "vrps.json"
        write_roas(vrps, [(LAB_VALID, 25, 65001), (LAB_INVALID, 25, 64999)])
        with LabDaemon(dut, _lab_config(dut, vrps, h1, h2, h3), loop="asyncio") as fb:
            b1 = L.Bird(h1, 65001, neighbors=[L.Neighbor(dut.ipv4, LAB_AS)],
                        routes=[L.Route(LAB_VALID), L.Route(LAB_INVALID), L.Route(LAB_NOT_FOUND)]).start()
            export = ("if net = %s then bgp_ext_community.add((generic, 0x43000000, 2)); "
                      "if net = %s then bgp_ext_community.add((generic, 0x43000000, 0)); accept;"
                      % (SAID_INVALID, SAID_VALID))
            b2 = L.Bird(h2, LAB_AS, neighbors=[L.Neighbor(dut.ipv4, LAB_AS, options={"extra": "direct;",
                                                                                      "export": export})],
                        routes=[L.Route(SAID_INVALID, as_path=(65001,)), L.Route(SAID_VALID, as_path=(65001,))]).start()
            b3 = L.Bird(h3, 65003, neighbors=[L.Neighbor(dut.ipv4, LAB_AS)]).start()
            for b in (b1, b2, b3):
                b.wait_established(dut.ipv4, timeout=40)
            want = {LAB_VALID: [0], LAB_INVALID: [2], LAB_NOT_FOUND: [1]}  # RFC 8097 §2 values
            L.wait_for(lambda: all(_bird_ext(b2, p) == v for p, v in want.items()), 30,
                       what="the states at the iBGP BIRD", on_timeout=lambda: {p: _bird_ext(b2, p) for p in want})
            b3.wait_route(SAID_VALID, timeout=30)
            for p in list(want) + [SAID_VALID]:
                L.wait_for(lambda p=p: _bird_ext(b3, p) == [], 10, what="%s at the eBGP BIRD without state" % p,
                           on_timeout=lambda p=p: b3.birdc("show", "route", "for", p, "all").stdout)
            assert _bird_ext(b3, SAID_INVALID) is None  # trusted "invalid": rejected by rov
            assert "Traceback" not in fb.log_text()
