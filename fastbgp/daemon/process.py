"""The ``fastbgp daemon -c FILE`` process: logging, the daemon, the API and
metrics listeners, signals (SIGHUP reloads, SIGTERM and SIGINT stop), and
the event loop (uvloop when installed).

Owns: :func:`run_daemon` (the coroutine, usable from tests and benches)
and :func:`main_daemon` (the CLI entry point).  Calls: the configuration
loader, :class:`fastbgp.daemon.core.Daemon`, :mod:`fastbgp.control.api`,
:mod:`fastbgp.control.metrics` and :mod:`fastbgp.control.logs`.
Called by: the CLI (``fastbgp daemon``), tests and benches.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import sys
from typing import Optional

from fastbgp.daemon.common import GC_THRESHOLDS, handled_signals, loop_factory
from fastbgp.daemon.core import Daemon, preload
from fastbgp.config.checks import load_config
from fastbgp.config.errors import ConfigError

log = logging.getLogger("fastbgp.daemon")


def _setup_logs(level, json):
    try:
        from fastbgp.control import logs

        logs.setup(level=level, json=json)
    except ImportError:  # pragma: no cover
        logging.basicConfig(level=level.upper())


class _Servers:
    """The API and metrics listeners of one daemon, (re)started from a
    configuration.  A reload binds the new ones first (``prepare``, before
    anything else changes) and swaps them in only once all are bound."""

    def __init__(self, daemon, api: bool, metrics: bool):
        self.daemon = daemon
        self.api = api
        self.metrics = metrics
        self.running = {}
        self.retiring: set = set()  # stop() tasks of listeners a reload replaced

    async def start(self, c):
        if self.api:
            from fastbgp.control import api as api_mod

            self.running["api"] = await api_mod.serve(self.daemon, c.global_.api)
        if self.metrics and c.global_.metrics.listen:
            from fastbgp.control import metrics as metrics_mod

            self.running["metrics"] = await metrics_mod.serve(self.daemon, c.global_.metrics.listen)

    async def prepare(self, old, new):
        """The reload hook run before anything changes: binds the listeners
        ``new`` changes; ConfigError naming the setting if one cannot be
        bound (then nothing is left bound).  Returns (commit, abort)."""
        g_old, g_new = old.global_, new.global_
        pending = {}
        try:
            if self.api and g_old.api != g_new.api:
                from fastbgp.control import api as api_mod

                try:
                    srv = api_mod.ApiServer.from_config(self.daemon, g_new.api)
                except ValueError as exc:
                    raise ConfigError([("global.api", str(exc))]) from None
                try:
                    pending["api"] = srv.bind(previous=self.running.get("api"))
                except api_mod.ListenerError as exc:
                    raise ConfigError([(exc.setting, str(exc))]) from None
            if self.metrics and g_old.metrics != g_new.metrics and g_new.metrics.listen:
                from fastbgp.control import metrics as metrics_mod

                # Read-only and at a new address: it may serve at once.
                try:
                    pending["metrics"] = await metrics_mod.serve(self.daemon, g_new.metrics.listen)
                except (OSError, ValueError) as exc:
                    raise ConfigError([("global.metrics.listen", "cannot bind %s: %s"
                                        % (g_new.metrics.listen, getattr(exc, "strerror", None) or exc))]) from None
        except BaseException:
            await self._abort(pending)
            raise
        metrics_off = self.metrics and g_old.metrics != g_new.metrics and not g_new.metrics.listen

        async def commit():
            for name, srv in pending.items():
                if name == "api":
                    await srv.start()  # on the sockets bound above
                old_srv, self.running[name] = self.running.get(name), srv
                self._retire(name, old_srv)
            if metrics_off:
                self._retire("metrics", self.running.pop("metrics", None))

        async def abort():
            await self._abort(pending)

        return commit, abort

    async def _abort(self, pending):
        for name, srv in pending.items():
            if name == "api":
                srv.unbind()
            else:
                await srv.stop()

    def _retire(self, name, srv):
        # In the background: the reload may be a request this very server
        # is answering, which its stop would wait for (and then cancel).
        if srv is not None:
            task = asyncio.get_running_loop().create_task(self._stop_server(name, srv))
            self.retiring.add(task)
            task.add_done_callback(self.retiring.discard)

    async def _stop_server(self, name, srv):
        try:
            await srv.stop()
        except Exception:
            log.exception("stopping the %s listener failed", name)

    async def stop(self):
        for name in ("api", "metrics"):
            s = self.running.pop(name, None)
            if s is not None:
                await self._stop_server(name, s)
        if self.retiring:
            await asyncio.gather(*list(self.retiring), return_exceptions=True)


async def run_daemon(config_path, *, log_level: Optional[str] = None, log_json: Optional[bool] = None,
                     api: bool = True, metrics: bool = True, ready=None, stop_event: Optional[asyncio.Event] = None,
                     dual_stack: bool = False, config=None) -> int:
    """Run ``fastbgp daemon -c config_path`` until SIGTERM/SIGINT (or
    ``stop_event``).  ConfigError propagates before anything starts.
    ``log_level``/``log_json`` override ``[global.log]``; ``api``/``metrics``
    False skip those listeners; ``ready(daemon)`` is called once running.
    SIGHUP reloads the file (a bad file is logged and changes nothing).
    ``config``: the file, loaded already (``run_process``)."""
    cfg = load_config(config_path) if config is None else config
    _setup_logs(log_level or cfg.global_.log.level, cfg.global_.log.json if log_json is None else log_json)
    gc_before = gc.get_threshold()
    gc.set_threshold(*GC_THRESHOLDS)
    try:
        return await _run(cfg, config_path, log_level, log_json, api, metrics, ready, stop_event, dual_stack)
    finally:
        gc.set_threshold(*gc_before)  # as it was: tests run daemons inside the test process


async def _run(cfg, config_path, log_level, log_json, api, metrics, ready, stop_event, dual_stack):
    loop = asyncio.get_running_loop()
    daemon = Daemon(cfg, config_path, dual_stack=dual_stack)
    await daemon.start()
    servers = _Servers(daemon, api, metrics)

    async def on_reload(old, new, d):
        g_old, g_new = old.global_, new.global_
        if g_old.log != g_new.log and log_level is None:
            try:
                from fastbgp.control import logs

                logs.setup(level=g_new.log.level, json=g_new.log.json if log_json is None else log_json)
            except ImportError:  # pragma: no cover
                pass

    daemon.on_reload.append(on_reload)
    daemon.on_prepare_reload.append(servers.prepare)
    try:
        await servers.start(cfg)
    except BaseException:
        await servers.stop()
        await daemon.stop()
        raise
    stop = stop_event or asyncio.Event()
    try:
        with handled_signals(loop, daemon, stop):
            if ready is not None:
                ready(daemon)
            await stop.wait()
    finally:
        await servers.stop()
        await daemon.stop(message="daemon shutting down")
    return 0


def prepare_process(config_path, *, log_level: Optional[str] = None, log_json: Optional[bool] = None):
    """What ``fastbgp daemon`` does before its event loop runs: the
    configuration loaded (ConfigError), and with ``workers`` above 1 the
    workers forked (fastbgp.daemon.spawn: only safe before the loop runs).
    One process all the same when the configuration uses what workers
    cannot share yet (WARNING with the reasons).  Returns (configuration,
    workers or None); in a forked worker it never returns."""
    from fastbgp.daemon import front

    cfg = load_config(config_path)
    n = front.worker_count(cfg)
    if n <= 1:
        return cfg, None
    level = log_level or cfg.global_.log.level
    as_json = cfg.global_.log.json if log_json is None else log_json
    _setup_logs(level, as_json)
    why = front.single_reasons(cfg)
    if why:
        log.warning("workers = %d asked, running in one process: %s cannot be shared by workers yet",
                    n, ", ".join(why))
        return cfg, None
    from fastbgp.daemon import spawn

    preload(cfg)
    return cfg, spawn.start_workers(os.path.abspath(config_path), n, log_level=level, log_json=as_json, config=cfg)


async def run_process(config_path, cfg, workers, *, log_level: Optional[str] = None,
                      log_json: Optional[bool] = None) -> int:
    """The ``fastbgp daemon`` process once :func:`prepare_process` ran: one
    daemon (``run_daemon``) or the front of ``workers``."""
    if workers is not None:
        from fastbgp.daemon import front

        return await front.run_front(cfg, config_path, workers)
    return await run_daemon(config_path, log_level=log_level, log_json=log_json, config=cfg)


def main_daemon(args) -> int:
    """``fastbgp daemon``: ``args.config`` (path); optional ``args.log_level``,
    ``args.log_json``.  Runs on uvloop when installed, until signalled; exit
    status 2 on a configuration error."""
    log_level, log_json = getattr(args, "log_level", None), getattr(args, "log_json", None)
    factory = loop_factory()  # imported before the workers are forked: theirs too
    workers = None
    try:
        cfg, workers = prepare_process(args.config, log_level=log_level, log_json=log_json)
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(run_process(args.config, cfg, workers, log_level=log_level, log_json=log_json))
    except ConfigError as exc:
        print("fastbgp: configuration error in %s:\n%s" % (exc.source, exc), file=sys.stderr)
        return 2
    except OSError as exc:
        print("fastbgp: %s" % exc, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        if workers is not None:
            # Normally done by the front already; the workers see their
            # channels close and stop on their own.
            workers.remove()
