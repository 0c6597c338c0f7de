# distutils: language = c++
# cython: language_level=3
"""Compiled RIB: Adj-RIBs-In + Loc-RIB of one address family.

Behaviour is identical to the pure-Python twin ``fastbgp/rib/_rib_py.py``
(equal ChangeSets, same prefix order in every packed output, same attribute
reference counts); the tests run every case on both and compare them on
random operation sequences.  A change here is a change there.

Layout, chosen so a full table costs tens of bytes per path and no Python
object per route:

* one open-addressing hash table (linear probing, backward-shift deletion,
  no tombstones) of fixed-size slots, keyed by prefix: IPv4 ``addr << 8 |
  len`` in one uint64, IPv6 (high 64 bits, low 64 bits, len); host bits are
  cleared on the way in (RFC 4271 §4.3: they are irrelevant);
* per slot, the paths of that prefix sorted by (peer_id, path_id): one path
  is stored inline in the slot, two or more in an array sized
  exactly (up to 7 paths, then to an even count) from a slab of blocks
  per size (pathslab.h), and the index of the best path;
* a path is 15 octets: attr_id (AttrTable id), path_id (RFC 7911), peer_id
  (16 bits) and one 32-bit stamp: its receive time in the top 31 bits
  (seconds since RECEIVED_MIN, 2020-01-01, so until 2088; set when the
  path is added or its attributes change, kept when the same attributes
  are announced again -- "age since the last change", as BIRD keeps it;
  the clock is read once per call, not per prefix) and the RFC 4724 stale
  flag in bit 0; then one mark octet (``update``'s ``mark``, 0..3, counted
  per peer by ``peer_marks``: the RPKI state of the path for the daemon).

Bulk operations walk the packed NLRI straight from ParsedUpdate in two
phases: apply every path change (recording the old best of each prefix the
first time it is touched), then select the best path once per touched prefix
and emit the changes.  A prefix repeated in one call (ADD-PATH sends one per
path id) is therefore reported once, against its state before the call.

Code: four cdef classes, each a layer over the one before (single
inheritance; every cdef method is final, so calls are direct C calls the
compiler inlines, as in one class):

* ``_SlotTable``  the hash table, slot layout, per-prefix path arrays and
  packed prefixes in and out;
* ``_Selection``  peers, attribute reference counts, best path (RFC 4271
  §9.1);
* ``_Changes``    the two phases of bulk operations and the change sets they
  report;
* ``Rib``         the public API: update / withdraw, dropping a peer, RFC
  4724 stale marking, dumps, lookups.
"""

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memcmp, memcpy, memmove, memset
from libcpp.algorithm cimport sort
from libcpp.string cimport string
from libcpp.unordered_map cimport unordered_map
from libcpp.vector cimport vector
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython cimport array
from cpython.ref cimport PyObject, Py_INCREF, Py_XDECREF
from cpython.long cimport PyLong_AsLongLongAndOverflow
cimport cython

from fastbgp.wire._codec cimport asn_at, attr_end, nlri_count, segment_at

import array  # noqa: F401  (initialises the array type cimported above)

from fastbgp.rib import attrs as _attrs
from fastbgp.rib._rib_py import (
    ChangeSet,
    check_shards,
    family_bits,
    parse_address,
    parse_prefix,
    peer_dict,
    peer_record,
    prefix_str,
    received_time,
    replaced_paths,
    MAX_HELD_GROUPS,
    RECEIVED_MAX,
    RECEIVED_MIN,
)

IMPLEMENTATION = "cython"


cdef extern from *:
    """
    #include <stdint.h>
    /* pack(4): a pointer in the path union must not force 8-octet alignment,
       which would grow every IPv4 slot from 28 to 32 octets. */
    #pragma pack(push, 4)
    /* pack(1) for the path record alone: 15 octets in the per-prefix
       arrays a full table from many peers is made of (x86 and arm64 load
       unaligned words as they are); the mark octet (Rib.update's ``mark``)
       costs nothing inline in a slot (28 / 40 octets either way). */
    #pragma pack(push, 1)
    typedef struct { uint32_t attr_id; uint32_t path_id; uint16_t peer; uint32_t stamp; uint8_t mark; } RibPath;
    #pragma pack(pop)
    typedef union { RibPath one; RibPath *many; } RibPaths;
    typedef struct { uint16_t n; uint16_t best; RibPaths u; } SlotBody;
    typedef struct { uint64_t key; SlotBody b; } Slot4;
    typedef struct { uint64_t hi; uint64_t lo; uint32_t len; SlotBody b; } Slot6;
    #pragma pack(pop)

    /* The per-attribute-set record of fastbgp.rib.attrs (WORDS uint32). */
    typedef struct {
        uint32_t lp_inv, path, med, nbr_as, originator, cluster_len, flags, refs;
    } AttrRec;

    /* A prefix: IPv4 uses lo = addr << 8 | len (hi = 0), IPv6 hi/lo = address.
       Ordering (hi, lo, len) is ascending (address, length) for both. */
    struct PKey {
        uint64_t hi, lo; uint32_t len;
        bool operator<(const PKey &o) const {
            if (hi != o.hi) return hi < o.hi;
            if (lo != o.lo) return lo < o.lo;
            return len < o.len;
        }
    };
    struct EmitRec {
        PKey key; uint64_t group; uint32_t path_id;
        uint32_t old;  /* attr_id of the best path before (ChangeSet.replaced) */
        bool operator<(const EmitRec &o) const {
            if (key < o.key) return true;
            if (o.key < key) return false;
            return path_id < o.path_id;
        }
    };
    /* Packed prefixes grouped by a 64-bit key, groups in order of their
       first prefix (a ChangeSet's announced groups, its replaced pairs). */
    struct RibGroups {
        std::vector<uint64_t> key; std::vector<std::string> buf;
        std::unordered_map<uint64_t, size_t> idx; uint64_t last; size_t last_i;
        RibGroups() : last(0), last_i(0) {}
        std::string *get(uint64_t g) {
            if (!key.empty() && g == last) return &buf[last_i];
            std::unordered_map<uint64_t, size_t>::iterator it = idx.find(g);
            size_t i;
            if (it == idx.end()) {
                i = key.size(); idx[g] = i; key.push_back(g); buf.push_back(std::string());
            } else {
                i = it->second;
            }
            last = g; last_i = i;
            return &buf[i];
        }
        void clear(size_t keep) {
            key.clear(); buf.clear(); idx.clear();
            if (buf.capacity() > keep) { buf.shrink_to_fit(); key.shrink_to_fit(); }
        }
    };
    static const uint64_t RIB_GOLDEN = 0x9E3779B97F4A7C15ULL;
    static const uint64_t RIB_MIX = 0xC2B2AE3D27D4EB4FULL;
    static const uint64_t RIB_WITHDRAW = 0xFFFFFFFFFFFFFFFFULL;
    static const uint64_t RIB_ALL = 0xFFFFFFFFFFFFFFFFULL;
    /* Receive times kept (the twin's RECEIVED_MIN / RECEIVED_MAX). */
    static const uint64_t RIB_RECV_MIN = 1577836800ULL;
    static const uint64_t RIB_RECV_MAX = 1577836800ULL + 0x7FFFFFFFULL;

    /* Hash probes are cache misses on a table of tens of MB: bulk operations
       parse a chunk of prefixes first and prefetch slots a few ahead. */
    static inline void rib_prefetch(const void *p) {
    #if defined(__GNUC__) || defined(__clang__)
        __builtin_prefetch(p, 1, 1);
    #else
        (void)p;
    #endif
    }

    #include <stdlib.h>
    #if defined(__linux__)
    #include <sys/mman.h>
    #endif
    /* A 64-bit hash onto [0, n) by its top bits ("fastrange", Lemire
       2019): any table size, not only powers of two, for the price of one
       multiply; for n = 2^k it is the top k bits, as a shift would give. */
    static inline size_t rib_range(uint64_t h, size_t n) {
    #if defined(__SIZEOF_INT128__)
        return (size_t)(((unsigned __int128)h * (unsigned __int128)n) >> 64);
    #else
        return (size_t)(((h >> 32) * (uint64_t)n) >> 32);  /* n < 2^32 here */
    #endif
    }

    /* Slot arrays from RIB_MAP_MIN octets are mappings of their own
       (mmap), not heap blocks: freeing one hands its pages straight back
       (munmap), and a new one asks for its pages in one call
       (MAP_POPULATE) instead of one page fault per 4 KiB page on its first
       touch.  On the VM this was measured on, a fresh 64 MiB array cost
       33 ms to allocate and fill through malloc, 23 ms populated; a full
       table's growth steps touch about twice its final size.  A heap block
       would also leave about its own size behind in the RSS when freed
       (glibc's mmap threshold rises as large blocks come and go).  Huge
       pages (``huge``) are a hint, asked for by HeldSet's table: the mapping
       is aligned to 2 MiB and left unpopulated, since the first touch of
       fresh huge pages is not free (the kernel zeroes, and may compact for,
       each 2 MiB at once: ~2 ms per MiB for a fresh process here, as much
       as inserting the prefixes).  The slot array does not ask: moved to
       huge pages once busy (20 full tables), that first touch cost more
       than the TLB misses they saved (bench/scale.py P8 on the Intel VM,
       four alternated pairs: 1.90-2.16 s in 4 KiB pages against
       2.08-2.46 s; bench/rib_floor.py p8 1.64-1.79 s against 1.73-1.85 s).
       Where mmap is not there, plain malloc and free.  From 256 KiB (9,362
       IPv4 slots): the steps below 4 MiB faulted their pages one by one too,
       and populated they cost less (bench/rib_floor.py p4, with the next
       two changes: 0.142-0.145 s of RIB CPU against 0.131-0.138 s). */
    #define RIB_MAP_MIN ((size_t)256 << 10)
    #define RIB_HUGE_ALIGN ((size_t)2 << 20)
    /* The memory comes zeroed: fresh pages of a mapping, or calloc. */
    static void *rib_alloc_table(size_t bytes, int huge) {
    #if defined(__linux__) && defined(MAP_POPULATE)
        if (bytes >= RIB_MAP_MIN) {
            size_t len = bytes + (huge ? RIB_HUGE_ALIGN : 0);
            char *p = (char *)mmap(NULL, len, PROT_READ | PROT_WRITE,
                                   MAP_PRIVATE | MAP_ANONYMOUS | (huge ? 0 : MAP_POPULATE), -1, 0);
            if (p == (char *)MAP_FAILED)
                return NULL;
            if (huge) {
                /* Keep the 2 MiB-aligned ``bytes`` of the mapping, unmap the rest. */
                size_t head = (RIB_HUGE_ALIGN - ((size_t)p & (RIB_HUGE_ALIGN - 1))) & (RIB_HUGE_ALIGN - 1);
                if (head)
                    munmap(p, head);
                size_t tail = len - head - bytes;
                size_t keep = (bytes + 4095) & ~(size_t)4095;  /* whole pages */
                if (tail > keep - bytes)
                    munmap(p + head + keep, tail - (keep - bytes));
                p += head;
    #if defined(MADV_HUGEPAGE)
                (void)madvise(p, bytes, MADV_HUGEPAGE);
    #endif
            }
            return p;
        }
    #endif
        return calloc(1, bytes);
    }

    /* Frees what rib_alloc_table gave for the same ``bytes``. */
    static void rib_free_table(void *p, size_t bytes) {
    #if defined(__linux__) && defined(MAP_POPULATE)
        if (bytes >= RIB_MAP_MIN) {
            if (p != NULL)
                munmap(p, bytes);
            return;
        }
    #endif
        free(p);
    }

    /* Unix seconds of the wall clock as Python's time.time() reads it
       (clock_gettime, CLOCK_REALTIME).  Not time(): glibc serves that from
       the coarse clock, which lags a few milliseconds behind after each
       second boundary -- a path stamped a second earlier than the twin
       (and time.time() before the call) would say. */
    #include <time.h>
    static inline uint64_t rib_now(void) {
        struct timespec ts;
        if (clock_gettime(CLOCK_REALTIME, &ts) != 0)
            return (uint64_t)time(NULL);
        return (uint64_t)ts.tv_sec;
    }

    /* Bits set in x (HeldSet counts the group bits it sets). */
    static inline int rib_popcount(uint64_t x) {
    #if defined(__GNUC__)
        return __builtin_popcountll(x);
    #else
        int c = 0;
        for (; x; x &= x - 1) c++;
        return c;
    #endif
    }

    /* Network masks: the first plen bits set (plen = 0..64 / 0..32). */
    static inline uint64_t rib_mask64(int plen) {
        return plen <= 0 ? 0 : (plen >= 64 ? RIB_ALL : ~(RIB_ALL >> plen));
    }
    static inline uint32_t rib_mask32(int plen) {
        return (uint32_t)(plen <= 0 ? 0 : (plen >= 32 ? 0xFFFFFFFFU : ~(0xFFFFFFFFU >> plen)));
    }
    """
    ctypedef struct RibPath:
        uint32_t attr_id
        uint32_t path_id
        uint16_t peer
        uint32_t stamp
        uint8_t mark
    ctypedef union RibPaths:
        RibPath one
        RibPath *many
    ctypedef struct SlotBody:
        uint16_t n
        uint16_t best
        RibPaths u
    ctypedef struct Slot4:
        uint64_t key
        SlotBody b
    ctypedef struct Slot6:
        uint64_t hi
        uint64_t lo
        uint32_t len
        SlotBody b
    ctypedef struct AttrRec:
        uint32_t lp_inv
        uint32_t path
        uint32_t med
        uint32_t nbr_as
        uint32_t originator
        uint32_t cluster_len
        uint32_t flags
        uint32_t refs
    ctypedef struct PKey:
        uint64_t hi
        uint64_t lo
        uint32_t len
    cdef cppclass RibGroups:
        vector[uint64_t] key
        vector[string] buf
        size_t last_i  # the group get() returned last
        string *get(uint64_t g) except +
        void clear(size_t keep)
    ctypedef struct EmitRec:
        PKey key
        uint64_t group
        uint32_t path_id
        uint32_t old
    const uint64_t RIB_GOLDEN
    const uint64_t RIB_MIX
    const uint64_t RIB_WITHDRAW
    const uint64_t RIB_ALL
    const uint64_t RIB_RECV_MIN
    const uint64_t RIB_RECV_MAX
    uint64_t rib_mask64(int plen) nogil
    int rib_popcount(uint64_t x) nogil
    void rib_prefetch(const void *p) nogil
    size_t rib_range(uint64_t h, size_t n) nogil
    void *rib_alloc_table(size_t bytes, int huge) nogil
    void rib_free_table(void *p, size_t bytes) nogil
    uint32_t rib_mask32(int plen) nogil
    uint64_t rib_now() nogil


# The path arrays' blocks (pathslab.h says why not malloc).
cdef extern from "pathslab.h":
    ctypedef struct PathSlab:
        pass
    const int PS_PATH
    void *ps_alloc(PathSlab *s, uint32_t cap) nogil
    void ps_free(PathSlab *s, void *p) nogil
    void ps_release(PathSlab *s) nogil
    size_t ps_bytes(const PathSlab *s) nogil


cdef enum:
    BEST_NONE = 0x7FFF  # SlotBody.best when the prefix has no path
    BEST_MARK = 0x8000  # set on a slot touched by the current operation
    MAXP = 0x7FFF  # paths per prefix: best is a 15-bit index beside BEST_MARK
    ADD_NONE = 0xFFFF  # Touch.add_at: no single new path (past any index under MAXP)
    STALE = 1  # RibPath.stamp bit 0: RFC 4724 stale
    F_ORIGINATOR = 2  # attrs.F_ORIGINATOR_ID, checked at import
    MIN_CAP = 64
    GROW_BY_QUARTER = 16 << 20  # octets: a slot array this big grows by a quarter, a smaller one doubles (_reserve)
    SMALL_MED = 16  # candidates up to which the MED step is a plain double loop
    PATH_ROOM_EXACT = 7  # paths per prefix up to which its array has no spare room (_path_room)
    MED_DISTINCT_MAX = 32  # candidates up to which the MED step first checks that no two share an AS
    MED_AS_SLOTS = 64  # _distinct_as's table: twice MED_DISTINCT_MAX, a power of two
    CHUNK = 512  # prefixes parsed ahead of the hash probes
    SCRATCH_KEEP = 4096  # scratch entries kept allocated between operations
    SENT_SLOTS_MAX = 65536  # announcements whose slots _finish keeps for HeldSet.mark_groups (4 octets each)
    AHEAD = 12  # prefetch distance, in prefixes
    PACKED_GROUPS = 24  # HeldSet: group bits beside an IPv4 key (40 bits) in one word
    KEY_BITS4 = 40  # an IPv4 slot key (addr << 8 | len); the 24 bits above it are the slot's tag
    LEN_BITS6 = 8  # the length in an IPv6 slot's len word; the 24 bits above it are the slot's tag

