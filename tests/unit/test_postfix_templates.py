"""Postfix's generated files (files/etc/postfix/*.j2), rendered through `ops.plan.files`.

Text assertions on individual parameters and master.cf options (chatmail style):
postconf is not installed here; tests/plan/test_syntax_in_image.py runs
`postconf` on the same output inside the image when there is one.
"""

from __future__ import annotations

import functools

import pytest

from ops import configdir, plan, settings as S, tls as tls_mod
from ops.settings import SettingsError

FQDN = "mail.example.test"
H1 = "{SHA512-CRYPT}$6$salt1$hash1"
H2 = "{SHA512-CRYPT}$6$salt2$hash2"

MODERN = ("ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
          "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
          "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384")
INTERMEDIATE = ("ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES128-GCM-SHA256:"
                "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-SHA256:"
                "ECDHE-RSA-AES128-SHA256:ECDHE-RSA-AES256-SHA384:ECDHE-ECDSA-AES256-SHA384:"
                "DHE-RSA-AES128-SHA256:DHE-RSA-AES256-SHA256")


# --- helpers ---------------------------------------------------------------------------------------

def render(tmp_path, config: dict[str, str] | None = None, **env) -> dict[str, plan.ConfigFile]:
    """plan.files() for a temp config folder and these settings, keyed by target path."""
    folder = tmp_path / "config"
    folder.mkdir(exist_ok=True)
    for name, text in (config or {}).items():
        (folder / name).write_text(text)
    s = S.load(host_data={"MAILWRIGHT_INIT": "systemd", "MAILWRIGHT_CONFIG_DIR": str(folder)},
               environ={k: str(v) for k, v in env.items()}, fqdn=FQDN)
    return {f.path: f for f in plan.files(s, configdir.read(folder))}


def main_cf(tmp_path, config=None, **env) -> str:
    return render(tmp_path, config, **env)["/etc/postfix/main.cf"].content


