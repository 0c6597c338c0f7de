"""Loading a configuration: :func:`load_config` parses the TOML, decodes it
into :class:`~fastbgp.config.schema.Config`, resolves peer groups and
computed defaults, and runs the semantic checks of this module.

It is pure -- no file is written, no socket bound -- so a reload can be
validated before anything is torn down, and nothing starts on a bad
configuration.  Every problem is reported as ``<field path>: <problem>``
(:class:`~fastbgp.config.errors.ConfigError`), e.g.::

    neighbors[2].peer-as: expected int >= 1 and <= 4294967295, got "x"
    global.router-id: not an IPv4 address: "1.2.3"

Decoding stops at the first type error (msgspec's); the semantic checks
report every problem they find.
"""

import ipaddress
import json
import os
import re
import stat
import time
import tomllib

import msgspec
from msgspec import UNSET

from fastbgp.config.errors import ConfigError, explain, render
from fastbgp.config.schema import (
    SET_KINDS,
    Config,
    Neighbor,
    SetRef,
    normalize_address,
    parse_endpoint,
    parse_prefix_entry,
    resolve_neighbor,
)
from fastbgp.wire.communities import (
    parse_community,
    parse_community_pattern,
    parse_ext_community,
    parse_large_community,
    parse_large_community_pattern,
)
from fastbgp.wire.constants import AS_TRANS
from fastbgp.wire.nexthop import check_next_hop

__all__ = ["load_config"]


class _Checker:
    def __init__(self):
        self.errors = []

    def err(self, path, problem):
        self.errors.append((path, problem))


def _ip(text):
    try:
        return ipaddress.ip_address(text)
    except (ValueError, TypeError):
        return None


def _check_unicast(chk, path, text):
    ip = _ip(text)
    if ip is None:
        chk.err(path, "not an IPv4 or IPv6 address: %s" % json.dumps(text))
    elif ip.is_unspecified or ip.is_multicast:
        chk.err(path, "not a unicast address: %s" % json.dumps(text))
    return ip


def _check_next_hop(chk, path, text):
    """A next hop we would send: a host address (fastbgp.wire.nexthop, the
    one rule for the API, the configuration and injected routes)."""
    ip = _ip(text)
    if ip is None:
        chk.err(path, "not an IPv4 or IPv6 address: %s" % json.dumps(text))
        return None
    try:
        check_next_hop(ip)
    except ValueError as exc:
        chk.err(path, str(exc))
    return ip


def _check_router_id(chk, path, text):
    try:
        rid = ipaddress.IPv4Address(text)
    except ValueError:
        chk.err(path, "not an IPv4 address: %s" % json.dumps(text))
        return
    if int(rid) == 0:
        # RFC 6286 §2.1: the BGP Identifier is a non-zero 32-bit value.
        chk.err(path, "must not be 0.0.0.0 (RFC 6286)")


def _check_asn(chk, path, asn):
    if asn is not UNSET and asn is not None and asn == AS_TRANS:
        chk.err(path, "23456 is AS_TRANS (RFC 6793), not a usable AS number")


def _check_endpoint(chk, path, text, default_port=None):
    try:
        return parse_endpoint(text, default_port)
    except ValueError as exc:
        chk.err(path, "not an address[:port]: %s (%s)" % (json.dumps(text), exc))
        return None


def _check_global(chk, g):
    _check_router_id(chk, "global.router-id", g.router_id)
    _check_asn(chk, "global.asn", g.asn)
    if g.cluster_id is not None:
        _check_router_id(chk, "global.cluster-id", g.cluster_id)
    seen = {}
    for i, s in enumerate(g.listen):
        ep = _check_endpoint(chk, "global.listen[%d]" % i, s, g.port)
        if ep is not None:
            key = (normalize_address(ep[0]), ep[1])
            if key in seen:
                chk.err("global.listen[%d]" % i, "duplicate of global.listen[%d]" % seen[key])
            seen.setdefault(key, i)
    if g.api.tcp is not None:
        _check_endpoint(chk, "global.api.tcp", g.api.tcp)
        if not g.api.token:
            chk.err("global.api.token", "required when global.api.tcp is set (the TCP API has no other protection)")
        elif len(g.api.token) < 16:
            chk.err("global.api.token", "too short: use at least 16 characters")
    if g.metrics.listen is not None:
        _check_endpoint(chk, "global.metrics.listen", g.metrics.listen)
    for kind in ("updates", "rib"):
        dump = getattr(g.mrt, kind)
        if dump is None:
            continue
        path = "global.mrt.%s.path" % kind
        try:
            time.strftime(dump.path, time.gmtime(0))
        except ValueError as exc:
            chk.err(path, "invalid strftime template: %s" % exc)
        if kind == "updates" and "%" not in dump.path:
            chk.err(path, "needs a strftime field (%Y, %H, ...): every dump would overwrite the last")
    if g.mrt.updates and g.mrt.rib and g.mrt.updates.path == g.mrt.rib.path:
        chk.err("global.mrt.rib.path", "same template as global.mrt.updates.path")
    _check_confederation(chk, g)
    rs = g.route_server
    for version in (4, 6):
        text = getattr(rs, "blackhole_next_hop_ipv%d" % version)
        if text is None:
            continue
        path = "global.route-server.blackhole-next-hop-ipv%d" % version
        ip = _check_next_hop(chk, path, text)
        if ip is not None and ip.version != version:
            chk.err(path, "not an IPv%d address: %s" % (version, json.dumps(text)))


