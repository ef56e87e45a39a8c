"""The settings model: every docker-mailserver environment variable, declared once.

Each field is typed, has its docker-mailserver default and one line of meaning.
Values come, lowest precedence first, from the defaults, a `mailserver.env` file
(docker-mailserver's `VAR=VAL` format), pyinfra host data, the process
environment, and `VAR__FILE` secrets. The result is validated as a whole: a bad
value raises `SettingsError` naming the variable and what it accepts.

This module is pure standard library: it runs on the operator's machine, in the
image build and inside the container (where pyinfra is not installed).
"""

from __future__ import annotations

import dataclasses
import logging
import re
import shlex
import socket
import unicodedata
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable, Mapping

log = logging.getLogger("mailwright.settings")


class SettingsError(ValueError):
    """A setting has a value mailwright cannot use; the message names it."""


def opt(default: Any, doc: str, *, choices: Iterable[str] | None = None,
        pattern: str | None = None, implemented: bool = True, minimum: int | None = None,
        maximum: int | None = None, secret: bool = False):
    """Declare one setting: default, one line of meaning, and what it accepts.

    `secret=True`: the value is a credential; no message or log line ever shows it.
    """
    return field(default=default, metadata={
        "doc": doc,
        "choices": tuple(choices) if choices is not None else None,
        "pattern": pattern,
        "implemented": implemented,
        "minimum": minimum,
        "maximum": maximum,
        "secret": secret,
    })


SIZE = r"^[0-9]+[kKmMgGtT]?$"
# A SpamAssassin score (SA_TAG, SA_TAG2, SA_KILL): written into Amavis's Perl configuration.
SCORE = r"^-?[0-9]{1,6}(\.[0-9]{1,4})?$"
# A host name or address: IPv4, or IPv6 (inside brackets only, see RELAY_NEXTHOP).
_HOST = r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?"
# Postfix next-hop: `host`, `host:port`, `[host]` or `[host]:port` (brackets: no MX lookup).
RELAY_NEXTHOP = rf"^({_HOST}|\[({_HOST}|[0-9A-Fa-f:.]+|ipv6:[0-9A-Fa-f:.]+)\])(:[0-9]{{1,5}})?$"


def control_character(value: str) -> str | None:
    """The first character of `value` that no line-based file may hold, or None: control
    characters (C0, DEL, C1: every line separator str.splitlines knows but two), the Unicode
    line and paragraph separators (those two), and lone surrogates (undecodable bytes). The
    one rule for settings (a line of main.cf, /etc/dms-settings) and `setup`'s arguments
    (a line of a config-folder file)."""
    return next((c for c in value if unicodedata.category(c) in ("Cc", "Cs", "Zl", "Zp")), None)

LATER = {"implemented": False}
# The yes/no flags of saslauthd.conf (its own parser takes these spellings).
YES_NO = r"(?i)^(yes|no|on|off|true|false|1|0)$"
# LOG_LEVEL's values, quietest first: the `setup` CLI ranks its messages by this order.
LOG_LEVELS = ("error", "warn", "info", "debug", "trace")


def domain_of(fqdn: str) -> str:
    """docker-mailserver's DOMAINNAME: the FQDN minus its first label, or the FQDN itself
    when it has two labels."""
    labels = fqdn.split(".")
    return ".".join(labels[1:]) if len(labels) > 2 else fqdn


