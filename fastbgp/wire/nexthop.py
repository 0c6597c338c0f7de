"""The one check of a next hop we are asked to send: from the API, the
configuration (``[[routes]] next-hop``, a policy's ``set-next-hop``) or an
injected MRT group.

RFC 4271 §6.3: a NEXT_HOP that is not a valid IP host address is
semantically incorrect -- a peer receiving it would drop the route (or, for
the addresses the codec refuses on receipt, treat the UPDATE as withdrawn,
RFC 7606 §7.3).  Refusing such an address where it enters the daemon keeps
us from sending what we would not accept ourselves.
"""

import ipaddress

__all__ = ["check_next_hop"]

# (network, reason), first match wins: the reason says which rule it broke.
_IPV4_REFUSED = tuple(
    (ipaddress.IPv4Network(net), reason)
    for net, reason in (
        # RFC 1122 §3.2.1.3 (a), (b): "this host on this network", never a destination.
        ("0.0.0.0/8", "unspecified (this network) address"),
        # RFC 919 §7 / RFC 1122 §3.2.1.3 (c): limited broadcast.
        ("255.255.255.255/32", "broadcast address"),
        # RFC 1122 §3.2.1.3 (g): loopback, never seen outside a host.
        ("127.0.0.0/8", "loopback address"),
        # RFC 5771 / RFC 1112 §4: class D is multicast, not a host.
        ("224.0.0.0/4", "multicast address"),
        # RFC 1112 §4: class E is reserved.
        ("240.0.0.0/4", "reserved (class E) address"),
    )
)


def check_next_hop(address) -> None:
    """Raise ValueError with the reason when ``address`` (text, packed 4 or
    16 octets, or an ipaddress object) is not usable as a next hop.

    IPv6 link-local is accepted: RFC 2545 §3 carries it as the second next
    hop of MP_REACH_NLRI."""
    if isinstance(address, (bytes, bytearray, memoryview)):
        address = bytes(address)
        if len(address) not in (4, 16):
            raise ValueError("a next hop is 4 or 16 octets, got %d" % len(address))
    elif isinstance(address, str):
        address = address.strip()
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        raise ValueError("not an IP address: %r" % (address,)) from None
    if ip.version == 4:
        for net, reason in _IPV4_REFUSED:
            if ip in net:
                raise ValueError("%s %s (RFC 4271 §6.3: a next hop is a host address)" % (reason, ip))
        return
    # RFC 4291 §2.5.2 (unspecified), §2.5.3 (loopback), §2.7 (multicast).
    if ip.is_unspecified:
        reason = "unspecified address"
    elif ip.is_loopback:
        reason = "loopback address"
    elif ip.is_multicast:
        reason = "multicast address"
    else:
        return
    raise ValueError("%s %s (RFC 4271 §6.3: a next hop is a host address)" % (reason, ip))
