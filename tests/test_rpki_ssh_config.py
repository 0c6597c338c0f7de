"""``[rpki]`` caches over SSH (RFC 8210 §9.1): the ``transport`` / ``ssh``
settings are checked at load, each problem named by its field; fastbgp
imports and runs TCP caches without asyncssh, and refuses an SSH cache
without it.  Keys are made in tmp_path; nothing reads ~/.ssh (HOME points
at tmp_path while the transport's options are built).  Also: the daemon
shows an SSH cache's transport (API, CLI), and a cache filling the SSH
channel with stderr does not stall the PDUs."""

import os
import subprocess
import sys

import msgspec
import pytest

from fastbgp.config.checks import load_config
from fastbgp.config.errors import ConfigError

asyncssh = pytest.importorskip("asyncssh")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEAD = '[global]\nasn = 65000\nrouter-id = "10.0.0.1"\n[rpki]\n'


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("sshkeys")
    host = asyncssh.generate_private_key("ssh-ed25519")
    client = asyncssh.generate_private_key("ssh-ed25519")
    client.write_private_key(str(d / "client"))
    (d / "known_hosts").write_bytes(b"[192.0.2.1]:2222 " + host.export_public_key())
    (d / "other_hosts").write_bytes(b"[192.0.2.99]:2222 " + host.export_public_key())
    (d / "broken").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nnot a key\n")
    return {"dir": d, "host_pub": host.export_public_key().decode().strip(), "client": str(d / "client"),
            "known_hosts": str(d / "known_hosts"), "other_hosts": str(d / "other_hosts"),
            "broken": str(d / "broken")}


def cache(ssh=None, transport="ssh", extra=""):
    """One [[rpki.caches]] table at 192.0.2.1:2222."""
    text = HEAD + '[[rpki.caches]]\naddress = "192.0.2.1"\nport = 2222\n'
    if transport is not None:
        text += 'transport = "%s"\n' % transport
    text += extra
    if ssh is not None:
        text += "[rpki.caches.ssh]\n" + "".join("%s = %s\n" % (k, v) for k, v in ssh.items())
    return text


def q(s):
    return '"%s"' % s


def errors(text):
    with pytest.raises(ConfigError) as e:
        load_config(text)
    return e.value.errors


def has(errs, where, what):
    return any(p == where and what in m for p, m in errs)


def test_valid_ssh_caches(keys):
    cfg = load_config(cache({"user": q("rpki"), "password": q("x"), "host-key": q(keys["host_pub"])}))
    c = cfg.rpki.caches[0]
    assert c.transport == "ssh" and c.ssh.user == "rpki" and c.ssh.host_key == keys["host_pub"]
    cfg = load_config(cache({"user": q("rpki"), "private-key": q(keys["client"]),
                             "known-hosts": q(keys["known_hosts"])}))
    assert cfg.rpki.caches[0].ssh.private_key == keys["client"]
    cfg = load_config(cache({"user": q("rpki"), "password": q("x"), "insecure-accept-any-host-key": "true"}))
    assert cfg.rpki.caches[0].ssh.insecure_accept_any_host_key
    # the default stays plain TCP
    assert load_config(cache(transport=None)).rpki.caches[0].transport == "tcp"


