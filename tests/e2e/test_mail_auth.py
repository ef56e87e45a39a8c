"""DKIM and DMARC between two servers over a real DNS (issue 10), on the test bed
(tests/harness/dnsbed.py): mx1.example.com signs, mx2.example.org verifies.

The DKIM public key is the one `setup config dkim` generated on mx1 (read from its config folder,
published in the bed's DNS); SPF and DMARC records are set per case. Both servers deliver to each
other over port 25 through the bed's MX records. Every wait is a bounded poll.

The signer's domain is not under `test.` (RFC 6761): OpenDKIM's libunbound answers names there
itself (NXDOMAIN), as docker-mailserver's does; a real signer's domain is never there.
"""

from __future__ import annotations

import re
import time

import pytest

from harness import clients as c

pytestmark = pytest.mark.docker

USER1, PW1 = "user1@example.com", "user1-Secret!"
USER2, PW2 = "user2@example.org", "user2-Secret!"
ENV = {"SSL_TYPE": "manual", "SSL_CERT_PATH": "/tmp/docker-mailserver/ssl/cert.pem",
       "SSL_KEY_PATH": "/tmp/docker-mailserver/ssl/key.pem", "ENABLE_OPENDKIM": "1",
       "ENABLE_OPENDMARC": "1", "ENABLE_POLICYD_SPF": "0"}


def txt_record(zone_line: str) -> str:
    """`mail._domainkey IN TXT ( "v=DKIM1; ..." "p=..." )` -> the record's text."""
    return "".join(re.findall(r'"([^"]*)"', zone_line))


@pytest.fixture(scope="module")
def servers(bed):
    mx1 = bed.server("mx1.example.com", accounts={USER1: PW1}, env=dict(ENV), start=False)
    mx2 = bed.server("mx2.example.org", accounts={USER2: PW2}, env=dict(ENV), start=False)
    for box in (mx1, mx2):
        box.start(wait=False)
    for box in (mx1, mx2):
        box.wait_ready()
    mx1.setup("config", "dkim", "keysize", "1024", "domain", "example.com")
    key = (mx1.volumes.config / "opendkim" / "keys" / "example.com" / "mail.txt").read_text()
    bed.dns.txt("mail._domainkey.example.com", txt_record(key))
    bed.dns.txt("example.com", f"v=spf1 ip4:{mx1.ip} -all")
    bed.dns.txt("_dmarc.example.com", "v=DMARC1; p=reject")
    bed.dns.txt("example.org", f"v=spf1 ip4:{mx2.ip} -all")
    # mx1 signs once its change poller has applied the new key.
    deadline = time.monotonic() + 60
    while "mail._domainkey.example.com" not in mx1.read_file("/etc/opendkim/KeyTable"):
        assert time.monotonic() < deadline, mx1.diagnostics()
        time.sleep(0.5)
    return mx1, mx2


def auth_results(message: bytes, authserv: str) -> str:
    """Every Authentication-Results header of `authserv`, unfolded, one per line."""
    head = message.replace(b"\r\n", b"\n").split(b"\n\n", 1)[0].decode(errors="replace")
    head = re.sub(r"\n[ \t]+", " ", head)
    return "\n".join(line for line in head.split("\n")
                     if re.match(rf"Authentication-Results:\s*{re.escape(authserv)};", line, re.I))


def send_signed(mx1, mx2, what: str, timeout: float = 90) -> bytes:
    """user1@example.com -> user2@example.org through mx1 (587) and mx2 (25), until mx2 reports
    a DKIM result other than none (the first message may beat mx1's reload of its new key)."""
    deadline = time.monotonic() + timeout
    while True:
        tok = c.token("auth")
        assert mx1.submit(USER1, PW1, c.make_message(USER1, USER2, tok), to=[USER2]) == {}
        message = mx2.wait_for_message(USER2, PW2, tok, timeout=90)
        results = auth_results(message, mx2.fqdn)
        if "dkim=none" not in results or time.monotonic() > deadline:
            return message
        time.sleep(1)


def test_signed_mail_from_mx1_passes_dkim_and_dmarc_at_mx2(servers):
    mx1, mx2 = servers
    message = send_signed(mx1, mx2, "mx1 -> mx2")
    results = auth_results(message, mx2.fqdn)
    assert re.search(r"\bdkim=pass\b[^\n]*header\.d=example\.com", results), f"{results}\n{mx2.diagnostics()}"
    assert re.search(r"\bdmarc=pass\b[^\n]*header\.from=example\.com", results), f"{results}\n{mx2.diagnostics()}"


