"""Codec workloads shared by ``fastbgp bench codec`` and the pytest-benchmark
suite in bench/: the same bytes are timed on the compiled codec and on its
pure-Python twin in one process, so the ratio is measured, not guessed."""

import statistics
import time

from fastbgp.wire import as4
from fastbgp.wire.types import DEFAULT_CONTEXT
from fastbgp.wire.constants import AFI_IPV6, SAFI_UNICAST


def attrs_for(group, ipv6=False):
    """A realistic attribute set (ORIGIN, 4-hop AS_PATH, NEXT_HOP, MED,
    two COMMUNITIES), distinct per ``group``."""
    path = [64500, 3356, 1299 + (group % 50), 200000 + group]
    out = as4.encode_attr(0x40, 1, b"\x00")
    out += as4.encode_attr(0x40, 2, as4.encode_segments([(2, path)], 4))
    if not ipv6:
        out += as4.encode_attr(0x40, 3, bytes((192, 0, 2, 1)))
    out += as4.encode_attr(0x80, 4, (group % 1000).to_bytes(4, "big"))
    out += as4.encode_attr(0xC0, 8, (64500 << 16 | 100).to_bytes(4, "big") + (64500 << 16 | group % 65536).to_bytes(4, "big"))
    return out


def v4_prefixes(first, count, length=24):
    """``count`` consecutive IPv4 prefixes of ``length`` bits, packed."""
    step = 1 << (32 - length)
    nb = (length + 7) >> 3
    out = bytearray()
    for i in range(count):
        addr = ((first + i * step) & 0xFFFFFFFF).to_bytes(4, "big")
        out.append(length)
        out += addr[:nb]
    return bytes(out)


def mixed_v4_prefixes(room, seed=4271):
    """Distinct IPv4 prefixes filling ``room`` octets, lengths drawn like a
    DFZ table (seeded, so every run times the same bytes)."""
    import random

    rnd = random.Random(seed)
    lengths = [24] * 60 + [23] * 8 + [22] * 10 + [21] * 5 + [20] * 6 + [19] * 4 + [18] * 2 + [17] * 2 + [16] * 2 + [12, 8]
    out = bytearray()
    base = 0x0B000000
    while True:
        plen = rnd.choice(lengths)
        nb = (plen + 7) >> 3
        if len(out) + 1 + nb > room:
            return bytes(out)
        # The next aligned block of this length: distinct, host bits clear.
        base = ((base >> (32 - plen)) + 1) << (32 - plen)
        out.append(plen)
        out += base.to_bytes(4, "big")[:nb]


def v6_prefixes(count, length=48):
    """``count`` consecutive 2001:db8::/32-style IPv6 prefixes, packed."""
    base = 0x20010DB8 << 96
    step = 1 << (128 - length)
    nb = (length + 7) >> 3
    out = bytearray()
    for i in range(count):
        out.append(length)
        out += (base + i * step).to_bytes(16, "big")[:nb]
    return bytes(out)


class Workload:
    """``messages``: full UPDATE messages; ``bodies``: the same without the
    header (what parse_update takes); ``groups``: (attrs, packed nlri, afi,
    next_hop) the encoder starts from; ``prefixes``: prefix count."""

    def __init__(self, name, title, groups, impl):
        self.name = name
        self.title = title
        self.groups = groups
        self.messages = encode_groups(impl, groups)
        self.bodies = [m[19:] for m in self.messages]
        self.stream = b"".join(self.messages)
        self.prefixes = sum(impl.count_prefixes(g[1], g[2]) for g in groups)


def encode_groups(impl, groups, ctx=DEFAULT_CONTEXT):
    out = []
    for attrs, nlri, afi, nh in groups:
        out.extend(impl.pack_updates(attrs, nlri, ctx, afi, SAFI_UNICAST, nh))
    return out


