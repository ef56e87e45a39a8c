"""A VPS on an internal Docker network: the systemd+sshd VPS (harness.vps) with an address of its
own, no route to any mirror, deployed over SSH by `pyinfra <inventory> deploy.py` like any VPS.

Why: Fail2ban needs NET_ADMIN (with --network host it would edit this machine's firewall) and
clients from addresses other than the server's; DKIM/DMARC/SPF need the DNS test bed
(harness.dnsbed). An internal network has no route to the Debian mirror, so the VPS starts
from an image where the packages are already there:

    packages_image(vps_image, workdir) -> tag
        The VPS image plus every daemon's packages, installed by the deploy's own install stage
        (`mailwright_stage=install` over SSH, all daemons, as on a VPS: MAILWRIGHT_INIT=systemd),
        on a --network host VPS with a policy-rc.d that keeps the new daemons from starting in the
        host's network namespace; the secrets that stage strips for an image (snakeoil pair,
        Dovecot's links to it, postsrsd's secret, SpamAssassin's update keys) made again by the
        packages' own scripts, as a VPS that installed them has them; then `docker commit`. Tagged `mailwright-test-vps-pkgs:<hash>`
        (hash of the VPS image id, build/packages.lock, the descriptors' package lists and the
        daemons' own install modules): built once, reused by later sessions until one changes.
        The deploy then installs nothing and updates no package index (ops.base.update_index:
        no package missing -> no `apt-get update`), so it runs without a mirror.

    vps_packages_image          session fixture: packages_image(...) for the session's VPS image
                                (import it into a test module: `from harness.vpsnet import vps_packages_image`)
    internal_network(prefix)    context manager: `docker network create --internal`, yields
                                (name, gateway); the host is the gateway, the containers on it
                                are removed with it
    NetVpsTarget(scenario=..., tls=..., workdir=..., vps=Vps(image, workdir, network=NAME, ip=...,
                 hostname=FQDN, extra_args=[...]), settings={...})
        A VpsTarget whose inventory names the VPS's address on the network; no host port is
        waited for or bound. `start()` boots nothing: call `vps.start()` first (as with
        VpsTarget), then `target.start()` deploys and waits for the mail ports on `vps.ip`.
        `net_admin=True` in `net_vps(...)` adds --cap-add NET_ADMIN (nftables for fail2ban).
    net_vps(image, workdir, network, ip=None, hostname=..., net_admin=False, resolv=None) -> Vps
        the Vps for it (resolv: a host file bind-mounted as /etc/resolv.conf).
    bed_vps(bed, fqdn, image=..., workdir=..., tls=..., accounts={...}, env={...}, config=callable)
        -> NetVpsTarget: a VPS as one of the bed's mail servers (address .90+ of the bed's subnet,
        A + PTR + MX published, the bed's DNS as its resolver, a certificate for its FQDN from the
        bed's CA, OVERRIDE_HOSTNAME = fqdn); deployed and serving when it returns. Attributes
        `.ip`, `.fqdn`, `.domain`, `.context` (trusts the bed CA), `.config` (the MailConfig);
        `.smtp(port)`, `.submit(...)`, `.imaps()`, `.wait_for_message(...)` as on a BedServer.
        The caller removes it (`target.teardown()`).

Every container is `mwtest-*` (swept by the session), every network `mwtest-*net-*`.
"""

from __future__ import annotations

import contextlib
import hashlib
import imaplib
import ipaddress
import smtplib
import socket
import ssl
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from . import dockercli as d
from .clients import find_message, list_mailboxes
from .configdir import MailConfig
from .targets import SERVICE_PORTS, VpsTarget
from .vps import REPO, Vps, run_pyinfra, write_inventory

PACKAGES_IMAGE_REPO = "mailwright-test-vps-pkgs"
# Debian's hook for "may a package's script start a service now": 101 = no. Only while the
# packages are installed into the image (the build VPS shares the host's network).
POLICY_RC_D = "/usr/sbin/policy-rc.d"
# The install stage strips the secrets the packages' scripts made (an image must not share them);
# a VPS that installed its packages has them: the scripts make them again, for this image only.
SECRETS_AGAIN = "dpkg-reconfigure -f noninteractive ssl-cert dovecot-core postsrsd spamassassin"
FIRST_BED_VPS = 90               # bed addresses .90 .. .99 (the bed's own servers count up from .11)