# HeldSet: the group bits of a packed (one-word IPv4) entry, and of a slot's
# tag (the spare bits of its key: see _SlotTable._tag).
cdef uint64_t PACKED_MASK = ((<uint64_t>1) << PACKED_GROUPS) - 1
cdef uint64_t KEY_MASK4 = ((<uint64_t>1) << KEY_BITS4) - 1


# The attribute record layout is shared with attrs.py: refuse to run on a
# build that disagrees with it rather than read the wrong fields.
if (sizeof(AttrRec) != 4 * _attrs.WORDS or _attrs.F_ORIGINATOR_ID != F_ORIGINATOR
        or (_attrs.W_LP_INV, _attrs.W_PATH, _attrs.W_MED, _attrs.W_NEIGHBOR_AS, _attrs.W_ORIGINATOR_ID,
            _attrs.W_CLUSTER_LEN, _attrs.W_FLAGS, _attrs.W_REFS) != (0, 1, 2, 3, 4, 5, 6, 7)):
    raise ImportError("fastbgp.rib._rib was built against another attribute record layout; rebuild it")
if (RIB_RECV_MIN, RIB_RECV_MAX) != (RECEIVED_MIN, RECEIVED_MAX) or sizeof(RibPath) != 15 or PS_PATH != 15:
    raise ImportError("fastbgp.rib._rib was built with another receive-time range; rebuild it")

# Liveness of an attribute id, read from the AttrTable's records in C (one
# source: the numbers are attrs.py's).
cdef Py_ssize_t A_WORDS = _attrs.WORDS
cdef Py_ssize_t A_W_FLAGS = _attrs.W_FLAGS
cdef uint32_t A_F_LIVE = _attrs.F_LIVE


cdef inline object _empty_changeset():
    """A fresh empty ChangeSet, as the twin's ``empty_changeset`` (its dicts
    are mutable, so never one shared object)."""
    return ChangeSet({}, b"", 0, 0, {})


cdef struct PeerInfo:
    uint8_t registered
    uint8_t ebgp
    uint32_t router_id
    uint8_t addr[16]
    uint64_t npaths
    uint64_t nmark[4]  # paths held per mark (Rib.update's ``mark``)
    uint64_t nstale  # paths held marked stale (RFC 4724 §4.2), for sweeps in slices


cdef struct Item:
    PKey key
    size_t home
    uint32_t path_id


cdef struct Touch:
    char *slot
    uint32_t attr_id
    uint32_t path_id
    uint16_t peer
    uint8_t had  # the prefix had a best path before the operation
    # When the operation's only change to the prefix was one new path: the
    # index it was stored at (_apply_update), and _settle may weigh it
    # against the old best alone (_Selection._select_added); else ADD_NONE.
    uint16_t add_at


cdef inline uint32_t _stamp(uint64_t t) noexcept nogil:
    """The receive-time part of RibPath.stamp (stale bit clear) of Unix
    seconds ``t``, clamped to RECEIVED_MIN..RECEIVED_MAX like the twin's
    received_time."""
    if t < RIB_RECV_MIN:
        t = RIB_RECV_MIN
    elif t > RIB_RECV_MAX:
        t = RIB_RECV_MAX
    return <uint32_t>((t - RIB_RECV_MIN) << 1)


cdef inline uint32_t _received(uint32_t stamp) noexcept nogil:
    return (stamp >> 1) + <uint32_t>RIB_RECV_MIN


cdef inline bytes _as_bytes(object data):
    if type(data) is bytes:
        return <bytes>data
    return bytes(data)


cdef inline bint _distinct_as(const uint64_t *keys, int m) noexcept nogil:
    """Whether no two of the ``m`` (at most MED_DISTINCT_MAX) keys share a
    neighbour AS (their high 32 bits): an open-addressing set of the ASes
    seen, half full at most, on the stack."""
    cdef uint32_t table[MED_AS_SLOTS]
    cdef uint8_t used[MED_AS_SLOTS]
    cdef uint32_t asn
    cdef unsigned int h
    cdef int i
    memset(used, 0, MED_AS_SLOTS)
    for i in range(m):
        asn = <uint32_t>(keys[i] >> 32)
        h = (asn * <uint32_t>2654435761U) >> 26  # 6 bits: MED_AS_SLOTS
        while used[h]:
            if table[h] == asn:
                return False
            h = (h + 1) & (MED_AS_SLOTS - 1)
        used[h] = 1
        table[h] = asn
    return True


cdef inline int _path_room(int n) noexcept nogil:
    """Paths a prefix's array has room for when it holds ``n`` (>= 2): n
    itself up to PATH_ROOM_EXACT, then n rounded up to even (SlotBody has no
    field for it)."""
    return n if n <= PATH_ROOM_EXACT else n + (n & 1)


cdef inline RibPath *_paths(SlotBody *b) noexcept nogil:
    if b.n <= 1:
        return &b.u.one
    return b.u.many


cdef inline int _path_pos(RibPath *p, int n, uint16_t peer, uint32_t pid, bint *found) noexcept nogil:
    """Position of (peer, pid) among paths sorted by (peer, path_id): its
    index when present, else where it would be inserted."""
    cdef int lo = 0, hi = n, mid
    cdef uint64_t want = (<uint64_t>peer << 32) | pid
    while lo < hi:
        mid = (lo + hi) >> 1
        if ((<uint64_t>p[mid].peer << 32) | p[mid].path_id) < want:
            lo = mid + 1
        else:
            hi = mid
    found[0] = lo < n and p[lo].peer == peer and p[lo].path_id == pid
    return lo


cdef inline Py_ssize_t _read_key(const unsigned char *p, Py_ssize_t pos, PKey *k, bint v6) noexcept nogil:
    """Parse one (already validated) prefix at p[pos] into ``k``, host bits
    cleared; the position after it.  Shared by the slot table and HeldSet."""
    cdef int plen = p[pos], nb = (plen + 7) >> 3, i
    cdef uint64_t hi = 0, lo = 0
    cdef uint32_t addr = 0
    if v6:
        for i in range(nb):
            if i < 8:
                hi |= <uint64_t>p[pos + 1 + i] << (56 - 8 * i)
            else:
                lo |= <uint64_t>p[pos + 1 + i] << (120 - 8 * i)
        k.hi = hi & rib_mask64(plen)
        k.lo = lo & rib_mask64(plen - 64)
    else:
        for i in range(nb):
            addr |= <uint32_t>p[pos + 1 + i] << (24 - 8 * i)
        addr &= rib_mask32(plen)
        k.hi = 0
        k.lo = (<uint64_t>addr << 8) | <uint64_t>plen
    k.len = plen
    return pos + 1 + nb


cdef inline uint64_t _mix_key(uint64_t x) noexcept nogil:
    """A bit mix (xor-shift-multiply) before Fibonacci hashing, so that
    keys differing only in high bits spread over all homes."""
    x ^= x >> 29
    x *= <uint64_t>0xBF58476D1CE4E5B9ULL
    x ^= x >> 32
    return x


cdef inline uint64_t _hash_key(const PKey *k, bint v6) noexcept nogil:
    """What Fibonacci hashing multiplies (see _SlotTable._home)."""
    cdef uint64_t x
    if v6:
        x = (k.hi * RIB_GOLDEN) ^ (k.lo * RIB_MIX) ^ k.len
        x ^= x >> 32
        return x
    return k.lo


cdef inline uint64_t _fmix64(uint64_t x) noexcept nogil:
    """MurmurHash3's 64-bit finaliser (the twin's _fmix64)."""
    x ^= x >> 33
    x *= <uint64_t>0xFF51AFD7ED558CCDULL
    x ^= x >> 33
    x *= <uint64_t>0xC4CEB9FE1A85EC53ULL
    x ^= x >> 33
    return x


cdef inline uint32_t _key_shard(const PKey *k, bint v6, uint32_t shards) noexcept nogil:
    """The shard of prefix ``k`` among ``shards``: the twin's shard_of_key
    (its docstring is the definition; the results are identical).  Another
    function of the key than the home slot's (_SlotTable._home), so the
    prefixes of one shard still spread over all the homes of its table."""
    cdef uint64_t h
    if v6:
        h = _fmix64(k.hi ^ _fmix64(k.lo ^ <uint64_t>k.len))
    else:
        h = _fmix64(k.lo)
    return <uint32_t>(((h >> 32) * shards) >> 32)


def prefix_shard(packed_prefix, afi, shards):
    """The shard (0..shards-1) of ONE packed prefix (its length octet then
    the address octets it needs, no path id) in a RIB split ``shards`` ways
    (Rib(shards=shards, shard=k) keeps the prefixes for which this is k);
    the twin's prefix_shard, whose shard_of_key gives the definition."""
    check_shards(shards, 0)
    cdef int bits = family_bits(afi)
    cdef bytes b = _as_bytes(packed_prefix)
    cdef const unsigned char *p = <const unsigned char *>PyBytes_AS_STRING(b)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(b)
    cdef PKey k
    if n == 0 or p[0] > bits or n != 1 + ((p[0] + 7) >> 3):
        raise ValueError("packed_prefix must be one prefix: a length octet (0..%d) and its address octets" % bits)
    _read_key(p, 0, &k, bits == 128)
    return _key_shard(&k, bits == 128, <uint32_t>shards)


# ---------------------------------------------------------------- hash table


