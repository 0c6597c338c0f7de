"""A reload is all or nothing: a new API (unix socket, TCP) or BGP listener
that cannot be bound refuses the whole reload with the setting's name, and
the old listeners and configuration stay.  Also: API error replies echo a
huge bad value only in part, and the RFC 4271 §8.1.1 idle-hold damping keys
reach the session settings.

The daemon is the real ``run_daemon`` (tests/daemon_harness.py), driven
over its API as clients do."""

import logging
import pathlib
import tempfile
import textwrap

import pytest

pytest.importorskip("aiohttp")

from daemon_harness import DaemonHarness  # noqa: E402
from fastbgp.config.checks import load_config  # noqa: E402
from fastbgp.config.diff import diff  # noqa: E402
from fastbgp.daemon.peers import neighbor_config  # noqa: E402
from fastbgp.testing.net import free_port  # noqa: E402
from test_api import TOKEN, _request, http  # noqa: E402

CONFIG = """\
[global]
asn = 65001
router-id = "10.0.0.1"
listen = ["{listen}"]

[global.api]
socket = "{socket}"
tcp = "{tcp}"
token = "{token}"

[global.log]
level = "info"

[[neighbors]]
address = "127.0.0.2"
peer-as = 65002
port = {peer_port}
local-address = "127.0.0.1"
description = "{description}"
default-import = "accept"
default-export = "accept"
timers = {{ connect-retry = 1, idle-hold = 1 }}
"""


class Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records = []

    def emit(self, record):
        self.records.append(record)


class Harness(DaemonHarness):
    def __init__(self, tmp, loop_factory=None):
        super().__init__(tmp, loop_factory)
        self.api_port = free_port()
        self.bgp_port = free_port()

    def write_config(self, **kw):
        args = dict(listen="127.0.0.1:%d" % self.bgp_port, socket=self.socket,
                    tcp="127.0.0.1:%d" % self.api_port, token=TOKEN, peer_port=self.peer_port,
                    description="the peer")
        args.update(kw)
        self.config_path.write_text(CONFIG.format(**args))


@pytest.fixture(scope="module")
def harness(loop_factory):
    with tempfile.TemporaryDirectory(prefix="fastbgp-reload-") as tmp:
        h = Harness(pathlib.Path(tmp), loop_factory)
        try:
            yield h.start()
        finally:
            h.stop()


@pytest.fixture
def records():
    handler = Records()
    logger = logging.getLogger("fastbgp")
    logger.addHandler(handler)
    try:
        yield handler.records
    finally:
        logger.removeHandler(handler)


def _tcp_ok(h, port):
    status, _, _ = http(h, "GET", "/v1/neighbors", url="http://127.0.0.1:%d" % port, token=TOKEN)
    return status == 200


def _refused(h, records, setting, **kw):
    """Reload with ``kw`` in the file: refused naming ``setting``; nothing
    changed (config, API on both listeners, the session)."""
    before = h.call(lambda: h.daemon.config)
    bgp = h.call(lambda: h.daemon.speaker.listeners.addresses)
    try:
        h.write_config(description="renamed", **kw)
        status, _, body = http(h, "POST", "/v1/reload")
        assert status == 400, body
        assert setting in body["error"] and body["errors"][0]["path"] == setting
        assert h.call(lambda: h.daemon.config) is before
        assert http(h, "GET", "/v1/neighbors/127.0.0.2")[2]["description"] == "the peer"
        assert _tcp_ok(h, h.api_port)
        assert h.call(lambda: h.daemon.speaker.listeners.addresses) == bgp == [("127.0.0.1", h.bgp_port)]
        warnings = [r for r in records if r.levelno == logging.WARNING and "reload refused" in r.getMessage()]
        assert warnings and setting in warnings[0].getMessage()
        assert not [r for r in records if r.exc_info], "a traceback was logged"
    finally:
        h.write_config()
    assert h.state("127.0.0.2") == "established"


def test_reload_with_unbindable_api_tcp_is_refused(harness, records):
    _refused(harness, records, "global.api.tcp", tcp="192.0.2.77:8179")


def test_reload_with_unwritable_api_socket_dir_is_refused(harness, records):
    _refused(harness, records, "global.api.socket", socket="/etc/passwd/x.sock")


def test_reload_with_unbindable_bgp_listen_is_refused(harness, records):
    _refused(harness, records, "global.listen", listen="192.0.2.77:%d" % free_port())


def test_reload_moving_the_api_tcp_listener(harness):
    old, new = harness.api_port, free_port()
    try:
        harness.api_port = new
        harness.write_config()
        status, _, body = http(harness, "POST", "/v1/reload")
        assert status == 200, body
        assert _tcp_ok(harness, new)
        with pytest.raises(Exception):
            _tcp_ok(harness, old)
        # The unix socket (same path) was handed over, not lost.
        assert http(harness, "GET", "/v1/neighbors")[0] == 200
    finally:
        harness.api_port = old
        harness.write_config()
        assert http(harness, "POST", "/v1/reload")[0] == 200
    assert _tcp_ok(harness, old)
    assert http(harness, "GET", "/v1/neighbors")[0] == 200


def test_error_reply_to_a_huge_value_is_small(harness):
    big = "x" * (1024 * 1024)
    for path, body in [("/v1/rib/announce", {"prefixes": [big]}), ("/v1/log-level", {"level": big}),
                       ("/v1/rib/announce", {"prefixes": ["10.0.0.0/8"], "next_hop": big}),
                       ("/v1/rib/announce", {big: 1}), ("/v1/rib/announce", {"prefixes": [" ".join(big[:500_000])]})]:
        status, headers, data = harness.run_client(_request("POST", path, body, unix=harness.socket))
        assert status == 400, data[:300]
        assert len(data) < 2048, (path, len(data), data[:300])
        assert b"chars)" in data


IDLE = """\
[global]
asn = 65001
router-id = "10.0.0.1"

[[peer-groups]]
name = "g"
peer-as = 65002
damp-peer-oscillations = false
timers = {{ idle-hold = 3, max-idle-hold = {max} }}

[[neighbors]]
address = "192.0.2.1"
peer-group = "g"

[[neighbors]]
address = "192.0.2.2"
peer-as = 65002
"""


def test_idle_hold_damping_keys_reach_the_session():
    cfg = load_config(textwrap.dedent(IDLE.format(max=600)))
    a, b = (neighbor_config(cfg.neighbor(x)) for x in ("192.0.2.1", "192.0.2.2"))
    assert (a.damp_peer_oscillations, a.idle_hold_time, a.max_idle_hold_time) == (False, 3.0, 600.0)
    assert (b.damp_peer_oscillations, b.idle_hold_time, b.max_idle_hold_time) == (True, 5.0, 120.0)
    # A change is a session reset, like every other session setting.
    d = diff(cfg, load_config(IDLE.format(max=60)))
    assert [(c.address, c.action) for c in d.changed] == [("192.0.2.1", "reset")]
    with pytest.raises(Exception, match="max-idle-hold"):
        load_config(IDLE.format(max=0))
