"""Pure-Python twin of :mod:`fastbgp.wire._codec`.

Same functions, same results (==), same errors (code, subcode, data, action)
as the compiled module; used when the extension is not built or
FASTBGP_NO_EXTENSIONS=1.  Tests run every codec test on both.  Keep the two in
step: a change here is a change in _codec.pyx.
"""

import ipaddress

from fastbgp.wire import as4
from fastbgp.wire.types import DEFAULT_CONTEXT, ParsedOpen, ParsedUpdate
from fastbgp.wire.constants import (
    AFI_IPV4,
    AFI_IPV6,
    ATTR_AGGREGATOR,
    ATTR_AS4_AGGREGATOR,
    ATTR_AS4_PATH,
    ATTR_AS_PATH,
    ATTR_ATOMIC_AGGREGATE,
    ATTR_CLUSTER_LIST,
    ATTR_COMMUNITIES,
    ATTR_EXT_COMMUNITIES,
    ATTR_LARGE_COMMUNITY,
    ATTR_LOCAL_PREF,
    ATTR_MED,
    ATTR_MP_REACH_NLRI,
    ATTR_MP_UNREACH_NLRI,
    ATTR_NEXT_HOP,
    ATTR_ORIGIN,
    ATTR_ORIGINATOR_ID,
    ATTR_OTC,
    BGP_VERSION,
    HEADER_LEN,
    MAX_MESSAGE_LEN,
    MSG_KEEPALIVE,
    MSG_NOTIFICATION,
    MSG_OPEN,
    MSG_ROUTE_REFRESH,
    MSG_UPDATE,
    OPT_PARAM_CAPABILITIES,
    OPT_PARAM_EXTENDED_LENGTH,
    SAFI_MULTICAST,
    SAFI_UNICAST,
    WELL_KNOWN_FLAGS,
)
from fastbgp.wire.errors import (
    ACTION_AFISAFI_DISABLE,
    ACTION_ATTRIBUTE_DISCARD,
    ACTION_NONE,
    ACTION_SESSION_RESET,
    ACTION_TREAT_AS_WITHDRAW,
    BGPError,
)

IMPLEMENTATION = "python"

# The attribute-block readers are fastbgp.wire.as4's (the compiled codec has
# their C twins).
attr_spans = as4.attr_spans
split_attrs = as4.split_attrs
decode_segments = as4.decode_segments
final_segment = as4.final_segment
path_has = as4.path_has
attr_values = as4.attr_values
add_members = as4.add_members
splice_attr = as4.splice_attr
replay_edits = as4.replay_edits

_MARKER = b"\xff" * 16
KEEPALIVE = _MARKER + b"\x00\x13\x04"

# RFC 4271 §4.1-4.5 smallest legal message of each type (header included).
_MIN_LEN = {MSG_OPEN: 29, MSG_UPDATE: 23, MSG_NOTIFICATION: 21, MSG_KEEPALIVE: 19, MSG_ROUTE_REFRESH: 19}

# RFC 7606 §7: what a malformed instance of each attribute costs.  MP_* are
# decided in place (AFI/SAFI disable once the family is known).
_MALFORMED_ACTION = {
    ATTR_ORIGIN: ACTION_TREAT_AS_WITHDRAW,  # §7.1
    ATTR_AS_PATH: ACTION_TREAT_AS_WITHDRAW,  # §7.2
    ATTR_NEXT_HOP: ACTION_TREAT_AS_WITHDRAW,  # §7.3
    ATTR_MED: ACTION_TREAT_AS_WITHDRAW,  # §7.4
    ATTR_LOCAL_PREF: ACTION_TREAT_AS_WITHDRAW,  # §7.5
    ATTR_ATOMIC_AGGREGATE: ACTION_ATTRIBUTE_DISCARD,  # §7.6
    ATTR_AGGREGATOR: ACTION_ATTRIBUTE_DISCARD,  # §7.7
    ATTR_COMMUNITIES: ACTION_TREAT_AS_WITHDRAW,  # §7.8
    ATTR_ORIGINATOR_ID: ACTION_TREAT_AS_WITHDRAW,  # §7.9
    ATTR_CLUSTER_LIST: ACTION_TREAT_AS_WITHDRAW,  # §7.10
    ATTR_MP_REACH_NLRI: ACTION_SESSION_RESET,  # §7.11
    ATTR_MP_UNREACH_NLRI: ACTION_SESSION_RESET,  # §7.12
    ATTR_EXT_COMMUNITIES: ACTION_TREAT_AS_WITHDRAW,  # §7.14
    ATTR_AS4_PATH: ACTION_ATTRIBUTE_DISCARD,  # RFC 6793 §6
    ATTR_AS4_AGGREGATOR: ACTION_ATTRIBUTE_DISCARD,  # RFC 6793 §6
    ATTR_LARGE_COMMUNITY: ACTION_TREAT_AS_WITHDRAW,  # RFC 8092 §6
    ATTR_OTC: ACTION_TREAT_AS_WITHDRAW,  # RFC 9234 §5
}

