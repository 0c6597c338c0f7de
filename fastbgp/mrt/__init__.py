"""MRT (RFC 6396): reading, writing and bgpdump-compatible text.

Modules:

* ``records.py``: type and subtype numbers, their names, and the record
  types (msgspec Structs) shared by reading and writing;
* ``reader.py``: ``MrtReader``, the streaming reader (gzip, bzip2, xz);
  re-exports the record vocabulary it yields;
* ``writer.py``: record encoders, ``MrtWriter`` and ``RotatingMrtWriter``;
* ``dump.py``: bgpdump's ``-m`` one-line format and JSON lines;
* ``dumpimpl.py``: selects the compiled ``_dump`` (or its pure-Python twin
  ``_dump_py``) that prints runs of RIB and UPDATE records for ``-m``
  straight from their bytes;
* ``elements.py``: flat route elements (announce / withdraw / RIB) for
  analysts, built lazily from the records.

The reader and the writer both import ``records``, never each other.

May import: ``fastbgp.wire``, ``fastbgp.implementation`` (the selector),
the standard library and msgspec.
"""
