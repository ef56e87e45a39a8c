"""`mailwright check` (`./setup.sh check`): a live self-test of a running server, from outside it.

Run on the operator's machine, in CI or from cron; standard library only (plus
the `openssl` command for DKIM signatures). It connects only to the server
under test (and, for the DNS checks, asks the server to query its resolver),
and sends mail only to the server itself: to a test account it creates and
removes through `setup` (or one given with --account).

Each check gives one line: PASS, WARN or FAIL, what was seen, and for a
failure what to do. Exit status: 0 all passed, 1 warnings, 2 a failure.
"""

from __future__ import annotations

import base64
import datetime
import email
import email.policy
import hashlib
import imaplib
import ipaddress
import json
import re
import secrets
import smtplib
import socket
import ssl
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

PASS, WARN, FAIL = "pass", "warn", "fail"
RANK = {PASS: 0, WARN: 1, FAIL: 2}
# Generous: a server whose reverse-DNS lookups time out greets late, yet works.
TIMEOUT = 30
GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
EICAR = r"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
IMPLICIT_TLS = {465, 993, 995}
STARTTLS = {25: "smtp", 587: "smtp", 143: "imap", 110: "pop3"}
LIST_LINE = re.compile(r'\((?P<flags>[^)]*)\) (?P<delim>"[^"]*"|NIL) (?P<name>.+)')


@dataclass
class Result:
    check: str
    status: str
    detail: str
    advice: str = ""


@dataclass
class Report:
    results: list[Result] = field(default_factory=list)

    def add(self, check: str, status: str, detail: str, advice: str = "") -> None:
        self.results.append(Result(check, status, detail, advice if status != PASS else ""))

    @property
    def exit_code(self) -> int:
        return max((RANK[r.status] for r in self.results), default=0)

    def summary(self) -> dict[str, int]:
        return {k: sum(r.status == k for r in self.results) for k in (PASS, WARN, FAIL)}


@dataclass
class Target:
    address: str                    # where to connect
    facts: dict                     # `setup check facts`
    setup: Callable[[list[str], str], tuple[int, str, str]] | None = None   # run `setup` on the server
    cafile: str | None = None       # trust this CA too (a private or test CA)
    account: tuple[str, str] | None = None
    wait: float = 60.0              # how long mail may take to arrive


# --- connections ----------------------------------------------------------------------------------

def tls_context(target: Target, verify: bool = True) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=target.cafile) if verify else ssl._create_unverified_context()
    if target.cafile and verify:
        ctx.load_default_certs()
    return ctx


def _smtp(target: Target, port: int) -> smtplib.SMTP:
    if port in IMPLICIT_TLS:
        return smtplib.SMTP_SSL(target.address, port, timeout=TIMEOUT,
                                context=tls_context(target, verify=False))
    return smtplib.SMTP(target.address, port, timeout=TIMEOUT)


def port_open(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=5):
            return True
    except OSError:
        return False


def starttls_socket(target: Target, port: int, ctx: ssl.SSLContext) -> ssl.SSLSocket:
    """A TLS socket to the port: implicit, or after the protocol's STARTTLS."""
    raw = socket.create_connection((target.address, port), timeout=TIMEOUT)
    try:
        proto = STARTTLS.get(port)
        if proto:
            f = raw.makefile("rb")
            f.readline()
            if proto == "smtp":
                raw.sendall(b"EHLO check.invalid\r\n")
                while True:
                    line = f.readline()
                    if not line or line[3:4] != b"-":
                        break
                raw.sendall(b"STARTTLS\r\n")
                ok = f.readline().startswith(b"220")
            elif proto == "imap":
                raw.sendall(b"a STARTTLS\r\n")
                ok = f.readline().startswith(b"a OK")
            else:
                raw.sendall(b"STLS\r\n")
                ok = f.readline().startswith(b"+OK")
            if not ok:
                raise ssl.SSLError(f"port {port} refused STARTTLS")
        return ctx.wrap_socket(raw, server_hostname=target.facts["fqdn"])
    except BaseException:
        raw.close()
        raise


# --- checks ---------------------------------------------------------------------------------------