# The unicast/multicast families whose NLRI we understand; any other family
# is carried as opaque bytes.
_KNOWN_AFI_BITS = {AFI_IPV4: 32, AFI_IPV6: 128}


def _known_family(afi, safi):
    return afi in _KNOWN_AFI_BITS and (safi == SAFI_UNICAST or safi == SAFI_MULTICAST)


# ---------------------------------------------------------------- framing


class MessageReader:
    """Incremental framer: feed it TCP stream chunks of any size, get back
    complete messages as (type, body) with the 19-octet header validated
    (RFC 4271 §6.1).  After an error the reader stays failed.  ``framed``:
    the octets of the bodies the last feed returned (what a queue of them
    holds)."""

    __slots__ = ("_buf", "_pos", "max_len", "framed", "_failed")

    def __init__(self, max_len=MAX_MESSAGE_LEN):
        self._buf = bytearray()
        self._pos = 0
        self.max_len = max_len
        self.framed = 0
        self._failed = None

    @property
    def buffered(self):
        return len(self._buf) - self._pos

    def feed(self, data):
        if self._failed is not None:
            raise self._failed
        buf = self._buf
        if self._pos:
            del buf[: self._pos]
            self._pos = 0
        buf += data
        out = []
        pos = 0
        n = len(buf)
        framed = self.framed = 0
        try:
            while n - pos >= HEADER_LEN:
                if buf[pos : pos + 16] != _MARKER:
                    # RFC 4271 §6.1: Connection Not Synchronized.
                    raise BGPError(1, 1, b"", "marker is not all ones")
                length = (buf[pos + 16] << 8) | buf[pos + 17]
                mtype = buf[pos + 18]
                _check_header(length, mtype, self.max_len)
                if n - pos < length:
                    break
                out.append((mtype, bytes(buf[pos + HEADER_LEN : pos + length])))
                framed += length - HEADER_LEN
                pos += length
        except BGPError as exc:
            self._failed = exc
            raise
        self.framed = framed
        self._pos = pos
        return out


def take_run(pending, first, max_octets, max_count):
    """([first, ...], octets): ``first`` (an UPDATE body already taken)
    and the UPDATE bodies that lead ``pending`` -- a deque of what feed
    returns, (type, body) tuples, and other items -- popped while fewer
    than ``max_octets`` octets and ``max_count`` bodies were taken after
    ``first``; ``octets`` counts the popped bodies.  The last one taken may
    pass ``max_octets``; anything else than an UPDATE ends the run."""
    bodies = [first]
    used = count = 0
    while pending and used < max_octets and count < max_count:
        item = pending[0]
        if type(item) is not tuple or len(item) != 2 or item[0] != MSG_UPDATE:
            break
        pending.popleft()
        used += len(item[1])
        count += 1
        bodies.append(item[1])
    return bodies, used


def _check_header(length, mtype, max_len):
    minimum = _MIN_LEN.get(mtype)
    if minimum is None:
        # RFC 4271 §6.1: Bad Message Type, data = the type octet.
        raise BGPError(1, 3, bytes((mtype,)), "unknown message type %d" % mtype)
    # RFC 8654 §4: OPEN and KEEPALIVE never exceed 4096 octets.
    limit = MAX_MESSAGE_LEN if mtype == MSG_OPEN or mtype == MSG_KEEPALIVE else max_len
    if length < minimum or length > limit or (mtype == MSG_KEEPALIVE and length != 19):
        # RFC 4271 §6.1: Bad Message Length, data = the length field.
        raise BGPError(1, 2, length.to_bytes(2, "big"), "bad length %d for message type %d" % (length, mtype))


def parse_header(data):
    """(length, type) of the 19-octet header at the start of ``data``."""
    if len(data) < HEADER_LEN:
        raise BGPError(1, 2, len(data).to_bytes(2, "big") if len(data) < 65536 else b"", "short header")
    if bytes(data[:16]) != _MARKER:
        raise BGPError(1, 1, b"", "marker is not all ones")
    length = (data[16] << 8) | data[17]
    return length, data[18]


def frame(mtype, body):
    n = HEADER_LEN + len(body)
    return _MARKER + bytes((n >> 8, n & 0xFF, mtype)) + body


# ---------------------------------------------------------------- OPEN


