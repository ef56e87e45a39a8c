"""Resilience of the running server's change watcher: one bad file must not cost the others their reload."""

from __future__ import annotations

import time

import pytest

from harness import clients
from harness.configdir import MailConfig
from harness.mailserver import MailContainer, Volumes

pytestmark = pytest.mark.docker

BAD_SIEVE = "this is not sieve at all\n"
GOOD_SIEVE = 'require ["fileinto"];\nif header :contains "subject" "mwtest-never" { fileinto "INBOX"; }\n'


def wait_until(what: str, predicate, c: MailContainer, timeout: float = 60):
    """Poll until `predicate()` is true (the watcher polls every few seconds); fail with the logs."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f} s: {what}\n{c.diagnostics()}")
        time.sleep(0.5)


def reloads(c: MailContainer) -> tuple[int, int]:
    """How often Postfix's master and Dovecot's master have said they reloaded (mail.log)."""
    log = c.mail_log()
    return log.count("reload -- version"), log.count("SIGHUP received - reloading configuration")


def submission_banner() -> str:
    try:
        return clients.banner(587).decode(errors="replace")
    except OSError:
        return ""


def test_bad_global_sieve_does_not_stop_the_postfix_reload(image, tls, tmp_path):
    cfg = MailConfig(tmp_path / "config")
    cfg.account("user1@example.test", "pw-user1")
    cfg.write()
    tls.write(cfg.path / "ssl")
    c = MailContainer(image, Volumes.under(tmp_path, cfg.path))
    try:
        c.start()
        postfix_before, dovecot_before = reloads(c)
        token = clients.token("banner")
        # One edit with two files: a global Sieve script that does not compile, and a main.cf change.
        (cfg.path / "before.dovecot.sieve").write_text(BAD_SIEVE)
        (cfg.path / "postfix-main.cf").write_text(f"smtpd_banner = $myhostname ESMTP {token}\n")

        # Postfix's master reloads despite the Sieve failure (a new smtpd reads main.cf by itself,
        # so the banner alone would not prove it), and so does Dovecot for its changed dovecot.conf.
        wait_until("postfix/master logs a reload", lambda: reloads(c)[0] > postfix_before, c)
        wait_until("dovecot's master logs a reload", lambda: reloads(c)[1] > dovecot_before, c)
        wait_until("Postfix serves the new smtpd_banner on 587", lambda: token in submission_banner(), c)
        errors = wait_until("an ERROR line naming the Sieve file and sievec",
                            lambda: [ln for ln in c.logs().splitlines()
                                     if " ERROR " in ln and "before.sieve" in ln and "sievec" in ln], c)
        assert "Traceback" not in c.logs(), c.diagnostics()
        assert "reloaded postfix" in c.logs() and "reloaded dovecot" in c.logs(), c.diagnostics()
        assert all(ln.count("before.sieve") and "\n" not in ln for ln in errors)

        # Fixed, the script is compiled at the next poll and Dovecot runs with it.
        (cfg.path / "before.dovecot.sieve").write_text(GOOD_SIEVE)
        wait_until("the fixed Sieve script compiled",
                   lambda: c.exec("test", "-s", "/etc/dovecot/sieve/before.svbin", check=False).returncode == 0, c)
        dovecot = c.exec("doveconf", "-h", "plugin/sieve_before", check=False).stdout.strip()
        assert dovecot == "/etc/dovecot/sieve/before.sieve", c.diagnostics()
        assert c.exec("test", "-e", "/run/mailwright/pending-reloads", check=False).returncode != 0
    finally:
        c.remove()


@pytest.mark.parametrize("target", ["vps"], indirect=True)
def test_vps_config_folder_is_roots_alone(target):
    """The seeded config folder holds password hashes: root's alone, the accounts file 0600 (7.6)."""
    folder = target.config_dir
    assert target.exec("stat", "-c", "%a %U", folder).stdout.split() == ["700", "root"]
    assert target.exec("stat", "-c", "%a", f"{folder}/postfix-accounts.cf").stdout.strip() == "600"
    assert target.exec("test", "-e", "/run/mailwright/pending-reloads", check=False).returncode != 0
