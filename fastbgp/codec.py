"""The one import the rest of fastbgp uses for wire encoding and decoding.

Loads the compiled ``fastbgp._codec`` when it is built, else the pure-Python
twin ``fastbgp._codec_py`` with identical behaviour.  FASTBGP_NO_EXTENSIONS=1
forces the twin.  ``IMPLEMENTATION`` says which one is in use.
"""

import os

from .codec_types import DEFAULT_CONTEXT, Context, ParsedOpen, ParsedUpdate  # noqa: F401

# The names every implementation provides; tests check both modules export them.
API = (
    "IMPLEMENTATION",
    "KEEPALIVE",
    "MessageReader",
    "parse_header",
    "frame",
    "parse_open",
    "build_open",
    "parse_notification",
    "build_notification",
    "parse_route_refresh",
    "build_route_refresh",
    "parse_update",
    "pack_updates",
    "pack_withdraws",
    "build_eor",
    "count_prefixes",
    "unpack_prefixes",
    "pack_prefixes",
)

NO_EXTENSIONS = bool(os.environ.get("FASTBGP_NO_EXTENSIONS"))


def load(name):
    """The implementation module called ``name`` ("cython" or "python")."""
    if name == "cython":
        from . import _codec as mod
    elif name == "python":
        from . import _codec_py as mod
    else:
        raise ValueError("unknown codec implementation %r" % name)
    return mod


def _select():
    if not NO_EXTENSIONS:
        try:
            return load("cython")
        except ImportError:
            pass
    return load("python")


_impl = _select()
for _name in API:
    globals()[_name] = getattr(_impl, _name)
del _name
