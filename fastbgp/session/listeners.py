"""Listening sockets of a speaker, kept in step with its neighbours.

``ListenerManager`` owns every listening socket and its asyncio server.  It
applies the per-neighbour socket options a listener needs (TCP MD5 keys,
RFC 5082 TTL/min-TTL) when neighbours come and go, and replaces the whole set
atomically on reload: the new endpoints are all bound first, and only when
every one succeeded are the old ones closed (a failure leaves the old set
untouched and raises).

Contract with its owner (``Speaker``): ``neighbors()`` returns the current
neighbour objects (each with ``.address`` and ``.config.md5_password`` /
``.config.gtsm``), and ``protocol_factory()`` builds the asyncio protocol for
an accepted connection.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Callable, Iterable, Optional

from fastbgp.session import transport as _transport


class ListenerManager:
    def __init__(self, neighbors: Callable[[], Iterable], protocol_factory: Callable, *, dual_stack: bool = False):
        self._neighbors = neighbors
        self._protocol_factory = protocol_factory
        self.dual_stack = dual_stack
        self.endpoints: list = []  # [(host, port)] as configured
        self._socks: list = []
        self._servers: list = []

    # -- binding -------------------------------------------------------------------

    async def _bind(self, endpoints) -> tuple:
        """Bind every endpoint; on any failure close what was bound and raise."""
        loop = asyncio.get_running_loop()
        socks, servers = [], []
        try:
            for host, port in endpoints:
                sock = _transport.create_listen_socket(host, port, dual_stack=self.dual_stack)
                socks.append(sock)
                self._configure(sock)
                servers.append(await loop.create_server(self._protocol_factory, sock=sock))
        except BaseException:
            for srv in servers:
                srv.close()
            for sock in socks:
                sock.close()
            raise
        return socks, servers

    async def start(self, endpoints) -> None:
        """Listen on ``endpoints`` ([(host, port)], port 0 = any free port)."""
        endpoints = [(str(h), int(p)) for h, p in endpoints]
        socks, servers = await self._bind(endpoints)
        self._close_current()
        self._socks, self._servers, self.endpoints = socks, servers, endpoints

    async def rebind(self, endpoints) -> None:
        """Replace the listeners by ``endpoints``: all new ones are bound
        before any old one closes; on failure (OSError: address not on this
        host, in use, no permission) nothing changes and the error is raised."""
        await self.start(endpoints)

    def close(self) -> None:
        self._close_current()
        self._socks, self._servers = [], []

    def _close_current(self) -> None:
        for srv in self._servers:
            srv.close()
        for sock in self._socks:
            try:
                sock.close()
            except OSError:
                pass

    @property
    def addresses(self) -> list:
        """[(address, port)] actually bound."""
        out = []
        for s in self._socks:
            try:
                name = s.getsockname()
            except OSError:
                continue
            out.append((_transport.normalize_address(name[0]), name[1]))
        return out

    # -- per-neighbour socket options ---------------------------------------------

    def neighbor_added(self, address: str, md5_password: Optional[str]) -> None:
        for sock in self._socks:
            if md5_password:
                self._set_md5(sock, address, md5_password)
            self._ttl(sock)

    def neighbor_removed(self, address: str, md5_password: Optional[str]) -> None:
        for sock in self._socks:
            try:
                if md5_password:
                    self._set_md5(sock, address, None)
                self._ttl(sock)
            except OSError:
                pass

    def _configure(self, sock) -> None:
        for nb in self._neighbors():
            if nb.config.md5_password:
                self._set_md5(sock, nb.address, nb.config.md5_password)
        self._ttl(sock)

    def _set_md5(self, sock, address, password) -> None:
        # RFC 2385: the key is per peer address, set on the listener so the
        # SYN of an inbound connection is already checked.
        fam = _transport.address_family(address)
        if sock.family == socket.AF_INET and fam != socket.AF_INET:
            return
        if sock.family == socket.AF_INET6 and fam == socket.AF_INET and not self.dual_stack:
            return
        _transport.set_md5(sock, address, password)

    def _ttl(self, sock) -> None:
        """RFC 5082 on a listening socket: the SYN-ACK of an accepted
        connection leaves with the listener's TTL, so with any GTSM
        neighbour of its family the listener sends with 255; it also drops
        low-TTL SYNs itself when every such neighbour uses GTSM (the
        accepted socket gets the exact per-neighbour setting either way)."""
        mine = []
        for nb in self._neighbors():
            fam = _transport.address_family(nb.address)
            if fam == sock.family or (self.dual_stack and sock.family == socket.AF_INET6):
                mine.append((nb.config.gtsm, fam))
        gtsm = [(g, f) for g, f in mine if g]
        for fam in {f for _g, f in mine}:
            pf = fam if sock.family == socket.AF_INET6 else None
            fam_gtsm = [g for g, f in gtsm if f == fam]
            if fam_gtsm:
                _transport.set_ttl(sock, _transport.GTSM_TTL, pf)
            else:
                # -1 = back to the system default (Linux IP_TTL / IPV6_UNICAST_HOPS).
                levels = [(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS)] if sock.family == socket.AF_INET6 else []
                if fam == socket.AF_INET:
                    levels.append((socket.IPPROTO_IP, socket.IP_TTL))
                for level, opt in levels:
                    try:
                        sock.setsockopt(level, opt, -1)
                    except OSError:
                        pass
            all_gtsm = fam_gtsm and len(fam_gtsm) == len([1 for _g, f in mine if f == fam])
            hops = max(1 if g is True else int(g) for g in fam_gtsm) if all_gtsm else None
            try:
                _transport.set_min_ttl(sock, _transport.GTSM_TTL + 1 - hops if hops else 0, pf)
            except OSError:
                if hops:
                    raise
