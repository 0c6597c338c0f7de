"""The import pipeline: received UPDATEs into the Adj-RIBs-In and Loc-RIB.

Owns: each UPDATE's way in -- RFC 7606 error counting, the families, loop
checks (RFC 4271 §9.1.2, RFC 4456 §8), RFC 9234 roles, the import policy
once per attribute set (cached on the neighbour; for a plain eBGP neighbour
through its :class:`~fastbgp.daemon.plain_import.PlainImport`), per-prefix
policy when the chain needs it -- and the upkeep of the pre-policy Adj-RIB-In
(:class:`~fastbgp.daemon.prepolicy.PrePolicy`, ``prepolicy``) kept for peers
without ROUTE-REFRESH and for RPKI re-validation.  Also the UPDATE latency observer of the
metrics, and soft reconfiguration inbound.

Calls: the daemon's shared state (``ribs``, ``attrs``, ``sources``,
``engine``, ``asn``, ``router_id``, ``cluster_id``, ``loop``), the
:class:`~fastbgp.daemon.exporter.Exporter` (every RIB change goes out
through ``export_cs``; ADD-PATH groups get ``addpath_delta``), the
:class:`~fastbgp.daemon.events.EventStream` while someone watches, and the
neighbour's session hooks (End-of-RIB, prefix limit, waiters).
Called by: the daemon's neighbours (``update_in``), the originator (``update_rib``), the peer
registry and reload (``bind_policy``, ``soft_in``).
"""

from __future__ import annotations

import ipaddress
import logging
import time

from fastbgp.session.fsm import State
from fastbgp.rib.export import IBGP, RS, source_tag, tag_source
from fastbgp.rib.route_server import allowed_next_hops
from fastbgp.rib.confed import is_loop as confed_is_loop, malformed as confed_malformed, of_config as confed_of_config
from fastbgp.rib.policy import PolicyContext
from fastbgp.wire import codec
from fastbgp.wire.as4 import PATH_CONFED, PATH_LOOP
from fastbgp.wire.codec import attr_values, path_has  # compiled when built (as4's otherwise)
from fastbgp.wire.constants import (
    ATTR_AS_PATH,
    ATTR_CLUSTER_LIST,
    ATTR_ORIGINATOR_ID,
    ATTR_OTC,
    FLAG_OPTIONAL,
    FLAG_TRANSITIVE,
    IPV4_UNICAST,
    ROLE_CUSTOMER,
    ROLE_PEER,
    ROLE_PROVIDER,
    ROLE_RS,
    ROLE_RS_CLIENT,
)
from fastbgp.wire.errors import ACTION_TREAT_AS_WITHDRAW, BGPError
from fastbgp.wire.families import family_name
from fastbgp.daemon.common import add_attr, next_hop_refused
from fastbgp.daemon import lanestep
from fastbgp.daemon.fastlane import MISS, PER_PREFIX, FastLane
from fastbgp.daemon.plain_import import SHAPE, PlainImport
from fastbgp.daemon.prepolicy import PrePolicy
from fastbgp.rpki.vrp import path_mark, split_by_state

# A child of the daemon's logger: what it says is about the prefixes this
# process imports (with ``workers = N``, each worker says it for its shard).
log = logging.getLogger("fastbgp.daemon.import")

# What import_eval reads of a new attribute set, in one walk (codec.attr_values).
_IMPORT_READS = (ATTR_AS_PATH, ATTR_ORIGINATOR_ID, ATTR_CLUSTER_LIST, ATTR_OTC)


def ended(nb, session) -> bool:
    """``session`` of ``nb`` is no longer the neighbour's Established one
    (an UPDATE just ended it: a prefix limit): nothing after it is processed."""
    return session.fsm.state is not State.ESTABLISHED or nb.session is not session


