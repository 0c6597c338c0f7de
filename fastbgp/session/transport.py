"""Socket setup for BGP sessions: TCP MD5 signatures, TTL handling, GTSM,
local binding, and the non-blocking connecting / listening sockets the
asyncio session layer runs on.

Everything here works on plain :class:`socket.socket` objects before they are
handed to the event loop (``loop.sock_connect`` / ``loop.create_connection
(sock=...)`` / ``loop.create_server(sock=...)``) and, for accepted
connections, on the socket-like object asyncio and uvloop expose through
``transport.get_extra_info("socket")`` (both support ``setsockopt`` /
``getsockopt`` / ``family``).

Linux option numbers are spelt out because the :mod:`socket` module does not
export all of them (TCP_MD5SIG, IP_MINTTL, IPV6_MINHOPCOUNT).
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import socket
import struct
import sys
from typing import Optional, Union

__all__ = [
    "TransportError",
    "TCP_MD5SIG",
    "TCP_MD5SIG_MAXKEYLEN",
    "IP_MINTTL",
    "IPV6_MINHOPCOUNT",
    "GTSM_TTL",
    "normalize_address",
    "address_family",
    "md5sig_struct",
    "set_md5",
    "set_ttl",
    "get_ttl",
    "set_min_ttl",
    "get_min_ttl",
    "apply_ttl",
    "bind_local",
    "create_connect_socket",
    "open_connection",
    "create_listen_socket",
]

# <linux/tcp.h>
TCP_MD5SIG = 14
TCP_MD5SIG_MAXKEYLEN = 80
# <linux/in.h>: drop received packets whose TTL is below this (RFC 5082).
IP_MINTTL = 21
# <linux/in6.h>: the IPv6 equivalent, on hop limit.
IPV6_MINHOPCOUNT = 73
# RFC 5082 §3: GTSM senders use the maximum TTL.
GTSM_TTL = 255

_SOCKADDR_STORAGE_LEN = 128


class TransportError(OSError):
    """A socket option or connection step failed; the message says which
    and, where the errno is telling, why."""


Address = Union[str, ipaddress.IPv4Address, ipaddress.IPv6Address]


def normalize_address(address: Address) -> str:
    """Canonical text of an IP address; IPv4-mapped IPv6 addresses (what a
    dual-stack listener reports for IPv4 peers) become plain IPv4, and an
    IPv6 scope ("%eth0") is dropped."""
    text = str(address)
    if "%" in text:
        text = text.split("%", 1)[0]
    ip = ipaddress.ip_address(text)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return str(ip)


def address_family(address: Address) -> int:
    """socket.AF_INET or socket.AF_INET6 for an address."""
    return socket.AF_INET6 if ipaddress.ip_address(normalize_address(address)).version == 6 else socket.AF_INET


def _sock_family(sock) -> int:
    fam = sock.family
    return int(fam)


def _sockaddr(family: int, address: str) -> bytes:
    """A struct sockaddr_in / sockaddr_in6 (port 0) padded to
    sizeof(struct __kernel_sockaddr_storage)."""
    ip = ipaddress.ip_address(address)
    if family == socket.AF_INET:
        if ip.version != 4:
            raise TransportError(errno.EAFNOSUPPORT, "IPv6 peer %s on an IPv4 socket" % address)
        raw = struct.pack("=H", socket.AF_INET) + b"\x00\x00" + ip.packed
    else:
        if ip.version == 4:
            # Linux matches IPv4 peers of an AF_INET6 socket by their
            # v4-mapped address (tcp_v6_parse_md5_keys).
            ip = ipaddress.IPv6Address("::ffff:" + str(ip))
        raw = struct.pack("=H", socket.AF_INET6) + b"\x00\x00" + b"\x00" * 4 + ip.packed + b"\x00" * 4
    return raw.ljust(_SOCKADDR_STORAGE_LEN, b"\x00")


def md5sig_struct(family: int, peer: Address, password: Optional[Union[str, bytes]]) -> bytes:
    """struct tcp_md5sig for ``peer`` on a socket of ``family``; an empty or
    None password gives a zero-length key, which deletes the peer's key."""
    key = password.encode() if isinstance(password, str) else bytes(password or b"")
    if len(key) > TCP_MD5SIG_MAXKEYLEN:
        raise TransportError(
            errno.EINVAL,
            "TCP MD5 password is %d octets; Linux allows at most %d" % (len(key), TCP_MD5SIG_MAXKEYLEN),
        )
    addr = _sockaddr(family, normalize_address(peer))
    # tcpm_flags, tcpm_prefixlen, tcpm_keylen, tcpm_ifindex: no prefix/ifindex
    # extensions (those need TCP_MD5SIG_EXT), so they stay zero.
    return addr + struct.pack("=BBHi", 0, 0, len(key), 0) + key.ljust(TCP_MD5SIG_MAXKEYLEN, b"\x00")


