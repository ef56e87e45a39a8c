"""OpenDKIM against the image (issue 10): mail submitted on 587 and mail made locally is signed with
the keys `setup config dkim` writes, without a restart; a new selector signs the next message;
a stopped OpenDKIM defers mail (never bounces or drops it); off means gone.

One server on the test bed (tests/harness/dnsbed.py), no DNS needed: the signatures are checked
by the small RFC 6376 verifier below (rsa-sha256, relaxed/simple as OpenDKIM is configured),
against the public key in the config folder's `<selector>.txt`, the record an operator publishes.
It is checked on a tampered copy too, so it can fail. Every wait is a bounded poll.
"""

from __future__ import annotations

import base64
import hashlib
import re
import smtplib
import time

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

from harness import clients as c
from harness.mailserver import command_lines

pytestmark = pytest.mark.docker

FQDN = "mx1.example.test"
USER, PASSWORD = "user1@example.test", "user1-Secret!"
ENV = {"SSL_TYPE": "manual", "SSL_CERT_PATH": "/tmp/docker-mailserver/ssl/cert.pem",
       "SSL_KEY_PATH": "/tmp/docker-mailserver/ssl/key.pem", "ENABLE_OPENDKIM": "1",
       "ENABLE_OPENDMARC": "0", "ENABLE_POLICYD_SPF": "0"}


# --- a DKIM verifier (RFC 6376), enough for OpenDKIM's relaxed/simple rsa-sha256 ------------------------

def _fields(header_block: bytes) -> list[tuple[str, bytes]]:
    """(lower-case name, the whole field as received, CRLFs and all)."""
    fields: list[tuple[str, bytes]] = []
    for line in header_block.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and fields:
            name, raw = fields[-1]
            fields[-1] = (name, raw + b"\r\n" + line)
        elif line:
            fields.append((line.split(b":", 1)[0].strip().lower().decode(), line))
    return fields


def _relaxed(field: bytes) -> bytes:
    name, value = field.split(b":", 1)
    value = re.sub(rb"[ \t]+", b" ", value.replace(b"\r\n", b"")).strip(b" ")
    return name.strip().lower() + b":" + value + b"\r\n"


def _tags(value: str) -> dict[str, str]:
    out = {}
    for part in value.split(";"):
        if "=" in part:
            k, v = part.split("=", 1)
            out[k.strip()] = re.sub(r"\s+", "", v)
    return out


def public_key_from_txt(txt: str):
    """The key of `<selector>.txt` as `setup config dkim` writes it (a zone-file line)."""
    record = "".join(re.findall(r'"([^"]*)"', txt))
    return serialization.load_der_public_key(base64.b64decode(_tags(record)["p"]))


