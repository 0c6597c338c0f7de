"""RFC 7606 revised UPDATE error handling, one table row per case.

Each row is an UPDATE body, the session context and what must happen:

* ``Reset(code, subcode, data, action)`` -- parse_update raises a BGPError
  (actions SESSION_RESET / AFISAFI_DISABLE; RFC 7606 §2);
* ``Handled(action, errors, ...)`` -- the error is applied without a reset
  (ATTRIBUTE_DISCARD / TREAT_AS_WITHDRAW) and listed in ``errors``;
* ``Discarded(type)`` -- the attribute is dropped and the routes stay
  announced, whether or not the drop is logged as an error.

Sources: RFC 4271 §6.3 (codes, subcodes, NOTIFICATION data), RFC 7606 §2-§5
and §7, RFC 4760 §7, RFC 6793 §6, RFC 8092 §6, RFC 9234 §5.
"""

from dataclasses import dataclass, field

import pytest

from bgpgen import (
    AS_SEQUENCE,
    BASE_ATTRS,
    BASE_NLRI,
    EBGP,
    IBGP,
    OLD,
    aggregator,
    as_path,
    atomic_aggregate,
    attr,
    attr_types,
    attr_value,
    cluster_list,
    communities,
    ip4,
    ip6,
    local_pref,
    med,
    mp_reach,
    mp_unreach,
    next_hop,
    origin,
    originator_id,
    otc,
    prefixes,
    raw_attr,
    update_body,
)
from fastbgp.wire.errors import (
    ACTION_AFISAFI_DISABLE as AFISAFI,
    ACTION_ATTRIBUTE_DISCARD as DISCARD,
    ACTION_NONE as NONE,
    ACTION_SESSION_RESET as RESET,
    ACTION_TREAT_AS_WITHDRAW as WITHDRAW,
    BGPError,
)

ANY = object()  # any NOTIFICATION data (checked separately)
GUA = ip6("2001:db8::1")
V6_NLRI = prefixes("2001:db8:1::/48", "2001:db8:2::/64")
WD = prefixes("192.0.2.0/24")


@dataclass
class Reset:
    code: int
    subcode: int
    data: object
    action: int


@dataclass
class Handled:
    action: int
    errors: list  # [(code, subcode, data, action)]
    lacks: tuple = ()  # attribute types that must be gone from attrs
    keeps: dict = field(default_factory=dict)  # type -> value that must be in attrs
    mp_unreach: object = None  # expected mp_unreach after treat-as-withdraw


@dataclass
class Discarded:
    type_code: int


def ann(*extra, base=BASE_ATTRS, nlri=BASE_NLRI, withdrawn=b""):
    """An announcement whose attribute block is ``base`` + ``extra``."""
    return update_body(withdrawn, base + b"".join(extra), nlri)


def only(*attrs, nlri=BASE_NLRI, withdrawn=b""):
    return update_body(withdrawn, b"".join(attrs), nlri)


def taw(code, subcode, data, **kw):
    return Handled(WITHDRAW, [(code, subcode, data, WITHDRAW)], **kw)


def dis(code, subcode, data, type_code, **kw):
    return Handled(DISCARD, [(code, subcode, data, DISCARD)], lacks=(type_code,), **kw)


# Attributes used in several rows (the erroneous attribute is the NOTIFICATION data).
ORIGIN_LEN0 = attr(0x40, 1, b"")
ORIGIN_LEN2 = attr(0x40, 1, b"\x00\x00")
ORIGIN_3 = attr(0x40, 1, b"\x03")
ORIGIN_FF = attr(0x40, 1, b"\xff")
NH_LEN3 = attr(0x40, 3, b"\xc0\x00\x02")
NH_LEN5 = attr(0x40, 3, b"\xc0\x00\x02\x01\x00")
NH_ZERO = next_hop("0.0.0.0")
NH_MCAST = next_hop("224.0.0.1")
NH_MCAST_TOP = next_hop("239.255.255.255")
NH_THIS_NET = next_hop("0.1.2.3")
NH_CLASS_E = next_hop("240.0.0.1")
NH_BROADCAST = next_hop("255.255.255.255")
NH_LOOPBACK = next_hop("127.0.0.1")
MED_LEN3 = attr(0x80, 4, b"\x00\x00\x01")
MED_LEN0 = attr(0x80, 4, b"")
LP_LEN3 = attr(0x40, 5, b"\x00\x00\x64")
ATOMIC_LEN1 = attr(0x40, 6, b"\x00")
AGG_LEN6 = attr(0xC0, 7, b"\xfd\xe9" + ip4("192.0.2.9"))
AGG_LEN7 = attr(0xC0, 7, b"\x00\xfd\xe9" + ip4("192.0.2.9"))
AGG_LEN0 = attr(0xC0, 7, b"")
AGG_LEN8 = aggregator(65001)
COMM_LEN0 = attr(0xC0, 8, b"")
COMM_LEN5 = attr(0xC0, 8, b"\xff\xff\xff\x01\x00")
OID_LEN3 = attr(0x80, 9, b"\x0a\x00\x00")
CL_LEN0 = attr(0x80, 10, b"")
CL_LEN5 = attr(0x80, 10, b"\x0a\x00\x00\x02\x00")
EXT_LEN0 = attr(0xC0, 16, b"")
EXT_LEN9 = attr(0xC0, 16, bytes(9))
LARGE_LEN0 = attr(0xC0, 32, b"")
LARGE_LEN13 = attr(0xC0, 32, bytes(13))
OTC_LEN3 = attr(0xC0, 35, b"\x00\xfd\xe9")
OTC_LEN5 = attr(0xC0, 35, b"\x00\x00\xfd\xe9\x00")
AS4P_TYPE5 = attr(0xC0, 17, b"\x05\x01" + (4200000001).to_bytes(4, "big"))
AS4P_ZERO_SEG = attr(0xC0, 17, b"\x02\x00")
AS4P_ODD = attr(0xC0, 17, b"\x02\x01\x00\x00\xfd")
AS4P_EMPTY = attr(0xC0, 17, b"")
AS4A_LEN7 = attr(0xC0, 18, bytes(7))
OLD_BASE = origin() + as_path([(AS_SEQUENCE, (65001, 23456))], width=2) + next_hop()
UNKNOWN_WK = attr(0x40, 99, b"\x01\x02")
UNKNOWN_WK_PARTIAL = attr(0x60, 200, b"")

