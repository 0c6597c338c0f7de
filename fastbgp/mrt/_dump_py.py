"""Pure-Python twin of ``fastbgp.mrt._dump``: bgpdump ``-m`` lines for runs
of TABLE_DUMP and TABLE_DUMP_V2 unicast records, printed straight from the
record bytes (no record objects), with identical behaviour.

``format_run(buf, pos, st, out)`` prints the whole records at ``buf[pos:]``
into the bytearray ``out`` until it meets a record it does not handle, one
that is not whole yet, or one that is not well formed; it returns (records
printed, position of the first record it left).  The reader decodes what is
left the usual way (and reports problems), so only records whose every
length checks out are printed here.  ``st`` is a
fastbgp.mrt.dump.FastState: byte caches and the functions that fill them.

Handled (RFC 6396): TABLE_DUMP AFI_IPv4 / AFI_IPv6 (§4.2), TABLE_DUMP_V2
RIB_IPV4_UNICAST / RIB_IPV6_UNICAST (§4.3.2, §4.3.4) and their RFC 8050
ADDPATH forms, and BGP4MP /
BGP4MP_ET MESSAGE_AS4 (§4.4.3) holding well-formed messages.  The
attribute text of a RIB entry or UPDATE is made here only when every
attribute the line shows is plainly well formed (see ``_scan``); otherwise
BgpdumpFormatter's own code makes it (RIB) or prints the record (UPDATE).
The twin gets that text from the formatter (``st.rib_text``,
``st.update_text``), the compiled module writes it itself.
"""

from fastbgp.wire.as4 import attr_spans

IMPLEMENTATION = "python"

_TABLE_DUMP = 12
_TABLE_DUMP_V2 = 13
_BGP4MP = 16
_BGP4MP_ET = 17


def _v4(a, plen):
    return b"%d.%d.%d.%d/%d" % (a[0], a[1], a[2], a[3], plen)


def _rib(buf, b, end, ts, afi, addpath, st, peers, out):
    """One RIB_IPV4/IPV6_UNICAST(_ADDPATH) body at buf[b:end]; False if it
    does not check out (nothing written then)."""
    maxbits = 32 if afi == 1 else 128
    p = b + 4  # RFC 6396 §4.3.2: sequence number, then the prefix
    if p >= end:
        return False
    plen = buf[p]
    if plen > maxbits:
        return False
    nb = (plen + 7) >> 3
    if p + 1 + nb + 2 > end:
        return False
    a = bytearray(buf[p + 1 : p + 1 + nb])
    if plen & 7:
        a[-1] &= (0xFF << (8 - (plen & 7))) & 0xFF  # RFC 4271 §4.3: host bits are irrelevant
    p += 1 + nb
    count = (buf[p] << 8) | buf[p + 1]
    p += 2
    if afi == 1:
        pfx = _v4(bytes(a) + bytes(4 - nb), plen)
        cache = st.rib4
    else:
        pfx = st.v6(bytes(a) + bytes(16 - nb)) + b"/%d" % plen
        cache = st.rib6
    npeers = len(peers)
    head = (b"TABLE_DUMP2_AP|%d|B|" if addpath else b"TABLE_DUMP2|%d|B|") % ts
    hl = 12 if addpath else 8
    lines = []
    for _ in range(count):
        # RFC 6396 §4.3.4: peer index, originated time, (RFC 8050 §4: path
        # identifier,) attribute length.
        if p + hl > end:
            return False
        idx = (buf[p] << 8) | buf[p + 1]
        alen = (buf[p + hl - 2] << 8) | buf[p + hl - 1]
        pid = b"|%d" % int.from_bytes(buf[p + 6 : p + 10], "big") if addpath else b""
        p += hl
        if p + alen > end:
            return False
        if idx < npeers:
            attrs = buf[p : p + alen]
            tail = cache.get(attrs)
            if tail is None:
                tail = _rib_tail(buf, p, p + alen, afi, st)
                if tail is None:
                    tail = st.rib_miss(afi, attrs)
                else:
                    # Cached like the formatter's own misses (same bound).
                    if len(cache) >= st.limit:
                        cache.clear()
                    cache[attrs] = tail
            lines.append(head + peers[idx] + pfx + pid + tail)
        p += alen
    out += b"".join(lines)
    return True


