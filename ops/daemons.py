"""The set of daemons: every `ops/<name>/daemon.py` that defines `DAEMON`.

Found by looking, not by a list: adding a daemon is adding its folder. Sorted
by start order, then name, so every table derived from it is stable.
"""

from __future__ import annotations

import importlib
import importlib.util
from functools import lru_cache

import ops
from ops.daemon import Daemon


@lru_cache(maxsize=None)
def all_daemons() -> tuple[Daemon, ...]:
    import pkgutil      # here: the init reads this module's paths and should not pay for discovery
    found = []
    for module in pkgutil.iter_modules(ops.__path__):
        if not module.ispkg:
            continue
        try:
            spec = importlib.util.find_spec(f"ops.{module.name}.daemon")
        except ModuleNotFoundError:
            spec = None
        if spec is None:
            continue
        daemon = importlib.import_module(f"ops.{module.name}.daemon").DAEMON
        if daemon.name != module.name:
            raise ValueError(f"ops/{module.name}/daemon.py names its daemon {daemon.name!r}; "
                             f"it must be the folder's name")
        found.append(daemon)
    return tuple(sorted(found, key=lambda d: (d.order, d.name)))


def by_name(name: str) -> Daemon:
    for d in all_daemons():
        if d.name == name:
            return d
    raise KeyError(f"no daemon named {name!r} (known: {', '.join(d.name for d in all_daemons())})")


def enabled(settings) -> tuple[Daemon, ...]:
    return tuple(d for d in all_daemons() if d.enabled(settings))


# --- tables derived from the descriptors -------------------------------------------------------------
# Read by the shell supervisor and health check (no daemon name is written in them) and by the
# systemd watch unit; written by the configure stage (ops.plan) for the enabled daemons.

# The files the shell supervisor reads (mailwright.init passes these paths in its environment;
# health.sh reads DAEMONS_FILE, a unit test keeps its copy of the path equal).
DAEMONS_FILE = "/etc/mailwright/daemons"
JOBS_FILE = "/etc/mailwright/jobs"
WATCH_LIST = "/etc/mailwright/watch"                    # what the change poller fingerprints
PENDING_RELOADS = "/run/mailwright/pending-reloads"     # reloads to retry (mailwright.configure)


def _field(words) -> str:
    """A space-separated field of the tab-separated tables; '-' when empty (dash's `read`
    collapses consecutive tabs, so an empty field would shift the others)."""
    words = [str(w) for w in words]
    for w in words:
        if not w or any(c.isspace() for c in w) or w == "-":
            raise ValueError(f"{w!r}: no whitespace (or a lone '-') in a port, socket or pidfile")
    return " ".join(words) or "-"


def daemons_table(settings) -> str:
    """/etc/mailwright/daemons: one line per enabled daemon, in start order, tab-separated:

        name  pidfile  ports  sockets  argv

    `ports` and `sockets` are space-separated ('-': none); `argv` is the foreground command,
    each word shell-quoted (`eval "set -- $argv"` in dash gives it back word for word)."""
    import shlex
    lines = []
    for d in enabled(settings):
        if not d.has_process:
            continue                    # nothing to run or probe (e.g. policyd-spf, spawned by Postfix)
        fields = (d.name, _field([d.pidfile]), _field(d.ports(settings)), _field(d.sockets), shlex.join(d.foreground))
        lines.append("\t".join(fields) + "\n")
    return "".join(lines)


def jobs(settings):
    """(daemon, job) for every enabled job of an enabled daemon, names unique."""
    out, seen = [], {}
    for d in enabled(settings):
        for job in d.jobs:
            if job.name in seen:
                raise ValueError(f"job {job.name!r} is declared by {seen[job.name]} and {d.name}")
            seen[job.name] = d.name
            if job.enabled(settings):
                out.append((d, job))
    return out


def jobs_table(settings) -> str:
    """/etc/mailwright/jobs: one line per enabled job, tab-separated: name, seconds between runs,
    argv (shell-quoted words, as in the daemons table)."""
    import shlex
    return "".join(f"{job.name}\t{int(job.every)}\t{shlex.join(job.command)}\n" for _, job in jobs(settings))


def units(settings) -> list[str]:
    """The systemd units of the enabled daemons (what the watch unit starts after)."""
    return [d.unit for d in enabled(settings) if d.has_process]


def logs(settings) -> list[str]:
    """The enabled daemons' own log files, which mail.log's rotation job also rotates."""
    return [path for d in enabled(settings) for path in d.logs]


def state_folders(settings) -> list[str]:
    """Folders the enabled daemons keep on /var/mail-state."""
    return [path for d in enabled(settings) for path in d.state]


def secrets() -> list[str]:
    """What an image build strips: every daemon's generated secrets (the image has all daemons)."""
    return [path for d in all_daemons() for path in d.secrets]
