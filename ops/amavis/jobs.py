"""Amavis's scheduled jobs (run by the container's supervisor or a systemd timer, as root).

`python3 -m ops.amavis.jobs virusmails`: delete quarantined mail older than VIRUSMAILS_DELETE_DELAY
days (docker-mailserver's daily `find /var/lib/amavis/virusmails/ -type f -mtime +N -delete`).

`python3 -m ops.amavis.jobs sa-update`: SpamAssassin's rule update (and KAM's channel with
ENABLE_SPAMASSASSIN_KAM=1). sa-update installs new rules only once they are downloaded, verified
and linted, so an unreachable server leaves the rules in use as they are: the job says so in the
mail log and exits 0 (nothing is broken); new rules reload Amavis, which loads SpamAssassin.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from ops.amavis.daemon import HOME, LOG, PIDFILE, SA_KEYS

SA_KEY = "/usr/share/spamassassin/GPG.KEY"      # the updates channel's key, shipped by Debian's package

VIRUSMAILS = Path(HOME) / "virusmails"
KAM_CHANNEL = "kam.sa-channels.mcgrail.com"
KAM_KEY = "24C063D8"
# sa-update(1): 0 new rules installed, 1 none available; 2 the site's .pre files fail lint, 3 an update
# failed to install, 4 or more a channel could not be fetched or verified: in each case nothing changed.
OUTCOMES = {0: "new rules installed", 1: "no new rules"}


def log(message: str) -> None:
    """One line in the mail log (syslog's layout, as the other daemons write it) and on stdout."""
    line = f"{time.strftime('%b %e %H:%M:%S')} {os.uname().nodename} mailwright-sa-update: {message}\n"
    try:
        with open(LOG, "a") as f:
            f.write(line)
    except OSError:
        pass
    print(message, flush=True)


def virusmails(days: int, folder: Path = VIRUSMAILS, now: float | None = None) -> int:
    """Delete regular files under `folder` last modified more than `days` whole days ago
    (find's `-mtime +days`: age in days, rounded down, greater than `days`). How many."""
    now = time.time() if now is None else now
    removed = 0
    for root, _dirs, names in os.walk(folder):
        for name in names:
            path = Path(root) / name
            try:
                st = path.lstat()
                if path.is_file() and not path.is_symlink() and int((now - st.st_mtime) // 86400) > days:
                    path.unlink()
                    removed += 1
            except OSError:
                continue
    return removed


def sa_update(kam: bool, run=subprocess.run, keys: str = SA_KEYS) -> bool:
    """Run sa-update (and KAM's channel); log each outcome. True when new rules were installed."""
    channels = [("updates.spamassassin.org", ["sa-update", "-v"])]
    if kam:
        channels.append((KAM_CHANNEL, ["sa-update", "-v", "--gpgkey", KAM_KEY, "--channel", KAM_CHANNEL]))
    installed = False
    if not any((Path(keys) / f).exists() for f in ("pubring.kbx", "pubring.gpg")):
        # The image strips the keyring its build made (ops/amavis/daemon.py secrets): import it again.
        Path(keys).mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            done = run(["sa-update", "--gpghomedir", keys, "--import", SA_KEY], capture_output=True, text=True,
                       timeout=120)
            if done.returncode != 0:
                log(f"sa-update: importing {SA_KEY} failed (exit status {done.returncode})")
        except (OSError, subprocess.TimeoutExpired) as e:
            log(f"sa-update: importing {SA_KEY} failed ({e})")
    for name, argv in channels:
        try:
            done = run(argv, capture_output=True, text=True, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as e:
            log(f"sa-update {name}: could not run ({e}); the rules in use stay")
            continue
        outcome = OUTCOMES.get(done.returncode)
        if outcome is None:
            last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no message"]
            log(f"sa-update {name}: failed (exit status {done.returncode}: {last[0]}); the rules in use stay")
        else:
            log(f"sa-update {name}: {outcome}")
            installed |= done.returncode == 0
    return installed


def reload_amavis(pidfile: str = PIDFILE) -> None:
    try:
        pid = int(Path(pidfile).read_text().split()[0])
        os.kill(pid, signal.SIGHUP)
    except (OSError, ValueError, IndexError):
        pass          # not running: it loads the new rules when it starts


def main(argv: list[str]) -> int:
    from ops.settings import SettingsError, read_dms_settings
    try:
        s = read_dms_settings()
    except (SettingsError, OSError) as e:
        print(f"ERROR ops.amavis.jobs: {e}", file=sys.stderr)
        return 1
    what = argv[0] if argv else ""
    if what == "virusmails":
        n = virusmails(s.VIRUSMAILS_DELETE_DELAY)
        print(f"deleted {n} quarantined mail(s) older than {s.VIRUSMAILS_DELETE_DELAY} days from {VIRUSMAILS}")
        return 0
    if what == "sa-update":
        if sa_update(s.ENABLE_SPAMASSASSIN_KAM):
            if s.MAILWRIGHT_INIT == "systemd":
                subprocess.run(["systemctl", "reload-or-restart", "amavis.service"], check=False)
            else:
                reload_amavis()
        return 0
    print("usage: python3 -m ops.amavis.jobs virusmails|sa-update", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
