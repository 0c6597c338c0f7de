"""``fastbgp daemon``: the speaker with a RIB, policies, update groups,
route reflection and route-server mode, MRT dumps and reload (``core.py``).

May import: every layer below it (``wire``, ``session``, ``config``,
``rib``, ``mrt``, ``control``).  Only the CLI imports the daemon.
"""
