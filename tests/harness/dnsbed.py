"""The multi-server test bed (issue 10): an internal Docker network, a DNS server, mail servers on it.

    network  `docker network create --internal` on a fixed subnet (SUBNET); the host keeps the
             bridge's gateway address (GATEWAY), so tests reach every container by its own IP
    dns      unbound (Debian) in its own container at DNS_IP, authoritative for everything:
             `local-zone: "." static`, so a name without records is NXDOMAIN at once; records are
             changed live with `unbound-control` (add/replace/remove, PTR, TXT split in 255-byte
             strings), and a name can be made to SERVFAIL or to time out (written in unbound.conf
             with every record, then `unbound-control reload`: see `Dns.fail`)
    servers  mailwright containers from the image under test, each with its IP, its FQDN as
             `--hostname` (as docker-mailserver users run it) and a resolv.conf naming only the
             bed's DNS (bind-mounted: Postfix runs unchrooted, Dovecot and Python read it too)
    clients  one-off containers on the network with their own address, or extra addresses on the
             host's side of the bridge (`Bed.host_address`) for smtplib's `source=`

Every container is named `mwtest-*` (the session sweep removes leftovers), the network
`mwtest-bed-*` (removed at teardown and swept at start). Nothing here binds a host port.
"""

from __future__ import annotations

import hashlib
import imaplib
import ipaddress
import json
import os
import shlex
import smtplib
import ssl
import subprocess
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import dockercli as d
from .clients import find_message, list_mailboxes
from .configdir import MailConfig
from .mailserver import BASE_ENV, MailContainer, Volumes

SUBNET = "10.231.25.0/24"
GATEWAY = "10.231.25.1"          # the host's address on the bridge (the default client address)
DNS_IP = "10.231.25.53"
FIRST_SERVER_IP = 11             # mx1 .11, mx2 .12, ... up to .99
FIRST_CLIENT_IP = 100            # client containers and host addresses: .100 .. .250
NETWORK_PREFIX = "mwtest-bed"
DNS_IMAGE_REPO = "mailwright-test-dns"
DEFAULT_TTL = 60
# The resolver options of every bed server: a name that times out costs 2 x 1 s, not 2 x 5 s.
RESOLV_OPTIONS = "options timeout:1 attempts:2"
TIMEOUT = 45                     # first port-25 connection from a new client waits ~6 s (postscreen)

DNS_DOCKERFILE = textwrap.dedent("""\
    FROM {base}
    ENV DEBIAN_FRONTEND=noninteractive
    RUN apt-get update \\
     && apt-get install -y --no-install-recommends unbound bind9-dnsutils \\
     && apt-get clean && rm -rf /var/lib/apt/lists/* /etc/unbound/unbound.conf.d/* /var/lib/unbound/root.key
    COPY unbound.conf /etc/unbound/unbound.conf
    CMD ["unbound", "-d", "-c", "/etc/unbound/unbound.conf"]
""")

# Authoritative for the whole tree, no recursion anywhere (the network is internal), no cache
# (answers change between test cases), and unbound-control on loopback without certificates.
UNBOUND_CONF = textwrap.dedent("""\
    server:
        interface: 0.0.0.0
        port: 53
        access-control: 0.0.0.0/0 allow
        do-ip6: no
        username: ""
        chroot: ""
        directory: "/etc/unbound"
        pidfile: ""
        use-syslog: no
        logfile: ""
        verbosity: 1
        log-queries: yes
        do-daemonize: no
        module-config: "iterator"
        trust-anchor-signaling: no
        root-key-sentinel: no
        qname-minimisation: no
        cache-max-ttl: 0
        cache-max-negative-ttl: 0
        infra-host-ttl: 1
        local-zone: "." static
    remote-control:
        control-enable: yes
        control-interface: 127.0.0.1
        control-use-cert: no
""")

# A TXT record naming the configuration unbound serves (`Dns._reload` waits for it).
GENERATION_NAME = "generation.dnsbed.invalid."
RR_TYPES = ("A", "AAAA", "MX", "TXT", "PTR", "CNAME", "NS", "SRV", "TLSA", "CAA")


class BedError(RuntimeError):
    pass


