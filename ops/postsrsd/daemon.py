"""postsrsd: Sender Rewriting Scheme for forwarded mail (ENABLE_SRS), Debian's postsrsd 1.x.

Two Postfix `tcp:` tables on 127.0.0.1: 10001 rewrites a foreign envelope sender to
`SRS0=hash=tt=domain=user@SRS_DOMAINNAME` (so forwarded mail passes SPF at the next hop),
10002 turns such an address back into the original (so bounces find their way home).
"""

from __future__ import annotations

from ops.daemon import Daemon, Reload

# Here rather than in config.py: the descriptor stays standard-library only; config.py imports them.
FORWARD_PORT, REVERSE_PORT = 10001, 10002
OPTIONS = "/etc/default/postsrsd"                # Debian's: its launcher (and so its unit) sources it
LAUNCHER = "/usr/share/postsrsd/postsrsd-systemd-launcher"     # Debian's ExecStart: postsrsd in the foreground
SECRET = "/etc/postsrsd.secret"                  # generated (the package's post-install, or our first start)
GIVEN_SECRET = "/etc/postsrsd.SRS_SECRET"        # SRS_SECRET from the settings, one secret a line (0600)
STATE_SECRET = "etc-postsrsd.secret"             # docker-mailserver's name for it in /var/mail-state
PIDFILE = "/run/postsrsd.pid"
RUNTIME = "/opt/mailwright"                     # ops.facts.RUNTIME (that module needs pyinfra; a unit test keeps them equal)
CHROOT = "/var/lib/postsrsd"


def _files(s, cfg, tls):
    from ops.postsrsd import config
    return config.files(s, cfg, tls)


def _postfix(s, cfg):
    from ops.postsrsd import config
    return config.postfix(s, cfg)


# Container: ops/postsrsd/secret.py (standard library only, run as a script) makes sure the
# generated secret exists (in the state volume when one is mounted), writes its own pid and
# execs Debian's launcher, which sources /etc/default/postsrsd and execs postsrsd: one pid.
# A VPS runs Debian's postsrsd.service (the same launcher; the post-install made the secret).
FOREGROUND = ("/usr/bin/python3", f"{RUNTIME}/ops/postsrsd/secret.py", "--secret", SECRET,
              "--state-name", STATE_SECRET, "--pidfile", PIDFILE, "--", LAUNCHER)

DAEMON = Daemon(
    name="postsrsd",
    packages=("postsrsd",),
    enabled=lambda s: s.ENABLE_SRS,
    foreground=FOREGROUND,
    unit="postsrsd.service",
    pidfile=PIDFILE,
    reload=Reload("restart"),          # postsrsd re-reads nothing: new options or secret, new process
    ports=lambda s: (FORWARD_PORT, REVERSE_PORT) if s.ENABLE_SRS else (),
    state=(CHROOT,),                   # docker-mailserver keeps lib-postsrsd too (its empty chroot)
    secrets=(SECRET,),                 # the post-install's secret: every container makes its own
    files=_files,
    postfix=_postfix,
    order=10,                          # docker-mailserver starts it first; Postfix (90) asks it
)
