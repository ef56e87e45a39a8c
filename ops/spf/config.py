"""policyd-spf's files and Postfix hooks (pure: no pyinfra).

- `/etc/postfix-policyd-spf-python/policyd-spf.conf`: docker-mailserver's settings (reject an
  SPF `Fail` of the HELO name or the MAIL FROM domain with 550 5.7.23, record the other results
  in a `Received-SPF` header) with one difference: `TempError_Defer = True`. A DNS timeout or
  SERVFAIL while checking is an SPF `temperror`; docker-mailserver accepts such mail with a
  header, mailwright defers it (450 4.7.24 via `defer_if_permit`) so the sender retries once DNS
  answers. A `permerror` (a broken SPF record) is accepted with the header, as there.
- Postfix: a `spawn` service in master.cf (`policyd-spf`, run as the package's `policyd-spf`
  user) and `check_policy_service unix:private/policyd-spf` in port 25's recipient
  restrictions, after `reject_unauth_destination` (the hub puts every daemon's restrictions
  there) and after `permit_sasl_authenticated`/`permit_mynetworks`: logged-in users on 465/587
  (and on 25) are not SPF-checked. A policy service that fails makes Postfix defer (451 4.3.5).
"""

from __future__ import annotations

from ops.configdir import ConfigDir
from ops.daemon import PostfixHooks
from ops.render import ConfigFile, rendered
from ops.settings import Settings
from ops.spf.daemon import BINARY, CONFIG, SERVICE, USER

POLICY = f"check_policy_service unix:private/{SERVICE}"
# PostfixHooks order: first of the policy services (before Postgrey at 50): a forged sender is
# refused before it takes a greylisting slot; the quota check (90) comes last.
POLICY_ORDER = 30
# One line: spawn's arguments may follow the command on the same line.
MASTER_SERVICE = f"{SERVICE} unix  -       n       n       -       0       spawn user={USER} argv={BINARY}"
# How long a spawned policyd-spf may live (Debian's README: its cache lasts the connection).
TIME_LIMIT = ("policyd-spf_time_limit", "3600")


def files(s: Settings, _cfg: ConfigDir, _tls=None) -> list[ConfigFile]:
    if not s.ENABLE_POLICYD_SPF:
        return [ConfigFile(CONFIG, None)]
    # Read by every spawned policyd-spf at its start: a change needs no reload (Postfix's own
    # reload, for master.cf, makes idle policy processes exit).
    return [rendered(CONFIG, dict(s=s), reloads=())]


def postfix(s: Settings, _cfg: ConfigDir) -> PostfixHooks:
    if not s.ENABLE_POLICYD_SPF:
        return PostfixHooks()
    return PostfixHooks(recipient_restrictions=((POLICY_ORDER, POLICY),),
                        master_services=(MASTER_SERVICE,), main=(TIME_LIMIT,))