def parse_open(body):
    n = len(body)
    if n < 10:
        raise BGPError(1, 2, (n + HEADER_LEN).to_bytes(2, "big"), "OPEN shorter than 29 octets")
    version = body[0]
    if version != BGP_VERSION:
        # RFC 4271 §6.2: data = the largest version we support.
        raise BGPError(2, 1, b"\x00\x04", "unsupported version %d" % version)
    asn = (body[1] << 8) | body[2]
    hold = (body[3] << 8) | body[4]
    bgp_id = int.from_bytes(body[5:9], "big")
    if asn == 0:
        # RFC 7607 §2: AS 0 is never a valid My Autonomous System.
        raise BGPError(2, 2, b"", "peer AS 0")
    if hold == 1 or hold == 2:
        # RFC 4271 §6.2: a hold time of one or two seconds is unacceptable.
        raise BGPError(2, 6, b"", "hold time %d" % hold)
    if bgp_id == 0:
        # RFC 6286 §2.2: any non-zero 32-bit value is a valid identifier.
        raise BGPError(2, 3, b"", "BGP identifier is zero")
    optlen = body[9]
    pos = 10
    extended = False
    if n > 10 and optlen == 255 and body[10] == OPT_PARAM_EXTENDED_LENGTH:
        # RFC 9072 §2: type 255 marks the 2-octet length encoding.
        if n < 13:
            raise BGPError(2, 0, b"", "truncated extended optional parameters length")
        optlen = (body[11] << 8) | body[12]
        pos = 13
        extended = True
    if pos + optlen != n:
        raise BGPError(2, 0, b"", "optional parameters length %d does not match the message" % optlen)
    caps = []
    params = []
    hl = 3 if extended else 2
    while pos < n:
        if n - pos < hl:
            raise BGPError(2, 0, b"", "truncated optional parameter")
        ptype = body[pos]
        plen = ((body[pos + 1] << 8) | body[pos + 2]) if extended else body[pos + 1]
        pos += hl
        if pos + plen > n:
            raise BGPError(2, 0, b"", "optional parameter overruns the message")
        if ptype == OPT_PARAM_CAPABILITIES:
            end = pos + plen
            while pos < end:
                if end - pos < 2:
                    raise BGPError(2, 0, b"", "truncated capability")
                code = body[pos]
                clen = body[pos + 1]
                pos += 2
                if pos + clen > end:
                    raise BGPError(2, 0, b"", "capability %d overruns its parameter" % code)
                caps.append((code, bytes(body[pos : pos + clen])))
                pos += clen
        else:
            # RFC 5492 §4 / RFC 4271 §6.2: only capabilities are supported.
            raise BGPError(2, 4, b"", "unsupported optional parameter %d" % ptype)
    return ParsedOpen(version, asn, hold, bgp_id, tuple(caps), tuple(params), extended)


def build_open(asn, hold_time, bgp_id, capabilities=()):
    """An OPEN message.  ``asn`` above 65535 goes out as AS_TRANS (the real
    number travels in the 4-octet AS capability, RFC 6793 §3)."""
    my_as = asn if asn <= 0xFFFF else 23456
    caps = bytearray()
    for code, value in capabilities:
        if len(value) > 255:
            raise ValueError("capability %d value is longer than 255 octets" % code)
        caps.append(code)
        caps.append(len(value))
        caps += value
    if len(caps) + 2 <= 255:
        params = bytes((OPT_PARAM_CAPABILITIES, len(caps))) + caps if caps else b""
        opt = bytes((len(params),)) + params
    else:
        # RFC 9072 §2: too long for one octet of length.
        params = bytes((OPT_PARAM_CAPABILITIES, len(caps) >> 8, len(caps) & 0xFF)) + caps
        opt = bytes((255, OPT_PARAM_EXTENDED_LENGTH, len(params) >> 8, len(params) & 0xFF)) + params
    body = bytes((BGP_VERSION, my_as >> 8, my_as & 0xFF, hold_time >> 8, hold_time & 0xFF)) + bgp_id.to_bytes(4, "big") + opt
    return frame(MSG_OPEN, body)


# ---------------------------------------------------------------- NOTIFICATION, ROUTE-REFRESH


def parse_notification(body):
    if len(body) < 2:
        raise BGPError(1, 2, (len(body) + HEADER_LEN).to_bytes(2, "big"), "NOTIFICATION shorter than 21 octets")
    return body[0], body[1], bytes(body[2:])


def build_notification(code, subcode, data=b""):
    return frame(MSG_NOTIFICATION, bytes((code, subcode)) + data)


def parse_route_refresh(body):
    """(afi, subtype, safi); RFC 7313 §5: any length but 4 octets of body is
    a ROUTE-REFRESH Message Error carrying the whole message."""
    if len(body) != 4:
        raise BGPError(7, 1, frame(MSG_ROUTE_REFRESH, bytes(body)), "ROUTE-REFRESH body of %d octets" % len(body))
    return (body[0] << 8) | body[1], body[2], body[3]


def build_route_refresh(afi, safi, subtype=0):
    return frame(MSG_ROUTE_REFRESH, bytes((afi >> 8, afi & 0xFF, subtype, safi)))


# ---------------------------------------------------------------- prefixes


def _nlri_count(buf, start, end, maxbits, addpath):
    """Number of prefixes in buf[start:end], or -1 when the field is not a
    whole number of well-formed prefixes."""
    count = 0
    pos = start
    while pos < end:
        if addpath:
            pos += 4
            if pos >= end:
                return -1
        plen = buf[pos]
        if plen > maxbits:
            return -1
        pos += 1 + ((plen + 7) >> 3)
        count += 1
    return count if pos == end else -1


def count_prefixes(packed, afi=AFI_IPV4, addpath=False):
    """Prefix count of a packed NLRI field; ValueError when malformed."""
    n = _nlri_count(packed, 0, len(packed), _KNOWN_AFI_BITS.get(afi, 0), addpath)
    if n < 0:
        raise ValueError("malformed NLRI")
    return n


