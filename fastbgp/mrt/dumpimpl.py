"""The one import for the compiled ``-m`` fast path of ``fastbgp mrt dump``:
``fastbgp.mrt._dump`` when it is built, else its pure-Python twin
``fastbgp.mrt._dump_py`` with identical behaviour (FASTBGP_NO_EXTENSIONS=1
forces the twin), chosen like fastbgp.wire.codec chooses.
"""

from fastbgp import implementation as _select

# The names every implementation provides.
API = ("IMPLEMENTATION", "format_run")

_select.export(globals(), "._dump", "._dump_py", "MRT dump", API)
