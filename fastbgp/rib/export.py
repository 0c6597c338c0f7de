"""Update groups: the daemon's Adj-RIB-Out, computed and encoded once per
group of peers that would receive the same bytes.

A full table is a million prefixes but only a few thousand attribute sets,
and most peers of a router are treated alike.  So export works on
*attribute groups* (an interned attribute set and the packed prefixes that
carry it, straight from a RIB ChangeSet or dump) and on *update groups*
(peers whose UPDATEs would be byte-identical):

* the export rules (RFC 4271 §5.1 / §9.2, RFC 4456, RFC 7947, RFC 1997
  well-known communities, RFC 9234 OTC) and the export policy chain run once
  per (source class, attribute set) and group, cached by the attribute bytes;
* ``codec.pack_updates`` / ``codec.pack_withdraws`` encode each attribute
  group once per update group; every member gets the very same list of
  ``bytes`` objects, written with ``transport.writelines`` by its sender
  (which waits on the transport's back-pressure).

What makes peers share a group (:func:`group_key`): the family, the export
chain, how UPDATEs are encoded (4-octet AS, ADD-PATH send, extended
messages: the codec Context), the member's kind (eBGP, iBGP, route-server
client, route-reflector client), the local AS, and the next hop "self" would
write (the session's local address).  A chain that looks at the neighbour
(its address, AS, or next-hop-self) gets one group per peer.

Sources.  The daemon interns every path's attributes together with its
source peer id (see :func:`source_tag`), so an attribute id names exactly one
source and the export rules that depend on where a route came from (iBGP
split horizon, reflection, MED) need no per-prefix lookup, even for a full
dump from ``Rib.dump_best``.

Adj-RIB-Out, compact.  No route is stored per peer or group: what a group
announces is, by construction, the Loc-RIB through its export rules.  What
is stored is one bit per (prefix, group): ``Rib.held`` (a HeldSet of the
compiled RIB or its twin, kept apart from the path slots so that it outlives
a prefix's removal from the Loc-RIB, the table's resizing and the sliced
stale sweep) says which groups were sent an announcement of a prefix and
not yet its withdrawal.  Each group gets a small index when the daemon
creates it (:meth:`UpdateGroup.attach_held`) and frees it when the group
dies (its bits cleared everywhere); at most ``MAX_HELD_GROUPS`` (1024) per
family are tracked, a group past them is sent every withdrawal as if
nothing were tracked.  The bit is set when an announcement is encoded for
the group (one ``mark`` call per attribute group) and cleared when a
withdrawal is; every withdrawal list -- a prefix gone from the Loc-RIB (a
peer down, a stale sweep, a withdrawal), a new best path the export
rejects, the split-horizon echo below -- is first cut down to what the
group holds (one ``filter`` call per list).  So a peer is not sent the
withdrawal of a prefix its export policy always rejected, nor a
neighbour's whole table when that neighbour goes down, only what it was
sent of it.  None is sent when every prefix of a change is new to the
Loc-RIB (``Delta.fresh``), so a first full table costs no extra message.

"Held" is per group, all members alike: a member joining a group is sent
the group's whole table (the join dump), so after it every member holds
what the group holds, with one exception per member -- split horizon:
prefixes whose best path came from member P are not sent to P, and their
bit means "the other members hold it".  When the best path of a prefix
moves to P, P is sent a withdrawal (the echo), because P may hold an older
best path of ours.  That echo is filtered by the bit: P gets none when its
group never held the prefix, nor when P itself was the source of the
previous best too (the RIB reports those prefixes, ``ChangeSet.same_source``:
a peer changing its own best route is not sent a withdrawal of it; not
with path hiding, which may have sent P another path).  When P is the
group's only member, nobody is sent P's own path, and the echo clears the
bit.

Soft reset out (a policy reload, the API): the member leaves its group
(kept, bits and all, until the dump is done if it was the last member) and
is dumped its new group's table.  What the export now rejects is withdrawn
only if the group before held it; what that group held and the export
gives the same attributes as the export it was sent with (``before``: a
copy of the group from before the policy change, see
:meth:`UpdateGroup.set_policy`) is not announced again.  A route offered to
some neighbours only (``Source.scopes``) marks the group's bit and, in
``holders``, the neighbour set: its withdrawal goes to those members only,
and members outside a new scope are sent one only if they may hold it.
ADD-PATH groups have a bit per (path id, prefix) in a HeldSet of IPv6 width
(:func:`path_keys`); the paths of IPv6 prefixes longer than /96, which have
no key there, in a set per group index (``HeldOut.loose``: rare outside
host routes, one bytes object each).

A new best path that the group's export turns into what the group holds
already is not announced again (outside a dump or soft reset, which have
their own rule above): the RIB reports, for every announced prefix, the
attributes of the best path it had before the operation
(``ChangeSet.replaced``, read before the operation could free them), and
:meth:`HeldOut.unchanged_best` leaves out the prefixes the group holds
whose path before exports to the same attributes and next hop.  Nothing is
stored per prefix for it.  Split horizon still has its due: the member
whose own path it was before (it holds nothing) is sent the announcement,
and the member whose own path it is now (it holds ours) the withdrawal,
each alone.  Not with path hiding, scoped routes, or while members may
hold a former policy's export (``before``).  ADD-PATH has the same rule
per path: a path keeps its identifier when its source replaces it, so the
exporter reads the source's paths before the RIB changes
(``Rib.paths_by_attr``, Delta.replaced) and a group that holds a path and
exports the old and the new attributes alike is not sent it again
(:meth:`HeldOut.unchanged_paths`; for best-N groups, ranked_delta's
``forced``).

Route-server path hiding (RFC 7947 §2.3).  A group of route-server clients
with ``[global.route-server] path-hiding`` has ``UpdateGroup.hiding`` (a
:class:`fastbgp.rib.route_server.PathHiding`): the prefixes whose best path
the group rejects (or, for a lone member, whose best is its own) are ranked
by :meth:`PathRanker.first` until a path passes, and that one is sent; only
those prefixes are remembered, per group.

ADD-PATH send (RFC 7911).  A group whose members receive several paths per
prefix is fed from the Adj-RIBs-In rather than from best-path changes: every
accepted path of every peer is exported with a path identifier derived from
(source peer id, received path id), so a path keeps its identifier for its
whole life and a withdrawal names exactly that path.
"""

from __future__ import annotations

import copy
import ipaddress
import logging
import struct

from fastbgp.wire import codec
from fastbgp.wire.as4 import encode_attr, encode_segments
from fastbgp.wire.codec import decode_segments, split_attrs  # compiled when built (as4's otherwise)
from fastbgp.wire.constants import (
    AFI_IPV4,
    AS_SEQUENCE,
    ATTR_AS_PATH,
    ATTR_CLUSTER_LIST,
    ATTR_COMMUNITIES,
    ATTR_EXT_COMMUNITIES,
    ATTR_LOCAL_PREF,
    ATTR_MED,
    ATTR_NEXT_HOP,
    ATTR_ORIGINATOR_ID,
    ATTR_OTC,
    COMMUNITY_NO_ADVERTISE,
    COMMUNITY_NO_EXPORT,
    COMMUNITY_NO_EXPORT_SUBCONFED,
    FLAG_EXTENDED_LENGTH,
    FLAG_OPTIONAL,
    FLAG_PARTIAL,
    FLAG_TRANSITIVE,
    IPV4_UNICAST,
    WELL_KNOWN_FLAGS,
)
from fastbgp.rib.policy import NEXT_HOP_SELF
from fastbgp.rib.attrs import KNOWN_ATTRS
from fastbgp.rpki.community import export_ext
from fastbgp.rib.confed import prepend as confed_prepend, strip as confed_strip

__all__ = [
    "LOCAL",
    "EBGP",
    "IBGP",
    "RS",
    "Source",
    "UpdateGroup",
    "Delta",
    "source_tag",
    "scope_of",
    "untag",
    "tag_source",
    "group_key",
    "addpath_id",
    "rewrite_path_ids",
    "PathRanker",
    "prefix_entries",
    "path_keys",
    "from_path_keys",
]

log = logging.getLogger("fastbgp.export")

# Kinds of sources and of group members.
LOCAL = 0  # originated here (configuration or API)
EBGP = 1
IBGP = 2
RS = 3  # route-server client (RFC 7947): eBGP without our AS in the path

# The cache of export results is dropped when it grows past this: it is
# keyed by attribute bytes, so a table with very many distinct sets simply
# recomputes now and then.
CACHE_LIMIT = 1 << 16

_PID = struct.Struct(">H")


def source_tag(pid, next_hop=b""):
    """The ``next_hop`` argument to AttrTable.intern for a path from peer
    ``pid``: the real MP next hop followed by the 16-bit peer id, so an
    attribute id belongs to exactly one source."""
    return next_hop + _PID.pack(pid)


def untag(tagged):
    """(source peer id, real MP next hop) of a tagged intern key."""
    return _PID.unpack_from(tagged, len(tagged) - 2)[0], tagged[:-2]


def tag_source(table, aid):
    """(source peer id, attrs, MP next hop) of an interned attribute id."""
    attrs, tagged = table.key(aid)
    pid, nh = untag(tagged)
    return pid, attrs, nh


