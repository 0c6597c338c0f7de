"""``fastbgp loadtest``: point emulated peers at a BGP speaker and measure.

::

    fastbgp loadtest --target 192.0.2.1 --target-as 65000 --peers 10 \\
        --peer-address 192.0.2.10 --prefixes 100000 --monitor 192.0.2.3
    fastbgp loadtest -c scenario.toml --workers 2 --json out.json --plot out.png
    fastbgp loadtest merge host1.json host2.json -o all.json

Every flag is a scenario setting (``--peers`` is ``peers.count``); flags
override what a ``-c`` file says.  The CLI owner wires :func:`add_parser`
into ``fastbgp``'s sub-commands.
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["add_parser", "main", "build_scenario", "FLAGS"]

# flag dest -> (scenario path, flag text): the same names as the TOML keys.
FLAGS = {
    "name": ("name", "--name"),
    "target": ("target.address", "--target"),
    "target_as": ("target.asn", "--target-as"),
    "target_port": ("target.port", "--target-port"),
    "target_pid": ("target.pid", "--target-pid"),
    "peers": ("peers.count", "--peers"),
    "peer_address": ("peers.address", "--peer-address"),
    "peer_address_step": ("peers.address-step", "--peer-address-step"),
    "peer_as": ("peers.asn", "--peer-as"),
    "peer_as_step": ("peers.asn-step", "--peer-as-step"),
    "router_id": ("peers.router-id", "--router-id"),
    "hold_time": ("peers.hold-time", "--hold-time"),
    "keepalive": ("peers.keepalive", "--keepalive"),
    "addpath": ("peers.addpath", "--addpath"),
    "extended_message": ("peers.extended-message", "--extended-message"),
    "md5": ("peers.md5-password", "--md5"),
    "ttl": ("peers.ttl", "--ttl"),
    "stagger": ("peers.stagger", "--stagger"),
    "connect_concurrency": ("peers.connect-concurrency", "--connect-concurrency"),
    "establish_timeout": ("peers.establish-timeout", "--establish-timeout"),
    "prefixes": ("table.prefixes", "--prefixes"),
    "family": ("table.family", "--family"),
    "lengths": ("table.lengths", "--lengths"),
    "base": ("table.base", "--base"),
    "per_group": ("table.per-group", "--per-group"),
    "as_path": ("table.as-path", "--as-path"),
    "as_path_length": ("table.as-path-length", "--as-path-length"),
    "origin_asns": ("table.origin-asns", "--origin-asns"),
    "origin": ("table.origin", "--origin"),
    "med": ("table.med", "--med"),
    "local_pref": ("table.local-pref", "--local-pref"),
    "communities": ("table.communities", "--communities"),
    "community_count": ("table.community-count", "--community-count"),
    "large_communities": ("table.large-communities", "--large-communities"),
    "next_hop": ("table.next-hop", "--next-hop"),
    "overlap": ("table.overlap", "--overlap"),
    "max_per_update": ("table.max-per-update", "--max-per-update"),
    "path_id": ("table.path-id", "--path-id"),
    "seed": ("table.seed", "--seed"),
    "replay": ("replay.file", "--replay"),
    "replay_mode": ("replay.mode", "--replay-mode"),
    "replay_peer": ("replay.peer", "--replay-peer"),
    "replay_speed": ("replay.speed", "--replay-speed"),
    "replay_next_hop": ("replay.next-hop", "--replay-next-hop"),
    "replay_limit": ("replay.limit", "--replay-limit"),
    "monitor": ("monitor.address", "--monitor"),
    "monitor_as": ("monitor.asn", "--monitor-as"),
    "monitor_router_id": ("monitor.router-id", "--monitor-router-id"),
    "exact": ("monitor.exact", "--exact"),
    "canary_interval": ("monitor.canary-interval", "--canary-interval"),
    "settle": ("monitor.settle", "--settle"),
    "timeout": ("monitor.timeout", "--timeout"),
    "scenario": ("scenario", "--scenario"),
    "workers": ("workers", "--workers"),
    "slice": ("slice", "--slice"),
    "json": ("report", "--json"),
    "plot": ("plot", "--plot"),
    "sample_interval": ("sample-interval", "--sample-interval"),
}
# Settings of the preset's phases (applied to the phases of the kinds they concern).
PHASE_FLAGS = {
    "rate": ("rate", ("announce", "flap"), "--rate"),
    "burst": ("burst", ("announce", "flap"), "--burst"),
    "count": ("count", ("flap", "session-flap"), "--count"),
    "interval": ("interval", ("flap", "session-flap"), "--interval"),
    "flap_prefixes": ("prefixes", ("flap",), "--flap-prefixes"),
    "fraction": ("fraction", ("session-flap",), "--fraction"),
}


def _csv(kind):
    def conv(text):
        items = [x.strip() for x in text.split(",") if x.strip()]
        try:
            return [kind(x) for x in items]
        except ValueError:
            raise argparse.ArgumentTypeError("expected a comma-separated list, got %r" % text) from None

    return conv


def _add_run_flags(p):
    g = p.add_argument_group("target")
    g.add_argument("--target", metavar="ADDR", help="address of the speaker under test")
    g.add_argument("--target-as", type=int, metavar="ASN")
    g.add_argument("--target-port", type=int, metavar="PORT", help="default 179")
    g.add_argument("--target-pid", type=_csv(int), metavar="PID[,PID]",
                   help="process ids of the target: CPU and RSS sampled from /proc; the sessions stay up "
                        "after the last phase until its CPU is quiet")
    g = p.add_argument_group("emulated peers")
    g.add_argument("--peers", type=int, metavar="N", help="number of sessions (default 1)")
    g.add_argument("--peer-address", metavar="ADDR", help="first source address (+1 per peer); IPv4 or IPv6 transport")
    g.add_argument("--peer-address-step", type=int, metavar="N")
    g.add_argument("--peer-as", type=int, metavar="ASN", help="first peer ASN (default 64512)")
    g.add_argument("--peer-as-step", type=int, metavar="N", help="ASN increment per peer (default 1; 0 = all alike)")
    g.add_argument("--router-id", metavar="ADDR", help="first BGP Identifier (default: the IPv4 source address)")
    g.add_argument("--hold-time", type=int, metavar="S")
    g.add_argument("--keepalive", type=int, metavar="S")
    g.add_argument("--two-octet-as", action="store_true", help="behave as an RFC 4271-only speaker (no RFC 6793)")
    g.add_argument("--addpath", action="store_true", default=None, help="offer ADD-PATH send (RFC 7911)")
    g.add_argument("--extended-message", action="store_true", default=None, help="offer RFC 8654 extended messages")
    g.add_argument("--md5", metavar="PASSWORD", help="TCP MD5 signature (RFC 2385)")
    g.add_argument("--ttl", type=int, metavar="N")
    g.add_argument("--stagger", type=float, metavar="S", help="seconds between session starts")
    g.add_argument("--connect-concurrency", type=int, metavar="N")
    g.add_argument("--establish-timeout", type=float, metavar="S")
    g.add_argument("--ibgp", dest="ebgp", action="store_false", default=None,
                   help="send as iBGP (no own AS prepended) even with another ASN")
    g = p.add_argument_group("synthetic table")
    g.add_argument("--prefixes", type=int, metavar="N", help="prefixes per peer (default 10,000)")
    g.add_argument("--family", choices=("ipv4", "ipv6"))
    g.add_argument("--lengths", metavar="SPEC", help='"24", "dfz" or "24:60,23:10,22:30"')
    g.add_argument("--base", metavar="ADDR", help="first address of the table (default 16.0.0.0 / 2a00::)")
    g.add_argument("--per-group", type=int, metavar="N", help="prefixes per attribute set (default 100)")
    g.add_argument("--as-path", type=_csv(int), metavar="ASN,ASN", help="AS_PATH after the peer's own AS")
    g.add_argument("--as-path-length", type=int, metavar="N")
    g.add_argument("--origin-asns", type=int, metavar="N")
    g.add_argument("--origin", choices=("igp", "egp", "incomplete"))
    g.add_argument("--med", type=int, metavar="N")
    g.add_argument("--local-pref", type=int, metavar="N")
    g.add_argument("--communities", type=_csv(str), metavar="A:B,...")
    g.add_argument("--community-count", type=int, metavar="N")
    g.add_argument("--large-communities", type=_csv(str), metavar="A:B:C,...")
    g.add_argument("--next-hop", metavar="ADDR|self")
    g.add_argument("--overlap", type=float, metavar="F", help="1 = every peer the same prefixes (default), 0 = disjoint")
    g.add_argument("--max-per-update", type=int, metavar="N")
    g.add_argument("--path-id", type=int, metavar="N")
    g.add_argument("--seed", type=int, metavar="N")
    g = p.add_argument_group("MRT replay")
    g.add_argument("--replay", metavar="FILE", help="TABLE_DUMP_V2 RIB or BGP4MP updates file")
    g.add_argument("--replay-mode", choices=("auto", "rib-per-peer", "rib-one", "updates"))
    g.add_argument("--replay-peer", metavar="INDEX|ADDR")
    g.add_argument("--replay-speed", type=float, metavar="X", help="0 = as fast as possible, 1 = original pacing")
    g.add_argument("--replay-next-hop", choices=("self", "keep"))
    g.add_argument("--replay-limit", type=int, metavar="N")
    g = p.add_argument_group("monitor")
    g.add_argument("--monitor", metavar="ADDR", help="source address of a receive-only session to the target")
    g.add_argument("--monitor-as", type=int, metavar="ASN", help="default 65534")
    g.add_argument("--monitor-router-id", metavar="ADDR")
    g.add_argument("--exact", choices=("auto", "on", "off"), help="track the exact prefix set")
    g.add_argument("--canary-interval", type=float, metavar="S", help="0 = no canaries")
    g.add_argument("--settle", type=float, metavar="S",
                   help="count unchanged this long = converged; without --target-pid also how long the sessions "
                        "stay up after the last phase before the Cease (default 1)")
    g.add_argument("--timeout", type=float, metavar="S", help="per step convergence timeout")
    g = p.add_argument_group("scenario")
    g.add_argument("-c", "--config", metavar="FILE", help="scenario TOML file (flags override it)")
    g.add_argument("--name")
    g.add_argument("--scenario", choices=("blast", "paced", "withdraw", "flap", "session-flap", "hold"))
    g.add_argument("--rate", type=float, metavar="PFX/S", help="paced announcement rate over all peers")
    g.add_argument("--burst", type=int, metavar="N", help="prefixes per burst per peer (paced)")
    g.add_argument("--count", type=int, metavar="N", help="flap cycles")
    g.add_argument("--interval", type=float, metavar="S", help="seconds between flap halves")
    g.add_argument("--flap-prefixes", type=int, metavar="N", help="prefixes per peer that flap (default all)")
    g.add_argument("--fraction", type=float, metavar="F", help="share of the peers whose sessions flap")
    g.add_argument("--hold", type=float, metavar="S",
                   help="keep every session up S more seconds after the last phase (then Cease)")
    g.add_argument("--workers", type=int, metavar="N", help="spread peers over N processes")
    g.add_argument("--slice", metavar="I/N", help="run slice I of N of the peers (multi-host)")
    g = p.add_argument_group("output")
    g.add_argument("--json", metavar="PATH", help="write the JSON report (- for stdout)")
    g.add_argument("--plot", metavar="PATH", help="write a PNG plot (needs matplotlib)")
    g.add_argument("--no-progress", action="store_true", help="no live progress bar")
    g.add_argument("--sample-interval", type=float, metavar="S")
    g.add_argument("--check", action="store_true", help="validate the scenario, print it as JSON and exit")


def add_parser(subparsers):
    """Add ``loadtest`` to an argparse sub-command set."""
    p = subparsers.add_parser(
        "loadtest",
        help="load-test a BGP speaker: emulated peers, monitor, convergence figures",
        description="Emulate BGP peers that announce pre-encoded tables to a target speaker and measure "
                    "how fast it takes them in and passes them on.  'fastbgp loadtest merge A.json B.json' "
                    "combines reports of slices run on several hosts.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("action", nargs="?", choices=("run", "merge"), default="run",
                   help="run (default) or merge JSON reports")
    p.add_argument("files", nargs="*", help="merge: the JSON reports")
    p.add_argument("-o", "--output", metavar="PATH", help="merge: write the merged JSON report here")
    _add_run_flags(p)
    p.set_defaults(func=main)
    return p


def _set(d: dict, path: str, value):
    parts = path.split(".")
    for k in parts[:-1]:
        d = d.setdefault(k, {})
    d[parts[-1]] = value


def build_scenario(args):
    """The Scenario of a -c file plus flag overrides; ScenarioError names
    the field (and the flag that sets it)."""
    from fastbgp.loadtest import scenario as S

    raw = {}
    source = "<flags>"
    if args.config:
        import tomllib

        try:
            with open(args.config, "rb") as f:
                raw = tomllib.load(f)
        except OSError as exc:
            raise S.ScenarioError([("", "cannot read %s: %s" % (args.config, exc))], args.config) from None
        except tomllib.TOMLDecodeError as exc:
            raise S.ScenarioError([("", "TOML syntax error: %s" % exc)], args.config) from None
        source = args.config
    for dest, (path, _flag) in FLAGS.items():
        v = getattr(args, dest, None)
        if v is not None:
            _set(raw, path, v)
    if args.two_octet_as:
        _set(raw, "peers.four-octet-as", False)
    if args.ebgp is not None:
        _set(raw, "peers.ebgp", args.ebgp)
    if args.no_progress:
        raw["progress"] = False
    if args.replay is not None and args.family is None and "family" not in raw.get("table", {}):
        pass  # the replay family follows table.family (ipv4 by default)
    phase_over = {k: getattr(args, k) for k in PHASE_FLAGS if getattr(args, k, None) is not None}
    hold = getattr(args, "hold", None)
    if phase_over or hold:
        sc0 = S.from_dict(raw, source, need_target=False)
        phases = [S.msgspec.to_builtins(p) for p in S.phases_of(sc0)]
        for k, v in phase_over.items():
            field, kinds, _flag = PHASE_FLAGS[k]
            for ph in phases:
                if ph.get("kind", "announce") in kinds:
                    ph[field] = v
        if hold:
            phases.append({"kind": "hold", "name": "hold", "duration": hold})
        raw["phases"] = phases
    try:
        return S.from_dict(raw, source)
    except S.ScenarioError as exc:
        flags = {path: flag for path, flag in FLAGS.values()}
        exc.errors = [("%s (%s)" % (p, flags[p]) if p in flags and args.config is None else p, m) for p, m in exc.errors]
        raise S.ScenarioError(exc.errors, source) from None


def _merge(args):
    from rich.console import Console

    from fastbgp.loadtest import report as R

    if len(args.files) < 1:
        print("fastbgp loadtest merge: give the JSON reports to merge", file=sys.stderr)
        return 2
    try:
        reports = [R.read_json(f) for f in args.files]
        merged = R.merge(reports)
    except (OSError, ValueError) as exc:
        print("fastbgp loadtest merge: %s" % exc, file=sys.stderr)
        return 2
    out = args.output or args.json
    R.render_table(merged, Console(stderr=out == "-"))
    if out:
        R.write_json(merged, out)
    if args.plot:
        why = R.plot(merged, args.plot)
        if why:
            print("fastbgp loadtest: %s" % why, file=sys.stderr)
    return 0


def main(args):
    """Run (or merge) from parsed arguments; returns the exit status:
    0 all fine, 1 the run finished with failures (sessions not up, hold
    timer expiries, steps not converged), 2 bad input."""
    if args.action == "merge":
        return _merge(args)
    from rich.console import Console

    from fastbgp.loadtest import report as R
    from fastbgp.loadtest.scenario import ScenarioError

    try:
        sc = build_scenario(args)
    except ScenarioError as exc:
        print("fastbgp loadtest: invalid scenario:\n  " + str(exc).replace("\n", "\n  "), file=sys.stderr)
        return 2
    if args.check:
        import msgspec

        sys.stdout.write(msgspec.json.format(msgspec.json.encode(sc), indent=2).decode() + "\n")
        return 0
    from fastbgp.loadtest.runner import run_sync

    # --json -: stdout carries the JSON report only, the table goes to stderr.
    console = Console(stderr=sc.report == "-")
    try:
        rep = run_sync(sc, Console(stderr=True))
    except KeyboardInterrupt:
        print("fastbgp loadtest: interrupted", file=sys.stderr)
        return 130
    except (OSError, RuntimeError, ValueError) as exc:
        print("fastbgp loadtest: %s" % exc, file=sys.stderr)
        return 1
    R.render_table(rep, console)
    if sc.report:
        R.write_json(rep, sc.report)
    if sc.plot:
        why = R.plot(rep, sc.plot)
        if why:
            print("fastbgp loadtest: %s" % why, file=sys.stderr)
    failed = (rep.totals.established < rep.totals.peers or rep.totals.hold_expired
              or any(p.timed_out for p in rep.phases))
    return 1 if failed else 0


def standalone(argv=None):
    """``python -m fastbgp.loadtest.cli`` until the main CLI wires it in."""
    parser = argparse.ArgumentParser(prog="fastbgp")
    sub = parser.add_subparsers(dest="command", required=True)
    add_parser(sub)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(standalone())