def test_a_spoofed_from_of_a_p_reject_domain_is_rejected_by_mx2(bed, servers):
    """user1 on mx1 writes `From: ceo@victim.example.net`: SPF passes for example.com but is not
    aligned, nothing signs for victim.example.net, and victim publishes p=reject: mx2 refuses it at
    SMTP time (550); it never reaches user2."""
    mx1, mx2 = servers
    bed.dns.txt("victim.example.net", "v=spf1 -all")
    bed.dns.txt("_dmarc.victim.example.net", "v=DMARC1; p=reject")
    tok = c.token("spoof")
    msg = c.make_message(USER1, USER2, tok)
    msg.replace_header("From", "ceo@victim.example.net")
    assert mx1.submit(USER1, PW1, msg, to=[USER2]) == {}
    deadline = time.monotonic() + 90
    pattern = re.compile(r"status=bounced \(host mx2\.example\.org\[[0-9.]+\] said: 550 5\.7\.1 [^\n]*DMARC")
    while not pattern.search(mx1.mail_log()):
        assert time.monotonic() < deadline, ("no DMARC rejection by mx2 in mx1's log", mx1.diagnostics(),
                                             mx2.diagnostics())
        time.sleep(1)
    with mx2.imaps() as imap:
        imap.login(USER2, PW2)
        assert c.find_message(imap, "INBOX", tok) is None


@pytest.mark.parametrize("failure", ["servfail", "timeout"])
def test_a_dns_failure_during_dkim_and_dmarc_checks_never_bounces(bed, servers, failure):
    """The DKIM key and the DMARC record of example.com fail to resolve at mx2: the message is
    accepted (temperror) or deferred (4xx), never bounced; once DNS answers it arrives."""
    dkim_and_dmarc_survive_a_dns_failure(bed, *servers, failure)


def dkim_and_dmarc_survive_a_dns_failure(bed, mx1, mx2, failure: str) -> None:
    """user1@example.com (signed by mx1) -> user2@example.org on mx2 while example.com's DKIM key and
    DMARC record fail: accepted with a temperror, or deferred and verified (pass) once DNS answers."""
    path, message = send_through_dns_failure(
        bed, ["mail._domainkey.example.com", "_dmarc.example.com"], failure, mx1, USER1, PW1, mx2, USER2, PW2)
    results = auth_results(message, mx2.fqdn)
    assert "dmarc=fail" not in results and "dkim=fail" not in results, f"{results}\n{mx2.diagnostics()}"
    if path == "delivered":
        # Accepted during the failure: OpenDKIM may still hold the key from an earlier message
        # (pass) or report temperror; OpenDMARC, without the record, says none (or temperror).
        dkim = re.findall(r"\bdkim=(\w+)", results)
        dmarc = re.findall(r"\bdmarc=(\w+)", results)
        assert dkim and set(dkim) <= {"pass", "temperror"}, f"accepted during the failure:\n{results}"
        assert dmarc and set(dmarc) <= {"none", "temperror"}, f"accepted during the failure:\n{results}"
        print(f"accepted during the failure: dkim={dkim} dmarc={dmarc}")
    else:
        assert re.search(r"\bdkim=pass\b[^\n]*header\.d=example\.com", results), results
        assert re.search(r"\bdmarc=pass\b[^\n]*header\.from=example\.com", results), results

# A domain whose mail mx1 signs but whose SPF never aligns at mx2: its messages leave with the
# envelope sender user1@example.com (SPF passes for example.com, not for this domain), as mail a
# mailing list, a forwarder or a newsletter service sends on a domain's behalf. Its DMARC record
# says p=reject: DKIM alone decides, as it does for forwarded mail.
LISTS = "lists.example.net"