class Source:
    """What the export rules need to know about the peer a path came from."""

    __slots__ = ("pid", "kind", "rr_client", "router_id", "peer_as", "address", "addpath_rx", "scopes")

    def __init__(self, pid, kind, rr_client=False, router_id=0, peer_as=0, address=None, addpath_rx=frozenset()):
        self.pid = pid
        self.kind = kind
        self.rr_client = rr_client
        self.router_id = router_id
        self.peer_as = peer_as
        self.address = address
        self.addpath_rx = addpath_rx  # families received with path ids (ADD-PATH dumps)
        # Our own routes offered to some neighbours only: family -> {packed
        # prefix (no path id): frozenset of neighbour addresses}; None or
        # empty for every other source (nothing is looked up then).
        self.scopes = None

    def __repr__(self):
        return "Source(%d, %s)" % (self.pid, ("local", "ebgp", "ibgp", "rs")[self.kind])


def addpath_id(src_pid, rx_id=0):
    """RFC 7911 path identifier we send for path ``rx_id`` of peer
    ``src_pid``: unique per (peer, received id) while received ids stay
    below 2**16 (ids above share their low 16 bits -- a documented limit)."""
    return ((src_pid & 0xFFFF) << 16) | (rx_id & 0xFFFF)


def rewrite_path_ids(packed, afi, rx_addpath, src_pid):
    """Packed NLRI of ``src_pid`` (with its own path ids when
    ``rx_addpath``) -> packed NLRI with our path ids.  Per prefix in Python:
    only ADD-PATH groups pay for it."""
    items = codec.unpack_prefixes(packed, afi, rx_addpath)
    base = (src_pid & 0xFFFF) << 16
    return codec.pack_prefixes([(base | (pid & 0xFFFF), addr, plen) for pid, addr, plen in items], True)


def paths_before(rib, table, src, fam, packed, addpath):
    """[(Source, attrs, nh, packed with our path ids)]: the paths of
    ``src`` for the prefixes of ``packed`` as ``rib`` holds them now (its
    ADD-PATH announcement is about to replace them), grouped by attribute
    set (Delta.replaced's form).  Nothing for a source whose routes are
    offered to some neighbours only."""
    if src is None or src.scopes or rib is None or not rib.has_peer(src.pid):
        return []
    out = []
    for aid, sub in rib.paths_by_attr(src.pid, packed, addpath):
        _spid, oattrs, onh = tag_source(table, aid)
        out.append((src, oattrs, onh, rewrite_path_ids(sub, fam[0], addpath, src.pid)))
    return out


def changed_ids(ours, before, afi):
    """UpdateGroup.ranked_delta's ``forced`` for an ADD-PATH announcement
    ``ours`` (our path ids) replacing the paths ``before`` (paths_before):
    {(path id, packed prefix): (Source, attrs, nh) before, or None when the
    path is new (always re-sent)}."""
    forced = {}
    for i, a, plen in codec.unpack_prefixes(ours, afi, True):
        forced[(i, bytes((plen,)) + a[: (plen + 7) >> 3])] = None
    for src, oattrs, onh, opk in before:
        for i, a, plen in codec.unpack_prefixes(opk, afi, True):
            forced[(i, bytes((plen,)) + a[: (plen + 7) >> 3])] = (src, oattrs, onh)
    return forced


class Delta:
    """One change to export, detached from RIB state (blocks are held by
    reference, so attribute ids freed meanwhile cannot matter).

    ``announced``: [(source pid, attrs, MP next hop, packed)] -- packed with
    our path ids when ``addpath``; ``withdrawn``: packed prefixes no longer
    reachable (for ``addpath``, [(source pid, packed with our ids)]).
    ``rejected_as_withdraw``: a full re-advertisement (soft reset out): what
    the export rejects is withdrawn too, since the peer may hold it from
    before the policy changed.
    """

    __slots__ = ("family", "announced", "withdrawn", "addpath", "rejected_as_withdraw", "dump", "fresh", "n", "seq",
                 "same_source", "replaced")

    def __init__(self, family, announced=(), withdrawn=b"", addpath=False, rejected_as_withdraw=False, dump=False,
                 n=0):
        self.family = family
        self.announced = announced
        self.withdrawn = withdrawn
        self.addpath = addpath
        self.rejected_as_withdraw = rejected_as_withdraw
        self.dump = dump  # a table dump: nothing to withdraw for what export rejects
        # Every announced prefix is new to the Loc-RIB: no peer holds an
        # older route for it, so nothing needs withdrawing on its behalf.
        self.fresh = False
        self.n = n  # prefixes, for slicing decisions
        # The Loc-RIB change it comes from (Exporter.changes when made), or
        # None: a member that joined with a table dump read after it was
        # made holds its end state already (Exporter.joined).
        self.seq = None
        # Announced prefixes whose best path was already the same source's
        # before the change (ChangeSet.same_source): no echo for them.
        self.same_source = b""
        # Announced prefixes that had another best path before the change
        # (ChangeSet.replaced): {(pid, attrs, nh) of an announced entry:
        # [(Source of the path before, its attrs, its nh, packed)]}; a
        # group that holds them and exports both paths alike is not sent
        # them again (UpdateGroup.unchanged_best).
        self.replaced = {}

    @classmethod
    def from_changeset(cls, family, cs, table, sources=None):
        """The Delta of RIB ChangeSet ``cs``; ``sources`` (pid -> Source,
        read now: a peer going down leaves it after this call) fills
        ``replaced``, else it stays empty."""
        ann = []
        rep = {}
        for aid, packed in cs.announced.items():
            pid, attrs, nh = tag_source(table, aid)
            ann.append((pid, attrs, nh, packed))
            was = cs.replaced.get(aid) if sources is not None else None
            if was:
                lst = rep[(pid, attrs, nh)] = []
                for oattrs, otagged, opk in was:
                    opid, onh = untag(otagged)
                    osrc = sources.get(opid)
                    if osrc is not None:
                        lst.append((osrc, oattrs, onh, opk))
        d = cls(family, ann, cs.withdrawn, n=cs.n_announced + cs.n_withdrawn)
        d.same_source = cs.same_source
        d.replaced = rep
        return d


def group_key(family, chain, ctx, kind, rr_client, local_as, nh_self, member_address, cluster_id, otc, peer_as=None,
              send_max=0, enh=False):
    """Peers with equal keys receive byte-identical UPDATEs for ``family``.
    ``peer_as``: the member's AS when what it receives depends on it
    (route-server clients under Euro-IX communities, see
    :mod:`fastbgp.rib.route_server`), else None.  ``send_max``: ADD-PATH
    best-N (RFC 7911 §5); such a group has one member, because what it was
    sent per prefix (``UpdateGroup.sent``) is that member's own history.
    ``enh``: IPv4 routes may carry an IPv6 next hop (RFC 8950, negotiated)."""
    return (
        family,
        chain.names,
        chain.default_accept,
        member_address if chain.uses_ctx else None,
        ctx.as4,
        family in ctx.addpath_tx,
        ctx.extended_message,
        kind,
        rr_client,
        local_as,
        nh_self,
        cluster_id if kind == IBGP else None,
        otc,
        peer_as,
    ) + (((send_max, member_address),) if send_max else ()) + (("enh",) if enh else ())


def scope_of(src, family, entry):
    """The neighbour addresses a path of ``src`` for the packed prefix
    ``entry`` (no path id) is offered to, or None: every neighbour."""
    sc = src.scopes
    if not sc:
        return None
    per = sc.get(family)
    return per.get(entry) if per else None


class _Out:
    """Messages produced by one Delta for one group: ``common`` goes to
    every member; ``by_src[pid]`` to every member but ``pid``, which gets
    ``echo[pid]`` (the same prefixes, withdrawn) instead; ``scoped``:
    [(addresses, messages, withdrawals or None, to)] -- the messages to the
    members whose address is in the set, the withdrawals to the others
    (``to`` None) or to the others whose address is in ``to``."""

    __slots__ = ("common", "by_src", "echo", "scoped")

    def __init__(self):
        self.common = []
        self.by_src = {}
        self.echo = {}
        self.scoped = []

    def __bool__(self):
        return bool(self.common or self.by_src or self.echo or self.scoped)


