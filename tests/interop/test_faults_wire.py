"""Fault suite, wire and session side: the real ``fastbgp daemon`` in the
namespace lab (fastbgp/testing/faultlab.py) takes hostile bytes from an
attacker host (fastbgp/testing/attacker.py) while a witness BIRD holds
20,000 IPv6 routes towards it and receives 256 routes it learnt from a
second BIRD.  Every test ends with ``fl.check_witness()``: both witness
sessions up since the lab converged, all their routes still held both
ways, KEEPALIVEs on time, the daemon alive.

Cases: malformed UPDATEs at session level (RFC 7606 treat-as-withdraw,
attribute discard, session reset, checked in the daemon's Loc-RIB, at the
witness, in the NOTIFICATION the attacker gets and in the WARNING log);
message header errors (RFC 4271 §6.1); OPEN errors (§6.2, RFC 5492, RFC
6793); connections from an unconfigured address; a half-open flood from a
configured peer's address (RFC 4271 §6.8 / issue 10 defect 5).

One lab for the whole module (about 2 s to build); cases run one after the
other against it.  Every case also runs over IPv6 transport (issue 12): a
second lab, ``FaultLab(transport="ipv6")``, where the attacker, src and the
witness all talk BGP to the daemon over IPv6 and IPv4 routes reach the
witness with RFC 8950 next hops (there "our own next hop" is the daemon's
IPv6 address in MP_REACH_NLRI, and BGP Identifiers stay four octets).
Their test ids carry ``ipv6-`` or ``[ipv6]``; the IPv4 case ids are
unchanged.
"""

from __future__ import annotations

import ipaddress
import os
import struct
import threading
import time

import pytest

from fastbgp.testing import lab as L
from fastbgp.testing.attacker import RawPeer, attribute, open_body, prefixes, standard_attrs, update_body
from fastbgp.testing.daemonlab import transport_fixtures
from fastbgp.testing.faultlab import ATTACKER_AS, FaultLab
from fastbgp.wire import capabilities as caps
from fastbgp.wire import messages as M
from fastbgp.wire.constants import (
    AFI_IPV4,
    AFI_IPV6,
    ATTR_AGGREGATOR,
    ATTR_AS_PATH,
    ATTR_ATOMIC_AGGREGATE,
    ATTR_MED,
    ATTR_MP_REACH_NLRI,
    ATTR_NEXT_HOP,
    ATTR_ORIGIN,
    MARKER,
    MSG_KEEPALIVE,
    MSG_NOTIFICATION,
    MSG_OPEN,
    MSG_UPDATE,
    SAFI_UNICAST,
)

from .conftest import lab_namespaces, require
from .fastbgp_peer import FastBGP

pytestmark = [pytest.mark.interop, pytest.mark.slow, pytest.mark.timeout(60)]


def _fault_lab(transport):
    """One FaultLab for the module; afterwards nothing of it is left."""
    require(L.Bird)
    lab = FaultLab(transport=transport)
    try:
        lab.start()
        yield lab
    finally:
        lab.close()
        procs = [p.pid for p in lab.lab._procs if p.poll() is None]
        assert not procs, "lab processes still running: %s" % procs
        assert not lab_namespaces(lab.lab.prefix), "lab namespaces left behind"
        assert not os.path.exists(lab.lab.tmpdir or "/nonexistent"), "lab temp dir left behind"


# ``flt``: the lab of the case's transport (``fl`` or ``fl6``).
fl, fl6, flt = transport_fixtures(_fault_lab, ("fl", "fl6", "flt"))


def over_transports(names, ipv6=None) -> list:
    """(transport, case) params: every case in ``names`` over IPv4 (ids as
    before), the ones in ``ipv6`` (default: all) also over IPv6 (ids
    ``ipv6-<case>``)."""
    ipv6 = names if ipv6 is None else ipv6
    assert set(ipv6) <= set(names), set(ipv6) - set(names)
    return ([pytest.param("ipv4", n, id=n) for n in names]
            + [pytest.param("ipv6", n, id="ipv6-" + n) for n in ipv6])


_case = iter(range(1, 1000))


def case_prefix() -> str:
    """A /29 of 203.0.113.0/24 no earlier case used (src holds the /32s)."""
    return "203.0.113.%d/29" % (8 * (next(_case) % 32))


def attacker_session(fl, **kw) -> RawPeer:
    """The attacker's session, Established; over IPv6 it offers RFC 8950
    extended next hop for IPv4 unicast like the daemon's side."""
    kw.setdefault("bgp_id", fl.attacker_id)
    if fl.transport == "ipv6" and "capabilities" not in kw:
        kw["capabilities"] = [caps.Multiprotocol(AFI_IPV4, SAFI_UNICAST), caps.FourOctetAS(ATTACKER_AS),
                              caps.ExtendedNextHop([(AFI_IPV4, SAFI_UNICAST, AFI_IPV6)])]
    return RawPeer.establish(fl.ah.ns, fl.attacker, fl.address, kw.pop("asn", ATTACKER_AS), **kw)


def attacker_paths(fl, prefix):
    return [r for r in fl.rib("ipv4", prefix) if r.get("source") == fl.attacker]


