"""Test support shipped with the package, shared by tests/ and bench/.

Owns the pytest plugin (``plugin``: the compiled/twin implementation fan-out
fixtures, the asyncio/uvloop event-loop fan-out, ``free_port`` and the
``corpora`` folder), the one coroutine runner (``loops.run``), the one
free-port probe (``net.free_port``), the benchmark helpers of bench/
(``benchmarks``), the network-namespace lab for interop tests and benchmarks
against real BGP daemons (``lab``, stdlib only), the fastbgp daemon as a
process in a lab host (``daemonlab``: config from TOML text, log, API,
stop; used by the interop tests and ``faultlab``), a raw BGP peer that
misbehaves by timing for the lab's fault tests (``slowpeer``: slow reader,
non-reader, feeder with churn, session flapper), and where the shared test
corpora live (``CORPORA``).

May import any fastbgp layer; nothing in fastbgp imports it.  Register the
plugin from a conftest.py with ``pytest_plugins = ["fastbgp.testing.plugin"]``.
"""

import pathlib

# The shared corpora folder sits beside the clone (../shared/corpora); the
# package is installed editable from the clone, so this finds it.  It may be
# absent: the ``corpora`` fixture then skips.
CORPORA = pathlib.Path(__file__).resolve().parents[3] / "shared" / "corpora"
