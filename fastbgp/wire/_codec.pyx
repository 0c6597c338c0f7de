# cython: language_level=3
"""Compiled BGP-4 codec: the hot path of fastbgp.

Behaviour is identical to the pure-Python twin ``fastbgp/wire/_codec_py.py``
(same results, same BGPError code/subcode/data/action); the tests run every
case on both.  A change here is a change there.

Speed comes from never leaving C per prefix: NLRI fields are validated and
split by walking raw pointers, results stay packed bytes, and messages are
built with one allocation and memcpy.  Every pointer read is preceded by a
length check against the owning buffer.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.string cimport memcmp, memcpy, memset
from libc.stdio cimport snprintf
from cpython.unicode cimport PyUnicode_DecodeASCII
cimport cython

import ipaddress as _ipaddress

from fastbgp.wire import as4
from fastbgp.wire.types import DEFAULT_CONTEXT, ParsedOpen, ParsedUpdate
from fastbgp.wire.errors import BGPError
from fastbgp.wire.constants import MSG_UPDATE
from fastbgp.wire.constants import WELL_KNOWN_FLAGS as _WELL_KNOWN_FLAGS

cdef object _MSG_UPDATE = MSG_UPDATE

IMPLEMENTATION = "cython"

cdef bytes _MARKER = b"\xff" * 16
KEEPALIVE = _MARKER + b"\x00\x13\x04"

DEF HEADER_LEN = 19
DEF MAX_MESSAGE_LEN = 4096

# Action numbers (fastbgp.wire.errors) as C constants.
DEF A_NONE = 0
DEF A_DISCARD = 1
DEF A_WITHDRAW = 2
DEF A_AFISAFI = 3
DEF A_RESET = 4

cdef int _min_len(int mtype) noexcept:
    # RFC 4271 §4.1-4.5 smallest legal message of each type; 0 = unknown type.
    if mtype == 1:
        return 29
    if mtype == 2:
        return 23
    if mtype == 3:
        return 21
    if mtype == 4:
        return 19
    if mtype == 5:
        return 19
    return 0


# RFC 4271 §6.3 / RFC 7606 §3 c: required Optional/Transitive bits; -1 = unknown.
cdef int _expected_flags(int t) noexcept:
    if t == 1 or t == 2 or t == 3 or t == 5 or t == 6:
        return 0x40
    if t == 4 or t == 9 or t == 10 or t == 14 or t == 15:
        return 0x80
    if t == 7 or t == 8 or t == 16 or t == 17 or t == 18 or t == 32 or t == 35:
        return 0xC0
    return -1


# RFC 7606 §7 (and RFC 6793 §6, RFC 8092 §6, RFC 9234 §5): action for a
# malformed instance of each known attribute.
cdef int _malformed_action(int t) noexcept:
    if t == 6 or t == 7 or t == 17 or t == 18:
        return A_DISCARD
    if t == 14 or t == 15:
        return A_RESET
    return A_WITHDRAW


cdef inline int _known_bits(int afi, int safi) noexcept:
    # Families whose NLRI we parse; others are carried as opaque bytes.
    if safi != 1 and safi != 2:
        return 0
    if afi == 1:
        return 32
    if afi == 2:
        return 128
    return 0


@cython.boundscheck(False)
@cython.wraparound(False)
cdef Py_ssize_t nlri_count(const unsigned char *p, Py_ssize_t start, Py_ssize_t end,
                           int maxbits, bint addpath) noexcept nogil:
    """Prefixes in p[start:end], or -1 if not a whole number of well-formed
    prefixes.  Reads p[i] only for i < end."""
    cdef Py_ssize_t count = 0
    cdef Py_ssize_t pos = start
    cdef Py_ssize_t step, s4
    cdef int plen
    if addpath:
        while pos < end:
            pos += 4
            if pos >= end:
                return -1
            plen = p[pos]
            if plen > maxbits:
                return -1
            pos += 1 + ((plen + 7) >> 3)
            count += 1
        return count if pos == end else -1
    while pos < end:
        plen = p[pos]
        if plen > maxbits:
            return -1
        step = 1 + ((plen + 7) >> 3)
        s4 = 4 * step
        # Runs of equal-length prefixes dominate real tables (sorted dumps,
        # /24s).  Checking four length octets at known offsets replaces the
        # load->add->load chain of a one-by-one walk with independent loads.
        while pos + s4 <= end and p[pos] == plen and p[pos + step] == plen \
                and p[pos + 2 * step] == plen and p[pos + 3 * step] == plen:
            pos += s4
            count += 4
        if pos >= end or p[pos] != plen:
            continue
        pos += step
        count += 1
    return count if pos == end else -1


@cython.boundscheck(False)
@cython.wraparound(False)
cdef Py_ssize_t chunk_end(const unsigned char *p, Py_ssize_t start, Py_ssize_t end,
                          Py_ssize_t room, bint addpath) noexcept nogil:
    """End of the longest run of whole prefixes from ``start`` that fits in
    ``room`` octets; ``start`` if not even one fits; -1 if malformed."""
    cdef Py_ssize_t pos = start
    cdef Py_ssize_t nxt, step, s4
    cdef Py_ssize_t limit = start + room if start + room < end else end
    cdef int plen
    while pos < end:
        nxt = pos
        if addpath:
            nxt += 4
            if nxt >= end:
                return -1
        else:
            # Same run-of-equal-lengths shortcut as nlri_count, bounded by
            # the room left in this message.
            plen = p[pos]
            step = 1 + ((plen + 7) >> 3)
            s4 = 4 * step
            while pos + s4 <= limit and p[pos] == plen and p[pos + step] == plen \
                    and p[pos + 2 * step] == plen and p[pos + 3 * step] == plen:
                pos += s4
            if pos >= end:
                break
            nxt = pos
        nxt += 1 + ((p[nxt] + 7) >> 3)
        if nxt > end:
            return -1
        if nxt - start > room:
            return pos
        pos = nxt
    return pos


cdef inline bytes _bytes(object data):
    if type(data) is bytes:
        return <bytes>data
    return bytes(data)


cdef inline bytes _u16(unsigned int v):
    cdef unsigned char b[2]
    b[0] = (v >> 8) & 0xFF
    b[1] = v & 0xFF
    return PyBytes_FromStringAndSize(<char *>b, 2)


cdef inline object _slice(const unsigned char *p, Py_ssize_t s, Py_ssize_t e):
    return PyBytes_FromStringAndSize(<const char *>p + s, e - s)


cpdef bytes frame(int mtype, body):
    cdef bytes b = _bytes(body)
    cdef Py_ssize_t blen = PyBytes_GET_SIZE(b)
    cdef Py_ssize_t n = HEADER_LEN + blen
    if n > 0xFFFF:
        raise ValueError("message of %d octets does not fit the 2-octet length field" % n)
    cdef bytes out = PyBytes_FromStringAndSize(NULL, n)
    cdef unsigned char *o = <unsigned char *>PyBytes_AS_STRING(out)
    memset(o, 0xFF, 16)
    o[16] = (n >> 8) & 0xFF
    o[17] = n & 0xFF
    o[18] = mtype
    memcpy(o + HEADER_LEN, PyBytes_AS_STRING(b), blen)
    return out


# ---------------------------------------------------------------- framing

cdef _check_header(Py_ssize_t length, int mtype, Py_ssize_t max_len):
    cdef int minimum = _min_len(mtype)
    cdef Py_ssize_t limit
    if minimum == 0:
        # RFC 4271 §6.1: Bad Message Type, data = the type octet.
        raise BGPError(1, 3, bytes((mtype,)), "unknown message type %d" % mtype)
    # RFC 8654 §4: OPEN and KEEPALIVE never exceed 4096 octets.
    limit = MAX_MESSAGE_LEN if mtype == 1 or mtype == 4 else max_len
    if length < minimum or length > limit or (mtype == 4 and length != 19):
        # RFC 4271 §6.1: Bad Message Length, data = the length field.
        raise BGPError(1, 2, _u16(length), "bad length %d for message type %d" % (length, mtype))


cdef class MessageReader:
    """Incremental framer: feed TCP stream chunks of any size, get complete
    messages as (type, body) with the header validated (RFC 4271 §6.1).
    After an error the reader stays failed.  ``framed``: the octets of the
    bodies the last feed returned (what a queue of them holds)."""

    cdef bytes _buf
    cdef public Py_ssize_t max_len
    cdef readonly Py_ssize_t framed
    cdef object _failed

    def __init__(self, max_len=MAX_MESSAGE_LEN):
        self._buf = b""
        self.max_len = max_len
        self.framed = 0
        self._failed = None

    @property
    def buffered(self):
        return PyBytes_GET_SIZE(self._buf)

    @cython.boundscheck(False)
    @cython.wraparound(False)
    def feed(self, data):
        if self._failed is not None:
            raise self._failed
        cdef bytes buf
        if PyBytes_GET_SIZE(self._buf):
            buf = self._buf + _bytes(data)
        else:
            buf = _bytes(data)
        cdef const unsigned char *p = <const unsigned char *>PyBytes_AS_STRING(buf)
        cdef Py_ssize_t n = PyBytes_GET_SIZE(buf)
        cdef Py_ssize_t pos = 0
        cdef Py_ssize_t length
        cdef int mtype
        cdef list out = []
        cdef Py_ssize_t framed = 0
        self.framed = 0
        try:
            while n - pos >= HEADER_LEN:
                if memcmp(p + pos, PyBytes_AS_STRING(_MARKER), 16) != 0:
                    # RFC 4271 §6.1: Connection Not Synchronized.
                    raise BGPError(1, 1, b"", "marker is not all ones")
                length = (p[pos + 16] << 8) | p[pos + 17]
                mtype = p[pos + 18]
                _check_header(length, mtype, self.max_len)
                if n - pos < length:
                    break
                out.append((mtype, _slice(p, pos + HEADER_LEN, pos + length)))
                framed += length - HEADER_LEN
                pos += length
        except BGPError as exc:
            self._failed = exc
            raise
        self.framed = framed
        if pos == n:
            self._buf = b""
        elif pos == 0:
            self._buf = buf
        else:
            self._buf = buf[pos:]
        return out


def take_run(pending, first, Py_ssize_t max_octets, Py_ssize_t max_count):
    """([first, ...], octets): ``first`` (an UPDATE body already taken)
    and the UPDATE bodies that lead ``pending`` -- a deque of what feed
    returns, (type, body) tuples, and other items -- popped while fewer
    than ``max_octets`` octets and ``max_count`` bodies were taken after
    ``first``; ``octets`` counts the popped bodies.  The last one taken may
    pass ``max_octets``; anything else than an UPDATE ends the run."""
    cdef list bodies = [first]
    cdef Py_ssize_t used = 0, count = 0
    cdef object item, body
    while pending and used < max_octets and count < max_count:
        item = pending[0]
        if type(item) is not tuple or len(<tuple>item) != 2 or (<tuple>item)[0] != _MSG_UPDATE:
            break
        pending.popleft()
        body = (<tuple>item)[1]
        used += len(body)
        count += 1
        bodies.append(body)
    return bodies, used


def parse_header(data):
    """(length, type) of the 19-octet header at the start of ``data``."""
    cdef bytes b = _bytes(data)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(b)
    if n < HEADER_LEN:
        raise BGPError(1, 2, _u16(n) if n < 65536 else b"", "short header")
    cdef const unsigned char *p = <const unsigned char *>PyBytes_AS_STRING(b)
    if memcmp(p, PyBytes_AS_STRING(_MARKER), 16) != 0:
        raise BGPError(1, 1, b"", "marker is not all ones")
    return (p[16] << 8) | p[17], p[18]


# ---------------------------------------------------------------- OPEN

def parse_open(body):
    cdef bytes b = _bytes(body)
    cdef const unsigned char *p = <const unsigned char *>PyBytes_AS_STRING(b)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(b)
    if n < 10:
        raise BGPError(1, 2, _u16(n + HEADER_LEN), "OPEN shorter than 29 octets")
    cdef int version = p[0]
    if version != 4:
        # RFC 4271 §6.2: data = the largest version we support.
        raise BGPError(2, 1, b"\x00\x04", "unsupported version %d" % version)
    cdef unsigned int asn = (p[1] << 8) | p[2]
    cdef unsigned int hold = (p[3] << 8) | p[4]
    cdef unsigned long bgp_id = (<unsigned long>p[5] << 24) | (p[6] << 16) | (p[7] << 8) | p[8]
    if asn == 0:
        # RFC 7607 §2: AS 0 is never a valid My Autonomous System.
        raise BGPError(2, 2, b"", "peer AS 0")
    if hold == 1 or hold == 2:
        # RFC 4271 §6.2: a hold time of one or two seconds is unacceptable.
        raise BGPError(2, 6, b"", "hold time %d" % hold)
    if bgp_id == 0:
        # RFC 6286 §2.2: any non-zero 32-bit value is a valid identifier.
        raise BGPError(2, 3, b"", "BGP identifier is zero")
    cdef Py_ssize_t optlen = p[9]
    cdef Py_ssize_t pos = 10
    cdef bint extended = False
    if n > 10 and optlen == 255 and p[10] == 255:
        # RFC 9072 §2: type 255 marks the 2-octet length encoding.
        if n < 13:
            raise BGPError(2, 0, b"", "truncated extended optional parameters length")
        optlen = (p[11] << 8) | p[12]
        pos = 13
        extended = True
    if pos + optlen != n:
        raise BGPError(2, 0, b"", "optional parameters length %d does not match the message" % optlen)
    cdef list caps = []
    cdef Py_ssize_t hl = 3 if extended else 2
    cdef Py_ssize_t plen, end, clen
    cdef int ptype, code
    while pos < n:
        if n - pos < hl:
            raise BGPError(2, 0, b"", "truncated optional parameter")
        ptype = p[pos]
        plen = ((p[pos + 1] << 8) | p[pos + 2]) if extended else p[pos + 1]
        pos += hl
        if pos + plen > n:
            raise BGPError(2, 0, b"", "optional parameter overruns the message")
        if ptype == 2:
            end = pos + plen
            while pos < end:
                if end - pos < 2:
                    raise BGPError(2, 0, b"", "truncated capability")
                code = p[pos]
                clen = p[pos + 1]
                pos += 2
                if pos + clen > end:
                    raise BGPError(2, 0, b"", "capability %d overruns its parameter" % code)
                caps.append((code, _slice(p, pos, pos + clen)))
                pos += clen
        else:
            # RFC 5492 §4 / RFC 4271 §6.2: only capabilities are supported.
            raise BGPError(2, 4, b"", "unsupported optional parameter %d" % ptype)
    return ParsedOpen(version, asn, hold, bgp_id, tuple(caps), (), extended)


def build_open(asn, hold_time, bgp_id, capabilities=()):
    """An OPEN message; ``asn`` above 65535 goes out as AS_TRANS (RFC 6793 §3)."""
    cdef unsigned long my_as = asn if asn <= 0xFFFF else 23456
    cdef bytearray caps = bytearray()
    for code, value in capabilities:
        if len(value) > 255:
            raise ValueError("capability %d value is longer than 255 octets" % code)
        caps.append(code)
        caps.append(len(value))
        caps += value
    cdef bytes params, opt
    if len(caps) + 2 <= 255:
        params = bytes((2, len(caps))) + caps if caps else b""
        opt = bytes((len(params),)) + params
    else:
        # RFC 9072 §2: too long for one octet of length.
        params = bytes((2, len(caps) >> 8, len(caps) & 0xFF)) + caps
        opt = bytes((255, 255, len(params) >> 8, len(params) & 0xFF)) + params
    body = bytes((4, my_as >> 8, my_as & 0xFF, hold_time >> 8, hold_time & 0xFF)) + bgp_id.to_bytes(4, "big") + opt
    return frame(1, body)


# ---------------------------------------------------------------- NOTIFICATION, ROUTE-REFRESH

def parse_notification(body):
    cdef bytes b = _bytes(body)
    if PyBytes_GET_SIZE(b) < 2:
        raise BGPError(1, 2, _u16(PyBytes_GET_SIZE(b) + HEADER_LEN), "NOTIFICATION shorter than 21 octets")
    return b[0], b[1], b[2:]


def build_notification(int code, int subcode, data=b""):
    return frame(3, bytes((code, subcode)) + _bytes(data))


def parse_route_refresh(body):
    """(afi, subtype, safi); RFC 7313 §5: a body of other than 4 octets is a
    ROUTE-REFRESH Message Error carrying the whole message."""
    cdef bytes b = _bytes(body)
    if PyBytes_GET_SIZE(b) != 4:
        raise BGPError(7, 1, frame(5, b), "ROUTE-REFRESH body of %d octets" % PyBytes_GET_SIZE(b))
    return (b[0] << 8) | b[1], b[2], b[3]


def build_route_refresh(int afi, int safi, int subtype=0):
    return frame(5, bytes((afi >> 8, afi & 0xFF, subtype, safi)))


# ---------------------------------------------------------------- attribute blocks
# The C twins of fastbgp.wire.as4's attr_spans, split_attrs and
# decode_segments (the pure-Python versions, which _codec_py exports): the
# same results on any bytes, the same IndexError where they read past the
# end (callers reading unvalidated bytes catch it), the same silent clipping
# where a length points past it.  Each new attribute set is split and its
# AS_PATH decoded by import checks, policy, RFC 6811 and the RIB's record.

cdef Py_ssize_t attr_end(const unsigned char *p, Py_ssize_t size, Py_ssize_t i, Py_ssize_t *vs) except -1:
    """Value start (``vs``) and end of the attribute at ``i`` (< its
    bound); IndexError where as4.attr_spans would index past ``size``.
    Declared in _codec.pxd: the compiled RIB frames attributes with it."""
    if i + 1 >= size:
        raise IndexError("index out of range")
    if p[i] & 0x10:  # RFC 4271 §4.3 Extended Length
        if i + 3 >= size:
            raise IndexError("index out of range")
        vs[0] = i + 4
        return i + 4 + ((<Py_ssize_t>p[i + 2] << 8) | p[i + 3])
    if i + 2 >= size:
        raise IndexError("index out of range")
    vs[0] = i + 3
    return i + 3 + p[i + 2]


def attr_spans(block, Py_ssize_t start=0, end=None):
    """as4.attr_spans: [(flags, type, value start, value end, attribute
    start)] of the attributes in ``block[start:end]``."""
    if start < 0 or (end is not None and end < 0):
        return as4.attr_spans(block, start, end)  # negative indexes wrap there
    cdef bytes b = _bytes(block)
    cdef const unsigned char *p = <const unsigned char *>PyBytes_AS_STRING(b)
    cdef Py_ssize_t size = PyBytes_GET_SIZE(b)
    cdef Py_ssize_t n = size if end is None else <Py_ssize_t>end
    cdef Py_ssize_t i = start, vs = 0, ve
    out = []
    while i < n:
        ve = attr_end(p, size, i, &vs)
        out.append((p[i], p[i + 1], vs, ve, i))
        i = ve
    return out


def split_attrs(block):
    """as4.split_attrs: [(flags, type, value)] of an attribute block."""
    cdef bytes b = _bytes(block)
    cdef const unsigned char *p = <const unsigned char *>PyBytes_AS_STRING(b)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(b)
    cdef Py_ssize_t i = 0, vs = 0, ve, a, e
    out = []
    while i < n:
        ve = attr_end(p, n, i, &vs)
        a = vs if vs < n else n
        e = ve if ve < n else n
        out.append((p[i], p[i + 1], PyBytes_FromStringAndSize(<const char *>p + a, e - a)))
        i = ve
    return out


cdef Py_ssize_t segment_at(const unsigned char *p, Py_ssize_t n, Py_ssize_t i, int *st, int *cnt) except -1:
    """The AS_PATH segment header at ``i`` (< ``n``): its type and ASN
    count, and where its ASNs start; IndexError where as4.decode_segments
    would index past ``n``.  Declared in _codec.pxd."""
    if i + 1 >= n:
        raise IndexError("index out of range")
    st[0] = p[i]
    cnt[0] = p[i + 1]
    return i + 2


cdef unsigned long long asn_at(const unsigned char *p, Py_ssize_t a, Py_ssize_t n, int width) noexcept:
    """The ``width``-octet ASN at ``a``; one cut short by ``n`` reads what
    is there (as int.from_bytes of a clipped slice does), 0 when nothing is.
    Declared in _codec.pxd."""
    cdef Py_ssize_t e = a + width, j
    cdef unsigned long long v = 0
    if e > n:
        e = n
    for j in range(a, e):
        v = (v << 8) | p[j]
    return v


def decode_segments(value, int width):
    """as4.decode_segments: [(segment type, [asn, ...])] of an AS_PATH /
    AS4_PATH value with ``width``-octet ASNs."""
    if not 1 <= width <= 8:
        return as4.decode_segments(value, width)
    cdef bytes b = _bytes(value)
    cdef const unsigned char *p = <const unsigned char *>PyBytes_AS_STRING(b)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(b)
    cdef Py_ssize_t i = 0
    cdef int st, cnt, k
    segs = []
    while i < n:
        i = segment_at(p, n, i, &st, &cnt)
        asns = [asn_at(p, i + k * width, n, width) for k in range(cnt)]
        i += cnt * width
        segs.append((st, asns))
    return segs


cdef int first_attr(const unsigned char *p, Py_ssize_t size, int t, Py_ssize_t *a, Py_ssize_t *n) except -2:
    """The flags of the block's first attribute of type ``t`` and the span
    [a, n) of its value (clipped to the block, as a slice would be), or -1
    when it has none; every attribute is framed, so IndexError where
    as4.attr_spans (and attr_values) would index past ``size``."""
    cdef Py_ssize_t i = 0, vs = 0, ve
    cdef int flags = -1
    while i < size:
        ve = attr_end(p, size, i, &vs)
        if p[i + 1] == t and flags < 0:
            a[0] = vs if vs < size else size
            n[0] = ve if ve < size else size
            flags = p[i]
        i = ve
    return flags


def final_segment(block):
    """as4.final_segment: (segment type, last ASN) of the last non-empty
    segment of the first AS_PATH, or None; no list is built (the RFC 6811
    origin of every new attribute set at import)."""
    cdef bytes b = _bytes(block)
    cdef const unsigned char *p = <const unsigned char *>PyBytes_AS_STRING(b)
    cdef Py_ssize_t size = PyBytes_GET_SIZE(b)
    cdef Py_ssize_t i, a, n
    cdef int st, cnt, last_st = -1
    cdef unsigned long long last = 0
    if first_attr(p, size, 2, &a, &n) < 0:  # ATTR_AS_PATH
        return None
    i = a
    while i < n:
        i = segment_at(p, n, i, &st, &cnt)
        if cnt:
            last = asn_at(p, i + (cnt - 1) * 4, n, 4)
            last_st = st
        i += cnt * 4
    if last_st < 0:
        return None
    return (last_st, last)


cdef enum:
    _HAS_MAX = 8  # ASNs path_has compares in C; more go to the twin


def path_has(block, tuple asns):
    """as4.path_has: PATH_LOOP when the first AS_PATH holds one of
    ``asns``, else PATH_CONFED when it has a confederation segment, else
    PATH_PLAIN; no list is built (every new attribute set at import)."""
    cdef Py_ssize_t na = len(asns), k
    if na > _HAS_MAX:
        return as4.path_has(block, asns)
    cdef unsigned long long want[_HAS_MAX]
    for k in range(na):
        v = asns[k]
        if type(v) is not int or not 0 <= v <= 0xFFFFFFFF:
            return as4.path_has(block, asns)  # no 4-octet ASN is that: the twin says what it gives
        want[k] = v
    cdef bytes b = _bytes(block)
    cdef const unsigned char *p = <const unsigned char *>PyBytes_AS_STRING(b)
    cdef Py_ssize_t size = PyBytes_GET_SIZE(b)
    cdef Py_ssize_t i, a, n, j
    cdef int st, cnt
    cdef bint loop = False, confed = False
    cdef unsigned long long asn
    if first_attr(p, size, 2, &a, &n) < 0:  # ATTR_AS_PATH
        return as4.PATH_PLAIN
    i = a
    while i < n:  # every segment read before answering, as decode_segments does
        i = segment_at(p, n, i, &st, &cnt)
        if st == 3 or st == 4:  # RFC 5065 AS_CONFED_SEQUENCE, AS_CONFED_SET
            confed = True
        for j in range(cnt):
            asn = asn_at(p, i + j * 4, n, 4)
            for k in range(na):
                if asn == want[k]:
                    loop = True
        i += cnt * 4
    if loop:
        return as4.PATH_LOOP
    return as4.PATH_CONFED if confed else as4.PATH_PLAIN


cdef enum:
    _VALUES_MAX = 16  # types attr_values looks for in C; more go to the twin


def attr_values(block, tuple types):
    """as4.attr_values: the value of the first attribute of each type in
    ``types``, None for a type the block lacks (one walk, no list of every
    attribute)."""
    cdef Py_ssize_t nt = len(types), k
    if nt > _VALUES_MAX:
        return as4.attr_values(block, types)
    cdef int want[_VALUES_MAX]
    for k in range(nt):
        t = types[k]
        if type(t) is not int or not 0 <= t <= 255:
            return as4.attr_values(block, types)  # a type no attribute can have: the twin says what that gives
        want[k] = t
    cdef bytes b = _bytes(block)
    cdef const unsigned char *p = <const unsigned char *>PyBytes_AS_STRING(b)
    cdef Py_ssize_t size = PyBytes_GET_SIZE(b)
    cdef Py_ssize_t i = 0, vs = 0, ve, a, e
    out = [None] * nt
    while i < size:  # every attribute framed, as attr_spans does
        ve = attr_end(p, size, i, &vs)
        for k in range(nt):
            if want[k] == p[i + 1]:
                if out[k] is None:
                    a = vs if vs < size else size
                    e = ve if ve < size else size
                    out[k] = PyBytes_FromStringAndSize(<const char *>p + a, e - a)
                break  # the first of equal types, as types.index finds it
        i = ve
    return tuple(out)


# Beyond this many members the twin's dict dedupes (linear) instead of the
# pairwise comparison below: a hostile list of thousands costs no more than
# in Python.
cdef enum:
    _MEMBERS_PAIRWISE = 64


def add_members(value, add, int width):
    """as4.add_members: the members of ``value`` then those of ``add`` it
    lacks, each once, in order (a policy's community "add")."""
    cdef bytes v = _bytes(value), a = _bytes(add)
    if width < 1 or width > 16:
        return as4.add_members(v, a, width)
    cdef Py_ssize_t nv = PyBytes_GET_SIZE(v) // width, na = PyBytes_GET_SIZE(a) // width
    if nv + na > _MEMBERS_PAIRWISE:
        return as4.add_members(v, a, width)
    cdef unsigned char out[_MEMBERS_PAIRWISE * 16]
    cdef const unsigned char *src
    cdef Py_ssize_t k, j, count = 0
    for k in range(nv + na):
        src = <const unsigned char *>PyBytes_AS_STRING(v) + k * width if k < nv else \
            <const unsigned char *>PyBytes_AS_STRING(a) + (k - nv) * width
        for j in range(count):
            if memcmp(out + j * width, src, width) == 0:
                break
        else:
            memcpy(out + count * width, src, width)
            count += 1
    return PyBytes_FromStringAndSize(<const char *>out, count * width)


def replay_edits(block, edits):
    """as4.replay_edits: ``block`` after an import policy's edits (None
    when only its actions can say).  Once per attribute set and import
    chain (the policy engine's plans), with one scan per edit."""
    cdef bytes out = _bytes(block)
    cdef const unsigned char *p
    cdef Py_ssize_t cs = 0, ce = 0, n
    cdef int t, flags, got
    cdef object cur, new
    for e in edits:
        t = e[0]
        flags = _WELL_KNOWN_FLAGS[t]  # first, as in the twin (a KeyError for a type without)
        # Every attribute framed, as as4.attr_spans frames the whole block.
        p = <const unsigned char *>PyBytes_AS_STRING(out)
        got = first_attr(p, PyBytes_GET_SIZE(out), t, &cs, &ce)
        cur = None
        if got >= 0:
            flags = got
            cur = out[cs:ce]
        if len(e) == 2:
            new = e[1]
        elif cur:
            if len(cur) % e[2]:
                return None
            new = add_members(cur, e[1], e[2])
        else:
            new = e[3]
            if not new:
                return None  # what removing the attribute would take
        # as4.encode_attr (Extended Length bit cleared first, set again
        # for a value over 255 octets) spliced in: one new block, built in
        # place (once per attribute set and chain, but a table brings tens
        # of thousands of sets).
        out = _splice_value(out, t, flags & ~0x10, _bytes(new))
        if out is None:
            return None
    return block if out == block else out


cdef int _splice_span(bytes b, int type_code, Py_ssize_t *start, Py_ssize_t *stop) except -2:
    """Where attribute ``type_code`` sits in ``b`` (``start``..``stop``,
    an empty span where it would be inserted in type order): 0, or -1
    when the types are not strictly increasing; IndexError as
    as4.attr_spans, every attribute being framed before any verdict."""
    cdef const unsigned char *p = <const unsigned char *>PyBytes_AS_STRING(b)
    cdef Py_ssize_t size = PyBytes_GET_SIZE(b)
    cdef Py_ssize_t i = 0, vs = 0, ve
    cdef int prev = -1
    cdef bint found = False, unsorted = False
    start[0] = stop[0] = size
    while i < size:
        ve = attr_end(p, size, i, &vs)
        if p[i + 1] <= prev:
            unsorted = True
        prev = p[i + 1]
        if not found and p[i + 1] >= type_code:
            found = True
            start[0] = i
            stop[0] = ve if p[i + 1] == type_code else i
        i = ve
    if unsorted:
        return -1
    if stop[0] > size:
        stop[0] = size  # a length past the end: the slice clips, as in the twin
    return 0


cdef object _splice_value(bytes b, int t, int flags, bytes value):
    """splice_attr(b, t, as4.encode_attr(flags, t, value)) with
    ``flags`` lacking the Extended Length bit, in one allocation."""
    cdef Py_ssize_t start, stop, n = PyBytes_GET_SIZE(value), h = 4 if n > 255 else 3
    if n > 0xFFFF:
        raise ValueError("bytes must be in range(0, 256)")  # as encode_attr's length octets
    if _splice_span(b, t, &start, &stop) < 0:
        return None
    cdef const char *p = PyBytes_AS_STRING(b)
    cdef Py_ssize_t size = PyBytes_GET_SIZE(b)
    cdef bytes out = PyBytes_FromStringAndSize(NULL, start + h + n + size - stop)
    cdef unsigned char *o = <unsigned char *>PyBytes_AS_STRING(out)
    memcpy(o, p, start)
    o += start
    if h == 4:  # RFC 4271 §4.3 Extended Length
        o[0] = <unsigned char>(flags | 0x10)
        o[2] = <unsigned char>(n >> 8)
        o[3] = <unsigned char>(n & 0xFF)
    else:
        o[0] = <unsigned char>flags
        o[2] = <unsigned char>n
    o[1] = <unsigned char>t
    memcpy(o + h, PyBytes_AS_STRING(value), n)
    memcpy(o + h + n, p + stop, size - stop)
    return out


def splice_attr(block, int type_code, encoded):
    """as4.splice_attr: ``block`` with attribute ``type_code`` replaced,
    inserted in type order or (``encoded`` b"") removed; None when the
    types are not strictly increasing."""
    cdef bytes b = _bytes(block), e = _bytes(encoded)
    cdef Py_ssize_t start, stop
    if _splice_span(b, type_code, &start, &stop) < 0:
        return None
    return b[:start] + e + b[stop:]


# ---------------------------------------------------------------- prefixes

def count_prefixes(packed, int afi=1, bint addpath=False):
    """Prefix count of a packed NLRI field; ValueError when malformed."""
    cdef bytes b = _bytes(packed)
    cdef Py_ssize_t c = nlri_count(<const unsigned char *>PyBytes_AS_STRING(b), 0, PyBytes_GET_SIZE(b),
                                   32 if afi == 1 else (128 if afi == 2 else 0), addpath)
    if c < 0:
        raise ValueError("malformed NLRI")
    return c


cdef inline int _copy_prefix(const unsigned char *p, Py_ssize_t pos, unsigned char *addr, int width) noexcept:
    """The address of the prefix whose length octet is p[pos] into
    ``addr`` (``width`` octets, zero-filled); returns the length.  The
    field was checked whole (count_prefixes) before."""
    cdef int plen = p[pos]
    cdef int nb = (plen + 7) >> 3
    memset(addr, 0, width)
    memcpy(addr, p + pos + 1, nb)
    if plen & 7:
        # RFC 4271 §4.3: trailing bits past the length are irrelevant.
        addr[nb - 1] &= (0xFF << (8 - (plen & 7))) & 0xFF
    return plen


@cython.boundscheck(False)
@cython.wraparound(False)
def unpack_prefixes(packed, int afi=1, bint addpath=False):
    """[(path_id, address bytes (4 or 16, host bits cleared), length)] --
    one tuple per prefix, for the API and tests, not the hot path."""
    cdef bytes b = _bytes(packed)
    count_prefixes(b, afi, addpath)
    cdef const unsigned char *p = <const unsigned char *>PyBytes_AS_STRING(b)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(b)
    cdef int width = 4 if afi == 1 else 16
    cdef unsigned char addr[16]
    cdef Py_ssize_t pos = 0
    cdef unsigned long pid
    cdef int plen, nb
    cdef list out = []
    while pos < n:
        pid = 0
        if addpath:
            pid = (<unsigned long>p[pos] << 24) | (p[pos + 1] << 16) | (p[pos + 2] << 8) | p[pos + 3]
            pos += 4
        plen = _copy_prefix(p, pos, addr, 16)
        out.append((pid, PyBytes_FromStringAndSize(<char *>addr, width), plen))
        pos += 1 + ((plen + 7) >> 3)
    return out


@cython.boundscheck(False)
@cython.wraparound(False)
def prefix_texts(packed, int afi=1):
    """The prefixes of a packed NLRI field without path ids as texts
    ("192.0.2.0/24", "2001:db8::/32": host bits cleared as in
    unpack_prefixes, IPv6 in RFC 5952 form as ``ipaddress`` writes it);
    ValueError when malformed.  IPv4 is written here in C (a full table's
    JSON for ExaBGP programs is mostly this); IPv6 by ``ipaddress``, as the
    twin does."""
    cdef bytes b = _bytes(packed)
    if afi != 1:
        return ["%s/%d" % (_ipaddress.IPv6Address(a).compressed, n) for _i, a, n in unpack_prefixes(b, afi, False)]
    count_prefixes(b, 1, False)
    cdef const unsigned char *p = <const unsigned char *>PyBytes_AS_STRING(b)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(b)
    cdef unsigned char addr[4]
    cdef char text[24]
    cdef Py_ssize_t pos = 0
    cdef int plen, nb, k
    cdef list out = []
    while pos < n:
        plen = _copy_prefix(p, pos, addr, 4)
        k = snprintf(text, 24, "%d.%d.%d.%d/%d", addr[0], addr[1], addr[2], addr[3], plen)
        out.append(PyUnicode_DecodeASCII(text, k, NULL))
        pos += 1 + ((plen + 7) >> 3)
    return out


def pack_prefixes(prefixes, bint addpath=False):
    """Inverse of unpack_prefixes: [(path_id, address bytes, length)] -> packed."""
    cdef bytearray out = bytearray()
    cdef int plen
    for pid, addr, plen in prefixes:
        if addpath:
            out += (<unsigned long>pid).to_bytes(4, "big")
        out.append(plen)
        out += addr[: (plen + 7) >> 3]
    return bytes(out)


# ---------------------------------------------------------------- UPDATE decode

cdef class _State:
    """One UPDATE being parsed: the session's view of it (context and
    error policy), the errors so far, and what the attribute walk found."""

    cdef bint strict, lenient, as4, ebgp
    cdef object addpath_rx
    cdef list errors
    cdef int action
    cdef object mp_reach, mp_unreach, next_hop
    cdef Py_ssize_t n_ann, n_wd  # prefixes announced / withdrawn, MP_* included

    cdef record(self, err):
        """Record one attribute error; raise when it resets the session (or
        always, in strict mode)."""
        if self.strict or err.action >= A_AFISAFI:
            raise err
        self.errors.append(err)
        if err.action > self.action:
            self.action = err.action


# The attributes kept for the canonical block, as spans of the body (a type
# is kept at most once, so 256 spans suffice).  It lives on parse_update's
# stack: no allocation per UPDATE.
cdef struct _Kept:
    Py_ssize_t ks[256]
    Py_ssize_t ke[256]
    int n
    bint dirty  # something was dropped: the received block is not canonical
    unsigned char seen[256]  # type codes met, for RFC 7606 §3 g repeats


@cython.boundscheck(False)
@cython.wraparound(False)
cdef bint _as_path_ok(const unsigned char *v, Py_ssize_t n, int width) noexcept nogil:
    cdef Py_ssize_t i = 0, k, end
    cdef int st, cnt
    while i < n:
        if n - i < 2:
            return False
        st = v[i]
        cnt = v[i + 1]
        # RFC 7606 §7.2: unknown segment type or a zero-length segment.
        if st < 1 or st > 4 or cnt == 0:
            return False
        end = i + 2 + cnt * width
        if end > n:
            return False
        # RFC 7607 §2: AS 0 anywhere in the path makes it malformed.
        k = i + 2
        while k < end:
            if v[k] == 0 and v[k + 1] == 0 and (width == 2 or (v[k + 2] == 0 and v[k + 3] == 0)):
                return False
            k += width
        i = end
    return i == n


cdef object _validate(int t, const unsigned char *v, Py_ssize_t n, bint as4_ctx):
    """None if the value of known attribute ``t`` is well formed, else
    (subcode, reason)."""
    if t == 1:
        if n != 1:
            return 5, "ORIGIN length %d" % n
        if v[0] > 2:
            return 6, "ORIGIN value %d" % v[0]
    elif t == 2:
        if not _as_path_ok(v, n, 4 if as4_ctx else 2):
            return 11, "malformed AS_PATH"
    elif t == 17:
        if n < 6 or not _as_path_ok(v, n, 4):
            return 9, "malformed AS4_PATH"
    elif t == 3:
        if n != 4:
            return 5, "NEXT_HOP length %d" % n
        # RFC 4271 §6.3: not a valid host address -- 0.0.0.0/8, 224/4
        # multicast, 240/4 class E, 255.255.255.255 (127/8 accepted on
        # receipt: loopback sessions carry it; see the twin).
        if v[0] == 0 or v[0] >= 224:
            return 8, "NEXT_HOP %d.%d.%d.%d is not a host address" % (v[0], v[1], v[2], v[3])
    elif t == 4 or t == 5 or t == 9 or t == 35:
        if n != 4:
            return 5, "attribute %d length %d" % (t, n)
    elif t == 6:
        if n != 0:
            return 5, "ATOMIC_AGGREGATE length %d" % n
    elif t == 7:
        if n != (8 if as4_ctx else 6):
            return 5, "AGGREGATOR length %d" % n
        if v[0] == 0 and v[1] == 0 and (n == 6 or (v[2] == 0 and v[3] == 0)):
            return 9, "AGGREGATOR AS 0"  # RFC 7607 §2
    elif t == 18:
        if n != 8:
            return 5, "AS4_AGGREGATOR length %d" % n
        if v[0] == 0 and v[1] == 0 and v[2] == 0 and v[3] == 0:
            return 9, "AS4_AGGREGATOR AS 0"  # RFC 7607 §2
    elif t == 8 or t == 10:
        if n == 0 or n & 3:
            return 5, "attribute %d length %d" % (t, n)
    elif t == 16:
        if n == 0 or n & 7:
            return 5, "EXTENDED_COMMUNITIES length %d" % n
    elif t == 32:
        if n == 0 or n % 12:
            return 5, "LARGE_COMMUNITY length %d" % n
    return None


cdef _overrun(_State state, const unsigned char *p, Py_ssize_t pos, Py_ssize_t a1):
    # RFC 7606 §4: treat-as-withdraw -- unless the truncated attribute is an
    # MP_* whose NLRI we then cannot see (§3 j); §5.2 is applied at the end.
    if a1 - pos >= 2 and (p[pos + 1] == 14 or p[pos + 1] == 15):
        raise BGPError(3, 1, b"", "MP attribute overruns the attribute block", A_RESET, p[pos + 1])
    state.record(BGPError(3, 1, b"", "attribute overruns the attribute block", A_WITHDRAW))


@cython.boundscheck(False)
@cython.wraparound(False)
def parse_update(body, ctx=DEFAULT_CONTEXT, bint strict=False, bint lenient=False):
    """Validate one UPDATE body and split it (see ParsedUpdate).

    Errors whose RFC 7606 action is session reset or AFI/SAFI disable raise
    BGPError; attribute-discard and treat-as-withdraw are applied and listed
    in ``errors`` -- unless ``strict``, where the first error raises.
    ``lenient`` is for inspecting captures only (see the twin).
    """
    cdef bytes b = _bytes(body)
    cdef const unsigned char *p = <const unsigned char *>PyBytes_AS_STRING(b)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(b)
    if n < 4:
        raise BGPError(3, 1, b"", "UPDATE shorter than 23 octets")
    cdef Py_ssize_t wlen = (p[0] << 8) | p[1]
    if 4 + wlen > n:
        # RFC 4271 §6.3: lengths that do not add up -> Malformed Attribute List.
        raise BGPError(3, 1, b"", "withdrawn routes length %d overruns the message" % wlen)
    cdef Py_ssize_t alen = (p[2 + wlen] << 8) | p[3 + wlen]
    cdef Py_ssize_t a0 = 4 + wlen
    cdef Py_ssize_t a1 = a0 + alen
    if a1 > n:
        raise BGPError(3, 1, b"", "total path attribute length %d overruns the message" % alen)
    cdef _State state = _State.__new__(_State)
    state.addpath_rx = ctx.addpath_rx
    cdef bint v4_addpath = bool(state.addpath_rx) and (1, 1) in state.addpath_rx
    state.n_wd = nlri_count(p, 2, 2 + wlen, 32, v4_addpath)
    if state.n_wd < 0:
        # RFC 7606 §5.3: unparseable withdrawn routes -> session reset.
        raise BGPError(3, 10, b"", "malformed withdrawn routes")
    state.n_ann = nlri_count(p, a1, n, 32, v4_addpath)
    if state.n_ann < 0:
        raise BGPError(3, 10, b"", "malformed NLRI")
    state.strict = strict
    state.lenient = lenient
    state.as4 = ctx.as4
    state.ebgp = ctx.ebgp
    state.errors = []
    state.action = A_NONE
    state.next_hop = b""
    cdef _Kept kept
    kept.n = 0
    kept.dirty = False
    memset(kept.seen, 0, 256)
    _scan_attrs(state, p, a0, a1, &kept)
    if state.n_ann and state.action != A_WITHDRAW:
        _require_mandatory(state, &kept, a1 < n)

    cdef bytes withdrawn = _slice(p, 2, 2 + wlen)
    cdef bytes nlri = _slice(p, a1, n)
    if state.action == A_WITHDRAW:
        if state.n_ann == 0 and (state.mp_reach is None or not state.mp_reach[3]):
            # RFC 7606 §5.2: attributes without reachable NLRI -- any error
            # stronger than attribute discard resets the session.
            for e in state.errors:
                if e.action == A_WITHDRAW:
                    raise BGPError(e.code, e.subcode, e.data, e.reason, A_RESET, e.attr_type)
        return _as_withdraw(withdrawn, nlri, state.mp_reach, state.mp_unreach, state.n_ann, state.n_wd, state)
    return ParsedUpdate(withdrawn, _canonical_attrs(state, p, a0, a1, &kept), nlri, state.next_hop,
                        state.mp_reach, state.mp_unreach, state.n_ann, state.n_wd, state.action,
                        tuple(state.errors))


@cython.boundscheck(False)
@cython.wraparound(False)
cdef int _scan_attrs(_State state, const unsigned char *p, Py_ssize_t a0, Py_ssize_t a1,
                     _Kept *kept) except -1:
    """Walk the attribute block p[a0:a1]: frame and check each attribute
    (RFC 4271 §6.3, RFC 7606 §3) and record in ``kept`` what the canonical
    block keeps; MP_* and NEXT_HOP are taken into ``state``.  Every
    attribute dropped makes the block dirty.  One loop, no call per
    attribute: this runs for every attribute of every UPDATE."""
    cdef Py_ssize_t pos = a0
    cdef Py_ssize_t start, ln, vs, ve, c
    cdef int flags, t, expected, action, sub
    while pos < a1:
        start = pos
        if a1 - pos < 3 or (p[pos] & 0x10 and a1 - pos < 4):
            _overrun(state, p, pos, a1)
            kept.dirty = True
            return 0
        flags = p[pos]
        t = p[pos + 1]
        if flags & 0x10:
            ln = (p[pos + 2] << 8) | p[pos + 3]
            vs = pos + 4
        else:
            ln = p[pos + 2]
            vs = pos + 3
        ve = vs + ln
        if ve > a1:
            _overrun(state, p, pos, a1)
            kept.dirty = True
            return 0
        pos = ve
        if kept.seen[t]:
            if t == 14 or t == 15:
                # RFC 7606 §3 g: repeated MP_* leaves the NLRI ambiguous.
                raise BGPError(3, 1, b"", "repeated attribute %d" % t, A_RESET, t)
            # RFC 7606 §3 g: other repeats -> keep the first, discard the rest.
            state.record(BGPError(3, 1, b"", "repeated attribute %d" % t, A_DISCARD, t))
            kept.dirty = True
            continue
        kept.seen[t] = 1
        if state.ebgp and (t == 5 or t == 9 or t == 10):
            kept.dirty = True  # RFC 7606 §7.5, §7.9, §7.10: discarded from an external peer.
            continue
        expected = _expected_flags(t)
        if expected < 0:
            if not flags & 0x80 and not state.lenient:
                # RFC 4271 §6.3: unrecognized well-known attribute.
                raise BGPError(3, 2, _slice(p, start, ve), "unrecognized well-known attribute %d" % t, A_RESET, t)
            if not flags & 0x40 and not state.lenient:
                kept.dirty = True  # RFC 4271 §5: unrecognized non-transitive: quietly ignored.
                continue
        elif (flags & 0xC0) != expected:
            # RFC 7606 §3 c: wrong Optional/Transitive bits = malformed.
            action = _malformed_action(t)
            if t == 14 or t == 15:
                raise BGPError(3, 4, _slice(p, start, ve), "attribute %d flags 0x%02x" % (t, flags), action, t)
            state.record(BGPError(3, 4, _slice(p, start, ve), "attribute %d flags 0x%02x" % (t, flags), action, t))
            kept.dirty = True
            continue
        elif t == 14:
            state.mp_reach, c = _mp_reach(p + vs, ln, state.addpath_rx, state.lenient, _slice(p, start, ve))
            state.n_ann += c
            if c and not state.lenient:
                why = _mp_next_hop_bad(p + vs + 4, p[vs + 3])
                if why is not None:
                    state.record(BGPError(3, 8, _slice(p, start, ve), why, A_WITHDRAW, t))
            kept.dirty = True
            continue
        elif t == 15:
            state.mp_unreach, c = _mp_unreach(p + vs, ln, state.addpath_rx, _slice(p, start, ve))
            state.n_wd += c
            kept.dirty = True
            continue
        else:
            bad = _validate(t, p + vs, ln, state.as4)
            if bad is not None:
                sub = bad[0]
                state.record(BGPError(3, sub, b"" if sub == 11 else _slice(p, start, ve), bad[1], _malformed_action(t), t))
                kept.dirty = True
                continue
            if state.as4 and (t == 17 or t == 18):
                kept.dirty = True  # RFC 6793 §3: a 4-octet speaker ignores AS4_* from a 4-octet peer.
                continue
            if t == 3:
                state.next_hop = _slice(p, vs, ve)
        kept.ks[kept.n] = start
        kept.ke[kept.n] = ve
        kept.n += 1
    return 0


cdef int _require_mandatory(_State state, _Kept *kept, bint classic_nlri) except -1:
    """RFC 4271 §6.3 / RFC 7606 §3 d: mandatory attributes for reachability
    (NEXT_HOP only matters for IPv4 NLRI in the classic field)."""
    cdef int t
    for t in range(1, 4):  # ORIGIN, AS_PATH, NEXT_HOP
        if t == 3 and not classic_nlri:
            continue
        if not kept.seen[t]:
            state.record(BGPError(3, 3, bytes((t,)), "missing well-known attribute %d" % t, A_WITHDRAW, t))
            return 0
    return 0


@cython.boundscheck(False)
@cython.wraparound(False)
cdef bytes _canonical_attrs(_State state, const unsigned char *p, Py_ssize_t a0, Py_ssize_t a1,
                            _Kept *kept):
    """The canonical attribute block: 4-octet AS numbers, only the kept
    attributes; the received block itself when nothing was dropped."""
    cdef bytes attrs
    cdef Py_ssize_t total, k
    cdef unsigned char *o
    cdef bint has_as4 = False
    if not state.as4:
        for k in range(kept.n):
            if p[kept.ks[k] + 1] == 17 or p[kept.ks[k] + 1] == 18:
                has_as4 = True
        if not has_as4:
            # Nothing to merge (RFC 6793 §4.2.3 needs AS4_*): widening the
            # 2-octet AS numbers is all there is, done here in C because old
            # peers and old MRT dumps send nothing else.
            return _widen(p, kept.ks, kept.ke, kept.n)
    if not kept.dirty and state.as4:
        return _slice(p, a0, a1)
    total = 0
    for k in range(kept.n):
        total += kept.ke[k] - kept.ks[k]
    attrs = PyBytes_FromStringAndSize(NULL, total)
    o = <unsigned char *>PyBytes_AS_STRING(attrs)
    for k in range(kept.n):
        memcpy(o, p + kept.ks[k], kept.ke[k] - kept.ks[k])
        o += kept.ke[k] - kept.ks[k]
    if not state.as4 and (kept.seen[2] or kept.seen[7]):
        merged, _notes = as4.merge_from_2octet(as4.split_attrs(attrs))
        attrs = b"".join([as4.encode_attr(f, tt, v) for f, tt, v in merged])
    return attrs


@cython.boundscheck(False)
@cython.wraparound(False)
cdef bytes _widen(const unsigned char *p, Py_ssize_t *ks, Py_ssize_t *ke, int nkeep):
    """The kept attributes of a 2-octet-AS UPDATE with AS_PATH and AGGREGATOR
    rewritten with 4-octet AS numbers: exactly what as4.merge_from_2octet
    gives when no AS4_PATH / AS4_AGGREGATOR is present.  Every span was
    validated by parse_update, so segment walks stay inside it."""
    cdef Py_ssize_t total = 0, k, vs, ve, i, vlen
    cdef int t, flags, cnt, j
    cdef unsigned char *o
    # First pass: the widened size of every attribute.
    for k in range(nkeep):
        t = p[ks[k] + 1]
        flags = p[ks[k]]
        vs = ks[k] + (4 if flags & 0x10 else 3)
        if t == 2:
            vlen = 0
            i = vs
            while i < ke[k]:
                cnt = p[i + 1]
                vlen += 2 + 4 * cnt
                i += 2 + 2 * cnt
            total += (4 if (flags & 0x10 or vlen > 255) else 3) + vlen
        elif t == 7:
            total += (4 if flags & 0x10 else 3) + 8
        else:
            total += ke[k] - ks[k]
    cdef bytes out = PyBytes_FromStringAndSize(NULL, total)
    o = <unsigned char *>PyBytes_AS_STRING(out)
    for k in range(nkeep):
        t = p[ks[k] + 1]
        flags = p[ks[k]]
        vs = ks[k] + (4 if flags & 0x10 else 3)
        ve = ke[k]
        if t == 2 or t == 7:
            if t == 2:
                vlen = 0
                i = vs
                while i < ve:
                    cnt = p[i + 1]
                    vlen += 2 + 4 * cnt
                    i += 2 + 2 * cnt
            else:
                vlen = 8
            # Same header rule as as4.encode_attr: Extended Length kept if
            # set, added when the value needs it.
            if flags & 0x10 or vlen > 255:
                o[0] = flags | 0x10
                o[1] = t
                o[2] = (vlen >> 8) & 0xFF
                o[3] = vlen & 0xFF
                o += 4
            else:
                o[0] = flags
                o[1] = t
                o[2] = vlen
                o += 3
            if t == 7:
                o[0] = 0
                o[1] = 0
                memcpy(o + 2, p + vs, 6)
                o += 8
            else:
                i = vs
                while i < ve:
                    cnt = p[i + 1]
                    o[0] = p[i]
                    o[1] = cnt
                    o += 2
                    for j in range(cnt):
                        o[0] = 0
                        o[1] = 0
                        o[2] = p[i + 2 + 2 * j]
                        o[3] = p[i + 3 + 2 * j]
                        o += 4
                    i += 2 + 2 * cnt
        else:
            memcpy(o, p + ks[k], ve - ks[k])
            o += ve - ks[k]
    return out


cdef tuple _mp_reach(const unsigned char *v, Py_ssize_t n, object addpath_rx, bint lenient, bytes data):
    """((afi, safi, next_hop, nlri), count) of an MP_REACH_NLRI value."""
    if n < 5:
        raise BGPError(3, 9, data, "MP_REACH_NLRI of %d octets" % n, A_RESET, 14)
    cdef int afi = (v[0] << 8) | v[1]
    cdef int safi = v[2]
    cdef Py_ssize_t nhlen = v[3]
    if 4 + nhlen + 1 > n:
        raise BGPError(3, 9, data, "MP_REACH_NLRI next hop overruns", A_RESET, 14)
    cdef bytes nh = _slice(v, 4, 4 + nhlen)
    cdef bytes nlri = _slice(v, 5 + nhlen, n)
    cdef Py_ssize_t count = 0
    cdef int bits = _known_bits(afi, safi)
    if bits:
        # RFC 4760 §3, RFC 2545 §3, RFC 8950 §3: next hop lengths we accept.
        if not lenient and not (nhlen == 16 or nhlen == 32 or (afi == 1 and nhlen == 4)):
            raise BGPError(3, 9, data, "MP_REACH_NLRI next hop length %d" % nhlen, A_AFISAFI, 14)
        count = nlri_count(v, 5 + nhlen, n, bits, bool(addpath_rx) and (afi, safi) in addpath_rx)
        if count < 0:
            # RFC 7606 §5.3: NLRI we cannot parse leaves no withdraw option.
            raise BGPError(3, 9, data, "malformed MP_REACH_NLRI prefixes", A_AFISAFI, 14)
    return (afi, safi, nh, nlri), count


cdef object _mp_next_hop_bad(const unsigned char *nh, Py_ssize_t n):
    """Why the next hop of an MP_REACH_NLRI is not a host address, or None
    (the twin's _mp_next_hop_bad has the rules and their RFCs)."""
    cdef Py_ssize_t i
    if n == 4:
        if nh[0] == 0 or nh[0] >= 224:
            return "MP_REACH_NLRI next hop %d.%d.%d.%d is not a host address" % (nh[0], nh[1], nh[2], nh[3])
    elif n == 16 or n == 32:
        if nh[0] == 0xFF:
            return "MP_REACH_NLRI next hop %s is a multicast address" % _ipaddress.IPv6Address(_slice(nh, 0, 16))
        for i in range(n):
            if nh[i]:
                return None
        return "MP_REACH_NLRI next hop is the unspecified address"
    return None


cdef tuple _mp_unreach(const unsigned char *v, Py_ssize_t n, object addpath_rx, bytes data):
    if n < 3:
        raise BGPError(3, 9, data, "MP_UNREACH_NLRI of %d octets" % n, A_RESET, 15)
    cdef int afi = (v[0] << 8) | v[1]
    cdef int safi = v[2]
    cdef bytes nlri = _slice(v, 3, n)
    cdef Py_ssize_t count = 0
    cdef int bits = _known_bits(afi, safi)
    if bits:
        count = nlri_count(v, 3, n, bits, bool(addpath_rx) and (afi, safi) in addpath_rx)
        if count < 0:
            raise BGPError(3, 9, data, "malformed MP_UNREACH_NLRI prefixes", A_AFISAFI, 15)
    return (afi, safi, nlri), count


cdef _as_withdraw(bytes withdrawn, bytes nlri, object mp_reach, object mp_unreach,
                  Py_ssize_t n_ann, Py_ssize_t n_wd, _State state):
    """RFC 7606 §2 treat-as-withdraw: every announced prefix becomes a
    withdrawal and the attributes are dropped."""
    if mp_reach is not None:
        afi, safi, _nh, reach_nlri = mp_reach
        if mp_unreach is None:
            mp_unreach = (afi, safi, reach_nlri)
        elif (mp_unreach[0], mp_unreach[1]) == (afi, safi):
            mp_unreach = (afi, safi, mp_unreach[2] + reach_nlri)
        else:
            # Two families in one UPDATE: a withdrawal of the reach family
            # cannot be expressed beside the other, so reset instead.
            raise BGPError(3, 1, b"", "treat-as-withdraw with MP_REACH and MP_UNREACH of different families", A_RESET)
    return ParsedUpdate(withdrawn + nlri, b"", b"", b"", None, mp_unreach, 0, n_wd + n_ann, A_WITHDRAW,
                        tuple(state.errors))


# ---------------------------------------------------------------- UPDATE encode

cdef list _build(bytes nlri, bint addpath, Py_ssize_t room, bytes prefix, Py_ssize_t pre_len_at,
                 Py_ssize_t pre_len_base, bytes suffix, int mp_len_at, Py_ssize_t mp_len_base):
    """Messages = header + ``prefix`` + run of whole prefixes + ``suffix``,
    fewest messages, each run at most ``room`` octets (greedy fill).

    The 2-octet big-endian field at ``pre_len_at`` inside ``prefix`` (if >= 0)
    gets pre_len_base + run length; the 2-octet field at ``mp_len_at`` (if
    >= 0) gets mp_len_base + run length (an extended-length MP attribute)."""
    cdef const unsigned char *p = <const unsigned char *>PyBytes_AS_STRING(nlri)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(nlri)
    cdef Py_ssize_t plen = PyBytes_GET_SIZE(prefix)
    cdef Py_ssize_t slen = PyBytes_GET_SIZE(suffix)
    cdef Py_ssize_t start = 0, end, run, total, v
    cdef list out = []
    cdef bytes msg
    cdef unsigned char *o
    while start < n:
        end = chunk_end(p, start, n, room, addpath)
        if end < 0:
            raise ValueError("malformed packed prefixes")
        if end == start:
            raise ValueError("a single prefix does not fit in a message")
        run = end - start
        total = HEADER_LEN + plen + run + slen
        msg = PyBytes_FromStringAndSize(NULL, total)
        o = <unsigned char *>PyBytes_AS_STRING(msg)
        memset(o, 0xFF, 16)
        o[16] = (total >> 8) & 0xFF
        o[17] = total & 0xFF
        o[18] = 2
        memcpy(o + HEADER_LEN, PyBytes_AS_STRING(prefix), plen)
        if pre_len_at >= 0:
            v = pre_len_base + run
            o[HEADER_LEN + pre_len_at] = (v >> 8) & 0xFF
            o[HEADER_LEN + pre_len_at + 1] = v & 0xFF
        if mp_len_at >= 0:
            v = mp_len_base + run
            o[HEADER_LEN + mp_len_at] = (v >> 8) & 0xFF
            o[HEADER_LEN + mp_len_at + 1] = v & 0xFF
        memcpy(o + HEADER_LEN + plen, p + start, run)
        memcpy(o + HEADER_LEN + plen + run, PyBytes_AS_STRING(suffix), slen)
        out.append(msg)
        start = end
    return out


def pack_updates(attrs, nlri, ctx=DEFAULT_CONTEXT, int afi=1, int safi=1, next_hop=None):
    """The fewest UPDATEs announcing every prefix of packed ``nlri`` with the
    canonical attribute block ``attrs`` (see the twin for the contract)."""
    cdef bytes a = _bytes(attrs)
    cdef bytes nl = _bytes(nlri)
    if not ctx.as4:
        a = as4.to_2octet(a)
    cdef Py_ssize_t maxlen = ctx.max_message_len
    addpath_tx = ctx.addpath_tx
    cdef bint addpath = bool(addpath_tx) and (afi, safi) in addpath_tx
    cdef Py_ssize_t alen = PyBytes_GET_SIZE(a)
    cdef bytes nh, mp_fixed
    cdef Py_ssize_t room, fixed_len, lead, trail
    if afi == 1 and safi == 1 and next_hop is None:
        room = maxlen - HEADER_LEN - 4 - alen
        return _build(nl, addpath, room, b"\x00\x00" + _u16(alen) + a, -1, 0, b"", -1, 0)
    nh = _bytes(next_hop or b"")
    mp_fixed = bytes((afi >> 8, afi & 0xFF, safi, len(nh))) + nh + b"\x00"
    fixed_len = PyBytes_GET_SIZE(mp_fixed)
    room = maxlen - HEADER_LEN - 4 - alen - 4 - fixed_len
    cdef list out = []
    cdef Py_ssize_t start = 0, end, n = PyBytes_GET_SIZE(nl)
    cdef const unsigned char *p = <const unsigned char *>PyBytes_AS_STRING(nl)
    # The attribute header form (1- or 2-octet length) depends on each run's
    # size, exactly as as4.encode_attr chooses it in the twin.
    while start < n:
        end = chunk_end(p, start, n, room, addpath)
        if end < 0:
            raise ValueError("malformed packed prefixes")
        if end == start:
            raise ValueError("a single prefix does not fit in a message")
        if fixed_len + end - start > 255:
            out.extend(_build(nl[start:end], addpath, room,
                              b"\x00\x00\x00\x00\x90\x0e\x00\x00" + mp_fixed, 2, 4 + fixed_len + alen, a, 6, fixed_len))
        else:
            lead = fixed_len + end - start
            out.extend(_build(nl[start:end], addpath, room,
                              b"\x00\x00" + _u16(3 + lead + alen) + bytes((0x80, 14, lead)) + mp_fixed, -1, 0, a, -1, 0))
        start = end
    return out


def pack_withdraws(nlri, ctx=DEFAULT_CONTEXT, int afi=1, int safi=1):
    """The fewest UPDATEs withdrawing every prefix of packed ``nlri``."""
    cdef bytes nl = _bytes(nlri)
    cdef Py_ssize_t maxlen = ctx.max_message_len
    addpath_tx = ctx.addpath_tx
    cdef bint addpath = bool(addpath_tx) and (afi, safi) in addpath_tx
    if afi == 1 and safi == 1:
        return _build(nl, addpath, maxlen - HEADER_LEN - 4, b"\x00\x00", 0, 0, b"\x00\x00", -1, 0)
    cdef bytes fixed = bytes((afi >> 8, afi & 0xFF, safi))
    cdef Py_ssize_t room = maxlen - HEADER_LEN - 4 - 4 - 3
    cdef list out = []
    cdef Py_ssize_t start = 0, end, n = PyBytes_GET_SIZE(nl), run
    cdef const unsigned char *p = <const unsigned char *>PyBytes_AS_STRING(nl)
    while start < n:
        end = chunk_end(p, start, n, room, addpath)
        if end < 0:
            raise ValueError("malformed packed prefixes")
        if end == start:
            raise ValueError("a single prefix does not fit in a message")
        run = end - start
        if 3 + run > 255:
            out.extend(_build(nl[start:end], addpath, room, b"\x00\x00\x00\x00\x90\x0f\x00\x00" + fixed,
                              2, 7, b"", 6, 3))
        else:
            out.extend(_build(nl[start:end], addpath, room,
                              b"\x00\x00" + _u16(6 + run) + bytes((0x80, 15, 3 + run)) + fixed, -1, 0, b"", -1, 0))
        start = end
    return out


def build_eor(int afi=1, int safi=1):
    """RFC 4724 §2 End-of-RIB marker."""
    if afi == 1 and safi == 1:
        return frame(2, b"\x00\x00\x00\x00")
    return frame(2, b"\x00\x00\x00\x06\x80\x0f\x03" + bytes((afi >> 8, afi & 0xFF, safi)))
