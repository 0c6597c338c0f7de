"""The ``fastbgp`` command line.

Client commands talk to a running daemon over its HTTP/JSON API
(:mod:`fastbgp.control.api`) and use GoBGP's verbs::

    fastbgp neighbor                                  # the neighbour table
    fastbgp neighbor 192.0.2.2                        # one neighbour in detail
    fastbgp neighbor 192.0.2.2 adj-in -a ipv6         # its Adj-RIB-In
    fastbgp neighbor 192.0.2.2 disable --message "maintenance"
    fastbgp neighbor 192.0.2.2 softreset in
    fastbgp global rib [-a ipv4|ipv6] [PREFIX|ADDRESS]
    fastbgp global rib summary
    fastbgp global rib add 198.51.100.0/24 nexthop 192.0.2.1 aspath "65000 65001" \\
        community 65000:1 no-export med 10 local-pref 200
    fastbgp global rib del 198.51.100.0/24            # or: del all
    fastbgp monitor [global rib | neighbor [ADDR]]    # one line per event
    fastbgp reload
    fastbgp log-level debug
    fastbgp mrt inject rib.20240101.0000.bz2 [--nexthop ADDR] [--only-peer N|ADDR] [-a ipv4|ipv6]

Where the daemon is: ``--socket PATH`` (env FASTBGP_API_SOCKET, default
/run/fastbgp/fastbgp.sock), or ``--url http://HOST:PORT`` (env
FASTBGP_API_URL) with ``--token`` (env FASTBGP_API_TOKEN) for the TCP
listener.  ``-j/--json`` prints the API's JSON instead of tables.  These
options go before or after the command.

Other commands: ``daemon -c FILE`` runs the speaker, ``bench codec``,
``mrt ...`` and ``loadtest ...`` (when those modules are installed).

Exit status: 0 success, 1 failure (daemon unreachable, an error answer), 2
bad usage.
"""

import argparse
import ipaddress
import os
import sys
import time
import types

from fastbgp.cli.common import ApiError, CliError, UsageError, client, client_options, console, duration, table
from fastbgp.wire.families import UNICAST, UNICAST_NAMES, UnknownFamily, family_name, parse_family, unicast_family

# Only what every invocation needs is imported at the top, here and in the
# subcommand modules: `fastbgp --help` and `fastbgp mrt dump` should not pay
# for aiohttp and rich.


def _bench_codec(args):
    from rich.console import Console
    from rich.table import Table

    from fastbgp.wire import bench, codec

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


# ===================================================================== output


_console = console
_table = table
_duration = duration


def _write(data: bytes):
    sys.stdout.buffer.write(data) if hasattr(sys.stdout, "buffer") else sys.stdout.write(data.decode())


def _print_json(value):
    import msgspec

    _write(msgspec.json.encode(value) + b"\n")
    sys.stdout.flush()


_STATE = {
    "idle": "Idle",
    "connect": "Connect",
    "active": "Active",
    "opensent": "Sent",
    "openconfirm": "Confirm",
    "established": "Establ",
}

_STATE_LONG = {
    "idle": "Idle",
    "connect": "Connect",
    "active": "Active",
    "opensent": "OpenSent",
    "openconfirm": "OpenConfirm",
    "established": "Established",
}


def _state(n):
    s = _STATE.get(n.state, n.state)
    return s + "(Admin)" if n.admin_down else s


def _as_path(path):
    out = []
    for a in path:
        if isinstance(a, list):  # an AS_SET
            out.append("{" + " ".join(str(x) for x in a) + "}")
        else:
            out.append(str(a))
    return " ".join(out)


def _attrs(r):
    parts = ["{Origin: %s}" % {"igp": "i", "egp": "e", "incomplete": "?"}.get(r.origin, r.origin)]
    if r.med is not None:
        parts.append("{Med: %d}" % r.med)
    if r.local_pref is not None:
        parts.append("{LocalPref: %d}" % r.local_pref)
    if r.communities:
        parts.append("{Communities: %s}" % ", ".join(str(c) for c in r.communities))
    if r.large_communities:
        parts.append("{LargeCommunity: %s}" % ", ".join(str(c) for c in r.large_communities))
    if r.ext_communities:
        parts.append("{Extcomms: %s}" % ", ".join(str(c) for c in r.ext_communities))
    if r.stale:
        parts.append("{Stale}")
    return "[" + " ".join(parts) + "]"


_RIB_COLUMNS = ("", "Network", "Next Hop", "AS_PATH", "Age", "Attrs")


def _route_row(r, with_id=False):
    net = r.prefix if not (with_id and r.path_id) else "%s (id %d)" % (r.prefix, r.path_id)
    # GoBGP's RPKI mark before the best-path flag: V(alid), I(nvalid), N(ot found).
    mark = {"valid": "V", "invalid": "I", "not-found": "N"}.get(getattr(r, "rpki", None), "")
    return (mark + ("*>" if r.best else "* "), net, r.next_hop or "", _as_path(r.as_path), _duration(r.age) if r.age is not None else "-", _attrs(r))


