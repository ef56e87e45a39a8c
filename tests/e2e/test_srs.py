"""SRS (postsrsd, ENABLE_SRS) and the policyd-spf wiring against the image, on one server.

Mail from a foreign sender forwarded through an alias to a non-local address leaves with an
`SRS0=` envelope sender, and a bounce to that address comes back to the original sender. The
forward target is a small SMTP sink in this test process on a loopback port, reached through a
`transport_maps` line in postfix-main.cf for its domain only (the two-server cases with a real
DNS are tests/e2e/test_spf_srs.py's). The sender's domain is a second local domain of the
server: reject_unknown_sender_domain exempts local domains, and no resolver here knows another.

The secret: made at first start in the state volume (0600, a link from /etc/postsrsd.secret),
the same after a restart and a re-create (a bounce to an address made before the re-create
still comes home), not in the image, different per container; SRS_SECRET wins and is never
logged. Off means gone for both.
"""

from __future__ import annotations

import re
import smtplib
import socket
import threading

import pytest

from harness import clients as c
from harness import dockercli as d
from harness.configdir import MailConfig
from harness.mailserver import command_lines, serving

pytestmark = pytest.mark.docker

USER, PASSWORD = "user1@example.test", "user1-Secret!"
ALICE, ALICE_PASSWORD = "alice@other.test", "alice-Secret!"     # the "foreign" sender: not SRS_DOMAINNAME
FORWARD, FAR = "fwd@example.test", "bob@far.test"
ENV = {"ENABLE_SRS": "1", "ENABLE_POLICYD_SPF": "1"}
SRS_OF_ALICE = re.compile(r"SRS0=[A-Za-z0-9+/]{4}=[A-Z0-9]{2}=other\.test=alice@example\.test", re.I)


class Sink:
    """A minimal SMTP server on 127.0.0.1: records (MAIL FROM, RCPT TOs, data) per message."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.messages: list[tuple[str, list[str], bytes]] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._session, args=(conn,), daemon=True).start()

    def _session(self, conn):
        with conn, conn.makefile("rb") as rf:
            def say(text):
                conn.sendall(text.encode() + b"\r\n")
            say("220 sink.far.test ESMTP")
            sender, rcpts = "", []
            while line := rf.readline():
                cmd = line.decode(errors="replace").strip()
                verb = cmd.split(" ", 1)[0].upper()
                if verb in ("EHLO", "HELO"):
                    say("250-sink.far.test\r\n250 8BITMIME")
                elif verb == "MAIL":
                    sender, rcpts = re.search(r"<(.*?)>", cmd).group(1), []
                    say("250 ok")
                elif verb == "RCPT":
                    rcpts.append(re.search(r"<(.*?)>", cmd).group(1))
                    say("250 ok")
                elif verb == "DATA":
                    say("354 go")
                    data = b""
                    while (chunk := rf.readline()) not in (b".\r\n", b""):
                        data += chunk
                    with self.lock:
                        self.messages.append((sender, rcpts, data))
                    say("250 queued")
                elif verb == "QUIT":
                    say("221 bye")
                    return
                else:
                    say("250 ok")

    def find(self, tok: str):
        with self.lock:
            return next((m for m in self.messages if tok.encode() in m[2]), None)

    def close(self):
        self.sock.close()


def poll(predicate, what, diagnostics, timeout=60, every=0.5):
    return c.poll(predicate, what, diagnostics, timeout, every)


@pytest.fixture(scope="module")
def sink():
    s = Sink()
    yield s
    s.close()


@pytest.fixture(scope="module")
def server(image, tls, sink, tmp_path_factory):
    root = tmp_path_factory.mktemp("srs")
    cfg = MailConfig(root / "config")
    cfg.account(USER, PASSWORD)
    cfg.account(ALICE, ALICE_PASSWORD)
    cfg.alias(FORWARD, FAR)
    # Only this test's forward target goes to the sink; everything else is as in production.
    cfg.file("postfix-main.cf", f"transport_maps = inline:{{ far.test=smtp:[127.0.0.1]:{sink.port} }}\n")
    with serving(image, root, cfg, tls, ENV, [25, 993]) as box:
        yield box


STATE = {}


def forward_map(server, address: str = ALICE) -> str:
    """postsrsd's forward table, asked the way Postfix asks it."""
    return server.exec("postmap", "-q", address, "tcp:127.0.0.1:10001").stdout.strip()


def read_secret(server) -> str:
    return server.exec("cat", "/etc/postsrsd.secret").stdout


