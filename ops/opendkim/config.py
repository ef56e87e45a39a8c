"""OpenDKIM's files, computed from the settings and the config folder (pure but for one listing).

- `/etc/opendkim.conf`: Debian's path (its opendkim.service reads it; so does the container's
  foreground command). Signs for the clients in TrustedHosts and for authenticated clients
  (465/587, Postfix hands OpenDKIM the `{auth_type}` macro); verifies everything else and adds
  `Authentication-Results: <FQDN>; dkim=...`.
- The config folder's `opendkim/` as `setup config dkim` writes it (docker-mailserver's layout):
  `KeyTable`, `SigningTable` and `TrustedHosts`, checked line by line, become
  `/etc/opendkim/{KeyTable,SigningTable,TrustedHosts}`; every key a kept KeyTable line names,
  `opendkim/keys/<domain>/<selector>.private`, is copied to `/etc/opendkim/keys/...`, 0600 and
  owned by `opendkim` (OpenDKIM refuses a key others can read). TrustedHosts always holds
  loopback (Postfix presents locally made mail as 127.0.0.1: it is signed) and the
  PERMIT_DOCKER networks, as docker-mailserver adds them.

A line OpenDKIM could not use (a malformed line, a key that is missing, a symbolic link or not a
PEM key, a SigningTable entry naming no kept key) is logged with its file and line number and
left out: OpenDKIM itself would refuse to start or fail every message it signs (every mail
then deferred).

Two things are read outside the config folder: the keys already installed under
/etc/opendkim/keys (`installed_keys`), so that a key removed from the config folder, or the
whole daemon switched off, leaves no private key behind; and /etc/resolv.conf's servers
(`nameservers`), which OpenDKIM's resolver would otherwise ignore.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from ops.configdir import DOMAIN, ConfigDir, Problem, SymlinkRefused, read_file, split_lines
from ops.daemon import PostfixHooks
from ops.render import ConfigFile, rendered
from ops.settings import Settings

log = logging.getLogger("mailwright.config")

from ops.opendkim.daemon import CONF, DIR, PIDFILE, PORT, READS, RUNDIR, SELECTOR, SOCKET, in_container  # noqa: E402,F401

LISTEN = f"inet:{PORT}@127.0.0.1"           # OpenDKIM's syntax (a VPS)
MILTER = f"inet:127.0.0.1:{PORT}"           # Postfix's
LISTEN_SOCKET = f"local:{SOCKET}"           # the container (ops/opendkim/daemon.py SOCKET)
MILTER_SOCKET = f"unix:{SOCKET}"
MILTER_ORDER = 10                           # PostfixHooks order: OpenDKIM first, OpenDMARC (20) reads its result
KEYTABLE_SOURCE, SIGNINGTABLE_SOURCE, TRUSTED_SOURCE = READS
KEYTABLE, SIGNINGTABLE, TRUSTED = f"{DIR}/KeyTable", f"{DIR}/SigningTable", f"{DIR}/TrustedHosts"
KEYS = f"{DIR}/keys"
# OpenDKIM's FinalPolicyScript (files/etc/opendkim/final.lua.j2): a failed key lookup defers the
# message (451 4.7.5). Debian 12's OpenDKIM (2.11.0~beta2, opendkim.c mlfi_eom()) computes the
# On-DNSError action for a DKIM_STAT_KEYFAIL from dkim_eom() and drops it: the message went on
# with no DKIM result, and OpenDMARC refused (550) a p=reject domain's mail whose SPF does not align.
FINAL = f"{DIR}/final.lua"
# Where the script writes down the domains whose key lookup failed in the last seconds (OpenDKIM's
# own run folder, writable by it; a tmpfs): libunbound then answers a lookup from its cache with a
# reply libopendkim reads as "no key" (the script says why).
KEYFAIL_STATE = f"{RUNDIR}/keyfail"
# No longer written (removed where an older mailwright left it): OpenDKIM re-reads its
# ResolverConfiguration for every message, in the message's own thread, and libunbound's
# configuration parser keeps its state in globals: two messages at once crashed OpenDKIM
# (every milter client then saw 4.7.1). See files/etc/opendkim.conf.j2.
RESOLVER_CONF = f"{DIR}/unbound.conf"
LOOPBACK = ("127.0.0.1", "::1", "localhost")
RESOLV_CONF = "/etc/resolv.conf"

_NAME = re.compile(r"\A[A-Za-z0-9._-]+\Z")                       # a KeyTable key (`mail._domainkey.example.com`)
_SEGMENT = r"[A-Za-z0-9_-][A-Za-z0-9._-]*"                       # a path segment: not `.`, `..` nor hidden
_KEYPATH = re.compile(rf"\A{re.escape(KEYS)}/({_SEGMENT})/({_SEGMENT}\.private)\Z")
_PATTERN = re.compile(r"\A[A-Za-z0-9!#$%&'*+/=?^_`{|}~.@-]+\Z")  # a SigningTable pattern (`*@example.com`)
_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_HOST = re.compile(rf"\A\.?{_LABEL}(?:\.{_LABEL})*\Z")             # a host, or `.domain` (its subdomains)
# (`KEY-{5}`, not the literal marker: the image build refuses any file holding one, source included.)
_PEM = re.compile(rb"\A\s*-----BEGIN (?:RSA |EC )?PRIVATE KEY-{5}\r?\n[A-Za-z0-9+/=\r\n]+"
                  rb"-----END (?:RSA |EC )?PRIVATE KEY-{5}\s*\Z")


@dataclass(frozen=True)
class Key:
    name: str           # the KeyTable key, named by SigningTable lines
    domain: str
    selector: str
    path: str           # /etc/opendkim/keys/<dir>/<file>.private
    source: str         # opendkim/keys/<dir>/<file>.private in the config folder


@dataclass(frozen=True)
class Tables:
    keys: tuple[Key, ...]
    signing: tuple[tuple[str, str], ...]        # (pattern, key name)
    trusted: tuple[str, ...]                    # the config folder's TrustedHosts entries
    pem: dict                                   # source -> the key's text
    problems: tuple[Problem, ...] = ()


def _entries(text: str):
    """(line number, words) of OpenDKIM's table files: `#` starts a comment line, blank lines skipped."""
    for n, raw in enumerate(split_lines(text), 1):
        line = raw.strip()
        if line and not line.startswith("#"):
            yield n, line.split()