ROWS = [
    # ---- RFC 7606 §7.1 ORIGIN: length not 1 or undefined value -> treat-as-withdraw.
    # RFC 4271 §6.3: length -> Attribute Length Error (5), value -> Invalid ORIGIN (6),
    # data = the attribute.
    pytest.param(only(ORIGIN_LEN0, as_path(), next_hop()), IBGP, taw(3, 5, ORIGIN_LEN0), id="7.1-origin-length-0"),
    pytest.param(only(ORIGIN_LEN2, as_path(), next_hop()), IBGP, taw(3, 5, ORIGIN_LEN2), id="7.1-origin-length-2"),
    pytest.param(only(ORIGIN_3, as_path(), next_hop()), IBGP, taw(3, 6, ORIGIN_3), id="7.1-origin-value-3"),
    pytest.param(only(ORIGIN_FF, as_path(), next_hop()), IBGP, taw(3, 6, ORIGIN_FF), id="7.1-origin-value-255"),
    # ---- §7.2 AS_PATH: unknown segment type, zero-length segment, overrun,
    # underrun -> treat-as-withdraw; RFC 4271 §6.3 Malformed AS_PATH (11), no data.
    pytest.param(only(origin(), attr(0x40, 2, b"\x00\x01\x00\x00\xfd\xe9"), next_hop()), IBGP, taw(3, 11, b""), id="7.2-as-path-segment-type-0"),
    pytest.param(only(origin(), attr(0x40, 2, b"\x05\x01\x00\x00\xfd\xe9"), next_hop()), IBGP, taw(3, 11, b""), id="7.2-as-path-segment-type-5"),
    pytest.param(only(origin(), attr(0x40, 2, b"\x02\x00"), next_hop()), IBGP, taw(3, 11, b""), id="7.2-as-path-zero-count-segment"),
    pytest.param(only(origin(), attr(0x40, 2, b"\x02\x01\x00\x00\xfd\xe9\x02\x00"), next_hop()), IBGP, taw(3, 11, b""), id="7.2-as-path-zero-count-second-segment"),
    pytest.param(only(origin(), attr(0x40, 2, b"\x02\x02\x00\x00\xfd\xe9"), next_hop()), IBGP, taw(3, 11, b""), id="7.2-as-path-segment-overrun"),
    pytest.param(only(origin(), attr(0x40, 2, b"\x02\x01\x00\x00\xfd\xe9\x02"), next_hop()), IBGP, taw(3, 11, b""), id="7.2-as-path-one-octet-underrun"),
    pytest.param(only(origin(), as_path([(AS_SEQUENCE, (65001,))], width=4), next_hop()), OLD, taw(3, 11, b""), id="7.2-as-path-4-octet-on-2-octet-session"),
    # ---- §7.3 NEXT_HOP: length not 4 (RFC 4271: Attribute Length Error) or
    # not a valid host address (Invalid NEXT_HOP, 8) -> treat-as-withdraw.
    pytest.param(only(origin(), as_path(), NH_LEN3), IBGP, taw(3, 5, NH_LEN3), id="7.3-next-hop-length-3"),
    pytest.param(only(origin(), as_path(), NH_LEN5), IBGP, taw(3, 5, NH_LEN5), id="7.3-next-hop-length-5"),
    pytest.param(only(origin(), as_path(), NH_ZERO), IBGP, taw(3, 8, NH_ZERO), id="7.3-next-hop-0.0.0.0"),
    pytest.param(only(origin(), as_path(), NH_MCAST), IBGP, taw(3, 8, NH_MCAST), id="7.3-next-hop-multicast"),
    pytest.param(only(origin(), as_path(), NH_MCAST_TOP), IBGP, taw(3, 8, NH_MCAST_TOP), id="7.3-next-hop-multicast-top"),
    pytest.param(only(origin(), as_path(), NH_THIS_NET), IBGP, taw(3, 8, NH_THIS_NET), id="7.3-next-hop-0/8"),
    pytest.param(only(origin(), as_path(), NH_CLASS_E), IBGP, taw(3, 8, NH_CLASS_E), id="7.3-next-hop-class-e"),
    pytest.param(only(origin(), as_path(), NH_BROADCAST), IBGP, taw(3, 8, NH_BROADCAST), id="7.3-next-hop-broadcast"),
    # ---- §7.4 MULTI_EXIT_DISC: length not 4 -> treat-as-withdraw.
    pytest.param(ann(MED_LEN3), IBGP, taw(3, 5, MED_LEN3), id="7.4-med-length-3"),
    pytest.param(ann(MED_LEN0), IBGP, taw(3, 5, MED_LEN0), id="7.4-med-length-0"),
    # ---- §7.5 LOCAL_PREF: from an internal peer, length not 4 -> treat-as-withdraw;
    # from an external peer it is discarded (whatever it holds).
    pytest.param(ann(LP_LEN3), IBGP, taw(3, 5, LP_LEN3), id="7.5-local-pref-ibgp-length-3"),
    pytest.param(ann(local_pref(200)), EBGP, Handled(NONE, [], lacks=(5,)), id="7.5-local-pref-ebgp-silently-discarded"),
    pytest.param(ann(LP_LEN3), EBGP, Discarded(5), id="7.5-local-pref-ebgp-malformed-still-discarded"),
    # ---- §7.6 ATOMIC_AGGREGATE: length not 0 -> attribute discard.
    pytest.param(ann(ATOMIC_LEN1), IBGP, dis(3, 5, ATOMIC_LEN1, 6), id="7.6-atomic-aggregate-length-1"),
    # ---- §7.7 AGGREGATOR: length not 8 (4-octet session) / not 6 (2-octet) -> attribute discard.
    pytest.param(ann(AGG_LEN6), IBGP, dis(3, 5, AGG_LEN6, 7), id="7.7-aggregator-6-on-4-octet-session"),
    pytest.param(ann(AGG_LEN7), IBGP, dis(3, 5, AGG_LEN7, 7), id="7.7-aggregator-length-7"),
    pytest.param(ann(AGG_LEN0), IBGP, dis(3, 5, AGG_LEN0, 7), id="7.7-aggregator-length-0"),
    pytest.param(ann(AGG_LEN8, base=OLD_BASE), OLD, dis(3, 5, AGG_LEN8, 7), id="7.7-aggregator-8-on-2-octet-session"),
    # ---- §7.8 COMMUNITIES: length not a non-zero multiple of 4 -> treat-as-withdraw.
    pytest.param(ann(COMM_LEN0), IBGP, taw(3, 5, COMM_LEN0), id="7.8-communities-empty"),
    pytest.param(ann(COMM_LEN5), IBGP, taw(3, 5, COMM_LEN5), id="7.8-communities-length-5"),
    # ---- §7.9 ORIGINATOR_ID: internal peer, length not 4 -> treat-as-withdraw;
    # external peer -> attribute discard.
    pytest.param(ann(OID_LEN3), IBGP, taw(3, 5, OID_LEN3), id="7.9-originator-id-ibgp-length-3"),
    pytest.param(ann(originator_id()), EBGP, Discarded(9), id="7.9-originator-id-ebgp-discarded"),
    pytest.param(ann(OID_LEN3), EBGP, Discarded(9), id="7.9-originator-id-ebgp-malformed-discarded"),
    # ---- §7.10 CLUSTER_LIST: internal peer, length not a non-zero multiple of 4
    # -> treat-as-withdraw; external peer -> attribute discard.
    pytest.param(ann(CL_LEN0), IBGP, taw(3, 5, CL_LEN0), id="7.10-cluster-list-ibgp-empty"),
    pytest.param(ann(CL_LEN5), IBGP, taw(3, 5, CL_LEN5), id="7.10-cluster-list-ibgp-length-5"),
    pytest.param(ann(cluster_list("10.0.0.2")), EBGP, Discarded(10), id="7.10-cluster-list-ebgp-discarded"),
    pytest.param(ann(CL_LEN5), EBGP, Discarded(10), id="7.10-cluster-list-ebgp-malformed-discarded"),
    # ---- §7.14 EXTENDED COMMUNITIES: length not a non-zero multiple of 8 -> treat-as-withdraw.
    pytest.param(ann(EXT_LEN0), IBGP, taw(3, 5, EXT_LEN0), id="7.14-ext-communities-empty"),
    pytest.param(ann(EXT_LEN9), IBGP, taw(3, 5, EXT_LEN9), id="7.14-ext-communities-length-9"),
    # ---- RFC 8092 §6 LARGE_COMMUNITY: length not a non-zero multiple of 12 -> treat-as-withdraw.
    pytest.param(ann(LARGE_LEN0), IBGP, taw(3, 5, LARGE_LEN0), id="8092-large-community-empty"),
    pytest.param(ann(LARGE_LEN13), IBGP, taw(3, 5, LARGE_LEN13), id="8092-large-community-length-13"),
    # ---- RFC 9234 §5 OTC: length not 4 -> treat-as-withdraw.
    pytest.param(ann(OTC_LEN3), IBGP, taw(3, 5, OTC_LEN3), id="9234-otc-length-3"),
    pytest.param(ann(OTC_LEN5), IBGP, taw(3, 5, OTC_LEN5), id="9234-otc-length-5"),
    # ---- RFC 6793 §6 AS4_PATH / AS4_AGGREGATOR from an OLD speaker: malformed
    # -> attribute discard (RFC 4271 §6.3 Optional Attribute Error for the path).
    pytest.param(ann(AS4P_TYPE5, base=OLD_BASE), OLD, dis(3, 9, AS4P_TYPE5, 17, keeps={2: b"\x02\x02\x00\x00\xfd\xe9\x00\x00\x5b\xa0"}), id="6793-as4-path-segment-type-5"),
    pytest.param(ann(AS4P_ZERO_SEG, base=OLD_BASE), OLD, dis(3, 9, AS4P_ZERO_SEG, 17), id="6793-as4-path-zero-count-segment"),
    pytest.param(ann(AS4P_ODD, base=OLD_BASE), OLD, dis(3, 9, AS4P_ODD, 17), id="6793-as4-path-odd-length"),
    pytest.param(ann(AS4P_EMPTY, base=OLD_BASE), OLD, dis(3, 9, AS4P_EMPTY, 17), id="6793-as4-path-shorter-than-6"),
    pytest.param(ann(AS4A_LEN7, base=OLD_BASE), OLD, dis(3, 5, AS4A_LEN7, 18), id="6793-as4-aggregator-length-7"),
    # ---- §3 c: Optional/Transitive bits in conflict -> the attribute is
    # malformed: treat-as-withdraw, except where §3 f / §7 says attribute
    # discard (ATOMIC_AGGREGATE, AGGREGATOR).  RFC 4271 §6.3: Attribute
    # Flags Error (4), data = the attribute.
    pytest.param(only(attr(0xC0, 1, b"\x00"), as_path(), next_hop()), IBGP, taw(3, 4, attr(0xC0, 1, b"\x00")), id="3c-flags-origin-optional"),
    pytest.param(only(origin(), as_path(flags=0x80), next_hop()), IBGP, taw(3, 4, as_path(flags=0x80)), id="3c-flags-as-path-optional"),
    pytest.param(only(origin(), as_path(), next_hop(flags=0x00)), IBGP, taw(3, 4, next_hop(flags=0x00)), id="3c-flags-next-hop-non-transitive"),
    pytest.param(ann(med(flags=0x40)), IBGP, taw(3, 4, med(flags=0x40)), id="3c-flags-med-well-known"),
    pytest.param(ann(med(flags=0xC0)), IBGP, taw(3, 4, med(flags=0xC0)), id="3c-flags-med-transitive"),
    pytest.param(ann(local_pref(flags=0x80)), IBGP, taw(3, 4, local_pref(flags=0x80)), id="3c-flags-local-pref-optional"),
    pytest.param(ann(communities(1, flags=0x80)), IBGP, taw(3, 4, communities(1, flags=0x80)), id="3c-flags-communities-non-transitive"),
    pytest.param(ann(cluster_list("10.0.0.1", flags=0xC0)), IBGP, taw(3, 4, cluster_list("10.0.0.1", flags=0xC0)), id="3c-flags-cluster-list-transitive"),
    pytest.param(ann(attr(0x80, 16, bytes(8))), IBGP, taw(3, 4, attr(0x80, 16, bytes(8))), id="3c-flags-ext-communities-non-transitive"),
    pytest.param(ann(attr(0x80, 32, bytes(12))), IBGP, taw(3, 4, attr(0x80, 32, bytes(12))), id="3c-flags-large-community-non-transitive"),
    pytest.param(ann(otc(flags=0x40)), IBGP, taw(3, 4, otc(flags=0x40)), id="3c-flags-otc-well-known"),
    pytest.param(ann(atomic_aggregate(flags=0xC0)), IBGP, dis(3, 4, atomic_aggregate(flags=0xC0), 6), id="3f-flags-atomic-aggregate-optional"),
    pytest.param(ann(aggregator(65001, flags=0x80)), IBGP, dis(3, 4, aggregator(65001, flags=0x80), 7), id="3f-flags-aggregator-non-transitive"),
    pytest.param(ann(aggregator(65001, flags=0x40)), IBGP, dis(3, 4, aggregator(65001, flags=0x40), 7), id="3f-flags-aggregator-well-known"),
    # ---- §5.3 / §3 j: MP_REACH / MP_UNREACH incorrect (flags, length, next
    # hop length, NLRI) -> the NLRI cannot be trusted: session reset or
    # AFI/SAFI disable (RFC 4760 §7: Optional Attribute Error).
    pytest.param(only(origin(), as_path(), mp_reach(2, 1, GUA, V6_NLRI, flags=0xC0), nlri=b""), IBGP, Reset(3, 4, mp_reach(2, 1, GUA, V6_NLRI, flags=0xC0), RESET), id="5.3-mp-reach-flags"),
    pytest.param(only(mp_unreach(2, 1, V6_NLRI, flags=0x40), nlri=b""), IBGP, Reset(3, 4, mp_unreach(2, 1, V6_NLRI, flags=0x40), RESET), id="5.3-mp-unreach-flags"),
    pytest.param(only(origin(), as_path(), mp_reach(2, 1, ip4("192.0.2.1"), V6_NLRI), nlri=b""), IBGP, Reset(3, 9, ANY, AFISAFI), id="7.11-mp-reach-ipv6-next-hop-length-4"),
    pytest.param(only(origin(), as_path(), mp_reach(2, 1, bytes(9), V6_NLRI), nlri=b""), IBGP, Reset(3, 9, ANY, AFISAFI), id="7.11-mp-reach-next-hop-length-9"),
    pytest.param(only(origin(), as_path(), mp_reach(1, 1, bytes(5), BASE_NLRI), nlri=b""), IBGP, Reset(3, 9, ANY, AFISAFI), id="7.11-mp-reach-ipv4-next-hop-length-5"),
    pytest.param(only(origin(), as_path(), attr(0x80, 14, b"\x00\x02\x01\x40" + GUA + b"\x00"), nlri=b""), IBGP, Reset(3, 9, ANY, RESET), id="7.11-mp-reach-next-hop-overruns"),
    pytest.param(only(origin(), as_path(), attr(0x80, 14, b"\x00\x02\x01\x00"), nlri=b""), IBGP, Reset(3, 9, ANY, RESET), id="5.3-mp-reach-shorter-than-5"),
    pytest.param(only(attr(0x80, 15, b"\x00\x02"), nlri=b""), IBGP, Reset(3, 9, ANY, RESET), id="5.3-mp-unreach-shorter-than-3"),
    pytest.param(only(origin(), as_path(), mp_reach(2, 1, GUA, b"\x81" + bytes(17)), nlri=b""), IBGP, Reset(3, 9, ANY, AFISAFI), id="5.3-mp-reach-ipv6-prefix-129"),
    pytest.param(only(origin(), as_path(), mp_reach(2, 1, GUA, b"\x30\x20\x01"), nlri=b""), IBGP, Reset(3, 9, ANY, AFISAFI), id="5.3-mp-reach-prefix-truncated"),
    pytest.param(only(origin(), as_path(), mp_reach(1, 1, ip4("192.0.2.1"), b"\x21" + bytes(5)), nlri=b""), IBGP, Reset(3, 9, ANY, AFISAFI), id="5.3-mp-reach-ipv4-prefix-33"),
    pytest.param(only(mp_unreach(2, 1, b"\x40\x20\x01\x0d\xb8"), nlri=b""), IBGP, Reset(3, 9, ANY, AFISAFI), id="5.3-mp-unreach-prefix-truncated"),
    # ---- §3 g: repeated MP_* -> Malformed Attribute List, session reset;
    # any other repeat -> the later copies are discarded.
    pytest.param(only(origin(), as_path(), mp_reach(2, 1, GUA, V6_NLRI[:7]), mp_reach(2, 1, GUA, V6_NLRI[7:]), nlri=b""), IBGP, Reset(3, 1, b"", RESET), id="3g-repeated-mp-reach"),
    pytest.param(only(mp_unreach(2, 1, V6_NLRI[:7]), mp_unreach(2, 1, V6_NLRI[7:]), nlri=b""), IBGP, Reset(3, 1, b"", RESET), id="3g-repeated-mp-unreach"),
    pytest.param(ann(origin(2)), IBGP, Handled(DISCARD, [(3, 1, b"", DISCARD)], keeps={1: b"\x00"}), id="3g-repeated-origin-first-kept"),
    pytest.param(ann(communities(1), communities(2)), IBGP, Handled(DISCARD, [(3, 1, b"", DISCARD)], keeps={8: b"\x00\x00\x00\x01"}), id="3g-repeated-communities-first-kept"),
    pytest.param(ann(attr(0xC0, 99, b"a"), attr(0xC0, 99, b"b")), IBGP, Handled(DISCARD, [(3, 1, b"", DISCARD)], keeps={99: b"a"}), id="3g-repeated-unknown-first-kept"),
    # ---- RFC 4271 §6.3: unrecognized well-known attribute -> Unrecognized
    # Well-known Attribute (2), data = the attribute; RFC 7606 keeps the reset.
    pytest.param(ann(UNKNOWN_WK), IBGP, Reset(3, 2, UNKNOWN_WK, RESET), id="4271-unrecognized-well-known"),
    pytest.param(ann(UNKNOWN_WK_PARTIAL), IBGP, Reset(3, 2, UNKNOWN_WK_PARTIAL, RESET), id="4271-unrecognized-well-known-empty"),
    # ---- §3 d: a missing well-known mandatory attribute -> treat-as-withdraw;
    # RFC 4271 §6.3 Missing Well-known Attribute (3), data = its type code.
    pytest.param(only(as_path(), next_hop()), IBGP, taw(3, 3, b"\x01"), id="3d-missing-origin"),
    pytest.param(only(origin(), next_hop()), IBGP, taw(3, 3, b"\x02"), id="3d-missing-as-path"),
    pytest.param(only(origin(), as_path()), IBGP, taw(3, 3, b"\x03"), id="3d-missing-next-hop"),
    pytest.param(only(), IBGP, taw(3, 3, b"\x01"), id="3d-no-attributes-at-all"),
    pytest.param(only(as_path(), mp_reach(2, 1, GUA, V6_NLRI), nlri=b""), IBGP, taw(3, 3, b"\x01", mp_unreach=(2, 1, V6_NLRI)), id="3d-missing-origin-for-mp-reach"),
    # RFC 4760 §3: NEXT_HOP is only needed for NLRI in the classic field.
    pytest.param(only(origin(), as_path(), mp_reach(2, 1, GUA, V6_NLRI), nlri=b""), IBGP, Handled(NONE, []), id="3d-next-hop-not-needed-for-mp-reach"),
    # Nothing is mandatory without reachable NLRI.
    pytest.param(only(nlri=b"", withdrawn=WD), IBGP, Handled(NONE, []), id="3d-nothing-mandatory-for-withdrawals"),
    pytest.param(only(mp_unreach(2, 1, V6_NLRI), nlri=b""), IBGP, Handled(NONE, []), id="3d-nothing-mandatory-for-mp-unreach"),
    # ---- §4: attribute running past the attribute block, or a block ending
    # with fewer than 3 (4 with Extended Length) octets -> treat-as-withdraw;
    # with no reachable NLRI in sight §5.2 requires a session reset.
    pytest.param(ann(raw_attr(0xC0, 8, 8, bytes(4))), IBGP, taw(3, 1, b""), id="4-attribute-overrun"),
    pytest.param(ann(b"\xc0\x08"), IBGP, taw(3, 1, b""), id="4-two-octets-left"),
    pytest.param(ann(b"\xd0\x08\x00"), IBGP, taw(3, 1, b""), id="4-extended-length-three-octets-left"),
    pytest.param(ann(raw_attr(0xD0, 8, 0x100, bytes(8))), IBGP, taw(3, 1, b""), id="4-extended-length-overrun"),
    pytest.param(only(origin(), raw_attr(0xC0, 8, 8, bytes(4)), nlri=b"", withdrawn=WD), IBGP, Reset(3, 1, b"", RESET), id="4-5.2-overrun-without-nlri"),
    pytest.param(only(mp_unreach(2, 1, V6_NLRI), raw_attr(0xC0, 8, 8, bytes(4)), nlri=b""), IBGP, Reset(3, 1, ANY, RESET), id="4-5.2-overrun-after-mp-unreach-without-reachable-nlri"),
    # §3 j: treat-as-withdraw needs every MP_REACH parsed; an overrunning
    # MP_REACH_NLRI hides NLRI we cannot withdraw.
    pytest.param(ann(raw_attr(0x80, 14, 60, b"\x00\x02\x01\x10" + GUA)), IBGP, Reset(3, ANY, ANY, RESET), id="3j-overrunning-mp-reach"),
    # ---- §3 b: lengths that do not add up -> Malformed Attribute List, reset.
    pytest.param(b"\x00\x10\x00\x00" + bytes(4), IBGP, Reset(3, 1, b"", RESET), id="3b-withdrawn-length-overrun"),
    pytest.param(update_body(b"", b"")[:2] + b"\x00\x40" + BASE_ATTRS, IBGP, Reset(3, 1, b"", RESET), id="3b-attribute-length-overrun"),
    pytest.param(b"\x00\x00\x00", IBGP, Reset(3, 1, b"", RESET), id="3b-shorter-than-4"),
    # ---- §5.3 / RFC 4271 §6.3: NLRI or withdrawn routes that cannot be
    # parsed -> Invalid Network Field (10), session reset.
    pytest.param(ann(nlri=b"\x21" + bytes(5)), IBGP, Reset(3, 10, b"", RESET), id="5.3-nlri-length-33"),
    pytest.param(ann(nlri=b"\x18\x0a\x00"), IBGP, Reset(3, 10, b"", RESET), id="5.3-nlri-truncated"),
    pytest.param(ann(nlri=BASE_NLRI, withdrawn=b"\x21" + bytes(5)), IBGP, Reset(3, 10, b"", RESET), id="3i-withdrawn-length-33"),
    pytest.param(ann(nlri=BASE_NLRI, withdrawn=b"\x18\x0a"), IBGP, Reset(3, 10, b"", RESET), id="3i-withdrawn-truncated"),
    # ---- §5.2: attributes but no reachable NLRI: any error other than
    # attribute discard -> session reset.
    pytest.param(only(origin(), COMM_LEN5, nlri=b"", withdrawn=WD), IBGP, Reset(3, 5, COMM_LEN5, RESET), id="5.2-withdrawals-with-malformed-communities"),
    pytest.param(only(ORIGIN_3, nlri=b"", withdrawn=WD), IBGP, Reset(3, 6, ORIGIN_3, RESET), id="5.2-withdrawals-with-bad-origin"),
    pytest.param(only(origin(), as_path(), MED_LEN3, mp_reach(2, 1, GUA, b""), nlri=b""), IBGP, Reset(3, 5, MED_LEN3, RESET), id="5.2-empty-mp-reach-with-malformed-med"),
    pytest.param(only(origin(), ATOMIC_LEN1, nlri=b"", withdrawn=WD), IBGP, dis(3, 5, ATOMIC_LEN1, 6), id="5.2-discard-still-allowed-without-nlri"),
    # ---- §3 h: several errors -> the strongest action; every error listed.
    pytest.param(ann(ATOMIC_LEN1, MED_LEN3), IBGP, Handled(WITHDRAW, [(3, 5, ATOMIC_LEN1, DISCARD), (3, 5, MED_LEN3, WITHDRAW)]), id="3h-discard-plus-withdraw"),
    pytest.param(ann(ATOMIC_LEN1, AGG_LEN7), IBGP, Handled(DISCARD, [(3, 5, ATOMIC_LEN1, DISCARD), (3, 5, AGG_LEN7, DISCARD)], lacks=(6, 7)), id="3h-two-discards"),
    pytest.param(ann(MED_LEN3, UNKNOWN_WK), IBGP, Reset(3, 2, UNKNOWN_WK, RESET), id="3h-withdraw-then-reset"),
    # ---- §2 treat-as-withdraw covers MP_REACH NLRI too (they join MP_UNREACH).
    pytest.param(only(origin(), as_path(), MED_LEN3, mp_reach(2, 1, GUA, V6_NLRI), nlri=b""), IBGP, taw(3, 5, MED_LEN3, mp_unreach=(2, 1, V6_NLRI)), id="2-withdraw-mp-reach"),
    pytest.param(
        only(mp_unreach(2, 1, prefixes("2001:db8:9::/48")), origin(), as_path(), MED_LEN3, mp_reach(2, 1, GUA, V6_NLRI), nlri=b""),
        IBGP,
        taw(3, 5, MED_LEN3, mp_unreach=(2, 1, prefixes("2001:db8:9::/48") + V6_NLRI)),
        id="2-withdraw-mp-reach-joins-mp-unreach",
    ),
    pytest.param(only(origin(), as_path(), next_hop(), MED_LEN3, mp_reach(1, 1, ip4("192.0.2.1"), BASE_NLRI), nlri=prefixes("10.9.0.0/16"), withdrawn=WD), IBGP, taw(3, 5, MED_LEN3, mp_unreach=(1, 1, BASE_NLRI)), id="2-withdraw-classic-and-mp"),
]


