"""fastbgp's RTR client over SSH (the "rpki-rtr" subsystem, RFC 8210 §9.1)
against stayrtr's SSH server, in the namespace lab: stayrtr serves a JSON
file from host "a" (192.0.2.1) over TCP and SSH at once, clients run in
host "b" and print every change they report as a JSON line.

The host key and the client keys are made with asyncssh in the lab's
temporary directory; HOME points there too, so nothing reads ~/.ssh.

* ``test_ssh_sync_password_key_and_tcp``: three clients (SSH with a
  password and a pinned host key, SSH with a key and a known_hosts file,
  plain TCP) get the same 3,000 VRPs (several reads, several SSH packets);
  a file change reaches both SSH clients as Serial Notify then an
  incremental answer; the cache down and back: WARNING, then a new session
  whose full answer reports only the difference.  Over IPv4 and IPv6
  transport (issue 12).
* ``test_ssh_refusals_and_failover``: a wrong password and an unknown host
  key are WARNINGs naming the cache and the reason, retried every retry
  interval, no data and no crash; a client preferring an SSH cache falls
  back to a TCP cache while the SSH one is down and switches back to it.
* ``test_daemon_over_ssh``: the daemon started as an operator does
  (``python -m fastbgp daemon``) with an SSH cache in its ``[rpki]``:
  ``GET /v1/rpki`` and ``fastbgp rpki`` show the cache up over SSH with
  the file's VRP counts; the cache stopped, its data expires.
"""

import ipaddress
import json
import os
import random
import signal
import subprocess
import sys

import pytest

from fastbgp.testing import lab as L
from fastbgp.testing.daemonlab import LabDaemon, global_toml

from .test_rtr_stayrtr import Client as StayrtrClient, hexed, hostport, require_stayrtr, vrp

pytestmark = [pytest.mark.interop, pytest.mark.slow, pytest.mark.timeout(90)]

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TCP_PORT = 8282
SSH_PORT = 2222
PASSWORD = "rtr-lab-secret"

RUNNER = r"""
import asyncio, json, logging, sys, time
import msgspec
from fastbgp.rpki import client as C

def hexed(vrps):
    return sorted([v[0], v[1].hex(), v[2], v[3], v[4]] for v in vrps)

class Printer(C.RtrObserver):
    def emit(self, **kw):
        kw["at"] = time.monotonic()
        sys.stdout.write(json.dumps(kw) + "\n")
        sys.stdout.flush()
    def vrps_changed(self, added, removed):
        self.emit(t="vrps", added=hexed(added), removed=hexed(removed), total=len(client.vrps))
    def cache_changed(self, st):
        self.emit(t="cache", port=st.port, transport=st.transport, state=st.state, serial=st.serial,
                  session=st.session_id, source=client.source is not None and client.source.status is st)

async def main():
    global client
    client = C.RtrClient([msgspec.convert(c, C.CacheSpec) for c in json.loads(sys.argv[1])], Printer())
    await client.run()

logging.basicConfig(level=logging.DEBUG, stream=sys.stderr, format="%(levelname)s %(message)s")
asyncio.run(main())
"""


def _require():
    require_stayrtr()
    pytest.importorskip("asyncssh")


def many_roas(n, seed=11):
    """``n`` distinct VRPs of both families (TEST-NET and documentation
    space, private ASNs)."""
    rnd = random.Random(seed)
    out = {}
    while len(out) < n:
        if rnd.random() < 0.6:  # in 198.18.0.0/15 (RFC 2544)
            net = ipaddress.ip_network((0xC6120000 | rnd.getrandbits(17), rnd.randint(17, 24)), strict=False)
        else:  # in 2001:db8::/32 (RFC 3849)
            net = ipaddress.ip_network((0x20010DB8 << 96 | rnd.getrandbits(16) << 80, rnd.randint(33, 48)),
                                       strict=False)
        asn = rnd.randint(64496, 64511)
        out[(str(net), asn)] = vrp(str(net), min(net.max_prefixlen, net.prefixlen + rnd.randint(0, 4)), asn)
    return list(out.values())


def keygen(path, comment):
    """An Ed25519 key pair: ``path`` (OpenSSH private key, unencrypted) and
    ``path.pub``; returns the public key line."""
    import asyncssh

    key = asyncssh.generate_private_key("ssh-ed25519", comment=comment)
    key.write_private_key(path)
    key.write_public_key(path + ".pub")
    with open(path + ".pub") as f:
        return f.read().strip()


