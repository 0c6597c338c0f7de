"""``fastbgp mrt ...``: command line for MRT files (RFC 6396).

    fastbgp mrt dump FILE...                 # bgpdump -m lines, or -j JSON
    fastbgp mrt inject FILE [--nexthop ADDR] [--only-peer N|ADDR] [-a ipv4|ipv6] [--count N]

``inject`` is GoBGP's ``gobgp mrt inject global``: the routes of a RIB dump
(TABLE_DUMP_V2 or the older TABLE_DUMP) become routes the running daemon
originates, one path per prefix (the first entry, or the one of the chosen
peer), attributes kept.  They are grouped by attribute set and sent in
batches to ``POST /v1/rib/inject`` (msgpack), where each set is interned
once and its prefixes go to the RIB in one call.

``main.py`` wires it in with :func:`add_parser`; ``python -m
fastbgp.cli.mrt dump FILE`` works on its own.
"""

import argparse
import sys

from fastbgp.cli.common import ApiError, CliError, client, client_options
from fastbgp.wire.constants import AFI_IPV4, AFI_IPV6, ATTR_NEXT_HOP, SAFI_UNICAST


def _dump(args):
    import gc

    # No reference cycles to find here; the collector only slows start-up
    # (the imports below) and the dump (dump() itself pauses it too).
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _run_dump(args)
    finally:
        if was_enabled:
            gc.enable()


def _run_dump(args):
    from fastbgp.mrt import dump as mrt_dump

    codec = None
    if args.codec:
        from fastbgp.wire import codec as selector

        codec = selector.load(args.codec)
    out = sys.stdout
    files = [sys.stdin.buffer if f == "-" else f for f in args.files]
    try:
        problems = mrt_dump.dump(files, fmt=args.format, out=out, codec=codec)
        out.flush()
    except BrokenPipeError:
        # `fastbgp mrt dump x | head`: the reader went away, which is fine;
        # point stdout at /dev/null so the flush at exit does not fail too.
        import os

        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())
        except (OSError, ValueError, AttributeError):
            pass
        return 0
    except OSError as exc:
        print("fastbgp mrt dump: %s" % exc, file=sys.stderr)
        return 2
    return 1 if problems else 0


# ---------------------------------------------------------------- inject

INJECT_BATCH = 100_000  # prefixes per API request (about 1 MB of msgpack)


class InjectError(Exception):
    """A problem with the file or the options: one line, exit 1."""


class _Stats:
    def __init__(self):
        self.records = 0
        self.read = 0  # prefixes chosen for injection
        self.skipped = {}  # reason -> prefixes left out
        self.first_skip = {}  # reason -> (record number, offset) of its first case
        self.corrupt = 0
        self.rib_records = 0
        self.peer = None  # the --only-peer that was matched, as text
        self.stream_errors = []  # decompression problems (the reader's)
        self.not_mrt = None  # why the file is not MRT at all (the reader's)

    def skip(self, why, n=1, where=None):
        self.skipped[why] = self.skipped.get(why, 0) + n
        if where is not None and why not in self.first_skip:
            self.first_skip[why] = where


def _family_choice(text):
    """-a: the AFIs to inject (both unicast families by default)."""
    if text is None:
        return (AFI_IPV4, AFI_IPV6)
    from fastbgp.wire.families import UNICAST, UnknownFamily, parse_family

    try:
        return (parse_family(text, UNICAST)[0],)
    except UnknownFamily as exc:
        raise InjectError("-a: %s" % exc) from None


def _peer_choice(text):
    """--only-peer: a PEER_INDEX_TABLE index or a peer address."""
    if text is None:
        return None
    text = text.strip()
    if text.isdigit():
        return int(text)
    import ipaddress

    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise InjectError("--only-peer %r: give a peer index (0, 1, ...) or a peer address" % text) from None


def _nexthop_choice(text):
    """--nexthop: {afi: packed address} for the routes of its family."""
    if text is None:
        return {}
    import ipaddress

    try:
        ip = ipaddress.ip_address(text.strip())
    except ValueError:
        raise InjectError("--nexthop %r is not an IP address" % text) from None
    return {AFI_IPV4 if ip.version == 4 else AFI_IPV6: ip.packed}