class HeldOut:
    """What an update group holds (the compact Adj-RIB-Out of the module
    docstring): a part of :class:`UpdateGroup`, kept apart so that class
    stays within its size.  ``held``: the HeldSet the group's bits are in
    (the family's ``Rib.held``; for an ADD-PATH group the exporter's
    HeldSet of path keys, see :func:`path_keys`) or None (not tracked),
    ``held_index``: the group's bit in it.  ``holders``: {entry: frozenset
    of neighbour addresses} for the prefixes the group holds only for the
    members a scoped route was offered to (``Source.scopes``), with
    ``scope_index`` (a second bit of the group, set on those prefixes) so
    that an announcement to every member finds them without a per-prefix
    loop."""

    held = None
    held_index = None
    paths = False  # the bits are keyed by (our path id, prefix): ADD-PATH
    scope_index = None
    holders = None
    # ADD-PATH IPv6 paths longer than /96 (no HeldSet key, see path_keys):
    # {index: set of their wire entries, our path id first}.
    loose = None
    # The group's export before the last policy change (a copy of the
    # group with the old engine and chain, see UpdateGroup.set_policy) and
    # the members that may still hold what it exported.
    before = None
    before_pids = frozenset()

    def sent_by(self, pid):
        """A group whose export says what member ``pid`` was sent of the
        prefixes this group holds: the copy from before the last policy
        change while ``pid`` was not re-sent its table since, else a copy
        of this one as it is now (see UpdateGroup.snapshot)."""
        return self.before if self.before is not None and pid in self.before_pids else self.snapshot()

    def resent(self, pid):
        """Member ``pid`` was re-sent its table (or left)."""
        if self.before is not None:
            self.before_pids.discard(pid)
            if not self.before_pids:
                self.before = None
                self.before_pids = frozenset()

    def _unchanged(self, prior, was, src, attrs, nh, out, packed):
        """A soft reset out (RFC 2918 spirit): the prefixes of ``packed``
        the member holds with ``out`` already -- ``prior`` (its group
        before, tracked) holds them and ``was`` (that group's export then)
        gave the same attributes -- are not announced again, but held by
        this group now.  Returns the rest, packed."""
        old = was.export(src, attrs, nh)
        if old is None:
            return packed
        if len(old) == 3:
            # The chain looked at prefixes: those it gave ``out`` too.
            same = b"".join(part for o, part in was._split_per_prefix(src, old[0], old[1], packed, self.addpath)
                            if o == out)
        else:
            same = packed if old == out else b""
        same = prior.held_filter(same) if same else b""
        if not same:
            return packed
        self.held_mark(same)
        return self._without(packed, same)

    def replaced_of(self, delta, single, was):
        """``delta.replaced`` when this group may leave out what it holds
        already (unchanged_best; for ADD-PATH, unchanged_paths), else None:
        not for a dump or soft reset (a member that joins or is re-sent
        holds what its old group held), new prefixes (nobody holds them),
        best-N groups (ranked_delta has its own rule), untracked groups,
        scoped routes (a member may hold other than the group's best) nor
        while members may hold exports of a policy since changed (``before``).
        With path hiding, process() asks only for prefixes the group was
        sent the best path of (none of them ``hiding.chosen``)."""
        if (not delta.replaced or single or delta.dump or delta.fresh or was is not None or self.send_max
                or self.held is None or self.holders or self.before is not None):
            return None
        return delta.replaced

    def unchanged_best(self, was, out, packed, pid, res):
        """RFC 4271 §9.2 asks for an UPDATE when what a peer is sent
        changes: of ``packed``, announced with ``out`` (attrs, nh) for a
        path of ``pid``, the prefixes whose best path before the change --
        ``was``, the Delta.replaced entries of this announcement -- gave
        this group ``out`` too and which the group holds are left out (their
        bits stay set).  Split horizon kept a member's own path from it, so
        for those prefixes the member whose path it was before is sent the
        announcement, and member ``pid``, which held that path from us, its
        withdrawal, each alone (``res.scoped``).  Returns the rest, packed."""
        members = self.members
        if pid in members and len(members) == 1:
            return packed  # a lone member's own path: emit's echo also clears the bits
        same = []
        for osrc, oattrs, onh, opk in was:
            if osrc.scopes or self.export(osrc, oattrs, onh) != out:
                continue
            same.append((osrc.pid, opk))
        if not same:
            return packed
        held = self.held_filter(b"".join(pk for _o, pk in same))
        if not held:
            return packed
        if pid in members or any(opid in members for opid, _pk in same):
            # Split horizon's due, member by member (each part read through
            # the bits: no per-prefix object).
            lost = []  # the held prefixes whose path before was not pid's own
            for opid, opk in same:
                mine = self.held_filter(opk) if opid != pid else b""
                if mine:
                    lost.append(mine)
                    if opid in members:
                        res.scoped.append((frozenset((members[opid].address,)), self._pack(out, mine), None, None))
            if lost and pid in members:
                res.scoped.append((frozenset((members[pid].address,)), self._pack_withdraws(b"".join(lost)), None,
                                   None))
        return self._without(packed, held)

    def unchanged(self, delta, was, out, packed, pid, res):
        """unchanged_best, or unchanged_paths for an ADD-PATH delta."""
        if delta.addpath:
            return self.unchanged_paths(was, out, packed)
        return self.unchanged_best(was, out, packed, pid, res)

    def _export_moved(self, forced, key, aid, table):
        """ranked_delta's rule for a held path id in ``forced``: re-sent
        unless this group exports the path now (attribute id ``aid``) as
        it did the path before (RFC 4271 §9.2)."""
        if key not in forced:
            return False
        was = forced[key]
        if was is None:
            return True
        src, oattrs, onh = was
        _pid, attrs, nh = tag_source(table, aid)
        return self.export_entry(src, attrs, nh, key[1]) != self.export_entry(src, oattrs, onh, key[1])

    def export_entry(self, src, attrs, nh, entry):
        """The export of one packed prefix ``entry`` (no path id): export's,
        per prefix when the chain looks at prefixes (export_prefix)."""
        out = self.export(src, attrs, nh)
        if out is not None and len(out) == 3:
            width = 4 if self.afi == 1 else 16
            out = self.export_prefix(src, out[0], out[1], (self.afi, entry[1:].ljust(width, b"\0"), entry[0]))
        return out

    def unchanged_paths(self, was, out, packed):
        """The ADD-PATH form of unchanged_best: a path keeps its identifier
        when its source replaces it (RFC 7911 §3), so of ``packed`` (our
        path ids), announced with ``out``, the paths whose attributes
        before -- ``was``, the Delta.replaced entries: the same source's
        paths, the same ids -- this group exported as ``out`` too (per
        prefix when the chain looks at prefixes) and which it holds are left
        out (their bits stay set).  Split horizon needs nothing here: the
        source's own paths were never sent to it, and stay its own.
        Returns the rest, packed."""
        same = []
        for osrc, oattrs, onh, opk in was:
            old = self.export(osrc, oattrs, onh)
            if old is None:
                continue
            if len(old) == 3:
                same.extend(part for o, part in self._split_per_prefix(osrc, old[0], old[1], opk, True) if o == out)
            elif old == out:
                same.append(opk)
        held = self.held_filter(b"".join(same)) if same else b""
        if not held:
            return packed
        # ``same`` may hold paths of another part of the announcement (a
        # chain that looks at prefixes): only those of ``packed`` go.
        drop = set(self._entries(held))
        return b"".join(e for e in self._entries(packed) if e not in drop)

    def attach_held(self, held, path_held=None):
        """Track what this group holds in ``held`` (the family's
        ``Rib.held``), or for an ADD-PATH group in ``path_held`` (a HeldSet
        of IPv6 width, see :func:`path_keys`), under a new index; nothing
        when there is none or every index is taken (MAX_HELD_GROUPS)."""
        if self.held is not None:
            return
        if self.addpath:
            held = path_held
            if held is None:
                return
        index = held.new_group()
        if index is None:
            log.warning("%r: more update groups than MAX_HELD_GROUPS in one family; this one is sent every "
                        "withdrawal", self)
            return
        self.held, self.held_index, self.paths = held, index, self.addpath

    def release_held(self):
        """The group is gone: its indexes and bits are freed."""
        if self.held is not None:
            held, self.held = self.held, None
            held.free_group(self.held_index)
            if self.scope_index is not None:
                held.free_group(self.scope_index)
            self.held_index = self.scope_index = self.holders = self.loose = None

    def _bits(self, index, packed, clear):
        """``held.filter`` for packed NLRI of this group's kind (with our
        path ids when ``paths``: keys in the HeldSet, the longest IPv6
        prefixes in ``loose``)."""
        if not self.paths:
            return self.held.filter(index, packed, clear)
        keys, loose = path_keys(packed, self.afi)
        out = from_path_keys(self.held.filter(index, keys, clear)) if keys else b""
        held = self.loose.get(index) if loose and self.loose else None
        if held:
            got = [e for e in self._entries(loose) if e in held]
            if clear:
                held.difference_update(got)
            out += b"".join(got)
        return out

    def _set_bits(self, index, packed):
        if self.paths:
            packed, loose = path_keys(packed, self.afi)
            if loose:
                if self.loose is None:
                    self.loose = {}
                self.loose.setdefault(index, set()).update(self._entries(loose))
        if packed:
            self.held.mark(index, packed)

    def held_filter(self, packed, clear=False):
        """The prefixes (paths) of ``packed`` this group may hold, packed;
        with ``clear`` they are no longer held (being withdrawn).  All of
        ``packed`` when the group is not tracked."""
        if self.held is None or not packed:
            return packed
        return self._bits(self.held_index, packed, clear)

    def held_mark(self, packed):
        """The group was sent (some of its members were sent) ``packed``."""
        if self.held is not None and packed:
            self._set_bits(self.held_index, packed)

    def _mark(self, packed, marks):
        """held_mark, now or with ``marks`` (an ExportBatch, or None) once the
        change went to every group (not for ADD-PATH keys)."""
        if marks is not None and self.held is not None and not self.paths and packed:
            marks.add(self.held, self.held_index, packed)
        else:
            self.held_mark(packed)

    def _without(self, packed, part):
        """``packed`` without ``part``, a selection of its prefixes (same
        order).  No Python object per prefix when ``part`` is all of it --
        the usual case, a whole attribute group."""
        if len(part) == len(packed):
            return b""
        drop = set(self._entries(part))
        return b"".join(e for e in self._entries(packed) if e not in drop)

    def _entries(self, packed):
        """Packed prefixes of ``packed`` one by one (with path ids when
        ``paths``)."""
        if self.paths:
            return [pid.to_bytes(4, "big") + bytes((plen,)) + addr[: (plen + 7) >> 3]
                    for pid, addr, plen in codec.unpack_prefixes(packed, self.afi, True)]
        return [bytes((plen,)) + addr[: (plen + 7) >> 3] for _p, addr, plen in codec.unpack_prefixes(packed, self.afi)]

    def _to_all(self, packed):
        """``packed`` is announced to every member: prefixes held by the
        members of a scope only are held by all now."""
        if self.scope_index is not None and self.holders:
            for e in self._entries(self._bits(self.scope_index, packed, True)):
                self.holders.pop(e, None)

    def _held_only(self, packed, res=None):
        """The withdrawals of ``packed`` this group must be sent: those of
        the prefixes it holds (now no longer held).  With ``res`` (an
        _Out), those held by the members of a scope only go to them, in
        ``res.scoped``, and are left out of what is returned."""
        packed = self.held_filter(packed, True)
        if not packed or self.scope_index is None or not self.holders:
            return packed
        hits = self._bits(self.scope_index, packed, True)
        if not hits:
            return packed
        holders = self.holders
        by = {}
        for e in self._entries(hits):
            h = holders.pop(e, None)
            if h is not None:
                by.setdefault(h, []).append(e)
        if res is None or not by:
            return packed
        cut = {e for es in by.values() for e in es}
        for h, es in by.items():
            res.scoped.append((frozenset(), [], self._pack_withdraws(b"".join(es)), h))
        return b"".join(e for e in self._entries(packed) if e not in cut)

    def _scoped_held(self, res, scope, msgs, part, withdraw_rejected):
        """Scoped announcement ``part`` (see :meth:`UpdateGroup._scoped`)
        into ``res.scoped``: ``msgs`` to the members in ``scope``; the
        members outside it that may hold the prefixes are sent their
        withdrawal (all of them when the group is not tracked)."""
        if self.held is None:
            res.scoped.append((scope, msgs, self._pack_withdraws(part) if withdraw_rejected else None, None))
            return
        res.scoped.append((scope, msgs, None, None))
        holders = self.holders
        if holders is None:
            holders = self.holders = {}
        if withdraw_rejected:
            was = self.held_filter(part)
            if was:
                by = {}
                for e in self._entries(was):
                    by.setdefault(holders.get(e), []).append(e)
                for h, es in by.items():
                    if h is None or h - scope:
                        res.scoped.append((scope, [], self._pack_withdraws(b"".join(es)), h))
        if self.scope_index is None:
            self.scope_index = self.held.new_group()
            if self.scope_index is None:
                # No index left: a scoped prefix counts as held by all.
                self.holders = {}
                self.held_mark(part)
                return
        self.held_mark(part)
        self._set_bits(self.scope_index, part)
        for e in self._entries(part):
            holders[e] = scope

    def emit(self, res, pid, members, out, packed, marks=None):
        """Encode ``packed`` with ``out`` (attrs, MP next hop) into ``res``:
        to every member, or, when the path is member ``pid``'s own, to the
        others (``pid`` gets the prefixes withdrawn: split horizon).  The
        group's marks go to ``marks`` when given (see ExportBatch)."""
        tracked = self.held is not None
        if tracked:
            self._to_all(packed)
        if pid in members:
            echo = packed
            if tracked:
                # Split horizon (module docstring): ``pid`` may hold what
                # the group holds; the others are sent the new path, and
                # when there are none, nobody holds the prefix any more.
                others = any(m != pid for m in self.members) or any(m != pid for m in members)
                echo = self.held_filter(packed, not others)
                if others:
                    self._mark(packed, marks)
            msgs = self._pack(out, packed)
            lst = res.by_src.get(pid)
            if lst is None:
                res.by_src[pid] = msgs
                res.echo[pid] = [echo]
            else:
                lst.extend(msgs)
                res.echo[pid].append(echo)
        else:
            if tracked:
                self._mark(packed, marks)
            if marks is None:
                res.common.extend(self._pack(out, packed))
            else:
                # Groups exporting this alike share its UPDATEs (ExportBatch).
                res.common.extend(marks.encoded((out, packed, self.family, self.enh, self.ctx),
                                                lambda: self._pack(out, packed)))

    def _pack_echo(self, echo):
        """{pid: [packed]} of split-horizon withdrawals -> {pid: messages},
        leaving out members with nothing to withdraw."""
        out = {}
        for pid, pks in echo.items():
            packed = b"".join(pks)
            if packed:
                out[pid] = self._pack_withdraws(packed)
        return out


