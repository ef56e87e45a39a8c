"""Fetchmail: pulls mail from remote POP3/IMAP accounts (the config folder's fetchmail.cf) and hands
it to the local Postfix on port 25, as docker-mailserver does."""

from __future__ import annotations

from ops.daemon import Daemon, Reload, shell_foreground

# Paths here rather than in config.py: the descriptor stays standard-library only (the image
# build reads every descriptor); config.py and run.py import them from here.
RC = "/etc/fetchmailrc"                              # docker-mailserver's path; 0600, owned by fetchmail
OPTIONS = "/etc/default/mailwright-fetchmail"        # FETCHMAIL_PARALLEL for the runner
UNIT = "mailwright-fetchmail.service"
UNIT_FILE = f"/etc/systemd/system/{UNIT}"
PIDFILE = "/run/mailwright-fetchmail.pid"          # not fetchmail's own (root's default: /run/fetchmail.pid)
RUN_DIR = "/run/fetchmail"                           # fetchmail's own pid files, the split rc files
STATE = "/var/lib/fetchmail"                         # the fetchmail user's home: the UIDL (idfile) cache
USER, GROUP = "fetchmail", "nogroup"                 # Debian's package creates them
SOURCE = "fetchmail.cf"


def _files(s, cfg, tls):
    from ops.fetchmail import config
    return config.files(s, cfg, tls)


# Runs as root only to write its pid (the shell's, which `exec` hands on), make fetchmail's run
# folder and give it its state folder (a fresh folder on /var/mail-state is root's); then
# setpriv drops to the fetchmail user for good and ops/fetchmail/run.py execs fetchmail (or,
# with FETCHMAIL_PARALLEL=1, starts one fetchmail per poll entry and waits for them).
FOREGROUND = shell_foreground(
    PIDFILE, f". {OPTIONS}", f"mkdir -p {RUN_DIR}", f"chown {USER}:{GROUP} {RUN_DIR} {STATE}/",
    f"chmod 0700 {STATE}/", "cd /opt/mailwright",
    f"exec setpriv --reuid={USER} --regid={GROUP} --clear-groups --reset-env "
    f'/usr/bin/python3 -m ops.fetchmail.run "$FETCHMAIL_PARALLEL"',
)

DAEMON = Daemon(
    name="fetchmail",
    packages=("fetchmail",),
    enabled=lambda s: s.ENABLE_FETCHMAIL,
    foreground=FOREGROUND,
    unit=UNIT,
    pidfile=PIDFILE,
    # fetchmail re-reads its rc file only when it restarts (docker-mailserver needs a restart too).
    reload=Reload("restart"),
    state=(STATE,),
    reads=(SOURCE,),
    files=_files,
    order=95,      # after Postfix (90), to which it delivers
)
