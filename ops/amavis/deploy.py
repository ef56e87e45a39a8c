"""Amavis's own install step (found by convention by ops.mailserver.install_daemon).

amavisd-new depends on `systemd | systemd-standalone-sysusers | systemd-sysusers`. The image has no
systemd: the descriptor names the small standalone provider so apt does not pull systemd in. On a
host where systemd is installed (a VPS), that package would conflict with it and apt would remove
systemd to install it: there the descriptor's list goes without it (systemd satisfies the dependency).
The question is the apt conflict itself, so the answer is the installed-package fact, not a
setting: a VPS whose MAILWRIGHT_INIT sits in mailserver.env rather than in host data is safe too.
"""

from __future__ import annotations

from dataclasses import replace

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.facts.deb import DebPackages

STANDALONE = "systemd-standalone-sysusers"


def packages_for(packages: tuple[str, ...], has_systemd: bool) -> tuple[str, ...]:
    return tuple(p for p in packages if not (has_systemd and p == STANDALONE))


def packages(daemon) -> tuple[str, ...]:
    """What its install asks apt for on this host (ops.mailserver reads it too)."""
    return packages_for(daemon.packages, "systemd" in (host.get_fact(DebPackages) or {}))


@deploy("Amavis: install")
def install(daemon, lock: dict[str, str]):
    from ops.mailserver import install_packages
    install_packages(replace(daemon, packages=packages(daemon)), lock)
