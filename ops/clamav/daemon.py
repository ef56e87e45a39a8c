"""ClamAV: clamd on a unix socket, asked by Amavis for every message (ENABLE_CLAMAV).

Signatures live in /var/lib/clamav (the state volume's `lib-clamav`): clamd loads whatever
signature files are there (the official databases, or a custom `.hdb`/`.ndb`) and re-reads them
on `clamdscan --reload` or by itself (SelfCheck). No signatures at all: `run.sh` waits for some
instead of letting clamd exit, says so once in mail.log, and Amavis, finding no scanner, defers
the mail (4xx). freshclam is a scheduled job, never a daemon.
"""

from __future__ import annotations

from ops.daemon import Daemon, Job, Reload

# Paths, here rather than in config.py: the descriptor stays standard-library only.
RUNTIME = "/opt/mailwright"                     # ops.facts.RUNTIME: the runtime on every target
RUN_SH = f"{RUNTIME}/ops/clamav/run.sh"
CLAMD_CONF = "/etc/clamav/clamd.conf"
SOCKET = "/run/clamav/clamd.ctl"                # Debian's, and the one of Debian's 15-av_scanners
PIDFILE = "/run/clamav/clamd.pid"
STATE = "/var/lib/clamav"
LOGS = ("/var/log/mail/clamav.log", "/var/log/mail/freshclam.log")   # run.sh's $LOGDIR; clamd.conf's LogFile
AMAVIS_SNIPPET = "/etc/amavis/conf.d/55-mailwright-clamav"
UNIT = "clamav-daemon.service"                  # Debian's name; mailwright's unit file replaces Debian's
UNIT_FILE = f"/etc/systemd/system/{UNIT}"
FRESHCLAM_EVERY = 6 * 3600                      # docker-mailserver's cron: every 6 hours


def _files(s, cfg, tls):
    from ops.clamav import config
    return config.files(s, cfg, tls)


DAEMON = Daemon(
    name="clamav",
    # clamd, clamdscan (`--reload`, checks) and freshclam; not the `clamav` package (clamscan),
    # which Amavis would otherwise pick as a backup scanner loading every signature per message.
    packages=("clamav-daemon", "clamdscan", "clamav-freshclam"),
    enabled=lambda s: s.ENABLE_CLAMAV,
    # run.sh keeps clamd in the foreground, waits for signatures, and starts it again when it exits
    # (a restart-style reload TERMs clamd's pid, from its pidfile; TERM to run.sh stops both).
    foreground=("/bin/sh", RUN_SH, "clamd"),
    unit=UNIT,
    pidfile=PIDFILE,
    # clamd.conf is read at start only (clamd's RELOAD re-reads the signatures, not the options).
    reload=Reload("restart"),
    sockets=(SOCKET,),
    state=(STATE,),
    logs=LOGS,            # rotated with mail.log's rule, as docker-mailserver's logrotate does
    jobs=(Job("freshclam", FRESHCLAM_EVERY, ("/bin/sh", RUN_SH, "freshclam")),),
    files=_files,
    # After Amavis (60): its install made the amavis user this one's install joins groups with;
    # Amavis asks clamd only when a message comes. Before Postfix (90).
    order=70,
)
