"""Routing policy compiled from the configuration, run on canonical
attribute blocks.

The RIB keeps a route's path attributes as one canonical ``bytes`` block
(4-octet AS numbers, MP_REACH/MP_UNREACH removed; see
:class:`fastbgp.wire.types.ParsedUpdate`) shared by every prefix of an
UPDATE.  Policy therefore works on ``(prefix, attrs)`` and returns ``None``
(rejected) or the block to use -- the *same object* when nothing changed, so
interning keeps working, else a re-encoded block with attributes sorted by
type code.

Speed comes from the grouping: a full table is ~1M prefixes but only tens of
thousands of distinct attribute blocks.  A chain whose conditions never look
at the prefix (no ``prefix-set``) gives the same answer for every prefix of a
block, so :meth:`PolicyEngine.apply` caches its verdict by (chain, attrs) --
plus the session context and address family when the chain uses them -- and
1M prefixes in 1000 attribute groups cost 1000 evaluations.  Prefix sets are
compiled to per-length hash tables (one dict probe per distinct length in
the set); AS-path regexes run on the rendered path, memoised per block;
community conditions are set operations.

Semantics (GoBGP/OpenConfig-like):

* A chain is a list of policies, then a default action.  Statements run in
  order; the first whose conditions match applies its modifications, then its
  ``result``: ``accept`` or ``reject`` end the chain, ``next`` goes on to the
  next statement with the modified route (then the next policy).  Falling off
  the end of the chain applies the default (``default-import`` /
  ``default-export``, which RFC 8212 makes ``reject`` for eBGP).
* A statement matches when ``all`` (default) / ``any`` / none (``invert``)
  of its conditions hold; no conditions always match.  A set reference
  matches ``any`` member (default), ``all`` members, or none (``invert``).

Next hops: an IPv4 unicast route carries NEXT_HOP in the block, so
``set-next-hop`` / ``next-hop-self`` rewrite it there.  Other families carry
the next hop in MP_REACH_NLRI, which is not part of the canonical block; use
:meth:`PolicyEngine.evaluate`, whose :class:`Verdict` also gives the next hop
to send (``NEXT_HOP_SELF`` when the context does not know our address).
"""

import ipaddress
import re
import struct
from typing import NamedTuple

from fastbgp.config.schema import Neighbor, parse_prefix_entry
from fastbgp.wire.as4 import encode_attr, encode_segments
from fastbgp.wire.codec import add_members, attr_spans, decode_segments, replay_edits, splice_attr  # compiled when built (as4's otherwise)
from fastbgp.wire.communities import (
    parse_community,
    parse_community_pattern,
    parse_ext_community,
    parse_large_community,
    parse_large_community_pattern,
)
from fastbgp.wire.constants import (
    AFI_IPV4,
    AFI_IPV6,
    AS_CONFED_SEGMENTS,
    AS_CONFED_SEQUENCE,
    AS_CONFED_SET,
    AS_SEQUENCE,
    AS_SET,
    ATTR_AS_PATH,
    ATTR_COMMUNITIES,
    ATTR_EXT_COMMUNITIES,
    ATTR_LARGE_COMMUNITY,
    ATTR_LOCAL_PREF,
    ATTR_MED,
    ATTR_NEXT_HOP,
    ATTR_ORIGIN,
    FLAG_EXTENDED_LENGTH,
    ORIGIN_NAMES,
    WELL_KNOWN_FLAGS,
)
from fastbgp.wire.families import parse_family
from fastbgp.rib.route_server import from_config as route_server_policy

__all__ = [
    "compile_policies",
    "PolicyEngine",
    "PolicyContext",
    "Chain",
    "Verdict",
    "NEXT_HOP_SELF",
    "NOT_REPLAYED",
    "PrefixMatcher",
    "render_as_path",
    "encode_route",
]

# Verdict.next_hop when next-hop-self ran but the context has no local
# address of the route's family: the session substitutes its own address.
NEXT_HOP_SELF = "self"

_ORIGINS = {name: code for code, name in ORIGIN_NAMES.items()}
_WIDTH = {AFI_IPV4: 32, AFI_IPV6: 128}

_ACCEPT, _REJECT, _NEXT = 1, 2, 0
_RESULTS = {"accept": _ACCEPT, "reject": _REJECT, "next": _NEXT}
_ALL, _ANY, _INVERT = 0, 1, 2
_MODES = {"all": _ALL, "any": _ANY, "invert": _INVERT}


class Verdict(NamedTuple):
    """An accepted route: the attribute block to use and the next hop to send
    (None = unchanged; 4 or 16 bytes; or NEXT_HOP_SELF)."""

    attrs: bytes
    next_hop: object = None


# Verdict(attrs, next_hop) without the generated __new__'s Python frame
# (one per evaluation): _verdict(Verdict, (attrs, next_hop)).
_verdict = tuple.__new__


# ------------------------------------------------------------------ context


