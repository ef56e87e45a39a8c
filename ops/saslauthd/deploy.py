"""saslauthd's own install step (found by convention by ops.mailserver.install_daemon): its
packages, and Postfix's smtpd let into saslauthd's socket folder (/run/saslauthd is root:sasl
0710, as Debian's package makes it: the `sasl` group is who may ask saslauthd). The foreground
command checks it again (a VPS may install saslauthd before Postfix has a user)."""

from __future__ import annotations

from pyinfra.api import deploy
from pyinfra.operations import server

from ops.saslauthd.daemon import JOIN_SASL


@deploy("saslauthd: install")
def install(daemon, lock: dict[str, str]):
    from ops.mailserver import install_packages
    install_packages(daemon, lock)
    server.shell(name="postfix in the sasl group",
                 commands=[JOIN_SASL])
