"""What a reload changes: :func:`diff` compares two loaded configurations
and says which neighbours to start, stop, reset, or only re-run policies
for (soft reconfiguration: RFC 2918 / RFC 7313 route refresh inbound,
re-export outbound).
"""

import ipaddress
from typing import Literal

from fastbgp.config.schema import SET_KINDS, ConfigStruct, GlobalConfig, Neighbor

__all__ = ["diff", "ConfigDiff", "NeighborChange", "route_name"]


class NeighborChange(ConfigStruct):
    address: str
    fields: list[str]  # kebab names of what changed
    # reset: tear the session down and start it with the new settings;
    # soft: keep the session, re-run policies (soft_import: ask for a
    # ROUTE-REFRESH, RFC 2918 / RFC 7313, or re-run Adj-RIB-In;
    # soft_export: re-evaluate and re-advertise); none: nothing to do
    # beyond using the new values (description, prefix limits).
    action: Literal["reset", "soft", "none"]
    soft_import: bool = False
    soft_export: bool = False


class ConfigDiff(ConfigStruct):
    added: list[str] = []  # neighbour addresses to start
    removed: list[str] = []  # ... to stop (Cease/Peer De-configured, RFC 4486)
    changed: list[NeighborChange] = []
    global_changed: list[str] = []  # changed keys of [global]
    policies_changed: list[str] = []  # policies whose outcome may differ
    routes_added: list[str] = []  # originated prefixes
    routes_removed: list[str] = []
    routes_changed: list[str] = []
    dynamic_changed: bool = False  # dynamic ranges or their groups changed
    # [rpki] changed: the daemon restarts its RPKI sources on the same
    # tables (fastbgp.daemon.rpki_feed); re-validation sends the changes.
    rpki_changed: bool = False
    # [[bmp]] stations ("address:port") and [[processes]] programs (names);
    # the daemon reconnects / restarts what changed (reload hooks).
    bmp_added: list[str] = []
    bmp_removed: list[str] = []
    bmp_changed: list[str] = []
    processes_added: list[str] = []
    processes_removed: list[str] = []
    processes_changed: list[str] = []

    @property
    def empty(self):
        return not (
            self.added
            or self.removed
            or self.changed
            or self.global_changed
            or self.policies_changed
            or self.routes_added
            or self.routes_removed
            or self.routes_changed
            or self.dynamic_changed
            or self.rpki_changed
            or self.bmp_added
            or self.bmp_removed
            or self.bmp_changed
            or self.processes_added
            or self.processes_removed
            or self.processes_changed
        )


def route_name(r) -> str:
    """How a configured route is named in a diff: its prefix, and its
    RFC 7911 path id when it has one (a prefix may be originated once per
    path id)."""
    p = str(ipaddress.ip_network(r.prefix))
    return p if r.path_id is None else "%s path-id %d" % (p, r.path_id)


def _keyed(old, new):
    """(added, removed, changed) names of two {name: entry} dicts."""
    return ([k for k in new if k not in old], [k for k in old if k not in new],
            [k for k in new if k in old and old[k] != new[k]])


_SOFT_IMPORT_FIELDS = {"import_policy", "default_import"}
_SOFT_EXPORT_FIELDS = {"export_policy", "default_export"}
# Used as they are, without touching the session.
_NO_ACTION_FIELDS = {"description", "prefix_limit", "peer_group"}
# Global keys that change what every session sends in its OPEN.
# RFC 5065: a confederation change can change every session's AS and kind.
_GLOBAL_RESET = {"asn", "router_id", "confederation"}


def _kebab(name):
    return name.replace("_", "-")


def _changed_policies(old, new):
    """Names of policies (in either config) whose result may differ: the
    policy itself changed, appeared/disappeared, or a set it uses changed."""
    sets_old = _sets_by_key(old.defined_sets)
    sets_new = _sets_by_key(new.defined_sets)
    changed_sets = {k for k in set(sets_old) | set(sets_new) if sets_old.get(k) != sets_new.get(k)}
    po = {p.name: p for p in old.policies}
    pn = {p.name: p for p in new.policies}
    out = set()
    for name in set(po) | set(pn):
        if po.get(name) != pn.get(name):
            out.add(name)
            continue
        for st in pn[name].statements:
            for kind, _attr, _member, field in SET_KINDS:
                ref = getattr(st.conditions, field)
                if ref is not None and (kind, ref if isinstance(ref, str) else ref.name) in changed_sets:
                    out.add(name)
    return out


def _sets_by_key(ds):
    out = {}
    for kind, attr, _member, _condition in SET_KINDS:
        for s in getattr(ds, attr):
            out[(kind, s.name)] = s
    return out


def diff(old, new):
    """What a reload from ``old`` to ``new`` (both from load_config) means
    for the running daemon; see ConfigDiff and NeighborChange."""
    global_changed = [
        _kebab(f) for f in GlobalConfig.__struct_fields__ if getattr(old.global_, f) != getattr(new.global_, f)
    ]
    reset_all = [f for f in _GLOBAL_RESET if getattr(old.global_, f) != getattr(new.global_, f)]
    pol = _changed_policies(old, new)
    on = {n.address: n for n in old.neighbors}
    nn = {n.address: n for n in new.neighbors}
    changed = []
    for addr in nn:
        if addr not in on:
            continue
        a, b = on[addr], nn[addr]
        fields = [f for f in Neighbor.__struct_fields__ if getattr(a, f) != getattr(b, f)]
        soft_in = bool(set(fields) & _SOFT_IMPORT_FIELDS) or bool(pol & set(b.import_policy))
        soft_out = bool(set(fields) & _SOFT_EXPORT_FIELDS) or bool(pol & set(b.export_policy))
        hard = set(fields) - _SOFT_IMPORT_FIELDS - _SOFT_EXPORT_FIELDS - _NO_ACTION_FIELDS
        names = [_kebab(f) for f in fields] + ["global." + _kebab(f) for f in reset_all]
        if hard or reset_all:
            changed.append(NeighborChange(address=addr, fields=names, action="reset"))
        elif soft_in or soft_out:
            changed.append(NeighborChange(address=addr, fields=names, action="soft", soft_import=soft_in, soft_export=soft_out))
        elif fields:
            changed.append(NeighborChange(address=addr, fields=names, action="none"))
    ro = {route_name(r): r for r in old.routes}
    rn = {route_name(r): r for r in new.routes}
    bmp = _keyed({"%s:%d" % (b.address, b.port): b for b in old.bmp},
                 {"%s:%d" % (b.address, b.port): b for b in new.bmp})
    procs = _keyed({p.name: p for p in old.processes}, {p.name: p for p in new.processes})
    groups_used = {d.peer_group for d in old.dynamic_neighbors} | {d.peer_group for d in new.dynamic_neighbors}
    dyn = old.dynamic_neighbors != new.dynamic_neighbors or any(
        old.peer_group(g) != new.peer_group(g) for g in groups_used
    )
    return ConfigDiff(
        added=[a for a in nn if a not in on],
        removed=[a for a in on if a not in nn],
        changed=changed,
        global_changed=global_changed,
        policies_changed=sorted(pol),
        routes_added=[str(p) for p in rn if p not in ro],
        routes_removed=[str(p) for p in ro if p not in rn],
        routes_changed=[str(p) for p in rn if p in ro and ro[p] != rn[p]],
        dynamic_changed=dyn,
        rpki_changed=old.rpki != new.rpki,
        bmp_added=bmp[0],
        bmp_removed=bmp[1],
        bmp_changed=bmp[2],
        processes_added=procs[0],
        processes_removed=procs[1],
        processes_changed=procs[2],
    )
