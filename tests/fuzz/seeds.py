"""Starting inputs for the fuzz targets, taken from small real files of the
shared corpora (read in place, never copied into the repository) plus the
crashers kept under tests/fuzz/crashers/<harness>/."""

import gzip
import pathlib

from fastbgp.mrt.reader import Bgp4mpMessage, MrtReader
from fastbgp.testing import CORPORA
from fastbgp.wire import codec as wire
from fastbgp.wire.constants import MSG_OPEN, MSG_UPDATE

from tests.fuzz import harnesses as h

CRASHERS = pathlib.Path(__file__).parent / "crashers"
# Small real MRT files: every one of mrtparse/, the small bgpdump ones.
_MRT_FILES = ("mrtparse/*", "bgpdump/test_data/*add_path.gz", "bgpdump/test_data/updates.nlri_mask_trailing_bits.gz")
_MAX_SEED = 1 << 14


def crashers(harness):
    folder = CRASHERS / harness
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")) if folder.is_dir() else []


def mrt_files(corpora=CORPORA):
    if not corpora.is_dir():
        return []
    return sorted(p for pattern in _MRT_FILES for p in corpora.glob(pattern))


def _raw(path):
    with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as f:
        return f.read(_MAX_SEED)


def mrt_seeds(corpora=CORPORA):
    return [_raw(p) for p in mrt_files(corpora)]


def codec_seeds(corpora=CORPORA, limit=400):
    """Messages of the MRT files, each under the codec operations that fit it."""
    out = [
        bytes((h.OP_NOTIFICATION, 0)) + wire.build_notification(6, 2, b"bye")[19:],
        bytes((h.OP_ROUTE_REFRESH, 0)) + wire.build_route_refresh(1, 1)[19:],
        bytes((h.OP_PREFIXES, 0)) + bytes((24, 192, 0, 2, 32, 198, 51, 100, 1)),
        bytes((h.OP_PREFIXES, 3)) + bytes((0, 0, 0, 1, 64, 0x20, 1, 0xD, 0xB8, 0, 0, 0, 0)),
        bytes((h.OP_OPEN, 0)) + wire.build_open(65001, 90, 0xC0000201, ((65, b"\x00\x00\xfd\xe9"), (1, b"\x00\x01\x00\x01")))[19:],
    ]
    seen = set()
    for path in mrt_files(corpora):
        for rec in MrtReader(path, parse=False):
            if not isinstance(rec, Bgp4mpMessage) or len(rec.message) < 19 or rec.message in seen:
                continue
            seen.add(rec.message)
            msg, body = rec.message, rec.body
            out.append(bytes((h.OP_FRAMING, 1)) + msg + msg)
            out.append(bytes((h.OP_HEADER, 0)) + msg)
            if msg[18] == MSG_OPEN:
                out.append(bytes((h.OP_OPEN, 0)) + body)
            elif msg[18] == MSG_UPDATE:
                flags = (1 if rec.as4 else 0) | (2 if rec.addpath else 0) | 4
                out.append(bytes((h.OP_UPDATE, flags)) + body)
                out.append(bytes((h.OP_UPDATE, flags | 8 | 16)) + body)
            if len(out) >= limit:
                return out
    return out


def seeds(harness, corpora=CORPORA):
    found = codec_seeds(corpora) if harness == "codec" else mrt_seeds(corpora)
    return found + [p.read_bytes() for p in crashers(harness)]
