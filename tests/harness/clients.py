"""Mail clients that talk to 127.0.0.1 but verify the certificate as mail.example.test.

Dovecot treats a connection whose remote IP equals its local IP as secure
(plaintext login allowed), so tests about "no login before TLS" connect from a
different loopback source (`source=ALT_SOURCE`).
"""

from __future__ import annotations

import email.utils
import imaplib
import poplib
import smtplib
import socket
import ssl
import time
import uuid
from email.message import EmailMessage

from . import HOST, SERVER_NAME

ALT_SOURCE = "127.0.0.2"
TIMEOUT = 45  # the first SMTP connection to port 25 waits ~6 s (postscreen greet test)


def _connect(port: int, timeout: float, source: str | None) -> socket.socket:
    return socket.create_connection((HOST, port), timeout, (source, 0) if source else None)


# --- SMTP -----------------------------------------------------------------------------
class SMTP(smtplib.SMTP):
    """Plain SMTP (25, 587); `starttls()` verifies the server as mail.example.test."""

    def __init__(self, port: int = 25, *, source: str | None = None, timeout: float = TIMEOUT):
        self._source = source
        super().__init__(local_hostname="client.example.test", timeout=timeout,
                         source_address=(source, 0) if source else None)
        self.connect(HOST, port)

    def starttls(self, context: ssl.SSLContext):  # type: ignore[override]
        self._host = SERVER_NAME
        return super().starttls(context=context)


class SMTPS(smtplib.SMTP_SSL):
    """Implicit TLS (465)."""

    def __init__(self, port: int = 465, *, context: ssl.SSLContext, source: str | None = None,
                 timeout: float = TIMEOUT):
        super().__init__(local_hostname="client.example.test", timeout=timeout, context=context,
                         source_address=(source, 0) if source else None)
        self.connect(HOST, port)

    def _get_socket(self, host, port, timeout):
        sock = socket.create_connection((host, port), timeout, self.source_address)
        return self.context.wrap_socket(sock, server_hostname=SERVER_NAME)


