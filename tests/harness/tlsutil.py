"""A throw-away CA (trustme), the server certificate for mail.example.test, and probes.

Clients trust only this CA: a server presenting anything else (the Debian
snakeoil certificate, Dovecot's build-time certificate, ...) fails the handshake.
"""

from __future__ import annotations

import socket
import ssl
import time
from pathlib import Path

import trustme
from cryptography import x509

from . import HOST, SERVER_NAME

CERT_NAME = "cert.pem"     # chain: leaf first, then intermediates
KEY_NAME = "key.pem"


class TestTLS:
    __test__ = False  # not a pytest class

    def __init__(self, server_name: str = SERVER_NAME):
        self.server_name = server_name
        self.ca = trustme.CA()
        self.leaf = self.ca.issue_cert(server_name)

    # --- server side --------------------------------------------------------------
    def issue(self) -> trustme.LeafCert:
        """A new leaf for the same name from the same CA (a different serial)."""
        self.leaf = self.ca.issue_cert(self.server_name)
        return self.leaf

    @staticmethod
    def chain_pem(leaf: trustme.LeafCert) -> bytes:
        return b"".join(blob.bytes() for blob in leaf.cert_chain_pems)

    @staticmethod
    def key_pem(leaf: trustme.LeafCert) -> bytes:
        return leaf.private_key_pem.bytes()

    @staticmethod
    def serial(leaf: trustme.LeafCert) -> int:
        return x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes()).serial_number

    def write(self, ssl_dir: Path, leaf: trustme.LeafCert | None = None) -> tuple[Path, Path]:
        leaf = leaf or self.leaf
        ssl_dir.mkdir(parents=True, exist_ok=True)
        cert, key = ssl_dir / CERT_NAME, ssl_dir / KEY_NAME
        key.write_bytes(self.key_pem(leaf))
        key.chmod(0o600)
        cert.write_bytes(self.chain_pem(leaf))
        cert.chmod(0o644)
        return cert, key

    def ca_pem(self) -> bytes:
        return self.ca.cert_pem.bytes()

    # --- client side --------------------------------------------------------------
    def client_context(self) -> ssl.SSLContext:
        """Verifies the chain against the test CA only, and the host name."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = True
        ctx.verify_mode = ssl.CERT_REQUIRED
        self.ca.configure_trust(ctx)
        return ctx


def served_certificate(port: int, ctx: ssl.SSLContext, starttls: str | None = None,
                       timeout: float = 15) -> x509.Certificate:
    """The leaf certificate a port presents; `starttls` in (None, 'smtp', 'imap', 'pop3')."""
    with socket.create_connection((HOST, port), timeout=timeout) as raw:
        if starttls:
            f = raw.makefile("rb")

            def line() -> bytes:
                data = f.readline()
                if not data:
                    raise ConnectionError(f"port {port} closed the connection during STARTTLS")
                return data

            if starttls == "smtp":
                while not line()[3:4] == b" ":
                    pass
                raw.sendall(b"EHLO probe.example.test\r\n")
                while not line()[3:4] == b" ":
                    pass
                raw.sendall(b"STARTTLS\r\n")
                resp = line()
                if not resp.startswith(b"220"):
                    raise ConnectionError(f"STARTTLS refused on {port}: {resp!r}")
            elif starttls == "imap":
                line()
                raw.sendall(b"a STARTTLS\r\n")
                resp = line()
                if not resp.startswith(b"a OK"):
                    raise ConnectionError(f"STARTTLS refused on {port}: {resp!r}")
            elif starttls == "pop3":
                line()
                raw.sendall(b"STLS\r\n")
                resp = line()
                if not resp.startswith(b"+OK"):
                    raise ConnectionError(f"STLS refused on {port}: {resp!r}")
        with ctx.wrap_socket(raw, server_hostname=SERVER_NAME) as tls:
            der = tls.getpeercert(binary_form=True)
    return x509.load_der_x509_certificate(der)


def wait_for_serial(port: int, ctx: ssl.SSLContext, serial: int, starttls: str | None = None,
                    timeout: float = 15) -> int:
    """Poll until `port` serves the certificate with `serial`; returns the last serial seen."""
    deadline = time.monotonic() + timeout
    last: int | str = "none"
    while True:
        try:
            last = served_certificate(port, ctx, starttls).serial_number
            if last == serial:
                return last
        except (OSError, ssl.SSLError, ConnectionError) as e:
            last = f"error: {e}"
        if time.monotonic() > deadline:
            raise AssertionError(f"port {port} still serves serial {last} after {timeout}s; "
                                 f"expected the replaced certificate's serial {serial}")
        time.sleep(0.5)
