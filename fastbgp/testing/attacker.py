"""A raw BGP client for fault tests in the namespace lab.

:class:`RawPeer` is a plain TCP socket opened *inside* a lab namespace
(``/run/netns/<name>``, entered by a short-lived thread through
``setns(2)``: only that thread changes namespace, and a socket keeps the
namespace it was created in), so a test running in the root namespace can
talk to a daemon in the lab from any source address of a lab host,
byte by byte:

    peer = RawPeer.connect(host.ns, "192.0.2.9", daemon_address)
    peer.handshake(asn=65066, bgp_id="192.0.2.9")          # OPEN/KEEPALIVE
    peer.send_message(MSG_UPDATE, update_body(attrs, nlri=...))
    notif = peer.expect_notification()                      # Notification | None

Message bodies are built with the wire encoders (``codec.frame``,
``codec.build_open``, ``messages.encode_attributes``, ``codec.pack_prefixes``)
and, where a test wants a field the encoders refuse to write, with
:func:`attribute` (one raw path attribute: flags, type, value) and
:func:`update_body` (raw withdrawn/attribute/NLRI blocks with their length
fields, which a caller may override to lie).  Replies are read with
``codec.parse_header`` and ``messages.decode_notification``/``decode_open``.

Linux only, root only (setns needs CAP_SYS_ADMIN), like the lab itself.
"""

from __future__ import annotations

import ctypes
import ipaddress
import os
import socket
import struct
import threading
import time
from typing import Optional

from fastbgp.wire import capabilities as caps
from fastbgp.wire import codec
from fastbgp.wire import messages as M
from fastbgp.wire.constants import (
    AFI_IPV4,
    HEADER_LEN,
    MSG_KEEPALIVE,
    MSG_NOTIFICATION,
    MSG_OPEN,
    SAFI_UNICAST,
)

__all__ = ["RawPeer", "netns_socket", "attribute", "update_body", "prefixes", "standard_attrs", "open_body", "PeerClosed"]

CLONE_NEWNET = 0x40000000  # <sched.h>
NETNS_DIR = "/run/netns"  # where `ip netns add` puts its handles

_libc = None


class PeerClosed(ConnectionError):
    """The daemon closed the connection (EOF or reset)."""


def _setns(fd: int) -> None:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, "setns: %s" % os.strerror(err))


def netns_socket(ns: str, family: int = socket.AF_INET) -> socket.socket:
    """A new TCP socket that lives in network namespace ``ns`` (a name
    under /run/netns).  The namespace switch happens in a throw-away
    thread, so the caller's own thread never leaves its namespace."""
    box: dict = {}

    def work():
        try:
            fd = os.open(os.path.join(NETNS_DIR, ns), os.O_RDONLY)
            try:
                _setns(fd)
            finally:
                os.close(fd)
            box["sock"] = socket.socket(family, socket.SOCK_STREAM)
        except BaseException as exc:  # handed to the caller below
            box["error"] = exc

    t = threading.Thread(target=work, name="netns-socket", daemon=True)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box["sock"]


# ------------------------------------------------------------------ crafting


def attribute(flags: int, type_code: int, value: bytes, length: Optional[int] = None) -> bytes:
    """One raw path attribute (RFC 4271 §4.3).  ``length`` overrides the
    length field (to lie about it); the Extended Length flag (0x10) picks a
    2-octet length field."""
    n = len(value) if length is None else length
    if flags & 0x10:
        return struct.pack("!BBH", flags, type_code, n) + value
    return struct.pack("!BBB", flags, type_code, n) + value


def prefixes(*texts: str) -> bytes:
    """Packed NLRI for prefixes like "198.51.100.0/24" (codec.pack_prefixes)."""
    entries = []
    for t in texts:
        net = ipaddress.ip_network(t)
        entries.append((0, net.network_address.packed, net.prefixlen))
    return codec.pack_prefixes(entries, False)


def update_body(attrs: bytes = b"", nlri: bytes = b"", withdrawn: bytes = b"",
                withdrawn_len: Optional[int] = None, attrs_len: Optional[int] = None) -> bytes:
    """An UPDATE body (RFC 4271 §4.3) from raw blocks; the two length
    fields are computed unless given (to lie about them)."""
    wl = len(withdrawn) if withdrawn_len is None else withdrawn_len
    al = len(attrs) if attrs_len is None else attrs_len
    return struct.pack("!H", wl) + withdrawn + struct.pack("!H", al) + attrs + nlri


def standard_attrs(asn: int, next_hop: str, origin: int = 0, **extra) -> dict:
    """{type code: encoded attribute} for a plain eBGP route: ORIGIN,
    AS_PATH (one AS_SEQUENCE [asn]), NEXT_HOP; a test swaps one entry for a
    crafted one and joins the values."""
    out = {}
    for a in (M.Origin(origin), M.AsPath([M.Segment(2, [asn])]), M.NextHop(next_hop)):
        out[a.code] = M.encode_attributes([a])
    for a in extra.values():
        out[a.code] = M.encode_attributes([a])
    return out


