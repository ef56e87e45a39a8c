"""`setup dns` and `setup dns --check` on the test bed (issue 12): the records a server prints,
published in a real DNS server (unbound), check clean; zones that are wrong or missing
records fail, naming each record; a resolver failure is "unknown", never "missing".
"""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.docker

ENV = {"SSL_TYPE": "manual", "SSL_CERT_PATH": "/tmp/docker-mailserver/ssl/cert.pem",
       "SSL_KEY_PATH": "/tmp/docker-mailserver/ssl/key.pem", "ENABLE_OPENDKIM": "0",
       "ENABLE_OPENDMARC": "0", "ENABLE_POLICYD_SPF": "0", "ENABLE_AMAVIS": "0"}


@pytest.fixture(scope="module")
def mx(bed):
    box = bed.server("mx1.example.test", accounts={"user1@example.test": "pw1-Secret!",
                                                   "user1@example.net": "pw1-Secret!"}, env=ENV)
    box.setup("config", "dkim", "keysize", "2048")
    return box


def printed(box) -> list[dict]:
    return json.loads(box.setup("dns", "--json", "--address", box.ip).stdout)["records"]


def publish(bed, records: list[dict]) -> None:
    groups: dict[tuple[str, str], list[str]] = {}
    for r in records:
        groups.setdefault((r["name"], r["type"]), []).append(r["value"])
    for (name, rtype), values in groups.items():
        bed.dns.set(name, rtype, *values)


def check(box) -> tuple[int, dict[tuple[str, str, str], str], dict]:
    p = box.setup("dns", "--check", "--json", "--address", box.ip, check=False)
    out = json.loads(p.stdout)
    return p.returncode, {(f["type"], f["name"], f["status"]): f["severity"] for f in out["findings"]}, out


def test_the_printed_records_published_as_they_are_check_clean(bed, mx):
    records = printed(mx)
    types = {r["type"] for r in records}
    assert {"MX", "TXT", "A", "TLSA", "SRV", "CNAME"} <= types
    # Both domains of the accounts, and the DKIM keys setup config dkim made for them.
    assert {r["name"] for r in records if r["type"] == "MX"} == {"example.test.", "example.net."}
    assert [r for r in records if r["name"] == "mail._domainkey.example.net."]
    publish(bed, records)
    code, found, out = check(mx)
    assert code == 0, json.dumps([f for f in out["findings"] if f["status"] != "ok"], indent=1)
    assert ("PTR", "11.25.231.10.in-addr.arpa.", "ok") in found
    assert ("TXT", "mail._domainkey.example.test.", "ok") in found


def test_wrong_missing_and_extra_records_are_named(bed, mx):
    publish(bed, printed(mx))
    bed.dns.set("example.net", "MX", "10 mx.elsewhere.example")                      # wrong
    bed.dns.remove_records("mail._domainkey.example.test", "TXT")                    # missing DKIM key
    bed.dns.set("_dmarc.example.net", "TXT", "v=DMARC1; p=none")                     # wrong policy
    bed.dns.add("example.test", "TXT", "v=spf1 a -all")                              # a second SPF
    bed.dns.remove_records("_smtp._tls.example.test", "TXT")                         # optional
    code, found, _ = check(mx)
    assert code == 2
    assert found[("MX", "example.net.", "wrong")] == "fail"
    assert found[("TXT", "mail._domainkey.example.test.", "missing")] == "fail"
    assert found[("TXT", "_dmarc.example.net.", "wrong")] == "fail"
    assert found[("TXT", "example.test.", "extra")] == "fail"
    assert found[("TXT", "_smtp._tls.example.test.", "missing")] == "warn"
    assert ("TXT", "example.test.", "ok") in found          # the right SPF is still there


def test_a_failing_zone_is_unknown_not_missing(bed, mx):
    publish(bed, printed(mx))
    bed.dns.fail("example.net", "servfail")
    try:
        code, found, _ = check(mx)
    finally:
        bed.dns.heal("example.net")
    assert code == 2
    assert found[("MX", "example.net.", "unknown")] == "fail"
    assert not any(name.endswith("example.net.") and status == "missing" for _, name, status in found)
    assert ("MX", "example.test.", "ok") in found


def test_reverse_dns_must_name_the_fqdn(bed, mx):
    publish(bed, printed(mx))
    bed.dns.ptr(mx.ip, "host-11.provider.example")
    code, found, _ = check(mx)
    assert code == 2
    assert found[("PTR", "11.25.231.10.in-addr.arpa.", "wrong")] == "fail"


# --- `./setup.sh check` on the bed: DKIM signature verified against the published key ----------------

def run_check(box, bed, ca) -> tuple[int, dict[str, str], dict]:
    import os
    import subprocess
    import sys
    from pathlib import Path
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(repo), "MAILWRIGHT_SETUP_DIR": str(repo)}
    p = subprocess.run([sys.executable, "-m", "mailwright.hostsetup", "-c", box.name, "check",
                        "--address", box.ip, "--resolver", f"{bed.dns.ip}:53", "--cafile", str(ca),
                        "--wait", "60", "--json"], capture_output=True, text=True, env=env, timeout=600)
    out = json.loads(p.stdout)
    return p.returncode, {r["check"]: r["status"] for r in out["results"]}, out


@pytest.fixture(scope="module")
def signer(bed, mx, tls, tmp_path_factory):
    box = bed.server("mx3.example.org", accounts={"user3@example.org": "pw3-Secret!"},
                     env={**ENV, "ENABLE_OPENDKIM": "1"})
    box.setup("config", "dkim", "keysize", "2048")
    ca = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.write_bytes(tls.ca_pem())
    box.ca = ca
    return box


def test_check_passes_with_the_published_dkim_key_and_fails_without_it(bed, signer):
    publish(bed, printed(signer))
    code, got, out = run_check(signer, bed, signer.ca)
    assert got.get("dkim") == "pass", json.dumps([r for r in out["results"] if r["status"] != "pass"], indent=1)
    assert code == 0, json.dumps([r for r in out["results"] if r["status"] != "pass"], indent=1)
    bed.dns.remove_records("mail._domainkey.example.org", "TXT")
    code, got, out = run_check(signer, bed, signer.ca)
    assert code == 2
    assert got["dkim"] == "fail"
    assert got["dns TXT mail._domainkey.example.org."] == "fail"
