"""What a load test does, as msgspec Structs read from TOML or built from
command-line flags (the same names: ``peers.count`` is ``--peers``).

A scenario file::

    name = "bird-1m"
    [target]
    address = "192.0.2.1"
    asn = 65000
    [peers]
    count = 10
    address = "192.0.2.10"        # first source address, +1 per peer
    asn = 64512                   # first ASN, +asn-step per peer
    [table]
    prefixes = 100000             # per peer
    lengths = "24"                # or "dfz", or "24:60,23:10,22:30"
    [monitor]
    address = "192.0.2.3"
    [[phases]]
    kind = "announce"             # rate = 0: full blast
    [[phases]]
    kind = "withdraw"

Keys are kebab-case; an unknown key or a wrong type is an error naming the
field (``peers.count: expected int, got "ten"``), and the semantic checks
report every problem they find with its field path.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from typing import Literal, Optional, Union

import msgspec

from fastbgp.config.errors import explain
from fastbgp.wire.communities import parse_large_community

__all__ = [
    "ScenarioError",
    "Target",
    "Peers",
    "Table",
    "Replay",
    "Monitor",
    "Phase",
    "Scenario",
    "load",
    "loads",
    "check",
    "default_phases",
    "length_weights",
    "parse_slice",
    "KINDS",
    "SCENARIOS",
]

# Realistic IPv4 DFZ shape (share of prefixes per length, roughly the
# public table of the 2020s: /24 dominates, short prefixes are rare).
DFZ_V4 = {24: 60.0, 23: 9.0, 22: 12.0, 21: 5.0, 20: 5.0, 19: 3.0, 18: 1.5, 17: 1.0, 16: 1.5, 15: 0.3, 14: 0.2,
          13: 0.1, 12: 0.05}
DFZ_V6 = {48: 50.0, 44: 6.0, 40: 5.0, 36: 3.0, 32: 18.0, 29: 5.0, 46: 3.0, 47: 2.0, 45: 2.0, 42: 2.0, 64: 1.0,
          33: 1.5, 34: 1.5}

KINDS = ("announce", "withdraw", "flap", "session-flap", "hold")
SCENARIOS = ("blast", "paced", "withdraw", "flap", "session-flap", "hold")


class ScenarioError(ValueError):
    """[(field path, problem)]; ``str()`` is one ``path: problem`` line each."""

    def __init__(self, errors, source="<scenario>"):
        self.errors = list(errors)
        self.source = source
        super().__init__("\n".join(("%s: %s" % (p, m)) if p else m for p, m in self.errors))

    @property
    def path(self):
        return self.errors[0][0] if self.errors else ""


class _Base(msgspec.Struct, forbid_unknown_fields=True, rename="kebab", kw_only=True):
    pass


class Target(_Base):
    """The speaker under test."""

    address: str = ""
    asn: int = 0
    port: int = 179
    # Process ids whose CPU time and RSS are sampled from /proc (e.g. BIRD;
    # FRR's bgpd and zebra).
    pid: list[int] = []


class Peers(_Base):
    """The emulated peers: peer i uses address + i*address_step and
    ASN asn + i*asn_step."""

    count: int = 1
    address: Optional[str] = None  # first source address; None: the kernel picks (one peer only)
    address_step: int = 1
    asn: int = 64512
    asn_step: int = 1
    router_id: Optional[str] = None  # first BGP Identifier; default: the IPv4 source address
    hold_time: int = 90
    keepalive: Optional[int] = None  # default: hold time / 3 (RFC 4271 §10)
    four_octet_as: bool = True  # False: an RFC 4271-only speaker (AS_TRANS + AS4_PATH, RFC 6793 §4.2.2)
    addpath: bool = False  # offer RFC 7911 send; path ids go out where the target agrees to receive
    extended_message: bool = False  # offer RFC 8654 (65535-octet UPDATEs)
    md5_password: Optional[str] = None  # RFC 2385
    ttl: Optional[int] = None  # outgoing TTL; default: the system's
    stagger: float = 0.0  # seconds between session starts
    connect_concurrency: int = 200  # connects in flight at once (SYN backlog of the target)
    establish_timeout: float = 60.0
    ebgp: Optional[bool] = None  # default: the peer's ASN differs from the target's


class Table(_Base):
    """The synthetic table each peer announces."""

    prefixes: int = 10_000  # per peer
    family: Literal["ipv4", "ipv6"] = "ipv4"
    # "24", "dfz" (a DFZ-like mix) or "len:weight,..." / {"24" = 60, ...}
    lengths: Union[str, dict[str, float]] = ""
    base: Optional[str] = None  # default 16.0.0.0 / 2a00::
    per_group: int = 100  # prefixes sharing one attribute set
    as_path: list[int] = []  # ASNs after the peer's own; the last one is replaced by the origin AS per group
    as_path_length: int = 2  # when as_path is empty: ASNs after the peer's own, origin included
    origin_asns: int = 1000  # origin AS cycles through this many values
    origin: Literal["igp", "egp", "incomplete"] = "igp"
    med: int = 0  # MED of group g is med + g (keeps every group a distinct attribute set)
    local_pref: Optional[int] = None  # iBGP only (RFC 4271 §5.1.5)
    communities: list[str] = []
    community_count: int = 0  # extra synthetic communities 64496:1..n
    large_communities: list[str] = []
    next_hop: str = "self"  # "self": the peer's own address
    overlap: float = 1.0  # 1: every peer sends the same prefixes; 0: disjoint ranges
    max_per_update: int = 0  # prefixes per UPDATE at most (0: as many as fit)
    path_id: int = 1  # ADD-PATH path identifier
    seed: int = 1


class Replay(_Base):
    """Replay an MRT file instead of the synthetic table."""

    file: str = ""
    # rib-per-peer: each original peer of a TABLE_DUMP_V2 RIB feeds one
    # session; rib-one: one original peer's table to every session;
    # updates: BGP4MP messages in order (each original peer -> one session).
    mode: Literal["auto", "rib-per-peer", "rib-one", "updates"] = "auto"
    peer: Optional[str] = None  # rib-one: original peer (index or address); default: the biggest
    speed: float = 0.0  # updates: 0 = as fast as possible, 1 = original pacing, N = N times faster
    next_hop: Literal["self", "keep"] = "self"
    limit: int = 0  # stop after this many prefixes (RIB) or messages (updates); 0 = all


class Monitor(_Base):
    """A session from ``address`` to the target that only receives: it
    counts what the target propagates."""

    address: Optional[str] = None  # monitor source address; None: no monitor
    asn: int = 65534
    router_id: Optional[str] = None
    hold_time: int = 90
    # Exact prefix-set tracking ("auto": when peers' tables overlap, so that
    # counts alone cannot tell a re-advertisement from a new prefix).
    exact: Literal["auto", "on", "off"] = "auto"
    canary_interval: float = 1.0  # seconds between canary prefixes; 0: none
    # Received count unchanged this long = converged; without --target-pid
    # also how long the sessions stay up after the last phase (the target
    # passes routes on before our Cease).
    settle: float = 1.0
    timeout: float = 600.0  # per step: give up waiting for convergence


class Phase(_Base):
    kind: Literal["announce", "withdraw", "flap", "session-flap", "hold"] = "announce"
    name: str = ""
    rate: float = 0.0  # prefixes/s over all peers; 0 = as fast as the target takes them
    burst: int = 1000  # prefixes per burst per peer (paced)
    count: int = 1  # cycles (flap, session-flap)
    interval: float = 1.0  # seconds between the halves of a cycle
    prefixes: int = 0  # flap: prefixes per peer that flap (0 = the whole table)
    fraction: float = 1.0  # session-flap: share of the peers that flap
    duration: float = 0.0  # hold: seconds; flap: repeat cycles this long (instead of count)
    wait: bool = True  # wait for the monitor to see convergence


class Scenario(_Base):
    name: str = "loadtest"
    target: Target = msgspec.field(default_factory=Target)
    peers: Peers = msgspec.field(default_factory=Peers)
    table: Table = msgspec.field(default_factory=Table)
    replay: Optional[Replay] = None
    monitor: Monitor = msgspec.field(default_factory=Monitor)
    # When ``phases`` is empty, ``scenario`` names a preset (default_phases).
    scenario: Literal["blast", "paced", "withdraw", "flap", "session-flap", "hold"] = "blast"
    phases: list[Phase] = []
    workers: int = 1
    slice: str = "1/1"
    report: Optional[str] = None  # JSON report path
    plot: Optional[str] = None  # PNG path
    progress: bool = True
    sample_interval: float = 0.01  # timeline resolution (s): fine enough to draw a 0.25 s convergence


# ------------------------------------------------------------------ presets


def default_phases(sc: Scenario) -> list:
    """The phases of a preset scenario (used when ``phases`` is empty)."""
    kind = sc.scenario
    if kind == "blast":
        return [Phase(kind="announce", name="announce")]
    if kind == "paced":
        return [Phase(kind="announce", name="paced", rate=10_000.0)]
    if kind == "withdraw":
        return [Phase(kind="announce", name="announce"), Phase(kind="withdraw", name="withdraw-storm")]
    if kind == "flap":
        return [Phase(kind="announce", name="announce"), Phase(kind="flap", name="flap", count=5, interval=1.0)]
    if kind == "session-flap":
        return [Phase(kind="announce", name="announce"),
                Phase(kind="session-flap", name="session-flap", count=3, interval=2.0)]
    if kind == "hold":
        return [Phase(kind="announce", name="announce"), Phase(kind="hold", name="hold", duration=300.0)]
    raise ValueError(kind)


def phases_of(sc: Scenario) -> list:
    return list(sc.phases) if sc.phases else default_phases(sc)


# ------------------------------------------------------------------ parsing helpers


def length_weights(spec, family: str) -> dict:
    """{length: weight} of a ``table.lengths`` value."""
    width = 32 if family == "ipv4" else 128
    if isinstance(spec, dict):
        items = list(spec.items())
    else:
        text = (spec or "").strip().lower()
        if not text:
            return {24: 1.0} if family == "ipv4" else {48: 1.0}
        if text == "dfz":
            return dict(DFZ_V4 if family == "ipv4" else DFZ_V6)
        items = []
        for part in text.split(","):
            part = part.strip().lstrip("/")
            if not part:
                continue
            if ":" in part:
                k, w = part.split(":", 1)
            else:
                k, w = part, "1"
            items.append((k.strip().lstrip("/"), w))
    out = {}
    for k, w in items:
        try:
            ln = int(str(k).lstrip("/"))
            wt = float(w)
        except ValueError:
            raise ValueError("bad length:weight %r" % ("%s:%s" % (k, w))) from None
        if not 1 <= ln <= width:
            raise ValueError("prefix length %d outside 1..%d" % (ln, width))
        if wt < 0:
            raise ValueError("negative weight for /%d" % ln)
        if wt:
            out[ln] = out.get(ln, 0.0) + wt
    if not out:
        raise ValueError("no prefix length with a positive weight")
    return out


def parse_slice(text: str) -> tuple:
    """(i, n) of "i/n" (1-based)."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text or "")
    if not m:
        raise ValueError("slice must look like i/n, e.g. 1/2")
    i, n = int(m.group(1)), int(m.group(2))
    if not 1 <= i <= n:
        raise ValueError("slice i/n needs 1 <= i <= n")
    return i, n


