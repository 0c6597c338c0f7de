"""Which codec runs.  The compiled one must be in charge whenever it was not
deliberately disabled: a silent fall-back to the pure-Python twin would pass
every other test while running many times slower, so this file fails loudly
when the extension was not built or does not import."""

import os
import subprocess
import sys

import pytest

from fastbgp.wire import codec as selector
from fastbgp.wire.types import ParsedOpen, ParsedUpdate
from fastbgp.wire.errors import BGPError

NO_EXT = bool(os.environ.get("FASTBGP_NO_EXTENSIONS"))


@pytest.mark.skipif(NO_EXT, reason="FASTBGP_NO_EXTENSIONS is set: the twin is selected on purpose")
def test_compiled_codec_is_selected():
    try:
        import fastbgp.wire._codec as compiled
    except ImportError as exc:  # pragma: no cover - the failure this test exists for
        pytest.fail(
            "fastbgp.wire._codec did not import (%s): the Cython extension was not built. "
            "Run `pip install -e .` (or `python setup.py build_ext --inplace`) with Cython installed." % exc
        )
    assert compiled.IMPLEMENTATION == "cython"
    assert selector.IMPLEMENTATION == "cython", (
        "fastbgp.wire.codec fell back to the pure-Python twin although FASTBGP_NO_EXTENSIONS is unset: "
        "the compiled extension was not built or failed to load"
    )
    assert selector.NO_EXTENSIONS is False


@pytest.mark.skipif(NO_EXT, reason="FASTBGP_NO_EXTENSIONS is set: the twin is selected on purpose")
def test_selector_exports_the_compiled_functions():
    import fastbgp.wire._codec as compiled

    for name in selector.API:
        assert getattr(selector, name) is getattr(compiled, name), name


def _implementation_in_subprocess(env_value):
    env = dict(os.environ)
    env.pop("FASTBGP_NO_EXTENSIONS", None)
    if env_value is not None:
        env["FASTBGP_NO_EXTENSIONS"] = env_value
    out = subprocess.run(
        [sys.executable, "-c", "import fastbgp.wire.codec as c; print(c.IMPLEMENTATION, c.NO_EXTENSIONS)"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return out.stdout.split()


def test_no_extensions_env_forces_the_twin():
    assert _implementation_in_subprocess("1") == ["python", "True"]


@pytest.mark.skipif(NO_EXT, reason="FASTBGP_NO_EXTENSIONS is set: the compiled codec is not in use")
def test_default_subprocess_selects_compiled():
    assert _implementation_in_subprocess(None) == ["cython", "False"], "the compiled codec did not load in a fresh interpreter"


def test_no_extensions_in_this_process_means_python():
    if NO_EXT:
        assert selector.IMPLEMENTATION == "python"
        for name in selector.API:
            assert getattr(selector, name) is getattr(selector.load("python"), name), name


def test_api_is_complete(codec):
    missing = [name for name in selector.API if not hasattr(codec, name)]
    assert not missing, "%s lacks %s" % (codec.__name__, missing)


def test_implementation_names(codec, request):
    assert codec.IMPLEMENTATION == request.node.callspec.params["codec"]


def test_load_rejects_unknown_name():
    with pytest.raises(ValueError):
        selector.load("rust")


def test_keepalive_constant(codec):
    # RFC 4271 §4.4: a KEEPALIVE is the bare 19-octet header, type 4.
    assert codec.KEEPALIVE == b"\xff" * 16 + b"\x00\x13\x04"


def test_shared_result_and_error_types(codec):
    """Both implementations return the shared types from codec_types and
    raise fastbgp.wire.errors.BGPError, so their results compare equal."""
    assert type(codec.parse_update(b"\x00\x00\x00\x00")) is ParsedUpdate
    body = codec.build_open(65001, 90, 1)[19:]
    assert type(codec.parse_open(body)) is ParsedOpen
    with pytest.raises(BGPError):
        codec.parse_update(b"\x00")
