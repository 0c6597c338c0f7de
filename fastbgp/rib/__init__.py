"""Routing Information Base: Adj-RIBs-In and Loc-RIB per address family,
the routing policy run on them and the export towards peers.

Modules:

* ``_rib.pyx`` / ``_rib_py.py``: the RIB (``Rib``, ``ChangeSet``): compiled
  and its pure-Python twin, same behaviour;
* ``attrs.py``: ``AttrTable``, interned attribute sets with the per-set
  record best-path selection reads;
* ``policy.py``: routing policy compiled from the configuration;
* ``export.py``: update groups, the daemon's Adj-RIB-Out.

May import: ``fastbgp.wire``, ``fastbgp.config``, the standard library and msgspec
(never session, mrt, control, daemon or cli).

Loads the compiled ``fastbgp.rib._rib`` (C++ hash table, no Python object per
route) when it is built, else the pure-Python twin ``fastbgp.rib._rib_py``
with identical behaviour.  FASTBGP_NO_EXTENSIONS=1 forces the twin;
``IMPLEMENTATION`` says which one is in use.

Typical use, per UPDATE from peer ``pid`` (``u`` = codec.parse_update(...))::

    aid = attrs.intern(u.attrs)                 # one reference for us
    try:
        cs = rib4.withdraw(pid, u.withdrawn, addpath)
        cs2 = rib4.update(pid, u.nlri, addpath, aid)
    finally:
        attrs.release(aid)                      # the stored paths hold theirs
    for attr_id, nlri in cs2.announced.items():
        msgs = codec.pack_updates(attrs.attrs(attr_id), nlri, ctx)
    msgs += codec.pack_withdraws(cs.withdrawn, ctx)

For MP_REACH families intern ``(u.attrs, next_hop)`` and export with
``attrs.mp_next_hop(attr_id)``.
"""

from fastbgp import implementation as _select

from fastbgp.rib._rib_py import EMPTY, MAX_PATHS, MAX_PEER_ID, PATH_STALE, RECEIVED_MAX, RECEIVED_MIN, ChangeSet  # noqa: F401
from fastbgp.rib import attrs as _attrs
from fastbgp.rib.attrs import AttrInfo, propagate_attrs  # noqa: F401

# The names every implementation provides; tests check both modules export them.
API = ("IMPLEMENTATION", "Rib", "prefix_shard", "record_words")

_impl = _select.export(globals(), "._rib", "._rib_py", "RIB", API)


class AttrTable(_attrs.AttrTable):
    """``attrs.AttrTable`` recording new sets with the selected RIB's
    ``record_words`` (compiled when built: one C walk per new set), the
    table the daemon and the benchmarks use."""

    def __init__(self, med_missing_as_worst=False, record_words=None):
        super().__init__(med_missing_as_worst, record_words if record_words is not None else _impl.record_words)
