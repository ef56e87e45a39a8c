"""Checks of the test harness itself (no Docker): a harness that cannot fail proves nothing."""

from __future__ import annotations

import socket
import ssl
import threading
import warnings

import pytest

from harness import clients as c
from harness import scenario as sc
from harness import tlsutil
from harness.configdir import MailConfig, sha512_crypt
from harness.vps import _image_ref_from_output, parse_results, write_inventory

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import crypt


def test_sha512_crypt_format_and_verifies():
    h = sha512_crypt("pw")
    assert h.startswith("{SHA512-CRYPT}$6$")
    raw = h[len("{SHA512-CRYPT}"):]
    assert crypt.crypt("pw", raw) == raw
    assert crypt.crypt("other", raw) != raw


def test_config_folder_formats(tmp_path):
    cfg = MailConfig(tmp_path)
    cfg.accounts_raw("# comment")
    cfg.account("a@example.test", "pw")
    n = cfg.accounts_raw("garbage")
    cfg.alias("al@example.test", "a@example.test", "b@example.test")
    cfg.alias("@catchall.test", "a@example.test")
    cfg.regexp(r"/^x[0-9]+@example\.test$/", "a@example.test")
    cfg.quota("a@example.test", "1M")
    cfg.user_sieve("a@example.test", 'require "fileinto";\n')
    cfg.write()
    lines = (tmp_path / "postfix-accounts.cf").read_text().splitlines()
    assert n == 3 and lines[n - 1] == "garbage"
    assert lines[1].startswith("a@example.test|{SHA512-CRYPT}$6$")
    assert (tmp_path / "postfix-virtual.cf").read_text() == \
        "al@example.test a@example.test,b@example.test\n@catchall.test a@example.test\n"
    assert (tmp_path / "postfix-regexp.cf").read_text() == "/^x[0-9]+@example\\.test$/ a@example.test\n"
    assert (tmp_path / "dovecot-quotas.cf").read_text() == "a@example.test:1M\n"
    assert (tmp_path / "a@example.test.dovecot.sieve").exists()


def test_scenario_places_malformed_line_and_cert(tmp_path):
    tls = tlsutil.TestTLS()
    s = sc.build(tmp_path / "config", tls)
    lines = (tmp_path / "config" / "postfix-accounts.cf").read_text().splitlines()
    assert "|" not in lines[s.malformed_line - 1]
    assert all("|{SHA512-CRYPT}$6$" in ln for i, ln in enumerate(lines, 1) if i not in (1, s.malformed_line))
    assert (tmp_path / "config" / "ssl" / "cert.pem").read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
    assert (tmp_path / "config" / "ssl" / "key.pem").stat().st_mode & 0o077 == 0
    assert s.cert_serial == tlsutil.TestTLS.serial(tls.leaf)


class _TLSServer:
    """A one-shot TLS server on 127.0.0.1 with a given leaf; records the client's address."""

    def __init__(self, leaf):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        leaf.configure_cert(self.ctx)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.port = self.sock.getsockname()[1]
        self.peer = None
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        conn, self.peer = self.sock.accept()
        try:
            with self.ctx.wrap_socket(conn, server_side=True) as t:
                t.recv(1)
        except (OSError, ssl.SSLError):
            pass
        finally:
            self.sock.close()


def test_client_context_trusts_only_the_test_ca():
    tls = tlsutil.TestTLS()
    srv = _TLSServer(tls.leaf)
    cert = tlsutil.served_certificate(srv.port, tls.client_context())
    assert cert.serial_number == tlsutil.TestTLS.serial(tls.leaf)
    other = tlsutil.TestTLS()  # a different CA: the same name must not verify
    srv2 = _TLSServer(other.leaf)
    with pytest.raises(ssl.SSLCertVerificationError):
        tlsutil.served_certificate(srv2.port, tls.client_context())


def test_client_context_checks_the_host_name():
    tls = tlsutil.TestTLS()
    wrong = tls.ca.issue_cert("other.example.test")
    srv = _TLSServer(wrong)
    with pytest.raises(ssl.SSLCertVerificationError):
        tlsutil.served_certificate(srv.port, tls.client_context())


def test_alt_loopback_source_is_used():
    """Dovecot's "secured" shortcut is per IP: the LOGINDISABLED test needs 127.0.0.2 as the source."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    with c._connect(port, 5, c.ALT_SOURCE):
        conn, peer = srv.accept()
        conn.close()
    srv.close()
    assert peer[0] == c.ALT_SOURCE


PYINFRA_OUTPUT = """
--> Results:
    Operation                                       Hosts   Success   Error   No Change
    Postfix packages (apt.packages)                 1       -         -       1
    Seed postfix-accounts.cf (files.put)            1       1         -       -
    mailwright init running                         1       -         -       1
    Grand total                                     3       1         -       2
"""


def test_parse_pyinfra_results():
    r = parse_results(PYINFRA_OUTPUT)
    assert r.total == ("3", "1", "-", "2")
    assert r.changed == ["Seed postfix-accounts.cf (files.put)"]
    assert r.errors == []
    clean = parse_results(PYINFRA_OUTPUT.replace("1       1         -       -", "1       -         -       1"))
    assert clean.changed == []


def test_parse_pyinfra_results_without_table():
    r = parse_results("--> Loading config...\n")
    assert r.total is None and r.rows == []


def test_rootfs_output_parsing():
    out = 'rootfs: building\n{"tag": "mailwright-rootfs:abc123", "id": "sha256:' + "0" * 64 + '"}\n'
    assert _image_ref_from_output(out) == "mailwright-rootfs:abc123"


def test_inventory_file_is_valid_python(tmp_path):
    p = write_inventory(tmp_path / "inv.py", "127.0.0.1", {"ssh_port": 2222, "MAILWRIGHT_INIT": "systemd"})
    ns: dict = {}
    exec(p.read_text(), ns)
    assert ns["hosts"] == [("127.0.0.1", {"ssh_port": 2222, "MAILWRIGHT_INIT": "systemd"})]
