"""`setup dns` (also `mailwright dns`): the records the domains need, and `--check` against live DNS.

Exit status as `mailwright check`: 0 all good, 1 warnings only, 2 a failure
(a required record missing or wrong, a second SPF record, reverse DNS not
naming the FQDN, or a question the resolver could not answer).
"""

from __future__ import annotations

import ipaddress
import json
import sys
from dataclasses import asdict, dataclass

from mailwright import dnsrecords, dnswire
from ops import tls as tlsmod
from ops.configdir import valid_domain
from ops.settings import SettingsError

from .common import CliError, Context, UsageExit

USAGE = """DNS(8)

NAME
    dns - print the DNS records the mail domains need, or check the published ones

SYNOPSIS
    setup dns [ OPTIONS... ] [ DOMAIN... ]

DESCRIPTION
    Without DOMAIN: every domain of the accounts and aliases, and the server's own.
    Records: MX, SPF, DKIM (one per key in opendkim/keys), DMARC, MTA-STS, TLS-RPT,
    TLSA (the certificate in use, and the next key when staged in ssl/next/),
    the SRV, autoconfig and autodiscover records of mail clients, and the server's
    A/AAAA records when --address is given.

OPTIONS
    --zone          Only the zone-file lines.
    --table         Only the table.
    --json          Machine-readable output.
    --address IP    An address of the server (repeatable): its A/AAAA record, and with
                    --check its reverse DNS. Without it, --check uses the FQDN's published addresses.
    --check         Query the live DNS and print, per record: ok, missing, wrong or extra.
    --resolver IP[:PORT]  The resolver --check asks (default: the system's).

EXIT STATUS
    0 fine; 1 warnings only; 2 a failure, or an invalid argument (1 for usage errors).
"""

OK, WARN, FAIL = "ok", "warn", "fail"
RANK = {OK: 0, WARN: 1, FAIL: 2}


@dataclass
class Finding:
    status: str                 # ok | missing | wrong | extra | unknown
    severity: str               # ok | warn | fail
    name: str
    type: str
    wanted: str
    published: list[str]
    advice: str = ""


def _options(args: list[str]) -> dict:
    opts = {"mode": "both", "json": False, "check": False, "addresses": [], "resolver": None, "domains": []}
    it = iter(args)
    for a in it:
        if a == "help":
            raise UsageExit(USAGE, 0)
        if a in ("--zone", "--table"):
            opts["mode"] = a[2:]
        elif a == "--json":
            opts["json"] = True
        elif a == "--check":
            opts["check"] = True
        elif a in ("--address", "--resolver"):
            value = next(it, None)
            if value is None:
                raise CliError(f"{a} needs a value", usage=USAGE)
            if a == "--address":
                try:
                    opts["addresses"].append(str(ipaddress.ip_address(value)))
                except ValueError:
                    raise CliError(f"--address '{value}' is not an IP address")
            else:
                opts["resolver"] = _resolver(value)
        elif a.startswith("-"):
            raise CliError(f"Unknown option '{a}'", usage=USAGE)
        else:
            d = a.rstrip(".").lower()
            if not valid_domain(d):
                raise CliError(f"'{a}' is not a domain name")
            opts["domains"].append(d)
    return opts


def _resolver(value: str) -> tuple[str, int]:
    try:
        return dnswire.parse_server(value)
    except ValueError:
        raise CliError(f"--resolver '{value}' is not an IP address (IP, IPv4:PORT or [IPv6]:PORT)")


def _zone(ctx: Context, opts: dict) -> dnsrecords.Zone:
    s = ctx.settings
    cfg = ctx.config()
    try:
        tls = tlsmod.resolve(s, ctx.config_dir)
    except SettingsError as e:
        ctx.log("warn", f"TLSA records left out: {e}")
        tls = None
    return dnsrecords.wanted(s, cfg.domains, ctx.config_dir, tls, opts["addresses"], opts["domains"] or None)


def _normal(rtype: str, value: str) -> str:
    value = " ".join(value.split())
    if rtype == "TXT":
        if value.startswith("v=DKIM1"):
            # What verifiers use is the key (and its type); tag order and h= are cosmetics.
            tags = dict(t.strip().split("=", 1) for t in value.split(";") if "=" in t)
            return f"k={tags.get('k', 'rsa').strip()}; p={tags.get('p', '').replace(' ', '')}"
        return value.rstrip(";").strip()
    return value.lower()


