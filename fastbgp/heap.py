"""Handing freed heap memory back to the system.

glibc's malloc keeps the pages of freed blocks for reuse: after a burst (a
full table arriving, an RTR full sync) the buffers, tuples and lists it
freed stay in the process's resident set until something reuses them,
which for a daemon holding its tables may be never.  :func:`trim` is
``malloc_trim(0)`` (man 3 malloc_trim): every free page of the heap goes
back (the allocated blocks stay where they are).  Elsewhere (no glibc) it
does nothing.

Used by fastbgp.rpki.sync after a large change and by the daemon once a
burst of imports has settled (fastbgp.daemon.trim).  May import: the
standard library only.  ctypes is loaded here, at import, so a daemon's
workers forked later share it with the front (fastbgp.daemon.spawn).
"""

import ctypes
import ctypes.util
import platform
import sys

_libc = None


def _malloc_trim():
    global _libc
    if _libc is None:
        if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
            _libc = False
        else:
            try:
                lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
                _libc = lib.malloc_trim
            except (OSError, AttributeError):  # no libc by that name, or no malloc_trim in it
                _libc = False
    return _libc


def trim() -> bool:
    """Return the heap's free pages to the system; True when malloc_trim ran
    (Linux with glibc), False where there is none."""
    f = _malloc_trim()
    if not f:
        return False
    f(0)
    return True
