"""``fastbgp loadtest``: emulated BGP peers that blast pre-encoded tables at
a speaker under test, a monitor session that counts what it propagates,
and the figures (phase times, rates, canary latency, target CPU/RSS).

Modules and what each owns:

* ``scenario.py``: the scenario (TOML file or flags), its checks.
* ``generator.py``: synthetic tables pre-encoded once and shared
  (``Stream``, ``TablePlan``), attribute blocks, canary prefixes.
* ``gen.py``: the selector of the generator hot paths (table generation
  and encoding, per-session patching, discard framing, prefix keys): the
  compiled ``_gen.pyx`` or its pure-Python twin ``_gen_py.py`` with
  identical output (FASTBGP_NO_EXTENSIONS=1 forces the twin).  Every other
  module goes through ``gen``, never ``_gen`` directly.
* ``peer.py``: lean load sessions (``LoadPeer``) and the monitor.
* ``engine.py``: peer groups, in process or in worker processes.
* ``runner.py``: phases, convergence, the ``Runner``.
* ``report.py``: the report (JSON, table, plot, merge).
* ``replay.py``: MRT replay through the emulated peers.
* ``selftarget.py``: a fastbgp Speaker set up as a pass-through target.
* ``procnet.py``: the target's receive queues from /proc/PID/net/tcp (did it
  read what its TCP acknowledged?).
* ``cli.py``: the ``fastbgp loadtest`` sub-command (``add_parser``).

May import: ``fastbgp.wire``, ``fastbgp.session``, ``fastbgp.config`` (its
field-naming error reader, for scenario files), ``fastbgp.mrt`` and
``fastbgp.implementation`` (plus the standard library, msgspec and rich;
uvloop and matplotlib when installed); the layers it may import never
import it.
"""
