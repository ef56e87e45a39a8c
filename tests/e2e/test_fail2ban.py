"""Fail2ban against the image (issue 9): real clients from other addresses than the server's.

The server runs on an internal Docker network this module creates (with NET_ADMIN for nftables),
not on the host's network: a client has to come from an address of its own. Two clients:
- the host, through the network's bridge: its source address is the bridge's gateway address;
- a client container on the same network (the image itself, running python3).
Each fails logins repeatedly (SMTP AUTH on 587/465: the `postfix` jail; IMAP on 993: `dovecot`)
until fail2ban bans it; a banned address reaches no mail port (nftables-allports, blocktype drop:
the connection attempt gets no answer) while another address still does.

Every wait is a bounded poll for an observable result (a listing, a refused connection),
never a timed assertion. docker-mailserver's bantime/findtime/maxretry (1w/1w/6) are kept.
"""

from __future__ import annotations

import socket
import ssl
import smtplib
import imaplib
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest

from harness import SERVER_NAME
from harness import clients as c
from harness import dockercli as d
from harness.configdir import MailConfig
from harness.mailserver import MailContainer, Volumes, command_lines
from harness.vpsnet import idle_client, internal_network

pytestmark = pytest.mark.docker

USER, PASSWORD = "user1@example.test", "user1-Secret!"
ENV = {"ENABLE_FAIL2BAN": "1"}
MAXRETRY = 6                         # docker-mailserver's jail.local
PROBE_TIMEOUT = 3                    # a banned (dropped) connection gets no answer at all


@dataclass
class NetMailContainer(MailContainer):
    """The harness's mail server on a network of its own, with NET_ADMIN, instead of --network host."""
    network: str = ""

    def run_args(self) -> list[str]:
        args = super().run_args()
        i = args.index("--network")
        args[i + 1] = self.network
        j = args.index("--add-host")
        del args[j:j + 2]
        return args[:i] + ["--cap-add", "NET_ADMIN", "--hostname", SERVER_NAME] + args[i:]

    def start(self, wait: bool = True, timeout: float = 120) -> "NetMailContainer":
        self.started_at = time.monotonic()          # no host port: no need to wait for free ones
        d.docker(*self.run_args())
        if wait:
            self.wait_ready(timeout)
        return self

    @property
    def ip(self) -> str:
        return d.docker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
                        self.name).stdout.strip()

    def setup(self, *args: str):
        return self.exec("setup", *args, check=False)


# --- clients --------------------------------------------------------------------------------------

def _unverified() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE          # this module is about logins, not certificates
    return ctx


# Run by python3 in the client container and in the server (loopback, own address), and imported
# here for the host: one failed login per connection, `count` connections in parallel.
CLIENT = r'''
import base64, imaplib, smtplib, socket, ssl, sys
from concurrent.futures import ThreadPoolExecutor

def ctx():
    c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT); c.check_hostname = False; c.verify_mode = ssl.CERT_NONE
    return c

def smtp_fail(host, port, user):
    if port == 465:
        s = smtplib.SMTP_SSL(host, 465, timeout=20, context=ctx())
    else:
        s = smtplib.SMTP(host, port, timeout=20); s.starttls(context=ctx())
    s.ehlo("client.example.test")
    try:
        # One AUTH PLAIN: smtplib's login() would try every mechanism, several failures per connection.
        token = base64.b64encode(("\0" + user + "\0wrong-password").encode()).decode()
        return str(s.docmd("AUTH", "PLAIN " + token)[0])
    finally:
        try: s.quit()
        except Exception: pass

def imap_fail(host, port, user):
    m = imaplib.IMAP4_SSL(host, 993, ssl_context=ctx(), timeout=20)
    try:
        m.login(user, "wrong-password")
        return "LOGGED IN"
    except imaplib.IMAP4.error as e:
        return "NO"
    finally:
        try: m.logout()
        except Exception: pass

def reachable(host, port):
    try:
        with socket.create_connection((host, port), timeout=3):
            return "open"
    except OSError:
        return "unreachable"

def fail(kind, host, ports, count, user):
    ports = [int(p) for p in ports.split(",")]
    jobs = [(ports[i % len(ports)]) for i in range(int(count))]
    f = smtp_fail if kind == "smtp" else imap_fail
    def one(port):
        try:
            return f(host, port, user)
        except (OSError, smtplib.SMTPException, imaplib.IMAP4.abort):
            return "cut"        # banned while its reply was on the way: the reply is dropped
    # All but the last in parallel, then the last alone: only the last can be cut by the ban.
    with ThreadPoolExecutor(len(jobs)) as pool:
        return list(pool.map(one, jobs[:-1])) + [one(jobs[-1])]

if __name__ == "__main__":
    kind, host = sys.argv[1], sys.argv[2]
    if kind == "probe":
        print(" ".join(f"{p}={reachable(host, int(p))}" for p in sys.argv[3].split(",")))
    else:
        print(" ".join(fail(kind, host, sys.argv[3], sys.argv[4], sys.argv[5])))
'''