def unpack_prefixes(packed, afi=AFI_IPV4, addpath=False):
    """[(path_id, address bytes (4 or 16, host bits cleared), length)].
    Builds one tuple per prefix: for the API and tests, not the hot path."""
    width = 4 if afi == AFI_IPV4 else 16
    if count_prefixes(packed, afi, addpath) < 0:
        raise ValueError("malformed NLRI")
    out = []
    pos, n = 0, len(packed)
    while pos < n:
        pid = 0
        if addpath:
            pid = int.from_bytes(packed[pos : pos + 4], "big")
            pos += 4
        plen = packed[pos]
        nb = (plen + 7) >> 3
        addr = bytearray(packed[pos + 1 : pos + 1 + nb])
        if plen & 7:
            # RFC 4271 §4.3: trailing bits past the length are irrelevant.
            addr[-1] &= (0xFF << (8 - (plen & 7))) & 0xFF
        out.append((pid, bytes(addr) + bytes(width - nb), plen))
        pos += 1 + nb
    return out


def prefix_texts(packed, afi=AFI_IPV4):
    """The prefixes of a packed NLRI field without path ids as texts
    ("192.0.2.0/24", "2001:db8::/32": host bits cleared as in
    unpack_prefixes, IPv6 in RFC 5952 form as ``ipaddress`` writes it);
    ValueError when malformed.  For writers of text (the ExaBGP JSON
    encoder), one str per prefix."""
    items = unpack_prefixes(packed, afi, False)
    if afi == AFI_IPV4:
        return ["%d.%d.%d.%d/%d" % (a[0], a[1], a[2], a[3], n) for _i, a, n in items]
    return ["%s/%d" % (ipaddress.IPv6Address(a).compressed, n) for _i, a, n in items]


def pack_prefixes(prefixes, addpath=False):
    """Inverse of unpack_prefixes: [(path_id, address bytes, length)] -> packed."""
    out = bytearray()
    for pid, addr, plen in prefixes:
        if addpath:
            out += pid.to_bytes(4, "big")
        out.append(plen)
        out += addr[: (plen + 7) >> 3]
    return bytes(out)


# ---------------------------------------------------------------- UPDATE decode


class _State:
    """One UPDATE being parsed: the session's view of it (context and error
    policy), the errors so far, and what the attribute walk found.  (The
    compiled codec keeps the kept spans apart, in a struct on its stack.)"""

    __slots__ = ("ctx", "strict", "lenient", "errors", "action", "mp_reach", "mp_unreach", "next_hop", "n_ann", "n_wd", "spans", "seen", "dirty")

    def __init__(self, ctx, strict, lenient, n_ann, n_wd):
        self.ctx = ctx
        self.strict = strict
        self.lenient = lenient
        self.errors = []
        self.action = ACTION_NONE
        self.mp_reach = self.mp_unreach = None
        self.next_hop = b""
        self.n_ann = n_ann  # prefixes announced / withdrawn, MP_* included
        self.n_wd = n_wd
        self.spans = []  # (start, end) of the attributes kept in the canonical block
        self.seen = set()  # type codes met, for RFC 7606 §3 g repeats
        self.dirty = False  # something was dropped: the received block is not canonical

    def record(self, err):
        """Record one attribute error; raise when it resets the session (or
        always, in strict mode)."""
        if self.strict or err.action >= ACTION_AFISAFI_DISABLE:
            raise err
        self.errors.append(err)
        if err.action > self.action:
            self.action = err.action


def _as_path_ok(v, width):
    i, n = 0, len(v)
    while i < n:
        if n - i < 2:
            return False
        st, cnt = v[i], v[i + 1]
        # RFC 7606 §7.2: unknown segment type or a zero-length segment.
        if st < 1 or st > 4 or cnt == 0:
            return False
        end = i + 2 + cnt * width
        if end > n:
            return False
        # RFC 7607 §2: AS 0 anywhere in the path makes it malformed.
        zero = bytes(width)
        for k in range(i + 2, end, width):
            if v[k : k + width] == zero:
                return False
        i = end
    return i == n


