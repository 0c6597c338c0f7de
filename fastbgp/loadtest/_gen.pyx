# cython: language_level=3
"""Compiled hot paths of ``fastbgp loadtest``.

* :func:`gen_table` draws a synthetic table (prefix lengths from a
  distribution, addresses from per-length counters) and writes it straight
  into finished UPDATE messages in one contiguous buffer: no Python object
  per prefix or per message, so a table is generated and encoded at tens of
  millions of prefixes per second.
* :func:`patch_chunk` copies a run of pre-encoded messages and rewrites the
  per-session fields (first AS of the AS_PATH, NEXT_HOP) so that sessions
  with their own ASN and address still share one encoded table.
* :class:`Skipper` frames what the target sends to a load peer without
  copying UPDATE bodies out: load peers only need to know that something
  arrived (RFC 4271 §4.4: any message restarts the hold timer) and to see
  OPEN / NOTIFICATION.
* :func:`split_keys` / :func:`find_range` turn packed NLRI into per-prefix
  keys for exact prefix-set tracking and canary detection on the monitor.

Every read of caller data is bounds-checked against the buffer length;
buffers we allocate are sized from a proven upper bound before writing.

``_gen_py.py`` is the pure-Python twin (same output, same exceptions);
:mod:`fastbgp.loadtest.gen` picks one of the two.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdint cimport int64_t, uint8_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memset
cimport cython

cdef extern from *:
    """
    typedef unsigned __int128 fbgp_u128;
    /* A 64-bit value in network order (one byte swap on little-endian). */
    #if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    #define fbgp_be64(v) __builtin_bswap64((uint64_t)(v))
    #elif __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    #define fbgp_be64(v) ((uint64_t)(v))
    #else
    #error "unknown byte order"
    #endif
    """
    ctypedef unsigned long long fbgp_u128  # real type: unsigned __int128 (gcc/clang)
    uint64_t fbgp_be64(uint64_t v) nogil

DEF HEADER_LEN = 19

IMPLEMENTATION = "cython"


cdef inline uint64_t _next(uint64_t *s) noexcept nogil:
    # xorshift64*: deterministic for a seed, plenty for drawing lengths.
    cdef uint64_t x = s[0]
    x ^= x >> 12
    x ^= x << 25
    x ^= x >> 27
    s[0] = x
    return x * 0x2545F4914F6CDD1DULL


cdef inline fbgp_u128 _load128(const unsigned char *p) noexcept nogil:
    cdef fbgp_u128 v = 0
    cdef int i
    for i in range(16):
        v = (v << 8) | p[i]
    return v


cdef inline void _store128(unsigned char *p, fbgp_u128 v) noexcept nogil:
    # Big-endian (network order), as two 64-bit halves.
    cdef uint64_t half[2]
    half[0] = fbgp_be64(<uint64_t>(v >> 64))
    half[1] = fbgp_be64(<uint64_t>v)
    memcpy(p, half, 16)


cdef inline void _put_u32(unsigned char *p, uint32_t v) noexcept nogil:
    p[0] = (v >> 24) & 0xFF
    p[1] = (v >> 16) & 0xFF
    p[2] = (v >> 8) & 0xFF
    p[3] = v & 0xFF


cdef inline void _put_u16(unsigned char *p, Py_ssize_t v) noexcept nogil:
    p[0] = (v >> 8) & 0xFF
    p[1] = v & 0xFF


ctypedef struct _Gen:
    # What to draw (read-only while generating).
    const unsigned char *lut     # 4096 prefix lengths
    fbgp_u128 base
    fbgp_u128 limit
    Py_ssize_t count
    Py_ssize_t per_group
    Py_ssize_t group_base
    Py_ssize_t cap
    Py_ssize_t room              # NLRI octets one message may carry
    bint addpath
    bint encode
    bint want_packed
    unsigned char pid4[4]
    # The attribute block and its patch points.
    const unsigned char *attrs
    Py_ssize_t alen
    Py_ssize_t med_off
    uint32_t med_base
    Py_ssize_t origin_off
    int origin_width
    uint32_t origin_base
    uint32_t origin_span
    const unsigned char *mp
    Py_ssize_t mlen
    const unsigned char *tail
    Py_ssize_t tlen
    # Output buffers (sized by gen_table) and how far they are filled.
    unsigned char *out
    int64_t *ends
    int64_t *cum
    unsigned char *pk
    Py_ssize_t pos
    Py_ssize_t pkpos
    Py_ssize_t nmsg
    Py_ssize_t k                 # prefixes drawn
    int plen                     # length of the last draw (for the overflow error)
    uint64_t rng
    int64_t cnt[129]             # next counter per length
    int64_t used[129]            # prefixes drawn per length


@cython.boundscheck(False)
@cython.wraparound(False)
cdef inline Py_ssize_t _close_msg(const _Gen *g, Py_ssize_t pos, Py_ssize_t msg_start,
                                  Py_ssize_t nlri_start) noexcept nogil:
    """Finish the UPDATE started at ``msg_start`` whose NLRI ends at ``pos``:
    fill in the lengths now that the NLRI is known (total attribute length
    and the MP_REACH_NLRI length when the prefixes travel in it, followed by
    the attributes after it), then the header length.  Returns the end."""
    cdef unsigned char *out = g.out
    if g.mlen:
        _put_u16(out + msg_start + HEADER_LEN + 2, g.alen + g.mlen + (pos - nlri_start) + g.tlen)
        _put_u16(out + msg_start + HEADER_LEN + 4 + g.alen + 2, g.mlen - 4 + (pos - nlri_start))
        memcpy(out + pos, g.tail, g.tlen)
        pos += g.tlen
    _put_u16(out + msg_start + 16, pos - msg_start)
    return pos


@cython.boundscheck(False)
@cython.wraparound(False)
cdef inline Py_ssize_t _open_msg(const _Gen *g, Py_ssize_t pos, Py_ssize_t group) noexcept nogil:
    """Start an UPDATE of attribute group ``group`` at ``pos``: header
    (lengths filled in by _close_msg), no withdrawn routes, the attribute
    block with this group's MED and origin AS, the MP_REACH_NLRI header.
    Returns where its NLRI starts."""
    cdef unsigned char *out = g.out
    cdef uint32_t ov
    memset(out + pos, 0xFF, 16)
    out[pos + 18] = 2
    out[pos + 19] = 0
    out[pos + 20] = 0
    _put_u16(out + pos + 21, g.alen)
    memcpy(out + pos + 23, g.attrs, g.alen)
    if g.med_off >= 0:
        _put_u32(out + pos + 23 + g.med_off, g.med_base + <uint32_t>group)
    if g.origin_off >= 0:
        ov = g.origin_base + <uint32_t>(group % g.origin_span)
        if g.origin_width == 4:
            _put_u32(out + pos + 23 + g.origin_off, ov)
        else:
            _put_u16(out + pos + 23 + g.origin_off, ov & 0xFFFF)
    pos += 23 + g.alen
    if g.mlen:
        memcpy(out + pos, g.mp, g.mlen)
        pos += g.mlen
    return pos


@cython.boundscheck(False)
@cython.wraparound(False)
cdef inline int _draw(const unsigned char *lut, int64_t *cnt, int64_t *used, fbgp_u128 base, fbgp_u128 limit,
                      uint64_t *rng, unsigned char *a16) noexcept nogil:
    """Draw the next prefix: returns its length and writes its address into
    ``a16``; minus its length (nothing counted) when its counter has run
    past the address space or ``limit``."""
    cdef int plen = lut[_next(rng) >> 52]
    # Counter -> address: shifting the counter to the prefix's position
    # keeps host bits zero by construction (RFC 4271 §4.3).
    cdef fbgp_u128 c = <fbgp_u128>cnt[plen]
    if plen < 128 and c >> plen:
        return -plen
    cdef fbgp_u128 addr = base + (c << (128 - plen))
    if addr < base or addr >= limit or (limit - addr) < ((<fbgp_u128>1) << (128 - plen) if plen < 128 else 1):
        return -plen
    cnt[plen] += 1
    used[plen] += 1
    _store128(a16, addr)
    return plen


cdef inline Py_ssize_t _put_prefix(unsigned char *dst, Py_ssize_t pos, Py_ssize_t pid_len,
                                   const unsigned char *pid4, int plen, const unsigned char *a16,
                                   Py_ssize_t nb) noexcept nogil:
    """NLRI encoding of one prefix at ``pos`` (RFC 4271 §4.3, with the path
    id first under ADD-PATH, RFC 7911 §3).  Returns the end."""
    if pid_len:
        memcpy(dst + pos, pid4, 4)
        pos += 4
    dst[pos] = plen
    memcpy(dst + pos + 1, a16, nb)
    return pos + 1 + nb


@cython.boundscheck(False)
@cython.wraparound(False)
cdef bint _fill(_Gen *g) noexcept nogil:
    """Draw ``g.count`` prefixes into the packed buffer and/or the messages.
    Returns False when the address space ran out (``g.k`` prefixes in).
    What every prefix needs is copied into locals first: the compiler may
    then keep it in registers across the stores into the output."""
    cdef Py_ssize_t pos = 0, pkpos = 0, msg_start = 0, nlri_start = 0, nmsg = 0
    cdef Py_ssize_t k = 0, in_msg = 0, group, cur_group = -1, nb, need
    cdef Py_ssize_t count = g.count, cap = g.cap, room = g.room, per_group = g.per_group, group_base = g.group_base
    cdef Py_ssize_t pid_len = 4 if g.addpath else 0
    cdef bint encode = g.encode, want_packed = g.want_packed
    cdef bint ok = True, open_msg = False
    cdef const unsigned char *lut = g.lut
    cdef fbgp_u128 base = g.base, limit = g.limit
    cdef unsigned char *out = g.out
    cdef unsigned char *pk = g.pk
    cdef uint64_t rng = g.rng
    cdef int plen
    cdef unsigned char a16[16]
    cdef unsigned char pid4[4]
    memcpy(pid4, g.pid4, 4)
    while k < count:
        plen = _draw(lut, g.cnt, g.used, base, limit, &rng, a16)
        if plen < 0:
            g.plen = -plen
            ok = False
            break
        nb = (plen + 7) >> 3
        if want_packed:
            pkpos = _put_prefix(pk, pkpos, pid_len, pid4, plen, a16, nb)
        if encode:
            group = (k + group_base) // per_group
            need = pid_len + 1 + nb
            if open_msg and (group != cur_group or (cap and in_msg >= cap) or pos - nlri_start + need > room):
                pos = _close_msg(g, pos, msg_start, nlri_start)
                g.ends[nmsg] = pos
                g.cum[nmsg] = k
                nmsg += 1
                open_msg = False
            if not open_msg:
                msg_start = pos
                cur_group = group
                nlri_start = pos = _open_msg(g, pos, group)
                in_msg = 0
                open_msg = True
            pos = _put_prefix(out, pos, pid_len, pid4, plen, a16, nb)
            in_msg += 1
        k += 1
    if encode and open_msg and ok:
        pos = _close_msg(g, pos, msg_start, nlri_start)
        g.ends[nmsg] = pos
        g.cum[nmsg] = k
        nmsg += 1
    g.pos, g.pkpos, g.nmsg, g.k, g.rng = pos, pkpos, nmsg, k, rng
    return ok


cdef int _check_args(int width, bytes base, bytes lut, bytes start, Py_ssize_t count, Py_ssize_t per_group,
                     Py_ssize_t cap, bytes attrs, Py_ssize_t med_off, Py_ssize_t origin_off, int origin_width,
                     bytes mp_head, bytes tail, bytes limit) except -1:
    """gen_table's argument checks, in the order the callers rely on."""
    if width != 32 and width != 128:
        raise ValueError("width must be 32 or 128")
    if PyBytes_GET_SIZE(base) != 16 or PyBytes_GET_SIZE(limit) != 16:
        raise ValueError("base and limit must be 16 octets")
    if PyBytes_GET_SIZE(lut) != 4096:
        raise ValueError("lut must hold 4096 lengths")
    if PyBytes_GET_SIZE(start) != 129 * 8:
        raise ValueError("start must hold 129 counters")
    if count < 0 or per_group < 1 or cap < 0:
        raise ValueError("count >= 0, per_group >= 1, cap >= 0")
    cdef const unsigned char *lp = <const unsigned char *>PyBytes_AS_STRING(lut)
    cdef int i
    for i in range(4096):
        if lp[i] > width or lp[i] == 0:
            raise ValueError("prefix length %d out of range 1..%d" % (lp[i], width))
    cdef Py_ssize_t alen = PyBytes_GET_SIZE(attrs)
    cdef Py_ssize_t mlen = PyBytes_GET_SIZE(mp_head)
    if PyBytes_GET_SIZE(tail) and not mlen:
        raise ValueError("tail needs mp_head")
    if med_off >= 0 and med_off + 4 > alen:
        raise ValueError("med_off outside attrs")
    if origin_off >= 0 and (origin_width not in (2, 4) or origin_off + origin_width > alen):
        raise ValueError("origin_off outside attrs")
    if mlen and mlen < 4:
        raise ValueError("mp_head too short")
    return 0