# Above this many routes the human RIB view stops building a rich table (it
# holds every row) and prints aligned lines as they stream in.
TABLE_MAX_ROWS = 5000


def _print_routes(rows):
    """A rich table of route rows (tuples of _route_row)."""
    if not rows:
        print("Network not in table")
        return
    t = _table(*_RIB_COLUMNS)
    for row in rows:
        t.add_row(*row)
    _console().print(t)


def _start_plain_routes(rows):
    """For tables too big for rich: print the header and ``rows`` aligned on
    the widths of these first rows, and return the function that formats
    the rows still to come the same way."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(_RIB_COLUMNS)]

    def line(row):
        return "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip()

    out = sys.stdout
    out.write(line(_RIB_COLUMNS) + "\n")
    for row in rows:
        out.write(line(row) + "\n")
    return line


# =================================================================== commands

def _family(args, default="ipv4-unicast"):
    """-a as a canonical family name (the daemon runs the unicast ones)."""
    fam = getattr(args, "family", None)
    if fam is None:
        return default
    try:
        return family_name(parse_family(fam, UNICAST))
    except UnknownFamily as exc:
        raise UsageError("-a: %s" % exc) from None


def _addr(text):
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise UsageError("%r is not a neighbor address" % text) from None


def _quote(addr):
    from urllib.parse import quote

    return quote(addr, safe="")


# ------------------------------------------------------------------ neighbor

_NEIGHBOR_ACTIONS = {
    "enable": ("enable", None),
    "disable": ("disable", None),
    "shutdown": ("disable", None),
    "reset": ("reset", None),
    "softreset": ("softreset", "both"),
    "softresetin": ("softreset", "in"),
    "softresetout": ("softreset", "out"),
}


async def _cmd_neighbor(args):
    from fastbgp.control import contract as ctl

    words = list(args.words)
    async with client(args) as c:
        if not words:
            if args.json:
                _write(await c.request("GET", "/v1/neighbors", raw=True) + b"\n")
                return 0
            _print_neighbors(await c.request("GET", "/v1/neighbors", type=list[ctl.NeighborSummary]))
            return 0
        addr = _addr(words.pop(0))
        base = "/v1/neighbors/" + _quote(addr)
        if not words:
            if args.json:
                _write(await c.request("GET", base, raw=True) + b"\n")
                return 0
            _print_neighbor(await c.request("GET", base, type=ctl.NeighborDetail))
            return 0
        verb = words.pop(0).lower()
        if verb == "policy":
            if words:
                raise UsageError("unexpected %r after policy" % " ".join(words))
            detail = await c.request("GET", base, type=ctl.NeighborDetail)
            if args.json:
                _print_json({"address": detail.address, "import_policy": detail.import_policy,
                             "export_policy": detail.export_policy, "default_import": detail.default_import,
                             "default_export": detail.default_export})
                return 0
            from fastbgp.cli import show

            info = await c.request("GET", "/v1/policy", type=ctl.PolicyInfo)
            show.print_neighbor_policy(detail, info.policies)
            return 0
        if verb in ("adj-in", "adj-out"):
            prefix = words.pop(0) if words else None
            if words:
                raise UsageError("unexpected %r after %s" % (" ".join(words), verb))
            path = "%s/%s/%s" % (base, verb, _family(args))
            if args.json and prefix is None:
                _write(await c.request("GET", path, raw=True) + b"\n")
                return 0
            routes = await c.request("GET", path, type=list[ctl.Route])
            if prefix is not None:
                key = _net(prefix)
                routes = [r for r in routes if _same_net(r.prefix, key)]
            if args.json:
                _print_json(routes)
            else:
                _print_routes([_route_row(r, True) for r in routes])
            return 0
        if verb not in _NEIGHBOR_ACTIONS:
            raise UsageError("unknown neighbor command %r (use adj-in, adj-out, policy, enable, disable, reset, softreset)"
                             % verb)
        action, direction = _NEIGHBOR_ACTIONS[verb]
        body = {}
        if action == "softreset":
            if words and words[0].lower() in ("in", "out", "both"):
                if direction != "both":
                    raise UsageError("%s takes no direction" % verb)
                direction = words.pop(0).lower()
            body["direction"] = direction
        elif args.message:
            if action == "enable":
                raise UsageError("--message goes with disable or reset")
            body["message"] = args.message
        if words:
            raise UsageError("unexpected %r after %s" % (" ".join(words), verb))
        answer = await c.request("POST", "%s/%s" % (base, action), body=body)
        if args.json:
            _print_json(answer)
        else:
            what = {"enable": "enabled", "disable": "disabled", "reset": "reset",
                    "softreset": "soft reset (%s)" % direction}[action]
            print("neighbor %s %s" % (addr, what))
        return 0


def _net(text):
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise UsageError("%r is not an IP prefix" % text) from None


def _same_net(prefix, net):
    try:
        return ipaddress.ip_network(prefix, strict=False) == net
    except ValueError:
        return False


def _print_neighbors(neighbors):
    t = _table("Peer", "AS", "Up/Down", "State", "#Received", "Accepted", right=("AS", "Up/Down", "#Received", "Accepted"))
    for n in sorted(neighbors, key=_addr_key):
        updown = _duration(n.uptime if n.state == "established" else n.downtime)
        t.add_row(n.address, str(n.peer_as), updown, _state(n), str(n.prefixes_received), str(n.prefixes_accepted))
    _console().print(t)


def _addr_key(n):
    try:
        ip = ipaddress.ip_address(n.address)
        return (ip.version, int(ip))
    except ValueError:
        return (9, n.address)


def capability_names(caps):
    names = []
    for cap in caps or ():
        if isinstance(cap, dict):
            name = cap.get("kind", "?")
            if name == "multiprotocol" and "afi" in cap:
                name = "multiprotocol(%s/%s)" % (cap.get("afi"), cap.get("safi"))
            elif name == "unknown":
                # An uninterpreted capability: the code is all a user can look up.
                name = "unknown(%s)" % cap.get("code", "?")
            names.append(name)
        else:
            names.append(str(cap))
    return ", ".join(names) or "-"


def _print_neighbor(n):
    up = n.state == "established"
    lines = [
        "BGP neighbor is %s, remote AS %d, local AS %d" % (n.address, n.peer_as, n.local_as),
    ]
    if n.description:
        lines.append("  Description: %s" % n.description)
    lines.append("  BGP version 4, remote router ID %s" % (n.remote_id or "unknown"))
    st = "BGP state = %s%s" % (_STATE_LONG.get(n.state, n.state), " (admin down)" if n.admin_down else "")
    st += ", up for %s" % _duration(n.uptime) if up else (", down for %s" % _duration(n.downtime) if n.downtime is not None else "")
    lines.append("  " + st)
    lines.append("  Established %d time(s)" % n.established_count)
    if n.last_reason or n.last_error:
        lines.append("  Last reason: %s%s" % (n.last_reason or "-", ("; last error: %s" % n.last_error) if n.last_error else ""))
    if n.last_notification_sent:
        lines.append("  Last NOTIFICATION sent: %s" % n.last_notification_sent)
    if n.last_notification_received:
        lines.append("  Last NOTIFICATION received: %s" % n.last_notification_received)
    if n.hold_time is not None:
        lines.append("  Hold time is %d, keepalive interval is %s seconds" % (n.hold_time, n.keepalive if n.keepalive is not None else "-"))
    if n.local_address or n.remote_port:
        lines.append("  Local address %s, remote port %s" % (n.local_address or "-", n.remote_port or "-"))
    lines.append("  Import policy: %s (default %s)" % (", ".join(n.import_policy) or "-", n.default_import or "-"))
    lines.append("  Export policy: %s (default %s)" % (", ".join(n.export_policy) or "-", n.default_export or "-"))
    if n.prefix_limits:
        lines.append("  Prefix limits: %s" % "; ".join(
            "%s %d%s" % (p.family, p.max, ", restart after %d s" % p.restart_after if p.restart_after else "")
            for p in n.prefix_limits))
    else:
        lines.append("  Prefix limits: none")
    if n.rpki is not None:
        # RFC 6811 states of its post-policy paths, V/I/N as gobgp shows them.
        lines.append("  RPKI: V %d, I %d, N %d paths" % (
            n.rpki.get("valid", 0), n.rpki.get("invalid", 0), n.rpki.get("not-found", 0)))
    if up:
        lines.append("  Neighbor capabilities:")
        lines.append("    Families: %s" % (", ".join(n.families) or "-"))
        lines.append("    4-octet AS: %s, extended message: %s, graceful restart: %s"
                     % (_yes(n.four_octet_as), _yes(n.extended_message), _yes(n.graceful_restart)))
        if n.addpath_rx or n.addpath_tx:
            lines.append("    ADD-PATH receive: %s; send: %s" % (", ".join(n.addpath_rx) or "-", ", ".join(n.addpath_tx) or "-"))
        lines.append("    Sent: %s" % capability_names(n.capabilities_sent))
        lines.append("    Received: %s" % capability_names(n.capabilities_received))
    con = _console()
    for line in lines:
        con.print(line, markup=False)
    c = n.counters
    t = _table("  Message statistics:", "Sent", "Rcvd", right=("Sent", "Rcvd"))
    for label, key in (("Opens", "open"), ("Notifications", "notification"), ("Updates", "update"),
                       ("Keepalives", "keepalive"), ("Route Refresh", "refresh")):
        t.add_row("    " + label, str(getattr(c, "sent_" + key)), str(getattr(c, "received_" + key)))
    t.add_row("    Discarded", "", str(c.received_discarded))
    t.add_row("    Total", str(c.sent_total), str(c.received_total))
    con.print(t)
    con.print("  Route statistics:", markup=False)
    con.print("    Advertised: %10d" % n.prefixes_advertised, markup=False)
    con.print("    Received:   %10d" % n.prefixes_received, markup=False)
    con.print("    Accepted:   %10d" % n.prefixes_accepted, markup=False)
    con.print("  Connections refused: %d, closed half-open: %d" % (c.refused, c.half_open_closed), markup=False)
    con.print("  UPDATE errors handled (RFC 7606): treat-as-withdraw %d, attribute-discard %d; prefixes with our "
              "own next hop ignored: %d" % (c.treat_as_withdraw, c.attribute_discard, c.own_next_hop), markup=False)
    if c.rs_next_hop_rejected:
        con.print("  Route-server next-hop check: %d attribute sets rejected (next hop not the client's own)"
                  % c.rs_next_hop_rejected, markup=False)


def _yes(v):
    return "yes" if v else "no"


# -------------------------------------------------------------------- global

_KEYWORDS = {
    "nexthop": "next_hop", "next-hop": "next_hop",
    "aspath": "as_path", "as-path": "as_path",
    "origin": "origin",
    "community": "communities", "communities": "communities",
    "large-community": "large_communities", "large-communities": "large_communities", "largecommunity": "large_communities",
    "med": "med",
    "local-pref": "local_pref", "localpref": "local_pref", "local_pref": "local_pref",
}

_KEYWORD_LIST = "nexthop, aspath, origin, community, large-community, med, local-pref"


# The field of Announce a keyword sets -> its first spelling, for messages.
_WORD_OF_FIELD = {field: word for word, field in reversed(_KEYWORDS.items())}


def parse_route_words(words, family=None):
    """``PREFIX... [nexthop A] [aspath "A B"] [origin O] [community C...]
    [large-community L...] [med N] [local-pref N]`` -> Announce fields.
    The words are split here; their values are checked by
    :class:`fastbgp.control.contract.Announce`, as the API checks them.
    UsageError names the word that is wrong."""
    import msgspec

    from fastbgp.config.errors import explain
    from fastbgp.control import contract as ctl

    out = {"prefixes": []}
    i = 0
    while i < len(words) and words[i].lower() not in _KEYWORDS:
        if out["prefixes"] and "/" not in words[i]:
            raise UsageError("unknown word %r (expected a prefix or one of %s)" % (words[i], _KEYWORD_LIST))
        out["prefixes"].append(words[i])
        i += 1
    if not out["prefixes"]:
        raise UsageError("no prefix given")
    while i < len(words):
        kw = words[i].lower()
        field = _KEYWORDS.get(kw)
        if field is None:
            raise UsageError("unknown word %r (expected one of %s)" % (words[i], _KEYWORD_LIST))
        i += 1
        if field in out:
            raise UsageError("%s given twice" % kw)
        values = []
        if field in ("as_path", "communities", "large_communities"):
            # Several words until the next keyword; a quoted "65000 65001"
            # or commas work too (GoBGP's spellings).
            while i < len(words) and words[i].lower() not in _KEYWORDS:
                values.extend(v for v in words[i].replace(",", " ").split() if v)
                i += 1
                if field == "as_path" and values and not all(v.isdigit() for v in values):
                    break
        elif i < len(words):
            values = [words[i]]
            i += 1
        if not values and field != "as_path":
            raise UsageError("%s needs a value" % kw)
        if field == "origin":
            o = values[0].lower()
            out[field] = {"i": "igp", "e": "egp", "?": "incomplete"}.get(o, o)  # bgpdump's letters
        elif field in ("as_path", "communities", "large_communities"):
            out[field] = values
        else:
            out[field] = values[0]
    try:
        # strict=False: numbers arrive as words ("65000").
        req = msgspec.convert(out, ctl.Announce, strict=False)
    except msgspec.ValidationError as exc:
        path, problem = explain(exc, ctl.Announce, out)
        field, sep, rest = path.partition("[")
        raise UsageError("%s%s%s: %s" % (_WORD_OF_FIELD.get(field, field), sep, rest, problem)) from None
    if family is not None:
        for p in req.prefixes:
            if unicast_family(ipaddress.ip_network(p).version) != parse_family(family):
                raise UsageError("%s is not an %s prefix (-a)" % (p, family))
    return {f: getattr(req, f) for f in out}


async def _cmd_global(args):
    from fastbgp.control import contract as ctl

    words = list(args.words)
    if not words:
        async with client(args) as c:
            if args.json:
                _write(await c.request("GET", "/v1/global", raw=True) + b"\n")
                return 0
            from fastbgp.cli import show

            show.print_global(await c.request("GET", "/v1/global", type=ctl.GlobalInfo))
        return 0
    if words[0].lower() != "rib":
        raise UsageError("expected 'global' or 'global rib ...'")
    words.pop(0)
    verb = words[0].lower() if words else None
    async with client(args) as c:
        if verb == "summary":
            if len(words) > 1:
                raise UsageError("unexpected %r after summary" % " ".join(words[1:]))
            if args.json:
                _write(await c.request("GET", "/v1/rib/summary", raw=True) + b"\n")
                return 0
            rows = await c.request("GET", "/v1/rib/summary", type=list[ctl.RibSummary])
            if getattr(args, "family", None):
                fam = _family(args)
                rows = [r for r in rows if r.family == fam]
            t = _table("Family", "Prefixes", "Paths", "Attribute sets", right=("Prefixes", "Paths", "Attribute sets"))
            for r in rows:
                t.add_row(r.family, "{:,}".format(r.prefixes), "{:,}".format(r.paths), "{:,}".format(r.attribute_sets))
            _console().print(t)
            return 0
        if verb in ("add", "del", "delete", "withdraw"):
            return await _rib_change(c, args, verb, words[1:])
        return await _show_rib(c, args, words)


async def _rib_change(c, args, verb, words):
    from fastbgp.control import contract as ctl

    fam = _family(args, default=None)
    if verb != "add" and words and words[0].lower() == "all":
        if len(words) > 1:
            raise UsageError("unexpected %r after 'del all'" % " ".join(words[1:]))
        # Everything this daemon originates (source "local") in the family,
        # or in both when no -a was given.
        prefixes = []
        for f in ([fam] if fam else UNICAST_NAMES):
            # Only our own routes travel, whatever the size of the table.
            routes = await c.request("GET", "/v1/rib/" + f, params={"source": "local"}, type=list[ctl.Route])
            prefixes.extend(r.prefix for r in routes)
        if not prefixes:
            print("nothing originated to withdraw")
            return 0
        fields = {"prefixes": prefixes}
    else:
        fields = parse_route_words(words, fam)
        if verb != "add":
            # `del` takes the same line as `add` (handy when editing the
            # previous command); only the prefixes matter.
            fields = {"prefixes": fields["prefixes"]}
    path = "/v1/rib/announce" if verb == "add" else "/v1/rib/withdraw"
    answer = await c.request("POST", path, body=fields)
    if args.json:
        _print_json(answer)
    else:
        n = answer.get("count", len(fields["prefixes"])) if isinstance(answer, dict) else answer
        print("%s %d prefix%s" % ("announced" if verb == "add" else "withdrew", n, "" if n == 1 else "es"))
    return 0


async def _show_rib(c, args, words):
    import msgspec

    from fastbgp.cli import show
    from fastbgp.control import contract as ctl

    params = show.rib_query_words(words)
    key = params.get("prefix")
    if key is not None:
        try:
            version = ipaddress.ip_network(key, strict=False).version
        except ValueError:
            raise UsageError("%r is not a prefix or address" % key) from None
        fam = _family(args, default=family_name(unicast_family(version)))
    else:
        fam = _family(args)
    path = "/v1/rib/" + fam
    # Filtered by the daemon (contract.RibQuery): only the matching rows
    # travel, and they are printed as they stream in.
    if args.json:
        async for chunk in c.chunks(path, params=params or None):
            _write(chunk)
        _write(b"\n")
        return 0
    decoder = msgspec.json.Decoder(ctl.Route)
    rows = []
    line = None
    async for raw in c.lines(path, params={**params, "stream": "1"}):
        row = _route_row(decoder.decode(raw))
        if line is not None:
            sys.stdout.write(line(row) + "\n")
        else:
            rows.append(row)
            if len(rows) > TABLE_MAX_ROWS:
                line = _start_plain_routes(rows)
                rows = None
    if line is None:
        _print_routes(rows)
    return 0


# ------------------------------------------------------------------- monitor


def _event_line(ev):
    from fastbgp.control import contract as ctl

    ts = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ev.time)) if isinstance(ev.time, (int, float)) else "-"
    if isinstance(ev, ctl.StateChange):
        return "%s [STATE] %s %s -> %s%s" % (ts, ev.neighbor, ev.old, ev.new, " (%s)" % ev.reason if ev.reason else "")
    if isinstance(ev, ctl.BestChange):
        r = ev.route
        if r is None:
            return "%s [DELROUTE] %s %s" % (ts, ev.family, ev.prefix)
        return "%s [ROUTE] %s %s via %s aspath [%s] %s from %s" % (
            ts, ev.family, ev.prefix, r.next_hop or "-", _as_path(r.as_path), _attrs(r), r.source or "-")
    if isinstance(ev, ctl.UpdateReceived):
        # The prefixes themselves (the first ones of a large UPDATE), each
        # marked as birdc marks them: + announced, - withdrawn.
        shown = ["+" + p for p in ev.prefixes] + ["-" + p for p in ev.withdrawn_prefixes]
        more = ev.announced + ev.withdrawn - len(shown)
        if more > 0 and shown:
            shown.append("(%d more)" % more)
        return "%s [UPDATE] %s +%d -%d%s" % (ts, ev.neighbor, ev.announced, ev.withdrawn,
                                            (" " + " ".join(shown)) if shown else "")
    import msgspec

    return "%s [%s] %s" % (ts, type(ev).__name__.upper(), msgspec.json.encode(ev).decode())


def _monitor_filter(words):
    """GoBGP's ``monitor global rib`` / ``monitor neighbor [ADDR]``."""
    if not words:
        return lambda kind, doc: True
    what = words[0].lower()
    if what == "global" and words[1:2] and words[1].lower() == "rib" and len(words) == 2:
        return lambda kind, doc: kind == "bestchange"
    if what in ("neighbor", "neighbour") and len(words) <= 2:
        addr = _addr(words[1]) if len(words) == 2 else None
        return lambda kind, doc: kind in ("statechange", "updatereceived") and (addr is None or doc.get("neighbor") == addr)
    raise UsageError("use: monitor [global rib | neighbor [ADDR]]")


