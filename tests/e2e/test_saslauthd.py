"""saslauthd against the image (issue 11, "SASLauthd", the rimap mechanism): SMTP AUTH on 587 is
checked by saslauthd, which asks an IMAP server (here the container's own Dovecot on loopback,
SASLAUTHD_MECH_OPTIONS=127.0.0.1); a wrong password is refused; off means gone.

The ldap mechanism runs against a real slapd in tests/e2e/test_ldap.py (the README's LDAP
example with its SASLauthd block: AUTH on 465/587, a wrong password, SMTP_ONLY=1); its
/etc/saslauthd.conf and the SASLAUTHD_LDAP_* checks are unit-tested
(tests/unit/test_saslauthd_templates.py).
"""

from __future__ import annotations

import smtplib

import pytest

from harness import clients as c
from harness.configdir import MailConfig
from harness.mailserver import serving

pytestmark = pytest.mark.docker

USER, PASSWORD = "user1@example.test", "user1-Secret!"
ENV = {"ENABLE_SASLAUTHD": "1", "SASLAUTHD_MECHANISMS": "rimap", "SASLAUTHD_MECH_OPTIONS": "127.0.0.1"}


@pytest.fixture(scope="module")
def server(image, tls, tmp_path_factory):
    root = tmp_path_factory.mktemp("saslauthd")
    cfg = MailConfig(root / "config")
    cfg.account(USER, PASSWORD)
    with serving(image, root, cfg, tls, ENV, [25, 587, 143]) as box:
        yield box


def test_smtp_auth_on_587_goes_through_saslauthd(server, tls):
    assert server.exec("postconf", "-h", "smtpd_sasl_type").stdout.strip() == "cyrus"
    # saslauthd itself says yes to the right password and no to a wrong one
    ok = server.exec("testsaslauthd", "-u", USER, "-p", PASSWORD, "-f", "/run/saslauthd/mux", check=False)
    assert ok.returncode == 0 and "OK" in ok.stdout, ok.stdout + ok.stderr
    bad = server.exec("testsaslauthd", "-u", USER, "-p", "wrong", "-f", "/run/saslauthd/mux", check=False)
    assert bad.returncode != 0, bad.stdout
    # and Postfix asks it
    token = c.token("sasl")
    refused = c.send(USER, USER, token, port=587, context=tls.client_context(), login=(USER, PASSWORD))
    assert refused == {}
    c.wait_for_message(USER, PASSWORD, token, context=tls.client_context(), timeout=60)


def test_wrong_password_is_refused(server, tls):
    with pytest.raises(smtplib.SMTPAuthenticationError) as e:
        c.send(USER, USER, c.token("sasl"), port=587, context=tls.client_context(), login=(USER, "wrong-Secret"))
    assert e.value.smtp_code == 535


def test_off_means_gone(server):
    server.recreate(env={"ENABLE_SASLAUTHD": "0"})
    assert server.exec("postconf", "-h", "smtpd_sasl_type").stdout.strip() == "dovecot"
    files = server.exec("sh", "-c", "ls /etc/default/mailwright-saslauthd /etc/postfix/sasl/smtpd.conf "
                        "/run/saslauthd/mux 2>/dev/null", check=False).stdout
    assert files.strip() == "", files
    procs = server.exec("sh", "-c", "cat /proc/[0-9]*/cmdline | tr '\\0' ' '", check=False).stdout
    assert "saslauthd" not in procs, procs
