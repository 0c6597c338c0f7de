# cython: boundscheck=False, wraparound=False
"""Compiled twin of ``fastbgp.mrt._dump_py`` (read its docstring: the same
``format_run`` with identical behaviour).  Every read below is checked
against the record end first, by hand, hence no bounds checking.

This loop is what ``fastbgp mrt dump -m`` spends its time in on RIB dumps:
per entry one dict lookup of its attribute bytes and a few memcpy, the
line text of each distinct attribute block being made once by
BgpdumpFormatter (on a miss, through ``st``).
"""

from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE, PyByteArray_Resize
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.string cimport memcpy, strlen, strstr, strchr


cdef extern from "arpa/inet.h":
    const char* inet_ntop(int af, const void* src, char* dst, unsigned int size)


cdef extern from "sys/socket.h":
    int AF_INET6

IMPLEMENTATION = "cython"

cdef enum:
    TABLE_DUMP = 12  # RFC 6396 §4.2
    TABLE_DUMP_V2 = 13  # RFC 6396 §4.3
    BGP4MP = 16  # RFC 6396 §4.4
    BGP4MP_ET = 17


cdef inline int _put(bytearray out, const char* s, Py_ssize_t n) except -1:
    cdef Py_ssize_t k = PyByteArray_GET_SIZE(out)
    PyByteArray_Resize(out, k + n)  # over-allocates as it grows
    memcpy(PyByteArray_AS_STRING(out) + k, s, n)
    return 0


cdef inline int _putb(bytearray out, bytes b) except -1:
    return _put(out, PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b))


cdef inline Py_ssize_t _dec(char* d, unsigned int v):
    """Decimal text of v at d; returns its length."""
    cdef char tmp[10]
    cdef Py_ssize_t n = 0, i
    if v == 0:
        d[0] = 48
        return 1
    while v:
        tmp[n] = 48 + v % 10
        v //= 10
        n += 1
    for i in range(n):
        d[i] = tmp[n - 1 - i]
    return n


cdef inline Py_ssize_t _v4(char* d, const unsigned char* a, unsigned int plen):
    """'a.b.c.d/len' at d; returns its length."""
    cdef Py_ssize_t n = 0
    n += _dec(d + n, a[0]); d[n] = 46; n += 1
    n += _dec(d + n, a[1]); d[n] = 46; n += 1
    n += _dec(d + n, a[2]); d[n] = 46; n += 1
    n += _dec(d + n, a[3]); d[n] = 47; n += 1
    n += _dec(d + n, plen)
    return n


cdef inline int _putdec(bytearray out, unsigned int v) except -1:
    cdef char d[12]
    return _put(out, d, _dec(d, v))


cdef Py_ssize_t _v6(char* d, const unsigned char* b):
    """bgpdump's text of the IPv6 address b at d (room for 64): what its
    inet_ntop writes, which is not quite RFC 5952 (see dump._v6, the same
    rules): a lone zero group becomes "::" when no longer run was, and
    IPv4-compatible addresses other than ::1 print as ::a.b.c.d."""
    cdef char s[64]
    cdef Py_ssize_t n, i, k, z
    cdef bint zero14
    inet_ntop(AF_INET6, b, s, 64)
    n = strlen(s)
    if strstr(s, b"::") != NULL:
        if s[0] == 58 and strchr(s, 46) == NULL and (b[14] != 0 or b[15] > 1):
            zero14 = True
            for i in range(14):
                if b[i]:
                    zero14 = False
                    break
            if zero14:
                memcpy(d, b"::", 2)
                k = 2
                for i in range(12, 16):
                    k += _dec(d + k, b[i])
                    d[k] = 46
                    k += 1
                return k - 1
        memcpy(d, s, n)
        return n
    # No "::": the first group that is a lone "0" becomes "::".
    k = 0  # start of the current group
    for i in range(n + 1):
        if i == n or s[i] == 58:
            if i - k == 1 and s[k] == 48:
                z = 0
                if k > 0:
                    memcpy(d, s, k - 1)
                    z = k - 1
                d[z] = 58
                d[z + 1] = 58
                z += 2
                if i < n:
                    memcpy(d + z, s + i + 1, n - i - 1)
                    z += n - i - 1
                return z
            k = i + 1
    memcpy(d, s, n)
    return n


