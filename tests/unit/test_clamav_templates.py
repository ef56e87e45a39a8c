"""ClamAV (ops/clamav): its descriptor, its rendered files, its size setting, and run.sh's waiting.

Pure: nothing here runs the real clamd (tests/e2e/test_clamav.py does). run.sh is run with sh
against stand-ins for clamd and freshclam, in temporary folders.
"""

from __future__ import annotations

import logging
import os
import pwd
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from hypothesis import given, strategies as st

from ops import configdir, daemons, plan, settings as S, tls as tls_mod
from ops.clamav import config
from ops.clamav.daemon import AMAVIS_SNIPPET, CLAMD_CONF, DAEMON, PIDFILE, RUN_SH, SOCKET, STATE, UNIT_FILE

FQDN = "mail.example.test"
REPO = Path(__file__).resolve().parents[2]
RUN = REPO / "ops" / "clamav" / "run.sh"
EICAR_HDB = REPO / "tests" / "data" / "eicar.hdb"


def load(**env) -> S.Settings:
    return S.load(environ={"MAILWRIGHT_INIT": "container", **{k: str(v) for k, v in env.items()}}, fqdn=FQDN)


def render(**env) -> dict[str, config.ConfigFile]:
    return {f.path: f for f in DAEMON.files(load(**env), None, None)}