def _check_confederation(chk, g):
    """RFC 5065 §4: global.asn is one of the member ASes, the identifier is
    none of them."""
    c = g.confederation
    if c is None:
        return
    path = "global.confederation"
    _check_asn(chk, path + ".identifier", c.identifier)
    for i, m in enumerate(c.members):
        _check_asn(chk, "%s.members[%d]" % (path, i), m)
    if g.asn not in c.members:
        chk.err(path + ".members", "must contain our own member AS (global.asn = %d)" % g.asn)
    if c.identifier in c.members:
        chk.err(path + ".identifier", "must not be a member AS (%d is in members)" % c.identifier)
    if len(set(c.members)) != len(c.members):
        chk.err(path + ".members", "lists an AS twice")


def _check_confed_neighbor(chk, path, n, g):
    """A neighbour cannot be in the confederation identifier's AS: outsiders
    see us as that AS, members peer with their member AS (RFC 5065 §4)."""
    c = g.confederation
    if c is not None and n.peer_as == c.identifier:
        chk.err(path + ".peer-as", "is the confederation identifier; a member peers with its member AS")
    if g.confederation_peer(n.peer_as):
        # A confederation peer is inside our AS: no route-server or RFC 9234
        # role semantics (those are between ASes).
        if n.route_server_client:
            chk.err(path + ".route-server-client", "not for a confederation peer (RFC 5065 §4)")
        if n.role is not None:
            chk.err(path + ".role", "BGP roles are not for confederation peers (RFC 5065 §4, RFC 9234)")


def _check_settings(chk, path, s, policies):
    """Field checks on what a neighbour or group wrote (values inherited from
    a group are checked once, at the group)."""
    _check_asn(chk, path + ".peer-as", s.peer_as)
    _check_asn(chk, path + ".local-as", s.local_as)
    if s.local_address not in (UNSET, None):
        _check_unicast(chk, path + ".local-address", s.local_address)
    if s.timers is not UNSET:
        h = s.timers.hold_time
        if h is not UNSET and h in (1, 2):
            # RFC 4271 §4.2: Hold Time MUST be either zero or at least three seconds.
            chk.err(path + ".timers.hold-time", "must be 0 or 3..65535 (RFC 4271 §4.2), got %d" % h)
    if s.families is not UNSET:
        if not s.families:
            chk.err(path + ".families", "must name at least one family")
        elif len(set(s.families)) != len(s.families):
            chk.err(path + ".families", "lists a family twice")
    for direction in ("import", "export"):
        names = getattr(s, direction + "_policy")
        if names is UNSET:
            continue
        for i, name in enumerate(names):
            if name not in policies:
                chk.err("%s.%s-policy[%d]" % (path, direction, i), "unknown policy %s" % json.dumps(name))
    for i, text in enumerate(s.route_server_next_hops if s.route_server_next_hops is not UNSET else ()):
        _check_unicast(chk, "%s.route-server-next-hops[%d]" % (path, i), text)
    if s.role_strict is True and s.role in (UNSET, None):
        chk.err(path + ".role-strict", "needs a role (RFC 9234 §4.2)")