def path_keys(packed, afi):
    """ADD-PATH NLRI (our path ids) -> (keys, loose): ``keys`` packed IPv6
    prefixes that stand for the paths one to one -- the path id, then the
    prefix, (32 + length) bits long -- for a HeldSet of IPv6 width;
    ``loose``: the paths of IPv6 prefixes longer than /96, which have no
    key, as they came (HeldOut keeps them in a set, entry by entry)."""
    keys = []
    loose = []
    limit = 32 if afi == AFI_IPV4 else 96
    for pid, addr, plen in codec.unpack_prefixes(packed, afi, True):
        nb = (plen + 7) >> 3
        if plen > limit:
            loose.append(pid.to_bytes(4, "big") + bytes((plen,)) + addr[:nb])
        else:
            keys.append(bytes((plen + 32,)) + pid.to_bytes(4, "big") + addr[:nb])
    return b"".join(keys), b"".join(loose)


def from_path_keys(keys):
    """Inverse of :func:`path_keys`' ``keys``: ADD-PATH NLRI."""
    out = []
    i, n = 0, len(keys)
    while i < n:
        bits = keys[i]
        end = i + 1 + ((bits + 7) >> 3)
        out.append(keys[i + 1:i + 5] + bytes((bits - 32,)) + keys[i + 5:end])
        i = end
    return b"".join(out)


class SharedExports:
    """Exports that groups may share: an update group without export policy
    exports an attribute set from a class of source the same as every other
    group of its profile (UpdateGroup._profile: family, kind, next hops of
    its own, ...) up to the step that is its member's own (the route
    server's Euro-IX communities, UpdateGroup._ixp).  A route server's
    clients are such groups, one per client AS: each new attribute set is
    worked through the export rules once, not once per client.

    Keyed by (profile, source class, attribute block, MP next hop); computed on the first
    group's miss.  Bounded as each group's cache is (CACHE_LIMIT entries,
    dropped whole when full: recomputed, never wrong).  The entries are
    pure functions of their key, so nothing is cleared on a policy change
    (a group with a policy never comes here)."""

    def __init__(self, limit=CACHE_LIMIT):
        self.limit = limit
        self.computed = 0  # entries worked out (the rest were shared), for tests and stats
        # Off while its exporter has a single group: nothing to share, the
        # memo would only cost (a look-up and an entry per new set).
        self.active = True
        self._memo = {}

    def get(self, key, compute):
        """The entry of ``key``, from ``compute()`` when there is none."""
        memo = self._memo
        out = memo.get(key, memo)
        if out is memo:
            if len(memo) >= self.limit:
                memo.clear()
            out = memo[key] = compute()
            self.computed += 1
        return out

    def __len__(self):
        return len(self._memo)


class ExportBatch:
    """What a change's export to many update groups does once for all of
    them (fastbgp.daemon.exporter's export_part):

    * the Adj-RIB-Out marks, made once per announcement: ``HeldSet.
      mark_groups`` looks each prefix up once for all the groups sent it
      alike (a route server's clients: one look-up, not one per client).
      A group only ever reads its own bits, and the batch is flushed before
      the next change: no group reads a bit whose mark is still here;
    * the UPDATEs of an announcement that groups export alike (same
      attributes and next hop, same session context), encoded once and
      shared (the lists are never changed once built).

    Bounded by the change: an entry per (HeldSet, announcement) and per
    (export, announcement, context) of it."""

    def __init__(self):
        self._by = {}
        self._packs = {}

    def add(self, held, index, packed):
        """Group ``index`` of ``held`` was sent ``packed``."""
        key = (id(held), packed)  # equal announcements of many groups: one entry
        entry = self._by.get(key)
        if entry is None:
            self._by[key] = (held, [index])
        else:
            entry[1].append(index)

    def encoded(self, key, build):
        """The messages of ``key`` (what decides the encoding), ``build()``
        the first time."""
        msgs = self._packs.get(key)
        if msgs is None:
            msgs = self._packs[key] = build()
        return msgs

    def flush(self):
        """Make every mark gathered (the batch is empty after)."""
        by, self._by = self._by, {}
        self._packs = {}
        for (_held_id, packed), (held, indexes) in by.items():
            held.mark_groups(indexes, packed)


