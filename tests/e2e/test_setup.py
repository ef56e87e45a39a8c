"""`setup` end to end: the operator's `setup.sh` drives the running server, real clients check the effect.

Image target: `setup.sh -c <container>` (docker exec). VPS target: `setup.sh
--inventory <inventory.py> --ssh 127.0.0.1` (ssh, host data from the pyinfra
inventory the deploy used). Every change must be in effect within 5 s
(DMS_CONFIG_POLL is 2 s) without a restart. Tests run in file order on one
target: they share the account they create.
"""

from __future__ import annotations

import imaplib
import os
import re
import smtplib
import ssl
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from harness import clients as c
from harness import dockercli as d
from harness import scenario as sc

pytestmark = [pytest.mark.docker, pytest.mark.parametrize("target", ["image", "vps"], indirect=True)]

REPO = Path(__file__).resolve().parents[2]
NEW = f"setup-new@{sc.DOMAIN}"
ALIAS = f"setup-alias@{sc.DOMAIN}"
# Per target: the same tests run against several targets, one after the other.
PASSWORDS: dict[str, str] = {}
LIMIT = 5.0            # seconds from `setup` to the change being in effect


def setup(target, *args: str, input: str = "", check: bool = True) -> subprocess.CompletedProcess:
    """Run `setup.sh … <args>` on the operator's side, as an administrator would."""
    if target.kind == "image":
        how = ["-c", target.container.name]
    else:
        how = ["--inventory", str(target.inventory()), "--ssh", "127.0.0.1"]
    env = {**os.environ, "DOCKER": d.DOCKER}
    r = subprocess.run([str(REPO / "setup.sh"), *how, *args], input=input, capture_output=True, text=True,
                       env=env, timeout=120)
    if check and r.returncode != 0:
        raise AssertionError(f"setup {' '.join(args)} exited {r.returncode}\n{r.stdout}\n{r.stderr}\n"
                             f"{target.diagnostics()}")
    return r


LAST_ERROR: list[str] = [""]


def can_login(target, user: str, password: str) -> bool:
    """True when IMAPS accepts the login; False when it refuses it or cannot be
    reached (a reload may briefly reset connections), the reason kept for the report."""
    try:
        with c.IMAPS(context=target.tls.client_context(), timeout=5) as imap:
            imap.login(user, password)
            return True
    except (imaplib.IMAP4.error, OSError, ssl.SSLError) as e:
        LAST_ERROR[0] = f"{type(e).__name__}: {e}"
        return False


def within(limit: float, condition, what: str, target) -> float:
    t0 = time.monotonic()
    while not condition():
        if time.monotonic() - t0 > limit:
            raise AssertionError(f"{what}: not within {limit}s (last error: {LAST_ERROR[0] or 'none'})\n"
                                 f"{target.diagnostics()}")
        time.sleep(0.2)
    return time.monotonic() - t0


def send(target, rcpt: str, subject: str, size: int | None = None) -> dict:
    return c.send(sc.SENDER, rcpt, subject, context=target.tls.client_context(), size=size)


def config_digest(target) -> str:
    r = target.exec("sh", "-c", f"cd {target.config_dir} && find . -type f ! -name '*.lock' | sort | xargs -r sha256sum")
    return r.stdout


def test_email_add_then_imap_login_within_5s(target):
    PASSWORDS[target.kind] = "first-Secret!"
    setup(target, "email", "add", NEW, input=f"{PASSWORDS[target.kind]}\n{PASSWORDS[target.kind]}\n")  # prompted twice
    within(LIMIT, lambda: can_login(target, NEW, PASSWORDS[target.kind]), f"IMAP login of {NEW}", target)


def test_email_add_creates_the_mailbox_at_once_for_the_vmail_user(target):
    fresh = f"setup-fresh@{sc.DOMAIN}"
    maildir = f"/var/mail/{sc.DOMAIN}/setup-fresh"
    setup(target, "email", "add", fresh, "fresh-Secret!")
    # At once: before any delivery or login could have made Dovecot create it.
    vmail = target.exec("stat", "-c", "%u:%g", "/var/mail").stdout.strip()
    for path in (maildir, f"{maildir}/home"):
        st = target.exec("stat", "-c", "%F %u:%g %U %a", path, check=False)
        assert st.returncode == 0, f"{path} missing after 'email add': {st.stderr}"
        kind_, ids, user, mode = st.stdout.strip().rsplit(" ", 3)
        assert (kind_, ids, user, mode[-3:]) == ("directory", vmail, "docker", "700"), st.stdout
    # Dovecot takes the folder as its own: login and delivery work.
    within(LIMIT, lambda: can_login(target, fresh, "fresh-Secret!"), f"IMAP login of {fresh}", target)
    tok = c.token("setup-fresh")
    send(target, fresh, tok)
    c.wait_for_message(fresh, "fresh-Secret!", tok, context=target.tls.client_context())
    setup(target, "email", "del", "-y", fresh)
    assert target.exec("test", "-e", maildir, check=False).returncode != 0


def test_email_update_then_only_the_new_password_works(target):
    old, PASSWORDS[target.kind] = PASSWORDS[target.kind], "second-Secret!"
    setup(target, "email", "update", NEW, PASSWORDS[target.kind])
    within(LIMIT, lambda: can_login(target, NEW, PASSWORDS[target.kind]), "login with the new password", target)
    assert not can_login(target, NEW, old)


