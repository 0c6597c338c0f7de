"""ExaBGP's text API commands, as a program under ``[[processes]]`` writes
them on its stdout, into the control contract's requests.

Supported (ExaBGP 4.x spelling)::

    [neighbor A[,B] [local-ip X] [local-as N] [peer-as N] [router-id X], ...]
      announce route P next-hop N|self [med M] [local-preference L]
                     [as-path [ A B ... ]] [community [ C ... ]]
                     [large-community [ G:L1:L2 ... ]] [origin igp|egp|incomplete]
                     [extended-community [ target:A:N origin:A:N 0x<16 hex> ... ]]
                     [path-information N|A.B.C.D] [split /N]
      announce attributes <the same attributes> nlri P1 P2 ...
      withdraw route P [path-information N] [other attributes, ignored]
      withdraw attributes ... nlri P1 P2 ...
      announce eor [AFI SAFI]
      announce route-refresh [AFI SAFI]
      flush adj-rib out
      clear adj-rib out
    shutdown

Routes become :class:`fastbgp.control.contract.Announce` requests, so the
API's validation applies unchanged (canonical prefixes, the next-hop host
rule of RFC 4271 §6.3, AS numbers, community syntax).  ``neighbor A``
selectors become the request's ``neighbors``: the route is offered to
those neighbours only (a withdrawal naming some of them keeps it for the
others).  What fastbgp cannot originate is refused with a reason rather
than half applied: ``atomic-aggregate``/``aggregator``/labels/route
distinguishers, AS_SETs, path identifiers above 65535.

Every input is hostile: :func:`parse_command` raises
:class:`CommandError` (a ValueError) with a one-line reason for anything it
cannot take; it never raises anything else.
"""

from __future__ import annotations

import ipaddress
from typing import Optional

import msgspec

from fastbgp.config.errors import FieldError
from fastbgp.control import contract as ctl

__all__ = ["Command", "CommandError", "parse_command", "MAX_SPLIT_PREFIXES", "MAX_LINE"]

# One command line, at most (the process manager's read bound; ExaBGP's own
# commands are far shorter: the longest sane one is a bulk "nlri" list).
MAX_LINE = 1 << 20
# "split /N" may not expand one prefix into more than this many.
MAX_SPLIT_PREFIXES = 1 << 16
MAX_REASON = 300  # characters of an error reason

_FAMILIES = {("ipv4", "unicast"), ("ipv6", "unicast")}
_REFUSED = {
    "atomic-aggregate": "atomic-aggregate is not supported on originated routes",
    "aggregator": "aggregator is not supported on originated routes",
    "label": "labels are not supported (fastbgp routes unicast only)",
    "rd": "route distinguishers are not supported (fastbgp routes unicast only)",
    "route-distinguisher": "route distinguishers are not supported (fastbgp routes unicast only)",
    "originator-id": "originator-id is not supported on originated routes",
    "cluster-list": "cluster-list is not supported on originated routes",
}
_QUALIFIERS = {"local-ip", "local-as", "peer-as", "router-id", "family-allowed"}


class CommandError(ValueError):
    """A command line fastbgp cannot take; ``str()`` is the reason."""


class Command(msgspec.Struct):
    """One parsed command.

    ``kind``: "announce" | "withdraw" (``request`` set), "eor" |
    "route-refresh" (``family`` "ipv4 unicast"/"ipv6 unicast" or None for
    every family), "flush" (resend our routes: adj-rib out), "clear"
    (withdraw every route this program announced), "shutdown".
    ``neighbors``: the selected neighbour addresses, empty for all."""

    kind: str
    neighbors: list[str] = []
    request: Optional[ctl.Announce] = None
    family: Optional[str] = None


def _tokens(line: str) -> list:
    for ch in "[](),":
        line = line.replace(ch, " %s " % ch)
    return line.split()


