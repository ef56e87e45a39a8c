"""Postgrey (issue 9), fetching, SRS with the policyd-spf wiring, and OpenDKIM signing (issue 10)
on the VPS target: one systemd+sshd container deployed by pyinfra over SSH with all of them on,
one deploy for the module (a deploy costs a minute or two). The image's modules are
test_postgrey.py, test_fetching.py, test_srs.py and test_dkim.py; these are their main cases
under systemd (Debian's units and mailwright's own), with the VPS's own twists: the config folder
is /etc/mailwright/config on the host, there is no state volume, a restart is a reboot.

Postgrey greylists port 25 from every client here (all come from 127.0.0.1), so the config
folder's `whitelist_recipients` lets the other features' addresses through from the start
(the Postgrey tests use addresses not in it). No DNS is needed: the SRS forward target is a sink
in this process (transport_maps), and DKIM signatures are checked against the `.txt` record
`setup config dkim` writes. Every wait is a bounded poll for an observable result.
"""

from __future__ import annotations

import re
import time

import pytest

from harness import SERVER_NAME
from harness import clients as c
from harness.targets import VpsTarget
from test_dkim import dkim_verify, public_key_from_txt
from test_fetching import CA as IMAGE_CA
from test_fetching import FETCHMAIL_CF, GETMAIL_CF, PW as FETCH_PW
from test_srs import SRS_OF_ALICE, Sink

pytestmark = pytest.mark.docker

CONFIG = "/etc/mailwright/config"          # the config folder on a VPS (harness.targets.DEFAULT_CONFIG_DIRS)
# The test CA for fetchmail and getmail: outside the config folder, which is root's alone (0700) on a
# VPS: fetchmail runs as its own user and could not read a file there.
CA = "/etc/ssl/mwtest-ca.pem"
PW = "Vps-Secret-1!"
USER, OTHER = "user1@example.test", "user2@example.test"
ALICE = "alice@other.test"                 # the "foreign" sender of SRS: a second local domain
FORWARD, FAR = "fwd@example.test", "bob@far.test"
SENDER = "sender@example.test"
FM_IMAP = ("remote-imap@example.test", "fm-imap@example.test")
FM_POP = ("remote-pop@example.test", "fm-pop@example.test")
GM_IMAP = ("remote-gm@example.test", "gm@example.test")
FETCH_PAIRS = (FM_IMAP, FM_POP, GM_IMAP)
DELAY = 5
TEXT = "Delayed by Postgrey, it's mwtest"
ENV = {"ENABLE_POSTGREY": "1", "POSTGREY_DELAY": str(DELAY), "POSTGREY_TEXT": TEXT,
       "ENABLE_SRS": "1", "ENABLE_POLICYD_SPF": "1", "ENABLE_OPENDKIM": "1",
       "ENABLE_FETCHMAIL": "1", "FETCHMAIL_POLL": "5", "ENABLE_GETMAIL": "1", "GETMAIL_POLL": "1",
       "ENABLE_POP3": "1"}
# Everything but the Postgrey tests' own recipients (USER, OTHER) passes Postgrey at once.
WHITELISTED = [FORWARD, SENDER, *(a for pair in FETCH_PAIRS for a in pair), "/^srs0=/"]


def whitelist_recipients(*extra: str) -> str:
    return "".join(f"{a}\n" for a in (*WHITELISTED, *extra))


@pytest.fixture(scope="module")
def sink():
    s = Sink()
    yield s
    s.close()


UNITS = ("postgrey", "postsrsd", "opendkim", "mailwright-fetchmail", "mailwright-getmail")


class FeaturesVps(VpsTarget):
    def diagnostics(self, tail: int = 60) -> str:
        argv = ["journalctl", "--no-pager", "-n", str(3 * tail)]
        for unit in UNITS:
            argv += ["-u", f"{unit}.service"]
        j = self.exec(*argv, check=False)
        status = self.exec("systemctl", "status", "--no-pager", "-l", *(f"{u}.service" for u in UNITS), check=False)
        return (super().diagnostics(tail) + f"--- journalctl ({', '.join(UNITS)}):\n{j.stdout}{j.stderr}\n"
                f"--- systemctl status:\n{status.stdout[-6000:]}\n")


