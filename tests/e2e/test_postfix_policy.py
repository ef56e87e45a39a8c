"""Postfix policy against the image (issues 7 and 13): relay credentials only over TLS, loopback
trusted with PERMIT_DOCKER, no SMTPUTF8, system mail reaching the postmaster.

One server (PERMIT_DOCKER=container) for the module, recreated with PERMIT_DOCKER=none by the
last test. A fake relay on 127.0.0.1:2525 (the server runs with --network host, so its
127.0.0.1 is the host's) offers AUTH PLAIN LOGIN but no STARTTLS and records every line.
"""

from __future__ import annotations

import base64
import json
import re
import socket
import socketserver
import threading
import time

import pytest

from harness import clients as c
from harness import dockercli as d
from harness.configdir import MailConfig
from harness.mailserver import MailContainer, Volumes

pytestmark = pytest.mark.docker

RELAY_PORT = 2525                      # never 2024
USER = "user1@example.test"
POSTMASTER = "boss@example.test"
RELAY_USER, RELAY_SECRET = "relayuser", "Relay-Secret-7x"
FOREIGN = "someone@foreign.invalid"


class FakeRelay(socketserver.ThreadingTCPServer):
    """An SMTP server that offers AUTH without STARTTLS and records every line it receives."""
    allow_reuse_address = True
    daemon_threads = True

    def __init__(self, port: int):
        self.lines: list[str] = []
        self.connections = 0
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", port), _RelayHandler)

    def record(self, line: str) -> None:
        with self.lock:
            self.lines.append(line)

    def seen(self) -> list[str]:
        with self.lock:
            return list(self.lines)


class _RelayHandler(socketserver.StreamRequestHandler):
    timeout = 60

    def handle(self):
        srv: FakeRelay = self.server  # type: ignore[assignment]
        with srv.lock:
            srv.connections += 1
        say = lambda text: self.wfile.write(text.encode() + b"\r\n")  # noqa: E731
        say("220 fake.relay.test ESMTP")
        in_data = False
        while True:
            raw = self.rfile.readline()
            if not raw:
                return
            line = raw.decode(errors="replace").rstrip("\r\n")
            srv.record(line)
            if in_data:
                if line == ".":
                    in_data = False
                    say("250 queued")
                continue
            verb = line.split(" ", 1)[0].upper()
            if verb in ("EHLO", "HELO"):
                say("250-fake.relay.test\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME")
            elif verb == "AUTH":
                if line.upper().startswith("AUTH LOGIN") and len(line.split()) < 3:
                    say("334 VXNlcm5hbWU6")
                    srv.record(self.rfile.readline().decode(errors="replace").rstrip("\r\n"))
                    say("334 UGFzc3dvcmQ6")
                    srv.record(self.rfile.readline().decode(errors="replace").rstrip("\r\n"))
                say("235 2.7.0 authenticated")
            elif verb == "DATA":
                in_data = True
                say("354 go ahead")
            elif verb == "QUIT":
                say("221 bye")
                return
            else:
                say("250 ok")


@pytest.fixture(scope="module")
def relay():
    try:
        srv = FakeRelay(RELAY_PORT)
    except OSError as e:
        pytest.fail(f"cannot listen on 127.0.0.1:{RELAY_PORT} for the fake relay: {e}")
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.fixture(scope="module")
def server(image, tls, tmp_path_factory, relay):
    root = tmp_path_factory.mktemp("policy")
    cfg = MailConfig(root / "config")
    cfg.account(USER, "user1-Secret!")
    cfg.account(POSTMASTER, "boss-Secret!")
    # `setup relay add-domain example.test 127.0.0.1 2525` and `setup relay add-auth example.test ...`
    cfg.file("postfix-relaymap.cf", f"@example.test [127.0.0.1]:{RELAY_PORT}\n")
    cfg.file("postfix-sasl-password.cf", f"@example.test {RELAY_USER}:{RELAY_SECRET}\n")
    cfg.write()
    tls.write(cfg.path / "ssl")
    c_ = MailContainer(image, Volumes.under(root, cfg.path),
                       env={"PERMIT_DOCKER": "container", "POSTMASTER_ADDRESS": POSTMASTER})
    try:
        c_.start()
        c.wait_for_ports([25, 587, 993])
        yield c_
    finally:
        c_.remove()


