"""LDAP accounts (issue 11): the Postfix ldap: maps, Dovecot's dovecot-ldap.conf.ext and the
LDAP settings, rendered through `ops.plan.files` (ops/accounts.py picks the provider)."""

from __future__ import annotations

import logging

import pytest

from ops import accounts, configdir, plan, settings as S

FQDN = "mail.example.test"
H1 = "{SHA512-CRYPT}$6$salt1$hash1"
LDAP = {
    "ACCOUNT_PROVISIONER": "LDAP",
    "LDAP_SERVER_HOST": "ldap://ldap.example.test:3389",
    "LDAP_SEARCH_BASE": "ou=people,dc=example,dc=test",
    "LDAP_BIND_DN": "cn=admin,dc=example,dc=test",
    "LDAP_BIND_PW": "bind-Secret!",
    "LDAP_START_TLS": "yes",
}
# docker-mailserver's README LDAP example (ENABLE_LDAP=1 style).
README = {
    "ENABLE_LDAP": "1",
    "LDAP_SERVER_HOST": "ldap",
    "LDAP_SEARCH_BASE": "ou=people,dc=localhost,dc=localdomain",
    "LDAP_BIND_DN": "cn=admin,dc=localhost,dc=localdomain",
    "LDAP_BIND_PW": "admin",
    "LDAP_QUERY_FILTER_USER": "(&(mail=%s)(mailEnabled=TRUE))",
    "LDAP_QUERY_FILTER_GROUP": "(&(mailGroupMember=%s)(mailEnabled=TRUE))",
    "LDAP_QUERY_FILTER_ALIAS": "(|(&(mailAlias=%s)(objectClass=PostfixBookMailForward))"
                               "(&(mailAlias=%s)(objectClass=PostfixBookMailAccount)(mailEnabled=TRUE)))",
    "LDAP_QUERY_FILTER_DOMAIN": "(|(&(mail=*@%s)(objectClass=PostfixBookMailAccount)(mailEnabled=TRUE))"
                                "(&(mailGroupMember=*@%s)(objectClass=PostfixBookMailAccount)(mailEnabled=TRUE))"
                                "(&(mailalias=*@%s)(objectClass=PostfixBookMailForward)))",
    "DOVECOT_PASS_FILTER": "(&(objectClass=PostfixBookMailAccount)(uniqueIdentifier=%n))",
    "DOVECOT_USER_FILTER": "(&(objectClass=PostfixBookMailAccount)(uniqueIdentifier=%n))",
}


def load(**env) -> S.Settings:
    return S.load(host_data={"MAILWRIGHT_INIT": "container"}, environ=env, fqdn=FQDN)


def render(tmp_path, config: dict[str, str] | None = None, **env) -> dict[str, plan.ConfigFile]:
    folder = tmp_path / "config"
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in (config or {}).items():
        (folder / name).write_text(text)
    s = S.load(host_data={"MAILWRIGHT_INIT": "systemd", "MAILWRIGHT_CONFIG_DIR": str(folder)},
               environ=env, fqdn=FQDN)
    return {f.path: f for f in plan.files(s, configdir.read(folder))}


