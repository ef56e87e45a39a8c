"""Dovecot's files, computed from the settings and the config folder (pure: no pyinfra)."""

from __future__ import annotations

from ops import accounts as accountsmod
from ops.configdir import ConfigDir
from ops.render import ConfigFile, rendered
from ops.settings import Settings
from ops.tls import CIPHERS, Tls

SIEVE_DIR = "/etc/dovecot/sieve"


def files(s: Settings, cfg: ConfigDir, tls: Tls) -> list[ConfigFile]:
    """Every path whatever the settings: with SMTP_ONLY ops.plan turns them into removals."""
    protocols = [p for p, on in (("imap", s.ENABLE_IMAP), ("pop3", s.ENABLE_POP3)) if on]
    protocols += ["lmtp"] + (["sieve"] if s.ENABLE_MANAGESIEVE else [])
    sieve = {which: f"{SIEVE_DIR}/{which}.sieve" if which in cfg.global_sieve else ""
             for which in ("before", "after")}
    accounts = accountsmod.for_settings(s, cfg)
    ctx = dict(s=s, cfg=cfg, tls=tls, protocols=protocols, ciphers=CIPHERS[s.TLS_LEVEL],
               sieve_before=sieve["before"], sieve_after=sieve["after"], has_masters=bool(cfg.masters),
               ldap=accounts.kind == "LDAP")
    out = [
        rendered("/etc/dovecot/dovecot.conf", ctx),
        # The accounts: passwd-file userdb (FILE) or dovecot-ldap.conf.ext (LDAP), ops/accounts.py.
        *accounts.dovecot_files(s, ctx),
        rendered("/etc/dovecot/masterdb", ctx, mode=0o640, group="dovecot", reloads=()) if cfg.masters
        else ConfigFile("/etc/dovecot/masterdb", None, reloads=()),
        ConfigFile("/etc/dovecot/local.conf", cfg.dovecot_cf or None),
    ]
    for which in ("before", "after"):
        path = f"{SIEVE_DIR}/{which}.sieve"
        script = cfg.global_sieve.get(which)
        # Compiled here, as root: Dovecot runs scripts as the vmail user, who cannot write /etc.
        out.append(ConfigFile(path, script, after=(f"sievec {path}",) if script else (), reloads=()))
        if not script:
            out.append(ConfigFile(path[:-len(".sieve")] + ".svbin", None, reloads=()))
    for address, script in sorted(cfg.user_sieve.items()):
        if accounts.account(address) is None:
            continue
        local, domain = address.split("@", 1)
        out.append(ConfigFile(f"/var/mail/{domain}/{local}/home/.dovecot.sieve", script,
                              owner="docker", group="docker", reloads=()))
    return out
