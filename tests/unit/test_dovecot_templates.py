"""Dovecot's generated files (files/etc/dovecot/*.j2), rendered through `ops.plan.files`.

Text assertions (doveconf is not installed here; tests/plan/test_syntax_in_image.py
runs `doveconf` on the same output inside the image when there is one).
"""

from __future__ import annotations

import pytest

from ops import configdir, plan, settings as S

FQDN = "mail.example.test"
H1 = "{SHA512-CRYPT}$6$salt1$hash1"
H2 = "{SHA512-CRYPT}$6$salt2$hash2"
ACCOUNTS = f"user@example.test|{H1}\nother@example.test|{H2}|userdb_mail=mdbox:~/mdbox\n"
MODERN_HEAD = "ECDHE-ECDSA-AES128-GCM-SHA256:"
INTERMEDIATE_HEAD = "ECDHE-ECDSA-CHACHA20-POLY1305:"


def render(tmp_path, config: dict[str, str] | None = None, **env) -> dict[str, plan.ConfigFile]:
    folder = tmp_path / "config"
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in (config or {}).items():
        (folder / name).write_text(text)
    s = S.load(host_data={"MAILWRIGHT_INIT": "systemd", "MAILWRIGHT_CONFIG_DIR": str(folder)},
               environ={k: str(v) for k, v in env.items()}, fqdn=FQDN)
    return {f.path: f for f in plan.files(s, configdir.read(folder))}


def settings_of(text: str) -> dict[tuple[str, ...], str]:
    """dovecot.conf as {(block, ..., name): value}; raises on a setting given twice in one block.

    A repeated unnamed block (two `passdb {`) gets a suffix: `passdb`, `passdb#2`, ...
    """
    out: dict[tuple[str, ...], str] = {}
    stack: list[str] = []
    seen: dict[tuple[str, ...], int] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or line.startswith("!include"):
            continue
        if line.endswith("{"):
            header = " ".join(line[:-1].split())
            n = seen[(*stack, header)] = seen.get((*stack, header), 0) + 1
            stack.append(header if n == 1 else f"{header}#{n}")
        elif line == "}":
            stack.pop()
        else:
            name, sep, value = line.partition("=")
            assert sep, f"not a setting: {raw!r}"
            key = (*stack, name.strip())
            assert key not in out, f"{key} set twice"
            out[key] = value.strip()
    assert stack == [], f"unclosed blocks {stack}"
    return out


def conf(tmp_path, config=None, **env) -> dict[tuple[str, ...], str]:
    return settings_of(render(tmp_path, config, **env)["/etc/dovecot/dovecot.conf"].content)