def wait_paths(fl, prefix, present: bool, timeout: float = 5.0):
    def check():
        assert fl.daemon_alive(), fl.describe()
        got = attacker_paths(fl, prefix)
        if bool(got) == present:
            return got or True
        return None

    return L.wait_for(check, timeout, interval=0.1, what="%s %s the daemon's RIB" % (prefix, "in" if present else "gone from"),
                      on_timeout=fl.describe)


def announce(peer, fl, prefix, replace=None) -> None:
    """A valid UPDATE for ``prefix`` from the attacker, with attributes in
    ``replace`` (type code -> raw attribute bytes, b"" to leave it out; an
    MP_REACH_NLRI there carries the NLRI itself)."""
    attrs = standard_attrs(ATTACKER_AS, fl.attacker_id)
    attrs.update(replace or {})
    nlri = b"" if attrs.get(ATTR_MP_REACH_NLRI) else prefixes(prefix)
    peer.send_message(MSG_UPDATE, update_body(b"".join(attrs.values()), nlri=nlri))


def warnings_since(fl, mark) -> list:
    return [r["msg"] for r in fl.log_records(mark) if r.get("level") in ("warning", "error", "critical", "raw")]


def expect_reset(fl, peer, mark, code, subcode, name):
    """The attacker gets NOTIFICATION code/subcode, its connection closes,
    and the daemon logs the loss at WARNING with the names."""
    n = peer.expect_notification(timeout=5)
    assert n is not None, "connection closed without a NOTIFICATION\n" + fl.describe()
    assert (n.code, n.subcode) == (code, subcode), "got %d/%d (%s), expected %d/%d" % (
        n.code, n.subcode, n.data.hex(), code, subcode)
    assert peer.wait_closed(5), "the daemon kept the connection open after its NOTIFICATION"
    needle = "NOTIFICATION sent %d/%d (%s)" % (code, subcode, name)

    def logged():
        return [w for w in warnings_since(fl, mark) if needle in w and fl.attacker in w]

    L.wait_for(logged, 5, interval=0.1, what="WARNING %r" % needle,
               on_timeout=lambda: "\n".join(warnings_since(fl, mark)))
    return n


# --------------------------------------------------------------- 1. malformed UPDATEs

T = 0x40  # well-known transitive
OT = 0xC0  # optional transitive
O_ = 0x80  # optional non-transitive

# RFC 7606 treat-as-withdraw: the route the attacker announced before is
# withdrawn, the session stays up, nothing is sent back.
WITHDRAW_CASES = {
    "origin-value-3": {ATTR_ORIGIN: attribute(T, ATTR_ORIGIN, b"\x03")},  # §7.1
    "origin-length-2": {ATTR_ORIGIN: attribute(T, ATTR_ORIGIN, b"\x00\x00")},  # §7.1
    "origin-flags-optional": {ATTR_ORIGIN: attribute(OT, ATTR_ORIGIN, b"\x00")},  # §3 c
    "as-path-segment-overrun": {ATTR_AS_PATH: attribute(T, ATTR_AS_PATH, b"\x02\x05" + struct.pack("!I", 65066))},
    "as-path-segment-type-0": {ATTR_AS_PATH: attribute(T, ATTR_AS_PATH, b"\x00\x01" + struct.pack("!I", 65066))},
    "as-path-as-0": {ATTR_AS_PATH: attribute(T, ATTR_AS_PATH, b"\x02\x02" + struct.pack("!II", 65066, 0))},  # RFC 7607
    "as-path-empty-segment": {ATTR_AS_PATH: attribute(T, ATTR_AS_PATH, b"\x02\x00")},  # §7.2 / RFC 4271 §6.3
    "next-hop-length-5": {ATTR_NEXT_HOP: attribute(T, ATTR_NEXT_HOP, b"\xc0\x00\x02\x09\x00")},  # §7.3
    "next-hop-0.0.0.0": {ATTR_NEXT_HOP: attribute(T, ATTR_NEXT_HOP, bytes(4))},  # RFC 4271 §6.3
    "next-hop-multicast": {ATTR_NEXT_HOP: attribute(T, ATTR_NEXT_HOP, bytes((224, 0, 0, 5)))},
    "next-hop-broadcast": {ATTR_NEXT_HOP: attribute(T, ATTR_NEXT_HOP, b"\xff" * 4)},
    "med-length-3": {ATTR_MED: attribute(O_, ATTR_MED, b"\x00\x00\x01")},  # §7.4
    "communities-length-6": {8: attribute(OT, 8, b"\xfd\xea\x00\x01\x00\x00")},  # §7.8
    "missing-origin": {ATTR_ORIGIN: b""},  # §3 d
    "missing-next-hop": {ATTR_NEXT_HOP: b""},  # §3 d
    "attribute-overruns-block": {ATTR_MED: attribute(O_, ATTR_MED, b"\x00\x00\x00\x01", length=40)},  # §4
}


