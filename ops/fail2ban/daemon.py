"""Fail2ban: reads the mail log, bans addresses that keep failing to log in, on nftables."""

from __future__ import annotations

from ops.daemon import Daemon, Reload

# Paths here rather than in config.py: the descriptor stays standard-library only (the image
# build reads every descriptor); config.py and the `setup fail2ban` command import them from here.
JAIL_LOCAL = "/etc/fail2ban/jail.local"                     # mailwright's jails (docker-mailserver's file)
USER_JAIL = "/etc/fail2ban/jail.d/user-jail.local"          # the config folder's fail2ban-jail.cf
FAIL2BAN_CONF = "/etc/fail2ban/fail2ban.d/mailwright.conf"  # log target, database: read before fail2ban.local
USER_FAIL2BAN = "/etc/fail2ban/fail2ban.local"              # the config folder's fail2ban-fail2ban.cf
NFTABLES_LOCAL = "/etc/fail2ban/action.d/nftables-common.local"   # FAIL2BAN_BLOCKTYPE
CUSTOM_FILTER = "/etc/fail2ban/filter.d/custom.conf"        # the `custom` jail (manual bans) matches nothing
READS = ("fail2ban-jail.cf", "fail2ban-fail2ban.cf")
STATE = "/var/lib/fail2ban"
DBFILE = f"{STATE}/fail2ban.sqlite3"
LOG = "/var/log/mail/fail2ban.log"
MAIL_LOG = "/var/log/mail/mail.log"
RUN_DIR = "/run/fail2ban"
PIDFILE = f"{RUN_DIR}/fail2ban.pid"
SOCKET = f"{RUN_DIR}/fail2ban.sock"
TABLE = ("inet", "f2b-table")                               # the nftables table its actions make


def _files(s, cfg, tls):
    from ops.fail2ban import config
    return config.files(s, cfg, tls)


# Debian's fail2ban.service runs `fail2ban-server -xf start` after making /run/fail2ban; the
# container's supervisor does the same. -x: a stale socket from an unclean stop is replaced.
# Without NET_ADMIN fail2ban still runs and logs its bans, but nft cannot enforce them: say so.
NO_NFTABLES = ("fail2ban: nftables cannot be used here (a container needs --cap-add NET_ADMIN): "
               "bans are logged but not enforced")
FOREGROUND = ("/bin/sh", "-c",
              f"mkdir -p {RUN_DIR} && {{ nft list tables >/dev/null 2>&1 || echo '{NO_NFTABLES}' >&2; }}; "
              "exec /usr/bin/fail2ban-server -xf start")

DAEMON = Daemon(
    name="fail2ban",
    packages=("fail2ban", "nftables"),     # nftables: its ban actions run the `nft` command
    enabled=lambda s: s.ENABLE_FAIL2BAN,
    foreground=FOREGROUND,
    unit="fail2ban.service",
    pidfile=PIDFILE,
    # `fail2ban-client reload` re-reads every file and keeps the current bans (Debian's ExecReload).
    reload=Reload("command", command=("/usr/bin/fail2ban-client", "reload")),
    sockets=(SOCKET,),
    state=(STATE,),
    reads=READS,
    logs=(LOG,),          # rotated with mail.log's rule (docker-mailserver's logrotate covers both)
    files=_files,
    order=95,      # after Postfix (90) and Dovecot: it only reads their log
)
