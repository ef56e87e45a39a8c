"""`setup debug …`: thin front-ends to the daemons' own tools (`setup fail2ban`: fail2ban.py).

"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

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
    """docker-mailserver's `debug fetchmail`: a dry run, `fetchmail --check --verbose`, of what the
    daemon runs (/etc/fetchmailrc when fetchmail is on, else the config folder's fetchmail.cf);
    fetchmail's output and exit status (11 when no server answers)."""
    ctx.program = "debug-fetchmail"
    fetchmail = shutil.which("fetchmail")
    if not fetchmail:
        raise CliError("fetchmail is not installed")
    from ops.fetchmail.daemon import RC
    source = Path(RC) if os.path.isfile(RC) else ctx.file("fetchmail.cf")
    if not source.is_file():
        raise CliError(f"'{source}' does not exist")
    # fetchmail refuses a control file that others can read; check a private copy, with a
    # throw-away UIDL cache and lock (a dry run must not touch the daemon's, nor wait for it).
    with tempfile.TemporaryDirectory() as tmp:
        rc = os.path.join(tmp, "fetchmailrc")
        with open(source, "rb") as src, open(os.open(rc, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as dst:
            dst.write(src.read())
        sys.stdout.flush()
        done = subprocess.run([fetchmail, "--verbose", "--daemon", "0", "--check", "--nosyslog", "--nodetach",
                               "--idfile", os.path.join(tmp, "fetchids"), "--pidfile", os.path.join(tmp, "pid"),
                               "-f", rc],
                              stdin=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    return done.returncode


def debug_getmail(ctx: Context, args: list[str]) -> int:
    """docker-mailserver's `debug getmail` (v15): each getmail/<id>.cf of the config folder, as the
    daemon runs it (merged with getmailrc_general), parsed by getmail itself (`--dump`)."""
    ctx.program = "debug-getmail"
    if not shutil.which("getmail"):
        raise CliError("getmail is not installed")
    from ops.configdir import ConfigDir
    from ops.getmail import config, run
    rcs = config.accounts(ConfigDir(path=ctx.config_dir))
    if not rcs:
        raise CliError(f"'{ctx.file('getmail')}' holds no usable <id>.cf file")
    sys.stdout.flush()
    return run.main(["--dump"], rcs=rcs)


def debug_show_mail_logs(ctx: Context, args: list[str]) -> int:
    return _cat(ctx, ctx.log_dir / "mail.log")


def debug_login(ctx: Context, args: list[str]) -> int:
    bash = shutil.which("bash") or "/bin/sh"
    sys.stdout.flush()
    sys.stderr.flush()
    if args:
        os.execv(bash, [bash, "-c", " ".join(args)])
    os.execv(bash, [bash])