def _validate(t, v, ctx):
    """None if the value of known attribute ``t`` is well formed, else
    (subcode, reason)."""
    n = len(v)
    if t == ATTR_ORIGIN:
        if n != 1:
            return 5, "ORIGIN length %d" % n
        if v[0] > 2:
            return 6, "ORIGIN value %d" % v[0]
    elif t == ATTR_AS_PATH:
        if not _as_path_ok(v, 4 if ctx.as4 else 2):
            return 11, "malformed AS_PATH"
    elif t == ATTR_AS4_PATH:
        if n < 6 or not _as_path_ok(v, 4):
            return 9, "malformed AS4_PATH"
    elif t == ATTR_NEXT_HOP:
        if n != 4:
            return 5, "NEXT_HOP length %d" % n
        # RFC 4271 §6.3: not a valid host address -- 0.0.0.0/8 (RFC 1122
        # §3.2.1.3 this network), 224/4 multicast, 240/4 class E and the
        # limited broadcast 255.255.255.255.  127/8 stays accepted on receipt:
        # a session over loopback (lab, demo, load tests) legitimately carries
        # the peer's own 127.x address; wire/nexthop.py still refuses it for
        # what we originate.
        if v[0] == 0 or v[0] >= 224:
            return 8, "NEXT_HOP %d.%d.%d.%d is not a host address" % (v[0], v[1], v[2], v[3])
    elif t == ATTR_MED or t == ATTR_LOCAL_PREF or t == ATTR_ORIGINATOR_ID or t == ATTR_OTC:
        if n != 4:
            return 5, "attribute %d length %d" % (t, n)
    elif t == ATTR_ATOMIC_AGGREGATE:
        if n != 0:
            return 5, "ATOMIC_AGGREGATE length %d" % n
    elif t == ATTR_AGGREGATOR:
        if n != (8 if ctx.as4 else 6):
            return 5, "AGGREGATOR length %d" % n
        if not any(v[: n - 4]):
            return 9, "AGGREGATOR AS 0"  # RFC 7607 §2
    elif t == ATTR_AS4_AGGREGATOR:
        if n != 8:
            return 5, "AS4_AGGREGATOR length %d" % n
        if not any(v[:4]):
            return 9, "AS4_AGGREGATOR AS 0"  # RFC 7607 §2
    elif t == ATTR_COMMUNITIES or t == ATTR_CLUSTER_LIST:
        if n == 0 or n & 3:
            return 5, "attribute %d length %d" % (t, n)
    elif t == ATTR_EXT_COMMUNITIES:
        if n == 0 or n & 7:
            return 5, "EXTENDED_COMMUNITIES length %d" % n
    elif t == ATTR_LARGE_COMMUNITY:
        if n == 0 or n % 12:
            return 5, "LARGE_COMMUNITY length %d" % n
    return None


def _mp_reach(v, ctx, lenient, data=b""):
    """(afi, safi, next_hop, nlri, count) of an MP_REACH_NLRI value."""
    n = len(v)
    if n < 5:
        raise BGPError(3, 9, data, "MP_REACH_NLRI of %d octets" % n, ACTION_SESSION_RESET, ATTR_MP_REACH_NLRI)
    afi = (v[0] << 8) | v[1]
    safi = v[2]
    nhlen = v[3]
    if 4 + nhlen + 1 > n:
        raise BGPError(3, 9, data, "MP_REACH_NLRI next hop overruns", ACTION_SESSION_RESET, ATTR_MP_REACH_NLRI)
    nh = bytes(v[4 : 4 + nhlen])
    nlri = bytes(v[5 + nhlen :])
    count = 0
    if _known_family(afi, safi):
        # RFC 4760 §3, RFC 2545 §3, RFC 8950 §3: next hop lengths we accept.
        if not lenient and nhlen not in ((4, 16, 32) if afi == AFI_IPV4 else (16, 32)):
            raise BGPError(3, 9, data, "MP_REACH_NLRI next hop length %d" % nhlen, ACTION_AFISAFI_DISABLE, ATTR_MP_REACH_NLRI)
        count = _nlri_count(nlri, 0, len(nlri), _KNOWN_AFI_BITS[afi], (afi, safi) in ctx.addpath_rx)
        if count < 0:
            # RFC 7606 §5.3: NLRI we cannot parse leaves no withdraw option.
            raise BGPError(3, 9, data, "malformed MP_REACH_NLRI prefixes", ACTION_AFISAFI_DISABLE, ATTR_MP_REACH_NLRI)
    return (afi, safi, nh, nlri), count


def _mp_next_hop_bad(nh):
    """Why the next hop of an MP_REACH_NLRI is not a host address, or None.

    RFC 4271 §6.3 (a semantically incorrect next hop: the route is ignored,
    treat-as-withdraw as for NEXT_HOP, RFC 7606 §7.3), applied to the next
    hops RFC 4760 §3 carries -- the RFC 8950 IPv6 next hop of IPv4 routes
    over IPv6 transport included: a 4-octet one by the NEXT_HOP rule (0/8,
    224/4 and up), a 16- or 32-octet one (RFC 2545 §3) when its global
    address is multicast or it is all zero (global and link-local).  An
    unspecified global before a link-local one stays (BIRD's "double"
    link-local format), and so does loopback, as 127/8 does."""
    n = len(nh)
    if n == 4:
        if nh[0] == 0 or nh[0] >= 224:
            return "MP_REACH_NLRI next hop %d.%d.%d.%d is not a host address" % (nh[0], nh[1], nh[2], nh[3])
    elif n == 16 or n == 32:
        if nh[0] == 0xFF:
            return "MP_REACH_NLRI next hop %s is a multicast address" % ipaddress.IPv6Address(bytes(nh[:16]))
        if not any(nh):
            return "MP_REACH_NLRI next hop is the unspecified address"
    return None