def check_ports(t: Target, r: Report) -> list[int]:
    up = []
    for port in t.facts["listen"]:
        if port_open(t.address, port):
            up.append(port)
            r.add(f"port {port}", PASS, "listens")
        else:
            r.add(f"port {port}", FAIL, "does not answer", f"the server should listen on {port}: "
                  "is the port published (docker -p) and the firewall open?")
    for port in t.facts["closed"]:
        if port_open(t.address, port):
            r.add(f"port {port}", FAIL, "listens but the settings turn it off",
                  f"close {port} (a stale daemon, or a port published to something else)")
        else:
            r.add(f"port {port}", PASS, "closed, as the settings say")
    return up


def check_banners(t: Target, r: Report, up: list[int]) -> None:
    fqdn = t.facts["fqdn"]
    for port in (25, 587, 465):
        if port not in up:
            continue
        try:
            banner = _greeting(t, port)
        except (OSError, ssl.SSLError) as e:
            r.add(f"banner {port}", FAIL, f"no SMTP greeting ({e})", "check the server's mail log")
            continue
        # postscreen greets with a multi-line "220-" first line
        if re.match(r"220[ -]" + re.escape(fqdn) + r"(\s|$)", banner):
            r.add(f"banner {port}", PASS, banner)
        else:
            r.add(f"banner {port}", FAIL, f"greeting {banner!r} does not name {fqdn}",
                  "set OVERRIDE_HOSTNAME (or the host name) to the name in the MX record")


def _greeting(t: Target, port: int) -> str:
    raw = socket.create_connection((t.address, port), timeout=TIMEOUT)
    try:
        sock = tls_context(t, verify=False).wrap_socket(raw) if port in IMPLICIT_TLS else raw
        line = sock.makefile("rb").readline().decode(errors="replace").strip()
        try:
            sock.sendall(b"QUIT\r\n")
        except OSError:
            pass
        return line
    finally:
        raw.close()


def check_tls(t: Target, r: Report, up: list[int]) -> None:
    fqdn = t.facts["fqdn"]
    for port in sorted(set(up) & (IMPLICIT_TLS | set(STARTTLS))):
        name = f"tls {port}"
        try:
            with starttls_socket(t, port, tls_context(t)) as s:
                version, cipher = s.version(), s.cipher()[0]
                cert = s.getpeercert()
        except ssl.SSLCertVerificationError as e:
            r.add(name, FAIL, f"certificate not valid for {fqdn}: {e.verify_message}",
                  "install a certificate for the FQDN from a CA clients trust (SSL_TYPE=letsencrypt)")
            continue
        except (OSError, ssl.SSLError) as e:
            r.add(name, FAIL, f"no TLS ({e})", "check SSL_TYPE and the certificate files")
            continue
        if version not in ("TLSv1.2", "TLSv1.3"):
            r.add(name, FAIL, f"negotiated {version}", "TLS_LEVEL: only TLS 1.2 and newer")
        else:
            r.add(name, PASS, f"{version} {cipher}, certificate valid for {fqdn}")
        expires = datetime.datetime.fromtimestamp(ssl.cert_time_to_seconds(cert["notAfter"]),
                                                  datetime.timezone.utc)
        days = (expires - datetime.datetime.now(datetime.timezone.utc)).days
        status = FAIL if days < 3 else WARN if days < 14 else PASS
        r.add(f"{name} expiry", status, f"certificate expires in {days} days ({expires:%Y-%m-%d})",
              "renew the certificate (the server picks up a renewal without a restart)")
        for old in (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1):
            ctx = tls_context(t, verify=False)
            try:
                ctx.minimum_version = old
                ctx.maximum_version = old
                ctx.set_ciphers("ALL:@SECLEVEL=0")
            except (ValueError, ssl.SSLError):
                continue            # this client cannot even offer it: nothing to learn
            try:
                with starttls_socket(t, port, ctx) as s:
                    got = s.version()
                r.add(f"{name} {old.name}", FAIL, f"accepts {got}", "TLS_LEVEL: refuse TLS before 1.2")
            except (OSError, ssl.SSLError):
                r.add(f"{name} {old.name}", PASS, "refused")
        ctx = tls_context(t, verify=False)
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        try:
            ctx.set_ciphers("AES128-SHA:AES256-SHA:@SECLEVEL=0")       # no forward secrecy
        except ssl.SSLError:
            continue
        try:
            with starttls_socket(t, port, ctx) as s:
                got = s.cipher()[0]
            r.add(f"{name} weak ciphers", FAIL, f"accepts {got} (no forward secrecy)",
                  f"TLS_LEVEL={t.facts['tls_level']} should refuse it: check postfix-main.cf/dovecot.cf overrides")
        except (OSError, ssl.SSLError):
            r.add(f"{name} weak ciphers", PASS, "RSA key exchange refused")