def _read(folder: Path, rel: str) -> tuple[bytes | None, str]:
    """A config-folder file under `opendkim/`: (bytes or None, why not). No symbolic link on the way."""
    path = folder
    for part in rel.split("/"):
        path = path / part
        if path.is_symlink():
            return None, (f"{rel}: {path.relative_to(folder)} is a symbolic link; symbolic links inside "
                          "the config folder are not followed: replace it by the file itself")
    try:
        data = read_file(folder / rel)
    except SymlinkRefused:
        return None, f"{rel}: is a symbolic link"
    except OSError as e:
        return None, f"{rel}: cannot be read ({e.strerror})"
    return data, ""


def check_trusted(entry: str) -> tuple[str | None, str]:
    """A TrustedHosts entry as OpenDKIM reads it (an IP address or network, a host, `.domain`;
    `!` in front excludes it): (the entry as written, or None; why not)."""
    bare = entry[1:] if entry.startswith("!") else entry
    if ":" in bare or re.fullmatch(r"[0-9./]+", bare):
        if not re.fullmatch(r"[0-9A-Fa-f:./]+", bare):        # no IPv6 zone (`%eth0`), no stray character
            return None, f"{entry!r} is not an IP address or network"
        try:
            net = ipaddress.ip_network(bare, strict=False)
        except ValueError:
            return None, f"{entry!r} is not an IP address or network"
        text = str(net.network_address) if net.prefixlen == net.max_prefixlen and "/" not in bare else str(net)
        return (entry[0] if entry.startswith("!") else "") + text, ""
    if _HOST.fullmatch(bare.lower()):
        return (entry[0] if entry.startswith("!") else "") + bare.lower(), ""
    return None, f"{entry!r} is not an IP address or network, a host name or a .domain"