def _mp_unreach(v, ctx, data=b""):
    n = len(v)
    if n < 3:
        raise BGPError(3, 9, data, "MP_UNREACH_NLRI of %d octets" % n, ACTION_SESSION_RESET, ATTR_MP_UNREACH_NLRI)
    afi = (v[0] << 8) | v[1]
    safi = v[2]
    nlri = bytes(v[3:])
    count = 0
    if _known_family(afi, safi):
        count = _nlri_count(nlri, 0, len(nlri), _KNOWN_AFI_BITS[afi], (afi, safi) in ctx.addpath_rx)
        if count < 0:
            raise BGPError(3, 9, data, "malformed MP_UNREACH_NLRI prefixes", ACTION_AFISAFI_DISABLE, ATTR_MP_UNREACH_NLRI)
    return (afi, safi, nlri), count


def parse_update(body, ctx=DEFAULT_CONTEXT, strict=False, lenient=False):
    """Validate one UPDATE body and split it (see ParsedUpdate).

    Errors whose RFC 7606 action is session reset or AFI/SAFI disable raise
    BGPError; attribute-discard and treat-as-withdraw are applied and listed
    in ``errors`` -- unless ``strict``, where the first error of any kind
    raises.

    ``lenient`` is for inspecting captures (MRT files, decode tools), never
    for a session: an unrecognized well-known attribute is kept like an
    unknown optional one, an MP_REACH_NLRI next hop of unexpected length is
    kept as it is (a session must reset: RFC 4271 §6.3, RFC 7606 §7.11), and
    unknown non-transitive attributes stay (a session drops them: RFC 4271
    §5), so every octet of the capture can be shown.
    """
    n = len(body)
    if n < 4:
        raise BGPError(3, 1, b"", "UPDATE shorter than 23 octets")
    wlen = (body[0] << 8) | body[1]
    if 4 + wlen > n:
        # RFC 4271 §6.3: lengths that do not add up -> Malformed Attribute List.
        raise BGPError(3, 1, b"", "withdrawn routes length %d overruns the message" % wlen)
    alen = (body[2 + wlen] << 8) | body[3 + wlen]
    a0 = 4 + wlen
    a1 = a0 + alen
    if a1 > n:
        raise BGPError(3, 1, b"", "total path attribute length %d overruns the message" % alen)
    v4_addpath = (AFI_IPV4, SAFI_UNICAST) in ctx.addpath_rx
    n_wd = _nlri_count(body, 2, 2 + wlen, 32, v4_addpath)
    if n_wd < 0:
        # RFC 7606 §5.3: unparseable withdrawn routes -> session reset.
        raise BGPError(3, 10, b"", "malformed withdrawn routes")
    n_ann = _nlri_count(body, a1, n, 32, v4_addpath)
    if n_ann < 0:
        raise BGPError(3, 10, b"", "malformed NLRI")
    state = _State(ctx, strict, lenient, n_ann, n_wd)
    _scan_attrs(state, body, a0, a1)
    if state.n_ann and state.action != ACTION_TREAT_AS_WITHDRAW:
        _require_mandatory(state, a1 < n)

    withdrawn = bytes(body[2 : 2 + wlen])
    nlri = bytes(body[a1:])
    if state.action == ACTION_TREAT_AS_WITHDRAW:
        if state.n_ann == 0 and (state.mp_reach is None or not state.mp_reach[3]):
            # RFC 7606 §5.2: attributes without reachable NLRI -- any error
            # stronger than attribute discard resets the session.
            e = next(e for e in state.errors if e.action == ACTION_TREAT_AS_WITHDRAW)
            raise BGPError(e.code, e.subcode, e.data, e.reason, ACTION_SESSION_RESET, e.attr_type)
        return _as_withdraw(withdrawn, nlri, state.mp_reach, state.mp_unreach, state.n_ann, state.n_wd, state)
    return ParsedUpdate(
        withdrawn, _canonical_attrs(state, body, a0, a1), nlri, state.next_hop,
        state.mp_reach, state.mp_unreach, state.n_ann, state.n_wd, state.action, tuple(state.errors),
    )  # fmt: skip


