"""The static RPKI source: the JSON that rpki-client writes and stayrtr /
fort-validator serve, ``{"roas": [{"prefix", "maxLength", "asn"}, ...],
"aspas": [{"customer_asid", "providers"}, ...]}``, and stayrtr's
``"provider_authorizations": {"ipv4": [...], "ipv6": [...]}`` for ASPA.

ASNs may be numbers or "AS65000" strings; ASPA providers numbers, strings
or ``{"asid": n}`` objects (older rpki-client output).  Every error names the
entry (``roas[12]: ...``) so an operator can find it; the file is hostile
input and never raises anything but :class:`RpkiFileError`.
"""

import ipaddress

import msgspec

from fastbgp.rpki import sync
from fastbgp.rpki.aspa import MAX_PROVIDERS

# A file larger than this is refused before it is read (a full global RPKI
# export is well under 100 MB).
MAX_FILE_BYTES = 1 << 30


class RpkiFileError(ValueError):
    """A JSON source that cannot be used; the message names the entry."""


class RpkiData(msgspec.Struct, frozen=True):
    """VRPs as (afi, address bytes, length, max length, asn) and ASPA
    records as {customer: tuple of providers}."""

    vrps: list
    aspas: dict


def parse_asn(value, where):
    """An ASN from 65000 or "AS65000" / "as65000" / "65000"."""
    if isinstance(value, str):
        text = value.strip()
        if text[:2].upper() == "AS":
            text = text[2:]
        if not text.isdigit():
            raise RpkiFileError("%s: ASN %r is not a number" % (where, value))
        value = int(text)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0xFFFFFFFF:
        raise RpkiFileError("%s: ASN %r out of range" % (where, value))
    return value


def _roa(entry, where):
    if not isinstance(entry, dict):
        raise RpkiFileError("%s: not an object" % where)
    try:
        net = ipaddress.ip_network(str(entry["prefix"]), strict=True)
    except KeyError:
        raise RpkiFileError("%s: no prefix" % where) from None
    except ValueError as exc:
        raise RpkiFileError("%s: %s" % (where, exc)) from None
    width = net.max_prefixlen
    maxlen = entry.get("maxLength", entry.get("max_length", net.prefixlen))
    if isinstance(maxlen, bool) or not isinstance(maxlen, int) or not net.prefixlen <= maxlen <= width:
        raise RpkiFileError("%s: maxLength %r out of range %d..%d" % (where, maxlen, net.prefixlen, width))
    if "asn" not in entry:
        raise RpkiFileError("%s: no asn" % where)
    afi = 1 if net.version == 4 else 2
    return afi, net.network_address.packed, net.prefixlen, maxlen, parse_asn(entry["asn"], where)


def _aspa(entry, where):
    if not isinstance(entry, dict):
        raise RpkiFileError("%s: not an object" % where)
    customer = entry.get("customer_asid", entry.get("customer"))
    if customer is None:
        raise RpkiFileError("%s: no customer_asid" % where)
    providers = entry.get("providers")
    if not isinstance(providers, list):
        raise RpkiFileError("%s: providers is not a list" % where)
    if len(providers) > MAX_PROVIDERS:
        raise RpkiFileError("%s: %d providers (at most %d)" % (where, len(providers), MAX_PROVIDERS))
    out = []
    for k, p in enumerate(providers):
        if isinstance(p, dict):
            p = p.get("asid")
        out.append(parse_asn(p, "%s.providers[%d]" % (where, k)))
    return parse_asn(customer, where), tuple(sorted(set(out)))


def parse_document(doc):
    """RpkiData of a decoded JSON document."""
    if not isinstance(doc, dict):
        raise RpkiFileError("the document is not a JSON object")
    roas = doc.get("roas", [])
    aspas = doc.get("aspas", [])
    if not isinstance(roas, list) or not isinstance(aspas, list):
        raise RpkiFileError('"roas" and "aspas" must be lists')
    vrps = [_roa(e, "roas[%d]" % i) for i, e in enumerate(roas)]
    table = {}
    for i, e in enumerate(aspas):
        customer, providers = _aspa(e, "aspas[%d]" % i)
        if customer in table:
            raise RpkiFileError("aspas[%d]: second record for AS%d" % (i, customer))
        table[customer] = providers
    # stayrtr's (and older rpki-client's) layout: records per AFI.  ASPA is
    # AFI-agnostic now (draft-ietf-sidrops-aspa-profile), so the two lists
    # of one customer are merged.
    split = doc.get("provider_authorizations", {})
    if not isinstance(split, dict):
        raise RpkiFileError('"provider_authorizations" must be an object')
    for afi in ("ipv4", "ipv6"):
        records = split.get(afi, [])
        if not isinstance(records, list):
            raise RpkiFileError('"provider_authorizations.%s" must be a list' % afi)
        for i, e in enumerate(records):
            customer, providers = _aspa(e, "provider_authorizations.%s[%d]" % (afi, i))
            table[customer] = tuple(sorted(set(table.get(customer, ())) | set(providers)))
    return RpkiData(vrps=vrps, aspas=table)


def parse_bytes(data):
    try:
        doc = msgspec.json.decode(data)
    except msgspec.DecodeError as exc:
        raise RpkiFileError("not JSON: %s" % exc) from None
    return parse_document(doc)


def load_file(path):
    """RpkiData of the JSON file at ``path``; RpkiFileError on any problem."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise RpkiFileError("%s: %s" % (path, exc.strerror or exc)) from None
    if len(data) > MAX_FILE_BYTES:
        raise RpkiFileError("%s: larger than %d octets" % (path, MAX_FILE_BYTES))
    try:
        return parse_bytes(data)
    except RpkiFileError as exc:
        raise RpkiFileError("%s: %s" % (path, exc)) from None


def load_into(path, vrps, aspas, observer=None):
    """Make the tables ``vrps`` (VrpTable) / ``aspas`` (AspaTable) hold
    exactly the file's data; report the difference to ``observer`` (an
    ``fastbgp.rpki.client.RtrObserver``) like the RTR client does, and
    return it as (added, removed, aspa changes).  On RpkiFileError the
    tables are left as they were."""
    data = load_file(path)
    added, removed, changes = sync.full_diff(vrps, aspas, set(data.vrps), data.aspas)
    sync.apply(vrps, aspas, added, removed, changes)
    if observer is not None:
        if added or removed:
            observer.vrps_changed(added, removed)
        if changes:
            observer.aspas_changed(changes)
    return added, removed, changes


def to_document(vrps, aspas=None):
    """The JSON document (rpki-client / stayrtr format) of VRP tuples and an
    ASPA mapping: what tests and the benchmark hand to stayrtr."""
    roas = []
    for afi, addr, plen, maxlen, asn in vrps:
        net = ipaddress.ip_network((bytes(addr), plen))
        roas.append({"prefix": str(net), "maxLength": maxlen, "asn": "AS%d" % asn})
    out = {"metadata": {"buildtime": "1970-01-01T00:00:00Z"}, "roas": roas}
    if aspas:  # in stayrtr's layout (it reads no "aspas" list)
        records = [{"customer_asid": c, "providers": list(p)} for c, p in sorted(aspas.items())]
        out["provider_authorizations"] = {"ipv4": records, "ipv6": []}
    return out
