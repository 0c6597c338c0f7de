# cython: language_level=3
"""The import fast lane's per-UPDATE step, compiled: the twin of
``_lanestep_py.py`` with identical behaviour (its docstring is the
contract, ``take`` and ``take_raw``; tests run both).  The step is the daemon's per-UPDATE work for
most of a table; compiled, its bookkeeping (field reads, set and dict
look-ups, the one-state check) costs C calls instead of bytecode.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.mem cimport PyMem_Free, PyMem_Realloc
from cpython.pycapsule cimport PyCapsule_GetPointer
from libc.stdint cimport uint64_t
from libc.string cimport memcmp, memcpy

from fastbgp.wire._codec cimport attr_end, nlri_count

from fastbgp.daemon.common import next_hop_refused
from fastbgp.wire.constants import IPV4_UNICAST
from fastbgp.wire.errors import BGPError

IMPLEMENTATION = "cython"

__all__ = ["IMPLEMENTATION", "Step", "take", "take_raw", "raw_key"]

cdef object _IPV4 = IPV4_UNICAST

# VrpTable.states_api's function (fastbgp.rpki._vrp).
ctypedef Py_ssize_t (*states_fn)(object, int, const unsigned char *, Py_ssize_t, long long, unsigned char *) noexcept

# take_raw's keys remembered per batch (a power of two).  A table's
# attribute sets come interleaved -- in bench/rpki_vs_bird.py's 736k UPDATEs,
# an UPDATE's key was last seen 1 UPDATE before in 0.7% of them, at most 3
# before in 46%, 63 before in 87% -- so a few dozen slots catch most
# repeats (81% at 64 slots, started empty each batch of 256) without
# building the key, hashing it and probing the memo's dict.
cdef enum:
    KEYS_SEEN = 64

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
    cdef object rov_table, rov_origin
    cdef states_fn rov_states  # the compiled VrpTable's states (VrpTable.states_api), or NULL
    cdef unsigned char *buf  # room for rov_states' output
    cdef Py_ssize_t bufcap
    # take_raw's keys found in the memo during this batch, and their
    # entries: KEYS_SEEN slots, a key in the one its _key_hash picks (the
    # memo's raw dict is the lane's for the batch).
    cdef list seen_keys, seen_hits
    cdef dict seen, runs_of, holds, rov_known
    cdef bint pre, rov

    def __cinit__(self, lane):
        cdef object api
        self.lane = lane
        self.fams = lane.fams
        self.own4 = lane.own4
        self.own_mp = lane.own_mp
        self.cfg = lane.nb.cfg
        self.states_of = lane.states
        rov = lane.rov
        self.rov = rov is not None
        if self.rov:
            self.rov_table, self.rov_known, self.rov_origin = rov  # RpkiFeed.plain_validation
            api = getattr(self.rov_table, "states_api", None)  # not on the twin VrpTable
            if api is not None:
                self.rov_states = <states_fn>PyCapsule_GetPointer(api(), b"fastbgp.rpki._vrp.states")
        self.seen = lane.seen
        self.runs_of = lane.runs
        self.pre = bool(lane.pre)
        self.view = lane.view
        self.pid = lane.nb.pid
        self.holds = {}
        self.seen_keys = [None] * KEYS_SEEN
        self.seen_hits = [None] * KEYS_SEEN

    def __dealloc__(self):
        PyMem_Free(self.buf)

    cdef object _validate(self, object fam, object attrs, object packed, list entry):
        """RFC 6811: the states of ``packed`` (one origin, the UPDATE's) as
        validate_packed gives them, or, through the compiled table, the one
        state all its prefixes share (a small int) without a bytes object;
        b"" when there are none.  The origin kept in the raw memo's
        ``entry`` when there is one (see the twin's _learn)."""
        cdef object o = None if entry is None else entry[8]
        cdef Py_ssize_t n, k, j
        cdef unsigned char *b
        if o is None:
            o = self.rov_known.get(attrs)
            if o is None:
                o = self.rov_origin(attrs)
            if entry is not None:
                entry[8] = o
        if self.rov_states == NULL or type(packed) is not bytes:
            return self.rov_table.validate_packed(fam[0], packed, o)
        n = PyBytes_GET_SIZE(packed)
        if n > self.bufcap:
            b = <unsigned char *>PyMem_Realloc(self.buf, n)
            if b == NULL:
                raise MemoryError()
            self.buf = b
            self.bufcap = n
        k = self.rov_states(self.rov_table, 1 if fam is _IPV4 else <int>fam[0],
                            <const unsigned char *>PyBytes_AS_STRING(packed), n, <long long>o, self.buf)
        if k < 0:
            raise ValueError("malformed NLRI")  # as validate_packed
        for j in range(1, k):
            if self.buf[j] != self.buf[0]:
                return PyBytes_FromStringAndSize(<const char *>self.buf, k)
        return self.buf[0] if k else b""

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
                states = self._validate(fam, attrs, packed, entry)
                if type(states) is int:
                    state = states  # one state: the commonest case, without a bytes object
            else:
                states = self.states_of(fam[0], attrs, packed)
            if state is None:
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
        raw[key] = [_IPV4, p.attrs, b"", p.next_hop, None, None, None, None, None]
    else:
        mpr = p.mp_reach
        nh = bytes(mpr[2])
        raw[key] = [(mpr[0], mpr[1]), p.attrs, nh, nh[:16], None, None, None, None, None]
    return 0


def raw_key(body):
    """See the twin's docstring (fastbgp.daemon._lanestep_py)."""
    cdef Shape sh
    if type(body) is not bytes:
        body = bytes(body)
    if not _shape(<const unsigned char *>PyBytes_AS_STRING(body), PyBytes_GET_SIZE(body), &sh):
        return None
    return _key_of(<const unsigned char *>PyBytes_AS_STRING(body), &sh)


cdef struct Shape:
    # Where a body raw_key accepts keeps its parts: the path attribute
    # block's end (a1), its prefixes at [ns, ne); for one MP_REACH_NLRI
    # (kind 6), the attribute's header (hs), value start (mvs) and end (mve).
    int kind  # 4: IPv4 NLRI, 6: one unicast MP_REACH_NLRI
    Py_ssize_t a1, ns, ne, hs, mvs, mve


cdef bint _shape(const unsigned char *p, Py_ssize_t m, Shape *sh):
    """Whether the body has a raw key (see the twin's _raw_shape), its parts
    in ``sh``; no allocation."""
    cdef Py_ssize_t a1, pos, vs, ve, hs = -1, mvs = 0, mve = 0, s
    cdef int code
    # RFC 4271 §4.3: withdrawn routes length, path attribute length.
    if m < 4 or p[0] or p[1]:
        return False  # withdrawals (or too short: the codec says why)
    a1 = 4 + ((p[2] << 8) | p[3])
    if a1 > m:
        return False  # lengths that overrun: the codec's error
    sh.a1 = a1
    if a1 < m:
        if nlri_count(p, a1, m, 32, False) <= 0:
            return False  # malformed NLRI: the codec's error
        sh.kind = 4
        sh.ns = a1
        sh.ne = m
        return True
    pos = 4
    while pos < a1:
        try:
            ve = attr_end(p, a1, pos, &vs)  # the codec's framing of one attribute (RFC 4271 §4.3)
        except IndexError:
            return False  # a header that overruns the block: the codec's error
        if ve > a1:
            return False
        code = p[pos + 1]
        if code == 15 or (code == 14 and hs >= 0):
            return False  # RFC 7606 §3 g, withdrawals: the general path
        if code == 14:
            hs = pos
            mvs = vs
            mve = ve
        pos = ve
    if hs < 0:
        return False  # nothing announced
    # RFC 4760 §3: AFI, SAFI, next hop length, next hop, reserved, NLRI.
    if mve - mvs < 5 or p[mvs + 2] != 1 or p[mvs] != 0 or (p[mvs + 1] != 1 and p[mvs + 1] != 2):
        return False  # only unicast IPv4 / IPv6 (the NLRI encoding checked here)
    s = mvs + 5 + p[mvs + 3]
    if s >= mve or nlri_count(p, s, mve, 32 if p[mvs + 1] == 1 else 128, False) <= 0:
        return False
    sh.kind = 6
    sh.ns = s
    sh.ne = mve
    sh.hs = hs
    sh.mvs = mvs
    sh.mve = mve
    return True


cdef int _key_parts(const unsigned char *p, const Shape *sh, const unsigned char **part, Py_ssize_t *size) noexcept:
    """The pieces of the body that follow the kind octet in its raw key,
    their count: for IPv4 NLRI the attribute block; for MP_REACH_NLRI the
    attributes before it with its flags and type, its value up to the
    prefixes, the attributes after it (the one layout _key_of and _has_key
    share)."""
    if sh.kind == 4:
        part[0] = p + 4
        size[0] = sh.a1 - 4
        return 1
    part[0] = p + 4
    size[0] = sh.hs + 2 - 4
    part[1] = p + sh.mvs
    size[1] = sh.ns - sh.mvs
    part[2] = p + sh.mve
    size[2] = sh.a1 - sh.mve
    return 3


cdef object _key_of(const unsigned char *p, const Shape *sh):
    """The raw key of a body of shape ``sh``: its octets less its prefixes
    (and, for MP_REACH_NLRI, less that attribute's length field)."""
    cdef const unsigned char *part[3]
    cdef Py_ssize_t size[3]
    cdef Py_ssize_t k = 1, j
    cdef int count = _key_parts(p, sh, part, size)
    for j in range(count):
        k += size[j]
    cdef bytes key = PyBytes_FromStringAndSize(NULL, k)
    cdef char *out = PyBytes_AS_STRING(key)
    out[0] = <char>sh.kind
    k = 1
    for j in range(count):
        memcpy(out + k, part[j], size[j])
        k += size[j]
    return key


cdef bint _has_key(const unsigned char *p, const Shape *sh, bytes key):
    """Whether ``_key_of(p, sh)`` would equal ``key``, without building it."""
    cdef const char *q = PyBytes_AS_STRING(key)
    cdef const unsigned char *part[3]
    cdef Py_ssize_t size[3]
    cdef Py_ssize_t k = 1, j
    cdef int count
    if q[0] != sh.kind:
        return False
    count = _key_parts(p, sh, part, size)
    for j in range(count):
        k += size[j]
    if k != PyBytes_GET_SIZE(key):
        return False
    k = 1
    for j in range(count):
        if memcmp(q + k, part[j], size[j]) != 0:
            return False
        k += size[j]
    return True


cdef uint64_t _key_hash(const unsigned char *p, const Shape *sh) noexcept:
    """A hash of ``_key_of(p, sh)`` from the body's own octets (no key
    built), eight octets at a time; its top bits pick take_raw's slot."""
    cdef const unsigned char *part[3]
    cdef Py_ssize_t size[3]
    cdef int count = _key_parts(p, sh, part, size), j
    cdef uint64_t h = <uint64_t>sh.kind * 0x9E3779B97F4A7C15ULL, w
    cdef const unsigned char *q
    cdef Py_ssize_t n
    for j in range(count):
        q = part[j]
        n = size[j]
        while n >= 8:
            memcpy(&w, q, 8)
            h = (h ^ w) * 0x9E3779B97F4A7C15ULL
            h ^= h >> 29
            q += 8
            n -= 8
        w = 0
        memcpy(&w, q, n)
        h = (h ^ w ^ (<uint64_t>n << 56)) * 0xBF58476D1CE4E5B9ULL
        h ^= h >> 31
    return h >> 32


def take_raw(Step st, list bodies, Py_ssize_t i, parse, ctx):
    """See the twin's docstring (fastbgp.daemon._lanestep_py): plain
    announcements taken from their bodies, without a parse when the memo
    knows their key."""
    cdef Py_ssize_t n = len(bodies)
    cdef dict raw = st.lane.raw
    cdef object fams = st.fams
    cdef object body, key, hit, fam, p, known
    cdef const unsigned char *b
    cdef Shape sh
    cdef int r
    cdef Py_ssize_t slot
    if st.pre:
        st.holds.clear()  # the general path may have stored into the view since
    while i < n:
        body = bodies[i]
        if type(body) is not bytes:
            return i, None  # framing gives bytes; anything else through the caller's parse
        b = <const unsigned char *>PyBytes_AS_STRING(body)
        if not _shape(b, PyBytes_GET_SIZE(body), &sh):
            return i, None
        slot = _key_hash(b, &sh) & (KEYS_SEEN - 1)
        known = (<list>st.seen_keys)[slot]
        if known is not None and _has_key(b, &sh, <bytes>known):
            # A key this batch found in the memo (KEYS_SEEN): the same
            # entry, whose checks below passed for this batch's Step.
            hit = (<list>st.seen_hits)[slot]
        else:
            key = _key_of(b, &sh)
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
            if fam not in fams:
                return i, None
            if sh.kind == 4:
                if (<list>hit)[3] in st.own4:
                    return i, None  # RFC 4271 §6.3: process_update logs it
            elif (<list>hit)[3] in st.own_mp or next_hop_refused(st.cfg, fam, (<list>hit)[2]):
                return i, None  # our next hop, or RFC 8950 §4 not offered: process_update says why
            (<list>st.seen_keys)[slot] = key
            (<list>st.seen_hits)[slot] = hit
        r = st.step((<list>hit)[0], (<list>hit)[1], (<list>hit)[2],
                    PyBytes_FromStringAndSize(<const char *>b + sh.ns, sh.ne - sh.ns), <list>hit)
        if r == STOP or r == AFTER:
            return (i + 1 if r == AFTER else i), None
        i += 1
    return i, None
