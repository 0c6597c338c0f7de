"""The byte streams an RTR session runs over: plain TCP (RFC 8210 §9) or
SSH with the "rpki-rtr" subsystem (RFC 8210 §9.1, RFC 6810 §7.1).

:func:`open_transport` returns ``(reader, writer)`` for one cache; the RTR
client (``fastbgp.rpki.client``) reads and parses both the same way.  The
reader has ``await read(n)`` (up to ``n`` octets, ``b""`` at end of
stream); the writer ``write(data)``, ``await drain()`` and ``close()``.
Every failure, while connecting or later, is an ``OSError`` (for SSH a
``ConnectionError`` carrying asyncssh's reason), so the client handles one
kind of error whatever the transport.

SSH uses asyncssh, imported only when a cache asks for SSH (fastbgp runs
without it; ``fastbgp.config.checks`` refuses ``transport = "ssh"`` when it
is not installed).  Only what the configuration names is used: never
~/.ssh (keys, known_hosts, config), an SSH agent, GSSAPI or X.509 defaults.
The cache's host key is always verified (RFC 8210 §9.1: routers SHOULD
verify the cache's public key) against the configured known_hosts file or
pinned key, unless ``insecure-accept-any-host-key`` says otherwise.

Bounds: what the cache sends and the client has not read yet is held by
asyncssh up to the channel's receive window (2 MiB, ``SSH_WINDOW``); past
it the cache must wait (SSH flow control, RFC 4254 §5.2), as TCP's window
does for plain TCP.  The channel's stderr (RTR defines none) shares that
window: it is read and dropped as it comes, so it can never stall the PDUs.
"""

import asyncio
import logging

log = logging.getLogger("fastbgp.rpki")

SSH_SUBSYSTEM = "rpki-rtr"  # RFC 8210 §9.1
# The channel's receive window and largest packet (asyncssh's defaults,
# named so that README's "Operating limits" can point here).
SSH_WINDOW = 2 * 1024 * 1024
SSH_MAX_PACKET = 32 * 1024
# AES-GCM first: caches write one SSH packet per PDU (stayrtr: 100k packets
# for 100k VRPs) and asyncssh decrypts chacha20-poly1305 with three cipher
# contexts per packet, AES-GCM with one (half the client's CPU per packet
# under cProfile).  Then asyncssh's other defaults: all AEAD or CTR with MAC.
SSH_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "chacha20-poly1305@openssh.com",
               "aes256-ctr", "aes192-ctr", "aes128-ctr")


def ssh_available():
    """True when asyncssh can be imported."""
    try:
        import asyncssh  # noqa: F401
    except ImportError:
        return False
    return True


def describe(spec):
    """How a cache is named in logs: ``address:port`` (an IPv6 address in
    brackets, RFC 3986 §3.2.2, or its last group reads as the port), plus
    `` (ssh)``."""
    name = ("[%s]:%d" if ":" in spec.address else "%s:%d") % (spec.address, spec.port)
    return name + " (ssh)" if transport_of(spec) == "ssh" else name


def transport_of(spec):
    return getattr(spec, "transport", "tcp") or "tcp"


async def open_transport(spec, timeout):
    """(reader, writer) connected to cache ``spec`` (a
    ``fastbgp.config.schema.RpkiCache`` or ``fastbgp.rpki.client.CacheSpec``)
    within ``timeout`` seconds; ``OSError`` (or ``asyncio.TimeoutError``)
    with the reason when it cannot."""
    if transport_of(spec) == "ssh":
        return await asyncio.wait_for(_open_ssh(spec), timeout)
    return await asyncio.wait_for(asyncio.open_connection(spec.address, spec.port), timeout)


# ------------------------------------------------------------------- SSH


def _reason(exc):
    """asyncssh's errors carry their reason in ``reason``; others in str()."""
    text = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
    return "%s: %s" % (type(exc).__name__, text)


class SshReader:
    """The "rpki-rtr" channel's incoming octets, read like an
    asyncio.StreamReader."""

    def __init__(self, reader, asyncssh):
        self.reader = reader
        self.errors = (asyncssh.Error, asyncssh.SignalReceived)

    async def read(self, n):
        try:
            return await self.reader.read(n)
        except self.errors as exc:
            raise ConnectionError("ssh: %s" % _reason(exc)) from None


async def _discard(stream, errors):
    """Read and drop the channel's stderr: RTR defines none, and unread it
    would hold the shared channel window (RFC 4254 §5.2) until the cache
    could send no more PDUs."""
    dropped = 0
    try:
        while True:
            data = await stream.read(SSH_MAX_PACKET)
            if not data:
                break
            dropped += len(data)
    except errors:
        pass  # the channel's end is reported by the PDU reader
    if dropped:
        log.debug("RTR over SSH: %d octets of stderr from the cache dropped", dropped)


