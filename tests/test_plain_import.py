"""The plain import (fastbgp.daemon.plain_import) gives every attribute set
the verdict the general path of ``Importer.import_eval`` gives it.

One daemon, one session per kind of neighbour: accept-all, a planned chain
(family, neighbour and RFC 6811 state conditions, data actions), a chain
whose conditions read the block, one whose action is not data, a
reject-all, an iBGP neighbour.  Each set below -- loops through our AS and
the session's local AS, confederation segments, no AS_PATH, cut-short and
unframed blocks -- is evaluated twice per neighbour, family and state:
with the neighbour's PlainImport and with the general path forced (the
import cache's entry for it set to None).  The outcomes must be equal."""

from fastbgp.daemon.fastlane import MISS
from fastbgp.daemon.plain_import import SHAPE, PlainImport
from fastbgp.wire.as4 import encode_attr, encode_segments
from fastbgp.wire.constants import IPV4_UNICAST, IPV6_UNICAST

from test_daemon import DUT, addr, neighbor_toml, peer, until
from test_rpki_daemon import write_roas

ME = 65000
LOCAL = 64999  # a neighbour's local-as: a loop too (RFC 4271 §9.1.2 as import_eval reads it)

POLICIES = """
[[policies]]
name = "planned"
[[policies.statements]]
conditions = { family = ["ipv6-unicast"], rpki = "invalid" }
actions = { result = "reject" }
[[policies.statements]]
conditions = { rpki = "not-found" }
actions = { set-med = 7, communities = { add = ["65000:7"] } }
[[policies.statements]]
actions = { result = "accept", large-communities = { add = ["65000:1:2"] }, set-local-pref = 50 }

[[policies]]
name = "reads-block"
[[policies.statements]]
conditions = { community-set = "c" }
actions = { result = "reject" }

[[policies]]
name = "prepends"
[[policies.statements]]
actions = { result = "accept", as-path-prepend = { count = 2 } }

[[defined-sets.community-sets]]
name = "c"
communities = ["65000:666"]
"""


def _block(segs=None, communities=b"", path=True):
    out = encode_attr(0x40, 1, b"\x00")
    if path:
        out += encode_attr(0x40, 2, encode_segments(segs or [], 4))
    out += encode_attr(0x40, 3, bytes((192, 0, 2, 9)))
    if communities:
        out += encode_attr(0xC0, 8, communities)
    return out


BLOCKS = [
    _block([(2, [65001, 65100])]),
    _block([(2, [65001, ME, 65100])]),  # our AS: a loop
    _block([(1, [65100, ME])]),  # ... in an AS_SET too
    _block([(2, [65001, LOCAL])]),  # the session's local AS
    _block([(3, [65010]), (2, [65001])]),  # a confederation segment from outside (RFC 5065 §5)
    _block([(4, [ME]), (2, [65001])]),  # a loop inside one
    _block([(2, [])]),
    _block(path=False),
    _block([(2, [65001])], communities=bytes.fromhex("fde8029a")),  # 65000:666
    _block([(2, [65001])], communities=bytes.fromhex("fde80007")),  # already 65000:7
    _block([(2, [65001, 65100])])[:-2],  # cut short
    _block([(2, [65001])]) + b"\x40\x02\x06\x02",  # a second AS_PATH, unframed
    bytes.fromhex("400204" "0201fde8"),  # a segment cut short
    b"",
]


def _outcome(importer, nb, fam, attrs, nh, state, plain):
    nb.import_cache = {} if plain else {SHAPE: None}
    try:
        return ("ok", importer.import_eval(nb, fam, attrs, nh, state))
    except Exception as e:  # import_ treats any as a withdrawal: both must raise alike
        return ("raised", type(e).__name__)


def test_plain_import_gives_the_general_verdict(run, tmp_path):
    vrps = tmp_path / "vrps.json"
    write_roas(vrps, [("10.90.0.0/24", 24, 65001)])
    kinds = {"accept-all": {}, "planned": {"import-policy": ["planned"]},
             "reads-block": {"import-policy": ["reads-block"]}, "prepends": {"import-policy": ["prepends"]},
             "reject-all": {"default-import": "reject"}, "local-as": {"local-as": LOCAL}}
    addrs = {k: addr() for k in list(kinds) + ["ibgp"]}
    expect_plain = {"accept-all", "planned", "prepends", "reject-all", "local-as"}

    async def main():
        nbs = [neighbor_toml(addrs[k], 65001, families=["ipv4-unicast", "ipv6-unicast"], **kw)
               for k, kw in kinds.items()]
        nbs.append(neighbor_toml(addrs["ibgp"], ME, families=["ipv4-unicast", "ipv6-unicast"]))
        dut = DUT(asn=ME, path=tmp_path / "fastbgp.toml", extra='[rpki]\nfile = "%s"\n%s' % (vrps, POLICIES),
                  neighbors=nbs)
        d = await dut.start()
        speakers = []
        for k, a in addrs.items():
            asn = ME if k == "ibgp" else 65001
            kw = {"peer_as": LOCAL} if k == "local-as" else {}
            sp, nb = await peer(dut, asn, a, families=["ipv4-unicast", "ipv6-unicast"], **kw)
            speakers.append((sp, nb))
        for _sp, nb in speakers:
            await nb.wait_established(5)
        await until(lambda: all(d.speaker.neighbors[a].established for a in addrs.values()), what="sessions up")
        imp = d.importer
        compared = plain_hits = 0
        try:
            for k, a in addrs.items():
                nb = d.speaker.neighbors[a]
                nb.import_cache = {}
                shape = PlainImport.of(imp, nb)
                assert (shape is not None) == (k in expect_plain), k
                for fam, nh in ((IPV4_UNICAST, b""), (IPV6_UNICAST, bytes.fromhex("20010db8" + "00" * 11 + "09"))):
                    for attrs in BLOCKS:
                        for state in (None, 0, 1, 2):
                            plain = _outcome(imp, nb, fam, attrs, nh, state, True)
                            general = _outcome(imp, nb, fam, attrs, nh, state, False)
                            assert plain == general, (k, fam, attrs.hex(), state)
                            compared += 1
                            if shape is not None and plain[0] == "ok":
                                nb.import_cache = {}
                                plain_hits += shape.verdict(fam, attrs, nh, state) is not MISS
        finally:
            for sp, _nb in speakers:
                await sp.stop()
            await dut.stop()
        # Most of the plain neighbours' sets are the plain import's own.
        assert compared == len(addrs) * 2 * len(BLOCKS) * 4 and plain_hits > len(expect_plain) * 2 * 4 * 5

    run(main())
