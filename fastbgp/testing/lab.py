"""Network-namespace lab for interop tests against real BGP daemons.

Every test gets its own throw-away topology::

    hub netns: bridge br0 --+-- veth -- host netns "a": eth0 192.0.2.1/24, 2001:db8::1/64
                            +-- veth -- host netns "b": eth0 192.0.2.2/24, 2001:db8::2/64

so daemons bind the real port 179, talk over a real (virtual) Ethernet, and
never see the machine's own interfaces.  Only documentation prefixes
(RFC 5737 TEST-NET-1/2/3, RFC 3849 2001:db8::/32) are accepted, which keeps
every packet these tests send inside the namespaces.

Daemon helpers (:class:`Bird`, :class:`GoBGP`, :class:`FRR`, :class:`ExaBGP`,
:class:`OpenBGPD`) write a config into a per-daemon temp dir, run the
daemon in the foreground inside a :class:`Host` and expose the same small
API: ``start/stop/wait_established/neighbor_state/rib/wait_route/announce/
withdraw/log_text``.  RIBs are returned in one normalised shape (see
:func:`route`) so a test can compare what two different implementations
learnt without caring which one it is.

Stdlib only: the lab must work before the project itself is importable.
"""

from __future__ import annotations

import atexit
import ipaddress
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional

# Every namespace the lab creates starts with this, followed by the creating
# pid; reap_stale() relies on that to clean up after a killed test run.
NS_PREFIX = "fbl"

# RFC 5737 + RFC 3849: the only networks we ever put on an interface or
# announce by default.  Anything else is refused so that a typo cannot make a
# test emit traffic towards a real network.
DOC_NETS = tuple(
    ipaddress.ip_network(n)
    for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")
)

IP = shutil.which("ip") or "/usr/sbin/ip"


class LabError(RuntimeError):
    pass


class DaemonExited(LabError):
    """A daemon died: never worth waiting any longer."""


# --------------------------------------------------------------------------
# small helpers


def is_root() -> bool:
    return os.geteuid() == 0


def missing_binaries(*names: str) -> list:
    """Names (or absolute paths) in *names* that are not installed."""
    out = []
    for n in names:
        if os.path.isabs(n):
            if not os.access(n, os.X_OK):
                out.append(n)
        elif shutil.which(n) is None and not any(
            os.access(os.path.join(d, n), os.X_OK) for d in ("/usr/sbin", "/sbin")
        ):
            out.append(n)
    return out


def _check_doc_addr(value: str) -> None:
    iface = ipaddress.ip_interface(value)
    if not any(iface.ip in net for net in DOC_NETS):
        raise LabError(f"{value}: only documentation addresses (TEST-NET / 2001:db8::/32) are allowed in the lab")


def _family_of(addr: str) -> str:
    return "ipv6" if ipaddress.ip_address(addr.split("/")[0]).version == 6 else "ipv4"


def _run(argv, check=True, timeout=30, **kw) -> subprocess.CompletedProcess:
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    res = subprocess.run(argv, timeout=timeout, **kw)
    if check and res.returncode != 0:
        raise LabError(f"{' '.join(map(str, argv))} failed ({res.returncode}): {res.stderr or res.stdout}")
    return res


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _ns_pids(ns: str) -> list:
    res = _run([IP, "netns", "pids", ns], check=False)
    return [int(p) for p in res.stdout.split() if p.isdigit()]


def _kill_pids(pids: Iterable[int], grace: float = 3.0) -> None:
    """SIGTERM, wait up to *grace* seconds, then SIGKILL what is left."""
    pids = [p for p in pids if p != os.getpid()]
    for p in pids:
        try:
            os.kill(p, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_pid_alive(p) for p in pids):
        time.sleep(0.05)
    for p in pids:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _kill_namespace(ns: str) -> None:
    # Everything running inside one of *our* namespaces is ours by
    # construction (daemons fork helpers: OpenBGPD's SE/RDE, ExaBGP's API
    # process...), so sweeping `ip netns pids` catches what pid tracking missed.
    for _ in range(3):
        pids = _ns_pids(ns)
        if not pids:
            break
        _kill_pids(pids, grace=1.0)
    # Deleting the namespace drops its interfaces; the veth peer in the hub
    # (or the bridge, for the hub itself) disappears with it.
    _run([IP, "netns", "delete", ns], check=False)


def reap_stale() -> list:
    """Delete lab namespaces left by a test process that no longer exists
    (e.g. a CI run killed with SIGKILL, where neither ``with`` nor atexit
    ran).  Returns the names removed."""
    removed = []
    res = _run([IP, "netns", "list"], check=False)
    for line in res.stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        m = re.match(rf"^{NS_PREFIX}(\d+)[a-z][0-9a-f]{{3}}-", name)
        if m and not _pid_alive(int(m.group(1))):
            _kill_namespace(name)
            removed.append(name)
    # ...and their temp dirs (configs, logs), named the same way.
    tmp = tempfile.gettempdir()
    for name in os.listdir(tmp):
        m = re.match(rf"^{NS_PREFIX}(\d+)[a-z][0-9a-f]{{3}}-", name)
        if m and not _pid_alive(int(m.group(1))) and os.path.isdir(os.path.join(tmp, name)):
            shutil.rmtree(os.path.join(tmp, name), ignore_errors=True)
    return removed


_LIVE_LABS: list = []
_sigterm_installed = False


def _on_sigterm(signum, frame):
    # A CI timeout or `kill` normally ends Python without running atexit,
    # which would leave daemons and namespaces behind: clean up, then die
    # from the same signal as we would have.
    for lab in list(_LIVE_LABS):
        try:
            lab.close()
        except Exception:
            pass
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _install_sigterm_handler() -> None:
    global _sigterm_installed
    if _sigterm_installed:
        return
    try:
        if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
            signal.signal(signal.SIGTERM, _on_sigterm)
            _sigterm_installed = True
    except ValueError:  # not the main thread: atexit/with still apply
        pass


def route(next_hop, as_path=(), origin="igp", med=None, local_pref=None, communities=(), large_communities=()) -> dict:
    """The normalised route shape every helper's ``rib()`` returns."""
    return {
        "next_hop": str(next_hop) if next_hop is not None else None,
        "as_path": [int(a) for a in as_path],
        "origin": origin,
        "med": None if med is None else int(med),
        "local_pref": None if local_pref is None else int(local_pref),
        "communities": sorted(communities, key=_comm_key),
        "large_communities": sorted(large_communities, key=_comm_key),
    }


def _comm_key(c: str):
    return tuple(int(x) for x in c.split(":"))


