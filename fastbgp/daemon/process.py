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
import logging
import signal
import sys
from typing import Optional

from fastbgp.daemon.core import Daemon
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
    configuration."""

    def __init__(self, daemon, api: bool, metrics: bool):
        self.daemon = daemon
        self.api = api
        self.metrics = metrics
        self.running = {}

    async def start(self, c):
        if self.api:
            from fastbgp.control import api as api_mod

            self.running["api"] = await api_mod.serve(self.daemon, c.global_.api)
        if self.metrics and c.global_.metrics.listen:
            from fastbgp.control import metrics as metrics_mod

            self.running["metrics"] = await metrics_mod.serve(self.daemon, c.global_.metrics.listen)

    async def stop(self):
        for name in ("api", "metrics"):
            s = self.running.pop(name, None)
            if s is not None:
                try:
                    await s.stop()
                except Exception:
                    log.exception("stopping the %s listener failed", name)


def _install_signals(loop, daemon, stop) -> list:
    """SIGHUP reloads (a bad file is logged and changes nothing); SIGTERM and
    SIGINT set ``stop``.  Returns the signals installed (none off the main
    thread)."""

    async def sighup():
        try:
            await daemon.reload()
        except ConfigError as exc:
            log.error("reload refused, configuration unchanged:\n%s", exc)
        except Exception:
            log.exception("reload failed")

    installed = []
    try:
        loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(sighup()))
        installed.append(signal.SIGHUP)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
    except (NotImplementedError, RuntimeError, ValueError):  # not the main thread
        pass
    return installed


async def run_daemon(config_path, *, log_level: Optional[str] = None, log_json: Optional[bool] = None,
                     api: bool = True, metrics: bool = True, ready=None, stop_event: Optional[asyncio.Event] = None,
                     dual_stack: bool = False) -> int:
    """Run ``fastbgp daemon -c config_path`` until SIGTERM/SIGINT (or
    ``stop_event``).  ConfigError propagates before anything starts.
    ``log_level``/``log_json`` override ``[global.log]``; ``api``/``metrics``
    False skip those listeners; ``ready(daemon)`` is called once running.
    SIGHUP reloads the file (a bad file is logged and changes nothing)."""
    cfg = load_config(config_path)
    _setup_logs(log_level or cfg.global_.log.level, cfg.global_.log.json if log_json is None else log_json)
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
        if g_old.api != g_new.api or g_old.metrics != g_new.metrics:
            await servers.stop()
            await servers.start(new)

    daemon.on_reload.append(on_reload)
    try:
        await servers.start(cfg)
    except BaseException:
        await servers.stop()
        await daemon.stop()
        raise
    stop = stop_event or asyncio.Event()
    installed = _install_signals(loop, daemon, stop)
    if ready is not None:
        ready(daemon)
    try:
        await stop.wait()
    finally:
        for sig in installed:
            try:
                loop.remove_signal_handler(sig)
            except Exception:
                pass
        await servers.stop()
        await daemon.stop(message="daemon shutting down")
    return 0


def main_daemon(args) -> int:
    """``fastbgp daemon``: ``args.config`` (path); optional ``args.log_level``,
    ``args.log_json``.  Runs on uvloop when installed, until signalled; exit
    status 2 on a configuration error."""
    try:
        import uvloop

        loop_factory = uvloop.new_event_loop
    except ImportError:  # pragma: no cover
        loop_factory = None  # asyncio's default loop
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            return runner.run(run_daemon(args.config, log_level=getattr(args, "log_level", None),
                                         log_json=getattr(args, "log_json", None)))
    except ConfigError as exc:
        print("fastbgp: configuration error in %s:\n%s" % (exc.source, exc), file=sys.stderr)
        return 2
    except OSError as exc:
        print("fastbgp: %s" % exc, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
