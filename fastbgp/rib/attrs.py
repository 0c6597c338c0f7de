"""Interned path attributes: one small integer per distinct attribute set.

A full Internet table has about a million prefixes but only a few hundred
thousand distinct attribute sets (far fewer per UPDATE burst), so the RIB
stores a 32-bit ``attr_id`` per path and keeps each canonical attribute block
(``ParsedUpdate.attrs``: 4-octet AS form, MP_* removed) once, here.

Interning and parsing happen once per UPDATE, never per prefix, so this
module is pure Python and shared by both RIB implementations.  What best-path
selection needs is parsed once per attribute set and stored in ``records``, a
flat ``array('I')`` of WORDS uint32 per id that the compiled RIB reads through
a raw pointer (and the pure-Python RIB by index).  The reference count lives
in the same record so the compiled RIB can adjust it without calling back
into Python per path; after a bulk operation the RIB hands the ids whose
count fell to zero to ``collect``.  ``records`` and ``collect`` are the
interface between this table and the RIBs, nothing else writes them.

Reference counting: ``intern`` gives the caller one reference (drop it with
``release`` once the UPDATE has been applied); every path stored in a RIB
holds one more.  An entry is freed the moment its count reaches zero, and
freed ids are reused smallest first, so id assignment does not depend on the
order in which a RIB happened to drop paths.
"""

import heapq
from array import array
from typing import NamedTuple

from fastbgp.wire.codec import decode_segments, split_attrs  # compiled when built (as4's otherwise)
from fastbgp.wire.constants import (
    AS_CONFED_SEGMENTS,
    AS_SEQUENCE,
    AS_SET,
    ATTR_AS_PATH,
    ATTR_ATOMIC_AGGREGATE,
    ATTR_CLUSTER_LIST,
    ATTR_COMMUNITIES,
    ATTR_EXT_COMMUNITIES,
    ATTR_LARGE_COMMUNITY,
    ATTR_LOCAL_PREF,
    ATTR_MED,
    ATTR_NAMES,
    ATTR_NEXT_HOP,
    ATTR_ORIGIN,
    ATTR_ORIGINATOR_ID,
    COMMUNITY_BLACKHOLE,
    COMMUNITY_GRACEFUL_SHUTDOWN,
    COMMUNITY_NO_ADVERTISE,
    COMMUNITY_NO_EXPORT,
    COMMUNITY_NO_EXPORT_SUBCONFED,
    FLAG_EXTENDED_LENGTH,
    FLAG_OPTIONAL,
    FLAG_PARTIAL,
    FLAG_TRANSITIVE,
    ORIGIN_INCOMPLETE,
)

# ---------------------------------------------------------------- record layout
# WORDS uint32 per id.  The compiled RIB declares the same layout as a C
# struct and refuses to import if these numbers ever disagree with it.
W_LP_INV = 0  # 0xFFFFFFFF - LOCAL_PREF, so that lower is better like the rest
W_PATH = 1  # min(AS_PATH length, 2**24 - 1) << 8 | ORIGIN: lower is better
W_MED = 2
W_NEIGHBOR_AS = 3
W_ORIGINATOR_ID = 4  # valid when F_ORIGINATOR_ID is set
W_CLUSTER_LEN = 5  # CLUSTER_LIST entries
W_FLAGS = 6
W_REFS = 7
WORDS = 8
_ZERO_RECORD = array("I", bytes(4 * WORDS))  # a freed id's record (copied from, never changed)

# W_FLAGS bits.
F_LIVE = 1 << 0  # the id is allocated
F_ORIGINATOR_ID = 1 << 1
F_MED = 1 << 2  # MULTI_EXIT_DISC present (W_MED is its value)
F_LOCAL_PREF = 1 << 3  # LOCAL_PREF present (else the default was used)
F_COMMUNITIES = 1 << 4
F_EXT_COMMUNITIES = 1 << 5
F_LARGE_COMMUNITIES = 1 << 6
F_ATOMIC_AGGREGATE = 1 << 7
F_NO_EXPORT = 1 << 8  # RFC 1997
F_NO_ADVERTISE = 1 << 9  # RFC 1997
F_NO_EXPORT_SUBCONFED = 1 << 10  # RFC 1997
F_GRACEFUL_SHUTDOWN = 1 << 11  # RFC 8326
F_BLACKHOLE = 1 << 12  # RFC 7999
F_UNKNOWN_TRANSITIVE = 1 << 13  # propagate_attrs will set the Partial bit
F_UNKNOWN_NON_TRANSITIVE = 1 << 14  # propagate_attrs will drop something
F_NEXT_HOP = 1 << 15  # a next hop is known (NEXT_HOP attribute or MP next hop)

