"""What every `setup` subcommand shares: paths, settings, logging, prompts, hashes.

Messages go to stderr in docker-mailserver's log format
(`<date> ERROR <command>: <message>`); stdout carries only the listings, so
scripts can parse them.
"""

from __future__ import annotations

import datetime
import getpass
import os
import shutil
import subprocess
import sys
import warnings
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from mailwright import configwrite
from ops import configdir
from ops.settings import CONFIG_DIRS, LOG_LEVELS, Settings, SettingsError, control_character, read_dms_settings

# The config-folder files the commands edit.
ACCOUNTS = "postfix-accounts.cf"
VIRTUAL = "postfix-virtual.cf"
QUOTAS = "dovecot-quotas.cf"
MASTERS = "dovecot-masters.cf"

LEVELS = {name: rank for rank, name in enumerate(LOG_LEVELS, 1)}      # error 1 … trace 5
COLOURS = {"error": "\033[1;31m", "warn": "\033[1;33m", "info": "\033[0;34m", "debug": "\033[0;35m",
           "trace": "\033[0;36m"}


class CliError(Exception):
    """Stops the command: the message is logged as an error, then `Aborting`."""

    def __init__(self, message: str, code: int = 1, usage: str | None = None):
        super().__init__(message)
        self.code = code
        self.usage = usage


class UsageExit(Exception):
    """Print the usage text and exit with `code` (0 for `help`, 1 for missing arguments)."""

    def __init__(self, usage: str, code: int):
        super().__init__(usage)
        self.usage = usage
        self.code = code


@dataclass
class Context:
    """Where the command acts. Environment overrides exist for tests and for
    running the CLI against a folder other than the container's."""
    config_dir: Path
    mail_root: Path
    log_dir: Path
    settings_file: Path
    program: str = "setup"

    @classmethod
    def from_env(cls, environ=os.environ) -> "Context":
        settings_file = Path(environ.get("MAILWRIGHT_DMS_SETTINGS", "/etc/dms-settings"))
        ctx = cls(config_dir=Path("/tmp/docker-mailserver"), mail_root=Path(environ.get("MAILWRIGHT_MAIL_ROOT", "/var/mail")),
                  log_dir=Path(environ.get("MAILWRIGHT_LOG_DIR", "/var/log/mail")), settings_file=settings_file)
        # The settings the last start or deploy wrote say where the folder is. Without them
        # (a one-off `docker run --rm IMAGE setup …`) the init kind decides: the image sets
        # MAILWRIGHT_INIT=container, whose folder is docker-mailserver's /tmp/docker-mailserver.
        # Never the working directory: an empty or relative path would write the accounts
        # somewhere nobody reads them, and report success.
        init = ctx.settings.MAILWRIGHT_INIT or environ.get("MAILWRIGHT_INIT", "")
        folder = (environ.get("MAILWRIGHT_CONFIG_DIR") or ctx.settings.MAILWRIGHT_CONFIG_DIR
                  or CONFIG_DIRS.get(init, CONFIG_DIRS["container"]))
        if not os.path.isabs(folder):
            # Before any command runs (main's handler is not reached): stop here, saying why.
            ctx.log("error", f"The config folder '{folder}' is not an absolute path; "
                             "set MAILWRIGHT_CONFIG_DIR to the config folder")
            ctx.log("error", "Aborting")
            raise SystemExit(1)
        ctx.config_dir = Path(folder)
        return ctx

    @cached_property
    def settings(self) -> Settings:
        """The settings the last deploy applied; defaults before the first one
        (e.g. `docker run --rm IMAGE setup …` on a fresh config folder)."""
        try:
            return read_dms_settings(self.settings_file)
        except FileNotFoundError:
            return Settings()
        except (OSError, SettingsError, ValueError) as e:
            self.log("warn", f"Cannot read '{self.settings_file}' ({e}); using the defaults")
            return Settings()

    def file(self, name: str) -> Path:
        return self.config_dir / name

    def config(self) -> configdir.ConfigDir:
        return configdir.read(self.config_dir)

    def locked(self):
        """The config folder's lock (shared with the change poller), telling the user when it waits."""
        return configwrite.locked(self.config_dir, notify=lambda m: self.log("info", m))

    # --- output ------------------------------------------------------------------------------
    def log(self, level: str, message: str) -> None:
        wanted = os.environ.get("LOG_LEVEL") or (self.settings.LOG_LEVEL if "settings" in self.__dict__ else "info")
        if LEVELS[level] > LEVELS.get(wanted, LEVELS["info"]):
            return
        name = {"info": "INFO ", "warn": "WARN "}.get(level, level.upper())
        if sys.stderr.isatty():
            name = f"{COLOURS[level]}{name}\033[0m"
        now = datetime.datetime.now().astimezone().isoformat(sep=" ", timespec="seconds")
        print(f"{now} {name} {self.program}: {message}", file=sys.stderr, flush=True)


# --- input ---------------------------------------------------------------------------------------

def ask(prompt: str, secret: bool = False) -> str:
    """One line from the terminal, or from stdin when there is none (`docker exec -i`,
    a pipe): an empty string at end of input."""
    if sys.stdin.isatty():
        try:
            return getpass.getpass(prompt) if secret else input(prompt)
        except EOFError:
            return ""
    sys.stderr.write(prompt)
    sys.stderr.flush()
    line = sys.stdin.readline()
    if secret:
        sys.stderr.write("\n")
    return line.rstrip("\r\n")


