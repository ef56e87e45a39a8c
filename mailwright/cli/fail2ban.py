"""`setup fail2ban [<ban|unban> <IP>]`, `setup fail2ban log`, `setup fail2ban status`.

docker-mailserver's command and messages, on `fail2ban-client`:
- no argument: `Banned in <jail>: <ips>` per jail with bans, else `No IPs have been banned`;
- `ban <IP|CIDR>`: into the `custom` jail (manual bans), `Banned custom IP: 1`;
- `unban <IP|CIDR>`: from every jail, `Unbanned IP from <jail>: 1` for each that held it;
- `log`: /var/log/mail/fail2ban.log; `status`: `fail2ban-client status <jail>` for each jail.

The address is hostile input: it must be one IPv4 or IPv6 address or network, written
the way Python's `ipaddress` reads it (no zone index, no spaces, nothing that could pass
for an option), and only its normalised form reaches fail2ban-client (an argv, no shell).
With ENABLE_FAIL2BAN off, every subcommand says so and exits 1.
"""

from __future__ import annotations

import ipaddress
import re
import shutil
import subprocess
import sys

from .common import CliError, Context, UsageExit

USAGE = """Usage: setup fail2ban [<ban|unban> <IP>]
       setup fail2ban log
       setup fail2ban status
"""
NO_IP = "You need to specify an IP address: Run 'setup fail2ban' to get a list of banned IP addresses"
CUSTOM = "custom"          # the jail of manual bans (ops/fail2ban's jail.local)


def shown(arg: str) -> str:
    """An argument as an error message may show it: printable and short."""
    text = arg if arg.isprintable() else arg.encode("unicode_escape").decode("ascii")
    return text if len(text) <= 64 else text[:61] + "..."


def address(arg: str) -> str:
    """The normalised address (`192.0.2.1`, `2001:db8::1`) or network (`192.0.2.0/24`);
    CliError naming the argument otherwise."""
    problem = f"'{shown(arg)}' is not an IP address or network (e.g. 192.0.2.1, 2001:db8::1, 192.0.2.0/24)"
    if not re.fullmatch(r"[0-9A-Fa-f:.]+(?:/[0-9]{1,3})?", arg):
        raise CliError(problem)
    try:
        if "/" in arg:
            net = ipaddress.ip_network(arg, strict=False)
            return str(net.network_address) if net.num_addresses == 1 else str(net)
        return str(ipaddress.ip_address(arg))
    except ValueError:
        raise CliError(problem) from None


def client(*args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("fail2ban-client")
    if not exe:
        raise CliError("Fail2ban is not installed (fail2ban-client not found)")
    try:
        return subprocess.run([exe, *args], capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise CliError(f"fail2ban-client {args[0]} did not answer within 60 s") from None


def jails() -> list[str]:
    found = re.search(r"Jail list:\s*(.*)", client("status").stdout)
    return [j for j in re.split(r"[,\s]+", found.group(1)) if j] if found else []


def banned(jail: str) -> str:
    found = re.search(r"Banned IP list:[ \t]*(.*)", client("status", jail).stdout)
    return found.group(1).strip() if found else ""


def fail2ban(ctx: Context, args: list[str]) -> int:
    ctx.program = "fail2ban"
    if args and args[0] == "help":
        raise UsageExit(USAGE, 0)
    if args and args[0] not in ("ban", "unban", "log", "status"):
        raise CliError(f"Unknown command '{shown(args[0])}'", usage=USAGE)
    command, rest = (args[0], args[1:]) if args else ("", [])
    if command in ("ban", "unban"):
        if len(rest) > 1:
            raise CliError("Too many arguments: one IP address or network at a time", usage=USAGE)
        ip = address(rest[0]) if rest else ""
    elif rest:
        raise CliError("Too many arguments", usage=USAGE)
    if not ctx.settings.ENABLE_FAIL2BAN:
        raise CliError("Fail2ban is not enabled: set ENABLE_FAIL2BAN=1 (the container needs NET_ADMIN)")

    if command == "log":
        try:
            with open(ctx.log_dir / "fail2ban.log", "rb") as f:
                shutil.copyfileobj(f, sys.stdout.buffer)
        except FileNotFoundError:
            raise CliError(f"'{ctx.log_dir / 'fail2ban.log'}' does not exist") from None
        sys.stdout.flush()
        return 0
    if client("ping").returncode != 0:
        raise CliError("Fail2ban not running")

    if not command:
        listed = False
        for jail in jails():
            ips = banned(jail)
            if ips:
                print(f"Banned in {jail}: {ips}")
                listed = True
        if not listed:
            ctx.log("info", "No IPs have been banned")
        return 0
    if command == "ban":
        if not ip:
            ctx.log("warn", "You need to specify an IP address: Run 'setup fail2ban ban <IP>'")
            return 0
        result = client("set", CUSTOM, "banip", ip).stdout.strip()
        if result.isdigit() and int(result) > 0:
            print(f"Banned custom IP: {result}")
        else:
            ctx.log("error", f"Banning '{ip}' failed. Already banned?")
        return 0
    if command == "unban":
        if not ip:
            ctx.log("warn", NO_IP)
            return 0
        unbanned = False
        for jail in jails():
            result = client("set", jail, "unbanip", ip).stdout.strip()
            if result.isdigit() and int(result) > 0:
                print(f"Unbanned IP from {jail}: {result}")
                unbanned = True
        if not unbanned:
            ctx.log("info", f"'{ip}' is not banned")
        return 0
    for jail in jails():                                                # status
        done = client("status", jail)
        print((done.stdout + done.stderr).rstrip("\n") + "\n")
    return 0
