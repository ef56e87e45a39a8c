"""pyinfra operations of mailwright."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import operation

from ops.facts import RUNTIME, ConfigDrift, InitRunning


@operation()
def configure(only: str | None = None):
    """Make the generated configuration true on the target.

    + only: one daemon's files (``postfix``, ``dovecot``, ...) or ``system`` (default: everything,
      which is what a deploy does: one check and one apply for the whole plan)

    The files are computed on the target by the same code the container's init
    runs (`mailwright.configure`), from `/etc/dms-settings` and the config folder
    there, so a deploy and a `setup` call never fight over a file. No change
    when nothing drifted, which keeps a second deploy run change-free.
    """
    drift = host.get_fact(ConfigDrift, only=only)
    if drift:
        part = f" --only {only}" if only else ""
        yield f"cd {RUNTIME} && python3 -m mailwright.configure --reload{part}"


@operation()
def container_init():
    """Container mode without our init as PID 1 (pyinfra's docker connector): start it detached."""
    if not host.get_fact(InitRunning):
        yield (f"cd {RUNTIME} && setsid python3 -m mailwright.init --adopt "
               ">>/var/log/mail/init.log 2>&1 </dev/null &")
