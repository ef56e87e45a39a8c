"""ClamAV's own install step (found by convention by ops.mailserver.install_daemon): packages,
then what docker-mailserver arranges: clamav in the amavis group (clamd reads the files Amavis
asks it to scan, in Amavis's temporary folder) and amavis in the clamav group. Installed after
Amavis (descriptor order), so its user exists when there is one.

On a host run by systemd, Debian's own ClamAV services are turned off: the freshclam daemon
(mailwright schedules freshclam as a job) and clamav-daemon.socket (mailwright's
clamav-daemon.service lets clamd make its own socket)."""

from __future__ import annotations

from pyinfra.api import deploy
from pyinfra.operations import server

GROUPS = ("if getent passwd amavis >/dev/null && getent passwd clamav >/dev/null; then "
          "usermod -a -G amavis clamav && usermod -a -G clamav amavis; fi")
DEBIAN_SERVICES = ("if [ -d /run/systemd/system ]; then "
                   "systemctl disable --now clamav-freshclam.service clamav-daemon.socket 2>/dev/null; "
                   "true; fi")


@deploy("ClamAV: install")
def install(daemon, lock: dict[str, str]):
    from ops.mailserver import install_packages
    install_packages(daemon, lock)
    server.shell(name="ClamAV: clamav and amavis in each other's group", commands=[GROUPS])
    server.shell(name="ClamAV: Debian's freshclam daemon and clamd socket off", commands=[DEBIAN_SERVICES])