def _check_own_families(chk, path, own, families):
    """add-path / prefix-limit entries written in this table (neighbour or
    group) must be for negotiated families.  Entries inherited from a group
    for families a member does not use are dropped by resolve_neighbor."""
    fams = set(families)
    if own.add_path is not UNSET:
        for kind in ("send", "receive"):
            written = getattr(own.add_path, kind)
            for i, f in enumerate(written if written is not UNSET else ()):
                if f not in fams:
                    chk.err("%s.add-path.%s[%d]" % (path, kind, i), "family %s is not in families" % json.dumps(f))
    for f in own.prefix_limit if own.prefix_limit is not UNSET else ():
        if f not in fams:
            chk.err("%s.prefix-limit.%s" % (path, f), "family is not in families")


def _check_resolved(chk, path, n):
    """Cross-field checks on a neighbour after its group is merged in."""
    if not n.peer_as:
        chk.err(path + ".peer-as", "required (set it on the neighbour or its peer group)")
    t = n.timers
    if t.hold_time == 0 and t.keepalive:
        chk.err(path + ".timers.keepalive", "must be 0 when hold-time is 0 (RFC 4271 §4.4)")
    elif t.hold_time and t.keepalive >= t.hold_time:
        chk.err(path + ".timers.keepalive", "must be less than hold-time (%d), got %d" % (t.hold_time, t.keepalive))
    ip = _ip(n.address)
    if ip is not None and n.local_address is not None:
        lip = _ip(n.local_address)
        if lip is not None and lip.version != ip.version:
            chk.err(path + ".local-address", "IPv%d address for an IPv%d neighbour" % (lip.version, ip.version))
    if n.route_server_client and n.route_reflector_client:
        chk.err(path, "route-server-client and route-reflector-client are exclusive")
    elif n.route_reflector_client and n.ebgp:
        # RFC 4456 §1: route reflection happens between IBGP peers.
        chk.err(path + ".route-reflector-client", "needs an iBGP session (peer-as == local-as)")
    elif n.route_server_client and not n.ebgp and n.peer_as:
        # RFC 7947 §2: a route server's clients are EBGP peers.
        chk.err(path + ".route-server-client", "needs an eBGP session (peer-as != local-as)")
    if n.role is not None:
        if not n.ebgp and n.peer_as:
            # RFC 9234 §4: roles are configured on eBGP sessions only.
            chk.err(path + ".role", "BGP roles apply to eBGP sessions only (RFC 9234)")
        elif n.route_server_client and n.role != "rs":
            chk.err(path + ".role", "a route-server-client's local role is \"rs\", got %s" % json.dumps(n.role))
    for key, on in (("rpki-signal", n.rpki_signal), ("rpki-accept-signal", n.rpki_accept_signal)):
        if on and n.ebgp and n.peer_as:
            # RFC 8097 §2: the state community is never sent to, nor taken
            # from, an external peer.
            chk.err(path + "." + key, "needs an iBGP session (RFC 8097 §2)")

    if n.extended_next_hop and "ipv4-unicast" not in n.families:
        # RFC 8950 §4: the capability is about carrying IPv4 NLRI.
        chk.err(path + ".extended-next-hop", "needs ipv4-unicast in families (RFC 8950)")
    if n.add_path.send_max and not n.add_path.send:
        chk.err(path + ".add-path.send-max", "needs add-path send families (RFC 7911)")


def _check_defined_sets(chk, ds):
    names = {}
    for kind, attr, member, _condition in SET_KINDS:
        seen = {}
        for i, s in enumerate(getattr(ds, attr)):
            path = "defined-sets.%s[%d]" % (kind, i)
            if s.name in seen:
                chk.err(path + ".name", "duplicate of defined-sets.%s[%d]" % (kind, seen[s.name]))
            seen.setdefault(s.name, i)
            for j, v in enumerate(getattr(s, member)):
                vpath = "%s.%s[%d]" % (path, member.replace("_", "-"), j)
                try:
                    if kind == "prefix-sets":
                        parse_prefix_entry(v)
                    elif kind == "as-path-sets":
                        re.compile(v)
                    elif kind == "community-sets":
                        parse_community(v)
                    else:
                        parse_large_community(v)
                except re.error as exc:
                    chk.err(vpath, "invalid regular expression: %s" % exc)
                except ValueError as exc:
                    chk.err(vpath, "%s: %s" % (render(v if isinstance(v, str) else v.prefix), exc))
        names[kind] = seen
    return names


