"""Who runs the daemons, chosen explicitly by MAILWRIGHT_INIT (never guessed from the target).

`systemd`: each enabled daemon's unit (its descriptor's `unit`) runs, each disabled one is
stopped and disabled; jobs are timers; a `mailwright-watch` unit applies config-folder and
certificate changes. `container`: mailwright's own init (`mailwright.init`) supervises the
daemons listed in /etc/mailwright/daemons; in the image it is PID 1, through pyinfra's docker
connector it is started detached (a running one follows a changed list at its next poll).
"""

from __future__ import annotations

from io import StringIO

from pyinfra.api import deploy
from pyinfra.operations import files, systemd

from ops import daemons, operations
from ops.settings import Settings, dms_settings_text


@deploy("mailwright: settings")
def configure(settings: Settings):
    # The configure stage on the target reads the settings from here.
    files.put(name="Effective settings (/etc/dms-settings)", src=StringIO(dms_settings_text(settings)),
              dest="/etc/dms-settings", mode="600", user="root", group="root")


@deploy("mailwright: activate")
def activate(settings: Settings):
    if settings.MAILWRIGHT_INIT != "systemd":
        operations.container_init(name="mailwright init running")
        return
    on = {d.name for d in daemons.enabled(settings)}
    jobs = {job.name for _, job in daemons.jobs(settings)}
    for d in daemons.all_daemons():
        wanted = d.name in on
        if not d.has_process:
            continue            # no unit of its own (e.g. policyd-spf: Postfix spawns it)
        systemd.service(name=f"{d.name.capitalize()} {'running' if wanted else 'stopped'}", service=d.unit,
                        running=wanted, enabled=wanted)
        for job in d.jobs:
            wanted = job.name in jobs
            systemd.service(name=f"Job {job.name} {'scheduled' if wanted else 'off'}",
                            service=f"mailwright-job-{job.name}.timer", running=wanted, enabled=wanted)
    systemd.service(name="Config watcher running", service="mailwright-watch.service", running=True, enabled=True)
