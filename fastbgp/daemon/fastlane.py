"""The import fast lane: the commonest received UPDATE straight into the RIB.

A router sends a table as hundreds of thousands of small UPDATEs; the
general path (:meth:`fastbgp.daemon.importer.Importer.process_update`)
handles every case -- withdrawals, RFC 7606 actions, next hops that are
ours, ADD-PATH, per-prefix policy, families split by RPKI state -- through
several layers per UPDATE.  :class:`FastLane` takes, for one batch of
UPDATEs of one session (``Importer.updates_in``), the case that is most of
a table: only IPv4 NLRI or only one MP_REACH_NLRI, nothing RFC 7606 had to
repair, and an import verdict that does not depend on the prefix.  It does exactly what the
general path does for it, in one call:

* the import verdict through the importer's own ``import_`` (its cache,
  filled on a miss as the general path would fill it); a rejection
  withdraws the prefixes (``withdraw_post``);

* the upkeep of the pre-policy Adj-RIB-In view when the neighbour keeps one
  (soft reconfiguration, RPKI re-validation; ``PrePolicy.store``, which
  mostly has nothing to store: fastbgp.daemon.prepolicy);
* RFC 6811 validation (one bulk call per UPDATE, the prefixes grouped by
  state) and the RFC 8097 state community when some iBGP neighbour asks
  for it;
* the post-policy Adj-RIB-In / Loc-RIB with the path's state mark, the
  export of the change and RFC 7947 §2.3 path hiding (the importer's own
  ``prepolicy``, ``signal_state``, ``update_rib`` and ``over_limit``: the
  lane only skips the general path's dispatch);
* the neighbour's prefix limit (RFC 4486 Cease 6/1).

The RIB changes of a batch wait in per-family runs and go into the RIB in
one ``Rib.update_many`` with one export (``flush``), before the general path
takes an UPDATE and when the batch ends: the table and what is exported end
the same as UPDATE by UPDATE (a prefix changed twice in a batch is exported
once, with its last path).  Not with a prefix limit, which looks at each
UPDATE's own change.  With RFC 7947 §2.3 path hiding each run is touched
after the batch (``Exporter.hiding_touch_many``): a route server's client
gets one UPDATE per attribute set of a batch, not one per UPDATE received.

The lane remembers, per (family, attribute set, next hop, state), the
stored attribute id (holding a reference to it), its RIB mark and whether
the pre-policy view maps it back: a table's UPDATEs share few attribute
sets, so most of them cost one RFC 6811 validation, one dict look-up and
the RIB update.  The memo (:class:`LaneMemo`) outlives the batch: a
router sends the UPDATEs of one set in a row, and a batch (at most 256
UPDATEs, one read turn) mostly ends inside such a run, so a memo per batch
would work each set out about twice (measured on bench/rpki_vs_bird.py's
table: 112k first looks for 54k sets).  What it remembers holds as long
as its inputs do, and every change of them drops it
(``Importer.forget_lane``):

* the import verdict: every chain bound (a reload, a soft reset, a
  session: ``Importer.bind_policy``, which starts a new import cache too),
  and that cache cleared for new ASPA data (``Importer.forget_imports``);
* the stored set: the RFC 8097 flag (``RpkiFeed.refresh_signal``);
* the view's answer: its reset at the session's start and end (the memo
  is of one session and released when it ends: ``Peers.peer_down``);
* the RFC 6811 state is part of the key, worked out per UPDATE.

The VRPs, the policy and the flag change only between batches (a reload,
the RTR client), and a session that ends ends the batch.  The memo is
bounded (``LaneMemo.MAX`` sets, dropped whole beyond it, like the import
cache) and let go at the peer's End-of-RIB (RFC 4724 §2): it pays while
a table comes in, and a table's sets need not come in a row -- in
bench/rpki_vs_bird.py's (54k sets, 736k UPDATEs) nearly every UPDATE
brings another set than the one before, so a memo of 8,192 sets was
dropped 8 times and worked out 71k sets, one of 32,768 once and 59k
(65,536: 54k, for twice the memory while the table comes in).

The memo also skips the codec for most of a table (``Importer.bodies_in``,
when nobody observes the session's messages): after the lane took a
parsed UPDATE of a set it had seen (not a set's first UPDATE, which may be
its only one), the step keeps what the parse gave under the body's
``raw_key`` -- its octets less its prefixes, for a plain announcement of
IPv4 NLRI or of one unicast MP_REACH_NLRI -- and ``take_raw`` takes the
next bodies with a known key straight from their octets, checking only
that their prefixes are well-formed.  A parse depends on nothing else (the
session's context is fixed for the memo's life), so nothing but the
memo's own life drops these entries (``LaneMemo.MAX`` keys too).

The per-UPDATE step is ``take`` of fastbgp.daemon.lanestep (compiled
``_lanestep.pyx``, pure-Python twin ``_lanestep_py.py``, whose docstring is
the contract): it runs through the batch while the UPDATEs are the lane's
and stops before the first that is not, having changed nothing of it but
the import cache (and the pre-policy view as the general path will change
it again); the caller takes the general path for that one.  An
UPDATE whose prefixes have several RFC 6811 states is the lane's too, split
by state as the general path splits it.  Both paths are run on the same
random UPDATE sequences by tests/test_update_batches.py, with each
implementation of the step, and must leave the same RIBs.

Owns: a FastLane, nothing beyond one batch (``close`` makes its deferred
RIB changes); a LaneMemo, the ids it holds for one session's sets until
``Importer.forget_lane`` (or ``close``, when full or dropped).  Calls: the importer (the steps above),
its daemon's attribute table and RPKI feed, its exporter's hook flags.  Called by:
fastbgp.daemon.importer and the lane step (``first``, ``split``, ``apply``; fastbgp.daemon.lanestep).
"""

