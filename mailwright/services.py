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


def listening(port: int, proc_net: Path = Path("/proc/net")) -> bool:
    """A TCP socket of this machine listens on `port` (any address), from /proc: nothing connects to it."""
    for name in ("tcp", "tcp6"):
        try:
            lines = (proc_net / name).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 3 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                return True
    return False


def ports_now(d) -> tuple[int, ...]:
    """The daemon's ports under the effective settings the deploy wrote (none when unreadable)."""
    from ops.settings import read_dms_settings
    try:
        return tuple(d.ports(read_dms_settings()))
    except (OSError, ValueError, KeyError, TypeError):
        return ()


def reload(init: str, daemon: str, ports: tuple[int, ...] | None = None) -> None:
    """Raises `subprocess.CalledProcessError` (with the command's stderr) when the reload fails.

    `ports`: where the daemon listens with the current settings (default: its descriptor's
    `ports` under /etc/dms-settings).
    """
    d = daemons.by_name(daemon)
    if not d.has_process:
        return                      # nothing runs (e.g. policyd-spf: Postfix spawns a fresh one per connection)
    if init == "systemd":
        # A signal reload keeps the sockets the daemon opened when it started. One started on
        # another configuration (Debian's package starts OpenDKIM and OpenDMARC on its own file,
        # with a local socket, before mailwright's file is there) listens elsewhere than its
        # ports, and only a restart moves it there.
        verb = "reload-or-restart"
        if d.reload.kind == "signal" and not all(listening(p) for p in (ports_now(d) if ports is None else ports)):
            verb = "restart"
        subprocess.run(["systemctl", verb, d.unit], check=True, capture_output=True, text=True)
    elif not running(daemon):
        return                      # the supervisor starts it on the current files
    elif d.reload.kind == "command":
        subprocess.run(list(d.reload.command), check=True, capture_output=True, text=True)
    else:
        # A signal reload, or a restart: TERM makes the supervisor start it again on the new files.
        pid = int(Path(d.pidfile).read_text().split()[0])
        os.kill(pid, getattr(signal, f"SIG{d.reload.signal}") if d.reload.kind == "signal" else signal.SIGTERM)
