"""``[rpki]``: RPKI data for the daemon -- route origin validation (RFC 6811)
and ASPA path verification at import, re-validated when the data changes.

Owns: the published tables (one ``fastbgp.rpki.vrp.VrpTable`` and one
``fastbgp.rpki.aspa.AspaTable``), fed by an
:class:`fastbgp.rpki.client.RtrClient` over the configured caches and/or
the static JSON file (``fastbgp.rpki.files.load_into``, re-read on reload
and when its modification time changes, checked every FILE_POLL seconds).
Both report through the one observer interface,
:class:`fastbgp.rpki.client.RtrObserver`; with both configured each keeps
its own tables and the published ones are their union (:class:`SourceInput`).

Validation at import (called by ``fastbgp.daemon.importer``): every path
of every neighbour, one ``VrpTable.validate_packed`` per UPDATE and family
(the prefixes of an UPDATE share one AS_PATH, hence one origin, RFC 6811
§2), giving one state octet per prefix; the prefixes are then grouped by
state (nothing to do when they all agree, else ``partition_packed``:
compiled, one pass, no Python object per prefix) and each group goes
through the import policy (with its state in the policy context when the
chain has an ``rpki`` condition) and into the RIB with its state.  ASPA
verification (draft-ietf-sidrops-aspa-verification) depends on the AS_PATH
and the neighbour only, so it is computed once per attribute set, and only
for neighbours whose import chain has an ``aspa`` condition.

Per-path state: the RIB keeps one mark octet per path (``Rib.update``'s
``mark``: 0 not validated, else the state + 1, :func:`path_mark`) and
counts the marks per peer as paths come, change and go
(``Rib.peer_marks``), so the per-neighbour and total counts (API, CLI,
gauges) are read, never recounted.  ``fastbgp global rib`` shows the state
computed from the prefix and origin (``path_state``).

RFC 8097 signalling: while some iBGP neighbour has ``rpki-signal``, each
stored path carries its state in the origin validation state extended
community (``with_state``: once per attribute set and state, so attribute
sets split by state at most three ways); the export keeps it for the
update groups of those neighbours only (``fastbgp.rpki.community.export_ext``,
once per attribute set and group).  From an iBGP neighbour with
``rpki-accept-signal`` a received community gives the state instead of the
VRPs (``states``).

Incremental re-validation: every VRP added or removed marks its prefix in
a per-family "changed" table (a VrpTable holding the changed prefixes with
AS 0, which matches nothing: validating a route against it answers Invalid
exactly when a changed VRP covers it, ``fastbgp.rpki.vrp.covered_range``).
A task then re-imports, from the pre-policy Adj-RIB-In view the importer
keeps for every neighbour whose import chain uses ``rpki`` (every neighbour
while RFC 8097 signalling is on; ``fastbgp.daemon.prepolicy``: the
post-policy paths read back, plus those the policy rejected), only the
covered paths, and re-marks in the RIB
the covered paths of the other neighbours (``remark``: same attribute id,
new mark, nothing exported); the RIB update that follows changes nothing for paths whose policy
verdict is unchanged, and the normal export sends the rest.  An ASPA
change re-imports every path of the neighbours whose chain uses ``aspa``.
One neighbour and family are re-imported in one go (the snapshot of its
pre-policy paths must not outlive an UPDATE), then the loop runs.

Bounds: the changed tables hold at most the VRPs of the pending changes
(bounded by the client's MAX_PENDING records per response); the origin
memo at most ORIGIN_MEMO attribute sets (so are the RFC 8097 memos).

Calls: the daemon's ``ribs``, ``attrs``, ``sources``, ``speaker``,
``importer``.  Called by: the daemon (start, stop, reload), the importer
(``states``, ``context``), the views and the API (``info``, ``validate``,
``path_state``).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import time

from fastbgp.control import contract as ctl
from fastbgp.daemon.common import cancel_and_wait
from fastbgp.rib.export import IBGP, tag_source
from fastbgp.rpki import files as rpki_files
from fastbgp.rpki.aspa import STATE_NAMES as ASPA_NAMES
from fastbgp.rpki.aspa import AspaTable
from fastbgp.rpki.client import RtrClient, RtrObserver
from fastbgp.rpki.community import received_state, with_state
from fastbgp.rpki.origin import as_path_segments, origin_of_attrs
from fastbgp.rpki.vrp import INVALID, NOT_FOUND, ORIGIN_NONE, STATE_NAMES, VALID, VrpTable, path_mark, split_by_state
from fastbgp.wire import codec
from fastbgp.wire.constants import AFI_IPV4, ROLE_CUSTOMER, ROLE_RS_CLIENT
from fastbgp.wire.families import family_name

log = logging.getLogger("fastbgp.rpki")

FILE_POLL = 10.0  # seconds between checks of the JSON file's modification time
ORIGIN_MEMO = 1 << 16  # attribute sets whose origin AS is remembered
CONTEXT_MEMO = 1 << 12  # policy contexts (neighbour x state pair) kept
_WIDTH = {1: 32, 2: 128}
_FAMILY = {1: "ipv4", 2: "ipv6"}


def state_counts(marks):
    """{state name: paths} of a ``Rib.peer_marks`` tuple."""
    return {STATE_NAMES[s]: marks[s + 1] for s in (VALID, INVALID, NOT_FOUND)}


class SourceInput(RtrObserver):
    """Where one source (the RTR client or the file) writes its full data
    set.  Alone, it writes the published tables themselves (``other`` is
    None) and its reports go straight to the feed.  With a second source,
    each has its own tables and the published ones are their union: a VRP
    is published while either source has it, an ASPA customer's providers
    are the union of both records (RFC 8210 §10 lets a router combine
    caches; an rpki-client file is one more cache here)."""

    def __init__(self, feed, vrps, aspas):
        self.feed = feed
        self.vrps = vrps
        self.aspas = aspas
        self.other = None  # the other source's SourceInput when there are two

    def vrps_changed(self, added, removed):
        if self.other is None:
            self.feed.vrps_changed(added, removed)
            return
        pub, other = self.feed.vrps, self.other.vrps
        add = [v for v in added if pub.add(*v)]
        rem = [v for v in removed if not other.contains(*v) and pub.remove(*v)]
        if add or rem:
            self.feed.vrps_changed(add, rem)

    def aspas_changed(self, changed):
        if self.other is None:
            self.feed.aspas_changed(changed)
            return
        out = {}
        pub = self.feed.aspas
        for c in changed:
            mine, theirs = self.aspas.get(c), self.other.aspas.get(c)
            if mine is None and theirs is None:
                if pub.remove(c):
                    out[c] = None
            else:
                providers = (mine or frozenset()) | (theirs or frozenset())
                if pub.set(c, providers):
                    out[c] = tuple(sorted(providers))
        if out:
            self.feed.aspas_changed(out)


class RpkiFeed(RtrObserver):
    """The daemon's RPKI data and re-validation; see the module docstring."""

    def __init__(self, daemon, cfg):
        self.daemon = daemon
        self.cfg = cfg
        self.vrps = VrpTable()
        self.aspas = AspaTable()
        self.rtr_in = self.file_in = None
        self.layout()
        self.client = None
        self.file_mtime = None
        self.file_loaded = None
        self.file_error = None
        self.last_update = None  # wall clock of the last change of the tables
        self.revalidated = 0  # paths re-imported after RPKI changes
        self.origins = {}
        self.contexts = {}
        self.changed = {}  # afi -> VrpTable of changed VRP prefixes (AS 0)
        self.aspa_dirty = False
        self.task = None
        self.poller = None
        self.unmarked = True  # paths imported before [rpki] was on: one full pass at start
        # RFC 8097: some neighbour asked for the state community, so every
        # imported path carries its state in its attributes (see mark).
        self.signal = False
        self.resignal = False  # the flag changed: re-import every neighbour
        self.marked = {}  # (attrs, state) -> attrs with the community
        self.signalled = {}  # attrs -> state its RFC 8097 community carries

    # -- lifecycle -------------------------------------------------------------------------------

    def shape(self, cfg=None):
        cfg = cfg or self.cfg
        return bool(cfg.caches), bool(cfg.file)

    def layout(self):
        """The sources' tables: the published ones for a single source, own
        tables merged by SourceInput for two."""
        if all(self.shape()):
            self.rtr_in = SourceInput(self, VrpTable(), AspaTable())
            self.file_in = SourceInput(self, VrpTable(), AspaTable())
            self.rtr_in.other, self.file_in.other = self.file_in, self.rtr_in
        else:
            self.rtr_in = self.file_in = SourceInput(self, self.vrps, self.aspas)

    def start(self):
        """Load the file, start the RTR client (on the running loop)."""
        if self.cfg.file:
            self.load_file()
            self.poller = asyncio.get_running_loop().create_task(self.poll_file(), name="rpki-file")
        if self.cfg.caches:
            src = self.rtr_in
            self.client = RtrClient(self.cfg.caches, src, self.cfg.rtr_version, src.vrps, src.aspas)
            self.client.start()
        if self.unmarked:
            self.kick()

    async def stop_sources(self):
        if self.poller is not None:
            await cancel_and_wait(self.poller)
            self.poller = None
        if self.client is not None:
            await self.client.stop()
            self.client = None

    async def close(self):
        await self.stop_sources()
        if self.task is not None:
            await cancel_and_wait(self.task)
            self.task = None

    async def reconfigure(self, new):
        """A reload changed ``[rpki]``: restart the sources on the same
        tables (the data stays until a new full answer replaces it, so
        routes do not flap).  When a source is added or removed the tables
        start from nothing (reported, so re-validation follows); a pending
        re-validation carries on."""
        await self.stop_sources()
        old, self.cfg = self.cfg, new
        if self.shape(old) != self.shape(new):
            self.flush()
            self.layout()
        self.file_mtime = None
        self.start()

    def flush(self):
        """Every VRP and ASPA withdrawn (reported like a source would)."""
        removed = [(afi,) + e for afi in (1, 2) for e in self.vrps.entries(afi)]
        aspas = {c: None for c, _p in self.aspas.items()}
        for t in {id(x): x for x in (self.vrps, self.aspas, self.rtr_in.vrps, self.rtr_in.aspas,
                                     self.file_in.vrps, self.file_in.aspas)}.values():
            t.clear()
        if removed:
            self.vrps_changed([], removed)
        if aspas:
            self.aspas_changed(aspas)

    # -- the JSON file ---------------------------------------------------------------------------

    def load_file(self):
        """(Re-)read ``[rpki] file``; a bad file keeps the data as it was
        and is logged at WARNING with the reason."""
        path = self.cfg.file
        try:
            self.file_mtime = os.stat(path).st_mtime_ns
        except OSError:
            self.file_mtime = None
        try:
            src = self.file_in
            added, removed, changes = rpki_files.load_into(path, src.vrps, src.aspas, src)
        except rpki_files.RpkiFileError as exc:
            self.file_error = str(exc)
            log.warning("RPKI file not loaded, data unchanged: %s", exc)
            return False
        self.file_error = None
        self.file_loaded = time.time()
        log.info("RPKI file %s: %d VRPs added, %d removed, %d ASPA changes", path, len(added), len(removed),
                 len(changes))
        return True

    async def poll_file(self):
        while True:
            await asyncio.sleep(FILE_POLL)
            try:
                mtime = os.stat(self.cfg.file).st_mtime_ns
            except OSError:
                continue
            if mtime != self.file_mtime:
                self.load_file()

    # -- RtrObserver -----------------------------------------------------------------------------

    def vrps_changed(self, added, removed):
        self.last_update = time.time()
        # The tables are already changed when this is called, so a path
        # imported from now on is validated against them.  With no session
        # up (the first sync at start-up) no path is held, before or after
        # policy, so there is nothing to re-validate: building the
        # changed-prefix set would copy every VRP a second time (~40 MB for
        # 500k VRPs) only to find no route.  (Not "no path in the RIB": a
        # route rejected by an rpki condition lives only in the pre-policy
        # Adj-RIB-In and must be re-imported when its VRP changes.)
        if self.established():
            for afi, addr, plen, _maxlen, _asn in added:
                self.mark(afi, addr, plen)
            for afi, addr, plen, _maxlen, _asn in removed:
                self.mark(afi, addr, plen)
        else:
            log.info("RPKI change: %d VRPs added, %d removed; no session up, nothing to re-validate",
                     len(added), len(removed))
        self.kick()

    def aspas_changed(self, changed):
        self.last_update = time.time()
        self.aspa_dirty = True
        self.kick()

    def cache_changed(self, status):
        pass

    def mark(self, afi, addr, plen):
        t = self.changed.get(afi)
        if t is None:
            t = self.changed[afi] = VrpTable()
        t.add(afi, addr, plen, _WIDTH[afi], 0)

    # -- validation at import --------------------------------------------------------------------

    def origin(self, attrs):
        """RFC 6811 §2 origin AS of an attribute block (memoised)."""
        o = self.origins.get(attrs)
        if o is None:
            if len(self.origins) >= ORIGIN_MEMO:
                self.origins.clear()
            o = self.origins[attrs] = origin_of_attrs(attrs, self.daemon.asn)
        return o

    def identity_changed(self):
        """The daemon's AS changed (a reload): the RFC 6811 origin of an
        empty AS_PATH was the old one in the memo."""
        self.origins.clear()

    def states(self, afi, attrs, packed, addpath, nb=None):
        """One RFC 6811 state octet per prefix of ``packed``; from an iBGP
        neighbour configured with ``rpki-accept-signal``, the state its
        RFC 8097 community carries when there is one (like BIRD / Junos)."""
        if nb is not None and nb.cfg.rpki_accept_signal:
            src = self.daemon.sources.get(nb.pid)
            if src is not None and src.kind == IBGP:
                got = self.signalled.get(attrs, -1)
                if got == -1:
                    if len(self.signalled) >= ORIGIN_MEMO:
                        self.signalled.clear()
                    got = self.signalled[attrs] = received_state(attrs)
                if got is not None:
                    return bytes((got,)) * codec.count_prefixes(packed, afi, addpath)
        return self.vrps.validate_packed(afi, packed, self.origin(attrs), addpath)

    def plain_validation(self, nb):
        """How the import fast lane validates the UPDATEs of ``nb`` (without
        ADD-PATH) against our VRPs, as parts the lane step calls itself
        (one Python call less per UPDATE), looked up once per batch (the VRP
        table changes in place, only between batches):
        (the ``VrpTable``, the origin memo, ``origin``) -- the states of
        ``packed`` are ``table.validate_packed(afi, packed, memo.get(attrs)
        or origin(attrs))``, the memo read first (an origin may be 0); the
        compiled step calls the compiled table's ``states_api`` instead.
        None for a neighbour whose RFC 8097 community may give the state
        (``rpki-accept-signal``): ``validator`` then."""
        if nb.cfg.rpki_accept_signal:
            return None
        return self.vrps, self.origins, self.origin

    def validator(self, nb):
        """``states`` for the UPDATEs of an ``rpki-accept-signal`` neighbour
        ``nb`` as a function of (afi, attrs, packed) without ADD-PATH: the
        import fast lane's per-UPDATE call where plain_validation does not
        serve."""
        return lambda afi, attrs, packed: self.states(afi, attrs, packed, False, nb)

    def refresh_signal(self):
        """Whether some neighbour asks for RFC 8097 signalling (checked when
        a neighbour's policy is bound: a session start, a reload); when that
        changes every established neighbour is imported again so that the
        stored paths gain or lose their state community."""
        speaker = self.daemon.speaker
        nbs = list(speaker.neighbors.values()) if speaker is not None else ()
        signal = any(nb.cfg.rpki_signal for nb in nbs)
        if signal != self.signal:
            self.signal = signal
            self.marked.clear()
            for nb in nbs:
                self.daemon.importer.forget_lane(nb)  # its stored sets carry the state or not
            if any(nb.established for nb in nbs):
                self.resignal = True
                self.kick()
        return signal

    def with_state(self, attrs, state):
        """``attrs`` carrying ``state`` in an RFC 8097 community (once per
        attribute set and state; the export strips it for everyone but the
        iBGP peers that asked, fastbgp.rpki.community.export_ext)."""
        key = (attrs, state)
        out = self.marked.get(key)
        if out is None:
            if len(self.marked) >= ORIGIN_MEMO:
                self.marked.clear()
            out = self.marked[key] = with_state(attrs, state)
        return out

    def aspa_state(self, nb, attrs):
        """ASPA verification of a route from ``nb``: the downstream procedure
        for routes from a provider (our RFC 9234 role is customer), upstream
        otherwise; no neighbour check behind a transparent route server;
        iBGP routes were verified where they entered the AS (unknown)."""
        src = self.daemon.sources.get(nb.pid)
        if src is None or src.kind == IBGP:
            return "unknown"
        neg = nb.negotiated
        role = neg.local_role if neg is not None else None
        downstream = role == ROLE_CUSTOMER
        neighbor_as = None if role == ROLE_RS_CLIENT else src.peer_as
        state = self.aspas.verify(as_path_segments(attrs), downstream, neighbor_as)
        return ASPA_NAMES[state]

    def context(self, nb, attrs, state):
        """The policy context of a route from ``nb`` with RFC 6811 state
        ``state`` (None: the chain does not look at it)."""
        chain = nb.import_chain
        rpki = STATE_NAMES[state] if state is not None else None
        aspa = self.aspa_state(nb, attrs) if chain.uses_aspa else None
        key = (nb.pctx, rpki, aspa)
        c = self.contexts.get(key)
        if c is None:
            if len(self.contexts) >= CONTEXT_MEMO:
                self.contexts.clear()
            c = self.contexts[key] = nb.pctx.with_validation(rpki, aspa)
        return c

    # -- re-validation ---------------------------------------------------------------------------

    def kick(self):
        d = self.daemon
        if (self.task is None or self.task.done()) and d.started and d.loop is not None:
            self.task = d.loop.create_task(self.revalidate(), name="rpki-revalidate")

    def users(self, what):
        """Established neighbours whose import chain uses ``what``."""
        speaker = self.daemon.speaker
        out = []
        for nb in list(speaker.neighbors.values()) if speaker is not None else ():
            chain = nb.import_chain
            if nb.established and chain is not None and (getattr(chain, what) or
                                                          (what == "uses_rpki" and self.signal)):
                out.append(nb)
        return out

    async def revalidate(self):
        try:
            while self.changed or self.aspa_dirty or self.resignal or self.unmarked:
                if self.resignal:
                    self.resignal = False
                    for nb in self.established():
                        self.daemon.importer.soft_in(nb)
                        await asyncio.sleep(0)
                changed, self.changed = self.changed, {}
                aspa, self.aspa_dirty = self.aspa_dirty, False
                full, self.unmarked = self.unmarked, False
                t0 = time.perf_counter()
                n = 0
                done = set()
                if aspa:
                    for nb in self.users("uses_aspa"):
                        self.daemon.importer.forget_imports(nb)  # its verdicts hold the old ASPA results
                        for fam in list(self.daemon.ribs):
                            n += self.reimport(nb, fam, None)
                            await asyncio.sleep(0)
                        done.add(nb.pid)
                if changed or full:
                    rpki_users = {nb.pid for nb in self.users("uses_rpki")}
                    for nb in self.established():
                        if nb.pid in done:
                            continue
                        for fam in list(self.daemon.ribs):
                            delta = None if full else changed.get(fam[0])
                            if delta is None and not full:
                                continue
                            if nb.pid in rpki_users:
                                n += self.reimport(nb, fam, delta)
                            else:
                                n += self.remark(nb, fam, delta)
                            await asyncio.sleep(0)
                self.revalidated += n
                if changed or aspa:
                    log.info("RPKI change: %d paths re-validated in %.3f s", n, time.perf_counter() - t0)
                elif n:
                    log.info("RPKI: %d paths held before [rpki] started validated in %.3f s", n,
                             time.perf_counter() - t0)
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug here must not stop later re-validations
            log.exception("RPKI re-validation failed")

    def established(self):
        speaker = self.daemon.speaker
        return [nb for nb in (list(speaker.neighbors.values()) if speaker is not None else ()) if nb.established]

    @staticmethod
    def covered(delta, afi, packed, addpath):
        """(the prefixes of ``packed`` a VRP of ``delta`` covers, how many);
        all of them when ``delta`` is None."""
        if delta is None:
            return packed, codec.count_prefixes(packed, afi, addpath)
        # Covered by a changed VRP <=> "Invalid" against the changed
        # prefixes held with AS 0 (which no origin matches).
        cover = delta.validate_packed(afi, packed, ORIGIN_NONE, addpath)
        hit = len(cover) - cover.count(NOT_FOUND)
        if hit and hit != len(cover):
            packed = dict(split_by_state(cover, packed, addpath))[INVALID]
        return packed, hit

    def remark(self, nb, fam, delta):
        """A neighbour whose import does not depend on the state: its
        post-policy paths under a VRP of ``delta`` (all when None) get
        their new state in the RIB only (``Rib.set_mark``: not the
        attributes, age or RFC 4724 stale flag; nothing to export).  Returns
        how many paths."""
        rib = self.daemon.ribs.get(fam)
        if rib is None or not rib.has_peer(nb.pid):
            return 0
        n = 0
        addpath = self.addpath(nb, fam)
        for attrs, _nh, packed, addpath, hit in self._covered_paths(rib.dump_peer(nb.pid, addpath), nb, fam, delta):
            n += hit
            states = self.vrps.validate_packed(fam[0], packed, self.origin(attrs), addpath)
            for state, part in split_by_state(states, packed, addpath):
                rib.set_mark(nb.pid, part, addpath, path_mark(state))
        return n

    def reimport(self, nb, fam, delta):
        """Re-import the pre-policy paths of ``nb`` in ``fam`` that a VRP of
        ``delta`` covers (all of them when ``delta`` is None); returns how
        many.  Synchronous: the snapshot of the pre-policy paths is used
        before any other UPDATE can change them."""
        d = self.daemon
        view = d.importer.prepolicy  # fastbgp.daemon.prepolicy
        if not view.has_peer(nb.pid, fam) or not nb.established:
            return 0
        n = 0
        addpath = self.addpath(nb, fam)
        for attrs, nh, packed, addpath, hit in self._covered_paths(view.dump_peer(nb.pid, fam, addpath), nb, fam, delta):
            n += hit
            d.importer.announce_in(nb, fam, attrs, nh, packed, addpath, keep_pre=False)
        return n

    def addpath(self, nb, fam):
        src = self.daemon.sources.get(nb.pid)
        return src is not None and fam in src.addpath_rx

    def _covered_paths(self, groups, nb, fam, delta):
        """(attributes, next hop, packed prefixes, ADD-PATH, how many) of
        each (attribute id, packed prefixes) of ``nb`` in ``groups`` (a
        table's dump) for the prefixes a VRP of ``delta`` covers (all when
        None).  Read into a list first (the ids resolved too), so the caller
        may change the table while iterating."""
        d = self.daemon
        addpath = self.addpath(nb, fam)
        for (_pid, attrs, nh), packed in [(tag_source(d.attrs, aid), packed) for aid, packed in groups]:
            packed, hit = self.covered(delta, fam[0], packed, addpath)
            if hit:
                yield attrs, nh, packed, addpath, hit

    # -- what is shown ---------------------------------------------------------------------------

    def validate(self, prefix, asn):
        """RFC 6811 state name of ``prefix`` (text) originated by ``asn``."""
        net = ipaddress.ip_network(prefix, strict=False)
        afi = 1 if net.version == 4 else 2
        return STATE_NAMES[self.vrps.validate(afi, net.network_address.packed, net.prefixlen, asn)]

    def path_state(self, afi, prefix, attrs):
        """State name of one path (the views); ``prefix`` as text."""
        net = ipaddress.ip_network(prefix, strict=False)
        return STATE_NAMES[self.vrps.validate(afi, net.network_address.packed, net.prefixlen, self.origin(attrs))]

    def neighbor_counts(self, nb):
        """{state name: paths} of neighbour ``nb``'s post-policy Adj-RIB-In
        over every family: counters the RIB keeps per path as paths come,
        change state and go (``Rib.peer_marks``), so nothing is recounted."""
        out = {name: 0 for name in STATE_NAMES.values()}
        for rib in self.daemon.ribs.values():
            if rib.has_peer(nb.pid):
                for k, v in state_counts(rib.peer_marks(nb.pid)).items():
                    out[k] += v
        return out

    def route_counts(self):
        """{state name: paths} over every neighbour's post-policy
        Adj-RIB-In (every path, not only the best ones)."""
        out = {name: 0 for name in STATE_NAMES.values()}
        speaker = self.daemon.speaker
        for nb in list(speaker.neighbors.values()) if speaker is not None else ():
            for k, v in self.neighbor_counts(nb).items():
                out[k] += v
        return out

    def neighbor_rows(self):
        """[RpkiNeighborRoutes] per neighbour and family holding paths."""
        out = []
        speaker = self.daemon.speaker
        nbs = list(speaker.neighbors.values()) if speaker is not None else ()
        for fam, rib in sorted(self.daemon.ribs.items()):
            for nb in nbs:
                if rib.has_peer(nb.pid):
                    m = rib.peer_marks(nb.pid)
                    if any(m[1:]):
                        out.append(ctl.RpkiNeighborRoutes(
                            address=nb.address, family=family_name(fam), valid=m[VALID + 1],
                            invalid=m[INVALID + 1], not_found=m[NOT_FOUND + 1]))
        return out

    def info(self) -> ctl.RpkiInfo:
        caches = []
        if self.client is not None:
            for s in self.client.status():
                caches.append(ctl.RpkiCacheInfo(
                    address=s.address, port=s.port, preference=s.preference, state=s.state, version=s.version,
                    session_id=s.session_id, serial=s.serial, source=s.source, last_update=s.last_update,
                    last_error=s.last_error, refresh=s.refresh, retry=s.retry, expire=s.expire,
                    transport=s.transport))
        return ctl.RpkiInfo(
            enabled=True, caches=caches, file=self.cfg.file, file_loaded=self.file_loaded, file_error=self.file_error,
            vrps={_FAMILY[afi]: self.vrps.count(afi) for afi in (AFI_IPV4, 2)}, aspas=len(self.aspas),
            last_update=self.last_update, revalidated=self.revalidated, routes=self.route_counts(),
            neighbors=self.neighbor_rows())
