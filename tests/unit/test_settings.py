"""ops.settings: the typed settings model, its sources, legacy names and validation.

The contract under test: every docker-mailserver variable declared once (typed,
default, one line of meaning); sources merged env file < host data < environment,
`VAR__FILE` secrets on top; a bad value stops everything with the variable and
the accepted values named; a setting that does nothing yet says so in the log.
"""

from __future__ import annotations

import logging
from dataclasses import fields

import pytest

from ops import settings as S
from ops.settings import Settings, SettingsError

BASE = {"MAILWRIGHT_INIT": "systemd"}
FQDN = "mail.example.test"


def load(**kw):
    """load() with the required MAILWRIGHT_INIT and a fixed FQDN, so the machine's hostname never leaks in."""
    kw.setdefault("fqdn", FQDN)
    kw["host_data"] = {**BASE, **kw.get("host_data", {})}
    return S.load(**kw)


# docker-mailserver v15.1's defaults (dms-compat.md §1), as its /etc/dms-settings strings.
DMS_DEFAULTS = {
    "LOG_LEVEL": "info", "SUPERVISOR_LOGLEVEL": "warn", "DMS_VMAIL_UID": "5000", "DMS_VMAIL_GID": "5000",
    "ACCOUNT_PROVISIONER": "FILE", "PERMIT_DOCKER": "none", "NETWORK_INTERFACE": "eth0", "TZ": "",
    "POSTMASTER_ADDRESS": "", "ENABLE_UPDATE_CHECK": "1", "UPDATE_CHECK_INTERVAL": "1d", "SMTP_ONLY": "0",
    "DMS_CONFIG_POLL": "2", "ENABLE_IMAP": "1", "ENABLE_POP3": "0", "ENABLE_MANAGESIEVE": "0",
    "ENABLE_QUOTAS": "1", "DOVECOT_MAILBOX_FORMAT": "maildir", "DOVECOT_INET_PROTOCOLS": "all",
    "POSTFIX_INET_PROTOCOLS": "all",
    "SSL_TYPE": "", "SSL_CERT_PATH": "", "SSL_KEY_PATH": "", "SSL_ALT_CERT_PATH": "", "SSL_ALT_KEY_PATH": "",
    "SSL_DOMAIN": "", "TLS_LEVEL": "modern",
    "POSTFIX_MESSAGE_SIZE_LIMIT": "10240000", "POSTFIX_MAILBOX_SIZE_LIMIT": "0", "POSTFIX_DAGENT": "",
    "POSTFIX_REJECT_UNKNOWN_CLIENT_HOSTNAME": "0", "SPOOF_PROTECTION": "0", "ENABLE_DNSBL": "0",
    "POSTSCREEN_ACTION": "enforce", "ENABLE_OPENDKIM": "1", "ENABLE_OPENDMARC": "1", "ENABLE_POLICYD_SPF": "1",
    "ENABLE_MTA_STS": "0", "VIRUSMAILS_DELETE_DELAY": "7",
    "DEFAULT_RELAY_HOST": "", "RELAY_HOST": "", "RELAY_PORT": "25", "RELAY_USER": "", "RELAY_PASSWORD": "",
    "ENABLE_AMAVIS": "1", "AMAVIS_LOGLEVEL": "0", "ENABLE_SPAMASSASSIN": "0", "ENABLE_SPAMASSASSIN_KAM": "0",
    "SPAMASSASSIN_SPAM_TO_INBOX": "1", "SA_TAG": "2.0", "SA_TAG2": "6.31", "SA_KILL": "10.0",
    "SA_SHORTCIRCUIT_BAYES_SPAM": "0", "SA_SHORTCIRCUIT_BAYES_HAM": "0", "SPAM_SUBJECT": "",
    "MOVE_SPAM_TO_JUNK": "1", "MARK_SPAM_AS_READ": "0", "ENABLE_CLAMAV": "0", "CLAMAV_MESSAGE_SIZE_LIMIT": "25M",
    "ENABLE_POSTGREY": "0", "POSTGREY_DELAY": "300", "POSTGREY_MAX_AGE": "35",
    "POSTGREY_AUTO_WHITELIST_CLIENTS": "5", "POSTGREY_TEXT": "Delayed by Postgrey",
    "ENABLE_RSPAMD": "0", "RSPAMD_CHECK_AUTHENTICATED": "0", "RSPAMD_GREYLISTING": "0", "RSPAMD_LEARN": "0",
    "RSPAMD_HFILTER": "1", "RSPAMD_HFILTER_HOSTNAME_UNKNOWN_SCORE": "6", "RSPAMD_NEURAL": "0",
    "ENABLE_FAIL2BAN": "0", "FAIL2BAN_BLOCKTYPE": "drop", "ENABLE_FETCHMAIL": "0", "FETCHMAIL_POLL": "300",
    "FETCHMAIL_PARALLEL": "0", "ENABLE_GETMAIL": "0", "GETMAIL_POLL": "5",
    "PFLOGSUMM_TRIGGER": "none", "LOGWATCH_INTERVAL": "none", "LOGROTATE_INTERVAL": "weekly", "LOGROTATE_COUNT": "4",
    "LDAP_START_TLS": "no", "DOVECOT_TLS": "no", "DOVECOT_AUTH_BIND": "no", "DOVECOT_LDAP_VERSION": "3",
    "DOVECOT_DEFAULT_PASS_SCHEME": "SSHA",
    "ENABLE_SASLAUTHD": "0", "SASLAUTHD_LDAP_START_TLS": "no", "SASLAUTHD_LDAP_TLS_CHECK_PEER": "no",
    "SASLAUTHD_LDAP_AUTH_METHOD": "bind", "ENABLE_OAUTH2": "0", "ENABLE_SRS": "0",
    "SRS_SENDER_CLASSES": "envelope_sender",
}

