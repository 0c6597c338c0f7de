"""``fastbgp daemon``: the speaker with a RIB, policies, update groups,
route reflection and route-server mode, MRT dumps and reload.

Modules (each one's docstring states its contract: what it owns, what it
calls, who calls it):

* ``core``         :class:`Daemon`: shared state (config, policy engine,
                   attribute table, RIBs), lifecycle, wiring of the
                   collaborators below, the ``control.contract.Control``
                   façade
* ``neighbor``     the daemon's neighbours and speaker (sessions -> daemon)
* ``peers``        peer ids and sources, adding/removing neighbours, what a
                   session going up or down does to the RIBs
* ``importer``     received UPDATEs -> import policy -> Adj-RIB-In/Loc-RIB,
                   pre-policy copies, soft reconfiguration inbound
* ``plain_import`` the import verdict of a plain eBGP neighbour (loop check
                   and the chain's plan, no general walk)
* ``fastlane``     the importer's fast path for the commonest UPDATE of a
                   batch (one call instead of the general path's layers)
* ``lanestep``     its per-UPDATE step: compiled ``_lanestep.pyx``, twin
                   ``_lanestep_py.py``
* ``rpki_feed``    RPKI: VRP/ASPA sources, validation at import,
                   incremental re-validation
* ``bmp_feed``     ``[[bmp]]`` stations: what the daemon tells them
* ``processes``    ``[[processes]]``: ExaBGP-style programs, their events
                   and commands
* ``exporter``     update groups, joins and dumps, the export queue
* ``origination``  our own routes: configured, from the API, injected
* ``views``        read views for the control plane (neighbours, RIBs)
* ``events``       the watch stream (state, UPDATE and best-path events)
* ``trim``         a burst's freed heap returned once the daemon is quiet
* ``mrt_dumps``    ``global.mrt``: UPDATE dumps and TABLE_DUMP_V2 snapshots
* ``reload``       applying a new configuration to a running daemon
* ``process``      ``run_daemon`` / ``run_process`` / ``main_daemon``:
                   signals, API and metrics servers, the event loop, one
                   process or a front and its workers
* ``front``        ``workers = N``: the front process (listeners, dialing,
                   the merged API) and its N workers' lifecycle
* ``spawn``        the workers forked before the front's loop runs (their
                   imported modules shared copy-on-write), and watched
* ``relay``        one TCP session relayed to N workers, their messages
                   merged into one session
* ``worker``       a worker: a whole daemon keeping one prefix shard,
                   handed its sessions by the front
* ``common``       the routed families and helpers the modules share

May import: every layer below it (``wire``, ``session``, ``config``,
``rib``, ``rpki``, ``mrt``, ``control``, ``bmp``), ``heap`` and ``implementation``
(the lane step's compiled module or twin).  Only the CLI imports the daemon.
"""
