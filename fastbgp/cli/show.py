"""Read-only views of the ``fastbgp`` command line that have no GoBGP table
of their own to mimic line for line: ``fastbgp global`` (the daemon as a
whole), ``fastbgp policy``, ``fastbgp defined-set`` and ``fastbgp neighbor
ADDR policy`` (what is configured), and the filter words of ``global rib``.

Imported by :mod:`fastbgp.cli.main` only when one of those commands runs;
rich is imported when a table is printed.
"""

from fastbgp.cli.common import CliError, UsageError, console as _console, duration as _duration, table as _table

__all__ = [
    "print_global",
    "print_policies",
    "print_defined_sets",
    "print_neighbor_policy",
    "rib_query_words",
    "SET_KINDS",
    "RIB_FILTER_WORDS",
]


# ------------------------------------------------------------------- global


def print_global(g):
    """``fastbgp global``: GoBGP's ``global`` lines, then the RIB sizes and
    the refused-connection counters."""
    con = _console()
    for label, value in (
        ("AS", str(g.asn)),
        ("Router-ID", g.router_id),
        ("Listening Port", ", ".join(g.listen) or "none (outbound only)"),
        ("Uptime", _duration(g.uptime)),
        ("Workers", "%d (each holds 1/%d of the prefixes)" % (g.workers, g.workers) if g.workers > 1 else "1"),
        ("Neighbors", "%d configured, %d established" % (g.neighbors, g.established)),
        ("Refused connections", "%d from unconfigured addresses, %d from neighbours, %d half-open closed"
         % (g.refused_unknown, g.refused_neighbors, g.half_open_closed)),
    ):
        con.print("%-20s %s" % (label + ":", value), markup=False)
    if g.ribs:
        con.print("")
        t = _table("Family", "Prefixes", "Paths", "Attribute sets", right=("Prefixes", "Paths", "Attribute sets"))
        for r in g.ribs:
            t.add_row(r.family, "{:,}".format(r.prefixes), "{:,}".format(r.paths), "{:,}".format(r.attribute_sets))
        con.print(t)


# ------------------------------------------------------------------ policies


def _ref(value):
    """A set reference of a condition: "name" or {"name", "match"}."""
    if isinstance(value, dict):
        return "%s %s" % (value.get("match", "any"), value.get("name", "?"))
    return "any %s" % value


def _condition_lines(cond):
    out = []
    for key, label in (("prefix-set", "PrefixSet"), ("as-path-set", "AsPathSet"),
                       ("community-set", "CommunitySet"), ("large-community-set", "LargeCommunitySet")):
        if cond.get(key) is not None:
            out.append("%-18s %s" % (label + ":", _ref(cond[key])))
    if cond.get("neighbor"):
        out.append("%-18s %s" % ("Neighbor:", ", ".join(cond["neighbor"])))
    if cond.get("family"):
        out.append("%-18s %s" % ("Family:", ", ".join(cond["family"])))
    if cond.get("origin"):
        out.append("%-18s %s" % ("Origin:", cond["origin"]))
    return out


def _community_action(label, a):
    parts = []
    if a.get("replace") is not None:
        parts.append("replace %s" % (", ".join(a["replace"]) or "(none)"))
    if a.get("add"):
        parts.append("add %s" % ", ".join(a["add"]))
    if a.get("remove"):
        parts.append("remove %s" % ", ".join(a["remove"]))
    return "%-18s %s" % (label + ":", "; ".join(parts) or "-")


def _action_lines(act):
    out = []
    if act.get("set-local-pref") is not None:
        out.append("%-18s %d" % ("LocalPref:", act["set-local-pref"]))
    if act.get("set-med") is not None:
        out.append("%-18s %d" % ("Med:", act["set-med"]))
    if act.get("communities") is not None:
        out.append(_community_action("Community", act["communities"]))
    if act.get("large-communities") is not None:
        out.append(_community_action("LargeCommunity", act["large-communities"]))
    if act.get("as-path-prepend") is not None:
        p = act["as-path-prepend"]
        out.append("%-18s %s %d" % ("AsPrepend:", p.get("asn") or "local-as", p.get("count", 1)))
    if act.get("next-hop-self"):
        out.append("%-18s self" % "Nexthop:")
    if act.get("set-next-hop"):
        out.append("%-18s %s" % ("Nexthop:", act["set-next-hop"]))
    result = act.get("result", "next")
    out.append({"accept": "accept", "reject": "reject", "next": "next (go on to the next statement)"}[result]
               if result in ("accept", "reject", "next") else str(result))
    return out


def policy_lines(policy, indent=""):
    """One policy (a [[policies]] table as the file spells it), GoBGP's way."""
    lines = ["%sName %s:" % (indent, policy.get("name", "?"))]
    statements = policy.get("statements") or []
    if not statements:
        lines.append("%s    (no statements)" % indent)
    for i, st in enumerate(statements):
        name = st.get("name") or "#%d" % (i + 1)
        lines.append("%s    StatementName %s:" % (indent, name))
        cond = _condition_lines(st.get("conditions") or {})
        match = st.get("match", "all")
        lines.append("%s      Conditions%s:" % (indent, "" if match == "all" or not cond else " (match %s)" % match))
        lines.extend("%s        %s" % (indent, c) for c in cond or ["(any route)"])
        lines.append("%s      Actions:" % indent)
        lines.extend("%s        %s" % (indent, a) for a in _action_lines(st.get("actions") or {}))
    return lines


