"""Who runs the daemons, chosen explicitly by MAILWRIGHT_INIT (never guessed from the target).

`systemd`: Debian's units run Postfix and Dovecot; a `mailwright-watch` unit applies
config-folder and certificate changes. `container`: mailwright's own init
(`mailwright.init`) supervises them; in the image it is PID 1, through pyinfra's
docker connector it is started detached.
"""

from __future__ import annotations

from io import StringIO

from pyinfra.api import deploy
from pyinfra.operations import files, systemd

from ops import operations
from ops.settings import Settings, dms_settings_text


@deploy("mailwright: settings and system files")
def configure(settings: Settings):
    # The configure stage on the target reads the settings from here.
    files.put(name="Effective settings (/etc/dms-settings)", src=StringIO(dms_settings_text(settings)),
              dest="/etc/dms-settings", mode="600", user="root", group="root")
    operations.configure(name="System files", only="system")


@deploy("mailwright: activate")
def activate(settings: Settings):
    if settings.MAILWRIGHT_INIT == "systemd":
        systemd.service(name="Config watcher running", service="mailwright-watch.service",
                        running=True, enabled=True)
    else:
        operations.container_init(name="mailwright init running")
