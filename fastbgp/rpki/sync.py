"""Changing the published RPKI data: the one place that turns a new full
data set (an RTR Reset Query answer, a re-read JSON file) into the
added/removed lists observers receive, and applies changes to the tables.

VRPs are tuples ``(afi, address bytes, length, max length, asn)``; ASPA
changes a mapping ``{customer: providers tuple, or None when withdrawn}``.

A full answer may be given as a set of VRP tuples or as a VrpTable (the RTR
client collects a response in one: no Python object per VRP while it is
being received).  :func:`release_memory` hands the heap freed after a large
change back to the system.
"""

import gc

from fastbgp import heap

# A change set at least this large is followed by release_memory(): the
# tuples and lists of a full sync are freed at once but glibc keeps the
# pages (~96 MB after a 500k-VRP sync, bench/rtr_sync_bench.py).
RELEASE_AFTER = 50_000


def all_vrps(vrps):
    """The set of VRP tuples in VrpTable ``vrps``."""
    out = set()
    for afi in (1, 2):
        out.update((afi,) + e for e in vrps.entries(afi))
    return out


def full_diff(vrps, aspas, new_vrps, new_aspas):
    """(added, removed, aspa changes) taking the tables ``vrps`` /
    ``aspas`` to exactly ``new_vrps`` (a set of tuples, or a VrpTable) /
    ``new_aspas`` ({customer: providers}).  Holds both VRP sets at once
    (for a VrpTable: the published set and the sorted added list): done once
    per full reload, never per update."""
    old = all_vrps(vrps)
    if isinstance(new_vrps, (set, frozenset)):
        added = sorted(new_vrps - old)
        removed = sorted(old - new_vrps)
    else:
        # entries() is sorted per family and AFI 1 comes first: the
        # concatenation is already in tuple order, as sorted() gives it.
        added = [v for afi in (1, 2) for v in ((afi,) + e for e in new_vrps.entries(afi)) if v not in old]
        removed = sorted(v for v in old if not new_vrps.contains(*v))
    changes = {c: None for c, _p in aspas.items() if c not in new_aspas}
    changes.update((c, tuple(sorted(set(p)))) for c, p in new_aspas.items() if aspas.get(c) != frozenset(p))
    return added, removed, changes


def apply(vrps, aspas, added, removed, aspa_changes):
    """Apply a change set to the tables (removals first)."""
    for v in removed:
        vrps.remove(*v)
    for v in added:
        vrps.add(*v)
    for customer, providers in aspa_changes.items():
        if providers is None:
            aspas.remove(customer)
        else:
            aspas.set(customer, providers)


def release_memory():
    """Collect garbage and return freed heap pages to the system after a
    large change (fastbgp.heap.trim: ``malloc_trim(0)`` on Linux with
    glibc; elsewhere only ``gc.collect()``).  Returns True when
    malloc_trim ran."""
    gc.collect()
    return heap.trim()