# --- record syntax ----------------------------------------------------------------------
def fqdn(name: str) -> str:
    """`Example.ORG` -> `example.org.`; refuses what unbound would misread."""
    n = name.strip().rstrip(".").lower()
    if not n or any(ch.isspace() or ch in "\"'\\;" for ch in n):
        raise BedError(f"not a DNS name: {name!r}")
    return n + "."


def reverse_name(ip: str) -> str:
    """`10.231.25.11` -> `11.25.231.10.in-addr.arpa.` (IPv6: the nibble form)."""
    return ipaddress.ip_address(ip).reverse_pointer + "."


def txt_rdata(text: str | bytes) -> str:
    """One TXT value as quoted character-strings of at most 255 bytes each.

    The split is on bytes (RFC 1035), never inside a UTF-8 sequence; `"` and `\\` are escaped,
    other bytes outside printable ASCII as `\\DDD`. Clients (SPF, DKIM, DMARC) join the strings.
    """
    raw = text.encode() if isinstance(text, str) else text
    chunks: list[bytes] = []
    while raw:
        cut = min(255, len(raw))
        while cut < len(raw) and cut > 0 and (raw[cut] & 0xC0) == 0x80:   # a continuation byte
            cut -= 1
        chunks.append(raw[:cut])
        raw = raw[cut:]
    if not chunks:
        chunks = [b""]

    def quote(chunk: bytes) -> str:
        out = []
        for b in chunk:
            ch = chr(b)
            if ch in '"\\':
                out.append("\\" + ch)
            elif 0x20 <= b < 0x7F:
                out.append(ch)
            else:
                out.append(f"\\{b:03d}")
        return '"' + "".join(out) + '"'
    return " ".join(quote(c) for c in chunks)


def txt_strings(presentation: str) -> list[bytes]:
    """The character-strings of a TXT value in presentation form (`"a" "b\\"c"`), unescaped."""
    out: list[bytes] = []
    i, n = 0, len(presentation)
    while i < n:
        if presentation[i].isspace():
            i += 1
            continue
        if presentation[i] != '"':
            raise BedError(f"TXT value not quoted at {i}: {presentation!r}")
        i += 1
        buf = bytearray()
        while i < n and presentation[i] != '"':
            ch = presentation[i]
            if ch == "\\":
                if presentation[i + 1:i + 4].isdigit() and len(presentation[i + 1:i + 4]) == 3:
                    buf.append(int(presentation[i + 1:i + 4]))
                    i += 4
                    continue
                ch = presentation[i + 1]
                i += 1
            buf += ch.encode()
            i += 1
        if i >= n:
            raise BedError(f"unterminated TXT string: {presentation!r}")
        out.append(bytes(buf))
        i += 1
    return out


def bind_txt_value(zone_text: str) -> str:
    """The TXT value of a BIND-format record file such as opendkim-genkey's `<selector>.txt`
    (`mail._domainkey IN TXT ( "v=DKIM1; h=sha256; k=rsa; " "p=MIIB..." )  ; comment`): its
    strings joined, ready for `bed.dns.txt(name, value)`."""
    body = zone_text[zone_text.index("(") + 1:zone_text.rindex(")")] if "(" in zone_text else zone_text
    start = body.find('"')
    if start < 0:
        raise BedError("no quoted TXT string in the record file")
    return b"".join(txt_strings(body[start:body.rindex('"') + 1])).decode()


def rdata(rtype: str, value) -> str:
    """The presentation form of one value: MX takes (preference, host) or "10 host"."""
    rtype = rtype.upper()
    if rtype not in RR_TYPES:
        raise BedError(f"unsupported record type {rtype!r} (one of {', '.join(RR_TYPES)})")
    if rtype == "TXT":
        return txt_rdata(value)
    if rtype == "A":
        return str(ipaddress.IPv4Address(value))
    if rtype == "AAAA":
        return str(ipaddress.IPv6Address(value))
    if rtype == "MX":
        pref, host = value if isinstance(value, tuple) else str(value).split(None, 1)
        return f"{int(pref)} {fqdn(host)}"
    if rtype in ("PTR", "CNAME", "NS"):
        return fqdn(str(value))
    text = str(value)
    if any(ch in text for ch in "\n\r\"'"):
        raise BedError(f"{rtype} value with a quote or newline: {text!r}")
    return text


