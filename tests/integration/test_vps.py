"""The VPS stand-in itself: systemd boots, sshd answers with the session key, pyinfra gets in."""

from __future__ import annotations

import subprocess

import pytest

from harness import FORBIDDEN_PORT
from harness.vps import PYINFRA, REPO

pytestmark = pytest.mark.docker


def test_vps_boots_systemd_and_accepts_the_session_key(vps):
    assert vps.ssh_port != FORBIDDEN_PORT
    r = vps.ssh("systemctl is-system-running --wait; hostname -f; id -u")
    lines = r.stdout.split()
    assert r.returncode == 0 or lines[0] == "degraded", r.stdout + r.stderr
    assert lines[-2:] == ["mail.example.test", "0"], r.stdout
    assert vps.ssh("systemctl is-active ssh").stdout.strip() == "active"


def test_vps_refuses_other_keys(vps, tmp_path):
    other = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    argv = vps.ssh_argv("true")
    argv[argv.index(str(vps.key))] = str(other)
    assert subprocess.run(argv, capture_output=True, timeout=30).returncode != 0


def test_pyinfra_reaches_the_vps(vps, vps_inventory):
    r = subprocess.run([PYINFRA, "-y", str(vps_inventory), "exec", "--", "cat", "/etc/debian_version"],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "12." in r.stdout + r.stderr, r.stdout + r.stderr


def test_vps_reboot_keeps_ssh(vps):
    vps.reboot()
    assert vps.ssh("true").returncode == 0
