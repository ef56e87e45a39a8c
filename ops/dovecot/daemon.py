"""Dovecot: IMAP, POP3, ManageSieve, LMTP delivery, SASL for Postfix, quotas."""

from __future__ import annotations

from ops.daemon import Daemon, PostfixHooks, Reload

# Dovecot's quota-status service (dovecot.conf): Postfix asks it at RCPT time, so mail to a full
# mailbox is refused then instead of bounced after it was accepted.
QUOTA_POLICY = "check_policy_service inet:127.0.0.1:65265"


def _files(s, cfg, tls):
    # Imported here: the descriptors stay standard-library only (the image build reads them).
    from ops.dovecot import config
    return config.files(s, cfg, tls)


def _postfix(s, _cfg) -> PostfixHooks:
    if not s.quotas_enabled:
        return PostfixHooks()
    return PostfixHooks(recipient_restrictions=((90, QUOTA_POLICY),), mua_recipient_restrictions=((90, QUOTA_POLICY),))

DAEMON = Daemon(
    name="dovecot",
    packages=("dovecot-core", "dovecot-imapd", "dovecot-pop3d", "dovecot-lmtpd", "dovecot-managesieved",
              "dovecot-sieve", "dovecot-ldap"),
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
    files=_files,
    postfix=_postfix,
    uses_tls=True,
    order=20,
)
