"""mailwright.atomic: the one atomic writer behind apply.write and configwrite.write_atomic."""

from __future__ import annotations

import grp
import os
import pwd
import time

import pytest

from mailwright import apply, atomic, configwrite as cw
from ops.render import ConfigFile


def mine(path) -> ConfigFile:
    """A generated file owned by whoever runs the tests."""
    return ConfigFile(path=str(path), content="x\n", owner=pwd.getpwuid(os.getuid()).pw_name,
                      group=grp.getgrgid(os.getgid()).gr_name)


def test_both_writers_go_through_the_one_atomic_writer(tmp_path, monkeypatch):
    calls = []
    real = atomic.replace
    monkeypatch.setattr(atomic, "replace", lambda path, *a, **kw: (calls.append(str(path)), real(path, *a, **kw)))
    apply.write(mine(tmp_path / "main.cf"))
    cw.write_atomic(tmp_path / "postfix-virtual.cf", b"a@x.test b@x.test\n")
    assert calls == [str(tmp_path / "main.cf"), str(tmp_path / "postfix-virtual.cf")]


def test_generated_files_are_dated_two_seconds_back_for_postfix(tmp_path):
    before = time.time()
    apply.write(mine(tmp_path / "main.cf"))
    assert (tmp_path / "main.cf").stat().st_mtime <= before - 1


def test_replace_sets_mode_and_leaves_no_temp_file_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "f"
    atomic.replace(target, b"one\n", 0o640, suffix=".tmp")
    assert target.read_bytes() == b"one\n" and target.stat().st_mode & 0o7777 == 0o640

    def disk_full(fd):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        atomic.replace(target, b"two\n", 0o640, suffix=".tmp")
    assert target.read_bytes() == b"one\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def test_best_effort_owner_skips_a_forbidden_chown(tmp_path, monkeypatch):
    def refused(fd, uid, gid):
        raise PermissionError(1, "Operation not permitted")
    monkeypatch.setattr(os, "fchown", refused)
    atomic.replace(tmp_path / "f", b"x\n", 0o644, (12345, 12345), owner_best_effort=True)
    assert (tmp_path / "f").read_bytes() == b"x\n"
    with pytest.raises(PermissionError):
        atomic.replace(tmp_path / "g", b"x\n", 0o644, (12345, 12345))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]
