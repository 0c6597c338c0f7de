#!/usr/bin/env python
"""CPU µs per import-policy evaluation of bench/rpki_vs_bird.py's ROV chain.

One evaluation per distinct attribute block and RFC 6811 state is what the
daemon's import fast lane pays on a cache miss (the importer caches the
verdict per family, block, next hop and state).  This times
``PolicyEngine.evaluate_group`` on ``--blocks`` distinct DFZ-shaped blocks
(ORIGIN, a 2-AS AS_PATH, NEXT_HOP), each with one of the three states in
turn, through a fresh engine per round; the median over ``--rounds``.
``--against FILE`` loads another copy of fastbgp/rib/policy.py (e.g.
``git show HEAD~1:fastbgp/rib/policy.py > /tmp/old.py``) and alternates the
two per round, checks they return the same verdicts, and prints the ratio.

    python bench/policy_rov_eval.py
    python bench/policy_rov_eval.py --against /tmp/old.py --rounds 5
"""

import argparse
import importlib.util
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)


def config(vrp_file):
    from rpki_vs_bird import DUT_AS, STATES, TAG, TAG_OF

    from fastbgp.config.checks import load_config

    lines = ["[global]", "asn = %d" % DUT_AS, 'router-id = "192.0.2.1"', "[rpki]", 'file = "%s"' % vrp_file,
             "[[policies]]", 'name = "rov"']
    for s in STATES:  # the same statements as rpki_vs_bird.fastbgp_config
        lines += ["[[policies.statements]]", 'conditions = { rpki = "%s" }' % s,
                  'actions = { result = "accept", large-communities = { add = ["%d:%d:%d"] } }'
                  % (DUT_AS, TAG, TAG_OF[s])]
    lines += ["[[neighbors]]", 'address = "192.0.2.9"', "peer-as = 65001", 'import-policy = ["rov"]',
              'default-import = "accept"']
    return load_config("\n".join(lines) + "\n")


def blocks(n):
    from fastbgp.wire.as4 import encode_attr, encode_segments

    return [encode_attr(0x40, 1, b"\x00") + encode_attr(0x40, 2, encode_segments([(2, [65001, 1000 + i])], 4))
            + encode_attr(0x40, 3, bytes([192, 0, 2, 1])) for i in range(n)]


def one_round(mod, cfg, bs):
    eng = mod.compile_policies(cfg)
    nbr = cfg.neighbors[0]
    chain = eng.chain(nbr, "import")
    base = mod.PolicyContext.for_neighbor(nbr)
    ctxs = [base.with_validation(s) for s in ("valid", "invalid", "not-found")]
    ev = eng.evaluate_group
    t0 = time.process_time()
    got = [ev(chain, b, ctxs[i % 3], 1, "import") for i, b in enumerate(bs)]
    dt = time.process_time() - t0
    return dt / len(bs) * 1e6, [None if v is None else tuple(v) for v in got]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--blocks", type=int, default=60000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--against", help="another policy.py to compare with (alternated per round)")
    args = ap.parse_args()
    import fastbgp.rib.policy as current

    mods = {"current": current}
    if args.against:
        spec = importlib.util.spec_from_file_location("policy_against", args.against)
        other = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(other)
        mods = {"against": other, "current": current}
    with tempfile.TemporaryDirectory(prefix="fastbgp-bench-") as tmp:
        vrp_file = os.path.join(tmp, "vrps.json")
        with open(vrp_file, "w") as f:
            f.write('{"roas": []}')
        cfg = config(vrp_file)
    bs = blocks(args.blocks)
    times = {k: [] for k in mods}
    for _ in range(args.rounds):
        seen = {}
        for name, mod in mods.items():
            dt, seen[name] = one_round(mod, cfg, bs)
            times[name].append(dt)
        if len(seen) == 2 and seen["against"] != seen["current"]:
            raise SystemExit("the two policy engines disagree")
    for name, ts in times.items():
        print("%-8s %d evaluations: median %.2f µs each %s" % (name, len(bs), statistics.median(ts),
                                                             [round(t, 2) for t in ts]))
    if args.against:
        print("ratio against/current: %.2fx" % (statistics.median(times["against"]) / statistics.median(times["current"])))


if __name__ == "__main__":
    main()
