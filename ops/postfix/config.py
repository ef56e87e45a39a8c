"""Postfix's files, computed from the settings and the config folder (pure: no pyinfra)."""

from __future__ import annotations

from ops.configdir import ConfigDir
from ops.render import ConfigFile, rendered, template
from ops.settings import Settings
from ops.tls import CIPHERS, Tls


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


def sender_owners(cfg: ConfigDir) -> list[tuple[str, list[str]]]:
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
        rows += [(f"@{d}", legacy_relay(s)) for d in cfg.domains if f"@{d}" not in listed]
    return rows


def legacy_relay(s: Settings) -> str:
    return f"[{s.RELAY_HOST}]:{s.RELAY_PORT}"


def relay_auth(s: Settings, cfg: ConfigDir) -> list[tuple[str, str]]:
    """smtp_sasl_password_maps rows: postfix-sasl-password.cf, then RELAY_USER/RELAY_PASSWORD
    for DEFAULT_RELAY_HOST (else `[RELAY_HOST]:RELAY_PORT`) unless the file has that key."""
    rows = list(cfg.relay_auth)
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
    hops = [s.DEFAULT_RELAY_HOST] + [h for _, h in hosts] + [k for k, _ in auth if not k.startswith("@")]
    keys: list[str] = []
    for hop in hops:
        for key in (hop, hop[:-3] if hop.startswith("[") and hop.endswith("]:25") else ""):
            if key and key.lower() not in keys:
                keys.append(key.lower())
    return [(key, "encrypt") for key in keys]


def files(s: Settings, cfg: ConfigDir, tls: Tls, mynetworks: list[str]) -> list[ConfigFile]:
    overrides: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for key, value in cfg.postfix_master:
        service, type_, param = key.split("/")
        overrides.setdefault((service, type_), []).append((param, value))
    alias_keys = {alias for alias, _ in cfg.aliases}
    hosts, auth = relay_hosts(s, cfg), relay_auth(s, cfg)
    policy = tls_policy(s, hosts, auth)
    ctx = dict(
        s=s, cfg=cfg, tls=tls, mynetworks=mynetworks, ciphers=CIPHERS[s.TLS_LEVEL],
        relay_auth=auth, tls_policy=policy, system_ca=SYSTEM_CA_FILE, system_names=SYSTEM_NAMES,
        hostname_is_virtual=s.fqdn.lower() in cfg.domains,
        has_regexp=bool(cfg.regexp), overrides=overrides, alias_keys=alias_keys,
        catchall_domains={a[1:] for a in alias_keys if a.startswith("@")},
        sender_owners=sender_owners(cfg), relay_hosts=hosts,
        send_access="check_sender_access texthash:/etc/postfix/send_access, " if cfg.send_access else "",
        receive_access="check_recipient_access texthash:/etc/postfix/receive_access, " if cfg.receive_access else "",
    )
    reload = dict(reloads=("postfix",))
    main = merge_main(template("/etc/postfix/main.cf", **ctx), cfg.postfix_main)
    return [
        ConfigFile("/etc/postfix/main.cf", main, **reload),
        rendered("/etc/postfix/master.cf", ctx, **reload),
        rendered("/etc/postfix/vhost", ctx, **reload),
        rendered("/etc/postfix/vmailbox", ctx, **reload),
        rendered("/etc/postfix/virtual", ctx, **reload),
        rendered("/etc/postfix/aliases", ctx, **reload),
        rendered("/etc/postfix/regexp", ctx, **reload) if cfg.regexp else ConfigFile("/etc/postfix/regexp", None),
        rendered("/etc/postfix/sender_login", ctx, **reload) if s.SPOOF_PROTECTION
        else ConfigFile("/etc/postfix/sender_login", None),
        table("/etc/postfix/send_access", cfg.send_access),
        table("/etc/postfix/receive_access", cfg.receive_access),
        table("/etc/postfix/relayhost_map", hosts),
        table("/etc/postfix/sasl_passwd", auth, mode=0o600),
        table("/etc/postfix/tls_policy", policy),
    ]


def table(path: str, rows: list[tuple[str, str]], mode: int = 0o644) -> ConfigFile:
    """A texthash table straight from config-folder rows (absent when there are none)."""
    content = "".join(f"{key} {value}\n" for key, value in rows) if rows else None
    return ConfigFile(path, content, mode=mode, reloads=("postfix",))