class _MemberFree:
    """The parts of UpdateGroup's export that read the group's settings and
    never its member (kept apart so that class stays within its size):
    what :class:`SharedExports` keys on (``_profile``), the step that is the
    member's own (``_ixp``), and the next-hop rules of ``_finish``."""

    def _profile(self):
        """Every setting of this group that ``_export`` reads when there is
        no export policy, but for the member's AS (``_ixp`` only): groups
        with equal profiles export alike up to that step.  A setting read
        there and missing here would let groups share what they must not:
        tests/test_shared_exports.py changes each one alone."""
        return (self.family, self.kind, self.rr_client, self.confed_peer, self.confed is not None, self.rpki_signal,
                self.otc, self.enh, self.local_as, self.nh4, self.nh6, self.cluster_id)

    def _ixp(self, out, v4):
        """The member's own step of the export (after the rules every group
        of its profile shares): IXP policy (Euro-IX communities, RFC 7999
        blackhole) for a route-server client, once per attribute set and
        group, like everything here."""
        if out is None or self.kind != RS or self.confed_peer:
            return out
        rsp = getattr(self.engine, "route_server", None)
        if rsp is None or not rsp.active:
            return out
        mine = rsp.finish(out[0], out[1], self.pctx.peer_as, self.local_as, v4)
        if mine is not None and mine[0] is out[0] and mine[1] is out[1]:
            # Unchanged for this member: the shared result itself, so every
            # group's cache holds one tuple for it, not one each (P9: 4 MB).
            mine = out
        out = mine
        if out is not None and v4 and self.enh and out[1] and any(
                t == ATTR_NEXT_HOP for _f, t, _v in split_attrs(out[0])):
            # An IPv4 next hop set there (RFC 7999 blackhole) wins over the
            # RFC 8950 one: the classic form.
            out = (out[0], b"")
        return out

    def _finish_confed(self, items, nh, policy_nh, v4):
        """:meth:`_finish` towards a confederation peer (RFC 5065 §4, §5.2):
        our member AS in front in an AS_CONFED_SEQUENCE, LOCAL_PREF kept (100
        when none, as to an internal peer, RFC 4271 §5.1.5), the next hop
        unchanged unless policy set one or the route is ours and names none.
        ``items``: {type: (flags, value)}, changed here."""
        if policy_nh == NEXT_HOP_SELF:
            policy_nh = self.nh4 if v4 else self.nh6
        f, v = items.get(ATTR_AS_PATH, (WELL_KNOWN_FLAGS[ATTR_AS_PATH], b""))
        items[ATTR_AS_PATH] = (f, confed_prepend(v, self.local_as))
        if ATTR_LOCAL_PREF not in items:
            items[ATTR_LOCAL_PREF] = (WELL_KNOWN_FLAGS[ATTR_LOCAL_PREF], b"\x00\x00\x00\x64")
        if policy_nh is not None:
            if v4:
                if len(policy_nh) == 4:
                    items[ATTR_NEXT_HOP] = (WELL_KNOWN_FLAGS[ATTR_NEXT_HOP], policy_nh)
                elif self.enh:
                    items.pop(ATTR_NEXT_HOP, None)  # RFC 8950 §4
                    nh = policy_nh
            else:
                nh = policy_nh
        elif v4 and ATTR_NEXT_HOP not in items:
            nh = self._v4_next_hop(items, nh)
            if nh is None:
                return None
        elif not v4 and not nh:
            nh = self.nh6
        if v4 and ATTR_NEXT_HOP in items:
            nh = b""  # the classic NEXT_HOP form (see _pack)
        if not v4 and not nh:
            return None
        return (_encode(items), nh)

    def _v4_next_hop(self, items, nh):
        """An IPv4 route without a NEXT_HOP attribute (our own, or one that
        came with an RFC 8950 IPv6 next hop): the IPv6 next hop it came with
        when this group takes them, else our IPv4 address (added to
        ``items``), else our IPv6 one (RFC 8950 §4).  Returns the MP next
        hop to use (b"" for the classic NEXT_HOP), None when there is none."""
        if self.enh and nh:
            return nh  # RFC 8950: unchanged
        if self.nh4 is not None:
            items[ATTR_NEXT_HOP] = (WELL_KNOWN_FLAGS[ATTR_NEXT_HOP], self.nh4)
            return nh or b""
        if self.enh and self.nh6:
            return self.nh6
        return None


