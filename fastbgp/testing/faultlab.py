"""A namespace lab for fault tests: the real ``fastbgp daemon`` process, a
witness BIRD holding routes both ways, a second BIRD feeding routes, and an
attacker host.

Topology (one :class:`fastbgp.testing.lab.Lab`, addresses picked by it)::

    fb       fastbgp daemon, AS 65000 (``python -m fastbgp daemon -c``),
             JSON log in fb's workdir, API on a unix socket there
    witness  BIRD, AS 65001: two sessions with fb (IPv4 and IPv6, hold 9 s)
             announcing WITNESS_V6_ROUTES IPv6 /48s and WITNESS_V4 to fb,
             and receiving everything fb learnt from src
    src      BIRD, AS 65002: announces SRC_ROUTES IPv4 /32s to fb
    attacker no daemon; its address is a configured passive neighbour of fb
             (AS 65066, idle-hold 1 s without damping, so a reset session
             can be re-opened at once) and it carries a second address
             (``unconfigured``) fb knows nothing about.  Tests open raw
             connections from it with :class:`fastbgp.testing.attacker.RawPeer`.

:class:`FaultLab` starts it all and waits for convergence; then
:meth:`FaultLab.check_witness` asserts that nothing a test did touched the
witness: both BIRD sessions still up since the same second, the daemon
never re-established them, every witness route still in the daemon's
Adj-RIB-In, every src route still at the witness, KEEPALIVEs from BIRD
counted at the negotiated rate, the daemon process alive.
:meth:`FaultLab.api` reads the daemon's HTTP API (stdlib client over the
unix socket), :meth:`FaultLab.log_records` its JSON log: both through
:class:`fastbgp.testing.daemonlab.LabDaemon` (``self.daemon``), which runs
the daemon.

``FaultLab(transport="ipv6")`` runs every BGP session over IPv6 instead:
the witness holds one session with fb over IPv6 carrying both IPv6 unicast
and IPv4 unicast (RFC 8950 IPv6 next hops for the IPv4 routes), src and
the attacker's neighbour carry IPv4 unicast over IPv6, ``attacker``,
``address`` and ``unconfigured`` are IPv6 addresses (2001:db8::/32,
``nodad``), and ``attacker_id`` (the attacker's BGP Identifier and the
NEXT_HOP of its IPv4 routes, RFC 4271 §4.2/§5.1.3: four octets) stays its
IPv4 address.  Under ``transport="ipv4"`` (the default) ``attacker_id`` is
``attacker``.

Used as a module-scoped fixture by tests/interop/test_faults_*.py:
``with FaultLab() as fl: ...`` closes every process and namespace (by pid,
through the Lab) whether the tests passed or not.
"""

from __future__ import annotations

import time
from typing import Optional

from fastbgp.testing import lab as L
from fastbgp.testing.daemonlab import ApiError, LabDaemon, ipv4_unicast_toml

__all__ = ["FaultLab", "ApiError"]

DAEMON_AS = 65000
WITNESS_AS = 65001
SRC_AS = 65002
ATTACKER_AS = 65066
WITNESS_HOLD = 9  # seconds: BIRD drops the session after 9 s without a KEEPALIVE
WITNESS_V6_ROUTES = 20_000  # 2001:db8:1000::/48 upwards
WITNESS_V4 = ("198.51.100.0/25", "198.51.100.128/25")
SRC_ROUTES = 256  # 203.0.113.0/32 .. 203.0.113.255/32


def witness_v6_prefixes(n: int = WITNESS_V6_ROUTES) -> list:
    return ["2001:db8:%x::/48" % (0x1000 + i) for i in range(n)]


def src_prefixes(n: int = SRC_ROUTES) -> list:
    return ["203.0.113.%d/32" % i for i in range(n)]