cdef class _SlotTable:
    """The hash table of prefixes: slot layout, probing, growth and
    deletion, the path array of each prefix, and packed prefixes in and
    out.  Knows nothing of peers, attributes or best paths.

    Every cdef method of this and the next two layers is final: calls from
    the subclasses are direct (and inlined), never through the vtable."""

    cdef readonly int afi
    cdef bint v6
    cdef int bits
    cdef char *slots
    cdef size_t cap, used, ssize  # cap: any size from MIN_CAP (see _home, _reserve)
    # Times entries moved to other slots (_delete's backward shift, _resize):
    # slot positions noted while it was n stay right while it is n.
    cdef size_t moves
    cdef size_t npaths
    cdef PathSlab *slab  # the arrays of prefixes with two paths or more
    cdef size_t len_count[129]  # prefixes held per length, for longest_match
    cdef vector[Item] items  # scratch: the chunk of parsed prefixes being applied
    # Rib(shards=, shard=): with nshards > 1 the table keeps only the
    # prefixes whose _key_shard is myshard (_parse_chunk skips the others).
    cdef uint32_t nshards, myshard
    cdef size_t kept  # prefixes _parse_chunk handed on (its shard's), since a caller zeroed it
    # The family's HeldSet (Rib.held) while its group bits live in the
    # slots' tags; a reference owned by Rib (taken in __cinit__, given back
    # in __dealloc__ after the tags are moved out), so it outlives them.
    cdef PyObject *hsp

    def __cinit__(self, afi, *args, **kwargs):
        self.bits = family_bits(afi)
        self.afi = afi
        self.v6 = self.bits == 128
        self.ssize = sizeof(Slot6) if self.v6 else sizeof(Slot4)
        self.hsp = NULL
        self.nshards = 1
        self.myshard = 0
        memset(self.len_count, 0, sizeof(self.len_count))
        self.slab = <PathSlab *>calloc(1, sizeof(PathSlab))
        if self.slab == NULL:
            raise MemoryError()
        self._resize(MIN_CAP)

    def __dealloc__(self):
        cdef size_t i
        cdef char *s
        cdef SlotBody *b
        if self.slots != NULL:
            for i in range(self.cap):
                s = self.slots + i * self.ssize
                if not self._is_empty(s):
                    b = self._body(s)
                    if b.n > 1:
                        ps_free(self.slab, b.u.many)
            rib_free_table(self.slots, self.cap * self.ssize)
        if self.slab != NULL:
            ps_release(self.slab)
            free(self.slab)

    # ------------------------------------------------------------ slots

    @cython.final
    cdef inline SlotBody *_body(self, char *s) noexcept nogil:
        if self.v6:
            return &(<Slot6 *>s).b
        return &(<Slot4 *>s).b

    # An empty slot is all zeros, so a new slot array is ready as the
    # allocator hands it over (fresh pages: no pass over the array to mark
    # it empty at each growth step).  A slot in use keeps its key one
    # higher -- the IPv4 key word's low 40 bits (addr << 8 | len, at most
    # 0xFFFFFFFF20), the IPv6 length octet (at most 128) -- so it is
    # never zero whatever the tag, 0.0.0.0/0 and ::/0 included.

    @cython.final
    cdef inline bint _is_empty(self, const char *s) noexcept nogil:
        if self.v6:
            return (<Slot6 *>s).len == 0
        return (<Slot4 *>s).key == 0

    @cython.final
    cdef inline void _get_key(self, const char *s, PKey *k) noexcept nogil:
        if self.v6:
            k.hi = (<Slot6 *>s).hi
            k.lo = (<Slot6 *>s).lo
            k.len = ((<Slot6 *>s).len & 0xFF) - 1
        else:
            k.hi = 0
            k.lo = ((<Slot4 *>s).key & KEY_MASK4) - 1
            k.len = <uint32_t>(k.lo & 0xFF)

    @cython.final
    cdef inline bint _key_eq(self, const char *s, const PKey *k) noexcept nogil:
        if self.v6:
            return (<Slot6 *>s).hi == k.hi and (<Slot6 *>s).lo == k.lo and ((<Slot6 *>s).len & 0xFF) == k.len + 1
        return ((<Slot4 *>s).key & KEY_MASK4) == k.lo + 1

    # The tag of a slot: PACKED_GROUPS spare bits of its key word (above the
    # 40-bit IPv4 key, above the 8-bit IPv6 length), where HeldSet keeps the
    # update-group bits of a prefix in the Loc-RIB (no octet more per
    # prefix).  An empty slot is all zeros; a key never is, whatever the
    # tag (_is_empty).

    @cython.final
    cdef inline uint64_t _tag(self, const char *s) noexcept nogil:
        if self.v6:
            return (<Slot6 *>s).len >> LEN_BITS6
        return (<Slot4 *>s).key >> KEY_BITS4

    @cython.final
    cdef inline void _set_tag(self, char *s, uint64_t tag) noexcept nogil:
        if self.v6:
            (<Slot6 *>s).len = ((<Slot6 *>s).len & 0xFF) | <uint32_t>(tag << LEN_BITS6)
        else:
            (<Slot4 *>s).key = ((<Slot4 *>s).key & KEY_MASK4) | (tag << KEY_BITS4)

    @cython.final
    cdef inline size_t _home(self, const PKey *k) noexcept nogil:
        # Fibonacci hashing keeps the top bits of key * 2^64/phi, after a
        # mix (as HeldSet._home): IPv4 /24 keys (addr << 8 | 24) share
        # their low 16 bits, and multiplying alone left most homes unused
        # (long probe runs on every insert and lookup of a full table).  The
        # top bits choose the home (rib_range), so the table can have any
        # size (_reserve grows a big one by a quarter) and keeps its order: a table
        # rebuilt from this one's slot order inserts with rising homes.
        return rib_range(_mix_key(_hash_key(k, self.v6)) * RIB_GOLDEN, self.cap)

    @cython.final
    cdef inline size_t _next(self, size_t i) noexcept nogil:
        """The slot after ``i``, cyclically (the linear probe's step)."""
        i += 1
        return 0 if i == self.cap else i

    @cython.final
    cdef inline char *_find(self, const PKey *k) noexcept nogil:
        return self._find_at(k, self._home(k))

    @cython.final
    cdef char *_find_at(self, const PKey *k, size_t i) noexcept nogil:
        cdef char *s
        while True:
            s = self.slots + i * self.ssize
            if self._is_empty(s):
                return NULL
            if self._key_eq(s, k):
                return s
            i = self._next(i)

    @cython.final
    cdef char *_find_or_add(self, const PKey *k, size_t i) noexcept nogil:
        """The slot of ``k`` (home slot ``i``), created empty if absent.
        Capacity must have been reserved by the caller (no resize here: slot
        pointers held by the current operation stay valid)."""
        cdef char *s
        cdef SlotBody *b
        while True:
            s = self.slots + i * self.ssize
            if self._is_empty(s):
                break
            if self._key_eq(s, k):
                return s
            i = self._next(i)
        if self.v6:
            (<Slot6 *>s).hi = k.hi
            (<Slot6 *>s).lo = k.lo
            (<Slot6 *>s).len = k.len + 1  # never zero (_is_empty)
        else:
            (<Slot4 *>s).key = k.lo + 1
        b = self._body(s)
        b.n = 0
        b.best = BEST_NONE
        self.used += 1
        self.len_count[k.len] += 1
        return s

    @cython.final
    cdef void _delete(self, char *s) noexcept nogil:
        """Empty slot ``s`` (which holds no path) and close the gap by moving
        back later entries of the same probe run (backward-shift deletion,
        so lookups never need tombstones)."""
        cdef size_t i = <size_t>(s - self.slots) // self.ssize
        cdef size_t j = i, h
        cdef PKey k
        cdef char *sj
        self._get_key(s, &k)
        self.len_count[k.len] -= 1
        self.used -= 1
        while True:
            j = self._next(j)
            sj = self.slots + j * self.ssize
            if self._is_empty(sj):
                break
            self._get_key(sj, &k)
            h = self._home(&k)
            # The entry at j may fill the hole at i only if its home slot is
            # not cyclically within (i, j].
            if i <= j:
                if i < h and h <= j:
                    continue
            elif i < h or h <= j:
                continue
            memcpy(self.slots + i * self.ssize, sj, self.ssize)
            i = j
            self.moves += 1
        memset(self.slots + i * self.ssize, 0, self.ssize)  # empty (_is_empty)

    @cython.final
    cdef int _resize(self, size_t newcap) except -1:
        cdef char *new = <char *>rib_alloc_table(newcap * self.ssize, 0)  # zeroed: every slot empty
        if new == NULL:
            raise MemoryError()
        cdef char *old = self.slots
        cdef size_t oldcap = self.cap, i, j
        cdef PKey k
        cdef char *s
        self.slots = new
        self.cap = newcap
        self.moves += 1
        for i in range(oldcap):
            s = old + i * self.ssize
            if self._is_empty(s):
                continue
            self._get_key(s, &k)
            j = self._home(&k)
            while not self._is_empty(new + j * self.ssize):
                j = self._next(j)
            if self.v6:
                (<Slot6 *>(new + j * self.ssize))[0] = (<Slot6 *>s)[0]
            else:
                (<Slot4 *>(new + j * self.ssize))[0] = (<Slot4 *>s)[0]
        rib_free_table(old, oldcap * self.ssize)
        return 0

    @cython.final
    cdef int _reserve(self, size_t extra) except -1:
        # Grow at 80 % load: linear probing stays short below that.  Double
        # while the array is small; from GROW_BY_QUARTER octets by a
        # quarter, so a big table ends between 1.25 and 1.56 slots per
        # prefix, not 2.5: a full IPv4 table (1M prefixes, just past 80 % of
        # 2^20 slots) in 1.31M slots (35 MiB), not 2.1M (56 MiB).  By a half
        # it took 1.57M (42 MiB); by a quarter a big table moves its entries
        # about four times over its growth instead of twice, which cost 2-4 %
        # more RIB CPU for 1M prefixes and nothing measurable for 20M paths
        # (bench/rib_floor.py p1, p4, p8).  Doubling up to there keeps the
        # moves and first touches of the small steps as they were (by half
        # from the start cost 20 % more RIB CPU).  A shard of N holds 1/N of
        # the daemon's prefixes: it turns to growing by a quarter at 1/N of
        # that size, so the N shards end with the slots one table would have
        # (two shards of a full table: 655k slots each, 17.5 MiB).
        cdef size_t need = self.used + extra
        cdef size_t newcap = self.cap
        while need * 5 > newcap * 4:
            newcap = newcap * 2 if newcap * self.ssize * self.nshards < GROW_BY_QUARTER else newcap + newcap // 4
        if newcap != self.cap:
            self._resize(newcap)
        return 0

    @cython.final
    cdef int _maybe_shrink(self) except -1:
        # Give memory back once the table is under 1/8 full (a peer's table
        # dropped), leaving it at most 40 % full.
        cdef size_t newcap = self.cap
        if self.cap <= MIN_CAP or self.used * 8 >= self.cap:
            return 0
        while newcap > MIN_CAP and self.used * 5 <= (newcap // 2) * 2:
            newcap = max(MIN_CAP, newcap // 2)
        if newcap != self.cap:
            self._resize(newcap)
        return 0

    # ------------------------------------------------------------ paths

    @cython.final
    cdef int _insert_path(self, SlotBody *b, int pos, const RibPath *np) except -1:
        cdef int n = b.n
        cdef RibPath one
        cdef RibPath *arr
        if n == 0:
            b.u.one = np[0]
            b.n = 1
            return 0
        if n == 1:
            one = b.u.one
            arr = <RibPath *>ps_alloc(self.slab, 2)
            if arr == NULL:
                raise MemoryError()
            if pos == 0:
                arr[0] = np[0]
                arr[1] = one
            else:
                arr[0] = one
                arr[1] = np[0]
            b.u.many = arr
            b.n = 2
            return 0
        # Past PATH_ROOM_EXACT paths, room for an even number (_path_room):
        # a prefix gains paths one peer at a time, and a block of the slab
        # never grows in place -- every other arrival needs no new block.
        # At most one path's room (15 octets) is unused, in a prefix of 9
        # paths or more: under 2 octets per path.
        arr = b.u.many
        cdef RibPath *grown
        if _path_room(n) == n:
            # Into a block of the next size, the new path copied in place.
            grown = <RibPath *>ps_alloc(self.slab, _path_room(n + 1))
            if grown == NULL:
                raise MemoryError()
            memcpy(grown, arr, pos * sizeof(RibPath))
            grown[pos] = np[0]
            memcpy(grown + pos + 1, arr + pos, (n - pos) * sizeof(RibPath))
            ps_free(self.slab, arr)
            b.u.many = grown
            b.n = n + 1
            return 0
        memmove(arr + pos + 1, arr + pos, (n - pos) * sizeof(RibPath))
        arr[pos] = np[0]
        b.u.many = arr
        b.n = n + 1
        return 0

    @cython.final
    cdef void _remove_path(self, SlotBody *b, int pos) noexcept nogil:
        cdef int n = b.n
        cdef RibPath keep
        cdef RibPath *arr
        cdef RibPath *small
        if n == 1:
            b.n = 0
        elif n == 2:
            keep = b.u.many[1 - pos]
            ps_free(self.slab, b.u.many)
            b.u.one = keep
            b.n = 1
        else:
            arr = b.u.many
            small = NULL
            if _path_room(n - 1) != _path_room(n):
                small = <RibPath *>ps_alloc(self.slab, _path_room(n - 1))
            if small != NULL:
                memcpy(small, arr, pos * sizeof(RibPath))
                memcpy(small + pos, arr + pos + 1, (n - pos - 1) * sizeof(RibPath))
                ps_free(self.slab, arr)
                b.u.many = small
            else:
                # Same room, or no memory for the smaller block: this one
                # stays, larger than the paths need (ps_free reads its size
                # from its chunk; _insert_path only ever grows into a new
                # block).
                memmove(arr + pos, arr + pos + 1, (n - pos - 1) * sizeof(RibPath))
            b.n = n - 1

    # ------------------------------------------------------------ packed prefixes

    @cython.final
    cdef inline Py_ssize_t _read(self, const unsigned char *p, Py_ssize_t pos, PKey *k) noexcept nogil:
        """Parse one (already validated) prefix at p[pos]; host bits cleared."""
        return _read_key(p, pos, k, self.v6)

    @cython.final
    cdef Py_ssize_t _validate(self, bytes b, bint addpath) except -1:
        cdef Py_ssize_t c = nlri_count(<const unsigned char *>PyBytes_AS_STRING(b), 0, PyBytes_GET_SIZE(b),
                                       self.bits, addpath)
        if c < 0:
            raise ValueError("malformed NLRI")
        return c

    @cython.final
    cdef Py_ssize_t _parse_chunk(self, const unsigned char *p, Py_ssize_t pos, Py_ssize_t n,
                                 bint addpath) except -1:
        """Parse up to CHUNK prefixes from p[pos:n] into self.items with their
        home slots, prefetching the first few; returns the new position.
        In a sharded RIB the prefixes of other shards are skipped here,
        before their home is computed: every operation that stores, removes
        or marks paths reads its input through here, and the slot lookup
        (a cache miss per prefix in a big table) is the cost a worker must
        not pay for the prefixes of the others."""
        cdef Item it
        cdef size_t i = 0
        cdef bint sharded = self.nshards > 1  # unsharded: one predictable branch per prefix
        self.items.clear()
        it.path_id = 0
        while pos < n and i < CHUNK:
            if addpath:
                it.path_id = (<uint32_t>p[pos] << 24) | (<uint32_t>p[pos + 1] << 16) | (<uint32_t>p[pos + 2] << 8) | p[pos + 3]
                pos += 4
            pos = self._read(p, pos, &it.key)
            if sharded and _key_shard(&it.key, self.v6, self.nshards) != self.myshard:
                continue
            it.home = self._home(&it.key)
            if i < AHEAD:
                rib_prefetch(self.slots + it.home * self.ssize)
            self.items.push_back(it)
            i += 1
        self.kept += i
        return pos

    @cython.final
    cdef inline bint _grows(self, size_t extra) noexcept nogil:
        """_reserve(extra) would grow the table (past 80 % full)."""
        return (self.used + extra) * 5 > self.cap * 4

    @cython.final
    cdef int _reserve_own(self, bytes b, bint addpath, Py_ssize_t count) except -1:
        """_reserve for the prefixes of (validated) ``b`` (``count`` in all)
        this RIB keeps.  Counting a sharded RIB's own ones hashes every
        prefix once more (4 % of a worker's CPU taking a table): done only
        when room for all of them would grow the table (then for its shard
        only), which is near a growth step alone."""
        if self.nshards > 1 and self._grows(<size_t>count):
            count = self._count_own(b, addpath)
        return self._reserve(<size_t>count)

    @cython.final
    cdef Py_ssize_t _count_own(self, bytes b, bint addpath):
        """Prefixes of (validated) packed NLRI ``b`` that this sharded RIB
        keeps -- what _reserve must make room for (all of them would grow
        the table to ``shards`` times what it holds)."""
        cdef const unsigned char *p = <const unsigned char *>PyBytes_AS_STRING(b)
        cdef Py_ssize_t n = PyBytes_GET_SIZE(b), pos = 0, own = 0
        cdef PKey k
        while pos < n:
            if addpath:
                pos += 4
            pos = self._read(p, pos, &k)
            own += _key_shard(&k, self.v6, self.nshards) == self.myshard
        return own

    @cython.final
    cdef inline void _prefetch_item(self, size_t i) noexcept nogil:
        if i < self.items.size():
            rib_prefetch(self.slots + self.items[i].home * self.ssize)

    @cython.final
    cdef inline int _put_prefix(self, string *out, const PKey *k, bint with_pid, uint32_t pid) except -1:
        cdef unsigned char buf[21]
        cdef int plen = k.len, nb = (plen + 7) >> 3, o = 0, i
        cdef uint64_t addr
        if with_pid:
            buf[0] = (pid >> 24) & 0xFF
            buf[1] = (pid >> 16) & 0xFF
            buf[2] = (pid >> 8) & 0xFF
            buf[3] = pid & 0xFF
            o = 4
        buf[o] = <unsigned char>plen
        o += 1
        if self.v6:
            for i in range(nb):
                if i < 8:
                    buf[o + i] = (k.hi >> (56 - 8 * i)) & 0xFF
                else:
                    buf[o + i] = (k.lo >> (120 - 8 * i)) & 0xFF
        else:
            addr = k.lo >> 8
            for i in range(nb):
                buf[o + i] = (addr >> (24 - 8 * i)) & 0xFF
        # Byte by byte: inline stores, where append's call and memcpy for
        # 4 or 5 octets cost more (one prefix out per best-path change).
        for i in range(o + nb):
            out.push_back(<char>buf[i])
        return 0

    @cython.final
    cdef void _pkey(self, object addr, int plen, PKey *k):
        if self.v6:
            k.hi = <uint64_t>(addr >> 64)
            k.lo = <uint64_t>(addr & 0xFFFFFFFFFFFFFFFF)
        else:
            k.hi = 0
            k.lo = (<uint64_t>addr << 8) | <uint64_t>plen
        k.len = plen

    @cython.final
    cdef object _key_int(self, const PKey *k):
        if self.v6:
            return (<object>k.hi << 64) | <object>k.lo
        return <object>(k.lo >> 8)


# ---------------------------------------------------------------- peers and best path


cdef class _Selection(_SlotTable):
    """Peers, attribute references and best-path selection (RFC 4271 §9.1)
    over the slot table."""

    cdef readonly object attrs
    cdef readonly bint always_compare_med
    cdef vector[PeerInfo] peers
    cdef dict peer_recs
    cdef AttrRec *arec  # the AttrTable's records, fetched by _begin
    cdef uint16_t *cand  # scratch: best-path candidates
    cdef uint64_t *medkeys  # scratch: (neighbour AS, MED) keys
    cdef vector[uint32_t] zero  # attribute ids whose last reference went

    def __cinit__(self, afi, attrs=None, always_compare_med=False, *, shards=1, shard=0):
        # shards > 1: this RIB keeps only the prefixes of shard ``shard``
        # (prefix_shard); checked first, before anything is allocated.
        self.nshards, self.myshard = check_shards(shards, shard)
        self.attrs = attrs if attrs is not None else _attrs.AttrTable(record_words=record_words)
        self.always_compare_med = bool(always_compare_med)
        self.peer_recs = {}
        # Sized for the worst case once; untouched pages of these large
        # allocations are never faulted in, so they cost address space only.
        self.cand = <uint16_t *>malloc(MAXP * sizeof(uint16_t))
        self.medkeys = <uint64_t *>malloc(2 * MAXP * sizeof(uint64_t))
        if self.cand == NULL or self.medkeys == NULL:
            raise MemoryError()

    def __dealloc__(self):
        free(self.cand)
        free(self.medkeys)

    # ------------------------------------------------------------ attributes

    @cython.final
    cdef inline void _begin(self):
        """Fetch the attribute records for this operation.  The array may
        have moved since the last one (intern appends); nothing interns
        while an operation runs."""
        cdef array.array rec = self.attrs.records
        self.arec = <AttrRec *>rec.data.as_uints

    @cython.final
    cdef inline int _decref(self, uint32_t aid) except -1:
        cdef AttrRec *a = &self.arec[aid]
        a.refs -= 1
        if a.refs == 0:
            self.zero.push_back(aid)
        return 0

    @cython.final
    cdef int _collect_zero(self) except -1:
        if self.zero.size():
            ids = [self.zero[i] for i in range(self.zero.size())]
            self.zero.clear()
            self.attrs.collect(ids)
        return 0

    @cython.final
    cdef uint32_t _check_attr(self, attr_id) except? 0xFFFFFFFF:
        """``attr_id`` as a C id, or KeyError unless AttrTable.is_live.

        Once per UPDATE: an exact int is checked here against the records
        (in range, F_LIVE set), without a call into Python; anything else (a
        bool, an int subclass, not an int) asks the table itself, so the
        answer is always is_live's."""
        cdef array.array rec
        cdef long long v
        cdef int overflow = 0
        if type(attr_id) is int:
            v = PyLong_AsLongLongAndOverflow(attr_id, &overflow)
            rec = self.attrs.records
            if (not overflow and 0 <= v < len(rec) // A_WORDS
                    and rec.data.as_uints[v * A_WORDS + A_W_FLAGS] & A_F_LIVE):
                return <uint32_t>v
        elif self.attrs.is_live(attr_id):
            return <uint32_t>attr_id
        raise KeyError("attribute id %r is not allocated" % (attr_id,))

    # ------------------------------------------------------------ best path

    @cython.final
    cdef uint16_t _select(self, SlotBody *b) noexcept nogil:
        """Index of the best path, RFC 4271 §9.1.

        Each step removes candidates rather than comparing pairs, because the
        MED step only orders routes from the same neighbour AS and is not
        transitive: pairwise comparison would make the result depend on the
        order paths arrived in.  Filtering keeps the candidates in stored
        order, so the final order among equals is ascending (peer_id,
        path_id).
        """
        cdef int n = b.n
        if n == 0:
            return BEST_NONE
        if n == 1:
            return 0
        cdef RibPath *p = b.u.many
        cdef AttrRec *R = self.arec
        cdef PeerInfo *P = self.peers.data()
        cdef uint16_t *c = self.cand
        cdef int m = 0, i, k
        cdef uint64_t r, rbest = 0, kk, kbest
        cdef uint64_t *keys = self.medkeys  # free again after the MED step
        cdef AttrRec *a
        cdef const uint8_t *addr
        cdef const uint8_t *alow
        # §9.1.1 / §9.1.2.1: highest degree of preference (LOCAL_PREF), then
        # §9.1.2.2 (a) fewest AS numbers in AS_PATH, (b) lowest ORIGIN: one
        # precomputed rank per attribute set, lower is better.
        for i in range(n):
            a = &R[p[i].attr_id]
            r = (<uint64_t>a.lp_inv << 32) | a.path
            if m == 0 or r < rbest:
                rbest = r
                c[0] = <uint16_t>i
                m = 1
            elif r == rbest:
                c[m] = <uint16_t>i
                m += 1
        if m > 1:
            # (c) lowest MULTI_EXIT_DISC among routes from the same neighbour AS.
            m = self._med_filter(p, c, m)
        if m > 1:
            # The steps after MED are each "keep the least", so one key
            # orders them all, most significant first: (d) routes learned
            # via eBGP beat routes learned via iBGP; (e) interior cost: no
            # IGP here, all equal; (f) lowest BGP Identifier of the
            # advertising speaker, RFC 4456 §9: the ORIGINATOR_ID standing in
            # for it when present; RFC 4456 §9: shortest CLUSTER_LIST (absent
            # = 0; a list in one message has fewer than 2^16 entries): see
            # _tie_key.  One pass for the least key, one to keep its holders.
            kbest = 0xFFFFFFFFFFFFFFFF
            for i in range(m):
                kk = self._tie_key(&p[c[i]])
                keys[i] = kk
                if kk < kbest:
                    kbest = kk
            k = 0
            for i in range(m):
                if keys[i] == kbest:
                    c[k] = c[i]
                    k += 1
            m = k
        if m > 1:
            # (g) lowest peer address (16 octets, IPv4 mapped).
            alow = P[p[c[0]].peer].addr
            for i in range(1, m):
                addr = P[p[c[i]].peer].addr
                if memcmp(addr, alow, 16) < 0:
                    alow = addr
            k = 0
            for i in range(m):
                if memcmp(P[p[c[i]].peer].addr, alow, 16) == 0:
                    c[k] = c[i]
                    k += 1
            m = k
        return c[0]

    @cython.final
    cdef inline uint64_t _tie_key(self, const RibPath *q) noexcept nogil:
        """The one key of the selection's steps after MED for a path, most
        significant first: (d) eBGP first, (f) the BGP Identifier (RFC 4456
        §9: ORIGINATOR_ID when present), then the shortest CLUSTER_LIST (a
        list in one message has fewer than 2^16 entries); lower is better.
        Used by _select and _select_added."""
        cdef AttrRec *a = &self.arec[q.attr_id]
        cdef PeerInfo *pi = &self.peers[q.peer]
        cdef uint32_t v = a.originator if a.flags & F_ORIGINATOR else pi.router_id
        return ((<uint64_t>(not pi.ebgp)) << 48) | (<uint64_t>v << 16) | \
            (a.cluster_len if a.cluster_len < 0xFFFF else 0xFFFF)

    @cython.final
    cdef uint16_t _select_added(self, SlotBody *b, int old, int at) noexcept nogil:
        """_select's answer when the only change since it chose ``old`` (an
        index before the insert) is one new path, now at index ``at``, from
        two attribute records instead of all of them.

        RFC 4271 §9.1.2.2's steps remove candidates; a new path can only
        add candidates and remove others.  When it ranks worse than the old
        best on LOCAL_PREF / AS_PATH / ORIGIN it is out at the first step
        and the rest runs as before; when it ranks better it alone is left.
        On a tie, the old best stays unless the new path removes it (same
        neighbour AS, lower MED) or would beat it later: both cases, and any
        case where the new path's own survival of the MED step is in doubt,
        go through _select.  A full table from many peers, each path
        arriving alone, mostly ends here (bench/rib_floor.py p8)."""
        cdef RibPath *p = _paths(b)
        cdef AttrRec *R = self.arec
        if old >= at:
            old += 1
        cdef AttrRec *ao = &R[p[old].attr_id]
        cdef AttrRec *an = &R[p[at].attr_id]
        cdef uint64_t ro = (<uint64_t>ao.lp_inv << 32) | ao.path
        cdef uint64_t rn = (<uint64_t>an.lp_inv << 32) | an.path
        if rn > ro:
            return <uint16_t>old
        if rn < ro:
            return <uint16_t>at
        # Equal rank: (c) MED.  With always-compare-med the old best holds
        # the lowest MED of its rank; otherwise only its own neighbour AS
        # compares.
        if self.always_compare_med or an.nbr_as == ao.nbr_as:
            if an.med > ao.med:
                return <uint16_t>old  # removed by the old best
            if an.med < ao.med:
                return self._select(b)  # it removes the old best
        cdef uint64_t ko = self._tie_key(&p[old])
        cdef uint64_t kn = self._tie_key(&p[at])
        cdef int c
        if kn > ko:
            return <uint16_t>old
        if kn == ko:
            c = memcmp(self.peers[p[at].peer].addr, self.peers[p[old].peer].addr, 16)
            if c > 0 or (c == 0 and at > old):
                return <uint16_t>old
        # The new path would win.  It survives the MED step for sure when it
        # shares the old best's neighbour AS and MED (anything removing it
        # would have removed the old best) or MED is compared across ASes
        # (the old best's MED is the lowest); else another path of its AS
        # with a lower MED may remove it: look at them all.
        if self.always_compare_med or an.nbr_as == ao.nbr_as:
            return <uint16_t>at
        return self._select(b)

    @cython.final
    cdef int _med_filter(self, RibPath *p, uint16_t *c, int m) noexcept nogil:
        cdef AttrRec *R = self.arec
        cdef int i, j, k = 0, lo, hi, mid
        cdef uint32_t low
        cdef uint64_t want
        cdef uint64_t *keys = self.medkeys
        cdef uint64_t *srt
        cdef AttrRec *a
        cdef bint ok
        if self.always_compare_med:
            low = 0xFFFFFFFF
            for i in range(m):
                if R[p[c[i]].attr_id].med < low:
                    low = R[p[c[i]].attr_id].med
            for i in range(m):
                if R[p[c[i]].attr_id].med == low:
                    c[k] = c[i]
                    k += 1
            return k
        # One (neighbour AS, MED) key per candidate, in candidate order: the
        # loops below compare keys, not records reached through the paths.
        for i in range(m):
            a = &R[p[c[i]].attr_id]
            keys[i] = (<uint64_t>a.nbr_as << 32) | a.med
        if m <= MED_DISTINCT_MAX and _distinct_as(keys, m):
            # Every candidate from another neighbour AS (full tables from
            # many peers: each new path of a prefix selects again among all
            # of them): nobody is removed, found in one pass, not m * m.
            return m
        if m <= SMALL_MED:
            # Keep a route unless another one from the same neighbour AS has
            # a lower MED; decide for all before compacting.
            for i in range(m):
                ok = True
                for j in range(m):
                    if (keys[j] >> 32) == (keys[i] >> 32) and keys[j] < keys[i]:
                        ok = False
                        break
                if ok:
                    c[k] = c[i]
                    k += 1
            return k
        # Many candidates (a route server's table): a sorted copy of the keys;
        # the lowest MED of each AS is the first key of its run.  When every
        # run has one key (all neighbour ASes differ), nobody is removed.
        srt = keys + m
        memcpy(srt, keys, m * sizeof(uint64_t))
        sort(srt, srt + m)
        for i in range(1, m):
            if (srt[i] >> 32) == (srt[i - 1] >> 32):
                break
        else:
            return m
        for i in range(m):
            want = (keys[i] >> 32) << 32
            lo = 0
            hi = m
            while lo < hi:
                mid = (lo + hi) >> 1
                if srt[mid] < want:
                    lo = mid + 1
                else:
                    hi = mid
            if srt[lo] == keys[i]:
                c[k] = c[i]
                k += 1
        return k

    # ------------------------------------------------------------ peers

    def add_peer(self, peer_id, peer_as, local_as, router_id, address, ibgp=None, rr_client=False):
        """Register a peer: what best-path selection needs to know about it.
        ``ibgp`` defaults to peer_as == local_as; ``address`` (bytes or text)
        is the session's remote address; ``router_id`` its BGP Identifier."""
        rec = peer_record(peer_id, peer_as, local_as, router_id, address, ibgp, rr_client)
        cdef int pid = peer_id
        cdef PeerInfo info
        if <size_t>pid < self.peers.size() and self.peers[pid].registered and self.peers[pid].npaths:
            raise ValueError("peer %d still has paths: drop_peer first" % pid)
        if <size_t>pid >= self.peers.size():
            memset(&info, 0, sizeof(info))
            self.peers.resize(pid + 1, info)
        info.registered = 1
        info.ebgp = rec[0]
        info.router_id = rec[1]
        memcpy(info.addr, <const char *>(<bytes>rec[2]), 16)
        info.npaths = 0
        info.nstale = 0
        memset(info.nmark, 0, sizeof(info.nmark))
        self.peers[pid] = info
        self.peer_recs[pid] = rec

    def has_peer(self, peer_id):
        return peer_id in self.peer_recs

    def peer_info(self, peer_id):
        self._check_peer(peer_id)
        return peer_dict(self.peer_recs[peer_id])

    def peer_path_count(self, peer_id):
        return self.peers[self._check_peer(peer_id)].npaths

    def peer_marks(self, peer_id):
        """(paths of ``peer_id`` held with mark 0, 1, 2, 3): kept as paths
        come and go, so reading it costs nothing."""
        cdef PeerInfo *info = &self.peers[self._check_peer(peer_id)]
        return (info.nmark[0], info.nmark[1], info.nmark[2], info.nmark[3])

    def peer_stale_count(self, peer_id):
        """Paths of ``peer_id`` marked stale (RFC 4724 §4.2): kept as paths
        are marked, refreshed and removed, so reading it costs nothing."""
        return self.peers[self._check_peer(peer_id)].nstale

    @cython.final
    cdef int _check_peer(self, peer_id) except -1:
        if peer_id not in self.peer_recs:
            raise KeyError("peer %r is not registered (add_peer)" % (peer_id,))
        return <int>peer_id


# ---------------------------------------------------------------- bulk operations


cdef class _Changes(_Selection):
    """The two phases of every bulk operation -- apply the path changes,
    then select once per touched prefix -- and the change sets they
    report: announcements grouped by (peer, attributes), withdrawals, in
    prefix order."""

    cdef public Py_ssize_t refused  # paths refused: the prefix had MAXP already
    cdef vector[Touch] touched
    # A prefix was touched twice by the operation (ADD-PATH ids, a prefix
    # repeated in update_many's runs): its Touch.add_at says nothing of the
    # second change, so _settle selects among all paths of every prefix.
    cdef bint retouch
    cdef vector[PKey] dead
    cdef vector[EmitRec] recs
    cdef RibGroups groups  # (peer << 32 | attr_id) -> announced prefixes
    cdef string wd
    cdef string same  # ChangeSet.same_source of update / withdraw / update_many
    # ChangeSet.replaced: (old attr_id << 32 | new attr_id) -> prefixes.
    cdef RibGroups moved
    cdef object replaced  # _take_moved's dict until _finish
    cdef size_t n_ann, n_wd
    # The slots of the prefixes each group of self.groups announces, noted
    # by _settle (``noting``: no other operation notes them) while no entry
    # moves (``noted_moves``).  _finish hands them on as the slots of the
    # ChangeSet's bytes objects (``sent_*``, until the next operation's
    # _finish or a move): an update group sent such an object has its bits
    # set in those slots' tags by HeldSet.mark_groups, without looking each
    # prefix up again (a table's 1M announcements: 1M hash probes saved).
    cdef vector[vector[uint32_t]] gslots
    cdef bint noting
    cdef size_t noted_moves
    cdef vector[vector[uint32_t]] sent_slots
    cdef dict sent_ids  # id(bytes object) -> index in sent_slots; None: none known
    cdef list sent_objs  # those objects, held so that no id is reused meanwhile
    cdef size_t sent_moves

    # ------------------------------------------------------------ output

    @cython.final
    cdef inline string *_group(self, uint64_t g) except NULL:
        return self.groups.get(g)

    @cython.final
    cdef inline int _emit_ann(self, uint16_t peer, uint32_t aid, const PKey *k) except -1:
        self._put_prefix(self._group((<uint64_t>peer << 32) | aid), k, False, 0)
        self.n_ann += 1
        return 0

    @cython.final
    cdef inline int _note_slot(self, const char *s) except -1:
        """The prefix _emit_ann just announced is in slot ``s``."""
        cdef size_t i = self.groups.last_i
        if i >= self.gslots.size():
            self.gslots.resize(i + 1)
        self.gslots[i].push_back(<uint32_t>(<size_t>(s - self.slots) // self.ssize))
        return 0

    @cython.final
    cdef vector[uint32_t] *_sent_slots_of(self, object packed):
        """The slots of the prefixes of ``packed`` when it is one of the
        bytes objects of the last ChangeSet (see ``gslots``) and no entry
        moved since, else NULL."""
        # Every operation's _finish replaces them; one that failed before it
        # may have moved entries all the same (a growth, then MemoryError).
        if self.sent_ids is None or self.moves != self.sent_moves:
            return NULL
        i = self.sent_ids.get(id(packed))
        if i is None or self.sent_objs[<Py_ssize_t>i] is not packed:
            return NULL
        return &self.sent_slots[<size_t>i]

    @cython.final
    cdef int _emit_moved(self, uint32_t old_aid, uint32_t new_aid, const PKey *k) except -1:
        """Prefix ``k`` moved from a best path with ``old_aid`` to one with
        ``new_aid`` (ChangeSet.replaced)."""
        self._put_prefix(self.moved.get((<uint64_t>old_aid << 32) | new_aid), k, False, 0)
        return 0

    @cython.final
    cdef int _take_moved(self) except -1:
        """ChangeSet.replaced of the operation, kept for _finish: the old
        ids are read through AttrTable.key here, before _collect_zero may
        free them."""
        cdef size_t i
        cdef uint64_t g
        if self.moved.key.size() == 0:
            self.replaced = None
            return 0
        pairs = {}
        for i in range(self.moved.key.size()):
            g = self.moved.key[i]
            pairs[(<long>(g >> 32), <long>(g & 0xFFFFFFFF))] = PyBytes_FromStringAndSize(
                self.moved.buf[i].data(), self.moved.buf[i].size())
        self.replaced = replaced_paths(self.attrs, pairs)
        return 0

    @cython.final
    cdef inline int _emit_wd(self, const PKey *k) except -1:
        self._put_prefix(&self.wd, k, False, 0)
        self.n_wd += 1
        return 0

    @cython.final
    cdef int _emit_sorted(self) except -1:
        """Emit self.recs (announce to group, or withdraw) in prefix order."""
        cdef size_t i
        cdef EmitRec *r
        sort(self.recs.begin(), self.recs.end())
        self.noting = False
        for i in range(self.recs.size()):
            r = &self.recs[i]
            if r.group == RIB_WITHDRAW:
                self._emit_wd(&r.key)
            else:
                self._emit_ann(<uint16_t>(r.group >> 32), <uint32_t>(r.group & 0xFFFFFFFF), &r.key)
                self._emit_moved(r.old, <uint32_t>(r.group & 0xFFFFFFFF), &r.key)
        self.recs.clear()
        return 0

    @cython.final
    cdef void _reset_output(self):
        self.groups.clear(SCRATCH_KEEP)
        self.gslots.clear()
        self.noting = False
        self.wd.clear()
        self.same.clear()
        self.moved.clear(SCRATCH_KEEP)
        self.replaced = None
        self.n_ann = 0
        self.n_wd = 0
        # A full-table dump or drop leaves scratch sized for a million
        # prefixes; do not keep tens of MB around for the next small UPDATE.
        if self.wd.capacity() > SCRATCH_KEEP * 4:
            self.wd.shrink_to_fit()
        if self.recs.capacity() > SCRATCH_KEEP:
            self.recs.clear()
            self.recs.shrink_to_fit()
        if self.touched.capacity() > SCRATCH_KEEP:
            self.touched.clear()
            self.touched.shrink_to_fit()
        if self.dead.capacity() > SCRATCH_KEEP:
            self.dead.clear()
            self.dead.shrink_to_fit()

    @cython.final
    cdef object _finish(self):
        """The ChangeSet of the operation, equal to the twin's
        ``make_changeset``: ``by_source`` (peer, attr_id) -> prefixes and
        ``announced`` attr_id -> the same prefixes, the groups of one attr_id
        joined in first-appearance order, built in one pass here."""
        cdef size_t i
        cdef uint64_t g
        cdef dict groups, announced
        cdef bint known = self.noting and self.moves == self.noted_moves \
            and self.gslots.size() == self.groups.key.size() and self.n_ann <= SENT_SLOTS_MAX
        self.sent_ids = self.sent_objs = None
        self.sent_slots.clear()
        if self.groups.key.size() == 0 and self.wd.size() == 0:
            self._reset_output()
            return _empty_changeset()
        groups = {}
        announced = {}
        if known:
            self.sent_ids = {}
            self.sent_objs = []
        for i in range(self.groups.key.size()):
            g = self.groups.key[i]
            data = PyBytes_FromStringAndSize(self.groups.buf[i].data(), self.groups.buf[i].size())
            aid = <long>(g & 0xFFFFFFFF)
            groups[(<int>(g >> 32), aid)] = data
            prev = announced.get(aid)
            # One group per attr_id is the usual case: both dicts then hold
            # the same bytes object.
            announced[aid] = data if prev is None else prev + data
            if known:
                self.sent_ids[id(data)] = i
                self.sent_objs.append(data)
        if known:
            self.sent_slots.swap(self.gslots)
            self.sent_moves = self.moves
        wd = PyBytes_FromStringAndSize(self.wd.data(), self.wd.size())
        same = PyBytes_FromStringAndSize(self.same.data(), self.same.size())
        cs = ChangeSet(announced, wd, self.n_ann, self.n_wd, groups, same, self.replaced or {})
        self._reset_output()
        return cs

    @cython.final
    cdef list _finish_groups(self):
        cdef size_t i
        out = []
        for i in range(self.groups.key.size()):
            out.append((<long>(self.groups.key[i] & 0xFFFFFFFF),
                        PyBytes_FromStringAndSize(self.groups.buf[i].data(), self.groups.buf[i].size())))
        self._reset_output()
        return out

    # ------------------------------------------------------------ phases

    @cython.final
    cdef inline int _touch(self, char *s, SlotBody *b) except -1:
        """Record the best path of ``s`` before this operation changes it."""
        cdef Touch t
        cdef RibPath *bp
        t.slot = s
        t.had = b.best != BEST_NONE
        t.add_at = ADD_NONE
        if t.had:
            bp = &_paths(b)[b.best]
            t.peer = bp.peer
            t.path_id = bp.path_id
            t.attr_id = bp.attr_id
        else:
            t.peer = 0
            t.path_id = 0
            t.attr_id = 0
        b.best |= BEST_MARK
        self.touched.push_back(t)
        return 0

    @cython.final
    cdef size_t _apply_update(self, const unsigned char *p, Py_ssize_t n, bint addpath, int peer,
                              uint32_t aid, uint32_t now, uint8_t mark) except? 0xFFFFFFFFFFFFFFFF:
        """Phase 1 of update: store the paths; returns how many were added."""
        cdef Py_ssize_t pos = 0
        cdef char *s
        cdef SlotBody *body
        cdef RibPath *paths
        cdef RibPath np
        cdef Item *it
        cdef bint found
        cdef int at
        cdef size_t j, added = 0
        cdef bint fresh
        np.attr_id = aid
        np.peer = <uint16_t>peer
        np.stamp = now
        np.mark = mark
        cdef uint64_t *nmark = self.peers[peer].nmark
        cdef size_t was
        # A prefix back in the Loc-RIB takes back the group bits its
        # departure left in the HeldSet's table (none in a steady full table).
        cdef bint back = self.hsp != NULL and (<HeldSet>self.hsp)._side_held()
        while pos < n:
            pos = self._parse_chunk(p, pos, n, addpath)
            for j in range(self.items.size()):
                self._prefetch_item(j + AHEAD)
                it = &self.items[j]
                was = self.used
                s = self._find_or_add(&it.key, it.home)
                if back and self.used != was:
                    (<HeldSet>self.hsp)._slot_new(s, &it.key)
                body = self._body(s)
                fresh = not body.best & BEST_MARK
                if fresh:
                    self._touch(s, body)
                else:
                    self.retouch = True
                paths = _paths(body)
                at = _path_pos(paths, body.n, <uint16_t>peer, it.path_id, &found)
                if found:
                    if paths[at].stamp & STALE:
                        self.peers[peer].nstale -= 1  # refreshed (RFC 4724 §4.2)
                    if paths[at].attr_id != aid:
                        # New reference first: the old one may be the same set.
                        self.arec[aid].refs += 1
                        self._decref(paths[at].attr_id)
                        paths[at].attr_id = aid
                        # The route changed: its age restarts.  The same
                        # attributes again (a refresh, RFC 4724 re-learning
                        # a stale path) keep the time of the last change.
                        paths[at].stamp = now
                    paths[at].stamp &= ~(<uint32_t>STALE)
                    if paths[at].mark != mark:
                        # A new mark alone is no route change (same age).
                        nmark[paths[at].mark] -= 1
                        nmark[mark] += 1
                        paths[at].mark = mark
                elif body.n >= MAXP:
                    self.refused += 1
                else:
                    np.path_id = it.path_id
                    self._insert_path(body, at, &np)
                    if fresh:
                        self.touched.back().add_at = <uint16_t>at
                    self.arec[aid].refs += 1
                    added += 1
                    self.npaths += 1
                    self.peers[peer].npaths += 1
                    nmark[mark] += 1
        if back:
            (<HeldSet>self.hsp)._shrink()
        return added

    @cython.final
    cdef inline RibPath *_peer_path(self, Item *it, uint16_t peer, char **slot, SlotBody **body,
                                    int *at) noexcept nogil:
        """The path of ``peer`` for the prefix and path id of ``it``, or
        NULL when the table holds none; ``slot``, ``body`` and ``at`` say
        where it stands.  Shared by withdraw and set_mark (inline: their
        per-prefix loops compile as when each wrote it out)."""
        cdef bint found
        slot[0] = self._find_at(&it.key, it.home)
        if slot[0] == NULL:
            return NULL
        body[0] = self._body(slot[0])
        cdef RibPath *paths = _paths(body[0])
        at[0] = _path_pos(paths, body[0].n, peer, it.path_id, &found)
        return &paths[at[0]] if found else NULL

    @cython.final
    cdef size_t _apply_withdraw(self, const unsigned char *p, Py_ssize_t n, bint addpath,
                                int peer) except? 0xFFFFFFFFFFFFFFFF:
        """Phase 1 of withdraw: remove the paths; returns how many.  Slots
        left without paths stay in the table until phase 3, so the slot
        pointers recorded in self.touched stay valid."""
        cdef Py_ssize_t pos = 0
        cdef char *s
        cdef SlotBody *body
        cdef RibPath *path
        cdef Item *it
        cdef int at
        cdef size_t j, removed = 0
        while pos < n:
            pos = self._parse_chunk(p, pos, n, addpath)
            for j in range(self.items.size()):
                self._prefetch_item(j + AHEAD)
                it = &self.items[j]
                path = self._peer_path(it, <uint16_t>peer, &s, &body, &at)
                if path == NULL:
                    continue
                if not body.best & BEST_MARK:
                    self._touch(s, body)
                else:
                    self.retouch = True
                self._decref(path.attr_id)
                self.peers[peer].nmark[path.mark] -= 1
                if path.stamp & STALE:
                    self.peers[peer].nstale -= 1
                self._remove_path(body, at)
                removed += 1
                self.npaths -= 1
                self.peers[peer].npaths -= 1
        return removed

    @cython.final
    cdef void _abort(self):
        """Phase 1 failed (out of memory): leave a consistent table -- every
        touched prefix gets its best path back and loses its mark -- and
        report nothing."""
        cdef size_t i
        cdef SlotBody *body
        cdef PKey k
        self.retouch = False
        for i in range(self.touched.size()):
            body = self._body(self.touched[i].slot)
            body.best = self._select(body)
            if body.n == 0:
                self._get_key(self.touched[i].slot, &k)
                self.dead.push_back(k)
        self.touched.clear()
        self.recs.clear()
        self._reset_output()
        try:
            self._drop_dead()
            self._collect_zero()
        except MemoryError:
            pass

    @cython.final
    cdef int _drop_dead(self) except -1:
        cdef size_t i
        cdef char *s
        cdef size_t n = self.dead.size()
        cdef vector[size_t] homes
        homes.resize(n)
        for i in range(n):
            homes[i] = self._home(&self.dead[i])
            if i < AHEAD:
                rib_prefetch(self.slots + homes[i] * self.ssize)
        for i in range(n):
            if i + AHEAD < n:
                rib_prefetch(self.slots + homes[i + AHEAD] * self.ssize)
            # Homes stay valid: deletions move entries, never the table.
            s = self._find_at(&self.dead[i], homes[i])
            if s != NULL:
                if self._tag(s):
                    # Groups still hold it (their withdrawal not yet sent):
                    # the bits move to the HeldSet's own table.
                    (<HeldSet>self.hsp)._slot_gone(&self.dead[i], self._tag(s))
                self._delete(s)
        self.dead.clear()
        if self.used * 8 < self.cap and not self._stale_held():
            self._maybe_shrink()
        return 0

    @cython.final
    cdef bint _stale_held(self) noexcept nogil:
        """Some peer holds stale paths.  The table does not shrink then: a
        sweep in slices (sweep_stale_slice) removes prefixes in slot order,
        which is hash order, and those still waiting would crowd into a
        narrow run of the smaller table's slots (one probe run of thousands,
        each deletion in it walking the rest: seconds).  The removal of the
        last stale path shrinks it."""
        cdef size_t i
        for i in range(self.peers.size()):
            if self.peers[i].nstale:
                return True
        return False

    @cython.final
    cdef object _remove_where(self, int peer, bint stale_only, size_t first, size_t end):
        """Delete the paths of ``peer`` (only those marked stale when
        ``stale_only``) held in the slots ``first`` to ``end`` - 1; the
        changes in ascending prefix order."""
        if not (self.peers[peer].nstale if stale_only else self.peers[peer].npaths):
            return _empty_changeset()
        cdef size_t i, removed = 0, stale = 0
        cdef int j, lo, hi
        cdef char *s
        cdef SlotBody *body
        cdef RibPath *paths
        cdef RibPath *bp
        cdef bint found, had
        cdef RibPath old
        cdef EmitRec rec
        self._begin()
        self.recs.clear()
        for i in range(first, min(end, self.cap)):
            s = self.slots + i * self.ssize
            if self._is_empty(s):
                continue
            body = self._body(s)
            paths = _paths(body)
            lo = _path_pos(paths, body.n, <uint16_t>peer, 0, &found)
            hi = lo
            while hi < body.n and paths[hi].peer == peer:
                hi += 1
            if hi == lo:
                continue
            had = False
            for j in range(hi - 1, lo - 1, -1):
                paths = _paths(body)
                if stale_only and not paths[j].stamp & STALE:
                    continue
                if not had:
                    old = paths[body.best]
                    had = True
                self._decref(paths[j].attr_id)
                self.peers[peer].nmark[paths[j].mark] -= 1
                if paths[j].stamp & STALE:
                    stale += 1
                self._remove_path(body, j)
                removed += 1
            if not had:
                continue
            self._get_key(s, &rec.key)
            rec.path_id = 0
            if body.n == 0:
                body.best = BEST_NONE
                rec.group = RIB_WITHDRAW
                self.recs.push_back(rec)
                self.dead.push_back(rec.key)
                continue
            body.best = self._select(body)
            bp = &_paths(body)[body.best]
            if bp.peer != old.peer or bp.path_id != old.path_id or bp.attr_id != old.attr_id:
                rec.group = (<uint64_t>bp.peer << 32) | bp.attr_id
                rec.old = old.attr_id
                self.recs.push_back(rec)
        self.npaths -= removed
        self.peers[peer].npaths -= removed
        self.peers[peer].nstale -= stale
        self._drop_dead()
        self._emit_sorted()
        self._take_moved()
        self._collect_zero()
        return self._finish()


# ---------------------------------------------------------------- public API


@cython.final
cdef class Rib(_Changes):
    """Loc-RIB + Adj-RIB-In of one address family (see fastbgp.rib).

    ``held``: the :class:`HeldSet` of this family (which update groups were
    sent which prefixes: fastbgp.rib.export).  ``last_count``: the prefixes
    of this RIB's shard (every one when unsharded) in the runs of the last
    ``update_many``, repeats counted: what a caller working beside it on
    those runs (path hiding) compares the ChangeSet with, without reading
    the runs again."""

    cdef readonly object held
    cdef readonly Py_ssize_t last_count

    def __cinit__(self, afi, *args, **kwargs):
        self.held = HeldSet(afi)
        # The slots keep the group bits of their prefixes (see _tag): hold
        # the HeldSet by a reference of our own, outside the GC's reach, so
        # that __dealloc__ can still move them into its table.
        Py_INCREF(self.held)
        self.hsp = <PyObject *>self.held
        (<HeldSet>self.hsp)._attach(self)

    def __dealloc__(self):
        # Runs before the slots are freed (_SlotTable.__dealloc__): the
        # HeldSet may outlive this Rib (an update group keeps it).
        if self.hsp != NULL:
            try:
                (<HeldSet>self.hsp)._detach()
            except MemoryError:
                pass
            Py_XDECREF(self.hsp)
            self.hsp = NULL

    @property
    def shards(self):
        """Shards the prefix space is split in (1: this RIB keeps every prefix)."""
        return self.nshards

    @property
    def shard(self):
        """The shard (0..shards-1) whose prefixes this RIB keeps."""
        return self.myshard

    def own(self, packed, bint addpath=False):
        """The prefixes of packed NLRI ``packed`` this RIB keeps (its shard),
        packed as given (path ids too with ``addpath``), in order: what a
        caller working beside the RIB on a received UPDATE (ADD-PATH export
        of the Adj-RIB-In change, path hiding) must look at in a sharded
        daemon.  Unsharded: ``packed`` itself, at once (not looked at: the
        RIB operation it goes to checks it), so callers need not ask
        whether the RIB is sharded.  Sharded: ValueError when malformed, as
        update and withdraw."""
        if self.nshards == 1:
            return packed
        cdef bytes b = _as_bytes(packed)
        self._validate(b, addpath)
        cdef const unsigned char *p = <const unsigned char *>PyBytes_AS_STRING(b)
        cdef Py_ssize_t n = PyBytes_GET_SIZE(b), pos = 0, start
        cdef PKey k
        cdef string out
        while pos < n:
            start = pos
            if addpath:
                pos += 4
            pos = self._read(p, pos, &k)
            if _key_shard(&k, self.v6, self.nshards) == self.myshard:
                out.append(<const char *>p + start, pos - start)
        if <Py_ssize_t>out.size() == n:
            return b
        return out

    # ------------------------------------------------------------ bulk operations

    def update(self, peer_id, packed, bint addpath=False, attr_id=None, now=None, int mark=0):
        """Store the paths of ``peer_id`` for every prefix of packed NLRI with
        the interned attributes ``attr_id`` (replacing that peer's previous
        path of the same path id; clearing its stale mark).  ``now``: the
        receive time (Unix seconds) of the paths added or changed; the clock
        is read once per call when omitted.  ``mark`` (0..3) tags the paths
        (a changed mark alone is no route change: no ChangeSet entry, same
        age); ``peer_marks`` counts them."""
        cdef int peer = self._check_peer(peer_id)
        if not 0 <= mark < 4:
            raise ValueError("mark %r is not in 0..3" % (mark,))
        cdef uint32_t aid = self._check_attr(attr_id)
        # The clock read once per call (the twin reads time.time(): the
        # same whole Unix second).
        cdef uint32_t when = _stamp(rib_now() if now is None else <uint64_t>received_time(now))
        cdef bytes b = _as_bytes(packed)
        cdef Py_ssize_t count = self._validate(b, addpath)
        if count == 0:
            return _empty_changeset()
        self._reserve_own(b, addpath, count)
        self._begin()
        self.touched.clear()
        try:
            self._apply_update(<const unsigned char *>PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b), addpath, peer, aid, when,
                               <uint8_t>mark)
        except BaseException:
            self._abort()
            raise
        return self._settle()

    def update_many(self, peer_id, runs, bint addpath=False, now=None):
        """``update`` (``attr_id`` given) or ``withdraw`` (``attr_id`` None)
        of each ``(packed, attr_id, mark)`` of ``runs``, in order, as one
        operation: the table ends as after those calls one by one, and the
        one ChangeSet returned has every prefix whose best path after the
        last run is not the one it had before the first (a prefix changed
        and changed back is not in it).  Every run is checked before any is
        applied: a bad one raises and changes nothing.  The receive time is
        read once for all of them."""
        cdef int peer = self._check_peer(peer_id)
        cdef uint32_t when = _stamp(rib_now() if now is None else <uint64_t>received_time(now))
        cdef Py_ssize_t adds = 0, count
        cdef int mark
        cdef bytes b
        # Check every run first (nothing is applied when one is bad), and
        # count the prefixes announcements may add: the table grows at most
        # once, before the first run, so the slots the touched list points
        # at never move (of a sharded RIB's, its own: _reserve_own).
        for run in runs:
            packed, attr_id, mark = run
            b = _as_bytes(packed)
            count = self._validate(b, addpath)
            if attr_id is not None:
                self._check_attr(attr_id)
                if not 0 <= mark < 4:
                    raise ValueError("mark %r is not in 0..3" % (mark,))
                adds += count
        if self.nshards > 1 and adds and self._grows(<size_t>adds):
            adds = 0
            for run in runs:
                packed, attr_id, mark = run
                if attr_id is not None:
                    adds += self._count_own(_as_bytes(packed), addpath)  # validated above
        if adds:
            self._reserve(<size_t>adds)
        self._begin()
        self.touched.clear()
        self.kept = 0
        try:
            for run in runs:
                packed, attr_id, mark = run
                b = _as_bytes(packed)
                if attr_id is None:
                    self._apply_withdraw(<const unsigned char *>PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b), addpath,
                                         peer)
                else:
                    self._apply_update(<const unsigned char *>PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b), addpath,
                                       peer, <uint32_t>attr_id, when, <uint8_t>mark)
        except BaseException:
            self._abort()
            raise
        self.last_count = self.kept
        return self._settle()

    @cython.final
    cdef object _settle(self):
        """Phases 2 and 3 of update, withdraw and update_many: one best-path
        selection per touched prefix, the prefixes whose best path is not
        the one they had before the operation reported (withdrawn when none
        is left), then the prefixes without paths dropped."""
        cdef PKey k
        cdef SlotBody *body
        cdef RibPath *bp
        cdef Touch *t
        cdef size_t i
        cdef bint retouch = self.retouch
        self.retouch = False
        # Slot positions fit 32 bits; nothing announced before this phase.
        self.noting = self.cap <= 0xFFFFFFFF and self.groups.key.size() == 0
        self.noted_moves = self.moves
        for i in range(self.touched.size()):
            t = &self.touched[i]
            body = self._body(t.slot)
            if body.n == 0:
                body.best = BEST_NONE
                self._get_key(t.slot, &k)
                if t.had:
                    self._emit_wd(&k)
                self.dead.push_back(k)
                continue
            if t.add_at != ADD_NONE and t.had and not retouch:
                body.best = self._select_added(body, body.best & ~BEST_MARK, t.add_at)
            else:
                body.best = self._select(body)
            bp = &_paths(body)[body.best]
            if not t.had or bp.peer != t.peer or bp.path_id != t.path_id or bp.attr_id != t.attr_id:
                self._get_key(t.slot, &k)
                self._emit_ann(bp.peer, bp.attr_id, &k)
                if self.noting:
                    self._note_slot(t.slot)
                if t.had:
                    if bp.peer == t.peer:
                        # The peer had the best path before too (ChangeSet.same_source).
                        self._put_prefix(&self.same, &k, False, 0)
                    self._emit_moved(t.attr_id, bp.attr_id, &k)
        self.touched.clear()
        # Deletions move entries within the table: only after every
        # touched slot was read.
        if self.dead.size():
            self._drop_dead()
        self._take_moved()
        self._collect_zero()
        return self._finish()

    def set_mark(self, peer_id, packed, bint addpath=False, int mark=0):
        """Set the mark (``update``'s ``mark``) of the paths ``peer_id``
        holds for the prefixes of packed NLRI; nothing else changes (not the
        attributes, age, stale flag or best path: no ChangeSet).  Returns
        how many paths changed mark."""
        cdef int peer = self._check_peer(peer_id)
        if not 0 <= mark < 4:
            raise ValueError("mark %r is not in 0..3" % (mark,))
        cdef bytes b = _as_bytes(packed)
        cdef Py_ssize_t n = PyBytes_GET_SIZE(b)
        if self._validate(b, addpath) == 0:
            return 0
        cdef const unsigned char *p = <const unsigned char *>PyBytes_AS_STRING(b)
        cdef Py_ssize_t pos = 0
        cdef char *s
        cdef SlotBody *body
        cdef RibPath *path
        cdef int at
        cdef size_t j, changed = 0
        cdef uint64_t *nmark = self.peers[peer].nmark
        while pos < n:
            pos = self._parse_chunk(p, pos, n, addpath)
            for j in range(self.items.size()):
                path = self._peer_path(&self.items[j], <uint16_t>peer, &s, &body, &at)
                if path != NULL and path.mark != mark:
                    nmark[path.mark] -= 1
                    nmark[mark] += 1
                    path.mark = <uint8_t>mark
                    changed += 1
        return changed

    def withdraw(self, peer_id, packed, bint addpath=False):
        """Remove the paths of ``peer_id`` for every prefix of packed NLRI
        (unknown prefixes and paths are ignored, RFC 4271 §9 has no error for
        withdrawing what was never announced)."""
        cdef int peer = self._check_peer(peer_id)
        cdef bytes b = _as_bytes(packed)
        cdef Py_ssize_t count = self._validate(b, addpath)
        if count == 0:
            return _empty_changeset()
        self._begin()
        self.touched.clear()
        try:
            self._apply_withdraw(<const unsigned char *>PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b), addpath, peer)
        except BaseException:
            self._abort()
            raise
        return self._settle()

    def drop_peer(self, peer_id):
        """Remove every path of ``peer_id`` (session down, RFC 4271 §8.2.2 /
        §9: its routes are withdrawn from the Loc-RIB)."""
        return self._remove_where(self._check_peer(peer_id), False, 0, self.cap)

    def mark_stale(self, peer_id):
        """RFC 4724 §4.2: the session of a Graceful Restart peer went down;
        keep its paths (still used for forwarding and best path) but mark
        them stale.  Returns the number of paths marked."""
        cdef int peer = self._check_peer(peer_id)
        if not self.peers[peer].npaths:
            return 0
        cdef size_t i, marked = 0
        cdef int j
        cdef char *s
        cdef SlotBody *body
        cdef RibPath *paths
        cdef bint found
        for i in range(self.cap):
            s = self.slots + i * self.ssize
            if self._is_empty(s):
                continue
            body = self._body(s)
            paths = _paths(body)
            j = _path_pos(paths, body.n, <uint16_t>peer, 0, &found)
            while j < body.n and paths[j].peer == peer:
                if not paths[j].stamp & STALE:
                    self.peers[peer].nstale += 1
                paths[j].stamp |= STALE
                marked += 1
                j += 1
        return marked

    def sweep_stale(self, peer_id):
        """RFC 4724 §4.2: End-of-RIB received (or the restart / stale timer
        fired): delete the paths of ``peer_id`` still marked stale."""
        return self._remove_where(self._check_peer(peer_id), True, 0, self.cap)

    def sweep_stale_slice(self, peer_id, start, max_slots):
        """One slice of :meth:`sweep_stale`, so that no one call holds the
        caller for a whole table: the stale paths of ``peer_id`` held in
        ``max_slots`` table slots from slot ``start`` go.  Returns
        (ChangeSet, next): ``next`` is the slot to go on from, None once
        the end of the table was reached (one pass done).  Prefixes move
        between slots when the table changes between two calls, so a pass
        can miss some: go on until :meth:`peer_stale_count` is 0.  Which
        prefixes a slice holds is this table's own order (the twin's
        differs); the changes of a whole sweep do not."""
        cdef int peer = self._check_peer(peer_id)
        if not isinstance(start, int) or not isinstance(max_slots, int) or start < 0 or max_slots < 1:
            raise ValueError("start must be an int >= 0, max_slots an int >= 1")
        cdef size_t cap = self.cap
        if start >= cap:
            return _empty_changeset(), None
        cdef size_t first = start
        cdef size_t end = cap if max_slots >= cap - first else first + <size_t>max_slots
        cs = self._remove_where(peer, True, first, end)
        return cs, (None if end >= cap else end)

    def remove_peer(self, peer_id):
        cs = self.drop_peer(peer_id)
        self.peers[<int>peer_id].registered = 0
        del self.peer_recs[peer_id]
        return cs

    # ------------------------------------------------------------ dumps

    def dump_best(self, exclude_peer=None):
        """Iterator of (attr_id, packed prefixes) covering every prefix's best
        path (the Loc-RIB to send to a new peer), skipping prefixes whose best
        path is from ``exclude_peer`` (split horizon).  Groups are ordered by
        their first prefix, prefixes ascending."""
        cdef long ex = -1 if exclude_peer is None else exclude_peer
        cdef size_t i
        cdef char *s
        cdef SlotBody *body
        cdef RibPath *bp
        cdef EmitRec rec
        self.recs.clear()
        rec.path_id = 0
        for i in range(self.cap):
            s = self.slots + i * self.ssize
            if self._is_empty(s):
                continue
            body = self._body(s)
            if body.best == BEST_NONE:
                continue
            bp = &_paths(body)[body.best]
            if bp.peer == ex:
                continue
            self._get_key(s, &rec.key)
            rec.group = bp.attr_id
            self.recs.push_back(rec)
        sort(self.recs.begin(), self.recs.end())
        for i in range(self.recs.size()):
            self._put_prefix(self._group(self.recs[i].group), &self.recs[i].key, False, 0)
        self.recs.clear()
        return iter(self._finish_groups())

    def dump_peer(self, peer_id, bint addpath=False):
        """Iterator of (attr_id, packed prefixes) of one peer's Adj-RIB-In;
        with ``addpath`` every prefix is preceded by its 4-octet path id
        (RFC 7911 §3), else a prefix held under several path ids appears once
        per path."""
        cdef int peer = self._check_peer(peer_id)
        cdef size_t i
        cdef int j
        cdef char *s
        cdef SlotBody *body
        cdef RibPath *paths
        cdef bint found
        cdef EmitRec rec
        self.recs.clear()
        for i in range(self.cap):
            s = self.slots + i * self.ssize
            if self._is_empty(s):
                continue
            body = self._body(s)
            paths = _paths(body)
            j = _path_pos(paths, body.n, <uint16_t>peer, 0, &found)
            while j < body.n and paths[j].peer == peer:
                self._get_key(s, &rec.key)
                rec.group = paths[j].attr_id
                rec.path_id = paths[j].path_id
                self.recs.push_back(rec)
                j += 1
        sort(self.recs.begin(), self.recs.end())
        for i in range(self.recs.size()):
            self._put_prefix(self._group(self.recs[i].group), &self.recs[i].key, addpath, self.recs[i].path_id)
        self.recs.clear()
        return iter(self._finish_groups())

    # ------------------------------------------------------------ lookups

    cdef char *_slot_of(self, prefix) except? NULL:
        addr, plen = parse_prefix(self.afi, prefix)
        cdef PKey k
        self._pkey(addr, plen, &k)
        return self._find(&k)

    def __len__(self):
        return self.used

    def __contains__(self, prefix):
        return self._slot_of(prefix) != NULL

    def path_count(self):
        return self.npaths

    def paths(self, prefix, bint received=False):
        """[(peer_id, path_id, attr_id, flags)] ascending by (peer_id, path_id);
        with ``received`` each tuple ends with the path's receive time (Unix
        seconds of its last change)."""
        cdef char *s = self._slot_of(prefix)
        if s == NULL:
            return []
        cdef SlotBody *b = self._body(s)
        cdef RibPath *p = _paths(b)
        if received:
            return [(p[i].peer, p[i].path_id, p[i].attr_id, p[i].stamp & STALE, _received(p[i].stamp))
                    for i in range(b.n)]
        return [(p[i].peer, p[i].path_id, p[i].attr_id, p[i].stamp & STALE) for i in range(b.n)]

    def best_path(self, prefix, bint received=False):
        """(peer_id, path_id, attr_id, flags) of the best path, or None;
        ``received`` appends its receive time as in ``paths``."""
        cdef char *s = self._slot_of(prefix)
        if s == NULL:
            return None
        cdef SlotBody *b = self._body(s)
        if b.best == BEST_NONE:
            return None
        cdef RibPath *p = &_paths(b)[b.best]
        if received:
            return (p.peer, p.path_id, p.attr_id, p.stamp & STALE, _received(p.stamp))
        return (p.peer, p.path_id, p.attr_id, p.stamp & STALE)

    def best_received(self, packed):
        """[(peer_id, received) of the best path, or None] for each prefix of
        packed NLRI (no path ids), in order: the receive times of a listing
        in one call, without a prefix string per row."""
        cdef bytes b = _as_bytes(packed)
        cdef Py_ssize_t n = PyBytes_GET_SIZE(b), pos = 0
        cdef const unsigned char *p = <const unsigned char *>PyBytes_AS_STRING(b)
        cdef PKey k
        cdef char *s
        cdef SlotBody *body
        cdef RibPath *bp
        cdef list out = []
        self._validate(b, False)
        while pos < n:
            pos = self._read(p, pos, &k)
            s = self._find(&k)
            if s == NULL:
                out.append(None)
                continue
            body = self._body(s)
            if body.best == BEST_NONE:
                out.append(None)
                continue
            bp = &_paths(body)[body.best]
            out.append((bp.peer, _received(bp.stamp)))
        return out

    cdef RibPath *_path_at(self, const unsigned char *p, Py_ssize_t *pos, bint addpath, int peer) noexcept nogil:
        """The path of ``peer`` (with ``addpath``, of the entry's path id)
        for the packed entry at ``pos`` (validated), or NULL; ``pos`` moves
        past the entry."""
        cdef PKey k
        cdef uint32_t pid = 0
        cdef bint found
        cdef int at
        if addpath:
            pid = (<uint32_t>p[pos[0]] << 24) | (<uint32_t>p[pos[0] + 1] << 16) | (<uint32_t>p[pos[0] + 2] << 8) \
                | p[pos[0] + 3]
            pos[0] += 4
        pos[0] = self._read(p, pos[0], &k)
        cdef char *s = self._find(&k)
        if s == NULL:
            return NULL
        cdef SlotBody *body = self._body(s)
        cdef RibPath *paths = _paths(body)
        at = _path_pos(paths, body.n, <uint16_t>peer, pid, &found)
        return &paths[at] if found else NULL

    def path_received(self, peer_id, packed, bint addpath=False):
        """[receive time of ``peer_id``'s path, or None] for each prefix of
        packed NLRI (with ``addpath``, the path of each prefix's path id),
        in order: an Adj-RIB-In listing's times in one call."""
        cdef int peer = self._check_peer(peer_id)
        cdef bytes b = _as_bytes(packed)
        cdef Py_ssize_t n = PyBytes_GET_SIZE(b), pos = 0
        cdef const unsigned char *p = <const unsigned char *>PyBytes_AS_STRING(b)
        cdef RibPath *path
        cdef list out = []
        self._validate(b, addpath)
        while pos < n:
            path = self._path_at(p, &pos, addpath, peer)
            out.append(None if path == NULL else _received(path.stamp))
        return out

    def paths_by_attr(self, peer_id, packed, bint addpath=False):
        """[(attr_id, packed)]: the prefixes of packed NLRI (with
        ``addpath``, each prefix's path id, kept in the output) for which
        ``peer_id`` has a path, grouped by that path's attribute id, groups
        in the order of their first prefix, prefixes in input order.  What
        an ADD-PATH export was sent before a path is replaced
        (fastbgp.daemon.exporter ``addpath_delta``): read before the
        update, one call per UPDATE."""
        cdef int peer = self._check_peer(peer_id)
        cdef bytes b = _as_bytes(packed)
        cdef Py_ssize_t n = PyBytes_GET_SIZE(b), pos = 0, start
        cdef const unsigned char *p = <const unsigned char *>PyBytes_AS_STRING(b)
        cdef RibPath *path
        cdef dict groups = {}
        cdef list parts
        self._validate(b, addpath)
        while pos < n:
            start = pos
            path = self._path_at(p, &pos, addpath, peer)
            if path == NULL:
                continue
            parts = groups.get(path.attr_id)
            if parts is None:
                parts = groups[path.attr_id] = []
            parts.append(PyBytes_FromStringAndSize(<const char *>p + start, pos - start))
        return [(aid, b"".join(parts)) for aid, parts in groups.items()]

    def best(self, prefix):
        """(peer_id, attr_id) of the best path, or None."""
        p = self.best_path(prefix)
        return None if p is None else (p[0], p[2])

    def lookup(self, prefix):
        """Exact match: (prefix string, peer_id, attr_id) or None."""
        addr, plen = parse_prefix(self.afi, prefix)
        cdef PKey k
        self._pkey(addr, plen, &k)
        cdef char *s = self._find(&k)
        if s == NULL:
            return None
        cdef SlotBody *b = self._body(s)
        if b.best == BEST_NONE:
            return None
        cdef RibPath *p = &_paths(b)[b.best]
        return (prefix_str(self.afi, addr, plen), p.peer, p.attr_id)

    def longest_match(self, address):
        """Most specific prefix covering ``address`` (an address, or a prefix:
        then only prefixes at most that long): (prefix string, peer_id,
        attr_id) or None.  Only lengths present in the table are probed."""
        addr, top = parse_address(self.afi, address)
        cdef PKey full, k
        cdef int plen
        cdef char *s
        cdef SlotBody *b
        cdef RibPath *p
        self._pkey(addr, self.bits, &full)
        for plen in range(top, -1, -1):
            if not self.len_count[plen]:
                continue
            if self.v6:
                k.hi = full.hi & rib_mask64(plen)
                k.lo = full.lo & rib_mask64(plen - 64)
            else:
                k.hi = 0
                k.lo = (<uint64_t>(<uint32_t>(full.lo >> 8) & rib_mask32(plen)) << 8) | <uint64_t>plen
            k.len = plen
            s = self._find(&k)
            if s == NULL:
                continue
            b = self._body(s)
            if b.best == BEST_NONE:
                continue
            p = &_paths(b)[b.best]
            return (prefix_str(self.afi, self._key_int(&k), plen), p.peer, p.attr_id)
        return None

    def prefixes(self):
        """Every prefix held, as strings, ascending (tests and debugging)."""
        cdef vector[PKey] keys
        cdef PKey k
        cdef size_t i
        for i in range(self.cap):
            if not self._is_empty(self.slots + i * self.ssize):
                self._get_key(self.slots + i * self.ssize, &k)
                keys.push_back(k)
        sort(keys.begin(), keys.end())
        return [prefix_str(self.afi, self._key_int(&keys[i]), keys[i].len) for i in range(keys.size())]

    def memory_usage(self):
        """Bytes held by the structure itself (excluding the AttrTable): the
        slot array plus the path arrays of multi-path prefixes (their slab
        chunks whole, pathslab.h)."""
        return self.cap * self.ssize + ps_bytes(self.slab) + self.peers.size() * sizeof(PeerInfo)


