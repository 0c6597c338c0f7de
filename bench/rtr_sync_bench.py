#!/usr/bin/env python
"""RTR initial sync: time and RSS of fastbgp's RtrClient alone.

A local scripted cache (this process, asyncio) answers every Reset Query
with one pre-encoded RTR version 2 response -- Cache Response, the VRPs of
bench/rpki_bench.py (``derive_vrps`` over the 1M IPv4 + 200k IPv6
DFZ-shaped routes: 501,937 VRPs, the set bench/rpki_vs_bird.py serves
through stayrtr), End of Data -- written in one go, so the client's read
and apply paths are what is measured, not the cache.  The client runs in a
child process (``--role client``) so its RSS is its own:

* seconds from the TCP connect to the ``vrps_changed`` notification (End
  of Data applied);
* RSS growth over the process before the sync: at that notification, 1 s
  later (after the client's own post-sync release, if any), and after an
  extra gc + malloc_trim from the bench (what stays is the table).

Medians of ``--runs`` (default 3) runs::

    python bench/rtr_sync_bench.py                    # 1M + 200k routes -> ~500k VRPs
    python bench/rtr_sync_bench.py --v4 100000 --v6 20000 --runs 1
"""

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, ROOT)


def rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    return 0.0


def response_blob(v4, v6):
    """(VRP count, the octets of one full RTR v2 response)."""
    import rpki_bench

    from fastbgp.rpki import pdu as P

    families = [rpki_bench.routes_of("ipv4", v4, 1), rpki_bench.routes_of("ipv6", v6, 2)]
    vrps = rpki_bench.derive_vrps(families, 3)
    parts = [P.encode(P.CacheResponse(2, 7))]
    parts.extend(P.encode(P.Prefix(2, True, afi, addr, plen, maxlen, asn)) for afi, addr, plen, maxlen, asn in vrps)
    parts.append(P.encode(P.EndOfData(2, 7, 1, 3600, 600, 7200)))
    return len(vrps), b"".join(parts)


async def serve(blob, runs, v4, v6, impl):
    async def answer(reader, writer):
        try:
            await reader.readexactly(8)  # the Reset Query
            writer.write(blob)
            await writer.drain()
            await reader.read()  # until the client closes
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    out = []
    env = dict(os.environ)
    if impl == "python":
        env["FASTBGP_NO_EXTENSIONS"] = "1"
    for _ in range(runs):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, os.path.abspath(__file__), "--role", "client", "--port", str(port),
            stdout=subprocess.PIPE, env=env)
        stdout, _ = await proc.communicate()
        out.append(json.loads(stdout.decode().strip().splitlines()[-1]))
        print(out[-1], file=sys.stderr)
    server.close()
    return out


async def client(port):
    import ctypes
    import gc

    from fastbgp.rpki import client as C

    synced = asyncio.Event()
    state = {}

    class Watch(C.RtrObserver):
        def vrps_changed(self, added, removed):
            state["seconds"] = time.monotonic() - state["t0"]
            state["synced"] = rss_mb()
            synced.set()

    gc.collect()
    before = rss_mb()
    c = C.RtrClient([C.CacheSpec(address="127.0.0.1", port=port, retry=1)], Watch())
    state["t0"] = time.monotonic()
    task = c.start()
    await asyncio.wait_for(synced.wait(), 600)
    await asyncio.sleep(1.0)
    settled = rss_mb()
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    trimmed = rss_mb()
    await c.stop()
    del task
    print(json.dumps({"vrps": len(c.vrps), "seconds": round(state["seconds"], 3),
                      "at_end_of_data": round(state["synced"] - before, 1),
                      "after_1s": round(settled - before, 1), "after_trim": round(trimmed - before, 1)}))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--role", choices=["client"])
    ap.add_argument("--port", type=int)
    ap.add_argument("--v4", type=int, default=1_000_000)
    ap.add_argument("--v6", type=int, default=200_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--impl", choices=["compiled", "python"], default="compiled",
                    help="VRP table implementation in the client (python = FASTBGP_NO_EXTENSIONS=1)")
    args = ap.parse_args()
    if args.role == "client":
        asyncio.run(client(args.port))
        return
    count, blob = response_blob(args.v4, args.v6)
    print("%d VRPs, %d octets of RTR response" % (count, len(blob)), file=sys.stderr)
    runs = asyncio.run(serve(blob, args.runs, args.v4, args.v6, args.impl))
    med = {k: statistics.median(r[k] for r in runs) for k in ("seconds", "at_end_of_data", "after_1s", "after_trim")}
    print("rtr_sync_bench: %d VRPs, median of %d: sync %.2f s; RSS growth at End of Data %.1f MB, "
          "1 s later %.1f MB, after gc + malloc_trim %.1f MB"
          % (runs[0]["vrps"], len(runs), med["seconds"], med["at_end_of_data"], med["after_1s"], med["after_trim"]))


if __name__ == "__main__":
    main()