def parse_community(text: str) -> int:
    a, b = text.split(":")
    a, b = int(a), int(b)
    if not (0 <= a <= 0xFFFF and 0 <= b <= 0xFFFF):
        raise ValueError
    return (a << 16) | b


def _ip(value):
    return ipaddress.ip_address(value)


# ------------------------------------------------------------------ checks


def check(sc: Scenario, *, need_target: bool = True) -> list:
    """Every semantic problem of a decoded scenario as [(path, problem)],
    section by section in file order."""
    err = []

    def bad(path, problem):
        err.append((path, problem))

    _check_target(sc, bad, need_target)
    _check_peers(sc, bad)
    _check_table(sc, bad)
    _check_replay(sc, bad)
    _check_monitor(sc, bad)
    _check_phases(sc, bad)
    _check_run(sc, bad)
    return err


# Each _check_* reports through ``bad(path, problem)``.


def _check_target(sc: Scenario, bad, need_target: bool) -> None:
    t = sc.target
    if need_target:
        if not t.address:
            bad("target.address", "required (the speaker under test)")
        if not t.asn:
            bad("target.asn", "required")
    if t.address:
        try:
            _ip(t.address)
        except ValueError:
            bad("target.address", "not an IP address: %r" % t.address)
    if t.asn and not 1 <= t.asn <= 0xFFFFFFFF:
        bad("target.asn", "must be 1..4294967295")
    if not 0 < t.port <= 0xFFFF:
        bad("target.port", "must be 1..65535")
    for i, pid in enumerate(t.pid):
        if pid <= 0:
            bad("target.pid[%d]" % i, "must be a process id")


