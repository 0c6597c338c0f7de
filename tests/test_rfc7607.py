"""RFC 7607: AS 0 is reserved and never appears on the wire.  Every case runs
on both codec implementations."""

import pytest

from bgpgen import (
    AS_SEQUENCE,
    EBGP,
    IBGP,
    OLD,
    aggregator,
    as4_aggregator,
    as4_path,
    as_path,
    attr_types,
    next_hop,
    open_body,
    origin,
    prefixes,
    update_body,
)
from fastbgp.wire.errors import ACTION_ATTRIBUTE_DISCARD, ACTION_SESSION_RESET, ACTION_TREAT_AS_WITHDRAW, BGPError

NLRI = prefixes("192.0.2.0/24")


def _base(path=((AS_SEQUENCE, (65001,)),), width=4):
    return origin() + as_path(path, width=width) + next_hop()


@pytest.mark.parametrize("ctx,width", [(IBGP, 4), (OLD, 2)])
def test_as_path_with_as0_is_treat_as_withdraw(codec, ctx, width):
    # RFC 7607 §2: an AS_PATH carrying AS 0 is malformed -> RFC 7606 §7.2.
    body = update_body(attrs=_base(((AS_SEQUENCE, (65001, 0, 65002)),), width), nlri=NLRI)
    pu = codec.parse_update(body, ctx)
    assert pu.action == ACTION_TREAT_AS_WITHDRAW
    assert pu.withdrawn == NLRI and pu.nlri == b""
    assert [(e.code, e.subcode) for e in pu.errors] == [(3, 11)]


def test_as4_path_with_as0_is_discarded(codec):
    body = update_body(
        attrs=_base(((AS_SEQUENCE, (65001, 23456)),), 2) + as4_path(((AS_SEQUENCE, (0, 4200000001)),)),
        nlri=NLRI,
    )
    pu = codec.parse_update(body, OLD)
    assert pu.action == ACTION_ATTRIBUTE_DISCARD
    assert 17 not in attr_types(pu.attrs)


@pytest.mark.parametrize("make,ctx", [(lambda: aggregator(0), IBGP), (lambda: aggregator(0, width=2), OLD), (lambda: as4_aggregator(0), OLD)])
def test_aggregator_as0_is_discarded(codec, make, ctx):
    width = 2 if ctx is OLD else 4
    body = update_body(attrs=_base(width=width) + make(), nlri=NLRI)
    pu = codec.parse_update(body, ctx)
    assert pu.action == ACTION_ATTRIBUTE_DISCARD
    assert pu.nlri == NLRI
    assert [(e.code, e.subcode, e.action) for e in pu.errors] == [(3, 9, ACTION_ATTRIBUTE_DISCARD)]
    assert 7 not in attr_types(pu.attrs) and 18 not in attr_types(pu.attrs)


def test_open_with_as0_is_bad_peer_as(codec):
    with pytest.raises(BGPError) as info:
        codec.parse_open(open_body(asn=0))
    assert (info.value.code, info.value.subcode, info.value.action) == (2, 2, ACTION_SESSION_RESET)


def test_ebgp_context_does_not_change_as0_handling(codec):
    body = update_body(attrs=_base(((AS_SEQUENCE, (0,)),)), nlri=NLRI)
    assert codec.parse_update(body, EBGP).action == ACTION_TREAT_AS_WITHDRAW
