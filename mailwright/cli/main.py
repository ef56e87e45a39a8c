"""`setup`: dispatch of docker-mailserver's subcommands, its usage text and exit codes.

0 success, 1 a missing or invalid argument (nothing written), 2 an unknown command.
"""

from __future__ import annotations

import sys

from mailwright.configwrite import LockTimeout, UnsafePath

from . import alias, check, dkim, dns, dovecot_master, email, fail2ban, misc, quota, relay
from .common import CliError, Context, UsageExit

USAGE = """SETUP(1)

NAME
    setup - mailwright's administration and configuration CLI (docker-mailserver's 'setup')

SYNOPSIS
    setup COMMAND [ help | ARGUMENTS... ]

    COMMAND := { email | alias | quota | dovecot-master | config | relay | fail2ban | dns | debug } SUBCOMMAND

DESCRIPTION
    This is the main administration command that you use for all your interactions with
    'mailwright'. Accounts, aliases, quotas, DKIM keys and relay hosts are managed with
    this CLI tool; it only edits the config folder, and the running server applies the
    change within DMS_CONFIG_POLL seconds, without a restart.

    Most subcommands can provide additional information and examples by appending 'help'.
    For example: 'setup email add help'

[SUB]COMMANDS
    COMMAND email :=
        setup email add <EMAIL ADDRESS> [<PASSWORD>]
        setup email update <EMAIL ADDRESS> [<PASSWORD>]
        setup email del [ OPTIONS... ] <EMAIL ADDRESS> [ <EMAIL ADDRESS>... ]
        setup email restrict <add|del|list> <send|receive> [<EMAIL ADDRESS>]
        setup email list

    COMMAND alias :=
        setup alias add <EMAIL ADDRESS> <RECIPIENT>
        setup alias del <EMAIL ADDRESS> <RECIPIENT>
        setup alias list

    COMMAND quota :=
        setup quota set <EMAIL ADDRESS> [<QUOTA>]
        setup quota del <EMAIL ADDRESS>

    COMMAND dovecot-master :=
        setup dovecot-master add <USERNAME> [<PASSWORD>]
        setup dovecot-master update <USERNAME> [<PASSWORD>]
        setup dovecot-master del [ OPTIONS... ] <USERNAME> [ <USERNAME>... ]
        setup dovecot-master list

    COMMAND config :=
        setup config dkim [ ARGUMENTS... ]

    COMMAND relay :=
        setup relay add-auth <DOMAIN> <USERNAME> [<PASSWORD>]
        setup relay add-domain <DOMAIN> <HOST> [<PORT>]
        setup relay exclude-domain <DOMAIN>

    COMMAND fail2ban :=
        setup fail2ban
        setup fail2ban ban <IP>
        setup fail2ban unban <IP>
        setup fail2ban log
        setup fail2ban status

    COMMAND dns :=
        setup dns [ --zone | --table | --json ] [ --address <IP> ]... [ <DOMAIN>... ]
        setup dns --check [ --resolver <IP[:PORT]> ] [ --json ] [ <DOMAIN>... ]

    COMMAND check :=            (on the operator's side: ./setup.sh check help)
        ./setup.sh [ -c <CONTAINER> | --ssh <HOST> ] check [ --address <HOST> ] [ --json ] ...

    COMMAND debug :=
        setup debug fetchmail
        setup debug getmail
        setup debug login <COMMANDS>
        setup debug show-mail-logs

EXAMPLES
    setup email add test@example.com
        Add the email account test@example.com. You will be prompted
        to input a password afterwards since no password was supplied.

    setup config dkim keysize 2048 domain 'example.com,not-example.com'
        Creates keys of length 2048 for the domains in comma-separated list.

    setup config dkim help
        Explains the options of the 'config dkim' command.

"""

COMMANDS = {
    "email": {"add": email.email_add, "update": email.email_update, "del": email.email_del,
              "restrict": email.email_restrict, "list": email.email_list},
    "alias": {"add": alias.alias_add, "del": alias.alias_del, "list": alias.alias_list},
    "quota": {"set": quota.quota_set, "del": quota.quota_del},
    "dovecot-master": {"add": dovecot_master.master_add, "update": dovecot_master.master_update,
                       "del": dovecot_master.master_del, "list": dovecot_master.master_list},
    "config": {"dkim": dkim.config_dkim},
    "relay": {"add-domain": relay.add_domain, "add-auth": relay.add_auth, "exclude-domain": relay.exclude_domain},
    "debug": {"fetchmail": misc.debug_fetchmail, "getmail": misc.debug_getmail, "login": misc.debug_login,
              "show-mail-logs": misc.debug_show_mail_logs},
}


def invalid(args: list[str]) -> int:
    print(f"The command '{' '.join(args)}' is invalid.\nUse `setup help` to get an overview of all commands.",
          file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] == "help":
        print(USAGE, end="")
        return 0
    if args[0] == "fail2ban":
        handler, rest = fail2ban.fail2ban, args[1:]
    elif args[0] == "dns":
        handler, rest = dns.dns, args[1:]
    elif args[0] == "check":
        handler, rest = check.check, args[1:]
    elif args[0] in COMMANDS and len(args) > 1 and args[1] in COMMANDS[args[0]]:
        handler, rest = COMMANDS[args[0]][args[1]], args[2:]
    else:
        return invalid(args)

    ctx = Context.from_env()
    try:
        return handler(ctx, rest)
    except UsageExit as e:
        (sys.stdout if e.code == 0 else sys.stderr).write(e.usage)
        return e.code
    except CliError as e:
        if e.usage:
            sys.stderr.write(e.usage + "\n")
        ctx.log("error", str(e))
        ctx.log("error", "Aborting")
        return e.code
    except (LockTimeout, UnsafePath) as e:
        ctx.log("error", str(e))
        return 1
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