# Variables of dms-compat.md §1 whose default is derived or unset (no fixed string to compare).
DMS_OTHER_NAMES = {
    "OVERRIDE_HOSTNAME", "ENABLE_RSPAMD_REDIS", "PFLOGSUMM_RECIPIENT", "PFLOGSUMM_SENDER", "LOGWATCH_RECIPIENT",
    "LOGWATCH_SENDER", "REPORT_RECIPIENT", "REPORT_SENDER", "LDAP_SERVER_HOST", "LDAP_SEARCH_BASE", "LDAP_BIND_DN",
    "LDAP_BIND_PW", "LDAP_QUERY_FILTER_USER", "LDAP_QUERY_FILTER_GROUP", "LDAP_QUERY_FILTER_ALIAS",
    "LDAP_QUERY_FILTER_DOMAIN", "LDAP_QUERY_FILTER_SENDERS", "DOVECOT_URIS", "DOVECOT_BASE", "DOVECOT_DN",
    "DOVECOT_DNPASS", "DOVECOT_USER_FILTER", "DOVECOT_PASS_FILTER", "DOVECOT_USER_ATTRS", "DOVECOT_PASS_ATTRS",
    "SASLAUTHD_MECHANISMS", "SASLAUTHD_MECH_OPTIONS", "SASLAUTHD_LDAP_SERVER", "SASLAUTHD_LDAP_BIND_DN",
    "SASLAUTHD_LDAP_PASSWORD", "SASLAUTHD_LDAP_SEARCH_BASE", "SASLAUTHD_LDAP_FILTER",
    "SASLAUTHD_LDAP_TLS_CACERT_FILE", "SASLAUTHD_LDAP_TLS_CACERT_DIR", "SASLAUTHD_LDAP_PASSWORD_ATTR",
    "SASLAUTHD_LDAP_MECH", "OAUTH2_INTROSPECTION_URL", "SRS_DOMAINNAME", "SRS_EXCLUDE_DOMAINS", "SRS_SECRET",
}
DMS_LEGACY_NAMES = {"DMS_DEBUG", "ONE_DIR", "ENABLE_LDAP", "ENABLE_POSTFIX_VIRTUAL_TRANSPORT", "SASL_PASSWD",
                    "REPORT_INTERVAL", "SA_SPAM_SUBJECT", "SASLAUTHD_LDAP_SSL"}


# --- the model itself --------------------------------------------------------------------------

