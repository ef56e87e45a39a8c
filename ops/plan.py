"""The whole configuration as one list of files: what the configure stage makes true.

Pure (no pyinfra): the container's init and the VPS's change watcher apply it
directly, and the pyinfra deploy applies it through `ops.operations.configure`.
"""

from __future__ import annotations

from pathlib import Path

from ops import configdir, network, tls as tls_mod
from ops.dovecot import config as dovecot
from ops.postfix import config as postfix
from ops.render import ConfigFile, rendered
from ops.settings import Settings, dms_settings_text

WATCH_LIST = "/etc/mailwright/watch"
DAEMONS = ("postfix", "dovecot")


def watched_paths(s: Settings, cfg: configdir.ConfigDir, tls: tls_mod.Tls) -> list[str]:
    """What the change poller fingerprints: config-folder inputs and certificate files."""
    root = Path(s.MAILWRIGHT_CONFIG_DIR)
    paths = [str(root / name) for name in configdir.WATCHED]
    paths += [str(root / f"{address}.dovecot.sieve") for address in sorted(cfg.user_sieve)]
    return paths + list(tls.watched)


def init_files(s: Settings) -> list[ConfigFile]:
    unit = "/etc/systemd/system/mailwright-watch.service"
    if s.MAILWRIGHT_INIT != "systemd":
        return [ConfigFile(unit, None)]
    return [rendered(unit, dict(s=s), after=("systemctl daemon-reload", "systemctl try-restart mailwright-watch"))]


def files(s: Settings, cfg: configdir.ConfigDir | None = None) -> list[ConfigFile]:
    cfg = cfg if cfg is not None else configdir.read(s.MAILWRIGHT_CONFIG_DIR)
    tls = tls_mod.resolve(s, s.MAILWRIGHT_CONFIG_DIR)
    both = tuple(d for d in DAEMONS if d != "dovecot" or s.dovecot_enabled)
    return [
        ConfigFile("/etc/dms-settings", dms_settings_text(s), mode=0o600),
        ConfigFile("/etc/mailname", s.domainname + "\n"),
        # A renewed certificate changes this file, and so reloads both daemons.
        ConfigFile(tls_mod.FINGERPRINT, tls_mod.fingerprint(tls), reloads=both),
        ConfigFile(WATCH_LIST, "".join(p + "\n" for p in watched_paths(s, cfg, tls))),
        *init_files(s),
        *postfix.files(s, cfg, tls, network.mynetworks(s)),
        *dovecot.files(s, cfg, tls),
    ]