def parse(folder: Path) -> Tables:
    """The config folder's `opendkim/` tables, checked; the keys they name, read."""
    problems: list[Problem] = []
    texts = {}
    for source in READS:
        data, why = _read(folder, source)
        if why:
            problems.append(Problem(source, 0, why))
        texts[source] = None if data is None else data.decode(errors="replace")

    keys: list[Key] = []
    pem: dict[str, str] = {}
    for n, words in _entries(texts[KEYTABLE_SOURCE] or ""):
        bad = lambda why: problems.append(Problem(KEYTABLE_SOURCE, n, why))    # noqa: E731
        if len(words) != 2 or words[1].count(":") != 2:
            bad(f"expected 'name domain:selector:{KEYS}/<domain>/<selector>.private', got {' '.join(words)!r}")
            continue
        name, (domain, selector, path) = words[0], words[1].split(":")
        domain = domain.lower()
        if not _NAME.fullmatch(name):
            bad(f"{name!r} is not a key name (letters, digits, '.', '_' and '-')")
        elif domain != "%" and not DOMAIN.fullmatch(domain):
            bad(f"{domain!r} is not a domain")
        elif not SELECTOR.fullmatch(selector):
            bad(f"selector {selector!r} is not a valid DNS label")
        elif not (m := _KEYPATH.fullmatch(path)):
            bad(f"{path!r}: keys are read from {KEYS}/<folder>/<name>.private (the config folder's opendkim/keys/)")
        elif any(k.name == name for k in keys):
            bad(f"{name!r} is already defined above")
        else:
            source = f"opendkim/keys/{m.group(1)}/{m.group(2)}"
            if source not in pem:
                data, why = _read(folder, source)
                if why or data is None:
                    bad(why or f"its key {source} does not exist in the config folder")
                    continue
                if not _PEM.fullmatch(data):
                    bad(f"its key {source} is not a PEM private key")
                    continue
                pem[source] = data.decode()
            keys.append(Key(name, domain, selector, path, source))

    names = {k.name for k in keys}
    signing: list[tuple[str, str]] = []
    for n, words in _entries(texts[SIGNINGTABLE_SOURCE] or ""):
        bad = lambda why: problems.append(Problem(SIGNINGTABLE_SOURCE, n, why))   # noqa: E731
        if len(words) != 2:
            bad(f"expected 'pattern keyname' (e.g. '*@example.com mail._domainkey.example.com'), got {' '.join(words)!r}")
        elif not _PATTERN.fullmatch(words[0]):
            bad(f"{words[0]!r} is not an address pattern")
        elif words[1] not in names:
            bad(f"{words[1]!r} names no key of the KeyTable")
        elif (words[0].lower(), words[1]) not in signing:
            signing.append((words[0].lower(), words[1]))

    trusted: list[str] = []
    for n, words in _entries(texts[TRUSTED_SOURCE] or ""):
        for word in words:
            kept, why = check_trusted(word)
            if kept is None:
                problems.append(Problem(TRUSTED_SOURCE, n, why))
            elif kept not in trusted:
                trusted.append(kept)
    return Tables(tuple(keys), tuple(signing), tuple(trusted), pem, tuple(problems))


def installed_keys(keys_dir: str = KEYS) -> list[str]:
    """The key files already under /etc/opendkim/keys on this machine (to remove the unwanted)."""
    found = []
    try:
        folders = sorted(os.scandir(keys_dir), key=lambda e: e.name)
    except OSError:
        return []
    for folder in folders:
        if not folder.is_dir(follow_symlinks=False):
            continue
        try:
            entries = sorted(os.scandir(folder.path), key=lambda e: e.name)
        except OSError:
            continue
        found += [e.path for e in entries if stat.S_ISREG(e.stat(follow_symlinks=False).st_mode)]
    return found


def nameservers(resolv_conf: str = RESOLV_CONF) -> list[str]:
    """The system resolver's servers (`nameserver` lines of /etc/resolv.conf), for OpenDKIM's
    `Nameservers`: Debian's OpenDKIM resolves with libunbound, which ignores resolv.conf and
    recurses from the root servers itself unless given forwarders. With them, OpenDKIM asks the
    same DNS as everything else on the machine (a private zone, a local cache, a test DNS)."""
    try:
        with open(resolv_conf, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:
        return []
    found = []
    for line in text.splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] == "nameserver":
            try:
                address = str(ipaddress.ip_address(words[1]))
            except ValueError:
                continue
            if address not in found:
                found.append(address)
    return found