cdef inline Py_ssize_t _pfx(char* d, const unsigned char* src, Py_ssize_t nb, unsigned int plen, int afi):
    """'address/len' of an NLRI prefix (nb octets at src), host bits
    cleared (RFC 4271 §4.3), at d (room for 72)."""
    cdef unsigned char a[16]
    cdef Py_ssize_t k, n
    for k in range(16):
        a[k] = src[k] if k < nb else 0
    if plen & 7:
        a[nb - 1] &= (0xFF << (8 - (plen & 7))) & 0xFF
    if afi == 1:
        return _v4(d, a, plen)
    n = _v6(d, a)
    d[n] = 47
    return n + 1 + _dec(d + n + 1, plen)


cdef bint _nlri_ok(const unsigned char* v, Py_ssize_t s, Py_ssize_t e, unsigned int maxbits):
    """Whether v[s:e] is whole prefixes of at most maxbits bits."""
    cdef unsigned int plen
    while s < e:
        plen = v[s]
        if plen > maxbits:
            return False
        s += 1 + ((plen + 7) >> 3)
    return s == e


cdef struct Attrs:
    Py_ssize_t origin, path_s, path_e, nh, med, lp, comm_s, comm_e, agg, mpr_s, mpr_e, mpu_s, mpu_e
    bint atomic


cdef bint _scan(const unsigned char* v, Py_ssize_t i, Py_ssize_t n, Attrs* a):
    """Where the attributes bgpdump prints lie in v[i:n] (RFC 4271 §4.3),
    or False for anything this fast path leaves to BgpdumpFormatter:
    a repeated type, a printed attribute of a length or
    content it would treat specially, confederation segments."""
    cdef int t
    cdef Py_ssize_t vs, ve, k
    cdef unsigned int cnt
    cdef unsigned long long seen[4]
    seen[0] = seen[1] = seen[2] = seen[3] = 0
    a.origin = a.path_s = a.nh = a.med = a.lp = a.comm_s = a.agg = a.mpr_s = a.mpu_s = -1
    a.path_e = a.comm_e = a.mpr_e = a.mpu_e = -1
    a.atomic = False
    while i < n:
        if i + 3 > n:
            return False
        t = v[i + 1]
        if v[i] & 0x10:  # Extended Length
            if i + 4 > n:
                return False
            vs = i + 4
            ve = vs + ((v[i + 2] << 8) | v[i + 3])
        else:
            vs = i + 3
            ve = vs + v[i + 2]
        if ve > n or seen[t >> 6] & (1ULL << (t & 63)):
            return False  # RFC 7606 §3 (g): a repeated attribute is the formatter's case
        seen[t >> 6] |= 1ULL << (t & 63)
        # One branch per attribute, written out on purpose: each checks its
        # own length (RFC 4271 §5) and fills its own field; this is the
        # compiled per-attribute loop of the dump fast path.
        if t == 1:
            if ve - vs != 1 or v[vs] > 2:
                return False
            a.origin = v[vs]
        elif t == 2:
            # 4-octet AS_SEQUENCE / AS_SET segments filling the value; an
            # empty AS_PATH (iBGP routes in BIRD / OpenBGPD RIB dumps, RFC
            # 4271 §5.1.2) prints as an empty field, like bgpdump.
            k = vs
            while k < ve:
                if k + 2 > ve or (v[k] != 1 and v[k] != 2) or v[k + 1] == 0:
                    return False
                cnt = v[k + 1]
                k += 2 + 4 * cnt
            if k != ve or ve - vs > 1024:
                return False
            a.path_s = vs
            a.path_e = ve
        elif t == 3:
            if ve - vs != 4:
                return False
            a.nh = vs
        elif t == 4:
            if ve - vs != 4:
                return False
            a.med = vs
        elif t == 5:
            if ve - vs != 4:
                return False
            a.lp = vs
        elif t == 6:
            if ve != vs:
                return False
            a.atomic = True
        elif t == 7:
            if ve - vs != 8:
                return False
            a.agg = vs
        elif t == 8:
            if ve == vs or (ve - vs) & 3:
                return False
            a.comm_s = vs
            a.comm_e = ve
        elif t == 14:
            a.mpr_s = vs
            a.mpr_e = ve
        elif t == 15:
            a.mpu_s = vs
            a.mpu_e = ve
        i = ve
    return True


