"""The container's syslog sink (ops/syslog): derived from the descriptors' `logs_to_syslog`.

Pure: nothing here starts syslogd (tests/e2e/test_dkim.py::test_opendkim_logs_reach_the_mail_log does).
"""

from __future__ import annotations

import shlex

from ops import daemons, settings as S
from ops.syslog import config
from ops.syslog.daemon import DAEMON, FOREGROUND

FQDN = "mail.example.test"
# Everything that logs only to syslog switched off: the sink has nothing to carry.
QUIET = dict(ENABLE_OPENDKIM=0, ENABLE_OPENDMARC=0, ENABLE_POLICYD_SPF=0)


def load(init="container", **env) -> S.Settings:
    return S.load(environ={"MAILWRIGHT_INIT": init, **{k: str(v) for k, v in env.items()}}, fqdn=FQDN)


def conf(s) -> str | None:
    (f,) = config.files(s, None, None)
    assert f.path == "/etc/mailwright/syslog.conf"
    return f.content


def test_the_daemons_that_log_only_to_syslog_say_so():
    flagged = {d.name for d in daemons.all_daemons() if d.logs_to_syslog}
    assert flagged == {"opendkim", "opendmarc", "spf"}


def test_runs_in_a_container_while_one_of_them_is_enabled():
    for env in (dict(QUIET, ENABLE_OPENDKIM=1), dict(QUIET, ENABLE_OPENDMARC=1), dict(QUIET, ENABLE_POLICYD_SPF=1)):
        s = load(**env)
        assert DAEMON.enabled(s), env
        assert DAEMON in daemons.enabled(s)
        assert "mail.*\t\t\t/var/log/mail/mail.log" in conf(s).splitlines()
    s = load(**QUIET)
    assert not DAEMON.enabled(s)
    assert conf(s) is None                          # off means gone


def test_never_on_a_vps_the_journal_owns_dev_log():
    s = load("systemd", ENABLE_OPENDKIM=1, ENABLE_OPENDMARC=1)
    assert not DAEMON.enabled(s)
    assert conf(s) is None
    assert "inetutils-syslogd" not in {p for d in daemons.enabled(s) for p in d.packages}


def test_started_first_and_checked_by_its_socket():
    assert daemons.all_daemons()[0] is DAEMON
    line = next(line for line in daemons.daemons_table(load(ENABLE_OPENDKIM=1)).splitlines()
                if line.startswith("syslog\t"))
    name, pidfile, ports, sockets, argv = line.split("\t")
    assert (pidfile, ports, sockets) == ("/run/syslogd.pid", "-", "/dev/log")
    # In the foreground, no network socket, no kernel log, no MARK lines, our rules and pidfile.
    assert shlex.split(argv) == list(FOREGROUND) == [
        "/usr/sbin/syslogd", "--no-detach", "--no-klog", "--no-forward", "--mark=0",
        "--rcfile=/etc/mailwright/syslog.conf", "--pidfile=/run/syslogd.pid", "--socket=/dev/log"]
    assert not any(a in ("-r", "--inet", "-h", "--hop") for a in FOREGROUND)