class _Reader:
    def __init__(self, tokens):
        self.t = tokens
        self.i = 0

    def more(self):
        return self.i < len(self.t)

    def peek(self):
        return self.t[self.i] if self.i < len(self.t) else None

    def take(self, what):
        if self.i >= len(self.t):
            raise CommandError("%s expected at the end of the line" % what)
        tok = self.t[self.i]
        self.i += 1
        return tok

    def values(self, what) -> list:
        """One value, or a bracketed list ``[ a b ]``."""
        tok = self.take(what)
        if tok == "(":
            raise CommandError("%s: AS_SET / grouped values are not supported" % what)
        if tok != "[":
            return [tok]
        out = []
        while True:
            tok = self.take("']' closing %s" % what)
            if tok == "]":
                return out
            if tok in ("[", "(", ")"):
                raise CommandError("%s: nested or grouped values are not supported" % what)
            out.append(tok)


def _int(text, what, maximum):
    if not text.isdigit() or int(text) > maximum:
        raise CommandError("%s: %r is not an integer 0..%d" % (what, text, maximum))
    return int(text)


def _selectors(r: _Reader) -> list:
    """``neighbor A [qualifiers] [, [neighbor] B ...]`` before the verb."""
    out = []
    while r.peek() == "neighbor":
        r.take("neighbor")
        while True:
            addr = r.take("neighbor address")
            try:
                out.append(str(ipaddress.ip_address(addr)))
            except ValueError:
                raise CommandError("neighbor: %r is not an IP address" % addr[:64]) from None
            while r.peek() in _QUALIFIERS:
                r.take("qualifier")
                r.take("qualifier value")
            if r.peek() != ",":
                break
            r.take(",")
            if r.peek() == "neighbor":
                r.take("neighbor")
    return out


def _family(r: _Reader) -> Optional[str]:
    if not r.more():
        return None
    afi = r.take("afi")
    safi = r.take("safi")
    if (afi, safi) not in _FAMILIES:
        raise CommandError("family %s %s is not one fastbgp routes (ipv4 unicast, ipv6 unicast)" % (afi, safi))
    if r.more():
        raise CommandError("unexpected %r after the family" % r.peek())
    return "%s %s" % (afi, safi)


def _attributes(r: _Reader, fields: dict, prefixes: list, withdraw: bool, bulk: bool):
    split = None
    while r.more():
        key = r.take("attribute")
        if bulk and key == "nlri":
            prefixes.extend(r.t[r.i:])
            r.i = len(r.t)
            if not prefixes:
                raise CommandError("nlri: no prefix given")
            break
        if key in _REFUSED and not withdraw:
            raise CommandError(_REFUSED[key])
        if key == "next-hop":
            nh = r.take("next-hop value")
            fields["next_hop"] = None if nh == "self" else nh
        elif key == "med":
            fields["med"] = _int(r.take("med value"), "med", 0xFFFFFFFF)
        elif key == "local-preference":
            fields["local_pref"] = _int(r.take("local-preference value"), "local-preference", 0xFFFFFFFF)
        elif key == "origin":
            o = r.take("origin value").lower()
            if o not in ("igp", "egp", "incomplete"):
                raise CommandError("origin: %r is not igp, egp or incomplete" % o)
            fields["origin"] = o
        elif key == "as-path":
            fields["as_path"] = [_int(a, "as-path", 0xFFFFFFFF) for a in r.values("as-path")]
        elif key == "community":
            fields["communities"] = r.values("community")
        elif key == "large-community":
            fields["large_communities"] = r.values("large-community")
        elif key == "extended-community":
            fields["ext_communities"] = r.values("extended-community")
        elif key == "path-information":
            fields["path_id"] = _path_id(r.take("path-information value"))
        elif key == "split":
            s = r.take("split value")
            split = _int(s[1:] if s.startswith("/") else s, "split", 128)
        elif withdraw and key in _REFUSED:
            # A withdrawal names the prefix; its attributes do not matter.
            r.values(key)
        else:
            raise CommandError("unknown attribute %r" % key[:64])
    return split