def set_md5(sock, peer: Address, password: Optional[Union[str, bytes]]) -> None:
    """Install (or, with an empty password, remove) the RFC 2385 TCP MD5
    signature key for ``peer`` on ``sock``.

    On a listening socket this is per neighbour address: each accepted
    connection from that address inherits the key.  On a connecting socket
    it must be set before ``connect`` so the SYN is signed.
    """
    if not sys.platform.startswith("linux"):
        raise TransportError(errno.ENOPROTOOPT, "TCP MD5 signatures are only supported on Linux")
    value = md5sig_struct(_sock_family(sock), peer, password)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, TCP_MD5SIG, value)
    except OSError as exc:
        what = "remove" if not password else "set"
        if exc.errno == errno.ENOENT and not password:
            return  # no key was installed: nothing to remove
        hint = {
            errno.ENOPROTOOPT: "the kernel was built without CONFIG_TCP_MD5SIG",
            errno.EPERM: "not permitted (needs CAP_NET_ADMIN in some sandboxes)",
            errno.EINVAL: "the kernel rejected the key structure or the address family",
            errno.ENOMEM: "out of socket option memory (net.core.optmem_max)",
        }.get(exc.errno, exc.strerror)
        raise TransportError(exc.errno, "cannot %s TCP MD5 key for %s: %s" % (what, peer, hint)) from exc


def _ttl_option(family: int):
    if family == socket.AF_INET6:
        return socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS
    return socket.IPPROTO_IP, socket.IP_TTL


def _min_ttl_option(family: int):
    if family == socket.AF_INET6:
        return socket.IPPROTO_IPV6, IPV6_MINHOPCOUNT
    return socket.IPPROTO_IP, IP_MINTTL


def set_ttl(sock, ttl: int, peer_family: Optional[int] = None) -> None:
    """Outgoing TTL (IPv4) / unicast hop limit (IPv6).  For an IPv4 peer on
    an AF_INET6 socket (v4-mapped) both are set, since Linux uses IP_TTL for
    the IPv4 packets such a socket sends."""
    if not 1 <= ttl <= 255:
        raise TransportError(errno.EINVAL, "TTL must be 1..255, got %r" % (ttl,))
    fam = _sock_family(sock)
    try:
        sock.setsockopt(*_ttl_option(fam), ttl)
        if fam == socket.AF_INET6 and peer_family == socket.AF_INET:
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
    except OSError as exc:
        raise TransportError(exc.errno, "cannot set TTL %d: %s" % (ttl, exc.strerror)) from exc


def get_ttl(sock) -> int:
    return sock.getsockopt(*_ttl_option(_sock_family(sock)))


def set_min_ttl(sock, min_ttl: int, peer_family: Optional[int] = None) -> None:
    """RFC 5082 GTSM receive check: the kernel drops segments arriving with
    a TTL / hop limit below ``min_ttl`` (0 disables the check)."""
    if not 0 <= min_ttl <= 255:
        raise TransportError(errno.EINVAL, "minimum TTL must be 0..255, got %r" % (min_ttl,))
    fam = _sock_family(sock)
    try:
        sock.setsockopt(*_min_ttl_option(fam), min_ttl)
        if fam == socket.AF_INET6 and peer_family == socket.AF_INET:
            sock.setsockopt(socket.IPPROTO_IP, IP_MINTTL, min_ttl)
    except OSError as exc:
        hint = "the kernel does not support it" if exc.errno == errno.ENOPROTOOPT else exc.strerror
        raise TransportError(exc.errno, "cannot set minimum TTL %d (GTSM): %s" % (min_ttl, hint)) from exc


def get_min_ttl(sock) -> int:
    return sock.getsockopt(*_min_ttl_option(_sock_family(sock)))


