"""`setup config dkim`: OpenDKIM keys and tables in `<config>/opendkim/`.

The layout is docker-mailserver's (and opendkim-genkey's): `keys/<domain>/<selector>.private`
(PEM RSA key), `<selector>.txt` (the DNS TXT record as a zone-file line),
`KeyTable`, `SigningTable`, `TrustedHosts`. Keys are made with `openssl`
because opendkim-tools is not part of the image; an existing key is never
replaced, so running the command twice is harmless.
"""

from __future__ import annotations

import base64
import os
import re
import socket
import subprocess
from pathlib import Path

from mailwright import configwrite as cw
from ops import configdir
from ops.opendkim.daemon import SELECTOR
from ops.settings import domain_of

from .common import CliError, Context, UsageExit

DKIM_USAGE = """OPEN-DKIM(8)

NAME
    open-dkim - Configure DKIM (DomainKeys Identified Mail)

SYNOPSIS
    setup config dkim [ OPTIONS... ]

DESCRIPTION
    Creates DKIM keys and configures OpenDKIM to sign with them. A key that
    already exists is kept. With ACCOUNT_PROVISIONER=FILE the domains default to
    those of the mail accounts and aliases, plus the domain of the mail server's FQDN.

OPTIONS
    help      Print the usage information.
    keysize   Size of the keys to be generated: 1024, 2048 or 4096. Default: 2048
    selector  The DKIM selector. Default: mail
    domain    Comma-separated domain(s) to generate keys for.

EXAMPLES
    setup config dkim keysize 4096
    setup config dkim keysize 1024 selector 2023-dkim
    setup config dkim domain 'example.com,another-example.com'

    The public key to publish is in opendkim/keys/<domain>/<selector>.txt.

EXIT STATUS
    0 when the command succeeded; 1 when an argument is missing or invalid.
"""

KEYSIZES = ("1024", "2048", "4096")


def _parse(args: list[str]) -> tuple[str, str, str | None]:
    keysize, selector, domains = "2048", "mail", None
    rest = list(args)
    while rest:
        option = rest.pop(0)
        if option == "help":
            raise UsageExit(DKIM_USAGE, 0)
        if option not in ("keysize", "selector", "domain"):
            raise CliError(f"Unknown option(s) {' '.join([option, *rest])}", usage=DKIM_USAGE)
        if not rest or not rest[0]:
            raise CliError(f"No {'domain(s)' if option == 'domain' else option} provided after '{option}' argument")
        value = rest.pop(0)
        if option == "keysize":
            if value not in KEYSIZES:
                raise CliError(f"Keysize '{value}' is not supported: use 1024, 2048 or 4096")
            keysize = value
        elif option == "selector":
            if not SELECTOR.fullmatch(value):
                raise CliError(f"Selector '{value}' is not a valid DNS label")
            selector = value
        else:
            domains = value
    return keysize, selector, domains


def _domains(ctx: Context, given: str | None) -> list[str]:
    if given is not None:
        out = []
        for d in (d.strip().lower() for d in re.split(r"[,\s]+", given) if d.strip()):
            if not configdir.DOMAIN.match(d):
                raise CliError(f"'{d}' is not a valid domain name")
            if d not in out:
                out.append(d)
        return out
    found = set(ctx.config().domains) if ctx.settings.ACCOUNT_PROVISIONER == "FILE" else set()
    fqdn = ctx.settings.fqdn or socket.getfqdn()
    domainname = domain_of(fqdn.lower())
    if configdir.DOMAIN.match(domainname):
        found.add(domainname)
    return sorted(found)


def _openssl(args: list[str], data: bytes | None = None) -> bytes:
    try:
        done = subprocess.run(["openssl", *args], input=data, capture_output=True)
    except FileNotFoundError:
        raise CliError("openssl is not installed: it is needed to generate DKIM keys")
    if done.returncode != 0:
        raise CliError(f"openssl {args[0]} failed: {done.stderr.decode(errors='replace').strip()}")
    return done.stdout


