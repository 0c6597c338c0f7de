"""``fastbgp loadtest``: emulated BGP peers that blast pre-encoded tables at
a speaker under test, a monitor session that counts what it propagates,
and the figures (phase times, rates, canary latency, target CPU/RSS).

Modules: :mod:`.scenario` (TOML / flags), :mod:`.generator` (tables,
pre-encoded once on the compiled path, :mod:`._gen`), :mod:`.peer` (lean
sessions and the monitor), :mod:`.engine` (peer groups, worker
processes), :mod:`.runner` (phases, convergence), :mod:`.report` (JSON,
table, plot, merge), :mod:`.replay` (MRT), :mod:`.cli` (``add_parser``).
"""