class Stayrtr:
    """stayrtr serving ``path`` over TCP and/or SSH (password and key
    authentication, the user "rpki")."""

    def __init__(self, host, path, keydir, tcp=True, ssh=True, transport="ipv4"):
        self.host, self.path, self.keydir, self.tcp, self.ssh = host, path, keydir, tcp, ssh
        self.address = host.addr(transport)
        self.proc = None
        self.log = os.path.join(host.workdir, "stayrtr.log")

    def write(self, roas):
        doc = {"metadata": {"buildtime": "2024-01-01T00:00:00Z"}, "roas": roas}
        with open(self.path + ".tmp", "w") as f:
            json.dump(doc, f)
        os.rename(self.path + ".tmp", self.path)  # stayrtr never reads half a file

    def start(self):
        ip = self.address
        # without TCP, stayrtr's plain listener goes to loopback (it always opens one)
        argv = ["stayrtr", "-cache", self.path, "-checktime=false", "-refresh", "1", "-metrics.addr",
                hostport(ip, 9847), "-bind", hostport(ip if self.tcp else "127.0.0.1", TCP_PORT)]
        if self.ssh:
            argv += ["-ssh.bind", hostport(ip, SSH_PORT), "-ssh.key", os.path.join(self.keydir, "host"),
                     "-ssh.method.password", "-ssh.auth.user", "rpki", "-ssh.auth.password", PASSWORD,
                     "-ssh.method.key", "-ssh.auth.key.file", os.path.join(self.keydir, "client.pub")]
        with open(self.log, "ab") as out:
            self.proc = self.host.popen(argv, stdout=out, stderr=subprocess.STDOUT, env=dict(
                os.environ, HOME=self.keydir))
        ports = ([TCP_PORT] if self.tcp else []) + ([SSH_PORT] if self.ssh else [])
        L.wait_for(lambda: all(self.host.run(["ss", "-ltn"]).stdout.count(":%d " % p) for p in ports), 10,
                   what="stayrtr listening", on_timeout=self.tail)
        return self

    def stop(self):
        os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(timeout=10)

    def tail(self):
        with open(self.log, errors="replace") as f:
            return "--- stayrtr ---\n" + "\n".join(f.read().splitlines()[-30:])


def known_hosts(keydir, address, host_pub):
    """A known-hosts file naming the cache's SSH host key (OpenSSH's
    ``[address]:port key`` form for a port other than 22)."""
    known = os.path.join(keydir, "known_hosts")
    with open(known, "w") as f:
        f.write("[%s]:%d %s\n" % (address, SSH_PORT, host_pub))
    return known


class Client(StayrtrClient):
    """An RtrClient process in ``host`` with these cache specs (events,
    log, wait and total as the TCP tests' client); never reads ~/.ssh."""

    def __init__(self, host, name, caches, home):
        self.events_path = os.path.join(host.workdir, name + ".jsonl")
        self.log_path = os.path.join(host.workdir, name + ".log")
        with open(self.events_path, "wb") as out, open(self.log_path, "wb") as err:
            self.proc = host.popen([sys.executable, "-c", RUNNER, json.dumps(caches)], stdout=out, stderr=err,
                                   cwd=ROOT, env=dict(os.environ, HOME=home, SSH_AUTH_SOCK=""))

    def vrps(self):
        """The VRP set the reports add up to."""
        have = set()
        for e in self.events("vrps"):
            have.difference_update(map(tuple, e["removed"]))
            have.update(map(tuple, e["added"]))
        return have

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


def keys(lab):
    d = os.path.join(lab.tmpdir, "sshkeys")
    os.makedirs(d)
    host_pub = keygen(os.path.join(d, "host"), "stayrtr-host")
    keygen(os.path.join(d, "client"), "fastbgp-client")
    other_pub = keygen(os.path.join(d, "other"), "not-the-cache")
    return d, host_pub, other_pub


def ssh_cache(addr, **ssh):
    return {"address": addr, "port": SSH_PORT, "transport": "ssh", "retry": 1, "ssh": dict(user="rpki", **ssh)}


