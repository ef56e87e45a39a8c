"""Postfix as the hub: what daemons contribute (`PostfixHooks`) lands in main.cf/master.cf.

The golden renders under tests/unit/golden/ were made from the templates before
the quota-status wiring moved from main.cf.j2 to Dovecot's descriptor: the
rendered files must stay identical byte for byte. Regenerate them
(`MAILWRIGHT_REGOLD=1 .venv/bin/pytest tests/unit/test_postfix_hub.py`) only
for a change that is meant to alter Postfix's configuration.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ops import configdir, plan, settings as S

GOLDEN = Path(__file__).parent / "golden"
FQDN = "mail.example.test"
ACCOUNTS = "user@example.test|{SHA512-CRYPT}$6$salt1$hash1\n"

COMBOS = {
    "default": ({}, {}),
    "no-quotas": ({"ENABLE_QUOTAS": "0"}, {}),
    "smtp-only": ({"SMTP_ONLY": "1"}, {}),
    "access-spoof-relay": ({"SPOOF_PROTECTION": "1", "RELAY_HOST": "relay.example.test", "RELAY_USER": "u",
                            "RELAY_PASSWORD": "p"},
                           {"postfix-receive-access.cf": "bad@example.test REJECT\n",
                            "postfix-send-access.cf": "spam@example.test REJECT\n"}),
    "access-no-quotas": ({"ENABLE_QUOTAS": "0"}, {"postfix-receive-access.cf": "bad@example.test REJECT\n"}),
}


def render(tmp_path, env: dict[str, str], config: dict[str, str]) -> dict[str, str]:
    folder = tmp_path / "config"
    folder.mkdir()
    for name, text in {"postfix-accounts.cf": ACCOUNTS, **config}.items():
        (folder / name).write_text(text)
    s = S.load(host_data={"MAILWRIGHT_INIT": "systemd", "MAILWRIGHT_CONFIG_DIR": str(folder)},
               environ={"ENABLE_OPENDKIM": "0", "ENABLE_OPENDMARC": "0", "ENABLE_AMAVIS": "0", **env},
               fqdn=FQDN)   # the core's files: the milters and Amavis have their own tests
    return {f.path: f.content for f in plan.files(s, configdir.read(folder))}


@pytest.mark.parametrize("combo", sorted(COMBOS))
@pytest.mark.parametrize("path", ["/etc/postfix/main.cf", "/etc/postfix/master.cf"])
def test_postfix_files_unchanged_byte_for_byte(tmp_path, combo, path):
    env, config = COMBOS[combo]
    text = render(tmp_path, env, config)[path]
    golden = GOLDEN / combo / Path(path).name
    if os.environ.get("MAILWRIGHT_REGOLD"):
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(text)
    assert text == golden.read_text()


@pytest.mark.parametrize("init, expected", [
    ("container", "unix:/run/opendkim/opendkim.sock, unix:/run/opendmarc/opendmarc.sock, inet:127.0.0.1:11332"),
    ("systemd", "inet:localhost:8891, inet:127.0.0.1:8893, inet:127.0.0.1:11332"),
])
def test_postfix_main_cf_written_for_docker_mailserver_reaches_the_milters_where_they_listen(tmp_path, init, expected):
    """docker-mailserver's milters listen on inet:localhost:8891/8893; in mailwright's container they are
    unix sockets (ops/opendkim SOCKET says why). An operator's postfix-main.cf naming the old addresses
    (e.g. to add rspamd's milter) is translated word by word; on a VPS, where they listen on those
    ports, it is left as written."""
    folder = tmp_path / "config"
    folder.mkdir()
    (folder / "postfix-accounts.cf").write_text(ACCOUNTS)
    (folder / "postfix-main.cf").write_text(
        "smtpd_milters = inet:localhost:8891, inet:127.0.0.1:8893, inet:127.0.0.1:11332\n"
        "milter_mail_macros = i {mail_addr} inet:localhost:8891x\n")
    s = S.load(host_data={"MAILWRIGHT_INIT": init, "MAILWRIGHT_CONFIG_DIR": str(folder)},
               environ={"ENABLE_OPENDKIM": "1", "ENABLE_OPENDMARC": "1", "ENABLE_AMAVIS": "0"}, fqdn=FQDN)
    main = {f.path: f.content for f in plan.files(s, configdir.read(folder))}["/etc/postfix/main.cf"]
    lines = [line for line in main.splitlines() if line.startswith("smtpd_milters =")]
    assert lines == [f"smtpd_milters = {expected}"]
    assert "milter_mail_macros = i {mail_addr} inet:localhost:8891x" in main      # whole words only