# `target`: the name tests/e2e/conftest.py's failure hook looks for to attach diagnostics.
@pytest.fixture(scope="module")
def target(request, tmp_path_factory, tls, sink):
    from harness.configdir import MailConfig
    from harness.scenario import Scenario
    from harness.tlsutil import TestTLS
    from harness.vps import Vps
    request.getfixturevalue("deploy_py")
    root = tmp_path_factory.mktemp("vps-features")
    cfg = MailConfig(root / "config")
    for address in (USER, OTHER, ALICE, SENDER, *(local for _, local in FETCH_PAIRS)):
        cfg.account(address, PW)
    for remote, _ in FETCH_PAIRS:           # the remote accounts' password is the one fetchmail.cf/getmail carry
        cfg.account(remote, FETCH_PW)
    cfg.alias(FORWARD, FAR)
    cfg.file("postfix-main.cf", f"transport_maps = inline:{{ far.test=smtp:[127.0.0.1]:{sink.port} }}\n")
    cfg.file("fetchmail.cf", FETCHMAIL_CF.replace(IMAGE_CA, CA))
    cfg.file("whitelist_recipients", whitelist_recipients())
    cfg.write()
    (cfg.path / "getmail").mkdir()
    (cfg.path / "getmail" / "remote.cf").write_text(GETMAIL_CF.replace(IMAGE_CA, CA))
    # fetchmail wants the server name in the subject's CommonName (see test_fetching.py).
    leaf = tls.ca.issue_cert(SERVER_NAME, common_name=SERVER_NAME)
    tls.write(cfg.path / "ssl", leaf)
    scenario = Scenario(config=cfg, malformed_line=0, cert_serial=TestTLS.serial(leaf))
    machine = Vps(image=request.getfixturevalue("vps_image"), workdir=root / "vps")
    t = FeaturesVps(scenario=scenario, tls=tls, workdir=root, vps=machine, settings=dict(ENV))
    try:
        machine.start()
        machine.exec("sh", "-c", f"cat > {CA} && chmod 644 {CA}", input=tls.ca_pem())
        t.start()
        c.wait_for_ports([995, 10001, 10023])
        yield t
    finally:
        t.teardown()


@pytest.fixture(scope="module")
def vps(target):
    return target


def ctx(vps):
    return vps.tls.client_context()


def journal(vps) -> str:
    return vps.exec("journalctl", "--no-pager", "-o", "cat", check=False).stdout


def unit_state(vps, unit: str) -> str:
    return vps.exec("systemctl", "is-active", unit, check=False).stdout.strip()


def main_pid(vps, unit: str) -> str:
    return vps.exec("systemctl", "show", "-p", "MainPID", "--value", unit).stdout.strip()


# --- Postgrey -------------------------------------------------------------------------------------------

def fresh_sender() -> str:
    return f"s{c.token('x')[-10:].lower()}@example.test"


def rcpt_reply(rcpt: str, sender: str, source: str | None = None) -> tuple[int, str]:
    with c.SMTP(25, source=source) as smtp:
        smtp.ehlo("client.example.test")
        code, text = smtp.mail(sender)
        assert code == 250, (code, text)
        code, text = smtp.rcpt(rcpt)
        smtp.rset()
        return code, text.decode(errors="replace")


def test_postgrey_greylists_the_first_attempt_and_delivers_the_retry(vps):
    assert unit_state(vps, "postgrey.service") == "active"
    sender, tok = fresh_sender(), c.token("vps-grey")
    code, text = rcpt_reply(USER, sender)
    first = time.monotonic()
    assert code == 450 and TEXT in text, (code, text, vps.diagnostics())
    time.sleep(max(0.0, first + DELAY + 1 - time.monotonic()))      # the retry, once the delay has passed
    with c.SMTP(25) as smtp:
        smtp.ehlo("client.example.test")
        assert smtp.send_message(c.make_message(sender, USER, tok), from_addr=sender, to_addrs=[USER]) == {}
    body = c.wait_for_message(USER, PW, tok, context=ctx(vps), timeout=60)
    assert b"X-Greylist: delayed" in body


def test_postgrey_whitelists_from_the_config_folder_apply_live(vps):
    vps.replace_file(f"{CONFIG}/whitelist_recipients", whitelist_recipients(OTHER).encode(), mode="0644")
    vps.replace_file(f"{CONFIG}/whitelist_clients.local", f"{c.ALT_SOURCE}\n".encode(), mode="0644")
    c.poll(lambda: rcpt_reply(OTHER, fresh_sender())[0] == 250,
           "a new triplet to a whitelisted recipient accepted at once", vps.diagnostics)
    c.poll(lambda: rcpt_reply(USER, fresh_sender(), source=c.ALT_SOURCE)[0] == 250,
           "a new triplet from a whitelisted client accepted at once", vps.diagnostics)
    code, text = rcpt_reply(USER, fresh_sender())
    assert code == 450 and TEXT in text, (code, text)


# --- fetchmail and getmail ------------------------------------------------------------------------------

def count(user: str, token: str, vps) -> int:
    with c.IMAPS(context=ctx(vps)) as imap:
        imap.login(user, FETCH_PW if user in {remote for remote, _ in FETCH_PAIRS} else PW)
        imap.select("INBOX", readonly=True)
        typ, data = imap.search(None, "SUBJECT", f'"{token}"')
        assert typ == "OK", typ
        return len(data[0].split()) if data and data[0] else 0


