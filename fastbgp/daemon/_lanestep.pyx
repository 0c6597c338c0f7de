# cython: language_level=3
"""The import fast lane's per-UPDATE step, compiled: the twin of
``_lanestep_py.py`` with identical behaviour (its docstring is the
contract, ``take`` and ``take_raw``; tests run both).  The step is the daemon's per-UPDATE work for
most of a table; compiled, its bookkeeping (field reads, set and dict
look-ups, the one-state check) costs C calls instead of bytecode.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.string cimport memcpy

from fastbgp.wire._codec cimport attr_end, nlri_count

from fastbgp.daemon.common import next_hop_refused
from fastbgp.wire.constants import IPV4_UNICAST
from fastbgp.wire.errors import BGPError

IMPLEMENTATION = "cython"

__all__ = ["IMPLEMENTATION", "Step", "take", "take_raw", "raw_key"]

cdef object _IPV4 = IPV4_UNICAST

# What _Step.step tells its caller about one UPDATE (see the twin).
cdef enum:
    STOP = 0
    NEXT = 1
    AFTER = 2
    FIRST = 3


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


cdef class Step:
    """What the lane step reads of one batch's lane, once (see the twin)."""
    cdef object lane, fams, own4, own_mp, cfg, states_of, view, pid
    cdef object rov_validate, rov_origin
    cdef dict seen, runs_of, holds, rov_known
    cdef bint pre, rov

    def __cinit__(self, lane):
        self.lane = lane
        self.fams = lane.fams
        self.own4 = lane.own4
        self.own_mp = lane.own_mp
        self.cfg = lane.nb.cfg
        self.states_of = lane.states
        rov = lane.rov
        self.rov = rov is not None
        if self.rov:
            self.rov_validate, self.rov_known, self.rov_origin = rov  # RpkiFeed.plain_validation
        self.seen = lane.seen
        self.runs_of = lane.runs
        self.pre = bool(lane.pre)
        self.view = lane.view
        self.pid = lane.nb.pid
        self.holds = {}

    cdef int _upkeep(self, object fam, object attrs, object nh, object part, tuple got) except -1:
        """The pre-policy view's upkeep for an UPDATE whose key the memo
        holds (see the twin)."""
        cdef object h
        if got[2]:
            h = self.holds.get(fam)
            if h is None:
                h = self.holds[fam] = self.view.holds(self.pid, fam)
            if h:
                self.view.drop(self.pid, fam, part, False)  # what store does when it maps back
        else:
            self.view.store(self.pid, fam, attrs, nh, part, False, got[0])
            self.holds.pop(fam, None)
        return 0

    cdef int step(self, object fam, object attrs, object nh, object packed, list entry) except -1:
        """One UPDATE of the lane's shape: STOP, NEXT, FIRST or AFTER; ``entry``
        the raw memo's entry of its key or None (see the twin)."""
        cdef object runs = self.runs_of.get(fam)
        cdef object state = None, states, key, got = None, o
        cdef Py_ssize_t slot = -1
        cdef bint fresh = False
        if self.rov or self.states_of is not None:
            # RFC 6811: one bulk validation per UPDATE (one origin); the
            # prefixes grouped by state as the general path groups them.
            if self.rov:
                o = self.rov_known.get(attrs)
                if o is None:
                    o = self.rov_origin(attrs)
                states = self.rov_validate(fam[0], packed, o)
            else:
                states = self.states_of(fam[0], attrs, packed)
            if not states:
                return STOP
            if not _one_state(states):
                # A prefix limit: the general path checks it once for the
                # whole UPDATE.
                if runs is None or not self.lane.split(fam, attrs, nh, states, packed):
                    return STOP
                if self.pre:
                    self.holds.clear()  # split may have stored into the view
                return NEXT
            state = states[0]
        # One part, the UPDATE's own: the commonest case, without a list.
        if entry is not None:
            if state is None:
                slot = 7
            elif 0 <= state <= 2:
                slot = 4 + <Py_ssize_t>state
            if slot >= 0:
                got = entry[slot]
        if got is None:
            key = (fam, attrs, nh, state)
            got = self.seen.get(key)
            if got is None:
                fresh = True
                got = self.lane.first(key, packed)
                if got is None:
                    return STOP
                if self.pre:
                    self.holds.clear()  # first may have stored into the view
            if slot >= 0:
                entry[slot] = got  # what seen holds for the key, for the memo's life
        if self.pre and not fresh:
            self._upkeep(fam, attrs, nh, packed, <tuple>got)
        if runs is None:
            self.lane.apply(fam, packed, got)
            return AFTER
        (<list>runs).append((packed, got[0], got[1]))
        return FIRST if fresh else NEXT


