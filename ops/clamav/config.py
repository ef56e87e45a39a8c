"""ClamAV's files, computed from the settings (pure: no pyinfra).

- `/etc/clamav/clamd.conf`: the socket Amavis asks, the signature folder, the log in the log
  volume (`clamav.log`, docker-mailserver's), `MaxFileSize`/`MaxScanSize` from
  CLAMAV_MESSAGE_SIZE_LIMIT (docker-mailserver's mapping).
- freshclam (the scheduled job) reads Debian's own `/etc/clamav/freshclam.conf` (the package's,
  with its download servers, left as Debian made it); `run.sh` overrides on its command line the
  folder, the user, the log (`freshclam.log` in the log volume) and clamd's reload after an update.
- `/etc/amavis/conf.d/55-mailwright-clamav`: Amavis's `@av_scanners` = clamd on its socket, and
  no backup scanner, only when Amavis is on too: a clamd that does not answer then makes Amavis
  defer the mail (4xx) instead of passing it unscanned. Changing it reloads Amavis.
- `/etc/systemd/system/clamav-daemon.service` (systemd only): Debian's unit, replaced: Debian's
  starts only with the official `main`/`daily` databases and takes its socket from
  `clamav-daemon.socket`; mailwright's runs `run.sh` (any signature file; waits for one) and has
  no ExecReload, so a reload restarts clamd on its new clamd.conf.
"""

from __future__ import annotations

import logging
import re

from ops.clamav.daemon import AMAVIS_SNIPPET, CLAMD_CONF, LOGS, PIDFILE, RUN_SH, SOCKET, STATE, UNIT_FILE
from ops.render import ConfigFile, rendered
from ops.settings import Settings

log = logging.getLogger("mailwright.config")

CLAMAV_LOG = LOGS[0]
# clamd reads sizes into 32 bits and cannot scan files over 2 GB; docker-mailserver warns above 2G/4000M.
LARGEST = 4000 * 1024 ** 2
SCANNABLE = 2 * 1024 ** 3
_UNITS = {"": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3, "t": 1024 ** 4}


def size_bytes(value: str) -> int:
    """CLAMAV_MESSAGE_SIZE_LIMIT (the settings' SIZE: digits and an optional k/m/g/t) in bytes,
    at most 4000M (what clamd can hold); a larger value is logged and lowered, not passed on
    for clamd to refuse at start. 0 is clamd's "no limit" (it still scans no file over 2 GB)."""
    m = re.fullmatch(r"([0-9]+)([kKmMgGtT]?)", value.strip())
    if not m:
        raise ValueError(f"CLAMAV_MESSAGE_SIZE_LIMIT={value!r}: a number with an optional K, M, G or T")
    n = int(m.group(1)) * _UNITS[m.group(2).lower()]
    if n > LARGEST:
        log.warning("CLAMAV_MESSAGE_SIZE_LIMIT=%s is more than clamd can take: using 4000M", value)
        return LARGEST
    if n > SCANNABLE:
        log.warning("CLAMAV_MESSAGE_SIZE_LIMIT=%s: ClamAV does not scan files over 2 GB", value)
    return n


def files(s: Settings, _cfg=None, _tls=None) -> list[ConfigFile]:
    systemd = s.MAILWRIGHT_INIT == "systemd"
    if not s.ENABLE_CLAMAV:
        # Off means gone (ops.plan removes these paths for a disabled daemon anyway).
        return [ConfigFile(p, None) for p in (CLAMD_CONF, AMAVIS_SNIPPET, UNIT_FILE)]
    size = size_bytes(s.CLAMAV_MESSAGE_SIZE_LIMIT)
    ctx = dict(size=size, socket=SOCKET, pidfile=PIDFILE, database=STATE, log=CLAMAV_LOG, run_sh=RUN_SH)
    out = [rendered(CLAMD_CONF, ctx)]
    if s.ENABLE_AMAVIS:
        out.append(rendered(AMAVIS_SNIPPET, ctx, reloads=("amavis",)))
    else:
        out.append(ConfigFile(AMAVIS_SNIPPET, None, reloads=()))
    if systemd:
        out.append(rendered(UNIT_FILE, ctx, after=("systemctl daemon-reload",)))
    else:
        out.append(ConfigFile(UNIT_FILE, None, reloads=()))
    return out
