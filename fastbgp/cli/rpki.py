"""``fastbgp rpki``: the daemon's RPKI data (``GET /v1/rpki``) and
``fastbgp rpki validate PREFIX ASN`` (``GET /v1/rpki/validate``).

Shows the RTR caches (transport, state, version, session id, serial, timers, last
update, last error), the JSON file, VRP counts per family, ASPA records and
the Loc-RIB's best paths per RFC 6811 state.  Registered lazily by
``fastbgp.cli.main`` (imported only when the word is on the command line).
"""

from __future__ import annotations

import argparse
import sys
import time

from fastbgp.cli.common import UsageError, client, client_options, console, duration, table

USAGE = "fastbgp rpki [-j]\n       fastbgp rpki validate PREFIX ASN [-j]"


def add_parser(sub):
    common = argparse.ArgumentParser(add_help=False)
    client_options(common, suppress=True)
    p = sub.add_parser("rpki", parents=[common], help="RPKI: RTR caches, VRP counts, validate a prefix",
                       usage=USAGE)
    p.add_argument("words", nargs="*", metavar="ARG", help=argparse.SUPPRESS)
    p.set_defaults(func=run, words_command=True, subparser=p)
    return p


def _ago(t, now):
    return "never" if t is None else "%s ago" % duration(now - t)


def _json(value):
    import msgspec

    sys.stdout.buffer.write(msgspec.json.encode(value) + b"\n")
    sys.stdout.flush()


async def run(args):
    from fastbgp.control import contract as ctl

    words = list(args.words)
    if words and words[0] == "validate":
        if len(words) != 3:
            raise UsageError("validate takes PREFIX ASN")
        asn = words[2][2:] if words[2][:2].upper() == "AS" else words[2]
        async with client(args) as c:
            res = await c.request("GET", "/v1/rpki/validate", params={"prefix": words[1], "asn": asn},
                                  type=ctl.RpkiValidation)
        if args.json:
            _json(res)
        else:
            print("%s from AS%d: %s" % (res.prefix, res.origin_as, res.state))
        return 0
    if words:
        raise UsageError("unknown words: %s" % " ".join(words))
    async with client(args) as c:
        info = await c.request("GET", "/v1/rpki", type=ctl.RpkiInfo)
    if args.json:
        _json(info)
        return 0
    print_info(info)
    return 0


def print_info(info, now=None):
    now = time.time() if now is None else now
    if not info.enabled:
        print("RPKI is not configured ([rpki] section)")
        return
    out = console()
    if info.caches:
        t = table("Cache", "Transport", "Pref", "State", "Version", "Session", "Serial", "Refresh/Retry/Expire", "Last update",
                  "Last error")
        for c in info.caches:
            t.add_row("%s:%d%s" % (c.address, c.port, " *" if c.source else ""), c.transport, str(c.preference),
                      c.state,
                      "-" if c.version is None else str(c.version),
                      "-" if c.session_id is None else str(c.session_id),
                      "-" if c.serial is None else str(c.serial),
                      "%d/%d/%d" % (c.refresh, c.retry, c.expire), _ago(c.last_update, now), c.last_error or "")
        out.print(t)
    if info.file:
        state = "error: %s" % info.file_error if info.file_error else "loaded %s" % _ago(info.file_loaded, now)
        print("File: %s (%s)" % (info.file, state))
    print("VRPs: %s; ASPA records: %d; last change %s" % (
        ", ".join("%s %d" % (k, v) for k, v in sorted(info.vrps.items())) or "none", info.aspas,
        _ago(info.last_update, now)))
    if info.routes:
        print("Best paths: %s" % ", ".join("%s %d" % (k, info.routes.get(k, 0))
                                          for k in ("valid", "invalid", "not-found")))
    print("Paths re-validated after changes: %d" % info.revalidated)
