"""MRT (RFC 6396): reading, writing and bgpdump-compatible text.

Modules:

* ``records.py``: type and subtype numbers, their names, and the record
  types (msgspec Structs) shared by reading and writing;
* ``reader.py``: ``MrtReader``, the streaming reader (gzip, bzip2, xz);
  re-exports the record vocabulary it yields;
* ``writer.py``: record encoders, ``MrtWriter`` and ``RotatingMrtWriter``;
* ``dump.py``: bgpdump's ``-m`` one-line format and JSON lines.

The reader and the writer both import ``records``, never each other.

May import: ``fastbgp.wire``, the standard library and msgspec.
"""
