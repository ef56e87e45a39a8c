"""saslauthd's files and its Postfix hook, from the settings (pure: no pyinfra).

docker-mailserver's ENABLE_SASLAUTHD: SASLAUTHD_MECHANISMS `ldap` (its default) or `rimap`;
SASLAUTHD_MECH_OPTIONS (rimap: the IMAP server, e.g. 127.0.0.1); the ldap mechanism reads
/etc/saslauthd.conf, made from SASLAUTHD_LDAP_* (each defaulting to its LDAP_* counterpart).
Postfix's smtpd then asks saslauthd through Cyrus SASL (`smtpd_sasl_type = cyrus`,
/etc/postfix/sasl/smtpd.conf: `pwcheck_method: saslauthd`, `mech_list: plain login`) instead of
Dovecot's auth socket; with SMTP_ONLY=1 that is what gives 465/587 their AUTH.
"""

from __future__ import annotations


from ops.daemon import PostfixHooks
from ops.render import ConfigFile, foreground_unit, rendered
from ops.settings import Settings, saslauthd_ldap_servers

from ops.saslauthd.daemon import CONF, FOREGROUND, OPTIONS, RUN_DIR, SMTPD_CONF, UNIT_FILE  # noqa: F401

DEFAULT_FILTER = "(&(uniqueIdentifier=%u)(mailEnabled=TRUE))"


def mechanism(s: Settings) -> str:
    return s.SASLAUTHD_MECHANISMS or "ldap"


def ldap_server(s: Settings) -> str:
    """docker-mailserver: a bare host gets `ldap://` (the same rule validates it: ops.settings)."""
    return saslauthd_ldap_servers(s)[1]


def ldap_conf(s: Settings) -> list[tuple[str, str]]:
    """/etc/saslauthd.conf's (key, value) lines, in docker-mailserver's order; the optional keys only when set."""
    lines = [
        ("ldap_servers", ldap_server(s)),
        ("ldap_auth_method", s.SASLAUTHD_LDAP_AUTH_METHOD),
        ("ldap_bind_dn", s.SASLAUTHD_LDAP_BIND_DN or s.LDAP_BIND_DN),
        ("ldap_bind_pw", s.SASLAUTHD_LDAP_PASSWORD or s.LDAP_BIND_PW),
        ("ldap_search_base", s.SASLAUTHD_LDAP_SEARCH_BASE or s.LDAP_SEARCH_BASE),
        ("ldap_filter", s.SASLAUTHD_LDAP_FILTER or DEFAULT_FILTER),
        ("ldap_start_tls", s.SASLAUTHD_LDAP_START_TLS),
        ("ldap_tls_check_peer", s.SASLAUTHD_LDAP_TLS_CHECK_PEER),
    ]
    for key, value in (("ldap_tls_cacert_file", s.SASLAUTHD_LDAP_TLS_CACERT_FILE),
                       ("ldap_tls_cacert_dir", s.SASLAUTHD_LDAP_TLS_CACERT_DIR),
                       ("ldap_password_attr", s.SASLAUTHD_LDAP_PASSWORD_ATTR),
                       ("ldap_mech", s.SASLAUTHD_LDAP_MECH)):
        if value:
            lines.append((key, value))
    return lines + [("ldap_referrals", "yes"), ("log_level", "10")]


def mech_options(s: Settings) -> str:
    if mechanism(s) == "ldap":
        return s.SASLAUTHD_MECH_OPTIONS or CONF
    return s.SASLAUTHD_MECH_OPTIONS or "127.0.0.1"


def double_quoted(value: str) -> str:
    from ops.postgrey.config import double_quoted as quote
    return quote(value)


def files(s: Settings, _cfg=None, _tls=None) -> list[ConfigFile]:
    unit = foreground_unit(s, UNIT_FILE, FOREGROUND, s.ENABLE_SASLAUTHD)
    if not s.ENABLE_SASLAUTHD:
        return [ConfigFile(OPTIONS, None), ConfigFile(CONF, None), ConfigFile(SMTPD_CONF, None), unit]
    ldap = mechanism(s) == "ldap"
    return [
        rendered(OPTIONS, dict(mechanism=mechanism(s), options=double_quoted(mech_options(s)))),
        rendered(CONF, dict(lines=ldap_conf(s)), mode=0o600) if ldap else ConfigFile(CONF, None),
        # Postfix's smtpd reads it at each connection: nothing to reload.
        rendered(SMTPD_CONF, dict(socket_dir=RUN_DIR), reloads=()),
        unit,
    ]


def postfix(s: Settings, _cfg=None) -> PostfixHooks:
    if not s.ENABLE_SASLAUTHD:
        return PostfixHooks()
    return PostfixHooks(main=(("smtpd_sasl_type", "cyrus"), ("smtpd_sasl_path", "smtpd")))