WELL_KNOWN_COMMUNITY_FLAGS = {
    COMMUNITY_NO_EXPORT: F_NO_EXPORT,
    COMMUNITY_NO_ADVERTISE: F_NO_ADVERTISE,
    COMMUNITY_NO_EXPORT_SUBCONFED: F_NO_EXPORT_SUBCONFED,
    COMMUNITY_GRACEFUL_SHUTDOWN: F_GRACEFUL_SHUTDOWN,
    COMMUNITY_BLACKHOLE: F_BLACKHOLE,
}

DEFAULT_LOCAL_PREF = 100
MED_WORST = 0xFFFFFFFF
_PATH_LEN_MAX = (1 << 24) - 1

# Attribute types fastbgp recognises (RFC 4271 §5: everything else is
# "unrecognized" for the purpose of propagation).
KNOWN_ATTRS = frozenset(ATTR_NAMES)


class AttrInfo(NamedTuple):
    """Everything parsed from one interned attribute set (for policy, the CLI
    and tests; the RIB itself reads the packed record)."""

    attrs: bytes
    next_hop: bytes
    origin: int
    as_path_len: int
    neighbor_as: int
    local_pref: int
    has_local_pref: bool
    med: int  # as used by best-path selection (absent: 0, or MED_WORST)
    has_med: bool
    originator_id: object  # int, or None when absent
    cluster_list_len: int
    communities: tuple
    flags: int
    refcount: int


def _u32(v):
    return int.from_bytes(v, "big") if len(v) == 4 else None


def as_path_length(segments):
    """RFC 4271 §9.1.2.2 (a): an AS_SET counts as 1 whatever its size;
    RFC 5065 §5.3: confederation segments do not count at all."""
    n = 0
    for st, asns in segments:
        if st == AS_SEQUENCE:
            n += len(asns)
        elif st == AS_SET:
            n += 1
    return n


def neighbor_as(segments):
    """The AS the route was learned from, for RFC 4271 §9.1.2.2 (c): the first
    AS of the leftmost AS_SEQUENCE once confederation segments (our own
    confederation, RFC 5065 §5.3) are skipped; 0 when the path is empty or
    starts with an AS_SET (a route originated inside our AS, whose MEDs are
    then compared together)."""
    for st, asns in segments:
        if st in AS_CONFED_SEGMENTS:
            continue
        if st == AS_SEQUENCE and asns:
            return asns[0]
        return 0
    return 0


def record_words(attrs, next_hop=b"", med_missing_as_worst=False):
    """The record words (less the refcount) of one canonical attribute
    block, what AttrTable.intern stores for each new set: parse_fields'
    first half.  The compiled RIB's record_words walks the block in C
    (tests/test_attr_record.py holds the two equal)."""
    return parse_fields(attrs, next_hop, med_missing_as_worst)[0]


_OWN_WORDS = record_words  # AttrTable's default (its parameter has the same name)


