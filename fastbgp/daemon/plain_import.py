"""The import verdict of the commonest neighbour, without the general walk.

``Importer.import_eval`` works out, once per attribute set of a neighbour,
what the set becomes after the import checks and the import chain.  A
table brings tens of thousands of sets, and for most neighbours that work
is the same few steps every time: an eBGP session outside any
confederation, without a BGP role or the route-server next-hop check,
whose chain reads no attribute and no prefix (accept all, or conditions on
the neighbour, the family and the RFC 6811 state, such as RFC 8893's
"drop invalid").  Then a set's verdict is

* rejected when its AS_PATH holds our AS or the session's local AS
  (RFC 4271 §9.1.2), one compiled walk (``codec.path_has``);
* else the chain's plan for (context, family) replayed on the block
  (``PolicyEngine.group_plan`` / ``replay_block``, codec.replay_edits).

:class:`PlainImport` is that, worked out for one neighbour when its import
cache starts (it is kept in that cache, so it goes whenever the cache's
verdicts go: a reload, a new session, new ASPA data).  Everything else it
leaves to the general path by answering MISS: a path with a confederation
segment (RFC 5065 §5), a chain without a plan, a block the replay cannot
edit.  Its answer is always the general path's (tests/test_plain_import.py
holds the two to the same sets).

Owns: nothing beyond one neighbour's import cache entry.  Calls: the
daemon's policy engine, RPKI feed (contexts) and the codec.  Called by:
fastbgp.daemon.importer (``import_eval``).
"""

from __future__ import annotations

from fastbgp.rib.confed import of_config as confed_of_config
from fastbgp.rib.export import IBGP, RS
from fastbgp.rib.policy import NOT_REPLAYED
from fastbgp.wire.as4 import PATH_CONFED, PATH_LOOP
from fastbgp.wire.codec import path_has  # compiled when built (as4's otherwise)
from fastbgp.daemon.fastlane import MISS

__all__ = ["PlainImport", "SHAPE"]

# The import cache's key for its neighbour's PlainImport (or None: the
# general path for every set); no (family, attrs, next hop, state) key
# equals it.
SHAPE = object()


class PlainImport:
    """One neighbour's import verdicts in the plain case (module docstring).

    ``verdict`` answers what ``Importer.import_eval`` would, or MISS for
    the general path.  ``plans`` keeps the chain's plan per (RFC 6811 state
    as the chain sees it, AFI): at most 4 x 2 entries."""

    __slots__ = ("nb", "engine", "chain", "rpki", "asns", "accept_all", "plans")

    @classmethod
    def of(cls, importer, nb):
        """The plain import of ``nb`` as the daemon stands, or None when
        some step of the general path may apply to its sets."""
        d = importer.daemon
        src = d.sources.get(nb.pid)
        chain = nb.import_chain
        if src is None or chain is None or src.kind == IBGP:
            return None  # RFC 4456 §8 checks, or no session yet
        if confed_of_config(d.config.global_) is not None:
            return None  # RFC 5065 §5: confed_reject looks at every path
        if src.kind == RS and d.engine.route_server is not None:
            return None  # the IXP next-hop check (fastbgp.rib.route_server)
        neg = nb.negotiated
        if neg is None or neg.local_role is not None:
            return None  # RFC 9234 §5: OTC checks and additions
        if chain.prefix_dependent or chain.uses_aspa:
            return None  # a verdict per prefix, or a context that reads the path
        accept_all = not chain.policies and chain.default_accept
        if not accept_all and not chain.blind:
            return None  # the chain reads the block: no plan
        return cls(nb, d, chain, accept_all)

    def __init__(self, nb, daemon, chain, accept_all):
        self.nb = nb
        self.engine = daemon.engine
        self.chain = chain
        # The states reach the chain through RpkiFeed.context, as in
        # import_eval; without a feed the neighbour's own context.
        self.rpki = daemon.rpki if chain.uses_rpki else None
        self.asns = (nb.local_as, daemon.asn)
        self.accept_all = accept_all
        self.plans = {}

    def verdict(self, fam, attrs, nh, state):
        """(attrs, next hop) to store, None (rejected) or MISS, for a set
        with RFC 6811 ``state`` as the chain sees it (None when it does
        not look)."""
        held = path_has(attrs, self.asns)
        if held == PATH_LOOP:
            return None  # RFC 4271 §9.1.2: our own AS in the path
        if held == PATH_CONFED:
            return MISS  # RFC 5065 §5: the general path's confed_reject
        if self.accept_all:
            return (attrs, nh)
        key = (state, fam[0])
        plan = self.plans.get(key, MISS)
        if plan is MISS:
            ctx = self.nb.pctx if self.rpki is None else self.rpki.context(self.nb, attrs, state)
            plan = self.plans[key] = self.engine.group_plan(self.chain, ctx, fam[0])
        if plan is None:
            return MISS
        out = self.engine.replay_block(plan, attrs)  # a replayed plan never sets a next hop
        if out is NOT_REPLAYED:
            return MISS
        return None if out is None else (out, nh)