@pytest.mark.parametrize("ssh, transport, where, what", [
    (None, "ssh", "rpki.caches[0].ssh", 'needed with transport = "ssh"'),
    ({"user": q("rpki"), "password": q("x"), "insecure-accept-any-host-key": "true"}, "tcp",
     "rpki.caches[0].ssh", 'given but transport is "tcp"'),
    ({"user": q("rpki"), "insecure-accept-any-host-key": "true"}, "ssh", "rpki.caches[0].ssh",
     "needs password or private-key"),
    ({"user": q("rpki"), "password": q("x")}, "ssh", "rpki.caches[0].ssh", "needs known-hosts or host-key"),
    ({"user": q("rpki"), "password": q("x"), "host-key": "HOSTKEY", "insecure-accept-any-host-key": "true"}, "ssh",
     "rpki.caches[0].ssh", "host-key and insecure-accept-any-host-key: set one"),
    ({"user": q("rpki"), "password": q("x"), "host-key": "HOSTKEY", "known-hosts": "KNOWN"}, "ssh",
     "rpki.caches[0].ssh", "known-hosts and host-key: set one"),
    ({"user": q("rpki"), "private-key": q("/nonexistent/key"), "host-key": "HOSTKEY"}, "ssh",
     "rpki.caches[0].ssh.private-key", "cannot use"),
    ({"user": q("rpki"), "private-key": "BROKEN", "host-key": "HOSTKEY"}, "ssh",
     "rpki.caches[0].ssh.private-key", "cannot use"),
    ({"user": q("rpki"), "password": q("x"), "known-hosts": q("/nonexistent/known_hosts")}, "ssh",
     "rpki.caches[0].ssh.known-hosts", "cannot use"),
    ({"user": q("rpki"), "password": q("x"), "known-hosts": "OTHER"}, "ssh",
     "rpki.caches[0].ssh.known-hosts", "has no key for [192.0.2.1]:2222"),
    ({"user": q("rpki"), "password": q("x"), "host-key": q("ssh-ed25519 AAAAnotakey")}, "ssh",
     "rpki.caches[0].ssh.host-key", "not a public key"),
])
def test_ssh_semantic_errors(keys, ssh, transport, where, what):
    if ssh is not None:
        subst = {"HOSTKEY": q(keys["host_pub"]), "KNOWN": q(keys["known_hosts"]), "OTHER": q(keys["other_hosts"]),
                 "BROKEN": q(keys["broken"])}
        ssh = {k: subst.get(v, v) for k, v in ssh.items()}
    errs = errors(cache(ssh, transport))
    assert has(errs, where, what), errs


@pytest.mark.parametrize("ssh, transport, where, what", [
    (None, "udp", "rpki.caches[0].transport", "tcp"),
    ({"password": q("x")}, "ssh", "rpki.caches[0].ssh", "user"),
    ({"user": q(""), "password": q("x")}, "ssh", "rpki.caches[0].ssh.user", "1 to 255 characters"),
    ({"user": q("rpki"), "password": q("")}, "ssh", "rpki.caches[0].ssh.password", "1 to 1024 characters"),
    ({"user": q("rpki"), "host-key": q("AAAA only base64")}, "ssh", "rpki.caches[0].ssh.host-key", "OpenSSH public key line"),
    ({"user": q("rpki"), "passwd": q("x")}, "ssh", "rpki.caches[0].ssh", "passwd"),
    ({"user": q("rpki"), "insecure-accept-any-host-key": q("yes")}, "ssh",
     "rpki.caches[0].ssh.insecure-accept-any-host-key", "bool"),
])
def test_ssh_type_errors(ssh, transport, where, what):
    errs = errors(cache(ssh, transport))
    assert any(p.startswith(where) and what in m or what in p for p, m in errs), errs
    assert all(p.startswith(where) for p, _m in errs), errs


def test_every_problem_of_a_cache_is_reported(keys):
    errs = errors(cache({"user": q("rpki")}))
    assert has(errs, "rpki.caches[0].ssh", "needs password or private-key")
    assert has(errs, "rpki.caches[0].ssh", "needs known-hosts or host-key")