# RFC 4271 §6.3 for the next hop of MP_REACH_NLRI (the route in it, no
# NEXT_HOP): 4 octets over IPv4, the RFC 8950 IPv6 next hop over IPv6.  The
# daemon took any before (issue 12: IPv4 routes with next hop :: or ff02::1
# were installed and passed on).
MP_NEXT_HOP_CASES = {
    "mp-next-hop-unspecified": {"ipv4": "0.0.0.0", "ipv6": "::"},
    "mp-next-hop-multicast": {"ipv4": "224.0.0.5", "ipv6": "ff02::1"},
}


def withdraw_attrs(fl, case, prefix) -> dict:
    """The attributes ``announce`` replaces for treat-as-withdraw ``case``."""
    if case in MP_NEXT_HOP_CASES:
        mp = _mp_reach_v4(MP_NEXT_HOP_CASES[case][fl.transport], prefix)
        return {ATTR_NEXT_HOP: b"", ATTR_MP_REACH_NLRI: attribute(O_, ATTR_MP_REACH_NLRI, mp)}
    return WITHDRAW_CASES[case]


@pytest.mark.parametrize("transport,case", over_transports(list(WITHDRAW_CASES) + list(MP_NEXT_HOP_CASES)))
def test_update_treat_as_withdraw(flt, case):
    fl = flt
    prefix = case_prefix()
    mark = fl.log_mark()
    with attacker_session(fl) as peer:
        announce(peer, fl, prefix)
        wait_paths(fl, prefix, True)
        fl.witness.wait_route(prefix, timeout=10)
        announce(peer, fl, prefix, withdraw_attrs(fl, case, prefix))
        wait_paths(fl, prefix, False)
        fl.witness.wait_route(prefix, present=False, timeout=10)
        # The session is still up: a KEEPALIVE is answered by nothing, an
        # UPDATE still works, no NOTIFICATION came.
        announce(peer, fl, prefix)
        wait_paths(fl, prefix, True)
        assert not any(t == MSG_NOTIFICATION for t, _ in peer.drain()), "a NOTIFICATION was sent"
        assert fl.neighbor(fl.attacker)["state"] == "established"
    logged = warnings_since(fl, mark)
    assert any("treat-as-withdraw" in w and fl.attacker in w for w in logged), logged
    fl.check_witness()



def bird_route_text(fl, prefix) -> str:
    return fl.witness.birdc("show", "route", prefix, "all").stdout


def _aggregator(asn: int, address: str) -> bytes:
    return struct.pack("!I", asn) + bytes(int(x) for x in address.split("."))


# RFC 7606 attribute discard: the route stays, without the attribute; the
# witness sees the attribute on the first (valid) announcement and not after.
DISCARD_CASES = {
    # name: (type code, valid attribute, malformed one, BIRD's name for it)
    "atomic-aggregate-length-1": (ATTR_ATOMIC_AGGREGATE, attribute(T, ATTR_ATOMIC_AGGREGATE, b""),
                                  attribute(T, ATTR_ATOMIC_AGGREGATE, b"\x00"), "BGP.atomic_aggr"),  # §7.6
    "aggregator-length-5": (ATTR_AGGREGATOR, attribute(OT, ATTR_AGGREGATOR, _aggregator(65066, "192.0.2.99")),
                            attribute(OT, ATTR_AGGREGATOR, b"\x00\x00\xfe\x2a\xc0"), "BGP.aggregator"),  # §7.7
    "aggregator-as-0": (ATTR_AGGREGATOR, attribute(OT, ATTR_AGGREGATOR, _aggregator(65066, "192.0.2.99")),
                        attribute(OT, ATTR_AGGREGATOR, _aggregator(0, "192.0.2.99")), "BGP.aggregator"),  # RFC 7607
}


@pytest.mark.parametrize("transport,case", over_transports(list(DISCARD_CASES)))
def test_update_attribute_discard(flt, case):
    fl = flt
    code, good, bad, bird_name = DISCARD_CASES[case]
    prefix = case_prefix()
    mark = fl.log_mark()
    with attacker_session(fl) as peer:
        announce(peer, fl, prefix, {code: good})
        wait_paths(fl, prefix, True)
        L.wait_for(lambda: bird_name in bird_route_text(fl, prefix), 10, interval=0.1,
                   what="%s with %s at the witness" % (prefix, bird_name))
        announce(peer, fl, prefix, {code: bad})
        # Still announced, now without the attribute (RFC 7606 §2).
        L.wait_for(lambda: prefix in bird_route_text(fl, prefix) and bird_name not in bird_route_text(fl, prefix),
                   10, interval=0.1, what="%s without %s at the witness" % (prefix, bird_name),
                   on_timeout=lambda: bird_route_text(fl, prefix))
        assert attacker_paths(fl, prefix), "the route was dropped, not just the attribute"
        assert not any(t == MSG_NOTIFICATION for t, _ in peer.drain()), "a NOTIFICATION was sent"
        assert fl.neighbor(fl.attacker)["state"] == "established"
    assert any("attribute-discard" in w and fl.attacker in w for w in warnings_since(fl, mark))
    fl.check_witness()


def _mp_reach_v4(next_hop: str, prefix: str) -> bytes:
    # RFC 4760 §3: AFI, SAFI, next hop length + next hop, reserved, NLRI;
    # an IPv6 next hop for IPv4 NLRI is RFC 8950's 16-octet form.
    nh = ipaddress.ip_address(next_hop).packed
    return struct.pack("!HBB", AFI_IPV4, SAFI_UNICAST, len(nh)) + nh + b"\x00" + prefixes(prefix)