def tls_env(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text("cert\n")
    key.write_text("key\n")
    return dict(SSL_TYPE="manual", SSL_CERT_PATH=str(cert), SSL_KEY_PATH=str(key))


# --- protocols and listeners -------------------------------------------------------------------------

@pytest.mark.parametrize("env, protocols", [
    ({}, ["imap", "lmtp"]),
    ({"ENABLE_POP3": 1}, ["imap", "pop3", "lmtp"]),
    ({"ENABLE_MANAGESIEVE": 1}, ["imap", "lmtp", "sieve"]),
    ({"ENABLE_IMAP": 0, "ENABLE_POP3": 1}, ["pop3", "lmtp"]),
    ({"ENABLE_IMAP": 0}, ["lmtp"]),                        # LMTP always: it is how mail arrives
])
def test_protocols(tmp_path, env, protocols):
    assert conf(tmp_path, **env)[("protocols",)].split() == protocols


def test_listeners_follow_the_protocols(tmp_path):
    c = conf(tmp_path)
    assert c[("service imap-login", "inet_listener imap", "port")] == "143"
    assert c[("service imap-login", "inet_listener imaps", "port")] == "993"
    assert not any(k[0] in ("service pop3-login", "service managesieve-login") for k in c)
    c = conf(tmp_path, ENABLE_POP3=1, ENABLE_MANAGESIEVE=1, ENABLE_IMAP=0)
    assert c[("service pop3-login", "inet_listener pop3", "port")] == "110"
    assert c[("service pop3-login", "inet_listener pop3s", "port")] == "995"
    assert c[("service managesieve-login", "inet_listener sieve", "port")] == "4190"
    assert not any(k[0] == "service imap-login" for k in c)


@pytest.mark.parametrize("value, listen", [("all", "*, ::"), ("ipv4", "*"), ("ipv6", "[::]")])
def test_listen_follows_dovecot_inet_protocols(tmp_path, value, listen):
    assert conf(tmp_path, DOVECOT_INET_PROTOCOLS=value)[("listen",)] == listen


def test_sasl_socket_for_postfix(tmp_path):
    c = conf(tmp_path)
    block = ("service auth", "unix_listener /dev/shm/sasl-auth.sock")
    assert (c[(*block, "user")], c[(*block, "group")], c[(*block, "mode")]) == ("postfix", "postfix", "0660")


# --- TLS ---------------------------------------------------------------------------------------------------

def test_tls_required_with_a_certificate(tmp_path):
    env = tls_env(tmp_path)
    c = conf(tmp_path, **env)
    assert c[("ssl",)] == "required"                       # no login before STARTTLS (LOGINDISABLED)
    assert c[("disable_plaintext_auth",)] == "yes"
    assert c[("ssl_cert",)] == "<" + env["SSL_CERT_PATH"]
    assert c[("ssl_key",)] == "<" + env["SSL_KEY_PATH"]
    assert c[("ssl_min_protocol",)] == "TLSv1.2"
    assert c[("service imap-login", "inet_listener imaps", "ssl")] == "yes"
    assert ("ssl_alt_cert",) not in c


def test_tls_fallback_pair(tmp_path):
    env = tls_env(tmp_path)
    alt_cert, alt_key = tmp_path / "rsa-cert.pem", tmp_path / "rsa-key.pem"
    alt_cert.write_text("c\n")
    alt_key.write_text("k\n")
    c = conf(tmp_path, **env, SSL_ALT_CERT_PATH=str(alt_cert), SSL_ALT_KEY_PATH=str(alt_key))
    assert (c[("ssl_alt_cert",)], c[("ssl_alt_key",)]) == (f"<{alt_cert}", f"<{alt_key}")


def test_plaintext_when_ssl_type_empty(tmp_path):
    c = conf(tmp_path, ENABLE_POP3=1)
    assert c[("ssl",)] == "no"
    assert c[("disable_plaintext_auth",)] == "no"
    assert ("ssl_cert",) not in c
    assert c[("service imap-login", "inet_listener imaps", "ssl")] == "no"
    assert c[("service pop3-login", "inet_listener pop3s", "ssl")] == "no"


@pytest.mark.parametrize("level, head", [("modern", MODERN_HEAD), ("intermediate", INTERMEDIATE_HEAD)])
def test_tls_level_cipher_list(tmp_path, level, head):
    from ops.tls import CIPHERS
    c = conf(tmp_path, TLS_LEVEL=level, **tls_env(tmp_path))
    assert c[("ssl_cipher_list",)] == CIPHERS[level]       # the same list as Postfix's tls_high_cipherlist
    assert c[("ssl_cipher_list",)].startswith(head)


# --- mail storage, identity ---------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["maildir", "sdbox", "mdbox"])
def test_mailbox_format(tmp_path, fmt):
    assert conf(tmp_path, DOVECOT_MAILBOX_FORMAT=fmt)[("mail_location",)] == f"{fmt}:/var/mail/%d/%n"


def test_vmail_ids_delimiter_and_postmaster(tmp_path):
    c = conf(tmp_path, DMS_VMAIL_UID=5001, DMS_VMAIL_GID=5002)
    assert (c[("mail_uid",)], c[("mail_gid",)]) == ("5001", "5002")
    assert c[("recipient_delimiter",)] == "+"
    assert c[("postmaster_address",)] == "postmaster@example.test"


def test_special_use_folders(tmp_path):
    c = conf(tmp_path)
    for box, flag in (("Drafts", r"\Drafts"), ("Junk", r"\Junk"), ("Sent", r"\Sent"), ("Trash", r"\Trash")):
        assert c[("namespace inbox", f"mailbox {box}", "special_use")] == flag
        assert c[("namespace inbox", f"mailbox {box}", "auto")] == "subscribe"


# --- quotas ---------------------------------------------------------------------------------------------------

def test_quota_settings_with_enable_quotas(tmp_path):
    c = conf(tmp_path, POSTFIX_MAILBOX_SIZE_LIMIT=104857600, POSTFIX_MESSAGE_SIZE_LIMIT=10240000)
    assert "quota" in c[("mail_plugins",)].split()
    assert "imap_quota" in c[("protocol imap", "mail_plugins")].split()
    assert c[("plugin", "quota_rule")] == "*:storage=104857600B"          # default limit = mailbox size limit
    assert c[("plugin", "quota_max_mail_size")] == "10240000B"
    assert c[("plugin", "quota_status_overquota")] == '"552 5.2.2 Mailbox is full"'
    assert c[("service quota-status", "inet_listener", "port")] == "65265"
    assert c[("service quota-status", "inet_listener", "address")] == "127.0.0.1"   # never reachable from outside


def test_no_quota_without_enable_quotas(tmp_path):
    c = conf(tmp_path, ENABLE_QUOTAS=0)
    assert "quota" not in c[("mail_plugins",)].split()
    assert not any(k[0] == "service quota-status" for k in c)
    assert not any(k[-1].startswith("quota") for k in c)
    assert "imap_quota" not in c.get(("protocol imap", "mail_plugins"), "")


# --- sieve ------------------------------------------------------------------------------------------------------

def test_sieve_before_and_after(tmp_path):
    files = render(tmp_path, {"before.dovecot.sieve": 'require "fileinto";\n',
                              "after.dovecot.sieve": "keep;\n"})
    c = settings_of(files["/etc/dovecot/dovecot.conf"].content)
    assert c[("plugin", "sieve_before")] == "/etc/dovecot/sieve/before.sieve"
    assert c[("plugin", "sieve_after")] == "/etc/dovecot/sieve/after.sieve"
    before = files["/etc/dovecot/sieve/before.sieve"]
    assert before.content == 'require "fileinto";\n'
    assert before.after == ("sievec /etc/dovecot/sieve/before.sieve",)      # compiled as root, not by vmail


def test_sieve_global_scripts_absent(tmp_path):
    files = render(tmp_path, {"before.dovecot.sieve": "keep;\n"})
    c = settings_of(files["/etc/dovecot/dovecot.conf"].content)
    assert ("plugin", "sieve_after") not in c
    # Switched off: the script and its compiled form are removed, not left behind.
    assert files["/etc/dovecot/sieve/after.sieve"].content is None
    assert files["/etc/dovecot/sieve/after.svbin"].content is None
    assert "/etc/dovecot/sieve/before.svbin" not in files     # sievec owns the compiled file when the script exists


def test_lmtp_runs_sieve(tmp_path):
    assert "sieve" in conf(tmp_path)[("protocol lmtp", "mail_plugins")].split()


def test_user_sieve_goes_to_the_account_home(tmp_path):
    files = render(tmp_path, {"postfix-accounts.cf": ACCOUNTS,
                              "user@example.test.dovecot.sieve": 'require "fileinto";\nfileinto "Lists";\n',
                              "ghost@example.test.dovecot.sieve": "discard;\n"})
    f = files["/var/mail/example.test/user/home/.dovecot.sieve"]
    assert f.content.endswith('fileinto "Lists";\n')
    assert (f.owner, f.group) == ("docker", "docker")                 # Dovecot runs it as the vmail user
    assert not any("ghost" in p for p in files)                       # no account, no script


# --- local.conf (dovecot.cf) -------------------------------------------------------------------------------------

def test_dovecot_cf_becomes_local_conf_included_last(tmp_path):
    files = render(tmp_path, {"dovecot.cf": "mail_max_userip_connections = 69\n"})
    assert files["/etc/dovecot/local.conf"].content == "mail_max_userip_connections = 69\n"
    assert files["/etc/dovecot/local.conf"].reloads == ("dovecot",)
    main = files["/etc/dovecot/dovecot.conf"].content.rstrip().splitlines()
    assert main[-1] == "!include_try /etc/dovecot/local.conf"          # last, so it wins
    assert render(tmp_path / "x")["/etc/dovecot/local.conf"].content is None


# --- userdb and masterdb ---------------------------------------------------------------------------------------

def test_userdb_lines(tmp_path):
    files = render(tmp_path, {"postfix-accounts.cf": ACCOUNTS})
    f = files["/etc/dovecot/userdb"]
    assert f.content.splitlines() == [
        f"user@example.test:{H1}:5000:5000::/var/mail/example.test/user/home::",
        f"other@example.test:{H2}:5000:5000::/var/mail/example.test/other/home::userdb_mail=mdbox:~/mdbox",
    ]
    # Password hashes: readable by Dovecot, not by everyone.
    assert (f.mode, f.owner, f.group) == (0o640, "root", "dovecot")


def test_userdb_quota_from_dovecot_quotas_cf(tmp_path):
    config = {"postfix-accounts.cf": ACCOUNTS, "dovecot-quotas.cf": "user@example.test:10M\nother@example.test:1G\n"}
    lines = render(tmp_path, config)["/etc/dovecot/userdb"].content.splitlines()
    assert lines[0].endswith("::userdb_quota_rule=*:storage=10M")
    fields = lines[1].split(":", 7)[7].split()                # extra fields: quota and the account's own
    assert sorted(fields) == ["userdb_mail=mdbox:~/mdbox", "userdb_quota_rule=*:storage=1G"]


def test_userdb_no_quota_field_without_enable_quotas(tmp_path):
    config = {"postfix-accounts.cf": ACCOUNTS, "dovecot-quotas.cf": "user@example.test:10M\n"}
    assert "quota" not in render(tmp_path / "a", config, ENABLE_QUOTAS=0)["/etc/dovecot/userdb"].content


def test_userdb_uses_vmail_ids(tmp_path):
    line = render(tmp_path, {"postfix-accounts.cf": ACCOUNTS}, DMS_VMAIL_UID=6000, DMS_VMAIL_GID=6001
                  )["/etc/dovecot/userdb"].content.splitlines()[0]
    assert line.split(":")[2:4] == ["6000", "6001"]


def test_masterdb_and_master_passdb(tmp_path):
    files = render(tmp_path, {"dovecot-masters.cf": f"admin|{H1}\n"})
    assert files["/etc/dovecot/masterdb"].content == f"admin:{H1}\n"
    assert files["/etc/dovecot/masterdb"].mode == 0o640
    c = settings_of(files["/etc/dovecot/dovecot.conf"].content)
    # The master passdb comes first; the users' passdb still follows it.
    assert c[("passdb", "args")] == "scheme=SHA512-CRYPT /etc/dovecot/masterdb"
    assert c[("passdb", "master")] == "yes"
    assert c[("passdb#2", "args")].endswith("/etc/dovecot/userdb")
    assert c[("auth_master_user_separator",)] == "*"


def test_no_masterdb_without_master_users(tmp_path):
    files = render(tmp_path)
    assert files["/etc/dovecot/masterdb"].content is None
    assert "/etc/dovecot/masterdb" not in files["/etc/dovecot/dovecot.conf"].content


def test_account_changes_do_not_reload_dovecot(tmp_path):
    # Dovecot re-reads a changed passwd-file by itself: adding an account must not cut IMAP sessions.
    files = render(tmp_path, {"postfix-accounts.cf": ACCOUNTS})
    assert files["/etc/dovecot/userdb"].reloads == ()
    assert files["/etc/dovecot/dovecot.conf"].reloads == ("dovecot",)


# --- SMTP_ONLY ---------------------------------------------------------------------------------------------------

def test_smtp_only_generates_no_dovecot_files(tmp_path):
    files = render(tmp_path, {"postfix-accounts.cf": ACCOUNTS}, SMTP_ONLY=1)
    # Off means gone: every file Dovecot would have is listed for removal, none with content.
    dovecot = {p: f for p, f in files.items() if p.startswith("/etc/dovecot/")}
    assert "/etc/dovecot/dovecot.conf" in dovecot and "/etc/dovecot/userdb" in dovecot
    assert all(f.content is None and f.daemon == "dovecot" and not f.reloads for f in dovecot.values())
    # ... and a certificate renewal then reloads Postfix only.
    from ops import tls as tls_mod
    assert files[tls_mod.FINGERPRINT].reloads == ("postfix",)


def test_dovecot_config_does_not_import_postfix():
    # The cipher lists live in ops.tls: Dovecot's config stands without Postfix's.
    import subprocess
    import sys
    from pathlib import Path
    code = "import sys, ops.dovecot.config; print(sorted(m for m in sys.modules if m.startswith('ops.postfix')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2]).stdout
    assert out.strip() == "[]"


def test_no_stats_process_by_default(tmp_path):
    # An empty stats-writer path: no Dovecot process connects to stats, so no stats process idles.
    assert conf(tmp_path)[("stats_writer_socket_path",)] == ""

