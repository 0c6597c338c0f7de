"""RPKI: route origin validation (RFC 6811) and AS_PATH verification with
ASPA (draft-ietf-sidrops-aspa-verification), fed by RTR caches (RFC 6810 /
RFC 8210 / draft-ietf-sidrops-8210bis) or a static JSON file.

Owns:

* ``pdu.py``: RTR PDUs (versions 0, 1, 2): one parser, one builder per PDU;
  every malformed PDU maps to an Error Report code (RFC 8210 §12);
* ``client.py``: the asyncio RTR client (several caches with preferences,
  version negotiation, refresh/retry/expire timers) reporting changes to an
  explicit observer (``RtrObserver``);
* ``vrp.py`` (compiled ``_vrp.pyx`` + twin ``_vrp_py.py``): the VRP table
  and validation of a route or of a whole packed NLRI, and
  ``partition_packed`` (a packed NLRI grouped by those states);
* ``origin.py``: the origin AS of an AS_PATH per RFC 6811 §2;
* ``aspa.py``: the ASPA table and upstream/downstream path verification;
* ``files.py``: the static source (rpki-client / stayrtr JSON), loaded into
  the same tables with the same change reports (``load_into``);
* ``sync.py``: full-set differences and applying changes to the tables.
* ``community.py``: the RFC 8097 origin validation state extended community
  (the value, reading / setting it in an attribute block, and what the
  export keeps: ``export_ext``, RFC 4360 §2 non-transitive ones never to eBGP).

Does no BGP: the RIB asks for a state per path (``VrpTable.validate_packed``
with ``origin.origin_of_attrs``) and re-validates the routes in
``vrp.covered_range`` of every VRP the client reports changed.

May import: ``fastbgp.wire``, ``fastbgp.config``, ``fastbgp.implementation``,
``fastbgp.heap``, the standard library and msgspec (never session, rib, daemon or cli).
"""
