"""RPKI in the daemon (fastbgp.daemon.rpki_feed): the ``rpki`` / ``aspa``
policy conditions at import, the per-UPDATE split by RFC 6811 state,
incremental re-validation when the VRPs (or ASPA records) change, the
views, API, metrics and CLI, and the ``[rpki]`` configuration checks.

The daemon runs in process with library Speakers on loopback (the
``test_daemon`` helpers); the RPKI data comes from a real JSON file in the
rpki-client format read by ``fastbgp.rpki.files``.  The same flow against
BIRD peers and a stayrtr cache is tests/interop/test_rpki_policy.py."""

import json

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastbgp.config.checks import load_config
from fastbgp.config.errors import ConfigError
from fastbgp.control import contract as ctl
from fastbgp.rpki.vrp import split_by_state
from fastbgp.wire.as4 import encode_attr
from fastbgp.rib.policy import PolicyContext, compile_policies
from fastbgp.rpki.vrp import INVALID, NOT_FOUND, VALID
from test_daemon import DUT, addr, neighbor_toml, peer, until

RPKI_POLICY = """
[[policies]]
name = "rov"
[[policies.statements]]
conditions = { rpki = "invalid" }
actions = { result = "reject" }
[[policies.statements]]
conditions = { rpki = "valid" }
actions = { result = "accept", set-local-pref = 200 }
"""

ASPA_POLICY = """
[[policies]]
name = "aspa"
[[policies.statements]]
conditions = { aspa = "invalid" }
actions = { result = "reject" }
"""


def write_roas(path, roas, aspas=()):
    doc = {"roas": [{"prefix": p, "maxLength": m, "asn": "AS%d" % a} for p, m, a in roas]}
    if aspas:
        doc["aspas"] = [{"customer_asid": c, "providers": list(ps)} for c, ps in aspas]
    path.write_text(json.dumps(doc))


# ----------------------------------------------------------------------------- the split by state


def test_split_by_state_keeps_the_nlri_whole_when_states_agree():
    packed = bytes([24, 10, 0, 0, 24, 10, 0, 1])
    parts = split_by_state(bytes([VALID, VALID]), packed, False)
    assert parts == [(VALID, packed)] and parts[0][1] is packed


def test_split_by_state_groups_prefixes_in_order():
    packed = bytes([24, 10, 0, 0, 16, 10, 1, 24, 10, 2, 0, 32, 10, 3, 0, 1])
    parts = dict(split_by_state(bytes([VALID, INVALID, VALID, NOT_FOUND]), packed, False))
    assert parts == {VALID: bytes([24, 10, 0, 0, 24, 10, 2, 0]), INVALID: bytes([16, 10, 1]),
                     NOT_FOUND: bytes([32, 10, 3, 0, 1])}
    # RFC 7911 §3: a path id before every prefix.
    ap = bytes([0, 0, 0, 7, 24, 10, 0, 0, 0, 0, 0, 9, 8, 10])
    assert dict(split_by_state(bytes([INVALID, NOT_FOUND]), ap, True)) == {
        INVALID: ap[:8], NOT_FOUND: ap[8:]}
    assert split_by_state(b"", b"", False) == []


def _nlri(prefixes, addpath):
    out = b""
    for i, (plen, a) in enumerate(prefixes):
        out += (i.to_bytes(4, "big") if addpath else b"") + bytes((plen,)) + a[: (plen + 7) >> 3]
    return out


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, 32), st.binary(min_size=4, max_size=4), st.integers(0, 2)), max_size=40),
       st.booleans())
def test_partition_packed_twins_agree(both_vrps, routes, addpath):
    """The compiled partition equals the twin and the per-prefix reference."""
    packed = _nlri([(p, a) for p, a, _s in routes], addpath)
    states = bytes(s for _p, _a, s in routes)
    want = [b"", b"", b""]
    for i, (plen, a, s) in enumerate(routes):
        want[s] += (i.to_bytes(4, "big") if addpath else b"") + _nlri([(plen, a)], False)
    for impl in both_vrps:
        assert impl.partition_packed(packed, states, addpath) == tuple(want)


@pytest.mark.parametrize("packed, states", [
    (bytes([24, 10, 0]), bytes([0])),  # cut inside the prefix
    (bytes([24, 10, 0, 0]), b""),  # fewer states than prefixes
    (bytes([24, 10, 0, 0]), bytes([0, 1])),  # more
    (bytes([24, 10, 0, 0]), bytes([3])),  # not a state
    (bytes([129]) + bytes(17), bytes([0])),  # no family has /129
])
def test_partition_packed_refuses_what_does_not_match(both_vrps, packed, states):
    for impl in both_vrps:
        with pytest.raises(ValueError):
            impl.partition_packed(packed, states)


# ----------------------------------------------------------------------------- policy conditions


def _engine(text):
    return compile_policies(load_config('[global]\nasn = 65000\nrouter-id = "10.0.0.1"\n[rpki]\ncaches = '
                                        '[{ address = "192.0.2.1" }]\n' + text))


