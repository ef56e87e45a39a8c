"""Dovecot: IMAP, POP3, ManageSieve, LMTP delivery, SASL for Postfix, quotas."""

from __future__ import annotations

from ops.daemon import Daemon, Reload
from ops.dovecot import config

DAEMON = Daemon(
    name="dovecot",
    packages=("dovecot-core", "dovecot-imapd", "dovecot-pop3d", "dovecot-lmtpd", "dovecot-managesieved",
              "dovecot-sieve"),
    enabled=lambda s: s.dovecot_enabled,
    foreground=("/usr/sbin/dovecot", "-F"),
    unit="dovecot.service",
    pidfile="/run/dovecot/master.pid",
    reload=Reload("command", ("/usr/bin/doveadm", "reload")),
    ports=lambda s: (143,) if s.ENABLE_IMAP else (),
    state=("/var/lib/dovecot",),
    # dovecot-core links its key and certificate to the snakeoil pair; mailwright's dovecot.conf never uses them.
    secrets=("/etc/dovecot/private/dovecot.key", "/etc/dovecot/private/dovecot.pem"),
    reads=("postfix-accounts.cf", "dovecot-quotas.cf", "dovecot-masters.cf", "dovecot.cf",
           "before.dovecot.sieve", "after.dovecot.sieve"),
    files=config.files,
    order=20,
)
