"""`setup email …`: `postfix-accounts.cf` (and the aliases and quotas of an account it deletes).

Every command checks everything it can before it touches a file, asks for the
password before it takes the lock (a prompt must not hold up the poller), then
checks again under the lock, where the answer cannot change, and writes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from mailwright import configwrite as cw
from ops import configdir

from .common import ACCOUNTS, QUOTAS, VIRTUAL, CliError, Context, UsageExit, ask, at_most, expect_address, \
    one_line, password_or_prompt, require, require_content, sha512_crypt, usage_text

ADD_USAGE = usage_text("email add <MAIL ACCOUNT> [<PASSWORD>]", """
Add a mail account. Without a password on the command line you are asked for
it twice, so it stays out of your shell history. The mailbox folder
(/var/mail/<domain>/<user>, with its home/) is created at once, owned by the
vmail user; the account can log in within DMS_CONFIG_POLL seconds.
The address is a dot-atom local part (letters, digits and ! # $ & ' * + = ? ^
_ ` { } ~ - with single dots between them) at a domain name. Passwords are
limited to 511 bytes, without line breaks or control characters.
""", "setup email add user@example.com")
UPDATE_USAGE = usage_text("email update <MAIL ACCOUNT> [<PASSWORD>]", """
Change the password of an existing mail account (asked twice when omitted).
""", "setup email update user@example.com")
DEL_USAGE = usage_text("email del [-y|-n] <MAIL ACCOUNT> [<MAIL ACCOUNT>...]", """
Delete mail accounts with their aliases entries and quotas.
  -y  also delete the mailbox data (/var/mail/<domain>/<user>) without asking
  -n  keep the mailbox data without asking
Without either option you are asked whether to delete the mailbox data.
With -y the mailbox data of an account goes first, its entries after: should
the data not be removable, the command stops with exit status 1 and that
account (with its entries) and the ones after it are kept; the accounts
before it are deleted.
""", "setup email del -y user@example.com")
LIST_USAGE = usage_text("email list", """
List the mail accounts with their quota usage and the aliases that point at them.
With ACCOUNT_PROVISIONER=LDAP: the directory's accounts (asked through Dovecot),
with their quota usage when quotas are on; aliases and groups are not shown.
""")
RESTRICT_USAGE = usage_text("email restrict <add|del|list> <send|receive> [<MAIL ACCOUNT>]", """
Deny an address to send (postfix-send-access.cf) or to receive
(postfix-receive-access.cf) mail, lift that restriction, or list the restrictions.
""", "setup email restrict add send spammer@example.com")

def _lines(ctx: Context, name: str) -> list[str]:
    return cw.read_lines(ctx.file(name))


def _is_alias(ctx: Context, address: str) -> bool:
    return cw.has_key(_lines(ctx, VIRTUAL), address, " ")


def _account_exists(ctx: Context, address: str) -> bool:
    return cw.has_key(_lines(ctx, ACCOUNTS), address, "|")


def _check_new_account(ctx: Context, address: str) -> None:
    if _account_exists(ctx, address):
        raise CliError(f"'{address}' already exists")
    if _is_alias(ctx, address):
        raise CliError(f"'{address}' is already defined as an alias")


def _check_existing_account(ctx: Context, address: str) -> None:
    if not _account_exists(ctx, address):
        raise CliError(f"'{address}' does not exist")


def _replace_account(ctx: Context, address: str, hashed: str) -> None:
    def edit(lines: list[str]) -> list[str]:
        i = cw.find(lines, address, "|")
        # Keep a third column (userdb extra fields) through a password change.
        extra = lines[i].strip().split("|", 2)[2:] if i is not None else []
        return cw.replace_entry(lines, address, "|", "|".join([address, hashed, *extra]))
    cw.rewrite(ctx.file(ACCOUNTS), edit)


def refuse_with_ldap(ctx: Context, args: list[str], what: str) -> None:
    """ACCOUNT_PROVISIONER=LDAP: accounts and aliases live in the directory, not in the config
    folder; a command that would edit the folder stops (exit 1) instead of writing a file no
    one reads. `help` still answers."""
    if ctx.settings.ACCOUNT_PROVISIONER == "LDAP" and args[:1] != ["help"]:
        raise CliError(f"ACCOUNT_PROVISIONER=LDAP: accounts and aliases live in the LDAP directory; "
                       f"{what} them there (this command only edits the config folder's files)")


def _set_password(ctx: Context, args: list[str], program: str, usage: str, check) -> int:
    """email add / update: validate, prompt outside the lock, re-check and write under it."""
    ctx.program = program
    refuse_with_ldap(ctx, args, "add and change")
    require(args, 1, usage)
    at_most(args, 2, usage)
    address = expect_address(ctx, args[0], usage)
    check(ctx, address)
    hashed = sha512_crypt(password_or_prompt(args[1] if len(args) > 1 else None))
    with ctx.locked():
        check(ctx, address)
        _replace_account(ctx, address, hashed)
        if check is _check_new_account:
            _create_mailbox(ctx, address)
    return 0


def email_add(ctx: Context, args: list[str]) -> int:
    return _set_password(ctx, args, "addmailuser", ADD_USAGE, _check_new_account)


def _create_mailbox(ctx: Context, address: str) -> None:
    """/var/mail/<domain>/<user>/home as Dovecot would create it (mail_location
    /var/mail/%d/%n, home …/home in the userdb): 0700 directories (the setgid
    bit of /var/mail is inherited) owned by the vmail user. Missing pieces only;
    an existing folder is left as it is. When they cannot be given to the vmail
    user (not root), they are removed again: Dovecot creates them itself at the
    first delivery or login, which a root-owned folder would prevent."""
    if not ctx.mail_root.is_dir():
        ctx.log("debug", f"'{ctx.mail_root}' does not exist: the mailbox is created at the first delivery")
        return
    try:
        _root, domain_dir, maildir = _mail_paths(ctx, address)
    except CliError as e:
        ctx.log("warn", f"The mailbox folder was not created: {e}")
        return
    uid, gid = ctx.settings.DMS_VMAIL_UID, ctx.settings.DMS_VMAIL_GID
    created: list[Path] = []
    try:
        for d in (domain_dir, maildir, maildir / "home"):
            try:
                d.mkdir(mode=0o700)
            except FileExistsError:
                if d.is_symlink() or not d.is_dir():
                    raise NotADirectoryError(f"'{d}' exists and is not a folder")
                continue
            created.append(d)
            os.chown(d, uid, gid)
    except OSError as e:
        for d in reversed(created):
            try:
                d.rmdir()
            except OSError:
                pass
        ctx.log("warn", f"The mailbox folder '{maildir}' could not be created for the vmail user "
                        f"({uid}:{gid}): {e.strerror or e}; Dovecot creates it at the first delivery")
        return
    if created:
        ctx.log("debug", f"Created the mailbox folder '{maildir}'")


def email_update(ctx: Context, args: list[str]) -> int:
    return _set_password(ctx, args, "updatemailuser", UPDATE_USAGE, _check_existing_account)


def _maildir(ctx: Context, address: str) -> Path:
    local, domain = address.split("@", 1)
    return ctx.mail_root / domain / local


def _mail_paths(ctx: Context, address: str) -> tuple[Path, Path, Path]:
    """(mail root, domain folder, mailbox folder), resolved, after checking that
    the mailbox is a direct child of the domain folder, itself a direct child of
    the mail root, and that neither is a symbolic link: no address can make a
    later rmtree or mkdir act outside /var/mail/<domain>/."""
    local, domain = address.split("@", 1)
    if not (configdir.valid_local_part(local) and configdir.valid_domain(domain)):
        raise CliError(f"'{address}' is not a valid e-mail address")
    root = ctx.mail_root.resolve()
    domain_dir, maildir = root / domain, root / domain / local
    for path in (domain_dir, maildir):
        if path.is_symlink():
            raise CliError(f"'{path}' is a symbolic link; refusing to touch it")
    if domain_dir.resolve().parent != root or maildir.resolve().parent != domain_dir.resolve() \
            or domain_dir.name != domain or maildir.name != local:
        raise CliError(f"'{maildir}' is not a mailbox folder under '{root}'")
    return root, domain_dir, maildir


def email_del(ctx: Context, args: list[str]) -> int:
    ctx.program = "delmailuser"
    refuse_with_ldap(ctx, args, "remove")
    delete_data = None
    rest = list(args)
    while rest and rest[0].startswith("-") and rest[0] != "-":
        option = rest.pop(0)
        if option == "--":
            break
        for letter in option[1:]:
            if letter in "yY":
                delete_data = True
            elif letter in "nN":
                delete_data = False
            else:
                raise CliError(f"The option '-{letter}' is unknown", usage=DEL_USAGE)
    require(rest, 1, DEL_USAGE)
    # docker-mailserver: nothing to delete from, nothing to say.
    if not ctx.file(ACCOUNTS).is_file() or ctx.file(ACCOUNTS).stat().st_size == 0:
        return 0
    addresses = []
    for arg in rest:
        address = expect_address(ctx, arg, DEL_USAGE)
        _check_existing_account(ctx, address)
        if address not in addresses:
            addresses.append(address)
    explicit = delete_data is not None
    if delete_data is None:
        answer = ask("Do you want to delete the mailbox data as well (removing all mails)? [y/N] ")
        delete_data = answer.strip().lower() == "y"

    if delete_data:
        for address in addresses:
            _mail_paths(ctx, address)          # refuse before anything changes
    with ctx.locked():
        for address in addresses:
            _check_existing_account(ctx, address)
        for address in addresses:
            # The data first (while the lock is held, so the poller cannot
            # recreate it): when it cannot be removed the command stops with the
            # account and its entries still in place, and exit status 1 is true.
            if delete_data:
                _remove_maildir(ctx, address)
            # Aliases and quota before the account: an interrupted run leaves
            # an account that still works rather than a dangling alias.
            if ctx.file(VIRTUAL).exists():
                cw.rewrite(ctx.file(VIRTUAL), lambda lines: cw.remove_value(lines, None, address))
            if ctx.file(QUOTAS).exists():
                cw.rewrite(ctx.file(QUOTAS), lambda lines: cw.remove_entry(lines, address, ":"))
            cw.rewrite(ctx.file(ACCOUNTS), lambda lines: cw.remove_entry(lines, address, "|"))
            if not delete_data:
                ctx.log("info", "Mailbox data explicitly kept (using -n)." if explicit
                        else "The mailbox data will not be deleted.")
            ctx.log("info", f"'{address}' and associated data (aliases, quotas) deleted")
    return 0


def _remove_maildir(ctx: Context, address: str) -> None:
    _root, domain_dir, maildir = _mail_paths(ctx, address)
    if not maildir.is_dir():
        # The account may never have received its mailbox (deleted before the
        # next poll): there is nothing to remove, and no reason to fail.
        ctx.log("warn", f"Mailbox data directory '{maildir}' does not exist")
        return
    ctx.log("info", f"Deleting mailbox data: '{maildir}'")
    try:
        shutil.rmtree(maildir)
    except OSError as e:
        raise CliError(f"Mailbox data could not be deleted: {e}; '{address}' and its entries are kept")
    try:
        domain_dir.rmdir()                     # only when now empty
    except OSError:
        pass


# --- email list ----------------------------------------------------------------------------------

def _iec(n_bytes: int) -> str:
    """`numfmt --to=iec`: 0, 1023, 1.0K, 9.9M, 10M, 1.5G (rounded up)."""
    if n_bytes < 1024:
        return str(n_bytes)
    value, unit = float(n_bytes), ""
    for unit in "KMGTPE":
        value /= 1024
        if value < 1024:
            break
    if value < 10:
        shown = -(-int(value * 10 * 1000) // 1000) / 10      # ceil to one decimal, tolerant of float noise
        if shown < 10:
            return f"{shown:.1f}{unit}"
    return f"{-(-int(value * 1000) // 1000)}{unit}"


def _size_bytes(size: str) -> int:
    """`10M` (dovecot-quotas.cf, IEC units) in bytes."""
    if size == "0":
        return 0
    return int(size[:-1]) * {"B": 1, "k": 1024, "M": 1024 ** 2, "G": 1024 ** 3, "T": 1024 ** 4}[size[-1]]


def _doveadm_quota(address: str) -> tuple[str, str, str] | None:
    """(used KiB, limit KiB or '-', percent) of the STORAGE row, or None when
    Dovecot cannot answer (not installed, not running, account not applied yet)."""
    doveadm = shutil.which("doveadm")
    if not doveadm:
        return None
    try:
        done = subprocess.run([doveadm, "quota", "get", "-u", address], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    for line in done.stdout.splitlines()[1:]:
        fields = line.split()
        if "STORAGE" in fields:
            i = fields.index("STORAGE")
            if len(fields) >= i + 4:
                return fields[i + 1], fields[i + 2], fields[i + 3]
    return None


def _du(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def _quota_part(ctx: Context, cfg: configdir.ConfigDir, address: str) -> str:
    got = _doveadm_quota(address)
    if got is not None:
        used, limit, percent = got
        used_h = _iec(int(used) * 1024) if used.isdigit() else "~"
        limit_h = _iec(int(limit) * 1024) if limit.isdigit() else "~"
        return f"( {used_h} / {limit_h} ) [{percent}%]"
    # Without Dovecot's answer: the mailbox size on disk against the configured limit.
    used = _du(_maildir(ctx, address))
    limit = _size_bytes(cfg.quotas[address]) if address in cfg.quotas else ctx.settings.POSTFIX_MAILBOX_SIZE_LIMIT
    percent = used * 100 // limit if limit else 0
    return f"( {_iec(used)} / {_iec(limit) if limit else '~'} ) [{percent}%]"


def _directory_accounts(ctx: Context) -> list[str]:
    """ACCOUNT_PROVISIONER=LDAP: the directory's accounts, as Dovecot's LDAP userdb iterates
    them (dovecot-ldap.conf.ext's iterate_filter/iterate_attrs: every PostfixBookMailAccount,
    by its mail address). Raises CliError saying why when they cannot be listed."""
    cannot = "ACCOUNT_PROVISIONER=LDAP: cannot list the accounts of the LDAP directory"
    if not ctx.settings.dovecot_enabled:
        raise CliError(f"{cannot}: Dovecot, which reads them, does not run with SMTP_ONLY=1; "
                       "list them in the directory (e.g. ldapsearch)")
    doveadm = shutil.which("doveadm")
    if not doveadm:
        raise CliError(f"{cannot}: doveadm is not installed here; list them in the directory (e.g. ldapsearch)")
    try:
        done = subprocess.run([doveadm, "user", "*"], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        raise CliError(f"{cannot}: the directory did not answer within 60 s") from None
    except OSError as e:
        raise CliError(f"{cannot}: {e.strerror or e}") from None
    if done.returncode != 0:
        why = next((line for line in reversed(done.stderr.splitlines()) if line.strip()), f"exit {done.returncode}")
        raise CliError(f"{cannot}: doveadm user: " + "".join(c if c.isprintable() else "?" for c in why.strip()))
    # One name a line; anything that is not a single printable word is not shown.
    names = {line.strip() for line in done.stdout.splitlines()}
    return sorted(n for n in names if n and n.isprintable() and not any(c.isspace() for c in n))


def _email_list_ldap(ctx: Context) -> int:
    """docker-mailserver's `email list` format from the directory: `* address` with the quota
    part when quotas are on; aliases and groups live in the directory and are not shown."""
    addresses = _directory_accounts(ctx)
    if not addresses:
        ctx.log("warn", "the LDAP directory has no mail accounts (objectClass=PostfixBookMailAccount)")
        return 0
    cfg = ctx.config()
    out = []
    for address in addresses:
        entry = f"* {address}"
        if ctx.settings.quotas_enabled:
            entry += " " + _quota_part(ctx, cfg, address)
        out.append(entry + "\n\n")
    print("".join(out), end="", flush=True)
    return 0


def email_list(ctx: Context, args: list[str]) -> int:
    ctx.program = "listmailuser"
    if args and args[0] == "help":
        raise UsageExit(LIST_USAGE, 0)
    if ctx.settings.ACCOUNT_PROVISIONER == "LDAP":
        return _email_list_ldap(ctx)
    require_content(ctx.file(ACCOUNTS))
    cfg = ctx.config()
    out = []
    for account in cfg.accounts:
        entry = f"* {account.address}"
        if ctx.settings.quotas_enabled:
            entry += " " + _quota_part(ctx, cfg, account.address)
        aliases = [alias for alias, targets in cfg.aliases if account.address in targets]
        if aliases:
            entry += f"\n    [ aliases -> {', '.join(aliases)} ]"
        out.append(entry + "\n\n")
    print("".join(out), end="", flush=True)
    return 0


# --- email restrict ------------------------------------------------------------------------------

def email_restrict(ctx: Context, args: list[str]) -> int:
    ctx.program = "restrict-access"
    if args and args[0] == "help":
        raise UsageExit(RESTRICT_USAGE, 0)
    command = args[0] if args else ""
    direction = (args[1] if len(args) > 1 else "").lower()
    at_most(args, 3, RESTRICT_USAGE)
    if direction not in ("send", "receive"):
        raise CliError(f"Unknown or missing second parameter '{direction}' - specify 'send' or 'receive'",
                       usage=RESTRICT_USAGE)
    if command not in ("add", "del", "list"):
        raise CliError(f"Unknown or missing command '{command}' - specify 'add', 'del' or 'list'",
                       usage=RESTRICT_USAGE)
    path = ctx.file(f"postfix-{direction}-access.cf")

    if command == "list":
        rejects = [line for line in cw.read_lines(path) if "REJECT" in line]
        if rejects:
            print("\n".join(rejects), flush=True)
        else:
            ctx.log("info", f"Everyone is allowed to {direction} mails")
        return 0

    user = args[2] if len(args) > 2 else ask("Provide a username: ")
    if not user:
        raise CliError("User must not be empty")
    one_line(user, "user")
    # An access(5) key: a full address, a domain or a local part followed by '@'
    # (ops.configdir's rule, which the reader applies too).
    user = user.strip().lower()
    if not configdir.ACCESS_KEY.fullmatch(user):
        raise CliError(f"'{user}' is not an e-mail address, a domain or a 'localpart@'")

    def present() -> bool:
        return cw.has_key(cw.read_lines(path), user, " ")

    if command == "add":
        if present():
            raise CliError(f"User '{user}' already denied to {direction} mails")
        with ctx.locked():
            if present():
                raise CliError(f"User '{user}' already denied to {direction} mails")
            cw.rewrite(path, lambda lines: [*lines, f"{user} \t\t REJECT"])
    else:
        if not present():
            raise CliError(f"User '{user}' not found")
        with ctx.locked():
            if not present():
                raise CliError(f"User '{user}' not found")
            cw.rewrite(path, lambda lines: cw.remove_entry(lines, user, " "))
    return 0
