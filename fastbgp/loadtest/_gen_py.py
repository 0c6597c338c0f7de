"""Pure-Python twin of :mod:`fastbgp.loadtest._gen`: the same functions with
the same results, octet for octet, and the same exceptions, for machines
where the extension is not built (or FASTBGP_NO_EXTENSIONS=1).

It is much slower (a Python object per prefix while generating) but the
load tester runs the same way on it; :mod:`fastbgp.loadtest.gen` picks one.

Arguments are converted the way the compiled signatures do it (C ints,
``bytes``, buffers), so a wrong argument fails with the same exception:
C integer arguments first in parameter order, then the ``bytes`` type
tests.  Integer arithmetic is done at the C widths of the compiled code
(64-bit random state, 128-bit addresses, 16/32-bit fields, C division).
"""

from __future__ import annotations

import operator
from array import array

IMPLEMENTATION = "python"

HEADER_LEN = 19
_M16 = 0xFFFF
_M32 = 0xFFFFFFFF
_M64 = (1 << 64) - 1
_M128 = (1 << 128) - 1
_I64_MAX = (1 << 63) - 1
_SSIZE_MIN = -(1 << 63)
_INT_MIN, _INT_MAX = -(1 << 31), (1 << 31) - 1


# ------------------------------------------------------------------ arguments


def _ssize(v) -> int:
    """A ``Py_ssize_t`` argument: anything with ``__index__``."""
    v = operator.index(v)
    if not _SSIZE_MIN <= v <= _I64_MAX:
        raise OverflowError("Python int too large to convert to C ssize_t")
    return v


def _c_number(v) -> int:
    # C int/uintN_t arguments go through the number's ``__int__`` (so a float
    # is truncated), not ``__index__``.
    if isinstance(v, int):
        return int(v)
    conv = getattr(type(v), "__int__", None)
    if conv is None:
        raise TypeError("an integer is required")
    return conv(v)


def _c_int(v) -> int:
    v = _c_number(v)
    if not _SSIZE_MIN <= v <= _I64_MAX:
        raise OverflowError("Python int too large to convert to C long")
    if not _INT_MIN <= v <= _INT_MAX:
        raise OverflowError("value too large to convert to int")
    return v


def _c_uint(v, bits: int) -> int:
    v = _c_number(v)
    if v < 0:
        raise OverflowError("can't convert negative value to uint%d_t" % bits)
    if v >> 64:
        raise OverflowError("Python int too large to convert to C unsigned long")
    if v >> bits:
        raise OverflowError("value too large to convert to uint%d_t" % bits)
    return v


def _bytes_args(**named) -> list:
    """``bytes`` parameters: exactly bytes (not a subclass) or None, which
    reads as empty."""
    for name, v in named.items():
        if v is not None and type(v) is not bytes:
            raise TypeError("Argument '%s' has incorrect type (expected bytes, got %s)" % (name, type(v).__name__))
    return [b"" if v is None else v for v in named.values()]


# Buffer formats a typed ``const unsigned char[::1]`` refuses, by C type name.
_FORMAT_NAMES = {
    "b": "signed char", "h": "short", "H": "unsigned short", "i": "int", "I": "unsigned int", "l": "long",
    "L": "unsigned long", "q": "long long", "Q": "unsigned long long", "n": "Py_ssize_t", "N": "size_t",
    "f": "float", "d": "double", "e": "half", "?": "bool", "P": "void *",
}


def _octets(obj) -> bytes:
    """The octets of a buffer argument, as the compiled functions accept it:
    any one-dimensional C-contiguous buffer of unsigned char; None reads as
    empty."""
    if obj is None:
        return b""
    if type(obj) is bytes:
        return obj
    try:
        mv = memoryview(obj)
    except TypeError:
        raise TypeError("a bytes-like object is required, not '%s'" % type(obj).__name__) from None
    with mv:
        if not mv.c_contiguous:
            raise BufferError("memoryview: underlying buffer is not C-contiguous")
        if mv.ndim != 1:
            raise ValueError("Buffer has wrong number of dimensions (expected 1, got %d)" % mv.ndim)
        fmt = mv.format.lstrip("@=<>!")
        if fmt not in ("B", "c"):
            raise ValueError("Buffer dtype mismatch, expected 'const unsigned char' but got '%s'"
                             % _FORMAT_NAMES.get(fmt, fmt))
        return mv.tobytes()


