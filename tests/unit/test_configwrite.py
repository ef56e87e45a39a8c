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

from mailwright import configwrite as cw

REPO = Path(__file__).resolve().parents[2]


def test_rewrite_keeps_comments_and_blank_lines_converts_crlf_adds_final_newline(tmp_path):
    f = tmp_path / "postfix-virtual.cf"
    f.write_bytes(b"# aliases\r\nA@x.com b@x.com\r\n\r\nc@x.com d@x.com")
    assert cw.rewrite(f, lambda lines: cw.append_value(lines, "a@x.com", "e@x.com"))
    assert f.read_bytes() == b"# aliases\nA@x.com b@x.com,e@x.com\n\nc@x.com d@x.com\n"


def test_rewrite_keeps_mode_and_reports_no_change(tmp_path):
    f = tmp_path / "postfix-sasl-password.cf"
    f.write_text("@x.com u:p\n")
    f.chmod(0o640)
    assert not cw.rewrite(f, lambda lines: lines)
    assert cw.rewrite(f, lambda lines: [*lines, "@y.com v:q"])
    assert f.stat().st_mode & 0o777 == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["postfix-sasl-password.cf"]     # no temp file left


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
