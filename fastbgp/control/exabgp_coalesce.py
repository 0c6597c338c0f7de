"""Fold runs of received UPDATEs into fewer ExaBGP update lines.

A full table from a real router arrives as hundreds of thousands of small
UPDATEs (BIRD packs what is ready when the socket can take it: 4-6
prefixes each when the reader keeps up).  ExaBGP writes one JSON line per
UPDATE, and a program then spends most of its time in ``json.loads`` on
envelopes rather than on routes.  :class:`UpdateCoalescer` writes one line
per attribute set instead, carrying every prefix of a run of UPDATEs that
shares it, so a program reads the same routes in far fewer lines.

Why the result means exactly what the UPDATEs meant: within one UPDATE
the withdrawals come before the announcements (RFC 4271 §3.1), and across
UPDATEs the later one wins for a prefix.  A run is kept only while no
(prefix, path id) occurs twice in it; with every prefix appearing once,
the order in which its lines are written does not change the final state,
so prefixes may be grouped by attribute set freely.  An UPDATE that would
repeat a prefix of the run ends the run first (its lines are written) and
starts the next one; one that repeats a prefix within itself (withdrawn
and re-announced in the same message) is written alone, as ExaBGP would.

A run also ends at any other event (state change, OPEN, KEEPALIVE,
NOTIFICATION, End-of-RIB, an UPDATE only the full decoder writes), at a
change of neighbour, and at the end of the writer's slice (so no event
waits longer than one slice), and a line is written as soon as it holds
``max_line_prefixes`` prefixes.

Bounds: ``max_line_prefixes`` prefixes per line (default 4,096: an update
line stays under about 100 KB, what a line-based reader expects) and
``max_run`` distinct prefixes remembered per run (default 262,144; past
it the run ends), so a run costs at most a few tens of MB whatever a peer
sends.

Owns: only the run in progress.  Calls: a
:class:`~fastbgp.control.exabgp_json.JsonEncoder` (its parse, attribute and
NLRI spelling and line envelope: one source for the JSON) and the codec's
``parse_update``.  Called by: fastbgp.daemon.processes (``coalesce = true``
on a ``[[processes]]`` entry with the JSON encoder).
"""

from __future__ import annotations

from fastbgp.control.exabgp_json import exa_family, nh_text
from fastbgp.wire import codec
from fastbgp.wire.constants import AFI_IPV4
from fastbgp.wire.errors import BGPError

__all__ = ["UpdateCoalescer", "MAX_LINE_PREFIXES", "MAX_RUN"]

MAX_LINE_PREFIXES = 4096
MAX_RUN = 262_144
_IPV4 = "ipv4 unicast"


