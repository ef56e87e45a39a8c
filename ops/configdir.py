"""Reading docker-mailserver's config folder (`/tmp/docker-mailserver`).

Formats are docker-mailserver's own. A malformed line is reported with its
file and line number and skipped: one typo must not take every other account
down. Pure standard library (runs in the container without pyinfra).
"""

from __future__ import annotations

import errno
import logging
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

log = logging.getLogger("mailwright.config")

# The one rule for what may be written to and read from the config folder;
# the `setup` CLI imports these. Every pattern is anchored with \A…\Z (not
# ^…$, which accepts a trailing newline), so `.match` and `.fullmatch` agree.
#
# A local part is a dot-atom of RFC 5322 atext, lower case (addresses are
# normalised), without '/' and '|' (path and field separators), without '%'
# (Dovecot expands %variables in userdb fields; Postfix's percent hack), and
# without leading, trailing or doubled dots: it becomes a directory name
# (/var/mail/<domain>/<local>), a Dovecot home and a Sieve path, so '.' and
# '..' must never pass. At most 64 characters (RFC 5321). It may not start
# with '#': the line it starts would be a comment to every reader.
LOCAL_ATEXT = r"[a-z0-9!#$&'*+=?^_`{}~-]"
LOCAL_PART_RE = rf"(?!#)(?={LOCAL_ATEXT}[a-z0-9!#$&'*+=?^_`{{}}~.-]{{0,63}}(?![a-z0-9!#$&'*+=?^_`{{}}~.-])){LOCAL_ATEXT}+(?:\.{LOCAL_ATEXT}+)*"
DOMAIN_RE = r"(?=[a-z0-9.-]{1,253}(?![a-z0-9.-]))[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)+"
LOCAL_PART = re.compile(rf"\A{LOCAL_PART_RE}\Z")
DOMAIN = re.compile(rf"\A{DOMAIN_RE}\Z")
ADDRESS = re.compile(rf"\A{LOCAL_PART_RE}@{DOMAIN_RE}\Z")
# postfix-virtual.cf keys: user@domain, a bare local part, or @domain (catch-all).
ALIAS_KEY = re.compile(rf"\A(?:{LOCAL_PART_RE}@{DOMAIN_RE}|{LOCAL_PART_RE}|@{DOMAIN_RE})\Z")
# postfix-virtual.cf targets: user@domain or a bare local part.
ALIAS_TARGET = re.compile(rf"\A(?:{LOCAL_PART_RE}@{DOMAIN_RE}|{LOCAL_PART_RE})\Z")
# postfix-{send,receive}-access.cf keys (access(5)): user@domain, domain or @domain, user@.
ACCESS_KEY = re.compile(rf"\A(?:{LOCAL_PART_RE}@{DOMAIN_RE}|@?{DOMAIN_RE}|{LOCAL_PART_RE}@)\Z")
# dovecot-masters.cf user names.
MASTER_NAME = re.compile(r"\A[A-Za-z0-9._@+-]{1,64}\Z")
# postfix-sasl-password.cf keys: a sender address or @domain (Postfix's sender-dependent
# authentication looks up the address, then its @domain), or a next hop [host]:port / host:port.
RELAY_KEY = re.compile(rf"\A(?:{LOCAL_PART_RE}@{DOMAIN_RE}|@{DOMAIN_RE}|\[[a-z0-9.:-]+\](?::[0-9]{{1,5}})?"
                       rf"|{DOMAIN_RE}(?::[0-9]{{1,5}})?)\Z")
QUOTA = re.compile(r"\A(?:[0-9]+[BkMGT]|0)\Z")
HASH = re.compile(r"\A\{[A-Z0-9.-]+\}\S+\Z")


# Config-folder files holding password hashes, credentials or private keys: 0600
# wherever they are written (the `setup` CLI, a VPS deploy's seed), whatever
# mode they had. Paths relative to the config folder.
SECRET_FILES = ("postfix-accounts.cf", "dovecot-masters.cf", "postfix-sasl-password.cf",
                "ldap-users.cf", "ldap-groups.cf", "ldap-aliases.cf", "ldap-domains.cf")   # bind_pw
