"""The reproducible image build (build/): the contract of a built image.

The pure parts (normalisation rules, the package lock) are in
tests/unit/test_build_pure.py; the full check, two clean builds with the same
image ID, is `make verify-repro` (minutes).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BUILD = Path(__file__).resolve().parents[2] / "build"
sys.path.insert(0, str(BUILD))

import reprotar  # noqa: E402
import rootfs  # noqa: E402


@pytest.mark.docker
def test_image_honours_the_contract_and_holds_no_private_key(image):
    cfg = json.loads(subprocess.run(["docker", "image", "inspect", image], capture_output=True, text=True,
                                    check=True).stdout)[0]
    c = cfg["Config"]
    assert c["Entrypoint"] == ["python3", "-m", "mailwright.init"]
    assert c["Healthcheck"]["Test"] == ["CMD", "/bin/sh", "/opt/mailwright/mailwright/health.sh"]
    assert set(c["ExposedPorts"]) == {f"{p}/tcp" for p in (25, 143, 465, 587, 993, 110, 995, 4190)}
    assert c["WorkingDir"] == "/opt/mailwright" and c["StopSignal"] == "SIGTERM"
    assert c["Labels"]["org.opencontainers.image.title"] == "mailwright"
    assert {"PYTHONPATH=/opt/mailwright", "MAILWRIGHT_INIT=container"} <= set(c["Env"])
    assert len(cfg["RootFS"]["Layers"]) == 1
    epoch = rootfs.source_date_epoch()
    assert cfg["Created"].startswith(reprotar.iso(epoch)[:19])
    scan = ("import os\n"
            "for top in ('/etc', '/var', '/root', '/opt'):\n"
            "  for d, _, fs in os.walk(top):\n"
            "    for f in fs:\n"
            "      p = os.path.join(d, f)\n"
            "      try:\n"
            "        if os.path.isfile(p) and b'PRIVATE KEY-----' in open(p, 'rb').read(1 << 20): print(p)\n"
            "      except OSError: pass\n"
            "for p in ('/opt/mailwright/.git', '/opt/mailwright/tests', '/opt/mailwright/.venv'):\n"
            "  if os.path.exists(p): print(p)\n")
    r = subprocess.run(["docker", "run", "--rm", "--network", "none", "--entrypoint", "python3", image, "-c", scan],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout == ""
