"""ASPA: the customer -> providers table and AS_PATH verification per
draft-ietf-sidrops-aspa-verification (upstream and downstream procedures).

The table is fed by the RTR client (version 2 ASPA PDUs) or the static JSON
file; the RIB asks :meth:`AspaTable.verify` with the decoded AS_PATH
segments (``fastbgp.rpki.origin.as_path_segments``) and the relation of the
neighbour the route came from.
"""

from fastbgp.wire.constants import AS_CONFED_SEGMENTS, AS_SEQUENCE

# Verification results; the same numbers as the RFC 6811 states of
# ``fastbgp.rpki.vrp`` so the RIB stores either in two bits.
UNKNOWN = 0
VALID = 1
INVALID = 2
STATE_NAMES = {UNKNOWN: "unknown", VALID: "valid", INVALID: "invalid"}

# Hop check results (the draft's "hop(AS(i), AS(j))" function).
PROVIDER = 0  # "Provider+": j is an attested provider of i
NOT_PROVIDER = 1  # "Not Provider+": i has an ASPA and j is not in it
NO_ATTESTATION = 2  # i has no ASPA

# The largest provider set accepted per customer: a record with more is
# refused (the table's memory stays bounded by customers x this).
MAX_PROVIDERS = 1 << 16


class AspaTable:
    """customer ASN -> frozenset of provider ASNs."""

    def __init__(self):
        self._providers = {}

    def set(self, customer, providers):
        """Announce (replace) the provider set of ``customer``; returns True
        when it changed."""
        providers = frozenset(int(p) for p in providers)
        if len(providers) > MAX_PROVIDERS:
            raise ValueError("ASPA of AS%d lists %d providers (at most %d)" % (customer, len(providers),
                                                                                MAX_PROVIDERS))
        if self._providers.get(customer) == providers:
            return False
        self._providers[customer] = providers
        return True

    def remove(self, customer):
        """Withdraw ``customer``'s record; True when there was one."""
        return self._providers.pop(customer, None) is not None

    def get(self, customer):
        """The provider set of ``customer`` or None."""
        return self._providers.get(customer)

    def items(self):
        return sorted(self._providers.items())

    def clear(self):
        self._providers.clear()

    def __len__(self):
        return len(self._providers)

    def hop(self, customer, provider):
        """PROVIDER, NOT_PROVIDER or NO_ATTESTATION for the hop from
        ``customer`` up to ``provider`` (the draft's hop check)."""
        providers = self._providers.get(customer)
        if providers is None:
            return NO_ATTESTATION
        return PROVIDER if provider in providers else NOT_PROVIDER

    def verify(self, segments, downstream, neighbor_as=None):
        """VALID, INVALID or UNKNOWN of an AS_PATH given as decoded segments
        (the neighbour first, the origin last, as on the wire).

        ``downstream``: the route came from a provider (the draft's
        downstream procedure); otherwise from a customer, lateral peer or RS
        client (the upstream procedure).  ``neighbor_as``: when given, a
        path whose most recently added AS is not it is INVALID (the draft's
        neighbour check; pass None for a transparent route server)."""
        path = []
        for st, asns in segments:
            if st in AS_CONFED_SEGMENTS:
                continue  # our own confederation's hops (RFC 5065): not inter-AS
            if st != AS_SEQUENCE:
                return INVALID  # the draft: an AS_SET makes the path Invalid
            for asn in asns:
                if not path or path[-1] != asn:  # collapse prepends
                    path.append(asn)
        if not path:
            return INVALID  # the draft: an empty AS_PATH from an eBGP peer
        if neighbor_as is not None and path[0] != neighbor_as:
            return INVALID
        path.reverse()  # path[0] is now the origin AS(1), path[-1] the neighbour AS(N)
        n = len(path)
        max_up, min_up = self._ramp(path)
        if not downstream:
            # upstream procedure: every hop must go up, customer to provider.
            if max_up < n:
                return INVALID
            return VALID if min_up >= n else UNKNOWN
        max_down, min_down = self._ramp(path[::-1])
        # downstream procedure (up/down ramps): an up-ramp from the origin then a down-ramp to us.
        if max_up + max_down < n:
            return INVALID
        return VALID if min_up + min_down >= n else UNKNOWN

    def _ramp(self, path):
        """(max, min) ramp lengths from path[0]: the longest run of hops
        path[i] -> path[i+1] that are not NOT_PROVIDER (max), or are all
        PROVIDER (min), counted in ASes."""
        n = len(path)
        max_len = min_len = 1
        min_open = True
        for i in range(n - 1):
            h = self.hop(path[i], path[i + 1])
            if h == NOT_PROVIDER:
                break
            max_len += 1
            if min_open and h == PROVIDER:
                min_len += 1
            else:
                min_open = False
        return max_len, min_len