def apply_ttl(sock, *, ttl: Optional[int] = None, gtsm: Union[bool, int] = False, ebgp: bool = True,
              peer_family: Optional[int] = None) -> None:
    """The TTL policy of one session.

    * ``gtsm``: RFC 5082 GTSM.  True means a directly connected peer (one
      hop); an int is the number of hops to the peer.  We send with TTL 255
      and accept only TTL >= 256 - hops (§3: a directly connected peer's
      packets arrive with 255).
    * else ``ttl``: the TTL we send with (eBGP multihop).
    * else for eBGP: TTL 1, the traditional single-hop eBGP default
      (RFC 4271 leaves it to configuration; GoBGP/BIRD do the same).
    * iBGP without either: the system default.
    """
    if gtsm:
        hops = 1 if gtsm is True else int(gtsm)
        if not 1 <= hops <= 255:
            raise TransportError(errno.EINVAL, "GTSM hop count must be 1..255, got %r" % (gtsm,))
        set_ttl(sock, GTSM_TTL, peer_family)
        set_min_ttl(sock, GTSM_TTL + 1 - hops, peer_family)
    elif ttl is not None:
        set_ttl(sock, ttl, peer_family)
    elif ebgp:
        set_ttl(sock, 1, peer_family)


def bind_local(sock, address: Optional[Address], port: int = 0) -> None:
    """Bind ``sock`` to a local address (source address of the session)."""
    if address is None:
        return
    addr = normalize_address(address)
    try:
        if _sock_family(sock) == socket.AF_INET6:
            if ipaddress.ip_address(addr).version == 4:
                addr = "::ffff:" + addr
            sock.bind((addr, port, 0, 0))
        else:
            sock.bind((addr, port))
    except OSError as exc:
        hint = {
            errno.EADDRNOTAVAIL: "the address is not configured on this host",
            errno.EADDRINUSE: "the address and port are already in use",
            errno.EACCES: "ports below 1024 need root or CAP_NET_BIND_SERVICE",
        }.get(exc.errno, exc.strerror)
        raise TransportError(exc.errno, "cannot bind to %s port %d: %s" % (address, port, hint)) from exc


def create_connect_socket(
    peer: Address,
    *,
    local_address: Optional[Address] = None,
    md5_password: Optional[Union[str, bytes]] = None,
    ttl: Optional[int] = None,
    gtsm: Union[bool, int] = False,
    ebgp: bool = True,
) -> socket.socket:
    """A non-blocking TCP socket for a session to ``peer``, with every option
    that must precede ``connect`` applied: MD5 (the SYN is signed), TTL/GTSM
    (the SYN leaves with the right TTL) and the local address."""
    peer = normalize_address(peer)
    family = address_family(peer)
    if local_address is not None and address_family(local_address) != family:
        raise TransportError(errno.EAFNOSUPPORT, "local address %s and peer %s are of different families" % (local_address, peer))
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        # BGP messages are written whole; Nagle only delays KEEPALIVEs.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if md5_password:
            set_md5(sock, peer, md5_password)
        apply_ttl(sock, ttl=ttl, gtsm=gtsm, ebgp=ebgp)
        bind_local(sock, local_address)
    except BaseException:
        sock.close()
        raise
    return sock


async def open_connection(
    peer: Address,
    port: int = 179,
    *,
    timeout: Optional[float] = None,
    loop: Optional[asyncio.AbstractEventLoop] = None,
    **options,
) -> socket.socket:
    """Connect to ``peer``:``port`` and return the connected non-blocking
    socket (``options`` as for :func:`create_connect_socket`).  Raises
    TransportError naming the peer on failure or timeout."""
    loop = loop or asyncio.get_running_loop()
    peer = normalize_address(peer)
    sock = create_connect_socket(peer, **options)
    addr = (peer, port, 0, 0) if sock.family == socket.AF_INET6 else (peer, port)
    try:
        if timeout is None:
            await loop.sock_connect(sock, addr)
        else:
            await asyncio.wait_for(loop.sock_connect(sock, addr), timeout)
    except asyncio.TimeoutError:
        sock.close()
        raise TransportError(errno.ETIMEDOUT, "connect to %s port %d timed out after %gs" % (peer, port, timeout)) from None
    except OSError as exc:
        sock.close()
        raise TransportError(exc.errno, "connect to %s port %d failed: %s" % (peer, port, exc.strerror or exc)) from exc
    except BaseException:
        sock.close()
        raise
    return sock


def create_listen_socket(
    address: Address = "0.0.0.0",
    port: int = 179,
    *,
    backlog: int = 128,
    dual_stack: bool = False,
) -> socket.socket:
    """A non-blocking listening TCP socket.  An IPv6 socket is IPv6-only
    unless ``dual_stack`` (then IPv4 peers appear v4-mapped; normalize with
    :func:`normalize_address`).  MD5 keys for neighbours are added later with
    :func:`set_md5` on this socket, one per neighbour address."""
    addr = normalize_address(address)
    family = address_family(addr)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0 if dual_stack else 1)
        sock.setblocking(False)
        bind_local(sock, addr, port)
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock
