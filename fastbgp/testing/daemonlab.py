"""The fastbgp daemon as a process in a namespace-lab host: the one way lab
tests and the fault lab start it, read its log and its API, and stop it.

``with LabDaemon(host, toml_text) as fb: ...`` writes the configuration to
``fastbgp.toml`` in the host's workdir, runs the daemon there (output to
``fastbgp.log`` beside it), prints the log's tail if the block raises and
stops the daemon's process group on the way out (the Lab would kill it by
pid anyway; stopping it first keeps its log complete).

Two ways to run it:

* default: :func:`fastbgp.daemon.process.run_daemon` with the HTTP API and
  the metrics listener off, at ``log_level``, on uvloop or asyncio
  (``loop``), as the interop tests always did;
* ``cli=True``: ``python -m fastbgp daemon -c fastbgp.toml`` exactly as an
  operator starts it (the API then listens where the configuration's
  ``[global.api]`` says: :meth:`LabDaemon.api_toml` gives the lines for a
  unix socket in the workdir that :meth:`LabDaemon.api` reads).

Also here: :func:`require` (skip a lab test unless root and the programs are
installed; tests/interop/conftest.py re-exports it) and :func:`neighbor_toml` / :func:`global_toml`, the
configuration blocks the lab tests repeat (:func:`ipv4_unicast_toml`: the neighbour lines that carry
IPv4 routes over an IPv6 session, for tests parametrized over ``lab.TRANSPORTS``; :func:`families_toml`
the same for any families), and :func:`transport_fixtures`, a module's IPv4 and IPv6 lab fixtures.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
from typing import Optional

from fastbgp.testing import lab as L

__all__ = ["LabDaemon", "ApiError", "require", "neighbor_toml", "global_toml", "ipv4_unicast_toml", "families_toml",
           "transport_fixtures", "workers_toml", "ROOT"]

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# argv: config path, log level, "uvloop" or "asyncio".
RUNNER = textwrap.dedent("""
    import sys
    from fastbgp.daemon.process import run_daemon
    main = run_daemon(sys.argv[1], api=False, metrics=False, log_level=sys.argv[2])
    if sys.argv[3] == "uvloop":
        import uvloop
        uvloop.run(main)
    else:
        import asyncio
        asyncio.run(main)
