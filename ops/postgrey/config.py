"""Postgrey's files, computed from the settings and the config folder (pure: no pyinfra).

- `/etc/default/postgrey` (POSTGREY_OPTS, POSTGREY_TEXT), docker-mailserver's and Debian's
  file: Debian's `postgrey.service` reads it on a VPS, the container's supervisor sources it.
- The config folder's `whitelist_clients.local` and `whitelist_recipients`, checked line by
  line, become `/etc/postgrey/whitelist_clients.local` and `whitelist_recipients.local`.
  Postgrey reads those next to Debian's packaged `whitelist_clients` and `whitelist_recipients`
  (its defaults), so the operator's entries add to Debian's. docker-mailserver copied
  `whitelist_recipients` over Debian's file instead; keeping Debian's two entries
  (`postmaster@`, `abuse@`) whitelisted as well is the one difference.

A malformed whitelist line is logged with its file and line number and left out:
postgrey itself would only warn about some of them, and would die on a regular
expression it cannot compile (every mail then deferred).
"""

from __future__ import annotations

import ipaddress
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from ops.configdir import (DOMAIN, LOCAL_PART, ConfigDir, Problem, SymlinkRefused, read_file,
                           split_lines)
from ops.daemon import PostfixHooks
from ops.render import ConfigFile, rendered
from ops.settings import Settings

log = logging.getLogger("mailwright.config")

from ops.postgrey.daemon import OPTIONS, PIDFILE, PORT, READS, STATE  # noqa: E402,F401  (one place each)

LISTEN = f"127.0.0.1:{PORT}"
POLICY = f"check_policy_service inet:{LISTEN}"
POLICY_ORDER = 50          # PostfixHooks order: after reject_unauth_destination, before the quota check (90)
CLIENTS_SOURCE, RECIPIENTS_SOURCE = READS
CLIENTS = "/etc/postgrey/whitelist_clients.local"
RECIPIENTS = "/etc/postgrey/whitelist_recipients.local"

_IPV4 = re.compile(r"\A[0-9]{1,3}(?:\.[0-9]{1,3}){3}(?:/[0-9]{1,2})?\Z")
_IPV4_PARTIAL = re.compile(r"\A[0-9]{1,3}(?:\.[0-9]{1,3}){1,2}\Z")     # 10.1.2 (a /24), 10.1
_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_HOST = re.compile(rf"\A\.?{_LABEL}(?:\.{_LABEL})*\Z")                  # a host or a domain (suffix match)


def _entries(text: str):
    """(line number, entry) as postgrey sees them: `#` starts a comment anywhere, spaces trimmed."""
    for n, raw in enumerate(split_lines(text), 1):
        entry = raw.split("#", 1)[0].strip()
        if entry:
            yield n, entry


def _regex_problem(entry: str) -> str | None:
    """`/re/` entries: postgrey compiles them with Perl at start and dies on a bad one."""
    if not re.fullmatch(r"/\S+/", entry):
        return None
    try:
        re.compile(entry[1:-1])
    except re.error as e:
        return f"{entry!r}: the regular expression does not compile ({e.msg})"
    return ""


def check_client(entry: str) -> tuple[str | None, str]:
    """(the entry as written to postgrey's file, or None; why not)."""
    bad = _regex_problem(entry)
    if bad is not None:
        return (None, bad) if bad else (entry, "")
    if re.search(r"\s", entry):
        return None, f"{entry!r}: one host, domain, address or /regex/ per line"
    if _IPV4.fullmatch(entry) or ":" in entry:
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            return None, f"{entry!r} is not an IP address or network"
        return entry.lower(), ""
    if _IPV4_PARTIAL.fullmatch(entry):
        if any(int(octet) > 255 for octet in entry.split(".")):
            return None, f"{entry!r} is not a partial IPv4 address"
        return entry, ""
    if _HOST.fullmatch(entry.lower()):
        return entry.lower(), ""
    return None, f"{entry!r} is not a host name, a domain, an IP address (or network) or a /regex/"


