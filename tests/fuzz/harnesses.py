"""Fuzz targets: each takes one bytes input and raises AssertionError (or
lets an unexpected exception escape) when the input shows a defect.

The codec target runs the compiled codec and its pure-Python twin on the
same input and demands identical results, or identical BGPErrors (code,
subcode, data, action, attribute and reason).  Any exception other than the
documented ones -- BGPError from the parsers, ValueError from
count_prefixes/unpack_prefixes ("malformed NLRI") -- is a crash.  The MRT
target reads the input as an MRT stream with each codec: nothing may escape
the iterator (bad records become CorruptRecord / TruncatedRecord) and both
codecs must yield the same records.
"""

import io

from fastbgp.mrt.reader import MrtReader
from fastbgp.wire import codec as _selector
from fastbgp.wire.constants import AFI_IPV4, AFI_IPV6, SAFI_MULTICAST, SAFI_UNICAST
from fastbgp.wire.errors import BGPError
from fastbgp.wire.types import Context


def implementations():
    """(compiled, twin); the twin twice when extensions are disabled."""
    twin = _selector.load("python")
    if _selector.NO_EXTENSIONS:
        return twin, twin
    return _selector.load("cython"), twin


COMPILED, TWIN = implementations()

_FAMILIES = frozenset(
    (afi, safi) for afi in (AFI_IPV4, AFI_IPV6) for safi in (SAFI_UNICAST, SAFI_MULTICAST)
)

# Operations of the codec target, chosen by the first input octet.
OP_FRAMING, OP_HEADER, OP_OPEN, OP_UPDATE, OP_NOTIFICATION, OP_ROUTE_REFRESH, OP_PREFIXES = range(7)
N_OPS = 7


def context(flags):
    """The session Context encoded in the low bits of ``flags``."""
    return Context(
        as4=bool(flags & 1),
        addpath_rx=_FAMILIES if flags & 2 else frozenset(),
        extended_message=bool(flags & 4),
        ebgp=bool(flags & 8),
    )


def _error(exc):
    return ("error", type(exc).__name__, exc.code, exc.subcode, exc.data, exc.action, exc.attr_type, exc.reason)


def _framing(impl, flags, data):
    """Feed ``data`` to a MessageReader in pieces: the result of each feed."""
    reader = impl.MessageReader(65535 if flags & 1 else 4096)
    step = 1 + (flags >> 1)
    out = []
    for start in range(0, len(data), step):
        try:
            out.append(("ok", reader.feed(data[start : start + step]), reader.buffered))
        except BGPError as exc:
            out.append(_error(exc))
            break
    return out


def _repack(impl, parsed, ctx):
    """The encoders on what the decoder accepted: the UPDATEs pack_updates /
    pack_withdraws build from it (sending with the ADD-PATH state received)."""
    tx = Context(as4=ctx.as4, addpath_tx=ctx.addpath_rx, extended_message=ctx.extended_message)
    out = []
    if parsed.nlri and parsed.attrs and not parsed.treat_as_withdraw:
        out.append(impl.pack_updates(parsed.attrs, parsed.nlri, tx))
    if parsed.withdrawn:
        out.append(impl.pack_withdraws(parsed.withdrawn, tx))
    if parsed.mp_reach is not None and parsed.attrs and not parsed.treat_as_withdraw:
        afi, safi, nh, nlri = parsed.mp_reach
        if (afi, safi) in _FAMILIES and nlri:
            out.append(impl.pack_updates(parsed.attrs, nlri, tx, afi, safi, nh))
    if parsed.mp_unreach is not None:
        afi, safi, nlri = parsed.mp_unreach
        if (afi, safi) in _FAMILIES and nlri:
            out.append(impl.pack_withdraws(nlri, tx, afi, safi))
    return out


def _prefixes(impl, flags, data):
    afi = AFI_IPV6 if flags & 1 else AFI_IPV4
    addpath = bool(flags & 2)
    try:
        n = impl.count_prefixes(data, afi, addpath)
        return ("ok", n, impl.unpack_prefixes(data, afi, addpath))
    except ValueError as exc:
        return ("value-error", str(exc))


def codec_outcome(impl, data):
    """What ``impl`` makes of ``data``: ("ok", result...) or ("error", ...).
    Only the documented exception types are caught."""
    if len(data) < 2:
        return ("short",)
    op, flags, body = data[0] % N_OPS, data[1], data[2:]
    if op == OP_FRAMING:
        return _framing(impl, flags, body)
    if op == OP_PREFIXES:
        return _prefixes(impl, flags, body)
    try:
        if op == OP_HEADER:
            return ("ok", impl.parse_header(body))
        if op == OP_OPEN:
            return ("ok", impl.parse_open(body))
        if op == OP_UPDATE:
            ctx = context(flags)
            parsed = impl.parse_update(body, ctx, bool(flags & 16), bool(flags & 32))
            return ("ok", parsed, _repack(impl, parsed, ctx))
        if op == OP_NOTIFICATION:
            return ("ok", impl.parse_notification(body))
        return ("ok", impl.parse_route_refresh(body))
    except BGPError as exc:
        return _error(exc)


def _show(outcome):
    return repr(outcome)[:2000]


def codec(data):
    """The codec target."""
    a = codec_outcome(COMPILED, data)
    b = codec_outcome(TWIN, data)
    # repr as well as ==: the types (bytes / tuple) must match too, and
    # BGPError's == leaves the reason out.
    assert a == b and repr(a) == repr(b), "codec twins differ:\n compiled %s\n python   %s" % (_show(a), _show(b))


# No record longer than this in a fuzz input: keeps memory bounded.
MRT_MAX_RECORD = 1 << 16


def mrt_outcome(impl, data, parse=True):
    reader = MrtReader(io.BytesIO(data), codec=impl, parse=parse, chunk=4096, max_record=MRT_MAX_RECORD)
    records = list(reader)
    return records, reader.records, reader.corrupt, reader.truncated, reader.stream_errors


def mrt(data):
    """The MRT target."""
    a = mrt_outcome(COMPILED, data)
    b = mrt_outcome(TWIN, data)
    assert a == b and repr(a) == repr(b), "MRT records differ between codecs:\n compiled %s\n python   %s" % (_show(a), _show(b))
    mrt_outcome(TWIN, data, parse=False)


HARNESSES = {"codec": codec, "mrt": mrt}