def test_every_field_is_documented_and_typed():
    # The contract of the model: declared once, typed, with a default and one line of meaning.
    undocumented = [f.name for f in fields(Settings) if not f.metadata.get("doc", "").strip()]
    assert undocumented == []
    untyped = [f.name for f in fields(Settings) if f.type not in ("str", "bool", "int")]
    assert untyped == []
    multiline = [f.name for f in fields(Settings) if "\n" in f.metadata["doc"]]
    assert multiline == []


def test_every_docker_mailserver_variable_is_declared():
    declared = S.SETTING_NAMES | set(S.LEGACY)
    missing = (set(DMS_DEFAULTS) | DMS_OTHER_NAMES | DMS_LEGACY_NAMES) - declared
    assert missing == set()


def test_defaults_match_docker_mailserver():
    env = load().to_env()
    wrong = {k: (env[k], v) for k, v in DMS_DEFAULTS.items() if env[k] != v}
    assert wrong == {}


def test_choices_defaults_are_accepted_values():
    # A default outside its own choices would make an untouched setting fail validation.
    for f in fields(Settings):
        choices = f.metadata["choices"]
        if choices is not None and f.name != "MAILWRIGHT_INIT":      # required: no usable default
            assert f.default in choices, f.name


# --- mailserver.env ------------------------------------------------------------------------------

def test_env_file_comments_quotes_export_and_blank_lines(tmp_path):
    env = tmp_path / "mailserver.env"
    env.write_text(
        "# docker-mailserver's mailserver.env\n"
        "\n"
        "ENABLE_POP3=1\n"
        "   # indented comment\n"
        "export ENABLE_MANAGESIEVE=1\n"
        'POSTMASTER_ADDRESS="boss@example.test"\n'
        "SPAM_SUBJECT='[SPAM] '\n"
        "TLS_LEVEL = intermediate\n"
        "DEFAULT_RELAY_HOST=[relay.example.test]:587\n"
    )
    values = S.parse_env_file(env)
    assert values == {
        "ENABLE_POP3": "1", "ENABLE_MANAGESIEVE": "1", "POSTMASTER_ADDRESS": "boss@example.test",
        "SPAM_SUBJECT": "[SPAM] ", "TLS_LEVEL": "intermediate",
        "DEFAULT_RELAY_HOST": "[relay.example.test]:587",
    }
    s = load(env_file=env)
    assert (s.ENABLE_POP3, s.ENABLE_MANAGESIEVE, s.postmaster, s.TLS_LEVEL) == \
        (True, True, "boss@example.test", "intermediate")


def test_env_file_value_may_contain_equals_and_hash(tmp_path):
    # Only the first '=' splits; a '#' inside a value is not a comment (docker's --env-file agrees).
    env = tmp_path / "mailserver.env"
    env.write_text("POSTFIX_DAGENT=lmtp:inet:[127.0.0.1]:24#x=y\n")
    assert S.parse_env_file(env) == {"POSTFIX_DAGENT": "lmtp:inet:[127.0.0.1]:24#x=y"}


def test_env_file_crlf(tmp_path):
    env = tmp_path / "mailserver.env"
    env.write_bytes(b"ENABLE_POP3=1\r\nSSL_TYPE=\r\n")
    assert S.parse_env_file(env) == {"ENABLE_POP3": "1", "SSL_TYPE": ""}


@pytest.mark.parametrize("bad", ["ENABLE_POP3", "1BAD=x", "BAD NAME=x", "=value"])
def test_env_file_malformed_line_names_file_and_line(tmp_path, bad):
    env = tmp_path / "mailserver.env"
    env.write_text(f"# first\nENABLE_IMAP=1\n{bad}\n")
    with pytest.raises(SettingsError) as e:
        S.parse_env_file(env)
    assert f"{env}:3:" in str(e.value)


def test_env_file_unknown_variable_is_warned_about(tmp_path, caplog):
    env = tmp_path / "mailserver.env"
    env.write_text("ENABLE_POP4=1\n")
    with caplog.at_level(logging.WARNING, "mailwright.settings"):
        load(env_file=env)
    assert "unknown setting ENABLE_POP4" in caplog.text


