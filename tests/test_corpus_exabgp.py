"""Every message of ExaBGP's QA corpus through both codecs and the view layer.

ExaBGP (an independent implementation) wrote these messages and its own JSON
decode of many of them; that JSON is the oracle for the IPv4/IPv6 unicast
UPDATEs (compared field by field with the product's ExaBGP JSON encoder in
tests/test_exabgp_json.py, which reads the cases through this module; here
the OPEN fields and the ADD-PATH facts).  Families we keep opaque are checked
by decoding and re-encoding to the same bytes.

File shapes (read-only, from ../shared/corpora/exabgp-qa/):

* ``encoding/*.ci``: ``option:...`` lines, then blocks that start at an
  ``N:cmd:`` line and hold one ``N:raw:`` line and zero or more
  ``N:json:`` (or ``jsv4``/``jsv6``, two ExaBGP JSON versions) lines.  The
  raw hex is split by ``:`` in varying places (sometimes inside the body,
  sometimes not at all), so every non-hex character is dropped and the
  header is re-checked.  A JSON line belongs to the raw line of its block: in
  conf-watchdog.ci the JSON lines carry a different N (5/6, the numbers of
  identical later messages) than the raw line they follow, and comparing them
  shows they do describe it.
* ``decoding/*``: line 1 ``<message type> [family]``, line 2 the message in
  hex (whole message, or for some UPDATEs only the body, possibly spaced),
  line 3 ExaBGP's JSON.
"""

from __future__ import annotations

import functools
import json
import pathlib
import re

import pytest

from fastbgp.wire import messages as m
from fastbgp.wire.types import Context
from fastbgp.wire.constants import MSG_NOTIFICATION, MSG_OPEN, MSG_UPDATE
from fastbgp.wire.errors import ACTION_AFISAFI_DISABLE, ACTION_SESSION_RESET, ACTION_TREAT_AS_WITHDRAW, BGPError

from fastbgp.testing import CORPORA as _CORPORA  # the one definition of where they live

_QA = "exabgp-qa"
_NOT_HEX = re.compile(r"[^0-9A-Fa-f]")
_LINE = re.compile(r"^(\d+):([a-z0-9]+):(.*)$")
_MARKER = b"\xff" * 16

# Per-file session facts the .conf files (not in the corpus) configure.
# Checked against the JSON below so a wrong entry cannot hide.
ADDPATH_FILES = {
    # "path-information" on ipv4 unicast and ipv4 mpls-vpn in the JSON.
    "conf-addpath.ci": frozenset({(1, 1), (1, 128)}),
    "conf-path-information.ci": frozenset({(1, 1)}),
}
# conf-no-asn4.conf: the session has no 4-octet AS capability, so AS_PATH
# carries 2-octet AS numbers (RFC 6793 §4.2).
TWO_OCTET_FILES = {"conf-no-asn4.ci"}

# Messages that break the RFCs; the codec must refuse them exactly like this.
REJECTED = {
    # attribute type 0x99 with flags 0x60 (then 0x70): the Optional bit is
    # clear, so it claims to be well-known, and we do not know it.  RFC 4271
    # §6.3: Unrecognized Well-known Attribute, data = the attribute; with no
    # RFC 7606 relief that resets the session.
    ("encoding/conf-generic-attribute.ci", 6): (3, 2, ACTION_SESSION_RESET),
    ("encoding/conf-generic-attribute.ci", 9): (3, 2, ACTION_SESSION_RESET),
    # IPv6 unicast MP_REACH_NLRI with a 4-octet (IPv4) next hop.  RFC 2545
    # §3 allows 16 or 32 octets for IPv6 (an IPv4 next hop would be the
    # 16-octet IPv4-mapped form); RFC 7606 §7.11: inconsistent next hop
    # length -> AFI/SAFI disable.
    ("encoding/extended-nexthop.ci", 6): (3, 9, ACTION_AFISAFI_DISABLE),
}

# Well-formed UPDATEs that an RFC repairs on receipt (no session reset):
# case -> (code, subcode, RFC 7606 action) reported in ``errors``.
REPAIRED = {
    # NEXT_HOP 255.255.255.255 (limited broadcast) is not a host address:
    # RFC 4271 §6.3 Invalid NEXT_HOP, RFC 7606 §7.3 treat-as-withdraw.
    ("encoding/conf-attributes.ci", 10): (3, 8, ACTION_TREAT_AS_WITHDRAW),
}


# ---------------------------------------------------------------- corpus reading


