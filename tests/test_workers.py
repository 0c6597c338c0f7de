"""``workers = N`` end to end (fastbgp.daemon.front, relay, worker): the
real ``fastbgp daemon`` process with its front and workers, library
Speakers as its peers on loopback.

What one daemon gives, the front and its workers give too: the table a
sender announces reaches a receiver exactly (IPv4 and IPv6, one End-of-RIB
per family), withdrawals too, the API answers for the whole (counts summed
over the shards), a stop sends one Cease per session and leaves no process
behind; a worker that dies stops the daemon (exit status 1, said in the
log); a configuration workers cannot share runs in one process, and a
reload asking for one is refused."""

from __future__ import annotations

import asyncio
import http.client
import ipaddress
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from fastbgp.session.speaker import NeighborConfig, Speaker
from fastbgp.testing import loops
from fastbgp.testing.net import free_port

pytestmark = pytest.mark.timeout(120)

_ADDRS = (str(ipaddress.IPv4Address("127.0.5.0") + i) for i in itertools.count(10))
V4 = [str(ipaddress.IPv4Network((0x0A000000 + (i << 8), 24))) for i in range(3000)]
V6 = [str(ipaddress.IPv6Network(((0x20010DB8 << 96) + (i << 80), 48))) for i in range(1000)]


class _Unix(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=10)
        self.path_ = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path_)


def api(sock, path, method="GET"):
    c = _Unix(sock)
    try:
        c.request(method, path)
        r = c.getresponse()
        text = r.read().decode()
    finally:
        c.close()
    assert r.status < 400, (r.status, text)
    return json.loads(text) if text else None


def children(pid):
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def private_dir(worker):
    """The workers' private directory (API sockets, the shared prefix
    counts): a worker holds its count file open."""
    fd_dir = "/proc/%d/fd" % worker
    return os.path.dirname(next(t for t in (os.readlink(os.path.join(fd_dir, fd)) for fd in os.listdir(fd_dir))
                                if t.endswith("/prefix-counts")))