def open_body(asn: int, bgp_id: str, hold_time: int = 90, capabilities=None, version: int = 4) -> bytes:
    """An OPEN body: 4-octet AS and IPv4 unicast capabilities unless
    ``capabilities`` (a list of wire.capabilities objects) is given."""
    if capabilities is None:
        capabilities = [caps.Multiprotocol(AFI_IPV4, SAFI_UNICAST), caps.FourOctetAS(asn)]
    msg = M.Open(version=version, asn=asn if asn <= 0xFFFF else 23456, hold_time=hold_time, bgp_id=bgp_id,
                 capabilities=capabilities)
    return M.encode_open(msg)


# ------------------------------------------------------------------ the client


class RawPeer:
    """One TCP connection to a BGP speaker, driven by hand."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self._buf = bytearray()
        self.received: list = []  # (type, body) of every message read

    @classmethod
    def connect(cls, ns: str, source: str, target: str, port: int = 179, timeout: float = 5.0) -> "RawPeer":
        """Connect from ``source`` (an address of a host in namespace ``ns``)."""
        fam = socket.AF_INET6 if ipaddress.ip_address(target).version == 6 else socket.AF_INET
        s = netns_socket(ns, fam)
        try:
            s.settimeout(timeout)
            s.bind((source, 0))
            s.connect((target, port))
        except BaseException:
            s.close()
            raise
        return cls(s)

    @classmethod
    def establish(cls, ns: str, source: str, target: str, asn: int, bgp_id: Optional[str] = None,
                  hold_time: int = 90, timeout: float = 10.0, capabilities=None) -> "RawPeer":
        """Connect and complete OPEN/KEEPALIVE, retrying while the speaker
        refuses us (e.g. its FSM waits out IdleHoldTime after a reset)."""
        deadline = time.monotonic() + timeout
        last: BaseException = TimeoutError("never tried")
        while time.monotonic() < deadline:
            try:
                peer = cls.connect(ns, source, target, timeout=max(0.5, deadline - time.monotonic()))
            except OSError as exc:
                last = exc
                time.sleep(0.2)
                continue
            try:
                peer.handshake(asn, bgp_id or source, hold_time, capabilities,
                               timeout=max(0.5, deadline - time.monotonic()))
                return peer
            except (OSError, PeerClosed, RuntimeError) as exc:
                last = exc
                peer.close()
                time.sleep(0.2)
        raise TimeoutError("no session from %s to %s within %.0f s: %r" % (source, target, timeout, last))

    # -- bytes -----------------------------------------------------------------
    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_message(self, mtype: int, body: bytes) -> None:
        self.send(codec.frame(mtype, body))

    def _fill(self, n: int, deadline: float) -> None:
        while len(self._buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no complete message within the timeout")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                raise PeerClosed("connection closed by the speaker")
            self._buf += chunk

    def read_message(self, timeout: float = 5.0) -> tuple:
        """(type, body) of the next message; PeerClosed on EOF, TimeoutError."""
        deadline = time.monotonic() + timeout
        self._fill(HEADER_LEN, deadline)
        length, mtype = codec.parse_header(bytes(self._buf[:HEADER_LEN]))
        self._fill(length, deadline)
        body = bytes(self._buf[HEADER_LEN:length])
        del self._buf[:length]
        self.received.append((mtype, body))
        return mtype, body

    def drain(self, timeout: float = 0.3) -> list:
        """Every message that arrives within ``timeout`` seconds, as
        (type, body); PeerClosed if the speaker closes meanwhile."""
        deadline = time.monotonic() + timeout
        out = []
        while True:
            try:
                out.append(self.read_message(max(0.0, deadline - time.monotonic())))
            except TimeoutError:
                return out

    def expect_notification(self, timeout: float = 5.0) -> Optional[M.Notification]:
        """Read until a NOTIFICATION (returned) or EOF (None); other
        messages (OPEN, KEEPALIVE, UPDATE) are skipped."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                mtype, body = self.read_message(max(0.0, deadline - time.monotonic()))
            except PeerClosed:
                return None
            if mtype == MSG_NOTIFICATION:
                return M.decode_notification(body)

    def wait_closed(self, timeout: float = 5.0) -> bool:
        """True once the speaker closed the connection (messages read
        meanwhile are kept in ``received``)."""
        deadline = time.monotonic() + timeout
        try:
            while True:
                self.read_message(max(0.0, deadline - time.monotonic()))
        except PeerClosed:
            return True
        except TimeoutError:
            return False

    def handshake(self, asn: int, bgp_id: str, hold_time: int = 90, capabilities=None,
                  timeout: float = 5.0) -> M.Open:
        """Send our OPEN, read the speaker's OPEN, exchange KEEPALIVEs: the
        session is Established on both sides when this returns."""
        deadline = time.monotonic() + timeout
        self.send_message(MSG_OPEN, open_body(asn, bgp_id, hold_time, capabilities))
        theirs = None
        while True:
            mtype, body = self.read_message(max(0.0, deadline - time.monotonic()))
            if mtype == MSG_OPEN:
                theirs = M.decode_open(body)
                self.send_message(MSG_KEEPALIVE, b"")
            elif mtype == MSG_KEEPALIVE and theirs is not None:
                return theirs
            elif mtype == MSG_NOTIFICATION:
                n = M.decode_notification(body)
                raise RuntimeError("NOTIFICATION %d/%d during the handshake" % (n.code, n.subcode))

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> "RawPeer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
