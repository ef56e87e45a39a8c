"""saslauthd (ops/saslauthd): its descriptor, /etc/saslauthd.conf from SASLAUTHD_LDAP_*, the Cyrus
SASL file for Postfix, the Postfix hook, off means gone. Pure (tests/e2e/test_saslauthd.py runs it)."""

from __future__ import annotations

import subprocess

import pytest

from ops import daemons, settings as S
from ops.saslauthd import config
from ops.saslauthd.daemon import CONF, DAEMON, FOREGROUND, OPTIONS, SMTPD_CONF, UNIT_FILE

FQDN = "mail.example.test"


def load(**env) -> S.Settings:
    return S.load(environ={"MAILWRIGHT_INIT": "container", **{k: str(v) for k, v in env.items()}}, fqdn=FQDN)


def render(**env) -> dict[str, config.ConfigFile]:
    return {f.path: f for f in DAEMON.files(load(**env), None, None)}


def conf_lines(text: str) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in text.splitlines() if line and not line.startswith("#"))


def test_descriptor():
    assert daemons.by_name("saslauthd") is DAEMON
    assert DAEMON.packages == ("sasl2-bin",)
    assert DAEMON.sockets == ("/run/saslauthd/mux",)
    names = [d.name for d in daemons.all_daemons()]
    assert names.index("saslauthd") < names.index("postfix")
    assert not DAEMON.enabled(load()) and DAEMON.enabled(load(ENABLE_SASLAUTHD=1, LDAP_SERVER_HOST="ldap"))


def test_ldap_is_the_default_mechanism_and_its_conf_comes_from_the_ldap_settings():
    files = render(ENABLE_SASLAUTHD=1, LDAP_SERVER_HOST="ldap.example.test", LDAP_BIND_DN="cn=admin,dc=example",
                   LDAP_BIND_PW="pw-ldap", LDAP_SEARCH_BASE="ou=people,dc=example")
    assert 'MECHANISM="ldap"' in files[OPTIONS].content
    assert 'MECH_OPTIONS="/etc/saslauthd.conf"' in files[OPTIONS].content
    conf = files[CONF]
    assert conf.mode == 0o600
    assert conf_lines(conf.content) == {
        "ldap_servers": "ldap://ldap.example.test",
        "ldap_auth_method": "bind",
        "ldap_bind_dn": "cn=admin,dc=example",
        "ldap_bind_pw": "pw-ldap",
        "ldap_search_base": "ou=people,dc=example",
        "ldap_filter": "(&(uniqueIdentifier=%u)(mailEnabled=TRUE))",
        "ldap_start_tls": "no",
        "ldap_tls_check_peer": "no",
        "ldap_referrals": "yes",
        "log_level": "10",
    }


def test_saslauthd_ldap_settings_win_and_optional_keys_appear_when_set():
    # docker-mailserver's README LDAP example
    lines = conf_lines(render(
        ENABLE_SASLAUTHD=1, SASLAUTHD_MECHANISMS="ldap", LDAP_SERVER_HOST="ldap://other",
        SASLAUTHD_LDAP_SERVER="ldaps://ldap", SASLAUTHD_LDAP_BIND_DN="cn=admin,dc=localhost,dc=localdomain",
        SASLAUTHD_LDAP_PASSWORD="admin", SASLAUTHD_LDAP_SEARCH_BASE="ou=people,dc=localhost,dc=localdomain",
        SASLAUTHD_LDAP_FILTER="(&(objectClass=PostfixBookMailAccount)(uniqueIdentifier=%U))",
        SASLAUTHD_LDAP_START_TLS="yes", SASLAUTHD_LDAP_TLS_CACERT_FILE="/etc/ssl/ca.pem",
        SASLAUTHD_LDAP_PASSWORD_ATTR="userPassword", SASLAUTHD_LDAP_MECH="PLAIN")[CONF].content)
    assert lines["ldap_servers"] == "ldaps://ldap"
    assert lines["ldap_bind_pw"] == "admin"
    assert lines["ldap_filter"] == "(&(objectClass=PostfixBookMailAccount)(uniqueIdentifier=%U))"
    assert lines["ldap_start_tls"] == "yes"
    assert (lines["ldap_tls_cacert_file"], lines["ldap_password_attr"], lines["ldap_mech"]) == (
        "/etc/ssl/ca.pem", "userPassword", "PLAIN")
    assert "ldap_tls_cacert_dir" not in lines