@dataclass(frozen=True)
class Settings:
    # --- mailwright's own (not in docker-mailserver) --------------------------------
    MAILWRIGHT_INIT: str = opt("", "who supervises the daemons: `systemd` (VPS) or `container` (our own init); required",
                               choices=("systemd", "container"))
    MAILWRIGHT_CONFIG_DIR: str = opt("", "the config folder on the target; empty: /tmp/docker-mailserver in a "
                                     "container (docker-mailserver's path), /etc/mailwright/config under systemd")

    # --- general / core --------------------------------------------------------------
    OVERRIDE_HOSTNAME: str = opt("", "FQDN of the server; empty: the host's `hostname -f`")
    LOG_LEVEL: str = opt("info", "verbosity of mailwright's own log lines",
                         choices=LOG_LEVELS)
    SUPERVISOR_LOGLEVEL: str = opt("warn", "verbosity of the supervisor (mailwright's init logs at this level)",
                                   choices=("critical", "error", "warn", "info", "debug"))
    DMS_VMAIL_UID: int = opt(5000, "uid of the `docker` user owning /var/mail", minimum=1)
    DMS_VMAIL_GID: int = opt(5000, "gid of the `docker` group owning /var/mail", minimum=1)
    ACCOUNT_PROVISIONER: str = opt("FILE", "where accounts come from: FILE (postfix-accounts.cf) or LDAP",
                                   choices=("FILE", "LDAP"))
    PERMIT_DOCKER: str = opt("none", "networks trusted to relay without AUTH; `none` trusts nothing, not even loopback",
                             choices=("none", "container", "host", "network", "connected-networks"))
    NETWORK_INTERFACE: str = opt("eth0", "interface whose address PERMIT_DOCKER=container/host derives from")
    TZ: str = opt("", "time zone, `Area/Zone`; empty keeps UTC")
    POSTMASTER_ADDRESS: str = opt("", "postmaster address; empty: postmaster@DOMAINNAME")
    ENABLE_UPDATE_CHECK: bool = opt(True, "mail the postmaster when a newer release exists", **LATER)
    UPDATE_CHECK_INTERVAL: str = opt("1d", "how often the update check runs", pattern=r"^[0-9]+[smhd]$", **LATER)
    SMTP_ONLY: bool = opt(False, "run Postfix alone: no Dovecot, no IMAP/POP3/LMTP/quota")
    DMS_CONFIG_POLL: int = opt(2, "seconds between checks of the config folder and certificates", minimum=1)
    ENABLE_IMAP: bool = opt(True, "IMAP on 143 (STARTTLS) and 993 (implicit TLS)")
    ENABLE_POP3: bool = opt(False, "POP3 on 110 (STARTTLS) and 995 (implicit TLS)")
    ENABLE_MANAGESIEVE: bool = opt(False, "ManageSieve on 4190")
    ENABLE_QUOTAS: bool = opt(True, "Dovecot quotas and Postfix's quota-status check (552 when full); "
                              "off with ACCOUNT_PROVISIONER=LDAP unless set")
    DOVECOT_MAILBOX_FORMAT: str = opt("maildir", "mailbox storage format", choices=("maildir", "sdbox", "mdbox"))
    DOVECOT_INET_PROTOCOLS: str = opt("all", "address families Dovecot listens on", choices=("all", "ipv4", "ipv6"))
    POSTFIX_INET_PROTOCOLS: str = opt("all", "Postfix inet_protocols", choices=("all", "ipv4", "ipv6"))

    # --- TLS ---------------------------------------------------------------------------
    SSL_TYPE: str = opt("", "certificate source; empty means no TLS at all (insecure)",
                        choices=("", "letsencrypt", "manual", "custom", "self-signed", "snakeoil"))
    SSL_CERT_PATH: str = opt("", "SSL_TYPE=manual: certificate chain file")
    SSL_KEY_PATH: str = opt("", "SSL_TYPE=manual: private key file")
    SSL_ALT_CERT_PATH: str = opt("", "SSL_TYPE=manual: fallback certificate chain (e.g. RSA beside ECDSA)")
    SSL_ALT_KEY_PATH: str = opt("", "SSL_TYPE=manual: fallback private key")
    SSL_DOMAIN: str = opt("", "SSL_TYPE=letsencrypt: the `live/<dir>` name tried first (`*.` stripped)")
    TLS_LEVEL: str = opt("modern", "cipher list; both levels require TLS 1.2 or newer",
                         choices=("modern", "intermediate"))

    # --- Postfix -------------------------------------------------------------------------
    POSTFIX_MESSAGE_SIZE_LIMIT: int = opt(10240000, "largest accepted message, bytes (also Dovecot's limit)", minimum=0)
    POSTFIX_MAILBOX_SIZE_LIMIT: int = opt(0, "mailbox size limit in bytes, 0 unlimited (also the default quota)",
                                          minimum=0)
    POSTFIX_DAGENT: str = opt("", "virtual_transport; empty: LMTP into Dovecot")
    POSTFIX_REJECT_UNKNOWN_CLIENT_HOSTNAME: bool = opt(False, "reject clients whose address has no matching PTR/A")
    SPOOF_PROTECTION: bool = opt(False, "465/587 refuse a MAIL FROM the logged-in user does not own")
    ENABLE_DNSBL: bool = opt(False, "postscreen DNS blocklists (docker-mailserver's sites, threshold 3)")
    POSTSCREEN_ACTION: str = opt("enforce", "postscreen's action on a failed DNSBL/greet/bare-newline test",
                                 choices=("enforce", "drop", "ignore"))
    ENABLE_OPENDKIM: bool = opt(True, "DKIM signing and verification (OpenDKIM milter: a unix socket in the container, 127.0.0.1:8891 on a VPS)")
    ENABLE_OPENDMARC: bool = opt(True, "DMARC verification (OpenDMARC milter after OpenDKIM: a unix socket in the container, 127.0.0.1:8893 on a VPS)")
    ENABLE_POLICYD_SPF: bool = opt(True, "SPF check of port 25's senders: Fail refused (550), temperror deferred (ops/spf)")
    ENABLE_MTA_STS: bool = opt(False, "outbound MTA-STS policies", **LATER)
    VIRUSMAILS_DELETE_DELAY: int = opt(7, "days before quarantined virus mail is deleted", minimum=0)

    # --- relay host --------------------------------------------------------------------
    DEFAULT_RELAY_HOST: str = opt("", "Postfix relayhost for all outbound mail, e.g. `[mail.example.com]:587`",
                                  pattern=RELAY_NEXTHOP)
    RELAY_HOST: str = opt("", "legacy: relay host (`[RELAY_HOST]:RELAY_PORT`) for every local domain not opted out "
                          "in postfix-relaymap.cf", pattern=rf"^({_HOST}|[0-9A-Fa-f:.]+)$")
    RELAY_PORT: int = opt(25, "port of RELAY_HOST", minimum=1, maximum=65535)
    RELAY_USER: str = opt("", "SASL user for DEFAULT_RELAY_HOST (else RELAY_HOST); TLS is then required to it")
    RELAY_PASSWORD: str = opt("", "SASL password going with RELAY_USER", secret=True)

    # --- spam / virus --------------------------------------------------------------------
    ENABLE_AMAVIS: bool = opt(True, "Amavis content filter")
    AMAVIS_LOGLEVEL: int = opt(0, "Amavis $log_level (-3..5)", minimum=-3, maximum=5)
    ENABLE_SPAMASSASSIN: bool = opt(False, "SpamAssassin through Amavis (needs ENABLE_AMAVIS)")
    ENABLE_SPAMASSASSIN_KAM: bool = opt(False, "KAM SpamAssassin ruleset")
    SPAMASSASSIN_SPAM_TO_INBOX: bool = opt(True, "deliver spam (1) or bounce it (0)")
    SA_TAG: str = opt("2.0", "score from which spam headers are added", pattern=SCORE)
    SA_TAG2: str = opt("6.31", "score from which mail is marked as spam", pattern=SCORE)
    SA_KILL: str = opt("10.0", "score from which the spam action applies", pattern=SCORE)
    SA_SHORTCIRCUIT_BAYES_SPAM: bool = opt(False, "short-circuit BAYES_99")
    SA_SHORTCIRCUIT_BAYES_HAM: bool = opt(False, "short-circuit BAYES_00")
    SPAM_SUBJECT: str = opt("", "subject prefix for spam (global before-sieve)")
    MOVE_SPAM_TO_JUNK: bool = opt(True, "file spam into Junk (global after-sieve)")
    MARK_SPAM_AS_READ: bool = opt(False, "mark spam as read (global after-sieve)")
    ENABLE_CLAMAV: bool = opt(False, "ClamAV through Amavis (ops/clamav)")
    CLAMAV_MESSAGE_SIZE_LIMIT: str = opt("25M", "largest file ClamAV scans (clamd MaxFileSize/MaxScanSize; at most 4000M)",
                                         pattern=SIZE)
    ENABLE_POSTGREY: bool = opt(False, "greylisting with Postgrey (port 25; ops/postgrey)")
    POSTGREY_DELAY: int = opt(300, "greylisting delay, seconds (postgrey reads 0 as 300)", minimum=1)
    POSTGREY_MAX_AGE: int = opt(35, "days a triplet is remembered (postgrey reads 0 as 35)", minimum=1)
    POSTGREY_AUTO_WHITELIST_CLIENTS: int = opt(5, "deliveries after which a client is whitelisted; 0: never",
                                               minimum=0)
    POSTGREY_TEXT: str = opt("Delayed by Postgrey", "text of the greylisting reply (postgrey: %s seconds left, "
                             "%r recipient domain)")

    # --- Rspamd ----------------------------------------------------------------------------
    ENABLE_RSPAMD: bool = opt(False, "Rspamd milter", **LATER)
    ENABLE_RSPAMD_REDIS: str = opt("", "Rspamd's own Redis; empty follows ENABLE_RSPAMD", **LATER)
    RSPAMD_CHECK_AUTHENTICATED: bool = opt(False, "full checks on authenticated mail", **LATER)
    RSPAMD_GREYLISTING: bool = opt(False, "Rspamd greylisting", **LATER)
    RSPAMD_LEARN: bool = opt(False, "learn spam/ham when mail moves in/out of Junk", **LATER)
    RSPAMD_HFILTER: bool = opt(True, "Rspamd hfilter group", **LATER)
    RSPAMD_HFILTER_HOSTNAME_UNKNOWN_SCORE: str = opt("6", "score of HFILTER_HOSTNAME_UNKNOWN", **LATER)
    RSPAMD_NEURAL: bool = opt(False, "Rspamd neural module", **LATER)

    # --- fail2ban / fetchmail / getmail ------------------------------------------------------
    ENABLE_FAIL2BAN: bool = opt(False, "fail2ban on nftables (the container needs NET_ADMIN)")
    FAIL2BAN_BLOCKTYPE: str = opt("drop", "nftables block type", choices=("drop", "reject"))
    ENABLE_FETCHMAIL: bool = opt(False, "fetchmail from fetchmail.cf")
    FETCHMAIL_POLL: int = opt(300, "fetchmail poll interval, seconds", minimum=1)
    FETCHMAIL_PARALLEL: bool = opt(False, "one fetchmail process per poll entry")
    ENABLE_GETMAIL: bool = opt(False, "getmail6 from getmail/*.cf")
    GETMAIL_POLL: int = opt(5, "getmail poll interval, minutes", minimum=1)

    # --- reports / logs ----------------------------------------------------------------------
    PFLOGSUMM_TRIGGER: str = opt("none", "when the Postfix summary is mailed",
                                 choices=("none", "daily_cron", "logrotate"), **LATER)
    PFLOGSUMM_RECIPIENT: str = opt("", "recipient of the Postfix summary", **LATER)
    PFLOGSUMM_SENDER: str = opt("", "sender of the Postfix summary", **LATER)
    LOGWATCH_INTERVAL: str = opt("none", "logwatch report interval", choices=("none", "daily", "weekly"), **LATER)
    LOGWATCH_RECIPIENT: str = opt("", "recipient of logwatch reports", **LATER)
    LOGWATCH_SENDER: str = opt("", "sender of logwatch reports", **LATER)
    REPORT_RECIPIENT: str = opt("", "default report recipient; empty: POSTMASTER_ADDRESS", **LATER)
    REPORT_SENDER: str = opt("", "default report sender; empty: mailserver-report@FQDN", **LATER)
    LOGROTATE_INTERVAL: str = opt("weekly", "rotation interval of mail.log", choices=("daily", "weekly", "monthly"))
    LOGROTATE_COUNT: int = opt(4, "rotated mail.log files kept", minimum=0)

    # --- LDAP ------------------------------------------------------------------------------
    LDAP_SERVER_HOST: str = opt("", "LDAP URI(s) (ldap://, ldaps:// or ldapi://), space separated")
    LDAP_SEARCH_BASE: str = opt("", "LDAP search base")
    LDAP_BIND_DN: str = opt("", "LDAP bind DN")
    LDAP_BIND_PW: str = opt("", "LDAP bind password", secret=True)
    LDAP_START_TLS: str = opt("no", "StartTLS to the LDAP server", choices=("yes", "no"))
    LDAP_QUERY_FILTER_USER: str = opt("", "LDAP filter for users")
    LDAP_QUERY_FILTER_GROUP: str = opt("", "LDAP filter for groups")
    LDAP_QUERY_FILTER_ALIAS: str = opt("", "LDAP filter for aliases")
    LDAP_QUERY_FILTER_DOMAIN: str = opt("", "LDAP filter for domains")
    LDAP_QUERY_FILTER_SENDERS: str = opt("", "LDAP filter for allowed senders")
    DOVECOT_URIS: str = opt("", "Dovecot LDAP URIs; empty: LDAP_SERVER_HOST")
    DOVECOT_BASE: str = opt("", "Dovecot LDAP base; empty: LDAP_SEARCH_BASE")
    DOVECOT_DN: str = opt("", "Dovecot LDAP bind DN; empty: LDAP_BIND_DN")
    DOVECOT_DNPASS: str = opt("", "Dovecot LDAP bind password; empty: LDAP_BIND_PW", secret=True)
    DOVECOT_TLS: str = opt("no", "Dovecot LDAP StartTLS", choices=("yes", "no"))
    DOVECOT_USER_FILTER: str = opt("", "Dovecot LDAP user filter")
    DOVECOT_PASS_FILTER: str = opt("", "Dovecot LDAP password filter; empty: DOVECOT_USER_FILTER")
    DOVECOT_USER_ATTRS: str = opt("", "Dovecot LDAP user attribute map")
    DOVECOT_PASS_ATTRS: str = opt("", "Dovecot LDAP password attribute map")
    DOVECOT_AUTH_BIND: str = opt("no", "Dovecot LDAP auth binds", choices=("yes", "no"))
    DOVECOT_LDAP_VERSION: int = opt(3, "LDAP protocol version")
    DOVECOT_DEFAULT_PASS_SCHEME: str = opt("SSHA", "default password scheme of LDAP entries")

    # --- SASLauthd / OAuth2 / SRS --------------------------------------------------------------
    ENABLE_SASLAUTHD: bool = opt(False, "SMTP AUTH through saslauthd")
    SASLAUTHD_MECHANISMS: str = opt("", "saslauthd mechanism: ldap (the default when enabled) or rimap",
                                    choices=("", "ldap", "rimap"))
    SASLAUTHD_MECH_OPTIONS: str = opt("", "saslauthd mechanism options (rimap: IMAP host)")
    SASLAUTHD_LDAP_SERVER: str = opt("", "saslauthd LDAP server(s), space-separated; a bare host gets ldap://; "
                                     "empty: LDAP_SERVER_HOST")
    SASLAUTHD_LDAP_BIND_DN: str = opt("", "saslauthd LDAP bind DN; empty: LDAP_BIND_DN")
    SASLAUTHD_LDAP_PASSWORD: str = opt("", "saslauthd LDAP bind password; empty: LDAP_BIND_PW", secret=True)
    SASLAUTHD_LDAP_SEARCH_BASE: str = opt("", "saslauthd LDAP search base; empty: LDAP_SEARCH_BASE")
    SASLAUTHD_LDAP_FILTER: str = opt("", "saslauthd LDAP filter (%u: the login, %U: its local part, %d: its domain); "
                                     "empty: (&(uniqueIdentifier=%u)(mailEnabled=TRUE))")
    SASLAUTHD_LDAP_START_TLS: str = opt("no", "saslauthd LDAP StartTLS (yes/no)", pattern=YES_NO)
    SASLAUTHD_LDAP_TLS_CHECK_PEER: str = opt("no", "saslauthd LDAP: verify the directory's certificate (yes/no)",
                                             pattern=YES_NO)
    SASLAUTHD_LDAP_TLS_CACERT_FILE: str = opt("", "saslauthd LDAP CA file (absolute path); empty: not written",
                                              pattern=r"^/\S*$")
    SASLAUTHD_LDAP_TLS_CACERT_DIR: str = opt("", "saslauthd LDAP CA folder (absolute path); empty: not written",
                                             pattern=r"^/\S*$")
    SASLAUTHD_LDAP_PASSWORD_ATTR: str = opt("", "saslauthd LDAP password attribute; empty: not written",
                                            pattern=r"^[A-Za-z][A-Za-z0-9;-]*$")
    SASLAUTHD_LDAP_MECH: str = opt("", "saslauthd LDAP SASL mechanism (with ldap_auth_method custom); empty: not written",
                                   pattern=r"^[A-Za-z0-9_-]+$")
    SASLAUTHD_LDAP_AUTH_METHOD: str = opt("bind", "saslauthd LDAP auth method", choices=("bind", "custom", "fastbind"))
    ENABLE_OAUTH2: bool = opt(False, "OAuth2 login through Dovecot", **LATER)
    OAUTH2_INTROSPECTION_URL: str = opt("", "OAuth2 introspection URL", **LATER)
    ENABLE_SRS: bool = opt(False, "Sender Rewriting Scheme for forwarded mail (postsrsd on 127.0.0.1:10001/10002; ops/postsrsd)")
    SRS_SENDER_CLASSES: str = opt("envelope_sender", "sender_canonical_classes for SRS: envelope_sender, header_sender "
                                  "or both, comma-separated", pattern=r"^(envelope_sender|header_sender)"
                                  r"(\s*,\s*(envelope_sender|header_sender))?$")
    SRS_DOMAINNAME: str = opt("", "SRS domain (rewritten senders are SRS0=...@it); empty: DOMAINNAME",
                              pattern=rf"^{_HOST}$")
    SRS_EXCLUDE_DOMAINS: str = opt("", "domains SRS leaves alone, comma-separated (`.example.com`: its subdomains)",
                                   pattern=rf"^\.?{_HOST}(\s*,\s*\.?{_HOST})*$")
    SRS_SECRET: str = opt("", "base64 SRS secret(s), comma-separated, the first signs; empty: generated once "
                          "and kept in the state volume", pattern=r"^[A-Za-z0-9+/=]{8,}(,[A-Za-z0-9+/=]{8,})*$",
                          secret=True)

    # --- derived values -------------------------------------------------------------------------
    @property
    def fqdn(self) -> str:
        return self.OVERRIDE_HOSTNAME

    @property
    def domainname(self) -> str:
        """The FQDN minus its first label, or the FQDN itself when it has two labels."""
        return domain_of(self.fqdn)

    @property
    def postmaster(self) -> str:
        return self.POSTMASTER_ADDRESS or f"postmaster@{self.domainname}"

    @property
    def dovecot_enabled(self) -> bool:
        return not self.SMTP_ONLY

    @property
    def quotas_enabled(self) -> bool:
        return self.ENABLE_QUOTAS and not self.SMTP_ONLY

    def to_env(self) -> dict[str, str]:
        """The effective settings as docker-mailserver's `/etc/dms-settings` strings."""
        return {f.name: _format(getattr(self, f.name)) for f in fields(self)}


