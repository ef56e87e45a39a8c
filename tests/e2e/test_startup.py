"""Start-up contract: bad settings stop the server with a message naming the variable;
the image shuts down cleanly on `docker stop`."""

from __future__ import annotations

import re
import time

import pytest

from harness import clients
from harness import dockercli as d
from harness.configdir import MailConfig
from harness.mailserver import READY_LINE, MailContainer, Volumes
from harness.targets import DockerConnectorTarget

pytestmark = pytest.mark.docker

BAD_SETTINGS = [
    # variable, bad value, a pattern for "what is accepted" on a line naming the variable
    ("SSL_TYPE", "bogus", r"manual|letsencrypt|self-signed"),
    ("ENABLE_POP3", "maybe", r"\b0\b.*\b1\b|\b1\b.*\b0\b|true|false|boolean"),
    ("OVERRIDE_HOSTNAME", "nodot", r"dot|FQDN|fully|qualified|domain"),
]


def minimal_config(root, tls):
    cfg = MailConfig(root / "config")
    cfg.account("user1@example.test", "pw-user1")
    cfg.write()
    tls.write(cfg.path / "ssl")
    return cfg


def lines_naming(text: str, var: str) -> list[str]:
    return [ln for ln in text.splitlines() if re.search(rf"\b{re.escape(var)}\b", ln)]


@pytest.mark.parametrize("var,value,accepted", BAD_SETTINGS, ids=[f"{v}={x}" for v, x, _ in BAD_SETTINGS])
def test_image_bad_setting_stops_container(image, tls, tmp_path, var, value, accepted):
    cfg = minimal_config(tmp_path, tls)
    c = MailContainer(image, Volumes.under(tmp_path, cfg.path), env={var: value})
    try:
        c.start(wait=False)
        c.wait_exit(timeout=60)
        out = c.logs() + "\n" + c.mail_log()
        assert READY_LINE not in out, f"{var}={value}: the server came up\n{c.diagnostics()}"
        named = lines_naming(out, var)
        assert named, f"{var}={value}: no log line names {var}\n{c.diagnostics()}"
        assert any(re.search(accepted, ln, re.I) for ln in named), \
            f"{var}={value}: the lines naming {var} do not say what is accepted:\n" + "\n".join(named)
    finally:
        c.remove()


def test_image_clean_shutdown_on_docker_stop(image, tls, tmp_path):
    cfg = minimal_config(tmp_path, tls)
    c = MailContainer(image, Volumes.under(tmp_path, cfg.path))
    try:
        c.start()
        t0 = time.monotonic()
        d.docker("stop", "-t", "30", c.name, timeout=60)
        took = time.monotonic() - t0
        code = d.exit_code(c.name)
        assert took < 15, f"docker stop took {took:.1f}s (killed at the timeout?)\n{c.diagnostics()}"
        assert code == 0, f"exit code {code} after docker stop\n{c.diagnostics()}"
    finally:
        c.remove()


def test_image_restarts_a_daemon_that_dies(image, tls, tmp_path):
    """The supervisor notices a dead Postfix within a poll and starts it again; the container lives on."""
    cfg = minimal_config(tmp_path, tls)
    c = MailContainer(image, Volumes.under(tmp_path, cfg.path))
    try:
        c.start()
        c.exec("sh", "-c", "kill -KILL $(cat /var/spool/postfix/pid/master.pid)")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and "postfix exited; restarting it" not in c.logs():
            time.sleep(0.5)
        assert "postfix exited; restarting it" in c.logs(), c.diagnostics()
        clients.wait_for_ports([25], timeout=20)
        assert clients.banner(25).startswith(b"220"), c.diagnostics()
        assert d.docker("inspect", "-f", "{{.State.Running}}", c.name).stdout.strip() == "true"
    finally:
        c.remove()


