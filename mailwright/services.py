"""Starting, reloading and stopping the daemons under the chosen init (MAILWRIGHT_INIT).

`systemd` (a VPS): systemctl. `container`: mailwright's supervisor
(`supervise.sh`) runs each daemon in the foreground; reloads use the daemons'
own commands.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

RELOAD = {
    "postfix": ["/usr/sbin/postfix", "reload"],
    "dovecot": ["/usr/bin/doveadm", "reload"],
}
PIDFILES = {
    "postfix": "/var/spool/postfix/pid/master.pid",
    "dovecot": "/run/dovecot/master.pid",
}
UNITS = {"postfix": "postfix.service", "dovecot": "dovecot.service"}


def running(daemon: str) -> bool:
    try:
        pid = int(Path(PIDFILES[daemon]).read_text().split()[0])
        os.kill(pid, 0)
        return True
    except (OSError, ValueError, IndexError):
        return False


def reload(init: str, daemon: str) -> None:
    """Raises `subprocess.CalledProcessError` (with the command's stderr) when the reload fails."""
    if init == "systemd":
        subprocess.run(["systemctl", "reload-or-restart", UNITS[daemon]], check=True, capture_output=True, text=True)
    elif running(daemon):
        subprocess.run(RELOAD[daemon], check=True, capture_output=True, text=True)
