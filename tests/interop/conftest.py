"""pytest wiring for the interop tests (real BGP daemons in namespaces)."""

import os
import subprocess

import pytest

from fastbgp.testing import lab as _lab
from fastbgp.testing.daemonlab import require  # noqa: F401  (imported from here by the interop tests)


def pytest_configure(config):
    # Registered here (not only in pyproject.toml) so `-m interop` and
    # --strict-markers work whatever the project-level config says.
    config.addinivalue_line(
        "markers",
        "interop: runs real BGP daemons (bird2, gobgpd, frr, exabgp, openbgpd) in network namespaces; "
        "needs root and .ci/install-peers.sh",
    )


def lab_namespaces(prefix: str) -> list:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [l.split()[0] for l in out.splitlines() if l.startswith(prefix)]


@pytest.fixture
def lab():
    """A started Lab; after the test, asserts that it left nothing behind."""
    require()
    with _lab.Lab() as l:
        yield l
    leftovers = lab_namespaces(l.prefix)
    assert not leftovers, f"lab namespaces not deleted: {leftovers}"
    alive = [p.pid for p in l._procs if p.poll() is None]
    assert not alive, f"lab processes still running: {alive}"
    if not l.keep_tmp:
        assert not os.path.exists(l.tmpdir), "lab temp dir not removed"
