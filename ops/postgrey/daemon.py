"""Postgrey: greylisting for port 25, a Postfix policy service on 127.0.0.1:10023."""

from __future__ import annotations

from ops.daemon import Daemon, Reload
from ops.postgrey import config

# Debian's postgrey.service, for the container: the same /etc/default/postgrey, the same argv
# (`postgrey $POSTGREY_OPTS --greylist-text=...`, in the foreground; postgrey drops root for its
# `postgrey` user and keeps its database in /var/lib/postgrey). Postgrey writes a pidfile only
# with --daemonize, so the shell writes its own pid, which `exec` hands to postgrey.
FOREGROUND = (
    "/bin/sh", "-c",
    f". {config.OPTIONS} && echo $$ > {config.PIDFILE} && "
    'exec /usr/sbin/postgrey $POSTGREY_OPTS "--greylist-text=$POSTGREY_TEXT"',
)

DAEMON = Daemon(
    name="postgrey",
    packages=("postgrey",),
    enabled=lambda s: s.ENABLE_POSTGREY,
    foreground=FOREGROUND,
    unit="postgrey.service",
    pidfile=config.PIDFILE,
    # SIGHUP re-reads the whitelists (postgrey's sig_hup); option changes come with new settings,
    # i.e. a restart. Under systemd Debian's unit has no ExecReload: reload-or-restart restarts it.
    reload=Reload("signal", signal="HUP"),
    ports=config.ports,
    state=(config.STATE,),
    reads=config.READS,
    files=config.files,
    postfix=config.postfix,
    order=50,      # after Dovecot (20), before Postfix (90) which asks it about every recipient
)