def params(text: str) -> list[tuple[str, str]]:
    """main.cf as (name, value) in order, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line[0].isspace():
            name, value = out[-1]
            out[-1] = (name, f"{value} {line.strip()}".strip())
            continue
        name, sep, value = line.partition("=")
        assert sep, f"not a parameter line: {line!r}"
        out.append((name.strip(), value.strip()))
    return out


def param(text: str, name: str) -> str | None:
    found = [v for n, v in params(text) if n == name]
    assert len(found) <= 1, f"{name} set {len(found)} times"
    return found[0] if found else None


def items(value: str) -> list[str]:
    return [x.strip() for x in value.replace("\n", " ").split(",") if x.strip()]


def services(master: str) -> dict[tuple[str, str], list[str]]:
    """master.cf: (service, type) -> its `-o name=value` options, in order."""
    out: dict[tuple[str, str], list[str]] = {}
    current = None
    for line in master.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line[0].isspace():
            assert current is not None, line
            opt = line.strip()
            assert opt.startswith("-o "), line
            out[current].append(opt[3:])
            continue
        service, type_ = line.split()[:2]
        current = (service, type_)
        assert current not in out, f"{current} defined twice"
        out[current] = []
    return out


def cert_pair(tmp_path, name="mail"):
    cert, key = tmp_path / f"{name}-cert.pem", tmp_path / f"{name}-key.pem"
    cert.write_text("-----BEGIN CERTIFICATE-----\n")
    key.write_text("-----BEGIN PRIVATE KEY-----\n")
    return str(cert), str(key)


ACCOUNTS = f"user@example.test|{H1}\nother@example.test|{H2}\nx@second.test|{H1}\n"


# --- main.cf: identity, delivery, limits -------------------------------------------------------------

def test_main_identity_and_delivery_defaults(tmp_path):
    text = main_cf(tmp_path)
    assert param(text, "myhostname") == FQDN
    assert param(text, "mydomain") == "example.test"
    assert param(text, "recipient_delimiter") == "+"
    assert param(text, "virtual_mailbox_domains") == "/etc/postfix/vhost"
    assert param(text, "virtual_mailbox_maps") == "texthash:/etc/postfix/vmailbox"
    assert param(text, "virtual_transport") == "lmtp:unix:/var/run/dovecot/lmtp"
    assert param(text, "inet_protocols") == "all"
    # Virtual domains must never be in mydestination, or Postfix would look for local Unix users.
    assert "example.test" not in param(text, "mydestination").replace("$mydomain", "")


def test_main_mynetworks_empty_by_default(tmp_path):
    # PERMIT_DOCKER=none trusts nobody, not even loopback (Postfix's default would be the host's subnets).
    assert "mynetworks =" in [line.rstrip() for line in main_cf(tmp_path).splitlines()]
    assert param(main_cf(tmp_path), "mynetworks") == ""


LOOPBACK = ["127.0.0.0/8", "[::ffff:127.0.0.0]/104", "[::1]/128"]


def test_main_mynetworks_permit_docker_network(tmp_path):
    # docker-mailserver appends the named network to its loopback default (issue 13.2).
    assert param(main_cf(tmp_path, PERMIT_DOCKER="network"), "mynetworks").split() == LOOPBACK + ["172.16.0.0/12"]


@pytest.mark.parametrize("mode, interfaces, named", [
    ("container", "2: eth0    inet 172.20.0.5/16 brd 172.20.255.255 scope global eth0\n", ["172.20.0.5/32"]),
    ("host", "2: eth0    inet 172.20.0.5/16 brd 172.20.255.255 scope global eth0\n", ["172.20.0.0/16"]),
    ("connected-networks", "1: lo    inet 127.0.0.1/8 scope host lo\n"
     "2: eth0    inet 172.20.0.5/16 brd 172.20.255.255 scope global eth0\n"
     "3: eth1    inet 10.9.0.3/24 brd 10.9.0.255 scope global eth1\n", ["10.9.0.0/24", "172.20.0.0/16"]),
])
def test_main_mynetworks_every_permit_docker_mode_trusts_loopback(tmp_path, monkeypatch, mode, interfaces, named):
    import subprocess
    from ops import network

    def fake_run(cmd, **kw):
        assert cmd[:4] == ["ip", "-o", "-4", "addr"]
        return subprocess.CompletedProcess(cmd, 0, stdout=interfaces, stderr="")

    monkeypatch.setattr(network.subprocess, "run", fake_run)
    assert param(main_cf(tmp_path, PERMIT_DOCKER=mode), "mynetworks").split() == LOOPBACK + named


def test_main_mynetworks_ipv4_only_has_no_ipv6_loopback(tmp_path):
    text = main_cf(tmp_path, PERMIT_DOCKER="network", POSTFIX_INET_PROTOCOLS="ipv4")
    assert param(text, "mynetworks").split() == ["127.0.0.0/8", "172.16.0.0/12"]


def test_postscreen_lets_mynetworks_through(tmp_path):
    # Port 25 is postscreen: loopback in mynetworks only helps local scripts if postscreen permits it.
    assert param(main_cf(tmp_path, PERMIT_DOCKER="network"), "postscreen_access_list") == "permit_mynetworks"


def test_main_no_smtputf8(tmp_path):
    # docker-mailserver sets smtputf8_enable = no (issue 13.6); Postfix 3.7's default advertises it.
    assert param(main_cf(tmp_path), "smtputf8_enable") == "no"


def test_main_never_an_open_relay(tmp_path):
    text = main_cf(tmp_path)
    relay = items(param(text, "smtpd_relay_restrictions"))
    assert relay[-1] in ("defer_unauth_destination", "reject_unauth_destination")
    assert "permit" not in relay                     # no blanket permit
    recipient = items(param(text, "smtpd_recipient_restrictions"))
    assert "reject_unauth_destination" in recipient
    # Port 25 never offers AUTH; 465/587 switch it on in master.cf.
    assert param(text, "smtpd_sasl_auth_enable") == "no"


def test_main_size_limits(tmp_path):
    text = main_cf(tmp_path)
    assert param(text, "message_size_limit") == "10240000"
    assert param(text, "mailbox_size_limit") == "0"
    text = main_cf(tmp_path, POSTFIX_MESSAGE_SIZE_LIMIT=20480000, POSTFIX_MAILBOX_SIZE_LIMIT=1073741824)
    assert param(text, "message_size_limit") == "20480000"
    assert param(text, "mailbox_size_limit") == "1073741824"
    assert param(text, "virtual_mailbox_limit") == "1073741824"


@pytest.mark.parametrize("env, name, value", [
    ({"POSTFIX_INET_PROTOCOLS": "ipv4"}, "inet_protocols", "ipv4"),
    ({"DEFAULT_RELAY_HOST": "[relay.example.test]:587"}, "relayhost", "[relay.example.test]:587"),
    ({"POSTFIX_DAGENT": "lmtp:inet:127.0.0.1:24"}, "virtual_transport", "lmtp:inet:127.0.0.1:24"),
    ({"POSTSCREEN_ACTION": "drop"}, "postscreen_greet_action", "drop"),
    ({"POSTSCREEN_ACTION": "drop"}, "postscreen_bare_newline_action", "drop"),
    ({"OVERRIDE_HOSTNAME": "mx.other.test"}, "myhostname", "mx.other.test"),
])
def test_main_settings_reach_their_parameter(tmp_path, env, name, value):
    assert param(main_cf(tmp_path, **env), name) == value


def test_main_no_relayhost_by_default(tmp_path):
    assert param(main_cf(tmp_path), "relayhost") is None


def test_main_reject_unknown_client_hostname(tmp_path):
    assert "reject_unknown_client_hostname" not in items(param(main_cf(tmp_path), "smtpd_sender_restrictions"))
    text = main_cf(tmp_path, POSTFIX_REJECT_UNKNOWN_CLIENT_HOSTNAME=1)
    assert "reject_unknown_client_hostname" in items(param(text, "smtpd_sender_restrictions"))


def test_main_regexp_map_only_with_a_regexp_file(tmp_path):
    files = render(tmp_path)
    assert param(files["/etc/postfix/main.cf"].content, "virtual_alias_maps") == "texthash:/etc/postfix/virtual"
    assert files["/etc/postfix/regexp"].content is None          # removed when the feature is off
    files = render(tmp_path, {"postfix-regexp.cf": "/^test[0-9]+@example\\.test$/ user@example.test\n"})
    assert items(param(files["/etc/postfix/main.cf"].content, "virtual_alias_maps")) == \
        ["texthash:/etc/postfix/virtual", "pcre:/etc/postfix/regexp"]       # regexp checked after virtual
    assert files["/etc/postfix/regexp"].content == "/^test[0-9]+@example\\.test$/ user@example.test\n"


# --- main.cf: TLS ----------------------------------------------------------------------------------------

def test_main_plaintext_when_ssl_type_empty(tmp_path):
    text = main_cf(tmp_path)
    assert param(text, "smtpd_tls_security_level") == "none"
    assert param(text, "smtp_tls_security_level") == "none"
    assert param(text, "smtpd_tls_chain_files") is None
    assert param(text, "smtpd_tls_auth_only") == "no"


def test_main_manual_tls_chain_files(tmp_path):
    cert, key = cert_pair(tmp_path)
    text = main_cf(tmp_path, SSL_TYPE="manual", SSL_CERT_PATH=cert, SSL_KEY_PATH=key)
    assert items(param(text, "smtpd_tls_chain_files")) == [key, cert]     # key first, then its chain
    assert param(text, "smtpd_tls_security_level") == "may"              # STARTTLS offered on 25, not forced
    assert param(text, "smtpd_tls_auth_only") == "yes"


def test_main_manual_tls_with_fallback_pair(tmp_path):
    cert, key = cert_pair(tmp_path, "ecdsa")
    alt_cert, alt_key = cert_pair(tmp_path, "rsa")
    text = main_cf(tmp_path, SSL_TYPE="manual", SSL_CERT_PATH=cert, SSL_KEY_PATH=key,
                   SSL_ALT_CERT_PATH=alt_cert, SSL_ALT_KEY_PATH=alt_key)
    assert items(param(text, "smtpd_tls_chain_files")) == [key, cert, alt_key, alt_cert]


def test_manual_tls_missing_file_is_named(tmp_path):
    cert, _ = cert_pair(tmp_path)
    with pytest.raises(SettingsError) as e:
        render(tmp_path, SSL_TYPE="manual", SSL_CERT_PATH=cert, SSL_KEY_PATH=str(tmp_path / "gone.key"))
    assert "gone.key" in str(e.value) and "SSL_TYPE=manual" in str(e.value)


def test_main_self_signed_ca_file(tmp_path):
    ssl = tmp_path / "config" / "ssl"
    (ssl / "demoCA").mkdir(parents=True)
    for name in (f"{FQDN}-cert.pem", f"{FQDN}-key.pem", "demoCA/cacert.pem"):
        (ssl / name).write_text("pem\n")
    text = main_cf(tmp_path, SSL_TYPE="self-signed")
    assert items(param(text, "smtpd_tls_chain_files")) == [str(ssl / f"{FQDN}-key.pem"), str(ssl / f"{FQDN}-cert.pem")]
    assert param(text, "smtpd_tls_CAfile") == str(ssl / "demoCA" / "cacert.pem")


def test_main_letsencrypt_live_dir(tmp_path, monkeypatch):
    le = tmp_path / "letsencrypt"
    live = le / "live" / "example.test"                  # wildcard cert under the SSL_DOMAIN name
    live.mkdir(parents=True)
    (live / "fullchain.pem").write_text("chain\n")
    (live / "privkey.pem").write_text("key\n")
    monkeypatch.setattr(tls_mod, "resolve", functools.partial(tls_mod.resolve, letsencrypt=le))
    text = main_cf(tmp_path, SSL_TYPE="letsencrypt", SSL_DOMAIN="*.example.test")
    assert items(param(text, "smtpd_tls_chain_files")) == [str(live / "privkey.pem"), str(live / "fullchain.pem")]


def test_letsencrypt_without_live_dir_names_what_was_tried(tmp_path, monkeypatch):
    le = tmp_path / "letsencrypt"
    monkeypatch.setattr(tls_mod, "resolve", functools.partial(tls_mod.resolve, letsencrypt=le))
    with pytest.raises(SettingsError) as e:
        render(tmp_path, SSL_TYPE="letsencrypt")
    assert str(le / "live" / FQDN) in str(e.value) and str(le / "live" / "example.test") in str(e.value)


@pytest.mark.parametrize("level, ciphers", [("modern", MODERN), ("intermediate", INTERMEDIATE)])
def test_main_tls_level_cipher_lists(tmp_path, level, ciphers):
    text = main_cf(tmp_path, TLS_LEVEL=level)
    assert param(text, "tls_high_cipherlist") == ciphers
    assert param(text, "smtpd_tls_mandatory_ciphers") == "high"
    # Both levels: TLS 1.2 or newer only.
    for name in ("smtpd_tls_protocols", "smtpd_tls_mandatory_protocols", "smtp_tls_protocols"):
        assert items(param(text, name)) == ["!SSLv2", "!SSLv3", "!TLSv1", "!TLSv1.1"]


def test_tls_fingerprint_file_changes_with_the_certificate(tmp_path):
    # A renewed certificate must change a generated file, which is what triggers the reload.
    cert, key = cert_pair(tmp_path)
    env = dict(SSL_TYPE="manual", SSL_CERT_PATH=cert, SSL_KEY_PATH=key)
    before = render(tmp_path, **env)[tls_mod.FINGERPRINT]
    assert set(before.reloads) == {"postfix", "dovecot"}
    with open(cert, "a") as f:
        f.write("renewed\n")
    after = render(tmp_path, **env)[tls_mod.FINGERPRINT]
    assert before.content != after.content and cert in after.content


# --- main.cf: quota policy and spoof protection -------------------------------------------------------

QUOTA_POLICY = "check_policy_service inet:127.0.0.1:65265"


def test_main_quota_policy_follows_enable_quotas(tmp_path):
    assert QUOTA_POLICY in items(param(main_cf(tmp_path), "smtpd_recipient_restrictions"))
    assert QUOTA_POLICY not in main_cf(tmp_path, ENABLE_QUOTAS=0)
    assert QUOTA_POLICY not in main_cf(tmp_path, SMTP_ONLY=1)         # no Dovecot to ask


def test_quota_policy_comes_after_the_relay_check(tmp_path):
    # The policy server must never be what decides relaying: reject_unauth_destination runs first.
    recipient = items(param(main_cf(tmp_path), "smtpd_recipient_restrictions"))
    assert recipient.index("reject_unauth_destination") < recipient.index(QUOTA_POLICY)


def test_spoof_protection_off(tmp_path):
    files = render(tmp_path, {"postfix-accounts.cf": ACCOUNTS})
    text = files["/etc/postfix/main.cf"].content
    assert param(text, "smtpd_sender_login_maps") is None
    assert "reject_authenticated_sender_login_mismatch" not in items(param(text, "mua_sender_restrictions"))
    assert files["/etc/postfix/sender_login"].content is None


def test_spoof_protection_on(tmp_path):
    files = render(tmp_path, {"postfix-accounts.cf": ACCOUNTS,
                              "postfix-virtual.cf": "sales@example.test user@example.test,other@example.test\n"
                                                    "ext@example.test someone@elsewhere.test\n"
                                                    "@second.test user@example.test\n"},
                   SPOOF_PROTECTION=1)
    text = files["/etc/postfix/main.cf"].content
    assert param(text, "smtpd_sender_login_maps") == "texthash:/etc/postfix/sender_login"
    assert "reject_authenticated_sender_login_mismatch" in items(param(text, "mua_sender_restrictions"))
    owners = dict(line.split(" ", 1) for line in files["/etc/postfix/sender_login"].content.splitlines())
    assert owners["user@example.test"] == "user@example.test"                 # an account owns itself
    assert owners["sales@example.test"] == "other@example.test,user@example.test"
    assert "ext@example.test" not in owners        # forwards elsewhere: no local account may send as it
    assert "@second.test" not in owners            # a catch-all does not let anyone send as anyone


# --- main.cf: postfix-main.cf overrides ---------------------------------------------------------------

def test_postfix_main_override_replaces_in_place_and_appends_new(tmp_path):
    plain = params(main_cf(tmp_path))
    override = "message_size_limit = 52428800\nsmtpd_banner = $myhostname ESMTP ready\n"
    text = main_cf(tmp_path, {"postfix-main.cf": override})
    merged = params(text)
    names = [n for n, _ in merged]
    assert names.count("message_size_limit") == 1
    assert param(text, "message_size_limit") == "52428800"
    # Same position as before: the neighbours around it are unchanged.
    i = [n for n, _ in plain].index("message_size_limit")
    assert names[i - 1:i + 2] == [n for n, _ in plain][i - 1:i + 2]
    # A parameter main.cf does not set is appended at the end.
    assert merged[-1] == ("smtpd_banner", "$myhostname ESMTP ready")
    assert len(merged) == len(plain) + 1


def test_postfix_main_override_of_a_multiline_parameter_drops_its_continuation(tmp_path):
    text = main_cf(tmp_path, {"postfix-main.cf": "smtpd_recipient_restrictions = permit_mynetworks, "
                                                 "reject_unauth_destination\n"})
    assert param(text, "smtpd_recipient_restrictions") == "permit_mynetworks, reject_unauth_destination"
    assert "reject_non_fqdn_recipient" not in text      # the old continuation lines are gone


def test_postfix_main_override_last_value_wins(tmp_path):
    text = main_cf(tmp_path, {"postfix-main.cf": "message_size_limit = 1\nmessage_size_limit = 2\n"})
    assert param(text, "message_size_limit") == "2"


def test_postfix_main_override_is_stable(tmp_path):
    # Re-rendering gives the same bytes: a second configure run changes nothing.
    config = {"postfix-main.cf": "message_size_limit = 52428800\nsmtpd_banner = hi\n"}
    assert main_cf(tmp_path, config) == main_cf(tmp_path, config)


def test_postfix_main_override_can_clear_a_parameter(tmp_path):
    text = main_cf(tmp_path, {"postfix-main.cf": "postscreen_access_list =\n"})
    assert param(text, "postscreen_access_list") == ""


# --- master.cf -------------------------------------------------------------------------------------------

def master_cf(tmp_path, config=None, **env):
    return services(render(tmp_path, config, **env)["/etc/postfix/master.cf"].content)


def tls_env(tmp_path):
    cert, key = cert_pair(tmp_path)
    return dict(SSL_TYPE="manual", SSL_CERT_PATH=cert, SSL_KEY_PATH=key)


def test_master_ports_with_tls(tmp_path):
    svc = master_cf(tmp_path, **tls_env(tmp_path))
    assert "smtpd_tls_security_level=encrypt" in svc[("submission", "inet")]       # 587: STARTTLS required
    assert "smtpd_tls_wrappermode=yes" in svc[("submissions", "inet")]             # 465: implicit TLS
    assert "smtpd_tls_wrappermode=yes" not in svc[("submission", "inet")]
    for port in ("submission", "submissions"):
        assert "smtpd_sasl_auth_enable=yes" in svc[(port, "inet")]
        assert "smtpd_relay_restrictions=permit_sasl_authenticated,reject" in svc[(port, "inet")]
        assert "smtpd_sender_restrictions=$mua_sender_restrictions" in svc[(port, "inet")]


def test_master_port_25_is_postscreen_without_auth(tmp_path):
    text = render(tmp_path, **tls_env(tmp_path))["/etc/postfix/master.cf"].content
    smtp_line = next(line for line in text.splitlines() if line.split()[:2] == ["smtp", "inet"])
    assert smtp_line.split()[-1] == "postscreen"
    svc = services(text)
    assert not any("sasl_auth_enable=yes" in o for o in svc[("smtp", "inet")] + svc[("smtpd", "pass")])


def test_master_plaintext_when_ssl_type_empty(tmp_path):
    svc = master_cf(tmp_path)
    assert not any("smtpd_tls_security_level=encrypt" in o for o in svc[("submission", "inet")])
    assert not any("wrappermode" in o for o in svc[("submissions", "inet")])


def test_master_no_chroot(tmp_path):
    text = render(tmp_path)["/etc/postfix/master.cf"].content
    for line in text.splitlines():
        if line.strip() and not line[0].isspace() and not line.startswith("#"):
            assert line.split()[4] == "n", line


def test_master_overrides_land_in_their_service_only(tmp_path):
    svc = master_cf(tmp_path, {"postfix-master.cf":
                               "submission/inet/smtpd_sasl_security_options=noanonymous,noplaintext\n"
                               "smtpd/pass/smtpd_client_connection_count_limit=5\n"})
    assert svc[("submission", "inet")][-1] == "smtpd_sasl_security_options=noanonymous,noplaintext"
    assert not any("noplaintext" in o for o in svc[("submissions", "inet")])
    assert "smtpd_client_connection_count_limit=5" in svc[("smtpd", "pass")]
    assert not any("count_limit" in o for o in svc[("smtp", "inet")])


def test_master_override_comes_after_the_built_in_option_so_it_wins(tmp_path):
    # With two -o for one parameter, Postfix uses the last one.
    svc = master_cf(tmp_path, {"postfix-master.cf": "submission/inet/smtpd_tls_security_level=may\n"},
                    **tls_env(tmp_path))
    opts = svc[("submission", "inet")]
    assert opts.index("smtpd_tls_security_level=may") > opts.index("smtpd_tls_security_level=encrypt")


def test_smtp_only_offers_no_auth_through_an_absent_dovecot(tmp_path):
    svc = master_cf(tmp_path, SMTP_ONLY=1)
    for port in ("submission", "submissions"):
        assert "smtpd_sasl_auth_enable=yes" not in svc[(port, "inet")]


# --- maps: vmailbox, vhost, virtual, aliases -----------------------------------------------------------------

def test_vmailbox_and_vhost(tmp_path):
    files = render(tmp_path, {"postfix-accounts.cf": ACCOUNTS,
                              "postfix-virtual.cf": "a@alias-only.test user@example.test\n"})
    assert files["/etc/postfix/vmailbox"].content.splitlines() == [
        "user@example.test example.test/user/", "other@example.test example.test/other/", "x@second.test second.test/x/"]
    assert files["/etc/postfix/vhost"].content.splitlines() == ["alias-only.test", "example.test", "second.test"]


def test_vhost_empty_without_accounts(tmp_path):
    assert render(tmp_path)["/etc/postfix/vhost"].content.strip() == ""


def test_virtual_aliases_and_catch_all(tmp_path):
    files = render(tmp_path, {"postfix-accounts.cf": ACCOUNTS, "postfix-virtual.cf":
                              "sales@example.test user@example.test, other@example.test\n"
                              "@example.test user@example.test\n"
                              "bare user@example.test\n"})
    lines = files["/etc/postfix/virtual"].content.splitlines()
    assert "sales@example.test user@example.test,other@example.test" in lines
    assert "@example.test user@example.test" in lines
    assert "bare user@example.test" in lines
    # With a catch-all, each account of that domain maps to itself, or the catch-all would swallow it.
    assert "other@example.test other@example.test" in lines
    assert "user@example.test user@example.test" in lines
    assert not any(line.startswith("x@second.test") for line in lines)        # not a catch-all domain
    keys = [line.split()[0] for line in lines]
    assert len(keys) == len(set(keys))                       # texthash keeps only the first of a duplicate


def test_virtual_no_identity_lines_without_catch_all(tmp_path):
    files = render(tmp_path, {"postfix-accounts.cf": ACCOUNTS, "postfix-virtual.cf": "a@example.test user@example.test\n"})
    assert files["/etc/postfix/virtual"].content.splitlines() == ["a@example.test user@example.test"]


def test_virtual_alias_with_account_address_not_duplicated_by_catch_all(tmp_path):
    # An account that is also an alias key (forward + keep) must keep its own line only.
    files = render(tmp_path, {"postfix-accounts.cf": ACCOUNTS, "postfix-virtual.cf":
                              "user@example.test user@example.test,other@example.test\n@example.test other@example.test\n"})
    keys = [line.split()[0] for line in files["/etc/postfix/virtual"].content.splitlines()]
    assert keys.count("user@example.test") == 1


def test_system_mail_to_root_is_local_and_reaches_the_postmaster(tmp_path):
    # `echo hi | sendmail root` (cron) becomes root@$myorigin: it must be a local domain whose
    # aliases send root to the postmaster, not a virtual domain without that mailbox (issue 7).
    files = render(tmp_path, {"postfix-accounts.cf": ACCOUNTS}, POSTMASTER_ADDRESS="user@example.test")
    text = files["/etc/postfix/main.cf"].content
    assert param(text, "myorigin") == "$myhostname"
    assert "$myhostname" in items(param(text, "mydestination"))
    aliases = dict(line.split(None, 1) for line in files["/etc/postfix/aliases"].content.splitlines())
    assert {n: aliases.get(n) for n in ("root", "postmaster", "mailer-daemon", "abuse")} == \
        dict.fromkeys(("root", "postmaster", "mailer-daemon", "abuse"), "user@example.test")
    # Only the aliases are local recipients: no mail to Unix accounts (nobody@, postfix@) from outside.
    assert param(text, "local_recipient_maps") == "$alias_maps"
    # A root account of a virtual domain is left alone.
    assert "root@example.test" not in files["/etc/postfix/virtual"].content


def test_system_names_overridable_in_postfix_aliases_except_root(tmp_path):
    files = render(tmp_path, {"postfix-aliases.cf": "abuse: abuse-desk@example.org\nroot: x@example.org\n"},
                   POSTMASTER_ADDRESS="boss@example.test")
    lines = files["/etc/postfix/aliases"].content.splitlines()
    assert "abuse abuse-desk@example.org" in lines and "abuse boss@example.test" not in lines
    assert "root boss@example.test" in lines and "root x@example.org" not in lines


def test_hostname_that_is_a_virtual_domain_routes_system_names_virtually(tmp_path):
    accounts = f"root@mail.example.test|{H1}\nuser@example.test|{H2}\n"
    files = render(tmp_path, {"postfix-accounts.cf": accounts}, POSTMASTER_ADDRESS="user@example.test")
    assert "$myhostname" not in param(files["/etc/postfix/main.cf"].content, "mydestination")
    virtual = files["/etc/postfix/virtual"].content.splitlines()
    assert "postmaster@mail.example.test user@example.test" in virtual
    assert "abuse@mail.example.test user@example.test" in virtual
    assert not any(line.startswith("root@mail.example.test ") for line in virtual)   # the account wins


def test_local_aliases_root_goes_to_postmaster(tmp_path):
    files = render(tmp_path, {"postfix-aliases.cf": "devnull: /dev/null\nroot: someone@else.test\n"},
                   POSTMASTER_ADDRESS="boss@example.test")
    lines = files["/etc/postfix/aliases"].content.splitlines()
    assert lines[0] == "root boss@example.test"
    assert "devnull /dev/null" in lines
    assert [line.split()[0] for line in lines].count("root") == 1
    assert param(files["/etc/postfix/main.cf"].content, "alias_maps") == "texthash:/etc/postfix/aliases"


def test_postfix_files_reload_postfix_and_are_root_owned(tmp_path):
    files = render(tmp_path, {"postfix-accounts.cf": ACCOUNTS})
    for path in ("/etc/postfix/main.cf", "/etc/postfix/master.cf", "/etc/postfix/virtual",
                 "/etc/postfix/vmailbox", "/etc/postfix/vhost", "/etc/postfix/aliases"):
        f = files[path]
        assert f.reloads == ("postfix",), path
        assert (f.owner, f.group, f.mode) == ("root", "root", 0o644), path


def test_mailname_and_dms_settings(tmp_path):
    files = render(tmp_path)
    assert files["/etc/mailname"].content == "example.test\n"
    assert files["/etc/dms-settings"].mode == 0o600          # may hold relay and LDAP passwords
    assert f"OVERRIDE_HOSTNAME='{FQDN}'" in files["/etc/dms-settings"].content.splitlines()


# --- relay hosts: credentials only over TLS (issue 7.2) ----------------------------------------------------

RELAYMAP = "@example.test [smtp.relay.test]:587\n@second.test\n"
SASL = "@example.test relayuser:relay-Secret!\n"


def table_rows(files, path):
    f = files[path]
    return None if f.content is None else [tuple(line.split(None, 1)) for line in f.content.splitlines()]


@pytest.mark.parametrize("ssl", ["", "snakeoil"])
def test_relay_credentials_require_tls_to_the_relay(tmp_path, ssl):
    files = render(tmp_path, {"postfix-accounts.cf": ACCOUNTS, "postfix-relaymap.cf": RELAYMAP,
                              "postfix-sasl-password.cf": SASL}, SSL_TYPE=ssl)
    text = files["/etc/postfix/main.cf"].content
    assert param(text, "smtp_sasl_auth_enable") == "yes"
    assert param(text, "smtp_tls_policy_maps") == "texthash:/etc/postfix/tls_policy"
    assert table_rows(files, "/etc/postfix/tls_policy") == [("[smtp.relay.test]:587", "encrypt")]
    # No plaintext mechanism without TLS; with TLS, PLAIN/LOGIN are fine.
    assert items(param(text, "smtp_sasl_security_options")) == ["noanonymous", "noplaintext"]
    assert items(param(text, "smtp_sasl_tls_security_options")) == ["noanonymous"]
    assert param(text, "smtp_tls_mandatory_protocols") == "!SSLv2, !SSLv3, !TLSv1, !TLSv1.1"
    # Ordinary MX delivery keeps its opportunistic level.
    assert param(text, "smtp_tls_security_level") == ("none" if ssl == "" else "may")


def test_relay_tls_verifies_against_the_system_cas(tmp_path):
    text = main_cf(tmp_path, {"postfix-sasl-password.cf": "[smtp.relay.test]:587 u:p\n"},
                   DEFAULT_RELAY_HOST="[smtp.relay.test]:587")
    assert param(text, "smtp_tls_CAfile") == "/etc/ssl/certs/ca-certificates.crt"
    assert param(text, "smtp_tls_CApath") == "/etc/ssl/certs"


def test_relay_policy_lists_every_relay_next_hop(tmp_path):
    files = render(tmp_path, {"postfix-accounts.cf": ACCOUNTS,
                              "postfix-relaymap.cf": "@example.test [a.relay.test]:25\n",
                              "postfix-sasl-password.cf": "@example.test u:p\n[b.relay.test]:2525 v:q\n"},
                   DEFAULT_RELAY_HOST="c.relay.test:587")
    assert dict(table_rows(files, "/etc/postfix/tls_policy")) == {
        "c.relay.test:587": "encrypt", "[a.relay.test]:25": "encrypt", "[a.relay.test]": "encrypt",
        "[b.relay.test]:2525": "encrypt"}


def test_relay_without_credentials_keeps_opportunistic_tls(tmp_path):
    files = render(tmp_path, {"postfix-accounts.cf": ACCOUNTS, "postfix-relaymap.cf": RELAYMAP})
    text = files["/etc/postfix/main.cf"].content
    assert param(text, "smtp_sasl_auth_enable") is None and param(text, "smtp_tls_policy_maps") is None
    assert files["/etc/postfix/tls_policy"].content is None


def test_legacy_relay_host_for_every_domain_not_opted_out(tmp_path):
    files = render(tmp_path, {"postfix-accounts.cf": ACCOUNTS + f"y@third.test|{H1}\n",
                              "postfix-relaymap.cf": RELAYMAP},
                   RELAY_HOST="legacy.relay.test", RELAY_PORT="2525")
    assert table_rows(files, "/etc/postfix/relayhost_map") == [
        ("@example.test", "[smtp.relay.test]:587"),         # its own entry wins
        ("@third.test", "[legacy.relay.test]:2525")]        # second.test opted out
    assert param(files["/etc/postfix/main.cf"].content, "sender_dependent_relayhost_maps") == \
        "texthash:/etc/postfix/relayhost_map"


@pytest.mark.parametrize("env, key", [
    ({"RELAY_HOST": "legacy.relay.test"}, "[legacy.relay.test]:25"),
    ({"RELAY_HOST": "legacy.relay.test", "DEFAULT_RELAY_HOST": "[smtp.relay.test]:587"}, "[smtp.relay.test]:587"),
    ({"DEFAULT_RELAY_HOST": "[smtp.relay.test]:587"}, "[smtp.relay.test]:587"),
])
def test_legacy_relay_user_and_password(tmp_path, env, key):
    files = render(tmp_path, {"postfix-accounts.cf": ACCOUNTS}, RELAY_USER="relayuser",
                   RELAY_PASSWORD="relay Secret!", **env)
    sasl = files["/etc/postfix/sasl_passwd"]
    assert sasl.mode == 0o600
    assert table_rows(files, "/etc/postfix/sasl_passwd") == [(key, "relayuser:relay Secret!")]
    assert (key.lower(), "encrypt") in table_rows(files, "/etc/postfix/tls_policy")
    assert param(files["/etc/postfix/main.cf"].content, "smtp_sasl_auth_enable") == "yes"


def test_writable_caches_are_lmdb_not_berkeley_db(tmp_path):
    # Berkeley DB (btree/hash) would pull libdb's code into postscreen, the Postfix process
    # idling beside master/qmgr/pickup, and size its cache by berkeley_db_create_buffer_size.
    text = main_cf(tmp_path)
    assert param(text, "postscreen_cache_map") == "lmdb:$data_directory/postscreen_cache"
    assert param(text, "smtpd_tls_session_cache_database") == "lmdb:${data_directory}/smtpd_scache"
    assert param(text, "smtp_tls_session_cache_database") == "lmdb:${data_directory}/smtp_scache"
    assert not any(value.startswith(("btree:", "hash:")) or " btree:" in value or " hash:" in value
                   for _, value in params(text))


def test_the_lmdb_map_type_is_installed():
    from ops.postfix.daemon import DAEMON
    assert "postfix-lmdb" in DAEMON.packages


def test_relay_credentials_per_sender_address(tmp_path):
    """Postfix's sender-dependent authentication looks the sender address up before its @domain
    (docker-mailserver copies postfix-sasl-password.cf as it is): a per-address line is kept,
    and is no next hop of the TLS policy."""
    files = render(tmp_path, {"postfix-accounts.cf": ACCOUNTS, "postfix-relaymap.cf": RELAYMAP,
                              "postfix-sasl-password.cf": "Alice@Example.test alice-relay:pw-1\n"
                                                          "@example.test relayuser:pw-2\n"})
    assert table_rows(files, "/etc/postfix/sasl_passwd") == [("alice@example.test", "alice-relay:pw-1"),
                                                             ("@example.test", "relayuser:pw-2")]
    assert table_rows(files, "/etc/postfix/tls_policy") == [("[smtp.relay.test]:587", "encrypt")]


@pytest.mark.parametrize("ssl", ["", "snakeoil"])
def test_outgoing_tls_is_logged_as_docker_mailserver_does(tmp_path, ssl):
    """docker-mailserver's main.cf sets smtp_tls_loglevel = 1 beside smtpd's: the smtp client
    logs `... TLS connection established to <host>[ip]:port: TLSv1.3 ...` (or `Untrusted`/
    `Trusted`/`Verified`), the only trace in the log that a relay or an MX got the mail over TLS."""
    text = main_cf(tmp_path, {"postfix-sasl-password.cf": "[smtp.relay.test]:587 u:p\n"},
                   DEFAULT_RELAY_HOST="[smtp.relay.test]:587", SSL_TYPE=ssl)
    assert param(text, "smtp_tls_loglevel") == "1"
    assert param(text, "smtpd_tls_loglevel") == "1"


def test_sender_credentials_only_for_senders_that_go_through_a_relay(tmp_path, caplog):
    """Postfix looks a sender's credentials up whatever the next hop (sender-dependent
    authentication): a sender or @domain key whose mail goes to the recipients' MX hosts, not to
    a relay, would hand that password to any MX offering AUTH over its opportunistic, unverified
    TLS. Such a key is left out, and the error names the key, never the password."""
    import logging
    sasl = ("alice@example.test alice-relay:pw-1\n@example.test relayuser:pw-2\n"
            "bob@other.test bob-relay:pw-3\n@other.test otheruser:pw-4\n[smtp.relay.test]:587 hostuser:pw-5\n")
    with caplog.at_level(logging.ERROR):
        files = render(tmp_path, {"postfix-accounts.cf": ACCOUNTS, "postfix-relaymap.cf": RELAYMAP,
                                  "postfix-sasl-password.cf": sasl})
    assert table_rows(files, "/etc/postfix/sasl_passwd") == [
        ("alice@example.test", "alice-relay:pw-1"), ("@example.test", "relayuser:pw-2"),    # relayed (RELAYMAP)
        ("[smtp.relay.test]:587", "hostuser:pw-5")]                                       # a relay's own key
    assert "bob@other.test" in caplog.text and "@other.test" in caplog.text
    assert not any(pw in caplog.text for pw in ("pw-3", "pw-4", "bob-relay", "otheruser"))


@pytest.mark.parametrize("env", [{"DEFAULT_RELAY_HOST": "[smtp.relay.test]:587"},
                                 {"RELAY_HOST": "legacy.relay.test"}])
def test_sender_credentials_kept_when_every_sender_is_relayed(tmp_path, env):
    """DEFAULT_RELAY_HOST relays every sender; RELAY_HOST every domain of the accounts."""
    files = render(tmp_path, {"postfix-accounts.cf": ACCOUNTS,
                              "postfix-sasl-password.cf": "alice@example.test alice-relay:pw-1\n"}, **env)
    assert table_rows(files, "/etc/postfix/sasl_passwd") == [("alice@example.test", "alice-relay:pw-1")]
