"""The `setup` CLI (`python3 -m mailwright.cli`) against a config folder in tmp_path.

Every command runs as its own process, as `docker exec … setup` runs it. Bad
input must leave every file byte-identical (and create none); good input must
produce docker-mailserver's formats, which `ops.configdir` then reads cleanly.
"""

from __future__ import annotations

import os
import shutil
import signal
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

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MAILWRIGHT_") and k != "LOG_LEVEL"}
        env.update(MAILWRIGHT_CONFIG_DIR=str(self.config), MAILWRIGHT_MAIL_ROOT=str(self.mail),
                   MAILWRIGHT_DMS_SETTINGS=str(self.settings), MAILWRIGHT_LOG_DIR=str(self.logs),
                   PYTHONPATH=str(REPO))
        return env

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
    assert setup("dovecot-master", "add", "admin", "pw1").returncode == 1
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


# --- fail2ban and debug ---------------------------------------------------------------------------

@pytest.mark.skipif(bool(shutil.which("fail2ban-client")), reason="fail2ban is installed here")
@pytest.mark.parametrize("args", [[], ["status"], ["ban", "192.0.2.1"], ["unban", "192.0.2.1"]])
def test_fail2ban_is_not_installed(setup, args):
    r = setup("fail2ban", *args)
    assert r.returncode == 1 and "Fail2ban is not installed" in r.stderr


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
    (["alias", "del", "alias@example.com", "other@example.com"], "'other@example.com' is not a recipient"),
    (["alias", "del", "nothere@example.com", "user@example.com"], "'nothere@example.com' does not exist"),
    (["dovecot-master", "add", "bad name", "pw"], "'bad name'"),
    (["dovecot-master", "update", "nobody", "pw"], "'nobody' does not exist"),
    (["dovecot-master", "del", "nobody"], "'nobody' does not exist"),
    (["relay", "add-domain", "example.com", "smtp.relay.test", "abc"], "Relay port 'abc' is not a number"),
    (["relay", "add-domain", "example.com", "smtp.relay.test", "70000"], "Relay port '70000'"),
    (["relay", "add-domain", "example.com", "smtp relay", "25"], "Relay host 'smtp relay'"),
    (["relay", "add-domain", "not_a_domain", "smtp.relay.test"], "'not_a_domain' is not a valid domain"),
    (["relay", "add-auth", "example.com", "user:name", "pw"], "'user:name'"),
    (["relay", "exclude-domain", "-bad-.com"], "'-bad-.com' is not a valid domain"),
    (["config", "dkim", "keysize", "123"], "Keysize '123'"),
    (["config", "dkim", "selector", "bad selector"], "Selector 'bad selector'"),
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
