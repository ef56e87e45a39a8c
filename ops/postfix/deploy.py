"""Postfix's own install step (found by convention by ops.mailserver.install_daemon): debconf
preseed, packages, and the queue directories Debian's package leaves out."""

from __future__ import annotations

from io import StringIO

from pyinfra.api import deploy
from pyinfra.operations import files, server

from ops.base import repair

PRESEED = "postfix postfix/main_mailer_type select No configuration\n"


@deploy("Postfix: install")
def install(daemon, lock: dict[str, str]):
    from ops.mailserver import install_packages
    # "No configuration": the package must not write a main.cf we would then fight with.
    seed = files.put(name="Postfix debconf answers", src=StringIO(PRESEED), dest="/var/cache/debconf/mailwright-postfix.seed")
    server.shell(name="Preseed Postfix", commands=["debconf-set-selections /var/cache/debconf/mailwright-postfix.seed"],
                 _if=seed.did_change)
    install_packages(daemon, lock)
    # Debian's package leaves out `hold` and `trace`: `postfix start` would add them, but mailwright's
    # container starts the master directly, and `mailq` then fails ("malformed showq server response").
    repair(name="Postfix queue directories", what="queue")