# --- precedence ------------------------------------------------------------------------------------

def test_precedence_env_file_then_host_data_then_environment(tmp_path):
    env = tmp_path / "mailserver.env"
    env.write_text("TLS_LEVEL=intermediate\nENABLE_POP3=1\nPOSTSCREEN_ACTION=drop\n")
    s = load(env_file=env, host_data={"ENABLE_POP3": False, "POSTSCREEN_ACTION": "ignore"},
             environ={"POSTSCREEN_ACTION": "enforce"})
    assert s.TLS_LEVEL == "intermediate"        # env file only
    assert s.ENABLE_POP3 is False               # host data beats the env file
    assert s.POSTSCREEN_ACTION == "enforce"     # the environment beats host data


def test_host_data_values_are_typed_python_values():
    # pyinfra host data holds Python values (True, 25, ...), not strings.
    s = load(host_data={"ENABLE_POP3": True, "POSTFIX_MESSAGE_SIZE_LIMIT": 20480000, "SPOOF_PROTECTION": 1})
    assert (s.ENABLE_POP3, s.POSTFIX_MESSAGE_SIZE_LIMIT, s.SPOOF_PROTECTION) == (True, 20480000, True)


def test_unrelated_environment_and_host_data_are_ignored():
    s = load(environ={"PATH": "/bin", "HOME": "/root", "ENABLE_POP3": "1"},
             host_data={"ssh_user": "root", "mailwright_stage": "all"})
    assert s.ENABLE_POP3 is True


def test_boolean_spellings():
    for raw, want in [("1", True), ("true", True), ("YES", True), ("on", True),
                      ("0", False), ("false", False), ("no", False), ("", False)]:
        assert load(environ={"ENABLE_POP3": raw}).ENABLE_POP3 is want, raw


# --- VAR__FILE secrets -------------------------------------------------------------------------------

def test_file_secret_sets_the_variable(tmp_path, caplog):
    secret = tmp_path / "relay_pw"
    secret.write_text("s3cret\n")                   # trailing newline of `echo` is not part of it
    with caplog.at_level(logging.INFO, "mailwright.settings"):
        s = load(environ={"RELAY_PASSWORD__FILE": str(secret)})
    assert s.RELAY_PASSWORD == "s3cret"
    assert f"Getting secret 'RELAY_PASSWORD' from '{secret}'" in caplog.text
    assert "RELAY_PASSWORD__FILE" not in s.to_env()


def test_file_secret_skipped_when_variable_already_set(tmp_path, caplog):
    secret = tmp_path / "relay_pw"
    secret.write_text("from-file")
    with caplog.at_level(logging.WARNING, "mailwright.settings"):
        s = load(environ={"RELAY_PASSWORD": "direct", "RELAY_PASSWORD__FILE": str(secret)})
    assert s.RELAY_PASSWORD == "direct"
    assert "ENV value will not be sourced from 'RELAY_PASSWORD__FILE' since 'RELAY_PASSWORD' is already set" \
        in caplog.text


def test_file_secret_missing_file_is_a_warning_not_an_error(tmp_path, caplog):
    missing = tmp_path / "nope"
    with caplog.at_level(logging.WARNING, "mailwright.settings"):
        s = load(environ={"RELAY_PASSWORD__FILE": str(missing)})
    assert s.RELAY_PASSWORD == ""
    assert f"File defined for secret 'RELAY_PASSWORD' with path '{missing}' does not exist" in caplog.text
    assert any(r.levelno == logging.WARNING for r in caplog.records)


def test_file_secret_from_env_file(tmp_path):
    secret = tmp_path / "pw"
    secret.write_text("pw-from-file")
    env = tmp_path / "mailserver.env"
    env.write_text(f"LDAP_BIND_PW__FILE={secret}\n")
    assert load(env_file=env).LDAP_BIND_PW == "pw-from-file"


def test_file_secret_value_is_validated_like_any_value(tmp_path):
    secret = tmp_path / "level"
    secret.write_text("paranoid")
    with pytest.raises(SettingsError, match="TLS_LEVEL"):
        load(environ={"TLS_LEVEL__FILE": str(secret)})


