"""A BIRD peer counts the withdrawals the fastbgp daemon sends it: after a
neighbour with a 20,000-prefix table goes down, BIRD -- whose export
policy on the daemon passes 100 of those prefixes -- receives exactly 100
withdrawals (``Import withdraws`` of ``birdc show protocols all``), not
20,000 (fastbgp.rib.export: withdrawals follow what each update group was
sent, ``Rib.held``).

IPv6 sessions and 2001:db8::/32 prefixes (the only documentation space
with room for such a table).  The source is a fastbgp library Speaker in
its own lab host (tests/interop/fastbgp_peer.py); a second one announces a
prefix after the first went, so that everything the daemon queued before
it has reached BIRD when it arrives.

A second test counts what BIRD receives at a soft reset out and at a
reload that narrows its export policy: no re-announcement of a route it
holds with the same attributes (``Import updates``), and withdrawals only of
what it held and the new policy rejects.

Needs root and BIRD; marked ``interop`` and ``slow``.
"""

import ipaddress
import re
import time

import pytest

from fastbgp.testing import lab as L
from fastbgp.testing.daemonlab import LabDaemon, global_toml, neighbor_toml, require

from .fastbgp_peer import FastBGP

pytestmark = [pytest.mark.interop, pytest.mark.slow, pytest.mark.timeout(150)]

N = 20_000
TABLE = [str(ipaddress.ip_network("2001:db8:%x::/48" % i)) for i in range(N)]
# The first 96 (2001:db8:0-5f::/48) and the last 4 (2001:db8:4e1c-4e1f::/48):
# 100 prefixes; the last ones arriving at BIRD show the whole table was taken.
KEPT = TABLE[:96] + TABLE[-4:]
SENTINEL = "2001:db8:ffff::/48"
POLICY = """
[[defined-sets.prefix-sets]]
name = "some"
prefixes = ["2001:db8::/42 le 48", "2001:db8:40::/43 le 48", "2001:db8:4e1c::/46 le 48", "2001:db8:ffff::/48"]

[[policies]]
name = "some"
[[policies.statements]]
name = "some"
conditions = { prefix-set = "some" }
actions = { result = "accept" }
"""


def import_withdraws(bird, peer_ip):
    """BIRD's count of withdrawals received on the session with ``peer_ip``."""
    return import_count(bird, peer_ip, "withdraws")


def import_count(bird, peer_ip, what):
    """BIRD's count of route ``what`` (updates, withdraws) received on the
    session with ``peer_ip`` (one a prefix)."""
    text = bird.protocol_info(peer_ip)
    m = re.search(r"Import %s:\s+(\d+)" % what, text)
    if m is None:
        raise AssertionError("no %s counters in:\n" % what + text)
    return int(m.group(1))


def test_peer_down_withdraws_at_bird_only_what_it_was_sent():
    require(L.Bird)
    assert len(set(KEPT)) == 100
    with L.Lab() as lab:
        dut = lab.add_host("dut")
        src = lab.add_host("src")
        late = lab.add_host("late")
        bh = lab.add_host("bird")
        config = global_toml(65000, dut, listen=["[%s]:179" % dut.ipv6]) + POLICY
        config += neighbor_toml(src.ipv6, 65001) + neighbor_toml(late.ipv6, 65002)
        config += neighbor_toml(bh.ipv6, 65003, 'default-import = "accept"', 'default-export = "reject"',
                                'export-policy = ["some"]', accept=False)
        with LabDaemon(dut, config) as fb:
            bird = L.Bird(bh, 65003, neighbors=[L.Neighbor(dut.ipv6, 65000)]).start()
            source = FastBGP(src, 65001, neighbors=[L.Neighbor(dut.ipv6, 65000, passive=True)]).start()
            other = FastBGP(late, 65002, neighbors=[L.Neighbor(dut.ipv6, 65000, passive=True)]).start()
            bird.wait_established(dut.ipv6, timeout=40)
            source.wait_established(dut.ipv6, timeout=40)
            other.wait_established(dut.ipv6, timeout=40)
            source.call("announce", prefixes=TABLE, as_path=[])
            L.wait_for(lambda: set(bird.rib("ipv6")) == set(KEPT), timeout=60, what="the 100 kept prefixes at BIRD",
                       on_timeout=lambda: "%d at BIRD\n%s" % (len(bird.rib("ipv6")), fb.log_tail()))
            assert import_withdraws(bird, dut.ipv6) == 0
            source.stop()
            L.wait_for(lambda: not bird.rib("ipv6"), timeout=60, what="the source's routes gone at BIRD",
                       on_timeout=fb.log_tail)
            # Whatever the daemon still had queued for BIRD comes before this.
            other.call("announce", prefixes=[SENTINEL], as_path=[])
            L.wait_for(lambda: SENTINEL in bird.rib("ipv6"), timeout=30, what="the sentinel at BIRD",
                       on_timeout=fb.log_tail)
            assert import_withdraws(bird, dut.ipv6) == 100
            fb.assert_alive()


