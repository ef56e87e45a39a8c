"""`setup debug …`: thin front-ends to the daemons' own tools (`setup fail2ban`: fail2ban.py).

fetchmail and getmail are not part of mailwright yet; their commands
say so and fail instead of pretending.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

from .common import CliError, Context


def _cat(ctx: Context, path) -> int:
    try:
        with open(path, "rb") as f:
            shutil.copyfileobj(f, sys.stdout.buffer)
    except FileNotFoundError:
        raise CliError(f"'{path}' does not exist")
    sys.stdout.flush()
    return 0


def debug_fetchmail(ctx: Context, args: list[str]) -> int:
    ctx.program = "debug-fetchmail"
    fetchmail = shutil.which("fetchmail")
    if not fetchmail:
        raise CliError("fetchmail is not installed: mailwright does not provide fetchmail yet "
                       "(ENABLE_FETCHMAIL is accepted but not implemented)")
    source = ctx.file("fetchmail.cf")
    if not source.is_file():
        raise CliError(f"'{source}' does not exist")
    # fetchmail refuses a control file that others can read; check a private copy.
    with tempfile.TemporaryDirectory() as tmp:
        rc = os.path.join(tmp, "fetchmailrc")
        with open(source, "rb") as src, open(os.open(rc, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as dst:
            dst.write(src.read())
        done = subprocess.run([fetchmail, "--verbose", "--daemon", "0", "--check", "--nosyslog", "--nodetach",
                               "-f", rc], stdin=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    return done.returncode


def debug_getmail(ctx: Context, args: list[str]) -> int:
    ctx.program = "debug-getmail"
    raise CliError("getmail is not installed: mailwright does not provide getmail yet "
                   "(ENABLE_GETMAIL is accepted but not implemented)")


def debug_show_mail_logs(ctx: Context, args: list[str]) -> int:
    return _cat(ctx, ctx.log_dir / "mail.log")


def debug_login(ctx: Context, args: list[str]) -> int:
    bash = shutil.which("bash") or "/bin/sh"
    sys.stdout.flush()
    sys.stderr.flush()
    if args:
        os.execv(bash, [bash, "-c", " ".join(args)])
    os.execv(bash, [bash])