def take(Step st, list parsed, Py_ssize_t i):
    """See the twin's docstring (fastbgp.daemon._lanestep_py)."""
    cdef Py_ssize_t n = len(parsed)
    cdef int r
    if st.pre:
        st.holds.clear()  # the general path may have stored into the view since
    while i < n:
        r = _take_parsed(st, parsed[i])
        if r == STOP or r == AFTER:
            return i + 1 if r == AFTER else i  # AFTER: a prefix limit may have ended the session
        i += 1
    return i


cdef int _take_parsed(Step st, object p) except -1:
    """``take`` for one ParsedUpdate: STOP, NEXT, FIRST or AFTER (see the twin)."""
    cdef object mpr, fam, nh, packed
    if p.withdrawn or p.mp_unreach is not None or p.action:
        return STOP
    mpr = p.mp_reach
    packed = p.nlri
    if packed:
        if mpr is not None or _IPV4 not in st.fams or p.next_hop in st.own4:
            return STOP  # RFC 4271 §6.3 (our next hop): handled and logged by process_update
        fam = _IPV4
        nh = b""
    elif mpr is not None and mpr[3]:
        fam = (mpr[0], mpr[1])
        nh = bytes(mpr[2])
        if fam not in st.fams or nh[:16] in st.own_mp or next_hop_refused(st.cfg, fam, nh):
            return STOP  # our next hop, or RFC 8950 §4 not offered: process_update says why
        packed = mpr[3]
    else:
        return STOP
    return st.step(fam, p.attrs, nh, packed, None)


cdef int _learn(dict raw, bytes key, object p) except -1:
    """The memo entry of ``key`` from ``p`` (see the twin)."""
    cdef object mpr, nh
    if PyBytes_AS_STRING(key)[0] == 4:
        raw[key] = [_IPV4, p.attrs, b"", p.next_hop, None, None, None, None]
    else:
        mpr = p.mp_reach
        nh = bytes(mpr[2])
        raw[key] = [(mpr[0], mpr[1]), p.attrs, nh, nh[:16], None, None, None, None]
    return 0


def raw_key(body):
    """See the twin's docstring (fastbgp.daemon._lanestep_py)."""
    cdef Py_ssize_t ns, ne
    if type(body) is not bytes:
        body = bytes(body)
    return _raw_shape(<const unsigned char *>PyBytes_AS_STRING(body), PyBytes_GET_SIZE(body), &ns, &ne)