_ns: dict = {}
exec(compile(CLIENT, "fail2ban-client-script", "exec"), _ns)


def host_fail(kind: str, ip: str, ports: str, count: int = MAXRETRY) -> list[str]:
    return _ns["fail"](kind, ip, ports, count, USER)


def host_probe(ip: str, ports=(25, 587, 993)) -> dict[int, str]:
    return {p: _ns["reachable"](ip, p) for p in ports}


def in_container(name: str, *argv: str) -> str:
    return d.exec_(name, "python3", "-c", CLIENT, *argv, timeout=180).stdout.strip()


def container_probe(name: str, ip: str, ports=(25, 587, 993)) -> dict[int, str]:
    out = in_container(name, "probe", ip, ",".join(map(str, ports)))
    return {int(k): v for k, v in (item.split("=") for item in out.split())}


poll = c.poll


# --- fixtures -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def network(docker_session):
    with internal_network("f2b") as net:
        yield net


@pytest.fixture(scope="module")
def server(image, tls, tmp_path_factory, network):
    root = tmp_path_factory.mktemp("fail2ban")
    cfg = MailConfig(root / "config")
    cfg.account(USER, PASSWORD)
    cfg.write()
    tls.write(cfg.path / "ssl")
    box = NetMailContainer(image, Volumes.under(root, cfg.path), env=dict(ENV), network=network[0])
    try:
        box.start()
        poll(lambda: box.setup("fail2ban", "status").returncode == 0, "fail2ban answering", box.diagnostics)
        yield box
    finally:
        box.remove()


@pytest.fixture(scope="module")
def client(image, network):
    """A second machine on the network: the image itself, idle, used through `docker exec python3`."""
    with idle_client(image, network[0], "f2b-client") as c_:
        yield c_


def failed(results: list[str], reply: str) -> bool:
    """Every login refused; the last reply may have been cut by the ban it caused."""
    return len(results) == MAXRETRY and results[:-1] == [reply] * (MAXRETRY - 1) and results[-1] in (reply, "cut")


def listed(server) -> str:
    return server.setup("fail2ban").stdout


def banned_in(server, jail: str, ip: str) -> bool:
    return any(line.startswith(f"Banned in {jail}:") and ip in line.split(":", 1)[1].split()
               for line in listed(server).splitlines())


def diag(server):
    return lambda: (server.diagnostics() + "\n--- fail2ban.log:\n"
                    + server.exec("tail", "-n", "40", "/var/log/mail/fail2ban.log", check=False).stdout)


# --- tests ----------------------------------------------------------------------------------------

def test_jails_are_up(server):
    status = server.setup("fail2ban", "status")
    assert status.returncode == 0, status
    for jail in ("custom", "dovecot", "postfix"):
        assert f"Status for the jail: {jail}" in status.stdout, status.stdout
    r = server.setup("fail2ban")
    assert r.returncode == 0 and "No IPs have been banned" in r.stderr, r


def test_imap_login_failures_ban_the_client_on_every_mail_port(server, client, network):
    name, ip = client
    gateway = network[1]
    assert container_probe(name, server.ip)[993] == "open"
    results = in_container(name, "imap", server.ip, "993", str(MAXRETRY), USER).split()
    assert failed(results, "NO"), results
    poll(lambda: banned_in(server, "dovecot", ip), f"{ip} banned in dovecot", diag(server))
    assert set(container_probe(name, server.ip).values()) == {"unreachable"}
    elements = server.exec("nft", "list", "set", "inet", "f2b-table", "addr-set-dovecot").stdout
    assert ip in elements, elements
    # Another address still gets in.
    assert host_probe(server.ip) == {25: "open", 587: "open", 993: "open"}, gateway


def test_smtp_auth_failures_ban_the_host(server, network):
    gateway = network[1]
    results = host_fail("smtp", server.ip, "587,465")
    assert failed(results, "535"), (results, diag(server)())
    poll(lambda: banned_in(server, "postfix", gateway), f"{gateway} banned in postfix", diag(server))
    assert set(host_probe(server.ip).values()) == {"unreachable"}
    # Loopback inside the server still works (and is never banned: see below).
    assert container_probe(server.name, "127.0.0.1") == {25: "open", 587: "open", 993: "open"}


def test_unban_lifts_the_ban(server, network):
    gateway = network[1]
    r = server.setup("fail2ban", "unban", gateway)
    assert r.returncode == 0 and f"Unbanned IP from postfix: 1" in r.stdout, r
    assert not banned_in(server, "postfix", gateway)
    assert host_probe(server.ip) == {25: "open", 587: "open", 993: "open"}


