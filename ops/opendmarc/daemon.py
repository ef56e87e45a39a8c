"""OpenDMARC: DMARC verification milter after OpenDKIM: /run/opendmarc/opendmarc.sock in the
container, 127.0.0.1:8893 on a VPS (docker-mailserver's `inet:localhost:8893`)."""

from __future__ import annotations

from ops.daemon import Daemon, Reload, shell_foreground

PORT = 8893
CONF = "/etc/opendmarc.conf"          # Debian's path: its opendmarc.service runs `/usr/sbin/opendmarc` with it
IGNORE_HOSTS = "/etc/opendmarc/ignore.hosts"
RUNDIR = "/run/opendmarc"
PIDFILE = f"{RUNDIR}/opendmarc.pid"
SOCKET = f"{RUNDIR}/opendmarc.sock"   # the container's listener: see ops/opendkim/daemon.py SOCKET


def in_container(s) -> bool:
    return s.MAILWRIGHT_INIT != "systemd"


def _files(s, cfg, tls):
    from ops import network
    from ops.opendmarc import config
    return config.files(s, cfg, tls, network.mynetworks(s))


def _postfix(s, cfg):
    from ops.opendmarc import config
    return config.postfix(s, cfg)


FOREGROUND = shell_foreground(
    PIDFILE, f"install -d -o opendmarc -g opendmarc -m 0755 {RUNDIR}", f"rm -f {SOCKET}",
    f"exec /usr/sbin/opendmarc -f -c {CONF}")

DAEMON = Daemon(
    name="opendmarc",
    # dbconfig-no-thanks: opendmarc depends on `dbconfig-mysql | dbconfig-no-thanks`; without it apt
    # picks the MySQL client and the post-install asks for a reports database. mailwright keeps no
    # DMARC report history (no database).
    packages=("opendmarc", "dbconfig-no-thanks"),
    enabled=lambda s: s.ENABLE_OPENDMARC,
    foreground=FOREGROUND,
    unit="opendmarc.service",
    pidfile=PIDFILE,
    # SIGUSR1 re-reads the configuration (Debian's unit: `ExecReload=/bin/kill -USR1 $MAINPID`).
    reload=Reload("signal", signal="USR1"),
    ports=lambda s: (PORT,) if s.ENABLE_OPENDMARC and not in_container(s) else (),
    sockets=(SOCKET,),             # the container's listener (the health check looks for it)
    files=_files,
    postfix=_postfix,
    logs_to_syslog=True,           # `Syslog yes` is its only log: the container's sink (ops/syslog) writes it to mail.log
    order=41,      # after OpenDKIM (40), before Postfix (90)
)
