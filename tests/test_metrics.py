# ruff: noqa: F811 - the harness fixture is imported, then named as a parameter
"""Prometheus metrics scraped from a real Daemon (the harness of
test_api.py, metrics listener from its config), and the structured logging
of fastbgp.control.logs."""

import io
import json
import logging

import pytest

aiohttp = pytest.importorskip("aiohttp")
pytest.importorskip("prometheus_client")

from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from fastbgp.control import logs, metrics  # noqa: E402
from test_api import PEER_PREFIXES, PEER_V6, harness, http  # noqa: E402,F401 - harness is a fixture


async def _get(url):
    async with aiohttp.ClientSession() as s:
        async with s.get(url, timeout=aiohttp.ClientTimeout(total=10)) as r:
            return r.status, r.headers, await r.text()


def scrape(h):
    status, headers, text = h.run_client(_get(h.metrics_url))
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples, text


def value(samples, name, **labels):
    return samples[(name, tuple(sorted(labels.items())))]


def test_scrape_has_the_expected_series(harness):
    metrics.observe_update_latency(0.0003)
    metrics.observe_update_latency(0.02)
    samples, text = scrape(harness)
    assert value(samples, "fastbgp_up") == 1
    assert value(samples, "fastbgp_sessions", state="established") == 1
    assert value(samples, "fastbgp_sessions", state="idle") + value(samples, "fastbgp_sessions", state="active") \
        + value(samples, "fastbgp_sessions", state="connect") == 1  # 127.0.0.3, nobody there
    peer = "127.0.0.2"
    assert value(samples, "fastbgp_neighbor_up", neighbor=peer, peer_as="65002") == 1
    assert value(samples, "fastbgp_neighbor_up", neighbor="127.0.0.3", peer_as="65003") == 0
    assert value(samples, "fastbgp_neighbor_uptime_seconds", neighbor=peer) > 0
    assert value(samples, "fastbgp_neighbor_established_total", neighbor=peer) >= 1
    assert value(samples, "fastbgp_messages_received_total", neighbor=peer, type="open") >= 1
    assert value(samples, "fastbgp_messages_sent_total", neighbor=peer, type="open") >= 1
    assert value(samples, "fastbgp_messages_received_total", neighbor=peer, type="update") >= 2
    for t in ("notification", "keepalive", "refresh"):
        assert ("fastbgp_messages_sent_total", (("neighbor", peer), ("type", t))) in samples
    assert value(samples, "fastbgp_prefixes_received", neighbor=peer) == len(PEER_PREFIXES) + len(PEER_V6)
    # Accepted/advertised come from the daemon's periodic RIB walk (cached
    # a few seconds): present here, their values checked below.
    assert ("fastbgp_prefixes_accepted", (("neighbor", peer),)) in samples
    assert ("fastbgp_prefixes_advertised", (("neighbor", peer),)) in samples
    assert value(samples, "fastbgp_rib_prefixes", family="ipv4-unicast") >= len(PEER_PREFIXES)
    assert value(samples, "fastbgp_rib_paths", family="ipv6-unicast") >= len(PEER_V6)
    assert value(samples, "fastbgp_rib_attribute_sets", family="ipv4-unicast") >= 1
    assert value(samples, "fastbgp_update_processing_seconds_count") >= 2
    assert value(samples, "fastbgp_update_processing_seconds_bucket", le="0.0005") >= 1
    assert "process_cpu_seconds_total" in text or "python_info" in text


def test_scrape_follows_the_daemon(harness):
    http(harness, "POST", "/v1/rib/announce", {"prefixes": ["100.64.0.0/24", "100.64.1.0/24"]})
    try:
        harness.wait_for(lambda: scrape(harness)[0][("fastbgp_prefixes_advertised", (("neighbor", "127.0.0.2"),))]
                         >= 2, "advertised count", timeout=8)
        samples, _ = scrape(harness)
        assert value(samples, "fastbgp_rib_prefixes", family="ipv4-unicast") >= len(PEER_PREFIXES) + 2
        assert value(samples, "fastbgp_prefixes_accepted", neighbor="127.0.0.2") == len(PEER_PREFIXES) + len(PEER_V6)
    finally:
        http(harness, "POST", "/v1/rib/withdraw", {"prefixes": ["100.64.0.0/24", "100.64.1.0/24"]})


def test_collector_survives_a_failing_control():
    class Broken:
        def neighbors(self):
            raise RuntimeError("boom")

        def rib_summary(self):
            raise RuntimeError("boom")

    reg = metrics.make_registry(Broken(), process=False)
    from prometheus_client import generate_latest

    text = generate_latest(reg).decode()
    assert "fastbgp_up 1.0" in text and 'fastbgp_sessions{state="idle"} 0.0' in text


