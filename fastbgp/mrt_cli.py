"""``fastbgp mrt ...``: command line for MRT files (RFC 6396).

The lead wires it in with ``mrt_cli.add_parser(subparsers)`` from
fastbgp/cli.py; ``python -m fastbgp.mrt_cli dump FILE`` works on its own.
"""

import argparse
import sys


def _dump(args):
    import gc

    # No reference cycles to find here; the collector only slows start-up
    # (the imports below) and the dump (dump() itself pauses it too).
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _run_dump(args)
    finally:
        if was_enabled:
            gc.enable()


def _run_dump(args):
    from . import mrt_dump

    codec = None
    if args.codec:
        from . import codec as selector

        codec = selector.load(args.codec)
    out = sys.stdout
    files = [sys.stdin.buffer if f == "-" else f for f in args.files]
    try:
        problems = mrt_dump.dump(files, fmt=args.format, out=out, codec=codec)
        out.flush()
    except BrokenPipeError:
        # `fastbgp mrt dump x | head`: the reader went away, which is fine;
        # point stdout at /dev/null so the flush at exit does not fail too.
        import os

        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())
        except (OSError, ValueError, AttributeError):
            pass
        return 0
    except OSError as exc:
        print("fastbgp mrt dump: %s" % exc, file=sys.stderr)
        return 2
    return 1 if problems else 0


def add_parser(subparsers):
    """Add ``mrt`` (with ``dump``) to an argparse subparsers object."""
    p = subparsers.add_parser("mrt", help="read MRT dumps (RFC 6396)")
    sub = p.add_subparsers(dest="mrt_command", required=True)
    d = sub.add_parser(
        "dump",
        help="print MRT records, one line per route (bgpdump -m) or JSON lines",
        description="Print the records of MRT files (gzip, bzip2, xz or plain). "
        "-m (the default) writes bgpdump's one-line format exactly; -j writes one JSON object per record. "
        "Exit status 1 when a file had corrupt or truncated records (they are reported on stderr).",
    )
    d.add_argument("files", nargs="+", metavar="FILE", help="MRT file(s); '-' reads standard input")
    fmt = d.add_mutually_exclusive_group()
    fmt.add_argument("-m", dest="format", action="store_const", const="m", help="bgpdump -m one-line format (default)")
    fmt.add_argument("-j", dest="format", action="store_const", const="j", help="one JSON object per record")
    d.add_argument("--codec", choices=("cython", "python"), help="force a codec implementation (default: the compiled one)")
    d.set_defaults(format="m", func=_dump)
    return p


def main(argv=None):
    parser = argparse.ArgumentParser(prog="fastbgp")
    add_parser(parser.add_subparsers(dest="command", required=True))
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] != "mrt" and not argv[0].startswith("-"):
        argv.insert(0, "mrt")  # python -m fastbgp.mrt_cli dump FILE
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
