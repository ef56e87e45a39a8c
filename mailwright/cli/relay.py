"""`setup relay …`: sender-dependent relay hosts (`postfix-relaymap.cf`) and their
credentials (`postfix-sasl-password.cf`)."""

from __future__ import annotations

import ipaddress
import re

from mailwright import configwrite as cw

from .common import CliError, Context, at_most, expect_domain, one_line, password_or_prompt, require, usage_text

RELAYMAP = "postfix-relaymap.cf"
SASL_PASSWORD = "postfix-sasl-password.cf"

ADD_DOMAIN_USAGE = usage_text("relay add-domain <SENDER DOMAIN> <RELAY HOST> [<RELAY PORT>]", """
Send the mail of the accounts of a domain through a relay host (port 25 by
default). Use 'setup relay add-auth' when the relay host needs a login.
""", "setup relay add-domain example.com relay.service.test 587")
ADD_AUTH_USAGE = usage_text("relay add-auth <SENDER DOMAIN> <RELAY ACCOUNT> [<RELAY PASSWORD>]", """
Store the credentials used with the relay host of a domain. Without a password
on the command line you are asked for it twice.
""", "setup relay add-auth example.com relay-account")
EXCLUDE_USAGE = usage_text("relay exclude-domain <SENDER DOMAIN>", """
Send the mail of a domain directly, not through the default relay host (RELAY_HOST).
""", "setup relay exclude-domain example.com")

HOSTNAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$", re.IGNORECASE)


def _host(host: str) -> str:
    one_line(host, "relay host")
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if HOSTNAME.fullmatch(bare):
        return bare.lower()
    try:
        ip = ipaddress.ip_address(bare)
    except ValueError:
        raise CliError(f"Relay host '{host}' is not a host name or an IP address")
    return f"ipv6:{ip}" if ip.version == 6 else str(ip)


def _port(port: str) -> int:
    one_line(port, "relay port")
    if not re.fullmatch(r"[0-9]{1,5}", port) or not 1 <= int(port) <= 65535:
        raise CliError(f"Relay port '{port}' is not a number between 1 and 65535")
    return int(port)


def add_domain(ctx: Context, args: list[str]) -> int:
    ctx.program = "addrelayhost"
    require(args, 2, ADD_DOMAIN_USAGE)
    at_most(args, 3, ADD_DOMAIN_USAGE)
    domain = expect_domain(args[0], ADD_DOMAIN_USAGE)
    if not args[1]:
        raise CliError("No relay host specified", usage=ADD_DOMAIN_USAGE)
    host = _host(args[1])
    port = _port(args[2]) if len(args) > 2 and args[2] != "" else 25
    entry = f"@{domain} [{host}]:{port}"
    with ctx.locked():
        cw.rewrite(ctx.file(RELAYMAP), lambda lines: cw.replace_entry(lines, f"@{domain}", " ", entry))
    return 0


def add_auth(ctx: Context, args: list[str]) -> int:
    ctx.program = "addsaslpassword"
    require(args, 2, ADD_AUTH_USAGE)
    at_most(args, 3, ADD_AUTH_USAGE)
    domain = expect_domain(args[0], ADD_AUTH_USAGE)
    user = args[1]
    if not user:
        raise CliError("No relay account specified", usage=ADD_AUTH_USAGE)
    one_line(user, "relay account")
    if re.search(r"[\s:]", user):
        raise CliError(f"Relay account '{user}' must not contain white space or ':'")
    password = password_or_prompt(args[2] if len(args) > 2 else None)
    if password != password.rstrip():
        # The reader (and postmap) strip the end of the line: it would not read back the same.
        raise CliError("The relay password must not end with white space")
    entry = f"@{domain} {user}:{password}"
    with ctx.locked():
        # A new file holds a clear-text password: readable by root only.
        cw.rewrite(ctx.file(SASL_PASSWORD), lambda lines: cw.replace_entry(lines, f"@{domain}", " ", entry),
                   mode=0o600)
    return 0


def exclude_domain(ctx: Context, args: list[str]) -> int:
    ctx.program = "excluderelaydomain"
    require(args, 1, EXCLUDE_USAGE)
    at_most(args, 1, EXCLUDE_USAGE)
    domain = expect_domain(args[0], EXCLUDE_USAGE)
    with ctx.locked():
        cw.rewrite(ctx.file(RELAYMAP), lambda lines: cw.replace_entry(lines, f"@{domain}", " ", f"@{domain}"))
    return 0