class FaultLab:
    """The topology above; ``start()``/``close()`` or a ``with`` block."""

    def __init__(self, witness_v6_routes: int = WITNESS_V6_ROUTES, src_routes: int = SRC_ROUTES,
                 extra_neighbors: str = "", transport: str = "ipv4"):
        if transport not in L.TRANSPORTS:
            raise ValueError("transport must be one of %s" % (L.TRANSPORTS,))
        self.transport = transport
        self.n_v6 = witness_v6_routes
        self.n_src = src_routes
        self.extra_neighbors = extra_neighbors
        self.lab = L.Lab()
        self.daemon: Optional[LabDaemon] = None
        self.baseline: dict = {}

    # -- lifecycle ---------------------------------------------------------------
    def __enter__(self) -> "FaultLab":
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.lab.close()

    def start(self, timeout: float = 90) -> "FaultLab":
        lab = self.lab.start()
        self.fb = lab.add_host("fb")
        self.wh = lab.add_host("witness")
        self.sh = lab.add_host("src")
        self.ah = lab.add_host("attacker")
        # A second address on the attacker host, configured nowhere.
        if self.transport == "ipv6":
            self.unconfigured = "2001:db8::%x" % (0xc8 + len(lab.hosts))
            self.ah.run(["ip", "-6", "addr", "add", self.unconfigured + "/64", "dev", L.Host.ifname, "nodad"],
                        check=True)
        else:
            self.unconfigured = "192.0.2.%d" % (200 + len(lab.hosts))
            self.ah.run(["ip", "addr", "add", self.unconfigured + "/24", "dev", L.Host.ifname], check=True)
        self.attacker = self.ah.addr(self.transport)
        self.attacker_id = self.ah.ipv4
        self.address = self.fb.addr(self.transport)
        # (witness address at fb, fb address at the witness, routes fb holds from it)
        if self.transport == "ipv6":
            self.witness_sessions = [(self.wh.ipv6, self.fb.ipv6, self.n_v6 + len(WITNESS_V4))]
        else:
            self.witness_sessions = [(self.wh.ipv4, self.fb.ipv4, len(WITNESS_V4)),
                                     (self.wh.ipv6, self.fb.ipv6, self.n_v6)]
        # `python -m fastbgp daemon -c`, as an operator runs it (API on).
        self.daemon = LabDaemon(self.fb, "", cli=True)
        self.socket_path = self.daemon.socket_path
        self.logpath = self.daemon.logpath
        self.config_path = self.daemon.config_path
        self.proc = self.daemon.start(self.config_text()).proc
        hold = {"hold_time": WITNESS_HOLD}
        if self.transport == "ipv6":
            # One session over IPv6 for both families (RFC 4760, RFC 8950).
            wn = [L.ipv4_neighbor(self.fb.ipv6, DAEMON_AS, families=("ipv4", "ipv6"), **hold)]
        else:
            wn = [L.Neighbor(self.fb.ipv4, DAEMON_AS, **hold), L.Neighbor(self.fb.ipv6, DAEMON_AS, **hold)]
        self.witness = L.Bird(self.wh, WITNESS_AS, neighbors=wn,
                              routes=[L.Route(p) for p in witness_v6_prefixes(self.n_v6)]
                              + [L.Route(p) for p in WITNESS_V4]).start()
        self.src = L.Bird(self.sh, SRC_AS, neighbors=[L.ipv4_neighbor(self.address, DAEMON_AS)],
                          routes=[L.Route(p) for p in src_prefixes(self.n_src)]).start()
        deadline = time.monotonic() + timeout
        try:
            for _, addr, _ in self.witness_sessions:
                self.witness.wait_established(addr, timeout=max(1, deadline - time.monotonic()))
            self.src.wait_established(self.address, timeout=max(1, deadline - time.monotonic()))
            L.wait_for(self._converged, max(1, deadline - time.monotonic()), interval=0.5,
                       what="witness and src routes through the daemon", on_timeout=self.describe)
        except Exception:
            raise L.LabError(self.describe()) from None
        self.baseline = self._snapshot()
        return self

    def config_text(self) -> str:
        w = self.wh
        lines = [
            "[global]", "asn = %d" % DAEMON_AS, 'router-id = "%s"' % self.fb.ipv4,
            'listen = ["%s", "%s"]' % (self.fb.ipv4, self.fb.ipv6),
            self.daemon.api_toml().rstrip("\n"),
            "[global.log]", 'level = "info"', "json = true",
        ]
        wtimers = "timers = { hold-time = %d, connect-retry = 2, idle-hold = 1 }" % WITNESS_HOLD
        if self.transport == "ipv6":
            witness = [(w.ipv6, WITNESS_AS, ['families = ["ipv4-unicast", "ipv6-unicast"]',
                                             "extended-next-hop = true", wtimers])]
        else:
            witness = [(w.ipv4, WITNESS_AS, [wtimers]), (w.ipv6, WITNESS_AS, [wtimers])]
        src = self.sh.addr(self.transport)
        for addr, asn, more in (*witness,
                                (src, SRC_AS, ["timers = { connect-retry = 2, idle-hold = 1 }",
                                               *ipv4_unicast_toml(src)]),
                                (self.attacker, ATTACKER_AS,
                                 ["passive = true", "damp-peer-oscillations = false",
                                  "timers = { idle-hold = 1, max-idle-hold = 1 }", *ipv4_unicast_toml(self.attacker)])):
            lines += ["[[neighbors]]", 'address = "%s"' % addr, "peer-as = %d" % asn,
                      'default-import = "accept"', 'default-export = "accept"', *more]
        return "\n".join(lines) + "\n" + self.extra_neighbors

    # -- the daemon's API and log ------------------------------------------------------
    def api(self, method: str, path: str, body: Optional[dict] = None, timeout: float = 10.0):
        return self.daemon.api(method, path, body, timeout)

    def neighbor(self, address: str) -> dict:
        return self.api("GET", "/v1/neighbors/%s" % address)

    def rib(self, family: str, prefix: str) -> list:
        """Loc-RIB paths for ``prefix`` (exact match)."""
        return self.api("GET", "/v1/rib/%s?prefix=%s" % (family, prefix))

    def log_records(self, since: int = 0) -> list:
        return self.daemon.log_records(since)

    def log_mark(self) -> int:
        return self.daemon.log_mark()

    def log_tail(self, n: int = 40) -> str:
        return self.daemon.log_tail(n)

    def describe(self) -> str:
        parts = ["--- fastbgp log tail ---", self.log_tail()]
        for d in (getattr(self, "witness", None), getattr(self, "src", None)):
            if d is not None:
                parts.append(d.log_tail(15))
        return "\n".join(parts)

    def daemon_alive(self) -> bool:
        return self.daemon is not None and self.daemon.alive()

    # -- witness -----------------------------------------------------------------------
    def _converged(self) -> bool:
        if not self.daemon_alive():
            raise L.DaemonExited("fastbgp exited:\n" + self.describe())
        for addr, _, count in self.witness_sessions:
            if self.neighbor(addr)["prefixes_received"] != count:
                return False
        got = set(self.witness.rib("ipv4"))
        return set(src_prefixes(self.n_src)) <= got

    def _bird_since(self) -> dict:
        """{daemon address: 'since' column of BIRD's protocol} (the time the
        session last changed state, ISO to the millisecond)."""
        out = {}
        for _, addr, _ in self.witness_sessions:
            lines = self.witness.protocol_info(addr).splitlines()
            # "Name Proto Table State Since Info" then the protocol's line:
            # name BGP --- up 2026-12-05 05:50:01.123 Established
            i = next(k for k, line in enumerate(lines) if line.startswith("Name"))
            f = lines[i + 1].split()
            out[addr] = (f[3], " ".join(f[4:6]), " ".join(f[6:]))
        return out

    def _snapshot(self) -> dict:
        snap = {"time": time.monotonic(), "bird": self._bird_since()}
        for addr, _, _ in self.witness_sessions:
            n = self.neighbor(addr)
            snap[addr] = {"established_count": n["established_count"],
                          "keepalives": n["counters"]["received_keepalive"],
                          "hold_time": n.get("hold_time"), "keepalive": n.get("keepalive")}
        return snap

    def check_witness(self) -> None:
        """AssertionError unless the witness sessions and routes are exactly
        as they were when the lab converged (see the module docstring)."""
        assert self.daemon_alive(), "fastbgp exited:\n" + self.describe()
        base = self.baseline
        now = self._snapshot()
        assert now["bird"] == base["bird"], "BIRD witness sessions changed: %r -> %r\n%s" % (
            base["bird"], now["bird"], self.describe())
        for addr, state in now["bird"].items():
            assert state[0] == "up" and "Established" in state[2], "witness session with %s: %r" % (addr, state)
        elapsed = now["time"] - base["time"]
        for addr, _, count in self.witness_sessions:
            n = self.neighbor(addr)
            assert n["state"] == "established", "daemon: witness %s is %s" % (addr, n["state"])
            assert n["established_count"] == base[addr]["established_count"], "witness %s re-established" % addr
            assert n["prefixes_received"] == count, "witness %s: %d of %d routes held" % (
                addr, n["prefixes_received"], count)
            # RFC 4271 §4.4: BIRD sends a KEEPALIVE every hold/3 seconds; allow
            # one interval of phase and one of jitter (BIRD spreads them).
            ka = n["counters"]["received_keepalive"] - base[addr]["keepalives"]
            interval = base[addr]["keepalive"] or WITNESS_HOLD / 3
            assert ka >= int(elapsed / interval) - 2, "witness %s: %d KEEPALIVEs in %.1f s (every %s s)" % (
                addr, ka, elapsed, interval)
        missing = set(src_prefixes(self.n_src)) - set(self.witness.rib("ipv4"))
        assert not missing, "witness lost %d routes learnt through the daemon, e.g. %s" % (
            len(missing), sorted(missing)[:3])
