"""`setup` with ACCOUNT_PROVISIONER=LDAP (issue 11): the commands that would edit the accounts
or aliases of the config folder stop with exit 1 and say the accounts live in the directory;
no file is written. `email list` says it cannot list them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ACCOUNTS = b"user@example.com|{SHA512-CRYPT}$6$salt$hash\n"
VIRTUAL = b"alias@example.com user@example.com\n"


@pytest.fixture
def setup(tmp_path):
    config, mail, logs = tmp_path / "config", tmp_path / "mail", tmp_path / "log"
    for d in (config, mail, logs):
        d.mkdir()
    (config / "postfix-accounts.cf").write_bytes(ACCOUNTS)
    (config / "postfix-virtual.cf").write_bytes(VIRTUAL)
    settings = tmp_path / "dms-settings"
    settings.write_text("ACCOUNT_PROVISIONER='LDAP'\nLDAP_SERVER_HOST='ldap://ldap.example.com'\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILWRIGHT_") and k != "LOG_LEVEL"}
    env.update(MAILWRIGHT_CONFIG_DIR=str(config), MAILWRIGHT_MAIL_ROOT=str(mail),
               MAILWRIGHT_DMS_SETTINGS=str(settings), MAILWRIGHT_LOG_DIR=str(logs), PYTHONPATH=str(REPO))

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "mailwright.cli", *args], cwd=REPO, env=env, input="",
                              capture_output=True, text=True, timeout=60)
    run.config = config
    return run


@pytest.mark.parametrize("args", [
    ("email", "add", "new@example.com", "pw-Secret-1"),
    ("email", "update", "user@example.com", "pw-Secret-2"),
    ("email", "del", "-y", "user@example.com"),
    ("alias", "add", "new-alias@example.com", "user@example.com"),
    ("alias", "del", "alias@example.com", "user@example.com"),
])
def test_account_and_alias_edits_are_refused_in_ldap_mode(setup, args):
    r = setup(*args)
    assert r.returncode == 1, (r.stdout, r.stderr)
    said = r.stdout + r.stderr
    assert "LDAP directory" in said and "ACCOUNT_PROVISIONER=LDAP" in said
    assert "pw-Secret" not in said
    assert (setup.config / "postfix-accounts.cf").read_bytes() == ACCOUNTS
    assert (setup.config / "postfix-virtual.cf").read_bytes() == VIRTUAL


def test_help_still_answers_in_ldap_mode(setup):
    r = setup("email", "add", "help")
    assert r.returncode == 0 and "email add" in r.stdout + r.stderr


def test_email_list_says_it_cannot_list_the_directory(setup):
    r = setup("email", "list")
    assert r.returncode == 1
    assert "ACCOUNT_PROVISIONER=LDAP" in r.stdout + r.stderr and "user@example.com" not in r.stdout