def check(zone: dnsrecords.Zone, fqdn: str, resolver: tuple[str, int] | None) -> list[Finding]:
    server, port = resolver or (dnswire.system_resolver(), 53)
    findings: list[Finding] = []
    groups: dict[tuple[str, str, str], list[dnsrecords.Record]] = {}
    for r in zone.records:
        groups.setdefault((r.name, r.type, r.owns), []).append(r)
    dead = None         # a resolver that does not answer at all is not asked 30 more times
    for (name, rtype, owns), records in groups.items():
        try:
            if dead:
                raise dead
            answer = dnswire.query(name, rtype, server, port)
        except dnswire.DnsError as e:
            if "no answer" in str(e) or "cannot reach" in str(e):
                dead = e
            for r in records:
                findings.append(Finding("unknown", FAIL, name, rtype, r.value, [],
                                        f"the resolver {server} could not answer ({e}): check again"))
            continue
        published = [v for v in answer.records if not owns or v.startswith(owns)]
        got = {_normal(rtype, v): v for v in published}
        want = {_normal(rtype, r.value) for r in records}
        for r in records:
            sev = FAIL if r.required else WARN
            if _normal(rtype, r.value) in got:
                findings.append(Finding("ok", OK, name, rtype, r.value, published))
            elif not published:
                findings.append(Finding("missing", sev, name, rtype, r.value, [], f"publish: {r.zone_line()}"))
            else:
                findings.append(Finding("wrong", sev, name, rtype, r.value, published,
                                        f"replace with: {r.zone_line()}"))
        if any(r.exclusive for r in records):
            for norm, v in got.items():
                if norm in want:
                    continue
                # Two SPF records make SPF fail for everyone (RFC 7208 4.5).
                sev = FAIL if owns == "v=spf1" else WARN
                if not any(f.name == name and f.type == rtype and f.status == "wrong" for f in findings):
                    findings.append(Finding("extra", sev, name, rtype, "", [v], "remove this record"))
    if not dead:
        findings.extend(_reverse(zone, fqdn, server, port))
    return findings


def _reverse(zone: dnsrecords.Zone, fqdn: str, server: str, port: int) -> list[Finding]:
    out = []
    fqdn = dnsrecords.absolute(fqdn)
    addresses = list(zone.addresses)
    if not addresses:
        for rtype in ("A", "AAAA"):
            try:
                addresses += dnswire.query(fqdn, rtype, server, port).records
            except dnswire.DnsError:
                pass
    if not addresses:
        out.append(Finding("missing", FAIL, fqdn, "A", "", [], "publish the server's A (and AAAA) record"))
    for addr in addresses:
        name = dnswire.reverse_name(addr)
        try:
            ptr = list(dnswire.query(name, "PTR", server, port).records)
        except dnswire.DnsError as e:
            out.append(Finding("unknown", FAIL, name, "PTR", fqdn, [], f"the resolver could not answer ({e})"))
            continue
        if fqdn in ptr:
            out.append(Finding("ok", OK, name, "PTR", fqdn, ptr))
        else:
            out.append(Finding("missing" if not ptr else "wrong", FAIL, name, "PTR", fqdn, ptr,
                               f"ask the owner of {addr} (the hosting provider) to set its reverse DNS to {fqdn}"))
    return out


def _table(rows: list[tuple[str, ...]], out) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        out.write("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1] + "\n")


def _short(value: str, width: int = 72) -> str:
    return value if len(value) <= width else value[:width - 3] + "..."


def dns(ctx: Context, args: list[str]) -> int:
    opts = _options(args)
    zone = _zone(ctx, opts)
    out = sys.stdout
    if opts["check"]:
        findings = check(zone, ctx.settings.fqdn, opts["resolver"])
        worst = max((RANK[f.severity] for f in findings), default=0)
        counts = {k: sum(f.severity == k for f in findings) for k in (OK, WARN, FAIL)}
        if opts["json"]:
            json.dump({"findings": [asdict(f) for f in findings], "summary": counts, "exit": worst}, out, indent=1)
            out.write("\n")
            return worst
        rows = [("RESULT", "STATUS", "TYPE", "NAME", "DETAIL")]
        for f in findings:
            detail = f.advice or _short(f.wanted)
            if f.status in ("wrong", "extra") and f.published:
                detail = f"published: {_short(' | '.join(f.published), 60)}; {f.advice}"
            rows.append((f.severity.upper(), f.status, f.type, f.name, detail))
        _table(rows, out)
        out.write(f"\n{counts[OK]} ok, {counts[WARN]} warnings, {counts[FAIL]} failures\n")
        return worst
    if opts["json"]:
        json.dump({"records": [asdict(r) | {"zone": r.zone_line()} for r in zone.records],
                   "notes": zone.notes}, out, indent=1)
        out.write("\n")
        return 0
    if opts["mode"] in ("both", "zone"):
        if opts["mode"] == "both":
            out.write("; zone-file lines\n")
        for r in zone.records:
            out.write(r.zone_line() + "\n")
    if opts["mode"] in ("both", "table"):
        if opts["mode"] == "both":
            out.write("\n")
        rows = [("TYPE", "NAME", "REQUIRED", "VALUE")]
        rows += [(r.type, r.name, "yes" if r.required else "no", _short(r.value) + f"  ({r.purpose})")
                 for r in zone.records]
        _table(rows, out)
    for note in zone.notes:
        out.write("\n; " + note.replace("\n", "\n; ").rstrip("; ") + "\n")
    return 0
