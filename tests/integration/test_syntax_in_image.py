"""The generated Postfix and Dovecot files, checked by Postfix and Dovecot themselves.

postconf/doveconf are not installed on the development machine, so the text
tests in tests/unit cannot catch a parameter Postfix does not know or a block
Dovecot refuses. Here the same `ops.plan.files` output is unpacked at its real
paths inside the image (`mailwright:latest`, or $MAILWRIGHT_IMAGE) and parsed
there. Skipped without docker or without the image; never builds it.
"""

from __future__ import annotations

import io
import subprocess
import tarfile
import uuid
from pathlib import Path

import pytest

from ops import configdir, plan, settings as S

pytestmark = pytest.mark.docker

FQDN = "mail.example.test"
# Not a real hash: only its shape matters to the parsers.
HASH = "{SHA512-CRYPT}$6$saltsalt$" + "x" * 86




CHECKS = """
set -u
cd "$OUT"
tar -xf "$WORK/files.tar" -C /
check() { name=$1; shift; "$@" >"$name.out" 2>"$name.err"; echo $? >"$name.rc"; }
check postconf_n   postconf -n
check postconf_M   postconf -M
check submission   postconf -P -h submission/inet/smtpd_tls_security_level
check submissions  postconf -P -h submissions/inet/smtpd_tls_wrappermode
check vmailbox     postmap -q user@example.test texthash:/etc/postfix/vmailbox
check virtual      postmap -q sales@example.test texthash:/etc/postfix/virtual
if [ -s /etc/postfix/regexp ]; then check regexp postmap -q test42@example.test pcre:/etc/postfix/regexp; fi
if [ -f /etc/dovecot/dovecot.conf ]; then
  check doveconf_n doveconf -n
  check ssl        doveconf -h ssl
  check protocols  doveconf -h protocols
fi
"""


