"""Amavis: Postfix's content filter on 127.0.0.1:10024, re-injecting on 127.0.0.1:10025.

SpamAssassin has no process of its own: Amavis loads it (ENABLE_SPAMASSASSIN), so its
settings, files and jobs live here too. ClamAV (ops/clamav) adds its `@av_scanners` in
/etc/amavis/conf.d/55-mailwright-clamav, between this folder's 45- and Debian's 50-user.
"""

from __future__ import annotations

from ops.daemon import Daemon, Job, Reload

# Here rather than in config.py: the descriptor stays standard-library only; config.py imports them.
PORT = 10024                      # Amavis listens (Postfix's content_filter)
REINJECT = 10025                  # Postfix's re-injection smtpd (Amavis forwards here)
PIDFILE = "/run/amavis/amavisd.pid"
HOME = "/var/lib/amavis"          # $MYHOME: quarantine (virusmails/), Bayes (.spamassassin/), db/
SA_RULES = "/var/lib/spamassassin"   # sa-update's rules (replace Debian's packaged ones once fetched)
SA_KEYS = f"{SA_RULES}/sa-update-keys"   # sa-update's GnuPG home (the update channel's public key)
LOG = "/var/log/mail/mail.log"
READS = ("amavis.cf", "spamassassin-rules.cf")

# Container: Amavis in the foreground as root; it drops to the amavis user itself ($daemon_user).
# Without syslog in the container it logs to stderr (`<prio>message`, no time stamp): a FIFO and a
# one-line awk add syslog's time stamp and tag and append to the mail log (awk ends at Amavis's end,
# when the FIFO closes). `exec` keeps the supervisor's pid = Amavis, so TERM and HUP reach it.
# The owners are reset at each start: a state volume may come from an image with other uids.
FOREGROUND = (
    "/bin/sh", "-c",
    "mkdir -p /run/amavis && chown amavis:amavis /run/amavis && "
    f"chown amavis:amavis {HOME} {HOME}/db {HOME}/tmp {HOME}/virusmails 2>/dev/null; "
    "rm -rf /var/lib/amavis/tmp/amavis-* /var/lib/amavis/amavis-* /run/amavis/log.fifo; "
    "mkfifo -m 600 /run/amavis/log.fifo && "
    "{ mawk -W interactive -v host=\"$(hostname)\" '{ sub(/^<[0-9]+>/, \"\"); "
    "print strftime(\"%b %e %H:%M:%S\") \" \" host \" amavis: \" $0; fflush() }' "
    f"</run/amavis/log.fifo >>{LOG} & }} && "
    "exec /usr/sbin/amavisd foreground 2>/run/amavis/log.fifo",
)


def _files(s, cfg, tls):
    from ops.amavis import config
    return config.files(s, cfg, tls)


def _postfix(s, cfg):
    from ops.amavis import config
    return config.postfix(s, cfg)


DAEMON = Daemon(
    name="amavis",
    # systemd-standalone-sysusers: amavisd-new depends on `systemd | systemd-standalone-sysusers | ...`;
    # naming the small one keeps systemd out of the image (pyinfra would pick systemctl then).
    # gpg, gpg-agent: sa-update verifies the rules it downloads (it refuses to run without gpg; the
    # key import needs the agent).
    packages=("amavisd-new", "spamassassin", "gpg", "gpg-agent", "systemd-standalone-sysusers"),
    enabled=lambda s: s.ENABLE_AMAVIS,
    foreground=FOREGROUND,
    unit="amavis.service",
    pidfile=PIDFILE,
    # SIGHUP: Amavis re-executes itself with the same pid and re-reads its configuration (amavisd(8)
    # `reload`). Debian's unit has ExecReload=amavisd reload (the same signal).
    reload=Reload("signal", signal="HUP"),
    ports=lambda s: (PORT,) if s.ENABLE_AMAVIS else (),
    state=(HOME, SA_RULES),
    # spamassassin's post-install imports its update key into a keyring with time stamps inside (not
    # reproducible); the sa-update job imports it again when the keyring is missing.
    secrets=(f"{SA_KEYS}/**",),
    reads=READS,
    jobs=(
        # docker-mailserver's daily `find /var/lib/amavis/virusmails/ -type f -mtime +N -delete`.
        Job("amavis-virusmails", 86400, ("/usr/bin/python3", "-m", "ops.amavis.jobs", "virusmails")),
        # Rules (and KAM's channel): keeps the old rules and logs when the server cannot be reached.
        Job("sa-update", 86400, ("/usr/bin/python3", "-m", "ops.amavis.jobs", "sa-update"),
            enabled=lambda s: s.ENABLE_SPAMASSASSIN),
    ),
    files=_files,
    postfix=_postfix,
    order=60,      # after Postgrey (50); Postfix (90) does not wait for it: mail waits in the queue
)
