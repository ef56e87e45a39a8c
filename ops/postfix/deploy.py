"""Postfix deploy: install (packages), configure (generated files), activate (service)."""

from __future__ import annotations

from pyinfra.api import deploy
from pyinfra.operations import apt, server, systemd

from ops import operations
from ops.base import APT_ENV, packages
from ops.settings import Settings

PACKAGES = ["postfix", "postfix-pcre"]


@deploy("Postfix: install")
def install(lock: dict[str, str]):
    # "No configuration": the package must not write a main.cf we would then fight with.
    server.shell(name="Preseed Postfix",
                 commands=["echo 'postfix postfix/main_mailer_type select No configuration' | debconf-set-selections"])
    apt.packages(name="Postfix packages", packages=packages(PACKAGES, lock), no_recommends=True, _env=APT_ENV)


@deploy("Postfix: configure and activate")
def configure(settings: Settings):
    # Reloads itself what it changed (systemctl on a VPS, the daemon's own command in a container).
    operations.configure(name="Postfix configuration", only="postfix")
    if settings.MAILWRIGHT_INIT == "systemd":
        systemd.service(name="Postfix running", service="postfix.service", running=True, enabled=True)
