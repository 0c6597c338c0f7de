"""The ``fastbgp`` command line."""

import argparse
import sys


def _bench_codec(args):
    from rich.console import Console
    from rich.table import Table

    from . import bench, codec

    impls = []
    for name in ("cython", "python"):
        try:
            impls.append(codec.load(name))
        except ImportError as exc:
            print("fastbgp: the %s codec is not available (%s)" % (name, exc), file=sys.stderr)
    console = Console()
    console.print("Codec throughput, median of %d rounds: %s" % (args.repeat, bench.machine()))
    rows = bench.run(impls, table_size=args.table_size, repeat=args.repeat, min_time=args.min_time)
    if args.json:
        import msgspec

        sys.stdout.write(msgspec.json.encode([{"case": c, "op": op, "prefixes_per_s": r} for c, op, r in rows]).decode() + "\n")
        return 0
    table = Table(title="fastbgp codec: prefixes per second (one core)")
    table.add_column("case")
    table.add_column("op")
    for impl in impls:
        table.add_column(impl.IMPLEMENTATION, justify="right")
    if len(impls) == 2:
        table.add_column("ratio", justify="right")
    for case, op, rates in rows:
        cells = ["{:,.0f}".format(rates[i.IMPLEMENTATION]) for i in impls]
        if len(impls) == 2:
            cells.append("%.0fx" % (rates["cython"] / rates["python"]))
        table.add_row(case, op, *cells)
    console.print(table)
    return 0


def build_parser():
    parser = argparse.ArgumentParser(prog="fastbgp", description="BGP-4 speaker with a compiled hot path")
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("bench", help="built-in benchmarks")
    bsub = b.add_subparsers(dest="what", required=True)
    bc = bsub.add_parser("codec", help="codec throughput, compiled vs pure-Python twin")
    bc.add_argument("--table-size", type=int, default=1_000_000, help="prefixes in the full-table case (default 1,000,000)")
    bc.add_argument("--repeat", type=int, default=5, help="rounds per measurement; the median is shown (default 5)")
    bc.add_argument("--min-time", type=float, default=0.2, help="seconds per round at least (default 0.2)")
    bc.add_argument("-j", "--json", action="store_true", help="print JSON instead of a table")
    bc.set_defaults(func=_bench_codec)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "table_size", 1) <= 0:
        parser.error("--table-size must be positive")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