def keys(text: str) -> dict[str, str]:
    """An ldap table / dovecot-ldap.conf.ext as {key: value} (comments skipped; a key twice fails)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        key, _, value = line.partition("=")
        assert key.strip() not in out, f"{key.strip()} twice"
        out[key.strip()] = value.strip()
    return out


def main_cf(files) -> dict[str, str]:
    out = {}
    for line in files["/etc/postfix/main.cf"].content.splitlines():
        if "=" in line and not line.startswith((" ", "#")):
            k, _, v = line.partition("=")
            out[k.strip()] = v.strip()
    return out


# --- Postfix --------------------------------------------------------------------------------------

def test_ldap_maps_carry_the_connection_settings_and_dms_default_filters(tmp_path):
    files = render(tmp_path, **LDAP)
    users = keys(files["/etc/postfix/ldap-users.cf"].content)
    assert users["server_host"] == "ldap://ldap.example.test:3389"
    assert users["search_base"] == "ou=people,dc=example,dc=test"
    assert users["bind_dn"] == "cn=admin,dc=example,dc=test"
    assert users["bind_pw"] == "bind-Secret!"
    assert users["start_tls"] == "yes"
    assert users["tls_require_cert"] == "yes"
    assert users["query_filter"] == "(&(mail=%s)(mailEnabled=TRUE))"
    assert users["result_attribute"] == "mail"
    assert keys(files["/etc/postfix/ldap-groups.cf"].content)["query_filter"] == "(&(mailGroupMember=%s)(mailEnabled=TRUE))"
    assert keys(files["/etc/postfix/ldap-aliases.cf"].content)["query_filter"] == "(&(mailAlias=%s)(mailEnabled=TRUE))"
    assert "mail=*@%s" in keys(files["/etc/postfix/ldap-domains.cf"].content)["query_filter"]


def test_ldap_maps_hold_the_bind_password_so_only_root_and_postfix_read_them(tmp_path):
    files = render(tmp_path, **LDAP)
    for kind in ("users", "groups", "aliases", "domains"):
        f = files[f"/etc/postfix/ldap-{kind}.cf"]
        assert (f.mode, f.owner, f.group) == (0o640, "root", "postfix"), kind
    assert "bind-Secret!" not in files["/etc/postfix/main.cf"].content


def test_main_cf_names_the_ldap_maps_and_the_texthash_tables_are_gone(tmp_path):
    files = render(tmp_path, {"postfix-accounts.cf": f"old@example.test|{H1}\n"}, **LDAP)
    main = main_cf(files)
    assert main["virtual_mailbox_maps"] == "ldap:/etc/postfix/ldap-users.cf"
    assert main["virtual_mailbox_domains"] == "ldap:/etc/postfix/ldap-domains.cf"
    assert main["virtual_alias_maps"] == "ldap:/etc/postfix/ldap-aliases.cf, ldap:/etc/postfix/ldap-groups.cf"
    assert main["mydestination"] == "localhost.$mydomain, localhost"       # docker-mailserver drops $myhostname
    for gone in ("/etc/postfix/vmailbox", "/etc/postfix/virtual", "/etc/postfix/vhost", "/etc/dovecot/userdb",
                 "/etc/postfix/ldap-senders.cf"):
        assert files[gone].content is None, gone


def test_file_provider_removes_the_ldap_files(tmp_path):
    files = render(tmp_path, {"postfix-accounts.cf": f"user@example.test|{H1}\n"})
    for kind in ("users", "groups", "aliases", "domains", "senders"):
        assert files[f"/etc/postfix/ldap-{kind}.cf"].content is None
    assert files["/etc/dovecot/dovecot-ldap.conf.ext"].content is None
    assert main_cf(files)["virtual_mailbox_maps"] == "texthash:/etc/postfix/vmailbox"


def test_spoof_protection_asks_users_aliases_and_groups_or_the_senders_filter(tmp_path):
    main = main_cf(render(tmp_path / "a", SPOOF_PROTECTION="1", **LDAP))
    assert main["smtpd_sender_login_maps"] == ("ldap:/etc/postfix/ldap-users.cf, ldap:/etc/postfix/ldap-aliases.cf, "
                                               "ldap:/etc/postfix/ldap-groups.cf")
    files = render(tmp_path / "b", SPOOF_PROTECTION="1", LDAP_QUERY_FILTER_SENDERS="(|(mail=%s)(mailAlias=%s))",
                   **LDAP)
    assert main_cf(files)["smtpd_sender_login_maps"] == "ldap:/etc/postfix/ldap-senders.cf"
    assert keys(files["/etc/postfix/ldap-senders.cf"].content)["query_filter"] == "(|(mail=%s)(mailAlias=%s))"


def test_config_folder_map_replaces_the_generated_one_with_the_ldap_keys_substituted(tmp_path):
    mine = ("# my users map\nserver_host = ldap://old.example.test\nsearch_base = dc=old\n"
            "query_filter = (uid=%u)\nresult_attribute = uid\nresult_format = %s@example.test\n")
    files = render(tmp_path, {"ldap-users.cf": mine}, LDAP_QUERY_FILTER_USER="(&(mail=%s)(ok=1))", **LDAP)
    users = files["/etc/postfix/ldap-users.cf"].content
    assert users.startswith("# my users map\n")
    got = keys(users)
    assert got["server_host"] == "ldap://ldap.example.test:3389"          # LDAP_SERVER_HOST substituted
    assert got["search_base"] == "ou=people,dc=example,dc=test"
    assert got["query_filter"] == "(&(mail=%s)(ok=1))"                    # LDAP_QUERY_FILTER_USER
    assert got["result_attribute"] == "uid" and got["result_format"] == "%s@example.test"
    assert "bind_pw" not in got                                           # no line: nothing added
    # The other maps are still generated.
    assert keys(files["/etc/postfix/ldap-groups.cf"].content)["result_attribute"] == "mail"


def test_an_unset_ldap_setting_leaves_the_config_folder_line_alone(tmp_path):
    files = render(tmp_path, {"ldap-aliases.cf": "bind_dn = cn=reader\nbind_pw = from-the-file\n"},
                   ACCOUNT_PROVISIONER="LDAP", LDAP_SERVER_HOST="ldap://ldap.example.test")
    got = keys(files["/etc/postfix/ldap-aliases.cf"].content)
    assert got == {"bind_dn": "cn=reader", "bind_pw": "from-the-file"}


def test_replace_keys_only_touches_whole_keys_at_line_start():
    text = "server_host = a\n  server_host = indented\nserver_hostname = b\n#server_host = c\nserver_host=d"
    assert accounts.replace_keys(text, {"server_host": "X"}) == (
        "server_host = X\n  server_host = indented\nserver_hostname = b\n#server_host = c\nserver_host = X")


# --- Dovecot --------------------------------------------------------------------------------------

def test_dovecot_uses_the_ldap_passdb_and_userdb(tmp_path):
    files = render(tmp_path, **LDAP)
    conf = files["/etc/dovecot/dovecot.conf"].content
    assert "driver = ldap\n  args = /etc/dovecot/dovecot-ldap.conf.ext" in conf
    assert "driver = passwd-file\n  args = scheme=SHA512-CRYPT username_format=%u" not in conf
    ext = files["/etc/dovecot/dovecot-ldap.conf.ext"]
    assert ext.mode == 0o600 and ext.group == "root"


def test_dovecot_ldap_falls_back_to_the_ldap_settings_and_dms_defaults(tmp_path):
    got = keys(render(tmp_path, **LDAP)["/etc/dovecot/dovecot-ldap.conf.ext"].content)
    assert got["uris"] == "ldap://ldap.example.test:3389"
    assert got["base"] == "ou=people,dc=example,dc=test"
    assert got["dn"] == "cn=admin,dc=example,dc=test"
    assert got["dnpass"] == "bind-Secret!"
    assert got["tls"] == "no"                       # DOVECOT_TLS, not LDAP_START_TLS (docker-mailserver)
    assert got["auth_bind"] == "no"
    assert got["default_pass_scheme"] == "SSHA"
    assert got["ldap_version"] == "3"
    assert got["pass_filter"] == got["user_filter"] == "(&(objectClass=PostfixBookMailAccount)(uniqueIdentifier=%n))"
    # Not docker-mailserver's uniqueIdentifier=user: the SASL login Postfix sees must be the
    # address the sender maps return, or SPOOF_PROTECTION refuses a user her own address.
    assert got["pass_attrs"] == "mail=user,userPassword=password"
    assert got["user_attrs"] == "mailHomeDirectory=home,mailUidNumber=uid,mailGidNumber=gid,mailStorageDirectory=mail"


def test_dovecot_can_list_the_directory_for_setup_email_list(tmp_path):
    got = keys(render(tmp_path, **LDAP)["/etc/dovecot/dovecot-ldap.conf.ext"].content)
    assert got["iterate_attrs"] == "mail=user"
    assert got["iterate_filter"] == "(objectClass=PostfixBookMailAccount)"


def test_every_postfix_ldap_map_gives_up_on_a_silent_directory(tmp_path):
    """A directory that accepts the connection but never answers (paused, overloaded): each
    lookup fails temporarily after `timeout` seconds (4xx, the mail waits), never hangs smtpd."""
    files = render(tmp_path, LDAP_QUERY_FILTER_SENDERS="(mail=%s)", **LDAP)
    for kind in accounts.LDAP_MAPS:
        assert keys(files[f"/etc/postfix/ldap-{kind}.cf"].content)["timeout"] == "10", kind


def test_dovecot_settings_win_and_pass_filter_follows_user_filter(tmp_path):
    got = keys(render(tmp_path, DOVECOT_URIS="ldaps://other.example.test", DOVECOT_BASE="dc=other",
                      DOVECOT_DN="cn=dovecot", DOVECOT_DNPASS="dove-Secret!", DOVECOT_TLS="yes",
                      DOVECOT_USER_FILTER="(mail=%u)", DOVECOT_USER_ATTRS="=home=/var/mail/%d/%n/home",
                      DOVECOT_PASS_ATTRS="mail=user,userPassword=password", DOVECOT_AUTH_BIND="yes",
                      DOVECOT_DEFAULT_PASS_SCHEME="SHA512-CRYPT", **LDAP)["/etc/dovecot/dovecot-ldap.conf.ext"].content)
    assert got["uris"] == "ldaps://other.example.test"
    assert (got["base"], got["dn"], got["dnpass"], got["tls"]) == ("dc=other", "cn=dovecot", "dove-Secret!", "yes")
    assert got["user_filter"] == got["pass_filter"] == "(mail=%u)"
    assert got["user_attrs"] == "=home=/var/mail/%d/%n/home"
    assert got["pass_attrs"] == "mail=user,userPassword=password"
    assert (got["auth_bind"], got["default_pass_scheme"]) == ("yes", "SHA512-CRYPT")


# --- settings -------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["ldap.example.test", "http://ldap.example.test", "ldap:/x", "ldap://",
                                   "ldap://a.test ldap.b.test"])
def test_a_malformed_ldap_server_host_stops_the_start_naming_it(value):
    with pytest.raises(S.SettingsError) as e:
        load(ACCOUNT_PROVISIONER="LDAP", LDAP_SERVER_HOST=value)
    assert "LDAP_SERVER_HOST" in str(e.value) and "ldap://" in str(e.value)


def test_ldap_needs_a_server_and_a_malformed_dovecot_uri_is_named():
    with pytest.raises(S.SettingsError, match="LDAP_SERVER_HOST"):
        load(ACCOUNT_PROVISIONER="LDAP")
    with pytest.raises(S.SettingsError, match="DOVECOT_URIS"):
        load(ACCOUNT_PROVISIONER="LDAP", LDAP_SERVER_HOST="ldap://a.test", DOVECOT_URIS="a.test")


@pytest.mark.parametrize("value", ["ldap://ldap.example.test", "ldaps://ldap.example.test:636",
                                   "ldapi:///", "ldapi://%2Fvar%2Frun%2Fslapd%2Fldapi",
                                   "ldap://a.test ldap://b.test"])
def test_ldap_uris_are_accepted(value):
    assert load(ACCOUNT_PROVISIONER="LDAP", LDAP_SERVER_HOST=value).LDAP_SERVER_HOST == value


def test_the_readme_example_enable_ldap_with_a_bare_host_means_ldap_uri(caplog):
    with caplog.at_level(logging.WARNING, "mailwright.settings"):
        s = load(**README)
    assert s.ACCOUNT_PROVISIONER == "LDAP"
    assert s.LDAP_SERVER_HOST == "ldap://ldap"
    assert "LDAP_SERVER_HOST" in caplog.text and "admin" not in caplog.text.replace("cn=admin", "")


def test_a_bare_host_is_refused_with_account_provisioner_ldap():
    with pytest.raises(S.SettingsError, match="LDAP_SERVER_HOST"):
        load(ACCOUNT_PROVISIONER="LDAP", LDAP_SERVER_HOST="ldap")


def test_the_bind_password_is_never_in_a_settings_error():
    with pytest.raises(S.SettingsError) as e:
        load(ACCOUNT_PROVISIONER="LDAP", LDAP_SERVER_HOST="nope", LDAP_BIND_PW="hunter2")
    assert "hunter2" not in str(e.value)


def test_quotas_are_off_with_ldap_unless_set():
    assert load(ACCOUNT_PROVISIONER="LDAP", LDAP_SERVER_HOST="ldap://a.test").quotas_enabled is False
    assert load(ACCOUNT_PROVISIONER="LDAP", LDAP_SERVER_HOST="ldap://a.test", ENABLE_QUOTAS="1").quotas_enabled
    assert load().quotas_enabled is True


def test_the_readme_example_renders_its_filters(tmp_path):
    files = render(tmp_path, **README)
    assert keys(files["/etc/postfix/ldap-aliases.cf"].content)["query_filter"] == README["LDAP_QUERY_FILTER_ALIAS"]
    assert keys(files["/etc/postfix/ldap-domains.cf"].content)["query_filter"] == README["LDAP_QUERY_FILTER_DOMAIN"]
    assert keys(files["/etc/postfix/ldap-users.cf"].content)["server_host"] == "ldap://ldap"
    dove = keys(files["/etc/dovecot/dovecot-ldap.conf.ext"].content)
    assert dove["uris"] == "ldap://ldap" and dove["dnpass"] == "admin"
    assert "quota" not in main_cf(files).get("smtpd_recipient_restrictions", "")


# --- a directory that does not answer at start -----------------------------------------------------

def test_an_unreachable_directory_is_reported_by_uri_and_a_listening_one_is_not():
    import socket
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        up = listening.getsockname()[1]
        with socket.socket() as closed:
            closed.bind(("127.0.0.1", 0))
            down = closed.getsockname()[1]          # bound, never listening: connection refused
            s = load(ACCOUNT_PROVISIONER="LDAP", LDAP_SERVER_HOST=f"ldap://127.0.0.1:{up}",
                     DOVECOT_URIS=f"ldap://127.0.0.1:{down}", LDAP_BIND_PW="hunter2")
            problems = accounts.unreachable(s, timeout=2)
    assert len(problems) == 1, problems
    assert f"ldap://127.0.0.1:{down}" in problems[0] and "waits in the queue" in problems[0]
    assert "hunter2" not in problems[0]
    assert accounts.unreachable(load()) == []