def _reset_cases(fl, prefix):
    """name -> (UPDATE body, code, subcode, names as logged)."""
    std = standard_attrs(ATTACKER_AS, fl.attacker_id)
    attrs = b"".join(std.values())
    nlri = prefixes(prefix)
    mal = "UPDATE Message Error / "
    bad_origin = attribute(OT, ATTR_ORIGIN, b"\x00") + std[ATTR_AS_PATH] + std[ATTR_NEXT_HOP]
    return {
        # RFC 4271 §6.3: lengths that do not add up.
        "withdrawn-length-overrun": (update_body(attrs, nlri, withdrawn_len=400), 3, 1, mal + "malformed-attr-list"),
        "attribute-length-overrun": (update_body(attrs, nlri, attrs_len=400), 3, 1, mal + "malformed-attr-list"),
        # RFC 7606 §5.3: NLRI that cannot be parsed.
        "nlri-prefix-length-33": (update_body(attrs, b"\x21" + bytes(5)), 3, 10, mal + "invalid-network"),
        "nlri-truncated": (update_body(attrs, nlri + b"\x18\xcb\x00"), 3, 10, mal + "invalid-network"),
        "withdrawn-prefix-length-40": (update_body(withdrawn=b"\x28" + bytes(5)), 3, 10, mal + "invalid-network"),
        # RFC 4271 §6.3: an unrecognized well-known attribute.
        "unrecognized-well-known": (update_body(attrs + attribute(T, 99, b"x"), nlri), 3, 2,
                                    mal + "unrecognized-well-known"),
        # RFC 7606 §3 c flags error on a well-known mandatory attribute, with
        # no NLRI to withdraw: §5.2 makes it a session reset.
        "origin-flags-no-nlri": (update_body(bad_origin), 3, 4, mal + "attr-flags"),
        # RFC 7606 §7.11 / §3 c: MP_REACH_NLRI with wrong flags or too short.
        "mp-reach-flags": (update_body(attrs + attribute(OT, 14, _mp_reach_v4(fl.attacker_id, prefix))), 3, 4,
                           mal + "attr-flags"),
        "mp-reach-length-3": (update_body(attrs + attribute(O_, 14, b"\x00\x01\x01")), 3, 9, mal + "optional-attr"),
        # RFC 7606 §3 g: MP_UNREACH_NLRI twice.
        "mp-unreach-repeated": (update_body(attribute(O_, 15, b"\x00\x01\x01") * 2), 3, 1, mal + "malformed-attr-list"),
    }


RESET_NAMES = ["withdrawn-length-overrun", "attribute-length-overrun", "nlri-prefix-length-33", "nlri-truncated",
               "withdrawn-prefix-length-40", "unrecognized-well-known", "origin-flags-no-nlri", "mp-reach-flags",
               "mp-reach-length-3", "mp-unreach-repeated"]


@pytest.mark.parametrize("transport,case", over_transports(RESET_NAMES))
def test_update_session_reset(flt, case):
    fl = flt
    prefix = case_prefix()
    body, code, subcode, name = _reset_cases(fl, prefix)[case]
    mark = fl.log_mark()
    with attacker_session(fl) as peer:
        announce(peer, fl, prefix)
        wait_paths(fl, prefix, True)
        fl.witness.wait_route(prefix, timeout=10)
        peer.send_message(MSG_UPDATE, body)
        expect_reset(fl, peer, mark, code, subcode, name)
    # RFC 4271 §8.2.2: the session is gone, and with it the routes it carried.
    wait_paths(fl, prefix, False)
    fl.witness.wait_route(prefix, present=False, timeout=10)
    fl.check_witness()


# --------------------------------------------------------------- 2. message header errors

HDR = "Message Header Error / "
HEADER_CASES = {
    # name: (raw bytes, subcode, NOTIFICATION data, names as logged) -- RFC 4271 §6.1
    "bad-marker": (b"\x00" * 16 + struct.pack("!HB", 19, MSG_KEEPALIVE), 1, b"", HDR + "not-synchronized"),
    "garbage": (bytes(range(7, 71)), 1, b"", HDR + "not-synchronized"),
    "length-5000-no-extended-message": (MARKER + struct.pack("!HB", 5000, MSG_UPDATE) + bytes(64), 2,
                                        struct.pack("!H", 5000), HDR + "bad-length"),
    "length-18": (MARKER + struct.pack("!HB", 18, MSG_KEEPALIVE), 2, struct.pack("!H", 18), HDR + "bad-length"),
    "keepalive-length-20": (MARKER + struct.pack("!HB", 20, MSG_KEEPALIVE) + b"\x00", 2, struct.pack("!H", 20),
                            HDR + "bad-length"),
    "update-length-22": (MARKER + struct.pack("!HB", 22, MSG_UPDATE) + bytes(3), 2, struct.pack("!H", 22),
                         HDR + "bad-length"),
    "type-0": (MARKER + struct.pack("!HB", 19, 0), 3, b"\x00", HDR + "bad-type"),
    "type-9": (MARKER + struct.pack("!HB", 19, 9), 3, b"\x09", HDR + "bad-type"),
}