# --- legacy names ------------------------------------------------------------------------------------

def test_dms_debug_means_log_level_debug(caplog):
    with caplog.at_level(logging.WARNING, "mailwright.settings"):
        assert load(environ={"DMS_DEBUG": "1"}).LOG_LEVEL == "debug"
    assert "DMS_DEBUG is a legacy setting" in caplog.text
    assert load(environ={"DMS_DEBUG": "0"}).LOG_LEVEL == "info"


def test_explicit_log_level_beats_dms_debug():
    assert load(environ={"DMS_DEBUG": "1", "LOG_LEVEL": "warn"}).LOG_LEVEL == "warn"


def test_enable_ldap_means_ldap_provisioner():
    assert load(environ={"ENABLE_LDAP": "1"}).ACCOUNT_PROVISIONER == "LDAP"
    assert load(environ={"ENABLE_LDAP": "0"}).ACCOUNT_PROVISIONER == "FILE"


def test_one_dir_is_accepted_with_a_note(caplog, tmp_path):
    env = tmp_path / "mailserver.env"
    env.write_text("ONE_DIR=1\n")
    with caplog.at_level(logging.WARNING, "mailwright.settings"):
        s = load(env_file=env)
    assert "ONE_DIR is a legacy setting" in caplog.text
    assert "unknown setting ONE_DIR" not in caplog.text
    assert "ONE_DIR" not in s.to_env()


def test_sa_spam_subject_is_copied_to_spam_subject():
    assert load(environ={"SA_SPAM_SUBJECT": "[SPAM]"}).SPAM_SUBJECT == "[SPAM]"
    assert load(environ={"SA_SPAM_SUBJECT": "undef"}).SPAM_SUBJECT == ""


def test_quoted_trailing_space_of_a_string_value_is_kept(tmp_path):
    env = tmp_path / "mailserver.env"
    env.write_text("SPAM_SUBJECT='***SPAM*** '\n")
    assert load(env_file=env).SPAM_SUBJECT == "***SPAM*** "


# --- bad values ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("environ, named, accepted", [
    ({"SSL_TYPE": "bogus"}, "SSL_TYPE", ["'letsencrypt'", "'manual'", "'custom'", "'self-signed'"]),
    ({"TLS_LEVEL": "old"}, "TLS_LEVEL", ["'modern'", "'intermediate'"]),
    ({"ENABLE_POP3": "maybe"}, "ENABLE_POP3", ["1 or 0"]),
    ({"PERMIT_DOCKER": "everyone"}, "PERMIT_DOCKER", ["'none'", "'connected-networks'"]),
    ({"DOVECOT_MAILBOX_FORMAT": "mbox"}, "DOVECOT_MAILBOX_FORMAT", ["'maildir'", "'sdbox'", "'mdbox'"]),
    ({"DMS_CONFIG_POLL": "0"}, "DMS_CONFIG_POLL", ["at least 1"]),
    ({"DMS_CONFIG_POLL": "fast"}, "DMS_CONFIG_POLL", ["integer"]),
    ({"POSTFIX_MESSAGE_SIZE_LIMIT": "10M"}, "POSTFIX_MESSAGE_SIZE_LIMIT", ["integer"]),
    ({"DMS_VMAIL_UID": "0"}, "DMS_VMAIL_UID", ["at least 1"]),
    ({"ACCOUNT_PROVISIONER": "OIDC"}, "ACCOUNT_PROVISIONER", ["not yet implemented"]),
    ({"ACCOUNT_PROVISIONER": "SQL"}, "ACCOUNT_PROVISIONER", ["'FILE'", "'LDAP'"]),
    ({"UPDATE_CHECK_INTERVAL": "daily"}, "UPDATE_CHECK_INTERVAL", ["[smhd]"]),
])
def test_bad_value_names_variable_and_accepted_values(environ, named, accepted):
    with pytest.raises(SettingsError) as e:
        load(environ=environ)
    message = str(e.value)
    assert named in message
    for word in accepted:
        assert word in message