from __future__ import annotations

from fastbgp.rpki.vrp import path_mark, split_by_state
from fastbgp.rib.export import source_tag
from fastbgp.wire.families import family_name

__all__ = ["FastLane", "LaneMemo", "PER_PREFIX", "MISS"]

# Import cache verdicts (Importer.import_): the chain looks at prefixes.
PER_PREFIX = object()
MISS = object()


class LaneMemo:
    """What the lane worked out for one session's attribute sets, kept
    across its batches (see the module docstring for what drops it):
    ``seen`` maps (family, attrs, next hop, state) to (attribute id or
    None when rejected, RIB mark, the view maps it back), one reference
    held per id."""

    __slots__ = ("session", "seen", "raw", "busy", "dead")

    MAX = 32768  # sets remembered per neighbour (and ids held), and raw keys; beyond it the memo starts over

    def __init__(self, session):
        self.session = session
        self.seen = {}
        # The raw_key of a plain announcement's body (its octets less its
        # prefixes) -> what its parse gave the lane (the lane step's entry).
        self.raw = {}
        self.busy = False  # a batch is using it (its RIB changes may wait on the ids)
        self.dead = False  # dropped while busy: released when the batch ends

    def holds(self, session) -> bool:
        """Still what the lane may use for a batch of ``session``."""
        return self.session is session and not self.dead

    def drop(self, table):
        """Release the ids held, or, while a batch uses them, once it ends."""
        if self.busy:
            self.dead = True
            return
        seen, self.seen = self.seen, {}
        self.raw = {}
        release = table.release
        for aid, _mark, _ok in seen.values():
            if aid is not None:
                release(aid)