def _nlri_fields(body):
    wlen = int.from_bytes(body[:2], "big")
    alen = int.from_bytes(body[2 + wlen : 4 + wlen], "big")
    return body[2 : 2 + wlen], body[4 + wlen + alen :]


def _errors(pu):
    return [(e.code, e.subcode, e.data, e.action) for e in pu.errors]


@pytest.mark.parametrize("body,ctx,expect", ROWS)
def test_rfc7606(codec, body, ctx, expect):
    withdrawn, nlri = _nlri_fields(body)
    if isinstance(expect, Reset):
        with pytest.raises(BGPError) as exc:
            codec.parse_update(body, ctx)
        e = exc.value
        assert e.code == expect.code
        if expect.subcode is not ANY:
            assert e.subcode == expect.subcode
        if expect.data is not ANY:
            assert e.data == expect.data
        assert e.action == expect.action
        return
    pu = codec.parse_update(body, ctx)
    types = attr_types(pu.attrs)
    if isinstance(expect, Discarded):
        assert pu.action in (NONE, DISCARD)
        assert expect.type_code not in types
        assert all(e.action == DISCARD and e.attr_type == expect.type_code for e in pu.errors)
        assert (pu.withdrawn, pu.nlri) == (withdrawn, nlri)
        return
    assert pu.action == expect.action
    assert _errors(pu) == expect.errors
    if expect.action == WITHDRAW:
        # §2: every announced route is handled as withdrawn; attributes gone.
        assert pu.treat_as_withdraw
        assert pu.withdrawn == withdrawn + nlri
        assert (pu.attrs, pu.nlri, pu.next_hop, pu.mp_reach, pu.n_announced) == (b"", b"", b"", None, 0)
        assert pu.mp_unreach == expect.mp_unreach
        return
    assert (pu.withdrawn, pu.nlri) == (withdrawn, nlri)
    for t in expect.lacks:
        assert t not in types
    for t, v in expect.keeps.items():
        assert attr_value(pu.attrs, t) == v
        assert types.count(t) == 1