@pytest.mark.parametrize("transport,case", over_transports(list(HEADER_CASES)))
def test_header_errors(flt, case):
    fl = flt
    data, subcode, notif_data, name = HEADER_CASES[case]
    mark = fl.log_mark()
    with attacker_session(fl) as peer:
        peer.send(data)
        n = expect_reset(fl, peer, mark, 1, subcode, name)
        assert n.data == notif_data, "NOTIFICATION data %s, expected %s" % (n.data.hex(), notif_data.hex())
    fl.check_witness()


# --------------------------------------------------------------- 3. OPEN errors


def _open_with_params(params: bytes, asn: int = ATTACKER_AS, bgp_id: str = "192.0.2.77") -> bytes:
    ident = bytes(int(x) for x in bgp_id.split("."))
    return struct.pack("!BHH", 4, asn, 90) + ident + bytes((len(params),)) + params


def _open_cases(fl):
    ours = fl.fb.ipv4  # the daemon's BGP Identifier (its router-id)
    four = caps.FourOctetAS(ATTACKER_AS)
    v4 = caps.Multiprotocol(AFI_IPV4, SAFI_UNICAST)
    cap_param = b"\x02\x06" + bytes((65, 4)) + struct.pack("!I", ATTACKER_AS)
    op = "OPEN Message Error / "
    return {
        # name: (OPEN body, subcode, names as logged) -- RFC 4271 §6.2
        "version-3": (open_body(ATTACKER_AS, fl.attacker_id, version=3), 1, op + "unsupported-version"),
        "peer-as-wrong": (open_body(65099, fl.attacker_id), 2, op + "bad-peer-as"),
        "peer-as-0": (open_body(0, fl.attacker_id, capabilities=[v4]), 2, op + "bad-peer-as"),  # RFC 7607
        # RFC 6793 §4.2.1: the capability's AS is the one that counts.
        "four-octet-as-capability-wrong": (open_body(ATTACKER_AS, fl.attacker_id, capabilities=[v4, caps.FourOctetAS(65099)]),
                                           2, op + "bad-peer-as"),
        "bgp-id-0": (open_body(ATTACKER_AS, "0.0.0.0"), 3, op + "bad-bgp-id"),
        "hold-time-1": (open_body(ATTACKER_AS, fl.attacker_id, hold_time=1), 6, op + "unacceptable-hold-time"),
        "hold-time-2": (open_body(ATTACKER_AS, fl.attacker_id, hold_time=2), 6, op + "unacceptable-hold-time"),
        # RFC 5492 §4 / RFC 4271 §6.2: an optional parameter other than
        # capabilities (type 2) is unsupported.
        "unsupported-optional-parameter": (_open_with_params(cap_param + b"\x03\x02\xab\xcd"), 4,
                                           op + "unsupported-opt-param"),
        "optional-parameters-length-wrong": (_open_with_params(cap_param)[:-1], 0, op + "unspecific"),
        "same-bgp-id-ok": (open_body(ATTACKER_AS, ours, capabilities=[v4, four]), None, None),
    }


OPEN_NAMES = ["version-3", "peer-as-wrong", "peer-as-0", "four-octet-as-capability-wrong", "bgp-id-0", "hold-time-1",
              "hold-time-2", "unsupported-optional-parameter", "optional-parameters-length-wrong"]


@pytest.mark.parametrize("transport,case", over_transports(OPEN_NAMES))
def test_open_errors(flt, case):
    fl = flt
    body, subcode, name = _open_cases(fl)[case]
    mark = fl.log_mark()
    deadline = time.monotonic() + 10
    while True:
        # The previous case's session may still be winding down (IdleHoldTime
        # 1 s): meanwhile the daemon refuses the connection, maybe so fast
        # that connect() itself sees the reset.
        try:
            peer = RawPeer.connect(fl.ah.ns, fl.attacker, fl.address)
            peer.send_message(MSG_OPEN, body)
        except ConnectionError:
            assert time.monotonic() < deadline, "the daemon kept refusing the attacker's address"
            time.sleep(0.2)
            continue
        with peer:
            n = peer.expect_notification(timeout=5)
            if n is None and time.monotonic() < deadline:
                time.sleep(0.2)
                continue
            assert n is not None, "connection closed without a NOTIFICATION\n" + fl.describe()
            assert (n.code, n.subcode) == (2, subcode), "got %d/%d" % (n.code, n.subcode)
            if subcode == 1:
                # RFC 4271 §6.2: data = the largest version we support.
                assert n.data == b"\x00\x04"
            assert peer.wait_closed(5)
            break
    needle = "NOTIFICATION sent 2/%d (%s)" % (subcode, name)
    L.wait_for(lambda: [w for w in warnings_since(fl, mark) if needle in w], 5, interval=0.1,
               what="WARNING %r" % needle, on_timeout=lambda: "\n".join(warnings_since(fl, mark)))
    assert fl.neighbor(fl.attacker)["state"] != "established"
    fl.check_witness()


