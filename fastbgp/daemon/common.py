"""Tables and small helpers the daemon's modules share.

Owns: the RIB's pseudo-peer id of our own routes (``LOCAL_PID``), the time budget of
one slice of long work (``SLICE_SECONDS``), two helpers on wire data
(prefix text, adding an attribute to a block), the RFC 8950 receive
rule (``next_hop_refused``), the shutdown of a background task
(``cancel_and_wait``), the daemon process's signals
(``handled_signals``), its collector thresholds (``GC_THRESHOLDS``) and
event loop (``loop_factory``), the same for ``fastbgp daemon`` and its
workers.
Calls: ``fastbgp.wire`` and ``fastbgp.config``'s ConfigError.  Called by: every other module of the daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import signal

from fastbgp.config.errors import ConfigError
from fastbgp.wire.as4 import encode_attr
from fastbgp.wire.codec import split_attrs  # compiled when built (as4's otherwise)
from fastbgp.wire.constants import IPV4_UNICAST
from fastbgp.wire.families import UNICAST, parse_family

log = logging.getLogger("fastbgp.daemon")

LOCAL_PID = 0  # the RIB's pseudo-peer for routes originated here
# Long work (export slices, bulk inject, RIB snapshots) yields to the loop
# when a slice ran this long, so keepalives and the API keep running.
SLICE_SECONDS = 0.005


# The cyclic garbage collector's thresholds while a daemon runs (Python's
# default: 700, 10, 10).  A daemon importing a table allocates a few
# container objects per UPDATE and keeps a few per attribute set.
# * The middle generation, which holds what every young collection
#   kept, is collected once per 500,000 net allocations (5,000 x 100):
#   at Python's 7,000 the kept sets were traversed over and over (a table
#   whose every UPDATE brings a new set imported 15-20% slower).
# * The young generation is collected every 5,000, while what it holds
#   is still in the CPU cache: each object's first look costs about 70 ns
#   then, against about 190 ns when 50,000 had piled up (50,000 x 10 before
#   2026-12-07: 0.41 s of collections per two such tables against 0.22 s;
#   the same tables imported 3% faster the first time, 8% when sets
#   are replaced; DFZ-shaped UPDATEs and the general path unchanged;
#   bench/import_small_updates.py, bench/RESULTS.md).  A young collection
#   takes about 0.35 ms.
# Full collections still happen (the last 10 and CPython's 25% rule), so
# cycles are still freed.
GC_THRESHOLDS = (5_000, 100, 10)


def loop_factory():
    """The event loop a daemon's process runs: uvloop's when installed,
    else asyncio's (None).  One choice for ``fastbgp daemon`` and its workers."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return None
    return uvloop.new_event_loop


def family(name) -> tuple:
    """(afi, safi) of a family name the daemon routes (the names of
    ``fastbgp.wire.families``); ValueError (UnknownFamily) otherwise."""
    return parse_family(str(name), UNICAST)


def prefix_text(afi, addr, plen) -> str:
    return "%s/%d" % (ipaddress.ip_address(addr), plen)


async def cancel_and_wait(task) -> None:
    """Cancel ``task`` and wait until it has ended.  What it ends with
    (a result, the CancelledError, or an error raised while unwinding) is
    dropped: the caller is shutting it down and must not fail on it."""
    task.cancel()
    try:
        await task
    except (asyncio.CancelledError, Exception):
        pass


def add_attr(attrs, t, flags, value):
    """``attrs`` with attribute ``t`` set (replaced if present), in type order."""
    items = {tt: (f, v) for f, tt, v in split_attrs(attrs)}
    items[t] = (flags, value)
    return b"".join(encode_attr(items[k][0], k, items[k][1]) for k in sorted(items))


def next_hop_refused(cfg, fam, nh) -> bool:
    """RFC 8950 §4: an IPv6 next hop (16 or 32 octets) for IPv4 NLRI is
    taken only from a peer we offered the Extended Next Hop capability
    (``cfg``: its neighbour configuration).  The import's general path and
    its fast lane both ask here."""
    return len(nh) != 4 and fam == IPV4_UNICAST and not cfg.extended_next_hop


@contextlib.contextmanager
def handled_signals(loop, daemon, stop):
    """While in the block: SIGHUP reloads (``daemon.reload()``: a Daemon,
    or the front of ``workers = N``; a bad file is logged and changes
    nothing); SIGTERM and SIGINT set ``stop``.  None off the main thread.
    The handlers go when the block ends, before what follows it (the
    daemon's stop) can be disturbed by a reload."""
    installed = _install_signals(loop, daemon, stop)
    try:
        yield
    finally:
        for sig in installed:
            try:
                loop.remove_signal_handler(sig)
            except Exception:
                pass


def _install_signals(loop, daemon, stop) -> list:

    async def sighup():
        try:
            await daemon.reload()
        except ConfigError:
            pass  # logged by the reload, at WARNING with the reason
        except Exception:
            log.exception("reload failed")

    installed = []
    try:
        loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(sighup()))
        installed.append(signal.SIGHUP)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
    except (NotImplementedError, RuntimeError, ValueError):  # not the main thread
        pass
    return installed
