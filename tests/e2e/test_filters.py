"""Amavis + SpamAssassin (issue 9), on the image and on the VPS target.

Every server here resolves through bench/dnsstub.py (an instant NXDOMAIN DNS on 127.0.0.153, given
to the container as its /etc/resolv.conf): SpamAssassin's network tests stay on as in the product,
and no result depends on the host's resolver (without one that answers, a message waits ~15 s).

SA_TAG=-100000 (docker-mailserver's documented way) makes Amavis add its X-Spam-* headers to every
message, so a clean one shows it went through SpamAssassin. Waits are bounded polls for an
observable result, never timed assertions.
"""

from __future__ import annotations

import re
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness import clients as c
from harness import scenario as sc
from harness.mailserver import MailContainer, Volumes, command_lines
from harness.targets import ImageTarget, VpsTarget
from harness.vps import Vps

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from bench.dnsstub import DnsStub  # noqa: E402

pytestmark = pytest.mark.docker

GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
ENV = {"ENABLE_AMAVIS": "1", "ENABLE_SPAMASSASSIN": "1", "SA_TAG": "-100000", "MOVE_SPAM_TO_JUNK": "1",
       "SPAM_SUBJECT": "[SPAM] "}
USER = sc.USER1


poll = c.poll


@dataclass
class ResolvContainer(MailContainer):
    resolv: Path | None = None

    def run_args(self) -> list[str]:
        args = super().run_args()
        return args[:-1] + ["-v", f"{self.resolv}:/etc/resolv.conf:ro", args[-1]]


@dataclass(repr=False)
class FilterImageTarget(ImageTarget):
    resolv: Path | None = None

    def start(self) -> "FilterImageTarget":
        self.container = ResolvContainer(self.image, self.volumes, env=dict(self.settings), resolv=self.resolv)
        self.container.start()
        self.wait_serving()
        return self


@pytest.fixture(scope="module")
def dns(tmp_path_factory):
    with DnsStub() as stub:
        path = tmp_path_factory.mktemp("dns") / "resolv.conf"
        path.write_text(stub.resolv_conf())
        yield path


@pytest.fixture(scope="module", params=["image", "vps"])
def target(request, tmp_path_factory, tls, dns):
    root = tmp_path_factory.mktemp(f"filters-{request.param}")
    scenario = sc.build(root / "config", tls)
    t = None
    try:
        if request.param == "image":
            t = FilterImageTarget(image=request.getfixturevalue("image"),
                                  volumes=Volumes.under(root, scenario.config.path),
                                  scenario=scenario, tls=tls, settings=dict(ENV), resolv=dns)
        else:
            request.getfixturevalue("deploy_py")
            machine = Vps(image=request.getfixturevalue("vps_image"), workdir=root / "vps")
            t = VpsTarget(scenario=scenario, tls=tls, workdir=root, vps=machine, settings=dict(ENV))
            machine.start()
        t.start()
        if request.param == "vps":
            # The deploy needed the host's resolver (apt); from now on the stub answers. The container's
            # /etc/resolv.conf is its own copy: the host's file is not touched.
            t.exec("sh", "-c", "cat > /etc/resolv.conf", input=dns.read_bytes())
            t.exec("systemctl", "restart", "amavis.service")
        wait_amavis(t)
        yield t
    finally:
        if t is not None:
            t.teardown()


def listening(t, port: int) -> bool:
    return bool(t.exec("ss", "-Hltn", f"sport = :{port}", check=False).stdout.strip())


def wait_amavis(t) -> None:
    poll(lambda: listening(t, 10024), "Amavis listening on 127.0.0.1:10024", t.diagnostics, timeout=120)


def send(subject: str, body: str = "hello\n") -> None:
    msg = c.make_message(sc.SENDER, USER, subject, body=body)
    with c.SMTP(25) as smtp:
        smtp.ehlo("client.example.test")
        assert smtp.send_message(msg, from_addr=sc.SENDER, to_addrs=[USER]) == {}


def fetch(t, tok: str, mailbox: str = "INBOX", timeout: float = 60) -> bytes:
    try:
        return c.wait_for_message(USER, t.scenario.password(USER), tok, context=t.tls.client_context(),
                                  mailbox=mailbox, timeout=timeout)
    except AssertionError as e:
        raise AssertionError(f"{e}\n{t.diagnostics()}") from None