def _check_peers(sc: Scenario, bad) -> None:
    t = sc.target
    p = sc.peers
    if p.count < 1:
        bad("peers.count", "must be >= 1")
    if p.address is None:
        if p.count > 1:
            bad("peers.address", "required with more than one peer (each needs its own source address)")
    else:
        try:
            a = _ip(p.address)
            if t.address:
                try:
                    if _ip(t.address).version != a.version:
                        bad("peers.address", "%s is not of the family of target.address %s" % (p.address, t.address))
                except ValueError:
                    pass
            last = int(a) + (p.count - 1) * p.address_step
            if last > (0xFFFFFFFF if a.version == 4 else (1 << 128) - 1):
                bad("peers.address", "%d peers from %s run past the end of the address space" % (p.count, p.address))
        except ValueError:
            bad("peers.address", "not an IP address: %r" % p.address)
    if p.address_step < 1 and p.count > 1:
        bad("peers.address-step", "must be >= 1")
    if not 1 <= p.asn <= 0xFFFFFFFF:
        bad("peers.asn", "must be 1..4294967295")
    elif p.asn + (p.count - 1) * p.asn_step > 0xFFFFFFFF:
        bad("peers.asn-step", "the last peer's ASN exceeds 4294967295")
    if p.asn_step < 0:
        bad("peers.asn-step", "must be >= 0")
    if not p.four_octet_as:
        last_as = p.asn + (p.count - 1) * p.asn_step
        if last_as > 0xFFFF:
            # RFC 6793 §4.2.2 would make it AS_TRANS in the OPEN; with no
            # 4-octet capability the target could not tell peers apart.
            bad("peers.four-octet-as", "false needs 2-octet peer ASNs; the last peer's is %d" % last_as)
    if p.router_id is not None:
        try:
            if _ip(p.router_id).version != 4 or int(_ip(p.router_id)) == 0:
                raise ValueError
        except ValueError:
            bad("peers.router-id", "must be a non-zero IPv4 address (RFC 6286)")
    if p.hold_time in (1, 2) or not 0 <= p.hold_time <= 0xFFFF:
        bad("peers.hold-time", "must be 0 or 3..65535 (RFC 4271 §4.2)")
    if p.keepalive is not None and p.keepalive < 1:
        bad("peers.keepalive", "must be >= 1")
    if p.md5_password is not None and len(p.md5_password.encode()) > 80:
        bad("peers.md5-password", "longer than 80 octets (Linux TCP_MD5SIG_MAXKEYLEN)")
    if p.ttl is not None and not 1 <= p.ttl <= 255:
        bad("peers.ttl", "must be 1..255")
    if p.stagger < 0:
        bad("peers.stagger", "must be >= 0")
    if p.connect_concurrency < 1:
        bad("peers.connect-concurrency", "must be >= 1")
    if p.establish_timeout <= 0:
        bad("peers.establish-timeout", "must be > 0")