cdef object _raw_shape(const unsigned char *p, Py_ssize_t m, Py_ssize_t *ns, Py_ssize_t *ne):
    """The key of a body raw_key accepts, its prefixes at [ns, ne); else
    None (see the twin)."""
    cdef Py_ssize_t a1, pos, vs, ve, hs = -1, mvs = 0, mve = 0, s, k
    cdef int code
    cdef bytes key
    cdef char *out
    # RFC 4271 §4.3: withdrawn routes length, path attribute length.
    if m < 4 or p[0] or p[1]:
        return None  # withdrawals (or too short: the codec says why)
    a1 = 4 + ((p[2] << 8) | p[3])
    if a1 > m:
        return None  # lengths that overrun: the codec's error
    if a1 < m:
        if nlri_count(p, a1, m, 32, False) <= 0:
            return None  # malformed NLRI: the codec's error
        ns[0] = a1
        ne[0] = m
        key = PyBytes_FromStringAndSize(NULL, a1 - 3)
        out = PyBytes_AS_STRING(key)
        out[0] = 4
        memcpy(out + 1, p + 4, a1 - 4)
        return key
    pos = 4
    while pos < a1:
        try:
            ve = attr_end(p, a1, pos, &vs)  # the codec's framing of one attribute (RFC 4271 §4.3)
        except IndexError:
            return None  # a header that overruns the block: the codec's error
        if ve > a1:
            return None
        code = p[pos + 1]
        if code == 15 or (code == 14 and hs >= 0):
            return None  # RFC 7606 §3 g, withdrawals: the general path
        if code == 14:
            hs = pos
            mvs = vs
            mve = ve
        pos = ve
    if hs < 0:
        return None  # nothing announced
    # RFC 4760 §3: AFI, SAFI, next hop length, next hop, reserved, NLRI.
    if mve - mvs < 5 or p[mvs + 2] != 1 or p[mvs] != 0 or (p[mvs + 1] != 1 and p[mvs + 1] != 2):
        return None  # only unicast IPv4 / IPv6 (the NLRI encoding checked here)
    s = mvs + 5 + p[mvs + 3]
    if s >= mve or nlri_count(p, s, mve, 32 if p[mvs + 1] == 1 else 128, False) <= 0:
        return None
    ns[0] = s
    ne[0] = mve
    k = (hs + 2 - 4) + (s - mvs) + (a1 - mve)
    key = PyBytes_FromStringAndSize(NULL, 1 + k)
    out = PyBytes_AS_STRING(key)
    out[0] = 6
    memcpy(out + 1, p + 4, hs + 2 - 4)
    memcpy(out + 1 + (hs - 2), p + mvs, s - mvs)
    memcpy(out + 1 + (hs - 2) + (s - mvs), p + mve, a1 - mve)
    return key


def take_raw(Step st, list bodies, Py_ssize_t i, parse, ctx):
    """See the twin's docstring (fastbgp.daemon._lanestep_py): plain
    announcements taken from their bodies, without a parse when the memo
    knows their key."""
    cdef Py_ssize_t n = len(bodies), ns = 0, ne = 0
    cdef dict raw = st.lane.raw
    cdef object fams = st.fams
    cdef object body, key, hit, fam, nh, p
    cdef const unsigned char *b
    cdef int r
    if st.pre:
        st.holds.clear()  # the general path may have stored into the view since
    while i < n:
        body = bodies[i]
        if type(body) is not bytes:
            return i, None  # framing gives bytes; anything else through the caller's parse
        b = <const unsigned char *>PyBytes_AS_STRING(body)
        key = _raw_shape(b, PyBytes_GET_SIZE(body), &ns, &ne)
        if key is None:
            return i, None
        hit = raw.get(key)
        if hit is None:
            # A key not seen yet: the codec's parse, taken as take would.
            try:
                p = parse(body, ctx)
            except BGPError:
                return i, None  # the caller parses it again for the error
            if p.errors:
                return i, p  # the caller counts and logs what the codec handled
            r = _take_parsed(st, p)
            if r == STOP:
                return i, p
            if r == AFTER:
                return i + 1, None  # a prefix limit may have ended the session
            if r == NEXT:
                # The set's second UPDATE or later: worth a key.  Not the
                # first, which may well be its only one (a table where each
                # UPDATE brings its own set would fill the memo for nothing).
                _learn(raw, key, p)
            i += 1
            continue
        fam = (<list>hit)[0]
        nh = (<list>hit)[2]
        if fam not in fams:
            return i, None
        if PyBytes_AS_STRING(key)[0] == 4:
            if (<list>hit)[3] in st.own4:
                return i, None  # RFC 4271 §6.3: process_update logs it
        elif (<list>hit)[3] in st.own_mp or next_hop_refused(st.cfg, fam, nh):
            return i, None  # our next hop, or RFC 8950 §4 not offered: process_update says why
        r = st.step(fam, (<list>hit)[1], nh, PyBytes_FromStringAndSize(<const char *>b + ns, ne - ns), <list>hit)
        if r == STOP or r == AFTER:
            return (i + 1 if r == AFTER else i), None
        i += 1
    return i, None
