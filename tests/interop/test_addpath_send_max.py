"""ADD-PATH send-max (RFC 7911 §5, "add-n") against a real receiver: three
GoBGP senders give the fastbgp daemon three paths for each prefix, a GoBGP
receiver with ADD-PATH receive (``add-paths.config.receive``) and
``send-max = 2`` on our side must hold exactly the best two per prefix; when
the best sender withdraws, the third path takes its place; a path in the
top two changing only its MED (not sent to an eBGP peer) sends the receiver
nothing.  Over IPv4 and
over IPv6 transport (IPv4 routes with RFC 8950 IPv6 next hops).

Needs root and GoBGP (fastbgp/testing/lab.py); marked ``interop`` and
``slow``.
"""

import pytest

from fastbgp.testing import lab as L
from fastbgp.testing.daemonlab import LabDaemon, global_toml, ipv4_unicast_toml, neighbor_toml, require

pytestmark = [pytest.mark.interop, pytest.mark.slow, pytest.mark.timeout(120)]

PREFIXES = ["198.51.100.%d/28" % (16 * i) for i in range(4)]
SENTINEL = "198.51.100.192/28"
ADDPATH_RX = """
  [neighbors.afi-safis.add-paths.config]
    receive = true
"""


@pytest.mark.parametrize("workers", [0, 2], ids=["one-process", "2-workers"])
@pytest.mark.parametrize("transport", L.TRANSPORTS)
def test_gobgp_receiver_gets_best_two_of_three(transport, workers):
    require(L.GoBGP)
    with L.Lab() as lab:
        f = lab.add_host("fb")
        senders = [lab.add_host("s%d" % i) for i in range(3)]
        rx = lab.add_host("rx")
        me = f.addr(transport)
        text = (global_toml(65000, f, listen=[me])
                + "".join(neighbor_toml(h.addr(transport), 65001 + i, *ipv4_unicast_toml(me))
                          for i, h in enumerate(senders))
                + neighbor_toml(rx.addr(transport), 65009, *ipv4_unicast_toml(me),
                                'add-path = { send = ["ipv4-unicast"], send-max = 2 }'))
        with LabDaemon(f, text, workers=workers) as fb:
            # Sender i's AS_PATH has i + 1 hops behind it: sender 0 is best.
            gs = [L.GoBGP(h, 65001 + i, neighbors=[L.ipv4_neighbor(me, 65000)],
                          routes=[L.Route(p, as_path=tuple(range(65100, 65101 + i))) for p in PREFIXES]).start()
                  for i, h in enumerate(senders)]
            recv = L.GoBGP(rx, 65009, neighbors=[L.ipv4_neighbor(me, 65000, options={"toml": ADDPATH_RX})]).start()
            for g in gs:
                g.wait_established(me)
            recv.wait_established(me)
            best2 = sorted([[65000, 65001, 65100], [65000, 65002, 65100, 65101]])
            L.wait_for(lambda: recv.adj_in_paths(me) == {p: best2 for p in PREFIXES}, 30,
                       what="the best two paths of every prefix at GoBGP",
                       on_timeout=lambda: "%r\n%s" % (recv.adj_in_paths(me), fb.log_tail()))
            # The best sender withdraws one prefix: the third path enters.
            gs[0].withdraw(PREFIXES[0])
            then = sorted([[65000, 65002, 65100, 65101], [65000, 65003, 65100, 65101, 65102]])
            want = dict({p: best2 for p in PREFIXES[1:]}, **{PREFIXES[0]: then})
            L.wait_for(lambda: recv.adj_in_paths(me) == want, 30, what="the third path after a withdrawal",
                       on_timeout=lambda: "%r\n%s" % (recv.adj_in_paths(me), fb.log_tail()))
            # A path in the top two replaced with only a new MED, which an
            # eBGP peer is not sent (RFC 4271 §5.1.3): the receiver holds
            # it as it would be sent again, so it is sent nothing; the
            # sentinel, announced after it by the same sender, shows that
            # anything the change caused has arrived.
            updates = recv.messages_received(me).get("update", 0)
            gs[1].replace(PREFIXES[1], as_path=(65100, 65101), med=7)
            gs[1].announce(SENTINEL, as_path=(65100,))  # after the change, on the same session
            L.wait_for(lambda: SENTINEL in recv.adj_in_paths(me), 30, what="the sentinel at GoBGP",
                       on_timeout=fb.log_tail)
            assert recv.messages_received(me).get("update", 0) == updates + 1
            fb.assert_alive()
