"""mail.log rotation (mailwright.logrotate): docker-mailserver's `compress copytruncate
delaycompress rotate LOGROTATE_COUNT LOGROTATE_INTERVAL`, without logrotate."""

from __future__ import annotations

import datetime
import gzip
import os

import pytest

from mailwright import logrotate
from ops import settings as S

D = datetime.date


@pytest.mark.parametrize("interval,last,today,due", [
    ("daily", D(2024, 5, 1), D(2024, 5, 1), False),
    ("daily", D(2024, 5, 1), D(2024, 5, 2), True),
    ("weekly", D(2024, 5, 6), D(2024, 5, 12), False),      # Monday .. Sunday: same ISO week
    ("weekly", D(2024, 5, 12), D(2024, 5, 13), True),      # Sunday -> Monday: a new week
    ("monthly", D(2024, 5, 1), D(2024, 5, 31), False),
    ("monthly", D(2024, 5, 31), D(2024, 6, 1), True),
    ("daily", D(2024, 5, 2), D(2024, 5, 1), False),        # clock set back: never
])
def test_due(interval, last, today, due):
    assert logrotate.due(interval, last, today) is due


def test_rotation_keeps_count_compresses_all_but_the_newest_and_truncates_in_place(tmp_path):
    log, status = tmp_path / "mail.log", tmp_path / "state" / "status"
    log.write_text("")
    writer = open(log, "a")                      # as Postfix and Dovecot keep it open (O_APPEND)
    day = D(2024, 1, 1)
    assert not logrotate.run("daily", 3, log, status, today=day)           # first sight: recorded only
    for n in range(1, 6):
        writer.write(f"day {n}\n")
        writer.flush()
        day += datetime.timedelta(days=1)
        assert logrotate.run("daily", 3, log, status, today=day)
        assert not logrotate.run("daily", 3, log, status, today=day)      # once a day
    writer.write("after\n")
    writer.flush()
    assert log.read_text() == "after\n"          # truncated, and the open writer goes on at its start
    assert sorted(p.name for p in tmp_path.glob("mail.log*")) == ["mail.log", "mail.log.1", "mail.log.2.gz",
                                                                   "mail.log.3.gz"]
    assert (tmp_path / "mail.log.1").read_text() == "day 5\n"              # delaycompress
    assert gzip.decompress((tmp_path / "mail.log.2.gz").read_bytes()) == b"day 4\n"
    assert gzip.decompress((tmp_path / "mail.log.3.gz").read_bytes()) == b"day 3\n"
    assert status.read_text() == f"{day.isoformat()}\n"
    writer.close()


def test_count_zero_keeps_nothing(tmp_path):
    log, status = tmp_path / "mail.log", tmp_path / "status"
    log.write_text("old\n")
    status.write_text("2024-01-01\n")
    assert logrotate.run("weekly", 0, log, status, today=D(2024, 2, 1))
    assert log.read_text() == "" and sorted(os.listdir(tmp_path)) == ["mail.log", "status"]


def test_settings_are_implemented_and_validated():
    s = S.load(environ={"MAILWRIGHT_INIT": "container", "LOGROTATE_INTERVAL": "daily", "LOGROTATE_COUNT": "7"}, fqdn="mail.example.test")
    assert (s.LOGROTATE_INTERVAL, s.LOGROTATE_COUNT) == ("daily", 7)
    with pytest.raises(S.SettingsError, match="LOGROTATE_INTERVAL"):
        S.load(environ={"MAILWRIGHT_INIT": "container", "LOGROTATE_INTERVAL": "hourly"}, fqdn="mail.example.test")
    assert S._FIELDS["LOGROTATE_COUNT"].metadata["implemented"]


def test_the_job_rotates_every_enabled_daemons_own_logs_with_mail_logs_rule(tmp_path, monkeypatch):
    """ClamAV's and Fail2ban's logs (their descriptors' `logs`) rotate with mail.log, each with its own
    status; a daemon that is off keeps its old log untouched; one unreadable log stops none of the others."""
    from ops import daemons
    root = tmp_path / "log"
    root.mkdir()
    monkeypatch.setattr(logrotate, "LOG", root / "mail.log")
    monkeypatch.setattr(logrotate, "STATUS", tmp_path / "status" / "mailwright.status")
    real = daemons.logs
    monkeypatch.setattr(daemons, "logs", lambda s: [str(root / os.path.basename(p)) for p in real(s)])
    names = ("mail.log", "clamav.log", "freshclam.log", "fail2ban.log")
    for name in names:
        (root / name).write_text(f"{name} line\n")
    (tmp_path / "status").mkdir()
    for name in names:                                       # each one last rotated long ago
        logrotate.status_of(root / name).write_text("2000-01-01\n")
    settings = tmp_path / "dms-settings"
    settings.write_text("LOGROTATE_INTERVAL='daily'\nLOGROTATE_COUNT='2'\nENABLE_CLAMAV='1'\n")

    assert logrotate.main(str(settings)) == 0
    for name in ("mail.log", "clamav.log", "freshclam.log"):
        assert (root / f"{name}.1").read_text() == f"{name} line\n" and (root / name).read_text() == ""
    assert (root / "fail2ban.log").read_text() == "fail2ban.log line\n"      # Fail2ban is off
    assert not (root / "fail2ban.log.1").exists()
    assert logrotate.status_of(root / "clamav.log") != logrotate.status_of(root / "mail.log")

    settings.write_text("LOGROTATE_INTERVAL='daily'\nENABLE_FAIL2BAN='1'\nENABLE_CLAMAV='1'\n")
    (root / "clamav.log").unlink()
    (root / "clamav.log").mkdir()                            # not a file: skipped, the others still rotate
    logrotate.status_of(root / "fail2ban.log").write_text("2000-01-01\n")
    assert logrotate.main(str(settings)) == 0
    assert (root / "fail2ban.log.1").read_text() == "fail2ban.log line\n"
    assert logrotate.main(str(tmp_path / "missing")) == 1
