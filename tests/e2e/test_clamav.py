"""ClamAV through Amavis against the image and the VPS (issue 9): EICAR blocked, clean mail delivered,
no signatures -> mail deferred (never passed unscanned) until some are dropped in, new
signature files picked up on `clamdscan --reload`, off means gone, on/off both ways.

No signature can be downloaded here: the tests bring their own, tests/data/eicar.hdb (the MD5
signature of the EICAR string, one line). The server starts with an empty state volume, so with
no signatures at all; the module's tests run in order on that one server.

The VPS target's EICAR case is in test_clamav_vps.py: a module of its own, so that this
module's server (bound to the host's mail ports) is gone before the VPS starts.

Every wait is a bounded poll for an observable result, never a timed assertion.
"""

from __future__ import annotations

import hashlib
import json
import re
from email.message import EmailMessage
from pathlib import Path

import pytest

from harness import clients as c
from harness.configdir import MailConfig
from harness.mailserver import command_lines, serving

pytestmark = pytest.mark.docker

USER, PASSWORD = "user1@example.test", "user1-Secret!"
SENDER = "sender@example.test"
ENV = {"ENABLE_AMAVIS": "1", "ENABLE_CLAMAV": "1", "ENABLE_SPAMASSASSIN": "0"}
EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
HDB = Path(__file__).resolve().parents[1] / "data" / "eicar.hdb"
SIGNATURE = HDB.read_text().split(":")[2].strip()
DB = "/var/lib/clamav"
SOCKET = "/run/clamav/clamd.ctl"
SNIPPET = "/etc/amavis/conf.d/55-mailwright-clamav"
DEFERRED: list[str] = []        # the message the first test left deferred, for the second


def poll(predicate, what: str, diagnostics, timeout: float = 120, every: float = 1.0):
    return c.poll(predicate, what, diagnostics, timeout, every)


def message(subject: str, attachment: bytes | None = None) -> EmailMessage:
    msg = c.make_message(SENDER, USER, subject)
    if attachment is not None:
        msg.add_attachment(attachment, maintype="application", subtype="octet-stream", filename="sample.dat")     # not .com: Amavis bans that name
    return msg


def send(msg: EmailMessage) -> None:
    with c.SMTP(25) as smtp:
        smtp.ehlo("client.example.test")
        assert smtp.send_message(msg, from_addr=SENDER, to_addrs=[USER]) == {}


def queue(server) -> list[dict]:
    out = server.exec("postqueue", "-j", check=False).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip().startswith("{")]


def in_mailbox(server, tok: str) -> bool:
    """Whether a message with `tok` in its Subject is in the user's mail store (any folder)."""
    r = server.exec("sh", "-c", f"grep -rlF 'Subject: {tok}' /var/mail/example.test/user1/ 2>/dev/null", check=False)
    return bool(r.stdout.strip())


def put_signature(server, name: str, text: str) -> None:
    server.exec("sh", "-c", f"cat > {DB}/{name}", input=text)


@pytest.fixture(scope="module")
def server(image, tls, tmp_path_factory):
    root = tmp_path_factory.mktemp("clamav")
    cfg = MailConfig(root / "config")
    cfg.account(USER, PASSWORD)
    with serving(image, root, cfg, tls, ENV, [25, 993]) as box:
        yield box


def test_no_signatures_clamd_waits_says_so_and_mail_is_deferred(server):
    poll(lambda: "no virus signatures in /var/lib/clamav" in server.mail_log(),
         "the no-signature line in mail.log", server.diagnostics, timeout=60)
    tok = c.token("clamav-nosig")
    send(message(tok))
    # Amavis finds no scanner: Postfix keeps the message, deferred with a 4xx from Amavis.
    entry = poll(lambda: next((m for m in queue(server) if any("delay_reason" in r for r in m["recipients"])), None),
                 "the message deferred in the queue", server.diagnostics)
    reason = entry["recipients"][0]["delay_reason"]
    assert re.search(r"said: 4\d\d ", reason), reason
    assert not in_mailbox(server, tok), "delivered unscanned"
    # Waiting, not crash-looping: the container runs, the supervisor never restarted clamav.
    assert "clamav exited" not in server.logs() and "keeps exiting" not in server.logs()
    assert server.mail_log().count("no virus signatures in /var/lib/clamav") == 1
    health = server.exec("sh", "/opt/mailwright/mailwright/health.sh", check=False)
    assert health.returncode != 0 and "clamav" in health.stdout, health.stdout     # unhealthy, and says why
    DEFERRED.append(tok)


