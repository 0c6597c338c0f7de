"""Route-server path hiding mitigation (RFC 7947 §2.3.2.1) in the lab: the
fastbgp daemon as route server (Euro-IX communities on, ``path-hiding`` at
its default) with four BIRD 2 clients over IPv4 and IPv6, and BIRD 2 as
route server on the same inputs with four more BIRD clients -- BIRD's own
mitigation: a sorted table and ``secondary`` on each client's channel (the
next route in order is tried when the export filter rejects the best).
Each client must receive the same prefixes with the same next hops (and AS
paths) from both route servers, before and after a hidden path is
withdrawn.

``transport``: ``ipv4``, each client has one session per family with each
route server (IPv4 routes over IPv4); ``ipv6`` (issue 12), one session over
IPv6 carrying both families, the IPv4 routes with RFC 8950 next hops (the
clients' IPv6 addresses, passed on unchanged by both route servers).

Needs root and BIRD (fastbgp/testing/lab.py); marked ``interop`` and ``slow``.
"""

import ipaddress
import os
import re
import subprocess
import sys
import textwrap

import pytest

from fastbgp.testing import lab as L
from fastbgp.testing.daemonlab import families_toml, workers_toml

pytestmark = [pytest.mark.interop, pytest.mark.slow, pytest.mark.timeout(150)]

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUNNER = textwrap.dedent("""
    import sys
    import uvloop
    from fastbgp.daemon.process import run_daemon
    uvloop.run(run_daemon(sys.argv[1], api=False, metrics=False, log_level="info"))
""")

RS_AS = 64500
FAMS = ("ipv4", "ipv6")
P1, P2, P3, P4, P5 = ("198.51.100.%d/28" % (16 * i) for i in range(5))

# Client AS -> [(prefix, AS path after the client's own, communities)].
ANNOUNCED = {
    # The best paths (shortest AS path) -- but not to 65003 (P1), nor to
    # 65003 and 65004 (P3).
    65001: [(P1, (), ("0:65003",)), (P2, (), ()), (P3, (), ("0:65003", "0:65004"))],
    # Longer paths for the same prefixes: what the hidden clients get.
    65002: [(P1, (65102,), ()), (P3, (65102,), ()), (P4, (), ())],
    # P2 too, longer: 65001's own best hides it from 65001 (split horizon).
    65003: [(P2, (65103, 65103), ()), (P5, (), ("0:65004",))],
    65004: [],
}


def v6(prefix):
    """198.51.100.X/28 -> 2001:db8:100:X::/64."""
    return str(ipaddress.ip_network("2001:db8:100:%s::/64" % prefix.split("/")[0].split(".")[3]))


def _prefix(prefix, fam):
    return prefix if fam == "ipv4" else v6(prefix)


def _routes(asn):
    return [L.Route(_prefix(p, fam), as_path=path, communities=c) for fam in FAMS for p, path, c in ANNOUNCED[asn]]


def _client(host, asn, rs_host, transport):
    nbs = [L.session_neighbor(rs_host.addr(t), RS_AS, fams) for t, fams in L.transport_sessions(transport)]
    return L.Bird(host, asn, routes=_routes(asn), neighbors=nbs).start()


def _fastbgp_config(host, clients, transport):
    lines = ["[global]", "asn = %d" % RS_AS, 'router-id = "%s"' % host.ipv4,
             'listen = ["%s", "[%s]:179"]' % (host.ipv4, host.ipv6),
             "[global.route-server]", "euro-ix-communities = true"]
    for asn, h in clients.items():
        for t, fams in L.transport_sessions(transport):
            lines += ["[[neighbors]]", 'address = "%s"' % h.addr(t), "peer-as = %d" % asn,
                      "route-server-client = true", 'default-import = "accept"', 'default-export = "accept"',
                      "timers = { connect-retry = 2, idle-hold = 1 }", *families_toml(h.addr(t), fams)]
    return "\n".join(lines) + "\n"


def _bird_rs_config(host, clients, transport):
    """BIRD 2 as route server with path hiding mitigation: sorted tables and
    ``secondary`` channels, the Euro-IX "do not announce to" rule in each
    client's export filter (control communities stripped)."""
    out = ["ipv4 table rs4 sorted;", "ipv6 table rs6 sorted;"]
    for asn, h in clients.items():
        for t, fams in L.transport_sessions(transport):
            out += [
                "protocol bgp c%d_%s {" % (asn, t),
                "  local %s as %d;" % (host.addr(t), RS_AS),
                "  neighbor %s as %d;" % (h.addr(t), asn),
                "  rs client;",
                "  connect delay time 1; connect retry time 2; error wait time 1, 5;",
            ]
            for fam in fams:
                table = "rs4" if fam == "ipv4" else "rs6"
                enh = " extended next hop on;" if fam != t else ""  # RFC 8950
                out += [
                    "  %s { table %s; secondary; import all;%s" % (fam, table, enh),
                    "    export filter { if (0,%d) ~ bgp_community then reject; "
                    "bgp_community.delete([(0,*)]); accept; }; };" % asn,
                ]
            out.append("}")
    return "\n".join(out) + "\n"


