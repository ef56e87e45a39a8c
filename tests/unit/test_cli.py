"""The `setup` CLI (`python3 -m mailwright.cli`) against a config folder in tmp_path.

Every command runs as its own process, as `docker exec … setup` runs it. Bad
input must leave every file byte-identical (and create none); good input must
produce docker-mailserver's formats, which `ops.configdir` then reads cleanly.
"""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import warnings

import pytest

from mailwright import configwrite as cw
from ops import configdir

REPO = Path(__file__).resolve().parents[2]

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)     # crypt: still in Debian 12's python3.11
    import crypt

SEED = {
    "postfix-accounts.cf": b"# accounts\nuser@example.com|{SHA512-CRYPT}$6$salt$hash\n\n"
                           b"other@example.com|{SHA512-CRYPT}$6$salt$hash2|userdb_mail=mbox:~/mail\n",
    "postfix-virtual.cf": b"# aliases\r\nalias@example.com user@example.com\r\n@catch.test other@example.com\r\n",
    "dovecot-quotas.cf": b"user@example.com:10M\n",
    "postfix-relaymap.cf": b"@relayed.test [smtp.relay.test]:2525\n",
}


class Setup:
    """Runs the CLI with the config folder, mail root and settings of one test."""

    def __init__(self, root: Path):
        self.root = root
        self.config = root / "config"
        self.mail = root / "mail"
        self.settings = root / "dms-settings"
        self.logs = root / "log"
        for d in (self.config, self.mail, self.logs):
            d.mkdir()
        self.extra_env: dict[str, str] = {}

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MAILWRIGHT_") and k != "LOG_LEVEL"}
        env.update(MAILWRIGHT_CONFIG_DIR=str(self.config), MAILWRIGHT_MAIL_ROOT=str(self.mail),
                   MAILWRIGHT_DMS_SETTINGS=str(self.settings), MAILWRIGHT_LOG_DIR=str(self.logs),
                   PYTHONPATH=str(REPO))
        env.update(self.extra_env)
        return env

    def inject(self, code: str) -> None:
        """Run `code` in every CLI process started afterwards (a sitecustomize
        module first on PYTHONPATH): to make a system call fail, or to watch one."""
        site = self.root / "site"
        site.mkdir(exist_ok=True)
        (site / "sitecustomize.py").write_text(textwrap.dedent(code))
        self.extra_env["PYTHONPATH"] = f"{site}{os.pathsep}{REPO}"

    def popen(self, *args: str, **kw) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "mailwright.cli", *args], cwd=REPO, env=self.env(),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.PIPE, text=True, **kw)

    def __call__(self, *args: str, input: str = "") -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "mailwright.cli", *args], cwd=REPO, env=self.env(),
                              input=input, capture_output=True, text=True, timeout=60)

    def seed(self, files: dict[str, bytes] = SEED) -> None:
        for name, data in files.items():
            (self.config / name).write_bytes(data)

    def read(self, name: str) -> str:
        return (self.config / name).read_text()

    def snapshot(self, lock: bool = True) -> dict[str, tuple[int, bytes]]:
        """Mode and bytes of every file and directory; the lock file's content
        (its last holder) is left out when `lock` is False."""
        return {str(p.relative_to(self.root)): (p.stat().st_mode, p.read_bytes() if p.is_file() else b"")
                for p in sorted(self.root.rglob("*")) if lock or p.name != cw.LOCK_NAME}


@pytest.fixture
def setup(tmp_path) -> Setup:
    return Setup(tmp_path)


def hash_of(s: Setup, address: str) -> str:
    lines = [line for line in s.read("postfix-accounts.cf").splitlines() if line.startswith(address + "|")]
    assert len(lines) == 1, lines
    return lines[0].split("|")[1]


def verifies(hashed: str, password: str) -> bool:
    assert hashed.startswith("{SHA512-CRYPT}$6$")
    raw = hashed[len("{SHA512-CRYPT}"):]
    return crypt.crypt(password, raw) == raw


# --- usage and dispatch ---------------------------------------------------------------------------

def test_usage_without_arguments(setup):
    r = setup()
    assert r.returncode == 0
    assert "This is the main administration command that you use for all your interactions with" in r.stdout
    assert setup("help").returncode == 0


@pytest.mark.parametrize("args", [["lol", "troll"], ["email"], ["email", "lol"], ["debug", "nothing"]])
def test_unknown_command(setup, args):
    r = setup(*args)
    assert r.returncode == 2
    assert f"The command '{' '.join(args)}' is invalid." in r.stderr.splitlines()[0]


@pytest.mark.parametrize("args", [["email", "add", "help"], ["alias", "add", "help"], ["quota", "set", "help"],
                                  ["relay", "add-domain", "help"], ["dovecot-master", "add", "help"]])
def test_subcommand_help(setup, args):
    r = setup(*args)
    assert r.returncode == 0 and "USAGE" in r.stdout


