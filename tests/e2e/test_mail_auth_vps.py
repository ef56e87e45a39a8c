"""DKIM, DMARC, SPF and SRS with a VPS as one of the bed's two mail servers (issue 10).

mx1.example.com is the image (tests/harness/dnsbed.py); mx2.example.org is a VPS on the bed's
network (harness.vpsnet.bed_vps: systemd, deployed over SSH by pyinfra, resolving through the bed's
DNS) with OpenDKIM, OpenDMARC, policyd-spf and postsrsd on. Both deliver to each other over port 25
through the bed's MX records:

- mx1 signs, mx2 (VPS) verifies: dkim=pass, dmarc=pass and Received-SPF: Pass;
- a spoofed From of a p=reject domain is refused by mx2 (550, DMARC), never delivered;
- a client failing SPF is refused by mx2 (550 5.7.23);
- mail submitted on mx2 is signed with the key `setup config dkim` made on the VPS: mx1 says
  dkim=pass for example.org;
- mx2 forwards through an alias back to mx1 with an SRS sender of its own domain: SPF passes at mx1;
- DNS trouble at mx2 (SERVFAIL or a timeout) for example.com's DKIM key and DMARC record, or for its
  SPF record, or for a key the VPS never fetched (a p=reject domain whose SPF does not align),
  never bounces mx1's signed message: mx2 accepts it with a temperror or defers it
  (4xx), and it arrives once DNS answers, with no dkim=fail/dmarc=fail.
"""

from __future__ import annotations

import re
import time

import pytest

from harness import clients as c
from harness.dnsbed import bind_txt_value
from harness.vpsnet import bed_vps, vps_packages_image  # noqa: F401
from test_mail_auth import (auth_results, dkim_and_dmarc_survive_a_dns_failure, send_through_dns_failure,
                            uncached_key_failure_never_bounces)

pytestmark = pytest.mark.docker

USER1, PW1 = "user1@example.com", "user1-Secret!"
USER2, PW2 = "user2@example.org", "user2-Secret!"
FORWARD = "fwd@example.org"                        # on mx2: an alias to USER1 on mx1
ENV = {"SSL_TYPE": "manual", "ENABLE_OPENDKIM": "1", "ENABLE_OPENDMARC": "1", "ENABLE_POLICYD_SPF": "1",
       "PERMIT_DOCKER": "none"}
MX1_ENV = {**ENV, "SSL_CERT_PATH": "/tmp/docker-mailserver/ssl/cert.pem",
           "SSL_KEY_PATH": "/tmp/docker-mailserver/ssl/key.pem"}
MX2_ENV = {**ENV, "ENABLE_SRS": "1"}


def wait_until(predicate, what: str, diagnostics, timeout: float = 90):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what}: not after {timeout}s\n{diagnostics()}"
        time.sleep(1)


@pytest.fixture(scope="module")
def servers(bed, vps_packages_image, tmp_path_factory):
    mx1 = bed.server("mx1.example.com", accounts={USER1: PW1}, env=MX1_ENV, start=False)
    mx1.start(wait=False)
    mx2 = bed_vps(bed, "mx2.example.org", image=vps_packages_image, workdir=tmp_path_factory.mktemp("bed-vps"),
                  accounts={USER2: PW2}, env=MX2_ENV, config=lambda cfg: cfg.alias(FORWARD, USER1))
    try:
        mx1.wait_ready()
        # Keys: mx1's from the image's `setup`, mx2's from the VPS's own `setup config dkim`.
        mx1.setup("config", "dkim", "keysize", "1024", "domain", "example.com")
        mx2.setup("config", "dkim", "keysize", "1024", "domain", "example.org")
        key1 = (mx1.volumes.config / "opendkim" / "keys" / "example.com" / "mail.txt").read_text()
        key2 = mx2.read_file(f"{mx2.config_dir}/opendkim/keys/example.org/mail.txt")
        bed.dns.txt("mail._domainkey.example.com", bind_txt_value(key1))
        bed.dns.txt("mail._domainkey.example.org", bind_txt_value(key2))
        for box in (mx1, mx2):
            bed.dns.txt(box.domain, f"v=spf1 ip4:{box.ip} -all")
            bed.dns.txt(f"_dmarc.{box.domain}", "v=DMARC1; p=reject")
        # Each signs once its watcher has applied the new key.
        for box, domain in ((mx1, "example.com"), (mx2, "example.org")):
            wait_until(lambda: f"mail._domainkey.{domain}" in box.read_file("/etc/opendkim/KeyTable"),
                       f"{box.fqdn} signing for {domain}", box.diagnostics)
        yield mx1, mx2
    finally:
        mx2.teardown()


