"""ADD-PATH send-max (RFC 7911 §5, "add-n") against a real receiver: three
GoBGP senders give the fastbgp daemon three paths for each prefix, a GoBGP
receiver with ADD-PATH receive (``add-paths.config.receive``) and
``send-max = 2`` on our side must hold exactly the best two per prefix; when
the best sender withdraws, the third path takes its place.

Needs root and GoBGP (fastbgp/testing/lab.py); marked ``interop`` and
``slow``.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from fastbgp.testing import lab as L

pytestmark = [pytest.mark.interop, pytest.mark.slow, pytest.mark.timeout(120)]

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUNNER = textwrap.dedent("""
    import sys
    import uvloop
    from fastbgp.daemon.process import run_daemon
    uvloop.run(run_daemon(sys.argv[1], api=False, metrics=False, log_level="info"))
""")
PREFIXES = ["198.51.100.%d/28" % (16 * i) for i in range(4)]
ADDPATH_RX = """
  [neighbors.afi-safis.add-paths.config]
    receive = true
"""


def _require(*classes):
    if not L.is_root():
        pytest.skip("interop lab needs root (network namespaces)")
    missing = L.missing_binaries("ip", *[b for c in classes for b in c.binaries])
    if missing:
        pytest.skip("not installed: %s" % ", ".join(missing))


def _log_tail(path, n=60):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


def held(gobgp, src):
    """{prefix: sorted [AS path]} of every path the receiver holds from ``src``."""
    res = gobgp.cli("neighbor", src, "adj-in", "-a", "ipv4", "-j", check=True)
    data = json.loads(res.stdout or "{}") or {}
    out = {}
    for prefix, paths in data.items():
        for p in paths:
            asp = []
            for a in p.get("attrs", []):
                if a.get("type") == 2:
                    asp = [n for seg in a.get("as_paths", []) for n in seg.get("asns", [])]
            out.setdefault(prefix, []).append(asp)
    return {k: sorted(v) for k, v in out.items()}


def test_gobgp_receiver_gets_best_two_of_three():
    _require(L.GoBGP)
    with L.Lab() as lab:
        f = lab.add_host("fb")
        senders = [lab.add_host("s%d" % i) for i in range(3)]
        rx = lab.add_host("rx")
        lines = ["[global]", "asn = 65000", 'router-id = "%s"' % f.ipv4, 'listen = ["%s"]' % f.ipv4]
        for i, h in enumerate(senders):
            lines += ["[[neighbors]]", 'address = "%s"' % h.ipv4, "peer-as = %d" % (65001 + i),
                      'default-import = "accept"', 'default-export = "accept"',
                      "timers = { connect-retry = 2, idle-hold = 1 }"]
        lines += ["[[neighbors]]", 'address = "%s"' % rx.ipv4, "peer-as = 65009",
                  'default-import = "accept"', 'default-export = "accept"',
                  "timers = { connect-retry = 2, idle-hold = 1 }",
                  'add-path = { send = ["ipv4-unicast"], send-max = 2 }']
        path = os.path.join(f.workdir, "fastbgp.toml")
        with open(path, "w") as fh:
            fh.write("\n".join(lines) + "\n")
        logpath = os.path.join(f.workdir, "fastbgp.log")
        proc = f.popen([sys.executable, "-c", RUNNER, path], stdout=open(logpath, "ab"), stderr=subprocess.STDOUT,
                       cwd=ROOT)
        try:
            # Sender i's AS_PATH has i + 1 hops behind it: sender 0 is best.
            gs = [L.GoBGP(h, 65001 + i, neighbors=[L.Neighbor(f.ipv4, 65000)],
                          routes=[L.Route(p, as_path=tuple(range(65100, 65101 + i))) for p in PREFIXES]).start()
                  for i, h in enumerate(senders)]
            recv = L.GoBGP(rx, 65009, neighbors=[L.Neighbor(f.ipv4, 65000, options={"toml": ADDPATH_RX})]).start()
            for g in gs:
                g.wait_established(f.ipv4)
            recv.wait_established(f.ipv4)
            best2 = sorted([[65000, 65001, 65100], [65000, 65002, 65100, 65101]])
            L.wait_for(lambda: held(recv, f.ipv4) == {p: best2 for p in PREFIXES}, 30,
                       what="the best two paths of every prefix at GoBGP",
                       on_timeout=lambda: "%r\n%s" % (held(recv, f.ipv4), _log_tail(logpath)))
            # The best sender withdraws one prefix: the third path enters.
            gs[0].withdraw(PREFIXES[0])
            then = sorted([[65000, 65002, 65100, 65101], [65000, 65003, 65100, 65101, 65102]])
            want = dict({p: best2 for p in PREFIXES[1:]}, **{PREFIXES[0]: then})
            L.wait_for(lambda: held(recv, f.ipv4) == want, 30, what="the third path after a withdrawal",
                       on_timeout=lambda: "%r\n%s" % (held(recv, f.ipv4), _log_tail(logpath)))
            assert proc.poll() is None, _log_tail(logpath)
        except Exception:
            print(_log_tail(logpath))
            raise
        finally:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(10)
