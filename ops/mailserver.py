"""The whole mail server as pyinfra deploys, in three stages.

install:   packages and users; independent of the settings (the image build runs it alone).
configure: settings and config folder -> generated files, on the target.
activate:  services running under the chosen init.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

from pyinfra import host
from pyinfra.facts.server import Command

from ops import base, configfolder, supervision
from ops.dovecot import deploy as dovecot
from ops.postfix import deploy as postfix
from ops.settings import Settings, load

STAGES = ("install", "configure", "all")


def settings_for(data: Mapping[str, Any]) -> Settings:
    """Settings from host data, `mailserver_env` and the operator's environment (that order)."""
    fqdn = data.get("OVERRIDE_HOSTNAME") or os.environ.get("OVERRIDE_HOSTNAME")
    if not fqdn:
        fqdn = host.get_fact(Command, "hostname -f")
    return load(env_file=data.get("mailserver_env"), host_data=data, environ=os.environ, fqdn=fqdn)


def install(data: Mapping[str, Any]) -> None:
    lock = base.read_lock(data.get("mailwright_package_lock"))
    base.install(lock=lock)
    base.runtime()
    postfix.install(lock=lock)
    dovecot.install(lock=lock)


def configure(settings: Settings, data: Mapping[str, Any]) -> None:
    configfolder.seed(settings=settings, source=data.get("mailwright_config_source"))
    supervision.configure(settings=settings)
    # What the container's start does (mailwright.prepare): a queue missing directories (a restored
    # spool), and mail copied from another host or restored as root, which Dovecot cannot deliver into.
    base.repair(name="Postfix queue and mail store owners", what="host")
    dovecot.configure(settings=settings)
    postfix.configure(settings=settings)
    supervision.activate(settings=settings)


def deploy(data: Mapping[str, Any]) -> None:
    stage = data.get("mailwright_stage", "all")
    if stage not in STAGES:
        raise ValueError(f"mailwright_stage={stage!r}: use one of {', '.join(STAGES)}")
    if stage in ("install", "all"):
        install(data)
    if stage == "install":
        base.strip_secrets()
    if stage in ("configure", "all"):
        configure(settings_for(data), data)