def gen_table(int width, bytes base, Py_ssize_t count, bytes lut, uint64_t seed, bytes start,
              Py_ssize_t per_group, Py_ssize_t group_base, bytes attrs,
              Py_ssize_t med_off, uint32_t med_base,
              Py_ssize_t origin_off, int origin_width, uint32_t origin_base, uint32_t origin_span,
              bytes mp_head, bytes tail, Py_ssize_t maxlen, Py_ssize_t cap, bint addpath, uint32_t path_id,
              bytes limit, bint encode=True, bint want_packed=True):
    """Generate ``count`` distinct prefixes and (``encode``) the UPDATEs
    announcing them.

    ``width``: 32 or 128 address bits.  ``base``: 16 octets, the address
    all counters start from (IPv4 in the first 4).  ``lut``: 4096 prefix
    lengths; a uniform draw picks one, so the table follows the
    distribution the caller quantised into it.  ``start``: 129 x 8 octets,
    the initial counter per length (disjoint per-peer ranges start further
    up).  Prefix k of length L gets base + counter[L] * 2^(width-L): the
    same length never repeats an address, lengths may nest (as more
    specifics do in real tables).  ``limit``: 16 octets, first address
    that may not be used (ValueError when reached).

    Prefixes ``per_group`` at a time share one attribute block, ``attrs``
    with the 4-octet MED at ``med_off`` set to med_base + group and the
    origin AS (``origin_width`` octets at ``origin_off``) to origin_base +
    group % origin_span (-1 offsets: not patched), so every group is a
    distinct path attribute set.  ``mp_head``: empty for IPv4 unicast (NLRI
    in the UPDATE's own field, RFC 4271 §4.3), else an MP_REACH_NLRI
    attribute header with extended length (RFC 4760 §3) up to and
    including the reserved octet; NLRI follows it, then ``tail`` (the
    attributes whose type code is above 14, so that the attributes stay in
    ascending order as RFC 4271 §5 asks).  ``cap``: at most this
    many prefixes per UPDATE (0 = as many as fit in ``maxlen`` octets).
    ``addpath``: each NLRI is preceded by ``path_id`` (RFC 7911 §3).

    Returns (messages bytes, message end offsets (int64 native), cumulative
    prefix count per message (int64), packed NLRI or None, per-length
    counts (129 x int64))."""
    _check_args(width, base, lut, start, count, per_group, cap, attrs, med_off, origin_off, origin_width,
                mp_head, tail, limit)
    cdef _Gen g
    g.lut = <const unsigned char *>PyBytes_AS_STRING(lut)
    g.base = _load128(<const unsigned char *>PyBytes_AS_STRING(base))
    g.limit = _load128(<const unsigned char *>PyBytes_AS_STRING(limit))
    g.count, g.per_group, g.group_base, g.cap = count, per_group, group_base, cap
    g.addpath, g.encode, g.want_packed = addpath, encode, want_packed
    _put_u32(g.pid4, path_id)
    g.attrs, g.alen = <const unsigned char *>PyBytes_AS_STRING(attrs), PyBytes_GET_SIZE(attrs)
    g.med_off, g.med_base = med_off, med_base
    g.origin_off, g.origin_width, g.origin_base = origin_off, origin_width, origin_base
    g.origin_span = origin_span if origin_span else 1
    g.mp, g.mlen = <const unsigned char *>PyBytes_AS_STRING(mp_head), PyBytes_GET_SIZE(mp_head)
    g.tail, g.tlen = <const unsigned char *>PyBytes_AS_STRING(tail), PyBytes_GET_SIZE(tail)
    cdef Py_ssize_t max_pfx = 1 + (4 if addpath else 0) + width // 8
    cdef Py_ssize_t overhead = HEADER_LEN + 4 + g.alen + g.mlen + g.tlen
    g.room = maxlen - overhead
    if g.room < max_pfx:
        raise ValueError("attributes of %d octets leave no room for a prefix in a %d-octet message" % (g.alen + g.mlen, maxlen))
    if g.mlen and g.room > 0xFFFF - (g.mlen - 4):
        g.room = 0xFFFF - (g.mlen - 4)  # the MP_REACH_NLRI length field is 2 octets

    # Upper bounds: a message per group plus one per full message of the
    # largest prefixes, each message at most ``overhead`` beyond its NLRI.
    cdef Py_ssize_t per_msg = g.room // max_pfx
    if cap and cap < per_msg:
        per_msg = cap
    cdef Py_ssize_t max_msgs = (count + per_group - 1) // per_group + count // per_msg + 1
    g.out = <unsigned char *>malloc(max_msgs * overhead + count * max_pfx + 16 if encode else 1)
    g.ends = <int64_t *>malloc(max_msgs * sizeof(int64_t) + 8)
    g.cum = <int64_t *>malloc(max_msgs * sizeof(int64_t) + 8)
    g.pk = <unsigned char *>malloc(count * max_pfx + 1 if want_packed else 1)
    if g.out == NULL or g.ends == NULL or g.cum == NULL or g.pk == NULL:
        free(g.out); free(g.ends); free(g.cum); free(g.pk)
        raise MemoryError()
    memcpy(g.cnt, PyBytes_AS_STRING(start), 129 * 8)
    memset(g.used, 0, sizeof(g.used))
    g.rng = seed * 0x9E3779B97F4A7C15ULL + 0x632BE59BD9B4E019ULL
    if g.rng == 0:
        g.rng = 1
    cdef bint ok
    with nogil:
        ok = _fill(&g)
    if not ok:
        free(g.out); free(g.ends); free(g.cum); free(g.pk)
        raise ValueError("the table runs out of address space after %d prefixes (/%d counter %d): "
                         "fewer prefixes, fewer short prefixes or another base" % (g.k, g.plen, g.cnt[g.plen]))
    try:
        msgs = PyBytes_FromStringAndSize(<char *>g.out, g.pos) if encode else b""
        e = PyBytes_FromStringAndSize(<char *>g.ends, g.nmsg * 8)
        c = PyBytes_FromStringAndSize(<char *>g.cum, g.nmsg * 8)
        packed = PyBytes_FromStringAndSize(<char *>g.pk, g.pkpos) if want_packed else None
        counts = PyBytes_FromStringAndSize(<char *>g.used, 129 * 8)
    finally:
        free(g.out); free(g.ends); free(g.cum); free(g.pk)
    return msgs, e, c, packed, counts


