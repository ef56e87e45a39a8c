"""`./setup.sh check` against the image (issue 12): a healthy server passes, and a server broken
on purpose fails the check that covers the breakage (relay opened through postfix-main.cf,
an expired certificate), with exit status 2.

The check runs here, as an operator would run it: through the host-side `setup.sh` front door
(`-c CONTAINER`), connecting to the server's ports, creating and removing its own test account.
"""

from __future__ import annotations

import datetime
import json
import os
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

from harness import clients as c
from harness.configdir import MailConfig
from harness.mailserver import MailContainer, Volumes
from harness.tlsutil import wait_for_serial

pytestmark = pytest.mark.docker

REPO = Path(__file__).resolve().parents[2]
USER, PASSWORD = "user1@example.test", "user1-Secret!"


@pytest.fixture(scope="module")
def server(image, tls, tmp_path_factory):
    root = tmp_path_factory.mktemp("check")
    cfg = MailConfig(root / "config")
    cfg.account(USER, PASSWORD)
    cfg.write()
    tls.write(cfg.path / "ssl")
    ca = root / "ca.pem"
    ca.write_bytes(tls.ca_pem())
    box = MailContainer(image, Volumes.under(root, cfg.path), env={"ENABLE_POP3": "1"})
    box.ca = ca
    try:
        box.start()
        c.wait_for_ports([25, 465, 587, 993, 995])
        yield box
    finally:
        box.remove()


def run_check(box, *extra: str) -> tuple[int, dict]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "MAILWRIGHT_SETUP_DIR": str(REPO)}
    p = subprocess.run([sys.executable, "-m", "mailwright.hostsetup", "-c", box.name, "check", "--cafile",
                        str(box.ca), "--no-dns", "--wait", "60", "--json", *extra],
                       capture_output=True, text=True, env=env, timeout=600)
    try:
        out = json.loads(p.stdout)
    except ValueError:
        raise AssertionError(f"check gave no JSON ({p.returncode}):\n{p.stdout}\n{p.stderr}\n{box.diagnostics()}")
    return p.returncode, out


def statuses(out: dict) -> dict[str, str]:
    return {r["check"]: r["status"] for r in out["results"]}


def test_a_healthy_server_passes_every_check(server):
    code, out = run_check(server)
    got = statuses(out)
    assert code == 0, json.dumps([r for r in out["results"] if r["status"] != "pass"], indent=1) \
        + server.diagnostics()
    for check in ("port 25", "port 465", "port 587", "port 993", "port 995", "port 4190", "banner 25",
                  "tls 993", "tls 25", "tls 587", "no auth on 25", "no open relay", "unknown recipient",
                  "587 auth before tls", "submit 587", "read back 587", "submit 465",
                  "read back 465"):
        assert got.get(check) == "pass", (check, out)
    assert "closed" in next(r["detail"] for r in out["results"] if r["check"] == "port 4190")
    assert "550" in next(r["detail"] for r in out["results"] if r["check"] == "unknown recipient")
    # The test account was removed again.
    assert "mailwright-check-" not in (server.volumes.config / "postfix-accounts.cf").read_text()


def test_an_open_relay_fails_the_check(server):
    main_cf = server.volumes.config / "postfix-main.cf"
    main_cf.write_text("mynetworks = 0.0.0.0/0 [::]/0\n")
    try:
        server.restart()
        c.wait_for_ports([25, 587, 993])
        code, out = run_check(server)
        assert code == 2
        assert statuses(out)["no open relay"] == "fail", out
        [relay] = [r for r in out["results"] if r["check"] == "no open relay"]
        assert "mynetworks" in relay["advice"]
    finally:
        main_cf.unlink()
        server.restart()
        c.wait_for_ports([25, 587, 993])


def test_an_expired_certificate_fails_the_check(server, tls):
    now = datetime.datetime.now(datetime.timezone.utc)
    expired = tls.ca.issue_cert("mail.example.test", not_before=now - datetime.timedelta(days=30),
                                not_after=now - datetime.timedelta(days=1))
    tls.write(server.volumes.config / "ssl", expired)
    try:
        # A certificate change is picked up without a restart: wait until 993 and 465 serve it.
        unverified = ssl._create_unverified_context()
        for port in (993, 465):
            wait_for_serial(port, unverified, tls.serial(expired), timeout=60)
        code, out = run_check(server, "--wait", "20")
        assert code == 2
        got = statuses(out)
        assert got["tls 993"] == "fail" and got["tls 465"] == "fail", out
        assert "expired" in next(r["detail"] for r in out["results"] if r["check"] == "tls 993")
    finally:
        tls.write(server.volumes.config / "ssl", tls.issue())


def test_check_of_an_unreachable_server_exits_2(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "MAILWRIGHT_SETUP_DIR": str(tmp_path)}
    p = subprocess.run([sys.executable, "-m", "mailwright.hostsetup", "-c", "mwtest-no-such-container", "check"],
                       capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 2
    assert "check facts" in p.stderr or "No such" in p.stderr
