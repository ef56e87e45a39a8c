"""Writes a docker-mailserver config folder, in docker-mailserver's own formats."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import crypt  # noqa: E402  (stdlib until 3.13; the formats need SHA512-CRYPT)


def sha512_crypt(password: str) -> str:
    """`{SHA512-CRYPT}$6$salt$hash`, as `doveadm pw -s SHA512-CRYPT` writes it."""
    return "{SHA512-CRYPT}" + crypt.crypt(password, crypt.mksalt(crypt.METHOD_SHA512))


@dataclass
class MailConfig:
    """Builder for `/tmp/docker-mailserver`; call `write()` to (re)write every file.

    `accounts_lines` keeps the exact lines of postfix-accounts.cf so tests can
    place a malformed line at a known line number.
    """
    path: Path
    passwords: dict[str, str] = field(default_factory=dict)
    accounts_lines: list[str] = field(default_factory=list)
    virtual_lines: list[str] = field(default_factory=list)
    regexp_lines: list[str] = field(default_factory=list)
    quota_lines: list[str] = field(default_factory=list)
    sieve: dict[str, str] = field(default_factory=dict)
    extra_files: dict[str, str] = field(default_factory=dict)

    def account(self, address: str, password: str, extra: str = "") -> "MailConfig":
        self.passwords[address] = password
        line = f"{address}|{sha512_crypt(password)}"
        self.accounts_lines.append(line + (f"|{extra}" if extra else ""))
        return self

    def accounts_raw(self, line: str) -> int:
        """Append a raw line to postfix-accounts.cf; returns its 1-based line number."""
        self.accounts_lines.append(line)
        return len(self.accounts_lines)

    def alias(self, alias: str, *targets: str) -> "MailConfig":
        self.virtual_lines.append(f"{alias} {','.join(targets)}")
        return self

    def regexp(self, pattern: str, target: str) -> "MailConfig":
        self.regexp_lines.append(f"{pattern} {target}")
        return self

    def quota(self, address: str, size: str) -> "MailConfig":
        self.quota_lines.append(f"{address}:{size}")
        return self

    def user_sieve(self, address: str, script: str) -> "MailConfig":
        self.sieve[address] = script
        return self

    def file(self, name: str, text: str) -> "MailConfig":
        self.extra_files[name] = text
        return self

    def write(self) -> Path:
        self.path.mkdir(parents=True, exist_ok=True)

        def put(name: str, lines: list[str]) -> None:
            if lines:
                (self.path / name).write_text("\n".join(lines) + "\n")

        put("postfix-accounts.cf", self.accounts_lines)
        put("postfix-virtual.cf", self.virtual_lines)
        put("postfix-regexp.cf", self.regexp_lines)
        put("dovecot-quotas.cf", self.quota_lines)
        for address, script in self.sieve.items():
            (self.path / f"{address}.dovecot.sieve").write_text(script)
        for name, text in self.extra_files.items():
            target = self.path / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        return self.path
