"""`setup dns`: the records the domains need, and `--check` against a DNS server.

The check is run against a small authoritative responder started here (its
answers encoded by this test, not by mailwright's client); the end-to-end run
against a real DNS server is in tests/e2e.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import re
import socket
import struct
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from hypothesis import example, given, settings, strategies as st

from mailwright import dnsrecords

REPO = Path(__file__).resolve().parents[2]
TYPES = {"A": 1, "CNAME": 5, "PTR": 12, "MX": 15, "TXT": 16, "AAAA": 28, "SRV": 33, "TLSA": 52}


def wire_name(name: str) -> bytes:
    out = b""
    for label in name.rstrip(".").split("."):
        out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def rdata(rtype: str, value: str) -> bytes:
    if rtype == "A":
        return ipaddress.IPv4Address(value).packed
    if rtype == "AAAA":
        return ipaddress.IPv6Address(value).packed
    if rtype in ("CNAME", "PTR"):
        return wire_name(value)
    if rtype == "MX":
        pref, host = value.split()
        return struct.pack("!H", int(pref)) + wire_name(host)
    if rtype == "SRV":
        a, b, c, host = value.split()
        return struct.pack("!HHH", int(a), int(b), int(c)) + (b"\0" if host == "." else wire_name(host))
    if rtype == "TXT":
        raw = value.encode()
        return b"".join(bytes([len(raw[i:i + 200])]) + raw[i:i + 200] for i in range(0, len(raw), 200))
    if rtype == "TLSA":
        u, s, m, digest = value.split()
        return bytes([int(u), int(s), int(m)]) + bytes.fromhex(digest)
    raise ValueError(rtype)


class Responder:
    """Answers from `records` {(name, type): [values]}; names in `servfail` get SERVFAIL."""

    def __init__(self):
        self.records: dict[tuple[str, str], list[str]] = {}
        self.servfail: set[str] = set()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self.serve, daemon=True).start()

    def add(self, name: str, rtype: str, value: str) -> None:
        self.records.setdefault((name.lower().rstrip(".") + ".", rtype), []).append(value)

    def serve(self) -> None:
        while True:
            try:
                data, peer = self.sock.recvfrom(4096)
            except OSError:
                return
            qid = data[:2]
            off, labels = 12, []
            while data[off]:
                labels.append(data[off + 1:off + 1 + data[off]].decode())
                off += 1 + data[off]
            qtype = struct.unpack("!H", data[off + 1:off + 3])[0]
            question = data[12:off + 5]
            name = ".".join(labels).lower() + "."
            rtype = next((k for k, v in TYPES.items() if v == qtype), "")
            if name in self.servfail:
                self.sock.sendto(qid + struct.pack("!HHHHH", 0x8182, 1, 0, 0, 0) + question, peer)
                continue
            answers = self.records.get((name, rtype), [])
            exists = any(n == name for n, _ in self.records)
            flags = 0x8400 if answers or exists else 0x8403        # NXDOMAIN for unknown names
            body = b""
            for v in answers:
                rd = rdata(rtype, v)
                body += b"\xc0\x0c" + struct.pack("!HHIH", qtype, 1, 300, len(rd)) + rd
            self.sock.sendto(qid + struct.pack("!HHHHH", flags, 1, len(answers), 0, 0) + question + body, peer)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def dns_server():
    r = Responder()
    yield r
    r.close()


class Server:
    """A config folder and settings file for one test; runs `setup` on them."""

    def __init__(self, root: Path, settings: str = ""):
        self.config = root / "config"
        for d in ("config", "mail", "log"):
            (root / d).mkdir()
        self.settings = root / "dms-settings"
        self.settings.write_text("OVERRIDE_HOSTNAME='mail.example.com'\nSSL_TYPE=''\n" + settings)
        (self.config / "postfix-accounts.cf").write_text(
            "user@example.com|{SHA512-CRYPT}$6$salt$hash\nuser@example.org|{SHA512-CRYPT}$6$salt$hash\n")
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("MAILWRIGHT_")}
        self.env.update(MAILWRIGHT_CONFIG_DIR=str(self.config), MAILWRIGHT_MAIL_ROOT=str(root / "mail"),
                        MAILWRIGHT_DMS_SETTINGS=str(self.settings), MAILWRIGHT_LOG_DIR=str(root / "log"),
                        PYTHONPATH=str(REPO))

    def __call__(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "mailwright.cli", *args], cwd=REPO, env=self.env,
                              capture_output=True, text=True, timeout=120)

    def records(self, *args: str) -> list[dict]:
        p = self("dns", "--json", *args)
        assert p.returncode == 0, p.stderr
        return json.loads(p.stdout)["records"]


@pytest.fixture
def server(tmp_path) -> Server:
    return Server(tmp_path)


def by(records, rtype, name):
    return [r["value"] for r in records if r["type"] == rtype and r["name"] == name]


def test_records_cover_every_domain_with_the_dkim_key_setup_made(server):
    assert server("config", "dkim", "keysize", "1024", "domain", "example.com").returncode == 0
    recs = server.records()
    assert by(recs, "MX", "example.com.") == ["10 mail.example.com."]
    assert by(recs, "MX", "example.org.") == ["10 mail.example.com."]
    assert by(recs, "TXT", "example.com.") == ["v=spf1 mx -all"]
    # The key `setup config dkim` wrote, as its own .txt file states it (written by another code path).
    txt = (server.config / "opendkim/keys/example.com/mail.txt").read_text()
    published = "".join(part for part in txt.split('"')[1::2]).replace(" ", "")
    p_setup = published.split("p=", 1)[1]
    [dkim] = by(recs, "TXT", "mail._domainkey.example.com.")
    assert dkim.split("p=", 1)[1] == p_setup
    assert by(recs, "TXT", "mail._domainkey.example.org.") == []          # no key for it
    assert by(recs, "TXT", "_dmarc.example.org.") == ["v=DMARC1; p=quarantine; rua=mailto:postmaster@example.com"]
    # The report address is in example.com: example.org must authorise it (RFC 7489 7.1).
    assert by(recs, "TXT", "example.org._report._dmarc.example.com.") == ["v=DMARC1"]
    assert by(recs, "TXT", "example.com._report._dmarc.example.com.") == []
    assert by(recs, "SRV", "_submissions._tcp.example.com.") == ["0 1 465 mail.example.com."]
    assert by(recs, "SRV", "_pop3s._tcp.example.com.") == ["0 0 0 ."]                 # POP3 off
    assert by(recs, "TXT", "_smtp._tls.example.com.") == ["v=TLSRPTv1; rua=mailto:postmaster@example.com"]
    assert by(recs, "CNAME", "autoconfig.example.com.")
    assert by(recs, "TXT", "_mta-sts.example.com.")[0].startswith("v=STSv1; id=")


def test_only_the_named_domains_and_the_address(server):
    recs = server.records("--address", "192.0.2.10", "--address", "2001:db8::10", "example.org")
    assert {r["name"] for r in recs if r["type"] == "MX"} == {"example.org."}
    assert by(recs, "A", "mail.example.com.") == ["192.0.2.10"]
    assert by(recs, "AAAA", "mail.example.com.") == ["2001:db8::10"]


def test_a_long_dkim_key_is_split_into_strings_of_at_most_255_bytes(server):
    assert server("config", "dkim", "keysize", "2048", "domain", "example.com").returncode == 0
    p = server("dns", "--zone", "example.com")
    [line] = [ln for ln in p.stdout.splitlines() if "_domainkey" in ln]
    strings = line.split("\t")[-1]
    assert strings.startswith("( ") and strings.endswith(" )")
    parts = re.findall(r'"((?:[^"\\]|\\.)*)"', strings)
    assert len(parts) >= 2 and all(len(x) <= 255 for x in parts)
    [value] = by(server.records(), "TXT", "mail._domainkey.example.com.")
    assert "".join(parts) == value


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=0x2FF), max_size=900))
@example("x" * 254 + "é" + '"\\\\')
def test_txt_strings_round_trip(value):
    zone = dnsrecords.txt_strings(value)
    inner = zone[2:-2] if zone.startswith("( ") else zone
    strings, buf, i, quoted = [], "", 0, False
    while i < len(inner):                       # a zone-file reader of quoted strings
        c = inner[i]
        if c == '"':
            if quoted:
                strings.append(buf)
                buf = ""
            quoted = not quoted
        elif c == "\\" and quoted:
            i += 1
            buf += inner[i]
        elif quoted:
            buf += c
        i += 1
    assert "".join(strings) == value
    assert all(len(s.encode()) <= 255 for s in strings)


def test_tlsa_is_the_sha256_of_the_certificate_key_and_the_staged_next_key(tmp_path, tls_files):
    cert, key, next_key_pem, spki, next_spki = tls_files
    s = Server(tmp_path, f"SSL_TYPE='manual'\nSSL_CERT_PATH='{cert}'\nSSL_KEY_PATH='{key}'\n")
    (s.config / "ssl/next").mkdir(parents=True)
    (s.config / "ssl/next/next-key.pem").write_bytes(next_key_pem)
    tlsa = by(s.records(), "TLSA", "_25._tcp.mail.example.com.")
    assert tlsa == [f"3 1 1 {hashlib.sha256(spki).hexdigest()}", f"3 1 1 {hashlib.sha256(next_spki).hexdigest()}"]


@pytest.fixture
def tls_files(tmp_path):
    import trustme
    from cryptography.hazmat.primitives import serialization as ser
    from cryptography.hazmat.primitives.asymmetric import ec
    ca = trustme.CA()
    leaf = ca.issue_cert("mail.example.com")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    from cryptography import x509
    spki = x509.load_pem_x509_certificate(cert.read_bytes()).public_key().public_bytes(
        ser.Encoding.DER, ser.PublicFormat.SubjectPublicKeyInfo)
    nxt = ec.generate_private_key(ec.SECP256R1())
    pem = nxt.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption())
    next_spki = nxt.public_key().public_bytes(ser.Encoding.DER, ser.PublicFormat.SubjectPublicKeyInfo)
    return cert, key, pem, spki, next_spki


def publish_all(server, dns_server, address="192.0.2.10"):
    for r in server.records("--address", address):
        dns_server.add(r["name"], r["type"], r["value"])
    dns_server.add(ipaddress.ip_address(address).reverse_pointer, "PTR", "mail.example.com.")


def check(server, dns_server, *args):
    p = server("dns", "--check", "--json", "--resolver", f"127.0.0.1:{dns_server.port}", *args)
    out = json.loads(p.stdout)
    return p.returncode, {(f["status"], f["type"], f["name"]) for f in out["findings"]}, out


def test_check_of_a_zone_published_as_printed_passes(server, dns_server):
    server("config", "dkim", "keysize", "2048", "domain", "example.com")
    publish_all(server, dns_server)
    code, found, out = check(server, dns_server, "--address", "192.0.2.10")
    assert code == 0, out
    assert {s for s, _, _ in found} == {"ok"}
    assert ("ok", "PTR", "10.2.0.192.in-addr.arpa.") in found


def test_check_names_missing_wrong_and_extra_records(server, dns_server):
    server("config", "dkim", "keysize", "1024", "domain", "example.com")
    publish_all(server, dns_server)
    recs = server.records()
    [dkim] = by(recs, "TXT", "mail._domainkey.example.com.")
    # DKIM published with other tag order and without h=: still the same key, so ok.
    key = dkim.split("p=", 1)[1]
    dns_server.records[("mail._domainkey.example.com.", "TXT")] = [f"v=DKIM1; p={key}; k=rsa"]
    del dns_server.records[("_dmarc.example.org.", "TXT")]                              # missing
    dns_server.records[("example.com.", "MX")] = ["10 mx.elsewhere.test."]              # wrong
    dns_server.add("example.org.", "TXT", "v=spf1 a -all")                             # second SPF
    dns_server.add("example.org.", "TXT", "google-site-verification=xyz")              # not ours
    dns_server.records.pop(("_smtp._tls.example.com.", "TXT"))                          # optional
    dns_server.records[("10.2.0.192.in-addr.arpa.", "PTR")] = ["vps-1.hoster.test."]   # wrong rDNS
    code, found, out = check(server, dns_server, "--address", "192.0.2.10")
    assert code == 2
    assert ("ok", "TXT", "mail._domainkey.example.com.") in found
    assert ("missing", "TXT", "_dmarc.example.org.") in found
    assert ("wrong", "MX", "example.com.") in found
    assert ("extra", "TXT", "example.org.") in found
    assert ("missing", "TXT", "_smtp._tls.example.com.") in found
    assert ("wrong", "PTR", "10.2.0.192.in-addr.arpa.") in found
    extras = [f for f in out["findings"] if f["status"] == "extra"]
    assert [f["published"] for f in extras] == [["v=spf1 a -all"]] and extras[0]["severity"] == "fail"
    severity = {(f["status"], f["name"]): f["severity"] for f in out["findings"]}
    assert severity[("missing", "_smtp._tls.example.com.")] == "warn"
    assert severity[("missing", "_dmarc.example.org.")] == "fail"


def test_check_with_only_optional_records_missing_warns(server, dns_server):
    publish_all(server, dns_server)
    dns_server.records.pop(("_mta-sts.example.com.", "TXT"))
    code, found, _ = check(server, dns_server, "--address", "192.0.2.10")
    assert code == 1
    assert ("missing", "TXT", "_mta-sts.example.com.") in found


def test_servfail_is_not_reported_as_missing(server, dns_server):
    publish_all(server, dns_server)
    dns_server.servfail.add("_dmarc.example.com.")
    code, found, out = check(server, dns_server, "--address", "192.0.2.10")
    assert code == 2
    assert ("unknown", "TXT", "_dmarc.example.com.") in found
    assert not any(n == "_dmarc.example.com." and s == "missing" for s, _, n in found)


def test_a_silent_resolver_fails_the_check_quickly_without_claiming_anything_missing(server):
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    try:
        p = server("dns", "--check", "--json", "--resolver", f"127.0.0.1:{silent.getsockname()[1]}")
    finally:
        silent.close()
    out = json.loads(p.stdout)
    assert p.returncode == 2
    assert {f["status"] for f in out["findings"]} == {"unknown"}


@pytest.mark.parametrize("args", [["--resolver", "dns.example"], ["--resolver", "127.0.0.1:0"],
                                  ["--address", "999.1.1.1"], ["exa mple.com"], ["--bogus"], ["--address"]])
def test_bad_arguments_exit_1_naming_the_culprit(server, args):
    p = server("dns", *args)
    assert p.returncode == 1
    assert p.stdout == ""
    culprit = args[-1] if args[-1] != "--address" else "--address"
    assert culprit in p.stderr