def test_loopback_and_the_servers_own_address_are_never_banned(server):
    for target in ("127.0.0.1", server.ip):
        results = in_container(server.name, "smtp", target, "587", str(MAXRETRY), USER).split()
        assert results == ["535"] * MAXRETRY, results
        poll(lambda: f"Ignore {target} by" in server.exec("cat", "/var/log/mail/fail2ban.log").stdout,
             f"fail2ban ignoring {target}", diag(server))
        assert target not in listed(server)
    assert container_probe(server.name, server.ip) == {25: "open", 587: "open", 993: "open"}


def test_manual_ban_of_an_address_and_a_network(server, network):
    gateway = network[1]
    r = server.setup("fail2ban", "ban", gateway)
    assert (r.returncode, r.stdout.strip()) == (0, "Banned custom IP: 1"), r
    assert banned_in(server, "custom", gateway)
    assert set(host_probe(server.ip).values()) == {"unreachable"}
    r = server.setup("fail2ban", "ban", "198.51.100.7/24")
    assert (r.returncode, r.stdout.strip()) == (0, "Banned custom IP: 1"), r
    elements = server.exec("nft", "list", "set", "inet", "f2b-table", "addr-set-custom").stdout
    assert "198.51.100.0/24" in elements and gateway in elements, elements


@pytest.mark.parametrize("arg", ["192.0.2.1; nft flush ruleset", "--all", "192.0.2.300", "fe80::1%eth0",
                                 "example.test", "192.0.2.1\n", ""])
def test_hostile_addresses_are_refused(server, arg):
    before = server.exec("nft", "list", "set", "inet", "f2b-table", "addr-set-custom").stdout
    r = server.setup("fail2ban", "ban", arg) if arg else server.setup("fail2ban", "ban", "1.2.3.4", "5.6.7.8")
    assert r.returncode == 1, r
    assert "is not an IP address or network" in r.stderr or "Too many arguments" in r.stderr, r
    assert server.exec("nft", "list", "set", "inet", "f2b-table", "addr-set-custom").stdout == before


def test_bans_survive_a_restart_with_the_same_state_volume(server, client, network):
    gateway, (name, ip) = network[1], client
    assert banned_in(server, "custom", gateway) and banned_in(server, "dovecot", ip)
    # The ban database lives on the state volume (/var/lib/fail2ban is a link into it).
    assert server.exec("readlink", "-f", "/var/lib/fail2ban").stdout.startswith("/var/mail-state/")
    assert list(server.volumes.state.glob("*fail2ban/fail2ban.sqlite3")), list(server.volumes.state.iterdir())
    server.restart()
    poll(lambda: banned_in(server, "custom", gateway) and banned_in(server, "dovecot", ip),
         "bans restored after the restart", diag(server))
    assert set(host_probe(server.ip).values()) == {"unreachable"}
    assert set(container_probe(name, server.ip).values()) == {"unreachable"}
    for addr in (gateway, ip):
        server.setup("fail2ban", "unban", addr)
    assert host_probe(server.ip) == {25: "open", 587: "open", 993: "open"}


FILES = ("/etc/fail2ban/jail.local /etc/fail2ban/action.d/nftables-common.local "
         "/etc/fail2ban/fail2ban.d/mailwright.conf /etc/fail2ban/filter.d/custom.conf")


def test_off_means_gone_and_on_again(server):
    server.recreate(env={**ENV, "ENABLE_FAIL2BAN": "0"})
    assert "fail2ban-server" not in command_lines(server)
    tables = server.exec("nft", "list", "tables").stdout        # Docker's own DNS adds `table ip nat`
    assert "f2b-table" not in tables, tables
    left = server.exec("sh", "-c", f"ls {FILES} 2>/dev/null", check=False).stdout
    assert left.strip() == "", left
    r = server.setup("fail2ban")
    assert r.returncode == 1 and "Fail2ban is not enabled" in r.stderr, r

    server.recreate(env=dict(ENV))
    poll(lambda: server.setup("fail2ban", "status").returncode == 0, "fail2ban answering again", diag(server))
    assert server.exec("nft", "list", "table", "inet", "f2b-table", check=False).returncode == 0


@pytest.mark.parametrize("caps, warned", [([], True), (["--cap-add", "NET_ADMIN"], False)])
def test_start_says_so_without_net_admin(image, caps, warned):
    """The descriptor's start command in the image, fail2ban-server replaced by `true`."""
    from ops.fail2ban.daemon import FOREGROUND, NO_NFTABLES
    script = FOREGROUND[2].replace("exec /usr/bin/fail2ban-server -xf start", "exec true")
    name = d.unique_name("f2b-caps")
    try:
        r = d.docker("run", "--rm", "--name", name, "--network", "none", *caps, "--entrypoint", "/bin/sh",
                     image, "-c", script, timeout=60)
    finally:
        d.rm(name)
    assert (NO_NFTABLES in r.stderr) is warned, r.stderr
