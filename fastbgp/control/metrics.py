"""Prometheus metrics, pulled from :class:`fastbgp.control.contract.Control` at scrape
time.

Nothing in the BGP hot path updates a Prometheus object: the daemon already
keeps per-session counters (GoBGP's names) and RIB sizes, and
:class:`ControlCollector` reads them through the Control contract when
Prometheus scrapes.  The one thing the daemon must feed is the UPDATE
processing latency, a histogram: call :func:`observe_update_latency` with the
seconds one UPDATE (or one batch) took from read to RIB.

Serving
    ``global.metrics.listen = "addr:port"`` starts :class:`MetricsServer`,
    an aiohttp listener on the daemon's own event loop answering
    ``GET /metrics`` (and ``/`` with a pointer).  The same loop, not
    prometheus_client's threaded server, on purpose: the collector reads the
    daemon's live structures, and doing that from another thread while the
    loop mutates them would give torn reads (or "dict changed size during
    iteration").  A scrape of a few hundred peers takes well under a
    millisecond of loop time.

Series (``neighbor`` is the configured address)
    fastbgp_up                                      1
    fastbgp_sessions{state}                         neighbours per FSM state
    fastbgp_neighbor_up{neighbor,peer_as}           1 when Established
    fastbgp_neighbor_admin_down{neighbor}           1 when disabled
    fastbgp_neighbor_uptime_seconds{neighbor}       0 when down
    fastbgp_neighbor_established_total{neighbor}    times it reached Established
    fastbgp_messages_sent_total{neighbor,type}      open|update|notification|keepalive|refresh
    fastbgp_messages_received_total{neighbor,type}  same types
    fastbgp_messages_discarded_total{neighbor}      received without effect
    fastbgp_prefixes_received{neighbor}             Adj-RIB-In (post-policy)
    fastbgp_prefixes_accepted{neighbor}             of those, best in the Loc-RIB
    fastbgp_prefixes_advertised{neighbor}           Adj-RIB-Out
    fastbgp_neighbor_connections_refused_total{neighbor}  from its address while Idle, or
                                                    the losing side of a collision
    fastbgp_neighbor_half_open_closed_total{neighbor}     closed before their OPEN for a newer one
    fastbgp_update_errors_handled_total{neighbor,action}  treat-as-withdraw|attribute-discard (RFC 7606)
    fastbgp_prefixes_own_next_hop_total{neighbor}   ignored: the next hop is ours (RFC 4271 §6.3)
    fastbgp_route_server_next_hop_rejected_total{neighbor}  attribute sets of a route-server
                                                    client refused by the next-hop check
    fastbgp_connections_refused_unknown_total       from addresses with no neighbour (RFC 4271 §8)
    fastbgp_rib_prefixes{family}                    Loc-RIB prefixes
    fastbgp_rib_paths{family}                       Loc-RIB paths
    fastbgp_rib_attribute_sets{family}              interned attribute sets
    fastbgp_update_processing_seconds               histogram (observe_update_latency)
    fastbgp_bmp_station_drops_total{station}        BMP stations dropped (count_bmp_drop)
    fastbgp_process_up{process}                     1 while a [[processes]] program runs
    fastbgp_process_queued_events{process}          events waiting to be written to it
    fastbgp_process_events_total{process}           events queued for it
    fastbgp_process_events_dropped_total{process}   dropped: it read too slowly (queue-limit)
    fastbgp_process_overflows_total{process}        times its queue was full
    fastbgp_process_dumps_total{process}            table dumps written to it
    fastbgp_process_restarts_total{process}         restarts after it exited (or overflowed)
    fastbgp_process_updates_folded_total{process}   received UPDATEs written in coalesced lines
    fastbgp_process_update_lines_total{process}     the lines written for them
    fastbgp_process_runs_unfolded_total{process}    runs written one line per UPDATE
    fastbgp_process_commands_total{process,result}  command lines read: ok | error
    fastbgp_rpki_vrps{family}                       VRPs in use ([rpki])
    fastbgp_rpki_aspas                              ASPA records in use
    fastbgp_rpki_routes{state}                      Adj-RIB-In paths (all, post-policy) per RFC 6811 state
    fastbgp_rpki_neighbor_routes{neighbor,family,state}  the same per neighbour and family
    fastbgp_rpki_cache_up{cache} / _serial{cache}   RTR caches
    plus prometheus_client's process_* and python_* series.
"""

from __future__ import annotations

import logging
from typing import Optional

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client import GC_COLLECTOR, PLATFORM_COLLECTOR, PROCESS_COLLECTOR
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from fastbgp.control import contract as ctl
from fastbgp.control.sockets import Guard, bind_tcp, serve_runner

