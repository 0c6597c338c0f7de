"""BMP (BGP Monitoring Protocol, RFC 7854) client: the daemon as a monitored
router, reporting to monitoring stations.

Owns:

* ``messages``  the one BMP encoder: Initiation/Termination (RFC 7854 §4.3,
  §4.5), Peer Up/Down (§4.10, §4.9), Route Monitoring (§4.6) with the
  per-peer header flags of §4.2 and RFC 8671 (Adj-RIB-Out), the Loc-RIB
  instance of RFC 9069, Statistics Reports (§4.8).
* ``station``   one TCP connection per station: connect with exponential
  backoff, a bound on the bytes queued towards it (past it the station is
  dropped, counted, logged, and re-synced by a fresh dump on reconnect),
  back-pressure for the initial dump.

What to send and when (peer up/down, the UPDATEs, the dumps) is the
daemon's (``fastbgp.daemon.bmp_feed``), through its explicit observers.

May import: wire, config, session, rib, rpki (tests/test_architecture.py).
"""

from fastbgp.bmp.station import Station

__all__ = ["Station"]
