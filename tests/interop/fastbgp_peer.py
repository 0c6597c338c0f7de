"""Run a fastbgp :class:`~fastbgp.session.speaker.Speaker` inside a lab namespace.

Two halves in one module:

*runner* (``python -m tests.interop.fastbgp_peer``)
    started by the test inside a lab :class:`~fastbgp.testing.lab.Host`
    (``ip netns exec``), drives one real Speaker on uvloop and obeys a
    line-oriented JSON protocol on stdin/stdout: one request object a line
    (``{"id": 1, "cmd": "announce", ...}``), one reply a line
    (``{"id": 1, "ok": true, "result": ...}`` or ``{"id": 1, "ok": false,
    "error": "..."}``).  Logging (DEBUG for fastbgp) goes to stderr, which
    the client points at a file.  EOF on stdin stops the speaker (Cease
    without a message) and exits.

    Commands: ``start`` (asn, router_id, listen, neighbors: NeighborConfig
    dicts), ``announce`` / ``withdraw`` (Speaker.announce/withdraw keywords),
    ``disable`` / ``enable`` / ``reset`` (address, message), ``state``,
    ``wait_established``, ``received``, ``negotiated``, ``notifications``,
    ``info``, ``stop``, ``exit``.

*client* (:class:`FastBGP`)
    a :class:`fastbgp.testing.lab.Daemon` subclass, so a test handles fastbgp
    exactly like BIRD or GoBGP: ``start/wait_established/neighbor_state/
    rib/wait_route/announce/withdraw/disable/enable/log_text``, plus direct
    access to fastbgp's own view (``negotiated``, ``received``,
    ``notifications``).  Its process is started through ``host.popen`` so
    the lab kills it with everything else.

The client half is stdlib only (plus the lab); fastbgp is only imported by
the runner.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from typing import Optional

from fastbgp.testing import lab as L

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

_FAMILY_NAMES = {"ipv4": "ipv4-unicast", "ipv6": "ipv6-unicast"}
_ORIGIN_NAMES = {0: "igp", 1: "egp", 2: "incomplete"}


# ==========================================================================
# runner (inside the namespace)


def _route_dict(r) -> dict:
    import msgspec

    d = msgspec.to_builtins(r)
    d.pop("attributes", None)
    d["origin_name"] = _ORIGIN_NAMES.get(r.origin)
    # attribute type codes, in the order received (after decoding)
    d["attribute_codes"] = [a.type_code for a in r.attributes]
    return d


def _notification_dict(n) -> Optional[dict]:
    if n is None:
        return None
    return {"code": n.code, "subcode": n.subcode, "data": bytes(n.data).hex(),
            "shutdown_message": n.shutdown_message}


class _Runner:
    def __init__(self, loop):
        self.loop = loop
        self.speaker = None
        self.done = None

    def reply(self, msg: dict) -> None:
        sys.stdout.write(json.dumps(msg) + "\n")
        sys.stdout.flush()

    async def run(self) -> None:
        import asyncio
        import threading

        self.done = asyncio.Event()
        queue: asyncio.Queue = asyncio.Queue()

        def reader():
            for line in sys.stdin:
                self.loop.call_soon_threadsafe(queue.put_nowait, line)
            self.loop.call_soon_threadsafe(queue.put_nowait, None)

        threading.Thread(target=reader, daemon=True).start()
        self.reply({"id": 0, "ok": True, "result": "ready"})
        while True:
            line = await queue.get()
            if line is None:
                break
            line = line.strip()
            if not line:
                continue
            try:
                req = json.loads(line)
            except ValueError as exc:
                self.reply({"id": None, "ok": False, "error": "bad JSON: %s" % exc})
                continue
            # Each request runs on its own task so a long wait never blocks
            # the speaker; replies carry the request id.
            self.loop.create_task(self._serve(req))
            if req.get("cmd") == "exit":
                break
        if self.speaker is not None and self.speaker.started:
            await self.speaker.stop()

    async def _serve(self, req: dict) -> None:
        rid = req.get("id")
        cmd = req.get("cmd")
        try:
            fn = getattr(self, "cmd_" + str(cmd), None)
            if fn is None:
                raise ValueError("unknown command %r" % cmd)
            args = {k: v for k, v in req.items() if k not in ("id", "cmd")}
            res = fn(**args)
            if hasattr(res, "__await__"):
                res = await res
            self.reply({"id": rid, "ok": True, "result": res})
        except BaseException as exc:  # everything goes back to the test
            import logging

            logging.getLogger("fastbgp_peer").exception("command %r failed", cmd)
            self.reply({"id": rid, "ok": False, "error": "%s: %s" % (type(exc).__name__, exc)})

    # -- commands ------------------------------------------------------------
    def _nb(self, address):
        return self.speaker.neighbor(address)

    async def cmd_start(self, asn, router_id, listen=None, neighbors=(), dual_stack=False):
        import msgspec

        from fastbgp.session.speaker import NeighborConfig, Speaker

        self.speaker = Speaker(int(asn), router_id, listen=[tuple(x) for x in listen] if listen else None,
                               dual_stack=dual_stack)
        for n in neighbors:
            self.speaker.add_neighbor(msgspec.convert(n, NeighborConfig))
        await self.speaker.start()
        return {"listen": self.speaker.listen_addresses}

    def cmd_announce(self, prefixes, next_hop=None, **kw):
        return self.speaker.announce(prefixes, next_hop, **kw)

    def cmd_withdraw(self, prefixes, **kw):
        return self.speaker.withdraw(prefixes, **kw)

    def cmd_disable(self, address, message=""):
        self._nb(address).disable(message)

    def cmd_enable(self, address):
        self._nb(address).enable()

    def cmd_reset(self, address, message="", hard=False):
        self._nb(address).reset(message, hard)

    def cmd_state(self, address):
        return self._nb(address).state.name.lower()

    def cmd_states(self):
        return {a: nb.state.name.lower() for a, nb in self.speaker.neighbors.items()}

    async def cmd_wait_established(self, address, seconds=30):
        await self._nb(address).wait_established(seconds)

    async def cmd_flush(self, address, seconds=10):
        await self._nb(address).flush(seconds)

    def cmd_received(self, address, family=None):
        return {p: _route_dict(r) for p, r in self._nb(address).received(family).items()}

    def cmd_negotiated(self, address):
        import msgspec

        neg = self._nb(address).negotiated
        if neg is None:
            return None
        d = msgspec.to_builtins(neg)
        d["families"] = sorted(list(f) for f in neg.families)
        return d

    def cmd_notifications(self, address):
        nb = self._nb(address)
        return {"sent": _notification_dict(nb.last_notification_sent),
                "received": _notification_dict(nb.last_notification_received)}

    def cmd_info(self, address):
        nb = self._nb(address)
        s = nb.session
        return {
            "state": nb.state.name.lower(),
            "last_error": nb.last_error,
            "last_reason": None if nb.last_reason is None else nb.last_reason.value,
            "history": [[h.old.name, h.new.name, None if h.reason is None else h.reason.value] for h in nb.history],
            "remote_id": nb.remote_id,
            "connection": None if nb.connection is None else [nb.connection.local_address, nb.connection.local_port,
                                                            nb.connection.peer_address, nb.connection.peer_port],
            "outbound": None if s is None else s.outbound,
            "collisions": nb.counters.collisions,
            "established_count": nb.counters.established_count,
            "connect_attempts": nb.counters.connect_attempts,
            "end_of_rib_received": sorted(list(f) for f in nb.end_of_rib_received),
            "counters": nb.counters.to_dict(),
        }

    def cmd_refresh(self, address, family=None):
        return self._nb(address).request_refresh(family)

    async def cmd_stop(self, notify=True, message=""):
        await self.speaker.stop(notify=notify, message=message)

    def cmd_exit(self):
        return "bye"


def main() -> None:
    import asyncio
    import logging

    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format="%(asctime)s.%(msecs)03d %(name)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("fastbgp").setLevel(logging.DEBUG)
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        uvloop = None

    async def amain():
        await _Runner(asyncio.get_running_loop()).run()

    if uvloop is not None:
        uvloop.run(amain())
    else:  # pragma: no cover
        asyncio.run(amain())


# ==========================================================================
# client (in the test process)


class FastBGPError(L.LabError):
    """A command the runner answered with an error."""


class FastBGP(L.Daemon):
    """fastbgp in a lab host, driven over the runner's JSON protocol.

    ``neighbors`` are :class:`lab.Neighbor` (address, asn, passive,
    password, hold_time, families, local_address); ``options`` are passed
    through as further NeighborConfig fields (e.g. ``four_octet_as``).
    Lab-friendly timers are the default: connect retry 2 s, idle hold 1 s.
    ``listen``: None = listen on the host's addresses (port 179) when any
    neighbour is passive, [] = never, or a list of (address, port);
    ``dual_stack``: an IPv6 listener also takes IPv4 peers (v4-mapped).
    """

    kind = "fastbgp"
    binaries = ()

    def __init__(self, host, asn, router_id=None, neighbors=(), routes=(), listen=None, dual_stack=False):
        super().__init__(host, asn, router_id, neighbors, routes)
        self.dual_stack = dual_stack
        if listen is None:
            listen = []
            if any(n.passive for n in self.neighbors):
                listen = [(a, 179) for a in (host.ipv4, host.ipv6) if a]
        self.listen = [tuple(x) for x in listen]
        self.logfile = self.path("fastbgp.log")
        self._buf = b""
        self._next_id = 0

    # -- process and protocol -----------------------------------------------
    def neighbor_config(self, n: L.Neighbor) -> dict:
        cfg = {"address": n.address, "peer_as": int(n.asn), "passive": bool(n.passive),
               "families": [_FAMILY_NAMES.get(f, f) for f in n.afs()],
               "connect_retry": 2.0, "idle_hold_time": 1.0, "max_idle_hold_time": 2.0}
        if n.password:
            cfg["md5_password"] = n.password
        if n.hold_time is not None:
            cfg["hold_time"] = int(n.hold_time)
        if n.local_address:
            cfg["local_address"] = n.local_address
        if n.description:
            cfg["description"] = n.description
        cfg.update(n.options)
        return cfg

    def start(self) -> "FastBGP":
        self._err = open(self.logfile, "ab")
        env = dict(os.environ)
        env["PYTHONPATH"] = REPO_ROOT + os.pathsep + env.get("PYTHONPATH", "")
        env["PYTHONUNBUFFERED"] = "1"
        self.proc = self.host.popen([sys.executable, "-m", "tests.interop.fastbgp_peer"], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=self._err, cwd=REPO_ROOT, env=env, bufsize=0)
        hello = self._read_reply(20)
        if hello.get("result") != "ready":
            raise L.LabError(f"fastbgp runner did not start: {hello}\n{self.log_tail()}")
        self.call("start", asn=self.asn, router_id=self.router_id, listen=self.listen, dual_stack=self.dual_stack,
                  neighbors=[self.neighbor_config(n) for n in self.neighbors])
        for r in self.routes.values():
            self._announce_route(r)
        return self

    def _close_files(self) -> None:
        super()._close_files()
        err = getattr(self, "_err", None)
        if err is not None:
            err.close()
            self._err = None
        if self.proc is not None:
            for f in (self.proc.stdin, self.proc.stdout):
                try:
                    if f is not None:
                        f.close()
                except OSError:
                    pass

    def stop(self, timeout: float = 5) -> None:
        """Stop the speaker (Cease to every peer), then the runner."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.call("stop", timeout=timeout)
                self.proc.stdin.close()
                self.proc.wait(timeout=timeout)
            except Exception:
                pass
        super().stop(timeout)

    def _read_reply(self, timeout: float) -> dict:
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no reply from the fastbgp runner within {timeout}s\n{self.log_tail()}")
            r, _, _ = select.select([fd], [], [], min(left, 0.5))
            if r:
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise L.DaemonExited(f"fastbgp runner exited ({self.proc.poll()})\n{self.log_tail()}")
                self._buf += chunk
            elif self.proc.poll() is not None:
                raise L.DaemonExited(f"fastbgp runner exited ({self.proc.returncode})\n{self.log_tail()}")
        line, _, self._buf = self._buf.partition(b"\n")
        return json.loads(line)

    def call(self, cmd: str, timeout: float = 30, **args):
        """Send one command, return its result (FastBGPError on failure)."""
        self._ensure_running()
        self._next_id += 1
        rid = self._next_id
        req = dict(args, id=rid, cmd=cmd)
        self.proc.stdin.write((json.dumps(req) + "\n").encode())
        self.proc.stdin.flush()
        deadline = time.monotonic() + timeout
        while True:
            rep = self._read_reply(max(0.1, deadline - time.monotonic()))
            if rep.get("id") == rid:
                break
        if not rep.get("ok"):
            raise FastBGPError(f"fastbgp {cmd}: {rep.get('error')}")
        return rep.get("result")

    # -- fastbgp's own view ----------------------------------------------------
    def state(self, address: str) -> str:
        return self.call("state", address=address)

    def neighbor_state(self, peer_ip: str) -> str:
        return self.state(peer_ip)

    def wait_established(self, peer_ip: str, timeout: float = 30) -> None:
        try:
            self.call("wait_established", timeout=timeout + 10, address=peer_ip, seconds=timeout)
        except FastBGPError as exc:
            raise TimeoutError(f"{exc}\ninfo={self.info(peer_ip)}\n{self.log_tail()}") from None

    def negotiated(self, address: str) -> Optional[dict]:
        return self.call("negotiated", address=address)

    def received(self, address: str, family: Optional[str] = None) -> dict:
        return self.call("received", address=address, family=_FAMILY_NAMES.get(family, family))

    def notifications(self, address: str) -> dict:
        return self.call("notifications", address=address)

    def info(self, address: str) -> dict:
        return self.call("info", address=address)

    def rib(self, family: str = "ipv4") -> dict:
        """Routes received from every neighbour in the lab's normalised shape
        (the last neighbour listed wins on duplicates)."""
        out = {}
        for n in self.neighbors:
            for prefix, r in self.received(n.address, family).items():
                out[prefix] = self.norm(r)
        return out

    def link_local(self) -> str:
        """The host's eth0 link-local IPv6 address."""
        out = self.host.run(["ip", "-6", "-o", "addr", "show", "dev", self.host.ifname, "scope", "link"],
                            check=True).stdout
        return out.split(" inet6 ", 1)[1].split("/", 1)[0]

    @staticmethod
    def norm(r: dict) -> dict:
        return L.route(r["next_hop"], r["as_path"], r["origin_name"], r["med"], r["local_pref"],
                       r["communities"], r["large_communities"])

    # -- operator actions ---------------------------------------------------------
    def _announce_route(self, r: L.Route, neighbors=None, **extra) -> int:
        kw = {"prefixes": [r.prefix], "next_hop": r.next_hop, "as_path": [int(a) for a in r.as_path],
              "origin": r.origin, "med": r.med, "local_pref": r.local_pref,
              "communities": list(r.communities), "large_communities": list(r.large_communities)}
        if neighbors is not None:
            kw["neighbors"] = list(neighbors)
        kw.update({k: v for k, v in extra.items() if v is not None})
        return self.call("announce", **kw)

    def announce(self, prefix: str, next_hop: Optional[str] = None, neighbors=None, link_local=None,
                 **attrs) -> None:
        """``next_hop`` None = next-hop-self (the session's local address);
        ``link_local``: IPv6 link-local next hop sent beside the global one
        (RFC 2545); *attrs* are lab.Route fields."""
        L._check_doc_addr(prefix)
        r = L.Route(prefix, next_hop, **attrs)
        self.routes[prefix] = r
        self._announce_route(r, neighbors, link_local=link_local)

    def withdraw(self, prefix: str, neighbors=None) -> None:
        self.routes.pop(prefix, None)
        kw = {"prefixes": [prefix]}
        if neighbors is not None:
            kw["neighbors"] = list(neighbors)
        self.call("withdraw", **kw)

    def disable(self, peer_ip: str, message: Optional[str] = None) -> None:
        self.call("disable", address=peer_ip, message=message or "")

    def enable(self, peer_ip: str) -> None:
        self.call("enable", address=peer_ip)

    def refresh(self, peer_ip: str, family: Optional[str] = None) -> int:
        """Send ROUTE-REFRESH; returns how many went out."""
        return self.call("refresh", address=peer_ip, family=_FAMILY_NAMES.get(family, family))

    def counters(self, peer_ip: str) -> dict:
        return self.info(peer_ip)["counters"]

    def reset(self, peer_ip: str, message: str = "", hard: bool = False) -> None:
        self.call("reset", address=peer_ip, message=message, hard=hard)


if __name__ == "__main__":
    main()
