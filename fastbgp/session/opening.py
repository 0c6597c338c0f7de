"""The OPEN exchange of a neighbour: the capabilities we advertise and the
checks of the peer's OPEN.

Owns: which capabilities a NeighborConfig turns into (RFC 5492; graceful
restart RFC 4724 §3 with the Restart State bit after our own restart, ADD-PATH
RFC 7911, extended next hop RFC 8950, BGP role RFC 9234, FQDN), and the negotiation of a received OPEN
with the RFC 4271 §6.2 peer AS / BGP identifier checks.

Pure functions, called by :class:`fastbgp.session.speaker.Neighbor` when its
sessions ask (``Session.attach`` for the capabilities, ``Session`` on OPEN
for the negotiation); the collision that may follow is
:mod:`fastbgp.session.collision`'s.
"""

from __future__ import annotations

from fastbgp.wire import capabilities as caps_mod
from fastbgp.wire.constants import AFI_IPV4, AFI_IPV6, IPV4_UNICAST, SAFI_UNICAST
from fastbgp.wire.errors import ERR_OPEN, OPEN_BAD_BGP_ID, OPEN_BAD_PEER_AS, BGPError

__all__ = ["local_capabilities", "negotiate_open"]


def local_capabilities(cfg, local_as: int, restarting: bool) -> list:
    """The capabilities to send in our OPEN to the neighbour ``cfg`` (a
    NeighborConfig); ``restarting``: we came back from a restart."""
    C = caps_mod
    fams = cfg.family_tuples
    out = [C.Multiprotocol(afi, safi) for afi, safi in fams]
    if cfg.route_refresh:
        out.append(C.RouteRefresh())
        if cfg.enhanced_route_refresh:
            out.append(C.EnhancedRouteRefresh())
    if cfg.extended_message:
        out.append(C.ExtendedMessage())
    if cfg.extended_next_hop and IPV4_UNICAST in fams:
        # RFC 8950 §3-4: we take IPv4 unicast NLRI with IPv6 next hops (and,
        # once the peer says the same, send them).
        out.append(C.ExtendedNextHop([(AFI_IPV4, SAFI_UNICAST, AFI_IPV6)]))
    gr = cfg.graceful_restart
    if gr is not None:
        flags = C.GracefulRestart.NOTIFICATION if gr.notification else 0
        if restarting:
            # RFC 4724 §3: Restart State, we came back from a restart.
            flags |= C.GracefulRestart.RESTART_STATE
        ff = C.GracefulRestart.FORWARDING_STATE if gr.forwarding_state else 0
        out.append(C.GracefulRestart(flags, gr.restart_time, [(a, s, ff) for a, s in fams]))
    if cfg.four_octet_as:
        out.append(C.FourOctetAS(local_as))
    tx = cfg.addpath_send_families
    rx = cfg.addpath_receive_families
    ap = []
    for fam in fams:
        mode = (1 if fam in rx else 0) | (2 if fam in tx else 0)
        if mode:
            ap.append((fam[0], fam[1], mode))
    if ap:
        out.append(C.AddPath(ap))
    if cfg.role is not None:
        out.append(C.BGPRole(cfg.role_code))
    if cfg.hostname:
        host, _, domain = cfg.hostname.partition(".")
        out.append(C.FQDN(host, domain))
    return out


def negotiate_open(session, op, remote_caps, *, cfg, local_as: int, router_id: int, ebgp: bool):
    """capabilities.Negotiated of ``session``'s capabilities and the peer's
    OPEN ``op``; BGPError (OPEN Message Error) when the peer is not the
    one configured."""
    # RFC 5065 §4: a confederation peer's UPDATEs are decoded as internal
    # ones (Negotiated.ebgp only selects the codec's RFC 7606 §7.5 discard).
    internal_attrs = getattr(cfg, "confederation_member", False)
    neg = caps_mod.negotiate(session.local_capabilities, remote_caps, local_as, op.asn, ebgp and not internal_attrs,
                             strict_role=cfg.role_strict)
    if neg.peer_asn != cfg.peer_as:
        # RFC 4271 §6.2: Bad Peer AS.
        raise BGPError(ERR_OPEN, OPEN_BAD_PEER_AS, b"", "peer AS %d, configured %d" % (neg.peer_asn, cfg.peer_as))
    if op.bgp_id == router_id and not ebgp:
        # RFC 6286 §2.2: same identifier as ours from an internal peer.
        raise BGPError(ERR_OPEN, OPEN_BAD_BGP_ID, b"", "peer uses our BGP identifier")
    return neg