def bounce_to(server, rcpt: str, tok: str) -> None:
    msg = c.make_message("MAILER-DAEMON@far.test", rcpt, tok, body="Undelivered: a test bounce\n")
    with c.SMTP(25) as smtp:
        smtp.ehlo("sink.far.test")
        assert smtp.send_message(msg, from_addr="", to_addrs=[rcpt]) == {}


def test_forwarded_mail_leaves_with_an_srs_sender_and_its_bounce_comes_back(server, sink, tls):
    tok = c.token("srs")
    msg = c.make_message(ALICE, FORWARD, tok)
    with c.SMTP(25) as smtp:                   # port 25, not logged in: asked to policyd-spf (loopback: skipped)
        smtp.ehlo("mx.other.test")
        assert smtp.send_message(msg, from_addr=ALICE, to_addrs=[FORWARD]) == {}
    sender, rcpts, data = poll(lambda: sink.find(tok), "the forwarded message at the next hop", server.diagnostics)
    assert rcpts == [FAR]
    assert SRS_OF_ALICE.fullmatch(sender), sender
    assert f"From: {ALICE}".encode() in data                     # envelope only (SRS_SENDER_CLASSES)
    STATE["srs"] = sender

    back = c.token("bounce")
    bounce_to(server, sender, back)
    body = c.wait_for_message(ALICE, ALICE_PASSWORD, back, context=tls.client_context(), timeout=60)
    assert b"Undelivered: a test bounce" in body

    # A forged SRS address (wrong hash) is an unknown recipient, not a path into the server.
    forged = re.sub(r"^SRS0=....", "SRS0=AAAA" if not sender[5:9] == "AAAA" else "SRS0=BBBB", sender)
    with c.SMTP(25) as smtp:
        smtp.ehlo("sink.far.test")
        smtp.mail("")
        code, text = smtp.rcpt(forged)
    assert 500 <= code < 600, (code, text)


def test_the_secret_is_made_at_first_start_in_the_state_volume_not_in_the_image(server, image):
    target = server.exec("readlink", "/etc/postsrsd.secret").stdout.strip()
    assert target == "/var/mail-state/etc-postsrsd.secret"
    assert server.exec("stat", "-c", "%a %U", target).stdout.split() == ["600", "root"]
    kept = (server.volumes.state / "etc-postsrsd.secret")
    assert kept.stat().st_mode & 0o777 == 0o600
    secret = read_secret(server)
    assert len(secret.strip()) >= 32
    # Not in the image: a container of it has no such file before its first start.
    name = d.unique_name("srs-img")
    try:
        shipped = d.docker("run", "--rm", "--name", name, "--network", "none", "--entrypoint", "cat",
                           image, "/etc/postsrsd.secret", check=False)
    finally:
        d.rm(name)
    assert shipped.returncode != 0 and not shipped.stdout
    # Every new container makes its own (the descriptor's start command, without postsrsd).
    made = []
    for _ in range(2):
        name = d.unique_name("srs-new")
        try:
            made.append(d.docker("run", "--rm", "--name", name, "--network", "none", "--entrypoint", "python3",
                                 image, "/opt/mailwright/ops/postsrsd/secret.py", "--secret", "/etc/postsrsd.secret",
                                 "--", "/bin/cat", "/etc/postsrsd.secret").stdout)
        finally:
            d.rm(name)
    assert made[0].strip() and made[0] != made[1] and secret not in made


def test_the_secret_survives_a_restart_and_a_recreate(server, tls):
    secret, mapped = read_secret(server), forward_map(server)
    assert SRS_OF_ALICE.fullmatch(mapped), mapped
    server.restart()
    c.wait_for_ports([25, 10001])
    assert read_secret(server) == secret and forward_map(server) == mapped
    server.recreate()
    c.wait_for_ports([25, 10001, 993])
    assert read_secret(server) == secret and forward_map(server) == mapped
    # The address handed out before the re-create still leads home.
    assert "srs" in STATE, "needs test_forwarded_mail_leaves_with_an_srs_sender_and_its_bounce_comes_back"
    back = c.token("bounce2")
    bounce_to(server, STATE["srs"], back)
    c.wait_for_message(ALICE, ALICE_PASSWORD, back, context=tls.client_context(), timeout=60)


GIVEN = "bXd0ZXN0LWdpdmVuLXNyc19zZWNyZXQ="


