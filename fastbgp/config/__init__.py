"""Configuration: the daemon's TOML file.

* ``schema.py``  the msgspec Structs a file decodes into, their value types,
                 the peer-group merge (``resolve_neighbor``)
* ``checks.py``  ``load_config``: parse, decode, resolve, semantic checks
* ``diff.py``    ``diff``: what a reload changes (``ConfigDiff``)
* ``errors.py``  ``ConfigError``, ``FieldError`` and ``explain``, the one
                 reader of msgspec's validation messages (also used by the
                 control plane for request bodies)

Pure data and validation: no I/O beyond reading the file it is given.

May import: ``fastbgp.wire`` and the standard library.  The RIB (policies),
the control plane and the daemon import it; it imports none of them.
"""
