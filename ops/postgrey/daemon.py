"""Postgrey: greylisting for port 25, a Postfix policy service on 127.0.0.1:10023."""

from __future__ import annotations

from ops.daemon import Daemon, Reload, shell_foreground

# Paths and port, here rather than in config.py: the descriptor stays standard-library
# only (the image build reads every descriptor); config.py imports them from here.
PORT = 10023
OPTIONS = "/etc/default/postgrey"
PIDFILE = "/run/postgrey.pid"
READS = ("whitelist_clients.local", "whitelist_recipients")
STATE = "/var/lib/postgrey"


def _files(s, cfg, tls):
    from ops.postgrey import config
    return config.files(s, cfg, tls)


def _postfix(s, cfg):
    from ops.postgrey import config
    return config.postfix(s, cfg)

# Debian's postgrey.service, for the container: the same /etc/default/postgrey, the same argv
# (`postgrey $POSTGREY_OPTS --greylist-text=...`, in the foreground; postgrey drops root for its
# `postgrey` user and keeps its database in /var/lib/postgrey). Postgrey writes a pidfile only
# with --daemonize, so the shell writes its own pid, which `exec` hands to postgrey.
FOREGROUND = shell_foreground(
    PIDFILE, f". {OPTIONS}", 'exec /usr/sbin/postgrey $POSTGREY_OPTS "--greylist-text=$POSTGREY_TEXT"')

DAEMON = Daemon(
    name="postgrey",
    packages=("postgrey",),
    enabled=lambda s: s.ENABLE_POSTGREY,
    foreground=FOREGROUND,
    unit="postgrey.service",
    pidfile=PIDFILE,
    # SIGHUP re-reads the whitelists (postgrey's sig_hup); option changes come with new settings,
    # i.e. a restart. Under systemd Debian's unit has no ExecReload: reload-or-restart restarts it.
    reload=Reload("signal", signal="HUP"),
    ports=lambda s: (PORT,) if s.ENABLE_POSTGREY else (),
    state=(STATE,),
    reads=READS,
    files=_files,
    postfix=_postfix,
    order=50,      # after Dovecot (20), before Postfix (90) which asks it about every recipient
)
