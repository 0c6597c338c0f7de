"""Pure-Python twin of the compiled RIB (``fastbgp/rib/_rib.pyx``).

Same API, same results (equal ChangeSets, same ordering of prefixes inside
packed outputs, same attribute reference counts): the tests run every case on
both and compare them on random operation sequences.  It is the fallback when
the extension is not built or FASTBGP_NO_EXTENSIONS=1; it keeps one small list
per prefix and is an order of magnitude slower and larger than the compiled
RIB, which stores no Python object per route.

This module also holds what both implementations share: ``ChangeSet``, the
prefix/peer argument parsing used by the (non hot-path) lookup API, and the
limits.
"""

import ipaddress
import itertools
import time

import msgspec

from fastbgp.rib.attrs import F_ORIGINATOR_ID, W_FLAGS, W_REFS, WORDS, AttrTable, record_words  # noqa: F401 (API)

IMPLEMENTATION = "python"

PATH_STALE = 1  # RFC 4724 §4.2: kept across a restart until refreshed or swept
MAX_PATHS = 0x7FFF  # paths per prefix (the compiled RIB keeps the count in 15 bits)
MAX_PEER_ID = 0xFFFF  # peer ids are 16-bit in the compiled path record
MARKS = 4  # path marks 0..3 (Rib.update's ``mark``; one octet in the compiled record)
# Receive times: the compiled RIB keeps 31 bits of seconds since
# RECEIVED_MIN beside the stale flag; earlier or later times are clamped.
RECEIVED_MIN = 1577836800  # 2020-01-01T00:00:00Z
RECEIVED_MAX = RECEIVED_MIN + 0x7FFFFFFF  # 2088-01-19
# Update-group indexes a HeldSet hands out (0..MAX_HELD_GROUPS-1): a group
# past them gets none and is sent every withdrawal (fastbgp.rib.export).
# Each 64 indexes in use add 8 octets to every held prefix of the family.
MAX_HELD_GROUPS = 1024


class ChangeSet(msgspec.Struct, frozen=True, gc=False):
    """Prefixes whose best path changed during one RIB operation, packed in
    wire NLRI format (no path ids) and grouped for export.

    ``announced``: attr_id -> packed prefixes whose new best path carries those
    attributes; feed each group to ``codec.pack_updates``.
    ``withdrawn``: packed prefixes left without any path (``pack_withdraws``).
    ``by_source``: the same announced prefixes keyed by (peer_id, attr_id) of
    the new best path, for export rules that depend on where a route came
    from (split horizon, RFC 4271 §9.2 iBGP rules, RFC 4456 reflection).  When
    one attribute set is best from a single peer (the usual case) both dicts
    share the same bytes object.

    ``same_source``: those announced prefixes (packed, in the same order)
    whose best path before the update / withdraw / update_many was already
    one of the same peer's: that peer holds none of our routes for them
    (split horizon kept them from it), so it needs no withdrawal of one
    (fastbgp.rib.export, the echo).  Empty for whole-table operations.

    ``replaced``: new attr_id -> [(attrs, next hop, packed)], for the
    announced prefixes that had another best path before the operation:
    ``AttrTable.key`` of that path's attr_id (read before the operation
    could free it) and those of the prefixes that moved from it to a path
    with the new attr_id.  An update group that holds them and exports both
    paths alike need not be sent them again (fastbgp.rib.export).  Pairs
    in order of their first prefix.

    Order: prefixes follow the order of the input for update/withdraw, and
    ascending prefix order for whole-table operations; the order of dict
    entries is the order of their first prefix.
    """

    announced: dict
    withdrawn: bytes
    n_announced: int
    n_withdrawn: int
    by_source: dict
    same_source: bytes = b""
    replaced: dict = {}

    def __bool__(self):
        return bool(self.n_announced or self.n_withdrawn)


# For comparisons only: operations return a fresh empty ChangeSet each time,
# so a consumer that edits the dicts of one cannot affect another.
EMPTY = ChangeSet({}, b"", 0, 0, {})


def empty_changeset():
    return ChangeSet({}, b"", 0, 0, {})


def make_changeset(groups, withdrawn, n_announced, n_withdrawn, same_source=b"", replaced=None):
    """ChangeSet from {(peer_id, attr_id): bytes} in first-appearance order;
    ``replaced``: {new attr_id: [(attrs, next hop, packed)]} or None."""
    if not groups and not withdrawn:
        return empty_changeset()
    announced = {}
    for (_peer, aid), data in groups.items():
        prev = announced.get(aid)
        announced[aid] = data if prev is None else prev + data
    return ChangeSet(announced, withdrawn, n_announced, n_withdrawn, groups, same_source, replaced or {})


def replaced_paths(table, pairs):
    """ChangeSet.replaced from {(old attr_id, new attr_id): packed} in
    first-appearance order: the old ids read through ``table.key`` (call it
    before the operation's unreferenced ids are collected)."""
    out = {}
    keys = {}
    for (old, new), data in pairs.items():
        k = keys.get(old)
        if k is None:
            k = keys[old] = table.key(old)
        lst = out.get(new)
        if lst is None:
            lst = out[new] = []
        lst.append((k[0], k[1], bytes(data)))
    return out


# ---------------------------------------------------------------- arguments


def received_time(now):
    """Receive time stored with the paths of one update() call: ``now``
    (Unix seconds, an int) or, when None, the wall clock read once -- one
    read per UPDATE batch, never per prefix.  Wall clock rather than a
    monotonic one because the same value is the MRT "originated time"
    (RFC 6396 §4.3.4) and the API's receive timestamp."""
    if now is None:
        now = int(time.time())
    elif isinstance(now, bool) or not isinstance(now, int) or not 0 <= now <= 0xFFFFFFFF:
        raise ValueError("now must be Unix seconds, an int in 0..%d" % 0xFFFFFFFF)
    # A clock before 2020 (a box without time yet) must not fail an UPDATE.
    return min(max(now, RECEIVED_MIN), RECEIVED_MAX)