def _table_dump(buf, b, end, ts, sub, st, out):
    """One TABLE_DUMP body (RFC 6396 §4.2): view, sequence, prefix, length,
    status, originated time, peer address, peer AS (2 octets), attributes."""
    w = 4 if sub == 1 else 16
    p = b + 4 + w + 6  # the peer address
    if p + w + 4 > end:
        return False
    alen = (buf[p + w + 2] << 8) | buf[p + w + 3]
    q = p + w + 4
    if q + alen > end:
        return False
    plen = buf[b + 4 + w]
    addr = buf[b + 4 : b + 4 + w]
    pfx = _v4(addr, plen) if w == 4 else st.v6(addr) + b"/%d" % plen
    key = buf[p : p + w + 2]
    who = st.who.get(key)
    if who is None:
        who = st.who_miss(key)
    attrs = buf[q : q + alen]
    tail = st.td1.get(attrs)
    if tail is None:
        tail = st.td1_miss(attrs)
    out += b"TABLE_DUMP|%d|B|" % ts + who + pfx + tail
    return True


def _nlri_ok(v, s, e, maxbits):
    """Whether v[s:e] is whole prefixes of at most maxbits bits."""
    while s < e:
        if v[s] > maxbits:
            return False
        s += 1 + ((v[s] + 7) >> 3)
    return s == e


def _scan(v, i, n):
    """{type: (value start, value end)} of the attributes in v[i:n] (RFC
    4271 §4.3, walked by fastbgp.wire.as4.attr_spans), or None for anything
    this fast path leaves to BgpdumpFormatter: a cut or overrunning
    attribute, a repeated type, a printed attribute of a length or content
    it would treat specially, confederation segments."""
    try:
        spans = attr_spans(v, i, n)
    except IndexError:
        return None  # an attribute header cut by the end of the block
    a = {}
    for _flags, t, vs, ve, _start in spans:
        if ve > n or t in a:
            return None  # RFC 7606 §3 (g): a repeated attribute is the formatter's case
        ln = ve - vs
        if t == 1 and (ln != 1 or v[vs] > 2):
            return None
        if t == 2:
            # An empty AS_PATH (iBGP routes in BIRD / OpenBGPD RIB dumps,
            # RFC 4271 §5.1.2) prints as an empty field, like bgpdump.
            if ln > 1024:
                return None
            k = vs
            while k < ve:
                if k + 2 > ve or v[k] not in (1, 2) or v[k + 1] == 0:
                    return None
                k += 2 + 4 * v[k + 1]
            if k != ve:
                return None
        if (t in (3, 4, 5) and ln != 4) or (t == 6 and ln) or (t == 7 and ln != 8) or (t == 8 and (ln == 0 or ln & 3)):
            return None
        a[t] = (vs, ve)
    return a


def _nh_ok(n):
    return n in (4, 16, 32)


def _rib_tail(v, s, e, afi, st):
    """b"|pre nh post" of RIB entry attributes v[s:e], or None (see
    _dump.pyx: the same conditions)."""
    if s == e:
        # No attributes at all (Quagga writes such entries): bgpdump's
        # defaults for every field.
        return st.rib_text(b"")
    a = _scan(v, s, e)
    if a is None or 15 in a or 1 not in a or 2 not in a:
        return None
    if 14 in a:
        ms, me = a[14]
        if v[ms] + 1 == me - ms:
            # RFC 6396 §4.3.4: next-hop length and next hop only.
            if not _nh_ok(v[ms]):
                return None
        elif me - ms < 5 or not _nh_ok(v[ms + 3]) or ms + 4 + v[ms + 3] > me:
            # Quagga writes the full RFC 4760 §3 form (AFI, SAFI, next-hop
            # length, next hop, reserved): its next hop, as bgpdump reads it.
            return None
    elif 3 in a and afi != 1:
        return None
    # No next hop at all (BIRD's IPv6 entries): bgpdump's 255.255.255.255.
    return st.rib_text(bytes(v[s:e]))


def _mp_start(v, span, reach):
    """Start of the NLRI of a unicast MP_REACH_NLRI (RFC 4760 §3) or
    MP_UNREACH_NLRI (§4) this path prints, else -1."""
    s, e = span
    if e - s < (5 if reach else 3):
        return -1
    afi = (v[s] << 8) | v[s + 1]
    if v[s + 2] != 1 or afi not in (1, 2):
        return -1
    maxbits = 32 if afi == 1 else 128
    if not reach:
        return s + 3 if _nlri_ok(v, s + 3, e, maxbits) else -1
    nhlen = v[s + 3]
    if not ((afi == 1 and nhlen == 4) or (afi == 2 and nhlen in (16, 32))):
        return -1
    s += 5 + nhlen
    if s > e or not _nlri_ok(v, s, e, maxbits):
        return -1
    return s


def _prefixes(v, s, e, afi, st):
    out = []
    w = 4 if afi == 1 else 16
    while s < e:
        plen = v[s]
        nb = (plen + 7) >> 3
        a = bytearray(v[s + 1 : s + 1 + nb]) + bytes(w - nb)
        if plen & 7:
            a[nb - 1] &= (0xFF << (8 - (plen & 7))) & 0xFF  # RFC 4271 §4.3
        out.append(_v4(a, plen) if afi == 1 else st.v6(bytes(a)) + b"/%d" % plen)
        s += 1 + nb
    return out