# ---------------------------------------------------------------- beyond the table


MP_CASES = [
    mp_reach(2, 1, ip4("192.0.2.1"), V6_NLRI),
    mp_reach(2, 1, GUA, b"\x81" + bytes(17)),
    attr(0x80, 14, b"\x00\x02\x01\x00"),
    mp_unreach(2, 1, b"\x40\x20\x01\x0d\xb8"),
    attr(0x80, 15, b"\x00\x02"),
]


def test_optional_attribute_error_data_is_the_attribute(codec):
    """RFC 4271 §6.3: "If an optional attribute is recognized, then the value
    of this attribute MUST be checked.  If an error is detected, the
    attribute MUST be discarded, and the Error Subcode MUST be set to
    Optional Attribute Error.  The Data field MUST contain the attribute
    (type, length, and value)."  RFC 4760 §7 names that subcode for an
    incorrect MP_REACH_NLRI / MP_UNREACH_NLRI; the attribute in the data is
    also how the receiver learns which AFI/SAFI to disable."""
    for a in MP_CASES:
        body = update_body(b"", origin() + as_path() + a)
        with pytest.raises(BGPError) as exc:
            codec.parse_update(body, IBGP)
        assert (exc.value.code, exc.value.subcode) == (3, 9)
        assert exc.value.data == a, a.hex()


