"""Postscreen's DNSBL check (issue 9: ENABLE_DNSBL, POSTSCREEN_ACTION) on the test bed.

The bed's DNS server serves the blocklist zones docker-mailserver queries (zen.spamhaus.org,
b.barracudacentral.org, list.dnswl.org, ...): a client is "listed" when its reversed address
under a zone has an A record 127.0.x.y. Each probe comes from a new client address (postscreen
caches a client that passed), and the probes of one configuration run at once: each of them
waits postscreen's greet test (~6 s) once.
"""

from __future__ import annotations

import ipaddress
import smtplib
from concurrent.futures import ThreadPoolExecutor

import pytest

pytestmark = pytest.mark.docker

USER, PW = "user@example.test", "user-Secret!"
SENDER = "sender@example.test"
ENV = {"SSL_TYPE": "manual", "SSL_CERT_PATH": "/tmp/docker-mailserver/ssl/cert.pem",
       "SSL_KEY_PATH": "/tmp/docker-mailserver/ssl/key.pem", "ENABLE_OPENDKIM": "0", "ENABLE_OPENDMARC": "0",
       "ENABLE_POLICYD_SPF": "0", "ENABLE_AMAVIS": "0", "ENABLE_DNSBL": "1", "POSTSCREEN_ACTION": "enforce"}


def listing(ip: str, zone: str) -> str:
    """The name a DNSBL lookup of `ip` asks for: `4.3.2.1.zone`."""
    return ".".join(reversed(ipaddress.IPv4Address(ip).exploded.split("."))) + "." + zone


def probe(server, source: str) -> tuple[str, int, str]:
    """Connect to port 25 from `source`: ("greeting", code, text) when refused at the greeting,
    else ("rcpt", code, text) of RCPT TO a local user (no message is sent)."""
    client = smtplib.SMTP(local_hostname="client.example.net", timeout=60, source_address=(source, 0))
    try:
        code, text = client.connect(server.ip, 25)
        if code != 220:
            return "greeting", code, text.decode(errors="replace")
        client.ehlo()
        code, _ = client.mail(SENDER)
        assert code == 250, code
        code, text = client.rcpt(USER)
        return "rcpt", code, text.decode(errors="replace")
    except smtplib.SMTPServerDisconnected as e:
        return "greeting", 0, f"disconnected: {e}"
    finally:
        try:
            client.close()
        except OSError:
            pass


def probe_all(server, sources: dict[str, str]) -> dict[str, tuple[str, int, str]]:
    with ThreadPoolExecutor(len(sources)) as pool:
        futures = {case: pool.submit(probe, server, ip) for case, ip in sources.items()}
        return {case: f.result() for case, f in futures.items()}


@pytest.fixture(scope="module")
def mx(bed):
    return bed.server("mx.example.test", accounts={USER: PW}, env=dict(ENV))


def test_listed_clients_are_refused_per_weights_and_others_accepted(bed, mx):
    ips = {case: bed.host_address() for case in
           ("zen", "unlisted", "two-light", "light-and-barracuda", "zen-but-dnswl", "zen-out-of-range")}
    bed.dns.set(listing(ips["zen"], "zen.spamhaus.org"), "A", "127.0.0.2")                # 3
    bed.dns.set(listing(ips["two-light"], "psbl.surriel.com"), "A", "127.0.0.2")          # 1
    bed.dns.set(listing(ips["two-light"], "bl.spameatingmonkey.net"), "A", "127.0.0.2")   # + 1 = 2
    bed.dns.set(listing(ips["light-and-barracuda"], "psbl.surriel.com"), "A", "127.0.0.2")        # 1
    bed.dns.set(listing(ips["light-and-barracuda"], "b.barracudacentral.org"), "A", "127.0.0.2")  # + 2 = 3
    bed.dns.set(listing(ips["zen-but-dnswl"], "zen.spamhaus.org"), "A", "127.0.0.4")      # 3
    bed.dns.set(listing(ips["zen-but-dnswl"], "list.dnswl.org"), "A", "127.0.10.1")       # - 3 = 0
    bed.dns.set(listing(ips["zen-out-of-range"], "zen.spamhaus.org"), "A", "127.0.0.12")  # not in [2..11]

    got = probe_all(mx, ips)

    for case in ("zen", "light-and-barracuda"):
        stage, code, text = got[case]
        assert (stage, code) == ("rcpt", 550) and "blocked using" in text, (case, got[case], mx.diagnostics())
    assert "zen.spamhaus.org" in got["zen"][2]
    for case in ("unlisted", "two-light", "zen-but-dnswl", "zen-out-of-range"):
        assert got[case][:2] == ("rcpt", 250), (case, got[case], mx.diagnostics())
    log = mx.mail_log()
    assert f"DNSBL rank 3 for [{ips['zen']}]" in log, log[-3000:]


def test_a_blocklist_that_fails_or_times_out_counts_nothing(bed, mx):
    """Bad DNS never refuses a client: SERVFAIL or no answer from a listed zone scores 0."""
    ips = {case: bed.host_address() for case in ("zen-timeout", "psbl-servfail")}
    bed.dns.set(listing(ips["zen-timeout"], "zen.spamhaus.org"), "A", "127.0.0.2")             # would be 3
    bed.dns.set(listing(ips["psbl-servfail"], "psbl.surriel.com"), "A", "127.0.0.2")           # would be 1
    bed.dns.set(listing(ips["psbl-servfail"], "b.barracudacentral.org"), "A", "127.0.0.2")     # 2
    bed.dns.fail("zen.spamhaus.org", "timeout")
    bed.dns.fail("psbl.surriel.com", "servfail")
    try:
        got = probe_all(mx, ips)
    finally:
        bed.dns.heal("zen.spamhaus.org")
        bed.dns.heal("psbl.surriel.com")
    for case, result in got.items():
        assert result[:2] == ("rcpt", 250), (case, result, mx.diagnostics())


def test_drop_disconnects_a_listed_client_with_521(bed, mx):
    mx.recreate(env={**ENV, "POSTSCREEN_ACTION": "drop"})
    assert mx.postconf("postscreen_dnsbl_action") == "drop"
    listed, unlisted = bed.next_client_ip(), bed.host_address()
    bed.dns.set(listing(listed, "zen.spamhaus.org"), "A", "127.0.0.3")
    # the listed client is a container of its own on the network
    script = ("import smtplib, sys\n"
              "s = smtplib.SMTP(local_hostname='client.example.net', timeout=60)\n"
              "code, text = s.connect(sys.argv[1], 25)\n"
              "print(code, text.decode(errors='replace'))\n")
    with ThreadPoolExecutor(1) as pool:
        other = pool.submit(probe, mx, unlisted)
        out = bed.client(script, mx.ip, ip=listed).stdout.strip()
        assert other.result()[:2] == ("rcpt", 250), (other.result(), mx.diagnostics())
    assert out.startswith("521 ") and "blocked using zen.spamhaus.org" in out, (out, mx.diagnostics())


def test_dnsbl_off_accepts_a_listed_client(bed, mx):
    mx.recreate(env={**ENV, "ENABLE_DNSBL": "0"})
    assert mx.postconf("postscreen_dnsbl_sites") == ""
    listed = bed.host_address()
    bed.dns.set(listing(listed, "zen.spamhaus.org"), "A", "127.0.0.2")
    assert probe(mx, listed)[:2] == ("rcpt", 250), mx.diagnostics()
