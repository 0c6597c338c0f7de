"""The import fast lane's per-UPDATE step, pure Python: the twin of the
compiled ``_lanestep.pyx`` (identical behaviour; tests run both).

``take(st, parsed, i)`` (``st``: the batch's ``Step(lane)``) does, for
``parsed[i]``, ``parsed[i + 1]``, ..., what
:class:`fastbgp.daemon.fastlane.FastLane` does for the common case of
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
through ``lane.rov`` or ``lane.states`` (one bulk call; an UPDATE whose
prefixes have several states goes whole through ``lane.split``, which
groups them as the general path does); the session's memo ``lane.seen`` of (family, attributes,
next hop, state), filled by ``lane.first`` on a miss; the pre-policy view's
upkeep (``lane.view``: ``drop`` when the stored path
gives the received one back, else ``store``); the RIB change appended to
``lane.runs`` (or made at once by ``lane.apply`` with a prefix limit).

``take_raw(st, bodies, i, parse, ctx)`` is the same step for UPDATE
*bodies* that were not parsed, and returns (index, parse): it takes
``bodies[i]``, ``bodies[i + 1]``, ... and stops before the first body it
does not take, giving back that body's parse when it made one (else None:
the caller parses it, the codec's error included).  A body whose
``raw_key`` the session's memo ``lane.raw`` knows is taken straight from
its octets; one with a new key is parsed (``parse(body, ctx)``) and taken
as ``take`` takes it; then, when its set was in ``seen`` already (its
second UPDATE or later: a set's first UPDATE may be its only one), its key
is remembered with what the parse gave (family, canonical attributes,
next hop: ``_learn``).  Not when the codec handled errors in it (the
caller counts and logs those).
``raw_key(body)`` is None unless the body is a plain announcement of one
of two shapes, else the body's octets less its prefixes:

* IPv4 NLRI: no withdrawn routes, a well-formed non-empty NLRI field;
  the key is the attribute block as received;
* one MP_REACH_NLRI of IPv4 or IPv6 unicast (RFC 4760 §3), no IPv4 NLRI,
  no withdrawn routes, no MP_UNREACH_NLRI, its NLRI well-formed and not
  empty; the key is the attribute block without the MP_REACH_NLRI's
  length field and prefixes (the flags, type, AFI, SAFI, next hop and
  reserved octet stay in it).

The codec's parse of such a body depends on nothing but its key, that
its prefixes are well-formed and not empty, and the session's context
(fixed for the memo's life): so a body with a known key gives exactly what
``take`` would get from its parse, and the step goes on as ``take`` does
from there.  The key starts with its shape (4 or 6), so that the shapes
never meet.

Called by: fastbgp.daemon.importer (``Importer.updates_in`` and
``Importer.bodies_in``), through the selector fastbgp.daemon.lanestep.
"""

from __future__ import annotations

from fastbgp.daemon.common import next_hop_refused
from fastbgp.wire import codec
from fastbgp.wire.constants import IPV4_UNICAST
from fastbgp.wire.errors import BGPError

IMPLEMENTATION = "python"

__all__ = ["IMPLEMENTATION", "Step", "take", "take_raw", "raw_key"]

# What step() tells its caller about one UPDATE.
STOP = 0  # not the lane's: nothing of it was done (see the module docstring)
NEXT = 1  # taken; go on
AFTER = 2  # taken and its RIB change made at once (a prefix limit): stop after it
FIRST = 3  # taken, the first of its set in the session's memo (lane.first worked it out)