def test_config_dkim_help(setup):
    r = setup("config", "dkim", "help")
    assert r.returncode == 0
    assert "open-dkim - Configure DKIM (DomainKeys Identified Mail)" in r.stdout.splitlines()[3]


@pytest.mark.parametrize("args", [["email", "add"], ["alias", "add", "a@example.com"], ["quota", "del"]])
def test_missing_arguments_print_usage_and_exit_1(setup, args):
    r = setup(*args)
    assert r.returncode == 1 and "USAGE" in r.stderr


# --- email ----------------------------------------------------------------------------------------

def test_email_add_creates_the_file_with_a_dovecot_hash(setup):
    r = setup("email", "add", "new@example.com", "s3cret")
    assert r.returncode == 0, r.stderr
    assert setup.read("postfix-accounts.cf").startswith("new@example.com|{SHA512-CRYPT}$6$")
    assert verifies(hash_of(setup, "new@example.com"), "s3cret")


def test_email_add_appends_and_keeps_everything_else(setup):
    setup.seed()
    assert setup("email", "add", "new@example.com", "pw").returncode == 0
    text = setup.read("postfix-accounts.cf")
    assert text.startswith(SEED["postfix-accounts.cf"].decode())
    assert text.splitlines()[-1].startswith("new@example.com|")
    cfg = configdir.read(setup.config)
    assert not cfg.problems and [a.address for a in cfg.accounts][-1] == "new@example.com"


def test_email_add_prompts_twice(setup):
    r = setup("email", "add", "p@example.com", input="pass word\npass word\n")
    assert r.returncode == 0, r.stderr
    assert "Enter Password" in r.stderr and "Confirm Password" in r.stderr
    assert verifies(hash_of(setup, "p@example.com"), "pass word")


def test_email_add_lowercases_with_a_warning(setup):
    r = setup("email", "add", "Mixed@Example.COM", "pw")
    assert r.returncode == 0
    assert "normalized to 'mixed@example.com'" in r.stderr
    assert setup.read("postfix-accounts.cf").startswith("mixed@example.com|")


def test_email_update_replaces_only_the_hash(setup):
    setup.seed()
    assert setup("email", "update", "other@example.com", "newpw").returncode == 0
    lines = setup.read("postfix-accounts.cf").splitlines()
    assert lines[0] == "# accounts" and lines[1] == "user@example.com|{SHA512-CRYPT}$6$salt$hash"
    address, hashed, extra = lines[3].split("|")
    assert address == "other@example.com" and extra == "userdb_mail=mbox:~/mail" and verifies(hashed, "newpw")


def test_email_del_with_y_removes_account_aliases_quota_and_mailbox(setup):
    setup.seed()
    maildir = setup.mail / "example.com" / "user"
    (maildir / "cur").mkdir(parents=True)
    (maildir / "cur" / "1.msg").write_text("hello")
    r = setup("email", "del", "-y", "user@example.com")
    assert r.returncode == 0, r.stderr
    assert "user@example.com" not in setup.read("postfix-accounts.cf")
    assert "alias@example.com" not in setup.read("postfix-virtual.cf")       # its only recipient
    assert "@catch.test other@example.com" in setup.read("postfix-virtual.cf")
    assert setup.read("dovecot-quotas.cf") == ""
    assert not maildir.exists() and not (setup.mail / "example.com").exists()


def test_email_del_with_n_keeps_mailbox(setup):
    setup.seed()
    maildir = setup.mail / "example.com" / "user"
    maildir.mkdir(parents=True)
    r = setup("email", "del", "-n", "user@example.com")
    assert r.returncode == 0 and "explicitly kept" in r.stderr
    assert maildir.is_dir()


def test_email_del_asks_about_mailbox(setup):
    setup.seed()
    maildir = setup.mail / "example.com" / "other"
    maildir.mkdir(parents=True)
    r = setup("email", "del", "other@example.com", input="y\n")
    assert r.returncode == 0 and "[y/N]" in r.stderr and not maildir.exists()


def test_email_del_without_accounts_file_is_silent(setup):
    r = setup("email", "del", "-y", "user@example.com")
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")


def test_email_list_with_quotas_and_aliases(setup):
    setup.seed()
    (setup.mail / "example.com" / "user" / "cur").mkdir(parents=True)
    (setup.mail / "example.com" / "user" / "cur" / "1").write_bytes(b"x" * 2048)
    r = setup("email", "list")
    assert r.returncode == 0, r.stderr
    assert r.stdout == ("* user@example.com ( 2.0K / 10M ) [0%]\n    [ aliases -> alias@example.com ]\n\n"
                        "* other@example.com ( 0 / ~ ) [0%]\n    [ aliases -> @catch.test ]\n\n")


def test_email_list_without_quotas(setup):
    setup.seed()
    setup.settings.write_text("ENABLE_QUOTAS='0'\n")
    r = setup("email", "list")
    assert r.stdout.splitlines()[0] == "* user@example.com"


def test_email_list_without_accounts_is_an_error(setup):
    r = setup("email", "list")
    assert r.returncode == 1 and "does not exist" in r.stderr


