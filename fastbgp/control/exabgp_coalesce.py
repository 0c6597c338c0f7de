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
UPDATEs the later one wins for a prefix.  When no (prefix, path id) occurs
twice in a run, the order in which its lines are written does not change
the final state, so prefixes may be grouped by attribute set freely.  The
run is checked when it ends: if a prefix does occur twice, the run is
written as it came, one line per UPDATE (what ExaBGP writes), so the
result is exact either way; a table load has no repeats, churn of the
same prefixes within one window is written unfolded.

Cost: while a run is open an UPDATE costs a few dictionary operations (its
packed NLRI appended to its group, nothing per prefix); when it ends each
group's prefixes are written to text once (``codec.prefix_texts``, in C
for IPv4) and checked for repeats with one set.

A run ends at any other event (state change, OPEN, KEEPALIVE,
NOTIFICATION, End-of-RIB, an UPDATE only the full decoder writes), at a
change of neighbour, when the caller's window ends (``coalesce-ms``), when
a group holds ``max_line_prefixes`` prefixes or the run ``max_run``.

Bounds: ``max_line_prefixes`` prefixes per line, about (default 4,096; an
UPDATE's worth more at most: an update line stays around 100 KB, what a
line-based reader expects) and ``max_run`` prefixes per run (default
262,144), so a run holds at most a few tens of MB whatever a peer sends.