class Case:
    """One corpus message."""

    def __init__(self, key, wire, body_only, json_obj, ctx):
        self.key = key  # ("encoding/x.ci", line) or ("decoding/x", 2)
        self.wire = wire  # whole message, or the UPDATE body when body_only
        self.body_only = body_only
        self.json = json_obj
        self.ctx = ctx

    @property
    def id(self):
        return "%s:%d" % self.key

    def split(self):
        """(type, body) after checking the header like a receiver would."""
        if self.body_only:
            return MSG_UPDATE, self.wire
        assert self.wire[:16] == _MARKER, "no marker"
        length = int.from_bytes(self.wire[16:18], "big")
        assert length == len(self.wire), "header length %d, message %d" % (length, len(self.wire))
        return self.wire[18], self.wire[19:]


def _hex(text):
    return bytes.fromhex(_NOT_HEX.sub("", text))


@functools.lru_cache(maxsize=None)
def _encoding_file(path):
    """[Case] of one .ci file, JSON attached to the raw line of its block."""
    path = pathlib.Path(path)
    name = "encoding/" + path.name
    records = []  # [line, wire, [json objs]]
    block = None
    asns = set()
    for lineno, text in enumerate(path.read_text().splitlines(), 1):
        mt = _LINE.match(text)
        if mt is None:
            continue
        kind = mt.group(2)
        if kind == "cmd":
            block = None
        elif kind == "raw":
            assert block is None, "%s:%d: two raw lines in one block" % (name, lineno)
            block = [lineno, _hex(mt.group(3)), []]
            records.append(block)
        elif kind in ("json", "jsv4", "jsv6"):
            assert block is not None, "%s:%d: JSON without a raw line" % (name, lineno)
            obj = json.loads(mt.group(3))
            block[2].append((kind, obj))
            a = obj["neighbor"]["asn"]
            asns.add((a["local"], a["peer"]))
    ctx = Context(
        as4=path.name not in TWO_OCTET_FILES,
        addpath_rx=ADDPATH_FILES.get(path.name, frozenset()),
        # RFC 8654: needed only if a message is longer than 4096 octets.
        extended_message=any(len(r[1]) > 4096 for r in records),
        # eBGP when ExaBGP's JSON shows two different ASes.
        ebgp=any(local != peer for local, peer in asns),
    )
    cases = []
    for lineno, wire, jsons in records:
        # jsv6 and json are ExaBGP 6's format; jsv4 (4.0) is the older twin.
        pick = dict(jsons)
        obj = pick.get("json", pick.get("jsv6"))
        cases.append(Case((name, lineno), wire, False, obj, ctx))
    return cases


@functools.lru_cache(maxsize=None)
def _decoding_file(path):
    """Case of one decoding/ file, or None when it is not a message."""
    path = pathlib.Path(path)
    lines = path.read_text().splitlines()
    kind = lines[0].split()[0]
    if kind not in ("update", "open"):
        return None
    wire = _hex(lines[1])
    obj = json.loads(lines[2]) if len(lines) > 2 and lines[2].strip() else None
    return Case(("decoding/" + path.name, 2), wire, wire[:16] != _MARKER, obj, Context())


def _discover():
    base = _CORPORA / _QA
    if not base.is_dir():
        return []
    ids = []
    for p in sorted((base / "encoding").glob("*.ci")):
        ids += [c.id for c in _encoding_file(str(p))]
    for p in sorted((base / "decoding").iterdir()):
        if _decoding_file(str(p)) is not None:
            ids.append("decoding/%s:2" % p.name)
    return ids


# Collected at import so each message is its own test id; when the corpora
# are absent one placeholder id lets the `corpora` fixture skip with its
# explanation.
CASE_IDS = _discover() or ["<corpus absent>"]


def _case(corpora, case_id):
    base = corpora / _QA
    rel, line = case_id.rsplit(":", 1)
    if rel.startswith("encoding/"):
        for c in _encoding_file(str(base / rel)):
            if c.key[1] == int(line):
                return c
        raise LookupError(case_id)
    return _decoding_file(str(base / rel))


# ---------------------------------------------------------------- ExaBGP's JSON shape


def _opaque(u):
    return any(isinstance(a, (m.MpReach, m.MpUnreach)) and a.raw is not None for a in u.attributes)


# Public names for the other tests that read this corpus the same way
# (tests/test_exabgp_json.py: our ExaBGP JSON encoder against ExaBGP's).
load_case = _case
is_opaque = _opaque


def _check_addpath(exa, ctx):
    """The ADD-PATH table above must match what ExaBGP decoded.  (The rest
    of ExaBGP's JSON is compared field by field with the product's encoder,
    fastbgp.control.exabgp_json, in tests/test_exabgp_json.py.)"""
    for fam, by_nh in exa["neighbor"]["message"]["update"].get("announce", {}).items():
        for entries in by_nh.values():
            assert all(("path-information" in e) == bool(ctx.addpath_rx) for e in entries), fam


# ---------------------------------------------------------------- tests


