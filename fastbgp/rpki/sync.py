"""Changing the published RPKI data: the one place that turns a new full
data set (an RTR Reset Query answer, a re-read JSON file) into the
added/removed lists observers receive, and applies changes to the tables.

VRPs are tuples ``(afi, address bytes, length, max length, asn)``; ASPA
changes a mapping ``{customer: providers tuple, or None when withdrawn}``.
"""


def all_vrps(vrps):
    """The set of VRP tuples in VrpTable ``vrps``."""
    out = set()
    for afi in (1, 2):
        out.update((afi,) + e for e in vrps.entries(afi))
    return out


def full_diff(vrps, aspas, new_vrps, new_aspas):
    """(added, removed, aspa changes) taking the tables ``vrps`` /
    ``aspas`` to exactly ``new_vrps`` (a set of tuples) / ``new_aspas``
    ({customer: providers}).  Holds both VRP sets at once: done once per
    full reload, never per update."""
    old = all_vrps(vrps)
    added = sorted(new_vrps - old)
    removed = sorted(old - new_vrps)
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
