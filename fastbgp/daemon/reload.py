"""Reload: apply a new configuration to a running daemon (SIGHUP, ``POST
/reload``), changing only what :func:`fastbgp.config.diff.diff` says
changed.

Owns: the order of a reload.  The new policies are compiled, the new API
and metrics listeners bound (``Daemon.on_prepare_reload`` hooks) and the
BGP listeners rebound (``Speaker.rebind``) before anything else changes, so
a failure there (ConfigError naming the setting) leaves the daemon as it
was; then the identity, neighbours
(removed, reset with Cease 6/6, added), every remaining neighbour's import
policy and every update group's export policy, soft reconfiguration where
only policies changed, the originated routes, the swap to the new API and
metrics listeners and finally the daemon's ``on_reload`` hooks.

Calls: the daemon and its collaborators (peer registry, importer,
exporter, originator, the MRT dumps) and ``daemon.speaker``.
Called by: ``Daemon.apply_config`` (``Daemon.reload`` reads the file).
"""

from __future__ import annotations

import ipaddress
import logging

import msgspec

from fastbgp.config import schema as cfgmod
from fastbgp.config.diff import diff
from fastbgp.config.errors import ConfigError
from fastbgp.control.contract import change_lines
from fastbgp.rib.policy import compile_policies
from fastbgp.daemon.common import LOCAL_PID

log = logging.getLogger("fastbgp.daemon")


async def apply_config(daemon, new: cfgmod.Config) -> dict:
    """Apply ``new`` to ``daemon``; returns the difference as builtins."""
    old = daemon.config
    d = diff(old, new)
    engine = compile_policies(new)  # before anything changes
    if not daemon.started:
        daemon.config, daemon.engine = new, engine
        return msgspec.to_builtins(d)
    g_old, g_new = old.global_, new.global_
    prepared = await _prepare(daemon, old, new)  # may raise: nothing changed yet
    try:
        if g_old.listen_endpoints() != g_new.listen_endpoints():
            try:
                await daemon.speaker.rebind(g_new.listen_endpoints())  # atomic: all new bound or none
            except OSError as exc:
                raise ConfigError([("global.listen", "cannot listen for BGP: %s" % (exc.strerror or exc))]) from None
    except BaseException:
        await _abort(prepared)
        raise
    daemon.config = new
    daemon.engine = engine
    if g_old.workers != g_new.workers:
        log.warning("global.workers changed to %d: it takes effect when the daemon restarts", g_new.workers)
    daemon.importer.setup_observe(new)
    if g_old.mrt != g_new.mrt:
        await daemon.stop_mrt_dumps()
        daemon.start_mrt_dumps(g_new.mrt)
    daemon.cluster_id = ipaddress.IPv4Address(g_new.effective_cluster_id).packed
    if (g_old.asn, g_old.router_id) != (g_new.asn, g_new.router_id):
        _set_identity(daemon, g_new)
    resets = _apply_neighbors(daemon, new, d)
    _rebind_policies(daemon, new, engine, d, resets)
    _soft_reconfigure(daemon, d)
    restored = daemon.originator.apply_routes(old, new, d)
    for commit, _ in prepared:
        try:
            await commit()
        except Exception:
            log.exception("reload: swapping in a new listener failed")
    for cb in list(daemon.on_reload):
        try:
            await cb(old, new, d)
        except Exception:
            log.exception("reload hook %s failed", getattr(cb, "__qualname__", type(cb).__name__))
    summary = msgspec.to_builtins(d)
    if restored:
        # Configured routes withdrawn through the API since: the file says
        # they exist, so a reload brings them back.
        summary["routes_restored"] = restored
    lines = change_lines(summary)
    log.info("configuration reloaded: %s", "; ".join(lines) if lines else "no change")
    return summary


async def _prepare(daemon, old, new) -> list:
    """Run every ``on_prepare_reload`` hook (they bind the new API and
    metrics listeners); [(commit, abort)].  If one refuses, those before it
    are aborted and its ConfigError raised."""
    prepared = []
    try:
        for hook in list(daemon.on_prepare_reload):
            pair = await hook(old, new)
            if pair is not None:
                prepared.append(pair)
    except BaseException:
        await _abort(prepared)
        raise
    return prepared


async def _abort(prepared) -> None:
    for _, abort in prepared:
        try:
            await abort()
        except Exception:
            log.exception("reload: releasing a new listener failed")


def _set_identity(daemon, g_new):
    # Every neighbour is reset (config.diff): the ones created after this
    # must use the new identity in their OPEN.
    sp = daemon.speaker
    sp.asn = g_new.asn
    sp.router_id = g_new.router_id
    sp.router_id_int = int(ipaddress.IPv4Address(g_new.router_id))
    daemon.sources[LOCAL_PID].router_id = sp.router_id_int
    if daemon.rpki is not None:
        daemon.rpki.identity_changed()


def _apply_neighbors(daemon, new, d) -> list:
    """Remove, reset and add neighbours; returns the reset addresses."""
    peers = daemon.peers
    changed = {c.address: c for c in d.changed}
    for addr in d.removed:
        peers.remove_neighbor(addr, "de-configured")
    resets = [a for a, c in changed.items() if c.action == "reset"]
    for addr in resets:
        peers.remove_neighbor(addr, "configuration changed", config_change=True)
        peers.add_neighbor(new.neighbor(addr))
    for addr in d.added:
        peers.add_neighbor(new.neighbor(addr))
    if d.dynamic_changed:
        for nb in [n for n in daemon.speaker.neighbors.values() if n.dynamic]:
            peers.remove_neighbor(nb.address, "dynamic neighbour settings changed", config_change=True)
    return resets


def _rebind_policies(daemon, new, engine, d, resets):
    """Every neighbour that stays: new engine, new config object; every
    update group: its export chain in the new engine."""
    for nb in list(daemon.speaker.neighbors.values()):
        if nb.dynamic or nb.address in resets or nb.address in d.added:
            continue
        cfgn = new.neighbor(nb.address)
        if cfgn is None:
            continue
        nb.cfg = cfgn
        nb.config.description = cfgn.description
        daemon.importer.bind_policy(nb)
    daemon.exporter.set_policies(engine)


def _soft_reconfigure(daemon, d):
    """Neighbours whose policies changed re-import and re-export (RFC 2918
    refresh or the pre-policy copy); a new cluster id or router id is
    re-advertised to every internal peer (RFC 4456 §8 attributes)."""
    cluster_changed = "cluster-id" in d.global_changed or "router-id" in d.global_changed
    speaker = daemon.speaker
    changed = {c.address: c for c in d.changed}
    for addr, c in changed.items():
        if c.action != "soft":
            continue
        nb = speaker.neighbors.get(addr)
        if nb is None or not nb.established:
            continue
        if c.soft_import:
            daemon.importer.soft_in(nb)
        if c.soft_export:
            daemon.exporter.redump_all(nb)
    if cluster_changed:
        for nb in list(speaker.neighbors.values()):
            if nb.established and not nb.ebgp:
                daemon.exporter.redump_all(nb)