def sign_for(bed, mx1, domain: str, selector: str, publish: bool = True) -> None:
    """A new key (`setup config dkim ... selector`, a rotation: it signs from now on) for `domain`
    on mx1, its record published (or not), and mx1 signing with it: a probe message to user1 on
    mx1 itself carries `s=<selector>` (mx2 never sees the probe: its OpenDKIM has never asked
    for the new key, whose cache is cold)."""
    mx1.setup("config", "dkim", "keysize", "1024", "selector", selector, "domain", domain)
    if publish:
        key = (mx1.volumes.config / "opendkim" / "keys" / domain / f"{selector}.txt").read_text()
        bed.dns.txt(f"{selector}._domainkey.{domain}", txt_record(key))
    deadline = time.monotonic() + 90
    while True:
        tok = c.token("probe")
        msg = c.make_message(USER1, USER1, tok)
        msg.replace_header("From", f"news@{domain}")
        assert mx1.submit(USER1, PW1, msg, to=[USER1]) == {}
        probe = mx1.wait_for_message(USER1, PW1, tok, timeout=60)
        if re.search(rb"^DKIM-Signature:[^\n]*(\n[ \t][^\n]*)*\bs=" + re.escape(selector.encode()) + rb";",
                     probe, re.M):
            return
        assert time.monotonic() < deadline, (f"mx1 does not sign with {selector} for {domain}", mx1.diagnostics())
        time.sleep(1)


@pytest.mark.parametrize("failure", ["servfail", "timeout"])
def test_a_dns_failure_of_an_uncached_dkim_key_never_bounces_unaligned_mail(bed, servers, failure):
    """Issue 10's rule where DKIM alone carries DMARC: lists.example.net (p=reject) mail signed by
    mx1, SPF not aligned at mx2, and the key record, which mx2 has never fetched, fails (SERVFAIL
    or a timeout). mx2 must not refuse it with a 5xx (a bounce): it defers it (4xx) or accepts it,
    and it arrives, verified, once DNS answers."""
    uncached_key_failure_never_bounces(bed, *servers, failure)


def uncached_key_failure_never_bounces(bed, mx1, mx2, failure: str, selector: str | None = None) -> None:
    """lists.example.net mail signed by mx1 with a new selector mx2 never asked for, SPF not
    aligned, the key record failing (`failure`): deferred or accepted, never bounced; verified once
    DNS answers."""
    selector = selector or f"cold-{failure}"
    bed.dns.txt(f"_dmarc.{LISTS}", "v=DMARC1; p=reject")
    sign_for(bed, mx1, LISTS, selector)
    # Two messages back to back: the second meets the failure as libunbound cached it (the same
    # reply OpenDKIM reads as "no key") when it comes within 5 s of the first lookup.
    path, message = send_through_dns_failure(bed, [f"{selector}._domainkey.{LISTS}"], failure, mx1, USER1, PW1,
                                             mx2, USER2, PW2, author=f"news@{LISTS}", burst=2)
    results = auth_results(message, mx2.fqdn)
    assert "dkim=fail" not in results and "dmarc=fail" not in results, f"{path}\n{results}\n{mx2.diagnostics()}"
    if path == "deferred":
        assert re.search(rf"\bdkim=pass\b[^\n]*header\.d={re.escape(LISTS)}", results), results
        assert re.search(rf"\bdmarc=pass\b[^\n]*header\.from={re.escape(LISTS)}", results), results


def test_a_signature_whose_key_does_not_exist_is_accepted_not_deferred(bed, servers):
    """NXDOMAIN is DNS's answer, not its failure: a message signed with a selector whose key was
    never published (nokey.example.net, p=none) is accepted at once with dkim=fail, as
    docker-mailserver's OpenDKIM does; never deferred (a retry would meet the same answer)."""
    mx1, mx2 = servers
    domain = "nokey.example.net"
    bed.dns.txt(f"_dmarc.{domain}", "v=DMARC1; p=none")
    sign_for(bed, mx1, domain, "unpublished", publish=False)
    start = len(mx1.mail_log())
    tok = c.token("nokey")
    msg = c.make_message(USER1, USER2, tok)
    msg.replace_header("From", f"news@{domain}")
    assert mx1.submit(USER1, PW1, msg, to=[USER2]) == {}
    try:
        message = mx2.wait_for_message(USER2, PW2, tok, timeout=90)
    except AssertionError as e:
        raise AssertionError(f"{str(e)[:300]}\n{mx1.mail_log()[start:]}\n{_milter_lines(mx2)}") from None
    results = auth_results(message, mx2.fqdn)
    assert re.search(r"\bdkim=fail\b[^\n]*header\.d=nokey\.example\.net", results), f"{results}\n{_milter_lines(mx2)}"
    deferred = [line for line in mx1.mail_log()[start:].splitlines() if "status=deferred" in line]
    assert not deferred, deferred


