"""Container start-up chores that are not files: state volume, vmail ids, log folder.

All idempotent: a restarted container finds everything already right and
changes nothing (docker-mailserver re-runs mutating scripts; #3109).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from pathlib import Path

from ops.settings import Settings

log = logging.getLogger("mailwright.prepare")

STATE = Path("/var/mail-state")


def consolidate_state(s: Settings) -> None:
    """Keep service state in /var/mail-state when it is mounted; persisted data wins."""
    if not STATE.is_dir():
        return
    paths = ["/var/lib/postfix", "/var/spool/postfix", "/var/lib/logrotate"]
    if s.dovecot_enabled:
        paths.append("/var/lib/dovecot")
    for src in map(Path, paths):
        dest = STATE / str(src).strip("/").replace("/", "-")
        if src.is_symlink():
            continue
        if dest.exists():
            shutil.rmtree(src, ignore_errors=True)
            log.info("using persisted %s for %s", dest, src)
        elif src.exists():
            # mv, not shutil.move: across filesystems only mv (as root) keeps the owners,
            # and Postfix refuses a queue that is not postfix's.
            subprocess.run(["mv", str(src), str(dest)], check=True)
        else:
            dest.mkdir(parents=True)
        src.symlink_to(dest)


def vmail_ids(s: Settings) -> None:
    import grp
    import pwd
    if grp.getgrnam("docker").gr_gid != s.DMS_VMAIL_GID:
        subprocess.run(["groupmod", "-o", "-g", str(s.DMS_VMAIL_GID), "docker"], check=True)
    if pwd.getpwnam("docker").pw_uid != s.DMS_VMAIL_UID:
        subprocess.run(["usermod", "-o", "-u", str(s.DMS_VMAIL_UID), "docker"], check=True)
    mail = Path("/var/mail")
    st = mail.stat()
    if (st.st_uid, st.st_gid) != (s.DMS_VMAIL_UID, s.DMS_VMAIL_GID):
        os.chown(mail, s.DMS_VMAIL_UID, s.DMS_VMAIL_GID)


def logs() -> None:
    folder = Path("/var/log/mail")
    folder.mkdir(parents=True, exist_ok=True)
    mail_log = folder / "mail.log"
    if not mail_log.exists():
        mail_log.touch(mode=0o644)
    legacy = Path("/var/log/mail.log")
    if not legacy.is_symlink():
        legacy.unlink(missing_ok=True)
        legacy.symlink_to(mail_log)


def timezone(s: Settings) -> None:
    if not s.TZ:
        return
    zone = Path("/usr/share/zoneinfo") / s.TZ
    if not zone.is_file():
        log.warning("TZ=%s is not a known time zone; keeping UTC", s.TZ)
        return
    localtime = Path("/etc/localtime")
    if localtime.is_symlink() and os.readlink(localtime) == str(zone):
        return
    localtime.unlink(missing_ok=True)
    localtime.symlink_to(zone)
    Path("/etc/timezone").write_text(s.TZ + "\n")


def snakeoil(s: Settings) -> None:
    """SSL_TYPE=snakeoil: Debian's test certificate, made here so no image carries a key."""
    if s.SSL_TYPE == "snakeoil" and not Path("/etc/ssl/private/ssl-cert-snakeoil.key").exists():
        subprocess.run(["make-ssl-cert", "generate-default-snakeoil"], check=True)


def container(s: Settings) -> None:
    consolidate_state(s)
    vmail_ids(s)
    logs()
    timezone(s)
    snakeoil(s)
