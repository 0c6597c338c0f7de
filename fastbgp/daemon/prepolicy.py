"""The pre-policy Adj-RIB-In: each neighbour's paths as received, before import policy.

Soft reconfiguration inbound (for peers without ROUTE-REFRESH, RFC 2918),
RPKI re-validation (fastbgp.daemon.rpki_feed re-imports the paths a changed
VRP covers) and BMP pre-policy Route Monitoring (RFC 7854 §5) read it.

Most of it is already in the post-policy Adj-RIB-In (the daemon's ``ribs``):
a path the import policy accepted is stored there under the attribute set
the policy made of the received one.  A second full table would double the
import cost of every UPDATE, so :class:`PrePolicy` keeps only what the
post-policy RIB cannot give back, and the pre-policy view of a neighbour is
the union of:

* ``ribs`` (family -> Rib): the paths the post-policy RIB cannot give back
  -- those the import policy rejected, and those whose post-policy
  attribute set cannot be mapped back to one received set (see below);
* the neighbour's post-policy paths, each read back through ``origins``:
  per neighbour, {post-policy attribute id: [received attrs, received next
  hop, received attribute id]} (the id interned when a reader first needs
  it: most received sets are never read back, and interning parses them).  An entry is made the first time a
  post-policy set is stored and is never changed: when another received
  set later gives the same post-policy set (a policy that strips
  something), those paths go to ``ribs`` instead.  The RFC 8097 state
  community (added to stored attributes while some iBGP neighbour asks for
  it) and the policy's own changes are thereby undone exactly, whatever
  they are.  A path of a prefix that ``ribs`` holds is read from ``ribs``.

The union holds only for a (neighbour, family) whose pre-policy view was
on before its post-policy RIB held anything of the session (``union``):
otherwise (a graceful restart's stale paths, a policy that needs the copy
only since a reload) every path goes to ``ribs``, as a full copy.
``reset`` forgets a neighbour's mapping when a session starts or ends; its
``ribs`` paths are removed or swept by fastbgp.daemon.peers.

Bounds: ``origins`` holds at most ORIGINS_MAX entries per neighbour.  The
entries no post-policy path uses any more are dropped whenever it reaches
twice the size left by the previous such pass (GC_FIRST at first); when the
bound is reached, new attribute sets go to ``ribs``, and the table is
looked through again after as many of those as it has entries.

Calls: the daemon's ``ribs`` and ``attrs``.  Called by: the importer and
its fast lane (``store``, ``drop``, ``withdraw``), fastbgp.daemon.peers
(``reset``, ``ribs``), and the readers (``dump_peer``, ``path``,
``has_peer``, ``count``): the importer's soft-in, RPKI re-validation, the
BMP feed.
"""

from __future__ import annotations

from fastbgp.rib.attrs import W_REFS, WORDS
from fastbgp.rib.export import source_tag
from fastbgp.rpki.vrp import NOT_FOUND, VALID, partition_packed
from fastbgp.wire import codec

__all__ = ["PrePolicy", "FULL", "UNION", "ORIGINS_MAX"]

# Post-policy attribute sets mapped back, per neighbour: room for a full
# table's (a real one brings a new set with nearly every UPDATE; 65,536
# sent most of them to ``ribs``, a second copy that costs more to make).
ORIGINS_MAX = 1 << 20
GC_FIRST = 1024  # ``origins`` entries of a neighbour before the first look for unused ones
FULL = 1  # every path in ``ribs`` (a full copy)
UNION = 2  # ``ribs`` + the post-policy RIB read back through ``origins``