@pytest.mark.parametrize("transport", L.TRANSPORTS)
def test_ssh_sync_password_key_and_tcp(lab, transport):
    """Over IPv6 too (issue 12): stayrtr's TCP and SSH listeners on host a's
    IPv6 address, the known-hosts entry in OpenSSH's ``[address]:port``
    form, the log naming the cache ``[address]:port``."""
    _require()
    a, b = lab.add_host("a"), lab.add_host("b")
    keydir, host_pub, _other = keys(lab)
    cache = Stayrtr(a, os.path.join(a.workdir, "vrps.json"), keydir, transport=transport)
    addr = cache.address
    known = known_hosts(keydir, addr, host_pub)
    roas = many_roas(3000)
    cache.write(roas)
    cache.start()
    pw = Client(b, "password", [ssh_cache(addr, password=PASSWORD, host_key=host_pub)], keydir)
    key = Client(b, "key", [ssh_cache(addr, private_key=os.path.join(keydir, "client"), known_hosts=known)],
                 keydir)
    tcp = Client(b, "tcp", [{"address": addr, "port": TCP_PORT, "retry": 1}], keydir)
    want = {tuple(hexed(r["prefix"], r["maxLength"], int(r["asn"][2:]))) for r in roas}
    for c in (tcp, pw, key):
        c.wait(lambda c=c: c.total() == len(want), 20, "3000 VRPs")
    assert pw.vrps() == key.vrps() == tcp.vrps() == want
    for c in (pw, key):
        up = [e for e in c.events("cache") if e["state"] == "up"]
        assert up and up[0]["transport"] == "ssh" and up[0]["port"] == SSH_PORT
    assert [e for e in tcp.events("cache") if e["state"] == "up"][0]["transport"] == "tcp"
    session = [e for e in pw.events("cache") if e["state"] == "up"][0]["session"]

    # a change: stayrtr notifies on the SSH channel, the clients ask for the delta
    first, roas = roas[0], roas[1:] + [vrp("192.0.2.0/24", 24, 64500)]
    cache.write(roas)
    for c in (pw, key):
        ev = c.wait(lambda c=c: [e for e in c.events("vrps")[1:]], 10, "the serial update")[0]
        assert ev["added"] == [hexed("192.0.2.0/24", 24, 64500)]
        assert ev["removed"] == [hexed(first["prefix"], first["maxLength"], int(first["asn"][2:]))]
        assert "received SerialNotify" in c.log() and "received CacheResponse" in c.log()
        assert "received CacheReset" not in c.log()
    tcp.wait(lambda: len(tcp.events("vrps")) >= 2, 10, "the TCP client's update")
    assert pw.vrps() == key.vrps() == tcp.vrps()

    # the cache down and back: a WARNING naming the SSH cache, then a new
    # session whose full answer is reported as the difference only
    cache.stop()
    for c in (pw, key):
        c.wait(lambda c=c: "WARNING RTR session to %s (ssh) lost" % hostport(addr, SSH_PORT) in c.log(), 10,
               "the loss warning")
    roas = roas + [vrp("192.0.2.128/25", 25, 64501)]
    cache.write(roas)
    n_before = {c: len(c.events("vrps")) for c in (pw, key)}
    cache.start()
    for c in (pw, key):
        ev = c.wait(lambda c=c: c.events("vrps")[n_before[c]:], 15, "data from the restarted cache")[0]
        assert ev["added"] == [hexed("192.0.2.128/25", 25, 64501)] and ev["removed"] == []
    assert [e for e in pw.events("cache") if e["state"] == "up"][-1]["session"] != session
    tcp.wait(lambda: tcp.vrps() == pw.vrps(), 15, "the TCP client's data after the restart")
    assert pw.vrps() == key.vrps() == tcp.vrps() and len(pw.vrps()) == 3001
    for c in (pw, key, tcp):
        c.stop()