@pytest.mark.parametrize("transport", L.TRANSPORTS)
def test_open_without_four_octet_as_capability(flt):
    """RFC 6793 §4.2: a peer without the capability is an old (2-octet)
    speaker: the session comes up, its 2-octet AS_PATH is read as such, and
    the route reaches the witness with the path intact."""
    fl = flt
    prefix = case_prefix()
    v4 = caps.Multiprotocol(AFI_IPV4, SAFI_UNICAST)
    with attacker_session(fl, capabilities=[v4]) as peer:
        d = fl.neighbor(fl.attacker)
        assert d["state"] == "established" and d["four_octet_as"] is False, d
        path2 = attribute(T, ATTR_AS_PATH, b"\x02\x02" + struct.pack("!HH", ATTACKER_AS, 64512))
        announce(peer, fl, prefix, {ATTR_AS_PATH: path2})
        (path,) = wait_paths(fl, prefix, True)
        assert path["as_path"] == [ATTACKER_AS, 64512], path
        r = fl.witness.wait_route(prefix, timeout=10)
        assert r["as_path"] == [65000, ATTACKER_AS, 64512], r
    fl.check_witness()


@pytest.mark.parametrize("transport", L.TRANSPORTS)
def test_open_with_our_bgp_identifier_from_ebgp_peer(flt):
    """RFC 6286 §2.2: only an internal peer must not share our identifier
    (the daemon's router id, its IPv4 address whatever the transport);
    an external one with the same value is accepted."""
    fl = flt
    body, _, _ = _open_cases(fl)["same-bgp-id-ok"]
    with attacker_session(fl, bgp_id=fl.fb.ipv4) as peer:
        assert fl.neighbor(fl.attacker)["state"] == "established"
        assert not any(t == MSG_NOTIFICATION for t, _ in peer.drain())
    assert M.decode_open(body).bgp_id == fl.fb.ipv4
    fl.check_witness()


@pytest.mark.parametrize("transport", L.TRANSPORTS)
def test_open_hold_time_zero_accepted(flt):
    """RFC 4271 §4.2: hold time 0 is valid (no KEEPALIVEs at all)."""
    fl = flt
    with attacker_session(fl, hold_time=0) as peer:
        d = fl.neighbor(fl.attacker)
        assert d["state"] == "established" and d["hold_time"] == 0, d
        time.sleep(1.5)
        assert not any(t == MSG_NOTIFICATION for t, _ in peer.drain())
    fl.check_witness()


@pytest.mark.parametrize("transport,case", over_transports(["next-hop-is-ours", "as-path-loop"]))
def test_update_semantically_wrong_route_ignored(flt, case):
    """Well-formed but unusable routes are ignored, the session stays:
    a NEXT_HOP that is the daemon's own address (RFC 4271 §6.3, logged at
    WARNING; over IPv6 the session's IPv6 address as RFC 8950 next hop of
    the IPv4 route, in MP_REACH_NLRI without NEXT_HOP) and an AS_PATH
    holding the daemon's AS (§9.1.2)."""
    fl = flt
    prefix = case_prefix()
    if case == "next-hop-is-ours" and fl.transport == "ipv6":
        replace = {ATTR_NEXT_HOP: b"", ATTR_MP_REACH_NLRI: attribute(O_, ATTR_MP_REACH_NLRI,
                                                                     _mp_reach_v4(fl.address, prefix))}
    elif case == "next-hop-is-ours":
        replace = {ATTR_NEXT_HOP: attribute(T, ATTR_NEXT_HOP, ipaddress.ip_address(fl.address).packed)}
    else:
        replace = {ATTR_AS_PATH: attribute(T, ATTR_AS_PATH, b"\x02\x02" + struct.pack("!II", ATTACKER_AS, 65000))}
    mark = fl.log_mark()
    with attacker_session(fl) as peer:
        announce(peer, fl, prefix, replace)
        # A valid route sent after it is in: the first one was processed.
        marker = case_prefix()
        announce(peer, fl, marker)
        wait_paths(fl, marker, True)
        assert not attacker_paths(fl, prefix), "%s: the route was accepted" % case
        assert not any(t == MSG_NOTIFICATION for t, _ in peer.drain())
        assert fl.neighbor(fl.attacker)["state"] == "established"
    if case == "next-hop-is-ours":
        assert any("own address" in w and fl.attacker in w for w in warnings_since(fl, mark))
    fl.check_witness()


@pytest.mark.parametrize("transport", L.TRANSPORTS)
def test_hold_timer_expiry(flt):
    """RFC 4271 §6.5: a peer that stops sending KEEPALIVEs is dropped after
    the negotiated hold time (3 s here) with 4/0, logged at WARNING; the
    witness's own KEEPALIVEs keep its sessions up meanwhile."""
    fl = flt
    mark = fl.log_mark()
    with attacker_session(fl, hold_time=3) as peer:
        t = time.monotonic()
        n = expect_reset(fl, peer, mark, 4, 0, "Hold Timer Expired / unspecific")
        took = time.monotonic() - t
        assert n is not None and 2.5 < took < 5, "hold timer fired after %.1f s" % took
    fl.check_witness()


# --------------------------------------------------------------- FSM errors, collisions, odd messages


