"""The session layer: one BGP session per neighbour over TCP.

Modules and what each owns:

* ``fsm.py``: the RFC 4271 §8 state machine (pure transitions) and the §6.8
  collision rule.
* ``protocol.py``: the asyncio side of a session: ``Connection`` (framing,
  read budget, write back-pressure) and ``Session`` (one FSM, its timers,
  the OPEN exchange), calling back its owner through ``SessionOwner``.
* ``transport.py``: sockets with MD5 (RFC 2385), TTL and GTSM (RFC 5082).
* ``listeners.py``: the listening sockets (``ListenerManager``).
* ``counters.py``: per-neighbour message and session counters.
* ``speaker.py``: the library entry point ``Speaker`` and ``Neighbor``, the
  neighbour's configuration (``NeighborConfig``, ``GracefulRestartConfig``)
  and, for now, the address-family names (``parse_family``,
  ``family_name``).  ``Neighbor`` composes the collaborators below.
* ``sink.py``: ``RouteSink``, the interface a neighbour hands its received
  routes and session events to (the library's and the daemon's RIBs plug
  in here).
* ``adj_rib_in.py``: ``AdjRibIn``, the library's default sink: a dict
  Adj-RIB-In per neighbour, stale routes, the prefix limit check.
* ``adj_rib_out.py``: ``RibOut`` (locally originated routes), ``Batch`` and
  ``AdjRibOut`` (a neighbour's out-queue and the sender task).
* ``routes.py``: prefix keys, ``PathSpec`` and its attribute encoding,
  ``RouteAttributes`` and ``decode_path``.
* ``collision.py``: ``Sessions`` (a neighbour's main and colliding
  session, accepting connections, RFC 4271 §6.8) and ``CollisionRecord``.
* ``opening.py``: the capabilities we send and the checks of the peer's
  OPEN (RFC 4271 §6.2).
* ``graceful_restart.py``: ``GracefulRestart``, the receiving-speaker
  decisions and timers of RFC 4724 / RFC 8538.
* ``cease.py``: Cease NOTIFICATIONs (RFC 4486, RFC 8538 Hard Reset, RFC 9003
  shutdown communication) and ``PrefixLimit``.
* ``waiters.py``: ``Subscribers``, ``Waiters`` and ``StateChange``.

May import: ``fastbgp.wire`` and the standard library.  Never the RIB, the
daemon, the control plane or the CLI: those plug in through the interfaces
this package defines (``RouteSink``, ``Speaker``'s ``neighbor_factory``,
``sink_factory`` and ``on_unknown_peer``, subscriptions).
"""
