"""RFC 6793 conversion between 2-octet and 4-octet AS encodings.

Both codec implementations call these on UPDATEs to or from a peer without
the 4-octet AS capability.  The work is per UPDATE (never per prefix) and only
for old peers, so one shared pure-Python version serves both; the attributes
it receives were already validated by the codec.
"""

from fastbgp.wire.constants import (
    AS_CONFED_SEGMENTS,
    AS_SEQUENCE,
    AS_SET,
    AS_TRANS,
    ATTR_AGGREGATOR,
    ATTR_AS4_AGGREGATOR,
    ATTR_AS4_PATH,
    ATTR_AS_PATH,
    FLAG_EXTENDED_LENGTH,
    FLAG_OPTIONAL,
    FLAG_TRANSITIVE,
    WELL_KNOWN_FLAGS,
)


def encode_attr(flags, type_code, value):
    """One path attribute; the Extended Length bit is set exactly when the
    value needs it, or kept when the caller's flags already ask for it."""
    n = len(value)
    if n > 255 or flags & FLAG_EXTENDED_LENGTH:
        return bytes((flags | FLAG_EXTENDED_LENGTH, type_code, n >> 8, n & 0xFF)) + value
    return bytes((flags, type_code, n)) + value


def attr_spans(block, start=0, end=None):
    """[(flags, type, value start, value end, attribute start)] of the
    attributes in ``block[start:end]``: where each one and its value lie,
    without copying (RFC 4271 §4.3: flags, type, a 1-octet length or a
    2-octet one when the Extended Length bit is set).  The one walk over an
    attribute block; callers that read unvalidated bytes catch IndexError."""
    out = []
    i = start
    n = len(block) if end is None else end
    while i < n:
        flags, t = block[i], block[i + 1]
        if flags & FLAG_EXTENDED_LENGTH:
            vs = i + 4
            ve = vs + ((block[i + 2] << 8) | block[i + 3])
        else:
            vs = i + 3
            ve = vs + block[i + 2]
        out.append((flags, t, vs, ve, i))
        i = ve
    return out


def split_attrs(block):
    """[(flags, type, value)] of an already-validated attribute block."""
    return [(flags, t, bytes(block[vs:ve])) for flags, t, vs, ve, _start in attr_spans(block)]


def decode_segments(value, width):
    """[(segment type, [asn, ...])] of a validated AS_PATH / AS4_PATH value."""
    segs = []
    i, n = 0, len(value)
    while i < n:
        st, cnt = value[i], value[i + 1]
        i += 2
        asns = [int.from_bytes(value[i + k * width : i + (k + 1) * width], "big") for k in range(cnt)]
        i += cnt * width
        segs.append((st, asns))
    return segs


def final_segment(block):
    """(segment type, last ASN) of the last non-empty segment of the first
    AS_PATH in a canonical (4-octet) attribute block, or None when there is
    no AS_PATH or no ASN in it: what RFC 6811 §2 takes the origin AS from.
    The same reads (and IndexError) as attr_spans and decode_segments."""
    path = None
    for _flags, t, vs, ve, _start in attr_spans(block):
        if t == ATTR_AS_PATH and path is None:
            path = block[vs:ve]
    last = None
    for st, asns in decode_segments(path or b"", 4):
        if asns:
            last = (st, asns[-1])
    return last


# path_has: what the first AS_PATH of a block holds (an import's loop check).
PATH_PLAIN = 0  # none of the ASNs asked about, no confederation segment (or no AS_PATH)
PATH_LOOP = 1  # one of the ASNs, in any segment
PATH_CONFED = 2  # none of them, but an AS_CONFED_SEQUENCE or AS_CONFED_SET


def path_has(block, asns):
    """PATH_LOOP, PATH_CONFED or PATH_PLAIN for the first AS_PATH of a
    canonical (4-octet) attribute block and the ASNs ``asns`` (a tuple):
    the import's RFC 4271 §9.1.2 loop check and its RFC 5065 test for
    confederation segments, in one walk.  The whole path is read before
    the answer, so the same reads (and IndexError) as attr_values then
    decode_segments."""
    path = attr_values(block, (ATTR_AS_PATH,))[0]
    segs = decode_segments(path or b"", 4)
    if any(a in members for _st, members in segs for a in asns):
        return PATH_LOOP
    return PATH_CONFED if any(st in AS_CONFED_SEGMENTS for st, _members in segs) else PATH_PLAIN