def test_hostname_without_dot_is_refused():
    with pytest.raises(SettingsError, match="OVERRIDE_HOSTNAME='mail'.*needs a dot"):
        load(environ={"OVERRIDE_HOSTNAME": "mail"})
    # The machine's own name is checked the same way when OVERRIDE_HOSTNAME is empty.
    with pytest.raises(SettingsError, match="OVERRIDE_HOSTNAME"):
        load(fqdn="localhost")


def test_hostname_with_invalid_characters_is_refused():
    with pytest.raises(SettingsError, match="OVERRIDE_HOSTNAME"):
        load(environ={"OVERRIDE_HOSTNAME": "mail_server.example.test"})


def test_missing_mailwright_init_says_what_to_set():
    with pytest.raises(SettingsError) as e:
        S.load(fqdn=FQDN)
    assert "MAILWRIGHT_INIT" in str(e.value)
    assert "systemd" in str(e.value) and "container" in str(e.value)


def test_manual_tls_needs_both_paths():
    with pytest.raises(SettingsError, match="SSL_KEY_PATH"):
        load(environ={"SSL_TYPE": "manual", "SSL_CERT_PATH": "/c.pem"})
    with pytest.raises(SettingsError, match="SSL_ALT_"):
        load(environ={"SSL_TYPE": "manual", "SSL_CERT_PATH": "/c", "SSL_KEY_PATH": "/k", "SSL_ALT_CERT_PATH": "/a"})


def test_mailbox_limit_below_message_limit_is_refused():
    with pytest.raises(SettingsError, match="POSTFIX_MAILBOX_SIZE_LIMIT"):
        load(environ={"POSTFIX_MAILBOX_SIZE_LIMIT": "1000", "POSTFIX_MESSAGE_SIZE_LIMIT": "2000"})
    assert load(environ={"POSTFIX_MAILBOX_SIZE_LIMIT": "0"}).POSTFIX_MAILBOX_SIZE_LIMIT == 0   # 0: unlimited


def test_postmaster_address_must_be_an_address():
    with pytest.raises(SettingsError, match="POSTMASTER_ADDRESS"):
        load(environ={"POSTMASTER_ADDRESS": "postmaster"})


def test_invalid_log_level_falls_back_to_info_with_a_warning(caplog):
    # docker-mailserver's behaviour: a warning, not a panic.
    with caplog.at_level(logging.WARNING, "mailwright.settings"):
        assert load(environ={"LOG_LEVEL": "loud"}).LOG_LEVEL == "info"
    assert "LOG_LEVEL='loud'" in caplog.text


# --- settings accepted but not implemented yet ------------------------------------------------------

def test_unimplemented_setting_is_logged_when_set(caplog):
    with caplog.at_level(logging.WARNING, "mailwright.settings"):
        s = load(environ={"ENABLE_RSPAMD": "1", "ENABLE_FAIL2BAN": "1"})
    assert s.ENABLE_RSPAMD is True           # accepted, kept in /etc/dms-settings
    assert "ENABLE_RSPAMD=1 is accepted but not implemented yet" in caplog.text
    assert "ENABLE_FAIL2BAN=1 is accepted but not implemented yet" in caplog.text


def test_unimplemented_settings_are_quiet_at_their_defaults(caplog):
    with caplog.at_level(logging.WARNING, "mailwright.settings"):
        load()
    assert "not implemented" not in caplog.text


def test_implemented_settings_are_not_reported_as_unimplemented(caplog):
    with caplog.at_level(logging.WARNING, "mailwright.settings"):
        load(environ={"ENABLE_POP3": "1", "SPOOF_PROTECTION": "1", "TLS_LEVEL": "intermediate"})
    assert "not implemented" not in caplog.text


# --- derived values -------------------------------------------------------------------------------------

@pytest.mark.parametrize("fqdn, domain", [
    ("mail.example.com", "example.com"),                # 3 labels: the first one goes
    ("mx1.mail.example.co.uk", "mail.example.co.uk"),   # only the first label goes
    ("example.com", "example.com"),                     # 2 labels: the "bare domain" is its own DOMAINNAME
])
def test_domainname_derivation(fqdn, domain):
    s = load(environ={"OVERRIDE_HOSTNAME": fqdn})
    assert s.fqdn == fqdn and s.domainname == domain
    assert s.postmaster == f"postmaster@{domain}"


