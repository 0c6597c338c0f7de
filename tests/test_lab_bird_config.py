"""The namespace lab's BIRD configuration (fastbgp.testing.lab.Bird),
parsed by BIRD itself (``bird -p``: parse and exit; no namespace, no
socket): a knob the benchmarks rely on must give a configuration BIRD
accepts."""

from __future__ import annotations

import subprocess
import types

import pytest

from fastbgp.testing import lab as L


def bird_for(tmp_path, options):
    host = types.SimpleNamespace(lab=types.SimpleNamespace(daemons=[]), name="b", ipv4="192.0.2.2",
                                 ipv6="2001:db8::2", workdir=str(tmp_path),
                                 addr=lambda fam: "192.0.2.2" if fam == "ipv4" else "2001:db8::2")
    nb = L.Neighbor("192.0.2.1", 65001, passive=True, families=("ipv4", "ipv6"), options=options)
    return L.Bird(host, 64500, neighbors=[nb])


def test_channel_extra_goes_into_each_channel_and_bird_accepts_it(tmp_path):
    bird = bird_for(tmp_path, {"import": "all", "export": "none", "channel_extra": "import table on;"})
    text = bird.config_text()
    channels = [line.strip() for line in text.splitlines() if line.strip().startswith(("ipv4 {", "ipv6 {"))]
    assert channels == ["ipv4 { import all; export none; import table on; };",
                        "ipv6 { import all; export none; import table on; };"], channels
    if L.missing_binaries("bird"):
        pytest.skip("bird (Debian bird2) not installed: the text is checked, BIRD's parse is not")
    conf = tmp_path / "bird.conf"
    conf.write_text(text)
    res = subprocess.run(["bird", "-p", "-c", str(conf)], capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr + res.stdout
    # And BIRD does refuse a bad one: the check can fail.
    conf.write_text(text.replace("import table on;", "import table sideways;"))
    res = subprocess.run(["bird", "-p", "-c", str(conf)], capture_output=True, text=True, timeout=30)
    assert res.returncode != 0
