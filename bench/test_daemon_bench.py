"""Daemon hot path throughput, in process, and the pass-through bars.

In process (no sockets, always runs): the daemon's import -> RIB -> update
group -> encode path on a full table, 1,000,000 IPv4 /24s in 1,000
attribute groups fed as 1,000 UPDATE-sized batches from one eBGP peer, with
one eBGP member receiving the encoded UPDATEs.  Cases:

* import+export  -- every prefix new: import policy (cached per attribute
                    set), Rib.update, export rules, pack_updates, queueing;
* join-dump      -- a member joins: Rib.dump_best, export, encode;
* drop-peer      -- the source goes away: Rib.drop_peer, 1M withdrawals
                    encoded.

Each round checks prefix counts, so a fast wrong pipeline cannot pass.

Pass-through (needs root, BIRD; marked ``interop``): bench/passthrough.py's
1-sender case on a smaller table, fastbgp against BIRD in the same run,
asserting the issue's bars -- fastbgp at most 2x BIRD's time and at most
150 MB of RSS over idle.

Run:  python -m pytest bench/test_daemon_bench.py --benchmark-only
      python -m pytest bench/test_daemon_bench.py -m interop -s
"""

import os
import shutil
import struct

import pytest

from fastbgp.wire import codec
from fastbgp.config.checks import load_config
from fastbgp.wire.as4 import encode_attr, encode_segments
from fastbgp.wire.constants import IPV4_UNICAST
from fastbgp.daemon.core import Daemon
from fastbgp.daemon.exporter import slices as _slices
from fastbgp.rib.export import EBGP, Source, UpdateGroup, group_key
from fastbgp.rib.policy import PolicyContext
from fastbgp.testing.benchmarks import benchmark_median

GROUPS = 1000
PER_GROUP = 1000
TABLE = GROUPS * PER_GROUP


class _Member:
    """Stands in for a DaemonNeighbor in an update group: counts what it
    would write."""

    def __init__(self, pid):
        self.pid = pid
        self.messages = 0
        self.prefixes = 0

    def send_messages(self, msgs):
        self.messages += len(msgs)


class _Source:
    """Stands in for the sending DaemonNeighbor (what Importer.announce_in reads)."""

    def __init__(self, daemon, pid):
        self.pid = pid
        self.pre_policy = False
        self.import_cache = {}
        self.cfg = load_config(
            '[global]\nasn = 64500\nrouter-id = "192.0.2.1"\n[[neighbors]]\naddress = "192.0.2.2"\n'
            'peer-as = 65001\ndefault-import = "accept"\ndefault-export = "accept"\n').neighbors[0]
        self.import_chain = daemon.engine.chain(self.cfg, "import")
        self.pctx = PolicyContext("192.0.2.2", 65001, 64500)
        self.local_as = 64500
        self.negotiated = None
        self.address = "192.0.2.2"


class _Exports:
    """The export queue, run inline (what an idle daemon does)."""

    busy = False

    def submit(self, gen, heavy=False):
        for _ in gen:
            pass


def _table():
    out = []
    for g in range(GROUPS):
        attrs = (encode_attr(0x40, 1, b"\x00")
                 + encode_attr(0x40, 2, encode_segments([(2, [65001, 1299 + g % 50, 100000 + g])], 4))
                 + encode_attr(0x40, 3, bytes((192, 0, 2, 2))))
        packed = b"".join(struct.pack(">BI", 24, (16 << 24) + ((g * PER_GROUP + i) << 8))[:4]
                          for i in range(PER_GROUP))
        out.append((attrs, packed))
    return out


@pytest.fixture(scope="module")
def table():
    return _table()


