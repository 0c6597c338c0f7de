"""The session layer: one BGP session per neighbour over TCP.

Owns the RFC 4271 §8 state machine (``fsm.py``, pure transitions), the
asyncio protocol and timers (``protocol.py``), sockets with MD5/TTL/GTSM
(``transport.py``), per-session counters (``counters.py``) and the library
entry point ``Speaker`` with its neighbours (``speaker.py``).

May import: ``fastbgp.wire`` and the standard library.  Never the RIB, the
daemon, the control plane or the CLI: those plug in through the interfaces
this package defines.
"""
