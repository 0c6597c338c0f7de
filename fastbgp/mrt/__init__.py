"""MRT (RFC 6396): streaming reader and writer (``reader.py``) and the
bgpdump-compatible text/JSON dump (``dump.py``).

May import: ``fastbgp.wire`` and the standard library.
"""