def test_rpki_and_aspa_conditions_read_the_context():
    eng = _engine(RPKI_POLICY + ASPA_POLICY)
    attrs = b"\x40\x01\x01\x00"
    base = PolicyContext("192.0.2.9", 65001, 65000)
    chain = eng.chain(["rov"], "import")
    assert chain.uses_rpki and not chain.uses_aspa and not chain.prefix_dependent
    assert eng.evaluate_group(chain, attrs, base.with_validation("invalid")) is None
    v = eng.evaluate_group(chain, attrs, base.with_validation("valid"))
    assert v is not None and v.attrs != attrs  # LOCAL_PREF 200 added
    assert eng.evaluate_group(chain, attrs, base.with_validation("not-found")).attrs == attrs
    # Without a state the route reads as not-found (no implicit drop).
    assert eng.evaluate_group(chain, attrs, base).attrs == attrs
    achain = eng.chain(["aspa"], "import")
    assert achain.uses_aspa and not achain.uses_rpki
    assert eng.evaluate_group(achain, attrs, base.with_validation(None, "invalid")) is None
    assert eng.evaluate_group(achain, attrs, base.with_validation(None, "unknown")) is not None
    # The cache keys on the state: the same block gives both answers.
    assert eng.evaluate_group(chain, attrs, base.with_validation("invalid")) is None
    assert base.with_validation("valid") == base.with_validation("valid") != base


# ----------------------------------------------------------------------------- configuration checks


@pytest.mark.parametrize("text, where, what", [
    ("[rpki]\n", "rpki", "needs caches or a file"),
    ('[rpki]\ncaches = [{ address = "192.0.2.1" }, { address = "192.0.2.1" }]\n', "rpki.caches[1]", "duplicate"),
    ('[rpki]\ncaches = [{ address = "cache.example" }]\n', "rpki.caches[0].address", "not an IP address"),
    (RPKI_POLICY, "policies[0].statements[0].conditions.rpki", "needs an [rpki] section"),
    ('[rpki]\ncaches = [{ address = "192.0.2.1" }]\n' + RPKI_POLICY
     + '[[neighbors]]\naddress = "192.0.2.7"\npeer-as = 65001\nexport-policy = ["rov"]\n',
     "policies[0].statements[0].conditions.rpki", "import only"),
])
def test_rpki_config_errors(text, where, what):
    with pytest.raises(ConfigError) as e:
        load_config('[global]\nasn = 65000\nrouter-id = "10.0.0.1"\n' + text)
    assert any(p == where and what in m for p, m in e.value.errors), e.value.errors


def test_rpki_reload_diff(tmp_path):
    f = tmp_path / "vrps.json"
    write_roas(f, [])
    head = '[global]\nasn = 65000\nrouter-id = "10.0.0.1"\n'
    a = load_config(head + '[rpki]\nfile = "%s"\n' % f)
    b = load_config(head + '[rpki]\ncaches = [{ address = "192.0.2.1", port = 3323 }]\n')
    from fastbgp.config.diff import diff

    assert diff(a, b).rpki_changed and not diff(a, b).empty
    assert not diff(a, a).rpki_changed


# ----------------------------------------------------------------------------- the daemon


def _dut(tmp_path, vrps, policy="rov", extra_policy=RPKI_POLICY):
    a_addr, c_addr = addr(), addr()
    dut = DUT(path=tmp_path / "fastbgp.toml",
              extra='[rpki]\nfile = "%s"\n%s' % (vrps, extra_policy),
              neighbors=[neighbor_toml(a_addr, 65001, **{"import-policy": [policy]}),
                         neighbor_toml(c_addr, 65003)])
    return dut, a_addr, c_addr