def test_signatures_dropped_in_then_the_deferred_mail_is_delivered_scanned(server):
    assert DEFERRED, "runs after the no-signature test (same module, same server)"
    tok = DEFERRED[0]
    put_signature(server, "mwtest-eicar.hdb", HDB.read_text())
    # clamd starts by itself within seconds; `clamdscan --reload` answers once it does.
    poll(lambda: server.exec("clamdscan", "--reload", check=False).returncode == 0,
         "clamd answering on its socket", server.diagnostics, timeout=60)
    server.exec("postqueue", "-f")
    poll(lambda: in_mailbox(server, tok), "the deferred message delivered", server.diagnostics)
    body = server.exec("sh", "-c", f"grep -rlF 'Subject: {tok}' /var/mail/example.test/user1/ | head -1 "
                       "| xargs cat").stdout
    assert re.search(r"^X-Virus-Scanned: ", body, re.M), body[:2000]


def test_eicar_attachment_is_blocked_and_clean_mail_delivered(server):
    infected, clean = message(c.token("clamav-eicar"), EICAR), message(c.token("clamav-clean"), b"just bytes\n")
    send(infected)
    send(clean)
    poll(lambda: in_mailbox(server, clean["Subject"]), "the clean message delivered", server.diagnostics)
    line = poll(lambda: next((x for x in server.mail_log().splitlines()
                              if "Blocked INFECTED" in x and infected["Message-ID"] in x), None),
                "Blocked INFECTED for the EICAR message in mail.log", server.diagnostics)
    assert SIGNATURE in line, line
    assert not in_mailbox(server, infected["Subject"])
    assert not any(m for m in queue(server)), "nothing left deferred"


def test_new_signature_file_is_picked_up_on_reload(server):
    payload = b"mailwright test payload " + c.token().encode() + b"\n"
    server.exec("sh", "-c", "cat > /tmp/mwtest-payload && chmod 644 /tmp/mwtest-payload", input=payload)
    before = server.exec("clamdscan", "--no-summary", "/tmp/mwtest-payload", check=False)
    assert before.returncode == 0 and "OK" in before.stdout, before.stdout
    put_signature(server, "mwtest-payload.hdb", f"{hashlib.md5(payload).hexdigest()}:{len(payload)}:Mwtest.Payload\n")
    server.exec("clamdscan", "--reload")
    after = poll(lambda: (r := server.exec("clamdscan", "--no-summary", "/tmp/mwtest-payload", check=False))
                 .returncode == 1 and r, "the new signature in use", server.diagnostics, timeout=60)
    assert "Mwtest.Payload" in after.stdout and "FOUND" in after.stdout


def test_off_means_gone_and_on_again_with_the_persisted_signatures(server):
    server.recreate(env={**ENV, "ENABLE_CLAMAV": "0"})
    c.wait_for_ports([25, 993])
    assert "clamd" not in command_lines(server) and "clamav/run.sh" not in command_lines(server)
    left = server.exec("sh", "-c", f"ls {SOCKET} {SNIPPET} /etc/clamav/clamd.conf 2>/dev/null", check=False).stdout
    assert left.strip() == "", left
    tok = c.token("clamav-off")
    send(message(tok))
    poll(lambda: in_mailbox(server, tok), "mail delivered with ClamAV off", server.diagnostics)

    # On again: the signatures kept in the state volume (lib-clamav) load at once.
    # (docker-mailserver names the folder lib-clamav; mailwright.prepare names it after the whole path.)
    assert list(server.volumes.state.glob("*lib-clamav/mwtest-eicar.hdb")), sorted(server.volumes.state.iterdir())
    server.recreate(env=dict(ENV))
    c.wait_for_ports([25, 993])
    poll(lambda: server.exec("clamdscan", "--ping", "1", check=False).returncode == 0,
         "clamd answering", server.diagnostics, timeout=60)
    infected, clean = message(c.token("clamav-eicar2"), EICAR), message(c.token("clamav-clean2"))
    send(infected)
    send(clean)
    poll(lambda: in_mailbox(server, clean["Subject"]), "the clean message delivered", server.diagnostics)
    poll(lambda: any("Blocked INFECTED" in x and infected["Message-ID"] in x for x in server.mail_log().splitlines()),
         "Blocked INFECTED after turning ClamAV on again", server.diagnostics)
    assert not in_mailbox(server, infected["Subject"])


def tls_context(t):
    return t.tls.client_context()