class PrePolicy:
    """The pre-policy Adj-RIB-In of every neighbour; see the module docstring."""

    def __init__(self, daemon):
        self.daemon = daemon
        self.ribs: dict = {}  # family -> Rib: what the post-policy RIB cannot give back
        self.modes: dict = {}  # (pid, family) -> FULL | UNION, decided at the first store
        # pid -> {post attr id: (attrs, next hop, received attr id or None)}:
        # tuples, not lists, because the collector stops tracking a tuple of
        # bytes and ints once it has seen it, and a full table's 10^5-10^6
        # entries traversed by every older-generation collection cost more
        # than the import they come with (bench/import_small_updates.py
        # --distinct).
        self.origins: dict = {}
        self.origins_max = ORIGINS_MAX  # entries of ``origins`` per neighbour
        self.collect_at: dict = {}  # pid -> size of ``origins[pid]`` that triggers a collection
        self.refused: dict = {}  # pid -> new sets refused (table full) since its last collection
        self.collections = 0  # passes over an ``origins`` table (collect), for tests and profiling

    # -- lifecycle -------------------------------------------------------------------------------

    def reset(self, pid):
        """A session of ``pid`` starts or ends: its mapping and modes go
        (the ``ribs`` paths are the peer registry's to remove or sweep)."""
        for key in [k for k in self.modes if k[0] == pid]:
            del self.modes[key]
        self.collect_at.pop(pid, None)
        self.refused.pop(pid, None)
        m = self.origins.pop(pid, None)
        if m:
            table = self.daemon.attrs
            for post, (_a, _n, got) in m.items():
                table.release(post)
                if got is not None:
                    table.release(got)

    def mode(self, pid, fam):
        """FULL or UNION for ``pid`` in ``fam``; decided at the first path
        stored in a session: the union only while the post-policy RIB holds
        nothing of ``pid`` that this view did not see arrive."""
        m = self.modes.get((pid, fam))
        if m is None:
            post = self.daemon.ribs[fam]
            m = UNION if not post.has_peer(pid) or not post.peer_path_count(pid) else FULL
            self.modes[(pid, fam)] = m
        return m

    def rib(self, fam, pid):
        """``ribs[fam]`` with ``pid`` added (as in the post-policy RIB)."""
        pre = self.ribs.get(fam)
        if pre is None:
            pre = self.ribs[fam] = self.daemon.new_rib(fam[0])
        if not pre.has_peer(pid):
            info = self.daemon.ribs[fam].peer_info(pid)
            pre.add_peer(pid, info["peer_as"], info["local_as"], info["router_id"], info["address"],
                         ibgp=info["ibgp"], rr_client=info["rr_client"])
        return pre

    # -- the import side -------------------------------------------------------------------------

    def store(self, pid, fam, attrs, nh, packed, addpath, post_aid, again=False):
        """Prefixes ``packed`` received from ``pid`` with (``attrs``,
        ``nh``), stored in the post-policy RIB under ``post_aid`` (None:
        rejected by import policy).  ``again``: a re-import from this view
        (soft-in, RPKI re-validation), which a full copy already holds.
        True when the post-policy path gives the received one back (the
        same arguments with another ``packed`` then need only ``drop``)."""
        if self.mode(pid, fam) == FULL:
            if not again:
                self.keep(pid, fam, attrs, nh, packed, addpath)
            return False
        if post_aid is not None:
            m = self.origins.get(pid)
            if m is None:
                m = self.origins[pid] = {}
            got = m.get(post_aid)
            if got is None:
                got = self.map(m, pid, attrs, nh, post_aid)
            if got is not None and got[0] == attrs and got[1] == nh:
                self.drop(pid, fam, packed, addpath)
                return True
        self.keep(pid, fam, attrs, nh, packed, addpath)
        return False

    def drop(self, pid, fam, packed, addpath):
        """The post-policy paths of ``packed`` give the received ones back:
        nothing of these prefixes stays in ``ribs``."""
        if self.holds(pid, fam):
            self.ribs[fam].withdraw(pid, packed, addpath)

    def holds(self, pid, fam) -> bool:
        """Whether ``ribs`` holds some path of ``pid`` in ``fam`` (else
        ``drop`` has nothing to do; the import lane asks once per batch
        step: fastbgp.daemon._lanestep_py)."""
        pre = self.ribs.get(fam)
        return pre is not None and pre.has_peer(pid) and pre.peer_path_count(pid) > 0

    def map(self, m, pid, attrs, nh, post_aid):
        """A new ``origins`` entry: post-policy ``post_aid`` comes from
        (``attrs``, ``nh``); None when the table is full."""
        table = self.daemon.attrs
        n = len(m)
        full = n >= self.origins_max
        # A full table is looked through again only after as many refusals
        # as it has entries: a peer whose every UPDATE brings a new set (a
        # real table: a router packs the prefixes sharing a set into one
        # UPDATE) would otherwise cost a pass over ORIGINS_MAX entries per
        # UPDATE once the table is full.
        if n >= self.collect_at.get(pid, GC_FIRST) or (full and self.refused.get(pid, 0) >= n):
            self.collect(m, pid)
            full = len(m) >= self.origins_max
        if full:
            self.refused[pid] = self.refused.get(pid, 0) + 1
            return None
        table.retain(post_aid)  # this table's reference to post_aid
        got = m[post_aid] = (attrs, nh, None)
        return got

    def collect(self, m, pid):
        """Drop the ``origins`` entries of ``pid`` no post-policy path uses:
        those only this table still holds (two references of its own when
        the policy changed nothing).  The next pass comes at twice what is
        left (or, when full, after as many refusals), so each entry is
        looked at O(1) times on average."""
        table = self.daemon.attrs
        self.collections += 1
        # The counts read from the table's records (its documented layout):
        # every id here is live, held by this table, so refcount's check
        # per entry (three calls) is not needed.
        rec = table.records
        for dead in [k for k, v in m.items() if rec[k * WORDS + W_REFS] == (2 if v[2] == k else 1)]:
            table.release(dead)
            got = m.pop(dead)[2]
            if got is not None:
                table.release(got)
        self.collect_at[pid] = max(GC_FIRST, 2 * len(m))
        self.refused[pid] = 0

    def received_id(self, pid, post_aid, got):
        """The received attribute id of ``origins[pid][post_aid]``, which is
        ``got`` (interned once, held by the entry from then on)."""
        if got[2] is None:
            rid = self.daemon.attrs.intern(got[0], source_tag(pid, got[1]))
            self.origins[pid][post_aid] = (got[0], got[1], rid)
            return rid
        return got[2]

    def keep(self, pid, fam, attrs, nh, packed, addpath):
        table = self.daemon.attrs
        aid = table.intern(attrs, source_tag(pid, nh))
        try:
            self.rib(fam, pid).update(pid, packed, addpath, aid)
        finally:
            table.release(aid)

    def withdraw(self, pid, fam, packed, addpath):
        pre = self.ribs.get(fam)
        if pre is not None and pre.has_peer(pid):
            pre.withdraw(pid, packed, addpath)

    # -- the readers -----------------------------------------------------------------------------

    def has_peer(self, pid, fam):
        """Whether ``pid`` may have pre-policy paths in ``fam``."""
        pre = self.ribs.get(fam)
        return (pre is not None and pre.has_peer(pid)) or self.modes.get((pid, fam)) == UNION

    def dump_peer(self, pid, fam, addpath=False):
        """[(received attribute id, packed prefixes)] of ``pid``'s
        pre-policy paths in ``fam`` (a list: the caller may change the RIBs
        while using it)."""
        pre = self.ribs.get(fam)
        out: dict = {}
        held = False
        if pre is not None and pre.has_peer(pid):
            held = pre.peer_path_count(pid) > 0
            for aid, packed in pre.dump_peer(pid, addpath):
                out.setdefault(aid, bytearray()).extend(packed)
        post = self.daemon.ribs.get(fam)
        m = self.origins.get(pid)
        if self.modes.get((pid, fam)) == UNION and m and post is not None and post.has_peer(pid):
            for aid, packed in post.dump_peer(pid, addpath):
                got = m.get(aid)
                if got is None:
                    continue  # every such path is in ``ribs``
                if held:
                    packed = self.not_in(pre, pid, packed, addpath)
                    if not packed:
                        continue
                out.setdefault(self.received_id(pid, aid, got), bytearray()).extend(packed)
        return [(aid, bytes(packed)) for aid, packed in out.items()]

    @staticmethod
    def not_in(pre, pid, packed, addpath):
        """The prefixes of ``packed`` for which ``pre`` holds no path of ``pid``."""
        there = pre.path_received(pid, packed, addpath)
        if not any(t is not None for t in there):
            return packed
        marks = bytes(VALID if t is not None else NOT_FOUND for t in there)
        return partition_packed(packed, marks, addpath)[NOT_FOUND]

    def path(self, pid, fam, key):
        """The received attribute id of ``pid``'s pre-policy path for
        prefix ``key`` (as ``Rib.paths`` takes it; its first path when
        ADD-PATH gives it several), or None."""
        pre = self.ribs.get(fam)
        if pre is not None and pre.has_peer(pid):
            for q in pre.paths(key):
                if q[0] == pid:
                    return q[2]
        m = self.origins.get(pid)
        if self.modes.get((pid, fam)) == UNION and m:
            for q in self.daemon.ribs[fam].paths(key):
                if q[0] == pid:
                    got = m.get(q[2])
                    return self.received_id(pid, q[2], got) if got is not None else None
        return None

    def count(self, pid, fam):
        """How many pre-policy paths ``pid`` has in ``fam`` (counted: for
        tests and views, not for every UPDATE)."""
        return sum(codec.count_prefixes(packed, fam[0], addpath)
                   for addpath in (fam in self.addpath_fams(pid),)
                   for _aid, packed in self.dump_peer(pid, fam, addpath))

    def addpath_fams(self, pid):
        src = self.daemon.sources.get(pid)
        return src.addpath_rx if src is not None else frozenset()