def test_ssh_refusals_and_failover(lab):
    _require()
    a, b, c = lab.add_host("a"), lab.add_host("b"), lab.add_host("c")
    keydir, host_pub, other_pub = keys(lab)
    wrong_known = os.path.join(keydir, "wrong_known_hosts")
    with open(wrong_known, "w") as f:
        f.write("[%s]:%d %s\n" % (a.ipv4, SSH_PORT, other_pub))
    roas = many_roas(50)
    ssh_only = Stayrtr(a, os.path.join(a.workdir, "vrps.json"), keydir, tcp=False)
    ssh_only.write(roas)
    ssh_only.start()
    tcp_only = Stayrtr(c, os.path.join(c.workdir, "vrps.json"), keydir, ssh=False)
    tcp_only.write(roas)
    tcp_only.start()
    badpw = Client(b, "badpw", [ssh_cache(a.ipv4, password="not-" + PASSWORD, host_key=host_pub)], keydir)
    badhost = Client(b, "badhost", [ssh_cache(a.ipv4, password=PASSWORD, known_hosts=wrong_known)], keydir)
    pinned = Client(b, "pinned", [ssh_cache(a.ipv4, password=PASSWORD, host_key=other_pub)], keydir)
    prefer = Client(b, "prefer", [dict(ssh_cache(a.ipv4, password=PASSWORD, host_key=host_pub), preference=0),
                                  {"address": c.ipv4, "port": TCP_PORT, "preference": 1, "retry": 1}], keydir)
    name = "RTR cache %s:%d (ssh) unreachable: connect: ssh:" % (a.ipv4, SSH_PORT)
    for cl, reason in ((badpw, "PermissionDenied"), (badhost, "HostKeyNotVerifiable"),
                       (pinned, "HostKeyNotVerifiable")):
        # retried every retry interval (1 s): three warnings, each with the reason
        cl.wait(lambda cl=cl: cl.log().count("WARNING " + name) >= 3, 15, "three refused connections")
        lines = [ln for ln in cl.log().splitlines() if ln.startswith("WARNING ")]
        assert lines and all(name in ln and reason in ln for ln in lines), lines
        assert cl.total() == 0 and cl.proc.poll() is None
        assert "received CacheResponse" not in cl.log()
        cl.stop()

    # preference: the SSH cache first; while it is down the TCP one feeds
    # the data, and the client switches back once SSH answers again
    prefer.wait(lambda: prefer.total() == 50, 15, "data over SSH")
    up = [e for e in prefer.events("cache") if e["state"] == "up"]
    assert up[0]["transport"] == "ssh"
    ssh_only.stop()
    prefer.wait(lambda: [e for e in prefer.events("cache") if e["state"] == "up" and e["transport"] == "tcp"], 15,
                "failover to TCP")
    assert "WARNING RTR session to %s:%d (ssh) lost" % (a.ipv4, SSH_PORT) in prefer.log()
    assert prefer.total() == 50  # the same data: nothing withdrawn, nothing added
    n = len(prefer.events("cache"))
    ssh_only.start()
    prefer.wait(lambda: [e for e in prefer.events("cache")[n:] if e["state"] == "up" and e["transport"] == "ssh"],
                15, "the switch back to SSH")
    assert "switching from %s:%d to the more preferred cache %s:%d (ssh)" % (c.ipv4, TCP_PORT, a.ipv4, SSH_PORT) \
        in prefer.log()
    assert prefer.total() == 50 and len(prefer.vrps()) == 50
    prefer.stop()


def test_daemon_over_ssh(lab):
    _require()
    a, b = lab.add_host("a"), lab.add_host("b")
    keydir, host_pub, _other = keys(lab)
    known = known_hosts(keydir, a.ipv4, host_pub)
    cache = Stayrtr(a, os.path.join(a.workdir, "vrps.json"), keydir, tcp=False)
    roas = many_roas(500)
    cache.write(roas)
    cache.start()
    n4 = sum(":" not in r["prefix"] for r in roas)
    rpki = ["[[rpki.caches]]", 'address = "%s"' % a.ipv4, "port = %d" % SSH_PORT, 'transport = "ssh"',
            "expire = 3", "retry = 1",
            "[rpki.caches.ssh]", 'user = "rpki"', 'private-key = "%s"' % os.path.join(keydir, "client"),
            'known-hosts = "%s"' % known]
    fb = LabDaemon(b, "", cli=True)
    with fb.start(global_toml(64500, b, listen=[b.ipv4]) + fb.api_toml() + "\n".join(rpki) + "\n"):
        fb.wait_api()

        def synced():
            info = fb.api("GET", "/v1/rpki")
            return info if info["vrps"] == {"ipv4": n4, "ipv6": len(roas) - n4} else None
        info = L.wait_for(synced, 20, what="the daemon's VRPs over SSH", on_timeout=fb.log_tail)
        c = info["caches"][0]
        assert (c["transport"], c["state"], c["port"], c["source"]) == ("ssh", "up", SSH_PORT, True)
        out = b.run([sys.executable, "-m", "fastbgp", "rpki", "--socket", fb.socket_path], cwd=ROOT,
                    env=dict(os.environ, COLUMNS="200")).stdout
        row = [ln for ln in out.splitlines() if "%s:%d" % (a.ipv4, SSH_PORT) in ln]
        assert row and " ssh " in row[0] and " up " in row[0], out
        assert "ipv4 %d, ipv6 %d" % (n4, len(roas) - n4) in out, out

        # the cache gone: the session loss is a WARNING, the data expires 3 s
        # after the last End of Data, as over TCP
        cache.stop()
        fb.wait_log("RTR session to %s:%d (ssh) lost" % (a.ipv4, SSH_PORT), 10, what="the loss warning")
        L.wait_for(lambda: fb.api("GET", "/v1/rpki")["vrps"] == {"ipv4": 0, "ipv6": 0}, 15, what="expiry",
                   on_timeout=fb.log_tail)
        assert "expired" in fb.log_text() and fb.api("GET", "/v1/rpki")["caches"][0]["state"] == "down"
        fb.assert_clean()
