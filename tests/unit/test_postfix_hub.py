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
