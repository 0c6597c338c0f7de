"""Pure-Python twin of ``fastbgp.rpki._vrp``: the VRP table and RFC 6811
route origin validation.

Behaviour is identical to the compiled module (same results, same
exceptions for the same bad arguments); the tests run every case on both
and compare them on random operation sequences.  A change here is a change
there.

Layout: per address family a dict keyed by the VRP prefix (address as an
int with host bits cleared, shifted left 8, or'ed with the length) whose
value is the list of (max length, ASN) pairs on that prefix, plus a count of
VRPs per prefix length so validation only probes lengths that hold one.
"""

IMPLEMENTATION = "python"

# RFC 6811 §2 validation states.
NOT_FOUND = 0
VALID = 1
INVALID = 2
# The origin of a route whose AS_PATH yields none (RFC 6811 §2 "NONE"): it
# matches no VRP.
ORIGIN_NONE = -1

_WIDTH = {1: 32, 2: 128}  # AFI_IPV4, AFI_IPV6 (RFC 4760 numbers)


def _family(afi):
    width = _WIDTH.get(afi)
    if width is None:
        raise ValueError("unknown AFI %r (1 = IPv4, 2 = IPv6)" % (afi,))
    return width


def _address(width, addr, plen):
    """The prefix as an int with host bits cleared."""
    if plen < 0 or plen > width:
        raise ValueError("prefix length %d out of range 0..%d" % (plen, width))
    addr = bytes(addr)
    if len(addr) > width // 8:
        raise ValueError("address of %d octets is too long for the family" % len(addr))
    value = int.from_bytes(addr.ljust(width // 8, b"\0"), "big")
    return value & (((1 << plen) - 1) << (width - plen))


def _vrp_args(afi, addr, plen, maxlen, asn):
    width = _family(afi)
    value = _address(width, addr, plen)
    if maxlen < plen or maxlen > width:
        raise ValueError("max length %d out of range %d..%d" % (maxlen, plen, width))
    if asn < 0 or asn > 0xFFFFFFFF:
        raise ValueError("ASN %d out of range" % asn)
    return width, value


class VrpTable:
    """Validated ROA Payloads of both families; see ``fastbgp.rpki.vrp``."""

    def __init__(self):
        self._maps = {1: {}, 2: {}}
        self._lengths = {1: [0] * 33, 2: [0] * 129}
        self._count = {1: 0, 2: 0}

    def add(self, afi, addr, plen, maxlen, asn):
        """Add one VRP; False when it was already there."""
        _width, value = _vrp_args(afi, addr, plen, maxlen, asn)
        key = value << 8 | plen
        entries = self._maps[afi].setdefault(key, [])
        pair = (maxlen, asn)
        if pair in entries:
            return False
        entries.append(pair)
        self._lengths[afi][plen] += 1
        self._count[afi] += 1
        return True

    def remove(self, afi, addr, plen, maxlen, asn):
        """Remove one VRP; False when it was not there."""
        _width, value = _vrp_args(afi, addr, plen, maxlen, asn)
        key = value << 8 | plen
        m = self._maps[afi]
        entries = m.get(key)
        pair = (maxlen, asn)
        if not entries or pair not in entries:
            return False
        entries.remove(pair)
        if not entries:
            del m[key]
        self._lengths[afi][plen] -= 1
        self._count[afi] -= 1
        return True

    def contains(self, afi, addr, plen, maxlen, asn):
        """True when this exact VRP is in the table."""
        _width, value = _vrp_args(afi, addr, plen, maxlen, asn)
        return (maxlen, asn) in self._maps[afi].get(value << 8 | plen, ())

    def _state(self, afi, width, value, plen, origin):
        m = self._maps[afi]
        lengths = self._lengths[afi]
        found = False
        for length in range(plen, -1, -1):  # most specific first, as the compiled table
            if not lengths[length]:
                continue
            masked = value & (((1 << length) - 1) << (width - length))
            entries = m.get(masked << 8 | length)
            if entries:
                found = True
                # RFC 6811 §2: a VRP matches when it covers the route, its ASN
                # equals the origin and the route is no longer than maxLength;
                # AS 0 never matches (RFC 6483 §4), nor does origin NONE.
                for maxlen, asn in entries:
                    if asn == origin and plen <= maxlen and asn != 0:
                        return VALID
        return INVALID if found else NOT_FOUND

    def validate(self, afi, addr, plen, origin):
        """NOT_FOUND, VALID or INVALID (RFC 6811 §2) of route ``addr/plen``
        originated by ``origin`` (ORIGIN_NONE when the path has none)."""
        width = _family(afi)
        value = _address(width, addr, plen)
        return self._state(afi, width, value, plen, int(origin))

    def validate_packed(self, afi, packed, origin, addpath=False):
        """One state octet per prefix of the packed NLRI ``packed`` (the
        codec's format, RFC 4271 §4.3 / RFC 7911 §3), all with ``origin``:
        the prefixes of one UPDATE share its AS_PATH.  ValueError when the
        NLRI is malformed."""
        width = _family(afi)
        packed = bytes(packed)
        origin = int(origin)
        out = bytearray()
        pos, n = 0, len(packed)
        while pos < n:
            if addpath:
                pos += 4
            if pos >= n:
                raise ValueError("malformed NLRI")
            plen = packed[pos]
            nb = (plen + 7) >> 3
            if plen > width or pos + 1 + nb > n:
                raise ValueError("malformed NLRI")
            value = _address(width, packed[pos + 1 : pos + 1 + nb], plen)
            out.append(self._state(afi, width, value, plen, origin))
            pos += 1 + nb
        return bytes(out)

    def count(self, afi):
        """VRPs of one family."""
        _family(afi)
        return self._count[afi]

    def __len__(self):
        return self._count[1] + self._count[2]

    def clear(self):
        self.__init__()

    def entries(self, afi):
        """[(address bytes, length, max length, ASN)] of one family, sorted."""
        width = _family(afi)
        out = []
        for key, pairs in self._maps[afi].items():
            addr = (key >> 8).to_bytes(width // 8, "big")
            for maxlen, asn in pairs:
                out.append((addr, key & 0xFF, maxlen, asn))
        out.sort()
        return out


def partition_packed(packed, states, addpath=False):
    """(NOT_FOUND part, VALID part, INVALID part) of the packed NLRI
    ``packed`` whose i-th prefix has state ``states[i]``; see the compiled
    module.  ValueError when the NLRI is malformed or the states do not
    match it one to one."""
    packed = bytes(packed)
    states = bytes(states)
    parts = (bytearray(), bytearray(), bytearray())
    head = 5 if addpath else 1
    pos, n, k = 0, len(packed), 0
    while pos < n:
        if pos + head > n:
            raise ValueError("malformed NLRI or states not one per prefix")
        plen = packed[pos + head - 1]
        size = head + ((plen + 7) >> 3)
        if plen > 128 or pos + size > n or k >= len(states) or states[k] > 2:
            raise ValueError("malformed NLRI or states not one per prefix")
        parts[states[k]].extend(packed[pos : pos + size])
        pos += size
        k += 1
    if k != len(states):
        raise ValueError("malformed NLRI or states not one per prefix")
    return tuple(bytes(b) for b in parts)
