"""SPF (policyd-spf, ENABLE_POLICYD_SPF) and SRS (postsrsd, ENABLE_SRS) between servers.

Part 1, one container: the image's own policyd-spf with mailwright's rendered policyd-spf.conf,
against a DNS that answers what each case needs.

The container has no network (`--network none`): a stub DNS server on its 127.0.0.1:53 (this
module's STUB_DNS, standard library) serves the sender domains' SPF records, a SERVFAIL and a
silent name; policyd-spf is fed Postfix policy requests on stdin, exactly as Postfix's `spawn`
service runs it. Fail -> 550, Pass/SoftFail -> a Received-SPF header, SERVFAIL and a timeout ->
a deferral (4xx), never a 5xx. tests/e2e/test_srs.py shows Postfix asking it on port 25.

Part 2, the DNS test bed (tests/harness/dnsbed.py): mx1.example.test, mx2.example.org (SPF and
SRS on) and mx3.example.net (SPF on) on an internal network, resolving through the bed's DNS, which
carries their MX and SPF records; mail really goes over port 25 between them. An SPF-failing
client is refused by mx2 (550), mx1's mail arrives with `Received-SPF: Pass`, a logged-in
submission is not SPF-checked, mail forwarded by mx2 through an alias to example.net passes
SPF at mx3 thanks to SRS, and SERVFAIL or a timeout in the SPF lookups gives a 4xx.
"""

from __future__ import annotations

import json
import re
import textwrap
import time

import pytest

from harness import clients as c
from harness import dockercli as d

pytestmark = pytest.mark.docker

CLIENT = "198.51.100.7"

RUN = textwrap.dedent(r'''
    import json, pathlib, socket, struct, subprocess, sys, threading
    sys.path.insert(0, "/opt/mailwright")
    from ops import configdir, settings as S
    from ops.spf.daemon import DAEMON, BINARY, CONFIG

    TXT = {"spf-pass.test": "v=spf1 ip4:198.51.100.7 -all", "spf-soft.test": "v=spf1 ip4:192.0.2.1 ~all",
           "spf-fail.test": "v=spf1 ip4:192.0.2.1 -all"}
    RCODE = {"servfail.test": 2}
    SILENT = {"timeout.test"}

    def name_at(msg, i):
        labels = []
        while msg[i]:
            labels.append(msg[i + 1:i + 1 + msg[i]].decode()); i += 1 + msg[i]
        return ".".join(labels).lower(), i + 1

    def dns():
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); sock.bind(("127.0.0.1", 53))
        tcp = socket.create_server(("127.0.0.1", 53))     # a TCP retry finds nobody answering either
        while True:
            q, peer = sock.recvfrom(512)
            name, end = name_at(q, 12)
            qtype = struct.unpack("!H", q[end:end + 2])[0]
            if name in SILENT:
                continue
            rcode = RCODE.get(name, 0 if name in TXT else 3)
            answers = b""
            if rcode == 0 and qtype == 16:
                txt = TXT[name].encode()
                rdata = bytes([len(txt)]) + txt
                answers = b"\xc0\x0c" + struct.pack("!HHIH", 16, 1, 60, len(rdata)) + rdata
            flags = 0x8400 | (q[2] & 1) << 8 | rcode
            header = q[:2] + struct.pack("!HHHHH", flags, 1, 1 if answers else 0, 0, 0)
            sock.sendto(header + q[12:end + 4] + answers, peer)

    threading.Thread(target=dns, daemon=True).start()
    pathlib.Path("/etc/resolv.conf").write_text("nameserver 127.0.0.1\noptions timeout:2 attempts:1\n")

    folder = pathlib.Path("/tmp/config"); folder.mkdir()
    s = S.load(environ={"MAILWRIGHT_INIT": "container", "ENABLE_POLICYD_SPF": "1"}, fqdn="mail.example.test")
    for f in DAEMON.files(s, configdir.read(folder), None):
        pathlib.Path(f.path).write_text(f.content)

    out = {}
    for domain in ["spf-pass.test", "spf-soft.test", "spf-fail.test", "servfail.test", "timeout.test"]:
        request = ("request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n"
                   "client_address=198.51.100.7\nclient_name=unknown\nhelo_name=mx." + domain + "\n"
                   "sender=someone@" + domain + "\nrecipient=user@example.test\ninstance=1\n\n")
        p = subprocess.run([BINARY, CONFIG], input=request, capture_output=True, text=True, timeout=120)
        out[domain] = p.stdout.strip()
    print(json.dumps(out))
''')


@pytest.fixture(scope="module")
def verdicts(image):
    name = d.unique_name("spf")
    try:
        out = d.docker("run", "--rm", "--name", name, "--network", "none", "--entrypoint", "python3",
                       image, "-c", RUN, timeout=300).stdout
    finally:
        d.rm(name)
    return json.loads(out.strip().splitlines()[-1])


def test_pass_and_softfail_are_recorded_in_received_spf(verdicts):
    assert verdicts["spf-pass.test"].lower().startswith("action=prepend received-spf: pass (mailfrom)"), verdicts
    assert f"client-ip={CLIENT}" in verdicts["spf-pass.test"]
    assert verdicts["spf-soft.test"].lower().startswith("action=prepend received-spf: softfail"), verdicts


def test_fail_is_refused_with_550(verdicts):
    assert verdicts["spf-fail.test"].startswith("action=550 5.7.23 "), verdicts