def send_through_dns_failure(bed, names: list[str], failure: str, sender_box, sender: str, pw: str,
                             receiver_box, rcpt: str, rpw: str, timeout: float = 180,
                             author: str | None = None, burst: int = 1) -> tuple[str, bytes]:
    """`names` fail (`failure`) while sender_box sends sender -> rcpt over port 25 to receiver_box.

    Waits until the message is either in rcpt's INBOX ("delivered": accepted during the failure)
    or deferred by the receiver with a 4xx in the sender's log ("deferred", the 4xx line kept in
    the path's text); then heals, flushes the sender's queue and returns (path, message) once it
    arrives. Asserts it never bounced and that a deferral was the receiver's 4xx. Only these names
    fail (tests/e2e/test_dnsbed.py checks the bed for that): the sender's MX lookup answers.
    `author`: the message's From (the envelope sender stays `sender`). `burst`: that many
    messages, submitted back to back (the first is returned; each must arrive, none bounce)."""
    start = len(sender_box.mail_log())
    toks = [c.token(f"dns-{failure}") for _ in range(burst)]
    line = re.compile(r"^.*to=<" + re.escape(rcpt) + r">.*status=(deferred|bounced|sent) \((.*)\)$", re.M)
    for name in names:
        bed.dns.fail(name, failure)
    try:
        for tok in toks:
            msg = c.make_message(sender, rcpt, tok)
            if author:
                msg.replace_header("From", author)
            assert sender_box.submit(sender, pw, msg, to=[rcpt]) == {}
        deadline = time.monotonic() + timeout
        while True:
            found = [m for m in line.finditer(sender_box.mail_log()[start:]) if m.group(1) != "sent"]
            if len(found) + sum(_has_message(receiver_box, rcpt, rpw, tok) for tok in toks) >= burst:
                break
            assert time.monotonic() < deadline, (sender_box.diagnostics(), receiver_box.diagnostics())
            time.sleep(1)
    finally:
        for name in names:
            bed.dns.heal(name)
    for m in found:
        assert m.group(1) == "deferred" and re.search(r"\bsaid: 4\d\d ", m.group(2)), \
            f"not a 4xx deferral by {receiver_box.fqdn}: {m.group(0)}\n{_milter_lines(receiver_box)}"
    messages = {}
    if found:
        path = "deferred: " + found[0].group(2)
        # A sender retries minutes later (Postfix: 300 s at least); the flush here comes once the
        # receiver's resolver no longer holds the failure (libunbound keeps a SERVFAIL for 5 s,
        # unbound's NORR_TTL), then again until every message arrived.
        time.sleep(6)
        deadline = time.monotonic() + 180
        for tok in toks:
            while tok not in messages:
                sender_box.exec("postqueue", "-f")
                try:
                    messages[tok] = receiver_box.wait_for_message(rcpt, rpw, tok, timeout=15)
                except AssertionError:
                    assert time.monotonic() < deadline, (f"{tok} not delivered after the heal",
                                                         sender_box.diagnostics(), receiver_box.diagnostics())
    else:
        path = "delivered"
        for tok in toks:
            messages[tok] = receiver_box.wait_for_message(rcpt, rpw, tok, timeout=120)
    bounced = [m.group(0) for m in line.finditer(sender_box.mail_log()[start:]) if m.group(1) == "bounced"]
    assert not bounced, f"{bounced}\n{_milter_lines(receiver_box)}"
    print(f"{failure} of {names}: {path}")
    return ("delivered" if path == "delivered" else "deferred"), messages[toks[0]]


def _has_message(box, user: str, password: str, tok: str) -> bool:
    try:
        with box.imaps() as imap:
            imap.login(user, password)
            return c.find_message(imap, "INBOX", tok) is not None
    except OSError:
        return False


def _milter_lines(box, tail: int = 40) -> str:
    """The receiver's OpenDKIM and OpenDMARC log lines (why a message was refused)."""
    log = box.exec("sh", "-c", "grep -h -e opendkim -e opendmarc /var/log/mail/mail.log | tail -n %d" % tail,
                   check=False).stdout
    return f"--- {box.fqdn} OpenDKIM/OpenDMARC:\n{log}"