def check_recipient(entry: str) -> tuple[str | None, str]:
    bad = _regex_problem(entry)
    if bad is not None:
        return (None, bad) if bad else (entry, "")
    if re.search(r"\s", entry):
        return None, f"{entry!r}: one address, user@, domain or /regex/ per line"
    value = entry.lower()
    local, at, domain = value.partition("@")
    if not at:
        ok = DOMAIN.fullmatch(value) is not None
    elif not local:
        return None, f"{entry!r}: write a whole domain without the '@' ({domain})"
    else:
        ok = LOCAL_PART.fullmatch(local) is not None and (not domain or DOMAIN.fullmatch(domain) is not None)
    if not ok:
        return None, f"{entry!r} is not an address (user@domain), a local part (user@), a domain or a /regex/"
    return value, ""


CHECKS = {CLIENTS_SOURCE: check_client, RECIPIENTS_SOURCE: check_recipient}


@dataclass(frozen=True)
class Whitelist:
    source: str                        # its name in the config folder
    entries: tuple[str, ...] | None    # None: the config folder has no such file
    problems: tuple[Problem, ...] = ()


def parse(source: str, text: str) -> Whitelist:
    """Check one whitelist's text; pure."""
    check = CHECKS[source]
    entries, problems = [], []
    for n, entry in _entries(text):
        kept, why = check(entry)
        if kept is None:
            problems.append(Problem(source, n, why))
        elif kept not in entries:
            entries.append(kept)
    return Whitelist(source, tuple(entries), tuple(problems))


def read(folder: Path, source: str) -> Whitelist:
    """The config folder's whitelist `source`; a symbolic link or an unreadable file counts as absent."""
    try:
        data = read_file(folder / source)
    except SymlinkRefused:
        return Whitelist(source, None, (Problem(source, 0, "is a symbolic link; symbolic links inside the "
                                                "config folder are not followed: replace it by the file itself"),))
    except OSError as e:
        return Whitelist(source, None, (Problem(source, 0, f"cannot be read ({e.strerror})"),))
    if data is None:
        return Whitelist(source, None)
    return parse(source, data.decode(errors="replace"))


def _whitelist_file(target: str, wl: Whitelist) -> ConfigFile:
    for p in wl.problems:
        log.error("%s (%s)", p, "line skipped" if p.line else "file skipped")
    if wl.entries is None:
        return ConfigFile(target, None)
    text = (f"# Generated by mailwright from the config folder's {wl.source}: edit that file instead.\n"
            + "".join(e + "\n" for e in wl.entries))
    return ConfigFile(target, text, reloads=("postgrey",))


def double_quoted(value: str) -> str:
    """`value` for the inside of "..." in a file that both sh (`.`) and systemd (EnvironmentFile=)
    read: both unescape exactly \\, ", $ and ` after a backslash there. Settings never hold a line break."""
    return re.sub(r'([\\"$`])', r"\\\1", value)


def files(s: Settings, cfg: ConfigDir, _tls=None) -> list[ConfigFile]:
    if not s.ENABLE_POSTGREY:
        # Off means gone. Debian's own whitelists belong to its package and stay.
        return [ConfigFile(OPTIONS, None), ConfigFile(CLIENTS, None), ConfigFile(RECIPIENTS, None)]
    # Options change only with the settings, i.e. at a (re)start or a redeploy, which restarts postgrey:
    # its SIGHUP re-reads the whitelists only. Under systemd a reload is a restart (no ExecReload).
    return [
        rendered(OPTIONS, dict(s=s, listen=LISTEN, text=double_quoted(s.POSTGREY_TEXT)), reloads=("postgrey",)),
        _whitelist_file(CLIENTS, read(cfg.path, CLIENTS_SOURCE)),
        _whitelist_file(RECIPIENTS, read(cfg.path, RECIPIENTS_SOURCE)),
    ]


def postfix(s: Settings, _cfg: ConfigDir) -> PostfixHooks:
    """docker-mailserver appends the policy service to port 25's smtpd_recipient_restrictions.
    A postgrey that does not answer makes Postfix defer (451 4.3.5), never accept or bounce."""
    if not s.ENABLE_POSTGREY:
        return PostfixHooks()
    return PostfixHooks(recipient_restrictions=((POLICY_ORDER, POLICY),))