def send_to_remotes(token: str) -> None:
    for remote, _ in FETCH_PAIRS:
        assert c.send(SENDER, remote, f"{token} for {remote}") == {}


def wait_fetched(vps, token: str) -> None:
    for remote, local in FETCH_PAIRS:
        def fetched(remote=remote, local=local):
            try:
                return count(local, f"{token} for {remote}", vps) >= 1
            except OSError as e:
                return repr(e)
        c.poll(fetched, f"{token} fetched from {remote} into {local}", vps.diagnostics, timeout=150)


def test_fetchmail_and_getmail_deliver_and_fetch_nothing_twice_across_a_restart(vps):
    for unit in ("mailwright-fetchmail.service", "mailwright-getmail.service"):
        assert unit_state(vps, unit) == "active", (unit, vps.diagnostics())
    first = c.token("vps-fetch1")
    send_to_remotes(first)
    wait_fetched(vps, first)
    assert vps.exec("stat", "-c", "%U %a", "/etc/fetchmailrc").stdout.split() == ["fetchmail", "600"]
    vps.exec("systemctl", "restart", "mailwright-fetchmail.service", "mailwright-getmail.service")
    second = c.token("vps-fetch2")
    send_to_remotes(second)
    # The remote accounts keep `first`: a fetcher that forgot it fetches it again with `second`.
    wait_fetched(vps, second)
    for remote, local in FETCH_PAIRS:
        assert count(local, first, vps) == 1, f"{local}: {first} fetched again from {remote}"
        assert count(local, second, vps) == 1, local
        assert count(remote, first, vps) == 1, f"{remote}: `keep` leaves the mail on the remote side"


# --- SRS and policyd-spf --------------------------------------------------------------------------------

STATE = {}


def forward_map(vps) -> str:
    return vps.exec("postmap", "-q", ALICE, "tcp:127.0.0.1:10001").stdout.strip()


def bounce_to(rcpt: str, tok: str) -> None:
    msg = c.make_message("MAILER-DAEMON@far.test", rcpt, tok, body="Undelivered: a test bounce\n")
    with c.SMTP(25) as smtp:
        smtp.ehlo("sink.far.test")
        assert smtp.send_message(msg, from_addr="", to_addrs=[rcpt]) == {}


def test_forwarded_mail_leaves_with_an_srs_sender_and_its_bounce_comes_back(vps, sink):
    assert unit_state(vps, "postsrsd.service") == "active"
    tok = c.token("vps-srs")
    with c.SMTP(25) as smtp:
        smtp.ehlo("mx.other.test")
        assert smtp.send_message(c.make_message(ALICE, FORWARD, tok), from_addr=ALICE, to_addrs=[FORWARD]) == {}
    sender, rcpts, data = c.poll(lambda: sink.find(tok), "the forwarded message at the next hop", vps.diagnostics)
    assert rcpts == [FAR]
    assert SRS_OF_ALICE.fullmatch(sender), sender
    assert f"From: {ALICE}".encode() in data
    STATE["srs"] = sender
    back = c.token("vps-bounce")
    bounce_to(sender, back)
    body = c.wait_for_message(ALICE, PW, back, context=ctx(vps), timeout=60)
    assert b"Undelivered: a test bounce" in body


def test_policyd_spf_is_wired_on_port_25_only(vps):
    master = vps.exec("postconf", "-M", "policyd-spf/unix").stdout
    assert re.search(r"spawn\s+user=policyd-spf argv=/usr/bin/policyd-spf", master), master
    assert vps.exec("id", "-u", "policyd-spf", check=False).returncode == 0
    port25 = vps.exec("postconf", "-h", "smtpd_recipient_restrictions").stdout
    assert "check_policy_service unix:private/policyd-spf" in port25
    assert "policyd-spf" not in vps.exec("postconf", "-h", "mua_recipient_restrictions").stdout
    assert "postconf: warning" not in vps.exec("postconf", "-n").stderr


def read_secret(vps) -> str:
    return vps.exec("cat", "/etc/postsrsd.secret").stdout


def test_the_srs_secret_is_the_hosts_own_0600_and_never_logged(vps):
    assert vps.exec("stat", "-c", "%F %a %U", "/etc/postsrsd.secret").stdout.split() == \
        ["regular", "file", "600", "root"]
    secret = read_secret(vps).strip()
    assert len(secret) >= 32
    assert secret not in vps.report_text()               # journal, mail.log, every pyinfra run's output


