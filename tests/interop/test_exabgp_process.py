"""ExaBGP's own health-check program (Debian's exabgp 4.2,
``python3 -m exabgp healthcheck``) run unchanged as a fastbgp
``[[processes]]`` program: the service address it announces reaches a BIRD
peer, and is withdrawn when the check fails (the checked file goes).

Needs root, BIRD and the exabgp package (fastbgp/testing/lab.py); marked
``interop`` and ``slow``.
"""

import os
import subprocess
import sys
import textwrap

import pytest

from fastbgp.testing import lab as L

pytestmark = [pytest.mark.interop, pytest.mark.slow, pytest.mark.timeout(150)]

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUNNER = textwrap.dedent("""
    import sys
    import uvloop
    from fastbgp.daemon.process import run_daemon
    uvloop.run(run_daemon(sys.argv[1], api=False, metrics=False, log_level="info"))
""")
# Debian's exabgp is a module of the system Python, not of the project's.
SYSTEM_PYTHON = "/usr/bin/python3"
SERVICE = "198.51.100.10/32"


def _require():
    if not L.is_root():
        pytest.skip("interop lab needs root (network namespaces)")
    missing = L.missing_binaries("ip", SYSTEM_PYTHON, *L.Bird.binaries)
    if missing:
        pytest.skip("not installed: %s" % ", ".join(missing))
    probe = subprocess.run([SYSTEM_PYTHON, "-m", "exabgp", "healthcheck", "--help"], capture_output=True, timeout=30)
    if probe.returncode != 0:
        pytest.skip("exabgp's healthcheck is not installed (Debian package exabgp)")


def _tail(path, n=60):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


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
        cfg = "\n".join([
            "[global]", "asn = 65000", 'router-id = "%s"' % f.ipv4, 'listen = ["%s"]' % f.ipv4,
            "[[neighbors]]", 'address = "%s"' % b.ipv4, "peer-as = 65001",
            'default-import = "accept"', 'default-export = "accept"', "timers = { connect-retry = 2, idle-hold = 1 }",
            "[[processes]]", 'name = "healthcheck"', "run = [%s]" % ", ".join('"%s"' % a for a in hc),
        ]) + "\n"
        path = os.path.join(f.workdir, "fastbgp.toml")
        with open(path, "w") as fh:
            fh.write(cfg)
        logpath = os.path.join(f.workdir, "fastbgp.log")
        log = open(logpath, "ab")
        proc = f.popen([sys.executable, "-c", RUNNER, path], stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        try:
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
            assert proc.poll() is None, _tail(logpath)
            assert "refused" not in _tail(logpath, 400), _tail(logpath)
        except Exception:
            print(_tail(logpath))
            raise
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()