""")
STOP_GRACE = 10.0  # seconds between SIGTERM and SIGKILL when stopping the daemon
# The timers every lab neighbour gets: re-connect quickly once the peer
# daemon (started after fastbgp) listens.
LAB_TIMERS = "timers = { connect-retry = 2, idle-hold = 1 }"


def require(*needs) -> None:
    """pytest.skip (with the reason) unless running as root with ``ip`` and
    what ``needs`` names: program names, or lab daemon classes (their
    ``binaries``)."""
    import pytest

    if not L.is_root():
        pytest.skip("interop lab needs root (network namespaces)")
    binaries = [b for n in needs for b in ([n] if isinstance(n, str) else n.binaries)]
    missing = L.missing_binaries("ip", *binaries)
    if missing:
        pytest.skip("not installed: %s (run .ci/install-peers.sh)" % ", ".join(missing))


def global_toml(asn: int, host, *more: str, listen: Optional[list] = None) -> str:
    """``[global]`` with ``asn``, the host's IPv4 address as router id and
    listen address (or ``listen``), then the ``more`` lines."""
    addrs = [host.ipv4] if listen is None else listen
    return "\n".join(["[global]", "asn = %d" % asn, 'router-id = "%s"' % host.ipv4,
                      "listen = [%s]" % ", ".join('"%s"' % a for a in addrs), *more]) + "\n"


def workers_toml(text: str, workers: int, api_socket: str) -> str:
    """The configuration ``text`` (with a ``[global]`` table) run as a
    front and ``workers`` workers (fastbgp.daemon.front): ``workers = N``
    in ``[global]``, and the API, which the front always serves, on
    ``api_socket`` unless ``text`` configures one."""
    head, sep, rest = text.partition("[global]\n")
    if not sep:
        raise ValueError("a configuration with workers needs a [global] table")
    text = head + sep + "workers = %d\n" % workers + rest
    if "[global.api]" not in text:
        text += '\n[global.api]\nsocket = "%s"\n' % api_socket
    return text


def neighbor_toml(address: str, peer_as: int, *more: str, accept: bool = True) -> str:
    """One ``[[neighbors]]`` block with the lab timers; ``accept``: default
    import and export accept; then the ``more`` lines."""
    lines = ["[[neighbors]]", 'address = "%s"' % address, "peer-as = %d" % peer_as]
    if accept:
        lines += ['default-import = "accept"', 'default-export = "accept"']
    return "\n".join(lines + [LAB_TIMERS, *more]) + "\n"


def ipv4_unicast_toml(address: str) -> tuple:
    """The ``[[neighbors]]`` lines (for :func:`neighbor_toml`'s ``more``)
    that make a session to ``address`` carry IPv4 unicast: none over IPv4;
    over IPv6 the family and RFC 8950 extended next hop (IPv4 routes with
    IPv6 next hops), the daemon side of :func:`fastbgp.testing.lab.ipv4_neighbor`."""
    return families_toml(address, ("ipv4",))


def families_toml(address: str, families: tuple) -> tuple:
    """The ``[[neighbors]]`` lines that make a session to ``address`` carry
    ``families`` (none when that is the address's own family; with IPv4
    over IPv6, RFC 8950 extended next hop): the daemon side of
    :func:`fastbgp.testing.lab.session_neighbor`."""
    own = "ipv4" if ipaddress.ip_address(address).version == 4 else "ipv6"
    if tuple(families) == (own,):
        return ()
    lines = ("families = [%s]" % ", ".join('"%s-unicast"' % f for f in families),)
    return lines + (("extended-next-hop = true",) if own == "ipv6" and "ipv4" in families else ())


def transport_fixtures(start, names: tuple) -> tuple:
    """Three pytest fixtures for a module whose lab comes over either
    transport: ``names[0]`` and ``names[1]``, module-scoped, the labs
    ``start("ipv4")`` and ``start("ipv6")`` yield (``start``: a generator
    function that also cleans up), and ``names[2]``, the one of the test's
    ``transport`` parameter.  Assign them to module globals:
    ``fl, fl6, flt = transport_fixtures(_fault_lab, ("fl", "fl6", "flt"))``."""
    import pytest

    def lab4():
        yield from start("ipv4")

    def lab6():
        yield from start("ipv6")

    def pick(request, transport):
        return request.getfixturevalue(names[1] if transport == "ipv6" else names[0])

    return (pytest.fixture(scope="module", name=names[0])(lab4), pytest.fixture(scope="module", name=names[1])(lab6),
            pytest.fixture(name=names[2])(pick))


class ApiError(RuntimeError):
    def __init__(self, status: int, body: str):
        super().__init__("HTTP %d: %s" % (status, body[:300]))
        self.status = status


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 10.0):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self._path)
        self.sock = s


class LabDaemon:
    """The daemon in ``host`` from ``config_text`` (see the module docstring)."""

    def __init__(self, host, config_text: str, *, log_level: str = "info", loop: str = "uvloop",
                 cli: bool = False, tail_on_error: int = 200, workers: int = 0):
        if loop not in ("uvloop", "asyncio"):
            raise ValueError("loop: uvloop or asyncio, not %r" % (loop,))
        self.host = host
        self.config_text = config_text
        self.log_level = log_level
        self.loop = loop
        # workers > 0: ``workers = N`` added to [global] and the daemon run
        # as an operator runs it (``cli``): a front and N workers
        # (fastbgp.daemon.front), the API in the workdir unless configured.
        self.workers = workers
        self.cli = cli or workers > 0
        self.tail_on_error = tail_on_error
        self.config_path = os.path.join(host.workdir, "fastbgp.toml")
        self.logpath = os.path.join(host.workdir, "fastbgp.log")
        self.socket_path = os.path.join(host.workdir, "api.sock")
        self.proc: Optional[subprocess.Popen] = None

    # -- lifecycle ---------------------------------------------------------------
    def start(self, config_text: Optional[str] = None) -> "LabDaemon":
        """Write the configuration (``config_text`` if given: one that
        needs this object's paths, e.g. :meth:`api_toml`) and run."""
        if config_text is not None:
            self.config_text = config_text
        with open(self.config_path, "w") as f:
            f.write(self.with_workers(self.config_text))
        if self.cli:
            argv = [sys.executable, "-m", "fastbgp", "daemon", "-c", self.config_path]
        else:
            argv = [sys.executable, "-c", RUNNER, self.config_path, self.log_level, self.loop]
        with open(self.logpath, "ab") as log:  # the child keeps its own descriptor
            self.proc = self.host.popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        return self

    def with_workers(self, text: str) -> str:
        """``text`` with this daemon's ``workers`` setting (and an API
        socket in the workdir when it configures none): workers_toml."""
        return workers_toml(text, self.workers, self.socket_path) if self.workers else text

    def stop(self, timeout: float = STOP_GRACE) -> None:
        """SIGTERM to the daemon's process group, SIGKILL after ``timeout``."""
        p = self.proc
        if p is None or p.poll() is not None:
            return
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            p.terminate()
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()

    def __enter__(self) -> "LabDaemon":
        # ``with LabDaemon(...)`` starts it; ``with d.start(text)`` must not
        # start a second daemon on the same addresses.
        return self if self.proc is not None else self.start()

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            print(self.log_tail(self.tail_on_error))
        self.stop()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def assert_alive(self) -> None:
        assert self.alive(), "fastbgp exited:\n" + self.log_tail()

    def assert_clean(self) -> None:
        """Alive, and no Python traceback anywhere in its log."""
        self.assert_alive()
        text = self.log_text()
        assert "Traceback" not in text, text[-20000:]

    # -- log ---------------------------------------------------------------------
    def log_text(self) -> str:
        try:
            with open(self.logpath, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def log_tail(self, n: int = 60) -> str:
        return "".join(self.log_text().splitlines(keepends=True)[-n:])

    def log_records(self, since: int = 0) -> list:
        """The JSON log records (``[global.log] json = true``), from line
        ``since`` on (other lines, e.g. a traceback on stderr, come as
        {"raw": text})."""
        out = []
        for i, line in enumerate(self.log_text().splitlines(keepends=True)):
            if i < since:
                continue
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append({"raw": line.rstrip("\n"), "level": "raw", "msg": line})
        return out

    def log_mark(self) -> int:
        """Current number of log lines (pass to log_records)."""
        with open(self.logpath, "rb") as f:
            return sum(1 for _ in f)

    def wait_log(self, text: str, timeout: float, count: int = 1, what: Optional[str] = None) -> None:
        """Until ``text`` stands ``count`` times in the log; DaemonExited if
        the daemon exits first."""
        def seen():
            if not self.alive():
                raise L.DaemonExited("fastbgp exited:\n" + self.log_tail())
            return self.log_text().count(text) >= count
        L.wait_for(seen, timeout, what=what or "%r in the fastbgp log" % text, on_timeout=self.log_tail)

    # -- API (cli=True and api_toml() in the configuration) ----------------------
    def api_toml(self) -> str:
        return '[global.api]\nsocket = "%s"\n' % self.socket_path

    def api(self, method: str, path: str, body: Optional[dict] = None, timeout: float = 10.0):
        conn = _UnixHTTPConnection(self.socket_path, timeout)
        try:
            data = None if body is None else json.dumps(body).encode()
            conn.request(method, path, body=data, headers={"Content-Type": "application/json"} if data else {})
            resp = conn.getresponse()
            text = resp.read().decode("utf-8", "replace")
        finally:
            conn.close()
        if resp.status >= 400:
            raise ApiError(resp.status, text)
        return json.loads(text) if text else None

    def wait_api(self, timeout: float = 30) -> None:
        """Until the API answers (the socket exists once the daemon is up)."""
        def up():
            if not self.alive():
                raise L.DaemonExited("fastbgp exited:\n" + self.log_tail())
            try:
                self.api("GET", "/v1/global", timeout=2)
            except OSError:
                return False
            return True
        L.wait_for(up, timeout, interval=0.2, what="the fastbgp API", on_timeout=self.log_tail)
