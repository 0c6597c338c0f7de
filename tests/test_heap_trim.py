"""A burst's freed heap given back (fastbgp.heap, fastbgp.daemon.trim), and
what a daemon loads only when configured (fastbgp.daemon.core.preload)."""

import asyncio
import platform
import subprocess
import sys
import textwrap

from fastbgp import heap
from fastbgp.daemon.trim import HeapTrimmer


def test_heap_trim_runs_malloc_trim_on_glibc_only():
    expect = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
    assert heap.trim() is expect
    assert heap.trim() is expect  # the looked-up function is kept


def test_trimmer_trims_once_per_burst_and_only_once_it_is_quiet(run):
    """Activity moving at every look: no trim; one quiet look after it: one
    trim; quiet since: none more; a new burst then quiet: one more."""

    async def main():
        count = [0]
        calls = []
        t = HeapTrimmer(lambda: count[0], interval=0.01, trim=lambda: calls.append(count[0]) or True)
        t.start(asyncio.get_running_loop())
        try:
            await asyncio.sleep(0.05)
            assert calls == []  # nothing happened since the start
            for _ in range(8):  # a burst: the count moves between looks
                count[0] += 1
                await asyncio.sleep(0.012)
            busy = list(calls)
            await asyncio.sleep(0.3)
            assert len(calls) == len(busy) + 1 and calls[-1] == count[0]
            await asyncio.sleep(0.05)
            assert len(calls) == len(busy) + 1  # still quiet: not again
            count[0] += 5
            await asyncio.sleep(0.3)
            assert calls[-1] == count[0] and len(calls) == len(busy) + 2
            assert t.trims == len(calls)
        finally:
            t.stop()
        n = len(calls)
        count[0] += 1
        await asyncio.sleep(0.05)
        assert len(calls) == n  # stopped: no more looks

    run(main(), timeout=10)


def test_a_step_smaller_than_min_step_is_no_burst(run):
    """The front's KEEPALIVEs move its count a little at a time: no trim
    until a whole ``min_step`` has gone through since the last one."""

    async def main():
        count = [0]
        calls = []
        t = HeapTrimmer(lambda: count[0], interval=0.01, trim=lambda: calls.append(count[0]) or True, min_step=100)
        t.start(asyncio.get_running_loop())
        try:
            for _ in range(5):
                count[0] += 19
                await asyncio.sleep(0.05)
            assert calls == []  # 95 in all
            count[0] += 19
            await asyncio.sleep(0.3)
            assert calls == [114]
        finally:
            t.stop()

    run(main(), timeout=10)


_PROBE = textwrap.dedent("""
    import asyncio, sys
    from fastbgp.config.checks import load_config
    from fastbgp.daemon.core import Daemon, preload

    cfg = load_config(sys.argv[1])
    if sys.argv[2] == "preload":
        preload(cfg)
    else:
        async def main():
            d = Daemon(cfg)
            await d.start()
            await d.stop()
        asyncio.run(main())
    print(" ".join(m for m in ("fastbgp.daemon.rpki_feed", "fastbgp.rpki.client", "fastbgp.daemon.bmp_feed",
                               "fastbgp.bmp.station") if m in sys.modules))
""")


def _loaded(tmp_path, extra, what):
    path = tmp_path / "fastbgp.toml"
    path.write_text('[global]\nasn = 65000\nrouter-id = "192.0.2.1"\nlisten = []\n' + extra)
    out = subprocess.run([sys.executable, "-c", _PROBE, str(path), what], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    return set(out.stdout.split())


def test_a_daemon_without_rpki_or_bmp_never_loads_their_modules(tmp_path):
    assert _loaded(tmp_path, "", "start") == set()


def test_preload_loads_the_rpki_feed_a_configured_daemon_will_use(tmp_path):
    """So that workers forked after it share those modules' pages with the
    front (fastbgp.daemon.spawn) instead of each importing its own copy."""
    vrps = tmp_path / "vrps.json"
    vrps.write_text('{"roas": []}')
    rpki = '[rpki]\nfile = "%s"\n' % vrps
    assert _loaded(tmp_path, "", "preload") == set()
    assert {"fastbgp.daemon.rpki_feed", "fastbgp.rpki.client"} <= _loaded(tmp_path, rpki, "preload")
    assert {"fastbgp.daemon.rpki_feed"} <= _loaded(tmp_path, rpki, "start")