def wait_active(fl):
    """The previous case's session is over (IdleHoldTime 1 s) and the
    daemon accepts the attacker's address again."""
    L.wait_for(lambda: fl.neighbor(fl.attacker)["state"] == "active", 10, interval=0.1,
               what="the attacker's neighbour back in Active", on_timeout=fl.describe)


FSM = "Finite State Machine Error / "


@pytest.mark.parametrize("transport,state", over_transports(["opensent", "openconfirm", "established"]))
def test_fsm_error_unexpected_message(flt, state):
    """RFC 4271 §9, RFC 6608 §4: a message the state does not expect gets
    Finite State Machine Error with the state as subcode."""
    fl = flt
    wait_active(fl)
    mark = fl.log_mark()
    if state == "established":
        peer = attacker_session(fl)
        peer.send_message(MSG_OPEN, open_body(ATTACKER_AS, fl.attacker_id))
        subcode = 3
    else:
        peer = RawPeer.connect(fl.ah.ns, fl.attacker, fl.address)
        if state == "openconfirm":
            peer.send_message(MSG_OPEN, open_body(ATTACKER_AS, fl.attacker_id))
            assert peer.read_message()[0] == MSG_OPEN
        peer.send_message(MSG_UPDATE, update_body())
        subcode = 1 if state == "opensent" else 2
    with peer:
        expect_reset(fl, peer, mark, 5, subcode, FSM + state)
    fl.check_witness()


@pytest.mark.parametrize("transport", L.TRANSPORTS)
def test_collision_with_established_session_keeps_it(flt):
    """RFC 4271 §6.8: an OPEN on a second connection while the session is
    Established loses: Cease / Connection Collision Resolution on the new
    connection, the Established one (and its routes) untouched."""
    fl = flt
    prefix = case_prefix()
    with attacker_session(fl) as peer:
        announce(peer, fl, prefix)
        wait_paths(fl, prefix, True)
        count = fl.neighbor(fl.attacker)["established_count"]
        with RawPeer.connect(fl.ah.ns, fl.attacker, fl.address) as second:
            second.send_message(MSG_OPEN, open_body(ATTACKER_AS, fl.attacker_id))
            n = second.expect_notification()
            assert n is not None and (n.code, n.subcode) == (6, 7), n
        assert not any(t == MSG_NOTIFICATION for t, _ in peer.drain(0.5))
        d = fl.neighbor(fl.attacker)
        assert d["state"] == "established" and d["established_count"] == count, d
        assert attacker_paths(fl, prefix)
    fl.check_witness()


@pytest.mark.parametrize("transport", L.TRANSPORTS)
def test_route_refresh_bad_length(flt):
    """RFC 7313 §5: a ROUTE-REFRESH whose length is not 4 octets of body is
    answered with 7/1 carrying the whole message."""
    fl = flt
    mark = fl.log_mark()
    v4 = caps.Multiprotocol(AFI_IPV4, SAFI_UNICAST)
    cl = [v4, caps.FourOctetAS(ATTACKER_AS), caps.RouteRefresh(), caps.EnhancedRouteRefresh()]
    msg = MARKER + struct.pack("!HB", 24, 5) + b"\x00\x01\x00\x01\x00"
    with attacker_session(fl, capabilities=cl) as peer:
        peer.send(msg)
        n = expect_reset(fl, peer, mark, 7, 1, "ROUTE-REFRESH Message Error / invalid-length")
        assert n.data == msg
    fl.check_witness()


@pytest.mark.parametrize("transport", L.TRANSPORTS)
def test_notification_received_logged_truncated(flt):
    """Session loss by a NOTIFICATION from the peer is a WARNING with the
    code/subcode names and the peer's data in hex cut at 64 octets, however
    much it sent (RFC 8654 allows up to 65535)."""
    fl = flt
    mark = fl.log_mark()
    with attacker_session(fl) as peer:
        peer.send_message(MSG_NOTIFICATION, bytes((6, 2)) + b"\xab" * 4000)
        assert peer.wait_closed(5)
    needle = "NOTIFICATION received 6/2 (Cease / admin-shutdown)"
    lines = L.wait_for(lambda: [w for w in warnings_since(fl, mark) if needle in w], 5, interval=0.1,
                       what="WARNING %r" % needle, on_timeout=lambda: "\n".join(warnings_since(fl, mark)))
    assert "ab" * 64 + "…(4000 octets)" in lines[0] and "ab" * 65 not in lines[0], lines[0]
    fl.check_witness()


# --------------------------------------------------------------- 4. unconfigured sources

UNCONFIGURED_CONNECTIONS = 200