def _check_community_action(chk, path, act, large):
    if act is None:
        return
    parse = parse_large_community if large else parse_community
    pattern = parse_large_community_pattern if large else parse_community_pattern
    if act.replace is not None and (act.add or act.remove):
        chk.err(path, "replace cannot be combined with add or remove")
    for key, fn in (("add", parse), ("remove", pattern), ("replace", parse)):
        for j, v in enumerate(getattr(act, key) or ()):
            try:
                fn(v)
            except ValueError as exc:
                chk.err("%s.%s[%d]" % (path, key, j), "%s: %s" % (render(v), exc))


def _check_policies(chk, policies, set_names):
    seen = {}
    for i, p in enumerate(policies):
        path = "policies[%d]" % i
        if p.name in seen:
            chk.err(path + ".name", "duplicate of policies[%d]" % seen[p.name])
        seen.setdefault(p.name, i)
        snames = {}
        for k, st in enumerate(p.statements):
            spath = "%s.statements[%d]" % (path, k)
            if st.name:
                if st.name in snames:
                    chk.err(spath + ".name", "duplicate of %s.statements[%d]" % (path, snames[st.name]))
                snames.setdefault(st.name, k)
            c = st.conditions
            for kind, _attr, _member, field in SET_KINDS:
                ref = getattr(c, field)
                if ref is None:
                    continue
                name = ref if isinstance(ref, str) else ref.name
                cond = field.replace("_", "-")
                cpath = "%s.conditions.%s" % (spath, cond)
                if name not in set_names[kind]:
                    chk.err(cpath, "unknown %s %s" % (cond, json.dumps(name)))
                if cond == "prefix-set" and isinstance(ref, SetRef) and ref.match == "all":
                    # A route has one prefix: "all" members can never match.
                    chk.err(cpath + ".match", "a prefix-set matches \"any\" or \"invert\"")
            for j, nb in enumerate(c.neighbor or ()):
                try:
                    ipaddress.ip_network(nb, strict=True)
                except ValueError:
                    chk.err("%s.conditions.neighbor[%d]" % (spath, j), "not an address or prefix: %s" % render(nb))
            if c.family is not None and not c.family:
                chk.err(spath + ".conditions.family", "must name at least one family")
            a = st.actions
            _check_community_action(chk, spath + ".actions.communities", a.communities, False)
            _check_community_action(chk, spath + ".actions.large-communities", a.large_communities, True)
            if a.as_path_prepend is not None:
                _check_asn(chk, spath + ".actions.as-path-prepend.asn", a.as_path_prepend.asn)
            if a.set_next_hop is not None:
                _check_next_hop(chk, spath + ".actions.set-next-hop", a.set_next_hop)
                if a.next_hop_self:
                    chk.err(spath + ".actions", "next-hop-self and set-next-hop are exclusive")
    return set(seen)


def _check_routes(chk, routes):
    seen = {}
    for i, r in enumerate(routes):
        path = "routes[%d]" % i
        try:
            net = ipaddress.ip_network(r.prefix, strict=True)
        except ValueError as exc:
            chk.err(path + ".prefix", "not a prefix: %s (%s)" % (render(r.prefix), exc))
            net = None
        if net is not None:
            # RFC 7911: one prefix may be originated once per path id.
            if (net, r.path_id) in seen:
                chk.err(path + ".prefix", "duplicate of routes[%d]" % seen[(net, r.path_id)])
            seen.setdefault((net, r.path_id), i)
        if r.next_hop is not None:
            nh = _check_next_hop(chk, path + ".next-hop", r.next_hop)
            if nh is not None and net is not None and nh.version != net.version:
                chk.err(path + ".next-hop", "IPv%d next hop for an IPv%d prefix" % (nh.version, net.version))
        for j, a in enumerate(r.as_path):
            _check_asn(chk, "%s.as-path[%d]" % (path, j), a)
        for key, fn in (("communities", parse_community), ("large-communities", parse_large_community),
                        ("ext-communities", parse_ext_community), ("neighbors", ipaddress.ip_address)):
            for j, v in enumerate(getattr(r, key.replace("-", "_"))):
                try:
                    fn(v)
                except ValueError as exc:
                    chk.err("%s.%s[%d]" % (path, key, j), "%s: %s" % (render(v), exc))


