"""The test bed of issue 10: two mailwright servers and a DNS server on an internal network.

mx1.example.test sends to a user of mx2.example.org over port 25, found by an MX lookup in the
bed's DNS (no transport_maps); both servers resolve through the bed only, and records change
live between cases.
"""

from __future__ import annotations

import time

import pytest

from harness import clients as c

pytestmark = pytest.mark.docker

USER1, PW1 = "user1@example.test", "user1-Secret!"
USER2, PW2 = "user2@example.org", "user2-Secret!"
# docker-mailserver settings as its users write them (the milters do not exist yet: off)
ENV = {"SSL_TYPE": "manual", "SSL_CERT_PATH": "/tmp/docker-mailserver/ssl/cert.pem",
       "SSL_KEY_PATH": "/tmp/docker-mailserver/ssl/key.pem", "ENABLE_OPENDKIM": "0", "ENABLE_OPENDMARC": "0",
       "ENABLE_POLICYD_SPF": "0", "ENABLE_AMAVIS": "0", "ENABLE_SPAMASSASSIN": "0", "ENABLE_CLAMAV": "0",
       "ENABLE_FAIL2BAN": "0", "PERMIT_DOCKER": "none"}


@pytest.fixture(scope="module")
def servers(bed):
    t0 = time.monotonic()
    mx1 = bed.server("mx1.example.test", accounts={USER1: PW1}, env=ENV, start=False)
    mx2 = bed.server("mx2.example.org", accounts={USER2: PW2}, env=ENV, start=False)
    for box in (mx1, mx2):
        box.start(wait=False)
    for box in (mx1, mx2):
        box.wait_ready()
    print(f"\ntest bed: two servers ready in {time.monotonic() - t0:.1f}s; {bed.timings}")
    return mx1, mx2


