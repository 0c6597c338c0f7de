"""The target's side of our TCP connections: sock_diag netlink (RFC-less
Linux interface, sock_diag(7)) when the target shares our network
namespace, else /proc/PID/net/tcp{,6}.

An empty send queue on our side (SIOCOUTQ) only says the target's kernel
acknowledged the octets; they may still sit in its socket receive buffer.
When the target runs on this host and its pid is known (``--target-pid``),
``/proc/PID/net/tcp`` -- the table of the network namespace the target runs
in, readable by root even across namespaces -- gives each connection's
``rx_queue``: octets received but not yet read by the process (proc(5)).
Zero there means the target has read every octet we sent.  In our own
namespace a sock_diag lookup of the exact connection gives the same figure
(``idiag_rqueue``) for a few microseconds instead of a table walk.

Also the target's processes: :func:`descendants` (a daemon's workers,
OpenBGPD's RIB process), whose CPU and memory are the target's too, and
:func:`proc_kb` (their memory figures).
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
from typing import Optional

# sock_diag(7): NETLINK_SOCK_DIAG, SOCK_DIAG_BY_FAMILY requests.
_NETLINK_SOCK_DIAG = 4
_SOCK_DIAG_BY_FAMILY = 20
_NLM_F_REQUEST = 1
_NLMSG_ERROR = 2
_TCP_ESTABLISHED = 1
_NOCOOKIE = 0xFFFFFFFF
_NLMSG_HDR = struct.Struct("=IHHII")
_MSG_HEAD = struct.Struct("=BBBB")  # inet_diag_msg: family, state, timer, retrans
_SOCKID_LEN = 48  # inet_diag_sockid: ports, 2 x 16-octet addresses, if, cookie


class SockDiag:
    """Exact-connection lookups over one netlink socket; every failure
    (no netlink, not found, a malformed answer) is ``None``, never raised."""

    def __init__(self):
        try:
            self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, _NETLINK_SOCK_DIAG)
            self.sock.settimeout(0.5)
        except (OSError, AttributeError):
            self.sock = None
        self.seq = 0

    def rx_queue(self, local, remote) -> Optional[int]:
        """Unread octets of the established TCP socket whose own end is
        ``local`` (address, port) and far end ``remote``; None if there is
        none in this namespace."""
        if self.sock is None:
            return None
        try:
            la, ra = ipaddress.ip_address(local[0]), ipaddress.ip_address(remote[0])
            fam = socket.AF_INET if la.version == 4 else socket.AF_INET6
            sockid = (struct.pack("!HH", local[1], remote[1]) + la.packed.ljust(16, b"\0") +
                      ra.packed.ljust(16, b"\0") + struct.pack("=III", 0, _NOCOOKIE, _NOCOOKIE))
            body = struct.pack("=BBBxI", fam, socket.IPPROTO_TCP, 0, 1 << _TCP_ESTABLISHED) + sockid
            self.seq += 1
            self.sock.send(_NLMSG_HDR.pack(_NLMSG_HDR.size + len(body), _SOCK_DIAG_BY_FAMILY, _NLM_F_REQUEST,
                                           self.seq, 0) + body)
            data = self.sock.recv(8192)
            _ln, typ, _fl, _seq, _pid = _NLMSG_HDR.unpack_from(data)
            if typ == _NLMSG_ERROR:
                return None
            off = _NLMSG_HDR.size
            _fam, state, _t, _r = _MSG_HEAD.unpack_from(data, off)
            got = data[off + 4 : off + 4 + _SOCKID_LEN]
            # A lookup falls back to a listening socket: only the exact
            # established connection counts.
            if state != _TCP_ESTABLISHED or got[:4] != sockid[:4]:
                return None
            rq, _wq = struct.unpack_from("=II", data, off + 4 + _SOCKID_LEN + 4)
            return rq
        except (OSError, ValueError, struct.error):
            return None

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None

ESTABLISHED = "01"  # the st column (include/net/tcp_states.h)


def _address(text: str) -> Optional[tuple]:
    """'0100007F:0CEA' -> ('127.0.0.1', 3306): the kernel prints each
    32-bit word of the address in host (little-endian) order."""
    try:
        hexaddr, hexport = text.split(":")
        raw = bytes.fromhex(hexaddr)
        words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
        if len(words) == 4:
            ip = ipaddress.IPv4Address(words)
        elif len(words) == 16:
            ip = ipaddress.IPv6Address(words)
            if ip.ipv4_mapped is not None:
                ip = ip.ipv4_mapped
        else:
            return None
        return str(ip), int(hexport, 16)
    except ValueError:
        return None


def parse(text: str) -> dict:
    """{(remote address, remote port): rx_queue octets} of the established
    connections in one /proc/net/tcp table; malformed lines are skipped."""
    out = {}
    for line in text.splitlines()[1:]:
        f = line.split()
        if len(f) < 5 or f[3] != ESTABLISHED:
            continue
        rem = _address(f[2])
        try:
            rxq = int(f[4].split(":")[1], 16)
        except (IndexError, ValueError):
            continue
        if rem is not None:
            out[rem] = rxq
    return out


def rx_queues(pids, tables=("tcp", "tcp6")) -> Optional[dict]:
    """The target's unread octets per connection, keyed by the connection's
    far end (our address and port), over the tables of ``pids``; None when
    no table could be read (no pid, the process gone, no permission).

    A read costs the kernel a walk of the whole socket hash (milliseconds
    on a busy host), so callers read only the family they need, and
    rarely."""
    out = None
    for pid in pids or ():
        for name in tables:
            try:
                with open("/proc/%d/net/%s" % (pid, name)) as f:
                    text = f.read()
            except OSError:
                continue
            if out is None:
                out = {}
            out.update(parse(text))
    return out


def descendants(pids) -> list:
    """``pids`` and every process below them, read from
    /proc/PID/task/TID/children (proc(5)); a process that ended meanwhile
    is left out of the walk below it."""
    out, todo, seen = [], list(pids), set()
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        out.append(pid)
        try:
            for tid in os.listdir("/proc/%d/task" % pid):
                with open("/proc/%d/task/%s/children" % (pid, tid), "rb") as f:
                    todo += [int(c) for c in f.read().split()]
        except (OSError, ValueError):
            pass
    return out


def proc_kb(pid, name: str, keys) -> list:
    """The kB figures of /proc/PID/``name`` (``status``: ``VmRSS:``,
    ``VmHWM:``; ``smaps_rollup``, Linux 4.14: ``Pss:``) for the line
    prefixes ``keys`` (bytes), in their order; 0 where a line is absent.
    OSError when the process is gone."""
    out = [0] * len(keys)
    with open("/proc/%d/%s" % (pid, name), "rb") as f:
        for line in f:
            for i, key in enumerate(keys):
                if line.startswith(key):
                    out[i] = int(line.split()[1])
    return out
