# distutils: language = c++
# cython: language_level=3
"""Compiled VRP table and RFC 6811 route origin validation.

Behaviour is identical to the pure-Python twin ``fastbgp/rpki/_vrp_py.py``
(same results, same exceptions for the same bad arguments); the tests run
every case on both and compare them on random operation sequences.  A
change here is a change there.

Layout, chosen so 500k VRPs fit in tens of megabytes with no Python object
per VRP:

* one open-addressing hash table (linear probing, load at most 1/2,
  backward-shift deletion) for both families, 24-octet slots keyed by the
  VRP prefix (high 64 bits, low 64 bits, family << 8 | length; host bits
  cleared) holding the index of the first VRP on that prefix in a pool;
  a key whose low 64 bits are zero (every IPv4 key, IPv6 up to /64) keeps
  the head VRP's ASN and max length in the slot's low word instead, so a
  route Valid by that VRP -- most routes -- costs no read of the pool;
* in front of the slots, a one-hash filter of eight bits per slot
  (1 MiB for 500k VRPs) that stays in cache: a probe for a prefix holding
  no VRP, which is most probes, mostly stops there (VrpMap below);
* the pool: 12-octet records (ASN, max length, index of the next VRP on the
  same prefix), freed records chained on a free list and reused;
* per family a count of VRPs per prefix length, so validating a route probes
  only the lengths up to its own that hold a VRP (RFC 6811 §2: the covering
  VRPs are exactly those on a prefix of the route's address no longer than
  the route);
* the VRP that made the last route Valid, checked before any probe (the
  next route of an UPDATE is often under it), forgotten on any change.

Slot and filter arrays from 256 KiB are mappings of their own, in
transparent huge pages from 2 MiB (vrp_zalloc below).
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.pycapsule cimport PyCapsule_New
from libc.stdint cimport uint8_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy
from libcpp.vector cimport vector

IMPLEMENTATION = "cython"

# RFC 6811 §2 validation states (same numbers as the twin).
NOT_FOUND = 0
VALID = 1
INVALID = 2
ORIGIN_NONE = -1

cdef uint32_t NIL = <uint32_t>0xFFFFFFFF  # end of a chain

cdef enum:
    S_NOT_FOUND = 0
    S_VALID = 1
    S_INVALID = 2

cdef extern from *:
    """
    #include <vector>
    #include <cstdint>
    #include <cstdlib>
    #include <new>
    #if defined(__linux__)
    #include <sys/mman.h>
    #endif
    struct VrpKey { uint64_t hi; uint64_t lo; uint32_t fl; };
    /* One slot of the open-addressing table; fl == 0 marks it empty (a
       real key has the family in fl's high bits).  A key whose low word
       is zero -- every IPv4 key, and IPv6 up to /64, nearly every VRP --
       is stored with VRP_PACKED in fl and, in lo, the ASN and max length
       of its chain's head VRP (asn << 8 | maxlen): a route is mostly Valid
       by that VRP, which then costs no read of the pool (a second cache
       miss per route), and the slot stays 24 octets (500k VRPs: 24 MiB of
       slots).  The flag is part of the compared fl, so a packed key never
       matches a key with a non-zero low word. */
    struct VrpSlot { uint64_t hi; uint64_t lo; uint32_t fl; uint32_t head; };
    static const uint32_t VRP_PACKED = 0x80000000u;
    static inline uint64_t slot_lo(const VrpSlot *s) { return (s->fl & VRP_PACKED) ? 0 : s->lo; }
    static inline uint32_t slot_fl(const VrpSlot *s) { return s->fl & ~VRP_PACKED; }
    static inline int slot_is(const VrpSlot *s, uint64_t hi, uint64_t lo, uint32_t fl) {
        return lo ? (s->fl == fl && s->hi == hi && s->lo == lo) : (s->fl == (fl | VRP_PACKED) && s->hi == hi);
    }
    /* Zeroed arrays for the slots and the filter.  From VRP_MAP_MIN
       octets they are mappings of their own (mmap: fresh pages are zero,
       touched as keys land), not heap blocks: a grown table's old array
       goes straight back to the system (munmap).  From the heap, glibc
       would serve the next smaller blocks from under a raised mmap
       threshold and keep the freed arrays' pages, so the RSS growth of
       500k VRPs depended on what the process had done before (37.5 MB in
       a fresh process; the issue's bar is 60 MB).  From 2 MiB
       they ask for transparent huge pages: every route's validation
       reads a slot at random in 24 MiB (500k VRPs), which in 4 KiB pages
       is mostly a TLB miss too (bench/rpki_vs_bird.py's routes, in
       process: 5-7 % less validation time).  The slots are touched all
       over as keys land, so the RSS is the same. */
    #define VRP_MAP_MIN ((size_t)256 << 10)
    static void *vrp_zalloc(size_t bytes) {
    #if defined(__linux__)
        if (bytes >= VRP_MAP_MIN) {
            void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (p == MAP_FAILED) return NULL;
    #if defined(MADV_HUGEPAGE)
            if (bytes >= ((size_t)2 << 20)) (void)madvise(p, bytes, MADV_HUGEPAGE);
    #endif
            return p;
        }
    #endif
        return calloc(1, bytes);
    }
    static void vrp_zfree(void *p, size_t bytes) {
        if (p == NULL) return;
    #if defined(__linux__)
        if (bytes >= VRP_MAP_MIN) { munmap(p, bytes); return; }
    #endif
        free(p);
    }
    /* The slots, and a filter in front of them: eight bits per slot
       (1 MiB for 500k VRPs), one set for every key added, so that
       validation's probe of a length holding no VRP on the route's
       address -- most probes: every length down to the covering VRP, all
       of them for a NotFound route -- reads a word of a table that stays
       in cache instead of a slot of one that does not (k = 1 at 16 bits
       per key: about 6 % of empty probes go on to the slots).  A removed
       key's bit stays set (a wasted probe, never a wrong answer) until
       the filter is rebuilt: when the slots grow, and when removals since
       the last rebuild reach a quarter of the keys. */
    struct VrpMap {
        VrpSlot *slots; size_t mask; size_t used;
        uint64_t *bits; size_t bmask; size_t removed;
        VrpMap() : slots(NULL), mask(0), used(0), bits(NULL), bmask(0), removed(0) { clear(); }
        ~VrpMap() { release(); }
        size_t slot_bytes() const { return (mask + 1) * sizeof(VrpSlot); }
        size_t bit_bytes() const { return (bmask + 1) / 8; }
        void release() {
            vrp_zfree(slots, slot_bytes());
            vrp_zfree(bits, bit_bytes());
            slots = NULL; bits = NULL;
        }
        void clear() {
            /* 1024 slots, and their filter of 8 bits each (1024 octets). */
            const size_t sb = 1024 * sizeof(VrpSlot), bb = 1024;
            VrpSlot *s = (VrpSlot *)vrp_zalloc(sb);
            uint64_t *b = (uint64_t *)vrp_zalloc(bb);
            if (!s || !b) { vrp_zfree(s, sb); vrp_zfree(b, bb); throw std::bad_alloc(); }
            release();
            slots = s; mask = 1023; used = 0;
            bits = b; bmask = bb * 8 - 1; removed = 0;
        }
    };
    static inline uint64_t vrp_hash(uint64_t hi, uint64_t lo, uint32_t fl) {
        uint64_t h = hi ^ (lo * 0x9E3779B97F4A7C15ULL) ^ ((uint64_t)fl << 56) ^ fl;
        h ^= h >> 31; h *= 0xBF58476D1CE4E5B9ULL; h ^= h >> 29; h *= 0x94D049BB133111EBULL; h ^= h >> 32;
        return h;
    }
    /* Slot index from the low bits, filter bit from the high ones. */
    static inline size_t vrp_home(const VrpMap *m, uint64_t hi, uint64_t lo, uint32_t fl) {
        return (size_t)vrp_hash(hi, lo, fl) & m->mask;
    }
    static inline size_t vrp_bit(const VrpMap *m, uint64_t h) {
        return (size_t)(h >> 24) & m->bmask;
    }
    /* The slot of a key, or NULL. */
    static inline const VrpSlot *vrpmap_slot(const VrpMap *m, uint64_t hi, uint64_t lo, uint32_t fl) {
        uint64_t h = vrp_hash(hi, lo, fl);
        size_t b = vrp_bit(m, h);
        if (!((m->bits[b >> 6] >> (b & 63)) & 1)) return NULL;
        size_t i = (size_t)h & m->mask;
        for (;;) {
            const VrpSlot *s = &m->slots[i];
            if (!s->fl) return NULL;
            if (slot_is(s, hi, lo, fl)) return s;
            i = (i + 1) & m->mask;
        }
    }
    static inline uint32_t vrpmap_get(const VrpMap *m, uint64_t hi, uint64_t lo, uint32_t fl) {
        const VrpSlot *s = vrpmap_slot(m, hi, lo, fl);
        return s ? s->head : 0xFFFFFFFFu;
    }
    /* The filter sized for the slots (8 bits per slot) from the keys held. */
    static void vrpmap_refilter(VrpMap *m) {
        size_t nbits = (m->mask + 1) * 8;
        uint64_t *b = (uint64_t *)vrp_zalloc(nbits / 8);
        if (!b) throw std::bad_alloc();
        vrp_zfree(m->bits, m->bit_bytes());
        m->bits = b; m->bmask = nbits - 1; m->removed = 0;
        for (size_t k = 0; k <= m->mask; k++) {
            const VrpSlot *s = &m->slots[k];
            if (!s->fl) continue;
            size_t bit = vrp_bit(m, vrp_hash(s->hi, slot_lo(s), slot_fl(s)));
            b[bit >> 6] |= (uint64_t)1 << (bit & 63);
        }
    }
    static void vrpmap_grow(VrpMap *m) {
        size_t cap = (m->mask + 1) * 2;
        VrpSlot *ns = (VrpSlot *)vrp_zalloc(cap * sizeof(VrpSlot));
        if (!ns) throw std::bad_alloc();
        VrpSlot *old = m->slots;
        size_t oldcap = m->mask + 1, oldbytes = m->slot_bytes();
        m->slots = ns; m->mask = cap - 1;
        for (size_t k = 0; k < oldcap; k++) {
            if (!old[k].fl) continue;
            size_t i = vrp_home(m, old[k].hi, slot_lo(&old[k]), slot_fl(&old[k]));
            while (ns[i].fl) i = (i + 1) & m->mask;
            ns[i] = old[k];
        }
        vrp_zfree(old, oldbytes);
        vrpmap_refilter(m);
    }
    /* Key -> v, the head of its chain, whose ASN and max length are asn
       and maxlen (kept in the slot when the key is packed). */
    static inline void vrpmap_set(VrpMap *m, uint64_t hi, uint64_t lo, uint32_t fl, uint32_t v,
                                  uint32_t asn, uint32_t maxlen) {
        if ((m->used + 1) * 2 > m->mask + 1) vrpmap_grow(m);  /* load factor <= 1/2 */
        uint64_t h = vrp_hash(hi, lo, fl);
        size_t i = (size_t)h & m->mask;
        uint64_t word = lo ? lo : ((uint64_t)asn << 8 | (maxlen & 0xFF));
        for (;;) {
            VrpSlot *s = &m->slots[i];
            if (!s->fl) {
                s->hi = hi; s->lo = word; s->fl = lo ? fl : (fl | VRP_PACKED); s->head = v; m->used++;
                size_t b = vrp_bit(m, h);
                m->bits[b >> 6] |= (uint64_t)1 << (b & 63);
                return;
            }
            if (slot_is(s, hi, lo, fl)) { s->head = v; s->lo = word; return; }
            i = (i + 1) & m->mask;
        }
    }
    static inline void vrpmap_erase(VrpMap *m, uint64_t hi, uint64_t lo, uint32_t fl) {
        size_t i = vrp_home(m, hi, lo, fl);
        for (;;) {
            VrpSlot *s = &m->slots[i];
            if (!s->fl) return;
            if (slot_is(s, hi, lo, fl)) break;
            i = (i + 1) & m->mask;
        }
        /* Backward-shift deletion: no tombstones, probe runs stay short. */
        size_t j = i;
        for (;;) {
            j = (j + 1) & m->mask;
            VrpSlot *s = &m->slots[j];
            if (!s->fl) break;
            size_t k = vrp_home(m, s->hi, slot_lo(s), slot_fl(s));
            if (((j - k) & m->mask) >= ((j - i) & m->mask)) { m->slots[i] = *s; i = j; }
        }
        m->slots[i].fl = 0;
        m->used--;
        /* The key's filter bit may be shared: left set until a rebuild. */
        if (++m->removed * 4 > m->used + 64) vrpmap_refilter(m);
    }
    static inline void vrpmap_dump(const VrpMap *m, std::vector<VrpKey> &keys, std::vector<uint32_t> &heads) {
        for (size_t k = 0; k <= m->mask; k++) {
            if (!m->slots[k].fl) continue;
            VrpKey key = {m->slots[k].hi, slot_lo(&m->slots[k]), slot_fl(&m->slots[k])};
            keys.push_back(key);
            heads.push_back(m->slots[k].head);
        }
    }
    """
    cdef struct VrpKey:
        uint64_t hi
        uint64_t lo
        uint32_t fl
    cdef struct VrpSlot:
        uint64_t lo
        uint32_t fl
        uint32_t head
    uint32_t VRP_PACKED
    cdef cppclass VrpMap:
        VrpMap() except +
        void clear() except +
    uint32_t vrpmap_get(VrpMap *m, uint64_t hi, uint64_t lo, uint32_t fl) nogil
    const VrpSlot *vrpmap_slot(VrpMap *m, uint64_t hi, uint64_t lo, uint32_t fl) nogil
    void vrpmap_set(VrpMap *m, uint64_t hi, uint64_t lo, uint32_t fl, uint32_t v, uint32_t asn, uint32_t maxlen) except +
    void vrpmap_erase(VrpMap *m, uint64_t hi, uint64_t lo, uint32_t fl) except +
    void vrpmap_dump(VrpMap *m, vector[VrpKey] &keys, vector[uint32_t] &heads) except +


cdef struct Entry:
    uint32_t asn
    uint32_t next
    uint8_t maxlen


cdef inline int _width(afi) except -1:
    if afi == 1:
        return 32
    if afi == 2:
        return 128
    raise ValueError("unknown AFI %r (1 = IPv4, 2 = IPv6)" % (afi,))


cdef inline void _mask(uint64_t *hi, uint64_t *lo, int length) noexcept nogil:
    if length == 0:
        hi[0] = 0
        lo[0] = 0
    elif length <= 64:
        hi[0] &= (<uint64_t>0xFFFFFFFFFFFFFFFF) << (64 - length)
        lo[0] = 0
    else:
        lo[0] &= (<uint64_t>0xFFFFFFFFFFFFFFFF) << (128 - length)


cdef inline void _load(const uint8_t *p, Py_ssize_t nb, int width, uint64_t *hi, uint64_t *lo) noexcept nogil:
    """Address octets p[0:nb] (the rest zero) into (hi, lo); IPv4 sits in
    the top 32 bits of hi so both families mask the same way."""
    cdef Py_ssize_t i
    cdef uint64_t h = 0, l = 0
    for i in range(16):
        if i < 8:
            h = (h << 8) | (p[i] if i < nb else 0)
        else:
            l = (l << 8) | (p[i] if i < nb else 0)
    if width == 32:
        h &= (<uint64_t>0xFFFFFFFF) << 32
    hi[0] = h
    lo[0] = l


cdef class VrpTable:
    """Validated ROA Payloads of both families; see ``fastbgp.rpki.vrp``."""

    cdef VrpMap *_map
    cdef vector[Entry] _pool
    cdef uint32_t _free
    cdef Py_ssize_t _lengths[2][129]
    cdef Py_ssize_t _count[2]
    # The VRP that made the last Valid route Valid (see _state); _vfam 0:
    # none.  Forgotten on every change of the table.
    cdef uint32_t _vfam, _vasn
    cdef int _vlen, _vmax
    cdef uint64_t _vhi, _vlo

    def __cinit__(self):
        self._map = new VrpMap()
        self._reset()

    def __dealloc__(self):
        del self._map

    cdef int _reset(self) except -1:
        self._map.clear()
        self._pool.clear()
        self._pool.shrink_to_fit()
        self._free = NIL
        self._vfam = 0
        cdef int f, i
        for f in range(2):
            self._count[f] = 0
            for i in range(129):
                self._lengths[f][i] = 0
        return 0

    cdef int _args(self, afi, addr, plen, maxlen, asn, uint64_t *hi, uint64_t *lo) except -1:
        cdef int width = _width(afi)
        if plen < 0 or plen > width:
            raise ValueError("prefix length %d out of range 0..%d" % (plen, width))
        cdef bytes a = bytes(addr)
        if len(a) > width // 8:
            raise ValueError("address of %d octets is too long for the family" % len(a))
        if maxlen < plen or maxlen > width:
            raise ValueError("max length %d out of range %d..%d" % (maxlen, plen, width))
        if asn < 0 or asn > 0xFFFFFFFF:
            raise ValueError("ASN %d out of range" % asn)
        _load(<const uint8_t *>a, len(a), width, hi, lo)
        _mask(hi, lo, plen)
        return width

    cdef inline uint32_t _find(self, uint32_t i, uint32_t asn, uint8_t maxlen, uint32_t *prev) noexcept:
        """The pool index of (asn, maxlen) in the chain that starts at
        ``i``, or NIL; ``prev``: the entry before it (NIL: it is the head)."""
        prev[0] = NIL
        while i != NIL:
            if self._pool[i].asn == asn and self._pool[i].maxlen == maxlen:
                return i
            prev[0] = i
            i = self._pool[i].next
        return NIL

    def add(self, afi, addr, plen, maxlen, asn):
        """Add one VRP; False when it was already there."""
        cdef uint64_t hi, lo
        self._args(afi, addr, plen, maxlen, asn, &hi, &lo)
        cdef int f = afi - 1
        cdef uint32_t fl = (afi << 8) | plen
        cdef uint32_t head = vrpmap_get(self._map, hi, lo, fl)
        cdef uint32_t i, prev
        cdef uint32_t a = asn
        cdef uint8_t m = maxlen
        if self._find(head, a, m, &prev) != NIL:
            return False
        cdef Entry e
        e.asn = a
        e.maxlen = m
        e.next = head
        if self._free != NIL:
            i = self._free
            self._free = self._pool[i].next
            self._pool[i] = e
        else:
            if self._pool.size() >= NIL:
                raise MemoryError("VRP pool full")
            i = <uint32_t>self._pool.size()
            self._pool.push_back(e)
        vrpmap_set(self._map, hi, lo, fl, i, a, m)
        self._vfam = 0
        self._lengths[f][plen] += 1
        self._count[f] += 1
        return True

    def remove(self, afi, addr, plen, maxlen, asn):
        """Remove one VRP; False when it was not there."""
        cdef uint64_t hi, lo
        self._args(afi, addr, plen, maxlen, asn, &hi, &lo)
        cdef int f = afi - 1
        cdef uint32_t fl = (afi << 8) | plen
        cdef uint32_t prev, j
        cdef uint32_t i = self._find(vrpmap_get(self._map, hi, lo, fl), asn, maxlen, &prev)
        if i == NIL:
            return False
        self._vfam = 0  # the remembered Valid VRP may be this one
        if prev == NIL:
            if self._pool[i].next == NIL:
                vrpmap_erase(self._map, hi, lo, fl)
            else:
                j = self._pool[i].next
                vrpmap_set(self._map, hi, lo, fl, j, self._pool[j].asn, self._pool[j].maxlen)
        else:
            self._pool[prev].next = self._pool[i].next
        self._pool[i].next = self._free
        self._free = i
        self._lengths[f][plen] -= 1
        self._count[f] -= 1
        return True

    def contains(self, afi, addr, plen, maxlen, asn):
        """True when this exact VRP is in the table."""
        cdef uint64_t hi, lo
        self._args(afi, addr, plen, maxlen, asn, &hi, &lo)
        cdef uint32_t prev
        return self._find(vrpmap_get(self._map, hi, lo, (afi << 8) | plen), asn, maxlen, &prev) != NIL

    cdef inline void _remember(self, uint32_t fam, uint64_t h, uint64_t l, int length, int maxlen,
                               uint32_t asn) noexcept nogil:
        self._vfam = fam
        self._vhi = h
        self._vlo = l
        self._vlen = length
        self._vmax = maxlen
        self._vasn = asn

    cdef int _state(self, int f, uint32_t fam, uint64_t hi, uint64_t lo, int plen, long long origin) noexcept nogil:
        cdef int length
        cdef bint found = False
        cdef uint64_t h, l
        cdef uint32_t i
        cdef const VrpSlot *s
        cdef uint32_t asn
        cdef int maxlen
        # RFC 6811 §2: one covering VRP that matches makes a route Valid,
        # whatever else covers it.  Routes come in address order, those of
        # one UPDATE sharing an origin, so the VRP that made the last route
        # Valid often covers and matches the next one too: checked first,
        # it spares the probes below (a route of a /24 under a /16's VRP
        # probes nine lengths).  Any change of the table forgets it.
        if self._vfam == fam and self._vasn == origin and self._vlen <= plen <= self._vmax:
            h = hi
            l = lo
            _mask(&h, &l, self._vlen)
            if h == self._vhi and l == self._vlo:
                return S_VALID
        # Most specific first: a route with a VRP of its own length (the
        # usual ROA) is found Valid by the first probe.
        for length in range(plen, -1, -1):
            if not self._lengths[f][length]:
                continue
            h = hi
            l = lo
            _mask(&h, &l, length)
            s = vrpmap_slot(self._map, h, l, (fam << 8) | length)
            if s != NULL:
                found = True
                # RFC 6811 §2: a VRP matches when it covers the route, its
                # ASN equals the origin and the route is no longer than
                # maxLength; AS 0 never matches (RFC 6483 §4), nor does
                # origin NONE.  A packed slot holds its head VRP (the pool
                # holds the same): the pool is read only past the head.
                i = s.head
                if s.fl & VRP_PACKED:
                    asn = <uint32_t>(s.lo >> 8)
                    maxlen = <int>(s.lo & 0xFF)
                    if asn == origin and plen <= maxlen and asn != 0:
                        self._remember(fam, h, l, length, maxlen, asn)
                        return S_VALID
                    i = self._pool[i].next
                while i != NIL:
                    if self._pool[i].asn == origin and plen <= self._pool[i].maxlen and self._pool[i].asn != 0:
                        self._remember(fam, h, l, length, self._pool[i].maxlen, self._pool[i].asn)
                        return S_VALID
                    i = self._pool[i].next
        return S_INVALID if found else S_NOT_FOUND

    def validate(self, afi, addr, plen, origin):
        """NOT_FOUND, VALID or INVALID (RFC 6811 §2) of route ``addr/plen``
        originated by ``origin`` (ORIGIN_NONE when the path has none)."""
        cdef int width = _width(afi)
        if plen < 0 or plen > width:
            raise ValueError("prefix length %d out of range 0..%d" % (plen, width))
        cdef bytes a = bytes(addr)
        if len(a) > width // 8:
            raise ValueError("address of %d octets is too long for the family" % len(a))
        cdef uint64_t hi, lo
        _load(<const uint8_t *>a, len(a), width, &hi, &lo)
        _mask(&hi, &lo, plen)
        return self._state(afi - 1, afi, hi, lo, plen, origin)

    def validate_packed(self, afi, packed, long long origin, addpath=False):
        """One state octet per prefix of the packed NLRI ``packed``, all
        with ``origin``; ValueError when the NLRI is malformed."""
        cdef int width = _width(afi)
        # One call per UPDATE: no copy of bytes input, output built on the
        # stack for UPDATE-sized NLRI.
        cdef bytes data = packed if type(packed) is bytes else bytes(packed)
        cdef const uint8_t *p = <const uint8_t *>PyBytes_AS_STRING(data)
        cdef Py_ssize_t n = PyBytes_GET_SIZE(data), k
        cdef int fam = 1 if width == 32 else 2
        cdef bint ap = bool(addpath)
        cdef uint8_t stack[1024]
        cdef uint8_t *o = &stack[0]
        if n > 1024:
            o = <uint8_t *>malloc(n)  # at most one state per octet
        if o == NULL:
            raise MemoryError()
        try:
            with nogil:
                k = self._states_into(fam, width, p, n, origin, ap, o)
            if k < 0:
                raise ValueError("malformed NLRI")
            return PyBytes_FromStringAndSize(<char *>o, k)
        finally:
            if o != &stack[0]:
                free(o)

    cdef Py_ssize_t _states_into(self, int afi, int width, const uint8_t *p, Py_ssize_t n, long long origin,
                                 bint ap, uint8_t *o) noexcept nogil:
        """validate_packed's work: the state of each prefix of ``p[:n]``
        into ``o`` (room for ``n``); their count, or -1 when malformed."""
        cdef Py_ssize_t pos = 0, nb, k = 0
        cdef int plen, f = afi - 1
        cdef uint32_t fam = afi
        cdef uint64_t hi, lo
        while pos < n:
            if ap:
                pos += 4
            if pos >= n:
                return -1
            plen = p[pos]
            nb = (plen + 7) >> 3
            if plen > width or pos + 1 + nb > n:
                return -1
            _load(p + pos + 1, nb, width, &hi, &lo)
            _mask(&hi, &lo, plen)
            o[k] = self._state(f, fam, hi, lo, plen, origin)
            k += 1
            pos += 1 + nb
        return k

    def states_api(self):
        """validate_packed for a compiled caller, as a PyCapsule named
        ``fastbgp.rpki._vrp.states`` holding a C function
        ``Py_ssize_t (object table, int afi, const unsigned char *packed,
        Py_ssize_t n, long long origin, unsigned char *out)``: the states
        of the prefixes (no ADD-PATH) of family ``afi`` (1 or 2) into
        ``out`` (room for ``n``), their count, or -1 when the NLRI is
        malformed or the family unknown (validate_packed's ValueError).
        The import fast lane's step calls it once per UPDATE without a
        Python call or a bytes object (fastbgp.daemon._lanestep)."""
        return PyCapsule_New(<void *>_states_c, b"fastbgp.rpki._vrp.states", NULL)

    def count(self, afi):
        """VRPs of one family."""
        _width(afi)
        return self._count[afi - 1]

    def __len__(self):
        return self._count[0] + self._count[1]

    def clear(self):
        self._reset()

    def entries(self, afi):
        """[(address bytes, length, max length, ASN)] of one family, sorted."""
        cdef int width = _width(afi)
        cdef vector[VrpKey] keys
        cdef vector[uint32_t] heads
        vrpmap_dump(self._map, keys, heads)
        out = []
        cdef size_t j
        cdef uint32_t i
        for j in range(keys.size()):
            if (keys[j].fl >> 8) != <uint32_t>afi:
                continue
            hi_obj = keys[j].hi
            lo_obj = keys[j].lo
            if width == 32:
                addr = (hi_obj >> 32).to_bytes(4, "big")
            else:
                addr = hi_obj.to_bytes(8, "big") + lo_obj.to_bytes(8, "big")
            i = heads[j]
            while i != NIL:
                out.append((addr, keys[j].fl & 0xFF, self._pool[i].maxlen, self._pool[i].asn))
                i = self._pool[i].next
        out.sort()
        return out


cdef Py_ssize_t _states_c(object table, int afi, const unsigned char *p, Py_ssize_t n, long long origin,
                          unsigned char *out) noexcept:
    """VrpTable.states_api's function."""
    if afi != 1 and afi != 2:
        return -1
    return (<VrpTable>table)._states_into(afi, 32 if afi == 1 else 128, p, n, origin, False, out)


def partition_packed(packed, states, addpath=False):
    """(NOT_FOUND part, VALID part, INVALID part) of the packed NLRI
    ``packed`` whose i-th prefix has state ``states[i]`` (the output of
    ``validate_packed``), each part packed NLRI in input order: how the RIB
    groups one UPDATE's prefixes by state without a Python object per
    prefix.  ValueError when the NLRI is malformed or the states do not
    match it one to one (or hold a value that is not a state)."""
    cdef bytes data = packed if type(packed) is bytes else bytes(packed)
    cdef bytes st = states if type(states) is bytes else bytes(states)
    cdef const uint8_t *p = <const uint8_t *>PyBytes_AS_STRING(data)
    cdef const uint8_t *s = <const uint8_t *>PyBytes_AS_STRING(st)
    cdef Py_ssize_t pos = 0, n = PyBytes_GET_SIZE(data), ns = PyBytes_GET_SIZE(st), k = 0, start, size
    cdef Py_ssize_t fill[3]
    cdef bint ap = bool(addpath)
    cdef int head = 5 if ap else 1
    cdef int bad = 0
    cdef uint8_t c
    fill[0] = fill[1] = fill[2] = 0
    cdef uint8_t *o = <uint8_t *>malloc(3 * n + 1)  # each part at most the whole input
    if o == NULL:
        raise MemoryError()
    try:
        with nogil:
            while pos < n:
                start = pos
                if pos + head > n:
                    bad = 1
                    break
                size = head + ((p[pos + head - 1] + 7) >> 3)
                if p[pos + head - 1] > 128 or pos + size > n or k >= ns or s[k] > 2:
                    bad = 1
                    break
                c = s[k]
                memcpy(o + c * n + fill[c], p + start, size)
                fill[c] += size
                pos += size
                k += 1
            if k != ns:
                bad = 1
        if bad:
            raise ValueError("malformed NLRI or states not one per prefix")
        return (PyBytes_FromStringAndSize(<char *>o, fill[0]), PyBytes_FromStringAndSize(<char *>o + n, fill[1]),
                PyBytes_FromStringAndSize(<char *>o + 2 * n, fill[2]))
    finally:
        free(o)
