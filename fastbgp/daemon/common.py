"""Tables and small helpers the daemon's modules share.

Owns: the families the daemon routes (``FAMILIES``, ``FAMILY_NAME``), the
RIB's pseudo-peer id of our own routes (``LOCAL_PID``), the time budget of
one slice of long work (``SLICE_SECONDS``), and two helpers on wire data
(prefix text, adding an attribute to a block).
Calls: ``fastbgp.wire`` only.  Called by: every other module of the daemon.
"""

from __future__ import annotations

import ipaddress

from fastbgp.wire.as4 import encode_attr, split_attrs
from fastbgp.wire.constants import IPV4_UNICAST, IPV6_UNICAST

FAMILIES = {"ipv4-unicast": IPV4_UNICAST, "ipv6-unicast": IPV6_UNICAST, "ipv4": IPV4_UNICAST, "ipv6": IPV6_UNICAST}
FAMILY_NAME = {IPV4_UNICAST: "ipv4-unicast", IPV6_UNICAST: "ipv6-unicast"}

LOCAL_PID = 0  # the RIB's pseudo-peer for routes originated here
# Long work (export slices, bulk inject, RIB snapshots) yields to the loop
# when a slice ran this long, so keepalives and the API keep running.
SLICE_SECONDS = 0.005


def family(name) -> tuple:
    """(afi, safi) of a family name the daemon routes; ValueError otherwise."""
    try:
        return FAMILIES[str(name).strip().lower()]
    except KeyError:
        raise ValueError("unknown family %r (ipv4-unicast or ipv6-unicast)" % (name,)) from None


def prefix_text(afi, addr, plen) -> str:
    return "%s/%d" % (ipaddress.ip_address(addr), plen)


def add_attr(attrs, t, flags, value):
    """``attrs`` with attribute ``t`` set (replaced if present), in type order."""
    items = {tt: (f, v) for f, tt, v in split_attrs(attrs)}
    items[t] = (flags, value)
    return b"".join(encode_attr(items[k][0], k, items[k][1]) for k in sorted(items))