def parse_fields(attrs, next_hop=b"", med_missing_as_worst=False):
    """(words for the record minus the refcount, AttrInfo fields dict) of one
    canonical attribute block.  ``next_hop``: the MP_REACH next hop, which
    takes the place of the NEXT_HOP attribute (RFC 4760 §3)."""
    origin = ORIGIN_INCOMPLETE  # absent only on locally built sets: least preferred
    segs = []
    local_pref = None
    med = None
    originator = None
    cluster_len = 0
    communities = ()
    flags = F_LIVE
    nh = bytes(next_hop)
    for f, t, v in split_attrs(attrs):
        if t == ATTR_ORIGIN and len(v) == 1:
            origin = v[0]
        elif t == ATTR_AS_PATH:
            segs = decode_segments(v, 4)
        elif t == ATTR_NEXT_HOP and not nh:
            nh = v
        elif t == ATTR_MED:
            med = _u32(v)
        elif t == ATTR_LOCAL_PREF:
            local_pref = _u32(v)
        elif t == ATTR_ATOMIC_AGGREGATE:
            flags |= F_ATOMIC_AGGREGATE
        elif t == ATTR_COMMUNITIES:
            flags |= F_COMMUNITIES
            communities = tuple(int.from_bytes(v[i : i + 4], "big") for i in range(0, len(v) - 3, 4))
            for c in communities:
                flags |= WELL_KNOWN_COMMUNITY_FLAGS.get(c, 0)
        elif t == ATTR_ORIGINATOR_ID:
            originator = _u32(v)
        elif t == ATTR_CLUSTER_LIST:
            cluster_len = len(v) // 4
        elif t == ATTR_EXT_COMMUNITIES:
            flags |= F_EXT_COMMUNITIES
        elif t == ATTR_LARGE_COMMUNITY:
            flags |= F_LARGE_COMMUNITIES
        elif t not in KNOWN_ATTRS:
            if f & FLAG_TRANSITIVE:
                flags |= F_UNKNOWN_TRANSITIVE
            else:
                flags |= F_UNKNOWN_NON_TRANSITIVE
    if nh:
        flags |= F_NEXT_HOP
    has_lp = local_pref is not None
    if has_lp:
        flags |= F_LOCAL_PREF
    else:
        # RFC 4271 §9.1.1 leaves the degree of preference to local policy;
        # 100 is the value every implementation assumes when LOCAL_PREF is
        # absent (eBGP routes: the codec discards LOCAL_PREF from them).
        local_pref = DEFAULT_LOCAL_PREF
    has_med = med is not None
    if has_med:
        flags |= F_MED
    else:
        # RFC 4271 §9.1.2.2 (c): a missing MED is the lowest possible value
        # (0); "missing as worst" is the common knob for the opposite choice.
        med = MED_WORST if med_missing_as_worst else 0
    if originator is not None:
        flags |= F_ORIGINATOR_ID
    path_len = as_path_length(segs)
    words = [
        0xFFFFFFFF - local_pref,
        (min(path_len, _PATH_LEN_MAX) << 8) | origin,
        med,
        neighbor_as(segs),
        originator or 0,
        cluster_len,
        flags,
    ]
    info = dict(
        next_hop=nh,
        origin=origin,
        as_path_len=path_len,
        neighbor_as=words[W_NEIGHBOR_AS],
        local_pref=local_pref,
        has_local_pref=has_lp,
        med=med,
        has_med=has_med,
        originator_id=originator,
        cluster_list_len=cluster_len,
        communities=communities,
        flags=flags,
    )
    return words, info