# --- the network ------------------------------------------------------------------------
@dataclass
class Network:
    subnet: str = SUBNET
    gateway: str = GATEWAY
    name: str = field(default_factory=lambda: d.unique_name("bed"))    # mwtest-bed-<hex>
    bridge: str = ""
    host_addresses: list[str] = field(default_factory=list)

    def create(self) -> "Network":
        sweep_networks()
        d.docker("network", "create", "--internal", "--driver", "bridge", "--subnet", self.subnet,
                 "--gateway", self.gateway, self.name)
        net_id = d.docker("network", "inspect", "-f", "{{.Id}}", self.name).stdout.strip()
        self.bridge = f"br-{net_id[:12]}"
        return self

    def add_host_address(self, ip: str) -> str:
        """Another address of the host on the bridge: a second client address for smtplib."""
        if ipaddress.ip_address(ip) not in ipaddress.ip_network(self.subnet):
            raise BedError(f"{ip} is not in {self.subnet}")
        if ip not in self.host_addresses:
            prefix = ipaddress.ip_network(self.subnet).prefixlen
            subprocess.run(["ip", "addr", "add", f"{ip}/{prefix}", "dev", self.bridge],
                           check=True, capture_output=True, text=True)
            self.host_addresses.append(ip)
        return ip

    def drop_host_addresses(self) -> None:
        prefix = ipaddress.ip_network(self.subnet).prefixlen
        for ip in self.host_addresses:
            subprocess.run(["ip", "addr", "del", f"{ip}/{prefix}", "dev", self.bridge], capture_output=True)
        self.host_addresses.clear()

    def remove(self) -> None:
        self.drop_host_addresses()
        attached = d.docker("network", "inspect", "-f", "{{range .Containers}}{{.Name}} {{end}}", self.name,
                            check=False).stdout.split()
        for name in attached:
            d.rm(name)
        d.docker("network", "rm", self.name, check=False)


def sweep_networks() -> list[str]:
    """Remove `mwtest-bed-*` networks a crashed session left (their subnet is ours)."""
    r = d.docker("network", "ls", "--format", "{{.Name}}", check=False)
    ids = [n for n in r.stdout.split() if n.startswith(NETWORK_PREFIX + "-")]
    for net in ids:
        attached = d.docker("network", "inspect", "-f", "{{range .Containers}}{{.Name}} {{end}}", net,
                            check=False).stdout.split()
        for name in attached:
            if name.startswith(d.PREFIX):
                d.rm(name)
        d.docker("network", "rm", net, check=False)
    return ids


# --- the DNS server ---------------------------------------------------------------------
def build_dns_image(workdir: Path, base: str) -> str:
    """The unbound image from the team's base; tagged by a hash of its inputs, built once."""
    base_id = d.docker("image", "inspect", "-f", "{{.Id}}", base).stdout.strip()
    dockerfile = DNS_DOCKERFILE.format(base=base)
    digest = hashlib.sha256("\0".join([base_id, dockerfile, UNBOUND_CONF]).encode()).hexdigest()[:16]
    tag = f"{DNS_IMAGE_REPO}:{digest}"
    if d.image_exists(tag):
        return tag
    ctx = workdir / "dns-build"
    ctx.mkdir(parents=True, exist_ok=True)
    (ctx / "Dockerfile").write_text(dockerfile)
    (ctx / "unbound.conf").write_text(UNBOUND_CONF)
    env = {**os.environ, "DOCKER_BUILDKIT": "1"}
    d.docker("build", "--network", "host", "-t", tag, str(ctx), timeout=1800, env=env)
    return tag


