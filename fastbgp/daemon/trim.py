"""Giving a burst's freed memory back once the daemon is quiet again.

A table arriving leaves megabytes of freed read buffers, packed UPDATEs
and per-batch lists in glibc's heap: measured after P4 (bench/scale.py,
10 x 100k prefixes), 4 MB a worker that nothing would reuse while the
table holds.  :class:`HeapTrimmer` watches an activity count (a daemon's
import calls, Loc-RIB changes and export work; the front's relayed
octets) once every ``interval`` seconds and calls fastbgp.heap.trim once
per burst: when the count moved by at least ``min_step`` since the last
trim and then stood still for a whole interval.  Never during a
burst (the pages would be faulted in again at once), never twice for one
(``malloc_trim`` walks the whole heap: ~5 ms for 100 MB of free blocks).

Owns: :class:`HeapTrimmer`.  Calls: fastbgp.heap, the ``activity``
callable given.  Called by: fastbgp.daemon.core (start and stop) and
fastbgp.daemon.front (the front's relay buffers: 5 MB in P9).
"""

from __future__ import annotations

import logging
import time
from typing import Callable

from fastbgp import heap

# Its own logger: every worker says it for itself (fastbgp.daemon.worker
# quietens the session loggers of workers 1..N-1).
log = logging.getLogger("fastbgp.heap")

TRIM_INTERVAL = 1.0  # seconds between looks at the activity count


class HeapTrimmer:
    """``start(loop)``, ``stop()``; ``activity()`` returns a count that
    grows while the process works; a burst is at least ``min_step`` of it
    (the front counts relayed octets: its sessions' KEEPALIVEs alone are
    no burst); ``trim`` is fastbgp.heap.trim unless given (tests)."""

    def __init__(self, activity: Callable[[], int], interval: float = TRIM_INTERVAL,
                 trim: Callable[[], bool] = heap.trim, min_step: int = 1):
        self.activity = activity
        self.interval = interval
        self.trim = trim
        self.min_step = min_step
        self.handle = None
        self.loop = None
        self.seen = None  # the count at the previous look
        self.trimmed_at = None  # the count when the heap was last trimmed
        self.trims = 0

    def start(self, loop):
        self.loop = loop
        self.seen = self.trimmed_at = self.activity()
        self.handle = loop.call_later(self.interval, self.tick)

    def stop(self):
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None

    def tick(self):
        self.handle = self.loop.call_later(self.interval, self.tick)
        now = self.activity()
        quiet, self.seen = now == self.seen, now
        if quiet and now - self.trimmed_at >= self.min_step:
            self.trimmed_at = now
            t0 = time.perf_counter()
            if self.trim():
                self.trims += 1
                log.debug("freed heap pages returned to the system after a burst (%.1f ms)",
                          (time.perf_counter() - t0) * 1000)