# The soft reset test: 2,000 prefixes, 100 of them exported to BIRD (the
# first 96 and 2001:db8:7cc-7cf::/48), then the last 4 no longer.
SMALL = TABLE[:2000]
SMALL_KEPT = SMALL[:96] + SMALL[-4:]
SENTINELS = ["2001:db8:ffff::/48", "2001:db8:fffe::/48"]
NARROW = POLICY.replace('"2001:db8:4e1c::/46 le 48"', '"2001:db8:fffe::/47 le 48"')
WIDE = NARROW.replace('"2001:db8:fffe::/47 le 48"', '"2001:db8:7cc::/46 le 48", "2001:db8:fffe::/47 le 48"')


@pytest.mark.timeout(120)
def test_soft_reset_and_reload_send_bird_only_what_changed():
    """A soft reset out re-sends BIRD nothing it holds (before: 100
    announcements and 1,900 withdrawals); a reload that narrows BIRD's export
    policy withdraws the 4 prefixes it now rejects and announces nothing."""
    require(L.Bird)
    assert len(set(SMALL_KEPT)) == 100 and SMALL_KEPT[-1] == "2001:db8:7cf::/48"
    with L.Lab() as lab:
        dut = lab.add_host("dut")
        src = lab.add_host("src")
        late = lab.add_host("late")
        bh = lab.add_host("bird")
        fb = LabDaemon(dut, "", cli=True)

        def config(policy):
            text = global_toml(65000, dut, fb.api_toml().rstrip("\n"), listen=["[%s]:179" % dut.ipv6]) + policy
            text += neighbor_toml(src.ipv6, 65001) + neighbor_toml(late.ipv6, 65002)
            return text + neighbor_toml(bh.ipv6, 65003, 'default-import = "accept"', 'default-export = "reject"',
                                        'export-policy = ["some"]', accept=False)

        with fb.start(config(WIDE)):
            fb.wait_api()
            bird = L.Bird(bh, 65003, neighbors=[L.Neighbor(dut.ipv6, 65000)]).start()
            source = FastBGP(src, 65001, neighbors=[L.Neighbor(dut.ipv6, 65000, passive=True)]).start()
            other = FastBGP(late, 65002, neighbors=[L.Neighbor(dut.ipv6, 65000, passive=True)]).start()
            for peer in (bird, source, other):
                peer.wait_established(dut.ipv6, timeout=40)
            source.call("announce", prefixes=SMALL, as_path=[])
            L.wait_for(lambda: set(bird.rib("ipv6")) == set(SMALL_KEPT), timeout=60, what="the 100 kept at BIRD",
                       on_timeout=lambda: "%d at BIRD\n%s" % (len(bird.rib("ipv6")), fb.log_tail()))
            assert (import_count(bird, dut.ipv6, "updates"), import_withdraws(bird, dut.ipv6)) == (100, 0)
            # Soft reset out: nothing changed for BIRD, nothing is sent.
            fb.api("POST", "/v1/neighbors/%s/softreset" % bh.ipv6, {"direction": "out"})
            # Whatever the daemon sends BIRD before the sentinel comes first.
            # The re-sent table (2,000 prefixes, a few ms) is given time to
            # be done first: a dump reads the RIB when it runs, so a sentinel
            # already in it would be sent by the dump and again by its own
            # change, queued behind (an unchanged announcement this work
            # does not suppress, see fastbgp.rib.export).
            time.sleep(1.0)
            other.call("announce", prefixes=SENTINELS[:1], as_path=[])
            L.wait_for(lambda: SENTINELS[0] in bird.rib("ipv6"), timeout=30, what="the first sentinel at BIRD",
                       on_timeout=fb.log_tail)
            assert (import_count(bird, dut.ipv6, "updates"), import_withdraws(bird, dut.ipv6)) == (101, 0)
            # A reload: BIRD's policy no longer passes the last 4.
            with open(fb.config_path, "w") as f:
                f.write(config(NARROW))
            fb.api("POST", "/v1/reload")
            L.wait_for(lambda: SMALL_KEPT[-1] not in bird.rib("ipv6"), timeout=30, what="the 4 withdrawn at BIRD",
                       on_timeout=fb.log_tail)
            other.call("announce", prefixes=SENTINELS[1:], as_path=[])
            L.wait_for(lambda: SENTINELS[1] in bird.rib("ipv6"), timeout=30, what="the second sentinel at BIRD",
                       on_timeout=fb.log_tail)
            assert (import_count(bird, dut.ipv6, "updates"), import_withdraws(bird, dut.ipv6)) == (102, 4)
            assert set(bird.rib("ipv6")) == set(SMALL_KEPT[:96] + SENTINELS)
            fb.assert_alive()
