"""Where accounts, aliases, domains and allowed senders come from: one interface, two providers.

- `FileAccounts` (ACCOUNT_PROVISIONER=FILE, the default): the config folder's
  postfix-accounts.cf / postfix-virtual.cf, written into Postfix texthash tables and
  Dovecot's passwd-file (the templates vmailbox, virtual, vhost, sender_login, userdb).
- `LdapAccounts` (ACCOUNT_PROVISIONER=LDAP, or the legacy ENABLE_LDAP=1): Postfix `ldap:`
  maps (ldap-users/-aliases/-groups/-domains/-senders.cf) and Dovecot's `ldap` passdb and
  userdb (dovecot-ldap.conf.ext). Nothing is copied out of the directory: every lookup asks
  it, so an entry added there receives mail and logs in at once; when it does not answer,
  Postfix and Dovecot fail the lookup temporarily (4xx) and the mail waits in the queue.

`for_settings(s, cfg)` picks the provider. Postfix and Dovecot ask it for their main.cf
parameters, their auth blocks and the files that hold the maps. Pure: no pyinfra.

docker-mailserver's `_replace_by_env_in_file`: in the ldap-*.cf files (generated, or the
config folder's replacements) a line `key = ...` becomes `key = <value>` for each set
`LDAP_<KEY>` setting (key lower-cased), and `query_filter` takes the file's
LDAP_QUERY_FILTER_<KIND>; in dovecot-ldap.conf.ext the same for `DOVECOT_<KEY>`. Unlike
docker-mailserver, an empty setting leaves the line alone (it does not blank bind_dn).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ops.configdir import Account, ConfigDir
from ops.render import ConfigFile, template
from ops.settings import Settings

# The Postfix maps: kind -> (config-folder file, its query filter setting).
LDAP_MAPS = {
    "users": "LDAP_QUERY_FILTER_USER",
    "groups": "LDAP_QUERY_FILTER_GROUP",
    "aliases": "LDAP_QUERY_FILTER_ALIAS",
    "domains": "LDAP_QUERY_FILTER_DOMAIN",
    "senders": "LDAP_QUERY_FILTER_SENDERS",
}
# The LDAP_* settings substituted into every Postfix map (docker-mailserver's generic rule).
LDAP_KEYS = ("LDAP_SERVER_HOST", "LDAP_SEARCH_BASE", "LDAP_BIND_DN", "LDAP_BIND_PW", "LDAP_START_TLS")
DOVECOT_LDAP = "/etc/dovecot/dovecot-ldap.conf.ext"
# Files that hold the bind password: Postfix's processes (user postfix) read the maps.
MAP_MODE, MAP_GROUP = 0o640, "postfix"


def replace_keys(text: str, values: dict[str, str]) -> str:
    """docker-mailserver's `_replace_by_env_in_file`: `key = value` for each given key whose
    line exists (`^key\\s*=`); other lines, and keys without a line, are left as they are."""
    out = []
    for line in text.splitlines(keepends=True):
        m = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)\s*=", line)
        if m and m.group(1) in values:
            end = "\n" if line.endswith("\n") else ""
            line = f"{m.group(1)} = {values[m.group(1)]}{end}"
        out.append(line)
    return "".join(out)


def postfix_values(s: Settings, kind: str) -> dict[str, str]:
    """The substitutions for one Postfix map: the set LDAP_* settings, and its query filter."""
    values = {name[len("LDAP_"):].lower(): getattr(s, name) for name in LDAP_KEYS if getattr(s, name)}
    query_filter = getattr(s, LDAP_MAPS[kind])
    if query_filter:
        values["query_filter"] = query_filter
    return values


def dovecot_values(s: Settings) -> dict[str, str]:
    """dovecot-ldap.conf.ext's keys, with docker-mailserver's fallbacks to the LDAP_* values
    (DOVECOT_PASS_FILTER falls back to DOVECOT_USER_FILTER)."""
    values = {
        "uris": s.DOVECOT_URIS or s.LDAP_SERVER_HOST,
        "base": s.DOVECOT_BASE or s.LDAP_SEARCH_BASE,
        "dn": s.DOVECOT_DN or s.LDAP_BIND_DN,
        "dnpass": s.DOVECOT_DNPASS or s.LDAP_BIND_PW,
        "tls": s.DOVECOT_TLS,
        "user_filter": s.DOVECOT_USER_FILTER,
        "pass_filter": s.DOVECOT_PASS_FILTER or s.DOVECOT_USER_FILTER,
        "user_attrs": s.DOVECOT_USER_ATTRS,
        "pass_attrs": s.DOVECOT_PASS_ATTRS,
        "auth_bind": s.DOVECOT_AUTH_BIND,
        "ldap_version": str(s.DOVECOT_LDAP_VERSION),
        "default_pass_scheme": s.DOVECOT_DEFAULT_PASS_SCHEME,
    }
    return {k: v for k, v in values.items() if v}


@dataclass(frozen=True)
class PostfixMaps:
    """The main.cf parameters that name the account maps."""
    virtual_mailbox_domains: str
    virtual_mailbox_maps: str
    virtual_alias_maps: str
    sender_login_maps: str


class FileAccounts:
    """Accounts from the config folder (postfix-accounts.cf, postfix-virtual.cf)."""
    kind = "FILE"

    def __init__(self, cfg: ConfigDir):
        self.cfg = cfg

    @property
    def accounts(self) -> list[Account]:
        return self.cfg.accounts

    @property
    def aliases(self) -> list[tuple[str, list[str]]]:
        return self.cfg.aliases

    @property
    def domains(self) -> list[str]:
        return self.cfg.domains

    def account(self, address: str) -> Account | None:
        return self.cfg.account(address)

    def hostname_is_virtual(self, s: Settings) -> bool:
        return s.fqdn.lower() in self.domains

    def postfix_maps(self, s: Settings, has_regexp: bool) -> PostfixMaps:
        return PostfixMaps(
            virtual_mailbox_domains="/etc/postfix/vhost",
            virtual_mailbox_maps="texthash:/etc/postfix/vmailbox",
            virtual_alias_maps="texthash:/etc/postfix/virtual" + (", pcre:/etc/postfix/regexp" if has_regexp else ""),
            sender_login_maps="texthash:/etc/postfix/sender_login",
        )

    def postfix_files(self, s: Settings, ctx: dict) -> list[ConfigFile]:
        return [template_file("/etc/postfix/vhost", ctx),
                template_file("/etc/postfix/vmailbox", ctx),
                template_file("/etc/postfix/virtual", ctx),
                template_file("/etc/postfix/sender_login", ctx) if s.SPOOF_PROTECTION
                else ConfigFile("/etc/postfix/sender_login", None)] + [ConfigFile(p, None) for p in ldap_paths()]

    def dovecot_files(self, s: Settings, ctx: dict) -> list[ConfigFile]:
        # Dovecot re-reads a changed passwd-file by itself: no reload for account changes.
        return [template_file("/etc/dovecot/userdb", ctx, mode=0o640, group="dovecot", reloads=()),
                ConfigFile(DOVECOT_LDAP, None)]


class LdapAccounts:
    """Accounts in an LDAP directory: every lookup asks it (no copy, no cache)."""
    kind = "LDAP"
    accounts: list[Account] = []
    aliases: list[tuple[str, list[str]]] = []
    domains: list[str] = []

    def __init__(self, cfg: ConfigDir):
        self.cfg = cfg

    def account(self, address: str) -> Account | None:
        return None

    def hostname_is_virtual(self, s: Settings) -> bool:
        # docker-mailserver removes $myhostname from mydestination: the FQDN may be a directory domain.
        return True

    def postfix_maps(self, s: Settings, has_regexp: bool) -> PostfixMaps:
        senders = ("ldap:/etc/postfix/ldap-senders.cf" if s.LDAP_QUERY_FILTER_SENDERS else
                   "ldap:/etc/postfix/ldap-users.cf, ldap:/etc/postfix/ldap-aliases.cf, "
                   "ldap:/etc/postfix/ldap-groups.cf")
        return PostfixMaps(
            virtual_mailbox_domains="ldap:/etc/postfix/ldap-domains.cf",
            virtual_mailbox_maps="ldap:/etc/postfix/ldap-users.cf",
            virtual_alias_maps="ldap:/etc/postfix/ldap-aliases.cf, ldap:/etc/postfix/ldap-groups.cf"
            + (", pcre:/etc/postfix/regexp" if has_regexp else ""),
            sender_login_maps=senders,
        )

    def map_text(self, s: Settings, kind: str) -> str:
        """One Postfix map: the config folder's ldap-<kind>.cf, else the generated default,
        with the LDAP_* substitutions applied."""
        given = self.cfg.ldap_maps.get(kind)
        text = given if given is not None else template(f"/etc/postfix/ldap-{kind}.cf")
        return replace_keys(text, postfix_values(s, kind))

    def postfix_files(self, s: Settings, ctx: dict) -> list[ConfigFile]:
        out = [ConfigFile(p, None) for p in ("/etc/postfix/vhost", "/etc/postfix/vmailbox", "/etc/postfix/virtual",
                                             "/etc/postfix/sender_login")]
        for kind in LDAP_MAPS:
            wanted = kind != "senders" or bool(s.LDAP_QUERY_FILTER_SENDERS)
            out.append(ConfigFile(f"/etc/postfix/ldap-{kind}.cf", self.map_text(s, kind) if wanted else None,
                                  mode=MAP_MODE, group=MAP_GROUP))
        return out

    def dovecot_files(self, s: Settings, ctx: dict) -> list[ConfigFile]:
        text = replace_keys(template(DOVECOT_LDAP), dovecot_values(s))
        return [ConfigFile("/etc/dovecot/userdb", None, reloads=()),
                ConfigFile(DOVECOT_LDAP, text, mode=0o600)]


def template_file(target: str, ctx: dict, **attrs) -> ConfigFile:
    return ConfigFile(target, template(target, **ctx), **attrs)


def for_settings(s: Settings, cfg: ConfigDir) -> FileAccounts | LdapAccounts:
    """The provider ACCOUNT_PROVISIONER names (ENABLE_LDAP=1 already became LDAP in ops.settings)."""
    return LdapAccounts(cfg) if s.ACCOUNT_PROVISIONER == "LDAP" else FileAccounts(cfg)


def ldap_paths() -> list[str]:
    """Every file the LDAP provider may write (removed again under FILE)."""
    return [f"/etc/postfix/ldap-{kind}.cf" for kind in LDAP_MAPS]


def unreachable(s: Settings, timeout: float = 3.0) -> list[str]:
    """At start: one line per directory URI that does not accept a connection (nothing when all
    do, or without LDAP). Postfix and Dovecot start anyway and ask again at every lookup; this
    only says clearly why mail to the directory's accounts waits and their logins fail."""
    import socket
    from pathlib import Path
    from urllib.parse import unquote, urlsplit

    if s.ACCOUNT_PROVISIONER != "LDAP":
        return []
    uris = dict.fromkeys((s.LDAP_SERVER_HOST + " " + (s.DOVECOT_URIS or "")).replace(",", " ").split())
    problems = []
    for uri in uris:
        scheme, _, rest = uri.partition("://")
        try:
            if scheme == "ldapi":
                path = unquote(rest.split("/", 1)[0]) or "/var/run/slapd/ldapi"
                if not Path(path).exists():
                    raise OSError(f"no socket {path}")
                continue
            parts = urlsplit(uri)
            port = parts.port or (636 if scheme == "ldaps" else 389)
            with socket.create_connection((parts.hostname or "localhost", port), timeout=timeout):
                pass
        except (OSError, ValueError) as e:
            problems.append(f"the LDAP directory {uri} does not answer ({getattr(e, 'strerror', None) or e}): "
                            "mail to its accounts waits in the queue (4xx) and their logins fail until it does")
    return problems
