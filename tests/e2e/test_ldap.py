"""LDAP accounts against a real OpenLDAP (issue 11): Debian's slapd in its own container.

One directory for the module; the mail server on two targets, one after the other: the image,
then a VPS (systemd, deployed over SSH; the restart and outage cases run on the image only).
The server runs docker-mailserver's README
LDAP example as it is written (ENABLE_LDAP=1, the LDAP_QUERY_FILTER_* and DOVECOT_*_FILTER
values, ENABLE_SASLAUTHD=1 with its SASLAUTHD_LDAP_* values; LDAP_SERVER_HOST and
SASLAUTHD_LDAP_SERVER are the bare `host:port` form that README uses, pointed at this
slapd) plus StartTLS to the directory (LDAP_START_TLS, DOVECOT_TLS, SASLAUTHD_LDAP_START_TLS
with SASLAUTHD_LDAP_TLS_CHECK_PEER) verified against the test CA, and SPOOF_PROTECTION.
That is the image; the VPS runs the same without saslauthd (SMTP AUTH through Dovecot's LDAP
passdb, so both AUTH paths are covered) and asks over plain LDAP on loopback. The directory holds the PostfixBook schema and a seed
written here: accounts with an alias and a group, and a PostfixBookMailForward.

Every wait is a bounded poll for an observable result, never a timed assertion.
"""

from __future__ import annotations

import imaplib
import socket
import smtplib
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness import clients as c
from harness import ldap
from harness import scenario as sc
from harness.configdir import MailConfig
from harness.mailserver import MailContainer, Volumes
from harness.targets import DockerConnectorTarget, VpsTarget
from harness.vps import Vps

pytestmark = pytest.mark.docker

DOMAIN = "example.test"
ALICE, ALICE_PW = f"alice@{DOMAIN}", "alice-Secret!1"
BOB, BOB_PW = f"bob@{DOMAIN}", "bob-Secret!2"
CAROL_PW = "carol-Secret!3"
INFO = f"info@{DOMAIN}"            # alice's mailAlias
TEAM = f"team@{DOMAIN}"            # alice's and bob's mailGroupMember
FWD = f"forward@{DOMAIN}"          # a PostfixBookMailForward to bob

# docker-mailserver's README LDAP example, verbatim but for the server's address.
README_ENV = {
    "ENABLE_LDAP": "1",
    "LDAP_SERVER_HOST": f"127.0.0.1:{ldap.PORT}",
    "LDAP_SEARCH_BASE": ldap.BASE,
    "LDAP_BIND_DN": ldap.ADMIN_DN,
    "LDAP_BIND_PW": ldap.ADMIN_PW,
    "LDAP_QUERY_FILTER_USER": "(&(mail=%s)(mailEnabled=TRUE))",
    "LDAP_QUERY_FILTER_GROUP": "(&(mailGroupMember=%s)(mailEnabled=TRUE))",
    "LDAP_QUERY_FILTER_ALIAS": "(|(&(mailAlias=%s)(objectClass=PostfixBookMailForward))"
                               "(&(mailAlias=%s)(objectClass=PostfixBookMailAccount)(mailEnabled=TRUE)))",
    "LDAP_QUERY_FILTER_DOMAIN": "(|(&(mail=*@%s)(objectClass=PostfixBookMailAccount)(mailEnabled=TRUE))"
                                "(&(mailGroupMember=*@%s)(objectClass=PostfixBookMailAccount)(mailEnabled=TRUE))"
                                "(&(mailalias=*@%s)(objectClass=PostfixBookMailForward)))",
    "DOVECOT_PASS_FILTER": "(&(objectClass=PostfixBookMailAccount)(uniqueIdentifier=%n))",
    "DOVECOT_USER_FILTER": "(&(objectClass=PostfixBookMailAccount)(uniqueIdentifier=%n))",
}
README_SASLAUTHD = {
    "ENABLE_SASLAUTHD": "1",
    "SASLAUTHD_MECHANISMS": "ldap",
    "SASLAUTHD_LDAP_SERVER": f"127.0.0.1:{ldap.PORT}",
    "SASLAUTHD_LDAP_BIND_DN": ldap.ADMIN_DN,
    "SASLAUTHD_LDAP_PASSWORD": ldap.ADMIN_PW,
    "SASLAUTHD_LDAP_SEARCH_BASE": ldap.BASE,
    "SASLAUTHD_LDAP_FILTER": "(&(objectClass=PostfixBookMailAccount)(uniqueIdentifier=%U))",
}
# The image trusts the test CA as its system bundle (LdapMail).
TLS_ENV = {"LDAP_START_TLS": "yes", "DOVECOT_TLS": "yes", "SASLAUTHD_LDAP_START_TLS": "yes",
           "SASLAUTHD_LDAP_TLS_CHECK_PEER": "yes",
           "SASLAUTHD_LDAP_TLS_CACERT_FILE": "/etc/ssl/certs/ca-certificates.crt"}
