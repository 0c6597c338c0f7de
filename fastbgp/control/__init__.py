"""The control plane: how operators and programs see and steer a daemon.

Owns the contract between a daemon and its clients (``contract.py``: the
``Control`` protocol and its msgspec structs), the HTTP/JSON API server
(``api.py``), Prometheus metrics (``metrics.py``) and structured logging
(``logs.py``).

May import: ``fastbgp.wire``, ``fastbgp.config`` and the standard library.
It serves any object implementing ``contract.Control`` and never imports
the daemon.
"""