def _check_table(sc: Scenario, bad) -> None:
    t = sc.target
    p = sc.peers
    tb = sc.table
    if tb.prefixes < 0:
        bad("table.prefixes", "must be >= 0")
    try:
        weights = length_weights(tb.lengths, tb.family)
    except ValueError as exc:
        bad("table.lengths", str(exc))
        weights = {}
    if tb.base is not None:
        try:
            b = _ip(tb.base)
            if (b.version == 4) != (tb.family == "ipv4"):
                bad("table.base", "%s is not an %s address" % (tb.base, tb.family))
        except ValueError:
            bad("table.base", "not an IP address: %r" % tb.base)
    if tb.per_group < 1:
        bad("table.per-group", "must be >= 1")
    for i, a in enumerate(tb.as_path):
        if not 1 <= a <= 0xFFFFFFFF:
            bad("table.as-path[%d]" % i, "ASN must be 1..4294967295 (RFC 7607: not 0)")
        elif t.asn and a == t.asn:
            bad("table.as-path[%d]" % i, "the target's own ASN: it would drop every route (RFC 4271 §9.1.2)")
    if not tb.as_path and not 0 <= tb.as_path_length <= 255:
        bad("table.as-path-length", "must be 0..255")
    if tb.origin_asns < 1:
        bad("table.origin-asns", "must be >= 1")
    if not 0 <= tb.med <= 0xFFFFFFFF:
        bad("table.med", "must be 0..4294967295")
    for i, c in enumerate(tb.communities):
        try:
            parse_community(c)
        except ValueError:
            bad("table.communities[%d]" % i, "expected \"asn:value\" (16 bits each), got %r" % c)
    for i, c in enumerate(tb.large_communities):
        try:
            parse_large_community(c)
        except ValueError:
            bad("table.large-communities[%d]" % i, "expected \"a:b:c\" (32 bits each), got %r" % c)
    if not 0 <= tb.community_count <= 1000:
        bad("table.community-count", "must be 0..1000")
    if tb.next_hop != "self":
        try:
            nh = _ip(tb.next_hop)
            if (nh.version == 4) != (tb.family == "ipv4"):
                bad("table.next-hop", "%s cannot be the next hop of %s routes here" % (tb.next_hop, tb.family))
        except ValueError:
            bad("table.next-hop", "\"self\" or an IP address, got %r" % tb.next_hop)
    elif p.address is not None:
        try:
            if (_ip(p.address).version == 4) != (tb.family == "ipv4"):
                bad("table.next-hop", "\"self\" needs %s transport; give an %s address" % (tb.family, tb.family))
        except ValueError:
            pass
    if not 0.0 <= tb.overlap <= 1.0:
        bad("table.overlap", "must be between 0 (disjoint) and 1 (identical)")
    if tb.max_per_update < 0:
        bad("table.max-per-update", "must be >= 0")
    if not 0 <= tb.path_id <= 0xFFFFFFFF:
        bad("table.path-id", "must be 0..4294967295")
    if tb.local_pref is not None and not 0 <= tb.local_pref <= 0xFFFFFFFF:
        bad("table.local-pref", "must be 0..4294967295")
    _check_table_space(sc, bad, weights)