SETTING_NAMES = frozenset(f.name for f in fields(Settings))
_FIELDS = {f.name: f for f in fields(Settings)}

# Older names from the seed README and earlier docker-mailserver releases.
LEGACY = {
    "DMS_DEBUG": "1 sets LOG_LEVEL=debug (replaced by LOG_LEVEL)",
    "ONE_DIR": "state is consolidated whenever /var/mail-state exists",
    "ENABLE_LDAP": "1 sets ACCOUNT_PROVISIONER=LDAP",
    "SA_SPAM_SUBJECT": "copied to SPAM_SUBJECT",
    "ENABLE_POSTFIX_VIRTUAL_TRANSPORT": "no longer needed for POSTFIX_DAGENT",
    "REPORT_INTERVAL": "replaced by LOGROTATE_INTERVAL",
    "SASL_PASSWD": "replaced by postfix-sasl-password.cf",
    "SASLAUTHD_LDAP_SSL": "use ldaps:// in SASLAUTHD_LDAP_SERVER",
}

CONFIG_DIRS = {"container": "/tmp/docker-mailserver", "systemd": "/etc/mailwright/config"}
# docker-mailserver's lock file in the config folder, shared by `setup`, the change poller and DMS.
LOCK_NAME = "check-for-changes.sh.lock"
TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")


