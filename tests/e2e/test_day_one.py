"""Day one with the image and on a VPS: docker-mailserver's documented first steps, the queue
tools, and mail folders brought from elsewhere (issues 7 and 13).

- `setup` in a one-off container writes the mounted config folder (`setup.sh -p`, and
  `docker run --rm -v CONFIG:/tmp/docker-mailserver IMAGE setup …` with no --entrypoint);
- `mailq`, `postqueue`, `postsuper` work (the queue has all its directories);
- a root-owned Maildir (a fresh bind mount, a copy from another host) is given to the vmail
  user at start, so mail is delivered into it, its sieve script included.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from harness import clients as c
from harness import dockercli as d
from harness import scenario as sc
from harness.configdir import MailConfig
from harness.mailserver import MailContainer, Volumes

pytestmark = pytest.mark.docker

REPO = Path(__file__).resolve().parents[2]
DMS_CONFIG = "/tmp/docker-mailserver"


def one_off(image: str, config: Path, *command: str) -> subprocess.CompletedProcess:
    """docker-mailserver's documented first step, verbatim: no entrypoint override, no network."""
    return d.docker("run", "--rm", "--network", "none", "-v", f"{config}:{DMS_CONFIG}", image, *command,
                    check=False, timeout=120)


def accounts(config: Path) -> list[str]:
    f = config / "postfix-accounts.cf"
    return [line.split("|")[0] for line in f.read_text().splitlines() if "|" in line] if f.exists() else []


# --- `setup` in a one-off container (7.0, 13.3) ---------------------------------------------------

def test_setup_sh_one_off_container_writes_the_given_folder(image, tmp_path):
    """`./setup.sh -p CONFIG email add …` with no running container (-p makes it a one-off run)."""
    config = tmp_path / "config"
    config.mkdir()
    r = subprocess.run([str(REPO / "setup.sh"), "-i", image, "-p", str(config), "email", "add",
                        "first@example.test", "first-Secret!"], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "DOCKER": d.DOCKER})
    assert r.returncode == 0, f"{r.stdout}\n{r.stderr}"
    assert accounts(config) == ["first@example.test"], f"nothing written to {config}:\n{r.stdout}\n{r.stderr}"


def test_docker_run_image_setup_runs_setup_not_the_server(image, tmp_path):
    config = tmp_path / "config"
    config.mkdir()
    r = one_off(image, config, "setup", "email", "add", "a@example.test", "pw")
    assert r.returncode == 0, f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    assert accounts(config) == ["a@example.test"], f"{r.stdout}\n{r.stderr}"
    assert "OVERRIDE_HOSTNAME" not in r.stdout + r.stderr

    r = one_off(image, config, "setup", "help")
    assert r.returncode == 0, f"{r.stdout}\n{r.stderr}"
    assert "email add" in r.stdout

    # A failing command's status comes back, and nothing was written.
    before = (config / "postfix-accounts.cf").read_bytes()
    r = one_off(image, config, "setup", "email", "add", "not-an-address", "pw")
    assert r.returncode == 1, f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    r = one_off(image, config, "setup", "no-such-command")
    assert r.returncode == 2, f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    assert (config / "postfix-accounts.cf").read_bytes() == before


def test_docker_run_image_runs_any_command(image, tmp_path):
    """As docker-mailserver's `dumb-init --` + CMD: `bash`, `sh -c …` run instead of the server."""
    r = one_off(image, tmp_path, "sh", "-c", f"ls -d {DMS_CONFIG} && exit 7")
    assert r.returncode == 7 and DMS_CONFIG in r.stdout, f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    assert "up and running" not in r.stdout + r.stderr


# --- mail folders from elsewhere (13.5) ---------------------------------------------------------

MIGRATED_SIEVE = 'require "fileinto";\nfileinto "Migrated";\n'


def migrated_maildir(mail_root: Path, address: str) -> Path:
    """A user's Maildir as copied from another host by root: everything root's, with a sieve script."""
    local, domain = address.split("@")
    user = mail_root / domain / local
    for sub in ("cur", "new", "tmp", ".Migrated/cur", ".Migrated/new", ".Migrated/tmp", "home/sieve"):
        (user / sub).mkdir(parents=True, exist_ok=True)
    (user / "subscriptions").write_text("Migrated\n")
    (user / "home/sieve/migrated.sieve").write_text(MIGRATED_SIEVE)
    (user / "home/.dovecot.sieve").symlink_to("sieve/migrated.sieve")
    (user / "cur/1700000000.M1P1.old:2,S").write_text(f"Subject: old mail\nTo: {address}\n\nfrom the old host\n")
    for p in [mail_root, *mail_root.rglob("*")]:
        os.lchown(p, 0, 0)
    return user