@dataclass
class Dns:
    """unbound at `ip`; `records` is the truth the tests set, pushed with unbound-control."""
    image: str
    network: Network
    ip: str = DNS_IP
    name: str = field(default_factory=lambda: d.unique_name("dns"))
    records: dict[str, dict[str, list[str]]] = field(default_factory=dict)   # name -> type -> rdatas
    failing: dict[str, str] = field(default_factory=dict)                    # zone -> mode
    ttl: int = DEFAULT_TTL
    generation: int = 0                      # of the configuration unbound last loaded (`config()`)

    def start(self, timeout: float = 30) -> "Dns":
        d.docker("run", "-d", "--name", self.name, "--network", self.network.name, "--ip", self.ip,
                 "--hostname", "ns.bed.test", self.image)
        deadline = time.monotonic() + timeout
        while True:
            r = self.exec("unbound-control", "status", check=False)
            if r.returncode == 0 and "is running" in r.stdout:
                return self
            if not d.is_running(self.name) or time.monotonic() > deadline:
                raise BedError(f"unbound in {self.name} did not start:\n{r.stdout}{r.stderr}\n"
                               f"{d.logs(self.name)[-3000:]}")
            time.sleep(0.2)

    def remove(self) -> None:
        d.rm(self.name)

    def exec(self, *cmd: str, check: bool = True, timeout: float = 30, input=None):
        return d.exec_(self.name, *cmd, check=check, timeout=timeout, input=input)

    def _control(self, *args: str, input: str | None = None) -> str:
        r = self.exec("unbound-control", *args, check=False, input=input)
        if r.returncode != 0 or r.stdout.strip().startswith("error"):
            raise BedError(f"unbound-control {shlex.join(args)}: {r.stdout.strip()} {r.stderr.strip()}")
        return r.stdout

    def _lines(self, name: str) -> list[str]:
        return [f"{name} {self.ttl} IN {rtype} {value}"
                for rtype, values in self.records.get(name, {}).items() for value in values]

    def _failing_zone(self, name: str) -> str | None:
        """The failing zone `name` is at or below, if any."""
        return next((z for z in self.failing if name == z or name.endswith("." + z)), None)

    def _push(self, name: str) -> None:
        """Make unbound's data for `name` equal to `records[name]` (remove, then add all).

        A name at or below a failing zone keeps no data in unbound (data in that zone would be
        answered, failure or not): `_reload` puts it back when the zone heals."""
        self._control("local_data_remove", name)
        lines = self._lines(name)
        if lines and self._failing_zone(name) is None:
            self._control("local_datas", input="\n".join(lines) + "\n")

    # records ---------------------------------------------------------------------------
    def add(self, name: str, rtype: str, *values) -> None:
        """Add values to an RRset (kept if already there)."""
        n, t = fqdn(name), rtype.upper()
        have = self.records.setdefault(n, {}).setdefault(t, [])
        for v in values:
            r = rdata(t, v)
            if r not in have:
                have.append(r)
        self._push(n)

    def set(self, name: str, rtype: str, *values) -> None:
        """Replace an RRset; no values removes it."""
        n, t = fqdn(name), rtype.upper()
        rrs = self.records.setdefault(n, {})
        if values:
            rrs[t] = [rdata(t, v) for v in values]
        else:
            rrs.pop(t, None)
        if not rrs:
            self.records.pop(n, None)
        self._push(n)

    replace = set

    def remove_records(self, name: str, rtype: str | None = None) -> None:
        """Remove one RRset, or every record of the name (then NXDOMAIN)."""
        n = fqdn(name)
        if rtype is None:
            self.records.pop(n, None)
            self._push(n)
        else:
            self.set(n, rtype)

    def ptr(self, ip: str, name: str) -> None:
        self.set(reverse_name(ip), "PTR", name)

    def host(self, name: str, ip: str, ptr: bool = True) -> None:
        """A (or AAAA) for `name` and, by default, the matching PTR."""
        addr = ipaddress.ip_address(ip)
        self.set(name, "A" if addr.version == 4 else "AAAA", ip)
        if ptr:
            self.ptr(ip, name)

    def mx(self, domain: str, *hosts: str) -> None:
        """MX of a domain: hosts in order of preference (10, 20, ...)."""
        self.set(domain, "MX", *[(10 * (i + 1), h) for i, h in enumerate(hosts)])

    def txt(self, name: str, *texts: str) -> None:
        self.set(name, "TXT", *texts)

    # failures --------------------------------------------------------------------------
    # Failing zones are never added with `unbound-control local_zone`: unbound 1.17 (Debian 12) links
    # a zone added at run time to no parent in its zone tree (fixed upstream in 1.21.0: NLnetLabs/unbound
    # #1059, PR #1076). A lookup that lands on that zone for a name not below it (a name sorting after
    # it, in unbound's order: label length first, up to the next zone) climbs to no zone at all, not
    # even "." static, and the query goes to recursion: no root server on the internal network, so
    # it times out (all of example.org, example.net and zen.spamhaus.org once `_dmarc.example.com`
    # fails). Worse, `local_data` of a name whose lookup ends there creates an implicit transparent
    # zone, also parentless, that outlives the heal. So the failures are written in unbound.conf with
    # every record, and unbound reloads it: zones read from the configuration get their parents, and
    # one reload swaps the whole state at once (no moment where a record is missing).
    def fail(self, name: str, mode: str = "servfail") -> None:
        """Every query at or below `name` fails: `servfail` at once, `timeout` never answers."""
        z = fqdn(name)
        if mode not in ("servfail", "timeout"):
            raise BedError(f"fail mode {mode!r}: servfail or timeout")
        self.failing[z] = mode
        self._reload()

    def heal(self, name: str) -> None:
        """`name` answers its records again (every name below it too)."""
        if self.failing.pop(fqdn(name), None) is not None:
            self._reload()

    def _config(self) -> str:
        """unbound.conf for the current truth: `records` as local-data, `failing` as zones.

        servfail: a transparent zone without data recurses, to a forwarder unbound may not ask
        (do-not-query-localhost): SERVFAIL without delay. timeout: a deny zone drops the query.
        Names at or below a failing zone have no data (a zone's own data is answered first)."""
        server = [f'    local-data: \'{GENERATION_NAME} 0 IN TXT "{self.generation}"\'']
        forwards = []
        for z, mode in sorted(self.failing.items()):
            server.append(f'    local-zone: "{z}" {"transparent" if mode == "servfail" else "deny"}')
            if mode == "servfail":
                forwards += ["forward-zone:", f'    name: "{z}"', "    forward-addr: 127.0.0.1"]
        for name in sorted(self.records):
            if self._failing_zone(name) is None:
                for line in self._lines(name):
                    if "\n" in line or "\r" in line:
                        raise BedError(f"a record with a line break: {line!r}")
                    # single-quoted for unbound's lexer (no escapes there); a ' (only in TXT) as \039
                    server.append("    local-data: '" + line.replace("'", "\\039") + "'")
        return UNBOUND_CONF + "server:\n" + "\n".join(server) + "\n" + "".join(f + "\n" for f in forwards)

    def _reload(self, timeout: float = 30) -> None:
        """Write `_config()` and reload unbound; returns once the new configuration answers."""
        self.generation += 1
        conf = self._config()
        self.exec("sh", "-c", "cat > /etc/unbound/unbound.conf.new && mv /etc/unbound/unbound.conf.new "
                  "/etc/unbound/unbound.conf", input=conf)
        self._control("reload")
        want = ("NOERROR", [f'"{self.generation}"'])
        deadline = time.monotonic() + timeout
        while (got := self.query(GENERATION_NAME, "TXT")) != want:
            if time.monotonic() > deadline:
                raise BedError(f"unbound did not reload generation {self.generation}: {got}\n"
                               f"{self.log()[-3000:]}")
            time.sleep(0.1)

    def reset(self, keep: dict[str, dict[str, list[str]]] | None = None) -> None:
        """Back to `keep` (a `snapshot()`), or empty: every other name removed, failures healed."""
        keep = keep or {}
        if self.failing:
            self.failing.clear()
            self.records = json.loads(json.dumps(keep))
            self._reload()
            return
        for n in list(self.records):
            if n not in keep:
                self.records.pop(n)
                self._push(n)
        for n, rrs in keep.items():
            if self.records.get(n) != rrs:
                self.records[n] = json.loads(json.dumps(rrs))
                self._push(n)

    def snapshot(self) -> dict[str, dict[str, list[str]]]:
        return json.loads(json.dumps(self.records))

    # questions -------------------------------------------------------------------------
    def query(self, name: str, rtype: str = "A") -> tuple[str, list[str]]:
        """(status, answers) as a client sees them: `dig` inside the DNS container."""
        r = self.exec("dig", "+tries=1", "+time=3", f"@{self.ip}", name, rtype, check=False)
        if "timed out" in r.stdout or "no servers could be reached" in r.stdout:
            return "TIMEOUT", []
        status = ""
        answers = []
        section = ""
        for line in r.stdout.splitlines():
            if "status:" in line:
                status = line.split("status:", 1)[1].split(",", 1)[0].strip()
            if line.startswith(";; ANSWER SECTION"):
                section = "answer"
                continue
            if line.startswith(";;"):
                section = ""
            if section == "answer" and line.strip():
                parts = line.split(None, 4)
                if len(parts) == 5 and parts[3] == rtype.upper():
                    answers.append(parts[4])
        return status, answers

    def log(self) -> str:
        return d.logs(self.name)


