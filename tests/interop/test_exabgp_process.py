"""ExaBGP's own health-check program (Debian's exabgp 4.2,
``python3 -m exabgp healthcheck``) run unchanged as a fastbgp
``[[processes]]`` program: the service address it announces reaches a BIRD
peer, and is withdrawn when the check fails (the checked file goes).

Needs root, BIRD and the exabgp package (fastbgp/testing/lab.py); marked
``interop`` and ``slow``.
"""

import os
import subprocess

import pytest

from fastbgp.testing import lab as L
from fastbgp.testing.daemonlab import LabDaemon, global_toml, neighbor_toml, require

pytestmark = [pytest.mark.interop, pytest.mark.slow, pytest.mark.timeout(150)]

# Debian's exabgp is a module of the system Python, not of the project's.
SYSTEM_PYTHON = "/usr/bin/python3"
SERVICE = "198.51.100.10/32"


def _require():
    require(SYSTEM_PYTHON, L.Bird)
    probe = subprocess.run([SYSTEM_PYTHON, "-m", "exabgp", "healthcheck", "--help"], capture_output=True, timeout=30)
    if probe.returncode != 0:
        pytest.skip("exabgp's healthcheck is not installed (Debian package exabgp)")


def test_exabgp_healthcheck_under_fastbgp():
    _require()
    with L.Lab() as lab:
        f = lab.add_host("fb")
        b = lab.add_host("bird")
        flag = os.path.join(f.workdir, "service-ok")
        open(flag, "w").close()
        hc = [SYSTEM_PYTHON, "-m", "exabgp", "healthcheck", "--cmd", "test -f %s" % flag, "--ip", SERVICE,
              "--no-ip-setup", "--interval", "1", "--fast-interval", "1", "--rise", "1", "--fall", "1",
              "--withdraw-on-down", "--no-syslog"]
        cfg = (global_toml(65000, f) + neighbor_toml(b.ipv4, 65001)
               + '[[processes]]\nname = "healthcheck"\nrun = [%s]\n' % ", ".join('"%s"' % a for a in hc))
        with LabDaemon(f, cfg) as fb:
            bird = L.Bird(b, 65001, neighbors=[L.Neighbor(f.ipv4, 65000)]).start()
            bird.wait_established(f.ipv4)
            # The check passes: the service address is announced, next hop
            # ours ("next-hop self"), with the healthcheck's up metric as MED.
            r = bird.wait_route(SERVICE, timeout=30)
            assert (r["next_hop"], r["as_path"], r["med"]) == (f.ipv4, [65000], 100), r
            # The check fails: the healthcheck withdraws, BIRD loses the route.
            os.unlink(flag)
            bird.wait_route(SERVICE, present=False, timeout=30)
            # And back.
            open(flag, "w").close()
            bird.wait_route(SERVICE, timeout=30)
            fb.assert_alive()
            assert "refused" not in fb.log_tail(400), fb.log_tail()
