"""mailwright.apply: make a list of ConfigFiles true, touching only what differs.

Runs in a temp dir with the current user and group as owner, so it works
unprivileged too; the ownership-drift test needs root and skips otherwise.
"""

from __future__ import annotations

import grp
import os
import pwd

import pytest

from mailwright import apply
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
    with pytest.raises(OSError):
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


def test_failing_after_command_raises(tmp_path):
    with pytest.raises(Exception):
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
