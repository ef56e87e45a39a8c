"""Starting, reloading and stopping the daemons under the chosen init (MAILWRIGHT_INIT).

`systemd` (a VPS): systemctl, on the descriptor's `unit`. `container`: mailwright's
supervisor (`supervise.sh`) runs each daemon in the foreground; reloads follow the
descriptor's `reload` (its own command, a signal to its pidfile's pid, or a restart
by the supervisor).
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from ops import daemons


def running(daemon: str) -> bool:
    try:
        pid = int(Path(daemons.by_name(daemon).pidfile).read_text().split()[0])
        os.kill(pid, 0)
        return True
    except (OSError, ValueError, IndexError):
        return False


def reload(init: str, daemon: str) -> None:
    """Raises `subprocess.CalledProcessError` (with the command's stderr) when the reload fails."""
    d = daemons.by_name(daemon)
    if not d.has_process:
        return                      # nothing runs (e.g. policyd-spf: Postfix spawns a fresh one per connection)
    if init == "systemd":
        subprocess.run(["systemctl", "reload-or-restart", d.unit], check=True, capture_output=True, text=True)
    elif not running(daemon):
        return                      # the supervisor starts it on the current files
    elif d.reload.kind == "command":
        subprocess.run(list(d.reload.command), check=True, capture_output=True, text=True)
    else:
        # A signal reload, or a restart: TERM makes the supervisor start it again on the new files.
        pid = int(Path(d.pidfile).read_text().split()[0])
        os.kill(pid, getattr(signal, f"SIG{d.reload.signal}") if d.reload.kind == "signal" else signal.SIGTERM)