def test_daemon_drops_invalid_and_revalidates_incrementally(tmp_path, run):
    """A's valid, invalid and not-found routes: the invalid one is rejected
    by the import policy; a VRP change makes it valid (it reaches C), then
    a shorter maxLength makes the valid one invalid (withdrawn from C).
    Only routes under a changed VRP are re-imported."""
    vrps = tmp_path / "vrps.json"
    write_roas(vrps, [("10.90.0.0/24", 24, 65001), ("10.90.1.0/24", 24, 64999)])

    async def main():
        dut, a_addr, c_addr = _dut(tmp_path, vrps)
        d = await dut.start()
        a, na = await peer(dut, 65001, a_addr)
        c, nc = await peer(dut, 65003, c_addr)
        await na.wait_established(5)
        await nc.wait_established(5)
        # One UPDATE with prefixes of all three states: split by state.
        a.announce(["10.90.0.0/24", "10.90.1.0/24", "10.90.2.0/24"])
        a.announce(["10.91.%d.0/24" % i for i in range(20)])  # far from every VRP
        await until(lambda: set(nc.received()) == {"10.90.0.0/24", "10.90.2.0/24"}
                    | {"10.91.%d.0/24" % i for i in range(20)}, what="valid + not-found at C")
        assert "10.90.1.0/24" not in {r.prefix for r in d.rib("ipv4-unicast")}
        assert d.rib("ipv4-unicast", "10.90.0.0/24")[0].local_pref == 200  # valid: accepted with 200
        marks = {r.prefix: r.rpki for r in d.rib("ipv4-unicast")}
        assert marks["10.90.0.0/24"] == "valid" and marks["10.90.2.0/24"] == "not-found"
        info = d.rpki_info()
        assert info.enabled and info.vrps == {"ipv4": 2, "ipv6": 0} and info.file == str(vrps)
        assert info.routes == {"valid": 1, "invalid": 0, "not-found": 21}
        assert d.rpki_validate("10.90.1.0/24", 64999).state == "valid"
        assert d.rpki_validate("10.90.1.0/24", 65001).state == "invalid"
        assert d.rpki_validate("10.99.0.0/16", 65001).state == "not-found"

        # The invalid route becomes valid: re-validated, accepted, sent to C.
        write_roas(vrps, [("10.90.0.0/24", 24, 65001), ("10.90.1.0/24", 24, 65001)])
        assert d.rpki.load_file()
        await until(lambda: "10.90.1.0/24" in nc.received(), what="10.90.1.0/24 at C after the VRP change")
        await until(lambda: d.rpki.revalidated == 1, what="one path re-validated")
        assert nc.received()["10.90.1.0/24"].as_path == [65000, 65001]

        # maxLength 16 on a /16: the /24s under it turn invalid (RFC 6811 §2).
        write_roas(vrps, [("10.90.0.0/16", 16, 65001)])
        assert d.rpki.load_file()
        await until(lambda: not {"10.90.0.0/24", "10.90.1.0/24", "10.90.2.0/24"} & set(nc.received()),
                    what="the three /24s under the /16 withdrawn from C")
        # The 20 far routes were never re-imported.
        await until(lambda: d.rpki.revalidated == 1 + 3, what="3 more paths re-validated")
        assert len([p for p in nc.received() if p.startswith("10.91.")]) == 20

        # A bad file changes nothing and says why.
        vrps.write_text("{not json")
        assert not d.rpki.load_file()
        assert "not JSON" in d.rpki_info().file_error and d.rpki_info().vrps["ipv4"] == 1
        for s in (a, c):
            await s.stop()
        await dut.stop()

    run(main())


def test_daemon_aspa_condition_and_aspa_change(tmp_path, run):
    """ASPA (upstream procedure): origin 65077 attests provider 65099 only,
    so its route through 65001 is invalid and rejected; once 65001 is
    attested the route is re-imported and reaches C."""
    vrps = tmp_path / "vrps.json"
    write_roas(vrps, [], aspas=[(65077, [65099])])

    async def main():
        dut, a_addr, c_addr = _dut(tmp_path, vrps, policy="aspa", extra_policy=ASPA_POLICY)
        d = await dut.start()
        a, na = await peer(dut, 65001, a_addr)
        c, nc = await peer(dut, 65003, c_addr)
        await na.wait_established(5)
        await nc.wait_established(5)
        a.announce(["10.92.0.0/24"], as_path=[65077])
        a.announce(["10.92.1.0/24"], as_path=[65078])  # no ASPA: unknown, accepted
        await until(lambda: "10.92.1.0/24" in nc.received(), what="unknown accepted")
        assert "10.92.0.0/24" not in nc.received() and d.rpki_info().aspas == 1
        write_roas(vrps, [], aspas=[(65077, [65001, 65099])])
        assert d.rpki.load_file()
        await until(lambda: "10.92.0.0/24" in nc.received(), what="valid after the ASPA change")
        for s in (a, c):
            await s.stop()
        await dut.stop()

    run(main())


def test_rpki_api_metrics_and_cli(tmp_path, run, capsys):
    """GET /v1/rpki and /v1/rpki/validate, the Prometheus gauges and the
    CLI's rendering of the answer."""
    pytest.importorskip("aiohttp")
    from aiohttp.test_utils import TestClient, TestServer
    from prometheus_client import generate_latest

    from fastbgp.cli import rpki as cli_rpki
    from fastbgp.control.api import make_app
    from fastbgp.control.metrics import make_registry

    vrps = tmp_path / "vrps.json"
    write_roas(vrps, [("10.93.0.0/24", 24, 65001), ("2001:db8::/32", 48, 65001)])

    async def main():
        dut, a_addr, _c = _dut(tmp_path, vrps)
        d = await dut.start()
        async with TestClient(TestServer(make_app(d))) as cl:
            r = await cl.get("/v1/rpki")
            info = msgspec.json.decode(await r.read(), type=ctl.RpkiInfo)
            assert r.status == 200 and info.vrps == {"ipv4": 1, "ipv6": 1}
            r = await cl.get("/v1/rpki/validate", params={"prefix": "2001:db8:1::/48", "asn": "AS65001"})
            assert msgspec.json.decode(await r.read(), type=ctl.RpkiValidation).state == "valid"
            r = await cl.get("/v1/rpki/validate", params={"prefix": "10.93.0.0/25", "asn": "65001"})
            assert (await r.json())["state"] == "invalid"
            for bad in ({"prefix": "x", "asn": "1"}, {"prefix": "10.0.0.0/8", "asn": "AS-1"},
                        {"prefix": "10.0.0.0/8", "asn": str(1 << 32)}):
                r = await cl.get("/v1/rpki/validate", params=bad)
                assert r.status == 400, bad
        text = generate_latest(make_registry(d, process=False)).decode()
        assert 'fastbgp_rpki_vrps{family="ipv4"} 1.0' in text
        assert 'fastbgp_rpki_routes{state="invalid"} 0.0' in text
        cli_rpki.print_info(d.rpki_info())
        await dut.stop()

    run(main())
    out = capsys.readouterr().out
    assert "File: %s (loaded" % vrps in out and "ipv4 1, ipv6 1" in out
    cli_rpki.print_info(ctl.RpkiInfo(enabled=True, caches=[ctl.RpkiCacheInfo(
        address="192.0.2.1", port=3323, state="up", version=1, session_id=7, serial=42, source=True,
        last_update=100.0, refresh=60, retry=10, expire=600)]), now=130.0)
    out = capsys.readouterr().out
    assert "192.0.2.1:3323 *" in out and "42" in out and "00:00:30 ago" in out