def started_workers(fb):
    """Start ``fb`` without neighbours' sessions to wait for: its two workers' pids."""
    fb.start()
    fb.wait_api()
    workers = children(fb.proc.pid)
    assert len(workers) == 2, workers
    return workers


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class Front:
    """``python -m fastbgp daemon`` with ``workers`` in its configuration,
    neighbours ``neighbors`` [(address, AS, port)] it dials."""

    def __init__(self, tmp, neighbors, workers=2, extra="", addr=None):
        self.addr = addr or next(_ADDRS)
        self.port = free_port(self.addr)
        self.sock = str(tmp / "api.sock")
        self.path = tmp / "fastbgp.toml"
        self.log = tmp / "fastbgp.log"
        lines = ["[global]", "asn = 65001", 'router-id = "10.0.0.1"', 'listen = ["%s:%d"]' % (self.addr, self.port),
                 "workers = %d" % workers, "[global.api]", 'socket = "%s"' % self.sock]
        for address, asn, port in neighbors:
            lines += ["[[neighbors]]", 'address = "%s"' % address, "peer-as = %d" % asn, "port = %d" % port,
                      'local-address = "%s"' % self.addr, 'families = ["ipv4-unicast", "ipv6-unicast"]',
                      'default-import = "accept"', 'default-export = "accept"',
                      "timers = { idle-hold = 1, connect-retry = 1 }"]
        self.text = "\n".join(lines) + "\n" + extra
        self.path.write_text(self.text)
        self.proc = None

    def start(self):
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "fastbgp", "daemon", "-c", str(self.path)],
                                         stdout=log, stderr=subprocess.STDOUT)
        return self

    def log_text(self):
        return self.log.read_text(errors="replace")

    def wait_api(self, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log_text()
            try:
                return api(self.sock, "/v1/global")
            except OSError:
                time.sleep(0.1)
        raise AssertionError("no API:\n" + self.log_text())

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for p in children(self.proc.pid) if self.proc is not None else ():
            os.kill(p, signal.SIGKILL)


async def until(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for " + what)
        await asyncio.sleep(0.05)


async def speaker(asn, address, front_addr):
    port = free_port(address)
    sp = Speaker(asn, "10.0.0.%d" % (asn - 65000), listen=[(address, port)])
    nb = sp.add_neighbor(NeighborConfig(address=front_addr, peer_as=65001, passive=True, hold_time=30,
                                        families=["ipv4-unicast", "ipv6-unicast"], idle_hold_time=0.2))
    await sp.start()
    return sp, nb, port


def test_workers_pass_a_table_exactly_and_answer_as_one_daemon(tmp_path):
    async def main():
        a_addr, b_addr, front_addr = next(_ADDRS), next(_ADDRS), next(_ADDRS)
        a, na, pa = await speaker(65002, a_addr, front_addr)
        b, nb, pb = await speaker(65003, b_addr, front_addr)
        fb = Front(tmp_path, [(a_addr, 65002, pa), (b_addr, 65003, pb)], addr=front_addr)
        # Three attribute sets (the Speaker prepends its own AS).
        a.announce(V4[:1500], next_hop=a_addr)
        a.announce(V4[1500:], next_hop=a_addr, as_path=[64999])
        a.announce(V6, next_hop="2001:db8::2")
        fb.start()
        try:
            g = fb.wait_api()
            assert g["workers"] == 2
            workers = children(fb.proc.pid)
            assert len(workers) == 2, workers
            private = private_dir(workers[0])
            assert os.path.isdir(private) and os.path.basename(private).startswith("fastbgp-workers-")
            await until(lambda: len(nb.received("ipv4-unicast")) == len(V4)
                        and len(nb.received("ipv6-unicast")) == len(V6), 60, "the whole table at the receiver")
            await nb.wait_end_of_rib(timeout=10)
            assert sorted(nb.received("ipv4-unicast")) == sorted(V4)
            assert sorted(nb.received("ipv6-unicast")) == sorted(V6)
            # About one UPDATE per attribute set and shard, one End-of-RIB
            # per family (8 when the batches fall so: 3 sets x 2 shards +
            # 2), nothing sent twice.
            assert nb.counters.received.update <= 16, nb.counters.received.update
            g = api(fb.sock, "/v1/global")
            sizes = {r["family"]: r["prefixes"] for r in g["ribs"]}
            assert sizes == {"ipv4-unicast": len(V4), "ipv6-unicast": len(V6)}
            assert g["listen"] == ["%s:%d" % (fb.addr, fb.port)]
            rib = api(fb.sock, "/v1/rib/ipv4-unicast")
            assert sorted(r["prefix"] for r in rib) == sorted(V4)
            [one] = api(fb.sock, "/v1/rib/ipv6-unicast?prefix=" + V6[7])
            assert one["prefix"] == V6[7] and one["as_path"] == [65002]
            nbs = {n["address"]: n for n in api(fb.sock, "/v1/neighbors")}
            assert nbs[a_addr]["state"] == nbs[b_addr]["state"] == "established"
            # Withdrawals reach the receiver exactly too.
            a.withdraw(V4[:1000])
            await until(lambda: len(nb.received("ipv4-unicast")) == len(V4) - 1000, 30, "the withdrawals")
            assert sorted(nb.received("ipv4-unicast")) == sorted(V4[1000:])
            # A connection from an address with no neighbour: refused by the front.
            with socket.create_connection((fb.addr, fb.port), timeout=5, source_address=(next(_ADDRS), 0)) as s:
                s.settimeout(5)
                assert s.recv(100) == b""
            assert api(fb.sock, "/v1/global")["refused_unknown"] == 1
            # The stop: one Cease per session, every process gone.
            fb.proc.terminate()
            assert fb.proc.wait(20) == 0
            await until(lambda: not nb.established and not na.established, 10, "the sessions closed")
            assert nb.last_reason is not None
            assert nb.counters.received.notification == 1
            assert not any(alive(p) for p in workers)
            assert not os.path.exists(private)
            text = fb.log_text()
            assert "Traceback" not in text, text
            assert "2 workers" in text
        finally:
            fb.stop()
            await a.stop()
            await b.stop()

    loops.run(main(), timeout=110)


def test_the_front_dials_only_when_the_workers_want_a_session(tmp_path):
    """A neighbour down by configuration is not dialed (the workers' FSMs
    are Idle); enabled through the API, it is."""
    async def main():
        a_addr, front_addr = next(_ADDRS), next(_ADDRS)
        a, na, pa = await speaker(65002, a_addr, front_addr)
        fb = Front(tmp_path, [(a_addr, 65002, pa)], addr=front_addr)
        fb.path.write_text(fb.text + "admin-down = true\n")
        fb.start()
        try:
            fb.wait_api()
            await asyncio.sleep(3)
            assert not na.established and na.counters.accepted == 0, na.counters.accepted
            api(fb.sock, "/v1/neighbors/%s/enable" % a_addr, "POST")
            await until(lambda: na.established, 15, "the session after enable")
        finally:
            fb.stop()
            await a.stop()

    loops.run(main(), timeout=60)


def test_a_worker_that_dies_stops_the_daemon(tmp_path):
    fb = Front(tmp_path, [])
    try:
        workers = started_workers(fb)
        os.kill(workers[1], signal.SIGKILL)
        assert fb.proc.wait(20) == 1
        assert not alive(workers[0])
        assert "worker 1 (pid %d) exited" % workers[1] in fb.log_text()
    finally:
        fb.stop()


def _rollup(pid) -> dict:
    with open("/proc/%d/smaps_rollup" % pid) as f:
        return {line.split(":")[0]: int(line.split()[1]) for line in f if line.split()[-1:] == ["kB"]}


def test_workers_are_forked_sharing_the_front_s_modules_and_never_outlive_it(tmp_path):
    """The workers are forked from the front once it imported the daemon
    (fastbgp.daemon.spawn): megabytes of their heap are the front's pages,
    shared copy-on-write (a worker started afresh shares none of its heap);
    and each holds only its own control channel, so a front killed outright
    is seen by every worker, which then stops."""
    fb = Front(tmp_path, [])
    workers = []
    try:
        workers = started_workers(fb)
        private = private_dir(workers[0])
        for w in workers:
            # Shared_Dirty: pages written before the fork, shared since.
            assert _rollup(w)["Shared_Dirty"] > 8 * 1024, _rollup(w)
        fb.proc.kill()
        fb.proc.wait(10)
        deadline = time.monotonic() + 20
        while any(alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(alive(w) for w in workers), "a worker outlived its front"
        assert not os.path.exists(private)  # removed by worker 0
        assert "the front process is gone" in fb.log_text()
    finally:
        fb.stop()
        for w in workers:
            if alive(w):
                os.kill(w, signal.SIGKILL)


def test_a_prefix_limit_counts_every_shard(tmp_path):
    """150 prefixes against a limit of 100: about 75 in each worker, over
    the limit together (RFC 4486 Cease 6/1), as in one process."""
    async def main():
        a_addr, front_addr = next(_ADDRS), next(_ADDRS)
        a, na, pa = await speaker(65002, a_addr, front_addr)
        fb = Front(tmp_path, [(a_addr, 65002, pa)], addr=front_addr)
        fb.path.write_text(fb.text + "prefix-limit = { ipv4-unicast = { max = 100 } }\n")
        a.announce(V4[:90], next_hop=a_addr)
        fb.start()
        try:
            assert fb.wait_api()["workers"] == 2
            await until(lambda: na.established, 30, "the session")
            await until(lambda: sum(n["prefixes_received"] for n in api(fb.sock, "/v1/neighbors")) == 90, 30,
                        "90 prefixes in the workers")
            assert na.established
            a.announce(V4[90:150], next_hop=a_addr)
            await until(lambda: na.counters.received.notification == 1, 30, "the Cease")
            assert "6/1" in str(na.last_error) or "prefix" in str(na.last_error).lower(), na.last_error
        finally:
            fb.stop()
            await a.stop()

    loops.run(main(), timeout=110)


def test_what_workers_cannot_share_runs_in_one_process_and_a_reload_cannot_ask_for_it(tmp_path):
    single = Front(tmp_path, [])
    single.path.write_text(single.text + '[global.metrics]\nlisten = "127.0.5.1:%d"\n' % free_port("127.0.5.1"))
    single.start()
    try:
        assert single.wait_api()["workers"] == 1
        assert children(single.proc.pid) == []
        assert "running in one process: global.metrics.listen" in single.log_text()
    finally:
        single.stop()
    sub = tmp_path / "b"
    sub.mkdir()
    fb = Front(sub, [])
    fb.start()
    try:
        fb.wait_api()
        fb.path.write_text(fb.text + '[[bmp]]\naddress = "127.0.0.1"\nport = 11019\n')
        fb.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while "reload refused" not in fb.log_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        text = fb.log_text()
        assert "reload refused" in text and "[[bmp]] stations" in text, text
        assert api(fb.sock, "/v1/global")["workers"] == 2
        assert fb.proc.poll() is None
    finally:
        fb.stop()


def test_after_a_burst_the_front_and_every_worker_give_freed_heap_back(tmp_path):
    """Once a table went through and the daemon is quiet, each of the three
    processes trims its heap once (fastbgp.daemon.trim), each saying so at
    debug level; not again while nothing happens."""

    async def main():
        a_addr, front_addr = next(_ADDRS), next(_ADDRS)
        a, na, pa = await speaker(65002, a_addr, front_addr)
        fb = Front(tmp_path, [(a_addr, 65002, pa)], addr=front_addr, extra='[global.log]\nlevel = "debug"\n')
        table = [str(ipaddress.IPv4Network((0x0B000000 + (i << 8), 24))) for i in range(20000)]  # > TRIM_OCTETS
        a.announce(table, next_hop=a_addr)
        fb.start()
        try:
            fb.wait_api()
            await until(lambda: sum(r["prefixes"] for r in api(fb.sock, "/v1/global")["ribs"]) == len(table), 60,
                        "the table in the workers")

            def trims():
                return [line for line in fb.log_text().splitlines() if "freed heap pages returned" in line]

            await until(lambda: len(trims()) >= 3, 20, "a trim in the front and in each worker")
            lines = trims()
            assert sum("worker=0" in line for line in lines) == 1, lines
            assert sum("worker=1" in line for line in lines) == 1, lines
            assert sum("worker=" not in line for line in lines) == 1, lines
            await asyncio.sleep(2.5)  # quiet: no second trim for the same burst
            assert len(trims()) == 3, trims()
        finally:
            fb.stop()
            await a.stop()

    loops.run(main(), timeout=110)