def _path_id(text: str) -> int:
    """ExaBGP writes a path identifier as an integer or a dotted quad
    (RFC 7911 §3: four octets)."""
    if "." in text:
        try:
            value = int(ipaddress.IPv4Address(text))
        except ValueError:
            raise CommandError("path-information: %r is not an integer or a dotted quad" % text[:64]) from None
    else:
        value = _int(text, "path-information", 0xFFFFFFFF)
    if value > 0xFFFF:
        raise CommandError("path-information %s: fastbgp's path identifiers are 16 bits (0..65535; the 32 "
                           "bits on the wire also name the source)" % text[:64])
    return value


def _split(prefixes: list, length: int) -> list:
    out = []
    for p in prefixes:
        try:
            net = ipaddress.ip_network(p, strict=True)
        except ValueError as exc:
            raise CommandError("not an IP prefix: %r (%s)" % (p, exc)) from None
        if length < net.prefixlen or length > net.max_prefixlen:
            raise CommandError("split /%d: must be between /%d and /%d for %s" % (
                length, net.prefixlen, net.max_prefixlen, net))
        if 1 << (length - net.prefixlen) > MAX_SPLIT_PREFIXES - len(out):
            raise CommandError("split /%d: more than %d prefixes" % (length, MAX_SPLIT_PREFIXES))
        out.extend(str(s) for s in net.subnets(new_prefix=length))
    return out


def _route(r: _Reader, verb: str, neighbors: list) -> Command:
    what = r.take("route, attributes, eor, route-refresh")
    withdraw = verb == "withdraw"
    if what == "eor" and not withdraw:
        return Command("eor", neighbors, family=_family(r))
    if what == "route-refresh" and not withdraw:
        return Command("route-refresh", neighbors, family=_family(r))
    if what not in ("route", "attributes"):
        raise CommandError("%s %s: unknown (route, attributes, eor, route-refresh)" % (verb, what))
    prefixes = []
    if what == "route":
        prefixes.append(r.take("prefix"))
    fields = {}
    split = _attributes(r, fields, prefixes, withdraw, bulk=what == "attributes")
    if what == "attributes" and not prefixes:
        raise CommandError("%s attributes: no nlri" % verb)
    if not withdraw and "next_hop" not in fields:
        raise CommandError("announce: next-hop is required (an address or self)")
    if split is not None:
        prefixes = _split(prefixes, split)
    if withdraw:
        # A withdrawal names the prefix (and its path); the rest does not matter.
        fields = {k: v for k, v in fields.items() if k == "path_id"}
    if neighbors:
        fields["neighbors"] = neighbors
    try:
        # convert, not the constructor: msgspec checks the Meta ranges
        # (AS numbers, u32) only when converting.
        req = msgspec.convert(dict(fields, prefixes=prefixes), ctl.Announce)
    except FieldError as exc:
        raise CommandError(str(exc)) from None
    except (TypeError, ValueError, msgspec.ValidationError) as exc:
        raise CommandError(str(exc)) from None
    return Command(verb, neighbors, request=req)


def parse_command(line: str) -> Command:
    """One command line into a :class:`Command`; CommandError otherwise
    (its reason at most MAX_REASON characters: it quotes hostile input)."""
    try:
        return _parse(line)
    except CommandError as exc:
        msg = str(exc)
        if len(msg) > MAX_REASON:
            raise CommandError(msg[:MAX_REASON] + "...") from None
        raise


def _parse(line: str) -> Command:
    if len(line) > MAX_LINE:
        raise CommandError("command longer than %d characters" % MAX_LINE)
    r = _Reader(_tokens(line))
    if not r.more():
        raise CommandError("empty command")
    neighbors = _selectors(r)
    verb = r.take("command")
    if verb in ("announce", "withdraw"):
        return _route(r, verb, neighbors)
    if verb in ("flush", "clear"):
        if r.t[r.i:] != ["adj-rib", "out"]:
            raise CommandError("%s: only '%s adj-rib out' is supported" % (verb, verb))
        return Command(verb, neighbors)
    if verb == "shutdown" and not neighbors and not r.more():
        return Command("shutdown")
    raise CommandError("unknown command %r" % verb[:64])
