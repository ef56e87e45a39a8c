"""`setup alias …` (`postfix-virtual.cf`) and `setup quota …` (`dovecot-quotas.cf`)."""

from __future__ import annotations

import re

from mailwright import configwrite as cw
from ops import configdir

from .accounts import ACCOUNTS, QUOTAS, VIRTUAL, _require_content
from .common import CliError, Context, UsageExit, ask, at_most, expect_address, normalise, one_line, require, \
    usage_text

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
QUOTA_SET_USAGE = usage_text("quota set <MAIL ACCOUNT> [<QUOTA>]", """
Set the storage limit of an existing mail account. QUOTA is a number with a
unit: B (byte), k (kibibyte), M (mebibyte), G (gibibyte) or T (tebibyte);
0 means unlimited.
""", "setup quota set user@example.com 5G")
QUOTA_DEL_USAGE = usage_text("quota del <MAIL ACCOUNT>", """
Remove the storage limit set for a mail account (the default limit applies again).
""")

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
    _require_content(ctx.file(VIRTUAL))
    lines = [line.strip() for line in cw.read_lines(ctx.file(VIRTUAL))
             if line.strip() and not line.strip().startswith("#")]
    print("".join(f"* {line}\n\n" for line in lines), end="", flush=True)
    return 0


# --- quota ---------------------------------------------------------------------------------------

def _account(ctx: Context, arg: str, usage: str) -> str:
    address = expect_address(ctx, arg, usage)
    if not cw.has_key(cw.read_lines(ctx.file(ACCOUNTS)), address, "|"):
        raise CliError(f"'{address}' does not exist")
    return address


def quota_set(ctx: Context, args: list[str]) -> int:
    ctx.program = "setquota"
    require(args, 1, QUOTA_SET_USAGE)
    at_most(args, 2, QUOTA_SET_USAGE)
    address = _account(ctx, args[0], QUOTA_SET_USAGE)
    quota = args[1] if len(args) > 1 else ask("Enter quota (e.g. 10M): ").strip()
    if not quota:
        raise CliError("Quota must not be empty (use 0 for unlimited quota)")
    one_line(quota, "quota")
    if not configdir.QUOTA.fullmatch(quota):
        raise CliError(f"Invalid quota format '{quota}'. e.g. 302M (B (byte), k (kibibyte), M (mebibyte), "
                       "G (gibibyte) or T (tebibyte))")
    with ctx.locked():
        _account(ctx, address, QUOTA_SET_USAGE)
        cw.rewrite(ctx.file(QUOTAS), lambda lines: cw.replace_entry(lines, address, ":", f"{address}:{quota}"))
    return 0


def quota_del(ctx: Context, args: list[str]) -> int:
    ctx.program = "delquota"
    require(args, 1, QUOTA_DEL_USAGE)
    at_most(args, 1, QUOTA_DEL_USAGE)
    address = _account(ctx, args[0], QUOTA_DEL_USAGE)
    if not ctx.file(QUOTAS).exists():
        return 0
    with ctx.locked():
        cw.rewrite(ctx.file(QUOTAS), lambda lines: cw.remove_entry(lines, address, ":"))
    return 0