def _check_table_space(sc: Scenario, bad, weights: dict) -> None:
    p = sc.peers
    tb = sc.table
    if weights and tb.family == "ipv4" and tb.prefixes:
        # Per length the prefixes need distinct blocks (nesting across
        # lengths is allowed): the biggest block run must fit below 224/4.
        total = sum(weights.values())
        copies = 1 + (p.count - 1) * (1.0 - tb.overlap) if p.count > 1 else 1
        base = int(_ip(tb.base)) if tb.base and tb.family == "ipv4" else 16 << 24
        for ln, w in weights.items():
            need = tb.prefixes * copies * (w / total) * 1.05 * (1 << (32 - ln))
            if base + need > 0xE0000000:
                bad("table.lengths", "%d peers x %d prefixes with %.1f%% /%d do not fit in unicast IPv4 space" % (
                    p.count, tb.prefixes, 100 * w / total, ln))
                break


def _check_replay(sc: Scenario, bad) -> None:
    if sc.replay is not None:
        r = sc.replay
        if not r.file:
            bad("replay.file", "required")
        if r.speed < 0:
            bad("replay.speed", "must be >= 0")
        if r.limit < 0:
            bad("replay.limit", "must be >= 0")


def _check_monitor(sc: Scenario, bad) -> None:
    t = sc.target
    m = sc.monitor
    if m.address is not None:
        try:
            ma = _ip(m.address)
            if t.address and _ip(t.address).version != ma.version:
                bad("monitor.address", "not of the family of target.address")
        except ValueError:
            bad("monitor.address", "not an IP address: %r" % m.address)
    if not 1 <= m.asn <= 0xFFFFFFFF:
        bad("monitor.asn", "must be 1..4294967295")
    if m.hold_time in (1, 2) or not 0 <= m.hold_time <= 0xFFFF:
        bad("monitor.hold-time", "must be 0 or 3..65535")
    if m.canary_interval < 0:
        bad("monitor.canary-interval", "must be >= 0")
    if m.settle < 0:
        bad("monitor.settle", "must be >= 0")
    if m.timeout <= 0:
        bad("monitor.timeout", "must be > 0")
    if m.router_id is not None:
        try:
            if _ip(m.router_id).version != 4 or int(_ip(m.router_id)) == 0:
                raise ValueError
        except ValueError:
            bad("monitor.router-id", "must be a non-zero IPv4 address (RFC 6286)")