__all__ = [
    "ControlCollector",
    "MetricsServer",
    "make_registry",
    "observe_update_latency",
    "count_bmp_drop",
    "BMP_STATION_DROPS",
    "UPDATE_LATENCY",
    "STATES",
    "serve",
]

log = logging.getLogger("fastbgp.metrics")

STATES = ("idle", "connect", "active", "opensent", "openconfirm", "established")
MESSAGE_TYPES = ("open", "update", "notification", "keepalive", "refresh")

# Not registered globally: each registry (one per server; tests make several)
# registers it, and every registry sees the same observations.  Buckets from
# 50 µs (one small UPDATE on the compiled path) to 10 s (a stalled loop).
UPDATE_LATENCY = Histogram(
    "fastbgp_update_processing_seconds",
    "Time from an UPDATE being read to its routes being in the RIB.",
    buckets=(0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
    registry=None,
)


# Counted by the daemon's BMP feed when a station is dropped for exceeding
# its queued-bytes bound (fastbgp.bmp.station); registered like UPDATE_LATENCY.
BMP_STATION_DROPS = Counter(
    "fastbgp_bmp_station_drops_total",
    "BMP stations dropped for exceeding max-queued-bytes (re-synced on reconnect).",
    ["station"],
    registry=None,
)


def count_bmp_drop(station: str) -> None:
    """One BMP station ("addr:port") dropped for its queue bound."""
    BMP_STATION_DROPS.labels(station).inc()


def observe_update_latency(seconds: float) -> None:
    """Record one UPDATE's (or batch's) processing time; cheap enough to call
    per UPDATE (a lock and a bucket search)."""
    UPDATE_LATENCY.observe(seconds)


class ControlCollector(Collector):
    """Builds the fastbgp_* series from a Control at each scrape."""

    def __init__(self, control: ctl.Control):
        self.control = control

    def describe(self):
        # Nothing at registration time: collect() would read the daemon
        # before it is ready.
        return []

    def collect(self):
        up = GaugeMetricFamily("fastbgp_up", "1 while the daemon answers scrapes.")
        up.add_metric([], 1)
        yield up
        try:
            neighbors = list(self.control.neighbors())
        except Exception:
            log.exception("metrics: reading the neighbours failed")
            neighbors = []
        yield from self._neighbors(neighbors)
        try:
            summary = list(self.control.rib_summary())
        except Exception:
            log.exception("metrics: reading the RIB summary failed")
            summary = []
        yield from self._rib(summary)
        yield from self._global()
        yield from self._rpki()
        yield from self._processes()

    def _processes(self):
        """The [[processes]] programs' counters (daemon.processes)."""
        info = getattr(self.control, "process_info", None)
        if info is None:
            return
        try:
            progs = list(info())
        except Exception:
            log.exception("metrics: reading the processes' counters failed")
            return
        if not progs:
            return
        up = GaugeMetricFamily("fastbgp_process_up", "1 while the program runs.", labels=["process"])
        queued = GaugeMetricFamily("fastbgp_process_queued_events", "Events waiting to be written to the program.",
                                   labels=["process"])
        counters = [(CounterMetricFamily("fastbgp_process_" + name, text, labels=["process"]), field)
                    for name, text, field in (
                        ("events", "Events queued for the program.", "events"),
                        ("events_dropped", "Events dropped because the program read too slowly.", "dropped"),
                        ("overflows", "Times the program's event queue was full.", "overflows"),
                        ("dumps", "Table dumps written to the program.", "dumps"),
                        ("restarts", "Times the program was restarted.", "restarts"),
                        ("updates_folded", "Received UPDATEs written in coalesced lines.", "updates_folded"),
                        ("update_lines", "Update lines written for the coalesced UPDATEs.", "update_lines"),
                        ("runs_unfolded", "Coalescing runs written one line per UPDATE (a prefix repeated).",
                         "runs_unfolded"))]
        commands = CounterMetricFamily("fastbgp_process_commands", "Command lines read from the program.",
                                       labels=["process", "result"])
        for p in progs:
            up.add_metric([p.name], 0 if p.pid is None else 1)
            queued.add_metric([p.name], p.queued)
            for family, field in counters:
                family.add_metric([p.name], getattr(p, field))
            commands.add_metric([p.name, "ok"], p.commands - p.errors)
            commands.add_metric([p.name, "error"], p.errors)
        yield up
        yield queued
        for family, _field in counters:
            yield family
        yield commands

    def _rpki(self):
        """VRPs per family and every post-policy path per RFC 6811 state,
        in all and per neighbour and family (counters the RIB keeps per
        path, read here, never recounted), when [rpki] is configured."""
        info = getattr(self.control, "rpki_info", None)
        if info is None:
            return
        try:
            r = info()
        except Exception:
            log.exception("metrics: reading the RPKI state failed")
            return
        if not r.enabled:
            return
        vrps = GaugeMetricFamily("fastbgp_rpki_vrps", "Validated ROA payloads in use.", labels=["family"])
        for fam, n in sorted(r.vrps.items()):
            vrps.add_metric([fam], n)
        yield vrps
        aspas = GaugeMetricFamily("fastbgp_rpki_aspas", "ASPA customer records in use.")
        aspas.add_metric([], r.aspas)
        yield aspas
        routes = GaugeMetricFamily("fastbgp_rpki_routes", "Adj-RIB-In paths (post-policy, every path) per RFC "
                                   "6811 validation state.", labels=["state"])
        for state, n in sorted(r.routes.items()):
            routes.add_metric([state], n)
        yield routes
        per = GaugeMetricFamily("fastbgp_rpki_neighbor_routes", "Adj-RIB-In paths (post-policy) of a neighbour "
                                "per family and RFC 6811 validation state.", labels=["neighbor", "family", "state"])
        for row in r.neighbors:
            for state, n in (("valid", row.valid), ("invalid", row.invalid), ("not-found", row.not_found)):
                per.add_metric([row.address, row.family, state], n)
        yield per
        up = GaugeMetricFamily("fastbgp_rpki_cache_up", "1 when the RTR session to the cache is up.",
                               labels=["cache"])
        serial = GaugeMetricFamily("fastbgp_rpki_cache_serial", "Serial of the cache's last End of Data.",
                                   labels=["cache"])
        for c in r.caches:
            name = "%s:%d" % (c.address, c.port)
            up.add_metric([name], 1 if c.state == "up" else 0)
            if c.serial is not None:
                serial.add_metric([name], c.serial)
        yield up
        yield serial

    def _global(self):
        info = getattr(self.control, "global_info", None)
        if info is None:
            return
        try:
            g = info()
        except Exception:
            log.exception("metrics: reading the daemon's global counters failed")
            return
        refused = CounterMetricFamily("fastbgp_connections_refused_unknown",
                                      "Connections refused from addresses with no neighbour (RFC 4271 §8).")
        refused.add_metric([], g.refused_unknown)
        yield refused

    def _neighbors(self, neighbors):
        sessions = GaugeMetricFamily("fastbgp_sessions", "Neighbours in each BGP FSM state.", labels=["state"])
        counts = dict.fromkeys(STATES, 0)
        for n in neighbors:
            counts[n.state] = counts.get(n.state, 0) + 1
        for state, count in counts.items():
            sessions.add_metric([state], count)
        yield sessions

        nup = GaugeMetricFamily("fastbgp_neighbor_up", "1 when the session is Established.",
                                labels=["neighbor", "peer_as"])
        admin = GaugeMetricFamily("fastbgp_neighbor_admin_down", "1 when the neighbour is administratively disabled.",
                                  labels=["neighbor"])
        uptime = GaugeMetricFamily("fastbgp_neighbor_uptime_seconds", "Seconds Established (0 when down).",
                                   labels=["neighbor"])
        estab = CounterMetricFamily("fastbgp_neighbor_established", "Times the session reached Established.",
                                    labels=["neighbor"])
        sent = CounterMetricFamily("fastbgp_messages_sent", "BGP messages sent, by type.", labels=["neighbor", "type"])
        recv = CounterMetricFamily("fastbgp_messages_received", "BGP messages received, by type.",
                                   labels=["neighbor", "type"])
        disc = CounterMetricFamily("fastbgp_messages_discarded",
                                   "Messages received that had no effect (families not negotiated...).",
                                   labels=["neighbor"])
        oor = CounterMetricFamily("fastbgp_neighbor_out_of_resources",
                                  "Sessions ended because the peer did not drain its output queue "
                                  "(Cease / Out of Resources, RFC 4486 subcode 8).", labels=["neighbor"])
        p_rx = GaugeMetricFamily("fastbgp_prefixes_received", "Paths in the Adj-RIB-In (post-policy).",
                                 labels=["neighbor"])
        p_acc = GaugeMetricFamily("fastbgp_prefixes_accepted", "Received paths selected best in the Loc-RIB.",
                                  labels=["neighbor"])
        p_tx = GaugeMetricFamily("fastbgp_prefixes_advertised", "Paths in the Adj-RIB-Out.", labels=["neighbor"])
        refused = CounterMetricFamily("fastbgp_neighbor_connections_refused",
                                      "Connections from the neighbour's address refused (while Idle, or the "
                                      "losing side of a collision, RFC 4271 §6.8).", labels=["neighbor"])
        half_open = CounterMetricFamily("fastbgp_neighbor_half_open_closed",
                                        "Connections from the neighbour's address closed before their OPEN "
                                        "to make room for a newer one.", labels=["neighbor"])
        handled = CounterMetricFamily("fastbgp_update_errors_handled",
                                      "UPDATEs whose errors were handled without a session reset (RFC 7606).",
                                      labels=["neighbor", "action"])
        own_nh = CounterMetricFamily("fastbgp_prefixes_own_next_hop",
                                     "Prefixes ignored because their next hop is our own address (RFC 4271 §6.3).",
                                     labels=["neighbor"])
        rs_nh = CounterMetricFamily("fastbgp_route_server_next_hop_rejected",
                                    "Attribute sets of a route-server client rejected by the next-hop check "
                                    "(not the client's own address nor one of its route-server-next-hops).",
                                    labels=["neighbor"])
        for n in neighbors:
            a = n.address
            nup.add_metric([a, str(n.peer_as)], 1 if n.state == "established" else 0)
            admin.add_metric([a], 1 if n.admin_down else 0)
            uptime.add_metric([a], n.uptime or 0.0)
            estab.add_metric([a], n.established_count)
            c = n.counters
            for t in MESSAGE_TYPES:
                sent.add_metric([a, t], getattr(c, "sent_" + t))
                recv.add_metric([a, t], getattr(c, "received_" + t))
            disc.add_metric([a], c.received_discarded)
            oor.add_metric([a], c.out_of_resources)
            p_rx.add_metric([a], n.prefixes_received)
            p_acc.add_metric([a], n.prefixes_accepted)
            p_tx.add_metric([a], n.prefixes_advertised)
            refused.add_metric([a], c.refused)
            half_open.add_metric([a], c.half_open_closed)
            handled.add_metric([a, "treat-as-withdraw"], c.treat_as_withdraw)
            handled.add_metric([a, "attribute-discard"], c.attribute_discard)
            own_nh.add_metric([a], c.own_next_hop)
            rs_nh.add_metric([a], c.rs_next_hop_rejected)
        yield from (nup, admin, uptime, estab, sent, recv, disc, oor, p_rx, p_acc, p_tx, refused, half_open,
                    handled, own_nh, rs_nh)

    def _rib(self, summary):
        prefixes = GaugeMetricFamily("fastbgp_rib_prefixes", "Prefixes in the Loc-RIB.", labels=["family"])
        paths = GaugeMetricFamily("fastbgp_rib_paths", "Paths in the Loc-RIB.", labels=["family"])
        attrs = GaugeMetricFamily("fastbgp_rib_attribute_sets", "Distinct interned attribute sets.", labels=["family"])
        for s in summary:
            prefixes.add_metric([s.family], s.prefixes)
            paths.add_metric([s.family], s.paths)
            attrs.add_metric([s.family], s.attribute_sets)
        yield from (prefixes, paths, attrs)


def make_registry(control: ctl.Control, process: bool = True) -> CollectorRegistry:
    """A registry with the control collector, the latency histogram and
    (``process``) prometheus_client's process/platform/GC collectors."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ControlCollector(control))
    registry.register(UPDATE_LATENCY)
    registry.register(BMP_STATION_DROPS)
    if process:
        for c in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            try:
                registry.register(c)
            except ValueError:
                pass
    return registry


class MetricsServer:
    """``GET /metrics`` on ``listen`` ("addr:port", "[v6]:port" or
    (addr, port); port 0 picks a free one, see :attr:`address`)."""

    def __init__(self, control: ctl.Control, listen):
        self.control = control
        self.listen = listen
        self.registry = make_registry(control)
        self.address: Optional[tuple] = None
        self._runner = None
        self._server = None  # the asyncio server listening on the bound socket

    async def _metrics(self, request):
        # generate_latest runs the collectors right here, on the loop thread.
        return web.Response(body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _index(self, request):
        return web.Response(text="fastbgp metrics: see /metrics\n")

    async def start(self) -> "MetricsServer":
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/", self._index)
        sock = bind_tcp(self.listen)
        self.address = sock.getsockname()[:2]
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        try:
            await runner.setup()
            self._runner = runner
            self._server = await serve_runner(runner, sock, Guard())
        except BaseException:
            # Failed or cancelled after binding: nothing may stay bound.
            sock.close()
            await self.stop()
            raise
        log.info("metrics on http://%s:%d/metrics", *self.address)
        return self

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self):
        return await self.start()

    async def __aexit__(self, *exc):
        await self.stop()


async def serve(control: ctl.Control, listen) -> Optional[MetricsServer]:
    """Start the metrics listener (``global.metrics.listen``); None when
    ``listen`` is None (metrics off)."""
    if listen is None:
        return None
    return await MetricsServer(control, listen).start()