def test_ssh_options_never_read_home(keys, tmp_path, monkeypatch):
    """The options handed to asyncssh name only the configured files:
    ~/.ssh (here a HOME full of traps), agents, GSSAPI and X.509 are off."""
    from fastbgp.rpki import client as C
    from fastbgp.rpki import transport as T

    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "config").write_text("Host *\n  User trap\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("SSH_AUTH_SOCK", str(tmp_path / "agent"))
    spec = msgspec.convert({"address": "192.0.2.1", "port": 2222, "transport": "ssh",
                            "ssh": {"user": "rpki", "private_key": keys["client"], "host_key": keys["host_pub"]}},
                           C.CacheSpec)
    opts = T.ssh_options(spec, asyncssh)
    assert opts["username"] == "rpki" and opts["config"] is None and opts["agent_path"] is None
    assert opts["gss_host"] is None and opts["x509_trusted_certs"] is None and opts["x509_trusted_cert_paths"] == []
    assert len(opts["client_keys"]) == 1 and opts["password"] is None
    trusted = opts["known_hosts"][0]
    assert [k.export_public_key().decode().split()[:2] for k in trusted] == [keys["host_pub"].split()[:2]]
    # no verifier given in code (the config refuses it): refused, not silently trusting
    bare = msgspec.structs.replace(spec, ssh=msgspec.structs.replace(spec.ssh, host_key=None))
    with pytest.raises(ConnectionError, match="no known-hosts or host-key"):
        T.ssh_options(bare, asyncssh)
    with pytest.raises(ConnectionError, match="cannot read private-key"):
        T.ssh_options(msgspec.structs.replace(spec, ssh=msgspec.structs.replace(spec.ssh, private_key=keys["broken"])),
                      asyncssh)


NO_ASYNCSSH = r"""
import sys
sys.modules["asyncssh"] = None  # import asyncssh raises ImportError, as when it is not installed
import fastbgp.rpki.client, fastbgp.rpki.transport, fastbgp.daemon.rpki_feed, fastbgp.cli.rpki
from fastbgp.config.checks import load_config
from fastbgp.config.errors import ConfigError
head = '[global]\nasn = 65000\nrouter-id = "10.0.0.1"\n[rpki]\n'
load_config(head + 'caches = [{ address = "192.0.2.1" }]\n')
assert not fastbgp.rpki.transport.ssh_available()
try:
    load_config(head + '[[rpki.caches]]\naddress = "192.0.2.1"\ntransport = "ssh"\n'
                '[rpki.caches.ssh]\nuser = "rpki"\npassword = "x"\ninsecure-accept-any-host-key = true\n')
except ConfigError as e:
    print(e)
"""


def test_without_asyncssh():
    """fastbgp imports and loads TCP caches without asyncssh; an SSH cache
    is a config error naming the field and the package."""
    out = subprocess.run([sys.executable, "-c", NO_ASYNCSSH], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "rpki.caches[0].transport" in out.stdout and "asyncssh" in out.stdout, out.stdout


def test_daemon_shows_the_transport(tmp_path, run, keys, caplog, capsys):
    """A daemon with an SSH cache that does not answer: the cache is listed
    with its transport in ``GET /v1/rpki`` and ``fastbgp rpki``, its failure
    is a WARNING naming it and the reason, and the daemon keeps running."""
    import asyncio
    import logging

    from aiohttp.test_utils import TestClient, TestServer
    from test_daemon import DUT, addr

    from fastbgp.cli import rpki as cli_rpki
    from fastbgp.control import contract as ctl
    from fastbgp.control.api import make_app
    from fastbgp.testing.net import free_port

    host = addr()
    port = free_port(host)  # nothing listens there: every connection is refused
    extra = ('[rpki]\n[[rpki.caches]]\naddress = "%s"\nport = %d\ntransport = "ssh"\nretry = 1\n'
             '[rpki.caches.ssh]\nuser = "rpki"\npassword = "x"\nhost-key = "%s"\n' % (host, port, keys["host_pub"]))
    caplog.set_level(logging.WARNING, logger="fastbgp.rpki")

    async def main():
        dut = DUT(extra=extra)
        d = await dut.start()
        try:
            async with TestClient(TestServer(make_app(d))) as cl:
                for _ in range(100):
                    r = await cl.get("/v1/rpki")
                    info = msgspec.json.decode(await r.read(), type=ctl.RpkiInfo)
                    if info.caches and info.caches[0].last_error:
                        break
                    await asyncio.sleep(0.05)
            assert info.caches[0].transport == "ssh" and info.caches[0].state in ("down", "connecting")
            assert "connect" in info.caches[0].last_error
            cli_rpki.print_info(info)
        finally:
            await dut.stop()

    run(main())
    out = capsys.readouterr().out
    assert "%s:%d" % (host, port) in out and "ssh" in out
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("RTR cache %s:%d (ssh) unreachable: connect:" % (host, port) in m for m in warned), warned


class PasswordServer(asyncssh.SSHServer):
    """asyncssh's server side for the loopback caches below: user "rpki",
    password "pw"."""

    def begin_auth(self, username):
        return True

    def password_auth_supported(self):
        return True

    def validate_password(self, username, password):
        return (username, password) == ("rpki", "pw")


def test_ssh_stderr_never_blocks_the_pdus(keys, run):
    """A cache writing more than the channel window (2 MiB) to the
    subsystem's stderr before its answer: the client drops stderr, so the
    window reopens and the PDUs arrive (unread, stderr held the window and
    the session stalled).  The cache is asyncssh's server on loopback
    speaking RTR with fastbgp's PDU builders; stayrtr never writes stderr."""
    import asyncio

    from fastbgp.rpki import client as C
    from fastbgp.rpki import pdu as P
    from fastbgp.rpki import transport as T
    from fastbgp.testing.net import free_port

    server_key = asyncssh.generate_private_key("ssh-ed25519")
    got = []

    Server = PasswordServer

    async def cache(process):
        got.append(process.subsystem)
        query = await process.stdin.readexactly(8)
        assert query[1] == 2  # Reset Query
        process.stderr.write(b"e" * (T.SSH_WINDOW + (1 << 20)))
        vrp = (1, bytes([192, 0, 2, 0]), 24, 24, 64496)
        process.stdout.write(P.encode(P.CacheResponse(2, 7)) + P.encode(P.Prefix(2, True, *vrp))
                             + P.encode(P.EndOfData(2, 7, 1, 3600, 600, 7200)))
        await process.stdin.read()  # until the client goes
        process.exit(0)

    async def main():
        port = free_port("127.0.0.1")
        server = await asyncssh.listen("127.0.0.1", port, server_host_keys=[server_key], server_factory=Server,
                                       process_factory=cache, encoding=None, allow_pty=False)
        spec = msgspec.convert({"address": "127.0.0.1", "port": port, "transport": "ssh", "retry": 1, "ssh": {
            "user": "rpki", "password": "pw", "host_key": server_key.export_public_key().decode()}}, C.CacheSpec)
        client = C.RtrClient([spec])
        client.start()
        try:
            for _ in range(200):
                if len(client.vrps):
                    break
                await asyncio.sleep(0.05)
            assert len(client.vrps) == 1, client.status()
            assert client.status()[0].state == "up" and client.status()[0].transport == "ssh"
        finally:
            await client.stop()
            server.close()
            await server.wait_closed()

    run(main())
    assert got and got[0] == "rpki-rtr"


def test_ssh_cache_gone_while_we_answer(keys, run, caplog):
    """A cache that sends a malformed PDU and closes the channel at once:
    the Error Report cannot be written (the channel is closed, asyncssh
    raises BrokenPipeError); the session still ends with the reason of
    RFC 8210 §12, a WARNING, and is retried, never an escaped OSError."""
    import asyncio
    import logging

    from fastbgp.rpki import client as C
    from fastbgp.testing.net import free_port

    server_key = asyncssh.generate_private_key("ssh-ed25519")
    served = []

    Server = PasswordServer

    async def cache(process):
        await process.stdin.readexactly(8)  # the Reset Query
        served.append(1)
        process.stdout.write(b"\x02\x63\x00\x00\x00\x00\x00\x08")  # PDU type 99: Unsupported PDU Type
        process.exit(0)

    async def main():
        port = free_port("127.0.0.1")
        server = await asyncssh.listen("127.0.0.1", port, server_host_keys=[server_key], server_factory=Server,
                                       process_factory=cache, encoding=None)
        spec = msgspec.convert({"address": "127.0.0.1", "port": port, "transport": "ssh", "retry": 1, "ssh": {
            "user": "rpki", "password": "pw", "host_key": server_key.export_public_key().decode()}}, C.CacheSpec)
        client = C.RtrClient([spec])
        client.start()
        try:
            for _ in range(100):
                if len(served) >= 2:  # retried after the retry interval
                    break
                await asyncio.sleep(0.05)
        finally:
            await client.stop()
            server.close()
            await server.wait_closed()

    caplog.set_level(logging.WARNING, logger="fastbgp.rpki")
    run(main())
    lost = [r.getMessage() for r in caplog.records if "lost" in r.getMessage()]
    assert len(served) >= 2 and lost, caplog.text
    assert all("(ssh) lost: sent Error Report" in m and "Unsupported PDU Type" in m for m in lost), lost
