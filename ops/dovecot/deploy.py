"""Dovecot deploy: install (packages), configure (generated files), activate (service)."""

from __future__ import annotations

from pyinfra.api import deploy
from pyinfra.operations import apt, systemd

from ops import operations
from ops.base import APT_ENV, packages
from ops.settings import Settings

PACKAGES = ["dovecot-core", "dovecot-imapd", "dovecot-pop3d", "dovecot-lmtpd",
            "dovecot-managesieved", "dovecot-sieve"]


@deploy("Dovecot: install")
def install(lock: dict[str, str]):
    apt.packages(name="Dovecot packages", packages=packages(PACKAGES, lock), no_recommends=True, _env=APT_ENV)


@deploy("Dovecot: configure and activate")
def configure(settings: Settings):
    # Reloads itself what it changed (systemctl on a VPS, the daemon's own command in a container).
    operations.configure(name="Dovecot configuration", only="dovecot")
    if settings.MAILWRIGHT_INIT == "systemd":
        systemd.service(name="Dovecot running", service="dovecot.service", running=settings.dovecot_enabled, enabled=settings.dovecot_enabled)
