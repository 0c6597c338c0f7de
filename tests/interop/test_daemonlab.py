"""fastbgp.testing.daemonlab against the real daemon in a lab host: the
operator's command line with the API on a unix socket (wait_api, api,
wait_log, stop), the run_daemon runner on asyncio, and a daemon that exits
at once (a refused configuration) reported as DaemonExited with its log.
The command-line daemon runs over IPv4 and over IPv6 transport (listening
on, and configured with a neighbour at, the hosts' addresses of that family).

Needs root (fastbgp/testing/lab.py); marked ``interop``.
"""

import pytest

from fastbgp.testing import lab as L
from fastbgp.testing.daemonlab import ApiError, LabDaemon, global_toml, neighbor_toml, require

pytestmark = [pytest.mark.interop, pytest.mark.timeout(60)]


@pytest.mark.parametrize("transport", L.TRANSPORTS)
def test_cli_daemon_api_log_and_stop(transport):
    require()
    with L.Lab() as lab:
        f = lab.add_host("fb")
        peer = lab.add_host("peer")
        me, other = f.addr(transport), peer.addr(transport)
        fb = LabDaemon(f, "", cli=True)
        with fb.start(global_toml(65000, f, fb.api_toml().rstrip("\n"), listen=[me]) + neighbor_toml(other, 65001)):
            fb.wait_api(30)
            [n] = fb.api("GET", "/v1/neighbors")
            assert n["address"] == other and n["peer_as"] == 65001, n
            with pytest.raises(ApiError) as info:
                fb.api("GET", "/v1/neighbors/%s" % ("192.0.2.250" if transport == "ipv4" else "2001:db8::fa"))
            assert info.value.status == 404
            fb.wait_log("daemon started", 10)
            # Listening where the configuration says, on port 179.
            listening = f.run(["ss", "-Hltn", "sport = :179"]).stdout
            assert ("[%s]:179" % me if transport == "ipv6" else "%s:179" % me) in listening, listening
            fb.assert_clean()
        # One daemon: entering the block after start() starts no second one
        # (it would fail to bind the same address, into the same log).
        text = fb.log_text()
        assert text.count("daemon started") == 1 and "already in use" not in text, text
        assert not fb.alive()
        assert fb.proc.returncode is not None


def test_runner_on_asyncio_and_an_exiting_daemon():
    require()
    with L.Lab() as lab:
        f = lab.add_host("fb")
        with LabDaemon(f, global_toml(65000, f) + neighbor_toml("192.0.2.251", 65001), loop="asyncio") as fb:
            fb.wait_log("daemon started", 20)
            fb.assert_alive()
        bad = lab.add_host("bad")
        with LabDaemon(bad, "[global]\nasn = 0\n") as fb:
            with pytest.raises(L.DaemonExited) as info:
                fb.wait_log("daemon started", 20)
            assert "asn" in str(info.value), info.value
        with pytest.raises(ValueError):
            LabDaemon(f, "", loop="trio")