def password_or_prompt(given: str | None) -> str:
    if given:
        check_password(given)
        return given
    password = ask("Enter Password: ", secret=True)
    if not password:
        raise CliError("Password must not be empty")
    check_password(password)
    if ask("Confirm Password: ", secret=True) != password:
        raise CliError("Passwords do not match!")
    return password


# The longest password crypt(3) hashes: Debian's libxcrypt (CRYPT_MAX_PASSPHRASE_SIZE
# 512 with the NUL) answers '*0' for a longer one, which `doveadm pw` writes out
# as a hash; Dovecot could not verify it at login either. Checked in the image.
MAX_PASSWORD_BYTES = 511


def one_line(value: str, what: str, secret: bool = False) -> str:
    """The check for every value written into a line-based config file: no line
    separator that any reader splits on (str.splitlines: \\n \\r \\v \\f \\x1c-\\x1e
    \\x85 U+2028 U+2029) and no other control character. The error names the
    value (escaped, never raw), or only `what` when the value is a secret. The rule is
    ops.settings.control_character, the same as for every setting."""
    if control_character(value) is not None:
        if secret:
            raise CliError(f"The {what} must not contain a line break or a control character")
        raise CliError(f"{what[:1].upper()}{what[1:]} {ascii(value)} must not contain a line break "
                       "or a control character")
    return value


def check_password(password: str) -> None:
    one_line(password, "password", secret=True)
    if len(password.encode("utf-8", errors="surrogateescape")) > MAX_PASSWORD_BYTES:
        raise CliError(f"The password is too long (more than {MAX_PASSWORD_BYTES} bytes)")


def sha512_crypt(password: str) -> str:
    """`{SHA512-CRYPT}$6$…`, the hash Dovecot verifies, computed in this process
    (glibc's crypt(3) with a random SHA512 salt: `doveadm pw -s SHA512-CRYPT`'s
    algorithm), so the password never appears in a command line (`ps`). Where
    Python has no crypt module, `doveadm pw` reads it from stdin instead."""
    check_password(password)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import crypt
    except ImportError:
        crypt = None
    if crypt is not None:
        hashed = crypt.crypt(password, crypt.mksalt(crypt.METHOD_SHA512))
        if hashed and hashed.startswith("$6$"):
            return "{SHA512-CRYPT}" + hashed
    doveadm = shutil.which("doveadm")
    if doveadm:
        # Without -p, doveadm pw reads the password and its confirmation from stdin.
        done = subprocess.run([doveadm, "pw", "-s", "SHA512-CRYPT"], input=f"{password}\n{password}\n",
                              capture_output=True, text=True)
        hashed = done.stdout.strip()
        if done.returncode == 0 and hashed.startswith("{SHA512-CRYPT}$6$"):
            return hashed
    raise CliError("Cannot compute a SHA512-CRYPT hash on this system")


# --- validation ----------------------------------------------------------------------------------

def normalise(ctx: Context, address: str, what: str = "Mail account") -> str:
    lowered = address.strip().lower()
    if lowered != address.strip():
        ctx.log("warn", f"{what} '{address}' has uppercase letters and will be normalized to '{lowered}'")
    return lowered


def expect_address(ctx: Context, address: str | None, usage: str, what: str = "Mail account") -> str:
    if not address:
        raise CliError("No account specified", usage=usage)
    one_line(address, "address")
    if "@" not in address:
        raise CliError(f"'{address}' should include the domain (eg: user@example.com)", usage=usage)
    address = normalise(ctx, address, what)
    # ops.configdir's rule: what is written here is what the reader reads back.
    if not configdir.valid_address(address):
        raise CliError(f"'{address}' is not a valid e-mail address")
    return address


def expect_domain(domain: str | None, usage: str) -> str:
    if not domain:
        raise CliError("No domain specified", usage=usage)
    one_line(domain, "domain")
    d = domain.strip().lower()
    d = d[1:] if d.startswith("@") else d
    if not configdir.valid_domain(d):
        raise CliError(f"'{domain}' is not a valid domain name")
    return d


def require(args: list[str], n: int, usage: str) -> None:
    """docker-mailserver's `_require_n_parameters_or_print_usage`."""
    if args and args[0] == "help":
        raise UsageExit(usage, 0)
    if len(args) < n:
        raise UsageExit(usage, 1)


def at_most(args: list[str], n: int, usage: str) -> None:
    if len(args) > n:
        extra = " ".join(repr(a) for a in args[n:])
        raise CliError(f"Too many arguments: {extra} (quote a value that contains spaces)", usage=usage)


def usage_text(command: str, description: str, examples: str = "") -> str:
    text = f"USAGE\n    setup {command}\n\nOPTIONS\n    help    Print this usage information.\n\nDESCRIPTION\n"
    text += "".join(f"    {line}\n" if line else "\n" for line in description.strip("\n").split("\n"))
    if examples:
        text += "\nEXAMPLES\n" + "".join(f"    {line}\n" if line else "\n"
                                           for line in examples.strip("\n").split("\n"))
    text += ("\nEXIT STATUS\n    0 when the command succeeded; 1 when an argument is missing or invalid,\n"
             "    in which case no file was changed.\n")
    return text


def require_content(path: Path) -> None:
    if not path.is_file():
        raise CliError(f"'{path}' does not exist")
    if not any(line.strip() and not line.strip().startswith("#") for line in configwrite.read_lines(path)):
        raise CliError(f"'{path}' is empty, nothing to list")
