"""Update groups and the export queue: how Loc-RIB changes reach peers.

Owns: the update groups (``Exporter.groups``, key -> ``UpdateGroup``), the
batches of peers waiting to join one, the count of Loc-RIB changes (the
views' cache key) and the :class:`ExportQueue` that runs large work in
slices.  Every message to a peer's Adj-RIB-Out is encoded here, once per
group, and the same list of bytes queued to each member (``send_messages``).
A live group has an index in its family's ``Rib.held`` (what it was sent,
so withdrawals go only to groups that hold the prefix: see
fastbgp.rib.export), taken in :meth:`Exporter.add_group` and freed in
:meth:`Exporter.drop_group` when its last member leaves.  A member's
join dump reads the RIB when it runs: the changes exported before it and
still queued behind it are not sent to that member (``Exporter.joined``).

Calls: the daemon's shared state (``ribs``, ``attrs``, ``sources``,
``engine``, ``cluster_id``), the members' ``send_messages`` / ``epoch`` /
``groups`` / ``established`` / ``removed``, and
:meth:`fastbgp.daemon.events.EventStream.best_changes` while someone
watches.  Called by: the importer and the originator (``export_cs``,
``addpath_groups``, ``addpath_delta``), the peer registry (peers coming and
going), the daemon's neighbours (join, redump, leave) and reload.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections import deque

from fastbgp.rib.export import EBGP, IBGP, RS, Delta, ExportBatch, UpdateGroup, group_key, rewrite_path_ids
from fastbgp.rib.export import PathRanker, SharedExports, changed_ids, paths_before, prefix_entries
from fastbgp.rib.export import self_next_hops, tag_source
from fastbgp.rib.confed import of_config as confed_of_config
from fastbgp.rib.policy import PolicyContext
from fastbgp.rib.route_server import PathHiding, settings as route_server_settings
from fastbgp.wire import codec
from fastbgp.wire.constants import (
    AFI_IPV4,
    AFI_IPV6,
    IPV4_UNICAST,
    ROLE_PEER,
    ROLE_PROVIDER,
    ROLE_RS,
    RR_BORR,
    RR_EORR,
)
from fastbgp.daemon.common import SLICE_SECONDS

_MISSING = object()

log = logging.getLogger("fastbgp.daemon")

# A delta bigger than this (prefixes) is processed by the export worker in
# slices instead of inline.
INLINE_LIMIT = 20000
# Slice size of big deltas and dumps, in prefixes (about 1 ms of encoding).
SLICE_PREFIXES = 16384
# Prefixes ranked per slice for ADD-PATH best-N (about 10 us each with four
# paths and N = 2 on the compiled RIB: ~10 ms a slice).
BEST_N_SLICE = 1024


class ExportQueue:
    """One FIFO of export work (generators), run in slices by one task.

    Order is what matters: a peer's full dump and the incremental changes
    after it must reach it in that order, and so must two changes of the
    same prefix.  A small item submitted while nothing is queued runs at
    once (inline); anything else waits its turn."""

    def __init__(self, loop):
        self.loop = loop
        self.queue = deque()
        self.busy = False
        self._event = asyncio.Event()
        self._task = loop.create_task(self._run())
        self.items_run = 0

    def submit(self, gen, heavy=False):
        if not heavy and not self.queue and not self.busy:
            self.busy = True
            try:
                for _ in gen:
                    pass
            except Exception:
                log.exception("export work failed")
            finally:
                self.busy = False
                self.items_run += 1
            return
        self.queue.append(gen)
        self._event.set()

    @property
    def idle(self):
        return not self.queue and not self.busy

    async def wait_idle(self):
        while not self.idle:
            await asyncio.sleep(0.001)

    async def _run(self):
        loop = self.loop
        while True:
            if not self.queue:
                self._event.clear()
                await self._event.wait()
                continue
            gen = self.queue.popleft()
            self.busy = True
            t0 = loop.time()
            try:
                for _ in gen:
                    if loop.time() - t0 > SLICE_SECONDS:
                        self.busy = True
                        await asyncio.sleep(0)
                        t0 = loop.time()
            except Exception:
                log.exception("export work failed")
            finally:
                self.busy = False
                self.items_run += 1
            if loop.time() - t0 > SLICE_SECONDS:
                await asyncio.sleep(0)

    def close(self):
        self._task.cancel()
        self.queue.clear()


def confed_peer(nb):
    """RFC 5065 §4: ``nb`` is in another member AS of our confederation (an
    EBGP kind whose routes keep their internal attributes, see
    fastbgp.rib.confed)."""
    return bool(getattr(nb.config, "confederation_member", False))


def peer_kind(nb):
    """(kind, route-reflector client) of a daemon neighbour: RS, EBGP or IBGP."""
    cfg = nb.cfg
    kind = RS if cfg.route_server_client else (EBGP if nb.ebgp else IBGP)
    return kind, bool(cfg.route_reflector_client) and kind == IBGP


class Exporter:
    """Update-group orchestration; see the module docstring for its contract.

    ``queue`` is the :class:`ExportQueue`, created by :meth:`start` once a
    loop runs (the daemon exposes it as ``Daemon.exports``)."""

    def __init__(self, daemon, events):
        self.daemon = daemon
        self.events = events
        self.groups: dict = {}  # key -> UpdateGroup
        self.pending_joins: dict = {}  # group key -> (group, [(member, epoch, eor)]) not started yet
        self.queue = None
        self.changes = 0  # Loc-RIB ChangeSets exported so far
        self.rankers: dict = {}  # family -> PathRanker, for ADD-PATH best-N groups
        self.path_helds: dict = {}  # family -> HeldSet of the ADD-PATH groups (path_held)
        # (member pid, family) -> ``changes`` when its join dump read the
        # RIB: the changes up to it, still queued, are not sent to it (see
        # joined()); an entry goes once a later change is exported.
        self.dumped: dict = {}
        # family -> hooks(): asked on every received UPDATE, recomputed only
        # after groups_changed() (a member joined or left, a policy or path
        # hiding switched), so that a feature that is off costs a dict get.
        self.hook_cache: dict = {}
        self.sole_cache: dict = {}  # family -> sole_member's answer
        self.lists: dict = {}  # (family, addpath or "hiding") -> groups_of / hiding_groups
        # Exports shared by the groups without export policy (SharedExports).
        self.shared = SharedExports()

    def start(self, loop):
        self.queue = ExportQueue(loop)

    def close(self):
        self.queue.close()

    # -- Loc-RIB and Adj-RIB-In changes ----------------------------------------------------------

    def groups_of(self, fam, addpath):
        """The groups of ``fam`` (ADD-PATH or not) with members, exporting
        anything; a tuple kept until groups_changed() (asked per change)."""
        got = self.lists.get((fam, addpath))
        if got is None:
            got = self.lists[(fam, addpath)] = tuple(
                g for g in self.groups.values()
                if g.family == fam and g.addpath == addpath and g.members and not g.exports_nothing)
        return got

    def hooks(self, fam):
        """(any group to export to, any ADD-PATH group, any path-hiding
        group) for ``fam``, each as groups_of / hiding_groups would say."""
        h = self.hook_cache.get(fam)
        if h is None:
            plain = self.groups_of(fam, False)
            h = self.hook_cache[fam] = (bool(plain), bool(self.groups_of(fam, True)),
                                        any(g.hiding is not None for g in plain))
        return h

    def groups_changed(self):
        """Called wherever a group's members, policy or path hiding change."""
        self.hook_cache.clear()
        self.sole_cache.clear()
        self.lists.clear()
        # One group exporting anything: nothing to share (SharedExports).
        self.shared.active = sum(not g.exports_nothing for g in self.groups.values()) > 1

    def sole_member(self, fam):
        """The peer id of the only member of ``fam``'s plain update groups
        (None when there are none or several, or a group hides paths):
        what a change made only of that peer's new routes goes to nobody."""
        sole = self.sole_cache.get(fam, _MISSING)
        if sole is _MISSING:
            groups = self.groups_of(fam, False)
            pids = {pid for g in groups for pid in g.members}
            sole = pids.pop() if len(pids) == 1 and all(g.hiding is None for g in groups) else None
            self.sole_cache[fam] = sole
        return sole

    def best_n_groups(self, fam):
        """The ADD-PATH groups of ``fam`` sent the best N paths per prefix."""
        return [g for g in self.groups_of(fam, True) if g.send_max]

    def ranker(self, fam):
        rib = self.daemon.ribs[fam]
        r = self.rankers.get(fam)
        if r is None or r.rib is not rib:
            r = self.rankers[fam] = PathRanker(rib)
        r.begin()
        return r

    def submit_best_n(self, fam, packed, addpath, forced=None):
        """Queue a best-N refresh of the prefixes of ``packed``.  Queued,
        never inline: the importer calls the ADD-PATH hooks before it
        changes the RIB, and the ranking must see the change."""
        if self.best_n_groups(fam):
            self.queue.submit(self.best_n_refresh(fam, prefix_entries(packed, fam[0], addpath), forced),
                              heavy=True)

    def best_n_refresh(self, fam, entries, forced=None):
        """Export work: RFC 7911 §5 best-N for the prefixes ``entries``
        (packed, no path id) -- ranked from the RIB as it is now, compared
        with what each best-N group was sent (see UpdateGroup.ranked_delta)."""
        sources = self.daemon.sources
        table = self.daemon.attrs
        for i in range(0, len(entries), BEST_N_SLICE):
            groups = self.best_n_groups(fam)
            if not groups:
                return
            ranker = self.ranker(fam)
            n = max(g.send_max for g in groups)
            ranked = {e: ranker.top(e, n) for e in entries[i:i + BEST_N_SLICE]}
            for g in groups:
                out = g.process(g.ranked_delta(ranked, table, forced), sources)
                if out:
                    distribute(g, out)
            yield

    def addpath_groups(self, fam):
        return self.hooks(fam)[1]

    def export_cs(self, fam, cs, heavy=False, fresh=False, source=None):
        """Hand a Loc-RIB ChangeSet to the update groups of its family.
        ``fresh``: every prefix in it is new to the Loc-RIB (see
        :meth:`fastbgp.daemon.importer.Importer.update_rib`); ``source``:
        the peer id whose paths made every change of ``cs``."""
        if heavy:
            # A whole-peer change (down, sweep, ...) may take non-best paths
            # that path hiding chose: those prefixes are chosen again, after.
            self.submit_rehide(fam, cs)
        if not cs:
            return
        self.changes += 1
        if self.events.watchers:
            self.events.best_changes(fam, cs)
        if not self.hooks(fam)[0]:
            return
        if fresh and source is not None and self.sole_member(fam) == source:
            # Split horizon: new prefixes whose best path came from the
            # only member go to nobody, and no one holds an older route of
            # ours to withdraw (the one-peer collector, or a full table
            # arriving before the others are up): nothing to encode.
            return
        delta = Delta.from_changeset(fam, cs, self.daemon.attrs, self.daemon.sources)
        delta.fresh = fresh
        delta.seq = self.changes
        self.queue.submit(self.run_delta(delta), heavy=heavy or delta.n > INLINE_LIMIT)

    # -- RFC 7947 §2.3 path hiding (fastbgp.rib.route_server.PathHiding) --------------------------

    def hiding_groups(self, fam):
        got = self.lists.get((fam, "hiding"))
        if got is None:
            got = self.lists[(fam, "hiding")] = tuple(g for g in self.groups_of(fam, False) if g.hiding is not None)
        return got

    def set_hiding(self, g):
        """Path hiding on or off for group ``g`` as configured; True when
        that changed."""
        rs = getattr(self.daemon.config.global_, "route_server", None)
        on = g.kind == RS and not g.addpath and rs is not None and rs.path_hiding
        if on == (g.hiding is not None):
            return False
        g.hiding = PathHiding(self.ranker, lambda aid: tag_source(self.daemon.attrs, aid)) if on else None
        self.groups_changed()
        return True

    def submit_rehide(self, fam, cs=None):
        if any(g.hiding.chosen for g in self.hiding_groups(fam)):
            self.queue.submit(self.rehide_chosen(fam), heavy=True)

    def rehide_chosen(self, fam):
        """Export work: every prefix of every group sent a non-best path is
        chosen again."""
        sources = self.daemon.sources
        for g in self.hiding_groups(fam):
            entries = list(g.hiding.chosen)
            for i in range(0, len(entries), BEST_N_SLICE):
                out = g.rehide(entries[i:i + BEST_N_SLICE], sources)
                if out:
                    distribute(g, out)
                yield

    def hiding_touch(self, fam, pid, packed, addpath, aid, cs):
        """After the RIB took an UPDATE of ``pid`` (``aid``: the attribute
        id announced, None for a withdrawal) whose Loc-RIB change was
        ``cs``: path hiding chooses again where a non-best path changed --
        a prefix sent a non-best path, or (an announcement) one whose best
        the group rejects while the new path passes.  Nothing to do, per
        group, when every prefix's best changed (``cs`` covers them all:
        UpdateGroup.process decides those).  One run of
        :meth:`hiding_touch_many`."""
        self.hiding_touch_many(fam, pid, ((packed, aid, 0),), cs, addpath)

    def hiding_touch_many(self, fam, pid, runs, cs, addpath=False, rib=None):
        """hiding_touch for several UPDATEs of ``pid`` at once (the fast
        lane's batch, Importer.update_rib_many): ``runs`` [(packed,
        attribute id or None, mark)] went into the RIB in one operation
        whose Loc-RIB change was ``cs``.  ``rib``: that RIB, when it was
        its ``update_many`` and the runs may hold prefixes of other shards
        (a worker's: only its own are looked at).

        When ``cs`` holds as many prefixes as the runs together, the runs'
        prefixes were distinct and every one changed its best: nothing to
        do (not with ADD-PATH, where a prefix stands for several paths).
        Otherwise the runs' prefixes are touched once per attribute id (one
        export, so a client gets one UPDATE per attribute set), after all
        of them: rehide_touched chooses again from the RIB as it stands, so
        a prefix that a later run changed again is only looked at once more
        (for one UPDATE too, the prefixes whose best changed are rehidden
        with the others)."""
        if not self.hooks(fam)[2] or not self.hiding_groups(fam):
            return  # no path hiding: not even the prefixes counted
        afi = fam[0]
        by_aid = {}  # attribute id (None: withdrawn) -> {entry: None}, in order, no repeats
        try:
            if cs and not addpath:
                # The RIB counted the runs' prefixes of its shard already.
                total = rib.last_count if rib is not None else sum(codec.count_prefixes(r[0], afi, False)
                                                                   for r in runs)
                if cs.n_announced + cs.n_withdrawn >= total:
                    return
            if rib is not None:
                runs = [(rib.own(packed, addpath), aid, mark) for packed, aid, mark in runs]
            for packed, aid, _mark in runs:
                by_aid.setdefault(aid, {}).update(dict.fromkeys(prefix_entries(packed, afi, addpath)))
        except ValueError:
            return  # not NLRI: nothing to choose for
        src = self.daemon.sources.get(pid)
        for aid, entries in by_aid.items():
            new = None if aid is None or src is None else tag_source(self.daemon.attrs, aid)
            self.queue.submit(self.rehide_touched(fam, list(entries), src, new))

    def rehide_touched(self, fam, entries, src, new):
        """Export work for :meth:`hiding_touch`.  The best path of each
        prefix is looked up once, then each group decides once per (best
        path's peer, attribute id): the cost is per prefix once, plus per
        group and distinct best attribute set -- not per group and prefix."""
        rib = self.daemon.ribs[fam]
        sources = self.daemon.sources
        width = 4 if fam[0] == AFI_IPV4 else 16
        groups = self.hiding_groups(fam)
        bests = None  # (peer id, attr id) of the best -> [entries], when the new path may be chosen
        for g in groups:
            chosen = g.hiding.chosen
            todo = [e for e in entries if e in chosen] if chosen else []
            own = g.hiding.own_pids(g.members, None)
            if new is not None and src.pid not in own and g.export(src, new[1], new[2]) is not None:
                if bests is None:
                    bests = {}
                    for e in entries:
                        best = rib.best_path(ipaddress.ip_network((e[1:].ljust(width, b"\0"), e[0])))
                        if best is not None:
                            bests.setdefault((best[0], best[2]), []).append(e)
                done = set(todo)
                for (bpid, aid), ents in bests.items():
                    bsrc = sources.get(bpid)
                    if bsrc is None or bpid in own:
                        todo.extend(e for e in ents if e not in done)
                        continue
                    _spid, attrs, nh = tag_source(self.daemon.attrs, aid)
                    todo.extend(e for e in ents if e not in done and g.export_entry(bsrc, attrs, nh, e) is None)
            if todo:
                out = g.rehide(todo, sources)
                if out:
                    distribute(g, out)
        yield

    def addpath_delta(self, fam, pid, attrs, nh, packed, addpath):
        """An Adj-RIB-In change of ``pid`` for the ADD-PATH groups (attrs
        None: withdrawn).  Called before the RIB changes: an announcement
        reads the paths it replaces (``paths_before``), so that a group that
        holds a path and exports it as before is not sent it again (RFC 4271
        §9.2: an UPDATE when what the peer is sent changes)."""
        ours = rewrite_path_ids(packed, fam[0], addpath, pid)
        before = ()
        if attrs is None:
            delta = Delta(fam, (), [(pid, ours)], addpath=True)
        else:
            delta = Delta(fam, [(pid, attrs, nh, ours)], addpath=True)
            before = paths_before(self.daemon.ribs.get(fam), self.daemon.attrs, self.daemon.sources.get(pid), fam,
                                  packed, addpath)
            if before:
                delta.replaced = {(pid, attrs, nh): before}
        if any(not g.send_max for g in self.groups_of(fam, True)):
            self.queue.submit(self.run_delta(delta))
        if self.best_n_groups(fam):
            # A changed path keeps its id: re-sent if it stays in the top N
            # and its export changed (UpdateGroup.ranked_delta).
            self.submit_best_n(fam, ours, True, changed_ids(ours, before, fam[0]) if attrs is not None else None)

    def addpath_withdraw_all(self, pid, fam):
        if not self.addpath_groups(fam):
            return
        rib = self.daemon.ribs[fam]
        src = self.daemon.sources.get(pid)
        rx = src is not None and fam in src.addpath_rx
        wd = [(pid, rewrite_path_ids(packed, fam[0], rx, pid)) for _aid, packed in rib.dump_peer(pid, rx)]
        if wd and any(not g.send_max for g in self.groups_of(fam, True)):
            self.queue.submit(self.run_delta(Delta(fam, (), wd, addpath=True)), heavy=True)
        if wd:
            # Called before the RIB drops them: queued, ranked after.
            self.submit_best_n(fam, b"".join(p for _pid, p in wd), True)

    def addpath_announce_all(self, pid, fam):
        rib = self.daemon.ribs[fam]
        src = self.daemon.sources.get(pid)
        rx = src is not None and fam in src.addpath_rx
        ann = []
        for aid, packed in rib.dump_peer(pid, rx):
            spid, attrs, nh = tag_source(self.daemon.attrs, aid)
            ann.append((spid, attrs, nh, rewrite_path_ids(packed, fam[0], rx, pid)))
        if ann and any(not g.send_max for g in self.groups_of(fam, True)):
            self.queue.submit(self.run_delta(Delta(fam, ann, addpath=True)), heavy=True)
        if ann:
            self.submit_best_n(fam, b"".join(a[3] for a in ann), True)

    def run_delta(self, delta):
        """Export work: encode ``delta`` per group and queue it to members."""
        sources = self.daemon.sources
        for part in slices(delta):
            export_part(self.groups_of(part.family, part.addpath), part, sources, joined(self.dumped, part))
            yield

    # -- members ---------------------------------------------------------------------------------

    def group_for(self, nb, fam):
        d = self.daemon
        session = nb.session
        neg = session.negotiated
        cfg = nb.cfg
        kind, rr = peer_kind(nb)
        chain = d.engine.chain(cfg, "export")
        local = session.conn.local_address if session.conn is not None else cfg.local_address
        nh4, nh6 = self_next_hops(local)
        otc = kind != IBGP and neg.local_role in (ROLE_PROVIDER, ROLE_PEER, ROLE_RS)
        rsp = d.engine.route_server
        # RFC 7911 §5: best N paths per prefix when send-max is set (0: all).
        send_max = cfg.add_path.send_max if fam in session.ctx.addpath_tx else 0
        # RFC 8950 §4: IPv6 next hops for IPv4 only when configured here
        # and the peer's OPEN said it takes them.
        enh = (fam == IPV4_UNICAST and cfg.extended_next_hop
               and (fam[0], fam[1], AFI_IPV6) in neg.extended_nexthop_tx)
        key = group_key(fam, chain, session.ctx, kind, rr, nb.local_as,
                        ((nh4, nh6) if enh else nh4) if fam == IPV4_UNICAST else nh6,
                        nb.address, d.cluster_id, otc,
                        peer_as=cfg.peer_as if kind == RS and rsp is not None and rsp.euro_ix else None,
                        send_max=send_max, enh=enh)
        key = key + (confed_peer(nb),)  # RFC 5065: confederation peers get their own groups
        # RFC 8097: iBGP peers that asked for the validation state community.
        signal = kind == IBGP and cfg.rpki_signal and d.rpki is not None
        if signal:
            key = key + ("rpki-signal",)
        g = self.groups.get(key)
        if g is None:
            pctx = PolicyContext(nb.address, cfg.peer_as, nb.local_as, local_address=local)
            ctx = codec.Context(as4=session.ctx.as4, addpath_tx=frozenset(session.ctx.addpath_tx) & {fam},
                                extended_message=session.ctx.extended_message)
            g = UpdateGroup(key, fam, ctx, d.engine, chain, pctx, kind, rr, nb.local_as, nh4, nh6,
                            d.cluster_id, otc, send_max=send_max, enh=enh)
            g.confed = confed_of_config(d.config.global_)
            g.confed_peer = confed_peer(nb)
            g.rpki_signal = signal
            g.shared = self.shared
            self.set_hiding(g)
            self.add_group(g)
        return g

    def add_group(self, g):
        """``g`` becomes a live group: it gets its index in the family's
        compact Adj-RIB-Out (fastbgp.rib.export, ``Rib.held``)."""
        self.groups[g.key] = g
        rib = self.daemon.ribs.get(g.family)
        if rib is not None:
            g.attach_held(rib.held, self.path_held(g.family, rib) if g.addpath else None)
        self.groups_changed()

    def path_held(self, fam, rib):
        """The HeldSet of what the ADD-PATH groups of ``fam`` hold, keyed by
        (our path id, prefix) (fastbgp.rib.export.path_keys): one of the
        RIB's own class, IPv6-wide, made when the first such group is."""
        held = self.path_helds.get(fam)
        if held is None:
            held = self.path_helds[fam] = type(rib.held)(AFI_IPV6)
        return held

    def drop_group(self, g):
        """``g`` lost its last member: gone, its index and bits freed (a
        later group starts holding nothing, and its members get a dump)."""
        if self.groups.get(g.key) is g:
            del self.groups[g.key]
        g.release_held()

    def leave_groups(self, nb):
        for fam, g in list(nb.groups.items()):
            g.members.pop(nb.pid, None)
            g.resent(nb.pid)
            self.dumped.pop((nb.pid, fam), None)
            if not g.members:
                self.drop_group(g)
        nb.groups = {}
        self.groups_changed()

    def set_policies(self, engine):
        """After a reload: every group's export chain from the new engine.
        Route-server clients are regrouped and re-sent their table when
        ``[global.route-server]`` changed (fastbgp.rib.route_server)."""
        rs_members = []
        for g in list(self.groups.values()):
            if g.kind == RS and route_server_settings(g.engine) != route_server_settings(engine):
                rs_members.extend(g.members.values())
            if self.set_hiding(g):
                rs_members.extend(g.members.values())  # RFC 7947 §2.3 path hiding switched
            chain = engine.chain(g.chain.names, "export", "accept" if g.chain.default_accept else "reject")
            g.set_policy(engine, chain, g.pctx)
        self.groups_changed()  # exports_nothing may have changed
        for nb in {id(m): m for m in rs_members}.values():
            self.redump_all(nb)
            self.daemon.importer.soft_in(nb)  # its routes through the next-hop check again

    def submit_join(self, nb, fam, eor=True):
        """Queue: ``nb`` joins its update group for ``fam`` and receives the
        full table (then End-of-RIB, RFC 4724 §2).  Peers of one group that
        come up together (a restart, a reload) join in one batch: one dump,
        encoded once, the same bytes to each of them."""
        g = self.group_for(nb, fam)
        batch = self.pending_joins.get(g.key)
        if batch is not None and batch[0] is g:
            batch[1].append((nb, nb.epoch, eor))
            return
        batch = (g, [(nb, nb.epoch, eor)])
        self.pending_joins[g.key] = batch
        self.queue.submit(self.join(batch), heavy=True)

    def join(self, batch):
        g, joiners = batch
        if self.pending_joins.get(g.key) is batch:
            del self.pending_joins[g.key]  # from now on, later joiners queue a new batch
        live = self.groups.get(g.key)
        if live is None:
            self.add_group(g)  # it died while the join was queued
            live = g
        g = live
        fam = g.family
        joiners = [(nb, epoch, eor) for nb, epoch, eor in joiners
                   if nb.epoch == epoch and nb.established and not nb.removed]
        if not joiners:
            return
        for nb, _epoch, _eor in joiners:
            g.members[nb.pid] = nb
            nb.groups[fam] = g
        self.groups_changed()
        pids = {nb.pid for nb, _e, _r in joiners}
        sources = self.daemon.sources
        # The dump reads the RIB now (the first slice), with every change
        # exported so far; those still queued are not sent to the joiners.
        for pid in pids:
            self.dumped[(pid, fam)] = self.changes
        for part in self.table_parts(g, None):
            out = g.process(part, sources, members=pids)
            joiners = [(nb, epoch, eor) for nb, epoch, eor in joiners if nb.epoch == epoch and nb.groups.get(fam) is g]
            if out:
                distribute(g, out, [(nb.pid, nb) for nb, _e, _r in joiners])
            yield
        for nb, epoch, eor in joiners:
            if eor and nb.epoch == epoch:
                nb.end_of_rib_sent.add(fam)
                nb.send_messages([codec.build_eor(*fam)])

    def submit_redump(self, nb, fam, brackets=False, rejected_as_withdraw=False, rejoin=False):
        self.queue.submit(self.redump(nb, fam, nb.epoch, brackets, rejected_as_withdraw, rejoin), heavy=True)

    def redump(self, nb, fam, epoch, brackets, rejected_as_withdraw, rejoin):
        if nb.epoch != epoch or not nb.established or nb.removed:
            return
        g = nb.groups.get(fam)
        # What the member holds: what its group held when it left it (the
        # queue runs one item at a time, so nothing changes that group's
        # bits meanwhile).  A group it was the last member of stays out of
        # ``groups`` but keeps its bits until the dump is done.
        prior = g
        ghost = None
        # A soft reset out re-sends only what changed: the export the
        # member's table was sent with, fixed now (a reload between two
        # slices changes the groups' policies, not this).
        was = g.sent_by(nb.pid) if g is not None and rejected_as_withdraw else None
        if rejoin or g is None:
            held = None
            if g is not None:
                held = g.sent if g.send_max else None
                g.members.pop(nb.pid, None)
                if not g.members:
                    if self.groups.get(g.key) is g:
                        del self.groups[g.key]
                    ghost = g
            g = self.group_for(nb, fam)
            if held and g.send_max and not g.sent:
                g.sent = held  # best-N: what the member holds, so the dump withdraws what left
            g.members[nb.pid] = nb
            nb.groups[fam] = g
            self.groups_changed()
        try:
            if brackets:
                nb.send_messages([codec.build_route_refresh(fam[0], fam[1], RR_BORR)])
            yield from self.dump_to(nb, g, epoch, rejected_as_withdraw, prior, was)
            if brackets and nb.epoch == epoch:
                nb.send_messages([codec.build_route_refresh(fam[0], fam[1], RR_EORR)])
        finally:
            if prior is not None:
                prior.resent(nb.pid)
            if ghost is not None:
                ghost.release_held()

    def redump_all(self, nb):
        """Soft reset out (RFC 2918 spirit, without a refresh request): each
        family's group chosen again and its full table re-sent, routes the
        export now rejects withdrawn."""
        for fam in list(nb.groups):
            self.submit_redump(nb, fam, rejected_as_withdraw=True, rejoin=True)

    # -- full tables -----------------------------------------------------------------------------

    def table_delta(self, g, exclude, rejected_as_withdraw=False):
        """The whole table as a dump Delta for group ``g`` (the Loc-RIB, or
        for ADD-PATH every path of the Adj-RIBs-In), without the paths of
        peer ``exclude``.  Attribute ids are resolved now."""
        fam = g.family
        rib = self.daemon.ribs[fam]
        table = self.daemon.attrs
        items = []
        if g.addpath:
            # RFC 7911: every path of every peer, with our path ids.
            for spid, src in list(self.daemon.sources.items()):
                if spid == exclude or not rib.has_peer(spid):
                    continue
                rx = fam in src.addpath_rx
                for aid, packed in rib.dump_peer(spid, rx):
                    p2, attrs, nh = tag_source(table, aid)
                    items.append((p2, attrs, nh, rewrite_path_ids(packed, fam[0], rx, spid)))
        else:
            # Path hiding (RFC 7947 §2.3) sends a group's only member another
            # path for the prefixes whose best is its own: UpdateGroup.process.
            own_hiding = g.hiding is not None and len(g.members) == 1
            for aid, packed in rib.dump_best(exclude_peer=None if own_hiding else exclude):
                pid, attrs, nh = tag_source(table, aid)
                items.append((pid, attrs, nh, packed))
        return Delta(fam, items, [] if g.addpath else b"", addpath=g.addpath, dump=True,
                     rejected_as_withdraw=rejected_as_withdraw)

    def table_parts(self, g, exclude, rejected_as_withdraw=False):
        """The group's full table as dump Deltas of about SLICE_PREFIXES
        prefixes (see :meth:`table_delta`); for a best-N group ranked a
        slice at a time (the ranking is per prefix in Python)."""
        if not g.send_max:
            yield from slices(self.table_delta(g, exclude, rejected_as_withdraw))
            return
        # RFC 7911 §5: the best N of every prefix; what the member held
        # before (a refresh) and is no longer among them is withdrawn.
        fam = g.family
        rib = self.daemon.ribs[fam]
        table = self.daemon.attrs
        entries = []
        for _aid, packed in rib.dump_best():
            entries.extend(prefix_entries(packed, fam[0], False))
        gone = set(g.sent).difference(entries)
        step = BEST_N_SLICE
        for i in range(0, max(len(entries), 1), step):
            ranker = self.ranker(fam)
            ranked = {e: ranker.top(e, g.send_max) for e in entries[i:i + step]}
            if i + step >= len(entries):
                for e in gone:
                    ranked[e] = []  # no longer in the RIB: its ids are withdrawn
            delta = g.ranked_delta(ranked, table, exclude=exclude, dump=True)
            delta.rejected_as_withdraw = rejected_as_withdraw
            yield delta

    def dump_to(self, nb, g, epoch, rejected_as_withdraw, prior=None, was=None):
        """The group's Adj-RIB-Out for one member, in slices; ``prior``:
        the group whose bits say what the member holds, ``was``: the export
        it was sent with (soft reset out, see UpdateGroup.process)."""
        fam = g.family
        sources = self.daemon.sources
        for part in self.table_parts(g, nb.pid, rejected_as_withdraw):
            if nb.epoch != epoch or nb.groups.get(fam) is not g:
                return
            out = g.process(part, sources, single=True, exclude=nb.pid, prior=prior, was=was)
            nb.send_messages(out.common)
            if out.scoped:
                send_scoped(nb, out.scoped)
            yield


