"""``fastbgp mrt dump -m``'s fast path (fastbgp.mrt.dumpimpl: the compiled
``_dump`` and its twin ``_dump_py``), the refusal of non-MRT files, and the
CLI's start-up imports.

The fast path prints runs of RIB and UPDATE records straight from their
bytes; whatever it declines goes through BgpdumpFormatter.  So the
oracles are: the record-by-record formatter (``fast=False``) on every
corpus file, Debian's bgpdump on full RIBs written by the project's own
writer, and the two twins against each other on damaged records.
"""

import random
import shutil
import subprocess
import sys

import pytest

from fastbgp.mrt import dump as mrt_dump
from fastbgp.mrt import reader as mrt
from fastbgp.mrt.writer import MrtWriter
from fastbgp.wire.as4 import attr_spans, encode_attr


def _corpus_files(corpora):
    files = sorted((corpora / "bgpdump" / "test_data").iterdir()) + sorted((corpora / "mrtparse").iterdir())
    return [f for f in files if f.is_file()]


def test_fast_path_prints_what_the_formatter_prints(mrt_dump_impl, corpora):
    for path in _corpus_files(corpora):
        fast = b"".join(mrt_dump.iter_bytes(str(path), impl=mrt_dump_impl))
        slow = b"".join(mrt_dump.iter_bytes(str(path), fast=False))
        assert fast == slow, path.name


def _bview_rib(path, afi):
    """The 2002 bview's routes (TABLE_DUMP, 2-octet AS) as a TABLE_DUMP_V2
    RIB written by MrtWriter, one entry per peer and prefix; for IPv6 the
    same routes under 2001:db8::/32 + the IPv4 address, with an MP next
    hop and no NEXT_HOP (RFC 4760 §3)."""
    peers = {}
    routes = {}
    for rec in mrt.MrtReader(path):
        if rec.__class__ is not mrt.TableDump or rec.update is None or rec.update.action:
            continue
        k = peers.setdefault((rec.peer_ip, rec.peer_as), len(peers))
        attrs = rec.update.attrs
        nh = None
        prefix = rec.prefix
        if afi == 2:
            a, _, ln = prefix.partition("/")
            prefix = "2001:db8:%02x%02x:%02x%02x::/%d" % (*map(int, a.split(".")), 32 + int(ln))
            attrs = b"".join(encode_attr(f, t, attrs[vs:ve]) for f, t, vs, ve, _s in attr_spans(attrs) if t != 3)
            nh = bytes.fromhex("20010db8ffff%020x" % (k + 1))
        routes.setdefault(prefix, []).append((k, attrs, nh))
    return [(ip, ip, asn) for (ip, asn) in peers], routes.items()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("afi", [1, 2], ids=["ipv4", "ipv6"])
def test_table_dump_v2_rib_matches_installed_bgpdump(mrt_dump_impl, corpora, tmp_path, afi):
    if shutil.which("bgpdump") is None:
        pytest.skip("bgpdump binary not installed (apt-get install -y bgpdump)")
    peers, routes = _bview_rib(corpora / "bgpdump" / "test_data" / "bview.20020722.2337.gz", afi)
    path = tmp_path / "rib.mrt"
    with MrtWriter(str(path)) as w:
        w.write_rib(peers, routes, timestamp=1027380000, collector_id="192.0.2.254")
    expected = subprocess.run(["bgpdump", "-m", str(path)], capture_output=True, check=True).stdout
    got = b"".join(mrt_dump.iter_bytes(str(path), impl=mrt_dump_impl))
    assert len(expected.splitlines()) > 110_000
    assert got == expected


def _stream(path, limit=1 << 17):
    """The first ``limit`` decompressed octets of an MRT file."""
    chunks = []
    mrt_reader = mrt.MrtReader(path, parse=False)

    def keep(buf, pos):
        if pos == 0:
            chunks.append(buf)
        return 0, len(buf)  # claims everything: nothing is decoded

    mrt_reader.fast = keep
    for _ in mrt_reader:
        pass
        if sum(map(len, chunks)) >= limit:
            break
    return b"".join(chunks)[:limit]


def _state(path):
    r = mrt.MrtReader(path)
    f = mrt_dump.BgpdumpFormatter(r.codec)
    for rec in r:  # the PEER_INDEX_TABLE of a RIB dump comes first
        if rec.__class__ is mrt.PeerIndexTable:
            f.lines(rec)
        break
    return f.fast_state(r)