def opendkim_networks(mynetworks: list[str]) -> list[str]:
    """Postfix's mynetworks (`[::1]/128`) in OpenDKIM's form (`::1/128`)."""
    return [re.sub(r"^\[(.*)\]", r"\1", n) for n in mynetworks]


def _table(source: str, lines) -> str:
    return (f"# Generated by mailwright from the config folder's {source}: edit that file instead.\n"
            + "".join(line + "\n" for line in lines))


def files(s: Settings, cfg: ConfigDir, _tls=None, mynetworks: list[str] | None = None,
          installed: list[str] | None = None, resolvers: list[str] | None = None) -> list[ConfigFile]:
    installed = installed_keys() if installed is None else installed
    fixed = [CONF, KEYTABLE, SIGNINGTABLE, TRUSTED, FINAL, RESOLVER_CONF]
    if not s.ENABLE_OPENDKIM:
        # Off means gone, private keys first.
        return [ConfigFile(p, None) for p in fixed + sorted(installed)]
    t = parse(cfg.path)
    for p in t.problems:
        log.error("%s (%s)", p, "line skipped" if p.line else "file skipped")
    trusted = list(LOOPBACK)
    for entry in [*t.trusted, *opendkim_networks(mynetworks or [])]:
        if entry not in trusted:
            trusted.append(entry)
    out = [
        rendered(CONF, dict(s=s, listen=LISTEN_SOCKET if in_container(s) else LISTEN,
                            # The socket: Postfix's processes (user postfix) connect; the folder is 0755.
                            umask="000" if in_container(s) else "007", pidfile=PIDFILE, keytable=KEYTABLE, signingtable=SIGNINGTABLE,
                            trusted=TRUSTED, final=FINAL,
                            nameservers=nameservers() if resolvers is None else resolvers)),
        # Read when OpenDKIM starts or reloads (its own reload, as for the configuration file).
        rendered(FINAL, dict(state=KEYFAIL_STATE)),
        ConfigFile(RESOLVER_CONF, None),
        ConfigFile(KEYTABLE, _table(KEYTABLE_SOURCE, (f"{k.name} {k.domain}:{k.selector}:{k.path}" for k in t.keys))),
        ConfigFile(SIGNINGTABLE, _table(SIGNINGTABLE_SOURCE, (f"{p} {name}" for p, name in t.signing))),
        ConfigFile(TRUSTED, ("# Generated by mailwright: loopback, the config folder's opendkim/TrustedHosts and "
                             "the PERMIT_DOCKER networks.\n" + "".join(e + "\n" for e in trusted))),
    ]
    wanted = {}
    for k in t.keys:
        wanted[k.path] = ConfigFile(k.path, t.pem[k.source], mode=0o600, owner="opendkim", group="opendkim")
    out += list(wanted.values())
    out += [ConfigFile(p, None) for p in sorted(installed) if p not in wanted]
    return out


def postfix(s: Settings, _cfg: ConfigDir) -> PostfixHooks:
    """docker-mailserver adds OpenDKIM to smtpd_milters and non_smtpd_milters (locally made mail is
    signed too). Postfix's milter_default_action stays `tempfail` (docker-mailserver sets `accept`):
    an OpenDKIM that does not answer defers the mail (4xx), never lets it leave unsigned."""
    if not s.ENABLE_OPENDKIM:
        return PostfixHooks()
    milter = MILTER_SOCKET if in_container(s) else MILTER
    # docker-mailserver's address for it, as an operator's postfix-main.cf may name it.
    aliases = tuple((f"inet:{host}:{PORT}", milter) for host in ("localhost", "127.0.0.1") if milter != MILTER)
    return PostfixHooks(smtpd_milters=((MILTER_ORDER, milter),), non_smtpd_milters=((MILTER_ORDER, milter),),
                        aliases=aliases)
