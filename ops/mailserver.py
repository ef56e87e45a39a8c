"""The whole mail server as pyinfra deploys, in three stages.

install:   packages and users. The image build (mailwright_stage=install, no settings) installs
           every daemon's packages; a VPS deploy installs the enabled daemons' only.
configure: settings and config folder -> generated files, on the target: one operation for the
           whole plan (one remote check, one apply).
activate:  enabled daemons running (and their jobs' timers), disabled ones stopped, under the chosen init.

Nothing here names a daemon: they come from their descriptors (`ops/<name>/daemon.py`).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from typing import Any, Mapping

from pyinfra import host
from pyinfra.facts.server import Command
from pyinfra.operations import apt

from ops import base, configfolder, daemons, operations, supervision
from ops.daemon import Daemon
from ops.settings import Settings, load

STAGES = ("install", "configure", "all")


def settings_for(data: Mapping[str, Any]) -> Settings:
    """Settings from host data, `mailserver_env` and the operator's environment (that order)."""
    fqdn = data.get("OVERRIDE_HOSTNAME") or os.environ.get("OVERRIDE_HOSTNAME")
    if not fqdn:
        fqdn = host.get_fact(Command, "hostname -f")
    return load(env_file=data.get("mailserver_env"), host_data=data, environ=os.environ, fqdn=fqdn)


def title(d: Daemon) -> str:
    return d.name.capitalize()


def install_packages(d: Daemon, lock: dict[str, str]) -> None:
    """A daemon's Debian packages (what an `ops/<name>/deploy.py` `install` calls too)."""
    apt.packages(name=f"{title(d)} packages", packages=base.packages(list(d.packages), lock),
                 no_recommends=True, _env=base.APT_ENV)


def _own(d: Daemon, name: str):
    """`name` from the daemon's own `ops/<name>/deploy.py`, if it has that module and that name."""
    if importlib.util.find_spec(f"ops.{d.name}.deploy") is not None:
        return getattr(importlib.import_module(f"ops.{d.name}.deploy"), name, None)
    return None


def daemon_packages(d: Daemon) -> tuple[str, ...]:
    """The packages its install asks apt for on this host: the descriptor's, or what its own
    `packages(daemon)` in `ops/<name>/deploy.py` makes of them."""
    own = _own(d, "packages")
    return tuple(own(d)) if own is not None else tuple(d.packages)


def install_daemon(d: Daemon, lock: dict[str, str]) -> None:
    """Its packages, or its own `install(daemon, lock)` deploy in `ops/<name>/deploy.py` when it has one."""
    own = _own(d, "install")
    if own is not None:
        own(d, lock)
        return
    install_packages(d, lock)


def install(data: Mapping[str, Any], settings: Settings | None = None) -> None:
    """`settings` None (the image build): every daemon's packages; else the enabled daemons'."""
    lock = base.read_lock(data.get("mailwright_package_lock"))
    chosen = daemons.all_daemons() if settings is None else daemons.enabled(settings)
    wanted = [p for d in chosen for p in base.packages(list(daemon_packages(d)), lock)]
    base.install(lock=lock, daemon_packages=wanted)
    base.runtime()
    for d in chosen:
        install_daemon(d, lock)


def configure(settings: Settings, data: Mapping[str, Any]) -> None:
    configfolder.seed(settings=settings, source=data.get("mailwright_config_source"))
    supervision.configure(settings=settings)
    # What the container's start does (mailwright.prepare): a queue missing directories (a restored
    # spool), and mail copied from another host or restored as root, which Dovecot cannot deliver into.
    base.repair(name="Postfix queue and mail store owners", what="host")
    # Reloads itself what it changed (systemctl on a VPS, the daemons' own commands in a container).
    operations.configure(name="Configuration")
    supervision.activate(settings=settings)


def deploy(data: Mapping[str, Any]) -> None:
    stage = data.get("mailwright_stage", "all")
    if stage not in STAGES:
        raise ValueError(f"mailwright_stage={stage!r}: use one of {', '.join(STAGES)}")
    # Read first: a bad setting stops the deploy before anything touches the target.
    settings = settings_for(data) if stage in ("configure", "all") else None
    if stage in ("install", "all"):
        install(data, settings)
    if stage == "install":
        base.strip_secrets()
    if settings is not None:
        configure(settings, data)