def _view(client, fam):
    """{prefix: (next hop, AS path)} of every route the client learnt over
    BGP, best or not: a client prefers its own static route for a prefix it
    announces (Bird.rib shows best paths only), yet what the route server
    sent it for that prefix is what path hiding is about."""
    text = client.birdc("show", "route", "table", "master4" if fam == "ipv4" else "master6", "all").stdout
    out = {}
    prefix = cur = None
    for line in text.splitlines():
        m = re.match(r"^(\S+)?\s+\S+\s+\[(\S+)\s", line)
        if not line.startswith("\t") and m and not line.startswith(("BIRD ", "Table ")):
            prefix = m.group(1) or prefix
            cur = {} if m.group(2) in ("n1", "n2") else None
            if cur is not None:
                out[prefix] = cur
            continue
        if cur is None:
            continue
        key, _, val = line.strip().partition(":")
        if key == "BGP.next_hop":
            cur["nh"] = val.split()[0]
        elif key == "BGP.as_path":
            cur["path"] = tuple(int(x) for x in val.split())
    return {p: (r.get("nh"), r.get("path", ())) for p, r in out.items()}


def _expected(asn, clients, fam, transport, withdrawn=()):
    """{prefix: (next hop, AS path)} client ``asn`` should hold: per prefix
    the shortest path among the other clients' that passes its rules."""
    out = {}
    for src, items in ANNOUNCED.items():
        if src == asn:
            continue
        for p, path, comms in items:
            if (src, p) in withdrawn or "0:%d" % asn in comms:
                continue
            cand = (len(path), clients[src].addr(L.next_hop_family(fam, transport)), (src,) + tuple(path))
            key = _prefix(p, fam)
            if key not in out or cand < out[key]:
                out[key] = cand
    return {p: (nh, path) for p, (_n, nh, path) in out.items()}


def _tail(path, n=80):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


@pytest.mark.parametrize("workers", [0, 2], ids=["one-process", "2-workers"])
@pytest.mark.parametrize("transport", L.TRANSPORTS)
def test_route_server_path_hiding_fastbgp_and_bird(transport, workers):
    """``workers = 2`` too (``fastbgp daemon``: a front and two workers,
    each choosing the hidden paths of its half of the prefixes)."""
    if not L.is_root():
        pytest.skip("interop lab needs root (network namespaces)")
    missing = L.missing_binaries("ip", *L.Bird.binaries)
    if missing:
        pytest.skip("not installed: %s" % ", ".join(missing))
    with L.Lab() as lab:
        rs_host = lab.add_host("rs")
        clients = {asn: lab.add_host("h%d" % (asn - 65000)) for asn in ANNOUNCED}
        rsb_host = lab.add_host("rsb")
        bclients = {asn: lab.add_host("k%d" % (asn - 65000)) for asn in ANNOUNCED}
        path = os.path.join(rs_host.workdir, "fastbgp.toml")
        text = _fastbgp_config(rs_host, clients, transport)
        argv = [sys.executable, "-c", RUNNER, path]
        if workers:
            text = workers_toml(text, workers, os.path.join(rs_host.workdir, "api.sock"))
            argv = [sys.executable, "-m", "fastbgp", "daemon", "-c", path]
        with open(path, "w") as fh:
            fh.write(text)
        logpath = os.path.join(rs_host.workdir, "fastbgp.log")
        log = open(logpath, "ab")
        proc = rs_host.popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        try:
            fb = {asn: _client(h, asn, rs_host, transport) for asn, h in clients.items()}
            bird_rs = L.Bird(rsb_host, RS_AS, extra_config=_bird_rs_config(rsb_host, bclients, transport)).start()
            bb = {asn: _client(h, asn, rsb_host, transport) for asn, h in bclients.items()}
            for asn in ANNOUNCED:
                for t, _ in L.transport_sessions(transport):
                    fb[asn].wait_established(rs_host.addr(t), timeout=40)
                    bb[asn].wait_established(rsb_host.addr(t), timeout=40)

            def check(withdrawn=()):
                for asn in ANNOUNCED:
                    for fam in FAMS:
                        for cl, hosts, what, diag in ((fb, clients, "fastbgp", lambda: _tail(logpath)),
                                                      (bb, bclients, "BIRD", bird_rs.log_tail)):
                            want = _expected(asn, hosts, fam, transport, withdrawn)
                            L.wait_for(lambda: _view(cl[asn], fam) == want, timeout=30,
                                       what="AS%d's %s routes from the %s RS" % (asn, fam, what),
                                       on_timeout=lambda: "%s != %s\n%s" % (_view(cl[asn], fam), want, diag()))
                    # Same prefixes and next hops (as host index) from both.
                    for fam in FAMS:
                        nf = L.next_hop_family(fam, transport)
                        a = {p: (_host_of(nh, clients, nf), ap) for p, (nh, ap) in _view(fb[asn], fam).items()}
                        b = {p: (_host_of(nh, bclients, nf), ap) for p, (nh, ap) in _view(bb[asn], fam).items()}
                        assert a == b, (asn, fam, a, b)

            check()
            # The path 65003 and 65004 were given for P1/P3 is withdrawn by
            # 65002: they lose P1 and P3 (the best is unchanged).
            for cl in (fb, bb):
                for fam in FAMS:
                    cl[65002].withdraw(_prefix(P1, fam))
                    cl[65002].withdraw(_prefix(P3, fam))
            check(withdrawn={(65002, P1), (65002, P3)})
            assert proc.poll() is None, _tail(logpath)
        except Exception:
            print(_tail(logpath))
            raise
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()


def _host_of(nh, hosts, fam):
    """The client AS whose address ``nh`` is."""
    for asn, h in hosts.items():
        if ipaddress.ip_address(h.addr(fam)) == ipaddress.ip_address(nh):
            return asn
    return nh
