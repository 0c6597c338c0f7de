"""The load tester's probe of the target's processes (fastbgp.loadtest
runner.TargetProbe): CPU and RSS summed over the target and its children,
and for a target of several processes the PSS too, which counts the pages
they share once (a front and the workers forked from it)."""

import os
import subprocess
import sys
import time

from fastbgp.loadtest.runner import TargetProbe

# A parent that fills 64 MiB, forks a child that keeps them untouched
# (shared copy-on-write), and says when both are ready.
SHARER = r"""
import os, sys, time
block = bytearray(os.urandom(1 << 20)) * 64
pid = os.fork()
if pid == 0:
    time.sleep(60)
    os._exit(0)
print(pid, flush=True)
time.sleep(60)
"""


def test_a_target_s_children_are_counted_and_shared_pages_once_in_pss():
    proc = subprocess.Popen([sys.executable, "-c", SHARER], stdout=subprocess.PIPE, text=True)
    child = None
    try:
        child = int(proc.stdout.readline())
        time.sleep(0.2)
        probe = TargetProbe([proc.pid])
        cpu, rss = probe.sample()
        assert cpu is not None and cpu > 0
        # Both processes map the 64 MiB: RSS counts them twice, PSS once.
        assert rss > 2 * 60 * 1024, rss
        assert probe.peak_pss is not None
        assert 60 * 1024 < probe.peak_pss < rss - 50 * 1024, (probe.peak_pss, rss)
        assert not probe.errors
    finally:
        proc.kill()
        proc.wait()
        if child is not None:
            try:
                os.kill(child, 9)
            except ProcessLookupError:
                pass


def test_one_process_has_no_pss_figure():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        time.sleep(0.2)
        probe = TargetProbe([proc.pid])
        _cpu, rss = probe.sample()
        assert rss > 0
        assert probe.peak_pss is None  # RSS says it all for one process
    finally:
        proc.kill()
        proc.wait()