# --- the mail servers -------------------------------------------------------------------
@dataclass
class BedServer(MailContainer):
    """A mailwright container on the bed: `ip`, `fqdn`, resolving through the bed's DNS only."""
    network: Network | None = None
    ip: str = ""
    fqdn: str = ""
    resolv: Path | None = None
    context: ssl.SSLContext | None = None     # trusts the CA of the server's certificate
    config: MailConfig | None = None

    @property
    def domain(self) -> str:
        return self.fqdn.split(".", 1)[1]

    @property
    def ready_line(self) -> str:
        return f"{self.fqdn} is up and running"

    def run_args(self) -> list[str]:
        env = {**BASE_ENV, **self.env}
        if "OVERRIDE_HOSTNAME" not in self.env:
            env.pop("OVERRIDE_HOSTNAME", None)            # the FQDN comes from --hostname
        args = ["run", "-d", "--name", self.name, "--network", self.network.name, "--ip", self.ip,
                "--hostname", self.fqdn, "-v", f"{self.resolv}:/etc/resolv.conf:ro"]
        for k, v in env.items():
            args += ["-e", f"{k}={v}"]
        args += ["-v", f"{self.volumes.config}:/tmp/docker-mailserver", "-v", f"{self.volumes.mail}:/var/mail",
                 "-v", f"{self.volumes.state}:/var/mail-state", "-v", f"{self.volumes.logs}:/var/log/mail",
                 self.image]
        return args

    def start(self, wait: bool = True, timeout: float = 120) -> "BedServer":
        self.started_at = time.monotonic()
        d.docker(*self.run_args())
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 120, since_logs: str = "") -> float:
        t0 = time.monotonic()
        line = self.ready_line
        while True:
            out = d.logs(self.name)
            if out.count(line) > since_logs.count(line):
                return time.monotonic() - t0
            if not d.is_running(self.name):
                raise AssertionError(f"{self.fqdn} ({self.name}) stopped before `{line}`:\n" + self.diagnostics())
            if time.monotonic() - t0 > timeout:
                raise AssertionError(f"no `{line}` from {self.name} after {timeout}s:\n" + self.diagnostics())
            time.sleep(0.2)

    def recreate(self, env: dict[str, str] | None = None, timeout: float = 120) -> "BedServer":
        self.remove()
        if env is not None:
            self.env = env
        self.name = d.unique_name("mail")
        return self.start(timeout=timeout)

    # --- inside ----------------------------------------------------------------------------
    def setup(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        """`setup ARGS` inside the server (docker-mailserver's CLI)."""
        return self.exec("setup", *args, check=check, timeout=timeout)

    def read_file(self, path: str) -> str:
        return self.exec("cat", path).stdout

    def resolve(self, name: str) -> list[str]:
        """Addresses of `name` as the server's libc resolver sees them ([] when it does not resolve)."""
        script = ("import socket,sys\ntry:\n print(' '.join(sorted({a[4][0] for a in socket.getaddrinfo("
                  "sys.argv[1], 25, proto=socket.IPPROTO_TCP)})))\nexcept socket.gaierror as e:\n print('')")
        return self.exec("python3", "-c", script, name).stdout.split()

    def postconf(self, name: str) -> str:
        return self.exec("postconf", "-h", name).stdout.strip()

    # --- from the host ----------------------------------------------------------------------
    def smtp(self, port: int = 25, *, source: str | None = None, timeout: float = TIMEOUT,
             helo: str = "client.bed.test") -> smtplib.SMTP:
        """smtplib to this server's IP; `starttls(context=server.context)` checks its FQDN."""
        if port == 465:
            fqdn_ = self.fqdn

            class _SMTPS(smtplib.SMTP_SSL):
                def _get_socket(self, host, port, timeout):
                    import socket
                    sock = socket.create_connection((host, port), timeout, self.source_address)
                    return self.context.wrap_socket(sock, server_hostname=fqdn_)
            client: smtplib.SMTP = _SMTPS(local_hostname=helo, timeout=timeout, context=self.context,
                                          source_address=(source, 0) if source else None)
            client.connect(self.ip, port)
            return client
        client = smtplib.SMTP(local_hostname=helo, timeout=timeout,
                              source_address=(source, 0) if source else None)
        client.connect(self.ip, port)
        client._host = self.fqdn
        return client

    def submit(self, user: str, password: str, msg, *, to: list[str] | None = None, port: int = 587) -> dict:
        """Submission with STARTTLS (verified) and AUTH as `user`."""
        with self.smtp(port) as s:
            s.ehlo()
            if port != 465:
                s.starttls(context=self.context)
                s.ehlo()
            s.login(user, password)
            return s.send_message(msg, from_addr=user, to_addrs=to)

    def imaps(self, timeout: float = TIMEOUT) -> imaplib.IMAP4_SSL:
        ctx = self.context
        fqdn_ = self.fqdn

        class _IMAPS(imaplib.IMAP4_SSL):
            def _create_socket(self, t):
                import socket
                sock = socket.create_connection((self.host, self.port), t)
                return ctx.wrap_socket(sock, server_hostname=fqdn_)
        return _IMAPS(self.ip, 993, ssl_context=ctx, timeout=timeout)

    def wait_for_message(self, user: str, password: str, token: str, *, mailbox: str = "INBOX",
                         timeout: float = 60) -> bytes:
        """Poll over IMAPS until a message whose Subject holds `token` is in `mailbox`."""
        deadline = time.monotonic() + timeout
        last, boxes = "", []
        while True:
            try:
                with self.imaps() as imap:
                    imap.login(user, password)
                    found = find_message(imap, mailbox, token)
                    if found is not None:
                        return found
                    boxes = list_mailboxes(imap)
            except (OSError, imaplib.IMAP4.error, ssl.SSLError) as e:
                last = f"{type(e).__name__}: {e}"
            if time.monotonic() > deadline:
                raise AssertionError(f"no message {token!r} in {user}'s {mailbox} on {self.fqdn} after {timeout}s; "
                                     f"mailboxes: {boxes}; last error: {last or 'none'}\n{self.diagnostics()}")
            time.sleep(0.5)

    def diagnostics(self, tail: int = 80) -> str:
        return f"=== {self.fqdn} ({self.ip}) ===\n" + super().diagnostics(tail)


# --- the bed --------------------------------------------------------------------------------
@dataclass
class Bed:
    """Network + DNS (session) and the servers and clients of one test module."""
    image: str
    network: Network
    dns: Dns
    workdir: Path
    tls_ca: object = None                     # a trustme.CA: every server's certificate comes from it
    servers: list[BedServer] = field(default_factory=list)
    _next_server: int = FIRST_SERVER_IP
    _next_client: int = FIRST_CLIENT_IP
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def gateway(self) -> str:
        """The host's address on the network: the client address smtplib connects from."""
        return self.network.gateway

    def _address(self, last_octet: int) -> str:
        return str(ipaddress.ip_network(self.network.subnet).network_address + last_octet)

    def next_client_ip(self) -> str:
        if self._next_client > 250:
            raise BedError("no client address left")
        ip = self._address(self._next_client)
        self._next_client += 1
        return ip

    def host_address(self, ip: str | None = None) -> str:
        """A new address of the host on the bridge (smtplib `source=` it), removed at teardown."""
        return self.network.add_host_address(ip or self.next_client_ip())

    def server(self, fqdn_: str, *, accounts: dict[str, str] | None = None, env: dict[str, str] | None = None,
               config=None, ip: str | None = None, mx: bool = True, start: bool = True) -> BedServer:
        """A mailwright server named `fqdn_` on the bed.

        accounts: {address: password} written to postfix-accounts.cf; config: a callable
        taking the MailConfig before it is written (aliases, extra files). DNS: A and PTR for
        the FQDN, and (mx=True) the MX of its domain (the FQDN minus its first label).
        env: docker-mailserver variables over BASE_ENV (TLS via SSL_TYPE=manual, heavy services off).
        """
        if ip is None:
            ip = self._address(self._next_server)
            self._next_server += 1
        name = fqdn(fqdn_).rstrip(".")
        root = self.workdir / name
        n = 1
        while root.exists():
            n += 1
            root = self.workdir / f"{name}-{n}"
        cfg = MailConfig(root / "config")
        for address, password in (accounts or {}).items():
            cfg.account(address, password)
        if config is not None:
            config(cfg)
        cfg.write()
        leaf = self.tls_ca.issue_cert(name)
        ssl_dir = cfg.path / "ssl"
        ssl_dir.mkdir(parents=True, exist_ok=True)
        (ssl_dir / "key.pem").write_bytes(leaf.private_key_pem.bytes())
        (ssl_dir / "key.pem").chmod(0o600)
        (ssl_dir / "cert.pem").write_bytes(b"".join(b.bytes() for b in leaf.cert_chain_pems))
        resolv = root / "resolv.conf"
        resolv.write_text(f"nameserver {self.dns.ip}\n{RESOLV_OPTIONS}\n")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self.tls_ca.configure_trust(ctx)
        box = BedServer(self.image, Volumes.under(root, cfg.path), env=dict(env or {}), network=self.network,
                        ip=ip, fqdn=name, resolv=resolv, context=ctx, config=cfg)
        self.dns.host(name, ip)
        if mx:
            self.dns.mx(box.domain, name)
        self.servers.append(box)
        if start:
            t0 = time.monotonic()
            box.start()
            self.timings[name] = time.monotonic() - t0
        return box

    def client(self, script: str, *args: str, ip: str | None = None, timeout: float = 120,
               check: bool = True) -> subprocess.CompletedProcess:
        """Run `python3 -c script args` in a one-off container (the image under test) at `ip`.

        Resolves through the bed's DNS; a new address from the client range unless given.
        """
        ip = ip or self.next_client_ip()
        name = d.unique_name("client")
        resolv = self.workdir / "client-resolv.conf"
        resolv.write_text(f"nameserver {self.dns.ip}\n{RESOLV_OPTIONS}\n")
        try:
            return d.docker("run", "--rm", "--name", name, "--network", self.network.name, "--ip", ip,
                            "-v", f"{resolv}:/etc/resolv.conf:ro", "--entrypoint", "python3", self.image,
                            "-c", script, *args, timeout=timeout, check=check)
        finally:
            d.rm(name)

    def end_module(self, baseline: dict) -> None:
        """Servers removed, extra host addresses dropped, DNS back to `baseline`, addresses reused."""
        self.remove_servers()
        self.network.drop_host_addresses()
        self.dns.reset(baseline)
        self._next_server = FIRST_SERVER_IP
        self._next_client = FIRST_CLIENT_IP

    def remove_servers(self) -> None:
        for box in self.servers:
            box.remove()
        self.servers.clear()

    def diagnostics(self) -> str:
        return "\n".join(s.diagnostics() for s in self.servers) + \
            "\n=== DNS (last 40 lines) ===\n" + "\n".join(self.dns.log().splitlines()[-40:])


def start_session(image: str, base: str, workdir: Path, tls_ca) -> Bed:
    """Network and DNS for a test session (the caller removes them with `stop_session`)."""
    t0 = time.monotonic()
    dns_image = build_dns_image(workdir, base)
    t1 = time.monotonic()
    net = Network().create()
    dns = Dns(dns_image, net)
    try:
        dns.start()
    except Exception:
        dns.remove()
        net.remove()
        raise
    bed = Bed(image=image, network=net, dns=dns, workdir=workdir, tls_ca=tls_ca)
    bed.timings["dns image"] = t1 - t0
    bed.timings["network + dns"] = time.monotonic() - t1
    return bed


def stop_session(bed: Bed) -> None:
    bed.remove_servers()
    bed.dns.remove()
    bed.network.remove()