def _group_key(u, afi, nexthops):
    """(afi, attributes, next hop) of a route, the InjectGroup it joins; or
    the reason it cannot be injected (a str)."""
    # The route's next hop: NEXT_HOP, or the MP_REACH_NLRI one (RFC 6396
    # §4.3.4 puts IPv6 next hops in an abbreviated MP_REACH_NLRI).
    nh = bytes(u.mp_reach[2]) if u.mp_reach is not None else bytes(u.next_hop)
    attrs = u.attrs
    from fastbgp.wire.as4 import attr_spans
    from fastbgp.wire.constants import ATTR_AS_PATH, ATTR_ORIGIN

    types = {t for _f, t, _vs, _ve, _s in attr_spans(attrs)}
    if ATTR_ORIGIN not in types or ATTR_AS_PATH not in types:
        # RFC 4271 §5.1.1-2: well-known mandatory; the daemon refuses a
        # route without them, so it is left out here and counted.
        return "no ORIGIN or AS_PATH"
    forced = nexthops.get(afi)
    if afi == AFI_IPV4:
        if forced is not None:
            nh = forced
        elif u.mp_reach is None:
            nh = b""  # NEXT_HOP is in the block already
        elif len(nh) != 4:
            return "IPv4 route with an IPv6 next hop (give --nexthop)"
    else:
        if forced is not None:
            nh = forced
        if len(nh) not in (0, 16, 32):
            return "IPv6 route with an IPv4 next hop (give --nexthop)"
        if b"\x03" in attrs:
            # RFC 4760 §3: an IPv6-only UPDATE has no use for NEXT_HOP.
            from fastbgp.wire.as4 import encode_attr, split_attrs

            attrs = b"".join(encode_attr(fl, t, v) for fl, t, v in split_attrs(attrs) if t != ATTR_NEXT_HOP)
    return (afi, attrs, nh)


# What _Selector returns for a record to pass over without counting it.
_PASS = object()


class _Selector:
    """The one route per prefix to inject from each RIB record: the first
    entry, or the one of --only-peer.  Returns the entry's decoded update
    (None when its attributes did not decode) or _PASS."""

    def __init__(self, stats, families, only_peer):
        self.stats = stats
        self.families = families
        self.only_peer = only_peer
        self.want = None  # TABLE_DUMP_V2 peer index chosen by --only-peer

    def peer_table(self, rec):
        """PEER_INDEX_TABLE (RFC 6396 §4.3.1): resolve --only-peer."""
        only = self.only_peer
        if only is None:
            return
        peers = rec.peers
        if isinstance(only, int):
            if only >= len(peers):
                raise InjectError("--only-peer %d: the PEER_INDEX_TABLE has %d peers (0-%d)"
                                  % (only, len(peers), len(peers) - 1))
            self.want = only
        else:
            self.want = next((i for i, p in enumerate(peers) if p.ip == only), None)
            if self.want is None:
                raise InjectError("--only-peer %s is not in the PEER_INDEX_TABLE" % only)
        p = peers[self.want]
        self.stats.peer = "%d (%s AS%d)" % (self.want, p.ip, p.asn)

    def rib(self, rec):
        """A TABLE_DUMP_V2 RIB record (RFC 6396 §4.3.2)."""
        self.stats.rib_records += 1
        if rec.safi != SAFI_UNICAST or rec.afi not in (AFI_IPV4, AFI_IPV6) or not rec.prefix:
            self.stats.skip("not unicast IPv4/IPv6")
            return _PASS
        if rec.afi not in self.families:
            return _PASS
        ents = rec.entries
        if self.want is None:
            e = ents[0] if ents else None
        else:
            e = next((x for x in ents if x.peer_index == self.want), None)
            if e is None:
                return _PASS  # not seen by that peer
        if e is None:
            self.stats.skip("no RIB entry")
            return _PASS
        return e.update

    def table_dump(self, rec):
        """An old TABLE_DUMP record (RFC 6396 §4.2): one per prefix and peer."""
        self.stats.rib_records += 1
        if rec.subtype not in self.families:  # §4.2: the subtype is the AFI
            return _PASS
        only = self.only_peer
        if only is not None:
            if isinstance(only, int):
                raise InjectError("TABLE_DUMP files have no peer index: give --only-peer the peer's address")
            if rec.peer_ip != only:
                return _PASS
            self.stats.peer = only
        return rec.update