class UpdateGroup(HeldOut, _MemberFree):
    """Peers that receive the same UPDATE bytes for one family.

    ``members``: pid -> the daemon's neighbour object (anything with
    ``send_messages(list)``).  ``engine``/``chain``: the export policy;
    ``pctx``: the policy.PolicyContext the chain runs with (a member's, when
    the chain uses it the group has one member).  ``nh4``/``nh6``: packed
    next hop "self" writes.  ``otc``: add RFC 9234 OTC on egress.
    """

    def __init__(self, key, family, ctx, engine, chain, pctx, kind, rr_client, local_as, nh4, nh6,
                 cluster_id=None, otc=False, send_max=0, enh=False):
        self.key = key
        self.family = family
        self.afi, self.safi = family
        self.ctx = ctx
        self.engine = engine
        self.chain = chain
        self.pctx = pctx
        self.kind = kind
        self.rr_client = rr_client
        self.local_as = local_as
        self.nh4 = nh4
        self.nh6 = nh6
        self.cluster_id = cluster_id  # 4 octets
        self.otc = otc
        self.addpath = family in ctx.addpath_tx
        # RFC 7911 §5 best-N ("add-n"): at most this many paths per prefix
        # (0: every path); ``sent``: packed prefix (no path id) -> our path
        # ids the member holds, best first -- kept only for such a group.
        self.send_max = send_max if self.addpath else 0
        self.sent = {}
        # RFC 8950 §4: the members said they accept IPv4 NLRI with an IPv6
        # next hop; used when there is no IPv4 one to send (an IPv6
        # session's own address, or an IPv6 next hop passed on unchanged).
        self.enh = enh and family == IPV4_UNICAST
        # No policy and a default of reject (RFC 8212 for eBGP): nothing is
        # ever advertised, so nothing ever needs withdrawing either.
        self.exports_nothing = not chain.policies and not chain.default_accept
        self.members = {}
        # Export results: source class -> {attribute block, or (block, MP
        # next hop) when there is one: result}, and ("pp", ...) entries of
        # export_prefix.  ``cache_entries`` counts them all (CACHE_LIMIT).
        self._cache = {}
        self.cache_entries = 0
        self.updates_encoded = 0  # messages built, for tests and stats
        # RFC 5065: our confederation (fastbgp.rib.confed.Confederation) or
        # None; ``confed_peer``: the members are in another member AS.
        self.confed = None
        self.confed_peer = False
        # RFC 8097: the members asked for the origin validation state
        # community (iBGP only; see fastbgp.rpki.community.export_ext).
        self.rpki_signal = False
        # RFC 7947 §2.3: route-server path hiding mitigation
        # (fastbgp.rib.route_server.PathHiding) or None.
        self.hiding = None
        # The exporter's SharedExports (its groups without export policy
        # share their exports through it), or None: each its own.
        self.shared = None

    def __repr__(self):
        return "<UpdateGroup %s %s %d members>" % (
            self.family,
            ("local", "ebgp", "ibgp", "rs")[self.kind],
            len(self.members),
        )

    def set_policy(self, engine, chain, pctx):
        """A reload compiled a new engine: same chain names, new objects.
        The export as it was is kept (``before``, with an empty cache) for
        the members' soft reset out, which re-sends only what changed."""
        self.before = self.snapshot({})
        self.before_pids = set(self.members)
        self.engine = engine
        self.chain = chain
        self.pctx = pctx
        self.exports_nothing = not chain.policies and not chain.default_accept
        self._cache.clear()
        self.cache_entries = 0

    def snapshot(self, cache=None):
        """A copy of this group that exports as it does now, whatever
        :meth:`set_policy` does to it later (its own cache: a copy of the
        group's, or ``cache``)."""
        snap = copy.copy(self)
        if cache is None:
            cache = {k: dict(v) if type(v) is dict else v for k, v in self._cache.items()}
            snap.cache_entries = self.cache_entries
        else:
            snap.cache_entries = sum(len(v) if type(v) is dict else 1 for v in cache.values())
        snap._cache = cache
        snap.before = None
        return snap

    # ------------------------------------------------------------ export rules

    def _allowed(self, src):
        """Whether a path from ``src`` may go to this group at all."""
        if src.kind == IBGP and self.kind == IBGP:
            # RFC 4271 §9.2: routes from internal peers are not sent to
            # internal peers -- unless we reflect them (RFC 4456 §6): from a
            # client to every peer, from a non-client to clients only.
            return src.rr_client or self.rr_client
        return True

    def export(self, src, attrs, nh):
        """(attrs, MP next hop) to send for a path from ``src``, None when
        not exported, or (attrs, nh, True) when the chain must run per
        prefix (see :meth:`export_prefix`).  Cached per source class, then
        per attribute block (with the MP next hop when there is one): most
        entries are keyed by the block itself, so no key tuple is kept per
        entry and group (a route server's 400 groups x 400 sets: 13 MB of
        them in P9)."""
        reflect = src.kind == IBGP and self.kind == IBGP
        cls = (src.kind, src.rr_client, src.router_id if reflect else 0)
        key = attrs if nh == b"" else (attrs, nh)
        cache = self._cache
        per = cache.get(cls)
        if per is None:
            per = cache[cls] = {}
        else:
            hit = per.get(key, per)
            if hit is not per:
                return hit
        if self.cache_entries >= CACHE_LIMIT:
            cache.clear()
            self.cache_entries = 0
            per = cache[cls] = {}
        try:
            shared = self.shared
            if shared is not None and shared.active and not self.chain.policies and self.chain.default_accept:
                # No export policy: groups of one profile share the result
                # up to the member's own step (SharedExports).
                out = self._ixp(shared.get((self._profile(), cls, attrs, nh),
                                           lambda: self._export(src, attrs, nh, False)), self.family == IPV4_UNICAST)
            else:
                out = self._export(src, attrs, nh)
        except Exception:
            log.exception("export of an attribute set from %r failed; not sent", src)
            out = None
        per[key] = out
        self.cache_entries += 1
        return out

    def _export(self, src, attrs, nh, ixp=True):
        if not self._allowed(src):
            return None
        items = {}
        for f, t, v in split_attrs(attrs):
            items[t] = (f, v)
        comm = items.get(ATTR_COMMUNITIES)
        if comm is not None:
            cs = set(struct.unpack(">%dI" % (len(comm[1]) // 4), comm[1][: len(comm[1]) & ~3]))
            # RFC 1997: NO_ADVERTISE goes to no peer; NO_EXPORT and
            # NO_EXPORT_SUBCONFED stay inside the AS; in a confederation
            # (RFC 5065 §4) NO_EXPORT goes to other member ASes, and
            # NO_EXPORT_SUBCONFED stays in our member AS.
            if COMMUNITY_NO_ADVERTISE in cs:
                return None
            if self.confed_peer:
                if COMMUNITY_NO_EXPORT_SUBCONFED in cs:
                    return None
            elif self.kind in (EBGP, RS) and (COMMUNITY_NO_EXPORT in cs or COMMUNITY_NO_EXPORT_SUBCONFED in cs):
                return None
        if src.kind != LOCAL:
            # RFC 4271 §5 / §9: an unrecognised optional transitive
            # attribute is passed on with the Partial bit set; an
            # unrecognised non-transitive one is not passed on.
            for t in [t for t in items if t not in KNOWN_ATTRS]:
                f, v = items[t]
                if not f & FLAG_OPTIONAL:
                    continue
                if f & FLAG_TRANSITIVE:
                    items[t] = (f | FLAG_PARTIAL, v)
                else:
                    del items[t]
        if self.confed_peer:
            # RFC 5065 §5.2: LOCAL_PREF, MED and NEXT_HOP cross member-AS
            # boundaries; reflection attributes (RFC 4456 §8) are the member
            # AS's own.
            items.pop(ATTR_ORIGINATOR_ID, None)
            items.pop(ATTR_CLUSTER_LIST, None)
        elif self.kind in (EBGP, RS):
            if self.confed is not None and ATTR_AS_PATH in items:
                # RFC 5065 §5: no confederation segment leaves the
                # confederation (the identifier goes in front in _finish).
                f, v = items[ATTR_AS_PATH]
                items[ATTR_AS_PATH] = (f, confed_strip(v))
            # RFC 4271 §5.1.5: LOCAL_PREF is not sent to external peers.
            # RFC 4456 §8: ORIGINATOR_ID and CLUSTER_LIST are the AS's own.
            for t in (ATTR_LOCAL_PREF, ATTR_ORIGINATOR_ID, ATTR_CLUSTER_LIST):
                items.pop(t, None)
            if self.kind == EBGP and src.kind != LOCAL:
                # RFC 4271 §5.1.4: a MED received from a neighbouring AS is
                # not propagated to other neighbouring ASes.  (RFC 7947
                # §2.2.3: a route server passes it on untouched.)
                items.pop(ATTR_MED, None)
        ext = items.get(ATTR_EXT_COMMUNITIES)
        if ext is not None:
            # RFC 4360 §2: no non-transitive extended community leaves the
            # AS; RFC 8097 §2: the validation state only to iBGP peers that
            # asked for it.  Once per attribute set (the cache above).
            value = export_ext(ext[1], self.kind in (EBGP, RS) and not self.confed_peer,
                               self.rpki_signal and self.kind == IBGP)
            if value is None:
                del items[ATTR_EXT_COMMUNITIES]
            elif value is not ext[1]:
                items[ATTR_EXT_COMMUNITIES] = (ext[0], value)
        v4 = self.family == IPV4_UNICAST
        if not self.chain.policies and self.chain.default_accept:
            # No policy to read the block: _finish goes on from ``items``.
            return self._finish(src, None, nh, None, v4, ixp, items)
        block = _encode(items)
        if self.chain.prefix_dependent:
            return (block, nh, True)
        verdict = self.engine.evaluate_group(self.chain, block, self.pctx, self.afi, "export")
        if verdict is None:
            return None
        return self._finish(src, verdict.attrs, nh, verdict.next_hop, v4, ixp)

    def export_prefix(self, src, block, nh, prefix):
        """Per-prefix tail of :meth:`export` for prefix-dependent chains;
        ``prefix`` is (afi, address bytes, length)."""
        verdict = self.engine.evaluate(self.chain, "export", prefix, block, self.pctx)
        if verdict is None:
            return None
        key = ("pp", src.kind, src.rr_client, src.router_id, verdict.attrs, nh, verdict.next_hop)
        hit = self._cache.get(key)
        if hit is None:
            hit = self._cache[key] = self._finish(src, verdict.attrs, nh, verdict.next_hop, self.family == IPV4_UNICAST)
            self.cache_entries += 1
        return hit

    def _finish(self, src, block, nh, policy_nh, v4, ixp=True, items=None):
        """Rules that apply after the export policy: AS_PATH prepend, next
        hop, LOCAL_PREF presence, reflection attributes, OTC.  The attributes
        come as ``block``, or as ``items`` ({type: (flags, value)}, this
        call's to change) when no policy ran."""
        if items is None:
            items = {t: (f, v) for f, t, v in split_attrs(block)}
        if self.confed_peer:
            return self._finish_confed(items, nh, policy_nh, v4)
        kind = self.kind
        if policy_nh == NEXT_HOP_SELF:
            policy_nh = self.nh4 if v4 else self.nh6
            if v4 and policy_nh is None and self.enh:
                policy_nh = self.nh6  # RFC 8950 §4: our IPv6 address
        if kind == EBGP:
            # RFC 4271 §5.1.2: our AS goes first in the AS_PATH.
            f, v = items.get(ATTR_AS_PATH, (WELL_KNOWN_FLAGS[ATTR_AS_PATH], b""))
            items[ATTR_AS_PATH] = (f, _prepend(v, self.local_as))
            # RFC 4271 §5.1.3: to an external peer the next hop is our own
            # address on the session, unless policy chose one.
            if policy_nh is None:
                if v4:
                    if self.nh4 is not None:
                        items[ATTR_NEXT_HOP] = (WELL_KNOWN_FLAGS[ATTR_NEXT_HOP], self.nh4)
                    elif self.enh and self.nh6:
                        # RFC 8950 §4 (an IPv6 session): our IPv6 address,
                        # in MP_REACH_NLRI, no NEXT_HOP attribute.
                        items.pop(ATTR_NEXT_HOP, None)
                        nh = self.nh6
                    else:
                        return None
                else:
                    nh = self.nh6
            items.pop(ATTR_LOCAL_PREF, None)  # a policy may have set it
        else:
            if kind == RS:
                items.pop(ATTR_LOCAL_PREF, None)
            else:
                # RFC 4271 §5.1.5: every UPDATE to an internal peer carries
                # LOCAL_PREF (100 when nothing set one).
                if ATTR_LOCAL_PREF not in items:
                    items[ATTR_LOCAL_PREF] = (WELL_KNOWN_FLAGS[ATTR_LOCAL_PREF], b"\x00\x00\x00\x64")
                if src.kind == IBGP:
                    # RFC 4456 §8: a reflected route carries its originator
                    # (set once, by the first reflector) and our CLUSTER_ID
                    # in front of the CLUSTER_LIST.
                    if ATTR_ORIGINATOR_ID not in items:
                        items[ATTR_ORIGINATOR_ID] = (FLAG_OPTIONAL, src.router_id.to_bytes(4, "big"))
                    f, v = items.get(ATTR_CLUSTER_LIST, (FLAG_OPTIONAL, b""))
                    items[ATTR_CLUSTER_LIST] = (f & ~FLAG_EXTENDED_LENGTH, self.cluster_id + v)
            # RFC 4271 §5.1.3 (internal peers) and RFC 7947 §2.2.1 (route
            # server clients): the next hop is left as it is -- except for our
            # own routes that name none, which get ours.
            if policy_nh is None:
                if v4 and ATTR_NEXT_HOP not in items:
                    nh = self._v4_next_hop(items, nh)
                    if nh is None:
                        return None
                elif not v4 and not nh:
                    nh = self.nh6
        if policy_nh is not None and not v4:
            nh = policy_nh
        elif policy_nh is not None and len(policy_nh) == 16 and self.enh:
            items.pop(ATTR_NEXT_HOP, None)
            nh = policy_nh
        if v4 and self.enh and ATTR_NEXT_HOP in items:
            nh = b""  # the classic NEXT_HOP form (see _pack)
        if kind == IBGP and nh and len(nh) == 32:
            # RFC 2545 §3: a link-local next hop only means something on the
            # link it was learned on; internal peers get the global one.
            nh = nh[:16]
        if self.otc and ATTR_OTC not in items:
            # RFC 9234 §5: routes sent to a customer, peer or RS client
            # carry OTC; we add it with our AS when absent.
            items[ATTR_OTC] = (FLAG_OPTIONAL | FLAG_TRANSITIVE, self.local_as.to_bytes(4, "big"))
        if not v4 and not nh:
            return None  # no usable next hop for an MP_REACH_NLRI
        if v4 and self.enh and not nh and ATTR_NEXT_HOP not in items:
            return None  # neither a NEXT_HOP nor an RFC 8950 one
        out = (_encode(items), nh)
        return self._ixp(out, v4) if ixp else out

    # ------------------------------------------------------------ encoding

    def _pack(self, out, packed):
        attrs, nh = out
        self.updates_encoded += 1
        if self.family == IPV4_UNICAST and not (nh and self.enh):
            return codec.pack_updates(attrs, packed, self.ctx)
        # RFC 4760 §3; RFC 8950 §3 for IPv4 NLRI with an IPv6 next hop.
        return codec.pack_updates(attrs, packed, self.ctx, self.afi, self.safi, nh)

    def _pack_withdraws(self, packed):
        if self.family == IPV4_UNICAST:
            return codec.pack_withdraws(packed, self.ctx)
        return codec.pack_withdraws(packed, self.ctx, self.afi, self.safi)

    def process(self, delta, sources, single=False, members=None, exclude=None, prior=None, was=None, marks=None):
        """Encode ``delta`` for this group: an _Out (see there).

        ``single``: a dump for one member that already left out its own
        paths, so everything is common.  ``members``: the pids whose own
        paths must be kept apart (default: the group's members); a dump for
        joining members passes theirs.  A dump withdraws nothing for what
        the export rejects unless the delta asks for it (soft reset out),
        and needs no echo withdrawals (a joining member holds nothing).
        ``exclude``: the member a ``single`` dump is for (path hiding needs
        it, see :attr:`hiding`).  ``prior``: for a soft reset out, the group
        the member was in before (a HeldOut): what it holds, so what the
        export rejects is withdrawn only if that group holds it; ``was``:
        that group's export when it sent it (:meth:`HeldOut.sent_by`, a
        copy): what it holds with the attributes it would be sent again is
        not announced again.  ``marks``: an ExportBatch the group's marks of
        what it announces go to, and which shares the UPDATEs of what groups
        export alike (export_part), or None: all made here."""
        res = _Out()
        if delta.addpath != self.addpath or self.exports_nothing:
            return res
        if single:
            members = ()
        elif members is None:
            members = self.members
        withdraw_rejected = delta.rejected_as_withdraw or not (single or delta.dump or delta.fresh)
        withdraw = []  # packed prefixes withdrawn from everyone
        emits = {}  # (member whose own path it is or None, export) -> [packed]: emit()'s, in order
        # A soft reset out: what the member holds with the same attributes
        # is not announced again (not with path hiding or scoped routes,
        # where what a member holds is not what its group holds).
        if not (prior is not None and single and delta.rejected_as_withdraw and prior.held is not None
                and self.hiding is None and prior.hiding is None and not prior.holders):
            was = None
        replaced = self.replaced_of(delta, single, was) if members is self.members else None
        # RFC 7947 §2.3: prefixes whose best path this group may not have
        # (export rejects it, or it is a lone member's own) -> the best that
        # passes, chosen by self.hiding after the loop: [(source pid, packed)].
        hide = None
        own = ()
        if self.hiding is not None and not delta.addpath:
            hide = []
            own = self.hiding.own_pids(self.members, exclude)
        if delta.addpath:
            for _pid, packed in delta.withdrawn:
                if packed:
                    withdraw.append(packed)
        elif delta.withdrawn:
            withdraw.append(delta.withdrawn)
        for pid, attrs, nh, packed in delta.announced:
            if not packed:
                continue
            src = sources.get(pid)
            if src is None:
                continue
            if src.scopes:
                packed = self._scoped(res, src, attrs, nh, packed, delta.addpath, withdraw_rejected, withdraw)
                if not packed:
                    continue
            if pid in own:
                hide.append((pid, packed))
                continue
            out = self.export(src, attrs, nh)
            if out is None:
                if hide is not None:
                    hide.append((pid, packed))
                elif withdraw_rejected:
                    withdraw.append(packed)
                continue
            if len(out) == 3:
                accepted = self._split_per_prefix(src, out[0], out[1], packed, delta.addpath)
            else:
                accepted = ((out, packed),)
            for o, pk in accepted:
                if o is None:
                    if hide is not None:
                        hide.append((pid, pk))
                    elif withdraw_rejected:
                        withdraw.append(pk)
                    continue
                alt = False  # RFC 7947 §2.3: the group held another path for some of pk
                if hide is not None and self.hiding.chosen and not delta.fresh:
                    alt = self.hiding.forget(pk, self.afi)  # the best passes again
                if was is not None:
                    pk = self._unchanged(prior, was, src, attrs, nh, o, pk)
                elif replaced and not alt and not src.scopes and (pid, attrs, nh) in replaced:
                    pk = self.unchanged(delta, replaced[(pid, attrs, nh)], o, pk, pid, res)
                if pk:
                    # One UPDATE run per (who may not get it, export): sets
                    # the export makes alike (a stripped control community,
                    # MED or LOCAL_PREF) share their UPDATEs.
                    emits.setdefault((pid if pid in members else None, o), []).append(pk)
        for (pid, o), pks in emits.items():
            self.emit(res, pid, members, o, b"".join(pks), marks)
        if hide:
            self.hiding.resolve(self, hide, sources, members, own, res, withdraw, withdraw_rejected, delta.fresh)
        if withdraw:
            # Withdrawals first: a prefix is never in both lists of one
            # delta, and a peer short of memory is better off losing first.
            # Only those of prefixes the group holds; for a soft reset out,
            # of those the member's group before it held (``prior``: the
            # member may hold what another group sent it), cleared when
            # that group is this one and the member its only one.
            packed = b"".join(withdraw)
            if not delta.rejected_as_withdraw:
                packed = self._held_only(packed, res)
            elif prior is not None:
                packed = prior.held_filter(packed, prior is self and len(self.members) <= 1)
            if packed:
                res.common[:0] = self._pack_withdraws(packed)
        if res.echo:
            if delta.dump or delta.addpath or delta.fresh:
                # A joining member holds nothing yet; an ADD-PATH member
                # never got its own paths (they have our path ids).
                res.echo = {}
            else:
                if delta.same_source and self.hiding is None:
                    self._drop_own(res.echo, delta.same_source)
                res.echo = self._pack_echo(res.echo)
        return res

    def _drop_own(self, echo, same):
        """Split horizon: no echo for a prefix whose best path was the
        member's own before the change too -- split horizon kept ours from
        it then, so it holds nothing of ours to withdraw.  (Not with path
        hiding, which may have sent it another path: fastbgp.rib.route_server.)
        One set entry per such prefix, only when there are some."""
        own = set(self._entries(same))
        for pid, pks in echo.items():
            echo[pid] = [b"".join(e for e in self._entries(pk) if e not in own) for pk in pks]

    def rehide(self, entries, sources):
        """Path hiding: choose again for the packed prefixes ``entries``
        (a non-best path changed or went); an _Out for every member."""
        res = _Out()
        if self.hiding is None or self.exports_nothing:
            return res
        members = self.members
        withdraw = []
        hide = [(None, b"".join(entries))]
        self.hiding.resolve(self, hide, sources, members, self.hiding.own_pids(self.members, None), res, withdraw,
                            False, False)
        packed = self._held_only(b"".join(withdraw), res)
        if packed:
            res.common[:0] = self._pack_withdraws(packed)
        if res.echo:
            res.echo = self._pack_echo(res.echo)
        return res

    def ranked_delta(self, ranked, table, forced=None, exclude=None, dump=False):
        """An ADD-PATH Delta bringing the member from ``sent`` to the best
        ``send_max`` paths of each prefix of ``ranked`` ({packed prefix:
        [(peer id, received path id, attr id)] best first, see
        :class:`PathRanker`}): withdrawals of the path ids that left the top
        N, announcements of those that entered and of the ids in ``forced``
        ({(our path id, packed prefix): (Source, attrs, nh) of the path
        before its attributes changed, or None}) that this group exports
        otherwise now than before (None: always).
        ``dump``: everything in the top N is announced (a full table or a
        refresh; ids the member held that left the top N still withdrawn); the
        paths of ``exclude`` (the member itself) keep their slot but are
        never sent to it (split horizon)."""
        n = self.send_max
        sent = self.sent
        by_aid = {}
        wd = []
        for entry, paths in ranked.items():
            top = paths[:n]
            ids = tuple(addpath_id(p, r) for p, r, _a in top)
            old = sent.get(entry, ())
            for i in old:
                if i not in ids:
                    wd.append(i.to_bytes(4, "big") + entry)
            for (p, _r, aid), i in zip(top, ids):
                if p != exclude and (dump or i not in old or (forced and self._export_moved(forced, (i, entry), aid,
                                                                                            table))):
                    by_aid.setdefault(aid, []).append(i.to_bytes(4, "big") + entry)
            if ids:
                sent[entry] = ids
            else:
                sent.pop(entry, None)
        announced = []
        for aid, entries in by_aid.items():
            spid, attrs, nh = tag_source(table, aid)
            announced.append((spid, attrs, nh, b"".join(entries)))
        return Delta(self.family, announced, [(0, b"".join(wd))] if wd else [], addpath=True, dump=dump,
                     n=len(ranked))

    def _scoped(self, res, src, attrs, nh, packed, addpath, withdraw_rejected, withdraw):
        """Our routes offered to some neighbours only (``Source.scopes``):
        their prefixes are encoded once per neighbour set into
        ``res.scoped`` (members outside the set that may hold them get them
        withdrawn, as if the export rejected them: :meth:`_scoped_held`);
        the other prefixes are returned."""
        per = src.scopes.get(self.family)
        if not per:
            return packed
        afi = self.afi
        rest = []
        by_scope = {}
        for path_id, addr, plen in codec.unpack_prefixes(packed, afi, addpath):
            entry = bytes((plen,)) + addr[: (plen + 7) >> 3]
            scope = per.get(entry)
            if addpath:
                entry = path_id.to_bytes(4, "big") + entry
            (rest if scope is None else by_scope.setdefault(scope, [])).append(entry)
        if not by_scope:
            return packed
        out = self.export(src, attrs, nh)
        for scope, entries in by_scope.items():
            pk = b"".join(entries)
            if out is None:
                if withdraw_rejected:
                    withdraw.append(pk)
                continue
            accepted = (self._split_per_prefix(src, out[0], out[1], pk, addpath) if len(out) == 3
                        else ((out, pk),))
            for o, part in accepted:
                if o is None:
                    if withdraw_rejected:
                        withdraw.append(part)
                    continue
                self._scoped_held(res, scope, self._pack(o, part), part, withdraw_rejected)
        return b"".join(rest)

    def _split_per_prefix(self, src, block, nh, packed, addpath):
        """The export chain looks at prefixes: evaluate each one, then
        regroup the prefixes by result.  [(out or None, packed)]."""
        afi = self.afi
        buckets = {}
        for pid, addr, plen in codec.unpack_prefixes(packed, afi, addpath):
            out = self.export_prefix(src, block, nh, (afi, addr, plen))
            entry = bytes((plen,)) + addr[: (plen + 7) >> 3]
            if addpath:
                entry = pid.to_bytes(4, "big") + entry
            lst = buckets.get(out)
            if lst is None:
                buckets[out] = [entry]
            else:
                lst.append(entry)
        return [(out, b"".join(entries)) for out, entries in buckets.items()]


def prefix_entries(packed, afi, addpath):
    """Packed prefixes (no path ids) of packed NLRI, each once, in order."""
    out = {}
    for _pid, addr, plen in codec.unpack_prefixes(packed, afi, addpath):
        out[bytes((plen,)) + addr[: (plen + 7) >> 3]] = None
    return list(out)


class PathRanker:
    """The paths of a prefix in the order of the decision process, for
    ADD-PATH best-N (RFC 7911 §5; draft-ietf-idr-add-paths-guidelines
    "add-n"): the best path, then the best of the others, and so on.

    The RIB keeps only the best; the rest are ranked by the same decision
    process (RFC 4271 §9.1, one implementation of it) run on a scratch RIB
    of the same class that shares the attribute table: the candidates go
    in, the best is taken out, until N are ranked.  Per prefix in Python,
    so only best-N groups pay for it."""

    def __init__(self, rib):
        self.rib = rib
        self.scratch = type(rib)(rib.afi, attrs=rib.attrs, always_compare_med=rib.always_compare_med)
        self.peers = {}  # peer id -> peer_info the scratch RIB has
        self.checked = set()  # peers compared with the RIB's since begin()

    def begin(self):
        """A new batch: peer records are compared with the RIB's again."""
        self.checked = set()

    def _sync(self, pid):
        if pid in self.checked:
            return
        info = self.rib.peer_info(pid)
        if self.peers.get(pid) != info:
            sc = self.scratch
            if sc.has_peer(pid):
                sc.remove_peer(pid)
            sc.add_peer(pid, info["peer_as"], info["local_as"], info["router_id"], info["address"],
                        info["ibgp"], info["rr_client"])
            self.peers[pid] = info
        self.checked.add(pid)

    def top(self, entry, n):
        """[(peer id, received path id, attr id)] of the packed prefix
        ``entry``, best first, at most ``n``."""
        rib = self.rib
        plen = entry[0]
        width = 4 if rib.afi == 1 else 16
        net = ipaddress.ip_network((entry[1:].ljust(width, b"\0"), plen))
        paths = rib.paths(net)
        if not paths or n <= 0:
            return []
        best = rib.best_path(net)
        if best is None:
            return []
        out = [best[:3]]
        if n == 1 or len(paths) == 1:
            return out
        sc = self.scratch
        rest = [p for p in paths if p[0] != best[0] or p[1] != best[1]]
        for p in rest:
            self._sync(p[0])
            sc.update(p[0], p[1].to_bytes(4, "big") + entry, True, p[2])
        try:
            while len(out) < n and rest:
                q = sc.best_path(net)
                if q is None:
                    break
                out.append(q[:3])
                sc.withdraw(q[0], q[1].to_bytes(4, "big") + entry, True)
                rest.remove(next(p for p in rest if p[0] == q[0] and p[1] == q[1]))
        finally:
            for p in rest:
                sc.withdraw(p[0], p[1].to_bytes(4, "big") + entry, True)
        return out


    def first(self, entry, accept):
        """The first path of the packed prefix ``entry`` in decision order
        for which ``accept((peer id, received path id, attr id))`` is not
        None: (rank, path, that result), rank 0 being the best; None when
        no path is accepted.  Ranks lazily: a prefix whose best is accepted
        costs one call (RFC 7947 §2.3 path hiding, see
        fastbgp.rib.route_server.PathHiding)."""
        rib = self.rib
        plen = entry[0]
        width = 4 if rib.afi == 1 else 16
        net = ipaddress.ip_network((entry[1:].ljust(width, b"\0"), plen))
        best = rib.best_path(net)
        if best is None:
            return None
        got = accept(best[:3])
        if got is not None:
            return 0, best[:3], got
        paths = rib.paths(net)
        rest = [p for p in paths if p[0] != best[0] or p[1] != best[1]]
        if not rest:
            return None
        if len(rest) == 1:
            # One other path: second by definition, no ranking needed.
            got = accept(rest[0][:3])
            return None if got is None else (1, rest[0][:3], got)
        sc = self.scratch
        for p in rest:
            self._sync(p[0])
            sc.update(p[0], p[1].to_bytes(4, "big") + entry, True, p[2])
        try:
            rank = 1
            while rest:
                q = sc.best_path(net)
                if q is None:
                    return None
                got = accept(q[:3])
                if got is not None:
                    return rank, q[:3], got
                rank += 1
                sc.withdraw(q[0], q[1].to_bytes(4, "big") + entry, True)
                rest.remove(next(p for p in rest if p[0] == q[0] and p[1] == q[1]))
            return None
        finally:
            for p in rest:
                sc.withdraw(p[0], p[1].to_bytes(4, "big") + entry, True)


def _encode(items):
    """Attribute block from {type: (flags, value)}, sorted by type code."""
    return b"".join(encode_attr(items[t][0] & ~FLAG_EXTENDED_LENGTH, t, items[t][1]) for t in sorted(items))


def _prepend(value, asn):
    """AS_PATH value (4-octet) with ``asn`` in front (RFC 4271 §5.1.2: into
    the leading AS_SEQUENCE, or a new one when the path starts with an
    AS_SET or the sequence is full)."""
    segs = decode_segments(value, 4) if value else []
    if segs and segs[0][0] == AS_SEQUENCE and len(segs[0][1]) < 255:
        segs[0] = (AS_SEQUENCE, [asn] + segs[0][1])
    else:
        segs.insert(0, (AS_SEQUENCE, [asn]))
    return encode_segments(segs, 4)


def packed_address(text):
    """4 or 16 octets of an address string (None stays None)."""
    if text is None:
        return None
    return ipaddress.ip_address(str(text).split("%")[0]).packed


def self_next_hops(local_address, configured=None):
    """(nh4, nh6) "self" means on a session whose local address is
    ``local_address``: our address of each family; over an IPv4 session the
    IPv6 one is the IPv4-mapped address (as fastbgp.session.speaker does)."""
    addr = packed_address(local_address or configured)
    if addr is None:
        return None, None
    if len(addr) == 4:
        return addr, b"\x00" * 10 + b"\xff\xff" + addr
    ip = ipaddress.IPv6Address(addr)
    return (ip.ipv4_mapped.packed if ip.ipv4_mapped else None), addr