async def _cmd_monitor(args):
    import msgspec

    from fastbgp.control import contract as ctl

    keep = _monitor_filter(list(args.words))
    decoder = msgspec.json.Decoder(ctl.AnyEvent)
    seen = 0
    async with client(args) as c:
        async for raw in c.lines("/v1/watch"):
            try:
                doc = msgspec.json.decode(raw)
            except msgspec.DecodeError:
                continue
            kind = doc.get("event") if isinstance(doc, dict) else None
            if not keep(kind, doc):
                continue
            if args.json:
                _write(raw + b"\n")
            else:
                try:
                    line = _event_line(decoder.decode(raw))
                except msgspec.ValidationError:
                    line = raw.decode(errors="replace")  # an event kind newer than this CLI
                sys.stdout.write(line + "\n")
            sys.stdout.flush()
            seen += 1
            if args.count and seen >= args.count:
                return 0
    print("fastbgp: the daemon closed the watch stream", file=sys.stderr)
    return 1


# ------------------------------------------------------- policy, defined-set


async def _cmd_policy(args):
    from fastbgp.cli import show
    from fastbgp.control import contract as ctl

    async with client(args) as c:
        info = await c.request("GET", "/v1/policy", type=ctl.PolicyInfo)
    if args.json:
        pols = info.policies if args.name is None else [p for p in info.policies if p.get("name") == args.name]
        _print_json(pols)
        return 0
    show.print_policies(info, args.name)
    return 0