@pytest.mark.timeout(120)
def test_twins_agree_on_damaged_records(both_mrt_dumps, corpora, tmp_path):
    """Damaged octets anywhere in real records (UPDATE streams, TABLE_DUMP,
    TABLE_DUMP_V2 IPv4 and IPv6): both implementations print the same
    bytes, stop at the same records, and never raise."""
    compiled, twin = both_mrt_dumps
    rnd = random.Random(6396)
    data = corpora / "bgpdump" / "test_data"
    paths = [data / n for n in ("updates.et-header.2015.gz", "updates.20160811.1600.gz", "updates.20100722.2015.gz",
                                "bview.20020722.2337.gz", "bview.64k_stream_overflow.gz")]
    for afi in (1, 2):
        peers, routes = _bview_rib(data / "bview.20020722.2337.gz", afi)
        paths.append(tmp_path / ("rib%d.mrt" % afi))
        with MrtWriter(str(paths[-1])) as w:
            w.write_rib(peers, list(routes)[:3000], timestamp=1027380000, collector_id="192.0.2.254")
    tried = 0
    for path in paths:
        buf = _stream(path)
        states = (_state(path), _state(path))
        handled = 0
        for _ in range(60):
            damaged = bytearray(buf)
            for _k in range(rnd.choice((1, 1, 2, 4))):
                damaged[rnd.randrange(len(damaged))] = rnd.randrange(256)
            damaged = bytes(damaged)
            outs = []
            for impl, st in zip((compiled, twin), states):
                out = bytearray()
                pos, done = 0, 0
                # Step over each declined record, as the reader would.
                while pos < len(damaged):
                    k, pos2 = impl.format_run(damaged, pos, st, out)
                    done += k
                    if pos2 + 12 > len(damaged):
                        break
                    pos = pos2 + 12 + int.from_bytes(damaged[pos2 + 8 : pos2 + 12], "big")
                    out += b"#%d\n" % pos2
                outs.append((bytes(out), done))
            assert outs[0] == outs[1], path.name
            handled += outs[0][1]
            tried += 1
        assert handled > 0, path.name
    assert tried == 60 * len(paths)


def test_dump_refuses_a_file_that_is_not_mrt(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("Not an MRT file, only words.\n" * 40)
    tiny = tmp_path / "tiny"
    tiny.write_bytes(b"abc")
    for path, why in ((text, "no MRT record has"), (tiny, "shorter than one MRT record header")):
        p = subprocess.run([sys.executable, "-m", "fastbgp", "mrt", "dump", str(path)], capture_output=True, text=True,
                           timeout=60)
        assert p.returncode == 1 and p.stdout == ""
        assert "%s: not an MRT file: " % path in p.stderr and why in p.stderr, p.stderr
        assert "corrupt" not in p.stderr
    # An empty file is an empty dump, not an error (a quiet collector interval).
    empty = tmp_path / "empty.mrt"
    empty.write_bytes(b"")
    p = subprocess.run([sys.executable, "-m", "fastbgp", "mrt", "dump", str(empty)], capture_output=True, timeout=60)
    assert p.returncode == 0 and p.stdout == b""


HEAVY = ("aiohttp", "uvloop", "rich", "prometheus_client", "asyncio", "ssl", "msgspec")


def _imported_after(code):
    probe = code + "\nimport sys\nprint(' '.join(sorted(m for m in sys.modules)))"
    p = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    return set(p.stdout.split())


def test_cli_entry_imports_no_subcommand_and_no_heavy_library():
    mods = _imported_after("import fastbgp.cli.main")
    assert not mods & set(HEAVY), sorted(mods & set(HEAVY))
    assert not mods & {"fastbgp.cli.mrt", "fastbgp.cli.demo", "fastbgp.mrt.dump", "fastbgp.loadtest.engine"}


def test_mrt_dump_imports_only_what_it_uses(corpora):
    small = corpora / "mrtparse" / "bird_bgp"
    code = ("import io, sys\nfrom fastbgp.cli import main\nsys.stdout = io.TextIOWrapper(io.BytesIO())\n"
            "main.main(['mrt', 'dump', %r])\nsys.stdout = sys.__stdout__" % str(small))
    mods = _imported_after(code)
    assert "fastbgp.mrt.dump" in mods
    unused = set(HEAVY) - {"msgspec"}  # the MRT record types are msgspec Structs
    assert not mods & unused, sorted(mods & unused)
    assert not mods & {"fastbgp.cli.demo", "fastbgp.control.api", "fastbgp.daemon.core"}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("twin", [False, True], ids=["compiled", "twin"])
@pytest.mark.parametrize("afi", [1, 2], ids=["ipv4", "ipv6"])
def test_mrt_dump_of_a_table_dump_v2_rib_loads_no_msgspec(corpora, tmp_path, afi, twin):
    """Issue 14: a RIB the fast path prints whole (collector-style routes:
    an AS path, a next hop) is dumped without msgspec, the codec or the
    record classes -- they cost most of the start-up -- and, for IPv4,
    without socket.  A lab dump whose entries need the slow formatter (an
    empty AS_PATH, say) still loads them, so this file is written here."""
    import os

    peers, routes = _bview_rib(corpora / "bgpdump" / "test_data" / "bview.20020722.2337.gz", afi)
    path = tmp_path / "small-rib.mrt"
    with MrtWriter(str(path)) as w:
        w.write_rib(peers, list(routes)[:300], timestamp=1027380000, collector_id="192.0.2.254")
    # The module list goes to stderr at exit, after the CLI's own output.
    code = ("import atexit, sys\natexit.register(lambda: sys.stderr.write(' '.join(sorted(sys.modules))))\n"
            "from fastbgp.cli import main\nsys.exit(main.main(['mrt', 'dump', %r]))" % str(path))
    env = dict(os.environ)
    env.pop("FASTBGP_NO_EXTENSIONS", None)
    if twin:
        env["FASTBGP_NO_EXTENSIONS"] = "1"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60, env=env)
    assert p.returncode == 0, p.stderr
    assert p.stdout == b"".join(mrt_dump.iter_bytes(str(path), fast=False))
    assert len(p.stdout.splitlines()) >= 300
    mods = p.stderr.decode()
    mods = set(mods.split())
    assert "fastbgp.mrt.dumpimpl" in mods and ("fastbgp.mrt._dump_py" in mods) == twin
    loaded = mods & {"msgspec", "fastbgp.wire.codec", "fastbgp.wire.types", "asyncio"}
    assert not loaded, sorted(loaded)
    if afi == 1:
        assert "socket" not in mods  # IPv4 text comes from tables, not inet_ntop