def check_smtp_policy(t: Target, r: Report, up: list[int]) -> None:
    domain = t.facts["domains"][0]
    if 25 in up:
        try:
            with smtplib.SMTP(t.address, 25, timeout=TIMEOUT) as s:
                s.ehlo("check.invalid")
                plain_auth = s.has_extn("auth")
                try:
                    s.starttls(context=tls_context(t, verify=False))
                    s.ehlo("check.invalid")
                except smtplib.SMTPNotSupportedError:
                    pass
                tls_auth = s.has_extn("auth")
                if plain_auth or tls_auth:
                    r.add("no auth on 25", FAIL, "port 25 offers AUTH",
                          "AUTH belongs on 465/587 only: check postfix-main.cf/postfix-master.cf overrides")
                else:
                    r.add("no auth on 25", PASS, "no AUTH offered")
                s.mail("<>")        # the null sender: no sender check can hide an open relay
                code, msg = s.rcpt(f"relay-test@{_outside(domain)}")
                s.rset()
                if code < 400:
                    r.add("no open relay", FAIL, f"relay to an outside domain accepted ({code})",
                          "remove the override that opens relaying (mynetworks, smtpd_relay_restrictions)")
                else:
                    r.add("no open relay", PASS, f"refused: {code} {msg.decode(errors='replace')[:80]}")
                s.mail("<>")
                code, msg = s.rcpt(f"no-such-user-{secrets.token_hex(4)}@{domain}")
                s.rset()
                if code == 503:
                    r.add("unknown recipient", FAIL, f"the dialogue went wrong ({code} {msg.decode(errors='replace')[:60]})",
                          "report it: the check's own SMTP dialogue was refused")
                elif code >= 500:
                    r.add("unknown recipient", PASS, f"refused: {code}")
                elif code >= 400:
                    r.add("unknown recipient", WARN, f"deferred ({code}), not refused",
                          "a 4xx for unknown users makes senders retry for days")
                else:
                    r.add("unknown recipient", FAIL, f"accepted ({code}): backscatter",
                          "unknown recipients must be refused at RCPT time")
        except (OSError, smtplib.SMTPException) as e:
            r.add("smtp 25", FAIL, f"SMTP dialogue failed ({e})", "check the server's mail log")
    if 587 in up:
        try:
            with smtplib.SMTP(t.address, 587, timeout=TIMEOUT) as s:
                s.ehlo("check.invalid")
                if s.has_extn("auth"):
                    r.add("587 auth before tls", FAIL, "AUTH offered before STARTTLS",
                          "passwords would cross the network in clear: restore smtpd_tls_security_level=encrypt")
                else:
                    r.add("587 auth before tls", PASS, "AUTH only after STARTTLS")
        except (OSError, smtplib.SMTPException) as e:
            r.add("587 auth before tls", FAIL, f"SMTP dialogue failed ({e})", "check the server's mail log")
    if 143 in up and _loopback(t.address):
        r.add("143 login before tls", PASS, "not testable over loopback (Dovecot treats local connections as secure)")
    elif 143 in up:
        try:
            with imaplib.IMAP4(t.address, 143, timeout=TIMEOUT) as m:
                caps = m.capabilities
            if "LOGINDISABLED" in caps:
                r.add("143 login before tls", PASS, "LOGINDISABLED before STARTTLS")
            else:
                r.add("143 login before tls", FAIL, "login allowed before STARTTLS",
                      "Dovecot must require TLS (ssl = required)")
        except (OSError, imaplib.IMAP4.error) as e:
            r.add("143 login before tls", FAIL, f"IMAP dialogue failed ({e})", "check the server's log")