cdef inline unsigned int _u32(const unsigned char* v, Py_ssize_t i):
    return (<unsigned int>v[i] << 24) | (v[i + 1] << 16) | (v[i + 2] << 8) | v[i + 3]


cdef int _pre(bytearray out, const unsigned char* v, Attrs* a) except -1:
    """'|aspath|origin|' (the line's "|" before the AS path included)."""
    cdef char d[12 * 256 + 8]
    cdef Py_ssize_t n = 1, k = a.path_s, j, e
    cdef unsigned int st, cnt
    d[0] = 124
    while k < a.path_e:
        st = v[k]
        cnt = v[k + 1]
        k += 2
        e = k + 4 * cnt
        if n > 1:
            d[n] = 32
            n += 1
        if st == 1:  # AS_SET
            d[n] = 123
            n += 1
        j = k
        while j < e:
            if j > k:
                d[n] = 44 if st == 1 else 32
                n += 1
            n += _dec(d + n, _u32(v, j))
            j += 4
        if st == 1:
            d[n] = 125
            n += 1
        k = e
    d[n] = 124
    n += 1
    _put(out, d, n)
    if a.origin == 0:
        _put(out, b"IGP|", 4)
    elif a.origin == 1:
        _put(out, b"EGP|", 4)
    else:
        _put(out, b"INCOMPLETE|", 11)
    return 0


cdef int _post(bytearray out, const unsigned char* v, Attrs* a) except -1:
    """'|lp|med|communities|AG|aggregator|\\n'."""
    cdef Py_ssize_t k
    cdef unsigned int c
    cdef char d[24]
    _put(out, b"|", 1)
    _putdec(out, _u32(v, a.lp) if a.lp >= 0 else 0)
    _put(out, b"|", 1)
    _putdec(out, _u32(v, a.med) if a.med >= 0 else 0)
    _put(out, b"|", 1)
    if a.comm_s >= 0:
        k = a.comm_s
        while k < a.comm_e:
            if k > a.comm_s:
                _put(out, b" ", 1)
            c = _u32(v, k)
            # RFC 1997's well-known communities, in bgpdump's spelling.
            if c == 0xFFFFFF01:
                _put(out, b"no-export", 9)
            elif c == 0xFFFFFF02:
                _put(out, b"no-advertise", 12)
            elif c == 0xFFFFFF03:
                _put(out, b"local-AS", 8)
            else:
                _putdec(out, c >> 16)
                _put(out, b":", 1)
                _putdec(out, c & 0xFFFF)
            k += 4
    if a.atomic:
        _put(out, b"|AG|", 4)
    else:
        _put(out, b"|NAG|", 5)
    if a.agg >= 0:
        _putdec(out, _u32(v, a.agg))
        _put(out, b" ", 1)
        _put(out, d, _v4(d, v + a.agg + 4, 0) - 2)  # the address without "/0"
    _put(out, b"|\n", 2)
    return 0


cdef bint _nh(bytearray out, const unsigned char* v, Py_ssize_t s, Py_ssize_t n) except -1:
    """A next hop as bgpdump prints it: 4 octets IPv4, 16 or 32 the first
    IPv6 address (RFC 2545 §3: global, then link-local)."""
    cdef char d[72]
    if n == 4:
        _put(out, d, _v4(d, v + s, 0) - 2)
    elif n == 16 or n == 32:
        _put(out, d, _v6(d, v + s))
    else:
        return False
    return True


