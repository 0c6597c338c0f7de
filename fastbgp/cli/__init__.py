"""The ``fastbgp`` command: the parser and the client verbs (``main.py``),
what every client command shares -- connection options, the API client,
errors (``common.py``) --, ``fastbgp mrt`` (``mrt.py``) and ``fastbgp demo``
(``demo.py``).  ``main.py`` imports the subcommand modules; they import
``common.py``, never ``main.py``.

May import: any package of fastbgp; nothing imports the CLI.
"""
