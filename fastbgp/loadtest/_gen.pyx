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
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdint cimport int64_t, uint8_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memset
cimport cython

cdef extern from *:
    """
    typedef unsigned __int128 fbgp_u128;
    """
    ctypedef unsigned long long fbgp_u128  # real type: unsigned __int128 (gcc/clang)

DEF HEADER_LEN = 19


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
    cdef int i
    for i in range(15, -1, -1):
        p[i] = <unsigned char>(v & 0xFF)
        v >>= 8


cdef inline void _put_u32(unsigned char *p, uint32_t v) noexcept nogil:
    p[0] = (v >> 24) & 0xFF
    p[1] = (v >> 16) & 0xFF
    p[2] = (v >> 8) & 0xFF
    p[3] = v & 0xFF


cdef inline void _put_u16(unsigned char *p, Py_ssize_t v) noexcept nogil:
    p[0] = (v >> 8) & 0xFF
    p[1] = v & 0xFF


@cython.boundscheck(False)
@cython.wraparound(False)
cdef inline Py_ssize_t _close_msg(unsigned char *out, Py_ssize_t pos, Py_ssize_t msg_start,
                                  Py_ssize_t nlri_start, Py_ssize_t alen, Py_ssize_t mlen,
                                  const unsigned char *tp, Py_ssize_t tlen) noexcept nogil:
    """Finish the UPDATE started at ``msg_start`` whose NLRI ends at ``pos``:
    fill in the lengths now that the NLRI is known (total attribute length
    and the MP_REACH_NLRI length when the prefixes travel in it, followed by
    the attributes after it), then the header length.  Returns the end."""
    if mlen:
        _put_u16(out + msg_start + HEADER_LEN + 2, alen + mlen + (pos - nlri_start) + tlen)
        _put_u16(out + msg_start + HEADER_LEN + 4 + alen + 2, mlen - 4 + (pos - nlri_start))
        memcpy(out + pos, tp, tlen)
        pos += tlen
    _put_u16(out + msg_start + 16, pos - msg_start)
    return pos


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
    cdef int minlen = 255
    for i in range(4096):
        if lp[i] > width or lp[i] == 0:
            raise ValueError("prefix length %d out of range 1..%d" % (lp[i], width))
        if lp[i] < minlen:
            minlen = lp[i]
    cdef Py_ssize_t alen = PyBytes_GET_SIZE(attrs)
    cdef Py_ssize_t mlen = PyBytes_GET_SIZE(mp_head)
    cdef Py_ssize_t tlen = PyBytes_GET_SIZE(tail)
    if tlen and not mlen:
        raise ValueError("tail needs mp_head")
    if med_off >= 0 and med_off + 4 > alen:
        raise ValueError("med_off outside attrs")
    if origin_off >= 0 and (origin_width not in (2, 4) or origin_off + origin_width > alen):
        raise ValueError("origin_off outside attrs")
    if origin_span == 0:
        origin_span = 1
    if mlen and mlen < 4:
        raise ValueError("mp_head too short")
    cdef Py_ssize_t pid_len = 4 if addpath else 0
    cdef Py_ssize_t max_pfx = 1 + pid_len + width // 8
    cdef Py_ssize_t overhead = HEADER_LEN + 4 + alen + mlen + tlen
    cdef Py_ssize_t room = maxlen - overhead
    if room < max_pfx:
        raise ValueError("attributes of %d octets leave no room for a prefix in a %d-octet message" % (alen + mlen, maxlen))
    if mlen and room > 0xFFFF - (mlen - 4):
        room = 0xFFFF - (mlen - 4)  # the MP_REACH_NLRI length field is 2 octets

    # Upper bounds: a message per group plus one per full message of the
    # largest prefixes, each message at most ``overhead`` beyond its NLRI.
    cdef Py_ssize_t n_groups = (count + per_group - 1) // per_group
    cdef Py_ssize_t per_msg = room // max_pfx
    if cap and cap < per_msg:
        per_msg = cap
    cdef Py_ssize_t max_msgs = n_groups + count // per_msg + 1
    cdef Py_ssize_t buf_size = max_msgs * overhead + count * max_pfx + 16 if encode else 1
    cdef Py_ssize_t pk_size = count * max_pfx + 1 if want_packed else 1
    cdef unsigned char *out = <unsigned char *>malloc(buf_size)
    cdef int64_t *ends = <int64_t *>malloc(max_msgs * sizeof(int64_t) + 8)
    cdef int64_t *cum = <int64_t *>malloc(max_msgs * sizeof(int64_t) + 8)
    cdef unsigned char *pk = <unsigned char *>malloc(pk_size)
    cdef int64_t cnt[129]
    cdef int64_t used[129]
    if out == NULL or ends == NULL or cum == NULL or pk == NULL:
        free(out); free(ends); free(cum); free(pk)
        raise MemoryError()
    memcpy(cnt, PyBytes_AS_STRING(start), 129 * 8)
    memset(used, 0, sizeof(used))

    cdef fbgp_u128 b = _load128(<const unsigned char *>PyBytes_AS_STRING(base))
    cdef fbgp_u128 lim = _load128(<const unsigned char *>PyBytes_AS_STRING(limit))
    cdef const unsigned char *ap = <const unsigned char *>PyBytes_AS_STRING(attrs)
    cdef const unsigned char *mp = <const unsigned char *>PyBytes_AS_STRING(mp_head)
    cdef const unsigned char *tp = <const unsigned char *>PyBytes_AS_STRING(tail)
    cdef uint64_t rng = seed * 0x9E3779B97F4A7C15ULL + 0x632BE59BD9B4E019ULL
    if rng == 0:
        rng = 1
    cdef unsigned char a16[16]
    cdef unsigned char pid4[4]
    _put_u32(pid4, path_id)
    cdef Py_ssize_t pos = 0, pkpos = 0, msg_start = 0, nlri_start = 0, nmsg = 0
    cdef Py_ssize_t k = 0, in_msg = 0, group, cur_group = -1, nb, need
    cdef int plen
    cdef fbgp_u128 addr, off
    cdef bint overflow = False
    cdef bint open_msg = False
    cdef uint32_t ov
    with nogil:
        while k < count:
            plen = lp[_next(&rng) >> 52]
            # Counter -> address: shifting the counter to the prefix's
            # position keeps host bits zero by construction (RFC 4271 §4.3).
            off = (<fbgp_u128>cnt[plen]) << (128 - plen)
            if plen < 128 and (<fbgp_u128>cnt[plen]) >> plen:
                overflow = True
                break
            addr = b + off
            if addr < b or addr >= lim or (lim - addr) < ((<fbgp_u128>1) << (128 - plen) if plen < 128 else 1):
                overflow = True
                break
            cnt[plen] += 1
            used[plen] += 1
            nb = (plen + 7) >> 3
            _store128(a16, addr)
            if want_packed:
                if addpath:
                    memcpy(pk + pkpos, pid4, 4)
                    pkpos += 4
                pk[pkpos] = plen
                memcpy(pk + pkpos + 1, a16, nb)
                pkpos += 1 + nb
            if encode:
                group = (k + group_base) // per_group
                need = pid_len + 1 + nb
                if open_msg and (group != cur_group or (cap and in_msg >= cap) or pos - nlri_start + need > room):
                    pos = _close_msg(out, pos, msg_start, nlri_start, alen, mlen, tp, tlen)
                    ends[nmsg] = pos
                    cum[nmsg] = k
                    nmsg += 1
                    open_msg = False
                if not open_msg:
                    msg_start = pos
                    memset(out + pos, 0xFF, 16)
                    out[pos + 18] = 2
                    out[pos + 19] = 0
                    out[pos + 20] = 0
                    _put_u16(out + pos + 21, alen)
                    memcpy(out + pos + 23, ap, alen)
                    if group != cur_group:
                        cur_group = group
                    if med_off >= 0:
                        _put_u32(out + pos + 23 + med_off, med_base + <uint32_t>group)
                    if origin_off >= 0:
                        ov = origin_base + <uint32_t>(group % origin_span)
                        if origin_width == 4:
                            _put_u32(out + pos + 23 + origin_off, ov)
                        else:
                            _put_u16(out + pos + 23 + origin_off, ov & 0xFFFF)
                    pos += 23 + alen
                    if mlen:
                        memcpy(out + pos, mp, mlen)
                        pos += mlen
                    nlri_start = pos
                    in_msg = 0
                    open_msg = True
                if addpath:
                    memcpy(out + pos, pid4, 4)
                    pos += 4
                out[pos] = plen
                memcpy(out + pos + 1, a16, nb)
                pos += 1 + nb
                in_msg += 1
            k += 1
        if encode and open_msg and not overflow:
            pos = _close_msg(out, pos, msg_start, nlri_start, alen, mlen, tp, tlen)
            ends[nmsg] = pos
            cum[nmsg] = k
            nmsg += 1
    if overflow:
        free(out); free(ends); free(cum); free(pk)
        raise ValueError("the table runs out of address space after %d prefixes (/%d counter %d): "
                         "fewer prefixes, fewer short prefixes or another base" % (k, plen, cnt[plen]))
    try:
        msgs = PyBytes_FromStringAndSize(<char *>out, pos) if encode else b""
        e = PyBytes_FromStringAndSize(<char *>ends, nmsg * 8)
        c = PyBytes_FromStringAndSize(<char *>cum, nmsg * 8)
        packed = PyBytes_FromStringAndSize(<char *>pk, pkpos) if want_packed else None
        counts = PyBytes_FromStringAndSize(<char *>used, 129 * 8)
    finally:
        free(out); free(ends); free(cum); free(pk)
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