def test_image_healthcheck_reports_healthy(image, tls, tmp_path):
    health = d.docker("image", "inspect", "-f", "{{json .Config.Healthcheck}}", image).stdout.strip()
    assert health not in ("", "null"), f"{image} has no HEALTHCHECK"
    cfg = minimal_config(tmp_path, tls)
    c = MailContainer(image, Volumes.under(tmp_path, cfg.path))
    try:
        c.start()
        deadline = time.monotonic() + 90
        status = ""
        while time.monotonic() < deadline:
            status = d.docker("inspect", "-f", "{{.State.Health.Status}}", c.name).stdout.strip()
            if status in ("healthy", "unhealthy"):
                break
            time.sleep(1)
        assert status == "healthy", f"health status {status!r}\n{c.diagnostics()}"
    finally:
        c.remove()


@pytest.mark.parametrize("var,value,accepted", BAD_SETTINGS, ids=[f"{v}={x}" for v, x, _ in BAD_SETTINGS])
def test_docker_connector_bad_setting_stops_deploy(deploy_py, base_image, tls, tmp_path, var, value, accepted):
    cfg = minimal_config(tmp_path, tls)
    from harness import scenario as sc
    scen = sc.Scenario(config=cfg, malformed_line=0, cert_serial=0)
    t = DockerConnectorTarget(scenario=scen, tls=tls, workdir=tmp_path, base_image=base_image,
                              volumes=Volumes.under(tmp_path, cfg.path), settings={var: value})
    try:
        t._run_container()
        run = t.deploy(check=False)
        assert not run.ok, f"{var}={value}: the deploy succeeded\n{run}"
        named = lines_naming(run.output, var)
        assert named, f"{var}={value}: pyinfra's output does not name {var}\n{run}"
        assert any(re.search(accepted, ln, re.I) for ln in named), \
            f"{var}={value}: the lines naming {var} do not say what is accepted:\n" + "\n".join(named)
        # refused before anything was installed or started
        assert t.exec("sh", "-c", "command -v postfix || true").stdout.strip() == "", \
            f"{var}={value}: postfix was installed before the settings were validated\n{run}"
    finally:
        t.teardown()



def test_image_rotates_the_mail_log_and_daemons_keep_writing(image, tls, tmp_path):
    """The rotation job, run as the supervisor runs it, in a running container: copy to mail.log.1,
    truncate in place; Postfix (postlogd, O_APPEND) goes on writing at the start of the emptied log."""
    cfg = minimal_config(tmp_path, tls)
    c = MailContainer(image, Volumes.under(tmp_path, cfg.path), env={"LOGROTATE_INTERVAL": "daily",
                                                                     "LOGROTATE_COUNT": "2"})
    try:
        c.start()
        job = c.exec("cat", "/etc/mailwright/jobs").stdout
        argv = next(line.split("\t")[2] for line in job.splitlines() if line.startswith("maillog-rotate\t"))
        before = c.exec("wc", "-c", "/var/log/mail/mail.log").stdout.split()[0]
        assert int(before) > 0, c.diagnostics()
        c.exec("sh", "-c", "mkdir -p /var/lib/logrotate && echo 2000-01-01 > /var/lib/logrotate/mailwright.status")
        out = c.exec("sh", "-c", f"cd /opt/mailwright && {argv}").stdout
        assert "rotated /var/log/mail/mail.log (daily, 2 kept)" in out, out
        rotated = c.exec("cat", "/var/log/mail/mail.log.1").stdout
        assert rotated.strip(), "mail.log.1 is empty"
        c.exec("postfix", "reload")                    # postlogd writes a line
        deadline = time.monotonic() + 20
        text = ""
        while time.monotonic() < deadline:
            text = c.exec("cat", "/var/log/mail/mail.log").stdout
            if "reload" in text:
                break
            time.sleep(0.5)
        assert "reload" in text and not text.startswith("\0"), (text[:300], c.diagnostics())
        assert rotated.splitlines()[0] not in text, "the log was copied but not truncated"
    finally:
        c.remove()
