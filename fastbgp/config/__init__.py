"""Configuration: the TOML schema as msgspec Structs, its semantic checks
and the diff a reload applies (``schema.py``).

Pure data and validation: no I/O beyond reading the file it is given.

May import: ``fastbgp.wire`` and the standard library.  The RIB (policies),
the control plane and the daemon import it; it imports none of them.
"""