def attr_values(block, types):
    """The value of the first attribute of each type in ``types`` (a tuple
    of type codes), None for a type the block lacks: what an import check
    reads from a new attribute set, in one walk.  The same reads (and
    IndexError) as attr_spans."""
    out = [None] * len(types)
    for _flags, t, vs, ve, _start in attr_spans(block):
        if t in types:
            k = types.index(t)
            if out[k] is None:
                out[k] = block[vs:ve]
    return tuple(out)


def add_members(value, add, width):
    """The members (``width`` octets each: 4 for COMMUNITIES, 12 for
    LARGE_COMMUNITY) of attribute value ``value`` followed by those of
    ``add`` it lacks, each member once, in order (RFC 1997, RFC 8092 §5:
    duplicates SHOULD NOT be sent); an incomplete member at the end of
    either is left out.  What a policy's "add" does to a route's list."""
    members = [value[k : k + width] for k in range(0, len(value) - len(value) % width, width)]
    members += [add[k : k + width] for k in range(0, len(add) - len(add) % width, width)]
    return b"".join(dict.fromkeys(members))


def replay_edits(block, edits):
    """``block`` after ``edits``, an import policy's changes as data
    (fastbgp.rib.policy._compile_actions: (type, value) sets the attribute
    to ``value``; (type, members, width, fresh) adds ``members`` with
    add_members, ``fresh`` being the value when the block has none), each
    spliced in with splice_attr; None when only the actions themselves can
    say (types not strictly increasing, a value whose length is not a
    multiple of its members', an add to an absent attribute with nothing
    to add).  An attribute the block lacks gets its well-known flags;
    ``block`` itself when nothing changed."""
    out = block
    for e in edits:
        t = e[0]
        cur = None
        flags = WELL_KNOWN_FLAGS[t]
        for sp in attr_spans(out):
            if sp[1] == t:
                cur = out[sp[2] : sp[3]]
                flags = sp[0]
                break
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
        out = splice_attr(out, t, encode_attr(flags & ~FLAG_EXTENDED_LENGTH, t, new))
        if out is None:
            return None
    return block if out == block else out


def splice_attr(block, type_code, encoded):
    """``block`` with attribute ``type_code`` replaced by (absent: inserted
    before the first attribute of a higher type as) ``encoded``, b""
    removing it; None when the types are not strictly increasing (a
    duplicate or an unsorted block: only a full rebuild keeps the exact
    bytes then).  In a sorted block the attributes before and after the
    type are two contiguous runs, so no other attribute is re-encoded."""
    spans = attr_spans(block)
    prev = -1
    for sp in spans:
        if sp[1] <= prev:
            return None
        prev = sp[1]
    p = q = len(block)
    for sp in spans:
        if sp[1] >= type_code:
            p, q = (sp[4], sp[3]) if sp[1] == type_code else (sp[4], sp[4])
            break
    return block[:p] + encoded + block[q:]


def encode_segments(segs, width):
    out = bytearray()
    for st, asns in segs:
        # RFC 4271 §5.1.2: a segment holds at most 255 ASNs; longer runs split.
        for k in range(0, len(asns), 255) if asns else (0,):
            chunk = asns[k : k + 255]
            out.append(st)
            out.append(len(chunk))
            for a in chunk:
                out += a.to_bytes(width, "big")
    return bytes(out)


def path_length(segs):
    """RFC 6793 §4.2.3 counting: an AS_SET counts 1, confederation segments 0."""
    n = 0
    for st, asns in segs:
        if st == AS_SET:
            n += 1
        elif st not in AS_CONFED_SEGMENTS:
            n += len(asns)
    return n


def _merge_paths(segs2, segs4):
    # RFC 6793 §4.2.3: keep the leading (len(AS_PATH) - len(AS4_PATH)) ASes of
    # AS_PATH (those added by 2-octet speakers after the path left the 4-octet
    # world), then append AS4_PATH which has the real 4-octet numbers.
    drop_to = path_length(segs2) - path_length(segs4)
    head = []
    kept = 0
    for st, asns in segs2:
        if kept >= drop_to and st not in AS_CONFED_SEGMENTS:
            break
        if st in AS_CONFED_SEGMENTS:
            head.append((st, asns))
        elif st == AS_SET:
            head.append((st, asns))
            kept += 1
        else:
            take = asns[: drop_to - kept]
            kept += len(take)
            head.append((st, take))
    if head and segs4 and head[-1][0] == segs4[0][0] == AS_SEQUENCE:
        # One AS_SEQUENCE split only by the 2/4-octet boundary is one
        # segment, as the 4-octet speaker that built it sent it.
        return head[:-1] + [(AS_SEQUENCE, head[-1][1] + segs4[0][1])] + segs4[1:]
    return head + segs4


