"""One fixture fans both codec implementations out to every test that asks
for ``codec``: ids ``cython`` and ``python``.  The compiled one is skipped
only when FASTBGP_NO_EXTENSIONS is set; otherwise a missing extension fails
(see test_codec_selection.py)."""

import pathlib

import pytest

from fastbgp.wire import codec as _selector

IMPLEMENTATIONS = ["cython", "python"]
CORPORA = pathlib.Path(__file__).resolve().parents[2] / "shared" / "corpora"


def _load(name):
    if name == "cython" and _selector.NO_EXTENSIONS:
        pytest.skip("FASTBGP_NO_EXTENSIONS is set: compiled codec deliberately not used")
    return _selector.load(name)


@pytest.fixture(params=IMPLEMENTATIONS)
def codec(request):
    return _load(request.param)


@pytest.fixture
def both_codecs():
    """(compiled, twin) for parity tests."""
    return _load("cython"), _load("python")


@pytest.fixture(scope="session")
def corpora():
    if not CORPORA.is_dir():
        pytest.skip("shared corpora folder %s is absent (it sits beside the clone in CI)" % CORPORA)
    return CORPORA