class UpdateCoalescer:
    """A run of UPDATE events of one neighbour, grouped per attribute set
    (see the module docstring).  :meth:`add` and :meth:`flush` return the
    lines that are complete, in the order to write them."""

    def __init__(self, encoder, *, max_line_prefixes: int = MAX_LINE_PREFIXES, max_run: int = MAX_RUN):
        self.encoder = encoder
        self.max_line_prefixes = max_line_prefixes
        self.max_run = max_run
        self.peer = None
        self.direction = None
        self.seen: set = set()  # the run's (prefix, path id) texts
        # Attribute block (None: withdrawals) -> [count, {family: {next hop or None: ([texts], addpath)}}]
        self.groups: dict = {}
        self.started = 0.0  # when the open run began (the caller's clock)
        self.updates = 0  # UPDATEs folded into the run
        self.lines = 0  # lines written for them (a counter for the program's stats)

    # -- in ----------------------------------------------------------------------------------------

    def add(self, peer, body, ctx, direction: str = "in", now: float = 0.0) -> list:
        """Fold one UPDATE body; returns the lines now complete.  ``now``
        becomes :attr:`started` when this UPDATE opens a run."""
        enc = self.encoder
        out = []
        if peer is not self.peer or direction != self.direction:
            out = self.flush()
            self.peer, self.direction = peer, direction
        try:
            p = (enc.impl or codec).parse_update(bytes(body), ctx)
        except (BGPError, ValueError, IndexError):
            p = None
        if p is None or not enc.plain(p):
            # Errors, End-of-RIB and families only the full decoder spells:
            # in order, alone, as ExaBGP writes them.
            out += self.flush()
            out.append(enc.update(peer, body, ctx, direction))
            return out
        parts = self.parts(p, ctx)
        total = sum(len(texts) for _key, _fam, _nh, texts, _ap in parts)
        if not total:
            return out
        mine = set()
        for _key, _fam, _nh, texts, _ap in parts:
            mine.update(texts)
        if len(mine) < total:
            # RFC 4271 §3.1: a prefix withdrawn and announced in one UPDATE
            # (or listed twice): only this message's own order is right.
            out += self.flush()
            out.append(enc.update_fast(peer, p, ctx, direction))
            self.lines += 1
            return out
        if not self.seen.isdisjoint(mine) or len(self.seen) + total > self.max_run:
            out += self.flush()
        if not self.groups:
            self.started = now
        self.seen |= mine
        self.updates += 1
        for key, fam, nh, texts, addpath in parts:
            if self.put(key, fam, nh, texts, addpath) >= self.max_line_prefixes:
                out.append(self.line(key, self.groups.pop(key)[1]))
        return out

    def parts(self, p, ctx) -> list:
        """(attribute block or None, family, next hop text or None, texts,
        addpath) for each prefix list of a plain ParsedUpdate."""
        enc = self.encoder
        rx = ctx.addpath_rx
        out = []
        if p.withdrawn:
            ap = (AFI_IPV4, 1) in rx
            out.append((None, _IPV4, None, enc.nlri_texts(AFI_IPV4, p.withdrawn, ap), ap))
        if p.mp_unreach is not None and p.mp_unreach[2]:
            afi, safi, packed = p.mp_unreach
            ap = (afi, safi) in rx
            out.append((None, exa_family((afi, safi)), None, enc.nlri_texts(afi, packed, ap), ap))
        attrs = p.attrs or b""
        if p.nlri:
            ap = (AFI_IPV4, 1) in rx
            nh = nh_text(p.next_hop) if len(p.next_hop) == 4 else "null"
            out.append((attrs, _IPV4, nh, enc.nlri_texts(AFI_IPV4, p.nlri, ap), ap))
        if p.mp_reach is not None and p.mp_reach[3]:
            afi, safi, nh, packed = p.mp_reach
            ap = (afi, safi) in rx
            out.append((attrs, exa_family((afi, safi)), nh_text(nh), enc.nlri_texts(afi, packed, ap), ap))
        return out

    def put(self, key, fam, nh, texts, addpath) -> int:
        """Add texts to the group of ``key``; returns its prefix count."""
        g = self.groups.get(key)
        if g is None:
            g = self.groups[key] = [0, {}]
        lists = g[1].setdefault(fam, {})
        entry = lists.get(nh)
        if entry is None:
            lists[nh] = (list(texts), addpath)
        else:
            entry[0].extend(texts)
        g[0] += len(texts)
        return g[0]

    # -- out ---------------------------------------------------------------------------------------

    def flush(self) -> list:
        """End the run: its lines, one per attribute set (withdrawals in
        their own line, as ExaBGP writes a withdraw-only UPDATE)."""
        if not self.groups:
            self.seen = set()
            return []
        groups = self.groups
        wd = groups.pop(None, None)
        if wd is not None and groups:
            # The withdrawals ride in the first announcement's line (an
            # update object may hold both; no prefix is in both).
            key = next(iter(groups))
            out = [self.line(key, groups.pop(key)[1], wd[1])]
        else:
            out = [self.line(None, wd[1])] if wd is not None else []
        out += [self.line(key, g[1]) for key, g in groups.items()]
        self.groups = {}
        self.seen = set()
        return out

    def line(self, key, families: dict, withdrawn: dict = None) -> str:
        """One update line: the announcements of attribute block ``key``
        (None: none) and the withdrawals ``withdrawn`` (both as put)."""
        enc = self.encoder
        join = enc.nlri_join
        self.lines += 1
        if key is None:
            withdrawn, families = families, None
        upd = {}
        attrs = enc.attribute_raw(key) if key else None
        if attrs is not None:
            upd["attribute"] = attrs
        if families:
            upd["announce"] = {fam: {nh: join(texts, ap) for nh, (texts, ap) in by_nh.items()}
                               for fam, by_nh in families.items()}
        if withdrawn:
            upd["withdraw"] = {fam: join(texts, ap) for fam, by_nh in withdrawn.items() for texts, ap in by_nh.values()}
        return enc.update_line(self.peer, self.direction, upd)
