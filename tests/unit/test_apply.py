"""mailwright.apply: make a list of ConfigFiles true, touching only what differs.

Runs in a temp dir with the current user and group as owner, so it works
unprivileged too; the ownership-drift test needs root and skips otherwise.
"""

from __future__ import annotations

import grp
import os
import pwd
import signal
import subprocess
import time
from pathlib import Path

import pytest

from mailwright import apply, atomic
from ops.render import ConfigFile

USER = pwd.getpwuid(os.getuid()).pw_name
GROUP = grp.getgrgid(os.getgid()).gr_name


def cf(path, content, mode=0o644, **kw) -> ConfigFile:
    return ConfigFile(str(path), content, mode=mode, owner=USER, group=GROUP, **kw)


def leftovers(directory):
    """Temp files of an interrupted or sloppy write (`.name.XXXX`)."""
    return [p.name for p in directory.iterdir() if p.name.startswith(".")]


def test_creates_file_with_content_mode_owner_and_parents(tmp_path):
    target = tmp_path / "etc" / "postfix" / "main.cf"
    changed = apply.apply([cf(target, "a = b\n", mode=0o640)])
    assert [f.path for f in changed] == [str(target)]
    st = target.stat()
    assert target.read_text() == "a = b\n"
    assert (st.st_mode & 0o7777, st.st_uid, st.st_gid) == (0o640, os.getuid(), os.getgid())
    assert (tmp_path / "etc" / "postfix").stat().st_mode & 0o777 == 0o755
    assert leftovers(target.parent) == []


def test_second_apply_changes_nothing(tmp_path):
    files = [cf(tmp_path / "a", "one\n"), cf(tmp_path / "b", "two\n", mode=0o600), cf(tmp_path / "gone", None)]
    assert len(apply.apply(files)) == 2
    before = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in tmp_path.iterdir()}
    assert apply.apply(files) == []
    after = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in tmp_path.iterdir()}
    assert before == after                                   # not even rewritten with the same bytes


def test_content_change_is_detected_and_written(tmp_path):
    target = tmp_path / "f"
    apply.apply([cf(target, "old\n")])
    assert [f.content for f in apply.apply([cf(target, "new\n")])] == ["new\n"]
    assert target.read_text() == "new\n"


def test_mode_change_is_detected_and_fixed(tmp_path):
    target = tmp_path / "userdb"
    f = cf(target, "x\n", mode=0o640)
    apply.apply([f])
    target.chmod(0o644)                                      # someone loosened it by hand
    assert apply.differs(f)
    assert apply.apply([f]) == [f]
    assert target.stat().st_mode & 0o7777 == 0o640
    assert target.read_text() == "x\n"


@pytest.mark.skipif(os.geteuid() != 0, reason="changing a file's owner needs root")
def test_owner_change_is_detected_and_fixed(tmp_path):
    target = tmp_path / "f"
    f = cf(target, "x\n")
    apply.apply([f])
    os.chown(target, 65534, 65534)
    assert apply.apply([f]) == [f]
    assert (target.stat().st_uid, target.stat().st_gid) == (os.getuid(), os.getgid())


def test_none_content_removes_the_file(tmp_path):
    target = tmp_path / "sender_login"
    target.write_text("stale\n")
    f = cf(target, None)
    assert apply.apply([f]) == [f]
    assert not target.exists()
    assert apply.apply([f]) == []                            # absent already: no change reported


