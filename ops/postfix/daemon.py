"""Postfix, the hub: SMTP on 25 (postscreen), 465 and 587; every other daemon plugs into it (`PostfixHooks`)."""

from __future__ import annotations

from ops.daemon import Daemon, Job, Reload, always


def _files(s, cfg, tls):
    # Imported here: the descriptors stay standard-library only (the image build reads them).
    from ops import network
    from ops.postfix import config
    return config.files(s, cfg, tls, network.mynetworks(s))


DAEMON = Daemon(
    name="postfix",
    packages=("postfix", "postfix-pcre", "postfix-ldap", "postfix-lmdb", "libsasl2-modules"),
    enabled=always,
    # Postfix's master directly: `postfix start-fg` spends ~2 s in postfix-script's checks
    # (the queue layout they would fix is made by mailwright.prepare instead).
    foreground=("/usr/lib/postfix/sbin/master", "-d"),
    unit="postfix.service",
    pidfile="/var/spool/postfix/pid/master.pid",
    reload=Reload("command", ("/usr/sbin/postfix", "reload")),
    ports=lambda s: (25,),
    # /var/lib/logrotate: the mail log rotation's last date (the job below).
    state=("/var/lib/postfix", "/var/spool/postfix", "/var/lib/logrotate"),
    reads=("postfix-accounts.cf", "postfix-virtual.cf", "postfix-regexp.cf", "postfix-aliases.cf",
           "postfix-main.cf", "postfix-master.cf", "postfix-send-access.cf", "postfix-receive-access.cf",
           "postfix-relaymap.cf", "postfix-sasl-password.cf",
           "ldap-users.cf", "ldap-groups.cf", "ldap-aliases.cf", "ldap-domains.cf"),
    # Postfix writes the mail log (maillog_file; Dovecot too) and is always enabled: the log's
    # rotation is its job. Hourly; it rotates per LOGROTATE_INTERVAL/LOGROTATE_COUNT (mailwright.logrotate).
    jobs=(Job("maillog-rotate", 3600, ("/usr/bin/python3", "-m", "mailwright.logrotate")),),
    files=_files,
    uses_tls=True,
    order=90,      # last up: everything it hands mail to is listening by then
)
