"""postsrsd's files and Postfix hooks (pure: no pyinfra).

- `/etc/default/postsrsd`: Debian's and docker-mailserver's file (SRS_DOMAIN from SRS_DOMAINNAME,
  else DOMAINNAME; SRS_EXCLUDE_DOMAINS; which secret file), sourced by Debian's launcher under
  both the container's supervisor and `postsrsd.service` on a VPS.
- `/etc/postsrsd.SRS_SECRET` (0600): the SRS_SECRET setting, one secret a line (the first signs,
  all verify), as docker-mailserver writes it; absent when the setting is empty, and then the
  generated /etc/postsrsd.secret is used (ops/postsrsd/secret.py: made at first start, kept in
  the state volume, never in the image).
- Postfix: `sender_canonical_maps = tcp:127.0.0.1:10001` for SRS_SENDER_CLASSES and
  `recipient_canonical_maps = tcp:127.0.0.1:10002` for envelope and header recipients, as
  docker-mailserver sets them. postsrsd down: the lookup fails and Postfix defers the mail
  (4xx); it never leaves unrewritten nor bounces.
"""

from __future__ import annotations

import re

from ops.configdir import ConfigDir
from ops.daemon import PostfixHooks
from ops.postsrsd.daemon import (CHROOT, FORWARD_PORT, GIVEN_SECRET, OPTIONS, REVERSE_PORT,  # noqa: F401
                                 SECRET)
from ops.render import ConfigFile, rendered
from ops.settings import Settings


def srs_domain(s: Settings) -> str:
    return (s.SRS_DOMAINNAME or s.domainname).lower()


def words(value: str) -> list[str]:
    """A comma (or space) separated setting as its items, in order, each once."""
    return list(dict.fromkeys(w for w in re.split(r"[\s,]+", value.strip()) if w))


def secrets(value: str) -> str:
    """SRS_SECRET as postsrsd's secret file: one secret a line."""
    return "".join(w + "\n" for w in words(value))


def files(s: Settings, _cfg: ConfigDir, _tls=None) -> list[ConfigFile]:
    if not s.ENABLE_SRS:
        # Off means gone: ours and the package's options file; the generated secret stays
        # (in the state volume) so turning SRS back on keeps bounces to old addresses working.
        return [ConfigFile(OPTIONS, None), ConfigFile(GIVEN_SECRET, None)]
    given = secrets(s.SRS_SECRET)
    ctx = dict(domain=srs_domain(s), exclude=",".join(w.lower() for w in words(s.SRS_EXCLUDE_DOMAINS)),
               secret=GIVEN_SECRET if given else SECRET, forward=FORWARD_PORT, reverse=REVERSE_PORT,
               chroot=CHROOT)
    return [
        rendered(OPTIONS, ctx),
        ConfigFile(GIVEN_SECRET, given or None, mode=0o600),
    ]


def postfix(s: Settings, _cfg: ConfigDir) -> PostfixHooks:
    if not s.ENABLE_SRS:
        return PostfixHooks()
    return PostfixHooks(main=(
        ("sender_canonical_maps", f"tcp:127.0.0.1:{FORWARD_PORT}"),
        ("sender_canonical_classes", ", ".join(words(s.SRS_SENDER_CLASSES))),
        ("recipient_canonical_maps", f"tcp:127.0.0.1:{REVERSE_PORT}"),
        ("recipient_canonical_classes", "envelope_recipient, header_recipient"),
    ))