def test_reload_switches_the_rpki_file_and_rereads_it(tmp_path, run):
    """A reload naming another file loads it (re-validating what changed);
    a reload with the same [rpki] re-reads the file."""
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    write_roas(first, [("10.94.1.0/24", 24, 64999)])
    write_roas(second, [("10.94.1.0/24", 24, 65001)])

    async def main():
        dut, a_addr, c_addr = _dut(tmp_path, first)
        d = await dut.start()
        a, na = await peer(dut, 65001, a_addr)
        c, nc = await peer(dut, 65003, c_addr)
        await na.wait_established(5)
        await nc.wait_established(5)
        a.announce(["10.94.0.0/24", "10.94.1.0/24"])
        await until(lambda: "10.94.0.0/24" in nc.received(), what="not-found route at C")
        assert "10.94.1.0/24" not in nc.received()
        dut.extra = dut.extra.replace(str(first), str(second))
        dut.path.write_text(dut.text())
        summary = await d.reload()
        assert summary.get("rpki-changed") is True, summary
        await until(lambda: "10.94.1.0/24" in nc.received(), what="valid with the second file")
        write_roas(second, [("10.94.1.0/24", 24, 64999)])
        summary = await d.reload()
        assert not summary.get("rpki-changed")
        await until(lambda: "10.94.1.0/24" not in nc.received(), what="invalid again after re-reading")
        assert na.counters.established_count == 1 and nc.counters.established_count == 1
        for s in (a, c):
            await s.stop()
        await dut.stop()

    run(main())


def test_reload_with_another_asn_takes_it_as_the_origin_of_an_empty_path(tmp_path, run):
    """RFC 6811 §2: a route with an empty AS_PATH originates in our own AS;
    after a reload that changes it, the memoised origin is the new one."""
    vrps = tmp_path / "vrps.json"
    write_roas(vrps, [("10.96.0.0/24", 24, 65000)])
    empty_path = encode_attr(0x40, 1, b"\x00") + encode_attr(0x40, 2, b"")

    async def main():
        dut, _a, _c = _dut(tmp_path, vrps)
        d = await dut.start()
        try:
            assert d.rpki.origin(empty_path) == 65000
            dut.asn = 65009
            dut.path.write_text(dut.text())
            await d.reload()
            assert d.asn == 65009 and d.rpki.origin(empty_path) == 65009
        finally:
            await dut.stop()

    run(main())


# ----------------------------------------------------------------------------- the command line


def test_cli_rpki_and_rib_marks(tmp_path, loop_factory, capsys, monkeypatch):
    """`fastbgp rpki`, `fastbgp rpki validate` and the V/I/N mark of
    `fastbgp global rib` against a daemon run by run_daemon (test_api's
    harness: the peer announces 203.0.113.0/24 and /25 from AS 65020)."""
    pytest.importorskip("aiohttp")
    from test_api import Harness

    from fastbgp.cli import main as cli

    vrps = tmp_path / "vrps.json"
    write_roas(vrps, [("203.0.113.0/24", 24, 65020)])  # the /25 is longer than maxLength: invalid

    class RpkiHarness(Harness):
        def write_config(self, description="the peer", extra=""):
            super().write_config(description, extra + '\n[rpki]\nfile = "%s"\n' % vrps)

    h = RpkiHarness(tmp_path / "h", loop_factory)
    (tmp_path / "h").mkdir()
    h.start()
    try:
        monkeypatch.setenv("FASTBGP_API_SOCKET", h.socket)
        monkeypatch.delenv("FASTBGP_API_URL", raising=False)
        monkeypatch.delenv("FASTBGP_API_TOKEN", raising=False)

        def run(*words):
            capsys.readouterr()
            rc = cli.main(list(words))
            out, err = capsys.readouterr()
            assert rc == 0, err
            return out

        rows = {ln.split()[1]: ln.split()[0] for ln in run("global", "rib").splitlines()[2:] if ln.strip()}
        assert rows["203.0.113.0/24"] == "V*>" and rows["203.0.113.128/25"] == "I*>", rows
        rows = {ln.split()[1]: ln.split()[0] for ln in run("global", "rib", "-a", "ipv6").splitlines()[2:]
                if ln.strip()}
        assert rows["2001:db8:100::/48"] == "N*>"
        out = run("rpki")
        assert "VRPs: ipv4 1, ipv6 0" in out and "Best paths: valid 1, invalid 1, not-found 1" in out
        assert run("rpki", "validate", "203.0.113.0/24", "AS65020").strip() == "203.0.113.0/24 from AS65020: valid"
        assert json.loads(run("rpki", "validate", "203.0.113.0/25", "65020", "-j"))["state"] == "invalid"
        assert json.loads(run("rpki", "-j"))["vrps"] == {"ipv4": 1, "ipv6": 0}
        assert json.loads(run("global", "rib", "203.0.113.0/24", "-j"))[0]["rpki"] == "valid"
        capsys.readouterr()
        assert cli.main(["rpki", "validate", "203.0.113.0/24"]) == 2  # usage
    finally:
        h.stop()