def test_email_restrict(setup):
    assert setup("email", "restrict").returncode == 1
    assert setup("email", "restrict", "add").returncode == 1
    assert setup("email", "restrict", "add", "send", "lorem@ipsum.org").returncode == 0
    r = setup("email", "restrict", "list", "send")
    assert r.stdout.startswith("lorem@ipsum.org") and "REJECT" in r.stdout
    assert setup("email", "restrict", "add", "send", "lorem@ipsum.org").returncode == 1
    assert setup("email", "restrict", "del", "send", "lorem@ipsum.org").returncode == 0
    assert "Everyone is allowed to send mails" in setup("email", "restrict", "list", "send").stderr


# --- alias ----------------------------------------------------------------------------------------

def test_alias_add_appends_recipients_and_del_removes_them(setup):
    assert setup("alias", "add", "alias@example.com", "target1@forward.com").returncode == 0
    assert setup("alias", "add", "alias@example.com", "target2@forward.com").returncode == 0
    assert setup("alias", "add", "alias2@example.org", "target3@forward.com").returncode == 0
    assert setup.read("postfix-virtual.cf") == ("alias@example.com target1@forward.com,target2@forward.com\n"
                                                "alias2@example.org target3@forward.com\n")
    assert setup("alias", "del", "alias@example.com", "target1@forward.com").returncode == 0
    assert setup("alias", "del", "alias2@example.org", "target3@forward.com").returncode == 0
    assert setup.read("postfix-virtual.cf") == "alias@example.com target2@forward.com\n"


def test_alias_add_catch_all_and_list(setup):
    setup.seed()
    assert setup("alias", "add", "@example.org", "user@example.com").returncode == 0
    r = setup("alias", "list")
    assert r.stdout == ("* alias@example.com user@example.com\n\n* @catch.test other@example.com\n\n"
                        "* @example.org user@example.com\n\n")
    assert not configdir.read(setup.config).problems


# --- quota ----------------------------------------------------------------------------------------

def test_quota_set_replaces_and_del_removes(setup):
    setup.seed()
    assert setup("quota", "set", "user@example.com", "12M").returncode == 0
    assert setup("quota", "set", "other@example.com", "0").returncode == 0
    assert setup("quota", "set", "user@example.com", "26M").returncode == 0
    assert setup.read("dovecot-quotas.cf") == "user@example.com:26M\nother@example.com:0\n"
    assert setup("quota", "del", "user@example.com").returncode == 0
    assert setup("quota", "del", "user@example.com").returncode == 0       # no entry: still fine
    assert setup.read("dovecot-quotas.cf") == "other@example.com:0\n"


# --- dovecot-master -------------------------------------------------------------------------------

def test_dovecot_master_lifecycle(setup):
    assert setup("dovecot-master", "add", "admin", "pw1").returncode == 0
    again = setup("dovecot-master", "add", "admin", "pw1")
    assert again.returncode == 1 and "'admin' already exists" in again.stderr
    assert setup("dovecot-master", "add", "backup", "pw").returncode == 0
    assert setup("dovecot-master", "update", "admin", "pw2").returncode == 0
    hashed = setup.read("dovecot-masters.cf").splitlines()[0].split("|")[1]
    assert verifies(hashed, "pw2")
    assert setup("dovecot-master", "list").stdout == "* admin\n\n* backup\n\n"
    assert setup("dovecot-master", "del", "admin").returncode == 0
    assert setup("dovecot-master", "list").stdout == "* backup\n\n"
    assert [m[0] for m in configdir.read(setup.config).masters] == ["backup"]


# --- relay ----------------------------------------------------------------------------------------

def test_relay_commands(setup):
    assert setup("relay", "add-domain", "example1.org", "smtp.relay1.com", "2525").returncode == 0
    assert setup("relay", "add-domain", "example2.org", "smtp.relay2.com").returncode == 0
    assert setup("relay", "add-domain", "example1.org", "smtp.relay.com", "587").returncode == 0
    assert setup("relay", "exclude-domain", "example3.org").returncode == 0
    assert setup.read("postfix-relaymap.cf") == ("@example1.org [smtp.relay.com]:587\n"
                                                 "@example2.org [smtp.relay2.com]:25\n@example3.org\n")
    assert setup("relay", "add-auth", "example.org", "smtp_user", "smtp_pass").returncode == 0
    assert setup("relay", "add-auth", "example2.org", "smtp_user2", "smtp_pass2").returncode == 0
    assert setup("relay", "add-auth", "example2.org", "smtp_user2", "smtp_pass_new").returncode == 0
    assert setup.read("postfix-sasl-password.cf") == ("@example.org smtp_user:smtp_pass\n"
                                                      "@example2.org smtp_user2:smtp_pass_new\n")
    assert (setup.config / "postfix-sasl-password.cf").stat().st_mode & 0o077 == 0


# --- config dkim ----------------------------------------------------------------------------------

def _public_key(private: Path) -> str:
    der = subprocess.run(["openssl", "rsa", "-in", str(private), "-pubout", "-outform", "DER"],
                         capture_output=True, check=True).stdout
    import base64
    return base64.b64encode(der).decode()


