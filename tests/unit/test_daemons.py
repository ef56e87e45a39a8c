"""The tables derived from the daemon descriptors (ops/<name>/daemon.py).

A fake extra daemon injected into `ops.daemons` must show up everywhere a daemon
matters: the supervisor's and health check's table, the job table and timers,
the watch unit, the plan (its files tagged, reloading it, removed when it is
off), the reload table, the state folders, the secrets, and Postfix's hooks.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mailwright import services
from ops import configdir, daemons, plan, settings as S
from ops.daemon import Daemon, Job, PostfixHooks, Reload
from ops.render import ConfigFile

REPO = Path(__file__).resolve().parents[2]
FQDN = "mail.example.test"


def fake_files(s, cfg, tls):
    return [ConfigFile("/etc/fake/fake.conf", f"level {s.LOG_LEVEL}\n"),
            ConfigFile("/etc/fake/table", "x\n", reloads=())]


FAKE = Daemon(
    name="fake-filter", packages=("fake-pkg",), enabled=lambda s: s.ENABLE_POSTGREY,
    foreground=("/usr/sbin/fake", "--config", "/etc/fake/a b.conf"), unit="fake.service",
    pidfile="/run/fake/fake.pid", reload=Reload("signal", signal="HUP"), ports=lambda s: (10023,),
    sockets=("/run/fake/sock",), state=("/var/lib/fake",), secrets=("/etc/fake/secret.key",),
    jobs=(Job("fake-refresh", 600, ("/usr/bin/fake-refresh", "--quiet")),), files=fake_files,
    postfix=lambda s, cfg: PostfixHooks(recipient_restrictions=((50, "check_policy_service inet:127.0.0.1:10023"),),
                                        smtpd_milters=((10, "inet:127.0.0.1:8891"),)),
    order=30,
)


@pytest.fixture
def with_fake(monkeypatch):
    # The two core daemons and the fake only: the fake borrows ENABLE_POSTGREY and port 10023,
    # and other real daemons would only add rows these tests do not look at.
    real = tuple(d for d in daemons.all_daemons() if d.name in ("dovecot", "postfix"))
    monkeypatch.setattr(daemons, "all_daemons", lambda: tuple(sorted(real + (FAKE,), key=lambda d: (d.order, d.name))))


def load(tmp_path, **env):
    folder = tmp_path / "config"
    folder.mkdir(exist_ok=True)
    s = S.load(host_data={"MAILWRIGHT_INIT": env.pop("INIT", "systemd"), "MAILWRIGHT_CONFIG_DIR": str(folder)},
               environ={k: str(v) for k, v in env.items()}, fqdn=FQDN)
    return s, {f.path: f for f in plan.files(s, configdir.read(folder))}


def rows(text):
    return [line.split("\t") for line in text.splitlines()]


def test_discovery_finds_the_folders_descriptors():
    names = [d.name for d in daemons.all_daemons()]
    assert {"postfix", "dovecot"} <= set(names)
    assert names.index("dovecot") < names.index("postfix")      # start order: Postfix last


def test_real_daemons_table(tmp_path):
    # The core: Amavis and the mail-authentication milters are on by default (docker-mailserver's defaults).
    _, files = load(tmp_path, ENABLE_OPENDKIM=0, ENABLE_OPENDMARC=0, ENABLE_AMAVIS=0)
    assert rows(files[daemons.DAEMONS_FILE].content) == [
        ["dovecot", "/run/dovecot/master.pid", "143", "-", "/usr/sbin/dovecot -F"],
        ["postfix", "/var/spool/postfix/pid/master.pid", "25", "-", "/usr/lib/postfix/sbin/master -d"],
    ]
    _, files = load(tmp_path, ENABLE_OPENDKIM=0, ENABLE_OPENDMARC=0)
    assert [r[0] for r in rows(files[daemons.DAEMONS_FILE].content)] == ["dovecot", "amavis", "postfix"]
    _, files = load(tmp_path, SMTP_ONLY=1, ENABLE_OPENDKIM=0, ENABLE_OPENDMARC=0, ENABLE_AMAVIS=0)
    assert [r[0] for r in rows(files[daemons.DAEMONS_FILE].content)] == ["postfix"]


def test_fake_daemon_shows_up_in_every_table(tmp_path, with_fake):
    s, files = load(tmp_path, ENABLE_POSTGREY=1)
    table = rows(files[daemons.DAEMONS_FILE].content)
    assert [r[0] for r in table] == ["dovecot", "fake-filter", "postfix"]
    name, pidfile, ports, sockets, argv = table[1]
    assert (pidfile, ports, sockets) == ("/run/fake/fake.pid", "10023", "/run/fake/sock")
    assert shlex.split(argv) == list(FAKE.foreground)          # the spaced argument survives
    assert ["fake-refresh", "600", "/usr/bin/fake-refresh --quiet"] in rows(files[daemons.JOBS_FILE].content)
    assert "After=dovecot.service fake.service postfix.service" in \
        files["/etc/systemd/system/mailwright-watch.service"].content
    assert "ExecStart=/usr/bin/fake-refresh --quiet" in files["/etc/systemd/system/mailwright-job-fake-refresh.service"].content
    assert "OnUnitActiveSec=600s" in files["/etc/systemd/system/mailwright-job-fake-refresh.timer"].content
    # Its files: tagged with it, reloading it unless they say otherwise.
    conf, table_file = files["/etc/fake/fake.conf"], files["/etc/fake/table"]
    assert (conf.daemon, conf.reloads, table_file.reloads) == ("fake-filter", ("fake-filter",), ())
    assert "/var/lib/fake" in daemons.state_folders(s)
    assert "/etc/fake/secret.key" in daemons.secrets()
    # Postfix: its policy service before Dovecot's quota check, its milter in main.cf.
    main = files["/etc/postfix/main.cf"].content
    assert main.index("inet:127.0.0.1:10023") < main.index("inet:127.0.0.1:65265")
    assert "\nsmtpd_milters = inet:127.0.0.1:8891\n" in main


def test_disabled_fake_daemon_leaves_nothing(tmp_path, with_fake):
    s, files = load(tmp_path)                     # ENABLE_POSTGREY=0: off
    assert "fake-filter" not in files[daemons.DAEMONS_FILE].content
    assert files["/etc/fake/fake.conf"].content is None and files["/etc/fake/table"].content is None
    assert files["/etc/systemd/system/mailwright-job-fake-refresh.timer"].content is None
    assert "fake.service" not in files["/etc/systemd/system/mailwright-watch.service"].content
    assert "10023" not in files["/etc/postfix/main.cf"].content
    assert "/var/lib/fake" not in daemons.state_folders(s)


def test_reload_follows_the_descriptor(tmp_path, with_fake, monkeypatch):
    calls = []
    monkeypatch.setattr(services.subprocess, "run", lambda argv, **kw: calls.append(argv))
    services.reload("systemd", "fake-filter")
    assert calls == [["systemctl", "reload-or-restart", "fake.service"]]
    pidfile = tmp_path / "fake.pid"
    # SIGHUP at its default even when the test run ignores it (nohup): SIG_IGN is inherited.
    child = subprocess.Popen(["sleep", "30"], preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_DFL))
    try:
        pidfile.write_text(f"{child.pid}\n")
        monkeypatch.setattr(daemons, "all_daemons", lambda: (Daemon(**{**FAKE.__dict__, "pidfile": str(pidfile)}),))
        services.reload("container", "fake-filter")            # Reload("signal", "HUP"): HUP kills sleep
        assert child.wait(timeout=10) == -signal.SIGHUP
    finally:
        child.kill()


def test_duplicate_main_parameter_names_both_daemons(tmp_path, monkeypatch):
    real = daemons.all_daemons()
    a = Daemon(**{**FAKE.__dict__, "name": "a", "enabled": lambda s: True, "jobs": (),
                  "postfix": lambda s, c: PostfixHooks(main=(("x_param", "1"),))})
    b = Daemon(**{**a.__dict__, "name": "b"})
    monkeypatch.setattr(daemons, "all_daemons", lambda: real + (a, b))
    with pytest.raises(ValueError, match="x_param is set by both a and b"):
        load(tmp_path)


def test_only_part_selects_by_tag(tmp_path, with_fake):
    from mailwright import configure
    assert "fake-filter" in configure.parts()


# --- the shell side: health.sh and supervise.sh read the tables ----------------------------------------

def test_health_sh_default_table_is_the_python_constant():
    assert f"${{MW_DAEMONS_FILE:-{daemons.DAEMONS_FILE}}}" in (REPO / "mailwright/health.sh").read_text()


def health(tmp_path, table: str):
    (tmp_path / "daemons").write_text(table)
    return subprocess.run(["/bin/sh", str(REPO / "mailwright/health.sh")], capture_output=True, text=True,
                          env=dict(os.environ, MW_DAEMONS_FILE=str(tmp_path / "daemons")))


def test_health_reads_the_table(tmp_path):
    alive = tmp_path / "alive.pid"
    alive.write_text(f"{os.getpid()}\n")
    assert health(tmp_path, f"me\t{alive}\t-\t-\t/bin/true\n").returncode == 0
    r = health(tmp_path, f"me\t{alive}\t-\t-\t/bin/true\nghost\t{tmp_path}/none.pid\t-\t-\t/bin/true\n")
    assert (r.returncode, r.stdout.strip()) == (1, "ghost is not running")
    r = health(tmp_path, f"me\t{alive}\t-\t{tmp_path}/no.sock\t/bin/true\n")
    assert r.returncode == 1 and "no socket" in r.stdout
    assert health(tmp_path, "").returncode == 1                 # not configured: unhealthy


def wait_for(predicate, what, timeout=30):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_supervisor_follows_the_tables(tmp_path):
    """adopt mode: starts the listed daemons, stops a removed one, starts an added one, runs jobs
    on schedule and never two runs of one job at once."""
    from mailwright import init
    config = tmp_path / "config"
    config.mkdir()
    marks = tmp_path / "marks"
    marks.mkdir()

    def daemon_line(name):
        argv = shlex.join(["/bin/sh", "-c", f"echo $$ > '{marks}/{name} pid'; exec sleep 300"])
        return f"{name}\t{marks}/{name}.pid\t-\t-\t{argv}\n"

    job = shlex.join(["/bin/sh", "-c", f"mkdir '{marks}/lock' || echo overlap >> '{marks}/job'; "
                                       f"sleep 2; rmdir '{marks}/lock'; echo run >> '{marks}/job'"])
    (tmp_path / "daemons").write_text(daemon_line("one") + daemon_line("two-x"))
    (tmp_path / "jobs").write_text(f"slow-job\t1\t{job}\n")
    s = S.load(host_data={"MAILWRIGHT_INIT": "container", "MAILWRIGHT_CONFIG_DIR": str(config),
                          "DMS_CONFIG_POLL": "1"}, fqdn=FQDN)
    env = dict(os.environ, **init.supervisor_env("adopt", s))
    env.update(MW_DAEMONS_FILE=str(tmp_path / "daemons"), MW_JOBS_FILE=str(tmp_path / "jobs"),
               MW_WATCH_LIST=str(tmp_path / "watch"), MW_PENDING=str(tmp_path / "pending"))
    log = (tmp_path / "log").open("w")
    proc = subprocess.Popen(["/bin/sh", str(REPO / "mailwright/supervise.sh")], env=env, stdout=log, stderr=log)

    def pid(name):
        p = marks / f"{name} pid"
        return int(p.read_text()) if p.exists() and p.read_text().strip() else None

    def running(name):                          # a zombie (exited, not yet reaped) is not running
        try:
            return Path(f"/proc/{pid(name)}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except (TypeError, OSError):
            return False
    try:
        wait_for(lambda: running("one") and running("two-x"), "both daemons started")
        first_two = pid("two-x")
        (tmp_path / "daemons").write_text(daemon_line("two-x") + daemon_line("three"))
        wait_for(lambda: running("three"), "the added daemon started")
        wait_for(lambda: not running("one"), "the removed daemon stopped")
        assert pid("two-x") == first_two                        # the unchanged one kept running
        wait_for(lambda: (marks / "job").exists() and (marks / "job").read_text().count("run") >= 2, "two job runs")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()
    out = (tmp_path / "log").read_text()
    assert "overlap" not in (marks / "job").read_text()
    assert "job slow-job: the previous run still runs; this run skipped" in out
    assert "job slow-job done" in out
    assert "stopping one: no longer enabled" in out and "starting three: now enabled" in out
    assert not running("two-x") and not running("three")       # SIGTERM stops them all


def test_systemd_restarts_a_signal_reloaded_daemon_not_listening_on_its_ports(tmp_path, with_fake, monkeypatch):
    """Debian's package starts OpenDKIM/OpenDMARC on its own file (a local socket): USR1 re-reads
    mailwright's file but keeps that socket, so under systemd a daemon whose signal reload cannot
    reach its ports is restarted; listening there, it is reloaded."""
    calls = []
    monkeypatch.setattr(services.subprocess, "run", lambda argv, **kw: calls.append(argv))
    monkeypatch.setattr(services, "listening", lambda port: port == 65265)
    services.reload("systemd", "fake-filter", (65265,))
    services.reload("systemd", "fake-filter", (65266,))
    assert calls == [["systemctl", "reload-or-restart", "fake.service"], ["systemctl", "restart", "fake.service"]]


def test_listening_reads_proc_net(tmp_path):
    header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
    (tmp_path / "tcp").write_text(header
                                  + "   0: 0100007F:22C3 00000000:0000 0A 00000000:00000000 00:00000000 00000000   0 0 1\n"
                                  + "   1: 0100007F:22C5 0100007F:D431 01 00000000:00000000 00:00000000 00000000   0 0 2\n")
    (tmp_path / "tcp6").write_text(header)
    assert services.listening(8899, tmp_path)             # 0x22C3, state 0A (LISTEN)
    assert not services.listening(8901, tmp_path)         # 0x22C5: an established connection only
    assert not services.listening(8891, tmp_path)