# ----------------------------------------------------------------------------- two sources


class _Idle:
    """What RpkiFeed reads of a daemon that is not running."""

    started = False
    loop = None
    asn = 65000


def test_two_sources_publish_their_union():
    """RTR caches and a file together: a VRP stays while either source has
    it; an ASPA customer's providers are the union of both records."""
    from fastbgp.rpki.client import RtrObserver
    from fastbgp.daemon.rpki_feed import RpkiFeed

    cfg = load_config('[global]\nasn = 65000\nrouter-id = "10.0.0.1"\n[rpki]\nfile = "/nonexistent.json"\n'
                      'caches = [{ address = "192.0.2.1" }]\n').rpki
    feed = RpkiFeed(_Idle(), cfg)
    seen = []

    class Spy(RtrObserver):
        def vrps_changed(self, added, removed):
            seen.append((sorted(added), sorted(removed)))

    feed.vrps_changed = Spy().vrps_changed
    rtr, fil = feed.rtr_in, feed.file_in
    assert rtr is not fil and rtr.vrps is not feed.vrps
    v = (1, bytes([10, 0, 0, 0]), 8, 24, 65001)
    w = (1, bytes([10, 1, 0, 0]), 16, 16, 65002)
    for src, vrp in ((rtr, v), (fil, v), (fil, w)):
        src.vrps.add(*vrp)
        src.vrps_changed([vrp], [])
    assert seen == [([v], []), ([w], [])] and len(feed.vrps) == 2
    rtr.vrps.remove(*v)
    rtr.vrps_changed([], [v])  # the file still has it
    assert len(seen) == 2 and feed.vrps.contains(*v)
    fil.vrps.remove(*v)
    fil.vrps_changed([], [v])
    assert seen[-1] == ([], [v]) and not feed.vrps.contains(*v)
    rtr.aspas.set(65010, [1, 2])
    rtr.aspas_changed({65010: (1, 2)})
    fil.aspas.set(65010, [3])
    fil.aspas_changed({65010: (3,)})
    assert feed.aspas.get(65010) == frozenset({1, 2, 3})
    rtr.aspas.remove(65010)
    rtr.aspas_changed({65010: None})
    assert feed.aspas.get(65010) == frozenset({3})
    fil.aspas.remove(65010)
    fil.aspas_changed({65010: None})
    assert feed.aspas.get(65010) is None


def test_daemon_with_an_unreachable_cache_and_a_late_file(tmp_path, run, caplog):
    """A file that does not exist yet is a WARNING, not an error; once
    written it is loaded and its VRPs apply next to the (unreachable)
    cache's none."""
    import logging

    from fastbgp.testing.net import free_port

    vrps = tmp_path / "late.json"
    dead = free_port("127.0.0.1")  # nothing listens there

    async def main():
        a_addr, c_addr = addr(), addr()
        dut = DUT(path=tmp_path / "fastbgp.toml",
                  extra='[rpki]\nfile = "%s"\ncaches = [{ address = "127.0.0.1", port = %d, retry = 1 }]\n%s'
                        % (vrps, dead, RPKI_POLICY),
                  neighbors=[neighbor_toml(a_addr, 65001, **{"import-policy": ["rov"]}), neighbor_toml(c_addr, 65003)])
        with caplog.at_level(logging.WARNING, logger="fastbgp.rpki"):
            d = await dut.start()
        assert any("RPKI file not loaded" in r.getMessage() for r in caplog.records)
        a, na = await peer(dut, 65001, a_addr)
        c, nc = await peer(dut, 65003, c_addr)
        await na.wait_established(5)
        await nc.wait_established(5)
        a.announce(["10.95.0.0/24"])
        await until(lambda: "10.95.0.0/24" in nc.received(), what="not-found accepted")
        write_roas(vrps, [("10.95.0.0/24", 24, 64999)])
        assert d.rpki.load_file()  # what the poller does when the file appears
        await until(lambda: "10.95.0.0/24" not in nc.received(), what="invalid withdrawn")
        info = d.rpki_info()
        assert info.vrps["ipv4"] == 1 and info.caches[0].state in ("down", "connecting")
        for s in (a, c):
            await s.stop()
        await dut.stop()

    run(main())


