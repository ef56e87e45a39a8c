"""The container's syslog sink: `/dev/log` for the daemons that log only through syslog(3).

OpenDKIM, OpenDMARC and policyd-spf have no other log; the container has no syslog daemon, so
without this their lines (OpenDKIM's reasons for a tempfail, a crash's last words) were lost.
inetutils' syslogd (Debian's inetutils-syslogd: one small C binary, about 0.2 MB PSS idle) binds
/dev/log and appends the `mail` facility to /var/log/mail/mail.log in syslog's traditional layout
(`Nov 29 10:35:22 host opendkim[286]: ...`), beside Postfix's and Dovecot's lines (O_APPEND: the
log's copy-and-truncate rotation needs no reopen). No network socket (`--no-forward`, no `-r`),
no kernel log, no `-- MARK --` lines.

Derived from the descriptors: it runs in a container while an enabled daemon declares
`logs_to_syslog`. On a VPS (MAILWRIGHT_INIT=systemd) the journal owns /dev/log: never installed
nor run there.
"""

from __future__ import annotations

from ops.daemon import Daemon, Reload

CONF = "/etc/mailwright/syslog.conf"   # ours: /etc/syslog.conf may belong to a VPS's own syslogd (never touched)
PIDFILE = "/run/syslogd.pid"           # syslogd writes it itself (-P), in the foreground too
SOCKET = "/dev/log"
MAIL_LOG = "/var/log/mail/mail.log"
NAME = "syslog"


def wanted(s) -> bool:
    """In a container, while an enabled daemon logs only to syslog."""
    if s.MAILWRIGHT_INIT == "systemd":
        return False
    from ops import daemons
    return any(d.logs_to_syslog and d.name != NAME and d.enabled(s) for d in daemons.all_daemons())


def _files(s, cfg, tls):
    from ops.syslog import config
    return config.files(s, cfg, tls)


FOREGROUND = ("/usr/sbin/syslogd", "--no-detach", "--no-klog", "--no-forward", "--mark=0",
              f"--rcfile={CONF}", f"--pidfile={PIDFILE}", f"--socket={SOCKET}")

DAEMON = Daemon(
    name=NAME,
    packages=("inetutils-syslogd",),
    enabled=wanted,
    foreground=FOREGROUND,
    unit="inetutils-syslogd.service",   # never enabled on a VPS (see `wanted`); the field is required
    pidfile=PIDFILE,
    reload=Reload("signal", signal="HUP"),      # syslogd re-reads its rules on SIGHUP
    sockets=(SOCKET,),
    files=_files,
    order=1,        # first: /dev/log is there before the daemons that log to it start
)
