"""Address family names: the one table of what "ipv4-unicast" means.

A family is the pair (AFI, SAFI) of RFC 4760 §5 (IANA "Address Family
Numbers" and "SAFI Values").  Configuration files, the API, the CLI and logs
name it; :func:`parse_family` turns any accepted spelling into the pair and
:func:`family_name` gives back the canonical name.

Accepted spellings (any case, surrounding blanks ignored): the canonical
names ``ipv4-unicast``, ``ipv6-unicast``, ``ipv4-multicast``,
``ipv6-multicast``, and the unicast shorthands ``ipv4`` / ``ipv6`` (GoBGP's
``-a``) and ``inet`` / ``inet6`` (BSD's).
"""

from fastbgp.wire.constants import AFI_IPV4, AFI_IPV6, IPV4_UNICAST, IPV6_UNICAST, SAFI_MULTICAST, SAFI_UNICAST

__all__ = [
    "FAMILIES",
    "ALIASES",
    "UNICAST",
    "UNICAST_NAMES",
    "UnknownFamily",
    "parse_family",
    "family_name",
    "unicast_family",
]

# Canonical name -> (AFI, SAFI).
FAMILIES = {
    "ipv4-unicast": IPV4_UNICAST,
    "ipv6-unicast": IPV6_UNICAST,
    "ipv4-multicast": (AFI_IPV4, SAFI_MULTICAST),
    "ipv6-multicast": (AFI_IPV6, SAFI_MULTICAST),
}
# Other spellings -> canonical name.
ALIASES = {
    "ipv4": "ipv4-unicast",
    "ipv6": "ipv6-unicast",
    "inet": "ipv4-unicast",
    "inet6": "ipv6-unicast",
}
_NAMES = {fam: name for name, fam in FAMILIES.items()}

# The families the daemon runs (configuration, API, CLI).
UNICAST = (IPV4_UNICAST, IPV6_UNICAST)
UNICAST_NAMES = tuple(_NAMES[f] for f in UNICAST)
_AFI_OF_IP_VERSION = {4: AFI_IPV4, 6: AFI_IPV6}


class UnknownFamily(ValueError):
    """A family :func:`parse_family` does not accept.  ``value`` is what was
    given, ``choices`` the accepted names as one phrase, so a caller can word
    its own message ("unknown family 'x' in the URL")."""

    def __init__(self, value, choices: str):
        self.value = value
        self.choices = choices
        super().__init__("unknown address family %r (use %s)" % (value, choices))


def _choices(among) -> str:
    names = [_NAMES[f] for f in among if f in _NAMES]
    short = [a for a, n in ALIASES.items() if n in names]
    text = ", ".join(names)
    return text + ("; or " + ", ".join(short) if short else "")


def parse_family(value, among=None) -> tuple:
    """(afi, safi) of a family name in any accepted spelling, or of an
    (afi, safi) pair.  ``among``: the families allowed here (default: every
    named one for names, any pair for pairs).  UnknownFamily otherwise."""
    allowed = tuple(FAMILIES.values()) if among is None else tuple(among)
    if isinstance(value, str):
        key = value.strip().lower()
        fam = FAMILIES.get(ALIASES.get(key, key))
    else:
        try:
            afi, safi = value
            fam = (int(afi), int(safi))
        except (TypeError, ValueError):
            fam = None
        if fam is not None and among is None:
            return fam
    if fam is None or fam not in allowed:
        raise UnknownFamily(value, _choices(allowed))
    return fam


def family_name(family) -> str:
    """The canonical name of (afi, safi); ``afiN-safiM`` for a pair without
    one (a family a peer offered that we do not know)."""
    family = tuple(family)
    return _NAMES.get(family) or "afi%d-safi%d" % family


def unicast_family(version: int) -> tuple:
    """(afi, safi) of unicast routes to addresses of IP ``version`` (the
    ``version`` of an ipaddress object: 4 or 6)."""
    return (_AFI_OF_IP_VERSION[version], SAFI_UNICAST)