cdef bint _rib_tail(bytearray out, const unsigned char* v, Py_ssize_t s, Py_ssize_t e, int afi) except -1:
    """'|pre nh post' of RIB entry attributes v[s:e] (RFC 6396 §4.3.4:
    4-octet AS; the abbreviated MP_REACH_NLRI's next hop wins over
    NEXT_HOP), or False with nothing written."""
    cdef Attrs a
    cdef Py_ssize_t start = PyByteArray_GET_SIZE(out)
    cdef unsigned int nhlen
    if s == e:
        # No attributes at all (Quagga writes such entries): bgpdump's
        # defaults for every field.
        _put(out, b"||INCOMPLETE|255.255.255.255|0|0||NAG||\n", 40)
        return True
    if not _scan(v, s, e, &a) or a.mpu_s >= 0 or a.origin < 0 or a.path_s < 0:
        return False
    _pre(out, v, &a)
    if a.mpr_s >= 0:
        if v[a.mpr_s] + 1 == a.mpr_e - a.mpr_s:
            # RFC 6396 §4.3.4: next-hop length and next hop only.
            if not _nh(out, v, a.mpr_s + 1, v[a.mpr_s]):
                PyByteArray_Resize(out, start)
                return False
        else:
            # Quagga writes the full RFC 4760 §3 form (AFI, SAFI, next-hop
            # length, next hop, reserved): its next hop, as bgpdump reads it.
            nhlen = v[a.mpr_s + 3] if a.mpr_e - a.mpr_s >= 5 else 0
            if nhlen == 0 or a.mpr_s + 4 + nhlen > a.mpr_e or not _nh(out, v, a.mpr_s + 4, nhlen):
                PyByteArray_Resize(out, start)
                return False
    elif a.nh >= 0:
        if afi != 1:
            PyByteArray_Resize(out, start)
            return False
        _nh(out, v, a.nh, 4)
    else:
        # No next hop at all (BIRD's IPv6 entries): bgpdump's default.
        _put(out, b"255.255.255.255", 15)
    _post(out, v, &a)
    return True


cdef Py_ssize_t _mp_ok(const unsigned char* v, Attrs* a, bint reach):
    """Start of the NLRI of a unicast MP_REACH_NLRI (RFC 4760 §3: AFI,
    SAFI, next hop length, next hop, reserved octet) or MP_UNREACH_NLRI
    (§4: AFI, SAFI) this path prints, else -1."""
    cdef Py_ssize_t s = a.mpr_s if reach else a.mpu_s
    cdef Py_ssize_t e = a.mpr_e if reach else a.mpu_e
    cdef unsigned int afi, nhlen
    if e - s < (5 if reach else 3):
        return -1
    afi = (v[s] << 8) | v[s + 1]
    if v[s + 2] != 1 or (afi != 1 and afi != 2):
        return -1
    if not reach:
        return s + 3 if _nlri_ok(v, s + 3, e, 32 if afi == 1 else 128) else -1
    nhlen = v[s + 3]
    if not ((afi == 1 and nhlen == 4) or (afi == 2 and (nhlen == 16 or nhlen == 32))):
        return -1
    s += 5 + nhlen
    if s > e or not _nlri_ok(v, s, e, 32 if afi == 1 else 128):
        return -1
    return s


