# cython: language_level=3
"""The import fast lane's per-UPDATE step, compiled: the twin of
``_lanestep_py.py`` with identical behaviour (its docstring is the
contract; tests run both).  The step is the daemon's per-UPDATE work for
most of a table; compiled, its bookkeeping (field reads, set and dict
look-ups, the one-state check) costs C calls instead of bytecode.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE

from fastbgp.daemon.common import next_hop_refused
from fastbgp.wire.constants import IPV4_UNICAST

IMPLEMENTATION = "cython"

__all__ = ["IMPLEMENTATION", "take"]

cdef object _IPV4 = IPV4_UNICAST


cdef inline bint _one_state(object states):
    """RFC 6811 states (one octet per prefix) all the same, and some."""
    cdef Py_ssize_t n, k
    cdef const unsigned char *s
    if not isinstance(states, bytes):
        return bool(states) and states.count(states[0]) == len(states)
    n = PyBytes_GET_SIZE(states)
    if n == 0:
        return False
    s = <const unsigned char *>PyBytes_AS_STRING(states)
    for k in range(1, n):
        if s[k] != s[0]:
            return False
    return True


cdef int _upkeep(object view, dict holds, object pid, object fam, object attrs, object nh, object part,
                 tuple got) except -1:
    """The pre-policy view's upkeep for an UPDATE whose key the batch has
    seen (see the twin)."""
    cdef object h
    if got[2]:
        h = holds.get(fam)
        if h is None:
            h = holds[fam] = view.holds(pid, fam)
        if h:
            view.drop(pid, fam, part, False)  # what store does when it maps back
    else:
        view.store(pid, fam, attrs, nh, part, False, got[0])
        holds.pop(fam, None)
    return 0


def take(lane, list parsed, Py_ssize_t i):
    """See the twin's docstring (fastbgp.daemon._lanestep_py)."""
    cdef Py_ssize_t n = len(parsed)
    cdef object fams = lane.fams
    cdef object own4 = lane.own4
    cdef object own_mp = lane.own_mp
    cdef object cfg = lane.nb.cfg
    cdef object states_of = lane.states
    cdef dict seen = lane.seen
    cdef dict runs_of = lane.runs
    cdef bint pre = bool(lane.pre)
    cdef object view = lane.view
    cdef object pid = lane.nb.pid
    cdef dict holds = {}
    cdef object p, mpr, fam, nh, packed, attrs, state, states, key, got, runs
    while i < n:
        p = parsed[i]
        if p.withdrawn or p.mp_unreach is not None or p.action:
            return i
        mpr = p.mp_reach
        packed = p.nlri
        if packed:
            if mpr is not None or _IPV4 not in fams or p.next_hop in own4:
                return i  # RFC 4271 §6.3 (our next hop): handled and logged by process_update
            fam = _IPV4
            nh = b""
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
            if not _one_state(states):
                # A prefix limit: the general path checks it once for the
                # whole UPDATE.
                if runs is None or not lane.split(fam, attrs, nh, states, packed):
                    return i
                if pre:
                    holds.clear()  # split may have stored into the view
                i += 1
                continue
            state = states[0]
        # One part, the UPDATE's own: the commonest case, without a list.
        key = (fam, attrs, nh, state)
        got = seen.get(key)
        if got is None:
            got = lane.first(key, packed)
            if got is None:
                return i
            if pre:
                holds.clear()  # first may have stored into the view
        elif pre:
            _upkeep(view, holds, pid, fam, attrs, nh, packed, <tuple>got)
        if runs is None:
            lane.apply(fam, packed, got)
            return i + 1
        (<list>runs).append((packed, got[0], got[1]))
        i += 1
    return i