def _bgp4mp(v, b, end, ts, typ, sub, st, out):
    """A BGP4MP / BGP4MP_ET MESSAGE_AS4 record (RFC 6396 §4.4.3) whose
    message is whole and well formed; UPDATEs print one line per prefix,
    other messages nothing (bgpdump -m shows UPDATEs only)."""
    usec = 0
    if typ == _BGP4MP_ET:
        # RFC 6396 §3: the _ET types put microseconds first.
        if end - b < 4:
            return False
        usec = int.from_bytes(v[b : b + 4], "big")
        b += 4
        if usec > 999999:
            return False
    if sub != 4 or b + 12 > end:
        return False
    peer_as = int.from_bytes(v[b : b + 4], "big")
    afi = (v[b + 10] << 8) | v[b + 11]
    if afi not in (1, 2):
        return False
    w = 4 if afi == 1 else 16
    m = b + 12 + 2 * w
    if m + 19 > end or v[m : m + 16] != b"\xff" * 16 or ((v[m + 16] << 8) | v[m + 17]) != end - m:
        return False  # RFC 4271 §4.1: marker all ones, length the record's
    if v[m + 18] != 2:
        return True
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
    a = _scan(v, ans, ae)
    if a is None:
        return False
    mps = mus = -1
    if 14 in a:
        mps = _mp_start(v, a[14], True)
        if mps < 0:
            return False
    if 15 in a:
        mus = _mp_start(v, a[15], False)
        if mus < 0:
            return False
    announce = ae < end or (mps >= 0 and mps < a[14][1])
    if announce and (1 not in a or 2 not in a or (ae < end and 3 not in a)):
        return False
    if typ == _BGP4MP_ET:
        head = b"BGP4MP_ET|%d.%06d" % (ts, usec)
    else:
        head = b"BGP4MP|%d" % ts
    ip = v[b + 12 : b + 12 + w]
    who = b"%s|%d|" % (_v4(ip, 0)[:-2] if afi == 1 else st.v6(bytes(ip)), peer_as)
    hw = head + b"|W|" + who
    lines = [hw + p + b"\n" for p in _prefixes(v, ws, we, 1, st)]
    if mus >= 0:
        s15, e15 = a[15]
        lines += [hw + p + b"\n" for p in _prefixes(v, mus, e15, (v[s15] << 8) | v[s15 + 1], st)]
    if announce:
        pre, nh, post = st.update_text(bytes(v[ans:ae]))
        ha = head + b"|A|" + who
        if ae < end:
            lines += [ha + p + pre + nh + post for p in _prefixes(v, ae, end, 1, st)]
        if mps >= 0:
            s14, e14 = a[14]
            mnh = st.next_hop(bytes(v[s14 + 4 : s14 + 4 + v[s14 + 3]]))
            lines += [ha + p + pre + mnh + post for p in _prefixes(v, mps, e14, (v[s14] << 8) | v[s14 + 1], st)]
    out += b"".join(lines)
    return True


def format_run(buf, pos, st, out):
    """(records printed, position after them); see the module docstring."""
    n = len(buf)
    done = 0
    peers = None
    while n - pos >= 12:
        # RFC 6396 §2: timestamp, type, subtype, length.
        ts = int.from_bytes(buf[pos : pos + 4], "big")
        typ = (buf[pos + 4] << 8) | buf[pos + 5]
        sub = (buf[pos + 6] << 8) | buf[pos + 7]
        end = pos + 12 + int.from_bytes(buf[pos + 8 : pos + 12], "big")
        if end > n:
            break
        if typ == _TABLE_DUMP_V2 and sub in (2, 4, 8, 10):
            if peers is None:
                peers = st.peers  # only a PEER_INDEX_TABLE changes it, never inside a run
            # RFC 6396 §4.3 / RFC 8050 §4: 2, 4 unicast; 8, 10 their ADDPATH forms.
            ok = _rib(buf, pos + 12, end, ts, 1 if sub in (2, 8) else 2, sub >= 8, st, peers, out)
        elif typ == _TABLE_DUMP and (sub == 1 or sub == 2):
            ok = _table_dump(buf, pos + 12, end, ts, sub, st, out)
        elif (typ == _BGP4MP or typ == _BGP4MP_ET) and sub == 4:
            ok = _bgp4mp(buf, pos + 12, end, ts, typ, sub, st, out)
        else:
            break
        if not ok:
            break
        pos = end
        done += 1
    return done, pos
