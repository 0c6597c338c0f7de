"""ExaBGP's own health-check program (Debian's exabgp 4.2,
``python3 -m exabgp healthcheck``) run unchanged as a fastbgp
``[[processes]]`` program: the service address it announces reaches a BIRD
peer, and is withdrawn when the check fails (the checked file goes).  Over
IPv4 and over IPv6 transport (the IPv4 service route then takes our IPv6
address as its RFC 8950 next hop).

Needs root, BIRD and the exabgp package (fastbgp/testing/lab.py); marked
``interop`` and ``slow``.
"""

import os
import subprocess

import pytest

from fastbgp.testing import lab as L
from fastbgp.testing.daemonlab import LabDaemon, global_toml, ipv4_unicast_toml, neighbor_toml, require

pytestmark = [pytest.mark.interop, pytest.mark.slow, pytest.mark.timeout(150)]

# Debian's exabgp is a module of the system Python, not of the project's.
SYSTEM_PYTHON = "/usr/bin/python3"
SERVICE = "198.51.100.10/32"


def _require():
    require(SYSTEM_PYTHON, L.Bird)
    probe = subprocess.run([SYSTEM_PYTHON, "-m", "exabgp", "healthcheck", "--help"], capture_output=True, timeout=30)
    if probe.returncode != 0:
        pytest.skip("exabgp's healthcheck is not installed (Debian package exabgp)")


@pytest.mark.parametrize("transport", L.TRANSPORTS)
def test_exabgp_healthcheck_under_fastbgp(transport):
    _require()
    with L.Lab() as lab:
        f = lab.add_host("fb")
        b = lab.add_host("bird")
        me = f.addr(transport)
        flag = os.path.join(f.workdir, "service-ok")
        open(flag, "w").close()
        hc = [SYSTEM_PYTHON, "-m", "exabgp", "healthcheck", "--cmd", "test -f %s" % flag, "--ip", SERVICE,
              "--no-ip-setup", "--interval", "1", "--fast-interval", "1", "--rise", "1", "--fall", "1",
              "--withdraw-on-down", "--no-syslog"]
        cfg = (global_toml(65000, f, listen=[me]) + neighbor_toml(b.addr(transport), 65001, *ipv4_unicast_toml(me))
               + '[[processes]]\nname = "healthcheck"\nrun = [%s]\n' % ", ".join('"%s"' % a for a in hc))
        with LabDaemon(f, cfg) as fb:
            bird = L.Bird(b, 65001, neighbors=[L.ipv4_neighbor(me, 65000)]).start()
            bird.wait_established(me)
            # The check passes: the service address is announced, next hop
            # ours on the session ("next-hop self"), with the healthcheck's
            # up metric as MED.
            r = bird.wait_route(SERVICE, timeout=30)
            assert (r["next_hop"], r["as_path"], r["med"]) == (me, [65000], 100), r
            # The check fails: the healthcheck withdraws, BIRD loses the route.
            os.unlink(flag)
            bird.wait_route(SERVICE, present=False, timeout=30)
            # And back.
            open(flag, "w").close()
            bird.wait_route(SERVICE, timeout=30)
            fb.assert_alive()
            assert "refused" not in fb.log_tail(400), fb.log_tail()
