"""Wire builders and hypothesis strategies for the codec tests.

Everything here is written from the RFC message layouts, independently of the
codec under test, so a test that builds a message with these helpers and
parses it with the codec checks the codec against the RFC, not against
itself.

Layouts used (octets):
  header        RFC 4271 §4.1   marker(16) length(2) type(1)
  UPDATE body   RFC 4271 §4.3   wlen(2) withdrawn  alen(2) attributes  nlri
  attribute     RFC 4271 §4.3   flags(1) type(1) len(1 or 2, Extended Length bit) value
  prefix        RFC 4271 §4.3   plen(1) ceil(plen/8) octets; RFC 7911 §3 path id(4) first
  MP_REACH      RFC 4760 §3     afi(2) safi(1) nhlen(1) nh reserved(1) nlri
  MP_UNREACH    RFC 4760 §4     afi(2) safi(1) nlri
  AS_PATH       RFC 4271 §4.3   (seg type(1) count(1) ASNs(count * 2 or 4))*
"""

import ipaddress

from hypothesis import strategies as st

from fastbgp.wire.types import Context

MARKER = b"\xff" * 16

# Path attribute type codes (RFC 4271 §5 and the RFCs named in constants.py).
ORIGIN, AS_PATH, NEXT_HOP, MED, LOCAL_PREF, ATOMIC_AGGREGATE, AGGREGATOR = 1, 2, 3, 4, 5, 6, 7
COMMUNITIES, ORIGINATOR_ID, CLUSTER_LIST = 8, 9, 10
MP_REACH, MP_UNREACH, EXT_COMMUNITIES, AS4_PATH, AS4_AGGREGATOR = 14, 15, 16, 17, 18
LARGE_COMMUNITY, OTC = 32, 35
KNOWN_TYPES = frozenset((1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 14, 15, 16, 17, 18, 32, 35))
# Type codes the codec does not know: what an unknown optional attribute may use.
UNKNOWN_TYPES = tuple(t for t in range(1, 255) if t not in KNOWN_TYPES)

AS_SET, AS_SEQUENCE, AS_CONFED_SEQUENCE, AS_CONFED_SET = 1, 2, 3, 4
AS_TRANS = 23456

IBGP = Context()
EBGP = Context(ebgp=True)
OLD = Context(as4=False)  # a peer without the 4-octet AS capability (RFC 6793 "OLD speaker")


# ---------------------------------------------------------------- framing


def header(length, mtype):
    return MARKER + length.to_bytes(2, "big") + bytes((mtype,))


def message(mtype, body):
    return header(19 + len(body), mtype) + body


def body_of(msg):
    """The body of one framed message (the 19-octet header stripped)."""
    assert msg[:16] == MARKER
    assert int.from_bytes(msg[16:18], "big") == len(msg)
    return msg[19:]


KEEPALIVE = message(4, b"")


# ---------------------------------------------------------------- attributes


def attr(flags, type_code, value, extended=None):
    """One path attribute.  ``extended`` forces the 2-octet length form; by
    default it is used exactly when the value needs it (> 255 octets)."""
    value = bytes(value)
    if extended is None:
        extended = len(value) > 255
    if extended:
        return bytes((flags | 0x10, type_code)) + len(value).to_bytes(2, "big") + value
    return bytes((flags & ~0x10 & 0xFF, type_code, len(value))) + value


def raw_attr(flags, type_code, length, value):
    """An attribute whose length field says ``length`` whatever the value is."""
    if flags & 0x10:
        return bytes((flags, type_code)) + length.to_bytes(2, "big") + bytes(value)
    return bytes((flags, type_code, length)) + bytes(value)


def ip4(text):
    return ipaddress.IPv4Address(text).packed


def ip6(text):
    return ipaddress.IPv6Address(text).packed


def segments(segs, width=4):
    out = bytearray()
    for seg_type, asns in segs:
        out.append(seg_type)
        out.append(len(asns))
        for a in asns:
            out += a.to_bytes(width, "big")
    return bytes(out)


def origin(value=0, flags=0x40):
    return attr(flags, ORIGIN, bytes((value,)))


def as_path(segs=((AS_SEQUENCE, (65001,)),), width=4, flags=0x40):
    return attr(flags, AS_PATH, segments(segs, width))


def as4_path(segs, flags=0xC0):
    return attr(flags, AS4_PATH, segments(segs, 4))


def next_hop(text="192.0.2.1", flags=0x40):
    return attr(flags, NEXT_HOP, ip4(text))


def med(value=100, flags=0x80):
    return attr(flags, MED, value.to_bytes(4, "big"))


def local_pref(value=100, flags=0x40):
    return attr(flags, LOCAL_PREF, value.to_bytes(4, "big"))


def atomic_aggregate(flags=0x40):
    return attr(flags, ATOMIC_AGGREGATE, b"")


def aggregator(asn, text="192.0.2.9", width=4, flags=0xC0):
    return attr(flags, AGGREGATOR, asn.to_bytes(width, "big") + ip4(text))


def as4_aggregator(asn, text="192.0.2.9", flags=0xC0):
    return attr(flags, AS4_AGGREGATOR, asn.to_bytes(4, "big") + ip4(text))


def communities(*values, flags=0xC0):
    return attr(flags, COMMUNITIES, b"".join(v.to_bytes(4, "big") for v in values))


def ext_communities(*values, flags=0xC0):
    return attr(flags, EXT_COMMUNITIES, b"".join(v.to_bytes(8, "big") for v in values))


def large_communities(*triples, flags=0xC0):
    return attr(flags, LARGE_COMMUNITY, b"".join(a.to_bytes(4, "big") + b.to_bytes(4, "big") + c.to_bytes(4, "big") for a, b, c in triples))


def originator_id(text="192.0.2.77", flags=0x80):
    return attr(flags, ORIGINATOR_ID, ip4(text))


def cluster_list(*texts, flags=0x80):
    return attr(flags, CLUSTER_LIST, b"".join(ip4(t) for t in texts))


def otc(asn=65001, flags=0xC0):
    return attr(flags, OTC, asn.to_bytes(4, "big"))


def mp_reach_value(afi, safi, nh, nlri):
    return afi.to_bytes(2, "big") + bytes((safi, len(nh))) + bytes(nh) + b"\x00" + bytes(nlri)


def mp_reach(afi, safi, nh, nlri, flags=0x80, extended=None):
    return attr(flags, MP_REACH, mp_reach_value(afi, safi, nh, nlri), extended)


def mp_unreach(afi, safi, nlri=b"", flags=0x80, extended=None):
    return attr(flags, MP_UNREACH, afi.to_bytes(2, "big") + bytes((safi,)) + bytes(nlri), extended)


def split_attrs(block):
    """[(flags, type, value)] of a well-formed attribute block."""
    out = []
    i = 0
    while i < len(block):
        flags, t = block[i], block[i + 1]
        if flags & 0x10:
            n = int.from_bytes(block[i + 2 : i + 4], "big")
            i += 4
        else:
            n = block[i + 2]
            i += 3
        out.append((flags, t, bytes(block[i : i + n])))
        i += n
    return out


def attr_types(block):
    return [t for _f, t, _v in split_attrs(block)]


def attr_value(block, type_code):
    for _f, t, v in split_attrs(block):
        if t == type_code:
            return v
    return None


def decode_segments(value, width=4):
    segs = []
    i = 0
    while i < len(value):
        seg_type, cnt = value[i], value[i + 1]
        i += 2
        segs.append((seg_type, tuple(int.from_bytes(value[i + k * width : i + (k + 1) * width], "big") for k in range(cnt))))
        i += cnt * width
    return segs


def normal_path(segs):
    """AS path with adjacent AS_SEQUENCE segments joined: two encodings of
    the same path compare equal."""
    out = []
    for seg_type, asns in segs:
        if out and seg_type == AS_SEQUENCE and out[-1][0] == AS_SEQUENCE:
            out[-1] = (AS_SEQUENCE, out[-1][1] + tuple(asns))
        else:
            out.append((seg_type, tuple(asns)))
    return out


# ---------------------------------------------------------------- prefixes


def prefix(text, path_id=None):
    """One packed prefix from "a.b.c.d/n" or an IPv6 "x::/n" (host bits must be clear)."""
    net = ipaddress.ip_network(text)
    nb = (net.prefixlen + 7) // 8
    out = bytes((net.prefixlen,)) + net.network_address.packed[:nb]
    if path_id is not None:
        out = path_id.to_bytes(4, "big") + out
    return out


def prefixes(*texts, path_id=None):
    return b"".join(prefix(t, path_id) for t in texts)


