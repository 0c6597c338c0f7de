"""Builds fastbgp.wire._codec from Cython.  FASTBGP_NO_EXTENSIONS=1 skips the
compile and leaves the pure-Python twin in charge."""

import os

from setuptools import Extension, setup

ext_modules = []
if not os.environ.get("FASTBGP_NO_EXTENSIONS"):
    from Cython.Build import cythonize

    ext_modules = cythonize(
        [
            Extension(
                "fastbgp.wire._codec",
                ["fastbgp/wire/_codec.pyx"],
                extra_compile_args=["-O3"],
            ),
            # The RIB: C++ containers; cimports nlri_count from _codec.pxd.
            Extension(
                "fastbgp.rib._rib",
                ["fastbgp/rib/_rib.pyx"],
                language="c++",
                extra_compile_args=["-O3"],
            ),
            # RPKI: the VRP table (C++ hash map of VRP prefixes, RFC 6811).
            Extension(
                "fastbgp.rpki._vrp",
                ["fastbgp/rpki/_vrp.pyx"],
                language="c++",
                extra_compile_args=["-O3"],
            ),
            # The daemon's import lane: its per-UPDATE step.
            Extension(
                "fastbgp.daemon._lanestep",
                ["fastbgp/daemon/_lanestep.pyx"],
                extra_compile_args=["-O3"],
            ),
            # fastbgp mrt dump -m: RIB records straight from their bytes.
            Extension(
                "fastbgp.mrt._dump",
                ["fastbgp/mrt/_dump.pyx"],
                extra_compile_args=["-O3"],
            ),
            # fastbgp loadtest: table generation/encoding, per-session
            # patching, discard framing (needs a compiler with __int128).
            Extension(
                "fastbgp.loadtest._gen",
                ["fastbgp/loadtest/_gen.pyx"],
                extra_compile_args=["-O3"],
            ),
        ],
        compiler_directives={
            "language_level": "3",
            # Every index in _codec.pyx is checked against the buffer length
            # before use; these two are disabled per function, where proven.
            "boundscheck": True,
            "wraparound": True,
            "cdivision": True,
            "embedsignature": True,
        },
        annotate=bool(os.environ.get("FASTBGP_ANNOTATE")),
    )

setup(ext_modules=ext_modules)