def slices(delta):
    """``delta`` cut into pieces of about SLICE_PREFIXES prefixes (whole
    attribute groups; withdrawals in the first piece)."""
    if delta.n and delta.n <= SLICE_PREFIXES or len(delta.announced) <= 1:
        yield delta
        return
    piece = []
    size = 0
    first = True
    afi = delta.family[0]
    for item in delta.announced:
        piece.append(item)
        size += len(item[3]) // (4 if afi == AFI_IPV4 else 8) + 1
        if size >= SLICE_PREFIXES:
            yield _piece(delta, piece, first)
            first = False
            piece = []
            size = 0
    if piece or first:
        yield _piece(delta, piece, first)


def _piece(delta, announced, first):
    """A slice of ``delta`` (the withdrawals go with the first)."""
    out = Delta(delta.family, announced, delta.withdrawn if first else ([] if delta.addpath else b""),
                delta.addpath, delta.rejected_as_withdraw, delta.dump)
    out.seq = delta.seq
    out.fresh = delta.fresh  # true of every part
    out.same_source = delta.same_source  # a set of prefixes: any part may look them up
    out.replaced = delta.replaced  # keyed by announced entry: each part finds its own
    return out


def joined(dumped, delta):
    """The members that joined (a table dump) after ``delta``'s change was
    made: the dump read the RIB with it, so they hold its end state (its
    announcements again would repeat what they hold, and they hold nothing
    it withdraws).  None when there are none.  ``dumped``: the exporter's
    {(member pid, family): change count at its dump}; entries older than
    ``delta`` go (changes are exported in order: none older is left)."""
    if not dumped or delta.seq is None:
        return None
    skip = set()
    for key, seq in list(dumped.items()):
        if key[1] != delta.family:
            continue
        if delta.seq <= seq:
            skip.add(key[0])
        else:
            del dumped[key]
    return skip or None