def _batches(f, stats, families=(AFI_IPV4, AFI_IPV6), only_peer=None, nexthops=None, batch=INJECT_BATCH, limit=0):
    """(api.InjectGroup list, where) batches (see _batch) from the RIB
    records of the MRT file ``f``:
    one route per prefix, grouped by (family, attributes, next hop), a list
    whenever ``batch`` prefixes are waiting (and the rest at the end)."""
    import socket

    from fastbgp.mrt import reader as mrt

    nexthops = nexthops or {}
    inet_pton = socket.inet_pton
    af = {AFI_IPV4: socket.AF_INET, AFI_IPV6: socket.AF_INET6}
    plen_byte = [bytes((i,)) for i in range(129)]
    groups = {}  # (afi, attrs, next hop) -> bytearray of packed prefixes
    pending = 0
    memo = {}  # (id(update), afi) -> (update, group key or skip reason)
    seen = {AFI_IPV4: set(), AFI_IPV6: set()}  # TABLE_DUMP: one record per prefix *and peer*
    select = _Selector(stats, families, only_peer)
    reader = mrt.MrtReader(f)
    where = {}  # group key -> (record number, offset) of its first route
    for rec in reader:
        stats.records += 1
        typ = type(rec)
        if typ is mrt.RibRecord:
            afi, u = rec.afi, select.rib(rec)
        elif typ is mrt.TableDump:
            afi, u = rec.subtype, select.table_dump(rec)
        else:
            if typ is mrt.PeerIndexTable:
                select.peer_table(rec)
            elif typ is mrt.CorruptRecord or typ is mrt.TruncatedRecord:
                stats.corrupt += 1
            continue
        if u is _PASS:
            continue
        if u is None:
            stats.skip("attributes that do not decode", where=(stats.records, reader.offset))
            continue
        k = (id(u), afi)
        hit = memo.get(k)
        if hit is None or hit[0] is not u:
            hit = memo[k] = (u, _group_key(u, afi, nexthops))
        key = hit[1]
        if type(key) is str:
            stats.skip(key, where=(stats.records, reader.offset))
            continue
        addr, _, ln = rec.prefix.partition("/")
        plen = int(ln)
        packed = plen_byte[plen] + inet_pton(af[afi], addr)[: (plen + 7) >> 3]
        if typ is mrt.TableDump:
            s = seen[afi]
            if packed in s:
                continue  # the first record of a prefix wins
            s.add(packed)
        buf = groups.get(key)
        if buf is None:
            groups[key] = bytearray(packed)
            where[key] = (stats.records, reader.offset)
        else:
            buf += packed
        pending += 1
        stats.read += 1
        if pending >= batch:
            yield _batch(groups, where)
            groups, pending, where = {}, 0, {}
        if limit and stats.read >= limit:
            break
    # A cut or corrupt compressed stream (the TruncatedRecord that may
    # follow is counted with the corrupt ones).
    stats.stream_errors = list(reader.stream_errors)
    stats.not_mrt = reader.not_mrt
    if groups:
        yield _batch(groups, where)


def _batch(groups, where):
    """(InjectGroups, (record number, offset) of the first route of each)."""
    from fastbgp.control.api import InjectGroup

    return ([InjectGroup(afi=k[0], attrs=k[1], nlri=bytes(v), next_hop=k[2]) for k, v in groups.items()],
            [where[k] for k in groups])


def _located(exc, where):
    """The daemon's reason for refusing a batch, with the group index it
    names ("[3].attrs: ...") replaced by where that group's first route is
    in the file: an index into our own batch means nothing to a user."""
    import re

    m = re.search(r"\[(\d+)\]\.", str(exc))
    if m is None or int(m.group(1)) >= len(where):
        return str(exc)
    rec, off = where[int(m.group(1))]
    return "record %d (offset %d): %s" % (rec, off, str(exc)[: m.start()] + str(exc)[m.end():])


def _inject(args):
    import asyncio
    import gc

    # Like dump: no cycles to collect among the records, only pauses.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return asyncio.run(_run_inject(args))
    except InjectError as exc:
        print("fastbgp mrt inject: %s" % exc, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        if was_enabled:
            gc.enable()


def _progress():
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

    console = Console(file=sys.stderr)
    return Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), TimeElapsedColumn(),
                    TextColumn("{task.fields[info]}"), console=console, disable=not console.is_terminal,
                    transient=False)