@pytest.mark.skipif(not shutil.which("openssl"), reason="openssl is not installed")
def test_config_dkim_writes_keys_and_tables(setup):
    r = setup("config", "dkim", "keysize", "1024", "selector", "s1", "domain", "a.test,b.test")
    assert r.returncode == 0, r.stderr
    base = setup.config / "opendkim"
    for domain in ("a.test", "b.test"):
        private = base / "keys" / domain / "s1.private"
        assert private.read_text().startswith("-----BEGIN RSA PRIVATE KEY-----")
        assert private.stat().st_mode & 0o777 == 0o600
        txt = (base / "keys" / domain / "s1.txt").read_text()
        assert txt.startswith('s1._domainkey\tIN\tTXT\t( "v=DKIM1; h=sha256; k=rsa; "')
        assert "".join(part for part in txt.split('"')[3::2]) == "p=" + _public_key(private)
    assert (base / "KeyTable").read_text() == (
        "s1._domainkey.a.test a.test:s1:/etc/opendkim/keys/a.test/s1.private\n"
        "s1._domainkey.b.test b.test:s1:/etc/opendkim/keys/b.test/s1.private\n")
    assert (base / "SigningTable").read_text() == "*@a.test s1._domainkey.a.test\n*@b.test s1._domainkey.b.test\n"
    assert (base / "TrustedHosts").read_text() == "127.0.0.1\nlocalhost\n"
    before = setup.snapshot(lock=False)
    assert setup("config", "dkim", "keysize", "1024", "selector", "s1", "domain", "a.test").returncode == 0
    assert setup.snapshot(lock=False) == before                     # an existing key is kept, no line doubled


@pytest.mark.skipif(not shutil.which("openssl"), reason="openssl is not installed")
def test_config_dkim_defaults_to_the_domains_of_accounts_and_aliases(setup):
    setup.seed()
    setup.settings.write_text("OVERRIDE_HOSTNAME='mail.fqdn.test'\n")
    assert setup("config", "dkim", "keysize", "1024").returncode == 0
    keys = sorted(p.name for p in (setup.config / "opendkim" / "keys").iterdir())
    assert keys == ["catch.test", "example.com", "fqdn.test"]


# --- debug (fail2ban: test_fail2ban_cli.py) -------------------------------------------------------

def test_debug_show_mail_logs_and_login(setup):
    (setup.logs / "mail.log").write_text("line one\n")
    assert setup("debug", "show-mail-logs").stdout == "line one\n"
    r = setup("debug", "login", "echo", "hello")
    assert (r.returncode, r.stdout) == (0, "hello\n")


@pytest.mark.skipif(bool(shutil.which("fetchmail")), reason="fetchmail is installed here")
def test_debug_fetchmail_not_installed(setup):
    r = setup("debug", "fetchmail")
    assert r.returncode == 1 and "fetchmail is not installed" in r.stderr


# --- bad input: a clear error naming the culprit, non-zero exit, nothing written ------------------