def both(mx1, mx2):
    """Diagnostics of both servers: mx1's (docker logs, mail.log), mx2's deploy, journal and the
    non-IMAP lines of its mail.log (the IMAP polls would hide Postfix's lines)."""
    def text() -> str:
        log = mx2.exec("sh", "-c", "grep -v -e imap-login -e 'imap(' /var/log/mail/mail.log | tail -n 80",
                       check=False).stdout
        return f"{mx1.diagnostics()}\n{mx2.diagnostics()}\n--- mx2 mail.log without IMAP:\n{log}"
    return text


def received_spf(message: bytes) -> tuple[bytes, bytes] | None:
    m = re.search(rb"^Received-SPF: (\S+)(.*(?:\r?\n[ \t].*)*)", message, re.M)
    return (m.group(1), re.sub(rb"\r?\n[ \t]+", b" ", m.group(2))) if m else None


def deliver_signed(sender_box, sender, pw, receiver_box, rcpt, rpw, what: str, timeout: float = 120) -> bytes:
    """sender -> rcpt until the receiver reports a DKIM result other than none (the first message
    may beat the sender's reload of its new key)."""
    deadline = time.monotonic() + timeout
    while True:
        tok = c.token(what)
        assert sender_box.submit(sender, pw, c.make_message(sender, rcpt, tok), to=[rcpt]) == {}
        try:
            message = receiver_box.wait_for_message(rcpt, rpw, tok, timeout=90)
        except AssertionError as e:
            mx1, mx2 = (sender_box, receiver_box) if hasattr(sender_box, "volumes") else (receiver_box, sender_box)
            raise AssertionError(f"{str(e)[:500]}\n{both(mx1, mx2)()}") from None
        if "dkim=none" not in auth_results(message, receiver_box.fqdn) or time.monotonic() > deadline:
            return message
        time.sleep(1)


def test_signed_mail_from_mx1_passes_dkim_dmarc_and_spf_at_the_vps(servers):
    mx1, mx2 = servers
    message = deliver_signed(mx1, USER1, PW1, mx2, USER2, PW2, "to-vps")
    results = auth_results(message, mx2.fqdn)
    assert re.search(r"\bdkim=pass\b[^\n]*header\.d=example\.com", results), f"{results}\n{mx2.diagnostics()}"
    assert re.search(r"\bdmarc=pass\b[^\n]*header\.from=example\.com", results), f"{results}\n{mx2.diagnostics()}"
    spf = received_spf(message)
    assert spf and spf[0] == b"Pass" and f"client-ip={mx1.ip};".encode() in spf[1], message[:2000]


def test_a_spoofed_from_of_a_p_reject_domain_is_rejected_by_the_vps(bed, servers):
    mx1, mx2 = servers
    bed.dns.txt("victim.example.net", "v=spf1 -all")
    bed.dns.txt("_dmarc.victim.example.net", "v=DMARC1; p=reject")
    tok = c.token("spoof-vps")
    msg = c.make_message(USER1, USER2, tok)
    msg.replace_header("From", "ceo@victim.example.net")
    assert mx1.submit(USER1, PW1, msg, to=[USER2]) == {}
    pattern = re.compile(r"status=bounced \(host mx2\.example\.org\[[0-9.]+\] said: 550 5\.7\.1 [^\n]*DMARC")
    wait_until(lambda: pattern.search(mx1.mail_log()), "DMARC rejection by the VPS in mx1's log",
               both(mx1, mx2))
    with mx2.imaps() as imap:
        imap.login(USER2, PW2)
        assert c.find_message(imap, "INBOX", tok) is None


