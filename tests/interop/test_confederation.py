"""BGP confederations (RFC 5065) in the namespace lab.

Confederation 64600 with member ASes 65001 and 65002: the fastbgp daemon is
member AS 65001 with an iBGP peer (BIRD 2, AS 65001); FRR is member AS
65002 (``bgp confederation identifier`` / ``bgp confederation peers``); a
BIRD 2 in AS 64777 outside the confederation peers with the daemon and
sees only AS 64600.

* FRR's route (LOCAL_PREF 250) reaches the iBGP BIRD with LOCAL_PREF 250
  and the AS_CONFED_SEQUENCE (65002) -- BIRD shows it as part of the path --
  and the outside BIRD as ``64600`` alone, next hop the daemon.
* The outside route reaches FRR with AS_CONFED_SEQUENCE (65001) in front of
  64777, its MED and its next hop (the outside BIRD) unchanged.
* NO_EXPORT on the outside route (FRR sets it for a second prefix) keeps
  that prefix inside the confederation.

Over IPv4 and over IPv6 transport (every session; the IPv4 routes then
carry RFC 8950 IPv6 next hops, the addresses of the same hosts).

Needs root, bird and FRR; marked ``interop`` and ``slow``.
"""

import json
import time

import pytest

from fastbgp.testing import lab as L
from fastbgp.testing.daemonlab import LabDaemon, global_toml, ipv4_unicast_toml, neighbor_toml, require

pytestmark = [pytest.mark.interop, pytest.mark.slow, pytest.mark.timeout(150)]

IDENT, ME, FRR_AS, OUT_AS = 64600, 65001, 65002, 64777
FROM_FRR, FROM_FRR_NOEXP, FROM_OUT = "198.51.100.0/24", "198.51.100.128/25", "203.0.113.0/24"


def _config(dut, frr, bird_in, bird_out, transport):
    enh = ipv4_unicast_toml(dut.addr(transport))
    return (global_toml(ME, dut, "confederation = { identifier = %d, members = [%d, %d] }" % (IDENT, ME, FRR_AS),
                        listen=[dut.addr(transport)])
            + neighbor_toml(frr.addr(transport), FRR_AS, *enh, accept=False)
            + neighbor_toml(bird_in.addr(transport), ME, *enh, accept=False)
            + neighbor_toml(bird_out.addr(transport), OUT_AS, *enh))


def _frr_path(frr, prefix):
    """(segments [(type, [asn])], med, local_pref, next hop) of FRR's best path."""
    doc = json.loads(frr.vtysh("show bgp ipv4 unicast %s json" % prefix, check=True).stdout or "{}")
    for p in doc.get("paths", []):
        best = p.get("bestpath")
        if isinstance(best, dict) and best.get("overall"):
            segs = [(s.get("type"), [int(a) for a in s.get("list", [])]) for s in p["aspath"].get("segments", [])]
            nh = [h.get("ip") for h in p.get("nexthops", [])]
            return segs, p.get("metric", p.get("med")), p.get("locPrf", p.get("localpref")), nh[0] if nh else None
    return None


@pytest.mark.parametrize("workers", [0, 2], ids=["one-process", "2-workers"])
@pytest.mark.parametrize("transport", ["ipv4", "ipv6"])
def test_routes_cross_the_confederation(transport, workers):
    require(L.Bird, L.FRR)
    with L.Lab() as lab:
        dut, hf, hi, ho = (lab.add_host(n) for n in ("dut", "frr", "bin", "bout"))
        me = dut.addr(transport)
        with LabDaemon(dut, _config(dut, hf, hi, ho, transport), loop="asyncio", workers=workers) as fb:
            confed = "bgp confederation identifier %d\nbgp confederation peers %d" % (IDENT, ME)
            frr = L.FRR(hf, FRR_AS, neighbors=[L.ipv4_neighbor(me, ME, options={"extra": confed})],
                        routes=[L.Route(FROM_FRR, local_pref=250),
                                L.Route(FROM_FRR_NOEXP, local_pref=250, communities=("no-export",))]).start()
            # The iBGP BIRD is in the confederation too (it refuses
            # AS_CONFED segments otherwise) and shares the LAN with FRR:
            # "direct" resolves the unchanged next hop without an IGP.
            b_in = L.Bird(hi, ME, neighbors=[L.ipv4_neighbor(me, ME, options={
                "extra": "direct; confederation %d;" % IDENT})]).start()
            b_out = L.Bird(ho, OUT_AS, neighbors=[L.ipv4_neighbor(me, IDENT)],
                           routes=[L.Route(FROM_OUT, med=5)]).start()
            for d in (frr, b_in, b_out):
                d.wait_established(me, timeout=40)

            # Member AS 65002 -> our iBGP peer: LOCAL_PREF preserved across
            # members, the member AS crossed in the path.
            b_in.wait_route(FROM_FRR, timeout=30)
            r = b_in.rib("ipv4")[FROM_FRR]
            assert r["local_pref"] == 250 and r["as_path"] == [FRR_AS] and r["next_hop"] == hf.addr(transport), r
            assert "(%d)" % FRR_AS in b_in.birdc("show", "route", FROM_FRR, "all").stdout  # a confed segment
            # ... -> outside: only the identifier, our next hop (BIRD gives
            # every eBGP route its default LOCAL_PREF, so that is not read).
            b_out.wait_route(FROM_FRR, timeout=30)
            r = b_out.rib("ipv4")[FROM_FRR]
            assert r["as_path"] == [IDENT] and r["next_hop"] == me, r
            assert "(%d)" % FRR_AS not in b_out.birdc("show", "route", FROM_FRR, "all").stdout

            # NO_EXPORT stays inside the confederation (RFC 1997, RFC 5065 §4).
            b_in.wait_route(FROM_FRR_NOEXP, timeout=30)
            time.sleep(2)  # exported to both groups in one pass: 2 s is ample
            assert FROM_FRR_NOEXP not in b_out.rib("ipv4")
            fb.assert_clean()

            # Outside -> member AS 65002: AS_CONFED_SEQUENCE (65001) in front,
            # MED and next hop unchanged (over IPv6, the RFC 8950 IPv6 next
            # hop it came with), LOCAL_PREF sent.
            frr.wait_route(FROM_OUT, timeout=20)
            segs, med, lp, nh = _frr_path(frr, FROM_OUT)
            assert segs == [("as-confed-sequence", [ME]), ("as-sequence", [OUT_AS])], segs
            assert med == 5 and lp == 100 and nh == ho.addr(transport), (med, lp, nh)
            fb.assert_clean()
