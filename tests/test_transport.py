"""Socket options: TCP MD5 (RFC 2385), TTL / GTSM (RFC 5082), binding,
connecting and listening helpers of fastbgp.session.transport, on loopback.

TCP_MD5SIG works on Linux loopback for root (or with CAP_NET_ADMIN in some
sandboxes); MD5 tests skip with the reason when the kernel or the
environment refuses the option.
"""

import asyncio
import errno
import socket
import struct
import sys

import pytest

from fastbgp.session import transport as T
from fastbgp.session.speaker import NeighborConfig, Speaker

A_ADDR, B_ADDR = "127.0.0.1", "127.0.0.2"


def md5_supported(family=socket.AF_INET):
    """None if TCP_MD5SIG can be set here, else the reason it cannot."""
    if not sys.platform.startswith("linux"):
        return "TCP MD5 signatures are Linux-only"
    s = socket.socket(family, socket.SOCK_STREAM)
    try:
        T.set_md5(s, "::1" if family == socket.AF_INET6 else "127.0.0.1", "probe")
    except T.TransportError as exc:
        if exc.errno in (errno.EPERM, errno.ENOPROTOOPT, errno.EACCES, errno.EINVAL):
            return "TCP_MD5SIG refused here (%s); needs root on a kernel with CONFIG_TCP_MD5SIG" % exc
        raise
    finally:
        s.close()
    return None


needs_md5 = pytest.mark.skipif(md5_supported() is not None, reason=str(md5_supported()))


# ----------------------------------------------------------------------------- pure helpers


def test_normalize_address():
    assert T.normalize_address("::ffff:192.0.2.1") == "192.0.2.1"
    assert T.normalize_address("2001:DB8::0001") == "2001:db8::1"
    assert T.normalize_address("fe80::1%eth0") == "fe80::1"
    assert T.address_family("192.0.2.1") == socket.AF_INET
    assert T.address_family("2001:db8::1") == socket.AF_INET6
    with pytest.raises(ValueError):
        T.normalize_address("not-an-address")


def test_md5sig_struct_layout():
    # struct tcp_md5sig: sockaddr_storage (128), flags, prefixlen, keylen,
    # ifindex, key[80] = 216 octets.
    raw = T.md5sig_struct(socket.AF_INET, "192.0.2.7", "secret")
    assert len(raw) == 216
    assert struct.unpack_from("=H", raw, 0)[0] == socket.AF_INET
    assert raw[4:8] == socket.inet_aton("192.0.2.7")
    assert struct.unpack_from("=H", raw, 130)[0] == 6
    assert raw[136:142] == b"secret" and raw[142:216] == b"\x00" * 74
    raw6 = T.md5sig_struct(socket.AF_INET6, "2001:db8::5", b"k")
    assert struct.unpack_from("=H", raw6, 0)[0] == socket.AF_INET6
    assert raw6[8:24] == socket.inet_pton(socket.AF_INET6, "2001:db8::5")
    # An IPv4 peer on an IPv6 socket is keyed by its v4-mapped address.
    mapped = T.md5sig_struct(socket.AF_INET6, "192.0.2.7", b"k")
    assert mapped[8:24] == socket.inet_pton(socket.AF_INET6, "::ffff:192.0.2.7")
    # Deleting a key: zero length.
    assert struct.unpack_from("=H", T.md5sig_struct(socket.AF_INET, "192.0.2.7", None), 130)[0] == 0


def test_md5_key_too_long_is_a_clear_error():
    with pytest.raises(T.TransportError, match="at most 80"):
        T.md5sig_struct(socket.AF_INET, "192.0.2.1", "x" * 81)


def test_bind_error_message():
    s = socket.socket()
    try:
        with pytest.raises(T.TransportError, match="not configured on this host"):
            T.bind_local(s, "192.0.2.123")
    finally:
        s.close()


def test_connect_refused_message(run):
    async def main():
        with pytest.raises(T.TransportError, match="connect to 127.0.0.1 port 1 failed"):
            await T.open_connection("127.0.0.1", 1, timeout=2, ebgp=False)

    run(main())


def test_family_mismatch_rejected():
    with pytest.raises(T.TransportError, match="different families"):
        T.create_connect_socket("::1", local_address="127.0.0.1")


# ----------------------------------------------------------------------------- TTL and GTSM