cdef int _lines(bytearray out, const char* h, Py_ssize_t hn, const unsigned char* v, Py_ssize_t s, Py_ssize_t e,
                int afi, bytes pre, const unsigned char* nh, Py_ssize_t nhlen, bytes post) except -1:
    """One line per prefix of v[s:e]: h, the prefix, then "\\n" (pre None)
    or "|" pre, next hop, post."""
    cdef char d[72]
    cdef unsigned int plen
    cdef Py_ssize_t nb
    while s < e:
        plen = v[s]
        nb = (plen + 7) >> 3
        _put(out, h, hn)
        _put(out, d, _pfx(d, v + s + 1, nb, plen, afi))
        if pre is None:
            _put(out, b"\n", 1)
        else:
            _putb(out, pre)
            _nh(out, nh, 0, nhlen)
            _putb(out, post)
        s += 1 + nb
    return 0


cdef bint _bgp4mp(const unsigned char* v, Py_ssize_t b, Py_ssize_t end, unsigned int ts, unsigned int typ,
                  unsigned int sub, bytearray out) except -1:
    """A BGP4MP / BGP4MP_ET MESSAGE_AS4 record (RFC 6396 §4.4.3) whose
    message is whole and well formed; UPDATEs print one line per prefix,
    other messages nothing (bgpdump -m shows UPDATEs only)."""
    cdef unsigned int usec = 0, peer_as, afi, mlen
    cdef Py_ssize_t w, m, u, ws, we, ans, ae, k, hn, mps, mus, wpos
    cdef Attrs a
    cdef char h[160]
    cdef bint announce
    cdef bytes pre, post
    cdef bytearray tmp
    if typ == BGP4MP_ET:
        # RFC 6396 §3: the _ET types put microseconds first.
        if end - b < 4:
            return False
        usec = _u32(v, b)
        b += 4
        if usec > 999999:
            return False
    if sub != 4:
        return False
    if b + 12 > end:
        return False
    peer_as = _u32(v, b)
    afi = (v[b + 10] << 8) | v[b + 11]
    if afi == 1:
        w = 4
    elif afi == 2:
        w = 16
    else:
        return False
    m = b + 12 + 2 * w
    if m + 19 > end:
        return False
    for k in range(16):
        if v[m + k] != 0xFF:
            return False  # RFC 4271 §4.1: the marker is all ones
    mlen = (v[m + 16] << 8) | v[m + 17]
    if mlen != end - m:
        return False
    if v[m + 18] != 2:
        return True
    # RFC 4271 §4.3: withdrawn routes, path attributes, NLRI.
    u = m + 19
    if u + 2 > end:
        return False
    ws = u + 2
    we = ws + ((v[u] << 8) | v[u + 1])
    if we + 2 > end:
        return False
    ans = we + 2
    ae = ans + ((v[we] << 8) | v[we + 1])
    if ae > end or not _nlri_ok(v, ws, we, 32) or not _nlri_ok(v, ae, end, 32):
        return False
    if not _scan(v, ans, ae, &a):
        return False
    mps = mus = -1
    if a.mpr_s >= 0:
        mps = _mp_ok(v, &a, True)
        if mps < 0:
            return False
    if a.mpu_s >= 0:
        mus = _mp_ok(v, &a, False)
        if mus < 0:
            return False
    announce = ae < end or (mps >= 0 and mps < a.mpr_e)
    if announce and (a.origin < 0 or a.path_s < 0 or (ae < end and a.nh < 0)):
        return False
    # The head: label, time, then "|W|" or "|A|" and the peer's "ip|as|".
    if typ == BGP4MP_ET:
        memcpy(h, b"BGP4MP_ET|", 10)
        hn = 10 + _dec(h + 10, ts)
        h[hn] = 46
        for k in range(6):
            h[hn + 6 - k] = 48 + usec % 10
            usec //= 10
        hn += 7
    else:
        memcpy(h, b"BGP4MP|", 7)
        hn = 7 + _dec(h + 7, ts)
    memcpy(h + hn, b"|W|", 3)
    wpos = hn + 1
    hn += 3
    if afi == 1:
        hn += _v4(h + hn, v + b + 12, 0) - 2
    else:
        hn += _v6(h + hn, v + b + 12)
    h[hn] = 124
    hn += 1
    hn += _dec(h + hn, peer_as)
    h[hn] = 124
    hn += 1
    # Withdrawals before announcements, classic before MP (as bgpdump).
    _lines(out, h, hn, v, ws, we, 1, None, NULL, 0, None)
    if mus >= 0:
        _lines(out, h, hn, v, mus, a.mpu_e, (v[a.mpu_s] << 8) | v[a.mpu_s + 1], None, NULL, 0, None)
    if not announce:
        return True
    tmp = bytearray()
    _pre(tmp, v, &a)
    pre = bytes(tmp)
    tmp = bytearray()
    _post(tmp, v, &a)
    post = bytes(tmp)
    h[wpos] = 65  # "|A|"
    if ae < end:
        _lines(out, h, hn, v, ae, end, 1, pre, v + a.nh, 4, post)
    if mps >= 0 and mps < a.mpr_e:
        # RFC 4760 §3: the MP prefixes take the MP next hop.
        _lines(out, h, hn, v, mps, a.mpr_e, (v[a.mpr_s] << 8) | v[a.mpr_s + 1], pre, v + a.mpr_s + 4, v[a.mpr_s + 3], post)
    return True


cdef bytes _head(const char* label, Py_ssize_t ln, unsigned int ts):
    cdef char d[40]
    memcpy(d, label, ln)
    cdef Py_ssize_t n = ln + _dec(d + ln, ts)
    d[n] = 124; d[n + 1] = 66; d[n + 2] = 124  # "|B|"
    return PyBytes_FromStringAndSize(d, n + 3)


cdef bint _rib(const unsigned char* buf, Py_ssize_t b, Py_ssize_t end, unsigned int ts, int afi,
               bint addpath, object st, list peers, bytearray out) except -1:
    cdef Py_ssize_t p = b + 4, nb, k, alen, start = PyByteArray_GET_SIZE(out)
    cdef Py_ssize_t hl = 12 if addpath else 8
    cdef unsigned int pid
    cdef unsigned int plen, idx, count, i
    cdef char txt[72]
    cdef bytes pfx, head, tail
    cdef dict cache
    cdef Py_ssize_t npeers
    cdef unsigned int maxbits = 32 if afi == 1 else 128
    if p >= end:
        return False
    plen = buf[p]
    if plen > maxbits:
        return False
    nb = (plen + 7) >> 3
    if p + 1 + nb + 2 > end:
        return False
    pfx = PyBytes_FromStringAndSize(txt, _pfx(txt, buf + p + 1, nb, plen, afi))
    p += 1 + nb
    count = (buf[p] << 8) | buf[p + 1]
    p += 2
    cache = st.rib4 if afi == 1 else st.rib6
    npeers = len(peers)
    head = _head(b"TABLE_DUMP2_AP|", 15, ts) if addpath else _head(b"TABLE_DUMP2|", 12, ts)
    for i in range(count):
        # RFC 6396 §4.3.4: peer index, originated time, (RFC 8050 §4: path
        # identifier,) attribute length.
        if p + hl > end:
            PyByteArray_Resize(out, start)
            return False
        idx = (buf[p] << 8) | buf[p + 1]
        alen = (buf[p + hl - 2] << 8) | buf[p + hl - 1]
        pid = _u32(buf, p + 6) if addpath else 0
        p += hl
        if p + alen > end:
            PyByteArray_Resize(out, start)
            return False
        if idx < npeers:
            attrs = PyBytes_FromStringAndSize(<const char*>buf + p, alen)
            tail = cache.get(attrs)
            _putb(out, head)
            _putb(out, <bytes>peers[idx])
            _putb(out, pfx)
            if addpath:
                _put(out, b"|", 1)
                _putdec(out, pid)
            if tail is not None:
                _putb(out, tail)
            else:
                k = PyByteArray_GET_SIZE(out)
                if _rib_tail(out, buf, p, p + alen, afi):
                    # Cached like the formatter's own misses (same bound).
                    if len(cache) >= st.limit:
                        cache.clear()
                    cache[attrs] = PyBytes_FromStringAndSize(PyByteArray_AS_STRING(out) + k, PyByteArray_GET_SIZE(out) - k)
                else:
                    _putb(out, st.rib_miss(afi, attrs))
        p += alen
    return True