def family_bits(afi):
    if afi == 1:
        return 32
    if afi == 2:
        return 128
    raise ValueError("unsupported AFI %r (1 = IPv4, 2 = IPv6)" % (afi,))


def parse_prefix(afi, prefix):
    """(address int with host bits cleared, length) of a prefix given as
    "a.b.c.d/len", an address (a host route), or an ipaddress object."""
    bits = family_bits(afi)
    if isinstance(prefix, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
        net = prefix
    elif isinstance(prefix, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        net = ipaddress.ip_network(prefix)
    elif isinstance(prefix, str):
        net = ipaddress.ip_network(prefix.strip(), strict=False)
    else:
        raise TypeError("prefix must be a string or an ipaddress object, not %r" % (prefix,))
    if net.max_prefixlen != bits:
        raise ValueError("%s is not an IPv%d prefix" % (prefix, 4 if afi == 1 else 6))
    return int(net.network_address), net.prefixlen


def parse_address(afi, addr):
    """(address int, length) for longest_match: an address means all bits."""
    return parse_prefix(afi, addr)


def prefix_str(afi, addr, plen):
    if afi == 1:
        return "%s/%d" % (ipaddress.IPv4Address(addr), plen)
    return "%s/%d" % (ipaddress.IPv6Address(addr), plen)


def router_id_int(value):
    """BGP Identifier as an int: from an int, 4 octets, or dotted quad."""
    if isinstance(value, int):
        rid = value
    elif isinstance(value, (bytes, bytearray)):
        if len(value) != 4:
            raise ValueError("router id must be 4 octets")
        rid = int.from_bytes(value, "big")
    else:
        rid = int(ipaddress.IPv4Address(value))
    if not 0 <= rid <= 0xFFFFFFFF:
        raise ValueError("router id out of range")
    return rid


def address16(value):
    """Peer address as 16 octets (IPv4 as ::ffff:a.b.c.d), so peers of either
    family compare in one order for RFC 4271 §9.1.2.2 (g)."""
    if isinstance(value, (bytes, bytearray)):
        if len(value) == 4:
            return b"\x00" * 10 + b"\xff\xff" + bytes(value)
        if len(value) == 16:
            return bytes(value)
        raise ValueError("peer address must be 4 or 16 octets")
    a = ipaddress.ip_address(value)
    return address16(a.packed)


def peer_record(peer_id, peer_as, local_as, router_id, address, ibgp, rr_client):
    if not isinstance(peer_id, int) or not 0 <= peer_id <= MAX_PEER_ID:
        raise ValueError("peer id must be an int in 0..%d" % MAX_PEER_ID)
    if ibgp is None:
        ibgp = peer_as == local_as
    return (not ibgp, router_id_int(router_id), address16(address), int(peer_as), int(local_as), bool(rr_client))


def peer_dict(rec):
    ebgp, rid, addr, peer_as, local_as, rr = rec
    return {
        "ibgp": not ebgp,
        "router_id": rid,
        "address": addr,
        "peer_as": peer_as,
        "local_as": local_as,
        "rr_client": rr,
    }


def parse_nlri(packed, addpath, bits, masks):
    """[(path_id, key, start, end)] of packed NLRI: ``key`` is ``address <<
    8 | length`` with host bits cleared, packed[start:end] the prefix (path
    id excluded).  The whole buffer is validated before anything is used."""
    p = packed if isinstance(packed, bytes) else bytes(packed)
    n = len(p)
    width = bits // 8
    out = []
    i = 0
    pid = 0
    while i < n:
        if addpath:
            if i + 4 >= n:
                raise ValueError("malformed NLRI")
            pid = int.from_bytes(p[i : i + 4], "big")
            i += 4
        plen = p[i]
        if plen > bits:
            raise ValueError("malformed NLRI")
        nb = (plen + 7) >> 3
        end = i + 1 + nb
        if end > n:
            raise ValueError("malformed NLRI")
        addr = (int.from_bytes(p[i + 1 : end], "big") << (8 * (width - nb))) & masks[plen]
        out.append((pid, (addr << 8) | plen, i, end))
        i = end
    return out


MAX_SHARDS = 64  # Rib(shards=...): worker processes splitting the prefix space
_M64 = (1 << 64) - 1


def _fmix64(x):
    """MurmurHash3's 64-bit finaliser (full avalanche)."""
    x ^= x >> 33
    x = (x * 0xFF51AFD7ED558CCD) & _M64
    x ^= x >> 33
    x = (x * 0xC4CEB9FE1A85EC53) & _M64
    x ^= x >> 33
    return x


def shard_of_key(key, v6, shards):
    """The shard (0..shards-1) of the prefix with key ``address << 8 |
    length`` (host bits cleared, as parse_nlri gives it) -- THE shard
    function, mirrored by the compiled RIB's ``_key_shard``:

    * IPv4: h = fmix64(addr << 8 | len), the key the compiled RIB keeps in
      PKey.lo;
    * IPv6: h = fmix64(hi ^ fmix64(lo ^ len)), hi / lo the top / bottom 64
      bits of the address;
    * shard = ((h >> 32) * shards) >> 32 (multiply-high of the top 32 bits).

    A fixed function of the prefix alone (not of the table size, the peer
    or the path id), so every worker of a sharded daemon agrees on it.
    MurmurHash3's finaliser rather than the slot table's mix: the home slot
    takes the top bits of another function of the key, and a shard choice
    correlated with it would leave a shard's table using a part of its
    homes (long probe runs)."""
    if shards == 1:
        return 0
    if v6:
        addr = key >> 8
        h = _fmix64((addr >> 64) ^ _fmix64((addr & _M64) ^ (key & 0xFF)))
    else:
        h = _fmix64(key)
    return ((h >> 32) * shards) >> 32


def _own_packed(b, addpath, bits, shards, shard):
    """Rib.own of validated packed NLRI ``b`` in a RIB of ``bits``-bit
    addresses keeping shard ``shard`` of ``shards``."""
    out, pos, n = [], 0, len(b)
    while pos < n:
        start = pos
        if addpath:
            pos += 4
        plen = b[pos]
        size = (plen + 7) >> 3
        addr = int.from_bytes(b[pos + 1:pos + 1 + size], "big") << (bits - 8 * size)
        addr = addr >> (bits - plen) << (bits - plen)
        pos += 1 + size
        if shard_of_key((addr << 8) | plen, bits == 128, shards) == shard:
            out.append(b[start:pos])
    own = b"".join(out)
    return b if len(own) == n else own


def check_shards(shards, shard):
    """Rib(shards=, shard=) validated: (shards, shard) as ints."""
    if isinstance(shards, bool) or not isinstance(shards, int) or not 1 <= shards <= MAX_SHARDS:
        raise ValueError("shards must be an int in 1..%d, not %r" % (MAX_SHARDS, shards))
    if isinstance(shard, bool) or not isinstance(shard, int) or not 0 <= shard < shards:
        raise ValueError("shard must be an int in 0..%d (below shards=%d), not %r" % (shards - 1, shards, shard))
    return shards, shard


def prefix_shard(packed_prefix, afi, shards):
    """The shard (0..shards-1) of ONE packed prefix (its length octet then
    the address octets it needs, no path id) in a RIB split ``shards`` ways
    (Rib(shards=shards, shard=k) keeps the prefixes for which this is k);
    see shard_of_key for the definition.  ValueError on a malformed
    prefix, an unknown AFI or shards outside 1..MAX_SHARDS."""
    check_shards(shards, 0)
    bits = family_bits(afi)
    p = packed_prefix if isinstance(packed_prefix, bytes) else bytes(packed_prefix)
    if not p or p[0] > bits or len(p) != 1 + ((p[0] + 7) >> 3):
        raise ValueError("packed_prefix must be one prefix: a length octet (0..%d) and its address octets" % bits)
    plen = p[0]
    addr = (int.from_bytes(p[1:], "big") << (bits - 8 * (len(p) - 1))) >> (bits - plen) << (bits - plen)
    return shard_of_key((addr << 8) | plen, bits == 128, shards)


class HeldSet:
    """Which update groups hold which prefixes (the compact Adj-RIB-Out of
    fastbgp.rib.export): prefix key -> int whose bit ``i`` says group index
    ``i`` was sent the prefix and not yet its withdrawal.  Twin of the
    compiled HeldSet (one bit per group: in the Rib's slot while the prefix
    is in the Loc-RIB and at most 24 indexes were ever allocated, else in an
    open-addressing table of uint64 words), kept apart from the paths here
    so a prefix that left the Loc-RIB is still known to be held.  Group
    indexes: the lowest free one, up to MAX_HELD_GROUPS."""

    def __init__(self, afi):
        self.afi = afi
        self._bits = family_bits(afi)
        full = (1 << self._bits) - 1
        self._masks = [full ^ ((1 << (self._bits - n)) - 1) for n in range(self._bits + 1)]
        self._t = {}
        self._in_use = []
        # The compiled HeldSet's count of mark_groups calls served from the
        # slots its Rib noted for its own announcements; this one has no
        # slots, so always 0 (the marks set are the same either way).
        self.marked_in_place = 0

    def _group(self, group):
        if not isinstance(group, int) or not 0 <= group < len(self._in_use) or not self._in_use[group]:
            raise ValueError("group index %r is not allocated" % (group,))
        return group

    def new_group(self):
        """The lowest free group index (its bit clear everywhere), or None
        when MAX_HELD_GROUPS are allocated."""
        for i, used in enumerate(self._in_use):
            if not used:
                self._in_use[i] = True
                return i
        if len(self._in_use) >= MAX_HELD_GROUPS:
            return None
        self._in_use.append(True)
        return len(self._in_use) - 1

    def free_group(self, group):
        """Release ``group``: its bit is cleared from every prefix (entries
        left with none go) and the index may be handed out again."""
        keep = ~(1 << self._group(group))
        self._t = {k: m & keep for k, m in self._t.items() if m & keep}
        self._in_use[group] = False

    def mark(self, group, packed):
        """Set ``group``'s bit on every prefix of packed NLRI (no path ids):
        it was sent them.  Returns how many were not held by it before."""
        return self.mark_groups((group,), packed)

    def mark_groups(self, groups, packed):
        """:meth:`mark` for every group of ``groups`` at once (one
        announcement sent alike to many groups: a route server's clients):
        each prefix is looked up once, not once per group.  Returns how many
        (prefix, group) bits were not set before."""
        bits = 0
        for group in groups:
            bits |= 1 << self._group(group)
        t = self._t
        added = 0
        for _pid, key, _s, _e in parse_nlri(packed, False, self._bits, self._masks):
            m = t.get(key, 0)
            new = bits & ~m
            if new:
                t[key] = m | bits
                added += bin(new).count("1")
        return added

    def filter(self, group, packed, clear=False):
        """The prefixes of packed NLRI (no path ids) that ``group`` holds,
        packed as given, in order; with ``clear`` the group no longer holds
        them (it is being sent their withdrawal)."""
        bit = 1 << self._group(group)
        p = packed if isinstance(packed, bytes) else bytes(packed)
        t = self._t
        out = []
        gone = 0
        for _pid, key, start, end in parse_nlri(p, False, self._bits, self._masks):
            m = t.get(key, 0)
            if not m & bit:
                continue
            out.append(p[start:end])
            if clear:
                m &= ~bit
                if m:
                    t[key] = m
                else:
                    del t[key]
                    gone += 1
        if gone > len(t):
            self._t = dict(t)  # a dict never shrinks by itself: give the memory back
        return b"".join(out)

    def count(self, group):
        """Prefixes ``group`` holds."""
        bit = 1 << self._group(group)
        return sum(1 for m in self._t.values() if m & bit)

    def groups(self):
        """The group indexes allocated, ascending."""
        return [i for i, used in enumerate(self._in_use) if used]

    def __len__(self):
        return len(self._t)

    def memory_usage(self):
        import sys

        return sys.getsizeof(self._t) + sum(sys.getsizeof(k) + sys.getsizeof(m) for k, m in self._t.items())


# ---------------------------------------------------------------- the RIB


class _PeerRemoval:
    """Whole-peer removal and RFC 4724 stale marking and sweeping: a part
    of :class:`Rib` (kept apart so that class stays within its size), with
    the same attributes."""

    def _remove_where(self, peer_id, stale_only, keys=None):
        """Delete the paths of ``peer_id`` (only those marked stale when
        ``stale_only``) at the prefixes ``keys`` (every prefix when None);
        the changes in ascending prefix order."""
        self._peer(peer_id)
        if not (self._peer_stale if stale_only else self._peer_paths)[peer_id]:
            return empty_changeset()
        rec = self.attrs.records
        t = self._t
        zero = []
        recs = []
        dead = []
        removed = stale = 0
        for key in t if keys is None else keys:
            e = t[key]
            old = None
            hit = False
            for j in range(len(e) - 1, 0, -1):
                q = e[j]
                if q[0] == peer_id and (not stale_only or q[3] & PATH_STALE):
                    if not hit:
                        old = self._triple(e)
                        hit = True
                    del e[j]
                    self._peer_marks[peer_id][q[5]] -= 1
                    stale += q[3] & PATH_STALE
                    oi = q[2] * WORDS + W_REFS
                    rec[oi] -= 1
                    if rec[oi] == 0:
                        zero.append(q[2])
                    removed += 1
            if not hit:
                continue
            if len(e) == 1:
                dead.append(key)
                recs.append((key, None, 0))
                continue
            e[0] = self._select(e)
            new = self._triple(e)
            if new != old:
                recs.append((key, (new[0], new[2]), old[2]))
        for key in dead:
            del t[key]
            self._len_count[key & 0xFF] -= 1
        self._npaths -= removed
        self._peer_paths[peer_id] -= removed
        self._peer_stale[peer_id] -= stale
        recs.sort(key=lambda r: r[0])
        groups = {}
        moved = {}
        wd = bytearray()
        n_ann = n_wd = 0
        for key, g, old_aid in recs:
            if g is None:
                wd += self._wire(key)
                n_wd += 1
            else:
                buf = groups.get(g)
                if buf is None:
                    buf = groups[g] = bytearray()
                buf += self._wire(key)
                n_ann += 1
                self._moved(moved, old_aid, g[1], key)
        replaced = replaced_paths(self.attrs, moved) if moved else None
        if zero:
            self.attrs.collect(zero)
        return make_changeset({g: bytes(b) for g, b in groups.items()}, bytes(wd), n_ann, n_wd, b"", replaced)

    def drop_peer(self, peer_id):
        """Remove every path of ``peer_id`` (session down, RFC 4271 §8.2.2 /
        §9: its routes are withdrawn from the Loc-RIB)."""
        return self._remove_where(peer_id, False)

    def mark_stale(self, peer_id):
        """RFC 4724 §4.2: the session of a Graceful Restart peer went down;
        keep its paths (still used for forwarding and best path) but mark
        them stale.  Returns the number of paths marked."""
        self._peer(peer_id)
        if not self._peer_paths[peer_id]:
            return 0
        marked = 0
        for e in self._t.values():
            for j in range(1, len(e)):
                q = e[j]
                if q[0] == peer_id:
                    if not q[3] & PATH_STALE:
                        self._peer_stale[peer_id] += 1
                    e[j] = (q[0], q[1], q[2], q[3] | PATH_STALE, q[4], q[5])
                    marked += 1
        return marked

    def sweep_stale(self, peer_id):
        """RFC 4724 §4.2: End-of-RIB received (or the restart / stale timer
        fired): delete the paths of ``peer_id`` still marked stale."""
        return self._remove_where(peer_id, True)

    def sweep_stale_slice(self, peer_id, start, max_slots):
        """One slice of :meth:`sweep_stale`, so that no one call holds the
        caller for a whole table: the stale paths of ``peer_id`` held in
        ``max_slots`` table slots from slot ``start`` go.  Returns
        (ChangeSet, next): ``next`` is the slot to go on from, None once
        the end of the table was reached (one pass done).  Prefixes move
        between slots when the table changes between two calls, so a pass
        can miss some: go on until :meth:`peer_stale_count` is 0.  Here a
        slot is a prefix in the dict's order (the compiled RIB's hash
        table has empty slots too): which prefixes a slice holds differs
        between the two, the changes of a whole sweep do not."""
        self._peer(peer_id)
        if not isinstance(start, int) or not isinstance(max_slots, int) or start < 0 or max_slots < 1:
            raise ValueError("start must be an int >= 0, max_slots an int >= 1")
        t = self._t
        size = len(t)
        if start >= size:
            return empty_changeset(), None
        keys = list(itertools.islice(t, start, start + max_slots))
        cs = self._remove_where(peer_id, True, keys)
        if start + len(keys) >= size:
            return cs, None
        # Prefixes left without paths left the dict: the next ones moved up.
        return cs, start + len(keys) - (size - len(t))


class Rib(_PeerRemoval):
    """Loc-RIB + Adj-RIB-In of one address family (see fastbgp.rib)."""

    def __init__(self, afi, attrs=None, always_compare_med=False, *, shards=1, shard=0):
        self._bits = family_bits(afi)
        # shards > 1: this RIB keeps only the prefixes of shard ``shard``
        # (prefix_shard): the others of every packed input are skipped.
        self._shards, self._shard = check_shards(shards, shard)
        self.afi = afi
        self.attrs = attrs if attrs is not None else AttrTable(record_words=record_words)
        self.always_compare_med = bool(always_compare_med)
        self._width = self._bits // 8
        full = (1 << self._bits) - 1
        self._masks = [full ^ ((1 << (self._bits - n)) - 1) for n in range(self._bits + 1)]
        # key (address << 8 | length) -> [best index or -1, path, path, ...];
        # a path is (peer_id, path_id, attr_id, flags, received, mark),
        # sorted by (peer_id, path_id); received = Unix seconds of its last
        # change; mark = the caller's 2-bit tag (update's ``mark``).
        self._t = {}
        self._peers = {}  # peer_id -> peer_record tuple
        self._peer_paths = {}  # peer_id -> paths held
        self._peer_marks = {}  # peer_id -> [paths held with mark 0, 1, 2, 3]
        self._peer_stale = {}  # peer_id -> paths held marked stale
        self._len_count = [0] * (self._bits + 1)
        self._npaths = 0
        self.refused = 0  # paths not stored because a prefix had MAX_PATHS
        self.held = HeldSet(afi)  # which update groups were sent which prefixes
        # The prefixes of this shard in the last update_many's runs (as the
        # compiled Rib's docstring says).
        self.last_count = 0

    # ------------------------------------------------------------ peers

    def add_peer(self, peer_id, peer_as, local_as, router_id, address, ibgp=None, rr_client=False):
        rec = peer_record(peer_id, peer_as, local_as, router_id, address, ibgp, rr_client)
        if self._peer_paths.get(peer_id):
            raise ValueError("peer %d still has paths: drop_peer first" % peer_id)
        self._peers[peer_id] = rec
        self._peer_paths[peer_id] = 0
        self._peer_marks[peer_id] = [0] * MARKS
        self._peer_stale[peer_id] = 0

    def remove_peer(self, peer_id):
        cs = self.drop_peer(peer_id)
        del self._peers[peer_id]
        del self._peer_paths[peer_id]
        del self._peer_marks[peer_id]
        del self._peer_stale[peer_id]
        return cs

    def has_peer(self, peer_id):
        return peer_id in self._peers

    def peer_info(self, peer_id):
        return peer_dict(self._peer(peer_id))

    def peer_path_count(self, peer_id):
        self._peer(peer_id)
        return self._peer_paths[peer_id]

    def peer_marks(self, peer_id):
        """(paths of ``peer_id`` held with mark 0, 1, 2, 3): kept as paths
        come and go, so reading it costs nothing."""
        self._peer(peer_id)
        return tuple(self._peer_marks[peer_id])

    def peer_stale_count(self, peer_id):
        """Paths of ``peer_id`` marked stale (RFC 4724 §4.2): kept as paths
        are marked, refreshed and removed, so reading it costs nothing."""
        self._peer(peer_id)
        return self._peer_stale[peer_id]

    def _peer(self, peer_id):
        rec = self._peers.get(peer_id)
        if rec is None:
            raise KeyError("peer %r is not registered (add_peer)" % (peer_id,))
        return rec

    # ------------------------------------------------------------ packed NLRI

    def _parse(self, packed, addpath):
        """[(path_id, key)] of packed NLRI.  Validated as a whole first (the
        same rules as codec.count_prefixes) so a bad buffer changes nothing."""
        return [(pid, key) for pid, key, _s, _e in parse_nlri(packed, addpath, self._bits, self._masks)]

    def _parse_own(self, packed, addpath):
        """``_parse`` keeping only this shard's prefixes (all when unsharded):
        the input of every operation that stores or removes paths.  The
        whole buffer is still validated; a foreign prefix is never looked
        up, stored or reported."""
        items = self._parse(packed, addpath)
        if self._shards == 1:
            return items
        v6, shards, mine = self._bits == 128, self._shards, self._shard
        return [it for it in items if shard_of_key(it[1], v6, shards) == mine]

    @property
    def shards(self):
        """Shards the prefix space is split in (1: this RIB keeps every prefix)."""
        return self._shards

    @property
    def shard(self):
        """The shard (0..shards-1) whose prefixes this RIB keeps."""
        return self._shard

    def own(self, packed, addpath=False):
        """The prefixes of packed NLRI ``packed`` this RIB keeps (its shard),
        packed as given (path ids too with ``addpath``), in order: what a
        caller working beside the RIB on a received UPDATE (ADD-PATH export
        of the Adj-RIB-In change, path hiding) must look at in a sharded
        daemon.  Unsharded: ``packed`` itself, at once (not looked at: the
        RIB operation it goes to checks it), so callers need not ask
        whether the RIB is sharded.  Sharded: ValueError when malformed, as
        update and withdraw."""
        if self._shards == 1:
            return packed
        b = packed if isinstance(packed, bytes) else bytes(packed)
        self._parse(b, addpath)  # validated as update and withdraw do
        return _own_packed(b, addpath, self._bits, self._shards, self._shard)

    def _wire(self, key):
        plen = key & 0xFF
        nb = (plen + 7) >> 3
        return bytes((plen,)) + ((key >> 8) >> (8 * (self._width - nb))).to_bytes(nb, "big")

    # ------------------------------------------------------------ best path

    def _select(self, e):
        """Index (into the paths, e[1:]) of the best path, RFC 4271 §9.1.

        Each step removes candidates rather than comparing pairs, because the
        MED step only orders routes from the same neighbour AS and is not
        transitive: pairwise comparison would make the result depend on the
        order paths arrived in.  The final order among equals is ascending
        (peer_id, path_id), the order paths are stored in.
        """
        n = len(e) - 1
        if n <= 1:
            return n - 1
        rec = self.attrs.records
        peers = self._peers
        # §9.1.1 / §9.1.2.1: highest degree of preference (LOCAL_PREF), then
        # §9.1.2.2 (a) fewest AS numbers in AS_PATH, (b) lowest ORIGIN -- one
        # precomputed rank per attribute set, lower is better.
        best = None
        cand = []
        for i in range(n):
            b = e[i + 1][2] * WORDS
            r = (rec[b] << 32) | rec[b + 1]
            if best is None or r < best:
                best = r
                cand = [i]
            elif r == best:
                cand.append(i)
        if len(cand) > 1:
            # §9.1.2.2 (c): lowest MED, only among routes from the same
            # neighbour AS unless always-compare-med is configured.
            if self.always_compare_med:
                low = min(rec[e[i + 1][2] * WORDS + 2] for i in cand)
                cand = [i for i in cand if rec[e[i + 1][2] * WORDS + 2] == low]
            else:
                lows = {}
                for i in cand:
                    b = e[i + 1][2] * WORDS
                    nbr, med = rec[b + 3], rec[b + 2]
                    if nbr not in lows or med < lows[nbr]:
                        lows[nbr] = med
                cand = [i for i in cand if rec[e[i + 1][2] * WORDS + 2] == lows[rec[e[i + 1][2] * WORDS + 3]]]
        if len(cand) > 1:
            # (d): routes learned via eBGP beat routes learned via iBGP.
            ebgp = [i for i in cand if peers[e[i + 1][0]][0]]
            if ebgp:
                cand = ebgp
        # (e) interior cost: no IGP here, all equal.
        if len(cand) > 1:
            # (f) lowest BGP Identifier of the advertising speaker; RFC 4456
            # §9: the ORIGINATOR_ID stands in for it when present.
            def rid(i):
                b = e[i + 1][2] * WORDS
                if rec[b + W_FLAGS] & F_ORIGINATOR_ID:
                    return rec[b + 4]
                return peers[e[i + 1][0]][1]

            low = min(rid(i) for i in cand)
            cand = [i for i in cand if rid(i) == low]
        if len(cand) > 1:
            # RFC 4456 §9: shortest CLUSTER_LIST.
            low = min(rec[e[i + 1][2] * WORDS + 5] for i in cand)
            cand = [i for i in cand if rec[e[i + 1][2] * WORDS + 5] == low]
        if len(cand) > 1:
            # (g) lowest peer address.
            low = min(peers[e[i + 1][0]][2] for i in cand)
            cand = [i for i in cand if peers[e[i + 1][0]][2] == low]
        return cand[0]

    @staticmethod
    def _triple(e):
        b = e[0]
        if b < 0:
            return None
        p = e[b + 1]
        return (p[0], p[1], p[2])

    # ------------------------------------------------------------ bulk operations

    def update(self, peer_id, packed, addpath=False, attr_id=None, now=None, mark=0):
        """Store the paths of ``peer_id`` for every prefix of packed NLRI with
        the interned attributes ``attr_id`` (replacing that peer's previous
        path of the same path id; clearing its stale mark).  ``now``: the
        receive time (Unix seconds) of the paths added or changed; the clock
        is read once per call when omitted.  ``mark`` (0..3) tags the paths
        (a changed mark alone is no route change: no ChangeSet entry, same
        age); ``peer_marks`` counts them."""
        self._peer(peer_id)
        self._check_run(attr_id, mark)
        items = self._parse_own(packed, addpath)
        if not items:
            return empty_changeset()
        touched, zero = {}, []
        self._put(peer_id, items, attr_id, received_time(now), mark, touched, zero)
        return self._settle(touched, zero)

    def update_many(self, peer_id, runs, addpath=False, now=None):
        """``update`` (``attr_id`` given) or ``withdraw`` (``attr_id`` None)
        of each ``(packed, attr_id, mark)`` of ``runs``, in order, as one
        operation: the table ends as after those calls one by one, and the
        one ChangeSet returned has every prefix whose best path after the
        last run is not the one it had before the first (a prefix changed
        and changed back is not in it).  Every run is checked before any is
        applied: a bad one raises and changes nothing.  The receive time is
        read once for all of them."""
        self._peer(peer_id)
        now = received_time(now)
        parsed = []
        for packed, attr_id, mark in runs:
            if attr_id is not None:
                self._check_run(attr_id, mark)
            parsed.append((self._parse_own(packed, addpath), attr_id, mark))
        self.last_count = sum(len(items) for items, _aid, _mark in parsed)
        touched, zero = {}, []
        for items, attr_id, mark in parsed:
            if attr_id is None:
                self._take(peer_id, items, touched, zero)
            else:
                self._put(peer_id, items, attr_id, now, mark, touched, zero)
        return self._settle(touched, zero)

    def _check_run(self, attr_id, mark):
        if not 0 <= mark < MARKS:
            raise ValueError("mark %r is not in 0..3" % (mark,))
        if not self.attrs.is_live(attr_id):
            raise KeyError("attribute id %r is not allocated" % (attr_id,))

    def _put(self, peer_id, items, attr_id, now, mark, touched, zero):
        """Phase 1 of update: the paths stored, their prefixes' best paths
        before the operation recorded in ``touched`` (key -> triple or
        None), attribute ids left unreferenced appended to ``zero``."""
        marks = self._peer_marks[peer_id]
        rec = self.attrs.records
        ri = attr_id * WORDS + W_REFS
        t = self._t
        added = 0
        for pid, key in items:
            e = t.get(key)
            if e is None:
                e = t[key] = [-1]
                self._len_count[key & 0xFF] += 1
            if key not in touched:
                touched[key] = self._triple(e)
            ins = len(e)
            found = 0
            for j in range(1, len(e)):
                q = e[j]
                if q[0] == peer_id and q[1] == pid:
                    found = j
                    break
                if q[0] > peer_id or (q[0] == peer_id and q[1] > pid):
                    ins = j
                    break
            if found:
                q = e[found]
                when = q[4]
                if q[3] & PATH_STALE:
                    self._peer_stale[peer_id] -= 1  # refreshed (RFC 4724 §4.2)
                if q[2] != attr_id:
                    rec[ri] += 1
                    oi = q[2] * WORDS + W_REFS
                    rec[oi] -= 1
                    if rec[oi] == 0:
                        zero.append(q[2])
                    # The route changed: its age restarts.  The same
                    # attributes again (a refresh, RFC 4724 re-learning a
                    # stale path) keep the time of the last change.
                    when = now
                marks[q[5]] -= 1
                marks[mark] += 1
                e[found] = (peer_id, pid, attr_id, q[3] & ~PATH_STALE, when, mark)
            elif len(e) - 1 >= MAX_PATHS:
                self.refused += 1
            else:
                e.insert(ins, (peer_id, pid, attr_id, 0, now, mark))
                marks[mark] += 1
                rec[ri] += 1
                added += 1
        self._npaths += added
        self._peer_paths[peer_id] += added

    def set_mark(self, peer_id, packed, addpath=False, mark=0):
        """Set the mark (``update``'s ``mark``) of the paths ``peer_id``
        holds for the prefixes of packed NLRI; nothing else changes (not the
        attributes, age, stale flag or best path: no ChangeSet).  Returns
        how many paths changed mark."""
        self._peer(peer_id)
        if not 0 <= mark < MARKS:
            raise ValueError("mark %r is not in 0..3" % (mark,))
        marks = self._peer_marks[peer_id]
        changed = 0
        for pid, key in self._parse_own(packed, addpath):
            e = self._t.get(key)
            if e is None:
                continue
            for j in range(1, len(e)):
                q = e[j]
                if q[0] == peer_id and q[1] == pid:
                    if q[5] != mark:
                        marks[q[5]] -= 1
                        marks[mark] += 1
                        e[j] = q[:5] + (mark,)
                        changed += 1
                    break
        return changed

    def withdraw(self, peer_id, packed, addpath=False):
        """Remove the paths of ``peer_id`` for every prefix of packed NLRI
        (unknown prefixes and paths are ignored, RFC 4271 §9 has no error for
        withdrawing what was never announced)."""
        self._peer(peer_id)
        items = self._parse_own(packed, addpath)
        if not items:
            return empty_changeset()
        touched, zero = {}, []
        self._take(peer_id, items, touched, zero)
        return self._settle(touched, zero)

    def _take(self, peer_id, items, touched, zero):
        """Phase 1 of withdraw (see ``_put``): the paths removed; prefixes
        left without any stay (an empty entry) until ``_settle``."""
        rec = self.attrs.records
        t = self._t
        removed = 0
        for pid, key in items:
            e = t.get(key)
            if e is None:
                continue
            found = 0
            for j in range(1, len(e)):
                q = e[j]
                if q[0] == peer_id and q[1] == pid:
                    found = j
                    break
            if not found:
                continue
            if key not in touched:
                touched[key] = self._triple(e)
            q = e.pop(found)
            self._peer_marks[peer_id][q[5]] -= 1
            if q[3] & PATH_STALE:
                self._peer_stale[peer_id] -= 1
            oi = q[2] * WORDS + W_REFS
            rec[oi] -= 1
            if rec[oi] == 0:
                zero.append(q[2])
            removed += 1
        self._npaths -= removed
        self._peer_paths[peer_id] -= removed

    def _settle(self, touched, zero):
        """Phases 2 and 3: one best-path selection per touched prefix; the
        ChangeSet of the prefixes whose best path is not the one they had
        before the operation (withdrawn when none is left, and dropped)."""
        t = self._t
        groups = {}
        wd = bytearray()
        same = bytearray()
        moved = {}
        n_ann = n_wd = 0
        for key, old in touched.items():
            e = t[key]
            if len(e) == 1:
                del t[key]
                self._len_count[key & 0xFF] -= 1
                if old is not None:
                    wd += self._wire(key)
                    n_wd += 1
                continue
            e[0] = self._select(e)
            new = self._triple(e)
            if new != old:
                g = (new[0], new[2])
                buf = groups.get(g)
                if buf is None:
                    buf = groups[g] = bytearray()
                buf += self._wire(key)
                n_ann += 1
                if old is not None:
                    if old[0] == new[0]:
                        same += self._wire(key)
                    self._moved(moved, old[2], new[2], key)
        replaced = replaced_paths(self.attrs, moved) if moved else None
        if zero:
            self.attrs.collect(zero)
        return make_changeset({g: bytes(b) for g, b in groups.items()}, bytes(wd), n_ann, n_wd, bytes(same),
                              replaced)

    def _moved(self, moved, old_aid, new_aid, key):
        """Prefix ``key`` moved from a best path with ``old_aid`` to one
        with ``new_aid`` (ChangeSet.replaced)."""
        buf = moved.get((old_aid, new_aid))
        if buf is None:
            buf = moved[(old_aid, new_aid)] = bytearray()
        buf += self._wire(key)

    # ------------------------------------------------------------ dumps

    def dump_best(self, exclude_peer=None):
        """Iterator of (attr_id, packed prefixes) covering every prefix's best
        path (the Loc-RIB to send to a new peer), skipping prefixes whose best
        path is from ``exclude_peer`` (split horizon).  Groups are ordered by
        their first prefix, prefixes ascending."""
        recs = []
        for key, e in self._t.items():
            b = e[0]
            if b < 0:
                continue
            q = e[b + 1]
            if q[0] == exclude_peer:
                continue
            recs.append((key, q[2]))
        recs.sort()
        groups = {}
        for key, aid in recs:
            buf = groups.get(aid)
            if buf is None:
                buf = groups[aid] = bytearray()
            buf += self._wire(key)
        return iter([(aid, bytes(b)) for aid, b in groups.items()])

    def dump_peer(self, peer_id, addpath=False):
        """Iterator of (attr_id, packed prefixes) of one peer's Adj-RIB-In;
        with ``addpath`` every prefix is preceded by its 4-octet path id
        (RFC 7911 §3), else a prefix held under several path ids appears once
        per path."""
        self._peer(peer_id)
        recs = []
        for key, e in self._t.items():
            for q in e[1:]:
                if q[0] == peer_id:
                    recs.append((key, q[1], q[2]))
        recs.sort()
        groups = {}
        for key, pid, aid in recs:
            buf = groups.get(aid)
            if buf is None:
                buf = groups[aid] = bytearray()
            if addpath:
                buf += pid.to_bytes(4, "big")
            buf += self._wire(key)
        return iter([(aid, bytes(b)) for aid, b in groups.items()])

    # ------------------------------------------------------------ lookups

    def _entry(self, prefix):
        addr, plen = parse_prefix(self.afi, prefix)
        return self._t.get((addr << 8) | plen)

    def __len__(self):
        return len(self._t)

    def __contains__(self, prefix):
        return self._entry(prefix) is not None

    def path_count(self):
        return self._npaths

    def paths(self, prefix, received=False):
        """[(peer_id, path_id, attr_id, flags)] ascending by (peer_id, path_id);
        with ``received`` each tuple ends with the path's receive time (Unix
        seconds of its last change)."""
        e = self._entry(prefix)
        if e is None:
            return []
        return [q[:5] for q in e[1:]] if received else [q[:4] for q in e[1:]]

    def best_path(self, prefix, received=False):
        """(peer_id, path_id, attr_id, flags) of the best path, or None;
        ``received`` appends its receive time as in ``paths``."""
        e = self._entry(prefix)
        if e is None or e[0] < 0:
            return None
        q = e[e[0] + 1]
        return q[:5] if received else q[:4]

    def best_received(self, packed):
        """[(peer_id, received) of the best path, or None] for each prefix of
        packed NLRI (no path ids), in order: the receive times of a listing
        in one call, without a prefix string per row."""
        out = []
        t = self._t
        for _pid, key in self._parse(packed, False):
            e = t.get(key)
            if e is None or e[0] < 0:
                out.append(None)
            else:
                q = e[e[0] + 1]
                out.append((q[0], q[4]))
        return out

    def path_received(self, peer_id, packed, addpath=False):
        """[receive time of ``peer_id``'s path, or None] for each prefix of
        packed NLRI (with ``addpath``, the path of each prefix's path id),
        in order: an Adj-RIB-In listing's times in one call."""
        self._peer(peer_id)
        out = []
        t = self._t
        for pid, key in self._parse(packed, addpath):
            e = t.get(key)
            got = None
            if e is not None:
                for q in e[1:]:
                    if q[0] == peer_id and q[1] == pid:
                        got = q[4]
                        break
            out.append(got)
        return out

    def paths_by_attr(self, peer_id, packed, addpath=False):
        """``peer_id``'s paths of the prefixes of packed NLRI, as
        [(attr_id, packed entries)] in order of first appearance (the
        compiled twin's docstring is the contract)."""
        self._peer(peer_id)
        t = self._t
        groups = {}
        for pid, key, s, e in parse_nlri(packed, addpath, self._bits, self._masks):
            ent = t.get(key)
            if ent is None:
                continue
            for q in ent[1:]:
                if q[0] == peer_id and q[1] == pid:
                    groups.setdefault(q[2], []).append(bytes(packed[s - 4 if addpath else s : e]))
                    break
        return [(aid, b"".join(parts)) for aid, parts in groups.items()]

    def best(self, prefix):
        """(peer_id, attr_id) of the best path, or None."""
        p = self.best_path(prefix)
        return None if p is None else (p[0], p[2])

    def lookup(self, prefix):
        """Exact match: (prefix string, peer_id, attr_id) or None."""
        addr, plen = parse_prefix(self.afi, prefix)
        e = self._t.get((addr << 8) | plen)
        if e is None or e[0] < 0:
            return None
        p = e[e[0] + 1]
        return (prefix_str(self.afi, addr, plen), p[0], p[2])

    def longest_match(self, address):
        """Most specific prefix covering ``address`` (an address, or a prefix:
        then only prefixes at most that long): (prefix string, peer_id,
        attr_id) or None."""
        addr, top = parse_address(self.afi, address)
        counts = self._len_count
        masks = self._masks
        t = self._t
        for plen in range(top, -1, -1):
            if not counts[plen]:
                continue
            a = addr & masks[plen]
            e = t.get((a << 8) | plen)
            if e is not None and e[0] >= 0:
                p = e[e[0] + 1]
                return (prefix_str(self.afi, a, plen), p[0], p[2])
        return None

    def prefixes(self):
        """Every prefix held, as strings, ascending (tests and debugging)."""
        return [prefix_str(self.afi, k >> 8, k & 0xFF) for k in sorted(self._t)]

    def memory_usage(self):
        """Bytes held by the structure itself (excluding the AttrTable)."""
        import sys

        total = sys.getsizeof(self._t)
        for k, e in self._t.items():
            total += sys.getsizeof(k) + sys.getsizeof(e) + sum(sys.getsizeof(q) for q in e[1:])
        return total


__all__ = [
    "IMPLEMENTATION",
    "ChangeSet",
    "EMPTY",
    "empty_changeset",
    "PATH_STALE",
    "MAX_PATHS",
    "MAX_PEER_ID",
    "MAX_HELD_GROUPS",
    "MAX_SHARDS",
    "HeldSet",
    "RECEIVED_MAX",
    "RECEIVED_MIN",
    "Rib",
    "make_changeset",
    "parse_prefix",
    "prefix_shard",
    "prefix_str",
]