def test_readme_example_bare_server_gets_ldap_scheme_and_tls_keys():
    lines = conf_lines(render(ENABLE_SASLAUTHD=1, SASLAUTHD_LDAP_SERVER="ldap:3389", SASLAUTHD_LDAP_START_TLS="yes",
                              SASLAUTHD_LDAP_TLS_CHECK_PEER="yes",
                              SASLAUTHD_LDAP_TLS_CACERT_FILE="/etc/ssl/certs/ca-certificates.crt")[CONF].content)
    assert lines["ldap_servers"] == "ldap://ldap:3389"
    assert (lines["ldap_start_tls"], lines["ldap_tls_check_peer"], lines["ldap_tls_cacert_file"]) == (
        "yes", "yes", "/etc/ssl/certs/ca-certificates.crt")


def test_the_ldap_mechanism_needs_a_directory():
    with pytest.raises(S.SettingsError, match="SASLAUTHD_LDAP_SERVER or LDAP_SERVER_HOST"):
        load(ENABLE_SASLAUTHD=1)
    load(ENABLE_SASLAUTHD=1, SASLAUTHD_MECHANISMS="rimap")          # rimap asks an IMAP server instead


@pytest.mark.parametrize("name,value", [
    ("SASLAUTHD_LDAP_SERVER", "http://ldap"), ("SASLAUTHD_LDAP_SERVER", "ldap:// "),
    ("LDAP_SERVER_HOST", "ftp://ldap"),
    ("SASLAUTHD_LDAP_START_TLS", "maybe"), ("SASLAUTHD_LDAP_TLS_CHECK_PEER", "sure"),
    ("SASLAUTHD_LDAP_TLS_CACERT_FILE", "ca.pem"), ("SASLAUTHD_LDAP_AUTH_METHOD", "plain"),
    ("SASLAUTHD_LDAP_PASSWORD_ATTR", "user Password"), ("SASLAUTHD_LDAP_MECH", "PLAIN\tX"),
])
def test_bad_values_are_refused_naming_the_variable(name, value):
    with pytest.raises(S.SettingsError, match=name):
        load(ENABLE_SASLAUTHD=1, **{"LDAP_SERVER_HOST": "ldap://ldap", name: value})


@pytest.mark.parametrize("name", ["SASLAUTHD_LDAP_FILTER", "SASLAUTHD_LDAP_BIND_DN", "SASLAUTHD_LDAP_SEARCH_BASE",
                                  "SASLAUTHD_LDAP_PASSWORD", "SASLAUTHD_LDAP_SERVER"])
@pytest.mark.parametrize("breaker", ["\n", "\r", "\u2028", "\x85"])
def test_a_line_break_cannot_add_a_line_to_saslauthd_conf(name, breaker):
    """A value smuggling `\nldap_servers: ldap://evil` is refused, naming the variable and never
    showing a password."""
    value = f"secret-pw{breaker}ldap_servers: ldap://evil"
    with pytest.raises(S.SettingsError, match=name) as e:
        load(ENABLE_SASLAUTHD=1, LDAP_SERVER_HOST="ldap://ldap", **{name: value})
    if name == "SASLAUTHD_LDAP_PASSWORD":
        assert "secret-pw" not in str(e.value)


def test_rimap_asks_the_imap_server_and_has_no_ldap_conf():
    files = render(ENABLE_SASLAUTHD=1, SASLAUTHD_MECHANISMS="rimap", SASLAUTHD_MECH_OPTIONS="imap.example.test")
    assert 'MECHANISM="rimap"' in files[OPTIONS].content
    assert 'MECH_OPTIONS="imap.example.test"' in files[OPTIONS].content
    assert files[CONF].content is None