# ---------------------------------------------------------------- Adj-RIB-Out record


cdef struct HeldItem:
    PKey key
    size_t home
    Py_ssize_t start, end  # the prefix's octets in the caller's buffer


cdef class _HeldTable:
    """The table of HeldSet: an open-addressing table (linear probing,
    backward-shift deletion, like the slot table) of fixed-size entries in
    one array of uint64 words -- the prefix key (IPv4 one word ``addr << 8 |
    len``, IPv6 three: high, low, length) then one bit per group index, in
    as many 64-bit words as the highest index allocated needs (the table is
    rebuilt wider when an index past them is allocated).  IPv4 entries are
    one word while no index past PACKED_GROUPS (24) was ever allocated in
    the family: the 40-bit key above the group bits (8 octets per prefix
    instead of 16; a route server's many groups widen it once)."""

    cdef readonly int afi
    cdef bint v6
    cdef int bits
    cdef uint64_t *tab
    cdef size_t cap, mask, used, kw, words, stride
    cdef int shift
    # IPv4 while at most PACKED_GROUPS indexes were ever allocated: one
    # word per entry, the key (40 bits) above the group bits (24).
    cdef bint packed
    cdef vector[HeldItem] items  # scratch: a chunk of parsed prefixes

    def __cinit__(self, afi):
        self.bits = family_bits(afi)
        self.afi = afi
        self.v6 = self.bits == 128
        self.kw = 3 if self.v6 else 1
        self.words = 1
        self.packed = not self.v6
        self.stride = 1 if self.packed else self.kw + 1
        self.tab = NULL
        self.cap = 0
        self._rebuild(MIN_CAP, 1, self.packed)

    def __dealloc__(self):
        rib_free_table(self.tab, self.cap * self.stride * sizeof(uint64_t))

    @cython.final
    cdef inline bint _empty(self, const uint64_t *e) noexcept nogil:
        return e[2] == RIB_ALL if self.v6 else e[0] == RIB_ALL

    @cython.final
    cdef inline bint _eq(self, const uint64_t *e, const PKey *k) noexcept nogil:
        if self.v6:
            return e[0] == k.hi and e[1] == k.lo and e[2] == k.len
        if self.packed:
            return (e[0] >> PACKED_GROUPS) == k.lo
        return e[0] == k.lo

    @cython.final
    cdef inline void _loc(self, size_t g, size_t *w, uint64_t *bit) noexcept nogil:
        """Where group ``g``'s bit is in an entry: word and mask."""
        if self.packed:
            w[0] = 0
            bit[0] = (<uint64_t>1) << g
        else:
            w[0] = self.kw + (g >> 6)
            bit[0] = (<uint64_t>1) << (g & 63)

    @cython.final
    cdef inline void _key(self, const uint64_t *e, PKey *k) noexcept nogil:
        if self.v6:
            k.hi = e[0]
            k.lo = e[1]
            k.len = <uint32_t>e[2]
        else:
            k.hi = 0
            k.lo = e[0] >> PACKED_GROUPS if self.packed else e[0]
            k.len = <uint32_t>(k.lo & 0xFF)

    @cython.final
    cdef inline size_t _home(self, const PKey *k) noexcept nogil:
        # Mixed before the Fibonacci step: IPv4 /24 keys (addr << 8 | 24)
        # share their low 16 bits, and multiplying alone sends a table of
        # them to a third of the homes (probe runs ~50 long at half load).
        # Not the slot table's hash (the key xor-ed first): prefixes leave
        # the slots in slot order -- a peer down, a sliced sweep -- and come
        # here; in that table's order this one's homes would rise with each
        # entry, and linear probing then piles them into one run while the
        # table grows (seconds for a full table, measured).
        return <size_t>((_mix_key(_hash_key(k, self.v6) ^ RIB_MIX) * RIB_GOLDEN) >> self.shift)

    @cython.final
    cdef uint64_t *_find(self, const PKey *k, size_t i) noexcept nogil:
        cdef uint64_t *e
        while True:
            e = self.tab + i * self.stride
            if self._empty(e):
                return NULL
            if self._eq(e, k):
                return e
            i = (i + 1) & self.mask

    @cython.final
    cdef uint64_t *_add(self, const PKey *k, size_t i) noexcept nogil:
        """A new entry for ``k`` (absent; room reserved; home slot ``i``),
        no bit set."""
        cdef uint64_t *e
        while True:
            e = self.tab + i * self.stride
            if self._empty(e):
                break
            i = (i + 1) & self.mask
        if self.v6:
            e[0] = k.hi
            e[1] = k.lo
            e[2] = k.len
        elif self.packed:
            e[0] = k.lo << PACKED_GROUPS  # no bit set
            self.used += 1
            return e
        else:
            e[0] = k.lo
        memset(e + self.kw, 0, self.words * sizeof(uint64_t))
        self.used += 1
        return e

    @cython.final
    cdef inline bint _bare(self, const uint64_t *e) noexcept nogil:
        cdef size_t w
        if self.packed:
            return not e[0] & PACKED_MASK
        for w in range(self.kw, self.stride):
            if e[w]:
                return False
        return True

    @cython.final
    cdef void _delete(self, uint64_t *e) noexcept nogil:
        """Empty entry ``e`` and close the gap (see _SlotTable._delete)."""
        cdef size_t i = <size_t>(e - self.tab) // self.stride
        cdef size_t j = i, h
        cdef PKey k
        cdef uint64_t *ej
        self.used -= 1
        while True:
            j = (j + 1) & self.mask
            ej = self.tab + j * self.stride
            if self._empty(ej):
                break
            self._key(ej, &k)
            h = self._home(&k)
            if i <= j:
                if i < h and h <= j:
                    continue
            elif i < h or h <= j:
                continue
            memcpy(self.tab + i * self.stride, ej, self.stride * sizeof(uint64_t))
            i = j
        memset(self.tab + i * self.stride, 0xFF, self.stride * sizeof(uint64_t))

    @cython.final
    cdef int _rebuild(self, size_t newcap, size_t words, bint packed) except -1:
        """Move every entry with a bit set into a table of ``newcap``
        entries of ``words`` mask words (``packed``: IPv4 entries of one
        word, see the class)."""
        cdef size_t stride = 1 if packed else self.kw + words
        cdef uint64_t *new = <uint64_t *>rib_alloc_table(newcap * stride * sizeof(uint64_t), 1)
        if new == NULL:
            raise MemoryError()
        memset(new, 0xFF, newcap * stride * sizeof(uint64_t))
        cdef uint64_t *old = self.tab
        cdef size_t oldcap = self.cap, oldstride = self.stride, oldwords = self.words, i, j, keep
        cdef bint oldpacked = self.packed
        cdef int log2 = 0
        cdef PKey k
        cdef uint64_t *e
        cdef uint64_t *d
        cdef uint64_t low = 0
        while (<size_t>1 << log2) < newcap:
            log2 += 1
        self.tab = new
        self.cap = newcap
        self.mask = newcap - 1
        self.shift = 64 - log2
        self.words = words
        self.stride = stride
        self.used = 0
        keep = oldwords if oldwords < words else words
        for i in range(oldcap):
            e = old + i * oldstride
            if self.v6 and e[2] == RIB_ALL or not self.v6 and e[0] == RIB_ALL:
                continue  # empty
            if oldpacked:
                low = e[0] & PACKED_MASK
                if not low:
                    continue  # no bit left
                k.hi = 0
                k.lo = e[0] >> PACKED_GROUPS
            else:
                for j in range(self.kw, self.kw + keep):
                    if e[j]:
                        break
                else:
                    continue  # no bit left
                k.hi = e[0] if self.v6 else 0
                k.lo = e[1] if self.v6 else e[0]
            k.len = <uint32_t>e[2] if self.v6 else <uint32_t>(k.lo & 0xFF)
            j = self._home(&k)  # (the key, not the layout: the same home in either)
            while True:
                d = new + j * stride
                if self.v6 and d[2] == RIB_ALL or not self.v6 and d[0] == RIB_ALL:
                    break
                j = (j + 1) & self.mask
            if packed:  # (from packed only: an index past PACKED_GROUPS makes a table wide, never back)
                d[0] = (k.lo << PACKED_GROUPS) | low
            elif oldpacked:
                d[0] = k.lo
                d[1] = low
                memset(d + 2, 0, (words - 1) * sizeof(uint64_t))
            else:
                memcpy(d, e, (self.kw + keep) * sizeof(uint64_t))
                if words > keep:
                    memset(d + self.kw + keep, 0, (words - keep) * sizeof(uint64_t))
            self.used += 1
        self.packed = packed
        rib_free_table(old, oldcap * oldstride * sizeof(uint64_t))
        return 0

    @cython.final
    cdef Py_ssize_t _chunk(self, const unsigned char *p, Py_ssize_t pos, Py_ssize_t n) noexcept nogil:
        """Parse up to CHUNK (validated) prefixes of p[pos:n] into
        self.items (a full table is a cache miss per probe: the homes of a
        chunk are known first and prefetched AHEAD); the next position."""
        cdef HeldItem it
        self.items.clear()
        while pos < n and self.items.size() < CHUNK:
            it.start = pos
            pos = _read_key(p, pos, &it.key, self.v6)
            it.end = pos
            self.items.push_back(it)
        return pos

    @cython.final
    cdef void _homes(self) noexcept nogil:
        cdef size_t i
        for i in range(self.items.size()):
            self.items[i].home = self._home(&self.items[i].key)
            if i < AHEAD:
                rib_prefetch(self.tab + self.items[i].home * self.stride)

    @cython.final
    cdef size_t _fit(self, size_t n) noexcept nogil:
        """Capacity for ``n`` entries: at most 80 % full, 40 % after growth."""
        cdef size_t cap = MIN_CAP
        while n * 5 > cap * 2:
            cap *= 2
        return cap

    @cython.final
    cdef int _side_or(self, const PKey *k, uint64_t bits) except -1:
        """Set ``bits`` (indexes below PACKED_GROUPS) in ``k``'s entry of
        this table, adding it if absent."""
        cdef size_t h
        cdef uint64_t *e
        if (self.used + 1) * 5 > self.cap * 4:
            self._rebuild(self.cap * 2, self.words, self.packed)
        h = self._home(k)
        e = self._find(k, h)
        if e == NULL:
            e = self._add(k, h)
        e[0 if self.packed else self.kw] |= bits
        return 0

    @cython.final
    cdef int _shrink(self) except -1:
        """Give memory back once this table is under 1/8 full."""
        if self.used * 8 < self.cap and self.cap > MIN_CAP:
            self._rebuild(self._fit(self.used), self.words, self.packed)
        return 0