async def _send(c, f, size, batches, progress, stats):
    """Read ``batches`` (a generator over ``f``) in a thread, one batch
    ahead, and POST each to /v1/rib/inject; the prefixes injected."""
    import asyncio
    import os
    import threading

    import msgspec

    from fastbgp.control.api import MSGPACK

    loop = asyncio.get_running_loop()
    queue = asyncio.Queue(maxsize=2)  # read ahead of the daemon, but not the whole file
    stop = threading.Event()
    injected = 0

    def produce():
        # In a thread: the daemon works on one batch while the next is read.
        def put(item):
            asyncio.run_coroutine_threadsafe(queue.put(item), loop).result()

        try:
            for batch in batches:
                if stop.is_set():
                    return
                put(batch)
        finally:
            if not stop.is_set():
                put(None)

    task = progress.add_task("inject %s" % os.path.basename(f.name), total=size or None, info="")

    def show():
        try:
            pos = f.tell()
        except (OSError, ValueError):
            pos = size
        progress.update(task, completed=min(pos, size), info="read {:,}  injected {:,}".format(stats.read, injected))

    worker = loop.run_in_executor(None, produce)
    try:
        while True:
            try:
                batch = await asyncio.wait_for(queue.get(), 0.2)
            except asyncio.TimeoutError:
                show()
                if worker.done() and queue.empty():
                    break
                continue
            if batch is None:
                break
            groups, where = batch
            try:
                answer = await c.request("POST", "/v1/rib/inject", body=msgspec.msgpack.encode(groups), content_type=MSGPACK)
            except ApiError as exc:
                raise CliError(_located(exc, where)) from None
            injected += answer.get("count", 0) if isinstance(answer, dict) else 0
            show()
        await worker  # the reader's own errors (InjectError, OSError) surface here
        progress.update(task, completed=size)
        show()
    finally:
        stop.set()
        while not worker.done():
            # Unblock a reader waiting on the full queue.
            while not queue.empty():
                queue.get_nowait()
            await asyncio.sleep(0.01)
    return injected


async def _run_inject(args):
    import os
    import time

    families = _family_choice(args.family)
    only_peer = _peer_choice(args.only_peer)
    nexthops = _nexthop_choice(args.nexthop)
    if args.batch <= 0:
        raise InjectError("--batch must be positive")
    path = args.file
    try:
        f = open(path, "rb")
    except OSError as exc:
        raise InjectError("cannot read %s: %s" % (path, exc.strerror or exc)) from None
    size = os.fstat(f.fileno()).st_size
    stats = _Stats()
    t0 = time.perf_counter()
    try:
        async with client(args) as c:
            # Reachable before reading anything: a stopped daemon is reported at once.
            await c.request("GET", "/v1/rib/summary")
            with _progress() as progress:
                batches = _batches(f, stats, families, only_peer, nexthops, args.batch, args.count)
                injected = await _send(c, f, size, batches, progress, stats)
    except CliError as exc:
        print("fastbgp mrt inject: %s" % exc, file=sys.stderr)
        return 1
    except OSError as exc:
        print("fastbgp mrt inject: reading %s: %s" % (path, exc), file=sys.stderr)
        return 1
    finally:
        f.close()
    return _report(args, path, stats, injected, time.perf_counter() - t0, only_peer)


def _first(stats, why):
    w = stats.first_skip.get(why)
    return " (first: record %d, offset %d)" % w if w else ""


