"""Amavis's and SpamAssassin's files, computed from the settings and the config folder (pure: no pyinfra).

- `/etc/amavis/conf.d/45-mailwright`: mailwright's settings for Amavis (sorts after Debian's
  files, before ClamAV's `55-mailwright-clamav` and the operator's `50-user`, which wins).
- `/etc/amavis/conf.d/50-user`: the config folder's `amavis.cf` (docker-mailserver: it replaces
  Debian's `50-user`), or Debian's empty one.
- `/etc/amavis/mailwright-local-domains`: the virtual domains (accounts and aliases, Postfix's
  vhost), read by `@local_domains_maps`; a change reloads Amavis, so it follows the accounts live.
- `/etc/spamassassin/v310.pre`: Debian's file without the Pyzor, Razor2 and SpamCop plugins (their
  programs are absent, Amavis never reports spam: memory for nothing). With SpamAssassin off it is
  left as it is (nothing reads it then; removing it would delete Debian's file).
- `/etc/spamassassin/mailwright.pre`: loads the Shortcircuit plugin (Debian's v320.pre does not)
  when a `SA_SHORTCIRCUIT_BAYES_*` setting is on; otherwise absent.
- `/etc/spamassassin/local.cf` (the `SA_SHORTCIRCUIT_BAYES_*` rules) and
  `/etc/spamassassin/spamassassin-rules.cf` (the config folder's file, as docker-mailserver copies it).
"""

from __future__ import annotations

import re

from ops.amavis.daemon import HOME, PIDFILE, PORT, READS, REINJECT  # noqa: F401  (one place each)
from ops.configdir import ConfigDir, Problem, SymlinkRefused, read_file
from ops.daemon import PostfixHooks
from ops.render import ConfigFile, rendered
from ops.settings import Settings

import logging

log = logging.getLogger("mailwright.config")

AMAVIS_CF, SA_RULES_CF = READS
CONF = "/etc/amavis/conf.d/45-mailwright"
USER = "/etc/amavis/conf.d/50-user"
DOMAINS = "/etc/amavis/mailwright-local-domains"
SA_LOCAL = "/etc/spamassassin/local.cf"
SA_RULES = "/etc/spamassassin/spamassassin-rules.cf"
SA_PLUGINS = "/etc/spamassassin/v310.pre"
SA_EXTRA_PLUGINS = "/etc/spamassassin/mailwright.pre"      # SpamAssassin reads every *.pre of the folder

CONTENT_FILTER = f"smtp-amavis:[127.0.0.1]:{PORT}"
CHILDREN = 2          # Amavis's $max_servers, and the smtp-amavis transport's process limit

# Postfix's side: the client that hands mail to Amavis and the smtpd Amavis hands it back to.
# The re-injection smtpd trusts 127.0.0.0/8 only and runs no filter, milter or restriction: the
# mail was checked on its way in. `smtp-amavis` defers when Amavis does not answer (4xx): mail
# waits in the queue and goes out at the next queue run once Amavis is back.
SMTP_AMAVIS = f"""\
smtp-amavis unix -      -       n       -       {CHILDREN}       smtp
  -o syslog_name=postfix/amavis
  -o smtp_data_done_timeout=1200
  -o smtp_send_xforward_command=yes
  -o disable_dns_lookups=yes
  -o smtp_tls_security_level=none
  -o max_use=20"""
REINJECTION = f"""\
127.0.0.1:{REINJECT} inet n  -       n       -       -       smtpd
  -o syslog_name=postfix/reinject
  -o content_filter=
  -o mynetworks=127.0.0.0/8
  -o local_recipient_maps=
  -o relay_recipient_maps=
  -o smtpd_restriction_classes=
  -o smtpd_delay_reject=no
  -o smtpd_client_restrictions=permit_mynetworks,reject
  -o smtpd_helo_restrictions=
  -o smtpd_sender_restrictions=
  -o smtpd_relay_restrictions=permit_mynetworks,reject
  -o smtpd_recipient_restrictions=permit_mynetworks,reject
  -o smtpd_data_restrictions=reject_unauth_pipelining
  -o smtpd_end_of_data_restrictions=
  -o smtpd_milters=
  -o smtpd_error_sleep_time=0
  -o smtpd_soft_error_limit=1001
  -o smtpd_hard_error_limit=1000
  -o smtpd_client_connection_count_limit=0
  -o smtpd_client_connection_rate_limit=0
  -o smtpd_tls_security_level=none
  -o smtpd_sasl_auth_enable=no
  -o smtpd_authorized_xforward_hosts=127.0.0.0/8
  -o receive_override_options=no_header_body_checks,no_unknown_recipient_checks,no_milters"""

