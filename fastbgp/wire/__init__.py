"""The wire layer: BGP messages as bytes and back.

Owns framing, the UPDATE/OPEN/NOTIFICATION/ROUTE-REFRESH codec (compiled
``_codec.pyx`` and its pure-Python twin ``_codec_py.py``, chosen by
``codec.py``), the shared result types (``types.py``), protocol numbers
(``constants.py``), ``BGPError`` (``errors.py``), RFC 6793 AS4 handling
and the one walk over an attribute block, ``attr_spans`` (``as4.py``), the full decoded view (``messages.py``), capabilities and their
negotiation (``capabilities.py``), the codec benchmark workloads
(``bench.py``), and the one table or parser of each protocol value written
as text: address family names (``families.py``) and communities, standard,
large and extended (``communities.py``), and the one check of a next-hop
address (``nexthop.py``) every source of routes uses.

May import: the standard library, msgspec and ``fastbgp.implementation``.
Nothing here does I/O or knows about sessions, RIBs or the daemon.
"""
