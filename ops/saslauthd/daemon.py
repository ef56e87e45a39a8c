"""saslauthd: SMTP AUTH (465/587) checked by saslauthd instead of Dovecot, as docker-mailserver's
ENABLE_SASLAUTHD does: against an IMAP server (`rimap`) or an LDAP directory (`ldap`)."""

from __future__ import annotations

from ops.daemon import Daemon, Reload, shell_foreground

# Paths here rather than in config.py: the descriptor stays standard-library only.
OPTIONS = "/etc/default/mailwright-saslauthd"     # MECHANISM, MECH_OPTIONS for the foreground command
CONF = "/etc/saslauthd.conf"                      # the ldap mechanism's settings (0600: a bind password)
SMTPD_CONF = "/etc/postfix/sasl/smtpd.conf"      # Cyrus SASL's settings for Postfix's smtpd (Debian's path)
UNIT = "mailwright-saslauthd.service"
UNIT_FILE = f"/etc/systemd/system/{UNIT}"
PIDFILE = "/run/saslauthd.pid"
RUN_DIR = "/run/saslauthd"                         # its socket: mux
SOCKET = f"{RUN_DIR}/mux"


def _files(s, cfg, tls):
    from ops.saslauthd import config
    return config.files(s, cfg, tls)


def _postfix(s, cfg):
    from ops.saslauthd import config
    return config.postfix(s, cfg)


# Postfix's smtpd must reach the socket: /run/saslauthd is root:sasl 0710 (Debian's package).
JOIN_SASL = ("! id postfix >/dev/null 2>&1 || id -nG postfix | tr ' ' '\\n' | grep -qx sasl || "
             "adduser --quiet postfix sasl")

# saslauthd has no foreground switch but -d (debug: stays in the foreground, logs to stderr);
# docker-mailserver's supervisor runs it the same way. -r passes user@domain whole (not split
# into user and realm), as the accounts are addresses.
FOREGROUND = shell_foreground(
    PIDFILE, f". {OPTIONS}", f"mkdir -p {RUN_DIR}", f"{{ {JOIN_SASL}; }}",
    f'exec /usr/sbin/saslauthd -d -r -a "$MECHANISM" -O "$MECH_OPTIONS" -m {RUN_DIR} -n 5',
)

DAEMON = Daemon(
    name="saslauthd",
    packages=("sasl2-bin",),
    enabled=lambda s: s.ENABLE_SASLAUTHD,
    foreground=FOREGROUND,
    unit=UNIT,
    pidfile=PIDFILE,
    reload=Reload("restart"),
    sockets=(SOCKET,),
    files=_files,
    postfix=_postfix,
    order=40,      # after Dovecot (20, rimap asks its IMAP), before Postfix (90) which asks it
)
