"""The target's side of our TCP connections, from /proc/PID/net/tcp{,6}.

An empty send queue on our side (SIOCOUTQ) only says the target's kernel
acknowledged the octets; they may still sit in its socket receive buffer.
When the target runs on this host and its pid is known (``--target-pid``),
``/proc/PID/net/tcp`` -- the table of the network namespace the target runs
in, readable by root even across namespaces -- gives each connection's
``rx_queue``: octets received but not yet read by the process (proc(5)).
Zero there means the target has read every octet we sent.
"""

from __future__ import annotations

import ipaddress
from typing import Optional

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