class Step:
    """What the lane step reads of one batch's lane (a FastLane), once:
    made by the importer per batch and passed to every take / take_raw."""

    __slots__ = ("lane", "fams", "own4", "own_mp", "cfg", "states_of", "rov", "seen", "runs_of", "pre", "view",
                 "pid", "holds")

    def __init__(self, lane):
        self.lane = lane
        self.fams = lane.fams
        self.own4, self.own_mp = lane.own4, lane.own_mp
        self.cfg = lane.nb.cfg
        self.states_of = lane.states
        self.rov = lane.rov
        self.seen = lane.seen
        self.runs_of = lane.runs
        self.pre = lane.pre
        self.view = lane.view
        self.pid = lane.nb.pid
        # The view holds nothing of this peer in a family: drop has nothing to
        # do there (recomputed after anything that may store into it).
        self.holds = {} if self.pre else None

    def step(self, fam, attrs, nh, packed, entry=None):
        """One UPDATE of the lane's shape (family, canonical attributes,
        next hop, packed prefixes): STOP, NEXT, FIRST or AFTER.  ``entry``: the
        raw memo's entry of its key (take_raw), whose slots 4-7 keep what
        ``seen`` gave for each state (not-found, valid, invalid, none)."""
        lane = self.lane
        pre = self.pre
        runs = self.runs_of.get(fam)
        state = None
        rov = self.rov
        if rov is not None or self.states_of is not None:
            # RFC 6811: one bulk validation per UPDATE (one origin); the
            # prefixes grouped by state as the general path groups them.
            if rov is not None:
                table, known, origin = rov  # RpkiFeed.plain_validation
                o = None if entry is None else entry[8]
                if o is None:
                    o = known.get(attrs)
                    if o is None:
                        o = origin(attrs)
                    if entry is not None:
                        entry[8] = o
                states = table.validate_packed(fam[0], packed, o)
            else:
                states = self.states_of(fam[0], attrs, packed)
            if not states:
                return STOP
            if states.count(states[0]) != len(states):
                # A prefix limit: the general path checks it once for the
                # whole UPDATE.
                if runs is None or not lane.split(fam, attrs, nh, states, packed):
                    return STOP
                if pre:
                    self.holds.clear()  # split may have stored into the view
                return NEXT
            state = states[0]
        # One part, the UPDATE's own: the commonest case.
        slot = -1 if entry is None else (7 if state is None else (4 + state if 0 <= state <= 2 else -1))
        got = entry[slot] if slot >= 0 else None
        fresh = False
        if got is None:
            key = (fam, attrs, nh, state)
            got = self.seen.get(key)
            if got is None:
                fresh = True
                got = lane.first(key, packed)
                if got is None:
                    return STOP
                if pre:
                    self.holds.clear()  # first may have stored into the view
            if slot >= 0:
                entry[slot] = got  # what seen holds for the key, for the memo's life
        if pre and not fresh:
            view, pid, holds = self.view, self.pid, self.holds
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
            return AFTER
        runs.append((packed, got[0], got[1]))
        return FIRST if fresh else NEXT


def take(st, parsed, i):
    """See the module docstring (``st``: the batch's Step)."""
    n = len(parsed)
    if st.pre:
        st.holds.clear()  # the general path may have stored into the view since
    while i < n:
        r = _take_parsed(st, parsed[i])
        if r == STOP or r == AFTER:
            return i + 1 if r == AFTER else i  # AFTER: a prefix limit may have ended the session
        i += 1
    return i


def _take_parsed(st, p):
    """``take`` for one ParsedUpdate: STOP, NEXT, FIRST or AFTER."""
    if p.withdrawn or p.mp_unreach is not None or p.action:
        return STOP
    mpr = p.mp_reach
    if p.nlri:
        if mpr is not None or IPV4_UNICAST not in st.fams or p.next_hop in st.own4:
            return STOP  # RFC 4271 §6.3 (our next hop): handled and logged by process_update
        fam, nh, packed = IPV4_UNICAST, b"", p.nlri
    elif mpr is not None and mpr[3]:
        fam = (mpr[0], mpr[1])
        nh = bytes(mpr[2])
        if fam not in st.fams or nh[:16] in st.own_mp or next_hop_refused(st.cfg, fam, nh):
            return STOP  # our next hop, or RFC 8950 §4 not offered: process_update says why
        packed = mpr[3]
    else:
        return STOP
    return st.step(fam, p.attrs, nh, packed)