@pytest.mark.parametrize("domain", ["servfail.test", "timeout.test"])
def test_dns_trouble_defers_never_rejects(verdicts, domain):
    action = verdicts[domain]
    # Postfix answers DEFER_IF_PERMIT with 450 once the other restrictions permit.
    assert action.lower().startswith("action=defer_if_permit 4."), verdicts
    assert "550" not in action and " 5." not in action


# --- part 2: the DNS test bed -----------------------------------------------------------------------

USER1, PW1 = "user1@example.test", "user1-Secret!"
USER2, PW2 = "user2@example.org", "user2-Secret!"
USER3, PW3 = "user3@example.net", "user3-Secret!"
FORWARD = "fwd@example.org"                       # on mx2: an alias to USER3 on mx3
BED_ENV = {"SSL_TYPE": "manual", "SSL_CERT_PATH": "/tmp/docker-mailserver/ssl/cert.pem",
           "SSL_KEY_PATH": "/tmp/docker-mailserver/ssl/key.pem", "ENABLE_OPENDKIM": "0", "ENABLE_OPENDMARC": "0",
           "ENABLE_POLICYD_SPF": "1", "PERMIT_DOCKER": "none"}


@pytest.fixture(scope="module")
def servers(bed):
    mx1 = bed.server("mx1.example.test", accounts={USER1: PW1}, env=BED_ENV, start=False)
    mx2 = bed.server("mx2.example.org", accounts={USER2: PW2}, env={**BED_ENV, "ENABLE_SRS": "1"}, start=False,
                     config=lambda cfg: cfg.alias(FORWARD, USER3))
    mx3 = bed.server("mx3.example.net", accounts={USER3: PW3}, env=BED_ENV, start=False)
    for box in (mx1, mx2, mx3):
        box.start(wait=False)
    for box in (mx1, mx2, mx3):
        box.wait_ready()
    # Each domain's mail leaves from its own server only.
    for box in (mx1, mx2, mx3):
        bed.dns.txt(box.domain, f"v=spf1 ip4:{box.ip} -all")
    return mx1, mx2, mx3


def rcpt(box, sender: str, rcpt_to: str, helo: str = "client.example.com") -> tuple[int, str]:
    with box.smtp(25) as smtp:
        smtp.ehlo(helo)
        code, text = smtp.mail(sender)
        assert code == 250, (code, text)
        code, text = smtp.rcpt(rcpt_to)
        return code, text.decode(errors="replace")


def test_spf_failing_client_is_refused(bed, servers):
    _, mx2, _ = servers
    # The test's own address (bed.gateway) is not in example.test's SPF record.
    code, text = rcpt(mx2, USER1, USER2)
    assert code == 550 and "5.7.23" in text and "SPF" in text, (code, text)


def test_pass_is_recorded_and_a_logged_in_submission_is_not_checked(bed, servers):
    mx1, mx2, _ = servers
    tok = c.token("spfpass")
    # From bed.gateway, which example.test's SPF record does not list: a logged-in user on 587
    # is accepted all the same (mx1 runs policyd-spf too).
    assert mx1.submit(USER1, PW1, c.make_message(USER1, USER2, tok), to=[USER2]) == {}
    body = mx2.wait_for_message(USER2, PW2, tok)
    header = re.search(rb"^Received-SPF: (\S+)(.*)$", body, re.M)
    assert header and header.group(1) == b"Pass", body[:2000]
    assert f"client-ip={mx1.ip};".encode() in header.group(2) and f"envelope-from={USER1}".encode() in header.group(2)


def test_forwarding_through_an_alias_passes_spf_at_the_next_hop_thanks_to_srs(bed, servers):
    mx1, mx2, mx3 = servers
    tok = c.token("srsfwd")
    assert mx1.submit(USER1, PW1, c.make_message(USER1, FORWARD, tok), to=[FORWARD]) == {}
    body = mx3.wait_for_message(USER3, PW3, tok, timeout=90)
    header = re.search(rb"^Received-SPF: (\S+)(.*)$", body, re.M)
    assert header and header.group(1) == b"Pass", body[:2000]
    # mx2 sent it with an SRS address of its own domain (example.test's record lists mx1 only);
    # policyd-spf shows the sender in lower case (SRS hashes are checked case-insensitively).
    assert re.search(rb"envelope-from=SRS0=[^=;]+=[^=;]+=example\.test=user1@example\.org", header.group(2), re.I), header
    assert f"client-ip={mx2.ip};".encode() in header.group(2)
    assert re.search(rb"^Return-Path: <SRS0=[^>]*=example\.test=user1@example\.org>", body, re.M | re.I), body[:2000]


@pytest.mark.parametrize("failure", ["servfail", "timeout"])
def test_dns_trouble_during_spf_defers_never_bounces(bed, servers, failure):
    _, mx2, _ = servers
    # The sender's domain itself resolves (reject_unknown_sender_domain passes); its SPF record
    # includes a name whose lookups fail.
    bed.dns.host("mail.broken-spf.test", "192.0.2.25")
    bed.dns.mx("broken-spf.test", "mail.broken-spf.test")
    bed.dns.txt("broken-spf.test", "v=spf1 include:_spf.flaky.example.net -all")
    bed.dns.fail("flaky.example.net", failure)
    try:
        code, text = rcpt(mx2, "someone@broken-spf.test", USER2)
    finally:
        bed.dns.heal("flaky.example.net")
    assert 400 <= code < 500 and "SPF" in text, (code, text)