def dkim_verify(message: bytes, public_key) -> dict[str, str]:
    """Verify the message's (first) DKIM-Signature; its tags. AssertionError when it does not verify."""
    message = message.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    head, _, body = message.partition(b"\r\n\r\n")
    fields = _fields(head)
    sig_raw = next(raw for name, raw in fields if name == "dkim-signature")
    tags = _tags(sig_raw.split(b":", 1)[1].replace(b"\r\n", b"").decode())
    assert tags.get("a") == "rsa-sha256" and tags.get("c") == "relaxed/simple", tags
    # Body, simple: trailing empty lines removed, one CRLF at the end.
    canon_body = re.sub(rb"(\r\n)*\Z", b"", body) + b"\r\n"
    assert base64.b64encode(hashlib.sha256(canon_body).digest()).decode() == tags["bh"], "body hash differs"
    # Headers, relaxed, bottom-up per name; a name signed more often than present counts as empty.
    remaining = {}
    for name, raw in fields:
        remaining.setdefault(name, []).append(raw)
    data = b""
    for name in (n.strip().lower() for n in tags["h"].split(":")):
        if remaining.get(name):
            data += _relaxed(remaining[name].pop())
    # The signature header itself, with the value of its b= tag (not bh=) emptied.
    unsigned = re.sub(rb"(^|;)(\s*b=)[^;]*", rb"\1\2", sig_raw.split(b":", 1)[1])
    data += _relaxed(b"DKIM-Signature:" + unsigned)[:-2]
    try:
        public_key.verify(base64.b64decode(tags["b"]), data, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        raise AssertionError(f"the DKIM signature does not verify (d={tags.get('d')}, s={tags.get('s')})") from None
    return tags


# --- the server -------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def mx1(bed):
    box = bed.server(FQDN, accounts={USER: PASSWORD}, env=dict(ENV))
    return box


def started_at(box) -> str:
    return box.exec("cat", "/proc/1/stat").stdout.split()[21]      # PID 1's start time: same container, no restart


def submit(box, tok: str) -> None:
    assert box.submit(USER, PASSWORD, c.make_message(USER, USER, tok), to=[USER]) == {}


def signed_message(box, selector: str, what: str, timeout: float = 60) -> bytes:
    """Submit on 587 until a delivered message carries a signature by `selector` (bounded poll:
    the change poller applies the new key within DMS_CONFIG_POLL seconds)."""
    deadline = time.monotonic() + timeout
    last = b""
    while time.monotonic() < deadline:
        tok = c.token("dkim")
        submit(box, tok)
        last = box.wait_for_message(USER, PASSWORD, tok)
        if re.search(rb"DKIM-Signature:[^\r\n]*(\r\n[ \t][^\r\n]*)*\bs=(?:" + selector.encode() + rb");", last):
            return last
        time.sleep(1)
    raise AssertionError(f"{what}: no message signed with s={selector} within {timeout}s; last:\n"
                         f"{last[:1500].decode(errors='replace')}\n{box.diagnostics()}")


def txt_key(box, selector: str):
    return public_key_from_txt((box.volumes.config / "opendkim" / "keys" / "example.test" / f"{selector}.txt").read_text())


def test_keys_from_setup_sign_submitted_mail_without_a_restart(mx1):
    before = started_at(mx1)
    tok = c.token("unsigned")
    submit(mx1, tok)
    assert b"DKIM-Signature:" not in mx1.wait_for_message(USER, PASSWORD, tok)     # no key yet

    mx1.setup("config", "dkim", "keysize", "1024", "domain", "example.test")
    message = signed_message(mx1, "mail", "after `setup config dkim`")
    tags = dkim_verify(message, txt_key(mx1, "mail"))
    assert (tags["d"], tags["s"]) == ("example.test", "mail")
    # The verifier can fail: the same message with its body changed does not verify.
    with pytest.raises(AssertionError, match="body hash differs"):
        dkim_verify(message.replace(b"hello", b"jello"), txt_key(mx1, "mail"))
    assert started_at(mx1) == before


def test_a_new_selector_signs_the_next_messages_in_the_same_container(mx1):
    before = started_at(mx1)
    mx1.setup("config", "dkim", "keysize", "1024", "selector", "rot2", "domain", "example.test")
    message = signed_message(mx1, "rot2", "after a rotation to selector rot2")
    assert dkim_verify(message, txt_key(mx1, "rot2"))["s"] == "rot2"
    with pytest.raises(AssertionError, match="does not verify"):
        dkim_verify(message, txt_key(mx1, "mail"))                 # not the old key
    assert started_at(mx1) == before


def test_locally_made_mail_is_signed(mx1):
    tok = c.token("local")
    mx1.exec("sh", "-c", f"printf 'From: {USER}\\nTo: {USER}\\nSubject: {tok}\\n\\nhello\\n' | "
             f"/usr/sbin/sendmail -f {USER} {USER}")
    message = mx1.wait_for_message(USER, PASSWORD, tok)
    assert dkim_verify(message, txt_key(mx1, "rot2"))["d"] == "example.test"


def test_private_keys_are_the_signers_alone_and_none_is_in_the_image(mx1, image):
    modes = mx1.exec("sh", "-c", "stat -c '%a %U %n' /etc/opendkim/keys/*/*").stdout.split("\n")
    modes = sorted(m for m in modes if m)
    assert modes == ["600 opendkim /etc/opendkim/keys/example.test/mail.private",
                     "600 opendkim /etc/opendkim/keys/example.test/rot2.private"], modes
    # The public record stays in the config folder.
    from harness import dockercli as d
    name = d.unique_name("dkim-image")
    try:
        out = d.docker("run", "--rm", "--name", name, "--network", "none", "--entrypoint", "sh", image, "-c",
                       "find /etc/opendkim /etc/opendkim.conf /etc/dkimkeys -type f 2>/dev/null; true").stdout
    finally:
        d.rm(name)
    assert ".private" not in out and "KeyTable" not in out, out


def test_a_stopped_opendkim_defers_mail_and_loses_none(mx1):
    """OpenDKIM frozen (SIGSTOP: it accepts connections and never answers). Postfix's
    milter_default_action stays tempfail: submission gets a 4xx, local mail waits in the queue;
    once OpenDKIM runs again both go out, signed. (Short milter timeouts via postfix-main.cf.)"""
    (mx1.volumes.config / "postfix-main.cf").write_text("milter_connect_timeout = 3s\nmilter_command_timeout = 3s\n")
    deadline = time.monotonic() + 60
    while mx1.postconf("milter_command_timeout").strip() != "3s":
        assert time.monotonic() < deadline, mx1.diagnostics()
        time.sleep(0.5)
    mx1.setup("config", "dkim", "keysize", "1024", "domain", "example.test")     # a key (kept if there is one)
    signed_message(mx1, "[a-z0-9]+", "before OpenDKIM is stopped")
    pid = mx1.read_file("/run/opendkim/opendkim.pid").strip()
    mx1.exec("sh", "-c", f"kill -STOP {pid}")
    try:
        tok, local = c.token("deferred"), c.token("queued")
        with pytest.raises(smtplib.SMTPException) as refused:
            submit(mx1, tok)
        code = getattr(refused.value, "smtp_code", None)
        if code is None:                                    # SMTPRecipientsRefused: {rcpt: (code, text)}
            code = next(iter(refused.value.recipients.values()))[0]
        assert 400 <= code < 500, (refused.value, mx1.diagnostics())
        mx1.exec("sh", "-c", f"printf 'From: {USER}\\nTo: {USER}\\nSubject: {local}\\n\\nhello\\n' | "
                 f"/usr/sbin/sendmail -f {USER} {USER}")
    finally:
        mx1.exec("sh", "-c", f"kill -CONT {pid}")
    # The local message was deferred, not dropped or bounced: it arrives signed.
    message = mx1.wait_for_message(USER, PASSWORD, local, timeout=120)
    selector = re.search(rb"\bs=([a-z0-9]+);", message).group(1).decode()
    assert dkim_verify(message, txt_key(mx1, selector))["d"] == "example.test"
    assert "bounced" not in mx1.mail_log()
    (mx1.volumes.config / "postfix-main.cf").unlink()


def opendkim_pid(box) -> str:
    """Its pid ('' between an exit and the supervisor's restart: OpenDKIM removes its pidfile)."""
    return box.exec("cat", "/run/opendkim/opendkim.pid", check=False).stdout.strip()


def opendkim_up(box) -> str:
    """Its pid once it runs and its socket is there ('' until then)."""
    pid = opendkim_pid(box)
    listening = box.exec("test", "-S", "/run/opendkim/opendkim.sock", check=False).returncode == 0
    return pid if pid and listening else ""


def test_opendkim_logs_reach_the_mail_log(mx1):
    """OpenDKIM logs only to syslog; the container's sink (ops/syslog) writes its lines to the mail
    log in syslog's layout. Its last words on a TERM are one such line; the supervisor restarts it."""
    pid = opendkim_pid(mx1)
    mx1.exec("kill", "-TERM", pid)
    line = re.compile(rf"^\w{{3}} [ \d]\d \d\d:\d\d:\d\d \S+ opendkim\[{pid}\]: OpenDKIM Filter v\S+ terminating", re.M)
    c.poll(lambda: line.search(mx1.mail_log()), f"opendkim[{pid}]'s 'terminating' line in mail.log", mx1.diagnostics)
    c.poll(lambda: opendkim_up(mx1) not in ("", pid), "OpenDKIM restarted by the supervisor", mx1.diagnostics)


CONNECTIONS, PER_CONNECTION = 4, 150


def test_concurrent_connections_with_an_nxdomain_resolver_all_delivered_and_signed(mx1):
    """The bench's load: 4 submission connections at once, the resolver answering NXDOMAIN for every
    name but the server's own. OpenDKIM handed its ResolverConfiguration to libunbound's parser
    (not thread-safe) again for every message, in the message's thread: two messages at once
    crashed it and Postfix answered 451 4.7.1 until it was back. Every message must go through
    on the first try (no 4xx), be delivered once and signed, with OpenDKIM never restarted."""
    c.poll(lambda: opendkim_up(mx1), "OpenDKIM listening", mx1.diagnostics)
    mx1.setup("config", "dkim", "keysize", "1024", "domain", "example.test")     # a key (kept if there is one)
    signed_message(mx1, "[a-z0-9]+", "before the burst")
    assert mx1.resolve("nothing-here.example.net") == []                          # NXDOMAIN, at once
    pid, log_before = opendkim_pid(mx1), len(mx1.mail_log())
    tag = c.token("burst")
    errors: list[str] = []

    def connection(i: int) -> None:
        try:
            with mx1.smtp(587) as s:
                s.ehlo()
                s.starttls(context=mx1.context)
                s.ehlo()
                s.login(USER, PASSWORD)
                for k in range(PER_CONNECTION):
                    refused = s.send_message(c.make_message(USER, USER, f"{tag} {i}-{k}"), from_addr=USER, to_addrs=[USER])
                    if refused:
                        errors.append(f"{i}-{k}: {refused}")
        except (smtplib.SMTPException, OSError) as e:
            errors.append(f"connection {i}: {e!r}")

    import threading
    threads = [threading.Thread(target=connection, args=(i,)) for i in range(CONNECTIONS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [], (errors[:5], mx1.mail_log()[log_before:][-4000:])

    total = CONNECTIONS * PER_CONNECTION

    def headers():
        with mx1.imaps() as imap:
            imap.login(USER, PASSWORD)
            imap.select("INBOX", readonly=True)
            typ, data = imap.search(None, "SUBJECT", tag)
            ids = data[0].split() if typ == "OK" and data and data[0] else []
            if len(ids) < total:
                return None
            typ, data = imap.fetch(b",".join(ids), "(BODY.PEEK[HEADER.FIELDS (DKIM-SIGNATURE SUBJECT)])")
            return [part[1] for part in data if isinstance(part, tuple)]
    found = c.poll(headers, f"{total} messages of the burst delivered", mx1.diagnostics, timeout=240)
    assert len(found) == total
    unsigned = [h for h in found if not re.search(rb"DKIM-Signature:[^\r\n]*(\r\n[ \t][^\r\n]*)*\bd=example\.test;", h)]
    assert unsigned == [], unsigned[:3]
    log = mx1.mail_log()[log_before:]
    assert not re.search(r"milter|4\.7\.1", log), [l for l in log.splitlines() if "milter" in l or "4.7.1" in l][:5]
    assert opendkim_pid(mx1) == pid, "OpenDKIM was restarted during the burst"


def test_off_means_gone(mx1):
    mx1.recreate(env={**ENV, "ENABLE_OPENDKIM": "0"})
    for param in ("smtpd_milters", "non_smtpd_milters"):
        assert "8891" not in mx1.postconf(param) and "opendkim" not in mx1.postconf(param)
    assert mx1.exec("ss", "-Hltn", "sport = :8891").stdout.strip() == ""
    assert mx1.exec("test", "-e", "/run/opendkim/opendkim.sock", check=False).returncode != 0
    left = mx1.exec("sh", "-c", "ls /etc/opendkim.conf /etc/opendkim/KeyTable /etc/opendkim/SigningTable "
                    "/etc/opendkim/TrustedHosts /etc/opendkim/keys/*/* 2>/dev/null", check=False).stdout
    assert left.strip() == "", left
    assert "opendkim" not in command_lines(mx1)
    tok = c.token("off")
    submit(mx1, tok)
    assert b"DKIM-Signature:" not in mx1.wait_for_message(USER, PASSWORD, tok)
