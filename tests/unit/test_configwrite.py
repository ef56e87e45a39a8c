"""mailwright.configwrite: the lock, atomic rewrites and docker-mailserver's DB rules."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from mailwright import atomic, configwrite as cw

REPO = Path(__file__).resolve().parents[2]


def test_rewrite_keeps_comments_and_blank_lines_converts_crlf_adds_final_newline(tmp_path):
    f = tmp_path / "postfix-virtual.cf"
    f.write_bytes(b"# aliases\r\nA@x.com b@x.com\r\n\r\nc@x.com d@x.com")
    assert cw.rewrite(f, lambda lines: cw.append_value(lines, "a@x.com", "e@x.com"))
    assert f.read_bytes() == b"# aliases\nA@x.com b@x.com,e@x.com\n\nc@x.com d@x.com\n"


def test_rewrite_keeps_mode_and_reports_no_change(tmp_path):
    f = tmp_path / "postfix-relaymap.cf"
    f.write_text("@x.com [h]:25\n")
    f.chmod(0o640)
    assert not cw.rewrite(f, lambda lines: lines)
    assert cw.rewrite(f, lambda lines: [*lines, "@y.com [h]:25"])
    assert f.stat().st_mode & 0o777 == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["postfix-relaymap.cf"]     # no temp file left


def test_rewrite_new_file_gets_requested_mode(tmp_path):
    f = tmp_path / "secret.cf"
    cw.rewrite(f, lambda lines: ["x"], mode=0o600)
    assert f.read_text() == "x\n" and f.stat().st_mode & 0o777 == 0o600


def test_rewrite_transform_error_leaves_file_untouched(tmp_path):
    f = tmp_path / "a.cf"
    f.write_bytes(b"keep\r\nme")

    def boom(lines):
        raise ValueError("no")
    with pytest.raises(ValueError):
        cw.rewrite(f, boom)
    assert f.read_bytes() == b"keep\r\nme" and len(list(tmp_path.iterdir())) == 1


def test_keys_match_case_insensitively_at_line_start_with_their_delimiter():
    lines = ["# user@x.com|commented", "User@X.com|{SHA512-CRYPT}h", "user@x.com.au|{SHA512-CRYPT}h2"]
    assert cw.find(lines, "user@x.com", "|") == 1
    assert cw.find(lines, "ser@x.com", "|") is None
    assert cw.replace_entry(lines, "user@x.com", "|", "user@x.com|new") == [lines[0], "user@x.com|new", lines[2]]
    assert cw.remove_entry(lines, "user@x.com", "|") == [lines[0], lines[2]]
    relay = ["@x.com [h]:25", "@x.com.au [h]:25", "@y.com"]
    assert cw.find(relay, "@y.com", " ") == 2 and cw.find(relay, "@x.com", " ") == 0


def test_remove_value_drops_emptied_lines():
    lines = ["a@x.com t@x.com", "b@x.com u@x.com,t@x.com,v@x.com", "# t@x.com"]
    assert cw.remove_value(lines, None, "T@x.com") == ["b@x.com u@x.com,v@x.com", "# t@x.com"]
    assert cw.remove_value(lines, "b@x.com", "u@x.com") == ["a@x.com t@x.com", "b@x.com t@x.com,v@x.com",
                                                            "# t@x.com"]


def test_append_value_to_a_key_line_without_values_gives_a_valid_line(tmp_path):
    from ops import configdir
    f = tmp_path / "postfix-virtual.cf"
    f.write_text("a@x.com\n")                     # malformed: the reader skips it
    cw.rewrite(f, lambda lines: cw.append_value(lines, "a@x.com", "b@x.com"))
    assert f.read_text() == "a@x.com b@x.com\n"
    assert configdir.read(tmp_path).aliases == [("a@x.com", ["b@x.com"])]


def test_lock_serialises_threads(tmp_path):
    inside, overlap = [0], [False]

    def worker():
        with cw.locked(tmp_path):
            inside[0] += 1
            overlap[0] |= inside[0] > 1
            time.sleep(0.01)
            inside[0] -= 1
    threads = [threading.Thread(target=worker) for _ in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not overlap[0]


def test_lock_file_removed_under_a_waiter_is_not_trusted(tmp_path):
    acquired = threading.Event()

    def waiter():
        with cw.locked(tmp_path, timeout=5):
            acquired.set()
    with cw.locked(tmp_path) as path:
        t = threading.Thread(target=waiter)
        t.start()
        time.sleep(0.1)
        path.unlink()                     # e.g. docker-mailserver's stale-lock cleanup
        with cw.locked(tmp_path, timeout=0.2):
            # A new file, a new lock: we hold it while the waiter, stuck on the
            # old inode, will find it replaced and wait for this one.
            time.sleep(0.2)
            assert not acquired.is_set()
    t.join()
    assert acquired.is_set()


def test_stale_lock_file_from_docker_mailserver_is_reused(tmp_path):
    (tmp_path / cw.LOCK_NAME).write_text("a1b2c3\n")       # DMS writes its LOCK_ID and may die
    with cw.locked(tmp_path, timeout=2):
        pass


def test_lock_of_a_killed_holder_is_released(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(REPO)!r})
        from mailwright import configwrite as cw
        with cw.locked({str(tmp_path)!r}):
            print("held", flush=True)
            time.sleep(600)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(cw.LockTimeout):
            with cw.locked(tmp_path, timeout=0.3):
                pass
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
        t0 = time.monotonic()
        with cw.locked(tmp_path, timeout=5):
            pass
        assert time.monotonic() - t0 < 2
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


# --- secrets are 0600 (issue 7.6) ---------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(cw.SECRET_FILES))
def test_secret_files_are_0600_after_every_write_whatever_their_mode(tmp_path, name):
    f = tmp_path / name
    assert cw.rewrite(f, lambda lines: ["first|{SHA512-CRYPT}$6$s$h"])          # new file, no mode asked for
    assert f.stat().st_mode & 0o777 == 0o600
    f.chmod(0o644)
    assert cw.rewrite(f, lambda lines: [*lines, "second|{SHA512-CRYPT}$6$s$h"])  # rewritten
    assert f.stat().st_mode & 0o777 == 0o600
    f.chmod(0o666)
    cw.rewrite(f, lambda lines: lines)                                             # even when nothing changed
    assert f.stat().st_mode & 0o777 == 0o600
    cw.write_atomic(f, b"x\n", mode=0o644)                                         # a wrong mode asked for
    assert f.stat().st_mode & 0o777 == 0o600


def test_dkim_private_keys_are_0600(tmp_path, monkeypatch, capsys):
    (tmp_path / "config").mkdir()
    code = cli(tmp_path, monkeypatch, "config", "dkim", "keysize", "1024", "domain", "example.test")
    assert code == 0, capsys.readouterr().err
    keys = tmp_path / "config" / "opendkim" / "keys" / "example.test"
    assert (keys / "mail.private").stat().st_mode & 0o777 == 0o600
    assert (keys / "mail.txt").stat().st_mode & 0o777 == 0o644          # public: stays readable
    (keys / "mail.private").chmod(0o644)
    cw.write_atomic(keys / "mail.private", (keys / "mail.private").read_bytes())
    assert (keys / "mail.private").stat().st_mode & 0o777 == 0o600


# --- symbolic links (issue 7.7) ------------------------------------------------------------------------

def cli(root: Path, monkeypatch, *argv: str) -> int:
    """The `setup` CLI in-process, against root/config (settings: the defaults)."""
    from mailwright.cli.main import main
    for k in [k for k in os.environ if k.startswith("MAILWRIGHT_") or k == "LOG_LEVEL"]:
        monkeypatch.delenv(k)
    monkeypatch.setenv("MAILWRIGHT_CONFIG_DIR", str(root / "config"))
    monkeypatch.setenv("MAILWRIGHT_MAIL_ROOT", str(root / "mail"))
    monkeypatch.setenv("MAILWRIGHT_LOG_DIR", str(root / "log"))
    monkeypatch.setenv("MAILWRIGHT_DMS_SETTINGS", str(root / "absent-dms-settings"))
    return main(list(argv))


def snapshot(root: Path) -> dict[str, bytes | str]:
    return {str(p.relative_to(root)): (os.readlink(p) if p.is_symlink() else p.read_bytes() if p.is_file() else "dir")
            for p in sorted(root.rglob("*"))}


def test_symlinked_lock_file_is_refused_and_its_target_not_truncated(tmp_path):
    target = tmp_path / "precious"
    target.write_text("keep me\n")
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / cw.LOCK_NAME).symlink_to(target)
    with pytest.raises(cw.UnsafePath, match=cw.LOCK_NAME):
        with cw.locked(tmp_path / "config", timeout=1):
            pass
    assert target.read_text() == "keep me\n"


def test_holder_of_a_lock_replaced_by_a_symlink_is_not_read(tmp_path):
    (tmp_path / "secret").write_text("root-only secret\n")
    (tmp_path / cw.LOCK_NAME).symlink_to(tmp_path / "secret")
    assert cw._holder(tmp_path / cw.LOCK_NAME) == "unknown"


def test_write_atomic_refuses_a_symlink_and_copies_nothing_from_its_target(tmp_path):
    target = tmp_path / "outside.cf"
    target.write_text("target\n")
    target.chmod(0o604)
    link = tmp_path / "config" / "postfix-relaymap.cf"
    link.parent.mkdir()
    link.symlink_to(target)
    with pytest.raises(cw.UnsafePath, match="postfix-relaymap.cf"):
        cw.write_atomic(link, b"new\n")
    with pytest.raises(cw.UnsafePath, match="postfix-relaymap.cf"):
        cw.rewrite(link, lambda lines: [*lines, "new"])
    with pytest.raises(cw.UnsafePath, match="postfix-relaymap.cf"):
        cw.read_lines(link)
    assert link.is_symlink() and target.read_text() == "target\n" and target.stat().st_mode & 0o777 == 0o604
    assert sorted(p.name for p in link.parent.iterdir()) == ["postfix-relaymap.cf"]     # no temp file left


def test_a_symlink_appearing_during_a_write_is_replaced_not_written_through(tmp_path, monkeypatch):
    # The lstat check and rename(2) are not atomic together; rename replaces a
    # symbolic link at its destination (the link itself), never its target.
    target = tmp_path / "outside"
    target.write_text("target\n")
    dest = tmp_path / "config" / "postfix-virtual.cf"
    dest.parent.mkdir()
    real = atomic.tempfile.mkstemp

    def racing_mkstemp(*a, **kw):
        out = real(*a, **kw)
        dest.symlink_to(target)
        return out
    monkeypatch.setattr(atomic.tempfile, "mkstemp", racing_mkstemp)
    cw.write_atomic(dest, b"a@x.com b@x.com\n")
    assert not dest.is_symlink() and dest.read_bytes() == b"a@x.com b@x.com\n"
    assert target.read_text() == "target\n"


def test_a_symlinked_config_folder_is_accepted(tmp_path):
    # The folder itself is placed by the operator (trusted); only links inside it are refused.
    (tmp_path / "real").mkdir()
    (tmp_path / "config").symlink_to(tmp_path / "real")
    with cw.locked(tmp_path / "config", timeout=1):
        cw.rewrite(tmp_path / "config" / "postfix-virtual.cf", lambda lines: ["a@x.com b@x.com"])
    assert (tmp_path / "real" / "postfix-virtual.cf").read_text() == "a@x.com b@x.com\n"


@pytest.mark.parametrize("linked", ["postfix-accounts.cf", "postfix-virtual.cf", "dovecot-quotas.cf"])
def test_cli_refuses_a_symlinked_config_file_and_writes_nothing(tmp_path, monkeypatch, capsys, linked):
    config, outside = tmp_path / "config", tmp_path / "outside"
    config.mkdir()
    outside.mkdir()
    (outside / linked).write_text("# not the config folder's\n")
    (config / linked).symlink_to(outside / linked)
    (config / "postfix-relaymap.cf").write_text("@x.test [h]:25\n")
    before = snapshot(tmp_path)
    assert cli(tmp_path, monkeypatch, "email", "add", "new@example.test", "pw") == 1
    err = capsys.readouterr().err
    assert f"'{config / linked}' is a symbolic link" in err
    after = snapshot(tmp_path)
    after.pop(f"config/{cw.LOCK_NAME}", None)
    assert after == before


def test_cli_dkim_refuses_a_symlinked_opendkim_folder(tmp_path, monkeypatch, capsys):
    config, outside = tmp_path / "config", tmp_path / "outside"
    config.mkdir()
    outside.mkdir()
    (config / "opendkim").symlink_to(outside)
    assert cli(tmp_path, monkeypatch, "config", "dkim", "keysize", "1024", "domain", "example.test") == 1
    assert f"'{config / 'opendkim'}' is a symbolic link" in capsys.readouterr().err
    assert list(outside.iterdir()) == []


def test_cli_dkim_refuses_a_symlinked_key_folder_and_writes_nothing(tmp_path, monkeypatch, capsys):
    config, outside = tmp_path / "config", tmp_path / "outside"
    (config / "opendkim" / "keys").mkdir(parents=True)
    outside.mkdir()
    (config / "opendkim" / "keys" / "b.test").symlink_to(outside)
    assert cli(tmp_path, monkeypatch, "config", "dkim", "keysize", "1024", "domain", "a.test,b.test") == 1
    assert "b.test' is a symbolic link" in capsys.readouterr().err
    assert list(outside.iterdir()) == [] and list((config / "opendkim").iterdir()) == [config / "opendkim" / "keys"]