SECRET_DIRS = ("opendkim/keys",)     # everything below these


def is_secret(relative: str) -> bool:
    return relative in SECRET_FILES or any(relative.startswith(d + "/") for d in SECRET_DIRS)


def valid_address(value: str) -> bool:
    """`user@domain` (lower case) by the shared rule."""
    return ADDRESS.fullmatch(value) is not None


def valid_local_part(value: str) -> bool:
    return LOCAL_PART.fullmatch(value) is not None


def valid_domain(value: str) -> bool:
    return DOMAIN.fullmatch(value) is not None

@dataclass(frozen=True)
class Problem:
    file: str
    line: int            # 0: the file as a whole
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}" if self.line else f"{self.file}: {self.message}"


@dataclass(frozen=True)
class Account:
    address: str
    password_hash: str
    extra: str = ""          # third column: Dovecot userdb extra fields

    @property
    def local(self) -> str:
        return self.address.split("@", 1)[0]

    @property
    def domain(self) -> str:
        return self.address.split("@", 1)[1]


@dataclass
class ConfigDir:
    """Everything the deploy reads from the config folder, parsed and checked."""
    path: Path
    accounts: list[Account] = field(default_factory=list)
    aliases: list[tuple[str, list[str]]] = field(default_factory=list)      # postfix-virtual.cf
    regexp: list[str] = field(default_factory=list)                          # postfix-regexp.cf lines
    local_aliases: list[tuple[str, str]] = field(default_factory=list)      # postfix-aliases.cf
    quotas: dict[str, str] = field(default_factory=dict)                    # address -> size
    masters: list[tuple[str, str]] = field(default_factory=list)            # user, hash
    postfix_main: list[tuple[str, str]] = field(default_factory=list)       # name, value
    postfix_master: list[tuple[str, str]] = field(default_factory=list)     # service/type/param, value
    send_access: list[tuple[str, str]] = field(default_factory=list)       # address, action
    receive_access: list[tuple[str, str]] = field(default_factory=list)
    relaymap: list[tuple[str, str]] = field(default_factory=list)          # @domain, [host]:port ("" opts out)
    relay_auth: list[tuple[str, str]] = field(default_factory=list)        # address, @domain or [host]:port, user:password
    dovecot_cf: str = ""
    user_sieve: dict[str, str] = field(default_factory=dict)                # address -> script
    global_sieve: dict[str, str] = field(default_factory=dict)              # before/after -> script
    ldap_maps: dict[str, str] = field(default_factory=dict)                 # users/groups/aliases/domains -> ldap-*.cf
    user_patches: bool = False
    problems: list[Problem] = field(default_factory=list)

    @property
    def domains(self) -> list[str]:
        """Virtual domains: those of the accounts and of the aliases (docker-mailserver's vhost)."""
        found = {a.domain for a in self.accounts}
        for alias, _ in self.aliases:
            if "@" in alias:
                found.add(alias.split("@", 1)[1])
        return sorted(found)

    def account(self, address: str) -> Account | None:
        return next((a for a in self.accounts if a.address == address), None)


def split_lines(text: str) -> list[str]:
    """The lines of `text` without terminators: split on "\\n" only, CRLF tolerated.

    Not `str.splitlines()`: a form feed, a lone CR, U+2028 and the other Unicode
    line separators stay inside their line (where validation can reject them),
    exactly as Postfix, Dovecot and docker-mailserver's shell scripts see the
    file. The one splitter of the config folder: `mailwright.configwrite` uses it
    too, so the writer and the reader agree on what a line is.
    """
    lines = text.replace("\r\n", "\n").split("\n")
    if lines[-1] == "":
        lines.pop()
    return lines


class SymlinkRefused(Exception):
    """A file inside the config folder is a symbolic link."""


