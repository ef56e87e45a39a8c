"""`setup` with ACCOUNT_PROVISIONER=LDAP (issue 11): the commands that would edit the accounts
or aliases of the config folder stop with exit 1 and say the accounts live in the directory;
no file is written. `email list` lists the directory's accounts (through Dovecot), or says why it cannot."""

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
    # as the start writes it: quotas are off with LDAP unless set (docker-mailserver)
    settings.write_text("ACCOUNT_PROVISIONER='LDAP'\nLDAP_SERVER_HOST='ldap://ldap.example.com'\nENABLE_QUOTAS='0'\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILWRIGHT_") and k != "LOG_LEVEL"}
    env.update(MAILWRIGHT_CONFIG_DIR=str(config), MAILWRIGHT_MAIL_ROOT=str(mail),
               MAILWRIGHT_DMS_SETTINGS=str(settings), MAILWRIGHT_LOG_DIR=str(logs), PYTHONPATH=str(REPO))

    def run(*args: str, path: Path | None = None) -> subprocess.CompletedProcess:
        e = dict(env, PATH=f"{path}{os.pathsep}{env['PATH']}") if path else env
        return subprocess.run([sys.executable, "-m", "mailwright.cli", *args], cwd=REPO, env=e, input="",
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


def doveadm_shim(setup, script: str) -> Path:
    shim = setup.config.parent / "bin"
    shim.mkdir(exist_ok=True)
    (shim / "doveadm").write_text("#!/bin/sh\n" + script)
    (shim / "doveadm").chmod(0o755)
    return shim


def test_email_list_lists_the_directory_accounts_through_dovecot(setup):
    """docker-mailserver's format (quotas are off with LDAP unless set): `* address`, one block
    each, sorted; not the config folder's postfix-accounts.cf. A name that is not one printable
    word (a hostile directory value with a line break or a space) is not printed."""
    shim = doveadm_shim(setup, '[ "$1 $2" = "user *" ] || exit 64\n'
                               'printf "%s\\n" bob@example.test alice@example.test "x y" alice@example.test\n')
    r = setup("email", "list", path=shim)
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert r.stdout == "* alice@example.test\n\n* bob@example.test\n\n"


def test_email_list_of_the_directory_shows_quotas_when_they_are_on(setup):
    with (setup.config.parent / "dms-settings").open("a") as f:
        f.write("ENABLE_QUOTAS='1'\n")
    shim = doveadm_shim(setup, '[ "$1" = user ] || exit 1\necho alice@example.test\n')
    r = setup("email", "list", path=shim)
    assert r.stdout == "* alice@example.test ( 0 / ~ ) [0%]\n\n", r.stderr


def test_email_list_says_why_it_cannot_list_the_directory(setup):
    shim = doveadm_shim(setup, 'echo "Error: ldap: Can\'t connect to server" >&2\nexit 75\n')
    r = setup("email", "list", path=shim)
    assert r.returncode == 1
    said = r.stdout + r.stderr
    assert "cannot list the accounts of the LDAP directory" in said and "Can't connect to server" in said
    assert "user@example.com" not in r.stdout                      # not the config folder's accounts


def test_email_list_with_smtp_only_says_dovecot_does_not_run(setup):
    with (setup.config.parent / "dms-settings").open("a") as f:
        f.write("SMTP_ONLY='1'\n")
    r = setup("email", "list")
    assert r.returncode == 1 and "SMTP_ONLY=1" in r.stdout + r.stderr