MRTPARSE_RIBS = ("quagga_rib", "bird-mrtdump_rib", "bird6-mrtdump_rib")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("twin", [False, True], ids=["compiled", "twin"])
@pytest.mark.parametrize("name", MRTPARSE_RIBS)
def test_mrt_dump_of_dumper_ribs_loads_no_msgspec(corpora, name, twin):
    """Issue 14: Quagga's RIB (full MP_REACH_NLRI form, entries with no
    attributes) and BIRD's (RFC 8050 ADDPATH entries, empty AS_PATH, IPv6
    entries without a next hop) are printed whole by the fast path, so
    neither msgspec nor the codec is imported (socket may be, for IPv6)."""
    import os

    path = corpora / "mrtparse" / name
    if not path.is_file():
        pytest.skip("mrtparse sample %s not in the corpora" % name)
    code = ("import atexit, sys\natexit.register(lambda: sys.stderr.write(' '.join(sorted(sys.modules))))\n"
            "from fastbgp.cli import main\nsys.exit(main.main(['mrt', 'dump', %r]))" % str(path))
    env = dict(os.environ)
    env.pop("FASTBGP_NO_EXTENSIONS", None)
    if twin:
        env["FASTBGP_NO_EXTENSIONS"] = "1"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60, env=env)
    assert p.returncode == 0, p.stderr
    assert p.stdout and p.stdout == b"".join(mrt_dump.iter_bytes(str(path), fast=False))
    mods = set(p.stderr.decode().split())
    assert ("fastbgp.mrt._dump_py" in mods) == twin
    loaded = mods & {"msgspec", "fastbgp.wire.codec", "fastbgp.wire.types", "asyncio"}
    assert not loaded, sorted(loaded)


def test_selector_exports_the_compiled_module_when_built(mrt_dump_impl, request):
    from fastbgp.mrt import dumpimpl

    assert mrt_dump_impl.IMPLEMENTATION == request.node.callspec.params["mrt_dump_impl"]
    assert all(hasattr(mrt_dump_impl, name) for name in dumpimpl.API)
    if not dumpimpl.NO_EXTENSIONS:
        # A missing build must fail here, not pass quietly on the twin.
        assert dumpimpl.IMPLEMENTATION == "cython"
