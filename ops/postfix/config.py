"""Postfix's files, computed from the settings and the config folder (pure: no pyinfra)."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from ops import accounts as accountsmod, daemons
from ops.accounts import FileAccounts, LdapAccounts
from ops.configdir import ConfigDir
from ops.render import ConfigFile, rendered, template
from ops.settings import Settings
from ops.tls import CIPHERS, Tls

log = logging.getLogger("mailwright.config")


def merge_main(text: str, overrides: list[tuple[str, str]]) -> str:
    """Apply postfix-main.cf: a parameter already set is replaced in place, a new one appended.

    docker-mailserver appends and lets `postconf -n` keep the last value; replacing in
    place gives the same result without duplicate lines, so re-applying is a no-op.
    """
    if not overrides:
        return text
    wanted = dict(overrides)
    out, seen, skipping = [], set(), False
    for line in text.splitlines():
        name = line.split("=", 1)[0].strip() if "=" in line and not line[:1].isspace() and not line.startswith("#") else None
        if skipping and line[:1].isspace() and line.strip():
            continue                      # continuation of a replaced parameter
        skipping = False
        if name in wanted:
            out.append(f"{name} = {wanted[name]}")
            seen.add(name)
            skipping = True
            continue
        out.append(line)
    added = [f"{k} = {v}" for k, v in wanted.items() if k not in seen]
    if added:
        out += ["", "# From postfix-main.cf in the config folder."] + added
    return "\n".join(out) + "\n"


def sender_owners(cfg: ConfigDir | FileAccounts | LdapAccounts) -> list[tuple[str, list[str]]]:
    accounts = {a.address for a in cfg.accounts}
    owners = {a: [a] for a in sorted(accounts)}
    for alias, targets in cfg.aliases:
        if "@" in alias and not alias.startswith("@"):
            mine = [t for t in targets if t in accounts]
            if mine:
                owners.setdefault(alias, [])
                owners[alias] = sorted(set(owners[alias]) | set(mine))
    return sorted(owners.items())


# Local names (of $myhostname and localhost) whose mail is the postmaster's: cron output to root,
# RFC 5321's postmaster, replies to bounces (MAILER-DAEMON), RFC 2142's abuse.
SYSTEM_NAMES = ("root", "postmaster", "mailer-daemon", "abuse")
# Verification of a relay's certificate, when a user raises the level to `secure`/`verify`.
SYSTEM_CA_FILE = "/etc/ssl/certs/ca-certificates.crt"


def relay_hosts(s: Settings, cfg: ConfigDir) -> list[tuple[str, str]]:
    """sender_dependent_relayhost_maps rows: postfix-relaymap.cf, then the legacy RELAY_HOST for
    every other virtual domain (a bare `@domain` line in postfix-relaymap.cf opts a domain out)."""
    rows = [(domain, host) for domain, host in cfg.relaymap if host]
    if s.RELAY_HOST:
        listed = {domain for domain, _ in cfg.relaymap}
        domains = accountsmod.for_settings(s, cfg).domains
        rows += [(f"@{d}", legacy_relay(s)) for d in domains if f"@{d}" not in listed]
    return rows


def legacy_relay(s: Settings) -> str:
    return f"[{s.RELAY_HOST}]:{s.RELAY_PORT}"


def relay_auth(s: Settings, cfg: ConfigDir) -> list[tuple[str, str]]:
    """smtp_sasl_password_maps rows: postfix-sasl-password.cf, then RELAY_USER/RELAY_PASSWORD
    for DEFAULT_RELAY_HOST (else `[RELAY_HOST]:RELAY_PORT`) unless the file has that key.

    A sender (`user@domain`) or `@domain` key is kept only when that sender's mail goes through
    a relay (DEFAULT_RELAY_HOST, or its domain in the relay map): Postfix's sender-dependent
    authentication looks it up whatever the next hop, so it would otherwise offer the password
    to any recipient's MX that advertises AUTH, over opportunistic, unverified TLS (the TLS
    policy's `encrypt` covers relay next hops only). docker-mailserver copies such lines as they
    are; here they are left out with an error naming the key.
    """
    relayed = {domain for domain, _ in relay_hosts(s, cfg)}
    rows = []
    for key, value in cfg.relay_auth:
        if "@" in key and not s.DEFAULT_RELAY_HOST and "@" + key.split("@", 1)[1] not in relayed:
            log.error("postfix-sasl-password.cf: %s: no relay host for this sender (postfix-relaymap.cf, "
                      "DEFAULT_RELAY_HOST or RELAY_HOST): its credentials are not used, as they would go to "
                      "the recipients' MX hosts (line skipped)", key)
            continue
        rows.append((key, value))
    if s.RELAY_USER:
        key = s.DEFAULT_RELAY_HOST or legacy_relay(s)
        if key.lower() not in {k for k, _ in rows}:
            rows.append((key, f"{s.RELAY_USER}:{s.RELAY_PASSWORD}"))
    return rows


def tls_policy(s: Settings, hosts: list[tuple[str, str]], auth: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """smtp_tls_policy_maps rows: `encrypt` for every relay next hop once any relay credentials exist.

    Postfix looks the policy up by the next hop exactly as written (brackets and port
    included), so each is listed as written, and `[h]:25` also as `[h]`. Ordinary MX delivery
    keeps smtp_tls_security_level (opportunistic): docker-mailserver's global `encrypt`
    would defer all mail to the many MX hosts without STARTTLS. `encrypt` and not `secure`,
    as docker-mailserver: relays are often reached by IP or carry a private CA's certificate.
    """
    if not auth:
        return []
    hops = [s.DEFAULT_RELAY_HOST] + [h for _, h in hosts] + [k for k, _ in auth if "@" not in k]   # not senders
    keys: list[str] = []
    for hop in hops:
        for key in (hop, hop[:-3] if hop.startswith("[") and hop.endswith("]:25") else ""):
            if key and key.lower() not in keys:
                keys.append(key.lower())
    return [(key, "encrypt") for key in keys]


@dataclass(frozen=True)
class Hub:
    """Every enabled daemon's `PostfixHooks`, assembled in one order.

    Restrictions and milters: by their `order` number, then daemon name (e.g. OpenDKIM at 10
    before OpenDMARC at 20; policy services such as Postgrey at 50 before Dovecot's
    quota-status at 90). `recipient_restrictions` come after `reject_non_fqdn_recipient` in
    port 25's `smtpd_recipient_restrictions` (so after `reject_unauth_destination`);
    `mua_recipient_restrictions` before `permit_sasl_authenticated` on 465/587. Milters,
    `content_filter` and the daemons' `main` parameters go in one block at the end of main.cf
    (before postfix-main.cf, which still wins); `master_services` at the end of master.cf in
    daemon start order.
    """
    recipient_restrictions: tuple[str, ...] = ()
    mua_recipient_restrictions: tuple[str, ...] = ()
    main: tuple[tuple[str, str], ...] = ()
    master_services: tuple[str, ...] = ()
    aliases: tuple[tuple[str, str], ...] = ()


def translated(overrides: list[tuple[str, str]], aliases) -> list[tuple[str, str]]:
    """postfix-main.cf's values with each daemon's docker-mailserver address (a whole word of a
    comma/space-separated list) replaced by the address it has here (`PostfixHooks.aliases`)."""
    table = dict(aliases)
    if not table:
        return overrides
    word = re.compile(r"[^\s,]+")
    return [(k, word.sub(lambda m: table.get(m.group(0), m.group(0)), v)) for k, v in overrides]


def hub(s: Settings, cfg: ConfigDir) -> Hub:
    given = [(d.name, d.postfix(s, cfg)) for d in daemons.enabled(s)]

    def ordered(attr: str) -> tuple[str, ...]:
        entries = [(order, name, text) for name, hooks in given for order, text in getattr(hooks, attr)]
        return tuple(text for _, _, text in sorted(entries, key=lambda e: (e[0], e[1])))

    main: dict[str, tuple[str, str]] = {}          # parameter -> (daemon, value)

    def put(daemon: str, param: str, value: str) -> None:
        if param in main:
            raise ValueError(f"main.cf parameter {param} is set by both {main[param][0]} and {daemon}")
        main[param] = (daemon, value)

    for param in ("smtpd_milters", "non_smtpd_milters"):
        milters = ordered(param)
        if milters:
            put("the milters", param, ", ".join(milters))
    for name, hooks in given:
        if hooks.content_filter:
            put(name, "content_filter", hooks.content_filter)
        for param, value in hooks.main:
            put(name, param, value)
    return Hub(
        recipient_restrictions=ordered("recipient_restrictions"),
        mua_recipient_restrictions=ordered("mua_recipient_restrictions"),
        main=tuple((param, value) for param, (_, value) in main.items()),
        master_services=tuple(service for _, hooks in given for service in hooks.master_services),
        aliases=tuple(pair for _, hooks in given for pair in hooks.aliases),
    )


def with_daemons(text: str, hub: Hub) -> str:
    """main.cf plus the daemons' parameters (nothing added when none)."""
    if not hub.main:
        return text
    # A parameter the template sets already (e.g. saslauthd's smtpd_sasl_type) is replaced in
    # place: a second line would make every Postfix command warn "overriding earlier entry".
    present = {line.split("=", 1)[0].strip() for line in text.splitlines()
               if "=" in line and not line[:1].isspace() and not line.startswith("#")}
    text = merge_main(text, [(k, v) for k, v in hub.main if k in present])
    added = [(k, v) for k, v in hub.main if k not in present]
    if not added:
        return text
    return text + "\n# From mailwright's daemons (PostfixHooks).\n" + "".join(f"{k} = {v}\n" for k, v in added)