class SshWriter:
    """The channel's outgoing side; ``close()`` also ends the SSH
    connection (one connection per RTR session) and the stderr reader."""

    def __init__(self, writer, conn, asyncssh, stderr=None):
        self.writer = writer
        self.conn = conn
        self.errors = (asyncssh.Error,)
        self.stderr = None
        if stderr is not None:
            self.stderr = asyncio.ensure_future(_discard(stderr, (asyncssh.Error, asyncssh.SignalReceived, OSError)))

    def write(self, data):
        try:
            self.writer.write(data)
        except self.errors as exc:
            raise ConnectionError("ssh: %s" % _reason(exc)) from None

    async def drain(self):
        try:
            await self.writer.drain()
        except self.errors as exc:
            raise ConnectionError("ssh: %s" % _reason(exc)) from None

    def close(self):
        if self.stderr is not None:
            self.stderr.cancel()
        self.writer.close()
        self.conn.close()


def ssh_options(spec, asyncssh):
    """asyncssh.connect keyword arguments for cache ``spec``: its user,
    password and/or private key, and its trusted host keys; every default
    that would read ~/.ssh or an agent turned off.  Raises ``OSError`` when
    the key or known_hosts file cannot be read or parsed."""
    ssh = spec.ssh
    opts = dict(
        username=ssh.user, config=None, agent_path=None, gss_host=None, x509_trusted_certs=None,
        x509_trusted_cert_paths=[], password=ssh.password, client_keys=None,
        connect_timeout=None, known_hosts=None, encryption_algs=list(SSH_CIPHERS),
    )
    if ssh.private_key:
        try:
            opts["client_keys"] = [asyncssh.read_private_key(ssh.private_key)]
        except (OSError, asyncssh.KeyImportError) as exc:
            raise ConnectionError("cannot read private-key %s: %s" % (ssh.private_key, exc)) from None
    if ssh.host_key:
        try:
            key = asyncssh.import_public_key(ssh.host_key)
        except (ValueError, asyncssh.KeyImportError) as exc:
            raise ConnectionError("host-key: %s" % exc) from None
        # A non-empty tuple: an empty one would make asyncssh read ~/.ssh/known_hosts.
        opts["known_hosts"] = ([key], [], [])
    elif ssh.known_hosts:
        try:
            opts["known_hosts"] = asyncssh.read_known_hosts(ssh.known_hosts)
        except (OSError, ValueError) as exc:
            raise ConnectionError("cannot read known-hosts %s: %s" % (ssh.known_hosts, exc)) from None
    elif not ssh.insecure_accept_any_host_key:
        # fastbgp.config.checks refuses this; a CacheSpec built in code must say so too.
        raise ConnectionError("no known-hosts or host-key to verify the cache's host key")
    return opts


async def _open_ssh(spec):
    try:
        import asyncssh
    except ImportError:
        raise ConnectionError("transport = \"ssh\" needs the asyncssh package (pip install 'fastbgp[ssh]')") \
            from None
    quiet = logging.getLogger("asyncssh")
    if quiet.level == logging.NOTSET:
        # asyncssh logs half a dozen INFO lines per connection; the RTR
        # client logs what matters (connected, lost, refused) itself.
        quiet.setLevel(logging.WARNING)
    opts = ssh_options(spec, asyncssh)
    if opts["known_hosts"] is None:
        log.warning("RTR cache %s: its SSH host key is not verified (insecure-accept-any-host-key)", describe(spec))
    try:
        conn = await asyncssh.connect(spec.address, spec.port, **opts)
    except (asyncssh.Error, ValueError) as exc:  # ValueError: asyncssh's key / known_hosts checks
        raise ConnectionError("ssh: %s" % _reason(exc)) from None
    try:
        writer, reader, stderr = await conn.open_session(
            subsystem=SSH_SUBSYSTEM, encoding=None, request_pty=False, window=SSH_WINDOW,
            max_pktsize=SSH_MAX_PACKET)
    except (asyncssh.Error, OSError) as exc:
        conn.close()
        raise ConnectionError("ssh subsystem %s: %s" % (SSH_SUBSYSTEM, _reason(exc))) from None
    except BaseException:  # cancelled (connect timeout): never leave the connection open
        conn.close()
        raise
    return SshReader(reader, asyncssh), SshWriter(writer, conn, asyncssh, stderr)