ENV = {**README_ENV, **README_SASLAUTHD, **TLS_ENV, "SPOOF_PROTECTION": "1"}
VPS_ENV = {**README_ENV, "SPOOF_PROTECTION": "1"}
# pyinfra's docker connector: the README's example with SASLauthd, over plain LDAP on loopback.
DOCKER_ENV = {**README_ENV, **README_SASLAUTHD, "SPOOF_PROTECTION": "1"}


def poll(predicate, what: str, diagnostics, timeout: float = 60, every: float = 1.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except (OSError, smtplib.SMTPException, imaplib.IMAP4.error) as e:
            last = repr(e)
        else:
            if last:
                return last
        time.sleep(every)
    raise AssertionError(f"{what}: not seen within {timeout}s (last: {last!r})\n{diagnostics()}")


@dataclass
class LdapMail(MailContainer):
    """The mail server, trusting the test CA as its system CA bundle (the LDAP maps' and
    Dovecot's tls_ca_cert_file), so StartTLS to slapd is verified."""
    ca_file: Path = Path()

    def run_args(self) -> list[str]:
        args = super().run_args()
        return args[:-1] + ["-v", f"{self.ca_file}:/etc/ssl/certs/ca-certificates.crt:ro", args[-1]]


@pytest.fixture(scope="module")
def directory(base_image, tls, tmp_path_factory):
    root = tmp_path_factory.mktemp("slapd")
    leaf = tls.ca.issue_cert("127.0.0.1")
    seed = [ldap.entry("alice", ALICE, ALICE_PW, aliases=[INFO], groups=[TEAM]),
            ldap.entry("bob", BOB, BOB_PW, groups=[TEAM]),
            ldap.forward("forward", FWD, BOB)]
    slapd = ldap.Directory(image=ldap.build_image(base_image, root), workdir=root,
                           cert_pem=tls.chain_pem(leaf), key_pem=tls.key_pem(leaf), seed=seed)
    try:
        slapd.start()
        yield slapd
    finally:
        slapd.remove()


@pytest.fixture(scope="module", params=["image", "vps", "docker"])
def server(request, tls, directory, tmp_path_factory):
    if request.param == "image":
        image = request.getfixturevalue("image")
        root = tmp_path_factory.mktemp("ldap-mail")
        cfg = MailConfig(root / "config")
        cfg.write()
        tls.write(cfg.path / "ssl")
        ca = root / "ca.pem"
        ca.write_bytes(tls.ca_pem())
        box = LdapMail(image, Volumes.under(root, cfg.path), env=dict(ENV), ca_file=ca)
        try:
            box.start()
            c.wait_for_ports([25, 465, 587, 993])
            yield box
        finally:
            box.remove()
        return
    request.getfixturevalue("deploy_py")
    root = tmp_path_factory.mktemp(f"ldap-{request.param}")
    scenario = sc.build(root / "config", tls)
    if request.param == "vps":
        machine = Vps(image=request.getfixturevalue("vps_image"), workdir=root / "vps")
        target = VpsTarget(scenario=scenario, tls=tls, workdir=root, vps=machine, settings=dict(VPS_ENV))
        start = [machine.start, target.start]
    else:
        target = DockerConnectorTarget(scenario=scenario, tls=tls, workdir=root,
                                       base_image=request.getfixturevalue("base_image"),
                                       volumes=Volumes.under(root, scenario.config.path), settings=dict(DOCKER_ENV))
        start = [target.start]
    try:
        for step in start:
            step()
        yield target
    finally:
        target.teardown()


def image_only(server) -> None:
    if not isinstance(server, MailContainer):
        pytest.skip("the image target covers this case (a VPS restart is a reboot; the docker connector's "
                    "deploy is the same product as the image's)")


def saslauthd_on(server) -> bool:
    return not isinstance(server, VpsTarget)


def deliver(server, rcpt: str, tok: str, sender: str = f"someone@{DOMAIN}") -> None:
    try:
        refused = c.send(sender, rcpt, tok)
    except smtplib.SMTPException as e:
        raise AssertionError(f"{rcpt}: {e!r}\n{server.diagnostics()}") from None
    assert refused == {}, refused


def test_an_ldap_user_receives_mail_and_reads_it_over_imap(server, tls):
    tok = c.token("ldap-deliver")
    deliver(server, ALICE, tok)
    body = c.wait_for_message(ALICE, ALICE_PW, tok, context=tls.client_context(), timeout=60)
    assert tok.encode() in body
    assert "ldap-users.cf" in server.exec("postconf", "-h", "virtual_mailbox_maps").stdout


def test_alias_group_and_forward_expand_from_the_directory(server, tls):
    ctx = tls.client_context()
    alias_tok, group_tok, fwd_tok = c.token("ldap-alias"), c.token("ldap-group"), c.token("ldap-fwd")
    deliver(server, INFO, alias_tok)
    deliver(server, TEAM, group_tok)
    deliver(server, FWD, fwd_tok)
    c.wait_for_message(ALICE, ALICE_PW, alias_tok, context=ctx, timeout=60)
    c.wait_for_message(ALICE, ALICE_PW, group_tok, context=ctx, timeout=60)
    c.wait_for_message(BOB, BOB_PW, group_tok, context=ctx, timeout=60)
    c.wait_for_message(BOB, BOB_PW, fwd_tok, context=ctx, timeout=60)


def test_an_unknown_address_in_an_ldap_domain_is_refused(server):
    with c.SMTP(25) as smtp:
        smtp.ehlo("client.example.test")
        smtp.mail(f"someone@{DOMAIN}")
        code, text = smtp.rcpt(f"nobody@{DOMAIN}")
    assert code == 550, (code, text)


@pytest.mark.parametrize("port", [465, 587])
def test_smtp_auth_with_the_directory_password(server, tls, port):
    tok = c.token(f"ldap-auth{port}")
    refused = c.send(ALICE, BOB, tok, port=port, context=tls.client_context(), login=(ALICE, ALICE_PW))
    assert refused == {}
    c.wait_for_message(BOB, BOB_PW, tok, context=tls.client_context(), timeout=60)


def test_smtp_auth_is_saslauthd_asking_the_directory_over_verified_starttls(server):
    """README's ENABLE_SASLAUTHD=1 / SASLAUTHD_LDAP_*: Postfix asks saslauthd (Cyrus SASL), whose
    /etc/saslauthd.conf holds the bind password (root-only) and asks slapd with StartTLS,
    checking its certificate against the test CA (the docker connector: plain LDAP on loopback)."""
    if not saslauthd_on(server):
        pytest.skip("the VPS runs without saslauthd: SMTP AUTH through Dovecot's LDAP passdb")
    assert server.exec("postconf", "-h", "smtpd_sasl_type").stdout.strip() == "cyrus"
    assert server.exec("stat", "-c", "%a %U", "/etc/saslauthd.conf").stdout.split() == ["600", "root"]
    conf = server.exec("cat", "/etc/saslauthd.conf").stdout
    tls_lines = ("ldap_start_tls: yes", "ldap_tls_check_peer: yes") if isinstance(server, MailContainer) else ()
    for line in (f"ldap_servers: ldap://127.0.0.1:{ldap.PORT}", *tls_lines,
                 "ldap_filter: (&(objectClass=PostfixBookMailAccount)(uniqueIdentifier=%U))"):
        assert line in conf.splitlines(), (line, conf.replace(ldap.ADMIN_PW, "***"))
    for user, password, ok in ((ALICE, ALICE_PW, True), (ALICE, "not-" + ALICE_PW, False), (BOB, ALICE_PW, False)):
        r = server.exec("testsaslauthd", "-u", user, "-p", password, "-f", "/run/saslauthd/mux", check=False)
        assert (r.returncode == 0 and "OK" in r.stdout) == ok, (user, ok, r.stdout, r.stderr, server.diagnostics())
    said = server.logs() if isinstance(server, MailContainer) else server.report_text()
    assert ldap.ADMIN_PW not in said and ldap.ADMIN_PW not in server.mail_log()


def test_a_wrong_password_is_refused(server, tls):
    with pytest.raises(smtplib.SMTPAuthenticationError):
        c.send(ALICE, BOB, c.token("ldap-wrong"), port=587, context=tls.client_context(),
               login=(ALICE, "not-" + ALICE_PW))
    with c.IMAPS(context=tls.client_context()) as imap:
        with pytest.raises(imaplib.IMAP4.error):
            imap.login(ALICE, "not-" + ALICE_PW)
    with c.IMAPS(context=tls.client_context()) as imap:
        with pytest.raises(imaplib.IMAP4.error):
            imap.login(f"nobody@{DOMAIN}", ALICE_PW)


def mail_from_reply(tls, login: tuple[str, str], sender: str) -> int:
    with c.SMTP(587) as smtp:
        smtp.ehlo("client.example.test")
        smtp.starttls(tls.client_context())
        smtp.ehlo("client.example.test")
        smtp.login(*login)
        smtp.mail(sender)
        code, _ = smtp.rcpt(BOB)
        smtp.rset()
        return code


def test_spoof_protection_lets_a_user_send_as_her_address_alias_and_group_only(server, tls):
    login = (ALICE, ALICE_PW)
    assert mail_from_reply(tls, login, ALICE) == 250
    assert mail_from_reply(tls, login, INFO) == 250       # her mailAlias
    assert mail_from_reply(tls, login, TEAM) == 250       # a group she is a member of
    assert mail_from_reply(tls, login, BOB) == 553        # someone else's address
    assert mail_from_reply(tls, login, FWD) == 553        # a forward that is not hers


def test_a_user_added_to_the_running_directory_receives_mail_and_logs_in_at_once(server, directory, tls):
    uid = c.token("carol")                                # one per target: the directory is shared
    address = f"{uid}@{DOMAIN}"
    directory.add(ldap.entry(uid, address, CAROL_PW))
    tok = c.token("ldap-new")
    deliver(server, address, tok)                         # no restart, no poll: the next lookup finds her
    c.wait_for_message(address, CAROL_PW, tok, context=tls.client_context(), timeout=60)


def test_setup_email_list_lists_the_directory_accounts(server):
    r = server.exec("setup", "email", "list", check=False)
    assert r.returncode == 0, (r.stdout, r.stderr)
    listed = [line for line in r.stdout.splitlines() if line.startswith("* ")]
    # docker-mailserver's format; quotas are off with LDAP: no quota part. The forward is no account.
    assert f"* {ALICE}" in listed and f"* {BOB}" in listed, r.stdout
    assert not any(FWD in line for line in listed), r.stdout


@pytest.mark.parametrize("outage", ["stopped", "silent"])
def test_mail_waits_while_the_directory_is_down_and_is_delivered_when_it_is_back(server, directory, tls, outage):
    """`stopped`: connections are refused. `silent` (docker pause): connections are accepted and
    never answered, so every lookup must give up by itself (the maps' `timeout`)."""
    image_only(server)
    tok_smtp, tok_local = c.token(f"ldap-{outage}-smtp"), c.token(f"ldap-{outage}-local")
    down, back = (directory.stop, directory.start) if outage == "stopped" else (directory.pause, directory.unpause)
    down()
    try:
        # Port 25: a temporary refusal, so the sending server keeps the message and retries.
        with c.SMTP(25) as smtp:
            smtp.ehlo("client.example.test")
            smtp.mail(f"someone@{DOMAIN}")
            code, text = smtp.rcpt(ALICE)
        assert 400 <= code < 500, (code, text, server.diagnostics())
        # Mail submitted inside the server (cron's, `sendmail`) waits in Postfix's queue.
        server.exec("sh", "-c", f"printf 'Subject: {tok_local}\\n\\nqueued\\n' | sendmail -f root {ALICE}")
    finally:
        back()
    # The sender's retry is accepted and delivered; the queued message goes out by itself.
    poll(lambda: c.send(f"someone@{DOMAIN}", ALICE, tok_smtp) == {}, "the retry accepted", server.diagnostics)
    c.wait_for_message(ALICE, ALICE_PW, tok_smtp, context=tls.client_context(), timeout=60)
    server.exec("postqueue", "-f", check=False)
    c.wait_for_message(ALICE, ALICE_PW, tok_local, context=tls.client_context(), timeout=240)
    log = server.mail_log()
    assert "status=bounced" not in log and "status=undeliverable" not in log


def test_the_server_starts_with_the_directory_down(server, directory):
    image_only(server)
    directory.stop()
    try:
        server.restart()                                  # the ready line, not a crash loop
        c.wait_for_ports([25, 993])
        assert f"the LDAP directory ldap://127.0.0.1:{ldap.PORT} does not answer" in server.logs()
        assert ldap.ADMIN_PW not in server.logs() and ldap.ADMIN_PW not in server.mail_log()
    finally:
        directory.start()


class Sink:
    """The next hop for relayed mail: a minimal SMTP server on a loopback port of this process,
    recording each message's data."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.messages: list[bytes] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn, conn.makefile("rb") as rf:
                conn.sendall(b"220 sink.far.test ESMTP\r\n")
                while line := rf.readline():
                    verb = line[:4].upper()
                    if verb == b"DATA":
                        conn.sendall(b"354 go\r\n")
                        data = b""
                        while (chunk := rf.readline()) not in (b".\r\n", b""):
                            data += chunk
                        self.messages.append(data)
                    elif verb == b"QUIT":
                        conn.sendall(b"221 bye\r\n")
                        break
                    conn.sendall(b"250 ok\r\n")

    def close(self):
        self.sock.close()


# Last in the module: it replaces the image's server with an SMTP_ONLY one.
def test_smtp_only_relays_with_smtp_auth_from_saslauthd_and_has_no_dovecot(server, tls):
    """SMTP_ONLY=1 with README's SASLauthd: no Dovecot (no IMAP/POP3 port, no process);
    465/587 still offer AUTH, checked by saslauthd against the directory; mail is sent on."""
    image_only(server)
    sink = Sink()
    try:
        server.recreate(env={**ENV, "SMTP_ONLY": "1", "DEFAULT_RELAY_HOST": f"[127.0.0.1]:{sink.port}"})
        c.wait_for_ports([25, 465, 587])
        for port in (143, 993, 110, 995):
            with pytest.raises(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=5).close()
        procs = server.exec("sh", "-c", "cat /proc/[0-9]*/cmdline | tr '\\0' ' '", check=False).stdout
        assert "dovecot" not in procs and "saslauthd" in procs, procs
        ctx = tls.client_context()
        tokens = {port: c.token(f"ldap-smtponly{port}") for port in (465, 587)}
        for port, tok in tokens.items():
            assert c.send(ALICE, "someone@far.test", tok, port=port, context=ctx, login=(ALICE, ALICE_PW)) == {}
        for tok in tokens.values():
            poll(lambda: any(tok.encode() in m for m in sink.messages), f"{tok} at the relay", server.diagnostics)
        with pytest.raises(smtplib.SMTPAuthenticationError):
            c.send(ALICE, "someone@far.test", c.token("ldap-smtponly-wrong"), port=587, context=ctx,
                   login=(ALICE, "not-" + ALICE_PW))
        r = server.exec("setup", "email", "list", check=False)
        assert r.returncode == 1 and "SMTP_ONLY=1" in r.stdout + r.stderr, (r.stdout, r.stderr)
    finally:
        sink.close()