def _int64s(b: bytes) -> memoryview:
    """The native int64 values of ``b`` (trailing octets ignored)."""
    return memoryview(b)[: len(b) // 8 * 8].cast("q")


# ------------------------------------------------------------------ tables


def _check_args(width, base, lut, start, count, per_group, cap, attrs, med_off, origin_off, origin_width,
                mp_head, tail, limit) -> None:
    """gen_table's argument checks, in the order the callers rely on."""
    if width != 32 and width != 128:
        raise ValueError("width must be 32 or 128")
    if len(base) != 16 or len(limit) != 16:
        raise ValueError("base and limit must be 16 octets")
    if len(lut) != 4096:
        raise ValueError("lut must hold 4096 lengths")
    if len(start) != 129 * 8:
        raise ValueError("start must hold 129 counters")
    if count < 0 or per_group < 1 or cap < 0:
        raise ValueError("count >= 0, per_group >= 1, cap >= 0")
    lo, hi = min(lut), max(lut)
    if lo == 0 or hi > width:
        bad = next(x for x in lut if x > width or x == 0)
        raise ValueError("prefix length %d out of range 1..%d" % (bad, width))
    if tail and not mp_head:
        raise ValueError("tail needs mp_head")
    if med_off >= 0 and med_off + 4 > len(attrs):
        raise ValueError("med_off outside attrs")
    if origin_off >= 0 and (origin_width not in (2, 4) or origin_off + origin_width > len(attrs)):
        raise ValueError("origin_off outside attrs")
    if mp_head and len(mp_head) < 4:
        raise ValueError("mp_head too short")


def _c_div(a: int, b: int) -> int:
    """C division (towards zero) for b > 0, as the compiled code divides."""
    return a // b if a >= 0 else -(-a // b)


def _draw(count, lut, seed, start, base, limit, pid) -> tuple:
    """``count`` prefixes drawn as gen_table draws them: (packed NLRI, each
    prefix preceded by ``pid``; the size of each prefix in it; prefixes per
    length).  ValueError when a length's counter runs past the address
    space or ``limit``."""
    cnt = list(_int64s(start))
    used = [0] * 129
    b = int.from_bytes(base, "big")
    lim = int.from_bytes(limit, "big")
    pk = bytearray()
    sizes = bytearray()
    # xorshift64* (see _gen._next), seeded the same way.
    rng = (seed * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) & _M64 or 1
    for k in range(count):
        rng ^= rng >> 12
        rng ^= (rng << 25) & _M64
        rng ^= rng >> 27
        plen = lut[((rng * 0x2545F4914F6CDD1D) & _M64) >> 52]
        c = cnt[plen] & _M128  # the int64 counter as a 128-bit unsigned value
        addr = (b + (c << (128 - plen))) & _M128
        if (plen < 128 and c >> plen) or addr < b or addr >= lim or \
                lim - addr < ((1 << (128 - plen)) if plen < 128 else 1):
            raise ValueError("the table runs out of address space after %d prefixes (/%d counter %d): "
                             "fewer prefixes, fewer short prefixes or another base" % (k, plen, cnt[plen]))
        n = cnt[plen] + 1
        cnt[plen] = n if n <= _I64_MAX else n - (1 << 64)
        used[plen] += 1
        nb = (plen + 7) >> 3
        # Host bits are zero by construction (RFC 4271 §4.3).
        pk += pid
        pk += ((plen << (8 * nb)) | (addr >> (128 - 8 * nb))).to_bytes(nb + 1, "big")
        sizes.append(len(pid) + 1 + nb)
    return pk, sizes, used


class _Writer:
    """Lays prefixes out in UPDATEs the way _gen._fill does: a new message
    per attribute group, at ``cap`` prefixes, or when the NLRI would pass
    ``room`` octets."""

    def __init__(self, per_group, group_base, cap, room, attrs, med_off, med_base, origin_off, origin_width,
                 origin_base, origin_span, mp_head, tail):
        self.per_group, self.group_base, self.cap, self.room = per_group, group_base, cap, room
        self.attrs, self.med_off, self.med_base = attrs, med_off, med_base
        self.origin_off, self.origin_width = origin_off, origin_width
        self.origin_base, self.origin_span = origin_base, origin_span or 1
        self.mp_head, self.tail = mp_head, tail
        self.out = bytearray()
        self.ends: list = []
        self.cum: list = []

    def _open(self, group: int) -> bytearray:
        """Header (lengths filled in by _close), no withdrawn routes, the
        attribute block with this group's MED and origin AS, then the
        MP_REACH_NLRI header."""
        alen = len(self.attrs)
        m = bytearray(b"\xff" * 16 + b"\x00\x00\x02\x00\x00" + (alen & _M16).to_bytes(2, "big"))
        m += self.attrs
        if self.med_off >= 0:
            o = 23 + self.med_off
            m[o : o + 4] = ((self.med_base + group) & _M32).to_bytes(4, "big")
        if self.origin_off >= 0:
            q = _c_div(group, self.origin_span)
            ov = (self.origin_base + (group - q * self.origin_span)) & _M32
            o = 23 + self.origin_off
            if self.origin_width == 4:
                m[o : o + 4] = ov.to_bytes(4, "big")
            else:
                m[o : o + 2] = (ov & _M16).to_bytes(2, "big")
        m += self.mp_head
        return m

    def _close(self, m: bytearray, nlri, k: int) -> None:
        """Lengths in (total attribute length and MP_REACH_NLRI length when
        the NLRI travels in it, then the header's), the tail, and done."""
        alen, mlen = len(self.attrs), len(self.mp_head)
        m += nlri
        if mlen:
            m[21:23] = ((alen + mlen + len(nlri) + len(self.tail)) & _M16).to_bytes(2, "big")
            o = HEADER_LEN + 4 + alen + 2
            m[o : o + 2] = ((mlen - 4 + len(nlri)) & _M16).to_bytes(2, "big")
            m += self.tail
        m[16:18] = (len(m) & _M16).to_bytes(2, "big")
        self.out += m
        self.ends.append(len(self.out))
        self.cum.append(k)

    def write(self, pk: bytearray, sizes: bytearray) -> None:
        """The prefixes of ``pk`` (``sizes`` octets each) in UPDATEs."""
        view = memoryview(pk)
        cap, room = self.cap, self.room
        m = None
        off = nlri_start = in_msg = 0
        cur_group = -1
        for k, need in enumerate(sizes):
            group = _c_div(k + self.group_base, self.per_group)
            if m is not None and (group != cur_group or (cap and in_msg >= cap) or off - nlri_start + need > room):
                self._close(m, view[nlri_start:off], k)
                m = None
            if m is None:
                cur_group = group
                m = self._open(group)
                nlri_start = off
                in_msg = 0
            off += need
            in_msg += 1
        if m is not None:
            self._close(m, view[nlri_start:off], len(sizes))
        view.release()


def gen_table(width, base, count, lut, seed, start, per_group, group_base, attrs, med_off, med_base, origin_off,
              origin_width, origin_base, origin_span, mp_head, tail, maxlen, cap, addpath, path_id, limit,
              encode=True, want_packed=True):
    """Generate ``count`` distinct prefixes and (``encode``) the UPDATEs
    announcing them; see :func:`fastbgp.loadtest._gen.gen_table` for the
    parameters.  Returns (messages bytes, message end offsets (int64
    native), cumulative prefix count per message (int64), packed NLRI or
    None, per-length counts (129 x int64))."""
    width, count, seed = _c_int(width), _ssize(count), _c_uint(seed, 64)
    per_group, group_base, med_off, med_base = _ssize(per_group), _ssize(group_base), _ssize(med_off), \
        _c_uint(med_base, 32)
    origin_off, origin_width, origin_base = _ssize(origin_off), _c_int(origin_width), _c_uint(origin_base, 32)
    origin_span, maxlen, cap, addpath = _c_uint(origin_span, 32), _ssize(maxlen), _ssize(cap), bool(addpath)
    path_id, encode, want_packed = _c_uint(path_id, 32), bool(encode), bool(want_packed)
    base, lut, start, attrs, mp_head, tail, limit = _bytes_args(base=base, lut=lut, start=start, attrs=attrs,
                                                               mp_head=mp_head, tail=tail, limit=limit)
    _check_args(width, base, lut, start, count, per_group, cap, attrs, med_off, origin_off, origin_width,
                mp_head, tail, limit)
    pid = path_id.to_bytes(4, "big") if addpath else b""
    max_pfx = 1 + len(pid) + width // 8
    room = maxlen - (HEADER_LEN + 4 + len(attrs) + len(mp_head) + len(tail))
    if room < max_pfx:
        raise ValueError("attributes of %d octets leave no room for a prefix in a %d-octet message"
                         % (len(attrs) + len(mp_head), maxlen))
    if mp_head and room > 0xFFFF - (len(mp_head) - 4):
        room = 0xFFFF - (len(mp_head) - 4)  # the MP_REACH_NLRI length field is 2 octets
    pk, sizes, used = _draw(count, lut, seed, start, base, limit, pid)
    msgs, ends, cum = b"", [], []
    if encode:
        w = _Writer(per_group, group_base, cap, room, attrs, med_off, med_base, origin_off, origin_width,
                    origin_base, origin_span, mp_head, tail)
        w.write(pk, sizes)
        msgs, ends, cum = bytes(w.out), w.ends, w.cum
    packed = bytes(pk) if want_packed else None
    return msgs, array("q", ends).tobytes(), array("q", cum).tobytes(), packed, array("q", used).tobytes()


# ------------------------------------------------------------------ sending


def patch_chunk(buf, ends, i0, i1, as_rel, asn, nh_rel, nh):
    """Messages i0..i1-1 of ``buf`` (end offsets ``ends``) copied, with
    ``asn`` written at ``as_rel`` and ``nh`` at ``nh_rel`` octets into every
    message (-1: leave alone)."""
    i0, i1, as_rel, nh_rel = _ssize(i0), _ssize(i1), _ssize(as_rel), _ssize(nh_rel)
    buf, ends, asn, nh = _bytes_args(buf=buf, ends=ends, asn=asn, nh=nh)
    e = _int64s(ends)
    if i0 < 0 or i1 > len(e) or i0 >= i1:
        raise ValueError("bad message range")
    s = e[i0 - 1] if i0 else 0
    t = e[i1 - 1]
    if t > len(buf) or s > t:
        raise ValueError("offsets outside the buffer")
    out = bytearray(buf[s:t])
    al, nl = len(asn), len(nh)
    ms = s
    for i in range(i0, i1):
        me = e[i]
        if as_rel >= 0 and ms + as_rel + al <= me:
            o = ms - s + as_rel
            out[o : o + al] = asn
        if nh_rel >= 0 and ms + nh_rel + nl <= me:
            o = ms - s + nh_rel
            out[o : o + nl] = nh
        ms = me
    return bytes(out)


def chunk_bounds(ends, target):
    """Message indexes where chunks of about ``target`` octets end (always
    on a message boundary, so anything written between two chunks --
    a KEEPALIVE, a canary -- lands between whole messages)."""
    target = _ssize(target)
    (ends,) = _bytes_args(ends=ends)
    e = _int64s(ends)
    out = []
    last = 0
    for i, end in enumerate(e):
        if end - last >= target:
            out.append(i + 1)
            last = end
    n = len(e)
    if (not out or out[-1] != n) and n:
        out.append(n)
    return out


# ------------------------------------------------------------------ receiving


class Skipper:
    """Counts the messages of a BGP byte stream without keeping UPDATE or
    KEEPALIVE bodies.  ``feed`` returns the other messages as
    (type, body); ``updates``/``keepalives``/``octets`` accumulate.
    A bad marker or length raises ValueError (RFC 4271 §6.1 header error;
    the caller sends the NOTIFICATION)."""

    __slots__ = ("updates", "keepalives", "octets", "_head", "_type", "_skip", "_keep", "_body")

    def __init__(self):
        self.updates = 0
        self.keepalives = 0
        self.octets = 0
        self._head = bytearray()  # header octets collected so far
        self._type = 0            # type of the message whose body is being skipped
        self._skip = 0            # body octets of the current message still to skip
        self._keep = False        # current body is being collected
        self._body = bytearray()

    def feed(self, data):
        data = _octets(data)
        n = len(data)
        pos = 0
        out = None
        self.octets += n
        while pos < n:
            if self._skip:
                take = min(self._skip, n - pos)
                if self._keep:
                    self._body += data[pos : pos + take]
                pos += take
                self._skip -= take
                if self._skip == 0 and self._keep:
                    if out is None:
                        out = []
                    out.append((self._type, bytes(self._body)))
                    self._body.clear()
                    self._keep = False
                continue
            take = min(19 - len(self._head), n - pos)
            self._head += data[pos : pos + take]
            pos += take
            if len(self._head) < 19:
                break
            head = self._head
            self._head = bytearray()
            if head[:16] != b"\xff" * 16:
                raise ValueError("marker is not all ones")
            length = (head[16] << 8) | head[17]
            mtype = self._type = head[18]
            if length < 19 or (mtype == 4 and length != 19):
                raise ValueError("bad length %d for message type %d" % (length, mtype))
            if mtype == 2:
                self.updates += 1
                self._keep = False
            elif mtype == 4:
                self.keepalives += 1
                self._keep = False
            else:
                self._keep = True
            self._skip = length - 19
            if self._skip == 0 and self._keep:
                if out is None:
                    out = []
                out.append((mtype, b""))
                self._keep = False
        return out if out is not None else ()


# ------------------------------------------------------------------ keys


def _key(data: bytes, pos: int, plen: int, nb: int) -> bytes:
    """Length octet and address octets with the bits past the length
    cleared (RFC 4271 §4.3: they are irrelevant)."""
    k = bytearray(data[pos : pos + 1 + nb])
    if plen & 7:
        k[nb] &= (0xFF << (8 - (plen & 7))) & 0xFF
    return bytes(k)


def _prefix_at(data: bytes, pos: int, n: int, width: int, addpath: bool) -> tuple:
    """(position of the length octet, length, address octets) of the prefix
    at ``pos``; ValueError when malformed."""
    if addpath:
        pos += 4
        if pos >= n:
            raise ValueError("truncated path id")
    plen = data[pos]
    if plen > width:
        raise ValueError("prefix length %d" % plen)
    nb = (plen + 7) >> 3
    if pos + 1 + nb > n:
        raise ValueError("truncated prefix")
    return pos, plen, nb


def split_keys(packed, width=32, addpath=False):
    """[key] per prefix of packed NLRI: the length octet and the address
    octets with bits past the length cleared (RFC 4271 §4.3 says they are
    irrelevant), path id dropped.  Raises ValueError when malformed."""
    width, addpath = _c_int(width), bool(addpath)
    data = _octets(packed)
    n = len(data)
    pos = 0
    out = []
    while pos < n:
        pos, plen, nb = _prefix_at(data, pos, n, width, addpath)
        out.append(_key(data, pos, plen, nb))
        pos += 1 + nb
    return out


def find_range(packed, width, addpath, net, netlen):
    """Keys (as :func:`split_keys`) of the prefixes in packed NLRI that lie
    inside ``net``/``netlen`` (``net``: address octets); None if there are
    none -- the common case."""
    width, addpath, netlen = _c_int(width), bool(addpath), _c_int(netlen)
    (net,) = _bytes_args(net=net)
    data = _octets(packed)
    n = len(data)
    full, rest = netlen >> 3, netlen & 7
    mask = (0xFF << (8 - rest)) & 0xFF
    if (netlen + 7) >> 3 > len(net):
        raise ValueError("net shorter than its length")
    head = net[:full] if full > 0 else b""
    pos = 0
    out = None
    while pos < n:
        pos, plen, nb = _prefix_at(data, pos, n, width, addpath)
        inside = plen >= netlen and data[pos + 1 : pos + 1 + len(head)] == head
        if inside and rest and (data[pos + 1 + full] ^ net[full]) & mask:
            inside = False
        if inside:
            if out is None:
                out = []
            out.append(_key(data, pos, plen, nb))
        pos += 1 + nb
    return out


def packed_offset(packed, count, width=32, addpath=False):
    """Octet offset in packed NLRI where prefix number ``count`` starts
    (the length of the first ``count`` prefixes)."""
    count, width, addpath = _ssize(count), _c_int(width), bool(addpath)
    data = _octets(packed)
    n = len(data)
    pos = k = 0
    while k < count and pos < n:
        if addpath:
            pos += 4
            if pos >= n:
                raise ValueError("truncated path id")
        if data[pos] > width:
            raise ValueError("prefix length %d" % data[pos])
        pos += 1 + ((data[pos] + 7) >> 3)
        k += 1
    if pos > n:
        raise ValueError("truncated prefix")
    return pos