def files(s: Settings, cfg: ConfigDir, tls: Tls, mynetworks: list[str]) -> list[ConfigFile]:
    overrides: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for key, value in cfg.postfix_master:
        service, type_, param = key.split("/")
        overrides.setdefault((service, type_), []).append((param, value))
    accounts = accountsmod.for_settings(s, cfg)
    alias_keys = {alias for alias, _ in accounts.aliases}
    hosts, auth = relay_hosts(s, cfg), relay_auth(s, cfg)
    policy = tls_policy(s, hosts, auth)
    daemons_hub = hub(s, cfg)
    ctx = dict(
        hub=daemons_hub, s=s, cfg=cfg, tls=tls, mynetworks=mynetworks, ciphers=CIPHERS[s.TLS_LEVEL],
        relay_auth=auth, tls_policy=policy, system_ca=SYSTEM_CA_FILE, system_names=SYSTEM_NAMES,
        accounts=accounts, maps=accounts.postfix_maps(s, bool(cfg.regexp)),
        hostname_is_virtual=accounts.hostname_is_virtual(s),
        has_regexp=bool(cfg.regexp), overrides=overrides, alias_keys=alias_keys,
        catchall_domains={a[1:] for a in alias_keys if a.startswith("@")},
        sender_owners=sender_owners(accounts), relay_hosts=hosts,
        send_access="check_sender_access texthash:/etc/postfix/send_access, " if cfg.send_access else "",
        receive_access="check_recipient_access texthash:/etc/postfix/receive_access, " if cfg.receive_access else "",
    )
    main = merge_main(with_daemons(template("/etc/postfix/main.cf", **ctx), daemons_hub),
                      translated(cfg.postfix_main, daemons_hub.aliases))
    return [
        ConfigFile("/etc/postfix/main.cf", main),
        rendered("/etc/postfix/master.cf", ctx),
        # The account maps: texthash tables (FILE) or ldap: maps (LDAP), ops/accounts.py.
        *accounts.postfix_files(s, ctx),
        rendered("/etc/postfix/aliases", ctx),
        rendered("/etc/postfix/regexp", ctx) if cfg.regexp else ConfigFile("/etc/postfix/regexp", None),
        table("/etc/postfix/send_access", cfg.send_access),
        table("/etc/postfix/receive_access", cfg.receive_access),
        table("/etc/postfix/relayhost_map", hosts),
        table("/etc/postfix/sasl_passwd", auth, mode=0o600),
        table("/etc/postfix/tls_policy", policy),
    ]


def table(path: str, rows: list[tuple[str, str]], mode: int = 0o644) -> ConfigFile:
    """A texthash table straight from config-folder rows (absent when there are none)."""
    content = "".join(f"{key} {value}\n" for key, value in rows) if rows else None
    return ConfigFile(path, content, mode=mode)