cdef class HeldSet(_HeldTable):
    """Which update groups hold which prefixes (the compact Adj-RIB-Out of
    fastbgp.rib.export): one bit per prefix and group index, in the table
    of _HeldTable.

    The HeldSet of a Rib (``Rib.held``) keeps the bits of the prefixes in
    that Rib's slot table in the slots themselves while no index past
    PACKED_GROUPS was ever allocated ("tagged"): the spare bits of each
    slot's key word (_SlotTable._tag), no octet more per prefix.  Its own
    table then holds only prefixes not in the slots: those that left the
    Loc-RIB while some group was not yet sent their withdrawal (the Rib
    moves the bits here when it deletes the slot, and back when the prefix
    returns) and those marked without ever being in it.  A prefix's bits
    are in one place, never both.  The index past PACKED_GROUPS moves every
    slot's bits here for good.  An entry (or a tag) goes when its last bit
    is cleared.  Same behaviour as the twin's HeldSet."""

    cdef vector[uint8_t] in_use  # group index -> allocated
    # The Rib whose slots hold the bits of its prefixes (borrowed: the Rib
    # owns this HeldSet and detaches it before it goes), NULL when none.
    cdef PyObject *owner
    cdef bint tagged  # bits of prefixes in owner's slots are in their tags
    cdef size_t ntag  # slots whose tag is not zero
    # mark_groups calls served from the slots the owner noted (_mark_slots;
    # the compiled RIB only: a figure for tests and benchmarks).
    cdef readonly size_t marked_in_place

    def __cinit__(self, afi):
        self.owner = NULL
        self.tagged = False
        self.ntag = 0

    # ------------------------------------------------------------ the slots' tags

    @cython.final
    cdef int _attach(self, _SlotTable t) except -1:
        """Keep the bits of ``t``'s prefixes in its slots (a fresh Rib)."""
        self.owner = <PyObject *>t
        self.tagged = self.in_use.size() <= PACKED_GROUPS
        return 0

    @cython.final
    cdef int _detach(self) except -1:
        """The owner goes: its slots' bits move into this table."""
        self._untag()
        self.owner = NULL
        return 0

    @cython.final
    cdef int _untag(self) except -1:
        """Move every slot's bits into this table (at most PACKED_GROUPS
        bits each) and stop using the tags."""
        if not self.tagged:
            return 0
        cdef _SlotTable t = <_SlotTable>self.owner
        cdef size_t i, need = self.used + self.ntag, cap = self.cap
        cdef char *s
        cdef PKey k
        while need * 5 > cap * 4:  # room for all at once, the load of growth (80 %)
            cap *= 2
        if cap != self.cap:
            self._rebuild(cap, self.words, self.packed)
        for i in range(t.cap):
            s = t.slots + i * t.ssize
            if not t._is_empty(s) and t._tag(s):
                t._get_key(s, &k)
                self._side_or(&k, t._tag(s))
                t._set_tag(s, 0)
        self.ntag = 0
        self.tagged = False
        return 0

    @cython.final
    cdef inline bint _side_held(self) noexcept:
        """Prefixes outside the slots are held while tagged (a prefix
        entering the slots must take its bits from this table)."""
        return self.tagged and self.used != 0

    @cython.final
    cdef int _slot_gone(self, const PKey *k, uint64_t tag) except -1:
        """The owner deletes the slot of ``k`` (tag ``tag``, not zero)."""
        self._side_or(k, tag)
        self.ntag -= 1
        return 0

    @cython.final
    cdef void _slot_new(self, char *s, const PKey *k) noexcept:
        """The owner created slot ``s`` for ``k``: its bits, if any, move
        from this table into the tag."""
        cdef uint64_t *e = self._find(k, self._home(k))
        cdef uint64_t bits
        if e == NULL:
            return
        bits = e[0] & PACKED_MASK if self.packed else e[self.kw]
        self._delete(e)
        (<_SlotTable>self.owner)._set_tag(s, bits)
        self.ntag += 1

    @cython.final
    cdef size_t _group(self, group) except? 0xFFFFFFFF:
        if not isinstance(group, int) or not 0 <= group < <Py_ssize_t>self.in_use.size() \
                or not self.in_use[<size_t>group]:
            raise ValueError("group index %r is not allocated" % (group,))
        return <size_t>group

    def new_group(self):
        """The lowest free group index (its bit clear everywhere), or None
        when MAX_HELD_GROUPS are allocated."""
        cdef size_t i
        for i in range(self.in_use.size()):
            if not self.in_use[i]:
                self.in_use[i] = 1
                return i
        i = self.in_use.size()
        if i >= MAX_HELD_GROUPS:
            return None
        self.in_use.push_back(1)
        if self.packed and i >= PACKED_GROUPS:
            self._rebuild(self.cap, i // 64 + 1, False)  # one word no longer holds every bit
        elif i // 64 >= self.words:
            self._rebuild(self.cap, i // 64 + 1, False)
        if i >= PACKED_GROUPS:
            self._untag()  # nor does a slot's tag
        return i

    def free_group(self, group):
        """Release ``group``: its bit is cleared from every prefix (entries
        left with none go) and the index may be handed out again."""
        cdef size_t g = self._group(group), i
        cdef size_t w
        cdef uint64_t bit
        cdef _SlotTable t
        cdef char *s
        self._loc(g, &w, &bit)
        if self.tagged:
            t = <_SlotTable>self.owner
            for i in range(t.cap):
                s = t.slots + i * t.ssize
                if not t._is_empty(s) and t._tag(s) & bit:
                    t._set_tag(s, t._tag(s) & ~bit)
                    if not t._tag(s):
                        self.ntag -= 1
        cdef size_t bare = 0
        cdef uint64_t *e
        for i in range(self.cap):
            e = self.tab + i * self.stride
            if not self._empty(e) and e[w] & bit:
                e[w] &= ~bit
                if self._bare(e):
                    bare += 1
        self.in_use[g] = 0
        if bare:
            # Drops the entries with no bit left.  None: the table stays
            # as it is (a route server's clients leaving one by one hold
            # the same prefixes: each would have copied the whole table).
            self._rebuild(self.cap, self.words, self.packed)
        if self.used * 8 < self.cap and self.cap > MIN_CAP:
            self._rebuild(self._fit(self.used), self.words, self.packed)

    def mark(self, group, packed):
        """Set ``group``'s bit on every prefix of packed NLRI (no path ids):
        it was sent them.  Returns how many were not held by it before."""
        return self.mark_groups((group,), packed)

    def mark_groups(self, groups, packed):
        """:meth:`mark` for every group of ``groups`` at once (one
        announcement sent alike to many groups: a route server's clients):
        each prefix is looked up once, not once per group.  Returns how many
        (prefix, group) bits were not set before."""
        cdef size_t g, w, w0, nw
        cdef uint64_t bit, tagbits = 0
        cdef vector[uint64_t] masks
        masks.resize(1 if self.packed else self.words, 0)
        for group in groups:
            g = self._group(group)
            self._loc(g, &w, &bit)
            tagbits |= bit
            masks[0 if self.packed else w - self.kw] |= bit
        cdef vector[uint32_t] *at
        if self.tagged:
            # The owner's own announcement, its slots known: no parse, no look-up.
            at = (<_Changes>self.owner)._sent_slots_of(packed)
            if at != NULL:
                self.marked_in_place += 1
                return self._mark_slots(tagbits, at)
        cdef bytes b = _as_bytes(packed)
        cdef const unsigned char *p = <const unsigned char *>PyBytes_AS_STRING(b)
        cdef Py_ssize_t n = PyBytes_GET_SIZE(b)
        if nlri_count(p, 0, n, self.bits, False) < 0:
            raise ValueError("malformed NLRI")
        if self.tagged:
            return self._mark_tags(tagbits, p, n)  # every index below PACKED_GROUPS: one mask
        w0 = 0 if self.packed else self.kw
        nw = masks.size()
        return self._mark_masks(masks.data(), w0, nw, p, n)

    @cython.final
    cdef size_t _mark_masks(self, const uint64_t *masks, size_t w0, size_t nw, const unsigned char *p,
                            Py_ssize_t n) except? 0xFFFFFFFF:
        """mark_groups in this table: ``masks`` over the ``nw`` group words
        of an entry from word ``w0``."""
        cdef Py_ssize_t pos = 0
        cdef uint64_t *e
        cdef uint64_t new
        cdef size_t added = 0, i, k, m, newcap
        cdef HeldItem *it
        while pos < n:
            pos = self._chunk(p, pos, n)
            m = self.items.size()
            # Room for the whole chunk first (grow at 80 % load): entry
            # positions stay put while it is applied.
            if (self.used + m) * 5 > self.cap * 4:
                newcap = self.cap
                while (self.used + m) * 5 > newcap * 4:
                    newcap *= 2
                self._rebuild(newcap, self.words, self.packed)
            self._homes()
            for i in range(m):
                if i + AHEAD < m:
                    rib_prefetch(self.tab + self.items[i + AHEAD].home * self.stride)
                it = &self.items[i]
                e = self._find(&it.key, it.home)
                if e == NULL:
                    e = self._add(&it.key, it.home)
                for k in range(nw):
                    new = masks[k] & ~e[w0 + k]
                    if new:
                        e[w0 + k] |= new
                        added += <size_t>rib_popcount(new)
        if self.items.capacity() > CHUNK:
            self.items.shrink_to_fit()
        return added

    @cython.final
    cdef inline void _slot_homes(self, _SlotTable t) noexcept nogil:
        """The homes of self.items in the owner's slot table, the first
        AHEAD prefetched."""
        cdef size_t i
        for i in range(self.items.size()):
            self.items[i].home = t._home(&self.items[i].key)
            if i < AHEAD:
                rib_prefetch(t.slots + self.items[i].home * t.ssize)

    @cython.final
    cdef size_t _mark_slots(self, uint64_t bit, const vector[uint32_t] *at) except? 0xFFFFFFFF:
        """_mark_tags for prefixes known to be in the owner's slots ``at``
        (_Changes._sent_slots_of): the same tags set, without a parse or a
        hash look-up per prefix."""
        cdef _SlotTable t = <_SlotTable>self.owner
        cdef size_t added = 0, i, m = at.size()
        cdef const uint32_t *pos = at.data()
        for i in range(m):
            if i + AHEAD < m:
                rib_prefetch(t.slots + <size_t>pos[i + AHEAD] * t.ssize)
            added += self._tag_or(t, t.slots + <size_t>pos[i] * t.ssize, bit)
        return added

    @cython.final
    cdef inline size_t _tag_or(self, _SlotTable t, char *s, uint64_t bit) noexcept nogil:
        """Set ``bit`` in slot ``s``'s tag; how many of them were not set."""
        cdef uint64_t tag = t._tag(s)
        if tag & bit == bit:
            return 0
        if not tag:
            self.ntag += 1
        t._set_tag(s, tag | bit)
        return <size_t>rib_popcount(bit & ~tag)

    @cython.final
    cdef size_t _mark_tags(self, uint64_t bit, const unsigned char *p, Py_ssize_t n) except? 0xFFFFFFFF:
        """mark_groups while tagged (``bit``: the groups' bits, all below
        PACKED_GROUPS): in the slot's tag when the prefix has one, else in
        this table.  Returns how many bits were not set before."""
        cdef _SlotTable t = <_SlotTable>self.owner
        cdef Py_ssize_t pos = 0
        cdef size_t added = 0, i, m
        cdef char *s
        cdef uint64_t tag
        cdef uint64_t *e
        cdef HeldItem *it
        while pos < n:
            pos = self._chunk(p, pos, n)
            m = self.items.size()
            self._slot_homes(t)
            for i in range(m):
                if i + AHEAD < m:
                    rib_prefetch(t.slots + self.items[i + AHEAD].home * t.ssize)
                it = &self.items[i]
                s = t._find_at(&it.key, it.home)
                if s != NULL:
                    added += self._tag_or(t, s, bit)
                    continue
                e = self._find(&it.key, self._home(&it.key))
                tag = 0 if e == NULL else e[0 if self.packed else self.kw]
                if tag & bit != bit:
                    self._side_or(&it.key, bit)
                    added += <size_t>rib_popcount(bit & ~tag)
        if self.items.capacity() > CHUNK:
            self.items.shrink_to_fit()
        return added

    @cython.final
    cdef object _filter_tags(self, uint64_t bit, const unsigned char *p, Py_ssize_t n, bint clear):
        """filter while tagged: the slot's tag when the prefix has one,
        else this table."""
        cdef _SlotTable t = <_SlotTable>self.owner
        cdef Py_ssize_t pos = 0
        cdef size_t i, m, w = 0 if self.packed else self.kw
        cdef char *s
        cdef uint64_t tag
        cdef uint64_t *e
        cdef HeldItem *it
        cdef string out
        while pos < n:
            pos = self._chunk(p, pos, n)
            m = self.items.size()
            self._slot_homes(t)
            for i in range(m):
                if i + AHEAD < m:
                    rib_prefetch(t.slots + self.items[i + AHEAD].home * t.ssize)
                it = &self.items[i]
                s = t._find_at(&it.key, it.home)
                if s != NULL:
                    tag = t._tag(s)
                    if not tag & bit:
                        continue
                    out.append(<const char *>p + it.start, it.end - it.start)
                    if clear:
                        t._set_tag(s, tag & ~bit)
                        if tag == bit:
                            self.ntag -= 1
                    continue
                if not self.used:
                    continue
                e = self._find(&it.key, self._home(&it.key))
                if e == NULL or not e[w] & bit:
                    continue
                out.append(<const char *>p + it.start, it.end - it.start)
                if clear:
                    e[w] &= ~bit
                    if self._bare(e):
                        self._delete(e)
        if self.items.capacity() > CHUNK:
            self.items.shrink_to_fit()
        if clear:
            self._shrink()
        return PyBytes_FromStringAndSize(out.data(), out.size())

    def filter(self, group, packed, bint clear=False):
        """The prefixes of packed NLRI (no path ids) that ``group`` holds,
        packed as given, in order; with ``clear`` the group no longer holds
        them (it is being sent their withdrawal)."""
        cdef size_t g = self._group(group)
        cdef size_t w
        cdef uint64_t bit
        self._loc(g, &w, &bit)
        cdef bytes b = _as_bytes(packed)
        cdef const unsigned char *p = <const unsigned char *>PyBytes_AS_STRING(b)
        cdef Py_ssize_t n = PyBytes_GET_SIZE(b), pos = 0
        cdef uint64_t *e
        cdef string out
        cdef size_t i, m
        cdef HeldItem *it
        if nlri_count(p, 0, n, self.bits, False) < 0:
            raise ValueError("malformed NLRI")
        if self.tagged:
            return self._filter_tags(bit, p, n, clear)
        while pos < n:
            pos = self._chunk(p, pos, n)
            m = self.items.size()
            self._homes()
            for i in range(m):
                if i + AHEAD < m:
                    rib_prefetch(self.tab + self.items[i + AHEAD].home * self.stride)
                it = &self.items[i]
                # Deletions below move entries back, never away from their
                # home: the homes computed stay right.
                e = self._find(&it.key, it.home)
                if e == NULL or not e[w] & bit:
                    continue
                out.append(<const char *>p + it.start, it.end - it.start)
                if clear:
                    e[w] &= ~bit
                    if self._bare(e):
                        self._delete(e)
        if self.items.capacity() > CHUNK:
            self.items.shrink_to_fit()
        if clear and self.used * 8 < self.cap and self.cap > MIN_CAP:
            self._rebuild(self._fit(self.used), self.words, self.packed)
        return PyBytes_FromStringAndSize(out.data(), out.size())

    def count(self, group):
        """Prefixes ``group`` holds."""
        cdef size_t g = self._group(group), i, c = 0
        cdef size_t w
        cdef uint64_t bit
        cdef _SlotTable t
        self._loc(g, &w, &bit)
        if self.tagged:
            t = <_SlotTable>self.owner
            for i in range(t.cap):
                if not t._is_empty(t.slots + i * t.ssize) and t._tag(t.slots + i * t.ssize) & bit:
                    c += 1
        for i in range(self.cap):
            if not self._empty(self.tab + i * self.stride) and self.tab[i * self.stride + w] & bit:
                c += 1
        return c

    def groups(self):
        """The group indexes allocated, ascending."""
        return [i for i in range(self.in_use.size()) if self.in_use[i]]

    def __len__(self):
        """Prefixes held by some group."""
        return self.used + self.ntag

    def memory_usage(self):
        """Bytes of the entry array (the bits kept in a Rib's slots cost
        none: see the class)."""
        return self.cap * self.stride * sizeof(uint64_t)


# ------------------------------------------------------- attribute records

from fastbgp.wire import constants as _c

# The type codes and segment types record_words compares with as C
# literals (RFC 4271 §4.3, RFC 1997, 4456, 4360, 8092, 5065).
if ((_c.ATTR_ORIGIN, _c.ATTR_AS_PATH, _c.ATTR_NEXT_HOP, _c.ATTR_MED, _c.ATTR_LOCAL_PREF, _c.ATTR_ATOMIC_AGGREGATE,
     _c.ATTR_COMMUNITIES, _c.ATTR_ORIGINATOR_ID, _c.ATTR_CLUSTER_LIST, _c.ATTR_EXT_COMMUNITIES,
     _c.ATTR_LARGE_COMMUNITY, _c.AS_SET, _c.AS_SEQUENCE, _c.AS_CONFED_SEQUENCE, _c.AS_CONFED_SET,
     _c.ORIGIN_INCOMPLETE, _c.FLAG_TRANSITIVE, _c.FLAG_EXTENDED_LENGTH)
        != (1, 2, 3, 4, 5, 6, 8, 9, 10, 16, 32, 1, 2, 3, 4, 2, 0x40, 0x10)):
    raise ImportError("fastbgp.rib._rib: record_words' type codes differ from fastbgp.wire.constants")

# attrs.KNOWN_ATTRS as a table: what parse_fields calls "recognised".
cdef bint _KNOWN[256]
for _t in range(256):
    _KNOWN[_t] = _t in _attrs.KNOWN_ATTRS
# RFC 1997 / 8326 / 7999 well-known communities -> their W_FLAGS bit.
cdef dict _WELL_KNOWN = dict(_attrs.WELL_KNOWN_COMMUNITY_FLAGS)
cdef uint32_t _WELL_KNOWN_MIN = min(_WELL_KNOWN)  # no other community needs a look-up
# attrs' W_FLAGS bits and defaults as C values: read once here, not looked
# up in the module for every attribute of every new set.
cdef uint32_t _F_LIVE = _attrs.F_LIVE, _F_NEXT_HOP = _attrs.F_NEXT_HOP, _F_LOCAL_PREF = _attrs.F_LOCAL_PREF
cdef uint32_t _F_MED = _attrs.F_MED, _F_ORIGINATOR_ID = _attrs.F_ORIGINATOR_ID
cdef uint32_t _F_ATOMIC_AGGREGATE = _attrs.F_ATOMIC_AGGREGATE, _F_COMMUNITIES = _attrs.F_COMMUNITIES
cdef uint32_t _F_EXT_COMMUNITIES = _attrs.F_EXT_COMMUNITIES, _F_LARGE_COMMUNITIES = _attrs.F_LARGE_COMMUNITIES
cdef uint32_t _F_UNKNOWN_TRANSITIVE = _attrs.F_UNKNOWN_TRANSITIVE
cdef uint32_t _F_UNKNOWN_NON_TRANSITIVE = _attrs.F_UNKNOWN_NON_TRANSITIVE
cdef uint32_t _DEFAULT_LOCAL_PREF = _attrs.DEFAULT_LOCAL_PREF, _MED_WORST = _attrs.MED_WORST


cdef inline uint32_t _u32(const unsigned char *p) noexcept:
    return (<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8) | p[3]


def record_words(attrs, next_hop=b"", bint med_missing_as_worst=False):
    """attrs.parse_fields(...)[0] in one C walk: the record words (less the
    refcount) of one canonical attribute block, what AttrTable.intern
    stores for each new set.  Identical results and IndexError on the same
    inputs (tests/test_attr_record.py)."""
    cdef bytes b = attrs if type(attrs) is bytes else bytes(attrs)
    cdef const unsigned char *p = <const unsigned char *>PyBytes_AS_STRING(b)
    cdef Py_ssize_t size = PyBytes_GET_SIZE(b)
    cdef bint has_nh = len(next_hop) > 0
    cdef Py_ssize_t i = 0, vs = 0, ve, e, n, k, c
    cdef uint32_t origin = 2  # ORIGIN_INCOMPLETE: absent only on locally built sets
    cdef uint32_t flags = _F_LIVE, lp = 0, med = 0, originator = 0, cluster_len = 0, nbr = 0, comm
    cdef uint64_t path_len = 0
    cdef bint has_lp = False, has_med = False, has_orig = False, nbr_done
    cdef int t, st, cnt
    while i < size:
        ve = attr_end(p, size, i, &vs)
        t = p[i + 1]
        e = ve if ve < size else size  # the value, clipped as split_attrs clips it
        if vs > e:
            vs = e
        n = e - vs
        if t == 1 and n == 1:  # ORIGIN
            origin = p[vs]
        elif t == 2:  # AS_PATH: its length (RFC 4271 §9.1.2.2 a, RFC 5065 §5.3) and neighbour AS
            path_len = 0
            nbr = 0
            nbr_done = False
            k = vs
            while k < e:
                k = segment_at(p, e, k, &st, &cnt)
                if st == 2:  # AS_SEQUENCE
                    path_len += cnt
                elif st == 1:  # AS_SET
                    path_len += 1
                if not nbr_done and st != 3 and st != 4:  # confederation segments skipped
                    nbr_done = True
                    if st == 2 and cnt:
                        nbr = <uint32_t>asn_at(p, k, e, 4)
                k += cnt * 4
        elif t == 3 and not has_nh:  # NEXT_HOP
            has_nh = n > 0
        elif t == 4:  # MULTI_EXIT_DISC
            has_med = n == 4
            med = _u32(p + vs) if has_med else 0
        elif t == 5:  # LOCAL_PREF
            has_lp = n == 4
            lp = _u32(p + vs) if has_lp else 0
        elif t == 6:
            flags |= _F_ATOMIC_AGGREGATE
        elif t == 8:  # COMMUNITIES, and the well-known ones among them
            flags |= _F_COMMUNITIES
            c = vs
            while c + 3 < e:
                comm = _u32(p + c)
                if comm >= _WELL_KNOWN_MIN:
                    flags |= <uint32_t>_WELL_KNOWN.get(comm, 0)
                c += 4
        elif t == 9:  # ORIGINATOR_ID
            has_orig = n == 4
            originator = _u32(p + vs) if has_orig else 0
        elif t == 10:  # CLUSTER_LIST
            cluster_len = <uint32_t>(n // 4)
        elif t == 16:
            flags |= _F_EXT_COMMUNITIES
        elif t == 32:
            flags |= _F_LARGE_COMMUNITIES
        elif not _KNOWN[t]:
            flags |= _F_UNKNOWN_TRANSITIVE if p[i] & 0x40 else _F_UNKNOWN_NON_TRANSITIVE
        i = ve
    if has_nh:
        flags |= _F_NEXT_HOP
    if has_lp:
        flags |= _F_LOCAL_PREF
    else:
        lp = _DEFAULT_LOCAL_PREF
    if has_med:
        flags |= _F_MED
    else:
        med = _MED_WORST if med_missing_as_worst else 0
    if has_orig:
        flags |= _F_ORIGINATOR_ID
    if path_len > 0xFFFFFF:
        path_len = 0xFFFFFF
    return [0xFFFFFFFF - lp, <uint32_t>(path_len << 8) | origin, med, nbr, originator, cluster_len, flags]
