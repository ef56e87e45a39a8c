"""The DNS records a mailwright server's domains need: `setup dns` (alias `mailwright dns`).

Computed from what the server really uses: the settings (FQDN, postmaster,
enabled protocols, TLS), the config folder's domains and DKIM keys
(`opendkim/keys/<domain>/<selector>.private`: the public key is derived from
the private one, so a hand-edited `.txt` cannot mislead), and the certificate
in use (TLSA `3 1 1`: SHA-256 of its public key, plus the next key when one is
staged in `ssl/next/`, so a rollover can be published before the renewal).

Each `Record` carries its value in the presentation form `mailwright.dnswire`
returns, so `--check` compares strings; `owns` says which published records
of that name and type are this record's business (an unrelated TXT record at
the apex is not "extra").
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from ops.settings import Settings

TTL = 3600
MTA_STS_MAX_AGE = 604800
# Where a renewed certificate or its key is staged before it goes live.
NEXT_TLS_DIR = "ssl/next"


@dataclass(frozen=True)
class Record:
    name: str                   # absolute, lower case, with the final dot
    type: str
    value: str                  # presentation form (TXT: the joined string, unquoted)
    purpose: str                # one short phrase: what the record is for
    required: bool = True       # missing/wrong: a failure (else a warning)
    owns: str = ""              # TXT: prefix of the published values this record is about
    exclusive: bool = False     # any other published value of (name, type, owns) is "extra"

    def zone_line(self) -> str:
        value = self.value
        if self.type == "TXT":
            value = txt_strings(value)
        return f"{self.name}\t{TTL}\tIN\t{self.type}\t{value}"


@dataclass
class Zone:
    records: list[Record] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)          # things a zone cannot say (the policy file)
    addresses: list[str] = field(default_factory=list)


def absolute(name: str) -> str:
    return name.rstrip(".").lower() + "."


def txt_strings(value: str) -> str:
    """A TXT value as zone-file strings: split every 255 bytes (RFC 1035 character-strings),
    quotes and backslashes escaped; wrapped in parentheses when it takes several."""
    chunks, current = [], ""
    for ch in value:            # never split a UTF-8 sequence between two strings
        if len((current + ch).encode()) > 255:
            chunks.append(current)
            current = ""
        current += ch
    chunks.append(current)
    quoted = ['"' + c.replace("\\", "\\\\").replace('"', '\\"') + '"' for c in chunks]
    return quoted[0] if len(quoted) == 1 else "( " + " ".join(quoted) + " )"


def _openssl(*args: str, data: bytes | None = None) -> bytes:
    p = subprocess.run(["openssl", *args], input=data, capture_output=True, timeout=30)
    if p.returncode != 0:
        lines = p.stderr.decode(errors="replace").strip().splitlines()
        raise ValueError(lines[-1] if lines else "openssl failed")
    return p.stdout


def _pem_body(pem: bytes) -> bytes:
    lines = [ln for ln in pem.decode().splitlines() if ln and not ln.startswith("-----")]
    return base64.b64decode("".join(lines))


def public_key_der(path: Path) -> bytes:
    """SubjectPublicKeyInfo (DER) of a certificate or a private key file."""
    text = path.read_bytes()
    if b"CERTIFICATE-----" in text:
        return _pem_body(_openssl("x509", "-noout", "-pubkey", "-in", str(path)))
    return _pem_body(_openssl("pkey", "-pubout", "-in", str(path)))


def dkim_keys(config_dir: Path) -> list[tuple[str, str, Path]]:
    """(domain, selector, private key) for each key in `opendkim/keys/`."""
    root = config_dir / "opendkim" / "keys"
    found = []
    if root.is_dir() and not root.is_symlink():
        for domain_dir in sorted(root.iterdir()):
            if not domain_dir.is_dir() or domain_dir.is_symlink():
                continue
            for key in sorted(domain_dir.glob("*.private")):
                if not key.is_symlink():
                    found.append((domain_dir.name.lower(), key.stem, key))
    return found


def dkim_value(key: Path) -> str:
    der = public_key_der(key)
    return f"v=DKIM1; h=sha256; k=rsa; p={base64.b64encode(der).decode()}"


def tlsa_value(spki_der: bytes) -> str:
    return f"3 1 1 {hashlib.sha256(spki_der).hexdigest()}"


def _tls_files(tls) -> list[Path]:
    files = []
    for cert in (tls.cert, tls.alt_cert):
        if cert and Path(cert).is_file():
            files.append(Path(cert))
    return files


def wanted(s: Settings, domains: list[str], config_dir: Path, tls=None,
           addresses: list[str] = (), only: list[str] | None = None) -> Zone:
    """Every record the domains need (all the server's domains unless `only` names some)."""
    fqdn = absolute(s.fqdn)
    zone = Zone(addresses=list(addresses))
    postmaster = s.postmaster
    report_domain = postmaster.rsplit("@", 1)[1].lower()
    keys = dkim_keys(config_dir)
    chosen = sorted({d.lower() for d in (only or domains + [s.domainname])})
    rec = zone.records.append

    for addr in addresses:
        ip = ipaddress.ip_address(addr)
        rec(Record(fqdn, "A" if ip.version == 4 else "AAAA", str(ip), "the mail server's address"))

    # TLSA on the MX host: the key in use, and the next one when staged (publish both, then renew).
    if tls is not None and tls.enabled:
        seen = []
        for path in _tls_files(tls):
            try:
                seen.append((tlsa_value(public_key_der(path)), f"DANE: the key of {path}"))
            except (OSError, ValueError) as e:
                zone.notes.append(f"TLSA: cannot read the certificate {path}: {e}")
        staged = config_dir / NEXT_TLS_DIR
        if staged.is_dir():
            for path in sorted(staged.glob("*.pem")):
                try:
                    v = tlsa_value(public_key_der(path))
                except (OSError, ValueError) as e:
                    zone.notes.append(f"TLSA: cannot read the staged file {path}: {e}")
                    continue
                seen.append((v, f"DANE: the next key, staged in {path}"))
        for value, why in dict((v, w) for v, w in seen).items():
            rec(Record(f"_25._tcp.{fqdn}", "TLSA", value, why, required=False, exclusive=True))

    for domain in chosen:
        d = absolute(domain)
        rec(Record(d, "MX", f"10 {fqdn}", "where mail for the domain goes", exclusive=True))
        rec(Record(d, "TXT", "v=spf1 mx -all", "SPF: only the MX may send for the domain",
                   owns="v=spf1", exclusive=True))
        for kdomain, selector, key in keys:
            if kdomain != domain:
                continue
            try:
                value = dkim_value(key)
            except (OSError, ValueError) as e:
                zone.notes.append(f"DKIM: cannot read the key {key}: {e}")
                continue
            rec(Record(f"{selector}._domainkey.{d}", "TXT", value, f"DKIM public key (selector {selector})",
                       owns="v=DKIM1", exclusive=True))
        rec(Record(f"_dmarc.{d}", "TXT", f"v=DMARC1; p=quarantine; rua=mailto:{postmaster}",
                   "DMARC policy, aggregate reports to the postmaster", owns="v=DMARC1", exclusive=True))
        if report_domain != domain:
            # RFC 7489 7.1: the report address's domain must agree to receive this domain's reports.
            rec(Record(f"{domain}._report._dmarc.{absolute(report_domain)}", "TXT", "v=DMARC1",
                       f"lets {report_domain} receive {domain}'s DMARC reports", owns="v=DMARC1"))
        policy = mta_sts_policy(s)
        sts_id = hashlib.sha256(policy.encode()).hexdigest()[:20]
        rec(Record(f"_mta-sts.{d}", "TXT", f"v=STSv1; id={sts_id}", "MTA-STS: a policy exists (id changes with it)",
                   required=False, owns="v=STSv1", exclusive=True))
        rec(Record(f"mta-sts.{d}", "CNAME", fqdn, "MTA-STS: the HTTPS host serving the policy file",
                   required=False))
        rec(Record(f"_smtp._tls.{d}", "TXT", f"v=TLSRPTv1; rua=mailto:{postmaster}",
                   "TLS-RPT: where senders report TLS failures", required=False, owns="v=TLSRPTv1",
                   exclusive=True))
        # RFC 6186 / 8314: mail clients find the server; an unused service is published as ".".
        services = [("_submissions._tcp", 465, True), ("_submission._tcp", 587, True),
                    ("_imaps._tcp", 993, s.ENABLE_IMAP and not s.SMTP_ONLY),
                    ("_imap._tcp", 143, s.ENABLE_IMAP and not s.SMTP_ONLY),
                    ("_pop3s._tcp", 995, s.ENABLE_POP3 and not s.SMTP_ONLY),
                    ("_pop3._tcp", 110, s.ENABLE_POP3 and not s.SMTP_ONLY)]
        for label, port, on in services:
            value = f"0 1 {port} {fqdn}" if on else "0 0 0 ."
            rec(Record(f"{label}.{d}", "SRV", value, f"mail clients: port {port}" + ("" if on else " is not offered"),
                       required=False, exclusive=True))
        for host in ("autoconfig", "autodiscover"):
            rec(Record(f"{host}.{d}", "CNAME", fqdn, f"mail clients' {host} lookup", required=False))
        zone.notes.append(f"MTA-STS policy for {domain}, served as https://mta-sts.{domain}/.well-known/mta-sts.txt:\n"
                          + policy)
    return zone


def mta_sts_policy(s: Settings) -> str:
    # enforce only with a certificate other servers can verify; a test certificate would make
    # every policy-aware sender refuse to deliver.
    mode = "enforce" if s.SSL_TYPE in ("letsencrypt", "manual", "custom") else "testing"
    return f"version: STSv1\nmode: {mode}\nmx: {s.fqdn}\nmax_age: {MTA_STS_MAX_AGE}\n"