def run_checks(image: str, tmp_path: Path, files: list[plan.ConfigFile]) -> dict[str, tuple[int, str, str]]:
    work, out = tmp_path / "work", tmp_path / "out"
    work.mkdir(exist_ok=True)
    out.mkdir(exist_ok=True)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for f in files:
            if f.content is None:
                continue
            data = f.content.encode()
            info = tarfile.TarInfo(f.path.lstrip("/"))
            info.size, info.mode = len(data), f.mode
            tar.addfile(info, io.BytesIO(data))
    (work / "files.tar").write_bytes(buf.getvalue())
    name = f"mwtest-syntax-{uuid.uuid4().hex[:8]}"
    # The config folder and certificates are mounted at the same path as on this machine, so the
    # absolute paths inside the generated files resolve in the container too.
    p = subprocess.run(
        ["docker", "run", "--rm", "--name", name, "--network", "none", "--entrypoint", "/bin/sh",
         "-v", f"{tmp_path}:{tmp_path}", "-e", f"WORK={work}", "-e", f"OUT={out}", image, "-c", CHECKS],
        capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    results = {}
    for rc in out.glob("*.rc"):
        stem = rc.stem
        results[stem] = (int(rc.read_text()), (out / f"{stem}.out").read_text(), (out / f"{stem}.err").read_text())
    return results


def render(tmp_path: Path, config: dict[str, str], **env) -> list[plan.ConfigFile]:
    folder = tmp_path / "config"
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in config.items():
        (folder / name).write_text(text)
    s = S.load(host_data={"MAILWRIGHT_INIT": "container", "MAILWRIGHT_CONFIG_DIR": str(folder)},
               environ={k: str(v) for k, v in env.items()}, fqdn=FQDN)
    return plan.files(s, configdir.read(folder))


def certificate(tmp_path: Path) -> dict[str, str]:
    import trustme
    ca = trustme.CA()
    leaf = ca.issue_cert(FQDN)
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    leaf.private_key_pem.write_to_path(str(key))
    cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    return {"SSL_TYPE": "manual", "SSL_CERT_PATH": str(cert), "SSL_KEY_PATH": str(key)}


FULL_CONFIG = {
    "postfix-accounts.cf": f"user@example.test|{HASH}\nother@example.test|{HASH}\n",
    "postfix-virtual.cf": "sales@example.test user@example.test,other@example.test\n@example.org user@example.test\n",
    "postfix-regexp.cf": "/^test[0-9]+@example\\.test$/ user@example.test\n",
    "postfix-aliases.cf": "devnull: /dev/null\n",
    "dovecot-quotas.cf": "user@example.test:10M\n",
    "dovecot-masters.cf": f"admin|{HASH}\n",
    "postfix-main.cf": "smtpd_banner = $myhostname ESMTP\nmessage_size_limit = 20480000\n",
    "postfix-master.cf": "submission/inet/smtpd_client_connection_count_limit=5\n",
    "dovecot.cf": "mail_max_userip_connections = 69\n",
    "before.dovecot.sieve": 'require "fileinto";\n',
}


def assert_clean(results: dict, name: str) -> str:
    rc, out, err = results[name]
    assert rc == 0, f"{name}: exit {rc}\n{err}"
    # postconf and doveconf report unknown or obsolete settings as warnings but still exit 0.
    assert "warning" not in err.lower(), f"{name}:\n{err}"
    return out


def test_default_settings_parse(image, tmp_path):
    r = run_checks(image, tmp_path, render(tmp_path, {"postfix-accounts.cf": FULL_CONFIG["postfix-accounts.cf"]}))
    assert_clean(r, "postconf_n")
    assert_clean(r, "postconf_M")
    assert_clean(r, "doveconf_n")
    assert assert_clean(r, "ssl").strip() == "no"
    assert assert_clean(r, "vmailbox").strip() == "example.test/user/"


def test_everything_on_parses(image, tmp_path):
    env = {**certificate(tmp_path), "ENABLE_POP3": 1, "ENABLE_MANAGESIEVE": 1, "SPOOF_PROTECTION": 1,
           "TLS_LEVEL": "intermediate", "DOVECOT_MAILBOX_FORMAT": "sdbox", "POSTFIX_MAILBOX_SIZE_LIMIT": 104857600}
    r = run_checks(image, tmp_path, render(tmp_path, FULL_CONFIG, **env))
    postconf = assert_clean(r, "postconf_n")
    assert "message_size_limit = 20480000" in postconf.splitlines()        # the override, once
    assert_clean(r, "postconf_M")
    assert assert_clean(r, "submission").strip() == "encrypt"
    assert assert_clean(r, "submissions").strip() == "yes"
    assert assert_clean(r, "virtual").strip() == "user@example.test,other@example.test"
    assert assert_clean(r, "regexp").strip() == "user@example.test"
    assert_clean(r, "doveconf_n")
    assert assert_clean(r, "ssl").strip() == "required"
    assert assert_clean(r, "protocols").split() == ["imap", "pop3", "lmtp", "sieve"]


def test_quotas_off_ipv4_parses(image, tmp_path):
    r = run_checks(image, tmp_path, render(tmp_path, FULL_CONFIG, ENABLE_QUOTAS=0, DOVECOT_INET_PROTOCOLS="ipv4",
                                           POSTFIX_INET_PROTOCOLS="ipv4", PERMIT_DOCKER="network"))
    assert "mynetworks = 127.0.0.0/8 172.16.0.0/12" in assert_clean(r, "postconf_n").splitlines()
    assert "quota" not in assert_clean(r, "doveconf_n")


def test_smtp_only_postfix_parses(image, tmp_path):
    files = render(tmp_path, FULL_CONFIG, SMTP_ONLY=1)
    assert not any(f.path == "/etc/dovecot/dovecot.conf" and f.content is not None for f in files)   # removed
    r = run_checks(image, tmp_path, files)
    assert_clean(r, "postconf_n")
    assert_clean(r, "postconf_M")
