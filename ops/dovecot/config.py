"""Dovecot's files, computed from the settings and the config folder (pure: no pyinfra)."""

from __future__ import annotations

from ops import accounts as accountsmod
from ops.configdir import ConfigDir
from ops.render import ConfigFile, rendered
from ops.settings import Settings
from ops.tls import CIPHERS, Tls

SIEVE_DIR = "/etc/dovecot/sieve"

# docker-mailserver's global spam scripts (its names), for mail SpamAssassin marked (Amavis adds
# `X-Spam-Flag: YES` at SA_TAG2; Rspamd writes `X-Spam: Yes`). They run after the config folder's
# before/after scripts: SPAM_SUBJECT before the user's own script, the others after it.
SPAM_SUBJECT = f"{SIEVE_DIR}/spam_subject.sieve"
SPAM_READ = f"{SIEVE_DIR}/60-spam_mark_as_read.sieve"
SPAM_JUNK = f"{SIEVE_DIR}/70-spam_to_junk.sieve"
IS_SPAM = 'anyof (header :contains "X-Spam-Flag" "YES", header :contains "X-Spam" "Yes")'


def sieve_string(value: str) -> str:
    """`value` inside a Sieve "..." string: \\ and " escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"')


def spam_scripts(s: Settings) -> dict[str, tuple[str, str | None]]:
    """path -> (before | after, script or None when off). Only with a spam filter that marks mail."""
    marks = s.ENABLE_SPAMASSASSIN and s.ENABLE_AMAVIS
    subject = read = junk = None
    if marks and s.SPAM_SUBJECT:
        # docker-mailserver's script; the prefix is a Sieve string (with the variables extension, a
        # "${name}" in SPAM_SUBJECT is expanded, as it is there).
        subject = ('require ["editheader", "variables"];\n'
                   f"if {IS_SPAM} {{\n"
                   '  set "subject" "";\n'
                   '  if header :matches "Subject" "*" { set "subject" "${1}"; }\n'
                   '  deleteheader "Subject";\n'
                   f'  addheader :last "Subject" "{sieve_string(s.SPAM_SUBJECT)}${{subject}}";\n'
                   "}\n")
    if marks and s.MARK_SPAM_AS_READ:
        read = ('require ["imap4flags"];\n'
                f"if {IS_SPAM} {{\n"
                '  setflag "\\\\Seen";\n'
                "}\n")
    if marks and s.MOVE_SPAM_TO_JUNK:
        flags = ' :flags "\\\\Seen"' if s.MARK_SPAM_AS_READ else ""
        # docker-mailserver writes `fileinto :specialuse "\\Junk" "Junk"`; Debian 12's Pigeonhole (0.5.19)
        # lacks the special-use extension. "Junk" is dovecot.conf's \Junk special-use mailbox.
        junk = ('require ["fileinto", "mailbox", "imap4flags"];\n'
                f"if {IS_SPAM} {{\n"
                f'  fileinto :create{flags} "Junk";\n'
                "  stop;\n"
                "}\n")
    return {SPAM_SUBJECT: ("before", subject), SPAM_READ: ("after", read), SPAM_JUNK: ("after", junk)}


def files(s: Settings, cfg: ConfigDir, tls: Tls) -> list[ConfigFile]:
    """Every path whatever the settings: with SMTP_ONLY ops.plan turns them into removals."""
    protocols = [p for p, on in (("imap", s.ENABLE_IMAP), ("pop3", s.ENABLE_POP3)) if on]
    protocols += ["lmtp"] + (["sieve"] if s.ENABLE_MANAGESIEVE else [])
    spam = spam_scripts(s)
    sieve = {which: ([f"{SIEVE_DIR}/{which}.sieve"] if which in cfg.global_sieve else [])
             + [path for path, (when, script) in spam.items() if when == which and script]
             for which in ("before", "after")}
    accounts = accountsmod.for_settings(s, cfg)
    ctx = dict(s=s, cfg=cfg, tls=tls, protocols=protocols, ciphers=CIPHERS[s.TLS_LEVEL],
               sieve_before=sieve["before"], sieve_after=sieve["after"], has_masters=bool(cfg.masters),
               ldap=accounts.kind == "LDAP", editheader=bool(spam[SPAM_SUBJECT][1]))
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
    for path, (_, script) in spam.items():
        # `-c`: the settings of the dovecot.conf just written (editheader); without it sievec asks a running
        # Dovecot's config service, which still serves the previous configuration (a VPS's first deploy).
        out.append(ConfigFile(path, script, after=(f"sievec -c /etc/dovecot/dovecot.conf {path}",) if script else (),
                              reloads=()))
        if not script:
            out.append(ConfigFile(path[:-len(".sieve")] + ".svbin", None, reloads=()))
    for address, script in sorted(cfg.user_sieve.items()):
        if accounts.account(address) is None:
            continue
        local, domain = address.split("@", 1)
        out.append(ConfigFile(f"/var/mail/{domain}/{local}/home/.dovecot.sieve", script,
                              owner="docker", group="docker", reloads=()))
    return out
