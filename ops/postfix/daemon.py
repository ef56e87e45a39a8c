"""Postfix, the hub: SMTP on 25 (postscreen), 465 and 587; every other daemon plugs into it (`PostfixHooks`)."""

from __future__ import annotations

from ops import network
from ops.daemon import Daemon, Reload, always
from ops.postfix import config


def _files(s, cfg, tls):
    return config.files(s, cfg, tls, network.mynetworks(s))


DAEMON = Daemon(
    name="postfix",
    packages=("postfix", "postfix-pcre", "libsasl2-modules"),
    enabled=always,
    # Postfix's master directly: `postfix start-fg` spends ~2 s in postfix-script's checks
    # (the queue layout they would fix is made by mailwright.prepare instead).
    foreground=("/usr/lib/postfix/sbin/master", "-d"),
    unit="postfix.service",
    pidfile="/var/spool/postfix/pid/master.pid",
    reload=Reload("command", ("/usr/sbin/postfix", "reload")),
    ports=lambda s: (25,),
    state=("/var/lib/postfix", "/var/spool/postfix"),
    reads=("postfix-accounts.cf", "postfix-virtual.cf", "postfix-regexp.cf", "postfix-aliases.cf",
           "postfix-main.cf", "postfix-master.cf", "postfix-send-access.cf", "postfix-receive-access.cf",
           "postfix-relaymap.cf", "postfix-sasl-password.cf"),
    files=_files,
    uses_tls=True,
    order=90,      # last up: everything it hands mail to is listening by then
)