@pytest.mark.parametrize(
    "body,expect",
    [
        (update_body(b"", BASE_ATTRS + ATOMIC_LEN1, BASE_NLRI), (3, 5, ATOMIC_LEN1, DISCARD)),
        (update_body(b"", BASE_ATTRS + AGG_LEN7, BASE_NLRI), (3, 5, AGG_LEN7, DISCARD)),
        (update_body(b"", BASE_ATTRS + origin(1), BASE_NLRI), (3, 1, b"", DISCARD)),
        (update_body(b"", BASE_ATTRS + MED_LEN3, BASE_NLRI), (3, 5, MED_LEN3, WITHDRAW)),
        (update_body(b"", origin() + as_path(), BASE_NLRI), (3, 3, b"\x03", WITHDRAW)),
        (update_body(b"", BASE_ATTRS + b"\xc0\x08", BASE_NLRI), (3, 1, b"", WITHDRAW)),
    ],
    ids=["discard-atomic", "discard-aggregator", "discard-repeat", "withdraw-med", "withdraw-missing", "withdraw-overrun"],
)
def test_strict_raises_every_error(codec, body, expect):
    # strict=True: the first error of any kind raises, keeping its action.
    with pytest.raises(BGPError) as exc:
        codec.parse_update(body, IBGP, strict=True)
    e = exc.value
    assert (e.code, e.subcode, e.data, e.action) == expect
    # Without strict the same message goes through.
    assert codec.parse_update(body, IBGP).action == expect[3]