def _scan_attrs(state, body, a0, a1):
    """Walk the attribute block body[a0:a1]: frame and check each attribute
    (RFC 4271 §6.3, RFC 7606 §3) and record in ``state`` what the canonical
    block keeps, the MP_* attributes and NEXT_HOP.  Every attribute dropped
    makes the block dirty."""
    ctx = state.ctx
    seen = state.seen
    pos = a0
    while pos < a1:
        start = pos
        if a1 - pos < 3 or (body[pos] & 0x10 and a1 - pos < 4):
            _overrun(state, body, pos, a1)
            state.dirty = True
            return
        flags = body[pos]
        t = body[pos + 1]
        if flags & 0x10:
            ln = (body[pos + 2] << 8) | body[pos + 3]
            vs = pos + 4
        else:
            ln = body[pos + 2]
            vs = pos + 3
        ve = vs + ln
        if ve > a1:
            _overrun(state, body, pos, a1)
            state.dirty = True
            return
        pos = ve
        if t in seen:
            if t == ATTR_MP_REACH_NLRI or t == ATTR_MP_UNREACH_NLRI:
                # RFC 7606 §3 g: repeated MP_* leaves the NLRI ambiguous.
                raise BGPError(3, 1, b"", "repeated attribute %d" % t, ACTION_SESSION_RESET, t)
            # RFC 7606 §3 g: other repeats -> keep the first, discard the rest.
            state.record(BGPError(3, 1, b"", "repeated attribute %d" % t, ACTION_ATTRIBUTE_DISCARD, t))
            state.dirty = True
            continue
        seen.add(t)
        if ctx.ebgp and (t == ATTR_LOCAL_PREF or t == ATTR_ORIGINATOR_ID or t == ATTR_CLUSTER_LIST):
            state.dirty = True  # RFC 7606 §7.5, §7.9, §7.10: discarded from an external peer.
            continue
        expected = WELL_KNOWN_FLAGS.get(t)
        if expected is None:
            if not flags & 0x80 and not state.lenient:
                # RFC 4271 §6.3: unrecognized well-known attribute.
                raise BGPError(3, 2, bytes(body[start:ve]), "unrecognized well-known attribute %d" % t, ACTION_SESSION_RESET, t)
            if not flags & 0x40 and not state.lenient:
                state.dirty = True  # RFC 4271 §5: unrecognized non-transitive: quietly ignored.
                continue
        elif (flags & 0xC0) != expected:
            # RFC 7606 §3 c: wrong Optional/Transitive bits = malformed.
            action = _MALFORMED_ACTION[t]
            if t == ATTR_MP_REACH_NLRI or t == ATTR_MP_UNREACH_NLRI:
                raise BGPError(3, 4, bytes(body[start:ve]), "attribute %d flags 0x%02x" % (t, flags), action, t)
            state.record(BGPError(3, 4, bytes(body[start:ve]), "attribute %d flags 0x%02x" % (t, flags), action, t))
            state.dirty = True
            continue
        elif t == ATTR_MP_REACH_NLRI:
            state.mp_reach, c = _mp_reach(body[vs:ve], ctx, state.lenient, bytes(body[start:ve]))
            state.n_ann += c
            why = _mp_next_hop_bad(state.mp_reach[2]) if c and not state.lenient else None
            if why is not None:
                state.record(BGPError(3, 8, bytes(body[start:ve]), why, ACTION_TREAT_AS_WITHDRAW, t))
            state.dirty = True
            continue
        elif t == ATTR_MP_UNREACH_NLRI:
            state.mp_unreach, c = _mp_unreach(body[vs:ve], ctx, bytes(body[start:ve]))
            state.n_wd += c
            state.dirty = True
            continue
        else:
            v = body[vs:ve]
            bad = _validate(t, v, ctx)
            if bad is not None:
                sub, reason = bad
                data = b"" if sub == 11 else bytes(body[start:ve])
                state.record(BGPError(3, sub, data, reason, _MALFORMED_ACTION[t], t))
                state.dirty = True
                continue
            if ctx.as4 and (t == ATTR_AS4_PATH or t == ATTR_AS4_AGGREGATOR):
                state.dirty = True  # RFC 6793 §3: a 4-octet speaker ignores AS4_* from a 4-octet peer.
                continue
            if t == ATTR_NEXT_HOP:
                state.next_hop = bytes(v)
        state.spans.append((start, ve))


def _require_mandatory(state, classic_nlri):
    """RFC 4271 §6.3 / RFC 7606 §3 d: mandatory attributes for reachability
    (NEXT_HOP only matters for IPv4 NLRI in the classic field)."""
    for t in (ATTR_ORIGIN, ATTR_AS_PATH, ATTR_NEXT_HOP):
        if t == ATTR_NEXT_HOP and not classic_nlri:
            continue
        if t not in state.seen:
            state.record(BGPError(3, 3, bytes((t,)), "missing well-known attribute %d" % t, ACTION_TREAT_AS_WITHDRAW, t))
            return


def _canonical_attrs(state, body, a0, a1):
    """The canonical attribute block: 4-octet AS numbers, only the kept
    attributes; the received block itself when nothing was dropped."""
    as4_ctx = state.ctx.as4
    if not state.dirty and as4_ctx:
        return bytes(body[a0:a1])
    attrs = b"".join(bytes(body[s:e]) for s, e in state.spans)
    if not as4_ctx and (ATTR_AS_PATH in state.seen or ATTR_AGGREGATOR in state.seen):
        merged, _notes = as4.merge_from_2octet(as4.split_attrs(attrs))
        attrs = b"".join(as4.encode_attr(f, t, v) for f, t, v in merged)
    return attrs


def _overrun(state, body, pos, a1):
    # RFC 7606 §4: treat-as-withdraw -- unless the truncated attribute is an
    # MP_* whose NLRI we then cannot see (§3 j: session reset).  Without any
    # reachable NLRI, §5.2 escalates at the end of parse_update.
    if a1 - pos >= 2 and body[pos + 1] in (ATTR_MP_REACH_NLRI, ATTR_MP_UNREACH_NLRI):
        raise BGPError(3, 1, b"", "MP attribute overruns the attribute block", ACTION_SESSION_RESET, body[pos + 1])
    state.record(BGPError(3, 1, b"", "attribute overruns the attribute block", ACTION_TREAT_AS_WITHDRAW))