@cython.boundscheck(False)
@cython.wraparound(False)
def patch_chunk(bytes buf, bytes ends, Py_ssize_t i0, Py_ssize_t i1, Py_ssize_t as_rel, bytes asn,
                Py_ssize_t nh_rel, bytes nh):
    """Messages i0..i1-1 of ``buf`` (end offsets ``ends``) copied, with
    ``asn`` written at ``as_rel`` and ``nh`` at ``nh_rel`` octets into every
    message (-1: leave alone)."""
    cdef Py_ssize_t n = PyBytes_GET_SIZE(ends) // 8
    if i0 < 0 or i1 > n or i0 >= i1:
        raise ValueError("bad message range")
    cdef const int64_t *e = <const int64_t *>PyBytes_AS_STRING(ends)
    cdef Py_ssize_t s = e[i0 - 1] if i0 else 0
    cdef Py_ssize_t t = e[i1 - 1]
    if t > PyBytes_GET_SIZE(buf) or s > t:
        raise ValueError("offsets outside the buffer")
    cdef bytes out = PyBytes_FromStringAndSize(PyBytes_AS_STRING(buf) + s, t - s)
    cdef unsigned char *o = <unsigned char *>PyBytes_AS_STRING(out)
    cdef Py_ssize_t al = PyBytes_GET_SIZE(asn), nl = PyBytes_GET_SIZE(nh)
    cdef const unsigned char *ap = <const unsigned char *>PyBytes_AS_STRING(asn)
    cdef const unsigned char *np = <const unsigned char *>PyBytes_AS_STRING(nh)
    cdef Py_ssize_t i, ms = s, me
    for i in range(i0, i1):
        me = e[i]
        if as_rel >= 0 and ms + as_rel + al <= me:
            memcpy(o + (ms - s) + as_rel, ap, al)
        if nh_rel >= 0 and ms + nh_rel + nl <= me:
            memcpy(o + (ms - s) + nh_rel, np, nl)
        ms = me
    return out


