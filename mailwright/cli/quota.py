"""`setup quota …`: `dovecot-quotas.cf`, the storage limit of a mail account."""

from __future__ import annotations

from mailwright import configwrite as cw
from ops import configdir

from .common import ACCOUNTS, QUOTAS, CliError, Context, ask, at_most, expect_address, one_line, require, usage_text

QUOTA_SET_USAGE = usage_text("quota set <MAIL ACCOUNT> [<QUOTA>]", """
Set the storage limit of an existing mail account. QUOTA is a number with a
unit: B (byte), k (kibibyte), M (mebibyte), G (gibibyte) or T (tebibyte);
0 means unlimited.
""", "setup quota set user@example.com 5G")
QUOTA_DEL_USAGE = usage_text("quota del <MAIL ACCOUNT>", """
Remove the storage limit set for a mail account (the default limit applies again).
""")


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