def _check_rtr_transport(chk, path, c):
    """``transport`` / ``ssh`` of one RTR cache: SSH needs asyncssh, a user,
    a password or private key, and a way to verify the cache's host key
    (RFC 8210 §9.1: routers SHOULD verify it), unless explicitly waived;
    the key files are read here so that a bad one stops the load."""
    ssh = c.ssh
    if c.transport != "ssh":
        if ssh is not None:
            chk.err(path + ".ssh", 'given but transport is "tcp" (set transport = "ssh")')
        return
    try:
        import asyncssh
    except ImportError:
        chk.err(path + ".transport", '"ssh" needs the asyncssh package (pip install \'fastbgp[ssh]\')')
        return
    if ssh is None:
        chk.err(path + ".ssh", 'needed with transport = "ssh": user, password or private-key, known-hosts or '
                "host-key")
        return
    path += ".ssh"
    if ssh.password is None and ssh.private_key is None:
        chk.err(path, "needs password or private-key")
    verifiers = [k for k, v in (("known-hosts", ssh.known_hosts), ("host-key", ssh.host_key),
                                ("insecure-accept-any-host-key", ssh.insecure_accept_any_host_key)) if v]
    if not verifiers:
        chk.err(path, "needs known-hosts or host-key to verify the cache's host key (or "
                "insecure-accept-any-host-key = true to accept any)")
    elif len(verifiers) > 1:
        chk.err(path, "%s: set one of them" % " and ".join(verifiers))
    if ssh.private_key is not None:
        try:
            asyncssh.read_private_key(ssh.private_key)
        except (OSError, asyncssh.KeyImportError, ValueError) as exc:
            chk.err(path + ".private-key", "cannot use %s: %s" % (render(ssh.private_key), exc))
    if ssh.known_hosts is not None:
        try:
            known = asyncssh.read_known_hosts(ssh.known_hosts).match(c.address, c.address, c.port)
        except (OSError, ValueError) as exc:
            chk.err(path + ".known-hosts", "cannot use %s: %s" % (render(ssh.known_hosts), exc))
        else:
            if not known[0] and not known[1]:  # no host key and no CA key: every connection would be refused
                host = c.address if c.port == 22 else "[%s]:%d" % (c.address, c.port)
                chk.err(path + ".known-hosts", "%s has no key for %s" % (render(ssh.known_hosts), host))
    if ssh.host_key is not None:
        try:
            asyncssh.import_public_key(ssh.host_key)
        except (asyncssh.KeyImportError, ValueError) as exc:
            chk.err(path + ".host-key", "not a public key: %s" % exc)


def _check_rpki(chk, cfg, resolved):
    """``[rpki]`` itself, and the ``rpki`` / ``aspa`` policy conditions: they
    need ``[rpki]`` and are known at import only (the state is computed per
    received route, fastbgp.daemon.rpki_feed), so no export policy may use
    them."""
    r = cfg.rpki
    if r is not None:
        if not r.caches and not r.file:
            chk.err("rpki", "needs caches or a file")
        seen = {}
        for i, c in enumerate(r.caches):
            path = "rpki.caches[%d]" % i
            if _ip(c.address) is None:
                chk.err(path + ".address", "not an IP address: %s" % render(c.address))
            key = (c.address, c.port)
            if key in seen:
                chk.err(path, "duplicate of rpki.caches[%d]" % seen[key])
            seen.setdefault(key, i)
            _check_rtr_transport(chk, path, c)
        # A missing file is not an error: rpki-client may write it later;
        # the daemon warns and loads it when it appears (rpki_feed.FILE_POLL).
    users = {}
    for i, p in enumerate(cfg.policies):
        for k, st in enumerate(p.statements):
            for cond in ("rpki", "aspa"):
                if getattr(st.conditions, cond) is not None:
                    users.setdefault(p.name, "policies[%d].statements[%d].conditions.%s" % (i, k, cond))
    for name, path in users.items():
        if r is None:
            chk.err(path, "needs an [rpki] section (caches or a file)")
    exporters = [n.export_policy for n in resolved] + [
        g.export_policy for g in cfg.peer_groups if g.export_policy is not UNSET]
    for names in exporters:
        for name in names:
            if name in users:
                chk.err(users.pop(name), "rpki / aspa conditions apply at import only: policy %s is an export "
                        "policy" % json.dumps(name))


