"""The one import the load tester uses for its generator hot paths (table
generation and encoding, per-session patching, discard framing, prefix
keys).

Loads the compiled ``fastbgp.loadtest._gen`` when it is built, else the
pure-Python twin ``fastbgp.loadtest._gen_py`` with identical behaviour
(much slower: fine for small tables and tests).  FASTBGP_NO_EXTENSIONS=1
forces the twin.  ``IMPLEMENTATION`` says which one is in use.
"""

from fastbgp import implementation as _select

# The names every implementation provides; tests check both modules export them.
API = (
    "IMPLEMENTATION",
    "gen_table",
    "patch_chunk",
    "chunk_bounds",
    "Skipper",
    "split_keys",
    "find_range",
    "packed_offset",
)

_select.export(globals(), "._gen", "._gen_py", "generator", API)
