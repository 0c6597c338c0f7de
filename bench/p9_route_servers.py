"""FRR and OpenBGPD as IXP route servers for bench/scale.py's scenario P9.

The Euro-IX control communities, as the BIRD filters of
tests/interop/test_route_server_ixp.py apply them (``rs`` = the route
server's AS, ``peer`` = the client a route is being sent to):

* ``0:peer`` or large ``rs:0:peer``: not to that client (checked first);
* ``rs:peer`` or large ``rs:1:peer``: to that client, whatever else the
  route carries;
* any other ``rs:x`` or large ``rs:1:x``: only to the clients so named, so
  not to this one;
* ``0:rs`` or large ``rs:0:0``: to no client;
* the control communities (``0:*``, ``rs:*``, large ``rs:0:*`` and
  ``rs:1:*``) are removed from what is sent.

Both classes reuse fastbgp/testing/lab.py's process handling (start, stop,
queries) and only write their own configuration: ``config_text`` is the
classes' configuration hook.  Clients are ``{asn: (ipv4, ipv6)}``; every
client has one session per family and the route server is passive.
"""

from __future__ import annotations

from fastbgp.testing import lab as L


class FrrRouteServer(L.FRR):
    """FRR bgpd: ``neighbor X route-server-client`` (RFC 7947: no AS
    prepended, next hop kept), one peer group per family, no RFC 8212
    default deny, and one outbound route-map per client AS (which also
    keeps a client's own routes from going back to it): FRR's
    community lists have no "the neighbor's AS" wildcard, so each client
    gets its own lists (and so its own update group)."""

    READY_TIMEOUT = 300  # seconds: bgpd reads 400 neighbors and 200 route-maps before its vty answers

    def __init__(self, host, rs_as, clients):
        super().__init__(host, rs_as)
        self.clients = dict(clients)

    def _wait_ready(self, check, timeout=20):
        # lab.FRR.start() waits 20 s for the vty; this configuration needs longer.
        super()._wait_ready(check, max(timeout, self.READY_TIMEOUT))

    def wait_accepting(self, timeout: float = 120) -> None:
        """Until no session is Idle: bgpd holds its peers Idle for a while
        after reading the configuration and closes the connections it
        accepts meanwhile (bench/scale.py's clients dial once)."""
        import json

        def ready():
            data = json.loads(self.vtysh("show bgp summary json").stdout or "{}")
            peers = [p for fam in data.values() if isinstance(fam, dict) for p in fam.get("peers", {}).values()]
            return len(peers) == 2 * len(self.clients) and all(p.get("state") != "Idle" for p in peers)

        L.wait_for(ready, timeout, interval=1.0, what="%r to accept its clients" % self)

    def _policy(self) -> list:
        rs = self.asn
        out = [
            "bgp community-list standard RS-NONE permit 0:%d" % rs,
            "bgp large-community-list standard RS-LNONE permit %d:0:0" % rs,
            # `_` is FRR's community-regex boundary (start, end, space).
            "bgp community-list expanded RS-ONLY-ANY permit _%d:[0-9]+_" % rs,
            "bgp large-community-list expanded RS-LONLY-ANY permit _%d:1:[0-9]+_" % rs,
            # comm-list delete tests each community on its own.
            "bgp community-list expanded RS-STRIP permit ^(0|%d):[0-9]+$" % rs,
            "bgp large-community-list expanded RS-LSTRIP permit ^%d:(0|1):[0-9]+$" % rs,
        ]
        for asn in self.clients:
            out += [
                "bgp community-list standard RS-NOT-%d permit 0:%d" % (asn, asn),
                "bgp large-community-list standard RS-LNOT-%d permit %d:0:%d" % (asn, rs, asn),
                "bgp community-list standard RS-TO-%d permit %d:%d" % (asn, rs, asn),
                "bgp large-community-list standard RS-LTO-%d permit %d:1:%d" % (asn, rs, asn),
            ]
            # FRR 8.4 sent each client its own routes back (seen in this
            # bench, `neighbor X sender-as-path-loop-detection` set or not),
            # leaving them to the client's AS path loop check (RFC 4271
            # §9.1.2): a route whose AS path holds the client's AS is not sent.
            out.append("bgp as-path access-list RS-LOOP-%d seq 5 permit _%d_" % (asn, asn))
            m = "route-map RS-OUT-%d" % asn
            out += [
                "%s deny 5" % m, " match as-path RS-LOOP-%d" % asn,
                "%s deny 10" % m, " match community RS-NOT-%d" % asn,
                "%s deny 20" % m, " match large-community RS-LNOT-%d" % asn,
                "%s permit 30" % m, " match community RS-TO-%d" % asn, " on-match goto 100",
                "%s permit 40" % m, " match large-community RS-LTO-%d" % asn, " on-match goto 100",
                "%s deny 50" % m, " match community RS-ONLY-ANY",
                "%s deny 60" % m, " match large-community RS-LONLY-ANY",
                "%s deny 70" % m, " match community RS-NONE",
                "%s deny 80" % m, " match large-community RS-LNONE",
                "%s permit 100" % m, " set comm-list RS-STRIP delete", " set large-comm-list RS-LSTRIP delete",
                "exit",
            ]
        return out

    def config_text(self) -> str:
        out = ["hostname " + self.host.name, "log file %s informational" % self.logfile,
               "log timestamp precision 3",
               # One northbound commit for the whole file: bgpd otherwise
               # commits (and validates the whole YANG tree) after every
               # route-map and list line, minutes for 200 route-maps.
               "XFRR_start_configuration"]
        out += self._policy()
        out += ["router bgp %d" % self.asn, " bgp router-id %s" % self.router_id,
                " no bgp ebgp-requires-policy", " no bgp network import-check", " no bgp default ipv4-unicast",
                " bgp log-neighbor-changes"]
        for group in ("RS4", "RS6"):
            out += [" neighbor %s peer-group" % group, " neighbor %s passive" % group]
        for asn, addrs in self.clients.items():
            for a, group in zip(addrs, ("RS4", "RS6")):
                out += [" neighbor %s remote-as %d" % (a, asn), " neighbor %s peer-group %s" % (a, group)]
        for fam, group, idx in (("ipv4", "RS4", 0), ("ipv6", "RS6", 1)):
            out += [" address-family %s unicast" % fam, "  neighbor %s activate" % group,
                    "  neighbor %s route-server-client" % group]
            for asn, addrs in self.clients.items():
                out.append("  neighbor %s route-map RS-OUT-%d out" % (addrs[idx], asn))
            out.append(" exit-address-family")
        out += ["exit", "XFRR_end_configuration"]
        return "\n".join(out) + "\n"


