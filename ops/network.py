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


def mynetworks(s: Settings) -> list[str]:
    mode = s.PERMIT_DOCKER
    if mode == "none":
        return []
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
