"""BGP confederations (RFC 5065): who is a confederation peer, and the
AS_PATH rewrites and checks at the confederation boundary.

A confederation splits one AS (the *confederation identifier*, the AS the
rest of the world sees) into member ASes; we are one member AS (the
``global.asn``).  RFC 5065 §4: a neighbour in another member AS is a
*confederation peer* -- an eBGP session (its OPEN names its member AS, ours
names ours) over which routes travel with their internal attributes
(LOCAL_PREF, MED, NEXT_HOP unchanged) and with the member ASes crossed kept
in AS_CONFED_SEQUENCE segments.  Every other external neighbour sees the
identifier and no confederation segment.

Everything here works on the packed 4-octet AS_PATH value of one attribute
set (never per prefix): the export layer calls it once per attribute set
and group and caches the result, the importer once per attribute set of a
peer.  Segments are parsed and built by :mod:`fastbgp.wire.as4`, the one
AS_PATH parser.

Best-path selection needs nothing from here: :mod:`fastbgp.rib.attrs`
already leaves confederation segments out of the AS_PATH length (RFC 5065
§5.3) and skips them when it picks the neighbour AS whose routes' MEDs are
compared (RFC 5065 §5.2: "skip all the autonomous systems in the
AS_CONFED_SET and AS_CONFED_SEQUENCE"); both RIB twins read those words.
So MEDs of routes that entered the confederation through the same
neighbouring AS are compared whichever member AS they crossed, and routes
originated inside the confederation (no AS_SEQUENCE) are compared together.
"""

from __future__ import annotations

from fastbgp.wire.as4 import encode_segments
from fastbgp.wire.codec import decode_segments  # compiled when built (as4's otherwise)
from fastbgp.wire.constants import AS_CONFED_SEQUENCE, AS_CONFED_SEGMENTS, AS_SEQUENCE, AS_SET

__all__ = ["Confederation", "of_config", "strip", "prepend", "has_segments", "is_loop", "malformed"]


class Confederation:
    """Our place in a confederation: ``identifier`` (the AS outsiders see),
    ``member_as`` (our own member AS) and ``members`` (every member AS,
    ours included)."""

    __slots__ = ("identifier", "member_as", "members")

    def __init__(self, identifier, member_as, members):
        self.identifier = int(identifier)
        self.member_as = int(member_as)
        self.members = frozenset(int(m) for m in members)

    def __repr__(self):
        return "Confederation(%d, member %d of %s)" % (self.identifier, self.member_as, sorted(self.members))

    def is_peer(self, peer_as):
        """RFC 5065 §4: ``peer_as`` is another member AS of ours."""
        return peer_as != self.member_as and peer_as in self.members

    def session_as(self, peer_as):
        """The AS we speak as towards ``peer_as``: our member AS inside the
        confederation (iBGP and confederation peers), the identifier to
        everyone else (RFC 5065 §4)."""
        return self.member_as if peer_as in self.members else self.identifier


def of_config(glob):
    """The Confederation of a ``config.schema.GlobalConfig``, or None."""
    c = getattr(glob, "confederation", None)
    if c is None:
        return None
    return Confederation(c.identifier, glob.asn, c.members)


def has_segments(value):
    """Whether an AS_PATH value holds an AS_CONFED_SEQUENCE or AS_CONFED_SET."""
    return any(st in AS_CONFED_SEGMENTS for st, _asns in decode_segments(value, 4))


def strip(value):
    """RFC 5065 §5: the AS_PATH value with every confederation segment
    removed, for a peer outside the confederation.  The value itself when
    there is none (no copy)."""
    segs = decode_segments(value, 4)
    if not any(st in AS_CONFED_SEGMENTS for st, _asns in segs):
        return value
    kept = [(st, asns) for st, asns in segs if st not in AS_CONFED_SEGMENTS]
    # Removing a leading confederation segment may leave two AS_SEQUENCEs
    # side by side only if they were apart before; nothing to merge then.
    return encode_segments(kept, 4)


def prepend(value, member_as):
    """RFC 5065 §4 (1): towards a confederation peer our member AS goes in
    front, into the leading AS_CONFED_SEQUENCE, or a new one when the path
    starts otherwise or that segment is full (255 ASes, RFC 4271 §4.3)."""
    segs = decode_segments(value, 4) if value else []
    if segs and segs[0][0] == AS_CONFED_SEQUENCE and len(segs[0][1]) < 255:
        segs[0] = (AS_CONFED_SEQUENCE, [member_as] + segs[0][1])
    else:
        segs.insert(0, (AS_CONFED_SEQUENCE, [member_as]))
    return encode_segments(segs, 4)


def is_loop(value, confed):
    """RFC 5065 §5.2 loop detection: our member AS in a confederation
    segment (the route went round inside the confederation), or the
    identifier in an AS_SEQUENCE / AS_SET (it left and came back)."""
    for st, asns in decode_segments(value, 4):
        if st in AS_CONFED_SEGMENTS:
            if confed.member_as in asns:
                return True
        elif st in (AS_SEQUENCE, AS_SET) and confed.identifier in asns:
            return True
    return False


def malformed(value, from_confed_peer, segs=None):
    """RFC 5065 §5 error handling, the reason or None: confederation
    segments from a neighbour outside the confederation, or a path from a
    confederation peer whose first segment is not AS_CONFED_SEQUENCE.  Both
    are a malformed AS_PATH, i.e. treat-as-withdraw (RFC 7606 §7.2).
    ``segs``: ``value`` already decoded by the caller (decode_segments)."""
    if segs is None:
        segs = decode_segments(value, 4)
    if from_confed_peer:
        if not segs or segs[0][0] != AS_CONFED_SEQUENCE:
            return "path from a confederation peer does not start with AS_CONFED_SEQUENCE"
        return None
    if any(st in AS_CONFED_SEGMENTS for st, _asns in segs):
        return "AS_CONFED segments from a peer outside the confederation"
    return None