@cython.boundscheck(False)
@cython.wraparound(False)
def chunk_bounds(bytes ends, Py_ssize_t target):
    """Message indexes where chunks of about ``target`` octets end (always
    on a message boundary, so anything written between two chunks --
    a KEEPALIVE, a canary -- lands between whole messages)."""
    cdef Py_ssize_t n = PyBytes_GET_SIZE(ends) // 8
    cdef const int64_t *e = <const int64_t *>PyBytes_AS_STRING(ends)
    cdef list out = []
    cdef Py_ssize_t i, last = 0
    for i in range(n):
        if e[i] - last >= target:
            out.append(i + 1)
            last = e[i]
    if not out or out[len(out) - 1] != n:
        if n:
            out.append(n)
    return out


cdef class Skipper:
    """Counts the messages of a BGP byte stream without keeping UPDATE or
    KEEPALIVE bodies.  ``feed`` returns the other messages as
    (type, body); ``updates``/``keepalives``/``octets`` accumulate.
    A bad marker or length raises ValueError (RFC 4271 §6.1 header error;
    the caller sends the NOTIFICATION)."""

    cdef public Py_ssize_t updates, keepalives, octets
    cdef unsigned char head[19]
    cdef Py_ssize_t have      # header octets collected so far
    cdef Py_ssize_t skip      # body octets of the current message still to skip
    cdef bint keep            # current body is being collected
    cdef bytearray body

    def __init__(self):
        self.updates = 0
        self.keepalives = 0
        self.octets = 0
        self.have = 0
        self.skip = 0
        self.keep = False
        self.body = bytearray()

    @cython.boundscheck(False)
    @cython.wraparound(False)
    def feed(self, data):
        cdef const unsigned char[::1] mv = data
        cdef Py_ssize_t n = mv.shape[0]
        cdef Py_ssize_t pos = 0, take, length, i
        cdef int mtype
        cdef list out = None
        self.octets += n
        while pos < n:
            if self.skip:
                take = self.skip if self.skip <= n - pos else n - pos
                if self.keep:
                    self.body += bytes(mv[pos:pos + take])
                pos += take
                self.skip -= take
                if self.skip == 0 and self.keep:
                    if out is None:
                        out = []
                    out.append((self.head[18], bytes(self.body)))
                    self.body.clear()
                    self.keep = False
                continue
            take = 19 - self.have
            if take > n - pos:
                take = n - pos
            for i in range(take):
                self.head[self.have + i] = mv[pos + i]
            self.have += take
            pos += take
            if self.have < 19:
                break
            self.have = 0
            for i in range(16):
                if self.head[i] != 0xFF:
                    raise ValueError("marker is not all ones")
            length = (self.head[16] << 8) | self.head[17]
            mtype = self.head[18]
            if length < 19 or (mtype == 4 and length != 19):
                raise ValueError("bad length %d for message type %d" % (length, mtype))
            if mtype == 2:
                self.updates += 1
                self.keep = False
            elif mtype == 4:
                self.keepalives += 1
                self.keep = False
            else:
                self.keep = True
            self.skip = length - 19
            if self.skip == 0 and self.keep:
                if out is None:
                    out = []
                out.append((mtype, b""))
                self.keep = False
        return out if out is not None else ()