class AttrTable:
    """Canonical attribute blocks (plus the MP next hop, for families whose
    next hop travels in MP_REACH_NLRI rather than in the attributes) ->
    small integer ids, with reference counts.

    One table may serve several RIBs (IPv4 and IPv6 of the same daemon).
    """

    def __init__(self, med_missing_as_worst=False, record_words=None):
        self.med_missing_as_worst = bool(med_missing_as_worst)
        # (attrs, next_hop, med_missing_as_worst) -> the record words: this
        # module's own unless the caller gives the compiled RIB's (one C walk
        # per new set; fastbgp.rib.AttrTable does, as the RIBs' defaults do).
        self._words = record_words if record_words is not None else _OWN_WORDS
        self._ids = {}  # key -> id; key = attrs, or (attrs, next_hop)
        self._blocks = []  # id -> attrs bytes (None when free)
        self._nh = []  # id -> MP next hop given to intern (b"" if none)
        self.records = array("I")  # WORDS per id, see the layout above
        self._free = []  # heap of free ids: reuse the smallest first

    # ------------------------------------------------------------ interning

    def intern(self, attrs, next_hop=b""):
        """Id of (attrs, next_hop), adding one reference owned by the caller.

        For IPv4 unicast leave ``next_hop`` empty: NEXT_HOP is inside
        ``attrs``.  For MP_REACH families pass its next hop: two UPDATEs with
        equal attributes but different next hops are different paths.
        """
        if type(attrs) is not bytes:  # the import's blocks are bytes already: no call for them
            attrs = bytes(attrs)
        if type(next_hop) is not bytes:
            next_hop = bytes(next_hop)
        key = (attrs, next_hop) if next_hop else attrs
        aid = self._ids.get(key)
        rec = self.records
        if aid is not None:
            rec[aid * WORDS + W_REFS] += 1
            return aid
        words = self._words(attrs, next_hop, self.med_missing_as_worst)
        words.append(1)
        if self._free:
            aid = heapq.heappop(self._free)
            base = aid * WORDS
            rec[base : base + WORDS] = array("I", words)
            self._blocks[aid] = attrs
            self._nh[aid] = next_hop
        else:
            aid = len(self._blocks)
            rec.extend(words)
            self._blocks.append(attrs)
            self._nh.append(next_hop)
        self._ids[key] = aid
        return aid

    def retain(self, attr_id):
        """One more reference to a live ``attr_id``, owned by the caller:
        ``intern(*key(attr_id))`` without building and hashing the key."""
        rec = self.records
        if type(attr_id) is not int or not 0 <= attr_id < len(self._blocks) \
                or not rec[attr_id * WORDS + W_FLAGS] & F_LIVE:
            self._check(attr_id)  # raises (a bool or an int subclass: the careful check)
        rec[attr_id * WORDS + W_REFS] += 1
        return attr_id

    def release(self, attr_id):
        """Drop one reference; the entry is freed when none is left."""
        rec = self.records
        # is_live inline: once per received UPDATE.
        if type(attr_id) is not int or not 0 <= attr_id < len(self._blocks) \
                or not rec[attr_id * WORDS + W_FLAGS] & F_LIVE:
            self._check(attr_id)  # raises (a bool or an int subclass: the careful check)
        i = attr_id * WORDS + W_REFS
        n = rec[i] - 1
        rec[i] = n
        if n == 0:
            self._free_id(attr_id)

    def collect(self, ids):
        """Called by the RIBs after a bulk operation with the ids whose count
        fell to zero during it."""
        rec = self.records
        for aid in ids:
            if rec[aid * WORDS + W_FLAGS] & F_LIVE and rec[aid * WORDS + W_REFS] == 0:
                self._free_id(aid)

    def _free_id(self, aid):
        nh = self._nh[aid]
        del self._ids[(self._blocks[aid], nh) if nh else self._blocks[aid]]
        self._blocks[aid] = None
        self._nh[aid] = b""
        base = aid * WORDS
        self.records[base : base + WORDS] = _ZERO_RECORD
        heapq.heappush(self._free, aid)

    def _check(self, attr_id):
        if not self.is_live(attr_id):
            raise KeyError("attribute id %r is not allocated" % (attr_id,))

    # ------------------------------------------------------------ queries

    def is_live(self, attr_id):
        return (
            isinstance(attr_id, int)
            and 0 <= attr_id < len(self._blocks)
            and bool(self.records[attr_id * WORDS + W_FLAGS] & F_LIVE)
        )

    __contains__ = is_live

    def __len__(self):
        return len(self._ids)

    def refcount(self, attr_id):
        self._check(attr_id)
        return self.records[attr_id * WORDS + W_REFS]

    def attrs(self, attr_id):
        """The canonical attribute block (what pack_updates takes)."""
        self._check(attr_id)
        return self._blocks[attr_id]

    def key(self, attr_id):
        """(attrs, MP next hop given to intern)."""
        self._check(attr_id)
        return self._blocks[attr_id], self._nh[attr_id]

    def mp_next_hop(self, attr_id):
        """The next hop to pass to pack_updates for MP families (b"" for
        IPv4 unicast sets, whose NEXT_HOP is in the attributes)."""
        self._check(attr_id)
        return self._nh[attr_id]

    def next_hop(self, attr_id):
        """The effective next hop: the MP next hop if one was interned, else
        the NEXT_HOP attribute's 4 octets, else b""."""
        return self.info(attr_id).next_hop

    def flags(self, attr_id):
        self._check(attr_id)
        return self.records[attr_id * WORDS + W_FLAGS]

    def has_flag(self, attr_id, flag):
        return bool(self.flags(attr_id) & flag)

    def local_pref(self, attr_id):
        self._check(attr_id)
        return 0xFFFFFFFF - self.records[attr_id * WORDS + W_LP_INV]

    def as_path_len(self, attr_id):
        self._check(attr_id)
        return self.records[attr_id * WORDS + W_PATH] >> 8

    def origin(self, attr_id):
        self._check(attr_id)
        return self.records[attr_id * WORDS + W_PATH] & 0xFF

    def med(self, attr_id):
        self._check(attr_id)
        return self.records[attr_id * WORDS + W_MED]

    def neighbor_as(self, attr_id):
        self._check(attr_id)
        return self.records[attr_id * WORDS + W_NEIGHBOR_AS]

    def originator_id(self, attr_id):
        self._check(attr_id)
        base = attr_id * WORDS
        return self.records[base + W_ORIGINATOR_ID] if self.records[base + W_FLAGS] & F_ORIGINATOR_ID else None

    def cluster_list_len(self, attr_id):
        self._check(attr_id)
        return self.records[attr_id * WORDS + W_CLUSTER_LEN]

    def communities(self, attr_id):
        """The RFC 1997 communities as 32-bit ints, in received order."""
        return self.info(attr_id).communities

    def has_community(self, attr_id, community):
        flag = WELL_KNOWN_COMMUNITY_FLAGS.get(community)
        if flag is not None:
            return self.has_flag(attr_id, flag)
        return community in self.communities(attr_id)

    def info(self, attr_id):
        self._check(attr_id)
        _words, fields = parse_fields(self._blocks[attr_id], self._nh[attr_id], self.med_missing_as_worst)
        return AttrInfo(attrs=self._blocks[attr_id], refcount=self.refcount(attr_id), **fields)

    def propagated(self, attr_id):
        """propagate_attrs of this set (free when nothing needs changing)."""
        self._check(attr_id)
        block = self._blocks[attr_id]
        if not self.records[attr_id * WORDS + W_FLAGS] & (F_UNKNOWN_TRANSITIVE | F_UNKNOWN_NON_TRANSITIVE):
            return block
        return propagate_attrs(block)