def test_a_missing_srs_secret_is_made_at_start(vps):
    """A host without the package's secret (removed, or a system restored without it): postsrsd's
    start makes one (0600) instead of failing, which would defer every forwarded message."""
    before = forward_map(vps)
    vps.exec("rm", "-f", "/etc/postsrsd.secret")
    vps.exec("systemctl", "restart", "postsrsd.service", check=False)
    c.poll(lambda: unit_state(vps, "postsrsd.service") == "active" and SRS_OF_ALICE.fullmatch(forward_map(vps)),
           "postsrsd running again with a new secret", vps.diagnostics, timeout=30)
    assert vps.exec("stat", "-c", "%F %a %U", "/etc/postsrsd.secret").stdout.split() == \
        ["regular", "file", "600", "root"]
    assert forward_map(vps) != before                    # a new secret signs
    STATE["srs-map"] = forward_map(vps)


# --- OpenDKIM -------------------------------------------------------------------------------------------

def txt_key(vps, selector: str):
    return public_key_from_txt(vps.exec("cat", f"{CONFIG}/opendkim/keys/example.test/{selector}.txt").stdout)


def submit(vps, tok: str) -> None:
    assert c.send(USER, USER, tok, port=587, context=ctx(vps), login=(USER, PW)) == {}


def signed_message(vps, selector: str, what: str, timeout: float = 60) -> bytes:
    deadline = time.monotonic() + timeout
    last = b""
    while time.monotonic() < deadline:
        tok = c.token("vps-dkim")
        submit(vps, tok)
        last = c.wait_for_message(USER, PW, tok, context=ctx(vps), timeout=60)
        if re.search(rb"DKIM-Signature:[^\r\n]*(\r\n[ \t][^\r\n]*)*\bs=" + selector.encode() + rb";", last):
            return last
        time.sleep(1)
    raise AssertionError(f"{what}: no message signed with s={selector} within {timeout}s; last:\n"
                         f"{last[:1500].decode(errors='replace')}\n{vps.diagnostics()}")


def test_dkim_keys_from_setup_sign_submitted_and_local_mail_without_a_restart(vps):
    assert unit_state(vps, "opendkim.service") == "active"
    pid = main_pid(vps, "opendkim.service")
    tok = c.token("vps-unsigned")
    submit(vps, tok)
    assert b"DKIM-Signature:" not in c.wait_for_message(USER, PW, tok, context=ctx(vps), timeout=60)

    done = vps.exec("setup", "config", "dkim", "keysize", "1024", "domain", "example.test", check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    message = signed_message(vps, "mail", "after `setup config dkim`")
    tags = dkim_verify(message, txt_key(vps, "mail"))
    assert (tags["d"], tags["s"]) == ("example.test", "mail")
    with pytest.raises(AssertionError, match="body hash differs"):
        dkim_verify(message.replace(b"hello", b"jello"), txt_key(vps, "mail"))

    local = c.token("vps-local")
    vps.exec("sh", "-c", f"printf 'From: {USER}\\nTo: {USER}\\nSubject: {local}\\n\\nhello\\n' | "
             f"/usr/sbin/sendmail -f {USER} {USER}")
    assert dkim_verify(c.wait_for_message(USER, PW, local, context=ctx(vps), timeout=60),
                       txt_key(vps, "mail"))["d"] == "example.test"
    assert main_pid(vps, "opendkim.service") == pid

    keys = vps.exec("sh", "-c", "stat -c '%a %U %n' /etc/opendkim/keys/*/*").stdout.split("\n")
    assert [k for k in keys if k] == ["600 opendkim /etc/opendkim/keys/example.test/mail.private"], keys


# --- across a redeploy and a reboot ---------------------------------------------------------------------

def test_a_redeploy_and_a_reboot_keep_the_srs_secret_and_fetch_nothing_twice(vps):
    secret = read_secret(vps)
    mapped = forward_map(vps)
    first = c.token("vps-fetch3")
    send_to_remotes(first)
    wait_fetched(vps, first)

    run = vps.deploy()
    assert read_secret(vps) == secret and forward_map(vps) == mapped, run
    vps.restart()                                         # a reboot: systemd brings everything back
    c.wait_for_ports([995, 10001, 10023])
    assert read_secret(vps) == secret and forward_map(vps) == mapped
    # The address handed out by the first SRS test, made with the package's secret, is history
    # (test_a_missing_srs_secret_is_made_at_start made a new one); the current one leads home.
    back = c.token("vps-bounce2")
    bounce_to(mapped, back)
    c.wait_for_message(ALICE, PW, back, context=ctx(vps), timeout=60)

    second = c.token("vps-fetch4")
    send_to_remotes(second)
    wait_fetched(vps, second)
    for remote, local in FETCH_PAIRS:
        assert count(local, first, vps) == 1, f"{local}: {first} fetched again from {remote} after the reboot"
    assert secret.strip() not in vps.report_text()