def test_daemon_ipv6_routes_validated_in_mp_reach(tmp_path, run):
    """IPv6 prefixes (MP_REACH_NLRI, RFC 4760) split by state like IPv4."""
    vrps = tmp_path / "vrps.json"
    write_roas(vrps, [("2001:db8:1::/48", 48, 65001), ("2001:db8:2::/48", 48, 64999)])
    fams = {"families": ["ipv4-unicast", "ipv6-unicast"]}

    async def main():
        a_addr, c_addr = addr(), addr()
        dut = DUT(path=tmp_path / "fastbgp.toml", extra='[rpki]\nfile = "%s"\n%s' % (vrps, RPKI_POLICY),
                  neighbors=[neighbor_toml(a_addr, 65001, **{"import-policy": ["rov"]}, **fams),
                             neighbor_toml(c_addr, 65003, **fams)])
        d = await dut.start()
        a, na = await peer(dut, 65001, a_addr, **fams)
        c, nc = await peer(dut, 65003, c_addr, **fams)
        await na.wait_established(5)
        await nc.wait_established(5)
        a.announce(["2001:db8:1::/48", "2001:db8:2::/48", "2001:db8:3::/48"], next_hop="2001:db8::1")
        await until(lambda: {"2001:db8:1::/48", "2001:db8:3::/48"} <= set(nc.received("ipv6-unicast")),
                    what="valid + not-found IPv6 at C")
        assert "2001:db8:2::/48" not in {r.prefix for r in d.rib("ipv6-unicast")}
        assert {r.prefix: r.rpki for r in d.rib("ipv6-unicast")} == {"2001:db8:1::/48": "valid",
                                                                     "2001:db8:3::/48": "not-found"}
        for s in (a, c):
            await s.stop()
        await dut.stop()

    run(main())


def test_aspa_procedure_follows_the_rfc9234_role():
    """From a provider (our role: customer) the downstream procedure, else
    upstream; no neighbour check behind a route server; iBGP: unknown."""
    import types

    from fastbgp.daemon.rpki_feed import RpkiFeed
    from fastbgp.rib.export import EBGP, IBGP, Source
    from fastbgp.wire.as4 import encode_attr, encode_segments
    from fastbgp.wire.constants import ROLE_CUSTOMER, ROLE_PEER, ROLE_RS_CLIENT

    daemon = _Idle()
    daemon.sources = {1: Source(1, EBGP, peer_as=65001), 2: Source(2, IBGP, peer_as=65000)}
    cfg = load_config('[global]\nasn = 65000\nrouter-id = "10.0.0.1"\n[rpki]\nfile = "/x.json"\n').rpki
    feed = RpkiFeed(daemon, cfg)
    feed.aspas.set(65077, [65050])
    feed.aspas.set(65050, [65999])
    feed.aspas.set(65001, [65050])
    attrs = encode_attr(0x40, 2, encode_segments([(2, [65001, 65050, 65077])], 4))

    def nb(pid, role):
        return types.SimpleNamespace(pid=pid, negotiated=types.SimpleNamespace(local_role=role))

    # Up 65077 -> 65050, down 65050 -> 65001 -> us: valid only from a provider.
    assert feed.aspa_state(nb(1, ROLE_CUSTOMER), attrs) == "valid"
    assert feed.aspa_state(nb(1, ROLE_PEER), attrs) == "invalid"
    assert feed.aspa_state(nb(1, None), attrs) == "invalid"
    assert feed.aspa_state(nb(2, ROLE_CUSTOMER), attrs) == "unknown"  # iBGP
    # A transparent route server: the path need not start with its AS.
    rs_path = encode_attr(0x40, 2, encode_segments([(2, [65050, 65077])], 4))
    assert feed.aspa_state(nb(1, ROLE_RS_CLIENT), rs_path) == "valid"
    assert feed.aspa_state(nb(1, ROLE_PEER), rs_path) == "invalid"  # neighbour check: 65001 expected first


# ----------------------------------------------------------------------------- per-path marks in the RIB

_MARK_PREFIXES = ["10.98.%d.0/24" % i for i in range(6)]
_mark_op = st.one_of(
    st.tuples(st.just("update"), st.integers(1, 3), st.lists(st.sampled_from(_MARK_PREFIXES), min_size=1, max_size=4),
              st.integers(0, 1), st.integers(0, 3)),
    st.tuples(st.just("withdraw"), st.integers(1, 3), st.lists(st.sampled_from(_MARK_PREFIXES), min_size=1,
                                                               max_size=4)),
    st.tuples(st.just("set"), st.integers(1, 3), st.lists(st.sampled_from(_MARK_PREFIXES), min_size=1, max_size=4),
              st.integers(0, 3)),
    st.tuples(st.just("drop"), st.integers(1, 3)),
    st.tuples(st.just("stale"), st.integers(1, 3)),
    st.tuples(st.just("sweep"), st.integers(1, 3)),
)