# ------------------------------------------------------------------ logging


@pytest.fixture
def logstream():
    buf = io.StringIO()
    yield buf
    logs.reset()


def test_key_value_lines(logstream):
    logs.setup("info", stream=logstream)
    log = logging.getLogger("fastbgp.test")
    log.info("session up", extra={"neighbor": "192.0.2.2", "peer_as": 65002, "note": 'two words "quoted"'})
    log.debug("not shown")
    try:
        raise ValueError("bad\nthing")
    except ValueError:
        log.exception("multi\nline")
    lines = logstream.getvalue().splitlines()
    assert len(lines) == 2  # one line per event, whatever they contain
    assert lines[0].startswith("ts=20") and lines[0].split(" ", 1)[0].endswith("Z")
    assert ' level=info logger=fastbgp.test msg="session up" neighbor=192.0.2.2 peer_as=65002 ' \
           'note="two words \\"quoted\\""' in lines[0]
    assert 'msg="multi\\nline"' in lines[1] and "exc=\"Traceback" in lines[1] and "ValueError: bad\\nthing" in lines[1]


def test_json_lines_and_run_time_level(logstream):
    logs.setup("warning", json=True, stream=logstream)
    log = logging.getLogger("fastbgp.test")
    log.info("hidden")
    log.warning("visible %d", 1, extra={"neighbor": "2001:db8::1"})
    assert logs.set_level("debug") == "warning"
    assert logs.get_level() == "debug"
    log.debug("now shown\nsecond line")
    lines = logstream.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(x) for x in lines)
    assert first["level"] == "warning" and first["msg"] == "visible 1" and first["neighbor"] == "2001:db8::1"
    assert first["logger"] == "fastbgp.test" and first["ts"].endswith("Z")
    assert second == {**second, "level": "debug", "msg": "now shown\nsecond line"}


def test_setup_twice_does_not_duplicate(logstream):
    logs.setup("info", stream=logstream)
    logs.setup("info", stream=logstream)
    logging.getLogger("fastbgp.test").warning("once")
    assert logstream.getvalue().count("once") == 1


def test_level_names():
    assert logs.parse_level("WARN") == logging.WARNING
    assert logs.parse_level("critical") == logging.CRITICAL
    with pytest.raises(ValueError, match="unknown log level 'loud'"):
        logs.parse_level("loud")


# ------------------------------------------- refused connections (issue 14)


def test_refused_connections_in_api_and_metrics(run):
    """Connections from an unconfigured address and from a disabled
    neighbour's address, made to a real daemon: counted in
    Control.global_info (``fastbgp global``), the neighbour's counters and
    the Prometheus series."""
    import asyncio
    import socket

    from prometheus_client import generate_latest

    from fastbgp.config.checks import load_config
    from fastbgp.daemon.core import Daemon
    from fastbgp.testing.net import free_port

    host, stranger, disabled = "127.0.4.1", "127.0.4.2", "127.0.4.3"
    port = free_port(host)
    cfg = load_config('[global]\nasn = 65001\nrouter-id = "10.0.4.1"\nlisten = ["%s:%d"]\n\n'
                      '[[neighbors]]\naddress = "%s"\npeer-as = 65003\nadmin-down = true\n' % (host, port, disabled))

    def connect(source):
        s = socket.socket()
        s.settimeout(5)
        try:
            s.bind((source, 0))
            s.connect((host, port))
            s.recv(1)  # until the daemon closes it
        except OSError:
            pass
        finally:
            s.close()

    async def main():
        d = Daemon(cfg)
        await d.start()
        try:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, connect, stranger)
            await loop.run_in_executor(None, connect, stranger)
            await loop.run_in_executor(None, connect, disabled)
            for _ in range(100):
                g = d.global_info()
                if g.refused_unknown >= 2 and g.refused_neighbors >= 1:
                    break
                await asyncio.sleep(0.02)
            text = generate_latest(metrics.make_registry(d, process=False)).decode()
            return d.global_info(), d.neighbor(disabled), text
        finally:
            await d.stop()

    g, nb, text = run(main(), timeout=20)
    assert g.refused_unknown == 2 and g.refused_neighbors == 1 and g.listen == ["%s:%d" % (host, port)]
    assert nb.counters.refused == 1 and nb.counters.half_open_closed == 0
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    assert value(samples, "fastbgp_connections_refused_unknown_total") == 2
    assert value(samples, "fastbgp_neighbor_connections_refused_total", neighbor=disabled) == 1
    assert value(samples, "fastbgp_neighbor_half_open_closed_total", neighbor=disabled) == 0