BAD = [
    (["email", "add", "noatsign", "pw"], "'noatsign' should include the domain"),
    (["email", "add", "bad address@example.com", "pw"], "'bad address@example.com' is not a valid e-mail address"),
    (["email", "add", "user@nodot", "pw"], "'user@nodot' is not a valid e-mail address"),
    (["email", "add", "user@example.com", "pw"], "'user@example.com' already exists"),
    (["email", "add", "USER@example.com", "pw"], "'user@example.com' already exists"),
    (["email", "add", "alias@example.com", "pw"], "'alias@example.com' is already defined as an alias"),
    (["email", "add", "x@example.com", "pw", "extra"], "Too many arguments"),
    (["email", "update", "nobody@example.com", "pw"], "'nobody@example.com' does not exist"),
    (["email", "del", "-y", "user@example.com", "nobody@example.com"], "'nobody@example.com' does not exist"),
    (["email", "del", "-x", "user@example.com"], "The option '-x' is unknown"),
    (["email", "restrict", "add", "sideways", "a@example.com"], "'sideways'"),
    (["quota", "set", "user@example.com", "26GIGOTS"], "'26GIGOTS'"),
    (["quota", "set", "user@example.com", "123"], "'123'"),
    (["quota", "set", "user@example.com", "M"], "'M'"),
    (["quota", "set", "user@example.com", "-60M"], "'-60M'"),
    (["quota", "set", "51M", "user@example.com"], "'51M' should include the domain"),
    (["quota", "set", "nobody@example.com", "10M"], "'nobody@example.com' does not exist"),
    (["quota", "del", "nobody@example.com"], "'nobody@example.com' does not exist"),
    (["alias", "add", "user@example.com", "x@example.org"], "'user@example.com' is already defined as an account"),
    (["alias", "add", "alias@example.com", "user@example.com"],
     "'alias@example.com' is already an alias for recipient: 'user@example.com'"),
    (["alias", "add", "alias@example.com", "new@example.org,user@example.com"], "'user@example.com'"),
    (["alias", "add", "new@example.com", "ok@example.org an@address"], "'an@address'"),
    (["alias", "add", "bad@@example.com", "user@example.com"], "'bad@@example.com' is not a valid e-mail address"),
    (["dovecot-master", "add", "bad name", "pw"], "'bad name'"),
    (["dovecot-master", "add", "admin\n", "pw"], "'admin\\n' must not contain a line break"),
    (["dovecot-master", "add", "admin\x0c", "pw"], "'admin\\x0c' must not contain a line break"),
    (["dovecot-master", "update", "nobody", "pw"], "'nobody' does not exist"),
    (["dovecot-master", "del", "nobody"], "'nobody' does not exist"),
    (["relay", "add-domain", "example.com", "smtp.relay.test", "abc"], "Relay port 'abc' is not a number"),
    (["relay", "add-domain", "example.com", "smtp.relay.test", "70000"], "Relay port '70000'"),
    (["relay", "add-domain", "example.com", "smtp relay", "25"], "Relay host 'smtp relay'"),
    (["relay", "add-domain", "not_a_domain", "smtp.relay.test"], "'not_a_domain' is not a valid domain"),
    (["relay", "add-auth", "example.com", "user:name", "pw"], "'user:name'"),
    (["relay", "add-auth", "example.com", "user", "pw "], "must not end with white space"),
    (["relay", "add-auth", "example.com", "us\u2028er", "pw"], "'us\\u2028er' must not contain a line break"),
    (["relay", "add-domain", "example.com\n", "smtp.relay.test"], "'example.com\\n' must not contain"),
    (["relay", "exclude-domain", "example.com\x85"], "'example.com\\x85' must not contain"),
    (["email", "add", "evil|x@example.com", "pw"], "'evil|x@example.com' is not a valid e-mail address"),
    (["email", "add", "..@example.com", "pw"], "'..@example.com' is not a valid e-mail address"),
    (["email", "add", "../..@example.com", "pw"], "'../..@example.com' is not a valid e-mail address"),
    (["email", "add", ".@example.com", "pw"], "'.@example.com' is not a valid e-mail address"),
    (["email", "add", ".a@example.com", "pw"], "'.a@example.com' is not a valid e-mail address"),
    (["email", "add", "a.@example.com", "pw"], "'a.@example.com' is not a valid e-mail address"),
    (["email", "add", "a..b@example.com", "pw"], "'a..b@example.com' is not a valid e-mail address"),
    (["email", "add", "a/b@example.com", "pw"], "'a/b@example.com' is not a valid e-mail address"),
    (["email", "add", "new@example.com\n", "pw"], "'new@example.com\\n' must not contain a line break"),
    (["email", "add", "x" * 65 + "@example.com", "pw"], "is not a valid e-mail address"),
    (["email", "del", "-y", "../..@example.com"], "'../..@example.com' is not a valid e-mail address"),
    (["quota", "set", "..@example.com", "10M"], "'..@example.com' is not a valid e-mail address"),
    (["quota", "set", "user@example.com", "10M\n"], "'10M\\n' must not contain a line break"),
    (["email", "restrict", "add", "send", "../x@example.com"], "'../x@example.com' is not an e-mail address"),
    (["email", "restrict", "add", "send", "@@example.com"], "'@@example.com' is not an e-mail address"),
    (["email", "restrict", "add", "send", "x@example.com\x0b"], "'x@example.com\\x0b' must not contain"),
    (["alias", "add", "..", "user@example.com"], "'..' is not a valid alias"),
    (["alias", "add", "a@example.com", "../..@example.com"], "'../..@example.com' is not a valid e-mail"),
    (["alias", "add", "a@example.com", "b@example.com\x1cc@example.org"], "must not contain a line break"),
    (["relay", "exclude-domain", "-bad-.com"], "'-bad-.com' is not a valid domain"),
    (["config", "dkim", "keysize", "123"], "Keysize '123'"),
    (["config", "dkim", "selector", "bad selector"], "Selector 'bad selector'"),
    (["config", "dkim", "selector", "mail\n"], "Selector 'mail\n'"),
    (["config", "dkim", "domain", "a.test,bad_domain"], "'bad_domain' is not a valid domain"),
    (["config", "dkim", "colour", "blue"], "Unknown option(s) colour blue"),
    (["config", "dkim", "keysize"], "No keysize provided after 'keysize' argument"),
]