def _loopback(address: str) -> bool:
    try:
        return any(ipaddress.ip_address(a[4][0]).is_loopback
                   for a in socket.getaddrinfo(address, None, proto=socket.IPPROTO_TCP))
    except (OSError, ValueError):
        return False


def _outside(domain: str) -> str:
    return "mailwright-check.invalid" if domain != "mailwright-check.invalid" else "example.invalid"


# --- mail round trip ------------------------------------------------------------------------------

class Account:
    """The test account: created (and removed) through `setup`, or the one given."""

    def __init__(self, t: Target, r: Report):
        self.t, self.r, self.created = t, r, False
        if t.account:
            self.address, self.password = t.account
            return
        self.address = f"mailwright-check-{secrets.token_hex(4)}@{t.facts['domains'][0]}"
        self.password = secrets.token_urlsafe(18)

    def __enter__(self) -> "Account | None":
        if self.t.account:
            return self
        if not self.t.setup:
            self.r.add("test account", WARN, "no way to create one with --address alone",
                       "give --account USER:PASSWORD, or run through -c CONTAINER / --ssh HOST")
            return None
        # The password goes to `setup` on stdin (twice: the prompt and its confirmation).
        try:
            rc, _, err = self.t.setup(["email", "add", self.address], f"{self.password}\n{self.password}\n")
        except Exception as e:      # noqa: BLE001 - reported as the failing check
            rc, err = 1, f"{type(e).__name__}: {e}"
        if rc != 0:
            self.r.add("test account", FAIL, f"setup email add failed: {err.strip()[-200:]}",
                       "run ./setup.sh email add by hand to see why")
            return None
        self.created = True
        self.wait_live()
        return self

    def wait_live(self, timeout: float = 30) -> None:
        """Until Postfix knows the new address (its maps are reloaded within DMS_CONFIG_POLL)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                with smtplib.SMTP(self.t.address, 25, timeout=TIMEOUT) as s:
                    s.ehlo("check.invalid")
                    s.mail("<>")
                    code, _ = s.rcpt(self.address)
                    if code == 250:
                        return
            except (OSError, smtplib.SMTPException):
                pass
            if time.monotonic() > deadline:
                return          # the round trip below reports what fails
            time.sleep(1)

    def __exit__(self, *exc) -> None:
        if self.created:
            rc, _, err = self.t.setup(["email", "del", "-y", self.address], "")
            if rc != 0:
                self.r.add("test account removed", WARN, f"could not remove {self.address}: {err.strip()[-200:]}",
                           f"./setup.sh email del -y {self.address}")

    def imap(self) -> imaplib.IMAP4_SSL:
        deadline = time.monotonic() + 20         # a new account is live within DMS_CONFIG_POLL
        while True:
            try:
                m = imaplib.IMAP4_SSL(self.t.address, 993, ssl_context=tls_context(self.t, verify=False),
                                      timeout=TIMEOUT)
                m.login(self.address, self.password)
                return m
            except imaplib.IMAP4.error:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)


def _message(sender: str, to: str, token: str, body: str, attachment: str | None = None) -> bytes:
    msg = email.message.EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, to, f"mailwright check {token}"
    msg["Message-ID"] = f"<{token}@mailwright-check>"
    msg.set_content(body)
    if attachment is not None:
        msg.add_attachment(attachment.encode(), maintype="application", subtype="octet-stream",
                           filename="eicar.com")
    return msg.as_bytes(policy=email.policy.SMTP)


def submit(t: Target, acct: Account, port: int, message: bytes) -> tuple[str, str]:
    """("ok", ""), ("refused", the server's reply) or ("error", why the dialogue failed)."""
    try:
        with _smtp(t, port) as s:
            s.ehlo("check.invalid")
            if port not in IMPLICIT_TLS:
                s.starttls(context=tls_context(t, verify=False))
                s.ehlo("check.invalid")
            deadline = time.monotonic() + 20
            while True:
                try:
                    s.login(acct.address, acct.password)
                    break
                except smtplib.SMTPAuthenticationError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(1)
            s.sendmail(acct.address, [acct.address], message)
        return "ok", ""
    except smtplib.SMTPAuthenticationError as e:
        return "error", f"login refused: {e.smtp_code} {e.smtp_error.decode(errors='replace')}"
    except smtplib.SMTPResponseException as e:
        return "refused", f"{e.smtp_code} {e.smtp_error.decode(errors='replace')}"
    except smtplib.SMTPRecipientsRefused as e:
        return "refused", str(e.recipients)
    except (OSError, smtplib.SMTPException) as e:
        return "error", f"SMTP dialogue on {port} failed: {e}"


def fetch(t: Target, acct: Account, token: str, wait: float) -> bytes | None:
    """The delivered message carrying `token` in its subject, from any folder (spam may go to Junk)."""
    deadline = time.monotonic() + wait
    m = acct.imap()
    try:
        while True:
            _, boxes = m.list()
            for line in boxes or []:
                found = LIST_LINE.match(line.decode(errors="replace")) if line else None
                if not found:
                    continue
                name = found.group("name").strip('"')
                if m.select(f'"{name}"', readonly=True)[0] != "OK":
                    continue
                _, data = m.search(None, "SUBJECT", f'"{token}"')
                for num in (data[0] or b"").split():
                    _, parts = m.fetch(num, "(BODY.PEEK[])")
                    return parts[0][1]
            if time.monotonic() > deadline:
                return None
            time.sleep(1)
    finally:
        try:
            m.logout()
        except (OSError, imaplib.IMAP4.error):
            pass


def check_round_trip(t: Target, r: Report, up: list[int], acct: Account) -> bytes | None:
    got = None
    for port in (587, 465):
        if port not in up:
            continue
        token = f"{port}-{secrets.token_hex(6)}"
        status, why = submit(t, acct, port, _message(acct.address, acct.address, token, "A test from mailwright check.\n"))
        if status != "ok":
            r.add(f"submit {port}", FAIL, f"{status}: {why[:160]}", "check the account and the mail log")
            continue
        r.add(f"submit {port}", PASS, f"accepted for {acct.address}")
        if 993 not in up:
            continue
        try:
            msg = fetch(t, acct, token, t.wait)
        except (OSError, imaplib.IMAP4.error) as e:
            r.add(f"read back {port}", FAIL, f"IMAP login failed ({e})", "check Dovecot's log")
            continue
        if msg is None:
            r.add(f"read back {port}", FAIL, f"not delivered within {t.wait:g} s", "look for it in the mail queue (mailq)")
        else:
            r.add(f"read back {port}", PASS, "delivered, read on 993")
            got = got or msg
    return got


def check_filters(t: Target, r: Report, acct: Account) -> None:
    if t.facts.get("spam_filter"):
        token = f"gtube-{secrets.token_hex(6)}"
        status, refused = submit(t, acct, 587, _message(acct.address, acct.address, token, GTUBE + "\n"))
        msg = None if status != "ok" else fetch(t, acct, token, t.wait)
        if status == "error":
            r.add("spam filter", FAIL, f"could not submit GTUBE: {refused[:120]}", "fix the round trip first")
        elif status == "refused":
            r.add("spam filter", PASS, f"GTUBE refused: {refused[:80]}")
        elif msg is None:
            r.add("spam filter", PASS, "GTUBE not delivered (blocked)")
        elif re.search(rb"^X-Spam-Flag:\s*YES", msg, re.M | re.I):
            r.add("spam filter", PASS, "GTUBE delivered with X-Spam-Flag: YES")
        else:
            r.add("spam filter", FAIL, "GTUBE delivered without a spam flag", "check Amavis and SpamAssassin")
    if t.facts.get("virus_filter"):
        token = f"eicar-{secrets.token_hex(6)}"
        status, refused = submit(t, acct, 587, _message(acct.address, acct.address, token, "attached\n", EICAR))
        msg = None if status != "ok" else fetch(t, acct, token, min(t.wait, 30))
        if status == "error":
            r.add("virus filter", FAIL, f"could not submit EICAR: {refused[:120]}", "fix the round trip first")
        elif msg is None:
            r.add("virus filter", PASS, "EICAR not delivered" + (f" ({refused[:60]})" if refused else ""))
        else:
            r.add("virus filter", FAIL, "EICAR delivered", "check ClamAV: signatures present, clamd running")


# --- DKIM ---------------------------------------------------------------------------------------

def _relaxed_header(name: str, value: str) -> str:
    value = re.sub(r"\r?\n(?=[ \t])", "", value)
    value = re.sub(r"[ \t]+", " ", value).strip()
    return f"{name.lower().strip()}:{value}"


def _relaxed_body(body: bytes) -> bytes:
    lines = body.replace(b"\r\n", b"\n").split(b"\n")
    lines = [re.sub(rb"[ \t]+", b" ", ln).rstrip(b" \t") for ln in lines]
    while lines and lines[-1] == b"":
        lines.pop()
    return b"".join(ln + b"\r\n" for ln in lines)


def _simple_body(body: bytes) -> bytes:
    body = body.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    while body.endswith(b"\r\n\r\n"):
        body = body[:-2]
    return body if body.endswith(b"\r\n") or not body else body + b"\r\n"


def dkim_verify(raw: bytes, key_lookup: Callable[[str], str]) -> tuple[bool, str]:
    """Verify the first DKIM-Signature (rsa-sha256) of `raw`; `key_lookup(name)` returns the TXT."""
    head, _, body = raw.replace(b"\r\n", b"\n").partition(b"\n\n")
    headers: list[tuple[str, str]] = []
    for line in head.decode("utf-8", "replace").split("\n"):
        if line[:1] in (" ", "\t") and headers:
            headers[-1] = (headers[-1][0], headers[-1][1] + "\r\n" + line)
        elif ":" in line:
            n, v = line.split(":", 1)
            headers.append((n, v))
    sig = next(((n, v) for n, v in headers if n.lower() == "dkim-signature"), None)
    if not sig:
        return False, "no DKIM-Signature header"
    tags = {k.strip(): v for k, v in (t.split("=", 1) for t in re.sub(r"\s+", "", sig[1]).split(";") if "=" in t)}
    if tags.get("a") != "rsa-sha256":
        return False, f"algorithm {tags.get('a')} not checked"
    hcanon, _, bcanon = tags.get("c", "simple/simple").partition("/")
    bcanon = bcanon or "simple"
    canon_body = _relaxed_body(body) if bcanon == "relaxed" else _simple_body(body)
    if "l" in tags:
        canon_body = canon_body[:int(tags["l"])]
    if base64.b64encode(hashlib.sha256(canon_body).digest()).decode() != tags.get("bh"):
        return False, "body hash does not match (the body changed after signing)"
    remaining = list(headers)
    signed = []
    for h in tags.get("h", "").split(":"):
        for i in range(len(remaining) - 1, -1, -1):       # bottom-up, each instance once
            if remaining[i][0].lower() == h.lower():
                signed.append(remaining.pop(i))
                break
    def canon(n: str, v: str) -> str:
        return _relaxed_header(n, v) if hcanon == "relaxed" else f"{n}:{v}"
    sig_value = re.sub(r"(b=)[^;]*", r"\1", sig[1])
    data = "".join(canon(n, v) + "\r\n" for n, v in signed) + canon(sig[0], sig_value)
    selector_name = f"{tags.get('s')}._domainkey.{tags.get('d')}"
    txt = key_lookup(selector_name)
    p = dict(t.strip().split("=", 1) for t in txt.split(";") if "=" in t).get("p", "").replace(" ", "")
    if not p:
        return False, f"no DKIM key published at {selector_name}"
    with tempfile.TemporaryDirectory() as d:
        pem = f"{d}/key.pem"
        with open(pem, "w") as f:
            f.write("-----BEGIN PUBLIC KEY-----\n" + "\n".join(p[i:i + 64] for i in range(0, len(p), 64))
                    + "\n-----END PUBLIC KEY-----\n")
        with open(f"{d}/sig", "wb") as f:
            f.write(base64.b64decode(tags.get("b", "")))
        with open(f"{d}/data", "wb") as f:
            f.write(data.encode())
        v = subprocess.run(["openssl", "dgst", "-sha256", "-verify", pem, "-signature", f"{d}/sig", f"{d}/data"],
                           capture_output=True, text=True)
    if v.returncode == 0:
        return True, f"signature of {tags.get('d')} (selector {tags.get('s')}) verifies against {selector_name}"
    return False, f"signature does not verify against the key published at {selector_name}"


def check_dkim(t: Target, r: Report, msg: bytes | None, resolver: tuple[str, int] | None) -> None:
    if not t.facts.get("dkim"):
        return
    if msg is None:
        r.add("dkim", FAIL, "no message to look at (the round trip failed)", "fix the round trip first")
        return
    from mailwright import dnswire

    def lookup(name: str) -> str:
        server, port = resolver or (dnswire.system_resolver(), 53)
        try:
            return "".join(dnswire.query(name, "TXT", server, port).records[:1])
        except dnswire.DnsError:
            return ""
    ok, why = dkim_verify(msg, lookup)
    r.add("dkim", PASS if ok else FAIL, why,
          "publish the key `./setup.sh dns` prints for the domain (opendkim/keys/<domain>/<selector>.txt)")


def check_dns(t: Target, r: Report, resolver: tuple[str, int] | None) -> None:
    if not t.setup:
        r.add("dns", WARN, "not checked with --address alone", "run through -c CONTAINER or --ssh HOST")
        return
    args = ["dns", "--check", "--json"] + (["--resolver", f"{resolver[0]}:{resolver[1]}"] if resolver else [])
    rc, out, err = t.setup(args, "")
    try:
        findings = json.loads(out)["findings"]
    except (ValueError, KeyError):
        r.add("dns", FAIL, f"setup dns --check gave no answer: {err.strip()[-200:]}", "run ./setup.sh dns --check")
        return
    for f in findings:
        status = {"ok": PASS, "warn": WARN, "fail": FAIL}[f["severity"]]
        detail = f"{f['type']} {f['name']}: {f['status']}"
        if f["published"] and f["status"] != "ok":
            detail += f" (published: {' | '.join(f['published'])[:80]})"
        r.add(f"dns {f['type']} {f['name']}", status, detail, f["advice"])


# --- entry ----------------------------------------------------------------------------------------

def _guarded(r: Report, name: str, fn, *args):
    """A check that breaks is a failure with its reason, never a traceback that hides the others."""
    try:
        return fn(*args)
    except Exception as e:          # noqa: BLE001 - reported, and the remaining checks still run
        r.add(name, FAIL, f"the check itself failed: {type(e).__name__}: {e}", "run it again; report it if it persists")
        return None


def run(t: Target, resolver: tuple[str, int] | None = None, dns: bool = True) -> Report:
    r = Report()
    up = _guarded(r, "ports", check_ports, t, r) or []
    _guarded(r, "banners", check_banners, t, r, up)
    _guarded(r, "tls", check_tls, t, r, up)
    _guarded(r, "smtp policy", check_smtp_policy, t, r, up)
    with Account(t, r) as acct:
        if acct is not None:
            msg = _guarded(r, "round trip", check_round_trip, t, r, up, acct)
            _guarded(r, "filters", check_filters, t, r, acct)
            _guarded(r, "dkim", check_dkim, t, r, msg, resolver)
    if dns:
        _guarded(r, "dns", check_dns, t, r, resolver)
    return r


def render(r: Report, as_json: bool, out) -> None:
    if as_json:
        json.dump({"results": [asdict(x) for x in r.results], "summary": r.summary(), "exit": r.exit_code},
                  out, indent=1)
        out.write("\n")
        return
    width = max((len(x.check) for x in r.results), default=10)
    for x in r.results:
        line = f"{x.status.upper():4}  {x.check.ljust(width)}  {x.detail}"
        if x.advice:
            line += f"\n      {' ' * width}  -> {x.advice}"
        out.write(line + "\n")
    s = r.summary()
    out.write(f"\n{s[PASS]} passed, {s[WARN]} warnings, {s[FAIL]} failed\n")
