"""`setup dovecot-master …`: `dovecot-masters.cf`, Dovecot's master users.

As for `setup email`: checked before the lock, the password asked outside it,
checked again under it, then written.
"""

from __future__ import annotations

from mailwright import configwrite as cw
from ops import configdir

from .common import MASTERS, CliError, Context, UsageExit, at_most, one_line, password_or_prompt, require, \
    require_content, sha512_crypt, usage_text

MASTER_ADD_USAGE = usage_text("dovecot-master add <USERNAME> [<PASSWORD>]", """
Add a Dovecot master user: it logs in to any mailbox as 'user@domain*USERNAME'
with its own password.
""")
MASTER_UPDATE_USAGE = usage_text("dovecot-master update <USERNAME> [<PASSWORD>]", """
Change the password of a Dovecot master user.
""")
MASTER_DEL_USAGE = usage_text("dovecot-master del <USERNAME> [<USERNAME>...]", """
Delete Dovecot master users.
""")
MASTER_LIST_USAGE = usage_text("dovecot-master list", "List the Dovecot master users.")

MASTER_NAME = configdir.MASTER_NAME      # what ops.configdir accepts in dovecot-masters.cf


def _master_name(name: str | None, usage: str) -> str:
    if not name:
        raise CliError("No account specified", usage=usage)
    one_line(name, "master user name")
    if not MASTER_NAME.fullmatch(name):
        raise CliError(f"'{name}' is not a valid master user name (letters, digits and . _ @ + - only)")
    return name


def _master_exists(ctx: Context, name: str) -> bool:
    return cw.has_key(cw.read_lines(ctx.file(MASTERS)), name, "|")


def _check(ctx: Context, name: str, exists: bool) -> None:
    """`exists`: the master user must exist (update, del); otherwise it must not (add)."""
    if _master_exists(ctx, name) != exists:
        raise CliError(f"'{name}' does not exist" if exists else f"'{name}' already exists")


def _set_password(ctx: Context, args: list[str], program: str, usage: str, exists: bool) -> int:
    """add / update: validate, prompt outside the lock, re-check and write under it."""
    ctx.program = program
    require(args, 1, usage)
    at_most(args, 2, usage)
    name = _master_name(args[0], usage)
    _check(ctx, name, exists)
    hashed = sha512_crypt(password_or_prompt(args[1] if len(args) > 1 else None))
    with ctx.locked():
        _check(ctx, name, exists)
        cw.rewrite(ctx.file(MASTERS), lambda lines: cw.replace_entry(lines, name, "|", f"{name}|{hashed}"))
    return 0


def master_add(ctx: Context, args: list[str]) -> int:
    return _set_password(ctx, args, "adddovecotmasteruser", MASTER_ADD_USAGE, exists=False)


def master_update(ctx: Context, args: list[str]) -> int:
    return _set_password(ctx, args, "updatedovecotmasteruser", MASTER_UPDATE_USAGE, exists=True)


def master_del(ctx: Context, args: list[str]) -> int:
    ctx.program = "deldovecotmasteruser"
    require(args, 1, MASTER_DEL_USAGE)
    names = [_master_name(a, MASTER_DEL_USAGE) for a in args]
    for name in names:
        _check(ctx, name, exists=True)
    with ctx.locked():
        for name in names:
            _check(ctx, name, exists=True)
        cw.rewrite(ctx.file(MASTERS), lambda lines: _remove_all(lines, names))
    return 0


def _remove_all(lines: list[str], names: list[str]) -> list[str]:
    for name in names:
        lines = cw.remove_entry(lines, name, "|")
    return lines


def master_list(ctx: Context, args: list[str]) -> int:
    ctx.program = "listdovecotmasteruser"
    if args and args[0] == "help":
        raise UsageExit(MASTER_LIST_USAGE, 0)
    require_content(ctx.file(MASTERS))
    names = [line.strip().split("|", 1)[0] for line in cw.read_lines(ctx.file(MASTERS))
             if line.strip() and not line.strip().startswith("#")]
    print("".join(f"* {name}\n\n" for name in names), end="", flush=True)
    return 0