def make_message(sender: str, to: str, subject: str, body: str = "hello\n",
                 size: int | None = None) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = email.utils.formatdate(localtime=False)
    msg["Message-ID"] = f"<{uuid.uuid4().hex}@client.example.test>"
    if size:
        line = ("x" * 76) + "\n"
        body = body + line * (size // len(line) + 1)
    msg.set_content(body)
    return msg


def token(prefix: str = "mwtest") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def send(sender: str, rcpt: str, subject: str, *, port: int = 25, context: ssl.SSLContext | None = None,
         login: tuple[str, str] | None = None, size: int | None = None, starttls: bool = True) -> dict:
    """Send one message; STARTTLS whenever offered (and a context is given)."""
    msg = make_message(sender, rcpt, subject, size=size)
    if port == 465:
        assert context is not None
        client: smtplib.SMTP = SMTPS(port, context=context)
    else:
        client = SMTP(port)
    with client:
        client.ehlo()
        if port != 465 and starttls and context is not None and client.has_extn("starttls"):
            client.starttls(context)
            client.ehlo()
        if login:
            client.login(*login)
        return client.send_message(msg, from_addr=sender, to_addrs=[rcpt])


# --- IMAP -----------------------------------------------------------------------------
class IMAP(imaplib.IMAP4):
    """IMAP on 143; `starttls(ctx)` verifies the server as mail.example.test."""

    def __init__(self, port: int = 143, *, source: str | None = None, timeout: float = TIMEOUT):
        self._source = source
        super().__init__(HOST, port, timeout=timeout)

    def _create_socket(self, timeout):
        sock = _connect(self.port, timeout, self._source)
        self.host = SERVER_NAME  # used as server_hostname by starttls()
        return sock


class IMAPS(imaplib.IMAP4_SSL):
    def __init__(self, port: int = 993, *, context: ssl.SSLContext, source: str | None = None,
                 timeout: float = TIMEOUT):
        self._source = source
        super().__init__(HOST, port, ssl_context=context, timeout=timeout)

    def _create_socket(self, timeout):
        sock = _connect(self.port, timeout, self._source)
        return self.ssl_context.wrap_socket(sock, server_hostname=SERVER_NAME)


def _quote(mailbox: str) -> str:
    return '"' + mailbox.replace("\\", "\\\\").replace('"', '\\"') + '"'


def find_message(imap: imaplib.IMAP4, mailbox: str, subject_token: str) -> bytes | None:
    typ, _ = imap.select(_quote(mailbox), readonly=True)
    if typ != "OK":
        return None
    typ, data = imap.search(None, "SUBJECT", _quote(subject_token))
    if typ != "OK" or not data or not data[0]:
        return None
    num = data[0].split()[-1]
    typ, msg = imap.fetch(num, "(RFC822)")
    if typ != "OK":
        return None
    for part in msg:
        if isinstance(part, tuple):
            return part[1]
    return None


def list_mailboxes(imap: imaplib.IMAP4) -> list[str]:
    typ, data = imap.list()
    return [d.decode(errors="replace") if isinstance(d, bytes) else str(d) for d in (data or [])]


def wait_for_message(user: str, password: str, subject_token: str, *, context: ssl.SSLContext,
                     mailbox: str = "INBOX", timeout: float = 15, absent_from: tuple[str, ...] = ()) -> bytes:
    """Poll over IMAPS until a message whose Subject contains the token is in `mailbox`."""
    deadline = time.monotonic() + timeout
    last_error = ""
    boxes: list[str] = []
    while True:
        try:
            with IMAPS(context=context) as imap:
                imap.login(user, password)
                found = find_message(imap, mailbox, subject_token)
                if found is not None:
                    for other in absent_from:
                        assert find_message(imap, other, subject_token) is None, \
                            f"{subject_token} is in {other} too"
                    return found
                boxes = list_mailboxes(imap)
        except (OSError, imaplib.IMAP4.error, ssl.SSLError) as e:
            last_error = f"{type(e).__name__}: {e}"
        if time.monotonic() > deadline:
            raise AssertionError(
                f"no message with subject {subject_token!r} in {user}'s {mailbox} after {timeout}s; "
                f"mailboxes: {boxes}; last error: {last_error or 'none'}")
        time.sleep(0.5)


# --- POP3 -----------------------------------------------------------------------------
class POP3(poplib.POP3):
    def __init__(self, port: int = 110, *, source: str | None = None, timeout: float = TIMEOUT):
        self._source = source
        super().__init__(HOST, port, timeout=timeout)

    def _create_socket(self, timeout):
        sock = _connect(self.port, timeout, self._source)
        self.host = SERVER_NAME  # used as server_hostname by stls()
        return sock


class POP3S(poplib.POP3_SSL):
    def __init__(self, port: int = 995, *, context: ssl.SSLContext, source: str | None = None,
                 timeout: float = TIMEOUT):
        self._source = source
        super().__init__(HOST, port, context=context, timeout=timeout)

    def _create_socket(self, timeout):
        sock = _connect(self.port, timeout, self._source)
        return self.context.wrap_socket(sock, server_hostname=SERVER_NAME)


# --- readiness ------------------------------------------------------------------------
def banner(port: int, timeout: float = 5) -> bytes:
    """The first line a port sends (plain TCP), b'' when it sends nothing in time."""
    with socket.create_connection((HOST, port), timeout=timeout) as s:
        try:
            return s.recv(512)
        except socket.timeout:
            return b""


def wait_for_ports(ports, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    pending = list(ports)
    while pending:
        port = pending[0]
        try:
            with socket.create_connection((HOST, port), timeout=2):
                pending.pop(0)
                continue
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"ports {pending} not accepting connections after {timeout}s")
        time.sleep(0.3)


def poll(predicate, what: str, diagnostics, timeout: float = 90, every: float = 1.0):
    """Call `predicate` until it returns something true (returned), or fail after `timeout`
    seconds with `what`, its last value and the server's `diagnostics()`: a bounded wait for an
    observable result, never a timed assertion."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"{what}: not seen within {timeout}s (last: {last!r})\n{diagnostics()}")