def decode_stream(impl, stream, ctx=DEFAULT_CONTEXT, chunk=65536):
    """Framing plus UPDATE parsing of a TCP-like stream, as a session does it."""
    reader = impl.MessageReader(ctx.max_message_len)
    parse = impl.parse_update
    n = 0
    for off in range(0, len(stream), chunk):
        for _mtype, body in reader.feed(stream[off : off + chunk]):
            n += parse(body, ctx).n_announced
    return n


def decode_bodies(impl, bodies, ctx=DEFAULT_CONTEXT):
    parse = impl.parse_update
    n = 0
    for body in bodies:
        n += parse(body, ctx).n_announced
    return n


def workloads(impl, table_size=1_000_000, groups=1000):
    """The three cases of the codec issue."""
    # One 4,096-octet UPDATE: as many /24s as fit beside the attributes.
    a = attrs_for(0)
    room = 4096 - 19 - 4 - len(a)
    v4 = Workload("ipv4-4k", "IPv4 UPDATE 4 KiB (%d x /24)" % (room // 4), [(a, v4_prefixes(0x0A000000, room // 4), 1, None)], impl)
    # The same 4 KiB UPDATE with lengths mixed as in a real table (about
    # 60% /24, the rest /8-/23, in random order): no runs of equal lengths,
    # so the decoder walks prefix by prefix.
    mixed = mixed_v4_prefixes(room)
    v4m = Workload("ipv4-mixed", "IPv4 UPDATE 4 KiB (%d mixed lengths)" % impl.count_prefixes(mixed), [(a, mixed, 1, None)], impl)
    # One MP_REACH UPDATE with 500 IPv6 /48s and a global next hop.
    a6 = attrs_for(0, ipv6=True)
    v6 = Workload("ipv6-mp", "IPv6 MP_REACH (500 x /48)", [(a6, v6_prefixes(500), AFI_IPV6, bytes.fromhex("20010db8000000000000000000000001"))], impl)
    # A full table: table_size /24s in ``groups`` attribute groups.
    per = table_size // groups
    table = [(attrs_for(g), v4_prefixes(0x01000000 + g * per * 256, per), 1, None) for g in range(groups)]
    full = Workload("table-1m", "%s-prefix table, %d attribute groups (stream)" % (format(table_size, ","), groups), table, impl)
    return [v4, v4m, v6, full]


def time_call(fn, repeat=5, min_time=0.2):
    """Median seconds per call over ``repeat`` rounds of >= ``min_time`` each."""
    fn()  # warm up
    results = []
    for _ in range(repeat):
        loops = 0
        t0 = time.perf_counter()
        while True:
            fn()
            loops += 1
            dt = time.perf_counter() - t0
            if dt >= min_time:
                break
        results.append(dt / loops)
    return statistics.median(results)


def machine():
    """One line naming the CPU and Python, printed beside every figure."""
    import platform

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    import os

    return "%s, %d cores, Python %s" % (cpu, os.cpu_count() or 0, platform.python_version())


def run(impls, table_size=1_000_000, repeat=5, min_time=0.2):
    """[(workload title, op, {impl name: prefixes/s})] for every case."""
    base = impls[0]
    rows = []
    for w in workloads(base, table_size):
        for op in ("decode", "encode"):
            rates = {}
            for impl in impls:
                if op == "decode" and w.name == "table-1m":
                    fn = lambda impl=impl: decode_stream(impl, w.stream)  # noqa: E731
                elif op == "decode":
                    fn = lambda impl=impl: decode_bodies(impl, w.bodies)  # noqa: E731
                else:
                    fn = lambda impl=impl: encode_groups(impl, w.groups)  # noqa: E731
                # The twin is ~100x slower: one round of the full table is enough.
                reps = repeat if impl.IMPLEMENTATION == "cython" or w.name != "table-1m" else 1
                rates[impl.IMPLEMENTATION] = w.prefixes / time_call(fn, reps, min_time)
            rows.append((w.title, op, rates))
    return rows
