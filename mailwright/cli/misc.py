"""`setup fail2ban …` and `setup debug …`: thin front-ends to the daemons' own tools.

fail2ban is not part of mailwright yet; its commands say so and fail instead of
pretending (docker-mailserver prints "Fail2ban not running" for a missing daemon too).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from .common import CliError, Context, UsageExit

FAIL2BAN_USAGE = """Usage: setup fail2ban [<ban|unban> <IP>]
       setup fail2ban log
       setup fail2ban status
"""


def _f2b(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["fail2ban-client", *args], capture_output=True, text=True)


def fail2ban(ctx: Context, args: list[str]) -> int:
    ctx.program = "fail2ban"
    if args and args[0] == "help":
        raise UsageExit(FAIL2BAN_USAGE, 0)
    if args and args[0] not in ("ban", "unban", "log", "status"):
        raise CliError(f"Unknown command '{args[0]}'", usage=FAIL2BAN_USAGE)
    if args and args[0] == "log":
        return _cat(ctx, ctx.log_dir / "fail2ban.log")
    if not shutil.which("fail2ban-client"):
        raise CliError("Fail2ban is not installed: mailwright does not provide fail2ban yet "
                       "(ENABLE_FAIL2BAN is accepted but not implemented)")
    if _f2b("ping").returncode != 0:
        raise CliError("Fail2ban not running")
    listing = _f2b("status").stdout
    found = re.search(r"Jail list:\s*(.*)", listing)
    jails = [j for j in re.split(r"[,\s]+", found.group(1)) if j] if found else []

    if not args:
        banned = False
        for jail in jails:
            ips = re.search(r"Banned IP list:\s*(.+)", _f2b("status", jail).stdout)
            if ips and ips.group(1).strip():
                print(f"Banned in {jail}: {ips.group(1).strip()}")
                banned = True
        if not banned:
            ctx.log("info", "No IPs have been banned")
        return 0
    command, rest = args[0], args[1:]
    if command == "ban":
        if not rest:
            ctx.log("warn", "You need to specify an IP address: Run 'setup fail2ban ban <IP>'")
            return 0
        result = _f2b("set", "custom", "banip", *rest).stdout.strip()
        if result.isdigit() and int(result) > 0:
            print(f"Banned custom IP: {result}")
        else:
            ctx.log("error", f"Banning '{' '.join(rest)}' failed. Already banned?")
        return 0
    if command == "unban":
        if not rest:
            ctx.log("warn", "You need to specify an IP address: Run 'setup fail2ban' to get a list of banned IP addresses")
            return 0
        for jail in jails:
            done = _f2b("set", jail, "unbanip", *rest)
            result = (done.stdout + done.stderr).strip()
            if "is not banned" not in result and "NOK" not in result:
                print(f"Unbanned IP from {jail}: {result}")
        return 0
    for jail in jails:                                          # status
        done = _f2b("status", jail)
        print((done.stdout + done.stderr).rstrip("\n") + "\n")
    return 0


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