@pytest.mark.parametrize("family,host", [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")])
def test_ttl_options_applied(family, host):
    s = T.create_connect_socket(host, ttl=7)
    assert T.get_ttl(s) == 7
    s.close()
    s = T.create_connect_socket(host)  # eBGP default: TTL 1
    assert T.get_ttl(s) == 1
    s.close()
    s = T.create_connect_socket(host, ebgp=False)  # iBGP: system default
    assert T.get_ttl(s) > 1
    s.close()
    s = T.create_connect_socket(host, gtsm=True)
    # RFC 5082 §3: send with 255, accept only 255 from a directly connected peer.
    assert T.get_ttl(s) == 255 and T.get_min_ttl(s) == 255
    s.close()
    s = T.create_connect_socket(host, gtsm=3)
    assert T.get_ttl(s) == 255 and T.get_min_ttl(s) == 253
    s.close()


def test_ttl_out_of_range():
    s = socket.socket()
    try:
        with pytest.raises(T.TransportError):
            T.set_ttl(s, 0)
        with pytest.raises(T.TransportError):
            T.apply_ttl(s, gtsm=300)
    finally:
        s.close()


def test_listen_socket_v6only_and_nonblocking():
    s = T.create_listen_socket("::1", 0)
    try:
        assert s.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 1
        assert s.getblocking() is False
    finally:
        s.close()
    s = T.create_listen_socket("::", 0, dual_stack=True)
    try:
        assert s.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 0
    finally:
        s.close()


async def _pair(a_kw=None, b_kw=None, a_addr=A_ADDR, b_addr=B_ADDR):
    a = Speaker(65001, "10.0.0.1", listen=[(a_addr, 0)])
    b = Speaker(65002, "10.0.0.2", listen=[(b_addr, 0)])
    await a.start()
    await b.start()
    common = dict(idle_hold_time=0.1, max_idle_hold_time=0.3, connect_retry=1.0)
    nb = b.add_neighbor(NeighborConfig(address=a_addr, peer_as=65001, passive=True, **common, **(b_kw or {})))
    na = a.add_neighbor(NeighborConfig(address=b_addr, peer_as=65002, port=b.port, local_address=a_addr,
                                       **common, **(a_kw or {})))
    return a, b, na, nb


def _sock(n):
    return n.transport.get_extra_info("socket")


def test_session_sockets_ttl_and_gtsm(run):
    async def main():
        a, b, na, nb = await _pair()
        try:
            await na.wait_established(5)
            await nb.wait_established(5)
            # eBGP single hop: TTL 1 both on the connecting and the accepted socket.
            assert T.get_ttl(_sock(na)) == 1 and T.get_ttl(_sock(nb)) == 1
        finally:
            await a.stop()
            await b.stop()
        a, b, na, nb = await _pair(a_kw=dict(gtsm=True), b_kw=dict(gtsm=True))
        try:
            await na.wait_established(5)
            await nb.wait_established(5)
            for n in (na, nb):
                assert T.get_ttl(_sock(n)) == 255 and T.get_min_ttl(_sock(n)) == 255
        finally:
            await a.stop()
            await b.stop()
        a, b, na, nb = await _pair(a_kw=dict(ttl=64), b_kw=dict(ttl=64))
        try:
            await na.wait_established(5)
            assert T.get_ttl(_sock(na)) == 64 and T.get_ttl(_sock(nb)) == 64
        finally:
            await a.stop()
            await b.stop()

    run(main())


def test_gtsm_drops_low_ttl_peer(run):
    """B requires TTL 255 (GTSM); A sends with eBGP TTL 1: B's kernel drops
    A's segments once the accepted socket has IP_MINTTL, no session forms."""

    async def main():
        a, b, na, nb = await _pair(b_kw=dict(gtsm=True))
        try:
            await asyncio.sleep(1.5)
            assert not na.established and not nb.established
        finally:
            await a.stop()
            await b.stop()

    run(main())


# ----------------------------------------------------------------------------- TCP MD5


@needs_md5
@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_md5_matching_key_connects_wrong_key_does_not(host, run):
    reason = md5_supported(T.address_family(host))
    if reason:
        pytest.skip(reason)

    async def main():
        ls = T.create_listen_socket(host, 0)
        port = ls.getsockname()[1]
        T.set_md5(ls, host, "s3cret")
        try:
            s = await T.open_connection(host, port, md5_password="s3cret", timeout=2, ebgp=False)
            s.close()
            # Wrong key and no key: the listener drops the SYNs silently.
            with pytest.raises(T.TransportError, match="timed out"):
                await T.open_connection(host, port, md5_password="wrong", timeout=0.7, ebgp=False)
            with pytest.raises(T.TransportError, match="timed out"):
                await T.open_connection(host, port, timeout=0.7, ebgp=False)
            # Removing the key on the listener lets unsigned connections in.
            T.set_md5(ls, host, None)
            s = await T.open_connection(host, port, timeout=2, ebgp=False)
            s.close()
        finally:
            ls.close()

    run(main())


@needs_md5
def test_md5_between_speakers(run):
    async def main():
        a, b, na, nb = await _pair(a_kw=dict(md5_password="bgp-key"), b_kw=dict(md5_password="bgp-key"))
        try:
            await na.wait_established(5)
        finally:
            await a.stop()
            await b.stop()
        a, b, na, nb = await _pair(a_kw=dict(md5_password="bgp-key"), b_kw=dict(md5_password="other-key"))
        try:
            await asyncio.sleep(1.5)
            assert not na.established and not nb.established
            assert nb.counters.accepted == 0  # never got past the kernel
        finally:
            await a.stop()
            await b.stop()

    run(main())