def merge_from_2octet(attrs):
    """Attributes from a 2-octet peer -> canonical 4-octet form.

    ``attrs`` is [(flags, type, value)]; AS_PATH and AGGREGATOR are in 2-octet
    form.  Returns (new attrs, list of reasons for ignored AS4_* attributes).
    """
    by_type = {t: v for _f, t, v in attrs}
    notes = []
    as_path = decode_segments(by_type.get(ATTR_AS_PATH, b""), 2)
    as4_path = None
    if ATTR_AS4_PATH in by_type:
        as4_path = decode_segments(by_type[ATTR_AS4_PATH], 4)
        if any(st in AS_CONFED_SEGMENTS for st, _ in as4_path):
            # RFC 6793 §6: confederation segments have no place in AS4_PATH.
            notes.append("AS_CONFED_* segments dropped from AS4_PATH")
            as4_path = [(st, a) for st, a in as4_path if st not in AS_CONFED_SEGMENTS]
    agg = by_type.get(ATTR_AGGREGATOR)
    agg4 = by_type.get(ATTR_AS4_AGGREGATOR)
    new_agg = None
    if agg is not None:
        agg_as = int.from_bytes(agg[:2], "big")
        if agg4 is not None and agg_as != AS_TRANS:
            # RFC 6793 §4.2.3: a 2-octet speaker aggregated after the 4-octet
            # information was added; both AS4_* attributes are stale.
            notes.append("AGGREGATOR is not AS_TRANS: AS4_AGGREGATOR and AS4_PATH ignored")
            agg4 = None
            as4_path = None
        if agg4 is not None:
            new_agg = agg4
        else:
            new_agg = agg_as.to_bytes(4, "big") + agg[2:6]
    if as4_path is not None and path_length(as_path) < path_length(as4_path):
        notes.append("AS4_PATH longer than AS_PATH ignored")
        as4_path = None
    merged = _merge_paths(as_path, as4_path) if as4_path is not None else as_path
    out = []
    for f, t, v in attrs:
        if t == ATTR_AS_PATH:
            out.append((f, t, encode_segments(merged, 4)))
        elif t == ATTR_AGGREGATOR:
            out.append((f, t, new_agg))
        elif t in (ATTR_AS4_PATH, ATTR_AS4_AGGREGATOR):
            continue
        else:
            out.append((f, t, v))
    return out, notes


def to_2octet(block):
    """Canonical (4-octet) attribute block -> what a 2-octet peer gets:
    AS_TRANS in place of every wide ASN plus AS4_PATH / AS4_AGGREGATOR
    carrying the real numbers (RFC 6793 §4.2.2)."""
    out = bytearray()
    extra = []
    for f, t, v in split_attrs(block):
        if t == ATTR_AS_PATH:
            segs = decode_segments(v, 4)
            wide = any(a > 0xFFFF for _st, asns in segs for a in asns)
            narrow = [(st, [a if a <= 0xFFFF else AS_TRANS for a in asns]) for st, asns in segs]
            out += encode_attr(f, t, encode_segments(narrow, 2))
            # RFC 6793 §4.2.2: AS4_PATH never carries confederation segments
            # (and an empty one would be malformed, §6).
            segs4 = [(st, a) for st, a in segs if st not in AS_CONFED_SEGMENTS]
            if wide and segs4:
                extra.append(encode_attr(FLAG_OPTIONAL | FLAG_TRANSITIVE, ATTR_AS4_PATH, encode_segments(segs4, 4)))
        elif t == ATTR_AGGREGATOR and len(v) == 8:
            asn = int.from_bytes(v[:4], "big")
            if asn > 0xFFFF:
                out += encode_attr(f, t, AS_TRANS.to_bytes(2, "big") + v[4:])
                extra.append(encode_attr(FLAG_OPTIONAL | FLAG_TRANSITIVE, ATTR_AS4_AGGREGATOR, v))
            else:
                out += encode_attr(f, t, v[2:])
        elif t in (ATTR_AS4_PATH, ATTR_AS4_AGGREGATOR):
            continue  # recomputed above from the canonical values
        else:
            out += encode_attr(f, t, v)
    for e in extra:
        out += e
    return bytes(out)