@pytest.mark.parametrize("args,culprit", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_changes_nothing(setup, args, culprit):
    setup.seed()
    (setup.mail / "example.com" / "user").mkdir(parents=True)
    before = setup.snapshot()
    r = setup(*args, input="")
    assert r.returncode != 0, r.stdout + r.stderr
    assert culprit in r.stderr, r.stderr
    assert setup.snapshot() == before


@pytest.mark.parametrize("answers,message", [("\n", "Password must not be empty"),
                                             ("one\ntwo\n", "Passwords do not match!"),
                                             ("", "Password must not be empty")])
def test_bad_password_prompt_changes_nothing(setup, answers, message):
    setup.seed()
    before = setup.snapshot()
    r = setup("email", "add", "new@example.com", input=answers)
    assert r.returncode == 1 and message in r.stderr
    assert setup.snapshot() == before


# --- hostile values: path traversal, line injection, argv exposure --------------------------------

def test_email_del_of_a_dot_dot_account_does_not_remove_the_domain_folder(setup):
    # A '..' account written by an older version (or by hand) cannot be deleted
    # through the CLI, and above all its rmtree never reaches /var/mail/<domain>/..
    setup.seed({"postfix-accounts.cf": b"..@example.com|{SHA512-CRYPT}$6$salt$hash\n"
                                       b"user@example.com|{SHA512-CRYPT}$6$salt$hash\n"})
    (setup.mail / "example.com" / "user" / "cur").mkdir(parents=True)
    (setup.mail / "example.com" / "user" / "cur" / "1.msg").write_text("keep me")
    before = setup.snapshot(lock=False)
    r = setup("email", "del", "-y", "..@example.com")
    assert r.returncode == 1 and "'..@example.com' is not a valid e-mail address" in r.stderr
    assert setup.snapshot(lock=False) == before


def test_email_del_refuses_a_symlinked_domain_folder(setup):
    setup.seed()
    outside = setup.root / "outside"
    (outside / "user" / "cur").mkdir(parents=True)
    (outside / "user" / "cur" / "1.msg").write_text("not ours")
    (setup.mail / "example.com").symlink_to(outside)
    before = setup.snapshot(lock=False)
    r = setup("email", "del", "-y", "user@example.com")
    assert r.returncode == 1 and "symbolic link" in r.stderr, r.stderr
    assert (outside / "user" / "cur" / "1.msg").read_text() == "not ours"
    assert setup.snapshot(lock=False) == before                     # the account and its entries are kept


def test_email_del_keeps_the_account_when_the_mailbox_cannot_be_removed(setup):
    setup.seed()
    (setup.mail / "example.com" / "user" / "cur").mkdir(parents=True)
    setup.inject("""
        import shutil
        def rmtree(path, *a, **kw):
            raise PermissionError(13, "Permission denied", str(path))
        shutil.rmtree = rmtree
    """)
    before = setup.snapshot(lock=False)
    r = setup("email", "del", "-y", "user@example.com")
    assert r.returncode == 1 and "Mailbox data could not be deleted" in r.stderr
    assert "'user@example.com' and its entries are kept" in r.stderr
    assert setup.snapshot(lock=False) == before                     # exit 1: nothing changed


def test_email_del_removes_the_earlier_accounts_before_a_failing_one(setup):
    setup.seed()
    (setup.mail / "example.com" / "other").mkdir(parents=True)
    (setup.mail / "example.com" / "user").mkdir(parents=True)
    setup.inject("""
        import shutil
        _rmtree = shutil.rmtree
        def rmtree(path, *a, **kw):
            if str(path).endswith("/user"):
                raise PermissionError(13, "Permission denied", str(path))
            return _rmtree(path, *a, **kw)
        shutil.rmtree = rmtree
    """)
    r = setup("email", "del", "-y", "other@example.com", "user@example.com")
    assert r.returncode == 1
    assert [a.address for a in configdir.read(setup.config).accounts] == ["user@example.com"]
    assert "@catch.test" not in setup.read("postfix-virtual.cf")     # other's alias went with it
    assert setup.read("dovecot-quotas.cf") == "user@example.com:10M\n"
    assert not (setup.mail / "example.com" / "other").exists()


SEPARATORS = ["\n", "\r", "\v", "\f", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029", "\x1b", "\x7f"]


@pytest.mark.parametrize("sep", SEPARATORS, ids=[f"U+{ord(c):04X}" for c in SEPARATORS])
@pytest.mark.parametrize("command", [["relay", "add-auth", "example.com", "user"],
                                     ["email", "add", "new@example.com"],
                                     ["dovecot-master", "add", "newmaster"]])
def test_no_line_separator_or_control_character_in_a_password(setup, command, sep):
    # `relay add-auth example.com user $'good\x0c@victim.org attacker:pw'` added a second domain's line.
    setup.seed()
    before = setup.snapshot()
    password = f"good{sep}@victim.org attacker:pw"
    r = setup(*command, password)
    assert r.returncode == 1
    assert "The password must not contain a line break or a control character" in r.stderr
    assert "victim" not in r.stderr and "attacker" not in r.stderr    # never echoed
    assert setup.snapshot() == before
    r = setup(*command, input=f"{password}\n{password}\n")          # the prompt too
    assert r.returncode == 1
    assert "must not contain a line break" in r.stderr or (sep == "\n" and "do not match" in r.stderr)
    assert setup.snapshot() == before


@pytest.mark.parametrize("command", [["email", "add", "new@example.com"], ["dovecot-master", "add", "newmaster"],
                                     ["relay", "add-auth", "example.com", "user"]])
def test_a_very_long_password_is_refused_cleanly(setup, command):
    setup.seed()
    before = setup.snapshot()
    password = "p" * (100 * 1024)
    r = setup(*command, password)
    assert r.returncode == 1 and "The password is too long (more than 511 bytes)" in r.stderr
    assert "Traceback" not in r.stderr and "pppp" not in r.stderr
    assert setup.snapshot() == before
    password = "p" * (128 * 1024)                                       # too long for argv: through the prompt
    r = setup(*command, input=f"{password}\n{password}\n")
    assert r.returncode == 1 and "The password is too long" in r.stderr and "pppp" not in r.stderr
    assert setup.snapshot() == before
    assert setup(*command, "p" * 512).returncode == 1
    assert setup(*command, "p" + "é" * 255).returncode == 0              # 511 bytes: accepted


def test_passwords_never_reach_a_command_line(setup):
    """No child process gets a password in its argv (`ps` shows argv to every
    user): not even a `doveadm` found on PATH."""
    setup.seed()
    shim = setup.root / "bin"
    shim.mkdir()
    argv_log = setup.root / "argv.log"
    (shim / "doveadm").write_text(f'#!/bin/sh\nprintf "%s\\n" "$0" "$@" >> {argv_log}\nexit 1\n')
    (shim / "doveadm").chmod(0o755)
    setup.extra_env["PATH"] = f"{shim}{os.pathsep}{os.environ['PATH']}"
    spawned = setup.root / "spawned.log"
    setup.inject(f"""
        import sys
        def hook(event, args):
            if event in ("subprocess.Popen", "os.exec", "os.posix_spawn", "os.spawn", "os.system"):
                with open({str(spawned)!r}, "a") as f:
                    f.write(repr(args) + "\\n")
        sys.addaudithook(hook)
    """)
    secret = "Sekr1t-in-argv"
    for command in (["email", "add", "new@example.com", secret + "1"], ["email", "update", "new@example.com", secret + "2"],
                    ["dovecot-master", "add", "m", secret + "3"], ["dovecot-master", "update", "m", secret + "4"],
                    ["relay", "add-auth", "example.com", "u", secret + "5"]):
        r = setup(*command)
        assert r.returncode == 0, r.stderr
    for log in (argv_log, spawned):
        assert secret not in (log.read_text() if log.exists() else "")
    assert verifies(hash_of(setup, "new@example.com"), secret + "2")
    hashed = setup.read("dovecot-masters.cf").splitlines()[0].split("|")[1]
    assert verifies(hashed, secret + "4")


# --- what the CLI writes, the reader reads back identically ----------------------------------------

def test_round_trip_email_add(setup):
    addresses = ["o'neil+tag@sub.example.com", "a.b.c@example.com", "x" * 64 + "@example.com",
                 "{curly}~^`!#$&*=?_-@example.org"]
    for address in addresses:
        assert setup("email", "add", address, "pw").returncode == 0
    cfg = configdir.read(setup.config)
    assert not cfg.problems and [a.address for a in cfg.accounts] == addresses


def test_round_trip_alias_add(setup):
    pairs = [("a@example.com", ["b@example.com"]), ("postmaster", ["o'neil+x@example.org", "root"]),
             ("@example.net", ["catch@example.com"])]
    for alias, targets in pairs:
        assert setup("alias", "add", alias, ",".join(targets)).returncode == 0
    cfg = configdir.read(setup.config)
    assert not cfg.problems and cfg.aliases == pairs


def test_round_trip_quota_set(setup):
    setup.seed()
    assert setup("quota", "set", "other@example.com", "5G").returncode == 0
    cfg = configdir.read(setup.config)
    assert not cfg.problems and cfg.quotas == {"user@example.com": "10M", "other@example.com": "5G"}


def test_round_trip_dovecot_master_add(setup):
    for name in ("admin", "ops@example.com", "a.b+c_d-e"):
        assert setup("dovecot-master", "add", name, "pw").returncode == 0
    cfg = configdir.read(setup.config)
    assert not cfg.problems and [m for m, _ in cfg.masters] == ["admin", "ops@example.com", "a.b+c_d-e"]


@pytest.mark.parametrize("direction", ["send", "receive"])
def test_round_trip_email_restrict(setup, direction):
    keys = ["spammer@example.com", "example.org", "@example.net", "noreply@"]
    for key in keys:
        assert setup("email", "restrict", "add", direction, key).returncode == 0
    cfg = configdir.read(setup.config)
    assert not cfg.problems
    assert getattr(cfg, f"{direction}_access") == [(k, "REJECT") for k in keys]


def test_round_trip_relay(setup):
    assert setup("relay", "add-domain", "example.com", "smtp.relay.test", "587").returncode == 0
    assert setup("relay", "add-domain", "example.org", "[192.0.2.1]").returncode == 0
    assert setup("relay", "exclude-domain", "example.net").returncode == 0
    password = "p@ss word:with colons \u00e9"
    assert setup("relay", "add-auth", "example.com", "relay-user@example.com", password).returncode == 0
    cfg = configdir.read(setup.config)
    assert not cfg.problems
    assert cfg.relaymap == [("@example.com", "[smtp.relay.test]:587"), ("@example.org", "[192.0.2.1]:25"),
                            ("@example.net", "")]
    assert cfg.relay_auth == [("@example.com", f"relay-user@example.com:{password}")]


# --- the mailbox is created with the account ------------------------------------------------------

def _vmail_ids() -> tuple[int, int]:
    # As root: any ids (the settings' ones must be used); otherwise only our own can be given.
    return (4321, 4322) if os.geteuid() == 0 else (os.getuid(), os.getgid())


def test_email_add_creates_the_mailbox_for_the_vmail_user(setup):
    uid, gid = _vmail_ids()
    setup.settings.write_text(f"DMS_VMAIL_UID='{uid}'\nDMS_VMAIL_GID='{gid}'\n")
    r = setup("email", "add", "new@example.com", "pw")
    assert r.returncode == 0, r.stderr
    for d in (setup.mail / "example.com", setup.mail / "example.com" / "new",
              setup.mail / "example.com" / "new" / "home"):
        st = d.lstat()
        assert stat.S_ISDIR(st.st_mode) and (st.st_uid, st.st_gid) == (uid, gid), d
        assert st.st_mode & 0o777 == 0o700, d
    assert list((setup.mail / "example.com" / "new").iterdir()) == [setup.mail / "example.com" / "new" / "home"]
    # An existing mailbox (kept by `email del -n`) is left as it is.
    (setup.mail / "example.com" / "old" / "cur").mkdir(parents=True, mode=0o755)
    assert setup("email", "add", "old@example.com", "pw").returncode == 0
    assert (setup.mail / "example.com" / "old").stat().st_mode & 0o777 == 0o755
    assert (setup.mail / "example.com" / "old" / "home").is_dir()


def test_email_add_leaves_the_mailbox_to_dovecot_when_it_cannot_give_it_away(setup):
    setup.inject("""
        import os
        def chown(*a, **kw):
            raise PermissionError(1, "Operation not permitted")
        os.chown = chown
    """)
    r = setup("email", "add", "new@example.com", "pw")
    assert r.returncode == 0, r.stderr
    assert "could not be created for the vmail user" in r.stderr
    assert list(setup.mail.iterdir()) == []                          # no root-owned folder left behind
    assert [a.address for a in configdir.read(setup.config).accounts] == ["new@example.com"]


# --- alias del of what is already gone ------------------------------------------------------------

@pytest.mark.parametrize("args,warning", [
    (["nothere@example.com", "user@example.com"], "Alias 'nothere@example.com' does not exist"),
    (["alias@example.com", "other@example.com"], "'other@example.com' is not a recipient of the alias"),
])
def test_alias_del_of_what_is_not_there_exits_0(setup, args, warning):
    setup.seed()
    before = setup.snapshot(lock=False)
    r = setup("alias", "del", *args)
    assert r.returncode == 0 and warning in r.stderr, r.stderr
    assert setup.snapshot(lock=False) == before


# --- concurrency and the lock ---------------------------------------------------------------------

def test_twenty_concurrent_adds_all_land(setup):
    setup.seed()
    addresses = [f"user{i:02d}@concurrent.test" for i in range(20)]
    procs = [setup.popen("email", "add", a, f"pw{a}") for a in addresses]
    results = [(p.wait(timeout=120), p.stderr.read()) for p in procs]
    for p in procs:
        p.stdout.close(), p.stderr.close(), p.stdin.close()
    assert all(rc == 0 for rc, _ in results), results
    cfg = configdir.read(setup.config)
    assert not cfg.problems
    assert set(addresses) <= {a.address for a in cfg.accounts}
    assert len(cfg.accounts) == 22


def test_concurrent_alias_adds_to_one_alias(setup):
    recipients = [f"r{i}@example.org" for i in range(10)]
    with ThreadPoolExecutor(10) as pool:
        results = list(pool.map(lambda r: setup("alias", "add", "list@example.com", r), recipients))
    assert all(r.returncode == 0 for r in results)
    (alias, targets), = configdir.read(setup.config).aliases
    assert alias == "list@example.com" and sorted(targets) == sorted(recipients)


def test_killed_lock_holder_does_not_block_the_next_call(setup):
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(REPO)!r})
        from mailwright import configwrite as cw
        with cw.locked({str(setup.config)!r}):
            print("held", flush=True)
            time.sleep(600)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        waiting = setup.popen("email", "add", "waiter@example.com", "pw")
        time.sleep(0.5)
        assert waiting.poll() is None                      # blocked by the live holder
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
        assert waiting.wait(timeout=10) == 0
        out = waiting.stderr.read()
        assert "locked by" in out                          # the user was told why it paused
        waiting.stdout.close(), waiting.stderr.close(), waiting.stdin.close()
        assert "waiter@example.com|" in setup.read("postfix-accounts.cf")
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
        holder.stdout.close()
