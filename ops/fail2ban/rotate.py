"""Rotation of /var/log/mail/fail2ban.log: `python3 -m ops.fail2ban.rotate` (the descriptor's job).

docker-mailserver rotates fail2ban.log with mail.log's rule (LOGROTATE_INTERVAL, LOGROTATE_COUNT);
this is mailwright.logrotate's rotation (copy, then truncate in place: fail2ban-server keeps the
log open in append mode) on fail2ban's log, with a status file of its own.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ops.fail2ban.daemon import LOG

STATUS = Path("/var/lib/logrotate/fail2ban.status")


def main(settings_file: str = "/etc/dms-settings", log: Path = Path(LOG), status: Path = STATUS) -> int:
    from mailwright.logrotate import run
    from ops.settings import SettingsError, read_dms_settings
    try:
        s = read_dms_settings(settings_file)
        if run(s.LOGROTATE_INTERVAL, s.LOGROTATE_COUNT, log=log, status=status):
            print(f"rotated {log} ({s.LOGROTATE_INTERVAL}, {s.LOGROTATE_COUNT} kept)")
    except (SettingsError, OSError) as e:
        print(f"ERROR mailwright.logrotate: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
