"""Fail2ban's files, computed from the settings and the config folder.

- `/etc/fail2ban/jail.local`: docker-mailserver's jails and defaults: `dovecot`, `postfix`
  (mode `extra`: SASL authentication failures as well as rejected clients) and `custom` (manual
  bans, `setup fail2ban ban`), read from /var/log/mail/mail.log; bantime 1w, findtime 1w,
  maxretry 6, banaction nftables-allports (table `inet f2b-table`). Debian's packaged `sshd`
  jail is switched off: mailwright's log holds no sshd lines, and a jail without a log stops
  fail2ban from starting.
- `ignoreip`: loopback and every address of this machine's interfaces, read when the
  configuration is applied (in the container: its own network namespace), plus fail2ban's
  `ignoreself`. A client connecting to the server's own address is never banned.
- `/etc/fail2ban/action.d/nftables-common.local`: `blocktype` from FAIL2BAN_BLOCKTYPE
  (docker-mailserver: anything but `reject` is `drop`).
- `/etc/fail2ban/fail2ban.d/mailwright.conf`: the log (/var/log/mail/fail2ban.log) and the ban
  database (/var/lib/fail2ban, kept on the state volume), kept 180 days like the longest ban.
  It is read before `fail2ban.local`, so the operator's file wins.
- The config folder's `fail2ban-jail.cf` and `fail2ban-fail2ban.cf` are copied as they are to
  `/etc/fail2ban/jail.d/user-jail.local` and `/etc/fail2ban/fail2ban.local` (docker-mailserver's
  paths): read after mailwright's files, they override them. The config folder is trusted.

Unlike docker-mailserver, changes to those two files apply without a restart (the change
poller runs `fail2ban-client reload`, which keeps the current bans).
"""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path

from ops.configdir import ConfigDir, SymlinkRefused, read_file
from ops.render import ConfigFile, rendered
from ops.settings import Settings

from ops.fail2ban.daemon import (CUSTOM_FILTER, DBFILE, FAIL2BAN_CONF, JAIL_LOCAL, LOG,  # noqa: F401
                                 MAIL_LOG, NFTABLES_LOCAL, READS, USER_FAIL2BAN, USER_JAIL)

log = logging.getLogger("mailwright.config")

JAIL_SOURCE, FAIL2BAN_SOURCE = READS
LOOPBACK = ("127.0.0.1/8", "::1")
PROC_NET = Path("/proc/net")


def own_addresses(proc_net: Path = PROC_NET) -> list[str]:
    """The addresses of this machine's interfaces but loopback, from /proc (no command run):
    IPv4 from `fib_trie` (the `/32 host LOCAL` leaves), IPv6 from `if_inet6`."""
    found: list[str] = []
    try:
        last = None
        for line in (proc_net / "fib_trie").read_text().splitlines():
            text = line.strip()
            if text.startswith("|--"):
                last = text[3:].strip()
            elif text == "/32 host LOCAL" and last:
                found.append(last)
    except OSError:
        pass
    try:
        for line in (proc_net / "if_inet6").read_text().splitlines():
            fields = line.split()
            if fields and len(fields[0]) == 32:
                found.append(str(ipaddress.IPv6Address(int(fields[0], 16))))
    except (OSError, ValueError):
        pass
    kept = []
    for text in found:
        try:
            ip = ipaddress.ip_address(text)
        except ValueError:
            continue
        if not ip.is_loopback and str(ip) not in kept:
            kept.append(str(ip))
    return kept


def _copy(source: str, target: str, folder: Path) -> ConfigFile:
    """A config-folder file copied as it is; a symbolic link or an unreadable file is left out."""
    try:
        data = read_file(folder / source)
    except SymlinkRefused:
        log.error("%s is a symbolic link; symbolic links inside the config folder are not followed: "
                  "replace it by the file itself (file skipped)", source)
        return ConfigFile(target, None)
    except OSError as e:
        log.error("%s cannot be read (%s) (file skipped)", source, e.strerror)
        return ConfigFile(target, None)
    if data is None:
        return ConfigFile(target, None)
    try:
        text = data.decode()
    except UnicodeDecodeError:
        log.error("%s is not UTF-8 text (file skipped)", source)
        return ConfigFile(target, None)
    header = f"# Copied by mailwright from the config folder's {source}: edit that file instead.\n"
    return ConfigFile(target, header + text + ("" if text.endswith("\n") or not text else "\n"))


def blocktype(s: Settings) -> str:
    return "reject" if s.FAIL2BAN_BLOCKTYPE == "reject" else "drop"


def files(s: Settings, cfg: ConfigDir, _tls=None, addresses=None) -> list[ConfigFile]:
    paths = (JAIL_LOCAL, NFTABLES_LOCAL, FAIL2BAN_CONF, CUSTOM_FILTER, USER_JAIL, USER_FAIL2BAN)
    if not s.ENABLE_FAIL2BAN:
        # Off means gone. Debian's own files (jail.conf, filters, actions) belong to its package.
        return [ConfigFile(p, None) for p in paths]
    own = own_addresses() if addresses is None else list(addresses)
    return [
        rendered(JAIL_LOCAL, dict(ignoreip=" ".join([*LOOPBACK, *own]), mail_log=MAIL_LOG)),
        rendered(NFTABLES_LOCAL, dict(blocktype=blocktype(s))),
        rendered(FAIL2BAN_CONF, dict(log=LOG, dbfile=DBFILE)),
        rendered(CUSTOM_FILTER, {}),
        _copy(JAIL_SOURCE, USER_JAIL, cfg.path),
        _copy(FAIL2BAN_SOURCE, USER_FAIL2BAN, cfg.path),
    ]
