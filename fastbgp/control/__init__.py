"""The control plane: how operators and programs see and steer a daemon.

Owns the contract between a daemon and its clients (``contract.py``: the
``Control`` protocol and its msgspec structs, which validate requests), the
HTTP/JSON API server (``api.py``), Prometheus metrics (``metrics.py``), the
listening sockets both bind (``sockets.py``) and structured logging
(``logs.py``).

May import: ``fastbgp.wire``, ``fastbgp.config`` and the standard library.
It serves any object implementing ``contract.Control`` and never imports
the daemon.
"""
