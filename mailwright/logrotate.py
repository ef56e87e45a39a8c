"""Rotation of /var/log/mail/mail.log and the daemons' own logs: `python3 -m mailwright.logrotate` (a scheduled job).

docker-mailserver's logrotate rule, `compress copytruncate delaycompress rotate
LOGROTATE_COUNT LOGROTATE_INTERVAL`, without the logrotate package: the newest
rotation stays plain (`mail.log.1`), older ones are gzipped (`mail.log.2.gz` ...),
at most LOGROTATE_COUNT are kept, and the log is copied then truncated in place,
because Postfix (postlogd) and Dovecot keep it open (they write with O_APPEND, so
they go on at the start of the emptied file).

The job runs hourly (ops/postfix/daemon.py) and rotates when the interval's
period changed since the last rotation (logrotate's rule): daily, a new day;
weekly, a new ISO week or 7 days; monthly, a new month. The last rotation's date
is kept in /var/lib/logrotate (on /var/mail-state when mounted), so restarts do
not postpone it. A log seen for the first time is only recorded, not rotated.
"""

from __future__ import annotations

import datetime
import gzip
import os
import shutil
import sys
from pathlib import Path

from mailwright import atomic

LOG = Path("/var/log/mail/mail.log")
STATUS = Path("/var/lib/logrotate/mailwright.status")


def due(interval: str, last: datetime.date, today: datetime.date) -> bool:
    if today <= last:
        return False
    if interval == "daily":
        return True
    if interval == "weekly":
        return today.isocalendar()[:2] != last.isocalendar()[:2] or (today - last).days >= 7
    if interval == "monthly":
        return (today.year, today.month) != (last.year, last.month)
    raise ValueError(f"LOGROTATE_INTERVAL={interval!r}: use daily, weekly or monthly")


def rotate(log: Path, count: int) -> None:
    """One rotation: shift the gzipped ones, gzip the plain `.1`, copy the log to `.1`, truncate it."""
    mode = log.stat().st_mode & 0o777
    old = lambda i: log.with_name(f"{log.name}.{i}" + (".gz" if i > 1 else ""))   # noqa: E731
    for stale in (log.with_name(f"{log.name}.{count}"), old(count)):
        if count >= 1:
            stale.unlink(missing_ok=True)
    for i in range(count - 1, 1, -1):
        if old(i).exists():
            os.replace(old(i), old(i + 1))
    plain = old(1)
    if plain.exists():
        if count >= 2:
            with plain.open("rb") as src:
                atomic.replace_with(old(2), lambda out: _gzip(src, out), mode)
        plain.unlink()
    if count >= 1:
        with log.open("rb") as src:
            atomic.replace_with(plain, lambda out: shutil.copyfileobj(src, out), mode)
    os.truncate(log, 0)


def _gzip(src, out) -> None:
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as z:
        shutil.copyfileobj(src, z)


def run(interval: str, count: int, log: Path = LOG, status: Path = STATUS,
        today: datetime.date | None = None) -> bool:
    """Rotate `log` when due; returns whether it did."""
    today = today or datetime.date.today()
    if not log.is_file():
        return False
    try:
        last = datetime.date.fromisoformat(status.read_text().strip())
    except (FileNotFoundError, ValueError):
        last = None
    rotated = last is not None and due(interval, last, today)
    if rotated:
        rotate(log, count)
    if last is None or rotated:
        status.parent.mkdir(parents=True, exist_ok=True)
        atomic.replace(status, f"{today.isoformat()}\n".encode(), 0o644)
    return rotated


def status_of(log: Path) -> Path:
    """Where a log's last rotation date is kept: mail.log's own name (kept from before), else `<name>.status`."""
    return STATUS if log == LOG else STATUS.with_name(f"{log.stem}.status")


def main(settings_file: str = "/etc/dms-settings") -> int:
    """Rotate mail.log and every enabled daemon's own logs (their descriptors' `logs`)."""
    from ops import daemons
    from ops.settings import SettingsError, read_dms_settings
    try:
        s = read_dms_settings(settings_file)
        logs = [LOG, *(Path(p) for p in daemons.logs(s))]
    except (SettingsError, OSError) as e:
        print(f"ERROR mailwright.logrotate: {e}", file=sys.stderr)
        return 1
    failed = 0
    for log in logs:      # one log failing does not keep the others from rotating
        try:
            if run(s.LOGROTATE_INTERVAL, s.LOGROTATE_COUNT, log=log, status=status_of(log)):
                print(f"rotated {log} ({s.LOGROTATE_INTERVAL}, {s.LOGROTATE_COUNT} kept)")
        except OSError as e:
            print(f"ERROR mailwright.logrotate: {log}: {e}", file=sys.stderr)
            failed = 1
    return failed


if __name__ == "__main__":
    sys.exit(main())
