"""The pytest plugin of tests/ and bench/ (``pytest_plugins =
["fastbgp.testing.plugin"]`` in their conftest.py).

Implementation fan-out: every compiled module has a pure-Python twin with
identical behaviour, and a test asking for ``codec`` (``rib_impl``, ``gen``,
``vrp_impl``)
runs once on each, ids ``cython`` / ``python``.  ``both_codecs``
(``both_ribs``, ``both_gens``, ``both_vrps``) give the (compiled, twin) pair for parity
tests.  The compiled one is skipped only when
FASTBGP_NO_EXTENSIONS is set; otherwise a missing extension fails, so a
broken build can never pass as "twin only" (see test_codec_selection.py).

Event-loop fan-out: a test asking for ``run`` (or ``loop_factory``) runs once
on asyncio's own loop and once on uvloop, ids ``asyncio`` / ``uvloop``;
``run(coro, timeout=...)`` runs a coroutine on the selected loop.  The
fan-out is module-scoped so a module-scoped fixture built on it (a daemon in
a thread) is started once per loop, not once per test.  uvloop is skipped
when it is not installed.
"""

import functools
import importlib

import pytest

from fastbgp.testing import CORPORA, loops, net

IMPLEMENTATIONS = ("cython", "python")


def implementation(selector, name):
    """Implementation ``name`` ("cython" or "python") from ``selector`` (a
    module with the ``load(name)`` / ``NO_EXTENSIONS`` contract of
    fastbgp.implementation).  The one place that decides when the compiled
    one may be skipped."""
    if name == "cython" and selector.NO_EXTENSIONS:
        pytest.skip("FASTBGP_NO_EXTENSIONS is set: compiled %s deliberately not used" % selector.__name__)
    return selector.load(name)


def _fan_out(name, module):
    """Fixture ``name``: each implementation of selector ``module`` in turn."""

    @pytest.fixture(name=name, params=IMPLEMENTATIONS)
    def one(request):
        return implementation(importlib.import_module(module), request.param)

    return one


def _pair(name, module):
    """Fixture ``name``: (compiled, twin) of selector ``module``."""

    @pytest.fixture(name=name)
    def both():
        selector = importlib.import_module(module)
        return implementation(selector, "cython"), implementation(selector, "python")

    return both


codec = _fan_out("codec", "fastbgp.wire.codec")
both_codecs = _pair("both_codecs", "fastbgp.wire.codec")
rib_impl = _fan_out("rib_impl", "fastbgp.rib")
both_ribs = _pair("both_ribs", "fastbgp.rib")
gen = _fan_out("gen", "fastbgp.loadtest.gen")
both_gens = _pair("both_gens", "fastbgp.loadtest.gen")
mrt_dump_impl = _fan_out("mrt_dump_impl", "fastbgp.mrt.dumpimpl")
both_mrt_dumps = _pair("both_mrt_dumps", "fastbgp.mrt.dumpimpl")
vrp_impl = _fan_out("vrp_impl", "fastbgp.rpki.vrp")
both_vrps = _pair("both_vrps", "fastbgp.rpki.vrp")
lane_impl = _fan_out("lane_impl", "fastbgp.daemon.lanestep")
both_lanes = _pair("both_lanes", "fastbgp.daemon.lanestep")


@pytest.fixture(scope="module", params=loops.LOOPS)
def loop_name(request):
    if not loops.available(request.param):
        pytest.skip("%s is not installed" % request.param)
    return request.param


@pytest.fixture(scope="module")
def loop_factory(loop_name):
    """For asyncio.Runner(loop_factory=...): None (asyncio) or uvloop's."""
    return loops.factory(loop_name)


@pytest.fixture
def run(loop_factory):
    """``run(coro, timeout=...)`` on the loop of this fan-out."""
    return functools.partial(loops.run, loop_factory=loop_factory)


@pytest.fixture(name="free_port")
def free_port_fixture():
    """``free_port(host="127.0.0.1")`` -> a port nobody listens on."""
    return net.free_port


@pytest.fixture(scope="session")
def corpora():
    """The shared corpora folder, skipped with the reason when absent."""
    if not CORPORA.is_dir():
        pytest.skip("shared corpora folder %s is absent (it sits beside the clone in CI)" % CORPORA)
    return CORPORA