def _learn(raw, key, p):
    """The memo entry of ``key`` from ``p``, its body's parse, which the lane
    took (so without errors or an RFC 7606 action): [family, canonical
    attributes, next hop as the lane keys it, the value checked against our
    own addresses, then what ``seen`` gives for the set in each RFC 6811
    state -- not-found, valid, invalid, not validated -- filled by the step
    as it learns it (``seen`` never changes an entry while the memo
    lives), then the RFC 6811 origin of its attributes once the step
    validated one of its UPDATEs (the daemon's AS, which an empty AS_PATH
    gives, changes only with a reload, which drops the memo)]."""
    if key[0] == 4:
        raw[key] = [IPV4_UNICAST, p.attrs, b"", p.next_hop, None, None, None, None, None]
    else:
        mpr = p.mp_reach
        nh = bytes(mpr[2])
        raw[key] = [(mpr[0], mpr[1]), p.attrs, nh, nh[:16], None, None, None, None, None]


def raw_key(body):
    """The memo key of UPDATE ``body`` (see the module docstring), or None."""
    shape = _raw_shape(body)
    return None if shape is None else shape[0]


def _raw_shape(body):
    """(key, start, end of the prefixes) of a body raw_key accepts, or None."""
    m = len(body)
    # RFC 4271 §4.3: withdrawn routes length, path attribute length.
    if m < 4 or body[0] or body[1]:
        return None  # withdrawals (or too short: the codec says why)
    a1 = 4 + ((body[2] << 8) | body[3])
    if a1 > m:
        return None  # lengths that overrun: the codec's error
    if a1 < m:
        if not _well_formed(body[a1:], 1):
            return None  # malformed NLRI: the codec's error
        return b"\x04" + bytes(body[4:a1]), a1, m
    mp = None
    try:
        spans = codec.attr_spans(body, 4, a1)  # the codec's framing of the attributes (RFC 4271 §4.3)
    except IndexError:
        return None  # a header that overruns the block: the codec's error
    for _flags, code, vs, ve, pos in spans:
        if ve > a1:
            return None
        if code == 15 or (code == 14 and mp is not None):
            return None  # RFC 7606 §3 g, withdrawals: the general path
        if code == 14:
            mp = (pos, vs, ve)
    if mp is None:
        return None  # nothing announced
    hs, vs, ve = mp
    # RFC 4760 §3: AFI, SAFI, next hop length, next hop, reserved, NLRI.
    if ve - vs < 5 or body[vs + 2] != 1 or body[vs] != 0 or body[vs + 1] not in (1, 2):
        return None  # only unicast IPv4 / IPv6 (the NLRI encoding checked here)
    ns = vs + 5 + body[vs + 3]
    if ns >= ve or not _well_formed(body[ns:ve], body[vs + 1]):
        return None
    return b"\x06" + bytes(body[4:hs + 2]) + bytes(body[vs:ns]) + bytes(body[ve:a1]), ns, ve


def _well_formed(packed, afi):
    """Some prefixes, each well-formed for ``afi`` (the codec's check)."""
    try:
        return codec.count_prefixes(packed, afi) > 0
    except ValueError:
        return False


def take_raw(st, bodies, i, parse, ctx):
    """See the module docstring (``st``: the batch's Step; ``parse``: the
    codec's parse_update, with the session context ``ctx``)."""
    n = len(bodies)
    raw = st.lane.raw
    fams = st.fams
    if st.pre:
        st.holds.clear()  # the general path may have stored into the view since
    while i < n:
        body = bodies[i]
        shape = _raw_shape(body)
        if shape is None:
            return i, None
        key, ns, ne = shape
        hit = raw.get(key)
        if hit is None:
            # A key not seen yet: the codec's parse, taken as ``take`` would.
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
        fam, attrs, nh, next_hop = hit[0], hit[1], hit[2], hit[3]
        if fam not in fams:
            return i, None
        if key[0] == 4:
            if next_hop in st.own4:
                return i, None  # RFC 4271 §6.3: process_update logs it
        elif next_hop in st.own_mp or next_hop_refused(st.cfg, fam, nh):
            return i, None  # our next hop, or RFC 8950 §4 not offered: process_update says why
        r = st.step(fam, attrs, nh, bytes(body[ns:ne]), hit)
        if r == STOP or r == AFTER:
            return (i + 1 if r == AFTER else i), None
        i += 1
    return i, None