def txt_record(selector: str, domain: str, private_pem: bytes) -> str:
    """The zone-file line opendkim-genkey writes, so existing DNS tooling parses it."""
    public = base64.b64encode(_openssl(["rsa", "-pubout", "-outform", "DER"], private_pem)).decode()
    value = "p=" + public
    chunks = [value[i:i + 250] for i in range(0, len(value), 250)]
    body = "".join(f'\n\t  "{c}"' for c in chunks)
    return (f'{selector}._domainkey\tIN\tTXT\t( "v=DKIM1; h=sha256; k=rsa; "{body} )  '
            f"; ----- DKIM key {selector} for {domain}\n")


def _mkdir(path: Path, owner_of: Path) -> None:
    if path.is_dir():
        return
    _mkdir(path.parent, owner_of)
    path.mkdir(mode=0o755)
    if os.geteuid() == 0:
        st = owner_of.stat()
        os.chown(path, st.st_uid, st.st_gid)


def _signing(lines: list[str], domain: str, signing_line: str, new_key: bool) -> list[str]:
    """SigningTable with `signing_line`. OpenDKIM signs with the first line that matches: a key
    made now (a new selector: a rotation) replaces the domain's `*@domain` line, so the next
    message is signed with it; for a key that existed already, the table is kept as it is
    (running the command again changes nothing) unless the domain has no line at all."""
    pattern = f"*@{domain}"
    if not new_key:
        if any(x.split() and x.split()[0].lower() == pattern for x in lines):
            return lines
        return [*lines, signing_line]
    out, placed = [], False
    for line in lines:
        words = line.split()
        if words and not words[0].startswith("#") and words[0].lower() == pattern:
            if not placed:
                out.append(signing_line)
                placed = True
            continue
        out.append(line)
    return out if placed else [*out, signing_line]


def config_dkim(ctx: Context, args: list[str]) -> int:
    ctx.program = "open-dkim"
    keysize, selector, given = _parse(args)
    s = ctx.settings
    if s.ENABLE_RSPAMD and not s.ENABLE_OPENDKIM:
        raise CliError("DKIM keys for Rspamd are not supported yet: set ENABLE_OPENDKIM=1 to use OpenDKIM")
    domains = _domains(ctx, given)
    if not domains:
        ctx.log("warn", "No entries found, no keys to make")
        return 0

    base = ctx.file("opendkim")
    # Keys are made before the lock is taken: a 4096-bit key takes seconds and
    # the poller should not wait for it.
    new_keys: dict[str, bytes] = {}
    for domain in domains:
        if not (base / "keys" / domain / f"{selector}.private").exists():
            new_keys[domain] = _openssl(["genrsa", "-traditional", keysize])

    with ctx.locked():
        # No symbolic link on the way to what we write (checked before the first
        # write, so a refused command writes nothing): `opendkim/` itself is
        # checked by the lock, the rest here.
        cw.refuse_symlinks([base / "keys", *(base / name for name in ("KeyTable", "SigningTable", "TrustedHosts")),
                            *(p for d in domains for p in (base / "keys" / d, base / "keys" / d / f"{selector}.private",
                                                           base / "keys" / d / f"{selector}.txt"))])
        _mkdir(base, ctx.config_dir)
        for domain in domains:
            keydir = base / "keys" / domain
            _mkdir(keydir, ctx.config_dir)
            private = keydir / f"{selector}.private"
            if not private.exists():
                ctx.log("info", f"Creating DKIM private key '{private}'")
                cw.write_atomic(private, new_keys[domain], mode=0o600)
            txt = keydir / f"{selector}.txt"
            if not txt.exists():
                cw.write_atomic(txt, txt_record(selector, domain, private.read_bytes()).encode(), mode=0o644)
            entry = f"{selector}._domainkey.{domain}"
            key_line = f"{entry} {domain}:{selector}:/etc/opendkim/keys/{domain}/{selector}.private"
            signing_line = f"*@{domain} {entry}"
            cw.rewrite(base / "KeyTable", lambda lines: lines if key_line in (x.strip() for x in lines)
                       else [*lines, key_line])
            cw.rewrite(base / "SigningTable", lambda lines: _signing(lines, domain, signing_line, domain in new_keys))
        cw.rewrite(base / "TrustedHosts",
                   lambda lines: lines if any(x.strip() for x in lines) else ["127.0.0.1", "localhost"])
    for domain in domains:
        ctx.log("info", f"DNS record to publish for {domain}: {base / 'keys' / domain / (selector + '.txt')}")
    return 0