def _as_withdraw(withdrawn, nlri, mp_reach, mp_unreach, n_ann, n_wd, state):
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
            raise BGPError(3, 1, b"", "treat-as-withdraw with MP_REACH and MP_UNREACH of different families", ACTION_SESSION_RESET)
    return ParsedUpdate(withdrawn + nlri, b"", b"", b"", None, mp_unreach, 0, n_wd + n_ann, ACTION_TREAT_AS_WITHDRAW, tuple(state.errors))


# ---------------------------------------------------------------- UPDATE encode


def _entry_ends(packed, addpath):
    """Offsets just past each prefix of a packed field."""
    ends = []
    pos, n = 0, len(packed)
    while pos < n:
        if addpath:
            pos += 4
            if pos >= n:
                raise ValueError("malformed packed prefixes")
        pos += 1 + ((packed[pos] + 7) >> 3)
        ends.append(pos)
    if pos != n:
        raise ValueError("malformed packed prefixes")
    return ends


def _chunks(packed, addpath, room):
    """Split packed prefixes into the fewest runs of at most ``room`` octets
    (greedy: each message is filled before the next is started)."""
    out = []
    start = 0
    prev = 0
    for end in _entry_ends(packed, addpath):
        if end - start > room:
            if prev == start:
                raise ValueError("a single prefix does not fit in a message")
            out.append(packed[start:prev])
            start = prev
        prev = end
    if prev > start:
        out.append(packed[start:prev])
    return out


def pack_updates(attrs, nlri, ctx=DEFAULT_CONTEXT, afi=AFI_IPV4, safi=SAFI_UNICAST, next_hop=None):
    """The fewest UPDATE messages announcing every prefix of ``nlri`` (packed,
    with path ids if ``ctx.addpath_tx`` has the family) with the canonical
    attribute block ``attrs``.  IPv4 unicast without ``next_hop`` uses the
    classic NLRI field (attrs must hold NEXT_HOP); anything else travels in
    an MP_REACH_NLRI built per message around ``next_hop``."""
    if not ctx.as4:
        attrs = as4.to_2octet(attrs)
    maxlen = ctx.max_message_len
    addpath = (afi, safi) in ctx.addpath_tx
    out = []
    if afi == AFI_IPV4 and safi == SAFI_UNICAST and next_hop is None:
        room = maxlen - HEADER_LEN - 4 - len(attrs)
        head = len(attrs).to_bytes(2, "big")
        for chunk in _chunks(nlri, addpath, room):
            out.append(frame(MSG_UPDATE, b"\x00\x00" + head + attrs + chunk))
        return out
    nh = bytes(next_hop or b"")
    mp_fixed = bytes((afi >> 8, afi & 0xFF, safi, len(nh))) + nh + b"\x00"
    room = maxlen - HEADER_LEN - 4 - len(attrs) - 4 - len(mp_fixed)
    for chunk in _chunks(nlri, addpath, room):
        mp = as4.encode_attr(0x80, ATTR_MP_REACH_NLRI, mp_fixed + chunk)
        total = len(mp) + len(attrs)
        out.append(frame(MSG_UPDATE, b"\x00\x00" + total.to_bytes(2, "big") + mp + attrs))
    return out


def pack_withdraws(nlri, ctx=DEFAULT_CONTEXT, afi=AFI_IPV4, safi=SAFI_UNICAST):
    """The fewest UPDATE messages withdrawing every prefix of ``nlri``."""
    maxlen = ctx.max_message_len
    addpath = (afi, safi) in ctx.addpath_tx
    out = []
    if afi == AFI_IPV4 and safi == SAFI_UNICAST:
        for chunk in _chunks(nlri, addpath, maxlen - HEADER_LEN - 4):
            out.append(frame(MSG_UPDATE, len(chunk).to_bytes(2, "big") + chunk + b"\x00\x00"))
        return out
    fixed = bytes((afi >> 8, afi & 0xFF, safi))
    for chunk in _chunks(nlri, addpath, maxlen - HEADER_LEN - 4 - 4 - 3):
        mp = as4.encode_attr(0x80, ATTR_MP_UNREACH_NLRI, fixed + chunk)
        out.append(frame(MSG_UPDATE, b"\x00\x00" + len(mp).to_bytes(2, "big") + mp))
    return out


def build_eor(afi=AFI_IPV4, safi=SAFI_UNICAST):
    """RFC 4724 §2 End-of-RIB marker."""
    if afi == AFI_IPV4 and safi == SAFI_UNICAST:
        return frame(MSG_UPDATE, b"\x00\x00\x00\x00")
    return frame(MSG_UPDATE, b"\x00\x00\x00\x06\x80\x0f\x03" + bytes((afi >> 8, afi & 0xFF, safi)))