def wait_for(pred: Callable[[], object], timeout: float, interval: float = 0.25, what: str = "condition",
             on_timeout: Optional[Callable[[], str]] = None):
    """Poll *pred* until it returns something truthy; return that value."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            val = pred()
            if val:
                return val
        except DaemonExited:
            raise
        except Exception as exc:  # daemon not ready yet, CLI hiccup...
            last_exc = exc
        if time.monotonic() >= deadline:
            extra = on_timeout() if on_timeout else ""
            msg = f"timed out after {timeout}s waiting for {what}"
            if last_exc is not None:
                msg += f" (last error: {last_exc!r})"
            raise TimeoutError(msg + ("\n" + extra if extra else ""))
        time.sleep(interval)


# --------------------------------------------------------------------------
# topology


class Host:
    """One network namespace with an ``eth0`` plugged into the lab bridge."""

    ifname = "eth0"

    def __init__(self, lab: "Lab", name: str, ns: str, ipv4_cidr: Optional[str], ipv6_cidr: Optional[str]):
        self.lab = lab
        self.name = name
        self.ns = ns
        self.ipv4_cidr = ipv4_cidr
        self.ipv6_cidr = ipv6_cidr
        #: bare addresses (no prefix length), what daemon configs want
        self.ipv4 = ipv4_cidr.split("/")[0] if ipv4_cidr else None
        self.ipv6 = ipv6_cidr.split("/")[0] if ipv6_cidr else None
        self.workdir = tempfile.mkdtemp(prefix=f"{name}-", dir=lab.tmpdir)

    def __repr__(self):
        return f"<Host {self.name} ns={self.ns} {self.ipv4} {self.ipv6}>"

    def addr(self, family: str) -> str:
        a = self.ipv6 if family == "ipv6" else self.ipv4
        if a is None:
            raise LabError(f"{self.name} has no {family} address")
        return a

    def wrap(self, argv) -> list:
        # `ip netns exec` setns()es then execvp()s, so the pid we get back
        # from Popen is the daemon's own pid, not a wrapper's.
        return [IP, "netns", "exec", self.ns, *[str(a) for a in argv]]

    def run(self, argv, check=False, timeout=30, **kw) -> subprocess.CompletedProcess:
        """subprocess.run inside the namespace (text, captured output)."""
        return _run(self.wrap(argv), check=check, timeout=timeout, **kw)

    def popen(self, argv, **kw) -> subprocess.Popen:
        """Start a long-running process inside the namespace.  It gets its
        own process group (so the lab can signal helpers it forks too) and is
        killed when the lab closes."""
        kw.setdefault("stdin", subprocess.DEVNULL)
        kw.setdefault("start_new_session", True)
        proc = subprocess.Popen(self.wrap(argv), **kw)
        self.lab._procs.append(proc)
        return proc

    def ping(self, addr: str, count: int = 1, timeout: int = 2) -> bool:
        _check_doc_addr(addr)  # never ping outside the lab
        res = self.run(["ping", "-n", "-q", "-c", count, "-W", timeout, addr], timeout=timeout * count + 5)
        return res.returncode == 0


class Lab:
    """Context manager owning namespaces, links and processes of one test.

    ``with Lab() as lab: a = lab.add_host("a"); ...`` -- on exit (normal or
    exception) every process started through the lab is killed and every
    namespace deleted.  An atexit hook does the same if the interpreter
    exits without running ``__exit__``.
    """

    def __init__(self, keep_tmp: Optional[bool] = None):
        # pid lets reap_stale() spot orphans; the random part keeps two Labs
        # in one process (or a reused pid) from colliding.
        self.id = f"{os.getpid()}{random.choice('abcdefghijklmnopqrstuvwxyz')}{random.randrange(16**3):03x}"
        self.prefix = f"{NS_PREFIX}{self.id}"
        self.hub = f"{self.prefix}-hub"
        self.bridge = "br0"  # lives inside the hub namespace only
        self.hosts: dict = {}
        self.daemons: list = []
        self._procs: list = []
        self._namespaces: list = []
        self._closed = True
        self._next_index = 1
        self.keep_tmp = bool(os.environ.get("FASTBGP_LAB_KEEP")) if keep_tmp is None else keep_tmp
        self.tmpdir = None

    # -- lifecycle ---------------------------------------------------------
    def start(self) -> "Lab":
        if not is_root():
            raise LabError("the lab needs root (network namespaces)")
        reap_stale()
        self.tmpdir = tempfile.mkdtemp(prefix=f"{self.prefix}-")
        self._closed = False
        atexit.register(self.close)
        _LIVE_LABS.append(self)
        _install_sigterm_handler()
        try:
            self._add_ns(self.hub)
            # The hub only switches frames: no IPv6 on its ports means no
            # link-local chatter or DAD there.
            self._sysctl(self.hub, "net.ipv6.conf.all.disable_ipv6", 1)
            self._sysctl(self.hub, "net.ipv6.conf.default.disable_ipv6", 1)
            _run([IP, "-n", self.hub, "link", "set", "lo", "up"])
            _run([IP, "-n", self.hub, "link", "add", self.bridge, "type", "bridge", "stp_state", "0",
                  "forward_delay", "0"])
            _run([IP, "-n", self.hub, "link", "set", self.bridge, "up"])
        except BaseException:
            self.close()
            raise
        return self

    def __enter__(self) -> "Lab":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        procs = [p for p in self._procs if p.poll() is None]
        # Whole process groups: daemons may have forked helpers.
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.monotonic() + 5
        for p in procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for p in procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
                try:
                    p.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
        for ns in reversed(self._namespaces):
            _kill_namespace(ns)
        self._namespaces.clear()
        for d in self.daemons:
            d._close_files()
        if self.tmpdir and not self.keep_tmp:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
        try:
            atexit.unregister(self.close)
        except Exception:
            pass
        if self in _LIVE_LABS:
            _LIVE_LABS.remove(self)

    # -- building ----------------------------------------------------------
    def _add_ns(self, ns: str) -> None:
        _run([IP, "netns", "add", ns])
        self._namespaces.append(ns)

    @staticmethod
    def _sysctl(ns: str, key: str, value) -> None:
        _run([IP, "netns", "exec", ns, "sysctl", "-q", "-w", f"{key}={value}"])

    def add_host(self, name: str, ipv4: Optional[str] = "auto", ipv6: Optional[str] = "auto") -> Host:
        """Create namespace ``<prefix>-<name>`` with eth0 on the lab bridge.

        ``ipv4``/``ipv6`` take an address with optional prefix length
        (default /24 and /64); "auto" picks 192.0.2.N / 2001:db8::N with N
        the host's index; None leaves that family unconfigured.
        """
        if self._closed:
            raise LabError("lab is not started")
        if name in self.hosts or not re.fullmatch(r"[a-z0-9][a-z0-9_]{0,30}", name):
            raise LabError(f"bad or duplicate host name {name!r}")
        idx = self._next_index
        self._next_index += 1
        if idx > 250:
            raise LabError("too many hosts")
        if ipv4 == "auto":
            ipv4 = f"192.0.2.{idx}/24"
        if ipv6 == "auto":
            ipv6 = f"2001:db8::{idx:x}/64"
        if ipv4 and "/" not in ipv4:
            ipv4 += "/24"
        if ipv6 and "/" not in ipv6:
            ipv6 += "/64"
        for a in (ipv4, ipv6):
            if a:
                _check_doc_addr(a)
        ns = f"{self.prefix}-{name}"
        self._add_ns(ns)
        # DAD would keep the IPv6 addresses "tentative" (unusable for bind())
        # for a second or more; disable it before eth0 exists so its
        # link-local address skips DAD too.
        for key in ("all", "default"):
            self._sysctl(ns, f"net.ipv6.conf.{key}.accept_dad", 0)
            self._sysctl(ns, f"net.ipv6.conf.{key}.dad_transmits", 0)
        # We never want router advertisements to configure anything here.
        self._sysctl(ns, "net.ipv6.conf.default.accept_ra", 0)
        _run([IP, "-n", ns, "link", "set", "lo", "up"])
        # Create the pair from inside the hub and push the far end straight
        # into the host namespace, so no interface ever appears in the root
        # namespace (and the 15-char name limit only applies per namespace).
        port = f"p{idx}"
        _run([IP, "-n", self.hub, "link", "add", port, "type", "veth", "peer", "name", Host.ifname, "netns", ns])
        _run([IP, "-n", self.hub, "link", "set", port, "master", self.bridge])
        _run([IP, "-n", self.hub, "link", "set", port, "up"])
        if ipv4:
            _run([IP, "-n", ns, "addr", "add", ipv4, "dev", Host.ifname])
        if ipv6:
            _run([IP, "-n", ns, "-6", "addr", "add", ipv6, "dev", Host.ifname, "nodad"])
        _run([IP, "-n", ns, "link", "set", Host.ifname, "up"])
        host = Host(self, name, ns, ipv4, ipv6)
        self.hosts[name] = host
        return host

    def namespaces(self) -> list:
        return list(self._namespaces)


# --------------------------------------------------------------------------
# daemon configuration model


@dataclass
class Neighbor:
    """A BGP neighbor as seen from the daemon being configured.

    ``families`` defaults to the family of ``address`` (an IPv4 session
    carries IPv4 unicast, an IPv6 session IPv6 unicast): multiprotocol
    across families needs next-hop tricks every daemon does differently.
    ``options`` is a free-form dict for daemon specific knobs (documented on
    each helper).
    """

    address: str
    asn: int
    passive: bool = False
    password: Optional[str] = None
    hold_time: Optional[int] = None
    families: Optional[tuple] = None
    local_address: Optional[str] = None
    description: Optional[str] = None
    options: dict = field(default_factory=dict)

    @property
    def family(self) -> str:
        return _family_of(self.address)

    def afs(self) -> tuple:
        return tuple(self.families) if self.families else (self.family,)

    @classmethod
    def of(cls, spec) -> "Neighbor":
        if isinstance(spec, Neighbor):
            return spec
        if isinstance(spec, dict):
            return cls(**spec)
        if isinstance(spec, (tuple, list)):
            return cls(*spec)
        raise TypeError(f"cannot make a Neighbor from {spec!r}")


# The transports a lab test can run its sessions over (parametrize on it).
TRANSPORTS = ("ipv4", "ipv6")


def ipv4_neighbor(address: str, asn: int, **kw) -> Neighbor:
    """A Neighbor for a session to ``address`` that carries IPv4 unicast
    whatever the transport: over IPv6 its families default to ("ipv4",)
    and RFC 8950 extended next hop is on (IPv4 routes with IPv6 next hops:
    the address on the shared link, so BIRD's single-hop eBGP resolves it
    as directly connected).  GoBGP advertises the capability by itself on
    IPv6 sessions; Bird and FRR read the ``extended_next_hop`` option."""
    if _family_of(address) == "ipv6":
        kw.setdefault("families", ("ipv4",))
        kw["options"] = dict(kw.get("options") or {}, extended_next_hop=True)
    return Neighbor(address, asn, **kw)


def transport_sessions(transport: str, families: tuple = ("ipv4", "ipv6")) -> list:
    """[(session transport, families it carries)] for a peer that exchanges
    ``families`` with another: over ``ipv4``, one session per family over
    its own transport; over ``ipv6``, one IPv6 session carrying them all
    (IPv4 routes with RFC 8950 next hops)."""
    if transport not in TRANSPORTS:
        raise ValueError("transport must be one of %s" % (TRANSPORTS,))
    if transport == "ipv6":
        return [("ipv6", tuple(families))]
    return [(fam, (fam,)) for fam in families]


def next_hop_family(family: str, transport: str) -> str:
    """The family of the next hops of ``family`` routes on the sessions of
    :func:`transport_sessions`."""
    return "ipv6" if transport == "ipv6" else family


def session_neighbor(address: str, asn: int, families: tuple, **kw) -> Neighbor:
    """A Neighbor for a session to ``address`` carrying ``families``: with
    IPv4 over IPv6, RFC 8950 extended next hop on (:func:`ipv4_neighbor`)."""
    if _family_of(address) == "ipv6" and "ipv4" in families:
        return ipv4_neighbor(address, asn, families=tuple(families), **kw)
    return Neighbor(address, asn, families=tuple(families), **kw)


@dataclass
class Route:
    """A route a daemon originates.  ``as_path`` lists ASNs *after* the
    speaker's own (which every eBGP speaker prepends itself)."""

    prefix: str
    next_hop: Optional[str] = None
    as_path: tuple = ()
    origin: str = "igp"
    med: Optional[int] = None
    local_pref: Optional[int] = None
    communities: tuple = ()
    large_communities: tuple = ()

    @property
    def family(self) -> str:
        return _family_of(self.prefix)

    @classmethod
    def of(cls, spec) -> "Route":
        if isinstance(spec, Route):
            return spec
        if isinstance(spec, str):
            return cls(spec)
        if isinstance(spec, dict):
            return cls(**spec)
        raise TypeError(f"cannot make a Route from {spec!r}")


