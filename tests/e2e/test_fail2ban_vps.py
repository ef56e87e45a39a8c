"""Fail2ban on the VPS target (issue 9): systemd's fail2ban.service, nftables with NET_ADMIN.

The VPS (harness.vpsnet: a systemd+sshd container with every package preinstalled, deployed over
SSH by pyinfra) sits on an internal network of this module, so its clients have addresses of their
own and its nftables rules are its own, never this machine's. Two clients, as in test_fail2ban.py
(whose client script this module reuses): the host through the network's gateway, and a client
container on the network. Failed IMAP and SMTP-AUTH logins ban the client on every mail port;
`setup fail2ban unban` lifts a ban; loopback and the VPS's own address are never banned; bans
survive `systemctl restart fail2ban` (the database under /var/lib/fail2ban). Every wait is a
bounded poll for an observable result.
"""

from __future__ import annotations

import pytest

from harness import clients as c
from harness import dockercli as d
from harness import scenario as sc
from harness.vpsnet import NetVpsTarget, idle_client, internal_network, net_vps, vps_packages_image  # noqa: F401
from test_fail2ban import (MAXRETRY, USER, container_probe, failed, host_fail, host_probe, in_container)

pytestmark = pytest.mark.docker

ENV = {"ENABLE_FAIL2BAN": "1"}
OPEN = {25: "open", 587: "open", 993: "open"}
poll = c.poll


@pytest.fixture(scope="module")
def network(docker_session):
    with internal_network("f2bvps") as net:
        yield net


@pytest.fixture(scope="module")
def server(vps_packages_image, tls, tmp_path_factory, network):
    root = tmp_path_factory.mktemp("fail2ban-vps")
    scenario = sc.build(root / "config", tls)
    assert scenario.password(USER)
    machine = net_vps(vps_packages_image, root / "vps", network[0], net_admin=True)
    t = NetVpsTarget(scenario=scenario, tls=tls, workdir=root, vps=machine, settings=dict(ENV))
    try:
        machine.start()
        t.start()
        poll(lambda: setup(t, "fail2ban", "status").returncode == 0, "fail2ban answering", diag(t))
        yield t
    finally:
        t.teardown()


@pytest.fixture(scope="module")
def client(vps_image, network):
    """Another machine on the network (python3 of the VPS image, idle), used through `docker exec`."""
    with idle_client(vps_image, network[0], "f2b-vps-client") as c_:
        yield c_


def setup(server, *args: str):
    return server.exec("setup", *args, check=False)


def banned_in(server, jail: str, ip: str) -> bool:
    return any(line.startswith(f"Banned in {jail}:") and ip in line.split(":", 1)[1].split()
               for line in setup(server, "fail2ban").stdout.splitlines())


def diag(server):
    return lambda: (server.diagnostics() + "\n--- fail2ban.log:\n"
                    + server.exec("tail", "-n", "40", "/var/log/mail/fail2ban.log", check=False).stdout
                    + "\n--- journal of fail2ban.service:\n"
                    + server.exec("journalctl", "--no-pager", "-n", "40", "-u", "fail2ban.service", check=False).stdout)


def test_fail2ban_runs_under_systemd_with_the_mail_jails(server):
    state = server.exec("systemctl", "is-active", "fail2ban.service", check=False).stdout.strip()
    assert state == "active", diag(server)()
    status = setup(server, "fail2ban", "status")
    assert status.returncode == 0, status
    for jail in ("custom", "dovecot", "postfix"):
        assert f"Status for the jail: {jail}" in status.stdout, status.stdout
    # Enabled: systemd starts it at boot (the ban test below restarts it).
    enabled = server.exec("systemctl", "is-enabled", "fail2ban.service", check=False).stdout.strip()
    assert enabled == "enabled", enabled


def test_imap_login_failures_ban_the_client_on_every_mail_port(server, client, network):
    name, ip = client
    assert container_probe(name, server.ip) == OPEN
    results = in_container(name, "imap", server.ip, "993", str(MAXRETRY), USER).split()
    assert failed(results, "NO"), results
    poll(lambda: banned_in(server, "dovecot", ip), f"{ip} banned in dovecot", diag(server))
    assert set(container_probe(name, server.ip).values()) == {"unreachable"}
    elements = server.exec("nft", "list", "set", "inet", "f2b-table", "addr-set-dovecot").stdout
    assert ip in elements, elements
    # Another address still gets in.
    assert host_probe(server.ip) == OPEN


def test_smtp_auth_failures_ban_the_host(server, network):
    gateway = network[1]
    results = host_fail("smtp", server.ip, "587,465")
    assert failed(results, "535"), (results, diag(server)())
    poll(lambda: banned_in(server, "postfix", gateway), f"{gateway} banned in postfix", diag(server))
    assert set(host_probe(server.ip).values()) == {"unreachable"}
    assert container_probe(server.vps.name, "127.0.0.1") == OPEN


def test_unban_lifts_the_ban(server, network):
    gateway = network[1]
    r = setup(server, "fail2ban", "unban", gateway)
    assert r.returncode == 0 and "Unbanned IP from postfix: 1" in r.stdout, r
    assert not banned_in(server, "postfix", gateway)
    assert host_probe(server.ip) == OPEN


def test_loopback_and_the_servers_own_address_are_never_banned(server):
    for target in ("127.0.0.1", server.ip):
        results = in_container(server.vps.name, "smtp", target, "587", str(MAXRETRY), USER).split()
        assert results == ["535"] * MAXRETRY, results
        poll(lambda: f"Ignore {target} by" in server.exec("cat", "/var/log/mail/fail2ban.log").stdout,
             f"fail2ban ignoring {target}", diag(server))
        assert target not in setup(server, "fail2ban").stdout
    assert container_probe(server.vps.name, server.ip) == OPEN


def test_bans_survive_a_restart_of_the_fail2ban_service(server, client, network):
    gateway, (name, ip) = network[1], client
    r = setup(server, "fail2ban", "ban", gateway)
    assert (r.returncode, r.stdout.strip()) == (0, "Banned custom IP: 1"), r
    assert banned_in(server, "custom", gateway) and banned_in(server, "dovecot", ip)
    server.exec("systemctl", "restart", "fail2ban.service")
    poll(lambda: banned_in(server, "custom", gateway) and banned_in(server, "dovecot", ip),
         "bans restored after the restart", diag(server))
    assert set(host_probe(server.ip).values()) == {"unreachable"}
    assert set(container_probe(name, server.ip).values()) == {"unreachable"}
    for addr in (gateway, ip):
        setup(server, "fail2ban", "unban", addr)
    assert host_probe(server.ip) == OPEN
    assert container_probe(name, server.ip) == OPEN