def _semantic(cfg):
    """(checked config with neighbours resolved, errors)."""
    chk = _Checker()
    g = cfg.global_
    _check_global(chk, g)
    set_names = _check_defined_sets(chk, cfg.defined_sets)
    policies = _check_policies(chk, cfg.policies, set_names)
    _check_routes(chk, cfg.routes)

    groups = {}
    for i, pg in enumerate(cfg.peer_groups):
        path = "peer-groups[%d]" % i
        if pg.name in groups:
            chk.err(path + ".name", "duplicate of peer-groups[%d]" % groups[pg.name][0])
            continue
        groups[pg.name] = (i, pg)
        _check_settings(chk, path, pg, policies)
        if pg.families is not UNSET:
            _check_own_families(chk, path, pg, pg.families)

    resolved = []
    seen = {}
    for i, n in enumerate(cfg.neighbors):
        path = "neighbors[%d]" % i
        ip = _check_unicast(chk, path + ".address", n.address)
        _check_settings(chk, path, n, policies)
        group = None
        if n.peer_group is not None:
            if n.peer_group not in groups:
                chk.err(path + ".peer-group", "unknown peer group %s" % json.dumps(n.peer_group))
            else:
                group = groups[n.peer_group][1]
        r = resolve_neighbor(n, group, g)
        if ip is not None:
            if r.address in seen:
                chk.err(path + ".address", "duplicate of neighbors[%d] (%s)" % (seen[r.address], r.address))
            seen.setdefault(r.address, i)
            _check_resolved(chk, path, r)
            _check_own_families(chk, path, n, r.families)
            _check_confed_neighbor(chk, path, r, g)
        resolved.append(r)

    ranges = {}
    for i, d in enumerate(cfg.dynamic_neighbors):
        path = "dynamic-neighbors[%d]" % i
        try:
            net = ipaddress.ip_network(d.prefix, strict=True)
        except ValueError as exc:
            chk.err(path + ".prefix", "not a prefix range: %s (%s)" % (render(d.prefix), exc))
            net = None
        if net is not None:
            if net in ranges:
                chk.err(path + ".prefix", "duplicate of dynamic-neighbors[%d]" % ranges[net])
            ranges.setdefault(net, i)
        if d.peer_group not in groups:
            chk.err(path + ".peer-group", "unknown peer group %s" % json.dumps(d.peer_group))
        elif net is not None:
            # Check the template once, as any address of the range would get it.
            tpl = resolve_neighbor(Neighbor(address=str(net.network_address), peer_group=d.peer_group), groups[d.peer_group][1], g)
            sub = _Checker()
            _check_resolved(sub, path, tpl)
            for p, m in sub.errors:
                field = p[len(path) :].lstrip(".")
                chk.err(path, "%s%s (with peer group %s)" % (field + ": " if field else "", m, json.dumps(d.peer_group)))

    _check_rpki(chk, cfg, resolved)
    return msgspec.structs.replace(cfg, neighbors=resolved), chk.errors


# ------------------------------------------------------------------ loading


# A configuration file larger than this is refused unread (a reload must
# not stall the daemon or fill its memory).
MAX_CONFIG_BYTES = 64 * 1024 * 1024


def _read_file(name) -> bytes:
    # O_NONBLOCK: opening a FIFO put in the file's place must not block the
    # daemon (a reload runs on its event loop); only regular files are read.
    fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError("not a regular file")
        data = f.read(MAX_CONFIG_BYTES + 1)
    if len(data) > MAX_CONFIG_BYTES:
        raise OSError("larger than %d bytes" % MAX_CONFIG_BYTES)
    return data


def _read(path_or_text):
    """(text, source name).  A Path, or a str without newline or '=', is a
    file name; any other str is the TOML itself."""
    if isinstance(path_or_text, bytes):
        return path_or_text.decode("utf-8"), "<bytes>"
    if isinstance(path_or_text, os.PathLike) or ("\n" not in path_or_text and "=" not in path_or_text):
        name = os.fspath(path_or_text)
        try:
            return _read_file(name).decode("utf-8"), name
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError([("", "cannot read %s: %s" % (name, exc))], name) from None
    return path_or_text, "<string>"


def load_config(path_or_text):
    """Parse, decode, resolve and check a configuration; ConfigError on any
    problem.  Pure: reads the file and nothing else."""
    text, source = _read(path_or_text)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([("", "TOML syntax error: %s" % exc)], source) from None
    except RecursionError:
        # tomllib recurses per nesting level: a hostile file, not a crash.
        raise ConfigError([("", "TOML syntax error: values nested too deeply")], source) from None
    try:
        cfg = msgspec.convert(raw, Config)
    except msgspec.ValidationError as exc:
        raise ConfigError([explain(exc, Config, raw)], source) from None
    cfg, errors = _semantic(cfg)
    if errors:
        raise ConfigError(errors, source)
    return cfg