def test_unknown_mechanism_is_refused_naming_the_setting():
    with pytest.raises(S.SettingsError, match="SASLAUTHD_MECHANISMS"):
        load(ENABLE_SASLAUTHD=1, SASLAUTHD_MECHANISMS="shadow")


def test_postfix_asks_saslauthd_through_cyrus():
    files = render(ENABLE_SASLAUTHD=1, SASLAUTHD_MECHANISMS="rimap")
    assert conf_lines(files[SMTPD_CONF].content) == {
        "pwcheck_method": "saslauthd", "saslauthd_path": "/run/saslauthd/mux", "mech_list": "plain login"}
    hooks = DAEMON.postfix(load(ENABLE_SASLAUTHD=1, SASLAUTHD_LDAP_SERVER="ldap://ldap"), None)
    assert dict(hooks.main) == {"smtpd_sasl_type": "cyrus", "smtpd_sasl_path": "smtpd"}


def test_off_means_gone():
    assert {p: f.content for p, f in render().items()} == {OPTIONS: None, CONF: None, SMTPD_CONF: None,
                                                           UNIT_FILE: None}


def test_foreground_passes_the_options_as_single_words(tmp_path):
    """The sourced options reach saslauthd as one word each, quotes and $ included."""
    opts = render(ENABLE_SASLAUTHD=1, SASLAUTHD_MECHANISMS="rimap",
                  SASLAUTHD_MECH_OPTIONS='host "q" $HOME `x`')[OPTIONS].content
    (tmp_path / "opts").write_text(opts)
    script = (FOREGROUND[2].replace(OPTIONS, str(tmp_path / "opts")).replace("/run/saslauthd.pid", str(tmp_path / "pid"))
              .replace("/run/saslauthd", str(tmp_path / "run")).replace("exec /usr/sbin/saslauthd", "exec printf '%s\\n'"))
    out = subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True, check=True).stdout.splitlines()
    assert out[out.index("-a") + 1] == "rimap"
    assert out[out.index("-O") + 1] == 'host "q" $HOME `x`'
    assert "-d" in out and "-r" in out


def postfix_files(tmp_path, **env) -> dict[str, str]:
    from ops import configdir, plan
    folder = tmp_path / "config"
    folder.mkdir(exist_ok=True)
    s = S.load(environ={"MAILWRIGHT_INIT": "container", "MAILWRIGHT_CONFIG_DIR": str(folder),
                        **{k: str(v) for k, v in env.items()}}, fqdn=FQDN)
    return {f.path: f.content for f in plan.files(s, configdir.read(folder))
            if f.path in ("/etc/postfix/main.cf", "/etc/postfix/master.cf")}


@pytest.mark.parametrize("smtp_only", ["0", "1"])
def test_submission_ports_offer_auth_through_saslauthd_even_with_smtp_only(tmp_path, smtp_only):
    files = postfix_files(tmp_path, ENABLE_SASLAUTHD=1, SASLAUTHD_MECHANISMS="rimap", SMTP_ONLY=smtp_only)
    master = files["/etc/postfix/master.cf"]
    for service in ("submission inet", "submissions inet"):
        block = master.split(service, 1)[1].split("\n\n", 1)[0].split("\n# ", 1)[0]
        assert "-o smtpd_sasl_auth_enable=yes" in block, (service, block)
    main = [line for line in files["/etc/postfix/main.cf"].splitlines() if line.startswith("smtpd_sasl_")]
    # replaced in place: a second line would make every Postfix command warn "overriding earlier entry"
    assert [x for x in main if x.startswith(("smtpd_sasl_type", "smtpd_sasl_path"))] == [
        "smtpd_sasl_type = cyrus", "smtpd_sasl_path = smtpd"], main


def test_smtp_only_without_saslauthd_has_no_auth(tmp_path):
    master = postfix_files(tmp_path, SMTP_ONLY=1)["/etc/postfix/master.cf"]
    assert "smtpd_sasl_auth_enable=yes" not in master
