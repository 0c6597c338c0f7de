"""The import fast lane's per-UPDATE step (``take`` for parsed UPDATEs,
``take_raw`` for bodies): the one import the daemon uses for it.

Loads the compiled ``fastbgp.daemon._lanestep`` when it is built, else the
pure-Python twin ``fastbgp.daemon._lanestep_py`` with identical behaviour
(the contract is in the twin's docstring).  FASTBGP_NO_EXTENSIONS=1 forces
the twin; ``IMPLEMENTATION`` says which one is in use.
"""

from fastbgp import implementation as _select

# The names every implementation provides; tests check both modules export them.
API = ("IMPLEMENTATION", "Step", "take", "take_raw", "raw_key")

_select.export(globals(), "._lanestep", "._lanestep_py", "import lane step", API)