@pytest.mark.parametrize("transport", L.TRANSPORTS)
def test_unconfigured_source_refused_quickly_and_log_rate_limited(flt):
    fl = flt
    # RFC 4271 §4.2: the BGP Identifier is four octets whatever the transport.
    ident = fl.unconfigured if fl.transport == "ipv4" else fl.attacker_id
    mark = fl.log_mark()
    slowest = 0.0
    refused_in_connect = 0
    t0 = time.monotonic()
    for i in range(UNCONFIGURED_CONNECTIONS):
        t = time.monotonic()
        try:
            peer = RawPeer.connect(fl.ah.ns, fl.unconfigured, fl.address)
        except ConnectionResetError:
            # Refused before connect() even returned.
            refused_in_connect += 1
        else:
            with peer:
                if i % 2:
                    # Half of them even get an OPEN out before being refused.
                    try:
                        peer.send_message(MSG_OPEN, open_body(ATTACKER_AS, ident))
                    except OSError:
                        pass
                # RFC 4271 §8: no session and no NOTIFICATION for an unknown peer.
                assert peer.expect_notification(timeout=2) is None
        slowest = max(slowest, time.monotonic() - t)
    total = time.monotonic() - t0
    print("%d connections from an unconfigured address refused in %.2f s (slowest %.3f s, %d reset in connect)"
          % (UNCONFIGURED_CONNECTIONS, total, slowest, refused_in_connect))
    assert slowest < 1.0, "a refusal took %.2f s" % slowest
    assert total < 20, "%d refusals took %.1f s" % (UNCONFIGURED_CONNECTIONS, total)
    lines = [r["msg"] for r in fl.log_records(mark) if fl.unconfigured in r.get("msg", "")]
    # One line per source per minute (session/counters.py RefusedConnections).
    assert len(lines) == 1, lines
    assert "refused" in lines[0]
    assert fl.daemon_alive()
    fl.check_witness()


# --------------------------------------------------------------- 5. half-open flood

HALF_OPEN_FLOOD = 30


@pytest.mark.parametrize("transport", L.TRANSPORTS)
def test_half_open_flood_from_configured_address(flt):
    """Connections from the configured peer's address that never send an
    OPEN must not lock the real peer out (issue 10 defect 5; at most
    Sessions.HALF_OPEN_MAX are kept, the oldest replaced)."""
    fl = flt
    wait_active(fl)
    mark = fl.log_mark()
    idle = []
    try:
        for _ in range(HALF_OPEN_FLOOD):
            idle.append(RawPeer.connect(fl.ah.ns, fl.attacker, fl.address))
        time.sleep(0.5)
        t = time.monotonic()
        with attacker_session(fl, timeout=10) as peer:
            took = time.monotonic() - t
            assert fl.neighbor(fl.attacker)["state"] == "established"
            assert took < 5, "the real peer needed %.1f s to get a session" % took
            print("raw peer established in %.3f s after %d idle connections" % (took, HALF_OPEN_FLOOD))
            prefix = case_prefix()
            announce(peer, fl, prefix)
            wait_paths(fl, prefix, True)
            # The idle connections were closed by the daemon, not kept.
            still_open = [p for p in idle if not p.wait_closed(0.05)]
            assert len(still_open) <= 2, "%d idle connections still open" % len(still_open)
    finally:
        for p in idle:
            p.close()
    # ...and the log did not get a line or two per connection: one
    # rate-limited line for the closures, none per closed connection.
    msgs = [r["msg"] for r in fl.log_records(mark) if fl.attacker in r.get("msg", "")]
    assert len([m for m in msgs if "sent no OPEN" in m]) <= 1, msgs
    assert len([m for m in msgs if "OPENSENT (collision)" in m]) <= 2, msgs
    fl.check_witness()


@pytest.mark.parametrize("transport", L.TRANSPORTS)
def test_library_speaker_establishes_through_a_running_half_open_flood(flt):
    """The same with a real BGP implementation as the peer (a fastbgp
    library Speaker in the attacker host, connecting actively from the
    configured address) while idle connections keep arriving from that
    address every 20 ms: it establishes within seconds and its route
    reaches the witness through the daemon."""
    fl = flt
    wait_active(fl)
    prefix = case_prefix()
    stop = threading.Event()
    opened = []

    def flood():
        while not stop.is_set():
            try:
                opened.append(RawPeer.connect(fl.ah.ns, fl.attacker, fl.address, timeout=1))
            except OSError:
                pass
            stop.wait(0.02)

    t = threading.Thread(target=flood, name="half-open-flood", daemon=True)
    t.start()
    speaker = None
    try:
        time.sleep(0.5)
        t0 = time.monotonic()
        speaker = FastBGP(fl.ah, ATTACKER_AS, router_id=fl.attacker_id, listen=[],
                          neighbors=[L.ipv4_neighbor(fl.address, 65000, local_address=fl.attacker)],
                          # The library speaker sends no RFC 8950 next hop
                          # (fastbgp.session.routes): over IPv6 it names its IPv4 one.
                          routes=[L.Route(prefix, next_hop=None if fl.transport == "ipv4" else fl.attacker_id)]).start()
        speaker.wait_established(fl.address, timeout=15)
        took = time.monotonic() - t0
        assert took < 8, "the library speaker needed %.1f s to establish" % took
        fl.witness.wait_route(prefix, timeout=10)
        assert len(opened) > 20, "the flood did not run (%d connections)" % len(opened)
        print("library speaker established in %.2f s through a flood of %d idle connections" % (took, len(opened)))
    finally:
        stop.set()
        t.join(5)
        for p in opened:
            p.close()
        if speaker is not None:
            speaker.stop()
    fl.witness.wait_route(prefix, present=False, timeout=10)
    fl.check_witness()
