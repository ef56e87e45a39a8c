"""Fetchmail's files, computed from the settings and the config folder (pure: no pyinfra).

- `/etc/fetchmailrc`: docker-mailserver's file: its general part (`set daemon FETCHMAIL_POLL`)
  followed by the config folder's `fetchmail.cf` as it is. It holds passwords: 0600, owned by
  the fetchmail user (fetchmail refuses an rc file that is not its own or that others can read).
  No `set syslog` (the container has no syslog socket): fetchmail logs to the daemon's output.
  Mail is delivered as fetchmail does by default: over SMTP to localhost:25 (Postfix).
- `/etc/default/mailwright-fetchmail`: FETCHMAIL_PARALLEL for the runner (ops/fetchmail/run.py).
- On a VPS (MAILWRIGHT_INIT=systemd), the unit `mailwright-fetchmail.service`, running the same
  foreground command as the container's supervisor.

fetchmail.cf is the operator's file (trusted, like the whole config folder); what is checked
here is what would make fetchmail misread it: a file that is not UTF-8 text or holds a NUL, or a
symbolic link. Such a file is left out (logged, naming the file), and fetchmail has nothing to fetch.
"""

from __future__ import annotations

import logging

from ops.configdir import ConfigDir, SymlinkRefused, read_file
from ops.render import ConfigFile, foreground_unit, rendered
from ops.settings import Settings

from ops.fetchmail.daemon import (FOREGROUND, GROUP, OPTIONS, RC, SOURCE, UNIT, UNIT_FILE,  # noqa: F401
                                  USER)

log = logging.getLogger("mailwright.config")


def source_text(cfg: ConfigDir) -> str | None:
    """fetchmail.cf's text, or None (absent, or unusable: logged)."""
    try:
        data = read_file(cfg.path / SOURCE)
    except SymlinkRefused:
        log.error("%s: is a symbolic link; symbolic links inside the config folder are not followed "
                  "(file skipped)", SOURCE)
        return None
    except OSError as e:
        log.error("%s: cannot be read (%s) (file skipped)", SOURCE, e.strerror)
        return None
    if data is None:
        return None
    try:
        text = data.decode()
    except UnicodeDecodeError as e:
        log.error("%s: is not UTF-8 text (byte %d) (file skipped)", SOURCE, e.start)
        return None
    if "\0" in text:
        log.error("%s: holds a NUL character (file skipped)", SOURCE)
        return None
    return text.replace("\r\n", "\n")


def rc_text(s: Settings, cfg: ConfigDir) -> str:
    text = source_text(cfg) or ""
    if text and not text.endswith("\n"):
        text += "\n"
    return rendered(RC, dict(s=s)).content + text


def files(s: Settings, cfg: ConfigDir, _tls=None) -> list[ConfigFile]:
    unit = foreground_unit(s, UNIT_FILE, FOREGROUND, s.ENABLE_FETCHMAIL)
    if not s.ENABLE_FETCHMAIL:
        return [ConfigFile(RC, None), ConfigFile(OPTIONS, None), unit]
    return [
        ConfigFile(RC, rc_text(s, cfg), mode=0o600, owner=USER, group=GROUP),
        rendered(OPTIONS, dict(s=s)),
        unit,
    ]