def _report(args, path, stats, injected, seconds, only_peer):
    """Print what an inject did; its exit status."""
    if not stats.rib_records:
        why = "not an MRT file (%s), " % stats.not_mrt if stats.not_mrt else ""
        print("fastbgp mrt inject: %s: %sno TABLE_DUMP or TABLE_DUMP_V2 RIB records (is it an MRT RIB dump?)" % (path, why),
              file=sys.stderr)
        return 1
    if only_peer is not None and stats.peer is None:
        print("fastbgp mrt inject: %s: no routes from peer %s" % (path, only_peer), file=sys.stderr)
        return 1
    skipped = sum(stats.skipped.values())
    if getattr(args, "json", False):
        import msgspec

        sys.stdout.write(msgspec.json.encode({
            "count": injected, "seconds": round(seconds, 3), "file": path, "peer": stats.peer,
            "skipped": stats.skipped, "corrupt_records": stats.corrupt, "stream_errors": stats.stream_errors,
            "first_skipped": {why: {"record": r, "offset": o} for why, (r, o) in stats.first_skip.items()},
        }).decode() + "\n")
    else:
        extra = []
        if stats.peer is not None:
            extra.append("peer %s" % stats.peer)
        if skipped:
            extra.append("%d skipped: %s" % (skipped, ", ".join("%s %d%s" % (why, n, _first(stats, why))
                                                                 for why, n in sorted(stats.skipped.items()))))
        print("injected %d prefixes in %.2f s%s" % (injected, seconds, " (%s)" % "; ".join(extra) if extra else ""))
    if stats.corrupt or stats.stream_errors:
        what = "; ".join(stats.stream_errors) or "%d corrupt or truncated records skipped" % stats.corrupt
        print("fastbgp mrt inject: %s: %s" % (path, what), file=sys.stderr)
        return 1
    return 0


def add_parser(subparsers):
    """Add ``mrt`` (with ``dump``) to an argparse subparsers object."""
    p = subparsers.add_parser("mrt", help="read MRT dumps (RFC 6396)")
    sub = p.add_subparsers(dest="mrt_command", required=True)
    d = sub.add_parser(
        "dump",
        help="print MRT records, one line per route (bgpdump -m) or JSON lines",
        description="Print the records of MRT files (gzip, bzip2, xz or plain). "
        "-m (the default) writes bgpdump's one-line format exactly; -j writes one JSON object per record. "
        "Exit status 1 when a file had corrupt or truncated records (they are reported on stderr).",
    )
    d.add_argument("files", nargs="+", metavar="FILE", help="MRT file(s); '-' reads standard input")
    fmt = d.add_mutually_exclusive_group()
    fmt.add_argument("-m", dest="format", action="store_const", const="m", help="bgpdump -m one-line format (default)")
    fmt.add_argument("-j", dest="format", action="store_const", const="j", help="one JSON object per record")
    d.add_argument("--codec", choices=("cython", "python"), help="force a codec implementation (default: the compiled one)")
    d.set_defaults(format="m", func=_dump)

    i = sub.add_parser(
        "inject",
        help="load the routes of a RIB dump into the running daemon (gobgp mrt inject global)",
        description="Originate the routes of an MRT RIB dump (TABLE_DUMP_V2, or TABLE_DUMP) from the running "
        "daemon: one path per prefix, the first RIB entry or the one of --only-peer, with its attributes "
        "(AS path, origin, MED, communities...) and next hop.  Sent to the daemon in batches grouped by "
        "attribute set (POST /v1/rib/inject).  Exit status 1 when the daemon cannot be reached, the file is not "
        "a RIB dump, or records were corrupt (what could be read is injected).",
    )
    i.add_argument("file", metavar="FILE", help="MRT RIB dump (gzip, bzip2, xz or plain)")
    i.add_argument("--nexthop", metavar="ADDR",
                   help="next hop for every route of that address's family (default: the dump's)")
    i.add_argument("--only-peer", metavar="N|ADDR",
                   help="take the route of this peer: PEER_INDEX_TABLE index, or peer address (default: first entry)")
    i.add_argument("-a", "--address-family", dest="family", metavar="FAMILY", help="ipv4 or ipv6 only (default both)")
    i.add_argument("--count", type=int, default=0, metavar="N", help="stop after N prefixes")
    i.add_argument("--batch", type=int, default=INJECT_BATCH, metavar="N",
                   help="prefixes per API request (default %d)" % INJECT_BATCH)
    # --socket/--url/--token/-j also after the command words, as for the
    # other client commands.
    client_options(i, suppress=True)
    i.set_defaults(func=_inject)
    return p


def main(argv=None):
    parser = argparse.ArgumentParser(prog="fastbgp")
    add_parser(parser.add_subparsers(dest="command", required=True))
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] != "mrt" and not argv[0].startswith("-"):
        argv.insert(0, "mrt")  # python -m fastbgp.cli.mrt dump FILE
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