def test_override_hostname_beats_the_machine_name():
    assert load(environ={"OVERRIDE_HOSTNAME": "mx.example.org"}, fqdn="box.internal.lan").fqdn == "mx.example.org"
    assert load(fqdn="box.internal.lan").fqdn == "box.internal.lan"


def test_explicit_postmaster_address():
    assert load(environ={"POSTMASTER_ADDRESS": "ops@example.org"}).postmaster == "ops@example.org"


def test_smtp_only_disables_dovecot_and_quotas():
    s = load(environ={"SMTP_ONLY": "1"})
    assert (s.dovecot_enabled, s.quotas_enabled) == (False, False)
    s = load(environ={"ENABLE_QUOTAS": "0"})
    assert (s.dovecot_enabled, s.quotas_enabled) == (True, False)


# --- /etc/dms-settings ------------------------------------------------------------------------------------

def test_dms_settings_format_is_sorted_single_quoted():
    text = S.dms_settings_text(load(environ={"ENABLE_POP3": "1"}))
    lines = text.splitlines()
    keys = [line.split("=", 1)[0] for line in lines]
    assert keys == sorted(keys)
    assert "ENABLE_POP3='1'" in lines and "TLS_LEVEL='modern'" in lines and "SSL_TYPE=''" in lines
    assert f"OVERRIDE_HOSTNAME='{FQDN}'" in lines
    assert len(lines) == len(fields(Settings))


def test_dms_settings_round_trip_with_quote(tmp_path):
    s = load(environ={"POSTGREY_TEXT": "Don't panic, we're 'greylisting'", "ENABLE_POP3": "1",
                      "POSTFIX_MESSAGE_SIZE_LIMIT": "20480000", "DEFAULT_RELAY_HOST": "[r.example]:587"})
    path = tmp_path / "dms-settings"
    path.write_text(S.dms_settings_text(s))
    back = S.read_dms_settings(path)
    assert back == s
    assert back.POSTGREY_TEXT == "Don't panic, we're 'greylisting'"


def test_dms_settings_is_valid_shell(tmp_path):
    # docker-mailserver scripts `source /etc/dms-settings`: the quoting must survive a real shell.
    import subprocess
    s = load(environ={"POSTGREY_TEXT": "it's $HOME `id` \"x\""})
    path = tmp_path / "dms-settings"
    path.write_text(S.dms_settings_text(s))
    out = subprocess.run(["bash", "-c", f'source {path} && printf %s "$POSTGREY_TEXT"'],
                         capture_output=True, text=True, check=True).stdout
    assert out == "it's $HOME `id` \"x\""


def test_dms_settings_multiline_secret_is_refused_without_showing_it(tmp_path):
    # A line break in any setting would split a line of main.cf or /etc/dms-settings (issue 7.10).
    secret = tmp_path / "pw"
    secret.write_text("first\nsecond\n")
    with pytest.raises(SettingsError) as e:
        load(environ={"LDAP_BIND_PW__FILE": str(secret)})
    assert "LDAP_BIND_PW" in str(e.value)
    assert "first" not in str(e.value) and "second" not in str(e.value)


# --- control characters, secrets (issue 7.10) ------------------------------------------------------------

# LOG_LEVEL is the exception: any value it does not know (a line break too) falls back to info.
STRING_FIELDS = [f.name for f in fields(Settings) if f.type == "str" and f.name != "LOG_LEVEL"]
CONTROL_CHARS = ["\n", "\r", "\t", "\x00", "\x1b", "\x7f", "\x85", "\x9b", "\u2028", "\u2029"]


@pytest.mark.parametrize("char", CONTROL_CHARS, ids=[f"U+{ord(c):04X}" for c in CONTROL_CHARS])
def test_newline_in_relay_host_cannot_inject_into_main_cf(char):
    with pytest.raises(SettingsError, match="DEFAULT_RELAY_HOST"):
        load(environ={"DEFAULT_RELAY_HOST": f"[smtp.example.net]:587{char}mynetworks = 0.0.0.0/0"})


