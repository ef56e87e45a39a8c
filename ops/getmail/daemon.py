"""getmail6: pulls mail from remote POP3/IMAP accounts (the config folder's `getmail/<id>.cf`)
every GETMAIL_POLL minutes, as docker-mailserver does; each rc file names its own destination
(normally Dovecot's deliver, `MDA_external /usr/lib/dovecot/deliver -d user@domain`)."""

from __future__ import annotations

from ops.daemon import Daemon, Reload, shell_foreground

# Paths here rather than in config.py: the descriptor stays standard-library only.
RCS = "/etc/mailwright/getmail.json"          # {id: rc text}, 0600: holds passwords
OPTIONS = "/etc/default/mailwright-getmail"   # GETMAIL_POLL
UNIT = "mailwright-getmail.service"
UNIT_FILE = f"/etc/systemd/system/{UNIT}"
PIDFILE = "/run/getmail.pid"
STATE = "/var/lib/getmail"                    # getmail's getmaildir: the oldmail-* files (what was fetched)
FOLDER = "getmail"                            # in the config folder
GENERAL = "getmailrc_general.cf"


def _files(s, cfg, tls):
    from ops.getmail import config
    return config.files(s, cfg, tls)


# docker-mailserver's getmail service: a loop that runs getmail on every rc file, then sleeps
# GETMAIL_POLL minutes (it is a supervisor program, not a cron job). The shell idles in `wait`,
# so SIGTERM ends it at once; it ends the sleep with it. ops/getmail/run.py does one round.
FOREGROUND = shell_foreground(
    PIDFILE, f". {OPTIONS}", f"mkdir -p {STATE}/", f"chmod 0700 {STATE}/", "cd /opt/mailwright",
    "trap 'kill $nap 2>/dev/null; exit 0' TERM INT",
    "while :; do /usr/bin/python3 -m ops.getmail.run; sleep $((GETMAIL_POLL * 60)) & nap=$!; wait $nap; done",
)

DAEMON = Daemon(
    name="getmail",
    packages=("getmail6",),
    enabled=lambda s: s.ENABLE_GETMAIL,
    foreground=FOREGROUND,
    unit=UNIT,
    pidfile=PIDFILE,
    reload=Reload("restart"),      # each round reads the rc files afresh; a restart also runs a round now
    state=(STATE,),
    files=_files,
    order=96,      # after Postfix (90) and Dovecot (20), to which it delivers
)