def _packed(prefixes):
    import ipaddress

    out = b""
    for p in prefixes:
        n = ipaddress.ip_network(p)
        out += bytes((n.prefixlen,)) + n.network_address.packed[:3]
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(_mark_op, max_size=30))
def test_rib_marks_counted_per_peer_in_both_twins(ops):
    """Rib.update's ``mark`` (the daemon's RFC 6811 state per path) is kept
    per path and counted per peer as paths come, change and go; both twins
    agree with a plain model after every operation, and a changed mark
    alone is no route change (empty ChangeSet, age kept).  ``set_mark``
    (re-validation) changes the mark only, never the stale flag."""
    from fastbgp import rib as rib_pkg
    from fastbgp.rib.attrs import AttrTable
    from fastbgp.testing.plugin import implementation

    worlds = []
    for name in ("cython", "python"):
        impl = implementation(rib_pkg, name)
        table = AttrTable()
        r = impl.Rib(1, table)
        for p in (1, 2, 3):
            r.add_peer(p, 65000 + p, 65000, "10.0.0.%d" % p, "192.0.2.%d" % p)
        aids = [table.intern(b"\x40\x01\x01\x00\x40\x02\x00" + bytes((0x40, 3, 4, 192, 0, 2, k))) for k in (1, 2)]
        worlds.append((r, aids))
    model = {}  # (peer, prefix) -> [mark, stale]
    for step, op in enumerate(ops):
        kind, peer = op[0], op[1]
        outs = []
        for r, aids in worlds:
            if kind == "update":
                outs.append(r.update(peer, _packed(op[2]), False, aids[op[3]], now=1_700_000_000 + step, mark=op[4]))
            elif kind == "withdraw":
                outs.append(r.withdraw(peer, _packed(op[2])))
            elif kind == "set":
                outs.append(r.set_mark(peer, _packed(op[2]), False, op[3]))
            elif kind == "drop":
                outs.append(r.drop_peer(peer))
            elif kind == "stale":
                outs.append(r.mark_stale(peer))
            else:
                outs.append(r.sweep_stale(peer))
        assert outs[0] == outs[1], op
        assert [r.paths(p) for p in _MARK_PREFIXES for r in (worlds[0][0],)] == \
            [worlds[1][0].paths(p) for p in _MARK_PREFIXES], op
        if kind == "update":
            for p in op[2]:
                model[(peer, p)] = [op[4], False]
        elif kind == "withdraw":
            for p in op[2]:
                model.pop((peer, p), None)
        elif kind == "set":
            # Only the mark: a stale path stays stale (swept below).
            want = sum(1 for p in set(op[2]) if (peer, p) in model and model[(peer, p)][0] != op[3])
            assert outs[0] == want, op
            for p in op[2]:
                if (peer, p) in model:
                    model[(peer, p)][0] = op[3]
        elif kind == "drop":
            model = {k: v for k, v in model.items() if k[0] != peer}
        elif kind == "stale":
            for k, v in model.items():
                if k[0] == peer:
                    v[1] = True
        else:
            model = {k: v for k, v in model.items() if k[0] != peer or not v[1]}
        for p in (1, 2, 3):
            want = tuple(sum(1 for k, v in model.items() if k[0] == p and v[0] == m) for m in range(4))
            for r, _aids in worlds:
                assert r.peer_marks(p) == want, (op, p)
    # Only the mark changes: nothing to export, the receive time is kept.
    for r, aids in worlds:
        r.update(1, _packed(["10.99.0.0/24"]), False, aids[0], now=1_700_000_000, mark=1)
        cs = r.update(1, _packed(["10.99.0.0/24"]), False, aids[0], now=1_800_000_000, mark=3)
        assert not cs and r.peer_marks(1)[3] >= 1
        assert r.paths("10.99.0.0/24", received=True)[0][4] == 1_700_000_000
        with pytest.raises(ValueError):
            r.update(1, _packed(["10.99.0.0/24"]), False, aids[0], mark=4)