@pytest.mark.parametrize("name", STRING_FIELDS)
def test_control_character_refused_in_every_string_setting(name):
    with pytest.raises(SettingsError) as e:
        load(environ={name: "a\nb"})
    assert str(e.value).startswith(name)


def test_file_secret_keeps_inner_spaces_and_drops_the_trailing_newline(tmp_path):
    secret = tmp_path / "pw"
    secret.write_text("two words\n")
    assert load(environ={"RELAY_PASSWORD__FILE": str(secret)}).RELAY_PASSWORD == "two words"


SECRETS = {"RELAY_PASSWORD", "LDAP_BIND_PW", "DOVECOT_DNPASS", "SASLAUTHD_LDAP_PASSWORD", "SRS_SECRET"}


def test_credential_settings_are_flagged_secret():
    flagged = {f.name for f in fields(Settings) if f.metadata["secret"]}
    by_name = {n for n in S.SETTING_NAMES if any(w in n for w in ("PASSWORD", "_PW", "DNPASS", "SECRET"))
               and not n.endswith("_ATTR")}
    assert flagged == SECRETS == by_name


@pytest.mark.parametrize("name", sorted(SECRETS))
def test_secret_value_never_in_an_error(name):
    with pytest.raises(SettingsError) as e:
        load(environ={name: "hunter2\x00tail"})
    assert name in str(e.value)
    assert "hunter2" not in str(e.value) and "tail" not in str(e.value)


@pytest.mark.parametrize("name", sorted(SECRETS - {"RELAY_PASSWORD"}))
def test_secret_value_never_in_the_not_implemented_warning(name, caplog):
    with caplog.at_level(logging.DEBUG, "mailwright.settings"):
        load(environ={name: "hunter2"})
    assert f"{name} (a secret, value not shown) is accepted but not implemented" in caplog.text
    assert "hunter2" not in caplog.text


@pytest.mark.parametrize("value", ["smtp.example.net", "smtp.example.net:587", "[smtp.example.net]",
                                   "[smtp.example.net]:587", "[192.0.2.7]:2525", "[2001:db8::1]:587"])
def test_default_relay_host_forms(value):
    assert load(environ={"DEFAULT_RELAY_HOST": value}).DEFAULT_RELAY_HOST == value


@pytest.mark.parametrize("value", ["[smtp.example.net]:587 mynetworks", "relayhost=x", "[a b]:25",
                                   "smtp.example.net:", "[smtp.example.net]:port", "$myhostname"])
def test_default_relay_host_refuses_anything_else(value):
    with pytest.raises(SettingsError, match="DEFAULT_RELAY_HOST"):
        load(environ={"DEFAULT_RELAY_HOST": value})


@pytest.mark.parametrize("value", ["[smtp.example.net]", "smtp.example.net:25", "a b", "x=y"])
def test_legacy_relay_host_is_a_bare_host(value):
    with pytest.raises(SettingsError, match="RELAY_HOST"):
        load(environ={"RELAY_HOST": value})


def test_legacy_relay_settings_are_implemented(caplog):
    with caplog.at_level(logging.WARNING, "mailwright.settings"):
        s = load(environ={"RELAY_HOST": "smtp.example.net", "RELAY_PORT": "587",
                          "RELAY_USER": "u", "RELAY_PASSWORD": "hunter2"})
    assert (s.RELAY_HOST, s.RELAY_PORT) == ("smtp.example.net", 587)
    assert "not implemented" not in caplog.text and "hunter2" not in caplog.text


@pytest.mark.parametrize("env, words", [
    ({"RELAY_HOST": "r.example", "RELAY_USER": "u"}, ["RELAY_USER", "without RELAY_PASSWORD"]),
    ({"RELAY_USER": "u", "RELAY_PASSWORD": "p"}, ["DEFAULT_RELAY_HOST", "RELAY_HOST"]),
    ({"RELAY_HOST": "r.example", "RELAY_PORT": "70000"}, ["RELAY_PORT", "65535"]),
])
def test_legacy_relay_settings_checked_together(env, words):
    with pytest.raises(SettingsError) as e:
        load(environ=env)
    assert all(w in str(e.value) for w in words)