def _check_phases(sc: Scenario, bad) -> None:
    for i, ph in enumerate(sc.phases):
        at = "phases[%d]" % i
        if ph.rate < 0:
            bad(at + ".rate", "must be >= 0")
        if ph.burst < 1:
            bad(at + ".burst", "must be >= 1")
        if ph.count < 1:
            bad(at + ".count", "must be >= 1")
        if ph.interval < 0:
            bad(at + ".interval", "must be >= 0")
        if ph.prefixes < 0:
            bad(at + ".prefixes", "must be >= 0")
        if not 0 < ph.fraction <= 1:
            bad(at + ".fraction", "must be in (0, 1]")
        if ph.duration < 0:
            bad(at + ".duration", "must be >= 0")


def _check_run(sc: Scenario, bad) -> None:
    if sc.workers < 1:
        bad("workers", "must be >= 1")
    try:
        parse_slice(sc.slice)
    except ValueError as exc:
        bad("slice", str(exc))
    if sc.sample_interval <= 0:
        bad("sample-interval", "must be > 0")


# ------------------------------------------------------------------ loading

def from_dict(raw: dict, source: str = "<scenario>", *, need_target: bool = True) -> Scenario:
    try:
        sc = msgspec.convert(raw, Scenario)
    except msgspec.ValidationError as exc:
        raise ScenarioError([explain(exc, Scenario, raw)], source) from None
    errors = check(sc, need_target=need_target)
    if errors:
        raise ScenarioError(errors, source)
    return sc


def loads(text: str, source: str = "<scenario>", *, need_target: bool = True) -> Scenario:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError([("", "TOML syntax error: %s" % exc)], source) from None
    return from_dict(raw, source, need_target=need_target)


def load(path: str, *, need_target: bool = True) -> Scenario:
    try:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError([("", "cannot read %s: %s" % (path, exc))], path) from None
    return loads(text, path, need_target=need_target)


def to_dict(sc: Scenario) -> dict:
    return msgspec.to_builtins(sc)