class FastLane:
    """One batch's fast path for one neighbour; see the module docstring."""

    __slots__ = ("importer", "nb", "session", "fams", "own4", "own_mp", "limits", "pre",
                 "uses_rpki", "view", "seen", "raw", "defer", "runs", "states", "rov", "memo",
                 "signal", "attrs", "tag")

    @classmethod
    def of(cls, importer, nb, session):
        """The lane for this batch, or None when every UPDATE must take the
        general path (no negotiation yet, someone watching received UPDATEs)."""
        if importer.events.watchers or session.negotiated is None:
            return None
        return cls(importer, nb, session)

    def __init__(self, importer, nb, session):
        d = importer.daemon
        self.importer = importer
        self.nb = nb
        self.session = session
        # Families routed here, negotiated, without ADD-PATH receive.
        fams = [f for f in session.negotiated.families if f in d.ribs and f not in session.ctx.addpath_rx]
        self.limits = {}
        for fam in fams if nb.cfg.prefix_limit else ():
            lim = nb.cfg.prefix_limit.get(family_name(fam))
            if lim is not None:
                self.limits[fam] = lim
        self.own4, self.own_mp = nb.own_next_hops
        # Families with ADD-PATH update groups take the general path (the
        # groups change only in queued export work or when this session
        # ends, and the batch stops there).
        self.fams = frozenset(f for f in fams if not importer.exporter.hooks(f)[1])
        # Families whose RIB changes wait for flush(): not with a prefix
        # limit (checked after every UPDATE).
        self.defer = frozenset() if self.limits else self.fams
        # family -> [(packed, attribute id or None, mark)] not yet in the RIB:
        # one entry per UPDATE of the batch at most, and a batch is bounded
        # by its connection's turn (Connection.process: octets and messages).
        self.runs = {f: [] for f in self.defer}
        # RFC 6811 at import: the VRPs' parts for the lane step
        # (RpkiFeed.plain_validation), else, for a neighbour whose RFC 8097
        # community may give the state, one function (RpkiFeed.validator).
        self.rov = None if d.rpki is None else d.rpki.plain_validation(nb)
        self.states = None if d.rpki is None or self.rov is not None else d.rpki.validator(nb)
        self.pre = nb.pre_policy
        self.view = importer.prepolicy
        self.uses_rpki = nb.import_chain is not None and nb.import_chain.uses_rpki
        # For first(), once per batch: RFC 8097 signalling on (the flag
        # changes only between batches: RpkiFeed.refresh_signal), the
        # attribute table, the intern tag of this peer's IPv4 sets.
        self.signal = d.rpki is not None and d.rpki.signal
        self.attrs = d.attrs
        self.tag = source_tag(nb.pid)
        memo = nb.lane_memo
        if memo is None or not memo.holds(session):
            importer.forget_lane(nb)
            memo = nb.lane_memo = LaneMemo(session)
        memo.busy = True
        self.memo = memo
        # (family, attrs, next hop, state) -> (attribute id, RIB mark, the
        # view maps it back); one reference per id, held by the memo.
        self.seen = memo.seen
        self.raw = memo.raw

    def flush(self):
        """The deferred announcements and rejections into the RIB, one
        Rib.update_many and one export per family.  Called before anything
        else may read or change this neighbour's paths: the general path
        (Importer.updates_in) and close."""
        for fam, batch in self.runs.items():
            if batch:
                self.runs[fam] = []
                self.importer.update_rib_many(fam, self.nb.pid, batch)

    def close(self):
        """The batch is over: its RIB changes are made; the memo is kept
        for the next batch unless it was dropped meanwhile or is full."""
        memo = self.memo
        try:
            self.flush()
        finally:
            memo.busy = False
            if memo.dead or len(memo.seen) > LaneMemo.MAX or len(memo.raw) > LaneMemo.MAX:
                if self.nb.lane_memo is memo:
                    self.nb.lane_memo = None
                memo.drop(self.importer.daemon.attrs)

    def apply(self, fam, packed, got):
        """An UPDATE's RIB change made at once (a family not deferred: the
        neighbour has a prefix limit, checked after each UPDATE's change);
        ``got`` is what ``seen`` keeps for its key."""
        imp = self.importer
        packed = imp.daemon.ribs[fam].own(packed, False)  # a worker: its shard only (Importer.process_update)
        if got[0] is None:
            imp.withdraw_post(self.nb, fam, packed, False)
            return
        imp.update_rib(fam, self.nb.pid, packed, False, got[0], got[1])
        if self.limits:
            imp.over_limit(self.nb, self.session, fam, self.limits.get(fam))

    def split(self, fam, attrs, nh, states, packed) -> bool:
        """An UPDATE of a deferred family whose prefixes have several RFC
        6811 ``states``: each part of one state as an UPDATE of its own,
        grouped as the general path groups them (``split_by_state``).
        Every part's verdict comes before any change: False when the chain
        looks at prefixes (the general path then takes the UPDATE, and
        stores again, unchanged, what ``first`` stored into the view for a
        part).  Rare in a table, so not compiled; the lane step's caller
        forgets what it knew of the view afterwards."""
        runs = self.runs[fam]
        gots = []
        for state, part in split_by_state(states, packed, False):
            key = (fam, attrs, nh, state)
            got = self.seen.get(key)
            fresh = got is None
            if fresh:
                got = self.first(key, part)
                if got is None:
                    return False
            gots.append((got, part, fresh))
        pid = self.nb.pid
        for got, part, fresh in gots:
            if self.pre and not fresh:
                if got[2]:
                    self.view.drop(pid, fam, part, False)  # what store does when it maps back
                else:
                    self.view.store(pid, fam, attrs, nh, part, False, got[0])
            runs.append((part, got[0], got[1]))
        return True

    def first(self, key, packed):
        """The first UPDATE of the batch with ``key`` (family, attributes,
        next hop, state): its import verdict, and the pre-policy view's
        upkeep for it; what ``seen`` keeps for the next ones --
        (attribute id or None when rejected, RIB mark, the view maps it
        back) -- or None for the general path (the chain looks at
        prefixes)."""
        fam, attrs, nh, state = key
        nb = self.nb
        imp = self.importer
        pid = nb.pid
        # The chain sees the state only when it asks; then the import
        # cache's key is this memo's own.
        if self.uses_rpki:
            res = imp.import_(nb, fam, attrs, nh, state, key)  # its cache first (one look-up), filled on a miss
        else:
            res = imp.import_(nb, fam, attrs, nh, None)
        if res is None:
            # Rejected by import policy: withdrawn from the post-policy RIB,
            # kept in the pre-policy view (every time: nothing maps it back).
            if self.pre:
                self.view.store(pid, fam, attrs, nh, packed, False, None)
            got = self.seen[key] = (None, 0, False)
            return got
        if res[0] is PER_PREFIX:
            return None
        out, out_nh = res
        if self.signal:
            out = imp.signal_state(out, state)  # RFC 8097
        aid = self.attrs.intern(out, source_tag(pid, out_nh) if out_nh else self.tag)  # held by the memo
        ok = self.view.store(pid, fam, attrs, nh, packed, False, aid) if self.pre else False
        got = self.seen[key] = (aid, path_mark(state), ok)
        return got