class PolicyContext:
    """Who the route is from (import) or for (export).

    Hashable by value and cheap to hash (precomputed), since it is part of
    cache keys when a chain looks at it.  ``local_ipv4`` / ``local_ipv6``
    (our addresses on the session, packed or text) are what next-hop-self
    writes.
    """

    __slots__ = ("neighbor", "peer_as", "local_as", "local_ipv4", "local_ipv6", "_ip", "_key", "_hash", "rpki", "aspa")

    def __init__(self, neighbor=None, peer_as=0, local_as=0, local_address=None, local_ipv4=None, local_ipv6=None,
                 rpki=None, aspa=None):
        self.neighbor = None if neighbor is None else str(neighbor)
        self._ip = None
        if neighbor is not None:
            ip = ipaddress.ip_address(str(neighbor).split("%")[0])
            self._ip = (AFI_IPV4 if ip.version == 4 else AFI_IPV6, int(ip))
        self.peer_as = peer_as
        self.local_as = local_as
        if local_address is not None:
            if isinstance(local_address, (bytes, bytearray)):
                packed = bytes(local_address)
            else:
                packed = ipaddress.ip_address(str(local_address).split("%")[0]).packed
            if len(packed) == 4:
                local_ipv4 = local_ipv4 or packed
            else:
                local_ipv6 = local_ipv6 or packed
        self.local_ipv4 = _packed(local_ipv4, 4)
        self.local_ipv6 = _packed(local_ipv6, 16)
        # The route's RPKI states at import ("valid" | "invalid" |
        # "not-found", "valid" | "invalid" | "unknown"; None: not validated,
        # read as not-found / unknown) for the ``rpki`` / ``aspa`` conditions.
        self.rpki = rpki
        self.aspa = aspa
        self._key = (self.neighbor, peer_as, local_as, self.local_ipv4, self.local_ipv6, rpki, aspa)
        self._hash = hash(self._key)

    @classmethod
    def for_neighbor(cls, n, local_address=None):
        """Context of a configured neighbour (a config.Neighbor)."""
        return cls(n.address, n.peer_as, n.local_as, local_address=local_address or n.local_address)

    def __hash__(self):
        return self._hash

    def __eq__(self, other):
        return isinstance(other, PolicyContext) and self._key == other._key

    def with_validation(self, rpki=None, aspa=None):
        """This context for a route with these RPKI states (one per state
        pair and neighbour: the importer keeps them)."""
        c = PolicyContext(self.neighbor, self.peer_as, self.local_as, local_ipv4=self.local_ipv4,
                          local_ipv6=self.local_ipv6, rpki=rpki, aspa=aspa)
        return c

    def __repr__(self):
        return "PolicyContext(neighbor=%r, peer_as=%d, local_as=%d)" % (self.neighbor, self.peer_as, self.local_as)


def _packed(addr, width):
    if addr is None:
        return None
    if isinstance(addr, (bytes, bytearray)):
        if len(addr) != width:
            raise ValueError("expected a %d-octet address" % width)
        return bytes(addr)
    packed = ipaddress.ip_address(str(addr)).packed
    if len(packed) != width:
        raise ValueError("%s is not an IPv%d address" % (addr, 4 if width == 4 else 6))
    return packed


_NO_CONTEXT = PolicyContext()


# ------------------------------------------------------------ prefix sets


class PrefixMatcher:
    """A prefix set compiled for lookups: for every distinct length n of the
    set's networks, a dict from the network's top n bits to a bitmask of
    the route lengths that match (ge..le, OR-ed over entries).  A route
    (value, plen) matches when, for some n <= plen, table_n[value >> (W-n)]
    has bit plen set -- one dict probe per distinct length."""

    __slots__ = ("levels",)

    def __init__(self, entries=()):
        tables = {}
        for entry in entries:
            net, lo, hi = parse_prefix_entry(entry)
            afi = AFI_IPV4 if net.version == 4 else AFI_IPV6
            n = net.prefixlen
            key = int(net.network_address) >> (_WIDTH[afi] - n)
            mask = ((1 << (hi + 1)) - 1) ^ ((1 << lo) - 1)
            t = tables.setdefault(afi, {}).setdefault(n, {})
            t[key] = t.get(key, 0) | mask
        self.levels = {
            afi: tuple((n, _WIDTH[afi] - n, by_len[n]) for n in sorted(by_len)) for afi, by_len in tables.items()
        }

    def match(self, afi, value, plen):
        """``value`` is the address as an int (host bits may be set)."""
        for n, shift, table in self.levels.get(afi, ()):
            if n > plen:
                return False
            m = table.get(value >> shift)
            if m is not None and (m >> plen) & 1:
                return True
        return False


# ------------------------------------------------------- attribute views


def render_as_path(segments):
    """The AS path as the string AS-path regexes see: AS_SEQUENCE members
    space-separated, AS_SET in braces, confederation segments in
    parentheses (sequence) or brackets (set):
    ``"65001 65002 {65010 65011}"``."""
    out = []
    for st, asns in segments:
        body = " ".join(str(a) for a in asns)
        if st == AS_SEQUENCE:
            if body:
                out.append(body)
        elif st == AS_SET:
            out.append("{" + body + "}")
        elif st == AS_CONFED_SEQUENCE:
            out.append("(" + body + ")")
        elif st == AS_CONFED_SET:
            out.append("[" + body + "]")
    return " ".join(out)