@cython.boundscheck(False)
@cython.wraparound(False)
def split_keys(packed, int width=32, bint addpath=False):
    """[key] per prefix of packed NLRI: the length octet and the address
    octets with bits past the length cleared (RFC 4271 §4.3 says they are
    irrelevant), path id dropped.  Raises ValueError when malformed."""
    cdef const unsigned char[::1] mv = packed
    cdef Py_ssize_t n = mv.shape[0]
    cdef Py_ssize_t pos = 0, nb, i
    cdef int plen
    cdef unsigned char k[17]
    cdef list out = []
    while pos < n:
        if addpath:
            pos += 4
            if pos >= n:
                raise ValueError("truncated path id")
        plen = mv[pos]
        if plen > width:
            raise ValueError("prefix length %d" % plen)
        nb = (plen + 7) >> 3
        if pos + 1 + nb > n:
            raise ValueError("truncated prefix")
        k[0] = plen
        for i in range(nb):
            k[1 + i] = mv[pos + 1 + i]
        if plen & 7:
            k[nb] &= (0xFF << (8 - (plen & 7))) & 0xFF
        out.append(PyBytes_FromStringAndSize(<char *>k, 1 + nb))
        pos += 1 + nb
    return out


@cython.boundscheck(False)
@cython.wraparound(False)
def find_range(packed, int width, bint addpath, bytes net, int netlen):
    """Keys (as :func:`split_keys`) of the prefixes in packed NLRI that lie
    inside ``net``/``netlen`` (``net``: address octets); None if there are
    none -- the common case, answered without allocating."""
    cdef const unsigned char[::1] mv = packed
    cdef Py_ssize_t n = mv.shape[0]
    cdef const unsigned char *np = <const unsigned char *>PyBytes_AS_STRING(net)
    cdef Py_ssize_t netb = PyBytes_GET_SIZE(net)
    cdef Py_ssize_t pos = 0, nb, i
    cdef int plen, full = netlen >> 3, rest = netlen & 7
    cdef bint inside
    cdef unsigned char k[17]
    cdef list out = None
    if (netlen + 7) >> 3 > netb:
        raise ValueError("net shorter than its length")
    while pos < n:
        if addpath:
            pos += 4
            if pos >= n:
                raise ValueError("truncated path id")
        plen = mv[pos]
        if plen > width:
            raise ValueError("prefix length %d" % plen)
        nb = (plen + 7) >> 3
        if pos + 1 + nb > n:
            raise ValueError("truncated prefix")
        inside = plen >= netlen
        if inside:
            for i in range(full):
                if mv[pos + 1 + i] != np[i]:
                    inside = False
                    break
            if inside and rest and ((mv[pos + 1 + full] ^ np[full]) & ((0xFF << (8 - rest)) & 0xFF)):
                inside = False
        if inside:
            k[0] = plen
            for i in range(nb):
                k[1 + i] = mv[pos + 1 + i]
            if plen & 7:
                k[nb] &= (0xFF << (8 - (plen & 7))) & 0xFF
            if out is None:
                out = []
            out.append(PyBytes_FromStringAndSize(<char *>k, 1 + nb))
        pos += 1 + nb
    return out


@cython.boundscheck(False)
@cython.wraparound(False)
def packed_offset(packed, Py_ssize_t count, int width=32, bint addpath=False):
    """Octet offset in packed NLRI where prefix number ``count`` starts
    (the length of the first ``count`` prefixes)."""
    cdef const unsigned char[::1] mv = packed
    cdef Py_ssize_t n = mv.shape[0]
    cdef Py_ssize_t pos = 0, k = 0
    while k < count and pos < n:
        if addpath:
            pos += 4
            if pos >= n:
                raise ValueError("truncated path id")
        if mv[pos] > width:
            raise ValueError("prefix length %d" % mv[pos])
        pos += 1 + ((mv[pos] + 7) >> 3)
        k += 1
    if pos > n:
        raise ValueError("truncated prefix")
    return pos