def header(raw: bytes, name: str) -> str:
    m = re.search(rb"^" + name.encode() + rb":(.*(?:\r?\n[ \t].*)*)", raw, re.M | re.I)
    return m.group(1).decode(errors="replace").strip() if m else ""


def junk_mailbox(t) -> str:
    """The mailbox IMAP LIST marks \\Junk (special-use)."""
    with c.IMAPS(context=t.tls.client_context()) as imap:
        imap.login(USER, t.scenario.password(USER))
        for line in c.list_mailboxes(imap):
            if "\\Junk" in line:
                return line.rsplit(" ", 1)[-1].strip('"')
    raise AssertionError("no \\Junk special-use mailbox")


# --- the delivery path (image and VPS) --------------------------------------------------------------------

def test_gtube_is_flagged_and_filed_into_the_junk_special_use_folder(target):
    tok = c.token("gtube")
    send(tok, body=f"{GTUBE}\n")
    raw = fetch(target, tok, mailbox=junk_mailbox(target))
    assert header(raw, "X-Spam-Flag") == "YES", raw[:2000]
    assert header(raw, "Subject").startswith("[SPAM] "), header(raw, "Subject")
    with c.IMAPS(context=target.tls.client_context()) as imap:
        imap.login(USER, target.scenario.password(USER))
        assert c.find_message(imap, "INBOX", tok) is None


def test_a_clean_message_is_delivered_with_spamassassins_headers(target):
    tok = c.token("clean")
    send(tok)
    raw = fetch(target, tok)
    status = header(raw, "X-Spam-Status")
    assert status.startswith("No, score="), raw[:2000]
    assert header(raw, "X-Spam-Flag") in ("", "NO")      # Amavis writes NO once SA_TAG is reached
    assert not header(raw, "Subject").startswith("[SPAM]")


def test_a_stopped_amavis_defers_mail_which_is_delivered_once_it_is_back(target):
    """Postfix cannot reach 127.0.0.1:10024: the message waits in the queue (4xx), nothing bounces."""
    if target.kind == "vps":
        target.exec("systemctl", "stop", "amavis.service")
    else:
        # The container's supervisor restarts an exited daemon at once: make Amavis listen elsewhere
        # instead (the config folder's amavis.cf, applied live by a reload), i.e. a failing Amavis.
        (target.volumes.config / "amavis.cf").write_text("$inet_socket_port = 10099;\n")
        poll(lambda: not listening(target, 10024), "Amavis no longer on 10024", target.diagnostics)
    tok = c.token("deferred")
    send(tok)
    poll(lambda: re.search(r"relay=none.*status=deferred|status=deferred.*10024|10024.*Connection refused",
                           target.mail_log()), "the delivery to Amavis deferred", target.diagnostics)
    queue = target.exec("postqueue", "-p").stdout
    assert sc.SENDER in queue, queue
    log = target.mail_log()
    assert "bounced" not in log and "status=bounced" not in log
    if target.kind == "vps":
        target.exec("systemctl", "start", "amavis.service")
    else:
        (target.volumes.config / "amavis.cf").unlink()
    wait_amavis(target)
    target.exec("postqueue", "-f")
    raw = fetch(target, tok, timeout=90)
    assert header(raw, "X-Spam-Status").startswith("No, score=")


# --- live changes and settings that need a new server (image only) -------------------------------------------

def amavis_reloads(target) -> int:
    out = target.exec("grep", "-c", "Re-exec server during HUP", "/var/log/mail/mail.log", check=False).stdout
    return int(out.strip() or 0)