def test_srs_secret_setting_wins_and_is_never_logged(server):
    generated = forward_map(server)
    server.recreate(env={**ENV, "SRS_SECRET": GIVEN})
    c.wait_for_ports([25, 10001])
    mapped = forward_map(server)
    assert SRS_OF_ALICE.fullmatch(mapped) and mapped != generated          # another secret signs
    assert server.exec("postmap", "-q", mapped, "tcp:127.0.0.1:10002").stdout.strip() == ALICE
    assert server.exec("stat", "-c", "%a", "/etc/postsrsd.SRS_SECRET").stdout.strip() == "600"
    assert GIVEN not in server.logs() and GIVEN not in server.mail_log()
    # Unset again: the generated secret, still in the state volume, is back.
    server.recreate(env=dict(ENV))
    c.wait_for_ports([25, 10001])
    assert forward_map(server) == generated


def test_srs_tables_unreachable_defer_never_bounce(server, sink):
    """postsrsd not answering (here: Postfix pointed at a port nobody listens on, through
    postfix-main.cf, applied live): a 4xx at SMTP time, nothing leaves unrewritten."""
    transport = (server.volumes.config / "postfix-main.cf").read_text()
    dead = "tcp:127.0.0.1:10009"

    def applied(param, value):
        return lambda: server.exec("postconf", "-h", param).stdout.strip() == value

    try:
        (server.volumes.config / "postfix-main.cf").write_text(
            transport + f"sender_canonical_maps = {dead}\nrecipient_canonical_maps = {dead}\n")
        poll(applied("recipient_canonical_maps", dead), "postfix-main.cf applied", server.diagnostics)
        tok = c.token("down")

        def rcpt_deferred():
            # postconf reads main.cf at once; smtpd processes pick it up when Postfix's reload
            # reaches them: until then the old maps answer (250), never a 5xx.
            with c.SMTP(25) as smtp:
                smtp.ehlo("mx.other.test")
                smtp.mail(ALICE)
                code, text = smtp.rcpt(FORWARD)
            assert code < 500, (code, text)
            return 400 <= code < 500 and (code, text)

        poll(rcpt_deferred, "RCPT deferred (4xx) while postsrsd does not answer", server.diagnostics, timeout=30)

        (server.volumes.config / "postfix-main.cf").write_text(transport + f"sender_canonical_maps = {dead}\n")
        poll(applied("recipient_canonical_maps", "tcp:127.0.0.1:10002"), "postfix-main.cf applied",
             server.diagnostics)
        with c.SMTP(25) as smtp:
            smtp.ehlo("mx.other.test")
            try:
                refused = smtp.send_message(c.make_message(ALICE, FORWARD, tok), from_addr=ALICE, to_addrs=[FORWARD])
                code = 250
            except smtplib.SMTPResponseException as e:
                refused, code = {}, e.smtp_code
        assert 400 <= code < 500, (code, refused, server.diagnostics())
    finally:
        (server.volumes.config / "postfix-main.cf").write_text(transport)
    poll(applied("sender_canonical_maps", "tcp:127.0.0.1:10001"), "postfix-main.cf restored", server.diagnostics)
    assert sink.find(tok) is None                      # nothing left with its sender unrewritten


def test_policyd_spf_is_wired_on_port_25_only(server):
    master = server.exec("postconf", "-M", "policyd-spf/unix").stdout
    assert re.search(r"spawn\s+user=policyd-spf argv=/usr/bin/policyd-spf", master), master
    port25 = server.exec("postconf", "-h", "smtpd_recipient_restrictions").stdout
    assert "check_policy_service unix:private/policyd-spf" in port25
    assert port25.index("reject_unauth_destination") < port25.index("policyd-spf")
    mua = server.exec("postconf", "-h", "mua_recipient_restrictions").stdout
    assert "policyd-spf" not in mua
    assert "postconf: warning" not in server.exec("postconf", "-n").stderr


def test_off_means_gone(server):
    server.recreate(env={**ENV, "ENABLE_SRS": "0", "ENABLE_POLICYD_SPF": "0"})
    c.wait_for_ports([25])
    conf = server.exec("postconf", "-n").stdout
    assert "canonical" not in conf and "policyd-spf" not in conf, conf
    assert server.exec("postconf", "-M", "policyd-spf/unix", check=False).stdout.strip() == ""
    for port in (10001, 10002):
        assert server.exec("ss", "-Hltn", f"sport = :{port}").stdout.strip() == ""
    files = server.exec("sh", "-c", "ls /etc/default/postsrsd /etc/postsrsd.SRS_SECRET "
                        "/etc/postfix-policyd-spf-python/policyd-spf.conf 2>/dev/null", check=False).stdout
    assert files.strip() == "", files
    assert "postsrsd" not in command_lines(server)
    # Mail still flows, unrewritten.
    tok = c.token("plain")
    c.send(USER, USER, tok)
