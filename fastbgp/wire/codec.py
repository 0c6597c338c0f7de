"""The one import the rest of fastbgp uses for wire encoding and decoding.

Loads the compiled ``fastbgp.wire._codec`` when it is built, else the pure-Python
twin ``fastbgp.wire._codec_py`` with identical behaviour.  FASTBGP_NO_EXTENSIONS=1
forces the twin.  ``IMPLEMENTATION`` says which one is in use.
"""

from fastbgp import implementation as _select

from fastbgp.wire.types import DEFAULT_CONTEXT, Context, ParsedOpen, ParsedUpdate  # noqa: F401

# The names every implementation provides; tests check both modules export them.
API = (
    "IMPLEMENTATION",
    "KEEPALIVE",
    "MessageReader",
    "take_run",
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
    "prefix_texts",
    "pack_prefixes",
    "attr_spans",
    "split_attrs",
    "decode_segments",
    "final_segment",
    "path_has",
    "attr_values",
    "add_members",
    "splice_attr",
    "replay_edits",
)

_select.export(globals(), "._codec", "._codec_py", "codec", API)