def pack(entries, addpath=False):
    """Packed NLRI from [(path_id, address, length)] written from RFC 4271 §4.3 / RFC 7911 §3."""
    out = bytearray()
    for pid, addr, plen in entries:
        if addpath:
            out += pid.to_bytes(4, "big")
        out.append(plen)
        out += addr[: (plen + 7) // 8]
    return bytes(out)


def slash24s(count, first=0x0A000000):
    """``count`` consecutive /24s, packed (4 octets each)."""
    return b"".join(bytes((24,)) + (first + (k << 8)).to_bytes(4, "big")[:3] for k in range(count))


# ---------------------------------------------------------------- UPDATE


def update_body(withdrawn=b"", attrs=b"", nlri=b""):
    return len(withdrawn).to_bytes(2, "big") + withdrawn + len(attrs).to_bytes(2, "big") + attrs + nlri


def update(withdrawn=b"", attrs=b"", nlri=b""):
    return message(2, update_body(withdrawn, attrs, nlri))


BASE_ATTRS = origin(0) + as_path() + next_hop()
BASE_NLRI = prefixes("10.0.0.0/24", "10.1.0.0/16")


# ---------------------------------------------------------------- OPEN


def open_body(version=4, asn=65001, hold=90, bgp_id=0x0A000001, opt=b""):
    return bytes((version,)) + asn.to_bytes(2, "big") + hold.to_bytes(2, "big") + bgp_id.to_bytes(4, "big") + bytes((len(opt),)) + opt


def caps_param(caps):
    """One Capabilities optional parameter (RFC 5492 §4), 1-octet length."""
    value = b"".join(bytes((code, len(v))) + v for code, v in caps)
    return bytes((2, len(value))) + value


def extended_open_body(caps, asn=65001, hold=90, bgp_id=0x0A000001):
    """OPEN body in the RFC 9072 §2 encoding: Non-Ext OP Len = 255,
    Non-Ext OP Type = 255, Extended Opt. Parm. Length (2), then parameters
    with 2-octet lengths."""
    value = b"".join(bytes((code, len(v))) + v for code, v in caps)
    params = bytes((2,)) + len(value).to_bytes(2, "big") + value
    return (
        bytes((4,)) + asn.to_bytes(2, "big") + hold.to_bytes(2, "big") + bgp_id.to_bytes(4, "big")
        + b"\xff\xff" + len(params).to_bytes(2, "big") + params
    )


# ---------------------------------------------------------------- strategies

FAMILIES = ((1, 1), (2, 1), (1, 2), (2, 2))


@st.composite
def prefix_entry(draw, afi, addpath):
    """(path_id, address (4 or 16 octets, host bits clear), length)."""
    bits = 32 if afi == 1 else 128
    plen = draw(st.integers(0, bits))
    value = draw(st.integers(0, (1 << bits) - 1))
    value &= ((1 << bits) - 1) ^ ((1 << (bits - plen)) - 1)
    pid = draw(st.integers(0, 0xFFFFFFFF)) if addpath else 0
    return (pid, value.to_bytes(bits // 8, "big"), plen)


def prefix_lists(afi, addpath, min_size=0, max_size=60):
    return st.lists(prefix_entry(afi, addpath), min_size=min_size, max_size=max_size)


asns = st.one_of(st.integers(1, 0xFFFF), st.integers(0x10000, 0xFFFFFFFF))


@st.composite
def path_segments(draw, as4):
    """AS_PATH segments in canonical form.  For an OLD (2-octet) session the
    only confederation segments are leading ones with 2-octet members: RFC
    6793 §4.2.2 keeps confederation segments out of AS4_PATH, so any other
    placement cannot survive the AS_TRANS round trip by design."""
    segs = []
    if draw(st.booleans()):
        member = st.integers(1, 0xFFFF) if not as4 else asns
        for _ in range(draw(st.integers(1, 2))):
            segs.append((draw(st.sampled_from((AS_CONFED_SEQUENCE, AS_CONFED_SET))), tuple(draw(st.lists(member, min_size=1, max_size=4)))))
    for _ in range(draw(st.integers(0, 3))):
        segs.append((draw(st.sampled_from((AS_SEQUENCE, AS_SET))), tuple(draw(st.lists(asns, min_size=1, max_size=8)))))
    return segs


def _flags(base):
    # Extended Length may be used even for a short value (RFC 4271 §4.3);
    # the canonical block keeps whichever form was chosen.
    return st.sampled_from((base, base | 0x10))


@st.composite
def canonical_attrs(draw, as4=True, need_next_hop=True):
    """A valid attribute block in canonical form: 4-octet ASNs, no MP_*, no
    AS4_*, each type at most once, in random order.  ORIGIN and AS_PATH are
    always present; NEXT_HOP when ``need_next_hop``."""
    parts = []

    def add(flags_base, t, value):
        f = draw(_flags(flags_base))
        parts.append(attr(f, t, value, extended=bool(f & 0x10) or len(value) > 255))

    add(0x40, ORIGIN, bytes((draw(st.integers(0, 2)),)))
    add(0x40, AS_PATH, segments(draw(path_segments(as4)), 4))
    if need_next_hop:
        add(0x40, NEXT_HOP, bytes((draw(st.integers(1, 223)),)) + draw(st.binary(min_size=3, max_size=3)))
    if draw(st.booleans()):
        add(0x80, MED, draw(st.binary(min_size=4, max_size=4)))
    if draw(st.booleans()):
        add(0x40, LOCAL_PREF, draw(st.binary(min_size=4, max_size=4)))
    if draw(st.booleans()):
        add(0x40, ATOMIC_AGGREGATE, b"")
    if draw(st.booleans()):
        add(0xC0, AGGREGATOR, draw(asns).to_bytes(4, "big") + draw(st.binary(min_size=4, max_size=4)))
    if draw(st.booleans()):
        add(0xC0, COMMUNITIES, b"".join(draw(st.lists(st.binary(min_size=4, max_size=4), min_size=1, max_size=10))))
    if draw(st.booleans()):
        add(0x80, ORIGINATOR_ID, draw(st.binary(min_size=4, max_size=4)))
    if draw(st.booleans()):
        add(0x80, CLUSTER_LIST, b"".join(draw(st.lists(st.binary(min_size=4, max_size=4), min_size=1, max_size=5))))
    if draw(st.booleans()):
        add(0xC0, EXT_COMMUNITIES, b"".join(draw(st.lists(st.binary(min_size=8, max_size=8), min_size=1, max_size=5))))
    if draw(st.booleans()):
        add(0xC0, LARGE_COMMUNITY, b"".join(draw(st.lists(st.binary(min_size=12, max_size=12), min_size=1, max_size=4))))
    if draw(st.booleans()):
        add(0xC0, OTC, draw(st.binary(min_size=4, max_size=4)))
    # RFC 4271 §5: unrecognized optional transitive attributes are kept and
    # passed on (Partial bit possibly already set upstream).
    for t in draw(st.lists(st.sampled_from(UNKNOWN_TYPES), unique=True, max_size=3)):
        base = draw(st.sampled_from((0xC0, 0xE0)))
        add(base, t, draw(st.binary(max_size=300)))
    order = draw(st.permutations(range(len(parts))))
    return b"".join(parts[k] for k in order)


@st.composite
def update_cases(draw):
    """Everything pack_updates needs for one announcement, plus the matching
    receive context: dict(afi, safi, as4, addpath, extended, entries, attrs, nh)."""
    afi, safi = draw(st.sampled_from(FAMILIES))
    as4 = draw(st.booleans())
    addpath = draw(st.booleans())
    extended = draw(st.booleans())
    entries = draw(prefix_lists(afi, addpath, min_size=1, max_size=80))
    classic = afi == 1 and safi == 1 and draw(st.booleans())
    attrs = draw(canonical_attrs(as4=as4, need_next_hop=classic))
    if classic:
        nh = None
    elif afi == 1:
        nh = draw(st.sampled_from((ip4("192.0.2.1"), ip6("2001:db8::1"), ip6("2001:db8::1") + ip6("fe80::1"))))
    else:
        nh = draw(st.sampled_from((ip6("2001:db8::1"), ip6("2001:db8::1") + ip6("fe80::1"))))
    fams = frozenset({(afi, safi)}) if addpath else frozenset()
    return {
        "afi": afi,
        "safi": safi,
        "as4": as4,
        "addpath": addpath,
        "extended": extended,
        "entries": entries,
        "attrs": attrs,
        "nh": nh,
        "tx": Context(as4=as4, addpath_tx=fams, extended_message=extended),
        "rx": Context(as4=as4, addpath_rx=fams, extended_message=extended),
    }


contexts = st.builds(
    Context,
    as4=st.booleans(),
    addpath_rx=st.frozensets(st.sampled_from(FAMILIES)),
    addpath_tx=st.frozensets(st.sampled_from(FAMILIES)),
    extended_message=st.booleans(),
    ebgp=st.booleans(),
)


@st.composite
def valid_update_bodies(draw):
    """(body, ctx) of a well-formed UPDATE mixing every field: withdrawn,
    NLRI, MP_REACH, MP_UNREACH, in any order (RFC 7606 §5.1: a receiver must
    accept any position or combination)."""
    as4 = draw(st.booleans())
    addpath = draw(st.frozensets(st.sampled_from(FAMILIES)))
    ctx = Context(as4=as4, addpath_rx=addpath, ebgp=draw(st.booleans()))
    v4ap = (1, 1) in addpath
    withdrawn = pack(draw(prefix_lists(1, v4ap, max_size=8)), v4ap)
    nlri = pack(draw(prefix_lists(1, v4ap, max_size=8)), v4ap)
    attrs = draw(canonical_attrs(as4=True, need_next_hop=True))
    if not as4:
        from fastbgp.wire import as4 as as4mod  # the RFC 6793 encoder is shared by both codecs

        attrs = as4mod.to_2octet(attrs)
    parts = [attrs]
    if draw(st.booleans()):
        afi, safi = draw(st.sampled_from(FAMILIES))
        ap = (afi, safi) in addpath
        nh = ip4("192.0.2.1") if afi == 1 else ip6("2001:db8::1")
        parts.append(mp_reach(afi, safi, nh, pack(draw(prefix_lists(afi, ap, max_size=8)), ap)))
    if draw(st.booleans()):
        afi, safi = draw(st.sampled_from(FAMILIES))
        ap = (afi, safi) in addpath
        parts.append(mp_unreach(afi, safi, pack(draw(prefix_lists(afi, ap, max_size=8)), ap)))
    order = draw(st.permutations(range(len(parts))))
    return update_body(withdrawn, b"".join(parts[k] for k in order), nlri), ctx


@st.composite
def mutated(draw, data):
    """``data`` with one to three damaging edits: bit flips, truncation,
    inserted or deleted octets, or a 1- or 2-octet field overwritten with a
    boundary value (what length fields get wrong)."""
    b = bytearray(data)
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(("flip", "truncate", "insert", "delete", "byte", "word")))
        if kind == "truncate":
            del b[draw(st.integers(0, len(b))) :]
        elif kind == "insert":
            at = draw(st.integers(0, len(b)))
            b[at:at] = draw(st.binary(min_size=1, max_size=4))
        elif not b:
            continue
        elif kind == "flip":
            at = draw(st.integers(0, len(b) - 1))
            b[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "delete":
            at = draw(st.integers(0, len(b) - 1))
            del b[at : at + draw(st.integers(1, 4))]
        elif kind == "byte":
            b[draw(st.integers(0, len(b) - 1))] = draw(st.sampled_from((0, 1, 2, 3, 4, 0x7F, 0x80, 0xFE, 0xFF)))
        else:
            at = draw(st.integers(0, max(0, len(b) - 2)))
            b[at : at + 2] = draw(st.sampled_from((0, 1, 2, 3, 0xFF, 0x100, 0x7FFF, 0xFFFF))).to_bytes(2, "big")
    return bytes(b)


@st.composite
def mutated_updates(draw):
    body, ctx = draw(valid_update_bodies())
    return draw(mutated(body)), ctx


@st.composite
def open_bodies(draw):
    caps = draw(st.lists(st.tuples(st.integers(0, 255), st.binary(max_size=20)), max_size=20))
    if draw(st.booleans()):
        return extended_open_body(caps)
    value = b"".join(bytes((c, len(v))) + v for c, v in caps)[:200]
    return open_body(opt=bytes((2, len(value))) + value)


@st.composite
def message_streams(draw):
    """A byte stream of framed messages (valid, or with damage), and the
    points at which TCP delivered it."""
    msgs = []
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(("keepalive", "update", "open", "notification", "refresh", "garbage", "mutated")))
        if kind == "keepalive":
            msgs.append(KEEPALIVE)
        elif kind == "update":
            msgs.append(message(2, draw(valid_update_bodies())[0]))
        elif kind == "open":
            msgs.append(message(1, draw(open_bodies())))
        elif kind == "notification":
            msgs.append(message(3, bytes((6, 2)) + draw(st.binary(max_size=10))))
        elif kind == "refresh":
            msgs.append(message(5, b"\x00\x01\x00\x01"))
        elif kind == "garbage":
            msgs.append(draw(st.binary(max_size=40)))
        else:
            msgs.append(draw(mutated(message(2, update_body(b"", BASE_ATTRS, BASE_NLRI)))))
    stream = b"".join(msgs)
    cuts = sorted(draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    return stream, cuts


def chunks(stream, cuts):
    out = []
    prev = 0
    for c in list(cuts) + [len(stream)]:
        out.append(stream[prev:c])
        prev = c
    return out