# --- the image with every package ---------------------------------------------------------------
def _packages_digest(vps_image: str) -> str:
    from ops import daemons
    h = hashlib.sha256()
    h.update(d.docker("image", "inspect", "-f", "{{.Id}}", vps_image).stdout.strip().encode())
    lock = REPO / "build" / "packages.lock"
    h.update(lock.read_bytes() if lock.exists() else b"")
    h.update(SECRETS_AGAIN.encode())
    for dm in daemons.all_daemons():
        h.update(f"\0{dm.name}:{','.join(dm.packages)}".encode())
    for path in sorted((REPO / "ops").glob("*/deploy.py")) + [REPO / "ops" / "base.py"]:
        h.update(b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def packages_image(vps_image: str, workdir: Path) -> str:
    tag = f"{PACKAGES_IMAGE_REPO}:{_packages_digest(vps_image)}"
    if d.image_exists(tag):
        return tag
    workdir.mkdir(parents=True, exist_ok=True)
    machine = Vps(image=vps_image, workdir=workdir / "build-vps")
    try:
        machine.start()
        machine.exec("sh", "-c", f"printf '#!/bin/sh\\nexit 101\\n' > {POLICY_RC_D} && chmod 755 {POLICY_RC_D}")
        data = {**machine.host_data(), "MAILWRIGHT_INIT": "systemd", "mailwright_stage": "install"}
        run = run_pyinfra(str(write_inventory(workdir / "inventory.py", "127.0.0.1", data)))
        if not run.ok:
            raise AssertionError(f"installing every daemon's packages on the build VPS failed\n{run}")
        machine.exec("sh", "-c", SECRETS_AGAIN, timeout=300)
        # No host keys (each VPS makes its own at boot), no package lists, no policy.
        machine.exec("sh", "-c", f"rm -f {POLICY_RC_D} /etc/ssh/ssh_host_* && apt-get clean "
                                 "&& rm -rf /var/lib/apt/lists/* && : > /etc/machine-id")
        d.docker("stop", "-t", "30", machine.name, timeout=120)
        d.docker("commit", machine.name, tag, timeout=600)
    finally:
        machine.remove()
    return tag


@pytest.fixture(scope="session")
def vps_packages_image(vps_image, deploy_py, tmp_path_factory) -> str:
    """The VPS image with every daemon's packages installed (built once, cached by content)."""
    return packages_image(vps_image, tmp_path_factory.mktemp("vps-pkgs"))


# --- networks and VPSes ----------------------------------------------------------------------------
@contextlib.contextmanager
def internal_network(prefix: str = "vpsnet"):
    name = f"{d.PREFIX}{prefix}-{uuid.uuid4().hex[:8]}"
    d.docker("network", "create", "--internal", name)
    try:
        gateway = d.docker("network", "inspect", "-f", "{{(index .IPAM.Config 0).Gateway}}", name).stdout.strip()
        yield name, gateway
    finally:
        ids = d.docker("network", "inspect", "-f", "{{range $k, $v := .Containers}}{{$k}} {{end}}", name,
                       check=False).stdout.split()
        if ids:
            d.docker("rm", "-f", "-v", *ids, check=False)
        d.docker("network", "rm", name, check=False)


@contextlib.contextmanager
def idle_client(image: str, network: str, prefix: str = "client"):
    """Another machine on `network`: a container of `image`, idle (`sleep infinity`), used through
    `docker exec`; yields (name, ip)."""
    name = d.unique_name(prefix)
    d.docker("run", "-d", "--name", name, "--network", network, "--entrypoint", "sleep", image, "infinity")
    try:
        ip = d.docker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", name).stdout.strip()
        yield name, ip
    finally:
        d.rm(name)


def net_vps(image: str, workdir: Path, network: str, *, ip: str = "", hostname: str = "mail.example.test",
            net_admin: bool = False, resolv: Path | None = None) -> Vps:
    extra: list[str] = []
    if net_admin:
        extra += ["--cap-add", "NET_ADMIN"]
    if resolv is not None:
        extra += ["-v", f"{resolv}:/etc/resolv.conf:ro"]
    return Vps(image=image, workdir=workdir, network=network, ip=ip, hostname=hostname, extra_args=extra)


def wait_ports(host: str, ports, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    waiting = list(ports)
    while waiting:
        port = waiting[0]
        try:
            with socket.create_connection((host, port), timeout=3):
                waiting.pop(0)
                continue
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"ports {waiting} on {host} not answering after {timeout}s")
        time.sleep(0.5)


@dataclass(repr=False)
class NetVpsTarget(VpsTarget):
    """A VpsTarget on an internal network: SSH and the mail ports on `vps.ip`, nothing on the host."""

    def start(self) -> "NetVpsTarget":
        self.deploy()
        self.wait_serving()
        return self

    @property
    def ip(self) -> str:
        return self.vps.ip

    def inventory(self) -> Path:
        data = {**self.vps.host_data(), **self.data()}
        return write_inventory(self.workdir / "inventory.py", self.vps.address, data)

    def wait_serving(self, timeout: float = 90) -> None:
        try:
            wait_ports(self.vps.address, SERVICE_PORTS, timeout)
        except AssertionError as e:
            raise AssertionError(f"{e}\n{self.diagnostics()}") from None


# --- a VPS on the DNS test bed ---------------------------------------------------------------------
@dataclass(repr=False)
class BedVps(NetVpsTarget):
    fqdn: str = ""
    context: ssl.SSLContext | None = None
    config: MailConfig | None = None

    @property
    def domain(self) -> str:
        return self.fqdn.split(".", 1)[1]

    def setup(self, *args: str, check: bool = True, timeout: float = 120):
        return self.exec("setup", *args, check=check, timeout=timeout)

    def read_file(self, path: str) -> str:
        return self.exec("cat", path).stdout

    def smtp(self, port: int = 25, *, timeout: float = 45, helo: str = "client.bed.test") -> smtplib.SMTP:
        if port == 465:
            client: smtplib.SMTP = smtplib.SMTP_SSL(local_hostname=helo, timeout=timeout, context=self.context)
            client._host = self.fqdn
            client.connect(self.ip, port)
            return client
        client = smtplib.SMTP(local_hostname=helo, timeout=timeout)
        client.connect(self.ip, port)
        client._host = self.fqdn              # STARTTLS checks the certificate for the FQDN
        return client

    def submit(self, user: str, password: str, msg, *, to: list[str] | None = None, port: int = 587) -> dict:
        with self.smtp(port) as s:
            s.ehlo()
            s.starttls(context=self.context)
            s.ehlo()
            s.login(user, password)
            return s.send_message(msg, from_addr=user, to_addrs=to)

    def imaps(self, timeout: float = 45) -> imaplib.IMAP4_SSL:
        ctx, fqdn = self.context, self.fqdn

        class _IMAPS(imaplib.IMAP4_SSL):
            def _create_socket(self, t):
                sock = socket.create_connection((self.host, self.port), t)
                return ctx.wrap_socket(sock, server_hostname=fqdn)
        return _IMAPS(self.ip, 993, ssl_context=ctx, timeout=timeout)

    def wait_for_message(self, user: str, password: str, token: str, *, mailbox: str = "INBOX",
                         timeout: float = 60) -> bytes:
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
                raise AssertionError(f"no message {token!r} in {user}'s {mailbox} on {self.fqdn} (VPS) after "
                                     f"{timeout}s; mailboxes: {boxes}; last error: {last or 'none'}\n"
                                     f"{self.diagnostics()}")
            time.sleep(0.5)


def bed_vps(bed, fqdn: str, *, image: str, workdir: Path, accounts: dict[str, str] | None = None,
            env: dict[str, str] | None = None, config=None, index: int = 0, net_admin: bool = False) -> BedVps:
    """A VPS as a mail server of the bed (see the module docstring); deployed and serving on return."""
    ip = str(ipaddress.ip_network(bed.network.subnet).network_address + FIRST_BED_VPS + index)
    root = workdir / fqdn
    cfg = MailConfig(root / "config")
    for address, password in (accounts or {}).items():
        cfg.account(address, password)
    if config is not None:
        config(cfg)
    cfg.write()
    leaf = bed.tls_ca.issue_cert(fqdn)
    ssl_dir = cfg.path / "ssl"
    ssl_dir.mkdir(parents=True, exist_ok=True)
    (ssl_dir / "key.pem").write_bytes(leaf.private_key_pem.bytes())
    (ssl_dir / "key.pem").chmod(0o600)
    (ssl_dir / "cert.pem").write_bytes(b"".join(b.bytes() for b in leaf.cert_chain_pems))
    resolv = root / "resolv.conf"
    resolv.write_text(f"nameserver {bed.dns.ip}\noptions timeout:1 attempts:2\n")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    bed.tls_ca.configure_trust(ctx)
    bed.dns.host(fqdn, ip)
    bed.dns.mx(fqdn.split(".", 1)[1], fqdn)
    machine = net_vps(image, root / "vps", bed.network.name, ip=ip, hostname=fqdn, net_admin=net_admin,
                      resolv=resolv)
    scenario = _Scenario(config=cfg)
    t = BedVps(scenario=scenario, tls=None, workdir=root, vps=machine,
               settings={"OVERRIDE_HOSTNAME": fqdn, **(env or {})}, fqdn=fqdn, context=ctx, config=cfg)
    try:
        machine.start()
        t.start()
    except BaseException:
        t.teardown()
        raise
    return t


@dataclass
class _Scenario:
    """What _PyinfraTarget.data() needs of a harness.scenario.Scenario: the config folder."""
    config: MailConfig
    passwords: dict = field(default_factory=dict)

    def password(self, address: str) -> str:
        return self.config.passwords[address]