def conf_values(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.strip().partition(" ")
            out.setdefault(key, []).append(value.strip())
    return out


# --- the descriptor -----------------------------------------------------------------------------------

def test_clamav_is_found_by_its_folder_and_starts_before_postfix():
    assert daemons.by_name("clamav") is DAEMON
    names = [d.name for d in daemons.all_daemons()]
    assert names.index("clamav") < names.index("postfix")
    if "amavis" in names:       # its install joins the amavis user's groups: Amavis installs first
        assert names.index("amavis") < names.index("clamav")


def test_descriptor_fields():
    assert set(DAEMON.packages) == {"clamav-daemon", "clamdscan", "clamav-freshclam"}
    assert "clamav" not in DAEMON.packages, "clamscan would become Amavis's backup scanner"
    assert DAEMON.unit == "clamav-daemon.service"
    assert DAEMON.sockets == (SOCKET,) and SOCKET == "/run/clamav/clamd.ctl"
    assert DAEMON.state == ("/var/lib/clamav",)
    assert DAEMON.reload.kind == "restart"
    assert DAEMON.foreground == ("/bin/sh", RUN_SH, "clamd")
    assert RUN_SH == "/opt/mailwright/ops/clamav/run.sh" and RUN.is_file()
    (job,) = DAEMON.jobs
    assert job.name == "freshclam" and job.every == 6 * 3600
    assert job.command == ("/bin/sh", RUN_SH, "freshclam")


def test_enabled_follows_enable_clamav_and_the_state_folder_is_kept():
    off, on = load(), load(ENABLE_CLAMAV=1)
    assert not DAEMON.enabled(off) and DAEMON.enabled(on)
    assert "/var/lib/clamav" in daemons.state_folders(on)
    assert "/var/lib/clamav" not in daemons.state_folders(off)
    assert "freshclam" in daemons.jobs_table(on) and "freshclam" not in daemons.jobs_table(off)
    row = [line for line in daemons.daemons_table(on).splitlines() if line.startswith("clamav\t")]
    assert row and row[0].split("\t")[1:4] == [PIDFILE, "-", SOCKET]


# --- the files -------------------------------------------------------------------------------------------

def test_clamd_conf_follows_the_descriptor_and_the_size_limit():
    f = render(ENABLE_CLAMAV=1, CLAMAV_MESSAGE_SIZE_LIMIT="42M")[CLAMD_CONF]
    v = conf_values(f.content)
    assert v["LocalSocket"] == [SOCKET]
    assert v["PidFile"] == [PIDFILE]
    assert v["DatabaseDirectory"] == [STATE]
    assert v["User"] == ["clamav"] and v["Foreground"] == ["true"]
    assert v["LogFile"] == ["/var/log/mail/clamav.log"]
    assert v["MaxFileSize"] == v["MaxScanSize"] == [str(42 * 1024 * 1024)]
    assert "TCPSocket" not in v, "clamd listens on its unix socket only"
    assert all(len(values) == 1 for values in v.values()), "an option given twice"
    assert f.reloads is None, "a changed clamd.conf restarts clamd"


@pytest.mark.parametrize("value, expected", [
    ("25M", 25 * 1024 ** 2), ("25m", 25 * 1024 ** 2), ("100k", 100 * 1024), ("1G", 1024 ** 3),
    ("12345", 12345), ("0", 0), ("4000M", 4000 * 1024 ** 2),
])
def test_size_limit_in_bytes(value, expected):
    assert config.size_bytes(value) == expected


def test_size_limit_above_what_clamd_holds_is_lowered_and_logged(caplog):
    with caplog.at_level(logging.WARNING, "mailwright.config"):
        assert config.size_bytes("5G") == 4000 * 1024 ** 2
    assert "CLAMAV_MESSAGE_SIZE_LIMIT=5G" in caplog.text


@given(st.from_regex(S.SIZE, fullmatch=True))
def test_every_accepted_size_setting_renders_a_size_clamd_takes(value):
    assert 0 <= config.size_bytes(value) <= 4000 * 1024 ** 2


def test_a_bad_size_setting_is_refused_by_the_settings():
    with pytest.raises(Exception, match="CLAMAV_MESSAGE_SIZE_LIMIT"):
        load(ENABLE_CLAMAV=1, CLAMAV_MESSAGE_SIZE_LIMIT="25 MB")


def test_amavis_snippet_asks_clamd_on_its_socket_with_no_backup_scanner():
    f = render(ENABLE_CLAMAV=1, ENABLE_AMAVIS=1)[AMAVIS_SNIPPET]
    assert f"\"CONTSCAN {{}}\\n\", \"{SOCKET}\"" in f.content
    assert re.search(r"^@av_scanners_backup = \(\);$", f.content, re.M)
    # Debian's Amavis leaves this off: every scanner failing then passes the mail ***UNCHECKED***.
    assert re.search(r"^\$virus_scanners_failure_is_fatal = 1;$", f.content, re.M)
    assert f.reloads == ("amavis",)
    assert f.content.rstrip().splitlines()[-1].startswith("1;")


@pytest.mark.skipif(shutil.which("perl") is None, reason="no perl")
def test_amavis_snippet_is_valid_perl(tmp_path):
    f = render(ENABLE_CLAMAV=1, ENABLE_AMAVIS=1)[AMAVIS_SNIPPET]
    # Amavis evaluates it inside its own package, where ask_daemon exists; stand in for it.
    script = tmp_path / "snippet.pl"
    script.write_text("our (@av_scanners, @av_scanners_backup, $virus_scanners_failure_is_fatal); sub ask_daemon {}\n"
                      + f.content + "\nprint join(' ', scalar(@av_scanners), scalar(@av_scanners_backup), "
                      "$av_scanners[0][0], $virus_scanners_failure_is_fatal), \"\\n\";\n")
    out = subprocess.run(["perl", str(script)], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["1", "0", "ClamAV-clamd", "1"]


def test_no_amavis_no_snippet():
    assert render(ENABLE_CLAMAV=1, ENABLE_AMAVIS=0)[AMAVIS_SNIPPET].content is None


def test_systemd_unit_only_under_systemd_and_it_runs_run_sh():
    assert render(ENABLE_CLAMAV=1)[UNIT_FILE].content is None
    f = {x.path: x for x in DAEMON.files(S.load(environ={"MAILWRIGHT_INIT": "systemd", "ENABLE_CLAMAV": "1"},
                                                fqdn=FQDN), None, None)}[UNIT_FILE]
    v = conf_values("\n".join(line.replace("=", " ", 1) for line in f.content.splitlines()))
    assert v["ExecStart"] == [f"/bin/sh {RUN_SH} clamd"]
    assert "ExecReload" not in v, "without ExecReload, reload-or-restart restarts clamd on its new clamd.conf"
    assert "Requires" not in v and "ConditionPathExistsGlob" not in v
    assert "systemctl daemon-reload" in f.after


def test_off_means_gone_through_the_plan(tmp_path):
    (tmp_path / "config").mkdir()
    cfg = configdir.read(tmp_path / "config")
    tls = tls_mod.resolve(load(), str(tmp_path / "config"))
    off = [f for f in plan.daemon_files(load(ENABLE_CLAMAV=0), cfg, tls) if f.daemon == "clamav"]
    assert {f.path for f in off} >= {CLAMD_CONF, AMAVIS_SNIPPET, UNIT_FILE}
    assert all(f.content is None for f in off)
    on = {f.path: f for f in plan.daemon_files(load(ENABLE_CLAMAV=1), cfg, tls) if f.daemon == "clamav"}
    assert on[CLAMD_CONF].content and on[AMAVIS_SNIPPET].content


def test_the_eicar_test_signature_is_an_md5_signature_of_the_eicar_string():
    import hashlib
    eicar = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
    md5, size, name = EICAR_HDB.read_text().strip().split(":")
    assert (md5, int(size)) == (hashlib.md5(eicar).hexdigest(), len(eicar)) and name


# --- run.sh, against stand-ins ------------------------------------------------------------------------------

@pytest.fixture
def box(tmp_path):
    """Folders and stand-ins: a `clamd` that records its start and waits for TERM, a `freshclam` that fails."""
    root = tmp_path
    for d in ("db", "run", "log"):
        (root / d).mkdir()
    clamd = root / "clamd"
    clamd.write_text("#!/bin/sh\necho $$ >>\"$MW_TEST_STARTS\"\ntrap 'exit 0' TERM\n"
                     "while :; do sleep 0.05; done\n")
    freshclam = root / "freshclam"
    freshclam.write_text("#!/bin/sh\necho \"$@\" >\"$MW_TEST_ARGS\"\nexit 11\n")
    for f in (clamd, freshclam):
        f.chmod(0o755)
    env = dict(os.environ, MW_CLAMAV_DB=str(root / "db"), MW_CLAMAV_RUNDIR=str(root / "run"),
               MW_CLAMAV_LOGDIR=str(root / "log"), MW_CLAMAV_CLAMD=str(clamd), MW_CLAMAV_FRESHCLAM=str(freshclam),
               MW_CLAMAV_USER=pwd.getpwuid(os.getuid()).pw_name, MW_CLAMD_RECHECK="0.1",
               MW_TEST_STARTS=str(root / "starts"), MW_TEST_ARGS=str(root / "args"))
    return root, env


def wait_for(predicate, what, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {timeout}s")


def starts(root) -> list[str]:
    p = root / "starts"
    return p.read_text().split() if p.exists() else []


def test_run_sh_waits_for_signatures_saying_so_once_then_starts_clamd(box):
    root, env = box
    proc = subprocess.Popen(["sh", str(RUN), "clamd"], env=env, stderr=subprocess.PIPE, text=True)
    try:
        maillog = root / "log" / "mail.log"
        wait_for(maillog.exists, "the no-signature line in mail.log")
        # A file clamd does not load signatures from does not count.
        (root / "db" / "freshclam.dat").write_text("x")
        time.sleep(0.5)                      # several re-checks: still waiting, still one line
        assert starts(root) == [] and proc.poll() is None
        # It tried freshclam at once rather than waiting for the 6-hourly job (once: retried every 30 min).
        wait_for((root / "args").exists, "a freshclam attempt while waiting")
        assert (root / "log" / "mail.log").read_text().count("freshclam could not update") == 1
        lines = [x for x in maillog.read_text().splitlines() if "freshclam could not update" not in x]
        assert len(lines) == 1 and "no virus signatures in" in lines[0] and "deferred" in lines[0], lines
        shutil.copy(EICAR_HDB, root / "db" / "eicar.hdb")
        wait_for(lambda: len(starts(root)) == 1, "clamd started once a signature file is there")
        assert "starting clamd" in maillog.read_text()
        # A restart-style reload TERMs clamd itself: started again at once.
        os.kill(int(starts(root)[0]), signal.SIGTERM)
        wait_for(lambda: len(starts(root)) == 2, "clamd started again after its TERM")
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(20)
    assert rc == 0
    for pid in starts(root):                 # TERM to run.sh stopped clamd too
        with pytest.raises(ProcessLookupError):
            os.kill(int(pid), 0)


def test_run_sh_freshclam_failure_is_logged_and_keeps_the_signatures(box):
    root, env = box
    shutil.copy(EICAR_HDB, root / "db" / "eicar.hdb")
    r = subprocess.run(["sh", str(RUN), "freshclam"], env=env, capture_output=True, text=True)
    assert r.returncode == 11
    assert (root / "db" / "eicar.hdb").read_text() == EICAR_HDB.read_text()
    line = (root / "log" / "mail.log").read_text()
    assert "freshclam could not update the virus signatures (status 11" in line and "are kept" in line
    args = (root / "args").read_text().split()
    assert f"--datadir={root / 'db'}" in args and "--daemon-notify=/etc/clamav/clamd.conf" in args


def test_the_bench_profile_brings_the_test_signature(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO))
    from bench.profiles import PROFILES
    p = PROFILES["clamav"]
    assert p.env["ENABLE_CLAMAV"] == p.env["ENABLE_AMAVIS"] == p.env["ENABLE_SPAMASSASSIN"] == "1"
    assert p.files == {"/var/lib/clamav/mwtest-eicar.hdb": EICAR_HDB.read_bytes()}
    assert Path(next(iter(p.files))).parent == Path(STATE)
