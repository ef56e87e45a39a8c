"""`setup check facts`: what a running server says about itself, for `mailwright check`.

The check runs outside the server (the operator's machine, CI) and asks the
server, through the same front door as every `setup` command, what it should
see: the FQDN, the ports that should and should not listen, the TLS level, the
filters and the DKIM signer that are on. JSON on stdout.
"""

from __future__ import annotations

import json
import sys

from .common import CliError, Context

# docker-mailserver's port table: the mail ports a client can see.
SMTP_PORTS = (25, 465, 587)


def facts(ctx: Context) -> dict:
    s = ctx.settings
    dovecot = not s.SMTP_ONLY
    wanted = {25: True, 465: True, 587: True,
              143: dovecot and s.ENABLE_IMAP, 993: dovecot and s.ENABLE_IMAP,
              110: dovecot and s.ENABLE_POP3, 995: dovecot and s.ENABLE_POP3,
              4190: dovecot and s.ENABLE_MANAGESIEVE}
    cfg = ctx.config()
    return {
        "fqdn": s.fqdn,
        "domains": cfg.domains or [s.domainname],
        "listen": sorted(p for p, on in wanted.items() if on),
        "closed": sorted(p for p, on in wanted.items() if not on),
        "tls_level": s.TLS_LEVEL or "modern",
        "ssl_type": s.SSL_TYPE,
        "spam_filter": bool(s.ENABLE_AMAVIS and s.ENABLE_SPAMASSASSIN),
        "spam_to_inbox": bool(s.SPAMASSASSIN_SPAM_TO_INBOX),
        "virus_filter": bool(s.ENABLE_AMAVIS and s.ENABLE_CLAMAV),
        "dkim": bool(s.ENABLE_OPENDKIM),
        "quotas": bool(s.ENABLE_QUOTAS),
    }


def check(ctx: Context, args: list[str]) -> int:
    if args[:1] != ["facts"]:
        raise CliError("'setup check' runs on the operator's side: ./setup.sh check [--address HOST] "
                       "(this server only answers 'setup check facts')")
    json.dump(facts(ctx), sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")
    return 0