_ORIGINS = {"i": "igp", "e": "egp", "?": "incomplete", "igp": "igp", "egp": "egp", "incomplete": "incomplete",
            "0": "igp", "1": "egp", "2": "incomplete"}


class Daemon:
    """Common behaviour; subclasses fill in config generation and queries."""

    kind = "daemon"
    binaries: tuple = ()

    def __init__(self, host: Host, asn: int, router_id: Optional[str] = None, neighbors=(), routes=(),
                 extra_config: str = ""):
        self.host = host
        self.lab = host.lab
        self.asn = int(asn)
        self.router_id = router_id or host.ipv4 or f"192.0.2.{random.randrange(1, 255)}"
        self.neighbors = [Neighbor.of(n) for n in neighbors]
        self.routes: dict = {}
        for r in routes:
            r = Route.of(r)
            self.routes[r.prefix] = r
        self.extra_config = extra_config
        self.workdir = tempfile.mkdtemp(prefix=f"{self.kind}-", dir=host.workdir)
        self.proc: Optional[subprocess.Popen] = None
        self.logfile = os.path.join(self.workdir, f"{self.kind}.log")
        self._out = None
        self.lab.daemons.append(self)

    def __repr__(self):
        return f"<{type(self).__name__} AS{self.asn} on {self.host.name}>"

    # -- process -----------------------------------------------------------
    def path(self, name: str) -> str:
        return os.path.join(self.workdir, name)

    def _write(self, name: str, text: str) -> str:
        p = self.path(name)
        with open(p, "w") as f:
            f.write(text)
        return p

    def _spawn(self, argv, env=None) -> subprocess.Popen:
        # stdout/stderr go to a file, never a pipe: an unread pipe would fill
        # up and block a chatty daemon mid-test.
        self._out = open(self.path("stdout.log"), "ab")
        full_env = None
        if env:
            full_env = dict(os.environ)
            full_env.update(env)
        self.proc = self.host.popen(argv, stdout=self._out, stderr=subprocess.STDOUT, env=full_env,
                                    cwd=self.workdir)
        return self.proc

    def start(self) -> "Daemon":
        raise NotImplementedError

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 5) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(timeout=5)
        self._close_files()

    def _close_files(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None

    def _ensure_running(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise DaemonExited(f"{self!r} exited with {self.proc.returncode}:\n{self.log_tail()}")

    def _wait_ready(self, check: Callable[[], bool], timeout: float = 20) -> None:
        def ready():
            self._ensure_running()
            return check()
        wait_for(ready, timeout, what=f"{self!r} to come up", on_timeout=self.log_tail)

    # -- logs --------------------------------------------------------------
    def log_text(self) -> str:
        """Daemon log plus anything it printed on stdout/stderr."""
        parts = []
        for p in dict.fromkeys((self.logfile, self.path("stdout.log"))):
            try:
                with open(p, errors="replace") as f:
                    parts.append(f.read())
            except FileNotFoundError:
                pass
        return "\n".join(parts)

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_text().splitlines()[-lines:]
        return f"--- {self!r} log tail ---\n" + "\n".join(text)

    # -- BGP ---------------------------------------------------------------
    def neighbor_state(self, peer_ip: str) -> str:
        """Lower-case FSM state name ("idle", "active", "established"...)."""
        raise NotImplementedError

    def wait_established(self, peer_ip: str, timeout: float = 60) -> None:
        def up():
            self._ensure_running()
            return self.neighbor_state(peer_ip) == "established"
        wait_for(up, timeout, what=f"{self!r} session with {peer_ip} Established", on_timeout=self.log_tail)

    def rib(self, family: str = "ipv4") -> dict:
        """Routes learnt from peers: {prefix: route(...)} (best path only)."""
        raise NotImplementedError

    def wait_route(self, prefix: str, timeout: float = 30, present: bool = True,
                   match: Optional[Callable[[dict], bool]] = None) -> Optional[dict]:
        """Wait until *prefix* is in (or, present=False, gone from) rib().
        *match* can further require attribute values.  Returns the route."""
        fam = _family_of(prefix)

        def check():
            self._ensure_running()
            r = self.rib(fam).get(prefix)
            if not present:
                return r is None
            if r is not None and (match is None or match(r)):
                return r
            return None

        def describe():
            try:
                current = repr(self.rib(fam))
            except Exception as exc:  # e.g. the daemon died meanwhile
                current = f"<rib unavailable: {exc!r}>"
            return f"rib={current}\n{self.log_tail()}"

        res = wait_for(check, timeout, what=f"{prefix} {'in' if present else 'gone from'} {self!r} RIB",
                       on_timeout=describe)
        return res if present else None

    def announce(self, prefix: str, next_hop: Optional[str] = None, **attrs) -> None:
        """Originate (or replace) *prefix* at runtime.  *attrs* are the
        :class:`Route` fields: as_path, origin, med, local_pref, communities,
        large_communities.  next_hop defaults to the host's own address (eBGP
        speakers put their own address there anyway)."""
        raise NotImplementedError

    def withdraw(self, prefix: str) -> None:
        """Stop originating *prefix*."""
        raise NotImplementedError

    def disable(self, peer_ip: str, message: Optional[str] = None) -> None:
        """Administratively shut the session down: Cease/Administrative
        Shutdown, carrying an RFC 8203 communication if *message*."""
        raise NotImplementedError

    def enable(self, peer_ip: str) -> None:
        raise NotImplementedError

    # helpers for subclasses
    def _local_addr(self, n: Neighbor) -> str:
        return n.local_address or self.host.addr(n.family)

    def _route_next_hop(self, r: Route) -> str:
        return r.next_hop or self.host.addr(r.family)


# --------------------------------------------------------------------------
# BIRD 2


def _bird_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Bird(Daemon):
    """BIRD 2 (``bird -f``), controlled through its own control socket.

    Neighbor.options: ``multihop`` (int), ``next_hop_self`` (bool),
    ``import``/``export`` (BIRD filter text, default ``all``; or a dict
    family -> text, for a session carrying both families),
    ``extended_next_hop`` (bool: RFC 8950 on the ipv4 channel, for IPv4
    routes over an IPv6 session), ``extra`` (text pasted into the protocol
    block), ``channel_extra`` (text pasted into each channel block, e.g.
    ``import table on;``).
    Originated routes are static ``blackhole`` routes whose BGP attributes
    are set in the static route's own filter block; announce()/withdraw()
    rewrite the config and run ``birdc configure``.
    """

    kind = "bird"
    binaries = ("bird", "birdc")

    def __init__(self, host, asn, router_id=None, neighbors=(), routes=(), extra_config=""):
        super().__init__(host, asn, router_id, neighbors, routes, extra_config)
        self.conf = self.path("bird.conf")
        self.sock = self.path("bird.ctl")
        self._proto_names = {}
        for i, n in enumerate(self.neighbors, 1):
            self._proto_names[str(ipaddress.ip_address(n.address))] = f"n{i}"

    def config_text(self) -> str:
        out = [
            f"log {_bird_str(self.logfile)} all;",
            f"router id {self.router_id};",
            # ISO timestamps keep the log readable; "debug protocols" adds
            # state changes and the NOTIFICATION details to the log.
            "timeformat protocol iso long;",
            "debug protocols { states, events };",
            # device protocol: BIRD needs to know eth0's addresses to accept
            # a directly connected next hop (gateway direct, the eBGP default).
            "protocol device { scan time 2; }",
        ]
        for fam in ("ipv4", "ipv6"):
            routes = [r for r in self.routes.values() if r.family == fam]
            out.append(f"protocol static s_{fam} {{")
            out.append(f"  {fam};")
            for r in routes:
                out.append(f"  route {r.prefix} blackhole {{ {self._route_attrs(r)} }};")
            out.append("}")
        for n in self.neighbors:
            name = self._proto_names[str(ipaddress.ip_address(n.address))]
            o = n.options
            out.append(f"protocol bgp {name} {{")
            if n.description:
                out.append(f"  description {_bird_str(n.description)};")
            out.append(f"  local {self._local_addr(n)} as {self.asn};")
            out.append(f"  neighbor {n.address} as {n.asn};")
            # Defaults (connect retry 120s, error wait 60..300s) would make
            # a test that starts peers in the "wrong" order wait minutes.
            out.append("  connect delay time 1;")
            out.append("  connect retry time 2;")
            out.append("  error wait time 1, 5;")
            if n.passive:
                out.append("  passive on;")
            if n.password:
                out.append(f"  password {_bird_str(n.password)};")
            if n.hold_time is not None:
                out.append(f"  hold time {int(n.hold_time)};")
            if o.get("multihop"):
                out.append(f"  multihop {int(o['multihop'])};")
            if o.get("extra"):
                out.append("  " + o["extra"])
            for fam in n.afs():
                imp = o.get("import", "all")
                # BIRD only sends MED to an eBGP peer if the *export filter*
                # set it; re-assigning it for our own static routes marks it
                # as such, without leaking MEDs learnt from other ASes.
                exp_default = "if source = RTS_STATIC && defined(bgp_med) then bgp_med = bgp_med; accept;"
                exp = o.get("export", exp_default)
                if isinstance(imp, dict):
                    imp = imp.get(fam, "all")
                if isinstance(exp, dict):
                    exp = exp.get(fam, exp_default)
                imp = imp if imp in ("all", "none") or imp.startswith("filter") else f"filter {{ {imp} }}"
                exp = exp if exp in ("all", "none") or exp.startswith("filter") else f"filter {{ {exp} }}"
                nhs = " next hop self;" if o.get("next_hop_self") else ""
                if fam == "ipv4" and o.get("extended_next_hop"):
                    nhs += " extended next hop on;"  # RFC 8950
                extra = " " + o["channel_extra"] if o.get("channel_extra") else ""
                out.append(f"  {fam} {{ import {imp}; export {exp};{nhs}{extra} }};")
            out.append("}")
        if self.extra_config:
            out.append(self.extra_config)
        return "\n".join(out) + "\n"

    @staticmethod
    def _route_attrs(r: Route) -> str:
        cmds = [f"bgp_origin = ORIGIN_{r.origin.upper()};"]
        # prepend() adds to the front, so walk the path backwards.
        for a in reversed(list(r.as_path)):
            cmds.append(f"bgp_path.prepend({int(a)});")
        if r.med is not None:
            cmds.append(f"bgp_med = {int(r.med)};")
        if r.local_pref is not None:
            cmds.append(f"bgp_local_pref = {int(r.local_pref)};")
        for c in r.communities:
            a, b = c.split(":")
            cmds.append(f"bgp_community.add(({int(a)},{int(b)}));")
        for c in r.large_communities:
            a, b, c3 = c.split(":")
            cmds.append(f"bgp_large_community.add(({int(a)},{int(b)},{int(c3)}));")
        return " ".join(cmds)

    def start(self) -> "Bird":
        self._write("bird.conf", self.config_text())
        # Validate first: a config error is much clearer from `bird -p`
        # than from a daemon that died.
        res = self.host.run(["bird", "-p", "-c", self.conf])
        if res.returncode != 0:
            raise LabError(f"bird config rejected: {res.stderr}{res.stdout}\n{self.config_text()}")
        self._spawn(["bird", "-f", "-c", self.conf, "-s", self.sock])
        self._wait_ready(lambda: self.birdc("show status").returncode == 0)
        return self

    def birdc(self, *cmd: str, check: bool = False) -> subprocess.CompletedProcess:
        return self.host.run(["birdc", "-s", self.sock, *cmd], check=check)

    def reconfigure(self) -> None:
        self._write("bird.conf", self.config_text())
        res = self.birdc("configure", check=True)
        if "Reconfigured" not in res.stdout and "Reconfiguration in progress" not in res.stdout:
            raise LabError(f"birdc configure failed: {res.stdout}")

    def _proto(self, peer_ip: str) -> str:
        try:
            return self._proto_names[str(ipaddress.ip_address(peer_ip))]
        except KeyError:
            raise LabError(f"{self!r} has no neighbor {peer_ip}") from None

    def neighbor_state(self, peer_ip: str) -> str:
        name = self._proto(peer_ip)
        out = self.birdc("show", "protocols", "all", name).stdout
        m = re.search(r"BGP state:\s+(\S+)", out)
        return m.group(1).lower() if m else "unknown"

    def protocol_info(self, peer_ip: str) -> str:
        """`show protocols all` text for the session with *peer_ip*."""
        name = self._proto(peer_ip)
        return self.birdc("show", "protocols", "all", name).stdout

    def rib(self, family: str = "ipv4", include_local: bool = False) -> dict:
        table = "master6" if family == "ipv6" else "master4"
        out = self.birdc("show", "route", "table", table, "all").stdout
        protos = set(self._proto_names.values())
        if include_local:
            protos |= {"s_ipv4", "s_ipv6"}  # our static protocols
        return self._parse_routes(out, protos)

    @staticmethod
    def _parse_routes(text: str, bgp_protos: set) -> dict:
        """Parse `show route all`: a route line (prefix omitted for further
        paths of the same prefix) followed by tab-indented attribute lines.
        Only best ('*') routes from our BGP protocols are kept."""
        routes = {}
        cur_prefix = None
        cur = None
        keep = False

        def flush():
            if cur is not None and keep:
                routes[cur["prefix"]] = route(cur.get("next_hop"), cur.get("as_path", []), cur.get("origin", "igp"),
                                              cur.get("med"), cur.get("local_pref"), cur.get("communities", []),
                                              cur.get("large_communities", []))

        for line in text.splitlines():
            if not line.strip() or line.startswith(("BIRD ", "Table ")):
                continue
            m = re.match(r"^(\S+)?\s+\S+\s+\[(\S+)\s[^\]]*\]\s*(\*)?", line)
            if not line.startswith("\t") and m:
                flush()
                if m.group(1):
                    cur_prefix = m.group(1)
                cur = {"prefix": cur_prefix}
                keep = m.group(2) in bgp_protos and m.group(3) == "*"
                continue
            if cur is None:
                continue
            s = line.strip()
            key, _, val = s.partition(":")
            val = val.strip()
            if key == "BGP.origin":
                cur["origin"] = _ORIGINS.get(val.lower(), val.lower())
            elif key == "BGP.as_path":
                cur["as_path"] = [int(x) for x in re.findall(r"\d+", val)]
            elif key == "BGP.next_hop":
                cur["next_hop"] = val.split()[0] if val else None
            elif key == "BGP.med":
                cur["med"] = int(val)
            elif key == "BGP.local_pref":
                cur["local_pref"] = int(val)
            elif key == "BGP.community":
                cur["communities"] = [f"{a}:{b}" for a, b in re.findall(r"\((\d+),\s*(\d+)\)", val)]
            elif key == "BGP.large_community":
                cur["large_communities"] = [f"{a}:{b}:{c}" for a, b, c in
                                            re.findall(r"\((\d+),\s*(\d+),\s*(\d+)\)", val)]
        flush()
        return routes

    def announce(self, prefix: str, next_hop: Optional[str] = None, **attrs) -> None:
        _check_doc_addr(prefix)
        self.routes[prefix] = Route(prefix, next_hop, **attrs)
        self.reconfigure()

    def withdraw(self, prefix: str) -> None:
        self.routes.pop(prefix, None)
        self.reconfigure()

    def disable(self, peer_ip: str, message: Optional[str] = None) -> None:
        name = self._proto(peer_ip)
        args = ["disable", name] + ([_bird_str(message)] if message else [])
        self.birdc(*args, check=True)

    def enable(self, peer_ip: str) -> None:
        self.birdc("enable", self._proto(peer_ip), check=True)


# --------------------------------------------------------------------------
# GoBGP


def _toml_str(s: str) -> str:
    return json.dumps(s)  # a JSON string literal is a valid TOML basic string


_GOBGP_STATES = {0: "unknown", 1: "idle", 2: "connect", 3: "active", 4: "opensent", 5: "openconfirm",
                 6: "established"}


def _flatten_as_path(segments) -> list:
    out = []
    for seg in segments or []:
        out.extend(int(a) for a in seg.get("asns", []))
    return out


def _u32_community(v: int) -> str:
    return f"{(v >> 16) & 0xFFFF}:{v & 0xFFFF}"


class GoBGP(Daemon):
    """gobgpd with a TOML config; the gRPC API listens on a unix socket in
    the daemon's temp dir (nothing to allocate, nothing to clash with) and
    is driven with the ``gobgp`` CLI.

    Neighbor.options: ``multihop`` (TTL int), ``route_server_client``
    (bool), ``toml`` (extra lines added to the ``[[neighbors]]`` table).
    """

    kind = "gobgp"
    binaries = ("gobgpd", "gobgp")

    def __init__(self, host, asn, router_id=None, neighbors=(), routes=(), extra_config="", log_level="info"):
        super().__init__(host, asn, router_id, neighbors, routes, extra_config)
        self.conf = self.path("gobgpd.toml")
        self.api = f"unix://{self.path('api.sock')}"
        self.log_level = log_level
        # gobgpd logs to stderr only
        self.logfile = self.path("stdout.log")

    def config_text(self) -> str:
        out = ["[global.config]", f"  as = {self.asn}", f"  router-id = {_toml_str(self.router_id)}", ""]
        for n in self.neighbors:
            o = n.options
            out += ["[[neighbors]]", "  [neighbors.config]",
                    f"    neighbor-address = {_toml_str(n.address)}", f"    peer-as = {int(n.asn)}"]
            if n.password:
                out.append(f"    auth-password = {_toml_str(n.password)}")
            if n.description:
                out.append(f"    description = {_toml_str(n.description)}")
            out += ["  [neighbors.transport.config]", f"    local-address = {_toml_str(self._local_addr(n))}"]
            if n.passive:
                out.append("    passive-mode = true")
            # Defaults are connect-retry 120s / idle-hold 30s: far too slow
            # for tests that restart peers.
            out += ["  [neighbors.timers.config]", "    connect-retry = 2", "    idle-hold-time-after-reset = 1"]
            if n.hold_time is not None:
                out += [f"    hold-time = {int(n.hold_time)}",
                        f"    keepalive-interval = {max(1, int(n.hold_time) // 3)}"]
            if o.get("multihop"):
                out += ["  [neighbors.ebgp-multihop.config]", "    enabled = true",
                        f"    multihop-ttl = {int(o['multihop'])}"]
            if o.get("route_server_client"):
                out += ["  [neighbors.route-server.config]", "    route-server-client = true"]
            for fam in n.afs():
                out += ["  [[neighbors.afi-safis]]", "    [neighbors.afi-safis.config]",
                        f"      afi-safi-name = \"{fam}-unicast\""]
            if o.get("toml"):
                out.append(textwrap.dedent(o["toml"]))
            out.append("")
        if self.extra_config:
            out.append(self.extra_config)
        return "\n".join(out) + "\n"

    def start(self) -> "GoBGP":
        self._write("gobgpd.toml", self.config_text())
        res = self.host.run(["gobgpd", "-d", "-f", self.conf, "-t", "toml"])
        if res.returncode != 0:
            raise LabError(f"gobgpd config rejected: {res.stderr}{res.stdout}\n{self.config_text()}")
        # -p is --log-plain (NOT "no pprof"): pprof needs its own flag, or
        # gobgpd would also open localhost:6060.
        self._spawn(["gobgpd", "-f", self.conf, "-t", "toml", "-p", "--pprof-disable", "-l", self.log_level,
                     "--api-hosts", self.api])
        self._wait_ready(lambda: self.cli("global", "-j").returncode == 0)
        for r in list(self.routes.values()):
            self._add(r)
        return self

    def cli(self, *args: str, check: bool = False) -> subprocess.CompletedProcess:
        return self.host.run(["gobgp", "--target", self.api, *[str(a) for a in args]], check=check)

    def neighbors_json(self) -> list:
        res = self.cli("neighbor", "-j", check=True)
        return json.loads(res.stdout or "[]")

    def neighbor_state(self, peer_ip: str) -> str:
        want = ipaddress.ip_address(peer_ip)
        for n in self.neighbors_json():
            if ipaddress.ip_address(n["conf"]["neighbor_address"]) == want:
                return _GOBGP_STATES.get(n.get("state", {}).get("session_state", 0), "unknown")
        return "unknown"

    def adj_in_paths(self, peer_ip: str, family: str = "ipv4") -> dict:
        """{prefix: sorted [AS path]} of every path held from ``peer_ip``
        (several per prefix with ADD-PATH)."""
        res = self.cli("neighbor", peer_ip, "adj-in", "-a", family, "-j", check=True)
        data = json.loads(res.stdout or "{}") or {}
        out = {}
        for prefix, paths in data.items():
            for p in paths:
                asp = []
                for a in p.get("attrs", []):
                    if a.get("type") == 2:
                        asp = [n for seg in a.get("as_paths") or [] for n in seg.get("asns", [])]
                out.setdefault(prefix, []).append(asp)
        return {k: sorted(v) for k, v in out.items()}

    def messages_received(self, peer_ip: str) -> dict:
        """GoBGP's counters of what it received from ``peer_ip`` (update,
        withdraw_prefix, ...)."""
        res = self.cli("neighbor", peer_ip, "-j", check=True)
        data = json.loads(res.stdout or "{}") or {}
        return data.get("state", {}).get("messages", {}).get("received", {})

    def rib(self, family: str = "ipv4", include_local: bool = False) -> dict:
        res = self.cli("global", "rib", "-a", family, "-j", check=True)
        data = json.loads(res.stdout or "{}") or {}
        out = {}
        for prefix, paths in data.items():
            for p in paths:
                if not p.get("best"):
                    continue
                if not include_local and not p.get("neighbor-ip"):
                    continue  # locally originated
                out[prefix] = self._norm(p)
        return out

    @staticmethod
    def _norm(p: dict) -> dict:
        r = {"next_hop": None, "as_path": [], "origin": "igp", "med": None, "local_pref": None,
             "communities": [], "large_communities": []}
        for a in p.get("attrs", []):
            t = a.get("type")
            if t == 1:
                r["origin"] = _ORIGINS[str(a.get("value", 0))]
            elif t == 2:
                r["as_path"] = _flatten_as_path(a.get("as_paths"))
            elif t == 3:
                r["next_hop"] = a.get("nexthop")
            elif t == 4:
                r["med"] = a.get("metric", 0)
            elif t == 5:
                r["local_pref"] = a.get("value", 0)
            elif t == 8:
                r["communities"] = [_u32_community(c) for c in a.get("communities", [])]
            elif t == 14:
                r["next_hop"] = a.get("nexthop") or (a.get("nexthops") or [None])[0]
            elif t == 32:
                r["large_communities"] = [f"{c['ASN']}:{c['LocalData1']}:{c['LocalData2']}" for c in a.get("value", [])]
        return route(**r)

    def _add(self, r: Route) -> None:
        args = ["global", "rib", "-a", r.family, "add", r.prefix, "nexthop", self._route_next_hop(r),
                "origin", r.origin]
        if r.as_path:
            args += ["aspath", ",".join(str(int(a)) for a in r.as_path)]
        if r.med is not None:
            args += ["med", int(r.med)]
        if r.local_pref is not None:
            args += ["local-pref", int(r.local_pref)]
        if r.communities:
            args += ["community", ",".join(r.communities)]
        if r.large_communities:
            args += ["large-community", ",".join(r.large_communities)]
        self.cli(*args, check=True)

    def announce(self, prefix: str, next_hop: Optional[str] = None, **attrs) -> None:
        _check_doc_addr(prefix)
        r = Route(prefix, next_hop, **attrs)
        if prefix in self.routes:
            self.withdraw(prefix)
        self.routes[prefix] = r
        self._add(r)

    def replace(self, prefix: str, next_hop: Optional[str] = None, **attrs) -> None:
        """Replace the route of *prefix* in place: GoBGP's ``global rib
        add`` over the route it holds sends one UPDATE with the new
        attributes and no withdrawal before it (``announce`` withdraws
        first)."""
        _check_doc_addr(prefix)
        r = Route(prefix, next_hop, **attrs)
        self.routes[prefix] = r
        self._add(r)

    def withdraw(self, prefix: str) -> None:
        self.routes.pop(prefix, None)
        self.cli("global", "rib", "-a", _family_of(prefix), "del", prefix, check=True)

    def disable(self, peer_ip: str, message: Optional[str] = None) -> None:
        # gobgp 3.10 quirk: `neighbor X disable --reason M` sends Cease/2
        # *without* the communication; only the (deprecated) `shutdown`
        # verb passes --reason on to the NOTIFICATION.
        if message:
            self.cli("neighbor", peer_ip, "shutdown", "--reason", message, check=True)
        else:
            self.cli("neighbor", peer_ip, "disable", check=True)

    def enable(self, peer_ip: str) -> None:
        self.cli("neighbor", peer_ip, "enable", check=True)


# --------------------------------------------------------------------------
# FRRouting


class FRR(Daemon):
    """FRR's zebra + bgpd, standalone (no watchfrr, no /etc/frr).

    zebra is needed even though nothing is installed in the kernel: without
    it bgpd has no interface list and (8.4) rejects IPv6 updates that carry
    a link-local next hop ("no peer interface information").  bgpd runs
    with ``-n`` so it never asks zebra to install routes.

    zebra insists on dropping to the ``frr`` user, which must be a member of
    the ``frrvty`` group, so its run dir is chowned to frr; bgpd runs as
    root with ``-S`` (skip runas).  Every path (zserv socket, vty sockets,
    pid files) is inside the daemon's temp dir, so instances never clash.

    Neighbor.options: ``multihop`` (int), ``extended_next_hop`` (bool:
    RFC 8950 capability, for IPv4 routes over an IPv6 session), ``extra``
    (lines under ``router bgp``), ``af_extra`` (lines in each
    address-family).
    """

    kind = "frr"
    binaries = ("/usr/lib/frr/zebra", "/usr/lib/frr/bgpd", "vtysh")

    def __init__(self, host, asn, router_id=None, neighbors=(), routes=(), extra_config=""):
        super().__init__(host, asn, router_id, neighbors, routes, extra_config)
        import pwd
        self.rundir = self.path("run")
        os.mkdir(self.rundir)
        fu = pwd.getpwnam("frr")
        self._frr_ids = (fu.pw_uid, fu.pw_gid)
        os.chown(self.rundir, *self._frr_ids)
        # mkdtemp dirs are 0700: let the frr user traverse down to rundir.
        for d in (self.lab.tmpdir, host.workdir, self.workdir):
            os.chmod(d, 0o711)
        self.zserv = os.path.join(self.rundir, "zserv.api")
        self.conf = self.path("bgpd.conf")
        self.logfile = os.path.join(self.rundir, "bgpd.log")
        self.zebra_proc = None
        self._rm_seq = 0
        self._rmaps: dict = {}

    # -- config --------------------------------------------------------------
    def _route_map(self, r: Route) -> list:
        self._rm_seq += 1
        name = f"LAB-{self._rm_seq}"
        self._rmaps[r.prefix] = name
        lines = [f"route-map {name} permit 10", f" set origin {r.origin}"]
        if r.as_path:
            lines.append(" set as-path prepend " + " ".join(str(int(a)) for a in r.as_path))
        if r.med is not None:
            lines.append(f" set metric {int(r.med)}")
        if r.local_pref is not None:
            lines.append(f" set local-preference {int(r.local_pref)}")
        if r.communities:
            lines.append(" set community " + " ".join(r.communities))
        if r.large_communities:
            lines.append(" set large-community " + " ".join(r.large_communities))
        lines.append("exit")
        return lines

    def config_text(self) -> str:
        out = ["hostname " + self.host.name, f"log file {self.logfile} debugging", "log timestamp precision 3"]
        rmaps = []
        for r in self.routes.values():
            rmaps += self._route_map(r)
        out += rmaps
        out += [f"router bgp {self.asn}", f" bgp router-id {self.router_id}",
                # 8.x defaults that make a lab peering silently useless:
                # RFC 8212 deny-all without policy, and `network` needing a
                # matching IGP route.
                " no bgp ebgp-requires-policy", " no bgp network import-check",
                " no bgp default ipv4-unicast", " bgp log-neighbor-changes"]
        for n in self.neighbors:
            a = n.address
            out += [f" neighbor {a} remote-as {int(n.asn)}", f" neighbor {a} timers connect 2",
                    f" neighbor {a} update-source {self._local_addr(n)}"]
            if n.description:
                out.append(f" neighbor {a} description {n.description}")
            if n.passive:
                out.append(f" neighbor {a} passive")
            if n.password:
                out.append(f" neighbor {a} password {n.password}")
            if n.hold_time is not None:
                out.append(f" neighbor {a} timers {max(1, int(n.hold_time) // 3)} {int(n.hold_time)}")
            if n.options.get("multihop"):
                out.append(f" neighbor {a} ebgp-multihop {int(n.options['multihop'])}")
            if n.options.get("extended_next_hop"):
                out.append(f" neighbor {a} capability extended-nexthop")  # RFC 8950
            for line in n.options.get("extra", "").splitlines():
                out.append(" " + line.strip())
        for fam in ("ipv4", "ipv6"):
            out.append(f" address-family {fam} unicast")
            for n in self.neighbors:
                if fam in n.afs():
                    out.append(f"  neighbor {n.address} activate")
                    for line in n.options.get("af_extra", "").splitlines():
                        out.append("  " + line.strip())
            for r in self.routes.values():
                if r.family == fam:
                    out.append(f"  network {r.prefix} route-map {self._rmaps[r.prefix]}")
            out.append(" exit-address-family")
        out.append("exit")
        if self.extra_config:
            out.append(self.extra_config)
        return "\n".join(out) + "\n"

    # -- process -------------------------------------------------------------
    def start(self) -> "FRR":
        zconf = os.path.join(self.rundir, "zebra.conf")
        with open(zconf, "w") as f:
            f.write(f"hostname {self.host.name}\nlog file {os.path.join(self.rundir, 'zebra.log')}\n")
        os.chown(zconf, *self._frr_ids)
        self._write("bgpd.conf", self.config_text())
        self._zout = open(self.path("zebra.stdout.log"), "ab")
        # -P 0: no TCP vty listener, everything goes over the unix sockets.
        self.zebra_proc = self.host.popen(
            ["/usr/lib/frr/zebra", "-z", self.zserv, "-f", zconf, "-i", os.path.join(self.rundir, "zebra.pid"),
             "--vty_socket", self.rundir, "-P", "0"],
            stdout=self._zout, stderr=subprocess.STDOUT, cwd=self.workdir)
        wait_for(lambda: os.path.exists(self.zserv) or self.zebra_proc.poll() is not None, 20,
                 what="zebra socket")
        if self.zebra_proc.poll() is not None:
            raise LabError(f"zebra exited: {open(self.path('zebra.stdout.log'), errors='replace').read()}")
        self._spawn(["/usr/lib/frr/bgpd", "-z", self.zserv, "-n", "-S", "-f", self.conf,
                     "-i", os.path.join(self.rundir, "bgpd.pid"), "--vty_socket", self.rundir, "-P", "0"])
        self._wait_ready(lambda: self.vtysh("show bgp summary json").returncode == 0)
        return self

    def stop(self, timeout: float = 5) -> None:
        super().stop(timeout)
        if self.zebra_proc is not None and self.zebra_proc.poll() is None:
            try:
                os.killpg(self.zebra_proc.pid, signal.SIGTERM)
                self.zebra_proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.zebra_proc.pid, signal.SIGKILL)
                self.zebra_proc.wait(timeout=5)
            except ProcessLookupError:
                pass

    def _close_files(self) -> None:
        super()._close_files()
        if getattr(self, "_zout", None) is not None:
            self._zout.close()
            self._zout = None

    def vtysh(self, *commands: str, check: bool = False) -> subprocess.CompletedProcess:
        argv = ["vtysh", "--vty_socket", self.rundir, "-d", "bgpd"]
        for c in commands:
            argv += ["-c", c]
        res = self.host.run(argv, check=check)
        # vtysh exits 0 even for "% Unknown command" in some paths
        if check and res.stdout.lstrip().startswith("%"):
            raise LabError(f"vtysh {commands}: {res.stdout}")
        return res

    def configure(self, *lines: str) -> None:
        """Run configuration commands (as if typed after `configure`)."""
        res = self.vtysh("configure terminal", *lines, check=True)
        bad = [l for l in res.stdout.splitlines() if l.startswith("%")]
        if bad:
            raise LabError(f"vtysh rejected {lines}: {bad}")

    # -- queries -------------------------------------------------------------
    def neighbors_json(self) -> dict:
        return json.loads(self.vtysh("show bgp neighbors json", check=True).stdout or "{}")

    def neighbor_state(self, peer_ip: str) -> str:
        want = ipaddress.ip_address(peer_ip)
        for addr, info in self.neighbors_json().items():
            try:
                if ipaddress.ip_address(addr) == want:
                    return info.get("bgpState", "unknown").lower()
            except ValueError:
                continue
        return "unknown"

    def rib(self, family: str = "ipv4", include_local: bool = False) -> dict:
        summary = json.loads(self.vtysh(f"show bgp {family} unicast json", check=True).stdout or "{}")
        wanted = []
        for prefix, paths in (summary.get("routes") or {}).items():
            for p in paths:
                if p.get("bestpath") and p.get("valid"):
                    local = p.get("peerId") in (None, "(unspec)", "0.0.0.0", "::")
                    if include_local or not local:
                        wanted.append(prefix)
                    break
        if not wanted:
            return {}
        # 8.4 has no "detail json" for the whole table (communities are only
        # in the per-prefix view): ask for every prefix in ONE vtysh run and
        # split the concatenated JSON documents.
        out = {}
        for i in range(0, len(wanted), 200):
            chunk = wanted[i:i + 200]
            text = self.vtysh(*[f"show bgp {family} unicast {p} json" for p in chunk], check=True).stdout
            dec = json.JSONDecoder()
            pos = 0
            while True:
                while pos < len(text) and text[pos].isspace():
                    pos += 1
                if pos >= len(text):
                    break
                doc, pos = dec.raw_decode(text, pos)
                r = self._norm_prefix(doc)
                if r is not None:
                    out[doc.get("prefix")] = r
        return out

    @staticmethod
    def _norm_prefix(doc: dict) -> Optional[dict]:
        for p in doc.get("paths", []):
            best = p.get("bestpath")
            if not (isinstance(best, dict) and best.get("overall")):
                continue
            asp = p.get("aspath") or {}
            if asp.get("segments") is not None:
                as_path = [int(a) for seg in asp["segments"] for a in seg.get("list", [])]
            else:
                as_path = [int(a) for a in re.findall(r"\d+", asp.get("string", ""))]
            nh = None
            for h in p.get("nexthops", []):
                if h.get("scope", "global") == "global":
                    nh = h.get("ip")
                    break
            comms = (p.get("community") or {}).get("list") or (p.get("community") or {}).get("string", "").split()
            large = (p.get("largeCommunity") or {}).get("list") or \
                (p.get("largeCommunity") or {}).get("string", "").split()
            return route(nh, as_path, _ORIGINS.get(str(p.get("origin", "igp")).lower(), "igp"), p.get("metric"),
                         p.get("locPrf"), comms, large)
        return None

    # -- runtime changes ----------------------------------------------------
    def announce(self, prefix: str, next_hop: Optional[str] = None, **attrs) -> None:
        _check_doc_addr(prefix)
        r = Route(prefix, next_hop, **attrs)
        if prefix in self.routes:
            self.withdraw(prefix)
        self.routes[prefix] = r
        rm = self._route_map(r)
        self.configure(*rm, f"router bgp {self.asn}", f"address-family {r.family} unicast",
                       f"network {prefix} route-map {self._rmaps[prefix]}")

    def withdraw(self, prefix: str) -> None:
        self.routes.pop(prefix, None)
        rm = self._rmaps.pop(prefix, None)
        self.configure(f"router bgp {self.asn}", f"address-family {_family_of(prefix)} unicast",
                       f"no network {prefix}", *( [f"no route-map {rm}"] if rm else []))

    def disable(self, peer_ip: str, message: Optional[str] = None) -> None:
        self.configure(f"router bgp {self.asn}",
                       f"neighbor {peer_ip} shutdown" + (f" message {message}" if message else ""))

    def enable(self, peer_ip: str) -> None:
        self.configure(f"router bgp {self.asn}", f"no neighbor {peer_ip} shutdown")


# --------------------------------------------------------------------------
# ExaBGP


# ExaBGP talks to "processes" over their stdin/stdout.  This helper records
# everything ExaBGP says (JSON, one object a line) to a file the test reads,
# and relays lines written to a FIFO by the test to ExaBGP as API commands.
_EXABGP_API_HELPER = r'''
import os, sys, threading

events_path, fifo_path = sys.argv[1], sys.argv[2]

def record():
    with open(events_path, "a") as out:
        for line in sys.stdin:
            out.write(line)
            out.flush()
    os._exit(0)  # ExaBGP went away: so do we

threading.Thread(target=record, daemon=True).start()
# O_RDWR keeps one writer (ourselves) attached, so readline() never sees EOF
# between two test writes and the test can open it O_NONBLOCK at any time.
fd = os.open(fifo_path, os.O_RDWR)
with os.fdopen(fd, "r") as cmds:
    for line in cmds:
        sys.stdout.write(line)
        sys.stdout.flush()
'''


class ExaBGP(Daemon):
    """ExaBGP 4.2 with an API process that records received messages as
    JSON (``events()``) and forwards ``announce``/``withdraw`` commands.

    Neighbor.options: ``asn4`` (False -> ``capability { asn4 disable; }``,
    i.e. a 2-octet-only speaker), ``capability`` (extra lines in the
    capability block), ``extra`` (extra lines in the neighbor block),
    ``listen`` (accept incoming connections; default = ``passive``).

    ExaBGP sends AS_PATH exactly as given (it only supplies ``[own AS]``
    when there is none), so announce() prepends the own ASN for eBGP
    unless ``raw_as_path=True``.
    """

    kind = "exabgp"
    binaries = ("exabgp",)

    def __init__(self, host, asn, router_id=None, neighbors=(), routes=(), extra_config="", env=None):
        super().__init__(host, asn, router_id, neighbors, routes, extra_config)
        self.conf = self.path("exabgp.conf")
        self.events_file = self.path("events.jsonl")
        self.fifo = self.path("cmd.fifo")
        self.helper = self.path("api_helper.py")
        self.env_extra = dict(env or {})

    def _ebgp(self) -> bool:
        return any(int(n.asn) != self.asn for n in self.neighbors) or not self.neighbors

    def _route_text(self, r: Route, raw_as_path: bool = False) -> str:
        parts = [f"route {r.prefix}", f"next-hop {self._route_next_hop(r)}", f"origin {r.origin}"]
        if r.as_path:
            path = [int(a) for a in r.as_path]
            if not raw_as_path and self._ebgp():
                path = [self.asn] + path
            parts.append("as-path [ " + " ".join(map(str, path)) + " ]")
        if r.med is not None:
            parts.append(f"med {int(r.med)}")
        if r.local_pref is not None:
            parts.append(f"local-preference {int(r.local_pref)}")
        if r.communities:
            parts.append("community [ " + " ".join(r.communities) + " ]")
        if r.large_communities:
            parts.append("large-community [ " + " ".join(r.large_communities) + " ]")
        return " ".join(parts)

    def config_text(self) -> str:
        py = sys.executable or "/usr/bin/python3"
        out = ["process lab {", f"  run {py} {self.helper} {self.events_file} {self.fifo};", "  encoder json;", "}"]
        for n in self.neighbors:
            o = n.options
            out += [f"neighbor {n.address} {{", f"  router-id {self.router_id};",
                    f"  local-address {self._local_addr(n)};", f"  local-as {self.asn};", f"  peer-as {int(n.asn)};"]
            if n.description:
                out.append(f"  description {json.dumps(n.description)};")
            if n.hold_time is not None:
                out.append(f"  hold-time {int(n.hold_time)};")
            if n.passive:
                out.append("  passive true;")
            # ExaBGP only accepts incoming sessions on a per-neighbor listener.
            if o.get("listen", n.passive):
                out.append("  listen 179;")
            if n.password:
                out.append(f"  md5-password {json.dumps(n.password)};")
            caps = []
            if o.get("asn4") is False:
                caps.append("asn4 disable;")
            caps += [l.strip() for l in o.get("capability", "").splitlines() if l.strip()]
            if caps:
                out.append("  capability { " + " ".join(caps) + " }")
            out.append("  family { " + " ".join(f"{f} unicast;" for f in n.afs()) + " }")
            out += ["  api {", "    processes [ lab ];", "    neighbor-changes;",
                    "    receive { parsed; update; notification; open; refresh; }", "  }"]
            statics = [r for r in self.routes.values() if r.family in n.afs()]
            if statics:
                out.append("  static {")
                out += ["    " + self._route_text(r) + ";" for r in statics]
                out.append("  }")
            for line in o.get("extra", "").splitlines():
                out.append("  " + line.strip())
            out.append("}")
        if self.extra_config:
            out.append(self.extra_config)
        return "\n".join(out) + "\n"

    def start(self) -> "ExaBGP":
        self._write("api_helper.py", _EXABGP_API_HELPER)
        self._write("exabgp.conf", self.config_text())
        open(self.events_file, "a").close()
        if not os.path.exists(self.fifo):
            os.mkfifo(self.fifo, 0o600)
        env = {
            # ExaBGP's defaults are for a system service: drop to "nobody"
            # (who cannot write our temp dir nor bind 179), log to stdout,
            # create a CLI FIFO in /run/exabgp, ack every API command.
            "exabgp.daemon.user": "root",
            "exabgp.daemon.drop": "false",
            "exabgp.daemon.daemonize": "false",
            "exabgp.log.destination": self.logfile,
            "exabgp.log.level": "INFO",
            "exabgp.api.ack": "false",
            "exabgp.api.cli": "false",
            # no global listener; passive neighbors get their own ("listen")
            "exabgp.tcp.bind": "",
            "exabgp.api.respawn": "true",
        }
        env.update(self.env_extra)
        self._spawn(["exabgp", self.conf], env=env)
        # ready once the helper is attached to the FIFO
        self._wait_ready(self._fifo_ready)
        return self

    def _fifo_ready(self) -> bool:
        try:
            fd = os.open(self.fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            return False  # ENXIO: no reader yet
        os.close(fd)
        return True

    def send(self, command: str) -> None:
        """Send a raw ExaBGP API command (e.g. ``announce route ...``)."""
        self._ensure_running()
        wait_for(self._fifo_ready, 10, what="exabgp API helper")
        fd = os.open(self.fifo, os.O_WRONLY | os.O_NONBLOCK)
        try:
            os.write(fd, (command.strip() + "\n").encode())
        finally:
            os.close(fd)

    def events(self, type: Optional[str] = None) -> list:
        """Every JSON message ExaBGP reported (optionally of one ``type``:
        "state", "update", "notification", "open", ...)."""
        out = []
        try:
            with open(self.events_file, errors="replace") as f:
                for line in f:
                    line = line.strip()
                    if not line.startswith("{"):
                        continue
                    try:
                        ev = json.loads(line)
                    except ValueError:
                        continue
                    if type is None or ev.get("type") == type:
                        out.append(ev)
        except FileNotFoundError:
            pass
        return out

    def notifications(self) -> list:
        """[{"peer", "direction", "code", "subcode", "data"}] for every
        NOTIFICATION seen (data is ExaBGP's hex string, "0x" when empty)."""
        out = []
        for e in self.events("notification"):
            n = e.get("neighbor", {})
            info = dict(n.get("notification") or n.get("message", {}).get("notification") or {})
            info["peer"] = self._peer(e)
            info["direction"] = n.get("direction")
            out.append(info)
        return out

    def log_text(self) -> str:
        return super().log_text() + "\n" + "".join(json.dumps(e) + "\n" for e in self.events())

    @staticmethod
    def _peer(ev: dict) -> Optional[str]:
        try:
            return str(ipaddress.ip_address(ev["neighbor"]["address"]["peer"]))
        except (KeyError, ValueError):
            return None

    def neighbor_state(self, peer_ip: str) -> str:
        want = str(ipaddress.ip_address(peer_ip))
        state = "idle"
        for ev in self.events("state"):
            if self._peer(ev) == want:
                s = ev["neighbor"].get("state")
                state = {"up": "established", "connected": "connect", "down": "idle"}.get(s, s)
        return state

    def rib(self, family: str = "ipv4") -> dict:
        """Replay received UPDATEs (dropping a peer's routes when its session
        goes down) into {prefix: route}."""
        per_peer: dict = {}
        for ev in self.events():
            peer = self._peer(ev)
            if ev.get("type") == "state" and ev["neighbor"].get("state") == "down":
                per_peer.pop(peer, None)
                continue
            if ev.get("type") != "update":
                continue
            upd = ev["neighbor"].get("message", {}).get("update")
            if not upd:
                continue
            table = per_peer.setdefault(peer, {})
            attrs = upd.get("attribute", {})
            for fam, by_nh in (upd.get("announce") or {}).items():
                if not fam.startswith(family + " unicast"):
                    continue
                seen = set()
                for nh, nlris in by_nh.items():
                    for n in nlris:
                        prefix = n["nlri"] if isinstance(n, dict) else n
                        # An IPv6 NLRI is listed once per next hop (global
                        # and link-local): keep the global one.
                        if prefix in seen and nh.lower().startswith("fe80"):
                            continue
                        seen.add(prefix)
                        table[prefix] = self._norm(nh, attrs)
            for fam, nlris in (upd.get("withdraw") or {}).items():
                if not fam.startswith(family + " unicast"):
                    continue
                for n in nlris:
                    table.pop(n["nlri"] if isinstance(n, dict) else n, None)
        out = {}
        for table in per_peer.values():
            out.update(table)
        return out

    @staticmethod
    def _norm(nh: str, a: dict) -> dict:
        as_path = []
        ap = a.get("as-path")
        if isinstance(ap, dict):  # newer encodings: {"0": {"element": ..., "value": [...]}}
            for seg in ap.values():
                as_path += seg.get("value", [])
        elif ap:
            as_path = list(ap)
        for s in a.get("as-set") or []:
            as_path.append(s)
        return route(nh.split(",")[0], as_path, a.get("origin", "igp"), a.get("med"), a.get("local-preference"),
                     [f"{c[0]}:{c[1]}" for c in a.get("community", [])],
                     [f"{c[0]}:{c[1]}:{c[2]}" for c in a.get("large-community", [])])

    def announce(self, prefix: str, next_hop: Optional[str] = None, raw_as_path: bool = False, **attrs) -> None:
        _check_doc_addr(prefix)
        r = Route(prefix, next_hop, **attrs)
        self.routes[prefix] = r
        self.send("announce " + self._route_text(r, raw_as_path))

    def withdraw(self, prefix: str) -> None:
        r = self.routes.pop(prefix, None) or Route(prefix)
        self.send(f"withdraw route {prefix} next-hop {self._route_next_hop(r)}")

    def disable(self, peer_ip: str, message: Optional[str] = None) -> None:
        """ExaBGP 4.2 can only tear a session down with ``neighbor X
        teardown <subcode>``: *message* is ignored, the NOTIFICATION always
        carries the communication "Administrative Shutdown"."""
        self.send(f"neighbor {peer_ip} teardown 2")


# --------------------------------------------------------------------------
# OpenBGPD


class OpenBGPD(Daemon):
    """OpenBGPD (portable) ``bgpd -d``, queried with ``bgpctl -j``.

    Its session engine and RDE chroot() into /run/openbgpd (the _openbgpd
    user's home), which a fresh boot does not have: start() creates it.
    The control socket is moved into the daemon's temp dir with the
    ``socket`` statement so instances don't clash.  OpenBGPD filters are
    deny-by-default: the config ends with ``allow from any`` / ``allow to
    any``.  ``fib-update no`` keeps it from touching the namespace's FIB.

    OpenBGPD cannot set an arbitrary AS_PATH on originated routes
    (only ``prepend-self``), so Route.as_path must be empty.

    Neighbor.options: ``multihop`` (int), ``extra`` (lines in the neighbor
    block).
    """

    kind = "openbgpd"
    binaries = ("bgpd", "bgpctl")
    CHROOT = "/run/openbgpd"

    def __init__(self, host, asn, router_id=None, neighbors=(), routes=(), extra_config=""):
        super().__init__(host, asn, router_id, neighbors, routes, extra_config)
        self.conf = self.path("bgpd.conf")
        self.sock = self.path("bgpd.sock")
        self.logfile = self.path("stdout.log")  # -d logs to stderr

    @staticmethod
    def _set_args(r: Route, runtime: bool = False) -> list:
        if r.as_path:
            raise LabError("OpenBGPD cannot originate a route with an arbitrary AS_PATH")
        args = []
        if not runtime:
            args += ["origin", r.origin]
        elif r.origin != "igp":
            # `bgpctl network add` knows no origin argument (7.7)
            raise LabError("OpenBGPD: origin can only be set for routes in the initial config")
        if r.med is not None:
            args += ["med", str(int(r.med))]
        if r.local_pref is not None:
            args += ["localpref", str(int(r.local_pref))]
        for c in r.communities:
            args += ["community", c]
        for c in r.large_communities:
            args += ["large-community", c]
        return args

    def config_text(self) -> str:
        out = [f"AS {self.asn}", f"router-id {self.router_id}", f'socket "{self.sock}"', "fib-update no",
               # default is 120s, see the other helpers
               "connect-retry 2"]
        for fam in ("ipv4", "ipv6"):
            a = self.host.ipv4 if fam == "ipv4" else self.host.ipv6
            if a:
                out.append(f"listen on {a}")
        for r in self.routes.values():
            out.append(f"network {r.prefix} set {{ {' '.join(self._set_args(r))} }}")
        for n in self.neighbors:
            out += [f"neighbor {n.address} {{", f"  remote-as {int(n.asn)}",
                    f"  local-address {self._local_addr(n)}"]
            if n.description:
                out.append(f"  descr {json.dumps(n.description)}")
            if n.passive:
                out.append("  passive")
            if n.password:
                out.append(f"  tcp md5sig password {n.password}")
            if n.hold_time is not None:
                out.append(f"  holdtime {int(n.hold_time)}")
            if n.options.get("multihop"):
                out.append(f"  multihop {int(n.options['multihop'])}")
            # Only the families asked for (OpenBGPD announces both by default
            # on an IPv4 session otherwise).
            for fam, word in (("ipv4", "IPv4"), ("ipv6", "IPv6")):
                out.append(f"  announce {word} {'unicast' if fam in n.afs() else 'none'}")
            for line in n.options.get("extra", "").splitlines():
                out.append("  " + line.strip())
            out.append("}")
        if self.extra_config:
            out.append(self.extra_config)
        out += ["allow from any", "allow to any"]
        return "\n".join(out) + "\n"

    def start(self) -> "OpenBGPD":
        os.makedirs(self.CHROOT, mode=0o755, exist_ok=True)
        self._write("bgpd.conf", self.config_text())
        res = self.host.run(["bgpd", "-n", "-f", self.conf])
        if res.returncode != 0:
            raise LabError(f"bgpd config rejected: {res.stderr}{res.stdout}\n{self.config_text()}")
        self._spawn(["bgpd", "-d", "-v", "-f", self.conf])
        self._wait_ready(lambda: self.bgpctl("show", "summary").returncode == 0)
        return self

    def bgpctl(self, *args: str, check: bool = False) -> subprocess.CompletedProcess:
        return self.host.run(["bgpctl", "-s", self.sock, *args], check=check)

    def neighbor_state(self, peer_ip: str) -> str:
        want = ipaddress.ip_address(peer_ip)
        data = json.loads(self.bgpctl("-j", "show", "neighbor", check=True).stdout or "{}")
        for n in data.get("neighbors", []):
            try:
                if ipaddress.ip_address(n.get("remote_addr", "")) == want:
                    return n.get("state", "unknown").lower()
            except ValueError:
                continue
        return "unknown"

    def rib(self, family: str = "ipv4", include_local: bool = False) -> dict:
        fam = "inet6" if family == "ipv6" else "inet"
        data = json.loads(self.bgpctl("-j", "show", "rib", fam, "detail", check=True).stdout or "{}")
        out = {}
        for r in data.get("rib", []):
            if not r.get("best"):
                continue
            local = (r.get("neighbor") or {}).get("description") == "LOCAL"
            if local and not include_local:
                continue
            # detail JSON always has "metric"; 0 may mean "no MED".
            out[r["prefix"]] = route(r.get("exit_nexthop"), [int(a) for a in re.findall(r"\d+", r.get("aspath", ""))],
                                     _ORIGINS.get(str(r.get("origin", "igp")).lower(), "igp"), r.get("metric"),
                                     r.get("localpref"), r.get("communities", []), r.get("large_communities", []))
        return out

    def announce(self, prefix: str, next_hop: Optional[str] = None, **attrs) -> None:
        _check_doc_addr(prefix)
        r = Route(prefix, next_hop, **attrs)
        self.routes[prefix] = r
        self.bgpctl("network", "add", prefix, *self._set_args(r, runtime=True), check=True)

    def withdraw(self, prefix: str) -> None:
        self.routes.pop(prefix, None)
        self.bgpctl("network", "delete", prefix, check=True)

    def disable(self, peer_ip: str, message: Optional[str] = None) -> None:
        self.bgpctl("neighbor", peer_ip, "down", *([message] if message else []), check=True)

    def enable(self, peer_ip: str) -> None:
        self.bgpctl("neighbor", peer_ip, "up", check=True)