class Importer:
    """The import pipeline; see the module docstring for its contract."""

    def __init__(self, daemon, exporter, events):
        self.daemon = daemon
        self.exporter = exporter
        self.events = events
        # The pre-policy Adj-RIB-In (soft reconfiguration inbound, RPKI
        # re-validation, BMP); ``pre_ribs`` is its part the post-policy RIB
        # cannot give back (fastbgp.daemon.prepolicy).
        self.prepolicy = PrePolicy(daemon)
        self.pre_ribs: dict = self.prepolicy.ribs
        self.observe = None
        self.fast_updates = 0  # UPDATEs the fast lane took (fastbgp.daemon.fastlane)
        self.calls = 0  # update_in / updates_in calls: the import's activity (fastbgp.daemon.trim)
        # The lane's per-UPDATE step: the selected implementation's module
        # (fastbgp.daemon.lanestep: Step, take, take_raw, raw_key); tests
        # set each implementation in turn.
        self.lane_step = lanestep
        self.setup_observe(daemon.config)

    def setup_observe(self, config):
        """UPDATE processing latency for the Prometheus histogram; only worth
        the imports (aiohttp, prometheus_client) when metrics are served."""
        self.observe = None
        if config.global_.metrics.listen:
            try:
                from fastbgp.control.metrics import observe_update_latency

                self.observe = observe_update_latency
            except ImportError:  # pragma: no cover - prometheus_client missing
                pass

    def bind_policy(self, nb):
        """Resolve the neighbour's import chain and context in the current
        engine (again after a reload)."""
        nb.import_chain = self.daemon.engine.chain(nb.cfg, "import")
        nb.import_cache = {}
        self.forget_lane(nb)  # its verdicts came from the old chain
        local = nb.connection.local_address if nb.connection is not None else nb.cfg.local_address
        nb.pctx = PolicyContext(nb.address, nb.cfg.peer_as, nb.cfg.local_as, local_address=local)
        nb.own_next_hops = self.own_next_hops(local)
        rpki = self.daemon.rpki
        signal = rpki is not None and rpki.refresh_signal()
        if nb.import_chain.uses_rpki or nb.import_chain.uses_aspa or signal:
            # RPKI re-validation re-imports from the pre-policy copy
            # (fastbgp.daemon.rpki_feed), whatever ROUTE-REFRESH offers.
            nb.pre_policy = True

    def forget_lane(self, nb):
        """Drop what the import fast lane remembers of ``nb``'s attribute
        sets across batches (fastbgp.daemon.fastlane.LaneMemo) and the
        references it holds: when the session ends, and whenever a verdict
        it remembers may no longer hold (a new import chain, the import
        cache cleared, the RFC 8097 flag changed)."""
        memo = nb.lane_memo
        if memo is not None:
            nb.lane_memo = None
            memo.drop(self.daemon.attrs)

    def forget_imports(self, nb):
        """The import cache's verdicts of ``nb`` no longer hold (the ASPA
        data they saw changed): forgotten, with the lane's."""
        nb.import_cache.clear()
        self.forget_lane(nb)

    def own_next_hops(self, local):
        """(IPv4 NEXT_HOP values, MP_REACH next hops) that are our own
        addresses on a session: its local address and the router id, packed
        once per session so that each UPDATE costs one set lookup."""
        packed = {ipaddress.IPv4Address(self.daemon.router_id).packed}
        try:
            if local is not None:
                packed.add(ipaddress.ip_address(local).packed)
        except ValueError:
            pass
        return frozenset(p for p in packed if len(p) == 4), frozenset(packed)

    # -- one UPDATE ------------------------------------------------------------------------------

    def update_in(self, nb, session, parsed):
        self.calls += 1
        observe = self.observe
        if observe is None:
            # Metrics off: not even a clock read per UPDATE.
            self.process_update(nb, session, parsed)
            return
        t0 = time.perf_counter()
        self.process_update(nb, session, parsed)
        self.observe_latency(session, t0, 1)

    def observe_latency(self, session, t0, n):
        """``n`` UPDATEs' processing latency for the metrics: from their
        being framed (at the latest when their burst arrived) to their
        routes being in the RIB and queued for export."""
        conn = session.conn
        queued = self.daemon.loop.time() - conn.last_rx if conn is not None and conn.last_rx else 0.0
        spent = max(time.perf_counter() - t0, queued)
        for _ in range(n):
            self.observe(spent)

    def updates_in(self, nb, session, parsed_list) -> int:
        """UPDATEs received in a row (Sink.updates_received): each as
        update_in would, plain announcements whose attribute set the import
        cache already knows straight into the RIB (fastbgp.daemon.fastlane).
        Stops after an UPDATE that ended the session (prefix limit);
        returns how many were processed."""
        self.calls += 1
        t0 = time.perf_counter() if self.observe is not None else 0.0
        lane = FastLane.of(self, nb, session)
        steps = self.lane_step
        take = steps.take
        st = steps.Step(lane) if lane is not None else None
        if type(parsed_list) is not list:
            parsed_list = list(parsed_list)  # the compiled step reads a list
        n = len(parsed_list)
        i = 0
        try:
            while i < n:
                if lane is not None:
                    # The lane's run of UPDATEs (fastbgp.daemon._lanestep_py):
                    # up to the first one it does not take, or one at a
                    # time with a prefix limit.
                    j = take(st, parsed_list, i)
                    if j > i:
                        self.fast_updates += j - i
                        i = j
                        if lane.limits and ended(nb, session):
                            break
                        continue
                    lane.flush()  # in order: the general path sees the RIB as UPDATE by UPDATE
                self.process_update(nb, session, parsed_list[i])
                i += 1
                if ended(nb, session):
                    break
        finally:
            if lane is not None:
                lane.close()
        done = i
        if self.observe is not None:
            self.observe_latency(session, t0, done)
        return done

    def bodies_in(self, nb, session, lane, bodies, handled):
        """UPDATE bodies received in a row, not parsed, with the batch's
        ``lane`` (DaemonRoutes.bodies_received, when FastLane.of gives one;
        the contract is RouteSink.bodies_received): as updates_in for their
        parses, but the
        lane's ``take_raw`` takes the plain announcements from the bodies
        -- without a parse when it knows their key (their octets less
        their prefixes), else parsing them itself -- and only the bodies it
        does not take are handled here, one at a time (the parse it made,
        or a parse here; ``handled(parsed)`` for those with errors the
        codec handled).  Returns the codec's error for the first body it
        refused, else None; stops after an UPDATE that ended the session."""
        t0 = time.perf_counter() if self.observe is not None else 0.0
        steps = self.lane_step
        take, take_raw = steps.take, steps.take_raw
        st = steps.Step(lane)
        parse, ctx = codec.parse_update, session.ctx
        if type(bodies) is not list:
            bodies = list(bodies)  # the compiled step reads a list
        n = len(bodies)
        i = 0
        error = None
        try:
            while i < n:
                j, p = take_raw(st, bodies, i, parse, ctx)
                if j > i:
                    self.fast_updates += j - i
                    i = j
                    if lane.limits and ended(nb, session):
                        break
                    if p is None:
                        continue  # the end, a prefix limit's stop, or a body to look at again
                # bodies[i] is not the lane's: ``p`` its parse when the step made one.
                fresh = p is None
                if fresh:
                    try:
                        p = parse(bodies[i], ctx)
                    except BGPError as exc:
                        error = exc
                        break
                if p.errors:
                    handled(p)
                if fresh and take(st, [p], 0):
                    self.fast_updates += 1  # a body of no key the lane knows how to take
                else:
                    lane.flush()  # in order: the general path sees the RIB as UPDATE by UPDATE
                    self.process_update(nb, session, p)
                i += 1
                if ended(nb, session):
                    break
        finally:
            lane.close()
        if self.observe is not None:
            self.observe_latency(session, t0, i)
        return error

    def process_update(self, nb, session, parsed):
        c = nb.counters
        ribs = self.daemon.ribs
        fams = session.negotiated.families
        rx = session.ctx.addpath_rx
        own4, own_mp = nb.own_next_hops
        ours = 0  # prefixes ignored: their next hop is one of our addresses
        if parsed.n_withdrawn:
            c.received.withdraw_update += 1
            c.received.withdraw_prefix += parsed.n_withdrawn
        touched = None
        # A worker of a sharded daemon (fastbgp.daemon.front) handles only
        # its shard's prefixes (Rib.own; unsharded: all of them), everywhere,
        # not only in the RIB: the ADD-PATH export of the Adj-RIB-In change,
        # path hiding, RPKI.
        wd = ribs[IPV4_UNICAST].own(parsed.withdrawn, IPV4_UNICAST in rx)
        if wd:
            self.withdraw_in(nb, IPV4_UNICAST, wd, IPV4_UNICAST in rx)
        mpu = parsed.mp_unreach
        if mpu is not None and mpu[2]:
            fam = (mpu[0], mpu[1])
            if fam in fams and fam in ribs:
                wd = ribs[fam].own(mpu[2], fam in rx)
                if wd:
                    self.withdraw_in(nb, fam, wd, fam in rx)
            else:
                c.received.discarded += 1
        twd = parsed.action == ACTION_TREAT_AS_WITHDRAW
        if parsed.nlri:
            if IPV4_UNICAST in fams:
                touched = IPV4_UNICAST
                nlri = ribs[IPV4_UNICAST].own(parsed.nlri, IPV4_UNICAST in rx)
                if not nlri:
                    pass  # every prefix is another worker's
                elif twd:
                    self.withdraw_in(nb, IPV4_UNICAST, nlri, IPV4_UNICAST in rx)
                elif parsed.next_hop in own4:
                    # RFC 4271 §6.3: a NEXT_HOP that is our own address is
                    # semantically incorrect; the route is not installed.
                    ours += self.ignore_own(nb, IPV4_UNICAST, nlri, IPV4_UNICAST in rx)
                else:
                    self.announce_in(nb, IPV4_UNICAST, parsed.attrs, b"", nlri, IPV4_UNICAST in rx)
            else:
                c.received.discarded += 1
        mpr = parsed.mp_reach
        if mpr is not None and mpr[3]:
            fam = (mpr[0], mpr[1])
            if fam not in fams or fam not in ribs:
                # RFC 4760 §6: a family that was not negotiated is ignored.
                c.received.discarded += 1
                nlri = b""
            else:
                touched = fam
                nlri = ribs[fam].own(mpr[3], fam in rx)
            if nlri:
                nh = bytes(mpr[2])
                if twd:
                    self.withdraw_in(nb, fam, nlri, fam in rx)
                elif next_hop_refused(nb.cfg, fam, nh):
                    # RFC 8950 §4, a next hop we cannot use: treat-as-withdraw,
                    # as for any unusable next hop (RFC 7606 §7.3; BIRD does so).
                    self.withdraw_in(nb, fam, nlri, fam in rx)
                    c.treat_as_withdraw += 1
                    nb.warn_repeated(log, "rfc8950", "%s: UPDATE with IPv4 routes and an IPv6 next hop, but we did "
                                     "not advertise the Extended Next Hop capability (RFC 8950 §4; extended-next-hop "
                                     "= true takes them): handled as withdrawn (RFC 7606)", nb.address)
                elif nh[:16] in own_mp:
                    # RFC 4271 §6.3 (the global next hop of RFC 2545 §3 for IPv6).
                    ours += self.ignore_own(nb, fam, nlri, fam in rx)
                else:
                    self.announce_in(nb, fam, parsed.attrs, nh, nlri, fam in rx)
        if ours:
            c.own_next_hop += ours
            nb.warn_repeated(log, "own-next-hop", "%s: UPDATE with our own address as next hop: %d prefixes "
                             "ignored (RFC 4271 §6.3)", nb.address, ours)
        if parsed.is_eor:
            nb.eor_received(IPV4_UNICAST if mpu is None else (mpu[0], mpu[1]))
        if touched is not None and nb.cfg.prefix_limit:
            if self.over_limit(nb, session, touched, nb.cfg.prefix_limit.get(family_name(touched))):
                return
        if self.events.watchers:
            self.events.update_received(nb, parsed)

    def over_limit(self, nb, session, fam, lim):
        """RFC 4486 Cease 6/1 when the neighbour holds more than ``lim``
        (its ``prefix-limit`` for ``fam``, None: none) paths of ``fam``;
        True when the session was ended."""
        if lim is None:
            return False
        count = self.daemon.ribs[fam].peer_path_count(nb.pid)
        counts = self.daemon.counts
        if counts is not None:
            # A worker of ``workers = N``: the limit is on every shard's
            # paths (fastbgp.daemon.shared_counts).
            count = counts.total(nb.address, fam, count)
        if count <= lim.max:
            return False
        nb.config.prefix_limit_restart = float(lim.restart_after) or None
        nb.prefix_limit_exceeded(session, fam, lim.max)
        return True

    def ignore_own(self, nb, fam, packed, addpath):
        """Prefixes whose next hop is ours: not reachable through this peer,
        so handled as withdrawn (an earlier path of theirs goes too).
        Returns how many."""
        self.withdraw_in(nb, fam, packed, addpath)
        return codec.count_prefixes(packed, fam[0], addpath)

    # -- import policy ---------------------------------------------------------------------------

    def import_(self, nb, fam, attrs, nh, state=None, key=None):
        """(attrs, next hop) to store, None (rejected), or PER_PREFIX;
        computed once per attribute set and peer (and RFC 6811 ``state``
        when the chain looks at it, see announce_in).  ``key``: the tuple
        (fam, attrs, nh, state) when the caller holds one (the fast lane's
        memo key), kept instead of a new one."""
        if key is None:
            key = (fam, attrs, nh, state)
        hit = nb.import_cache.get(key, MISS)
        if hit is not MISS:
            return hit
        if len(nb.import_cache) > 65536:
            nb.import_cache.clear()
        try:
            res = self.import_eval(nb, fam, attrs, nh, state)
        except Exception:
            log.exception("%s: import of an attribute set failed; treated as withdrawn", nb.address)
            res = None
        nb.import_cache[key] = res
        return res

    def confed_reject(self, nb, src, path):
        """RFC 5065 §5: an AS_PATH malformed at the confederation boundary
        (treat-as-withdraw, RFC 7606 §7.2), or, in a confederation, a loop
        (RFC 5065 §5.2; the check above covers a path without one).  Once
        per attribute set (the import cache).  ``path``: the AS_PATH value
        (b"" when absent)."""
        confed = confed_of_config(self.daemon.config.global_)
        if confed is None and src.kind == IBGP:
            return False
        reason = None
        if src.kind != IBGP:
            reason = confed_malformed(path, confed is not None and confed.is_peer(src.peer_as))
        if reason is None and confed is not None and confed_is_loop(path, confed):
            reason = "confederation loop"
        if reason is not None:
            log.info("%s: %s; treated as withdrawn (RFC 5065 §5)", nb.address, reason)
            return True
        return False

    def import_eval(self, nb, fam, attrs, nh, state=None):
        cache = nb.import_cache
        plain = cache.get(SHAPE, MISS)
        if plain is MISS:
            # Once per import cache: what of the steps below this
            # neighbour's sets can need (fastbgp.daemon.plain_import).
            plain = cache[SHAPE] = PlainImport.of(self, nb)
        if plain is not None:
            res = plain.verdict(fam, attrs, nh, state)
            if res is not MISS:
                return res
        d = self.daemon
        src = d.sources.get(nb.pid)
        # One attribute of each type in a canonical block (RFC 7606 §3 g).
        path, originator, clusters, otc = attr_values(attrs, _IMPORT_READS)
        confed_segs = False
        if src.kind == IBGP:
            # RFC 4456 §8: our own route reflected back to us, or our
            # CLUSTER_ID in the list: a loop.
            if originator is not None and int.from_bytes(originator, "big") == int(ipaddress.IPv4Address(d.router_id)):
                return None
            cid = d.cluster_id
            if clusters is not None and any(clusters[i : i + 4] == cid for i in range(0, len(clusters) - 3, 4)):
                return None
        elif path is not None:
            # RFC 4271 §9.1.2: a path holding our own AS is a loop.
            held = path_has(attrs, (nb.local_as, d.asn))
            if held == PATH_LOOP:
                return None
            confed_segs = held == PATH_CONFED
        # RFC 5065 §5: only a confederation member, or a path holding
        # confederation segments, has anything confed_reject can refuse.
        if (confed_segs or confed_of_config(d.config.global_) is not None) and \
                self.confed_reject(nb, src, path or b""):
            return None
        rsp = d.engine.route_server
        if rsp is not None and src.kind == RS and not rsp.import_check(
                nb.address, allowed_next_hops(nb.address, nb.cfg.route_server_next_hops), attrs, nh):
            return None  # IXP next-hop check (fastbgp.rib.route_server)
        neg = nb.negotiated
        role = neg.local_role if neg is not None else None
        if role is not None and src.kind != IBGP:
            # RFC 9234 §5 (ingress): OTC from a customer or RS client, or an
            # OTC other than the peer's AS from a lateral peer, is a leak;
            # routes from providers, peers and route servers get OTC added.
            if otc is not None and (role in (ROLE_PROVIDER, ROLE_RS) or
                                    (role == ROLE_PEER and int.from_bytes(otc, "big") != src.peer_as)):
                return None
            if otc is None and role in (ROLE_CUSTOMER, ROLE_RS_CLIENT, ROLE_PEER):
                attrs = add_attr(attrs, ATTR_OTC, FLAG_OPTIONAL | FLAG_TRANSITIVE, src.peer_as.to_bytes(4, "big"))
        chain = nb.import_chain
        if not chain.policies and chain.default_accept:
            return (attrs, nh)
        ctx = nb.pctx
        if (chain.uses_rpki or chain.uses_aspa) and d.rpki is not None:
            ctx = d.rpki.context(nb, attrs, state)  # the states for the rpki / aspa conditions
        if chain.prefix_dependent:
            return (PER_PREFIX, attrs, nh, ctx)
        # Once per set and neighbour: the import cache (import_) keeps the verdict.
        v = d.engine.evaluate_group(chain, attrs, ctx, fam[0], "import", cached=False)
        if v is None:
            return None
        out_nh = nh
        if fam != IPV4_UNICAST and isinstance(v.next_hop, bytes) and len(v.next_hop) == 16:
            out_nh = v.next_hop
        return (v.attrs, out_nh)

    # -- into the RIBs ---------------------------------------------------------------------------

    def withdraw_in(self, nb, fam, packed, addpath):
        self.prepolicy.withdraw(nb.pid, fam, packed, addpath)
        rib = self.daemon.ribs[fam]
        exporter = self.exporter
        if exporter.addpath_groups(fam):
            exporter.addpath_delta(fam, nb.pid, None, None, packed, addpath)
        cs = rib.withdraw(nb.pid, packed, addpath)
        exporter.export_cs(fam, cs)
        exporter.hiding_touch(fam, nb.pid, packed, addpath, None, cs)  # RFC 7947 §2.3

    def announce_in(self, nb, fam, attrs, nh, packed, addpath, keep_pre=True):
        """Prefixes ``packed`` received with (``attrs``, ``nh``) through
        import policy into the RIBs; ``keep_pre`` False: a re-import from
        the pre-policy view itself (soft-in, RPKI re-validation)."""
        pre = None if not nb.pre_policy else (not keep_pre)  # PrePolicy.store's ``again``
        rpki = self.daemon.rpki
        if rpki is not None:
            # RFC 6811: one bulk validation per UPDATE (one origin), then
            # the prefixes grouped by state, each group through policy and
            # into the RIB with its state (every path of every neighbour,
            # counted per neighbour by the RIB: Rib.peer_marks).
            states = rpki.states(fam[0], attrs, packed, addpath, nb)
            for state, part in split_by_state(states, packed, addpath):
                self.announce_post(nb, fam, attrs, nh, part, addpath, state, pre)
            return
        self.announce_post(nb, fam, attrs, nh, packed, addpath, None, pre)

    def announce_post(self, nb, fam, attrs, nh, packed, addpath, state, pre=None):
        """Import policy and the post-policy Adj-RIB-In / Loc-RIB for
        prefixes sharing one attribute set (and RFC 6811 ``state``); ``pre``
        not None: the pre-policy view's upkeep too (PrePolicy.store's
        ``again``)."""
        pid = nb.pid
        table = self.daemon.attrs
        # The chain sees the state only when it asks (one cache entry per
        # attribute set otherwise).
        seen = state if nb.import_chain.uses_rpki else None
        res = nb.import_cache.get((fam, attrs, nh, seen), MISS)  # import_'s cache, hit inline
        if res is MISS:
            res = self.import_(nb, fam, attrs, nh, seen)
        if res is None:
            if pre is not None:
                self.prepolicy.store(pid, fam, attrs, nh, packed, addpath, None, pre)
            self.withdraw_post(nb, fam, packed, addpath)
            return
        if res[0] is PER_PREFIX:
            self.announce_per_prefix(nb, fam, res[1], res[2], packed, addpath, res[3], state, (attrs, nh, pre))
            return
        out, out_nh = res
        out = self.signal_state(out, state)
        aid = table.intern(out, source_tag(pid, out_nh))
        try:
            if pre is not None:
                self.prepolicy.store(pid, fam, attrs, nh, packed, addpath, aid, pre)
            if self.exporter.addpath_groups(fam):
                self.exporter.addpath_delta(fam, pid, out, out_nh, packed, addpath)
            self.update_rib(fam, pid, packed, addpath, aid, path_mark(state))
        finally:
            table.release(aid)

    def signal_state(self, attrs, state):
        """RFC 8097: while some iBGP neighbour asks for it, a path's RFC
        6811 state rides in its stored attributes (one attribute set per
        state; the export removes it for everyone else)."""
        rpki = self.daemon.rpki
        if state is None or rpki is None or not rpki.signal:
            return attrs
        return rpki.with_state(attrs, state)

    def update_rib(self, fam, pid, packed, addpath, aid, mark=0):
        """Rib.update and export (see export_grown)."""
        rib = self.daemon.ribs[fam]
        before = len(rib)
        cs = rib.update(pid, packed, addpath, aid, mark=mark)
        self.export_grown(fam, rib, before, cs, pid)
        self.exporter.hiding_touch(fam, pid, packed, addpath, aid, cs)  # RFC 7947 §2.3: non-best paths

    def update_rib_many(self, fam, pid, runs):
        """Rib.update_many of ``runs`` (the fast lane's deferred batch, see
        fastbgp.daemon.fastlane), one export, then RFC 7947 §2.3 path hiding
        for the runs' non-best paths."""
        rib = self.daemon.ribs[fam]
        before = len(rib)
        cs = rib.update_many(pid, runs)
        self.export_grown(fam, rib, before, cs, pid)
        # The runs hold every prefix of the UPDATEs; in a worker path hiding
        # must see only this shard's (the RIB skipped the others itself).
        # The RIB counted them: the runs are only filtered when there is
        # hiding to do.
        self.exporter.hiding_touch_many(fam, pid, runs, cs, rib=rib)

    def export_grown(self, fam, rib, before, cs, pid):
        """Export ``cs``, made by ``pid``'s paths in ``rib`` (``before``
        prefixes until then).  When the table grew by exactly the number of
        prefixes whose best path changed, every one of them is new: no peer
        can hold an older route for them, so neither the withdrawals of what
        an export rejects nor the split-horizon withdrawals to the source
        are needed (a first full table costs no extra message)."""
        self.exporter.export_cs(fam, cs, fresh=bool(cs) and len(rib) - before == cs.n_announced, source=pid)

    def withdraw_post(self, nb, fam, packed, addpath):
        """Rejected by import: out of the post-policy Adj-RIB-In (the
        pre-policy copy keeps it)."""
        exporter = self.exporter
        if exporter.addpath_groups(fam):
            exporter.addpath_delta(fam, nb.pid, None, None, packed, addpath)
        cs = self.daemon.ribs[fam].withdraw(nb.pid, packed, addpath)
        exporter.export_cs(fam, cs)
        exporter.hiding_touch(fam, nb.pid, packed, addpath, None, cs)  # RFC 7947 §2.3

    def announce_per_prefix(self, nb, fam, attrs, nh, packed, addpath, ctx=None, state=None, received=None):
        """The import chain has prefix conditions: evaluate each prefix,
        then store the prefixes grouped by result.  ``received``: (attrs,
        next hop, ``again``) for the pre-policy view's upkeep, or None."""
        afi = fam[0]
        engine = self.daemon.engine
        ctx = ctx or nb.pctx
        buckets = {}
        for rx_id, addr, plen in codec.unpack_prefixes(packed, afi, addpath):
            v = engine.evaluate(nb.import_chain, "import", (afi, addr, plen), attrs, ctx)
            if v is None:
                key = None
            else:
                out_nh = nh
                if fam != IPV4_UNICAST and isinstance(v.next_hop, bytes) and len(v.next_hop) == 16:
                    out_nh = v.next_hop
                key = (self.signal_state(v.attrs, state), out_nh)
            entry = bytes((plen,)) + addr[: (plen + 7) >> 3]
            if addpath:
                entry = rx_id.to_bytes(4, "big") + entry
            buckets.setdefault(key, []).append(entry)
        table = self.daemon.attrs
        keep = received is not None and received[2] is not None
        for key, entries in buckets.items():
            pk = b"".join(entries)
            if key is None:
                if keep:
                    self.prepolicy.store(nb.pid, fam, received[0], received[1], pk, addpath, None, received[2])
                self.withdraw_post(nb, fam, pk, addpath)
                continue
            aid = table.intern(key[0], source_tag(nb.pid, key[1]))
            try:
                if keep:
                    self.prepolicy.store(nb.pid, fam, received[0], received[1], pk, addpath, aid, received[2])
                if self.exporter.addpath_groups(fam):
                    self.exporter.addpath_delta(fam, nb.pid, key[0], key[1], pk, addpath)
                self.update_rib(fam, nb.pid, pk, addpath, aid, path_mark(state))
            finally:
                table.release(aid)

    # -- soft reconfiguration inbound ------------------------------------------------------------

    def soft_in(self, nb):
        """Re-run import policy: ROUTE-REFRESH to the peer (RFC 2918) when it
        supports it, else re-import the stored pre-policy Adj-RIB-In."""
        self.bind_policy(nb)
        neg = nb.negotiated
        if neg is not None and neg.route_refresh:
            for fam in sorted(neg.families):
                if fam in self.daemon.ribs:
                    nb.request_refresh(fam)
            return
        view = self.prepolicy
        for fam in list(self.daemon.ribs):
            if not view.has_peer(nb.pid, fam):
                continue
            addpath = fam in self.daemon.sources[nb.pid].addpath_rx
            # Read before re-importing: the re-import changes the view.
            got = [(tag_source(self.daemon.attrs, aid), packed) for aid, packed in view.dump_peer(nb.pid, fam, addpath)]
            for (_pid, attrs, nh), packed in got:
                self.announce_in(nb, fam, attrs, nh, packed, addpath, keep_pre=False)