def test_check_mode_changes_nothing(tmp_path):
    existing = tmp_path / "old"
    existing.write_text("keep\n")
    files = [cf(tmp_path / "new", "x\n"), cf(existing, None)]
    assert [f.path for f in apply.apply(files, check=True)] == [str(tmp_path / "new"), str(existing)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old"]


def test_write_is_atomic_rename(tmp_path):
    # A reader that opened the old file keeps reading the old, complete content: the new one is renamed in.
    target = tmp_path / "main.cf"
    apply.apply([cf(target, "old " * 1000)])
    with open(target) as reader:
        apply.apply([cf(target, "new\n")])
        assert reader.read() == "old " * 1000
    assert target.read_text() == "new\n"
    assert leftovers(tmp_path) == []


def test_failed_write_leaves_old_file_and_no_temp_file(tmp_path, monkeypatch):
    target = tmp_path / "main.cf"
    apply.apply([cf(target, "good\n")])

    def disk_full(fd):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(apply.ApplyError, match="No space left on device"):
        apply.apply([cf(target, "half-written\n")])
    assert target.read_text() == "good\n"
    assert leftovers(tmp_path) == []


def test_after_commands_run_only_when_the_file_changed(tmp_path):
    marker = tmp_path / "compiled"
    f = cf(tmp_path / "before.sieve", "keep;\n", after=(f"echo compiled >> {marker}",))
    apply.apply([f])
    assert marker.read_text() == "compiled\n"
    apply.apply([f])
    assert marker.read_text() == "compiled\n"                # unchanged file: not compiled again


def test_failing_after_command_raises_naming_file_and_command(tmp_path):
    with pytest.raises(apply.ApplyError, match=r"x\.sieve: `false` failed \(exit status 1\)"):
        apply.apply([cf(tmp_path / "x.sieve", "bad\n", after=("false",))])


def test_symlink_is_replaced_by_a_real_file(tmp_path):
    # A link planted at a generated path must not redirect the write elsewhere.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text("victim\n")
    target = tmp_path / "main.cf"
    target.symlink_to(elsewhere)
    apply.apply([cf(target, "mine\n")])
    assert not target.is_symlink() and target.read_text() == "mine\n"
    assert elsewhere.read_text() == "victim\n"


def test_only_differing_files_are_returned(tmp_path):
    a, b = cf(tmp_path / "a", "1\n"), cf(tmp_path / "b", "2\n")
    apply.apply([a, b])
    b2 = cf(tmp_path / "b", "3\n")
    assert apply.apply([a, b2]) == [b2]


# --- one failing file does not lose the others' reloads (issue 7.4) -------------------------------

@pytest.fixture
def mixed(tmp_path, monkeypatch):
    """main.cf before a sieve script that does not compile, before dovecot.conf in a read-only directory."""
    ro = tmp_path / "ro"
    ro.mkdir()
    files = [
        cf(tmp_path / "main.cf", "smtpd_banner = new\n", reloads=("postfix",)),
        cf(tmp_path / "before.sieve", "bad;\n", after=("echo 'line 1: error: unknown command' >&2; exit 1",)),
        cf(ro / "dovecot.conf", "x\n", reloads=("dovecot",)),
        cf(tmp_path / "local.conf", "y\n", reloads=("dovecot",)),
    ]
    real_mkstemp = atomic.tempfile.mkstemp

    def mkstemp(dir, **kw):        # a read-only directory, even for root (who ignores the mode bits)
        if Path(dir) == ro:
            raise PermissionError(13, "Permission denied")
        return real_mkstemp(dir=dir, **kw)
    monkeypatch.setattr(atomic.tempfile, "mkstemp", mkstemp)
    return tmp_path, files


def test_failures_are_reported_and_the_rest_is_written_and_reloaded(mixed):
    tmp_path, files = mixed
    out = apply.converge(files)
    assert [f.path for f in out.written] == [files[0].path, files[3].path]
    assert out.reloads == {"postfix", "dovecot"}                 # the daemons of what was written
    reasons = dict((f.path, why) for f, why in out.failed)
    assert reasons[files[1].path] == (f"{files[1].path}: `{files[1].after[0]}` failed (exit status 1): "
                                      "line 1: error: unknown command")
    assert reasons[files[2].path] == f"{files[2].path}: cannot write: Permission denied"
    assert (tmp_path / "main.cf").read_text() == "smtpd_banner = new\n"
    assert not (tmp_path / "before.sieve").exists()              # differs again: retried at the next run
    again = apply.converge(files, check=True)
    assert [f.path for f in again.changed] == [files[1].path, files[2].path]


def test_after_failure_still_reloads_files_written_before_and_after(tmp_path):
    files = [cf(tmp_path / "main.cf", "a\n", reloads=("postfix",)),
             cf(tmp_path / "before.sieve", "bad;\n", after=("false",)),
             cf(tmp_path / "dovecot.conf", "b\n", reloads=("dovecot",))]
    out = apply.converge(files)
    assert out.reloads == {"postfix", "dovecot"}
    assert [f.path for f, _ in out.failed] == [files[1].path]


# --- the configure stage: reports, exit status, reloads (pending ones survive to the next run) ------

@pytest.fixture
def stage(tmp_path, monkeypatch):
    """mailwright.configure with these files as the plan, recording reloads instead of running them."""
    from mailwright import configure
    from ops.settings import load

    settings = load(environ={"MAILWRIGHT_INIT": "systemd", "OVERRIDE_HOSTNAME": "mail.example.test"})
    monkeypatch.setattr(configure, "read_dms_settings", lambda: settings)
    monkeypatch.setattr(configure, "PENDING", tmp_path / "run" / "pending-reloads", raising=False)
    state = {"files": [], "reloaded": [], "broken": set()}
    monkeypatch.setattr(configure.plan, "files", lambda s: state["files"])

    def reload(init, daemon):
        if daemon in state["broken"]:
            raise subprocess.CalledProcessError(1, ["systemctl", "reload-or-restart", daemon],
                                                          stderr="Job failed.\n")
        state["reloaded"].append(daemon)
    monkeypatch.setattr(configure.services, "reload", reload)
    state["run"] = lambda *flags: configure.main(["--reload", *flags])
    state["pending"] = tmp_path / "run" / "pending-reloads"
    return state


def test_configure_reloads_what_was_written_and_names_the_failing_file(stage, tmp_path, capsys):
    sieve = tmp_path / "before.sieve"
    stage["files"] = [cf(tmp_path / "main.cf", "smtpd_banner = new\n", reloads=("postfix",)),
                      cf(sieve, "bad;\n", after=(f"sievec {sieve} 2>/dev/null || exit 1",)),
                      cf(tmp_path / "dovecot.conf", "x\n", reloads=("dovecot",))]
    assert stage["run"]() == 1
    assert stage["reloaded"] == ["dovecot", "postfix"]
    out, err = capsys.readouterr()
    assert f"changed {tmp_path / 'main.cf'}" in out.splitlines()
    assert err.splitlines() == [f"ERROR mailwright: {sieve}: `sievec {sieve} 2>/dev/null || exit 1` failed (exit status 1)"]
    # The next poll retries the failing file alone; main.cf no longer differs and is not reloaded again.
    stage["reloaded"].clear()
    stage["files"][1] = cf(sieve, "keep;\n")
    assert stage["run"]() == 0
    assert stage["reloaded"] == [] and sieve.read_text() == "keep;\n"


def test_a_failed_reload_is_pending_until_it_succeeds(stage, tmp_path, capsys):
    stage["files"] = [cf(tmp_path / "main.cf", "a\n", reloads=("postfix",))]
    stage["broken"] = {"postfix"}
    assert stage["run"]() == 1
    assert "reloading postfix: `systemctl reload-or-restart postfix` failed (exit status 1): Job failed." \
        in capsys.readouterr().err
    assert stage["pending"].read_text() == "postfix\n"
    assert stage["run"]() == 1                                    # nothing differs now, still pending
    assert stage["run"]("--only", "dovecot") == 0                 # another part's run leaves it pending
    assert stage["pending"].read_text() == "postfix\n"
    stage["broken"] = set()
    assert stage["run"]() == 0
    assert stage["reloaded"] == ["postfix"]
    assert not stage["pending"].exists()                          # the supervisor stops retrying


def test_check_mode_reports_a_pending_reload(stage, capsys):
    stage["pending"].parent.mkdir()
    stage["pending"].write_text("dovecot\n")
    from mailwright import configure
    assert configure.main(["--check"]) == 0
    assert capsys.readouterr().out.splitlines() == ["pending reload dovecot"]
    assert configure.main(["--check", "--only", "postfix"]) == 0
    assert capsys.readouterr().out == ""


# --- the supervisor's change detection (mailwright/lib.sh `fingerprint`) -------------------------

REPO = Path(__file__).resolve().parents[2]
LIB = REPO / "mailwright" / "lib.sh"


def fingerprint(watch_list, config_dir) -> str:
    """The supervisor's fingerprint, run by dash as in the image (/bin/sh)."""
    return subprocess.run(["/bin/sh", "-c", '. "$0"; fingerprint "$1" "$2"', LIB, watch_list, config_dir],
                          check=True, capture_output=True, text=True).stdout


@pytest.mark.parametrize("name", ["my certs/cert.pem", "a  b/c d.pem", "plain/cert.pem"])
def test_fingerprint_sees_a_change_under_a_path_with_spaces(tmp_path, name):
    config = tmp_path / "config dir"
    config.mkdir()
    cert = tmp_path / name
    cert.parent.mkdir()
    cert.write_text("old certificate\n")
    watch = tmp_path / "watch"
    watch.write_text(f"{config / 'postfix-main.cf'}\n{cert}\n")
    before = fingerprint(watch, config)
    cert.write_text("renewed certificate, longer\n")                # an edit in place
    assert fingerprint(watch, config) != before
    before = fingerprint(watch, config)
    (config / "postfix-main.cf").write_text("a = b\n")             # a new file in a spaced config folder
    assert fingerprint(watch, config) != before


def test_fingerprint_is_stable_and_tolerates_a_missing_watch_list(tmp_path):
    (tmp_path / "f").write_text("x\n")
    watch = tmp_path / "watch"
    watch.write_text(f"{tmp_path / 'f'}\n{tmp_path / 'absent'}\n")
    assert fingerprint(watch, tmp_path) == fingerprint(watch, tmp_path)
    assert fingerprint(tmp_path / "no-list", tmp_path).strip()     # still the folder's sum, no error


def test_supervisor_does_not_lock_through_a_symlinked_lock_file(tmp_path):
    """As root, `exec 9>>LOCK` would create or append to whatever the link points at."""
    config = tmp_path / "config"
    config.mkdir()
    target = tmp_path / "precious"
    target.write_bytes(b"keep me\n")
    (config / "check-for-changes.sh.lock").symlink_to(target)
    from mailwright.configwrite import LOCK_NAME
    env = dict(os.environ, MW_MODE="watch", MW_POLL="1", MW_LOCK=str(config / LOCK_NAME),
               MW_WATCH_LIST=str(tmp_path / "watch"), MW_PENDING=str(tmp_path / "pending"),
               MW_DAEMONS_FILE=str(tmp_path / "daemons"), MW_JOBS_FILE=str(tmp_path / "jobs"),
               MW_CONFIG_DIR=str(config), MW_FQDN="mail.example.test")
    # SIGHUP at its default even when the test run ignores it (nohup): a shell cannot trap a signal
    # ignored at its start.
    proc = subprocess.Popen(["/bin/sh", str(REPO / "mailwright" / "supervise.sh")], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_DFL))
    try:
        time.sleep(0.5)
        proc.send_signal(signal.SIGHUP)          # "reconfigure now"
        time.sleep(1.5)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert "is a symbolic link" in out
    assert target.read_bytes() == b"keep me\n"
    assert (config / "check-for-changes.sh.lock").is_symlink()
