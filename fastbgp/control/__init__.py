"""The control plane: how operators and programs see and steer a daemon.

Owns the contract between a daemon and its clients (``contract.py``: the
``Control`` protocol and its msgspec structs, which validate requests), the
HTTP/JSON API server (``api.py``), Prometheus metrics (``metrics.py``), the
listening sockets both bind (``sockets.py``), structured logging
(``logs.py``) and ExaBGP's process API spelling: its JSON/text encoders
(``exabgp_json.py``), the folding of UPDATE runs into fewer JSON lines
(``exabgp_coalesce.py``) and its text commands (``exabgp_commands.py``).
``fanout.py`` implements ``contract.Control`` over the APIs of the worker
daemons of ``workers = N`` (sharded RIBs, answers merged), for the front.

May import: ``fastbgp.wire``, ``fastbgp.config`` and the standard library.
It serves any object implementing ``contract.Control`` and never imports
the daemon.
"""
