"""``[[processes]]``: programs run like ExaBGP ``process`` entries.

Each program is started with its argv (no shell).  fastbgp writes the
events it asked for (``receive``: updates, neighbor-changes,
notifications) on its stdin in ExaBGP's JSON or text encoder
(:mod:`fastbgp.control.exabgp_json`) and reads ExaBGP text commands from
its stdout (:mod:`fastbgp.control.exabgp_commands`), answering each with
``done`` or ``error <reason>`` when ``ack`` is on (ExaBGP 4's default).

A slow reader never back-pressures a BGP session: the sessions' UPDATEs
reach a program through ``Session.observe_parsed_updates`` (as received and
as the session parsed them) as a tuple appended to the program's bounded
queue (``queue-limit`` events; nothing more is done on the session's path).  A writer task encodes and writes in slices
of ``SLICE_SECONDS`` and waits for the pipe.  When the queue is full the
events are dropped, counted and logged, and then either (``on-overflow``)

* ``resync``: the program reads a ``notice`` line saying how many events it
  lost, then a fresh dump of the Loc-RIB (one update line per best route,
  read in chunks from ``Daemon.iter_rib``), then the live events again; or
* ``restart``: the program is restarted (and then gets the dump).

Programs that exit are restarted with exponential backoff (1 s doubling to
60 s, back to 1 s after a minute of running), except after ``shutdown``.
Command lines are read up to ``exabgp_commands.MAX_LINE`` characters; a
longer line, an unknown or malformed command gets an error line, never an
exception.  Routes a program announced stay when it exits or restarts
(as with ExaBGP); ``clear adj-rib out`` and ``shutdown`` withdraw them.

Owns: the programs (``programs``: name -> :class:`Program`) and their
counters.  Calls: the daemon's Control methods (announce, withdraw,
soft_reset, iter_rib), its speaker's neighbours, ``Session.observe_parsed_updates``.
Called by: the daemon (``start``, ``stop``, ``state_change``, ``reload``
after a configuration reload).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import weakref

from fastbgp.control import exabgp_commands as cmds
from fastbgp.control import contract as ctl
from fastbgp.control.exabgp_coalesce import UpdateCoalescer
from fastbgp.control.exabgp_json import PeerInfo, make_encoder
from fastbgp.session.fsm import State
from fastbgp.wire import codec
from fastbgp.wire.communities import parse_community, parse_ext_community
from fastbgp.wire.messages import decode_open
from fastbgp.daemon.common import SLICE_SECONDS, cancel_and_wait

__all__ = ["ProcessManager", "Program", "ACK_LIMIT", "BACKOFF_MAX"]

log = logging.getLogger("fastbgp.daemon.processes")

ACK_LIMIT = 10_000  # answers not yet written; past it the program's commands wait (it alone)
BACKOFF_MIN, BACKOFF_MAX, BACKOFF_RESET = 1.0, 60.0, 60.0
STOP_GRACE = 2.0  # seconds between SIGTERM and SIGKILL
DUMP_CHUNK = 2000  # routes per slice of a table dump


def _peer_info(nb) -> PeerInfo:
    s = nb.session
    conn = s.conn if s is not None else None
    local = (conn.local_address if conn is not None else None) or nb.cfg.local_address or ""
    neg = nb.negotiated
    return PeerInfo(peer_address=nb.address, local_address=local or "",
                    peer_as=(neg.peer_asn if neg is not None else nb.cfg.peer_as) or 0, local_as=nb.local_as,
                    router_id=str(s.remote_id) if s is not None and s.remote_id else "")


class Program:
    """One ``[[processes]]`` entry: its child process, queue and tasks."""

    def __init__(self, manager, cfg):
        self.manager = manager
        self.daemon = manager.daemon
        self.cfg = cfg
        self.name = cfg.name
        self.wants = frozenset(cfg.receive)
        self.encoder = make_encoder(cfg.encoder, cfg.api_version)
        # Received UPDATEs folded per attribute set (JSON only; a run lasts
        # at most coalesce-ms, see fastbgp.control.exabgp_coalesce).
        self.coalescer = UpdateCoalescer(self.encoder) if cfg.coalesce_ms and cfg.encoder == "json" else None
        self.window = cfg.coalesce_ms / 1000.0
        self.queue: collections.deque = collections.deque()
        self.wake = asyncio.Event()
        self.ack_room = asyncio.Event()
        self.pending_acks = 0
        self.resync = False
        self.overflowing = False
        self.stopping = False
        self.shutdown_requested = False
        self.proc = None
        self.task = None
        self.announced: dict = {}  # (prefix, path id) -> None: what this program originated (clear / shutdown)
        # Counters (GET-able by tests and logs).
        self.events = 0
        self.dropped = 0
        self.overflows = 0
        self.restarts = 0
        self.commands = 0
        self.errors = 0
        self.dumps = 0

    # -- events in (the daemon's hot path: append only) -------------------------------------------

    def push(self, item):
        q = self.queue
        if len(q) >= self.cfg.queue_limit:
            self._overflow()
        q.append(item)
        self.events += 1
        self.wake.set()

    def _overflow(self):
        kept = collections.deque(x for x in self.queue if x[0] == "ack")
        lost = len(self.queue) - len(kept)
        self.queue = kept
        self.dropped += lost
        self.overflows += 1
        self.resync = True
        if not self.overflowing:
            self.overflowing = True
            log.warning("process %s: reads too slowly, %d queued events dropped (queue-limit %d); %s",
                        self.name, lost, self.cfg.queue_limit,
                        "restarting it" if self.cfg.on_overflow == "restart" else "it gets a fresh table dump")
            if self.cfg.on_overflow == "restart" and self.proc is not None:
                self._terminate()

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self):
        self.task = asyncio.get_running_loop().create_task(self._supervise(), name="process-%s" % self.name)

    async def stop(self):
        self.stopping = True
        self.wake.set()
        if self.proc is not None:
            await self._stop_proc(self.proc)
        if self.task is not None:
            await cancel_and_wait(self.task)

    def _terminate(self):
        p = self.proc
        if p is not None and p.returncode is None:
            try:
                p.terminate()
            except ProcessLookupError:
                pass

    async def _stop_proc(self, p):
        if p.returncode is not None:
            return
        try:
            if p.stdin is not None:
                p.stdin.close()
            p.terminate()
            await asyncio.wait_for(p.wait(), STOP_GRACE)
        except ProcessLookupError:
            pass
        except asyncio.TimeoutError:
            try:
                p.kill()
            except ProcessLookupError:
                pass
            await p.wait()

    async def _supervise(self):
        loop = asyncio.get_running_loop()
        backoff = BACKOFF_MIN
        first = True
        while not self.stopping and not self.shutdown_requested:
            env = dict(os.environ, **self.cfg.env)
            try:
                self.proc = await asyncio.create_subprocess_exec(
                    *self.cfg.run, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                    stderr=None, env=env, limit=cmds.MAX_LINE, start_new_session=True)
            except OSError as exc:
                log.warning("process %s: cannot start %s: %s; retrying in %.0f s", self.name, self.cfg.run[0], exc,
                            backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
                continue
            started = loop.time()
            log.info("process %s started (pid %d): %s", self.name, self.proc.pid, " ".join(self.cfg.run))
            if not first and "updates" in self.wants:
                self.resync = True  # a restarted program starts from the current table
            first = False
            self.queue = collections.deque(x for x in self.queue if x[0] != "ack")
            self.pending_acks = 0
            writer = loop.create_task(self._writer(self.proc))
            reader = loop.create_task(self._reader(self.proc))
            try:
                rc = await self.proc.wait()
            finally:
                for t in (writer, reader):
                    t.cancel()
                await asyncio.gather(writer, reader, return_exceptions=True)
            if self.stopping:
                return
            if self.shutdown_requested:
                log.warning("process %s asked for shutdown: its routes are withdrawn and it is not restarted "
                            "(the daemon keeps running)", self.name)
                return
            if loop.time() - started >= BACKOFF_RESET:
                backoff = BACKOFF_MIN
            self.restarts += 1
            log.warning("process %s (pid %d) exited with %s; restarting in %.0f s", self.name, self.proc.pid, rc,
                        backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)

    # -- writing events ----------------------------------------------------------------------------

    def _encode(self, item) -> str:
        kind = item[0]
        enc = self.encoder
        if kind == "update":
            return enc.update(item[1], item[3], item[2])  # parsed again only when not folded
        if kind == "ack":
            self.pending_acks -= 1
            self.ack_room.set()
            return item[1]
        if kind == "state":
            return enc.state(item[1], item[2], item[3])
        if kind == "notification":
            return enc.notification(item[1], item[2], item[3], item[4], item[5])
        if kind == "keepalive":
            return enc.keepalive(item[1], "receive")
        if kind == "open":
            try:
                o = decode_open(item[2])
            except Exception as exc:  # hostile bytes: the session refuses them too (RFC 4271 §6.2)
                return enc.notice("malformed OPEN from %s: %s" % (item[1].peer_address, exc))
            return enc.open(item[1], "receive", o)
        return enc.notice(str(item[1:]))

    async def _writer(self, proc):
        loop = asyncio.get_running_loop()
        out = proc.stdin
        coal = self.coalescer
        try:
            while True:
                if self.resync:
                    self.resync = False
                    if coal is not None:
                        await self._write(out, coal.flush())  # taken off the queue before the loss
                    await self._dump(out)
                    continue
                if not self.queue:
                    await self._idle(loop, out)
                    continue
                t0 = loop.time()
                parts = []
                q = self.queue
                n = 0
                while q:
                    item = q.popleft()
                    if coal is not None:
                        if item[0] == "update":
                            parts += coal.add(item[1], item[3], item[2], now=t0, parsed=item[4])
                        else:
                            parts += coal.flush()  # a run never spans another event
                            parts.append(self._encode(item))
                    else:
                        parts.append(self._encode(item))
                    n += 1
                    if not n & 15 and loop.time() - t0 > SLICE_SECONDS:
                        break
                if coal is not None and coal.groups and t0 - coal.started >= self.window:
                    parts += coal.flush()
                await self._write(out, parts)
                self.overflowing = False
                # drain() does not yield while the pipe has room: the BGP
                # sessions get the loop between slices.
                await asyncio.sleep(0)
        except (BrokenPipeError, ConnectionResetError) as exc:
            log.warning("process %s: its stdin closed (%s)", self.name, exc)

    async def _idle(self, loop, out):
        """Nothing queued: wait for an event, or, while a coalesced run is
        open, until its window ends (then write it)."""
        coal = self.coalescer
        if coal is None or not coal.groups:
            self.wake.clear()
            await self.wake.wait()
            return
        left = coal.started + self.window - loop.time()
        if left <= 0:
            await self._write(out, coal.flush())
            return
        self.wake.clear()
        timer = loop.call_later(left, self.wake.set)
        try:
            await self.wake.wait()
        finally:
            timer.cancel()

    @staticmethod
    async def _write(out, lines):
        if lines:
            lines.append("")
            out.write("\n".join(lines).encode())
            await out.drain()

    async def _dump(self, out):
        """A notice of what was lost, then the Loc-RIB as update lines."""
        self.dumps += 1
        enc = self.encoder
        lines = [enc.notice("lost %d events; a table dump follows" % self.dropped)]
        peers = self.manager.peer_infos()
        for fam in ("ipv4-unicast", "ipv6-unicast") if "updates" in self.wants else ():
            async for chunk in self.daemon.iter_rib(fam, DUMP_CHUNK):
                for r in chunk:
                    lines.append(self.manager.route_line(enc, peers, fam, r))
                lines.append("")
                out.write("\n".join(lines).encode())
                lines = []
                await out.drain()
                await asyncio.sleep(0)
        lines.append(enc.notice("table dump done"))
        lines.append("")
        out.write("\n".join(lines).encode())
        await out.drain()

    # -- reading commands --------------------------------------------------------------------------

    def _answer(self, text):
        if self.cfg.ack:
            self.pending_acks += 1
            self.push(("ack", text))

    async def _reader(self, proc):
        inp = proc.stdout
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        discarding = False  # inside an over-long line: up to its newline
        while True:
            try:
                line = await inp.readline()
            except ValueError:
                # asyncio's LimitOverrunError: what was buffered is dropped;
                # the rest of the line follows and is dropped too.
                if not discarding:
                    self.commands += 1  # a command line too, answered with an error
                    self.errors += 1
                    self._answer("error command longer than %d characters" % cmds.MAX_LINE)
                discarding = True
                continue
            except (ConnectionResetError, BrokenPipeError):
                return
            if not line:
                return
            if discarding:
                discarding = not line.endswith(b"\n")
                continue
            text = line.decode("utf-8", "replace").strip()
            if not text:
                continue
            reply = await self.apply(text)
            self._answer(reply)
            while self.pending_acks > ACK_LIMIT:
                # The program sends commands but does not read our answers:
                # only its own commands wait.
                self.ack_room.clear()
                await self.ack_room.wait()
            if loop.time() - t0 > SLICE_SECONDS:
                await asyncio.sleep(0)
                t0 = loop.time()

    async def apply(self, text: str) -> str:
        """Run one command line; the answer line ("done" / "error ...")."""
        self.commands += 1
        try:
            cmd = cmds.parse_command(text)
            # Routes named with "neighbor A" are offered to those neighbours
            # only (an origination entry's neighbour set); EOR, refresh and
            # flush act per neighbour.
            self.manager.check_known(cmd.neighbors)
            await self._run(cmd)
        except (ValueError, KeyError, RuntimeError) as exc:
            self.errors += 1
            reason = str(exc).replace("\n", " ") or type(exc).__name__
            log.info("process %s: refused %r: %s", self.name, text[:200], reason)
            return "error %s" % reason
        return "done"

    async def _run(self, cmd):
        d = self.daemon
        if cmd.kind == "announce":
            await d.announce(cmd.request)
            for p in cmd.request.prefixes:
                self.announced[(p, cmd.request.path_id)] = None
        elif cmd.kind == "withdraw":
            await d.withdraw(cmd.request)
            if not cmd.request.neighbors:  # else it may stay offered to others
                for p in cmd.request.prefixes:
                    self.announced.pop((p, cmd.request.path_id), None)
        elif cmd.kind in ("clear", "shutdown"):
            by_path = {}
            for p, path_id in self.announced:
                by_path.setdefault(path_id, []).append(p)
            for path_id, prefixes in by_path.items():
                await d.withdraw(ctl.Announce(prefixes=prefixes, path_id=path_id, neighbors=list(cmd.neighbors)))
            if not cmd.neighbors:
                self.announced.clear()
            if cmd.kind == "shutdown":
                self.shutdown_requested = True
                asyncio.get_running_loop().call_later(0.1, self._terminate)
        elif cmd.kind == "eor":
            fams = [(1, 1), (2, 1)] if cmd.family is None else [(1 if cmd.family.startswith("ipv4") else 2, 1)]
            for nb in self.manager.selected(cmd.neighbors):
                # RFC 4724 §2: End-of-RIB for each negotiated family asked for.
                nb.send_messages([codec.build_eor(*f) for f in fams if f in nb.negotiated.families])
        elif cmd.kind in ("route-refresh", "flush"):
            for nb in self.manager.selected(cmd.neighbors):
                await d.soft_reset(nb.address, "in" if cmd.kind == "route-refresh" else "out")


class ProcessManager:
    """Every ``[[processes]]`` program of a daemon."""

    def __init__(self, daemon):
        self.daemon = daemon
        self.programs: dict = {}
        self.update_programs: tuple = ()
        self._unsubscribe = weakref.WeakKeyDictionary()  # session -> unsubscribe
        self._unsubscribe_msgs = weakref.WeakKeyDictionary()  # session -> unsubscribe OPEN / KEEPALIVE observers
        self.message_programs: tuple = ()  # programs that receive opens or keepalives
        self._reported = {}  # neighbour address -> (sent, received) notifications already reported

    def start(self):
        for cfg in self.daemon.config.processes:
            if cfg.name in self.programs:
                log.error("process %s is configured twice; the second entry is ignored", cfg.name)
                continue
            p = Program(self, cfg)
            self.programs[cfg.name] = p
            p.start()
        self.update_programs = tuple(p for p in self.programs.values() if "updates" in p.wants)
        self.message_programs = tuple(p for p in self.programs.values() if p.wants & {"opens", "keepalives"})

    async def reload(self, old, new, diff):
        """A reload: programs removed or changed are stopped, new or changed
        ones started (unchanged ones keep running, queue and all)."""
        before = {c.name: c for c in old.processes}
        after = {c.name: c for c in new.processes}
        for name, cfg in before.items():
            p = self.programs.get(name)
            if p is not None and after.get(name) != cfg:
                del self.programs[name]
                await p.stop()
                log.info("process %s stopped (reload)", name)
        for name, cfg in after.items():
            if name not in self.programs:
                p = Program(self, cfg)
                self.programs[name] = p
                p.start()
        self.update_programs = tuple(p for p in self.programs.values() if "updates" in p.wants)
        self.message_programs = tuple(p for p in self.programs.values() if p.wants & {"opens", "keepalives"})
        if self.update_programs:
            for nb in self.neighbors():
                if nb.established:
                    self.hook(nb)
        for nb in self.neighbors() if self.message_programs else ():
            self.hook_messages(nb)

    async def stop(self):
        for unsubscribe in list(self._unsubscribe.values()) + list(self._unsubscribe_msgs.values()):
            unsubscribe()
        self._unsubscribe.clear()
        self._unsubscribe_msgs.clear()
        self.message_programs = ()
        await asyncio.gather(*(p.stop() for p in self.programs.values()), return_exceptions=True)
        self.programs.clear()
        self.update_programs = ()

    def info(self) -> list:
        """Every program's counters (Control ``process_info``, /metrics)."""
        out = []
        for p in self.programs.values():
            proc = p.proc
            out.append(ctl.ProcessInfo(
                name=p.name, pid=proc.pid if proc is not None and proc.returncode is None else None,
                queued=len(p.queue), events=p.events, dropped=p.dropped, overflows=p.overflows, dumps=p.dumps,
                restarts=p.restarts, commands=p.commands, errors=p.errors,
                **({} if p.coalescer is None else {"updates_folded": p.coalescer.updates,
                                                   "update_lines": p.coalescer.lines,
                                                   "runs_unfolded": p.coalescer.unfolded})))
        return out

    # -- neighbours --------------------------------------------------------------------------------

    def neighbors(self) -> list:
        sp = self.daemon.speaker
        return [] if sp is None else list(sp.neighbors.values())

    def check_known(self, addresses):
        known = {nb.address for nb in self.neighbors()}
        unknown = [a for a in addresses if a not in known]
        if unknown:
            raise ValueError("neighbor %s is not configured" % ", ".join(unknown))

    def selected(self, addresses) -> list:
        return [nb for nb in self.neighbors() if nb.established and (not addresses or nb.address in addresses)]

    def peer_infos(self) -> dict:
        return {nb.address: _peer_info(nb) for nb in self.neighbors()}

    @staticmethod
    def route_line(enc, peers, fam, r: ctl.Route) -> str:
        """One best route of a table dump as an update line of ``enc``."""
        peer = peers.get(r.source) or PeerInfo(peer_address=r.source or "local")
        return enc.route(peer, fam, r.prefix, r.next_hop, {
            "origin": r.origin, "as_path": r.as_path, "med": r.med, "local_pref": r.local_pref,
            "communities": [parse_community(c) for c in r.communities],
            "large_communities": [tuple(int(x) for x in c.split(":")) for c in r.large_communities],
            "ext_communities": [parse_ext_community(c) for c in r.ext_communities],
        })

    # -- events from the daemon --------------------------------------------------------------------

    def state_change(self, nb, old, new, reason):
        if not self.programs:
            return
        if self.message_programs:
            self.hook_messages(nb)
        if new is State.ESTABLISHED:
            self.hook(nb)
        info = None
        if new is State.ESTABLISHED or old is State.ESTABLISHED:
            info = _peer_info(nb)
            state = "up" if new is State.ESTABLISHED else "down"
            why = None if reason is None else str(getattr(reason, "value", reason))
            for p in self.programs.values():
                if "neighbor-changes" in p.wants:
                    p.push(("state", info, state, why))
        last = (nb.last_notification_sent, nb.last_notification_received)
        if last != self._reported.get(nb.address, (None, None)):
            prev = self._reported.get(nb.address, (None, None))
            self._reported[nb.address] = last
            info = info or _peer_info(nb)
            for n, direction, before in ((last[0], "send", prev[0]), (last[1], "receive", prev[1])):
                if n is None or n is before:
                    continue
                for p in self.programs.values():
                    if "notifications" in p.wants:
                        p.push(("notification", info, direction, n.code, n.subcode, bytes(n.data)))

    def hook(self, nb):
        """Subscribe to the UPDATEs of ``nb``'s session, as received and as
        parsed (only when a program wants updates): one tuple appended per
        UPDATE per program."""
        s = nb.session
        if not self.update_programs or s is None or s in self._unsubscribe:
            return
        info = _peer_info(nb)
        ctx = s.ctx
        manager = self

        def on_update(body, parsed):
            item = ("update", info, ctx, body if type(body) is bytes else bytes(body), parsed)
            for p in manager.update_programs:
                p.push(item)

        # Decoded by the session already (nothing parsed twice); an UPDATE
        # the session refuses is not written: the program sees the
        # NOTIFICATION and the state change that follow (RFC 4271 §6).
        self._unsubscribe[s] = s.observe_parsed_updates(on_update)

    def hook_messages(self, nb):
        """Subscribe to the OPENs and KEEPALIVEs ``nb``'s session receives
        (``Session.observe_opens`` / ``observe_keepalives``), for programs
        whose ``receive`` has "opens" / "keepalives".  Called on every state
        change, so a session is hooked before its OPEN arrives."""
        s = nb.session
        if s is None or s in self._unsubscribe_msgs:
            return
        manager = self

        def on_open(body):
            item = ("open", _peer_info(nb), bytes(body))
            for p in manager.message_programs:
                if "opens" in p.wants:
                    p.push(item)

        def on_keepalive():
            item = ("keepalive", _peer_info(nb))
            for p in manager.message_programs:
                if "keepalives" in p.wants:
                    p.push(item)

        offs = (s.observe_opens(on_open), s.observe_keepalives(on_keepalive))
        self._unsubscribe_msgs[s] = lambda: [off() for off in offs]