def export_part(groups, part, sources, skip):
    """``part`` of a change (a Delta) encoded by each of ``groups`` and
    queued to its members but those in ``skip``.  What the groups announce
    is marked held once per announcement for all of them (ExportBatch: one
    look-up per prefix, not one per group), before the next part, and what
    they export alike is encoded once."""
    marks = ExportBatch() if len(groups) > 1 else None  # one group: all as it goes
    try:
        for g in groups:
            if g.send_max:
                continue  # best-N groups: best_n_refresh
            out = g.process(part, sources, marks=marks)
            if out:
                distribute(g, out, skip=skip)
    finally:
        if marks is not None:
            marks.flush()


def distribute(g, out, targets=None, skip=None):
    """Queue a group's encoded messages to its members (or ``targets``,
    [(pid, member)]): the same list objects to each (see export._Out);
    none to the pids in ``skip`` (Exporter.joined)."""
    common, by_src, echo = out.common, out.by_src, out.echo
    for pid, m in (list(g.members.items()) if targets is None else targets):
        if skip and pid in skip:
            continue
        if common:
            m.send_messages(common)
        if by_src:
            for spid, msgs in by_src.items():
                if spid != pid:
                    m.send_messages(msgs)
            e = echo.get(pid)
            if e:
                m.send_messages(e)
        if out.scoped:
            send_scoped(m, out.scoped)


def send_scoped(m, scoped):
    """Our routes offered to some neighbours only (see export._Out)."""
    for addresses, msgs, withdrawals, to in scoped:
        if m.address in addresses:
            if msgs:
                m.send_messages(msgs)
        elif withdrawals and (to is None or m.address in to):
            m.send_messages(withdrawals)