class OpenbgpdRouteServer(L.OpenBGPD):
    """OpenBGPD bgpd: ``transparent-as yes`` and ``set nexthop no-modify``
    (RFC 7947 §2.2.2 and §2.2.1), one group per family, and filter rules
    written once for every client with bgpd.conf(5)'s ``neighbor-as`` and
    ``local-as`` macros.  The last matching rule decides unless ``quick``,
    so every Euro-IX rule is ``quick`` and the order above is the order of
    the rules; the strip is the ``set`` of the allowing rules."""

    def __init__(self, host, rs_as, clients):
        super().__init__(host, rs_as)
        self.clients = dict(clients)

    def _rules(self) -> list:
        rs = self.asn
        strip = ("set { community delete 0:*, community delete %d:*, large-community delete %d:0:*, "
                 "large-community delete %d:1:* }" % (rs, rs, rs))
        return [
            "allow from ebgp",
            "deny quick to ebgp community 0:neighbor-as",
            "deny quick to ebgp large-community local-as:0:neighbor-as",
            "allow quick to ebgp community local-as:neighbor-as " + strip,
            "allow quick to ebgp large-community local-as:1:neighbor-as " + strip,
            "deny quick to ebgp community local-as:*",
            "deny quick to ebgp large-community local-as:1:*",
            "deny quick to ebgp community 0:local-as",
            "deny quick to ebgp large-community local-as:0:0",
            "allow quick to ebgp " + strip,
        ]

    def config_text(self) -> str:
        h = self.host
        out = ["AS %d" % self.asn, "router-id %s" % self.router_id, 'socket "%s"' % self.sock, "fib-update no",
               "transparent-as yes", "listen on %s" % h.ipv4, "listen on %s" % h.ipv6]
        for name, idx, v4, v6 in (("rs4", 0, "unicast", "none"), ("rs6", 1, "none", "unicast")):
            out += ['group "%s" {' % name, "  passive", "  announce IPv4 %s" % v4, "  announce IPv6 %s" % v6,
                    "  set nexthop no-modify"]
            for asn, addrs in self.clients.items():
                out.append("  neighbor %s { remote-as %d }" % (addrs[idx], asn))
            out.append("}")
        out += self._rules()
        return "\n".join(out) + "\n"