def propagate_attrs(attrs, known=KNOWN_ATTRS):
    """The attribute block to re-advertise.

    RFC 4271 §5: an unrecognized optional transitive attribute is passed on
    with the Partial bit set; an unrecognized optional non-transitive one is
    quietly ignored, i.e. not passed on (RFC 4271 §9, Phase 3 carries only what
    §5 allows).  Recognized attributes are left exactly as they are (their own
    per-type export rules -- LOCAL_PREF, MED, ORIGINATOR_ID... -- belong to
    export policy).  Returns ``attrs`` itself when nothing changes, so the
    common case costs one scan and no copy.
    """
    out = None
    i, n = 0, len(attrs)
    while i < n:
        flags, t = attrs[i], attrs[i + 1]
        hdr = 4 if flags & FLAG_EXTENDED_LENGTH else 3
        if i + hdr > n:
            raise ValueError("truncated attribute header")
        ln = (attrs[i + 2] << 8 | attrs[i + 3]) if hdr == 4 else attrs[i + 2]
        end = i + hdr + ln
        if end > n:
            raise ValueError("attribute %d overruns the block" % t)
        if t in known or not flags & FLAG_OPTIONAL:
            # Well-known attributes are always recognized (the codec refuses
            # unknown well-known ones, RFC 4271 §6.3).
            if out is not None:
                out += attrs[i:end]
        elif flags & FLAG_TRANSITIVE:
            if not flags & FLAG_PARTIAL:
                if out is None:
                    out = bytearray(attrs[:i])
                out.append(flags | FLAG_PARTIAL)
                out += attrs[i + 1 : end]
            elif out is not None:
                out += attrs[i:end]
        else:
            if out is None:
                out = bytearray(attrs[:i])
        i = end
    return attrs if out is None else bytes(out)
