"""Per-neighbour path counts shared by the workers of ``workers = N``.

A neighbour's prefix limit (RFC 4486 Cease 6/1) is on the paths it sent,
while each worker (fastbgp.daemon.worker) holds only its shard of them.
Each worker publishes its own count per (neighbour address, family) in a
file the front creates and every worker maps (:class:`SharedCounts`), and
judges the limit on the sum over all workers.  Every worker processes every
UPDATE of the session and writes its count after each one, so when the
session's total goes over the limit, the last worker to process that UPDATE
sees every other worker's count as of that UPDATE or later: the limit is
enforced at the UPDATE that exceeds it, as one process would, give or take
the UPDATEs a faster worker has already taken (a session that withdraws
and announces around its limit may be stopped an UPDATE early).

Layout: one region per worker, written by that worker only (no locks):
an entry count, then entries of four 64-bit words: the address (two
words: an IPv6 address, or an IPv4 one mapped into IPv6), the family
(AFI << 8 | SAFI) and the count.  A worker appends an entry the first time
it counts a (neighbour, family) and only then raises its entry count, so
a reader sees whole entries.  ``MAX_ENTRIES`` (neighbour, family) pairs per
worker; past that a worker's further pairs are counted on its own shard
(logged once).

Owns: :class:`SharedCounts`.  Calls: the standard library.  Called by:
the importer (``over_limit``) and the peer registry (a session's end).
"""

from __future__ import annotations

import ipaddress
import logging
import mmap
import os

log = logging.getLogger("fastbgp.daemon")

MAX_ENTRIES = 65536
WORDS = 4  # address high, address low, family, count
REGION = 8 * (1 + WORDS * MAX_ENTRIES)


def create(path: str, workers: int) -> None:
    """The front's part: a zeroed file for ``workers`` regions."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.ftruncate(fd, REGION * workers)
    finally:
        os.close(fd)


def _key(address: str, fam) -> tuple:
    ip = ipaddress.ip_address(address.split("%")[0])
    n = int(ip) if ip.version == 6 else int(ipaddress.IPv6Address("::ffff:%s" % ip))
    return (n >> 64, n & 0xFFFFFFFFFFFFFFFF, (fam[0] << 8) | fam[1])


class SharedCounts:
    """Worker ``me`` of ``workers``' view of the shared file at ``path``."""

    def __init__(self, path: str, workers: int, me: int):
        self.workers = workers
        self.me = me
        fd = os.open(path, os.O_RDWR)
        try:
            self.map = mmap.mmap(fd, REGION * workers)
        finally:
            os.close(fd)
        self.words = memoryview(self.map).cast("Q")
        self.stride = REGION // 8
        # key -> word index of its count, per worker (found once, kept).
        self.where: list = [dict() for _ in range(workers)]
        # (address, family) -> key: worked out once, not per UPDATE.
        self.keys: dict = {}
        self.full = False

    def _key(self, address: str, fam) -> tuple:
        key = self.keys.get((address, fam))
        if key is None:
            if len(self.keys) >= MAX_ENTRIES:
                self.keys.clear()  # bounded as the regions are (dynamic neighbours come and go)
            key = self.keys[(address, fam)] = _key(address, fam)
        return key

    def close(self) -> None:
        self.words.release()
        self.map.close()

    def _find(self, k: int, key) -> int:
        """The word index of worker k's count for ``key``, or -1."""
        at = self.where[k].get(key)
        if at is not None:
            return at
        w, base = self.words, k * self.stride
        for i in range(w[base]):
            e = base + 1 + WORDS * i
            if (w[e], w[e + 1], w[e + 2]) == key:
                self.where[k][key] = e + 3
                return e + 3
        return -1

    def _mine(self, key) -> int:
        at = self._find(self.me, key)
        if at >= 0:
            return at
        w, base = self.words, self.me * self.stride
        n = w[base]
        if n >= MAX_ENTRIES:
            if not self.full:
                self.full = True
                log.error("more than %d (neighbour, family) prefix counts: the prefix limits of the others are "
                          "judged on this worker's shard alone", MAX_ENTRIES)
            return -1
        e = base + 1 + WORDS * n
        w[e], w[e + 1], w[e + 2], w[e + 3] = key[0], key[1], key[2], 0
        w[base] = n + 1  # after the entry: readers see it whole
        self.where[self.me][key] = e + 3
        return e + 3

    def total(self, address: str, fam, mine: int) -> int:
        """Publish ``mine`` (this worker's count of ``address``'s paths of
        ``fam``) and return the sum over every worker."""
        key = self._key(address, fam)
        at = self._mine(key)
        if at < 0:
            return mine
        w = self.words
        w[at] = mine
        total = mine
        for k in range(self.workers):
            if k != self.me:
                j = self._find(k, key)
                if j >= 0:
                    total += w[j]
        return total

    def publish(self, address: str, fam, mine: int) -> None:
        """Set this worker's count (a session's end: what it still holds)."""
        at = self._mine(self._key(address, fam))
        if at >= 0:
            self.words[at] = mine
