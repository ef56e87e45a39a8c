"""Amavis's own install step (found by convention by ops.mailserver.install_daemon).

amavisd-new depends on `systemd | systemd-standalone-sysusers | systemd-sysusers`. The image has no
systemd: the descriptor names the small standalone provider so apt does not pull systemd in. On a
host that runs systemd (a VPS), that package would conflict with systemd and apt would remove
systemd to install it: there the descriptor's list goes without it (systemd satisfies the dependency).
"""

from __future__ import annotations

from dataclasses import replace

from pyinfra import host
from pyinfra.api import deploy

STANDALONE = "systemd-standalone-sysusers"


def packages_for(packages: tuple[str, ...], has_systemd: bool) -> tuple[str, ...]:
    return tuple(p for p in packages if not (has_systemd and p == STANDALONE))


@deploy("Amavis: install")
def install(daemon, lock: dict[str, str]):
    from ops.mailserver import install_packages
    # systemd supervises the daemons exactly on a MAILWRIGHT_INIT=systemd host (the image build and
    # container deploys have no systemd).
    has_systemd = host.data.get("MAILWRIGHT_INIT") == "systemd"
    install_packages(replace(daemon, packages=packages_for(daemon.packages, has_systemd)), lock)