def _communities(value):
    return struct.unpack(">%dI" % (len(value) // 4), value)


def _large(value):
    return tuple(value[k : k + 12] for k in range(0, len(value) - len(value) % 12, 12))


class _View:
    """One attribute block, split on first use (a chain whose conditions
    read no attribute, e.g. an RFC 6811 ROV policy, may never split it) and
    memoised (shared by every evaluation of the same block)."""

    __slots__ = ("attrs", "_index", "_as_path", "_comms", "_large", "_memo")

    def __init__(self, block):
        self.attrs = block
        self._index = None
        self._as_path = None
        self._comms = None
        self._large = None
        self._memo = None

    def index(self):
        """type -> (flags, type, value start, value end, attribute start),
        wire.as4.attr_spans's tuples (the one parser); no bytes are copied."""
        idx = self._index
        if idx is None:
            idx = self._index = {}
            for sp in attr_spans(self.attrs):
                idx[sp[1]] = sp  # a duplicate type: the last one, as before
        return idx

    def value(self, t):
        it = self.index().get(t)
        return None if it is None else self.attrs[it[2] : it[3]]

    @property
    def memo(self):
        m = self._memo
        if m is None:
            m = self._memo = {}
        return m

    def as_path(self):
        if self._as_path is None:
            v = self.value(ATTR_AS_PATH)
            self._as_path = render_as_path(decode_segments(v, 4)) if v is not None else ""
        return self._as_path

    def communities(self):
        if self._comms is None:
            v = self.value(ATTR_COMMUNITIES)
            self._comms = frozenset(_communities(v)) if v is not None else frozenset()
        return self._comms

    def large(self):
        if self._large is None:
            v = self.value(ATTR_LARGE_COMMUNITY)
            self._large = frozenset(_large(v)) if v is not None else frozenset()
        return self._large


class _Route:
    """One evaluation: the shared view plus this evaluation's changes."""

    __slots__ = ("view", "mods", "ctx", "afi", "pfx", "next_hop", "trace", "general")

    def __init__(self, view, ctx, afi, pfx, general=False):
        self.view = view
        # True: no shortcut (splice, constants encoded at compile time), the
        # reference evaluate_uncached() gives and the tests compare with.
        self.general = general
        self.mods = {}  # type -> (flags, value), or None when removed
        self.ctx = ctx
        self.afi = afi
        self.pfx = pfx  # (value int, plen) or None
        self.next_hop = None
        self.trace = None  # [(matcher, answer)] of prefix questions asked

    def value(self, t):
        if t in self.mods:
            fv = self.mods[t]
            return None if fv is None else fv[1]
        return self.view.value(t)

    def set(self, t, value):
        if t in self.mods and self.mods[t] is not None:
            flags = self.mods[t][0]
        else:
            it = self.view.index().get(t)
            flags = WELL_KNOWN_FLAGS[t] if it is None else it[0]
        self.mods[t] = (flags & ~FLAG_EXTENDED_LENGTH, value)

    def remove(self, t):
        self.mods[t] = None

    def communities(self):
        if ATTR_COMMUNITIES in self.mods:
            v = self.value(ATTR_COMMUNITIES)
            return frozenset(_communities(v)) if v else frozenset()
        return self.view.communities()

    def large(self):
        if ATTR_LARGE_COMMUNITY in self.mods:
            v = self.value(ATTR_LARGE_COMMUNITY)
            return frozenset(_large(v)) if v else frozenset()
        return self.view.large()

    def as_path(self):
        if ATTR_AS_PATH in self.mods:
            v = self.value(ATTR_AS_PATH)
            return render_as_path(decode_segments(v, 4)) if v else ""
        return self.view.as_path()

    def result(self):
        """The block after the changes (the original object when none):
        attributes sorted by type code, the changed ones re-encoded."""
        mods = self.mods
        view = self.view
        if not mods:
            return view.attrs
        out = None
        if len(mods) == 1 and not self.general:
            # One change (set-local-pref, a community added...): spliced
            # into the block (codec.splice_attr; None when the block's types
            # are not strictly increasing: only the rebuild keeps its bytes).
            for t, fv in mods.items():
                out = splice_attr(view.attrs, t, b"" if fv is None else encode_attr(fv[0], t, fv[1]))
        if out is None:
            out = self.rebuild()
        return view.attrs if out == view.attrs else out

    def rebuild(self):
        """result() the general way: every attribute, sorted by type."""
        mods = self.mods
        block = self.view.attrs
        parts = [(t, block[it[4] : it[3]]) for t, it in self.view.index().items() if t not in mods]
        for t, fv in mods.items():
            if fv is not None:
                parts.append((t, encode_attr(fv[0], t, fv[1])))
        parts.sort(key=lambda p: p[0])
        return b"".join(p[1] for p in parts)


# ------------------------------------------------------------- conditions


def _set_ref(ref):
    if isinstance(ref, str):
        return ref, _ANY
    return ref.name, _MODES[ref.match]


def _compile_conditions(c, sets, flags):
    """[(fn(route) -> bool)] for the conditions that are set; records in
    ``flags`` what the chain depends on: "attrs" unless every condition is
    one of those known to read only the context and family (counted in
    ``blind``), so a condition added later reads the block until said
    otherwise."""
    out = []
    blind = 0
    if c.prefix_set is not None:
        name, mode = _set_ref(c.prefix_set)
        matcher = sets["prefix"][name]
        flags.add("prefix")
        invert = mode == _INVERT

        def prefix_cond(r, m=matcher, invert=invert):
            hit = m.match(r.afi, r.pfx[0], r.pfx[1])
            if r.trace is not None:
                r.trace.append((m, hit))
            return hit != invert

        out.append(prefix_cond)
    if c.as_path_set is not None:
        name, mode = _set_ref(c.as_path_set)
        regexes = sets["as_path"][name]
        memo_key = ("as-path", name, mode)

        def as_path_cond(r, regexes=regexes, mode=mode, memo_key=memo_key):
            cacheable = ATTR_AS_PATH not in r.mods
            if cacheable:
                hit = r.view.memo.get(memo_key)
                if hit is not None:
                    return hit
            s = r.as_path()
            if mode == _ALL:
                res = all(rx.search(s) for rx in regexes)
            else:
                res = any(rx.search(s) for rx in regexes) != (mode == _INVERT)
            if cacheable:
                r.view.memo[memo_key] = res
            return res

        out.append(as_path_cond)
    for attr, kind, getter in (
        ("community_set", "community", _Route.communities),
        ("large_community_set", "large", _Route.large),
    ):
        ref = getattr(c, attr)
        if ref is None:
            continue
        name, mode = _set_ref(ref)
        members = sets[kind][name]

        def comm_cond(r, members=members, mode=mode, getter=getter):
            have = getter(r)
            if mode == _ALL:
                return members <= have
            if mode == _ANY:
                return not members.isdisjoint(have)
            return members.isdisjoint(have)

        out.append(comm_cond)
    if c.neighbor is not None:
        nets = []
        for text in c.neighbor:
            net = ipaddress.ip_network(text)
            afi = AFI_IPV4 if net.version == 4 else AFI_IPV6
            shift = _WIDTH[afi] - net.prefixlen
            nets.append((afi, shift, int(net.network_address) >> shift))
        flags.add("ctx")

        def neighbor_cond(r, nets=tuple(nets)):
            ip = r.ctx._ip
            if ip is None:
                return False
            afi, value = ip
            for a, shift, key in nets:
                if a == afi and value >> shift == key:
                    return True
            return False

        out.append(neighbor_cond)
        blind += 1
    if c.family is not None:
        afis = frozenset(parse_family(f)[0] for f in c.family)
        flags.add("family")
        out.append(lambda r, afis=afis: r.afi in afis)
        blind += 1
    if c.origin is not None:
        want = _ORIGINS[c.origin]

        def origin_cond(r, want=want):
            v = r.value(ATTR_ORIGIN)
            return bool(v) and v[0] == want

        out.append(origin_cond)
    # The states are part of the context (PolicyContext.rpki / .aspa), so
    # the decision cache keys on them; the importer splits an UPDATE's
    # prefixes by RFC 6811 state before policy (fastbgp.daemon.importer).
    if c.rpki is not None:
        flags.update(("ctx", "rpki"))
        out.append(lambda r, want=c.rpki: (r.ctx.rpki or "not-found") == want)
        blind += 1
    if c.aspa is not None:
        flags.update(("ctx", "aspa"))
        out.append(lambda r, want=c.aspa: (r.ctx.aspa or "unknown") == want)
        blind += 1
    if blind != len(out):
        flags.add("attrs")
    return out


# ---------------------------------------------------------------- actions


def _community_editor(act, large):
    """(fn(list of current members) -> new list, ``adds``), or (None, None)
    when ``act`` is None.  Members are ints (RFC 1997) or 12-byte values
    (RFC 8092).  ``adds``: when ``act`` only adds, the members it adds as
    wire octets (then codec.add_members of the current value is the same
    edit, without a Python object per member), else None."""
    if act is None:
        return None, None
    if large:

        def enc(s):
            g, a, b = parse_large_community(s)
            return struct.pack(">III", g, a, b)

        pats = [parse_large_community_pattern(s) for s in act.remove]

        def removed(m):
            parts = struct.unpack(">III", m)
            return any(all(x is None or x == y for x, y in zip(p, parts)) for p in pats)

    else:
        enc = parse_community
        pats = [parse_community_pattern(s) for s in act.remove]

        def removed(m):
            hi, lo = m >> 16, m & 0xFFFF
            return any((p[0] is None or p[0] == hi) and (p[1] is None or p[1] == lo) for p in pats)

    add = [enc(s) for s in act.add]
    replace = None if act.replace is None else [enc(s) for s in act.replace]
    adds = None
    if not pats and replace is None:
        adds = b"".join(add) if large else struct.pack(">%dI" % len(add), *add)

    def edit(current):
        if replace is not None:
            base = replace
        else:
            base = [*(m for m in current if not removed(m)), *add] if pats else [*current, *add]
        # RFC 8092 §5: duplicates SHOULD NOT be sent; same for RFC 1997.
        # dict.fromkeys keeps the first of each, in order.
        return list(dict.fromkeys(base))

    return edit, adds


def _compile_actions(a, flags, edits):
    """[(fn(route))] for the actions that are set, and in ``edits`` one
    entry per action: what it does to the block as data, for
    codec.replay_edits -- (type, value): set the attribute to it; (type,
    members, width, fresh): add members (codec.add_members), ``fresh``
    being the value when the block has none -- or None for an action only
    its function can do (a prepend, a next hop, a community removal)."""
    out = []
    if a.set_local_pref is not None:
        v = a.set_local_pref.to_bytes(4, "big")
        out.append(lambda r, v=v: r.set(ATTR_LOCAL_PREF, v))
        edits.append((ATTR_LOCAL_PREF, v))
    if a.set_med is not None:
        v = a.set_med.to_bytes(4, "big")
        out.append(lambda r, v=v: r.set(ATTR_MED, v))
        edits.append((ATTR_MED, v))
    edit, adds = _community_editor(a.communities, False)
    if edit is not None:

        def pack(new):
            return struct.pack(">%dI" % len(new), *new)

        # The outcome on a route without the attribute is a constant,
        # encoded once here rather than at every evaluation.
        fresh = pack(edit(()))

        def communities_act(r, edit=edit, fresh=fresh, adds=adds):
            cur = r.value(ATTR_COMMUNITIES)
            if cur and adds is not None and not r.general and not len(cur) % 4:
                new = add_members(cur, adds, 4)  # the same edit in one call
            elif cur:
                new = pack(edit(_communities(cur)))
            else:
                new = pack(edit(())) if r.general else fresh
            if new:
                r.set(ATTR_COMMUNITIES, new)
            elif cur is not None:
                r.remove(ATTR_COMMUNITIES)  # an empty COMMUNITIES is not sent

        out.append(communities_act)
        edits.append(None if adds is None else (ATTR_COMMUNITIES, adds, 4, fresh))
    edit, adds = _community_editor(a.large_communities, True)
    if edit is not None:

        fresh = b"".join(edit(()))

        def large_act(r, edit=edit, fresh=fresh, adds=adds):
            cur = r.value(ATTR_LARGE_COMMUNITY)
            if cur and adds is not None and not r.general:
                new = add_members(cur, adds, 12)  # the same edit in one call
            elif cur:
                new = b"".join(edit(_large(cur)))
            else:
                new = b"".join(edit(())) if r.general else fresh
            if new:
                r.set(ATTR_LARGE_COMMUNITY, new)
            elif cur is not None:
                r.remove(ATTR_LARGE_COMMUNITY)

        out.append(large_act)
        edits.append(None if adds is None else (ATTR_LARGE_COMMUNITY, adds, 12, fresh))
    if a.as_path_prepend is not None:
        asn, count = a.as_path_prepend.asn, a.as_path_prepend.count
        if asn is None:
            flags.add("ctx")

        def prepend_act(r, asn=asn, count=count):
            who = asn if asn is not None else r.ctx.local_as
            if not who:
                return  # no local AS known: nothing sensible to prepend
            cur = r.value(ATTR_AS_PATH)
            segs = decode_segments(cur, 4) if cur else []
            # Confederation segments stay in front (RFC 5065 §5.3); the
            # prepend goes into the first AS_SEQUENCE after them.
            i = 0
            while i < len(segs) and segs[i][0] in AS_CONFED_SEGMENTS:
                i += 1
            if i < len(segs) and segs[i][0] == AS_SEQUENCE:
                segs[i] = (AS_SEQUENCE, [who] * count + segs[i][1])
            else:
                segs.insert(i, (AS_SEQUENCE, [who] * count))
            r.set(ATTR_AS_PATH, encode_segments(segs, 4))

        out.append(prepend_act)
        edits.append(None)
    if a.next_hop_self:
        flags.add("ctx")
        flags.add("family")

        def nh_self_act(r):
            addr = r.ctx.local_ipv4 if r.afi == AFI_IPV4 else r.ctx.local_ipv6
            if addr is None:
                r.next_hop = NEXT_HOP_SELF
                return
            r.next_hop = addr
            if r.afi == AFI_IPV4:
                r.set(ATTR_NEXT_HOP, addr)

        out.append(nh_self_act)
        edits.append(None)
    if a.set_next_hop is not None:
        packed = ipaddress.ip_address(a.set_next_hop).packed
        flags.add("family")

        def nh_act(r, packed=packed):
            # A next hop of the other family is not applied (RFC 8950
            # IPv4-over-IPv6 next hops are the session's business).
            if len(packed) == (4 if r.afi == AFI_IPV4 else 16):
                r.next_hop = packed
                if r.afi == AFI_IPV4:
                    r.set(ATTR_NEXT_HOP, packed)

        out.append(nh_act)
        edits.append(None)
    return out


def _always(r):
    return True


class _Statement:
    __slots__ = ("name", "conds", "mode", "actions", "edits", "result", "test")

    def __init__(self, st, sets, flags):
        self.name = st.name
        self.conds = tuple(_compile_conditions(st.conditions, sets, flags))
        self.mode = _MODES[st.match]
        edits = []
        self.actions = tuple(_compile_actions(st.actions, flags, edits))
        assert len(edits) == len(self.actions)
        # The actions as data (see _compile_actions), None when one is not.
        self.edits = None if None in edits else tuple(edits)
        self.result = _RESULTS[st.actions.result]
        # fn(route) -> bool the chain runs: the lone condition itself when
        # there is one under all/any (one call, not two), else matches().
        if not self.conds:
            self.test = _always
        elif len(self.conds) == 1 and self.mode != _INVERT:
            self.test = self.conds[0]
        else:
            self.test = self.matches

    def matches(self, r):
        conds = self.conds
        if not conds:
            return True
        if self.mode == _ALL:
            for c in conds:
                if not c(r):
                    return False
            return True
        hit = False
        for c in conds:
            if c(r):
                hit = True
                break
        return hit if self.mode == _ANY else not hit


class _Policy:
    __slots__ = ("name", "statements", "flags")

    def __init__(self, p, sets):
        self.name = p.name
        self.flags = set()
        self.statements = tuple(_Statement(st, sets, self.flags) for st in p.statements)


# ------------------------------------------------------------------ chains


class Chain:
    """Policies in order plus the default action; obtained from
    :meth:`PolicyEngine.chain` (interned, so equal chains are one object)."""

    __slots__ = ("names", "default_accept", "policies", "prefix_dependent", "uses_ctx", "uses_family", "_cache",
                 "uses_rpki", "uses_aspa", "blind", "_plans")

    def __init__(self, names, default_accept, policies):
        self.names = names
        self.default_accept = default_accept
        self.policies = policies
        flags = set()
        for p in policies:
            flags |= p.flags
        self.prefix_dependent = "prefix" in flags
        self.uses_ctx = "ctx" in flags
        self.uses_family = "family" in flags
        self.uses_rpki = "rpki" in flags  # the importer must give the RFC 6811 state
        self.uses_aspa = "aspa" in flags  # ... and the ASPA verification result
        self._cache = {}
        # No condition reads the block (nor a prefix): which statements
        # apply depends on the context and family alone (PolicyEngine._plan).
        self.blind = not flags & {"attrs", "prefix"}
        self._plans = {}  # (context, family) -> the plan; bounded by PLANS_MAX

    def __repr__(self):
        return "Chain(%r, default=%s)" % (list(self.names), "accept" if self.default_accept else "reject")


class PolicyEngine:
    """Compiled policies of one configuration (immutable; a reload compiles
    a new engine, which also drops the caches)."""

    def __init__(self, policies, cache_size=1 << 18, view_cache_size=1 << 16):
        self._policies = policies  # name -> _Policy
        self._chains = {}
        self._contexts = {}
        self._views = {}
        self.cache_size = cache_size
        self.view_cache_size = view_cache_size
        self.evaluations = 0  # full chain runs (cache misses included)
        self.replays = 0  # of which replayed plans (_group)
        self.hits = 0
        # IXP route-server policy (fastbgp.rib.route_server), None when off.
        self.route_server = None

    # -- chains

    def chain(self, target, direction="import", default=None):
        """The Chain for a list of policy names (``default`` "accept"
        unless given), a single name, or a config.Neighbor (its
        import/export policies and default-import/export)."""
        if isinstance(target, Chain):
            return target
        if direction not in ("import", "export"):
            raise ValueError("direction must be 'import' or 'export', got %r" % (direction,))
        if isinstance(target, Neighbor):
            names = tuple(target.import_policy if direction == "import" else target.export_policy)
            if default is None:
                default = target.default_import if direction == "import" else target.default_export
        elif isinstance(target, str):
            names = (target,)
        else:
            names = tuple(target)
        if default is None:
            default = "accept"
        if default not in ("accept", "reject"):
            raise ValueError("default must be 'accept' or 'reject', got %r" % (default,))
        key = (names, default)
        ch = self._chains.get(key)
        if ch is None:
            missing = [n for n in names if n not in self._policies]
            if missing:
                raise KeyError("unknown policy %s" % ", ".join(missing))
            ch = Chain(names, default == "accept", tuple(self._policies[n] for n in names))
            self._chains[key] = ch
        return ch

    def prefix_independent(self, chain, direction="import"):
        """True when the chain's verdict depends on the attributes (and
        context/family) only, so it can be computed once per block."""
        return not self.chain(chain, direction).prefix_dependent

    # -- evaluation

    def _context(self, target, ctx):
        if ctx is not None:
            return ctx
        if isinstance(target, Neighbor):
            c = self._contexts.get(target.address)
            if c is None or c.peer_as != target.peer_as or c.local_as != target.local_as:
                c = self._contexts[target.address] = PolicyContext.for_neighbor(target)
            return c
        return _NO_CONTEXT

    def _view(self, attrs):
        v = self._views.get(attrs)
        if v is None:
            if len(self._views) >= self.view_cache_size:
                self._views.clear()
            v = self._views[attrs] = _View(attrs)
        return v

    def _group(self, chain, attrs, ctx, afi):
        """The verdict of a prefix-independent ``chain`` for ``attrs``: the
        plan replayed when there is one (codec.replay_edits), else a full run."""
        plan = self.group_plan(chain, ctx, afi)
        if plan is not None:
            v = self.replay_plan(plan, attrs)
            if v is not NOT_REPLAYED:
                return v
        return self._run(chain, _View(attrs), ctx, afi, None)

    def group_plan(self, chain, ctx, afi):
        """What a prefix-independent ``chain`` does to any block in
        (``ctx``, ``afi``), for replay_plan; None when it has no plan (a
        condition reads the block, or an action that applies is not data).
        A caller with many blocks of one (chain, context, family) may keep
        it: it holds as long as the chain (this engine) does."""
        if not chain.blind:
            return None
        plan = chain._plans.get((ctx, afi))
        if plan is None:
            if len(chain._plans) >= PLANS_MAX:
                chain._plans.clear()
            plan = chain._plans[(ctx, afi)] = self._plan(chain, ctx, afi)
        return None if plan is _UNPLANNED else plan

    def replay_plan(self, plan, attrs):
        """The verdict of a group_plan for ``attrs`` (None: rejected), or
        NOT_REPLAYED when the block defeats the replay (codec.replay_edits
        gives None): the caller then runs the chain (evaluate_group)."""
        out = self.replay_block(plan, attrs)
        if out is None or out is NOT_REPLAYED:
            return out
        return _verdict(Verdict, (out, None))

    def replay_block(self, plan, attrs):
        """replay_plan's answer without the Verdict, for a caller that
        wants only the block (a replayed plan never sets a next hop): the
        new attributes, None (rejected) or NOT_REPLAYED.  One per new
        attribute set of a table (fastbgp.daemon.plain_import)."""
        if plan is _REJECTED:
            self.evaluations += 1
            self.replays += 1
            return None
        out = replay_edits(attrs, plan)
        if out is None:
            return NOT_REPLAYED
        self.evaluations += 1
        self.replays += 1
        return out

    def _plan(self, chain, ctx, afi):
        """What a blind ``chain`` does for (``ctx``, ``afi``), whatever the
        block: _REJECTED, the edits of the statements that apply, in order
        (_compile_actions), or _UNPLANNED when one of them has an action
        that is not data.  The conditions run on an empty block: by
        Chain.blind none of them reads it."""
        r = _Route(_View(b""), ctx, afi, None)
        edits = []
        for pol in chain.policies:
            for st in pol.statements:
                if st.test(r):
                    if st.edits is None:
                        return _UNPLANNED
                    edits += st.edits
                    if st.result == _ACCEPT:
                        return tuple(edits)
                    if st.result == _REJECT:
                        return _REJECTED
        return tuple(edits) if chain.default_accept else _REJECTED

    def _run(self, chain, view, ctx, afi, pfx, trace=None, general=False):
        self.evaluations += 1
        r = _Route(view, ctx, afi, pfx, general)
        r.trace = trace
        for pol in chain.policies:
            for st in pol.statements:
                if st.test(r):
                    for act in st.actions:
                        act(r)
                    if st.result == _ACCEPT:
                        return _verdict(Verdict, (r.result(), r.next_hop))
                    if st.result == _REJECT:
                        return None
        return _verdict(Verdict, (r.result(), r.next_hop)) if chain.default_accept else None

    def _cached(self, chain, attrs, ctx, afi, pfx):
        """The verdict through the chain's decision cache.

        Per (context, family, attrs) -- context and family only when the
        chain looks at them -- the cache holds a small decision tree: a
        leaf (the verdict) when no prefix condition was consulted, else a
        question "does prefix set S match?" whose two branches lead on.
        Evaluation is deterministic given the block, context, family and
        the answers to those questions, so a prefix that answers them the
        same way as an earlier one gets the earlier verdict (the very same
        Verdict object) after a few dict probes, without decoding a single
        attribute.  Unknown branches are filled by one full evaluation.
        """
        key = (ctx if chain.uses_ctx else None, afi if chain.uses_family else 0, attrs)
        cache = chain._cache
        node = cache.get(key)
        while node is not None:
            if type(node) is Verdict:
                self.hits += 1
                return node
            if node is _REJECTED:
                self.hits += 1
                return None
            node = node.yes if node.matcher.match(afi, pfx[0], pfx[1]) else node.no
        if chain.prefix_dependent:
            trace = []
            # The view is shared by the block's other prefixes.
            verdict = self._run(chain, self._view(attrs), ctx, afi, pfx, trace)
        else:
            # Cached above by block: a second run would be for another
            # context or family only, so keeping a view would mostly hold
            # memory (and give the collector work).
            trace = None
            verdict = self._group(chain, attrs, ctx, afi)
        leaf = _REJECTED if verdict is None else verdict  # a leaf: the verdict itself
        if not trace:
            if len(cache) >= self.cache_size:
                cache.clear()
            cache[key] = leaf
            return verdict
        root = cache.get(key)
        if root is None:
            if len(cache) >= self.cache_size:
                cache.clear()
            root = cache[key] = _Ask(trace[0][0])
        node = root
        last = len(trace) - 1
        for i, (_matcher, answer) in enumerate(trace):
            child = node.yes if answer else node.no
            if i == last:
                child = leaf
            elif child is None:
                child = _Ask(trace[i + 1][0])
            if answer:
                node.yes = child
            else:
                node.no = child
            node = child
        return verdict

    def evaluate_group(self, chain, attrs, ctx=None, afi=AFI_IPV4, direction="import", cached=True):
        """Verdict (or None) for every prefix of family ``afi`` carrying
        ``attrs``; the chain must be prefix-independent.  Cached: the chain
        runs once per distinct block (and context/family when used).
        ``cached`` False: a caller that keeps its own verdict per block
        (the daemon's import cache) has the chain run without this cache,
        which would hold a second entry (and a Verdict for the collector
        to look at) for every attribute set a table brings."""
        target = chain
        chain = self.chain(chain, direction)
        if chain.prefix_dependent:
            raise ValueError("%r has prefix conditions: evaluate per prefix" % (chain,))
        ctx = self._context(target, ctx)
        if not cached:
            return self._group(chain, attrs, ctx, afi)
        return self._cached(chain, attrs, ctx, afi, None)

    def apply_group(self, chain, attrs, ctx=None, afi=AFI_IPV4, direction="import"):
        """evaluate_group, returning the block or None."""
        v = self.evaluate_group(chain, attrs, ctx, afi, direction)
        return None if v is None else v.attrs

    def evaluate(self, target, direction, prefix, attrs, ctx=None, afi=None):
        """Verdict or None for one route.  ``target``: Chain, list of policy
        names, a policy name, or a config.Neighbor.  ``prefix``: (afi,
        address bytes, length), packed NLRI bytes (length octet + address
        octets; family from ``afi``, default IPv4), an ipaddress network or
        a string.  ``ctx``: PolicyContext (built from the neighbour when
        omitted and ``target`` is one)."""
        chain = self.chain(target, direction)
        ctx = self._context(target, ctx)
        if not chain.prefix_dependent:
            # Only the family matters: skip decoding the prefix.
            if isinstance(prefix, tuple):
                pafi = prefix[0]
            elif isinstance(prefix, (bytes, bytearray, memoryview)):
                pafi = afi or AFI_IPV4
            else:
                pafi = _prefix(prefix)[0]
            return self._cached(chain, attrs, ctx, pafi, None)
        pafi, value, plen = _prefix(prefix, afi)
        return self._cached(chain, attrs, ctx, pafi, (value, plen))

    def evaluate_uncached(self, target, direction, prefix, attrs, ctx=None, afi=None):
        """evaluate() without any cache or shortcut: the reference the caches
        and the fast paths must agree with (tests, debugging)."""
        chain = self.chain(target, direction)
        ctx = self._context(target, ctx)
        pafi, value, plen = _prefix(prefix, afi)
        return self._run(chain, _View(attrs), ctx, pafi, (value, plen), general=True)

    def apply(self, target, direction, prefix, attrs, ctx=None, afi=None):
        """evaluate(), returning the attribute block or None (rejected)."""
        v = self.evaluate(target, direction, prefix, attrs, ctx, afi)
        return None if v is None else v.attrs


# The decision-cache leaf of a rejected route (an accepted one's leaf is its
# Verdict).
_REJECTED = object()
_UNPLANNED = object()  # PolicyEngine._plan: a statement that applies has an action that is not data
NOT_REPLAYED = object()  # PolicyEngine.replay_plan: the block defeats the replay (run the chain)
PLANS_MAX = 4096  # plans per chain (contexts x families; more only with many neighbours' contexts), then start over


class _Ask:
    """Decision node: which branch depends on matcher.match(prefix)."""

    __slots__ = ("matcher", "yes", "no")

    def __init__(self, matcher):
        self.matcher = matcher
        self.yes = None
        self.no = None


def _prefix(prefix, afi=None):
    """(afi, address as int, length) of the accepted prefix spellings."""
    if isinstance(prefix, (bytes, bytearray, memoryview)):
        afi = afi or AFI_IPV4
        width = _WIDTH[afi]
        plen = prefix[0]
        nb = (plen + 7) >> 3
        raw = bytes(prefix[1 : 1 + nb])
        return afi, int.from_bytes(raw, "big") << (width - 8 * nb), plen
    if isinstance(prefix, tuple):
        pafi, addr, plen = prefix
        width = _WIDTH[pafi]
        return pafi, int.from_bytes(addr, "big") << (width - 8 * len(addr)), plen
    net = prefix if isinstance(prefix, (ipaddress.IPv4Network, ipaddress.IPv6Network)) else ipaddress.ip_network(prefix, strict=False)
    return (AFI_IPV4 if net.version == 4 else AFI_IPV6), int(net.network_address), net.prefixlen


# --------------------------------------------------------------- compiling


def compile_policies(cfg, **engine_options):
    """PolicyEngine for a Config from config.load_config (already checked,
    so every reference resolves)."""
    ds = cfg.defined_sets
    sets = {
        "prefix": {s.name: PrefixMatcher(s.prefixes) for s in ds.prefix_sets},
        "as_path": {s.name: tuple(re.compile(x) for x in s.as_paths) for s in ds.as_path_sets},
        "community": {s.name: frozenset(parse_community(c) for c in s.communities) for s in ds.community_sets},
        "large": {
            s.name: frozenset(struct.pack(">III", *parse_large_community(c)) for c in s.large_communities)
            for s in ds.large_community_sets
        },
    }
    policies = {p.name: _Policy(p, sets) for p in cfg.policies}
    engine = PolicyEngine(policies, **engine_options)
    engine.route_server = route_server_policy(cfg)
    return engine


# ----------------------------------------------------------- origination


def encode_route(route):
    """A config.Route -> ((afi, address bytes, length), canonical attrs,
    next hop).  The next hop is the packed address, or NEXT_HOP_SELF when
    the route names none; for IPv4 an explicit next hop is also written as
    NEXT_HOP.  The AS path is the configured one; the session prepends its
    own AS on eBGP export (RFC 4271 §5.1.2)."""
    net = ipaddress.ip_network(route.prefix)
    afi = AFI_IPV4 if net.version == 4 else AFI_IPV6
    attrs = [(ATTR_ORIGIN, bytes((_ORIGINS[route.origin],)))]
    attrs.append((ATTR_AS_PATH, encode_segments([(AS_SEQUENCE, list(route.as_path))], 4) if route.as_path else b""))
    nh = NEXT_HOP_SELF
    if route.next_hop is not None:
        nh = ipaddress.ip_address(route.next_hop).packed
        if afi == AFI_IPV4:
            attrs.append((ATTR_NEXT_HOP, nh))
    if route.med is not None:
        attrs.append((ATTR_MED, route.med.to_bytes(4, "big")))
    if route.local_pref is not None:
        attrs.append((ATTR_LOCAL_PREF, route.local_pref.to_bytes(4, "big")))
    if route.communities:
        cs = list(dict.fromkeys(parse_community(c) for c in route.communities))
        attrs.append((ATTR_COMMUNITIES, struct.pack(">%dI" % len(cs), *cs)))
    if route.large_communities:
        ls = dict.fromkeys(struct.pack(">III", *parse_large_community(c)) for c in route.large_communities)
        attrs.append((ATTR_LARGE_COMMUNITY, b"".join(ls)))
    if route.ext_communities:
        # RFC 4360 §2: eight octets each; duplicates dropped like the others.
        es = list(dict.fromkeys(parse_ext_community(c) for c in route.ext_communities))
        attrs.append((ATTR_EXT_COMMUNITIES, struct.pack(">%dQ" % len(es), *es)))
    attrs.sort(key=lambda a: a[0])
    block = b"".join(encode_attr(WELL_KNOWN_FLAGS[t], t, v) for t, v in attrs)
    plen = net.prefixlen
    return (afi, net.network_address.packed, plen), block, nh
