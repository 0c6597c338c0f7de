"""The origin AS of a route (RFC 6811 §2) and its AS_PATH for ASPA, read
from the canonical attribute block the codec gives (4-octet ASNs, RFC 6793)
with the wire layer's own walkers (``as4.attr_spans``, ``as4.final_segment`` /
``as4.decode_segments``): nothing here parses attributes by hand.
"""

from fastbgp.rpki.vrp import ORIGIN_NONE
from fastbgp.wire.codec import attr_spans, decode_segments, final_segment  # compiled when built (as4's otherwise)
from fastbgp.wire.constants import AS_CONFED_SEGMENTS, AS_SEQUENCE, ATTR_AS_PATH


def as_path_segments(attrs):
    """[(segment type, [asn, ...])] of the AS_PATH in a canonical (already
    validated, 4-octet) attribute block; [] when there is none."""
    for _flags, t, vs, ve, _start in attr_spans(attrs):
        if t == ATTR_AS_PATH:
            return decode_segments(bytes(attrs[vs:ve]), 4)
    return []


def origin_of_attrs(attrs, local_as):
    """The Route Origin ASN of RFC 6811 §2 of a canonical attribute block:
    the rightmost AS of the AS_PATH's final (non-empty) segment when it is an
    AS_SEQUENCE; ``local_as`` (the speaker's own AS) when the path is empty
    or the final segment is AS_CONFED_SEQUENCE / AS_CONFED_SET; ORIGIN_NONE
    when it is of any other type (AS_SET), which makes a covered route
    Invalid and an uncovered one NotFound.  Only the final segment is read
    (the codec's final_segment), once per new attribute set at import."""
    fin = final_segment(attrs)
    if fin is None:
        return local_as
    st, last = fin
    if st == AS_SEQUENCE:
        return last
    if st in AS_CONFED_SEGMENTS:
        return local_as
    return ORIGIN_NONE