def test_state_counted_for_every_path_per_neighbour(tmp_path, run, capsys):
    """Every path of every neighbour (not only best paths, and neighbours
    whose policy ignores RPKI too) is counted per state, per neighbour and
    family, and the counts follow withdrawals, VRP changes and a session
    going down without a recount: API, neighbour view, CLI and gauge."""
    pytest.importorskip("prometheus_client")
    from prometheus_client import generate_latest

    from fastbgp.cli.main import _print_neighbor
    from fastbgp.control.metrics import make_registry

    vrps = tmp_path / "vrps.json"
    write_roas(vrps, [("10.88.0.0/24", 24, 65001), ("10.88.1.0/24", 24, 64999)])
    a_addr, b_addr = addr(), addr()

    async def main():
        dut = DUT(path=tmp_path / "fastbgp.toml", extra='[rpki]\nfile = "%s"\n' % vrps,
                  neighbors=[neighbor_toml(a_addr, 65001), neighbor_toml(b_addr, 65002)])
        d = await dut.start()
        a, na = await peer(dut, 65001, a_addr)
        b, nb = await peer(dut, 65002, b_addr)
        await na.wait_established(5)
        await nb.wait_established(5)
        prefixes = ["10.88.0.0/24", "10.88.1.0/24", "10.88.2.0/24"]
        a.announce(prefixes)
        b.announce(prefixes, as_path=[65001])  # the same origin: the same states, second paths
        one = {"valid": 1, "invalid": 1, "not-found": 1}
        await until(lambda: d.rpki_info().routes == {"valid": 2, "invalid": 2, "not-found": 2},
                    what="both neighbours' paths counted")
        assert d.neighbor(a_addr).rpki == one and d.neighbor(b_addr).rpki == one
        rows = {(r.address, r.family): (r.valid, r.invalid, r.not_found) for r in d.rpki_info().neighbors}
        assert rows == {(a_addr, "ipv4-unicast"): (1, 1, 1), (b_addr, "ipv4-unicast"): (1, 1, 1)}
        a.withdraw(["10.88.2.0/24"])
        await until(lambda: d.neighbor(a_addr).rpki["not-found"] == 0, what="withdrawal counted")
        # The invalid route turns valid: re-marked in the RIB for both
        # (their import ignores RPKI), no re-import.
        write_roas(vrps, [("10.88.0.0/24", 24, 65001), ("10.88.1.0/24", 24, 65001)])
        assert d.rpki.load_file()
        await until(lambda: d.neighbor(a_addr).rpki == {"valid": 2, "invalid": 0, "not-found": 0},
                    what="A re-validated")
        await until(lambda: d.neighbor(b_addr).rpki == {"valid": 2, "invalid": 0, "not-found": 1},
                    what="B re-validated")
        _print_neighbor(d.neighbor(a_addr))
        text = generate_latest(make_registry(d, process=False)).decode()
        assert ('fastbgp_rpki_neighbor_routes{family="ipv4-unicast",neighbor="%s",state="valid"} 2.0' % b_addr
                in text), text
        assert 'fastbgp_rpki_routes{state="valid"} 4.0' in text
        await b.stop()
        await until(lambda: d.rpki_info().routes == {"valid": 2, "invalid": 0, "not-found": 0},
                    what="B's paths gone with its session")
        await a.stop()
        await dut.stop()

    run(main())
    assert "RPKI: V 2, I 0, N 0 paths" in capsys.readouterr().out


def test_paths_held_before_rpki_starts_are_validated(tmp_path, run):
    """A reload that adds [rpki] validates the paths already held (one
    pass at start) so the counts cover them too; no route is re-sent."""
    vrps = tmp_path / "vrps.json"
    write_roas(vrps, [("10.87.0.0/24", 24, 65001), ("10.87.1.0/24", 24, 64999)])

    async def main():
        a_addr, c_addr = addr(), addr()
        dut = DUT(path=tmp_path / "fastbgp.toml", neighbors=[neighbor_toml(a_addr, 65001),
                                                             neighbor_toml(c_addr, 65003)])
        d = await dut.start()
        a, na = await peer(dut, 65001, a_addr)
        c, nc = await peer(dut, 65003, c_addr)
        await na.wait_established(5)
        await nc.wait_established(5)
        a.announce(["10.87.0.0/24", "10.87.1.0/24", "10.87.2.0/24"])
        await until(lambda: len(nc.received()) == 3, what="three routes at C")
        assert d.rpki is None and d.neighbor(a_addr).rpki is None
        updates = nc.counters.received.update
        dut.extra = '[rpki]\nfile = "%s"\n' % vrps
        dut.path.write_text(dut.text())
        assert (await d.reload()).get("rpki-changed") is True
        await until(lambda: d.neighbor(a_addr).rpki == {"valid": 1, "invalid": 1, "not-found": 1},
                    what="the held paths validated")
        assert nc.counters.received.update == updates
        for s in (a, c):
            await s.stop()
        await dut.stop()

    run(main())


def test_first_load_with_an_empty_rib_keeps_no_revalidation_set(tmp_path, run):
    """The start-up sync finds no path to re-validate, so it must not copy
    every VRP into the changed-prefix set (memory: ~40 MB per 500k VRPs);
    a later change with routes held does."""
    vrps = tmp_path / "vrps.json"
    write_roas(vrps, [("10.%d.0.0/16" % i, 24, 65001) for i in range(200)])

    async def main():
        dut, a_addr, _c = _dut(tmp_path, vrps)
        d = await dut.start()
        assert d.rpki_info().vrps["ipv4"] == 200
        assert not d.rpki.changed  # no session up: nothing held, nothing marked
        a, na = await peer(dut, 65001, a_addr)
        await na.wait_established(5)
        # A session up, even with every route it sent rejected by policy (held
        # only before policy), makes a change worth re-validating.
        d.rpki.vrps_changed([(1, bytes([10, 200, 0, 0]), 16, 24, 65001)], [])
        assert 1 in d.rpki.changed
        await a.stop()
        await dut.stop()

    run(main())