def test_long_txt_records_are_split_and_changed_live(bed):
    spf = "v=spf1 " + " ".join(f"ip4:192.0.2.{i}" for i in range(60)) + " -all"     # > 255 bytes
    assert len(spf) > 600
    bed.dns.txt("long.example.net", spf)
    status, answers = bed.dns.query("long.example.net", "TXT")
    assert status == "NOERROR" and len(answers) == 1, (status, answers)
    strings = answers[0][1:-1].split('" "')
    assert len(strings) == -(-len(spf) // 255) and all(len(s) <= 255 for s in strings), strings
    assert "".join(strings) == spf

    bed.dns.txt("long.example.net", 'say "hi"', "second")
    status, answers = bed.dns.query("long.example.net", "TXT")
    assert sorted(answers) == sorted(['"say \\"hi\\""', '"second"']), answers
    bed.dns.remove_records("long.example.net")
    assert bed.dns.query("long.example.net", "TXT")[0] == "NXDOMAIN"


def test_a_name_can_servfail_or_time_out_and_heal(bed):
    bed.dns.host("flaky.example.net", "192.0.2.9")
    bed.dns.fail("example.net", "servfail")
    assert bed.dns.query("flaky.example.net")[0] == "SERVFAIL"
    bed.dns.fail("example.net", "timeout")
    assert bed.dns.query("flaky.example.net")[0] == "TIMEOUT"
    bed.dns.heal("example.net")
    assert bed.dns.query("flaky.example.net") == ("NOERROR", ["192.0.2.9"])
    assert bed.dns.query("9.2.0.192.in-addr.arpa", "PTR") == ("NOERROR", ["flaky.example.net."])


# Names a DKIM/DMARC case fails and heals (tests/e2e/test_mail_auth.py), and names other cases of
# the same session rely on: other domains' SPF/MX, the servers' A/PTR, a DNSBL, names without records.
FAILED = ("mail._domainkey.example.com", "_dmarc.example.com")
OTHERS = [("example.com", "TXT"), ("example.com", "MX"), ("mx1.example.com", "A"), ("mx2.example.org", "A"),
          ("example.org", "MX"), ("example.org", "TXT"), ("nothing.example.org", "TXT"),
          ("nothing.example.net", "A"), ("2.0.0.127.zen.spamhaus.org", "A"), ("example.test", "MX"),
          ("11.2.0.192.in-addr.arpa", "PTR"), ("nothing.arpa", "A"), ("zzz", "A"),
          ("quote.example.net", "TXT")]


@pytest.mark.parametrize("mode", ["servfail", "timeout"])
def test_failing_and_healing_names_leaves_every_other_name_as_it_was(bed, mode):
    """Only the failed names fail, while they fail and after they heal: no other name times out,
    a name without records stays NXDOMAIN at once, and the healed names answer their records."""
    keep = bed.dns.snapshot()
    try:
        bed.dns.host("mx1.example.com", "192.0.2.11")
        bed.dns.mx("example.com", "mx1.example.com")
        bed.dns.txt("example.com", "v=spf1 ip4:192.0.2.11 -all")
        bed.dns.host("mx2.example.org", "192.0.2.12")
        bed.dns.mx("example.org", "mx2.example.org")
        bed.dns.txt("example.org", "v=spf1 ip4:192.0.2.12 -all")
        bed.dns.txt("quote.example.net", "it's \"quoted\"", "\\ and ' again")
        bed.dns.txt("mail._domainkey.example.com", "v=DKIM1; k=rsa; p=MIGf")
        bed.dns.txt("_dmarc.example.com", "v=DMARC1; p=reject")
        healthy = _ask(bed, OTHERS + [(n, "TXT") for n in FAILED])
        assert all(status in ("NOERROR", "NXDOMAIN") for status, _ in healthy.values()), healthy
        assert healthy[("example.org", "MX")] == ("NOERROR", ["10 mx2.example.org."]), healthy
        assert healthy[("nothing.example.org", "TXT")] == ("NXDOMAIN", []), healthy

        for name in FAILED:
            bed.dns.fail(name, mode)
        failing = _ask(bed, OTHERS)
        assert _changed(healthy, failing) == {}, "other names changed while two names fail"
        for name in FAILED:
            assert bed.dns.query(name, "TXT")[0] == mode.upper(), name

        for name in FAILED:
            bed.dns.heal(name)
        healed = _ask(bed, OTHERS + [(n, "TXT") for n in FAILED])
        assert _changed(healthy, healed) == {}, "names changed after the failure healed"
    finally:
        bed.dns.reset(keep)


def _ask(bed, questions) -> dict:
    """{(name, type): (status, answers in any order)}: an RRset's order is not significant."""
    out = {}
    for q in questions:
        status, answers = bed.dns.query(*q)
        out[q] = (status, sorted(answers))
    return out


def _changed(before: dict, after: dict) -> dict:
    return {f"{name} {rtype}": (before[(name, rtype)], got) for (name, rtype), got in after.items()
            if got != before[(name, rtype)]}


def test_servers_resolve_only_through_the_bed(bed, servers):
    mx1, mx2 = servers
    assert mx1.read_file("/etc/resolv.conf").split()[:2] == ["nameserver", bed.dns.ip]
    assert mx1.resolve("mx2.example.org") == [mx2.ip]
    bed.dns.host("live.example.net", "192.0.2.77")           # added while mx1 runs
    assert mx1.resolve("live.example.net") == ["192.0.2.77"]
    bed.dns.fail("live.example.net")
    assert mx1.resolve("live.example.net") == []
    bed.dns.heal("live.example.net")
    assert mx1.resolve("live.example.net") == ["192.0.2.77"]


def test_mx1_delivers_to_mx2_through_the_mx_record(bed, servers):
    mx1, mx2 = servers
    # The MX names a host that is neither server's FQDN: only the MX lookup can route there.
    bed.dns.host("inbound.example.org", mx2.ip, ptr=False)
    bed.dns.mx("example.org", "inbound.example.org")
    assert "example.org" not in mx1.postconf("transport_maps")
    assert mx1.postconf("relayhost") == ""

    token = c.token("bed")
    refused = mx1.submit(USER1, PW1, c.make_message(USER1, USER2, token), to=[USER2])
    assert refused == {}
    body = mx2.wait_for_message(USER2, PW2, token)
    assert b"from mx1.example.test (mx1.example.test [" + mx1.ip.encode() + b"])" in body, body[:2000]
    sent = [line for line in mx1.mail_log().splitlines() if "status=sent" in line and USER2 in line]
    assert sent and f"relay=inbound.example.org[{mx2.ip}]:25" in sent[-1], mx1.mail_log()[-3000:]
