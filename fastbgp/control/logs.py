"""Structured logging for the daemon: one line per event.

Two formats, chosen by ``global.log.json`` / ``--log-json``:

* ``key=value`` text, for people and grep::

      ts=2024-05-01T12:00:00.123Z level=info logger=fastbgp.session.speaker msg="session up" neighbor=192.0.2.2

* JSON lines, for log shippers::

      {"ts":"2024-05-01T12:00:00.123Z","level":"info","logger":"fastbgp.session.speaker","msg":"session up","neighbor":"192.0.2.2"}

Fields beyond the message come from ``extra=``
(``log.info("session up", extra={"neighbor": addr})``).  Whatever a record
holds -- a multi-line message, a traceback -- is escaped so that one event
never spans two lines: a line-oriented collector would otherwise split it
into several bogus events.

:func:`setup` installs the handler once (calling it again replaces it, so
tests and reloads do not stack handlers); :func:`set_level` changes the
level while running (the ``fastbgp log-level`` command reaches it through
``Control.set_log_level``).
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Optional, TextIO

import msgspec

from fastbgp.config.schema import LOG_LEVELS

__all__ = ["LEVELS", "setup", "set_level", "get_level", "KeyValueFormatter", "JsonFormatter", "parse_level", "level_name"]

# The names config.LogConfig accepts, lowest first.
LEVELS = {name: logging.getLevelNamesMapping()[name.upper()] for name in LOG_LEVELS}
_NAMES = {v: k for k, v in LEVELS.items()}
_ALIASES = {"warn": "warning", "fatal": "critical", "err": "error"}

# Third-party loggers that are chatty at debug and say nothing an operator of
# a BGP speaker needs; they stay at warning whatever the daemon's level.
_QUIET = ("asyncio", "aiohttp.access", "aiohttp.server", "aiohttp.web")

# Attributes every LogRecord has; anything else on a record came from extra=.
_STANDARD = frozenset(vars(logging.LogRecord("x", 0, "x", 0, "x", (), None))) | {"message", "asctime", "taskName"}

_HANDLER_MARK = "_fastbgp_handler"


def parse_level(level) -> int:
    """A level name (any case, "warn" too) or number -> logging level.
    ValueError naming the accepted names otherwise."""
    if isinstance(level, int) and not isinstance(level, bool):
        return level
    name = str(level).strip().lower()
    name = _ALIASES.get(name, name)
    if name not in LEVELS:
        raise ValueError("unknown log level %r (use one of %s)" % (str(level), ", ".join(LEVELS)))
    return LEVELS[name]


def level_name(levelno: int) -> str:
    """The name of a logging level ("warning"), lower case."""
    return _NAMES.get(levelno) or logging.getLevelName(levelno).lower()


def _timestamp(created: float) -> str:
    # UTC with milliseconds and a Z: sortable, and unambiguous across hosts.
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + ".%03dZ" % (int(created * 1000) % 1000)


def _fields(record: logging.LogRecord) -> dict:
    """The event as an ordered dict: ts, level, logger, msg, extras, exc."""
    out = {
        "ts": _timestamp(record.created),
        "level": level_name(record.levelno),
        "logger": record.name,
        "msg": record.getMessage(),
    }
    for key, value in record.__dict__.items():
        if key not in _STANDARD and not key.startswith("_"):
            out[key] = value
    if record.exc_info and record.exc_info[0] is not None:
        out["exc"] = logging.Formatter().formatException(record.exc_info)
    elif record.exc_text:
        out["exc"] = record.exc_text
    if record.stack_info:
        out["stack"] = record.stack_info
    return out


def _kv_value(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    text = value if isinstance(value, str) else str(value)
    # Quote only when needed, so the common case stays easy to read and grep;
    # escapes keep the event on one line.
    if text and not any(c in text for c in ' "=\\\n\r\t') and text.isprintable():
        return text
    esc = (
        text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    )
    return '"%s"' % "".join(c if c.isprintable() else ("\\x%02x" if ord(c) < 256 else "\\u%04x") % ord(c) for c in esc)


class KeyValueFormatter(logging.Formatter):
    """``ts=... level=... logger=... msg="..." key=value ...`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        return " ".join("%s=%s" % (k, _kv_value(v)) for k, v in _fields(record).items())


def _json_default(value):
    # Extras can be anything (an exception, an IPv4Address, a set): render
    # the unknown ones as text rather than failing the log call.
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=str)
    return str(value)


_ENCODER = msgspec.json.Encoder(enc_hook=_json_default)


class JsonFormatter(logging.Formatter):
    """One JSON object per line (msgspec escapes newlines inside strings)."""

    def format(self, record: logging.LogRecord) -> str:
        fields = _fields(record)
        try:
            return _ENCODER.encode(fields).decode()
        except (TypeError, ValueError, OverflowError):
            return _ENCODER.encode({k: v if isinstance(v, (str, int, float, bool, type(None))) else str(v)
                                    for k, v in fields.items()}).decode()


def _remove_handler():
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, _HANDLER_MARK, False):
            root.removeHandler(h)


def reset() -> None:
    """Undo :func:`setup`: drop its handler and give the process logging's
    defaults back (for embedding the daemon, and for tests)."""
    _remove_handler()
    logging.getLogger().setLevel(logging.WARNING)
    logging.getLogger("fastbgp").setLevel(logging.NOTSET)


def setup(level="info", json: bool = False, stream: Optional[TextIO] = None) -> logging.Handler:
    """Send every log record to ``stream`` (stderr by default) in the chosen
    format, at ``level``.  Replaces a handler installed by an earlier call
    and leaves other handlers alone (pytest's capture, for instance)."""
    _remove_handler()
    root = logging.getLogger()
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if json else KeyValueFormatter())
    setattr(handler, _HANDLER_MARK, True)
    root.addHandler(handler)
    for name in _QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)
    set_level(level)
    return handler


def set_level(level) -> str:
    """Change the level at run time; returns the previous level's name.
    The level is set on the root logger (so every fastbgp.* logger follows)
    and on ``fastbgp`` itself, in case something gave it its own level."""
    levelno = parse_level(level)
    previous = get_level()
    logging.getLogger().setLevel(levelno)
    logging.getLogger("fastbgp").setLevel(levelno)
    return previous


def get_level() -> str:
    """The effective level of the fastbgp loggers, as a name."""
    return level_name(logging.getLogger("fastbgp").getEffectiveLevel())