# SA_TAG, SA_TAG2, SA_KILL become Perl numbers: nothing else may reach the file.
SCORE = re.compile(r"\A-?[0-9]{1,6}(?:\.[0-9]{1,4})?\Z")


def _config_file(cfg: ConfigDir, name: str) -> str | None:
    """A config-folder file handed on as it is; a link or an unreadable file is logged and skipped."""
    try:
        data = read_file(cfg.path / name)
    except SymlinkRefused:
        log.error("%s (file skipped)", Problem(name, 0, "is a symbolic link; symbolic links inside the config "
                                               "folder are not followed: replace it by the file itself"))
        return None
    except OSError as e:
        log.error("%s (file skipped)", Problem(name, 0, f"cannot be read ({e.strerror})"))
        return None
    if data is None:
        return None
    try:
        return data.decode()
    except UnicodeDecodeError as e:
        log.error("%s (file skipped)", Problem(name, 0, f"is not valid UTF-8 (byte offset {e.start})"))
        return None


def perl_string(value: str) -> str:
    """`value` as a single-quoted Perl string (only \\ and ' are special there)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def files(s: Settings, cfg: ConfigDir, _tls=None) -> list[ConfigFile]:
    paths = (CONF, USER, DOMAINS, SA_LOCAL, SA_RULES, SA_EXTRA_PLUGINS)
    if not s.ENABLE_AMAVIS:
        return [ConfigFile(p, None) for p in paths]
    for name in ("SA_TAG", "SA_TAG2", "SA_KILL"):
        if not SCORE.match(getattr(s, name)):      # ops.settings checks it too: never reach Perl unchecked
            raise ValueError(f"{name} is not a score (e.g. 6.31)")
    ctx = dict(s=s, port=PORT, reinject=REINJECT, pidfile=PIDFILE, domains_file=DOMAINS, children=CHILDREN,
               hostname=perl_string(s.fqdn), domain=perl_string(s.domainname),
               container=s.MAILWRIGHT_INIT != "systemd")
    user = _config_file(cfg, AMAVIS_CF)
    rules = _config_file(cfg, SA_RULES_CF) if s.ENABLE_SPAMASSASSIN else None
    plugins = [rendered(SA_PLUGINS, {})] if s.ENABLE_SPAMASSASSIN else []
    shortcircuit = s.SA_SHORTCIRCUIT_BAYES_SPAM or s.SA_SHORTCIRCUIT_BAYES_HAM
    return plugins + [
        rendered(CONF, ctx),
        rendered(USER, dict(user=user)),
        # Read at Amavis's start and at each reload: a change of the domains reloads it.
        rendered(DOMAINS, dict(domains=cfg.domains)),
        # SpamAssassin's files are read when Amavis (re)loads SpamAssassin: at a reload.
        rendered(SA_LOCAL, ctx) if s.ENABLE_SPAMASSASSIN else ConfigFile(SA_LOCAL, None),
        ConfigFile(SA_RULES, rules),
        rendered(SA_EXTRA_PLUGINS, ctx) if s.ENABLE_SPAMASSASSIN and shortcircuit else ConfigFile(SA_EXTRA_PLUGINS, None),
    ]


def postfix(s: Settings, _cfg: ConfigDir) -> PostfixHooks:
    if not s.ENABLE_AMAVIS:
        return PostfixHooks()
    return PostfixHooks(content_filter=CONTENT_FILTER, master_services=(SMTP_AMAVIS, REINJECTION))