def read_file(path: Path) -> bytes | None:
    """The bytes of a regular file; None when absent or not a regular file.

    Opened with O_NOFOLLOW: a symbolic link inside the config folder raises
    `SymlinkRefused` instead of reading its target (this runs as root and the
    folder may be writable by an unprivileged user). The folder itself may be a
    symbolic link: whoever places it is trusted, like the folder's content.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        if e.errno == errno.ELOOP and os.path.islink(path):
            raise SymlinkRefused(str(path)) from None
        raise
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            return None
        return f.read()


def _lines(text: str | None):
    """(line number, stripped line) of the non-blank, non-comment lines; CRLF tolerated."""
    for n, line in enumerate(split_lines(text or ""), 1):
        line = line.strip()
        if line and not line.startswith("#"):
            yield n, line


def _joined(text: str | None):
    """Like `_lines`, but an indented line continues the previous one (main.cf syntax).

    The parts of a logical line are collected and joined once: linear in the
    size of the file, however many continuation lines it has."""
    start, parts = 0, []
    for n, raw in enumerate(split_lines(text or ""), 1):
        if raw[:1].isspace() and parts:
            part = raw.strip()
            if part:
                parts.append(part)
                continue
        if parts:
            yield start, " ".join(parts)
        line = raw.strip()
        start, parts = (n, [line]) if line and not line.startswith("#") else (0, [])
    if parts:
        yield start, " ".join(parts)



# --- one parser per file: (text or None when absent, problem) -> the value of its ConfigDir field ----
# `problem(line, message)` reports a malformed line (skipped unless `outcome` says otherwise); its
# file is named by the caller.

Report = Callable[..., None]


def _accounts(text: str | None, problem: Report) -> list[Account]:
    accounts: list[Account] = []
    seen: set[str] = set()
    for n, line in _lines(text):
        # Messages name the address only once it is valid: the rest of the
        # line (and a line without '|' as a whole) may hold a hash or a password.
        parts = line.split("|", 2)
        address = parts[0].strip().lower()
        if len(parts) < 2:
            problem(n, "expected 'user@domain|{SCHEME}hash': no '|' separator")
        elif not ADDRESS.fullmatch(address):
            problem(n, "expected 'user@domain|{SCHEME}hash': the first field is not a valid address")
        elif not HASH.fullmatch(parts[1].strip()):
            problem(n, f"{address}: the password field is not a '{{SCHEME}}hash'")
        elif address in seen:
            problem(n, f"{address} is defined twice; the first entry is used")
        else:
            seen.add(address)
            accounts.append(Account(address, parts[1].strip(), parts[2].strip() if len(parts) > 2 else ""))
    return accounts


def _aliases(text: str | None, problem: Report) -> list[tuple[str, list[str]]]:
    aliases: list[tuple[str, list[str]]] = []
    alias_line: dict[str, int] = {}
    alias_index: dict[str, int] = {}
    for n, line in _lines(text):
        parts = line.split(None, 1)
        if len(parts) != 2:
            problem(n, f"expected 'alias target[,target…]', got {line!r}")
            continue
        alias = parts[0].lower()
        targets = [t.strip().lower() for t in re.split(r"[,\s]+", parts[1]) if t.strip()]
        bad = [t for t in targets if not ALIAS_TARGET.fullmatch(t)]
        if not ALIAS_KEY.fullmatch(alias):
            problem(n, f"{alias!r} is not an address, a local part or an @domain")
        elif bad:
            problem(n, f"{alias}: invalid target {bad[0]!r}")
        elif alias in alias_line:
            # texthash would silently keep only the first line: merge, and say so.
            problem(n, f"{alias} is already defined on line {alias_line[alias]}; "
                    "its targets are merged into that line", outcome="merged")
            kept = aliases[alias_index[alias]][1]
            kept.extend(t for t in targets if t not in kept)
        else:
            alias_line[alias], alias_index[alias] = n, len(aliases)
            aliases.append((alias, targets))
    return aliases


class _Malformed(Exception):
    """A line a per-line parser rejects: the message of its problem."""


def _each_line(parse_line: Callable[[str], Any], lines=_lines) -> Callable[[str | None, Report], list]:
    """A file parser from a line parser: the values of the lines it accepts, a problem for each it rejects."""
    def parse(text: str | None, problem: Report) -> list:
        values = []
        for n, line in lines(text):
            try:
                values.append(parse_line(line))
            except _Malformed as e:
                problem(n, str(e))
        return values
    return parse


def _regexp(line: str) -> str:
    if not re.match(r"^/.+/[a-zA-Z]*\s+\S", line) and not re.match(r"^(if|endif)\b", line):
        raise _Malformed(f"expected '/pattern/ target', got {line!r}")
    return line


def _local_alias(line: str) -> tuple[str, str]:
    name, sep, value = line.partition(":")
    if not sep or not name.strip() or not value.strip():
        raise _Malformed(f"expected 'name: target', got {line!r}")
    return name.strip().lower(), value.strip()


def _quota(line: str) -> tuple[str, str]:
    address, sep, size = line.partition(":")
    address = address.strip().lower()
    if not sep or not ADDRESS.fullmatch(address) or not QUOTA.fullmatch(size.strip()):
        raise _Malformed(f"expected 'user@domain:SIZE' (SIZE like 10M or 0), got {line!r}")
    return address, size.strip()


def _quotas(text: str | None, problem: Report) -> dict[str, str]:
    return dict(_each_line(_quota)(text, problem))          # a later line for an address wins


def _master(line: str) -> tuple[str, str]:
    user, sep, hashed = line.partition("|")
    if not sep:
        raise _Malformed("expected 'masteruser|{SCHEME}hash': no '|' separator")
    if not MASTER_NAME.fullmatch(user.strip()):
        raise _Malformed("expected 'masteruser|{SCHEME}hash': the user name is not valid "
                         "(letters, digits and . _ @ + - only)")
    if not HASH.fullmatch(hashed.strip()):
        raise _Malformed(f"{user.strip()}: the password field is not a '{{SCHEME}}hash'")
    return user.strip(), hashed.strip()


def _postfix_main(line: str) -> tuple[str, str]:
    name, sep, value = line.partition("=")
    if not sep or not re.fullmatch(r"[a-z0-9_]+", name.strip()):
        raise _Malformed(f"expected 'parameter = value', got {line!r}")
    return name.strip(), value.strip()


def _postfix_master(line: str) -> tuple[str, str]:
    key, sep, value = line.partition("=")
    if not sep or not re.fullmatch(r"[^/\s]+/(inet|unix|fifo|pass|unix-dgram)/[a-z0-9_]+", key.strip()):
        raise _Malformed(f"expected 'service/type/parameter=value', got {line!r}")
    return key.strip(), value.strip()


def _access(line: str) -> tuple[str, str]:
    parts = line.split()
    if len(parts) < 2 or not ACCESS_KEY.fullmatch(parts[0].lower()):
        raise _Malformed(f"expected 'address ACTION', got {line!r}")
    return parts[0].lower(), " ".join(parts[1:])


def _relaymap(line: str) -> tuple[str, str]:
    parts = line.split()
    if not parts[0].startswith("@") or not DOMAIN.fullmatch(parts[0][1:].lower()) or len(parts) > 2 \
            or (len(parts) == 2 and not re.fullmatch(r"\[[^\]\s]+\](:[0-9]+)?", parts[1])):
        raise _Malformed(f"expected '@domain [host]:port' or '@domain', got {line!r}")
    return parts[0].lower(), parts[1] if len(parts) == 2 else ""


def _relay_auth(line: str) -> tuple[str, str]:
    parts = line.split(None, 1)
    # The key is named only when it looks like one (a line missing its key
    # starts with the user:password); the rest of the line never is.
    key = parts[0].lower()
    if len(parts) != 2:
        raise _Malformed("expected '@domain user:password': only one field")
    if ":" not in parts[1]:
        named = f"{key}: " if RELAY_KEY.fullmatch(key) else ""
        raise _Malformed(f"{named}expected 'user:password' after the key")
    if not RELAY_KEY.fullmatch(key):
        raise _Malformed("expected '@domain user:password': the key is not an @domain, an address or a [host]:port")
    return parts[0].lower(), parts[1].strip()


def _text(text: str | None, problem: Report) -> str | None:
    """A file handed on as it is (None when absent)."""
    return text


def _text_or_empty(text: str | None, problem: Report) -> str:
    return text or ""


@dataclass(frozen=True)
class Source:
    """One file of the config folder and what becomes of it."""
    name: str                      # relative to the config folder
    parse: Callable[[str | None, Report], Any]
    field: str                     # the ConfigDir field it fills
    key: str | None = None         # the field is a dict: the value goes under `key` (when the file exists)
    watched: bool = True           # the change poller re-applies the configuration when it changes
    verbatim: bool = False         # handed on unaltered: must be UTF-8, not split into lines


# Every config-folder file the deploy reads (besides `<address>.dovecot.sieve`, found by name).
SOURCES = (
    Source("postfix-accounts.cf", _accounts, "accounts"),
    Source("postfix-virtual.cf", _aliases, "aliases"),
    Source("postfix-regexp.cf", _each_line(_regexp), "regexp"),
    Source("postfix-aliases.cf", _each_line(_local_alias), "local_aliases"),
    Source("dovecot-quotas.cf", _quotas, "quotas"),
    Source("dovecot-masters.cf", _each_line(_master), "masters"),
    Source("postfix-main.cf", _each_line(_postfix_main, _joined), "postfix_main"),
    Source("postfix-master.cf", _each_line(_postfix_master), "postfix_master"),
    Source("dovecot.cf", _text_or_empty, "dovecot_cf", verbatim=True),
    Source("before.dovecot.sieve", _text, "global_sieve", key="before", verbatim=True),
    Source("after.dovecot.sieve", _text, "global_sieve", key="after", verbatim=True),
    Source("postfix-send-access.cf", _each_line(_access), "send_access"),
    Source("postfix-receive-access.cf", _each_line(_access), "receive_access"),
    Source("postfix-relaymap.cf", _each_line(_relaymap), "relaymap"),
    Source("postfix-sasl-password.cf", _each_line(_relay_auth), "relay_auth"),
    # docker-mailserver's replacements of the generated Postfix LDAP maps (ops/accounts.py).
    *(Source(f"ldap-{kind}.cf", _text, "ldap_maps", key=kind, verbatim=True)
      for kind in ("users", "groups", "aliases", "domains")),
)

# Files whose content feeds the generated configuration; the change poller
# watches exactly these (plus certificates and the users' sieve scripts).
WATCHED = tuple(source.name for source in SOURCES if source.watched)


def read(path: str | Path) -> ConfigDir:
    root = Path(path)
    cfg = ConfigDir(path=root)

    def problem(name: str, n: int, message: str, outcome: str = "line skipped") -> None:
        p = Problem(name, n, message)
        cfg.problems.append(p)
        log.error("%s (%s)", p, outcome)

    def content(name: str, verbatim: bool = False) -> str | None:
        """A file's text, or None (absent, refused or unreadable: a problem says why).
        `verbatim` files are handed on as they are: one that is not UTF-8 is
        skipped rather than altered."""
        try:
            data = read_file(root / name)
        except SymlinkRefused:
            problem(name, 0, "is a symbolic link; symbolic links inside the config folder are not followed: "
                    "replace it by the file itself", outcome="file skipped")
            return None
        except OSError as e:
            problem(name, 0, f"cannot be read ({e.strerror})", outcome="file skipped")
            return None
        if data is None:
            return None
        if not verbatim:
            return data.decode(errors="replace")
        try:
            return data.decode()
        except UnicodeDecodeError as e:
            problem(name, 0, f"is not valid UTF-8 (byte offset {e.start})", outcome="file skipped")
            return None

    # The line files first, then those handed on verbatim: the order problems are reported in.
    for source in sorted(SOURCES, key=lambda source: source.verbatim):
        def report(n: int, message: str, outcome: str = "line skipped", name: str = source.name) -> None:
            problem(name, n, message, outcome)
        value = source.parse(content(source.name, source.verbatim), report)
        if source.key is None:
            setattr(cfg, source.field, value)
        elif value is not None:
            getattr(cfg, source.field)[source.key] = value
    for f in sorted(root.glob("*@*.dovecot.sieve")):
        script = content(f.name, verbatim=True)
        if script is not None:
            cfg.user_sieve[f.name[: -len(".dovecot.sieve")].lower()] = script
    cfg.user_patches = (root / "user-patches.sh").is_file()
    return cfg
