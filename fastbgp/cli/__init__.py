"""The ``fastbgp`` command: argument parsing and the client verbs
(``main.py``), ``fastbgp mrt`` (``mrt.py``) and ``fastbgp demo``
(``demo.py``).

May import: any package of fastbgp; nothing imports the CLI.
"""