def _format(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def is_secret(name: str) -> bool:
    """Whether the setting `name` holds a credential (its value is never shown)."""
    return name in SETTING_NAMES and _FIELDS[name].metadata["secret"]


def shown(name: str, value: Any, quote: bool = True) -> str:
    """`NAME=value` for a message; a secret setting's value is never part of it."""
    if is_secret(name):
        return f"{name} (a secret, value not shown)"
    return f"{name}={_format(value)!r}" if quote else f"{name}={_format(value)}"


def _parse(f: dataclasses.Field, raw: str) -> Any:
    meta = f.metadata
    if f.type in ("bool", "int") or meta["choices"] is not None:
        raw = raw.strip()       # free text keeps its spaces: SPAM_SUBJECT='***SPAM*** '
    what = shown(f.name, raw)
    bad = control_character(raw)
    if bad is not None:
        raise SettingsError(f"{what}: control character U+{ord(bad):04X} (a line break?) is not "
                            "allowed in a setting")
    if f.type == "bool":
        if raw.lower() in TRUE:
            return True
        if raw.lower() in FALSE:
            return False
        raise SettingsError(f"{what} is not a boolean: use 1 or 0")
    if f.type == "int":
        if not re.fullmatch(r"-?[0-9]+", raw):
            raise SettingsError(f"{what} is not an integer")
        value = int(raw)
        if meta["minimum"] is not None and value < meta["minimum"]:
            raise SettingsError(f"{what} must be at least {meta['minimum']}")
        if meta["maximum"] is not None and value > meta["maximum"]:
            raise SettingsError(f"{what} must be at most {meta['maximum']}")
        return value
    if meta["choices"] is not None and raw not in meta["choices"]:
        accepted = ", ".join(repr(c) for c in meta["choices"])
        raise SettingsError(f"{what} is not accepted; use one of {accepted}")
    if meta["pattern"] and raw != f.default and not re.fullmatch(meta["pattern"], raw):
        raise SettingsError(f"{what} does not match {meta['pattern']}")
    return raw


def parse_env_file(path: str | Path) -> dict[str, str]:
    """Read docker-mailserver's `mailserver.env`: `VAR=VAL` lines, `#` comments.

    Quotes around a value are stripped as docker's --env-file does not, but
    compose files and shells do; users copy values between them.
    """
    values: dict[str, str] = {}
    for lineno, line in enumerate(Path(path).read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export "):]
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise SettingsError(f"{path}:{lineno}: expected VAR=VALUE, got {line!r}")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key] = value
    return values


def _resolve_secrets(raw: dict[str, str]) -> dict[str, str]:
    """Apply `VAR__FILE=/path`: the file's content becomes VAR unless VAR is set."""
    resolved = dict(raw)
    for key, path in raw.items():
        if not key.endswith("__FILE"):
            continue
        name = key[: -len("__FILE")]
        del resolved[key]
        if raw.get(name, "") != "":
            log.warning("ENV value will not be sourced from '%s' since '%s' is already set", key, name)
            continue
        try:
            resolved[name] = Path(path).read_text().strip()
            log.info("Getting secret '%s' from '%s'", name, path)
        except FileNotFoundError:
            log.warning("File defined for secret '%s' with path '%s' does not exist", name, path)
    return resolved


def _apply_legacy(raw: dict[str, str]) -> dict[str, str]:
    out = dict(raw)
    for name, meaning in LEGACY.items():
        if name in raw:
            log.warning("%s is a legacy setting (%s)", name, meaning)
    if raw.get("DMS_DEBUG", "0") == "1" and "LOG_LEVEL" not in raw:
        out["LOG_LEVEL"] = "debug"
    if raw.get("ENABLE_LDAP", "0") == "1" and "ACCOUNT_PROVISIONER" not in raw:
        out["ACCOUNT_PROVISIONER"] = "LDAP"
        # docker-mailserver v10 (ENABLE_LDAP's era) took a bare host name (its README's
        # `LDAP_SERVER_HOST=ldap`): that one form still means ldap://<host>.
        host = raw.get("LDAP_SERVER_HOST", "")
        if host and re.fullmatch(rf"{_HOST}(:[0-9]{{1,5}})?", host):
            log.warning("LDAP_SERVER_HOST=%r has no ldap://, ldaps:// or ldapi://: using ldap://%s "
                        "(ENABLE_LDAP=1's form; write the URI)", host, host)
            out["LDAP_SERVER_HOST"] = f"ldap://{host}"
    if "SA_SPAM_SUBJECT" in raw and "SPAM_SUBJECT" not in raw:
        out["SPAM_SUBJECT"] = "" if raw["SA_SPAM_SUBJECT"] == "undef" else raw["SA_SPAM_SUBJECT"]
    for name in LEGACY:
        out.pop(name, None)
    return out


def system_fqdn() -> str:
    return socket.getfqdn()


def load(*, env_file: str | Path | None = None, host_data: Mapping[str, Any] | None = None,
         environ: Mapping[str, str] | None = None, fqdn: str | None = None) -> Settings:
    """Merge every source into one validated `Settings`.

    `environ` only contributes the variables mailwright knows (and `__FILE` and
    legacy names): a process environment is full of unrelated names.
    """
    raw: dict[str, str] = {}
    if env_file is not None:
        for key, value in parse_env_file(env_file).items():
            if key not in SETTING_NAMES and key not in LEGACY and not key.endswith("__FILE"):
                log.warning("%s: unknown setting %s is ignored", env_file, key)
            raw[key] = value
    for key, value in (host_data or {}).items():
        if key in SETTING_NAMES or key in LEGACY or key.endswith("__FILE"):
            raw[key] = _format(value)
    for key, value in (environ or {}).items():
        if key in SETTING_NAMES or key in LEGACY or (key.endswith("__FILE") and key[:-6] in SETTING_NAMES):
            raw[key] = value
    raw = _apply_legacy(_resolve_secrets(raw))

    if raw.get("LOG_LEVEL", "info") not in LOG_LEVELS:
        log.warning("LOG_LEVEL=%r is not a log level; using info", raw["LOG_LEVEL"])
        raw["LOG_LEVEL"] = "info"
    if raw.get("ACCOUNT_PROVISIONER") == "OIDC":
        raise SettingsError("ACCOUNT_PROVISIONER=OIDC is not yet implemented; use FILE or LDAP")

    if raw.get("ACCOUNT_PROVISIONER") == "LDAP" and "ENABLE_QUOTAS" not in raw:
        raw["ENABLE_QUOTAS"] = "0"      # docker-mailserver: no quotas with LDAP unless asked for

    values: dict[str, Any] = {}
    for f in fields(Settings):
        if f.name in raw:
            values[f.name] = _parse(f, raw[f.name])
    if not values.get("MAILWRIGHT_CONFIG_DIR"):
        # systemd empties /tmp at boot and gives Dovecot a private /tmp: a VPS needs a lasting place.
        values["MAILWRIGHT_CONFIG_DIR"] = CONFIG_DIRS.get(values.get("MAILWRIGHT_INIT", ""), CONFIG_DIRS["container"])
    if not values.get("OVERRIDE_HOSTNAME"):
        values["OVERRIDE_HOSTNAME"] = fqdn if fqdn is not None else system_fqdn()
    if values.get("ENABLE_SPAMASSASSIN") and not values.get("ENABLE_AMAVIS", True):
        # docker-mailserver: SpamAssassin runs inside Amavis; without it the setting is forced off.
        log.warning("ENABLE_SPAMASSASSIN=1 needs ENABLE_AMAVIS=1: SpamAssassin is turned off")
        values["ENABLE_SPAMASSASSIN"] = False
    settings = Settings(**values)
    validate(settings)
    for f in fields(Settings):
        if not f.metadata["implemented"] and getattr(settings, f.name) != f.default:
            log.warning("%s is accepted but not implemented yet: it has no effect",
                        shown(f.name, getattr(settings, f.name), quote=False))
    if settings.RELAY_PASSWORD and not settings.RELAY_USER:
        log.warning("RELAY_PASSWORD is set but RELAY_USER is not: it has no effect")
    return settings


HOSTNAME = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def validate(s: Settings) -> None:
    """Checks that involve more than one field, or the shape of a name."""
    if not s.MAILWRIGHT_INIT:
        raise SettingsError("MAILWRIGHT_INIT is not set; use 'systemd' (a VPS) or 'container' (mailwright's init)")
    if "." not in s.fqdn:
        raise SettingsError(f"OVERRIDE_HOSTNAME={s.fqdn!r}: the mail server's hostname needs a dot "
                            "(a fully qualified name such as mail.example.com)")
    if not HOSTNAME.match(s.fqdn.lower()):
        raise SettingsError(f"OVERRIDE_HOSTNAME={s.fqdn!r} is not a valid host name")
    if s.POSTMASTER_ADDRESS and "@" not in s.POSTMASTER_ADDRESS:
        raise SettingsError(f"POSTMASTER_ADDRESS={s.POSTMASTER_ADDRESS!r} is not an e-mail address")
    if s.SSL_TYPE == "manual":
        for name in ("SSL_CERT_PATH", "SSL_KEY_PATH"):
            if not getattr(s, name):
                raise SettingsError(f"SSL_TYPE=manual needs {name}")
        if bool(s.SSL_ALT_CERT_PATH) != bool(s.SSL_ALT_KEY_PATH):
            raise SettingsError("SSL_ALT_CERT_PATH and SSL_ALT_KEY_PATH go together; one is missing")
    if s.RELAY_USER and not s.RELAY_PASSWORD:
        raise SettingsError("RELAY_USER is set without RELAY_PASSWORD; they go together")
    if s.RELAY_USER and not (s.DEFAULT_RELAY_HOST or s.RELAY_HOST):
        raise SettingsError("RELAY_USER/RELAY_PASSWORD are the credentials of DEFAULT_RELAY_HOST or RELAY_HOST; "
                            "neither is set")
    if s.ACCOUNT_PROVISIONER == "LDAP":
        validate_ldap(s)
    if s.ENABLE_SASLAUTHD and (s.SASLAUTHD_MECHANISMS or "ldap") == "ldap":
        validate_saslauthd_ldap(s)
    if s.POSTFIX_MAILBOX_SIZE_LIMIT and s.POSTFIX_MAILBOX_SIZE_LIMIT < s.POSTFIX_MESSAGE_SIZE_LIMIT:
        raise SettingsError(
            f"POSTFIX_MAILBOX_SIZE_LIMIT={s.POSTFIX_MAILBOX_SIZE_LIMIT} is smaller than "
            f"POSTFIX_MESSAGE_SIZE_LIMIT={s.POSTFIX_MESSAGE_SIZE_LIMIT}; Postfix refuses to start like that")


LDAP_URI = re.compile(r"^(ldap|ldaps|ldapi)://[^\s]*$")


def validate_ldap(s: Settings) -> None:
    """ACCOUNT_PROVISIONER=LDAP: the directory's URIs (Postfix's server_host, Dovecot's uris)."""
    for name in ("LDAP_SERVER_HOST", "DOVECOT_URIS"):
        value = getattr(s, name)
        if name == "LDAP_SERVER_HOST" and not value:
            raise SettingsError("ACCOUNT_PROVISIONER=LDAP needs LDAP_SERVER_HOST (e.g. ldap://ldap.example.com)")
        for uri in value.replace(",", " ").split():
            if not LDAP_URI.match(uri) or uri.split("://", 1)[0] != "ldapi" and not uri.split("://", 1)[1]:
                raise SettingsError(f"{name}={value!r}: {uri!r} is not an LDAP URI; it must start with "
                                    "ldap://, ldaps:// or ldapi:// (e.g. ldap://ldap.example.com)")


def saslauthd_ldap_servers(s: Settings) -> tuple[str, str]:
    """(the setting it comes from, saslauthd's ldap_servers): SASLAUTHD_LDAP_SERVER, else
    LDAP_SERVER_HOST; docker-mailserver puts ldap:// before a value without a scheme."""
    name = "SASLAUTHD_LDAP_SERVER" if s.SASLAUTHD_LDAP_SERVER else "LDAP_SERVER_HOST"
    value = getattr(s, name)
    return name, value if "://" in value or not value else f"ldap://{value}"


def validate_saslauthd_ldap(s: Settings) -> None:
    """ENABLE_SASLAUTHD=1 with the ldap mechanism: a directory to ask, given as LDAP URIs.
    (Line breaks in any SASLAUTHD_* value are refused for every setting, in _parse.)"""
    name, servers = saslauthd_ldap_servers(s)
    if not servers:
        raise SettingsError("ENABLE_SASLAUTHD=1 with SASLAUTHD_MECHANISMS=ldap needs SASLAUTHD_LDAP_SERVER "
                            "or LDAP_SERVER_HOST (e.g. ldap://ldap.example.com)")
    for uri in servers.split():
        if not LDAP_URI.match(uri) or uri.split("://", 1)[0] != "ldapi" and not uri.split("://", 1)[1]:
            raise SettingsError(f"{shown(name, getattr(s, name))}: {uri!r} is not an LDAP URI; it must start "
                                "with ldap://, ldaps:// or ldapi:// (or be a bare host name)")


def read_dms_settings(path: str | Path = "/etc/dms-settings") -> Settings:
    """Read back the effective settings a deploy wrote (`KEY='value'` lines)."""
    # Shell rules, as the file is meant to be sourced: a quoted value may span lines.
    raw = dict(token.partition("=")[::2] for token in shlex.split(Path(path).read_text()))
    values = {f.name: _parse(f, raw[f.name]) for f in fields(Settings) if f.name in raw}
    return Settings(**values)


def dms_settings_text(s: Settings) -> str:
    """docker-mailserver's `/etc/dms-settings`: `KEY='value'`, sorted, shell-quoted."""
    quote = lambda v: "'" + v.replace("'", "'\\''") + "'"  # noqa: E731
    return "".join(f"{k}={quote(v)}\n" for k, v in sorted(s.to_env().items()))