async def _cmd_defined_set(args):
    from fastbgp.cli import show
    from fastbgp.control import contract as ctl

    kinds = {k[0]: k[1] for k in show.SET_KINDS}
    if args.kind is not None and args.kind not in kinds:
        raise UsageError("unknown kind %r (use %s)" % (args.kind, ", ".join(kinds)))
    async with client(args) as c:
        info = await c.request("GET", "/v1/policy", type=ctl.PolicyInfo)
    if args.json:
        sets = info.defined_sets
        if args.kind is not None:
            sets = {kinds[args.kind]: [s for s in sets.get(kinds[args.kind]) or []
                                       if args.name is None or s.get("name") == args.name]}
        _print_json(sets)
        return 0
    show.print_defined_sets(info, args.kind, args.name)
    return 0


# --------------------------------------------------------- reload, log-level


async def _cmd_reload(args):
    async with client(args) as c:
        try:
            answer = await c.request("POST", "/v1/reload")
        except ApiError as exc:
            if exc.status == 400:
                raise CliError(str(exc)) from None
            raise
    if args.json:
        _print_json(answer)
        return 0
    if isinstance(answer, dict) and answer:
        print("configuration reloaded")
        _print_change(answer)
    else:
        print("configuration reloaded: no change")
    return 0


def _print_change(answer, indent="  "):
    # The daemon answers with what the reload did (config.ConfigDiff as a
    # dict); contract.change_lines words it as the daemon's log does.
    from fastbgp.control.contract import change_lines

    for line in change_lines(answer):
        print(indent + line)


