"""Postfix deploy: install (packages), configure (generated files), activate (service)."""

from __future__ import annotations

from pyinfra.api import deploy
from io import StringIO

from pyinfra.operations import apt, files, server, systemd

from ops import operations
from ops.base import APT_ENV, packages, repair
from ops.settings import Settings

# libsasl2-modules: the PLAIN/LOGIN client mechanisms, without which relay credentials never work.
PACKAGES = ["postfix", "postfix-pcre", "libsasl2-modules"]
PRESEED = "postfix postfix/main_mailer_type select No configuration\n"


@deploy("Postfix: install")
def install(lock: dict[str, str]):
    # "No configuration": the package must not write a main.cf we would then fight with.
    seed = files.put(name="Postfix debconf answers", src=StringIO(PRESEED), dest="/var/cache/debconf/mailwright-postfix.seed")
    server.shell(name="Preseed Postfix", commands=["debconf-set-selections /var/cache/debconf/mailwright-postfix.seed"],
                 _if=seed.did_change)
    apt.packages(name="Postfix packages", packages=packages(PACKAGES, lock), no_recommends=True, _env=APT_ENV)
    # Debian's package leaves out `hold` and `trace`: `postfix start` would add them, but mailwright's
    # container starts the master directly, and `mailq` then fails ("malformed showq server response").
    repair(name="Postfix queue directories", what="queue")


@deploy("Postfix: configure and activate")
def configure(settings: Settings):
    # Reloads itself what it changed (systemctl on a VPS, the daemon's own command in a container).
    operations.configure(name="Postfix configuration", only="postfix")
    if settings.MAILWRIGHT_INIT == "systemd":
        systemd.service(name="Postfix running", service="postfix.service", running=True, enabled=True)
