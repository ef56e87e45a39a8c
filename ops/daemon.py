"""One descriptor per daemon: what every other part of mailwright needs to know about it.

A daemon is one folder, `ops/<daemon>/`: `daemon.py` holds its `DAEMON`
(an instance of `Daemon` below), `config.py` its pure renderer (settings +
config folder -> `ConfigFile`s) and `files/` its templates, mirroring target
paths. Everything else is derived from the set of descriptors
(`ops.daemons.ALL`): the packages a deploy installs, the files the configure
stage writes (each tagged with its daemon), which daemons the container's
supervisor starts and how it reloads them, the health check, the change
poller's watch list, the state folders kept on /var/mail-state, the secrets an
image build strips, the scheduled jobs, and what each daemon adds to Postfix.

Pure standard library: the descriptors are read in the container and on a
VPS, where pyinfra is not installed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:       # annotations only: keep this module import-light
    from ops.configdir import ConfigDir
    from ops.render import ConfigFile
    from ops.settings import Settings
    from ops.tls import Tls


def always(_settings: "Settings") -> bool:
    return True


def shell_foreground(pidfile: str, *steps: str) -> tuple[str, ...]:
    """A `foreground` for a daemon that writes no pidfile while in the foreground: /bin/sh runs
    `steps` (joined by &&), writing its own pid to `pidfile` just before the last one (the steps
    before it may make the pidfile's folder); the last `exec`s the daemon, which keeps that pid,
    or is a loop of the shell's own."""
    *setup, last = steps
    return ("/bin/sh", "-c", " && ".join((*setup, f"echo $$ > {pidfile}", last)))


@dataclass(frozen=True)
class Reload:
    """How a running daemon picks up changed files.

    `command`: run this argv (e.g. `postfix reload`, `doveadm reload`);
    `signal`: send `signal` to the pid in the daemon's pidfile;
    `restart`: stop and start it (a daemon that cannot reload).
    Under systemd the unit is always asked (`systemctl reload-or-restart`).
    """
    kind: str = "restart"                 # command | signal | restart
    command: tuple[str, ...] = ()
    signal: str = "HUP"

    def __post_init__(self) -> None:
        if self.kind not in ("command", "signal", "restart"):
            raise ValueError(f"Reload.kind={self.kind!r}: use command, signal or restart")
        if self.kind == "command" and not self.command:
            raise ValueError("Reload(kind='command') needs a command")


@dataclass(frozen=True)
class Job:
    """A scheduled task: a systemd timer on a VPS, the supervisor's schedule in a container.

    The container's supervisor never starts a job while the previous run of the
    same job still runs, and logs each run's exit status.
    """
    name: str                             # unique across daemons; systemd: mailwright-job-<name>.timer
    every: int                            # seconds between runs (the first run is one interval after start)
    command: tuple[str, ...]              # argv, run as root in /opt/mailwright (so `python3 -m mailwright.x` works)
    enabled: Callable[["Settings"], bool] = always

    def __post_init__(self) -> None:
        if not self.name or not self.name.replace("-", "").isalnum():
            raise ValueError(f"job name {self.name!r}: letters, digits and '-' only")
        if self.every < 1 or not self.command:
            raise ValueError(f"job {self.name}: needs a command and an interval of at least 1 s")


@dataclass(frozen=True)
class PostfixHooks:
    """What a daemon adds to Postfix, the hub. `ops/postfix` assembles every daemon's
    hooks in one documented order: entries sort by their `order` number (lower
    first), then by daemon name.

    Each restriction/milter entry is `(order, text)`:
    - `smtpd_milters` / `non_smtpd_milters`: e.g. `(10, "inet:127.0.0.1:8891")` (OpenDKIM before OpenDMARC at 20);
    - `recipient_restrictions`: appended to port 25's `smtpd_recipient_restrictions`
      after `reject_unauth_destination` (policy services, e.g. Postgrey at 50, quota-status at 90);
    - `mua_recipient_restrictions`: what 465/587 apply to a logged-in user's recipients, before `permit_sasl_authenticated`;
    - `master_services`: whole master.cf entries (first line + `-o` lines), e.g. a re-injection service;
    - `main`: extra `main.cf` parameters `(name, value)`; a parameter set by two daemons is an error;
    - `content_filter`: at most one daemon may set it;
    - `aliases`: `(address, real address)`: an address docker-mailserver's files name for this daemon
      (e.g. `inet:localhost:8891`) where mailwright listens elsewhere; postfix-main.cf's values are
      translated, so an operator's file written for docker-mailserver keeps working.
    """
    smtpd_milters: tuple[tuple[int, str], ...] = ()
    non_smtpd_milters: tuple[tuple[int, str], ...] = ()
    recipient_restrictions: tuple[tuple[int, str], ...] = ()
    mua_recipient_restrictions: tuple[tuple[int, str], ...] = ()
    master_services: tuple[str, ...] = ()
    main: tuple[tuple[str, str], ...] = ()
    content_filter: str = ""
    aliases: tuple[tuple[str, str], ...] = ()


def no_hooks(_settings: "Settings", _cfg: "ConfigDir") -> PostfixHooks:
    return PostfixHooks()


def no_ports(_settings: "Settings") -> tuple[int, ...]:
    return ()


def no_files(_settings: "Settings", _cfg: "ConfigDir", _tls: "Tls") -> list["ConfigFile"]:
    return []


@dataclass(frozen=True)
class Daemon:
    """One daemon, declared once. Field by field:

    - `packages`: installed by the image build (every daemon's) and a VPS deploy (enabled daemons');
      an optional `ops/<name>/deploy.py` `install(daemon, lock)` pyinfra deploy replaces the plain
      package install (e.g. Postfix's debconf preseed).
    - `enabled(settings)`: off means gone: a disabled daemon's files are removed, its unit is
      stopped and disabled (VPS), the supervisor does not run it (container).
    - `foreground`, `unit`, `pidfile`, `reload`, `ports`, `sockets`: supervision and health
      (written to /etc/mailwright/daemons for the shell supervisor and health check).
      A daemon without a process of its own (e.g. policyd-spf, which Postfix's `spawn` runs per
      connection) leaves `foreground`, `unit` and `pidfile` empty: no supervisor line, no unit
      to start or stop, nothing to reload (its files name `reloads`, e.g. Postfix); it still has
      packages, files and Postfix hooks, and off still means gone.
    - `state`: folders moved to /var/mail-state when it is mounted.
    - `secrets`: paths the image build strips (files, or symlinks to them; a `/**` suffix: a folder's content).
    - `reads`: config-folder files it reads (documentation; ops.configdir.WATCHED is what is watched).
    - `jobs`: scheduled tasks (systemd timers on a VPS, the supervisor's schedule in a container).
    - `logs`: log files of its own besides mail.log (e.g. fail2ban.log); mail.log's job rotates them
      with mail.log's rule (LOGROTATE_INTERVAL, LOGROTATE_COUNT; copy, then truncate in place, so the
      daemon must write with O_APPEND), as docker-mailserver's logrotate does.
    - `files(settings, cfg, tls)`: its config.py. It should return its paths whatever the settings
      (content None for a file not wanted): for a disabled daemon `ops.plan` turns every path it
      returns into a removal, so nothing of it is left behind. The files are tagged with this
      daemon and, unless they say otherwise (`reloads`), reload it when they change.
    - `postfix(settings, cfg)`: what it adds to Postfix (`PostfixHooks`), asked only when enabled.
    - `order`: start order; `uses_tls`: reloaded when the certificate changes.
    - `logs_to_syslog`: it logs only through syslog(3) (`/dev/log`): in a container, which has no
      syslog daemon, the sink `ops/syslog` runs while an enabled daemon says so and writes their
      mail-facility lines to the mail log (on a VPS the journal owns /dev/log).
    """
    name: str                             # the folder's name: ops/<name>/
    packages: tuple[str, ...]             # Debian packages (the image installs every daemon's; a VPS the enabled ones')
    enabled: Callable[["Settings"], bool]
    foreground: tuple[str, ...]           # argv for the container's supervisor; must stay in the foreground; () no process
    unit: str                             # its systemd unit on a VPS, e.g. "postfix.service"; "" no process
    pidfile: str                          # where the running daemon writes its pid (health, signal reloads); "" no process
    reload: Reload = field(default_factory=Reload)
    ports: Callable[["Settings"], tuple[int, ...]] = no_ports      # TCP ports that must listen when healthy
    sockets: tuple[str, ...] = ()         # unix sockets that must exist when healthy
    state: tuple[str, ...] = ()           # folders kept on /var/mail-state (e.g. "/var/lib/postgrey")
    secrets: tuple[str, ...] = ()         # made by its packages at install time: stripped from the image
    reads: tuple[str, ...] = ()           # config-folder files it reads (the change poller watches them)
    jobs: tuple[Job, ...] = ()
    logs: tuple[str, ...] = ()            # its own log files beside mail.log: rotated with mail.log's rule
    files: Callable[["Settings", "ConfigDir", "Tls"], list["ConfigFile"]] = no_files     # its config.py
    postfix: Callable[["Settings", "ConfigDir"], PostfixHooks] = no_hooks
    order: int = 50                       # start order (lower first); stop runs in reverse
    uses_tls: bool = False                # reloaded when the certificate (ops.tls.FINGERPRINT) changes
    logs_to_syslog: bool = False          # logs only to /dev/log: needs the container's syslog sink (ops/syslog)

    def __post_init__(self) -> None:
        if not self.name or not self.name.replace("-", "").isalnum():
            raise ValueError(f"daemon name {self.name!r}: letters, digits and '-' only")
        if not self.foreground and (self.unit or self.pidfile or self.sockets or self.ports is not no_ports
                                    or self.reload != Reload() or self.jobs):
            raise ValueError(f"{self.name}: no foreground command means no process: then unit, pidfile, "
                             f"ports, sockets, reload and jobs stay empty")
        if self.foreground and not (self.unit and self.pidfile):
            raise ValueError(f"{self.name}: a daemon with a foreground command needs its unit and pidfile")

    @property
    def has_process(self) -> bool:
        """False for a daemon that is only packages, files and Postfix hooks (nothing to supervise)."""
        return bool(self.foreground)