def test_image_root_owned_maildir_is_given_to_vmail_and_delivers(image, tls, tmp_path):
    cfg = MailConfig(tmp_path / "config")
    cfg.account(sc.USER1, "user1-Secret!")
    cfg.write()
    tls.write(cfg.path / "ssl")
    volumes = Volumes.under(tmp_path, cfg.path)
    user = migrated_maildir(volumes.mail, sc.USER1)
    # A symlink out of the mail store (to root's files in the container) must not be followed by the fix.
    (user / "link-out").symlink_to("/etc/postfix")
    os.lchown(user / "link-out", 0, 0)
    box = MailContainer(image, volumes)
    try:
        box.start()
        log = box.logs()
        assert re.search(r"gave \d+ entries of /var/mail to docker .*example\.test", log), log
        subject = c.token("migrated")
        c.send(sc.SENDER, sc.USER1, subject)
        c.wait_for_message(sc.USER1, "user1-Secret!", subject, context=tls.client_context(),
                           mailbox="Migrated", timeout=30)
        st = (user / "home/sieve/migrated.sieve").stat()
        assert (st.st_uid, st.st_gid) == (5000, 5000)
        assert box.exec("stat", "-c", "%U", "/etc/postfix", "/etc/postfix/main.cf").stdout.split() \
            == ["root", "root"]
    finally:
        box.remove()


# --- the Postfix queue tools (13.1) -------------------------------------------------------------

def queue_ids(text: str) -> list[str]:
    """Queue ids of `mailq` lines (`ABCDEF123*` active, `…!` held)."""
    return re.findall(r"^([0-9A-F]{6,})[*!]?\s", text, re.M)


def wait_queue(target, ok, what: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while True:
        r = target.exec("mailq", check=False)
        if r.returncode == 0 and ok(r.stdout):
            return r.stdout
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: mailq exit {r.returncode}\n{r.stdout}{r.stderr}\n{target.diagnostics()}")
        time.sleep(0.5)


def queue_one(target) -> None:
    """One message to USER1 that stays queued (its transport is deferred)."""
    subject = c.token("queued")
    target.exec("sendmail", "-f", sc.SENDER, sc.USER1,
                input=f"From: {sc.SENDER}\nTo: {sc.USER1}\nSubject: {subject}\n\nbody\n".encode())
    wait_queue(target, lambda listing: sc.USER1 in listing and len(queue_ids(listing)) == 1, "a queued message")


@pytest.mark.parametrize("target", ["image", "vps"], indirect=True)
def test_mailq_and_queue_tools(target):
    r = target.exec("mailq", check=False)
    assert r.returncode == 0 and "Mail queue is empty" in r.stdout, \
        f"mailq exit {r.returncode}\n{r.stdout}\n{r.stderr}\n{target.diagnostics()}"

    # A message that stays in the queue: its transport is deferred for the test's duration.
    # -X removes the parameter again, leaving main.cf as the deploy wrote it.
    reload = ["postfix", "reload"]
    target.exec("postconf", "-e", "defer_transports = lmtp")
    target.exec(*reload)
    try:
        queue_one(target)
        assert target.exec("postsuper", "-h", "ALL", check=False).returncode == 0
        held = target.exec("mailq").stdout
        assert re.search(r"^[0-9A-F]{6,}!", held, re.M), f"not held: {held}"
        assert target.exec("postsuper", "-H", "ALL", check=False).returncode == 0    # back to deferred
        r = target.exec("postqueue", "-p", check=False)
        assert r.returncode == 0 and sc.USER1 in r.stdout and "!" not in r.stdout, f"postqueue -p: {r.stdout}{r.stderr}"
        r = target.exec("postsuper", "-d", "ALL", "deferred", check=False)
        assert r.returncode == 0, f"postsuper -d: {r.stdout}{r.stderr}"
        assert "Mail queue is empty" in target.exec("mailq").stdout

        # `postqueue -f` delivers what defer_transports holds back.
        queue_one(target)
        r = target.exec("postqueue", "-f", check=False)
        assert r.returncode == 0, f"postqueue -f: {r.stdout}{r.stderr}"
        wait_queue(target, lambda listing: "Mail queue is empty" in listing, "the flushed message delivered")
    finally:
        target.exec("postconf", "-X", "defer_transports", check=False)
        target.exec(*reload, check=False)


@pytest.mark.parametrize("target", ["vps"], indirect=True)
def test_vps_root_owned_maildir_is_given_to_vmail_by_the_deploy(target, tls):
    """On a VPS the deploy does the container start's repair (the mail copied in as root)."""
    local, domain = sc.USER2.split("@")
    home = f"/var/mail/{domain}/{local}"
    script = (f"rm -rf {home} && mkdir -p {home}/cur {home}/new {home}/tmp {home}/home/sieve "
              f"{home}/.Migrated/cur {home}/.Migrated/new {home}/.Migrated/tmp "
              f"&& printf '%s' '{MIGRATED_SIEVE}' > {home}/home/sieve/migrated.sieve "
              f"&& ln -s sieve/migrated.sieve {home}/home/.dovecot.sieve && chown -R -h root:root {home}")
    target.exec("sh", "-c", script)
    run = target.deploy()
    assert "Postfix queue and mail store owners" in run.output, run.output
    owner = target.exec("stat", "-c", "%U", f"{home}/home/sieve/migrated.sieve").stdout.strip()
    assert owner == "docker", f"{owner}\n{target.diagnostics()}"
    journal = target.exec("journalctl", "--no-pager", "-o", "cat", "-t", "mailwright-prepare", check=False).stdout
    assert re.search(rf"gave \d+ entries of /var/mail to docker .*{re.escape(domain)}", journal), journal
    target.wait_serving()
    subject = c.token("migrated")
    c.send(sc.SENDER, sc.USER2, subject)
    c.wait_for_message(sc.USER2, target.scenario.password(sc.USER2), subject, context=tls.client_context(),
                       mailbox="Migrated", timeout=30)
