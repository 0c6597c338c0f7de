"""The import fast lane's per-UPDATE step, pure Python: the twin of the
compiled ``_lanestep.pyx`` (identical behaviour; tests run both).

``take(lane, parsed, i)`` does, for ``parsed[i]``, ``parsed[i + 1]``, ...,
what :class:`fastbgp.daemon.fastlane.FastLane` does for the common case of
a batch (see that module's docstring) and returns the index of the first
UPDATE it did not take (``len(parsed)`` when it took them all):

* it stops *before* an UPDATE that is not the lane's (a withdrawal, an RFC
  7606 action, our next hop, a chain that looks at prefixes ...): nothing
  of it was done but the import cache's fill (and what the general path
  stores again into the pre-policy view, unchanged), and the caller hands
  it to the general path;
* with a prefix limit (``lane.limits``: every RIB change is made at once and
  checked) it stops *after* each UPDATE it took, so that the caller sees a
  session the limit ended.

Per UPDATE: the family, next hop and packed prefixes; RFC 6811 validation
through ``lane.states`` (one bulk call; an UPDATE whose prefixes have
several states goes whole through ``lane.split``, which groups them as the
general path does); the session's memo ``lane.seen`` of (family, attributes,
next hop, state), filled by ``lane.first`` on a miss; the pre-policy view's
upkeep (``lane.view``: ``drop`` when the stored path
gives the received one back, else ``store``); the RIB change appended to
``lane.runs`` (or made at once by ``lane.apply`` with a prefix limit).

Called by: fastbgp.daemon.importer (``Importer.updates_in``), through the
selector fastbgp.daemon.lanestep.
"""

from __future__ import annotations

from fastbgp.daemon.common import next_hop_refused
from fastbgp.wire.constants import IPV4_UNICAST

IMPLEMENTATION = "python"

__all__ = ["IMPLEMENTATION", "take"]


def take(lane, parsed, i):
    """See the module docstring."""
    n = len(parsed)
    fams = lane.fams
    own4, own_mp = lane.own4, lane.own_mp
    cfg = lane.nb.cfg
    states_of = lane.states
    seen = lane.seen
    runs_of = lane.runs
    pre = lane.pre
    view = lane.view
    pid = lane.nb.pid
    # The view holds nothing of this peer in a family: drop has nothing to
    # do there (recomputed after anything that may store into it).
    holds = {} if pre else None
    while i < n:
        p = parsed[i]
        if p.withdrawn or p.mp_unreach is not None or p.action:
            return i
        mpr = p.mp_reach
        if p.nlri:
            if mpr is not None or IPV4_UNICAST not in fams or p.next_hop in own4:
                return i  # RFC 4271 §6.3 (our next hop): handled and logged by process_update
            fam, nh, packed = IPV4_UNICAST, b"", p.nlri
        elif mpr is not None and mpr[3]:
            fam = (mpr[0], mpr[1])
            nh = bytes(mpr[2])
            if fam not in fams or nh[:16] in own_mp or next_hop_refused(cfg, fam, nh):
                return i  # our next hop, or RFC 8950 §4 not offered: process_update says why
            packed = mpr[3]
        else:
            return i
        attrs = p.attrs
        runs = runs_of.get(fam)
        state = None
        if states_of is not None:
            # RFC 6811: one bulk validation per UPDATE (one origin); the
            # prefixes grouped by state as the general path groups them.
            states = states_of(fam[0], attrs, packed)
            if not states:
                return i
            if states.count(states[0]) != len(states):
                # A prefix limit: the general path checks it once for the
                # whole UPDATE.
                if runs is None or not lane.split(fam, attrs, nh, states, packed):
                    return i
                if pre:
                    holds.clear()  # split may have stored into the view
                i += 1
                continue
            state = states[0]
        # One part, the UPDATE's own: the commonest case.
        key = (fam, attrs, nh, state)
        got = seen.get(key)
        if got is None:
            got = lane.first(key, packed)
            if got is None:
                return i
            if pre:
                holds.clear()  # first may have stored into the view
        elif pre:
            if got[2]:
                h = holds.get(fam)
                if h is None:
                    h = holds[fam] = view.holds(pid, fam)
                if h:
                    view.drop(pid, fam, packed, False)  # what store does when it maps back
            else:
                view.store(pid, fam, attrs, nh, packed, False, got[0])
                holds.pop(fam, None)
        if runs is None:
            lane.apply(fam, packed, got)
            return i + 1
        runs.append((packed, got[0], got[1]))
        i += 1
    return i