def test_local_domains_follow_a_new_account_live(target):
    """A domain added while the server runs: Amavis is reloaded with it and tags its mail (Amavis adds
    X-Spam-* headers for local recipients only)."""
    if target.kind != "image":
        pytest.skip("the change poller of the container; a VPS applies changes the same way (mailwright-watch)")
    new_user, password = "fresh@live.test", "fresh-Secret!"
    reloads = amavis_reloads(target)
    target.scenario.config.account(new_user, password)
    target.scenario.config.write()
    poll(lambda: "live.test" in target.exec("cat", "/etc/amavis/mailwright-local-domains").stdout,
         "live.test in Amavis's local domains", target.diagnostics)
    poll(lambda: amavis_reloads(target) > reloads, "Amavis reloaded", target.diagnostics)
    wait_amavis(target)
    tok = c.token("live")
    msg = c.make_message(sc.SENDER, new_user, tok, body=f"{GTUBE}\n")
    with c.SMTP(25) as smtp:
        smtp.ehlo("client.example.test")
        assert smtp.send_message(msg, from_addr=sc.SENDER, to_addrs=[new_user]) == {}
    try:
        raw = c.wait_for_message(new_user, password, tok, context=target.tls.client_context(), mailbox="Junk",
                                 timeout=90)
    except AssertionError as e:
        raise AssertionError(f"{e}\n{target.diagnostics()}") from None
    assert header(raw, "X-Spam-Flag") == "YES"



def image_only(target):
    if target.kind != "image":
        pytest.skip("a container restart with other settings: the image target covers it")


def test_spam_not_to_inbox_is_blocked_and_logged(target):
    image_only(target)
    target.reconfigure(SPAMASSASSIN_SPAM_TO_INBOX="0")
    wait_amavis(target)
    tok = c.token("blocked")
    send(tok, body=f"{GTUBE}\n")
    poll(lambda: "Blocked SPAM" in target.mail_log(), "`Blocked SPAM` in mail.log", target.diagnostics)
    with c.IMAPS(context=target.tls.client_context()) as imap:
        imap.login(USER, target.scenario.password(USER))
        for box in ("INBOX", "Junk"):
            assert c.find_message(imap, box, tok) is None, f"blocked spam delivered to {box}"


FILES = ("/etc/amavis/conf.d/45-mailwright /etc/amavis/mailwright-local-domains /etc/spamassassin/local.cf "
         "/etc/dovecot/sieve/70-spam_to_junk.sieve")


def test_off_means_gone_and_on_again(target):
    image_only(target)
    target.reconfigure(ENABLE_AMAVIS="0")
    assert "content_filter" not in target.exec("postconf", "-n").stdout
    assert "smtp-amavis" not in target.exec("postconf", "-M").stdout
    assert not listening(target, 10024) and not listening(target, 10025)
    with socket.socket() as s:                      # --network host: the container's loopback is ours
        assert s.connect_ex(("127.0.0.1", 10024)) != 0
    assert "amavisd" not in command_lines(target)
    left = target.exec("sh", "-c", f"ls {FILES} 2>/dev/null", check=False).stdout
    assert left.strip() == "", left
    tok = c.token("unfiltered")
    send(tok)
    assert header(fetch(target, tok), "X-Spam-Status") == ""

    target.reconfigure(ENABLE_AMAVIS="1", SPAMASSASSIN_SPAM_TO_INBOX="1")
    wait_amavis(target)
    assert "content_filter = smtp-amavis:[127.0.0.1]:10024" in target.exec("postconf", "-n").stdout
    tok = c.token("filtered-again")
    send(tok)
    assert header(fetch(target, tok), "X-Spam-Status").startswith("No, score=")


def test_sa_update_without_network_keeps_the_rules_and_logs_it(target):
    image_only(target)
    # The rules (Debian's, and sa-update's under /var/lib/spamassassin/<version>); not the keyring the job
    # imports first.
    rules = ("find /usr/share/spamassassin /var/lib/spamassassin -path '*/sa-update-keys' -prune -o -type f "
             "-print | sort | xargs md5sum | md5sum")
    before = target.exec("sh", "-c", rules).stdout
    done = target.exec("sh", "-c", "cd /opt/mailwright && python3 -m ops.amavis.jobs sa-update", check=False,
                       timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"sa-update updates.spamassassin.org: failed \(exit status 4: .*\); the rules in use stay",
                     target.mail_log()), target.mail_log()[-3000:]
    after = target.exec("sh", "-c", rules).stdout
    assert before == after
    tok = c.token("after-update")
    send(tok, body=f"{GTUBE}\n")
    assert header(fetch(target, tok, mailbox="Junk"), "X-Spam-Flag") == "YES"