@pytest.mark.parametrize("case_id", CASE_IDS)
def test_corpus_message(codec, corpora, case_id):
    case = _case(corpora, case_id)
    mtype, body = case.split()
    ctx = case.ctx

    expect = REJECTED.get(case.key)
    if expect is not None:
        assert mtype == MSG_UPDATE
        # A session must refuse it...
        with pytest.raises(BGPError) as info:
            codec.parse_update(body, ctx)
        assert (info.value.code, info.value.subcode, info.value.action) == expect
        # ...while inspection (lenient) still decodes every octet of it.
        view = m.decode_update(body, ctx, impl=codec, lenient=True)
        assert m.encode_update(view, ctx, impl=codec) == body
        return

    if mtype == MSG_OPEN:
        parsed = codec.parse_open(body)
        view = m.decode_open(body, impl=codec)
        assert len(view.capabilities) == len(parsed.capabilities)
        # Re-encoding may group capabilities differently (one optional
        # parameter instead of one per capability), so compare views.
        assert m.decode_open(m.encode_open(view, impl=codec), impl=codec) == view
        if case.json is not None:
            want = case.json["neighbor"]["open"]
            assert (view.version, view.asn, view.hold_time, view.bgp_id) == (
                want["version"],
                want["asn"],
                want["hold_time"],
                want["router_id"],
            )
            assert sorted(c.code for c in view.capabilities) == sorted(int(k) for k in want["capabilities"])
        return

    if mtype == MSG_NOTIFICATION:
        view = m.decode_message(mtype, body, ctx, impl=codec)
        assert isinstance(view, m.Notification)
        assert m.encode_notification(view) == body
        return

    assert mtype == MSG_UPDATE, "unexpected message type %d" % mtype
    parsed = codec.parse_update(body, ctx)
    broken = REPAIRED.get(case.key)
    if broken is not None:
        # ExaBGP encodes what its configuration says; we apply the RFC on receipt.
        assert [(e.code, e.subcode, e.action) for e in parsed.errors] == [broken]
        return
    # Every other corpus UPDATE is well formed: nothing for RFC 7606 to repair.
    assert parsed.errors == ()
    assert parsed.action == 0

    u = m.decode_update(body, ctx, impl=codec)
    # Inspection keeps every octet (a session drops unknown non-transitive
    # attributes such as BGP-LS, RFC 4271 §5): re-encoding the lenient view on
    # a session like the one it arrived on gives back the same octets.
    whole = m.decode_update(body, ctx, impl=codec, lenient=True)
    tx = Context(as4=ctx.as4, addpath_tx=ctx.addpath_rx, extended_message=ctx.extended_message)
    assert m.encode_update(whole, tx, impl=codec) == body
    if whole != u:
        dropped = {a.type for a in whole.attributes if isinstance(a, m.Unknown)} - {
            a.type for a in u.attributes if isinstance(a, m.Unknown)
        }
        assert dropped and all(not a.flags & 0x40 for a in whole.attributes if isinstance(a, m.Unknown) and a.type in dropped)

    if case.json is not None and not _opaque(u):
        _check_addpath(case.json, ctx)

    if case.key[0].split("/")[1] in TWO_OCTET_FILES and u.as_path_asns():
        # The table entry is needed: read as 4-octet, the 2-octet AS_PATH is
        # malformed (RFC 7606 §7.2 treat-as-withdraw).
        assert codec.parse_update(body, Context()).action != 0


def test_corpus_inventory(corpora):
    """Nothing is silently left out: every encoding/ raw line and every
    decoding/ file is a case, apart from the one decoding/ file that holds a
    bare NLRI rather than a message."""
    base = corpora / _QA
    raw_lines = 0
    for p in (base / "encoding").glob("*.ci"):
        raw_lines += sum(1 for t in p.read_text().splitlines() if _LINE.match(t) and _LINE.match(t).group(2) == "raw")
    left_out = []
    for p in sorted((base / "decoding").iterdir()):
        if _decoding_file(str(p)) is None:
            left_out.append((p.name, p.read_text().splitlines()[0].split()[0]))
    assert left_out == [("bgp-ls-1", "nlri")]
    n_decoding = sum(1 for _ in (base / "decoding").iterdir()) - len(left_out)
    assert len(CASE_IDS) == raw_lines + n_decoding
    # Every REJECTED entry names a real corpus message.
    assert {"%s:%d" % key for key in REJECTED} <= set(CASE_IDS)


def test_corpus_has_json_oracle_for_unicast(corpora):
    """Guard against the JSON comparison (tests/test_exabgp_json.py)
    silently matching nothing."""
    compared = 0
    for cid in CASE_IDS:
        case = _case(corpora, cid)
        if case is None or case.json is None or case.key in REJECTED:
            continue
        mtype, body = case.split()
        if mtype != MSG_UPDATE:
            continue
        u = m.decode_update(body, case.ctx)
        if not _opaque(u):
            compared += 1
    assert compared >= 50
