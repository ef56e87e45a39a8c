"""PERMIT_DOCKER: which networks Postfix trusts to relay without AUTH (docker-mailserver §1)."""

from __future__ import annotations

import ipaddress
import subprocess

from ops.settings import Settings, SettingsError


def _addresses(interface: str | None) -> list[ipaddress.IPv4Interface]:
    cmd = ["ip", "-o", "-4", "addr", "show"] + (["dev", interface] if interface else [])
    try:
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        raise SettingsError(f"PERMIT_DOCKER needs the address of {interface or 'the interfaces'}: {e}") from e
    # "2: eth0    inet 172.17.0.2/16 brd ..." -> the 4th field
    return [ipaddress.IPv4Interface(line.split()[3]) for line in out.splitlines() if len(line.split()) > 3]


def loopback(s: Settings) -> list[str]:
    """docker-mailserver's main.cf starts mynetworks with loopback: scripts and cron jobs inside the
    container submit through localhost:25. IPv6 forms only when Postfix speaks IPv6. (Its
    `[fe80::]/64` is left out: link-local is every neighbour on the segment, not this machine.)"""
    nets = ["127.0.0.0/8"]
    if s.POSTFIX_INET_PROTOCOLS != "ipv4":
        nets += ["[::ffff:127.0.0.0]/104", "[::1]/128"]
    return nets


def mynetworks(s: Settings) -> list[str]:
    """Postfix mynetworks: `none` trusts nothing (not even loopback); every other mode is loopback
    plus the network it names, as docker-mailserver appends to its loopback default."""
    mode = s.PERMIT_DOCKER
    if mode == "none":
        return []
    return loopback(s) + _permitted(s, mode)


def _permitted(s: Settings, mode: str) -> list[str]:
    if mode == "network":
        return ["172.16.0.0/12"]
    if mode == "connected-networks":
        return sorted({str(a.network) for a in _addresses(None) if not a.ip.is_loopback})
    found = _addresses(s.NETWORK_INTERFACE)
    if not found:
        raise SettingsError(f"PERMIT_DOCKER={mode}: interface {s.NETWORK_INTERFACE} (NETWORK_INTERFACE) has no IPv4 address")
    ip = found[0].ip
    if mode == "container":
        return [f"{ip}/32"]
    return [str(ipaddress.IPv4Network(f"{ip}/16", strict=False))]   # host