cdef bint _table_dump(const unsigned char* buf, Py_ssize_t b, Py_ssize_t end, unsigned int ts, int sub,
                      object st, bytearray out) except -1:
    # RFC 6396 §4.2: view, sequence, prefix, length, status, originated
    # time, peer address, peer AS (2 octets), attributes.
    cdef Py_ssize_t w = 4 if sub == 1 else 16
    cdef Py_ssize_t p = b + 4 + w + 6
    cdef Py_ssize_t alen, q, tl
    cdef unsigned int plen
    cdef char txt[24]
    cdef bytes pfx, who, tail, key, attrs
    if p + w + 4 > end:
        return False
    alen = (buf[p + w + 2] << 8) | buf[p + w + 3]
    q = p + w + 4
    if q + alen > end:
        return False
    plen = buf[b + 4 + w]
    key = PyBytes_FromStringAndSize(<const char*>buf + p, w + 2)
    who = st.who.get(key)
    if who is None:
        who = st.who_miss(key)
    attrs = PyBytes_FromStringAndSize(<const char*>buf + q, alen)
    tail = st.td1.get(attrs)
    if tail is None:
        tail = st.td1_miss(attrs)
    _putb(out, _head(b"TABLE_DUMP|", 11, ts))
    _putb(out, who)
    if w == 4:
        tl = _v4(txt, buf + b + 4, plen)
        _put(out, txt, tl)
    else:
        _putb(out, st.v6(PyBytes_FromStringAndSize(<const char*>buf + b + 4, 16)))
        txt[0] = 47
        tl = _dec(txt + 1, plen)
        _put(out, txt, tl + 1)
    _putb(out, tail)
    return True


def format_run(bytes buf, Py_ssize_t pos, object st, bytearray out):
    """(records printed, position after them); see _dump_py."""
    cdef const unsigned char* d = <const unsigned char*>PyBytes_AS_STRING(buf)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(buf), end
    cdef unsigned int ts, typ, sub
    cdef unsigned long ln
    cdef Py_ssize_t done = 0
    cdef bint ok
    cdef list peers = None
    while n - pos >= 12:
        # RFC 6396 §2: timestamp, type, subtype, length.
        ts = (<unsigned int>d[pos] << 24) | (d[pos + 1] << 16) | (d[pos + 2] << 8) | d[pos + 3]
        typ = (d[pos + 4] << 8) | d[pos + 5]
        sub = (d[pos + 6] << 8) | d[pos + 7]
        ln = (<unsigned long>d[pos + 8] << 24) | (d[pos + 9] << 16) | (d[pos + 10] << 8) | d[pos + 11]
        if <unsigned long>(n - pos - 12) < ln:
            break
        end = pos + 12 + <Py_ssize_t>ln
        if typ == TABLE_DUMP_V2 and (sub == 2 or sub == 4 or sub == 8 or sub == 10):
            if peers is None:
                peers = st.peers  # only a PEER_INDEX_TABLE changes it, never inside a run
            # RFC 6396 §4.3 / RFC 8050 §4: 2, 4 unicast; 8, 10 their ADDPATH forms.
            ok = _rib(d, pos + 12, end, ts, 1 if sub == 2 or sub == 8 else 2, sub >= 8, st, peers, out)
        elif typ == TABLE_DUMP and (sub == 1 or sub == 2):
            ok = _table_dump(d, pos + 12, end, ts, sub, st, out)
        elif (typ == BGP4MP or typ == BGP4MP_ET) and sub == 4:
            ok = _bgp4mp(d, pos + 12, end, ts, typ, sub, out)
        else:
            break
        if not ok:
            break
        pos = end
        done += 1
    return done, pos
