"""The one import the rest of fastbgp uses for the VRP table and RFC 6811
route origin validation.

Loads the compiled ``fastbgp.rpki._vrp`` (C++ hash map, no Python object per
VRP) when it is built, else the pure-Python twin ``fastbgp.rpki._vrp_py``
with identical behaviour.  FASTBGP_NO_EXTENSIONS=1 forces the twin;
``IMPLEMENTATION`` says which one is in use.

``VrpTable`` interface (``afi`` is 1 for IPv4, 2 for IPv6; ``addr`` the
address octets, possibly shortened to the prefix's octets as in NLRI; host
bits are ignored):

* ``add(afi, addr, plen, maxlen, asn)`` / ``remove(...)`` -> bool (changed);
  ValueError on out-of-range arguments;
* ``validate(afi, addr, plen, origin)`` -> NOT_FOUND / VALID / INVALID
  (RFC 6811 §2); ``origin`` is ORIGIN_NONE when the AS_PATH gives none
  (see ``fastbgp.rpki.origin``);
* ``validate_packed(afi, packed_nlri, origin, addpath=False)`` -> bytes, one
  state per prefix: the RIB's bulk call, one per UPDATE (its prefixes share
  one AS_PATH, hence one origin);
* ``count(afi)``, ``len()``, ``clear()``, ``entries(afi)`` (sorted tuples).

``partition_packed(packed, states, addpath=False)`` -> (NOT_FOUND part,
VALID part, INVALID part): the prefixes of one packed NLRI grouped by the
states ``validate_packed`` gave them, in input order, without a Python
object per prefix (the daemon's import policy runs once per part).

Incremental re-validation: a VRP added or removed can change the state of
exactly the routes inside its prefix (any length: longer than maxLength
turns NotFound into Invalid), which :func:`covered_range` gives as an
address interval.
"""

from fastbgp import implementation as _select

from fastbgp.rpki._vrp_py import INVALID, NOT_FOUND, ORIGIN_NONE, VALID  # noqa: F401

# The names every implementation provides; tests check both modules export them.
API = ("IMPLEMENTATION", "VrpTable", "NOT_FOUND", "VALID", "INVALID", "ORIGIN_NONE", "partition_packed")

STATE_NAMES = {NOT_FOUND: "not-found", VALID: "valid", INVALID: "invalid"}

_select.export(globals(), "._vrp", "._vrp_py", "VRP table", API)


def covered_range(afi, addr, plen):
    """(first, last) address, as ints of the family's width, of the routes
    whose validation state a VRP on ``addr/plen`` can change: every route
    inside that prefix whatever its length (RFC 6811 §2 "covered").  A route
    ``r/rl`` is affected when first <= int(r) <= last and rl >= plen."""
    width = 32 if afi == 1 else 128
    if afi not in (1, 2) or not 0 <= plen <= width:
        raise ValueError("bad VRP prefix length %r for AFI %r" % (plen, afi))
    value = int.from_bytes(bytes(addr).ljust(width // 8, b"\0")[: width // 8], "big")
    host = (1 << (width - plen)) - 1
    first = value & ~host & ((1 << width) - 1)
    return first, first | host


def is_covered(afi, vrp_addr, vrp_plen, route_addr, route_plen):
    """True when a VRP on ``vrp_addr/vrp_plen`` covers route ``route_addr/route_plen``."""
    if route_plen < vrp_plen:
        return False
    first, last = covered_range(afi, vrp_addr, vrp_plen)
    width = 32 if afi == 1 else 128
    r = int.from_bytes(bytes(route_addr).ljust(width // 8, b"\0")[: width // 8], "big")
    return first <= r <= last


def path_mark(state):
    """The RIB mark of a path with RFC 6811 ``state`` (None: not validated):
    0 for none, else the state + 1 (``Rib.update``'s ``mark``)."""
    return 0 if state is None else state + 1


def split_by_state(states, packed, addpath):
    """[(state, packed part)] of packed NLRI ``packed`` whose i-th prefix has
    state ``states[i]``; one part, ``packed`` itself, when all agree (the
    usual case: no prefix is touched)."""
    if not states:
        return []
    first = states[0]
    if states.count(first) == len(states):
        return [(first, packed)]
    parts = partition_packed(packed, states, addpath)  # noqa: F821 (bound by _select.export above); one pass
    return [(s, parts[s]) for s in (NOT_FOUND, VALID, INVALID) if parts[s]]
