"""`setup alias …`: `postfix-virtual.cf`."""

from __future__ import annotations

import re

from mailwright import configwrite as cw
from ops import configdir

from .common import ACCOUNTS, VIRTUAL, CliError, Context, UsageExit, at_most, normalise, one_line, require, \
    require_content, usage_text
from .email import refuse_with_ldap

ALIAS_ADD_USAGE = usage_text("alias add <MAIL ALIAS> <RECIPIENT>", """
Add a recipient to an alias (the alias is created when it does not exist).
The alias may be 'user@domain', a bare local part 'user' or a catch-all '@domain'.
Several recipients may be given at once, separated by commas.
""", "setup alias add postmaster@example.com admin@example.com")
ALIAS_DEL_USAGE = usage_text("alias del <MAIL ALIAS> <RECIPIENT>", """
Remove a recipient from an alias; the alias goes when it has no recipient left.
An alias or a recipient that is not there is already gone: a warning, exit 0.
""", "setup alias del postmaster@example.com admin@example.com")
ALIAS_LIST_USAGE = usage_text("alias list", "List the aliases (postfix-virtual.cf).")


def _alias_key(ctx: Context, alias: str) -> str:
    one_line(alias, "alias")
    alias = normalise(ctx, alias, "Alias")
    # ops.configdir's rule for postfix-virtual.cf keys: what the reader accepts.
    if configdir.ALIAS_KEY.fullmatch(alias):
        return alias
    if "@" in alias and not alias.startswith("@"):
        raise CliError(f"'{alias}' is not a valid e-mail address")
    raise CliError(f"'{alias}' is not a valid alias: use user@domain, a local part or @domain")


def _recipients(ctx: Context, value: str) -> list[str]:
    one_line(value, "recipient")
    out = []
    for recipient in (r for r in re.split(r"[,\s]+", value) if r):
        recipient = normalise(ctx, recipient, "Recipient")
        if not configdir.ALIAS_TARGET.fullmatch(recipient):
            raise CliError(f"Recipient '{recipient}' is not a valid e-mail address")
        if recipient not in out:
            out.append(recipient)
    if not out:
        raise CliError("No recipient specified", usage=ALIAS_ADD_USAGE)
    return out


def _current(ctx: Context, alias: str) -> list[str]:
    lines = cw.read_lines(ctx.file(VIRTUAL))
    i = cw.find(lines, alias, " ")
    return [] if i is None else [v.lower() for v in cw.values_of(lines[i], " ")]


def _check_add(ctx: Context, alias: str, recipients: list[str]) -> None:
    if cw.has_key(cw.read_lines(ctx.file(ACCOUNTS)), alias, "|"):
        raise CliError(f"'{alias}' is already defined as an account")
    present = _current(ctx, alias)
    for recipient in recipients:
        if recipient == alias:
            raise CliError(f"'{alias}' cannot be a recipient of itself")
        if recipient in present:
            raise CliError(f"'{alias}' is already an alias for recipient: '{recipient}'")


def alias_add(ctx: Context, args: list[str]) -> int:
    ctx.program = "addalias"
    refuse_with_ldap(ctx, args, "add")
    require(args, 2, ALIAS_ADD_USAGE)
    at_most(args, 2, ALIAS_ADD_USAGE)
    if not args[0]:
        raise CliError("No alias specified", usage=ALIAS_ADD_USAGE)
    alias = _alias_key(ctx, args[0])
    recipients = _recipients(ctx, args[1])
    _check_add(ctx, alias, recipients)
    with ctx.locked():
        _check_add(ctx, alias, recipients)
        cw.rewrite(ctx.file(VIRTUAL), lambda lines: cw.append_value(lines, alias, ",".join(recipients)))
    return 0


def alias_del(ctx: Context, args: list[str]) -> int:
    ctx.program = "delalias"
    refuse_with_ldap(ctx, args, "remove")
    require(args, 2, ALIAS_DEL_USAGE)
    at_most(args, 2, ALIAS_DEL_USAGE)
    alias = _alias_key(ctx, args[0])
    recipients = _recipients(ctx, args[1])

    # docker-mailserver removes what is there and exits 0 when there is
    # nothing to remove (the alias or the recipient is already gone); it says
    # nothing, mailwright warns.
    with ctx.locked():
        present = _current(ctx, alias)
        if not present:
            ctx.log("warn", f"Alias '{alias}' does not exist")
            return 0
        for recipient in recipients:
            if recipient not in present:
                ctx.log("warn", f"'{recipient}' is not a recipient of the alias '{alias}'")
        if not any(recipient in present for recipient in recipients):
            return 0

        def edit(lines: list[str]) -> list[str]:
            for recipient in recipients:
                lines = cw.remove_value(lines, alias, recipient)
            return lines
        cw.rewrite(ctx.file(VIRTUAL), edit)
    return 0


def alias_list(ctx: Context, args: list[str]) -> int:
    ctx.program = "listalias"
    if args and args[0] == "help":
        raise UsageExit(ALIAS_LIST_USAGE, 0)
    require_content(ctx.file(VIRTUAL))
    lines = [line.strip() for line in cw.read_lines(ctx.file(VIRTUAL))
             if line.strip() and not line.strip().startswith("#")]
    print("".join(f"* {line}\n\n" for line in lines), end="", flush=True)
    return 0