Owns: only the run in progress.  Calls: a
:class:`~fastbgp.control.exabgp_json.JsonEncoder` (its attribute and NLRI
spelling and line envelope: one source for the JSON) and the codec.  Called
by: fastbgp.daemon.processes (``coalesce-ms`` on a ``[[processes]]`` entry
with the JSON encoder).
"""

from __future__ import annotations

from fastbgp.control.exabgp_json import exa_family, nh_text
from fastbgp.wire import codec
from fastbgp.wire.constants import IPV4_UNICAST
from fastbgp.wire.errors import BGPError

__all__ = ["UpdateCoalescer", "MAX_LINE_PREFIXES", "MAX_RUN"]

MAX_LINE_PREFIXES = 4096
MAX_RUN = 262_144


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
        self.ctx = None
        # Attribute block (None: withdrawals) -> [count, {(family, next hop octets or None): [packed, ...]}]
        self.groups: dict = {}
        self.run: list = []  # the run's ParsedUpdates, in order (written one per line if a prefix repeats)
        self.count = 0  # prefixes in the run
        self.started = 0.0  # when the open run began (the caller's clock)
        self.updates = 0  # UPDATEs folded into runs
        self.unfolded = 0  # runs written one line per UPDATE (a prefix repeated)
        self.lines = 0  # lines written for them (a counter for the program's stats)

    # -- in ----------------------------------------------------------------------------------------

    def add(self, peer, body, ctx, direction: str = "in", now: float = 0.0, parsed=None) -> list:
        """Fold one UPDATE (its body and, when the session parsed it
        already, its ParsedUpdate); returns the lines now complete.
        ``now`` becomes :attr:`started` when this UPDATE opens a run."""
        enc = self.encoder
        out = []
        if peer is not self.peer or direction != self.direction or ctx is not self.ctx:
            out = self.flush()
            self.peer, self.direction, self.ctx = peer, direction, ctx
        p = parsed
        if p is None:
            try:
                p = (enc.impl or codec).parse_update(bytes(body), ctx)
            except (BGPError, ValueError, IndexError):
                p = None
        if p is None or not enc.plain(p):
            # Errors, End-of-RIB and families only the full decoder spells:
            # in order, alone, as ExaBGP writes them.
            out += self.flush()
            out.append(enc.update(peer, body, ctx, direction))
            self.lines += 1
            return out
        rx = ctx.addpath_rx
        impl = enc.impl or codec
        full = False
        n = 0
        if not self.run:
            self.started = now
        groups = self.groups
        for key, fam, nh, packed in self.parts(p):
            c = impl.count_prefixes(packed, fam[0], fam in rx)
            n += c
            g = groups.get(key)
            if g is None:
                g = groups[key] = [0, {}]
            g[0] += c
            lst = g[1].get((fam, nh))
            if lst is None:
                g[1][(fam, nh)] = [packed]
            else:
                lst.append(packed)
            full = full or g[0] >= self.max_line_prefixes
        self.run.append(p)
        self.count += n
        self.updates += 1
        if full or self.count >= self.max_run:
            out += self.flush()
        return out

    @staticmethod
    def parts(p) -> list:
        """(attribute block or None, family, next hop octets or None, packed)
        for each prefix list of a plain ParsedUpdate (withdrawals first, as
        RFC 4271 §3.1 orders them)."""
        out = []
        if p.withdrawn:
            out.append((None, IPV4_UNICAST, None, p.withdrawn))
        if p.mp_unreach is not None and p.mp_unreach[2]:
            afi, safi, packed = p.mp_unreach
            out.append((None, (afi, safi), None, packed))
        attrs = p.attrs or b""
        if p.nlri:
            out.append((attrs, IPV4_UNICAST, p.next_hop, p.nlri))
        if p.mp_reach is not None and p.mp_reach[3]:
            afi, safi, nh, packed = p.mp_reach
            out.append((attrs, (afi, safi), bytes(nh), packed))
        return out

    # -- out ---------------------------------------------------------------------------------------

    def flush(self) -> list:
        """End the run: its lines, one per attribute set (withdrawals in the
        first line), or one per UPDATE when a prefix occurs twice in it."""
        if not self.run:
            return []
        groups, run = self.groups, self.run
        self.groups, self.run, self.count = {}, [], 0
        enc = self.encoder
        rx = self.ctx.addpath_rx
        texts = {}  # (key, family, next hop) -> texts
        seen = set()
        total = 0
        for key, (_n, lists) in groups.items():
            for (fam, nh), chunks in lists.items():
                t = enc.nlri_texts(fam[0], chunks[0] if len(chunks) == 1 else b"".join(chunks), fam in rx)
                texts[(key, fam, nh)] = t
                seen.update(t)
                total += len(t)
        if len(seen) != total:
            # A prefix twice in the run: only the UPDATEs' own order is right.
            self.unfolded += 1
            self.lines += len(run)
            return [enc.update_fast(self.peer, p, self.ctx, self.direction) for p in run]
        wd = {}
        ann = {}  # key -> {family name: {next hop text: texts}}
        for (key, fam, nh), t in texts.items():
            name = exa_family(fam)
            if key is None:
                wd[name] = (t, fam in rx)
            else:
                nhs = ann.setdefault(key, {}).setdefault(name, {})
                nhs[nh_text(nh)] = (t, fam in rx)  # ("null" for a classic NEXT_HOP missing)
        out = []
        for key, fams in ann.items():
            out.append(self.line(key, fams, wd))
            wd = None  # the withdrawals ride in the first line (no prefix is in both)
        if wd:
            out.append(self.line(None, None, wd))
        return out

    def line(self, key, families, withdrawn) -> str:
        """One update line: the announcements of attribute block ``key``
        ({family name: {next hop text: (texts, addpath)}}) and the
        withdrawals ({family name: (texts, addpath)})."""
        enc = self.encoder
        join = enc.nlri_join
        self.lines += 1
        upd = {}
        attrs = enc.attribute_raw(key) if key else None
        if attrs is not None:
            upd["attribute"] = attrs
        if families:
            upd["announce"] = {fam: {nh: join(t, ap) for nh, (t, ap) in by_nh.items()}
                               for fam, by_nh in families.items()}
        if withdrawn:
            upd["withdraw"] = {fam: join(t, ap) for fam, (t, ap) in withdrawn.items()}
        return enc.update_line(self.peer, self.direction, upd)