def _log_level(text):
    """argparse type of a log level: checked by control.logs, which is only
    imported when a level is given."""
    from fastbgp.control import logs

    try:
        return logs.level_name(logs.parse_level(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


async def _cmd_log_level(args):
    async with client(args) as c:
        answer = await c.request("POST", "/v1/log-level", body={"level": args.level})
    if args.json:
        _print_json(answer)
    else:
        print("log level set to %s" % answer.get("level", args.level))
    return 0


# -------------------------------------------------------------------- daemon


def _cmd_daemon(args):
    if args.check:
        from fastbgp.config.checks import load_config
        from fastbgp.config.errors import ConfigError

        try:
            load_config(args.config)
        except ConfigError as exc:
            print("%s: configuration rejected:\n%s" % (args.config, exc), file=sys.stderr)
            return 1
        except OSError as exc:
            raise CliError("cannot read %s: %s" % (args.config, exc.strerror or exc)) from None
        print("%s: configuration OK" % args.config)
        return 0
    # Imported here: the daemon pulls in the whole speaker, which a client
    # command has no use for.
    from fastbgp.daemon.process import main_daemon

    return main_daemon(args)


# ==================================================================== parser


def _add_optional(sub, module, command):
    """Wire ``fastbgp COMMAND`` from a teammate's module when it is installed.
    A module that exists but fails to import still gets its command, which
    reports the import error, rather than breaking every other command."""
    import importlib.util

    try:
        present = importlib.util.find_spec(module) is not None
    except ImportError:
        present = False
    if not present:
        return
    try:
        mod = importlib.import_module(module)
        mod.add_parser(sub)
    except Exception as exc:  # noqa: BLE001 - any failure there must not break the CLI
        err = "%s: %s" % (type(exc).__name__, exc)
        p = sub.add_parser(command, help="(unavailable: %s)" % err)
        p.add_argument("rest", nargs=argparse.REMAINDER)

        def broken(args, err=err):
            raise CliError("`fastbgp %s` is unavailable: %s" % (command, err))

        p.set_defaults(func=broken)


# Subcommands living in their own modules, imported only when their word is
# on the command line (or for a full parser, argv None): `fastbgp mrt dump`
# never pays for the demo, `fastbgp global` never for the MRT reader.
# (word, module, help line shown by `fastbgp -h` without importing it)
LAZY_COMMANDS = (
    ("demo", "fastbgp.cli.demo", "daemon plus load test on loopback: prints a result table"),
    ("mrt", "fastbgp.cli.mrt", "read MRT dumps (RFC 6396)"),
    ("rpki", "fastbgp.cli.rpki", "RPKI: RTR caches, VRP counts, validate a prefix"),
)


def _add_lazy(sub, argv):
    import importlib

    for word, module, help_text in LAZY_COMMANDS:
        if argv is None or word in argv:
            importlib.import_module(module).add_parser(sub)
        else:
            sub.add_parser(word, help=help_text)


def build_parser(argv=None):
    parser = argparse.ArgumentParser(
        prog="fastbgp", description="BGP-4 speaker with a compiled hot path",
        epilog="`fastbgp COMMAND -h` for each command's words.")
    client_options(parser, suppress=False)
    common = argparse.ArgumentParser(add_help=False)
    client_options(common, suppress=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    n = sub.add_parser(
        "neighbor", aliases=["neighbour"], parents=[common], help="neighbours: list, show, RIBs, enable/disable/reset",
        usage="fastbgp neighbor [ADDR [adj-in|adj-out [PREFIX] | policy | enable | disable | reset | "
              "softreset [in|out]]] [-a FAMILY] [-m TEXT] [-j]")
    n.add_argument("words", nargs="*", metavar="ARG", help=argparse.SUPPRESS)
    n.add_argument("-a", "--address-family", dest="family", metavar="FAMILY", help="ipv4 (default) or ipv6")
    n.add_argument("-m", "--message", default="", metavar="TEXT",
                   help="shutdown communication sent with disable/reset (RFC 9003)")
    n.set_defaults(func=_cmd_neighbor, words_command=True, subparser=n)

    g = sub.add_parser(
        "global", parents=[common], help="the daemon (AS, router id, listeners, RIB sizes) and its Loc-RIB",
        usage="fastbgp global [-j]\n"
              "       fastbgp global rib [PREFIX|ADDRESS [longer-prefixes|shorter-prefixes|longest-match]] "
              "[community C] [large-community L] [aspath REGEX] [origin-as N] [source ADDR|local] [limit N] [offset N] "
              "[-a FAMILY] [-j]\n"
              "       fastbgp global rib summary [-a FAMILY] [-j]\n"
              "       fastbgp global rib add PREFIX... [nexthop A] [aspath \"A B\"] [origin igp|egp|incomplete] "
              "[community C...] [large-community L...] [med N] [local-pref N] [-a FAMILY]\n"
              "       fastbgp global rib del PREFIX...|all [-a FAMILY]")
    g.add_argument("words", nargs="*", metavar="ARG", help=argparse.SUPPRESS)
    g.add_argument("-a", "--address-family", dest="family", metavar="FAMILY", help="ipv4 (default) or ipv6")
    g.set_defaults(func=_cmd_global, words_command=True, subparser=g)

    m = sub.add_parser("monitor", parents=[common], help="follow events: state changes, best-path changes, updates",
                       usage="fastbgp monitor [global rib | neighbor [ADDR]] [--count N] [-j]")
    m.add_argument("words", nargs="*", metavar="ARG", help=argparse.SUPPRESS)
    m.add_argument("--count", type=int, default=0, metavar="N", help="exit after N events")
    m.set_defaults(func=_cmd_monitor, words_command=True, subparser=m)

    pol = sub.add_parser("policy", parents=[common], help="the configured policies and who uses them",
                         usage="fastbgp policy [NAME] [-j]")
    pol.add_argument("name", nargs="?", metavar="NAME", help="one policy")
    pol.set_defaults(func=_cmd_policy)

    ds = sub.add_parser("defined-set", parents=[common], help="the configured defined sets (prefix, as-path, ...)",
                        usage="fastbgp defined-set [prefix|as-path|community|large-community [NAME]] [-j]")
    ds.add_argument("kind", nargs="?", metavar="KIND", help="prefix, as-path, community or large-community")
    ds.add_argument("name", nargs="?", metavar="NAME", help="one set")
    ds.set_defaults(func=_cmd_defined_set, subparser=ds)

    r = sub.add_parser("reload", parents=[common], help="re-read the daemon's configuration file")
    r.set_defaults(func=_cmd_reload)

    lv = sub.add_parser("log-level", parents=[common], help="change the daemon's log level")
    lv.add_argument("level", type=_log_level, help="debug, info, warning, error or critical")
    lv.set_defaults(func=_cmd_log_level)

    d = sub.add_parser("daemon", help="run the BGP speaker")
    d.add_argument("-c", "--config", required=True, metavar="FILE", help="TOML configuration file")
    d.add_argument("--log-level", type=_log_level, metavar="LEVEL",
                   help="override global.log.level")
    d.add_argument("--log-json", action="store_true", default=None, help="JSON log lines (overrides global.log.json)")
    d.add_argument("--check", action="store_true", help="only validate the configuration and exit")
    d.set_defaults(func=_cmd_daemon)

    b = sub.add_parser("bench", help="built-in benchmarks")
    bsub = b.add_subparsers(dest="what", required=True)
    bc = bsub.add_parser("codec", help="codec throughput, compiled vs pure-Python twin")
    bc.add_argument("--table-size", type=int, default=1_000_000, help="prefixes in the full-table case (default 1,000,000)")
    bc.add_argument("--repeat", type=int, default=5, help="rounds per measurement; the median is shown (default 5)")
    bc.add_argument("--min-time", type=float, default=0.2, help="seconds per round at least (default 0.2)")
    bc.add_argument("-j", "--json", action="store_true", help="print JSON instead of a table")
    bc.set_defaults(func=_bench_codec)

    _add_lazy(sub, argv)
    _add_optional(sub, "fastbgp.loadtest.cli", "loadtest")
    _name_subcommands(parser)
    return parser


def _name_subcommands(parser):
    """Every nested sub-command slot without a metavar gets its choices as
    one: argparse would otherwise name it by its internal ``dest`` in
    "the following arguments are required: mrt_command"."""
    for action in parser._actions:  # argparse has no public walk of its actions
        if action.nargs == argparse.PARSER:
            if action.metavar is None:
                action.metavar = "{%s}" % ",".join(action.choices)
            for sub in set(action.choices.values()):
                _name_subcommands(sub)


def _parse(parser, argv):
    # parse_known_args so that options may sit among a command's words
    # (`global rib add P -a ipv6 nexthop X`): argparse stops filling the
    # words at the first option and hands back the rest, which go after.
    args, extra = parser.parse_known_args(argv)
    if extra:
        if getattr(args, "words_command", False):
            bad = [w for w in extra if w.startswith("--")]
            if bad:
                parser.error("unrecognized arguments: %s" % " ".join(bad))
            args.words = list(args.words) + extra
        else:
            parser.error("unrecognized arguments: %s" % " ".join(extra))
    return args


def main(argv=None):
    if argv is None:
        argv = sys.argv[1:]
    parser = build_parser(argv)
    args = _parse(parser, argv)
    if getattr(args, "table_size", 1) <= 0:
        parser.error("--table-size must be positive")
    try:
        result = args.func(args)
        if isinstance(result, types.CoroutineType):
            # asyncio costs ~30 ms to import: only commands that talk to the daemon pay it.
            import asyncio

            result = asyncio.run(result)
        return result
    except UsageError as exc:
        sub = getattr(args, "subparser", None) or parser
        sub.print_usage(sys.stderr)
        print("%s: error: %s" % (sub.prog, exc), file=sys.stderr)
        return 2
    except CliError as exc:
        print("fastbgp: %s" % exc, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `fastbgp global rib | head`: the reader went away, which is fine;
        # point stdout at /dev/null so the flush at exit does not fail too.
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError, AttributeError):
            pass
        return 0


if __name__ == "__main__":
    sys.exit(main())
