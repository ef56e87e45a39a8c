"""policyd-spf: SPF check of port 25's senders (ENABLE_POLICYD_SPF), Debian's postfix-policyd-spf-python.

No process of its own: Postfix's `spawn` starts `policyd-spf` for a client connection that
asks the policy, so the descriptor has no foreground command, unit or pidfile (nothing for the
supervisor or systemd). What it has: the package, its config file and Postfix hooks.
"""

from __future__ import annotations

from ops.daemon import Daemon

CONFIG = "/etc/postfix-policyd-spf-python/policyd-spf.conf"
SERVICE = "policyd-spf"          # master.cf service name, hence unix:private/policyd-spf
USER = "policyd-spf"             # made by the package's post-install
BINARY = "/usr/bin/policyd-spf"


def _files(s, cfg, tls):
    from ops.spf import config
    return config.files(s, cfg, tls)


def _postfix(s, cfg):
    from ops.spf import config
    return config.postfix(s, cfg)


DAEMON = Daemon(
    name="spf",
    # python3-dnspython: pyspf prefers it to pydns (python3-dns), which reads a SERVFAIL as "no
    # record" (SPF None: accepted); dnspython's NoNameservers is a temperror, hence deferred.
    packages=("postfix-policyd-spf-python", "python3-dnspython"),
    enabled=lambda s: s.ENABLE_POLICYD_SPF,
    foreground=(),                 # spawned by Postfix per connection: nothing to supervise
    unit="",
    pidfile="",
    files=_files,
    postfix=_postfix,
    logs_to_syslog=True,           # policyd-spf logs only to syslog: the container's sink (ops/syslog) writes it to mail.log
    order=60,
)