def print_policies(info, name=None):
    """``fastbgp policy [NAME]``: each policy with the neighbours that use
    it (import/export), then its statements."""
    policies = info.policies
    if name is not None:
        policies = [p for p in policies if p.get("name") == name]
        if not policies:
            raise CliError("no policy named %r" % name)
    if not policies:
        print("no policies configured")
        return
    used = {}
    for n in info.neighbors:
        for direction, chain in (("import", n.import_policy), ("export", n.export_policy)):
            for p in chain:
                used.setdefault(p, []).append("%s %s" % (n.address, direction))
    con = _console()
    for p in policies:
        for line in policy_lines(p):
            con.print(line, markup=False)
        con.print("    Used by: %s" % (", ".join(used.get(p.get("name"), [])) or "-"), markup=False)


# (word the user types, [defined-sets] key, member field, header)
SET_KINDS = (
    ("prefix", "prefix-sets", "prefixes", "PREFIX"),
    ("as-path", "as-path-sets", "as-paths", "AS_PATH (regex)"),
    ("community", "community-sets", "communities", "COMMUNITY"),
    ("large-community", "large-community-sets", "large-communities", "LARGE COMMUNITY"),
)


def _member_text(m):
    if isinstance(m, dict):  # {prefix, ge, le}
        text = m.get("prefix", "?")
        if m.get("ge") is not None:
            text += " ge %d" % m["ge"]
        if m.get("le") is not None:
            text += " le %d" % m["le"]
        return text
    return str(m)


def print_defined_sets(info, kind=None, name=None):
    """``fastbgp defined-set [KIND [NAME]]``: GoBGP's ``policy prefix`` /
    ``as-path`` / ``community`` tables, one per kind: NAME and one member
    per row."""
    kinds = SET_KINDS
    if kind is not None:
        kinds = [k for k in SET_KINDS if k[0] == kind]
    con = _console()
    shown = 0
    for word, key, field, header in kinds:
        sets = info.defined_sets.get(key) or []
        if name is not None:
            sets = [s for s in sets if s.get("name") == name]
        if not sets:
            continue
        if shown:
            con.print("")
        con.print("%s sets:" % word.capitalize(), markup=False)
        t = _table("NAME", header)
        for s in sets:
            members = s.get(field) or []
            for i, m in enumerate(members or ["(empty)"]):
                t.add_row(s.get("name", "?") if i == 0 else "", _member_text(m))
        con.print(t)
        shown += 1
    if not shown:
        print("no %sdefined sets%s" % ("%s " % kind if kind else "", " named %r" % name if name else ""))


def print_neighbor_policy(n, policies):
    """``fastbgp neighbor ADDR policy``: GoBGP's layout -- each direction
    with its default action and its chain, every policy in full."""
    by_name = {p.get("name"): p for p in policies}
    con = _console()
    for label, chain, default in (("Import", n.import_policy, n.default_import),
                                  ("Export", n.export_policy, n.default_export)):
        con.print("%s policy:" % label, markup=False)
        con.print("    Default: %s" % (default.upper() or "-"), markup=False)
        if not chain:
            con.print("    (no policies: the default applies to every route)", markup=False)
        for name in chain:
            p = by_name.get(name)
            lines = policy_lines(p, "    ") if p is not None else ["    Name %s: (not defined)" % name]
            for line in lines:
                con.print(line, markup=False)


# ------------------------------------------------------------ global rib filters

# word -> RibQuery field (the API's query parameter of the same name)
RIB_FILTER_WORDS = {
    "community": "community",
    "large-community": "large_community",
    "aspath": "as_path", "as-path": "as_path",
    "origin-as": "origin_as",
    "source": "source",
    "limit": "limit",
    "offset": "offset",
}
# GoBGP's words after a prefix (and ours for a longest match).
_MATCH_WORDS = {
    "longer-prefixes": "longer",
    "shorter-prefixes": "shorter",
    "longest-match": "longest", "longest": "longest",
    "exact": "exact",
}


def rib_query_words(words):
    """``[PREFIX|ADDRESS [longer-prefixes|shorter-prefixes|longest-match]]
    [community C] [large-community L] [aspath REGEX] [origin-as N]
    [source ADDR|local] [limit N] [offset N]`` -> the API's query parameters (checked by the
    daemon's RibQuery; the prefix's family by the caller)."""
    params = {}
    words = list(words)
    if words and words[0].lower() not in RIB_FILTER_WORDS:
        key = words.pop(0)
        params["prefix"] = key
        if words and words[0].lower() in _MATCH_WORDS:
            params["match"] = _MATCH_WORDS[words.pop(0).lower()]
        elif "/" not in key:
            params["match"] = "longest"  # an address: the route that covers it
    while words:
        w = words.pop(0).lower()
        field = RIB_FILTER_WORDS.get(w)
        if field is None:
            raise UsageError("unexpected %r (use: global rib [PREFIX|ADDRESS [longer-prefixes|shorter-prefixes|"
                             "longest-match]] [community C] [large-community L] [aspath REGEX] [origin-as N] "
                             "[source ADDR|local] [limit N] [offset N])" % w)
        if not words:
            raise UsageError("%s needs a value" % w)
        if field in params:
            raise UsageError("%s given twice" % w)
        value = words.pop(0)
        if field in ("origin_as", "limit", "offset"):
            v = value[2:] if field == "origin_as" and value.upper().startswith("AS") else value
            if not v.isdigit():
                raise UsageError("%s: expected a number, got %r" % (w, value))
            value = v
        params[field] = value
    return params