def wait_for(predicate, what: str, diagnostics, timeout: float = 90):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"{what}: not seen within {timeout}s\n{diagnostics()}")


# --- 7.2: relay credentials never without TLS ------------------------------------------------------

def test_relay_credentials_never_sent_without_tls(server, relay, tls):
    tok = c.token("relay")
    refused = c.send(USER, FOREIGN, tok, port=587, context=tls.client_context(), login=(USER, "user1-Secret!"))
    assert refused == {}

    # Postfix reaches the relay, finds no STARTTLS and defers: the message stays queued.
    def attempts():
        return [ln for ln in server.mail_log().splitlines()
                if f"to=<{FOREIGN}>" in ln and f":{RELAY_PORT}" in ln and re.search(r"status=(deferred|sent)", ln)]
    lines = wait_for(attempts, "a delivery attempt to the fake relay", server.diagnostics)
    assert relay.connections >= 1, "Postfix never connected to the fake relay"
    seen = relay.seen()
    assert not [ln for ln in seen if ln.upper().startswith("AUTH")], f"the relay was sent AUTH: {seen}"
    assert any(re.search(r"TLS is required, but (was not offered|our TLS engine is unavailable)", ln, re.I)
               for ln in lines), "\n".join(lines)
    queue = server.exec("postqueue", "-j", check=False)
    if queue.returncode == 0:
        entries = [json.loads(ln) for ln in queue.stdout.splitlines() if ln.strip()]
        assert any(r["address"] == FOREIGN for e in entries for r in e.get("recipients", [])), queue.stdout

    secrets = [RELAY_SECRET, base64.b64encode(RELAY_SECRET.encode()).decode(),
               base64.b64encode(f"\0{RELAY_USER}\0{RELAY_SECRET}".encode()).decode()]
    assert not [ln for ln in seen if any(s in ln for s in secrets)], f"the relay saw the password: {seen}"
    assert not [ln for ln in seen if ln.upper().startswith("MAIL FROM")], f"mail went out in clear: {seen}"


# --- 13.6: no SMTPUTF8 --------------------------------------------------------------------------------

def test_port_25_does_not_offer_smtputf8(server):
    with c.SMTP(25) as smtp:
        code, _ = smtp.ehlo("client.example.test")
        assert code == 250
        assert "smtputf8" not in smtp.esmtp_features, smtp.esmtp_features


# --- 13.2: scripts inside the container may relay through localhost:25 ------------------------------

LOCAL_SUBMIT = """
import json, smtplib
s = smtplib.SMTP("127.0.0.1", 25, timeout=60)
s.ehlo("localhost")
codes = [s.mail("cron@mail.example.test")[0], s.rcpt("{rcpt}")[0]]
s.rset(); s.quit()
print(json.dumps(codes))
"""


def local_submit_codes(server, rcpt: str) -> list[int]:
    out = server.exec("python3", "-c", LOCAL_SUBMIT.format(rcpt=rcpt), timeout=120)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_container_may_relay_from_localhost_with_permit_docker_container(server):
    assert local_submit_codes(server, FOREIGN) == [250, 250], server.diagnostics()


# --- 7: system mail to root reaches the postmaster ------------------------------------------------------

def test_mail_to_root_reaches_the_postmaster(server, tls):
    tok = c.token("root")
    server.exec("sh", "-c", f"printf 'Subject: {tok}\\n\\nfrom cron\\n' | /usr/sbin/sendmail root")
    try:
        c.wait_for_message(POSTMASTER, "boss-Secret!", tok, context=tls.client_context())
    except AssertionError as e:
        raise AssertionError(f"{e}\n{server.diagnostics()}") from None


# --- last: PERMIT_DOCKER=none trusts nothing, not even loopback -------------------------------------------

def test_none_refuses_relaying_from_localhost(server):
    server.recreate(env={"PERMIT_DOCKER": "none", "POSTMASTER_ADDRESS": POSTMASTER})
    c.wait_for_ports([25])
    mail, rcpt = local_submit_codes(server, FOREIGN)
    assert mail == 250 and rcpt >= 400, (mail, rcpt)     # 450/454: relay access denied
