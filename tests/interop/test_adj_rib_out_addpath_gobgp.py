"""A GoBGP receiver with ADD-PATH receive counts the withdrawals the
fastbgp daemon sends it (fastbgp.rib.export: an ADD-PATH update group has a
bit per (path id, prefix) it was sent, ``path_keys``).  Two senders give
the daemon 64 prefixes each (two paths per prefix); the receiver's export
policy passes 16 of them, so it holds 32 paths.  A sender re-announcing
its rejected paths and withdrawing them sends the receiver nothing; when a
sender goes down the receiver is sent the withdrawal of its 16 paths only,
not of all 64 (before: each of them).  Kept paths announced again with
only a new MED (not sent to an eBGP peer) send the receiver nothing
(before: each path again).  The IPv6 run does the same with
/128 and /112 prefixes among them (kept apart from the HeldSet, which has
no key for paths longer than /96).

The senders are fastbgp library Speakers in their own lab hosts
(tests/interop/fastbgp_peer.py).  Needs root and GoBGP; marked ``interop``
and ``slow``.
"""

import pytest

from fastbgp.testing import lab as L
from fastbgp.testing.daemonlab import LabDaemon, global_toml, neighbor_toml, require

from .fastbgp_peer import FastBGP

pytestmark = [pytest.mark.interop, pytest.mark.slow, pytest.mark.timeout(120)]

# 198.51.100.0/24 and 203.0.113.0/24 in /28s and /29s: 16 + 16 + 32 = 64.
KEPT = ["198.51.100.%d/28" % (16 * i) for i in range(16)]
REJECTED = ["203.0.113.%d/28" % (16 * i) for i in range(16)] + ["203.0.113.%d/29" % (8 * i) for i in range(32)]
POLICY = """
[[defined-sets.prefix-sets]]
name = "kept"
prefixes = ["198.51.100.0/24 le 29"]

[[policies]]
name = "kept"
[[policies.statements]]
name = "kept"
conditions = { prefix-set = "kept" }
actions = { result = "accept" }
"""
SENTINEL = "198.51.100.8/29"
# The IPv6 run: prefixes longer than /96 (no HeldSet key, kept apart by the
# group: fastbgp.rib.export.HeldOut.loose) beside shorter ones.
KEPT6 = ["2001:db8:100::%x/128" % i for i in range(1, 9)] + ["2001:db8:100:1::%x:0/112" % i for i in range(1, 9)]
REJECTED6 = (["2001:db8:200::%x/128" % i for i in range(1, 33)] + ["2001:db8:200:1::%x:0/112" % i for i in range(1, 9)]
             + ["2001:db8:200:%x::/64" % i for i in range(2, 10)])
POLICY6 = POLICY.replace('"198.51.100.0/24 le 29"', '"2001:db8:100::/48 le 128"')
SENTINEL6 = "2001:db8:100:2::/64"
ADDPATH_RX = """
  [neighbors.afi-safis.add-paths.config]
    receive = true
"""


def paths(gobgp, peer_ip, family="ipv4"):
    return sum(len(v) for v in gobgp.adj_in_paths(peer_ip, family).values())


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_addpath_receiver_sent_withdrawals_only_of_paths_it_holds(family):
    require(L.GoBGP)
    v6 = family == "ipv6"
    kept, rejected, sentinel = (KEPT6, REJECTED6, SENTINEL6) if v6 else (KEPT, REJECTED, SENTINEL)
    with L.Lab() as lab:
        f = lab.add_host("fb")
        s1, s2, rx = lab.add_host("s1"), lab.add_host("s2"), lab.add_host("rx")
        me = f.ipv6 if v6 else f.ipv4
        addr = (lambda h: h.ipv6) if v6 else (lambda h: h.ipv4)
        fb = LabDaemon(f, "", cli=True)
        text = global_toml(65000, f, fb.api_toml().rstrip("\n"), listen=["[%s]:179" % me if v6 else "%s:179" % me])
        text += POLICY6 if v6 else POLICY
        text += neighbor_toml(addr(s1), 65001) + neighbor_toml(addr(s2), 65002)
        text += neighbor_toml(addr(rx), 65009, 'default-export = "reject"', 'export-policy = ["kept"]',
                              'add-path = { send = ["%s-unicast"] }' % family, accept=False)
        with fb.start(text):
            fb.wait_api(30)
            recv = L.GoBGP(rx, 65009, neighbors=[L.Neighbor(me, 65000, options={"toml": ADDPATH_RX})]).start()
            senders = [FastBGP(h, asn, neighbors=[L.Neighbor(me, 65000, passive=True)]).start()
                       for h, asn in ((s1, 65001), (s2, 65002))]
            recv.wait_established(me, timeout=40)
            for s in senders:
                s.wait_established(me, timeout=40)
            for s in senders:
                s.call("announce", prefixes=kept + rejected, as_path=[])
            L.wait_for(lambda: paths(recv, me, family) == 32, timeout=30, what="two paths of the 16 kept at GoBGP",
                       on_timeout=lambda: "%d paths\n%s" % (paths(recv, me, family), fb.log_tail()))
            assert recv.messages_received(me).get("withdraw_prefix", 0) == 0
            # Kept paths announced again with a MED, which an eBGP peer is
            # not sent (RFC 4271 §5.1.3): each path's export is as before,
            # so GoBGP is sent nothing for them; the sentinel shows that
            # anything queued before it has arrived (UPDATEs counted).
            updates = recv.messages_received(me).get("update", 0)
            for s in senders:
                s.call("announce", prefixes=kept, as_path=[], med=50)
            L.wait_for(lambda: all(r.get("med") == 50 for r in fb.api("GET", "/v1/rib/%s-unicast" % family)
                                   if r["prefix"] in kept),
                       timeout=30, what="the new MEDs in fastbgp's RIB", on_timeout=fb.log_tail)
            senders[0].call("announce", prefixes=[sentinel], as_path=[])
            L.wait_for(lambda: paths(recv, me, family) == 33, timeout=30, what="the sentinel at GoBGP",
                       on_timeout=fb.log_tail)
            assert recv.messages_received(me).get("update", 0) == updates + 1
            senders[0].call("withdraw", prefixes=[sentinel])
            L.wait_for(lambda: paths(recv, me, family) == 32, timeout=30, what="the sentinel gone at GoBGP",
                       on_timeout=fb.log_tail)
            # Rejected paths changed, then withdrawn: GoBGP is sent nothing.
            senders[0].call("announce", prefixes=rejected, as_path=[65101])
            senders[0].call("withdraw", prefixes=rejected)
            # The second sender goes down: the withdrawals of its 16 paths.
            senders[1].stop()
            L.wait_for(lambda: paths(recv, me, family) == 16, timeout=30, what="the second sender's paths gone at GoBGP",
                       on_timeout=lambda: "%d paths\n%s" % (paths(recv, me, family), fb.log_tail()))
            # Anything queued to GoBGP before this comes first.
            senders[0].call("announce", prefixes=[sentinel], as_path=[])
            L.wait_for(lambda: paths(recv, me, family) == 17, timeout=30, what="the sentinel at GoBGP",
                       on_timeout=fb.log_tail)
            fb.assert_alive()
            assert recv.messages_received(me).get("withdraw_prefix", 0) == 16 + 1  # and the first sentinel