def _daemon():
    cfg = load_config('[global]\nasn = 64500\nrouter-id = "192.0.2.1"\nlisten = []\n')
    d = Daemon(cfg)
    d.exports = _Exports()
    d._observe = None
    src = _Source(d, 1)
    rib = d.ribs[IPV4_UNICAST]
    rib.add_peer(1, 65001, 64500, "192.0.2.2", "192.0.2.2", ibgp=False)
    d.sources[1] = Source(1, EBGP, False, 0xC0000202, 65001, "192.0.2.2")
    member = _Member(2)
    chain = d.engine.chain([], "export", "accept")
    ctx = codec.Context()
    key = group_key(IPV4_UNICAST, chain, ctx, EBGP, False, 64500, bytes((192, 0, 2, 1)), "192.0.2.3", b"\x00" * 4,
                    False)
    g = UpdateGroup(key, IPV4_UNICAST, ctx, d.engine, chain, PolicyContext("192.0.2.3", 65002, 64500), EBGP, False,
                    64500, bytes((192, 0, 2, 1)), None)
    g.members[2] = member
    d.groups[key] = g
    return d, src, member, g


def _load(d, src, table):
    for attrs, packed in table:
        d.importer.announce_in(src, IPV4_UNICAST, attrs, b"", packed, False)


def _record_rate(benchmark):
    median = benchmark_median(benchmark)
    if median is not None:
        benchmark.extra_info["prefixes_per_s"] = TABLE / median


def test_import_export_full_table(benchmark, table):
    def setup():
        return (_daemon(),), {}

    def run(state):
        d, src, member, g = state
        _load(d, src, table)
        return d, member

    d, member = benchmark.pedantic(run, setup=setup, rounds=3, iterations=1)
    assert len(d.ribs[IPV4_UNICAST]) == TABLE
    assert member.messages == GROUPS  # one 4 KB UPDATE per attribute group
    _record_rate(benchmark)


def test_join_dump_full_table(benchmark, table):
    d, src, member, g = _daemon()
    _load(d, src, table)
    new = _Member(3)

    def run():
        new.messages = 0
        out_msgs = 0
        for part in _slices(d.exporter.table_delta(g, 3)):
            out = g.process(part, d.sources, single=True)
            out_msgs += len(out.common)
        return out_msgs

    n = benchmark.pedantic(run, rounds=3, iterations=1)
    assert n == GROUPS
    _record_rate(benchmark)


def test_drop_peer_full_table(benchmark, table):
    def setup():
        d, src, member, g = _daemon()
        _load(d, src, table)
        member.messages = 0
        return (d, member), {}

    def run(d, member):
        d.exporter.export_cs(IPV4_UNICAST, d.ribs[IPV4_UNICAST].drop_peer(1), heavy=True)
        return d, member

    d, member = benchmark.pedantic(run, setup=setup, rounds=3, iterations=1)
    assert len(d.ribs[IPV4_UNICAST]) == 0
    assert member.messages >= TABLE * 4 // 4096  # 1M /24 withdrawals, about 1,000 messages
    _record_rate(benchmark)


# ----------------------------------------------------------------------------- the bars, in namespaces


def _netns_ready():
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    if shutil.which("bird") is None:
        return "BIRD is not installed"
    return None


@pytest.mark.interop
@pytest.mark.slow
@pytest.mark.skipif(_netns_ready() is not None, reason=_netns_ready() or "")
def test_passthrough_bars_against_bird():
    import passthrough  # importable: pytest's default (prepend) import mode adds bench/ to the path

    n = int(os.environ.get("FASTBGP_BENCH_PREFIXES", "1000000"))
    fb = passthrough.run_case("fastbgp", "passthrough", n, 1000, 1, 120)
    bird = passthrough.run_case("bird", "passthrough", n, 1000, 1, 120)
    print("\nfastbgp %.2fs %.0f MB over idle; BIRD %.2fs %.0f MB" % (
        fb["seconds"], fb["rss_mb"] - fb["rss_idle_mb"], bird["seconds"], bird["rss_mb"] - bird["rss_idle_mb"]))
    assert fb["received"] == n
    assert fb["seconds"] <= 2 * bird["seconds"] + 0.05
    assert fb["rss_mb"] - fb["rss_idle_mb"] <= 150
