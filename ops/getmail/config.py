"""getmail's files, computed from the settings and the config folder (pure: no pyinfra).

docker-mailserver turns each `getmail/<id>.cf` of the config folder into `/etc/getmailrc.d/<id>`:
`getmailrc_general` (its defaults, or the folder's `getmail/getmailrc_general.cf`) followed by
the file. Here the two are merged section by section (the account's file wins key by key), so an
account file with its own `[options]` is not a duplicate section. The rc texts go into ONE file,
`/etc/mailwright/getmail.json` (`{id: rc text}`, 0600: they hold passwords), which the runner
(ops/getmail/run.py) reads at each round: one fixed path, so turning getmail off removes it.

A file that getmail could not use (not UTF-8, not INI syntax, no `[retriever]` or `[destination]`
section with a `type`, an id other than letters, digits, '.', '_', '-', a symbolic link) is left
out, logged with its name. The folder's files are the operator's (trusted), like the whole folder.
"""

from __future__ import annotations

import configparser
import io
import json
import logging
import re

from ops.configdir import ConfigDir, SymlinkRefused, read_file
from ops.render import ConfigFile, foreground_unit, rendered
from ops.settings import Settings

from ops.getmail.daemon import FOLDER, FOREGROUND, GENERAL, OPTIONS, RCS, UNIT_FILE  # noqa: F401

log = logging.getLogger("mailwright.config")

# docker-mailserver's getmailrc_general.
DEFAULTS = (
    "[options]\n"
    "verbose = 0\n"
    "read_all = false\n"
    "delete = false\n"
    "max_messages_per_session = 500\n"
    "received = false\n"
    "delivered_to = false\n"
    "message_log_syslog = true\n"
)
ID = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,99}\Z")


class Unusable(ValueError):
    """An rc file getmail could not use; the message says why (never a value from it)."""


def parse(text: str) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(interpolation=None, strict=True)
    parser.optionxform = str           # getmail's keys are case-sensitive
    try:
        parser.read_string(text)
    except configparser.Error as e:
        line = getattr(e, "lineno", None)
        raise Unusable(f"not getmail's INI syntax ({type(e).__name__}{f' at line {line}' if line else ''})") from None
    return parser


def merge(general: str, account: str) -> str:
    """The rc file getmail reads: the general sections, then the account's, key by key."""
    base, own = parse(general), parse(account)
    for section in ("retriever", "destination"):
        if not own.has_section(section) or not own.get(section, "type", fallback="").strip():
            raise Unusable(f"no [{section}] section with a type")
    for section in own.sections():
        if not base.has_section(section):
            base.add_section(section)
        for key, value in own.items(section):
            base.set(section, key, value)
    out = io.StringIO()
    base.write(out)
    return out.getvalue()


def _read(cfg: ConfigDir, name: str) -> str | None:
    path = cfg.path / FOLDER / name
    try:
        data = read_file(path)
    except SymlinkRefused:
        raise Unusable("is a symbolic link; symbolic links inside the config folder are not followed") from None
    except OSError as e:
        raise Unusable(f"cannot be read ({e.strerror})") from None
    if data is None:
        return None
    try:
        text = data.decode()
    except UnicodeDecodeError:
        raise Unusable("is not UTF-8 text") from None
    if "\0" in text:
        raise Unusable("holds a NUL character")
    return text


def accounts(cfg: ConfigDir) -> dict[str, str]:
    """{id: merged rc text} of the config folder's getmail/<id>.cf, in name order; problems logged."""
    folder = cfg.path / FOLDER
    if folder.is_symlink() or not folder.is_dir():
        if folder.is_symlink():
            log.error("%s/: is a symbolic link; not followed (folder skipped)", FOLDER)
        return {}
    try:
        general = _read(cfg, GENERAL)
        if general is not None:
            parse(general)
    except Unusable as e:
        log.error("%s/%s: %s (using the defaults instead)", FOLDER, GENERAL, e)
        general = None
    general = DEFAULTS if general is None else general
    out = {}
    for path in sorted(folder.iterdir()):
        name = path.name
        if not name.endswith(".cf") or name == GENERAL:
            continue
        rc_id = name[:-3]
        try:
            if not ID.fullmatch(rc_id):
                raise Unusable("the name before .cf must be letters, digits, '.', '_' or '-'")
            text = _read(cfg, name)
            if text is None:
                continue
            out[rc_id] = merge(general, text)
        except Unusable as e:
            log.error("%s/%s: %s (file skipped)", FOLDER, name, e)
    return out


def files(s: Settings, cfg: ConfigDir, _tls=None) -> list[ConfigFile]:
    unit = foreground_unit(s, UNIT_FILE, FOREGROUND, s.ENABLE_GETMAIL)
    if not s.ENABLE_GETMAIL:
        return [ConfigFile(RCS, None), ConfigFile(OPTIONS, None), unit]
    rcs = accounts(cfg)
    if not rcs:
        log.warning("ENABLE_GETMAIL=1 but the config folder has no usable getmail/<id>.cf: nothing to fetch")
    return [
        ConfigFile(RCS, json.dumps(rcs, indent=1, sort_keys=True) + "\n", mode=0o600),
        rendered(OPTIONS, dict(s=s)),
        unit,
    ]