def test_an_spf_failing_client_is_refused_by_the_vps(servers):
    _, mx2 = servers
    # The test's own address (the bed's gateway) is not in example.com's SPF record.
    with mx2.smtp(25) as smtp:
        smtp.ehlo("client.example.com")
        assert smtp.mail(USER1)[0] == 250
        code, text = smtp.rcpt(USER2)
    assert code == 550 and b"5.7.23" in text and b"SPF" in text, (code, text)


def test_mail_submitted_on_the_vps_is_signed_with_its_own_key(servers):
    mx1, mx2 = servers
    message = deliver_signed(mx2, USER2, PW2, mx1, USER1, PW1, "from-vps")
    results = auth_results(message, mx1.fqdn)
    assert re.search(r"\bdkim=pass\b[^\n]*header\.d=example\.org", results), f"{results}\n{mx1.diagnostics()}"
    assert re.search(r"\bdmarc=pass\b[^\n]*header\.from=example\.org", results), f"{results}\n{mx1.diagnostics()}"
    assert re.search(rb"^DKIM-Signature:[^\n]*(\n[ \t][^\n]*)*\bs=mail\b", message, re.M), message[:3000]


def test_forwarding_on_the_vps_rewrites_the_sender_with_srs_and_passes_spf_at_mx1(servers):
    mx1, mx2 = servers
    tok = c.token("srs-vps")
    # user1 (example.com, whose SPF lists mx1 only) -> fwd@example.org on mx2 -> back to user1 on mx1.
    assert mx1.submit(USER1, PW1, c.make_message(USER1, FORWARD, tok), to=[FORWARD]) == {}
    try:
        body = mx1.wait_for_message(USER1, PW1, tok, timeout=120)
    except AssertionError as e:
        raise AssertionError(f"{str(e)[:500]}\n{both(mx1, mx2)()}") from None
    spf = received_spf(body)
    assert spf and spf[0] == b"Pass", body[:2000]
    assert re.search(rb"envelope-from=SRS0=[^=;]+=[^=;]+=example\.com=user1@example\.org", spf[1], re.I), spf
    assert f"client-ip={mx2.ip};".encode() in spf[1], spf


@pytest.mark.parametrize("failure", ["servfail", "timeout"])
def test_a_dns_failure_during_dkim_and_dmarc_checks_at_the_vps_never_bounces(bed, servers, failure):
    dkim_and_dmarc_survive_a_dns_failure(bed, *servers, failure)

@pytest.mark.parametrize("failure", ["servfail", "timeout"])
def test_a_dns_failure_of_an_uncached_dkim_key_at_the_vps_never_bounces_unaligned_mail(bed, servers, failure):
    """A p=reject domain's mail signed by mx1, SPF not aligned, its key (never fetched by the VPS)
    failing: the VPS defers it (its OpenDKIM's final policy script), never refuses it."""
    uncached_key_failure_never_bounces(bed, *servers, failure, selector=f"vps-{failure}")

@pytest.mark.parametrize("failure", ["servfail", "timeout"])
def test_a_dns_failure_of_the_senders_spf_record_at_the_vps_never_bounces(bed, servers, failure):
    """example.com's SPF record is `redirect=_spf.example.com` and that name fails: policyd-spf on
    the VPS gets a temperror. (The bed fails a name with all its types and everything below it:
    failing example.com itself would fail its MX and A lookups and its DKIM key too.)"""
    mx1, mx2 = servers
    bed.dns.txt("_spf.example.com", f"v=spf1 ip4:{mx1.ip} -all")
    bed.dns.txt("example.com", "v=spf1 redirect=_spf.example.com")
    try:
        path, message = send_through_dns_failure(bed, ["_spf.example.com"], failure, mx1, USER1, PW1, mx2,
                                                 USER2, PW2)
    finally:
        bed.dns.txt("example.com", f"v=spf1 ip4:{mx1.ip} -all")
        bed.dns.remove_records("_spf.example.com")
    spf = received_spf(message)
    assert spf and spf[0] == (b"TempError" if path == "delivered" else b"Pass"), (path, message[:2000])
    results = auth_results(message, mx2.fqdn)
    assert "dkim=fail" not in results and "dmarc=fail" not in results, f"{results}\n{both(mx1, mx2)()}"