def test_alias_add_then_mail_to_the_alias_arrives(target):
    setup(target, "alias", "add", ALIAS, NEW)
    tok = c.token("setup-alias")

    def accepted() -> bool:
        try:
            return send(target, ALIAS, f"{tok} via alias") == {}
        except smtplib.SMTPRecipientsRefused:
            return False
    within(LIMIT, accepted, f"mail to the new alias {ALIAS} accepted", target)
    c.wait_for_message(NEW, PASSWORDS[target.kind], tok, context=target.tls.client_context())


def test_email_list_shows_usage_and_aliases(target):
    r = setup(target, "email", "list")
    block = re.search(rf"^\* {re.escape(NEW)} \( (\S+) / (\S+) \) \[(\d+)%\]\n    \[ aliases -> (.*) \]$",
                      r.stdout, re.M)
    assert block, r.stdout
    used, limit, _percent, aliases = block.groups()
    assert used != "0" and limit == "~" and ALIAS in aliases.split(", ")
    assert re.search(rf"^\* {re.escape(sc.QUOTA_USER)} \( \S+ / 1\.0M \) \[\d+%\]$", r.stdout, re.M), r.stdout


def test_quota_set_then_over_quota_delivery_is_refused(target):
    setup(target, "quota", "set", NEW, "20k")

    def refused() -> bool:
        try:
            send(target, NEW, c.token("setup-quota"), size=60_000)
        except smtplib.SMTPRecipientsRefused as e:
            return e.recipients[NEW][0] == 552
        except smtplib.SMTPDataError as e:
            return e.smtp_code == 552
        return False
    within(LIMIT, refused, "552 for a message over the new quota", target)
    assert re.search(rf"^\* {re.escape(NEW)} \( \S+ / 20K \)", setup(target, "email", "list").stdout, re.M)
    setup(target, "quota", "del", NEW)


def test_bad_input_is_refused_and_changes_nothing(target):
    before = config_digest(target)
    for args in (["email", "add", "not-an-address", "pw"], ["quota", "set", NEW, "26GIGOTS"],
                 ["alias", "add", NEW, sc.USER1], ["relay", "add-domain", sc.DOMAIN, "relay.test", "abc"],
                 ["email", "update", f"nobody@{sc.DOMAIN}", "pw"], ["alias", "add", ALIAS, NEW]):
        r = setup(target, *args, check=False)
        assert r.returncode == 1, (args, r.stdout, r.stderr)
        assert "ERROR" in r.stderr, (args, r.stderr)
    assert setup(target, "no-such-command", check=False).returncode == 2
    assert config_digest(target) == before


def test_alias_del_of_what_is_already_gone_exits_0(target):
    before = config_digest(target)
    r = setup(target, "alias", "del", f"never-there@{sc.DOMAIN}", NEW, check=False)
    assert r.returncode == 0 and f"Alias 'never-there@{sc.DOMAIN}' does not exist" in r.stderr, r.stderr
    r = setup(target, "alias", "del", ALIAS, sc.USER1, check=False)
    assert r.returncode == 0 and f"'{sc.USER1}' is not a recipient of the alias" in r.stderr, r.stderr
    assert config_digest(target) == before


def test_hostile_addresses_and_values_are_refused(target):
    before = config_digest(target)
    for args in (["email", "add", f"..@{sc.DOMAIN}", "pw"], ["email", "add", f"evil|x@{sc.DOMAIN}", "pw"],
                 ["relay", "add-auth", sc.DOMAIN, "user", "good\x0c@victim.test attacker:pw"],
                 ["dovecot-master", "add", "admin\n", "pw"], ["email", "del", "-y", f"../..@{sc.DOMAIN}"]):
        r = setup(target, *args, check=False)
        assert r.returncode == 1 and "ERROR" in r.stderr, (args, r.stdout, r.stderr)
    assert config_digest(target) == before
    assert target.exec("test", "-d", f"/var/mail/{sc.DOMAIN}", check=False).returncode == 0


def test_concurrent_adds_all_land(target):
    users = [f"conc{i:02d}@{sc.DOMAIN}" for i in range(20)]
    # sshd drops unauthenticated connections beyond MaxStartups (10): over SSH,
    # 8 at a time still races every write against the others.
    with ThreadPoolExecutor(20 if target.kind == "image" else 8) as pool:
        results = list(pool.map(lambda u: setup(target, "email", "add", u, "conc-Secret!", check=False), users))
    assert all(r.returncode == 0 for r in results), [r.stderr for r in results if r.returncode]
    accounts = target.exec("cat", f"{target.config_dir}/postfix-accounts.cf").stdout
    assert all(f"\n{u}|" in accounts for u in users)
    within(LIMIT, lambda: can_login(target, users[-1], "conc-Secret!"), "login of a concurrently added account",
           target)
    setup(target, "email", "del", "-y", *users)


def test_email_del_y_removes_the_mailbox_and_the_login(target):
    maildir = f"/var/mail/{sc.DOMAIN}/{NEW.split('@')[0]}"
    assert target.exec("test", "-d", maildir, check=False).returncode == 0
    setup(target, "email", "del", "-y", NEW)
    assert target.exec("test", "-e", maildir, check=False).returncode != 0
    within(LIMIT, lambda: not can_login(target, NEW, PASSWORDS[target.kind]), "deleted account refused", target)
    assert ALIAS not in target.exec("cat", f"{target.config_dir}/postfix-virtual.cf").stdout