def test_strict_accepts_clean_updates(codec):
    body = update_body(WD, BASE_ATTRS + med(1), BASE_NLRI)
    assert codec.parse_update(body, IBGP, strict=True) == codec.parse_update(body, IBGP)
    # Dropping LOCAL_PREF from an external peer is policy, not an error.
    body = update_body(b"", BASE_ATTRS + local_pref(5), BASE_NLRI)
    assert codec.parse_update(body, EBGP, strict=True).attrs == BASE_ATTRS


def test_error_attr_type(codec):
    pu = codec.parse_update(update_body(b"", BASE_ATTRS + ATOMIC_LEN1 + COMM_LEN5, BASE_NLRI), IBGP)
    assert [e.attr_type for e in pu.errors] == [6, 8]
    with pytest.raises(BGPError) as exc:
        codec.parse_update(update_body(b"", BASE_ATTRS + mp_unreach(2, 1) + mp_unreach(2, 1)), IBGP)
    assert exc.value.attr_type == 15


def test_lenient_is_for_inspection_only(codec):
    """parse_update(lenient=True) (captures, never a session) keeps what a
    session must reset on: an unrecognized well-known attribute (RFC 4271
    §6.3) and an MP_REACH_NLRI next hop of unexpected length (RFC 7606
    §7.11).  The default stays strict about both."""
    wk = update_body(b"", BASE_ATTRS + UNKNOWN_WK, BASE_NLRI)
    nh = only(origin(), as_path(), mp_reach(2, 1, bytes(9), V6_NLRI), nlri=b"")
    for body in (wk, nh):
        with pytest.raises(BGPError) as exc:
            codec.parse_update(body, IBGP)
        assert exc.value.action >= AFISAFI
    pu = codec.parse_update(wk, IBGP, False, True)
    assert attr_value(pu.attrs, 99) == b"\x01\x02" and pu.nlri == BASE_NLRI
    pu = codec.parse_update(nh, IBGP, False, True)
    assert pu.mp_reach == (2, 1, bytes(9), V6_NLRI) and pu.n_announced == 2


def test_loopback_next_hop_accepted_on_receipt(codec):
    # A session over loopback carries the peer's own 127.x address as its
    # NEXT_HOP (lab, demo, load tests), so receipt accepts it; what we
    # originate is still checked by wire/nexthop.check_next_hop.
    body = only(origin(), as_path(), NH_LOOPBACK)
    pu = codec.parse_update(body, IBGP, strict=True)
    assert pu.action == NONE and next_hop("127.0.0.1") in pu.attrs
