"""Postfix's files, computed from the settings and the config folder (pure: no pyinfra)."""

from __future__ import annotations

from ops.configdir import ConfigDir
from ops.render import ConfigFile, rendered, template
from ops.settings import Settings
from ops.tls import Tls

MODERN = ("ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
          "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
          "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384")
INTERMEDIATE = ("ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES128-GCM-SHA256:"
                "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-SHA256:"
                "ECDHE-RSA-AES128-SHA256:ECDHE-RSA-AES256-SHA384:ECDHE-ECDSA-AES256-SHA384:"
                "DHE-RSA-AES128-SHA256:DHE-RSA-AES256-SHA256")
CIPHERS = {"modern": MODERN, "intermediate": INTERMEDIATE}


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


def files(s: Settings, cfg: ConfigDir, tls: Tls, mynetworks: list[str]) -> list[ConfigFile]:
    overrides: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for key, value in cfg.postfix_master:
        service, type_, param = key.split("/")
        overrides.setdefault((service, type_), []).append((param, value))
    alias_keys = {alias for alias, _ in cfg.aliases}
    relay_hosts = [(domain, host) for domain, host in cfg.relaymap if host]   # bare "@dom" only opts out
    ctx = dict(
        s=s, cfg=cfg, tls=tls, mynetworks=mynetworks, ciphers=CIPHERS[s.TLS_LEVEL],
        has_regexp=bool(cfg.regexp), overrides=overrides, alias_keys=alias_keys,
        catchall_domains={a[1:] for a in alias_keys if a.startswith("@")},
        sender_owners=sender_owners(cfg), relay_hosts=relay_hosts,
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
        table("/etc/postfix/relayhost_map", relay_hosts),
        table("/etc/postfix/sasl_passwd", cfg.relay_auth, mode=0o600),
    ]


def table(path: str, rows: list[tuple[str, str]], mode: int = 0o644) -> ConfigFile:
    """A texthash table straight from config-folder rows (absent when there are none)."""
    content = "".join(f"{key} {value}\n" for key, value in rows) if rows else None
    return ConfigFile(path, content, mode=mode, reloads=("postfix",))
